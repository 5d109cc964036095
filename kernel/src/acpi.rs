//! ACPI through the `acpi` crate: the MADT (local APIC address and CPUs) and
//! the MCFG (PCI Express ECAM windows), when present.

use alloc::vec::Vec;
use core::ptr::NonNull;

use acpi::madt::{Madt, MadtEntry};
use acpi::mcfg::Mcfg;
use acpi::{AcpiHandler, AcpiTables, PhysicalMapping};

/// Tables are read in place: RAM below 4 GiB is identity-mapped.
#[derive(Debug, Clone, Copy)]
struct IdentityMapped;

impl AcpiHandler for IdentityMapped {
    unsafe fn map_physical_region<T>(
        &self,
        physical_address: usize,
        size: usize,
    ) -> PhysicalMapping<Self, T> {
        let virtual_start =
            NonNull::new(physical_address as *mut T).expect("ACPI table at physical address 0");
        // SAFETY: the boot identity map covers the first 4 GiB, where firmware
        // places the ACPI tables; the mapping is the memory itself.
        unsafe { PhysicalMapping::new(physical_address, virtual_start, size, size, *self) }
    }

    fn unmap_physical_region<T>(_region: &PhysicalMapping<Self, T>) {}
}

/// One ECAM window from the MCFG.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EcamWindow {
    /// Physical base address (of bus 0, whatever the start bus).
    pub base: u64,
    /// PCI segment group.
    pub segment: u16,
    /// First bus decoded.
    pub bus_start: u8,
    /// Last bus decoded.
    pub bus_end: u8,
}

/// What the firmware describes.
#[derive(Debug, Clone)]
pub struct Platform {
    /// The local APIC's physical address.
    pub local_apic: u64,
    /// Enabled local APICs (CPUs).
    pub cpus: usize,
    /// ECAM windows (empty on `pc`, one on `q35`).
    pub ecam: Vec<EcamWindow>,
}

/// Why ACPI could not be read.
#[derive(Debug)]
pub struct AcpiError(acpi::AcpiError);

impl core::fmt::Display for AcpiError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "ACPI: {:?}", self.0)
    }
}

/// Reads the tables from the RSDP the loader gave (or a BIOS-area search).
///
/// # Errors
///
/// No RSDP, or tables the `acpi` crate rejects.
///
/// # Safety
///
/// `rsdp`, if given, must be the RSDP's physical address from the loader:
/// the tables it leads to are read in place through the identity map.
pub unsafe fn probe(rsdp: Option<u64>) -> Result<Platform, AcpiError> {
    // SAFETY: the RSDP address comes from the loader (the caller's
    // contract) or the BIOS-area search, and the tables it leads to are
    // identity-mapped firmware memory.
    let tables = unsafe {
        match rsdp {
            Some(address) => AcpiTables::from_rsdp(IdentityMapped, address as usize),
            None => AcpiTables::search_for_rsdp_bios(IdentityMapped),
        }
    }
    .map_err(AcpiError)?;

    let mut platform = Platform {
        local_apic: crate::apic::DEFAULT_BASE,
        cpus: 0,
        ecam: Vec::new(),
    };
    if let Ok(madt) = tables.find_table::<Madt>() {
        let madt = madt.get();
        platform.local_apic = u64::from(madt.local_apic_address);
        for entry in madt.entries() {
            match entry {
                MadtEntry::LocalApic(local) if local.flags & 1 != 0 => platform.cpus += 1,
                MadtEntry::LocalApicAddressOverride(over) => {
                    platform.local_apic = over.local_apic_address
                }
                _ => {}
            }
        }
    }
    if let Ok(mcfg) = tables.find_table::<Mcfg>() {
        platform.ecam = mcfg
            .entries()
            .iter()
            .map(|entry| EcamWindow {
                base: entry.base_address,
                segment: entry.pci_segment_group,
                bus_start: entry.bus_number_start,
                bus_end: entry.bus_number_end,
            })
            .collect();
    }
    Ok(platform)
}
