//! The `tcp-echo` app: a byte stream through the peer's TCP echo server,
//! every echoed byte verified, with progress, per-round and total report
//! lines.

use alloc::vec::Vec;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::echo::{pattern, receive_stream, send_stream, tcp_socket};
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{Mbits, Millis, TcpEchoProgress, TcpEchoResult, TcpEchoRound};

/// A TCP transfer that makes no progress for this long has failed.
const STALL_MICROS: u64 = 10_000_000;

/// One connection of the TCP echo client.
struct EchoConnection {
    handle: SocketHandle,
    index: u32,
    length: u64,
    sent: u64,
    verified: u64,
}

/// Sends `bytes` (split over `parallel` connections) through the peer's echo
/// server, `repeat` times, verifying every echoed byte. Reports throughput.
pub fn tcp_echo<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    let peer = IpEndpoint::new(IpAddress::from(stack.peer), command_line.port);
    let parallel = u64::from(command_line.parallel);
    let mut total_micros = 0;
    let first_port = (time::micros_since_boot() % 16000) as u32;
    for round in 0..command_line.repeat {
        let started = time::micros_since_boot();
        let mut connections: Vec<EchoConnection> = (0..command_line.parallel)
            .map(|index| {
                let mut socket = tcp_socket();
                // A fresh ephemeral port each boot, so a restarted client does
                // not collide with a connection the server still remembers.
                let local_port = 49152 + ((first_port + round * 16 + index) % 16000) as u16;
                socket
                    .connect(stack.interface.context(), peer, local_port)
                    .expect("a fresh socket connects");
                let share = command_line.bytes / parallel
                    + u64::from(u64::from(index) < command_line.bytes % parallel);
                EchoConnection {
                    handle: stack.sockets.add(socket),
                    index,
                    length: share,
                    sent: 0,
                    verified: 0,
                }
            })
            .collect();
        let mut last_progress = started;
        let mut next_report = command_line.bytes / 4;
        let mut failed = false;
        while connections.iter().any(|c| c.verified < c.length) {
            stack.poll();
            let mut progressed = false;
            for connection in &mut connections {
                let socket = stack.sockets.get_mut::<tcp::Socket<'_>>(connection.handle);
                if !socket.is_active() {
                    kprintln!(
                        "tcp-echo: connection {} to {peer} closed early ({})",
                        connection.index,
                        socket.state()
                    );
                    failed = true;
                    continue;
                }
                // Fill the stream straight into the socket's send buffer, and
                // verify it straight out of the receive buffer: no copy of
                // our own (see `echo::send_stream`).
                while socket.can_send() && connection.sent < connection.length {
                    let queued = send_stream(
                        socket,
                        connection.index,
                        connection.sent,
                        connection.length - connection.sent,
                    );
                    if queued == 0 {
                        break;
                    }
                    connection.sent += queued as u64;
                    progressed = true;
                }
                while socket.can_recv() {
                    match receive_stream(socket, connection.index, connection.verified) {
                        Ok(0) => break,
                        Ok(received) => {
                            connection.verified += received as u64;
                            progressed = true;
                        }
                        Err((position, actual)) => {
                            kprintln!(
                                "tcp-echo: connection {} byte {position} is {actual:#04x}, expected {:#04x}",
                                connection.index,
                                pattern(connection.index, position)
                            );
                            failed = true;
                            break;
                        }
                    }
                }
            }
            if failed {
                break;
            }
            let now = time::micros_since_boot();
            if progressed {
                last_progress = now;
            } else if now - last_progress > STALL_MICROS {
                let (sent, verified): (u64, u64) = connections
                    .iter()
                    .fold((0, 0), |(s, v), c| (s + c.sent, v + c.verified));
                kprintln!(
                    "tcp-echo: no progress for 10 s ({sent} bytes sent, {verified} verified)"
                );
                failed = true;
                break;
            }
            let verified: u64 = connections.iter().map(|c| c.verified).sum();
            if verified >= next_report && verified < command_line.bytes {
                kprintln!(
                    "{}",
                    TcpEchoProgress {
                        percent: (verified * 100 / command_line.bytes) as u32,
                        bytes: verified,
                    }
                );
                next_report += command_line.bytes / 4;
            }
            if !progressed {
                stack.wait();
            }
        }
        for connection in &connections {
            stack
                .sockets
                .get_mut::<tcp::Socket<'_>>(connection.handle)
                .close();
        }
        // Let the FINs go out before the sockets are dropped.
        let closing = time::micros_since_boot();
        while time::micros_since_boot() - closing < 200_000
            && connections.iter().any(|c| {
                stack.sockets.get::<tcp::Socket<'_>>(c.handle).state() != tcp::State::Closed
                    && stack.sockets.get::<tcp::Socket<'_>>(c.handle).state()
                        != tcp::State::TimeWait
            })
        {
            stack.poll();
            stack.wait();
        }
        for connection in connections {
            stack.sockets.remove(connection.handle);
        }
        if failed {
            kprintln!("tcp-echo: FAILED in round {}", round + 1);
            return false;
        }
        let micros = time::micros_since_boot() - started;
        total_micros += micros;
        kprintln!(
            "{}",
            TcpEchoRound {
                round: round + 1,
                bytes: command_line.bytes,
                connections: command_line.parallel,
                time: Millis(micros),
                throughput: Mbits::of_transfer(command_line.bytes, micros),
            }
        );
    }
    let bytes = command_line.bytes * u64::from(command_line.repeat);
    kprintln!(
        "{}",
        TcpEchoResult {
            bytes,
            throughput: Mbits::of_transfer(bytes, total_micros),
        }
    );
    true
}
