//! Benchmarks of the host↔VM path: Linux's stack on one end of the link
//! (the bridge in a namespace, [`HostPeer`]), our kernel on the other.
//! Printed numbers, not timed tests.
//!
//! One VM runs `app=tcp-echo,server` with `peer=10.0.0.254`: its TCP echo
//! client first sends through a Linux echo server (Linux as the server),
//! then it serves. The host then measures:
//!
//! * ping round trips from Linux's `ping` ([`HostBenchOptions::pings`] of
//!   them, after a few to settle ARP), as p50 and p99;
//! * a TCP echo from a Linux client through the VM's server (Linux as the
//!   client), every byte checked;
//! * one-way TCP with Linux as the client: Linux sends into the VM's
//!   discard service, and receives (and checks) from its source service;
//! * the bridge thread's CPU time and wake-ups, and QEMU's CPU time, over
//!   [`HostBenchOptions::idle`] with the link up and nothing sent.
//!
//! TCP figures are echo throughputs (each byte crosses the link twice), as
//! the kernel's own `tcp-echo` reports them. [`run`] needs root, QEMU and a
//! kernel, and the caller holds the [`crate::VmLock`]; `cargo run --release
//! -- bench` prints its [`HostBenchResult::rows`] as the table's host↔VM
//! section ([`crate::bench`]).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use abi::cmdline::{App, CommandLine, Mode};
use abi::report::{AppVerdict, ServerReady, TcpEchoResult};
use anyhow::{Context, bail};

use super::echo::{self, DISCARD_PORT, EchoServer, SOURCE_PORT, Served, TcpEcho};
use super::ping::{LinuxPing, PingOptions};
use super::{ECHO_PORT, HOST_ADDRESS, HostPeer, Namespace, VM_ADDRESS};
use crate::link::{Link, unique_socket_path};
use crate::scenario::Scenario;
use crate::server::ServerConfig;
use crate::shm::{PlainRegion, ShmFile};
use crate::size::Size;
use crate::vm::VmConfig;

/// What to measure, how much.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HostBenchOptions {
    /// Linux's pings whose round trips are counted (after
    /// [`WARM_UP_PINGS`]).
    pub pings: u32,
    /// Time between them.
    pub ping_interval: Duration,
    /// Bytes of each TCP echo.
    pub tcp_bytes: u64,
    /// How long the idle link is watched.
    pub idle: Duration,
    /// Interrupts (a doorbell link on our server) or polling (a plain file).
    pub mode: Mode,
    /// The VM's and the TAP's MTU (default: theirs).
    pub mtu: Option<u16>,
    /// Shared memory size.
    pub shm_size: u64,
    /// The limit for the whole run.
    pub timeout: Duration,
}

impl Default for HostBenchOptions {
    /// 500 pings 5 ms apart, 16 MiB each way, 5 s idle, interrupts, 1 MiB.
    fn default() -> Self {
        HostBenchOptions {
            pings: 500,
            ping_interval: Duration::from_millis(5),
            tcp_bytes: 16 << 20,
            idle: Duration::from_secs(5),
            mode: Mode::Interrupt,
            mtu: None,
            shm_size: 1 << 20,
            timeout: Duration::from_secs(120),
        }
    }
}

/// Pings sent first, not counted (ARP, caches).
pub const WARM_UP_PINGS: u32 = 3;

/// Linux as the TCP server: the VM's echo client against it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct VmClientEcho {
    /// What the VM reported (its own clock).
    pub reported: TcpEchoResult,
    /// What Linux's echo server saw (first byte in to last byte out).
    pub served: Served,
}

/// CPU use while the link is up and idle.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct IdleUsage {
    /// How long it was watched.
    pub window: Duration,
    /// The bridge thread's CPU time in that window.
    pub bridge_cpu: Duration,
    /// The bridge thread's context switches (wake-ups) in that window.
    pub bridge_wakeups: u64,
    /// QEMU's CPU time (all its threads) in that window, if readable.
    pub qemu_cpu: Option<Duration>,
}

impl IdleUsage {
    /// The bridge's CPU use in percent of one core.
    pub fn bridge_percent(&self) -> f64 {
        percent(self.bridge_cpu, self.window)
    }

    /// The bridge's wake-ups per second.
    pub fn bridge_wakeups_per_second(&self) -> f64 {
        self.bridge_wakeups as f64 / self.window.as_secs_f64().max(1e-9)
    }

    /// QEMU's CPU use in percent of one core.
    pub fn qemu_percent(&self) -> Option<f64> {
        self.qemu_cpu.map(|cpu| percent(cpu, self.window))
    }
}

fn percent(cpu: Duration, window: Duration) -> f64 {
    100.0 * cpu.as_secs_f64() / window.as_secs_f64().max(1e-9)
}

/// The numbers.
#[derive(Debug, Clone, PartialEq)]
pub struct HostBenchResult {
    /// What ran: mode, MTU, sizes.
    pub setup: String,
    /// Linux's ping (the counted pings only).
    pub ping: LinuxPing,
    /// Linux as the TCP client, through the VM's echo server.
    pub linux_client: TcpEcho,
    /// Linux → VM one way (into the discard service): its time.
    pub linux_send: Duration,
    /// VM → Linux one way (from the source service): its time.
    pub linux_receive: Duration,
    /// Linux as the TCP server, for the VM's echo client.
    pub linux_server: VmClientEcho,
    /// The idle link.
    pub idle: IdleUsage,
}

impl HostBenchResult {
    /// The median round trip.
    pub fn rtt_p50(&self) -> Duration {
        self.ping.percentile(50.0).unwrap_or_default()
    }

    /// The 99th percentile round trip.
    pub fn rtt_p99(&self) -> Duration {
        self.ping.percentile(99.0).unwrap_or_default()
    }

    /// The figures as `(what, value)` rows, for a table.
    pub fn rows(&self) -> Vec<(String, String)> {
        let ms = |d: Duration| format!("{:.3} ms", d.as_secs_f64() * 1e3);
        let served = &self.linux_server.served;
        let bytes = Size(self.linux_client.bytes);
        let mut rows = vec![
            (
                format!(
                    "host→VM ping RTT p50 / p99 ({} pings of Linux's ping)",
                    self.ping.rtts.len()
                ),
                format!("{} / {}", ms(self.rtt_p50()), ms(self.rtt_p99())),
            ),
            (
                format!(
                    "TCP echo, Linux client → VM server, {}",
                    Size(self.linux_client.bytes)
                ),
                format!("{:.1} Mbit/s", self.linux_client.mbits()),
            ),
            (
                format!("TCP one way, Linux → VM (discard service), {bytes}"),
                format!(
                    "{:.1} Mbit/s",
                    echo::mbits(self.linux_client.bytes, self.linux_send)
                ),
            ),
            (
                format!("TCP one way, VM → Linux (source service), {bytes}"),
                format!(
                    "{:.1} Mbit/s",
                    echo::mbits(self.linux_client.bytes, self.linux_receive)
                ),
            ),
            (
                format!(
                    "TCP echo, VM client → Linux server, {}",
                    Size(self.linux_server.reported.bytes)
                ),
                format!(
                    "{} Mbit/s (VM's clock), {:.1} Mbit/s (Linux's)",
                    self.linux_server.reported.throughput,
                    echo::mbits(served.bytes, served.active)
                ),
            ),
            (
                format!(
                    "bridge idle CPU over {:.0} s",
                    self.idle.window.as_secs_f64()
                ),
                format!(
                    "{:.3} % ({:.1} wake-ups/s)",
                    self.idle.bridge_percent(),
                    self.idle.bridge_wakeups_per_second()
                ),
            ),
        ];
        if let Some(qemu) = self.idle.qemu_percent() {
            rows.push(("QEMU idle CPU (VM halted)".into(), format!("{qemu:.1} %")));
        }
        rows
    }
}

/// Runs the benchmarks with VMs from `template` (kernel, QEMU, machine).
///
/// # Errors
///
/// Not root, no QEMU, a VM or the bridge failing, a lost ping or a wrong
/// byte, the timeout.
pub fn run(template: VmConfig, options: &HostBenchOptions) -> anyhow::Result<HostBenchResult> {
    if let Some(reason) = super::unavailable() {
        bail!("the host benchmarks need Linux as a peer: {reason}");
    }
    let namespace = Namespace::new()?;
    let link = match options.mode {
        Mode::Interrupt => {
            let mut config = ServerConfig::new(unique_socket_path("bench-host"));
            config.size = options.shm_size;
            Link::serve(config)?
        }
        Mode::Poll => Link::Plain(PlainRegion::create_net(
            &ShmFile::unique_path("bench-host"),
            options.shm_size,
        )?),
    };
    let mut bridge_options = super::bridge_options(
        link.bridge_link()
            .context("the bridge joins doorbell and plain links")?,
    );
    if link.is_plain() {
        bridge_options.id = Some(1);
    }
    bridge_options.mtu = options.mtu.map(u32::from);
    let setup = format!(
        "{} mode, MTU {}, shared memory {}",
        options.mode,
        options
            .mtu
            .map(usize::from)
            .or_else(|| crate::shm::ShmLayout::net_default_mtu_for(options.shm_size))
            .map_or("?".to_string(), |mtu| mtu.to_string()),
        Size(options.shm_size)
    );
    let mut scenario = Scenario::new("host benchmark", template, link);
    scenario.set_timeout(Some(options.timeout));
    let error = |e: crate::ScenarioError| anyhow::anyhow!("{e}\n{}", e.logs);

    // Linux serves before the link is up: the VM's client starts at once.
    let server = namespace.run(|| EchoServer::start((Ipv4Addr::UNSPECIFIED, ECHO_PORT).into()))?;
    let cmdline = CommandLine {
        apps: vec![App::TcpEcho, App::Server],
        peer: Some(HOST_ADDRESS.into()),
        bytes: options.tcp_bytes,
        mtu: options.mtu,
        ..CommandLine::default()
    };
    scenario
        .start(scenario.vm("vm").cmdline(cmdline), Some(0))
        .map_err(error)?;
    let mut host = HostPeer::start_in(namespace, bridge_options)?;
    let left = |scenario: &Scenario| {
        scenario.deadline().map_or(options.timeout, |d| {
            d.saturating_duration_since(Instant::now())
        })
    };
    host.wait_for_link(true, left(&scenario))?;

    // Linux as the server.
    let (_, verdict) = scenario
        .wait_for_where("vm", 0, |v: &AppVerdict| v.app == App::TcpEcho)
        .map_err(error)?;
    if !verdict.pass {
        bail!(
            "the VM's TCP echo against Linux failed\n{}",
            scenario.context()
        );
    }
    let (_, reported) = scenario.wait_for::<TcpEchoResult>("vm", 0).map_err(error)?;
    let statistics = server.stop();
    let served = statistics
        .connections
        .iter()
        .copied()
        .max_by_key(|c| c.bytes)
        .context("Linux's echo server saw no connection")?;
    scenario.wait_for::<ServerReady>("vm", 0).map_err(error)?;

    // Ping: a few to settle ARP, then the counted ones.
    let warm_up = PingOptions::new(VM_ADDRESS, WARM_UP_PINGS, Duration::from_millis(20));
    host.ping(&warm_up, |_| {})?;
    let counted = PingOptions::new(VM_ADDRESS, options.pings, options.ping_interval);
    let ping = host.ping(&counted, |_| {})?;
    if ping.received != options.pings {
        bail!("Linux's ping lost replies: {ping}");
    }

    // Linux as the client.
    let linux_client = host.tcp_echo(
        (VM_ADDRESS, ECHO_PORT).into(),
        options.tcp_bytes,
        Duration::from_secs(20).min(left(&scenario)),
    )?;

    let linux_send = host.tcp_send(
        (VM_ADDRESS, DISCARD_PORT).into(),
        options.tcp_bytes,
        Duration::from_secs(20).min(left(&scenario)),
    )?;
    let linux_receive = host.tcp_receive(
        (VM_ADDRESS, SOURCE_PORT).into(),
        options.tcp_bytes,
        Duration::from_secs(20).min(left(&scenario)),
    )?;

    // The idle link.
    let qemu = scenario.handle("vm").map_err(error)?.pid();
    let before = (host.bridge_usage()?, process_cpu(qemu));
    let started = Instant::now();
    scenario.sleep(options.idle).map_err(error)?;
    let window = started.elapsed();
    let after = (host.bridge_usage()?, process_cpu(qemu));
    let idle = IdleUsage {
        window,
        bridge_cpu: after.0.cpu.saturating_sub(before.0.cpu),
        bridge_wakeups: after.0.switches.saturating_sub(before.0.switches),
        qemu_cpu: after.1.zip(before.1).map(|(a, b)| a.saturating_sub(b)),
    };
    if let Some(outcome) = scenario.outcome("vm").map_err(error)? {
        bail!("the VM ended: {outcome}\n{}", scenario.context());
    }
    let summary = host.stop()?;
    if summary.protocol_errors > 0 {
        bail!("the bridge saw protocol errors: {summary}");
    }
    scenario.kill_all();
    Ok(HostBenchResult {
        setup,
        ping,
        linux_client,
        linux_send,
        linux_receive,
        linux_server: VmClientEcho { reported, served },
        idle,
    })
}

/// The CPU time (user and system, all threads) of process `pid`.
fn process_cpu(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces) in parentheses.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    // utime and stime are fields 14 and 15; the first one here is field 3.
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf(3) reads a configuration value; no memory is involved.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    Some(Duration::from_micros(ticks * 1_000_000 / hz))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn our_own_cpu_time_is_readable() {
        let spin = Instant::now();
        while spin.elapsed() < Duration::from_millis(30) {
            std::hint::spin_loop();
        }
        let cpu = process_cpu(std::process::id()).unwrap();
        assert!(cpu >= Duration::from_millis(10), "{cpu:?}");
    }

    #[test]
    fn rows_read_well() {
        let result = HostBenchResult {
            setup: "irq mode".into(),
            ping: LinuxPing {
                transmitted: 4,
                received: 4,
                loss_percent: 0.0,
                rtts: [100, 120, 130, 900].map(Duration::from_micros).to_vec(),
                summary: None,
            },
            linux_client: TcpEcho {
                bytes: 16 << 20,
                elapsed: Duration::from_millis(200),
            },
            linux_send: Duration::from_millis(100),
            linux_receive: Duration::from_millis(400),
            linux_server: VmClientEcho {
                reported: TcpEchoResult {
                    bytes: 16 << 20,
                    throughput: abi::report::Mbits(5000),
                },
                served: Served {
                    peer: "10.0.0.1:49152".parse().unwrap(),
                    bytes: 16 << 20,
                    active: Duration::from_millis(250),
                },
            },
            idle: IdleUsage {
                window: Duration::from_secs(5),
                bridge_cpu: Duration::from_millis(5),
                bridge_wakeups: 50,
                qemu_cpu: Some(Duration::from_millis(100)),
            },
        };
        assert_eq!(result.rtt_p50(), Duration::from_micros(120));
        assert_eq!(result.rtt_p99(), Duration::from_micros(900));
        let text: String = result
            .rows()
            .into_iter()
            .map(|(what, value)| format!("{what}  {value}\n"))
            .collect();
        for needle in [
            "0.120 ms / 0.900 ms",
            "Linux client → VM server, 16M",
            "671.1 Mbit/s",
            "Linux → VM (discard service), 16M  1342.2 Mbit/s",
            "VM → Linux (source service), 16M  335.5 Mbit/s",
            "500.0 Mbit/s (VM's clock), 536.9 Mbit/s (Linux's)",
            "0.100 % (10.0 wake-ups/s)",
            "QEMU idle CPU (VM halted)",
            "2.0 %",
        ] {
            assert!(text.contains(needle), "{needle:?} in\n{text}");
        }
    }
}
