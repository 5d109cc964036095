//! The network apps: ping client, TCP and UDP echo clients, and the echo
//! server. Clients return whether they passed; the server runs until stopped.

use alloc::vec;
use alloc::vec::Vec;
use log::{info, warn};
use smoltcp::iface::SocketHandle;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::socket::{icmp, tcp, udp};
use smoltcp::wire::{Icmpv4Packet, Icmpv4Repr, IpAddress, IpEndpoint};

use super::stack::Stack;
use crate::{kprintln, time};
use abi::cmdline::CommandLine;
use abi::report::{
    Mbits, Millis, PingReply, PingRtt, PingStart, PingSummary, ServerReady, TcpEchoProgress,
    TcpEchoResult, TcpEchoRound, UdpEchoResult,
};
use core::net::{IpAddr, SocketAddr};

/// TCP socket buffers (each direction): large enough for window scaling to matter.
const TCP_BUFFER: usize = 256 * 1024;
/// Concurrent connections the TCP echo server accepts.
const SERVER_CONNECTIONS: usize = 4;
/// A TCP transfer that makes no progress for this long has failed.
const STALL_MICROS: u64 = 10_000_000;
/// How long a ping or datagram may take to come back.
const REPLY_TIMEOUT_MICROS: u64 = 2_000_000;
/// The ICMP identifier of our echo requests.
const PING_IDENT: u16 = 0x4e49;

fn peer_address(stack: &Stack) -> IpAddress {
    IpAddress::Ipv4(stack.peer)
}

/// The 8 stream bytes at offset `8 * word` of connection `connection`: cheap,
/// and not periodic over anything a TCP window could hide.
fn pattern_word(connection: u32, word: u64) -> u64 {
    let mixed = (word ^ u64::from(connection).wrapping_mul(0xd6e8_feb8_6659_fd93))
        .wrapping_add(0x632b_e59b_d9b4_e019);
    mixed.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (mixed >> 31)
}

/// The byte at `offset` of connection `connection`'s stream.
pub fn pattern(connection: u32, offset: u64) -> u8 {
    (pattern_word(connection, offset / 8) >> (8 * (offset % 8))) as u8
}

/// Splits `length` stream bytes starting at `offset` into a head (up to the
/// next 8-byte boundary), whole words, and a tail: returns (head, words end).
fn word_span(offset: u64, length: usize) -> (usize, usize) {
    let head = (((8 - offset % 8) % 8) as usize).min(length);
    (head, head + (length - head) / 8 * 8)
}

/// Fills `buffer` with the stream bytes starting at `offset`, a word at a time.
fn fill_pattern(connection: u32, offset: u64, buffer: &mut [u8]) {
    let (head, words_end) = word_span(offset, buffer.len());
    let first_word = (offset + head as u64) / 8;
    for (index, word) in buffer[head..words_end].chunks_exact_mut(8).enumerate() {
        word.copy_from_slice(&pattern_word(connection, first_word + index as u64).to_le_bytes());
    }
    for (index, byte) in buffer[..head].iter_mut().enumerate() {
        *byte = pattern(connection, offset + index as u64);
    }
    for (index, byte) in buffer.iter_mut().enumerate().skip(words_end) {
        *byte = pattern(connection, offset + index as u64);
    }
}

/// The index of the first byte of `buffer` that is not the stream byte at
/// `offset + index`, checking a word at a time.
fn first_mismatch(connection: u32, offset: u64, buffer: &[u8]) -> Option<usize> {
    let (head, words_end) = word_span(offset, buffer.len());
    let byte_mismatch = |index: usize| buffer[index] != pattern(connection, offset + index as u64);
    if let Some(index) = (0..head).find(|&index| byte_mismatch(index)) {
        return Some(index);
    }
    let first_word = (offset + head as u64) / 8;
    for (number, word) in buffer[head..words_end].chunks_exact(8).enumerate() {
        let expected = pattern_word(connection, first_word + number as u64);
        if u64::from_le_bytes(word.try_into().expect("chunks of 8")) != expected {
            let start = head + 8 * number;
            return (start..start + 8).find(|&index| byte_mismatch(index));
        }
    }
    (words_end..buffer.len()).find(|&index| byte_mismatch(index))
}

/// Pings the peer `count` times, `interval` ms apart, with `size` payload
/// bytes; prints each reply with its RTT and a summary. Passes if every
/// request got its reply.
pub fn ping(stack: &mut Stack, command_line: &CommandLine) -> bool {
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
    let peer = peer_address(stack);
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
    received == count
}

/// A TCP socket for the echo apps. Shared memory neither loses nor reorders
/// frames, so ACKs go out at once (no 10 ms delayed ACK) and small segments
/// are not held back (no Nagle): both only cost latency here.
fn tcp_socket() -> tcp::Socket<'static> {
    let mut socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
        tcp::SocketBuffer::new(vec![0; TCP_BUFFER]),
    );
    socket.set_ack_delay(None);
    socket.set_nagle_enabled(false);
    socket
}

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
pub fn tcp_echo(stack: &mut Stack, command_line: &CommandLine) -> bool {
    let peer = IpEndpoint::new(peer_address(stack), command_line.port);
    let parallel = u64::from(command_line.parallel);
    let mut chunk = vec![0u8; 16 * 1024];
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
                while socket.can_send() && connection.sent < connection.length {
                    let length =
                        (connection.length - connection.sent).min(chunk.len() as u64) as usize;
                    fill_pattern(connection.index, connection.sent, &mut chunk[..length]);
                    let Ok(queued) = socket.send_slice(&chunk[..length]) else {
                        break;
                    };
                    if queued == 0 {
                        break;
                    }
                    connection.sent += queued as u64;
                    progressed = true;
                }
                while socket.can_recv() {
                    let Ok(received) = socket.recv_slice(&mut chunk) else {
                        break;
                    };
                    if received == 0 {
                        break;
                    }
                    if let Some(index) =
                        first_mismatch(connection.index, connection.verified, &chunk[..received])
                    {
                        let position = connection.verified + index as u64;
                        kprintln!(
                            "tcp-echo: connection {} byte {position} is {:#04x}, expected {:#04x}",
                            connection.index,
                            chunk[index],
                            pattern(connection.index, position)
                        );
                        failed = true;
                        break;
                    }
                    connection.verified += received as u64;
                    progressed = true;
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

/// Sends `count` datagrams of `size` bytes to the peer's UDP echo server,
/// one at a time, and verifies each echo.
pub fn udp_echo(stack: &mut Stack, command_line: &CommandLine) -> bool {
    let size = command_line.size.clamp(1, 1472) as usize;
    let mut socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8 * 2048]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 8], vec![0; 8 * 2048]),
    );
    socket.bind(40_007).expect("a fresh socket binds");
    let handle = stack.sockets.add(socket);
    let peer = IpEndpoint::new(peer_address(stack), command_line.port);
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

/// Echoes TCP (up to four connections at once, one after another for ever)
/// and UDP on `port`; ICMP echo requests are answered by smoltcp. Never returns.
pub fn serve(stack: &mut Stack, command_line: &CommandLine) -> ! {
    let port = command_line.port;
    let tcp_handles: Vec<SocketHandle> = (0..SERVER_CONNECTIONS)
        .map(|_| {
            let mut socket = tcp_socket();
            socket.listen(port).expect("a fresh socket listens");
            stack.sockets.add(socket)
        })
        .collect();
    let mut udp_socket = udp::Socket::new(
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * 2048]),
        udp::PacketBuffer::new(vec![udp::PacketMetadata::EMPTY; 32], vec![0; 32 * 2048]),
    );
    udp_socket.bind(port).expect("a fresh socket binds");
    let udp_handle = stack.sockets.add(udp_socket);
    kprintln!(
        "{}",
        ServerReady {
            address: SocketAddr::new(IpAddr::V4(stack.local), port),
        }
    );
    let mut buffer = vec![0u8; 64 * 1024];
    let mut connected = [false; SERVER_CONNECTIONS];
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
            // Echo only what fits in the send buffer, so nothing is ever dropped.
            while socket.can_recv() && socket.send_capacity() > socket.send_queue() {
                let room = (socket.send_capacity() - socket.send_queue()).min(buffer.len());
                let Ok(received) = socket.recv_slice(&mut buffer[..room]) else {
                    break;
                };
                if received == 0 {
                    break;
                }
                let sent = socket.send_slice(&buffer[..received]).unwrap_or(0);
                debug_assert_eq!(sent, received);
                progressed = true;
            }
            if socket.state() == tcp::State::CloseWait && socket.send_queue() == 0 {
                socket.close();
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
        if !progressed {
            stack.wait();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn word_fill_and_check_agree_with_the_byte_pattern_at_every_alignment() {
        for offset in 0..20u64 {
            for length in [0usize, 1, 7, 8, 9, 31, 64, 100] {
                let mut buffer = vec![0u8; length];
                fill_pattern(3, offset, &mut buffer);
                for (index, byte) in buffer.iter().enumerate() {
                    assert_eq!(
                        *byte,
                        pattern(3, offset + index as u64),
                        "offset {offset} length {length} index {index}"
                    );
                }
                assert_eq!(first_mismatch(3, offset, &buffer), None);
                for corrupt in 0..length {
                    let mut bad = buffer.clone();
                    bad[corrupt] ^= 0x40;
                    assert_eq!(first_mismatch(3, offset, &bad), Some(corrupt));
                }
                if length >= 8 {
                    assert_ne!(
                        first_mismatch(4, offset, &buffer),
                        None,
                        "another connection's stream differs"
                    );
                }
            }
        }
    }
}
