//! How the kernel ends. Under QEMU's PVH loader it writes an [`ExitCode`] to
//! the `isa-debug-exit` device at [`DEBUG_EXIT_PORT`] and QEMU exits with the
//! status `ExitCode::qemu_status` names. In a Jailhouse cell it prints the
//! [`CellStopped`] line and writes the cell state (`SHUT_DOWN` on success,
//! `FAILED` otherwise) into the communication region (docs/jailhouse.md §3).

use abi::exit::{DEBUG_EXIT_PORT, ExitCode};
use abi::jailhouse::CellState;
use abi::report::CellStopped;
use x86_64::instructions::port::Port;

/// Ends the VM or cell with `code`. Halts for ever if no `isa-debug-exit`
/// device exists.
pub fn exit(code: ExitCode) -> ! {
    if crate::jailhouse::in_cell() {
        let state = if code == ExitCode::Success {
            CellState::ShutDown
        } else {
            CellState::Failed
        };
        crate::kprintln!("{}", CellStopped { state, code });
        crate::jailhouse::stop(state)
    }
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: writing to the isa-debug-exit port has no effect on memory; on
    // machines without the device the write is ignored and we halt below.
    unsafe { port.write(code.value()) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}
