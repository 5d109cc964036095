//! Shared helpers for the end-to-end tests: boot the real kernel under QEMU
//! (one VM at a time, always with a timeout), and parse what it prints on its
//! serial port.
//!
//! The parsers are deliberately strict: a line that does not have the exact
//! expected shape is an error, so that a change in the kernel's output format
//! fails the tests loudly instead of making them vacuous.

use std::fs::{File, OpenOptions};
use std::io::Read;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

pub use host::{Machine, Outcome, ShmDevice, VmConfig, VmLock};

/// How long any one VM (or launcher) run may take before it is killed and
/// the test fails. A boot takes ~0.2 s under TCG.
pub const VM_TIMEOUT: Duration = Duration::from_secs(60);

/// Builds the kernel (release profile) once per test process and returns the ELF.
///
/// # Panics
///
/// If the build fails (the message carries cargo's stderr).
pub fn kernel() -> PathBuf {
    host::kernel::build(host::kernel::Profile::Release)
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
    let mut vm = config
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
        .cmdline(cmdline);
    if let Some(shm) = shm {
        config = config.shm(ShmDevice::Plain {
            mem_path: shm.path().to_path_buf(),
            size: shm.size(),
        });
    }
    run_vm(config)
}

/// A sparse shared-memory file for `ivshmem-plain`, created fresh (zeroed)
/// and removed on drop, also when the test panics.
///
/// Unlike `host::shm::create_plain_region` it writes no descriptor page, so
/// the test controls every byte.
#[derive(Debug)]
pub struct ShmFile {
    path: PathBuf,
    size: u64,
    file: File,
}

impl ShmFile {
    /// Creates a `size`-byte sparse file under `/dev/shm` (see
    /// `host::shm::unique_shm_path`).
    ///
    /// # Panics
    ///
    /// If the file cannot be created or sized.
    pub fn new(tag: &str, size: u64) -> ShmFile {
        let path = host::shm::unique_shm_path(tag);
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create_new(true)
            .open(&path)
            .unwrap_or_else(|e| panic!("cannot create {}: {e}", path.display()));
        // Construct the guard before sizing, so that a failure below still
        // removes the file.
        let shm = ShmFile { path, size, file };
        shm.file
            .set_len(size)
            .unwrap_or_else(|e| panic!("cannot size {} to {size:#x}: {e}", shm.path.display()));
        shm
    }

    /// The file's path (QEMU's `mem-path`).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The file's size in bytes.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Writes `value` little-endian at `offset` (as the x86 guest reads it).
    ///
    /// # Panics
    ///
    /// If the write fails or falls outside the file.
    pub fn write_u64(&self, offset: u64, value: u64) {
        assert!(offset + 8 <= self.size, "offset {offset:#x} out of range");
        self.file
            .write_all_at(&value.to_le_bytes(), offset)
            .unwrap_or_else(|e| panic!("cannot write {}: {e}", self.path.display()));
    }
}

impl Drop for ShmFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
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

/// `cargo run -q -p eth-ivshmem -- <args>` from the workspace root.
///
/// The launcher is built once per test process first (outside any lock and
/// timeout), so the run itself only pays cargo's freshness check. Cargo
/// `exec`s the binary on Unix, so the timeout kill reaches the launcher, and
/// the launcher's QEMU dies with it (`PR_SET_PDEATHSIG`).
///
/// The `host` library exposes no function for the `boot` command (it lives
/// in the binary's `main.rs`), hence the detour through cargo.
pub fn run_launcher(args: &[&str], timeout: Duration) -> ProcessRun {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    let cargo = || {
        let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
        command.current_dir(host::workspace_root());
        command
    };
    let built = BUILT.get_or_init(|| {
        let mut build = cargo();
        build.args(["build", "-q", "-p", "eth-ivshmem", "--bin", "eth-ivshmem"]);
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
        .args([
            "run",
            "-q",
            "-p",
            "eth-ivshmem",
            "--bin",
            "eth-ivshmem",
            "--",
        ])
        .args(args);
    run_process(command, timeout)
}
