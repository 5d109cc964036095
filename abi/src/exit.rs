//! How the kernel ends, and what QEMU's exit status says about it.
//!
//! Under QEMU the kernel writes an [`ExitCode`] value to the
//! `isa-debug-exit` device (`-device isa-debug-exit,iobase=0xf4,iosize=0x04`),
//! and QEMU exits with status `(value << 1) | 1`; a QEMU that stops without
//! that write (a triple fault with `-no-reboot`) exits with 0.

use core::fmt;

/// The I/O port of QEMU's `isa-debug-exit` device as the launcher configures it.
pub const DEBUG_EXIT_PORT: u16 = 0xf4;

/// Why the kernel stops. The discriminant is the value written to
/// [`DEBUG_EXIT_PORT`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum ExitCode {
    /// Everything asked for worked (QEMU status 33).
    Success = 0x10,
    /// An app ran and failed, or the link or device was unusable (status 35).
    Failure = 0x11,
    /// The kernel command line was bad (status 37).
    BadCommandLine = 0x12,
    /// A CPU exception (status 39).
    CpuException = 0x13,
    /// A kernel panic (status 41).
    Panic = 0x14,
    /// A heap allocation failed (status 43).
    OutOfMemory = 0x15,
}

impl ExitCode {
    /// Every code, in value order.
    pub const ALL: [Self; 6] = [
        Self::Success,
        Self::Failure,
        Self::BadCommandLine,
        Self::CpuException,
        Self::Panic,
        Self::OutOfMemory,
    ];

    /// The value written to the `isa-debug-exit` port.
    pub const fn value(self) -> u32 {
        self as u32
    }

    /// The exit status QEMU reports for this code.
    pub const fn qemu_status(self) -> i32 {
        ((self as i32) << 1) | 1
    }

    /// The code behind a QEMU exit status, if it is one of ours.
    pub fn from_qemu_status(status: i32) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|code| code.qemu_status() == status)
    }

    /// What the code means, in a few words.
    pub const fn meaning(self) -> &'static str {
        match self {
            Self::Success => "guest reported success",
            Self::Failure => "guest reported a failure",
            Self::BadCommandLine => "guest rejected its kernel command line",
            Self::CpuException => "guest reported a CPU exception",
            Self::Panic => "guest kernel panicked",
            Self::OutOfMemory => "guest ran out of heap memory",
        }
    }
}

impl fmt::Display for ExitCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (exit status {})", self.meaning(), self.qemu_status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    #[test]
    fn qemu_statuses() {
        let statuses: [i32; 6] = ExitCode::ALL.map(ExitCode::qemu_status);
        assert_eq!(statuses, [33, 35, 37, 39, 41, 43]);
        for code in ExitCode::ALL {
            assert_eq!(ExitCode::from_qemu_status(code.qemu_status()), Some(code));
        }
        for other in [0, 1, 2, 32, 34, 45, -1] {
            assert_eq!(ExitCode::from_qemu_status(other), None);
        }
        assert_eq!(ExitCode::Success.value(), 0x10);
        assert_eq!(
            ExitCode::CpuException.to_string(),
            "guest reported a CPU exception (exit status 39)"
        );
    }
}
