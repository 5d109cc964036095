//! A device's BAR0 registers: the [`RegisterBlock`] trait that discovery and
//! the device talk through, its MMIO implementation, and a fake for tests.
//!
//! The register offsets are in [`super::v2::register`] (ivshmem-v2) and
//! [`super::emulated::register`] (QEMU's v1 devices); both put the doorbell
//! at 0x0C with the same encoding ([`doorbell`]).

/// A device's BAR0 registers: aligned 32-bit accesses only
/// (docs/ivshmem-v2.md §5).
pub trait RegisterBlock {
    /// Reads the register at `offset`.
    fn read32(&self, offset: u32) -> u32;
    /// Writes the register at `offset`.
    fn write32(&self, offset: u32, value: u32);
}

/// The value written to the doorbell register to interrupt `peer` on
/// `vector` (docs/ivshmem-v2.md §5, §14.2).
pub fn doorbell(peer: u16, vector: u16) -> u32 {
    (u32::from(peer) << 16) | u32::from(vector)
}

/// BAR0, mapped uncached.
///
/// Invariant: `[base, base + size)` is a device's register block, mapped
/// uncached for the life of the kernel.
#[derive(Debug)]
pub struct Mmio {
    base: u64,
    size: u64,
}

impl Mmio {
    /// The register block of `size` bytes at `base`.
    ///
    /// # Safety
    ///
    /// `[base, base + size)` must be the register BAR of an ivshmem device,
    /// mapped uncached for the rest of the kernel's life.
    pub unsafe fn new(base: u64, size: u64) -> Self {
        Self { base, size }
    }

    /// The address of the register at `offset`.
    ///
    /// # Panics
    ///
    /// If the register is misaligned or outside the block.
    fn register(&self, offset: u32) -> u64 {
        assert!(
            u64::from(offset) + 4 <= self.size && offset.is_multiple_of(4),
            "register {offset:#x} outside a block of {:#x} bytes",
            self.size
        );
        self.base + u64::from(offset)
    }
}

impl RegisterBlock for Mmio {
    fn read32(&self, offset: u32) -> u32 {
        let address = self.register(offset);
        // SAFETY: the block is mapped uncached (type invariant) and the
        // register is an aligned dword inside it (checked): a plain 32-bit
        // `mov`, which Jailhouse can emulate (docs/ivshmem-v2.md §9).
        unsafe { core::ptr::read_volatile(address as *const u32) }
    }

    fn write32(&self, offset: u32, value: u32) {
        let address = self.register(offset);
        // SAFETY: as in `read32`.
        unsafe { core::ptr::write_volatile(address as *mut u32, value) }
    }
}

#[cfg(test)]
pub mod fake {
    //! A fake BAR0 that records writes.
    use super::RegisterBlock;
    use std::cell::RefCell;
    use std::vec::Vec;

    /// Registers with fixed ID and MAX_PEERS; other writes are stored and logged.
    #[derive(Debug, Default)]
    pub struct FakeRegisters {
        /// The five registers.
        pub values: RefCell<[u32; 5]>,
        /// Every write, in order: (offset, value).
        pub writes: RefCell<Vec<(u32, u32)>>,
    }

    impl FakeRegisters {
        /// A device with this ID and MAX_PEERS.
        pub fn new(id: u32, max_peers: u32) -> Self {
            Self {
                values: RefCell::new([id, max_peers, 0, 0, 0]),
                writes: RefCell::default(),
            }
        }
    }

    impl RegisterBlock for FakeRegisters {
        fn read32(&self, offset: u32) -> u32 {
            assert_eq!(offset % 4, 0);
            match offset {
                0x0c => 0,
                0x00..=0x10 => self.values.borrow()[offset as usize / 4],
                _ => 0,
            }
        }

        fn write32(&self, offset: u32, value: u32) {
            assert_eq!(offset % 4, 0);
            self.writes.borrow_mut().push((offset, value));
            if offset == 0x08 || offset == 0x10 {
                self.values.borrow_mut()[offset as usize / 4] = value;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doorbell_encodes_target_and_vector() {
        assert_eq!(doorbell(1, 1), 0x0001_0001);
        assert_eq!(doorbell(0, 0), 0);
        assert_eq!(doorbell(0xffff, 3), 0xffff_0003);
    }
}
