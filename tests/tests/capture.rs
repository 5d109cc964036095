//! Issue 8: the kernel's own capture of the link (`pcap=com2`, smoltcp's
//! `PcapWriter` on the second serial port) as `cargo run -- demo --pcap
//! FILE` writes it: the file opens with `tcpdump -r` and holds the demo's
//! ARP exchange, ICMP echo pairs and TCP handshake in order. The capture
//! wraps whatever device the kernel's stack runs on: virtio-net too.

use std::net::Ipv4Addr;

use abi::cmdline::{App, Capture, CommandLine, Net};
use abi::exit::ExitCode;
use abi::report::{Fatal, FatalKind, ServerReady};
use e2e::capture::{assert_exchange, tcpdump};
use e2e::{Outcome, Pair, VM_TIMEOUT, VmLock, apps, run_launcher};
use qemu::bench::{Sockets, virtio_args};
use qemu::{Link, Scenario, VmConfig};

#[test]
fn the_demo_captures_the_link_from_the_kernel_side() {
    e2e::kernel();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("demo.pcap");
    let pcap_arg = pcap.to_str().unwrap();
    let run = {
        let _lock = VmLock::acquire().expect("cannot take the VM lock");
        run_launcher(
            &["demo", "--pcap", pcap_arg, "--count", "3", "--bytes", "64K"],
            VM_TIMEOUT,
        )
    };
    assert_eq!(run.code(), 0, "{}", run.context());
    let note = format!("frames in {pcap_arg}");
    let frames: usize = run
        .stdout
        .lines()
        .find_map(|line| {
            let (count, _) = line.strip_prefix("note:      capture: ")?.split_once(' ')?;
            line.contains(&note).then(|| count.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no capture note\n{}", run.context()));
    let dump = tcpdump(&pcap);
    assert_eq!(dump.lines.len(), frames, "{}", dump.text());
    // VM A (10.0.0.2) pings B (10.0.0.1) from sequence number 0, then
    // opens its TCP echo to B's port 7.
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
    assert_exchange(&dump, a, b, 3, 0, 7);
}

#[test]
fn pcap_without_a_second_serial_port_is_a_clear_failure() {
    let mut pair = Pair::doorbell("pcap=com2 without COM2");
    let line = CommandLine {
        pcap: Some(Capture::Com2),
        ..apps(&[App::Server])
    };
    pair.start("A", 0, line);
    let outcome = pair.wait_exit("A");
    if outcome != Outcome::Exit(ExitCode::Failure) {
        pair.fail(&format!("expected a failure, got {outcome}"));
    }
    let fatal: Fatal<String> = pair.report("A");
    assert_eq!(fatal.kind, FatalKind::Failed, "{fatal}");
    assert!(fatal.message.contains("no UART at COM2"), "{fatal}");
}

#[test]
fn the_capture_wraps_virtio_net_too() {
    let kernel = e2e::kernel();
    let _lock = VmLock::acquire().expect("cannot take the VM lock");
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("virtio.pcap");
    let sockets = Sockets(dir.path().join("dgram-0"), dir.path().join("dgram-1"));
    let mut scenario = Scenario::new("pcap=com2 on virtio-net", VmConfig::new(kernel), Link::None);
    scenario.set_timeout(Some(VM_TIMEOUT));
    let fail = |scenario: &Scenario, what: &str| -> ! {
        panic!("{what}\n{}", scenario.context());
    };
    let server = CommandLine {
        net: Net::Virtio,
        id: Some(0),
        ..apps(&[App::Server])
    };
    let config = scenario
        .vm("B")
        .cmdline(server)
        .qemu_args(virtio_args(&sockets, 0));
    if let Err(e) = scenario.spawn(config, Some(0)) {
        fail(&scenario, &format!("B: {e}"));
    }
    if let Err(e) = scenario.wait_for::<ServerReady>("B", 0) {
        fail(&scenario, &format!("B: {e}"));
    }
    let client = CommandLine {
        net: Net::Virtio,
        id: Some(1),
        count: 3,
        bytes: 64 << 10,
        pcap: Some(Capture::Com2),
        ..apps(&[App::Ping, App::TcpEcho])
    };
    let config = scenario
        .vm("A")
        .cmdline(client)
        .qemu_args(virtio_args(&sockets, 1))
        .com2(&pcap);
    if let Err(e) = scenario.spawn(config, Some(1)) {
        fail(&scenario, &format!("A: {e}"));
    }
    match scenario.wait_exit("A") {
        Ok(Outcome::Exit(ExitCode::Success)) => {}
        other => fail(&scenario, &format!("A ended with {other:?}")),
    }
    scenario.kill_all();
    let dump = tcpdump(&pcap);
    let (a, b) = (Ipv4Addr::new(10, 0, 0, 2), Ipv4Addr::new(10, 0, 0, 1));
    assert_exchange(&dump, a, b, 3, 0, 7);
}
