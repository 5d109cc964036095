//! The kernel binary: the PVH entry in `boot` calls [`kmain`].
#![no_std]
#![no_main]

use boot as _;

/// Called by `boot` in long mode with the physical address of the PVH start info.
#[unsafe(no_mangle)]
pub extern "C" fn kmain(start_info: u32) -> ! {
    // SAFETY: `boot` calls `kmain` once, with the start info's address.
    unsafe { kernel::start(start_info) }
}
