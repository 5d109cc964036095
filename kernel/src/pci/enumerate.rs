//! Enumeration: every function reachable from bus 0, its identity and its
//! sized BARs.

use alloc::vec::Vec;

use super::config::{ConfigAccess, command, offset};
use super::{Bar, BarKind, Bdf};
use abi::report::PciFunction;

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

/// Which buses [`enumerate_buses`] scans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scan {
    /// Bus 0 and every bus behind a PCI-to-PCI bridge found on the way.
    FromBusZero,
    /// All 256 buses: a Jailhouse cell's virtual devices may sit on any bus
    /// with no bridge leading there (the hypervisor answers every address,
    /// as Jailhouse's own inmate library assumes).
    EveryBus,
}

/// Finds every function reachable from bus 0 through PCI-to-PCI bridges, and sizes its BARs.
pub fn enumerate(config: &dyn ConfigAccess) -> Vec<Function> {
    enumerate_buses(config, Scan::FromBusZero)
}

/// Finds every function on the buses `scan` names, and sizes its BARs.
pub fn enumerate_buses(config: &dyn ConfigAccess, scan: Scan) -> Vec<Function> {
    let mut functions = Vec::new();
    let mut pending: Vec<u8> = match scan {
        Scan::FromBusZero => alloc::vec![0],
        Scan::EveryBus => (0..=255).rev().collect(),
    };
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
                if header_type == 1 && scan == Scan::FromBusZero {
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

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeConfigSpace, FakeFunction, bdf};
    use super::*;

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
    fn a_scan_of_every_bus_finds_devices_no_bridge_leads_to() {
        let config = FakeConfigSpace::default()
            .with(bdf(0, 0, 0), FakeFunction::new(0x8086, 0x1237, 0x0600_0000))
            .with(
                bdf(1, 0x0e, 0),
                FakeFunction::new(0x110a, 0x4106, 0xff00_0100),
            )
            .with(
                bdf(255, 31, 0),
                FakeFunction::new(0x1af4, 0x1110, 0x0500_0001),
            );
        let from_zero: Vec<Bdf> = enumerate(&config).iter().map(|f| f.bdf).collect();
        assert_eq!(from_zero, [bdf(0, 0, 0)]);
        let every: Vec<Bdf> = enumerate_buses(&config, Scan::EveryBus)
            .iter()
            .map(|f| f.bdf)
            .collect();
        assert_eq!(every, [bdf(0, 0, 0), bdf(1, 0x0e, 0), bdf(255, 31, 0)]);
    }
}
