//! Attacks from another thread: a hostile peer rewrites its section and its
//! state while the engine runs on this thread, as a peer partition or VM
//! can. A watchdog aborts the process if any engine call does not return;
//! every call is timed; frames handed up must stay within bounds; once the
//! peer behaves again the link must come back and carry intact frames; and
//! a counting allocator shows the engine allocates nothing per frame.
//!
//! `cargo test -p netdev --test concurrent` runs a few seconds of it;
//! `-- --ignored` runs a minute of repeated attacks.

mod common;

use std::alloc::{GlobalAlloc, Layout as AllocationLayout, System};
use std::cell::Cell;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use common::{MAC_B, Random};
use netdev::{Config, Engine, Layout, SharedMemoryMut, State};
use netdev_host::host::HostLink;
use netdev_host::now;
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};

// ---- a per-thread counting allocator ---------------------------------------

/// Counts the allocations of each thread.
struct Counting;

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Allocations made by the calling thread so far.
fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

fn count_one() {
    // `try_with`: the thread-local may be gone while a thread exits.
    let _ = ALLOCATIONS.try_with(|count| count.set(count.get() + 1));
}

// SAFETY: every method forwards to `System` with the caller's arguments
// unchanged, so `System`'s guarantees hold; counting touches only a
// const-initialised thread-local `Cell`, which neither allocates nor
// unwinds.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: AllocationLayout) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::alloc`'s contract.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: AllocationLayout) -> *mut u8 {
        count_one();
        // SAFETY: as for `alloc`.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, pointer: *mut u8, layout: AllocationLayout, size: usize) -> *mut u8 {
        count_one();
        // SAFETY: the caller upholds `GlobalAlloc::realloc`'s contract.
        unsafe { System.realloc(pointer, layout, size) }
    }

    unsafe fn dealloc(&self, pointer: *mut u8, layout: AllocationLayout) {
        // SAFETY: the caller upholds `GlobalAlloc::dealloc`'s contract.
        unsafe { System.dealloc(pointer, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

// ---- frames both sides can check ---------------------------------------------

const PEER_MAGIC: u64 = 0x5045_4552_4652_4d21; // "PEERFRM!"
const ENGINE_MAGIC: u64 = 0x454e_4749_4e45_2121; // "ENGINE!!"

/// Writes frame `sequence` (length from the sequence) into `buffer`.
fn make_frame(magic: u64, sequence: u64, buffer: &mut [u8; 1514]) -> usize {
    let length = 60 + (sequence as usize * 37) % (1514 - 60);
    buffer[..8].copy_from_slice(&magic.to_le_bytes());
    buffer[8..16].copy_from_slice(&sequence.to_le_bytes());
    for (index, byte) in buffer[16..length].iter_mut().enumerate() {
        *byte = (sequence as usize).wrapping_add(index) as u8;
    }
    length
}

/// The sequence number of an intact frame with `magic`, if it is one.
fn check_frame(magic: u64, frame: &[u8]) -> Option<u64> {
    if frame.len() < 16 || frame[..8] != magic.to_le_bytes() {
        return None;
    }
    let sequence = u64::from_le_bytes(frame[8..16].try_into().ok()?);
    let mut expected = [0u8; 1514];
    let length = make_frame(magic, sequence, &mut expected);
    assert!(
        frame == &expected[..length],
        "frame {sequence} with magic {magic:#x} is corrupted"
    );
    Some(sequence)
}

// ---- the watchdog --------------------------------------------------------------

/// Aborts the process if an engine call runs longer than `limit`: a hang
/// must fail the test, not stall it.
struct Watchdog {
    started: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    epoch: Instant,
    longest: Duration,
    thread: Option<thread::JoinHandle<()>>,
}

impl Watchdog {
    fn new(limit: Duration) -> Self {
        let started = Arc::new(AtomicU64::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let epoch = Instant::now();
        let thread = {
            let (started, stop) = (Arc::clone(&started), Arc::clone(&stop));
            thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let at = started.load(Ordering::Relaxed);
                    let micros = epoch.elapsed().as_micros() as u64;
                    if at != 0 && micros.saturating_sub(at) > limit.as_micros() as u64 {
                        eprintln!("watchdog: an engine call has run for more than {limit:?}");
                        std::process::abort();
                    }
                    thread::sleep(Duration::from_millis(20));
                }
            })
        };
        Self {
            started,
            stop,
            epoch,
            longest: Duration::ZERO,
            thread: Some(thread),
        }
    }

    /// Runs one engine call under watch and records its duration.
    fn call<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let begin = Instant::now();
        let micros = (begin - self.epoch).as_micros() as u64;
        self.started.store(micros.max(1), Ordering::Relaxed);
        let result = f();
        self.started.store(0, Ordering::Relaxed);
        self.longest = self.longest.max(begin.elapsed());
        result
    }
}

impl Drop for Watchdog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

// ---- the attacker ------------------------------------------------------------

/// One hostile write into the peer's own section or state.
fn attack(peer: &mut ScriptedPeer, layout: Layout, random: &mut Random) {
    let num = usize::from(layout.queue_length());
    let size = layout.section_size();
    let section = peer.section();
    let u16_value = |random: &mut Random| match random.below(6) {
        0 => 0,
        1 => 0xFFFF,
        2 => num as u16,
        3 => num as u16 + 1,
        _ => random.next_u64() as u16,
    };
    let u32_value = |random: &mut Random| match random.below(6) {
        0 => 0,
        1 => u32::MAX,
        2 => layout.header_size() as u32,
        3 => layout.data_size() as u32,
        _ => random.next_u64() as u32,
    };
    match random.below(10) {
        0 => section.store_u16(layout.avail_index(), u16_value(random), Ordering::Release),
        1 => section.store_u16(layout.used_index(), u16_value(random), Ordering::Release),
        2 => {
            let offset = if random.below(2) == 0 {
                layout.used_event()
            } else {
                layout.avail_event()
            };
            section.store_u16(offset, u16_value(random), Ordering::Relaxed);
        }
        3 => {
            let slot = random.below(num);
            section.store_u16(
                layout.avail_ring(slot),
                u16_value(random),
                Ordering::Relaxed,
            );
        }
        4 => {
            let descriptor = layout.descriptor(random.below(num));
            section.store_u32(
                descriptor + 4 * random.below(4),
                u32_value(random),
                Ordering::Relaxed,
            );
        }
        5 => {
            let element = layout.used_ring(random.below(num));
            section.store_u32(
                element + 4 * random.below(2),
                u32_value(random),
                Ordering::Relaxed,
            );
        }
        6 => {
            let offset = random.below(size / 4) * 4;
            section.store_u32(offset, random.next_u64() as u32, Ordering::Relaxed);
        }
        7 => {
            let state = match random.below(6) {
                4 => State::Unknown(random.next_u64() as u32),
                value => State::from_raw(value as u32 % 4),
            };
            peer.set_state(state);
        }
        8 => {
            let index = u16_value(random);
            let address = u64::from(u32_value(random)) | (random.below(2) as u64) << 32;
            peer.post_raw(
                index,
                Some((index % (2 * num as u16), address, u32_value(random), 0)),
            );
        }
        _ => peer.kick(),
    }
}

/// What the attacker thread reports.
#[derive(Debug, Default)]
struct PeerReport {
    hostile_writes: u64,
    frames_posted: u64,
    engine_frames_checked: u64,
}

/// Attacks for `attack_time`, then behaves: handshakes, posts `frames` good
/// frames (keeping within the ring) and checks every frame the engine sent.
fn peer_thread(
    mut peer: ScriptedPeer,
    seed: u64,
    attack_time: Duration,
    frames: u64,
    delivered: Arc<AtomicU64>,
) -> PeerReport {
    let layout = peer.layout();
    let mut random = Random::new(seed);
    let mut report = PeerReport::default();
    let deadline = Instant::now() + attack_time;
    while Instant::now() < deadline {
        for _ in 0..64 {
            attack(&mut peer, layout, &mut random);
            report.hostile_writes += 1;
        }
        thread::yield_now();
    }
    // Well-behaved from here on. The engine polls on its own thread; give
    // it time between the handshake's steps.
    peer.handshake(|| thread::sleep(Duration::from_millis(20)));
    let mut frame = [0u8; 1514];
    let mut last_engine_sequence = None;
    // A conforming sender keeps within one data area: the scripted peer's
    // allocator does not track its tail, so stay a slot below it.
    let slot = 1536 + 64;
    let in_flight_limit = (layout.data_size() / slot)
        .saturating_sub(1)
        .clamp(1, usize::from(layout.queue_length()));
    let give_up = Instant::now() + Duration::from_secs(30);
    while delivered.load(Ordering::Acquire) < frames {
        assert!(
            Instant::now() < give_up,
            "the engine took too long to receive"
        );
        peer.reclaim();
        while report.frames_posted < frames && usize::from(peer.in_flight()) < in_flight_limit {
            let length = make_frame(PEER_MAGIC, report.frames_posted, &mut frame);
            peer.post(&frame[..length]);
            report.frames_posted += 1;
        }
        for sent in peer.take_transmitted() {
            if let Some(sequence) = check_frame(ENGINE_MAGIC, &sent) {
                assert!(
                    last_engine_sequence < Some(sequence),
                    "engine frames reordered"
                );
                last_engine_sequence = Some(sequence);
                report.engine_frames_checked += 1;
            }
        }
        peer.kick();
        thread::sleep(Duration::from_micros(200));
    }
    report
}

/// What the engine thread saw.
#[derive(Debug, Default)]
struct EngineReport {
    polls: u64,
    frames_handed_up: u64,
    good_frames: u64,
    sent: u64,
    allocations_while_exchanging: u64,
    longest_call: Duration,
}

/// One round: the engine on this thread, the attacker on another.
fn attack_round(
    section_size: usize,
    seed: u64,
    attack_time: Duration,
    frames: u64,
) -> EngineReport {
    let link = HostLink::new(section_size);
    let peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).unwrap();
    let (sections, notifier) = link.endpoint(1).unwrap();
    let mut engine = Engine::new(Config::new(1, 2, MAC_B), sections, notifier).unwrap();
    let layout = engine.layout();
    let max_frame = layout.max_frame_length();
    let delivered = Arc::new(AtomicU64::new(0));
    let attacker = {
        let delivered = Arc::clone(&delivered);
        thread::spawn(move || peer_thread(peer, seed, attack_time, frames, delivered))
    };

    let mut watchdog = Watchdog::new(Duration::from_secs(5));
    let mut report = EngineReport::default();
    let mut frame = [0u8; 1514];
    let mut next_good = None::<u64>;
    let mut counted_from = None;
    while !attacker.is_finished() {
        let up = watchdog.call(|| engine.poll(now()));
        report.polls += 1;
        loop {
            let received = watchdog.call(|| {
                engine
                    .receive_frame()
                    .map(|f| (f.len(), check_frame(PEER_MAGIC, f)))
            });
            let Some((length, good)) = received else {
                break;
            };
            assert!(
                length >= 1 && length <= max_frame,
                "a frame of {length} bytes"
            );
            report.frames_handed_up += 1;
            if let Some(sequence) = good {
                // Good frames arrive in order, each once, from the first
                // one after the attack on.
                if let Some(expected) = next_good {
                    assert_eq!(sequence, expected, "good frames in order");
                }
                next_good = Some(sequence + 1);
                report.good_frames += 1;
                delivered.store(report.good_frames, Ordering::Release);
                if report.good_frames == 100 {
                    counted_from = Some(allocations());
                }
            }
            watchdog.call(|| engine.receive_advance());
        }
        if up && next_good.is_some() {
            let length = make_frame(ENGINE_MAGIC, report.sent, &mut frame);
            if watchdog.call(|| engine.send(&frame[..length])).is_ok() {
                report.sent += 1;
            }
        }
        link.doorbell(1).wait(Duration::from_micros(500));
    }
    let peer_report = attacker.join().expect("the attacker thread");
    report.allocations_while_exchanging = counted_from.map_or(0, |from| allocations() - from);
    report.longest_call = watchdog.longest;
    println!(
        "engine: {report:?}\npeer: {peer_report:?}\nstatistics: {:?}",
        engine.statistics()
    );
    assert_eq!(
        report.good_frames, frames,
        "every good frame delivered once"
    );
    assert!(
        peer_report.engine_frames_checked > 0,
        "the engine's frames reach the peer"
    );
    assert_eq!(
        report.allocations_while_exchanging, 0,
        "the engine allocates nothing per frame"
    );
    assert!(
        report.longest_call < Duration::from_secs(1),
        "an engine call took {:?}",
        report.longest_call
    );
    let statistics = engine.statistics();
    assert!(
        statistics.protocol_errors.total() > 0,
        "the attack was noticed"
    );
    assert_eq!(engine.state(), State::Run);
    report
}

#[test]
fn engine_survives_a_concurrent_attacker() {
    attack_round(0x4000, 1, Duration::from_millis(1500), 2000);
}

#[test]
fn engine_survives_a_concurrent_attacker_on_the_quirk_layout() {
    attack_round(0x2000, 2, Duration::from_millis(1000), 1000);
}

/// A minute of attacks, each followed by recovery (`--ignored`).
#[test]
#[ignore]
fn a_minute_of_concurrent_attacks() {
    let started = Instant::now();
    let mut round = 0;
    while started.elapsed() < Duration::from_secs(60) {
        let size = [0x2000, 0x4000, 0x10000, 0x7F000][round % 4];
        attack_round(size, 100 + round as u64, Duration::from_secs(2), 1000);
        round += 1;
    }
}

/// Two well-behaved engines on two threads exchanging frames allocate
/// nothing once the link is up.
#[test]
fn no_allocation_per_frame() {
    let link = HostLink::new(0x10000);
    let engines: Vec<_> = (0..2)
        .map(|id| {
            let link = link.clone();
            thread::spawn(move || {
                let mut engine = common::engine(&link, id, 1500);
                common::wait_for_link(&mut engine, &link, Duration::from_secs(10));
                let magic = if id == 0 { PEER_MAGIC } else { ENGINE_MAGIC };
                let other = if id == 0 { ENGINE_MAGIC } else { PEER_MAGIC };
                let mut frame = [0u8; 1514];
                let (mut sent, mut received) = (0u64, 0u64);
                let mut counted_from = None;
                let deadline = Instant::now() + Duration::from_secs(30);
                while (sent < 20_000 || received < 20_000) && Instant::now() < deadline {
                    engine.poll(now());
                    while sent < 20_000 {
                        let length = make_frame(magic, sent, &mut frame);
                        if engine.send(&frame[..length]).is_err() {
                            break;
                        }
                        sent += 1;
                    }
                    while let Some(got) = engine.receive_frame() {
                        assert_eq!(check_frame(other, got), Some(received));
                        received += 1;
                        engine.receive_advance();
                    }
                    if received >= 1000 && counted_from.is_none() {
                        counted_from = Some(allocations());
                    }
                    link.doorbell(id).wait(Duration::from_micros(200));
                }
                assert_eq!((sent, received), (20_000, 20_000));
                allocations() - counted_from.expect("warmed up")
            })
        })
        .collect();
    for engine in engines {
        assert_eq!(engine.join().unwrap(), 0, "allocations after warm-up");
    }
}
