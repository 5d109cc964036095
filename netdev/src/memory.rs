//! The seam to the outside world: shared-memory access and the notifier.
//!
//! The engine never forms a Rust reference into memory the peer can write.
//! Every access goes through these traits with an explicit byte offset
//! (relative to the start of the region the handle covers) and, for ring
//! indices, an explicit [`Ordering`]. All multi-byte fields are little-endian
//! on the wire (docs/ivshmem-net.md §3.5); implementations on little-endian hosts
//! (x86_64, arm64) load and store them natively.
//!
//! # Contract for implementations
//!
//! * The engine validates every offset before it calls a method, so an
//!   out-of-range or misaligned offset is an engine bug. Implementations may
//!   panic on one, and test backings should (loudly), so hostile-peer tests
//!   catch it.
//! * `load_u16`/`load_u32`/`store_u16`/`store_u32` are single-copy atomic
//!   accesses of naturally aligned fields with at least the requested ordering.
//! * [`SharedMemory::read`], [`SharedMemoryMut::write`] and
//!   [`SharedMemoryMut::fill_zero`] copy opaque bytes; they need no ordering
//!   beyond what the surrounding index accesses and fences provide, and must
//!   tolerate a peer that writes the same bytes concurrently (the result is
//!   then unspecified bytes, never undefined behaviour).
#![forbid(unsafe_code)]

use core::sync::atomic::Ordering;

/// A view of shared memory the engine only reads: the state table and the
/// peer's output section (docs/ivshmem-v2.md §6.1).
///
/// # Panics
///
/// Implementations may panic when `offset + size` exceeds [`len`](Self::len)
/// or an index field is misaligned; the engine never asks for that.
pub trait SharedMemory {
    /// The size of the region in bytes.
    fn len(&self) -> usize;

    /// Whether the region is empty.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Loads the little-endian `u16` at `offset` (2-byte aligned) with `order`.
    fn load_u16(&self, offset: usize, order: Ordering) -> u16;

    /// Loads the little-endian `u32` at `offset` (4-byte aligned) with `order`.
    fn load_u32(&self, offset: usize, order: Ordering) -> u32;

    /// Copies `destination.len()` bytes starting at `offset` into `destination`.
    ///
    /// `offset` has no alignment requirement.
    fn read(&self, offset: usize, destination: &mut [u8]);
}

/// The engine's own output section: readable and writable by us, read-only
/// for the peer.
///
/// # Panics
///
/// As for [`SharedMemory`].
pub trait SharedMemoryMut: SharedMemory {
    /// Stores `value` as little-endian `u16` at `offset` (2-byte aligned).
    fn store_u16(&self, offset: usize, value: u16, order: Ordering);

    /// Stores `value` as little-endian `u32` at `offset` (4-byte aligned).
    fn store_u32(&self, offset: usize, value: u32, order: Ordering);

    /// Copies `source` into the region starting at `offset` (any alignment).
    fn write(&self, offset: usize, source: &[u8]);

    /// Sets `length` bytes starting at `offset` to zero.
    fn fill_zero(&self, offset: usize, length: usize);

    /// Returns the bytes `offset..offset + length` of our own section for
    /// zero-copy transmission.
    ///
    /// The engine asks only for bytes of a transmit buffer that is not
    /// published to the peer (it is either fresh or its FIFO completion has
    /// been seen), so a peer that follows the protocol does not read them
    /// while the slice lives. Kernel implementations map the section and
    /// hand out a slice of that mapping; the peer VM is outside the Rust
    /// abstract machine and can only observe the bytes.
    fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8];
}

/// Rings the peer's doorbell and writes our State register
/// (docs/ivshmem-v2.md §5, docs/ivshmem-net.md §1.2, §2.6).
///
/// The engine issues `fence(SeqCst)` before calling either method
/// (docs/ivshmem-net.md §3.7), so implementations need no barrier of their
/// own for the engine: the register write (a volatile MMIO store in the
/// kernel) is enough. One that has a barrier anyway, like the kernel's
/// device layer, which serves other users too, is still correct.
pub trait Notifier {
    /// Rings the peer's doorbell on `vector`: writes
    /// `(peer_id << 16) | vector` to the Doorbell register.
    fn notify(&self, vector: u16);

    /// Writes our State register. The device copies the value into
    /// `state_table[own_id]` and, if it changed, interrupts the peer on
    /// vector 0.
    fn set_state(&self, state: u32);
}

impl<T: SharedMemory + ?Sized> SharedMemory for &T {
    fn len(&self) -> usize {
        (**self).len()
    }
    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        (**self).load_u16(offset, order)
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        (**self).load_u32(offset, order)
    }
    fn read(&self, offset: usize, destination: &mut [u8]) {
        (**self).read(offset, destination)
    }
}

impl<T: Notifier + ?Sized> Notifier for &T {
    fn notify(&self, vector: u16) {
        (**self).notify(vector)
    }
    fn set_state(&self, state: u32) {
        (**self).set_state(state)
    }
}
