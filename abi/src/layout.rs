//! The ivshmem-v2 shared-memory layout (`docs/ivshmem-v2.md` §6.1): the
//! state table, the R/W section, then one output section per peer, all sizes
//! multiples of 4 KiB.
//!
//! Offsets here are relative to the start of the shared memory the device
//! exposes (BAR2, or the capability's Base Address on Jailhouse). With a real
//! ivshmem-v2 device the state table is at offset 0; on QEMU's v1 devices our
//! descriptor page comes first and the state table follows it
//! (`docs/descriptor-page.md`). The kernel adds the physical base; the host
//! adds its mapping's address.

use core::fmt;

/// The unit of protection: every section size is a multiple of it.
pub const PAGE_SIZE: u64 = 0x1000;

/// A byte range of the shared memory, relative to its start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Section {
    /// Offset of the first byte.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
}

impl Section {
    /// The offset just past the last byte.
    ///
    /// # Panics
    ///
    /// Never for a section of a layout that passed [`Layout::validate`].
    pub const fn end(&self) -> u64 {
        self.offset + self.size
    }
}

impl fmt::Display for Section {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:#x}+{:#x}", self.offset, self.size)
    }
}

/// The sections of one ivshmem-v2 link.
///
/// Build one from what the device reports (or what the descriptor page
/// says), then [`validate`](Self::validate) it against the size of the
/// shared memory before using any offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Where the state table starts (0 on a real ivshmem-v2 device).
    pub state_table_offset: u64,
    /// State table size: one little-endian `u32` per peer, rest unused.
    pub state_table_size: u64,
    /// R/W section size (may be 0).
    pub rw_section_size: u64,
    /// Size of ONE output section.
    pub output_section_size: u64,
    /// Number of peers, hence of output sections.
    pub max_peers: u16,
}

/// Why a layout cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// No peers at all.
    NoPeers,
    /// The state table cannot hold one `u32` per peer.
    StateTableTooSmall {
        /// Its size in bytes.
        size: u64,
        /// Peers it must hold.
        peers: u16,
    },
    /// The output section size is 0.
    NoOutputSection,
    /// An offset or size is not a multiple of 4 KiB.
    NotPageAligned {
        /// Which value.
        what: &'static str,
        /// The value.
        value: u64,
    },
    /// The sections do not fit into the shared memory.
    TooLarge {
        /// Bytes the layout needs from the start of the shared memory.
        needed: u64,
        /// Bytes the shared memory has.
        available: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::NoPeers => f.write_str("the layout has no peers"),
            Self::StateTableTooSmall { size, peers } => {
                write!(
                    f,
                    "state table of {size:#x} bytes cannot hold {peers} peers"
                )
            }
            Self::NoOutputSection => f.write_str("output section size is 0"),
            Self::NotPageAligned { what, value } => {
                write!(f, "{what} {value:#x} is not a multiple of 4 KiB")
            }
            Self::TooLarge { needed, available } => write!(
                f,
                "the sections need {needed:#x} bytes but the shared memory has {available:#x}"
            ),
        }
    }
}

impl core::error::Error for LayoutError {}

impl Layout {
    /// Lays out `available` bytes of shared memory with the state table at
    /// `state_table_offset` and `max_peers` output sections of
    /// `output_section_size` bytes, or, if `None`, of the largest page
    /// multiple that fits. The R/W section gets what is left (QEMU's
    /// ivshmem2 does the same, `docs/ivshmem-v2.md` §6.2).
    ///
    /// # Errors
    ///
    /// As for [`validate`](Self::validate).
    pub fn fill(
        available: u64,
        state_table_offset: u64,
        state_table_size: u64,
        max_peers: u16,
        output_section_size: Option<u64>,
    ) -> Result<Self, LayoutError> {
        if max_peers == 0 {
            return Err(LayoutError::NoPeers);
        }
        let fixed = state_table_offset.saturating_add(state_table_size);
        let output_section_size = output_section_size.unwrap_or_else(|| {
            (available.saturating_sub(fixed) / u64::from(max_peers)) & !(PAGE_SIZE - 1)
        });
        let outputs = output_section_size.saturating_mul(u64::from(max_peers));
        let layout = Self {
            state_table_offset,
            state_table_size,
            rw_section_size: available.saturating_sub(fixed).saturating_sub(outputs),
            output_section_size,
            max_peers,
        };
        layout.validate(available)?;
        Ok(layout)
    }

    /// Checks the layout against `available` bytes of shared memory: at
    /// least one peer, a state table that holds one `u32` per peer, a
    /// non-empty output section, every offset and size a multiple of 4 KiB,
    /// and everything inside `available` without overflow.
    ///
    /// # Errors
    ///
    /// The first [`LayoutError`] found.
    pub fn validate(&self, available: u64) -> Result<(), LayoutError> {
        if self.max_peers == 0 {
            return Err(LayoutError::NoPeers);
        }
        if self.state_table_size < 4 * u64::from(self.max_peers) {
            return Err(LayoutError::StateTableTooSmall {
                size: self.state_table_size,
                peers: self.max_peers,
            });
        }
        if self.output_section_size == 0 {
            return Err(LayoutError::NoOutputSection);
        }
        for (what, value) in [
            ("state table offset", self.state_table_offset),
            ("state table size", self.state_table_size),
            ("R/W section size", self.rw_section_size),
            ("output section size", self.output_section_size),
        ] {
            if value % PAGE_SIZE != 0 {
                return Err(LayoutError::NotPageAligned { what, value });
            }
        }
        let needed = u64::from(self.max_peers)
            .checked_mul(self.output_section_size)
            .and_then(|outputs| outputs.checked_add(self.state_table_size))
            .and_then(|total| total.checked_add(self.rw_section_size))
            .and_then(|total| total.checked_add(self.state_table_offset));
        match needed {
            Some(needed) if needed <= available => {}
            // An overflow needs more than any memory has.
            _ => {
                return Err(LayoutError::TooLarge {
                    needed: needed.unwrap_or(u64::MAX),
                    available,
                });
            }
        }
        Ok(())
    }

    /// The state table.
    pub const fn state_table(&self) -> Section {
        Section {
            offset: self.state_table_offset,
            size: self.state_table_size,
        }
    }

    /// The offset of `peer`'s `u32` in the state table, if `peer` is one of
    /// the layout's peers.
    pub const fn state_entry(&self, peer: u16) -> Option<u64> {
        if peer < self.max_peers {
            Some(self.state_table_offset + 4 * peer as u64)
        } else {
            None
        }
    }

    /// The R/W section (possibly empty).
    pub const fn rw_section(&self) -> Section {
        Section {
            offset: self.state_table_offset + self.state_table_size,
            size: self.rw_section_size,
        }
    }

    /// The output section of `peer`, if `peer` is one of the layout's peers.
    pub const fn output_section(&self, peer: u16) -> Option<Section> {
        if peer >= self.max_peers {
            return None;
        }
        Some(Section {
            offset: self.state_table_offset
                + self.state_table_size
                + self.rw_section_size
                + peer as u64 * self.output_section_size,
            size: self.output_section_size,
        })
    }

    /// The offset just past the last output section.
    pub const fn end(&self) -> u64 {
        self.state_table_offset
            + self.state_table_size
            + self.rw_section_size
            + self.max_peers as u64 * self.output_section_size
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "state table {}, R/W section {}, {} output sections of {:#x} from {:#x}",
            self.state_table(),
            self.rw_section(),
            self.max_peers,
            self.output_section_size,
            self.rw_section().end()
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    /// `JAILHOUSE_SHMEM_NET_REGIONS`: 1 MiB window, no R/W section.
    const JAILHOUSE_NET: Layout = Layout {
        state_table_offset: 0,
        state_table_size: 0x1000,
        rw_section_size: 0,
        output_section_size: 0x7f000,
        max_peers: 2,
    };

    #[test]
    fn sections_follow_each_other() {
        let layout = JAILHOUSE_NET;
        assert_eq!(layout.validate(0xf_f000), Ok(()));
        assert_eq!(
            layout.state_table(),
            Section {
                offset: 0,
                size: 0x1000
            }
        );
        assert_eq!(layout.state_entry(1), Some(4));
        assert_eq!(layout.state_entry(2), None);
        assert_eq!(layout.rw_section().size, 0);
        assert_eq!(
            layout.output_section(0),
            Some(Section {
                offset: 0x1000,
                size: 0x7f000
            })
        );
        assert_eq!(layout.output_section(1).unwrap().offset, 0x80000);
        assert_eq!(layout.output_section(2), None);
        assert_eq!(layout.end(), 0xf_f000);
        assert_eq!(
            layout.to_string(),
            "state table 0x0+0x1000, R/W section 0x1000+0x0, 2 output sections of 0x7f000 from 0x1000"
        );
    }

    #[test]
    fn bad_layouts_are_rejected() {
        assert_eq!(
            JAILHOUSE_NET.validate(0xf_e000),
            Err(LayoutError::TooLarge {
                needed: 0xf_f000,
                available: 0xf_e000
            })
        );
        let check = |layout: Layout| layout.validate(u64::MAX);
        assert_eq!(
            check(Layout {
                output_section_size: 0,
                ..JAILHOUSE_NET
            }),
            Err(LayoutError::NoOutputSection)
        );
        assert_eq!(
            check(Layout {
                max_peers: 0,
                ..JAILHOUSE_NET
            }),
            Err(LayoutError::NoPeers)
        );
        assert_eq!(
            check(Layout {
                state_table_size: 4,
                ..JAILHOUSE_NET
            }),
            Err(LayoutError::StateTableTooSmall { size: 4, peers: 2 })
        );
        assert_eq!(
            check(Layout {
                rw_section_size: 0x800,
                ..JAILHOUSE_NET
            }),
            Err(LayoutError::NotPageAligned {
                what: "R/W section size",
                value: 0x800
            })
        );
        assert_eq!(
            check(Layout {
                state_table_offset: 0x800,
                ..JAILHOUSE_NET
            }),
            Err(LayoutError::NotPageAligned {
                what: "state table offset",
                value: 0x800
            })
        );
        assert!(matches!(
            Layout {
                output_section_size: 1 << 63,
                ..JAILHOUSE_NET
            }
            .validate(u64::MAX - 1),
            Err(LayoutError::TooLarge { .. })
        ));
        assert!(matches!(
            Layout {
                state_table_offset: !(PAGE_SIZE - 1),
                ..JAILHOUSE_NET
            }
            .validate(u64::MAX),
            Err(LayoutError::TooLarge { .. })
        ));
    }

    #[test]
    fn fill_takes_the_largest_output_sections() {
        // Our server's v1 layout: descriptor page, state table, two sections.
        let layout = Layout::fill(1 << 20, 0x1000, 0x1000, 2, None).unwrap();
        assert_eq!(layout.output_section_size, 0x7f000);
        assert_eq!(layout.rw_section_size, 0);
        assert_eq!(layout.output_section(1).unwrap().offset, 0x81000);
        assert_eq!(layout.end(), 1 << 20);
        // The QEMU fork's v2 layout: the state table at 0, R/W gets the rest.
        let layout = Layout::fill(1 << 20, 0, 0x1000, 2, None).unwrap();
        assert_eq!(layout.output_section_size, 0x7f000);
        assert_eq!(layout.rw_section_size, 0x1000);
        // A given output section size: the rest goes to R/W.
        let layout = Layout::fill(1 << 20, 0x1000, 0x1000, 2, Some(0x10000)).unwrap();
        assert_eq!(layout.rw_section_size, 0x10_0000 - 0x2000 - 0x20000);
        // Odd peer counts round down to pages.
        let layout = Layout::fill(1 << 16, 0, 0x1000, 3, None).unwrap();
        assert_eq!(layout.output_section_size, 0x5000);
        assert_eq!(layout.rw_section_size, 0x1_0000 - 0x1000 - 0xf000);
        // Too small or unaligned requests.
        assert!(matches!(
            Layout::fill(1 << 20, 0x1000, 0x1000, 2, Some(0x80000)),
            Err(LayoutError::TooLarge { .. })
        ));
        assert_eq!(
            Layout::fill(1 << 20, 0x1000, 0x1000, 2, Some(0x1800)),
            Err(LayoutError::NotPageAligned {
                what: "output section size",
                value: 0x1800
            })
        );
        assert_eq!(
            Layout::fill(0x2000, 0x1000, 0x1000, 2, None),
            Err(LayoutError::NoOutputSection)
        );
        assert_eq!(
            Layout::fill(0x2000, 0x1000, 0x1000, 0, None),
            Err(LayoutError::NoPeers)
        );
    }
}
