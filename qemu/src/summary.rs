//! The demo's final summary, parsed from the client VM's serial output (the
//! lines listed in the README under "Serial output the host relies on").

use std::fmt;
use std::time::Duration;

use crate::outcome::Outcome;
use crate::size::Size;

/// `ping: N transmitted, M received, X% loss` and, if any reply came back,
/// `ping: rtt min/avg/max = a/b/c ms`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PingStats {
    /// Requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// Loss in percent.
    pub loss_percent: u32,
    /// Round-trip time min/avg/max in milliseconds.
    pub rtt_ms: Option<(f64, f64, f64)>,
}

/// `tcp-echo: N bytes verified, throughput X Mbit/s`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct EchoStats {
    /// Bytes sent through the echo and verified.
    pub bytes: u64,
    /// Throughput in Mbit/s.
    pub mbit_per_s: f64,
}

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
    /// Ping results, if the ping app got that far.
    pub ping: Option<PingStats>,
    /// TCP echo results, if the echo completed.
    pub echo: Option<EchoStats>,
    /// The verdict.
    pub verdict: Verdict,
    /// Serial lines that explain a failure (empty on success).
    pub failing_lines: Vec<String>,
    /// Extra remarks (e.g. the server VM ended early).
    pub notes: Vec<String>,
}

/// Parses `ping: N transmitted, M received, X% loss`.
pub fn parse_ping_totals(line: &str) -> Option<(u32, u32, u32)> {
    let rest = line.trim().strip_prefix("ping: ")?;
    let (sent, rest) = rest.split_once(" transmitted, ")?;
    let (received, loss) = rest.split_once(" received, ")?;
    Some((
        sent.parse().ok()?,
        received.parse().ok()?,
        loss.strip_suffix("% loss")?.parse().ok()?,
    ))
}

/// Parses `ping: rtt min/avg/max = a/b/c ms`.
pub fn parse_rtt(line: &str) -> Option<(f64, f64, f64)> {
    let values = line
        .trim()
        .strip_prefix("ping: rtt min/avg/max = ")?
        .strip_suffix(" ms")?;
    let mut parts = values.split('/').map(|v| v.parse::<f64>().ok());
    let result = (parts.next()??, parts.next()??, parts.next()??);
    parts.next().is_none().then_some(result)
}

/// Parses `tcp-echo: N bytes verified, throughput X Mbit/s`.
pub fn parse_echo(line: &str) -> Option<EchoStats> {
    let rest = line.trim().strip_prefix("tcp-echo: ")?;
    let (bytes, rest) = rest.split_once(" bytes verified, throughput ")?;
    Some(EchoStats {
        bytes: bytes.parse().ok()?,
        mbit_per_s: rest.strip_suffix(" Mbit/s")?.parse().ok()?,
    })
}

/// Whether a serial line reports a problem (verdicts, fatal paths, warnings
/// and errors of the log, the apps' own complaints).
fn is_failing_line(line: &str) -> bool {
    const MARKERS: &[&str] = &[
        ": FAIL",
        "FAILED",
        "KERNEL PANIC",
        "CPU EXCEPTION",
        "OUT OF MEMORY",
        "] WARN ",
        "] ERROR ",
        "corrupted",
        "closed early",
        "no progress",
        "not echoed",
        "link: down",
    ];
    let trimmed = line.trim();
    trimmed.starts_with("cmdline:")
        || MARKERS.iter().any(|m| trimmed.contains(m))
        || parse_ping_totals(trimmed).is_some_and(|(_, _, loss)| loss > 0)
}

/// How many trailing lines to show when a failure left no telltale line.
const TAIL_LINES: usize = 8;

/// The serial lines that explain a failure: verdicts, fatal reports (with
/// the lines that follow them), warnings and errors of the log, the apps'
/// complaints; if there are none, the last few lines.
pub fn failing_lines<S: AsRef<str>>(lines: &[S]) -> Vec<String> {
    let lines: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
    let mut failing: Vec<String> = lines
        .iter()
        .filter(|l| is_failing_line(l))
        .map(|l| l.to_string())
        .collect();
    // A fatal report goes on for a few lines (registers, backtrace).
    if let Some(start) = lines
        .iter()
        .position(|l| l.contains("KERNEL PANIC") || l.contains("CPU EXCEPTION"))
    {
        for line in &lines[start..] {
            if !failing.iter().any(|f| f == line) {
                failing.push(line.to_string());
            }
        }
    }
    if failing.is_empty() {
        let start = lines.len().saturating_sub(TAIL_LINES);
        failing = lines[start..].iter().map(|l| l.to_string()).collect();
    }
    failing
}

impl Summary {
    /// Parses the client VM's serial `lines`.
    ///
    /// `outcome` is how the VM ended, or `None` if it is still running (the
    /// `--keep` demo, whose client goes on serving): then the verdict comes
    /// from the `<app>: PASS` lines of `apps`.
    pub fn parse<S: AsRef<str>>(lines: &[S], outcome: Option<Outcome>, apps: &[&str]) -> Summary {
        let lines: Vec<&str> = lines.iter().map(AsRef::as_ref).collect();
        let mut ping: Option<PingStats> = None;
        let mut echo = None;
        for line in &lines {
            if let Some((transmitted, received, loss_percent)) = parse_ping_totals(line) {
                ping = Some(PingStats {
                    transmitted,
                    received,
                    loss_percent,
                    rtt_ms: None,
                });
            } else if let Some(rtt) = parse_rtt(line) {
                if let Some(ping) = &mut ping {
                    ping.rtt_ms = Some(rtt);
                }
            } else if let Some(stats) = parse_echo(line) {
                echo = Some(stats);
            }
        }
        let verdict = match outcome {
            Some(outcome) if outcome.is_success() => Verdict {
                pass: true,
                reason: outcome.to_string(),
            },
            Some(outcome) => Verdict {
                pass: false,
                reason: outcome.to_string(),
            },
            None => {
                let missing: Vec<&str> = apps
                    .iter()
                    .copied()
                    .filter(|app| {
                        let pass = format!("{app}: PASS");
                        !lines.iter().any(|l| l.trim() == pass)
                    })
                    .collect();
                if missing.is_empty() {
                    Verdict {
                        pass: true,
                        reason: format!("{} passed; the VM is still running", apps.join(", ")),
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
                match p.rtt_ms {
                    Some((min, avg, max)) => {
                        writeln!(f, "; rtt min/avg/max = {min:.3}/{avg:.3}/{max:.3} ms")?
                    }
                    None => writeln!(f)?,
                }
            }
            None => writeln!(f, "ping:      no result")?,
        }
        match &self.echo {
            Some(e) => writeln!(
                f,
                "tcp-echo:  {} bytes ({}) verified, throughput {:.1} Mbit/s",
                e.bytes,
                Size(e.bytes),
                e.mbit_per_s
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
            &["ping", "tcp-echo"],
        );
        assert_eq!(
            summary.ping,
            Some(PingStats {
                transmitted: 4,
                received: 4,
                loss_percent: 0,
                rtt_ms: Some((0.203, 3.697, 14.059)),
            })
        );
        assert_eq!(
            summary.echo,
            Some(EchoStats {
                bytes: 1 << 20,
                mbit_per_s: 398.7
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
        let summary = Summary::parse(&lines(PASSING), None, &["ping", "tcp-echo"]);
        assert!(summary.verdict.pass, "{summary:?}");
        let cut: Vec<&str> = lines(PASSING)
            .into_iter()
            .filter(|l| !l.starts_with("tcp-echo: PASS"))
            .collect();
        let summary = Summary::parse(&cut, None, &["ping", "tcp-echo"]);
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
            &["ping", "tcp-echo"],
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
            &["ping"],
        );
        assert_eq!(
            summary.failing_lines,
            ["KERNEL PANIC: oops at x.rs:1", "  backtrace 0x1"]
        );
        let quiet: Vec<String> = (0..20).map(|i| format!("line {i}")).collect();
        let summary = Summary::parse(
            &quiet,
            Some(Outcome::Timeout(Duration::from_secs(120))),
            &["ping"],
        );
        assert_eq!(summary.failing_lines.len(), TAIL_LINES);
        assert_eq!(summary.failing_lines[0], "line 12");
        assert!(summary.to_string().contains("timed out after 120.0 s"));
        assert!(summary.to_string().contains("link up:   never"));
    }

    #[test]
    fn line_parsers_are_strict() {
        assert_eq!(
            parse_ping_totals("ping: 4 transmitted, 4 received, 0% loss"),
            Some((4, 4, 0))
        );
        assert_eq!(parse_ping_totals("ping: 4 transmitted, 4 received"), None);
        assert_eq!(
            parse_rtt("ping: rtt min/avg/max = 1/2.5/3 ms"),
            Some((1.0, 2.5, 3.0))
        );
        assert_eq!(parse_rtt("ping: rtt min/avg/max = 1/2/3/4 ms"), None);
        assert_eq!(parse_rtt("ping: rtt min/avg/max = 1/2 ms"), None);
        assert_eq!(
            parse_echo("tcp-echo: 12 bytes verified, throughput x Mbit/s"),
            None
        );
        assert_eq!(
            parse_echo("tcp-echo: 12 bytes verified, throughput 0.5 Mbit/s"),
            Some(EchoStats {
                bytes: 12,
                mbit_per_s: 0.5
            })
        );
    }
}
