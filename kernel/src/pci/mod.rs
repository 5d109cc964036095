//! PCI: configuration access ([`config`]: port I/O or ECAM), enumeration and
//! BAR sizing ([`enumerate`](mod@enumerate)), the capability list ([`capability`]) and
//! MSI-X ([`msix`]), and addresses for BARs nobody assigned ([`assign`], on
//! a Jailhouse cell).
//!
//! Everything above [`ConfigAccess`] is pure and tested on the host against
//! a fake configuration space that models BAR sizing masks.

pub mod assign;
pub mod capability;
pub mod config;
pub mod enumerate;
#[cfg(test)]
pub mod fake;
pub mod msix;

pub use abi::report::{Bar, BarKind, Bdf};
pub use capability::{Capability, capabilities, find_capability};
pub use config::{ConfigAccess, Ecam, PortIo, command, offset};
pub use enumerate::{Function, Scan, enable, enumerate, enumerate_buses, size_bars};
pub use msix::{Msix, MsixTable, msi_message};
