//! Message formats of the two ivshmem server protocols (pure encoding and
//! decoding; the file descriptors travel beside them as `SCM_RIGHTS`).
//!
//! * v1 (QEMU `ivshmem-doorbell`, `docs/ivshmem-v2.md` §14.3): every message
//!   is one little-endian `i64`, optionally with one fd.
//! * v2 (Siemens `ivshmem` device, `docs/ivshmem-v2.md` §11.2): an 8-byte
//!   header (`u32 type`, `u32 len` = total length) and little-endian
//!   `u32`/`u64` fields.

/// The v1 protocol version sent first.
pub const V1_PROTOCOL_VERSION: i64 = 0;
/// The v1 "ID" that carries the shared-memory fd.
pub const V1_SHM_ID: i64 = -1;

/// Encodes one v1 message.
pub fn v1_message(value: i64) -> [u8; 8] {
    value.to_le_bytes()
}

/// The v2 protocol version (`IVSHMEM_PROTOCOL_VERSION`).
pub const V2_PROTOCOL_VERSION: u32 = 2;
/// `IVSHMEM_MSG_INIT`.
pub const V2_MSG_INIT: u32 = 0;
/// `IVSHMEM_MSG_EVENT_FD`.
pub const V2_MSG_EVENT_FD: u32 = 1;
/// `IVSHMEM_MSG_PEER_GONE`.
pub const V2_MSG_PEER_GONE: u32 = 2;
/// Length of the v2 header.
pub const V2_HEADER_LEN: usize = 8;

/// One v2 server → client message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum V2Message {
    /// Sent first, with the shared-memory fd.
    Init {
        /// Protocol version (2).
        version: u32,
        /// Oldest compatible version (2).
        compatible_version: u32,
        /// The receiving peer's ID.
        id: u32,
        /// Maximum number of peers.
        max_peers: u32,
        /// Interrupt vectors per peer.
        vectors: u32,
        /// The 16-bit protocol ID (as u32).
        protocol: u32,
        /// Size of ONE output section.
        output_section_size: u64,
    },
    /// With an eventfd: peer `id`'s vector `vector`.
    EventFd {
        /// Owner of the eventfd.
        id: u32,
        /// The vector it signals.
        vector: u32,
    },
    /// Peer `id` disconnected.
    PeerGone {
        /// The peer that left.
        id: u32,
    },
}

/// A v2 message that could not be decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum V2ParseError {
    /// Fewer bytes than the header or the header's `len`.
    #[error("v2 message truncated ({0} bytes)")]
    Truncated(usize),
    /// A `len` too small for the message type.
    #[error("v2 message type {kind} with bad length {len}")]
    BadLength {
        /// Message type.
        kind: u32,
        /// Its `len` field.
        len: u32,
    },
    /// An unknown message type.
    #[error("unknown v2 message type {0}")]
    UnknownType(u32),
}

impl V2Message {
    /// Total length of the encoded message.
    pub fn len(&self) -> usize {
        match self {
            V2Message::Init { .. } => 40,
            V2Message::EventFd { .. } => 16,
            V2Message::PeerGone { .. } => 12,
        }
    }

    /// Never true (every message has a header); for clippy's `len` convention.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Encodes the message (header included).
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.len());
        let kind = match self {
            V2Message::Init { .. } => V2_MSG_INIT,
            V2Message::EventFd { .. } => V2_MSG_EVENT_FD,
            V2Message::PeerGone { .. } => V2_MSG_PEER_GONE,
        };
        out.extend_from_slice(&kind.to_le_bytes());
        out.extend_from_slice(&(self.len() as u32).to_le_bytes());
        match *self {
            V2Message::Init {
                version,
                compatible_version,
                id,
                max_peers,
                vectors,
                protocol,
                output_section_size,
            } => {
                for v in [
                    version,
                    compatible_version,
                    id,
                    max_peers,
                    vectors,
                    protocol,
                ] {
                    out.extend_from_slice(&v.to_le_bytes());
                }
                out.extend_from_slice(&output_section_size.to_le_bytes());
            }
            V2Message::EventFd { id, vector } => {
                out.extend_from_slice(&id.to_le_bytes());
                out.extend_from_slice(&vector.to_le_bytes());
            }
            V2Message::PeerGone { id } => out.extend_from_slice(&id.to_le_bytes()),
        }
        debug_assert_eq!(out.len(), self.len());
        out
    }

    /// Reads the header: `(type, len)`.
    pub fn parse_header(bytes: &[u8]) -> Result<(u32, u32), V2ParseError> {
        if bytes.len() < V2_HEADER_LEN {
            return Err(V2ParseError::Truncated(bytes.len()));
        }
        let kind = u32::from_le_bytes(bytes[0..4].try_into().expect("4 bytes"));
        let len = u32::from_le_bytes(bytes[4..8].try_into().expect("4 bytes"));
        Ok((kind, len))
    }

    /// Decodes one whole message (`bytes` holds exactly `len` bytes or more;
    /// bytes beyond the known fields are ignored, as QEMU does).
    pub fn parse(bytes: &[u8]) -> Result<V2Message, V2ParseError> {
        let (kind, len) = Self::parse_header(bytes)?;
        let u32_at = |off: usize| u32::from_le_bytes(bytes[off..off + 4].try_into().expect("4"));
        let needed = match kind {
            V2_MSG_INIT => 40,
            V2_MSG_EVENT_FD => 16,
            V2_MSG_PEER_GONE => 12,
            other => return Err(V2ParseError::UnknownType(other)),
        };
        if (len as usize) < needed {
            return Err(V2ParseError::BadLength { kind, len });
        }
        if bytes.len() < len as usize {
            return Err(V2ParseError::Truncated(bytes.len()));
        }
        Ok(match kind {
            V2_MSG_INIT => V2Message::Init {
                version: u32_at(8),
                compatible_version: u32_at(12),
                id: u32_at(16),
                max_peers: u32_at(20),
                vectors: u32_at(24),
                protocol: u32_at(28),
                output_section_size: u64::from_le_bytes(bytes[32..40].try_into().expect("8")),
            },
            V2_MSG_EVENT_FD => V2Message::EventFd {
                id: u32_at(8),
                vector: u32_at(12),
            },
            _ => V2Message::PeerGone { id: u32_at(8) },
        })
    }
}

/// The protocol ID peer `id` is told in v2 INIT: for virtio protocols
/// (≥ 0x8000) ID 0 is the back-end (`| 0x4000`), the others front-ends
/// (`& !0x4000`); other protocols are passed through.
pub fn v2_protocol_for_peer(protocol: u16, id: u32) -> u32 {
    let protocol = u32::from(protocol);
    if protocol < 0x8000 {
        protocol
    } else if id == 0 {
        protocol | 0x4000
    } else {
        protocol & !0x4000
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v1_golden() {
        assert_eq!(v1_message(0), [0; 8]);
        assert_eq!(v1_message(1), [1, 0, 0, 0, 0, 0, 0, 0]);
        assert_eq!(v1_message(-1), [0xff; 8]);
    }

    #[test]
    fn v2_golden_init() {
        let init = V2Message::Init {
            version: 2,
            compatible_version: 2,
            id: 1,
            max_peers: 2,
            vectors: 2,
            protocol: 1,
            output_section_size: 0x7f000,
        };
        let bytes = init.to_bytes();
        #[rustfmt::skip]
        let expected = [
            0, 0, 0, 0, 40, 0, 0, 0,
            2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0,
            0, 0xf0, 0x07, 0, 0, 0, 0, 0,
        ];
        assert_eq!(bytes, expected);
        assert_eq!(V2Message::parse(&bytes), Ok(init));
    }

    #[test]
    fn v2_golden_small_messages() {
        let ev = V2Message::EventFd { id: 3, vector: 1 };
        assert_eq!(
            ev.to_bytes(),
            [1, 0, 0, 0, 16, 0, 0, 0, 3, 0, 0, 0, 1, 0, 0, 0]
        );
        assert_eq!(V2Message::parse(&ev.to_bytes()), Ok(ev));
        let gone = V2Message::PeerGone { id: 5 };
        assert_eq!(gone.to_bytes(), [2, 0, 0, 0, 12, 0, 0, 0, 5, 0, 0, 0]);
        assert_eq!(V2Message::parse(&gone.to_bytes()), Ok(gone));
    }

    #[test]
    fn v2_parse_errors() {
        assert_eq!(V2Message::parse(&[0; 4]), Err(V2ParseError::Truncated(4)));
        assert_eq!(
            V2Message::parse(&[9, 0, 0, 0, 8, 0, 0, 0]),
            Err(V2ParseError::UnknownType(9))
        );
        assert_eq!(
            V2Message::parse(&[2, 0, 0, 0, 8, 0, 0, 0]),
            Err(V2ParseError::BadLength { kind: 2, len: 8 })
        );
        assert_eq!(
            V2Message::parse(&[2, 0, 0, 0, 12, 0, 0, 0, 1]),
            Err(V2ParseError::Truncated(9))
        );
    }

    #[test]
    fn virtio_protocol_rewrite() {
        assert_eq!(v2_protocol_for_peer(0x0001, 0), 1);
        assert_eq!(v2_protocol_for_peer(0x8003, 0), 0xC003);
        assert_eq!(v2_protocol_for_peer(0x8003, 1), 0x8003);
        assert_eq!(v2_protocol_for_peer(0xC003, 1), 0x8003);
    }
}
