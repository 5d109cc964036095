//! Golden-memory tests: hand-built images of a Linux / Zephyr peer's
//! section with literal offsets from docs/ivshmem-net.md §3.3, and byte-exact
//! checks of what the engine writes into its own section.

use std::sync::atomic::Ordering;

use netdev::{Config, Engine, SharedMemory, SharedMemoryMut, State};
use netdev_host::host::{HostLink, HostNotifier, HostRegion, HostRegionMut};
use netdev_host::now;
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};

type HostEngine = Engine<HostRegion, HostRegionMut, HostNotifier>;

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

fn engine(link: &HostLink, id: u16) -> HostEngine {
    let (sections, notifier) = link.endpoint(id).unwrap();
    Engine::new(Config::new(id, 2, MAC), sections, notifier).unwrap()
}

fn put16(image: &mut [u8], offset: usize, value: u16) {
    image[offset..offset + 2].copy_from_slice(&value.to_le_bytes());
}

fn put32(image: &mut [u8], offset: usize, value: u32) {
    image[offset..offset + 4].copy_from_slice(&value.to_le_bytes());
}

fn put64(image: &mut [u8], offset: usize, value: u64) {
    image[offset..offset + 8].copy_from_slice(&value.to_le_bytes());
}

fn pattern(length: usize, seed: u8) -> Vec<u8> {
    (0..length)
        .map(|index| (index as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

fn section_bytes(region: &HostRegion) -> Vec<u8> {
    let mut bytes = vec![0; region.len()];
    region.read(0, &mut bytes);
    bytes
}

/// Linux (ID 0) in RUN with three frames posted, 0x4000-byte sections
/// (num 64, H 0x700): avail at 0x400, used_event 0x484, U 0x4C0,
/// avail_event 0x6C4.
#[test]
fn linux_peer_mid_conversation() {
    let link = HostLink::new(0x4000);
    let mut peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).unwrap();
    let mut engine = engine(&link, 1);
    peer.handshake(|| {
        engine.poll(now());
    });
    assert!(engine.link_up());
    assert_eq!(link.state(1), 3);

    // Linux TX: buffers at ALIGN(18 + len, 64) steps from H; descriptors
    // from the free list 0, 1, 2 with next = i + 1.
    let frames = [pattern(60, 1), pattern(1514, 2), pattern(98, 3)];
    let addresses = [0x700u64, 0x780, 0xD80];
    let mut image = vec![0u8; 0x4000];
    for (index, (frame, &address)) in frames.iter().zip(&addresses).enumerate() {
        let descriptor = 16 * index;
        put64(&mut image, descriptor, address);
        put32(&mut image, descriptor + 8, frame.len() as u32);
        put16(&mut image, descriptor + 12, 0);
        put16(&mut image, descriptor + 14, index as u16 + 1);
        image[address as usize..address as usize + frame.len()].copy_from_slice(frame);
        put16(&mut image, 0x404 + 2 * index, index as u16);
    }
    put16(&mut image, 0x402, 3); // avail.idx
    peer.section().write(0, &image);

    assert!(engine.can_receive());
    for frame in &frames {
        assert_eq!(engine.receive_frame(), Some(frame.as_slice()));
        engine.receive_advance();
    }
    assert!(!engine.can_receive());
    // Linux's used_event is 0: only the first completion passes it.
    assert_eq!(link.doorbell(0).count(1), 1);

    engine.send(&pattern(100, 4)).unwrap();
    // Linux's avail_event is 0: publishing index 0 → 1 passes it.
    assert_eq!(link.doorbell(0).count(1), 2);

    let mut expected = vec![0u8; 0x4000];
    // Our TX: descriptor 0 = {addr 0x700, len 100, flags 0, next 0}.
    put64(&mut expected, 0x0, 0x700);
    put32(&mut expected, 0x8, 100);
    put16(&mut expected, 0x404, 0); // avail.ring[0]
    put16(&mut expected, 0x402, 1); // avail.idx
    expected[0x700..0x700 + 100].copy_from_slice(&pattern(100, 4));
    // Completions of Linux's frames: used.idx 3, {id, 1} in order.
    put16(&mut expected, 0x4C2, 3);
    for index in 0..3 {
        put32(&mut expected, 0x4C4 + 8 * index, index as u32);
        put32(&mut expected, 0x4C8 + 8 * index, 1);
    }
    put16(&mut expected, 0x6C4, 3); // avail_event
    assert_eq!(section_bytes(&link.section(1)), expected);

    // Linux completes our frame in its used ring at 0x4C0.
    peer.section().store_u32(0x4C4, 0, Ordering::Relaxed);
    peer.section().store_u32(0x4C8, 1, Ordering::Relaxed);
    peer.section().store_u16(0x4C2, 1, Ordering::Release);
    assert!(engine.transmit_empty());
    let statistics = engine.statistics();
    assert_eq!(statistics.protocol_errors.total(), 0);
    assert_eq!(statistics.received_frames, 3);
    assert_eq!(statistics.received_bytes, 60 + 1514 + 98);
    assert_eq!(statistics.transmitted_frames, 1);
    assert_eq!(statistics.kicks_sent, 2);
}

/// Zephyr (ID 1) with 0x2000-byte sections: the num = 32 / H = 0x700
/// quirk. avail 0x200, used_event 0x244, U 0x280, avail_event 0x384. The
/// indices are driven to 0xFFFE first, so the hand-written frames cross the
/// u16 wrap.
#[test]
fn zephyr_peer_across_index_wrap() {
    let link = HostLink::new(0x2000);
    let mut peer = ScriptedPeer::new(&link, 1, PeerStyle::Zephyr).unwrap();
    let mut engine = engine(&link, 0);
    peer.handshake(|| {
        engine.poll(now());
    });
    assert!(engine.link_up());
    assert_eq!(engine.layout().queue_length(), 32);

    let filler = [0x55u8; 14];
    for _ in 0..0xFFFE_u32 {
        peer.post(&filler);
        // The receive budget is renewed by each poll.
        engine.poll(now());
        assert_eq!(engine.receive_frame(), Some(filler.as_slice()));
        engine.receive_advance();
        assert_eq!(peer.reclaim(), 1);
        engine.send(&filler).unwrap();
        assert_eq!(peer.take_transmitted().len(), 1);
        assert!(engine.transmit_empty());
    }
    // Our avail.idx / used.idx are now 0xFFFE.
    let own = link.section(0);
    assert_eq!(own.load_u16(0x202, Ordering::Relaxed), 0xFFFE);
    assert_eq!(own.load_u16(0x282, Ordering::Relaxed), 0xFFFE);

    // Zephyr posts two frames with descriptors 30 and 31 (its sequential
    // choice: desc = idx mod num) at addresses H + head.
    let zephyr = peer.section();
    let frames = [pattern(1514, 7), pattern(42, 8)];
    for (step, frame) in frames.iter().enumerate() {
        let descriptor_index = 30 + step;
        let address = 0x700 + 0x640 * step;
        zephyr.write(address, frame);
        zephyr.store_u32(16 * descriptor_index, address as u32, Ordering::Relaxed);
        zephyr.store_u32(16 * descriptor_index + 4, 0, Ordering::Relaxed);
        zephyr.store_u32(
            16 * descriptor_index + 8,
            frame.len() as u32,
            Ordering::Relaxed,
        );
        zephyr.store_u16(16 * descriptor_index + 12, 0, Ordering::Relaxed);
        zephyr.store_u16(
            0x204 + 2 * descriptor_index,
            descriptor_index as u16,
            Ordering::Relaxed,
        );
    }
    zephyr.store_u16(0x202, 0x0000, Ordering::Release); // 0xFFFE + 2 wraps to 0
    peer.kick();
    engine.poll(now());
    for frame in &frames {
        let mut buffer = vec![0; 2000];
        let length = engine.receive(&mut buffer).unwrap().unwrap();
        assert_eq!(&buffer[..length], frame.as_slice());
    }
    // Our used ring: slots 30 and 31 at 0x284 + 8·slot, used.idx wrapped to
    // 0, avail_event 0.
    assert_eq!(own.load_u32(0x284 + 8 * 30, Ordering::Relaxed), 30);
    assert_eq!(own.load_u32(0x288 + 8 * 30, Ordering::Relaxed), 1);
    assert_eq!(own.load_u32(0x284 + 8 * 31, Ordering::Relaxed), 31);
    assert_eq!(own.load_u32(0x288 + 8 * 31, Ordering::Relaxed), 1);
    assert_eq!(own.load_u16(0x282, Ordering::Relaxed), 0);
    assert_eq!(own.load_u16(0x384, Ordering::Relaxed), 0);

    // We send two frames across the wrap: avail.ring[30], [31], idx 0.
    engine.send(&pattern(300, 9)).unwrap();
    engine.send(&pattern(301, 10)).unwrap();
    assert_eq!(own.load_u16(0x204 + 2 * 30, Ordering::Relaxed), 30);
    assert_eq!(own.load_u16(0x204 + 2 * 31, Ordering::Relaxed), 31);
    assert_eq!(own.load_u16(0x202, Ordering::Relaxed), 0);
    for (descriptor_index, length) in [(30usize, 300u32), (31, 301)] {
        let address = own.load_u32(16 * descriptor_index, Ordering::Relaxed);
        assert!(address >= 0x700 && address.is_multiple_of(64));
        assert_eq!(
            own.load_u32(16 * descriptor_index + 4, Ordering::Relaxed),
            0
        );
        assert_eq!(
            own.load_u32(16 * descriptor_index + 8, Ordering::Relaxed),
            length
        );
        assert_eq!(
            own.load_u16(16 * descriptor_index + 12, Ordering::Relaxed),
            0
        );
    }
    assert_eq!(
        peer.take_transmitted(),
        vec![pattern(300, 9), pattern(301, 10)]
    );
    assert!(engine.transmit_empty());
    assert_eq!(engine.statistics().protocol_errors.total(), 0);
}

/// The engine starts first (RESET, waits), then a peer that starts with a
/// stale RUN in the table must first drop to RESET (§2.5).
#[test]
fn handshake_guards() {
    let link = HostLink::new(0x4000);
    let peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).unwrap();
    peer.set_state(State::Run);
    let mut engine = engine(&link, 1);
    assert_eq!(link.state(1), 0);
    for _ in 0..3 {
        assert!(!engine.poll(now()));
        assert_eq!(
            engine.state(),
            State::Reset,
            "never INIT while the peer is RUN"
        );
    }
    peer.set_state(State::Ready);
    engine.poll(now());
    assert_eq!(engine.state(), State::Reset);
    peer.set_state(State::Reset);
    engine.poll(now());
    assert_eq!(
        engine.state(),
        State::Init,
        "INIT→READY waits for peer > RESET"
    );
    peer.set_state(State::Init);
    engine.poll(now());
    assert_eq!(engine.state(), State::Ready);
    peer.set_state(State::Ready);
    engine.poll(now());
    assert_eq!(engine.state(), State::Run);
    assert!(!engine.link_up(), "carrier waits for the peer's RUN");
    peer.set_state(State::Run);
    assert!(engine.poll(now()));
    // The peer resets: we drop to RESET at once and start again.
    peer.set_state(State::Reset);
    assert!(!engine.poll(now()));
    assert_eq!(engine.state(), State::Init);
    assert_eq!(engine.statistics().resets, 1);
}
