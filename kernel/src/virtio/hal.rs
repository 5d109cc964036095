//! `virtio_drivers::Hal` over this kernel: DMA memory from the heap (which
//! lies in identity-mapped RAM, so an address is its own physical address,
//! docs/toolchain.md §5), device registers mapped uncached on demand, and
//! buffers shared as they are (no IOMMU, no bounce buffers).

use alloc::alloc::{Layout, alloc_zeroed, dealloc};
use core::ptr::NonNull;
use virtio_drivers::{BufferDirection, Hal, PAGE_SIZE, PhysAddr};

use crate::paging::{self, Attributes};

/// The kernel's HAL for `virtio-drivers`.
#[derive(Debug)]
pub struct KernelHal;

fn layout(pages: usize) -> Layout {
    Layout::from_size_align(pages * PAGE_SIZE, PAGE_SIZE).expect("a page-aligned layout")
}

// SAFETY: `dma_alloc` returns zeroed, page-aligned heap memory that nothing
// else uses until `dma_dealloc`, and whose virtual address is its physical
// address (the heap is identity-mapped); `mmio_phys_to_virt` maps the range
// uncached before returning its identity address; `share` returns the
// identity address of memory the caller keeps alive until `unshare`.
unsafe impl Hal for KernelHal {
    fn dma_alloc(pages: usize, _direction: BufferDirection) -> (PhysAddr, NonNull<u8>) {
        // SAFETY: the layout has a non-zero size (virtio-drivers asks for at
        // least one page).
        let pointer = unsafe { alloc_zeroed(layout(pages)) };
        let pointer = NonNull::new(pointer).expect("DMA memory from the heap");
        (pointer.as_ptr() as PhysAddr, pointer)
    }

    unsafe fn dma_dealloc(_paddr: PhysAddr, vaddr: NonNull<u8>, pages: usize) -> i32 {
        // SAFETY: `vaddr` came from `dma_alloc` with the same page count (the
        // trait's contract).
        unsafe { dealloc(vaddr.as_ptr(), layout(pages)) };
        0
    }

    unsafe fn mmio_phys_to_virt(paddr: PhysAddr, size: usize) -> NonNull<u8> {
        // SAFETY: virtio-drivers asks only for the regions that the device's
        // virtio PCI capabilities name inside its own memory BARs: device
        // registers, never RAM the kernel uses.
        unsafe { paging::map(paddr, size as u64, Attributes::DEVICE) }
            .expect("a virtio BAR region maps");
        NonNull::new(paddr as *mut u8).expect("a BAR is not at address 0")
    }

    unsafe fn share(buffer: NonNull<[u8]>, _direction: BufferDirection) -> PhysAddr {
        buffer.cast::<u8>().as_ptr() as PhysAddr
    }

    unsafe fn unshare(_paddr: PhysAddr, _buffer: NonNull<[u8]>, _direction: BufferDirection) {}
}
