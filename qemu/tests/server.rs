//! The ivshmem server over its real UNIX socket, with a Rust client playing
//! QEMU: message order and fds for both protocols, peer-gone handling, ID
//! reuse, too many peers, socket errors and bad sizes.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use abi::descriptor::DescriptorPage;
use abi::layout::LayoutError as SectionError;
use memmap2::MmapMut;
use qemu::server::client::Client;
use qemu::server::wire::V2Message;
use qemu::server::{Protocol, Server, ServerConfig, ServerError, ServerThread, V1Disconnect};
use qemu::shm::{LayoutError, ShmLayout};

fn start(dir: &Path, protocol: Protocol) -> ServerThread {
    let mut config = ServerConfig::new(dir.join("ivshmem.sock"));
    config.protocol = protocol;
    Server::bind(config).unwrap().spawn().unwrap()
}

fn start_notify(dir: &Path) -> ServerThread {
    let mut config = ServerConfig::new(dir.join("ivshmem.sock"));
    config.v1_disconnect = V1Disconnect::Notify;
    Server::bind(config).unwrap().spawn().unwrap()
}

fn map(fd: OwnedFd) -> MmapMut {
    let file = File::from(fd);
    // SAFETY: a test-private shared mapping; the server only writes the
    // state table, and the test reads it through this mapping with plain
    // loads after synchronising over the socket.
    unsafe { MmapMut::map_mut(&file).unwrap() }
}

fn read_u32(map: &MmapMut, offset: u64) -> u32 {
    let o = offset as usize;
    u32::from_le_bytes(map[o..o + 4].try_into().unwrap())
}

fn write_u32(map: &mut MmapMut, offset: u64, value: u32) {
    let o = offset as usize;
    map[o..o + 4].copy_from_slice(&value.to_le_bytes());
}

/// Waits up to 2 s for the eventfd to have a non-zero counter and reads it.
fn eventfd_fires(fd: &OwnedFd) -> bool {
    let mut file = File::from(fd.try_clone().unwrap());
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let mut buf = [0u8; 8];
        match file.read(&mut buf) {
            Ok(8) => return u64::from_le_bytes(buf) > 0,
            Err(e) if e.kind() == ErrorKind::WouldBlock && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5));
            }
            _ => return false,
        }
    }
}

/// Whether the (non-blocking) eventfd has a pending count right now.
fn eventfd_pending(fd: &OwnedFd) -> bool {
    let mut file = File::from(fd.try_clone().unwrap());
    let mut buf = [0u8; 8];
    matches!(file.read(&mut buf), Ok(8))
}

fn ring(fd: &OwnedFd) {
    File::from(fd.try_clone().unwrap())
        .write_all(&1u64.to_le_bytes())
        .unwrap();
}

/// A v1 client after its greeting: id, shm mapping, the others' eventfds
/// (by peer and vector) and its own.
struct V1Peer {
    client: Client,
    id: i64,
    shm: MmapMut,
    others: Vec<(i64, OwnedFd)>,
    own: Vec<OwnedFd>,
}

fn v1_connect(socket: &Path, existing: &[i64], vectors: usize) -> V1Peer {
    let client = Client::connect(socket).unwrap();
    let (version, fd) = client.recv_v1().unwrap();
    assert_eq!((version, fd.is_none()), (0, true), "version first");
    let (id, fd) = client.recv_v1().unwrap();
    assert!(fd.is_none());
    let (minus_one, shm) = client.recv_v1().unwrap();
    assert_eq!(minus_one, -1);
    let shm = map(shm.expect("shm fd with -1"));
    let mut others = Vec::new();
    for &peer in existing {
        for _ in 0..vectors {
            let (got, fd) = client.recv_v1().unwrap();
            assert_eq!(got, peer, "existing peers' eventfds in order");
            others.push((got, fd.expect("eventfd")));
        }
    }
    let mut own = Vec::new();
    for _ in 0..vectors {
        let (got, fd) = client.recv_v1().unwrap();
        assert_eq!(got, id, "own eventfds last");
        own.push(fd.expect("own eventfd"));
    }
    V1Peer {
        client,
        id,
        shm,
        others,
        own,
    }
}

fn assert_quiet(client: &Client) {
    client
        .set_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let err = client.recv_v1().unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
        "expected no message, got {err}"
    );
    client.set_timeout(Some(Duration::from_secs(5))).unwrap();
}

#[test]
fn v1_greeting_order_fds_and_doorbells() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Protocol::V1);
    let socket = server.socket_path().to_path_buf();
    let a = v1_connect(&socket, &[], 2);
    assert_eq!(a.id, 0);
    assert_eq!(a.shm.len(), 1 << 20);
    let page = DescriptorPage::parse(&a.shm).unwrap();
    assert_eq!(page.layout.max_peers, 2);
    assert_eq!(page.vectors, 2);
    assert_eq!(page.protocol, 1);
    assert_eq!(page.layout.state_table_offset, 0x1000);
    assert_eq!(page.layout.state_table_size, 0x1000);
    assert_eq!(page.layout.output_section_size, 0x7f000);
    assert_eq!(page.layout.rw_section_size, 0);
    assert_eq!(server.layout().descriptor(), Some(page));

    let mut b = v1_connect(&socket, &[0], 2);
    assert_eq!(b.id, 1);
    // A learns about B: ID 1 once per vector, with B's eventfds.
    let mut a_others = Vec::new();
    for _ in 0..2 {
        let (id, fd) = a.client.recv_v1().unwrap();
        assert_eq!(id, 1);
        a_others.push(fd.expect("eventfd of the new peer"));
    }
    // Doorbells: A rings "peer 1 vector v" → B's own vector v, and back.
    for (v, a_to_b) in a_others.iter().enumerate() {
        ring(a_to_b);
        assert!(eventfd_fires(&b.own[v]), "B vector {v}");
        assert!(!eventfd_pending(&b.own[1 - v]), "only vector {v}");
        ring(&b.others[v].1);
        assert!(eventfd_fires(&a.own[v]), "A vector {v}");
    }
    // Both see the same memory.
    write_u32(&mut b.shm, 0x2000, 0xfeed);
    assert_eq!(read_u32(&a.shm, 0x2000), 0xfeed);
    assert_quiet(&a.client);
    assert_quiet(&b.client);
}

#[test]
fn v1_quiet_peer_gone_zeroes_state_rings_vector0_and_keeps_eventfds() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Protocol::V1);
    let socket = server.socket_path().to_path_buf();
    let layout = *server.layout();
    let mut a = v1_connect(&socket, &[], 2);
    let mut b = v1_connect(&socket, &[0], 2);
    let mut a_to_1 = Vec::new();
    for _ in 0..2 {
        a_to_1.push(a.client.recv_v1().unwrap().1.unwrap());
    }
    write_u32(&mut a.shm, layout.state_offset(0), 4);
    write_u32(&mut b.shm, layout.state_offset(1), 3);
    drop(b.client);
    assert!(eventfd_fires(&a.own[0]), "A's vector 0 rung");
    assert!(!eventfd_pending(&a.own[1]), "vector 1 not rung");
    assert_eq!(
        read_u32(&a.shm, layout.state_offset(1)),
        0,
        "B's state zeroed"
    );
    assert_eq!(
        read_u32(&a.shm, layout.state_offset(0)),
        4,
        "A's state kept"
    );
    assert_quiet(&a.client);
    // A rings the departed peer 1; that must not reach its successor.
    ring(&a_to_1[1]);

    // A restarted B gets ID 1 back and the same eventfds; A is told nothing
    // (it still holds them) and can ring the newcomer.
    let c = v1_connect(&socket, &[0], 2);
    assert_eq!(c.id, 1);
    assert_quiet(&a.client);
    assert!(!eventfd_pending(&c.own[1]), "stale ring drained");
    for (v, a_to_c) in a_to_1.iter().enumerate() {
        ring(a_to_c);
        assert!(eventfd_fires(&c.own[v]), "C vector {v}");
    }
    ring(&c.others[1].1);
    assert!(eventfd_fires(&a.own[1]));

    // If A leaves, the next newcomer gets 0 (lowest free), not 2, with A's eventfds.
    drop(a.client);
    assert!(eventfd_fires(&c.own[0]), "C's vector 0 rung");
    assert_quiet(&c.client);
    let d = v1_connect(&socket, &[1], 2);
    assert_eq!(d.id, 0);
    assert_quiet(&c.client);
    ring(&c.others[0].1);
    assert!(eventfd_fires(&d.own[0]));
}

/// QEMU makes the eventfds it receives blocking (`O_NONBLOCK` is shared with
/// the server's descriptors); the server must still drain a returning ID's
/// eventfds without blocking.
#[test]
fn v1_reconnect_survives_eventfds_made_blocking() {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Protocol::V1);
    let socket = server.socket_path().to_path_buf();
    let a = v1_connect(&socket, &[], 2);
    for fd in &a.own {
        let flags = OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).unwrap());
        fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).unwrap();
    }
    drop(a);
    let greeted = std::thread::spawn(move || v1_connect(&socket, &[], 2).id);
    let deadline = Instant::now() + Duration::from_secs(5);
    while !greeted.is_finished() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(10));
    }
    if !greeted.is_finished() {
        // The server thread is stuck; do not wait for it on drop.
        std::mem::forget(server);
        panic!("the server blocked draining the eventfds of a returning ID");
    }
    assert_eq!(greeted.join().unwrap(), 0);
}

#[test]
fn v1_notify_peer_gone_sends_the_bare_id() {
    let dir = tempfile::tempdir().unwrap();
    let server = start_notify(dir.path());
    let socket = server.socket_path().to_path_buf();
    let layout = *server.layout();
    let mut a = v1_connect(&socket, &[], 2);
    let mut b = v1_connect(&socket, &[0], 2);
    for _ in 0..2 {
        a.client.recv_v1().unwrap();
    }
    write_u32(&mut a.shm, layout.state_offset(0), 4);
    write_u32(&mut b.shm, layout.state_offset(1), 3);
    drop(b.client);
    let (id, fd) = a.client.recv_v1().unwrap();
    assert_eq!((id, fd.is_none()), (1, true), "bare ID = peer gone");
    assert_eq!(
        read_u32(&a.shm, layout.state_offset(1)),
        0,
        "B's state zeroed"
    );
    assert_eq!(
        read_u32(&a.shm, layout.state_offset(0)),
        4,
        "A's state kept"
    );
    assert!(eventfd_fires(&a.own[0]), "A's vector 0 rung");
    assert!(!eventfd_pending(&a.own[1]), "vector 1 not rung");

    // A restarted B gets ID 1 back; A hears about it again.
    let c = v1_connect(&socket, &[0], 2);
    assert_eq!(c.id, 1);
    for _ in 0..2 {
        assert_eq!(a.client.recv_v1().unwrap().0, 1);
    }
    // If A leaves, the next newcomer gets 0 (lowest free), not 2.
    drop(a.client);
    let (id, fd) = c.client.recv_v1().unwrap();
    assert_eq!((id, fd.is_none()), (0, true));
    let d = v1_connect(&socket, &[1], 2);
    assert_eq!(d.id, 0);
}

#[test]
fn v1_too_many_peers_are_closed() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Protocol::V1);
    let socket = server.socket_path().to_path_buf();
    let a = v1_connect(&socket, &[], 2);
    let b = v1_connect(&socket, &[0], 2);
    for _ in 0..2 {
        a.client.recv_v1().unwrap();
    }
    let third = Client::connect(&socket).unwrap();
    let err = third.recv_v1().unwrap_err();
    assert_eq!(err.kind(), ErrorKind::UnexpectedEof, "{err}");
    assert_quiet(&a.client);
    assert_quiet(&b.client);
}

#[test]
fn survives_clients_that_vanish_or_talk() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Protocol::V1);
    let socket = server.socket_path().to_path_buf();
    let a = v1_connect(&socket, &[], 2);
    for i in 0..50 {
        let c = Client::connect(&socket).unwrap();
        if i % 2 == 0 {
            // Vanish right away, possibly mid-greeting.
            drop(c);
        } else {
            // Read a little, then talk (any data means "disconnect").
            c.recv_v1().unwrap();
            let mut stream = c.stream();
            let _ = stream.write_all(b"hello");
        }
    }
    // A saw each announced newcomer come and go; drain that.
    a.client
        .set_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    while a.client.recv_v1().is_ok() {}
    let b = v1_connect(&socket, &[0], 2);
    assert_eq!(b.id, 1);
    drop(server);
    assert!(!socket.exists(), "socket removed on stop");
}

/// A v2 client after its greeting.
struct V2Peer {
    client: Client,
    id: u32,
    shm: MmapMut,
    others: Vec<(u32, u32, OwnedFd)>,
    own: Vec<OwnedFd>,
}

fn v2_connect(socket: &Path, existing: &[u32], vectors: u32) -> V2Peer {
    let client = Client::connect(socket).unwrap();
    let (init, shm) = client.recv_v2().unwrap();
    let V2Message::Init {
        version,
        compatible_version,
        id,
        max_peers,
        vectors: got_vectors,
        protocol,
        output_section_size,
    } = init
    else {
        panic!("INIT first, got {init:?}");
    };
    assert_eq!((version, compatible_version), (2, 2));
    assert_eq!((max_peers, got_vectors, protocol), (2, vectors, 1));
    assert_eq!(output_section_size, 0x7f000);
    let shm = map(shm.expect("shm fd with INIT"));
    let mut others = Vec::new();
    for &peer in existing {
        for vector in 0..vectors {
            let (msg, fd) = client.recv_v2().unwrap();
            assert_eq!(msg, V2Message::EventFd { id: peer, vector });
            others.push((peer, vector, fd.expect("eventfd")));
        }
    }
    let mut own = Vec::new();
    for vector in 0..vectors {
        let (msg, fd) = client.recv_v2().unwrap();
        assert_eq!(msg, V2Message::EventFd { id, vector });
        own.push(fd.expect("own eventfd"));
    }
    V2Peer {
        client,
        id,
        shm,
        others,
        own,
    }
}

#[test]
fn v2_greeting_doorbells_and_peer_gone() {
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), Protocol::V2);
    let socket = server.socket_path().to_path_buf();
    let layout = *server.layout();
    assert_eq!(layout.sections.state_table_offset, 0);
    assert_eq!(layout.sections.rw_section_size, 0x1000);
    let mut a = v2_connect(&socket, &[], 2);
    assert_eq!(a.id, 0);
    assert_eq!(a.shm.len(), 1 << 20);
    assert!(
        a.shm[..0x1000].iter().all(|&b| b == 0),
        "no descriptor page in v2"
    );
    let mut b = v2_connect(&socket, &[0], 2);
    assert_eq!(b.id, 1);
    let mut a_others = Vec::new();
    for vector in 0..2 {
        let (msg, fd) = a.client.recv_v2().unwrap();
        assert_eq!(msg, V2Message::EventFd { id: 1, vector });
        a_others.push(fd.expect("eventfd"));
    }
    for (v, a_to_b) in a_others.iter().enumerate() {
        ring(a_to_b);
        assert!(eventfd_fires(&b.own[v]));
        assert_eq!(b.others[v].0, 0);
        ring(&b.others[v].2);
        assert!(eventfd_fires(&a.own[v]));
    }
    // Peer gone: state zeroed, PEER_GONE, no vector 0 from the server (QEMU does that).
    write_u32(&mut a.shm, layout.state_offset(0), 4);
    write_u32(&mut b.shm, layout.state_offset(1), 3);
    drop(b.client);
    let (msg, fd) = a.client.recv_v2().unwrap();
    assert_eq!(msg, V2Message::PeerGone { id: 1 });
    assert!(fd.is_none());
    assert_eq!(read_u32(&a.shm, 4), 0);
    assert_eq!(read_u32(&a.shm, 0), 4);
    assert!(!eventfd_pending(&a.own[0]));
    // Reconnect: old ID back; a third is closed.
    let c = v2_connect(&socket, &[0], 2);
    assert_eq!(c.id, 1);
    let third = Client::connect(&socket).unwrap();
    assert_eq!(
        third.recv_v2().unwrap_err().kind(),
        ErrorKind::UnexpectedEof
    );
}

#[test]
fn socket_in_use_stale_and_uncreatable() {
    let dir = tempfile::tempdir().unwrap();
    let running = start(dir.path(), Protocol::V1);
    let a = v1_connect(running.socket_path(), &[], 2);
    let err = Server::bind(ServerConfig::new(running.socket_path())).unwrap_err();
    assert!(matches!(err, ServerError::SocketInUse(_)), "{err}");
    assert!(err.to_string().contains("another server is listening"));
    // Detected without connecting: a connected peer hears of no phantom peer.
    assert_quiet(&a.client);
    drop(a);
    drop(running);

    // A stale socket file (nobody listening) is replaced.
    let stale = dir.path().join("stale.sock");
    drop(std::os::unix::net::UnixListener::bind(&stale).unwrap());
    assert!(stale.exists());
    let server = Server::bind(ServerConfig::new(&stale)).unwrap();
    drop(server);
    assert!(!stale.exists());

    let file = dir.path().join("file");
    std::fs::write(&file, b"x").unwrap();
    let err = Server::bind(ServerConfig::new(&file)).unwrap_err();
    assert!(matches!(err, ServerError::NotASocket(_)), "{err}");
    assert!(file.exists(), "never replaces a non-socket");

    let nowhere: PathBuf = dir.path().join("no/such/dir/s.sock");
    let err = Server::bind(ServerConfig::new(&nowhere)).unwrap_err();
    assert!(matches!(err, ServerError::Bind { .. }), "{err}");
    assert!(err.to_string().contains("cannot create socket"), "{err}");
}

#[test]
fn sizes_and_counts_are_validated() {
    let base = ServerConfig::new("/nonexistent/unused.sock");
    let layout = |f: &dyn Fn(&mut ServerConfig)| {
        let mut c = base.clone();
        f(&mut c);
        c.layout()
    };
    // Rounded up to a power of two.
    assert_eq!(layout(&|c| c.size = 3 << 20).unwrap().shm_size, 4 << 20);
    assert_eq!(layout(&|c| c.size = 0x100001).unwrap().shm_size, 2 << 20);
    assert_eq!(
        layout(&|c| c.output_section = Some(0x10000)).unwrap(),
        ShmLayout::new(1 << 20, true, 2, 2, 1, Some(0x10000)).unwrap()
    );
    // Too small for the protocol.
    assert!(matches!(
        layout(&|c| c.size = 0x4000),
        Err(ServerError::Layout(LayoutError::NetOutputTooSmall {
            size: 0x1000,
            ..
        }))
    ));
    assert!(matches!(
        layout(&|c| c.output_section = Some(0x1000)),
        Err(ServerError::Layout(LayoutError::NetOutputTooSmall {
            size: 0x1000,
            ..
        }))
    ));
    assert!(matches!(
        layout(&|c| c.output_section = Some(0x80000)),
        Err(ServerError::Layout(LayoutError::Sections(
            SectionError::TooLarge { .. }
        )))
    ));
    assert!(matches!(
        layout(&|c| c.output_section = Some(0x2800)),
        Err(ServerError::Layout(LayoutError::Sections(
            SectionError::NotPageAligned { value: 0x2800, .. }
        )))
    ));
    assert!(matches!(
        layout(&|c| c.max_peers = 3),
        Err(ServerError::Layout(LayoutError::NetPeers(3)))
    ));
    assert!(matches!(
        layout(&|c| c.max_peers = 17),
        Err(ServerError::Layout(LayoutError::BadPeers(17)))
    ));
    assert!(matches!(
        layout(&|c| c.vectors = 0),
        Err(ServerError::BadVectors(0))
    ));
    assert!(matches!(
        layout(&|c| c.vectors = 65),
        Err(ServerError::BadVectors(65))
    ));
    assert!(matches!(
        layout(&|c| {
            c.net_protocol = 0x8003;
            c.max_peers = 3;
        }),
        Err(ServerError::VirtioPeers(3))
    ));
    // Other protocols may have more peers; v2 has no descriptor page.
    let l = layout(&|c| {
        c.net_protocol = 0;
        c.max_peers = 3;
        c.protocol = Protocol::V2;
    })
    .unwrap();
    assert_eq!(l.sections.output_section_size, 0x55000);
    assert!(l.descriptor().is_none());
    // Bind refuses before creating anything.
    let dir = tempfile::tempdir().unwrap();
    let mut c = ServerConfig::new(dir.path().join("s.sock"));
    c.max_peers = 3;
    assert!(Server::bind(c).is_err());
    assert!(!dir.path().join("s.sock").exists());
}

#[test]
fn server_with_many_peers() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = ServerConfig::new(dir.path().join("s.sock"));
    config.net_protocol = 0;
    config.max_peers = 4;
    config.vectors = 1;
    let server = Server::bind(config).unwrap().spawn().unwrap();
    let socket = server.socket_path().to_path_buf();
    let p0 = v1_connect(&socket, &[], 1);
    let p1 = v1_connect(&socket, &[0], 1);
    let p2 = v1_connect(&socket, &[0, 1], 1);
    assert_eq!((p0.id, p1.id, p2.id), (0, 1, 2));
    // p2 rings p0 and p1 through the fds it received.
    ring(&p2.others[0].1);
    assert!(eventfd_fires(&p0.own[0]));
    ring(&p2.others[1].1);
    assert!(eventfd_fires(&p1.own[0]));
    drop(p1.client);
    // p0 heard about 1 and 2 joining, nobody about 1 leaving (quiet mode),
    // but both survivors' vector 0 rings.
    assert_eq!(p0.client.recv_v1().unwrap().0, 1);
    assert_eq!(p0.client.recv_v1().unwrap().0, 2);
    assert!(eventfd_fires(&p0.own[0]));
    assert!(eventfd_fires(&p2.own[0]));
    assert_quiet(&p0.client);
    assert_quiet(&p2.client);
    // The newcomer takes ID 1; p0 and p2 already hold its eventfds.
    let p3 = v1_connect(&socket, &[0, 2], 1);
    assert_eq!(p3.id, 1);
    assert_quiet(&p0.client);
    assert_quiet(&p2.client);
    ring(&p2.others[1].1);
    assert!(eventfd_fires(&p3.own[0]));
    // A newcomer while ID 3 was never used: everyone learns about it.
    let p4 = v1_connect(&socket, &[0, 1, 2], 1);
    assert_eq!(p4.id, 3);
    for p in [&p0, &p2, &p3] {
        let (id, fd) = p.client.recv_v1().unwrap();
        assert_eq!((id, fd.is_some()), (3, true));
    }
}
