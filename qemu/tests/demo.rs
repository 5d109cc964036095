//! `cargo run -- demo` end to end on real QEMU (skipped if QEMU is missing):
//! the default demo (doorbell, irq) passes, prints a summary with the RTT and
//! the throughput, and leaves no QEMU, socket or shared-memory file behind.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Guard, drain, leftovers};

#[test]
fn default_demo_passes_with_a_summary() {
    if !qemu::install::available() {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        return;
    }
    // Build outside the lock (the launcher's own build is then a no-op).
    qemu::kernel::build(qemu::kernel::Profile::Release).expect("cannot build the kernel");
    // The launcher never takes the lock itself; the test holds it.
    let _lock = qemu::VmLock::acquire().unwrap();
    let started = Instant::now();
    let mut child = Guard(
        Command::new(env!("CARGO_BIN_EXE_eth-ivshmem"))
            .args(["demo", "--timeout", "60"])
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let pid = child.0.id();
    let stdout = drain(child.0.stdout.take().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < Duration::from_secs(90),
            "the demo did not end"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let context = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert_eq!(status.code(), Some(0), "{context}");

    let summary = &stdout[stdout.find("=== summary ===").expect(&context)..];
    for needle in [
        "link up:   0.",
        "ping:      4 transmitted, 4 received, 0% loss; rtt min/avg/max = ",
        "tcp-echo:  1048576 bytes (1M) verified, throughput ",
        " Mbit/s",
        "result:    PASS (guest reported success (exit status 33))",
    ] {
        assert!(summary.contains(needle), "{needle:?} missing\n{context}");
    }
    // Both VMs' output is shown live, prefixed, with B as peer 0.
    assert!(
        stdout
            .contains("[B] ivshmem: ivshmem-v2 emulated on ivshmem-doorbell at 00:02.0, id 0 of 2"),
        "{context}"
    );
    assert!(stdout.contains("[A] apps: PASS"), "{context}");
    for progress in ["waiting for the link…", "VM A: pinging", "demo passed"] {
        assert!(stderr.contains(progress), "{progress:?}\n{context}");
    }
    assert!(leftovers(pid, "").is_empty(), "{:?}", leftovers(pid, ""));
}

// --- demo --host --------------------------------------------------------------

/// Why `demo --host` cannot run here (no QEMU, no root, no TUN), if it cannot.
fn no_host_demo() -> Option<String> {
    if !qemu::install::available() {
        return Some("qemu-system-x86_64 is not installed".into());
    }
    qemu::hostpeer::unavailable()
}

/// Starts `demo --host` with `args` under the VM lock (held by the caller).
fn host_demo(args: &[&str]) -> Guard {
    Guard(
        Command::new(env!("CARGO_BIN_EXE_eth-ivshmem"))
            .args(["demo", "--host", "--timeout", "60"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap(),
    )
}

/// Whether an interface `name` exists in the host's (this thread's) namespace.
fn host_interface(name: &str) -> bool {
    qemu::bridge::tap::interface_index(name).unwrap().is_some()
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|entry| {
            let cmdline = std::fs::read(entry.ok()?.path().join("cmdline")).ok()?;
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            cmdline.contains(needle).then_some(cmdline)
        })
        .collect()
}

#[test]
fn the_host_demo_reaches_the_vm_from_linux() {
    if let Some(reason) = no_host_demo() {
        qemu::hostpeer::skip(&reason);
        return;
    }
    qemu::kernel::build(qemu::kernel::Profile::Release).expect("cannot build the kernel");
    let _lock = qemu::VmLock::acquire().unwrap();
    let mut child = host_demo(&["--count", "5", "--bytes", "2M"]);
    let pid = child.0.id();
    let stdout = drain(child.0.stdout.take().unwrap());
    let stderr = drain(child.0.stderr.take().unwrap());
    let status = child.0.wait().unwrap();
    let stdout = stdout.join().unwrap();
    let stderr = stderr.join().unwrap();
    let context = format!("--- stdout ---\n{stdout}\n--- stderr ---\n{stderr}");
    assert_eq!(status.code(), Some(0), "{context}");
    let summary = &stdout[stdout.find("=== summary ===").expect(&context)..];
    for needle in [
        "Linux in a network namespace of its own (TAP ivshmem0, 10.0.0.254/24)",
        "link up:   0.",
        "ping:      5 transmitted, 5 received, 0% loss; rtt min/avg/max/mdev = ",
        "(Linux's ping)",
        "tcp-echo:  2097152 bytes (2M) verified, throughput ",
        "Mbit/s (Linux's TCP client",
        "0 protocol error(s)",
        "result:    PASS (the host reached the VM)",
    ] {
        assert!(summary.contains(needle), "{needle:?} missing\n{context}");
    }
    assert!(
        stdout.contains("[host] 64 bytes from 10.0.0.1"),
        "{context}"
    );
    assert!(leftovers(pid, "").is_empty(), "{:?}", leftovers(pid, ""));
    assert!(
        !host_interface("ivshmem0"),
        "the TAP stayed in the namespace"
    );
}

#[test]
fn an_interrupted_host_demo_leaves_nothing_behind() {
    if let Some(reason) = no_host_demo() {
        qemu::hostpeer::skip(&reason);
        return;
    }
    qemu::kernel::build(qemu::kernel::Profile::Release).expect("cannot build the kernel");
    let _lock = qemu::VmLock::acquire().unwrap();
    // 300 pings, 100 ms apart: interrupted in the middle.
    let mut child = host_demo(&["--count", "300"]);
    let pid = child.0.id();
    let stdout = drain(child.0.stdout.take().unwrap());
    let mut stderr = child.0.stderr.take().unwrap();
    let mut seen = String::new();
    let started = Instant::now();
    let mut buffer = [0u8; 4096];
    while !seen.contains("Linux pings 10.0.0.1") {
        let n = std::io::Read::read(&mut stderr, &mut buffer).unwrap();
        assert!(n > 0, "the demo ended early: {seen}");
        seen.push_str(&String::from_utf8_lossy(&buffer[..n]));
        assert!(started.elapsed() < Duration::from_secs(60), "{seen}");
    }
    std::thread::sleep(Duration::from_millis(300));
    let pings = processes_with("-c 300 -i 0.100");
    assert_eq!(pings.len(), 1, "Linux's ping runs: {pings:?}");
    // SAFETY: kill(2) on our own child's PID.
    assert_eq!(unsafe { libc::kill(pid as i32, libc::SIGINT) }, 0);
    let status = child.0.wait().unwrap();
    let rest = drain(stderr).join().unwrap();
    let context = format!("{seen}{rest}\n--- stdout ---\n{}", stdout.join().unwrap());
    assert_eq!(status.code(), Some(130), "{context}");
    assert!(leftovers(pid, "").is_empty(), "{:?}", leftovers(pid, ""));
    let start = Instant::now();
    while !processes_with("-c 300 -i 0.100").is_empty() {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "ping outlived the demo"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!host_interface("ivshmem0"), "{context}");
}

#[test]
fn the_host_demo_refuses_what_it_cannot_do() {
    let run = |args: &[&str], drop_capabilities: bool| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_eth-ivshmem"));
        command.args(["demo", "--host"]).args(args);
        if drop_capabilities {
            // Root without CAP_SYS_ADMIN (no namespaces): out of the
            // bounding set, so exec cannot give it back.
            // SAFETY: prctl(2) between fork and exec, async-signal-safe.
            unsafe {
                std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                    const CAP_SYS_ADMIN: libc::c_ulong = 21;
                    if libc::prctl(libc::PR_CAPBSET_DROP, CAP_SYS_ADMIN, 0, 0, 0) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    Ok(())
                });
            }
        }
        let output = command.output().unwrap();
        (
            output.status.code(),
            String::from_utf8_lossy(&output.stderr).into_owned(),
        )
    };
    let (code, stderr) = run(&["--keep"], false);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(
        stderr.contains("--keep does not go with --host"),
        "{stderr}"
    );
    let (code, stderr) = run(&[], nix::unistd::geteuid().is_root());
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("demo --host makes a network namespace"),
        "{stderr}"
    );
    assert!(stderr.contains("needs root"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}
