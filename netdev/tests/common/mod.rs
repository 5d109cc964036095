//! Helpers shared by the integration tests.
#![allow(dead_code)] // each test binary uses a different subset

use std::time::{Duration, Instant};

use netdev::{Config, Engine};
use netdev_host::host::{HostLink, HostNotifier, HostRegion, HostRegionMut};
use netdev_host::now;

pub type HostEngine = Engine<HostRegion, HostRegionMut, HostNotifier>;

/// xorshift64*: a small deterministic generator for test data.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, bound: usize) -> usize {
        (self.next_u64() % bound as u64) as usize
    }

    pub fn fill(&mut self, bytes: &mut [u8]) {
        for chunk in bytes.chunks_mut(8) {
            let word = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&word[..chunk.len()]);
        }
    }
}

/// Frame `sequence` of a stream: 8 bytes of sequence number, then bytes
/// derived from it; the length (8..=maximum) too.
pub fn stream_frame(seed: u64, sequence: u64, maximum: usize, buffer: &mut Vec<u8>) {
    let mut random = Random::new(seed ^ sequence.wrapping_mul(0x1000_0000_01B3));
    let length = 8 + random.below(maximum - 7);
    buffer.resize(length, 0);
    buffer[..8].copy_from_slice(&sequence.to_le_bytes());
    random.fill(&mut buffer[8..]);
}

/// Checks a received stream frame; returns its sequence number.
pub fn check_stream_frame(seed: u64, frame: &[u8], maximum: usize, scratch: &mut Vec<u8>) -> u64 {
    assert!(frame.len() >= 8, "short frame of {} bytes", frame.len());
    let sequence = u64::from_le_bytes(frame[..8].try_into().unwrap());
    stream_frame(seed, sequence, maximum, scratch);
    assert_eq!(frame.len(), scratch.len(), "length of frame {sequence}");
    assert!(frame == scratch.as_slice(), "content of frame {sequence}");
    sequence
}

pub const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0xA];
pub const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0xB];

pub fn engine(link: &HostLink, id: u16, mtu: usize) -> HostEngine {
    let (sections, notifier) = link.endpoint(id).unwrap();
    let mac = if id == 0 { MAC_A } else { MAC_B };
    let mut config = Config::new(id, 2, mac);
    config.mtu = Some(mtu);
    Engine::new(config, sections, notifier).unwrap()
}

/// Polls until the link is up, sleeping on the doorbell; panics after
/// `timeout`.
pub fn wait_for_link(engine: &mut HostEngine, link: &HostLink, timeout: Duration) {
    let id = engine.config().own_id;
    let deadline = Instant::now() + timeout;
    while !engine.poll(now()) {
        assert!(Instant::now() < deadline, "link {id} did not come up");
        link.doorbell(id).wait(Duration::from_millis(5));
    }
}
