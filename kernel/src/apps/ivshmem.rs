//! The `ivshmem` app: the raw ivshmem device API on any protocol, in the
//! spirit of Zephyr's ivshmem shell (which prints a device's facts, rings a
//! peer's vector and waits to be notified).
//!
//! It prints where the sections are, then runs a small handshake of its own
//! with the other peers, through nothing but the device API:
//!
//! 1. It writes a token into its slot of the R/W section (16 bytes at
//!    `16 × id`: the token, then the token it saw; skipped if the R/W
//!    section cannot hold a slot per peer). Interrupts are already enabled
//!    (`mode=irq`), since a device drops the events that fire while they
//!    are off (docs/ivshmem-v2.md §7.3).
//! 2. It announces readiness in its state: bit 31 set, bit 30 clear, a
//!    nonce in the rest; the token is `0x49565348` ("IVSH") above that
//!    state, so a peer can tell a fresh token from a stale one.
//! 3. It waits until its *partner* is ready: peer `(id + 1) % max_peers`,
//!    the other peer of a two-peer link.
//! 4. It rings the partner's vector 1 (vector 0 with a single vector; no
//!    doorbell without vectors) and, with interrupts on, waits for its own
//!    vector, which its *predecessor* `(id − 1) % max_peers` rings.
//! 5. It reads the partner's token, checks it against the state the
//!    partner announced, and writes what it saw into its own slot.
//! 6. It announces that it is done (bit 30 set). Unless its own doorbell
//!    already proved that the predecessor saw it ready, it then waits for
//!    that proof: our token in the predecessor's slot, or the predecessor's
//!    state showing done. No peer leaves before the one that waits for it
//!    has seen it, and the R/W section keeps the proof when a peer's state
//!    is zeroed as it leaves. (Without room for tokens only the state is
//!    left: a predecessor that leaves between setting done and our next
//!    look makes us time out.)
//!
//! `link-timeout` bounds each wait. The app passes if every step did.
//!
//! Without interrupts (`mode=poll`, or `ivshmem-plain`, which has none) the
//! app polls the state table instead of waiting for doorbells; it still
//! rings the partner if the device has vectors, for a partner in interrupt
//! mode. With a single vector, state changes also arrive on vector 0 and
//! cannot be told from the doorbell (docs/ivshmem-v2.md §7.1): vector 0
//! firing then proves nothing, and step 6 waits for the predecessor either
//! way.

use core::fmt;
use core::sync::atomic::Ordering;

use abi::cmdline::{CommandLine, Mode};
use abi::report::{
    IvshmemDoorbellSkipped, IvshmemNoTokenRoom, IvshmemOwnState, IvshmemOwnToken, IvshmemPeerState,
    IvshmemPeerTimeout, IvshmemPeerToken, IvshmemPhase, IvshmemRang, IvshmemSections,
    IvshmemTokenMismatch, IvshmemVectorFired, IvshmemVectorTimeout, MemoryRange, Millis,
};
use log::warn;

use crate::ivshmem::Device;
use crate::ivshmem::memory::{ReadWrite, Window};
use crate::pci::ConfigAccess;
use crate::{idle, kprintln, time};

/// What the app needs of a device: the part of [`Device`]'s API it uses,
/// so that the host tests below run it against a fake device.
pub trait Link {
    /// Our peer ID.
    fn id(&self) -> u16;
    /// Peers on the link, including us.
    fn max_peers(&self) -> u16;
    /// Interrupt vectors per peer.
    fn vectors(&self) -> u16;
    /// Whether our interrupts are on (our vectors can fire).
    fn interrupts_enabled(&self) -> bool;
    /// The R/W section.
    fn rw_section(&self) -> Window<ReadWrite>;
    /// A peer's state.
    fn state(&self, peer: u16) -> Option<u32>;
    /// Writes our state (a release).
    fn set_state(&self, state: u32);
    /// Rings a peer's vector (a release).
    fn notify(&self, peer: u16, vector: u16);
    /// Waits up to `micros` for our `vector`; whether it fired.
    fn wait_for_vector(&self, vector: u16, micros: u64) -> bool;
    /// Waits up to `micros` for any event (or not at all when polling).
    fn pause(&self, micros: u64);
    /// Microseconds since boot.
    fn now(&self) -> u64;
}

/// Bit 31 of the state: the app's handshake has started (ready).
pub const READY: u32 = 1 << 31;
/// Bit 30 of the state: we have seen our partner (done).
pub const DONE: u32 = 1 << 30;
/// The upper half of every token: "IVSH".
const TOKEN_MAGIC: u64 = 0x4956_5348;
/// Bytes of one peer's slot in the R/W section: its token, then the token
/// it saw in its partner's slot.
const SLOT: u64 = 16;
/// Where in a slot the token it saw is.
const SEEN: u64 = 8;
/// How often a wait re-reads the state table without an interrupt.
const RECHECK_MICROS: u64 = 5_000;

/// The peer we wait for, ring and read the token of.
pub fn partner(id: u16, max_peers: u16) -> u16 {
    ((u32::from(id) + 1) % u32::from(max_peers)) as u16
}

/// The peer that has us as its partner: it rings us.
pub fn predecessor(id: u16, max_peers: u16) -> u16 {
    ((u32::from(id) + u32::from(max_peers) - 1) % u32::from(max_peers)) as u16
}

/// The vector we ring and wait for: 1, or 0 with a single vector; none
/// without vectors.
pub fn doorbell_vector(vectors: u16) -> Option<u16> {
    match vectors {
        0 => None,
        1 => Some(0),
        _ => Some(1),
    }
}

/// Our ready state for this boot: [`READY`], not [`DONE`], and a nonce from
/// `seed` (the time since boot) and our ID in the low 30 bits.
pub fn ready_state(seed: u64, id: u16) -> u32 {
    let mixed = (seed ^ (u64::from(id) << 40)).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    READY | ((mixed >> 34) as u32 & !(READY | DONE))
}

/// The token that goes with a ready state.
pub fn token(ready_state: u32) -> u64 {
    (TOKEN_MAGIC << 32) | u64::from(ready_state & !DONE)
}

/// Whether a peer's state shows `phase` of the handshake.
fn reached(state: u32, phase: IvshmemPhase) -> bool {
    match phase {
        IvshmemPhase::Ready => state & READY != 0,
        IvshmemPhase::Done => state & (READY | DONE) == READY | DONE,
    }
}

/// Waits until `peer`'s state shows `phase`, or `proof` holds, reports it
/// and returns the state; reports the timeout and returns `None` after
/// `seconds`.
fn wait_for_peer(
    link: &impl Link,
    peer: u16,
    phase: IvshmemPhase,
    seconds: u32,
    proof: &dyn Fn() -> bool,
    report: &mut dyn FnMut(&dyn fmt::Display),
) -> Option<u32> {
    let started = link.now();
    let deadline = started.saturating_add(u64::from(seconds) * 1_000_000);
    loop {
        let state = link.state(peer).unwrap_or(0);
        if reached(state, phase) || proof() {
            report(&IvshmemPeerState {
                peer,
                phase,
                state,
                after: Millis(link.now() - started),
            });
            return Some(state);
        }
        let now = link.now();
        if now >= deadline {
            report(&IvshmemPeerTimeout {
                peer,
                phase,
                seconds,
            });
            return None;
        }
        link.pause((deadline - now).min(RECHECK_MICROS));
    }
}

/// Runs the handshake (steps 1–6 of the module documentation) on `link`,
/// reporting every step; whether all of them passed. `seed` makes this
/// boot's nonce.
pub fn exchange(
    link: &impl Link,
    seconds: u32,
    seed: u64,
    report: &mut dyn FnMut(&dyn fmt::Display),
) -> bool {
    let id = link.id();
    let peers = link.max_peers();
    let partner = partner(id, peers);
    let predecessor = predecessor(id, peers);
    let ready = ready_state(seed, id);
    let rw = link.rw_section();
    let needed = SLOT * u64::from(peers);
    let tokens = rw.len() as u64 >= needed;
    if tokens {
        let offset = SLOT * u64::from(id);
        // Published by the state write below, which is a release.
        rw.store_u64(offset as usize, token(ready), Ordering::Relaxed);
        report(&IvshmemOwnToken {
            token: token(ready),
            offset,
        });
    } else {
        report(&IvshmemNoTokenRoom {
            rw_size: rw.len() as u64,
            needed,
        });
    }
    link.set_state(ready);
    report(&IvshmemOwnState {
        state: ready,
        phase: IvshmemPhase::Ready,
    });
    let Some(partner_state) = wait_for_peer(
        link,
        partner,
        IvshmemPhase::Ready,
        seconds,
        &|| false,
        report,
    ) else {
        return false;
    };

    let mut pass = true;
    // Whether our own doorbell proved that our predecessor saw us ready.
    let mut seen_by_predecessor = false;
    match doorbell_vector(link.vectors()) {
        None => report(&IvshmemDoorbellSkipped::NoVectors),
        Some(vector) => {
            let rang_at = link.now();
            link.notify(partner, vector);
            report(&IvshmemRang {
                peer: partner,
                vector,
            });
            if !link.interrupts_enabled() {
                report(&IvshmemDoorbellSkipped::Polling { vector });
            } else if link.wait_for_vector(vector, u64::from(seconds) * 1_000_000) {
                report(&IvshmemVectorFired {
                    vector,
                    after: Millis(link.now() - rang_at),
                });
                // Vector 0 also carries state changes.
                seen_by_predecessor = vector != 0;
            } else {
                report(&IvshmemVectorTimeout { vector, seconds });
                pass = false;
            }
        }
    }

    if tokens {
        let offset = SLOT * u64::from(partner);
        // The Acquire load of the partner's state made its token visible.
        let found = rw.load_u64(offset as usize, Ordering::Relaxed);
        report(&IvshmemPeerToken {
            peer: partner,
            token: found,
            offset,
        });
        let expected = token(partner_state);
        if found == expected {
            // Published by the state write below.
            let seen = SLOT * u64::from(id) + SEEN;
            rw.store_u64(seen as usize, found, Ordering::Relaxed);
        } else {
            report(&IvshmemTokenMismatch {
                peer: partner,
                expected,
            });
            pass = false;
        }
    }

    link.set_state(ready | DONE);
    report(&IvshmemOwnState {
        state: ready | DONE,
        phase: IvshmemPhase::Done,
    });
    if !seen_by_predecessor {
        // Our token in the predecessor's slot outlives its state.
        let seen = (SLOT * u64::from(predecessor) + SEEN) as usize;
        let saw_us = || tokens && rw.load_u64(seen, Ordering::Acquire) == token(ready);
        pass &= wait_for_peer(
            link,
            predecessor,
            IvshmemPhase::Done,
            seconds,
            &saw_us,
            report,
        )
        .is_some();
    }
    pass
}

/// The kernel's device as the app's [`Link`].
struct Live {
    device: &'static Device,
    mode: Mode,
}

impl Link for Live {
    fn id(&self) -> u16 {
        self.device.id()
    }

    fn max_peers(&self) -> u16 {
        self.device.max_peers()
    }

    fn vectors(&self) -> u16 {
        self.device.vectors()
    }

    fn interrupts_enabled(&self) -> bool {
        self.device.interrupts_enabled()
    }

    fn rw_section(&self) -> Window<ReadWrite> {
        self.device.rw_section()
    }

    fn state(&self, peer: u16) -> Option<u32> {
        self.device.state(peer)
    }

    fn set_state(&self, state: u32) {
        self.device.set_state(state)
    }

    fn notify(&self, peer: u16, vector: u16) {
        self.device.notify(peer, vector)
    }

    fn wait_for_vector(&self, vector: u16, micros: u64) -> bool {
        self.device.wait_for_vector(vector, self.mode, micros)
    }

    fn pause(&self, micros: u64) {
        idle::wait(self.mode, micros)
    }

    fn now(&self) -> u64 {
        time::micros_since_boot()
    }
}

/// Prints where `device`'s sections are, enables its interrupts (interrupt
/// mode) and runs the handshake; whether it passed.
pub fn run(device: &'static Device, config: &dyn ConfigAccess, command_line: &CommandLine) -> bool {
    let sections = device.sections();
    let range = |region: crate::ivshmem::layout::Region| MemoryRange {
        address: region.address,
        size: region.size,
    };
    let first_output = sections.output_section(0).expect("at least one peer");
    kprintln!(
        "{}",
        IvshmemSections {
            state_table: range(sections.state_table()),
            rw_section: range(sections.rw_section()),
            output_sections: first_output.address,
            output_section_size: first_output.size,
            peers: sections.max_peers(),
        }
    );
    if command_line.mode == Mode::Interrupt
        && device.vectors() > 0
        && !device.enable_interrupts(config)
    {
        warn!("ivshmem: cannot enable interrupts; polling instead");
    }
    let link = Live {
        device,
        mode: command_line.mode,
    };
    exchange(
        &link,
        command_line.link_timeout,
        time::micros_since_boot(),
        &mut |line| kprintln!("{line}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ivshmem::Kind;
    use crate::ivshmem::control::Control;
    use crate::ivshmem::layout::Region;
    use crate::ivshmem::registers::fake::FakeRegisters;
    use std::cell::{Cell, RefCell};
    use std::string::{String, ToString};
    use std::vec::Vec;
    use std::{format, vec};

    /// A writable window over a fresh (leaked) buffer of `size` bytes.
    fn memory(size: usize) -> Window<ReadWrite> {
        let buffer = vec![0u64; size.div_ceil(8)].leak();
        // SAFETY: the leaked buffer lives for ever and nothing else covers it.
        unsafe {
            Window::new_writable(Region {
                address: buffer.as_mut_ptr() as u64,
                size: size as u64,
            })
        }
    }

    /// A device of `kind` over fake registers and memory, where the other
    /// peers are played by the test: it seeds their states and tokens, and
    /// `script` changes a peer's state on each pause.
    struct Fake {
        control: Control<FakeRegisters>,
        id: u16,
        max_peers: u16,
        vectors: u16,
        interrupts: bool,
        /// Whether our vector fires when waited for.
        fires: bool,
        table: Window<ReadWrite>,
        rw: Window<ReadWrite>,
        clock: Cell<u64>,
        script: RefCell<Vec<(u16, u32)>>,
    }

    impl Fake {
        fn new(kind: Kind, id: u16, max_peers: u16, vectors: u16, rw_size: usize) -> Self {
            let table = memory(0x1000);
            let registers = FakeRegisters::new(u32::from(id), u32::from(max_peers));
            let emulated_table = (kind != Kind::V2).then_some(table);
            Self {
                control: Control::new(kind, id, max_peers, registers, emulated_table),
                id,
                max_peers,
                vectors,
                interrupts: vectors > 0,
                fires: true,
                table,
                rw: memory(rw_size),
                clock: Cell::new(0),
                script: RefCell::default(),
            }
        }

        /// `peer` is ready (and done, if `done`), with a matching token.
        fn peer(self, peer: u16, done: bool) -> Self {
            let ready = ready_state(77, peer);
            let state = if done { ready | DONE } else { ready };
            self.table
                .store_u32(4 * usize::from(peer), state, Ordering::Relaxed);
            if self.has_slots() {
                self.rw
                    .store_u64(16 * usize::from(peer), token(ready), Ordering::Relaxed);
            }
            self
        }

        fn has_slots(&self) -> bool {
            self.rw.len() >= 16 * usize::from(self.max_peers)
        }

        fn run(&self) -> (bool, Vec<String>) {
            let mut lines = Vec::new();
            let pass = exchange(self, 2, 1234, &mut |line| lines.push(line.to_string()));
            (pass, lines)
        }

        fn own_state(&self) -> u32 {
            self.table
                .load_u32(4 * usize::from(self.id), Ordering::Relaxed)
        }
    }

    impl Link for Fake {
        fn id(&self) -> u16 {
            self.id
        }
        fn max_peers(&self) -> u16 {
            self.max_peers
        }
        fn vectors(&self) -> u16 {
            self.vectors
        }
        fn interrupts_enabled(&self) -> bool {
            self.interrupts
        }
        fn rw_section(&self) -> Window<ReadWrite> {
            self.rw
        }
        fn state(&self, peer: u16) -> Option<u32> {
            (peer < self.max_peers).then(|| {
                self.table
                    .load_u32(4 * usize::from(peer), Ordering::Acquire)
            })
        }
        fn set_state(&self, state: u32) {
            self.control.set_state(state);
            // A real v2 device copies STATE into the table itself.
            self.table
                .store_u32(4 * usize::from(self.id), state, Ordering::Relaxed);
        }
        fn notify(&self, peer: u16, vector: u16) {
            self.control.notify(peer, vector);
        }
        fn wait_for_vector(&self, _vector: u16, micros: u64) -> bool {
            if !self.fires {
                self.clock.set(self.clock.get() + micros);
            }
            self.fires
        }
        fn pause(&self, micros: u64) {
            self.clock.set(self.clock.get() + micros);
            if !self.script.borrow().is_empty() {
                let (peer, state) = self.script.borrow_mut().remove(0);
                self.table
                    .store_u32(4 * usize::from(peer), state, Ordering::Relaxed);
            }
        }
        fn now(&self) -> u64 {
            self.clock.get()
        }
    }

    #[test]
    fn peers_ring_the_next_and_wait_for_the_previous() {
        assert_eq!((partner(0, 2), predecessor(0, 2)), (1, 1));
        assert_eq!((partner(1, 2), predecessor(1, 2)), (0, 0));
        assert_eq!((partner(2, 3), predecessor(2, 3)), (0, 1));
        assert_eq!((partner(0, 3), predecessor(0, 3)), (1, 2));
        assert_eq!(predecessor(0, u16::MAX), u16::MAX - 1);
        assert_eq!(
            [0, 1, 2, 32].map(doorbell_vector),
            [None, Some(0), Some(1), Some(1)]
        );
    }

    #[test]
    fn states_and_tokens_carry_a_nonce() {
        for (seed, id) in [(0, 0), (1, 1), (u64::MAX, 7), (123_456_789, 65_535)] {
            let ready = ready_state(seed, id);
            assert!(reached(ready, IvshmemPhase::Ready));
            assert!(!reached(ready, IvshmemPhase::Done));
            assert!(reached(ready | DONE, IvshmemPhase::Done));
            assert_eq!(token(ready) >> 32, TOKEN_MAGIC);
            assert_eq!(token(ready | DONE), token(ready), "done keeps the token");
        }
        assert_ne!(ready_state(5, 0), ready_state(5, 1), "IDs differ");
        assert_ne!(ready_state(5, 0), ready_state(6, 0), "boots differ");
        assert!(
            !reached(4, IvshmemPhase::Ready),
            "ivshmem-net's RUN is not ready"
        );
    }

    #[test]
    fn two_peers_on_a_v2_device_with_two_vectors() {
        let fake = Fake::new(Kind::V2, 0, 2, 2, 0x1000).peer(1, false);
        let (pass, lines) = fake.run();
        assert!(pass, "{lines:#?}");
        let ready = ready_state(1234, 0);
        let partner_token = token(ready_state(77, 1));
        assert_eq!(
            lines,
            [
                format!(
                    "ivshmem: our token {:#018x} at R/W offset 0x0",
                    token(ready)
                ),
                format!("ivshmem: our state {ready:#010x} (ready)"),
                format!(
                    "ivshmem: peer 1 ready (state {:#010x}) after 0.000 ms",
                    ready_state(77, 1)
                ),
                "ivshmem: rang peer 1 vector 1".into(),
                "ivshmem: vector 1 fired after 0.000 ms".into(),
                format!("ivshmem: peer 1's token {partner_token:#018x} at R/W offset 0x10"),
                format!("ivshmem: our state {:#010x} (done)", ready | DONE),
            ]
        );
        assert_eq!(
            *fake.control.registers().writes.borrow(),
            [(0x10, ready), (0x0c, 0x0001_0001), (0x10, ready | DONE)],
            "STATE, DOORBELL to peer 1 vector 1, STATE"
        );
        assert_eq!(fake.rw.load_u64(0, Ordering::Relaxed), token(ready));
        assert_eq!(
            fake.rw.load_u64(8, Ordering::Relaxed),
            partner_token,
            "what we saw"
        );
    }

    #[test]
    fn three_peers_polling_wait_for_the_predecessor_to_be_done() {
        let mut fake = Fake::new(Kind::V2, 1, 3, 2, 0x1000)
            .peer(2, false)
            .peer(0, false);
        fake.interrupts = false;
        fake.script
            .borrow_mut()
            .push((0, ready_state(77, 0) | DONE));
        let (pass, lines) = fake.run();
        assert!(pass, "{lines:#?}");
        assert!(lines.contains(&"ivshmem: rang peer 2 vector 1".into()));
        assert!(lines.contains(&"ivshmem: polling, vector 1 not awaited".into()));
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("ivshmem: peer 0 done (state ")
        );
        assert_eq!(
            fake.control.registers().writes.borrow()[1],
            (0x0c, 0x0002_0001)
        );
    }

    #[test]
    fn with_one_vector_vector_0_proves_nothing() {
        let fake = Fake::new(Kind::V2, 1, 2, 1, 0x1000).peer(0, true);
        let (pass, lines) = fake.run();
        assert!(pass, "{lines:#?}");
        assert!(lines.contains(&"ivshmem: rang peer 0 vector 0".into()));
        assert!(lines.contains(&"ivshmem: vector 0 fired after 0.000 ms".into()));
        assert!(lines.last().unwrap().starts_with("ivshmem: peer 0 done"));
    }

    #[test]
    fn plain_without_room_for_tokens_relies_on_states() {
        let fake = Fake::new(Kind::Plain, 0, 2, 0, 0x10).peer(1, false);
        let done = ready_state(77, 1) | DONE;
        fake.script.borrow_mut().push((1, done));
        let (pass, lines) = fake.run();
        assert!(pass, "{lines:#?}");
        assert_eq!(
            lines[0],
            "ivshmem: no room for tokens: R/W section of 0x10 bytes, 0x20 needed"
        );
        assert!(lines.contains(&"ivshmem: no vectors, no doorbells".into()));
        assert_eq!(
            lines.last().unwrap(),
            &format!("ivshmem: peer 1 done (state {done:#010x}) after 5.000 ms")
        );
        assert!(fake.control.registers().writes.borrow().is_empty());
        assert_eq!(fake.own_state(), ready_state(1234, 0) | DONE);
        assert_eq!(fake.rw.load_u64(0, Ordering::Relaxed), 0, "no tokens");
    }

    #[test]
    fn a_peer_that_left_is_done_if_its_slot_says_it_saw_us() {
        // Peer 1 saw our token and left: its state reads 0 again.
        let fake = Fake::new(Kind::Plain, 0, 2, 0, 0x1000).peer(1, false);
        fake.script.borrow_mut().push((1, 0));
        fake.rw
            .store_u64(16 + 8, token(ready_state(1234, 0)), Ordering::Relaxed);
        let (pass, lines) = fake.run();
        assert!(pass, "{lines:#?}");
        assert!(
            lines
                .last()
                .unwrap()
                .starts_with("ivshmem: peer 1 done (state ")
        );

        // Without that proof, a peer that left after being ready is not done.
        let fake = Fake::new(Kind::Plain, 0, 2, 0, 0x1000).peer(1, false);
        fake.script.borrow_mut().push((1, 0));
        let (pass, lines) = fake.run();
        assert!(!pass);
        assert_eq!(lines.last().unwrap(), "ivshmem: peer 1 not done within 2 s");
    }

    #[test]
    fn a_stale_token_fails() {
        let fake = Fake::new(Kind::V2, 0, 2, 2, 0x1000).peer(1, false);
        fake.rw
            .store_u64(16, token(ready_state(76, 1)), Ordering::Relaxed);
        let (pass, lines) = fake.run();
        assert!(!pass);
        assert!(lines.contains(&format!(
            "ivshmem: peer 1's token should be {:#018x}",
            token(ready_state(77, 1))
        )));
    }

    #[test]
    fn a_silent_peer_or_vector_times_out() {
        let fake = Fake::new(Kind::V2, 0, 2, 2, 0x1000);
        let (pass, lines) = fake.run();
        assert!(!pass);
        assert_eq!(
            lines.last().unwrap(),
            "ivshmem: peer 1 not ready within 2 s"
        );
        assert_eq!(
            fake.control.registers().writes.borrow().len(),
            1,
            "no doorbell before the partner is ready"
        );

        let mut fake = Fake::new(Kind::V2, 0, 2, 2, 0x1000).peer(1, true);
        fake.fires = false;
        let (pass, lines) = fake.run();
        assert!(!pass);
        assert!(lines.contains(&"ivshmem: vector 1 did not fire within 2 s".into()));
        assert!(
            lines.last().unwrap().starts_with("ivshmem: peer 1 done"),
            "the handshake still completes"
        );
    }
}
