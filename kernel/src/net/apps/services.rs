//! The measuring services the `server` app runs next to its echo: a TCP
//! discard service (the peer's `tcp-send` writes into it), a TCP source
//! service (it sends the peer's `tcp-recv` as many stream bytes as the
//! peer's first 8 bytes ask for, little-endian) and a UDP sink (the peer's
//! `udp-flood` fills it; an empty datagram asks for the count and time span
//! of what arrived since the last such question, and resets them).

use alloc::vec;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};

use super::echo::{send_stream, tcp_socket};
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use crate::time;

/// The TCP discard service's port (RFC 863) and the UDP sink's.
pub const DISCARD_PORT: u16 = 9;
/// The TCP source service's port (RFC 864's chargen, with our stream bytes).
pub const SOURCE_PORT: u16 = 19;
/// Datagram slots of the UDP sink's receive buffer: smoltcp takes every
/// frame the device offers in one poll (up to the engine's receive budget),
/// and a halted receiver finds a whole ring of them, so the sink holds more
/// than one ring's worth of small datagrams.
const SINK_SLOTS: usize = 4096;

/// A source connection: how many bytes it was asked for and has queued.
#[derive(Debug, Clone, Copy, Default)]
struct Source {
    request: [u8; 8],
    request_length: usize,
    sent: u64,
}

/// The services' sockets and counters.
#[derive(Debug)]
pub struct Services {
    discard: SocketHandle,
    source: SocketHandle,
    sink: SocketHandle,
    source_state: Source,
    sink_count: u32,
    sink_first: u64,
    sink_last: u64,
}

impl Services {
    /// Opens the three services on `stack`.
    pub fn open<D: NetDevice>(stack: &mut Stack<D>) -> Self {
        let mut discard = tcp_socket();
        discard
            .listen(DISCARD_PORT)
            .expect("a fresh socket listens");
        let mut source = tcp_socket();
        source.listen(SOURCE_PORT).expect("a fresh socket listens");
        let mut sink = udp::Socket::new(
            udp::PacketBuffer::new(
                vec![udp::PacketMetadata::EMPTY; SINK_SLOTS],
                vec![0; SINK_SLOTS * 128],
            ),
            udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 4], vec![0; 4 * 64]),
        );
        sink.bind(DISCARD_PORT).expect("a fresh socket binds");
        Self {
            discard: stack.sockets.add(discard),
            source: stack.sockets.add(source),
            sink: stack.sockets.add(sink),
            source_state: Source::default(),
            sink_count: 0,
            sink_first: 0,
            sink_last: 0,
        }
    }

    /// Serves whatever is waiting; returns whether anything moved.
    pub fn serve<D: NetDevice>(&mut self, stack: &mut Stack<D>) -> bool {
        let mut progressed = false;
        let socket = stack.sockets.get_mut::<tcp::Socket<'_>>(self.discard);
        while socket.can_recv() {
            match socket.recv(|data| (data.len(), data.len())) {
                Ok(0) | Err(_) => break,
                Ok(_) => progressed = true,
            }
        }
        relisten(socket, DISCARD_PORT);

        let socket = stack.sockets.get_mut::<tcp::Socket<'_>>(self.source);
        let state = &mut self.source_state;
        while state.request_length < 8 && socket.can_recv() {
            let Ok(read) = socket.recv_slice(&mut state.request[state.request_length..]) else {
                break;
            };
            if read == 0 {
                break;
            }
            state.request_length += read;
            progressed = true;
        }
        if state.request_length == 8 {
            let wanted = u64::from_le_bytes(state.request);
            while socket.can_send() && state.sent < wanted {
                let queued = send_stream(socket, 0, state.sent, wanted - state.sent);
                if queued == 0 {
                    break;
                }
                state.sent += queued as u64;
                progressed = true;
            }
            if state.sent == wanted && socket.send_queue() == 0 && socket.may_send() {
                socket.close();
            }
        }
        if !socket.is_open() {
            *state = Source::default();
        }
        relisten(socket, SOURCE_PORT);

        let socket = stack.sockets.get_mut::<udp::Socket<'_>>(self.sink);
        while let Ok((data, metadata)) = socket.recv() {
            progressed = true;
            if !data.is_empty() {
                let now = time::micros_since_boot();
                if self.sink_count == 0 {
                    self.sink_first = now;
                }
                self.sink_count += 1;
                self.sink_last = now;
                continue;
            }
            let mut answer = [0u8; 12];
            answer[..4].copy_from_slice(&self.sink_count.to_le_bytes());
            answer[4..].copy_from_slice(&(self.sink_last - self.sink_first).to_le_bytes());
            let _ = socket.send_slice(&answer, metadata.endpoint);
            self.sink_count = 0;
        }
        progressed
    }
}

/// Closes a connection the peer closed, and listens again once it is gone.
fn relisten(socket: &mut tcp::Socket<'_>, port: u16) {
    if socket.state() == tcp::State::CloseWait && socket.send_queue() == 0 {
        socket.close();
    }
    if !socket.is_open() {
        socket.listen(port).expect("a closed socket listens");
    }
}
