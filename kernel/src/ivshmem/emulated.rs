//! ivshmem-v2 emulated over QEMU's stock v1 devices: `ivshmem-doorbell`
//! (1af4:1110 with MSI-X, served by our server) and `ivshmem-plain` (no
//! interrupts). The host writes a descriptor page at the start of the shared
//! memory; the v2 layout follows it (format: README, "Descriptor page").
//!
//! Pure, like [`super::v2`]: the caller maps the page and passes its bytes.

use core::fmt;

use super::layout::Layout;
use super::v2::{ProbeError, RegisterBlock, Requirements};
use crate::pci::{ConfigAccess, Function, Msix};

/// Vendor ID of QEMU's ivshmem (Red Hat, Inc.).
pub const VENDOR: u16 = 0x1af4;
/// Device ID of `ivshmem-plain` and `ivshmem-doorbell`.
pub const DEVICE: u16 = 0x1110;

/// v1 BAR0 registers (ivshmem-v2.md §14.2).
pub mod register {
    /// Own ID, as given by the server (RO; 0 for `ivshmem-plain`).
    pub const IVPOSITION: u32 = 0x08;
    /// Bits 16–31 peer, bits 0–15 vector (WO).
    pub const DOORBELL: u32 = 0x0c;
}

/// The descriptor page's magic.
pub const MAGIC: [u8; 8] = *b"IVSHM2EM";
/// The descriptor page format this kernel reads.
pub const VERSION: u32 = 1;
/// Size of the descriptor page.
pub const PAGE_SIZE: u64 = 0x1000;
/// Bytes of the page that carry fields.
pub const DESCRIPTOR_LENGTH: usize = 0x38;

/// Why the descriptor page is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorError {
    /// The page does not start with `IVSHM2EM`: the host side did not set this memory up.
    BadMagic,
    /// An unknown format version.
    BadVersion(u32),
    /// The v2 layout does not start on a page after the descriptor page.
    BadStateTableOffset(u64),
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadMagic => write!(
                f,
                "no descriptor page (magic IVSHM2EM) at the start of the shared memory: start the VM through the launcher or our server"
            ),
            Self::BadVersion(version) => {
                write!(f, "descriptor page version {version}, expected {VERSION}")
            }
            Self::BadStateTableOffset(offset) => {
                write!(
                    f,
                    "state table offset {offset:#x} is not a page multiple of at least 0x1000"
                )
            }
        }
    }
}

/// The descriptor page's fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Descriptor {
    /// Number of peers.
    pub max_peers: u32,
    /// Interrupt vectors per peer (0 without doorbells).
    pub vectors: u32,
    /// The 16-bit protocol ID.
    pub protocol: u32,
    /// Offset of the state table from the start of the shared memory.
    pub state_table_offset: u64,
    /// State table size.
    pub state_table_size: u64,
    /// R/W section size.
    pub rw_section_size: u64,
    /// Size of ONE output section.
    pub output_section_size: u64,
}

fn u32_at(page: &[u8; DESCRIPTOR_LENGTH], offset: usize) -> u32 {
    u32::from_le_bytes([
        page[offset],
        page[offset + 1],
        page[offset + 2],
        page[offset + 3],
    ])
}

fn u64_at(page: &[u8; DESCRIPTOR_LENGTH], offset: usize) -> u64 {
    u64::from(u32_at(page, offset)) | (u64::from(u32_at(page, offset + 4)) << 32)
}

impl Descriptor {
    /// Parses the first [`DESCRIPTOR_LENGTH`] bytes of the page.
    pub fn parse(page: &[u8; DESCRIPTOR_LENGTH]) -> Result<Self, DescriptorError> {
        if page[..8] != MAGIC {
            return Err(DescriptorError::BadMagic);
        }
        let version = u32_at(page, 0x08);
        if version != VERSION {
            return Err(DescriptorError::BadVersion(version));
        }
        let descriptor = Self {
            max_peers: u32_at(page, 0x0c),
            vectors: u32_at(page, 0x10),
            protocol: u32_at(page, 0x14),
            state_table_offset: u64_at(page, 0x18),
            state_table_size: u64_at(page, 0x20),
            rw_section_size: u64_at(page, 0x28),
            output_section_size: u64_at(page, 0x30),
        };
        if descriptor.state_table_offset < PAGE_SIZE
            || !descriptor.state_table_offset.is_multiple_of(PAGE_SIZE)
        {
            return Err(DescriptorError::BadStateTableOffset(
                descriptor.state_table_offset,
            ));
        }
        Ok(descriptor)
    }
}

/// What discovery found on an emulated device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovered {
    /// Our peer ID.
    pub id: u16,
    /// The protocol from the descriptor page.
    pub protocol: u16,
    /// The v2 layout inside BAR2.
    pub layout: Layout,
    /// MSI-X (present on `ivshmem-doorbell` only).
    pub msix: Option<Msix>,
}

/// Reads the identity of a 1af4:1110 function and the descriptor page
/// `page` (the first bytes of its BAR2). `id` is the command line's `id=`,
/// needed for `ivshmem-plain`, which has no ID of its own.
pub fn discover(
    config: &dyn ConfigAccess,
    function: &Function,
    page: &[u8; DESCRIPTOR_LENGTH],
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
    let descriptor = Descriptor::parse(page).map_err(ProbeError::BadDescriptor)?;
    if descriptor.protocol != u32::from(requirements.protocol) {
        return Err(ProbeError::WrongProtocol {
            found: descriptor.protocol as u16,
            expected: requirements.protocol,
        });
    }
    if descriptor.max_peers != u32::from(requirements.max_peers) {
        return Err(ProbeError::BadMaxPeers {
            found: descriptor.max_peers,
            expected: requirements.max_peers,
        });
    }
    let msix = Msix::find(config, function.bdf);
    let id = match (msix, id) {
        (Some(_), _) => registers.read32(register::IVPOSITION),
        (None, Some(id)) => u32::from(id),
        (None, None) => return Err(ProbeError::NoId),
    };
    if id >= descriptor.max_peers {
        return Err(ProbeError::BadId {
            id,
            max_peers: descriptor.max_peers,
        });
    }
    let available = bar
        .size
        .checked_sub(descriptor.state_table_offset)
        .ok_or(ProbeError::NoSharedMemory)?;
    let layout = Layout {
        base: bar.address + descriptor.state_table_offset,
        state_table_size: descriptor.state_table_size,
        rw_section_size: descriptor.rw_section_size,
        output_section_size: descriptor.output_section_size,
        max_peers: requirements.max_peers,
    };
    layout.validate(available)?;
    Ok(Discovered {
        id: id as u16,
        protocol: requirements.protocol,
        layout,
        msix,
    })
}

#[cfg(test)]
mod tests {
    use super::super::v2::fake::FakeRegisters;
    use super::*;
    use crate::pci::fake::{FakeConfigSpace, FakeFunction};
    use crate::pci::{Bdf, enumerate};

    const BDF: Bdf = Bdf {
        bus: 0,
        device: 3,
        function: 0,
    };

    /// The page our server writes for a 1 MiB region, two peers, two vectors.
    fn page(magic: &[u8; 8], version: u32, protocol: u32) -> [u8; DESCRIPTOR_LENGTH] {
        let mut page = [0u8; DESCRIPTOR_LENGTH];
        page[..8].copy_from_slice(magic);
        page[0x08..0x0c].copy_from_slice(&version.to_le_bytes());
        page[0x0c..0x10].copy_from_slice(&2u32.to_le_bytes());
        page[0x10..0x14].copy_from_slice(&2u32.to_le_bytes());
        page[0x14..0x18].copy_from_slice(&protocol.to_le_bytes());
        page[0x18..0x20].copy_from_slice(&0x1000u64.to_le_bytes());
        page[0x20..0x28].copy_from_slice(&0x1000u64.to_le_bytes());
        page[0x28..0x30].copy_from_slice(&0u64.to_le_bytes());
        page[0x30..0x38].copy_from_slice(&0x7f000u64.to_le_bytes());
        page
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
        page: &[u8; DESCRIPTOR_LENGTH],
        id: Option<u16>,
    ) -> Result<Discovered, ProbeError> {
        let functions = enumerate(config);
        let mut registers = FakeRegisters::new(0, 0);
        registers.values.get_mut()[2] = 1; // IVPOSITION
        discover(
            config,
            &functions[0],
            page,
            &registers,
            id,
            Requirements::NET,
        )
    }

    #[test]
    fn doorbell_device_takes_its_id_from_ivposition() {
        let found = probe(&device(true), &page(&MAGIC, 1, 1), None).unwrap();
        assert_eq!(found.id, 1);
        assert!(found.msix.is_some());
        assert_eq!(found.layout.base, 0xfea0_1000);
        assert_eq!(found.layout.output_section(0).address, 0xfea0_2000);
        assert_eq!(found.layout.output_section(1).address, 0xfea8_1000);
    }

    #[test]
    fn plain_device_needs_an_id_from_the_command_line() {
        assert_eq!(
            probe(&device(false), &page(&MAGIC, 1, 1), None),
            Err(ProbeError::NoId)
        );
        assert_eq!(
            probe(&device(false), &page(&MAGIC, 1, 1), Some(0))
                .unwrap()
                .id,
            0
        );
        assert_eq!(
            probe(&device(false), &page(&MAGIC, 1, 1), Some(2)),
            Err(ProbeError::BadId {
                id: 2,
                max_peers: 2
            })
        );
    }

    #[test]
    fn bad_descriptor_pages_are_rejected() {
        let blank = probe(&device(true), &[0; DESCRIPTOR_LENGTH], None);
        assert_eq!(
            blank,
            Err(ProbeError::BadDescriptor(DescriptorError::BadMagic))
        );
        assert!(
            blank
                .unwrap_err()
                .to_string()
                .contains("no descriptor page")
        );
        let version = probe(&device(true), &page(&MAGIC, 7, 1), None);
        assert_eq!(
            version,
            Err(ProbeError::BadDescriptor(DescriptorError::BadVersion(7)))
        );
        let protocol = probe(&device(true), &page(&MAGIC, 1, 0x4000), None);
        assert_eq!(
            protocol,
            Err(ProbeError::WrongProtocol {
                found: 0x4000,
                expected: 1
            })
        );
        let mut offset = page(&MAGIC, 1, 1);
        offset[0x18..0x20].copy_from_slice(&0x800u64.to_le_bytes());
        assert_eq!(
            probe(&device(true), &offset, None),
            Err(ProbeError::BadDescriptor(
                DescriptorError::BadStateTableOffset(0x800)
            ))
        );
    }
}
