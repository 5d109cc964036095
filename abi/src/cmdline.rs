//! The kernel command line: space-separated `key=value` words
//! (`docs/kernel.md`).
//!
//! The kernel parses it with [`CommandLine::parse`]; the launcher and the
//! tests build a [`CommandLine`] value and write it with `Display`, which
//! prints only what differs from the defaults, so that
//! `CommandLine::parse(&line.to_string()) == Ok(line)` for every valid
//! value. Every key is known here: an unknown key, a key given twice, a
//! word without `=` or a value out of range is an error that names the
//! culprit.

use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The most verbose log level printed on the serial console.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum LogLevel {
    /// Nothing but the report lines.
    Off,
    /// Errors.
    Error,
    /// Warnings and errors.
    Warn,
    /// Progress (the default).
    Info,
    /// Details.
    Debug,
    /// Everything.
    Trace,
}

impl LogLevel {
    const NAMES: [(&'static str, Self); 6] = [
        ("off", Self::Off),
        ("error", Self::Error),
        ("warn", Self::Warn),
        ("info", Self::Info),
        ("debug", Self::Debug),
        ("trace", Self::Trace),
    ];
}

/// A deliberate failure the kernel provokes to prove its fatal paths, or a
/// probe of the hardware.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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

impl SelfTest {
    const NAMES: [(&'static str, Self); 5] = [
        ("pagefault", Self::PageFault),
        ("panic", Self::Panic),
        ("shm", Self::SharedMemory),
        ("oom", Self::OutOfMemory),
        ("stack-overflow", Self::StackOverflow),
    ];
}

/// What the kernel runs after booting; `app=` takes a comma-separated list,
/// run in order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
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
    /// Exercise the raw ivshmem device on any protocol, like Zephyr's
    /// ivshmem shell: print its facts, exchange tokens through the R/W
    /// section and states, ring the peer and wait for our own doorbell
    /// (`link-timeout` bounds each wait). Runs alone.
    Ivshmem,
    /// Send `bytes` one way to the peer server's TCP discard service and
    /// report the throughput once the peer has acknowledged every byte.
    TcpSend,
    /// Receive `bytes` one way from the peer server's TCP source service and
    /// report the throughput (every byte verified).
    TcpRecv,
    /// Send `count` datagrams of the first `size` bytes as fast as possible to the peer
    /// server's UDP sink, then ask it how many arrived and over what time.
    UdpFlood,
    /// Print the link's and the stack's statistics (one report line) and
    /// pass.
    Statistics,
    /// Attack the peer's IPv4 reassembly: a stream of first fragments that
    /// never complete, while small and fragmented pings check what still
    /// works; then wait out the reassembly timeout. Passes if every small
    /// ping was answered throughout (fragmented ones may fail during the
    /// stream: that is the point).
    FragmentFlood,
}

impl App {
    /// Every app with its name on the command line.
    pub const NAMES: [(&'static str, Self); 12] = [
        ("inventory", Self::Inventory),
        ("link", Self::Link),
        ("server", Self::Server),
        ("ping", Self::Ping),
        ("tcp-echo", Self::TcpEcho),
        ("udp-echo", Self::UdpEcho),
        ("ivshmem", Self::Ivshmem),
        ("tcp-send", Self::TcpSend),
        ("tcp-recv", Self::TcpRecv),
        ("udp-flood", Self::UdpFlood),
        ("stats", Self::Statistics),
        ("fragment-flood", Self::FragmentFlood),
    ];

    /// The app's name on the command line.
    pub fn name(self) -> &'static str {
        name_of(&Self::NAMES, self)
    }

    /// Whether the app runs until the VM is stopped.
    pub fn is_endless(self) -> bool {
        matches!(self, Self::Link | Self::Server)
    }

    /// Whether the app needs an ivshmem link (`ivshmem` needs a device of
    /// any protocol, the others an ivshmem-net link).
    pub fn needs_link(self) -> bool {
        self != Self::Inventory
    }
}

impl fmt::Display for App {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for App {
    type Err = CmdlineError;

    fn from_str(name: &str) -> Result<Self, CmdlineError> {
        value_of(&Self::NAMES, name).ok_or_else(|| bad("app", name, APPS_EXPECTED))
    }
}

const APPS_EXPECTED: &str = "a comma-separated list of inventory, link, server, ping, tcp-echo, \
     udp-echo, ivshmem, tcp-send, tcp-recv, udp-flood, stats, fragment-flood";

/// Where the kernel writes a pcap capture of the frames it sends and
/// receives on the link (`pcap=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Capture {
    /// The second serial port (COM2, I/O port 0x2f8): raw bytes in the
    /// classic libpcap format, for the host to connect to a file.
    Com2,
}

impl Capture {
    /// Every capture target with its name on the command line.
    pub const NAMES: [(&'static str, Self); 1] = [("com2", Self::Com2)];
}

impl fmt::Display for Capture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(name_of(&Self::NAMES, *self))
    }
}

/// How the kernel learns about doorbells.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Mode {
    /// MSI-X doorbells wake the kernel from `hlt` (a timer re-checks too).
    Interrupt,
    /// Busy polling: no interrupts.
    Poll,
}

impl Mode {
    /// Every mode with its name on the command line.
    pub const NAMES: [(&'static str, Self); 2] = [("irq", Self::Interrupt), ("poll", Self::Poll)];

    /// The mode's name on the command line.
    pub fn name(self) -> &'static str {
        name_of(&Self::NAMES, self)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Mode {
    type Err = CmdlineError;

    fn from_str(name: &str) -> Result<Self, CmdlineError> {
        value_of(&Self::NAMES, name).ok_or_else(|| bad("mode", name, MODES_EXPECTED))
    }
}

const MODES_EXPECTED: &str = "irq or poll";

/// The network device the kernel's stack runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Net {
    /// The ivshmem-net link over an ivshmem device (the default).
    Ivshmem,
    /// A virtio-net PCI device (the baseline QEMU users would pick instead).
    Virtio,
}

impl Net {
    /// Every device with its name on the command line.
    pub const NAMES: [(&'static str, Self); 2] =
        [("ivshmem", Self::Ivshmem), ("virtio", Self::Virtio)];

    /// The device's name on the command line.
    pub fn name(self) -> &'static str {
        name_of(&Self::NAMES, self)
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl core::str::FromStr for Net {
    type Err = CmdlineError;

    fn from_str(name: &str) -> Result<Self, CmdlineError> {
        value_of(&Self::NAMES, name).ok_or_else(|| bad("net", name, "ivshmem or virtio"))
    }
}

/// An IPv4 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv4Cidr {
    /// The address.
    pub address: Ipv4Addr,
    /// The prefix length (0–32).
    pub prefix: u8,
}

impl fmt::Display for Ipv4Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// An IPv6 address with its prefix length.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Ipv6Cidr {
    /// The address.
    pub address: Ipv6Addr,
    /// The prefix length (0–128).
    pub prefix: u8,
}

impl fmt::Display for Ipv6Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

/// The parsed command line. [`Default`] is what an empty line means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandLine {
    /// `log`: the most verbose log level printed (default `info`).
    pub log: LogLevel,
    /// `selftest`: a fatal path to exercise or a probe, if any.
    pub selftest: Option<SelfTest>,
    /// `app`: what to run, in order (default `inventory`).
    pub apps: Vec<App>,
    /// `mode`: interrupts (default) or polling.
    pub mode: Mode,
    /// `net`: the network device, ivshmem-net (default) or virtio-net.
    pub net: Net,
    /// `id`: our peer ID, for `ivshmem-plain` (other devices have an ID register).
    pub id: Option<u16>,
    /// `mtu`: the IP MTU of the link (default: the kernel's choice).
    pub mtu: Option<u16>,
    /// `ip`: our address (default 10.0.0.(id+1)/24).
    pub ip: Option<Ipv4Cidr>,
    /// `ip6`: a static IPv6 address of ours, besides the link-local one
    /// the kernel always derives from its MAC (default: none).
    pub ip6: Option<Ipv6Cidr>,
    /// `peer`: the peer's address, IPv4 or IPv6; the clients use its
    /// family (default 10.0.0.(2-id)).
    pub peer: Option<IpAddr>,
    /// `port`: TCP/UDP port of the echo service (default 7).
    pub port: u16,
    /// `count`: pings or datagrams to send (default 4).
    pub count: u32,
    /// `interval`: milliseconds between pings (default 100).
    pub interval: u32,
    /// `size`: payload bytes per ping or datagram (default 56); a
    /// comma-separated list runs the clients once per size, in order.
    pub sizes: Vec<u32>,
    /// `bytes`: bytes to send through the TCP echo (default 1 MiB).
    pub bytes: u64,
    /// `parallel`: concurrent TCP connections (default 1).
    pub parallel: u32,
    /// `repeat`: rounds of TCP echo, one after another (default 1).
    pub repeat: u32,
    /// `link-timeout`: seconds to wait for the link to come up (default 60).
    pub link_timeout: u32,
    /// `pcap`: capture every frame of the link there (default: no capture).
    pub pcap: Option<Capture>,
    /// `spin`: in interrupt mode, poll for work instead of halting until
    /// this many microseconds after our last socket traffic (0: halt at
    /// once; default: the device's choice, 200 for ivshmem-net, 0 for
    /// virtio-net).
    pub spin: Option<u32>,
    /// `mem`: the top of the cell's RAM on a Jailhouse cell (default
    /// [`crate::jailhouse::DEFAULT_RAM_TOP`]); the heap ends there. Under
    /// PVH the firmware's memory map rules and `mem` is ignored with a warning.
    pub mem: Option<u64>,
}

impl Default for CommandLine {
    fn default() -> Self {
        Self {
            log: LogLevel::Info,
            selftest: None,
            apps: vec![App::Inventory],
            mode: Mode::Interrupt,
            net: Net::Ivshmem,
            id: None,
            mtu: None,
            ip: None,
            ip6: None,
            peer: None,
            port: 7,
            count: 4,
            interval: 100,
            sizes: vec![56],
            bytes: 1 << 20,
            parallel: 1,
            repeat: 1,
            link_timeout: 60,
            pcap: None,
            spin: None,
            mem: None,
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
            } => write!(f, "bad value '{value}' for '{key}': expected {expected}"),
        }
    }
}

impl core::error::Error for CmdlineError {}

/// Every key the command line accepts, in the order `Display` writes them.
pub const KEYS: &[&str] = &[
    "log",
    "selftest",
    "app",
    "mode",
    "net",
    "id",
    "mtu",
    "ip",
    "ip6",
    "peer",
    "port",
    "count",
    "interval",
    "size",
    "bytes",
    "parallel",
    "repeat",
    "link-timeout",
    "pcap",
    "spin",
    "mem",
];

impl CommandLine {
    /// Parses a whole command line (defaults for every key not given).
    ///
    /// # Errors
    ///
    /// The first [`CmdlineError`] found, from left to right.
    pub fn parse(line: &str) -> Result<Self, CmdlineError> {
        let mut parsed = Self::default();
        parsed.apply(line)?;
        Ok(parsed)
    }

    /// Sets the keys given in `line` on top of `self`, leaving the others
    /// alone (the launcher's typed options first, then the user's
    /// `--append` words). A key may appear once in `line`.
    ///
    /// # Errors
    ///
    /// As for [`parse`](Self::parse); `self` may then be partly updated.
    pub fn apply(&mut self, line: &str) -> Result<(), CmdlineError> {
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
            self.set(key, value)?;
        }
        Ok(())
    }

    /// Sets one key.
    ///
    /// # Errors
    ///
    /// [`CmdlineError::UnknownKey`] or [`CmdlineError::BadValue`].
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), CmdlineError> {
        match key {
            "log" => {
                self.log = value_of(&LogLevel::NAMES, value)
                    .ok_or_else(|| bad("log", value, "off, error, warn, info, debug or trace"))?;
            }
            "selftest" => {
                self.selftest = Some(value_of(&SelfTest::NAMES, value).ok_or_else(|| {
                    bad(
                        "selftest",
                        value,
                        "pagefault, panic, shm, oom or stack-overflow",
                    )
                })?);
            }
            "app" => {
                self.apps = value
                    .split(',')
                    .map(|name| value_of(&App::NAMES, name))
                    .collect::<Option<Vec<App>>>()
                    .ok_or_else(|| bad("app", value, APPS_EXPECTED))?;
            }
            "mode" => {
                self.mode = value.parse()?;
            }
            "net" => self.net = value.parse()?,
            "id" => self.id = Some(number(value, "id", 0, 1, "0 or 1")? as u16),
            "mtu" => {
                self.mtu =
                    Some(number(value, "mtu", 68, 65_535, "a number from 68 to 65535")? as u16);
            }
            "ip" => {
                self.ip =
                    Some(parse_cidr(value).ok_or_else(|| {
                        bad("ip", value, "an IPv4 address/prefix, e.g. 10.0.0.1/24")
                    })?);
            }
            "ip6" => {
                self.ip6 = Some(parse_cidr6(value).ok_or_else(|| {
                    bad(
                        "ip6",
                        value,
                        "a unicast IPv6 address/prefix, e.g. fd00::1/64",
                    )
                })?);
            }
            "peer" => {
                self.peer = Some(value.parse::<IpAddr>().ok().filter(is_unicast).ok_or_else(
                    || {
                        bad(
                            "peer",
                            value,
                            "a unicast IPv4 or IPv6 address, e.g. 10.0.0.2 or fd00::2",
                        )
                    },
                )?);
            }
            "port" => {
                self.port = number(value, "port", 1, 65_535, "a port from 1 to 65535")? as u16
            }
            "count" => {
                self.count = number(value, "count", 1, 65_535, "a number from 1 to 65535")? as u32;
            }
            "interval" => {
                self.interval =
                    number(value, "interval", 0, 60_000, "milliseconds from 0 to 60000")? as u32;
            }
            "size" => {
                const EXPECTED: &str =
                    "bytes from 0 to 65507, or up to 8 of them separated by commas";
                let sizes = value
                    .split(',')
                    .map(|size| number(size, "size", 0, u64::from(MAX_SIZE), EXPECTED))
                    .collect::<Result<Vec<u64>, CmdlineError>>()
                    .map_err(|_| bad("size", value, EXPECTED))?;
                if sizes.len() > MAX_SIZES {
                    return Err(bad("size", value, EXPECTED));
                }
                self.sizes = sizes.into_iter().map(|size| size as u32).collect();
            }
            "bytes" => {
                self.bytes = parse_bytes(value).ok_or_else(|| {
                    bad(
                        "bytes",
                        value,
                        "a byte count such as 1048576, 64K or 16M (at most 4G)",
                    )
                })?;
            }
            "parallel" => {
                self.parallel = number(value, "parallel", 1, 16, "a number from 1 to 16")? as u32;
            }
            "repeat" => {
                self.repeat = number(value, "repeat", 1, 1000, "a number from 1 to 1000")? as u32;
            }
            "link-timeout" => {
                self.link_timeout =
                    number(value, "link-timeout", 1, 3600, "seconds from 1 to 3600")? as u32;
            }
            "pcap" => {
                self.pcap = Some(
                    value_of(&Capture::NAMES, value)
                        .ok_or_else(|| bad("pcap", value, "com2 (the second serial port)"))?,
                );
            }
            "spin" => {
                self.spin = Some(
                    number(value, "spin", 0, 100_000, "microseconds from 0 to 100000")? as u32,
                );
            }
            "mem" => {
                const EXPECTED: &str = "the top of the cell's RAM, such as 64M (8M to 4G)";
                let top = parse_bytes(value).ok_or_else(|| bad("mem", value, EXPECTED))?;
                if !(8 << 20..=4 << 30).contains(&top) || top % 4096 != 0 {
                    return Err(bad("mem", value, EXPECTED));
                }
                self.mem = Some(top);
            }
            _ => {
                return Err(CmdlineError::UnknownKey {
                    key: key.to_string(),
                });
            }
        }
        Ok(())
    }

    /// Whether every app ends by itself (none of them is `link` or `server`).
    pub fn ends_by_itself(&self) -> bool {
        !self.apps.iter().any(|app| app.is_endless())
    }
}

impl core::str::FromStr for CommandLine {
    type Err = CmdlineError;

    fn from_str(line: &str) -> Result<Self, CmdlineError> {
        Self::parse(line)
    }
}

/// Writes `key=value` words for what differs from the defaults, in
/// [`KEYS`] order, separated by single spaces.
impl fmt::Display for CommandLine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let default = Self::default();
        let mut separator = "";
        let mut word = |f: &mut fmt::Formatter<'_>, key: &str, value: &dyn fmt::Display| {
            let result = write!(f, "{separator}{key}={value}");
            separator = " ";
            result
        };
        if self.log != default.log {
            word(f, "log", &name_of(&LogLevel::NAMES, self.log))?;
        }
        if let Some(selftest) = self.selftest {
            word(f, "selftest", &name_of(&SelfTest::NAMES, selftest))?;
        }
        if self.apps != default.apps {
            word(f, "app", &AppList(&self.apps))?;
        }
        if self.mode != default.mode {
            word(f, "mode", &self.mode)?;
        }
        if self.net != default.net {
            word(f, "net", &self.net)?;
        }
        if let Some(id) = self.id {
            word(f, "id", &id)?;
        }
        if let Some(mtu) = self.mtu {
            word(f, "mtu", &mtu)?;
        }
        if let Some(ip) = self.ip {
            word(f, "ip", &ip)?;
        }
        if let Some(ip6) = self.ip6 {
            word(f, "ip6", &ip6)?;
        }
        if let Some(peer) = self.peer {
            word(f, "peer", &peer)?;
        }
        let numbers = [
            ("port", u64::from(self.port), u64::from(default.port)),
            ("count", u64::from(self.count), u64::from(default.count)),
            (
                "interval",
                u64::from(self.interval),
                u64::from(default.interval),
            ),
        ];
        for (key, value, default) in numbers {
            if value != default {
                word(f, key, &value)?;
            }
        }
        if self.sizes != default.sizes {
            word(f, "size", &NumberList(&self.sizes))?;
        }
        if self.bytes != default.bytes {
            word(f, "bytes", &ByteCount(self.bytes))?;
        }
        let numbers = [
            ("parallel", self.parallel, default.parallel),
            ("repeat", self.repeat, default.repeat),
            ("link-timeout", self.link_timeout, default.link_timeout),
        ];
        for (key, value, default) in numbers {
            if value != default {
                word(f, key, &value)?;
            }
        }
        if let Some(pcap) = self.pcap {
            word(f, "pcap", &pcap)?;
        }
        if let Some(spin) = self.spin {
            word(f, "spin", &spin)?;
        }
        if let Some(mem) = self.mem {
            word(f, "mem", &ByteCount(mem))?;
        }
        Ok(())
    }
}

/// `ping,tcp-echo`.
struct AppList<'a>(&'a [App]);

impl fmt::Display for AppList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, app) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            f.write_str(app.name())?;
        }
        Ok(())
    }
}

/// `56,1472,1473`.
struct NumberList<'a>(&'a [u32]);

impl fmt::Display for NumberList<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, number) in self.0.iter().enumerate() {
            if index > 0 {
                f.write_str(",")?;
            }
            write!(f, "{number}")?;
        }
        Ok(())
    }
}

/// The largest `size`: an ICMPv4 echo or UDP payload in a 65535-byte IPv4
/// datagram (65535 − 20 − 8).
pub const MAX_SIZE: u32 = 65_507;
/// The most sizes `size` takes.
pub const MAX_SIZES: usize = 8;

/// A byte count with the largest exact unit: `16M`, `64K`, `1000`.
struct ByteCount(u64);

impl fmt::Display for ByteCount {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (unit, shift) in [("G", 30), ("M", 20), ("K", 10)] {
            if self.0 != 0 && self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{}", self.0)
    }
}

fn value_of<T: Copy>(names: &[(&str, T)], name: &str) -> Option<T> {
    names
        .iter()
        .find(|(known, _)| *known == name)
        .map(|(_, value)| *value)
}

fn name_of<T: Copy + PartialEq>(names: &[(&'static str, T)], value: T) -> &'static str {
    names
        .iter()
        .find(|(_, known)| *known == value)
        .map_or("?", |(name, _)| name)
}

fn parse_cidr(value: &str) -> Option<Ipv4Cidr> {
    let (address, prefix) = value.split_once('/').unwrap_or((value, "24"));
    let prefix: u8 = prefix.parse().ok().filter(|prefix| *prefix <= 32)?;
    Some(Ipv4Cidr {
        address: address.parse().ok()?,
        prefix,
    })
}

/// `address/prefix` (default prefix 64), for a unicast IPv6 address.
fn parse_cidr6(value: &str) -> Option<Ipv6Cidr> {
    let (address, prefix) = value.split_once('/').unwrap_or((value, "64"));
    let prefix: u8 = prefix.parse().ok().filter(|prefix| *prefix <= 128)?;
    let address: Ipv6Addr = address.parse().ok()?;
    is_unicast(&IpAddr::V6(address)).then_some(Ipv6Cidr { address, prefix })
}

/// Whether `address` can be a host's own: not unspecified, multicast,
/// broadcast or loopback.
fn is_unicast(address: &IpAddr) -> bool {
    !address.is_unspecified()
        && !address.is_multicast()
        && !address.is_loopback()
        && *address != IpAddr::V4(Ipv4Addr::BROADCAST)
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
    use alloc::format;

    #[test]
    fn empty_line_gives_defaults() {
        assert_eq!(CommandLine::parse(""), Ok(CommandLine::default()));
        assert_eq!(CommandLine::parse("   "), Ok(CommandLine::default()));
        assert_eq!(CommandLine::default().to_string(), "");
    }

    #[test]
    fn keys_are_parsed() {
        let line = CommandLine::parse(
            "log=debug  selftest=pagefault app=ping,tcp-echo mode=poll id=1 mtu=9000 \
             ip=10.1.0.5/16 peer=10.1.0.6 bytes=16M count=3 interval=0",
        )
        .unwrap();
        assert_eq!(line.log, LogLevel::Debug);
        assert_eq!(line.selftest, Some(SelfTest::PageFault));
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
        assert_eq!(line.peer, Some(IpAddr::V4(Ipv4Addr::new(10, 1, 0, 6))));
        assert_eq!((line.bytes, line.count, line.interval), (16 << 20, 3, 0));
        assert_eq!(line.sizes, [56]);
        let v6 =
            CommandLine::parse("ip6=fd00::1 peer=fe80::2ff:fe00:1 size=56,1473,60000").unwrap();
        assert_eq!(
            v6.ip6,
            Some(Ipv6Cidr {
                address: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1),
                prefix: 64
            }),
            "the prefix defaults to 64"
        );
        assert_eq!(
            v6.peer,
            Some(IpAddr::V6(Ipv6Addr::new(
                0xfe80, 0, 0, 0, 0, 0x2ff, 0xfe00, 1
            )))
        );
        assert_eq!(v6.sizes, [56, 1473, 60000]);
        assert_eq!(
            CommandLine::parse("ip6=2001:db8::5/48")
                .unwrap()
                .ip6
                .unwrap()
                .prefix,
            48
        );
        assert_eq!("stats".parse::<App>(), Ok(App::Statistics));
        assert_eq!(App::FragmentFlood.to_string(), "fragment-flood");
        assert_eq!(
            CommandLine::parse("ip=10.0.0.9")
                .unwrap()
                .ip
                .unwrap()
                .prefix,
            24
        );
        assert_eq!(App::TcpEcho.name(), "tcp-echo");
        assert_eq!("udp-echo".parse::<App>(), Ok(App::UdpEcho));
        assert_eq!("ivshmem".parse::<App>(), Ok(App::Ivshmem));
        assert_eq!(App::Ivshmem.to_string(), "ivshmem");
        assert!(App::Ivshmem.needs_link() && !App::Ivshmem.is_endless());
        assert_eq!(Mode::Interrupt.to_string(), "irq");
        assert_eq!("poll".parse::<Mode>(), Ok(Mode::Poll));
        assert!("fast".parse::<Mode>().is_err());
        let measuring =
            CommandLine::parse("app=server,tcp-send,tcp-recv,udp-flood net=virtio").unwrap();
        assert_eq!(
            measuring.apps,
            [App::Server, App::TcpSend, App::TcpRecv, App::UdpFlood]
        );
        assert_eq!(measuring.net, Net::Virtio);
        assert_eq!(
            measuring.to_string(),
            "app=server,tcp-send,tcp-recv,udp-flood net=virtio"
        );
        assert_eq!(CommandLine::parse("net=ivshmem").unwrap().net, Net::Ivshmem);
        assert_eq!(CommandLine::parse("net=ivshmem").unwrap().to_string(), "");
        assert!(App::UdpFlood.needs_link() && !App::TcpRecv.is_endless());
    }

    #[test]
    fn display_round_trips() {
        let mut line = CommandLine {
            log: LogLevel::Trace,
            selftest: Some(SelfTest::StackOverflow),
            apps: vec![App::Ping, App::TcpEcho, App::UdpEcho],
            mode: Mode::Poll,
            net: Net::Virtio,
            id: Some(0),
            mtu: Some(16384),
            ip: Some(Ipv4Cidr {
                address: Ipv4Addr::new(192, 168, 19, 2),
                prefix: 24,
            }),
            ip6: Some(Ipv6Cidr {
                address: Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 2),
                prefix: 64,
            }),
            peer: Some(IpAddr::V4(Ipv4Addr::new(192, 168, 19, 1))),
            port: 9,
            count: 200,
            interval: 0,
            sizes: vec![1473],
            bytes: 3 << 20,
            parallel: 3,
            repeat: 2,
            link_timeout: 30,
            pcap: Some(Capture::Com2),
            spin: Some(0),
            mem: Some(32 << 20),
        };
        let text = line.to_string();
        assert_eq!(
            text,
            "log=trace selftest=stack-overflow app=ping,tcp-echo,udp-echo mode=poll net=virtio id=0 \
             mtu=16384 ip=192.168.19.2/24 ip6=fd00::2/64 peer=192.168.19.1 port=9 count=200 \
             interval=0 size=1473 bytes=3M parallel=3 repeat=2 link-timeout=30 pcap=com2 spin=0 mem=32M"
        );
        assert_eq!(CommandLine::parse(&text), Ok(line.clone()));
        let v6 = CommandLine {
            apps: vec![App::Ping, App::UdpEcho, App::Statistics],
            peer: Some(IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1))),
            sizes: vec![56, 1472, 1473, 8000, 60000],
            ..CommandLine::default()
        };
        let text = v6.to_string();
        assert_eq!(
            text,
            "app=ping,udp-echo,stats peer=fd00::1 size=56,1472,1473,8000,60000"
        );
        assert_eq!(CommandLine::parse(&text), Ok(v6));
        for bytes in [1, 1000, 1 << 10, 5 << 20, 1 << 32, (1 << 20) + 1] {
            line.bytes = bytes;
            assert_eq!(CommandLine::parse(&line.to_string()), Ok(line.clone()));
        }
        let only_apps = CommandLine {
            apps: vec![App::Server],
            ..CommandLine::default()
        };
        assert_eq!(only_apps.to_string(), "app=server");
        let ivshmem = CommandLine {
            apps: vec![App::Ivshmem],
            mode: Mode::Poll,
            id: Some(1),
            link_timeout: 5,
            ..CommandLine::default()
        };
        let text = ivshmem.to_string();
        assert_eq!(text, "app=ivshmem mode=poll id=1 link-timeout=5");
        assert_eq!(CommandLine::parse(&text), Ok(ivshmem));
    }

    #[test]
    fn apply_layers_words_over_a_line() {
        let mut line = CommandLine {
            apps: vec![App::Server],
            mtu: Some(1500),
            ..CommandLine::default()
        };
        line.apply("mtu=9000 log=debug").unwrap();
        assert_eq!(line.mtu, Some(9000));
        assert_eq!(line.apps, [App::Server]);
        assert_eq!(line.to_string(), "log=debug app=server mtu=9000");
        assert!(line.apply("count=1 count=2").is_err());
        assert!(!line.ends_by_itself());
        assert!(CommandLine::default().ends_by_itself());
    }

    #[test]
    fn errors_name_the_culprit() {
        let unknown = CommandLine::parse("log=info bogus=1").unwrap_err();
        assert_eq!(
            unknown,
            CmdlineError::UnknownKey {
                key: "bogus".into()
            }
        );
        assert!(format!("{unknown}").contains("unknown key 'bogus'"));
        assert_eq!(
            CommandLine::parse("log"),
            Err(CmdlineError::MissingValue { word: "log".into() })
        );
        let message = CommandLine::parse("log=loud").unwrap_err().to_string();
        assert!(message.contains("bad value 'loud' for 'log'"), "{message}");
        let message = CommandLine::parse("id=2").unwrap_err().to_string();
        assert!(message.contains("expected 0 or 1"), "{message}");
        for bad in [
            "mtu=20",
            "mtu=65536",
            "mode=fast",
            "app=ping,dance",
            "app=",
            "ip=10.0.0.300",
            "ip=10.0.0.1/33",
            "peer=10.0.0",
            "bytes=0",
            "bytes=5G",
            "bytes=12Q",
            "port=0",
            "count=0",
            "size=65508",
            "size=56,",
            "size=1,2,3,4,5,6,7,8,9",
            "ip6=10.0.0.1",
            "ip6=ff02::1/64",
            "ip6=fd00::1/129",
            "ip6=::",
            "peer=ff02::1",
            "peer=0.0.0.0",
            "peer=255.255.255.255",
            "parallel=17",
            "repeat=0",
            "link-timeout=0",
            "spin=100001",
            "selftest=fire",
            "pcap=com1",
            "pcap=",
            "net=tap",
            "app=tcp-sink",
        ] {
            assert!(CommandLine::parse(bad).is_err(), "{bad}");
        }
        assert_eq!(
            CommandLine::parse("log=info log=warn"),
            Err(CmdlineError::DuplicateKey { key: "log".into() })
        );
    }
}
