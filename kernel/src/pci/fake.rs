//! An in-memory configuration space for tests, modelling BAR sizing masks.

use std::cell::RefCell;
use std::collections::BTreeMap;

use super::Bdf;
use super::config::{ConfigAccess, offset, status};

/// The address `bus:device.function`.
pub fn bdf(bus: u8, device: u8, function: u8) -> Bdf {
    Bdf {
        bus,
        device,
        function,
    }
}

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
        self.registers[1] |= status::CAPABILITIES;
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

// SAFETY: tests only enumerate and discover through a fake; nothing maps or
// accesses the addresses it reports.
unsafe impl ConfigAccess for FakeConfigSpace {
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
