//! Shared-memory files for `ivshmem-plain` (QEMU's `memory-backend-file`):
//! their life cycle ([`ShmFile`]) and the region they hold for an
//! ivshmem-v2 link ([`PlainRegion`]).
//!
//! A file this process creates is removed when its owner is dropped, and by
//! [`crate::cleanup`] if the launcher is interrupted, unless it was
//! persisted for other launchers to share; a file opened is left alone.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};

use abi::descriptor::{self, DescriptorPage};
use anyhow::Context;

use super::layout::{DESCRIPTOR_PAGE_SIZE, PROTOCOL_NET, ShmLayout};
use super::mapping::SharedMapping;
use crate::ShmDevice;

/// A shared-memory file: created (zeroed, sparse) or opened.
#[derive(Debug)]
pub struct ShmFile {
    path: PathBuf,
    size: u64,
    file: File,
    remove_on_drop: bool,
}

impl ShmFile {
    /// Creates `path` (which must not exist) with `size` zero bytes. The file
    /// is removed on drop unless [`ShmFile::persist`] is called.
    pub fn create(path: &Path, size: u64) -> anyhow::Result<ShmFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("cannot create shared memory file {}", path.display()))?;
        crate::cleanup::register_path(path);
        // The guard exists before the file is sized, so a failure removes it.
        let shm = ShmFile {
            path: path.to_path_buf(),
            size,
            file,
            remove_on_drop: true,
        };
        shm.file
            .set_len(size)
            .with_context(|| format!("cannot size {} to {size:#x} bytes", path.display()))?;
        Ok(shm)
    }

    /// Opens an existing file, which is left in place on drop.
    pub fn open(path: &Path) -> anyhow::Result<ShmFile> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open shared memory file {}", path.display()))?;
        let size = file
            .metadata()
            .with_context(|| format!("cannot stat {}", path.display()))?
            .len();
        Ok(ShmFile {
            path: path.to_path_buf(),
            size,
            file,
            remove_on_drop: false,
        })
    }

    /// A unique, not yet existing path under `/dev/shm` (falling back to the
    /// temporary directory if `/dev/shm` is missing):
    /// `eth-ivshmem-<tag>-<pid>-<n>-<nanoseconds>`.
    pub fn unique_path(tag: &str) -> PathBuf {
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

    /// The file to pass to QEMU as `mem-path`.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The `ivshmem-plain` device on this file.
    pub fn device(&self) -> ShmDevice {
        ShmDevice::Plain {
            mem_path: self.path.clone(),
            size: self.size,
        }
    }

    /// Writes `bytes` at `offset` (before a guest runs: a plain write).
    pub fn write_at(&self, offset: u64, bytes: &[u8]) -> anyhow::Result<()> {
        anyhow::ensure!(
            offset
                .checked_add(bytes.len() as u64)
                .is_some_and(|end| end <= self.size),
            "{} bytes at {offset:#x} do not fit into {}",
            bytes.len(),
            self.path.display()
        );
        self.file
            .write_all_at(bytes, offset)
            .with_context(|| format!("cannot write {}", self.path.display()))
    }

    /// Keeps the file when it is dropped (and when the launcher is
    /// interrupted), e.g. for other launchers to share.
    pub fn persist(&mut self) {
        self.remove_on_drop = false;
        crate::cleanup::unregister_path(&self.path);
    }

    /// Maps the whole file.
    fn map(&self) -> anyhow::Result<SharedMapping> {
        SharedMapping::new(&self.file)
            .with_context(|| format!("cannot map {}", self.path.display()))
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        if self.remove_on_drop {
            let _ = std::fs::remove_file(&self.path);
            crate::cleanup::unregister_path(&self.path);
        }
    }
}

/// A shared-memory file carrying an ivshmem-v2 link: the descriptor page and
/// the sections after it.
#[derive(Debug)]
pub struct PlainRegion {
    // Field order is drop order: unmap before the file may be removed.
    mapping: SharedMapping,
    layout: ShmLayout,
    file: ShmFile,
}

impl PlainRegion {
    /// Creates a fresh file at `path` (which must not exist) of `size` bytes
    /// (a power of two ≥ 4 KiB), zeroed, with a descriptor page for `peers`
    /// peers, `vectors` vectors (0 for ivshmem-plain), the 16-bit `protocol`
    /// ID and the given (or the default, see [`ShmLayout::new`]) output
    /// section size. The file is removed on drop unless persisted.
    pub fn create(
        path: &Path,
        size: u64,
        peers: u32,
        vectors: u32,
        protocol: u16,
        output_section: Option<u64>,
    ) -> anyhow::Result<PlainRegion> {
        let layout = ShmLayout::new(size, true, peers, vectors, protocol, output_section)?;
        let file = ShmFile::create(path, size)?;
        let mut mapping = file.map()?;
        if let Some(descriptor) = layout.descriptor() {
            mapping.write(0, &descriptor.emit());
        }
        Ok(PlainRegion {
            mapping,
            layout,
            file,
        })
    }

    /// [`PlainRegion::create`] for an ivshmem-net link between two peers
    /// polling `ivshmem-plain` (no vectors), with the largest output sections.
    pub fn create_net(path: &Path, size: u64) -> anyhow::Result<PlainRegion> {
        PlainRegion::create(path, size, 2, 0, PROTOCOL_NET, None)
    }

    /// Opens an existing file that carries a valid descriptor page (e.g. made
    /// by another launcher) to play "peer gone" on it. The file must have a
    /// power-of-two size and a descriptor page that describes a layout
    /// fitting that size exactly as [`ShmLayout::new`] would lay it out.
    /// Dropping the region leaves the file in place.
    pub fn open(path: &Path) -> anyhow::Result<PlainRegion> {
        let file = ShmFile::open(path)?;
        let size = file.size();
        anyhow::ensure!(
            size.is_power_of_two() && size >= DESCRIPTOR_PAGE_SIZE,
            "{} is {size:#x} bytes, not a power of two of at least 4 KiB",
            path.display()
        );
        let mapping = file.map()?;
        let descriptor = DescriptorPage::parse(&mapping.read(0, descriptor::LENGTH))
            .with_context(|| format!("{} has no valid descriptor page", path.display()))?;
        let layout = ShmLayout::from_descriptor(size, descriptor)
            .with_context(|| format!("{}: the descriptor page is inconsistent", path.display()))?;
        Ok(PlainRegion {
            mapping,
            layout,
            file,
        })
    }

    /// The file to pass to QEMU as `mem-path`.
    pub fn path(&self) -> &Path {
        self.file.path()
    }

    /// The `ivshmem-plain` device to attach to a [`crate::VmConfig`].
    pub fn device(&self) -> ShmDevice {
        self.file.device()
    }

    /// Keeps the file when the region is dropped (see [`ShmFile::persist`]).
    pub fn persist(&mut self) {
        self.file.persist();
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_are_removed_unless_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("file");
        let file = ShmFile::create(&path, 1 << 30).unwrap();
        assert_eq!(std::fs::metadata(&path).unwrap().len(), 1 << 30);
        file.write_at((1 << 30) - 8, &7u64.to_le_bytes()).unwrap();
        assert!(file.write_at((1 << 30) - 4, &[0; 8]).is_err());
        assert!(ShmFile::create(&path, 4096).is_err(), "never replaced");
        drop(file);
        assert!(!path.exists());
        let mut file = ShmFile::create(&path, 4096).unwrap();
        file.persist();
        drop(file);
        let opened = ShmFile::open(&path).unwrap();
        assert_eq!(opened.size(), 4096);
        drop(opened);
        assert!(path.exists(), "an opened file is left in place");
        assert!(ShmFile::unique_path("t") != ShmFile::unique_path("t"));
    }

    #[test]
    fn plain_region_roundtrip() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm");
        let region = PlainRegion::create(&path, 1 << 20, 2, 0, 1, None).unwrap();
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
        assert!(PlainRegion::create_net(&path, 1 << 20).is_err());
        drop(region);
        assert!(!path.exists());
    }

    #[test]
    fn open_existing_region() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm");
        let mut region = PlainRegion::create_net(&path, 1 << 16).unwrap();
        region.persist();
        region
            .mapping()
            .store_u32(region.layout().state_offset(0), 3);
        let layout = *region.layout();
        drop(region);
        assert!(path.exists(), "persisted");
        let opened = PlainRegion::open(&path).unwrap();
        assert_eq!(*opened.layout(), layout);
        assert_eq!(opened.state(0), 3);
        opened.zero_state(0);
        assert_eq!(opened.state(0), 0);
        drop(opened);
        assert!(path.exists(), "an opened region is left in place");

        let junk = dir.path().join("junk");
        std::fs::write(&junk, vec![0u8; 1 << 16]).unwrap();
        let err = format!("{:#}", PlainRegion::open(&junk).unwrap_err());
        assert!(err.contains("no valid descriptor page"), "{err}");
        std::fs::write(&junk, vec![0u8; 5000]).unwrap();
        let err = format!("{:#}", PlainRegion::open(&junk).unwrap_err());
        assert!(err.contains("power of two"), "{err}");
        // A descriptor page copied into a region of another size.
        let mut bytes = std::fs::read(&path).unwrap();
        bytes.resize(1 << 17, 0);
        std::fs::write(&junk, &bytes).unwrap();
        let err = format!("{:#}", PlainRegion::open(&junk).unwrap_err());
        assert!(err.contains("does not match"), "{err}");
        assert!(PlainRegion::open(&dir.path().join("missing")).is_err());
    }
}
