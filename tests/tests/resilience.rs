//! Issue 10 at VM level: the link and the echo server survive a peer that
//! is killed over and over in the middle of a transfer, and a long transfer
//! arrives intact.
//!
//! Each test runs one real VM pair under the VM lock.

use std::time::{Duration, Instant};

use abi::cmdline::{App, CommandLine};
use abi::report::{LinkUp, TcpEchoResult, TcpEchoRound};
use e2e::{Pair, apps};

const MIB: u64 = 1 << 20;

/// The echo server (peer 0).
fn server() -> CommandLine {
    apps(&[App::Server])
}

/// VM B is killed 20 times while its TCP echo runs; each time a fresh B
/// echoes 1 MiB through the surviving server, every byte verified, before
/// it is killed in turn. Prints the recovery times: from the kill to the
/// server's next link-up, and to the next verified echo.
#[test]
fn twenty_kills_in_the_middle_of_a_transfer() {
    const KILLS: u64 = 20;
    let mut pair = Pair::doorbell("20 kills mid-transfer");
    pair.set_timeout(Duration::from_secs(300));
    pair.start("A", 0, server());
    // Round 1 of each client is the fresh, verified echo; the rounds after
    // it are the transfer the kill interrupts.
    let client = CommandLine {
        bytes: MIB,
        repeat: 1000,
        ..apps(&[App::TcpEcho])
    };
    let mut to_link_up = Vec::new();
    let mut to_echo = Vec::new();
    let mut killed_at: Option<Instant> = None;
    let mut from_a = 0;
    for kill in 0..=KILLS {
        pair.start("B", 1, client.clone());
        let (index, up) = pair.wait_for::<LinkUp>("A", from_a);
        from_a = index + 1;
        if up.link_ups != kill + 1 {
            pair.fail(&format!(
                "the server's link-up {} counts {}",
                kill + 1,
                up.link_ups
            ));
        }
        let linked = Instant::now();
        let (index, first) = pair.wait_for::<TcpEchoRound>("B", 0);
        if (first.round, first.bytes) != (1, MIB) {
            pair.fail(&format!("unexpected first round {first:?}"));
        }
        if let Some(at) = killed_at {
            to_link_up.push(linked - at);
            to_echo.push(Instant::now() - at);
        }
        if kill == KILLS {
            break;
        }
        // Kill B during the next round: its transfer is under way.
        pair.wait_for::<abi::report::TcpEchoProgress>("B", index + 1);
        pair.assert_running("A");
        pair.kill("B");
        killed_at = Some(Instant::now());
    }
    pair.assert_running("A");
    let spread = |times: &mut Vec<Duration>| {
        times.sort();
        format!(
            "min {:.0} ms, median {:.0} ms, max {:.0} ms",
            times[0].as_secs_f64() * 1e3,
            times[times.len() / 2].as_secs_f64() * 1e3,
            times[times.len() - 1].as_secs_f64() * 1e3
        )
    };
    assert_eq!(to_echo.len() as u64, KILLS);
    println!(
        "{KILLS} kills recovered; kill to the server's link-up: {}; kill to a verified 1 MiB echo: {}",
        spread(&mut to_link_up),
        spread(&mut to_echo)
    );
}

/// 64 MiB through the echo server, every byte verified.
#[test]
fn sixty_four_mib_echo() {
    let mut pair = Pair::doorbell("64 MiB echo");
    pair.set_timeout(Duration::from_secs(240));
    pair.start("A", 0, server());
    let client = CommandLine {
        bytes: 64 * MIB,
        ..apps(&[App::TcpEcho])
    };
    pair.start("B", 1, client);
    pair.assert_pass("B");
    let result = pair.report::<TcpEchoResult>("B");
    assert_eq!(result.bytes, 64 * MIB, "{}", pair.context());
    println!("64 MiB echoed and verified at {} Mbit/s", result.throughput);
}
