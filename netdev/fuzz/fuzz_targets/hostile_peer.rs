//! Fuzz the surface a hostile peer reaches: arbitrary writes into the
//! peer's output section and state, interleaved with the engine's poll,
//! receive and send. The host backing panics on any out-of-range access,
//! so a crash here is an engine bug.
#![no_main]

use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use netdev_host::host::HostLink;
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};
use netdev::{Config, Engine, SharedMemoryMut, State};

/// Reads little-endian integers off the input, yielding zeros at the end.
struct Input<'a>(&'a [u8]);

impl Input<'_> {
    fn bytes<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        let take = N.min(self.0.len());
        out[..take].copy_from_slice(&self.0[..take]);
        self.0 = &self.0[take..];
        out
    }
    fn u8(&mut self) -> u8 {
        self.bytes::<1>()[0]
    }
    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.bytes())
    }
    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.bytes())
    }
    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.bytes())
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let section_size = [0x2000, 0x4000, 0x10000][usize::from(input.u8() % 3)];
    let link = HostLink::new(section_size);
    let mut peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).unwrap();
    let (sections, notifier) = link.endpoint(1).unwrap();
    let mut engine =
        Engine::new(Config::new(1, 2, [2, 0, 0, 0, 0, 1]), sections, notifier).unwrap();
    peer.handshake(|| {
        engine.poll();
    });
    let layout = engine.layout();
    let num = layout.queue_length();
    let mut steps = 0;
    while !input.0.is_empty() && steps < 512 {
        steps += 1;
        match input.u8() % 9 {
            0 => {
                engine.poll();
            }
            1 => {
                if let Some(frame) = engine.receive_frame() {
                    assert!(!frame.is_empty() && frame.len() <= layout.data_size());
                    engine.receive_advance();
                }
            }
            2 => {
                let length = usize::from(input.u16()) % (layout.data_size() + 2);
                let _ = engine.send(&vec![0xEE; length]);
            }
            3 => {
                let offset = (usize::from(input.u16()) * 2) % section_size;
                peer.section()
                    .store_u16(offset, input.u16(), Ordering::Release);
            }
            4 => {
                let offset = (usize::from(input.u16()) * 4) % section_size;
                peer.section()
                    .store_u32(offset, input.u32(), Ordering::Release);
            }
            5 => peer.set_state(State::from_raw(u32::from(input.u8() % 5))),
            6 => {
                let entry = input.u16();
                let index = input.u16() % (2 * num);
                let address = input.u64();
                let length = input.u32();
                let flags = u16::from(input.u8() % 2);
                peer.post_raw(entry, Some((index, address, length, flags)));
            }
            7 => {
                // Header fields at their real offsets.
                let value = input.u16();
                let offset = match input.u8() % 4 {
                    0 => layout.avail_index(),
                    1 => layout.used_index(),
                    2 => layout.used_event(),
                    _ => layout.avail_event(),
                };
                peer.section().store_u16(offset, value, Ordering::Release);
            }
            _ => {
                peer.handshake(|| {
                    engine.poll();
                });
            }
        }
        assert!(engine.transmit_in_flight() <= num);
    }
});
