//! The kernel's report lines: what it prints on its serial console for the
//! host to read (`docs/kernel.md`, "Report lines").
//!
//! Each line is a type. The kernel writes it with `Display` (one line, no
//! line ending); the launcher and the tests read it with `FromStr`, which
//! accepts exactly what `Display` writes and nothing else, so a change of
//! format is a change of this module and of both sides at once. Log lines
//! (`[   1.234567] INFO  …`) are not part of the contract.
//!
//! Types whose text the kernel must be able to write without allocating
//! (the fatal paths run with a broken heap) are generic over the text's
//! type: the kernel uses `&str` or a `Display` value, the host `String`.

use alloc::string::{String, ToString};
use alloc::vec::Vec;
use core::fmt;
use core::net::{IpAddr, SocketAddr};
use core::str::FromStr;

use crate::cmdline::App;

mod measure;
pub use measure::{Direction, PingPercentiles, TcpOneWay, UdpFloodResult, percentile};

/// A line that is not the report it was parsed as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ParseError {
    /// What kind of line was expected.
    pub expected: &'static str,
}

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "not a well-formed {} line", self.expected)
    }
}

impl core::error::Error for ParseError {}

/// Walks a line from left to right, matching literal text and taking the
/// values between it.
struct Scanner<'a> {
    rest: &'a str,
    expected: &'static str,
}

impl<'a> Scanner<'a> {
    fn new(line: &'a str, expected: &'static str) -> Self {
        Self {
            rest: line,
            expected,
        }
    }

    fn error(&self) -> ParseError {
        ParseError {
            expected: self.expected,
        }
    }

    /// Consumes `tag`, which must come next.
    fn tag(&mut self, tag: &str) -> Result<(), ParseError> {
        self.rest = self.rest.strip_prefix(tag).ok_or(self.error())?;
        Ok(())
    }

    /// Consumes `tag` if it comes next; returns whether it did.
    fn optional_tag(&mut self, tag: &str) -> bool {
        match self.rest.strip_prefix(tag) {
            Some(rest) => {
                self.rest = rest;
                true
            }
            None => false,
        }
    }

    /// The text up to the first `tag`, consuming both.
    fn until(&mut self, tag: &str) -> Result<&'a str, ParseError> {
        let (value, rest) = self.rest.split_once(tag).ok_or(self.error())?;
        self.rest = rest;
        Ok(value)
    }

    /// The value up to the first `tag`, consuming both.
    fn value<T: FromStr>(&mut self, tag: &str) -> Result<T, ParseError> {
        let text = self.until(tag)?;
        text.parse().map_err(|_| self.error())
    }

    /// A `0x…` number up to the first `tag`, consuming both.
    fn hex(&mut self, tag: &str) -> Result<u64, ParseError> {
        let text = self.until(tag)?;
        parse_hex(text).ok_or(self.error())
    }

    /// The whole rest as a value.
    fn last<T: FromStr>(self) -> Result<T, ParseError> {
        self.rest.parse().map_err(|_| self.error())
    }

    /// The whole rest as a `0x…` number.
    fn last_hex(self) -> Result<u64, ParseError> {
        parse_hex(self.rest).ok_or(self.error())
    }

    /// Succeeds if nothing is left.
    fn end(self) -> Result<(), ParseError> {
        if self.rest.is_empty() {
            Ok(())
        } else {
            Err(self.error())
        }
    }
}

/// Parses `0x` followed by hexadecimal digits.
fn parse_hex(text: &str) -> Option<u64> {
    let digits = text.strip_prefix("0x")?;
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// Parses exactly `width` hexadecimal digits.
fn parse_fixed_hex(text: &str, width: usize) -> Option<u64> {
    if text.len() != width || !text.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok()
}

// ---- values -----------------------------------------------------------------

/// A duration printed in milliseconds with three decimals (`0.251`); holds
/// microseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// The duration in milliseconds.
    pub fn as_millis_f64(self) -> f64 {
        self.0 as f64 / 1000.0
    }
}

impl fmt::Display for Millis {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{:03}", self.0 / 1000, self.0 % 1000)
    }
}

impl FromStr for Millis {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let error = ParseError {
            expected: "milliseconds",
        };
        let (whole, fraction) = text.split_once('.').ok_or(error)?;
        if fraction.len() != 3 || !fraction.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error);
        }
        let whole: u64 = whole.parse().map_err(|_| error)?;
        let fraction: u64 = fraction.parse().map_err(|_| error)?;
        whole
            .checked_mul(1000)
            .and_then(|micros| micros.checked_add(fraction))
            .map(Self)
            .ok_or(error)
    }
}

/// A throughput printed in Mbit/s with one decimal (`390.4`); holds tenths
/// of Mbit/s.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Mbits(pub u64);

impl Mbits {
    /// The throughput of `bytes` moved in `micros` microseconds.
    pub fn of_transfer(bytes: u64, micros: u64) -> Self {
        Self(bytes.saturating_mul(80) / micros.max(1))
    }

    /// The throughput in Mbit/s.
    pub fn as_f64(self) -> f64 {
        self.0 as f64 / 10.0
    }
}

impl fmt::Display for Mbits {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}", self.0 / 10, self.0 % 10)
    }
}

impl FromStr for Mbits {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let error = ParseError { expected: "Mbit/s" };
        let (whole, tenth) = text.split_once('.').ok_or(error)?;
        if tenth.len() != 1 || !tenth.bytes().all(|b| b.is_ascii_digit()) {
            return Err(error);
        }
        let whole: u64 = whole.parse().map_err(|_| error)?;
        let tenth: u64 = tenth.parse().map_err(|_| error)?;
        whole
            .checked_mul(10)
            .and_then(|tenths| tenths.checked_add(tenth))
            .map(Self)
            .ok_or(error)
    }
}

/// `PASS` or `FAIL`.
fn verdict_word(pass: bool) -> &'static str {
    if pass { "PASS" } else { "FAIL" }
}

fn parse_verdict_word(word: &str, expected: &'static str) -> Result<bool, ParseError> {
    match word {
        "PASS" => Ok(true),
        "FAIL" => Ok(false),
        _ => Err(ParseError { expected }),
    }
}

// ---- PCI --------------------------------------------------------------------

/// Bus, device and function of a PCI function, printed `BB:DD.F`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Bdf {
    /// Bus number.
    pub bus: u8,
    /// Device number (0–31).
    pub device: u8,
    /// Function number (0–7).
    pub function: u8,
}

impl fmt::Display for Bdf {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:02x}:{:02x}.{}", self.bus, self.device, self.function)
    }
}

impl FromStr for Bdf {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let error = ParseError {
            expected: "BB:DD.F",
        };
        let (bus, rest) = text.split_once(':').ok_or(error)?;
        let (device, function) = rest.split_once('.').ok_or(error)?;
        let bus = parse_fixed_hex(bus, 2).ok_or(error)? as u8;
        let device = parse_fixed_hex(device, 2).ok_or(error)? as u8;
        let function = parse_fixed_hex(function, 1).ok_or(error)? as u8;
        if device > 31 || function > 7 {
            return Err(error);
        }
        Ok(Self {
            bus,
            device,
            function,
        })
    }
}

/// What a BAR decodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum BarKind {
    /// I/O ports (`io`).
    Io,
    /// Memory below 4 GiB (`mem32`).
    Memory32,
    /// Memory anywhere, two BAR slots (`mem64`).
    Memory64,
}

/// A sized base address register: `BARn kind [prefetchable] 0xADDR size 0xSIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Bar {
    /// BAR number (0–5).
    pub index: u8,
    /// Decoding type.
    pub kind: BarKind,
    /// Prefetchable memory.
    pub prefetchable: bool,
    /// Assigned address (0 if nobody assigned one).
    pub address: u64,
    /// Size in bytes (a power of two).
    pub size: u64,
}

impl fmt::Display for Bar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kind = match self.kind {
            BarKind::Io => "io",
            BarKind::Memory32 => "mem32",
            BarKind::Memory64 => "mem64",
        };
        let prefetchable = if self.prefetchable {
            " prefetchable"
        } else {
            ""
        };
        write!(
            f,
            "BAR{} {kind}{prefetchable} {:#x} size {:#x}",
            self.index, self.address, self.size
        )
    }
}

impl Bar {
    fn scan(scanner: &mut Scanner<'_>) -> Result<Self, ParseError> {
        scanner.tag("BAR")?;
        let index: u8 = scanner.value(" ")?;
        let kind = match scanner.until(" ")? {
            "io" => BarKind::Io,
            "mem32" => BarKind::Memory32,
            "mem64" => BarKind::Memory64,
            _ => return Err(scanner.error()),
        };
        let prefetchable = scanner.optional_tag("prefetchable ");
        let address = scanner.hex(" size ")?;
        if index > 5 {
            return Err(scanner.error());
        }
        Ok(Self {
            index,
            kind,
            prefetchable,
            address,
            size: 0,
        })
    }
}

impl FromStr for Bar {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "BAR");
        let bar = Self::scan(&mut scanner)?;
        Ok(Self {
            size: scanner.last_hex()?,
            ..bar
        })
    }
}

/// `PCI inventory (N functions):`, followed by the function and BAR lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InventoryHeader {
    /// Functions listed after it.
    pub functions: usize,
}

impl fmt::Display for InventoryHeader {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PCI inventory ({} functions):", self.functions)
    }
}

impl FromStr for InventoryHeader {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "PCI inventory header");
        scanner.tag("PCI inventory (")?;
        let functions = scanner.value(" functions):")?;
        scanner.end()?;
        Ok(Self { functions })
    }
}

/// `pci BB:DD.F VVVV:DDDD class CC.SS.PP rev RR`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciFunction {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class, sub-class, programming interface.
    pub class: [u8; 3],
    /// Revision ID.
    pub revision: u8,
}

impl fmt::Display for PciFunction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [class, subclass, prog_if] = self.class;
        write!(
            f,
            "pci {} {:04x}:{:04x} class {class:02x}.{subclass:02x}.{prog_if:02x} rev {:02x}",
            self.bdf, self.vendor, self.device, self.revision
        )
    }
}

impl FromStr for PciFunction {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "PCI function");
        scanner.tag("pci ")?;
        let bdf = scanner.value(" ")?;
        let hex = |text: &str, width: usize| parse_fixed_hex(text, width);
        let error = scanner.error();
        let vendor = hex(scanner.until(":")?, 4).ok_or(error)? as u16;
        let device = hex(scanner.until(" class ")?, 4).ok_or(error)? as u16;
        let class = hex(scanner.until(".")?, 2).ok_or(error)? as u8;
        let subclass = hex(scanner.until(".")?, 2).ok_or(error)? as u8;
        let prog_if = hex(scanner.until(" rev ")?, 2).ok_or(error)? as u8;
        let revision = hex(scanner.rest, 2).ok_or(error)? as u8;
        Ok(Self {
            bdf,
            vendor,
            device,
            class: [class, subclass, prog_if],
            revision,
        })
    }
}

/// `pci BB:DD.F   BARn …`: a BAR of the function listed before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PciBar {
    /// The function.
    pub bdf: Bdf,
    /// The BAR.
    pub bar: Bar,
}

impl fmt::Display for PciBar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pci {}   {}", self.bdf, self.bar)
    }
}

impl FromStr for PciBar {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "PCI BAR");
        scanner.tag("pci ")?;
        let bdf = scanner.value("   ")?;
        let bar = scanner.last().map_err(|_| ParseError {
            expected: "PCI BAR",
        })?;
        Ok(Self { bdf, bar })
    }
}

/// One function of a parsed inventory with its BARs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InventoryEntry {
    /// The function line.
    pub function: PciFunction,
    /// The BAR lines under it.
    pub bars: Vec<Bar>,
}

impl InventoryEntry {
    /// BAR `index`, if listed.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|bar| bar.index == index)
    }
}

/// Finds the inventory in `lines` (the header, then exactly as many
/// functions as it announces, each followed by its BAR lines).
///
/// # Errors
///
/// No header, a malformed line inside the block, a BAR line of another
/// function, or a count that does not match the header.
pub fn parse_inventory<S: AsRef<str>>(lines: &[S]) -> Result<Vec<InventoryEntry>, ParseError> {
    let error = ParseError {
        expected: "PCI inventory",
    };
    let mut lines = lines.iter().map(AsRef::as_ref);
    let header: InventoryHeader = lines
        .by_ref()
        .find_map(|line| line.parse().ok())
        .ok_or(error)?;
    let mut entries: Vec<InventoryEntry> = Vec::new();
    for line in lines {
        if !line.starts_with("pci ") {
            break;
        }
        if let Ok(bar) = line.parse::<PciBar>() {
            let entry = entries
                .last_mut()
                .filter(|entry| entry.function.bdf == bar.bdf)
                .ok_or(error)?;
            entry.bars.push(bar.bar);
        } else {
            entries.push(InventoryEntry {
                function: line.parse()?,
                bars: Vec::new(),
            });
        }
    }
    if entries.len() != header.functions {
        return Err(error);
    }
    Ok(entries)
}

// ---- boot and self-tests ----------------------------------------------------

/// `boot: ok`: the inventory app finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BootOk;

impl fmt::Display for BootOk {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("boot: ok")
    }
}

impl FromStr for BootOk {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        if line == "boot: ok" {
            Ok(Self)
        } else {
            Err(ParseError {
                expected: "boot: ok",
            })
        }
    }
}

/// `shm: BAR2 … first 0x… last 0x…`: `selftest=shm` read the first and last
/// `u64` of the shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SharedMemoryProbe {
    /// The shared-memory BAR.
    pub bar: Bar,
    /// Its first `u64`.
    pub first: u64,
    /// Its last `u64`.
    pub last: u64,
}

impl fmt::Display for SharedMemoryProbe {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shm: {} first {:#018x} last {:#018x}",
            self.bar, self.first, self.last
        )
    }
}

impl FromStr for SharedMemoryProbe {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "shared-memory probe");
        scanner.tag("shm: ")?;
        let bar = Bar::scan(&mut scanner)?;
        let size = scanner.hex(" first ")?;
        let first = scanner.hex(" last ")?;
        let last = scanner.last_hex()?;
        Ok(Self {
            bar: Bar { size, ..bar },
            first,
            last,
        })
    }
}

/// `self-test: overflowing the stack; guard page at 0x…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackGuard {
    /// The unmapped page below the stack.
    pub guard_page: u64,
}

impl fmt::Display for StackGuard {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "self-test: overflowing the stack; guard page at {:#x}",
            self.guard_page
        )
    }
}

impl FromStr for StackGuard {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "stack guard");
        scanner.tag("self-test: overflowing the stack; guard page at ")?;
        Ok(Self {
            guard_page: scanner.last_hex()?,
        })
    }
}

// ---- the device and the link -------------------------------------------------

/// Which kind of device carries the link.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DeviceKind {
    /// A real ivshmem-v2 device (Jailhouse, the Siemens QEMU fork).
    V2,
    /// ivshmem-v2 emulated on QEMU's `ivshmem-doorbell` with our server.
    Doorbell,
    /// ivshmem-v2 emulated on QEMU's `ivshmem-plain`: no interrupts.
    Plain,
}

impl DeviceKind {
    const NAMES: [(&'static str, Self); 3] = [
        ("ivshmem-v2", Self::V2),
        ("ivshmem-v2 emulated on ivshmem-doorbell", Self::Doorbell),
        ("ivshmem-v2 emulated on ivshmem-plain", Self::Plain),
    ];
}

impl fmt::Display for DeviceKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, kind)| kind == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

impl FromStr for DeviceKind {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, kind)| *kind)
            .ok_or(ParseError {
                expected: "device kind",
            })
    }
}

/// The prefix of every line about the ivshmem device: [`DeviceFound`], or
/// the reason no device could be used.
pub const DEVICE_PREFIX: &str = "ivshmem: ";

/// `ivshmem: <kind> at BB:DD.F, id N of M, protocol 0xPPPP, V vector(s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DeviceFound {
    /// The kind of device.
    pub kind: DeviceKind,
    /// Where it is.
    pub bdf: Bdf,
    /// Our peer ID.
    pub id: u16,
    /// Peers on the link, including us.
    pub max_peers: u16,
    /// The ivshmem-v2 protocol ID.
    pub protocol: u16,
    /// Interrupt vectors (0 without interrupts).
    pub vectors: u16,
}

impl fmt::Display for DeviceFound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{DEVICE_PREFIX}{} at {}, id {} of {}, protocol {:#06x}, {} vector(s)",
            self.kind, self.bdf, self.id, self.max_peers, self.protocol, self.vectors
        )
    }
}

impl FromStr for DeviceFound {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem device");
        scanner.tag(DEVICE_PREFIX)?;
        let kind = scanner.value(" at ")?;
        let bdf = scanner.value(", id ")?;
        let id = scanner.value(" of ")?;
        let max_peers = scanner.value(", protocol ")?;
        let protocol = scanner.hex(", ")?;
        let vectors = scanner.value(" vector(s)")?;
        let protocol = u16::try_from(protocol).map_err(|_| scanner.error())?;
        scanner.end()?;
        Ok(Self {
            kind,
            bdf,
            id,
            max_peers,
            protocol,
            vectors,
        })
    }
}

/// `link: up (link-ups N, resets M)`: the carrier came up (our state and
/// the peer's are RUN).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkUp {
    /// Times the link came up, this one included.
    pub link_ups: u64,
    /// Times the link went down before.
    pub resets: u64,
}

impl fmt::Display for LinkUp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "link: up (link-ups {}, resets {})",
            self.link_ups, self.resets
        )
    }
}

impl FromStr for LinkUp {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "link up");
        scanner.tag("link: up (link-ups ")?;
        let link_ups = scanner.value(", resets ")?;
        let resets = scanner.value(")")?;
        scanner.end()?;
        Ok(Self { link_ups, resets })
    }
}

/// `link: down (resets N)`: the peer reset or left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LinkDown {
    /// Times the link went down, this one included.
    pub resets: u64,
}

impl fmt::Display for LinkDown {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "link: down (resets {})", self.resets)
    }
}

impl FromStr for LinkDown {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "link down");
        scanner.tag("link: down (resets ")?;
        let resets = scanner.value(")")?;
        scanner.end()?;
        Ok(Self { resets })
    }
}

// ---- the network stack and its peer -------------------------------------------

/// A MAC address, printed `02:00:5e:10:00:01`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct MacAddress(pub [u8; 6]);

impl fmt::Display for MacAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl FromStr for MacAddress {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let error = ParseError {
            expected: "MAC address",
        };
        let mut mac = [0u8; 6];
        let mut parts = text.split(':');
        for byte in &mut mac {
            let part = parts.next().ok_or(error)?;
            *byte = parse_fixed_hex(part, 2).ok_or(error)? as u8;
        }
        if parts.next().is_some() {
            return Err(error);
        }
        Ok(Self(mac))
    }
}

/// An address with its prefix length, printed `10.0.0.1/24` or `fe80::1/64`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct IpPrefix {
    /// The address.
    pub address: IpAddr,
    /// The prefix length.
    pub prefix: u8,
}

impl fmt::Display for IpPrefix {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.address, self.prefix)
    }
}

impl FromStr for IpPrefix {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        let error = ParseError {
            expected: "address/prefix",
        };
        let (address, prefix) = text.split_once('/').ok_or(error)?;
        let address: IpAddr = address.parse().map_err(|_| error)?;
        let prefix: u8 = prefix.parse().map_err(|_| error)?;
        let limit = if address.is_ipv4() { 32 } else { 128 };
        if prefix > limit {
            return Err(error);
        }
        Ok(Self { address, prefix })
    }
}

/// `net: MAC 02:…, MTU 16384, addresses 10.0.0.1/24 fe80::…/64`: the
/// stack is up, with our MAC, the IP MTU the link uses (`mtu=`, or the
/// link's default, `docs/ivshmem-net.md` §4) and every address we answer on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NetConfig {
    /// Our MAC address.
    pub mac: MacAddress,
    /// The IP MTU.
    pub mtu: u32,
    /// Our addresses: IPv4 first, then the IPv6 link-local address, then a
    /// static IPv6 address if one was given.
    pub addresses: Vec<IpPrefix>,
}

impl fmt::Display for NetConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "net: MAC {}, MTU {}, addresses", self.mac, self.mtu)?;
        for address in &self.addresses {
            write!(f, " {address}")?;
        }
        Ok(())
    }
}

impl FromStr for NetConfig {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "net configuration");
        scanner.tag("net: MAC ")?;
        let mac = scanner.value(", MTU ")?;
        let mtu = scanner.value(", addresses")?;
        let mut addresses = Vec::new();
        while !scanner.rest.is_empty() {
            scanner.tag(" ")?;
            let word = scanner.rest.split(' ').next().unwrap_or_default();
            addresses.push(word.parse().map_err(|_| scanner.error())?);
            scanner.rest = &scanner.rest[word.len()..];
        }
        if addresses.is_empty() {
            return Err(scanner.error());
        }
        Ok(Self {
            mac,
            mtu,
            addresses,
        })
    }
}

/// `peer: MAC 02:…, first frame N bytes`: the first frame from the peer
/// after the link came up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerFirstFrame {
    /// The peer's MAC: the frame's source address.
    pub mac: MacAddress,
    /// The frame's length, Ethernet header included.
    pub length: u32,
}

impl fmt::Display for PeerFirstFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer: MAC {}, first frame {} bytes",
            self.mac, self.length
        )
    }
}

impl FromStr for PeerFirstFrame {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "peer first frame");
        scanner.tag("peer: MAC ")?;
        let mac = scanner.value(", first frame ")?;
        let length = scanner.value(" bytes")?;
        scanner.end()?;
        Ok(Self { mac, length })
    }
}

/// What implementation of ivshmem-net the peer looks like, from how it
/// drives its ring (`docs/ivshmem-net.md` §12).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerGuess {
    /// Linux `ivshmem-net` (`linux`).
    Linux,
    /// Zephyr `eth_ivshmem` (`zephyr`).
    Zephyr,
    /// This project's engine: our kernel or the host bridge (`eth-ivshmem`).
    EthIvshmem,
    /// Not enough evidence yet (`unknown`).
    Unknown,
}

impl PeerGuess {
    const NAMES: [(&'static str, Self); 4] = [
        ("linux", Self::Linux),
        ("zephyr", Self::Zephyr),
        ("eth-ivshmem", Self::EthIvshmem),
        ("unknown", Self::Unknown),
    ];
}

impl fmt::Display for PeerGuess {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let name = Self::NAMES
            .iter()
            .find(|(_, guess)| guess == self)
            .map_or("?", |(name, _)| name);
        f.write_str(name)
    }
}

impl FromStr for PeerGuess {
    type Err = ParseError;

    fn from_str(text: &str) -> Result<Self, ParseError> {
        Self::NAMES
            .iter()
            .find(|(name, _)| *name == text)
            .map(|(_, guess)| *guess)
            .ok_or(ParseError {
                expected: "peer implementation",
            })
    }
}

/// Frames and bytes in one direction: `N frames (B bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Traffic {
    /// Frames.
    pub frames: u64,
    /// Bytes, Ethernet headers included.
    pub bytes: u64,
}

impl fmt::Display for Traffic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} frames ({} bytes)", self.frames, self.bytes)
    }
}

impl Traffic {
    /// `N frames (B bytes)`, then `tag`.
    fn scan(scanner: &mut Scanner<'_>, tag: &str) -> Result<Self, ParseError> {
        let frames = scanner.value(" frames (")?;
        let bytes = scanner.value(" bytes)")?;
        scanner.tag(tag)?;
        Ok(Self { frames, bytes })
    }
}

/// IPv4 reassembly counters: `reassembly R datagrams (I incomplete dropped,
/// S fragments without a slot)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Reassembly {
    /// Fragmented datagrams reassembled.
    pub reassembled: u64,
    /// Incomplete datagrams dropped: their reassembly timed out, or the
    /// link went down while they were incomplete.
    pub incomplete: u64,
    /// Fragments dropped because every reassembly slot was taken.
    pub no_slot: u64,
}

impl fmt::Display for Reassembly {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "reassembly {} datagrams ({} incomplete dropped, {} fragments without a slot)",
            self.reassembled, self.incomplete, self.no_slot
        )
    }
}

impl Reassembly {
    /// The counters, then `tag`.
    fn scan(scanner: &mut Scanner<'_>, tag: &str) -> Result<Self, ParseError> {
        scanner.tag("reassembly ")?;
        let reassembled = scanner.value(" datagrams (")?;
        let incomplete = scanner.value(" incomplete dropped, ")?;
        let no_slot = scanner.value(" fragments without a slot)")?;
        scanner.tag(tag)?;
        Ok(Self {
            reassembled,
            incomplete,
            no_slot,
        })
    }
}

/// `peer: session N ended: …` when the link goes down, or `peer: session N
/// so far: …` on demand: what one session of the link (link-up to
/// link-down) saw of the peer.
///
/// `peer: session N ended: MAC 02:… (or unknown), received F frames (B
/// bytes), largest frame L bytes (MTU at least M), sent F frames (B bytes),
/// protocol errors E, reassembly R datagrams (I incomplete dropped, S
/// fragments without a slot), looks like linux|zephyr|eth-ivshmem|unknown`
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PeerSession {
    /// The session: the link-up count when it started.
    pub session: u64,
    /// Whether the session ended (`ended`) or goes on (`so far`).
    pub ended: bool,
    /// The peer's MAC, once a frame came.
    pub mac: Option<MacAddress>,
    /// Frames from the peer.
    pub received: Traffic,
    /// The longest frame from the peer, Ethernet header included.
    pub largest_frame: u32,
    /// Frames to the peer.
    pub sent: Traffic,
    /// Protocol violations seen from the peer.
    pub protocol_errors: u64,
    /// What IPv4 reassembly did with the peer's fragments.
    pub reassembly: Reassembly,
    /// What the peer looks like.
    pub guess: PeerGuess,
}

impl PeerSession {
    /// The least IP MTU the peer must have: its largest frame less the
    /// Ethernet header (a VLAN tag would make it 4 less).
    pub fn mtu_at_least(&self) -> u32 {
        self.largest_frame.saturating_sub(14)
    }
}

impl fmt::Display for PeerSession {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "peer: session {} {}: MAC ",
            self.session,
            if self.ended { "ended" } else { "so far" }
        )?;
        match self.mac {
            Some(mac) => write!(f, "{mac}")?,
            None => f.write_str("unknown")?,
        }
        write!(
            f,
            ", received {}, largest frame {} bytes (MTU at least {}), sent {}, protocol errors {}, {}, looks like {}",
            self.received,
            self.largest_frame,
            self.mtu_at_least(),
            self.sent,
            self.protocol_errors,
            self.reassembly,
            self.guess
        )
    }
}

impl FromStr for PeerSession {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "peer session");
        scanner.tag("peer: session ")?;
        let session = scanner.value(" ")?;
        let ended = match scanner.until(": MAC ")? {
            "ended" => true,
            "so far" => false,
            _ => return Err(scanner.error()),
        };
        let mac = match scanner.until(", received ")? {
            "unknown" => None,
            mac => Some(mac.parse()?),
        };
        let received = Traffic::scan(&mut scanner, ", largest frame ")?;
        let largest_frame = scanner.value(" bytes (MTU at least ")?;
        let mtu: u32 = scanner.value("), sent ")?;
        let sent = Traffic::scan(&mut scanner, ", protocol errors ")?;
        let protocol_errors = scanner.value(", ")?;
        let reassembly = Reassembly::scan(&mut scanner, ", looks like ")?;
        let guess = scanner.rest.parse()?;
        let session = Self {
            session,
            ended,
            mac,
            received,
            largest_frame,
            sent,
            protocol_errors,
            reassembly,
            guess,
        };
        if mtu != session.mtu_at_least() {
            return Err(ParseError {
                expected: "peer session",
            });
        }
        Ok(session)
    }
}

/// Frames the link dropped locally, by reason (see `netdev::Drops`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinkDrops {
    /// No ring space for a reply.
    pub ring_full: u64,
    /// A frame to send while the link was down.
    pub link_down: u64,
    /// A frame to send that was empty or too long.
    pub invalid_length: u64,
    /// Received descriptors that failed validation.
    pub bad_descriptor: u64,
}

impl LinkDrops {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.ring_full + self.link_down + self.invalid_length + self.bad_descriptor
    }
}

/// `statistics: …`: the link's and the stack's counters since boot (at the
/// end of the apps, and from the `stats` app).
///
/// `statistics: link up U time(s), R reset(s), sent F frames (B bytes),
/// received F frames (B bytes), K kicks, dropped D (ring full a, link down
/// b, invalid length c, bad descriptor d), protocol errors E, transmit
/// timeouts T, reassembly R datagrams (I incomplete dropped, S fragments
/// without a slot), fragmented N datagrams into M fragments`
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct NetStatistics {
    /// Times the link came up.
    pub link_ups: u64,
    /// Times it went down.
    pub resets: u64,
    /// Frames published to the peer.
    pub sent: Traffic,
    /// Frames received from the peer.
    pub received: Traffic,
    /// Doorbells rung on the data vector.
    pub kicks: u64,
    /// Local drops.
    pub drops: LinkDrops,
    /// Protocol violations by the peer.
    pub protocol_errors: u64,
    /// Link resets because the peer stopped completing our frames.
    pub transmit_timeouts: u64,
    /// IPv4 reassembly.
    pub reassembly: Reassembly,
    /// Datagrams we sent in fragments.
    pub fragmented: u64,
    /// The fragments they took.
    pub fragments: u64,
}

impl fmt::Display for NetStatistics {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.drops;
        write!(
            f,
            "statistics: link up {} time(s), {} reset(s), sent {}, received {}, {} kicks, dropped {} (ring full {}, link down {}, invalid length {}, bad descriptor {}), protocol errors {}, transmit timeouts {}, {}, fragmented {} datagrams into {} fragments",
            self.link_ups,
            self.resets,
            self.sent,
            self.received,
            self.kicks,
            d.total(),
            d.ring_full,
            d.link_down,
            d.invalid_length,
            d.bad_descriptor,
            self.protocol_errors,
            self.transmit_timeouts,
            self.reassembly,
            self.fragmented,
            self.fragments
        )
    }
}

impl FromStr for NetStatistics {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "statistics");
        scanner.tag("statistics: link up ")?;
        let link_ups = scanner.value(" time(s), ")?;
        let resets = scanner.value(" reset(s), sent ")?;
        let sent = Traffic::scan(&mut scanner, ", received ")?;
        let received = Traffic::scan(&mut scanner, ", ")?;
        let kicks = scanner.value(" kicks, dropped ")?;
        let total: u64 = scanner.value(" (ring full ")?;
        let drops = LinkDrops {
            ring_full: scanner.value(", link down ")?,
            link_down: scanner.value(", invalid length ")?,
            invalid_length: scanner.value(", bad descriptor ")?,
            bad_descriptor: scanner.value("), protocol errors ")?,
        };
        let protocol_errors = scanner.value(", transmit timeouts ")?;
        let transmit_timeouts = scanner.value(", ")?;
        let reassembly = Reassembly::scan(&mut scanner, ", fragmented ")?;
        let fragmented = scanner.value(" datagrams into ")?;
        let fragments = scanner.value(" fragments")?;
        scanner.end()?;
        if total != drops.total() {
            return Err(ParseError {
                expected: "statistics",
            });
        }
        Ok(Self {
            link_ups,
            resets,
            sent,
            received,
            kicks,
            drops,
            protocol_errors,
            transmit_timeouts,
            reassembly,
            fragmented,
            fragments,
        })
    }
}

/// `fragment-flood: N first fragments in T ms; small pings A of B answered,
/// fragmented pings C of D answered`: what the `fragment-flood` app sent and
/// what still worked while it did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FragmentFloodResult {
    /// First fragments sent, each of a datagram that never completes.
    pub fragments: u64,
    /// How long the flood lasted.
    pub time: Millis,
    /// Unfragmented pings answered during the flood.
    pub small_answered: u32,
    /// Unfragmented pings sent during the flood.
    pub small_sent: u32,
    /// Fragmented pings answered during the flood.
    pub large_answered: u32,
    /// Fragmented pings sent during the flood.
    pub large_sent: u32,
}

impl fmt::Display for FragmentFloodResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "fragment-flood: {} first fragments in {} ms; small pings {} of {} answered, fragmented pings {} of {} answered",
            self.fragments,
            self.time,
            self.small_answered,
            self.small_sent,
            self.large_answered,
            self.large_sent
        )
    }
}

impl FromStr for FragmentFloodResult {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "fragment-flood result");
        scanner.tag("fragment-flood: ")?;
        let fragments = scanner.value(" first fragments in ")?;
        let time = scanner.value(" ms; small pings ")?;
        let small_answered = scanner.value(" of ")?;
        let small_sent = scanner.value(" answered, fragmented pings ")?;
        let large_answered = scanner.value(" of ")?;
        let large_sent = scanner.value(" answered")?;
        scanner.end()?;
        Ok(Self {
            fragments,
            time,
            small_answered,
            small_sent,
            large_answered,
            large_sent,
        })
    }
}

// ---- apps -------------------------------------------------------------------

/// `ping: A -> B, N requests of S bytes`: the ping app starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingStart {
    /// Our address.
    pub local: IpAddr,
    /// The address pinged.
    pub peer: IpAddr,
    /// Requests to send.
    pub count: u32,
    /// Payload bytes per request.
    pub size: u32,
}

impl fmt::Display for PingStart {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping: {} -> {}, {} requests of {} bytes",
            self.local, self.peer, self.count, self.size
        )
    }
}

impl FromStr for PingStart {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ping start");
        scanner.tag("ping: ")?;
        let local = scanner.value(" -> ")?;
        let peer = scanner.value(", ")?;
        let count = scanner.value(" requests of ")?;
        let size = scanner.value(" bytes")?;
        scanner.end()?;
        Ok(Self {
            local,
            peer,
            count,
            size,
        })
    }
}

/// `ping: N bytes from A: icmp_seq=S time=T ms`: one reply.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingReply {
    /// Payload bytes.
    pub bytes: u32,
    /// Who replied.
    pub from: IpAddr,
    /// The sequence number.
    pub sequence: u16,
    /// The round-trip time.
    pub rtt: Millis,
}

impl fmt::Display for PingReply {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping: {} bytes from {}: icmp_seq={} time={} ms",
            self.bytes, self.from, self.sequence, self.rtt
        )
    }
}

impl FromStr for PingReply {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ping reply");
        scanner.tag("ping: ")?;
        let bytes = scanner.value(" bytes from ")?;
        // An IPv6 address contains ':', so split at the last ": icmp_seq=".
        let (from, rest) = scanner
            .rest
            .rsplit_once(": icmp_seq=")
            .ok_or(scanner.error())?;
        let from = from.parse().map_err(|_| scanner.error())?;
        scanner.rest = rest;
        let sequence = scanner.value(" time=")?;
        let rtt = scanner.value(" ms")?;
        scanner.end()?;
        Ok(Self {
            bytes,
            from,
            sequence,
            rtt,
        })
    }
}

/// `ping: N transmitted, M received, L% loss`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingSummary {
    /// Requests sent.
    pub transmitted: u32,
    /// Replies received.
    pub received: u32,
    /// Loss in percent (rounded down).
    pub loss_percent: u32,
}

impl PingSummary {
    /// The summary of `received` replies to `transmitted` requests.
    pub fn new(transmitted: u32, received: u32) -> Self {
        let lost = u64::from(transmitted.saturating_sub(received));
        Self {
            transmitted,
            received,
            loss_percent: (lost * 100 / u64::from(transmitted.max(1))) as u32,
        }
    }
}

impl fmt::Display for PingSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping: {} transmitted, {} received, {}% loss",
            self.transmitted, self.received, self.loss_percent
        )
    }
}

impl FromStr for PingSummary {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ping summary");
        scanner.tag("ping: ")?;
        let transmitted = scanner.value(" transmitted, ")?;
        let received = scanner.value(" received, ")?;
        let loss_percent = scanner.value("% loss")?;
        scanner.end()?;
        Ok(Self {
            transmitted,
            received,
            loss_percent,
        })
    }
}

/// `ping: rtt min/avg/max = a/b/c ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingRtt {
    /// The shortest round trip.
    pub min: Millis,
    /// The mean round trip.
    pub avg: Millis,
    /// The longest round trip.
    pub max: Millis,
}

impl fmt::Display for PingRtt {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ping: rtt min/avg/max = {}/{}/{} ms",
            self.min, self.avg, self.max
        )
    }
}

impl FromStr for PingRtt {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ping rtt");
        scanner.tag("ping: rtt min/avg/max = ")?;
        let min = scanner.value("/")?;
        let avg = scanner.value("/")?;
        let max = scanner.value(" ms")?;
        scanner.end()?;
        Ok(Self { min, avg, max })
    }
}

/// `tcp-echo: P% (N bytes)`: progress of the TCP echo client, every quarter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEchoProgress {
    /// Share of the bytes verified so far, in percent.
    pub percent: u32,
    /// Bytes verified so far.
    pub bytes: u64,
}

impl fmt::Display for TcpEchoProgress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "tcp-echo: {}% ({} bytes)", self.percent, self.bytes)
    }
}

impl FromStr for TcpEchoProgress {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "tcp-echo progress");
        scanner.tag("tcp-echo: ")?;
        let percent = scanner.value("% (")?;
        let bytes = scanner.value(" bytes)")?;
        scanner.end()?;
        Ok(Self { percent, bytes })
    }
}

/// `tcp-echo: round R: N bytes over C connection(s) echoed and verified in T ms (X Mbit/s)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEchoRound {
    /// The round, from 1.
    pub round: u32,
    /// Bytes echoed and verified in the round.
    pub bytes: u64,
    /// Concurrent connections.
    pub connections: u32,
    /// How long the round took.
    pub time: Millis,
    /// `bytes` over `time`.
    pub throughput: Mbits,
}

impl fmt::Display for TcpEchoRound {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tcp-echo: round {}: {} bytes over {} connection(s) echoed and verified in {} ms ({} Mbit/s)",
            self.round, self.bytes, self.connections, self.time, self.throughput
        )
    }
}

impl FromStr for TcpEchoRound {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "tcp-echo round");
        scanner.tag("tcp-echo: round ")?;
        let round = scanner.value(": ")?;
        let bytes = scanner.value(" bytes over ")?;
        let connections = scanner.value(" connection(s) echoed and verified in ")?;
        let time = scanner.value(" ms (")?;
        let throughput = scanner.value(" Mbit/s)")?;
        scanner.end()?;
        Ok(Self {
            round,
            bytes,
            connections,
            time,
            throughput,
        })
    }
}

/// `tcp-echo: N bytes verified, throughput X Mbit/s`: the TCP echo client's result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TcpEchoResult {
    /// Bytes echoed and verified over all rounds.
    pub bytes: u64,
    /// Throughput over all rounds.
    pub throughput: Mbits,
}

impl fmt::Display for TcpEchoResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "tcp-echo: {} bytes verified, throughput {} Mbit/s",
            self.bytes, self.throughput
        )
    }
}

impl FromStr for TcpEchoResult {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "tcp-echo result");
        scanner.tag("tcp-echo: ")?;
        let bytes = scanner.value(" bytes verified, throughput ")?;
        let throughput = scanner.value(" Mbit/s")?;
        scanner.end()?;
        Ok(Self { bytes, throughput })
    }
}

/// `udp-echo: E of N datagrams of S bytes echoed intact`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UdpEchoResult {
    /// Datagrams that came back intact.
    pub echoed: u32,
    /// Datagrams sent.
    pub count: u32,
    /// Payload bytes per datagram.
    pub size: u32,
}

impl fmt::Display for UdpEchoResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "udp-echo: {} of {} datagrams of {} bytes echoed intact",
            self.echoed, self.count, self.size
        )
    }
}

impl FromStr for UdpEchoResult {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "udp-echo result");
        scanner.tag("udp-echo: ")?;
        let echoed = scanner.value(" of ")?;
        let count = scanner.value(" datagrams of ")?;
        let size = scanner.value(" bytes echoed intact")?;
        scanner.end()?;
        Ok(Self {
            echoed,
            count,
            size,
        })
    }
}

/// `server: TCP and UDP echo on A:P`: the echo server listens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServerReady {
    /// Where it listens.
    pub address: SocketAddr,
}

impl fmt::Display for ServerReady {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "server: TCP and UDP echo on {}", self.address)
    }
}

impl FromStr for ServerReady {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "server ready");
        scanner.tag("server: TCP and UDP echo on ")?;
        Ok(Self {
            address: scanner.last()?,
        })
    }
}

/// `<app>: PASS` or `<app>: FAIL`: one app's verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppVerdict {
    /// The app.
    pub app: App,
    /// Whether it passed.
    pub pass: bool,
}

impl fmt::Display for AppVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.app, verdict_word(self.pass))
    }
}

impl FromStr for AppVerdict {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "app verdict";
        let (app, word) = line
            .split_once(": ")
            .ok_or(ParseError { expected: EXPECTED })?;
        Ok(Self {
            app: app.parse().map_err(|_| ParseError { expected: EXPECTED })?,
            pass: parse_verdict_word(word, EXPECTED)?,
        })
    }
}

/// `apps: PASS` or `apps: FAIL`: the verdict over all apps, just before the
/// kernel exits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AppsVerdict {
    /// Whether every app passed.
    pub pass: bool,
}

impl fmt::Display for AppsVerdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "apps: {}", verdict_word(self.pass))
    }
}

impl FromStr for AppsVerdict {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "apps verdict";
        let word = line
            .strip_prefix("apps: ")
            .ok_or(ParseError { expected: EXPECTED })?;
        Ok(Self {
            pass: parse_verdict_word(word, EXPECTED)?,
        })
    }
}

// ---- the Jailhouse cell --------------------------------------------------------

/// `cell: SHUT_DOWN (exit 0x10)`: a Jailhouse cell's last line, printed just
/// before it writes `state` into the communication region and halts: the
/// [`ExitCode`](crate::exit::ExitCode) value says why, which the state alone
/// cannot (`docs/jailhouse.md` §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CellStopped {
    /// The state written (`SHUT_DOWN`, `FAILED` or `FAILED_COMM_REV`).
    pub state: crate::jailhouse::CellState,
    /// Why the kernel stopped.
    pub code: crate::exit::ExitCode,
}

impl fmt::Display for CellStopped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "cell: {} (exit {:#x})", self.state, self.code.value())
    }
}

impl FromStr for CellStopped {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "cell stopped line";
        let error = ParseError { expected: EXPECTED };
        let rest = line.strip_prefix("cell: ").ok_or(error)?;
        let (state, code) = rest.split_once(" (exit 0x").ok_or(error)?;
        let code = code.strip_suffix(')').ok_or(error)?;
        let code = u32::from_str_radix(code, 16).map_err(|_| error)?;
        let state = [
            crate::jailhouse::CellState::ShutDown,
            crate::jailhouse::CellState::Failed,
            crate::jailhouse::CellState::FailedCommRev,
        ]
        .into_iter()
        .find(|candidate| candidate.to_string() == state)
        .ok_or(error)?;
        let code = crate::exit::ExitCode::ALL
            .into_iter()
            .find(|candidate| candidate.value() == code)
            .ok_or(error)?;
        Ok(Self { state, code })
    }
}

// ---- the ivshmem app ----------------------------------------------------------

/// A physical range of shared memory: `0xADDR size 0xSIZE`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRange {
    /// Physical address of the first byte.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}

impl fmt::Display for MemoryRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x} size {:#x}", self.address, self.size)
    }
}

impl MemoryRange {
    fn scan(scanner: &mut Scanner<'_>, tag: &str) -> Result<Self, ParseError> {
        let address = scanner.hex(" size ")?;
        let size = scanner.hex(tag)?;
        Ok(Self { address, size })
    }
}

/// `ivshmem: state table 0x… size 0x…, R/W section 0x… size 0x…, output
/// sections 0x… size N x 0x…`: where the `ivshmem` app found the sections
/// (physical addresses; the output sections follow each other).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemSections {
    /// The state table.
    pub state_table: MemoryRange,
    /// The R/W section (its size may be 0).
    pub rw_section: MemoryRange,
    /// Where the output section of peer 0 starts.
    pub output_sections: u64,
    /// The size of ONE output section.
    pub output_section_size: u64,
    /// Output sections, one per peer.
    pub peers: u16,
}

impl fmt::Display for IvshmemSections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: state table {}, R/W section {}, output sections {:#x} size {} x {:#x}",
            self.state_table,
            self.rw_section,
            self.output_sections,
            self.peers,
            self.output_section_size
        )
    }
}

impl FromStr for IvshmemSections {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem sections");
        scanner.tag("ivshmem: state table ")?;
        let state_table = MemoryRange::scan(&mut scanner, ", R/W section ")?;
        let rw_section = MemoryRange::scan(&mut scanner, ", output sections ")?;
        let output_sections = scanner.hex(" size ")?;
        let peers = scanner.value(" x ")?;
        let output_section_size = scanner.last_hex()?;
        Ok(Self {
            state_table,
            rw_section,
            output_sections,
            output_section_size,
            peers,
        })
    }
}

/// The two steps of the `ivshmem` app's handshake through the state table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IvshmemPhase {
    /// Token written, interrupts enabled: the peers may ring us (`ready`).
    Ready,
    /// We have seen the peer we talk to and its token (`done`).
    Done,
}

impl IvshmemPhase {
    fn name(self) -> &'static str {
        match self {
            Self::Ready => "ready",
            Self::Done => "done",
        }
    }

    fn parse(word: &str, expected: &'static str) -> Result<Self, ParseError> {
        match word {
            "ready" => Ok(Self::Ready),
            "done" => Ok(Self::Done),
            _ => Err(ParseError { expected }),
        }
    }
}

impl fmt::Display for IvshmemPhase {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// `ivshmem: our state 0x… (ready)`: the `ivshmem` app wrote its state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemOwnState {
    /// The value written.
    pub state: u32,
    /// What it announces.
    pub phase: IvshmemPhase,
}

impl fmt::Display for IvshmemOwnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: our state {:#010x} ({})",
            self.state, self.phase
        )
    }
}

impl FromStr for IvshmemOwnState {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "ivshmem own state";
        let mut scanner = Scanner::new(line, EXPECTED);
        scanner.tag("ivshmem: our state ")?;
        let state = u32::try_from(scanner.hex(" (")?).map_err(|_| scanner.error())?;
        let phase = IvshmemPhase::parse(scanner.until(")")?, EXPECTED)?;
        scanner.end()?;
        Ok(Self { state, phase })
    }
}

/// `ivshmem: our token 0x… at R/W offset 0x…`: the `ivshmem` app wrote its
/// token into the R/W section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemOwnToken {
    /// The token.
    pub token: u64,
    /// Its offset in the R/W section.
    pub offset: u64,
}

impl fmt::Display for IvshmemOwnToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: our token {:#018x} at R/W offset {:#x}",
            self.token, self.offset
        )
    }
}

impl FromStr for IvshmemOwnToken {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem own token");
        scanner.tag("ivshmem: our token ")?;
        let token = scanner.hex(" at R/W offset ")?;
        let offset = scanner.last_hex()?;
        Ok(Self { token, offset })
    }
}

/// `ivshmem: no room for tokens: R/W section of 0x… bytes, 0x… needed`: the
/// `ivshmem` app exchanges states and doorbells only.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemNoTokenRoom {
    /// The size of the R/W section.
    pub rw_size: u64,
    /// The bytes one token per peer needs.
    pub needed: u64,
}

impl fmt::Display for IvshmemNoTokenRoom {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: no room for tokens: R/W section of {:#x} bytes, {:#x} needed",
            self.rw_size, self.needed
        )
    }
}

impl FromStr for IvshmemNoTokenRoom {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem token room");
        scanner.tag("ivshmem: no room for tokens: R/W section of ")?;
        let rw_size = scanner.hex(" bytes, ")?;
        let needed = scanner.hex(" needed")?;
        scanner.end()?;
        Ok(Self { rw_size, needed })
    }
}

/// `ivshmem: peer N ready (state 0x…) after T ms`: the `ivshmem` app saw a
/// peer's state reach a phase.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemPeerState {
    /// The peer.
    pub peer: u16,
    /// The phase its state shows.
    pub phase: IvshmemPhase,
    /// Its state.
    pub state: u32,
    /// How long we waited for it.
    pub after: Millis,
}

impl fmt::Display for IvshmemPeerState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: peer {} {} (state {:#010x}) after {} ms",
            self.peer, self.phase, self.state, self.after
        )
    }
}

impl FromStr for IvshmemPeerState {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "ivshmem peer state";
        let mut scanner = Scanner::new(line, EXPECTED);
        scanner.tag("ivshmem: peer ")?;
        let peer = scanner.value(" ")?;
        let phase = IvshmemPhase::parse(scanner.until(" (state ")?, EXPECTED)?;
        let state = u32::try_from(scanner.hex(") after ")?).map_err(|_| scanner.error())?;
        let after = scanner.value(" ms")?;
        scanner.end()?;
        Ok(Self {
            peer,
            phase,
            state,
            after,
        })
    }
}

/// `ivshmem: peer N not ready within S s`: the `ivshmem` app gave up
/// waiting for a peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemPeerTimeout {
    /// The peer.
    pub peer: u16,
    /// The phase it did not reach.
    pub phase: IvshmemPhase,
    /// How long we waited.
    pub seconds: u32,
}

impl fmt::Display for IvshmemPeerTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: peer {} not {} within {} s",
            self.peer, self.phase, self.seconds
        )
    }
}

impl FromStr for IvshmemPeerTimeout {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        const EXPECTED: &str = "ivshmem peer timeout";
        let mut scanner = Scanner::new(line, EXPECTED);
        scanner.tag("ivshmem: peer ")?;
        let peer = scanner.value(" not ")?;
        let phase = IvshmemPhase::parse(scanner.until(" within ")?, EXPECTED)?;
        let seconds = scanner.value(" s")?;
        scanner.end()?;
        Ok(Self {
            peer,
            phase,
            seconds,
        })
    }
}

/// `ivshmem: rang peer N vector V`: the `ivshmem` app rang a peer's doorbell.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemRang {
    /// The peer.
    pub peer: u16,
    /// Its vector.
    pub vector: u16,
}

impl fmt::Display for IvshmemRang {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ivshmem: rang peer {} vector {}", self.peer, self.vector)
    }
}

impl FromStr for IvshmemRang {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem ring");
        scanner.tag("ivshmem: rang peer ")?;
        let peer = scanner.value(" vector ")?;
        Ok(Self {
            peer,
            vector: scanner.last()?,
        })
    }
}

/// `ivshmem: vector V fired after T ms`: our own doorbell, counted from when
/// the `ivshmem` app rang its peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemVectorFired {
    /// Our vector.
    pub vector: u16,
    /// How long after ringing the peer.
    pub after: Millis,
}

impl fmt::Display for IvshmemVectorFired {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: vector {} fired after {} ms",
            self.vector, self.after
        )
    }
}

impl FromStr for IvshmemVectorFired {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem vector fired");
        scanner.tag("ivshmem: vector ")?;
        let vector = scanner.value(" fired after ")?;
        let after = scanner.value(" ms")?;
        scanner.end()?;
        Ok(Self { vector, after })
    }
}

/// `ivshmem: vector V did not fire within S s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemVectorTimeout {
    /// Our vector.
    pub vector: u16,
    /// How long we waited.
    pub seconds: u32,
}

impl fmt::Display for IvshmemVectorTimeout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: vector {} did not fire within {} s",
            self.vector, self.seconds
        )
    }
}

impl FromStr for IvshmemVectorTimeout {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem vector timeout");
        scanner.tag("ivshmem: vector ")?;
        let vector = scanner.value(" did not fire within ")?;
        let seconds = scanner.value(" s")?;
        scanner.end()?;
        Ok(Self { vector, seconds })
    }
}

/// Why the `ivshmem` app leaves out (part of) the doorbell step.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IvshmemDoorbellSkipped {
    /// `ivshmem: no vectors, no doorbells`: the device has no interrupts
    /// (`ivshmem-plain`).
    NoVectors,
    /// `ivshmem: polling, vector V not awaited`: the peer was rung, but our
    /// interrupts are off (`mode=poll`), so our own vector cannot fire.
    Polling {
        /// Our vector.
        vector: u16,
    },
}

impl fmt::Display for IvshmemDoorbellSkipped {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoVectors => f.write_str("ivshmem: no vectors, no doorbells"),
            Self::Polling { vector } => {
                write!(f, "ivshmem: polling, vector {vector} not awaited")
            }
        }
    }
}

impl FromStr for IvshmemDoorbellSkipped {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        if line == "ivshmem: no vectors, no doorbells" {
            return Ok(Self::NoVectors);
        }
        let mut scanner = Scanner::new(line, "ivshmem doorbell skipped");
        scanner.tag("ivshmem: polling, vector ")?;
        let vector = scanner.value(" not awaited")?;
        scanner.end()?;
        Ok(Self::Polling { vector })
    }
}

/// `ivshmem: peer N's token 0x… at R/W offset 0x…`: what the `ivshmem` app
/// read from the peer's slot of the R/W section.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemPeerToken {
    /// The peer.
    pub peer: u16,
    /// The token read.
    pub token: u64,
    /// Its offset in the R/W section.
    pub offset: u64,
}

impl fmt::Display for IvshmemPeerToken {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: peer {}'s token {:#018x} at R/W offset {:#x}",
            self.peer, self.token, self.offset
        )
    }
}

impl FromStr for IvshmemPeerToken {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem peer token");
        scanner.tag("ivshmem: peer ")?;
        let peer = scanner.value("'s token ")?;
        let token = scanner.hex(" at R/W offset ")?;
        let offset = scanner.last_hex()?;
        Ok(Self {
            peer,
            token,
            offset,
        })
    }
}

/// `ivshmem: peer N's token should be 0x…`: the token read does not match
/// the state the peer announced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IvshmemTokenMismatch {
    /// The peer.
    pub peer: u16,
    /// The token its state stands for.
    pub expected: u64,
}

impl fmt::Display for IvshmemTokenMismatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "ivshmem: peer {}'s token should be {:#018x}",
            self.peer, self.expected
        )
    }
}

impl FromStr for IvshmemTokenMismatch {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "ivshmem token mismatch");
        scanner.tag("ivshmem: peer ")?;
        let peer = scanner.value("'s token should be ")?;
        Ok(Self {
            peer,
            expected: scanner.last_hex()?,
        })
    }
}

// ---- fatal paths --------------------------------------------------------------

/// Which fatal path a [`Fatal`] line reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FatalKind {
    /// `KERNEL PANIC: …`
    Panic,
    /// `OUT OF MEMORY: …`
    OutOfMemory,
    /// `cmdline: …` (a bad kernel command line).
    CommandLine,
    /// `FAILED: …` (the kernel cannot go on, e.g. no link).
    Failed,
    /// `boot: …` (the platform cannot be brought up).
    Boot,
}

impl FatalKind {
    const PREFIXES: [(&'static str, Self); 5] = [
        ("KERNEL PANIC: ", Self::Panic),
        ("OUT OF MEMORY: ", Self::OutOfMemory),
        ("cmdline: ", Self::CommandLine),
        ("FAILED: ", Self::Failed),
        ("boot: ", Self::Boot),
    ];

    /// The text the line starts with.
    pub fn prefix(self) -> &'static str {
        Self::PREFIXES
            .iter()
            .find(|(_, kind)| *kind == self)
            .map_or("", |(prefix, _)| prefix)
    }
}

/// A fatal report: a prefix naming the path, then a message. The kernel
/// writes it with a `Display` message (no allocation); the host parses it
/// into `Fatal<String>`. (`boot: ok` is not fatal and does not parse as one.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fatal<M> {
    /// Which path.
    pub kind: FatalKind,
    /// What went wrong.
    pub message: M,
}

impl<M: fmt::Display> fmt::Display for Fatal<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}", self.kind.prefix(), self.message)
    }
}

impl FromStr for Fatal<String> {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        if line == "boot: ok" {
            return Err(ParseError {
                expected: "fatal report",
            });
        }
        FatalKind::PREFIXES
            .iter()
            .find_map(|(prefix, kind)| {
                line.strip_prefix(prefix).map(|message| Self {
                    kind: *kind,
                    message: message.to_string(),
                })
            })
            .ok_or(ParseError {
                expected: "fatal report",
            })
    }
}

/// `CPU EXCEPTION <name> (vector N)`: the first line of an exception report.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionHeadline<N> {
    /// The exception's mnemonic and name, e.g. `#PF page fault`.
    pub name: N,
    /// The vector number.
    pub vector: u8,
}

impl<N: fmt::Display> fmt::Display for ExceptionHeadline<N> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "CPU EXCEPTION {} (vector {})", self.name, self.vector)
    }
}

impl FromStr for ExceptionHeadline<String> {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "exception headline");
        scanner.tag("CPU EXCEPTION ")?;
        let (name, vector) = scanner
            .rest
            .strip_suffix(')')
            .and_then(|rest| rest.rsplit_once(" (vector "))
            .ok_or(scanner.error())?;
        Ok(Self {
            name: name.to_string(),
            vector: vector.parse().map_err(|_| scanner.error())?,
        })
    }
}

/// `  RIP 0x…  CS 0x…  RFLAGS 0x…  RSP 0x…  SS 0x…`: the interrupted context.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionFrame {
    /// The faulting instruction.
    pub rip: u64,
    /// Code segment.
    pub cs: u64,
    /// Flags.
    pub rflags: u64,
    /// Stack pointer.
    pub rsp: u64,
    /// Stack segment.
    pub ss: u64,
}

impl fmt::Display for ExceptionFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "  RIP {:#018x}  CS {:#06x}  RFLAGS {:#010x}  RSP {:#018x}  SS {:#06x}",
            self.rip, self.cs, self.rflags, self.rsp, self.ss
        )
    }
}

impl FromStr for ExceptionFrame {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "exception frame");
        scanner.tag("  RIP ")?;
        let rip = scanner.hex("  CS ")?;
        let cs = scanner.hex("  RFLAGS ")?;
        let rflags = scanner.hex("  RSP ")?;
        let rsp = scanner.hex("  SS ")?;
        let ss = scanner.last_hex()?;
        Ok(Self {
            rip,
            cs,
            rflags,
            rsp,
            ss,
        })
    }
}

/// `  error code 0x…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExceptionErrorCode(pub u64);

impl fmt::Display for ExceptionErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  error code {:#x}", self.0)
    }
}

impl FromStr for ExceptionErrorCode {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "exception error code");
        scanner.tag("  error code ")?;
        Ok(Self(scanner.last_hex()?))
    }
}

/// `  CR2 0x… (<cause>)`: the faulting address of a page fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageFaultAddress<C> {
    /// CR2.
    pub cr2: u64,
    /// The decoded error code, e.g. `read of a non-present page`.
    pub cause: C,
}

impl<C: fmt::Display> fmt::Display for PageFaultAddress<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "  CR2 {:#018x} ({})", self.cr2, self.cause)
    }
}

impl FromStr for PageFaultAddress<String> {
    type Err = ParseError;

    fn from_str(line: &str) -> Result<Self, ParseError> {
        let mut scanner = Scanner::new(line, "page-fault address");
        scanner.tag("  CR2 ")?;
        let cr2 = scanner.hex(" (")?;
        let cause = scanner.rest.strip_suffix(')').ok_or(scanner.error())?;
        Ok(Self {
            cr2,
            cause: cause.to_string(),
        })
    }
}

/// An exception report read back from the serial lines.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionReport {
    /// The headline.
    pub headline: ExceptionHeadline<String>,
    /// The interrupted context.
    pub frame: ExceptionFrame,
    /// The error code.
    pub error_code: ExceptionErrorCode,
    /// CR2 and its cause, for a page fault.
    pub page_fault: Option<PageFaultAddress<String>>,
}

impl ExceptionReport {
    /// Finds the report in `lines`: the headline, then the frame, the error
    /// code and (for page faults) CR2 on the lines after it.
    ///
    /// # Errors
    ///
    /// No headline, or a missing or malformed line after it.
    pub fn parse<S: AsRef<str>>(lines: &[S]) -> Result<Self, ParseError> {
        let error = ParseError {
            expected: "exception report",
        };
        let mut lines = lines.iter().map(AsRef::as_ref);
        let headline = lines
            .by_ref()
            .find_map(|line| line.parse().ok())
            .ok_or(error)?;
        let frame = lines.next().ok_or(error)?.parse()?;
        let error_code = lines.next().ok_or(error)?.parse()?;
        let page_fault = lines.next().and_then(|line| line.parse().ok());
        Ok(Self {
            headline,
            frame,
            error_code,
            page_fault,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::format;
    use alloc::vec;
    use core::net::{Ipv4Addr, Ipv6Addr};

    /// `value` prints as `text`, and `text` parses back into `value`.
    pub(super) fn round_trip<T>(value: T, text: &str)
    where
        T: fmt::Display + FromStr<Err = ParseError> + PartialEq + fmt::Debug,
    {
        assert_eq!(value.to_string(), text);
        assert_eq!(text.parse::<T>(), Ok(value), "{text}");
        // Anything around the line makes it a different line.
        assert!(format!("{text}x").parse::<T>().is_err(), "{text}x");
        assert!(format!("x{text}").parse::<T>().is_err(), "x{text}");
    }

    const BDF: Bdf = Bdf {
        bus: 0,
        device: 3,
        function: 0,
    };

    const BAR2: Bar = Bar {
        index: 2,
        kind: BarKind::Memory64,
        prefetchable: true,
        address: 0xfe00_0000,
        size: 0x10_0000,
    };

    #[test]
    fn values() {
        assert_eq!(Millis(251).to_string(), "0.251");
        assert_eq!(Millis(12_345_678).to_string(), "12345.678");
        assert_eq!("0.251".parse(), Ok(Millis(251)));
        for bad in ["0.25", "1", ".251", "1.2345", "a.123", "1.-12"] {
            assert!(bad.parse::<Millis>().is_err(), "{bad}");
        }
        assert_eq!(Mbits::of_transfer(1 << 20, 21_486).to_string(), "390.4");
        assert_eq!("390.4".parse(), Ok(Mbits(3904)));
        assert!("390".parse::<Mbits>().is_err());
        assert!("390.45".parse::<Mbits>().is_err());
        assert_eq!(Mbits::of_transfer(10, 0), Mbits(800));
        assert_eq!(
            "1f:1f.7".parse(),
            Ok(Bdf {
                bus: 0x1f,
                device: 0x1f,
                function: 7
            })
        );
        for bad in ["0:03.0", "00:3.0", "00:20.0", "00:03.8", "00:03", "zz:00.0"] {
            assert!(bad.parse::<Bdf>().is_err(), "{bad}");
        }
    }

    #[test]
    fn pci_lines() {
        round_trip(
            InventoryHeader { functions: 7 },
            "PCI inventory (7 functions):",
        );
        round_trip(
            PciFunction {
                bdf: BDF,
                vendor: 0x1af4,
                device: 0x1110,
                class: [0x05, 0, 0],
                revision: 1,
            },
            "pci 00:03.0 1af4:1110 class 05.00.00 rev 01",
        );
        round_trip(
            PciBar {
                bdf: BDF,
                bar: BAR2,
            },
            "pci 00:03.0   BAR2 mem64 prefetchable 0xfe000000 size 0x100000",
        );
        round_trip(
            PciBar {
                bdf: BDF,
                bar: Bar {
                    index: 0,
                    kind: BarKind::Memory32,
                    prefetchable: false,
                    address: 0xfebf_1000,
                    size: 0x100,
                },
            },
            "pci 00:03.0   BAR0 mem32 0xfebf1000 size 0x100",
        );
        assert!("BAR6 io 0x0 size 0x8".parse::<Bar>().is_err());
        assert!("BAR1 mem16 0x0 size 0x8".parse::<Bar>().is_err());
    }

    #[test]
    fn inventory_blocks() {
        let lines = [
            "[   0.1] INFO  something",
            "PCI inventory (2 functions):",
            "pci 00:00.0 8086:1237 class 06.00.00 rev 02",
            "pci 00:03.0 1af4:1110 class 05.00.00 rev 01",
            "pci 00:03.0   BAR0 mem32 0xfebf1000 size 0x100",
            "pci 00:03.0   BAR2 mem64 prefetchable 0xfe000000 size 0x100000",
            "boot: ok",
        ];
        let entries = parse_inventory(&lines).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[1].function.vendor, 0x1af4);
        assert_eq!(entries[1].bar(2), Some(&BAR2));
        assert!(entries[0].bars.is_empty());
        let mut short = lines;
        short[1] = "PCI inventory (3 functions):";
        assert!(parse_inventory(&short).is_err());
        let mut stray = lines;
        stray[4] = "pci 00:04.0   BAR0 mem32 0xfebf1000 size 0x100";
        assert!(parse_inventory(&stray).is_err());
        let mut broken = lines;
        broken[3] = "pci 00:03.0 1af4:1110 class 05.00 rev 01";
        assert!(parse_inventory(&broken).is_err());
        assert!(parse_inventory(&["boot: ok"]).is_err());
    }

    #[test]
    fn boot_lines() {
        round_trip(BootOk, "boot: ok");
        round_trip(
            SharedMemoryProbe {
                bar: BAR2,
                first: 0,
                last: 0x1234,
            },
            "shm: BAR2 mem64 prefetchable 0xfe000000 size 0x100000 first 0x0000000000000000 last 0x0000000000001234",
        );
        round_trip(
            StackGuard {
                guard_page: 0x10_9000,
            },
            "self-test: overflowing the stack; guard page at 0x109000",
        );
    }

    #[test]
    fn device_and_link_lines() {
        for (kind, name) in [
            (DeviceKind::V2, "ivshmem-v2"),
            (
                DeviceKind::Doorbell,
                "ivshmem-v2 emulated on ivshmem-doorbell",
            ),
            (DeviceKind::Plain, "ivshmem-v2 emulated on ivshmem-plain"),
        ] {
            round_trip(
                DeviceFound {
                    kind,
                    bdf: BDF,
                    id: 1,
                    max_peers: 2,
                    protocol: 1,
                    vectors: 2,
                },
                &format!("ivshmem: {name} at 00:03.0, id 1 of 2, protocol 0x0001, 2 vector(s)"),
            );
        }
        assert!(
            "ivshmem: device speaks protocol 0x4000, expected 0x0001"
                .parse::<DeviceFound>()
                .is_err()
        );
        round_trip(
            LinkUp {
                link_ups: 2,
                resets: 1,
            },
            "link: up (link-ups 2, resets 1)",
        );
        round_trip(LinkDown { resets: 3 }, "link: down (resets 3)");
    }

    #[test]
    fn app_lines() {
        let a = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2));
        let b = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        round_trip(
            PingStart {
                local: a,
                peer: b,
                count: 4,
                size: 56,
            },
            "ping: 10.0.0.2 -> 10.0.0.1, 4 requests of 56 bytes",
        );
        round_trip(
            PingReply {
                bytes: 56,
                from: b,
                sequence: 3,
                rtt: Millis(251),
            },
            "ping: 56 bytes from 10.0.0.1: icmp_seq=3 time=0.251 ms",
        );
        round_trip(
            PingReply {
                bytes: 8000,
                from: IpAddr::V6(Ipv6Addr::new(0xfe80, 0, 0, 0, 0x1, 0x2ff, 0xfe03, 0x405)),
                sequence: 0,
                rtt: Millis(1_000),
            },
            "ping: 8000 bytes from fe80::1:2ff:fe03:405: icmp_seq=0 time=1.000 ms",
        );
        round_trip(
            PingSummary::new(4, 3),
            "ping: 4 transmitted, 3 received, 25% loss",
        );
        assert_eq!(PingSummary::new(3, 3).loss_percent, 0);
        assert_eq!(PingSummary::new(3, 0).loss_percent, 100);
        round_trip(
            PingRtt {
                min: Millis(251),
                avg: Millis(2_843),
                max: Millis(10_512),
            },
            "ping: rtt min/avg/max = 0.251/2.843/10.512 ms",
        );
        round_trip(
            TcpEchoProgress {
                percent: 25,
                bytes: 262_144,
            },
            "tcp-echo: 25% (262144 bytes)",
        );
        round_trip(
            TcpEchoRound {
                round: 2,
                bytes: 2_097_152,
                connections: 3,
                time: Millis(42_100),
                throughput: Mbits(3985),
            },
            "tcp-echo: round 2: 2097152 bytes over 3 connection(s) echoed and verified in 42.100 ms (398.5 Mbit/s)",
        );
        round_trip(
            TcpEchoResult {
                bytes: 1_048_576,
                throughput: Mbits(3904),
            },
            "tcp-echo: 1048576 bytes verified, throughput 390.4 Mbit/s",
        );
        round_trip(
            UdpEchoResult {
                echoed: 5,
                count: 5,
                size: 56,
            },
            "udp-echo: 5 of 5 datagrams of 56 bytes echoed intact",
        );
        round_trip(
            ServerReady {
                address: SocketAddr::new(b, 7),
            },
            "server: TCP and UDP echo on 10.0.0.1:7",
        );
        round_trip(
            AppVerdict {
                app: App::TcpEcho,
                pass: true,
            },
            "tcp-echo: PASS",
        );
        round_trip(
            AppVerdict {
                app: App::Ping,
                pass: false,
            },
            "ping: FAIL",
        );
        round_trip(AppsVerdict { pass: true }, "apps: PASS");
        assert!("apps: MAYBE".parse::<AppsVerdict>().is_err());
        assert!("dance: PASS".parse::<AppVerdict>().is_err());
    }

    #[test]
    fn cell_stopped_lines() {
        use crate::exit::ExitCode;
        use crate::jailhouse::CellState;
        round_trip(
            CellStopped {
                state: CellState::ShutDown,
                code: ExitCode::Success,
            },
            "cell: SHUT_DOWN (exit 0x10)",
        );
        round_trip(
            CellStopped {
                state: CellState::Failed,
                code: ExitCode::BadCommandLine,
            },
            "cell: FAILED (exit 0x12)",
        );
        assert!("cell: RUNNING (exit 0x10)".parse::<CellStopped>().is_err());
        assert!("cell: FAILED (exit 0x99)".parse::<CellStopped>().is_err());
    }

    #[test]
    fn net_and_peer_lines() {
        let mac = MacAddress([0x02, 0x4e, 0x49, 0x0a, 0xbc, 0x01]);
        assert_eq!(mac.to_string(), "02:4e:49:0a:bc:01");
        for bad in [
            "02:4e:49:0a:bc",
            "02:4e:49:0a:bc:01:02",
            "2:4e:49:0a:bc:01",
            "zz:4e:49:0a:bc:01",
        ] {
            assert!(bad.parse::<MacAddress>().is_err(), "{bad}");
        }
        assert!("10.0.0.1/33".parse::<IpPrefix>().is_err());
        assert!("fe80::1/129".parse::<IpPrefix>().is_err());
        assert!("fe80::1".parse::<IpPrefix>().is_err());
        round_trip(
            NetConfig {
                mac,
                mtu: 16384,
                addresses: vec![
                    IpPrefix {
                        address: IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)),
                        prefix: 24,
                    },
                    IpPrefix {
                        address: IpAddr::V6(Ipv6Addr::new(
                            0xfe80, 0, 0, 0, 0x4e, 0x49ff, 0xfe0a, 0xbc01,
                        )),
                        prefix: 64,
                    },
                    IpPrefix {
                        address: IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, 1)),
                        prefix: 64,
                    },
                ],
            },
            "net: MAC 02:4e:49:0a:bc:01, MTU 16384, addresses 10.0.0.1/24 \
             fe80::4e:49ff:fe0a:bc01/64 fd00::1/64",
        );
        assert!(
            "net: MAC 02:4e:49:0a:bc:01, MTU 1500, addresses"
                .parse::<NetConfig>()
                .is_err(),
            "at least one address"
        );
        round_trip(
            PeerFirstFrame { mac, length: 42 },
            "peer: MAC 02:4e:49:0a:bc:01, first frame 42 bytes",
        );
        for (guess, word) in [
            (PeerGuess::Linux, "linux"),
            (PeerGuess::Zephyr, "zephyr"),
            (PeerGuess::EthIvshmem, "eth-ivshmem"),
            (PeerGuess::Unknown, "unknown"),
        ] {
            assert_eq!(guess.to_string(), word);
            assert_eq!(word.parse(), Ok(guess));
        }
        let session = PeerSession {
            session: 2,
            ended: true,
            mac: Some(mac),
            received: Traffic {
                frames: 120,
                bytes: 123_456,
            },
            largest_frame: 16398,
            sent: Traffic {
                frames: 118,
                bytes: 120_000,
            },
            protocol_errors: 0,
            reassembly: Reassembly {
                reassembled: 3,
                incomplete: 1,
                no_slot: 7,
            },
            guess: PeerGuess::Linux,
        };
        assert_eq!(session.mtu_at_least(), 16384);
        round_trip(
            session,
            "peer: session 2 ended: MAC 02:4e:49:0a:bc:01, received 120 frames (123456 bytes), \
             largest frame 16398 bytes (MTU at least 16384), sent 118 frames (120000 bytes), \
             protocol errors 0, reassembly 3 datagrams (1 incomplete dropped, 7 fragments without \
             a slot), looks like linux",
        );
        round_trip(
            PeerSession {
                ended: false,
                mac: None,
                received: Traffic::default(),
                largest_frame: 0,
                guess: PeerGuess::Unknown,
                ..session
            },
            "peer: session 2 so far: MAC unknown, received 0 frames (0 bytes), largest frame 0 \
             bytes (MTU at least 0), sent 118 frames (120000 bytes), protocol errors 0, \
             reassembly 3 datagrams (1 incomplete dropped, 7 fragments without a slot), looks \
             like unknown",
        );
        assert!(
            session
                .to_string()
                .replace("at least 16384", "at least 1500")
                .parse::<PeerSession>()
                .is_err(),
            "the MTU estimate follows from the largest frame"
        );
        let statistics = NetStatistics {
            link_ups: 2,
            resets: 1,
            sent: Traffic {
                frames: 1234,
                bytes: 123_456,
            },
            received: Traffic {
                frames: 1200,
                bytes: 120_000,
            },
            kicks: 456,
            drops: LinkDrops {
                ring_full: 1,
                link_down: 2,
                invalid_length: 3,
                bad_descriptor: 4,
            },
            protocol_errors: 4,
            transmit_timeouts: 0,
            reassembly: Reassembly {
                reassembled: 4,
                incomplete: 2,
                no_slot: 10,
            },
            fragmented: 3,
            fragments: 40,
        };
        round_trip(
            statistics,
            "statistics: link up 2 time(s), 1 reset(s), sent 1234 frames (123456 bytes), \
             received 1200 frames (120000 bytes), 456 kicks, dropped 10 (ring full 1, link down \
             2, invalid length 3, bad descriptor 4), protocol errors 4, transmit timeouts 0, \
             reassembly 4 datagrams (2 incomplete dropped, 10 fragments without a slot), \
             fragmented 3 datagrams into 40 fragments",
        );
        assert!(
            statistics
                .to_string()
                .replace("dropped 10", "dropped 11")
                .parse::<NetStatistics>()
                .is_err(),
            "the total is the sum"
        );
        round_trip(
            FragmentFloodResult {
                fragments: 4000,
                time: Millis(4_000_123),
                small_answered: 40,
                small_sent: 40,
                large_answered: 1,
                large_sent: 40,
            },
            "fragment-flood: 4000 first fragments in 4000.123 ms; small pings 40 of 40 answered, \
             fragmented pings 1 of 40 answered",
        );
        // None of the new lines is mistaken for an older one, or the reverse.
        assert!(
            "peer: MAC 02:4e:49:0a:bc:01, first frame 42 bytes"
                .parse::<PeerSession>()
                .is_err()
        );
        assert!(
            "link: up (link-ups 2, resets 1)"
                .parse::<PeerFirstFrame>()
                .is_err()
        );
    }

    #[test]
    fn ivshmem_app_lines() {
        round_trip(
            IvshmemSections {
                state_table: MemoryRange {
                    address: 0xfe00_1000,
                    size: 0x1000,
                },
                rw_section: MemoryRange {
                    address: 0xfe00_2000,
                    size: 0x4_0000,
                },
                output_sections: 0xfe04_2000,
                output_section_size: 0x5f000,
                peers: 2,
            },
            "ivshmem: state table 0xfe001000 size 0x1000, R/W section 0xfe002000 size 0x40000, \
             output sections 0xfe042000 size 2 x 0x5f000",
        );
        for (phase, word) in [(IvshmemPhase::Ready, "ready"), (IvshmemPhase::Done, "done")] {
            round_trip(
                IvshmemOwnState {
                    state: 0x8000_1234,
                    phase,
                },
                &format!("ivshmem: our state 0x80001234 ({word})"),
            );
            round_trip(
                IvshmemPeerState {
                    peer: 1,
                    phase,
                    state: 0x4000_0001,
                    after: Millis(12_345),
                },
                &format!("ivshmem: peer 1 {word} (state 0x40000001) after 12.345 ms"),
            );
            round_trip(
                IvshmemPeerTimeout {
                    peer: 11,
                    phase,
                    seconds: 60,
                },
                &format!("ivshmem: peer 11 not {word} within 60 s"),
            );
        }
        assert!(
            "ivshmem: our state 0x180001234 (ready)"
                .parse::<IvshmemOwnState>()
                .is_err(),
            "a state is 32 bits"
        );
        assert!(
            "ivshmem: peer 1 gone (state 0x1) after 1.000 ms"
                .parse::<IvshmemPeerState>()
                .is_err()
        );
        round_trip(
            IvshmemOwnToken {
                token: 0x4956_5348_8000_1234,
                offset: 8,
            },
            "ivshmem: our token 0x4956534880001234 at R/W offset 0x8",
        );
        round_trip(
            IvshmemOwnToken {
                token: 1,
                offset: 0,
            },
            "ivshmem: our token 0x0000000000000001 at R/W offset 0x0",
        );
        round_trip(
            IvshmemNoTokenRoom {
                rw_size: 0,
                needed: 0x10,
            },
            "ivshmem: no room for tokens: R/W section of 0x0 bytes, 0x10 needed",
        );
        round_trip(
            IvshmemRang { peer: 1, vector: 1 },
            "ivshmem: rang peer 1 vector 1",
        );
        round_trip(
            IvshmemVectorFired {
                vector: 0,
                after: Millis(812),
            },
            "ivshmem: vector 0 fired after 0.812 ms",
        );
        round_trip(
            IvshmemVectorTimeout {
                vector: 1,
                seconds: 5,
            },
            "ivshmem: vector 1 did not fire within 5 s",
        );
        round_trip(
            IvshmemDoorbellSkipped::NoVectors,
            "ivshmem: no vectors, no doorbells",
        );
        round_trip(
            IvshmemDoorbellSkipped::Polling { vector: 1 },
            "ivshmem: polling, vector 1 not awaited",
        );
        round_trip(
            IvshmemPeerToken {
                peer: 0,
                token: 0x4956_5348_c000_0042,
                offset: 0,
            },
            "ivshmem: peer 0's token 0x49565348c0000042 at R/W offset 0x0",
        );
        round_trip(
            IvshmemTokenMismatch {
                peer: 2,
                expected: 0x4956_5348_8000_0042,
            },
            "ivshmem: peer 2's token should be 0x4956534880000042",
        );
        round_trip(
            AppVerdict {
                app: App::Ivshmem,
                pass: true,
            },
            "ivshmem: PASS",
        );
        // The lines of the app all start like the device line, which comes
        // first; none of them is mistaken for it.
        assert!(
            "ivshmem: rang peer 1 vector 1"
                .parse::<DeviceFound>()
                .is_err()
        );
    }

    #[test]
    fn fatal_lines() {
        for kind in [
            FatalKind::Panic,
            FatalKind::OutOfMemory,
            FatalKind::CommandLine,
            FatalKind::Failed,
            FatalKind::Boot,
        ] {
            let line = Fatal {
                kind,
                message: "what happened",
            }
            .to_string();
            assert_eq!(
                line.parse::<Fatal<String>>(),
                Ok(Fatal {
                    kind,
                    message: "what happened".into()
                })
            );
        }
        assert_eq!(
            Fatal {
                kind: FatalKind::Panic,
                message: "self-test: deliberate panic"
            }
            .to_string(),
            "KERNEL PANIC: self-test: deliberate panic"
        );
        assert!("boot: ok".parse::<Fatal<String>>().is_err());
        assert!("link: up".parse::<Fatal<String>>().is_err());
    }

    #[test]
    fn exception_reports() {
        let headline = ExceptionHeadline {
            name: "#PF page fault",
            vector: 14,
        };
        let frame = ExceptionFrame {
            rip: 0x10_2345,
            cs: 8,
            rflags: 0x10046,
            rsp: 0x20_0000,
            ss: 0x10,
        };
        let cr2 = PageFaultAddress {
            cr2: 0x10_0000_0000,
            cause: "read of a non-present page",
        };
        let lines = vec![
            "log noise".to_string(),
            headline.to_string(),
            frame.to_string(),
            ExceptionErrorCode(0).to_string(),
            cr2.to_string(),
            "  RAX 0x0 …".to_string(),
        ];
        assert_eq!(lines[1], "CPU EXCEPTION #PF page fault (vector 14)");
        assert_eq!(
            lines[2],
            "  RIP 0x0000000000102345  CS 0x0008  RFLAGS 0x00010046  RSP 0x0000000000200000  SS 0x0010"
        );
        assert_eq!(lines[3], "  error code 0x0");
        assert_eq!(
            lines[4],
            "  CR2 0x0000001000000000 (read of a non-present page)"
        );
        let report = ExceptionReport::parse(&lines).unwrap();
        assert_eq!(report.headline.vector, 14);
        assert_eq!(report.headline.name, "#PF page fault");
        assert_eq!(report.frame, frame);
        assert_eq!(report.error_code, ExceptionErrorCode(0));
        assert_eq!(report.page_fault.unwrap().cr2, 0x10_0000_0000);
        let without_cr2 = ExceptionReport::parse(&lines[..4]).unwrap();
        assert_eq!(without_cr2.page_fault, None);
        assert!(ExceptionReport::parse(&lines[..3]).is_err());
        assert!(ExceptionReport::parse(&lines[2..]).is_err());
    }
}
