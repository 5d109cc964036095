//! Two-VM scenarios: [`qemu::Scenario`] under the VM lock, every error a
//! panic with all VMs' logs.

use std::fmt::Debug;
use std::str::FromStr;
use std::time::Duration;

use abi::cmdline::CommandLine;
use abi::report::AppsVerdict;
use qemu::link::unique_socket_path;
use qemu::server::ServerConfig;
use qemu::shm::PlainRegion;
use qemu::{DeviceReport, Link, Machine, Outcome, Scenario, ScenarioError, VmConfig, VmLock};

use crate::ShmFile;
use crate::single::missing;

/// How long one two-VM scenario may take in all before it fails.
pub const SCENARIO_TIMEOUT: Duration = Duration::from_secs(60);

/// VMs sharing one link, run under the [`VmLock`] with one overall deadline
/// ([`SCENARIO_TIMEOUT`] unless changed).
///
/// VMs are addressed by name (`"A"`, `"B"`); starting a name again (after
/// [`Pair::kill`]) makes the new VM the current one for that name. Every
/// failure panics with all VMs' command lines, outcomes and serial logs.
/// Dropping the pair kills all VMs, then stops the server (or removes the
/// shared file), then releases the lock.
#[derive(Debug)]
pub struct Pair {
    // Field order is drop order: the scenario before the lock.
    scenario: Scenario,
    _lock: VmLock,
}

impl Drop for Pair {
    /// Prints the scenario's logs (shown with `--nocapture`; a failure
    /// message already carries them).
    fn drop(&mut self) {
        if !std::thread::panicking() {
            println!("{}", self.scenario.context());
        }
    }
}

impl Pair {
    fn new(name: &str, link: impl FnOnce() -> Result<Link, String>) -> Pair {
        // Build before taking the lock: a build is not a VM run.
        Pair::with_template(name, VmConfig::new(crate::kernel()), link)
    }

    fn with_template(
        name: &str,
        template: VmConfig,
        link: impl FnOnce() -> Result<Link, String>,
    ) -> Pair {
        let lock = VmLock::acquire().expect("cannot take the VM lock");
        let link = link().unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut scenario = Scenario::new(name, template, link);
        scenario.set_timeout(Some(SCENARIO_TIMEOUT));
        Pair {
            scenario,
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
    pub fn doorbell_with(name: &str, configure: impl FnOnce(&mut ServerConfig)) -> Pair {
        Pair::new(name, || {
            let mut config = ServerConfig::new(unique_socket_path("e2e"));
            configure(&mut config);
            Link::serve(config.clone())
                .map_err(|e| format!("cannot start the server {config:?}: {e}"))
        })
    }

    /// A doorbell scenario (as [`Pair::doorbell`]) whose VMs boot the flat
    /// image as Jailhouse cells in the cell harness ([`qemu::cell`]).
    ///
    /// # Panics
    ///
    /// If the image cannot be built or the server cannot start.
    pub fn doorbell_cells(name: &str) -> Pair {
        let template = VmConfig::new(crate::cell_image()).cell();
        Pair::with_template(name, template, || {
            let config = ServerConfig::new(unique_socket_path("e2e-cell"));
            Link::serve(config.clone())
                .map_err(|e| format!("cannot start the server {config:?}: {e}"))
        })
    }

    /// Sends a hypervisor message to cell-harness VM `name` and returns its
    /// reply (within 5 s).
    #[track_caller]
    pub fn send_cell_message(
        &self,
        name: &str,
        message: abi::jailhouse::Message,
    ) -> abi::jailhouse::Reply {
        let handle = self.ok(self.scenario.handle(name));
        handle
            .send_cell_message(message, Duration::from_secs(5))
            .unwrap_or_else(|e| self.fail(&format!("{e:#}")))
    }

    /// A polling scenario on `ivshmem-plain` (1 MiB, 2 peers, ivshmem-net):
    /// VMs get `mode=poll id=<id>`.
    ///
    /// # Panics
    ///
    /// If the kernel cannot be built or the file cannot be created.
    pub fn plain(name: &str) -> Pair {
        Pair::new(name, || {
            PlainRegion::create_net(&ShmFile::unique_path("e2e-plain"), 1 << 20)
                .map(Link::Plain)
                .map_err(|e| format!("{e:#}"))
        })
    }

    /// What the VMs share (e.g. to join it with the host bridge:
    /// [`Link::bridge_link`]).
    pub fn link(&self) -> &Link {
        self.scenario.link()
    }

    /// Turns a scenario error into a panic with the logs.
    #[track_caller]
    fn ok<T>(&self, result: Result<T, ScenarioError>) -> T {
        result.unwrap_or_else(|e| panic!("{e}\n{}", e.logs))
    }

    /// Every serial line of VM `name` so far, log lines too.
    #[track_caller]
    pub fn lines(&self, name: &str) -> Vec<String> {
        self.ok(self.scenario.lines(name))
    }

    /// Moves the overall deadline to `timeout` from now.
    pub fn set_timeout(&mut self, timeout: Duration) {
        self.scenario.set_timeout(Some(timeout));
    }

    /// Starts VM `name` with peer ID `id` on `pc` (see [`Pair::start_on`]).
    #[track_caller]
    pub fn start(&mut self, name: &str, id: u16, cmdline: CommandLine) -> DeviceReport {
        self.start_on(Machine::Pc, name, id, cmdline)
    }

    /// Starts VM `name` on `machine` with `cmdline` and returns its
    /// `ivshmem:` line; the device must give it peer ID `id` (on the plain
    /// link it gets `id=<id>` instead).
    #[track_caller]
    pub fn start_on(
        &mut self,
        machine: Machine,
        name: &str,
        id: u16,
        cmdline: CommandLine,
    ) -> DeviceReport {
        let config = self.scenario.vm(name).machine(machine).cmdline(cmdline);
        let started = self.scenario.start(config, Some(id));
        self.ok(started)
    }

    /// Waits (until the deadline) for a line of VM `name` from index `from`
    /// on that parses as the report `T`; returns its index and value.
    #[track_caller]
    pub fn wait_for<T: FromStr>(&self, name: &str, from: usize) -> (usize, T) {
        self.ok(self.scenario.wait_for(name, from))
    }

    /// Like [`Pair::wait_for`], but gives up after `within` with `None`;
    /// `pick` sees every line, log lines too.
    #[track_caller]
    pub fn poll_for<T>(
        &self,
        name: &str,
        from: usize,
        within: Duration,
        what: &str,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> Option<(usize, T)> {
        self.ok(self.scenario.poll_for(name, from, within, what, pick))
    }

    /// Every line of VM `name` so far that parses as the report `T`.
    #[track_caller]
    pub fn reports<T: FromStr>(&self, name: &str) -> Vec<T> {
        self.ok(self.scenario.reports(name))
    }

    /// The first line of VM `name` that parses as the report `T` and that
    /// `accept`s (no waiting).
    #[track_caller]
    pub fn report_where<T: FromStr>(&self, name: &str, accept: impl Fn(&T) -> bool) -> T {
        self.reports(name)
            .into_iter()
            .find(accept)
            .unwrap_or_else(|| self.fail(&format!("{name}: {}", missing::<T>())))
    }

    /// The first line of VM `name` that parses as the report `T`.
    #[track_caller]
    pub fn report<T: FromStr>(&self, name: &str) -> T {
        self.report_where(name, |_| true)
    }

    /// Asserts that VM `name` printed `expected` (no waiting).
    #[track_caller]
    pub fn assert_report<T: FromStr + PartialEq + Debug>(&self, name: &str, expected: &T) {
        if !self.reports::<T>(name).contains(expected) {
            self.fail(&format!("{name} did not print {expected:?}"));
        }
    }

    /// Asserts that no line of VM `name` parses as the report `T` and
    /// `accept`s.
    #[track_caller]
    pub fn assert_no_where<T: FromStr + Debug>(&self, name: &str, accept: impl Fn(&T) -> bool) {
        if let Some(found) = self.reports::<T>(name).into_iter().find(accept) {
            self.fail(&format!("{name} printed {found:?}"));
        }
    }

    /// Asserts that no line of VM `name` parses as the report `T`.
    #[track_caller]
    pub fn assert_no<T: FromStr + Debug>(&self, name: &str) {
        self.assert_no_where::<T>(name, |_| true);
    }

    /// Waits (until the deadline) for VM `name` to exit.
    #[track_caller]
    pub fn wait_exit(&mut self, name: &str) -> Outcome {
        let outcome = self.scenario.wait_exit(name);
        self.ok(outcome)
    }

    /// Fails unless VM `name` is still running.
    #[track_caller]
    pub fn assert_running(&mut self, name: &str) {
        let outcome = self.scenario.outcome(name);
        if let Some(outcome) = self.ok(outcome) {
            self.fail(&format!("{name} is not running any more: {outcome}"));
        }
    }

    /// Waits for VM `name` to exit and asserts it passed: exit status 33
    /// and `apps: PASS`.
    #[track_caller]
    pub fn assert_pass(&mut self, name: &str) {
        let outcome = self.wait_exit(name);
        if !outcome.is_success() {
            self.fail(&format!("{name}: expected success, got: {outcome}"));
        }
        self.assert_report(name, &AppsVerdict { pass: true });
    }

    /// Kills VM `name` (SIGKILL); in the plain setup its state-table entry
    /// is then zeroed, as the launcher does (the server does it otherwise).
    #[track_caller]
    pub fn kill(&mut self, name: &str) {
        let killed = self.scenario.kill(name);
        self.ok(killed);
    }

    /// Sleeps for `duration`, failing if that would pass the deadline.
    #[track_caller]
    pub fn sleep(&self, duration: Duration) {
        self.ok(self.scenario.sleep(duration));
    }

    /// All VMs' command lines, outcomes, serial logs and QEMU stderr.
    pub fn context(&self) -> String {
        self.scenario.context()
    }

    /// Panics with `message` and the logs.
    #[track_caller]
    pub fn fail(&self, message: &str) -> ! {
        let error = self.scenario.error(message);
        panic!("{error}\n{}", error.logs)
    }
}
