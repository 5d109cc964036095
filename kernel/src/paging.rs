//! Identity mappings with chosen attributes: device registers uncached, shared
//! memory write-back, read-only where the peer owns the memory, and anything
//! above the boot code's 4 GiB (such as a 64-bit BAR placed at 4 GiB).
//!
//! The boot code identity-maps 0–4 GiB with 2 MiB pages. [`map`] refines or
//! extends that map: whole 2 MiB pages where the range covers them, 4 KiB pages
//! at the edges (splitting a 2 MiB page when needed). New tables come from the
//! heap, which lies in identity-mapped RAM, so a table's address is its
//! physical address. Only this module touches page tables, and only from the
//! main flow (never from interrupt handlers).

use alloc::boxed::Box;
use x86_64::PhysAddr;
use x86_64::registers::control::Cr3;
use x86_64::structures::paging::{PageTable, PageTableFlags as Flags};

const SIZE_4K: u64 = 0x1000;
const SIZE_2M: u64 = 0x20_0000;
/// The highest physical address the CPU can use (MAXPHYADDR of QEMU's default CPUs is 40 or more).
const MAX_PHYSICAL: u64 = 1 << 40;

/// How a range is mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Attributes {
    /// Writes allowed (otherwise a write faults).
    pub writable: bool,
    /// Uncached (PCD | PWT): device registers.
    pub uncached: bool,
}

impl Attributes {
    /// Device registers: read-write, uncached.
    pub const DEVICE: Self = Self {
        writable: true,
        uncached: true,
    };
    /// Shared memory we may write: read-write, write-back.
    pub const SHARED_WRITABLE: Self = Self {
        writable: true,
        uncached: false,
    };
    /// Shared memory owned by someone else: read-only, write-back.
    pub const SHARED_READ_ONLY: Self = Self {
        writable: false,
        uncached: false,
    };

    fn leaf_flags(self) -> Flags {
        let mut flags = Flags::PRESENT | Flags::NO_EXECUTE;
        if self.writable {
            flags |= Flags::WRITABLE;
        }
        if self.uncached {
            flags |= Flags::NO_CACHE | Flags::WRITE_THROUGH;
        }
        flags
    }
}

/// Why a range could not be mapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapError {
    /// The range wraps or lies beyond the physical address width.
    OutOfRange {
        /// Start of the range.
        start: u64,
        /// Its length.
        length: u64,
    },
    /// The range lies in a 1 GiB page, which this module does not split.
    HugePage(u64),
}

impl core::fmt::Display for MapError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::OutOfRange { start, length } => {
                write!(
                    f,
                    "range {start:#x}+{length:#x} is outside the physical address space"
                )
            }
            Self::HugePage(address) => write!(f, "{address:#x} lies in a 1 GiB page"),
        }
    }
}

/// The table an entry points to, creating an empty one if the entry is unused.
fn next_table(
    entry: &mut x86_64::structures::paging::page_table::PageTableEntry,
) -> &'static mut PageTable {
    if entry.is_unused() {
        let table = Box::leak(Box::new(PageTable::new()));
        let address = PhysAddr::new(table as *mut PageTable as u64);
        entry.set_addr(address, Flags::PRESENT | Flags::WRITABLE);
    }
    // SAFETY: the entry is present and not huge (callers check), so it holds the
    // physical address of a page table, identity-mapped; page tables are only
    // reached through this module, from one thread, so no other reference exists.
    unsafe { &mut *(entry.addr().as_u64() as *mut PageTable) }
}

fn root() -> &'static mut PageTable {
    let (frame, _) = Cr3::read();
    // SAFETY: CR3 holds the boot PML4, identity-mapped in .bss; see `next_table`.
    unsafe { &mut *(frame.start_address().as_u64() as *mut PageTable) }
}

/// The page directory covering `address`, with upper levels created as needed.
fn page_directory(address: u64) -> Result<&'static mut PageTable, MapError> {
    let pml4 = root();
    let pdpt = next_table(&mut pml4[((address >> 39) & 511) as usize]);
    let entry = &mut pdpt[((address >> 30) & 511) as usize];
    if entry.flags().contains(Flags::HUGE_PAGE) {
        return Err(MapError::HugePage(address));
    }
    Ok(next_table(entry))
}

fn map_2m(address: u64, attributes: Attributes) -> Result<(), MapError> {
    let directory = page_directory(address)?;
    directory[((address >> 21) & 511) as usize].set_addr(
        PhysAddr::new(address),
        attributes.leaf_flags() | Flags::HUGE_PAGE,
    );
    Ok(())
}

fn map_4k(address: u64, attributes: Attributes) -> Result<(), MapError> {
    let directory = page_directory(address)?;
    let entry = &mut directory[((address >> 21) & 511) as usize];
    if entry.flags().contains(Flags::HUGE_PAGE) {
        // Split the 2 MiB page into 512 4 KiB pages with the same attributes.
        let base = entry.addr().as_u64();
        let flags = entry.flags() - Flags::HUGE_PAGE;
        let table = Box::leak(Box::new(PageTable::new()));
        for (index, small) in table.iter_mut().enumerate() {
            small.set_addr(PhysAddr::new(base + index as u64 * SIZE_4K), flags);
        }
        entry.set_addr(
            PhysAddr::new(table as *mut PageTable as u64),
            Flags::PRESENT | Flags::WRITABLE,
        );
        // The page size changed: drop the 2 MiB translation before any 4 KiB
        // page gets other attributes (Intel SDM vol. 3, §4.10.4).
        flush();
    }
    let table = next_table(entry);
    table[((address >> 12) & 511) as usize]
        .set_addr(PhysAddr::new(address), attributes.leaf_flags());
    Ok(())
}

/// Identity-maps `[start, start + length)` (widened to whole 4 KiB pages) with `attributes`.
///
/// # Safety
///
/// Every access through the identity map to these pages gets the new
/// attributes. The range must be memory meant for them (device registers
/// to map uncached, shared memory to map read-only or writable); it must
/// not overlap memory the kernel uses otherwise (its image, stacks, heap
/// or page tables), which a read-only or uncached mapping would break.
pub unsafe fn map(start: u64, length: u64, attributes: Attributes) -> Result<(), MapError> {
    let out_of_range = MapError::OutOfRange { start, length };
    let end = start
        .checked_add(length)
        .filter(|&end| end <= MAX_PHYSICAL)
        .ok_or(out_of_range)?;
    let mut address = start & !(SIZE_4K - 1);
    let end = end.checked_next_multiple_of(SIZE_4K).ok_or(out_of_range)?;
    while address < end {
        if address.is_multiple_of(SIZE_2M) && end - address >= SIZE_2M {
            map_2m(address, attributes)?;
            address += SIZE_2M;
        } else {
            map_4k(address, attributes)?;
            address += SIZE_4K;
        }
    }
    flush();
    Ok(())
}

/// Removes the 4 KiB page at `address` from the identity map, so that any
/// access faults (the stack guard page).
///
/// # Safety
///
/// Nothing may use the page any more (no reference into it lives, and no
/// code relies on reaching it): every access to it faults afterwards.
pub unsafe fn unmap_page(address: u64) -> Result<(), MapError> {
    let page = address & !(SIZE_4K - 1);
    map_4k(page, Attributes::SHARED_READ_ONLY)?;
    let directory = page_directory(page)?;
    next_table(&mut directory[((page >> 21) & 511) as usize])[((page >> 12) & 511) as usize]
        .set_unused();
    flush();
    Ok(())
}

fn flush() {
    x86_64::instructions::tlb::flush_all();
}
