//! The `fragment-flood` app: a hostile peer's attack on IPv4 reassembly,
//! for testing the other side. For [`FLOOD_MICROS`] it sends, every
//! [`FLOOD_INTERVAL_MICROS`], the first fragment of a datagram that never
//! completes (a new identification each time), so that every reassembly
//! slot of the peer stays taken; meanwhile it pings the peer every
//! [`PROBE_INTERVAL_MICROS`] with a small (unfragmented) and a large
//! (fragmented) request. Then it waits out the peer's reassembly timeout
//! (`stack::REASSEMBLY_TIMEOUT`, the same kernel) and reports
//! ([`FragmentFloodResult`]). It passes if every small ping was answered:
//! unfragmented traffic must get through all along; the large ones are
//! expected to fail while the slots are taken, and to work again after the
//! timeout (the next app, e.g. `ping size=8000`, shows that).
//!
//! The fragments are built with smoltcp's wire types and sent past smoltcp
//! and past the port's watch (`Port::send_unwatched`).

use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpProtocol, Ipv4Address,
    Ipv4Packet, Ipv4Repr,
};

use super::echo::REPLY_TIMEOUT_MICROS;
use super::ping::{echo_socket, receive_reply, send_request};
use crate::net::device::NetDevice;
use crate::net::stack::{REASSEMBLY_TIMEOUT, Stack};
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{FragmentFloodResult, Millis};

/// How long the stream of first fragments lasts: longer than the peer's
/// reassembly timeout, so that slots expire and are taken again at least
/// once.
pub const FLOOD_MICROS: u64 = 4_000_000;
/// Time between two first fragments.
pub const FLOOD_INTERVAL_MICROS: u64 = 1_000;
/// Time between two probes (a small and a large ping).
pub const PROBE_INTERVAL_MICROS: u64 = 100_000;
/// Payload bytes of each first fragment (a multiple of 8).
const FRAGMENT_PAYLOAD: usize = 1024;

/// The first fragment of a UDP datagram of 64 KiB from `source` to
/// `destination` that will never be completed.
fn first_fragment(
    mac: EthernetAddress,
    peer_mac: EthernetAddress,
    source: Ipv4Address,
    destination: Ipv4Address,
    ident: u16,
) -> Vec<u8> {
    let repr = Ipv4Repr {
        src_addr: source,
        dst_addr: destination,
        next_header: IpProtocol::Udp,
        payload_len: FRAGMENT_PAYLOAD,
        hop_limit: 64,
    };
    let mut frame =
        vec![0u8; EthernetFrame::<&[u8]>::buffer_len(repr.buffer_len() + FRAGMENT_PAYLOAD)];
    let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: peer_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut ethernet);
    let mut packet = Ipv4Packet::new_unchecked(ethernet.payload_mut());
    repr.emit(&mut packet, &ChecksumCapabilities::default());
    packet.set_ident(ident);
    packet.set_more_frags(true);
    packet.set_dont_frag(false);
    packet.set_frag_offset(0);
    packet.fill_checksum();
    frame
}

/// One probe: a ping and when it was sent.
#[derive(Debug, Clone, Copy)]
struct Probe {
    sent_at: u64,
    answered: bool,
}

/// Runs the flood (module documentation).
pub fn fragment_flood<D: NetDevice>(stack: &mut Stack<D>, _command_line: &CommandLine) -> bool {
    let IpAddr::V4(peer) = stack.peer else {
        kprintln!("fragment-flood: needs an IPv4 peer (peer=)");
        return false;
    };
    // Large enough to need fragments at our MTU, whatever it is.
    let large = stack.mtu();
    let small = 56;
    let handle = echo_socket(stack, 8, large);
    let mut probes: Vec<Probe> = Vec::new();
    let start = time::micros_since_boot();
    let mut next_fragment = start;
    let mut next_probe = start;
    let mut sent = 0u64;
    let mut ident = 0x8000u16;
    let mut payload = vec![0u8; large];
    loop {
        stack.poll();
        let now = time::micros_since_boot();
        let flooding = now - start < FLOOD_MICROS;
        if !flooding && now - start > FLOOD_MICROS + REPLY_TIMEOUT_MICROS {
            break;
        }
        if flooding && now >= next_fragment {
            let peer_mac = stack.peer_mac().unwrap_or(EthernetAddress::BROADCAST);
            let frame = first_fragment(stack.mac(), peer_mac, stack.local, peer, ident);
            if stack.send_raw(stack.now(), &frame) {
                sent += 1;
                ident = ident.wrapping_add(1);
            }
            next_fragment += FLOOD_INTERVAL_MICROS;
        }
        if flooding && now >= next_probe {
            for size in [small, large] {
                let sequence = probes.len() as u16;
                payload[..8].copy_from_slice(&now.to_le_bytes());
                if send_request(stack, handle, IpAddr::V4(peer), sequence, &payload[..size]) {
                    probes.push(Probe {
                        sent_at: now,
                        answered: false,
                    });
                }
            }
            next_probe += PROBE_INTERVAL_MICROS;
        }
        while let Some(sequence) = receive_reply(stack, handle, |sequence, _, _| sequence) {
            if let Some(probe) = probes.get_mut(usize::from(sequence))
                && now < probe.sent_at + REPLY_TIMEOUT_MICROS
            {
                probe.answered = true;
            }
        }
        stack.wait_at_most(
            next_fragment
                .saturating_sub(now)
                .clamp(1, FLOOD_INTERVAL_MICROS),
        );
    }
    let elapsed = FLOOD_MICROS;
    stack.sockets.remove(handle);
    // Even probes are small, odd ones large.
    let count = |large: bool, answered: bool| {
        probes
            .iter()
            .enumerate()
            .filter(|(index, probe)| (index % 2 == 1) == large && (!answered || probe.answered))
            .count() as u32
    };
    let result = FragmentFloodResult {
        fragments: sent,
        time: Millis(elapsed),
        small_answered: count(false, true),
        small_sent: count(false, false),
        large_answered: count(true, true),
        large_sent: count(true, false),
    };
    kprintln!("{result}");
    // Let the peer's slots expire before the next app.
    let wait_until = time::micros_since_boot() + REASSEMBLY_TIMEOUT.total_micros() + 500_000;
    while time::micros_since_boot() < wait_until {
        stack.poll();
        stack.wait();
    }
    result.small_sent > 0 && result.small_answered == result.small_sent
}
