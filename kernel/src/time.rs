//! A monotonic clock: the TSC, calibrated once against PIT channel 2, or at
//! the rate a Jailhouse cell's communication region gives.

use core::sync::atomic::{AtomicU64, Ordering};
use x86_64::instructions::port::Port;

/// The PIT's input clock in Hz.
const PIT_HZ: u64 = 1_193_182;
/// Calibration interval: 10 ms of PIT ticks.
const CALIBRATION_TICKS: u16 = 11_932;

static BOOT_TSC: AtomicU64 = AtomicU64::new(0);
static TSC_PER_MICROSECOND: AtomicU64 = AtomicU64::new(0);

fn read_tsc() -> u64 {
    // SAFETY: `rdtsc` only reads the time-stamp counter; CR4.TSD is clear, so
    // it is allowed at any privilege level.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Measures the TSC frequency against PIT channel 2 (a 10 ms one-shot, polled
/// through port 0x61 bit 5). Returns the TSC rate in kHz.
pub fn init() -> u64 {
    let mut gate = Port::<u8>::new(0x61);
    let mut command = Port::<u8>::new(0x43);
    let mut channel2 = Port::<u8>::new(0x42);
    // SAFETY: ports 0x42, 0x43 and 0x61 are the PIT and its gate; this module
    // alone uses them, once, during boot with interrupts disabled.
    let (start, end) = unsafe {
        let value = gate.read();
        gate.write((value & !0x02) | 0x01); // gate high, speaker off
        command.write(0b1011_0000); // channel 2, lobyte/hibyte, mode 0, binary
        channel2.write(CALIBRATION_TICKS as u8);
        channel2.write((CALIBRATION_TICKS >> 8) as u8);
        let value = gate.read();
        gate.write(value & !0x01); // a rising edge on the gate starts the count
        gate.write(value | 0x01);
        let start = read_tsc();
        let mut spins = 0u64;
        while gate.read() & 0x20 == 0 && spins < 100_000_000 {
            spins += 1;
        }
        (start, read_tsc())
    };
    let cycles = end.saturating_sub(start).max(1);
    let hz = cycles * PIT_HZ / u64::from(CALIBRATION_TICKS);
    init_with_khz(hz / 1000)
}

/// Starts the clock with a known TSC rate (a Jailhouse cell has no PIT: the
/// hypervisor measured the rate and publishes it). Returns `tsc_khz`.
pub fn init_with_khz(tsc_khz: u64) -> u64 {
    TSC_PER_MICROSECOND.store((tsc_khz / 1000).max(1), Ordering::Relaxed);
    BOOT_TSC.store(read_tsc(), Ordering::Relaxed);
    tsc_khz
}

/// Microseconds since [`init`] (0 before it).
pub fn micros_since_boot() -> u64 {
    let per_microsecond = TSC_PER_MICROSECOND.load(Ordering::Relaxed);
    if per_microsecond == 0 {
        return 0;
    }
    read_tsc().saturating_sub(BOOT_TSC.load(Ordering::Relaxed)) / per_microsecond
}

/// The current time as smoltcp sees it.
pub fn now() -> smoltcp::time::Instant {
    smoltcp::time::Instant::from_micros(micros_since_boot() as i64)
}

/// Busy-waits for `micros` microseconds.
pub fn delay_micros(micros: u64) {
    let until = micros_since_boot() + micros;
    while micros_since_boot() < until {
        core::hint::spin_loop();
    }
}
