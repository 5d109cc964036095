//! The kernel command line: space-separated `key=value` pairs.
//!
//! Every key is known here; an unknown key, a key given twice, a missing `=`
//! or a value out of range is an error that names the culprit, and the kernel
//! stops with [`crate::exit::ExitCode::BadCommandLine`].

use alloc::string::{String, ToString};
use core::fmt;
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
}

/// What the kernel runs after booting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum App {
    /// Print the PCI inventory and exit.
    Inventory,
    /// Bring up the ivshmem-net link and report its state changes until stopped.
    Link,
}

/// How the kernel learns about doorbells.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// MSI-X doorbells wake the kernel from `hlt` (a timer re-checks too).
    Interrupt,
    /// Busy polling: no interrupts.
    Poll,
}

/// The parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// The most verbose log level printed on the serial console.
    pub log: LevelFilter,
    /// A fatal path to exercise, if any.
    pub selftest: Option<SelfTest>,
    /// What to run.
    pub app: App,
    /// Interrupts or polling.
    pub mode: Mode,
    /// Our peer ID, for `ivshmem-plain` (other devices have an ID register).
    pub id: Option<u16>,
    /// The IP MTU of the link (default 1500).
    pub mtu: Option<usize>,
}

impl Default for CommandLine {
    fn default() -> Self {
        Self {
            log: LevelFilter::Info,
            selftest: None,
            app: App::Inventory,
            mode: Mode::Interrupt,
            id: None,
            mtu: None,
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
pub const KEYS: &[&str] = &["log", "selftest", "app", "mode", "id", "mtu"];

/// Parses a command line.
pub fn parse(line: &str) -> Result<CommandLine, CmdlineError> {
    let mut parsed = CommandLine::default();
    let mut seen: alloc::vec::Vec<&str> = alloc::vec::Vec::new();
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
            "app" => parsed.app = parse_app(value)?,
            "mode" => {
                parsed.mode = match value {
                    "irq" => Mode::Interrupt,
                    "poll" => Mode::Poll,
                    _ => return Err(bad("mode", value, "irq or poll")),
                }
            }
            "id" => parsed.id = Some(parse_number(value, "id", 0, 1, "0 or 1")? as u16),
            "mtu" => {
                parsed.mtu =
                    Some(
                        parse_number(value, "mtu", 68, 65_535, "a number from 68 to 65535")?
                            as usize,
                    )
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
        _ => return Err(bad("selftest", value, "pagefault, panic, shm or oom")),
    })
}

fn parse_app(value: &str) -> Result<App, CmdlineError> {
    Ok(match value {
        "inventory" => App::Inventory,
        "link" => App::Link,
        _ => return Err(bad("app", value, "inventory or link")),
    })
}

/// Parses a decimal number in `min..=max`.
fn parse_number(
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
    fn link_keys_are_parsed() {
        let line = parse("app=link mode=poll id=1 mtu=9000").unwrap();
        assert_eq!(
            (line.app, line.mode, line.id, line.mtu),
            (App::Link, Mode::Poll, Some(1), Some(9000))
        );
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

        let twice = parse("log=info log=warn").unwrap_err();
        assert_eq!(twice, CmdlineError::DuplicateKey { key: "log".into() });
    }
}
