//! Shared memory for ivshmem links: the layout of a region ([`ShmLayout`]),
//! a mapping of it ([`SharedMapping`]), and shared-memory files for
//! `ivshmem-plain` ([`PlainRegion`]).
//!
//! What kernel and host agree on lives in [`abi`]: the descriptor page
//! ([`abi::descriptor`], `docs/descriptor-page.md`) that the host writes at
//! offset 0 for QEMU's stock v1 devices, and the ivshmem-v2 sections after it
//! ([`abi::layout`], `docs/ivshmem-v2.md` §6.1). With the Siemens `ivshmem`
//! (v2) device there is no descriptor page: the device itself reports the
//! sizes and the state table is at offset 0.

use std::fmt;
use std::fs::{File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering, fence};

use abi::descriptor::{self, DescriptorPage};
use abi::layout::{Layout, PAGE_SIZE};
use memmap2::MmapMut;

/// Size of the state table (fixed, as in QEMU's ivshmem2).
pub const STATE_TABLE_SIZE: u64 = 0x1000;
/// Size of the descriptor page.
pub const DESCRIPTOR_PAGE_SIZE: u64 = PAGE_SIZE;
/// The ivshmem-v2 protocol ID of ivshmem-net.
pub const PROTOCOL_NET: u16 = 0x0001;
/// Largest peer count supported (the state table has room for 1024, but the
/// v2 server protocol and this project never need more).
pub const MAX_PEERS: u32 = 16;

/// Whether an output section of `size` bytes carries ivshmem-net at the
/// kernel's default MTU, as the protocol engine decides: [`netdev::Layout`]
/// must fit its rings into the section, and the engine accepts an MTU of at
/// most half the data area minus the Ethernet header (`netdev::Engine::new`).
pub const fn net_output_section_fits(size: u64) -> bool {
    if size > usize::MAX as u64 {
        return false;
    }
    match netdev::Layout::new(size as usize) {
        Ok(layout) => {
            layout.data_size() / 2 >= netdev::DEFAULT_MTU + netdev::ETHERNET_HEADER_LENGTH
        }
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
    layout: ShmLayout,
    mapping: SharedMapping,
    remove_on_drop: bool,
    _file: File,
}

/// Creates a fresh shared-memory file at `path` (which must not exist) of
/// `size` bytes (a power of two ≥ 4 KiB), zeroed, with a descriptor page for
/// `peers` peers, `vectors` vectors (0 for ivshmem-plain), the 16-bit
/// `protocol` ID and the given (or the default, see [`ShmLayout::new`]) output
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
    let layout = ShmLayout::new(size, true, peers, vectors, protocol, output_section)?;
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
            mapping.write(0, &descriptor.emit());
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
/// fitting that size exactly as [`ShmLayout::new`] would lay it out. Dropping
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
    let descriptor = DescriptorPage::parse(&mapping.read(0, descriptor::LENGTH))
        .with_context(|| format!("{} has no valid descriptor page", path.display()))?;
    let layout = ShmLayout::from_descriptor(size, descriptor)
        .with_context(|| format!("{}: the descriptor page is inconsistent", path.display()))?;
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
    pub fn layout(&self) -> &ShmLayout {
        &self.layout
    }

    /// The mapping, for inspection by tests.
    pub fn mapping(&self) -> &SharedMapping {
        &self.mapping
    }

    /// Reads peer `id`'s state-table entry.
    pub fn state(&self, id: u16) -> u32 {
        self.mapping.load_u32(self.layout.state_offset(id))
    }

    /// Plays "peer gone" for peer `id`: zeroes its state-table entry and
    /// fences (ivshmem-v2 semantics when a peer leaves).
    ///
    /// # Panics
    ///
    /// If `id` is not one of the layout's peers.
    pub fn zero_state(&self, id: u16) {
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
    fn net_minimum_comes_from_the_engine() {
        // 0x1000 holds netdev's rings, but its data area (0x900) cannot take
        // two 1514-byte frames, so the engine refuses the default MTU there.
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

    #[test]
    fn plain_region_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm");
        let region = create_plain_region(&path, 1 << 20, 2, 0, 1, None).unwrap();
        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(bytes.len(), 1 << 20);
        let page = DescriptorPage::parse(&bytes).unwrap();
        assert_eq!(page.layout.output_section_size, 0x7f000);
        assert_eq!(page.vectors, 0);
        assert!(bytes[descriptor::LENGTH..0x1000].iter().all(|&b| b == 0));
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
