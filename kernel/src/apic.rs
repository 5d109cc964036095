//! The local APIC (enable, EOI, ID) and the legacy PICs (masked).
//!
//! MSI-X messages from PCI devices land in the local APIC, and its one-shot
//! timer wakes the kernel from `hlt`. The registers are reached through the
//! xAPIC page (MMIO) or, in a Jailhouse cell whose CPU has x2APIC, through
//! the x2APIC MSRs (register offset / 16 + 0x800), which the hypervisor
//! emulates for every cell whatever mode the hardware runs in
//! (docs/jailhouse.md §1.5).

use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use x86_64::instructions::port::Port;
use x86_64::registers::model_specific::Msr;

use crate::interrupts::SPURIOUS_VECTOR;
use crate::paging::{self, Attributes};

/// The architectural default base of the local APIC.
pub const DEFAULT_BASE: u64 = 0xfee0_0000;

/// Register offsets (Intel SDM vol. 3, table 11-1).
mod register {
    pub const ID: u64 = 0x20;
    pub const TIMER_LVT: u64 = 0x320;
    pub const TIMER_INITIAL_COUNT: u64 = 0x380;
    pub const TIMER_CURRENT_COUNT: u64 = 0x390;
    pub const TIMER_DIVIDE: u64 = 0x3e0;
    pub const TASK_PRIORITY: u64 = 0x80;
    pub const END_OF_INTERRUPT: u64 = 0xb0;
    pub const SPURIOUS_VECTOR: u64 = 0xf0;
}

/// Spurious-interrupt vector register: APIC software enable.
const SOFTWARE_ENABLE: u32 = 1 << 8;

/// 0 until [`init`] ran; EOIs before that are skipped.
static BASE: AtomicU64 = AtomicU64::new(0);
/// Timer ticks per millisecond at divide-by-16 (0 until calibrated).
static TIMER_TICKS_PER_MILLISECOND: AtomicU64 = AtomicU64::new(0);

/// IDT vector of the local APIC timer.
pub const TIMER_VECTOR: u8 = 0x30;
/// LVT mask bit.
const LVT_MASKED: u32 = 1 << 16;
/// Divide configuration value for divide-by-16.
const DIVIDE_BY_16: u32 = 0b0011;

/// Whether the registers are the x2APIC MSRs.
static X2APIC: AtomicBool = AtomicBool::new(false);

/// The x2APIC MSR of the register at xAPIC `offset`.
fn msr(offset: u64) -> Msr {
    Msr::new(0x800 + (offset >> 4) as u32)
}

fn read(offset: u64) -> u32 {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: `init` chose x2APIC access: the MSRs of the architectural
        // registers exist and reading them has no side effect we rely on.
        return unsafe { msr(offset).read() } as u32;
    }
    let address = BASE.load(Ordering::Relaxed) + offset;
    // SAFETY: `init` mapped the APIC page uncached at BASE; the offsets are
    // architectural 32-bit registers inside that page.
    unsafe { core::ptr::read_volatile(address as *const u32) }
}

fn write(offset: u64, value: u32) {
    if X2APIC.load(Ordering::Relaxed) {
        // SAFETY: as in `read`; the kernel writes only the registers this
        // module names (TPR, SVR, EOI, the timer), as it does through MMIO.
        unsafe { msr(offset).write(u64::from(value)) };
        return;
    }
    let address = BASE.load(Ordering::Relaxed) + offset;
    // SAFETY: as in `read`.
    unsafe { core::ptr::write_volatile(address as *mut u32, value) }
}

/// IDT vector base of the legacy PICs once [`init`] has remapped them (master
/// 0x20–0x27, slave 0x28–0x2f): away from the CPU exceptions.
pub const LEGACY_PIC_BASE: u8 = 0x20;

/// Remaps both legacy PICs away from the exception vectors and masks every
/// line. SeaBIOS leaves them at vectors 8–15, where a timer tick would look
/// like a double fault, and masking alone does not stop a spurious IRQ 7.
fn quiet_legacy_pics() {
    let commands = [
        (0x20, 0x21, LEGACY_PIC_BASE, 0x04),
        (0xa0, 0xa1, LEGACY_PIC_BASE + 8, 0x02),
    ];
    for (command, data, base, cascade) in commands {
        // SAFETY: these are the two 8259 PICs' command and data ports; the
        // ICW1–ICW4 sequence (cascade, vector base, x86 mode) and the mask are
        // all this kernel ever does with them, once, with interrupts disabled.
        unsafe {
            Port::<u8>::new(command).write(0x11);
            Port::<u8>::new(data).write(base);
            Port::<u8>::new(data).write(cascade);
            Port::<u8>::new(data).write(0x01);
            Port::<u8>::new(data).write(0xff);
        }
    }
}

/// How the kernel reaches the local APIC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// The xAPIC register page at this physical address.
    Mmio(u64),
    /// The x2APIC MSRs (a Jailhouse cell on a CPU with x2APIC).
    X2apicMsrs,
}

/// Whether CPUID reports x2APIC support.
pub fn cpu_has_x2apic() -> bool {
    core::arch::x86_64::__cpuid(1).ecx & (1 << 21) != 0
}

/// Maps the local APIC's page uncached (MMIO access), masks the PICs (if
/// `legacy_pics`: a Jailhouse cell has none and may not touch their ports)
/// and software-enables the APIC.
///
/// # Safety
///
/// With [`Access::Mmio`] the address must be the local APIC's (from the
/// MADT, or the architectural default): its page is mapped uncached and
/// written. [`Access::X2apicMsrs`] needs a CPU (or hypervisor) that
/// answers the x2APIC MSRs.
pub unsafe fn init(access: Access, legacy_pics: bool) -> Result<(), paging::MapError> {
    if legacy_pics {
        quiet_legacy_pics();
    }
    match access {
        Access::Mmio(base) => {
            // SAFETY: the local APIC's register page (the caller's contract).
            unsafe { paging::map(base, 0x1000, Attributes::DEVICE)? };
            BASE.store(base, Ordering::Relaxed);
        }
        Access::X2apicMsrs => {
            X2APIC.store(true, Ordering::Relaxed);
            // Marks the APIC as set up for `id` and `end_of_interrupt`.
            BASE.store(DEFAULT_BASE, Ordering::Relaxed);
        }
    }
    write(register::TASK_PRIORITY, 0);
    write(
        register::SPURIOUS_VECTOR,
        SOFTWARE_ENABLE | u32::from(SPURIOUS_VECTOR),
    );
    calibrate_timer();
    crate::interrupts::register(TIMER_VECTOR, crate::interrupts::Handler::Wake);
    Ok(())
}

/// Measures the timer's rate against the (calibrated) TSC over 10 ms.
fn calibrate_timer() {
    write(register::TIMER_DIVIDE, DIVIDE_BY_16);
    write(register::TIMER_LVT, LVT_MASKED | u32::from(TIMER_VECTOR));
    write(register::TIMER_INITIAL_COUNT, u32::MAX);
    crate::time::delay_micros(10_000);
    let elapsed = u64::from(u32::MAX - read(register::TIMER_CURRENT_COUNT));
    write(register::TIMER_INITIAL_COUNT, 0);
    TIMER_TICKS_PER_MILLISECOND.store((elapsed / 10).max(1), Ordering::Relaxed);
}

/// Arms the one-shot timer to interrupt after `micros` microseconds (at least
/// one tick, at most what the 32-bit counter holds).
pub fn arm_timer(micros: u64) {
    let per_millisecond = TIMER_TICKS_PER_MILLISECOND.load(Ordering::Relaxed);
    let ticks = (micros.saturating_mul(per_millisecond) / 1000).clamp(1, u64::from(u32::MAX));
    write(register::TIMER_LVT, u32::from(TIMER_VECTOR));
    write(register::TIMER_INITIAL_COUNT, ticks as u32);
}

/// This CPU's local APIC ID (the destination of MSI messages).
pub fn id() -> u8 {
    if BASE.load(Ordering::Relaxed) == 0 {
        return 0;
    }
    let id = read(register::ID);
    if X2APIC.load(Ordering::Relaxed) {
        // The full 32-bit x2APIC ID; MSI messages without interrupt
        // remapping carry 8 bits, which is what a small cell has.
        id as u8
    } else {
        (id >> 24) as u8
    }
}

/// Signals the end of the interrupt being handled.
pub fn end_of_interrupt() {
    if BASE.load(Ordering::Relaxed) != 0 {
        write(register::END_OF_INTERRUPT, 0);
    }
}
