//! Named VMs on one [`Link`] under one deadline: how `demo`, `vm`, `boot`
//! and the end-to-end tests run VMs.
//!
//! A [`Scenario`] starts VMs from a template [`VmConfig`] (kernel, QEMU
//! binary and options) with the link's device, waits for their typed report
//! lines ([`abi::report`]), kills and restarts them and plays "peer gone"
//! when one ends ([`Link::peer_gone`]). Every VM ever started is kept, so
//! that a failure message ([`ScenarioError`]) carries the serial log and QEMU
//! stderr of each, a killed one too. Nothing here panics or prints; callers
//! decide (the tests turn errors into panics, the launcher into a summary).
//!
//! Dropping a scenario kills its VMs, then stops the server or removes the
//! file of its link.

use std::fmt;
use std::str::FromStr;
use std::time::{Duration, Instant};

use abi::report::{DEVICE_PREFIX, DeviceFound};

use crate::Outcome;
use crate::link::Link;
use crate::vm::{VmConfig, VmHandle, WaitError, report_name};

/// Why a scenario step failed: what went wrong, and the logs of every VM.
#[derive(Debug, Clone)]
pub struct ScenarioError {
    /// `<scenario>: <what went wrong>`.
    pub message: String,
    /// Every VM's command line, outcome, serial log and QEMU stderr, and the
    /// scenario's notes ([`Scenario::context`]).
    pub logs: String,
}

impl fmt::Display for ScenarioError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ScenarioError {}

/// The kernel's `ivshmem: ` line: the device it found, or why it found none
/// (e.g. `device speaks protocol 0x4000, expected 0x0001`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceReport {
    /// The device, its peer ID and vectors.
    Found(DeviceFound),
    /// The reason no device could be used (the text after `ivshmem: `).
    Unusable(String),
}

impl DeviceReport {
    /// Reads a line that starts with [`DEVICE_PREFIX`].
    pub fn parse(line: &str) -> Option<DeviceReport> {
        let reason = line.strip_prefix(DEVICE_PREFIX)?;
        Some(match line.parse() {
            Ok(device) => DeviceReport::Found(device),
            Err(_) => DeviceReport::Unusable(reason.to_string()),
        })
    }

    /// The device, if one was found.
    pub fn device(&self) -> Option<&DeviceFound> {
        match self {
            DeviceReport::Found(device) => Some(device),
            DeviceReport::Unusable(_) => None,
        }
    }
}

impl fmt::Display for DeviceReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DeviceReport::Found(device) => write!(f, "{device}"),
            DeviceReport::Unusable(reason) => write!(f, "{DEVICE_PREFIX}{reason}"),
        }
    }
}

/// One VM of a scenario.
#[derive(Debug)]
struct ScenarioVm {
    /// 1 for the first VM of this name, 2 after a restart…
    run: usize,
    /// Its peer ID, as asked for or as its device line said.
    id: Option<u16>,
    command_line: String,
    handle: VmHandle,
    /// Whether its end has been handled ("peer gone" played).
    gone: bool,
}

/// VMs sharing one [`Link`] under one deadline (module docs).
///
/// VMs are addressed by name (their [`VmConfig::name`]); starting a name
/// again makes the new VM the current one for that name.
#[derive(Debug)]
pub struct Scenario {
    name: String,
    template: VmConfig,
    timeout: Option<Duration>,
    deadline: Option<Instant>,
    // Field order is drop order: the VMs go before what they share.
    vms: Vec<ScenarioVm>,
    link: Link,
    notes: Vec<String>,
}

impl Scenario {
    /// A scenario called `name` on `link`, whose VMs start as `template`
    /// (kernel, QEMU binary, raw arguments, firmware, machine…), without a
    /// deadline.
    pub fn new(name: impl Into<String>, template: VmConfig, link: Link) -> Scenario {
        Scenario {
            name: name.into(),
            template,
            timeout: None,
            deadline: None,
            vms: Vec::new(),
            link,
            notes: Vec::new(),
        }
    }

    /// Sets the overall deadline to `timeout` from now (`None`: no deadline).
    pub fn set_timeout(&mut self, timeout: Option<Duration>) {
        self.timeout = timeout;
        self.deadline = timeout.map(|timeout| Instant::now() + timeout);
    }

    /// The overall deadline, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.deadline
    }

    /// What the VMs share.
    pub fn link(&self) -> &Link {
        &self.link
    }

    /// The scenario's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// A VM of this scenario called `name`: the template with the link's
    /// device. Set its command line, then [`Scenario::start`] it.
    pub fn vm(&self, name: &str) -> VmConfig {
        let config = self.template.clone().name(name);
        match self.link.device() {
            Some(device) => config.shm(device),
            None => config,
        }
    }

    /// Starts `config` as peer `id` (`None`: whatever the device says) and
    /// returns at once. The link adds what the kernel needs on it to the
    /// command line ([`Link::configure`]).
    pub fn spawn(&mut self, mut config: VmConfig, id: Option<u16>) -> Result<(), ScenarioError> {
        self.link.configure(&mut config.cmdline, id);
        let command_line = config.command_line();
        let handle = config.spawn().map_err(|e| {
            self.error(format!(
                "cannot start {}: {e:#}\ncommand: {command_line}",
                config.name
            ))
        })?;
        let run = self
            .vms
            .iter()
            .filter(|v| v.handle.name() == config.name)
            .count()
            + 1;
        self.vms.push(ScenarioVm {
            run,
            id,
            command_line,
            handle,
            gone: false,
        });
        Ok(())
    }

    /// Starts `config` as peer `id` (see [`Scenario::spawn`]) and waits for
    /// its first `ivshmem: ` line, which it returns: by then QEMU has
    /// connected to the server, so the next VM gets the next ID.
    ///
    /// # Errors
    ///
    /// QEMU cannot start, the VM ends or the deadline passes before the
    /// line, or the device gives another ID than `id`.
    pub fn start(
        &mut self,
        config: VmConfig,
        id: Option<u16>,
    ) -> Result<DeviceReport, ScenarioError> {
        let name = config.name.clone();
        self.spawn(config, id)?;
        let what = format!("a line starting with {DEVICE_PREFIX:?}");
        let (_, report) = self.wait_with(&name, 0, &what, DeviceReport::parse)?;
        if let DeviceReport::Found(device) = &report {
            if let Some(id) = id
                && device.id != id
            {
                return Err(self.error(format!(
                    "{name} got peer ID {} instead of {id}: {report}",
                    device.id
                )));
            }
            let index = self.index(&name)?;
            self.vms[index].id = Some(device.id);
        }
        Ok(report)
    }

    fn index(&self, name: &str) -> Result<usize, ScenarioError> {
        self.vms
            .iter()
            .rposition(|vm| vm.handle.name() == name)
            .ok_or_else(|| self.error(format!("no VM {name} was started")))
    }

    /// The current VM called `name`.
    pub fn handle(&self, name: &str) -> Result<&VmHandle, ScenarioError> {
        Ok(&self.vms[self.index(name)?].handle)
    }

    /// The serial lines of VM `name` so far.
    pub fn lines(&self, name: &str) -> Result<Vec<String>, ScenarioError> {
        Ok(self.handle(name)?.lines())
    }

    /// Every line of VM `name` so far that parses as the report `T`, in order.
    pub fn reports<T: FromStr>(&self, name: &str) -> Result<Vec<T>, ScenarioError> {
        Ok(self
            .lines(name)?
            .iter()
            .filter_map(|line| line.parse().ok())
            .collect())
    }

    /// Waits (until the deadline) for a line from index `from` on that
    /// `pick` turns into a value; `what` names it in errors.
    fn wait_with<T>(
        &self,
        name: &str,
        from: usize,
        what: &str,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<(usize, T), ScenarioError> {
        self.handle(name)?
            .wait_for(from, self.deadline_or_never(), what, pick)
            .map_err(|e| self.error(e))
    }

    /// The deadline, or a year from now.
    fn deadline_or_never(&self) -> Instant {
        self.deadline
            .unwrap_or_else(|| Instant::now() + Duration::from_secs(365 * 24 * 3600))
    }

    /// Waits (until the deadline) for the first line of VM `name` from index
    /// `from` on that parses as the report `T`; returns its index and value.
    pub fn wait_for<T: FromStr>(
        &self,
        name: &str,
        from: usize,
    ) -> Result<(usize, T), ScenarioError> {
        self.wait_for_where(name, from, |_: &T| true)
    }

    /// Like [`Scenario::wait_for`], for a report that `accept`s.
    pub fn wait_for_where<T: FromStr>(
        &self,
        name: &str,
        from: usize,
        accept: impl Fn(&T) -> bool,
    ) -> Result<(usize, T), ScenarioError> {
        self.wait_with(name, from, &report_name::<T>(), |line| {
            line.parse().ok().filter(&accept)
        })
    }

    /// Like [`Scenario::wait_for_where`], but gives up after `within` (or at
    /// the deadline) with `Ok(None)`; still fails if the VM ends first.
    /// `pick` sees every line, log lines too.
    pub fn poll_for<T>(
        &self,
        name: &str,
        from: usize,
        within: Duration,
        what: &str,
        pick: impl FnMut(&str) -> Option<T>,
    ) -> Result<Option<(usize, T)>, ScenarioError> {
        let handle = self.handle(name)?;
        let deadline = self.deadline_or_never();
        let until = deadline.min(Instant::now() + within);
        match handle.wait_for(from, until, what, pick) {
            Ok(found) => Ok(Some(found)),
            Err(WaitError::Timeout { .. }) if until < deadline => Ok(None),
            Err(e) => Err(self.error(e)),
        }
    }

    /// Handles the end of VM `index` once: plays "peer gone" on the link.
    fn gone(&mut self, index: usize, outcome: Outcome) {
        let vm = &mut self.vms[index];
        if vm.gone {
            return;
        }
        vm.gone = true;
        let name = vm.handle.name().to_string();
        self.notes.push(format!("{name} ended: {outcome}"));
        if let Some(id) = vm.id
            && let Some(done) = self.link.peer_gone(id)
        {
            self.notes.push(done);
        }
    }

    /// How VM `name` ended, without blocking (`None` while it runs); an end
    /// is handled as by [`Scenario::wait_exit`].
    pub fn outcome(&mut self, name: &str) -> Result<Option<Outcome>, ScenarioError> {
        let index = self.index(name)?;
        let outcome = self.vms[index].handle.try_outcome();
        if let Some(outcome) = outcome {
            self.gone(index, outcome);
        }
        Ok(outcome)
    }

    /// The VMs that have ended since the last call, with their outcomes
    /// (each handled as by [`Scenario::wait_exit`]).
    pub fn reap(&mut self) -> Vec<(String, Outcome)> {
        let mut ended = Vec::new();
        for index in 0..self.vms.len() {
            if self.vms[index].gone {
                continue;
            }
            if let Some(outcome) = self.vms[index].handle.try_outcome() {
                self.gone(index, outcome);
                ended.push((self.vms[index].handle.name().to_string(), outcome));
            }
        }
        ended
    }

    /// Waits until VM `name` exits; at the deadline it is killed and the
    /// outcome is [`Outcome::Timeout`] with the scenario's timeout. Then
    /// "peer gone" is played for it.
    pub fn wait_exit(&mut self, name: &str) -> Result<Outcome, ScenarioError> {
        let index = self.index(name)?;
        let handle = &self.vms[index].handle;
        let outcome = match self.deadline {
            Some(deadline) => match handle.wait(deadline.saturating_duration_since(Instant::now()))
            {
                Outcome::Timeout(_) => Outcome::Timeout(self.timeout.unwrap_or_default()),
                outcome => outcome,
            },
            None => loop {
                if let Some(outcome) = handle.try_outcome() {
                    break outcome;
                }
                std::thread::sleep(Duration::from_millis(10));
            },
        };
        self.gone(index, outcome);
        Ok(outcome)
    }

    /// Kills VM `name` (SIGKILL) and plays "peer gone" for it.
    pub fn kill(&mut self, name: &str) -> Result<Outcome, ScenarioError> {
        let index = self.index(name)?;
        let outcome = self.vms[index].handle.kill();
        self.gone(index, outcome);
        Ok(outcome)
    }

    /// Kills every VM that still runs, playing "peer gone" for each.
    pub fn kill_all(&mut self) {
        for index in 0..self.vms.len() {
            let outcome = self.vms[index].handle.kill();
            self.gone(index, outcome);
        }
    }

    /// Sleeps for `duration`, failing if that would pass the deadline.
    pub fn sleep(&self, duration: Duration) -> Result<(), ScenarioError> {
        if self
            .deadline
            .is_some_and(|deadline| Instant::now() + duration > deadline)
        {
            return Err(self.error(format!("sleeping {duration:?} would pass the deadline")));
        }
        std::thread::sleep(duration);
        Ok(())
    }

    /// The scenario's notes, then every VM's command line, outcome, serial
    /// log and QEMU stderr.
    pub fn context(&self) -> String {
        let mut s = format!("=== scenario {} ===\n", self.name);
        for note in &self.notes {
            s.push_str(&format!("note: {note}\n"));
        }
        for vm in &self.vms {
            let peer = vm.id.map_or("?".to_string(), |id| id.to_string());
            let outcome = vm
                .handle
                .try_outcome()
                .map_or("still running".to_string(), |o| o.to_string());
            s.push_str(&format!(
                "=== VM {} (run {}, peer {peer}) ===\ncommand: {}\noutcome: {outcome}\nstarted {:.2} s ago\n--- serial ---\n{}--- QEMU stderr ---\n{}\n",
                vm.handle.name(),
                vm.run,
                vm.command_line,
                vm.handle.elapsed().as_secs_f64(),
                vm.handle.log(),
                vm.handle.stderr()
            ));
        }
        s
    }

    /// An error saying `message`, with [`Scenario::context`]. A VM whose
    /// output just closed gets a moment to be reaped, so that its outcome
    /// is in the logs.
    pub fn error(&self, message: impl fmt::Display) -> ScenarioError {
        let grace = Instant::now() + Duration::from_millis(500);
        while Instant::now() < grace
            && self
                .vms
                .iter()
                .any(|vm| vm.handle.output_closed() && vm.handle.try_outcome().is_none())
        {
            std::thread::sleep(Duration::from_millis(10));
        }
        ScenarioError {
            message: format!("{}: {message}", self.name),
            logs: self.context(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::shm::PlainRegion;
    use abi::cmdline::{App, CommandLine};
    use abi::report::{LinkDown, LinkUp};

    /// A fake QEMU that prints what the kernel would as peer 1 on a plain
    /// file, then waits to be killed.
    const PEER_1: &str = "\
echo 'ivshmem: ivshmem-v2 emulated on ivshmem-plain at 00:02.0, id 1 of 2, protocol 0x0001, 0 vector(s)'
echo 'link: up (link-ups 1, resets 0)'
exec sleep 30";

    #[test]
    fn a_scenario_runs_named_vms_and_plays_peer_gone() {
        let (dir, template) = crate::vm::fake_vm(PEER_1);
        let region = PlainRegion::create_net(&dir.path().join("shm"), 1 << 16).unwrap();
        let mut scenario = Scenario::new("fake", template, Link::Plain(region));
        scenario.set_timeout(Some(Duration::from_secs(10)));
        let link_app = CommandLine {
            apps: vec![App::Link],
            ..CommandLine::default()
        };
        let report = scenario
            .start(scenario.vm("B").cmdline(link_app.clone()), Some(1))
            .unwrap();
        assert_eq!(report.device().map(|device| device.id), Some(1));
        let (index, up) = scenario.wait_for::<LinkUp>("B", 0).unwrap();
        assert_eq!((index, up.link_ups), (1, 1));
        assert!(
            scenario
                .context()
                .contains("-append 'app=link mode=poll id=1'"),
            "the plain link adds polling and the ID\n{}",
            scenario.context()
        );
        // B's state entry is zeroed when it is killed (no server does it).
        let Link::Plain(region) = scenario.link() else {
            unreachable!()
        };
        let entry = region.layout().state_offset(1);
        region.mapping().store_u32(entry, 4);
        assert_eq!(scenario.kill("B").unwrap(), Outcome::Signal(9));
        let Link::Plain(region) = scenario.link() else {
            unreachable!()
        };
        assert_eq!(region.state(1), 0);
        let error = scenario.wait_for::<LinkDown>("B", 0).unwrap_err();
        assert_eq!(
            error.message,
            "fake: B: exited without printing a LinkDown line"
        );
        assert!(
            error.logs.contains("state of peer 1 zeroed"),
            "{}",
            error.logs
        );
        assert!(
            error.logs.contains("link: up (link-ups 1"),
            "{}",
            error.logs
        );
        // A restart is the current B; a device with another ID is an error.
        let error = scenario
            .start(scenario.vm("B").cmdline(link_app), Some(0))
            .unwrap_err();
        assert!(
            error.message.contains("B got peer ID 1 instead of 0"),
            "{error}"
        );
        assert!(
            error.logs.contains("=== VM B (run 2, peer 0) ==="),
            "{}",
            error.logs
        );
        assert_eq!(scenario.reap(), []);
        scenario.kill_all();
        assert!(scenario.wait_for::<LinkUp>("nobody", 0).is_err());
    }
}
