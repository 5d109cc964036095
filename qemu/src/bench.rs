//! `cargo run --release -- bench`: one table, printed in one run, that
//! judges the link against what it is chosen over (issue 12).
//!
//! * The engine on the host ([`netdev_host::bench`]): frames/s through two
//!   engines on two threads at 64, 1514 and 9014 bytes, next to the same
//!   frames with the same copies through the `rtrb` SPSC ring, and to one
//!   thread's memcpy of frames of that size.
//! * A VM pair per setup: ivshmem-net in interrupt mode (`ivshmem-doorbell`
//!   on our server) and polling mode (`ivshmem-plain`), and the baseline
//!   QEMU users would pick instead, virtio-net joined by QEMU's own
//!   `-netdev dgram` over two Unix datagram sockets (traffic never leaves
//!   the host), in both modes. Every run boots the server VM B, then the
//!   client VM A twice: once for `ping` (the link-up time, the first ping
//!   with its ARP, percentiles after it), once for `tcp-send`, `tcp-recv`,
//!   `tcp-echo` and `udp-flood`. Each number is the median (min–max) of
//!   the runs.
//! * TCP stalls: per ivshmem setup, `--echoes` consecutive echoes of
//!   `--bytes` in one connection after another; a round that takes more than
//!   [`STALL_MILLIS`] longer than the median round is a stall (it waited
//!   for a retransmission timeout, at least 1 s in smoltcp).
//!
//! * The host↔VM rows ([`crate::hostpeer::bench`]): Linux's own stack, in a
//!   network namespace behind the bridge, against one VM on a doorbell
//!   link: Linux's `ping` RTT p50/p99, TCP one way each direction with
//!   Linux as the client, a TCP echo with Linux as the client and one with
//!   Linux as the server, and the bridge's CPU use on the idle link. They need root and `/dev/net/tun` (`--host auto` skips them
//!   with the reason otherwise).
//!
//! The whole bench runs under the [`VmLock`], so no other VM pair shares the
//! CPUs meanwhile; the machine load is printed before and after.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use abi::cmdline::{App, CommandLine, Mode, Net};
use abi::report::{
    Direction, LinkUp, PingPercentiles, PingReply, ServerReady, TcpEchoRound, TcpOneWay,
    UdpFloodResult,
};
use netdev_host::bench::{self as engine_bench, Spread};

use crate::link::{Link, unique_socket_path};
use crate::options::{self, StartOptions};
use crate::scenario::Scenario;
use crate::server::ServerConfig;
use crate::shm::{PlainRegion, ShmFile};
use crate::size::Size;
use crate::{VmConfig, VmLock};

/// One VM pair setup of the bench.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Setup {
    /// ivshmem-net on `ivshmem-doorbell` and our server, MSI-X doorbells.
    IvshmemIrq,
    /// ivshmem-net on `ivshmem-plain`, both VMs polling.
    IvshmemPoll,
    /// virtio-net on `-netdev dgram`, MSI-X interrupts.
    VirtioIrq,
    /// virtio-net on `-netdev dgram`, both VMs polling.
    VirtioPoll,
}

impl Setup {
    /// Every setup, in table order.
    pub const ALL: [Setup; 4] = [
        Setup::IvshmemIrq,
        Setup::IvshmemPoll,
        Setup::VirtioIrq,
        Setup::VirtioPoll,
    ];

    /// The column title.
    pub fn title(self) -> &'static str {
        match self {
            Setup::IvshmemIrq => "ivshmem irq",
            Setup::IvshmemPoll => "ivshmem poll",
            Setup::VirtioIrq => "virtio irq",
            Setup::VirtioPoll => "virtio poll",
        }
    }

    fn mode(self) -> Mode {
        match self {
            Setup::IvshmemIrq | Setup::VirtioIrq => Mode::Interrupt,
            Setup::IvshmemPoll | Setup::VirtioPoll => Mode::Poll,
        }
    }

    fn net(self) -> Net {
        match self {
            Setup::IvshmemIrq | Setup::IvshmemPoll => Net::Ivshmem,
            Setup::VirtioIrq | Setup::VirtioPoll => Net::Virtio,
        }
    }
}

/// Whether the bench runs the host↔VM rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum HostRows {
    /// When Linux can be a peer here (root, `/dev/net/tun`); otherwise the
    /// table says why not.
    Auto,
    /// Always: without root or TUN the bench fails.
    Yes,
    /// Never.
    No,
}

/// The host↔VM section of the table.
#[derive(Debug, Clone, PartialEq)]
pub enum HostSection {
    /// The numbers.
    Measured(Box<crate::hostpeer::bench::HostBenchResult>),
    /// Not run, and why (no root, no TUN).
    Skipped(String),
    /// Run, and it failed.
    Failed(String),
}

/// The bench's options (`cargo run -- bench --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct BenchOptions {
    /// VM pair runs per setup (each number is the median of these).
    #[arg(long, value_name = "N", default_value_t = 3, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub runs: u32,
    /// Pings per run, 10 ms apart (the first, with ARP, is reported on its own).
    #[arg(long, value_name = "N", default_value_t = 200, value_parser = clap::value_parser!(u32).range(2..=65535))]
    pub pings: u32,
    /// Bytes of each TCP transfer (send, receive, echo).
    #[arg(long, value_name = "SIZE", default_value = "16M", value_parser = options::parse_echo_bytes)]
    pub bytes: u64,
    /// Datagrams of 64 bytes per UDP flood.
    #[arg(long, value_name = "N", default_value_t = 20_000, value_parser = clap::value_parser!(u32).range(1..=65535))]
    pub datagrams: u32,
    /// Consecutive TCP echoes of --bytes per ivshmem setup, to count stalls (0: none).
    #[arg(long, value_name = "N", default_value_t = 100, value_parser = clap::value_parser!(u32).range(0..=1000))]
    pub echoes: u32,
    /// Milliseconds per engine measurement on the host (0: skip the engine).
    #[arg(long, value_name = "MS", default_value_t = 300)]
    pub engine_millis: u64,
    /// Engine measurements per frame size.
    #[arg(long, value_name = "N", default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub engine_runs: u32,
    /// The VM pair setups, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = Setup::ALL.to_vec())]
    pub setups: Vec<Setup>,
    /// Host↔VM rows: Linux through the bridge against one VM (--pings
    /// pings 5 ms apart, TCP echoes of --bytes); auto: only as root with
    /// /dev/net/tun.
    #[arg(long, value_enum, value_name = "WHEN", default_value = "auto")]
    pub host: HostRows,
    /// Seconds the bridge's CPU use is measured on the idle link.
    #[arg(long, value_name = "SECS", default_value = "5", value_parser = options::parse_seconds)]
    pub idle: Duration,
    /// The kernel, its command line and QEMU.
    #[command(flatten)]
    pub start: StartOptions,
}

/// The engine's row at one frame size: frames/s of each measurement.
#[derive(Debug, Clone, PartialEq)]
pub struct EngineRow {
    /// Bytes per frame.
    pub frame_size: usize,
    /// Two engines on two threads.
    pub engine: Spread,
    /// The same frames through `rtrb`.
    pub spsc: Spread,
    /// One thread's memcpy of such frames.
    pub memcpy: Spread,
}

/// What one VM pair run measured (None: the line did not come).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RunResult {
    /// From VM A's start to its `link: up` line, in ms.
    pub link_up_ms: Option<f64>,
    /// The first ping's round trip (with ARP), in ms.
    pub first_ping_ms: Option<f64>,
    /// Ping percentiles after the first.
    pub ping: Option<PingPercentiles>,
    /// tcp-send, Mbit/s.
    pub send_mbits: Option<f64>,
    /// tcp-recv, Mbit/s.
    pub recv_mbits: Option<f64>,
    /// tcp-echo (bytes cross twice), Mbit/s.
    pub echo_mbits: Option<f64>,
    /// udp-flood.
    pub udp: Option<UdpFloodResult>,
    /// What went wrong, if anything.
    pub errors: Vec<String>,
}

/// How much longer than the median round a stalled round takes at least:
/// a stall waits for smoltcp's retransmission timer (1 s at least); a slow
/// host stretches every round alike (seen: median 409 ms, slowest 733 ms
/// under a load of 4).
pub const STALL_MILLIS: f64 = 800.0;

/// The echo rounds of one stall run.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StallResult {
    /// Each round's time in ms, in order.
    pub rounds_ms: Vec<f64>,
    /// What went wrong, if anything.
    pub error: Option<String>,
}

impl StallResult {
    /// The indexes of the rounds that stalled: over [`STALL_MILLIS`] longer
    /// than the median round.
    pub fn stalls(&self) -> Vec<usize> {
        if self.rounds_ms.is_empty() {
            return Vec::new();
        }
        let median = Spread::of(&self.rounds_ms).median;
        self.rounds_ms
            .iter()
            .enumerate()
            .filter(|(_, ms)| **ms > median + STALL_MILLIS)
            .map(|(index, _)| index)
            .collect()
    }
}

/// Everything the table shows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Report {
    /// When and where: load before and after, QEMU, options.
    pub header: Vec<String>,
    /// The engine rows.
    pub engine: Vec<EngineRow>,
    /// Milliseconds per engine measurement, and measurements per row.
    pub engine_method: (u64, u32),
    /// Per setup, its runs.
    pub runs: Vec<(Setup, Vec<RunResult>)>,
    /// Per ivshmem setup, its stall run.
    pub stalls: Vec<(Setup, StallResult)>,
    /// Bytes of each TCP transfer.
    pub bytes: u64,
    /// The host↔VM rows, if asked for.
    pub host: Option<HostSection>,
}

fn progress(message: &str) {
    eprintln!("bench: {message}");
}

/// The machine's load averages (`/proc/loadavg`).
pub fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|text| {
            let fields: Vec<&str> = text.split_whitespace().take(3).collect();
            (fields.len() == 3).then(|| fields.join(" "))
        })
        .unwrap_or_else(|| "unknown".into())
}

/// Builds the kernel, runs every measurement and prints the table; returns
/// whether every run produced its numbers.
pub fn run(options: &BenchOptions) -> anyhow::Result<bool> {
    let host_unavailable = match options.host {
        HostRows::No => None,
        HostRows::Auto | HostRows::Yes => crate::hostpeer::unavailable(),
    };
    if let (HostRows::Yes, Some(reason)) = (options.host, &host_unavailable) {
        anyhow::bail!("--host yes: Linux cannot be a peer here: {reason}");
    }
    let template = options.start.template()?;
    let _lock = VmLock::acquire()?;
    let mut report = Report {
        bytes: options.bytes,
        engine_method: (options.engine_millis, options.engine_runs),
        ..Report::default()
    };
    report.header.push(format!(
        "load before: {} (1/5/15 min), {} CPUs, {}",
        load(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        qemu_version(&template.qemu)
    ));
    if options.engine_millis > 0 {
        progress("the engine on the host…");
        report.engine = engine_rows(
            Duration::from_millis(options.engine_millis),
            options.engine_runs,
        );
    }
    for &setup in &options.setups {
        let mut runs = Vec::new();
        for run in 0..options.runs {
            progress(&format!(
                "{}: run {} of {}…",
                setup.title(),
                run + 1,
                options.runs
            ));
            runs.push(vm_run(options, &template, setup));
        }
        report.runs.push((setup, runs));
    }
    if options.echoes > 0 {
        for &setup in &options.setups {
            if setup.net() == Net::Ivshmem {
                progress(&format!(
                    "{}: {} consecutive TCP echoes of {}…",
                    setup.title(),
                    options.echoes,
                    Size(options.bytes)
                ));
                report
                    .stalls
                    .push((setup, stall_run(options, &template, setup)));
            }
        }
    }
    if options.host != HostRows::No {
        report.host = Some(match host_unavailable {
            Some(reason) => HostSection::Skipped(reason),
            None => {
                progress("host↔VM: Linux through the bridge…");
                host_run(options, &template)
            }
        });
    }
    report.header.push(format!("load after:  {}", load()));
    print!("{}", report.table());
    let complete = report.runs.iter().all(|(_, runs)| {
        runs.iter()
            .all(|run| run.errors.is_empty() && run.udp.is_some())
    }) && report
        .stalls
        .iter()
        .all(|(_, stall)| stall.error.is_none() && stall.stalls().is_empty())
        && !matches!(report.host, Some(HostSection::Failed(_)));
    Ok(complete)
}

/// The host↔VM rows, with the options' pings and bytes.
fn host_run(options: &BenchOptions, template: &VmConfig) -> HostSection {
    let host_options = crate::hostpeer::bench::HostBenchOptions {
        pings: options.pings,
        tcp_bytes: options.bytes,
        idle: options.idle,
        ..Default::default()
    };
    match crate::hostpeer::bench::run(template.clone(), &host_options) {
        Ok(result) => HostSection::Measured(Box::new(result)),
        Err(error) => HostSection::Failed(format!("{error:#}")),
    }
}

fn qemu_version(qemu: &PathBuf) -> String {
    std::process::Command::new(qemu)
        .arg("--version")
        .output()
        .ok()
        .and_then(|output| {
            String::from_utf8_lossy(&output.stdout)
                .lines()
                .next()
                .map(str::to_string)
        })
        .unwrap_or_else(|| "QEMU version unknown".into())
}

/// The engine rows at 64, 1514 and 9014 bytes.
pub fn engine_rows(duration: Duration, runs: u32) -> Vec<EngineRow> {
    let spread = |measure: &dyn Fn() -> engine_bench::Sample| {
        let rates: Vec<f64> = (0..runs).map(|_| measure().frames_per_second()).collect();
        Spread::of(&rates)
    };
    [64, 1514, 9014]
        .into_iter()
        .map(|frame_size| EngineRow {
            frame_size,
            engine: spread(&|| engine_bench::engine(frame_size, duration)),
            spsc: spread(&|| engine_bench::spsc(frame_size, duration)),
            memcpy: spread(&|| engine_bench::memcpy(frame_size, duration)),
        })
        .collect()
}

/// The two datagram sockets of a virtio-net pair (QEMU creates them; they
/// are removed with this value).
#[derive(Debug)]
pub struct Sockets(pub PathBuf, pub PathBuf);

impl Drop for Sockets {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        let _ = std::fs::remove_file(&self.1);
    }
}

/// What the VMs of `setup` share: an ivshmem link, or for virtio-net no
/// link and two datagram sockets.
fn medium(setup: Setup) -> anyhow::Result<(Link, Option<Sockets>)> {
    Ok(match setup {
        Setup::IvshmemIrq => (
            Link::serve(ServerConfig::new(unique_socket_path("bench")))?,
            None,
        ),
        Setup::IvshmemPoll => (
            Link::Plain(PlainRegion::create_net(
                &ShmFile::unique_path("bench"),
                crate::link::DEFAULT_PLAIN_SIZE,
            )?),
            None,
        ),
        Setup::VirtioIrq | Setup::VirtioPoll => (
            Link::None,
            Some(Sockets(
                unique_socket_path("bench-dgram-0"),
                unique_socket_path("bench-dgram-1"),
            )),
        ),
    })
}

/// QEMU's arguments for peer `id`'s virtio-net on the datagram sockets
/// (QEMU 7.2's `-netdev dgram`, Unix sockets: loopback only).
pub fn virtio_args(sockets: &Sockets, id: u16) -> Vec<String> {
    let (own, peer) = if id == 0 {
        (&sockets.0, &sockets.1)
    } else {
        (&sockets.1, &sockets.0)
    };
    vec![
        "-netdev".into(),
        format!(
            "dgram,id=net0,local.type=unix,local.path={},remote.type=unix,remote.path={}",
            own.display(),
            peer.display()
        ),
        "-device".into(),
        format!(
            "virtio-net-pci,netdev=net0,mac=52:54:00:00:00:{id:02x},disable-legacy=on,romfile="
        ),
    ]
}

/// Boots `name` as peer `id` with `line` on `medium`; returns when the VM
/// has announced its device (ivshmem) or at once (virtio-net, whose device
/// needs no order).
fn boot(
    scenario: &mut Scenario,
    sockets: Option<&Sockets>,
    setup: Setup,
    (name, id): (&str, u16),
    mut line: CommandLine,
    options: &BenchOptions,
) -> anyhow::Result<()> {
    line.mode = setup.mode();
    line.net = setup.net();
    let mut config: VmConfig = scenario.vm(name);
    if let Some(sockets) = sockets {
        line.id = Some(id);
        config = config.qemu_args(virtio_args(sockets, id));
    }
    let config = options.start.cmdline.configure(config, &line)?;
    if setup.net() == Net::Virtio {
        scenario.spawn(config, Some(id))?;
    } else {
        scenario.start(config, Some(id))?;
    }
    Ok(())
}

/// One VM pair run: B serves; A pings, then moves the TCP and UDP traffic.
fn vm_run(options: &BenchOptions, template: &VmConfig, setup: Setup) -> RunResult {
    let mut result = RunResult::default();
    if let Err(error) = try_vm_run(options, template, setup, &mut result) {
        result.errors.push(format!("{error:#}"));
    }
    result
}

fn try_vm_run(
    options: &BenchOptions,
    template: &VmConfig,
    setup: Setup,
    result: &mut RunResult,
) -> anyhow::Result<()> {
    let (link, sockets) = medium(setup)?;
    let sockets = sockets.as_ref();
    let mut scenario = Scenario::new("bench", template.clone(), link);
    scenario.set_timeout(Some(Duration::from_secs(300)));
    let server = CommandLine {
        apps: vec![App::Server],
        ..CommandLine::default()
    };
    boot(&mut scenario, sockets, setup, ("B", 0), server, options)?;
    if setup.net() == Net::Virtio {
        scenario.wait_for::<ServerReady>("B", 0)?;
    }
    let pinger = CommandLine {
        apps: vec![App::Ping],
        count: options.pings,
        interval: 10,
        ..CommandLine::default()
    };
    boot(&mut scenario, sockets, setup, ("A", 1), pinger, options)?;
    let started = Instant::now() - scenario.handle("A")?.elapsed();
    let (_, _up) = scenario.wait_for::<LinkUp>("A", 0)?;
    result.link_up_ms = Some(started.elapsed().as_secs_f64() * 1000.0);
    // The line arrived a little after the kernel printed it; the VM's own
    // clock is not the host's, so the host's view is the one reported.
    scenario.wait_exit("A")?;
    let replies: Vec<PingReply> = scenario.reports("A")?;
    result.first_ping_ms = replies
        .iter()
        .find(|reply| reply.sequence == 0)
        .map(|reply| reply.rtt.as_millis_f64());
    result.ping = scenario.reports::<PingPercentiles>("A")?.first().copied();
    if result.ping.is_none() {
        result.errors.push("no ping percentiles".into());
    }
    let traffic = CommandLine {
        apps: vec![App::TcpSend, App::TcpRecv, App::TcpEcho, App::UdpFlood],
        bytes: options.bytes,
        count: options.datagrams,
        sizes: vec![64],
        ..CommandLine::default()
    };
    boot(&mut scenario, sockets, setup, ("A", 1), traffic, options)?;
    scenario.wait_exit("A")?;
    for line in scenario.reports::<TcpOneWay>("A")? {
        match line.direction {
            Direction::Send => result.send_mbits = Some(line.throughput.as_f64()),
            Direction::Receive => result.recv_mbits = Some(line.throughput.as_f64()),
        }
    }
    result.echo_mbits = scenario
        .reports::<TcpEchoRound>("A")?
        .first()
        .map(|round| round.throughput.as_f64());
    result.udp = scenario.reports::<UdpFloodResult>("A")?.first().copied();
    for (what, missing) in [
        ("tcp-send", result.send_mbits.is_none()),
        ("tcp-recv", result.recv_mbits.is_none()),
        ("tcp-echo", result.echo_mbits.is_none()),
        ("udp-flood", result.udp.is_none()),
    ] {
        if missing {
            result.errors.push(format!("{what} reported nothing"));
        }
    }
    if !result.errors.is_empty() {
        let lines = scenario.lines("A")?;
        let tail = lines[lines.len().saturating_sub(6)..].join("\n  ");
        result.errors.push(format!("last lines of A:\n  {tail}"));
    }
    scenario.kill_all();
    Ok(())
}

/// `--echoes` TCP echoes of `--bytes`, one connection after another.
fn stall_run(options: &BenchOptions, template: &VmConfig, setup: Setup) -> StallResult {
    let mut result = StallResult::default();
    let outcome = (|| -> anyhow::Result<()> {
        let (link, sockets) = medium(setup)?;
        let sockets = sockets.as_ref();
        let mut scenario = Scenario::new("bench", template.clone(), link);
        scenario.set_timeout(Some(Duration::from_secs(600)));
        let server = CommandLine {
            apps: vec![App::Server],
            ..CommandLine::default()
        };
        boot(&mut scenario, sockets, setup, ("B", 0), server, options)?;
        let echoes = CommandLine {
            apps: vec![App::TcpEcho],
            bytes: options.bytes,
            repeat: options.echoes,
            ..CommandLine::default()
        };
        boot(&mut scenario, sockets, setup, ("A", 1), echoes, options)?;
        let outcome = scenario.wait_exit("A")?;
        result.rounds_ms = scenario
            .reports::<TcpEchoRound>("A")?
            .iter()
            .map(|round| round.time.as_millis_f64())
            .collect();
        if result.rounds_ms.len() != options.echoes as usize {
            result.error = Some(format!(
                "{} of {} rounds finished ({outcome})",
                result.rounds_ms.len(),
                options.echoes
            ));
        }
        scenario.kill_all();
        Ok(())
    })();
    if let Err(error) = outcome {
        result.error = Some(format!("{error:#}"));
    }
    result
}

/// `median (min–max)` with `decimals`, or `-` without values.
fn cell(values: &[f64], decimals: usize) -> String {
    if values.is_empty() {
        return "-".into();
    }
    let spread = Spread::of(values);
    format!(
        "{:.*} ({:.*}–{:.*})",
        decimals, spread.median, decimals, spread.min, decimals, spread.max
    )
}

fn millions(spread: Spread) -> String {
    format!(
        "{:.2}M ({:.2}–{:.2})",
        spread.median / 1e6,
        spread.min / 1e6,
        spread.max / 1e6
    )
}

/// The median of what `pick` finds in the runs of `setup`.
fn median_of(report: &Report, setup: Setup, pick: fn(&RunResult) -> Option<f64>) -> Option<f64> {
    let values: Vec<f64> = report
        .runs
        .iter()
        .find(|(s, _)| *s == setup)?
        .1
        .iter()
        .filter_map(pick)
        .collect();
    (!values.is_empty()).then(|| Spread::of(&values).median)
}

/// The VM rows: title, decimals, and what to take from a run.
type Row = (&'static str, usize, fn(&RunResult) -> Option<f64>);

const VM_ROWS: [Row; 10] = [
    ("link up (ms, host's view)", 0, |r| r.link_up_ms),
    ("first ping, ARP incl. (ms)", 3, |r| r.first_ping_ms),
    ("ping RTT p50 (ms)", 3, |r| {
        r.ping.map(|p| p.p50.as_millis_f64())
    }),
    ("ping RTT p99 (ms)", 3, |r| {
        r.ping.map(|p| p.p99.as_millis_f64())
    }),
    ("ping RTT max (ms)", 3, |r| {
        r.ping.map(|p| p.max.as_millis_f64())
    }),
    ("TCP send (Mbit/s)", 0, |r| r.send_mbits),
    ("TCP receive (Mbit/s)", 0, |r| r.recv_mbits),
    ("TCP echo (Mbit/s)", 0, |r| r.echo_mbits),
    ("UDP 64 B (datagrams/s)", 0, |r| {
        r.udp.map(|u| u.rate as f64)
    }),
    ("UDP 64 B arrived (%)", 1, |r| {
        r.udp
            .map(|u| 100.0 * f64::from(u.received) / f64::from(u.sent.max(1)))
    }),
];

impl Report {
    /// The table, as the bench prints it.
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(
            out,
            "==================== eth-ivshmem bench ===================="
        );
        for line in &self.header {
            let _ = writeln!(out, "{line}");
        }
        if !self.engine.is_empty() {
            let _ = writeln!(
                out,
                "\nthe engine on the host, frames/s, median (min–max) of {} runs of {} ms:",
                self.engine_method.1, self.engine_method.0
            );
            let _ = writeln!(
                out,
                "{:>6}  {:>24}  {:>24}  {:>7}  {:>24}  {:>9}",
                "frame",
                "engine (2 threads)",
                "rtrb SPSC (reference)",
                "vs SPSC",
                "memcpy (1 thread)",
                "of memcpy"
            );
            for row in &self.engine {
                let _ = writeln!(
                    out,
                    "{:>6}  {:>24}  {:>24}  {:>6.0}%  {:>24}  {:>8.0}%",
                    row.frame_size,
                    millions(row.engine),
                    millions(row.spsc),
                    100.0 * row.engine.median / row.spsc.median,
                    millions(row.memcpy),
                    100.0 * row.engine.median / row.memcpy.median
                );
            }
        }
        if !self.runs.is_empty() {
            let runs = self.runs.iter().map(|(_, r)| r.len()).max().unwrap_or(0);
            let _ = writeln!(
                out,
                "\nVM pair (QEMU TCG, -smp 1,maxcpus=2), median (min–max) of {runs} runs; TCP: {} each way, echo counts each byte once:",
                Size(self.bytes)
            );
            let _ = write!(out, "{:<28}", "");
            for (setup, _) in &self.runs {
                let _ = write!(out, "  {:>26}", setup.title());
            }
            let _ = writeln!(out);
            for (title, decimals, pick) in VM_ROWS {
                let _ = write!(out, "{title:<28}");
                for (_, runs) in &self.runs {
                    let values: Vec<f64> = runs.iter().filter_map(pick).collect();
                    let _ = write!(out, "  {:>26}", cell(&values, decimals));
                }
                let _ = writeln!(out);
            }
            for (mode, ivshmem, virtio) in [
                ("irq", Setup::IvshmemIrq, Setup::VirtioIrq),
                ("poll", Setup::IvshmemPoll, Setup::VirtioPoll),
            ] {
                let ratio = |pick: fn(&RunResult) -> Option<f64>| match (
                    median_of(self, ivshmem, pick),
                    median_of(self, virtio, pick),
                ) {
                    (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
                    _ => "-".into(),
                };
                let (rtt, send, recv, echo, udp) = (
                    ratio(VM_ROWS[2].2),
                    ratio(VM_ROWS[5].2),
                    ratio(VM_ROWS[6].2),
                    ratio(VM_ROWS[7].2),
                    ratio(VM_ROWS[8].2),
                );
                if rtt != "-" || echo != "-" {
                    let _ = writeln!(
                        out,
                        "ivshmem / virtio-net, {mode}: RTT p50 ×{rtt}, TCP send ×{send}, receive ×{recv}, echo ×{echo}, UDP ×{udp}"
                    );
                }
            }
            for (setup, runs) in &self.runs {
                for (index, run) in runs.iter().enumerate() {
                    for error in &run.errors {
                        let _ = writeln!(out, "{} run {}: {error}", setup.title(), index + 1);
                    }
                }
            }
        }
        for (setup, stall) in &self.stalls {
            let stalls = stall.stalls();
            let _ = write!(out, "\nTCP echo stalls, {}: ", setup.title());
            if stall.rounds_ms.is_empty() {
                let _ = write!(out, "no rounds");
            } else {
                let spread = Spread::of(&stall.rounds_ms);
                let _ = write!(
                    out,
                    "{} of {} rounds of {} stalled (round median {:.0} ms, slowest {:.0} ms)",
                    stalls.len(),
                    stall.rounds_ms.len(),
                    Size(self.bytes),
                    spread.median,
                    spread.max
                );
                if !stalls.is_empty() {
                    let _ = write!(out, "; stalled rounds: {stalls:?}");
                }
            }
            if let Some(error) = &stall.error {
                let _ = write!(out, "; {error}");
            }
        }
        if !self.stalls.is_empty() {
            let _ = writeln!(out);
        }
        match &self.host {
            None => {}
            Some(HostSection::Measured(result)) => {
                let _ = writeln!(
                    out,
                    "\nhost↔VM, Linux's stack through the bridge ({}):",
                    result.setup
                );
                let rows = result.rows();
                let width = rows.iter().map(|(what, _)| what.chars().count()).max();
                for (what, value) in rows {
                    let _ = writeln!(out, "{what:<width$}  {value}", width = width.unwrap_or(0));
                }
            }
            Some(HostSection::Skipped(reason)) => {
                let _ = writeln!(out, "\nhost↔VM rows skipped: {reason}");
            }
            Some(HostSection::Failed(error)) => {
                let _ = writeln!(out, "\nhost↔VM rows failed: {error}");
            }
        }
        let _ = writeln!(
            out,
            "==========================================================="
        );
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::report::Millis;

    fn run(p50: u64, echo: f64, rate: u64) -> RunResult {
        RunResult {
            link_up_ms: Some(120.0),
            first_ping_ms: Some(0.9),
            ping: Some(PingPercentiles {
                replies: 199,
                p50: Millis(p50),
                p99: Millis(2 * p50),
                max: Millis(3 * p50),
            }),
            send_mbits: Some(echo * 2.0),
            recv_mbits: Some(echo * 2.0),
            echo_mbits: Some(echo),
            udp: Some(UdpFloodResult {
                received: 990,
                sent: 1000,
                size: 64,
                receive_time: Millis(10_000),
                rate,
                send_time: Millis(9_000),
            }),
            errors: Vec::new(),
        }
    }

    #[test]
    fn the_table_shows_medians_ratios_and_stalls() {
        let report = Report {
            header: vec!["load before: 0.10 0.20 0.30".into()],
            engine: vec![EngineRow {
                frame_size: 64,
                engine: Spread::of(&[4e6, 5e6, 6e6]),
                spsc: Spread::of(&[5e6]),
                memcpy: Spread::of(&[10e6]),
            }],
            engine_method: (300, 3),
            runs: vec![
                (
                    Setup::IvshmemIrq,
                    vec![run(100, 1000.0, 100_000), run(120, 1200.0, 90_000)],
                ),
                (Setup::VirtioIrq, vec![run(400, 300.0, 30_000)]),
            ],
            stalls: vec![(
                Setup::IvshmemIrq,
                StallResult {
                    rounds_ms: vec![100.0, 110.0, 7100.0, 105.0],
                    error: None,
                },
            )],
            bytes: 16 << 20,
            host: Some(HostSection::Skipped("not root".into())),
        };
        let table = report.table();
        assert!(table.contains("host↔VM rows skipped: not root"), "{table}");
        assert!(table.contains("load before: 0.10 0.20 0.30"), "{table}");
        assert!(table.contains("5.00M (4.00–6.00)"), "{table}");
        assert!(table.contains("100%"), "vs SPSC\n{table}");
        assert!(table.contains("50%"), "of memcpy\n{table}");
        assert!(
            table.contains("ping RTT p50 (ms)") && table.contains("0.100 (0.100–0.120)"),
            "{table}"
        );
        assert!(
            table.contains("ivshmem / virtio-net, irq: RTT p50 ×0.25, TCP send ×3.33"),
            "{table}"
        );
        assert!(!table.contains(", poll:"), "no poll columns\n{table}");
        assert!(
            table.contains("1 of 4 rounds of 16M stalled (round median 105 ms, slowest 7100 ms); stalled rounds: [2]"),
            "{table}"
        );
    }

    #[test]
    fn a_stall_is_far_above_the_median() {
        let steady = StallResult {
            rounds_ms: vec![100.0, 300.0, 120.0],
            error: None,
        };
        assert!(steady.stalls().is_empty());
        let loaded = StallResult {
            rounds_ms: vec![409.0, 733.0, 400.0, 450.0],
            error: None,
        };
        assert!(loaded.stalls().is_empty(), "a slow host is no stall");
        let stalled = StallResult {
            rounds_ms: vec![409.0, 1450.0, 400.0, 450.0],
            error: None,
        };
        assert_eq!(stalled.stalls(), [1]);
    }

    #[test]
    fn virtio_vms_point_their_sockets_at_each_other() {
        let sockets = Sockets(
            PathBuf::from("/tmp/eth-ivshmem-no-a"),
            PathBuf::from("/tmp/eth-ivshmem-no-b"),
        );
        let zero = virtio_args(&sockets, 0).join(" ");
        assert!(
            zero.contains("local.path=/tmp/eth-ivshmem-no-a,remote.type=unix,remote.path=/tmp/eth-ivshmem-no-b"),
            "{zero}"
        );
        assert!(zero.contains("mac=52:54:00:00:00:00"), "{zero}");
        let one = virtio_args(&sockets, 1).join(" ");
        assert!(one.contains(
            "local.path=/tmp/eth-ivshmem-no-b,remote.type=unix,remote.path=/tmp/eth-ivshmem-no-a"
        ));
    }
}
