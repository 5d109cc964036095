//! The host bridge without VMs: the v1 client against our server in this
//! process, the State-register emulation, TAP devices in network namespaces
//! made by the tests, and frames from Linux's stack crossing a server link
//! to a netdev engine and to a second bridge.
//!
//! Tests that need root and `/dev/net/tun` print why they skipped when
//! those are missing (and fail where `CI` is set, [`qemu::hostpeer::skip`]). Every namespace is made here (`unshare` in a thread of
//! its own) and dies with its last thread or fd; all traffic stays on the
//! addresses the tests give inside them (10.0.0.0/24).

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use netdev::{Notifier, SharedMemory, State};
use nix::sched::{CloneFlags, setns, unshare};
use qemu::bridge::link::{Link, LinkEngine};
use qemu::bridge::tap::{self, Tap, TapError};
use qemu::bridge::{BridgeLink, BridgeOptions, Control, Summary};
use qemu::server::{Server, ServerConfig, ServerThread, V1Disconnect};

const DEADLINE: Duration = Duration::from_secs(20);

/// Held by every test that opens TAP devices or starts processes, for its
/// whole run. A child started while another test holds a TAP fd inherits
/// that fd between `fork` and `exec` (close-on-exec takes effect only at
/// `exec`), so the TAP would outlive its close for a moment: "busy", or not
/// yet removed.
static EXCLUSIVE: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn exclusive() -> std::sync::MutexGuard<'static, ()> {
    EXCLUSIVE.lock().unwrap_or_else(|e| e.into_inner())
}

fn server(dir: &Path, disconnect: V1Disconnect) -> ServerThread {
    let mut config = ServerConfig::new(dir.join("ivshmem.sock"));
    config.v1_disconnect = disconnect;
    Server::bind(config).unwrap().spawn().unwrap()
}

/// Why the TAP tests cannot run here, if they cannot.
fn no_tap() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some("not root (TAP devices and namespaces need CAP_NET_ADMIN)".into());
    }
    if !Path::new(tap::TUN_DEVICE).exists() {
        return Some(format!("{} is missing (modprobe tun)", tap::TUN_DEVICE));
    }
    None
}

/// Skips the test (saying why) without root or TUN; otherwise takes the
/// [`EXCLUSIVE`] lock for the rest of the test.
macro_rules! require_tap {
    () => {
        if let Some(reason) = no_tap() {
            qemu::hostpeer::skip(&reason);
            return;
        }
        let _exclusive = exclusive();
    };
}

/// A network namespace of our own, alive while this handle (an fd to it)
/// or a thread in it lives.
struct Namespace(Arc<OwnedFd>);

impl Namespace {
    fn new() -> Namespace {
        let fd = thread::spawn(|| {
            unshare(CloneFlags::CLONE_NEWNET).expect("unshare(CLONE_NEWNET)");
            OwnedFd::from(std::fs::File::open("/proc/thread-self/ns/net").unwrap())
        })
        .join()
        .unwrap();
        Namespace(Arc::new(fd))
    }

    /// Runs `f` on a new thread inside the namespace.
    fn spawn<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
        let fd = self.0.clone();
        thread::spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns");
            f()
        })
    }

    /// Runs `f` inside the namespace and waits for it.
    fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        self.spawn(f).join().unwrap()
    }
}

/// Waits (in the calling thread's namespace) until `name` exists.
fn wait_for_interface(name: &str) {
    let start = Instant::now();
    while tap::interface_index(name).unwrap().is_none() {
        assert!(start.elapsed() < DEADLINE, "{name} never appeared");
        thread::sleep(Duration::from_millis(10));
    }
}

/// Polls `engine` until `done` or the deadline.
fn poll_until(engine: &mut LinkEngine, what: &str, mut done: impl FnMut(&mut LinkEngine) -> bool) {
    let start = Instant::now();
    loop {
        engine.poll(netdev_host::now());
        if done(engine) {
            return;
        }
        assert!(start.elapsed() < DEADLINE, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

fn eventfd_count(fd: &OwnedFd) -> u64 {
    let mut counter = [0u8; 8];
    match nix::unistd::read(fd, &mut counter) {
        Ok(8) => u64::from_ne_bytes(counter),
        _ => 0,
    }
}

#[test]
fn doorbell_client_receives_memory_and_eventfds() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Quiet);
    let socket = server.socket_path().to_path_buf();
    let first = Link::doorbell(&socket).unwrap();
    assert_eq!(first.id(), 0);
    assert_eq!(first.layout(), server.layout());
    assert_eq!(first.own_eventfds().count(), 2, "one eventfd per vector");
    assert!(!first.peer_reachable(), "no peer yet");
    assert!(first.has_doorbells());

    let mut second = Link::doorbell(&socket).unwrap();
    assert_eq!(second.id(), 1);
    assert!(
        second.peer_reachable(),
        "the existing peer's eventfds come in the greeting"
    );
    assert_eq!(second.own_eventfds().count(), 2);

    // The first learns of the second through the socket, later.
    let mut first = first;
    let start = Instant::now();
    while !first.peer_reachable() {
        let news = first.server_news();
        assert!(!news.closed);
        assert!(start.elapsed() < DEADLINE, "peer 1 never announced");
        thread::sleep(Duration::from_millis(5));
    }

    // Both map the same memory: a state written by one is seen by the other.
    let engine = second.engine(1500).unwrap();
    assert_eq!(first.state(1), State::Reset);
    drop(engine);

    // The link is full: a third client is turned away with a clear error.
    let error = format!("{:#}", Link::doorbell(&socket).unwrap_err());
    assert!(error.contains("already has two peers"), "{error}");

    // A departing peer: quiet mode tells nothing, but rings vector 0.
    let vector0 = first.own_eventfds().next().unwrap().try_clone().unwrap();
    let _ = eventfd_count(&vector0);
    drop(second);
    let start = Instant::now();
    while eventfd_count(&vector0) == 0 {
        assert!(start.elapsed() < DEADLINE, "no vector-0 ring on peer gone");
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn notify_mode_announces_departures_and_new_eventfds() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Notify);
    let socket = server.socket_path().to_path_buf();
    let mut first = Link::doorbell(&socket).unwrap();
    let second = Link::doorbell(&socket).unwrap();
    let wait =
        |link: &mut Link, what: &str, check: &dyn Fn(&qemu::bridge::link::ServerNews) -> bool| {
            let start = Instant::now();
            loop {
                if check(&link.server_news()) {
                    return;
                }
                assert!(start.elapsed() < DEADLINE, "{what}");
                thread::sleep(Duration::from_millis(5));
            }
        };
    wait(&mut first, "peer announced", &|n| n.peer_announced);
    drop(second);
    wait(&mut first, "peer gone", &|n| n.peer_gone);
    assert!(!first.peer_reachable());
    let _again = Link::doorbell(&socket).unwrap();
    wait(&mut first, "peer announced again", &|n| n.peer_announced);
    assert!(first.peer_reachable());
}

#[test]
fn the_notifier_emulates_the_state_register() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Quiet);
    let socket = server.socket_path().to_path_buf();
    let mut first = Link::doorbell(&socket).unwrap();
    let second = Link::doorbell(&socket).unwrap();
    while !first.peer_reachable() {
        first.server_news();
        thread::sleep(Duration::from_millis(5));
    }
    let peer_vectors: Vec<OwnedFd> = second
        .own_eventfds()
        .map(|fd| fd.try_clone().unwrap())
        .collect();
    for fd in &peer_vectors {
        eventfd_count(fd);
    }
    // Engine::new writes RESET: the first write always rings vector 0,
    // even though the entry already held 0 (docs/descriptor-page.md §7).
    let engine = first.engine(1500).unwrap();
    assert_eq!(eventfd_count(&peer_vectors[0]), 1);
    assert_eq!(eventfd_count(&peer_vectors[1]), 0);
    let (state_table, _, _, notifier) = engine.parts();
    // The same value again: stored, no ring.
    notifier.set_state(0);
    assert_eq!(eventfd_count(&peer_vectors[0]), 0);
    // A change: stored with release and rung on vector 0 only.
    notifier.set_state(1);
    assert_eq!(state_table.load_u32(0, Ordering::Acquire), 1);
    assert_eq!(second.state(0), State::Init);
    assert_eq!(eventfd_count(&peer_vectors[0]), 1);
    assert_eq!(eventfd_count(&peer_vectors[1]), 0);
    // Data doorbells ring the vector asked for.
    notifier.notify(1);
    assert_eq!(eventfd_count(&peer_vectors[1]), 1);
    assert_eq!(eventfd_count(&peer_vectors[0]), 0);
    // A second engine over the same link is refused (one writable view).
    assert!(first.engine(1500).is_err());
}

#[test]
fn plain_links_need_a_descriptor_page() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm");
    let mut region = qemu::shm::PlainRegion::create_net(&path, 1 << 20).unwrap();
    region.persist();
    let mut link = Link::plain(&path, 1).unwrap();
    assert_eq!(link.id(), 1);
    assert!(!link.has_doorbells());
    assert_eq!(link.own_eventfds().count(), 0);
    let engine = link.engine(1500).unwrap();
    assert_eq!(region.state(1), 0, "RESET written");
    drop(engine);
    assert!(Link::plain(&path, 2).is_err());
    let junk = dir.path().join("junk");
    std::fs::write(&junk, vec![0u8; 1 << 16]).unwrap();
    let error = format!("{:#}", Link::plain(&junk, 0).unwrap_err());
    assert!(error.contains("descriptor page"), "{error}");
}

#[test]
fn tap_devices_are_created_configured_and_removed() {
    require_tap!();
    let namespace = Namespace::new();
    namespace.run(|| {
        let tap = Tap::open("ethb0", 1400).unwrap();
        assert!(tap.created());
        assert_eq!(tap.mtu().unwrap(), 1400);
        let index = tap::interface_index("ethb0").unwrap();
        assert!(index.is_some());
        // Up: a write is accepted (a down TAP answers EIO).
        let mut frame = [0u8; 60];
        frame[..6].copy_from_slice(&[0xff; 6]);
        frame[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, 9]);
        frame[12..14].copy_from_slice(&[0x88, 0xb5]); // local experimental ethertype
        tap.write(&frame).unwrap();
        // The name is in use while we hold it.
        assert!(matches!(Tap::open("ethb0", 1500), Err(TapError::Busy(_))));
        // Something that is not a TAP has the name.
        assert!(matches!(Tap::open("lo", 1500), Err(TapError::NotTap(_))));
        // An MTU Linux refuses.
        assert!(matches!(
            Tap::open("ethb1", 70000),
            Err(TapError::Mtu { .. })
        ));
        assert_eq!(tap::interface_index("ethb1").unwrap(), None);
        assert!(matches!(
            Tap::open("no/slash", 1500),
            Err(TapError::BadName(_))
        ));
        drop(tap);
        assert_eq!(
            tap::interface_index("ethb0").unwrap(),
            None,
            "removed on close"
        );
    });
}

/// Makes a persistent TAP the way `ip tuntap add mode tap NAME` does.
fn persistent_tap(name: &str, persist: bool) {
    let tap = Tap::open(name, 1500).unwrap();
    // SAFETY: TUNSETPERSIST takes an integer argument, not a pointer.
    let result = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&tap.as_fd()),
            libc::TUNSETPERSIST,
            libc::c_ulong::from(persist),
        )
    };
    assert_eq!(result, 0, "TUNSETPERSIST");
}

#[test]
fn an_existing_tap_is_used_as_it_is_and_left_in_place() {
    require_tap!();
    let namespace = Namespace::new();
    namespace.run(|| {
        persistent_tap("ethb2", true);
        tap::set_mtu("ethb2", 1280).unwrap();
        {
            let tap = Tap::open("ethb2", 9000).unwrap();
            assert!(!tap.created());
            assert_eq!(tap.mtu().unwrap(), 1280, "its MTU is left alone");
        }
        assert!(
            tap::interface_index("ethb2").unwrap().is_some(),
            "still there"
        );
        persistent_tap("ethb2", false);
        assert_eq!(tap::interface_index("ethb2").unwrap(), None);
    });
}

/// A bridge running in `namespace` on `tap`, until stopped.
struct RunningBridge {
    control: Arc<Control>,
    handle: Option<JoinHandle<anyhow::Result<Summary>>>,
}

impl RunningBridge {
    fn start(namespace: &Namespace, options: BridgeOptions) -> RunningBridge {
        let control = Arc::new(Control::new().unwrap());
        let control_clone = control.clone();
        let name = options.tap.clone();
        let handle = namespace.spawn(move || qemu::bridge::run(&options, &control_clone));
        namespace.run(move || wait_for_interface(&name));
        RunningBridge {
            control,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> Summary {
        self.control.stop();
        self.handle.take().unwrap().join().unwrap().unwrap()
    }
}

impl Drop for RunningBridge {
    fn drop(&mut self) {
        self.control.stop();
        if let Some(handle) = self.handle.take() {
            let _ = handle.join();
        }
    }
}

const BRIDGE_MAC_PEER: [u8; 6] = [0x02, 0, 0, 0, 0, 0x01];

/// An ARP request from 10.0.0.1 (`BRIDGE_MAC_PEER`) for `target`.
fn arp_request(target: Ipv4Addr) -> Vec<u8> {
    let mut frame = vec![0u8; 60];
    frame[..6].copy_from_slice(&[0xff; 6]);
    frame[6..12].copy_from_slice(&BRIDGE_MAC_PEER);
    frame[12..14].copy_from_slice(&[0x08, 0x06]);
    frame[14..22].copy_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    frame[22..28].copy_from_slice(&BRIDGE_MAC_PEER);
    frame[28..32].copy_from_slice(&[10, 0, 0, 1]);
    frame[38..42].copy_from_slice(&target.octets());
    frame
}

#[test]
fn linux_answers_an_engine_across_the_bridge() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Quiet);
    let socket = server.socket_path().to_path_buf();
    let namespace = Namespace::new();
    let mut options = BridgeOptions::new(BridgeLink::Doorbell(socket.clone()), "tap0");
    let pcap = dir.path().join("link.pcap");
    options.pcap = Some(pcap.clone());
    // --ip: the address is there before the link is joined.
    options.address = Some(qemu::bridge::parse_address("10.0.0.254/24").unwrap());
    let bridge = RunningBridge::start(&namespace, options);

    // The TAP has no carrier while the link is down.
    let running = |namespace: &Namespace, want: bool| {
        namespace.run(move || {
            let start = Instant::now();
            while tap::running("tap0").unwrap() != want {
                assert!(
                    start.elapsed() < DEADLINE,
                    "tap0 never became running={want}"
                );
                thread::sleep(Duration::from_millis(10));
            }
        })
    };
    running(&namespace, false);

    // The other peer: an engine over a second v1 client of the same server.
    let mut link = Link::doorbell(&socket).unwrap();
    let mut engine = link.engine(1500).unwrap();
    poll_until(&mut engine, "link up", |engine| engine.link_up());
    running(&namespace, true);
    // Linux answers our ARP request for its address.
    engine
        .send(&arp_request(Ipv4Addr::new(10, 0, 0, 254)))
        .unwrap();
    let mut reply = Vec::new();
    poll_until(&mut engine, "the ARP reply", |engine| {
        while let Some(frame) = engine.receive_frame() {
            let is_reply =
                frame.len() >= 42 && frame[12..14] == [0x08, 0x06] && frame[20..22] == [0, 2];
            if is_reply {
                reply = frame.to_vec();
            }
            engine.receive_advance();
        }
        !reply.is_empty()
    });
    assert_eq!(&reply[..6], &BRIDGE_MAC_PEER, "to us");
    assert_eq!(&reply[28..32], &[10, 0, 0, 254], "for 10.0.0.254");
    assert_eq!(&reply[32..38], &BRIDGE_MAC_PEER);

    // The peer resets: the carrier goes, and comes back with the link.
    engine.reset();
    running(&namespace, false);
    poll_until(&mut engine, "link up again", |engine| engine.link_up());
    running(&namespace, true);

    // Leaving: the bridge writes RESET; the engine sees the link go down.
    let summary = bridge.stop();
    poll_until(&mut engine, "link down", |engine| !engine.link_up());
    assert!(summary.to_tap.frames >= 1, "{summary}");
    assert!(summary.to_link.frames >= 1, "{summary}");
    assert_eq!(summary.link_ups, 2);
    assert_eq!(summary.protocol_errors, 0);
    assert_eq!(
        namespace.run(|| tap::interface_index("tap0").unwrap()),
        None
    );

    // The capture holds both directions, in the classic format.
    let bytes = std::fs::read(&pcap).unwrap();
    assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes());
    let frames = pcap_frames(&bytes);
    assert_eq!(
        frames.len() as u64,
        summary.to_tap.frames + summary.to_link.frames
    );
    assert!(
        frames
            .iter()
            .any(|f| f[12..14] == [0x08, 0x06] && f[20..22] == [0, 1])
    );
    assert!(
        frames
            .iter()
            .any(|f| f[12..14] == [0x08, 0x06] && f[20..22] == [0, 2])
    );
}

/// The frames of a classic pcap file.
fn pcap_frames(bytes: &[u8]) -> Vec<Vec<u8>> {
    let mut frames = Vec::new();
    let mut at = 24;
    while at + 16 <= bytes.len() {
        let length = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        frames.push(bytes[at + 16..at + 16 + length].to_vec());
        at += 16 + length;
    }
    assert_eq!(at, bytes.len(), "no partial record");
    frames
}

#[test]
fn two_bridges_carry_udp_and_tcp_between_two_linux_stacks() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Quiet);
    let link = BridgeLink::Doorbell(server.socket_path().to_path_buf());
    two_linux_stacks(
        BridgeOptions::new(link.clone(), "tap0"),
        BridgeOptions::new(link, "tap0"),
        1 << 20,
    );
}

#[test]
fn two_bridges_over_a_plain_file() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm");
    let mut region = qemu::shm::PlainRegion::create_net(&path, 1 << 20).unwrap();
    region.persist();
    let link = BridgeLink::Plain(path);
    let mut left = BridgeOptions::new(link.clone(), "tap0");
    left.id = Some(0);
    let mut right = BridgeOptions::new(link, "tap0");
    right.id = Some(1);
    two_linux_stacks(left, right, 256 << 10);
}

/// Two namespaces, a bridge in each (10.0.0.254 left, 10.0.0.1 right): a
/// UDP echo and a TCP echo of `bytes`, every byte checked.
fn two_linux_stacks(left_options: BridgeOptions, right_options: BridgeOptions, bytes: usize) {
    let (left, right) = (Namespace::new(), Namespace::new());
    let left_bridge = RunningBridge::start(&left, left_options);
    let right_bridge = RunningBridge::start(&right, right_options);
    left.run(|| tap::set_ipv4("tap0", Ipv4Addr::new(10, 0, 0, 254), 24).unwrap());
    right.run(|| tap::set_ipv4("tap0", Ipv4Addr::new(10, 0, 0, 1), 24).unwrap());

    // An echo service on the right: UDP and TCP on port 7.
    let listener = right.run(|| TcpListener::bind("10.0.0.1:7").unwrap());
    let udp = right.run(|| UdpSocket::bind("10.0.0.1:7").unwrap());
    let udp_echo = thread::spawn(move || {
        udp.set_read_timeout(Some(DEADLINE)).unwrap();
        let mut buffer = [0u8; 2048];
        if let Ok((length, from)) = udp.recv_from(&mut buffer) {
            udp.send_to(&buffer[..length], from).unwrap();
        }
    });
    let tcp_echo = thread::spawn(move || {
        let (mut stream, _) = listener.accept().unwrap();
        let mut buffer = vec![0u8; 65536];
        loop {
            match stream.read(&mut buffer) {
                Ok(0) | Err(_) => break,
                Ok(length) => stream.write_all(&buffer[..length]).unwrap(),
            }
        }
    });

    // From the left, through both bridges and the link.
    left.run(move || {
        let udp = UdpSocket::bind("10.0.0.254:0").unwrap();
        udp.set_read_timeout(Some(Duration::from_millis(500)))
            .unwrap();
        let start = Instant::now();
        let mut buffer = [0u8; 2048];
        loop {
            // The first datagram may wait for ARP; resend until answered.
            udp.send_to(b"hello across the link", "10.0.0.1:7").unwrap();
            if let Ok((length, _)) = udp.recv_from(&mut buffer) {
                assert_eq!(&buffer[..length], b"hello across the link");
                break;
            }
            assert!(start.elapsed() < DEADLINE, "no UDP echo");
        }
        let address: SocketAddr = "10.0.0.1:7".parse().unwrap();
        let mut stream = TcpStream::connect_timeout(&address, DEADLINE).unwrap();
        stream.set_read_timeout(Some(DEADLINE)).unwrap();
        let data: Vec<u8> = (0..bytes).map(|i| (i * 131 + i / 4096) as u8).collect();
        let mut writer = stream.try_clone().unwrap();
        let sender = {
            let data = data.clone();
            thread::spawn(move || writer.write_all(&data).unwrap())
        };
        let mut echoed = vec![0u8; bytes];
        stream.read_exact(&mut echoed).unwrap();
        sender.join().unwrap();
        assert!(echoed == data, "every byte echoed");
    });
    udp_echo.join().unwrap();
    tcp_echo.join().unwrap();
    let left_summary = left_bridge.stop();
    let right_summary = right_bridge.stop();
    eprintln!("left: {left_summary}\nright: {right_summary}");
    assert!(left_summary.to_link.bytes > bytes as u64);
    assert!(right_summary.to_link.bytes > bytes as u64);
    assert_eq!(
        left_summary.protocol_errors + right_summary.protocol_errors,
        0
    );
}

fn launcher() -> Command {
    Command::new(env!("CARGO_BIN_EXE_eth-ivshmem"))
}

#[test]
fn bad_bridge_arguments_exit_2() {
    let _exclusive = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm");
    let mut region = qemu::shm::PlainRegion::create_net(&path, 1 << 16).unwrap();
    region.persist();
    let plain = format!("plain:{}", path.display());
    let cases: &[(&[&str], &str)] = &[
        (&["--link", &plain, "--tap", "x"], "needs --id"),
        (
            &["--link", "doorbell:/nonexistent", "--tap", "x", "--id", "0"],
            "the server assigns",
        ),
        (
            &["--link", "v2:/x", "--tap", "x"],
            "doorbell:SOCKET or plain:PATH",
        ),
        (&["--link", &plain, "--tap", "x", "--id", "2"], "--id"),
        (
            &["--link", &plain, "--tap", "x", "--id", "0", "--mtu", "67"],
            "--mtu",
        ),
        (
            &["--link", &plain, "--tap", "x", "--id", "0", "--mtu", "9000"],
            "carries MTUs 68..=",
        ),
        (
            &[
                "--link",
                &plain,
                "--tap",
                "x",
                "--id",
                "0",
                "--ip",
                "10.0.0.254",
            ],
            "has no prefix length",
        ),
        (
            &[
                "--link",
                &plain,
                "--tap",
                "x",
                "--id",
                "0",
                "--ip",
                "10.0.0.300/24",
            ],
            "IPv4 address/prefix",
        ),
    ];
    for (args, needle) in cases {
        let output = launcher().arg("bridge").args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
    let output = launcher()
        .args([
            "bridge",
            "--link",
            "doorbell:/nonexistent/sock",
            "--tap",
            "x",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("cannot connect to the ivshmem server"),
        "{stderr}"
    );
}

/// Starts `cargo run -- bridge` in `namespace` and waits for its TAP.
fn bridge_process(namespace: &Namespace, socket: &Path, tap: &str) -> std::process::Child {
    let link = format!("doorbell:{}", socket.display());
    let tap = tap.to_string();
    namespace.run(move || {
        let child = launcher()
            .args(["bridge", "--link", &link, "--tap", &tap])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        wait_for_interface(&tap);
        child
    })
}

#[test]
fn signals_stop_the_cli_and_nothing_is_left_behind() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Quiet);
    let namespace = Namespace::new();
    for (signal, status) in [
        (libc::SIGINT, 130),
        (libc::SIGTERM, 143),
        (libc::SIGHUP, 129),
    ] {
        let child = bridge_process(&namespace, server.socket_path(), "tap0");
        // SAFETY: kill(2) on our own child's PID.
        assert_eq!(unsafe { libc::kill(child.id() as i32, signal) }, 0);
        let output = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(status), "{stderr}");
        assert!(stderr.contains("bridge: stopped by SIG"), "{stderr}");
        assert_eq!(
            namespace.run(|| tap::interface_index("tap0").unwrap()),
            None
        );
    }
    // Even SIGKILL leaves nothing: the TAP dies with its fd, and the server
    // frees the ID (the next bridge is peer 0 again).
    let mut child = bridge_process(&namespace, server.socket_path(), "tap0");
    child.kill().unwrap();
    child.wait().unwrap();
    assert_eq!(
        namespace.run(|| tap::interface_index("tap0").unwrap()),
        None
    );
    let start = Instant::now();
    while !server_peer_ids_empty(server.socket_path()) {
        assert!(
            start.elapsed() < DEADLINE,
            "the server kept the killed bridge"
        );
        thread::sleep(Duration::from_millis(20));
    }
}

/// Whether a new client gets ID 0 (so nobody holds it).
fn server_peer_ids_empty(socket: &Path) -> bool {
    Link::doorbell(socket)
        .map(|link| link.id() == 0)
        .unwrap_or(false)
}

// --- Clear errors ------------------------------------------------------------

/// A plain link file anybody may open (for a bridge run as another user).
fn shared_plain_link(dir: &Path) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("shm");
    let mut region = qemu::shm::PlainRegion::create_net(&path, 1 << 20).unwrap();
    region.persist();
    drop(region);
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755)).unwrap();
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    format!("plain:{}", path.display())
}

/// Asserts that a bridge run failed with status 1 and a message naming
/// `needles`, without a panic.
fn assert_fails(output: &std::process::Output, needles: &[&str]) {
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "no {needle:?} in: {stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
}

/// The capability's number (linux/capability.h).
const CAP_NET_ADMIN: libc::c_ulong = 12;

#[test]
fn without_cap_net_admin_the_bridge_says_what_it_needs() {
    let _exclusive = exclusive();
    let dir = tempfile::tempdir().unwrap();
    let link = shared_plain_link(dir.path());
    let mut command = launcher();
    command.args(["bridge", "--link", &link, "--id", "1", "--tap", "ethb9"]);
    if nix::unistd::geteuid().is_root() {
        // Root without CAP_NET_ADMIN: out of the bounding set, so exec
        // cannot give it back (root's permitted set is the bounding set).
        // SAFETY: prctl(2) in the child between fork and exec; it is
        // async-signal-safe and touches no memory of ours.
        unsafe {
            std::os::unix::process::CommandExt::pre_exec(&mut command, || {
                if libc::prctl(libc::PR_CAPBSET_DROP, CAP_NET_ADMIN, 0, 0, 0) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
    }
    let output = command.output().unwrap();
    assert_fails(
        &output,
        &["permission denied to", "needs CAP_NET_ADMIN", "sudo"],
    );
    assert_eq!(tap::interface_index("ethb9").unwrap(), None);
}

#[test]
fn without_a_tun_device_the_bridge_says_what_is_missing() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let link = shared_plain_link(dir.path());
    let mut command = launcher();
    command.args(["bridge", "--link", &link, "--id", "1", "--tap", "ethb9"]);
    // An empty /dev/net in a mount namespace of the child's own.
    // SAFETY: unshare(2) and mount(2) in the child between fork and exec,
    // with static NUL-terminated strings; both are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut command, || {
            let check = |result: libc::c_int| {
                if result == 0 {
                    Ok(())
                } else {
                    Err(std::io::Error::last_os_error())
                }
            };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                c"/".as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            check(libc::mount(
                c"none".as_ptr(),
                c"/dev/net".as_ptr(),
                c"tmpfs".as_ptr(),
                0,
                std::ptr::null(),
            ))
        });
    }
    let output = command.output().unwrap();
    assert_fails(&output, &["/dev/net/tun is missing", "modprobe tun"]);
}

#[test]
fn a_tap_in_use_is_refused_and_the_link_is_left_alone() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm");
    let mut region = qemu::shm::PlainRegion::create_net(&path, 1 << 20).unwrap();
    region.persist();
    let namespace = Namespace::new();
    let mut first = BridgeOptions::new(BridgeLink::Plain(path.clone()), "tap0");
    first.id = Some(0);
    let bridge = RunningBridge::start(&namespace, first);
    let link = format!("plain:{}", path.display());
    let output = namespace.run(move || {
        launcher()
            .args(["bridge", "--link", &link, "--id", "1", "--tap", "tap0"])
            .output()
            .unwrap()
    });
    assert_fails(&output, &["tap0 is in use"]);
    assert_eq!(region.state(1), 0, "the second bridge never wrote a state");
    bridge.stop();
}

#[test]
fn a_link_with_two_peers_turns_the_bridge_away() {
    let dir = tempfile::tempdir().unwrap();
    let server = server(dir.path(), V1Disconnect::Quiet);
    let socket = server.socket_path().to_path_buf();
    let _first = Link::doorbell(&socket).unwrap();
    let _second = Link::doorbell(&socket).unwrap();
    let link = format!("doorbell:{}", socket.display());
    let output = launcher()
        .args(["bridge", "--link", &link, "--tap", "ethb9"])
        .output()
        .unwrap();
    assert_fails(&output, &["already has two peers"]);
}

#[test]
fn an_existing_tap_with_a_larger_mtu_than_the_link_is_named() {
    require_tap!();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("shm");
    // 64 KiB: output sections far too small for 9000-byte frames.
    let mut region = qemu::shm::PlainRegion::create_net(&path, 64 << 10).unwrap();
    region.persist();
    let namespace = Namespace::new();
    let link = format!("plain:{}", path.display());
    let stderr = namespace.run(move || {
        persistent_tap("ethb3", true);
        tap::set_mtu("ethb3", 9000).unwrap();
        let mut child = launcher()
            .args(["bridge", "--link", &link, "--id", "1", "--tap", "ethb3"])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        // The warning comes before the bridge settles; then stop it.
        let mut stderr = child.stderr.take().unwrap();
        let mut text = String::new();
        let mut buffer = [0u8; 4096];
        let start = Instant::now();
        while !text.contains("bridge: peer 1") && start.elapsed() < DEADLINE {
            let n = stderr.read(&mut buffer).unwrap();
            if n == 0 {
                break;
            }
            text.push_str(&String::from_utf8_lossy(&buffer[..n]));
        }
        // SAFETY: kill(2) on our own child's PID.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        child.wait().unwrap();
        persistent_tap("ethb3", false);
        text
    });
    assert!(
        stderr.contains("ethb3 has MTU 9000, above the link's")
            && stderr.contains("longer frames will be dropped"),
        "{stderr}"
    );
}
