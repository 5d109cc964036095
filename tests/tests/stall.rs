//! Issue 12: no TCP echo stalls. 100 consecutive 16 MiB echoes between two
//! VMs in interrupt mode, one connection after another; every round must
//! finish well under smoltcp's 1 s minimum retransmission timeout, which is
//! what a stalled round waits for (see `kernel/src/net/apps/echo.rs`: a
//! receive window that shrinks by smoltcp's window-scale rounding cut off a
//! sender's last bytes; before the fix about 1 round in 50 stalled for 1 s
//! or more). A round normally takes 0.15–0.5 s, also on a loaded host.

use std::time::Duration;

use abi::cmdline::{App, CommandLine};
use abi::report::TcpEchoRound;
use e2e::Pair;

/// Consecutive echoes.
const ROUNDS: u32 = 100;
/// A round this long waited for a retransmission timeout.
const STALL_MILLIS: f64 = 900.0;

#[test]
fn a_hundred_16_mib_echoes_never_stall() {
    let mut pair = Pair::doorbell("tcp-echo stalls");
    pair.set_timeout(Duration::from_secs(300));
    pair.start(
        "B",
        0,
        CommandLine {
            apps: vec![App::Server],
            ..CommandLine::default()
        },
    );
    pair.start(
        "A",
        1,
        CommandLine {
            apps: vec![App::TcpEcho],
            bytes: 16 << 20,
            repeat: ROUNDS,
            ..CommandLine::default()
        },
    );
    pair.assert_pass("A");
    let rounds: Vec<TcpEchoRound> = pair.reports("A");
    if rounds.len() != ROUNDS as usize {
        pair.fail(&format!("{} of {ROUNDS} rounds reported", rounds.len()));
    }
    let stalled: Vec<String> = rounds
        .iter()
        .filter(|round| round.time.as_millis_f64() > STALL_MILLIS)
        .map(ToString::to_string)
        .collect();
    if !stalled.is_empty() {
        pair.fail(&format!(
            "{} of {ROUNDS} rounds stalled:\n{}",
            stalled.len(),
            stalled.join("\n")
        ));
    }
}
