//! PCI: configuration access (ECAM or port I/O), enumeration, BAR sizing and
//! capability discovery.
//!
//! Everything above [`ConfigAccess`] is pure and tested on the host against a
//! fake configuration space that models BAR sizing masks. All accesses are
//! aligned 32-bit reads and writes, which every platform we meet (QEMU,
//! Jailhouse) emulates.

use alloc::vec::Vec;

use abi::report::PciFunction;
pub use abi::report::{Bar, BarKind, Bdf};

/// Access to configuration space: aligned 32-bit reads and writes.
pub trait ConfigAccess {
    /// Reads the dword at `offset` (a multiple of 4) of `bdf`.
    fn read32(&self, bdf: Bdf, offset: u16) -> u32;
    /// Writes the dword at `offset` (a multiple of 4) of `bdf`.
    fn write32(&self, bdf: Bdf, offset: u16, value: u32);

    /// Reads the byte at any offset.
    fn read8(&self, bdf: Bdf, offset: u16) -> u8 {
        (self.read32(bdf, offset & !3) >> ((offset & 3) * 8)) as u8
    }
    /// Reads the 16-bit word at an even offset.
    fn read16(&self, bdf: Bdf, offset: u16) -> u16 {
        (self.read32(bdf, offset & !3) >> ((offset & 2) * 8)) as u16
    }
}

/// Standard header offsets (PCI Local Bus Specification 3.0, §6.1).
pub mod offset {
    /// Vendor ID (low 16 bits) and Device ID (high 16 bits).
    pub const ID: u16 = 0x00;
    /// Command (low 16 bits) and Status (high 16 bits).
    pub const COMMAND: u16 = 0x04;
    /// Revision, prog-if, sub-class, class.
    pub const CLASS: u16 = 0x08;
    /// Cache line, latency timer, header type, BIST.
    pub const HEADER_TYPE: u16 = 0x0c;
    /// First BAR.
    pub const BAR0: u16 = 0x10;
    /// Bridge bus numbers: primary, secondary, subordinate.
    pub const BRIDGE_BUSES: u16 = 0x18;
    /// Subsystem vendor (low) and subsystem ID (high).
    pub const SUBSYSTEM: u16 = 0x2c;
    /// Capabilities pointer.
    pub const CAPABILITIES: u16 = 0x34;
}

/// Command register bits.
pub mod command {
    /// Respond to I/O space accesses.
    pub const IO_SPACE: u16 = 1 << 0;
    /// Respond to memory space accesses.
    pub const MEMORY_SPACE: u16 = 1 << 1;
    /// May master the bus (needed for MSI-X writes).
    pub const BUS_MASTER: u16 = 1 << 2;
    /// Disable the INTx line.
    pub const INTX_DISABLE: u16 = 1 << 10;
}

/// Status register: a capability list exists.
const STATUS_CAPABILITIES: u32 = 1 << (16 + 4);

/// One function found on the bus.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Function {
    /// Where it is.
    pub bdf: Bdf,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Base class.
    pub class: u8,
    /// Sub-class.
    pub subclass: u8,
    /// Programming interface.
    pub prog_if: u8,
    /// Revision ID.
    pub revision: u8,
    /// Header type (without the multi-function bit).
    pub header_type: u8,
    /// Sized BARs (type-0 headers only).
    pub bars: Vec<Bar>,
}

impl Function {
    /// The BAR with this number, if implemented.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|bar| bar.index == index)
    }
}

impl Function {
    /// The function's inventory line.
    pub fn report(&self) -> PciFunction {
        PciFunction {
            bdf: self.bdf,
            vendor: self.vendor,
            device: self.device,
            class: [self.class, self.subclass, self.prog_if],
            revision: self.revision,
        }
    }
}

/// The most buses a scan visits (bridges could otherwise form a loop).
const MAX_BUSES: usize = 256;

/// Finds every function reachable from bus 0 through PCI-to-PCI bridges, and sizes its BARs.
pub fn enumerate(config: &dyn ConfigAccess) -> Vec<Function> {
    let mut functions = Vec::new();
    let mut pending: Vec<u8> = alloc::vec![0];
    let mut visited = [false; MAX_BUSES];
    while let Some(bus) = pending.pop() {
        if core::mem::replace(&mut visited[usize::from(bus)], true) {
            continue;
        }
        for device in 0..32 {
            for function in 0..8 {
                let bdf = Bdf {
                    bus,
                    device,
                    function,
                };
                let id = config.read32(bdf, offset::ID);
                if id & 0xffff == 0xffff {
                    if function == 0 {
                        break;
                    }
                    continue;
                }
                let class = config.read32(bdf, offset::CLASS);
                let header = config.read8(bdf, offset::HEADER_TYPE + 2);
                let header_type = header & 0x7f;
                if header_type == 1 {
                    let secondary = config.read8(bdf, offset::BRIDGE_BUSES + 1);
                    if secondary != 0 {
                        pending.push(secondary);
                    }
                }
                functions.push(Function {
                    bdf,
                    vendor: id as u16,
                    device: (id >> 16) as u16,
                    class: (class >> 24) as u8,
                    subclass: (class >> 16) as u8,
                    prog_if: (class >> 8) as u8,
                    revision: class as u8,
                    header_type,
                    bars: if header_type == 0 {
                        size_bars(config, bdf)
                    } else {
                        Vec::new()
                    },
                });
                if function == 0 && header & 0x80 == 0 {
                    break;
                }
            }
        }
    }
    functions.sort_by_key(|function| function.bdf);
    functions
}

/// Sizes the six BARs of a type-0 header (decoding is off meanwhile, then restored).
pub fn size_bars(config: &dyn ConfigAccess, bdf: Bdf) -> Vec<Bar> {
    let saved_command = config.read32(bdf, offset::COMMAND) & 0xffff;
    let decode = u32::from(command::IO_SPACE | command::MEMORY_SPACE);
    // Status bits are write-1-to-clear: the high half written as 0 leaves them alone.
    config.write32(bdf, offset::COMMAND, saved_command & !decode);
    let mut bars = Vec::new();
    let mut index = 0u8;
    while index < 6 {
        let register = offset::BAR0 + 4 * u16::from(index);
        let low = config.read32(bdf, register);
        config.write32(bdf, register, 0xffff_ffff);
        let low_mask = config.read32(bdf, register);
        config.write32(bdf, register, low);
        if low & 1 == 1 {
            let mut mask = low_mask & !0x3;
            if mask != 0 {
                if mask & 0xffff_0000 == 0 {
                    mask |= 0xffff_0000; // 16-bit I/O decoder
                }
                bars.push(Bar {
                    index,
                    kind: BarKind::Io,
                    prefetchable: false,
                    address: u64::from(low & !0x3),
                    size: u64::from(mask & mask.wrapping_neg()),
                });
            }
            index += 1;
            continue;
        }
        let prefetchable = low & 0x8 != 0;
        if (low >> 1) & 3 == 2 && index < 5 {
            let high = config.read32(bdf, register + 4);
            config.write32(bdf, register + 4, 0xffff_ffff);
            let high_mask = config.read32(bdf, register + 4);
            config.write32(bdf, register + 4, high);
            let mask = (u64::from(high_mask) << 32) | u64::from(low_mask & !0xf);
            if mask != 0 {
                bars.push(Bar {
                    index,
                    kind: BarKind::Memory64,
                    prefetchable,
                    address: (u64::from(high) << 32) | u64::from(low & !0xf),
                    size: mask & mask.wrapping_neg(),
                });
            }
            index += 2;
        } else {
            let mask = low_mask & !0xf;
            if mask != 0 {
                bars.push(Bar {
                    index,
                    kind: BarKind::Memory32,
                    prefetchable,
                    address: u64::from(low & !0xf),
                    size: u64::from(mask & mask.wrapping_neg()),
                });
            }
            index += 1;
        }
    }
    config.write32(bdf, offset::COMMAND, saved_command);
    bars
}

/// Sets bits in the command register.
pub fn enable(config: &dyn ConfigAccess, bdf: Bdf, bits: u16) {
    let current = config.read32(bdf, offset::COMMAND) & 0xffff;
    config.write32(bdf, offset::COMMAND, current | u32::from(bits));
}

/// A capability in the list: its ID and its offset in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (0x09 vendor-specific, 0x11 MSI-X, …).
    pub id: u8,
    /// Offset of its first byte.
    pub offset: u16,
}

/// Capability IDs (PCI Code and ID Assignment Specification).
pub mod capability {
    /// Vendor-specific.
    pub const VENDOR: u8 = 0x09;
    /// MSI-X.
    pub const MSIX: u8 = 0x11;
}

/// The capability list of `bdf`, at most 48 entries (a loop in the list ends it).
pub fn capabilities(config: &dyn ConfigAccess, bdf: Bdf) -> Vec<Capability> {
    let mut found = Vec::new();
    if config.read32(bdf, offset::COMMAND) & STATUS_CAPABILITIES == 0 {
        return found;
    }
    let mut next = u16::from(config.read8(bdf, offset::CAPABILITIES)) & 0xfc;
    while next >= 0x40 && found.len() < 48 {
        let header = config.read32(bdf, next);
        found.push(Capability {
            id: header as u8,
            offset: next,
        });
        next = ((header >> 8) & 0xfc) as u16;
    }
    found
}

/// The first capability with this ID.
pub fn find_capability(config: &dyn ConfigAccess, bdf: Bdf, id: u8) -> Option<Capability> {
    capabilities(config, bdf)
        .into_iter()
        .find(|capability| capability.id == id)
}

/// The MSI-X capability (PCI Local Bus Specification 3.0, §6.8.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Msix {
    /// Offset of the capability.
    pub offset: u16,
    /// Number of table entries.
    pub table_size: u16,
    /// BAR holding the table.
    pub table_bar: u8,
    /// Offset of the table in that BAR.
    pub table_offset: u32,
    /// BAR holding the pending-bit array.
    pub pba_bar: u8,
    /// Offset of the pending-bit array in that BAR.
    pub pba_offset: u32,
}

/// Message control: MSI-X enable.
const MSIX_ENABLE: u32 = 1 << 31;
/// Message control: function mask.
const MSIX_FUNCTION_MASK: u32 = 1 << 30;

impl Msix {
    /// Reads the MSI-X capability of `bdf`, if it has one.
    pub fn find(config: &dyn ConfigAccess, bdf: Bdf) -> Option<Self> {
        let capability = find_capability(config, bdf, capability::MSIX)?;
        let header = config.read32(bdf, capability.offset);
        let table = config.read32(bdf, capability.offset + 4);
        let pba = config.read32(bdf, capability.offset + 8);
        Some(Self {
            offset: capability.offset,
            table_size: ((header >> 16) & 0x7ff) as u16 + 1,
            table_bar: (table & 7) as u8,
            table_offset: table & !7,
            pba_bar: (pba & 7) as u8,
            pba_offset: pba & !7,
        })
    }

    /// Sets MSI-X enable and function mask as given (message control is the
    /// high half of the capability's first dword; ID and next are read-only).
    pub fn set_control(
        &self,
        config: &dyn ConfigAccess,
        bdf: Bdf,
        enabled: bool,
        function_masked: bool,
    ) {
        let mut header = config.read32(bdf, self.offset) & !(MSIX_ENABLE | MSIX_FUNCTION_MASK);
        if enabled {
            header |= MSIX_ENABLE;
        }
        if function_masked {
            header |= MSIX_FUNCTION_MASK;
        }
        config.write32(bdf, self.offset, header);
    }
}

/// The MSI message that delivers `vector` to the local APIC `apic_id` (fixed,
/// edge; Intel SDM vol. 3, §11.11): (address, data).
pub fn msi_message(apic_id: u8, vector: u8) -> (u64, u32) {
    (0xfee0_0000 | (u64::from(apic_id) << 12), u32::from(vector))
}

/// Configuration access through I/O ports 0xcf8/0xcfc (configuration mechanism #1).
#[derive(Debug, Default)]
pub struct PortIo {
    lock: spin::Mutex<()>,
}

impl PortIo {
    fn address(bdf: Bdf, offset: u16) -> u32 {
        0x8000_0000
            | (u32::from(bdf.bus) << 16)
            | (u32::from(bdf.device & 31) << 11)
            | (u32::from(bdf.function & 7) << 8)
            | u32::from(offset & 0xfc)
    }
}

impl ConfigAccess for PortIo {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        let _guard = self.lock.lock();
        x86_64::instructions::interrupts::without_interrupts(|| {
            // SAFETY: 0xcf8/0xcfc are the configuration ports; the lock and the
            // disabled interrupts make the address/data pair atomic here.
            unsafe {
                x86_64::instructions::port::Port::<u32>::new(0xcf8)
                    .write(Self::address(bdf, offset));
                x86_64::instructions::port::Port::<u32>::new(0xcfc).read()
            }
        })
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        let _guard = self.lock.lock();
        x86_64::instructions::interrupts::without_interrupts(|| {
            // SAFETY: as in `read32`.
            unsafe {
                x86_64::instructions::port::Port::<u32>::new(0xcf8)
                    .write(Self::address(bdf, offset));
                x86_64::instructions::port::Port::<u32>::new(0xcfc).write(value);
            }
        })
    }
}

/// Configuration access through a memory-mapped ECAM window (PCI Express).
#[derive(Debug)]
pub struct Ecam {
    base: u64,
    bus_start: u8,
    bus_end: u8,
}

impl Ecam {
    /// Maps the window (uncached) for buses `bus_start..=bus_end` at `base`.
    pub fn new(base: u64, bus_start: u8, bus_end: u8) -> Result<Self, crate::paging::MapError> {
        let buses = u64::from(bus_end.saturating_sub(bus_start)) + 1;
        crate::paging::map(
            base + (u64::from(bus_start) << 20),
            buses << 20,
            crate::paging::Attributes::DEVICE,
        )?;
        Ok(Self {
            base,
            bus_start,
            bus_end,
        })
    }

    fn address(&self, bdf: Bdf, offset: u16) -> Option<u64> {
        (self.bus_start..=self.bus_end).contains(&bdf.bus).then(|| {
            self.base
                + (u64::from(bdf.bus) << 20)
                + (u64::from(bdf.device & 31) << 15)
                + (u64::from(bdf.function & 7) << 12)
                + u64::from(offset & 0xffc)
        })
    }
}

impl ConfigAccess for Ecam {
    fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
        match self.address(bdf, offset) {
            // SAFETY: `new` mapped the window uncached for exactly these buses;
            // the address is a dword inside it.
            Some(address) => unsafe { core::ptr::read_volatile(address as *const u32) },
            None => 0xffff_ffff,
        }
    }

    fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
        if let Some(address) = self.address(bdf, offset) {
            // SAFETY: as in `read32`.
            unsafe { core::ptr::write_volatile(address as *mut u32, value) }
        }
    }
}

#[cfg(test)]
pub mod fake {
    //! An in-memory configuration space for tests, modelling BAR sizing masks.

    use super::*;
    use std::cell::RefCell;
    use std::collections::BTreeMap;

    /// One fake function: 4 KiB of registers and, per BAR, its size mask.
    #[derive(Debug, Clone)]
    pub struct FakeFunction {
        /// The registers, as dwords.
        pub registers: [u32; 1024],
        /// Writable bits of each BAR register (0 = not implemented); a 64-bit
        /// BAR's upper half is its own entry.
        pub bar_masks: [u32; 6],
    }

    impl FakeFunction {
        /// A function with these IDs and class dword, and no BARs.
        pub fn new(vendor: u16, device: u16, class: u32) -> Self {
            let mut registers = [0; 1024];
            registers[0] = u32::from(vendor) | (u32::from(device) << 16);
            registers[2] = class;
            Self {
                registers,
                bar_masks: [0; 6],
            }
        }

        /// Adds a 32-bit memory BAR of `size` at `address`.
        pub fn bar32(mut self, index: usize, address: u32, size: u32) -> Self {
            self.registers[4 + index] = address;
            self.bar_masks[index] = !(size - 1);
            self
        }

        /// Adds a 64-bit prefetchable memory BAR of `size` at `address`.
        pub fn bar64(mut self, index: usize, address: u64, size: u64) -> Self {
            let mask = !(size - 1);
            self.registers[4 + index] = (address as u32) | 0b1100;
            self.registers[5 + index] = (address >> 32) as u32;
            self.bar_masks[index] = mask as u32;
            self.bar_masks[index + 1] = (mask >> 32) as u32;
            self
        }

        /// Writes a dword of configuration space.
        pub fn set(mut self, offset: u16, value: u32) -> Self {
            self.registers[usize::from(offset / 4)] = value;
            self
        }

        /// Builds a capability list from `(offset, header dword, body dwords)`,
        /// linking each to the next and setting the status bit and pointer.
        pub fn capabilities(mut self, list: &[(u16, u32, &[u32])]) -> Self {
            self.registers[1] |= STATUS_CAPABILITIES;
            self.registers[usize::from(offset::CAPABILITIES / 4)] =
                list.first().map_or(0, |c| u32::from(c.0));
            for (position, (at, header, body)) in list.iter().enumerate() {
                let next = list.get(position + 1).map_or(0, |c| c.0);
                self.registers[usize::from(at / 4)] = (header & !0xff00) | (u32::from(next) << 8);
                for (index, word) in body.iter().enumerate() {
                    self.registers[usize::from(at / 4) + 1 + index] = *word;
                }
            }
            self
        }
    }

    /// A bus of fake functions.
    #[derive(Debug, Default)]
    pub struct FakeConfigSpace {
        /// The functions, by address.
        pub functions: RefCell<BTreeMap<Bdf, FakeFunction>>,
    }

    impl FakeConfigSpace {
        /// Adds a function.
        pub fn with(self, bdf: Bdf, function: FakeFunction) -> Self {
            self.functions.borrow_mut().insert(bdf, function);
            self
        }

        /// Reads back a dword (for assertions).
        pub fn peek(&self, bdf: Bdf, offset: u16) -> u32 {
            self.read32(bdf, offset)
        }
    }

    impl ConfigAccess for FakeConfigSpace {
        fn read32(&self, bdf: Bdf, offset: u16) -> u32 {
            assert_eq!(offset % 4, 0, "unaligned config read at {offset:#x}");
            self.functions
                .borrow()
                .get(&bdf)
                .map_or(0xffff_ffff, |f| f.registers[usize::from(offset / 4)])
        }

        fn write32(&self, bdf: Bdf, offset: u16, value: u32) {
            assert_eq!(offset % 4, 0, "unaligned config write at {offset:#x}");
            let mut functions = self.functions.borrow_mut();
            let Some(function) = functions.get_mut(&bdf) else {
                return;
            };
            let index = usize::from(offset / 4);
            match offset {
                0x00 | 0x08 => {} // read-only IDs and class
                // Status (high half) is read-only / write-1-to-clear: writing 0 keeps it.
                0x04 => {
                    function.registers[1] = (function.registers[1] & 0xffff_0000) | (value & 0xffff)
                }
                0x10..=0x24 => {
                    let bar = index - 4;
                    let mask = function.bar_masks[bar];
                    let old = function.registers[index];
                    // Low bits of a memory BAR are read-only type bits; the upper half of a 64-bit BAR has none.
                    let upper_half = bar > 0 && function.registers[index - 1] & 0x7 == 0x4;
                    let type_bits = if upper_half { 0 } else { old & 0xf };
                    function.registers[index] = (value & mask) | type_bits;
                }
                _ => function.registers[index] = value,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::fake::{FakeConfigSpace, FakeFunction};
    use super::*;

    fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
        Bdf {
            bus,
            device,
            function,
        }
    }

    #[test]
    fn enumerates_and_sizes_32_and_64_bit_bars() {
        let config = FakeConfigSpace::default()
            .with(bdf(0, 0, 0), FakeFunction::new(0x8086, 0x1237, 0x0600_0002))
            .with(
                bdf(0, 3, 0),
                FakeFunction::new(0x1af4, 0x1110, 0x0500_0001)
                    .bar32(0, 0xfebf_1000, 0x100)
                    .bar64(2, 0x1_0000_0000, 0x1_0000_0000)
                    .set(offset::COMMAND, 0x3),
            );
        let functions = enumerate(&config);
        assert_eq!(functions.len(), 2);
        let ivshmem = &functions[1];
        assert_eq!(
            ivshmem.report().to_string(),
            "pci 00:03.0 1af4:1110 class 05.00.00 rev 01"
        );
        assert_eq!(
            ivshmem.bars,
            [
                Bar {
                    index: 0,
                    kind: BarKind::Memory32,
                    prefetchable: false,
                    address: 0xfebf_1000,
                    size: 0x100
                },
                Bar {
                    index: 2,
                    kind: BarKind::Memory64,
                    prefetchable: true,
                    address: 0x1_0000_0000,
                    size: 0x1_0000_0000
                },
            ]
        );
        assert_eq!(
            ivshmem.bars[1].to_string(),
            "BAR2 mem64 prefetchable 0x100000000 size 0x100000000"
        );
        // Sizing restored the BARs and the command register.
        assert_eq!(config.peek(bdf(0, 3, 0), 0x10), 0xfebf_1000);
        assert_eq!(config.peek(bdf(0, 3, 0), 0x18), 0x0000_000c);
        assert_eq!(config.peek(bdf(0, 3, 0), 0x1c), 0x1);
        assert_eq!(config.peek(bdf(0, 3, 0), offset::COMMAND), 0x3);
    }

    #[test]
    fn follows_bridges_and_multifunction_devices() {
        let config = FakeConfigSpace::default()
            .with(
                bdf(0, 0, 0),
                FakeFunction::new(0x8086, 0x29c0, 0x0600_0000).set(0x0c, 0x0080_0000),
            )
            .with(bdf(0, 0, 1), FakeFunction::new(0x8086, 0x29c1, 0x0600_0000))
            .with(
                bdf(0, 1, 0),
                FakeFunction::new(0x1b36, 0x000c, 0x0604_0000)
                    .set(0x0c, 0x0001_0000)
                    .set(0x18, 0x0002_0200),
            )
            .with(bdf(2, 0, 0), FakeFunction::new(0x110a, 0x4106, 0xff00_0100))
            // A function at 0:2.1 without function 0 must not be found.
            .with(bdf(0, 2, 1), FakeFunction::new(0xdead, 0xbeef, 0));
        let found: Vec<Bdf> = enumerate(&config).iter().map(|f| f.bdf).collect();
        assert_eq!(
            found,
            [bdf(0, 0, 0), bdf(0, 0, 1), bdf(0, 1, 0), bdf(2, 0, 0)]
        );
    }

    #[test]
    fn a_bridge_loop_terminates() {
        let config = FakeConfigSpace::default()
            .with(
                bdf(0, 1, 0),
                FakeFunction::new(0x1b36, 0x000c, 0x0604_0000)
                    .set(0x0c, 0x0001_0000)
                    .set(0x18, 0x0001_0100),
            )
            .with(
                bdf(1, 0, 0),
                FakeFunction::new(0x1b36, 0x000c, 0x0604_0000)
                    .set(0x0c, 0x0001_0000)
                    .set(0x18, 0x0000_0001),
            );
        assert_eq!(enumerate(&config).len(), 2);
    }

    #[test]
    fn walks_capabilities_and_reads_msix() {
        let device = bdf(0, 4, 0);
        let config = FakeConfigSpace::default().with(
            device,
            FakeFunction::new(0x110a, 0x4106, 0xff00_0100).capabilities(&[
                (0x4c, 0x0018_0009, &[]),
                (0x40, 0x0001_0011, &[0x0000_0001, 0x0000_0801]),
            ]),
        );
        let list = capabilities(&config, device);
        assert_eq!(
            list,
            [
                Capability {
                    id: 0x09,
                    offset: 0x4c
                },
                Capability {
                    id: 0x11,
                    offset: 0x40
                }
            ]
        );
        let msix = Msix::find(&config, device).unwrap();
        assert_eq!(
            msix,
            Msix {
                offset: 0x40,
                table_size: 2,
                table_bar: 1,
                table_offset: 0,
                pba_bar: 1,
                pba_offset: 0x800
            }
        );
        msix.set_control(&config, device, true, false);
        assert_eq!(config.peek(device, 0x40) >> 30, 0b10);
        assert_eq!(
            config.peek(device, 0x40) & 0xffff,
            0x0011,
            "ID and next untouched"
        );
    }

    #[test]
    fn a_capability_loop_is_bounded() {
        let device = bdf(0, 5, 0);
        let config = FakeConfigSpace::default().with(
            device,
            FakeFunction::new(1, 2, 0)
                .set(0x04, STATUS_CAPABILITIES)
                .set(0x34, 0x40)
                .set(0x40, 0x4009),
        );
        assert_eq!(capabilities(&config, device).len(), 48);
    }

    #[test]
    fn msi_message_targets_the_apic() {
        assert_eq!(msi_message(0, 0x40), (0xfee0_0000, 0x40));
        assert_eq!(msi_message(3, 0x41), (0xfee0_3000, 0x41));
    }
}
