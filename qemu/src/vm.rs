//! One QEMU VM: its configuration ([`VmConfig`]), the QEMU command line it
//! turns into ([`VmConfig::argv`]), and the running process ([`VmHandle`]).
//!
//! Every VM gets `-accel tcg -nodefaults -display none -no-reboot -smp
//! 1,maxcpus=2` (`docs/toolchain.md` §9 and §13: without `maxcpus` > 1 TCG
//! drops the guest's memory barriers and cross-VM handshakes lose
//! notifications), an `isa-debug-exit` device at port 0xf4, and its serial
//! port on QEMU's stdout, which the handle captures line by line. The kernel
//! command line is an [`abi::cmdline::CommandLine`], written with its
//! `Display`.
//!
//! A QEMU process never outlives its [`VmHandle`]: dropping the handle kills
//! and reaps it (also when a test panics), and see [`crate::cleanup`] for
//! signals and a killed launcher.

use std::fmt;
use std::io::{BufRead, BufReader, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use abi::cmdline::CommandLine;
use abi::exit::DEBUG_EXIT_PORT;
use anyhow::Context;

use crate::cell::{CellFiles, CommWindow};
use crate::outcome::Outcome;
use crate::size::Size;

/// The QEMU machine type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Machine {
    /// i440FX + PIIX (`-machine pc`).
    #[default]
    Pc,
    /// Q35 + ICH9 (`-machine q35`).
    Q35,
}

impl fmt::Display for Machine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Machine::Pc => "pc",
            Machine::Q35 => "q35",
        })
    }
}

/// A shared-memory device attached to a VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShmDevice {
    /// `ivshmem-plain` on a `memory-backend-file` (no server, no interrupts).
    /// `size` must equal the file's size and be a power of two.
    Plain {
        /// The shared file, e.g. [`crate::shm::PlainRegion::path`].
        mem_path: PathBuf,
        /// Its size in bytes.
        size: u64,
    },
    /// Stock QEMU `ivshmem-doorbell` on an ivshmem v1 server socket.
    Doorbell {
        /// The server's UNIX socket.
        socket: PathBuf,
        /// MSI-X vectors (must match the server's).
        vectors: u32,
    },
    /// The Siemens fork's ivshmem-v2 device (`-device ivshmem`) on an
    /// ivshmem2-server socket; everything else comes from the server.
    V2 {
        /// The server's UNIX socket.
        socket: PathBuf,
    },
}

/// A callback receiving each serial line (without the line ending) as it arrives.
pub type LineCallback = Arc<dyn Fn(&str) + Send + Sync>;

/// Everything needed to start one VM. Build with [`VmConfig::new`] and the
/// chained setters, then [`VmConfig::spawn`].
#[derive(Clone)]
pub struct VmConfig {
    /// A name for messages (default `"vm"`).
    pub name: String,
    /// The QEMU binary (default `qemu-system-x86_64`, looked up in `PATH`).
    pub qemu: PathBuf,
    /// The kernel ELF (PVH), see [`crate::kernel::build`].
    pub kernel: PathBuf,
    /// The kernel command line (`-append`), checked on the host.
    pub cmdline: CommandLine,
    /// Words appended to the kernel command line as they are, without the
    /// host's check: for tests of the kernel's own (empty by default).
    pub unchecked_cmdline: String,
    /// Machine type (default `pc`).
    pub machine: Machine,
    /// Guest memory as QEMU's `-m` takes it (default `128M`).
    pub memory: String,
    /// Shared-memory devices, in PCI slot order.
    pub shm: Vec<ShmDevice>,
    /// Extra raw QEMU arguments appended at the end (the escape hatch).
    pub extra_args: Vec<String>,
    /// Firmware and data directories (QEMU `-L`, in order), e.g. for a
    /// self-built QEMU that does not know where its BIOS files are.
    pub firmware: Vec<PathBuf>,
    /// `-monitor <spec>`, e.g. `unix:/tmp/mon.sock,server,nowait`.
    pub monitor: Option<String>,
    /// `-s -S`: wait for gdb on tcp::1234 before running.
    pub gdb: bool,
    /// The second serial port (COM2) into this file, created or truncated
    /// (the kernel's `pcap=com2` writes a capture there).
    pub com2: Option<PathBuf>,
    /// If set, print each serial line live to stdout with this prefix (e.g.
    /// `"[A] "`; use `""` for no prefix) and QEMU's stderr to stderr.
    pub echo_prefix: Option<String>,
    /// Called with each serial line as it arrives.
    pub on_line: Option<LineCallback>,
    /// Boot as a Jailhouse cell in the cell harness ([`crate::cell`]):
    /// `kernel` is then the flat image, the kernel ends through the cell
    /// state instead of `isa-debug-exit`, and these are the VM's files
    /// (fresh ones at each spawn).
    pub cell: Option<CellFiles>,
}

impl fmt::Debug for VmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmConfig")
            .field("name", &self.name)
            .field("argv", &self.argv())
            .field("echo_prefix", &self.echo_prefix)
            .field("on_line", &self.on_line.as_ref().map(|_| "<callback>"))
            .finish()
    }
}

/// Escapes a value for QEMU's `key=value,…` option syntax (`,` → `,,`).
fn qemu_opt(value: &Path) -> String {
    value.to_string_lossy().replace(',', ",,")
}

impl VmConfig {
    /// A VM running `kernel` with the defaults: `pc`, 128M, the default
    /// command line, no shared memory, serial captured but not echoed.
    pub fn new(kernel: impl Into<PathBuf>) -> VmConfig {
        VmConfig {
            name: "vm".into(),
            qemu: PathBuf::from(crate::install::QEMU_BINARY),
            kernel: kernel.into(),
            cmdline: CommandLine::default(),
            unchecked_cmdline: String::new(),
            machine: Machine::Pc,
            memory: "128M".into(),
            shm: Vec::new(),
            extra_args: Vec::new(),
            firmware: Vec::new(),
            monitor: None,
            gdb: false,
            com2: None,
            echo_prefix: None,
            on_line: None,
            cell: None,
        }
    }

    /// Boots `kernel`, a flat cell image ([`crate::kernel::build_cell_image`]),
    /// as a Jailhouse cell in the cell harness (see [`VmConfig::cell`]).
    pub fn cell(mut self) -> Self {
        self.cell = Some(CellFiles::unique());
        self
    }

    /// Sets the name used in messages.
    pub fn name(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// Sets the machine type.
    pub fn machine(mut self, machine: Machine) -> Self {
        self.machine = machine;
        self
    }

    /// Sets the guest memory (`-m`, e.g. `"128M"`).
    pub fn memory(mut self, memory: impl Into<String>) -> Self {
        self.memory = memory.into();
        self
    }

    /// Replaces the kernel command line.
    pub fn cmdline(mut self, cmdline: CommandLine) -> Self {
        self.cmdline = cmdline;
        self
    }

    /// Appends words to the kernel command line without checking them (see
    /// [`VmConfig::unchecked_cmdline`]).
    pub fn unchecked(mut self, words: &str) -> Self {
        let words = words.trim();
        if !words.is_empty() {
            if !self.unchecked_cmdline.is_empty() {
                self.unchecked_cmdline.push(' ');
            }
            self.unchecked_cmdline.push_str(words);
        }
        self
    }

    /// The text passed to `-append`: the command line's non-default keys,
    /// then the unchecked words.
    pub fn kernel_cmdline(&self) -> String {
        let typed = self.cmdline.to_string();
        match (typed.is_empty(), self.unchecked_cmdline.is_empty()) {
            (_, true) => typed,
            (true, false) => self.unchecked_cmdline.clone(),
            (false, false) => format!("{typed} {}", self.unchecked_cmdline),
        }
    }

    /// Attaches a shared-memory device.
    pub fn shm(mut self, device: ShmDevice) -> Self {
        self.shm.push(device);
        self
    }

    /// Appends raw QEMU arguments.
    pub fn qemu_args<I: IntoIterator<Item = S>, S: Into<String>>(mut self, args: I) -> Self {
        self.extra_args.extend(args.into_iter().map(Into::into));
        self
    }

    /// Adds a firmware and data directory (QEMU `-L`).
    pub fn firmware(mut self, dir: impl Into<PathBuf>) -> Self {
        self.firmware.push(dir.into());
        self
    }

    /// Uses another QEMU binary (e.g. a self-built Siemens fork for `ShmDevice::V2`).
    pub fn qemu_binary(mut self, qemu: impl Into<PathBuf>) -> Self {
        self.qemu = qemu.into();
        self
    }

    /// Connects COM2 to `file` (see [`VmConfig::com2`]).
    pub fn com2(mut self, file: impl Into<PathBuf>) -> Self {
        self.com2 = Some(file.into());
        self
    }

    /// Prints serial output live with `prefix` (see [`VmConfig::echo_prefix`]).
    pub fn echo(mut self, prefix: impl Into<String>) -> Self {
        self.echo_prefix = Some(prefix.into());
        self
    }

    /// Calls `callback` with each serial line as it arrives.
    pub fn on_line(mut self, callback: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.on_line = Some(Arc::new(callback));
        self
    }

    /// The QEMU arguments (without the binary itself). Pure; no QEMU needed.
    pub fn argv(&self) -> Vec<String> {
        let mut a: Vec<String> = Vec::new();
        let mut push = |items: &[&str]| a.extend(items.iter().map(|s| s.to_string()));
        for dir in &self.firmware {
            push(&["-L", &dir.to_string_lossy()]);
        }
        push(&["-machine", &self.machine.to_string(), "-m", &self.memory]);
        push(&[
            "-accel",
            "tcg",
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
        ]);
        push(&["-smp", "1,maxcpus=2"]);
        if self.cell.is_none() {
            let debug_exit = format!("isa-debug-exit,iobase={DEBUG_EXIT_PORT:#x},iosize=0x04");
            push(&["-device", &debug_exit]);
        }
        push(&["-serial", "stdio"]);
        if let Some(file) = &self.com2 {
            // A file chardev takes every byte at once (a pipe could refuse
            // some, and QEMU's 16550 drops a byte after a few refusals).
            let chardev = format!("file,id=com2,path={}", qemu_opt(file));
            push(&["-chardev", &chardev, "-serial", "chardev:com2"]);
        }
        match &self.cell {
            None => push(&[
                "-kernel",
                &self.kernel.to_string_lossy(),
                "-append",
                &self.kernel_cmdline(),
            ]),
            Some(files) => {
                let args = files.qemu_args(&self.memory);
                push(&args.iter().map(String::as_str).collect::<Vec<_>>());
            }
        }
        for (i, device) in self.shm.iter().enumerate() {
            match device {
                ShmDevice::Plain { mem_path, size } => {
                    let object = format!(
                        "memory-backend-file,id=hm{i},share=on,mem-path={},size={}",
                        qemu_opt(mem_path),
                        Size(*size)
                    );
                    let dev = format!("ivshmem-plain,memdev=hm{i}");
                    push(&["-object", &object, "-device", &dev]);
                }
                ShmDevice::Doorbell { socket, vectors } => {
                    let chardev = format!("socket,path={},id=ivs{i}", qemu_opt(socket));
                    let dev = format!("ivshmem-doorbell,chardev=ivs{i},vectors={vectors}");
                    push(&["-chardev", &chardev, "-device", &dev]);
                }
                ShmDevice::V2 { socket } => {
                    let chardev = format!("socket,path={},id=ivs{i}", qemu_opt(socket));
                    let dev = format!("ivshmem,chardev=ivs{i}");
                    push(&["-chardev", &chardev, "-device", &dev]);
                }
            }
        }
        if let Some(monitor) = &self.monitor {
            push(&["-monitor", monitor]);
        }
        if self.gdb {
            push(&["-s", "-S"]);
        }
        a.extend(self.extra_args.iter().cloned());
        a
    }

    /// The whole command line as a shell-like string (for messages).
    pub fn command_line(&self) -> String {
        let mut s = self.qemu.to_string_lossy().into_owned();
        for arg in self.argv() {
            s.push(' ');
            if arg.is_empty() || arg.contains([' ', '"', '\'']) {
                s.push_str(&format!("'{}'", arg.replace('\'', r"'\''")));
            } else {
                s.push_str(&arg);
            }
        }
        s
    }

    /// Starts QEMU. Fails if the kernel ELF does not exist or QEMU cannot be
    /// started. The handle owns the process.
    pub fn spawn(&self) -> anyhow::Result<VmHandle> {
        VmHandle::spawn(self.clone())
    }
}

/// Why [`VmHandle::wait_for`] gave up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WaitError {
    /// The deadline passed first.
    #[error("{vm}: {what} did not come before the deadline")]
    Timeout {
        /// VM name.
        vm: String,
        /// What was waited for.
        what: String,
    },
    /// QEMU closed its output (exited) first.
    #[error("{vm}: exited without printing {what}")]
    Exited {
        /// VM name.
        vm: String,
        /// What was waited for.
        what: String,
    },
}

/// How a wait for a report line of type `T` names it in errors: `a LinkUp
/// line`.
pub fn report_name<T>() -> String {
    let path = std::any::type_name::<T>();
    let name = path.rsplit("::").next().unwrap_or(path);
    format!("a {name} line")
}

#[derive(Debug, Default)]
struct LogState {
    serial: Vec<String>,
    stderr: Vec<String>,
    serial_closed: bool,
}

#[derive(Debug, Default)]
struct Log {
    state: Mutex<LogState>,
    changed: Condvar,
}

impl Log {
    fn lock(&self) -> MutexGuard<'_, LogState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The QEMU process of a [`VmHandle`] and how it ended.
#[derive(Debug, Default)]
struct Process {
    child: Option<Child>,
    readers: Vec<JoinHandle<()>>,
    outcome: Option<Outcome>,
}

/// A running (or finished) VM. Dropping it kills and reaps QEMU.
///
/// Every method takes `&self` (the process sits behind a mutex), so that
/// code holding the handle only to read logs can still learn the outcome.
pub struct VmHandle {
    name: String,
    argv: Vec<String>,
    pid: u32,
    log: Arc<Log>,
    started: Instant,
    process: Mutex<Process>,
    cell: Option<CellRun>,
}

/// A cell-harness VM's files, its communication region, and the outcome its
/// watcher read from the cell state.
struct CellRun {
    files: CellFiles,
    window: Arc<CommWindow>,
    outcome: Arc<Mutex<Option<Outcome>>>,
}

/// How long the watcher waits for the `cell:` line after the state changed
/// (the line is printed first, but travels through QEMU's serial thread).
const CELL_LINE_GRACE: Duration = Duration::from_millis(500);

/// Watches a cell-harness VM's cell state. When it becomes final the cell
/// has halted for good, as under Jailhouse: the watcher records the outcome
/// (the exit code from the `cell:` line, or from the state alone) and ends
/// QEMU, which stands for `jailhouse cell destroy`.
fn watch_cell(
    name: &str,
    pid: u32,
    window: Arc<CommWindow>,
    log: Arc<Log>,
    outcome: Arc<Mutex<Option<Outcome>>>,
) {
    use abi::exit::ExitCode;
    use abi::jailhouse::CellState;
    use abi::report::CellStopped;
    let spawned = std::thread::Builder::new()
        .name(format!("{name}-cell"))
        .spawn(move || {
            loop {
                let state = window.state();
                let done = match state {
                    Ok(state) => state.is_final(),
                    Err(_) => true,
                };
                if done {
                    let deadline = Instant::now() + CELL_LINE_GRACE;
                    let stopped = loop {
                        let line = log
                            .lock()
                            .serial
                            .iter()
                            .rev()
                            .find_map(|line| line.parse::<CellStopped>().ok());
                        if line.is_some() || Instant::now() >= deadline {
                            break line;
                        }
                        std::thread::sleep(Duration::from_millis(5));
                    };
                    let code = match (state, stopped) {
                        (Ok(state), Some(line)) if line.state == state => line.code,
                        (Ok(CellState::ShutDown), _) => ExitCode::Success,
                        _ => ExitCode::Failure,
                    };
                    *outcome.lock().unwrap_or_else(|p| p.into_inner()) = Some(Outcome::Exit(code));
                    let _ = nix::sys::signal::kill(
                        nix::unistd::Pid::from_raw(pid as i32),
                        nix::sys::signal::Signal::SIGKILL,
                    );
                    return;
                }
                if log.lock().serial_closed {
                    return;
                }
                std::thread::sleep(Duration::from_millis(5));
            }
        });
    if let Err(error) = spawned {
        eprintln!("eth-ivshmem: cannot watch the cell state of {name}: {error}");
    }
}

impl fmt::Debug for VmHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("VmHandle")
            .field("name", &self.name)
            .field("pid", &self.pid)
            .field("outcome", &self.try_outcome())
            .finish()
    }
}

/// Reads `source` line by line until EOF; `\r\n` and `\n` end lines, a
/// trailing partial line is delivered at EOF.
fn pump_lines(source: impl Read, mut each: impl FnMut(String)) {
    let mut reader = BufReader::new(source);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf) {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                while matches!(buf.last(), Some(b'\n' | b'\r')) {
                    buf.pop();
                }
                each(String::from_utf8_lossy(&buf).into_owned());
            }
        }
    }
}

impl VmHandle {
    /// Starts QEMU for `config` (see [`VmConfig::spawn`]).
    pub fn spawn(mut config: VmConfig) -> anyhow::Result<VmHandle> {
        anyhow::ensure!(
            config.kernel.is_file(),
            "{}: kernel ELF {} does not exist",
            config.name,
            config.kernel.display()
        );
        // A cell's files are its own, also when the config is a template.
        let cell_files = config.cell.as_ref().map(CellFiles::renamed);
        config.cell.clone_from(&cell_files);
        let cell = match &cell_files {
            None => None,
            Some(files) => {
                let ram_size = crate::size::parse_size(&config.memory)
                    .map_err(|e| anyhow::anyhow!("{}: -m {}: {e}", config.name, config.memory))?;
                let prepared = files
                    .create(&config.kernel, &config.kernel_cmdline(), ram_size)
                    .and_then(|()| CommWindow::open(&files.ram));
                match prepared {
                    Ok(window) => Some((files.clone(), Arc::new(window))),
                    Err(error) => {
                        files.remove();
                        return Err(error.context(format!("{}: cell harness", config.name)));
                    }
                }
            }
        };
        let argv = config.argv();
        let mut command = Command::new(&config.qemu);
        command
            .args(&argv)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let spawned = crate::cleanup::spawn(command).with_context(|| {
            format!(
                "{}: cannot start {} (is QEMU installed? see `cargo run -- boot`, which installs it)",
                config.name,
                config.qemu.display()
            )
        });
        let mut child = match spawned {
            Ok(child) => child,
            Err(error) => {
                if let Some((files, _)) = &cell {
                    files.remove();
                }
                return Err(error);
            }
        };
        let pid = child.id();
        let log = Arc::new(Log::default());
        let mut readers = Vec::new();
        let stdout = child.stdout.take().expect("stdout is piped");
        let stderr = child.stderr.take().expect("stderr is piped");
        {
            let log = Arc::clone(&log);
            let prefix = config.echo_prefix.clone();
            let on_line = config.on_line.clone();
            readers.push(
                std::thread::Builder::new()
                    .name(format!("{}-serial", config.name))
                    .spawn(move || {
                        pump_lines(stdout, |line| {
                            if let Some(prefix) = &prefix {
                                let mut out = std::io::stdout().lock();
                                let _ = writeln!(out, "{prefix}{line}");
                                let _ = out.flush();
                            }
                            if let Some(callback) = &on_line {
                                callback(&line);
                            }
                            log.lock().serial.push(line);
                            log.changed.notify_all();
                        });
                        log.lock().serial_closed = true;
                        log.changed.notify_all();
                    })?,
            );
        }
        {
            let log = Arc::clone(&log);
            let prefix = config.echo_prefix.clone();
            readers.push(
                std::thread::Builder::new()
                    .name(format!("{}-stderr", config.name))
                    .spawn(move || {
                        pump_lines(stderr, |line| {
                            if let Some(prefix) = &prefix {
                                eprintln!("{prefix}qemu: {line}");
                            }
                            log.lock().stderr.push(line);
                        });
                    })?,
            );
        }
        let cell = cell.map(|(files, window)| {
            let outcome = Arc::new(Mutex::new(None));
            watch_cell(
                &config.name,
                pid,
                Arc::clone(&window),
                Arc::clone(&log),
                Arc::clone(&outcome),
            );
            CellRun {
                files,
                window,
                outcome,
            }
        });
        Ok(VmHandle {
            name: config.name,
            argv,
            pid,
            log,
            started: Instant::now(),
            process: Mutex::new(Process {
                child: Some(child),
                readers,
                outcome: None,
            }),
            cell,
        })
    }

    /// Sends a hypervisor message to a cell-harness VM's communication
    /// region and waits up to `timeout` for its reply.
    pub fn send_cell_message(
        &self,
        message: abi::jailhouse::Message,
        timeout: Duration,
    ) -> anyhow::Result<abi::jailhouse::Reply> {
        let cell = self
            .cell
            .as_ref()
            .ok_or_else(|| anyhow::anyhow!("{} is not a cell-harness VM", self.name))?;
        cell.window
            .send(message, timeout)
            .with_context(|| self.name.clone())
    }

    /// A cell-harness VM's state in its communication region.
    pub fn cell_state(
        &self,
    ) -> Option<Result<abi::jailhouse::CellState, abi::jailhouse::UnknownCode>> {
        self.cell.as_ref().map(|cell| cell.window.state())
    }

    /// The VM's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// QEMU's process ID.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The QEMU arguments used.
    pub fn argv(&self) -> &[String] {
        &self.argv
    }

    /// Time since QEMU was started.
    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// The serial lines received so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.lock().serial.clone()
    }

    /// The serial output received so far, one `\n` after each line.
    pub fn log(&self) -> String {
        let state = self.log.lock();
        let mut s = String::new();
        for line in &state.serial {
            s.push_str(line);
            s.push('\n');
        }
        s
    }

    /// Whether QEMU has closed its serial output (it has ended or is ending).
    pub fn output_closed(&self) -> bool {
        self.log.lock().serial_closed
    }

    /// What QEMU printed on its stderr so far (start-up errors land here).
    pub fn stderr(&self) -> String {
        self.log.lock().stderr.join("\n")
    }

    /// Blocks until a serial line with index ≥ `from` (0-based, as in
    /// [`VmHandle::lines`]) makes `pick` return a value (possibly a line
    /// that has already arrived), and returns the line's index and the
    /// value; wait for the next one with `index + 1`. Fails at `deadline` or
    /// when QEMU closes its output first; `what` names the line in errors.
    pub fn wait_for<T>(
        &self,
        from: usize,
        deadline: Instant,
        what: &str,
        mut pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<(usize, T), WaitError> {
        let mut state = self.log.lock();
        let mut checked = from;
        loop {
            for (index, line) in state.serial.iter().enumerate().skip(checked) {
                if let Some(value) = pick(line) {
                    return Ok((index, value));
                }
            }
            checked = checked.max(state.serial.len());
            if state.serial_closed {
                return Err(WaitError::Exited {
                    vm: self.name.clone(),
                    what: what.into(),
                });
            }
            let now = Instant::now();
            if now >= deadline {
                return Err(WaitError::Timeout {
                    vm: self.name.clone(),
                    what: what.into(),
                });
            }
            state = self
                .log
                .changed
                .wait_timeout(state, deadline - now)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Waits for the first line from index `from` on that parses as the
    /// report `T` (see [`VmHandle::wait_for`]).
    pub fn wait_for_report<T: FromStr>(
        &self,
        from: usize,
        deadline: Instant,
    ) -> Result<(usize, T), WaitError> {
        self.wait_for(from, deadline, &report_name::<T>(), |line| {
            line.parse().ok()
        })
    }

    /// Waits for a serial line containing `needle` and returns it (for
    /// output that is not a report line of the kernel's, e.g. a test kernel's).
    pub fn wait_for_line(&self, needle: &str, deadline: Instant) -> Result<String, WaitError> {
        let what = format!("a line containing {needle:?}");
        self.wait_for(0, deadline, &what, |line| {
            line.contains(needle).then(|| line.to_string())
        })
        .map(|(_, line)| line)
    }

    fn process(&self) -> MutexGuard<'_, Process> {
        self.process.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The outcome if QEMU has already exited, without blocking.
    pub fn try_outcome(&self) -> Option<Outcome> {
        let mut process = self.process();
        if process.outcome.is_none()
            && let Some(child) = process.child.as_mut()
            && let Ok(Some(status)) = child.try_wait()
        {
            let outcome = self
                .cell_outcome()
                .unwrap_or_else(|| Outcome::from_status(status));
            self.finish(&mut process, outcome);
        }
        process.outcome
    }

    /// Waits up to `timeout` for QEMU to exit and decodes its status. On
    /// timeout QEMU is killed and the outcome is [`Outcome::Timeout`]. Once
    /// QEMU has ended, the serial log is complete. Repeated calls return the
    /// same outcome.
    pub fn wait(&self, timeout: Duration) -> Outcome {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(outcome) = self.try_outcome() {
                return outcome;
            }
            if Instant::now() >= deadline {
                let mut process = self.process();
                self.kill_and_reap(&mut process);
                self.finish(&mut process, Outcome::Timeout(timeout));
                return process.outcome.unwrap_or(Outcome::Timeout(timeout));
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// How a cell-harness VM ended, once its watcher saw a final cell state.
    fn cell_outcome(&self) -> Option<Outcome> {
        let cell = self.cell.as_ref()?;
        *cell.outcome.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Kills QEMU (SIGKILL) and reaps it; the outcome becomes
    /// `Outcome::Signal(9)` unless it had already exited.
    pub fn kill(&self) -> Outcome {
        if let Some(outcome) = self.try_outcome() {
            return outcome;
        }
        let mut process = self.process();
        let status = self.kill_and_reap(&mut process);
        self.finish(
            &mut process,
            status.map_or(Outcome::Signal(9), Outcome::from_status),
        );
        process.outcome.unwrap_or(Outcome::Signal(9))
    }

    fn kill_and_reap(&self, process: &mut Process) -> Option<std::process::ExitStatus> {
        let child = process.child.as_mut()?;
        let _ = child.kill();
        let status = child.wait().ok();
        crate::cleanup::unregister_child(self.pid);
        status
    }

    fn finish(&self, process: &mut Process, outcome: Outcome) {
        if process.outcome.is_none() {
            process.outcome = Some(outcome);
        }
        crate::cleanup::unregister_child(self.pid);
        process.child = None;
        for reader in process.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

impl Drop for VmHandle {
    fn drop(&mut self) {
        let mut process = self.process();
        if process.child.is_some() {
            self.kill_and_reap(&mut process);
        }
        process.child = None;
        // The readers end on EOF now that QEMU is gone; no need to join.
        if let Some(cell) = &self.cell {
            cell.files.remove();
        }
    }
}

/// A fake "QEMU" (a shell script that ignores its arguments) and a VM
/// configured to run it, to exercise handles and scenarios without QEMU.
#[cfg(test)]
pub(crate) fn fake_vm(script: &str) -> (tempfile::TempDir, VmConfig) {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let qemu = dir.path().join("fake-qemu");
    std::fs::write(&qemu, format!("#!/bin/sh\n{script}\n")).unwrap();
    std::fs::set_permissions(&qemu, std::fs::Permissions::from_mode(0o755)).unwrap();
    let kernel = dir.path().join("kernel");
    std::fs::write(&kernel, b"").unwrap();
    let config = VmConfig::new(&kernel).qemu_binary(&qemu).name("fake");
    (dir, config)
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::cmdline::{LogLevel, SelfTest};
    use abi::exit::ExitCode;

    #[test]
    fn argv_has_the_fixed_flags() {
        let config = VmConfig::new("/k/kernel").cmdline(CommandLine {
            log: LogLevel::Debug,
            selftest: Some(SelfTest::SharedMemory),
            ..CommandLine::default()
        });
        let argv = config.argv();
        let joined = argv.join(" ");
        assert_eq!(
            joined,
            "-machine pc -m 128M -accel tcg -nodefaults -display none -no-reboot \
             -smp 1,maxcpus=2 -device isa-debug-exit,iobase=0xf4,iosize=0x04 \
             -serial stdio -kernel /k/kernel -append log=debug selftest=shm"
        );
        // The command line stays one argument; unchecked words come last.
        assert_eq!(argv.last().unwrap(), "log=debug selftest=shm");
        let config = config.unchecked(" bogus=1 ").unchecked("log=loud");
        assert_eq!(
            config.kernel_cmdline(),
            "log=debug selftest=shm bogus=1 log=loud"
        );
        let config = VmConfig::new("/k").unchecked("bogus=1");
        assert_eq!(config.kernel_cmdline(), "bogus=1");
    }

    #[test]
    fn argv_with_devices_and_escape_hatches() {
        let mut config = VmConfig::new("/k")
            .machine(Machine::Q35)
            .memory("256M")
            .shm(ShmDevice::Plain {
                mem_path: "/dev/shm/a,b".into(),
                size: 1 << 20,
            })
            .shm(ShmDevice::Doorbell {
                socket: "/tmp/s.sock".into(),
                vectors: 2,
            })
            .shm(ShmDevice::V2 {
                socket: "/tmp/v2.sock".into(),
            })
            .qemu_args(["-d", "int"])
            .firmware("/opt/fork/share/qemu")
            .firmware("/usr/share/seabios");
        config.monitor = Some("unix:/tmp/m,server,nowait".into());
        config.gdb = true;
        let config = config.com2("/tmp/a,b.pcap");
        let argv = config.argv();
        let pos = |s: &str| argv.iter().position(|a| a == s);
        assert_eq!(
            argv[..4],
            ["-L", "/opt/fork/share/qemu", "-L", "/usr/share/seabios"]
        );
        assert_eq!(argv[5], "q35");
        assert_eq!(argv[7], "256M");
        let i = pos("memory-backend-file,id=hm0,share=on,mem-path=/dev/shm/a,,b,size=1M").unwrap();
        assert_eq!(argv[i - 1], "-object");
        assert_eq!(argv[i + 2], "ivshmem-plain,memdev=hm0");
        let i = pos("file,id=com2,path=/tmp/a,,b.pcap").unwrap();
        assert_eq!(
            argv[i - 2..i + 3],
            [
                "stdio",
                "-chardev",
                argv[i].as_str(),
                "-serial",
                "chardev:com2"
            ]
        );
        let i = pos("socket,path=/tmp/s.sock,id=ivs1").unwrap();
        assert_eq!(argv[i - 1], "-chardev");
        assert_eq!(argv[i + 2], "ivshmem-doorbell,chardev=ivs1,vectors=2");
        let i = pos("socket,path=/tmp/v2.sock,id=ivs2").unwrap();
        assert_eq!(argv[i + 2], "ivshmem,chardev=ivs2");
        let tail: Vec<&str> = argv[argv.len() - 6..].iter().map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-monitor",
                "unix:/tmp/m,server,nowait",
                "-s",
                "-S",
                "-d",
                "int"
            ]
        );
        assert!(
            config
                .command_line()
                .starts_with("qemu-system-x86_64 -L /opt/fork/share/qemu")
        );
    }

    #[test]
    fn empty_cmdline_is_quoted_in_messages() {
        let config = VmConfig::new("/k");
        assert!(config.command_line().ends_with("-append ''"));
    }

    #[test]
    fn spawn_fails_cleanly_without_kernel() {
        let err = VmConfig::new("/nonexistent/kernel").spawn().unwrap_err();
        assert!(err.to_string().contains("does not exist"), "{err}");
    }

    #[test]
    fn handle_captures_lines_and_exit_status() {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (_dir, config) =
            fake_vm("printf 'hello\\r\\nready: yes\\n'; echo oops >&2; printf partial; exit 33");
        let seen2 = Arc::clone(&seen);
        let vm = config
            .on_line(move |l| seen2.lock().unwrap().push(l.to_string()))
            .spawn()
            .unwrap();
        let line = vm
            .wait_for_line("ready", Instant::now() + Duration::from_secs(10))
            .unwrap();
        assert_eq!(line, "ready: yes");
        let deadline = Instant::now() + Duration::from_secs(10);
        let pick = |line: &str| line.contains('e').then_some(line.len());
        assert_eq!(vm.wait_for(1, deadline, "an e", pick), Ok((1, 10)));
        assert_eq!(
            vm.wait(Duration::from_secs(10)),
            Outcome::Exit(ExitCode::Success)
        );
        assert_eq!(vm.lines(), ["hello", "ready: yes", "partial"]);
        assert_eq!(vm.log(), "hello\nready: yes\npartial\n");
        assert_eq!(vm.stderr(), "oops");
        assert_eq!(*seen.lock().unwrap(), ["hello", "ready: yes", "partial"]);
        assert_eq!(
            vm.wait_for_line("never", Instant::now() + Duration::from_secs(10)),
            Err(WaitError::Exited {
                vm: "fake".into(),
                what: "a line containing \"never\"".into()
            })
        );
        // Typed waits parse report lines; "ready: yes" is not one.
        let deadline = Instant::now() + Duration::from_secs(10);
        let err = vm
            .wait_for_report::<abi::report::BootOk>(0, deadline)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "fake: exited without printing a BootOk line"
        );
    }

    #[test]
    fn handle_times_out_and_kills() {
        let (_dir, config) = fake_vm("echo started; exec sleep 30");
        let vm = config.spawn().unwrap();
        let pid = vm.pid();
        assert!(matches!(
            vm.wait_for_line("nothing", Instant::now() + Duration::from_millis(200)),
            Err(WaitError::Timeout { .. })
        ));
        let outcome = vm.wait(Duration::from_millis(300));
        assert_eq!(outcome, Outcome::Timeout(Duration::from_millis(300)));
        assert_eq!(vm.wait(Duration::ZERO), outcome);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }

    #[test]
    fn drop_kills_qemu() {
        let (_dir, config) = fake_vm("exec sleep 30");
        let vm = config.spawn().unwrap();
        let pid = vm.pid();
        assert!(Path::new(&format!("/proc/{pid}")).exists());
        drop(vm);
        assert!(!Path::new(&format!("/proc/{pid}")).exists());
    }
}
