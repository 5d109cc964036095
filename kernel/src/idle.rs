//! Waiting for work: in interrupt mode the CPU sleeps in `hlt` until a device
//! vector or the local APIC timer fires; in polling mode it only pauses.

use abi::cmdline::Mode;

/// Waits for an interrupt or for `micros` microseconds, whichever comes
/// first. The caller checks for work with interrupts disabled before calling,
/// so an interrupt cannot slip in between that check and the `hlt`: `sti;
/// hlt` opens the interrupt window only once the CPU is halted.
pub fn wait(mode: Mode, micros: u64) {
    match mode {
        Mode::Interrupt => {
            crate::apic::arm_timer(micros);
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
        }
        Mode::Poll => core::hint::spin_loop(),
    }
}
