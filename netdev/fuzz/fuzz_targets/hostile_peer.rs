//! Fuzz what a hostile peer reaches: the input is a program of peer writes
//! (raw fields of its section, descriptors, state changes, well-formed
//! frames) interleaved with engine calls (poll at a moving clock, the frame
//! channel both ways, smoltcp's receive and transmit tokens, zero-copy
//! sends). The host backing panics on any out-of-range access, and the
//! engine's bounds are asserted after every step, so a crash is an engine
//! bug.
//!
//! One engine per section size lives across inputs (an input ends with a
//! reset, a handshake and a frame that must get through, which is also
//! where the next one starts), so an execution costs the program, not the
//! set-up.
#![no_main]

use std::cell::RefCell;
use std::sync::atomic::Ordering;

use libfuzzer_sys::fuzz_target;
use netdev::{
    Config, Duration, Engine, Instant, Layout, SharedMemoryMut, State,
};
use netdev_host::host::{HostLink, HostNotifier, HostRegion, HostRegionMut};
use netdev_host::test_utils::{PeerStyle, ScriptedPeer};
use smoltcp::phy::{Device, RxToken, TxToken};

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

/// Section sizes: the num = 32 quirk layout, num 64 and num 128 (small, so
/// that the zeroing of a handshake stays cheap).
const SECTION_SIZES: [usize; 3] = [0x2000, 0x4000, 0x8000];

struct Rig {
    peer: ScriptedPeer,
    engine: Engine<HostRegion, HostRegionMut, HostNotifier>,
    layout: Layout,
    clock: Instant,
    _link: HostLink,
}

impl Rig {
    fn new(section_size: usize) -> Self {
        let link = HostLink::new(section_size);
        let peer = ScriptedPeer::new(&link, 0, PeerStyle::Linux).expect("fresh link");
        let (sections, notifier) = link.endpoint(1).expect("fresh link");
        let config = Config::new(1, 2, [2, 0, 0, 0, 0, 1]);
        let engine = Engine::new(config, sections, notifier).expect("valid layout");
        let layout = engine.layout();
        let mut rig = Self {
            peer,
            engine,
            layout,
            clock: Instant::ZERO,
            _link: link,
        };
        rig.settle();
        rig
    }

    /// Ends an input the same way whatever it did, so the next one starts
    /// from the same state: a fresh handshake, then one frame through.
    fn settle(&mut self) {
        self.restart();
        assert!(self.engine.link_up(), "the link comes back");
        self.peer.post(b"after the storm");
        self.clock += Duration::from_millis(1);
        self.engine.poll(self.clock);
        assert_eq!(
            self.engine.receive_frame(),
            Some(b"after the storm".as_slice())
        );
        self.engine.receive_advance();
    }

    /// Brings the link up from whatever the last input left behind.
    fn restart(&mut self) {
        self.engine.reset();
        let (engine, clock) = (&mut self.engine, &mut self.clock);
        self.peer.handshake(|| {
            *clock += Duration::from_millis(1);
            engine.poll(*clock);
        });
    }

    fn check(&self) {
        let num = self.layout.queue_length();
        assert!(self.engine.transmit_in_flight() <= num);
        assert!(self.engine.state().to_raw() <= 3);
    }
}

thread_local! {
    static RIGS: RefCell<Vec<Rig>> = RefCell::new(SECTION_SIZES.iter().map(|&size| Rig::new(size)).collect());
}

/// A frame buffer shared by all sends (no allocation per step).
static PAYLOAD: [u8; 0x4000] = [0xEE; 0x4000];

fn run(rig: &mut Rig, input: &mut Input<'_>) {
    let layout = rig.layout;
    let num = layout.queue_length();
    let section_size = layout.section_size();
    let max_frame = layout.max_frame_length();
    let mut steps = 0;
    while !input.0.is_empty() && steps < 1024 {
        steps += 1;
        match input.u8() % 16 {
            0 => {
                // Time moves by up to ~4 s: enough to cross the transmit timeout.
                rig.clock += Duration::from_millis(u64::from(input.u16()) / 16);
                rig.engine.poll(rig.clock);
            }
            1 => {
                if let Some(frame) = rig.engine.receive_frame() {
                    assert!(!frame.is_empty() && frame.len() <= max_frame);
                    rig.engine.receive_advance();
                }
            }
            2 => {
                let length = usize::from(input.u16()) % (max_frame + 2);
                let _ = rig.engine.send(&PAYLOAD[..length.min(PAYLOAD.len())]);
            }
            3 => {
                let offset = (usize::from(input.u16()) * 2) % section_size;
                rig.peer
                    .section()
                    .store_u16(offset, input.u16(), Ordering::Release);
            }
            4 => {
                let offset = (usize::from(input.u16()) * 4) % section_size;
                rig.peer
                    .section()
                    .store_u32(offset, input.u32(), Ordering::Release);
            }
            5 => rig.peer.set_state(State::from_raw(u32::from(input.u8() % 5))),
            6 => {
                let entry = input.u16();
                let index = input.u16() % (2 * num);
                let address = input.u64();
                let length = input.u32();
                let flags = u16::from(input.u8() % 2);
                rig.peer.post_raw(entry, Some((index, address, length, flags)));
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
                rig.peer.section().store_u16(offset, value, Ordering::Release);
            }
            8 => {
                // A well-formed frame from the peer (it keeps within one
                // data area only if the program lets it: that is the point).
                let length = 1 + usize::from(input.u16()) % 1600;
                rig.peer.post(&PAYLOAD[..length]);
            }
            9 => {
                // Used elements for the engine's frames, right or wrong.
                let slot = usize::from(input.u16()) % usize::from(num);
                let element = layout.used_ring(slot);
                rig.peer
                    .section()
                    .store_u32(element, input.u32() % (u32::from(num) + 2), Ordering::Relaxed);
                rig.peer
                    .section()
                    .store_u32(element + 4, u32::from(input.u8() % 3), Ordering::Relaxed);
            }
            10 => {
                // smoltcp's receive path, replying through the token.
                if let Some((rx, tx)) = Device::receive(&mut rig.engine, smoltcp::time::Instant::ZERO) {
                    let reply = usize::from(input.u16()) % (max_frame + 2);
                    rx.consume(|frame| assert!(!frame.is_empty() && frame.len() <= max_frame));
                    if reply > 0 {
                        tx.consume(reply, |buffer| buffer.fill(0x11));
                    }
                }
            }
            11 => {
                let length = 1 + usize::from(input.u16()) % rig.engine.mtu_frame_length();
                if let Some(tx) = Device::transmit(&mut rig.engine, smoltcp::time::Instant::ZERO) {
                    tx.consume(length, |buffer| buffer.fill(0x22));
                }
            }
            12 => {
                let length = usize::from(input.u16()) % (max_frame + 2);
                let advance = usize::from(input.u16()) % (max_frame + 2);
                if let Ok(buffer) = rig.engine.send_buffer(length) {
                    buffer.fill(0x33);
                }
                let _ = rig.engine.send_advance(advance);
            }
            13 => {
                let _ = rig.engine.can_receive();
                let _ = rig.engine.can_send(usize::from(input.u16()));
                let _ = rig.engine.transmit_empty();
            }
            14 => rig.peer.kick(),
            _ => rig.restart(),
        }
        rig.check();
    }
}

fuzz_target!(|data: &[u8]| {
    let mut input = Input(data);
    let which = usize::from(input.u8()) % SECTION_SIZES.len();
    RIGS.with(|rigs| {
        let rig = &mut rigs.borrow_mut()[which];
        run(rig, &mut input);
        // Whatever happened, the link comes back and carries a frame.
        rig.settle();
    });
});
