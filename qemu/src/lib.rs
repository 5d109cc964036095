//! Host side of eth-ivshmem: builds the kernel, runs QEMU VMs, and serves ivshmem.
//!
//! This library is used by the `eth-ivshmem` launcher binary and by the
//! end-to-end tests in `tests/`. The pieces:
//!
//! * [`kernel`]: build the unikernel ELF (`cargo build -p kernel --features runtime --release`).
//! * [`qemu`]: make sure `qemu-system-x86_64` is installed.
//! * [`vm`]: describe a VM ([`VmConfig`]), start it ([`VmHandle`]), watch its
//!   serial output, judge its exit ([`Outcome`]). QEMU never outlives its handle.
//! * [`shm`]: the descriptor page (the host↔kernel contract for v1 devices)
//!   and shared-memory files for `ivshmem-plain`.
//! * [`server`]: our ivshmem server, speaking the v1 (`ivshmem-doorbell`) and
//!   v2 (Siemens `ivshmem` device) protocols.
//! * [`lock`]: the "one VM pair at a time" lock for tests.
//! * [`demo`]: the two-VM demo (`cargo run`), [`summary`] its final report.
//! * [`standalone`]: one VM with a chosen app and link (`cargo run -- vm`).
//! * [`bridge`]: the host as a peer of a link, moving frames to a TAP device
//!   (`cargo run -- bridge`).
//! * [`cleanup`]: the process-wide registry of children and files that are
//!   removed when the launcher is interrupted.

pub mod bridge;
pub mod cleanup;
pub mod demo;
pub mod kernel;
pub mod lock;
pub mod outcome;
pub mod qemu;
pub mod server;
pub mod shm;
pub mod size;
pub mod standalone;
pub mod summary;
pub mod testkernel;
pub mod vm;

use std::path::{Path, PathBuf};

pub use lock::VmLock;
pub use outcome::Outcome;
pub use vm::{Machine, Mode, ShmDevice, VmConfig, VmHandle};

/// The workspace root (the directory holding the top-level `Cargo.toml`),
/// fixed at compile time from this crate's manifest directory.
pub fn workspace_root() -> &'static Path {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir.parent().unwrap_or(manifest_dir)
}

/// `<workspace>/target`, where build products and the VM lock live.
pub fn target_dir() -> PathBuf {
    workspace_root().join("target")
}
