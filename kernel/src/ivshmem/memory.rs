//! Shared memory as the netdev engine sees it: bounds-checked windows over
//! the identity-mapped sections, accessed with atomics and raw copies, never
//! through Rust references into memory the peer can write.
//!
//! This is the only code that turns shared-memory addresses into pointers.

use core::sync::atomic::{AtomicU16, AtomicU32, Ordering};

use super::layout::Region;

/// A mapped section of shared memory we only read: the state table or the
/// peer's output section.
///
/// Invariant: `[base, base + length)` is identity-mapped and readable for the
/// life of the kernel.
#[derive(Debug)]
pub struct Window {
    base: usize,
    length: usize,
}

/// Our own output section, readable and writable; [`Device`](super::Device)
/// hands out exactly one.
///
/// Invariant: as for [`Window`], mapped writable, and no other `OwnWindow`
/// covers it.
///
/// The peer VM lies outside the Rust abstract machine. On a real ivshmem-v2
/// device it cannot write this section (the device maps it read-only for the
/// peer); on the emulated v1 devices nothing stops a hostile peer from
/// writing it, which can only corrupt frames we send to that same peer: the
/// engine never reads its own section's bytes back to make decisions (it
/// keeps shadows of its own indices and descriptors).
#[derive(Debug)]
pub struct OwnWindow(Window);

impl Window {
    /// A window over `region`.
    ///
    /// # Safety
    /// The region must be mapped readable for the rest of the kernel's life.
    pub unsafe fn new(region: Region) -> Self {
        Self {
            base: region.address as usize,
            length: region.size as usize,
        }
    }

    /// The address of `size` bytes at `offset`, checked to lie inside the window.
    fn address(&self, offset: usize, size: usize) -> usize {
        let end = offset.checked_add(size).expect("offset overflow");
        assert!(
            end <= self.length,
            "shared-memory access {offset:#x}+{size:#x} beyond {:#x}",
            self.length
        );
        self.base + offset
    }
}

impl OwnWindow {
    /// A writable window over `region`.
    ///
    /// # Safety
    /// The region must be mapped readable and writable for the rest of the
    /// kernel's life, and no other `OwnWindow` may cover any of it.
    pub unsafe fn new(region: Region) -> Self {
        // SAFETY: the caller's obligation includes `Window::new`'s.
        Self(unsafe { Window::new(region) })
    }
}

impl netdev::SharedMemory for OwnWindow {
    fn len(&self) -> usize {
        self.0.len()
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        self.0.load_u16(offset, order)
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.0.load_u32(offset, order)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.0.read(offset, destination)
    }
}

impl netdev::SharedMemory for Window {
    fn len(&self) -> usize {
        self.length
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        let address = self.address(offset, 2);
        assert!(address.is_multiple_of(2), "misaligned u16 at {offset:#x}");
        // SAFETY: inside the mapped window (checked), aligned (checked); all
        // accesses to ring fields are atomic, and the peer VM is outside the
        // Rust abstract machine, so this cannot race with a non-atomic access.
        unsafe { AtomicU16::from_ptr(address as *mut u16) }.load(order)
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        let address = self.address(offset, 4);
        assert!(address.is_multiple_of(4), "misaligned u32 at {offset:#x}");
        // SAFETY: as in `load_u16`.
        unsafe { AtomicU32::from_ptr(address as *mut u32) }.load(order)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        let address = self.address(offset, destination.len());
        // SAFETY: the source lies inside the mapped window (checked) and does not
        // overlap `destination`, which is ordinary kernel memory. The peer may
        // write the source meanwhile; we then copy unspecified bytes, which the
        // engine tolerates (it validates what it parses).
        unsafe {
            core::ptr::copy_nonoverlapping(
                address as *const u8,
                destination.as_mut_ptr(),
                destination.len(),
            )
        }
    }
}

impl netdev::SharedMemoryMut for OwnWindow {
    fn store_u16(&self, offset: usize, value: u16, order: Ordering) {
        let address = self.0.address(offset, 2);
        assert!(address.is_multiple_of(2), "misaligned u16 at {offset:#x}");
        // SAFETY: as in `load_u16`; the window is our own output section, mapped writable.
        unsafe { AtomicU16::from_ptr(address as *mut u16) }.store(value, order)
    }

    fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        let address = self.0.address(offset, 4);
        assert!(address.is_multiple_of(4), "misaligned u32 at {offset:#x}");
        // SAFETY: as in `store_u16`.
        unsafe { AtomicU32::from_ptr(address as *mut u32) }.store(value, order)
    }

    fn write(&self, offset: usize, source: &[u8]) {
        let address = self.0.address(offset, source.len());
        // SAFETY: the destination lies inside our own writable section (checked)
        // and cannot overlap `source`, which is kernel memory.
        unsafe { core::ptr::copy_nonoverlapping(source.as_ptr(), address as *mut u8, source.len()) }
    }

    fn fill_zero(&self, offset: usize, length: usize) {
        let address = self.0.address(offset, length);
        // SAFETY: inside our own writable section (checked).
        unsafe { core::ptr::write_bytes(address as *mut u8, 0, length) }
    }

    fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8] {
        let address = self.0.address(offset, length);
        // SAFETY: inside our own section (checked); no other `OwnWindow` covers
        // it (type invariant) and `&mut self` keeps a second slice from being
        // made while this one lives. The engine hands out only bytes of a
        // buffer it has not published, which a conforming peer does not read;
        // what a hostile peer does to them is outside the abstract machine
        // (see the type's documentation).
        unsafe { core::slice::from_raw_parts_mut(address as *mut u8, length) }
    }
}
