//! The `server` app: TCP and UDP echo (and ICMP and ICMPv6 echo replies,
//! from smoltcp) on every address, IPv4 and IPv6, until the VM is stopped.

use alloc::collections::VecDeque;
use alloc::vec;
use alloc::vec::Vec;
use core::net::{IpAddr, SocketAddr};
use log::info;
use smoltcp::iface::SocketHandle;
use smoltcp::socket::{tcp, udp};

use super::echo::tcp_socket;
use crate::kprintln;
use crate::net::device::NetDevice;
use crate::net::stack::Stack;
use abi::cmdline::CommandLine;
use abi::report::ServerReady;

/// Concurrent connections the TCP echo server accepts.
const SERVER_CONNECTIONS: usize = 4;
/// Payload bytes of the UDP socket's buffers (each way).
const UDP_BUFFER: usize = 256 * 1024;
/// Bytes a connection may have received and not yet echoed; beyond that the
/// server stops reading and lets the receive window close.
const BACKLOG_LIMIT: usize = 4 << 20;

/// Echoes TCP (up to four connections at once, one after another for ever)
/// and UDP on `port`; ICMP echo requests are answered by smoltcp. Never returns.
pub fn serve<D: NetDevice>(stack: &mut Stack<D>, command_line: &CommandLine) -> ! {
    let port = command_line.port;
    let tcp_handles: Vec<SocketHandle> = (0..SERVER_CONNECTIONS)
        .map(|_| {
            let mut socket = tcp_socket();
            socket.listen(port).expect("a fresh socket listens");
            stack.sockets.add(socket)
        })
        .collect();
    // Datagrams up to 64 KiB (reassembled from fragments): room for a few
    // of those, or many small ones.
    let buffer =
        || udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; UDP_BUFFER]);
    let mut udp_socket = udp::Socket::new(buffer(), buffer());
    udp_socket.bind(port).expect("a fresh socket binds");
    let udp_handle = stack.sockets.add(udp_socket);
    let mut services = super::services::Services::open(stack);
    // The sockets listen on every address; one line per address, IPv4
    // first (the line the host has always read).
    let addresses: Vec<IpAddr> = stack
        .addresses()
        .iter()
        .map(|cidr| IpAddr::from(cidr.address()))
        .collect();
    for address in addresses {
        kprintln!(
            "{}",
            ServerReady {
                address: SocketAddr::new(address, port),
            }
        );
    }
    let mut buffer = vec![0u8; 64 * 1024];
    let mut connected = [false; SERVER_CONNECTIONS];
    let mut backlogs: [VecDeque<u8>; SERVER_CONNECTIONS] = Default::default();
    let mut link_up = stack.link_up();
    loop {
        stack.poll();
        let mut progressed = false;
        if link_up && !stack.link_up() {
            // The peer reset or left: its connections are gone with its state.
            for handle in &tcp_handles {
                stack.sockets.get_mut::<tcp::Socket<'_>>(*handle).abort();
            }
        }
        link_up = stack.link_up();
        for (slot, handle) in tcp_handles.iter().enumerate() {
            let socket = stack.sockets.get_mut::<tcp::Socket<'_>>(*handle);
            if socket.is_active() && !connected[slot] {
                connected[slot] = true;
                if let Some(remote) = socket.remote_endpoint() {
                    info!("server: TCP connection from {remote}");
                }
            }
            // Read everything into our backlog, so that the receive window
            // stays open while the send buffer is full (see echo.rs on the
            // stall a closing window causes), then echo what fits.
            let backlog = &mut backlogs[slot];
            while socket.can_recv() && backlog.len() < BACKLOG_LIMIT {
                let room = BACKLOG_LIMIT - backlog.len();
                let received = socket
                    .recv(|data| {
                        let length = data.len().min(room);
                        backlog.extend(&data[..length]);
                        (length, length)
                    })
                    .unwrap_or(0);
                if received == 0 {
                    break;
                }
                progressed = true;
            }
            while !backlog.is_empty() && socket.can_send() {
                let sent = socket.send_slice(backlog.as_slices().0).unwrap_or(0);
                if sent == 0 {
                    break;
                }
                backlog.drain(..sent);
                progressed = true;
            }
            if socket.state() == tcp::State::CloseWait
                && socket.send_queue() == 0
                && backlog.is_empty()
            {
                socket.close();
            }
            if !socket.is_active() {
                backlog.clear();
            }
            if !socket.is_open() {
                if connected[slot] {
                    info!("server: TCP connection closed");
                    connected[slot] = false;
                }
                socket.listen(port).expect("a closed socket listens");
            }
        }
        let socket = stack.sockets.get_mut::<udp::Socket<'_>>(udp_handle);
        while socket.can_send() {
            let Ok((data, metadata)) = socket.recv() else {
                break;
            };
            let length = data.len().min(buffer.len());
            buffer[..length].copy_from_slice(&data[..length]);
            let _ = socket.send_slice(&buffer[..length], metadata.endpoint);
            progressed = true;
        }
        progressed |= services.serve(stack);
        if !progressed {
            stack.wait();
        }
    }
}
