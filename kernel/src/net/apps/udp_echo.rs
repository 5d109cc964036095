//! The `udp-echo` app: datagrams through the peer's UDP echo server, one at
//! a time, each echo verified; once per size of `size=` (up to 65507 bytes:
//! above the MTU, IPv4 datagrams travel in fragments both ways).

use alloc::vec;
use smoltcp::socket::udp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::echo::{REPLY_TIMEOUT_MICROS, fill_pattern};
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::UdpEchoResult;

/// Our UDP port.
const LOCAL_PORT: u16 = 40_007;

/// Sends `count` datagrams of each size to the peer's UDP echo server, one
/// at a time, and verifies each echo. Passes if every one came back intact.
pub fn udp_echo<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    let mut passed = true;
    for &size in &command_line.sizes {
        passed &= udp_echo_round(stack, command_line, size.max(1) as usize);
    }
    passed
}

/// One size's worth of datagrams.
fn udp_echo_round<D: NetDevice>(
    stack: &mut Stack<D>,
    command_line: &CommandLine,
    size: usize,
) -> bool {
    // Room for two datagrams each way, wherever the ring buffer wraps.
    let buffer = || {
        udp::PacketBuffer::new(
            vec![udp::PacketMetadata::EMPTY; 4],
            vec![0; 4 * size.max(2048)],
        )
    };
    let mut socket = udp::Socket::new(buffer(), buffer());
    socket.bind(LOCAL_PORT).expect("a fresh socket binds");
    let handle = stack.sockets.add(socket);
    let peer = IpEndpoint::new(IpAddress::from(stack.peer), command_line.port);
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
            kprintln!(
                "udp-echo: datagram {sequence} of {size} bytes was not echoed intact within 2 s"
            );
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
