//! The report lines of the measuring apps (`ping`'s percentiles,
//! `tcp-send`, `tcp-recv`, `udp-flood`), which the launcher's `bench`
//! command reads.

use core::fmt;
use core::str::FromStr;

use super::{Mbits, Millis, ParseError, Scanner};

/// The nearest-rank `percent` percentile of `sorted` (ascending), or 0 for
/// no values: the smallest value with at least `percent` % of the values at
/// or below it.
pub fn percentile(sorted: &[u64], percent: u32) -> u64 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = (sorted.len() * percent.min(100) as usize).div_ceil(100);
    sorted[rank.clamp(1, sorted.len()) - 1]
}

/// `ping: rtt after the first p50/p99/max = a/b/c ms over N replies`: the
/// round trips of every reply but the first (whose request waited for ARP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingPercentiles {
    /// Replies counted (all but the first).
    pub replies: u32,
    /// The median round trip.
    pub p50: Millis,
    /// The 99th percentile.
    pub p99: Millis,
    /// The longest round trip.
    pub max: Millis,
}

impl PingPercentiles {
    /// The percentiles of `rtts` (microseconds, in any order).
    pub fn of(rtts: &mut [u64]) -> Self {
        rtts.sort_unstable();
        Self {
            replies: rtts.len() as u32,
            p50: Millis(percentile(rtts, 50)),
            p99: Millis(percentile(rtts, 99)),
            max: Millis(rtts.last().copied().unwrap_or(0)),
        }
    }
}

impl fmt::Display for PingPercentiles {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping: rtt after the first p50/p99/max = {}/{}/{} ms over {} replies",
            self.p50, self.p99, self.max, self.replies
        )
    }
}

impl FromStr for PingPercentiles {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ping percentiles");
        scanner.tag("ping: rtt after the first p50/p99/max = ")?;
        let p50 = scanner.value("/")?;
        let p99 = scanner.value("/")?;
        let max = scanner.value(" ms over ")?;
        let replies = scanner.value(" replies")?;
        scanner.end()?;
        Ok(Self {
            replies,
            p50,
            p99,
            max,
        })
    }
}

/// Which way a one-way TCP transfer went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// `tcp-send`: from us to the peer's discard service.
    Send,
    /// `tcp-recv`: from the peer's source service to us.
    Receive,
}

impl Direction {
    fn prefix(self) -> &'static str {
        match self {
            Self::Send => "tcp-send: ",
            Self::Receive => "tcp-recv: ",
        }
    }
}

/// `tcp-send: N bytes in T ms (X Mbit/s)` or `tcp-recv: …`: a one-way TCP
/// transfer, from the connection's start until the last byte was
/// acknowledged (send) or received and verified (receive).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpOneWay {
    /// Which way.
    pub direction: Direction,
    /// Bytes moved.
    pub bytes: u64,
    /// How long it took.
    pub time: Millis,
    /// `bytes` over `time`.
    pub throughput: Mbits,
}

impl fmt::Display for TcpOneWay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}{} bytes in {} ms ({} Mbit/s)",
            self.direction.prefix(),
            self.bytes,
            self.time,
            self.throughput
        )
    }
}

impl FromStr for TcpOneWay {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "one-way TCP transfer");
        let direction = if scanner.optional_tag(Direction::Send.prefix()) {
            Direction::Send
        } else {
            scanner.tag(Direction::Receive.prefix())?;
            Direction::Receive
        };
        let bytes = scanner.value(" bytes in ")?;
        let time = scanner.value(" ms (")?;
        let throughput = scanner.value(" Mbit/s)")?;
        scanner.end()?;
        Ok(Self {
            direction,
            bytes,
            time,
            throughput,
        })
    }
}

/// `udp-flood: R of N datagrams of S bytes arrived over T ms (P datagrams/s), sent in U ms`:
/// what the peer's UDP sink counted of a flood, and how long sending took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpFloodResult {
    /// Datagrams the sink counted.
    pub received: u32,
    /// Datagrams sent.
    pub sent: u32,
    /// Payload bytes per datagram.
    pub size: u32,
    /// From the first to the last datagram at the sink.
    pub receive_time: Millis,
    /// `received` over `receive_time`, per second.
    pub rate: u64,
    /// How long sending took.
    pub send_time: Millis,
}

impl fmt::Display for UdpFloodResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "udp-flood: {} of {} datagrams of {} bytes arrived over {} ms ({} datagrams/s), sent in {} ms",
            self.received, self.sent, self.size, self.receive_time, self.rate, self.send_time
        )
    }
}

impl FromStr for UdpFloodResult {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "udp-flood result");
        scanner.tag("udp-flood: ")?;
        let received = scanner.value(" of ")?;
        let sent = scanner.value(" datagrams of ")?;
        let size = scanner.value(" bytes arrived over ")?;
        let receive_time = scanner.value(" ms (")?;
        let rate = scanner.value(" datagrams/s), sent in ")?;
        let send_time = scanner.value(" ms")?;
        scanner.end()?;
        Ok(Self {
            received,
            sent,
            size,
            receive_time,
            rate,
            send_time,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::round_trip;
    use alloc::vec;

    #[test]
    fn percentiles_are_nearest_rank() {
        assert_eq!(percentile(&[], 50), 0);
        assert_eq!(percentile(&[7], 99), 7);
        let values: alloc::vec::Vec<u64> = (1..=200).collect();
        assert_eq!(percentile(&values, 50), 100);
        assert_eq!(percentile(&values, 99), 198);
        assert_eq!(percentile(&values, 100), 200);
        assert_eq!(percentile(&values, 0), 1);
        let mut rtts = vec![300, 100, 200, 5000];
        let line = PingPercentiles::of(&mut rtts);
        assert_eq!(
            (line.replies, line.p50, line.p99, line.max),
            (4, Millis(200), Millis(5000), Millis(5000))
        );
    }

    #[test]
    fn measuring_lines_round_trip() {
        round_trip(
            PingPercentiles {
                replies: 199,
                p50: Millis(101),
                p99: Millis(180),
                max: Millis(2_345),
            },
            "ping: rtt after the first p50/p99/max = 0.101/0.180/2.345 ms over 199 replies",
        );
        round_trip(
            TcpOneWay {
                direction: Direction::Send,
                bytes: 16 << 20,
                time: Millis(65_432),
                throughput: Mbits(20_512),
            },
            "tcp-send: 16777216 bytes in 65.432 ms (2051.2 Mbit/s)",
        );
        round_trip(
            TcpOneWay {
                direction: Direction::Receive,
                bytes: 1000,
                time: Millis(1),
                throughput: Mbits(80_000),
            },
            "tcp-recv: 1000 bytes in 0.001 ms (8000.0 Mbit/s)",
        );
        round_trip(
            UdpFloodResult {
                received: 9_990,
                sent: 10_000,
                size: 64,
                receive_time: Millis(50_000),
                rate: 199_800,
                send_time: Millis(49_000),
            },
            "udp-flood: 9990 of 10000 datagrams of 64 bytes arrived over 50.000 ms \
             (199800 datagrams/s), sent in 49.000 ms",
        );
        assert!(
            "tcp-echo: 1 bytes in 0.001 ms (1.0 Mbit/s)"
                .parse::<TcpOneWay>()
                .is_err()
        );
    }
}
