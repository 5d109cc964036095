//! A hostile peer: adversarial values in the peer's section and state.
//! Nothing the peer writes may make the engine panic, access memory out of
//! bounds (the host backing panics on that), loop without bound or stall;
//! violations are counted.

mod common;

use std::cell::Cell;
use std::rc::Rc;
use std::sync::atomic::Ordering;

use common::MAC_B;
use netdev::{Config, Engine, Layout, Sections, SharedMemory, SharedMemoryMut, State};
use netdev_host::host::{HostLink, HostNotifier, HostRegion, HostRegionMut};
use netdev_host::now;
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};
use proptest::prelude::*;

/// A read-only view that counts accesses (to bound the work per call) and,
/// when `chaos` is set, returns values that change on every read.
#[derive(Debug, Clone)]
struct Watched {
    inner: HostRegion,
    accesses: Rc<Cell<u64>>,
    chaos: Option<Rc<Cell<u64>>>,
}

impl Watched {
    fn scramble(&self, value: u64) -> u64 {
        let Some(state) = &self.chaos else {
            return value;
        };
        let mut x = state.get();
        if x == 0 {
            return value; // chaos not switched on yet
        }
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        state.set(x);
        match x % 4 {
            0 => value,
            1 => value.wrapping_add(x >> 60),
            2 => x >> 8,
            _ => !value,
        }
    }
}

impl SharedMemory for Watched {
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        self.accesses.set(self.accesses.get() + 1);
        self.scramble(u64::from(self.inner.load_u16(offset, order))) as u16
    }
    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.accesses.set(self.accesses.get() + 1);
        self.scramble(u64::from(self.inner.load_u32(offset, order))) as u32
    }
    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.accesses.set(self.accesses.get() + 1);
        self.inner.read(offset, destination);
        if let Some(first) = destination.first_mut() {
            *first = self.scramble(u64::from(*first)) as u8;
        }
    }
}

type HostileEngine = Engine<Watched, HostRegionMut, HostNotifier>;

struct Setup {
    link: HostLink,
    peer: ScriptedPeer,
    engine: HostileEngine,
    accesses: Rc<Cell<u64>>,
}

/// Engine 1 against a scripted (later hostile) peer 0, link up. With
/// `chaos`, every peer-written value the engine loads may change between
/// reads from then on.
fn setup(section_size: usize, chaos: Option<u64>) -> Setup {
    let link = HostLink::new(section_size);
    let mut peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).unwrap();
    let accesses = Rc::new(Cell::new(0));
    let chaos_state = chaos.map(|_| Rc::new(Cell::new(0)));
    let watched = |region| Watched {
        inner: region,
        accesses: Rc::clone(&accesses),
        chaos: chaos_state.clone(),
    };
    let sections = Sections {
        state_table: watched(link.state_table()),
        own: link.section_mut(1).unwrap(),
        peer: watched(link.section(0)),
    };
    let mut engine = Engine::new(Config::new(1, 2, MAC_B), sections, link.notifier(1)).unwrap();
    peer.handshake(|| {
        engine.poll(now());
    });
    assert!(engine.link_up());
    if let (Some(state), Some(seed)) = (&chaos_state, chaos) {
        state.set(seed | 1);
    }
    Setup {
        link,
        peer,
        engine,
        accesses,
    }
}

/// Bound on peer-memory accesses in one engine call: the state machine
/// reads the state a few times, a reclaim reads 2 per entry, a receive at
/// most 6 per entry, each bounded by num.
fn access_bound(layout: Layout) -> u64 {
    8 * u64::from(layout.queue_length()) + 32
}

// ---- deterministic checks: each violation is counted ----------------------

#[test]
fn bad_descriptors_are_consumed_completed_and_counted() {
    let Setup {
        mut peer,
        mut engine,
        ..
    } = setup(0x4000, None);
    let layout = engine.layout();
    let header = layout.header_size() as u64;
    let size = layout.section_size() as u64;
    let good = [0xABu8; 60];
    peer.section().write(layout.header_size(), &good);
    // (ring entry, descriptor) pairs, each followed by a good frame.
    let cases: [(u16, (u16, u64, u32, u16)); 8] = [
        (64, (0, header, 60, 0)),          // index ≥ num
        (1, (1, header, 60, 1)),           // flags ≠ 0
        (2, (2, header - 1, 60, 0)),       // addr below H
        (3, (3, size, 1, 0)),              // addr at the end
        (4, (4, header, 0, 0)),            // empty
        (5, (5, size - 10, 11, 0)),        // runs past the end
        (6, (6, header | 1 << 32, 60, 0)), // high address bits
        (7, (7, header, u32::MAX, 0)),     // huge length
    ];
    for (entry, descriptor) in cases {
        peer.post_raw(entry, Some(descriptor));
        peer.post_raw(10, Some((10, header, 60, 0)));
    }
    let mut frames = 0;
    while let Some(frame) = engine.receive_frame() {
        assert_eq!(frame, good.as_slice());
        engine.receive_advance();
        frames += 1;
    }
    assert_eq!(frames, 8);
    let errors = engine.statistics().protocol_errors;
    assert_eq!(errors.descriptor_index, 1);
    assert_eq!(errors.descriptor_flags, 1);
    assert_eq!(errors.descriptor_range, 6);
    assert_eq!(engine.statistics().drops.bad_descriptor, 8);
    // All 16 entries completed, in order, with len 1 (asserted by reclaim).
    assert_eq!(peer.reclaim(), 16);
    assert!(engine.link_up());
}

#[test]
fn avail_index_far_ahead_resets_the_link() {
    let Setup {
        mut peer,
        mut engine,
        accesses,
        ..
    } = setup(0x4000, None);
    let layout = engine.layout();
    for index in [65u16, 0x8000, 0xFFFF] {
        peer.section()
            .store_u16(layout.avail_index(), index, Ordering::Release);
        accesses.set(0);
        assert!(engine.receive_frame().is_none());
        assert!(accesses.get() <= access_bound(layout));
        assert_eq!(engine.state(), State::Reset);
        // The handshake runs again; the peer re-initialises.
        peer.handshake(|| {
            engine.poll(now());
        });
        assert!(engine.link_up());
    }
    let statistics = engine.statistics();
    assert_eq!(statistics.protocol_errors.avail_index_ahead, 3);
    assert_eq!(statistics.resets, 3);
    // Exactly num pending is legal.
    for _ in 0..64 {
        peer.post(&[1, 2, 3]);
    }
    for _ in 0..64 {
        assert_eq!(engine.receive_frame(), Some([1u8, 2, 3].as_slice()));
        engine.receive_advance();
    }
}

#[test]
fn used_ring_violations() {
    let Setup {
        peer, mut engine, ..
    } = setup(0x4000, None);
    let layout = engine.layout();
    // Wrong id and wrong len: counted, the oldest frame is retired anyway.
    engine.send(&[9; 100]).unwrap();
    engine.send(&[9; 100]).unwrap();
    let section = peer.section();
    section.store_u32(layout.used_ring(0), 5, Ordering::Relaxed);
    section.store_u32(layout.used_ring(0) + 4, 1, Ordering::Relaxed);
    section.store_u32(layout.used_ring(1), 1, Ordering::Relaxed);
    section.store_u32(layout.used_ring(1) + 4, 1500, Ordering::Relaxed);
    section.store_u16(layout.used_index(), 2, Ordering::Release);
    assert!(engine.transmit_empty());
    let errors = engine.statistics().protocol_errors;
    assert_eq!((errors.used_id, errors.used_length), (1, 1));
    assert!(engine.link_up());
    // A used index beyond what we published drops the link.
    engine.send(&[9; 100]).unwrap();
    section.store_u16(layout.used_index(), 4, Ordering::Release);
    engine.poll(now());
    assert_eq!(engine.statistics().protocol_errors.used_index_ahead, 1);
    assert_eq!(engine.state(), State::Reset);
    assert_eq!(engine.transmit_in_flight(), 0);
}

#[test]
fn peer_states() {
    let Setup {
        peer, mut engine, ..
    } = setup(0x4000, None);
    peer.set_state(State::Unknown(77));
    engine.poll(now());
    assert_eq!(engine.state(), State::Run, "unknown values are ignored");
    assert!(!engine.link_up());
    engine.poll(now());
    assert_eq!(
        engine.statistics().protocol_errors.unknown_state,
        1,
        "counted once"
    );
    // A peer back in INIT has forgotten its rings: drop.
    peer.set_state(State::Init);
    engine.poll(now());
    assert_ne!(engine.state(), State::Run);
    assert_eq!(engine.statistics().resets, 1);
}

// ---- property tests ---------------------------------------------------------

#[derive(Debug, Clone)]
enum Operation {
    Poll,
    Receive,
    Send(usize),
    Write16(usize, u16),
    Write32(usize, u32),
    State(u32),
    Post(u16, u16, u64, u32, u16),
    Handshake,
}

/// Values near the interesting edges for a ring of `num` entries.
fn special_u16() -> impl Strategy<Value = u16> {
    prop_oneof![
        Just(0u16),
        Just(1),
        Just(31),
        Just(32),
        Just(63),
        Just(64),
        Just(65),
        Just(0x7FFF),
        Just(0x8000),
        Just(0xFFFE),
        Just(0xFFFF),
        any::<u16>(),
    ]
}

fn special_u32(section_size: usize) -> impl Strategy<Value = u32> {
    let size = section_size as u32;
    prop_oneof![
        Just(0u32),
        Just(1),
        Just(0x6FF),
        Just(0x700),
        Just(size - 1),
        Just(size),
        Just(u32::MAX),
        Just(0x8000_0000),
        0..size,
        any::<u32>(),
    ]
}

/// Offsets of the peer's header fields, plus anywhere in the section.
fn field_offset(layout: Layout, align: usize) -> impl Strategy<Value = usize> {
    let num = usize::from(layout.queue_length());
    let size = layout.section_size();
    prop_oneof![
        Just(layout.avail_index()),
        Just(layout.used_index()),
        Just(layout.used_event()),
        Just(layout.avail_event()),
        (0..num).prop_map(move |slot| layout.avail_ring(slot)),
        (0..num).prop_map(move |slot| layout.used_ring(slot)),
        (0..num).prop_map(move |slot| layout.used_ring(slot) + 4),
        (0..num * 4).prop_map(|word| word * 4),
        (0..size / align).prop_map(move |unit| unit * align),
    ]
    .prop_map(move |offset| offset & !(align - 1))
}

fn operation(layout: Layout) -> impl Strategy<Value = Operation> {
    let size = layout.section_size();
    prop_oneof![
        4 => Just(Operation::Poll),
        4 => Just(Operation::Receive),
        3 => (1usize..4000).prop_map(Operation::Send),
        4 => (field_offset(layout, 2), special_u16()).prop_map(|(o, v)| Operation::Write16(o, v)),
        4 => (field_offset(layout, 4), special_u32(size)).prop_map(|(o, v)| Operation::Write32(o, v)),
        1 => prop_oneof![Just(0u32), Just(1), Just(2), Just(3), any::<u32>()].prop_map(Operation::State),
        4 => (special_u16(), special_u16(), special_u32(size).prop_map(u64::from), special_u32(size), prop_oneof![Just(0u16), any::<u16>()])
            .prop_map(|(entry, index, address, length, flags)| Operation::Post(entry, index, address, length, flags)),
        1 => Just(Operation::Handshake),
    ]
}

fn run(setup: &mut Setup, operations: &[Operation]) {
    let layout = setup.engine.layout();
    let bound = access_bound(layout);
    for operation in operations {
        setup.accesses.set(0);
        match *operation {
            Operation::Poll => {
                setup.engine.poll(now());
            }
            Operation::Receive => {
                if let Some(frame) = setup.engine.receive_frame() {
                    assert!(!frame.is_empty() && frame.len() <= layout.data_size());
                    setup.engine.receive_advance();
                }
            }
            Operation::Send(length) => {
                let _ = setup.engine.send(&vec![0x5A; length]);
            }
            Operation::Write16(offset, value) => {
                setup
                    .peer
                    .section()
                    .store_u16(offset, value, Ordering::Release)
            }
            Operation::Write32(offset, value) => {
                setup
                    .peer
                    .section()
                    .store_u32(offset, value, Ordering::Release)
            }
            Operation::State(value) => setup.peer.set_state(State::from_raw(value)),
            Operation::Post(entry, index, address, length, flags) => {
                setup
                    .peer
                    .post_raw(entry, Some((index % 128, address, length, flags)));
            }
            Operation::Handshake => {
                let engine = &mut setup.engine;
                setup.peer.handshake(|| {
                    engine.poll(now());
                });
            }
        }
        assert!(
            setup.accesses.get() <= bound * 2,
            "{operation:?} made {} accesses",
            setup.accesses.get()
        );
        assert!(setup.engine.transmit_in_flight() <= layout.queue_length());
        assert!(setup.link.state(1) <= 3);
    }
    // Whatever happened, a reset and a handshake bring the link back and it
    // carries a frame.
    setup.engine.reset();
    let engine = &mut setup.engine;
    setup.peer.handshake(|| {
        engine.poll(now());
    });
    if setup.engine.link_up() {
        setup.peer.post(b"after the storm");
        assert_eq!(
            setup.engine.receive_frame(),
            Some(b"after the storm".as_slice())
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn hostile_writes_small_layout(operations in proptest::collection::vec(operation(Layout::new(0x2000).unwrap()), 1..80)) {
        let mut setup = setup(0x2000, None);
        run(&mut setup, &operations);
    }

    #[test]
    fn hostile_writes_large_layout(operations in proptest::collection::vec(operation(Layout::new(0x10000).unwrap()), 1..80)) {
        let mut setup = setup(0x10000, None);
        run(&mut setup, &operations);
    }

    /// Every load of a peer-written value may return something different.
    #[test]
    fn values_change_between_reads(seed in any::<u64>(), operations in proptest::collection::vec(operation(Layout::new(0x4000).unwrap()), 1..80)) {
        let mut setup = setup(0x4000, Some(seed));
        let layout = setup.engine.layout();
        for operation in &operations {
            setup.accesses.set(0);
            match *operation {
                Operation::Receive => {
                    if let Some(frame) = setup.engine.receive_frame() {
                        prop_assert!(frame.len() <= layout.data_size());
                        setup.engine.receive_advance();
                    }
                }
                Operation::Send(length) => {
                    let _ = setup.engine.send(&vec![1; length]);
                }
                Operation::Post(entry, index, address, length, flags) => {
                    setup.peer.post_raw(entry, Some((index % 64, address, length, flags)));
                }
                _ => {
                    setup.engine.poll(now());
                }
            }
            prop_assert!(setup.accesses.get() <= access_bound(layout) * 2);
            prop_assert!(setup.engine.transmit_in_flight() <= layout.queue_length());
        }
    }
}
