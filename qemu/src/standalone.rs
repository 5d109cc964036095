//! One VM with a chosen app and link (`cargo run -- vm`), to compose setups
//! by hand:
//!
//! ```sh
//! cargo run -- server --socket /tmp/s.sock &
//! cargo run -- vm --link doorbell:/tmp/s.sock --app server &
//! cargo run -- vm --link doorbell:/tmp/s.sock --app ping,tcp-echo
//! ```
//!
//! On `plain:PATH` the launcher plays "peer gone": when the VM ends (also on
//! Ctrl-C or a timeout) it zeroes the VM's state-table entry, as the server
//! does on the other links.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use abi::cmdline::{App, CommandLine, Mode};

use crate::link::{Link, LinkSpec};
use crate::options::{self, AppList, StartOptions, UsageError, kernel_key};
use crate::scenario::Scenario;
use crate::{Machine, Outcome};

/// The default timeout for apps that end by themselves.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// The `vm` command's options (`cargo run -- vm --help`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct VmOptions {
    /// Apps to run in order, comma-separated: the kernel's `app=` (see
    /// `docs/kernel.md` §2; a wrong name lists every app) [default: the
    /// kernel's, inventory].
    #[arg(long, value_name = "LIST")]
    pub app: Option<AppList>,
    /// doorbell:SOCKET (a `server`), v2:SOCKET (a `server --protocol v2`,
    /// Siemens QEMU), plain:PATH (a shared file, created with a descriptor
    /// page if missing and then kept for other VMs), or none.
    #[arg(long, value_name = "LINK", default_value = "none")]
    pub link: LinkSpec,
    /// Kernel `mode=` [default: poll on plain links, irq otherwise].
    #[arg(long, value_parser = options::mode_parser())]
    pub mode: Option<Mode>,
    /// Peer ID on a plain link (required there; 0 or 1).
    #[arg(long, value_name = "N", value_parser = kernel_key("id", |line| line.id.unwrap_or_default()))]
    pub id: Option<u16>,
    /// Size of the plain file to create (a power of two ≥ 32K) [default: 1M,
    /// or the size of an existing file].
    #[arg(long, value_name = "SIZE", value_parser = options::parse_net_shm_size)]
    pub shm_size: Option<u64>,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    pub machine: Machine,
    /// IP MTU of the link (kernel `mtu=`, 68–65535).
    #[arg(long, value_name = "N", value_parser = kernel_key("mtu", |line| line.mtu.unwrap_or_default()))]
    pub mtu: Option<u16>,
    /// Kill the VM after this many seconds [default: none for the server and
    /// link apps, 120 otherwise].
    #[arg(long, value_name = "SECS", value_parser = options::parse_seconds)]
    pub timeout: Option<Duration>,
    /// Name of the VM; its serial output is prefixed with `[NAME] `.
    #[arg(long, value_name = "NAME")]
    pub name: Option<String>,
    /// The kernel, its command line and QEMU.
    #[command(flatten)]
    pub start: StartOptions,
}

impl VmOptions {
    fn apps(&self) -> &[App] {
        self.app.as_ref().map_or(&[], |apps| &apps.0)
    }

    /// Checks the combination of options (nothing on disk yet).
    pub fn check(&self) -> Result<(), UsageError> {
        let bad = |m: String| Err(UsageError(m));
        match &self.link {
            LinkSpec::Plain(_) => {
                if self.id.is_none() {
                    return bad(
                        "--link plain:PATH needs --id 0 or --id 1 (ivshmem-plain has no ID register)"
                            .into(),
                    );
                }
                if self.mode == Some(Mode::Interrupt) {
                    return bad(
                        "--mode irq is impossible on a plain link (ivshmem-plain has no interrupts); use --mode poll"
                            .into(),
                    );
                }
            }
            other => {
                if self.id.is_some() {
                    return bad(format!(
                        "--id is only for plain links (on {other} the ID comes from the device)"
                    ));
                }
                if self.shm_size.is_some() {
                    return bad(format!(
                        "--shm-size is only for plain links (on {other} the server decides)"
                    ));
                }
            }
        }
        if self.link == LinkSpec::None && self.apps().iter().any(|app| app.needs_link()) {
            return bad(
                "the network apps need a link (--link …); only inventory runs without".into(),
            );
        }
        Ok(())
    }

    /// The timeout: as given, else none for `server`/`link`, else 120 s.
    pub fn effective_timeout(&self) -> Option<Duration> {
        let endless = self.apps().iter().any(|app| app.is_endless());
        match self.timeout {
            Some(t) => Some(t),
            None if endless => None,
            None => Some(DEFAULT_TIMEOUT),
        }
    }

    /// The kernel command line from the options (the link adds `mode=poll`
    /// and `id=` on plain files, `--append` comes on top).
    pub fn kernel_cmdline(&self) -> CommandLine {
        let mut line = CommandLine {
            mtu: self.mtu,
            ..CommandLine::default()
        };
        if let Some(apps) = &self.app {
            line.apps = apps.0.clone();
        }
        if let Some(mode) = self.mode {
            line.mode = mode;
        }
        line
    }
}

/// Checks the options and opens the link: a server socket must exist; a
/// plain file is opened (it must carry a valid ivshmem-net descriptor page)
/// or created. Cheap, so the binary calls it before building the kernel.
pub fn open_link(options: &VmOptions) -> anyhow::Result<Link> {
    options.check()?;
    let created = matches!(&options.link, LinkSpec::Plain(path) if !path.exists());
    let link = Link::open(&options.link, options.shm_size)?;
    if let Link::Plain(region) = &link {
        let what = if created {
            "created for other VMs to share (remove it when done)"
        } else {
            "using"
        };
        eprintln!(
            "eth-ivshmem: {} {what}: {}",
            region.path().display(),
            region.layout()
        );
    }
    Ok(link)
}

/// Runs the VM on `link` (from [`open_link`]) until it ends, the timeout
/// passes, or a signal arrives (the caller has installed
/// [`crate::cleanup::exit_on_signal`]). Exit status: 0 if the guest exits
/// with 33, 128 + signal if interrupted, else 1.
pub fn run(options: &VmOptions, link: Link) -> anyhow::Result<ExitCode> {
    let name = options.name.clone().unwrap_or_else(|| "vm".into());
    let template = options.start.template()?.machine(options.machine);
    let mut scenario = Scenario::new(name.clone(), template, link);
    let timeout = options.start.qemu.timeout(options.effective_timeout());
    let config = options
        .start
        .cmdline
        .configure(scenario.vm(&name), &options.kernel_cmdline())?
        .echo(
            options
                .name
                .as_ref()
                .map_or(String::new(), |n| format!("[{n}] ")),
        );
    let config = options.start.qemu.debug(config);
    eprintln!("eth-ivshmem: {}", config.command_line());
    eprintln!(
        "eth-ivshmem: {name}: {}; Ctrl-C stops it",
        timeout.map_or("no timeout".to_string(), |t| format!(
            "timeout {:.0} s",
            t.as_secs_f64()
        ))
    );

    let _defer = crate::cleanup::DeferSignals::new();
    scenario.spawn(config, options.id)?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut interrupted = None;
    let outcome = loop {
        if let Some(outcome) = scenario.outcome(&name)? {
            break outcome;
        }
        if let Some(signal) = crate::cleanup::pending_signal() {
            interrupted = Some(signal);
            break scenario.kill(&name)?;
        }
        if let (Some(deadline), Some(timeout)) = (deadline, timeout)
            && Instant::now() >= deadline
        {
            scenario.kill(&name)?;
            break Outcome::Timeout(timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let (true, Some(id)) = (scenario.link().is_plain(), options.id) {
        eprintln!("eth-ivshmem: {name}: peer {id} gone (state entry zeroed)");
    }
    let vm = scenario.handle(&name)?;
    let elapsed = vm.elapsed().as_secs_f64();
    if let Some(signal) = interrupted {
        eprintln!("eth-ivshmem: {name}: stopped by signal {signal} after {elapsed:.2} s");
        return Ok(ExitCode::from(128 + signal as u8));
    }
    if outcome.is_success() {
        eprintln!("eth-ivshmem: {name}: PASS: {outcome} after {elapsed:.2} s");
        return Ok(ExitCode::SUCCESS);
    }
    eprintln!("eth-ivshmem: {name}: FAIL: {outcome} after {elapsed:.2} s");
    let lines = vm.lines();
    if !lines.is_empty() {
        eprintln!("eth-ivshmem: {name}: failing lines:");
        for line in crate::summary::failing_lines(&lines) {
            eprintln!("  {line}");
        }
    }
    let stderr = vm.stderr();
    if !stderr.is_empty() {
        eprintln!("eth-ivshmem: {name}: QEMU said: {stderr}");
    }
    Ok(ExitCode::FAILURE)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain(id: Option<u16>) -> VmOptions {
        VmOptions {
            app: Some(AppList(vec![App::Server])),
            link: LinkSpec::Plain("/dev/shm/x".into()),
            id,
            ..VmOptions::default()
        }
    }

    #[test]
    fn option_combinations() {
        assert!(plain(Some(0)).check().is_ok());
        assert!(plain(None).check().unwrap_err().0.contains("--id"));
        let irq = VmOptions {
            mode: Some(Mode::Interrupt),
            ..plain(Some(1))
        };
        assert!(irq.check().unwrap_err().0.contains("--mode irq"));
        let doorbell = VmOptions {
            link: LinkSpec::Doorbell("/s".into()),
            ..plain(None)
        };
        assert!(doorbell.check().is_ok());
        let with_id = VmOptions {
            id: Some(0),
            ..doorbell.clone()
        };
        assert!(with_id.check().unwrap_err().0.contains("only for plain"));
        let with_size = VmOptions {
            shm_size: Some(1 << 20),
            ..doorbell.clone()
        };
        assert!(with_size.check().unwrap_err().0.contains("--shm-size"));
        let unlinked = VmOptions {
            link: LinkSpec::None,
            ..doorbell
        };
        assert!(unlinked.check().unwrap_err().0.contains("need a link"));
    }

    #[test]
    fn cmdline_and_timeout() {
        let options = VmOptions {
            mtu: Some(9000),
            ..plain(Some(1))
        };
        assert_eq!(options.kernel_cmdline().to_string(), "app=server mtu=9000");
        // The plain link adds polling and the ID; --append comes on top.
        let dir = tempfile::tempdir().unwrap();
        let link = Link::open(&LinkSpec::Plain(dir.path().join("shm")), None).unwrap();
        let mut line = options.kernel_cmdline();
        link.configure(&mut line, options.id);
        let append = crate::options::CmdlineOptions {
            append: "log=debug".into(),
            ..crate::options::CmdlineOptions::default()
        };
        append.apply(&mut line).unwrap();
        assert_eq!(
            line.to_string(),
            "log=debug app=server mode=poll id=1 mtu=9000"
        );
        assert_eq!(options.effective_timeout(), None);
        let client = VmOptions {
            app: Some(AppList(vec![App::Ping, App::TcpEcho])),
            link: LinkSpec::Doorbell("/s".into()),
            ..VmOptions::default()
        };
        assert_eq!(client.kernel_cmdline().to_string(), "app=ping,tcp-echo");
        assert_eq!(client.effective_timeout(), Some(DEFAULT_TIMEOUT));
        let inventory = VmOptions::default();
        assert_eq!(inventory.kernel_cmdline().to_string(), "");
        assert_eq!(inventory.effective_timeout(), Some(DEFAULT_TIMEOUT));
        let limited = VmOptions {
            timeout: Some(Duration::from_secs(5)),
            ..plain(Some(0))
        };
        assert_eq!(limited.effective_timeout(), Some(Duration::from_secs(5)));
    }
}
