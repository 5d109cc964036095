//! The `ping` app: ICMP or ICMPv6 echo requests to the peer (by the family
//! of its address), one report line per reply, then a summary; once per
//! size of `size=`.

use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;
use log::warn;
use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, Icmpv6Packet, Icmpv6Repr, IpAddress, Ipv6Address};

use super::echo::REPLY_TIMEOUT_MICROS;
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{Millis, PingPercentiles, PingReply, PingRtt, PingStart, PingSummary};

/// The ICMP identifier of our echo requests.
pub const PING_IDENT: u16 = 0x4e49;

/// An ICMP socket bound to [`PING_IDENT`] with room for `packets` echo
/// messages of `size` payload bytes each way.
pub fn echo_socket<D: NetDevice>(
    stack: &mut Stack<D>,
    packets: usize,
    size: usize,
) -> SocketHandle {
    let buffer = || {
        icmp::PacketBuffer::new(
            vec![icmp::PacketMetadata::EMPTY; packets],
            vec![0; packets * (size + 64)],
        )
    };
    let mut socket = icmp::Socket::new(buffer(), buffer());
    socket
        .bind(icmp::Endpoint::Ident(PING_IDENT))
        .expect("a fresh socket binds");
    stack.sockets.add(socket)
}

/// Queues an echo request with sequence number `sequence` and `payload` to
/// `peer` (ICMPv6 for an IPv6 peer, from `local`); false if the socket has
/// no room.
pub fn send_request<D: NetDevice>(
    stack: &mut Stack<D>,
    handle: SocketHandle,
    peer: IpAddr,
    sequence: u16,
    payload: &[u8],
) -> bool {
    let local = stack.local_for(peer);
    let socket = stack.sockets.get_mut::<icmp::Socket<'_>>(handle);
    if !socket.can_send() {
        return false;
    }
    let checksums = ChecksumCapabilities::default();
    match (peer, local) {
        (IpAddr::V6(peer), IpAddr::V6(local)) => {
            let request = Icmpv6Repr::EchoRequest {
                ident: PING_IDENT,
                seq_no: sequence,
                data: payload,
            };
            match socket.send(request.buffer_len(), IpAddress::Ipv6(peer)) {
                Ok(buffer) => {
                    // smoltcp fills in the checksum for the source it picks.
                    request.emit(
                        &local,
                        &peer,
                        &mut Icmpv6Packet::new_unchecked(buffer),
                        &checksums,
                    );
                    true
                }
                Err(error) => {
                    warn!("ping: cannot queue request {sequence}: {error}");
                    false
                }
            }
        }
        _ => {
            let request = Icmpv4Repr::EchoRequest {
                ident: PING_IDENT,
                seq_no: sequence,
                data: payload,
            };
            match socket.send(request.buffer_len(), IpAddress::from(peer)) {
                Ok(buffer) => {
                    request.emit(&mut Icmpv4Packet::new_unchecked(buffer), &checksums);
                    true
                }
                Err(error) => {
                    warn!("ping: cannot queue request {sequence}: {error}");
                    false
                }
            }
        }
    }
}

/// The next echo reply to our ident waiting in the socket: (sequence
/// number, payload, from), after `visit` saw the payload.
pub fn receive_reply<D: NetDevice, R>(
    stack: &mut Stack<D>,
    handle: SocketHandle,
    mut visit: impl FnMut(u16, &[u8], IpAddr) -> R,
) -> Option<R> {
    let local = stack.local_for(stack.peer);
    let socket = stack.sockets.get_mut::<icmp::Socket<'_>>(handle);
    loop {
        let (data, from) = socket.recv().ok()?;
        let from = IpAddr::from(from);
        match from {
            IpAddr::V4(_) => {
                let Ok(packet) = Icmpv4Packet::new_checked(data) else {
                    continue;
                };
                if let Ok(Icmpv4Repr::EchoReply {
                    ident: PING_IDENT,
                    seq_no,
                    data,
                }) = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default())
                {
                    return Some(visit(seq_no, data, from));
                }
            }
            IpAddr::V6(source) => {
                let Ok(packet) = Icmpv6Packet::new_checked(data) else {
                    continue;
                };
                let destination = match local {
                    IpAddr::V6(local) => local,
                    IpAddr::V4(_) => Ipv6Address::UNSPECIFIED,
                };
                // The interface checked the checksum already.
                if let Ok(Icmpv6Repr::EchoReply {
                    ident: PING_IDENT,
                    seq_no,
                    data,
                }) = Icmpv6Repr::parse(
                    &source,
                    &destination,
                    &packet,
                    &ChecksumCapabilities::ignored(),
                ) {
                    return Some(visit(seq_no, data, from));
                }
            }
        }
    }
}

/// Fills a request payload: the send time, then a byte pattern.
fn fill_payload(payload: &mut [u8], now: u64) {
    payload[..8].copy_from_slice(&now.to_le_bytes());
    for (index, byte) in payload.iter_mut().enumerate().skip(8) {
        *byte = index as u8;
    }
}

/// Pings the peer `count` times, `interval` ms apart, once per size of
/// `size=`; prints each reply with its RTT and a summary per size. Passes
/// if every request got its reply.
pub fn ping<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    let mut passed = true;
    for &size in &command_line.sizes {
        passed &= ping_round(stack, command_line, size.max(8) as usize);
    }
    passed
}

/// One size's worth of pings.
fn ping_round<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine, size: usize) -> bool {
    let count = command_line.count as usize;
    let peer = stack.peer;
    let handle = echo_socket(stack, 8, size);
    let mut sent_at: Vec<Option<u64>> = vec![None; count];
    let mut rtts: Vec<u64> = Vec::with_capacity(count);
    let mut next = 0usize;
    let mut next_at = time::micros_since_boot();
    let mut payload = vec![0u8; size];
    kprintln!(
        "{}",
        PingStart {
            local: stack.local_for(peer),
            peer,
            count: command_line.count,
            size: size as u32,
        }
    );
    loop {
        stack.poll();
        let now = time::micros_since_boot();
        if next < count && now >= next_at {
            fill_payload(&mut payload, now);
            if send_request(stack, handle, peer, next as u16, &payload) {
                sent_at[next] = Some(now);
                next += 1;
                next_at = now + u64::from(command_line.interval) * 1000;
            }
        }
        while let Some((seq_no, intact, from)) =
            receive_reply(stack, handle, |seq_no, data, from| {
                let intact = data.len() == size
                    && data
                        .iter()
                        .enumerate()
                        .skip(8)
                        .all(|(i, byte)| *byte == i as u8);
                (seq_no, intact, from)
            })
        {
            let Some(sent) = sent_at.get_mut(usize::from(seq_no)).and_then(Option::take) else {
                continue;
            };
            if !intact {
                kprintln!("ping: reply {seq_no} from {from} has a corrupted payload");
                continue;
            }
            let rtt = time::micros_since_boot() - sent;
            rtts.push(rtt);
            kprintln!(
                "{}",
                PingReply {
                    bytes: size as u32,
                    from,
                    sequence: seq_no,
                    rtt: Millis(rtt),
                }
            );
        }
        let outstanding = sent_at
            .iter()
            .flatten()
            .any(|&sent| now < sent + REPLY_TIMEOUT_MICROS);
        if next == count && !outstanding {
            break;
        }
        stack.wait_at_most(next_at.saturating_sub(now).max(1));
    }
    stack.sockets.remove(handle);
    let received = rtts.len();
    kprintln!("{}", PingSummary::new(count as u32, received as u32));
    if let (Some(&min), Some(&max)) = (rtts.iter().min(), rtts.iter().max()) {
        let average = rtts.iter().sum::<u64>() / received as u64;
        kprintln!(
            "{}",
            PingRtt {
                min: Millis(min),
                avg: Millis(average),
                max: Millis(max),
            }
        );
    }
    if received > 1 {
        // The first reply waited for ARP; the bench reads it on its own.
        kprintln!("{}", PingPercentiles::of(&mut rtts[1..]));
    }
    received == count
}
