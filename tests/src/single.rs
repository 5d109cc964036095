//! One VM booted to its end.

use std::fmt::Debug;
use std::str::FromStr;
use std::time::Duration;

use abi::cmdline::CommandLine;
use qemu::{Link, Machine, Outcome, Scenario, ScenarioError, VmConfig, VmLock};

use crate::ShmFile;

/// How long any one VM (or launcher) run may take before it is killed and
/// the test fails. A boot takes ~0.2 s under TCG.
pub const VM_TIMEOUT: Duration = Duration::from_secs(60);

/// A finished VM run: its verdict and everything it printed.
#[derive(Debug, Clone)]
pub struct Run {
    /// The decoded QEMU exit status (or timeout).
    pub outcome: Outcome,
    /// The serial lines, in order.
    pub lines: Vec<String>,
    /// A cell-harness VM's final cell state (or the unknown value found).
    pub cell_state: Option<Result<abi::jailhouse::CellState, u32>>,
    context: String,
}

impl Run {
    /// The command line, outcome, serial log and QEMU stderr, for messages.
    pub fn context(&self) -> &str {
        &self.context
    }

    /// Every line that parses as the report `T`, in order.
    pub fn reports<T: FromStr>(&self) -> Vec<T> {
        self.lines.iter().filter_map(|l| l.parse().ok()).collect()
    }

    /// The first line that parses as the report `T` and that `accept`s, or a
    /// panic naming it.
    #[track_caller]
    pub fn report_where<T: FromStr>(&self, accept: impl Fn(&T) -> bool) -> T {
        self.reports()
            .into_iter()
            .find(accept)
            .unwrap_or_else(|| panic!("{}\n{}", missing::<T>(), self.context))
    }

    /// The first line that parses as the report `T`, or a panic naming it.
    #[track_caller]
    pub fn report<T: FromStr>(&self) -> T {
        self.report_where(|_| true)
    }

    /// Asserts that no line parses as the report `T`.
    #[track_caller]
    pub fn assert_no<T: FromStr + Debug>(&self) {
        if let Some(found) = self.reports::<T>().first() {
            panic!("unexpected {found:?}\n{}", self.context);
        }
    }

    /// Asserts the run ended with `expected`.
    #[track_caller]
    pub fn assert_outcome(&self, expected: Outcome) {
        assert_eq!(
            self.outcome, expected,
            "expected {expected}\n{}",
            self.context
        );
    }
}

/// What a test says when a report is missing.
pub(crate) fn missing<T>() -> String {
    format!("no line parses as {}", std::any::type_name::<T>())
}

/// Boots the kernel on `machine` with `cmdline`, optionally with an
/// `ivshmem-plain` device on `shm`, and waits for it to end.
///
/// # Panics
///
/// If the lock cannot be taken or QEMU cannot be started.
pub fn boot(machine: Machine, cmdline: CommandLine, shm: Option<&ShmFile>) -> Run {
    run(machine, |config| {
        let config = config.cmdline(cmdline);
        match shm {
            Some(shm) => config.shm(shm.device()),
            None => config,
        }
    })
}

/// Boots the kernel on `machine` with a command line passed as is, to see
/// the kernel reject a bad one.
pub fn boot_unchecked(machine: Machine, words: &str) -> Run {
    run(machine, |config| config.unchecked(words))
}

/// Boots the flat image as a Jailhouse cell in the cell harness on `pc`
/// ([`qemu::cell`]), with `words` as its command line (passed as is) and
/// its configuration changed by `configure`, and waits for it to end.
pub fn boot_cell(words: &str, configure: impl FnOnce(VmConfig) -> VmConfig) -> Run {
    let template = VmConfig::new(crate::cell_image()).cell();
    run_template(template, "e2e-cell", |config| {
        configure(config.unchecked(words))
    })
}

fn run(machine: Machine, configure: impl FnOnce(VmConfig) -> VmConfig) -> Run {
    let template = VmConfig::new(crate::kernel()).machine(machine);
    run_template(template, &format!("e2e-{machine}"), configure)
}

fn run_template(
    template: VmConfig,
    name: &str,
    configure: impl FnOnce(VmConfig) -> VmConfig,
) -> Run {
    let _lock = VmLock::acquire().expect("cannot take the VM lock");
    let machine = template.machine;
    let mut scenario = Scenario::new(format!("boot on {machine}"), template, Link::None);
    scenario.set_timeout(Some(VM_TIMEOUT));
    let config = configure(scenario.vm(name));
    let run = |scenario: &mut Scenario| -> Result<Run, ScenarioError> {
        scenario.spawn(config, None)?;
        let outcome = scenario.wait_exit(name)?;
        Ok(Run {
            outcome,
            cell_state: scenario
                .handle(name)?
                .cell_state()
                .map(|state| state.map_err(|unknown| unknown.0)),
            lines: scenario.lines(name)?,
            context: scenario.context(),
        })
    };
    run(&mut scenario).unwrap_or_else(|e| panic!("{e}\n{}", e.logs))
}
