//! Helpers for the end-to-end tests: boot the real kernel under QEMU (one
//! VM, or one VM pair, at a time under the [`VmLock`], always under a
//! deadline) and judge it from its typed report lines ([`abi::report`]).
//!
//! These are thin wrappers over the launcher's orchestration layer
//! ([`qemu::Scenario`]) that turn its errors into panics carrying every VM's
//! serial log and QEMU stderr. Set `E2E_KERNEL=<elf>` to test a prebuilt
//! kernel instead of building one.
//!
//! * [`boot`] and [`boot_unchecked`]: one VM to its end ([`Run`]).
//! * [`Pair`]: VMs on a doorbell link (our v1 server in this process) or a
//!   plain file, addressed by name.
//! * [`launcher`]: the `eth-ivshmem` binary as a process.
//! * [`capture`]: a pcap file read with `tcpdump -r`, checked for the
//!   exchanges that must be in it.

pub mod capture;
pub mod launcher;
mod pair;
mod single;

use std::path::PathBuf;

use abi::cmdline::{App, CommandLine};

pub use launcher::{ProcessRun, run_launcher};
pub use pair::{Pair, SCENARIO_TIMEOUT};
pub use qemu::shm::ShmFile;
pub use qemu::{DeviceReport, Machine, Outcome, VmLock};
pub use single::{Run, VM_TIMEOUT, boot, boot_cell, boot_unchecked};

/// Builds the kernel (release profile) once per test process and returns the ELF.
///
/// If the environment variable `E2E_KERNEL` names a file, that ELF is used
/// instead and nothing is built (to test a kernel built elsewhere, e.g. from
/// a clean checkout while the working tree is being edited).
///
/// # Panics
///
/// If the build fails (the message carries cargo's stderr).
pub fn kernel() -> PathBuf {
    if let Some(elf) = std::env::var_os("E2E_KERNEL") {
        let elf = PathBuf::from(elf);
        assert!(elf.is_file(), "E2E_KERNEL={} is not a file", elf.display());
        return elf;
    }
    qemu::kernel::build(qemu::kernel::Profile::Release)
        .unwrap_or_else(|e| panic!("cannot build the kernel: {e:#}"))
}

/// Builds the kernel (release profile) once per test process and returns
/// the flat Jailhouse cell image made from it (`eth-ivshmem.bin`).
///
/// # Panics
///
/// If the build or `objcopy` fails, or the image's layout is wrong.
pub fn cell_image() -> PathBuf {
    qemu::kernel::build_cell_image(qemu::kernel::Profile::Release)
        .unwrap_or_else(|e| panic!("cannot build the cell image: {e:#}"))
}

/// A kernel command line that runs `apps`, the rest default.
pub fn apps(apps: &[App]) -> CommandLine {
    CommandLine {
        apps: apps.to_vec(),
        ..CommandLine::default()
    }
}

/// A fresh, sparse (zeroed) shared-memory file of `size` bytes for
/// `ivshmem-plain`, removed on drop, also when the test panics. It has no
/// descriptor page, so the test controls every byte.
///
/// # Panics
///
/// If the file cannot be created.
pub fn shm_file(tag: &str, size: u64) -> ShmFile {
    let path = ShmFile::unique_path(tag);
    ShmFile::create(&path, size).unwrap_or_else(|e| panic!("{e:#}"))
}
