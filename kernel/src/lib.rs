//! The eth-ivshmem unikernel: boots through PVH in QEMU or through the
//! reset vector of a Jailhouse cell (`jailhouse`), brings up the
//! platform (serial console, GDT/IDT, heap, clock, ACPI, local APIC, PCI),
//! reports what it sees and runs what the command line asks for
//! (`docs/kernel.md`). What it shares with the host (command line, report
//! lines, exit codes, descriptor page, layout) is the `abi` crate's.
//!
//! Pure logic (PCI enumeration and capabilities, ivshmem discovery, state
//! and doorbells against fake registers, shared-memory windows, the
//! `ivshmem` app's handshake, heap placement, echo patterns) is tested on
//! the host with `cargo test -p kernel`; the binary is `src/main.rs`.
#![cfg_attr(not(test), no_std)]

extern crate alloc;

pub mod acpi;
pub mod apic;
pub mod apps;
pub mod exit;
pub mod gdt;
pub mod heap;
pub mod idle;
pub mod interrupts;
pub mod ivshmem;
pub mod jailhouse;
pub mod mem;
pub mod net;
pub mod paging;
pub mod pci;
pub mod pvh;
#[cfg(all(feature = "runtime", not(test)))]
mod rt;
pub mod serial;
pub mod time;
pub mod virtio;

mod start;
pub use start::start;
