//! The protocol engine: state machine, frame channel and statistics
//! (ivshmem-net.md §2, §5).
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use crate::error::{ConfigError, ReceiveError, SendError};
use crate::layout::Layout;
use crate::memory::{Notifier, SharedMemory, SharedMemoryMut};
use crate::ring::{Allocation, Desynchronized, ReceiveRing, Received, TransmitRing};
use crate::state::State;
use crate::statistics::Statistics;

/// The default IP MTU.
pub const DEFAULT_MTU: usize = 1500;
/// The smallest IP MTU accepted (Linux `min_mtu`, §4).
pub const MIN_MTU: usize = 68;
/// The Ethernet header length added to the IP MTU for the frame size.
pub const ETHERNET_HEADER_LENGTH: usize = 14;
/// State transitions evaluated per [`Engine::poll`] at most (RESET → INIT →
/// READY → RUN needs three).
const MAX_TRANSITIONS_PER_POLL: usize = 4;

/// Engine configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Our peer ID from the ID register: 0 or 1. The peer is `1 - own_id`.
    pub own_id: u16,
    /// Interrupt vectors the device has (1 with INTx). The data vector is 1
    /// with two or more vectors, else 0 (§2.6).
    pub vectors: u16,
    /// IP MTU (default 1500). Frames up to MTU + 14 are sent; anything that
    /// fits the data area is received (§4).
    pub mtu: usize,
    /// Our MAC address (not exchanged through shared memory, §4).
    pub mac: [u8; 6],
}

impl Config {
    /// A configuration with the default MTU and the given MAC.
    pub const fn new(own_id: u16, vectors: u16, mac: [u8; 6]) -> Self {
        Self {
            own_id,
            vectors,
            mtu: DEFAULT_MTU,
            mac,
        }
    }

    /// The peer's ID.
    pub const fn peer_id(&self) -> u16 {
        1 - self.own_id
    }

    /// The vector used for data doorbells.
    pub const fn data_vector(&self) -> u16 {
        if self.vectors >= 2 { 1 } else { 0 }
    }
}

/// Turns six random bytes into a locally administered unicast MAC (§4).
pub const fn locally_administered_mac(random: [u8; 6]) -> [u8; 6] {
    let mut mac = random;
    mac[0] = (mac[0] & !0x01) | 0x02;
    mac
}

/// The three shared-memory views the engine works on (ivshmem-v2.md §6.1).
#[derive(Debug)]
pub struct Sections<M, W> {
    /// The state table (read-only; at least 8 bytes).
    pub state_table: M,
    /// Our output section (read-write).
    pub own: W,
    /// The peer's output section (read-only).
    pub peer: M,
}

/// Everything except the receive buffer, so smoltcp tokens can borrow the
/// two parts separately.
#[derive(Debug)]
pub(crate) struct Link<M, W, N> {
    pub config: Config,
    pub layout: Layout,
    pub state_table: M,
    pub own: W,
    pub peer: M,
    pub notifier: N,
    pub own_state: State,
    /// The peer state seen by the last evaluation.
    pub peer_state: State,
    pub link_up: bool,
    pub transmit: TransmitRing,
    pub receive: ReceiveRing,
    pub statistics: Statistics,
}

/// The ivshmem-net engine for one side of a link.
///
/// Call [`poll`](Self::poll) on every interrupt (either vector) and on a
/// timer; send and receive through the frame-channel methods or through the
/// [`smoltcp::phy::Device`] implementation. All methods do bounded work:
/// at most `num` ring entries per call.
#[derive(Debug)]
pub struct Engine<M, W, N> {
    pub(crate) link: Link<M, W, N>,
    /// Frames are copied here out of the peer's section (sized to the data
    /// area, so any valid frame fits).
    pub(crate) receive_buffer: Vec<u8>,
    /// Length of the frame in `receive_buffer` not yet advanced past.
    pub(crate) held_frame: Option<usize>,
    /// Allocation and length handed out by `send_buffer`, not yet
    /// committed.
    pub(crate) pending_send: Option<(Allocation, usize)>,
    /// Frames smoltcp may still take through [`phy::Device::receive`]
    /// before the next [`poll`](Self::poll): one ring's worth.
    /// `Interface::poll` calls `receive` until it returns `None`, so without
    /// this a peer that refills its ring as fast as we drain it could keep
    /// us there for ever.
    ///
    /// [`phy::Device::receive`]: smoltcp::phy::Device::receive
    pub(crate) receive_budget: u16,
}

impl<M: SharedMemory, W: SharedMemoryMut, N: Notifier> Engine<M, W, N> {
    /// Validates the configuration and the sections, writes State = RESET
    /// and returns the engine. The handshake starts with the first
    /// [`poll`](Self::poll).
    ///
    /// # Errors
    ///
    /// [`ConfigError`] for a peer ID other than 0/1, zero vectors, a state
    /// table below 8 bytes, sections of different sizes, a section that
    /// cannot hold the rings (§3.3), an MTU outside 68..=(data area / 2 − 14)
    /// or a multicast MAC.
    pub fn new(config: Config, sections: Sections<M, W>, notifier: N) -> Result<Self, ConfigError> {
        if config.own_id > 1 {
            return Err(ConfigError::InvalidPeerId { id: config.own_id });
        }
        if config.vectors == 0 {
            return Err(ConfigError::NoVectors);
        }
        if sections.state_table.len() < 8 {
            return Err(ConfigError::StateTableTooSmall {
                size: sections.state_table.len(),
            });
        }
        let own_size = sections.own.len();
        let peer_size = sections.peer.len();
        if own_size != peer_size {
            return Err(ConfigError::SectionSizeMismatch {
                own: own_size,
                peer: peer_size,
            });
        }
        let layout = Layout::new(own_size)?;
        let maximum = (layout.data_size() / 2).saturating_sub(ETHERNET_HEADER_LENGTH);
        if config.mtu < MIN_MTU || config.mtu > maximum {
            return Err(ConfigError::MtuOutOfRange {
                mtu: config.mtu,
                maximum,
            });
        }
        if config.mac[0] & 0x01 != 0 {
            return Err(ConfigError::MulticastMac);
        }
        let mut link = Link {
            config,
            layout,
            state_table: sections.state_table,
            own: sections.own,
            peer: sections.peer,
            notifier,
            own_state: State::Reset,
            peer_state: State::Unknown(u32::MAX),
            link_up: false,
            transmit: TransmitRing::new(layout),
            receive: ReceiveRing::new(layout),
            statistics: Statistics::default(),
        };
        link.write_state(State::Reset);
        Ok(Self {
            link,
            receive_buffer: vec![0; layout.data_size()],
            held_frame: None,
            pending_send: None,
            receive_budget: 0,
        })
    }

    /// Runs the state machine and reclaims transmit completions; call on
    /// every interrupt and periodically. Returns whether the link is up.
    ///
    /// Nothing depends on a kick arriving: a lost interrupt only delays
    /// what the next call does.
    pub fn poll(&mut self) -> bool {
        self.receive_budget = self.link.layout.queue_length();
        self.link.evaluate_state();
        if self.link.own_state == State::Run {
            self.link.reclaim();
        }
        if self.link.own_state != State::Run {
            self.held_frame = None;
        }
        self.pending_send = None;
        self.link.link_up
    }

    /// Whether the link is up: we are in RUN and the peer was in RUN at the
    /// last evaluation (Linux carrier rule, §2.2).
    pub fn link_up(&self) -> bool {
        self.link.link_up
    }

    /// Our current state.
    pub fn state(&self) -> State {
        self.link.own_state
    }

    /// The peer state seen at the last evaluation.
    pub fn peer_state(&self) -> State {
        self.link.peer_state
    }

    /// The section layout.
    pub fn layout(&self) -> Layout {
        self.link.layout
    }

    /// The configuration.
    pub fn config(&self) -> Config {
        self.link.config
    }

    /// The counters.
    pub fn statistics(&self) -> Statistics {
        self.link.statistics
    }

    /// The largest frame the peer can send us and we can receive: the data
    /// area size.
    pub fn max_frame_length(&self) -> usize {
        self.link.layout.data_size()
    }

    /// The largest frame smoltcp sends: MTU + 14.
    pub fn mtu_frame_length(&self) -> usize {
        self.link.config.mtu + ETHERNET_HEADER_LENGTH
    }

    /// Drops the link: writes RESET and forgets all ring state, as for a peer
    /// reset. The handshake runs again on the following polls.
    pub fn reset(&mut self) {
        self.link.drop_link();
        self.held_frame = None;
        self.pending_send = None;
    }

    /// Shared references to the borrowed memory and notifier (for tests and
    /// diagnostics). `SharedMemoryMut` writes through `&self`, so callers must
    /// not write our section through this: the engine keeps shadows of it.
    pub fn parts(&self) -> (&M, &W, &M, &N) {
        (
            &self.link.state_table,
            &self.link.own,
            &self.link.peer,
            &self.link.notifier,
        )
    }

    // ---- frame channel: transmit -------------------------------------------

    /// Whether a frame of `length` bytes can be sent now (reclaims
    /// completions first).
    pub fn can_send(&mut self, length: usize) -> bool {
        self.link.transmit_allocation(length).is_ok()
    }

    /// Whether every frame we sent has been completed by the peer.
    pub fn transmit_empty(&mut self) -> bool {
        if self.link.own_state == State::Run {
            self.link.reclaim();
        }
        self.link.transmit.in_flight() == 0
    }

    /// Frames published and not yet completed.
    pub fn transmit_in_flight(&self) -> u16 {
        self.link.transmit.in_flight()
    }

    /// Copies `frame` into our section and publishes it.
    ///
    /// # Errors
    ///
    /// [`SendError::LinkDown`] unless we are in RUN; [`SendError::RingFull`]
    /// when no descriptor or space is free (we then ask the peer for a
    /// completion kick); [`SendError::InvalidLength`] for an empty frame or
    /// one larger than the data area.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.pending_send = None;
        let allocation = self.link.transmit_allocation(frame.len())?;
        self.link
            .own
            .write(self.link.layout.header_size() + allocation.offset, frame);
        self.link.publish(allocation, frame.len());
        Ok(())
    }

    /// Zero-copy send, step 1 ("get next frame"): returns a buffer of
    /// exactly `length` bytes inside our own section. Fill it and call
    /// [`send_advance`](Self::send_advance); calling this again or polling
    /// instead discards the reservation without publishing anything.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send).
    pub fn send_buffer(&mut self, length: usize) -> Result<&mut [u8], SendError> {
        self.pending_send = None;
        let allocation = self.link.transmit_allocation(length)?;
        self.pending_send = Some((allocation, length));
        let offset = self.link.layout.header_size() + allocation.offset;
        Ok(self.link.own.bytes_mut(offset, length))
    }

    /// Zero-copy send, step 2 ("advance"): publishes the first `length`
    /// bytes of the buffer returned by [`send_buffer`](Self::send_buffer).
    ///
    /// # Errors
    ///
    /// [`SendError::LinkDown`] if there is no pending buffer (or the link
    /// dropped since); [`SendError::InvalidLength`] if `length` is 0 or
    /// exceeds the buffer (which is then discarded).
    pub fn send_advance(&mut self, length: usize) -> Result<(), SendError> {
        let (allocation, reserved) = self.pending_send.take().ok_or(SendError::LinkDown)?;
        // A receive or reclaim in between may have dropped the link (and
        // cleared the rings): never publish into rings that were reset.
        if !self.link.link_up {
            return Err(SendError::LinkDown);
        }
        if length == 0 || length > reserved {
            return Err(SendError::InvalidLength {
                length,
                maximum: reserved,
            });
        }
        self.link.publish(allocation, length);
        Ok(())
    }

    // ---- frame channel: receive --------------------------------------------

    /// Whether a frame is waiting (a held frame, or a new entry in the
    /// peer's avail ring).
    pub fn can_receive(&mut self) -> bool {
        if self.held_frame.is_some() {
            return true;
        }
        self.link.receive_pending() > 0
    }

    /// Zero-copy receive, step 1 ("get next frame"): the next frame, copied
    /// out of the peer's section into our buffer and completed to the peer.
    /// It stays available until [`receive_advance`](Self::receive_advance).
    /// Invalid entries on the way are consumed and counted.
    pub fn receive_frame(&mut self) -> Option<&[u8]> {
        let length = self.fetch()?;
        Some(&self.receive_buffer[..length])
    }

    /// Zero-copy receive, step 2 ("advance"): releases the frame returned
    /// by [`receive_frame`](Self::receive_frame).
    pub fn receive_advance(&mut self) {
        self.held_frame = None;
    }

    /// Copies the next frame into `buffer` and returns its length, or `None`
    /// if there is none.
    ///
    /// # Errors
    ///
    /// [`ReceiveError::BufferTooSmall`] if the frame does not fit; it stays
    /// pending.
    pub fn receive(&mut self, buffer: &mut [u8]) -> Result<Option<usize>, ReceiveError> {
        let Some(length) = self.fetch() else {
            return Ok(None);
        };
        let Some(destination) = buffer.get_mut(..length) else {
            return Err(ReceiveError::BufferTooSmall { length });
        };
        destination.copy_from_slice(&self.receive_buffer[..length]);
        self.held_frame = None;
        Ok(Some(length))
    }

    /// Makes sure a frame is held in `receive_buffer`; returns its length.
    pub(crate) fn fetch(&mut self) -> Option<usize> {
        if let Some(length) = self.held_frame {
            return Some(length);
        }
        let length = self.link.receive_into(&mut self.receive_buffer)?;
        self.held_frame = Some(length);
        Some(length)
    }
}

impl<M: SharedMemory, W: SharedMemoryMut, N: Notifier> Link<M, W, N> {
    /// Full barrier, then the State register (§2.2 "every state write is
    /// preceded by virt_wmb", §3.7).
    fn write_state(&mut self, state: State) {
        fence(Ordering::SeqCst);
        self.notifier.set_state(state.to_raw());
        self.own_state = state;
    }

    fn read_peer_state(&mut self) -> State {
        let offset = 4 * usize::from(self.config.peer_id());
        let state = State::from_raw(self.state_table.load_u32(offset, Ordering::Acquire));
        if state != self.peer_state {
            if let State::Unknown(_) = state {
                self.statistics.protocol_errors.unknown_state += 1;
            }
            self.peer_state = state;
        }
        state
    }

    /// Evaluates the transitions of §2.2/§2.3 on every call (Zephyr style),
    /// chaining up to [`MAX_TRANSITIONS_PER_POLL`] of them.
    ///
    /// | own | peer | action |
    /// |---|---|---|
    /// | RESET | RESET or INIT | → INIT |
    /// | INIT | not RESET | zero our section, clear rings, → READY |
    /// | READY/RUN | RESET | drop the link (→ RESET) |
    /// | READY | READY or RUN | → RUN |
    /// | RUN | INIT | drop the link (our addition: the peer re-initialised) |
    ///
    /// The last row is not in either reference driver: both ignore a peer in
    /// INIT while they are in RUN. A poll-driven engine can miss the
    /// peer's transient RESET, and a peer back in INIT has forgotten its
    /// ring state, so continuing would desynchronise the rings. Dropping is
    /// safe because a peer in INIT waits for us to leave RESET anyway.
    fn evaluate_state(&mut self) {
        for _ in 0..MAX_TRANSITIONS_PER_POLL {
            let peer = self.read_peer_state();
            match (self.own_state, peer) {
                (State::Reset, State::Reset | State::Init) => self.write_state(State::Init),
                (State::Init, peer) if peer != State::Reset => {
                    // Zero the whole section (Linux, §2.5) and forget
                    // everything; write_state fences before READY.
                    self.own.fill_zero(0, self.layout.section_size());
                    self.transmit.clear();
                    self.receive.clear();
                    self.write_state(State::Ready);
                }
                (State::Ready | State::Run, State::Reset) => self.drop_link(),
                (State::Run, State::Init) => self.drop_link(),
                (State::Ready, State::Ready | State::Run) => self.write_state(State::Run),
                _ => break,
            }
        }
        let up = self.own_state == State::Run && self.peer_state == State::Run;
        if up && !self.link_up {
            self.statistics.link_ups += 1;
        }
        self.link_up = up;
    }

    /// Goes to RESET and forgets all ring state (§2.5).
    pub fn drop_link(&mut self) {
        if matches!(self.own_state, State::Ready | State::Run) {
            self.statistics.resets += 1;
        }
        self.write_state(State::Reset);
        self.transmit.clear();
        self.receive.clear();
        self.link_up = false;
    }

    /// Reclaims completions; a desynchronised used ring drops the link.
    pub fn reclaim(&mut self) {
        if self
            .transmit
            .reclaim(&self.peer, &mut self.statistics.protocol_errors)
            .is_err()
        {
            self.drop_link();
        }
    }

    /// Finds room for a frame of `length` bytes, reclaiming first and asking
    /// for a completion kick when the ring is full.
    pub fn transmit_allocation(&mut self, length: usize) -> Result<Allocation, SendError> {
        let maximum = self.layout.data_size();
        if length == 0 || length > maximum {
            return Err(SendError::InvalidLength { length, maximum });
        }
        if self.own_state != State::Run {
            return Err(SendError::LinkDown);
        }
        if let Some(allocation) = self.transmit.allocate(length) {
            return Ok(allocation);
        }
        self.reclaim();
        if self.own_state != State::Run {
            return Err(SendError::LinkDown);
        }
        if let Some(allocation) = self.transmit.allocate(length) {
            return Ok(allocation);
        }
        // Full: ask for a kick on the next completion, then look again in
        // case it raced with the request.
        self.transmit.request_completion_notification(&self.own);
        self.reclaim();
        if self.own_state != State::Run {
            return Err(SendError::LinkDown);
        }
        self.transmit.allocate(length).ok_or(SendError::RingFull)
    }

    /// Publishes a written frame and kicks the peer if its `avail_event`
    /// asks for it.
    pub fn publish(&mut self, allocation: Allocation, length: usize) {
        self.transmit.publish(&self.own, allocation, length);
        self.statistics.transmitted_frames += 1;
        self.statistics.transmitted_bytes += length as u64;
        if self.transmit.should_notify(&self.peer) {
            self.kick();
        }
    }

    fn kick(&mut self) {
        // The fence in should_notify already orders our writes before the
        // doorbell; the doorbell itself is a release on the device side.
        self.notifier.notify(self.config.data_vector());
        self.statistics.kicks_sent += 1;
    }

    /// Frames waiting in the peer's avail ring; a desynchronised ring drops
    /// the link.
    pub fn receive_pending(&mut self) -> u16 {
        if self.own_state != State::Run {
            return 0;
        }
        match self
            .receive
            .pending(&self.peer, &mut self.statistics.protocol_errors)
        {
            Ok(pending) => pending,
            Err(Desynchronized) => {
                self.drop_link();
                0
            }
        }
    }

    /// Copies the next valid frame into `buffer`, consuming and counting at
    /// most `num` invalid entries on the way; kicks the peer for the
    /// completions if its `used_event` asks for it.
    pub fn receive_into(&mut self, buffer: &mut [u8]) -> Option<usize> {
        let mut pending = self.receive_pending();
        let mut result = None;
        while pending > 0 {
            pending -= 1;
            match self.receive.consume(
                &self.peer,
                &self.own,
                buffer,
                &mut self.statistics.protocol_errors,
            ) {
                Received::Frame(length) => {
                    self.statistics.received_frames += 1;
                    self.statistics.received_bytes += length as u64;
                    result = Some(length);
                    break;
                }
                Received::Rejected => self.statistics.drops.bad_descriptor += 1,
            }
        }
        if self.receive.should_notify(&self.peer) {
            self.kick();
        }
        result
    }
}
