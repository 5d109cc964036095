//! Issue 5 acceptance: IP over the ivshmem-net link between two VMs. ICMP
//! echo both ways, TCP echo verified byte by byte and UDP echo in interrupt
//! mode (`ivshmem-doorbell` + our v1 server, on `pc` and `q35`) and polling
//! mode (`ivshmem-plain`), concurrent and sequential TCP connections, both
//! start orders, a peer restart in the middle of a transfer, and mismatched
//! configurations that must give a working link or a clear error, never a
//! hang. Each scenario runs one real VM pair under the VM lock.

use std::time::Duration;

use abi::exit::ExitCode;
use e2e::{
    Machine, Outcome, Pair, parse_link_up, parse_ping_summary, parse_tcp_echo, parse_udp_echo,
};

const MIB: u64 = 1 << 20;

/// Asserts `label` printed `ping: N transmitted, N received, 0% loss` with
/// `count` requests.
fn assert_ping(pair: &Pair, label: &str, count: u32) {
    let line = pair.assert_line(label, " transmitted, ");
    let summary = parse_ping_summary(&line).unwrap_or_else(|e| pair.fail(&e));
    if summary != (count, count, 0) {
        pair.fail(&format!(
            "{label}: expected {count} of {count} pings: {line:?}"
        ));
    }
    pair.assert_line(label, "ping: rtt min/avg/max = ");
    pair.assert_line(label, "ping: PASS");
}

/// Asserts `label` verified `bytes` bytes of TCP echo in all and passed.
fn assert_tcp(pair: &Pair, label: &str, bytes: u64) {
    let line = pair.assert_line(label, " bytes verified, throughput ");
    let (verified, mbits) = parse_tcp_echo(&line).unwrap_or_else(|e| pair.fail(&e));
    if verified != bytes || mbits <= 0.0 {
        pair.fail(&format!(
            "{label}: expected {bytes} bytes verified: {line:?}"
        ));
    }
    pair.assert_line(label, "tcp-echo: PASS");
}

/// Asserts `label` got all `count` UDP datagrams echoed intact and passed.
fn assert_udp(pair: &Pair, label: &str, count: u32) {
    let line = pair.assert_line(label, " datagrams of ");
    let (echoed, sent, _) = parse_udp_echo(&line).unwrap_or_else(|e| pair.fail(&e));
    if (echoed, sent) != (count, count) {
        pair.fail(&format!(
            "{label}: expected {count} of {count} echoed: {line:?}"
        ));
    }
    pair.assert_line(label, "udp-echo: PASS");
}

/// The full client: ping, 1 MiB TCP echo, UDP echo.
const ALL_APPS: &str = "app=ping,tcp-echo,udp-echo count=5 bytes=1M";

/// Checks the full client's results on `label` (which must have passed).
fn assert_all_apps(pair: &mut Pair, label: &str) {
    pair.assert_pass(label);
    assert_ping(pair, label, 5);
    assert_tcp(pair, label, MIB);
    assert_udp(pair, label, 5);
}

// --- 4. ping both ways -------------------------------------------------------

#[test]
fn ping_from_b_to_server_a() {
    let mut pair = Pair::doorbell("ping B -> A");
    pair.start("A", 0, "app=server");
    pair.start("B", 1, "app=ping count=5");
    pair.assert_pass("B");
    assert_ping(&pair, "B", 5);
    pair.assert_line("B", "ping: 10.0.0.2 -> 10.0.0.1");
    pair.assert_running("A");
}

#[test]
fn ping_from_a_to_server_b() {
    let mut pair = Pair::doorbell("ping A -> B");
    pair.start("A", 0, "app=ping count=5");
    pair.start("B", 1, "app=server");
    pair.assert_pass("A");
    assert_ping(&pair, "A", 5);
    pair.assert_line("A", "ping: 10.0.0.1 -> 10.0.0.2");
    pair.assert_running("B");
}

// --- 5. TCP and UDP echo in interrupt and polling mode ----------------------

fn echo_over_doorbell(machine: Machine) {
    let mut pair = Pair::doorbell(&format!("echo over doorbell on {machine}"));
    let a = pair.start_on(machine, "A", 0, "app=server");
    if !a.contains("ivshmem-doorbell") {
        pair.fail("A did not find the doorbell device");
    }
    pair.start_on(machine, "B", 1, ALL_APPS);
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
    let a = pair.start("A", 0, "app=server");
    if !a.contains("ivshmem-plain") {
        pair.fail("A did not find the plain device");
    }
    pair.start("B", 1, ALL_APPS);
    assert_all_apps(&mut pair, "B");
    pair.assert_running("A");
}

// --- 6. concurrent and sequential TCP connections ---------------------------

#[test]
fn tcp_echo_parallel_and_repeated_connections() {
    let mut pair = Pair::doorbell("tcp-echo parallel=3 repeat=2");
    pair.start("A", 0, "app=server");
    pair.start("B", 1, "app=tcp-echo bytes=2M parallel=3 repeat=2");
    pair.assert_pass("B");
    for round in [1, 2] {
        pair.assert_line(
            "B",
            &format!(
                "tcp-echo: round {round}: 2097152 bytes over 3 connection(s) echoed and verified"
            ),
        );
    }
    assert_tcp(&pair, "B", 2 * 2 * MIB);
}

// --- 7. start order ----------------------------------------------------------

const HEAD_START: Duration = Duration::from_secs(3);

#[test]
fn server_starts_3s_before_the_client() {
    let mut pair = Pair::doorbell("server first");
    pair.start("server", 0, "app=server");
    pair.sleep(HEAD_START);
    pair.assert_running("server");
    pair.assert_no_line("server", "link: up");
    pair.start("client", 1, ALL_APPS);
    assert_all_apps(&mut pair, "client");
    pair.assert_line("server", "link: up");
}

#[test]
fn client_starts_3s_before_the_server() {
    let mut pair = Pair::doorbell("client first");
    // The client comes first, so it gets ID 0 (10.0.0.1); it waits for the link.
    pair.start("client", 0, &format!("{ALL_APPS} link-timeout=30"));
    pair.sleep(HEAD_START);
    pair.assert_running("client");
    pair.assert_no_line("client", "link: up");
    pair.start("server", 1, "app=server");
    assert_all_apps(&mut pair, "client");
    pair.assert_line("client", "ping: 10.0.0.1 -> 10.0.0.2");
}

// --- 8. peer restart in the middle of a transfer -----------------------------

#[test]
fn client_restart_mid_transfer() {
    let mut pair = Pair::doorbell("client restart mid-transfer");
    pair.start("A", 0, "app=server");
    pair.start("B", 1, "app=tcp-echo bytes=256M");
    let (up_a, line) = pair.wait_line("A", "link: up");
    let (ups, _) = parse_link_up(&line).unwrap_or_else(|e| pair.fail(&e));
    assert_eq!(ups, 1, "{}", pair.context());
    let (up_b, _) = pair.wait_line("B", "link: up");
    // Kill B in the middle of the transfer: once it reports 25%, or 1 s
    // after the link came up, whichever is first.
    let progress = pair.poll_line("B", "tcp-echo: 25%", up_b + 1, Duration::from_secs(1));
    pair.assert_running("B");
    pair.assert_no_line("B", "tcp-echo: PASS");
    pair.assert_no_line("B", "tcp-echo: FAIL");
    pair.kill("B");
    println!("B killed after {progress:?}");
    let (down_a, _) = pair.wait_line_from("A", "link: down", up_a + 1);

    pair.start("B", 1, "app=tcp-echo bytes=1M");
    pair.assert_pass("B");
    assert_tcp(&pair, "B", MIB);
    let (_, line) = pair.wait_line_from("A", "link: up", down_a + 1);
    let (ups, _) = parse_link_up(&line).unwrap_or_else(|e| pair.fail(&e));
    if ups != 2 {
        pair.fail(&format!("A's second link-up should count 2: {line:?}"));
    }
    // Whether A's QEMU survives B leaving a second time is checked by
    // `link::doorbell_survivor_outlives_a_restarted_peer_leaving_again`.
}

// --- 9. mismatched configuration ---------------------------------------------

#[test]
fn different_mtus_still_work() {
    for (mtu_a, mtu_b) in [(1500, 9000), (9000, 1500)] {
        let mut pair = Pair::doorbell(&format!("MTU {mtu_a} vs {mtu_b}"));
        pair.start("A", 0, &format!("app=server mtu={mtu_a}"));
        pair.start(
            "B",
            1,
            &format!("app=ping,tcp-echo count=5 bytes=1M mtu={mtu_b}"),
        );
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
    let a = pair.start("A", 0, "app=server");
    let b = pair.start("B", 1, ALL_APPS);
    for (label, line) in [("A", a), ("B", b)] {
        if !(line.contains("protocol 0x4000") && line.contains("expected 0x0001")) {
            pair.fail(&format!("{label}: unclear ivshmem error: {line:?}"));
        }
        let outcome = pair.wait_exit(label);
        if outcome != Outcome::Exit(ExitCode::Failure) {
            pair.fail(&format!("{label}: expected exit status 35, got: {outcome}"));
        }
        pair.assert_no_line(label, "link: up");
    }
}

#[test]
fn polling_on_one_side_interrupts_on_the_other() {
    for (mode_a, mode_b) in [("mode=poll", "mode=irq"), ("mode=irq", "mode=poll")] {
        let mut pair = Pair::doorbell(&format!("server {mode_a}, client {mode_b}"));
        pair.start("A", 0, &format!("app=server {mode_a}"));
        pair.start("B", 1, &format!("{ALL_APPS} {mode_b}"));
        assert_all_apps(&mut pair, "B");
        pair.assert_running("A");
    }
}
