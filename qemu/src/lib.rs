//! Host side of eth-ivshmem: builds the kernel, runs QEMU VMs, and serves ivshmem.
//!
//! This library is used by the `eth-ivshmem` launcher binary and by the
//! end-to-end tests in `tests/`. What the kernel and the host agree on
//! (descriptor page, layout, command line, exit codes, report lines) is in
//! the [`abi`] crate. The pieces:
//!
//! * Running VMs, from the bottom up:
//!   * [`vm`]: one QEMU process: its configuration ([`VmConfig`]), its
//!     serial output read as typed report lines ([`VmHandle`]), how it ended
//!     ([`outcome`]). QEMU never outlives its handle.
//!   * [`cell`]: the cell harness, a Jailhouse non-root cell imitated on
//!     stock QEMU (reset ROM, flat image, communication region).
//!   * [`link`]: what VMs share (a doorbell or v2 server, a plain file, or
//!     nothing), with the QEMU device and the "peer gone" duty of each.
//!   * [`scenario`]: named VMs on one link under one deadline, with every
//!     VM's logs in each error; `demo`, `vm`, `boot` and the end-to-end
//!     tests run VMs through it.
//! * The commands: [`bench`](mod@bench) (the measurements of issue 12 in one table),
//!   [`demo`] (two VMs, [`summary`] its report), [`standalone`]
//!   (`vm`: one VM on a chosen link), [`boot`] (one VM, the PCI inventory),
//!   with the options they share ([`options`]), [`server`] (our ivshmem
//!   server for `ivshmem-doorbell` and the Siemens `ivshmem` device), and
//!   [`bridge`] (the host as a peer of a link, moving frames between it and
//!   a TAP device: `cargo run -- bridge`), and [`hostpeer`] (Linux's own
//!   stack as that peer, in a network namespace of our own, with `ping`
//!   and TCP/UDP echo on top).
//! * Underneath: [`shm`] (shared-memory layout, mappings and files),
//!   [`kernel`] (builds the unikernel ELF), [`install`] (makes sure
//!   `qemu-system-x86_64` is installed), [`lock`] (one VM pair at a time),
//!   [`cleanup`] (children and files removed when the launcher is
//!   interrupted), [`size`] (`1M`, `4G`).

pub mod bench;
pub mod boot;
pub mod bridge;
pub mod cell;
pub mod cleanup;
pub mod demo;
pub mod hostpeer;
pub mod install;
pub mod kernel;
pub mod link;
pub mod lock;
pub mod options;
pub mod outcome;
pub mod scenario;
pub mod server;
pub mod shm;
pub mod size;
pub mod standalone;
pub mod summary;
pub mod vm;

use std::path::{Path, PathBuf};

pub use link::{Link, LinkSpec};
pub use lock::VmLock;
pub use outcome::Outcome;
pub use scenario::{DeviceReport, Scenario, ScenarioError};
pub use vm::{Machine, ShmDevice, VmConfig, VmHandle};

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
