//! The frame-channel API, configuration checks, event-index suppression and
//! the smoltcp token contract, against a scripted peer.

mod common;

use std::sync::atomic::Ordering;

use common::{HostEngine, MAC_B};
use netdev::{
    Config, ConfigError, Engine, LayoutError, PeerImplementation, ReceiveError, SendError,
    SharedMemoryMut, State, locally_administered_mac,
};
use netdev_host::host::HostLink;
use netdev_host::now;
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};
use smoltcp::phy::{Device, TxToken};
use smoltcp::time::Instant;

fn linked(section_size: usize, style: PeerStyle) -> (HostLink, ScriptedPeer, HostEngine) {
    let link = HostLink::new(section_size);
    let mut peer = ScriptedPeer::new(&link, 0, style).unwrap();
    let (sections, notifier) = link.endpoint(1).unwrap();
    let mut engine = Engine::new(Config::new(1, 2, MAC_B), sections, notifier).unwrap();
    peer.handshake(|| {
        engine.poll(now());
    });
    assert!(engine.link_up());
    (link, peer, engine)
}

#[test]
fn the_default_mtu_is_linuxs_for_the_section() {
    // min(16384, data area / 16), never below 68 (docs/ivshmem-net.md §4);
    // `mtu: Some(_)` overrides it.
    for (section_size, expected) in [
        (0x7F000, 16384), // the Jailhouse NET macro: data 0x71F80
        (0x10000, 3672),  // data 0xE580
        (0x4000, 912),    // data 0x3900
        (0x900, 68),      // data 0x200: Linux would take 32
    ] {
        let link = HostLink::new(section_size);
        let (sections, notifier) = link.endpoint(0).unwrap();
        let engine = Engine::new(Config::new(0, 2, MAC_B), sections, notifier).unwrap();
        assert_eq!(engine.mtu(), expected, "{section_size:#x}");
        assert_eq!(engine.config().mtu, None);
        assert_eq!(engine.mtu_frame_length(), expected + 14);
        assert_eq!(
            engine.max_frame_length(),
            engine.layout().max_mtu() + 18,
            "frames up to the section's largest are accepted whatever the MTU"
        );
    }
    let link = HostLink::new(0x7F000);
    let (sections, notifier) = link.endpoint(1).unwrap();
    let mut config = Config::new(1, 2, MAC_B);
    config.mtu = Some(1500);
    let engine = Engine::new(config, sections, notifier).unwrap();
    assert_eq!((engine.mtu(), engine.mtu_frame_length()), (1500, 1514));
}

#[test]
fn configuration_is_validated() {
    let link = HostLink::new(0x4000);
    let build = |config: Config| {
        let (sections, notifier) = link.endpoint(config.own_id.min(1)).unwrap();
        Engine::new(config, sections, notifier).map(drop)
    };
    assert_eq!(
        build(Config::new(2, 2, MAC_B)),
        Err(ConfigError::InvalidPeerId { id: 2 })
    );
    assert_eq!(build(Config::new(0, 0, MAC_B)), Err(ConfigError::NoVectors));
    assert_eq!(
        build(Config::new(0, 2, [1, 0, 0, 0, 0, 0])),
        Err(ConfigError::MulticastMac)
    );
    let mut config = Config::new(0, 2, MAC_B);
    config.mtu = Some(67);
    assert!(matches!(
        build(config),
        Err(ConfigError::MtuOutOfRange { .. })
    ));
    // Linux's largest MTU for the section: a quarter of the data area (§4).
    config.mtu = Some(0x3900 / 4);
    assert!(build(config).is_ok());
    config.mtu = Some(0x3900 / 4 + 1);
    assert!(matches!(
        build(config),
        Err(ConfigError::MtuOutOfRange { .. })
    ));
    assert!(build(Config::new(0, 1, MAC_B)).is_ok());

    let small = HostLink::new(0x800);
    let (sections, notifier) = small.endpoint(0).unwrap();
    let error = Engine::new(Config::new(0, 2, MAC_B), sections, notifier).unwrap_err();
    assert_eq!(
        error,
        ConfigError::Layout(LayoutError::DataAreaTooSmall { data_size: 0x100 })
    );
    assert_eq!(
        error.to_string(),
        "data area of 256 bytes is below the minimum of 272"
    );
    assert_eq!(Config::new(0, 1, MAC_B).data_vector(), 0);
    assert_eq!(Config::new(0, 2, MAC_B).data_vector(), 1);
    let mac = locally_administered_mac([0xFF; 6]);
    assert_eq!(mac[0], 0xFE);
    assert_eq!(locally_administered_mac([0; 6])[0], 0x02);
}

#[test]
fn zero_copy_send_and_receive() {
    let (_link, mut peer, mut engine) = linked(0x4000, PeerStyle::Linux);
    let buffer = engine.send_buffer(100).unwrap();
    assert_eq!(buffer.len(), 100);
    buffer.fill(0x42);
    engine.send_advance(60).unwrap();
    assert_eq!(peer.take_transmitted(), vec![vec![0x42; 60]]);
    engine.send_buffer(100).unwrap();
    assert_eq!(
        engine.send_advance(101),
        Err(SendError::InvalidLength {
            length: 101,
            maximum: 100
        })
    );
    // A reservation that is not advanced publishes nothing.
    engine.send_buffer(100).unwrap().fill(1);
    engine.poll(now());
    assert_eq!(engine.send_advance(10), Err(SendError::NoReservation));
    assert!(peer.take_transmitted().is_empty());
    assert_eq!(
        engine.send(&[]),
        Err(SendError::InvalidLength {
            length: 0,
            maximum: 0x3900 / 4 + 18
        })
    );

    peer.post(&[7; 300]);
    assert!(engine.can_receive());
    assert_eq!(engine.receive_frame().unwrap(), [7; 300].as_slice());
    // Not advanced: the same frame again.
    assert_eq!(engine.receive_frame().unwrap().len(), 300);
    engine.receive_advance();
    assert!(!engine.can_receive());
    peer.post(&[8; 300]);
    let mut small = [0u8; 100];
    assert_eq!(
        engine.receive(&mut small),
        Err(ReceiveError::BufferTooSmall { length: 300 })
    );
    let mut large = [0u8; 400];
    assert_eq!(engine.receive(&mut large), Ok(Some(300)));
    assert_eq!(engine.receive(&mut large), Ok(None));
    assert_eq!(peer.reclaim(), 2);
}

/// We honour the peer's avail_event: no kick until our avail index passes
/// it; and we keep our own avail_event at the next index we will read.
#[test]
fn event_index_suppression() {
    let (link, mut peer, mut engine) = linked(0x10000, PeerStyle::Linux);
    let layout = engine.layout();
    peer.section()
        .store_u16(layout.avail_event(), 10, Ordering::Relaxed);
    let kicks = |link: &HostLink| link.doorbell(0).count(1);
    for sent in 1..=10u16 {
        engine.send(&[0; 64]).unwrap();
        assert_eq!(
            kicks(&link),
            0,
            "no kick before passing avail_event (sent {sent})"
        );
    }
    engine.send(&[0; 64]).unwrap(); // index 10 → 11 passes 10
    assert_eq!(kicks(&link), 1);
    engine.send(&[0; 64]).unwrap();
    assert_eq!(kicks(&link), 1);
    assert_eq!(peer.take_transmitted().len(), 12);
    // Linux-style peer now wrote avail_event = 12: the next send kicks.
    engine.send(&[0; 64]).unwrap();
    assert_eq!(kicks(&link), 2);
    assert_eq!(engine.statistics().kicks_sent, 2);

    // Receive: our avail_event follows what we consumed.
    for _ in 0..5 {
        peer.post(&[1; 20]);
    }
    for _ in 0..5 {
        engine.receive_frame().unwrap();
        engine.receive_advance();
    }
    let own = link.section(1);
    use netdev::SharedMemory;
    assert_eq!(own.load_u16(layout.avail_event(), Ordering::Relaxed), 5);
    // The peer's used_event asks for a kick at completion 7.
    peer.section()
        .store_u16(layout.used_event(), 7, Ordering::Relaxed);
    let before = kicks(&link);
    for expected in [0, 0, 1] {
        peer.post(&[1; 20]);
        engine.receive_frame().unwrap();
        engine.receive_advance();
        assert_eq!(kicks(&link) - before, expected);
    }
}

/// A Zephyr peer kicks on every frame and completion; spurious polls are
/// harmless.
#[test]
fn zephyr_peer_kicks_every_frame() {
    let (link, mut peer, mut engine) = linked(0x4000, PeerStyle::Zephyr);
    for round in 0..500u32 {
        let frame = round.to_le_bytes();
        peer.post(&frame);
        for _ in 0..3 {
            engine.poll(now());
        }
        assert_eq!(engine.receive_frame(), Some(frame.as_slice()));
        engine.receive_advance();
        engine.send(&frame).unwrap();
        assert_eq!(peer.take_transmitted(), vec![frame.to_vec()]);
        assert_eq!(peer.reclaim(), 1);
    }
    assert!(link.doorbell(1).count(1) >= 1000);
    assert!(engine.transmit_empty());
    assert_eq!(engine.statistics().protocol_errors.total(), 0);
}

#[test]
fn smoltcp_tokens_do_not_leak() {
    let (_link, mut peer, mut engine) = linked(0x4000, PeerStyle::Linux);
    // Dropped tokens, many more than the 64 descriptors.
    for _ in 0..1000 {
        assert!(engine.transmit(Instant::ZERO).is_some());
    }
    assert_eq!(engine.transmit_in_flight(), 0);
    // Fill the ring through tokens; transmit() then says None.
    let mut sent = 0;
    while let Some(token) = engine.transmit(Instant::ZERO) {
        token.consume(1514, |buffer| buffer.fill(3));
        sent += 1;
    }
    assert!(sent > 0);
    assert!(!engine.can_send(1514));
    assert_eq!(peer.take_transmitted().len(), sent);
    engine.poll(now());
    assert!(engine.transmit(Instant::ZERO).is_some());
    // A receive()'s transmit token with no room drops and counts.
    while engine.send(&[0; 1514]).is_ok() {}
    peer.post(&[5; 64]);
    let (rx, tx) = Device::receive(&mut engine, Instant::ZERO).unwrap();
    smoltcp::phy::RxToken::consume(rx, |frame| assert_eq!(frame, [5; 64].as_slice()));
    tx.consume(1514, |buffer| buffer.fill(0));
    assert_eq!(engine.statistics().drops.ring_full, 1);
    // Link down: transmit() refuses.
    peer.set_state(State::Reset);
    engine.poll(now());
    assert!(engine.transmit(Instant::ZERO).is_none());
}

#[test]
fn a_peer_refilling_its_ring_cannot_hold_smoltcp_receive() {
    let (_link, mut peer, mut engine) = linked(0x4000, PeerStyle::Linux);
    let queue_length = usize::from(engine.layout().queue_length());
    engine.poll(now());
    peer.post(&[7; 60]);
    let mut taken = 0;
    // The peer completes and re-posts after every frame we take, so the
    // ring is never empty; smoltcp's loop must still end within one ring.
    while let Some((rx, _tx)) = Device::receive(&mut engine, Instant::ZERO) {
        smoltcp::phy::RxToken::consume(rx, |frame| assert_eq!(frame, [7; 60].as_slice()));
        taken += 1;
        assert!(
            taken <= queue_length,
            "receive() did not stop after one ring"
        );
        peer.reclaim();
        peer.post(&[7; 60]);
    }
    assert_eq!(taken, queue_length);
    assert!(
        engine.can_receive(),
        "the frame left over waits for the next poll"
    );
    engine.poll(now());
    assert!(Device::receive(&mut engine, Instant::ZERO).is_some());
}

#[test]
fn the_peer_implementation_is_guessed_from_how_it_picks_descriptors() {
    // docs/ivshmem-net.md §12: Linux reuses descriptors from a free list,
    // Zephyr uses them in ring order chained through `next`, our engine in
    // ring order with `next` 0.
    for (style, expected) in [
        (PeerStyle::Linux, PeerImplementation::Linux),
        (PeerStyle::Zephyr, PeerImplementation::Zephyr),
    ] {
        let (_link, mut peer, mut engine) = linked(0x10000, style);
        let mut buffer = [0u8; 2048];
        for frame in 0..20u8 {
            if frame == 1 {
                assert_eq!(engine.statistics().peer.guess(), None, "{style:?}");
            }
            peer.post(&[frame; 60]);
            engine.poll(now());
            assert_eq!(engine.receive(&mut buffer), Ok(Some(60)));
            engine.flush();
            assert_eq!(peer.reclaim(), 1);
        }
        let evidence = engine.statistics().peer;
        assert_eq!(evidence.guess(), Some(expected), "{style:?}: {evidence:?}");
        assert_eq!(evidence.since(&evidence).guess(), None);
    }

    let link = HostLink::new(0x10000);
    let mut a = common::engine(&link, 0, 1500);
    let mut b = common::engine(&link, 1, 1500);
    for _ in 0..10 {
        a.poll(now());
        b.poll(now());
    }
    assert!(a.link_up() && b.link_up());
    let mut buffer = [0u8; 2048];
    for frame in 0..3u8 {
        a.send(&[frame; 60]).unwrap();
        b.poll(now());
        assert_eq!(b.receive(&mut buffer), Ok(Some(60)));
        a.poll(now());
    }
    assert_eq!(
        b.statistics().peer.guess(),
        Some(PeerImplementation::EthIvshmem)
    );
}
