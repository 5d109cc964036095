//! MSI-X: the capability (PCI Local Bus Specification 3.0, §6.8.2), the
//! table in device memory, and the x86 message that targets a local APIC.

use super::Bdf;
use super::capability::{MSIX, find_capability};
use super::config::ConfigAccess;

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
        let capability = find_capability(config, bdf, MSIX)?;
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

/// An MSI-X table, mapped uncached.
///
/// Invariant: `[base, base + 16 × entries)` is mapped uncached for the life
/// of the kernel and belongs to one device's table.
#[derive(Debug)]
pub struct MsixTable {
    base: u64,
    entries: u16,
}

impl MsixTable {
    /// The table of `entries` entries at `base`.
    ///
    /// # Safety
    ///
    /// `[base, base + 16 × entries)` must be an MSI-X table mapped uncached
    /// for the rest of the kernel's life, and no other `MsixTable` may
    /// cover it.
    pub unsafe fn new(base: u64, entries: u16) -> Self {
        Self { base, entries }
    }

    /// Writes entry `index` (PCI Local Bus Specification 3.0, §6.8.2.6).
    ///
    /// # Panics
    ///
    /// If `index` is not below the table size.
    pub fn program(&self, index: u16, address: u64, data: u32, masked: bool) {
        assert!(index < self.entries);
        let entry = self.base + 16 * u64::from(index);
        let words = [
            address as u32,
            (address >> 32) as u32,
            data,
            u32::from(masked),
        ];
        for (word, value) in words.iter().enumerate() {
            // SAFETY: the table is mapped uncached for `entries` entries of
            // 16 bytes (type invariant), and `index` is checked; aligned
            // dword accesses only.
            unsafe { core::ptr::write_volatile((entry + 4 * word as u64) as *mut u32, *value) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeConfigSpace, FakeFunction, bdf};
    use super::*;

    #[test]
    fn reads_the_capability_and_sets_its_control_bits() {
        let device = bdf(0, 4, 0);
        let config = FakeConfigSpace::default().with(
            device,
            FakeFunction::new(0x110a, 0x4106, 0xff00_0100).capabilities(&[
                (0x4c, 0x0018_0009, &[]),
                (0x40, 0x0001_0011, &[0x0000_0001, 0x0000_0801]),
            ]),
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
        msix.set_control(&config, device, true, true);
        assert_eq!(config.peek(device, 0x40) >> 30, 0b11);
    }

    #[test]
    fn msi_message_targets_the_apic() {
        assert_eq!(msi_message(0, 0x40), (0xfee0_0000, 0x40));
        assert_eq!(msi_message(3, 0x41), (0xfee0_3000, 0x41));
    }
}
