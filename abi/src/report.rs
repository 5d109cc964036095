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
