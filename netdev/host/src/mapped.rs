//! Shared memory mapped from another process (a QEMU guest's ivshmem BAR, a
//! file another process maps) as the [`netdev`] engine sees it.
//!
//! [`MappedRegion`] is a read-only view (the state table, the peer's output
//! section), [`MappedRegionMut`] the one writable view of a byte range (our
//! own output section, our state-table entry). Both are created by an
//! `unsafe fn` over a base pointer and a length; the caller vouches for the
//! mapping (see their `# Safety` sections) and may hand an owner (e.g. the
//! `Arc` of the mapping) to the view to keep it mapped as long as any view
//! lives.
//!
//! # How memory is accessed
//!
//! * Index fields ([`SharedMemory::load_u16`], [`SharedMemoryMut::store_u32`],
//!   …) go through `AtomicU16`/`AtomicU32::from_ptr` on naturally aligned,
//!   in-bounds addresses (checked; a bad offset panics, it is an engine bug).
//! * Frame bytes ([`SharedMemory::read`], [`SharedMemoryMut::write`]) are
//!   copied whole with one `ptr::copy_nonoverlapping` (a `memcpy`) between
//!   the mapping and the caller's private buffer, as rust-vmm's `vm-memory`
//!   does for copies longer than a word. Copies of at most 8 bytes use the
//!   widest naturally aligned volatile accesses that fit (one access for an
//!   aligned `u16`/`u32`/`u64`, at most eight for a misaligned run), so a
//!   field is never torn into bytes needlessly.
//!   [`SharedMemoryMut::fill_zero`] is one `ptr::write_bytes` (`memset`).
//!   There are no byte or word loops over frames.
//!
//! # Safety argument
//!
//! The only other writer of the mapping is the peer, **another process**
//! (a QEMU guest, or the other end's process): it is outside the Rust
//! abstract machine, like a device doing DMA. Its stores cannot form a data
//! race in the sense of the Rust memory model, which speaks about the
//! threads of one program; what the compiler may assume about memory that
//! changes under it is what matters, and the code is written so that no such
//! assumption is ever relied on:
//!
//! * every value the engine parses (indices, ring entries, descriptors,
//!   states) is read once through an atomic into a local and validated
//!   there; no Rust reference into the mapping is ever formed, except the
//!   transmit buffer of [`SharedMemoryMut::bytes_mut`] (below);
//! * a whole-buffer copy out of the mapping reads bytes a conforming peer
//!   does not write while we copy them: the frame was published to us
//!   (Release/Acquire on the avail index) and its slot is not reused until we
//!   complete it (`docs/ivshmem-net.md` §5.6, §11). A hostile peer that
//!   rewrites the frame meanwhile can only make us copy unspecified bytes
//!   into our private buffer, and frame bytes are opaque to the engine: it
//!   decides nothing on them (the bridge forwards them as they are);
//! * a copy into the mapping targets our own output section, which the peer
//!   only reads; a peer reading a buffer we are still filling sees
//!   unspecified bytes, which the protocol already rules out for published
//!   frames (we publish with a Release store after the copy);
//! * [`SharedMemoryMut::bytes_mut`] hands out a `&mut [u8]` into our own
//!   section, borrowed from the one writable handle of that range: only
//!   bytes of a transmit buffer not yet published, which a conforming peer
//!   does not touch. A hostile peer (on the emulated v1 devices nothing maps
//!   our section read-only for it, `docs/descriptor-page.md` §11) could
//!   change bytes under the slice; that corrupts only a frame we send to that
//!   same peer, and the engine never reads its own section back to decide
//!   anything (it keeps shadows of its indices and descriptors).
//!
//! # Not for two threads of one process
//!
//! This backing must **not** be used when the peer is another thread of the
//! same process that may not follow the protocol (a hostile-peer test, a
//! fuzzer): there the peer's stores *are* part of the abstract machine, and a
//! non-atomic `memcpy` racing with its writes is a data race, i.e. undefined
//! behaviour, not just unspecified bytes. [`crate::host::HostMemory`] copies
//! with relaxed atomics for exactly that case. Two threads that both follow
//! the protocol (as in this module's tests) never touch the same bytes
//! concurrently, so this backing is fine for them too.
#![allow(unsafe_code)]

use std::fmt;
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use netdev::{SharedMemory, SharedMemoryMut};

/// Keeps a mapping alive while views of it exist (e.g. an `Arc` of the
/// `memmap2` mapping); anything `Send + Sync` will do.
pub type Owner = Arc<dyn Send + Sync>;

/// A read-only, bounds-checked view of memory mapped from another process.
#[derive(Clone)]
pub struct MappedRegion {
    base: NonNull<u8>,
    length: usize,
    owner: Option<Owner>,
}

// SAFETY: the view is a pointer and a length into a process-wide mapping
// that stays mapped while the view lives (constructor contract); all access
// goes through atomics or copies whose soundness does not depend on the
// thread (module documentation), so the view may move between threads.
unsafe impl Send for MappedRegion {}
// SAFETY: `&MappedRegion` only allows reads (atomic loads and copies out),
// which any number of threads may do at once.
unsafe impl Sync for MappedRegion {}

impl fmt::Debug for MappedRegion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MappedRegion")
            .field("base", &self.base)
            .field("length", &self.length)
            .field("owned", &self.owner.is_some())
            .finish()
    }
}

impl MappedRegion {
    /// A read-only view of the `length` bytes at `base`; `owner`, if given,
    /// is kept until the last view made from this one is dropped.
    ///
    /// # Safety
    ///
    /// The caller guarantees that
    ///
    /// * `base .. base + length` is mapped readable and stays mapped, at the
    ///   same address, for as long as this view or any view made from it
    ///   lives (holding `owner` may be how it does that);
    /// * the bytes are written only by the peer — another process, or a
    ///   thread of this process that follows the protocol (see "Not for two
    ///   threads of one process" above) — and by at most one
    ///   [`MappedRegionMut`] per byte in this process (never by plain Rust
    ///   references or another backing);
    /// * `base` is aligned to at least 4 bytes (a page, in practice), so
    ///   that aligned offsets give aligned addresses.
    pub unsafe fn new(base: NonNull<u8>, length: usize, owner: Option<Owner>) -> Self {
        assert!(
            (base.as_ptr() as usize).is_multiple_of(4),
            "mapping base {base:p} is not 4-byte aligned"
        );
        assert!(
            (base.as_ptr() as usize).checked_add(length).is_some(),
            "mapping wraps around the address space"
        );
        Self {
            base,
            length,
            owner,
        }
    }

    /// A read-only view of `offset .. offset + length` of this view.
    ///
    /// # Panics
    ///
    /// If the range is not inside this view or `offset` is not 4-aligned.
    pub fn subregion(&self, offset: usize, length: usize) -> MappedRegion {
        let address = self.address(offset, length, 4);
        MappedRegion {
            // `address` is inside a mapping, hence non-null.
            base: NonNull::new(address).expect("mapped address"),
            length,
            owner: self.owner.clone(),
        }
    }

    /// The address of `size` bytes at `offset`, after checking that they
    /// lie inside the view and that `offset` is a multiple of `align`.
    fn address(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        let end = offset.checked_add(size).expect("offset overflows");
        assert!(
            end <= self.length,
            "access {offset:#x}+{size} beyond region of {:#x} bytes",
            self.length
        );
        assert!(
            offset.is_multiple_of(align),
            "misaligned {size}-byte access at {offset:#x}"
        );
        // In bounds of the mapping, so no wrap (checked at construction).
        self.base.as_ptr().wrapping_add(offset)
    }

    /// Asserts that `buffer` (the caller's private memory) does not overlap
    /// this view, as `copy_nonoverlapping` requires. A caller could only
    /// break this by passing a slice from [`SharedMemoryMut::bytes_mut`].
    fn assert_disjoint(&self, buffer: *const u8, length: usize) {
        let start = self.base.as_ptr() as usize;
        let end = start + self.length;
        let buffer_start = buffer as usize;
        let buffer_end = buffer_start.saturating_add(length);
        assert!(
            length == 0 || buffer_end <= start || end <= buffer_start,
            "a copy buffer overlaps the shared memory"
        );
    }

    fn atomic_u16(&self, offset: usize) -> &AtomicU16 {
        let address = self.address(offset, 2, 2);
        // SAFETY: in bounds and 2-aligned (checked; the base is 4-aligned);
        // mapped for as long as `self` lives (constructor contract); every
        // access to index fields in this process is atomic, and the peer is
        // outside the abstract machine (module documentation).
        unsafe { AtomicU16::from_ptr(address.cast()) }
    }

    fn atomic_u32(&self, offset: usize) -> &AtomicU32 {
        let address = self.address(offset, 4, 4);
        // SAFETY: as in `atomic_u16`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(address.cast()) }
    }
}

impl SharedMemory for MappedRegion {
    fn len(&self) -> usize {
        self.length
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        u16::from_le(self.atomic_u16(offset).load(order))
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        u32::from_le(self.atomic_u32(offset).load(order))
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        let source = self.address(offset, destination.len(), 1);
        self.assert_disjoint(destination.as_ptr(), destination.len());
        // SAFETY: the source range is inside the mapping (checked) and stays
        // mapped while `self` lives; the destination is the caller's own
        // memory, valid for `len` bytes and disjoint from the mapping
        // (checked). The peer may write the source meanwhile only if it
        // breaks the protocol; the copy then holds unspecified bytes (module
        // documentation).
        unsafe { copy(destination.as_mut_ptr(), source, destination.len()) }
    }
}

/// The one writable view of a byte range of memory mapped from another
/// process (our own output section, our state-table entry).
#[derive(Debug)]
pub struct MappedRegionMut {
    region: MappedRegion,
}

impl MappedRegionMut {
    /// A writable view of the `length` bytes at `base`; `owner` as for
    /// [`MappedRegion::new`].
    ///
    /// # Safety
    ///
    /// Everything [`MappedRegion::new`] requires, and also: the range is
    /// mapped writable, and no other `MappedRegionMut` in this process covers
    /// any byte of it while this one lives (read-only views may).
    pub unsafe fn new(base: NonNull<u8>, length: usize, owner: Option<Owner>) -> Self {
        Self {
            // SAFETY: the caller's obligations include `MappedRegion::new`'s.
            region: unsafe { MappedRegion::new(base, length, owner) },
        }
    }

    /// A read-only view of the same bytes.
    pub fn read_only(&self) -> MappedRegion {
        self.region.clone()
    }
}

impl SharedMemory for MappedRegionMut {
    fn len(&self) -> usize {
        self.region.len()
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        self.region.load_u16(offset, order)
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.region.load_u32(offset, order)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.region.read(offset, destination)
    }
}

impl SharedMemoryMut for MappedRegionMut {
    fn store_u16(&self, offset: usize, value: u16, order: Ordering) {
        self.region.atomic_u16(offset).store(value.to_le(), order);
    }

    fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.region.atomic_u32(offset).store(value.to_le(), order);
    }

    fn write(&self, offset: usize, source: &[u8]) {
        let destination = self.region.address(offset, source.len(), 1);
        self.region.assert_disjoint(source.as_ptr(), source.len());
        // SAFETY: the destination range is inside the mapping (checked),
        // mapped writable, and this is the only writable view of it in this
        // process (constructor contract); the source is the caller's memory,
        // disjoint from the mapping (checked). The peer only reads our
        // section (module documentation).
        unsafe { copy(destination, source.as_ptr(), source.len()) }
    }

    fn fill_zero(&self, offset: usize, length: usize) {
        let destination = self.region.address(offset, length, 1);
        // SAFETY: as in `write`: inside our own writable range, which only
        // this handle writes in this process.
        unsafe { ptr::write_bytes(destination, 0, length) }
    }

    fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8] {
        let address = self.region.address(offset, length, 1);
        // SAFETY: inside the mapping (checked), which stays mapped while
        // `self` lives; this is the only writable view of these bytes in this
        // process (constructor contract) and it is borrowed mutably for the
        // slice's lifetime, so no other access from this process can go
        // through it meanwhile (read-only views would need a caller to read
        // our own unpublished buffer, which the engine never does). The peer
        // is outside the abstract machine; the engine hands out only an
        // unpublished transmit buffer, which a conforming peer does not
        // touch (module documentation).
        unsafe { std::slice::from_raw_parts_mut(address, length) }
    }
}

/// Copies `length` bytes from `source` to `destination`: one `memcpy` for
/// more than 8 bytes, otherwise the widest naturally aligned volatile
/// accesses that fit (vm-memory's rule, so that a small aligned field is one
/// access).
///
/// # Safety
///
/// Both ranges are valid for `length` bytes and do not overlap.
unsafe fn copy(destination: *mut u8, source: *const u8, length: usize) {
    if length > 8 {
        // SAFETY: the caller's contract.
        unsafe { ptr::copy_nonoverlapping(source, destination, length) };
        return;
    }
    let mut done = 0;
    while done < length {
        let remaining = length - done;
        let (to, from) = (destination.wrapping_add(done), source.wrapping_add(done));
        let alignment = to as usize | from as usize;
        let fits = |width: usize| remaining >= width && alignment.is_multiple_of(width);
        // SAFETY: the unit chosen is at most `remaining` bytes wide, so both
        // ranges stay within the caller's valid, disjoint ranges, and both
        // addresses are multiples of its width (the low bits of `alignment`).
        done += unsafe {
            if fits(8) {
                copy_unit::<u64>(to, from)
            } else if fits(4) {
                copy_unit::<u32>(to, from)
            } else if fits(2) {
                copy_unit::<u16>(to, from)
            } else {
                copy_unit::<u8>(to, from)
            }
        };
    }
}

/// One volatile load and store of a `T`; returns its size.
///
/// # Safety
///
/// Both addresses are valid for and aligned to a `T`.
unsafe fn copy_unit<T: Copy>(destination: *mut u8, source: *const u8) -> usize {
    // SAFETY: the caller's contract.
    unsafe {
        ptr::write_volatile(
            destination.cast::<T>(),
            ptr::read_volatile(source.cast::<T>()),
        )
    };
    size_of::<T>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use memmap2::MmapMut;

    /// An anonymous shared mapping of `length` bytes and a writable view of it.
    fn anonymous(length: usize) -> (Arc<MmapMut>, MappedRegionMut) {
        let mut map = MmapMut::map_anon(length).expect("anonymous mapping");
        let base = NonNull::new(map.as_mut_ptr()).expect("mapped");
        let map = Arc::new(map);
        // SAFETY: the mapping is owned by the view (and the returned `Arc`,
        // which the tests only use to keep it alive); nothing else writes it.
        let region = unsafe { MappedRegionMut::new(base, length, Some(map.clone())) };
        (map, region)
    }

    #[test]
    fn copies_at_every_alignment_and_length() {
        const SIZE: usize = 512;
        let (_map, region) = anonymous(SIZE);
        let pattern: Vec<u8> = (0..SIZE).map(|i| (i * 7 + 3) as u8).collect();
        let lengths = (0..=40).chain([63, 64, 65, 127, 128, 129, 255, 300]);
        for length in lengths {
            for offset in 0..16 {
                // Write: only the target bytes change.
                region.fill_zero(0, SIZE);
                region.write(offset, &pattern[..length]);
                let mut whole = vec![0xAA; SIZE];
                region.read(0, &mut whole);
                assert!(whole[..offset].iter().all(|&b| b == 0), "{offset}+{length}");
                assert_eq!(&whole[offset..offset + length], &pattern[..length]);
                assert!(whole[offset + length..].iter().all(|&b| b == 0));
                // Read at the same alignment into a destination at every
                // alignment of its own.
                for skew in 0..8 {
                    let mut back = vec![0x55; length + 8];
                    region.read(offset, &mut back[skew..skew + length]);
                    assert_eq!(&back[skew..skew + length], &pattern[..length]);
                    assert!(back[..skew].iter().all(|&b| b == 0x55));
                    assert!(back[skew + length..].iter().all(|&b| b == 0x55));
                }
                // Zero-fill a range: only it becomes zero.
                region.write(0, &pattern);
                region.fill_zero(offset, length);
                region.read(0, &mut whole);
                assert_eq!(&whole[..offset], &pattern[..offset]);
                assert!(whole[offset..offset + length].iter().all(|&b| b == 0));
                assert_eq!(&whole[offset + length..], &pattern[offset + length..]);
            }
        }
    }

    #[test]
    fn little_endian_fields_and_subregions() {
        let (_map, region) = anonymous(4096);
        region.store_u32(4, 0x1122_3344, Ordering::Relaxed);
        region.store_u16(10, 0xAABB, Ordering::Relaxed);
        let mut bytes = [0; 8];
        region.read(4, &mut bytes);
        assert_eq!(bytes, [0x44, 0x33, 0x22, 0x11, 0, 0, 0xBB, 0xAA]);
        let view = region.read_only().subregion(4, 8);
        assert_eq!(view.len(), 8);
        assert_eq!(view.load_u32(0, Ordering::Acquire), 0x1122_3344);
        assert_eq!(view.load_u16(6, Ordering::Acquire), 0xAABB);
    }

    #[test]
    #[should_panic(expected = "beyond region")]
    fn out_of_range_panics() {
        let (_map, region) = anonymous(4096);
        region
            .read_only()
            .subregion(0, 16)
            .load_u32(16, Ordering::Relaxed);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_index_panics() {
        let (_map, region) = anonymous(4096);
        region.store_u16(3, 1, Ordering::Relaxed);
    }

    #[test]
    #[should_panic(expected = "overlaps")]
    fn copy_from_the_mapping_into_itself_panics() {
        let (_map, mut region) = anonymous(4096);
        let view = region.read_only();
        let slice = region.bytes_mut(0, 64);
        view.read(128, slice);
    }
}
