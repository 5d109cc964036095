//! Where a device's ivshmem-v2 sections are in physical memory: abi's
//! [`Layout`] (offsets from the start of the shared memory and their
//! validation, docs/ivshmem-v2.md §6.1) plus the physical address of that
//! start.

use core::fmt;

pub use abi::layout::{Layout, LayoutError, Section};

/// A physical range of shared memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Region {
    /// Physical address of the first byte.
    pub address: u64,
    /// Size in bytes.
    pub size: u64,
}

impl fmt::Display for Region {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.address, self.size)
    }
}

/// The validated sections of one device, at their physical addresses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sections {
    base: u64,
    layout: Layout,
}

impl Sections {
    /// Validates `layout` against `size` bytes of shared memory starting at
    /// the physical address `base` (docs/ivshmem-v2.md §6.1).
    ///
    /// # Errors
    ///
    /// As [`Layout::validate`]; a layout whose end would overflow the
    /// address space does not fit either.
    pub fn new(base: u64, size: u64, layout: Layout) -> Result<Self, LayoutError> {
        layout.validate(size.min(u64::MAX - base))?;
        Ok(Self { base, layout })
    }

    /// The physical address of the start of the shared memory (where the
    /// layout's offsets count from).
    pub fn base(&self) -> u64 {
        self.base
    }

    /// The layout, with offsets relative to [`base`](Self::base).
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Peers on the link, including us.
    pub fn max_peers(&self) -> u16 {
        self.layout.max_peers
    }

    fn region(&self, section: Section) -> Region {
        Region {
            address: self.base + section.offset,
            size: section.size,
        }
    }

    /// The state table.
    pub fn state_table(&self) -> Region {
        self.region(self.layout.state_table())
    }

    /// The R/W section (possibly empty).
    pub fn rw_section(&self) -> Region {
        self.region(self.layout.rw_section())
    }

    /// The output section of `peer`, if it is one of the link's peers.
    pub fn output_section(&self, peer: u16) -> Option<Region> {
        self.layout
            .output_section(peer)
            .map(|section| self.region(section))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `JAILHOUSE_SHMEM_NET_REGIONS`: 1 MiB window, no R/W section.
    const JAILHOUSE_NET: Layout = Layout {
        state_table_offset: 0,
        state_table_size: 0x1000,
        rw_section_size: 0,
        output_section_size: 0x7f000,
        max_peers: 2,
    };

    #[test]
    fn sections_are_offsets_from_the_base() {
        let sections = Sections::new(0x3f10_0000, 0xf_f000, JAILHOUSE_NET).unwrap();
        assert_eq!(
            sections.state_table(),
            Region {
                address: 0x3f10_0000,
                size: 0x1000
            }
        );
        assert_eq!(sections.rw_section().size, 0);
        assert_eq!(
            sections.output_section(0),
            Some(Region {
                address: 0x3f10_1000,
                size: 0x7f000
            })
        );
        assert_eq!(
            sections.output_section(1).map(|region| region.address),
            Some(0x3f18_0000)
        );
        assert_eq!(sections.output_section(2), None);
        // Our descriptor page first: the state table follows it.
        let emulated = Layout {
            state_table_offset: 0x1000,
            output_section_size: 0x7e000,
            ..JAILHOUSE_NET
        };
        let sections = Sections::new(0xfe00_0000, 0x10_0000, emulated).unwrap();
        assert_eq!(sections.state_table().address, 0xfe00_1000);
        assert_eq!(
            sections.output_section(1).map(|region| region.address),
            Some(0xfe08_0000)
        );
    }

    #[test]
    fn a_layout_must_fit_the_memory_and_the_address_space() {
        assert!(matches!(
            Sections::new(0, 0xf_e000, JAILHOUSE_NET),
            Err(LayoutError::TooLarge { .. })
        ));
        // A Base Address without a size (Jailhouse) still may not wrap.
        assert!(matches!(
            Sections::new(u64::MAX - 0x1_0000, u64::MAX, JAILHOUSE_NET),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(Sections::new(u64::MAX - 0xf_f000, u64::MAX, JAILHOUSE_NET).is_ok());
    }
}
