//! The ivshmem-v2 shared-memory layout (ivshmem-v2.md §6.1), however the
//! device reported it: state table, R/W section, one output section per peer.

use core::fmt;

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

/// The sections of one ivshmem-v2 link.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Where the state table starts.
    pub base: u64,
    /// State table size.
    pub state_table_size: u64,
    /// R/W section size (may be 0).
    pub rw_section_size: u64,
    /// Size of ONE output section.
    pub output_section_size: u64,
    /// Number of peers (output sections).
    pub max_peers: u16,
}

/// Why a layout is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The state table cannot hold one u32 per peer.
    StateTableTooSmall {
        /// Its size.
        size: u64,
        /// Peers it must hold.
        peers: u16,
    },
    /// No output sections.
    NoOutputSection,
    /// A section size is not a multiple of 4 KiB (pages are the unit of protection).
    NotPageAligned {
        /// The offending size.
        size: u64,
    },
    /// The sections do not fit the shared memory.
    TooLarge {
        /// Bytes the sections need.
        needed: u64,
        /// Bytes available.
        available: u64,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::StateTableTooSmall { size, peers } => {
                write!(
                    f,
                    "state table of {size:#x} bytes cannot hold {peers} peers"
                )
            }
            Self::NoOutputSection => write!(f, "output section size is 0"),
            Self::NotPageAligned { size } => {
                write!(f, "section size {size:#x} is not a multiple of 4 KiB")
            }
            Self::TooLarge { needed, available } => {
                write!(
                    f,
                    "sections need {needed:#x} bytes but the shared memory has {available:#x}"
                )
            }
        }
    }
}

impl Layout {
    /// Checks the layout against `available` bytes of shared memory starting at `base`.
    pub fn validate(&self, available: u64) -> Result<(), LayoutError> {
        if self.state_table_size < 4 * u64::from(self.max_peers) {
            return Err(LayoutError::StateTableTooSmall {
                size: self.state_table_size,
                peers: self.max_peers,
            });
        }
        if self.output_section_size == 0 {
            return Err(LayoutError::NoOutputSection);
        }
        for size in [
            self.state_table_size,
            self.rw_section_size,
            self.output_section_size,
        ] {
            if size % 0x1000 != 0 {
                return Err(LayoutError::NotPageAligned { size });
            }
        }
        let needed = u64::from(self.max_peers)
            .checked_mul(self.output_section_size)
            .and_then(|outputs| outputs.checked_add(self.state_table_size))
            .and_then(|total| total.checked_add(self.rw_section_size))
            .unwrap_or(u64::MAX);
        if needed > available || self.base.checked_add(needed).is_none() {
            return Err(LayoutError::TooLarge { needed, available });
        }
        Ok(())
    }

    /// The state table.
    pub fn state_table(&self) -> Region {
        Region {
            address: self.base,
            size: self.state_table_size,
        }
    }

    /// The R/W section.
    pub fn rw_section(&self) -> Region {
        Region {
            address: self.base + self.state_table_size,
            size: self.rw_section_size,
        }
    }

    /// The output section of `peer` (`peer < max_peers`).
    pub fn output_section(&self, peer: u16) -> Region {
        let offset = self.state_table_size
            + self.rw_section_size
            + u64::from(peer) * self.output_section_size;
        Region {
            address: self.base + offset,
            size: self.output_section_size,
        }
    }

    /// The end of the last output section.
    pub fn end(&self) -> u64 {
        self.output_section(self.max_peers).address
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jailhouse_net(base: u64) -> Layout {
        Layout {
            base,
            state_table_size: 0x1000,
            rw_section_size: 0,
            output_section_size: 0x7f000,
            max_peers: 2,
        }
    }

    #[test]
    fn sections_follow_each_other() {
        let layout = jailhouse_net(0x3f10_0000);
        assert_eq!(layout.validate(0xf_f000), Ok(()));
        assert_eq!(
            layout.state_table(),
            Region {
                address: 0x3f10_0000,
                size: 0x1000
            }
        );
        assert_eq!(
            layout.output_section(0),
            Region {
                address: 0x3f10_1000,
                size: 0x7f000
            }
        );
        assert_eq!(
            layout.output_section(1),
            Region {
                address: 0x3f18_0000,
                size: 0x7f000
            }
        );
        assert_eq!(layout.end(), 0x3f1f_f000);
    }

    #[test]
    fn bad_layouts_are_rejected() {
        let layout = jailhouse_net(0);
        assert_eq!(
            layout.validate(0xf_e000),
            Err(LayoutError::TooLarge {
                needed: 0xf_f000,
                available: 0xf_e000
            })
        );
        let layout = Layout {
            output_section_size: 0,
            ..jailhouse_net(0)
        };
        assert_eq!(layout.validate(u64::MAX), Err(LayoutError::NoOutputSection));
        let layout = Layout {
            state_table_size: 4,
            ..jailhouse_net(0)
        };
        assert_eq!(
            layout.validate(u64::MAX),
            Err(LayoutError::StateTableTooSmall { size: 4, peers: 2 })
        );
        let layout = Layout {
            rw_section_size: 0x800,
            ..jailhouse_net(0)
        };
        assert_eq!(
            layout.validate(u64::MAX),
            Err(LayoutError::NotPageAligned { size: 0x800 })
        );
        let layout = Layout {
            output_section_size: 1 << 63,
            ..jailhouse_net(0)
        };
        assert!(matches!(
            layout.validate(u64::MAX - 1),
            Err(LayoutError::TooLarge { .. })
        ));
    }
}
