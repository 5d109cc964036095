//! Two engines on two threads, each over its own mapping of one file through
//! `MappedRegion`/`MappedRegionMut`: both peers follow the protocol, so the
//! whole-buffer copies never race (see the `mapped` module documentation).
#![allow(unsafe_code)]

use std::fs::File;
use std::ptr::NonNull;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Condvar, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use memmap2::MmapMut;
use netdev::{Config, Engine, Notifier, Sections, SendError, SharedMemory, SharedMemoryMut};
use netdev_host::mapped::{MappedRegion, MappedRegionMut};
use netdev_host::now;

const STATE_TABLE: usize = 0x1000;
const SECTION: usize = 0x10000;
const FRAMES: u32 = 3000;
const STALL: Duration = Duration::from_secs(20);

/// A doorbell between the two threads.
#[derive(Default)]
struct Bell {
    rung: Mutex<bool>,
    condvar: Condvar,
}

impl Bell {
    fn ring(&self) {
        *self.rung.lock().unwrap() = true;
        self.condvar.notify_all();
    }

    fn wait(&self, timeout: Duration) {
        let rung = self.rung.lock().unwrap();
        let (mut rung, _) = self
            .condvar
            .wait_timeout_while(rung, timeout, |rung| !*rung)
            .unwrap();
        *rung = false;
    }
}

/// Emulates the State register on our state-table entry (as the kernel does
/// on ivshmem-doorbell) and rings the peer's bell.
struct BellNotifier {
    entry: MappedRegionMut,
    peer: Arc<Bell>,
}

impl Notifier for BellNotifier {
    fn notify(&self, _vector: u16) {
        self.peer.ring();
    }

    fn set_state(&self, state: u32) {
        let previous = self.entry.load_u32(0, Ordering::SeqCst);
        self.entry.store_u32(0, state, Ordering::SeqCst);
        if previous != state {
            self.peer.ring();
        }
    }
}

type MappedEngine = Engine<MappedRegion, MappedRegionMut, BellNotifier>;

fn engine(file: &File, id: u16, bells: &[Arc<Bell>; 2]) -> MappedEngine {
    let mut map = unsafe_map(file);
    let base = NonNull::new(map.as_mut_ptr()).unwrap();
    let length = map.len();
    let owner = Arc::new(map);
    let peer = 1 - id;
    let section = |id: u16| STATE_TABLE + usize::from(id) * SECTION;
    // SAFETY: `owner` keeps the mapping alive for every view; in this
    // process only this engine's views write this mapping, one writable view
    // per range (its section and its state entry); the other thread writes
    // its own ranges through its own mapping, following the protocol.
    let (whole, own, entry) = unsafe {
        let at = |offset: usize| NonNull::new(base.as_ptr().add(offset)).unwrap();
        (
            MappedRegion::new(base, length, Some(owner.clone())),
            MappedRegionMut::new(at(section(id)), SECTION, Some(owner.clone())),
            MappedRegionMut::new(at(4 * usize::from(id)), 4, Some(owner.clone())),
        )
    };
    let sections = Sections {
        state_table: whole.subregion(0, STATE_TABLE),
        own,
        peer: whole.subregion(section(peer), SECTION),
    };
    let notifier = BellNotifier {
        entry,
        peer: bells[usize::from(peer)].clone(),
    };
    let mac = [0x02, 0, 0, 0, 0, id as u8 + 1];
    Engine::new(Config::new(id, 2, mac), sections, notifier).unwrap()
}

fn unsafe_map(file: &File) -> MmapMut {
    // SAFETY: the file is private to this test; it is accessed only through
    // the mapped views (atomics and copies), never as a Rust slice.
    unsafe { MmapMut::map_mut(file) }.unwrap()
}

/// Frame `n` of peer `id`: a length from 60 to 1514 and a pattern.
fn frame(id: u16, n: u32) -> Vec<u8> {
    let length = 60 + (n as usize * 37) % 1455;
    (0..length)
        .map(|i| (i as u32 ^ n.wrapping_mul(31) ^ u32::from(id) << 7) as u8)
        .collect()
}

/// Sends FRAMES frames and receives FRAMES, checking each.
fn exchange(mut engine: MappedEngine, bell: &Bell) -> MappedEngine {
    let id = engine.config().own_id;
    let (mut sent, mut received) = (0, 0);
    let mut last_progress = Instant::now();
    while sent < FRAMES || received < FRAMES || !engine.transmit_empty() {
        let mut progress = false;
        while sent < FRAMES {
            match engine.send(&frame(id, sent)) {
                Ok(()) => sent += 1,
                Err(SendError::RingFull | SendError::LinkDown) => break,
                Err(error) => panic!("send: {error}"),
            }
            progress = true;
        }
        while let Some(bytes) = engine.receive_frame() {
            assert_eq!(bytes, frame(1 - id, received), "frame {received}");
            engine.receive_advance();
            received += 1;
            progress = true;
        }
        if progress {
            last_progress = Instant::now();
        } else {
            assert!(
                last_progress.elapsed() < STALL,
                "{id} stalled at {sent}/{received}"
            );
            bell.wait(Duration::from_millis(5));
            engine.poll(now());
        }
    }
    engine
}

#[test]
fn two_engines_over_two_mappings_exchange_frames() {
    let file = tempfile::tempfile().unwrap();
    file.set_len((STATE_TABLE + 2 * SECTION) as u64).unwrap();
    let bells = [Arc::new(Bell::default()), Arc::new(Bell::default())];
    let handles: Vec<_> = [0u16, 1]
        .into_iter()
        .map(|id| {
            let file = file.try_clone().unwrap();
            let bells = bells.clone();
            thread::spawn(move || {
                let engine = engine(&file, id, &bells);
                let engine = exchange(engine, &bells[usize::from(id)]);
                engine.statistics()
            })
        })
        .collect();
    for handle in handles {
        let statistics = handle.join().unwrap();
        assert_eq!(statistics.transmitted_frames, u64::from(FRAMES));
        assert_eq!(statistics.received_frames, u64::from(FRAMES));
        assert_eq!(statistics.protocol_errors.total(), 0);
    }
}
