//! Faults a buggy or hostile peer can cause, one test per guarantee of the
//! engine's documentation:
//!
//! * work is bounded in bytes, not only in entries (the amplification
//!   image: every descriptor pointing at the whole data area);
//! * no data crosses a reset (a frame held across a desync, and across a
//!   drop and re-establishment inside one poll);
//! * every transmit path asks the same question: we and the peer in RUN;
//! * a peer that stays in RUN but never completes our frames makes us
//!   reset the link after the transmit timeout.

mod common;

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use common::{MAC_B, Random};
use netdev::{
    Config, DEFAULT_TRANSMIT_TIMEOUT, Duration, Engine, Instant, Layout, Sections, SendError,
    SharedMemory, SharedMemoryMut, State,
};
use netdev_host::host::{HostLink, HostNotifier, HostRegion, HostRegionMut};
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};
use smoltcp::phy::{Device, RxToken};

/// A read-only view that counts the bytes copied out of it and can replace
/// the next loads of one `u32` field with scripted values (a peer that
/// changes its state between two of the engine's reads).
#[derive(Debug, Clone)]
struct Probe {
    inner: HostRegion,
    bytes_read: Rc<Cell<u64>>,
    script: Rc<RefCell<(usize, VecDeque<u32>)>>,
}

impl Probe {
    fn new(inner: HostRegion) -> Self {
        Self {
            inner,
            bytes_read: Rc::default(),
            script: Rc::new(RefCell::new((usize::MAX, VecDeque::new()))),
        }
    }

    /// The next loads of the `u32` at `offset` return `values`, in order.
    fn script(&self, offset: usize, values: &[u32]) {
        *self.script.borrow_mut() = (offset, values.iter().copied().collect());
    }
}

impl SharedMemory for Probe {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        self.inner.load_u16(offset, order)
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        let mut script = self.script.borrow_mut();
        if script.0 == offset
            && let Some(value) = script.1.pop_front()
        {
            return value;
        }
        self.inner.load_u32(offset, order)
    }
    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.bytes_read
            .set(self.bytes_read.get() + destination.len() as u64);
        self.inner.read(offset, destination);
    }
}

type ProbedEngine = Engine<Probe, HostRegionMut, HostNotifier>;

struct Setup {
    peer: ScriptedPeer,
    engine: ProbedEngine,
    state_table: Probe,
    peer_section: Probe,
    clock: Instant,
    _link: HostLink,
}

impl Setup {
    /// Engine 1 against a scripted Linux peer 0, link up.
    fn new(section_size: usize) -> Self {
        let link = HostLink::new(section_size);
        let mut peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).unwrap();
        let state_table = Probe::new(link.state_table());
        let peer_section = Probe::new(link.section(0));
        let sections = Sections {
            state_table: state_table.clone(),
            own: link.section_mut(1).unwrap(),
            peer: peer_section.clone(),
        };
        let mut engine = Engine::new(Config::new(1, 2, MAC_B), sections, link.notifier(1)).unwrap();
        let clock = Instant::ZERO;
        peer.handshake(|| {
            engine.poll(clock);
        });
        assert!(engine.link_up());
        Self {
            peer,
            engine,
            state_table,
            peer_section,
            clock,
            _link: link,
        }
    }

    /// Polls the engine `elapsed` after the previous poll.
    fn poll_after(&mut self, elapsed: Duration) -> bool {
        self.clock += elapsed;
        self.engine.poll(self.clock)
    }

    fn handshake(&mut self) {
        let (engine, clock) = (&mut self.engine, self.clock);
        self.peer.handshake(|| {
            engine.poll(clock);
        });
        assert!(self.engine.link_up());
    }
}

/// What smoltcp's `Interface::poll` does with the device: take receive
/// tokens until there are none, consuming each. Returns the frames taken.
fn drain_like_smoltcp(engine: &mut ProbedEngine) -> usize {
    let mut frames = 0;
    while let Some((rx, _tx)) = Device::receive(engine, smoltcp::time::Instant::ZERO) {
        rx.consume(|frame| assert!(!frame.is_empty()));
        frames += 1;
    }
    frames
}

// ---- 1. work is bounded in bytes -------------------------------------------

#[test]
fn amplification_image_is_bounded_in_bytes() {
    // The default Jailhouse/QEMU section: num 2048, data area 0x71F80.
    let mut setup = Setup::new(0x7F000);
    let layout = setup.engine.layout();
    let num = layout.queue_length();
    let header = layout.header_size() as u64;
    let data = layout.data_size();
    let max_frame = layout.max_frame_length();
    assert_eq!((num, data, max_frame), (2048, 0x71F80, 65535 + 18));

    // Image 1: every descriptor points at the whole data area. No conforming
    // sender makes such a frame: all are rejected, nothing is copied.
    for index in 0..num {
        setup
            .peer
            .post_raw(index, Some((index, header, data as u32, 0)));
    }
    setup.poll_after(Duration::from_millis(1));
    setup.peer_section.bytes_read.set(0);
    assert_eq!(drain_like_smoltcp(&mut setup.engine), 0);
    assert_eq!(setup.peer_section.bytes_read.get(), 0);
    let errors = setup.engine.statistics().protocol_errors;
    assert_eq!(errors.frame_too_long, u64::from(num));
    assert_eq!(setup.peer.reclaim(), num, "all completed in order");

    // Image 2: every descriptor is as long as a frame may be. One poll's
    // worth of receiving copies at most one data area plus one frame.
    for index in 0..num {
        setup
            .peer
            .post_raw(index, Some((index, header, max_frame as u32, 0)));
    }
    let bound = (data + max_frame) as u64;
    let mut polls = 0;
    let mut frames = 0;
    while setup.peer.in_flight() > 0 {
        setup.poll_after(Duration::from_millis(1));
        setup.peer_section.bytes_read.set(0);
        let taken = drain_like_smoltcp(&mut setup.engine);
        let copied = setup.peer_section.bytes_read.get();
        assert!(
            copied <= bound,
            "one poll copied {copied} bytes (bound {bound})"
        );
        assert!(taken > 0, "every poll makes progress");
        frames += taken;
        polls += 1;
        setup.peer.reclaim();
    }
    assert_eq!(frames, usize::from(num));
    println!("image 2: {frames} frames of {max_frame} bytes over {polls} polls");
    assert!(setup.engine.link_up());
}

#[test]
fn frame_channel_shares_the_budget() {
    let mut setup = Setup::new(0x4000); // num 64
    let layout = setup.engine.layout();
    for _ in 0..64 {
        setup.peer.post(&[7; 1000]);
    }
    let mut taken = 0;
    while setup.engine.receive_frame().is_some() {
        setup.engine.receive_advance();
        taken += 1;
    }
    // The data area is 0x3900 bytes: 15 frames start within it.
    assert_eq!(taken, layout.data_size().div_ceil(1000));
    assert!(
        setup.engine.can_receive(),
        "the rest waits for the next poll"
    );
    setup.poll_after(Duration::from_millis(1));
    assert!(setup.engine.receive_frame().is_some());
}

// ---- 2. no data crosses a reset ---------------------------------------------

#[test]
fn held_frame_dies_with_a_desynchronised_link() {
    let mut setup = Setup::new(0x4000);
    let layout = setup.engine.layout();
    setup.peer.post(b"from the old session");
    assert_eq!(
        setup.engine.receive_frame(),
        Some(b"from the old session".as_slice())
    );
    // Not advanced. The peer now claims completions we never asked for:
    // the next reclaim (outside poll) finds the used ring desynchronised
    // and drops the link.
    setup
        .peer
        .section()
        .store_u16(layout.used_index(), 40, Ordering::Release);
    assert!(setup.engine.transmit_empty());
    assert_eq!(setup.engine.state(), State::Reset);
    assert_eq!(
        setup.engine.statistics().protocol_errors.used_index_ahead,
        1
    );
    assert!(!setup.engine.can_receive());
    assert_eq!(setup.engine.receive_frame(), None);
    let mut buffer = [0; 64];
    assert_eq!(setup.engine.receive(&mut buffer), Ok(None));
}

#[test]
fn held_frame_dies_when_the_peer_restarts_within_one_poll() {
    let mut setup = Setup::new(0x4000);
    setup.peer.post(b"from the old session");
    assert!(setup.engine.receive_frame().is_some());
    // Between two of the engine's state reads in one poll the peer goes
    // RESET -> INIT -> READY -> RUN (the engine only sees INIT, then RUN):
    // the engine drops the link, re-initialises and is back in RUN within
    // the poll.
    setup.peer.initialize();
    setup.state_table.script(0, &[1, 1, 3, 3, 3]);
    assert!(setup.poll_after(Duration::from_millis(1)));
    assert_eq!(setup.engine.statistics().resets, 1);
    assert_eq!(setup.engine.receive_frame(), None, "the old frame is gone");
    // The new session works.
    setup.peer.set_state(State::Run);
    setup.peer.post(b"new");
    assert_eq!(setup.engine.receive_frame(), Some(b"new".as_slice()));
}

#[test]
fn reservation_dies_with_the_session() {
    let mut setup = Setup::new(0x4000);
    let layout = setup.engine.layout();
    setup.engine.send_buffer(100).unwrap().fill(3);
    // The link drops (a desynchronised used ring) before we advance.
    setup
        .peer
        .section()
        .store_u16(layout.used_index(), 9, Ordering::Release);
    assert!(setup.engine.transmit_empty());
    assert!(!setup.engine.can_send(60));
    assert_eq!(setup.engine.send_advance(60), Err(SendError::LinkDown));
    // A reservation does not survive a poll either, nor the new session.
    setup.handshake();
    setup.engine.send_buffer(100).unwrap().fill(4);
    setup.poll_after(Duration::from_millis(1));
    assert_eq!(setup.engine.send_advance(60), Err(SendError::NoReservation));
    assert!(setup.peer.take_transmitted().is_empty());
}

// ---- 3. one definition of "can transmit" --------------------------------------

#[test]
fn no_transmit_path_writes_to_a_peer_that_is_not_running() {
    for peer_state in [State::Ready, State::Unknown(77), State::Init] {
        let mut setup = Setup::new(0x4000);
        let layout = setup.engine.layout();
        setup.peer.set_state(peer_state);
        assert!(!setup.poll_after(Duration::from_millis(1)), "{peer_state}");
        let avail = || {
            setup
                .peer
                .engine_section()
                .load_u16(layout.avail_index(), Ordering::Acquire)
        };
        let before = avail();
        assert_eq!(setup.engine.send(&[1; 60]), Err(SendError::LinkDown));
        assert!(matches!(
            setup.engine.send_buffer(60),
            Err(SendError::LinkDown)
        ));
        assert!(!setup.engine.can_send(60));
        assert!(
            setup
                .engine
                .transmit(smoltcp::time::Instant::ZERO)
                .is_none()
        );
        assert_eq!(avail(), before, "nothing published while {peer_state}");
        assert_eq!(setup.engine.transmit_in_flight(), 0);
    }
}

#[test]
fn receiving_needs_the_link_up_too() {
    let mut setup = Setup::new(0x4000);
    setup.peer.post(b"a request");
    setup.poll_after(Duration::from_millis(1));
    let (rx, _tx) =
        Device::receive(&mut setup.engine, smoltcp::time::Instant::ZERO).expect("a frame");
    rx.consume(|_| ());
    // The peer leaves RUN with a frame in its ring: neither the frame
    // channel nor smoltcp takes it (no token, hence no reply token).
    setup.peer.post(b"another");
    setup.peer.set_state(State::Ready);
    setup.poll_after(Duration::from_millis(1));
    assert!(!setup.engine.can_receive());
    assert!(Device::receive(&mut setup.engine, smoltcp::time::Instant::ZERO).is_none());
    assert_eq!(setup.engine.receive_frame(), None);
    assert_eq!(setup.engine.statistics().received_frames, 1);
    // Back in RUN, the frame is delivered.
    setup.peer.set_state(State::Run);
    setup.poll_after(Duration::from_millis(1));
    assert_eq!(setup.engine.receive_frame(), Some(b"another".as_slice()));
}

// ---- 4. transmit timeout ------------------------------------------------------

#[test]
fn a_peer_that_never_completes_is_reset_after_the_timeout() {
    let mut setup = Setup::new(0x4000);
    setup.engine.send(&[5; 100]).unwrap();
    let step = Duration::from_millis(100);
    let mut waited = Duration::ZERO;
    while waited + step < DEFAULT_TRANSMIT_TIMEOUT {
        assert!(setup.poll_after(step), "up after {waited}");
        waited += step;
    }
    // Completions restart the clock, and the wait is measured.
    assert_eq!(setup.peer.take_transmitted().len(), 1);
    setup.engine.send(&[5; 100]).unwrap();
    assert!(setup.poll_after(step));
    let waited_micros = setup.engine.statistics().longest_completion_wait_micros;
    assert!(
        waited_micros >= DEFAULT_TRANSMIT_TIMEOUT.total_micros() - 200_000,
        "longest completion wait {waited_micros} µs"
    );
    for _ in 0..(DEFAULT_TRANSMIT_TIMEOUT.total_millis() / 100 - 1) {
        assert!(setup.poll_after(step));
    }
    assert!(!setup.poll_after(step), "reset after the timeout");
    let statistics = setup.engine.statistics();
    assert_eq!(statistics.transmit_timeouts, 1);
    assert_eq!(statistics.resets, 1);
    assert_eq!(setup.engine.state(), State::Reset);
    assert_eq!(setup.engine.transmit_in_flight(), 0);
    // The peer sees our RESET; the handshake brings the link back.
    setup.handshake();
    setup.engine.send(&[6; 100]).unwrap();
    assert_eq!(setup.peer.take_transmitted(), vec![vec![6; 100]]);
}

#[test]
fn idle_links_and_disabled_timeouts_never_time_out() {
    let mut setup = Setup::new(0x4000);
    // Nothing in flight: no timeout however long.
    for _ in 0..100 {
        assert!(setup.poll_after(Duration::from_secs(1)));
    }
    // Disabled.
    let link = HostLink::new(0x4000);
    let mut peer = ScriptedPeer::new(&link, 0, PeerStyle::Zephyr).unwrap();
    let (sections, notifier) = link.endpoint(1).unwrap();
    let mut config = Config::new(1, 2, MAC_B);
    config.transmit_timeout = None;
    let mut engine = Engine::new(config, sections, notifier).unwrap();
    let mut clock = Instant::ZERO;
    peer.handshake(|| {
        engine.poll(clock);
    });
    engine.send(&[1; 60]).unwrap();
    for _ in 0..100 {
        clock += Duration::from_secs(1);
        assert!(engine.poll(clock));
    }
}

// ---- random sizes: frames handed up always fit the bound --------------------

#[test]
fn frames_handed_up_stay_within_bounds() {
    let mut setup = Setup::new(0x10000);
    let layout = setup.engine.layout();
    let mut random = Random::new(10);
    let header = layout.header_size() as u64;
    for _ in 0..2000 {
        let length = random.below(layout.data_size() + 10) as u32;
        let offset = random.below(layout.data_size()) as u64;
        let index = random.below(usize::from(layout.queue_length())) as u16;
        setup
            .peer
            .post_raw(index, Some((index, header + offset, length, 0)));
        setup.poll_after(Duration::from_millis(1));
        while let Some(frame) = setup.engine.receive_frame() {
            assert!(!frame.is_empty() && frame.len() <= layout.max_frame_length());
            setup.engine.receive_advance();
        }
        setup.peer.reclaim();
    }
    assert!(setup.engine.link_up());
    let _ = Layout::new(0x10000).unwrap();
}
