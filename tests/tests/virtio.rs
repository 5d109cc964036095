//! Issue 12: the virtio-net baseline. Two VMs with `net=virtio`, joined by
//! QEMU's own `-netdev dgram` over two Unix datagram sockets (the bench's
//! setup), ping and TCP-echo each other with the same apps as over
//! ivshmem-net, in interrupt and polling mode.

use std::time::Duration;

use abi::cmdline::{App, CommandLine, Mode, Net};
use abi::exit::ExitCode;
use abi::report::{AppsVerdict, PingSummary, ServerReady, TcpEchoResult, UdpEchoResult};
use qemu::bench::{Sockets, virtio_args};
use qemu::link::unique_socket_path;
use qemu::{Link, Outcome, Scenario, ScenarioError, VmConfig, VmLock};

/// The value, or a panic with every VM's logs.
#[track_caller]
fn check<T>(result: Result<T, ScenarioError>) -> T {
    result.unwrap_or_else(|error| panic!("{error}\n{}", error.logs))
}

fn ping_and_echo_over_virtio(mode: Mode) {
    let kernel = e2e::kernel();
    let _lock = VmLock::acquire().expect("cannot take the VM lock");
    let sockets = Sockets(
        unique_socket_path("e2e-dgram-0"),
        unique_socket_path("e2e-dgram-1"),
    );
    let mut scenario = Scenario::new("virtio", VmConfig::new(kernel), Link::None);
    scenario.set_timeout(Some(Duration::from_secs(60)));
    let line = |apps: Vec<App>, id: u16| CommandLine {
        apps,
        mode,
        net: Net::Virtio,
        id: Some(id),
        count: 5,
        ..CommandLine::default()
    };
    let vm = |scenario: &Scenario, name: &str, id: u16, apps: Vec<App>| {
        scenario
            .vm(name)
            .cmdline(line(apps, id))
            .qemu_args(virtio_args(&sockets, id))
    };
    let config = vm(&scenario, "B", 0, vec![App::Server]);
    check(scenario.spawn(config, Some(0)));
    check(scenario.wait_for::<ServerReady>("B", 0));
    let config = vm(
        &scenario,
        "A",
        1,
        vec![App::Ping, App::TcpEcho, App::UdpEcho],
    );
    check(scenario.spawn(config, Some(1)));
    let outcome = check(scenario.wait_exit("A"));
    let logs = scenario.context();
    assert_eq!(outcome, Outcome::Exit(ExitCode::Success), "{logs}");
    let ping: Vec<PingSummary> = check(scenario.reports("A"));
    assert_eq!(ping, [PingSummary::new(5, 5)], "{logs}");
    let tcp: Vec<TcpEchoResult> = check(scenario.reports("A"));
    assert_eq!(tcp.len(), 1, "{logs}");
    assert_eq!(tcp[0].bytes, 1 << 20, "{logs}");
    let udp: Vec<UdpEchoResult> = check(scenario.reports("A"));
    assert_eq!(udp.first().map(|u| u.echoed), Some(5), "{logs}");
    let verdict: Vec<AppsVerdict> = check(scenario.reports("A"));
    assert_eq!(verdict, [AppsVerdict { pass: true }], "{logs}");
    assert!(
        check(scenario.lines("A"))
            .iter()
            .any(|line| line.contains("virtio-net at")
                && line.contains(match mode {
                    Mode::Interrupt => "MSI-X",
                    Mode::Poll => "polling",
                })),
        "{logs}"
    );
}

#[test]
fn two_vms_ping_and_echo_over_virtio_net_with_interrupts() {
    ping_and_echo_over_virtio(Mode::Interrupt);
}

#[test]
fn two_vms_ping_and_echo_over_virtio_net_polling() {
    ping_and_echo_over_virtio(Mode::Poll);
}
