//! Waiting for work: in interrupt mode the CPU sleeps in `hlt` until a device
//! vector or the local APIC timer fires; in polling mode it only pauses.

use abi::cmdline::Mode;

/// Waits for an interrupt or for `micros` microseconds, whichever comes
/// first. The caller checks for work with interrupts disabled before calling,
/// so an interrupt cannot slip in between that check and the `hlt`: `sti;
/// hlt` opens the interrupt window only once the CPU is halted.
///
/// In a Jailhouse cell this is also where the hypervisor's messages are
/// answered (`crate::jailhouse::service_messages`).
pub fn wait(mode: Mode, micros: u64) {
    crate::jailhouse::service_messages(crate::start::shut_down);
    match mode {
        Mode::Interrupt => {
            crate::apic::arm_timer(micros);
            x86_64::instructions::interrupts::enable_and_hlt();
            x86_64::instructions::interrupts::disable();
        }
        Mode::Poll => core::hint::spin_loop(),
    }
}

/// Like [`wait`], but in interrupt mode polls `has_work` for up to `spin`
/// microseconds first (and returns as soon as it says yes).
///
/// What a VM waits for is most often the reply to what it just sent, and
/// the peer's shared-memory write is visible long before its doorbell has
/// travelled through both QEMUs' threads and woken our halted vCPU; the
/// spin catches it there. Polling mode spins anyway.
pub fn wait_for(mode: Mode, micros: u64, spin: u64, mut has_work: impl FnMut() -> bool) {
    if mode == Mode::Interrupt && spin > 0 {
        let start = crate::time::micros_since_boot();
        let until = start + spin.min(micros);
        loop {
            if has_work() {
                return;
            }
            let now = crate::time::micros_since_boot();
            if now >= until {
                if now - start >= micros {
                    return;
                }
                wait(mode, micros - (now - start));
                return;
            }
            core::hint::spin_loop();
        }
    }
    wait(mode, micros);
}
