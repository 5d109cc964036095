//! Counting what IPv4 reassembly drops: a bookkeeping mirror of smoltcp's
//! reassembly slots.
//!
//! smoltcp reassembles fragmented IPv4 datagrams in a fixed set of slots
//! (`REASSEMBLY_BUFFER_COUNT`, one per datagram being put together, keyed by
//! identification, source, destination and protocol), frees a slot when its
//! datagram completes or when its timeout passes (counted from its first
//! fragment), and drops a fragment that finds no slot. It counts none of
//! this. [`ReassemblyWatch`] sees every frame before smoltcp does (it sits
//! in the [`Port`](super::port::Port) middleware) and replays the same
//! decisions on the keys alone, with smoltcp's own [`Assembler`] for the
//! byte ranges, so it knows when a datagram completes, times out or is
//! refused a slot. It holds no payload: it is not a second reassembler, and
//! its memory is fixed (one small record per slot).
//!
//! The replay follows smoltcp 0.14 `process_ethernet` and `process_ipv4`:
//! a frame counts if it is addressed to our MAC (or broadcast or multicast),
//! carries a well-formed IPv4 packet with a correct header checksum and a
//! source that is unicast (or unspecified), and is a fragment (more
//! fragments set, or an offset). Expiry uses the same clock and the same
//! `<` comparison as smoltcp's `remove_expired`, at the same moments (the
//! start of each ingress step, with the time smoltcp passes to the device).

use smoltcp::config::REASSEMBLY_BUFFER_COUNT;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::storage::Assembler;
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, Ipv4Address, Ipv4Cidr, Ipv4FragKey,
    Ipv4Packet, Ipv4Repr,
};

/// What happened to fragmented IPv4 datagrams (counted since boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReassemblyCounters {
    /// Datagrams put back together and handed on.
    pub reassembled: u64,
    /// Incomplete datagrams dropped: their timeout passed, or the interface
    /// was rebuilt (link down) while they waited.
    pub incomplete: u64,
    /// Fragments dropped because every slot held another datagram.
    pub no_slot: u64,
}

impl ReassemblyCounters {
    /// What was counted since `earlier` (a snapshot of the same counters).
    pub fn since(&self, earlier: &ReassemblyCounters) -> ReassemblyCounters {
        ReassemblyCounters {
            reassembled: self.reassembled - earlier.reassembled,
            incomplete: self.incomplete - earlier.incomplete,
            no_slot: self.no_slot - earlier.no_slot,
        }
    }
}

/// One of smoltcp's reassembly slots, as far as the keys tell.
#[derive(Debug)]
struct Slot {
    key: Ipv4FragKey,
    expires_at: Instant,
    /// The byte ranges received, as smoltcp's assembler records them.
    ranges: Assembler,
    /// The datagram's payload length, once the last fragment came.
    total: Option<usize>,
}

/// The mirror of smoltcp's reassembly slots (module documentation).
#[derive(Debug)]
pub struct ReassemblyWatch {
    mac: EthernetAddress,
    ipv4: Option<Ipv4Cidr>,
    timeout: Duration,
    slots: [Option<Slot>; REASSEMBLY_BUFFER_COUNT],
    counters: ReassemblyCounters,
}

impl ReassemblyWatch {
    /// A watch for an interface with hardware address `mac`, IPv4 address
    /// `ipv4` and reassembly timeout `timeout` (what
    /// `Interface::set_reassembly_timeout` was given).
    pub fn new(mac: EthernetAddress, ipv4: Option<Ipv4Cidr>, timeout: Duration) -> Self {
        Self {
            mac,
            ipv4,
            timeout,
            slots: core::array::from_fn(|_| None),
            counters: ReassemblyCounters::default(),
        }
    }

    /// The counters.
    pub fn counters(&self) -> ReassemblyCounters {
        self.counters
    }

    /// Slots holding an incomplete datagram.
    pub fn busy_slots(&self) -> usize {
        self.slots.iter().flatten().count()
    }

    /// Frees the slots whose timeout has passed at `now`, counting their
    /// datagrams as incomplete (smoltcp's `remove_expired`).
    pub fn expire(&mut self, now: Instant) {
        for slot in &mut self.slots {
            if slot.as_ref().is_some_and(|slot| slot.expires_at < now) {
                *slot = None;
                self.counters.incomplete += 1;
            }
        }
    }

    /// The interface was rebuilt: smoltcp's slots are gone, with whatever
    /// they held.
    pub fn abandon(&mut self) {
        for slot in &mut self.slots {
            if slot.take().is_some() {
                self.counters.incomplete += 1;
            }
        }
    }

    /// Looks at a frame smoltcp is about to receive at `now`.
    pub fn observe(&mut self, frame: &[u8], now: Instant) {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return;
        };
        let destination = ethernet.dst_addr();
        if ethernet.ethertype() != EthernetProtocol::Ipv4
            || !(destination == self.mac
                || destination.is_broadcast()
                || destination.is_multicast())
        {
            return;
        }
        let Ok(packet) = Ipv4Packet::new_checked(ethernet.payload()) else {
            return;
        };
        if !packet.more_frags() && packet.frag_offset() == 0 {
            return;
        }
        let Ok(repr) = Ipv4Repr::parse(&packet, &ChecksumCapabilities::default()) else {
            return;
        };
        if !self.is_unicast(repr.src_addr) && !repr.src_addr.is_unspecified() {
            return;
        }
        let key = packet.get_key();
        let Some(index) = self.slot_for(key, now) else {
            self.counters.no_slot += 1;
            return;
        };
        let slot = self.slots[index]
            .as_mut()
            .expect("slot_for returns a held slot");
        let offset = usize::from(packet.frag_offset());
        let length = packet.payload().len();
        if !packet.more_frags() {
            let total = offset + length;
            if slot.total.is_some_and(|known| known != total) {
                // smoltcp's `set_total_size` fails: the fragment is dropped.
                return;
            }
            slot.total = Some(total);
        }
        // smoltcp ignores a full hole list too; the datagram then times out.
        let _ = slot.ranges.add(offset, length);
        if slot.total == Some(slot.ranges.peek_front()) {
            self.slots[index] = None;
            self.counters.reassembled += 1;
        }
    }

    /// The slot of `key`, or a free one taken for it (expiring at `now` +
    /// the timeout), as smoltcp's `PacketAssemblerSet::get` picks.
    fn slot_for(&mut self, key: Ipv4FragKey, now: Instant) -> Option<usize> {
        let mut free = None;
        for (index, slot) in self.slots.iter().enumerate() {
            match slot {
                Some(slot) if slot.key == key => return Some(index),
                Some(_) => {}
                None => free = Some(index),
            }
        }
        let index = free?;
        self.slots[index] = Some(Slot {
            key,
            expires_at: now + self.timeout,
            ranges: Assembler::new(),
            total: None,
        });
        Some(index)
    }

    /// smoltcp's `is_unicast_v4`: not broadcast (also our subnet's),
    /// multicast or unspecified.
    fn is_unicast(&self, address: Ipv4Address) -> bool {
        let subnet_broadcast = self
            .ipv4
            .and_then(|cidr| cidr.broadcast())
            .is_some_and(|broadcast| broadcast == address);
        !(address.is_broadcast()
            || address.is_multicast()
            || address.is_unspecified()
            || subnet_broadcast)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use alloc::vec;
    use alloc::vec::Vec;
    use smoltcp::wire::{EthernetRepr, IpProtocol};

    pub(crate) const OURS: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 1]);
    const THEIRS: EthernetAddress = EthernetAddress([0x02, 0, 0, 0, 0, 2]);
    const A: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const B: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    /// An Ethernet frame with one IPv4 fragment from B to A: identification
    /// `ident`, `length` payload bytes at `offset`, more fragments or not.
    pub(crate) fn fragment(ident: u16, offset: u16, length: usize, more: bool) -> Vec<u8> {
        let repr = Ipv4Repr {
            src_addr: B,
            dst_addr: A,
            next_header: IpProtocol::Udp,
            payload_len: length,
            hop_limit: 64,
        };
        let mut frame = vec![0u8; 14 + repr.buffer_len() + length];
        EthernetRepr {
            src_addr: THEIRS,
            dst_addr: OURS,
            ethertype: EthernetProtocol::Ipv4,
        }
        .emit(&mut EthernetFrame::new_unchecked(&mut frame[..]));
        let mut packet = Ipv4Packet::new_unchecked(&mut frame[14..]);
        repr.emit(&mut packet, &ChecksumCapabilities::default());
        packet.set_ident(ident);
        packet.set_more_frags(more);
        packet.set_frag_offset(offset);
        packet.fill_checksum();
        frame
    }

    fn watch() -> ReassemblyWatch {
        ReassemblyWatch::new(OURS, Some(Ipv4Cidr::new(A, 24)), Duration::from_secs(3))
    }

    #[test]
    fn whole_datagrams_in_any_order_are_reassembled() {
        let mut watch = watch();
        let now = Instant::from_secs(10);
        watch.observe(&fragment(1, 0, 1480, true), now);
        watch.observe(&fragment(1, 1480, 1480, true), now);
        assert_eq!(watch.busy_slots(), 1);
        watch.observe(&fragment(1, 2960, 100, false), now);
        // Last fragment first, then the rest.
        watch.observe(&fragment(2, 1480, 8, false), now);
        watch.observe(&fragment(2, 0, 1480, true), now);
        assert_eq!(
            watch.counters(),
            ReassemblyCounters {
                reassembled: 2,
                incomplete: 0,
                no_slot: 0
            }
        );
        assert_eq!(watch.busy_slots(), 0);
        // Not a fragment, not for us, a bad checksum: not counted.
        watch.observe(&fragment(3, 0, 100, false), now);
        let mut other = fragment(4, 0, 100, true);
        other[..6].copy_from_slice(&THEIRS.0);
        watch.observe(&other, now);
        let mut corrupt = fragment(5, 0, 100, true);
        corrupt[14 + 10] ^= 0xff;
        watch.observe(&corrupt, now);
        assert_eq!(watch.busy_slots(), 0);
    }

    #[test]
    fn first_fragments_fill_the_slots_until_they_expire() {
        let mut watch = watch();
        let start = Instant::from_secs(10);
        for ident in 0..REASSEMBLY_BUFFER_COUNT as u16 + 3 {
            watch.observe(&fragment(100 + ident, 0, 1480, true), start);
        }
        assert_eq!(watch.busy_slots(), REASSEMBLY_BUFFER_COUNT);
        assert_eq!(watch.counters().no_slot, 3);
        // Exactly at the timeout the slots are still held (smoltcp: `<`).
        watch.expire(start + Duration::from_secs(3));
        assert_eq!(watch.busy_slots(), REASSEMBLY_BUFFER_COUNT);
        watch.expire(start + Duration::from_millis(3001));
        assert_eq!(watch.busy_slots(), 0);
        assert_eq!(watch.counters().incomplete, REASSEMBLY_BUFFER_COUNT as u64);
        // A later datagram finds a slot again.
        let later = start + Duration::from_secs(4);
        watch.observe(&fragment(7, 0, 1480, true), later);
        watch.observe(&fragment(7, 1480, 20, false), later);
        assert_eq!(watch.counters().reassembled, 1);
        // A conflicting total drops the fragment, as smoltcp does.
        watch.observe(&fragment(8, 1480, 20, false), later);
        watch.observe(&fragment(8, 1480, 40, false), later);
        watch.observe(&fragment(8, 0, 1480, true), later);
        assert_eq!(watch.counters().reassembled, 2);
        watch.observe(&fragment(9, 0, 1480, true), later);
        watch.abandon();
        assert_eq!(watch.busy_slots(), 0);
        assert_eq!(
            watch.counters().incomplete,
            REASSEMBLY_BUFFER_COUNT as u64 + 1
        );
    }
}
