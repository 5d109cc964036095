//! The kernel heap: `linked_list_allocator` over the largest usable RAM region
//! of the PVH memory map above the kernel image (not a fixed array), with
//! allocation failure reported and turned into
//! [`ExitCode::OutOfMemory`].

use core::alloc::{GlobalAlloc, Layout};
use linked_list_allocator::LockedHeap;

use crate::exit::exit;
use crate::pvh::MemoryRegion;
use abi::exit::ExitCode;
use abi::report::{Fatal, FatalKind};

/// The heap must lie inside the boot identity map (the first 4 GiB).
const IDENTITY_MAPPED_END: u64 = 4 << 30;
/// Smallest heap worth booting with.
pub const MIN_HEAP: u64 = 4 << 20;

/// The global allocator: a locked linked-list heap that never returns null.
pub struct KernelHeap(LockedHeap);

impl core::fmt::Debug for KernelHeap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("KernelHeap")
    }
}

impl KernelHeap {
    /// An empty heap; [`init`] gives it memory.
    pub const fn empty() -> Self {
        Self(LockedHeap::empty())
    }
}

// SAFETY: every method forwards to `LockedHeap`, a correct allocator; the only
// addition is that a null result ends the kernel instead of reaching the caller.
unsafe impl GlobalAlloc for KernelHeap {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        let pointer = unsafe { self.0.alloc(layout) };
        if pointer.is_null() {
            out_of_memory(layout);
        }
        pointer
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: Layout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { self.0.dealloc(pointer, layout) }
    }
}

fn out_of_memory(layout: Layout) -> ! {
    // SAFETY: this path ends the VM; the allocating code (which may hold the
    // console, e.g. while formatting) never runs again.
    unsafe { crate::serial::force_unlock() };
    crate::kprintln!(
        "{}",
        Fatal {
            kind: FatalKind::OutOfMemory,
            message: format_args!(
                "allocating {} bytes (align {}) failed",
                layout.size(),
                layout.align()
            ),
        }
    );
    exit(ExitCode::OutOfMemory)
}

/// The kernel heap: the global allocator of the kernel binary (feature
/// `runtime`); [`init`] gives it memory during boot.
#[cfg_attr(all(feature = "runtime", not(test)), global_allocator)]
pub static HEAP: KernelHeap = KernelHeap::empty();

/// Where the heap went.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeapRange {
    /// First byte.
    pub start: u64,
    /// Size in bytes.
    pub size: u64,
}

/// Picks the heap range: the largest stretch of usable RAM below 4 GiB that
/// lies above both the kernel image and the loader's data.
pub fn choose(
    regions: &[MemoryRegion],
    kernel_end: u64,
    loader_data: (u64, u64),
) -> Option<HeapRange> {
    regions
        .iter()
        .filter(|region| region.kind == MemoryRegion::USABLE)
        .filter_map(|region| {
            let mut start = region.start.max(kernel_end);
            if loader_data.1 > start && loader_data.0 < region.end() {
                start = start.max(loader_data.1);
            }
            let start = start.checked_next_multiple_of(4096)?;
            let end = region.end().min(IDENTITY_MAPPED_END) & !4095;
            (end > start).then(|| HeapRange {
                start,
                size: end - start,
            })
        })
        .max_by_key(|range| range.size)
        .filter(|range| range.size >= MIN_HEAP)
}

/// Gives `heap` the memory chosen from a memory map (see [`choose`]).
///
/// # Safety
///
/// Call once, before anything allocates: the usable regions of `regions`
/// must be RAM that nothing else uses above the kernel image (which ends at
/// `__kernel_end`) apart from `loader_data`, as the firmware's map promises
/// under PVH and the cell configuration in a Jailhouse cell.
pub unsafe fn init(
    heap: &KernelHeap,
    regions: &[MemoryRegion],
    loader_data: (u64, u64),
) -> Option<HeapRange> {
    let range = choose(regions, kernel_end(), loader_data)?;
    // SAFETY: the range is usable RAM per the caller's map, inside the
    // identity map, above the kernel image and the loader's data, and handed
    // to the allocator exactly once (the caller calls `init` once).
    unsafe {
        heap.0
            .lock()
            .init(range.start as usize as *mut u8, range.size as usize)
    };
    Some(range)
}

/// The end of the kernel image (`.bss` included), from the linker script.
pub fn kernel_end() -> u64 {
    unsafe extern "C" {
        /// End of the kernel image, from `boot/linker.ld` or `boot/jailhouse.ld`.
        static __kernel_end: u8;
    }
    (&raw const __kernel_end) as u64
}

/// Grows the heap that [`init`] placed at `range` so that it ends at `end`
/// (a Jailhouse cell learns its RAM size from `mem=` only after the heap
/// has parsed the command line). Returns the new range; an `end` at or
/// below the current one changes nothing.
///
/// # Safety
///
/// `range` must be what [`init`] returned for `heap`, and `[range end,
/// end)` must be RAM inside the identity map that nothing else uses.
pub unsafe fn extend(heap: &KernelHeap, range: HeapRange, end: u64) -> HeapRange {
    let current_end = range.start + range.size;
    if end <= current_end {
        return range;
    }
    // SAFETY: the memory directly above the heap is free RAM (the caller's
    // contract) and the heap ends at `current_end` (it came from `init`).
    unsafe { heap.0.lock().extend((end - current_end) as usize) };
    HeapRange {
        start: range.start,
        size: end - range.start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn region(start: u64, size: u64, kind: u32) -> MemoryRegion {
        MemoryRegion { start, size, kind }
    }

    #[test]
    fn heap_starts_after_the_kernel_in_the_largest_region() {
        let map = [
            region(0, 0x9fc00, 1),
            region(0xf0000, 0x10000, 2),
            region(0x100000, 0x7ee0000, 1),
            region(0xfffc0000, 0x40000, 2),
        ];
        let range = choose(&map, 0xa0_3000, (0x6000, 0x7000)).unwrap();
        assert_eq!(
            range,
            HeapRange {
                start: 0xa0_3000,
                size: 0x7fe0000 - 0xa0_3000
            }
        );
    }

    #[test]
    fn heap_avoids_loader_data_and_stays_below_4_gib() {
        let map = [region(0x100000, 0x1_4000_0000, 1)];
        let range = choose(&map, 0x20_0000, (0x30_0000, 0x30_1234)).unwrap();
        assert_eq!(range.start, 0x30_2000);
        assert_eq!(range.start + range.size, 4 << 30);
    }

    #[test]
    fn no_usable_memory_means_no_heap() {
        assert_eq!(
            choose(&[region(0x100000, 0x100000, 2)], 0x200000, (0, 0)),
            None
        );
        assert_eq!(
            choose(&[region(0x100000, 0x100000, 1)], 0x180000, (0, 0)),
            None
        );
    }
}
