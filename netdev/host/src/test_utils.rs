//! A scripted peer for tests: drives the other side of a [`HostLink`] at
//! the byte level, the way Linux or Zephyr would, so tests (here and in
//! other crates) can inject frames, collect what the engine sent, and
//! write arbitrary values into the peer's section and state.
//!
//! It trusts the engine (it is test code) but checks what it reads with
//! assertions.
use std::collections::VecDeque;
use std::sync::atomic::Ordering;
use std::vec::Vec;

use crate::host::{HostLink, HostNotifier, HostRegion, HostRegionMut};
use netdev::Layout;
use netdev::State;
use netdev::{Notifier, SharedMemory, SharedMemoryMut};

/// How the scripted peer asks for kicks and picks its descriptors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PeerStyle {
    /// Keeps `avail_event` current after consuming (Linux at NAPI
    /// completion) and never sets `used_event`; takes descriptors off a
    /// free list linked through `next`, most recently completed first
    /// (docs/ivshmem-net.md §5.1, §5.3).
    Linux,
    /// Zephyr: writes `avail_event` after every frame, never `used_event`,
    /// and kicks after every frame; uses descriptors in ring order, chained
    /// through `next` at every reset (§5.4).
    Zephyr,
}

/// The other side of a link, driven step by step by a test.
#[derive(Debug)]
pub struct ScriptedPeer {
    link: HostLink,
    id: u16,
    layout: Layout,
    own: HostRegionMut,
    engine_section: HostRegion,
    notifier: HostNotifier,
    style: PeerStyle,
    /// Our avail.idx.
    next_avail: u16,
    /// Completions of our frames seen so far.
    last_used: u16,
    /// Next free offset in our data area.
    data_head: usize,
    /// Ring entries posted and not yet completed, oldest first.
    posted: VecDeque<u16>,
    /// Next engine avail index to consume.
    last_engine_avail: u16,
    /// Our used.idx for the engine's frames.
    next_used: u16,
    /// Linux style: the head of the descriptor free list.
    free_head: u16,
}

impl ScriptedPeer {
    /// Takes peer `id`'s section of `link`; `None` if it is taken.
    ///
    /// # Panics
    ///
    /// If the section size is not a valid layout.
    pub fn new(link: &HostLink, id: u16, style: PeerStyle) -> Option<Self> {
        let own = link.section_mut(id)?;
        Some(Self {
            link: link.clone(),
            id,
            layout: Layout::new(link.section_size()).expect("layout"),
            own,
            engine_section: link.section(1 - id),
            notifier: link.notifier(id),
            style,
            next_avail: 0,
            last_used: 0,
            data_head: 0,
            posted: VecDeque::new(),
            last_engine_avail: 0,
            next_used: 0,
            free_head: 0,
        })
        .map(|mut peer| {
            peer.chain_descriptors();
            peer
        })
    }

    /// What both drivers do at a reset: `desc[i].next = i + 1`, and (Linux)
    /// the free list starts at descriptor 0.
    fn chain_descriptors(&mut self) {
        let num = self.layout.queue_length();
        for index in 0..num - 1 {
            let offset = self.layout.descriptor(usize::from(index)) + 14;
            self.own.store_u16(offset, index + 1, Ordering::Relaxed);
        }
        self.free_head = 0;
    }

    /// The layout both sections share.
    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Our writable section, for writing arbitrary bytes.
    pub fn section(&self) -> &HostRegionMut {
        &self.own
    }

    /// The engine's section (read-only).
    pub fn engine_section(&self) -> &HostRegion {
        &self.engine_section
    }

    /// Writes our State register (the simulated device interrupts the
    /// engine on vector 0 if it changed).
    pub fn set_state(&self, state: State) {
        self.notifier.set_state(state.to_raw());
    }

    /// The engine's state table entry.
    pub fn engine_state(&self) -> State {
        State::from_raw(self.link.state(1 - self.id))
    }

    /// What a driver does at INIT→READY: zero the section and all indices.
    pub fn initialize(&mut self) {
        self.own.fill_zero(0, self.layout.section_size());
        self.next_avail = 0;
        self.last_used = 0;
        self.data_head = 0;
        self.posted.clear();
        self.last_engine_avail = 0;
        self.next_used = 0;
        self.chain_descriptors();
    }

    /// Zeroes the section, then walks RESET → INIT → READY → RUN alongside
    /// an engine, calling `poll` (which should poll the engine) between
    /// steps.
    pub fn handshake(&mut self, mut poll: impl FnMut()) {
        self.set_state(State::Reset);
        poll();
        self.set_state(State::Init);
        poll();
        self.initialize();
        self.set_state(State::Ready);
        poll();
        self.set_state(State::Run);
        poll();
    }

    /// Posts a raw descriptor: writes `desc[index] = {address, length,
    /// flags}`, the next avail ring slot = `ring_entry`, and publishes
    /// avail.idx. Returns the new avail.idx.
    pub fn post_raw(&mut self, ring_entry: u16, descriptor: Option<(u16, u64, u32, u16)>) -> u16 {
        if let Some((index, address, length, flags)) = descriptor {
            let offset = self.layout.descriptor(usize::from(index));
            self.own
                .store_u32(offset, address as u32, Ordering::Relaxed);
            self.own
                .store_u32(offset + 4, (address >> 32) as u32, Ordering::Relaxed);
            self.own.store_u32(offset + 8, length, Ordering::Relaxed);
            self.own.store_u16(offset + 12, flags, Ordering::Relaxed);
        }
        let slot = self.layout.slot(self.next_avail);
        self.own
            .store_u16(self.layout.avail_ring(slot), ring_entry, Ordering::Relaxed);
        self.posted.push_back(ring_entry);
        self.next_avail = self.next_avail.wrapping_add(1);
        self.own.store_u16(
            self.layout.avail_index(),
            self.next_avail,
            Ordering::Release,
        );
        self.next_avail
    }

    /// Copies `frame` into our data area (wrapping like Linux) and posts it
    /// with the descriptor the style picks: the ring slot (Zephyr) or the
    /// head of the free list (Linux). The caller keeps at most `num`
    /// frames and one data area in flight.
    pub fn post(&mut self, frame: &[u8]) {
        let data_size = self.layout.data_size();
        let size = (frame.len() + 18 + 63) & !63;
        if self.data_head + size > data_size {
            self.data_head = 0;
        }
        let address = self.layout.header_size() + self.data_head;
        self.own.write(address, frame);
        self.data_head += size;
        let index = match self.style {
            PeerStyle::Zephyr => self.layout.slot(self.next_avail) as u16,
            PeerStyle::Linux => {
                // The free list lives in our own section, where a test (the
                // fuzz target) may have written anything: keep the index
                // one of our descriptors.
                let index = self.layout.slot(self.free_head) as u16;
                let next = self.layout.descriptor(usize::from(index)) + 14;
                self.free_head = self.own.load_u16(next, Ordering::Relaxed);
                index
            }
        };
        self.post_raw(index, Some((index, address as u64, frame.len() as u32, 0)));
        if self.style == PeerStyle::Zephyr {
            self.kick();
        }
    }

    /// Rings the engine's doorbell on the data vector 1.
    pub fn kick(&self) {
        self.notifier.notify(1);
    }

    /// How many of our frames the engine has completed since the last
    /// call; asserts that every used element is {id = the ring entry we
    /// posted, len = 1}, in posting order.
    pub fn reclaim(&mut self) -> u16 {
        let used_index = self
            .engine_section
            .load_u16(self.layout.used_index(), Ordering::Acquire);
        let count = used_index.wrapping_sub(self.last_used);
        for _ in 0..count {
            let element = self.layout.used_ring(self.layout.slot(self.last_used));
            let id = self.engine_section.load_u32(element, Ordering::Relaxed);
            let length = self.engine_section.load_u32(element + 4, Ordering::Relaxed);
            assert_eq!(length, 1, "used.len must be 1");
            let posted = self
                .posted
                .pop_front()
                .expect("completion of a posted entry");
            assert_eq!(id, u32::from(posted), "FIFO order");
            if self.style == PeerStyle::Linux && posted < self.layout.queue_length() {
                // Back to the head of the free list.
                let next = self.layout.descriptor(usize::from(posted)) + 14;
                self.own.store_u16(next, self.free_head, Ordering::Relaxed);
                self.free_head = posted;
            }
            self.last_used = self.last_used.wrapping_add(1);
        }
        count
    }

    /// Frames we posted that the engine has not completed.
    pub fn in_flight(&self) -> u16 {
        self.next_avail.wrapping_sub(self.last_used)
    }

    /// Consumes every frame the engine has published, completes each with
    /// len 1 in order, keeps `avail_event` current, and returns the frames.
    pub fn take_transmitted(&mut self) -> Vec<Vec<u8>> {
        let mut frames = Vec::new();
        let avail_index = self
            .engine_section
            .load_u16(self.layout.avail_index(), Ordering::Acquire);
        while self.last_engine_avail != avail_index {
            let slot = self.layout.slot(self.last_engine_avail);
            let index = self
                .engine_section
                .load_u16(self.layout.avail_ring(slot), Ordering::Relaxed);
            assert!(index < self.layout.queue_length());
            let descriptor = self.layout.descriptor(usize::from(index));
            let address = self.engine_section.load_u32(descriptor, Ordering::Relaxed) as usize;
            assert_eq!(
                self.engine_section
                    .load_u32(descriptor + 4, Ordering::Relaxed),
                0
            );
            let length = self
                .engine_section
                .load_u32(descriptor + 8, Ordering::Relaxed) as usize;
            assert_eq!(
                self.engine_section
                    .load_u16(descriptor + 12, Ordering::Relaxed),
                0
            );
            assert!(address >= self.layout.header_size());
            assert!(address + length <= self.layout.section_size());
            let mut frame = std::vec![0; length];
            self.engine_section.read(address, &mut frame);
            frames.push(frame);
            let element = self.layout.used_ring(self.layout.slot(self.next_used));
            self.own
                .store_u32(element, u32::from(index), Ordering::Relaxed);
            self.own.store_u32(element + 4, 1, Ordering::Relaxed);
            self.next_used = self.next_used.wrapping_add(1);
            self.own
                .store_u16(self.layout.used_index(), self.next_used, Ordering::Release);
            self.last_engine_avail = self.last_engine_avail.wrapping_add(1);
            if self.style == PeerStyle::Zephyr {
                self.own.store_u16(
                    self.layout.avail_event(),
                    self.last_engine_avail,
                    Ordering::Relaxed,
                );
                self.kick();
            }
        }
        if self.style == PeerStyle::Linux {
            self.own.store_u16(
                self.layout.avail_event(),
                self.last_engine_avail,
                Ordering::Relaxed,
            );
        }
        frames
    }
}
