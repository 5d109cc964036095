//! Shared-memory layout: the descriptor page and the ivshmem-v2 sections.
//!
//! # The descriptor page (host ↔ kernel contract for v1 devices)
//!
//! QEMU's stock v1 devices (`ivshmem-plain`, `ivshmem-doorbell`) do not tell
//! the guest anything about the layout of the shared memory. So, for them, the
//! host writes a *descriptor page* at offset 0 of the shared memory, followed
//! by exactly the ivshmem-v2 layout (ivshmem-v2.md §6.1). All fields are
//! little-endian:
//!
//! | offset | type | field |
//! |---|---|---|
//! | 0x00 | `[u8; 8]` | magic = `b"IVSHM2EM"` |
//! | 0x08 | u32 | version = 1 |
//! | 0x0C | u32 | max_peers |
//! | 0x10 | u32 | vectors (0 for `ivshmem-plain`) |
//! | 0x14 | u32 | protocol (the 16-bit ivshmem-v2 protocol ID, 1 = ivshmem-net) |
//! | 0x18 | u64 | state_table_offset (= 0x1000, where the v2 layout begins) |
//! | 0x20 | u64 | state_table_size (= 0x1000) |
//! | 0x28 | u64 | rw_section_size |
//! | 0x30 | u64 | output_section_size |
//! | 0x38.. | | zero up to 0x1000 |
//!
//! From `state_table_offset` on: the state table (one u32 per peer, the rest
//! of its page zero), then the R/W section, then the output section of peer
//! `i` at `state_table_offset + state_table_size + rw_section_size + i *
//! output_section_size`. The whole layout fits in the shared memory.
//!
//! With the Siemens `ivshmem` (v2) device there is no descriptor page: the
//! device itself reports the sizes and the state table is at offset 0.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering, fence};

use memmap2::MmapMut;

/// The page size all sections are multiples of.
pub const PAGE_SIZE: u64 = 0x1000;
/// Size of the state table (fixed, as in QEMU's ivshmem2).
pub const STATE_TABLE_SIZE: u64 = 0x1000;
/// Size of the descriptor page.
pub const DESCRIPTOR_PAGE_SIZE: u64 = 0x1000;
/// The ivshmem-v2 protocol ID of ivshmem-net.
pub const PROTOCOL_NET: u16 = 0x0001;
/// The smallest output section ivshmem-net can use (header 0x700 plus rings
/// plus at least one frame; ivshmem-net.md §3.3), rounded to pages.
pub const NET_MIN_OUTPUT_SECTION: u64 = 0x2000;
/// Largest peer count supported (the state table has room for 1024, but the
/// v2 server protocol and this project never need more).
pub const MAX_PEERS: u32 = 16;

/// The descriptor page written at offset 0 of v1 shared memory (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DescriptorPage {
    /// Maximum number of peers (IDs `0..max_peers`).
    pub max_peers: u32,
    /// Interrupt vectors per peer (0 when there are no doorbells).
    pub vectors: u32,
    /// The 16-bit ivshmem-v2 protocol ID.
    pub protocol: u32,
    /// Where the v2 layout (the state table) begins.
    pub state_table_offset: u64,
    /// Size of the state table.
    pub state_table_size: u64,
    /// Size of the R/W section.
    pub rw_section_size: u64,
    /// Size of ONE output section.
    pub output_section_size: u64,
}

/// Why a descriptor page was rejected by [`DescriptorPage::parse`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DescriptorError {
    /// Fewer than [`DescriptorPage::LEN`] bytes were given.
    #[error("descriptor page truncated: {len} bytes")]
    Truncated {
        /// The number of bytes given.
        len: usize,
    },
    /// The first 8 bytes are not `IVSHM2EM`.
    #[error("no descriptor page (bad magic {0:02x?})")]
    BadMagic([u8; 8]),
    /// A version this code does not know.
    #[error("unsupported descriptor page version {0}")]
    BadVersion(u32),
}

mod field {
    use std::ops::Range;
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

impl DescriptorPage {
    /// The magic at offset 0.
    pub const MAGIC: [u8; 8] = *b"IVSHM2EM";
    /// The format version written by this code.
    pub const VERSION: u32 = 1;
    /// Number of meaningful bytes at the start of the page.
    pub const LEN: usize = 0x38;

    /// The full page (4096 bytes, zero after the fields).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut page = vec![0u8; DESCRIPTOR_PAGE_SIZE as usize];
        page[field::MAGIC].copy_from_slice(&Self::MAGIC);
        page[field::VERSION].copy_from_slice(&Self::VERSION.to_le_bytes());
        page[field::MAX_PEERS].copy_from_slice(&self.max_peers.to_le_bytes());
        page[field::VECTORS].copy_from_slice(&self.vectors.to_le_bytes());
        page[field::PROTOCOL].copy_from_slice(&self.protocol.to_le_bytes());
        page[field::STATE_TABLE_OFFSET].copy_from_slice(&self.state_table_offset.to_le_bytes());
        page[field::STATE_TABLE_SIZE].copy_from_slice(&self.state_table_size.to_le_bytes());
        page[field::RW_SECTION_SIZE].copy_from_slice(&self.rw_section_size.to_le_bytes());
        page[field::OUTPUT_SECTION_SIZE].copy_from_slice(&self.output_section_size.to_le_bytes());
        page
    }

    /// Parses the start of a shared-memory region.
    pub fn parse(bytes: &[u8]) -> Result<DescriptorPage, DescriptorError> {
        if bytes.len() < Self::LEN {
            return Err(DescriptorError::Truncated { len: bytes.len() });
        }
        let u32_at = |r: std::ops::Range<usize>| {
            u32::from_le_bytes(bytes[r].try_into().expect("4-byte field"))
        };
        let u64_at = |r: std::ops::Range<usize>| {
            u64::from_le_bytes(bytes[r].try_into().expect("8-byte field"))
        };
        let magic: [u8; 8] = bytes[field::MAGIC].try_into().expect("8-byte field");
        if magic != Self::MAGIC {
            return Err(DescriptorError::BadMagic(magic));
        }
        let version = u32_at(field::VERSION);
        if version != Self::VERSION {
            return Err(DescriptorError::BadVersion(version));
        }
        Ok(DescriptorPage {
            max_peers: u32_at(field::MAX_PEERS),
            vectors: u32_at(field::VECTORS),
            protocol: u32_at(field::PROTOCOL),
            state_table_offset: u64_at(field::STATE_TABLE_OFFSET),
            state_table_size: u64_at(field::STATE_TABLE_SIZE),
            rw_section_size: u64_at(field::RW_SECTION_SIZE),
            output_section_size: u64_at(field::OUTPUT_SECTION_SIZE),
        })
    }
}

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
    /// A section size is not a multiple of 4 KiB.
    #[error("output section size {0:#x} is not a multiple of 4 KiB")]
    Unaligned(u64),
    /// Output section too small for ivshmem-net.
    #[error(
        "output section size {0:#x} too small for ivshmem-net (needs at least {NET_MIN_OUTPUT_SECTION:#x})"
    )]
    NetOutputTooSmall(u64),
    /// The sections do not fit into the shared memory.
    #[error("shared memory too small: {needed:#x} bytes needed ({what}), only {size:#x} available")]
    TooSmall {
        /// Bytes needed.
        needed: u64,
        /// Total size.
        size: u64,
        /// What was being laid out.
        what: String,
    },
}

/// Where everything lives in one shared-memory region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    /// Total size of the shared memory (a power of two).
    pub shm_size: u64,
    /// Whether a descriptor page precedes the v2 layout (v1 devices).
    pub descriptor_page: bool,
    /// Maximum number of peers.
    pub max_peers: u32,
    /// Interrupt vectors per peer.
    pub vectors: u32,
    /// The 16-bit protocol ID.
    pub protocol: u16,
    /// Offset of the state table (0x1000 with a descriptor page, else 0).
    pub state_table_offset: u64,
    /// Size of the state table (0x1000).
    pub state_table_size: u64,
    /// Size of the R/W section (all of the space left over).
    pub rw_section_size: u64,
    /// Size of ONE output section.
    pub output_section_size: u64,
}

impl Layout {
    /// Computes and validates a layout.
    ///
    /// `output_section = None` picks the largest page multiple that fits:
    /// `(shm_size − descriptor page − state table) / max_peers`, rounded down
    /// to 4 KiB. The R/W section gets what is left.
    pub fn new(
        shm_size: u64,
        descriptor_page: bool,
        max_peers: u32,
        vectors: u32,
        protocol: u16,
        output_section: Option<u64>,
    ) -> Result<Layout, LayoutError> {
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
        let fixed = state_table_offset + STATE_TABLE_SIZE;
        let what = if descriptor_page {
            "descriptor page + state table"
        } else {
            "state table"
        };
        if shm_size < fixed {
            return Err(LayoutError::TooSmall {
                needed: fixed,
                size: shm_size,
                what: what.to_string(),
            });
        }
        let output_section_size = match output_section {
            Some(os) => os,
            None => ((shm_size - fixed) / u64::from(max_peers)) & !(PAGE_SIZE - 1),
        };
        if output_section_size % PAGE_SIZE != 0 {
            return Err(LayoutError::Unaligned(output_section_size));
        }
        let needed = output_section_size
            .checked_mul(u64::from(max_peers))
            .and_then(|o| o.checked_add(fixed))
            .unwrap_or(u64::MAX);
        if needed > shm_size {
            return Err(LayoutError::TooSmall {
                needed,
                size: shm_size,
                what: format!("{what} + {max_peers} output sections of {output_section_size:#x}"),
            });
        }
        if protocol == PROTOCOL_NET && output_section_size < NET_MIN_OUTPUT_SECTION {
            return Err(LayoutError::NetOutputTooSmall(output_section_size));
        }
        Ok(Layout {
            shm_size,
            descriptor_page,
            max_peers,
            vectors,
            protocol,
            state_table_offset,
            state_table_size: STATE_TABLE_SIZE,
            rw_section_size: shm_size - needed,
            output_section_size,
        })
    }

    /// Offset of peer `id`'s u32 in the state table.
    pub fn state_offset(&self, id: u32) -> u64 {
        self.state_table_offset + 4 * u64::from(id)
    }

    /// Offset of the R/W section.
    pub fn rw_section_offset(&self) -> u64 {
        self.state_table_offset + self.state_table_size
    }

    /// Offset of peer `id`'s output section.
    pub fn output_section_offset(&self, id: u32) -> u64 {
        self.rw_section_offset() + self.rw_section_size + u64::from(id) * self.output_section_size
    }

    /// The descriptor page for this layout, if it has one.
    pub fn descriptor(&self) -> Option<DescriptorPage> {
        self.descriptor_page.then_some(DescriptorPage {
            max_peers: self.max_peers,
            vectors: self.vectors,
            protocol: u32::from(self.protocol),
            state_table_offset: self.state_table_offset,
            state_table_size: self.state_table_size,
            rw_section_size: self.rw_section_size,
            output_section_size: self.output_section_size,
        })
    }
}

impl fmt::Display for Layout {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "shm {:#x}: {}state table @{:#x}, R/W section {:#x} @{:#x}, {} output sections of {:#x} @{:#x}",
            self.shm_size,
            if self.descriptor_page {
                "descriptor page @0, "
            } else {
                ""
            },
            self.state_table_offset,
            self.rw_section_size,
            self.rw_section_offset(),
            self.max_peers,
            self.output_section_size,
            self.output_section_offset(0),
        )
    }
}

/// A writable mapping of shared memory that guests may be using concurrently.
///
/// All access goes through atomics or whole-slice copies at explicit offsets;
/// no reference into the memory is ever handed out.
#[derive(Debug)]
pub struct SharedMapping {
    map: MmapMut,
}

impl SharedMapping {
    /// Maps all of `file` (`MAP_SHARED`, read-write).
    pub fn new(file: &File) -> io::Result<SharedMapping> {
        // SAFETY: the mapping is only accessed through `store_u32`, `load_u32`
        // and `write`, which use atomics or copies at bounds-checked offsets;
        // concurrent modification by guests therefore never invalidates a
        // Rust reference.
        let map = unsafe { MmapMut::map_mut(file)? };
        Ok(SharedMapping { map })
    }

    /// Length of the mapping.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// Whether the mapping is empty.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    fn atomic_u32(&self, offset: u64) -> &AtomicU32 {
        let offset = usize::try_from(offset).expect("offset fits usize");
        assert!(
            offset % 4 == 0 && offset + 4 <= self.map.len(),
            "bad u32 offset {offset:#x}"
        );
        // SAFETY: the offset is in bounds and 4-aligned (the mapping is page
        // aligned); the mapping lives as long as `&self`, and all other
        // accesses to this memory are atomic or come from other processes.
        unsafe { AtomicU32::from_ptr(self.map.as_ptr().add(offset).cast::<u32>().cast_mut()) }
    }

    /// Atomically stores `value` at `offset` (little-endian host) and issues a
    /// full fence, so that the store is visible before anything that follows
    /// (e.g. a doorbell or a PEER_GONE message).
    pub fn store_u32(&self, offset: u64, value: u32) {
        self.atomic_u32(offset).store(value, Ordering::SeqCst);
        fence(Ordering::SeqCst);
    }

    /// Atomically loads the u32 at `offset`.
    pub fn load_u32(&self, offset: u64) -> u32 {
        self.atomic_u32(offset).load(Ordering::SeqCst)
    }

    /// Copies `bytes` to `offset` (before any guest runs), then fences.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) {
        let offset = usize::try_from(offset).expect("offset fits usize");
        self.map[offset..offset + bytes.len()].copy_from_slice(bytes);
        fence(Ordering::SeqCst);
    }

    /// Copies `len` bytes from `offset`.
    pub fn read(&self, offset: u64, len: usize) -> Vec<u8> {
        let offset = usize::try_from(offset).expect("offset fits usize");
        assert!(offset + len <= self.map.len());
        // Read u64-wise through atomics would be stricter; a copy of memory a
        // guest may write concurrently is fine for inspection purposes.
        (0..len)
            .map(|i| {
                // SAFETY: `offset + i` is in bounds (asserted above); a
                // volatile byte read never forms a reference into the memory.
                unsafe { self.map.as_ptr().add(offset + i).read_volatile() }
            })
            .collect()
    }
}

/// A shared-memory file for `ivshmem-plain` (`memory-backend-file`), with the
/// descriptor page written. A region made by [`create_plain_region`] is
/// removed from the file system on drop (and by [`crate::cleanup`] if the
/// launcher is interrupted) unless [`PlainRegion::persist`] was called; one
/// opened by [`open_plain_region`] is left alone.
#[derive(Debug)]
pub struct PlainRegion {
    path: PathBuf,
    layout: Layout,
    mapping: SharedMapping,
    remove_on_drop: bool,
    _file: File,
}

/// Creates a fresh shared-memory file at `path` (which must not exist) of
/// `size` bytes (a power of two ≥ 4 KiB), zeroed, with a descriptor page for
/// `peers` peers, `vectors` vectors (0 for ivshmem-plain), the 16-bit
/// `protocol` ID and the given (or the default, see [`Layout::new`]) output
/// section size.
pub fn create_plain_region(
    path: &Path,
    size: u64,
    peers: u32,
    vectors: u32,
    protocol: u16,
    output_section: Option<u64>,
) -> anyhow::Result<PlainRegion> {
    use anyhow::Context;
    let layout = Layout::new(size, true, peers, vectors, protocol, output_section)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .open(path)
        .with_context(|| format!("cannot create shared memory file {}", path.display()))?;
    crate::cleanup::register_path(path);
    let region = (|| -> anyhow::Result<PlainRegion> {
        file.set_len(size)
            .with_context(|| format!("cannot size {} to {size:#x} bytes", path.display()))?;
        let mut mapping =
            SharedMapping::new(&file).with_context(|| format!("cannot map {}", path.display()))?;
        if let Some(descriptor) = layout.descriptor() {
            mapping.write(0, &descriptor.to_bytes());
        }
        Ok(PlainRegion {
            path: path.to_path_buf(),
            layout,
            mapping,
            remove_on_drop: true,
            _file: file,
        })
    })();
    if region.is_err() {
        let _ = std::fs::remove_file(path);
        crate::cleanup::unregister_path(path);
    }
    region
}

/// Opens an existing shared-memory file that carries a valid descriptor page
/// (e.g. made by another launcher) to play "peer gone" on it. The file must
/// have a power-of-two size and a descriptor page that describes a layout
/// fitting that size exactly as [`Layout::new`] would lay it out. Dropping
/// the region leaves the file in place.
pub fn open_plain_region(path: &Path) -> anyhow::Result<PlainRegion> {
    use anyhow::Context;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .with_context(|| format!("cannot open shared memory file {}", path.display()))?;
    let size = file
        .metadata()
        .with_context(|| format!("cannot stat {}", path.display()))?
        .len();
    anyhow::ensure!(
        size.is_power_of_two() && size >= DESCRIPTOR_PAGE_SIZE,
        "{} is {size:#x} bytes, not a power of two of at least 4 KiB",
        path.display()
    );
    let mapping =
        SharedMapping::new(&file).with_context(|| format!("cannot map {}", path.display()))?;
    let descriptor = DescriptorPage::parse(&mapping.read(0, DescriptorPage::LEN))
        .with_context(|| format!("{} has no valid descriptor page", path.display()))?;
    let protocol = u16::try_from(descriptor.protocol).map_err(|_| {
        anyhow::anyhow!(
            "{}: descriptor page protocol {:#x} is not a 16-bit ID",
            path.display(),
            descriptor.protocol
        )
    })?;
    let layout = Layout::new(
        size,
        true,
        descriptor.max_peers,
        descriptor.vectors,
        protocol,
        Some(descriptor.output_section_size),
    )
    .with_context(|| format!("{}: the descriptor page is inconsistent", path.display()))?;
    anyhow::ensure!(
        layout.descriptor() == Some(descriptor),
        "{}: the descriptor page ({descriptor:?}) does not match a {size:#x}-byte region",
        path.display()
    );
    Ok(PlainRegion {
        path: path.to_path_buf(),
        layout,
        mapping,
        remove_on_drop: false,
        _file: file,
    })
}

/// A unique, not yet existing path under `/dev/shm` (falling back to the
/// temporary directory if `/dev/shm` is missing): `eth-ivshmem-<tag>-<pid>-<n>`.
pub fn unique_shm_path(tag: &str) -> PathBuf {
    use std::sync::atomic::AtomicUsize;
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new("/dev/shm");
    let dir = if dir.is_dir() {
        dir.to_path_buf()
    } else {
        std::env::temp_dir()
    };
    loop {
        let n = COUNTER.fetch_add(1, Ordering::Relaxed);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let path = dir.join(format!(
            "eth-ivshmem-{tag}-{}-{n}-{nanos:08x}",
            std::process::id()
        ));
        if !path.exists() {
            return path;
        }
    }
}

impl PlainRegion {
    /// The file to pass to QEMU as `mem-path`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The `ivshmem-plain` device to attach to a [`crate::VmConfig`].
    pub fn device(&self) -> crate::ShmDevice {
        crate::ShmDevice::Plain {
            mem_path: self.path.clone(),
            size: self.layout.shm_size,
        }
    }

    /// Keeps the file when the region is dropped (and when the launcher is
    /// interrupted), e.g. for other launchers to share.
    pub fn persist(&mut self) {
        self.remove_on_drop = false;
        crate::cleanup::unregister_path(&self.path);
    }

    /// The layout written into the descriptor page.
    pub fn layout(&self) -> &Layout {
        &self.layout
    }

    /// The mapping, for inspection by tests.
    pub fn mapping(&self) -> &SharedMapping {
        &self.mapping
    }

    /// Reads peer `id`'s state-table entry.
    pub fn state(&self, id: u32) -> u32 {
        self.mapping.load_u32(self.layout.state_offset(id))
    }

    /// Plays "peer gone" for peer `id`: zeroes its state-table entry and
    /// fences (ivshmem-v2 semantics when a peer leaves).
    pub fn zero_state(&self, id: u32) {
        assert!(id < self.layout.max_peers, "peer {id} out of range");
        self.mapping.store_u32(self.layout.state_offset(id), 0);
    }
}

impl Drop for PlainRegion {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
            crate::cleanup::unregister_path(&self.path);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descriptor_golden_bytes() {
        let page = DescriptorPage {
            max_peers: 2,
            vectors: 2,
            protocol: 1,
            state_table_offset: 0x1000,
            state_table_size: 0x1000,
            rw_section_size: 0x2000,
            output_section_size: 0x7e000,
        };
        let bytes = page.to_bytes();
        assert_eq!(bytes.len(), 4096);
        assert_eq!(&bytes[0..8], b"IVSHM2EM");
        assert_eq!(&bytes[8..12], &[1, 0, 0, 0]);
        assert_eq!(&bytes[12..16], &[2, 0, 0, 0]);
        assert_eq!(&bytes[16..20], &[2, 0, 0, 0]);
        assert_eq!(&bytes[20..24], &[1, 0, 0, 0]);
        assert_eq!(&bytes[0x18..0x20], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[0x20..0x28], &[0, 0x10, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[0x28..0x30], &[0, 0x20, 0, 0, 0, 0, 0, 0]);
        assert_eq!(&bytes[0x30..0x38], &[0, 0xe0, 0x07, 0, 0, 0, 0, 0]);
        assert!(bytes[0x38..].iter().all(|&b| b == 0));
        assert_eq!(DescriptorPage::parse(&bytes), Ok(page));
    }

    #[test]
    fn descriptor_rejects_bad_input() {
        let page = Layout::new(1 << 20, true, 2, 0, 1, None)
            .unwrap()
            .descriptor()
            .unwrap();
        let mut bytes = page.to_bytes();
        assert_eq!(
            DescriptorPage::parse(&bytes[..0x37]),
            Err(DescriptorError::Truncated { len: 0x37 })
        );
        bytes[8] = 2;
        assert_eq!(
            DescriptorPage::parse(&bytes),
            Err(DescriptorError::BadVersion(2))
        );
        bytes[0] = b'X';
        assert!(matches!(
            DescriptorPage::parse(&bytes),
            Err(DescriptorError::BadMagic(_))
        ));
    }

    #[test]
    fn default_layouts() {
        // v1 (descriptor page), 1 MiB, 2 peers: (0x100000 - 0x2000) / 2 = 0x7f000.
        let l = Layout::new(1 << 20, true, 2, 2, 1, None).unwrap();
        assert_eq!(l.output_section_size, 0x7f000);
        assert_eq!(l.rw_section_size, 0);
        assert_eq!(l.state_table_offset, 0x1000);
        assert_eq!(l.output_section_offset(0), 0x2000);
        assert_eq!(l.output_section_offset(1), 0x81000);
        assert_eq!(l.output_section_offset(2), 1 << 20);
        // v2 (no descriptor page): (0x100000 - 0x1000) / 2 rounded down = 0x7f000.
        let l = Layout::new(1 << 20, false, 2, 2, 1, None).unwrap();
        assert_eq!(l.output_section_size, 0x7f000);
        assert_eq!(l.rw_section_size, 0x1000);
        assert_eq!(l.state_offset(1), 4);
        assert_eq!(l.output_section_offset(0), 0x2000);
        // Explicit output section: the rest goes to R/W.
        let l = Layout::new(1 << 20, true, 2, 2, 1, Some(0x10000)).unwrap();
        assert_eq!(l.rw_section_size, 0x100000 - 0x2000 - 0x20000);
        // Odd peer counts round down to pages.
        let l = Layout::new(1 << 16, false, 3, 1, 0, None).unwrap();
        assert_eq!(l.output_section_size, 0x5000);
        assert_eq!(l.rw_section_size, 0x10000 - 0x1000 - 0xf000);
    }

    #[test]
    fn layout_validation() {
        use LayoutError::*;
        assert_eq!(
            Layout::new(3 << 20, true, 2, 2, 1, None),
            Err(BadSize(3 << 20))
        );
        assert_eq!(Layout::new(0x800, true, 2, 2, 0, None), Err(BadSize(0x800)));
        assert_eq!(Layout::new(1 << 20, true, 1, 2, 0, None), Err(BadPeers(1)));
        assert_eq!(
            Layout::new(1 << 20, true, 17, 2, 0, None),
            Err(BadPeers(17))
        );
        assert_eq!(Layout::new(1 << 20, true, 3, 2, 1, None), Err(NetPeers(3)));
        assert_eq!(
            Layout::new(1 << 20, true, 2, 65, 0, None),
            Err(BadVectors(65))
        );
        assert_eq!(
            Layout::new(1 << 20, true, 2, 2, 1, Some(0x1800)),
            Err(Unaligned(0x1800))
        );
        assert_eq!(
            Layout::new(1 << 20, true, 2, 2, 1, Some(0x1000)),
            Err(NetOutputTooSmall(0x1000))
        );
        assert!(matches!(
            Layout::new(1 << 20, true, 2, 2, 1, Some(0x80000)),
            Err(TooSmall { .. })
        ));
        // 16 KiB with a descriptor page: (0x4000 - 0x2000) / 2 = 0x1000 < 0x2000.
        assert_eq!(
            Layout::new(0x4000, true, 2, 2, 1, None),
            Err(NetOutputTooSmall(0x1000))
        );
        assert!(matches!(
            Layout::new(0x1000, true, 2, 2, 0, None),
            Err(TooSmall { .. })
        ));
        assert!(Layout::new(0x8000, true, 2, 2, 1, None).is_ok());
    }

    #[test]
    fn plain_region_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm");
        let region = create_plain_region(&path, 1 << 20, 2, 0, 1, None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        let page = DescriptorPage::parse(&bytes).unwrap();
        assert_eq!(page.output_section_size, 0x7f000);
        assert_eq!(page.vectors, 0);
        // A guest sets its state; the host plays "peer gone".
        region
            .mapping()
            .store_u32(region.layout().state_offset(1), 3);
        assert_eq!(region.state(1), 3);
        region.zero_state(1);
        assert_eq!(region.state(1), 0);
        assert!(create_plain_region(&path, 1 << 20, 2, 0, 1, None).is_err());
        drop(region);
        assert!(!path.exists());
        assert!(unique_shm_path("t") != unique_shm_path("t"));
    }

    #[test]
    fn open_existing_region() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm");
        let mut region = create_plain_region(&path, 1 << 16, 2, 0, 1, None).unwrap();
        region.persist();
        region
            .mapping()
            .store_u32(region.layout().state_offset(0), 3);
        let layout = *region.layout();
        drop(region);
        assert!(path.exists(), "persisted");
        let opened = open_plain_region(&path).unwrap();
        assert_eq!(*opened.layout(), layout);
        assert_eq!(opened.state(0), 3);
        opened.zero_state(0);
        assert_eq!(opened.state(0), 0);
        drop(opened);
        assert!(path.exists(), "an opened region is left in place");

        let junk = dir.path().join("junk");
        std::fs::write(&junk, vec![0u8; 1 << 16]).unwrap();
        let err = format!("{:#}", open_plain_region(&junk).unwrap_err());
        assert!(err.contains("no valid descriptor page"), "{err}");
        std::fs::write(&junk, vec![0u8; 5000]).unwrap();
        let err = format!("{:#}", open_plain_region(&junk).unwrap_err());
        assert!(err.contains("power of two"), "{err}");
        // A descriptor page copied into a region of another size.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.resize(1 << 17, 0);
        std::fs::write(&junk, &bytes).unwrap();
        let err = format!("{:#}", open_plain_region(&junk).unwrap_err());
        assert!(err.contains("does not match"), "{err}");
        assert!(open_plain_region(&dir.path().join("missing")).is_err());
    }
}
