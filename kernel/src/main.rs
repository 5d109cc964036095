//! The kernel binary for QEMU's PVH loader (`boot/linker.ld`); `boot` calls
//! [`kmain`]. The Jailhouse cell image is the same kernel: `src/bin/cell.rs`.
#![no_std]
#![no_main]

use boot as _;

/// Called by `boot` in long mode with the physical address of the PVH start
/// info (0 if none) and how the kernel was entered (`boot::ENTRY_*`).
#[unsafe(no_mangle)]
pub extern "C" fn kmain(start_info: u32, entry: u32) -> ! {
    // SAFETY: `boot` calls `kmain` once, with what the entry code found.
    unsafe { kernel::start(start_info, entry) }
}
