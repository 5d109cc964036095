//! The host bridge: this process becomes one of the two peers of an
//! ivshmem-net link and moves Ethernet frames between the link and a Linux
//! TAP device, so that the host's own network stack (ping, TCP clients,
//! tcpdump) reaches the VM on the other end.
//!
//! * [`link`]: the shared memory, the netdev engine over it
//!   ([`netdev_host::mapped`]), and the notifier that emulates the v2 State
//!   and Doorbell registers (`docs/descriptor-page.md` §7, §8);
//! * [`doorbell`]: the v1 client of our ivshmem server, as QEMU's
//!   `ivshmem-doorbell` plays it (`docs/ivshmem-v2.md` §14.3);
//! * [`tap`]: the TAP device (created and removed by us, or a persistent one
//!   the user made and configured);
//! * [`pcap`]: `--pcap FILE`, every frame that crosses the link;
//! * [`run`]: the event loop.
//!
//! # The event loop
//!
//! One thread sleeps in `epoll` on our doorbell eventfds (vector 0: state
//! changes, vector 1: data), the TAP fd, the server socket (a peer that
//! (re)connects or leaves), a signalfd (SIGINT, SIGTERM, SIGHUP; CLI only)
//! and the [`Control`] eventfd. The `epoll` timeout is the periodic re-check,
//! so a lost kick costs latency, never the link: every wake-up runs
//! [`netdev::Engine::poll`] first. The period is [`FAST_RECHECK`] while the
//! peer is in the handshake or our frames wait for completion, and
//! [`IDLE_RECHECK`] otherwise (on a plain link, which has no doorbells,
//! [`PLAIN_RECHECK_UP`] while the link is up). Per wake-up:
//!
//! 1. poll the engine, report link changes on stderr and make the TAP's
//!    carrier follow the link ([`tap::Tap::set_carrier`]; a link that comes
//!    back gets it once Linux has seen it go, [`CARRIER_HOLD`]);
//! 2. drain the engine's frames to the TAP; the engine bounds the work per
//!    poll, so poll again while [`netdev::Engine::can_receive`], at most
//!    [`RECEIVE_ROUNDS`] times (a hostile peer cannot keep us there; what is
//!    left is taken on the next turn, without sleeping);
//! 3. read up to [`TAP_BATCH`] frames from the TAP and `send` them; while
//!    the link is down or the ring is full they are dropped and counted:
//!    the loop never blocks on the peer.
//!
//! # Leaving
//!
//! On a signal or [`Control::stop`] the engine writes RESET
//! ([`netdev::Engine::reset`], which also rings the peer), the capture is
//! flushed, the server connection closed (our server then zeroes our state
//! entry and rings the peer, `docs/descriptor-page.md` §9), a TAP we
//! created disappears with its fd, and the shared memory is unmapped.

pub mod doorbell;
pub mod link;
pub mod pcap;
pub mod tap;

use std::fmt;
use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use netdev::{SendError, State};
use nix::sys::epoll::{Epoll, EpollCreateFlags, EpollEvent, EpollFlags, EpollTimeout};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use abi::cmdline::Ipv4Cidr;

use crate::options::UsageError;
use link::Link;
use pcap::Capture;
use tap::Tap;

/// The re-check period while the peer is in the handshake or frames of ours
/// wait for completion (the kernel's own timer runs at this rate).
pub const FAST_RECHECK: Duration = Duration::from_millis(5);
/// The re-check period otherwise, on a doorbell link: a safety net only,
/// since the peer's kicks wake us.
pub const IDLE_RECHECK: Duration = Duration::from_millis(100);
/// The re-check period of a plain link (no doorbells) while the link is up:
/// this is the latency of frames from the VM.
pub const PLAIN_RECHECK_UP: Duration = Duration::from_millis(1);
/// Times the engine is polled again per wake-up while frames keep arriving.
pub const RECEIVE_ROUNDS: usize = 4;
/// Frames read from the TAP per wake-up at most.
pub const TAP_BATCH: usize = 64;
/// How long a link that came back may stay without carrier while Linux has
/// not yet seen the carrier go. Linux handles carrier changes late (its
/// link watcher runs at most once a second for a carrier that goes), and
/// forgets its neighbours' MACs only if it sees the carrier off (ARP's
/// "evict on no carrier"): a peer that restarts within that second, with
/// a new MAC, would otherwise stay unreachable until the old ARP entry
/// expires.
pub const CARRIER_HOLD: Duration = Duration::from_secs(2);

/// The link to join (`--link`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BridgeLink {
    /// `doorbell:SOCKET`: a v1 client of our ivshmem server.
    Doorbell(PathBuf),
    /// `plain:PATH`: a shared file with a descriptor page.
    Plain(PathBuf),
}

impl FromStr for BridgeLink {
    type Err = String;

    fn from_str(s: &str) -> Result<BridgeLink, String> {
        let (kind, path) = s
            .split_once(':')
            .ok_or_else(|| format!("{s:?} is not doorbell:SOCKET or plain:PATH"))?;
        if path.is_empty() {
            return Err(format!("{s:?} names no path after \"{kind}:\""));
        }
        match kind {
            "doorbell" => Ok(BridgeLink::Doorbell(path.into())),
            "plain" => Ok(BridgeLink::Plain(path.into())),
            _ => Err(format!(
                "unknown link kind {kind:?} in {s:?}: use doorbell:SOCKET or plain:PATH"
            )),
        }
    }
}

impl fmt::Display for BridgeLink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BridgeLink::Doorbell(path) => write!(f, "doorbell:{}", path.display()),
            BridgeLink::Plain(path) => write!(f, "plain:{}", path.display()),
        }
    }
}

/// What the bridge does (the CLI's options).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BridgeOptions {
    /// The link.
    pub link: BridgeLink,
    /// The TAP device's name.
    pub tap: String,
    /// Our peer ID: required on plain links, refused on doorbell links (the
    /// server assigns it).
    pub id: Option<u16>,
    /// The MTU of a TAP we create [default: what Linux's driver and the
    /// kernel pick for the link, min(16384, data area / 16)]; 68..=the
    /// link's largest.
    pub mtu: Option<u32>,
    /// The IPv4 address (and prefix) of a TAP we create, set before the
    /// link is joined, so that Linux answers the peer's first ARP request.
    pub address: Option<Ipv4Cidr>,
    /// Capture every frame that crosses the link into this pcap file.
    pub pcap: Option<PathBuf>,
    /// Stop on SIGINT, SIGTERM and SIGHUP (read through a signalfd; they are
    /// blocked in the calling thread, which must be the only thread that
    /// does not block them, as in the CLI).
    pub signals: bool,
}

impl BridgeOptions {
    /// Options for `link` and `tap`, everything else default.
    pub fn new(link: BridgeLink, tap: impl Into<String>) -> BridgeOptions {
        BridgeOptions {
            link,
            tap: tap.into(),
            id: None,
            mtu: None,
            address: None,
            pcap: None,
            signals: false,
        }
    }
}

/// The handle between a running bridge and other threads: asks it to stop
/// (it wakes at once), and tells the state of its link and of its TAP's
/// carrier.
#[derive(Debug)]
pub struct Control {
    stop: AtomicBool,
    wake: EventFd,
    link_up: AtomicBool,
    carrier: AtomicBool,
}

impl Control {
    /// A handle for a bridge not yet started: no stop asked for, the link
    /// down.
    ///
    /// # Errors
    ///
    /// No eventfd could be made.
    pub fn new() -> io::Result<Control> {
        Ok(Control {
            stop: AtomicBool::new(false),
            wake: EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?,
            link_up: AtomicBool::new(false),
            carrier: AtomicBool::new(false),
        })
    }

    /// Stops the bridge.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = self.wake.write(1);
    }

    /// Whether a stop was asked for.
    pub fn stop_requested(&self) -> bool {
        self.stop.load(Ordering::SeqCst)
    }

    /// Whether the link is up (both peers in RUN), as of the bridge's last
    /// wake-up.
    pub fn link_up(&self) -> bool {
        self.link_up.load(Ordering::SeqCst)
    }

    /// Whether the bridge has turned its TAP's carrier on: the link is up
    /// and, after a peer restart, Linux has seen the carrier go first (see
    /// [`CARRIER_HOLD`]). Linux's own view (`IFF_RUNNING`,
    /// [`tap::running`]) follows shortly after.
    pub fn carrier(&self) -> bool {
        self.carrier.load(Ordering::SeqCst)
    }
}

/// Frames and bytes in one direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Traffic {
    /// Frames.
    pub frames: u64,
    /// Bytes.
    pub bytes: u64,
}

impl Traffic {
    fn add(&mut self, length: usize) {
        self.frames += 1;
        self.bytes += length as u64;
    }
}

/// Frames the bridge dropped, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// From the TAP while the link was down.
    pub link_down: u64,
    /// From the TAP while our transmit ring was full.
    pub ring_full: u64,
    /// From the TAP, longer than the link carries.
    pub too_long: u64,
    /// From the link, refused by the TAP (e.g. the interface is down).
    pub tap_refused: u64,
}

impl Dropped {
    /// All drops.
    pub fn total(&self) -> u64 {
        self.link_down + self.ring_full + self.too_long + self.tap_refused
    }
}

/// What a bridge run did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Summary {
    /// The signal that stopped it (CLI), if any.
    pub signal: Option<i32>,
    /// Frames from the TAP published on the link.
    pub to_link: Traffic,
    /// Frames from the link handed to the TAP.
    pub to_tap: Traffic,
    /// Drops.
    pub dropped: Dropped,
    /// Times the link came up.
    pub link_ups: u64,
    /// Protocol errors seen from the peer.
    pub protocol_errors: u64,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = &self.dropped;
        write!(
            f,
            "tap→link {} frames ({} bytes), link→tap {} frames ({} bytes), dropped {} (link down {}, ring full {}, too long {}, refused by the TAP {}), link up {} time(s), {} protocol error(s)",
            self.to_link.frames,
            self.to_link.bytes,
            self.to_tap.frames,
            self.to_tap.bytes,
            d.total(),
            d.link_down,
            d.ring_full,
            d.too_long,
            d.tap_refused,
            self.link_ups,
            self.protocol_errors
        )
    }
}

/// SIGINT, SIGTERM and SIGHUP, blocked in this thread and read through a
/// signalfd; the old mask comes back on drop.
struct Signals {
    fd: SignalFd,
    previous: SigSet,
}

impl Signals {
    fn block() -> anyhow::Result<Signals> {
        let mut mask = SigSet::empty();
        for signal in [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP] {
            mask.add(signal);
        }
        let mut previous = SigSet::empty();
        nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_BLOCK, Some(&mask), Some(&mut previous))
            .context("cannot block SIGINT/SIGTERM/SIGHUP")?;
        let fd = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
            .context("cannot create a signalfd")?;
        Ok(Signals { fd, previous })
    }
}

impl Drop for Signals {
    fn drop(&mut self) {
        let _ =
            nix::sys::signal::pthread_sigmask(SigmaskHow::SIG_SETMASK, Some(&self.previous), None);
    }
}

const TOKEN_STOP: u64 = 0;
const TOKEN_SIGNAL: u64 = 1;
const TOKEN_SERVER: u64 = 2;
const TOKEN_TAP: u64 = 3;
/// Our eventfd for vector `v` has token `TOKEN_VECTOR + v`.
const TOKEN_VECTOR: u64 = 16;

/// Refuses combinations of options that cannot work, before anything is
/// touched.
fn check_options(options: &BridgeOptions) -> Result<(), UsageError> {
    match (&options.link, options.id) {
        (BridgeLink::Doorbell(_), Some(id)) => {
            return Err(UsageError(format!(
                "--id {id}: on a doorbell link the server assigns the ID (--id is for plain links)"
            )));
        }
        (BridgeLink::Plain(_), None) => {
            return Err(UsageError(
                "--link plain:PATH needs --id 0 or --id 1 (the peer the bridge plays)".into(),
            ));
        }
        (BridgeLink::Plain(_), Some(id)) if id > 1 => {
            return Err(UsageError(format!(
                "--id {id}: ivshmem-net has peers 0 and 1"
            )));
        }
        _ => {}
    }
    if let Some(mtu) = options.mtu
        && (mtu as usize) < netdev::MIN_MTU
    {
        return Err(UsageError(format!(
            "--mtu {mtu}: the smallest MTU is {}",
            netdev::MIN_MTU
        )));
    }
    Ok(())
}

/// Parses `--ip`: an IPv4 address with its prefix, as the kernel's `ip=`
/// takes it (`10.0.0.254/24`).
pub fn parse_address(value: &str) -> Result<Ipv4Cidr, String> {
    if !value.contains('/') {
        return Err(format!(
            "{value:?} has no prefix length: write an IPv4 address/prefix, e.g. 10.0.0.254/24"
        ));
    }
    crate::options::kernel_key("ip", |line| line.ip)(value)?
        .ok_or_else(|| format!("{value:?} is not an IPv4 address/prefix"))
}

/// Runs the bridge until `control` asks it to stop or (with
/// [`BridgeOptions::signals`]) a signal arrives, in the calling thread and
/// its network namespace.
///
/// # Errors
///
/// Setting up: a bad combination of options ([`UsageError`]), a link that
/// cannot be joined (no server, two peers already, no descriptor page), an
/// MTU above what the link carries ([`UsageError`]), a TAP that cannot be
/// opened or configured ([`tap::TapError`]: no root, no TUN/TAP driver, the
/// name in use), a pcap file that cannot be created. Running: the TAP
/// vanishing, `epoll` failing.
pub fn run(options: &BridgeOptions, control: &Control) -> anyhow::Result<Summary> {
    check_options(options)?;
    let signals = options.signals.then(Signals::block).transpose()?;
    let mut link = match &options.link {
        BridgeLink::Doorbell(socket) => Link::doorbell(socket)?,
        BridgeLink::Plain(path) => Link::plain(path, options.id.unwrap_or_default())?,
    };
    let net_layout = link.net_layout()?;
    let max_mtu = net_layout.max_mtu();
    let mtu = match options.mtu {
        Some(mtu) if mtu as usize > max_mtu => {
            return Err(UsageError(format!(
                "--mtu {mtu}: this link carries MTUs {}..={max_mtu} (output sections of {:#x} bytes)",
                netdev::MIN_MTU,
                link.layout().sections.output_section_size
            ))
            .into());
        }
        Some(mtu) => mtu as usize,
        // Linux's default for the link, as the kernel picks it: a VM with
        // default settings and the TAP agree (docs/ivshmem-net.md §4).
        None => netdev::Config::new(0, 1, [2, 0, 0, 0, 0, 0]).mtu_for(&net_layout),
    };
    // Joining the link is not visible to the peer yet: our state entry is
    // written when the engine is made, after the TAP, so a bridge that
    // cannot open its TAP (no root, no TUN/TAP driver, the name in use)
    // leaves the VM undisturbed. The TAP starts without a carrier, so that
    // Linux sends nothing before the link is up.
    let tap = Tap::open(&options.tap, mtu as u32)?;
    let mut carrier_follows = match tap.set_carrier(false) {
        Ok(()) => true,
        Err(e) => {
            eprintln!(
                "bridge: warning: cannot set the carrier of {} ({e}); it stays on while the link is down",
                tap.name()
            );
            false
        }
    };
    if let Some(address) = options.address {
        if tap.created() {
            tap::set_ipv4(tap.name(), address.address, address.prefix)?;
        } else {
            eprintln!(
                "bridge: {} exists; --ip applies only to a TAP the bridge creates, so its addresses are left alone",
                tap.name()
            );
        }
    }
    let tap_mtu = tap.mtu().unwrap_or(mtu as u32);
    if !tap.created() {
        if options.mtu.is_some_and(|asked| asked != tap_mtu) {
            eprintln!(
                "bridge: {} exists with MTU {tap_mtu}; --mtu applies only to a TAP the bridge creates, so it is left alone",
                tap.name()
            );
        }
        if tap_mtu as usize > max_mtu {
            eprintln!(
                "bridge: warning: {} has MTU {tap_mtu}, above the link's {max_mtu}: longer frames will be dropped",
                tap.name()
            );
        }
    }
    let mut capture = match &options.pcap {
        Some(path) => Some(
            Capture::create(path)
                .with_context(|| format!("cannot create the capture file {}", path.display()))?,
        ),
        None => None,
    };
    let mut engine = link.engine(mtu)?;
    eprintln!(
        "bridge: peer {} of {} ({}), TAP {} ({}, MTU {tap_mtu}){}",
        link.id(),
        link.description(),
        link.layout(),
        tap.name(),
        if tap.created() {
            "created, removed on exit"
        } else {
            "existing, left as it is"
        },
        options
            .pcap
            .as_ref()
            .map(|p| format!(", capturing to {}", p.display()))
            .unwrap_or_default()
    );

    let epoll = Epoll::new(EpollCreateFlags::EPOLL_CLOEXEC).context("epoll_create")?;
    let watch = |fd: std::os::fd::BorrowedFd<'_>, token: u64| {
        epoll
            .add(fd, EpollEvent::new(EpollFlags::EPOLLIN, token))
            .context("epoll_ctl")
    };
    watch(control.wake.as_fd(), TOKEN_STOP)?;
    if let Some(signals) = &signals {
        watch(signals.fd.as_fd(), TOKEN_SIGNAL)?;
    }
    if let Some(server) = link.server() {
        watch(server.as_fd(), TOKEN_SERVER)?;
    }
    watch(tap.as_fd(), TOKEN_TAP)?;
    for (vector, eventfd) in link.own_eventfds().enumerate() {
        watch(eventfd.as_fd(), TOKEN_VECTOR + vector as u64)?;
    }

    let mut summary = Summary::default();
    let mut frame = vec![0u8; tap::MAX_FRAME];
    let mut was_up = false;
    let mut ups = 0u64;
    let mut carrier_held_since: Option<Instant> = None;
    let mut dropped_while_down = 0u64;
    let mut more_work = false;
    let mut events = [EpollEvent::empty(); 16];
    let mut tap_refusal_reported = false;
    let doorbells = link.has_doorbells();
    loop {
        let period = if more_work {
            Duration::ZERO
        } else if carrier_held_since.is_some() {
            FAST_RECHECK
        } else if !doorbells {
            if was_up {
                PLAIN_RECHECK_UP
            } else {
                FAST_RECHECK
            }
        } else if engine.transmit_in_flight() > 0
            || (!was_up && matches!(engine.peer_state(), State::Init | State::Ready | State::Run))
        {
            FAST_RECHECK
        } else {
            IDLE_RECHECK
        };
        let timeout = EpollTimeout::try_from(period).unwrap_or(EpollTimeout::NONE);
        let ready = match epoll.wait(&mut events, timeout) {
            Ok(ready) => ready,
            Err(nix::errno::Errno::EINTR) => 0,
            Err(e) => return Err(e).context("epoll_wait"),
        };
        let mut tap_readable = more_work;
        for event in &events[..ready] {
            match event.data() {
                TOKEN_STOP => {
                    let _ = control.wake.read();
                }
                TOKEN_SIGNAL => {
                    if let Some(signals) = &signals
                        && let Ok(Some(info)) = signals.fd.read_signal()
                    {
                        summary.signal = Some(info.ssi_signo as i32);
                    }
                }
                TOKEN_SERVER => {
                    let news = link.server_news();
                    if news.peer_announced {
                        eprintln!("bridge: the peer connected to the server");
                    }
                    if news.peer_gone {
                        eprintln!("bridge: the server says the peer left");
                    }
                    if news.closed {
                        eprintln!(
                            "bridge: warning: the ivshmem server closed our connection; going on without it (the peer's doorbells still work, but no one will announce a peer that leaves)"
                        );
                        if let Some(server) = link.server() {
                            let _ = epoll.delete(server.as_fd());
                        }
                    }
                }
                TOKEN_TAP => tap_readable = true,
                vector => {
                    let index = (vector - TOKEN_VECTOR) as usize;
                    if let Some(eventfd) = link.own_eventfds().nth(index) {
                        doorbell::clear(eventfd);
                    }
                }
            }
        }
        if control.stop_requested() || summary.signal.is_some() {
            break;
        }

        // 1. The state machine and the link report.
        let up = engine.poll(netdev_host::now());
        if up != was_up {
            if up {
                eprintln!(
                    "bridge: link up (peer {} in RUN){}",
                    1 - link.id(),
                    if dropped_while_down > 0 {
                        format!(
                            "; {dropped_while_down} frame(s) from the TAP were dropped while it was down"
                        )
                    } else {
                        String::new()
                    }
                );
                dropped_while_down = 0;
            } else {
                eprintln!("bridge: link down (peer state {:?})", engine.peer_state());
            }
            was_up = up;
            control.link_up.store(up, Ordering::SeqCst);
            if up {
                ups += 1;
                // A link that comes back (the peer restarted, with a new
                // MAC) gets its carrier once Linux has seen it go.
                carrier_held_since = (ups > 1).then(Instant::now);
            } else {
                carrier_held_since = None;
            }
            if !up || carrier_held_since.is_none() {
                set_carrier(&tap, up, &mut carrier_follows);
            }
        }
        if let Some(since) = carrier_held_since {
            let seen = !tap::running(tap.name()).unwrap_or(false);
            if seen || since.elapsed() >= CARRIER_HOLD || !carrier_follows {
                if !seen {
                    eprintln!(
                        "bridge: warning: Linux did not see the carrier of {} go within {CARRIER_HOLD:?}; it may keep the old peer's MAC for a while",
                        tap.name()
                    );
                }
                carrier_held_since = None;
                set_carrier(&tap, true, &mut carrier_follows);
            }
        }
        control
            .carrier
            .store(was_up && carrier_held_since.is_none(), Ordering::SeqCst);

        // 2. Link → TAP, within the engine's budget.
        for round in 0..RECEIVE_ROUNDS {
            if round > 0 {
                engine.poll(netdev_host::now());
            }
            while let Some(received) = engine.receive_frame() {
                match tap.write(received) {
                    Ok(()) => {
                        summary.to_tap.add(received.len());
                        if let Some(capture) = &mut capture {
                            capture.record(received);
                        }
                    }
                    Err(e) => {
                        summary.dropped.tap_refused += 1;
                        if !tap_refusal_reported {
                            tap_refusal_reported = true;
                            eprintln!(
                                "bridge: {} refused a frame from the link ({e}){}; dropping such frames",
                                tap.name(),
                                if e.raw_os_error() == Some(libc::EIO) {
                                    ": the interface is down"
                                } else {
                                    ""
                                }
                            );
                        }
                    }
                }
                engine.receive_advance();
            }
            if !engine.can_receive() {
                break;
            }
        }

        // 3. TAP → link.
        let mut tap_more = false;
        if tap_readable {
            tap_more = true;
            for _ in 0..TAP_BATCH {
                let Some(length) = tap
                    .read(&mut frame)
                    .with_context(|| format!("cannot read from {}", tap.name()))?
                else {
                    tap_more = false;
                    break;
                };
                let sent = &frame[..length];
                match engine.send(sent) {
                    Ok(()) => {
                        summary.to_link.add(length);
                        if let Some(capture) = &mut capture {
                            capture.record(sent);
                        }
                    }
                    Err(SendError::LinkDown) => {
                        summary.dropped.link_down += 1;
                        dropped_while_down += 1;
                    }
                    Err(SendError::RingFull) => summary.dropped.ring_full += 1,
                    Err(_) => summary.dropped.too_long += 1,
                }
            }
        }
        more_work = tap_more || engine.can_receive();
        if let Some(capture) = &mut capture
            && let Err(e) = capture.flush()
        {
            eprintln!("bridge: {e}");
        }
    }

    // Leave: RESET (rings the peer), then everything closes in order.
    engine.reset();
    let statistics = engine.statistics();
    summary.link_ups = statistics.link_ups;
    summary.protocol_errors = statistics.protocol_errors.total();
    if let Some(capture) = &mut capture
        && let Err(e) = capture.flush()
    {
        eprintln!("bridge: {e}");
    }
    drop(engine);
    drop(link);
    drop(tap);
    drop(signals);
    Ok(summary)
}

/// Sets the TAP's carrier if it follows the link; on failure it stops
/// following (once, with a warning).
fn set_carrier(tap: &Tap, on: bool, follows: &mut bool) {
    if *follows && let Err(e) = tap.set_carrier(on) {
        eprintln!(
            "bridge: warning: cannot set the carrier of {}: {e}",
            tap.name()
        );
        *follows = false;
    }
}

/// The CLI's exit status for a finished run: 128 + the signal, or 0.
pub fn exit_status(summary: &Summary) -> u8 {
    summary
        .signal
        .map_or(0, |signal| u8::try_from(128 + signal).unwrap_or(u8::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_specs() {
        assert_eq!(
            "doorbell:/tmp/b.sock".parse(),
            Ok(BridgeLink::Doorbell("/tmp/b.sock".into()))
        );
        assert_eq!(
            "plain:/dev/shm/x".parse(),
            Ok(BridgeLink::Plain("/dev/shm/x".into()))
        );
        assert!("v2:/tmp/s".parse::<BridgeLink>().is_err());
        assert!("doorbell:".parse::<BridgeLink>().is_err());
        assert!("none".parse::<BridgeLink>().is_err());
        assert_eq!(
            BridgeLink::Plain("/x".into()).to_string(),
            "plain:/x".to_string()
        );
    }

    #[test]
    fn addresses() {
        let address = parse_address("10.0.0.254/24").unwrap();
        assert_eq!(
            (address.address, address.prefix),
            (std::net::Ipv4Addr::new(10, 0, 0, 254), 24)
        );
        assert!(parse_address("10.0.0.254").unwrap_err().contains("prefix"));
        assert!(parse_address("10.0.0.254/33").is_err());
        assert!(parse_address("ten/24").is_err());
    }

    #[test]
    fn exit_statuses() {
        let mut summary = Summary::default();
        assert_eq!(exit_status(&summary), 0);
        summary.signal = Some(libc::SIGINT);
        assert_eq!(exit_status(&summary), 130);
        summary.signal = Some(libc::SIGTERM);
        assert_eq!(exit_status(&summary), 143);
    }
}
