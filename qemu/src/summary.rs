//! The demo's final summary, read from the client VM's typed report lines
//! ([`abi::report`]).

use std::fmt;
use std::time::Duration;

use abi::cmdline::App;
use abi::report::{
    AppVerdict, AppsVerdict, BootOk, DeviceFound, ExceptionHeadline, Fatal, FatalKind,
    InventoryHeader, LinkDown, LinkUp, PciBar, PciFunction, PingReply, PingRtt, PingStart,
    PingSummary, ServerReady, SharedMemoryProbe, StackGuard, TcpEchoProgress, TcpEchoResult,
    TcpEchoRound, UdpEchoResult,
};

use crate::outcome::Outcome;
use crate::size::Size;

/// Pass or fail, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    /// Whether the demo passed.
    pub pass: bool,
    /// A readable reason (the VM's outcome, or which app failed).
    pub reason: String,
}

/// Everything the demo reports at the end.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// How the VMs were set up (mode, machine, MTU…), for the reader.
    pub setup: Option<String>,
    /// Time from starting the client VM to its `link: up` line (measured by
    /// the host; not part of the serial output).
    pub link_up: Option<Duration>,
    /// The ping totals, if the ping app got that far.
    pub ping: Option<PingSummary>,
    /// The ping round-trip times, if any reply came back.
    pub rtt: Option<PingRtt>,
    /// The TCP echo result, if the echo completed.
    pub echo: Option<TcpEchoResult>,
    /// The verdict.
    pub verdict: Verdict,
    /// Serial lines that explain a failure (empty on success).
    pub failing_lines: Vec<String>,
    /// Extra remarks (e.g. the server VM ended early).
    pub notes: Vec<String>,
}

/// The level of a log line (`[   1.234567] WARN  …`); log lines are not
/// report lines.
fn log_level(line: &str) -> Option<&str> {
    let (_, rest) = line.strip_prefix('[')?.split_once("] ")?;
    let level = rest.split_whitespace().next()?;
    ["ERROR", "WARN", "INFO", "DEBUG", "TRACE"]
        .contains(&level)
        .then_some(level)
}

/// Whether a line parses as `T`.
fn is<T: std::str::FromStr>(line: &str) -> bool {
    line.parse::<T>().is_ok()
}

/// Whether `line` is a report of progress or success.
fn is_progress(line: &str) -> bool {
    is::<InventoryHeader>(line)
        || is::<PciFunction>(line)
        || is::<PciBar>(line)
        || is::<BootOk>(line)
        || is::<SharedMemoryProbe>(line)
        || is::<StackGuard>(line)
        || is::<DeviceFound>(line)
        || is::<LinkUp>(line)
        || is::<PingStart>(line)
        || is::<PingReply>(line)
        || is::<PingRtt>(line)
        || is::<TcpEchoProgress>(line)
        || is::<TcpEchoRound>(line)
        || is::<TcpEchoResult>(line)
        || is::<ServerReady>(line)
}

/// Whether a serial line explains a failure: a warning or error of the log,
/// a failed verdict, a lossy result, the link going down, or any other line
/// the kernel prints unconditionally that is not a report of progress (its
/// fatal reports and the apps' complaints).
fn is_failing_line(line: &str) -> bool {
    if line.trim().is_empty() {
        return false;
    }
    if let Some(level) = log_level(line) {
        return matches!(level, "ERROR" | "WARN");
    }
    if let Ok(verdict) = line.parse::<AppVerdict>() {
        return !verdict.pass;
    }
    if let Ok(verdict) = line.parse::<AppsVerdict>() {
        return !verdict.pass;
    }
    if let Ok(ping) = line.parse::<PingSummary>() {
        return ping.received < ping.transmitted;
    }
    if let Ok(udp) = line.parse::<UdpEchoResult>() {
        return udp.echoed < udp.count;
    }
    is::<LinkDown>(line) || !is_progress(line)
}

/// Whether a line starts a fatal report that goes on for a few lines
/// (registers, backtrace).
fn starts_crash_report(line: &str) -> bool {
    is::<ExceptionHeadline<String>>(line)
        || line
            .parse::<Fatal<String>>()
            .is_ok_and(|fatal| fatal.kind == FatalKind::Panic)
}

/// How many trailing lines to show when a failure left no telltale line.
const TAIL_LINES: usize = 8;

/// The serial lines that explain a failure (see `is_failing_line`), with
/// the whole of a crash report; if there are none, the last few lines.
pub fn failing_lines<S: AsRef<str>>(lines: &[S]) -> Vec<String> {
    let lines: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    let crash = lines
        .iter()
        .position(|line| starts_crash_report(line))
        .unwrap_or(lines.len());
    let mut failing: Vec<String> = lines
        .iter()
        .enumerate()
        .filter(|&(index, line)| index >= crash || is_failing_line(line))
        .map(|(_, line)| line.to_string())
        .collect();
    if failing.is_empty() {
        let start = lines.len().saturating_sub(TAIL_LINES);
        failing = lines[start..].iter().map(|l| l.to_string()).collect();
    }
    failing
}

impl Summary {
    /// Reads the client VM's serial `lines`.
    ///
    /// `outcome` is how the VM ended, or `None` if it is still running (the
    /// `--keep` demo, whose client goes on serving): then the verdict comes
    /// from the verdict lines of `apps`.
    pub fn parse<S: AsRef<str>>(lines: &[S], outcome: Option<Outcome>, apps: &[App]) -> Summary {
        let lines: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
        let ping = lines.iter().rev().find_map(|l| l.parse().ok());
        let rtt = lines.iter().rev().find_map(|l| l.parse().ok());
        let echo = lines.iter().rev().find_map(|l| l.parse().ok());
        let verdict = match outcome {
            Some(outcome) => Verdict {
                pass: outcome.is_success(),
                reason: outcome.to_string(),
            },
            None => {
                let passed: Vec<App> = lines
                    .iter()
                    .filter_map(|l| l.parse::<AppVerdict>().ok())
                    .filter(|verdict| verdict.pass)
                    .map(|verdict| verdict.app)
                    .collect();
                let missing: Vec<&str> = apps
                    .iter()
                    .filter(|app| !passed.contains(app))
                    .map(|app| app.name())
                    .collect();
                let names: Vec<&str> = apps.iter().map(|app| app.name()).collect();
                if missing.is_empty() {
                    Verdict {
                        pass: true,
                        reason: format!("{} passed; the VM is still running", names.join(", ")),
                    }
                } else {
                    Verdict {
                        pass: false,
                        reason: format!("{} did not pass", missing.join(", ")),
                    }
                }
            }
        };
        let failing_lines = if verdict.pass {
            Vec::new()
        } else {
            failing_lines(&lines)
        };
        Summary {
            setup: None,
            link_up: None,
            ping,
            rtt,
            echo,
            verdict,
            failing_lines,
            notes: Vec::new(),
        }
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let word = if self.verdict.pass { "PASS" } else { "FAIL" };
        writeln!(f, "==================== summary ====================")?;
        if let Some(setup) = &self.setup {
            writeln!(f, "setup:     {setup}")?;
        }
        match self.link_up {
            Some(t) => writeln!(f, "link up:   {:.3} s after VM A started", t.as_secs_f64())?,
            None => writeln!(f, "link up:   never")?,
        }
        match &self.ping {
            Some(p) => {
                write!(
                    f,
                    "ping:      {} transmitted, {} received, {}% loss",
                    p.transmitted, p.received, p.loss_percent
                )?;
                match &self.rtt {
                    Some(rtt) => writeln!(
                        f,
                        "; rtt min/avg/max = {}/{}/{} ms",
                        rtt.min, rtt.avg, rtt.max
                    )?,
                    None => writeln!(f)?,
                }
            }
            None => writeln!(f, "ping:      no result")?,
        }
        match &self.echo {
            Some(e) => writeln!(
                f,
                "tcp-echo:  {} bytes ({}) verified, throughput {} Mbit/s",
                e.bytes,
                Size(e.bytes),
                e.throughput
            )?,
            None => writeln!(f, "tcp-echo:  no result")?,
        }
        for note in &self.notes {
            writeln!(f, "note:      {note}")?;
        }
        writeln!(f, "result:    {word} ({})", self.verdict.reason)?;
        if !self.failing_lines.is_empty() {
            writeln!(f, "failing lines of VM A:")?;
            for line in &self.failing_lines {
                writeln!(f, "  {line}")?;
            }
        }
        write!(f, "=================================================")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::exit::ExitCode;
    use abi::report::{Mbits, Millis};

    const CLIENT: [App; 2] = [App::Ping, App::TcpEcho];

    /// Captured from `cargo run -- demo` (VM A, doorbell, pc).
    const PASSING: &str = "\
[   0.000044] INFO  eth-ivshmem 0.1.0 booting; command line 'app=ping,tcp-echo count=4 bytes=1048576'
PCI inventory (5 functions):
pci 00:02.0 1af4:1110 class 05.00.00 rev 01
pci 00:02.0   BAR2 mem64 prefetchable 0xfea00000 size 0x100000
ivshmem: ivshmem-v2 emulated on ivshmem-doorbell at 00:02.0, id 1 of 2, protocol 0x0001, 2 vector(s)
[   0.017961] INFO  net: 10.0.0.2/24 peer 10.0.0.1 MAC 3e:ae:b1:3e:cb:01
link: up (link-ups 1, resets 0)
ping: 10.0.0.2 -> 10.0.0.1, 4 requests of 56 bytes
ping: 56 bytes from 10.0.0.1: icmp_seq=0 time=14.059 ms
ping: 56 bytes from 10.0.0.1: icmp_seq=1 time=0.203 ms
ping: 56 bytes from 10.0.0.1: icmp_seq=2 time=0.242 ms
ping: 56 bytes from 10.0.0.1: icmp_seq=3 time=0.284 ms
ping: 4 transmitted, 4 received, 0% loss
ping: rtt min/avg/max = 0.203/3.697/14.059 ms
ping: PASS
[   0.337642] INFO  tcp-echo: 49% (524283 bytes)
[   0.341345] INFO  tcp-echo: 88% (930972 bytes)
tcp-echo: round 1: 1048576 bytes over 1 connection(s) echoed and verified in 21.039 ms (398.7 Mbit/s)
tcp-echo: 1048576 bytes verified, throughput 398.7 Mbit/s
tcp-echo: PASS
apps: PASS
";

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn parses_a_passing_run() {
        let mut summary = Summary::parse(
            &lines(PASSING),
            Some(Outcome::Exit(ExitCode::Success)),
            &CLIENT,
        );
        assert_eq!(summary.ping, Some(PingSummary::new(4, 4)));
        assert_eq!(
            summary.rtt,
            Some(PingRtt {
                min: Millis(203),
                avg: Millis(3_697),
                max: Millis(14_059)
            })
        );
        assert_eq!(
            summary.echo,
            Some(TcpEchoResult {
                bytes: 1 << 20,
                throughput: Mbits(3987)
            })
        );
        assert!(summary.verdict.pass);
        assert!(summary.failing_lines.is_empty());
        summary.link_up = Some(Duration::from_millis(420));
        let text = summary.to_string();
        assert!(text.contains("link up:   0.420 s"), "{text}");
        assert!(
            text.contains("rtt min/avg/max = 0.203/3.697/14.059 ms"),
            "{text}"
        );
        assert!(
            text.contains("1048576 bytes (1M) verified, throughput 398.7 Mbit/s"),
            "{text}"
        );
        assert!(
            text.contains("result:    PASS (guest reported success (exit status 33))"),
            "{text}"
        );
    }

    #[test]
    fn a_still_running_client_passes_on_its_app_verdicts() {
        let summary = Summary::parse(&lines(PASSING), None, &CLIENT);
        assert!(summary.verdict.pass, "{summary:?}");
        let cut: Vec<&str> = lines(PASSING)
            .into_iter()
            .filter(|l| !l.starts_with("tcp-echo: PASS"))
            .collect();
        let summary = Summary::parse(&cut, None, &CLIENT);
        assert!(!summary.verdict.pass);
        assert_eq!(summary.verdict.reason, "tcp-echo did not pass");
    }

    #[test]
    fn a_failing_run_shows_the_failing_lines() {
        let text = "\
link: up (link-ups 1, resets 0)
ping: 10.0.0.2 -> 10.0.0.1, 4 requests of 56 bytes
ping: 56 bytes from 10.0.0.1: icmp_seq=0 time=1.000 ms
ping: 4 transmitted, 1 received, 75% loss
ping: rtt min/avg/max = 1.000/1.000/1.000 ms
ping: FAIL
[   0.337642] WARN  tcp-echo: something odd
tcp-echo: no progress for 10 s (0 bytes sent, 0 verified)
tcp-echo: FAILED in round 1
tcp-echo: FAIL
apps: FAIL
";
        let summary = Summary::parse(
            &lines(text),
            Some(Outcome::Exit(ExitCode::Failure)),
            &CLIENT,
        );
        assert!(!summary.verdict.pass);
        assert_eq!(summary.echo, None);
        assert_eq!(summary.ping.unwrap().loss_percent, 75);
        assert_eq!(
            summary.failing_lines,
            [
                "ping: 4 transmitted, 1 received, 75% loss",
                "ping: FAIL",
                "[   0.337642] WARN  tcp-echo: something odd",
                "tcp-echo: no progress for 10 s (0 bytes sent, 0 verified)",
                "tcp-echo: FAILED in round 1",
                "tcp-echo: FAIL",
                "apps: FAIL",
            ]
        );
        let shown = summary.to_string();
        assert!(shown.contains("tcp-echo:  no result"), "{shown}");
        assert!(
            shown.contains("FAIL (guest reported a failure (exit status 35))"),
            "{shown}"
        );
        assert!(
            shown.contains("\n  tcp-echo: FAILED in round 1\n"),
            "{shown}"
        );
    }

    #[test]
    fn a_crash_shows_the_report_or_the_tail() {
        let text =
            "link: up (link-ups 1, resets 0)\nKERNEL PANIC: oops at x.rs:1\n  backtrace 0x1\n";
        let summary = Summary::parse(
            &lines(text),
            Some(Outcome::Exit(ExitCode::Panic)),
            &[App::Ping],
        );
        assert_eq!(
            summary.failing_lines,
            ["KERNEL PANIC: oops at x.rs:1", "  backtrace 0x1"]
        );
        // Only log lines below WARN: nothing tells, so the tail is shown.
        let quiet: Vec<String> = (0..20)
            .map(|i| format!("[   1.{i:06}] INFO  line {i}"))
            .collect();
        let summary = Summary::parse(
            &quiet,
            Some(Outcome::Timeout(Duration::from_secs(120))),
            &[App::Ping],
        );
        assert_eq!(summary.failing_lines.len(), TAIL_LINES);
        assert_eq!(summary.failing_lines[0], "[   1.000012] INFO  line 12");
        assert!(summary.to_string().contains("timed out after 120.0 s"));
        assert!(summary.to_string().contains("link up:   never"));
    }

    #[test]
    fn failing_lines_are_told_by_their_type() {
        for line in [
            "ping: FAIL",
            "apps: FAIL",
            "ping: 4 transmitted, 3 received, 25% loss",
            "udp-echo: 4 of 5 datagrams of 56 bytes echoed intact",
            "link: down (resets 1)",
            "cmdline: unknown key 'bogus'",
            "ivshmem: device speaks protocol 0x4000, expected 0x0001",
            "tcp-echo: connection 0 to 10.0.0.1 closed early (CLOSED)",
            "[   0.1] ERROR net: oops",
        ] {
            assert!(is_failing_line(line), "{line}");
        }
        for line in [
            "ping: PASS",
            "apps: PASS",
            "ping: 4 transmitted, 4 received, 0% loss",
            "udp-echo: 5 of 5 datagrams of 56 bytes echoed intact",
            "link: up (link-ups 1, resets 0)",
            "boot: ok",
            "pci 00:03.0 1af4:1110 class 05.00.00 rev 01",
            "server: TCP and UDP echo on 10.0.0.1:7",
            "[   0.1] INFO  tcp-echo: 25% (262144 bytes)",
            "",
        ] {
            assert!(!is_failing_line(line), "{line}");
        }
    }
}
