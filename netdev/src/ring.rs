//! Ring indices, descriptors, event indexes and barriers, all in one place
//! (docs/ivshmem-net.md §3.2, §3.5–§3.7, §5).
//!
//! Our transmit queue lives in our section (descriptors, avail ring,
//! `used_event`); its used ring and `avail_event` live in the peer's
//! section. Our receive queue is the mirror image. The structures here keep a
//! trusted shadow of everything we publish (producer index, buffer offsets)
//! and read every peer-written field exactly once, into a local, before
//! validating and using it.
//!
//! Barriers (§3.7):
//!
//! * producer: descriptor and ring entry, then `Release` store of the index;
//! * consumer: `Acquire` load of the peer's index, then entries and payload;
//! * before reading the peer's event index after publishing one of ours:
//!   `fence(SeqCst)` (Linux `virt_mb`), so the peer either sees our index or
//!   we see its new event index;
//! * before doorbell and State writes: `fence(SeqCst)` (in the engine).
#![forbid(unsafe_code)]

use alloc::vec;
use alloc::vec::Vec;
use core::sync::atomic::{Ordering, fence};

use crate::layout::{Layout, VRING_ALIGN};
use crate::memory::{SharedMemory, SharedMemoryMut};
use crate::statistics::{PeerEvidence, ProtocolErrors};

/// `vring_need_event(event, new, old)`: whether moving an index from `old` to
/// `new` passes `event` (§3.6).
pub const fn need_event(event: u16, new: u16, old: u16) -> bool {
    new.wrapping_sub(event).wrapping_sub(1) < new.wrapping_sub(old)
}

/// The ring state is inconsistent beyond repair; the link must be reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Desynchronized;

/// Bytes a buffer of `length` bytes occupies in the data area: cache-line
/// aligned, as both reference senders do (§5.6). The sizing is private to
/// the sender.
const fn buffer_size(length: usize) -> usize {
    (length + VRING_ALIGN - 1) & !(VRING_ALIGN - 1)
}

/// A place in our data area for one outgoing frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Allocation {
    /// Offset within the data area (add H for the section offset).
    pub offset: usize,
    /// Bytes consumed from the ring buffer, including skipped tail space.
    charge: usize,
    /// Bytes available to the frame at `offset`.
    pub capacity: usize,
}

/// The transmit side: producer of our avail ring, consumer of the used ring
/// the peer writes into its section.
///
/// Publication is batched: [`publish`](Self::publish) writes a descriptor
/// and its ring entry, [`flush`](Self::flush) makes everything written so
/// far visible with one `avail.idx` store, and the doorbell is decided once
/// per flush ([`should_notify`](Self::should_notify), §3.6).
#[derive(Debug)]
pub(crate) struct TransmitRing {
    layout: Layout,
    /// The next avail index we will write (free running); descriptor index
    /// = slot of it. Ahead of `published` by the frames written but not
    /// yet flushed.
    next_avail: u16,
    /// The `avail.idx` value last stored for the peer to see.
    published: u16,
    /// The next completion we expect; `next_avail - last_used` frames are
    /// in flight.
    last_used: u16,
    /// `next_avail` when we last decided whether to kick.
    notified_at: u16,
    /// Next allocation offset in the data area.
    head: usize,
    /// Bytes of the data area held by frames in flight.
    in_use: usize,
    /// Per descriptor: the ring-buffer bytes its frame holds.
    charges: Vec<u32>,
    /// Frames retired by completions since the ring was created (never
    /// cleared: the engine compares it between polls to see progress).
    retired: u64,
}

impl TransmitRing {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            next_avail: 0,
            published: 0,
            last_used: 0,
            notified_at: 0,
            head: 0,
            in_use: 0,
            charges: vec![0; usize::from(layout.queue_length())],
            retired: 0,
        }
    }

    /// Forgets all ring state (link reset, INIT→READY, §2.5).
    pub fn clear(&mut self) {
        self.next_avail = 0;
        self.published = 0;
        self.last_used = 0;
        self.notified_at = 0;
        self.head = 0;
        self.in_use = 0;
        self.charges.fill(0);
    }

    /// Frames written (published or about to be at the next flush) and not
    /// yet completed.
    pub fn in_flight(&self) -> u16 {
        self.next_avail.wrapping_sub(self.last_used)
    }

    /// Frames retired by completions so far (a running count).
    pub fn retired(&self) -> u64 {
        self.retired
    }

    /// Finds space for a frame of `length` bytes (1..=data size), if a
    /// descriptor and enough contiguous space are free. Takes nothing yet.
    pub fn allocate(&self, length: usize) -> Option<Allocation> {
        let data_size = self.layout.data_size();
        if length == 0 || length > data_size || self.in_flight() >= self.layout.queue_length() {
            return None;
        }
        let size = buffer_size(length).min(data_size);
        let (offset, charge) = if self.head + size <= data_size {
            (self.head, size)
        } else {
            // Skip the tail of the data area; the skipped bytes are charged to
            // this frame and come back with its completion.
            (0, data_size - self.head + size)
        };
        if self.in_use + charge > data_size {
            return None;
        }
        Some(Allocation {
            offset,
            charge,
            capacity: size,
        })
    }

    /// Adds a frame of `length` bytes already written at `allocation` to
    /// the ring (§5.1 steps 5–6, §5.4 step 5): descriptor {addr = H +
    /// offset, len, flags 0} and avail ring entry. The peer sees it at the
    /// next [`flush`](Self::flush).
    pub fn publish<W: SharedMemoryMut>(&mut self, own: &W, allocation: Allocation, length: usize) {
        let layout = &self.layout;
        let descriptor_index = layout.slot(self.next_avail);
        let descriptor = layout.descriptor(descriptor_index);
        // H + offset < section size ≤ u32::MAX (checked by Layout::new).
        let address = (layout.header_size() + allocation.offset) as u32;
        own.store_u32(descriptor, address, Ordering::Relaxed);
        own.store_u32(descriptor + 4, 0, Ordering::Relaxed);
        own.store_u32(descriptor + 8, length as u32, Ordering::Relaxed);
        own.store_u16(descriptor + 12, 0, Ordering::Relaxed);
        own.store_u16(descriptor + 14, 0, Ordering::Relaxed);
        own.store_u16(
            layout.avail_ring(descriptor_index),
            descriptor_index as u16,
            Ordering::Relaxed,
        );
        self.next_avail = self.next_avail.wrapping_add(1);
        self.charges[descriptor_index] = allocation.charge as u32;
        self.in_use += allocation.charge;
        self.head = allocation.offset + allocation.capacity;
    }

    /// Makes every frame written since the last flush visible: one
    /// `Release` store of `avail.idx` (the payloads, descriptors and ring
    /// entries before it). Returns whether anything was published.
    pub fn flush<W: SharedMemoryMut>(&mut self, own: &W) -> bool {
        if self.published == self.next_avail {
            return false;
        }
        own.store_u16(
            self.layout.avail_index(),
            self.next_avail,
            Ordering::Release,
        );
        self.published = self.next_avail;
        true
    }

    /// Whether to ring the peer's doorbell for what we published since the
    /// last decision, from the peer's `avail_event` (§3.6). The caller
    /// issues a full barrier between the [`flush`](Self::flush) and this
    /// (the engine's `Link::flush` does, once for both rings).
    pub fn should_notify<M: SharedMemory>(&mut self, peer: &M) -> bool {
        if self.published == self.notified_at {
            return false;
        }
        let event = peer.load_u16(self.layout.avail_event(), Ordering::Relaxed);
        let notify = need_event(event, self.published, self.notified_at);
        self.notified_at = self.published;
        notify
    }

    /// Asks the peer to kick us on its next completion: `used_event =
    /// last_used`, then a full barrier so a following reclaim sees any
    /// completion that raced with the store (§3.6, §5.1 step 4).
    pub fn request_completion_notification<W: SharedMemoryMut>(&self, own: &W) {
        own.store_u16(self.layout.used_event(), self.last_used, Ordering::Relaxed);
        fence(Ordering::SeqCst);
    }

    /// Takes back completed buffers strictly in FIFO order (§5.3). Work is
    /// bounded by the frames in flight (≤ num).
    ///
    /// A used element with the wrong id or a `len` other than 1 is counted
    /// and still retires the oldest frame: the order is ours, not the peer's.
    /// A `used.idx` ahead of what we published cannot be reconciled.
    pub fn reclaim<M: SharedMemory>(
        &mut self,
        peer: &M,
        errors: &mut ProtocolErrors,
    ) -> Result<u16, Desynchronized> {
        let layout = &self.layout;
        // Acquire: the used elements are read after the index.
        let used_index = peer.load_u16(layout.used_index(), Ordering::Acquire);
        let completed = used_index.wrapping_sub(self.last_used);
        // Only published frames can be completed: a peer that "completes" a
        // frame we are still writing would have us reuse its buffer.
        if completed > self.published.wrapping_sub(self.last_used) {
            errors.used_index_ahead += 1;
            return Err(Desynchronized);
        }
        for _ in 0..completed {
            let slot = layout.slot(self.last_used);
            let element = layout.used_ring(slot);
            let id = peer.load_u32(element, Ordering::Relaxed);
            let length = peer.load_u32(element + 4, Ordering::Relaxed);
            if id as usize != slot {
                errors.used_id += 1;
            }
            if length != 1 {
                errors.used_length += 1;
            }
            self.in_use -= self.charges[slot] as usize;
            self.charges[slot] = 0;
            self.last_used = self.last_used.wrapping_add(1);
        }
        self.retired += u64::from(completed);
        if self.in_use == 0 {
            self.head = 0;
        }
        Ok(completed)
    }
}

/// A received descriptor after validation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// A frame of this many bytes was copied into the caller's buffer.
    Frame(usize),
    /// The entry was invalid; it was consumed, completed and counted.
    Rejected,
}

/// The receive side: consumer of the peer's avail ring, producer of the
/// used ring in our section.
///
/// Consumption is batched: the peer's `avail.idx` is read once for all the
/// entries it makes available ([`pending`](Self::pending) reads it again
/// only when those are consumed, after telling the peer where to kick us),
/// completions become visible with one `used.idx` store per
/// [`flush`](Self::flush), and the completion doorbell is decided once per
/// flush.
#[derive(Debug)]
pub(crate) struct ReceiveRing {
    layout: Layout,
    /// The next peer avail index we will read.
    last_avail: u16,
    /// Entries the last read of the peer's `avail.idx` showed that we have
    /// not consumed yet.
    known_available: u16,
    /// The next used index we will write (free running); ahead of
    /// `published` by the completions not yet flushed.
    next_used: u16,
    /// The `used.idx` value last stored for the peer to see.
    published: u16,
    /// `published` when we last decided whether to kick.
    notified_at: u16,
    /// The `avail_event` value last stored (our section starts zeroed).
    announced: u16,
    /// Whether that store still needs a full barrier before we look at the
    /// peer's index again.
    announce_unfenced: bool,
}

impl ReceiveRing {
    pub fn new(layout: Layout) -> Self {
        Self {
            layout,
            last_avail: 0,
            known_available: 0,
            next_used: 0,
            published: 0,
            notified_at: 0,
            announced: 0,
            announce_unfenced: false,
        }
    }

    /// Forgets all ring state (§2.5).
    pub fn clear(&mut self) {
        self.last_avail = 0;
        self.known_available = 0;
        self.next_used = 0;
        self.published = 0;
        self.notified_at = 0;
        self.announced = 0;
        self.announce_unfenced = false;
    }

    /// Frames the peer has made available that we have not consumed. While
    /// entries from the last read of `avail.idx` remain, that count; once
    /// they are consumed, the idle handshake of §3.6: store our
    /// `avail_event` (kick me when you publish the next index), full
    /// barrier, read `avail.idx` again. Checking again while idle costs one
    /// load: the store and the barrier happen once per position.
    pub fn pending<M: SharedMemory, W: SharedMemoryMut>(
        &mut self,
        peer: &M,
        own: &W,
        errors: &mut ProtocolErrors,
    ) -> Result<u16, Desynchronized> {
        if self.known_available > 0 {
            return Ok(self.known_available);
        }
        self.announce_position(own);
        if self.announce_unfenced {
            // The avail_event store must be visible before we look at the
            // peer's index again ("store, fence, re-check", §3.7): a
            // store-load ordering only a full barrier gives.
            fence(Ordering::SeqCst);
            self.announce_unfenced = false;
        }
        // Acquire: the ring entry, descriptor and payload are read after it.
        let avail_index = peer.load_u16(self.layout.avail_index(), Ordering::Acquire);
        let pending = avail_index.wrapping_sub(self.last_avail);
        if pending > self.layout.queue_length() {
            errors.avail_index_ahead += 1;
            return Err(Desynchronized);
        }
        self.known_available = pending;
        Ok(pending)
    }

    /// Whether entries from the last read of `avail.idx` remain.
    pub fn has_known_entries(&self) -> bool {
        self.known_available > 0
    }

    /// Tells the peer where we are: `avail_event` = the next index we will
    /// read ("kick me when you publish it", §3.6). [`pending`](Self::pending)
    /// does it again, with the barrier, before it looks for more.
    pub fn announce_position<W: SharedMemoryMut>(&mut self, own: &W) {
        if self.announced == self.last_avail {
            return;
        }
        own.store_u16(
            self.layout.avail_event(),
            self.last_avail,
            Ordering::Relaxed,
        );
        self.announced = self.last_avail;
        self.announce_unfenced = true;
    }

    /// Consumes the next available entry (the caller saw `pending() > 0`):
    /// reads the ring entry and the descriptor once each, validates them
    /// (§3.5), copies the frame into `buffer` (which must hold
    /// [`Layout::max_frame_length`] bytes) and completes the entry in order
    /// with len 1 (§5.2, §5.5); the peer sees the completion at the next
    /// [`flush`](Self::flush).
    ///
    /// A frame inside the data area but longer than
    /// [`Layout::max_frame_length`] is rejected: no conforming sender makes
    /// one (§11), and accepting it would let a peer make us copy up to a
    /// whole data area per entry.
    pub fn consume<M: SharedMemory, W: SharedMemoryMut>(
        &mut self,
        peer: &M,
        own: &W,
        buffer: &mut [u8],
        errors: &mut ProtocolErrors,
        evidence: &mut PeerEvidence,
    ) -> Received {
        let layout = &self.layout;
        let slot = layout.slot(self.last_avail);
        let descriptor_index = peer.load_u16(layout.avail_ring(slot), Ordering::Relaxed);
        let received = if descriptor_index >= layout.queue_length() {
            errors.descriptor_index += 1;
            Received::Rejected
        } else {
            let descriptor = layout.descriptor(usize::from(descriptor_index));
            let address_low = peer.load_u32(descriptor, Ordering::Relaxed);
            let address_high = peer.load_u32(descriptor + 4, Ordering::Relaxed);
            let length = peer.load_u32(descriptor + 8, Ordering::Relaxed);
            let flags = peer.load_u16(descriptor + 12, Ordering::Relaxed);
            let address = u64::from(address_high) << 32 | u64::from(address_low);
            let section_size = layout.section_size() as u64;
            let length64 = u64::from(length);
            if flags != 0 {
                errors.descriptor_flags += 1;
                Received::Rejected
            } else if length == 0
                || address < layout.header_size() as u64
                || address >= section_size
                || length64 > section_size - address
            {
                errors.descriptor_range += 1;
                Received::Rejected
            } else if length as usize > layout.max_frame_length().min(buffer.len()) {
                errors.frame_too_long += 1;
                Received::Rejected
            } else {
                let length = length as usize;
                peer.read(address as usize, &mut buffer[..length]);
                // The sender's bookkeeping, read once for the evidence
                // only (§3.5, §12).
                let next = peer.load_u16(descriptor + 14, Ordering::Relaxed);
                let index = usize::from(descriptor_index);
                if index != slot {
                    evidence.descriptors_reused += 1;
                } else if index + 1 < usize::from(layout.queue_length()) {
                    if usize::from(next) == index + 1 {
                        evidence.descriptors_chained += 1;
                    } else if next == 0 {
                        evidence.descriptors_unlinked += 1;
                    }
                }
                Received::Frame(length)
            }
        };
        // Complete in order, len 1, even for a rejected entry, so neither side
        // stalls (§3.5; Linux would stall here, §7).
        let element = layout.used_ring(layout.slot(self.next_used));
        own.store_u32(element, u32::from(descriptor_index), Ordering::Relaxed);
        own.store_u32(element + 4, 1, Ordering::Relaxed);
        self.next_used = self.next_used.wrapping_add(1);
        self.last_avail = self.last_avail.wrapping_add(1);
        self.known_available = self.known_available.saturating_sub(1);
        received
    }

    /// Makes the completions since the last flush visible: one `Release`
    /// store of `used.idx` (the used elements before it). Returns whether
    /// anything was published.
    pub fn flush<W: SharedMemoryMut>(&mut self, own: &W) -> bool {
        if self.published == self.next_used {
            return false;
        }
        own.store_u16(self.layout.used_index(), self.next_used, Ordering::Release);
        self.published = self.next_used;
        true
    }

    /// Whether to ring the peer's doorbell for the completions published
    /// since the last decision, from the peer's `used_event` (§3.6); after a
    /// full barrier, as for [`TransmitRing::should_notify`].
    pub fn should_notify<M: SharedMemory>(
        &mut self,
        peer: &M,
        evidence: &mut PeerEvidence,
    ) -> bool {
        if self.published == self.notified_at {
            return false;
        }
        let event = peer.load_u16(self.layout.used_event(), Ordering::Relaxed);
        if event != 0 {
            evidence.used_event_set += 1;
        }
        let notify = need_event(event, self.published, self.notified_at);
        self.notified_at = self.published;
        notify
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn need_event_matches_virtio() {
        // Passing the event index exactly.
        assert!(need_event(0, 1, 0));
        assert!(!need_event(1, 1, 0));
        assert!(need_event(5, 10, 0));
        assert!(!need_event(10, 10, 0));
        // Wrapping.
        assert!(need_event(0xFFFF, 1, 0xFFFE));
        assert!(need_event(0, 1, 0xFFFF));
        assert!(!need_event(2, 1, 0xFFFF));
        // No movement never notifies.
        assert!(!need_event(7, 7, 7));
    }

    #[test]
    fn buffer_sizes() {
        assert_eq!(buffer_size(1), 64);
        assert_eq!(buffer_size(64), 64);
        assert_eq!(buffer_size(1514), 1536);
    }

    /// Plain memory for single-threaded unit tests of the rings.
    struct Memory(core::cell::RefCell<Vec<u8>>);

    impl Memory {
        fn new(length: usize) -> Self {
            Self(core::cell::RefCell::new(vec![0; length]))
        }
    }

    impl SharedMemory for Memory {
        fn len(&self) -> usize {
            self.0.borrow().len()
        }
        fn load_u16(&self, offset: usize, _: Ordering) -> u16 {
            let bytes = self.0.borrow();
            u16::from_le_bytes([bytes[offset], bytes[offset + 1]])
        }
        fn load_u32(&self, offset: usize, _: Ordering) -> u32 {
            let mut value = [0; 4];
            value.copy_from_slice(&self.0.borrow()[offset..offset + 4]);
            u32::from_le_bytes(value)
        }
        fn read(&self, offset: usize, destination: &mut [u8]) {
            destination.copy_from_slice(&self.0.borrow()[offset..offset + destination.len()]);
        }
    }

    impl SharedMemoryMut for Memory {
        fn store_u16(&self, offset: usize, value: u16, _: Ordering) {
            self.write(offset, &value.to_le_bytes());
        }
        fn store_u32(&self, offset: usize, value: u32, _: Ordering) {
            self.write(offset, &value.to_le_bytes());
        }
        fn write(&self, offset: usize, source: &[u8]) {
            self.0.borrow_mut()[offset..offset + source.len()].copy_from_slice(source);
        }
        fn fill_zero(&self, offset: usize, length: usize) {
            self.0.borrow_mut()[offset..offset + length].fill(0);
        }
        fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8] {
            &mut self.0.get_mut()[offset..offset + length]
        }
    }

    /// Completes the oldest frame in flight, as a peer would: the next used
    /// element {id, len 1} in the peer's section, then its `used.idx`.
    fn complete(peer: &Memory, layout: Layout, used_index: &mut u16, id: u32) {
        let element = layout.used_ring(layout.slot(*used_index));
        peer.store_u32(element, id, Ordering::Relaxed);
        peer.store_u32(element + 4, 1, Ordering::Relaxed);
        *used_index = used_index.wrapping_add(1);
        peer.store_u16(layout.used_index(), *used_index, Ordering::Release);
    }

    #[test]
    fn allocation_wraps_and_charges_the_skipped_tail() {
        let layout = Layout::new(0x2000).unwrap(); // data 0x1900 = 6400
        let own = Memory::new(0x2000);
        let peer = Memory::new(0x2000);
        let mut errors = ProtocolErrors::default();
        let mut ring = TransmitRing::new(layout);
        // 4 × 1536 = 6144; 256 bytes left at the end.
        for expected in [0, 1536, 3072, 4608] {
            let allocation = ring.allocate(1514).unwrap();
            assert_eq!((allocation.offset, allocation.charge), (expected, 1536));
            ring.publish(&own, allocation, 1514);
        }
        assert_eq!(ring.in_flight(), 4);
        assert_eq!(own.load_u16(layout.avail_index(), Ordering::Relaxed), 0);
        assert!(ring.flush(&own), "one index store for the batch");
        assert_eq!(own.load_u16(layout.avail_index(), Ordering::Relaxed), 4);
        assert!(!ring.flush(&own));
        assert!(ring.allocate(1514).is_none(), "no room before a completion");
        assert_eq!(ring.allocate(200).unwrap().offset, 6144);
        // The peer retires the oldest frame: 1536 bytes at the front are free.
        let mut used_index = 0;
        complete(&peer, layout, &mut used_index, 0);
        assert_eq!(ring.reclaim(&peer, &mut errors), Ok(1));
        assert_eq!((ring.in_flight(), ring.retired()), (3, 1));
        let wrapped = ring.allocate(1514).unwrap();
        assert_eq!(wrapped.offset, 0);
        assert_eq!(wrapped.charge, 256 + 1536, "the skipped tail is charged");
        assert!(ring.allocate(1537).is_none());
        ring.publish(&own, wrapped, 1514);
        // Four published, one retired: the peer cannot complete a fifth
        // frame, which it cannot see yet.
        peer.store_u16(layout.used_index(), 5, Ordering::Release);
        assert_eq!(ring.reclaim(&peer, &mut errors), Err(Desynchronized));
        assert_eq!(errors.used_index_ahead, 1);
        peer.store_u16(layout.used_index(), used_index, Ordering::Release);
        errors = ProtocolErrors::default();
        ring.flush(&own);
        // Retiring everything returns all bytes, and the head restarts at 0.
        for id in 1..5 {
            complete(&peer, layout, &mut used_index, id);
        }
        assert_eq!(ring.reclaim(&peer, &mut errors), Ok(4));
        assert_eq!(ring.in_flight(), 0);
        assert_eq!(ring.allocate(6400).unwrap().offset, 0);
        assert_eq!(errors, ProtocolErrors::default());
        // The descriptor of the wrapped frame points at the data area's start.
        let descriptor = layout.descriptor(4);
        assert_eq!(
            own.load_u32(descriptor, Ordering::Relaxed) as usize,
            layout.header_size()
        );
        assert_eq!(own.load_u32(descriptor + 8, Ordering::Relaxed), 1514);
        assert_eq!(own.load_u16(layout.avail_index(), Ordering::Relaxed), 5);
    }
}
