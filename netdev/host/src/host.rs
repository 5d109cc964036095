//! Host backing for tests and benchmarks: shared memory between threads and
//! a simulated ivshmem-v2 device (state table semantics and doorbells).
//!
//! # Safety argument
//!
//! Accesses are atomic (except `bytes_mut`, below), so a peer thread that breaks the protocol yields
//! unspecified bytes, never a data race (`mapped` is the backing for memory
//! shared with another process). [`HostMemory`] owns one
//! zeroed, page-aligned heap allocation, shared by `Arc` between threads and
//! freed when the last handle drops. Every access goes through a handle that
//! checks its range (panicking on a bad offset, which is an engine bug):
//!
//! * index fields are accessed as `AtomicU16`/`AtomicU32` created with
//!   `from_ptr` on naturally aligned, in-bounds addresses;
//! * opaque bytes ([`SharedMemory::read`], [`SharedMemoryMut::write`],
//!   [`SharedMemoryMut::fill_zero`]) are copied with relaxed `AtomicU8` /
//!   `AtomicU64` accesses, so a peer writing concurrently yields
//!   unspecified bytes, not a data race;
//! * [`SharedMemoryMut::bytes_mut`] hands out a plain `&mut [u8]`. It is
//!   only available on a [`HostRegionMut`], of which at most one exists per
//!   byte range (enforced at creation), and it borrows that handle mutably.
//!   The remaining obligation is the protocol's: the other thread must not
//!   read those bytes while the slice lives. The engine only asks for bytes
//!   of an unpublished transmit buffer, which a peer that follows the
//!   protocol never reads; tests that play a hostile peer do so on the same
//!   thread as the engine.
//!
//! Mixed-size atomic accesses to the same bytes (a `u64` zero-fill over
//! `u16` indices) are fine for the hardware but outside the Rust memory
//! model's definition when they race; they only race when a peer resets
//! its section while we read it. miri is not installed on this machine, so
//! `cargo miri test` has not been run; the backing is written to be
//! miri-checkable otherwise.
#![allow(unsafe_code)]

use std::alloc::{self, Layout as AllocationLayout};
use std::ptr::NonNull;
use std::sync::atomic::{AtomicU8, AtomicU16, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;
use std::vec::Vec;

use netdev::{Notifier, SharedMemory, SharedMemoryMut};

const PAGE_SIZE: usize = 4096;

/// The allocation behind [`HostMemory`].
#[derive(Debug)]
struct Allocation {
    base: NonNull<u8>,
    layout: AllocationLayout,
    /// Byte ranges currently owned by a [`HostRegionMut`].
    writable: Mutex<Vec<(usize, usize)>>,
}

// SAFETY: the allocation is plain memory that every handle accesses only
// through atomics, except `bytes_mut`, whose exclusivity is argued in the
// module documentation; nothing in it is tied to a thread.
unsafe impl Send for Allocation {}
// SAFETY: as for `Send`: shared access is atomic.
unsafe impl Sync for Allocation {}

impl Drop for Allocation {
    fn drop(&mut self) {
        // SAFETY: `base` came from `alloc_zeroed` with exactly this layout,
        // and this is the last owner (the `Arc` is dropping it).
        unsafe { alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

impl Allocation {
    /// The address of byte `offset`, after checking `offset + size ≤ len`
    /// and `offset % align == 0`.
    fn address(&self, offset: usize, size: usize, align: usize) -> *mut u8 {
        let end = offset.checked_add(size).expect("offset overflows");
        assert!(
            end <= self.layout.size(),
            "access {offset:#x}+{size} beyond {:#x}",
            self.layout.size()
        );
        assert!(
            offset.is_multiple_of(align),
            "misaligned access at {offset:#x}"
        );
        self.base.as_ptr().wrapping_add(offset)
    }

    fn u16(&self, offset: usize) -> &AtomicU16 {
        let address = self.address(offset, 2, 2);
        // SAFETY: in bounds and 2-aligned (checked by `address`; the base is
        // page-aligned); the memory lives as long as `self`; all concurrent
        // accesses to it are atomic (module documentation).
        unsafe { AtomicU16::from_ptr(address.cast()) }
    }

    fn u32(&self, offset: usize) -> &AtomicU32 {
        let address = self.address(offset, 4, 4);
        // SAFETY: as in `u16`, with 4-byte alignment.
        unsafe { AtomicU32::from_ptr(address.cast()) }
    }

    /// Splits `offset..offset + length` (checked once to lie inside the
    /// allocation) into a head of single bytes up to 8-byte alignment, whole
    /// aligned words, and a tail of bytes, and hands each unit to `each`
    /// with its position in the range. One bounds check per call and plain
    /// `mov`s per word on x86 keep the copies cheap while every access stays
    /// atomic.
    fn for_each_unit(&self, offset: usize, length: usize, mut each: impl FnMut(usize, Unit<'_>)) {
        let base = self.address(offset, length, 1);
        let head = base.align_offset(8).min(length);
        let words = (length - head) / 8;
        let tail = head + 8 * words;
        for position in (0..head).chain(tail..length) {
            // SAFETY: `position < length`, inside the checked range; the
            // memory lives as long as `self` and is only accessed atomically
            // (module documentation).
            each(
                position,
                Unit::Byte(unsafe { AtomicU8::from_ptr(base.add(position)) }),
            );
        }
        for position in (head..tail).step_by(8) {
            // SAFETY: as above; `base + head` is 8-aligned and every word
            // ends at most at `tail ≤ length`.
            each(
                position,
                Unit::Word(unsafe { AtomicU64::from_ptr(base.add(position).cast()) }),
            );
        }
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.for_each_unit(offset, destination.len(), |position, unit| match unit {
            Unit::Byte(byte) => destination[position] = byte.load(Ordering::Relaxed),
            Unit::Word(word) => destination[position..position + 8]
                .copy_from_slice(&word.load(Ordering::Relaxed).to_ne_bytes()),
        });
    }

    fn write(&self, offset: usize, source: &[u8]) {
        self.for_each_unit(offset, source.len(), |position, unit| match unit {
            Unit::Byte(byte) => byte.store(source[position], Ordering::Relaxed),
            Unit::Word(word) => {
                let mut bytes = [0; 8];
                bytes.copy_from_slice(&source[position..position + 8]);
                word.store(u64::from_ne_bytes(bytes), Ordering::Relaxed);
            }
        });
    }

    fn fill_zero(&self, offset: usize, length: usize) {
        // Whole sections are zeroed at every handshake: a loop of its own
        // over the words (the frame copies above also branch per unit).
        let base = self.address(offset, length, 1);
        let head = base.align_offset(8).min(length);
        let words = (length - head) / 8;
        let tail = head + 8 * words;
        for position in (0..head).chain(tail..length) {
            // SAFETY: as in `for_each_unit`.
            unsafe { AtomicU8::from_ptr(base.add(position)) }.store(0, Ordering::Relaxed);
        }
        let first = base.wrapping_add(head).cast::<u64>();
        for index in 0..words {
            // SAFETY: as in `for_each_unit`: aligned words inside the range.
            unsafe { AtomicU64::from_ptr(first.add(index)) }.store(0, Ordering::Relaxed);
        }
    }
}

/// One atomic unit of a copy: a byte at an unaligned end, or an aligned word.
enum Unit<'a> {
    Byte(&'a AtomicU8),
    Word(&'a AtomicU64),
}

/// A zeroed, page-aligned block of memory shared between threads.
#[derive(Debug, Clone)]
pub struct HostMemory {
    allocation: Arc<Allocation>,
}

impl HostMemory {
    /// Allocates `length` zeroed bytes (at least one page is allocated).
    ///
    /// # Panics
    ///
    /// If the allocation fails or `length` is absurdly large.
    pub fn new(length: usize) -> Self {
        let layout = AllocationLayout::from_size_align(length.max(PAGE_SIZE), PAGE_SIZE)
            .expect("shared memory size");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(base) else {
            alloc::handle_alloc_error(layout)
        };
        Self {
            allocation: Arc::new(Allocation {
                base,
                layout,
                writable: Mutex::new(Vec::new()),
            }),
        }
    }

    /// The size in bytes.
    pub fn len(&self) -> usize {
        self.allocation.layout.size()
    }

    /// Whether the memory is empty (never: at least one page).
    pub fn is_empty(&self) -> bool {
        false
    }

    /// A read-only view of `offset..offset + length`.
    ///
    /// # Panics
    ///
    /// If the range is outside the memory.
    pub fn region(&self, offset: usize, length: usize) -> HostRegion {
        self.allocation.address(offset, length, 1);
        HostRegion {
            allocation: Arc::clone(&self.allocation),
            base: offset,
            length,
        }
    }

    /// A writable view of `offset..offset + length`, or `None` if a
    /// writable view overlapping it exists.
    ///
    /// # Panics
    ///
    /// If the range is outside the memory.
    pub fn region_mut(&self, offset: usize, length: usize) -> Option<HostRegionMut> {
        self.allocation.address(offset, length, 1);
        let end = offset + length;
        let mut writable = self.allocation.writable.lock().expect("lock");
        if writable
            .iter()
            .any(|&(start, stop)| offset < stop && start < end)
        {
            return None;
        }
        writable.push((offset, end));
        Some(HostRegionMut {
            region: HostRegion {
                allocation: Arc::clone(&self.allocation),
                base: offset,
                length,
            },
        })
    }
}

/// A read-only, bounds-checked view of part of a [`HostMemory`].
#[derive(Debug, Clone)]
pub struct HostRegion {
    allocation: Arc<Allocation>,
    base: usize,
    length: usize,
}

impl HostRegion {
    fn offset(&self, offset: usize, size: usize) -> usize {
        let end = offset.checked_add(size).expect("offset overflows");
        assert!(
            end <= self.length,
            "access {offset:#x}+{size} beyond region of {:#x} bytes",
            self.length
        );
        self.base + offset
    }

    /// Stores a `u32` with the given ordering, bypassing read-only policy:
    /// used by the simulated device to write the state table.
    fn device_store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.allocation
            .u32(self.offset(offset, 4))
            .store(value.to_le(), order);
    }
}

impl SharedMemory for HostRegion {
    fn len(&self) -> usize {
        self.length
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        u16::from_le(self.allocation.u16(self.offset(offset, 2)).load(order))
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        u32::from_le(self.allocation.u32(self.offset(offset, 4)).load(order))
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        let start = self.offset(offset, destination.len());
        self.allocation.read(start, destination);
    }
}

/// The one writable view of a byte range of a [`HostMemory`].
#[derive(Debug)]
pub struct HostRegionMut {
    region: HostRegion,
}

impl HostRegionMut {
    /// A read-only view of the same bytes.
    pub fn read_only(&self) -> HostRegion {
        self.region.clone()
    }
}

impl Drop for HostRegionMut {
    fn drop(&mut self) {
        let mut writable = self.region.allocation.writable.lock().expect("lock");
        let range = (self.region.base, self.region.base + self.region.length);
        if let Some(index) = writable.iter().position(|&entry| entry == range) {
            writable.swap_remove(index);
        }
    }
}

impl SharedMemory for HostRegionMut {
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

impl SharedMemoryMut for HostRegionMut {
    fn store_u16(&self, offset: usize, value: u16, order: Ordering) {
        let region = &self.region;
        region
            .allocation
            .u16(region.offset(offset, 2))
            .store(value.to_le(), order);
    }

    fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        let region = &self.region;
        region
            .allocation
            .u32(region.offset(offset, 4))
            .store(value.to_le(), order);
    }

    fn write(&self, offset: usize, source: &[u8]) {
        let start = self.region.offset(offset, source.len());
        self.region.allocation.write(start, source);
    }

    fn fill_zero(&self, offset: usize, length: usize) {
        let start = self.region.offset(offset, length);
        self.region.allocation.fill_zero(start, length);
    }

    fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8] {
        let start = self.region.offset(offset, length);
        let address = self.region.allocation.address(start, length, 1);
        // SAFETY: the range is inside the allocation (checked), which lives
        // as long as `self`. This handle is the only writable view of these
        // bytes (`region_mut` refuses overlaps) and is borrowed mutably for
        // the slice's lifetime, so no other access goes through this
        // process's handles except reads by the peer, which the protocol
        // rules out for unpublished transmit buffers (module documentation).
        unsafe { std::slice::from_raw_parts_mut(address, length) }
    }
}

/// Number of doorbell vectors the simulated device counts.
pub const HOST_VECTORS: usize = 4;

/// The interrupt side of one simulated peer: counts per vector and a
/// condition variable to sleep on.
#[derive(Debug, Default)]
pub struct Doorbell {
    pending: Mutex<bool>,
    condvar: Condvar,
    rings: [AtomicU64; HOST_VECTORS],
}

impl Doorbell {
    fn ring(&self, vector: u16) {
        if let Some(counter) = self.rings.get(usize::from(vector)) {
            counter.fetch_add(1, Ordering::Relaxed);
        }
        let mut pending = self.pending.lock().expect("lock");
        *pending = true;
        self.condvar.notify_all();
    }

    /// Waits until the doorbell rang (on any vector) or `timeout` passed;
    /// returns whether it rang. Clears the pending flag.
    pub fn wait(&self, timeout: Duration) -> bool {
        let pending = self.pending.lock().expect("lock");
        let (mut pending, _) = self
            .condvar
            .wait_timeout_while(pending, timeout, |pending| !*pending)
            .expect("lock");
        std::mem::replace(&mut *pending, false)
    }

    /// Times this doorbell rang on `vector`.
    pub fn count(&self, vector: u16) -> u64 {
        self.rings
            .get(usize::from(vector))
            .map_or(0, |counter| counter.load(Ordering::Relaxed))
    }
}

/// A simulated two-peer ivshmem-v2 device: a state table of 4096 bytes, no
/// R/W section, and two output sections (docs/ivshmem-v2.md §6.1).
#[derive(Debug, Clone)]
pub struct HostLink {
    memory: HostMemory,
    section_size: usize,
    doorbells: Arc<[Doorbell; 2]>,
}

/// Size of the simulated state table.
pub const STATE_TABLE_SIZE: usize = 4096;

impl HostLink {
    /// Creates the shared memory for output sections of `section_size`
    /// bytes each.
    pub fn new(section_size: usize) -> Self {
        Self {
            memory: HostMemory::new(STATE_TABLE_SIZE + 2 * section_size),
            section_size,
            doorbells: Arc::new([Doorbell::default(), Doorbell::default()]),
        }
    }

    /// The whole shared memory.
    pub fn memory(&self) -> &HostMemory {
        &self.memory
    }

    /// The output section size.
    pub fn section_size(&self) -> usize {
        self.section_size
    }

    /// Offset of peer `id`'s output section in the memory.
    pub fn section_offset(&self, id: u16) -> usize {
        STATE_TABLE_SIZE + usize::from(id) * self.section_size
    }

    /// Read-only view of the state table.
    pub fn state_table(&self) -> HostRegion {
        self.memory.region(0, STATE_TABLE_SIZE)
    }

    /// Read-only view of peer `id`'s output section.
    pub fn section(&self, id: u16) -> HostRegion {
        self.memory
            .region(self.section_offset(id), self.section_size)
    }

    /// The writable view of peer `id`'s output section, or `None` if it is
    /// taken.
    pub fn section_mut(&self, id: u16) -> Option<HostRegionMut> {
        self.memory
            .region_mut(self.section_offset(id), self.section_size)
    }

    /// The doorbell that interrupts peer `id`.
    pub fn doorbell(&self, id: u16) -> &Doorbell {
        &self.doorbells[usize::from(id)]
    }

    /// The notifier peer `id` uses.
    pub fn notifier(&self, id: u16) -> HostNotifier {
        HostNotifier {
            id,
            state_table: self.state_table(),
            doorbells: Arc::clone(&self.doorbells),
        }
    }

    /// The three views and the notifier for peer `id` (0 or 1), or `None`
    /// if its section is taken.
    pub fn endpoint(
        &self,
        id: u16,
    ) -> Option<(netdev::Sections<HostRegion, HostRegionMut>, HostNotifier)> {
        let own = self.section_mut(id)?;
        Some((
            netdev::Sections {
                state_table: self.state_table(),
                own,
                peer: self.section(1 - id),
            },
            self.notifier(id),
        ))
    }

    /// What the hypervisor does when peer `id` resets or disappears: its
    /// state table entry becomes 0 and the other peer is interrupted on
    /// vector 0 (docs/ivshmem-net.md §1.4).
    pub fn reset_peer(&self, id: u16) {
        self.notifier(id).set_state(0);
    }

    /// Peer `id`'s state table entry.
    pub fn state(&self, id: u16) -> u32 {
        self.state_table()
            .load_u32(4 * usize::from(id), Ordering::Acquire)
    }
}

/// The notifier of one simulated peer: writes the state table like the
/// device and rings the other peer's doorbell.
#[derive(Debug, Clone)]
pub struct HostNotifier {
    id: u16,
    state_table: HostRegion,
    doorbells: Arc<[Doorbell; 2]>,
}

impl Notifier for HostNotifier {
    fn notify(&self, vector: u16) {
        self.doorbells[usize::from(1 - self.id)].ring(vector);
    }

    fn set_state(&self, state: u32) {
        let offset = 4 * usize::from(self.id);
        let previous = self.state_table.load_u32(offset, Ordering::SeqCst);
        self.state_table
            .device_store_u32(offset, state, Ordering::SeqCst);
        if previous != state {
            self.doorbells[usize::from(1 - self.id)].ring(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn copies_at_every_alignment() {
        let memory = HostMemory::new(256);
        let region = memory.region_mut(0, 256).unwrap();
        let source: Vec<u8> = (0..100).collect();
        for offset in 0..16 {
            for length in [0, 1, 7, 8, 9, 31, 100] {
                region.fill_zero(0, 256);
                region.write(offset, &source[..length]);
                let mut back = vec![0xAA; length];
                region.read(offset, &mut back);
                assert_eq!(back, source[..length]);
                let mut whole = vec![0; 256];
                region.read(0, &mut whole);
                assert!(whole[..offset].iter().all(|&byte| byte == 0));
                assert!(whole[offset + length..].iter().all(|&byte| byte == 0));
            }
        }
    }

    #[test]
    fn writable_regions_are_exclusive() {
        let memory = HostMemory::new(8192);
        let first = memory.region_mut(0, 4096).unwrap();
        assert!(memory.region_mut(4095, 2).is_none());
        let second = memory.region_mut(4096, 4096).unwrap();
        drop(first);
        assert!(memory.region_mut(0, 4096).is_some());
        drop(second);
    }

    #[test]
    fn little_endian_fields() {
        let memory = HostMemory::new(64);
        let region = memory.region_mut(0, 64).unwrap();
        region.store_u32(4, 0x1122_3344, Ordering::Relaxed);
        region.store_u16(10, 0xAABB, Ordering::Relaxed);
        let mut bytes = [0; 8];
        region.read(4, &mut bytes);
        assert_eq!(bytes, [0x44, 0x33, 0x22, 0x11, 0, 0, 0xBB, 0xAA]);
    }

    #[test]
    #[should_panic(expected = "beyond region")]
    fn out_of_range_panics() {
        let memory = HostMemory::new(4096);
        memory.region(0, 16).load_u32(16, Ordering::Relaxed);
    }
}
