//! Issue 9 acceptance: interoperating with a Linux peer out of the box.
//!
//! * IPv4 fragmentation and reassembly at every MTU combination of 1500,
//!   9000 and 16384, for pings and UDP datagrams of 56 to 60000 bytes;
//! * IPv6 between two VMs: ping to a static and a link-local address, TCP
//!   and UDP echo;
//! * a stream of first fragments that never complete: unfragmented traffic
//!   goes on, fragmented traffic works again once the timeout has passed;
//! * a peer that restarts (with a new MAC) while we keep sending: traffic
//!   resumes at once.
//!
//! Each scenario runs one VM pair under the VM lock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use abi::cmdline::{App, CommandLine, Ipv6Cidr};
use abi::exit::ExitCode;
use abi::report::{
    AppVerdict, FragmentFloodResult, LinkDown, LinkUp, NetConfig, NetStatistics, PeerFirstFrame,
    PeerGuess, PeerSession, PingReply, PingStart, PingSummary, ServerReady, TcpEchoResult,
    UdpEchoResult,
};
use e2e::{Outcome, Pair, apps};

/// The sizes every MTU combination exchanges: the largest ICMP or UDP
/// payload one 1500-byte datagram carries (1472), one byte more, a jumbo
/// datagram and one close to the largest IPv4 datagram.
const SIZES: [u32; 5] = [56, 1472, 1473, 8000, 60000];

const MIB: u64 = 1 << 20;

/// Asserts `name` printed the verdict `<app>: PASS`.
fn passed(pair: &Pair, name: &str, app: App) {
    pair.assert_report(name, &AppVerdict { app, pass: true });
}

/// Asserts that `name`'s ping rounds, from its `skip`-th on, were one per
/// size of `sizes` to `peer`, `count` pings each, every one answered.
fn assert_pings(pair: &Pair, name: &str, skip: usize, peer: IpAddr, sizes: &[u32], count: u32) {
    let starts: Vec<PingStart> = pair.reports(name).into_iter().skip(skip).collect();
    let summaries: Vec<PingSummary> = pair.reports(name).into_iter().skip(skip).collect();
    let rounds: Vec<(IpAddr, u32)> = starts.iter().map(|s| (s.peer, s.size)).collect();
    let expected: Vec<(IpAddr, u32)> = sizes.iter().map(|&size| (peer, size)).collect();
    if rounds != expected || summaries.len() != sizes.len() {
        pair.fail(&format!(
            "{name}: expected ping rounds {expected:?}, got {rounds:?}"
        ));
    }
    for (size, summary) in sizes.iter().zip(&summaries) {
        if *summary != PingSummary::new(count, count) {
            pair.fail(&format!("{name}: pings of {size} bytes: {summary}"));
        }
    }
}

/// Asserts that `name` echoed `count` UDP datagrams of each of `sizes`.
fn assert_udp(pair: &Pair, name: &str, sizes: &[u32], count: u32) {
    let results: Vec<UdpEchoResult> = pair.reports(name);
    let expected: Vec<UdpEchoResult> = sizes
        .iter()
        .map(|&size| UdpEchoResult {
            echoed: count,
            count,
            size,
        })
        .collect();
    if results != expected {
        pair.fail(&format!(
            "{name}: UDP echo {results:?}, expected {expected:?}"
        ));
    }
    passed(pair, name, App::UdpEcho);
}

/// Asserts `name` verified `bytes` bytes of TCP echo.
fn assert_tcp(pair: &Pair, name: &str, bytes: u64) {
    let result: TcpEchoResult = pair.report(name);
    if result.bytes != bytes {
        pair.fail(&format!(
            "{name}: expected {bytes} bytes verified: {result}"
        ));
    }
    passed(pair, name, App::TcpEcho);
}

/// The first address of `name` that `pick`s, from its `net:` line (waiting
/// for it).
fn address_of(pair: &Pair, name: &str, pick: impl Fn(&IpAddr) -> bool) -> IpAddr {
    let (_, config) = pair.wait_for::<NetConfig>(name, 0);
    config
        .addresses
        .iter()
        .map(|prefix| prefix.address)
        .find(pick)
        .unwrap_or_else(|| pair.fail(&format!("{name}: no such address in {config}")))
}

fn is_link_local(address: &IpAddr) -> bool {
    matches!(address, IpAddr::V6(address) if address.is_unicast_link_local())
}

/// Fails if `name` logged a warning or an error (IPv6 multicast from a
/// Linux peer, for instance, must be handled or ignored quietly).
fn assert_quiet(pair: &Pair, name: &str) {
    if let Some(line) = pair
        .lines(name)
        .into_iter()
        .find(|line| line.contains(" WARN ") || line.contains(" ERROR "))
    {
        pair.fail(&format!("{name} logged: {line}"));
    }
}

// --- IPv4 fragmentation at every MTU combination -----------------------------

/// A server at `mtu_server` and a client at `mtu_client` exchange pings and
/// UDP datagrams of every size in [`SIZES`]: each request crosses the link
/// one way and its echo the other, so each side fragments at its own MTU
/// and reassembles at the other's.
fn mtus(mtu_server: u16, mtu_client: u16) {
    let mut pair = Pair::doorbell(&format!(
        "MTU {mtu_server} (server) vs {mtu_client} (client)"
    ));
    pair.start(
        "A",
        0,
        CommandLine {
            mtu: Some(mtu_server),
            ..apps(&[App::Server])
        },
    );
    let client = CommandLine {
        mtu: Some(mtu_client),
        count: 2,
        sizes: SIZES.to_vec(),
        ..apps(&[App::Ping, App::UdpEcho])
    };
    pair.start("B", 1, client);
    pair.assert_pass("B");
    let server = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
    assert_pings(&pair, "B", 0, server, &SIZES, 2);
    passed(&pair, "B", App::Ping);
    assert_udp(&pair, "B", &SIZES, 2);
    // The client fragmented what exceeded its MTU and reassembled what
    // exceeded the server's; nothing was left incomplete.
    let statistics: NetStatistics = pair.report("B");
    if statistics.fragmented == 0 || statistics.reassembly.reassembled == 0 {
        pair.fail(&format!("B: expected fragments both ways: {statistics}"));
    }
    if statistics.reassembly.incomplete + statistics.reassembly.no_slot != 0 {
        pair.fail(&format!("B: reassembly lost datagrams: {statistics}"));
    }
    // Each side sees the other's MTU in its largest frame.
    let session: PeerSession = pair.report("B");
    let server_frames = usize::from(mtu_server).min(60000 + 28) as u32;
    if session.largest_frame + 8 < server_frames + 14 || session.guess != PeerGuess::EthIvshmem {
        pair.fail(&format!("B: the server's frames: {session}"));
    }
    pair.assert_running("A");
}

#[test]
fn mtu_1500_server_and_16384_client_exchange_every_size() {
    mtus(1500, 16384);
}

#[test]
fn mtu_16384_server_and_9000_client_exchange_every_size() {
    mtus(16384, 9000);
}

#[test]
fn mtu_9000_server_and_1500_client_exchange_every_size() {
    mtus(9000, 1500);
}

// --- IPv6 between two VMs ------------------------------------------------------

fn ip6(address: &str) -> Option<Ipv6Cidr> {
    Some(Ipv6Cidr {
        address: address.parse().unwrap(),
        prefix: 64,
    })
}

#[test]
fn ipv6_ping_tcp_and_udp_echo_between_two_vms() {
    let mut pair = Pair::doorbell("IPv6");
    pair.start(
        "A",
        0,
        CommandLine {
            ip6: ip6("fd00::1"),
            ..apps(&[App::Server])
        },
    );
    let static_a = IpAddr::V6("fd00::1".parse().unwrap());
    // To the static address: ping (one jumbo size: the link's default MTU
    // is 16384, and smoltcp does not fragment IPv6), TCP and UDP echo.
    let sizes = [56, 1232, 8000];
    pair.start(
        "B",
        1,
        CommandLine {
            ip6: ip6("fd00::2"),
            peer: Some(static_a),
            count: 3,
            sizes: sizes.to_vec(),
            bytes: MIB,
            ..apps(&[App::Ping, App::TcpEcho, App::UdpEcho])
        },
    );
    pair.assert_pass("B");
    assert_pings(&pair, "B", 0, static_a, &sizes, 3);
    assert_tcp(&pair, "B", MIB);
    assert_udp(&pair, "B", &sizes, 3);
    let start: PingStart = pair.report("B");
    if start.local != IpAddr::V6("fd00::2".parse().unwrap()) {
        pair.fail(&format!("B should ping from its static address: {start}"));
    }
    // A listens on every address.
    let listening: Vec<IpAddr> = pair
        .reports::<ServerReady>("A")
        .iter()
        .map(|ready| ready.address.ip())
        .collect();
    let link_local_a = address_of(&pair, "A", is_link_local);
    if !listening.contains(&static_a) || !listening.contains(&link_local_a) {
        pair.fail(&format!("A listens on {listening:?}"));
    }

    // To the link-local address, from B's own link-local address.
    pair.start(
        "B",
        1,
        CommandLine {
            peer: Some(link_local_a),
            count: 3,
            ..apps(&[App::Ping])
        },
    );
    pair.assert_pass("B");
    assert_pings(&pair, "B", 0, link_local_a, &[56], 3);
    let start: PingStart = pair.report("B");
    if !is_link_local(&start.local) {
        pair.fail(&format!(
            "B should ping from its link-local address: {start}"
        ));
    }
    pair.assert_running("A");
    assert_quiet(&pair, "A");
}

// --- reassembly under a stream of first fragments -----------------------------

#[test]
fn a_stream_of_first_fragments_does_not_exhaust_reassembly_for_good() {
    let mut pair = Pair::doorbell("first fragments");
    pair.set_timeout(Duration::from_secs(90));
    pair.start("A", 0, apps(&[App::Server]));
    // B floods A with first fragments for 4 s (A's slots expire after 3 s
    // and are taken again), probing with small and fragmented pings, waits
    // out A's timeout, then sends fragmented traffic again. MTU 1500 makes
    // 8000-byte datagrams travel in fragments.
    pair.start(
        "B",
        1,
        CommandLine {
            mtu: Some(1500),
            count: 3,
            sizes: vec![8000],
            ..apps(&[App::FragmentFlood, App::Ping, App::UdpEcho])
        },
    );
    pair.assert_pass("B");
    let flood: FragmentFloodResult = pair.report("B");
    if flood.small_sent < 30 || flood.small_answered != flood.small_sent {
        pair.fail(&format!("B: unfragmented pings must get through: {flood}"));
    }
    if flood.large_answered * 2 > flood.large_sent || flood.fragments < 1000 {
        pair.fail(&format!(
            "B: the stream should have kept A's slots taken: {flood}"
        ));
    }
    passed(&pair, "B", App::FragmentFlood);
    assert_pings(
        &pair,
        "B",
        0,
        IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
        &[8000],
        3,
    );
    assert_udp(&pair, "B", &[8000], 3);
    // B's exit ends A's session: A counted what it dropped.
    let (_, session) = pair.wait_for::<PeerSession>("A", 0);
    let slots = 4; // reassembly-buffer-count-4
    if session.reassembly.no_slot == 0 || session.reassembly.incomplete < 2 * slots {
        pair.fail(&format!("A: expected drops in reassembly: {session}"));
    }
    if session.reassembly.reassembled < 6 {
        pair.fail(&format!(
            "A: fragmented pings and UDP after the stream: {session}"
        ));
    }
    pair.assert_running("A");
}

// --- a peer that restarts with a new MAC ---------------------------------------

#[test]
fn traffic_resumes_at_once_after_the_peer_restarts_with_a_new_mac() {
    let mut pair = Pair::doorbell("peer restart with a new MAC");
    // A pings B every 50 ms for 6 s while B is killed and started again.
    // A request sent while B is away waits in A's socket or is lost; the
    // ones after B's return must be answered at once: without the
    // neighbour flush at link-down, A would keep sending to B's old MAC
    // (which the new B ignores) until smoltcp's cache entry expires (60 s).
    pair.start(
        "A",
        0,
        CommandLine {
            count: 120,
            interval: 50,
            ..apps(&[App::Ping])
        },
    );
    pair.start("B", 1, apps(&[App::Server]));
    let (up_a, _) = pair.wait_for::<LinkUp>("A", 0);
    let (before, _) = pair.wait_for::<PingReply>("A", up_a + 1);
    pair.wait_for::<PingReply>("A", before + 1);
    let first_mac: PeerFirstFrame = pair.report("A");
    pair.kill("B");
    let (down_a, _) = pair.wait_for::<LinkDown>("A", up_a + 1);
    pair.start("B", 1, apps(&[App::Server]));
    let (again, _) = pair.wait_for::<LinkUp>("A", down_a + 1);
    let up_at = Instant::now();
    let (resumed, reply) = pair.wait_for::<PingReply>("A", again + 1);
    let waited = up_at.elapsed();
    if waited > Duration::from_secs(2) {
        pair.fail(&format!(
            "A's pings resumed {waited:?} after the link came back ({reply})"
        ));
    }
    let macs: Vec<PeerFirstFrame> = pair.reports("A");
    if macs.len() != 2 || macs[1].mac == first_mac.mac {
        pair.fail(&format!("B should have come back with a new MAC: {macs:?}"));
    }
    let ended: PeerSession = pair.report("A");
    if !ended.ended || ended.mac != Some(first_mac.mac) {
        pair.fail(&format!("A's first session: {ended}"));
    }
    // A goes on pinging the new B to the end; at most the requests sent
    // while B was away are lost (A's verdict is FAIL if any was).
    let outcome = pair.wait_exit("A");
    let summary: PingSummary = pair.report("A");
    let replies_after = pair.lines("A")[resumed..]
        .iter()
        .filter(|line| line.parse::<PingReply>().is_ok())
        .count();
    let ended_normally = matches!(
        outcome,
        Outcome::Exit(ExitCode::Success | ExitCode::Failure)
    );
    if !ended_normally || summary.transmitted - summary.received > 10 || replies_after < 50 {
        pair.fail(&format!(
            "A: expected replies to the end: {outcome}, {summary}, {replies_after} replies after the restart"
        ));
    }
}
