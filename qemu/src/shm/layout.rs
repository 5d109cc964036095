//! The layout of one shared-memory region: the ivshmem-v2 sections
//! ([`abi::layout::Layout`], `docs/ivshmem-v2.md` §6.1), whether our
//! descriptor page comes first (`docs/descriptor-page.md`), and how small a
//! region ivshmem-net can use (asked of [`netdev`]).

use std::fmt;

use abi::descriptor::DescriptorPage;
use abi::layout::{Layout, PAGE_SIZE};

/// Size of the state table (fixed, as in QEMU's ivshmem2).
pub const STATE_TABLE_SIZE: u64 = 0x1000;
/// Size of the descriptor page.
pub const DESCRIPTOR_PAGE_SIZE: u64 = PAGE_SIZE;
/// The ivshmem-v2 protocol ID of ivshmem-net.
pub const PROTOCOL_NET: u16 = 0x0001;
/// Largest peer count supported (the state table has room for 1024, but the
/// v2 server protocol and this project never need more).
pub const MAX_PEERS: u32 = 16;

/// Whether an output section of `size` bytes carries ivshmem-net at an MTU
/// of 1500, as the protocol engine decides: [`netdev::Layout`] must fit its
/// rings into the section, and its largest MTU (Linux's rule, a quarter of
/// the data area, [`netdev::Layout::max_mtu`]) must reach 1500.
pub const fn net_output_section_fits(size: u64) -> bool {
    if size > usize::MAX as u64 {
        return false;
    }
    match netdev::Layout::new(size as usize) {
        Ok(layout) => layout.max_mtu() >= netdev::ETHERNET_MTU,
        Err(_) => false,
    }
}

/// The smallest page multiple for which [`net_output_section_fits`].
pub const NET_MIN_OUTPUT_SECTION: u64 = {
    let mut size = PAGE_SIZE;
    while !net_output_section_fits(size) {
        size += PAGE_SIZE;
    }
    size
};

/// A layout that cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LayoutError {
    /// The shared memory size is not a power of two ≥ 4 KiB.
    #[error("shared memory size {0:#x} must be a power of two of at least 4 KiB")]
    BadSize(u64),
    /// Peer count out of range.
    #[error("max peers {0} out of range 2..={MAX_PEERS}")]
    BadPeers(u32),
    /// ivshmem-net needs exactly two peers.
    #[error("protocol 0x0001 (ivshmem-net) needs exactly 2 peers, not {0}")]
    NetPeers(u32),
    /// Vector count out of range.
    #[error("vectors {0} out of range 0..=64")]
    BadVectors(u32),
    /// The sections do not fit or are misaligned.
    #[error(transparent)]
    Sections(#[from] abi::layout::LayoutError),
    /// Output section too small for ivshmem-net.
    #[error(
        "output section size {size:#x} too small for ivshmem-net (needs at least {minimum:#x})"
    )]
    NetOutputTooSmall {
        /// The output section size.
        size: u64,
        /// [`NET_MIN_OUTPUT_SECTION`].
        minimum: u64,
    },
    /// A descriptor page that our host side would not have written for a
    /// region of this size.
    #[error("the descriptor page ({page:?}) does not match a {size:#x}-byte region")]
    Mismatch {
        /// The page found.
        page: DescriptorPage,
        /// The region's size.
        size: u64,
    },
}

/// Where everything lives in one shared-memory region: the ivshmem-v2
/// sections ([`abi::layout::Layout`]) and the facts only the host needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmLayout {
    /// Total size of the shared memory (a power of two).
    pub shm_size: u64,
    /// Whether a descriptor page precedes the sections (v1 devices).
    pub descriptor_page: bool,
    /// Interrupt vectors per peer.
    pub vectors: u32,
    /// The 16-bit protocol ID.
    pub protocol: u16,
    /// The sections, relative to the start of the shared memory.
    pub sections: Layout,
}

impl ShmLayout {
    /// Computes and validates a layout.
    ///
    /// `output_section = None` picks the largest page multiple that fits:
    /// `(shm_size − descriptor page − state table) / max_peers`, rounded down
    /// to 4 KiB. The R/W section gets what is left ([`Layout::fill`]).
    pub fn new(
        shm_size: u64,
        descriptor_page: bool,
        max_peers: u32,
        vectors: u32,
        protocol: u16,
        output_section: Option<u64>,
    ) -> Result<ShmLayout, LayoutError> {
        if !shm_size.is_power_of_two() || shm_size < PAGE_SIZE {
            return Err(LayoutError::BadSize(shm_size));
        }
        if !(2..=MAX_PEERS).contains(&max_peers) {
            return Err(LayoutError::BadPeers(max_peers));
        }
        if protocol == PROTOCOL_NET && max_peers != 2 {
            return Err(LayoutError::NetPeers(max_peers));
        }
        if vectors > 64 {
            return Err(LayoutError::BadVectors(vectors));
        }
        let state_table_offset = if descriptor_page {
            DESCRIPTOR_PAGE_SIZE
        } else {
            0
        };
        let sections = Layout::fill(
            shm_size,
            state_table_offset,
            STATE_TABLE_SIZE,
            max_peers as u16,
            output_section,
        )?;
        if protocol == PROTOCOL_NET && !net_output_section_fits(sections.output_section_size) {
            return Err(LayoutError::NetOutputTooSmall {
                size: sections.output_section_size,
                minimum: NET_MIN_OUTPUT_SECTION,
            });
        }
        Ok(ShmLayout {
            shm_size,
            descriptor_page,
            vectors,
            protocol,
            sections,
        })
    }

    /// The layout a descriptor page describes for a region of `shm_size`
    /// bytes, if it is exactly the one [`ShmLayout::new`] makes for that
    /// size and the page's peers, vectors, protocol and output section size.
    pub fn from_descriptor(shm_size: u64, page: DescriptorPage) -> Result<ShmLayout, LayoutError> {
        let layout = ShmLayout::new(
            shm_size,
            true,
            u32::from(page.layout.max_peers),
            page.vectors,
            page.protocol,
            Some(page.layout.output_section_size),
        )?;
        if layout.descriptor() != Some(page) {
            return Err(LayoutError::Mismatch {
                page,
                size: shm_size,
            });
        }
        Ok(layout)
    }

    /// The smallest shared memory (a power of two) that holds an
    /// ivshmem-net link, with or without a descriptor page.
    pub fn net_minimum(descriptor_page: bool) -> u64 {
        let fixed = if descriptor_page {
            DESCRIPTOR_PAGE_SIZE
        } else {
            0
        } + STATE_TABLE_SIZE;
        (fixed + 2 * NET_MIN_OUTPUT_SECTION).next_power_of_two()
    }

    /// The IP MTU a kernel (or a Linux peer) picks by default on this
    /// ivshmem-net layout: Linux's rule, `min(16384, data area / 16)`
    /// ([`netdev::Config::mtu`], `docs/ivshmem-net.md` §4). `None` if the
    /// output sections cannot carry the protocol.
    pub fn net_default_mtu(&self) -> Option<usize> {
        let section = usize::try_from(self.sections.output_section_size).ok()?;
        let layout = netdev::Layout::new(section).ok()?;
        Some(netdev::Config::new(0, 1, [2, 0, 0, 0, 0, 0]).mtu_for(&layout))
    }

    /// The IP MTU an ivshmem-net link over `shm_size` bytes of shared memory
    /// with a descriptor page (what our server and the launcher make) takes
    /// by default, as the kernel and the bridge pick it; `None` if that size
    /// cannot carry the protocol.
    pub fn net_default_mtu_for(shm_size: u64) -> Option<usize> {
        Self::new(shm_size, true, 2, 0, PROTOCOL_NET, None)
            .ok()?
            .net_default_mtu()
    }

    /// Maximum number of peers.
    pub fn max_peers(&self) -> u32 {
        u32::from(self.sections.max_peers)
    }

    /// Offset of peer `id`'s u32 in the state table.
    ///
    /// # Panics
    ///
    /// If `id` is not one of the layout's peers.
    pub fn state_offset(&self, id: u16) -> u64 {
        self.sections
            .state_entry(id)
            .unwrap_or_else(|| panic!("peer {id} out of range"))
    }

    /// The descriptor page for this layout, if it has one.
    pub fn descriptor(&self) -> Option<DescriptorPage> {
        self.descriptor_page.then_some(DescriptorPage {
            vectors: self.vectors,
            protocol: self.protocol,
            layout: self.sections,
        })
    }
}

impl fmt::Display for ShmLayout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let descriptor = if self.descriptor_page {
            "descriptor page 0x0+0x1000, "
        } else {
            ""
        };
        write!(f, "shm {:#x}: {descriptor}{}", self.shm_size, self.sections)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn net_minimum_comes_from_the_engine() {
        // 0x1000 holds netdev's rings, but a quarter of its data area
        // (0x900) is below 1500, so the engine refuses that MTU there.
        assert!(netdev::Layout::new(0x1000).is_ok());
        assert!(!net_output_section_fits(0x1000));
        assert_eq!(NET_MIN_OUTPUT_SECTION, 0x2000);
        assert_eq!(ShmLayout::net_minimum(true), 0x8000);
        assert_eq!(ShmLayout::net_minimum(false), 0x8000);
    }

    #[test]
    fn default_layouts() {
        // v1 (descriptor page), 1 MiB, 2 peers: (0x100000 - 0x2000) / 2 = 0x7f000.
        let l = ShmLayout::new(1 << 20, true, 2, 2, 1, None).unwrap();
        assert_eq!(l.sections.output_section_size, 0x7f000);
        assert_eq!(l.sections.rw_section_size, 0);
        assert_eq!(l.sections.state_table_offset, 0x1000);
        assert_eq!(l.sections.output_section(0).unwrap().offset, 0x2000);
        assert_eq!(l.sections.output_section(1).unwrap().offset, 0x81000);
        assert_eq!(l.sections.end(), 1 << 20);
        // v2 (no descriptor page): (0x100000 - 0x1000) / 2 rounded down = 0x7f000.
        let l = ShmLayout::new(1 << 20, false, 2, 2, 1, None).unwrap();
        assert_eq!(l.sections.output_section_size, 0x7f000);
        assert_eq!(l.sections.rw_section_size, 0x1000);
        assert_eq!(l.state_offset(1), 4);
        assert_eq!(l.sections.output_section(0).unwrap().offset, 0x2000);
        assert!(l.descriptor().is_none());
        // Explicit output section: the rest goes to R/W.
        let l = ShmLayout::new(1 << 20, true, 2, 2, 1, Some(0x10000)).unwrap();
        assert_eq!(l.sections.rw_section_size, 0x100000 - 0x2000 - 0x20000);
        // Odd peer counts round down to pages.
        let l = ShmLayout::new(1 << 16, false, 3, 1, 0, None).unwrap();
        assert_eq!(l.sections.output_section_size, 0x5000);
        assert_eq!(l.sections.rw_section_size, 0x10000 - 0x1000 - 0xf000);
    }

    #[test]
    fn layout_validation() {
        use LayoutError::*;
        use abi::layout::LayoutError as Sections;
        let new = |size, peers, vectors, protocol, output| {
            ShmLayout::new(size, true, peers, vectors, protocol, output)
        };
        assert_eq!(new(3 << 20, 2, 2, 1, None), Err(BadSize(3 << 20)));
        assert_eq!(new(0x800, 2, 2, 0, None), Err(BadSize(0x800)));
        assert_eq!(new(1 << 20, 1, 2, 0, None), Err(BadPeers(1)));
        assert_eq!(new(1 << 20, 17, 2, 0, None), Err(BadPeers(17)));
        assert_eq!(new(1 << 20, 3, 2, 1, None), Err(NetPeers(3)));
        assert_eq!(new(1 << 20, 2, 65, 0, None), Err(BadVectors(65)));
        assert!(matches!(
            new(1 << 20, 2, 2, 1, Some(0x1800)),
            Err(Sections(Sections::NotPageAligned { value: 0x1800, .. }))
        ));
        let too_small = Err(NetOutputTooSmall {
            size: 0x1000,
            minimum: 0x2000,
        });
        assert_eq!(new(1 << 20, 2, 2, 1, Some(0x1000)), too_small);
        assert!(matches!(
            new(1 << 20, 2, 2, 1, Some(0x80000)),
            Err(Sections(Sections::TooLarge { .. }))
        ));
        // 16 KiB with a descriptor page: (0x4000 - 0x2000) / 2 = 0x1000 < 0x2000.
        assert_eq!(new(0x4000, 2, 2, 1, None), too_small);
        assert!(matches!(new(0x1000, 2, 2, 0, None), Err(Sections(_))));
        assert!(new(0x8000, 2, 2, 1, None).is_ok());
    }

    #[test]
    fn descriptor_pages_round_trip() {
        let layout = ShmLayout::new(1 << 20, true, 2, 0, 1, None).unwrap();
        let page = layout.descriptor().unwrap();
        let bytes = page.emit();
        assert_eq!(DescriptorPage::parse(&bytes), Ok(page));
        assert_eq!(ShmLayout::from_descriptor(1 << 20, page), Ok(layout));
        assert!(matches!(
            ShmLayout::from_descriptor(2 << 20, page),
            Err(LayoutError::Mismatch {
                size: 0x20_0000,
                ..
            })
        ));
    }
}
