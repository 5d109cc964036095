//! Runs real QEMU on a tiny generated PVH kernel (skipped if QEMU is missing).

use std::time::{Duration, Instant};

use host::{Machine, Outcome, ShmDevice, VmConfig, VmLock};

fn qemu_or_skip() -> bool {
    if host::qemu::available() {
        true
    } else {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        false
    }
}

fn kernel(dir: &tempfile::TempDir, message: &str, exit_value: Option<u32>) -> std::path::PathBuf {
    let path = dir.path().join("tiny.elf");
    std::fs::write(&path, host::testkernel::pvh_elf(message, exit_value)).unwrap();
    path
}

#[test]
fn tiny_kernel_succeeds_with_plain_shm() {
    if !qemu_or_skip() {
        return;
    }
    let _lock = VmLock::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let shm_path = dir.path().join("shm");
    let region = host::shm::create_plain_region(&shm_path, 1 << 20, 2, 0, 1, None).unwrap();
    for machine in [Machine::Pc, Machine::Q35] {
        let mut vm = VmConfig::new(kernel(&dir, "hello\r\nready\n", Some(0x10)))
            .machine(machine)
            .shm(ShmDevice::Plain {
                mem_path: region.path().into(),
                size: 1 << 20,
            })
            .echo("[tiny] ")
            .spawn()
            .unwrap();
        vm.wait_for_line("ready", Instant::now() + Duration::from_secs(20))
            .unwrap();
        let outcome = vm.wait(Duration::from_secs(20));
        assert_eq!(outcome, Outcome::Success, "stderr: {}", vm.stderr());
        assert_eq!(vm.lines(), ["hello", "ready"]);
    }
}

#[test]
fn tiny_kernel_failure_codes_decode() {
    if !qemu_or_skip() {
        return;
    }
    let _lock = VmLock::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut vm = VmConfig::new(kernel(&dir, "", Some(0x13))).spawn().unwrap();
    assert_eq!(vm.wait(Duration::from_secs(20)), Outcome::CpuException);
}

#[test]
fn qemu_startup_error_is_reported() {
    if !qemu_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut vm = VmConfig::new(kernel(&dir, "", Some(0x10)))
        .shm(ShmDevice::Doorbell {
            socket: dir.path().join("no-such.sock"),
            vectors: 2,
        })
        .spawn()
        .unwrap();
    assert_eq!(vm.wait(Duration::from_secs(20)), Outcome::Other(1));
    assert!(vm.stderr().contains("no-such.sock"), "{}", vm.stderr());
}
