//! ivshmem devices: one protocol-agnostic API over a real ivshmem-v2 device
//! and ivshmem-v2 emulated on QEMU's stock v1 devices, in the spirit of
//! Zephyr's ivshmem API and Xen's event channels (see [`Device`]).
//!
//! Discovery is pure ([`v2`], [`emulated`]: PCI identity, capabilities,
//! registers, the descriptor page, checked against the protocol's
//! [`Requirements`]); [`device`] maps what discovery found, with the
//! protections the spec asks for (docs/ivshmem-v2.md §6: the state table
//! and other peers' output sections read-only, our own output section and
//! the R/W section read-write), programs MSI-X and implements state and
//! doorbells:
//!
//! | | ivshmem-v2 (110a:4106) | doorbell (1af4:1110 + MSI-X) | plain (1af4:1110) |
//! |---|---|---|---|
//! | own ID | ID register | IVPOSITION | `id=` on the command line |
//! | set state | STATE register (device updates the table, rings vector 0 on change) | we write our table entry, then ring vector 0 of every other peer if it changed | we write our table entry |
//! | doorbell | DOORBELL register | v1 DOORBELL register | none: polling only |
//! | peer gone | device zeroes its entry, rings vector 0 | our server does the same | the launcher zeroes its entry |
//!
//! Shared memory is reached through [`memory`] only; interrupts latch into
//! each device's own [`pending`] bits. Nothing here knows the protocol on
//! top: ivshmem-net's adapter lives in `crate::net`.

pub mod control;
pub mod device;
pub mod emulated;
pub mod error;
pub mod layout;
pub mod memory;
pub mod pending;
pub mod registers;
pub mod v2;

pub use device::{Device, Kind, MAX_VECTORS};
pub use error::{ProbeError, Requirements};
