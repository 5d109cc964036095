//! Issue 5 acceptance: IP over the ivshmem-net link between two VMs. ICMP
//! echo both ways, TCP echo verified byte by byte and UDP echo in interrupt
//! mode (`ivshmem-doorbell` + our v1 server, on `pc` and `q35`) and polling
//! mode (`ivshmem-plain`), concurrent and sequential TCP connections, both
//! start orders, a peer restart in the middle of a transfer, and mismatched
//! configurations that must give a working link or a clear error, never a
//! hang. Each scenario runs one real VM pair under the VM lock.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use abi::cmdline::{App, CommandLine, Mode};
use abi::exit::ExitCode;
use abi::report::{
    AppVerdict, DeviceKind, LinkDown, LinkUp, PingRtt, PingStart, PingSummary, TcpEchoProgress,
    TcpEchoResult, TcpEchoRound, UdpEchoResult,
};
use e2e::{DeviceReport, Machine, Outcome, Pair, apps};

const MIB: u64 = 1 << 20;

/// Asserts `name` printed the verdict `<app>: PASS`.
fn passed(pair: &Pair, name: &str, app: App) {
    pair.assert_report(name, &AppVerdict { app, pass: true });
}

/// Asserts `name` printed `ping: N transmitted, N received, 0% loss` with
/// `count` requests, the round-trip times and `ping: PASS`.
fn assert_ping(pair: &Pair, name: &str, count: u32) {
    let summary: PingSummary = pair.report(name);
    if summary != PingSummary::new(count, count) {
        pair.fail(&format!(
            "{name}: expected {count} of {count} pings: {summary}"
        ));
    }
    pair.report::<PingRtt>(name);
    passed(pair, name, App::Ping);
}

/// Asserts `name` pinged from `local` to `peer`.
fn assert_ping_direction(pair: &Pair, name: &str, local: [u8; 4], peer: [u8; 4]) {
    let start: PingStart = pair.report(name);
    let ip = |octets: [u8; 4]| IpAddr::V4(Ipv4Addr::from(octets));
    if (start.local, start.peer) != (ip(local), ip(peer)) {
        pair.fail(&format!("{name}: unexpected direction: {start}"));
    }
}

/// Asserts `name` verified `bytes` bytes of TCP echo in all and passed.
fn assert_tcp(pair: &Pair, name: &str, bytes: u64) {
    let result: TcpEchoResult = pair.report(name);
    if result.bytes != bytes || result.throughput.0 == 0 {
        pair.fail(&format!(
            "{name}: expected {bytes} bytes verified: {result}"
        ));
    }
    passed(pair, name, App::TcpEcho);
}

/// Asserts `name` got all `count` UDP datagrams echoed intact and passed.
fn assert_udp(pair: &Pair, name: &str, count: u32) {
    let result: UdpEchoResult = pair.report(name);
    if (result.echoed, result.count) != (count, count) {
        pair.fail(&format!(
            "{name}: expected {count} of {count} echoed: {result}"
        ));
    }
    passed(pair, name, App::UdpEcho);
}

/// The echo server.
fn server() -> CommandLine {
    apps(&[App::Server])
}

/// The full client: 5 pings, 1 MiB TCP echo, 5 UDP datagrams.
fn all_apps() -> CommandLine {
    CommandLine {
        count: 5,
        bytes: MIB,
        ..apps(&[App::Ping, App::TcpEcho, App::UdpEcho])
    }
}

/// Checks the full client's results on `name` (which must have passed).
fn assert_all_apps(pair: &mut Pair, name: &str) {
    pair.assert_pass(name);
    assert_ping(pair, name, 5);
    assert_tcp(pair, name, MIB);
    assert_udp(pair, name, 5);
}

/// Asserts that the device line names a device of `kind`.
fn assert_device(pair: &Pair, report: &DeviceReport, kind: DeviceKind) {
    if report.device().map(|device| device.kind) != Some(kind) {
        pair.fail(&format!("expected {kind}, got {report}"));
    }
}

// --- 4. ping both ways -------------------------------------------------------

fn pings(count: u32) -> CommandLine {
    CommandLine {
        count,
        ..apps(&[App::Ping])
    }
}

#[test]
fn ping_from_b_to_server_a() {
    let mut pair = Pair::doorbell("ping B -> A");
    pair.start("A", 0, server());
    pair.start("B", 1, pings(5));
    pair.assert_pass("B");
    assert_ping(&pair, "B", 5);
    assert_ping_direction(&pair, "B", [10, 0, 0, 2], [10, 0, 0, 1]);
    pair.assert_running("A");
}

#[test]
fn ping_from_a_to_server_b() {
    let mut pair = Pair::doorbell("ping A -> B");
    pair.start("A", 0, pings(5));
    pair.start("B", 1, server());
    pair.assert_pass("A");
    assert_ping(&pair, "A", 5);
    assert_ping_direction(&pair, "A", [10, 0, 0, 1], [10, 0, 0, 2]);
    pair.assert_running("B");
}

// --- 5. TCP and UDP echo in interrupt and polling mode ----------------------

fn echo_over_doorbell(machine: Machine) {
    let mut pair = Pair::doorbell(&format!("echo over doorbell on {machine}"));
    let a = pair.start_on(machine, "A", 0, server());
    assert_device(&pair, &a, DeviceKind::Doorbell);
    pair.start_on(machine, "B", 1, all_apps());
    assert_all_apps(&mut pair, "B");
    pair.assert_running("A");
}

#[test]
fn tcp_and_udp_echo_over_doorbell_on_pc() {
    echo_over_doorbell(Machine::Pc);
}

#[test]
fn tcp_and_udp_echo_over_doorbell_on_q35() {
    echo_over_doorbell(Machine::Q35);
}

#[test]
fn tcp_and_udp_echo_over_plain_polling() {
    let mut pair = Pair::plain("echo over plain (polling)");
    let a = pair.start("A", 0, server());
    assert_device(&pair, &a, DeviceKind::Plain);
    pair.start("B", 1, all_apps());
    assert_all_apps(&mut pair, "B");
    pair.assert_running("A");
}

// --- 6. concurrent and sequential TCP connections ---------------------------

#[test]
fn tcp_echo_parallel_and_repeated_connections() {
    let mut pair = Pair::doorbell("tcp-echo parallel=3 repeat=2");
    pair.start("A", 0, server());
    let client = CommandLine {
        bytes: 2 * MIB,
        parallel: 3,
        repeat: 2,
        ..apps(&[App::TcpEcho])
    };
    pair.start("B", 1, client);
    pair.assert_pass("B");
    for round in [1, 2] {
        pair.report_where("B", |r: &TcpEchoRound| {
            (r.round, r.bytes, r.connections) == (round, 2 * MIB, 3)
        });
    }
    assert_tcp(&pair, "B", 2 * 2 * MIB);
}

// --- 7. start order ----------------------------------------------------------

const HEAD_START: Duration = Duration::from_secs(3);

#[test]
fn server_starts_3s_before_the_client() {
    let mut pair = Pair::doorbell("server first");
    pair.start("server", 0, server());
    pair.sleep(HEAD_START);
    pair.assert_running("server");
    pair.assert_no::<LinkUp>("server");
    pair.start("client", 1, all_apps());
    assert_all_apps(&mut pair, "client");
    pair.report::<LinkUp>("server");
}

#[test]
fn client_starts_3s_before_the_server() {
    let mut pair = Pair::doorbell("client first");
    // The client comes first, so it gets ID 0 (10.0.0.1); it waits for the link.
    let client = CommandLine {
        link_timeout: 30,
        ..all_apps()
    };
    pair.start("client", 0, client);
    pair.sleep(HEAD_START);
    pair.assert_running("client");
    pair.assert_no::<LinkUp>("client");
    pair.start("server", 1, server());
    assert_all_apps(&mut pair, "client");
    assert_ping_direction(&pair, "client", [10, 0, 0, 1], [10, 0, 0, 2]);
}

// --- 8. peer restart in the middle of a transfer -----------------------------

/// The TCP echo client's progress, logged every quarter of the transfer.
fn tcp_progress(line: &str) -> Option<TcpEchoProgress> {
    let start = line.find("tcp-echo: ")?;
    line[start..]
        .parse::<TcpEchoProgress>()
        .ok()
        .filter(|progress| progress.percent >= 25)
}

#[test]
fn client_restart_mid_transfer() {
    let mut pair = Pair::doorbell("client restart mid-transfer");
    pair.start("A", 0, server());
    let transfer = |bytes| CommandLine {
        bytes,
        ..apps(&[App::TcpEcho])
    };
    pair.start("B", 1, transfer(256 * MIB));
    let (index_a, up) = pair.wait_for::<LinkUp>("A", 0);
    assert_eq!(up.link_ups, 1, "{}", pair.context());
    let (index_b, _) = pair.wait_for::<LinkUp>("B", 0);
    // Kill B in the middle of the transfer: once it reports a quarter, or
    // 1 s after the link came up, whichever is first.
    let progress = pair.poll_for(
        "B",
        index_b + 1,
        Duration::from_secs(1),
        "a quarter of the TCP echo",
        tcp_progress,
    );
    pair.assert_running("B");
    pair.assert_no_where("B", |v: &AppVerdict| v.app == App::TcpEcho);
    pair.kill("B");
    println!("B killed after {progress:?}");
    let (down_a, _) = pair.wait_for::<LinkDown>("A", index_a + 1);

    pair.start("B", 1, transfer(MIB));
    pair.assert_pass("B");
    assert_tcp(&pair, "B", MIB);
    let (_, up) = pair.wait_for::<LinkUp>("A", down_a + 1);
    if up.link_ups != 2 {
        pair.fail(&format!("A's second link-up should count 2: {up}"));
    }
    // Whether A's QEMU survives B leaving a second time is checked by
    // `link::doorbell_survivor_outlives_a_restarted_peer_leaving_again`.
}

// --- 9. mismatched configuration ---------------------------------------------

#[test]
fn different_mtus_still_work() {
    for (mtu_a, mtu_b) in [(1500, 9000), (9000, 1500)] {
        let mut pair = Pair::doorbell(&format!("MTU {mtu_a} vs {mtu_b}"));
        pair.start(
            "A",
            0,
            CommandLine {
                mtu: Some(mtu_a),
                ..server()
            },
        );
        let client = CommandLine {
            count: 5,
            bytes: MIB,
            mtu: Some(mtu_b),
            ..apps(&[App::Ping, App::TcpEcho])
        };
        pair.start("B", 1, client);
        pair.assert_pass("B");
        assert_ping(&pair, "B", 5);
        assert_tcp(&pair, "B", MIB);
        pair.assert_running("A");
    }
}

#[test]
fn wrong_protocol_id_fails_fast_with_a_clear_error() {
    let mut pair = Pair::doorbell_with("protocol 0x4000", |config| {
        config.net_protocol = 0x4000;
    });
    // "Quickly": well within the link timeout (60 s), which is what a hang
    // waiting for the peer would run into.
    pair.set_timeout(Duration::from_secs(20));
    let a = pair.start("A", 0, server());
    let b = pair.start("B", 1, all_apps());
    for (name, report) in [("A", a), ("B", b)] {
        match &report {
            DeviceReport::Unusable(reason)
                if reason.contains("protocol 0x4000") && reason.contains("expected 0x0001") => {}
            other => pair.fail(&format!("{name}: unclear ivshmem error: {other}")),
        }
        let outcome = pair.wait_exit(name);
        if outcome != Outcome::Exit(ExitCode::Failure) {
            pair.fail(&format!("{name}: expected exit status 35, got: {outcome}"));
        }
        pair.assert_no::<LinkUp>(name);
    }
}

#[test]
fn polling_on_one_side_interrupts_on_the_other() {
    for (mode_a, mode_b) in [(Mode::Poll, Mode::Interrupt), (Mode::Interrupt, Mode::Poll)] {
        let mut pair = Pair::doorbell(&format!("server {mode_a}, client {mode_b}"));
        pair.start(
            "A",
            0,
            CommandLine {
                mode: mode_a,
                ..server()
            },
        );
        pair.start(
            "B",
            1,
            CommandLine {
                mode: mode_b,
                ..all_apps()
            },
        );
        assert_all_apps(&mut pair, "B");
        pair.assert_running("A");
    }
}
