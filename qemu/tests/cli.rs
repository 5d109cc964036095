//! The launcher binary's command line: help, bad arguments, `boot` verdicts
//! and cleanup on signals (the QEMU parts are skipped if QEMU is missing).

mod support;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::Guard;

fn launcher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eth-ivshmem"))
}

fn tiny(dir: &Path, exit_value: Option<u32>) -> PathBuf {
    let path = dir.join("tiny.elf");
    std::fs::write(&path, support::pvh_elf("tiny up\n", exit_value)).unwrap();
    path
}

#[test]
fn help_works_everywhere() {
    for args in [
        &["--help"][..],
        &["demo", "--help"],
        &["vm", "--help"],
        &["boot", "--help"],
        &["server", "--help"],
    ] {
        let out = launcher().args(args).output().unwrap();
        assert_eq!(out.status.code(), Some(0), "{args:?}");
        assert!(String::from_utf8_lossy(&out.stdout).contains("Usage"));
    }
    let top = launcher().arg("--help").output().unwrap();
    let top = String::from_utf8_lossy(&top.stdout);
    for command in ["demo", "vm", "boot", "server"] {
        assert!(top.contains(command), "{top}");
    }
    let vm = launcher().args(["vm", "--help"]).output().unwrap();
    let vm = String::from_utf8_lossy(&vm.stdout);
    for option in [
        "--app",
        "--link",
        "--mode",
        "--id",
        "--shm-size",
        "--timeout",
        "--name",
    ] {
        assert!(vm.contains(option), "{vm}");
    }
    // Every command that starts VMs takes the same kernel and QEMU options.
    for command in ["demo", "vm", "boot"] {
        let help = launcher().args([command, "--help"]).output().unwrap();
        let help = String::from_utf8_lossy(&help.stdout);
        for option in [
            "--kernel",
            "--append",
            "--raw-append",
            "--qemu ",
            "--qemu-arg",
            "-L, --firmware",
            "--monitor",
            "--gdb",
        ] {
            assert!(help.contains(option), "{command} lacks {option}: {help}");
        }
    }
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["bogus"][..],
        &["boot", "--shm-size", "3M"],
        &["boot", "--shm-size", "lots"],
        &["boot", "--shm-size", "16K"],
        &["boot", "--machine", "isapc"],
        &["boot", "--timeout", "-1"],
        &["server", "--peers", "3"],
        &["server", "--vectors", "0"],
        &["server", "--size", "junk"],
        &["server", "--size", "16K"],
        &["server", "--output-section", "0x1800"],
        &["server", "--protocol", "v3"],
        &["server", "--net-protocol", "0x10000"],
    ] {
        assert_usage_error(args, "error");
    }
}

/// Runs the launcher with `args` and asserts exit status 2 with `needle` in
/// a one-line-ish message on stderr and no panic or backtrace.
fn assert_usage_error(args: &[&str], needle: &str) {
    let out = launcher().args(args).stdin(Stdio::null()).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    assert!(stderr.contains("error"), "{args:?}: {stderr}");
    assert!(stderr.contains(needle), "{args:?}: {stderr}");
    assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
    assert!(!stderr.contains("backtrace"), "{args:?}: {stderr}");
}

#[test]
fn bad_qemu_and_kernel_options_exit_2() {
    for command in ["demo", "vm", "boot"] {
        for (args, needle) in [
            (&["--qemu", "/nonexistent/qemu"][..], "is not a file"),
            (&["--qemu", "no-such-qemu-binary"], "not in PATH"),
            (&["-L", "/nonexistent/share"], "not a directory"),
            (&["--monitor", ""], "--monitor"),
            (&["--append", "bogus=1"], "unknown key 'bogus'"),
            (&["--append", "mtu=1"], "bad value '1' for 'mtu'"),
            (&["--append", "count=1 count=2"], "more than once"),
        ] {
            let mut all = vec![command];
            all.extend_from_slice(args);
            assert_usage_error(&all, needle);
        }
    }
}

#[test]
fn demo_bad_arguments_exit_2() {
    for (args, needle) in [
        (
            &["demo", "--mode", "intr"][..],
            "possible values: irq, poll",
        ),
        (&["demo", "--machine", "isapc"], "possible values: pc, q35"),
        (&["demo", "--shm-size", "3M"], "power of two"),
        (&["demo", "--shm-size", "16K"], "at least 32K"),
        (&["demo", "--bytes", "0"], "out of range"),
        (&["demo", "--bytes", "5G"], "out of range"),
        (&["demo", "--bytes", "lots"], "--bytes"),
        (&["demo", "--count", "0"], "--count"),
        (&["demo", "--mtu", "67"], "--mtu"),
        (&["demo", "--mtu", "70000"], "--mtu"),
        (&["demo", "--timeout", "0"], "positive"),
        (&["demo", "--keep", "yes"], "unexpected argument"),
    ] {
        assert_usage_error(args, needle);
    }
}

#[test]
fn vm_bad_arguments_exit_2() {
    let dir = tempfile::tempdir().unwrap();
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 1 << 16]).unwrap();
    let junk_link = format!("plain:{}", junk.display());
    let odd = dir.path().join("odd");
    std::fs::write(&odd, vec![0u8; 5000]).unwrap();
    let odd_link = format!("plain:{}", odd.display());
    let missing_socket = format!("doorbell:{}", dir.path().join("none.sock").display());
    let fresh = format!("plain:{}", dir.path().join("fresh").display());
    for (args, needle) in [
        (&["vm", "--link", "tcp:1.2.3.4"][..], "unknown link kind"),
        (&["vm", "--link", "plain:"], "no path"),
        (&["vm", "--link", "doorbell"], "doorbell:SOCKET"),
        (&["vm", "--app", "pong"], "unknown app"),
        (&["vm", "--app", "link,server"], "runs alone"),
        (&["vm", "--app", "server"], "need a link"),
        (&["vm", "--mode", "intr"], "possible values: irq, poll"),
        (&["vm", "--link", &fresh], "needs --id"),
        (&["vm", "--link", &fresh, "--id", "2"], "--id"),
        (
            &["vm", "--link", &fresh, "--id", "0", "--mode", "irq"],
            "--mode irq",
        ),
        (
            &["vm", "--link", &fresh, "--id", "0", "--shm-size", "3M"],
            "power of two",
        ),
        (
            &["vm", "--link", &fresh, "--id", "0", "--shm-size", "16K"],
            "at least 32K",
        ),
        (
            &["vm", "--link", "doorbell:/tmp/s.sock", "--id", "0"],
            "only for plain",
        ),
        (
            &["vm", "--link", "v2:/tmp/s.sock", "--shm-size", "1M"],
            "only for plain",
        ),
        (&["vm", "--link", &missing_socket], "does not exist"),
        (
            &["vm", "--link", &junk_link, "--id", "0"],
            "no valid descriptor page",
        ),
        (
            &["vm", "--link", &odd_link, "--id", "1"],
            "not a power of two",
        ),
        (&["vm", "--timeout", "soon"], "--timeout"),
    ] {
        assert_usage_error(args, needle);
    }
    assert!(
        !dir.path().join("fresh").exists(),
        "nothing is created for bad arguments"
    );
    // An existing region of another size than asked for.
    let region_path = dir.path().join("region");
    let mut region = qemu::shm::PlainRegion::create(&region_path, 1 << 20, 2, 0, 1, None).unwrap();
    region.persist();
    let link = format!("plain:{}", region_path.display());
    assert_usage_error(
        &["vm", "--link", &link, "--id", "0", "--shm-size", "2M"],
        "already exists with 1M",
    );
}

#[test]
fn boot_verdicts() {
    if !qemu::install::available() {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        return;
    }
    let _lock = qemu::VmLock::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let good = tiny(dir.path(), Some(0x10));
    let child = launcher()
        .args(["boot", "--timeout", "20", "--kernel"])
        .arg(&good)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&child.stdout);
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stdout.contains("tiny up"), "{stdout}");
    assert!(stderr.contains("guest reported success"), "{stderr}");

    // Firmware directories and raw arguments reach QEMU.
    let child = launcher()
        .args(["boot", "--timeout", "20", "-L", "/usr/share/qemu"])
        .args(["--qemu-arg=-d", "--qemu-arg=guest_errors", "--kernel"])
        .arg(&good)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(" -L /usr/share/qemu -machine pc"),
        "{stderr}"
    );
    assert!(stderr.contains(" -d guest_errors"), "{stderr}");

    let bad = tiny(dir.path(), Some(0x14));
    let child = launcher()
        .args(["boot", "--machine", "q35", "--timeout", "20", "--kernel"])
        .arg(&bad)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("panicked (exit status 41)"), "{stderr}");

    let hang = tiny(dir.path(), None);
    let child = launcher()
        .args(["boot", "--timeout", "0.5", "--kernel"])
        .arg(&hang)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&child.stderr);
    assert_eq!(child.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("timed out"), "{stderr}");
}

fn children_of(pid: u32) -> Vec<u32> {
    let mut out = Vec::new();
    if let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            if let Ok(s) = std::fs::read_to_string(task.path().join("children")) {
                out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
            }
        }
    }
    out
}

fn is_gone(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        // A zombie waiting for a (container) init to reap it is gone too.
        Ok(stat) => stat
            .rsplit(')')
            .next()
            .is_some_and(|s| s.trim_start().starts_with('Z')),
    }
}

#[test]
fn sigterm_kills_qemu_and_removes_shm() {
    if !qemu::install::available() {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        return;
    }
    let _lock = qemu::VmLock::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let hang = tiny(dir.path(), None);
    for signal in [libc::SIGTERM, libc::SIGINT] {
        let mut child = Guard(
            launcher()
                .args(["boot", "--timeout", "30", "--kernel"])
                .arg(&hang)
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let pid = child.0.id();
        let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
        let mut line = String::new();
        stdout.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "tiny up");
        let qemus = children_of(pid);
        assert_eq!(qemus.len(), 1, "{qemus:?}");
        assert_eq!(support::leftovers(pid, "boot").len(), 1);
        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        assert_eq!(unsafe { libc::kill(pid as i32, signal) }, 0);
        let status = child.0.wait().unwrap();
        assert_eq!(status.code(), Some(128 + signal));
        let deadline = Instant::now() + Duration::from_secs(5);
        while !is_gone(qemus[0]) {
            assert!(Instant::now() < deadline, "QEMU {} survived", qemus[0]);
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            support::leftovers(pid, "boot").is_empty(),
            "{:?}",
            support::leftovers(pid, "boot")
        );
    }
}

#[test]
fn server_runs_refuses_a_second_and_cleans_up_on_signals() {
    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("s.sock");
    for (signal, protocol) in [(libc::SIGTERM, "v1"), (libc::SIGINT, "v2")] {
        let mut server = Guard(
            launcher()
                .args(["server", "--protocol", protocol, "--socket"])
                .arg(&socket)
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap(),
        );
        let mut stderr = BufReader::new(server.0.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(
                stderr.read_line(&mut line).unwrap() > 0,
                "server ended early"
            );
        }
        assert!(socket.exists());

        let second = launcher()
            .args(["server", "--socket"])
            .arg(&socket)
            .output()
            .unwrap();
        assert_eq!(second.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&second.stderr).contains("in use"));

        // SAFETY: kill(2) on our own child's pid, which has not been reaped.
        assert_eq!(unsafe { libc::kill(server.0.id() as i32, signal) }, 0);
        assert_eq!(server.0.wait().unwrap().code(), Some(0));
        assert!(!socket.exists(), "socket removed");
    }
}
