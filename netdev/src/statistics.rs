//! Link statistics.
#![forbid(unsafe_code)]

/// Frames we dropped locally, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Drops {
    /// A smoltcp transmit token (from `receive`) found no ring space.
    pub ring_full: u64,
    /// A smoltcp transmit token was consumed while the link was down.
    pub link_down: u64,
    /// A smoltcp transmit token asked for an empty or oversized frame.
    pub invalid_length: u64,
    /// Received descriptors that failed validation (also counted in
    /// [`ProtocolErrors`]); the frame was consumed and completed.
    pub bad_descriptor: u64,
}

/// Violations of the protocol seen in what the peer wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ProtocolErrors {
    /// The peer's `avail.idx` is more than `num` ahead of what we consumed.
    pub avail_index_ahead: u64,
    /// An avail-ring entry names a descriptor index ≥ `num`.
    pub descriptor_index: u64,
    /// A descriptor has non-zero flags.
    pub descriptor_flags: u64,
    /// A descriptor's address/length is empty or outside the data area.
    pub descriptor_range: u64,
    /// A descriptor inside the data area is longer than any conforming
    /// sender's frame ([`Layout::max_frame_length`](crate::Layout::max_frame_length)).
    pub frame_too_long: u64,
    /// The peer's `used.idx` is ahead of what we made available.
    pub used_index_ahead: u64,
    /// A used element returns a descriptor out of FIFO order (or ≥ `num`).
    pub used_id: u64,
    /// A used element's `len` is not 1.
    pub used_length: u64,
    /// The peer state moved to a value that is not RESET, INIT, READY or RUN.
    pub unknown_state: u64,
}

impl ProtocolErrors {
    /// The sum of all counters.
    pub fn total(&self) -> u64 {
        self.avail_index_ahead
            + self.descriptor_index
            + self.descriptor_flags
            + self.descriptor_range
            + self.frame_too_long
            + self.used_index_ahead
            + self.used_id
            + self.used_length
            + self.unknown_state
    }
}

/// How the peer drives its transmit ring: evidence for a guess at its
/// implementation (docs/ivshmem-net.md §12). Linux, Zephyr and our engine
/// all speak the same protocol, but each picks its descriptors its own way
/// and keeps its own bookkeeping in the `next` field, which receivers
/// otherwise ignore (§3.5).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerEvidence {
    /// Valid frames whose descriptor index differs from the avail-ring slot
    /// it was posted in: descriptors come off a free list, reused most
    /// recently completed first (Linux).
    pub descriptors_reused: u64,
    /// Valid frames in slot order whose descriptor's `next` names the
    /// following descriptor, the chain Zephyr lays at every reset (and
    /// Linux's free list before its first reuse).
    pub descriptors_chained: u64,
    /// Valid frames in slot order whose descriptor's `next` is 0 (our
    /// engine never writes it; neither chain gives 0 below the last
    /// descriptor).
    pub descriptors_unlinked: u64,
    /// Times a completion kick was decided with the peer's `used_event`
    /// not 0: Linux and our engine write it when their transmit ring
    /// fills; Zephyr never does.
    pub used_event_set: u64,
}

/// The implementations of ivshmem-net that [`PeerEvidence::guess`] tells
/// apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerImplementation {
    /// Linux `drivers/net/ivshmem-net.c`.
    Linux,
    /// Zephyr `drivers/ethernet/eth_ivshmem*.c`.
    Zephyr,
    /// This project's engine (the eth-ivshmem kernel, the host bridge).
    EthIvshmem,
}

impl PeerEvidence {
    /// Frames in slot order the Zephyr guess needs: Linux's first frames
    /// look the same until a descriptor is reused, which happens as soon
    /// as one completion comes back before its next transmit.
    pub const ZEPHYR_FRAMES: u64 = 16;

    /// A guess at the peer's implementation, `None` without enough
    /// evidence:
    ///
    /// * any descriptor reused out of slot order: [`Linux`](PeerImplementation::Linux);
    /// * descriptors in slot order, `next` 0 and never chained:
    ///   [`EthIvshmem`](PeerImplementation::EthIvshmem);
    /// * descriptors in slot order and chained, at least
    ///   [`ZEPHYR_FRAMES`](Self::ZEPHYR_FRAMES) of them, and `used_event`
    ///   never set: [`Zephyr`](PeerImplementation::Zephyr).
    pub fn guess(&self) -> Option<PeerImplementation> {
        if self.descriptors_reused > 0 {
            Some(PeerImplementation::Linux)
        } else if self.descriptors_unlinked > 0 && self.descriptors_chained == 0 {
            Some(PeerImplementation::EthIvshmem)
        } else if self.descriptors_chained >= Self::ZEPHYR_FRAMES
            && self.descriptors_unlinked == 0
            && self.used_event_set == 0
        {
            Some(PeerImplementation::Zephyr)
        } else {
            None
        }
    }

    /// What was seen since `earlier` (a snapshot of the same counters),
    /// e.g. in one session of the link.
    pub fn since(&self, earlier: &PeerEvidence) -> PeerEvidence {
        PeerEvidence {
            descriptors_reused: self.descriptors_reused - earlier.descriptors_reused,
            descriptors_chained: self.descriptors_chained - earlier.descriptors_chained,
            descriptors_unlinked: self.descriptors_unlinked - earlier.descriptors_unlinked,
            used_event_set: self.used_event_set - earlier.used_event_set,
        }
    }
}

/// Counters for one engine (u64: at a billion frames a second they would
/// last centuries, so they are never expected to overflow).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Statistics {
    /// Frames published to the peer.
    pub transmitted_frames: u64,
    /// Bytes published to the peer.
    pub transmitted_bytes: u64,
    /// Frames received from the peer and handed on.
    pub received_frames: u64,
    /// Bytes received from the peer and handed on.
    pub received_bytes: u64,
    /// Local drops by reason.
    pub drops: Drops,
    /// Protocol violations by the peer.
    pub protocol_errors: ProtocolErrors,
    /// Times the link left READY/RUN (peer reset, peer gone, protocol error).
    pub resets: u64,
    /// Times the link came up (own RUN and peer RUN).
    pub link_ups: u64,
    /// Doorbells rung on the data vector.
    pub kicks_sent: u64,
    /// Times the peer stayed in RUN but completed none of our frames for
    /// [`Config::transmit_timeout`](crate::Config::transmit_timeout), and
    /// we reset the link (also counted in `resets`).
    pub transmit_timeouts: u64,
    /// How the peer drives its ring.
    pub peer: PeerEvidence,
    /// The longest time, in microseconds as seen by polls, that frames of
    /// ours waited in flight without the peer completing any, counting only
    /// waits that ended with a completion (the measure the transmit timeout
    /// is chosen against).
    pub longest_completion_wait_micros: u64,
}
