//! How a VM ended: QEMU's exit status decoded per the README's exit-code table.

use std::fmt;
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::time::Duration;

/// The verdict on one VM run.
///
/// The kernel leaves QEMU through `isa-debug-exit` (port 0xf4), which makes
/// QEMU exit with `(value << 1) | 1`; the README lists the values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Exit status 33: the guest reported success.
    Success,
    /// Exit status 35: the app ran and failed (a lost ping, a corrupted echo…).
    AppFailure,
    /// Exit status 37: the kernel rejected its command line.
    BadCmdline,
    /// Exit status 39: the guest took a CPU exception.
    CpuException,
    /// Exit status 41: the kernel panicked.
    Panic,
    /// Exit status 43: a heap allocation failed.
    AllocFailure,
    /// Exit status 0: QEMU ended without isa-debug-exit (with `-no-reboot`,
    /// typically a triple fault).
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
        match code {
            33 => Outcome::Success,
            35 => Outcome::AppFailure,
            37 => Outcome::BadCmdline,
            39 => Outcome::CpuException,
            41 => Outcome::Panic,
            43 => Outcome::AllocFailure,
            0 => Outcome::NoDebugExit,
            other => Outcome::Other(other),
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
        Some(match self {
            Outcome::Success => 33,
            Outcome::AppFailure => 35,
            Outcome::BadCmdline => 37,
            Outcome::CpuException => 39,
            Outcome::Panic => 41,
            Outcome::AllocFailure => 43,
            Outcome::NoDebugExit => 0,
            Outcome::Other(code) => *code,
            Outcome::Timeout(_) | Outcome::Signal(_) => return None,
        })
    }

    /// True only for [`Outcome::Success`] (exit status 33).
    pub fn is_success(&self) -> bool {
        *self == Outcome::Success
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match self {
            Outcome::Success => "guest reported success",
            Outcome::AppFailure => "guest reported an application failure",
            Outcome::BadCmdline => "guest rejected its kernel command line",
            Outcome::CpuException => "guest reported a CPU exception",
            Outcome::Panic => "guest kernel panicked",
            Outcome::AllocFailure => "guest ran out of heap memory",
            Outcome::NoDebugExit => {
                return f.write_str(
                    "QEMU exited without isa-debug-exit (exit status 0; a triple fault?)",
                );
            }
            Outcome::Timeout(t) => {
                return write!(
                    f,
                    "guest timed out after {:.1} s and was killed",
                    t.as_secs_f64()
                );
            }
            Outcome::Signal(s) => return write!(f, "QEMU was killed by signal {s}"),
            Outcome::Other(code) => {
                return write!(f, "QEMU failed with unexpected exit status {code}");
            }
        };
        // `code()` is Some for every variant that reaches this point.
        write!(f, "{what} (exit status {})", self.code().unwrap_or(-1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_readme_table() {
        let table = [
            (33, Outcome::Success),
            (35, Outcome::AppFailure),
            (37, Outcome::BadCmdline),
            (39, Outcome::CpuException),
            (41, Outcome::Panic),
            (43, Outcome::AllocFailure),
            (0, Outcome::NoDebugExit),
            (1, Outcome::Other(1)),
            (34, Outcome::Other(34)),
        ];
        for (code, outcome) in table {
            assert_eq!(Outcome::from_code(code), outcome);
            assert_eq!(outcome.code(), Some(code));
        }
        assert!(Outcome::Success.is_success());
        assert!(!Outcome::NoDebugExit.is_success());
    }

    #[test]
    fn decodes_process_status() {
        // A raw wait status: exit code in bits 8..16, signal in bits 0..7.
        assert_eq!(
            Outcome::from_status(ExitStatus::from_raw(33 << 8)),
            Outcome::Success
        );
        assert_eq!(
            Outcome::from_status(ExitStatus::from_raw(9)),
            Outcome::Signal(9)
        );
    }

    #[test]
    fn display_is_readable() {
        assert_eq!(
            Outcome::CpuException.to_string(),
            "guest reported a CPU exception (exit status 39)"
        );
        assert_eq!(
            Outcome::Success.to_string(),
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
