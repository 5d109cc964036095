//! What a protocol asks of a device ([`Requirements`]), and why a device
//! cannot be used ([`ProbeError`]).

use core::fmt;

use super::layout::LayoutError;

/// What the protocol on top needs from a device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Requirements {
    /// The protocol ID the device must advertise, or `None` for any.
    pub protocol: Option<u16>,
    /// The fewest peers (MAX_PEERS) the protocol works with.
    pub min_peers: u16,
    /// The most peers the protocol works with.
    pub max_peers: u16,
}

impl Requirements {
    /// Any protocol, any link with someone to talk to (two or more peers).
    pub const ANY: Self = Self {
        protocol: None,
        min_peers: 2,
        max_peers: u16::MAX,
    };

    /// Checks the protocol ID a device advertises.
    ///
    /// # Errors
    ///
    /// [`ProbeError::WrongProtocol`] if a protocol is required and `found`
    /// is another.
    pub fn check_protocol(&self, found: u16) -> Result<(), ProbeError> {
        match self.protocol {
            Some(expected) if expected != found => {
                Err(ProbeError::WrongProtocol { found, expected })
            }
            _ => Ok(()),
        }
    }

    /// Checks a device's MAX_PEERS and returns it.
    ///
    /// # Errors
    ///
    /// [`ProbeError::BadMaxPeers`] if `found` is outside the range.
    pub fn check_max_peers(&self, found: u32) -> Result<u16, ProbeError> {
        u16::try_from(found)
            .ok()
            .filter(|peers| (self.min_peers..=self.max_peers).contains(peers))
            .ok_or(ProbeError::BadMaxPeers {
                found,
                min: self.min_peers,
                max: self.max_peers,
            })
    }
}

/// Why a device cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProbeError {
    /// No ivshmem device on the bus.
    NoDevice,
    /// The base class is not 0xff.
    WrongClass {
        /// The class found.
        class: u8,
    },
    /// The device runs another protocol.
    WrongProtocol {
        /// Protocol advertised.
        found: u16,
        /// Protocol required.
        expected: u16,
    },
    /// No vendor-specific capability (ID 0x09).
    NoVendorCapability,
    /// The vendor capability's length is neither 0x18 nor 0x20.
    BadCapabilityLength {
        /// The length found.
        length: u8,
    },
    /// Neither BAR2 nor a Base Address in the capability.
    NoSharedMemory,
    /// A BAR the driver needs has no address.
    BarUnassigned {
        /// The BAR number.
        index: u8,
    },
    /// MAX_PEERS is not what the protocol supports.
    BadMaxPeers {
        /// Value found.
        found: u32,
        /// Fewest peers supported.
        min: u16,
        /// Most peers supported.
        max: u16,
    },
    /// Our ID is not below MAX_PEERS.
    BadId {
        /// ID found.
        id: u32,
        /// MAX_PEERS.
        max_peers: u32,
    },
    /// The emulated device's descriptor page is missing or bad.
    BadDescriptor(abi::descriptor::DescriptorError),
    /// `ivshmem-plain` has no ID register: the command line must give `id=`.
    NoId,
    /// The sections are unusable.
    Layout(LayoutError),
    /// Mapping registers or memory failed.
    Map(crate::paging::MapError),
    /// The device was probed before: the kernel drives one device.
    AlreadyProbed,
}

impl fmt::Display for ProbeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::NoDevice => write!(f, "no ivshmem device (110a:4106 or 1af4:1110) found"),
            Self::WrongClass { class } => write!(f, "base class {class:#04x} is not 0xff"),
            Self::WrongProtocol { found, expected } => {
                write!(
                    f,
                    "device speaks protocol {found:#06x}, expected {expected:#06x}"
                )
            }
            Self::NoVendorCapability => write!(f, "no vendor-specific capability (ID 0x09)"),
            Self::BadCapabilityLength { length } => {
                write!(
                    f,
                    "vendor capability length {length:#x}, expected 0x18 or 0x20"
                )
            }
            Self::NoSharedMemory => {
                write!(f, "neither BAR2 nor a Base Address gives the shared memory")
            }
            Self::BarUnassigned { index } => write!(f, "BAR{index} has no address"),
            Self::BadMaxPeers { found, min, max } if min == max => {
                write!(f, "MAX_PEERS is {found}, the protocol needs exactly {min}")
            }
            Self::BadMaxPeers { found, min, max } => {
                write!(f, "MAX_PEERS is {found}, the protocol needs {min} to {max}")
            }
            Self::BadId { id, max_peers } => {
                write!(f, "peer ID {id} is not below MAX_PEERS {max_peers}")
            }
            Self::BadDescriptor(error) => write!(f, "{error}"),
            Self::NoId => write!(
                f,
                "ivshmem-plain has no ID register: give id=0 or id=1 on the command line"
            ),
            Self::Layout(error) => write!(f, "{error}"),
            Self::Map(error) => write!(f, "{error}"),
            Self::AlreadyProbed => write!(f, "the ivshmem device was already probed"),
        }
    }
}

impl From<LayoutError> for ProbeError {
    fn from(error: LayoutError) -> Self {
        Self::Layout(error)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::ToString;

    const NET: Requirements = Requirements {
        protocol: Some(1),
        min_peers: 2,
        max_peers: 2,
    };

    #[test]
    fn requirements_check_protocol_and_peers() {
        assert_eq!(NET.check_protocol(1), Ok(()));
        assert_eq!(
            NET.check_protocol(0x4000),
            Err(ProbeError::WrongProtocol {
                found: 0x4000,
                expected: 1
            })
        );
        assert_eq!(Requirements::ANY.check_protocol(0x4000), Ok(()));
        assert_eq!(NET.check_max_peers(2), Ok(2));
        let three = NET.check_max_peers(3).unwrap_err();
        assert_eq!(
            three.to_string(),
            "MAX_PEERS is 3, the protocol needs exactly 2"
        );
        assert_eq!(Requirements::ANY.check_max_peers(12), Ok(12));
        assert_eq!(
            Requirements::ANY
                .check_max_peers(1)
                .unwrap_err()
                .to_string(),
            "MAX_PEERS is 1, the protocol needs 2 to 65535"
        );
        assert!(Requirements::ANY.check_max_peers(65_536).is_err());
    }
}
