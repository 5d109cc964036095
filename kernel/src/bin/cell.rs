//! The kernel linked as a Jailhouse cell image (`boot/jailhouse.ld`): the
//! same code as `src/main.rs`, entered through the reset vector at address 0.
#![no_std]
#![no_main]

use boot as _;

/// Called by `boot` in long mode (see the PVH binary's `kmain`).
#[unsafe(no_mangle)]
pub extern "C" fn kmain(start_info: u32, entry: u32) -> ! {
    // SAFETY: `boot` calls `kmain` once, with what the entry code found.
    unsafe { kernel::start(start_info, entry) }
}
