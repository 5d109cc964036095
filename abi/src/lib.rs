//! The contract between the eth-ivshmem kernel and its host side: every
//! format, layout and code both of them read or write is defined once, here.
//!
//! * [`descriptor`]: the descriptor page our host side writes at the start
//!   of a v1 device's shared memory (`docs/descriptor-page.md`).
//! * [`layout`]: the ivshmem-v2 shared-memory layout (state table, R/W
//!   section, output sections) and its validation (`docs/ivshmem-v2.md` §6.1).
//! * [`cmdline`]: the kernel command line, parsed by the kernel and built by
//!   the launcher and the tests (`docs/kernel.md`).
//! * [`exit`]: the values the kernel writes to `isa-debug-exit` and the QEMU
//!   exit statuses they become.
//! * [`jailhouse`]: the Jailhouse inmate interface (communication region,
//!   cell states, messages, hypercalls, the cell's memory layout) the kernel
//!   uses as a cell and the cell harness imitates (`docs/jailhouse.md`).
//! * [`report`]: the serial lines the host relies on, as typed values that
//!   the kernel writes with `Display` and the host reads with `FromStr`.
//!
//! The crate is `no_std` (it uses `alloc` for the command line's lists and
//! error texts) and has no dependencies, so the kernel and the host build the
//! same code.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod cmdline;
pub mod descriptor;
pub mod exit;
pub mod jailhouse;
pub mod layout;
mod le;
pub mod report;
