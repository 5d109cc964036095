//! The `ping` app: ICMP echo requests to the peer, one report line per
//! reply, then a summary.

use alloc::vec;
use alloc::vec::Vec;
use core::net::IpAddr;
use log::warn;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::icmp;
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress};

use super::echo::REPLY_TIMEOUT_MICROS;
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{Millis, PingPercentiles, PingReply, PingRtt, PingStart, PingSummary};

/// The ICMP identifier of our echo requests.
const PING_IDENT: u16 = 0x4e49;

/// Pings the peer `count` times, `interval` ms apart, with `size` payload
/// bytes; prints each reply with its RTT and a summary. Passes if every
/// request got its reply.
pub fn ping<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    let count = command_line.count as usize;
    let size = command_line.size.max(8) as usize;
    let mut socket = icmp::Socket::new(
        icmp::PacketBuffer::new(
            vec![icmp::PacketMetadata::EMPTY; 16],
            vec![0; 16 * (size + 64)],
        ),
        icmp::PacketBuffer::new(
            vec![icmp::PacketMetadata::EMPTY; 16],
            vec![0; 16 * (size + 64)],
        ),
    );
    socket
        .bind(icmp::Endpoint::Ident(PING_IDENT))
        .expect("a fresh socket binds");
    let handle = stack.sockets.add(socket);
    let peer = IpAddress::Ipv4(stack.peer);
    let checksums = ChecksumCapabilities::default();
    let mut sent_at: Vec<Option<u64>> = vec![None; count];
    let mut rtts: Vec<u64> = Vec::with_capacity(count);
    let mut next = 0usize;
    let mut next_at = time::micros_since_boot();
    let mut payload = vec![0u8; size];
    kprintln!(
        "{}",
        PingStart {
            local: IpAddr::V4(stack.local),
            peer: IpAddr::V4(stack.peer),
            count: command_line.count,
            size: size as u32,
        }
    );
    loop {
        stack.poll();
        let now = time::micros_since_boot();
        let socket = stack.sockets.get_mut::<icmp::Socket<'_>>(handle);
        if next < count && now >= next_at && socket.can_send() {
            payload[..8].copy_from_slice(&now.to_le_bytes());
            for (index, byte) in payload.iter_mut().enumerate().skip(8) {
                *byte = index as u8;
            }
            let request = Icmpv4Repr::EchoRequest {
                ident: PING_IDENT,
                seq_no: next as u16,
                data: &payload,
            };
            match socket.send(request.buffer_len(), peer) {
                Ok(buffer) => {
                    request.emit(&mut Icmpv4Packet::new_unchecked(buffer), &checksums);
                    sent_at[next] = Some(now);
                    next += 1;
                    next_at = now + u64::from(command_line.interval) * 1000;
                }
                Err(error) => warn!("ping: cannot queue request {next}: {error}"),
            }
        }
        while let Ok((data, from)) = socket.recv() {
            let Ok(packet) = Icmpv4Packet::new_checked(data) else {
                continue;
            };
            let Ok(Icmpv4Repr::EchoReply {
                ident: PING_IDENT,
                seq_no,
                data,
            }) = Icmpv4Repr::parse(&packet, &checksums)
            else {
                continue;
            };
            let index = usize::from(seq_no);
            let Some(sent) = sent_at.get_mut(index).and_then(Option::take) else {
                continue;
            };
            let intact = data.len() == size
                && data
                    .iter()
                    .enumerate()
                    .skip(8)
                    .all(|(i, byte)| *byte == i as u8);
            if !intact {
                kprintln!("ping: reply {seq_no} from {from} has a corrupted payload");
                continue;
            }
            let rtt = time::micros_since_boot() - sent;
            rtts.push(rtt);
            kprintln!(
                "{}",
                PingReply {
                    bytes: data.len() as u32,
                    from: from.into(),
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
