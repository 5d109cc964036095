//! Shared helpers for the end-to-end tests: boot the real kernel under QEMU
//! (one VM, or one VM pair, at a time, always with a timeout), and parse what
//! it prints on its serial port.
//!
//! Two-VM scenarios use [`Pair`]: our ivshmem server in-process with
//! `ivshmem-doorbell` ([`Pair::doorbell`]) or an `ivshmem-plain` file
//! ([`Pair::plain`]), VMs addressed by label, one deadline for the whole
//! scenario, and every failure message carrying all VMs' serial logs. Set
//! `E2E_KERNEL=<elf>` to test a prebuilt kernel instead of building one.
//!
//! The parsers are deliberately strict: a line that does not have the exact
//! expected shape is an error, so that a change in the kernel's output format
//! fails the tests loudly instead of making them vacuous.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use abi::exit::ExitCode;
pub use qemu::shm::ShmFile;
pub use qemu::{Machine, Outcome, ShmDevice, VmConfig, VmLock};

/// How long any one VM (or launcher) run may take before it is killed and
/// the test fails. A boot takes ~0.2 s under TCG.
pub const VM_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the kernel (release profile) once per test process and returns the ELF.
///
/// If the environment variable `E2E_KERNEL` names a file, that ELF is used
/// instead and nothing is built (to test a kernel built elsewhere, e.g. from
/// a clean checkout while the working tree is being edited).
///
/// # Panics
///
/// If the build fails (the message carries cargo's stderr).
pub fn kernel() -> PathBuf {
    if let Some(elf) = std::env::var_os("E2E_KERNEL") {
        let elf = PathBuf::from(elf);
        assert!(elf.is_file(), "E2E_KERNEL={} is not a file", elf.display());
        return elf;
    }
    qemu::kernel::build(qemu::kernel::Profile::Release)
        .unwrap_or_else(|e| panic!("cannot build the kernel: {e:#}"))
}

/// A finished VM run: its verdict and everything it printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// The decoded QEMU exit status (or timeout).
    pub outcome: Outcome,
    /// The serial lines, in order.
    pub lines: Vec<String>,
    /// What QEMU printed on stderr.
    pub stderr: String,
    /// The QEMU command line, for failure messages.
    pub command_line: String,
    /// Wall-clock time of the run.
    pub elapsed: Duration,
}

impl Run {
    /// The serial output, one `\n` after each line.
    pub fn serial(&self) -> String {
        self.lines.iter().map(|l| format!("{l}\n")).collect()
    }

    /// A description of the run for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "outcome: {}\ncommand: {}\n--- serial ---\n{}--- QEMU stderr ---\n{}\n",
            self.outcome,
            self.command_line,
            self.serial(),
            self.stderr
        )
    }

    /// The first serial line containing `needle`, or a panic naming it.
    pub fn line(&self, needle: &str) -> &str {
        self.lines
            .iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no serial line contains {needle:?}\n{}", self.context()))
    }

    /// Asserts the run ended with `expected`.
    #[track_caller]
    pub fn assert_outcome(&self, expected: Outcome) {
        assert_eq!(
            self.outcome,
            expected,
            "expected {expected}\n{}",
            self.context()
        );
    }
}

/// Runs one VM to completion under the cross-process [`VmLock`], with
/// [`VM_TIMEOUT`].
///
/// # Panics
///
/// If the lock cannot be taken or QEMU cannot be started.
pub fn run_vm(config: VmConfig) -> Run {
    let _lock = VmLock::acquire().expect("cannot take the VM lock");
    let command_line = config.command_line();
    let vm = config
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start QEMU: {e:#}\ncommand: {command_line}"));
    let outcome = vm.wait(VM_TIMEOUT);
    Run {
        outcome,
        lines: vm.lines(),
        stderr: vm.stderr(),
        command_line,
        elapsed: vm.elapsed(),
    }
}

/// Boots the kernel on `machine` with `cmdline`, optionally with an
/// `ivshmem-plain` device on `shm`, and waits for it to end.
pub fn boot(machine: Machine, cmdline: &str, shm: Option<&ShmFile>) -> Run {
    let mut config = VmConfig::new(kernel())
        .name(format!("e2e-{machine}"))
        .machine(machine)
        .unchecked(cmdline);
    if let Some(shm) = shm {
        config = config.shm(shm.device());
    }
    run_vm(config)
}

/// A fresh, sparse (zeroed) shared-memory file of `size` bytes for
/// `ivshmem-plain`, removed on drop, also when the test panics. It has no
/// descriptor page, so the test controls every byte.
///
/// # Panics
///
/// If the file cannot be created.
pub fn shm_file(tag: &str, size: u64) -> ShmFile {
    let path = ShmFile::unique_path(tag);
    ShmFile::create(&path, size).unwrap_or_else(|e| panic!("{e:#}"))
}

/// Parses `0x…` hexadecimal.
pub fn parse_hex(s: &str) -> Result<u64, String> {
    let digits = s
        .strip_prefix("0x")
        .ok_or_else(|| format!("{s:?} does not start with 0x"))?;
    u64::from_str_radix(digits, 16).map_err(|e| format!("{s:?}: {e}"))
}

/// The kind of a BAR as the inventory prints it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BarKind {
    /// `io`
    Io,
    /// `mem32`
    Mem32,
    /// `mem64`
    Mem64,
}

/// One `pci BB:DD.F   BARn kind [prefetchable] 0xADDR size 0xSIZE` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bar {
    /// BAR index (0–5).
    pub index: u8,
    /// I/O or memory, 32 or 64 bit.
    pub kind: BarKind,
    /// Whether `prefetchable` was printed.
    pub prefetchable: bool,
    /// The assigned address.
    pub address: u64,
    /// The size in bytes.
    pub size: u64,
}

/// One PCI function of the inventory and its BARs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PciFunction {
    /// `BB:DD.F`
    pub bdf: String,
    /// Vendor ID.
    pub vendor: u16,
    /// Device ID.
    pub device: u16,
    /// Class code, e.g. `05.00.00`.
    pub class: String,
    /// The BARs printed under the function.
    pub bars: Vec<Bar>,
}

impl PciFunction {
    /// BAR `index`, if printed.
    pub fn bar(&self, index: u8) -> Option<&Bar> {
        self.bars.iter().find(|b| b.index == index)
    }
}

fn parse_bar(bdf: &str, rest: &str) -> Result<Bar, String> {
    let words: Vec<&str> = rest.split_whitespace().collect();
    let bad = || format!("malformed BAR line for {bdf}: {rest:?}");
    let (index, kind, prefetchable, address, size) = match words.as_slice() {
        [bar, kind, "prefetchable", addr, "size", size] => (bar, kind, true, addr, size),
        [bar, kind, addr, "size", size] => (bar, kind, false, addr, size),
        _ => return Err(bad()),
    };
    let index: u8 = index
        .strip_prefix("BAR")
        .and_then(|i| i.parse().ok())
        .filter(|&i| i < 6)
        .ok_or_else(bad)?;
    let kind = match *kind {
        "io" => BarKind::Io,
        "mem32" => BarKind::Mem32,
        "mem64" => BarKind::Mem64,
        _ => return Err(bad()),
    };
    Ok(Bar {
        index,
        kind,
        prefetchable,
        address: parse_hex(address)?,
        size: parse_hex(size)?,
    })
}

/// Parses the `PCI inventory (N functions):` block out of the serial lines,
/// checking that exactly N functions follow.
pub fn parse_pci_inventory<S: AsRef<str>>(lines: &[S]) -> Result<Vec<PciFunction>, String> {
    let mut lines = lines.iter().map(AsRef::as_ref);
    let header = lines
        .by_ref()
        .find(|l| l.starts_with("PCI inventory ("))
        .ok_or("no \"PCI inventory (N functions):\" line")?;
    let count: usize = header
        .strip_prefix("PCI inventory (")
        .and_then(|r| r.strip_suffix(" functions):"))
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| format!("malformed inventory header {header:?}"))?;
    let mut functions: Vec<PciFunction> = Vec::new();
    for line in lines {
        let Some(rest) = line.strip_prefix("pci ") else {
            break;
        };
        let (bdf, rest) = rest
            .split_once(' ')
            .ok_or_else(|| format!("malformed inventory line {line:?}"))?;
        let rest_trimmed = rest.trim_start();
        if rest_trimmed.starts_with("BAR") {
            let function = functions
                .last_mut()
                .filter(|f| f.bdf == bdf)
                .ok_or_else(|| format!("BAR line for {bdf} outside its function: {line:?}"))?;
            function.bars.push(parse_bar(bdf, rest_trimmed)?);
            continue;
        }
        let words: Vec<&str> = rest.split_whitespace().collect();
        let ["class", class, "rev", _rev] = words[1..] else {
            return Err(format!("malformed inventory line {line:?}"));
        };
        let (vendor, device) = words[0]
            .split_once(':')
            .and_then(|(v, d)| {
                Some((
                    u16::from_str_radix(v, 16).ok()?,
                    u16::from_str_radix(d, 16).ok()?,
                ))
            })
            .ok_or_else(|| format!("malformed vendor:device in {line:?}"))?;
        functions.push(PciFunction {
            bdf: bdf.to_string(),
            vendor,
            device,
            class: class.to_string(),
            bars: Vec::new(),
        });
    }
    if functions.len() != count {
        return Err(format!(
            "inventory header announces {count} functions, {} listed",
            functions.len()
        ));
    }
    Ok(functions)
}

/// The `shm: BAR2 mem64 prefetchable 0xADDR size 0xSIZE first 0x… last 0x…`
/// line of `selftest=shm`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ShmReport {
    /// The BAR as described.
    pub bar: BarKind,
    /// Guest-physical address of the shared memory.
    pub address: u64,
    /// Its size in bytes.
    pub size: u64,
    /// The first u64 the guest read.
    pub first: u64,
    /// The last u64 the guest read.
    pub last: u64,
}

/// Parses the `shm: …` line.
pub fn parse_shm_line(line: &str) -> Result<ShmReport, String> {
    let rest = line
        .strip_prefix("shm: ")
        .ok_or_else(|| format!("not a shm line: {line:?}"))?;
    let (bar_part, values) = rest
        .split_once(" first ")
        .ok_or_else(|| format!("no \"first\" in {line:?}"))?;
    let bar = parse_bar("shm", bar_part)?;
    let (first, last) = values
        .split_once(" last ")
        .ok_or_else(|| format!("no \"last\" in {line:?}"))?;
    Ok(ShmReport {
        bar: bar.kind,
        address: bar.address,
        size: bar.size,
        first: parse_hex(first.trim())?,
        last: parse_hex(last.trim())?,
    })
}

/// The register part of a `CPU EXCEPTION` report.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExceptionReport {
    /// The headline, e.g. `#PF page fault`.
    pub name: String,
    /// The vector number.
    pub vector: u8,
    /// The faulting instruction.
    pub rip: u64,
    /// The error code (0 if the line is absent).
    pub error_code: Option<u64>,
    /// CR2 and its explanation, for page faults.
    pub cr2: Option<(u64, String)>,
}

/// Parses the `CPU EXCEPTION … (vector N)` report from the serial lines.
pub fn parse_exception<S: AsRef<str>>(lines: &[S]) -> Result<ExceptionReport, String> {
    let lines: Vec<&str> = lines.iter().map(|l| l.as_ref().trim()).collect();
    let start = lines
        .iter()
        .position(|l| l.starts_with("CPU EXCEPTION "))
        .ok_or("no \"CPU EXCEPTION\" line")?;
    let head = lines[start];
    let (name, vector) = head
        .strip_prefix("CPU EXCEPTION ")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|r| r.rsplit_once(" (vector "))
        .ok_or_else(|| format!("malformed exception headline {head:?}"))?;
    let vector: u8 = vector
        .parse()
        .map_err(|_| format!("malformed vector in {head:?}"))?;
    let report = &lines[start + 1..];
    let field = |prefix: &str| report.iter().find_map(|l| l.strip_prefix(prefix));
    let rip = field("RIP ")
        .and_then(|r| r.split_whitespace().next())
        .ok_or("no RIP line")?;
    let error_code = field("error code ")
        .map(|e| parse_hex(e.trim()))
        .transpose()?;
    let cr2 = field("CR2 ")
        .map(|c| -> Result<(u64, String), String> {
            let (value, why) = c.split_once(' ').unwrap_or((c, ""));
            Ok((parse_hex(value)?, why.trim().to_string()))
        })
        .transpose()?;
    Ok(ExceptionReport {
        name: name.to_string(),
        vector,
        rip: parse_hex(rip)?,
        error_code,
        cr2,
    })
}

/// What a host process printed and how it ended.
#[derive(Debug, Clone)]
pub struct ProcessRun {
    /// Its exit status (`None` if it was killed for the timeout).
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
}

impl ProcessRun {
    /// A description for assertion messages.
    pub fn context(&self) -> String {
        format!(
            "status: {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}\n",
            self.status, self.stdout, self.stderr
        )
    }

    /// The exit code, or a panic describing the run.
    pub fn code(&self) -> i32 {
        self.status
            .and_then(|s| s.code())
            .unwrap_or_else(|| panic!("no exit code (timeout or signal)\n{}", self.context()))
    }
}

/// Runs `command` with null stdin and captured output; kills it after `timeout`.
///
/// # Panics
///
/// If the process cannot be started.
pub fn run_process(mut command: Command, timeout: Duration) -> ProcessRun {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
    fn drain(mut pipe: impl Read + Send + 'static) -> std::thread::JoinHandle<String> {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            let _ = pipe.read_to_end(&mut bytes);
            String::from_utf8_lossy(&bytes).into_owned()
        })
    }
    let stdout = drain(child.stdout.take().expect("stdout is piped"));
    let stderr = drain(child.stderr.take().expect("stderr is piped"));
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break Some(status),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                break None;
            }
        }
    };
    ProcessRun {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    }
}

/// `cargo run -q -p qemu -- <args>` from the workspace root.
///
/// The launcher is built once per test process first (outside any lock and
/// timeout), so the run itself only pays cargo's freshness check. Cargo
/// `exec`s the binary on Unix, so the timeout kill reaches the launcher, and
/// the launcher's QEMU dies with it (`PR_SET_PDEATHSIG`).
///
/// The `qemu` library exposes no function for the `boot` command (it lives
/// in the binary's `main.rs`), hence the detour through cargo.
pub fn run_launcher(args: &[&str], timeout: Duration) -> ProcessRun {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let cargo = || {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(qemu::workspace_root());
        command
    };
    let built = BUILT.get_or_init(|| {
        let mut build = cargo();
        build.args(["build", "-q", "-p", "qemu", "--bin", "eth-ivshmem"]);
        let run = run_process(build, Duration::from_secs(600));
        match run.status {
            Some(s) if s.success() => Ok(()),
            _ => Err(run.context()),
        }
    });
    if let Err(e) = built {
        panic!("cannot build the launcher:\n{e}");
    }
    let mut command = cargo();
    command
        .args(["run", "-q", "-p", "qemu", "--bin", "eth-ivshmem", "--"])
        .args(args);
    run_process(command, timeout)
}

// ---------------------------------------------------------------------------
// Two-VM scenarios (issues 4 and 5)
// ---------------------------------------------------------------------------

/// How long one two-VM scenario may take in all before it fails.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// What the two VMs share.
#[derive(Debug)]
pub enum Link {
    /// Stock QEMU `ivshmem-doorbell` on our in-process v1 server (interrupts).
    Doorbell(qemu::server::ServerThread),
    /// `ivshmem-plain` on a shared file with a descriptor page (polling).
    Plain(qemu::shm::PlainRegion),
}

impl Link {
    /// The QEMU device for a VM on this link.
    pub fn device(&self) -> ShmDevice {
        match self {
            Link::Doorbell(server) => server.device(),
            Link::Plain(region) => region.device(),
        }
    }
}

/// One VM of a [`Pair`] scenario (every VM ever started is kept, so that a
/// failure message shows the serial log of a killed VM too).
struct PairVm {
    label: String,
    run: usize,
    id: u32,
    command_line: String,
    /// In a `RefCell` so that failure messages (which only have `&Pair`)
    /// can still collect the verdict (`VmHandle::try_outcome` takes `&mut`).
    handle: std::cell::RefCell<qemu::VmHandle>,
}

impl PairVm {
    /// The verdict if QEMU has exited (`None` while it runs, or if the
    /// handle is busy).
    fn outcome(&self) -> Option<Outcome> {
        self.handle.try_borrow_mut().ok()?.try_outcome()
    }
}

/// A scenario of VMs sharing one [`Link`], run under the [`VmLock`] with one
/// overall deadline ([`SCENARIO_TIMEOUT`] unless changed).
///
/// VMs are addressed by label (`"A"`, `"B"`); starting a label again (after
/// [`Pair::kill`]) makes the new VM the current one for that label. Every
/// failure panics with all VMs' command lines, verdicts and serial logs.
/// Dropping the pair kills all VMs, then stops the server (or removes the
/// shared file), then releases the lock.
pub struct Pair {
    name: String,
    kernel: PathBuf,
    deadline: Instant,
    // Field order is drop order: VMs first, then what they share, then the lock.
    vms: Vec<PairVm>,
    link: Link,
    notes: Vec<String>,
    _lock: VmLock,
}

impl std::fmt::Debug for Pair {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pair")
            .field("name", &self.name)
            .field("link", &self.link)
            .field(
                "vms",
                &self.vms.iter().map(|v| &v.label).collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl Drop for Pair {
    /// Prints the scenario's logs (shown with `--nocapture`; a failure
    /// message already carries them).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            println!("{}", self.context());
        }
    }
}

/// A unique socket path for a test server (under `/dev/shm` or the temporary
/// directory, short enough for `sun_path`).
pub fn unique_socket_path(tag: &str) -> PathBuf {
    let mut path = qemu::shm::ShmFile::unique_path(tag).into_os_string();
    path.push(".sock");
    PathBuf::from(path)
}

impl Pair {
    fn new(name: &str, link: impl FnOnce() -> Link, lock: VmLock) -> Pair {
        Pair {
            name: name.to_string(),
            kernel: kernel(),
            deadline: Instant::now() + SCENARIO_TIMEOUT,
            vms: Vec::new(),
            link: link(),
            notes: Vec::new(),
            _lock: lock,
        }
    }

    /// A doorbell scenario on our v1 server with its defaults (2 vectors,
    /// 1 MiB, ivshmem-net protocol).
    pub fn doorbell(name: &str) -> Pair {
        Pair::doorbell_with(name, |_| {})
    }

    /// A doorbell scenario on our v1 server, its configuration changed by
    /// `configure` (e.g. another `net_protocol`).
    ///
    /// # Panics
    ///
    /// If the kernel cannot be built or the server cannot start.
    pub fn doorbell_with(
        name: &str,
        configure: impl FnOnce(&mut qemu::server::ServerConfig),
    ) -> Pair {
        // Build before taking the lock: a build is not a VM run.
        kernel();
        let lock = VmLock::acquire().expect("cannot take the VM lock");
        Pair::new(
            name,
            || {
                let mut config = qemu::server::ServerConfig::new(unique_socket_path("e2e"));
                configure(&mut config);
                let server = qemu::server::Server::bind(config.clone())
                    .unwrap_or_else(|e| panic!("{name}: cannot start the server {config:?}: {e}"))
                    .spawn()
                    .unwrap_or_else(|e| panic!("{name}: cannot start the server thread: {e}"));
                Link::Doorbell(server)
            },
            lock,
        )
    }

    /// A polling scenario on `ivshmem-plain` (1 MiB, 2 peers, ivshmem-net).
    /// VMs get `mode=poll id=<id>` appended to their command lines.
    ///
    /// # Panics
    ///
    /// If the kernel cannot be built or the file cannot be created.
    pub fn plain(name: &str) -> Pair {
        kernel();
        let lock = VmLock::acquire().expect("cannot take the VM lock");
        Pair::new(
            name,
            || {
                let path = qemu::shm::ShmFile::unique_path("e2e-plain");
                let region = qemu::shm::PlainRegion::create_net(&path, 1 << 20)
                    .unwrap_or_else(|e| panic!("{name}: cannot create {}: {e:#}", path.display()));
                Link::Plain(region)
            },
            lock,
        )
    }

    /// What the VMs share.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// Whether this is the `ivshmem-plain` (polling) setup.
    pub fn is_plain(&self) -> bool {
        matches!(self.link, Link::Plain(_))
    }

    /// Moves the overall deadline to `timeout` from now.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.deadline = Instant::now() + timeout;
    }

    /// The overall deadline.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Starts VM `label` with peer ID `id` on `pc` (see [`Pair::start_on`]).
    pub fn start(&mut self, label: &str, id: u32, cmdline: &str) -> String {
        self.start_on(Machine::Pc, label, id, cmdline)
    }

    /// Starts VM `label` on `machine` with `cmdline` and waits for its first
    /// `ivshmem: ` line (the device it found, or the reason it found none),
    /// which it returns. In the doorbell setup QEMU has connected to the
    /// server by then, so the next VM gets the next ID. If the line describes
    /// the device, its ID must be `id`.
    ///
    /// In the plain setup `mode=poll id=<id>` is appended first (unless the
    /// command line already sets `mode` or `id`).
    ///
    /// # Panics
    ///
    /// If QEMU cannot start, the VM ends or the deadline passes before the
    /// line, or the ID is wrong.
    pub fn start_on(&mut self, machine: Machine, label: &str, id: u32, cmdline: &str) -> String {
        let mut config = VmConfig::new(&self.kernel)
            .name(label)
            .machine(machine)
            .unchecked(cmdline)
            .shm(self.link.device());
        if self.is_plain() {
            let has = |key: &str| cmdline.split_whitespace().any(|w| w.starts_with(key));
            if !has("mode=") {
                config = config.unchecked("mode=poll");
            }
            if !has("id=") {
                config = config.unchecked(&format!("id={id}"));
            }
        }
        let command_line = config.command_line();
        let handle = config.spawn().unwrap_or_else(|e| {
            self.fail(&format!(
                "cannot start {label}: {e:#}\ncommand: {command_line}"
            ))
        });
        let run = self.vms.iter().filter(|v| v.label == label).count() + 1;
        self.vms.push(PairVm {
            label: label.to_string(),
            run,
            id,
            command_line,
            handle: std::cell::RefCell::new(handle),
        });
        // The first line that starts with `ivshmem: ` (log lines may contain it).
        let mut from = 0;
        let line = loop {
            let (index, line) = self.wait_line_from(label, "ivshmem: ", from);
            if line.starts_with("ivshmem: ") {
                break line;
            }
            from = index + 1;
        };
        if let Ok(device) = parse_device_line(&line)
            && device.id != id
        {
            self.fail(&format!(
                "{label} got peer ID {} instead of {id}: {line:?}",
                device.id
            ));
        }
        line
    }

    fn index(&self, label: &str) -> usize {
        self.vms
            .iter()
            .rposition(|v| v.label == label)
            .unwrap_or_else(|| self.fail(&format!("no VM {label} was started")))
    }

    /// The serial lines of the current VM `label` so far.
    pub fn lines(&self, label: &str) -> Vec<String> {
        self.vms[self.index(label)].handle.borrow().lines()
    }

    /// Waits (until the deadline) for a serial line of the current VM
    /// `label` containing `needle`; returns its index and the line.
    pub fn wait_line(&self, label: &str, needle: &str) -> (usize, String) {
        self.wait_line_from(label, needle, 0)
    }

    /// Like [`Pair::wait_line`], considering only lines from index `from` on.
    pub fn wait_line_from(&self, label: &str, needle: &str, from: usize) -> (usize, String) {
        let vm = &self.vms[self.index(label)];
        // End the borrow before a failure message collects the verdicts.
        let found = wait_for_line_from(&vm.handle.borrow(), needle, from, self.deadline);
        found.unwrap_or_else(|e| self.fail(&format!("{e}")))
    }

    /// Like [`Pair::wait_line_from`], but gives up after `within` (or at the
    /// deadline) and returns `None` instead of failing; still fails if the
    /// VM exits first.
    pub fn poll_line(
        &self,
        label: &str,
        needle: &str,
        from: usize,
        within: Duration,
    ) -> Option<(usize, String)> {
        let vm = &self.vms[self.index(label)];
        let until = (Instant::now() + within).min(self.deadline);
        let found = wait_for_line_from(&vm.handle.borrow(), needle, from, until);
        match found {
            Ok(found) => Some(found),
            Err(qemu::vm::WaitError::Timeout { .. }) => None,
            Err(e) => self.fail(&format!("{e}")),
        }
    }

    /// Waits (until the deadline) for the current VM `label` to exit.
    pub fn wait_exit(&mut self, label: &str) -> Outcome {
        let index = self.index(label);
        let left = self.deadline.saturating_duration_since(Instant::now());
        self.vms[index].handle.borrow_mut().wait(left)
    }

    /// Whether the current VM `label` is still running.
    pub fn is_running(&mut self, label: &str) -> bool {
        let index = self.index(label);
        self.vms[index].outcome().is_none()
    }

    /// Fails unless the current VM `label` is still running.
    pub fn assert_running(&mut self, label: &str) {
        if !self.is_running(label) {
            self.fail(&format!("{label} is not running any more"));
        }
    }

    /// Waits for VM `label` to exit and asserts it passed: exit status 33
    /// and `apps: PASS`.
    pub fn assert_pass(&mut self, label: &str) {
        let outcome = self.wait_exit(label);
        if outcome != Outcome::Exit(ExitCode::Success) {
            self.fail(&format!("{label}: expected success, got: {outcome}"));
        }
        self.assert_line(label, "apps: PASS");
    }

    /// Asserts that the current VM `label` printed a line containing
    /// `needle` (no waiting); returns the first such line.
    pub fn assert_line(&self, label: &str, needle: &str) -> String {
        self.lines(label)
            .into_iter()
            .find(|l| l.contains(needle))
            .unwrap_or_else(|| self.fail(&format!("{label} printed no line containing {needle:?}")))
    }

    /// Asserts that the current VM `label` printed no line containing `needle`.
    pub fn assert_no_line(&self, label: &str, needle: &str) {
        if let Some(line) = self.lines(label).iter().find(|l| l.contains(needle)) {
            self.fail(&format!("{label} printed {line:?}"));
        }
    }

    /// Kills the current VM `label` (SIGKILL). In the plain setup it then
    /// zeroes the VM's state-table entry, as nobody else does (the launcher
    /// does the same); in the doorbell setup the server does it.
    pub fn kill(&mut self, label: &str) {
        let index = self.index(label);
        let outcome = self.vms[index].handle.borrow_mut().kill();
        let id = self.vms[index].id;
        self.notes.push(format!("{label} killed ({outcome})"));
        if let Link::Plain(region) = &self.link {
            region.zero_state(id as u16);
            self.notes.push(format!("state of peer {id} zeroed"));
        }
    }

    /// Sleeps for `duration`, failing if that would pass the deadline.
    pub fn sleep(&self, duration: Duration) {
        if Instant::now() + duration > self.deadline {
            self.fail(&format!("sleeping {duration:?} would pass the deadline"));
        }
        std::thread::sleep(duration);
    }

    /// All VMs' command lines, verdicts, serial logs and QEMU stderr.
    pub fn context(&self) -> String {
        let mut s = format!("=== scenario {} ===\n", self.name);
        for note in &self.notes {
            s.push_str(&format!("note: {note}\n"));
        }
        for vm in &self.vms {
            s.push_str(&format!(
                "=== VM {} (run {}, peer {}) ===\ncommand: {}\noutcome: {}\nstarted {:.2} s ago\n--- serial ---\n{}--- QEMU stderr ---\n{}\n",
                vm.label,
                vm.run,
                vm.id,
                vm.command_line,
                vm.outcome()
                    .map_or("still running".to_string(), |o| o.to_string()),
                vm.handle.borrow().elapsed().as_secs_f64(),
                vm.handle.borrow().log(),
                vm.handle.borrow().stderr()
            ));
        }
        s
    }

    /// Panics with `message` and [`Pair::context`].
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        // A VM that just closed its output may not have been reaped yet:
        // give the verdicts a moment to arrive.
        let grace = Instant::now() + Duration::from_millis(500);
        while Instant::now() < grace && self.vms.iter().any(|v| v.outcome().is_none()) {
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("{}: {message}\n{}", self.name, self.context())
    }
}

fn wait_for_line_from(
    vm: &qemu::VmHandle,
    needle: &str,
    from: usize,
    deadline: Instant,
) -> Result<(usize, String), qemu::vm::WaitError> {
    let what = format!("a line containing {needle:?}");
    vm.wait_for(from, deadline, &what, |line| {
        line.contains(needle).then(|| line.to_string())
    })
}

/// The `ivshmem: <kind> at BB:DD.F, id N of M, protocol 0xPPPP, V vector(s)` line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceLine {
    /// E.g. `ivshmem-v2 emulated on ivshmem-doorbell`.
    pub kind: String,
    /// `BB:DD.F`.
    pub bdf: String,
    /// Our peer ID.
    pub id: u32,
    /// Maximum peers.
    pub max_peers: u32,
    /// The ivshmem-v2 protocol ID.
    pub protocol: u16,
    /// Interrupt vectors.
    pub vectors: u32,
}

/// Parses the `ivshmem: … at …, id …` device line.
pub fn parse_device_line(line: &str) -> Result<DeviceLine, String> {
    let bad = || format!("malformed ivshmem device line {line:?}");
    let rest = line.strip_prefix("ivshmem: ").ok_or_else(bad)?;
    let (kind, rest) = rest.rsplit_once(" at ").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split(", ").collect();
    let [bdf, id, protocol, vectors] = parts.as_slice() else {
        return Err(bad());
    };
    let (id, max_peers) = id
        .strip_prefix("id ")
        .and_then(|r| r.split_once(" of "))
        .and_then(|(i, m)| Some((i.parse().ok()?, m.parse().ok()?)))
        .ok_or_else(bad)?;
    let protocol = protocol
        .strip_prefix("protocol ")
        .and_then(|p| parse_hex(p).ok())
        .and_then(|p| u16::try_from(p).ok())
        .ok_or_else(bad)?;
    let vectors = vectors
        .strip_suffix(" vector(s)")
        .and_then(|v| v.parse().ok())
        .ok_or_else(bad)?;
    if bdf.len() != 7 || kind.is_empty() {
        return Err(bad());
    }
    Ok(DeviceLine {
        kind: kind.to_string(),
        bdf: bdf.to_string(),
        id,
        max_peers,
        protocol,
        vectors,
    })
}

/// Parses `link: up (link-ups N, resets M)` into `(N, M)`.
pub fn parse_link_up(line: &str) -> Result<(u64, u64), String> {
    line.strip_prefix("link: up (link-ups ")
        .and_then(|r| r.strip_suffix(')'))
        .and_then(|r| r.split_once(", resets "))
        .and_then(|(u, r)| Some((u.parse().ok()?, r.parse().ok()?)))
        .ok_or_else(|| format!("malformed link-up line {line:?}"))
}

/// Parses `ping: N transmitted, M received, L% loss` into `(N, M, L)`.
pub fn parse_ping_summary(line: &str) -> Result<(u32, u32, u32), String> {
    let bad = || format!("malformed ping summary {line:?}");
    let rest = line.strip_prefix("ping: ").ok_or_else(bad)?;
    let parts: Vec<&str> = rest.split(", ").collect();
    let [sent, received, loss] = parts.as_slice() else {
        return Err(bad());
    };
    Ok((
        sent.strip_suffix(" transmitted")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?,
        received
            .strip_suffix(" received")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?,
        loss.strip_suffix("% loss")
            .and_then(|n| n.parse().ok())
            .ok_or_else(bad)?,
    ))
}

/// Parses `tcp-echo: N bytes verified, throughput X.Y Mbit/s` into `(N, X.Y)`.
pub fn parse_tcp_echo(line: &str) -> Result<(u64, f64), String> {
    line.strip_prefix("tcp-echo: ")
        .and_then(|r| r.split_once(" bytes verified, throughput "))
        .and_then(|(n, t)| Some((n.parse().ok()?, t.strip_suffix(" Mbit/s")?.parse().ok()?)))
        .ok_or_else(|| format!("malformed tcp-echo result {line:?}"))
}

/// Parses `udp-echo: E of N datagrams of S bytes echoed intact` into `(E, N, S)`.
pub fn parse_udp_echo(line: &str) -> Result<(u32, u32, u32), String> {
    let bad = || format!("malformed udp-echo result {line:?}");
    let rest = line
        .strip_prefix("udp-echo: ")
        .and_then(|r| r.strip_suffix(" bytes echoed intact"))
        .ok_or_else(bad)?;
    let (echoed, rest) = rest.split_once(" of ").ok_or_else(bad)?;
    let (count, size) = rest.split_once(" datagrams of ").ok_or_else(bad)?;
    Ok((
        echoed.parse().map_err(|_| bad())?,
        count.parse().map_err(|_| bad())?,
        size.parse().map_err(|_| bad())?,
    ))
}
