//! Configuration space access: the [`ConfigAccess`] trait every other PCI
//! module works through, its two real implementations (port I/O and ECAM)
//! and the header's register offsets and bits.
//!
//! All accesses are aligned 32-bit reads and writes, which every platform we
//! meet (QEMU, Jailhouse) emulates.

use super::Bdf;
use crate::paging::{self, Attributes, MapError};

/// Access to configuration space: aligned 32-bit reads and writes.
///
/// # Safety
///
/// For implementers: reads return what the platform's configuration space
/// holds and writes reach it. The kernel maps and accesses the memory that
/// BARs and capabilities report (device registers, MSI-X tables, shared
/// memory), trusting that it is device memory and not its own.
pub unsafe trait ConfigAccess {
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

/// Status register bits, as bits of the dword at [`offset::COMMAND`].
pub mod status {
    /// A capability list exists.
    pub const CAPABILITIES: u32 = 1 << (16 + 4);
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

// SAFETY: configuration mechanism #1 reaches the platform's configuration
// space; `read32`/`write32` make each address/data pair atomic.
unsafe impl ConfigAccess for PortIo {
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
    ///
    /// # Safety
    ///
    /// The window must be the platform's ECAM window for those buses (from
    /// the MCFG table): it is mapped uncached, and the functions' registers
    /// are read and written through it.
    pub unsafe fn new(base: u64, bus_start: u8, bus_end: u8) -> Result<Self, MapError> {
        let buses = u64::from(bus_end.saturating_sub(bus_start)) + 1;
        // SAFETY: the ECAM window (the caller's contract).
        unsafe {
            paging::map(
                base + (u64::from(bus_start) << 20),
                buses << 20,
                Attributes::DEVICE,
            )?
        };
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

// SAFETY: the window is the platform's ECAM window (`new`'s contract).
unsafe impl ConfigAccess for Ecam {
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
