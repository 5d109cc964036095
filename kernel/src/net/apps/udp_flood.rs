//! The `udp-flood` app: `count` datagrams of `size` bytes to the peer
//! server's UDP sink ([`super::services`]) as fast as the stack takes them,
//! then an empty datagram that asks the sink how many arrived and over what
//! time.

use alloc::vec;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::echo::fill_pattern;
use super::services::DISCARD_PORT;
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{Millis, UdpFloodResult};

/// Datagram slots of the sending socket.
const SLOTS: usize = 64;
/// How long to wait for the sink's answer (asking again every tenth).
const ANSWER_MICROS: u64 = 1_000_000;

/// Floods the peer's UDP sink and reports what arrived.
pub fn udp_flood<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    // The first of `size=` (a flood measures one size).
    let size = command_line
        .sizes
        .first()
        .map_or(64, |&size| size.clamp(1, 1472)) as usize;
    let mut socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4 * 64]),
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; SLOTS],
            vec![0; SLOTS * size.next_multiple_of(64)],
        ),
    );
    socket.bind(40_009).expect("a fresh socket binds");
    let handle = stack.sockets.add(socket);
    let sink = IpEndpoint::new(IpAddress::from(stack.peer), DISCARD_PORT);
    let mut datagram = vec![0u8; size];
    fill_pattern(0, 0, &mut datagram);
    let count = command_line.count;
    let mut sent = 0;
    let started = time::micros_since_boot();
    while sent < count {
        let socket = stack.sockets.get_mut::<udp::Socket<'_>>(handle);
        while sent < count && socket.send_slice(&datagram, sink).is_ok() {
            sent += 1;
        }
        stack.poll();
    }
    // Until the socket has handed its last datagram to the device.
    while stack.sockets.get::<udp::Socket<'_>>(handle).send_queue() > 0 {
        stack.poll();
    }
    let send_micros = time::micros_since_boot() - started;
    let asked = time::micros_since_boot();
    let mut next_question = asked;
    let mut answer = None;
    while answer.is_none() && time::micros_since_boot() - asked < ANSWER_MICROS {
        let now = time::micros_since_boot();
        let socket = stack.sockets.get_mut::<udp::Socket<'_>>(handle);
        if now >= next_question && socket.send_slice(&[], sink).is_ok() {
            next_question = now + ANSWER_MICROS / 10;
        }
        while let Ok((data, _)) = socket.recv() {
            if data.len() == 12 {
                let received = u32::from_le_bytes(data[..4].try_into().expect("4 bytes"));
                let span = u64::from_le_bytes(data[4..].try_into().expect("8 bytes"));
                answer = Some((received, span));
            }
        }
        stack.poll();
        if answer.is_none() {
            stack.wait_at_most(1_000);
        }
    }
    stack.sockets.remove(handle);
    let Some((received, span)) = answer else {
        kprintln!("udp-flood: the sink did not answer within 1 s");
        return false;
    };
    kprintln!(
        "{}",
        UdpFloodResult {
            received,
            sent,
            size: size as u32,
            receive_time: Millis(span),
            rate: u64::from(received) * 1_000_000 / span.max(1),
            send_time: Millis(send_micros),
        }
    );
    received > 0
}
