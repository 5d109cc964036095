//! Leaving QEMU through the `isa-debug-exit` device (port 0xf4).
//!
//! QEMU exits with status `(value << 1) | 1`; the values below give the
//! statuses documented in the README (33 = success, …).

use x86_64::instructions::port::Port;

/// Why the kernel stops. The discriminant is the value written to port 0xf4.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything asked for worked (QEMU status 33).
    Success = 0x10,
    /// The app ran and failed (QEMU status 35).
    Failure = 0x11,
    /// The kernel command line was bad (QEMU status 37).
    BadCommandLine = 0x12,
    /// A CPU exception (QEMU status 39).
    CpuException = 0x13,
    /// A kernel panic (QEMU status 41).
    Panic = 0x14,
    /// A heap allocation failed (QEMU status 43).
    OutOfMemory = 0x15,
}

impl ExitCode {
    /// The exit status QEMU reports for this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }
}

/// The I/O port of QEMU's `isa-debug-exit` device (`iobase=0xf4`).
const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Ends the VM with `code`. Halts for ever if no `isa-debug-exit` device exists.
pub fn exit(code: ExitCode) -> ! {
    let mut port = Port::<u32>::new(DEBUG_EXIT_PORT);
    // SAFETY: writing to the isa-debug-exit port has no effect on memory; on
    // machines without the device the write is ignored and we halt below.
    unsafe { port.write(code as u32) };
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qemu_statuses_match_the_readme() {
        assert_eq!(ExitCode::Success.qemu_status(), 33);
        assert_eq!(ExitCode::Failure.qemu_status(), 35);
        assert_eq!(ExitCode::BadCommandLine.qemu_status(), 37);
        assert_eq!(ExitCode::CpuException.qemu_status(), 39);
        assert_eq!(ExitCode::Panic.qemu_status(), 41);
        assert_eq!(ExitCode::OutOfMemory.qemu_status(), 43);
    }
}
