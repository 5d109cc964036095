//! The capability list (PCI Local Bus Specification 3.0, §6.7).

use alloc::vec::Vec;

use super::Bdf;
use super::config::{ConfigAccess, offset, status};

/// A capability in the list: its ID and its offset in configuration space.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Capability {
    /// Capability ID (0x09 vendor-specific, 0x11 MSI-X, …).
    pub id: u8,
    /// Offset of its first byte.
    pub offset: u16,
}

/// Capability ID of a vendor-specific capability (PCI Code and ID
/// Assignment Specification).
pub const VENDOR: u8 = 0x09;
/// Capability ID of MSI-X.
pub const MSIX: u8 = 0x11;

/// The capability list of `bdf`, at most 48 entries (a loop in the list ends it).
pub fn capabilities(config: &dyn ConfigAccess, bdf: Bdf) -> Vec<Capability> {
    let mut found = Vec::new();
    if config.read32(bdf, offset::COMMAND) & status::CAPABILITIES == 0 {
        return found;
    }
    let mut next = u16::from(config.read8(bdf, offset::CAPABILITIES)) & 0xfc;
    while next >= 0x40 && found.len() < 48 {
        let header = config.read32(bdf, next);
        found.push(Capability {
            id: header as u8,
            offset: next,
        });
        next = ((header >> 8) & 0xfc) as u16;
    }
    found
}

/// The first capability with this ID.
pub fn find_capability(config: &dyn ConfigAccess, bdf: Bdf, id: u8) -> Option<Capability> {
    capabilities(config, bdf)
        .into_iter()
        .find(|capability| capability.id == id)
}

#[cfg(test)]
mod tests {
    use super::super::fake::{FakeConfigSpace, FakeFunction, bdf};
    use super::*;

    #[test]
    fn walks_the_list() {
        let device = bdf(0, 4, 0);
        let config = FakeConfigSpace::default().with(
            device,
            FakeFunction::new(0x110a, 0x4106, 0xff00_0100).capabilities(&[
                (0x4c, 0x0018_0009, &[]),
                (0x40, 0x0001_0011, &[0x0000_0001, 0x0000_0801]),
            ]),
        );
        assert_eq!(
            capabilities(&config, device),
            [
                Capability {
                    id: 0x09,
                    offset: 0x4c
                },
                Capability {
                    id: 0x11,
                    offset: 0x40
                }
            ]
        );
        assert_eq!(
            find_capability(&config, device, MSIX).map(|c| c.offset),
            Some(0x40)
        );
        assert_eq!(find_capability(&config, device, 0x05), None);
    }

    #[test]
    fn a_capability_loop_is_bounded() {
        let device = bdf(0, 5, 0);
        let config = FakeConfigSpace::default().with(
            device,
            FakeFunction::new(1, 2, 0)
                .set(0x04, status::CAPABILITIES)
                .set(0x34, 0x40)
                .set(0x40, 0x4009),
        );
        assert_eq!(capabilities(&config, device).len(), 48);
    }
}
