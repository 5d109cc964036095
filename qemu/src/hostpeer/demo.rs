//! `cargo run -- demo --host`: one VM runs the echo server, the host
//! bridge joins its link in a network namespace the demo makes, and the
//! host's own `ping` and a TCP client (Linux's stack, from inside the
//! namespace) reach the VM. The summary shows what the host measured.
//!
//! The host's own network is never touched: the TAP lives in the
//! namespace, which has no name and dies with the launcher, whatever ends
//! it. The VM, `ping`, the server's socket and the shared-memory file are
//! registered with [`crate::cleanup`] as in the two-VM demo.

use std::fmt;
use std::time::{Duration, Instant};

use abi::cmdline::{App, CommandLine, Mode};
use anyhow::{Context, bail};

use super::echo::TcpEcho;
use super::ping::{LinuxPing, PING, PING_PACKAGE, PingOptions};
use super::{ECHO_PORT, HOST_ADDRESS, HostPeer, Namespace, PREFIX, TAP, VM_ADDRESS, netns};
use crate::bridge;
use crate::demo::DemoOptions;
use crate::link::{Link, unique_socket_path};
use crate::options::UsageError;
use crate::scenario::{DeviceReport, Scenario};
use crate::server::ServerConfig;
use crate::shm::{PlainRegion, ShmFile};
use crate::size::Size;

/// Time between Linux's pings.
const PING_INTERVAL: Duration = Duration::from_millis(100);
/// The longest the TCP echo may stall.
const ECHO_IDLE: Duration = Duration::from_secs(20);

fn progress(message: &str) {
    eprintln!("eth-ivshmem: {message}");
}

/// What the host demo measured.
#[derive(Debug)]
pub struct HostSummary {
    /// How the VM and the link were set up.
    pub setup: String,
    /// From the bridge's start to the link being up for Linux.
    pub link_up: Option<Duration>,
    /// Linux's ping.
    pub ping: Option<LinuxPing>,
    /// Linux's TCP echo through the VM.
    pub echo: Option<TcpEcho>,
    /// What the bridge moved.
    pub bridge: Option<bridge::Summary>,
    /// Why it failed, if it did.
    pub failure: Option<String>,
}

impl HostSummary {
    /// Whether the host reached the VM: every ping answered, every byte
    /// echoed.
    pub fn pass(&self) -> bool {
        self.failure.is_none()
            && self
                .ping
                .as_ref()
                .is_some_and(|p| p.received == p.transmitted && p.transmitted > 0)
            && self.echo.is_some()
    }
}

impl fmt::Display for HostSummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "==================== summary ====================")?;
        writeln!(f, "setup:     {}", self.setup)?;
        match self.link_up {
            Some(t) => writeln!(
                f,
                "link up:   {:.3} s after the bridge started",
                t.as_secs_f64()
            )?,
            None => writeln!(f, "link up:   never")?,
        }
        match &self.ping {
            Some(ping) => writeln!(f, "ping:      {ping} (Linux's ping)")?,
            None => writeln!(f, "ping:      no result")?,
        }
        match &self.echo {
            Some(echo) => writeln!(
                f,
                "tcp-echo:  {} bytes ({}) verified, throughput {:.1} Mbit/s (Linux's TCP client, {:.3} s)",
                echo.bytes,
                Size(echo.bytes),
                echo.mbits(),
                echo.elapsed.as_secs_f64()
            )?,
            None => writeln!(f, "tcp-echo:  no result")?,
        }
        if let Some(bridge) = &self.bridge {
            writeln!(f, "bridge:    {bridge}")?;
        }
        match (&self.failure, self.pass()) {
            (Some(failure), _) => writeln!(f, "result:    FAIL ({failure})")?,
            (None, true) => writeln!(f, "result:    PASS (the host reached the VM)")?,
            (None, false) => writeln!(f, "result:    FAIL (lost pings)")?,
        }
        write!(f, "=================================================")
    }
}

/// Checks that the host demo can run here, before anything starts: the
/// options, root (or the capabilities: the namespace is made here), a
/// TUN/TAP driver, Linux's `ping`. Returns the namespace.
///
/// # Errors
///
/// A [`UsageError`] for options the host demo does not take; a plain
/// error saying what is missing otherwise.
pub fn check(options: &DemoOptions) -> anyhow::Result<Namespace> {
    if options.keep {
        return Err(UsageError(
            "--keep does not go with --host: to keep a VM reachable from the host, use the README's recipe (a server, a VM and cargo run -- bridge)".into(),
        )
        .into());
    }
    let needs_root = |reason: &dyn fmt::Display| {
        anyhow::anyhow!(
            "demo --host makes a network namespace and a TAP device, so it needs root: {reason}. Run it as root (e.g. sudo -E cargo run -- demo --host)"
        )
    };
    if let Some(reason) = super::unavailable() {
        return Err(needs_root(&reason));
    }
    let namespace = Namespace::new().map_err(|e| needs_root(&e))?;
    if !netns::have_program(PING) {
        bail!(
            "demo --host runs Linux's `{PING}`, which is not installed (Debian package {PING_PACKAGE})"
        );
    }
    Ok(namespace)
}

/// Runs the host demo; returns whether the host reached the VM.
///
/// # Errors
///
/// See [`check`]; no kernel, no QEMU, no server.
pub fn run(options: &DemoOptions) -> anyhow::Result<bool> {
    let namespace = check(options)?;
    let server_line = CommandLine {
        apps: vec![App::Server],
        mtu: options.mtu,
        ..CommandLine::default()
    };
    let template = options.start.template()?.machine(options.machine);
    let timeout = options.start.qemu.timeout(Some(options.timeout));
    let link = match options.mode {
        Mode::Interrupt => {
            let mut config = ServerConfig::new(unique_socket_path("demo"));
            config.size = options.shm_size;
            Link::serve(config)?
        }
        Mode::Poll => Link::Plain(PlainRegion::create_net(
            &ShmFile::unique_path("demo"),
            options.shm_size,
        )?),
    };
    progress(&link.to_string());
    let mut bridge_options = super::bridge_options(
        link.bridge_link()
            .context("the host bridge joins doorbell and plain links only")?,
    );
    if link.is_plain() {
        bridge_options.id = Some(1);
    }
    bridge_options.mtu = options.mtu.map(u32::from);
    bridge_options.pcap = options.pcap.clone();
    let mut scenario = Scenario::new("demo --host", template, link);
    scenario.set_timeout(timeout);
    let deadline = scenario
        .deadline()
        .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600));
    let mut summary = HostSummary {
        setup: format!(
            "{}, {}, MTU {}, shared memory {}; Linux in a network namespace of its own (TAP {TAP}, {HOST_ADDRESS}/{PREFIX})",
            match options.mode {
                Mode::Interrupt => "irq (ivshmem-doorbell on our v1 server)",
                Mode::Poll => "poll (ivshmem-plain, no server)",
            },
            options.machine,
            options
                .mtu
                .map(usize::from)
                .or_else(|| crate::shm::ShmLayout::net_default_mtu_for(options.shm_size))
                .map_or("?".to_string(), |mtu| mtu.to_string()),
            Size(options.shm_size)
        ),
        link_up: None,
        ping: None,
        echo: None,
        bridge: None,
        failure: None,
    };

    progress(&format!(
        "starting VM B ({server_line}, {} mode, {})…",
        options.mode, options.machine
    ));
    let config = options
        .start
        .cmdline
        .configure(scenario.vm("B"), &server_line)?
        .echo("[B] ");
    let config = options.start.qemu.debug(config);
    match scenario.start(config, Some(0)) {
        Ok(DeviceReport::Found(_)) => {}
        Ok(unusable) => summary.failure = Some(format!("B found no device: {unusable}")),
        Err(e) => summary.failure = Some(e.message),
    }
    if summary.failure.is_none() {
        host_side(options, namespace, bridge_options, deadline, &mut summary);
    }
    if let Ok(Some(outcome)) = scenario.outcome("B") {
        summary
            .failure
            .get_or_insert(format!("VM B ended early: {outcome}"));
    }
    scenario.kill_all();
    drop(scenario);
    let pass = summary.pass();
    println!("{summary}");
    if let Some(pcap) = &options.pcap {
        eprintln!(
            "eth-ivshmem: the bridge's capture is in {} (tcpdump -r {})",
            pcap.display(),
            pcap.display()
        );
    }
    Ok(pass)
}

/// The bridge in a namespace, Linux's ping and TCP echo; fills `summary`.
fn host_side(
    options: &DemoOptions,
    namespace: Namespace,
    bridge_options: bridge::BridgeOptions,
    deadline: Instant,
    summary: &mut HostSummary,
) {
    let left = || deadline.saturating_duration_since(Instant::now());
    progress(&format!(
        "VM B is peer 0 ({VM_ADDRESS}); the bridge joins as peer 1 in a network namespace, TAP {TAP} at {HOST_ADDRESS}/{PREFIX}…"
    ));
    let started = Instant::now();
    let mut host = match HostPeer::start_in(namespace, bridge_options) {
        Ok(host) => host,
        Err(e) => {
            summary.failure = Some(format!("{e:#}"));
            return;
        }
    };
    let result = (|| -> anyhow::Result<()> {
        host.wait_for_link(true, left())?;
        summary.link_up = Some(started.elapsed());
        progress(&format!(
            "link up {:.3} s after the bridge started; Linux pings {VM_ADDRESS} ({} pings)…",
            started.elapsed().as_secs_f64(),
            options.count
        ));
        let ping_options = PingOptions::new(VM_ADDRESS, options.count, PING_INTERVAL);
        if ping_options.deadline() > left() {
            bail!("no time left for {} pings", options.count);
        }
        summary.ping = Some(host.ping(&ping_options, |line| println!("[host] {line}"))?);
        progress(&format!(
            "a TCP client on Linux sends {} through {VM_ADDRESS}:{ECHO_PORT}…",
            Size(options.bytes)
        ));
        summary.echo = Some(host.tcp_echo(
            (VM_ADDRESS, ECHO_PORT).into(),
            options.bytes,
            ECHO_IDLE.min(left()),
        )?);
        Ok(())
    })();
    if let Err(e) = result {
        summary.failure = Some(format!("{e:#}"));
    }
    match host.stop() {
        Ok(bridge) => summary.bridge = Some(bridge),
        Err(e) => {
            summary
                .failure
                .get_or_insert(format!("the bridge failed: {e:#}"));
        }
    }
}
