//! Shared memory: bounds-checked windows over the identity-mapped sections
//! of an ivshmem device, accessed with atomics and raw copies, never through
//! Rust references into memory another VM can write.
//!
//! This is the only code that turns shared-memory addresses into pointers:
//! the descriptor page, the state table, the R/W section, the output
//! sections and the `selftest=shm` probe all go through a [`Window`].
//! (Device registers and the MSI-X table are MMIO, not shared memory; they
//! have their own accessors.)
//!
//! A window's access marker says what it may do: [`ReadOnly`] windows load
//! and copy out, [`ReadWrite`] windows also store and copy in. Neither hands
//! out slices, so several windows may cover the same bytes (the state table
//! is read through one and, in emulation, our entry written through
//! another). [`OwnWindow`], over our own output section, is the one window
//! that lends a `&mut [u8]`: the device hands out exactly one, and no other
//! window covers its section.
//!
//! Other VMs lie outside the Rust abstract machine. What they write
//! concurrently makes a copy return unspecified bytes, never undefined
//! behaviour: every multi-byte field the protocols synchronise on is read
//! and written with single-copy atomic accesses here.

use core::marker::PhantomData;
use core::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, Ordering};

use super::layout::Region;

/// What a [`Window`] may do with its bytes.
pub trait Access: private::Sealed {}

/// Loads and copies out only.
#[derive(Debug, Clone, Copy)]
pub enum ReadOnly {}

/// Loads, stores and copies both ways.
#[derive(Debug, Clone, Copy)]
pub enum ReadWrite {}

impl Access for ReadOnly {}
impl Access for ReadWrite {}

mod private {
    pub trait Sealed {}
    impl Sealed for super::ReadOnly {}
    impl Sealed for super::ReadWrite {}
}

/// A mapped range of shared memory.
///
/// Invariant: `[base, base + length)` is identity-mapped for the life of the
/// kernel, readable, and writable if `A` is [`ReadWrite`]; no `&mut` to any
/// of it exists except through an [`OwnWindow`], which no other window
/// covers.
#[derive(Debug)]
pub struct Window<A: Access = ReadOnly> {
    base: usize,
    length: usize,
    access: PhantomData<A>,
}

impl<A: Access> Clone for Window<A> {
    fn clone(&self) -> Self {
        *self
    }
}

impl<A: Access> Copy for Window<A> {}

impl Window<ReadOnly> {
    /// A read-only window over `region`.
    ///
    /// # Safety
    ///
    /// The region must be mapped readable for the rest of the kernel's life
    /// and must not overlap an [`OwnWindow`].
    pub unsafe fn new(region: Region) -> Self {
        Self {
            base: region.address as usize,
            length: region.size as usize,
            access: PhantomData,
        }
    }
}

impl Window<ReadWrite> {
    /// A writable window over `region`.
    ///
    /// # Safety
    ///
    /// The region must be mapped readable and writable for the rest of the
    /// kernel's life and must not overlap an [`OwnWindow`].
    pub unsafe fn new_writable(region: Region) -> Self {
        Self {
            base: region.address as usize,
            length: region.size as usize,
            access: PhantomData,
        }
    }
}

impl<A: Access> Window<A> {
    /// The size of the window in bytes.
    pub fn len(&self) -> usize {
        self.length
    }

    /// Whether the window is empty (an R/W section may be).
    pub fn is_empty(&self) -> bool {
        self.length == 0
    }

    /// The address of `size` bytes at `offset`, aligned to `align`.
    ///
    /// # Panics
    ///
    /// If the bytes do not lie inside the window or are misaligned.
    fn address(&self, offset: usize, size: usize, align: usize) -> usize {
        let end = offset.checked_add(size).expect("offset overflow");
        assert!(
            end <= self.length,
            "shared-memory access {offset:#x}+{size:#x} beyond {:#x}",
            self.length
        );
        let address = self.base + offset;
        assert!(
            address.is_multiple_of(align),
            "misaligned {size}-byte access at {offset:#x}"
        );
        address
    }

    /// Loads the `u16` at `offset` (2-byte aligned) with `order`.
    ///
    /// # Panics
    ///
    /// If the field lies outside the window or is misaligned.
    pub fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        let address = self.address(offset, 2, 2);
        // SAFETY: mapped and readable (type invariant), inside the window and
        // aligned (checked). Every access to shared fields is atomic, and no
        // `&mut` covers this memory, so this races with nothing the abstract
        // machine knows; other VMs are outside it.
        unsafe { AtomicU16::from_ptr(address as *mut u16) }.load(order)
    }

    /// Loads the `u32` at `offset` (4-byte aligned) with `order`.
    ///
    /// # Panics
    ///
    /// If the field lies outside the window or is misaligned.
    pub fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        let address = self.address(offset, 4, 4);
        // SAFETY: as in `load_u16`.
        unsafe { AtomicU32::from_ptr(address as *mut u32) }.load(order)
    }

    /// Loads the `u64` at `offset` (8-byte aligned) with `order`.
    ///
    /// # Panics
    ///
    /// If the field lies outside the window or is misaligned.
    pub fn load_u64(&self, offset: usize, order: Ordering) -> u64 {
        let address = self.address(offset, 8, 8);
        // SAFETY: as in `load_u16`.
        unsafe { AtomicU64::from_ptr(address as *mut u64) }.load(order)
    }

    /// Copies `destination.len()` bytes at `offset` (any alignment) into
    /// `destination`. Bytes another VM writes meanwhile come out unspecified.
    ///
    /// # Panics
    ///
    /// If the bytes lie outside the window.
    pub fn read(&self, offset: usize, destination: &mut [u8]) {
        let address = self.address(offset, destination.len(), 1);
        // SAFETY: the source lies inside the mapped window (checked) and
        // cannot overlap `destination`, which is kernel memory. Only other
        // VMs can write the source meanwhile (no `&mut` covers it), which
        // yields unspecified bytes.
        unsafe {
            core::ptr::copy_nonoverlapping(
                address as *const u8,
                destination.as_mut_ptr(),
                destination.len(),
            )
        }
    }
}

impl Window<ReadWrite> {
    /// Stores `value` as the `u16` at `offset` (2-byte aligned) with `order`.
    ///
    /// # Panics
    ///
    /// If the field lies outside the window or is misaligned.
    pub fn store_u16(&self, offset: usize, value: u16, order: Ordering) {
        let address = self.address(offset, 2, 2);
        // SAFETY: as in `load_u16`; the window is mapped writable (type invariant).
        unsafe { AtomicU16::from_ptr(address as *mut u16) }.store(value, order)
    }

    /// Stores `value` as the `u32` at `offset` (4-byte aligned) with `order`.
    ///
    /// # Panics
    ///
    /// If the field lies outside the window or is misaligned.
    pub fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        let address = self.address(offset, 4, 4);
        // SAFETY: as in `store_u16`.
        unsafe { AtomicU32::from_ptr(address as *mut u32) }.store(value, order)
    }

    /// Stores `value` as the `u64` at `offset` (8-byte aligned) with `order`.
    ///
    /// # Panics
    ///
    /// If the field lies outside the window or is misaligned.
    pub fn store_u64(&self, offset: usize, value: u64, order: Ordering) {
        let address = self.address(offset, 8, 8);
        // SAFETY: as in `store_u16`.
        unsafe { AtomicU64::from_ptr(address as *mut u64) }.store(value, order)
    }

    /// Copies `source` into the window at `offset` (any alignment).
    ///
    /// # Panics
    ///
    /// If the bytes lie outside the window.
    pub fn write(&self, offset: usize, source: &[u8]) {
        let address = self.address(offset, source.len(), 1);
        // SAFETY: the destination lies inside the window, mapped writable
        // (checked; type invariant), and cannot overlap `source`, which is
        // kernel memory; no `&mut` covers the destination.
        unsafe { core::ptr::copy_nonoverlapping(source.as_ptr(), address as *mut u8, source.len()) }
    }

    /// Sets `length` bytes at `offset` to zero.
    ///
    /// # Panics
    ///
    /// If the bytes lie outside the window.
    pub fn fill_zero(&self, offset: usize, length: usize) {
        let address = self.address(offset, length, 1);
        // SAFETY: as in `write`.
        unsafe { core::ptr::write_bytes(address as *mut u8, 0, length) }
    }
}

/// Our own output section, readable and writable, and the only window that
/// lends out a `&mut [u8]` ([`bytes_mut`](Self::bytes_mut)).
///
/// Invariant: as for `Window<ReadWrite>`, and no other window covers the
/// section.
///
/// On a real ivshmem-v2 device the peer cannot write this section (the
/// device maps it read-only for the peer); on the emulated v1 devices
/// nothing stops a hostile peer from writing it, which can only corrupt
/// frames we send to that same peer: the engine never reads its own
/// section's bytes back to make decisions (it keeps shadows of its own
/// indices and descriptors).
#[derive(Debug)]
pub struct OwnWindow(Window<ReadWrite>);

impl OwnWindow {
    /// The window over our own output section `region`.
    ///
    /// # Safety
    ///
    /// The region must be mapped readable and writable for the rest of the
    /// kernel's life, and no other window may cover any of it.
    pub unsafe fn new(region: Region) -> Self {
        // SAFETY: the caller's obligation includes `new_writable`'s.
        Self(unsafe { Window::new_writable(region) })
    }

    /// The window's loads, stores and copies (which take `&self` and never
    /// overlap a slice from [`bytes_mut`](Self::bytes_mut), since that
    /// borrows `self` mutably).
    pub fn window(&self) -> &Window<ReadWrite> {
        &self.0
    }

    /// The bytes `offset..offset + length`, to be written in place.
    ///
    /// # Panics
    ///
    /// If the bytes lie outside the window.
    pub fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8] {
        let address = self.0.address(offset, length, 1);
        // SAFETY: inside our own section (checked), mapped writable; no
        // other window covers it (type invariant) and `&mut self` keeps a
        // second slice or an access through `window()` from being made
        // while this one lives. What another VM does to these bytes is
        // outside the abstract machine (see the type's documentation).
        unsafe { core::slice::from_raw_parts_mut(address as *mut u8, length) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    /// A region over a leaked host buffer of `size` bytes, 8-byte aligned.
    fn region(size: usize) -> Region {
        let buffer = vec![0u64; size.div_ceil(8)].leak();
        Region {
            address: buffer.as_mut_ptr() as u64,
            size: size as u64,
        }
    }

    #[test]
    fn writable_windows_store_what_read_only_windows_load() {
        let region = region(64);
        // SAFETY: the leaked buffer lives for ever; no OwnWindow covers it.
        let (writer, reader) = unsafe { (Window::new_writable(region), Window::new(region)) };
        writer.store_u32(4, 0xdead_beef, Ordering::Release);
        writer.store_u16(10, 0x1234, Ordering::Relaxed);
        writer.store_u64(16, u64::MAX - 1, Ordering::Relaxed);
        writer.write(33, b"token");
        assert_eq!(reader.load_u32(4, Ordering::Acquire), 0xdead_beef);
        assert_eq!(reader.load_u16(10, Ordering::Relaxed), 0x1234);
        assert_eq!(reader.load_u64(16, Ordering::Relaxed), u64::MAX - 1);
        let mut bytes = [0u8; 5];
        reader.read(33, &mut bytes);
        assert_eq!(&bytes, b"token");
        writer.fill_zero(32, 8);
        reader.read(33, &mut bytes);
        assert_eq!(bytes, [0; 5]);
        assert_eq!((reader.len(), reader.is_empty()), (64, false));
    }

    #[test]
    #[should_panic(expected = "beyond")]
    fn accesses_past_the_end_panic() {
        // SAFETY: as above.
        let window = unsafe { Window::new(region(16)) };
        window.load_u64(16, Ordering::Relaxed);
    }

    #[test]
    #[should_panic(expected = "misaligned")]
    fn misaligned_fields_panic() {
        // SAFETY: as above.
        let window = unsafe { Window::new(region(16)) };
        window.load_u32(2, Ordering::Relaxed);
    }

    #[test]
    fn an_empty_window_refuses_every_field() {
        // SAFETY: as above.
        let window = unsafe { Window::new(region(0)) };
        assert!(window.is_empty());
        let mut nothing = [0u8; 0];
        window.read(0, &mut nothing);
        assert!(std::panic::catch_unwind(|| window.load_u16(0, Ordering::Relaxed)).is_err());
    }

    #[test]
    fn our_own_window_lends_its_bytes() {
        let region = region(32);
        // SAFETY: as above, and this is the only window over the buffer.
        let mut own = unsafe { OwnWindow::new(region) };
        own.bytes_mut(8, 4).copy_from_slice(&[1, 2, 3, 4]);
        assert_eq!(
            own.window().load_u32(8, Ordering::Relaxed),
            u32::from_le_bytes([1, 2, 3, 4])
        );
    }
}
