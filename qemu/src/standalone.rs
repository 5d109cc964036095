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

use std::fmt;
use std::path::PathBuf;
use std::process::ExitCode;
use std::str::FromStr;
use std::time::{Duration, Instant};

use crate::shm::{self, PlainRegion};
use crate::{Machine, Mode, Outcome, ShmDevice, VmConfig};

/// The kernel's apps (`app=` accepts a comma-separated list of them).
pub const APPS: [&str; 6] = [
    "inventory",
    "link",
    "server",
    "ping",
    "tcp-echo",
    "udp-echo",
];

/// Apps that run until stopped (no default timeout).
const ENDLESS_APPS: [&str; 2] = ["link", "server"];

/// The default timeout for apps that end by themselves.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);

/// Default size of a plain file the launcher creates.
pub const DEFAULT_PLAIN_SIZE: u64 = 1 << 20;

/// What the VM is attached to.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LinkSpec {
    /// `doorbell:SOCKET`: `ivshmem-doorbell` on a v1 server.
    Doorbell(PathBuf),
    /// `v2:SOCKET`: the Siemens `ivshmem` device on a v2 server.
    V2(PathBuf),
    /// `plain:PATH`: `ivshmem-plain` on a shared file with a descriptor page.
    Plain(PathBuf),
    /// `none`: no shared memory.
    #[default]
    None,
}

impl FromStr for LinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<LinkSpec, String> {
        if s == "none" {
            return Ok(LinkSpec::None);
        }
        let (kind, path) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not doorbell:SOCKET, v2:SOCKET, plain:PATH or none")
        })?;
        if path.is_empty() {
            return Err(format!("{s:?} names no path after \"{kind}:\""));
        }
        let path = PathBuf::from(path);
        match kind {
            "doorbell" => Ok(LinkSpec::Doorbell(path)),
            "v2" => Ok(LinkSpec::V2(path)),
            "plain" => Ok(LinkSpec::Plain(path)),
            _ => Err(format!(
                "unknown link kind {kind:?} (doorbell:SOCKET, v2:SOCKET, plain:PATH or none)"
            )),
        }
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkSpec::Doorbell(p) => write!(f, "doorbell:{}", p.display()),
            LinkSpec::V2(p) => write!(f, "v2:{}", p.display()),
            LinkSpec::Plain(p) => write!(f, "plain:{}", p.display()),
            LinkSpec::None => f.write_str("none"),
        }
    }
}

/// Parses and checks an `app=` list (`ping,tcp-echo`).
pub fn parse_apps(s: &str) -> Result<String, String> {
    let apps: Vec<&str> = s.split(',').collect();
    for app in &apps {
        if !APPS.contains(app) {
            return Err(format!(
                "unknown app {app:?} (one or more of {}, comma-separated)",
                APPS.join(", ")
            ));
        }
    }
    if apps.contains(&"link") && apps.len() > 1 {
        return Err("the link app runs alone".into());
    }
    Ok(s.to_string())
}

/// A bad combination of options or a bad file named by one: the binary
/// reports it like clap's own errors (exit status 2).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// Everything `vm` needs (the CLI's options, with QEMU and the kernel found).
#[derive(Debug, Clone, Default)]
pub struct VmOptions {
    /// `app=` (checked by [`parse_apps`]); `None`: the kernel's default.
    pub app: Option<String>,
    /// The link.
    pub link: LinkSpec,
    /// `mode=`; `None`: `poll` on plain links, else the kernel's default (irq).
    pub mode: Option<Mode>,
    /// `id=`, required on (and only allowed on) plain links.
    pub id: Option<u16>,
    /// Size of a plain file to create (or the size an existing one must have).
    pub shm_size: Option<u64>,
    /// QEMU machine type.
    pub machine: Machine,
    /// `mtu=`.
    pub mtu: Option<u16>,
    /// Extra kernel command line.
    pub append: String,
    /// Kill the VM after this long (`None`: see [`VmOptions::effective_timeout`]).
    pub timeout: Option<Duration>,
    /// Name (output prefix `[NAME] `; no prefix if `None`).
    pub name: Option<String>,
    /// The QEMU binary.
    pub qemu: PathBuf,
    /// The kernel ELF.
    pub kernel: PathBuf,
}

impl VmOptions {
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
                if self.mode == Some(Mode::Irq) {
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
        if let LinkSpec::None = self.link
            && self
                .app
                .as_deref()
                .is_some_and(|apps| apps.split(',').any(|a| a != "inventory"))
        {
            return bad(
                "the network apps need a link (--link …); only inventory runs without".into(),
            );
        }
        Ok(())
    }

    /// The timeout: as given, else none for `server`/`link`, else 120 s.
    pub fn effective_timeout(&self) -> Option<Duration> {
        let endless = self
            .app
            .as_deref()
            .is_some_and(|apps| apps.split(',').any(|a| ENDLESS_APPS.contains(&a)));
        match self.timeout {
            Some(t) => Some(t),
            None if endless => None,
            None => Some(DEFAULT_TIMEOUT),
        }
    }

    /// The kernel command line.
    pub fn cmdline(&self) -> String {
        let mut words = Vec::new();
        if let Some(app) = &self.app {
            words.push(format!("app={app}"));
        }
        let mode = match (&self.link, self.mode) {
            (_, Some(mode)) => Some(mode),
            (LinkSpec::Plain(_), None) => Some(Mode::Poll),
            _ => None,
        };
        if let Some(mode) = mode {
            words.push(format!("mode={mode}"));
        }
        if let Some(id) = self.id {
            words.push(format!("id={id}"));
        }
        if let Some(mtu) = self.mtu {
            words.push(format!("mtu={mtu}"));
        }
        let append = self.append.trim();
        if !append.is_empty() {
            words.push(append.to_string());
        }
        words.join(" ")
    }
}

/// Opens (or creates, with a descriptor page) the plain file.
fn plain_region(path: &std::path::Path, size: Option<u64>) -> anyhow::Result<PlainRegion> {
    if path.exists() {
        let region = PlainRegion::open(path)
            .map_err(|e| UsageError(format!("--link plain:{}: {e:#}", path.display())))?;
        if let Some(size) = size
            && size != region.layout().shm_size
        {
            return Err(UsageError(format!(
                "--shm-size {}: {} already exists with {} bytes",
                crate::size::Size(size),
                path.display(),
                crate::size::Size(region.layout().shm_size)
            ))
            .into());
        }
        if region.layout().protocol != shm::PROTOCOL_NET || region.layout().max_peers() != 2 {
            return Err(UsageError(format!(
                "--link plain:{}: not an ivshmem-net region ({})",
                path.display(),
                region.layout()
            ))
            .into());
        }
        eprintln!("eth-ivshmem: using {}: {}", path.display(), region.layout());
        Ok(region)
    } else {
        let size = size.unwrap_or(DEFAULT_PLAIN_SIZE);
        let mut region = PlainRegion::create_net(path, size)?;
        region.persist();
        eprintln!(
            "eth-ivshmem: created {} for other VMs to share (remove it when done): {}",
            path.display(),
            region.layout()
        );
        Ok(region)
    }
}

/// The VM's link, checked and ready: the device to attach and, on a plain
/// link, the region to play "peer gone" on.
#[derive(Debug)]
pub struct OpenLink {
    device: Option<ShmDevice>,
    region: Option<PlainRegion>,
}

/// Checks the options and the link: a server socket must exist; a plain file
/// is opened (it must carry a valid ivshmem-net descriptor page) or created.
/// Cheap, so the binary calls it before building the kernel.
pub fn open_link(options: &VmOptions) -> anyhow::Result<OpenLink> {
    options.check()?;
    match &options.link {
        LinkSpec::Doorbell(socket) | LinkSpec::V2(socket) => {
            if !socket.exists() {
                return Err(UsageError(format!(
                    "--link {}: {} does not exist (start a server: cargo run -- server --socket {}{})",
                    options.link,
                    socket.display(),
                    socket.display(),
                    if matches!(options.link, LinkSpec::V2(_)) {
                        " --protocol v2"
                    } else {
                        ""
                    }
                ))
                .into());
            }
            let device = match &options.link {
                LinkSpec::V2(_) => ShmDevice::V2 {
                    socket: socket.clone(),
                },
                _ => ShmDevice::Doorbell {
                    socket: socket.clone(),
                    vectors: 2,
                },
            };
            Ok(OpenLink {
                device: Some(device),
                region: None,
            })
        }
        LinkSpec::Plain(path) => {
            let region = plain_region(path, options.shm_size)?;
            Ok(OpenLink {
                device: Some(region.device()),
                region: Some(region),
            })
        }
        LinkSpec::None => Ok(OpenLink {
            device: None,
            region: None,
        }),
    }
}

/// Runs the VM on `link` (from [`open_link`]) until it ends, the timeout
/// passes, or a signal arrives (the caller has installed
/// [`crate::cleanup::exit_on_signal`]). Exit status: 0 if the guest exits
/// with 33, 128 + signal if interrupted, else 1.
pub fn run(options: &VmOptions, link: OpenLink) -> anyhow::Result<ExitCode> {
    let OpenLink { device, region } = link;
    let name = options.name.clone().unwrap_or_else(|| "vm".into());
    let mut config = VmConfig::new(&options.kernel)
        .name(&name)
        .qemu_binary(&options.qemu)
        .machine(options.machine)
        .cmdline(options.cmdline())
        .echo(
            options
                .name
                .as_ref()
                .map_or(String::new(), |n| format!("[{n}] ")),
        );
    if let Some(device) = device {
        config = config.shm(device);
    }
    let timeout = options.effective_timeout();
    eprintln!("eth-ivshmem: {}", config.command_line());
    eprintln!(
        "eth-ivshmem: {name}: {}; Ctrl-C stops it",
        timeout.map_or("no timeout".to_string(), |t| format!(
            "timeout {:.0} s",
            t.as_secs_f64()
        ))
    );

    let _defer = crate::cleanup::DeferSignals::new();
    let vm = config.spawn()?;
    let deadline = timeout.map(|t| Instant::now() + t);
    let mut interrupted = None;
    let outcome = loop {
        if let Some(outcome) = vm.try_outcome() {
            break outcome;
        }
        if let Some(signal) = crate::cleanup::pending_signal() {
            interrupted = Some(signal);
            break vm.kill();
        }
        if let (Some(deadline), Some(timeout)) = (deadline, timeout)
            && Instant::now() >= deadline
        {
            vm.kill();
            break Outcome::Timeout(timeout);
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    if let (Some(region), Some(id)) = (&region, options.id) {
        region.zero_state(id);
        eprintln!("eth-ivshmem: {name}: peer {id} gone (state entry zeroed)");
    }
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

    #[test]
    fn link_specs_parse() {
        assert_eq!("none".parse(), Ok(LinkSpec::None));
        assert_eq!(
            "doorbell:/tmp/s.sock".parse(),
            Ok(LinkSpec::Doorbell("/tmp/s.sock".into()))
        );
        assert_eq!("v2:s".parse(), Ok(LinkSpec::V2("s".into())));
        assert_eq!(
            "plain:/dev/shm/x:y".parse(),
            Ok(LinkSpec::Plain("/dev/shm/x:y".into()))
        );
        for bad in ["", "plain:", "doorbell", "tcp:1.2.3.4", "None"] {
            assert!(bad.parse::<LinkSpec>().is_err(), "{bad:?}");
        }
        assert_eq!(LinkSpec::Plain("/a".into()).to_string(), "plain:/a");
    }

    #[test]
    fn apps_are_checked() {
        assert_eq!(parse_apps("ping,tcp-echo").as_deref(), Ok("ping,tcp-echo"));
        assert!(parse_apps("ping,,tcp-echo").is_err());
        assert!(parse_apps("pong").is_err());
        assert!(parse_apps("link,server").is_err());
        assert!(parse_apps("link").is_ok());
    }

    fn plain(id: Option<u16>) -> VmOptions {
        VmOptions {
            app: Some("server".into()),
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
            mode: Some(Mode::Irq),
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
            append: " log=debug ".into(),
            ..plain(Some(1))
        };
        assert_eq!(
            options.cmdline(),
            "app=server mode=poll id=1 mtu=9000 log=debug"
        );
        assert_eq!(options.effective_timeout(), None);
        let client = VmOptions {
            app: Some("ping,tcp-echo".into()),
            link: LinkSpec::Doorbell("/s".into()),
            ..VmOptions::default()
        };
        assert_eq!(client.cmdline(), "app=ping,tcp-echo");
        assert_eq!(client.effective_timeout(), Some(DEFAULT_TIMEOUT));
        let inventory = VmOptions::default();
        assert_eq!(inventory.cmdline(), "");
        assert_eq!(inventory.effective_timeout(), Some(DEFAULT_TIMEOUT));
        let limited = VmOptions {
            timeout: Some(Duration::from_secs(5)),
            ..plain(Some(0))
        };
        assert_eq!(limited.effective_timeout(), Some(Duration::from_secs(5)));
    }
}
