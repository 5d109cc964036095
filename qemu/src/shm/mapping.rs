//! A mapping of shared memory that guests use at the same time: every
//! access is an atomic or a copy at an explicit offset.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU32, Ordering, fence};

use memmap2::MmapMut;

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
