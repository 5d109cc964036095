//! Two engines on two threads over one shared buffer.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use common::{HostEngine, check_stream_frame, engine, stream_frame, wait_for_link};
use netdev::{SendError, State};
use netdev_host::host::HostLink;
use netdev_host::now;

const TIMEOUT: Duration = Duration::from_secs(20);

/// Sends `count` stream frames and receives `count` from the other side,
/// verifying content and order; both directions at once.
fn exchange(engine: &mut HostEngine, link: &HostLink, seed: u64, count: u64, maximum: usize) {
    let id = engine.config().own_id;
    let mut sent = 0;
    let mut received = 0;
    let mut frame = Vec::new();
    let mut scratch = Vec::new();
    // A stall is TIMEOUT without progress (not a limit on the whole run).
    let mut last_progress = Instant::now();
    stream_frame(seed + u64::from(id), sent, maximum, &mut frame);
    while sent < count || received < count || !engine.transmit_empty() {
        let mut progress = false;
        while sent < count {
            match engine.send(&frame) {
                Ok(()) => {
                    sent += 1;
                    stream_frame(seed + u64::from(id), sent, maximum, &mut frame);
                    progress = true;
                }
                Err(SendError::RingFull) => break,
                Err(error) => panic!("send: {error}"),
            }
        }
        while let Some(received_frame) = engine.receive_frame() {
            let sequence = check_stream_frame(
                seed + u64::from(1 - id),
                received_frame,
                maximum,
                &mut scratch,
            );
            assert_eq!(sequence, received, "frames arrive in order, none lost");
            received += 1;
            engine.receive_advance();
            progress = true;
        }
        if progress {
            last_progress = Instant::now();
        } else {
            assert!(
                last_progress.elapsed() < TIMEOUT,
                "peer {id} stalled at {sent}/{received}"
            );
            engine.poll(now());
            link.doorbell(id).wait(Duration::from_millis(1));
        }
    }
    assert!(engine.link_up());
}

fn run_pair(
    section_size: usize,
    mtu: usize,
    count: u64,
    maximum: usize,
    delay_second: Option<u16>,
) {
    let link = HostLink::new(section_size);
    let handles: Vec<_> = [0u16, 1]
        .into_iter()
        .map(|id| {
            let link = link.clone();
            thread::spawn(move || {
                if delay_second == Some(id) {
                    thread::sleep(Duration::from_millis(30));
                }
                let mut engine = engine(&link, id, mtu);
                wait_for_link(&mut engine, &link, TIMEOUT);
                exchange(&mut engine, &link, 7, count, maximum);
                engine.statistics()
            })
        })
        .collect();
    for handle in handles {
        let statistics = handle.join().unwrap();
        assert_eq!(statistics.protocol_errors.total(), 0);
        assert_eq!(statistics.transmitted_frames, count);
        assert_eq!(statistics.received_frames, count);
        assert_eq!(statistics.resets, 0);
    }
}

#[test]
fn handshake_peer_0_first() {
    run_pair(0x10000, 1500, 100, 1514, Some(1));
}

#[test]
fn handshake_peer_1_first() {
    run_pair(0x10000, 1500, 100, 1514, Some(0));
}

#[test]
fn handshake_simultaneous() {
    for _ in 0..20 {
        run_pair(0x4000, 1500, 10, 1514, None);
    }
}

/// Two million frames (a million each way, at the same time) of random
/// sizes up to the MTU frame, verified byte for byte and in order.
#[test]
fn two_million_frames_random_sizes() {
    run_pair(0x7F000, 1500, 1_000_000, 1514, None);
}

/// Large frames (up to 16 KiB, as a Linux peer at its default MTU sends)
/// on a 128 KiB section (num 512): the smallest section size whose
/// largest frame (a quarter of the data area, docs/ivshmem-net.md §4)
/// is at least 16 KiB is a bit above 64 KiB.
#[test]
fn large_frames() {
    run_pair(0x20000, 9000, 20_000, 16 * 1024, None);
}

/// Twenty million frames (run with `--ignored`; about 30 s in debug).
#[test]
#[ignore]
fn twenty_million_frames() {
    run_pair(0x7F000, 1500, 10_000_000, 1514, None);
}

/// The receiver stalls; the sender sees RingFull with every descriptor or
/// the data area in use, asks for a completion kick, and resumes in order
/// once the receiver drains.
#[test]
fn ring_full_backpressure() {
    let link = HostLink::new(0x4000); // num 64, data 0x3900
    let barrier = Arc::new(Barrier::new(2));
    let receiver = {
        let link = link.clone();
        let barrier = Arc::clone(&barrier);
        thread::spawn(move || {
            let mut engine = engine(&link, 1, 1500);
            wait_for_link(&mut engine, &link, TIMEOUT);
            barrier.wait(); // the sender fills the ring
            barrier.wait();
            let mut scratch = Vec::new();
            let mut next = 0;
            let deadline = Instant::now() + TIMEOUT;
            while next < 1000 {
                if let Some(frame) = engine.receive_frame() {
                    assert_eq!(check_stream_frame(9, frame, 200, &mut scratch), next);
                    next += 1;
                    engine.receive_advance();
                } else {
                    assert!(Instant::now() < deadline);
                    engine.poll(now());
                    link.doorbell(1).wait(Duration::from_millis(1));
                }
            }
        })
    };
    let mut engine = engine(&link, 0, 1500);
    wait_for_link(&mut engine, &link, TIMEOUT);
    barrier.wait();
    let mut frame = Vec::new();
    let mut sequence = 0;
    stream_frame(9, sequence, 200, &mut frame);
    while engine.send(&frame).is_ok() {
        sequence += 1;
        stream_frame(9, sequence, 200, &mut frame);
    }
    assert_eq!(engine.send(&frame), Err(SendError::RingFull));
    assert!(engine.transmit_in_flight() <= 64);
    assert!(!engine.can_send(frame.len()));
    let completions_before = link.doorbell(0).count(1);
    barrier.wait();
    let deadline = Instant::now() + TIMEOUT;
    while sequence < 1000 {
        match engine.send(&frame) {
            Ok(()) => {
                sequence += 1;
                stream_frame(9, sequence, 200, &mut frame);
            }
            Err(SendError::RingFull) => {
                assert!(Instant::now() < deadline);
                link.doorbell(0).wait(Duration::from_millis(1));
            }
            Err(error) => panic!("{error}"),
        }
    }
    receiver.join().unwrap();
    // We asked for a completion kick (used_event) while full; the engine
    // peer honours it.
    assert!(link.doorbell(0).count(1) > completions_before);
    assert_eq!(engine.statistics().protocol_errors.total(), 0);
}

/// Peer 1 is reset by the "hypervisor" in the middle of a stream and its
/// driver starts again; peer 0 drops the link, runs the handshake again
/// and the stream continues with verified content.
#[test]
fn peer_reset_mid_stream_and_recovery() {
    let link = HostLink::new(0x10000);
    let done = Arc::new(AtomicBool::new(false));
    let sender = {
        let link = link.clone();
        let done = Arc::clone(&done);
        thread::spawn(move || {
            let mut engine = engine(&link, 0, 1500);
            wait_for_link(&mut engine, &link, TIMEOUT);
            let mut frame = Vec::new();
            let mut sequence = 0u64;
            let deadline = Instant::now() + TIMEOUT;
            // Stream until the receiver has verified enough frames after
            // the reset.
            while !done.load(Ordering::Relaxed) {
                assert!(Instant::now() < deadline, "stalled");
                engine.poll(now());
                stream_frame(5, sequence, 1514, &mut frame);
                match engine.send(&frame) {
                    Ok(()) => sequence += 1,
                    Err(_) => {
                        link.doorbell(0).wait(Duration::from_millis(1));
                    }
                }
            }
            while !engine.transmit_empty() {
                assert!(Instant::now() < deadline, "final drain");
                link.doorbell(0).wait(Duration::from_millis(1));
            }
            engine.statistics()
        })
    };
    // The first incarnation of peer 1 receives some frames, then vanishes.
    let mut scratch = Vec::new();
    let first_last = {
        let mut engine = engine(&link, 1, 1500);
        wait_for_link(&mut engine, &link, TIMEOUT);
        let mut last = None;
        let mut count = 0;
        while count < 5_000 {
            if let Some(frame) = engine.receive_frame() {
                let sequence = check_stream_frame(5, frame, 1514, &mut scratch);
                assert!(last.is_none_or(|last| sequence == last + 1));
                last = Some(sequence);
                count += 1;
                engine.receive_advance();
            } else {
                engine.poll(now());
                link.doorbell(1).wait(Duration::from_millis(1));
            }
        }
        last.unwrap()
    };
    link.reset_peer(1);
    // The driver comes back (its section is released by the drop).
    let mut engine = engine(&link, 1, 1500);
    assert_eq!(engine.state(), State::Reset);
    wait_for_link(&mut engine, &link, TIMEOUT);
    let mut last: Option<u64> = None;
    let mut count = 0;
    let deadline = Instant::now() + TIMEOUT;
    while count < 20_000 {
        assert!(Instant::now() < deadline, "receiver stalled after {count}");
        if let Some(frame) = engine.receive_frame() {
            let sequence = check_stream_frame(5, frame, 1514, &mut scratch);
            assert!(
                sequence > first_last,
                "no stale frame from before the reset"
            );
            assert!(
                last.is_none_or(|last| sequence == last + 1),
                "in order after recovery"
            );
            last = Some(sequence);
            count += 1;
            engine.receive_advance();
        } else {
            engine.poll(now());
            link.doorbell(1).wait(Duration::from_millis(1));
        }
    }
    done.store(true, Ordering::Relaxed);
    // Keep polling so the sender can drain.
    while !sender.is_finished() {
        while engine.receive_frame().is_some() {
            engine.receive_advance();
        }
        engine.poll(now());
        link.doorbell(1).wait(Duration::from_millis(1));
    }
    let statistics = sender.join().unwrap();
    assert_eq!(statistics.resets, 1);
    assert_eq!(statistics.link_ups, 2);
    assert_eq!(statistics.protocol_errors.total(), 0);
}
