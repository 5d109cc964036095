//! Issue 2 acceptance for the launcher binary: `cargo run -- boot` boots the
//! kernel and passes its verdict on; bad arguments are rejected with exit
//! status 2 and a message, never a panic.

use abi::report::parse_inventory;
use e2e::{VM_TIMEOUT, VmLock, run_launcher};

/// Asserts a clean usage error: status 2, a message containing `needles`,
/// and no panic.
fn assert_usage_error(args: &[&str], needles: &[&str]) {
    let run = run_launcher(args, VM_TIMEOUT);
    assert_eq!(run.code(), 2, "{args:?}\n{}", run.context());
    for needle in needles {
        assert!(
            run.stderr.contains(needle),
            "stderr lacks {needle:?} for {args:?}\n{}",
            run.context()
        );
    }
    for bad in ["panicked", "RUST_BACKTRACE", "stack backtrace"] {
        assert!(!run.stderr.contains(bad), "{args:?}\n{}", run.context());
    }
}

#[test]
fn boot_prints_the_inventory_and_succeeds() {
    // Build the kernel outside the lock and the timeout; the launcher's own
    // build is then a no-op.
    e2e::kernel();
    let run = {
        let _lock = VmLock::acquire().expect("cannot take the VM lock");
        run_launcher(
            &["boot", "--machine", "q35", "--shm-size", "2M"],
            VM_TIMEOUT,
        )
    };
    assert_eq!(run.code(), 0, "{}", run.context());
    let lines: Vec<&str> = run.stdout.lines().collect();
    let entries = parse_inventory(&lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    let ivshmem = entries
        .iter()
        .find(|entry| (entry.function.vendor, entry.function.device) == (0x1af4, 0x1110))
        .unwrap_or_else(|| panic!("no ivshmem in the inventory\n{}", run.context()));
    assert_eq!(
        ivshmem.bar(2).map(|b| b.size),
        Some(2 << 20),
        "{}",
        run.context()
    );
    assert!(lines.contains(&"boot: ok"), "{}", run.context());
    assert!(
        run.stderr.contains("guest reported success"),
        "the verdict is printed\n{}",
        run.context()
    );
}

#[test]
fn boot_passes_a_guest_failure_on_as_status_1() {
    e2e::kernel();
    let run = {
        let _lock = VmLock::acquire().expect("cannot take the VM lock");
        // --raw-append reaches the kernel unchecked; --append would not.
        run_launcher(&["boot", "--raw-append", "bogus=1"], VM_TIMEOUT)
    };
    assert_eq!(run.code(), 1, "{}", run.context());
    assert!(
        run.stdout.contains("unknown key 'bogus'"),
        "{}",
        run.context()
    );
    assert!(
        run.stderr.contains("rejected its kernel command line"),
        "{}",
        run.context()
    );
}

#[test]
fn bad_kernel_command_line_is_a_usage_error() {
    assert_usage_error(
        &["boot", "--append", "bogus=1"],
        &["--append", "unknown key 'bogus'"],
    );
    assert_usage_error(&["boot", "--append", "log=loud"], &["'loud'", "'log'"]);
}

#[test]
fn unknown_machine_is_a_usage_error() {
    assert_usage_error(
        &["boot", "--machine", "sparc"],
        &["sparc", "--machine", "pc", "q35"],
    );
}

#[test]
fn bad_shm_size_is_a_usage_error() {
    assert_usage_error(&["boot", "--shm-size", "3M"], &["3M", "power of two"]);
    assert_usage_error(&["boot", "--shm-size", "4K"], &["--shm-size", "32K"]);
}
