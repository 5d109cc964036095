//! The descriptor page: how our host side tells a guest on QEMU's stock v1
//! devices (`ivshmem-doorbell`, `ivshmem-plain`) where the ivshmem-v2
//! sections are (`docs/descriptor-page.md`).
//!
//! The page sits at offset 0 of the shared memory; all fields are
//! little-endian:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0x00 | `[u8; 8]` | magic `IVSHM2EM` |
//! | 0x08 | u32 | version = 1 |
//! | 0x0C | u32 | max peers |
//! | 0x10 | u32 | vectors (0 for `ivshmem-plain`) |
//! | 0x14 | u32 | protocol (a 16-bit ivshmem-v2 protocol ID) |
//! | 0x18 | u64 | state table offset (a page multiple ≥ 0x1000) |
//! | 0x20 | u64 | state table size |
//! | 0x28 | u64 | R/W section size |
//! | 0x30 | u64 | output section size (one section) |
//!
//! The rest of the page is zero. [`DescriptorPage::parse`] makes every check
//! that does not need the size of the shared memory; the
//! [`Layout`] it yields is then validated against that
//! size by its user.

use core::fmt;

use crate::layout::{Layout, PAGE_SIZE};
use crate::le::{u32_at, u64_at};

/// The magic at offset 0.
pub const MAGIC: [u8; 8] = *b"IVSHM2EM";
/// The format version this crate reads and writes.
pub const VERSION: u32 = 1;
/// Bytes at the start of the page that carry fields.
pub const LENGTH: usize = 0x38;

/// Field byte ranges within the page.
mod field {
    use core::ops::Range;
    pub const MAGIC: Range<usize> = 0x00..0x08;
    pub const VERSION: Range<usize> = 0x08..0x0C;
    pub const MAX_PEERS: Range<usize> = 0x0C..0x10;
    pub const VECTORS: Range<usize> = 0x10..0x14;
    pub const PROTOCOL: Range<usize> = 0x14..0x18;
    pub const STATE_TABLE_OFFSET: Range<usize> = 0x18..0x20;
    pub const STATE_TABLE_SIZE: Range<usize> = 0x20..0x28;
    pub const RW_SECTION_SIZE: Range<usize> = 0x28..0x30;
    pub const OUTPUT_SECTION_SIZE: Range<usize> = 0x30..0x38;
}

/// The descriptor page's contents.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorPage {
    /// Interrupt vectors per peer (0 when there are no doorbells).
    pub vectors: u32,
    /// The 16-bit ivshmem-v2 protocol ID (0x0001 = ivshmem-net).
    pub protocol: u16,
    /// Where the sections are, relative to the start of the shared memory.
    pub layout: Layout,
}

/// Why a descriptor page cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DescriptorError {
    /// Fewer than [`LENGTH`] bytes were given.
    Truncated {
        /// Bytes given.
        length: usize,
    },
    /// The page does not start with `IVSHM2EM`: the host side did not set
    /// this memory up.
    BadMagic([u8; 8]),
    /// An unknown format version.
    BadVersion(u32),
    /// The peer count is 0 or does not fit 16 bits.
    BadMaxPeers(u32),
    /// The protocol does not fit 16 bits.
    BadProtocol(u32),
    /// The state table does not start on a page after the descriptor page.
    BadStateTableOffset(u64),
}

impl fmt::Display for DescriptorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::Truncated { length } => {
                write!(f, "descriptor page truncated to {length} bytes")
            }
            Self::BadMagic(_) => f.write_str(
                "no descriptor page (magic IVSHM2EM) at the start of the shared memory: \
                 start the VM through the launcher or our server",
            ),
            Self::BadVersion(version) => {
                write!(f, "descriptor page version {version}, expected {VERSION}")
            }
            Self::BadMaxPeers(peers) => {
                write!(f, "descriptor page names {peers} peers")
            }
            Self::BadProtocol(protocol) => {
                write!(
                    f,
                    "descriptor page protocol {protocol:#x} is not a 16-bit ID"
                )
            }
            Self::BadStateTableOffset(offset) => write!(
                f,
                "state table offset {offset:#x} is not a page multiple of at least 0x1000"
            ),
        }
    }
}

impl core::error::Error for DescriptorError {}

impl DescriptorPage {
    /// Parses the first [`LENGTH`] bytes of `bytes` (the start of the shared
    /// memory, copied once out of memory a peer could change).
    ///
    /// # Errors
    ///
    /// [`DescriptorError`] for a short buffer, a wrong magic or version, a
    /// peer count or protocol that does not fit 16 bits (or no peers), and a
    /// state table that does not start on a page at or after 0x1000.
    pub fn parse(bytes: &[u8]) -> Result<Self, DescriptorError> {
        if bytes.len() < LENGTH {
            return Err(DescriptorError::Truncated {
                length: bytes.len(),
            });
        }
        let mut magic = [0; 8];
        magic.copy_from_slice(&bytes[field::MAGIC]);
        if magic != MAGIC {
            return Err(DescriptorError::BadMagic(magic));
        }
        let version = u32_at(bytes, field::VERSION);
        if version != VERSION {
            return Err(DescriptorError::BadVersion(version));
        }
        let max_peers = u32_at(bytes, field::MAX_PEERS);
        let max_peers = u16::try_from(max_peers)
            .ok()
            .filter(|&peers| peers > 0)
            .ok_or(DescriptorError::BadMaxPeers(max_peers))?;
        let protocol = u32_at(bytes, field::PROTOCOL);
        let protocol =
            u16::try_from(protocol).map_err(|_| DescriptorError::BadProtocol(protocol))?;
        let state_table_offset = u64_at(bytes, field::STATE_TABLE_OFFSET);
        if state_table_offset < PAGE_SIZE || !state_table_offset.is_multiple_of(PAGE_SIZE) {
            return Err(DescriptorError::BadStateTableOffset(state_table_offset));
        }
        Ok(Self {
            vectors: u32_at(bytes, field::VECTORS),
            protocol,
            layout: Layout {
                state_table_offset,
                state_table_size: u64_at(bytes, field::STATE_TABLE_SIZE),
                rw_section_size: u64_at(bytes, field::RW_SECTION_SIZE),
                output_section_size: u64_at(bytes, field::OUTPUT_SECTION_SIZE),
                max_peers,
            },
        })
    }

    /// The field bytes of the page; the rest of the page is zero.
    pub fn emit(&self) -> [u8; LENGTH] {
        let mut page = [0; LENGTH];
        let layout = &self.layout;
        page[field::MAGIC].copy_from_slice(&MAGIC);
        page[field::VERSION].copy_from_slice(&VERSION.to_le_bytes());
        page[field::MAX_PEERS].copy_from_slice(&u32::from(layout.max_peers).to_le_bytes());
        page[field::VECTORS].copy_from_slice(&self.vectors.to_le_bytes());
        page[field::PROTOCOL].copy_from_slice(&u32::from(self.protocol).to_le_bytes());
        page[field::STATE_TABLE_OFFSET].copy_from_slice(&layout.state_table_offset.to_le_bytes());
        page[field::STATE_TABLE_SIZE].copy_from_slice(&layout.state_table_size.to_le_bytes());
        page[field::RW_SECTION_SIZE].copy_from_slice(&layout.rw_section_size.to_le_bytes());
        page[field::OUTPUT_SECTION_SIZE].copy_from_slice(&layout.output_section_size.to_le_bytes());
        page
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page() -> DescriptorPage {
        DescriptorPage {
            vectors: 2,
            protocol: 1,
            layout: Layout {
                state_table_offset: 0x1000,
                state_table_size: 0x1000,
                rw_section_size: 0x2000,
                output_section_size: 0x7e000,
                max_peers: 2,
            },
        }
    }

    #[test]
    fn golden_bytes_round_trip() {
        let bytes = page().emit();
        let expected: [u8; LENGTH] = [
            b'I', b'V', b'S', b'H', b'M', b'2', b'E', b'M', // magic
            1, 0, 0, 0, // version
            2, 0, 0, 0, // max peers
            2, 0, 0, 0, // vectors
            1, 0, 0, 0, // protocol
            0, 0x10, 0, 0, 0, 0, 0, 0, // state table offset
            0, 0x10, 0, 0, 0, 0, 0, 0, // state table size
            0, 0x20, 0, 0, 0, 0, 0, 0, // R/W section size
            0, 0xe0, 0x07, 0, 0, 0, 0, 0, // output section size
        ];
        assert_eq!(bytes, expected);
        assert_eq!(DescriptorPage::parse(&bytes), Ok(page()));
        // Trailing bytes (the rest of the page) are ignored.
        let mut whole = [0u8; 0x1000];
        whole[..LENGTH].copy_from_slice(&bytes);
        assert_eq!(DescriptorPage::parse(&whole), Ok(page()));
    }

    #[test]
    fn bad_pages_are_rejected() {
        let good = page().emit();
        let with = |offset: usize, value: &[u8]| {
            let mut bytes = good;
            bytes[offset..offset + value.len()].copy_from_slice(value);
            DescriptorPage::parse(&bytes)
        };
        assert_eq!(
            DescriptorPage::parse(&good[..LENGTH - 1]),
            Err(DescriptorError::Truncated { length: LENGTH - 1 })
        );
        assert_eq!(
            DescriptorPage::parse(&[0; LENGTH]),
            Err(DescriptorError::BadMagic([0; 8]))
        );
        assert_eq!(with(8, &[7]), Err(DescriptorError::BadVersion(7)));
        assert_eq!(
            with(0x0c, &[0, 0, 1, 0]),
            Err(DescriptorError::BadMaxPeers(0x1_0000))
        );
        assert_eq!(with(0x0c, &[0]), Err(DescriptorError::BadMaxPeers(0)));
        assert_eq!(
            with(0x14, &[1, 0, 1, 0]),
            Err(DescriptorError::BadProtocol(0x1_0001))
        );
        assert_eq!(
            with(0x18, &[0, 8]),
            Err(DescriptorError::BadStateTableOffset(0x800))
        );
        assert_eq!(
            with(0x18, &[0, 0]),
            Err(DescriptorError::BadStateTableOffset(0))
        );
        assert_eq!(
            with(0x18, &[0, 0x18]),
            Err(DescriptorError::BadStateTableOffset(0x1800))
        );
    }

    #[test]
    fn errors_explain_themselves() {
        use alloc::string::ToString;
        let message = DescriptorError::BadMagic([0; 8]).to_string();
        assert!(message.contains("launcher or our server"), "{message}");
    }
}
