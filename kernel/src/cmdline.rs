//! The kernel command line: space-separated `key=value` pairs.
//!
//! Every key is known here; an unknown key, a key given twice, a missing `=`
//! or a value out of range is an error that names the culprit, and the kernel
//! stops with [`crate::exit::ExitCode::BadCommandLine`].

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::Ipv4Addr;
use log::LevelFilter;

/// A deliberate failure the kernel provokes to prove its fatal paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SelfTest {
    /// Read from an unmapped address: a page fault with CR2 reported.
    PageFault,
    /// Call `panic!`.
    Panic,
    /// Map the ivshmem shared memory and print its first and last u64.
    SharedMemory,
    /// Allocate until the heap is exhausted.
    OutOfMemory,
    /// Recurse until the stack runs into its guard page.
    StackOverflow,
}

/// What the kernel runs after booting; `app=` takes a comma-separated list,
/// run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Print the PCI inventory and exit.
    Inventory,
    /// Bring up the ivshmem-net link and report its state changes until stopped.
    Link,
    /// TCP and UDP echo server (and ICMP echo replies) until stopped.
    Server,
    /// Ping the peer `count` times; pass if every reply arrives.
    Ping,
    /// Send `bytes` through the peer's TCP echo server and verify every byte.
    TcpEcho,
    /// Send `count` datagrams through the peer's UDP echo server and verify them.
    UdpEcho,
}

impl App {
    const NAMES: &[(&str, App)] = &[
        ("inventory", App::Inventory),
        ("link", App::Link),
        ("server", App::Server),
        ("ping", App::Ping),
        ("tcp-echo", App::TcpEcho),
        ("udp-echo", App::UdpEcho),
    ];

    /// The app's name on the command line.
    pub fn name(self) -> &'static str {
        Self::NAMES
            .iter()
            .find(|(_, app)| *app == self)
            .map_or("?", |(name, _)| name)
    }
}

/// How the kernel learns about doorbells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MSI-X doorbells wake the kernel from `hlt` (a timer re-checks too).
    Interrupt,
    /// Busy polling: no interrupts.
    Poll,
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length (0–32).
    pub prefix: u8,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The most verbose log level printed on the serial console.
    pub log: LevelFilter,
    /// A fatal path to exercise, if any.
    pub selftest: Option<SelfTest>,
    /// What to run, in order.
    pub apps: Vec<App>,
    /// Interrupts or polling.
    pub mode: Mode,
    /// Our peer ID, for `ivshmem-plain` (other devices have an ID register).
    pub id: Option<u16>,
    /// The IP MTU of the link (default 1500).
    pub mtu: Option<usize>,
    /// Our address (default 10.0.0.(id+1)/24).
    pub ip: Option<Ipv4Cidr>,
    /// The peer's address (default 10.0.0.(2-id)).
    pub peer: Option<Ipv4Addr>,
    /// TCP/UDP port of the echo service.
    pub port: u16,
    /// Pings or datagrams to send.
    pub count: u32,
    /// Milliseconds between pings.
    pub interval: u32,
    /// Payload bytes per ping or datagram.
    pub size: usize,
    /// Bytes to send through the TCP echo.
    pub bytes: u64,
    /// Concurrent TCP connections.
    pub parallel: u32,
    /// Rounds of TCP echo, one after another.
    pub repeat: u32,
    /// Seconds to wait for the link to come up.
    pub link_timeout: u32,
}

impl Default for CommandLine {
    fn default() -> Self {
        Self {
            log: LevelFilter::Info,
            selftest: None,
            apps: alloc::vec![App::Inventory],
            mode: Mode::Interrupt,
            id: None,
            mtu: None,
            ip: None,
            peer: None,
            port: 7,
            count: 4,
            interval: 100,
            size: 56,
            bytes: 1 << 20,
            parallel: 1,
            repeat: 1,
            link_timeout: 60,
        }
    }
}

/// What is wrong with a command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CmdlineError {
    /// A word without `=`.
    MissingValue {
        /// The word as given.
        word: String,
    },
    /// A key this kernel does not know.
    UnknownKey {
        /// The key as given.
        key: String,
    },
    /// A key given more than once.
    DuplicateKey {
        /// The key as given.
        key: String,
    },
    /// A value the key does not accept.
    BadValue {
        /// The key.
        key: &'static str,
        /// The value as given.
        value: String,
        /// What the key accepts.
        expected: &'static str,
    },
}

impl fmt::Display for CmdlineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::MissingValue { word } => write!(f, "'{word}' is not of the form key=value"),
            Self::UnknownKey { key } => {
                write!(f, "unknown key '{key}' (known keys: {})", KEYS.join(", "))
            }
            Self::DuplicateKey { key } => write!(f, "key '{key}' given more than once"),
            Self::BadValue {
                key,
                value,
                expected,
            } => {
                write!(f, "bad value '{value}' for '{key}': expected {expected}")
            }
        }
    }
}

impl core::error::Error for CmdlineError {}

/// Every key [`parse`] accepts.
pub const KEYS: &[&str] = &[
    "log",
    "selftest",
    "app",
    "mode",
    "id",
    "mtu",
    "ip",
    "peer",
    "port",
    "count",
    "interval",
    "size",
    "bytes",
    "parallel",
    "repeat",
    "link-timeout",
];

/// Parses a command line.
pub fn parse(line: &str) -> Result<CommandLine, CmdlineError> {
    let mut parsed = CommandLine::default();
    let mut seen: Vec<&str> = Vec::new();
    for word in line.split_ascii_whitespace() {
        let Some((key, value)) = word.split_once('=') else {
            return Err(CmdlineError::MissingValue {
                word: word.to_string(),
            });
        };
        if seen.contains(&key) {
            return Err(CmdlineError::DuplicateKey {
                key: key.to_string(),
            });
        }
        seen.push(key);
        match key {
            "log" => parsed.log = parse_level(value)?,
            "selftest" => parsed.selftest = Some(parse_selftest(value)?),
            "app" => parsed.apps = parse_apps(value)?,
            "mode" => {
                parsed.mode = match value {
                    "irq" => Mode::Interrupt,
                    "poll" => Mode::Poll,
                    _ => return Err(bad("mode", value, "irq or poll")),
                }
            }
            "id" => parsed.id = Some(number(value, "id", 0, 1, "0 or 1")? as u16),
            "mtu" => {
                parsed.mtu =
                    Some(number(value, "mtu", 68, 65_535, "a number from 68 to 65535")? as usize)
            }
            "ip" => {
                parsed.ip =
                    Some(parse_cidr(value).ok_or_else(|| {
                        bad("ip", value, "an IPv4 address/prefix, e.g. 10.0.0.1/24")
                    })?)
            }
            "peer" => {
                parsed.peer = Some(
                    value
                        .parse()
                        .map_err(|_| bad("peer", value, "an IPv4 address, e.g. 10.0.0.2"))?,
                )
            }
            "port" => {
                parsed.port = number(value, "port", 1, 65_535, "a port from 1 to 65535")? as u16
            }
            "count" => {
                parsed.count = number(value, "count", 1, 65_535, "a number from 1 to 65535")? as u32
            }
            "interval" => {
                parsed.interval =
                    number(value, "interval", 0, 60_000, "milliseconds from 0 to 60000")? as u32
            }
            "size" => {
                parsed.size = number(value, "size", 0, 65_000, "bytes from 0 to 65000")? as usize
            }
            "bytes" => {
                parsed.bytes = parse_bytes(value).ok_or_else(|| {
                    bad(
                        "bytes",
                        value,
                        "a byte count such as 1048576, 64K or 16M (at most 4G)",
                    )
                })?
            }
            "parallel" => {
                parsed.parallel = number(value, "parallel", 1, 16, "a number from 1 to 16")? as u32
            }
            "repeat" => {
                parsed.repeat = number(value, "repeat", 1, 1000, "a number from 1 to 1000")? as u32
            }
            "link-timeout" => {
                parsed.link_timeout =
                    number(value, "link-timeout", 1, 3600, "seconds from 1 to 3600")? as u32
            }
            _ => {
                return Err(CmdlineError::UnknownKey {
                    key: key.to_string(),
                });
            }
        }
    }
    Ok(parsed)
}

fn parse_level(value: &str) -> Result<LevelFilter, CmdlineError> {
    Ok(match value {
        "off" => LevelFilter::Off,
        "error" => LevelFilter::Error,
        "warn" => LevelFilter::Warn,
        "info" => LevelFilter::Info,
        "debug" => LevelFilter::Debug,
        "trace" => LevelFilter::Trace,
        _ => return Err(bad("log", value, "off, error, warn, info, debug or trace")),
    })
}

fn parse_selftest(value: &str) -> Result<SelfTest, CmdlineError> {
    Ok(match value {
        "pagefault" => SelfTest::PageFault,
        "panic" => SelfTest::Panic,
        "shm" => SelfTest::SharedMemory,
        "oom" => SelfTest::OutOfMemory,
        "stack-overflow" => SelfTest::StackOverflow,
        _ => {
            return Err(bad(
                "selftest",
                value,
                "pagefault, panic, shm, oom or stack-overflow",
            ));
        }
    })
}

fn parse_apps(value: &str) -> Result<Vec<App>, CmdlineError> {
    const EXPECTED: &str =
        "a comma-separated list of inventory, link, server, ping, tcp-echo, udp-echo";
    value
        .split(',')
        .map(|name| {
            App::NAMES
                .iter()
                .find(|(known, _)| *known == name)
                .map(|(_, app)| *app)
                .ok_or_else(|| bad("app", value, EXPECTED))
        })
        .collect()
}

fn parse_cidr(value: &str) -> Option<Ipv4Cidr> {
    let (address, prefix) = value.split_once('/').unwrap_or((value, "24"));
    let prefix: u8 = prefix.parse().ok().filter(|prefix| *prefix <= 32)?;
    Some(Ipv4Cidr {
        address: address.parse().ok()?,
        prefix,
    })
}

fn parse_bytes(value: &str) -> Option<u64> {
    let (digits, unit) = match value.as_bytes().last()? {
        b'K' | b'k' => (&value[..value.len() - 1], 1 << 10),
        b'M' | b'm' => (&value[..value.len() - 1], 1 << 20),
        b'G' | b'g' => (&value[..value.len() - 1], 1 << 30),
        _ => (value, 1),
    };
    digits
        .parse::<u64>()
        .ok()?
        .checked_mul(unit)
        .filter(|bytes| (1..=1 << 32).contains(bytes))
}

/// Parses a decimal number in `min..=max`.
fn number(
    value: &str,
    key: &'static str,
    min: u64,
    max: u64,
    expected: &'static str,
) -> Result<u64, CmdlineError> {
    value
        .parse::<u64>()
        .ok()
        .filter(|number| (min..=max).contains(number))
        .ok_or_else(|| bad(key, value, expected))
}

fn bad(key: &'static str, value: &str, expected: &'static str) -> CmdlineError {
    CmdlineError::BadValue {
        key,
        value: value.to_string(),
        expected,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(parse("").unwrap(), CommandLine::default());
        assert_eq!(parse("   ").unwrap(), CommandLine::default());
    }

    #[test]
    fn known_keys_are_parsed() {
        let line = parse("log=debug  selftest=pagefault").unwrap();
        assert_eq!(line.log, LevelFilter::Debug);
        assert_eq!(line.selftest, Some(SelfTest::PageFault));
    }

    #[test]
    fn link_and_app_keys_are_parsed() {
        let line = parse("app=ping,tcp-echo mode=poll id=1 mtu=9000 ip=10.1.0.5/16 peer=10.1.0.6 bytes=16M count=3 interval=0")
            .unwrap();
        assert_eq!(line.apps, [App::Ping, App::TcpEcho]);
        assert_eq!(
            (line.mode, line.id, line.mtu),
            (Mode::Poll, Some(1), Some(9000))
        );
        assert_eq!(
            line.ip,
            Some(Ipv4Cidr {
                address: Ipv4Addr::new(10, 1, 0, 5),
                prefix: 16
            })
        );
        assert_eq!(line.peer, Some(Ipv4Addr::new(10, 1, 0, 6)));
        assert_eq!((line.bytes, line.count, line.interval), (16 << 20, 3, 0));
        assert_eq!(parse("ip=10.0.0.9").unwrap().ip.unwrap().prefix, 24);
        assert_eq!(App::TcpEcho.name(), "tcp-echo");
    }

    #[test]
    fn errors_name_the_culprit() {
        let unknown = parse("log=info bogus=1").unwrap_err();
        assert_eq!(
            unknown,
            CmdlineError::UnknownKey {
                key: "bogus".into()
            }
        );
        assert!(unknown.to_string().contains("unknown key 'bogus'"));

        let missing = parse("log").unwrap_err();
        assert_eq!(missing, CmdlineError::MissingValue { word: "log".into() });

        let bad_value = parse("log=loud").unwrap_err();
        assert!(bad_value.to_string().contains("bad value 'loud' for 'log'"));

        assert!(
            parse("id=2")
                .unwrap_err()
                .to_string()
                .contains("expected 0 or 1")
        );
        assert!(parse("mtu=20").is_err());
        assert!(parse("mode=fast").is_err());
        assert!(
            parse("app=ping,dance")
                .unwrap_err()
                .to_string()
                .contains("'app'")
        );
        assert!(parse("ip=10.0.0.300").is_err());
        assert!(parse("ip=10.0.0.1/33").is_err());
        assert!(parse("bytes=0").is_err());
        assert!(parse("bytes=5G").is_err());

        let twice = parse("log=info log=warn").unwrap_err();
        assert_eq!(twice, CmdlineError::DuplicateKey { key: "log".into() });
    }
}
