//! How a VM ended: QEMU's exit status, decoded with the kernel's exit codes
//! ([`abi::exit`]).

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

use abi::exit::ExitCode;

/// The verdict on one VM run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The kernel left QEMU through `isa-debug-exit` with this code.
    Exit(ExitCode),
    /// Exit status 0: QEMU ended without `isa-debug-exit` (with
    /// `-no-reboot`, typically a triple fault).
    NoDebugExit,
    /// The VM did not finish within the timeout and was killed.
    Timeout(Duration),
    /// QEMU was killed by this signal (not by us for a timeout).
    Signal(i32),
    /// Any other exit status (1 is usually a QEMU start-up error: see its stderr).
    Other(i32),
}

impl Outcome {
    /// Decodes a QEMU exit status.
    pub fn from_code(code: i32) -> Outcome {
        match ExitCode::from_qemu_status(code) {
            Some(exit) => Outcome::Exit(exit),
            None if code == 0 => Outcome::NoDebugExit,
            None => Outcome::Other(code),
        }
    }

    /// Decodes a process exit status (an exit code, or a terminating signal).
    pub fn from_status(status: ExitStatus) -> Outcome {
        match (status.code(), status.signal()) {
            (Some(code), _) => Outcome::from_code(code),
            (None, Some(signal)) => Outcome::Signal(signal),
            (None, None) => Outcome::Other(-1),
        }
    }

    /// The QEMU exit status this outcome stands for, if it came from one.
    pub fn code(&self) -> Option<i32> {
        match self {
            Outcome::Exit(exit) => Some(exit.qemu_status()),
            Outcome::NoDebugExit => Some(0),
            Outcome::Other(code) => Some(*code),
            Outcome::Timeout(_) | Outcome::Signal(_) => None,
        }
    }

    /// True only if the guest reported success (exit status 33).
    pub fn is_success(&self) -> bool {
        *self == Outcome::Exit(ExitCode::Success)
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Exit(exit) => write!(f, "{exit}"),
            Outcome::NoDebugExit => {
                f.write_str("QEMU exited without isa-debug-exit (exit status 0; a triple fault?)")
            }
            Outcome::Timeout(t) => write!(
                f,
                "guest timed out after {:.1} s and was killed",
                t.as_secs_f64()
            ),
            Outcome::Signal(s) => write!(f, "QEMU was killed by signal {s}"),
            Outcome::Other(code) => write!(f, "QEMU failed with unexpected exit status {code}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_qemu_statuses() {
        for exit in ExitCode::ALL {
            let outcome = Outcome::from_code(exit.qemu_status());
            assert_eq!(outcome, Outcome::Exit(exit));
            assert_eq!(outcome.code(), Some(exit.qemu_status()));
        }
        for (code, outcome) in [
            (0, Outcome::NoDebugExit),
            (1, Outcome::Other(1)),
            (34, Outcome::Other(34)),
        ] {
            assert_eq!(Outcome::from_code(code), outcome);
            assert_eq!(outcome.code(), Some(code));
        }
        assert!(Outcome::Exit(ExitCode::Success).is_success());
        assert!(!Outcome::NoDebugExit.is_success());
    }

    #[test]
    fn decodes_process_status() {
        // A raw wait status: exit code in bits 8..16, signal in bits 0..7.
        assert_eq!(
            Outcome::from_status(ExitStatus::from_raw(33 << 8)),
            Outcome::Exit(ExitCode::Success)
        );
        assert_eq!(
            Outcome::from_status(ExitStatus::from_raw(9)),
            Outcome::Signal(9)
        );
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            Outcome::Exit(ExitCode::CpuException).to_string(),
            "guest reported a CPU exception (exit status 39)"
        );
        assert_eq!(
            Outcome::Exit(ExitCode::Success).to_string(),
            "guest reported success (exit status 33)"
        );
        assert!(
            Outcome::Timeout(Duration::from_secs(60))
                .to_string()
                .contains("60.0 s")
        );
        assert!(Outcome::NoDebugExit.to_string().contains("triple fault"));
        assert!(Outcome::Other(1).to_string().contains("exit status 1"));
    }
}
