//! Throughput measurements of the engine on the host, next to the references
//! they are judged against, shared by `cargo bench -p netdev` and the
//! launcher's `bench` command so both print the same numbers:
//!
//! * [`engine`]: two engines on two threads over one allocation seen
//!   through the mapped backing ([`MappedLink`], whole-frame copies, as the
//!   bridge sees a VM's memory), one
//!   sending fixed-size frames in batches of 32 with [`Engine::send_batch`]
//!   (a copy into its section each), the other taking them one by one with
//!   [`Engine::receive`] (a copy out), every frame checked for its
//!   sequence number;
//! * [`spsc`]: the same frames, with the same two copies, through a
//!   well-kept single-producer single-consumer ring (`rtrb`, as a byte
//!   stream of length-prefixed frames): the cost of moving frames between
//!   two threads without ivshmem-net's descriptors, used ring and event
//!   indexes;
//! * [`memcpy`]: one thread copying a buffer larger than the caches: the
//!   memory bandwidth one copy of the frames could at most reach.

use std::hint::black_box;
use std::mem::MaybeUninit;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use std::ptr::NonNull;

use netdev::{Config, Engine, Notifier, Sections, SharedMemoryMut};

use crate::mapped::{MappedRegion, MappedRegionMut, Owner};

/// The output section size the measurements use (the Jailhouse
/// `JAILHOUSE_SHMEM_NET_REGIONS` size, docs/ivshmem-net.md §3.4).
pub const SECTION_SIZE: usize = 0x7F000;

/// Frames moved in a measured time.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sample {
    /// Bytes per frame.
    pub frame_size: usize,
    /// Frames moved (and checked).
    pub frames: u64,
    /// How long it took.
    pub elapsed: Duration,
}

impl Sample {
    /// Frames per second.
    pub fn frames_per_second(&self) -> f64 {
        self.frames as f64 / self.elapsed.as_secs_f64()
    }

    /// Frame bytes per second, in Gbit/s.
    pub fn gbits(&self) -> f64 {
        self.frames_per_second() * self.frame_size as f64 * 8.0 / 1e9
    }
}

/// The smallest, middle and largest of several measurements.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Spread {
    /// The smallest value.
    pub min: f64,
    /// The median (the lower middle value for an even count).
    pub median: f64,
    /// The largest value.
    pub max: f64,
}

impl Spread {
    /// The spread of `values`.
    ///
    /// # Panics
    ///
    /// If `values` is empty.
    pub fn of(values: &[f64]) -> Self {
        let mut sorted = values.to_vec();
        sorted.sort_by(f64::total_cmp);
        Self {
            min: sorted[0],
            median: sorted[(sorted.len() - 1) / 2],
            max: sorted[sorted.len() - 1],
        }
    }
}

/// Two output sections and a state table in one page-aligned allocation,
/// seen through the mapped backing ([`MappedRegion`]: whole-frame copies),
/// as the bridge sees a VM's shared memory. Both engines of a measurement
/// follow the protocol, which is what that backing needs of a peer thread.
#[derive(Debug, Clone)]
pub struct MappedLink {
    memory: Arc<Memory>,
}

/// The allocation behind a [`MappedLink`], freed when the last view goes.
#[derive(Debug)]
struct Memory {
    base: NonNull<u8>,
    layout: std::alloc::Layout,
}

// SAFETY: plain memory, accessed only through the mapped views (atomics and
// copies, `crate::mapped`), whichever thread holds them.
unsafe impl Send for Memory {}
// SAFETY: as for `Send`.
unsafe impl Sync for Memory {}

impl Drop for Memory {
    fn drop(&mut self) {
        // SAFETY: allocated in `MappedLink::new` with this layout; this is
        // the last owner (every view holds the `Arc`).
        unsafe { std::alloc::dealloc(self.base.as_ptr(), self.layout) }
    }
}

/// The state table's size in a [`MappedLink`].
const STATE_TABLE: usize = 4096;

impl MappedLink {
    /// Zeroed memory for a state table and two sections of `section_size`.
    pub fn new(section_size: usize) -> Self {
        let layout = std::alloc::Layout::from_size_align(STATE_TABLE + 2 * section_size, 4096)
            .expect("a sane size");
        // SAFETY: the layout has a non-zero size.
        let base = unsafe { std::alloc::alloc_zeroed(layout) };
        let Some(base) = NonNull::new(base) else {
            std::alloc::handle_alloc_error(layout)
        };
        Self {
            memory: Arc::new(Memory { base, layout }),
        }
    }

    fn view(&self, offset: usize, length: usize) -> (NonNull<u8>, usize, Owner) {
        assert!(offset + length <= self.memory.layout.size());
        // SAFETY: inside the allocation (asserted).
        let base = unsafe { self.memory.base.add(offset) };
        (base, length, Arc::clone(&self.memory) as Owner)
    }

    /// Peer `id`'s views (the state table, its own section writable, the
    /// other's read-only) and its notifier. Call once per `id`.
    pub fn endpoint(&self, id: u16) -> (Sections<MappedRegion, MappedRegionMut>, MappedNotifier) {
        let section_size = (self.memory.layout.size() - STATE_TABLE) / 2;
        let section = |peer: u16| STATE_TABLE + usize::from(peer) * section_size;
        let (state_base, state_length, owner) = self.view(0, STATE_TABLE);
        let (own_base, own_length, own_owner) = self.view(section(id), section_size);
        let (peer_base, peer_length, peer_owner) = self.view(section(1 - id), section_size);
        let (entry_base, entry_length, entry_owner) = self.view(4 * usize::from(id), 4);
        // SAFETY: the views lie inside the allocation, which their owners
        // keep alive; the only writable views are this peer's own section
        // and its own state entry, and each peer id is taken once (the
        // caller's promise), so no two writable views overlap; both peers
        // follow the protocol.
        unsafe {
            (
                Sections {
                    state_table: MappedRegion::new(state_base, state_length, Some(owner)),
                    own: MappedRegionMut::new(own_base, own_length, Some(own_owner)),
                    peer: MappedRegion::new(peer_base, peer_length, Some(peer_owner)),
                },
                MappedNotifier {
                    state: MappedRegionMut::new(entry_base, entry_length, Some(entry_owner)),
                },
            )
        }
    }
}

/// The notifier of a [`MappedLink`] endpoint: writes its state entry (no
/// interrupts: the measurements spin).
#[derive(Debug)]
pub struct MappedNotifier {
    state: MappedRegionMut,
}

impl Notifier for MappedNotifier {
    fn notify(&self, _vector: u16) {}

    fn set_state(&self, state: u32) {
        self.state.store_u32(0, state, Ordering::Release);
    }
}

type BenchEngine = Engine<MappedRegion, MappedRegionMut, MappedNotifier>;

fn engine_for(link: &MappedLink, id: u16) -> BenchEngine {
    let (sections, notifier) = link.endpoint(id);
    let mut config = Config::new(id, 2, [0x02, 0, 0, 0, 0, id as u8]);
    config.mtu = Some(9000);
    Engine::new(config, sections, notifier).expect("a valid layout")
}

/// Moves `frame_size`-byte frames from one engine to another on two threads
/// for about `duration`; checks that every frame arrives, in order.
///
/// # Panics
///
/// If a frame is lost, reordered or of the wrong size, or the peer reports
/// protocol errors (a bug).
pub fn engine(frame_size: usize, duration: Duration) -> Sample {
    let link = MappedLink::new(SECTION_SIZE);
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let link = link.clone();
        let total = Arc::clone(&total);
        thread::spawn(move || {
            let mut engine = engine_for(&link, 1);
            while !engine.poll(crate::now()) {
                std::hint::spin_loop();
            }
            let mut buffer = vec![0u8; 16 * 1024];
            let mut received = 0u64;
            while received < total.load(Ordering::Acquire) {
                match engine.receive(&mut buffer) {
                    Ok(Some(length)) => {
                        assert_eq!(length, frame_size);
                        let sequence = u64::from_le_bytes(buffer[..8].try_into().expect("8"));
                        assert_eq!(sequence, received, "in order");
                        received += 1;
                    }
                    // Nothing, or the receive budget is spent: poll.
                    _ => {
                        engine.poll(crate::now());
                    }
                }
            }
            // Let the sender see the last completions.
            engine.poll(crate::now());
            received
        })
    };
    let mut engine = engine_for(&link, 0);
    while !engine.poll(crate::now()) {
        std::hint::spin_loop();
    }
    // Batches of up to BATCH frames, as smoltcp or the bridge produce them:
    // one index store and at most one doorbell per batch.
    const BATCH: usize = 32;
    let mut frames = vec![vec![0x5Au8; frame_size]; BATCH];
    let mut sent = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for _ in 0..16 {
            for (index, frame) in frames.iter_mut().enumerate() {
                frame[..8].copy_from_slice(&(sent + index as u64).to_le_bytes());
            }
            match engine.send_batch(frames.iter().map(Vec::as_slice)) {
                Ok(count) => sent += count as u64,
                Err(_) => std::hint::spin_loop(),
            }
        }
    }
    total.store(sent, Ordering::Release);
    let received = receiver.join().expect("the receiver thread");
    let elapsed = started.elapsed();
    assert_eq!(received, sent);
    assert_eq!(engine.statistics().protocol_errors.total(), 0);
    Sample {
        frame_size,
        frames: sent,
        elapsed,
    }
}

/// The CPU cost of the protocol without two threads competing for two
/// cores: one thread alternately sends a batch of up to 32 frames on one
/// engine and receives them on the other, checking each.
///
/// # Panics
///
/// If a frame is lost, reordered or of the wrong size (a bug).
pub fn engine_one_thread(frame_size: usize, duration: Duration) -> Sample {
    one_thread(frame_size, |sample| sample.elapsed < duration)
}

/// Like [`engine_one_thread`], for a fixed number of frames (at least
/// `frames`, in whole batches): for counting instructions per frame.
pub fn engine_frames(frame_size: usize, frames: u64) -> Sample {
    one_thread(frame_size, |sample| sample.frames < frames)
}

fn one_thread(frame_size: usize, go_on: impl Fn(&Sample) -> bool) -> Sample {
    let link = MappedLink::new(SECTION_SIZE);
    let mut sender = engine_for(&link, 0);
    let mut receiver = engine_for(&link, 1);
    while !(sender.poll(crate::now()) & receiver.poll(crate::now())) {}
    let mut frames = vec![vec![0x5Au8; frame_size]; 32];
    let mut buffer = vec![0u8; 16 * 1024];
    let (mut sent, mut received) = (0u64, 0u64);
    let started = Instant::now();
    while go_on(&Sample {
        frame_size,
        frames: received,
        elapsed: started.elapsed(),
    }) {
        for (index, frame) in frames.iter_mut().enumerate() {
            frame[..8].copy_from_slice(&(sent + index as u64).to_le_bytes());
        }
        sent += sender
            .send_batch(frames.iter().map(Vec::as_slice))
            .unwrap_or(0) as u64;
        while received < sent {
            match receiver.receive(&mut buffer) {
                Ok(Some(length)) => {
                    assert_eq!(length, frame_size);
                    let sequence = u64::from_le_bytes(buffer[..8].try_into().expect("8"));
                    assert_eq!(sequence, received, "in order");
                    received += 1;
                }
                _ => {
                    receiver.poll(crate::now());
                }
            }
        }
        receiver.flush();
    }
    Sample {
        frame_size,
        frames: received,
        elapsed: started.elapsed(),
    }
}

/// Moves the same frames with the same two copies through an `rtrb` byte
/// ring of one data area (a 2-byte length, then the frame).
///
/// # Panics
///
/// If a frame is lost, reordered or of the wrong size (a bug).
pub fn spsc(frame_size: usize, duration: Duration) -> Sample {
    let capacity = netdev::Layout::new(SECTION_SIZE)
        .expect("a valid layout")
        .data_size();
    let (mut producer, mut consumer) = rtrb::RingBuffer::<u8>::new(capacity);
    let total = Arc::new(AtomicU64::new(u64::MAX));
    let receiver = {
        let total = Arc::clone(&total);
        thread::spawn(move || {
            let mut buffer = vec![0u8; 16 * 1024];
            let mut received = 0u64;
            while received < total.load(Ordering::Acquire) {
                let Ok(header) = consumer.read_chunk(2) else {
                    std::hint::spin_loop();
                    continue;
                };
                let (first, second) = header.as_slices();
                let mut length = [0u8; 2];
                length[..first.len()].copy_from_slice(first);
                length[first.len()..].copy_from_slice(&second[..2 - first.len()]);
                let length = usize::from(u16::from_le_bytes(length));
                // The producer commits the length and the frame together.
                header.commit_all();
                let chunk = consumer.read_chunk(length).expect("the whole frame");
                let (first, second) = chunk.as_slices();
                buffer[..first.len()].copy_from_slice(first);
                buffer[first.len()..length].copy_from_slice(second);
                chunk.commit_all();
                assert_eq!(length, frame_size);
                let sequence = u64::from_le_bytes(buffer[..8].try_into().expect("8"));
                assert_eq!(sequence, received, "in order");
                received += 1;
            }
            received
        })
    };
    let mut frame = vec![0x5Au8; frame_size];
    let length = (frame_size as u16).to_le_bytes();
    let mut sent = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        for _ in 0..64 {
            frame[..8].copy_from_slice(&sent.to_le_bytes());
            // The length and the frame go in as one chunk, as a descriptor
            // and its buffer would.
            let Ok(mut chunk) = producer.write_chunk_uninit(frame_size + 2) else {
                std::hint::spin_loop();
                continue;
            };
            let (first, second) = chunk.as_mut_slices();
            write_parts([first, second], [&length, &frame]);
            // SAFETY: `write_parts` wrote all `frame_size + 2` slots, which
            // is exactly what the two slices cover.
            unsafe { chunk.commit_all() };
            sent += 1;
        }
    }
    total.store(sent, Ordering::Release);
    let received = receiver.join().expect("the receiver thread");
    let elapsed = started.elapsed();
    assert_eq!(received, sent);
    Sample {
        frame_size,
        frames: sent,
        elapsed,
    }
}

/// Copies `sources`, one after another, into the two parts of a ring
/// chunk (which together are exactly as long).
fn write_parts(destination: [&mut [MaybeUninit<u8>]; 2], sources: [&[u8]; 2]) {
    let [mut first, mut second] = destination;
    for source in sources {
        let head = source.len().min(first.len());
        first[..head].write_copy_of_slice(&source[..head]);
        first = &mut first[head..];
        let rest = source.len() - head;
        second[..rest].write_copy_of_slice(&source[head..]);
        second = &mut second[rest..];
    }
}

/// Single-thread `memcpy` bandwidth between two buffers larger than the
/// caches (64 MiB each): the reference the "% of memcpy" targets
/// are stated against. Returned as a [`Sample`] of `frame_size`-byte
/// frames (the same bytes per second), so the table can put it next to the
/// engine.
pub fn memcpy(frame_size: usize, duration: Duration) -> Sample {
    let size = 64 << 20;
    let source = vec![0xA5u8; size];
    let mut destination = vec![0u8; size];
    destination.copy_from_slice(&source); // fault the pages in
    let mut bytes = 0u64;
    let started = Instant::now();
    while started.elapsed() < duration {
        destination.copy_from_slice(black_box(&source));
        black_box(&mut destination);
        bytes += size as u64;
    }
    Sample {
        frame_size,
        frames: bytes / frame_size as u64,
        elapsed: started.elapsed(),
    }
}
