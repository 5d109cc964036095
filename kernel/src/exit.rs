//! Leaving QEMU through the `isa-debug-exit` device: the kernel writes an
//! [`ExitCode`] to [`DEBUG_EXIT_PORT`] and QEMU exits with the status
//! `ExitCode::qemu_status` names.

use abi::exit::{DEBUG_EXIT_PORT, ExitCode};
use x86_64::instructions::port::Port;

/// Ends the VM with `code`. Halts for ever if no `isa-debug-exit` device exists.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: writing to the isa-debug-exit port has no effect on memory; on
    // machines without the device the write is ignored and we halt below.
    unsafe { port.write(code.value()) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
