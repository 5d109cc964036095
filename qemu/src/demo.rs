//! The two-VM demo (`cargo run`, `cargo run -- demo`).
//!
//! VM B runs `app=server`, VM A runs `app=ping,tcp-echo` against it; both
//! share one ivshmem-net link: `ivshmem-doorbell` on our in-process v1 server
//! (`--mode irq`) or an `ivshmem-plain` file (`--mode poll`, no server). B
//! starts first and the demo waits for its `ivshmem:` line, so that B is peer
//! 0 (10.0.0.1) and A peer 1 (10.0.0.2, whose default peer is B). When A
//! exits, B is killed, the server stopped, and a [`Summary`] of A's output
//! printed. With `--keep`, A also runs `server` afterwards and both VMs stay
//! up (with QEMU monitors) until Ctrl-C.
//!
//! With `--host`, Linux takes VM A's place ([`crate::hostpeer::demo`]).
//!
//! With `--pcap FILE`, VM A also writes a capture of every frame it sends
//! and receives (kernel `pcap=com2`) to its second serial port, which QEMU
//! writes into FILE ([`crate::vm::VmConfig::com2`]).
//!
//! The caller installs [`crate::cleanup::exit_on_signal`] first (the binary
//! does): an interrupt then kills QEMU and removes the shared-memory file and
//! the sockets. This module never takes the [`crate::VmLock`]; a test that
//! runs the demo takes it around the run.

use std::path::{Path, PathBuf};
use std::time::Duration;

use abi::cmdline::{App, Capture, CommandLine, Mode};
use abi::report::{AppVerdict, LinkUp};

use crate::Machine;
use crate::link::{Link, unique_socket_path};
use crate::options::{self, StartOptions, kernel_key};
use crate::scenario::{DeviceReport, Scenario};
use crate::server::ServerConfig;
use crate::shm::{PlainRegion, ShmFile, ShmLayout};
use crate::size::Size;
use crate::summary::Summary;

/// The demo's options (`cargo run -- demo --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct DemoOptions {
    /// irq: ivshmem-doorbell on our server (MSI-X doorbells); poll:
    /// ivshmem-plain on a shared file, no server, both VMs poll.
    #[arg(long, default_value = "irq", value_parser = options::mode_parser())]
    pub mode: Mode,
    /// QEMU machine type of both VMs.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    pub machine: Machine,
    /// IP MTU of the link (kernel `mtu=`, 68–65535) [default: the kernel's,
    /// Linux's rule for the link: min(16384, data area / 16)].
    #[arg(long, value_name = "N", value_parser = kernel_key("mtu", |line| line.mtu.unwrap_or_default()))]
    pub mtu: Option<u16>,
    /// Shared memory size (a power of two ≥ 32K).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = options::parse_net_shm_size)]
    pub shm_size: u64,
    /// Bytes sent through the TCP echo (e.g. 64K, 16M; up to 4G).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = options::parse_echo_bytes)]
    pub bytes: u64,
    /// Number of pings (1–65535, the ICMP sequence space).
    #[arg(long, value_name = "N", default_value = "4", value_parser = kernel_key("count", |line| line.count))]
    pub count: u32,
    /// Limit for the whole demo in seconds, from the first VM's start to the
    /// summary (the kernel build is not counted; with --keep the VMs then run
    /// on until Ctrl-C).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = options::parse_seconds)]
    pub timeout: Duration,
    /// Keep both VMs running after the summary (A then serves echo too) and
    /// print their QEMU monitor sockets; Ctrl-C stops them.
    #[arg(long)]
    pub keep: bool,
    /// Write a pcap of every frame that crosses the link to FILE (as VM A
    /// sends and receives them: kernel `pcap=com2`, COM2 into the file;
    /// read it with tcpdump -r FILE). Each captured byte costs a port
    /// write, so the TCP echo slows down.
    #[arg(long, value_name = "FILE", value_parser = options::parse_output_file)]
    pub pcap: Option<PathBuf>,
    /// Linux instead of VM A: the host bridge joins the link in a network
    /// namespace the demo makes (TAP ivshmem0, 10.0.0.254/24; the host's
    /// own network is left alone), and Linux's ping and a TCP client reach
    /// VM B. Needs root. With --pcap, the bridge captures the link.
    #[arg(long)]
    pub host: bool,
    /// The kernel, its command line and QEMU.
    #[command(flatten)]
    pub start: StartOptions,
}

/// The apps VM A runs to completion (their verdict lines decide `--keep`).
const CLIENT_APPS: [App; 2] = [App::Ping, App::TcpEcho];

fn progress(message: &str) {
    eprintln!("eth-ivshmem: {message}");
}

/// A file registered with [`crate::cleanup`], removed on drop.
#[derive(Debug)]
struct TempPath(PathBuf);

impl TempPath {
    fn new(path: PathBuf) -> TempPath {
        crate::cleanup::register_path(&path);
        TempPath(path)
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
        crate::cleanup::unregister_path(&self.0);
    }
}

impl DemoOptions {
    /// The kernel command line of VM B (`server`) or A (the client).
    fn cmdline(&self, apps: Vec<App>) -> CommandLine {
        CommandLine {
            apps,
            mtu: self.mtu,
            count: self.count,
            bytes: self.bytes,
            ..CommandLine::default()
        }
    }
}

/// Builds the kernel and runs the demo; returns whether it passed.
pub fn run(options: &DemoOptions) -> anyhow::Result<bool> {
    if options.host {
        return crate::hostpeer::demo::run(options);
    }
    let server_line = options.cmdline(vec![App::Server]);
    let mut client_apps = CLIENT_APPS.to_vec();
    if options.keep {
        client_apps.push(App::Server);
    }
    let client_line = options.cmdline(client_apps);
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
    let mut scenario = Scenario::new("demo", template, link);
    scenario.set_timeout(timeout);
    let mut monitors = Vec::new();
    let mut start = |scenario: &mut Scenario, name: &str, id: u16, line: &CommandLine| {
        let mut config = options.start.cmdline.configure(scenario.vm(name), line)?;
        config = config.echo(format!("[{name}] "));
        if options.keep {
            let monitor = TempPath::new(unique_socket_path(&format!("monitor-{name}")));
            config.monitor = Some(format!("unix:{},server,nowait", qemu_path(&monitor.0)));
            monitors.push((name.to_string(), id, monitor));
        }
        if name == "A" {
            config = options.start.qemu.debug(config);
            if let Some(pcap) = &options.pcap {
                config.cmdline.pcap = Some(Capture::Com2);
                config = config.com2(pcap);
            }
        }
        anyhow::Ok(scenario.start(config, Some(id)))
    };

    progress(&format!(
        "starting VM B ({server_line}, {} mode, {})…",
        options.mode, options.machine
    ));
    match start(&mut scenario, "B", 0, &server_line)? {
        Ok(DeviceReport::Found(_)) => {}
        Ok(unusable) => {
            scenario.kill("B")?;
            return Ok(fail_early(
                &scenario,
                &format!("B found no device: {unusable}"),
            ));
        }
        Err(e) => {
            scenario.kill("B")?;
            return Ok(fail_early(&scenario, &e.message));
        }
    }
    progress(&format!(
        "VM B is peer 0 (10.0.0.1); starting VM A (app={} count={} bytes={})…",
        client_line
            .apps
            .iter()
            .map(|app| app.name())
            .collect::<Vec<_>>()
            .join(","),
        options.count,
        Size(options.bytes)
    ));
    if let Err(e) = start(&mut scenario, "A", 1, &client_line)? {
        scenario.kill("A")?;
        scenario.kill("B")?;
        return Ok(fail_early(&scenario, &e.message));
    }

    progress("waiting for the link…");
    let link_up = scenario
        .wait_for::<LinkUp>("A", 0)
        .ok()
        .map(|_| scenario.handle("A").map(|vm| vm.elapsed()))
        .transpose()?;
    if let Some(t) = link_up {
        progress(&format!(
            "link up {:.3} s after VM A started; VM A: pinging 10.0.0.1 ({} pings)…",
            t.as_secs_f64(),
            options.count
        ));
        let verdict = |app: App| move |verdict: &AppVerdict| verdict.app == app;
        if scenario.wait_for_where("A", 0, verdict(App::Ping)).is_ok() {
            progress(&format!(
                "VM A: TCP echo of {} through 10.0.0.1:7…",
                Size(options.bytes)
            ));
            let _ = scenario.wait_for_where("A", 0, verdict(App::TcpEcho));
        }
    }

    let a_outcome = if options.keep {
        scenario.outcome("A")?
    } else {
        Some(scenario.wait_exit("A")?)
    };
    let b_early = scenario.outcome("B")?;
    let a_lines = scenario.lines("A")?;
    let mut summary = Summary::parse(&a_lines, a_outcome, &CLIENT_APPS);
    summary.link_up = link_up;
    let mut final_line = client_line.clone();
    options.start.cmdline.apply(&mut final_line)?;
    summary.setup = Some(format!(
        "{}, {}, MTU {}, shared memory {}",
        match options.mode {
            Mode::Interrupt => "irq (ivshmem-doorbell on our v1 server)",
            Mode::Poll => "poll (ivshmem-plain, no server)",
        },
        options.machine,
        final_line
            .mtu
            .map(usize::from)
            .or_else(|| ShmLayout::net_default_mtu_for(options.shm_size))
            .map_or("?".to_string(), |mtu| mtu.to_string()),
        Size(options.shm_size)
    ));
    if let Some(outcome) = b_early {
        summary
            .notes
            .push(format!("VM B (the server) ended early: {outcome}"));
        summary.verdict.pass = false;
    }
    let qemu_stderr = scenario.handle("A")?.stderr();
    if !summary.verdict.pass && !qemu_stderr.is_empty() {
        summary
            .notes
            .push(format!("QEMU of VM A said: {qemu_stderr}"));
    }
    if !options.keep {
        scenario.kill("B")?;
    }
    if let Some(pcap) = &options.pcap
        && a_outcome.is_some()
    {
        summary.notes.push(capture_note(pcap));
    }
    let pass = summary.verdict.pass;
    println!("{summary}");

    if options.keep {
        keep_running(&mut scenario, &monitors);
    }
    scenario.kill_all();
    drop(scenario);
    drop(monitors);
    if let Some(pcap) = &options.pcap
        && a_outcome.is_none()
    {
        eprintln!("eth-ivshmem: {}", capture_note(pcap));
    }
    Ok(pass)
}

/// Trims a record cut short by a killed VM off the capture and says what
/// it holds.
fn capture_note(pcap: &Path) -> String {
    match crate::bridge::pcap::trim(pcap) {
        Ok(frames) => format!(
            "capture: {frames} frames in {} (tcpdump -r {})",
            pcap.display(),
            pcap.display()
        ),
        Err(e) => format!("capture: {}: {e}", pcap.display()),
    }
}

/// Escapes a path for QEMU's `-monitor unix:PATH,…` syntax.
fn qemu_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Reports a failure before VM A ran; returns `false`.
fn fail_early(scenario: &Scenario, why: &str) -> bool {
    println!("==================== summary ====================");
    println!("result:    FAIL ({why})");
    for name in ["B", "A"] {
        let Ok(vm) = scenario.handle(name) else {
            continue;
        };
        let lines = vm.lines();
        if !lines.is_empty() {
            println!("last lines of VM {name}:");
            for line in &lines[lines.len().saturating_sub(8)..] {
                println!("  {line}");
            }
        }
        let stderr = vm.stderr();
        if !stderr.is_empty() {
            println!("QEMU of VM {name} said: {stderr}");
        }
    }
    println!("=================================================");
    false
}

/// `--keep`: prints the monitors and waits for Ctrl-C (or for both VMs to end).
fn keep_running(scenario: &mut Scenario, monitors: &[(String, u16, TempPath)]) {
    let _defer = crate::cleanup::DeferSignals::new();
    eprintln!("eth-ivshmem: keeping the VMs running; press Ctrl-C to stop them");
    let mut running = Vec::new();
    for (name, id, monitor) in monitors {
        let address = format!("10.0.0.{}", id + 1);
        match scenario.outcome(name) {
            Ok(None) => {
                eprintln!(
                    "  VM {name} ({address}, TCP/UDP/ICMP echo): QEMU monitor: socat - UNIX-CONNECT:{}",
                    monitor.0.display()
                );
                running.push(name.clone());
            }
            _ => eprintln!("  VM {name} ({address}) has ended"),
        }
    }
    while !running.is_empty() && crate::cleanup::pending_signal().is_none() {
        for (name, outcome) in scenario.reap() {
            running.retain(|running| *running != name);
            eprintln!("eth-ivshmem: VM {name} ended: {outcome}");
        }
        if running.is_empty() {
            eprintln!("eth-ivshmem: both VMs have ended");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("eth-ivshmem: stopping the VMs");
}
