//! The two-VM demo (`cargo run`, `cargo run -- demo`).
//!
//! VM B runs `app=server`, VM A runs `app=ping,tcp-echo` against it; both
//! share one ivshmem-net link: `ivshmem-doorbell` on our in-process v1 server
//! ([`Mode::Irq`]) or an `ivshmem-plain` file ([`Mode::Poll`], no server). B
//! starts first and the demo waits for its `ivshmem:` line, so that B is peer
//! 0 (10.0.0.1) and A peer 1 (10.0.0.2, whose default peer is B). When A
//! exits, B is killed, the server stopped, and a [`Summary`] of A's output
//! printed. With `keep`, A also runs `server` afterwards and both VMs stay up
//! (with QEMU monitors) until Ctrl-C.
//!
//! The caller installs [`crate::cleanup::exit_on_signal`] first (the binary
//! does): an interrupt then kills QEMU and removes the shared-memory file and
//! the sockets. This module never takes the [`crate::VmLock`]; a test that
//! runs the demo takes it around the run.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use abi::cmdline::App;

use crate::server::{Server, ServerConfig, ServerThread};
use crate::shm::{PlainRegion, ShmFile};
use crate::size::Size;
use crate::summary::Summary;
use crate::vm::WaitError;
use crate::{Machine, Mode, Outcome, ShmDevice, VmConfig, VmHandle};

/// Everything the demo needs (the CLI's options, with QEMU and the kernel
/// already found).
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// `irq`: doorbells on our server; `poll`: `ivshmem-plain`, no server.
    pub mode: Mode,
    /// QEMU machine type for both VMs.
    pub machine: Machine,
    /// `mtu=` for both VMs (`None`: the kernel's default, 1500).
    pub mtu: Option<u16>,
    /// Shared-memory size (a power of two that holds the ivshmem-net layout).
    pub shm_size: u64,
    /// Bytes sent through the TCP echo.
    pub bytes: u64,
    /// Number of pings.
    pub count: u32,
    /// Limit for the whole demo from the start of the first VM.
    pub timeout: Duration,
    /// Keep both VMs running after the summary until Ctrl-C.
    pub keep: bool,
    /// Extra kernel command line for both VMs.
    pub append: String,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The kernel ELF.
    pub kernel: PathBuf,
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

/// What the two VMs share. Field order is drop order (server, then socket).
#[derive(Debug)]
enum Shared {
    Server {
        server: ServerThread,
        _socket: TempPath,
    },
    Plain(PlainRegion),
}

impl Shared {
    fn device(&self) -> ShmDevice {
        match self {
            Shared::Server { server, .. } => server.device(),
            Shared::Plain(region) => region.device(),
        }
    }

    /// Plays "peer gone" for `id` in plain mode (the server does it otherwise).
    fn peer_gone(&self, id: u16) {
        if let Shared::Plain(region) = self {
            region.zero_state(id);
        }
    }
}

/// One VM of the demo.
struct DemoVm {
    label: &'static str,
    id: u16,
    handle: VmHandle,
    monitor: Option<TempPath>,
    /// Whether its exit has been handled (state zeroed, reported).
    gone: bool,
}

/// Runs the demo; returns whether it passed.
pub fn run(options: &DemoOptions) -> anyhow::Result<bool> {
    let deadline = Instant::now() + options.timeout;
    let shared = match options.mode {
        Mode::Irq => {
            let socket = TempPath::new(socket_path("demo"));
            let mut config = ServerConfig::new(&socket.0);
            config.size = options.shm_size;
            let server = Server::bind(config)?.spawn()?;
            progress(&format!(
                "ivshmem server (v1, {} vectors) on {}: {}",
                server.layout().vectors,
                socket.0.display(),
                server.layout()
            ));
            Shared::Server {
                server,
                _socket: socket,
            }
        }
        Mode::Poll => {
            let region = PlainRegion::create_net(&ShmFile::unique_path("demo"), options.shm_size)?;
            progress(&format!(
                "ivshmem-plain file {} (polling, no server): {}",
                region.path().display(),
                region.layout()
            ));
            Shared::Plain(region)
        }
    };

    let b_apps = "server".to_string();
    let mut a_apps = CLIENT_APPS.map(App::name).join(",");
    if options.keep {
        a_apps.push_str(",server");
    }
    progress(&format!(
        "starting VM B (app={b_apps}, {} mode, {})…",
        options.mode, options.machine
    ));
    let mut b = start(options, &shared, "B", 0, &format!("app={b_apps}"))?;
    match wait_device_line(&b.handle, deadline) {
        Ok(line) if options.mode == Mode::Poll || line.contains(", id 0 of ") => {}
        Ok(line) => {
            b.handle.kill();
            return Ok(fail_early(
                &b,
                &format!("B did not get peer ID 0: {line:?}"),
            ));
        }
        Err(e) => {
            let outcome = b.handle.kill();
            return Ok(fail_early(&b, &format!("{e} ({outcome})")));
        }
    }
    progress(&format!(
        "VM B is peer 0 (10.0.0.1); starting VM A (app={a_apps} count={} bytes={})…",
        options.count,
        Size(options.bytes)
    ));
    let client_cmdline = format!(
        "app={a_apps} count={} bytes={}",
        options.count, options.bytes
    );
    let mut a = start(options, &shared, "A", 1, &client_cmdline)?;

    progress("waiting for the link…");
    let link_up = a
        .handle
        .wait_for_line("link: up", deadline)
        .ok()
        .map(|_| a.handle.elapsed());
    if let Some(t) = link_up {
        progress(&format!(
            "link up {:.3} s after VM A started; VM A: pinging 10.0.0.1 ({} pings)…",
            t.as_secs_f64(),
            options.count
        ));
        if wait_verdict(&a.handle, "ping", deadline).is_some() {
            progress(&format!(
                "VM A: TCP echo of {} through 10.0.0.1:7…",
                Size(options.bytes)
            ));
            wait_verdict(&a.handle, "tcp-echo", deadline);
        }
    }

    let a_outcome = if options.keep {
        a.handle.try_outcome()
    } else {
        let left = deadline.saturating_duration_since(Instant::now());
        let outcome = a.handle.wait(left);
        Some(match outcome {
            Outcome::Timeout(_) => Outcome::Timeout(options.timeout),
            other => other,
        })
    };
    if a_outcome.is_some() {
        shared.peer_gone(a.id);
        a.gone = true;
    }
    let b_early = b.handle.try_outcome();
    let mut summary = Summary::parse(&a.handle.lines(), a_outcome, &CLIENT_APPS);
    summary.link_up = link_up;
    summary.setup = Some(format!(
        "{}, {}, MTU {}, shared memory {}",
        match options.mode {
            Mode::Irq => "irq (ivshmem-doorbell on our v1 server)",
            Mode::Poll => "poll (ivshmem-plain, no server)",
        },
        options.machine,
        options.mtu.unwrap_or(1500),
        Size(options.shm_size)
    ));
    if let Some(outcome) = b_early {
        summary
            .notes
            .push(format!("VM B (the server) ended early: {outcome}"));
        summary.verdict.pass = false;
    }
    let qemu_stderr = a.handle.stderr();
    if !summary.verdict.pass && !qemu_stderr.is_empty() {
        summary
            .notes
            .push(format!("QEMU of VM A said: {qemu_stderr}"));
    }
    if !options.keep {
        b.handle.kill();
        shared.peer_gone(b.id);
        b.gone = true;
    }
    let pass = summary.verdict.pass;
    println!("{summary}");

    if options.keep {
        keep_running(&shared, &mut [&mut a, &mut b]);
        for vm in [&mut a, &mut b] {
            vm.handle.kill();
            if !vm.gone {
                shared.peer_gone(vm.id);
            }
        }
    }
    drop(a);
    drop(b);
    if let Shared::Server { server, .. } = shared {
        server.stop()?;
    }
    Ok(pass)
}

/// A unique socket path under `/dev/shm` (or the temporary directory).
fn socket_path(tag: &str) -> PathBuf {
    let mut path = ShmFile::unique_path(tag).into_os_string();
    path.push(".sock");
    PathBuf::from(path)
}

/// Starts VM `label` as peer `id` with `apps` (e.g. `app=server`).
fn start(
    options: &DemoOptions,
    shared: &Shared,
    label: &'static str,
    id: u16,
    apps: &str,
) -> anyhow::Result<DemoVm> {
    let mut config = VmConfig::new(&options.kernel)
        .name(format!("VM {label}"))
        .qemu_binary(&options.qemu)
        .machine(options.machine)
        .cmdline(apps)
        .shm(shared.device())
        .echo(format!("[{label}] "));
    if options.mode == Mode::Poll {
        config = config.append(&format!("mode=poll id={id}"));
    }
    if let Some(mtu) = options.mtu {
        config = config.append(&format!("mtu={mtu}"));
    }
    config = config.append(&options.append);
    let monitor = options
        .keep
        .then(|| TempPath::new(socket_path(&format!("monitor-{label}"))));
    if let Some(monitor) = &monitor {
        config.monitor = Some(format!("unix:{},server,nowait", qemu_path(&monitor.0)));
    }
    let handle = config.spawn()?;
    Ok(DemoVm {
        label,
        id,
        handle,
        monitor,
        gone: false,
    })
}

/// Escapes a path for QEMU's `-monitor unix:PATH,…` syntax.
fn qemu_path(path: &Path) -> String {
    path.to_string_lossy().replace(',', ",,")
}

/// Waits for the first line that starts with `ivshmem: ` (the device found,
/// or why none was): by then QEMU has connected to the server.
fn wait_device_line(vm: &VmHandle, deadline: Instant) -> Result<String, WaitError> {
    let mut from = 0;
    loop {
        let (index, line) = vm.wait_for_line_from("ivshmem: ", from, deadline)?;
        if line.starts_with("ivshmem: ") {
            return Ok(line);
        }
        from = index + 1;
    }
}

/// Waits for `<app>: PASS` or `<app>: FAIL`; `None` if the VM ended or the
/// deadline passed first.
fn wait_verdict(vm: &VmHandle, app: &str, deadline: Instant) -> Option<String> {
    let prefix = format!("{app}: ");
    let (pass, fail) = (format!("{app}: PASS"), format!("{app}: FAIL"));
    let mut from = 0;
    loop {
        let (index, line) = vm.wait_for_line_from(&prefix, from, deadline).ok()?;
        if line == pass || line == fail {
            return Some(line);
        }
        from = index + 1;
    }
}

/// Reports a failure before VM A was started; returns `false`.
fn fail_early(b: &DemoVm, why: &str) -> bool {
    println!("==================== summary ====================");
    println!("result:    FAIL ({why})");
    let lines = b.handle.lines();
    let start = lines.len().saturating_sub(8);
    if !lines.is_empty() {
        println!("last lines of VM B:");
        for line in &lines[start..] {
            println!("  {line}");
        }
    }
    let stderr = b.handle.stderr();
    if !stderr.is_empty() {
        println!("QEMU of VM B said: {stderr}");
    }
    println!("=================================================");
    false
}

/// `--keep`: prints the monitors and waits for Ctrl-C (or for both VMs to end).
fn keep_running(shared: &Shared, vms: &mut [&mut DemoVm]) {
    let _defer = crate::cleanup::DeferSignals::new();
    eprintln!("eth-ivshmem: keeping the VMs running; press Ctrl-C to stop them");
    for vm in vms.iter() {
        let address = format!("10.0.0.{}", vm.id + 1);
        match (&vm.monitor, vm.gone) {
            (_, true) => eprintln!("  VM {} ({address}) has ended", vm.label),
            (Some(monitor), false) => eprintln!(
                "  VM {} ({address}, TCP/UDP/ICMP echo): QEMU monitor: socat - UNIX-CONNECT:{}",
                vm.label,
                monitor.0.display()
            ),
            (None, false) => {}
        }
    }
    loop {
        if crate::cleanup::pending_signal().is_some() {
            break;
        }
        for vm in vms.iter_mut() {
            if !vm.gone
                && let Some(outcome) = vm.handle.try_outcome()
            {
                shared.peer_gone(vm.id);
                vm.gone = true;
                if crate::cleanup::pending_signal().is_none() {
                    eprintln!("eth-ivshmem: VM {} ended: {outcome}", vm.label);
                }
            }
        }
        if vms.iter().all(|vm| vm.gone) {
            eprintln!("eth-ivshmem: both VMs have ended");
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    eprintln!("eth-ivshmem: stopping the VMs");
}
