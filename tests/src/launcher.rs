//! The launcher binary run as a process, with a timeout.

use std::io::Read;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// What a host process printed and how it ended.
#[derive(Debug, Clone)]
pub struct ProcessRun {
    /// Its exit status (`None` if it was killed for the timeout).
    pub status: Option<ExitStatus>,
    /// Standard output.
    pub stdout: String,
    /// Standard error.
    pub stderr: String,
    /// Its process ID (the launcher's own: cargo `exec`s it). Files and
    /// sockets the launcher makes carry it in their names.
    pub pid: u32,
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
    let pid = child.id();
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
        pid,
    }
}

/// `cargo run -q -p qemu -- <args>` from the workspace root.
///
/// The launcher is built once per test process first (outside any lock and
/// timeout), so the run itself only pays cargo's freshness check. Cargo
/// `exec`s the binary on Unix, so the timeout kill reaches the launcher, and
/// the launcher's QEMU dies with it (`PR_SET_PDEATHSIG`).
///
/// The tests judge the binary's exit statuses and output, so they run it;
/// `CARGO_BIN_EXE_*` exists only for the package's own tests, hence the
/// detour through cargo.
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
