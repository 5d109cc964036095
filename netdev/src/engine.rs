//! The protocol engine: state machine, frame channel and statistics
//! (docs/ivshmem-net.md §2, §5).
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use smoltcp::time::{Duration, Instant};

use crate::error::{ConfigError, ReceiveError, SendError};
use crate::layout::Layout;
use crate::memory::{Notifier, SharedMemory, SharedMemoryMut};
use crate::ring::{Allocation, Desynchronized, ReceiveRing, Received, TransmitRing};
use crate::state::State;
use crate::statistics::Statistics;

/// The classic Ethernet IP MTU. Not our default (that follows the section,
/// [`Config::mtu`]), but what every section the host side creates must be
/// able to carry: a quarter of its data area reaches it.
pub const ETHERNET_MTU: usize = 1500;
/// The smallest IP MTU accepted (Linux `min_mtu`, §4).
pub const MIN_MTU: usize = 68;
/// The Ethernet header length added to the IP MTU for the frame size.
pub const ETHERNET_HEADER_LENGTH: usize = 14;
/// State transitions evaluated per [`Engine::poll`] at most (RESET → INIT →
/// READY → RUN needs three).
const MAX_TRANSITIONS_PER_POLL: usize = 4;
/// The default [`Config::transmit_timeout`]: far above any completion
/// latency a running peer shows, short enough that a wedged peer does not
/// hold the link for long. Measured between two of our VMs under TCG on a
/// loaded 2-core host, the longest wait for a completion during a 16 MiB
/// TCP echo was 7.7 ms (`Statistics::longest_completion_wait_micros`);
/// Linux's own netdev watchdog waits 5 s.
pub const DEFAULT_TRANSMIT_TIMEOUT: Duration = Duration::from_secs(2);

/// Engine configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    /// Our peer ID from the ID register: 0 or 1. The peer is `1 - own_id`.
    pub own_id: u16,
    /// Interrupt vectors the device has (1 with INTx). The data vector is 1
    /// with two or more vectors, else 0 (§2.6).
    pub vectors: u16,
    /// IP MTU. `None` (the default) picks the MTU Linux's driver picks for
    /// the section, so that a Linux peer with default settings and we agree
    /// without configuration: `max(68, min(16384, data area / 16))`
    /// ([`Layout::default_mtu`], §4). Frames up to MTU + 14 are sent;
    /// anything up to [`Layout::max_frame_length`] is received, whatever
    /// the MTU (§11). [`Engine::mtu`] is the value in use.
    pub mtu: Option<usize>,
    /// Our MAC address (not exchanged through shared memory, §4).
    pub mac: [u8; 6],
    /// How long the peer may stay in RUN without completing any of our
    /// frames in flight before we reset the link (`None`: wait for ever).
    /// Checked by [`Engine::poll`].
    pub transmit_timeout: Option<Duration>,
}

impl Config {
    /// A configuration with the section's default MTU and the given MAC.
    pub const fn new(own_id: u16, vectors: u16, mac: [u8; 6]) -> Self {
        Self {
            own_id,
            vectors,
            mtu: None,
            mac,
            transmit_timeout: Some(DEFAULT_TRANSMIT_TIMEOUT),
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

    /// The IP MTU this configuration gives on `layout`: [`mtu`](Self::mtu),
    /// or else Linux's default for the section, never below [`MIN_MTU`]
    /// (a data area below 1088 bytes would give Linux less). Not checked
    /// against the section's limit ([`Engine::new`] does that).
    pub const fn mtu_for(&self, layout: &Layout) -> usize {
        match self.mtu {
            Some(mtu) => mtu,
            None if layout.default_mtu() < MIN_MTU => MIN_MTU,
            None => layout.default_mtu(),
        }
    }
}

/// Turns six random bytes into a locally administered unicast MAC (§4).
pub const fn locally_administered_mac(random: [u8; 6]) -> [u8; 6] {
    let mut mac = random;
    mac[0] = (mac[0] & !0x01) | 0x02;
    mac
}

/// The three shared-memory views the engine works on (docs/ivshmem-v2.md §6.1).
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
    /// The IP MTU in use ([`Config::mtu_for`]).
    pub mtu: usize,
    pub layout: Layout,
    pub state_table: M,
    pub own: W,
    pub peer: M,
    pub notifier: N,
    pub own_state: State,
    /// The peer state seen by the last evaluation.
    pub peer_state: State,
    /// Our state and the peer's were RUN at the last evaluation: the one
    /// condition every transmit path checks.
    pub link_up: bool,
    /// Counts ring (re)initialisations: anything held from an older session
    /// (a received frame, a reserved buffer) is stale.
    pub session: u32,
    pub transmit: TransmitRing,
    pub receive: ReceiveRing,
    pub statistics: Statistics,
}

/// The ivshmem-net engine for one side of a link.
///
/// Call [`poll`](Self::poll) on every interrupt (either vector) and on a
/// timer; send and receive through the frame-channel methods or through the
/// [`smoltcp::phy::Device`] implementation.
///
/// # Bounded work
///
/// Whatever the peer writes:
///
/// * every call reads at most `num` ring entries (`num` = the queue length
///   of the section, [`Layout::queue_length`]) and copies at most one frame
///   of at most [`Layout::max_frame_length`] bytes;
/// * between two [`poll`](Self::poll)s, all receive paths together (the
///   frame channel and smoltcp's `receive`) read at most `num` ring entries
///   and copy at most [`Layout::data_size`] + [`Layout::max_frame_length`]
///   bytes: a budget a conforming peer, which never has more than one data
///   area in flight, does not notice. Frames left over wait for the next
///   poll ([`can_receive`](Self::can_receive) still reports them).
#[derive(Debug)]
pub struct Engine<M, W, N> {
    pub(crate) link: Link<M, W, N>,
    /// Frames are copied here out of the peer's section (sized to the
    /// longest frame we accept).
    pub(crate) receive_buffer: Vec<u8>,
    /// The frame in `receive_buffer` not yet advanced past.
    pub(crate) held_frame: Option<Held>,
    /// The buffer handed out by `send_buffer`, not yet committed.
    pub(crate) pending_send: Option<Reservation>,
    /// What the receive paths may still do before the next poll.
    pub(crate) budget: Budget,
    /// Transmit progress as of the last poll.
    watch: TransmitWatch,
}

/// A received frame held in the receive buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Held {
    /// Its length.
    pub length: usize,
    /// The session it was received in.
    pub session: u32,
}

/// A transmit buffer reserved by [`Engine::send_buffer`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reservation {
    allocation: Allocation,
    length: usize,
    session: u32,
}

/// The receive work left before the next [`Engine::poll`].
/// `Interface::poll` calls `receive` until it returns `None`, so without it
/// a peer that refills its ring as fast as we drain it could keep us there
/// for ever.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Budget {
    /// Ring entries we may still consume.
    pub entries: u16,
    /// Bytes we may still start copying (a frame that starts within the
    /// budget is copied whole).
    pub bytes: usize,
}

impl Budget {
    /// A poll's worth: one ring of entries and one data area of bytes.
    fn full(layout: Layout) -> Self {
        Self {
            entries: layout.queue_length(),
            bytes: layout.data_size(),
        }
    }

    /// Whether another entry may be consumed.
    pub fn allows_more(&self) -> bool {
        self.entries > 0 && self.bytes > 0
    }
}

/// When the peer last completed one of our frames, as far as polls saw.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
struct TransmitWatch {
    /// [`TransmitRing::retired`] at the last poll.
    retired: u64,
    /// The poll that last saw progress (or nothing to wait for).
    progress_at: Option<Instant>,
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
    /// cannot hold the rings (§3.3), an MTU outside
    /// 68..=[`Layout::max_mtu`] (Linux's limit for the section, §4) or a
    /// multicast MAC. The default MTU ([`Config::mtu`] `None`) always fits.
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
        let maximum = layout.max_mtu();
        let mtu = config.mtu_for(&layout);
        if !(MIN_MTU..=maximum).contains(&mtu) {
            return Err(ConfigError::MtuOutOfRange { mtu, maximum });
        }
        if config.mac[0] & 0x01 != 0 {
            return Err(ConfigError::MulticastMac);
        }
        let mut link = Link {
            config,
            mtu,
            layout,
            state_table: sections.state_table,
            own: sections.own,
            peer: sections.peer,
            notifier,
            own_state: State::Reset,
            peer_state: State::Unknown(u32::MAX),
            link_up: false,
            session: 0,
            transmit: TransmitRing::new(layout),
            receive: ReceiveRing::new(layout),
            statistics: Statistics::default(),
        };
        link.write_state(State::Reset);
        Ok(Self {
            link,
            receive_buffer: vec![0; layout.max_frame_length()],
            held_frame: None,
            pending_send: None,
            budget: Budget::full(layout),
            watch: TransmitWatch::default(),
        })
    }

    /// Runs the state machine, reclaims transmit completions, checks that
    /// the peer makes progress on our frames, and renews the receive budget;
    /// call on every interrupt and periodically (`now` is any monotonic
    /// clock). Returns whether the link is up.
    ///
    /// Nothing depends on a kick arriving: a lost interrupt only delays
    /// what the next call does. A reserved transmit buffer
    /// ([`send_buffer`](Self::send_buffer)) is discarded.
    pub fn poll(&mut self, now: Instant) -> bool {
        self.budget = Budget::full(self.link.layout);
        if self.link.link_up {
            self.link.flush();
        }
        self.link.evaluate_state();
        if self.link.own_state == State::Run {
            self.link.reclaim();
        }
        self.check_transmit_progress(now);
        if self
            .held_frame
            .is_some_and(|held| !self.link.holds_for(held.session))
        {
            self.held_frame = None;
        }
        self.pending_send = None;
        self.link.link_up
    }

    /// Resets the link if the peer, in RUN, completed none of our frames in
    /// flight for [`Config::transmit_timeout`] (as seen by polls).
    fn check_transmit_progress(&mut self, now: Instant) {
        let retired = self.link.transmit.retired();
        let in_flight = self.link.transmit.in_flight();
        let progressed = retired != self.watch.retired;
        self.watch.retired = retired;
        let progress_at = match self.watch.progress_at {
            Some(at) if self.link.link_up && in_flight > 0 && !progressed => at,
            waited => {
                // Nothing to wait for, or progress: the clock restarts.
                if let Some(at) = waited.filter(|&at| progressed && now > at) {
                    let statistics = &mut self.link.statistics;
                    statistics.longest_completion_wait_micros = statistics
                        .longest_completion_wait_micros
                        .max((now - at).total_micros());
                }
                self.watch.progress_at = Some(now);
                return;
            }
        };
        let Some(timeout) = self.link.config.transmit_timeout else {
            return;
        };
        if now > progress_at && now - progress_at >= timeout {
            log::warn!(
                "ivshmem-net: the peer completed none of our {in_flight} frame(s) in {} ms; resetting the link",
                (now - progress_at).total_millis()
            );
            self.link.statistics.transmit_timeouts += 1;
            self.link.drop_link();
            self.watch.progress_at = None;
        }
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

    /// The IP MTU in use: [`Config::mtu`], or the section's default (§4).
    pub fn mtu(&self) -> usize {
        self.link.mtu
    }

    /// The counters.
    pub fn statistics(&self) -> Statistics {
        self.link.statistics
    }

    /// The longest frame we accept from the peer
    /// ([`Layout::max_frame_length`]), whatever our MTU.
    pub fn max_frame_length(&self) -> usize {
        self.link.layout.max_frame_length()
    }

    /// The largest frame smoltcp sends: MTU + 14.
    pub fn mtu_frame_length(&self) -> usize {
        self.link.mtu + ETHERNET_HEADER_LENGTH
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

    /// Whether a frame of `length` bytes can be sent now: the link is up and
    /// a descriptor and space are free (reclaims completions first).
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
    /// [`SendError::LinkDown`] unless the link is up (we and the peer in
    /// RUN); [`SendError::RingFull`] when no descriptor or space is free (we
    /// then ask the peer for a completion kick);
    /// [`SendError::InvalidLength`] for an empty frame or one longer than
    /// [`Layout::max_frame_length`]. Nothing is written on an error.
    pub fn send(&mut self, frame: &[u8]) -> Result<(), SendError> {
        self.pending_send = None;
        let allocation = self.link.transmit_allocation(frame.len())?;
        self.link
            .own
            .write(self.link.layout.header_size() + allocation.offset, frame);
        self.link.publish(allocation, frame.len());
        self.link.flush();
        Ok(())
    }

    /// Sends `frames` in order as one batch: each is copied and added to the
    /// ring, then all are published with one index store and at most one
    /// doorbell. Stops at the first frame that cannot be sent.
    ///
    /// # Errors
    ///
    /// As for [`send`](Self::send), if not even the first frame could be
    /// sent; otherwise the number sent.
    pub fn send_batch<'a>(
        &mut self,
        frames: impl IntoIterator<Item = &'a [u8]>,
    ) -> Result<usize, SendError> {
        self.pending_send = None;
        let mut sent = 0;
        let mut failure = None;
        for frame in frames {
            match self.link.transmit_allocation(frame.len()) {
                Ok(allocation) => {
                    self.link
                        .own
                        .write(self.link.layout.header_size() + allocation.offset, frame);
                    self.link.publish(allocation, frame.len());
                    sent += 1;
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        self.link.flush();
        match (sent, failure) {
            (0, Some(error)) => Err(error),
            _ => Ok(sent),
        }
    }

    /// Publishes what was written but not yet made visible (frames sent
    /// through smoltcp's tokens, completions of received frames) and rings
    /// the peer's doorbell once if its event indexes ask for it. Call it
    /// after `smoltcp::iface::Interface::poll`; [`poll`](Self::poll) does
    /// it too, and the frame channel's own methods flush themselves.
    pub fn flush(&mut self) {
        self.link.flush();
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
        self.pending_send = Some(Reservation {
            allocation,
            length,
            session: self.link.session,
        });
        let offset = self.link.layout.header_size() + allocation.offset;
        Ok(self.link.own.bytes_mut(offset, length))
    }

    /// Zero-copy send, step 2 ("advance"): publishes the first `length`
    /// bytes of the buffer returned by [`send_buffer`](Self::send_buffer).
    ///
    /// # Errors
    ///
    /// [`SendError::NoReservation`] if there is no reserved buffer;
    /// [`SendError::LinkDown`] if the link went down since it was reserved
    /// (the rings may have been reset: nothing is published);
    /// [`SendError::InvalidLength`] if `length` is 0 or exceeds the buffer.
    /// The reservation is gone after any call.
    pub fn send_advance(&mut self, length: usize) -> Result<(), SendError> {
        let reservation = self.pending_send.take().ok_or(SendError::NoReservation)?;
        if !self.link.holds_for(reservation.session) {
            return Err(SendError::LinkDown);
        }
        if length == 0 || length > reservation.length {
            return Err(SendError::InvalidLength {
                length,
                maximum: reservation.length,
            });
        }
        self.link.publish(reservation.allocation, length);
        self.link.flush();
        Ok(())
    }

    // ---- frame channel: receive --------------------------------------------

    /// Whether a frame is waiting (a held frame of this session, or a new
    /// entry in the peer's avail ring), even if the receive budget makes
    /// the receive paths wait for the next [`poll`](Self::poll).
    pub fn can_receive(&mut self) -> bool {
        if self.valid_held_frame().is_some() {
            return true;
        }
        self.link.receive_pending() > 0
    }

    /// Zero-copy receive, step 1 ("get next frame"): the next frame, copied
    /// out of the peer's section into our buffer and completed to the peer.
    /// It stays available until [`receive_advance`](Self::receive_advance),
    /// or until the link goes down. Invalid entries on the way are consumed
    /// and counted. `None` if nothing is waiting or the receive budget is
    /// spent until the next [`poll`](Self::poll).
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
    /// if there is none (or the receive budget is spent until the next
    /// poll).
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

    /// Makes sure a frame of this session is held in `receive_buffer`;
    /// returns its length.
    pub(crate) fn fetch(&mut self) -> Option<usize> {
        if let Some(length) = self.valid_held_frame() {
            return Some(length);
        }
        let length = self
            .link
            .receive_into(&mut self.receive_buffer, &mut self.budget)?;
        self.held_frame = Some(Held {
            length,
            session: self.link.session,
        });
        Some(length)
    }

    /// The held frame's length if it belongs to the current session of a
    /// link that is up; a stale one is dropped.
    fn valid_held_frame(&mut self) -> Option<usize> {
        let held = self.held_frame?;
        if self.link.holds_for(held.session) {
            Some(held.length)
        } else {
            self.held_frame = None;
            None
        }
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
    /// Both ways out of a session (the drop, and INIT → READY, which resets
    /// the rings) start a new session: nothing held from the old one is
    /// delivered or published.
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
                    self.session = self.session.wrapping_add(1);
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

    /// Goes to RESET and forgets all ring state (§2.5); whatever is held
    /// from the session is stale from now on.
    pub fn drop_link(&mut self) {
        if matches!(self.own_state, State::Ready | State::Run) {
            self.statistics.resets += 1;
        }
        self.write_state(State::Reset);
        self.transmit.clear();
        self.receive.clear();
        self.session = self.session.wrapping_add(1);
        self.link_up = false;
    }

    /// Whether something taken in `session` may still be used: the same
    /// session, and the link up.
    pub fn holds_for(&self, session: u32) -> bool {
        self.link_up && session == self.session
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
    /// for a completion kick when the ring is full. The one gate of every
    /// transmit path: the link must be up (we and the peer in RUN), and
    /// stay up through the reclaims.
    pub fn transmit_allocation(&mut self, length: usize) -> Result<Allocation, SendError> {
        let maximum = self.layout.max_frame_length();
        if length == 0 || length > maximum {
            return Err(SendError::InvalidLength { length, maximum });
        }
        if !self.link_up {
            return Err(SendError::LinkDown);
        }
        if let Some(allocation) = self.transmit.allocate(length) {
            return Ok(allocation);
        }
        self.reclaim();
        if !self.link_up {
            return Err(SendError::LinkDown);
        }
        if let Some(allocation) = self.transmit.allocate(length) {
            return Ok(allocation);
        }
        // Full: make sure the peer sees everything we wrote (it cannot
        // complete what it cannot see), ask for a kick on the next
        // completion, then look again in case it raced with the request.
        self.flush();
        self.transmit.request_completion_notification(&self.own);
        self.reclaim();
        if !self.link_up {
            return Err(SendError::LinkDown);
        }
        self.transmit.allocate(length).ok_or(SendError::RingFull)
    }

    /// Adds a written frame to the transmit ring; the peer sees it at the
    /// next [`flush`](Self::flush).
    pub fn publish(&mut self, allocation: Allocation, length: usize) {
        self.transmit.publish(&self.own, allocation, length);
        self.statistics.transmitted_frames += 1;
        self.statistics.transmitted_bytes += length as u64;
    }

    /// Publishes the frames and completions written since the last flush
    /// (one index store each) and rings the peer's doorbell once if its
    /// event indexes ask for either (§3.6).
    pub fn flush(&mut self) {
        let transmitted = self.transmit.flush(&self.own);
        let completed = self.receive.flush(&self.own);
        if !transmitted && !completed {
            return;
        }
        // One full barrier for both decisions: our index stores must be
        // globally visible before we read the peer's event indexes (a
        // store-load ordering), or both sides could decide not to act.
        // The engine owns this barrier; the Notifier only writes the
        // doorbell register, which the device makes a release (§3.7).
        fence(Ordering::SeqCst);
        let kick_for_frames = self.transmit.should_notify(&self.peer);
        let kick_for_completions = self
            .receive
            .should_notify(&self.peer, &mut self.statistics.peer);
        if kick_for_frames || kick_for_completions {
            self.notifier.notify(self.config.data_vector());
            self.statistics.kicks_sent += 1;
        }
    }

    /// Frames waiting in the peer's avail ring (none unless the link is up:
    /// we take nothing from a peer that is not in RUN); a desynchronised
    /// ring drops the link.
    pub fn receive_pending(&mut self) -> u16 {
        if !self.link_up {
            return 0;
        }
        match self
            .receive
            .pending(&self.peer, &self.own, &mut self.statistics.protocol_errors)
        {
            Ok(pending) => pending,
            Err(Desynchronized) => {
                self.drop_link();
                0
            }
        }
    }

    /// Copies the next valid frame into `buffer`, consuming and counting
    /// invalid entries on the way, within `budget` (each entry costs one
    /// entry, each frame its length in bytes). Completions are published
    /// (and the peer kicked if its `used_event` asks) once the entries of
    /// the last `avail.idx` read are consumed or the budget ends the batch.
    pub fn receive_into(&mut self, buffer: &mut [u8], budget: &mut Budget) -> Option<usize> {
        let mut result = None;
        while budget.allows_more() && self.receive_pending() > 0 {
            budget.entries -= 1;
            match self.receive.consume(
                &self.peer,
                &self.own,
                buffer,
                &mut self.statistics.protocol_errors,
                &mut self.statistics.peer,
            ) {
                Received::Frame(length) => {
                    budget.bytes = budget.bytes.saturating_sub(length);
                    self.statistics.received_frames += 1;
                    self.statistics.received_bytes += length as u64;
                    result = Some(length);
                    break;
                }
                Received::Rejected => self.statistics.drops.bad_descriptor += 1,
            }
        }
        if !self.receive.has_known_entries() {
            self.receive.announce_position(&self.own);
            self.flush();
        } else if !budget.allows_more() {
            self.flush();
        }
        result
    }
}
