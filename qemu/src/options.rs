//! Command-line options shared by the commands that start VMs (`demo`, `vm`,
//! `boot`): the kernel, its command line and QEMU's options
//! ([`StartOptions`]), and value parsers that check kernel values as the
//! kernel does ([`abi::cmdline`]).
//!
//! A bad value is a [`UsageError`]: the launcher reports it like clap's own
//! errors, with exit status 2, before any VM starts.

use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use abi::cmdline::{App, CommandLine, Mode};
use clap::builder::{PossibleValuesParser, TypedValueParser};

use crate::kernel::Profile;
use crate::shm::ShmLayout;
use crate::size::{Size, parse_size};
use crate::vm::VmConfig;

/// A bad option or combination of options, or a bad file named by one.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// What every command that starts VMs takes: the kernel, its command line,
/// and QEMU's options.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct StartOptions {
    /// Boot this ELF instead of building the kernel.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// Kernel build profile (when the kernel is built).
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
    /// Boot as a Jailhouse cell in the cell harness (no firmware, the reset
    /// vector at 0, a communication region; --kernel is then a flat image).
    #[arg(long)]
    pub cell: bool,
    /// The kernel command line.
    #[command(flatten)]
    pub cmdline: CmdlineOptions,
    /// QEMU.
    #[command(flatten)]
    pub qemu: QemuOptions,
}

impl StartOptions {
    /// The kernel ELF (or with `--cell` the flat image): as given, or built
    /// ([`crate::kernel::build`], [`crate::kernel::build_cell_image`]).
    pub fn kernel(&self) -> anyhow::Result<PathBuf> {
        match &self.kernel {
            Some(image) if self.cell => {
                let bytes = std::fs::read(image)
                    .map_err(|e| anyhow::anyhow!("--kernel {}: {e}", image.display()))?;
                crate::kernel::check_cell_image(&bytes).map_err(|e| {
                    anyhow::anyhow!(
                        "--kernel {} is not a cell image (with --cell, give eth-ivshmem.bin from `cell-image`): {e}",
                        image.display()
                    )
                })?;
                Ok(image.clone())
            }
            Some(elf) => Ok(elf.clone()),
            None if self.cell => crate::kernel::build_cell_image(self.profile),
            None => crate::kernel::build(self.profile),
        }
    }

    /// A VM booting [`StartOptions::kernel`] with the QEMU options (see
    /// [`QemuOptions::template`]), as a cell with `--cell`.
    pub fn template(&self) -> anyhow::Result<VmConfig> {
        let config = self.qemu.template(self.kernel()?)?;
        Ok(if self.cell { config.cell() } else { config })
    }
}

/// The QEMU options of every command that starts VMs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct QemuOptions {
    /// QEMU binary, a path or a name in PATH (e.g. a self-built Siemens fork
    /// for v2 links) [default: qemu-system-x86_64, installed if missing].
    #[arg(long, value_name = "PATH", value_parser = parse_executable)]
    pub qemu: Option<PathBuf>,
    /// Firmware and data directory of a self-built QEMU (QEMU -L,
    /// repeatable), e.g. -L /usr/share/seabios -L /usr/share/qemu.
    #[arg(short = 'L', long = "firmware", value_name = "DIR", value_parser = parse_directory)]
    pub firmware: Vec<PathBuf>,
    /// Extra raw QEMU argument (repeatable), e.g. --qemu-arg=-d --qemu-arg=int.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    pub qemu_args: Vec<String>,
    /// QEMU monitor, e.g. unix:/tmp/mon.sock,server,nowait (the demo: VM A's).
    #[arg(long, value_name = "SPEC", value_parser = parse_non_empty)]
    pub monitor: Option<String>,
    /// Wait for gdb on tcp::1234 before running (QEMU -s -S; the demo: VM A);
    /// no timeout then.
    #[arg(long)]
    pub gdb: bool,
}

impl QemuOptions {
    /// The QEMU binary: as given, or `qemu-system-x86_64` (installed if
    /// missing, see [`crate::install`]).
    pub fn binary(&self) -> anyhow::Result<PathBuf> {
        match &self.qemu {
            Some(qemu) => Ok(qemu.clone()),
            None => crate::install::ensure_installed(),
        }
    }

    /// A VM booting `kernel` with these options, except those for the one
    /// VM being debugged ([`QemuOptions::debug`]).
    pub fn template(&self, kernel: PathBuf) -> anyhow::Result<VmConfig> {
        let mut config = VmConfig::new(kernel)
            .qemu_binary(self.binary()?)
            .qemu_args(self.qemu_args.iter().cloned());
        for dir in &self.firmware {
            config = config.firmware(dir);
        }
        Ok(config)
    }

    /// Adds the monitor and gdb options to the VM being debugged.
    pub fn debug(&self, mut config: VmConfig) -> VmConfig {
        if self.monitor.is_some() {
            config.monitor = self.monitor.clone();
        }
        config.gdb |= self.gdb;
        config
    }

    /// `timeout`, or none while waiting for gdb.
    pub fn timeout(&self, timeout: Option<Duration>) -> Option<Duration> {
        timeout.filter(|_| !self.gdb)
    }
}

/// The kernel command line options of every command that starts VMs.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct CmdlineOptions {
    /// Extra kernel command line for every VM, checked before any VM starts
    /// (e.g. "log=debug count=10"; it overrides the options' keys).
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true,
        value_parser = parse_cmdline_words
    )]
    pub append: String,
    /// Extra kernel command line passed as is, unchecked (to see the kernel
    /// reject a bad one).
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true
    )]
    pub raw_append: String,
}

impl CmdlineOptions {
    /// Layers `--append` over `cmdline` (the keys the command's options set).
    pub fn apply(&self, cmdline: &mut CommandLine) -> Result<(), UsageError> {
        cmdline
            .apply(&self.append)
            .map_err(|e| UsageError(format!("--append {:?}: {e}", self.append)))
    }

    /// A VM with `cmdline` plus these options.
    pub fn configure(
        &self,
        config: VmConfig,
        cmdline: &CommandLine,
    ) -> Result<VmConfig, UsageError> {
        let mut cmdline = cmdline.clone();
        self.apply(&mut cmdline)?;
        Ok(config.cmdline(cmdline).unchecked(&self.raw_append))
    }
}

/// Checks `--append` words as the kernel does.
fn parse_cmdline_words(words: &str) -> Result<String, String> {
    CommandLine::parse(words).map_err(|e| e.to_string())?;
    Ok(words.to_string())
}

/// A clap value parser for the kernel's `key`: checks the value as the
/// kernel does and returns what it sets, e.g. `kernel_key("count", |l| l.count)`.
pub fn kernel_key<T: 'static>(
    key: &'static str,
    get: fn(&CommandLine) -> T,
) -> impl Fn(&str) -> Result<T, String> + Clone + Send + Sync + 'static {
    move |value| {
        let mut line = CommandLine::default();
        line.set(key, value).map_err(|e| e.to_string())?;
        Ok(get(&line))
    }
}

/// A clap value parser for the kernel's `mode=` that lists the modes.
pub fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new(Mode::NAMES.map(|(name, _)| name))
        .try_map(|name| name.parse::<Mode>())
}

/// The apps of `app=`, in order (`ping,tcp-echo`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppList(pub Vec<App>);

impl FromStr for AppList {
    type Err = String;

    fn from_str(list: &str) -> Result<AppList, String> {
        let apps = list
            .split(',')
            .map(|name| {
                name.parse::<App>().map_err(|_| {
                    let known: Vec<&str> = App::NAMES.iter().map(|(name, _)| *name).collect();
                    format!(
                        "unknown app {name:?} (one or more of {}, comma-separated)",
                        known.join(", ")
                    )
                })
            })
            .collect::<Result<Vec<App>, String>>()?;
        if apps.contains(&App::Link) && apps.len() > 1 {
            return Err("the link app runs alone".into());
        }
        Ok(AppList(apps))
    }
}

/// Parses a positive number of seconds.
pub fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("timeout must be positive, not {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a size of shared memory for QEMU's BAR: a power of two ≥ 4 KiB.
pub fn parse_bar_size(s: &str) -> Result<u64, String> {
    let size = parse_size(s).map_err(|e| e.to_string())?;
    if !size.is_power_of_two() || size < 0x1000 {
        return Err(format!(
            "{s} is not a power of two of at least 4K (QEMU's BAR needs a power of two)"
        ));
    }
    Ok(size)
}

/// Parses a size of shared memory for an ivshmem-net link: a power of two
/// that holds the descriptor page, the state table and two output sections.
pub fn parse_net_shm_size(s: &str) -> Result<u64, String> {
    let size = parse_bar_size(s)?;
    ShmLayout::new(size, true, 2, 0, crate::shm::PROTOCOL_NET, None).map_err(|e| {
        format!(
            "{e} (ivshmem-net needs at least {})",
            Size(ShmLayout::net_minimum(true))
        )
    })?;
    Ok(size)
}

/// Parses the TCP echo size: what the kernel's `bytes=` takes, written as
/// any size (`16M`, `0x100000`, `64KiB`).
pub fn parse_echo_bytes(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s).map_err(|e| e.to_string())?;
    kernel_key("bytes", |line| line.bytes)(&bytes.to_string())
        .map_err(|e| format!("{s} is out of range ({e})"))
}

/// Parses any byte count.
pub fn parse_any_size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

/// Parses a 16-bit number, decimal or `0x` hexadecimal.
pub fn parse_u16(s: &str) -> Result<u16, String> {
    let value = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    value.map_err(|_| format!("{s:?} is not a 16-bit number (e.g. 0x0001)"))
}

/// Accepts an executable file, or the name of one in `PATH`.
fn parse_executable(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if s.contains('/') {
        if path.is_file() {
            return Ok(path);
        }
        return Err(format!("{s} is not a file"));
    }
    crate::install::find_in_path(s).ok_or_else(|| format!("{s} is not in PATH"))
}

/// Accepts a file to be written: its directory must exist, and it must not
/// be a directory itself.
pub fn parse_output_file(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if s.is_empty() {
        return Err("must not be empty".into());
    }
    if path.is_dir() {
        return Err(format!("{s} is a directory"));
    }
    match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() && !dir.is_dir() => {
            Err(format!("{} is not a directory", dir.display()))
        }
        _ => Ok(path),
    }
}

/// Accepts an existing directory.
fn parse_directory(s: &str) -> Result<PathBuf, String> {
    let path = PathBuf::from(s);
    if path.is_dir() {
        Ok(path)
    } else {
        Err(format!("{s} is not a directory"))
    }
}

fn parse_non_empty(s: &str) -> Result<String, String> {
    if s.is_empty() {
        Err("must not be empty".into())
    } else {
        Ok(s.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kernel_values_are_checked_as_the_kernel_does() {
        let count = kernel_key("count", |line| line.count);
        assert_eq!(count("65535"), Ok(65535));
        assert!(count("0").unwrap_err().contains("from 1 to 65535"));
        let mtu = kernel_key("mtu", |line| line.mtu);
        assert_eq!(mtu("9000"), Ok(Some(9000)));
        assert!(mtu("67").is_err());
        assert_eq!(parse_echo_bytes("0x100000"), Ok(1 << 20));
        assert_eq!(parse_echo_bytes("4G"), Ok(4 << 30));
        assert!(parse_echo_bytes("5G").unwrap_err().contains("out of range"));
        assert!(parse_echo_bytes("0").unwrap_err().contains("out of range"));
        assert!(parse_cmdline_words("log=debug count=3").is_ok());
        assert!(
            parse_cmdline_words("bogus=1")
                .unwrap_err()
                .contains("bogus")
        );
    }

    #[test]
    fn apps_are_checked() {
        assert_eq!(
            "ping,tcp-echo".parse(),
            Ok(AppList(vec![App::Ping, App::TcpEcho]))
        );
        assert!("ping,,tcp-echo".parse::<AppList>().is_err());
        let err = "pong".parse::<AppList>().unwrap_err();
        assert!(err.contains("unknown app \"pong\""), "{err}");
        assert!(err.contains("inventory, link, server"), "{err}");
        assert!("link,server".parse::<AppList>().is_err());
        assert!("link".parse::<AppList>().is_ok());
    }

    #[test]
    fn append_layers_over_the_options() {
        let options = CmdlineOptions {
            append: "mtu=9000 log=debug".into(),
            raw_append: "bogus=1".into(),
        };
        let line = CommandLine {
            mtu: Some(1500),
            ..CommandLine::default()
        };
        let config = options.configure(VmConfig::new("/k"), &line).unwrap();
        assert_eq!(config.kernel_cmdline(), "log=debug mtu=9000 bogus=1");
    }

    #[test]
    fn qemu_options_shape_the_vm() {
        let options = QemuOptions {
            qemu: Some("/opt/fork/bin/qemu-system-x86_64".into()),
            firmware: vec!["/opt/fork/share".into()],
            qemu_args: vec!["-d".into(), "int".into()],
            monitor: Some("stdio".into()),
            gdb: true,
        };
        let config = options.template("/k".into()).unwrap();
        assert_eq!(
            config.qemu,
            PathBuf::from("/opt/fork/bin/qemu-system-x86_64")
        );
        assert_eq!(config.firmware, [PathBuf::from("/opt/fork/share")]);
        assert_eq!(config.extra_args, ["-d", "int"]);
        assert!(
            config.monitor.is_none() && !config.gdb,
            "only the debugged VM"
        );
        let debugged = options.debug(config);
        assert_eq!(debugged.monitor.as_deref(), Some("stdio"));
        assert!(debugged.gdb);
        assert_eq!(options.timeout(Some(Duration::from_secs(1))), None);
        assert!(parse_directory("/nonexistent-dir").is_err());
        assert!(parse_output_file("/nonexistent-dir/x.pcap").is_err());
        assert!(parse_output_file("/").is_err());
        assert!(parse_output_file("").is_err());
        assert!(parse_output_file("x.pcap").is_ok());
        assert!(parse_output_file("/tmp/x.pcap").is_ok());
        assert!(parse_executable("/nonexistent/qemu").is_err());
        assert!(parse_executable("sh").is_ok());
    }
}
