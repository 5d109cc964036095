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
    /// The longest time, in microseconds as seen by polls, that frames of
    /// ours waited in flight without the peer completing any, counting only
    /// waits that ended with a completion (the measure the transmit timeout
    /// is chosen against).
    pub longest_completion_wait_micros: u64,
}
