//! Issue 8: Linux's own network stack as the VM's peer. One VM runs on a
//! doorbell link (started first, so it is peer 0 at 10.0.0.1); the host
//! bridge joins as peer 1 in a network namespace each test makes for
//! itself ([`HostPeer`]), its TAP at 10.0.0.254/24. No traffic leaves that
//! namespace, and the namespace dies with the test.
//!
//! Linux's `ping` and a Rust `std` TCP client reach the VM's echo server;
//! the VM's own ping, TCP and UDP echo clients reach a Linux echo server;
//! the VM restarts under a running bridge; the bridge's capture reads back
//! with `tcpdump -r`; Linux's ping above the MTU (IP fragments both ways),
//! at either MTU on Linux's side, and over IPv6, and a TCP echo over IPv6
//! (issue 9 against a stack nobody here wrote). Without root or `/dev/net/tun` every test here says
//! why it skipped; where `CI` is set they fail instead
//! ([`hostpeer::skip`]).

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use abi::cmdline::{App, CommandLine, Ipv6Cidr};
use abi::report::{PingSummary, TcpEchoResult, UdpEchoResult};
use e2e::capture::{Event, assert_exchange, tcpdump};
use e2e::{Pair, apps};
use qemu::hostpeer::{
    self, ECHO_PORT, HOST_ADDRESS, HostPeer, LinuxPing, Namespace, PingOptions, VM_ADDRESS,
};

/// How long the link may take to come up (or go down) once both peers run.
const LINK_TIMEOUT: Duration = Duration::from_secs(20);
/// The longest a TCP echo may stall.
const IDLE: Duration = Duration::from_secs(20);

/// Skips the test, saying why, where Linux cannot be a peer (no root, no
/// TUN/TAP driver).
macro_rules! require_host_peer {
    () => {
        if let Some(reason) = hostpeer::unavailable() {
            hostpeer::skip(&reason);
            return;
        }
    };
}

/// Unwraps `result`, or fails with the error and every VM's logs.
#[track_caller]
fn ok<T>(pair: &Pair, result: anyhow::Result<T>) -> T {
    result.unwrap_or_else(|e| pair.fail(&format!("{e:#}")))
}

/// A doorbell pair with VM `vm` (peer 0, 10.0.0.1) running `cmdline`.
fn one_vm(name: &str, cmdline: CommandLine) -> Pair {
    let mut pair = Pair::doorbell(name);
    pair.start("vm", 0, cmdline);
    pair
}

/// The host bridge on `pair`'s link, in a namespace of its own (or in
/// `namespace`), with its capture going to `pcap` if given.
fn host_peer(
    pair: &Pair,
    namespace: Option<Namespace>,
    pcap: Option<&std::path::Path>,
) -> HostPeer {
    let link = pair.link().bridge_link().expect("a doorbell link");
    let mut options = hostpeer::bridge_options(link);
    options.pcap = pcap.map(Into::into);
    let namespace = namespace.unwrap_or_else(|| ok(pair, Namespace::new().map_err(Into::into)));
    ok(pair, HostPeer::start_in(namespace, options))
}

/// Linux pings the VM `count` times, 20 ms apart; all must come back.
#[track_caller]
fn linux_pings(pair: &Pair, host: &HostPeer, count: u32) -> LinuxPing {
    let options = PingOptions::new(VM_ADDRESS, count, Duration::from_millis(20));
    let ping = ok(pair, host.ping(&options, |line| println!("ping: {line}")));
    if ping.received != count || ping.loss_percent != 0.0 || ping.rtts.len() != count as usize {
        pair.fail(&format!("Linux's ping lost replies: {ping}"));
    }
    if ping.summary.is_none() {
        pair.fail(&format!(
            "Linux's ping reported no round-trip times: {ping}"
        ));
    }
    ping
}

fn vm_echo_server() -> SocketAddr {
    (VM_ADDRESS, ECHO_PORT).into()
}

#[test]
fn linux_pings_the_vm() {
    require_host_peer!();
    let pair = one_vm("Linux pings the VM", apps(&[App::Server]));
    let mut host = host_peer(&pair, None, None);
    ok(&pair, host.wait_for_link(true, LINK_TIMEOUT));
    let ping = linux_pings(&pair, &host, 20);
    println!("Linux → VM: {ping}");
    let summary = ok(&pair, host.stop());
    assert_eq!(summary.protocol_errors, 0, "{summary}");
    assert!(summary.to_link.frames >= 20, "{summary}");
    assert!(summary.to_tap.frames >= 20, "{summary}");
}

#[test]
fn a_linux_tcp_client_echoes_16_mib_through_the_vm() {
    require_host_peer!();
    let mut pair = one_vm("a Linux TCP client", apps(&[App::Server]));
    let mut host = host_peer(&pair, None, None);
    ok(&pair, host.wait_for_link(true, LINK_TIMEOUT));
    let echo = ok(&pair, host.tcp_echo(vm_echo_server(), 16 << 20, IDLE));
    println!(
        "Linux → VM TCP echo: {} bytes verified in {:.3} s, {:.1} Mbit/s",
        echo.bytes,
        echo.elapsed.as_secs_f64(),
        echo.mbits()
    );
    pair.assert_running("vm");
    let summary = ok(&pair, host.stop());
    assert_eq!(summary.protocol_errors, 0, "{summary}");
    assert!(summary.to_link.bytes > 16 << 20, "{summary}");
    assert!(summary.to_tap.bytes > 16 << 20, "{summary}");
}

#[test]
fn the_vms_clients_reach_a_linux_echo_server() {
    require_host_peer!();
    const BYTES: u64 = 1 << 20;
    const COUNT: u32 = 5;
    let client = CommandLine {
        peer: Some(HOST_ADDRESS.into()),
        count: COUNT,
        bytes: BYTES,
        ..apps(&[App::Ping, App::TcpEcho, App::UdpEcho])
    };
    let mut pair = one_vm("the VM's clients reach Linux", client);
    // The echo server listens before the bridge joins: the VM's clients
    // start as soon as the link is up.
    let namespace = ok(&pair, Namespace::new().map_err(Into::into));
    let server = ok(
        &pair,
        namespace
            .run(|| hostpeer::EchoServer::start((Ipv4Addr::UNSPECIFIED, ECHO_PORT).into()))
            .map_err(Into::into),
    );
    let host = host_peer(&pair, Some(namespace), None);
    pair.assert_pass("vm");
    pair.assert_report("vm", &PingSummary::new(COUNT, COUNT));
    let tcp: TcpEchoResult = pair.report("vm");
    assert_eq!(tcp.bytes, BYTES, "{tcp}");
    let udp: UdpEchoResult = pair.report("vm");
    assert_eq!((udp.echoed, udp.count), (COUNT, COUNT), "{udp}");
    println!("VM → Linux: {tcp}; {udp}");
    let statistics = server.stop();
    assert_eq!(statistics.datagrams, u64::from(COUNT), "{statistics:?}");
    let echoed: u64 = statistics.connections.iter().map(|c| c.bytes).sum();
    assert_eq!(echoed, BYTES, "{statistics:?}");
    let summary = ok(&pair, host.stop());
    assert_eq!(summary.protocol_errors, 0, "{summary}");
}

#[test]
fn linux_reaches_a_restarted_vm() {
    require_host_peer!();
    let mut pair = one_vm("Linux and a restarted VM", apps(&[App::Server]));
    let mut host = host_peer(&pair, None, None);
    ok(&pair, host.wait_for_link(true, LINK_TIMEOUT));
    linux_pings(&pair, &host, 5);
    // The VM dies: the server zeroes its state and rings us; the link and
    // the TAP's carrier go.
    pair.kill("vm");
    ok(&pair, host.wait_for_link(false, LINK_TIMEOUT));
    // A new VM (a new MAC) takes peer 0 again at once; the carrier comes
    // back only after Linux has seen it go, so Linux has forgotten the old
    // MAC and reaches the new VM without a lost ping.
    pair.start("vm", 0, apps(&[App::Server]));
    ok(&pair, host.wait_for_link(true, LINK_TIMEOUT));
    let ping = linux_pings(&pair, &host, 10);
    println!("Linux → restarted VM: {ping}");
    let echo = ok(&pair, host.tcp_echo(vm_echo_server(), 1 << 20, IDLE));
    assert_eq!(echo.bytes, 1 << 20);
    let summary = ok(&pair, host.stop());
    assert_eq!(summary.link_ups, 2, "{summary}");
    assert_eq!(summary.protocol_errors, 0, "{summary}");
}

#[test]
fn the_bridge_capture_reads_back_with_tcpdump() {
    require_host_peer!();
    let dir = tempfile::tempdir().unwrap();
    let pcap = dir.path().join("bridge.pcap");
    let pair = one_vm("the bridge's capture", apps(&[App::Server]));
    let mut host = host_peer(&pair, None, Some(&pcap));
    ok(&pair, host.wait_for_link(true, LINK_TIMEOUT));
    linux_pings(&pair, &host, 3);
    let echo = ok(&pair, host.tcp_echo(vm_echo_server(), 64 << 10, IDLE));
    assert_eq!(echo.bytes, 64 << 10);
    let summary = ok(&pair, host.stop());
    let dump = tcpdump(&pcap);
    println!("{}", dump.text());
    assert_eq!(
        dump.lines.len() as u64,
        summary.to_link.frames + summary.to_tap.frames,
        "one line per frame that crossed: {summary}\n{}",
        dump.text()
    );
    // iputils numbers its echo requests from 1.
    assert_exchange(&dump, HOST_ADDRESS, VM_ADDRESS, 3, 1, ECHO_PORT);
}

#[test]
fn tcpdump_lines_are_read() {
    let ip = |s: &str| s.parse::<Ipv4Addr>().unwrap();
    assert_eq!(
        Event::parse("00:00:00.1 ARP, Request who-has 10.0.0.1 tell 10.0.0.254, length 28"),
        Some(Event::ArpRequest {
            target: ip("10.0.0.1"),
            sender: ip("10.0.0.254")
        })
    );
    assert_eq!(
        Event::parse(
            "00:00:00.1 ARP, Request who-has 10.0.0.1 (ff:ff:ff:ff:ff:ff) tell 10.0.0.2, length 28"
        ),
        Some(Event::ArpRequest {
            target: ip("10.0.0.1"),
            sender: ip("10.0.0.2")
        })
    );
    assert_eq!(
        Event::parse("00:00:00.1 ARP, Reply 10.0.0.1 is-at 02:00:00:00:00:01, length 28"),
        Some(Event::ArpReply {
            sender: ip("10.0.0.1")
        })
    );
    assert_eq!(
        Event::parse(
            "00:00:00.1 IP 10.0.0.254 > 10.0.0.1: ICMP echo request, id 7, seq 3, length 64"
        ),
        Some(Event::EchoRequest {
            from: ip("10.0.0.254"),
            to: ip("10.0.0.1"),
            seq: 3
        })
    );
    assert_eq!(
        Event::parse(
            "00:00:00.1 IP 10.0.0.1 > 10.0.0.254: ICMP echo reply, id 7, seq 3, length 64"
        ),
        Some(Event::EchoReply {
            from: ip("10.0.0.1"),
            to: ip("10.0.0.254"),
            seq: 3
        })
    );
    let Some(Event::Tcp { from, to, flags }) = Event::parse(
        "00:00:00.1 IP 10.0.0.1.7 > 10.0.0.254.45678: Flags [S.], seq 1, ack 2, win 64, length 0",
    ) else {
        panic!("not a TCP line")
    };
    assert_eq!((from, to), ((ip("10.0.0.1"), 7), (ip("10.0.0.254"), 45678)));
    assert_eq!(flags.as_str(), "S.");
    assert_eq!(
        Event::parse("00:00:00.1 IP6 fe80::1 > ff02::2: ICMP6, router solicitation, length 16"),
        None
    );
}

/// Linux pings `target` `count` times with `size` payload bytes; all must come back.
#[track_caller]
fn linux_pings_sized(pair: &Pair, host: &HostPeer, target: std::net::IpAddr, size: u32) {
    let mut options = PingOptions::new(target, 5, Duration::from_millis(20));
    options.size = size;
    let ping = ok(pair, host.ping(&options, |line| println!("ping: {line}")));
    if ping.received != 5 || ping.rtts.len() != 5 {
        pair.fail(&format!(
            "Linux's ping -s {size} {target} lost replies: {ping}"
        ));
    }
    println!("Linux → VM, {size} bytes to {target}: {ping}");
}

/// Issue 9 against Linux's own stack: pings above the MTU travel as IP
/// fragments both ways (Linux fragments, the VM reassembles, replies and
/// fragments its reply), with Linux at the link's default MTU and at 1500;
/// Linux's ping and a TCP echo reach the VM over IPv6.
#[test]
fn linux_reaches_the_vm_with_fragments_and_over_ipv6() {
    require_host_peer!();
    let vm6 = Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1);
    let server = CommandLine {
        ip6: Some(Ipv6Cidr {
            address: vm6,
            prefix: 64,
        }),
        ..apps(&[App::Server])
    };
    let pair = one_vm("Linux: fragments and IPv6", server);
    for linux_mtu in [None, Some(1500)] {
        let link = pair.link().bridge_link().expect("a doorbell link");
        let mut options = hostpeer::bridge_options(link);
        options.mtu = linux_mtu;
        let namespace = ok(&pair, Namespace::new().map_err(Into::into));
        let mut host = ok(&pair, HostPeer::start_in(namespace, options));
        ok(&pair, host.wait_for_link(true, LINK_TIMEOUT));
        println!("Linux's MTU: {linux_mtu:?} (None: the link's default)");
        for size in [1472, 1473, 8000, 20000, 65507] {
            linux_pings_sized(&pair, &host, VM_ADDRESS.into(), size);
        }
        ok(
            &pair,
            host.add_ipv6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 0xfe), 64),
        );
        linux_pings_sized(&pair, &host, vm6.into(), 56);
        linux_pings_sized(&pair, &host, vm6.into(), 1400);
        let echo = ok(
            &pair,
            host.tcp_echo(SocketAddr::from((vm6, ECHO_PORT)), 1 << 20, IDLE),
        );
        println!("Linux TCP echo over IPv6: {echo:?}");
        let summary = ok(&pair, host.stop());
        assert_eq!(summary.protocol_errors, 0, "{summary}");
    }
}
