//! ivshmem-v2 emulated over QEMU's stock v1 devices: `ivshmem-doorbell`
//! (1af4:1110 with MSI-X, served by our server) and `ivshmem-plain` (no
//! interrupts). The host writes a descriptor page at the start of the shared
//! memory ([`abi::descriptor`], docs/descriptor-page.md); the v2 layout
//! follows it.
//!
//! Pure, like [`super::v2`]: the caller maps the page and passes its bytes.

use abi::descriptor::DescriptorPage;

use super::error::{ProbeError, Requirements};
use super::layout::Sections;
use super::registers::RegisterBlock;
use crate::pci::{ConfigAccess, Function, Msix};

/// Vendor ID of QEMU's ivshmem (Red Hat, Inc.).
pub const VENDOR: u16 = 0x1af4;
/// Device ID of `ivshmem-plain` and `ivshmem-doorbell`.
pub const DEVICE: u16 = 0x1110;

/// v1 BAR0 registers (docs/ivshmem-v2.md §14.2).
pub mod register {
    /// Own ID, as given by the server (RO; 0 for `ivshmem-plain`).
    pub const IVPOSITION: u32 = 0x08;
    /// Bits 16–31 peer, bits 0–15 vector (WO).
    pub const DOORBELL: u32 = 0x0c;
}

/// What discovery found on an emulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovered {
    /// Our peer ID.
    pub id: u16,
    /// The protocol from the descriptor page.
    pub protocol: u16,
    /// The v2 sections inside BAR2.
    pub sections: Sections,
    /// MSI-X (present on `ivshmem-doorbell` only).
    pub msix: Option<Msix>,
    /// The vectors that work: the MSI-X table's, but no more than the
    /// descriptor page names (our server connects an eventfd for those
    /// only, whatever QEMU's `vectors=` says); 0 without MSI-X.
    pub vectors: u16,
}

/// Reads the identity of a 1af4:1110 function and the descriptor page
/// `page` (the first bytes of its BAR2). `id` is the command line's `id=`,
/// needed for `ivshmem-plain`, which has no ID of its own.
pub fn discover(
    config: &dyn ConfigAccess,
    function: &Function,
    page: &[u8],
    registers: &dyn RegisterBlock,
    id: Option<u16>,
    requirements: Requirements,
) -> Result<Discovered, ProbeError> {
    if (function.vendor, function.device) != (VENDOR, DEVICE) {
        return Err(ProbeError::NoDevice);
    }
    let bar = match function.bar(2) {
        Some(bar) if bar.address == 0 => return Err(ProbeError::BarUnassigned { index: 2 }),
        Some(bar) => *bar,
        None => return Err(ProbeError::NoSharedMemory),
    };
    let descriptor = DescriptorPage::parse(page).map_err(ProbeError::BadDescriptor)?;
    requirements.check_protocol(descriptor.protocol)?;
    let max_peers = requirements.check_max_peers(u32::from(descriptor.layout.max_peers))?;
    let msix = Msix::find(config, function.bdf);
    let id = match (msix, id) {
        (Some(_), _) => registers.read32(register::IVPOSITION),
        (None, Some(id)) => u32::from(id),
        (None, None) => return Err(ProbeError::NoId),
    };
    if id >= u32::from(max_peers) {
        return Err(ProbeError::BadId {
            id,
            max_peers: u32::from(max_peers),
        });
    }
    Ok(Discovered {
        id: id as u16,
        protocol: descriptor.protocol,
        sections: Sections::new(bar.address, bar.size, descriptor.layout)?,
        msix,
        vectors: msix.map_or(0, |msix| {
            msix.table_size
                .min(u16::try_from(descriptor.vectors).unwrap_or(u16::MAX))
        }),
    })
}

#[cfg(test)]
mod tests {
    use super::super::registers::fake::FakeRegisters;
    use super::*;
    use crate::pci::fake::{FakeConfigSpace, FakeFunction};
    use crate::pci::{Bdf, enumerate};
    use abi::descriptor::{DescriptorError, LENGTH};
    use abi::layout::Layout;

    const BDF: Bdf = Bdf {
        bus: 0,
        device: 3,
        function: 0,
    };

    /// What ivshmem-net asks for.
    const NET: Requirements = Requirements {
        protocol: Some(1),
        min_peers: 2,
        max_peers: 2,
    };

    /// The page our server writes for a 1 MiB region, two peers, two
    /// vectors, and `protocol`.
    fn page(protocol: u16) -> [u8; LENGTH] {
        DescriptorPage {
            vectors: 2,
            protocol,
            layout: Layout {
                state_table_offset: 0x1000,
                state_table_size: 0x1000,
                rw_section_size: 0,
                output_section_size: 0x7f000,
                max_peers: 2,
            },
        }
        .emit()
    }

    fn device(doorbell: bool) -> FakeConfigSpace {
        let mut function = FakeFunction::new(VENDOR, DEVICE, 0x0500_0001)
            .bar32(0, 0xfebf_f000, 0x100)
            .bar64(2, 0xfea0_0000, 0x10_0000);
        if doorbell {
            function = function.bar32(1, 0xfebf_e000, 0x1000).capabilities(&[(
                0x40,
                0x0001_0011,
                &[1, 0x801],
            )]);
        }
        FakeConfigSpace::default().with(BDF, function)
    }

    fn probe(
        config: &FakeConfigSpace,
        page: &[u8],
        id: Option<u16>,
    ) -> Result<Discovered, ProbeError> {
        let functions = enumerate(config);
        let mut registers = FakeRegisters::new(0, 0);
        registers.values.get_mut()[2] = 1; // IVPOSITION
        discover(config, &functions[0], page, &registers, id, NET)
    }

    #[test]
    fn doorbell_device_takes_its_id_from_ivposition() {
        let found = probe(&device(true), &page(1), None).unwrap();
        assert_eq!(found.id, 1);
        assert!(found.msix.is_some());
        assert_eq!(found.vectors, 2);
        assert_eq!(found.sections.base(), 0xfea0_0000);
        assert_eq!(found.sections.state_table().address, 0xfea0_1000);
        assert_eq!(
            found.sections.output_section(0).unwrap().address,
            0xfea0_2000
        );
        assert_eq!(
            found.sections.output_section(1).unwrap().address,
            0xfea8_1000
        );
    }

    #[test]
    fn vectors_are_those_the_descriptor_page_names() {
        // QEMU offers two vectors, the server connected one.
        let mut one = page(1);
        one[0x10] = 1;
        assert_eq!(probe(&device(true), &one, None).unwrap().vectors, 1);
        let mut many = page(1);
        many[0x10] = 64;
        assert_eq!(probe(&device(true), &many, None).unwrap().vectors, 2);
        assert_eq!(probe(&device(false), &page(1), Some(0)).unwrap().vectors, 0);
    }

    #[test]
    fn plain_device_needs_an_id_from_the_command_line() {
        assert_eq!(probe(&device(false), &page(1), None), Err(ProbeError::NoId));
        assert_eq!(probe(&device(false), &page(1), Some(0)).unwrap().id, 0);
        assert_eq!(
            probe(&device(false), &page(1), Some(2)),
            Err(ProbeError::BadId {
                id: 2,
                max_peers: 2
            })
        );
    }

    #[test]
    fn bad_descriptor_pages_are_rejected() {
        let blank = probe(&device(true), &[0; LENGTH], None);
        assert_eq!(
            blank,
            Err(ProbeError::BadDescriptor(DescriptorError::BadMagic([0; 8])))
        );
        assert!(
            blank
                .unwrap_err()
                .to_string()
                .contains("no descriptor page")
        );
        let mut version = page(1);
        version[8] = 7;
        assert_eq!(
            probe(&device(true), &version, None),
            Err(ProbeError::BadDescriptor(DescriptorError::BadVersion(7)))
        );
        assert_eq!(
            probe(&device(true), &page(0x4000), None),
            Err(ProbeError::WrongProtocol {
                found: 0x4000,
                expected: 1
            })
        );
        let mut offset = page(1);
        offset[0x18..0x20].copy_from_slice(&0x800u64.to_le_bytes());
        assert_eq!(
            probe(&device(true), &offset, None),
            Err(ProbeError::BadDescriptor(
                DescriptorError::BadStateTableOffset(0x800)
            ))
        );
        let mut large = page(1);
        large[0x30..0x38].copy_from_slice(&0x80000u64.to_le_bytes());
        assert!(matches!(
            probe(&device(true), &large, None),
            Err(ProbeError::Layout(_))
        ));
    }
}
