//! The `udp-echo` app: datagrams through the peer's UDP echo server, one at
//! a time, each echo verified.

use alloc::vec;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::echo::{REPLY_TIMEOUT_MICROS, fill_pattern};
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::UdpEchoResult;

/// Sends `count` datagrams of `size` bytes to the peer's UDP echo server,
/// one at a time, and verifies each echo.
pub fn udp_echo<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    let size = command_line.size.clamp(1, 1472) as usize;
    let mut socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8 * 2048]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8 * 2048]),
    );
    socket.bind(40_007).expect("a fresh socket binds");
    let handle = stack.sockets.add(socket);
    let peer = IpEndpoint::new(IpAddress::Ipv4(stack.peer), command_line.port);
    let mut datagram = vec![0u8; size];
    let mut echoed = 0;
    for sequence in 0..command_line.count {
        fill_pattern(sequence, 0, &mut datagram);
        let sent_at = time::micros_since_boot();
        let mut queued = false;
        let mut matched = false;
        while time::micros_since_boot() - sent_at < REPLY_TIMEOUT_MICROS && !matched {
            stack.poll();
            let socket = stack.sockets.get_mut::<udp::Socket<'_>>(handle);
            if !queued && socket.send_slice(&datagram, peer).is_ok() {
                queued = true;
            }
            while let Ok((data, _)) = socket.recv() {
                matched |= data == datagram.as_slice();
            }
            if !matched {
                stack.wait();
            }
        }
        if matched {
            echoed += 1;
        } else {
            kprintln!("udp-echo: datagram {sequence} was not echoed intact within 2 s");
        }
    }
    stack.sockets.remove(handle);
    kprintln!(
        "{}",
        UdpEchoResult {
            echoed,
            count: command_line.count,
            size: size as u32,
        }
    );
    echoed == command_line.count
}
