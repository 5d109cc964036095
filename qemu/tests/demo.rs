//! `cargo run -- demo` end to end on real QEMU (skipped if QEMU is missing):
//! the default demo (doorbell, irq) passes, prints a summary with the RTT and
//! the throughput, and leaves no QEMU, socket or shared-memory file behind.

mod support;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use support::{Guard, drain};

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
    assert!(
        support::leftovers(pid, "").is_empty(),
        "{:?}",
        support::leftovers(pid, "")
    );
}
