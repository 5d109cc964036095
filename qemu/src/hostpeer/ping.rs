//! Linux's own `ping` (iputils), run inside a [`Namespace`], and its output
//! read back: every reply's round-trip time and the totals.

use std::fmt;
use std::net::IpAddr;
use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};

use super::netns::{Namespace, have_program};

/// The program, and the Debian package that has it.
pub const PING: &str = "ping";
/// The Debian package with [`PING`].
pub const PING_PACKAGE: &str = "iputils-ping";

/// How long `ping` waits for a reply that has not come when it has sent
/// its last request (`-W`).
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(2);

/// What to ping, how often.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingOptions {
    /// The address, IPv4 or IPv6 (`ping` picks the family from it).
    pub target: IpAddr,
    /// Echo requests to send (`-c`).
    pub count: u32,
    /// Time between them (`-i`; below 200 ms needs root, which the
    /// namespace needs anyway).
    pub interval: Duration,
    /// ICMP payload bytes (`-s`); up to 1472 fits any MTU of 1500 or more,
    /// above the MTU Linux sends IP fragments.
    pub size: u32,
}

impl PingOptions {
    /// `count` pings of 56 bytes to `target`, every `interval`.
    pub fn new(target: impl Into<IpAddr>, count: u32, interval: Duration) -> PingOptions {
        PingOptions {
            target: target.into(),
            count,
            interval,
            size: 56,
        }
    }

    /// The `ping` command line: numeric output, and [`REPLY_TIMEOUT`] for
    /// the last replies. (Not `-w`, with which `ping` sends until `count`
    /// replies came back.)
    pub fn command(&self) -> Command {
        let mut command = Command::new(PING);
        command
            .arg("-n")
            .args(["-c", &self.count.to_string()])
            .args(["-i", &format!("{:.3}", self.interval.as_secs_f64())])
            .args(["-s", &self.size.to_string()])
            .args(["-W", &REPLY_TIMEOUT.as_secs().to_string()])
            .arg(self.target.to_string());
        command
    }

    /// How long `ping` may take: every interval, plus time for the last
    /// replies and for ARP.
    pub fn deadline(&self) -> Duration {
        self.interval * self.count + REPLY_TIMEOUT + Duration::from_secs(3)
    }
}

/// What Linux's `ping` reported.
#[derive(Debug, Clone, PartialEq)]
pub struct LinuxPing {
    /// Echo requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// The loss as `ping` printed it, in percent.
    pub loss_percent: f64,
    /// Each reply's round-trip time, in order.
    pub rtts: Vec<Duration>,
    /// `min/avg/max/mdev` in milliseconds, if any reply came.
    pub summary: Option<[f64; 4]>,
}

impl LinuxPing {
    /// Reads `ping`'s standard output.
    ///
    /// # Errors
    ///
    /// No statistics line (`N packets transmitted, M received, …`).
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> anyhow::Result<LinuxPing> {
        let mut rtts = Vec::new();
        let mut totals = None;
        let mut summary = None;
        for line in lines.iter().map(AsRef::as_ref) {
            if let Some(time) = reply_time(line) {
                rtts.push(time);
            } else if line.contains("packets transmitted") {
                totals = Some(parse_totals(line)?);
            } else if let Some(values) = line.strip_prefix("rtt min/avg/max/mdev = ") {
                // "0.1/0.2/0.3/0.1 ms", maybe followed by ", pipe 12".
                let values: Vec<f64> = values
                    .split(' ')
                    .next()
                    .unwrap_or_default()
                    .split('/')
                    .filter_map(|v| v.parse().ok())
                    .collect();
                if let [min, avg, max, mdev] = values[..] {
                    summary = Some([min, avg, max, mdev]);
                }
            }
        }
        let Some((transmitted, received, loss_percent)) = totals else {
            bail!("ping printed no statistics line");
        };
        Ok(LinuxPing {
            transmitted,
            received,
            loss_percent,
            rtts,
            summary,
        })
    }

    /// The `p`-th percentile (0–100, nearest rank) of the replies' times.
    pub fn percentile(&self, p: f64) -> Option<Duration> {
        percentile(&self.rtts, p)
    }
}

impl fmt::Display for LinuxPing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} transmitted, {} received, {}% loss",
            self.transmitted, self.received, self.loss_percent
        )?;
        if let Some([min, avg, max, mdev]) = self.summary {
            write!(
                f,
                "; rtt min/avg/max/mdev = {min:.3}/{avg:.3}/{max:.3}/{mdev:.3} ms"
            )?;
        }
        Ok(())
    }
}

/// The `p`-th percentile (0–100, nearest rank) of `values`.
pub fn percentile(values: &[Duration], p: f64) -> Option<Duration> {
    if values.is_empty() {
        return None;
    }
    let mut sorted = values.to_vec();
    sorted.sort_unstable();
    let rank = ((p / 100.0) * sorted.len() as f64).ceil() as usize;
    Some(sorted[rank.clamp(1, sorted.len()) - 1])
}

/// `64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=0.164 ms` → 164 µs.
fn reply_time(line: &str) -> Option<Duration> {
    if !line.contains(" bytes from ") {
        return None;
    }
    let time = line
        .split_whitespace()
        .find_map(|w| w.strip_prefix("time="))?;
    let millis: f64 = time.parse().ok()?;
    Some(Duration::from_secs_f64(millis / 1000.0))
}

/// `20 packets transmitted, 18 received, +2 errors, 10% packet loss, time 1061ms`.
fn parse_totals(line: &str) -> anyhow::Result<(u32, u32, f64)> {
    let mut transmitted = None;
    let mut received = None;
    let mut loss = None;
    for part in line.split(", ") {
        let mut words = part.split_whitespace();
        let (Some(number), Some(what)) = (words.next(), words.next()) else {
            continue;
        };
        match what {
            "packets" => transmitted = number.parse().ok(),
            "received" => received = number.parse().ok(),
            "packet" => loss = number.trim_end_matches('%').parse().ok(),
            _ => {}
        }
    }
    match (transmitted, received, loss) {
        (Some(t), Some(r), Some(l)) => Ok((t, r, l)),
        _ => bail!("cannot read ping's statistics line {line:?}"),
    }
}

/// Runs `ping` in `namespace` as `options` say, calling `on_line` with each
/// line it prints, and reads its output.
///
/// # Errors
///
/// `ping` is not installed or cannot start, it timed out, or it printed no
/// statistics (e.g. an unknown address). Lost replies are not an error: see
/// [`LinuxPing::received`].
pub fn run(
    namespace: &Namespace,
    options: &PingOptions,
    on_line: impl FnMut(&str),
) -> anyhow::Result<LinuxPing> {
    if !have_program(PING) {
        bail!("Linux's `{PING}` is not installed (Debian package {PING_PACKAGE})");
    }
    let command = options.command();
    let output = namespace
        .run_process(
            command,
            options.deadline() + Duration::from_secs(5),
            on_line,
        )
        .with_context(|| format!("cannot run {PING}"))?;
    if output.timed_out {
        bail!(
            "{PING} did not end within {:?}; it printed:\n{}{}",
            options.deadline(),
            output.stdout.join("\n"),
            output.stderr
        );
    }
    LinuxPing::parse(&output.stdout).with_context(|| {
        format!(
            "{PING} ended with {}: {}{}",
            output.status,
            output.stdout.join("\n"),
            output.stderr.trim_end()
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Captured from iputils 20221126 in a test namespace.
    const OUTPUT: &str = "\
PING 10.0.0.1 (10.0.0.1) 56(84) bytes of data.
64 bytes from 10.0.0.1: icmp_seq=1 ttl=64 time=2.21 ms
64 bytes from 10.0.0.1: icmp_seq=2 ttl=64 time=0.164 ms
64 bytes from 10.0.0.1: icmp_seq=3 ttl=64 time=0.250 ms

--- 10.0.0.1 ping statistics ---
3 packets transmitted, 3 received, 0% packet loss, time 1061ms
rtt min/avg/max/mdev = 0.164/0.874/2.205/0.436 ms
";

    #[test]
    fn reads_iputils_output() {
        let lines: Vec<&str> = OUTPUT.lines().collect();
        let ping = LinuxPing::parse(&lines).unwrap();
        assert_eq!((ping.transmitted, ping.received), (3, 3));
        assert_eq!(ping.loss_percent, 0.0);
        assert_eq!(
            ping.rtts,
            [
                Duration::from_micros(2210),
                Duration::from_micros(164),
                Duration::from_micros(250)
            ]
        );
        assert_eq!(ping.summary, Some([0.164, 0.874, 2.205, 0.436]));
        assert_eq!(ping.percentile(50.0), Some(Duration::from_micros(250)));
        assert_eq!(ping.percentile(99.0), Some(Duration::from_micros(2210)));
        assert_eq!(ping.percentile(0.0), Some(Duration::from_micros(164)));
        assert_eq!(
            ping.to_string(),
            "3 transmitted, 3 received, 0% loss; rtt min/avg/max/mdev = 0.164/0.874/2.205/0.436 ms"
        );
    }

    #[test]
    fn reads_losses_and_errors() {
        let lines = [
            "From 10.0.0.254 icmp_seq=1 Destination Host Unreachable",
            "--- 10.0.0.1 ping statistics ---",
            "20 packets transmitted, 18 received, +2 errors, 10% packet loss, time 1061ms",
        ];
        let ping = LinuxPing::parse(&lines).unwrap();
        assert_eq!((ping.transmitted, ping.received), (20, 18));
        assert_eq!(ping.loss_percent, 10.0);
        assert!(ping.rtts.is_empty() && ping.summary.is_none());
        assert!(LinuxPing::parse(&["ping: connect: Network is unreachable"]).is_err());
        let piped = [
            "12 packets transmitted, 12 received, 0% packet loss, time 997ms",
            "rtt min/avg/max/mdev = 770.113/890.315/1012.455/76.230 ms, pipe 12",
        ];
        let ping = LinuxPing::parse(&piped).unwrap();
        assert_eq!(ping.summary, Some([770.113, 890.315, 1012.455, 76.230]));
        assert_eq!(percentile(&[], 50.0), None);
    }

    #[test]
    fn the_command_line() {
        let options = PingOptions::new(
            std::net::Ipv4Addr::new(10, 0, 0, 1),
            20,
            Duration::from_millis(50),
        );
        let command = options.command();
        let args: Vec<String> = command
            .get_args()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(args.join(" "), "-n -c 20 -i 0.050 -s 56 -W 2 10.0.0.1");
    }
}
