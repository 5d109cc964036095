//! Two smoltcp stacks on the host, one per engine, over one shared buffer:
//! ICMP echo, and a TCP echo of 16 MiB with every byte verified.

mod common;

use common::{HostEngine, MAC_A, MAC_B, engine, wait_for_link};
use netdev_host::host::HostLink;
use netdev_host::now;
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::phy::{ChecksumCapabilities, Device};
use smoltcp::socket::{icmp, tcp};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{
    EthernetAddress, HardwareAddress, Icmpv4Packet, Icmpv4Repr, IpAddress, IpCidr, Ipv4Address,
};

const IP_A: Ipv4Address = Ipv4Address::new(192, 168, 19, 1);
const IP_B: Ipv4Address = Ipv4Address::new(192, 168, 19, 2);

struct Host {
    engine: HostEngine,
    interface: Interface,
    sockets: SocketSet<'static>,
}

impl Host {
    fn new(mut engine: HostEngine, mac: [u8; 6], ip: Ipv4Address) -> Self {
        let config = Config::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        let mut interface = Interface::new(config, &mut engine, Instant::ZERO);
        interface.update_ip_addrs(|addresses| {
            addresses
                .push(IpCidr::new(IpAddress::Ipv4(ip), 24))
                .unwrap();
        });
        Self {
            engine,
            interface,
            sockets: SocketSet::new(Vec::new()),
        }
    }

    fn poll(&mut self, now: Instant) {
        self.engine.poll(now);
        self.interface
            .poll(now, &mut self.engine, &mut self.sockets);
        self.engine.flush();
    }
}

/// Two hosts with the link up, both engines driven from this thread.
fn pair(section_size: usize) -> (Host, Host) {
    let link = HostLink::new(section_size);
    let mut a = engine(&link, 0, 1500);
    let mut b = engine(&link, 1, 1500);
    for _ in 0..10 {
        a.poll(now());
        b.poll(now());
    }
    wait_for_link(&mut a, &link, std::time::Duration::from_secs(1));
    wait_for_link(&mut b, &link, std::time::Duration::from_secs(1));
    (Host::new(a, MAC_A, IP_A), Host::new(b, MAC_B, IP_B))
}

#[test]
fn capabilities() {
    let (a, _) = pair(0x7F000);
    let capabilities = a.engine.capabilities();
    assert_eq!(capabilities.max_transmission_unit, 1514);
    // 0x71F80 bytes of data area / 1536-byte buffers.
    assert_eq!(capabilities.max_burst_size, Some(303));
    let (small, _) = pair(0x2000);
    // 0x1900 / 1536 = 4 frames, fewer than the 32 descriptors.
    assert_eq!(small.engine.capabilities().max_burst_size, Some(4));
}

#[test]
fn icmp_echo() {
    let (mut a, mut b) = pair(0x10000);
    let socket = icmp::Socket::new(
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
        icmp::PacketBuffer::new(vec![icmp::PacketMetadata::EMPTY; 4], vec![0; 4096]),
    );
    let handle = a.sockets.add(socket);
    a.sockets
        .get_mut::<icmp::Socket<'_>>(handle)
        .bind(icmp::Endpoint::Ident(0x1234))
        .unwrap();
    let mut now = Instant::ZERO;
    let mut replies = 0u16;
    let mut sent = 0u16;
    let payload: Vec<u8> = (0..1000u32).map(|value| value as u8).collect();
    for _ in 0..2000 {
        a.poll(now);
        b.poll(now);
        let socket = a.sockets.get_mut::<icmp::Socket<'_>>(handle);
        if sent == replies && sent < 5 && socket.can_send() {
            let request = Icmpv4Repr::EchoRequest {
                ident: 0x1234,
                seq_no: sent,
                data: &payload,
            };
            let buffer = socket
                .send(request.buffer_len(), IpAddress::Ipv4(IP_B))
                .unwrap();
            request.emit(
                &mut Icmpv4Packet::new_unchecked(buffer),
                &ChecksumCapabilities::default(),
            );
            sent += 1;
        }
        if socket.can_recv() {
            let (bytes, from) = socket.recv().unwrap();
            assert_eq!(from, IpAddress::Ipv4(IP_B));
            let packet = Icmpv4Packet::new_checked(bytes).unwrap();
            let reply = Icmpv4Repr::parse(&packet, &ChecksumCapabilities::default()).unwrap();
            assert_eq!(
                reply,
                Icmpv4Repr::EchoReply {
                    ident: 0x1234,
                    seq_no: replies,
                    data: &payload,
                }
            );
            replies += 1;
        }
        if replies == 5 {
            break;
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(replies, 5);
    assert_eq!(a.engine.statistics().protocol_errors.total(), 0);
    assert_eq!(b.engine.statistics().protocol_errors.total(), 0);
}

const ECHO_BYTES: usize = 16 * 1024 * 1024;

/// The echo stream's bytes at `position..position + bytes.len()`: a hash of
/// the position, so any chunking regenerates the same stream.
fn fill_stream(position: usize, bytes: &mut [u8]) {
    for (index, byte) in bytes.iter_mut().enumerate() {
        let value = ((position + index) as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        *byte = (value >> 56) as u8 ^ (value >> 23) as u8;
    }
}

#[test]
fn tcp_echo_16_mib() {
    let (mut client, mut server) = pair(0x7F000);
    let buffer = || tcp::SocketBuffer::new(vec![0; 256 * 1024]);
    let server_handle = server.sockets.add(tcp::Socket::new(buffer(), buffer()));
    server
        .sockets
        .get_mut::<tcp::Socket<'_>>(server_handle)
        .listen(7)
        .unwrap();
    let client_handle = client.sockets.add(tcp::Socket::new(buffer(), buffer()));
    client
        .sockets
        .get_mut::<tcp::Socket<'_>>(client_handle)
        .connect(client.interface.context(), (IP_B, 7), 49152)
        .unwrap();

    let mut chunk = vec![0u8; 16 * 1024];
    let mut pending = 0..0; // unsent part of `chunk`
    let mut sent = 0usize;
    let mut verified = 0usize;
    let mut expected = vec![0u8; 64 * 1024];
    let mut now = Instant::ZERO;
    let started = std::time::Instant::now();
    while verified < ECHO_BYTES {
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "echo stalled at {verified} bytes"
        );
        client.poll(now);
        server.poll(now);

        // Server: echo whatever arrives.
        let socket = server.sockets.get_mut::<tcp::Socket<'_>>(server_handle);
        while socket.can_recv() && socket.can_send() {
            let mut relay = [0u8; 16 * 1024];
            let space = (socket.send_capacity() - socket.send_queue()).min(relay.len());
            let length = socket.recv_slice(&mut relay[..space]).unwrap();
            if length == 0 {
                break;
            }
            assert_eq!(socket.send_slice(&relay[..length]).unwrap(), length);
        }

        // Client: send the stream, verify the echo.
        let socket = client.sockets.get_mut::<tcp::Socket<'_>>(client_handle);
        while socket.can_send() && sent < ECHO_BYTES {
            if pending.is_empty() {
                let length = chunk.len().min(ECHO_BYTES - sent);
                fill_stream(sent, &mut chunk[..length]);
                pending = 0..length;
            }
            let written = socket.send_slice(&chunk[pending.clone()]).unwrap();
            if written == 0 {
                break;
            }
            pending.start += written;
            sent += written;
        }
        while socket.can_recv() {
            let length = socket
                .recv(|data| {
                    let length = data.len().min(expected.len());
                    fill_stream(verified, &mut expected[..length]);
                    assert!(
                        data[..length] == expected[..length],
                        "echo differs at byte {verified}"
                    );
                    (length, length)
                })
                .unwrap();
            verified += length;
        }
        now += Duration::from_millis(1);
    }
    assert_eq!(verified, ECHO_BYTES);
    eprintln!(
        "echo: {:?}, client {:?}",
        started.elapsed(),
        client.engine.statistics()
    );
    for host in [&client, &server] {
        let statistics = host.engine.statistics();
        assert_eq!(statistics.protocol_errors.total(), 0);
        assert_eq!(statistics.resets, 0);
        assert!(statistics.received_bytes > ECHO_BYTES as u64);
    }
}
