//! Runs real QEMU on a tiny generated PVH kernel (skipped if QEMU is missing).

mod support;

use std::time::{Duration, Instant};

use abi::exit::ExitCode;
use qemu::{Machine, Outcome, ShmDevice, VmConfig, VmLock};

fn qemu_or_skip() -> bool {
    if qemu::install::available() {
        true
    } else {
        eprintln!("skipping: qemu-system-x86_64 is not installed");
        false
    }
}

fn kernel(dir: &tempfile::TempDir, message: &str, exit_value: Option<u32>) -> std::path::PathBuf {
    let path = dir.path().join("tiny.elf");
    std::fs::write(&path, support::pvh_elf(message, exit_value)).unwrap();
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
    let region = qemu::shm::PlainRegion::create(&shm_path, 1 << 20, 2, 0, 1, None).unwrap();
    for machine in [Machine::Pc, Machine::Q35] {
        let vm = VmConfig::new(kernel(&dir, "hello\r\nready\n", Some(0x10)))
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
        assert_eq!(
            outcome,
            Outcome::Exit(ExitCode::Success),
            "stderr: {}",
            vm.stderr()
        );
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
    let vm = VmConfig::new(kernel(&dir, "", Some(0x13))).spawn().unwrap();
    assert_eq!(
        vm.wait(Duration::from_secs(20)),
        Outcome::Exit(ExitCode::CpuException)
    );
}

#[test]
fn qemu_startup_error_is_reported() {
    if !qemu_or_skip() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let vm = VmConfig::new(kernel(&dir, "", Some(0x10)))
        .shm(ShmDevice::Doorbell {
            socket: dir.path().join("no-such.sock"),
            vectors: 2,
        })
        .spawn()
        .unwrap();
    assert_eq!(vm.wait(Duration::from_secs(20)), Outcome::Other(1));
    assert!(vm.stderr().contains("no-such.sock"), "{}", vm.stderr());
}

#[test]
fn doorbell_vm_talks_to_our_v1_server() {
    use qemu::server::client::Client;
    use qemu::server::{Server, ServerConfig};
    if !qemu_or_skip() {
        return;
    }
    let _lock = VmLock::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServerConfig::new(dir.path().join("ivs.sock")))
        .unwrap()
        .spawn()
        .unwrap();
    for machine in [Machine::Pc, Machine::Q35] {
        // The VM halts after printing, holding its connection (peer 0).
        let vm = VmConfig::new(kernel(&dir, "up\n", None))
            .machine(machine)
            .shm(server.device())
            .spawn()
            .unwrap();
        vm.wait_for_line("up", Instant::now() + Duration::from_secs(20))
            .unwrap_or_else(|e| panic!("{e}; stderr: {}", vm.stderr()));
        // We join as peer 1 and get QEMU's two eventfds: it realized the device.
        let client = Client::connect(server.socket_path()).unwrap();
        let mut received = Vec::new();
        while received.len() < 3 + 2 + 2 {
            received.push(client.recv_v1().unwrap());
        }
        let ids: Vec<i64> = received.iter().map(|(id, _)| *id).collect();
        assert_eq!(ids, [0, 1, -1, 0, 0, 1, 1]);
        // QEMU goes away → our vector 0 rings (no message in quiet mode).
        assert_eq!(vm.kill(), Outcome::Signal(9));
        let own0 = received[5].1.as_ref().unwrap().try_clone().unwrap();
        let mut own0 = std::fs::File::from(own0);
        // The eventfd is non-blocking and the server notices the disconnect
        // asynchronously: retry until it rings or the deadline passes.
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut buf = [0u8; 8];
        loop {
            match std::io::Read::read_exact(&mut own0, &mut buf) {
                Ok(()) => break,
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock && Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(10));
                }
                Err(e) => panic!("vector 0 never rang after QEMU went away: {e}"),
            }
        }
        assert_eq!(u64::from_le_bytes(buf), 1);
    }
}

/// QEMU 7.2's `ivshmem-doorbell` frees a peer's eventfd array on a
/// disconnect message without forgetting it, so a reused peer ID that leaves
/// again makes the survivor's QEMU abort ("double free"). Our v1 server
/// therefore never sends disconnect messages and keeps each ID's eventfds.
#[test]
fn doorbell_survivor_outlives_a_reused_id_leaving_repeatedly() {
    use qemu::server::{Server, ServerConfig};
    if !qemu_or_skip() {
        return;
    }
    let _lock = VmLock::acquire().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = Server::bind(ServerConfig::new(dir.path().join("ivs.sock")))
        .unwrap()
        .spawn()
        .unwrap();
    let elf = kernel(&dir, "up\n", None);
    let deadline = || Instant::now() + Duration::from_secs(20);
    let a = VmConfig::new(&elf)
        .name("A")
        .shm(server.device())
        .spawn()
        .unwrap();
    a.wait_for_line("up", deadline()).unwrap();
    for round in 0..3 {
        let b = VmConfig::new(&elf)
            .name("B")
            .shm(server.device())
            .spawn()
            .unwrap();
        b.wait_for_line("up", deadline())
            .unwrap_or_else(|e| panic!("round {round}: {e}; {}", b.stderr()));
        b.kill();
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(
            a.try_outcome(),
            None,
            "round {round}: A died: {}",
            a.stderr()
        );
    }
}
