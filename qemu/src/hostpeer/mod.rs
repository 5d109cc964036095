//! Linux's own network stack as a peer of a link: the bridge
//! ([`crate::bridge`]) in a network namespace of our own, its TAP at
//! [`HOST_ADDRESS`], and the host's tools (`ping`, Rust `std` sockets) on
//! top, without touching the host's own network.
//!
//! * [`netns`]: the namespace (no name, gone with the process);
//! * [`ping`]: Linux's `ping` run inside it, its output read back;
//! * [`echo`]: TCP and UDP echo over `std` sockets, client and server;
//! * [`HostPeer`]: a running bridge in a namespace, with those tools.
//!
//! The end-to-end tests (`tests/tests/host_peer.rs`), `cargo run -- demo
//! --host` ([`demo`]) and the host↔VM benchmarks ([`mod@bench`]) are built
//! from these.
//! Everything needs root (a namespace and a TAP device), see
//! [`unavailable`].

pub mod bench;
pub mod demo;
pub mod echo;
pub mod netns;
pub mod ping;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi::cmdline::Ipv4Cidr;
use anyhow::{Context, bail};

use crate::bridge::{self, BridgeLink, BridgeOptions, Control, Summary, tap};
pub use echo::{ECHO_PORT, EchoServer, EchoStatistics, TcpEcho};
pub use netns::Namespace;
pub use ping::{LinuxPing, PingOptions};

/// The TAP device's name inside the namespace.
pub const TAP: &str = "ivshmem0";
/// Linux's address on the link (the VMs are 10.0.0.1 and 10.0.0.2).
pub const HOST_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 254);
/// The prefix length of the link's network.
pub const PREFIX: u8 = 24;
/// The address of peer 0, where a VM started first on a server link is.
pub const VM_ADDRESS: Ipv4Addr = Ipv4Addr::new(10, 0, 0, 1);

/// Why Linux cannot be a peer here, if it cannot: not root, or no TUN/TAP
/// driver.
pub fn unavailable() -> Option<String> {
    if !nix::unistd::geteuid().is_root() {
        return Some(
            "not root: a network namespace and a TAP device need root (or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
                .into(),
        );
    }
    if !Path::new(tap::TUN_DEVICE).exists() {
        return Some(format!(
            "{} is missing: the kernel's TUN/TAP driver is not available (modprobe tun)",
            tap::TUN_DEVICE
        ));
    }
    None
}

/// For tests that need Linux as a peer: says in the test's output that it
/// is skipped and why; where `CI` is set (CI runs as root) it fails instead,
/// so that CI never skips these tests silently.
///
/// # Panics
///
/// Always under CI.
pub fn skip(reason: &str) {
    if std::env::var_os("CI").is_some_and(|value| !value.is_empty()) {
        panic!("CI must run this test, but {reason}");
    }
    eprintln!("skipped: {reason}");
}

/// Bridge options for a host peer on `link`: the TAP [`TAP`] at
/// [`HOST_ADDRESS`]/[`PREFIX`], nothing else.
pub fn bridge_options(link: BridgeLink) -> BridgeOptions {
    let mut options = BridgeOptions::new(link, TAP);
    options.address = Some(Ipv4Cidr {
        address: HOST_ADDRESS,
        prefix: PREFIX,
    });
    options
}

/// The bridge thread's identity, for its CPU time.
#[derive(Debug, Clone, Copy)]
struct BridgeThread {
    tid: i32,
    clock: libc::clockid_t,
}

/// The CPU time and wake-ups of the bridge's thread so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ThreadUsage {
    /// CPU time (user and system).
    pub cpu: Duration,
    /// Context switches (each sleep in `epoll` that ended is one).
    pub switches: u64,
}

/// A bridge running in a namespace of its own: Linux's stack is the other
/// peer of the link. Stopped (and the namespace gone with its TAP) on drop.
#[derive(Debug)]
pub struct HostPeer {
    // Field order is drop order: the bridge before the namespace.
    control: Arc<Control>,
    bridge: Option<JoinHandle<anyhow::Result<Summary>>>,
    thread: BridgeThread,
    tap: String,
    namespace: Namespace,
}

/// How long the bridge may take to create its TAP.
const START_TIMEOUT: Duration = Duration::from_secs(10);

impl HostPeer {
    /// Makes a namespace and starts the bridge in it with `options` (see
    /// [`bridge_options`]); returns once its TAP exists.
    ///
    /// # Errors
    ///
    /// No namespace (not root), or the bridge failed to start (its error).
    pub fn start(options: BridgeOptions) -> anyhow::Result<HostPeer> {
        HostPeer::start_in(Namespace::new()?, options)
    }

    /// Starts the bridge in `namespace` (which may already hold, e.g., a
    /// server the VM's clients will reach as soon as the link is up).
    ///
    /// # Errors
    ///
    /// The bridge failed to start (its error).
    pub fn start_in(namespace: Namespace, options: BridgeOptions) -> anyhow::Result<HostPeer> {
        let control =
            Arc::new(Control::new().context("cannot create the bridge's control eventfd")?);
        let tap = options.tap.clone();
        let (identity, thread) = mpsc::channel();
        let bridge = {
            let control = Arc::clone(&control);
            namespace.spawn("bridge", move || {
                // SAFETY: gettid(2) and pthread_getcpuclockid(3) on this
                // very thread, which is alive; `clock` is a valid out
                // pointer for the call.
                let thread = unsafe {
                    let mut clock: libc::clockid_t = 0;
                    libc::pthread_getcpuclockid(libc::pthread_self(), &mut clock);
                    BridgeThread {
                        tid: libc::gettid(),
                        clock,
                    }
                };
                let _ = identity.send(thread);
                bridge::run(&options, &control)
            })?
        };
        let thread = thread
            .recv()
            .map_err(|_| anyhow::anyhow!("the bridge thread died at once"))?;
        let mut peer = HostPeer {
            control,
            bridge: Some(bridge),
            thread,
            tap,
            namespace,
        };
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            peer.check_running()?;
            let name = peer.tap.clone();
            if peer
                .namespace
                .run(move || tap::interface_index(&name))?
                .is_some()
            {
                return Ok(peer);
            }
            if Instant::now() > deadline {
                bail!(
                    "the bridge did not create {} within {START_TIMEOUT:?}",
                    peer.tap
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Fails with the bridge's error if it has ended.
    fn check_running(&mut self) -> anyhow::Result<()> {
        if self.bridge.as_ref().is_some_and(|b| !b.is_finished()) {
            return Ok(());
        }
        match self.bridge.take().map(JoinHandle::join) {
            Some(Ok(Err(e))) => Err(e.context("the bridge failed")),
            Some(Ok(Ok(summary))) => bail!("the bridge stopped: {summary}"),
            Some(Err(_)) => bail!("the bridge thread panicked"),
            None => bail!("the bridge is not running"),
        }
    }

    /// The namespace (to run code and processes in it).
    pub fn namespace(&self) -> &Namespace {
        &self.namespace
    }

    /// The TAP device's name.
    pub fn tap(&self) -> &str {
        &self.tap
    }

    /// Waits until the link is `up` for Linux: when up, the bridge's link
    /// is up, it has turned the TAP's carrier on ([`Control::carrier`]) and
    /// Linux sees the interface running (its link watcher runs late); when
    /// down, the bridge's link is down and its carrier off.
    ///
    /// # Errors
    ///
    /// The bridge ended, or `timeout` passed.
    pub fn wait_for_link(&mut self, up: bool, timeout: Duration) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        loop {
            self.check_running()?;
            let ready = if up {
                self.control.link_up() && self.control.carrier() && {
                    let name = self.tap.clone();
                    self.namespace.run(move || tap::running(&name))?
                }
            } else {
                !self.control.link_up() && !self.control.carrier()
            };
            if ready {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the link did not go {} within {timeout:?}",
                    if up { "up" } else { "down" }
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Gives the TAP the IPv6 address `address/prefix` with `ip -6 addr add
    /// … nodad` (usable at once: no duplicate-address detection, the link
    /// has only us and the VM).
    ///
    /// # Errors
    ///
    /// `ip` (package iproute2) cannot run, or refuses.
    pub fn add_ipv6(&self, address: std::net::Ipv6Addr, prefix: u8) -> anyhow::Result<()> {
        let mut command = std::process::Command::new("ip");
        command
            .args(["-6", "addr", "add"])
            .arg(format!("{address}/{prefix}"))
            .args(["dev", &self.tap, "nodad"]);
        let output = self
            .namespace
            .run_process(command, Duration::from_secs(10), |_| {})
            .map_err(|e| anyhow::anyhow!("cannot run `ip` (Debian package iproute2): {e}"))?;
        if !output.status.success() || output.timed_out {
            bail!(
                "ip -6 addr add {address}/{prefix} dev {} failed ({}): {}",
                self.tap,
                output.status,
                output.stderr.trim()
            );
        }
        Ok(())
    }

    /// The bridge's control handle (its link and carrier state).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Runs Linux's `ping` in the namespace (see [`ping::run`]).
    ///
    /// # Errors
    ///
    /// As [`ping::run`].
    pub fn ping(
        &self,
        options: &PingOptions,
        on_line: impl FnMut(&str),
    ) -> anyhow::Result<LinuxPing> {
        ping::run(&self.namespace, options, on_line)
    }

    /// A TCP echo of `bytes` from Linux's stack through the echo server at
    /// `target` (see [`echo::tcp_echo_client`]).
    ///
    /// # Errors
    ///
    /// As [`echo::tcp_echo_client`].
    pub fn tcp_echo(
        &self,
        target: SocketAddr,
        bytes: u64,
        idle: Duration,
    ) -> anyhow::Result<TcpEcho> {
        self.namespace
            .run(move || echo::tcp_echo_client(target, bytes, idle))
    }

    /// `bytes` from Linux's stack into the discard service at `target`
    /// (see [`echo::tcp_send`]): the time it took.
    ///
    /// # Errors
    ///
    /// As [`echo::tcp_send`].
    pub fn tcp_send(
        &self,
        target: SocketAddr,
        bytes: u64,
        idle: Duration,
    ) -> anyhow::Result<Duration> {
        self.namespace
            .run(move || echo::tcp_send(target, bytes, idle))
    }

    /// `bytes` from the source service at `target` to Linux's stack, every
    /// byte checked (see [`echo::tcp_receive`]): the time it took.
    ///
    /// # Errors
    ///
    /// As [`echo::tcp_receive`].
    pub fn tcp_receive(
        &self,
        target: SocketAddr,
        bytes: u64,
        idle: Duration,
    ) -> anyhow::Result<Duration> {
        self.namespace
            .run(move || echo::tcp_receive(target, bytes, idle))
    }

    /// Starts a TCP and UDP echo server on `port` of every address in the
    /// namespace (only the TAP's and loopback; see [`EchoServer`]).
    ///
    /// # Errors
    ///
    /// The port is taken.
    pub fn echo_server(&self, port: u16) -> anyhow::Result<EchoServer> {
        self.namespace
            .run(move || EchoServer::start((Ipv4Addr::UNSPECIFIED, port).into()))
            .with_context(|| format!("cannot serve echo on port {port}"))
    }

    /// The bridge thread's CPU time and context switches so far.
    ///
    /// # Errors
    ///
    /// The thread has ended.
    pub fn bridge_usage(&self) -> anyhow::Result<ThreadUsage> {
        if self.bridge.as_ref().is_none_or(|b| b.is_finished()) {
            bail!("the bridge is not running");
        }
        let mut time = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: clock_gettime(2) writes one `timespec` through its
        // pointer, which points at `time`, alive for the call. (The clock
        // is the bridge thread's, which was running just now; had it ended
        // since, the call fails with EINVAL.)
        if unsafe { libc::clock_gettime(self.thread.clock, &mut time) } != 0 {
            bail!(
                "cannot read the bridge thread's CPU clock: {}",
                std::io::Error::last_os_error()
            );
        }
        let status = std::fs::read_to_string(format!("/proc/self/task/{}/status", self.thread.tid))
            .context("cannot read the bridge thread's status")?;
        let switches = status
            .lines()
            .filter(|line| line.contains("ctxt_switches:"))
            .filter_map(|line| line.split_whitespace().nth(1)?.parse::<u64>().ok())
            .sum();
        Ok(ThreadUsage {
            cpu: Duration::new(time.tv_sec as u64, time.tv_nsec as u32),
            switches,
        })
    }

    /// Stops the bridge and returns what it did; the namespace and its TAP
    /// go with `self`.
    ///
    /// # Errors
    ///
    /// The bridge had failed.
    pub fn stop(mut self) -> anyhow::Result<Summary> {
        self.control.stop();
        match self.bridge.take().map(JoinHandle::join) {
            Some(Ok(result)) => result,
            Some(Err(_)) => bail!("the bridge thread panicked"),
            None => bail!("the bridge is not running"),
        }
    }
}

impl Drop for HostPeer {
    fn drop(&mut self) {
        self.control.stop();
        if let Some(bridge) = self.bridge.take() {
            let _ = bridge.join();
        }
    }
}
