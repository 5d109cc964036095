//! Error types of the engine.
#![forbid(unsafe_code)]

use core::fmt;

use crate::layout::LayoutError;

/// Why an [`Engine`](crate::Engine) could not be built from its
/// configuration and memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigError {
    /// The own peer ID is not 0 or 1 (docs/ivshmem-net.md §1.2).
    InvalidPeerId {
        /// The ID that was given.
        id: u16,
    },
    /// The device reports no interrupt vectors.
    NoVectors,
    /// The state table cannot hold both peers' states.
    StateTableTooSmall {
        /// The state table size in bytes.
        size: usize,
    },
    /// The two output sections differ in size.
    SectionSizeMismatch {
        /// Our section size.
        own: usize,
        /// The peer's section size.
        peer: usize,
    },
    /// The output section cannot carry the protocol.
    Layout(LayoutError),
    /// The MTU is below 68 or above what the section allows,
    /// `min(65535, data area / 4)` ([`Layout::max_mtu`](crate::Layout::max_mtu)).
    MtuOutOfRange {
        /// The requested IP MTU.
        mtu: usize,
        /// The largest MTU this section size allows.
        maximum: usize,
    },
    /// The MAC address is a multicast address.
    MulticastMac,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::InvalidPeerId { id } => write!(formatter, "peer ID {id} is not 0 or 1"),
            Self::NoVectors => formatter.write_str("the device has no interrupt vectors"),
            Self::StateTableTooSmall { size } => {
                write!(
                    formatter,
                    "state table of {size} bytes cannot hold two states"
                )
            }
            Self::SectionSizeMismatch { own, peer } => write!(
                formatter,
                "output sections differ in size: own {own:#x}, peer {peer:#x}"
            ),
            Self::Layout(error) => error.fmt(formatter),
            Self::MtuOutOfRange { mtu, maximum } => {
                write!(formatter, "MTU {mtu} is outside 68..={maximum}")
            }
            Self::MulticastMac => formatter.write_str("the MAC address is a multicast address"),
        }
    }
}

impl core::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn core::error::Error + 'static)> {
        match self {
            Self::Layout(error) => Some(error),
            _ => None,
        }
    }
}

impl From<LayoutError> for ConfigError {
    fn from(error: LayoutError) -> Self {
        Self::Layout(error)
    }
}

/// Why a frame could not be sent.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SendError {
    /// The link is not up: we or the peer are not in RUN (or the link went
    /// down since a buffer was reserved). Nothing was written into the ring.
    LinkDown,
    /// [`Engine::send_advance`](crate::Engine::send_advance) without a
    /// buffer from [`Engine::send_buffer`](crate::Engine::send_buffer) (or
    /// after a call that discarded it).
    NoReservation,
    /// No descriptor or no contiguous data space is free; retry after the
    /// peer completes frames.
    RingFull,
    /// The frame is empty or larger than the data area allows.
    InvalidLength {
        /// The frame length.
        length: usize,
        /// The largest frame this link can carry.
        maximum: usize,
    },
}

impl fmt::Display for SendError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::LinkDown => formatter.write_str("link is down"),
            Self::NoReservation => formatter.write_str("no transmit buffer is reserved"),
            Self::RingFull => formatter.write_str("transmit ring is full"),
            Self::InvalidLength { length, maximum } => {
                write!(formatter, "frame length {length} is outside 1..={maximum}")
            }
        }
    }
}

impl core::error::Error for SendError {}

/// Why [`Engine::receive`](crate::Engine::receive) returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiveError {
    /// The caller's buffer is smaller than the next frame; the frame stays
    /// pending.
    BufferTooSmall {
        /// The length of the pending frame.
        length: usize,
    },
}

impl fmt::Display for ReceiveError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::BufferTooSmall { length } => {
                write!(formatter, "buffer is smaller than the {length}-byte frame")
            }
        }
    }
}

impl core::error::Error for ReceiveError {}
