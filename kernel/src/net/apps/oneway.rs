//! The `tcp-send` and `tcp-recv` apps: `bytes` one way through one TCP
//! connection, to the peer server's discard service or from its source
//! service ([`super::services`]), timed from the connection's start until
//! the peer acknowledged the last byte (send) or the last byte arrived and
//! was verified (receive).

use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpEndpoint};

use super::echo::{receive_stream, send_stream, tcp_socket};
use super::services::{DISCARD_PORT, SOURCE_PORT};
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{Direction, Mbits, Millis, TcpOneWay};

/// A transfer that makes no progress for this long has failed.
const STALL_MICROS: u64 = 10_000_000;

/// Sends `bytes` to the peer's discard service.
pub fn tcp_send<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    transfer(stack, command_line, Direction::Send)
}

/// Receives `bytes` from the peer's source service.
pub fn tcp_recv<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> bool {
    transfer(stack, command_line, Direction::Receive)
}

fn transfer<D: NetDevice>(
    stack: &mut Stack<D>,
    command_line: &CommandLine,
    direction: Direction,
) -> bool {
    let (port, name) = match direction {
        Direction::Send => (DISCARD_PORT, "tcp-send"),
        Direction::Receive => (SOURCE_PORT, "tcp-recv"),
    };
    let length = command_line.bytes;
    let mut socket = tcp_socket();
    let local_port = 49152 + (time::micros_since_boot() % 16000) as u16;
    socket
        .connect(
            stack.interface.context(),
            IpEndpoint::new(IpAddress::from(stack.peer), port),
            local_port,
        )
        .expect("a fresh socket connects");
    let handle = stack.sockets.add(socket);
    let started = time::micros_since_boot();
    let mut last_progress = started;
    let mut request_sent = direction == Direction::Send;
    let mut done = 0u64;
    let mut finished = None;
    let mut failure = None;
    while finished.is_none() && failure.is_none() {
        stack.poll();
        let socket = stack.sockets.get_mut::<tcp::Socket<'_>>(handle);
        let mut progressed = false;
        if !socket.is_active() {
            failure = Some("the connection closed early");
        }
        if !request_sent && socket.can_send() {
            request_sent = socket.send_slice(&length.to_le_bytes()) == Ok(8);
        }
        match direction {
            Direction::Send => {
                while socket.can_send() && done < length {
                    let queued = send_stream(socket, 0, done, length - done);
                    if queued == 0 {
                        break;
                    }
                    done += queued as u64;
                    progressed = true;
                }
                if done == length && socket.send_queue() == 0 {
                    finished = Some(time::micros_since_boot());
                }
            }
            Direction::Receive => {
                while socket.can_recv() {
                    match receive_stream(socket, 0, done) {
                        Ok(0) => break,
                        Ok(received) => {
                            done += received as u64;
                            progressed = true;
                        }
                        Err(_) => {
                            failure = Some("a received byte differs from the stream");
                            break;
                        }
                    }
                }
                if done >= length {
                    finished = Some(time::micros_since_boot());
                }
            }
        }
        let now = time::micros_since_boot();
        if progressed {
            last_progress = now;
        } else if now - last_progress > STALL_MICROS {
            failure = Some("no progress for 10 s");
        }
        if finished.is_none() && failure.is_none() && !progressed {
            stack.wait();
        }
    }
    // Close, and let the FIN go out before the socket is dropped.
    stack.sockets.get_mut::<tcp::Socket<'_>>(handle).close();
    let closing = time::micros_since_boot();
    while time::micros_since_boot() - closing < 200_000
        && !matches!(
            stack.sockets.get::<tcp::Socket<'_>>(handle).state(),
            tcp::State::Closed | tcp::State::TimeWait
        )
    {
        stack.poll();
        stack.wait();
    }
    stack.sockets.remove(handle);
    if let Some(why) = failure {
        kprintln!("{name}: {why} after {done} of {length} bytes");
        return false;
    }
    let micros = finished.unwrap_or(closing) - started;
    kprintln!(
        "{}",
        TcpOneWay {
            direction,
            bytes: length,
            time: Millis(micros),
            throughput: Mbits::of_transfer(length, micros),
        }
    );
    true
}
