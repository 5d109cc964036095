//! One VM with an `ivshmem-plain` device (`cargo run -- boot`): it prints
//! the PCI inventory (or what `--append` asks for) and exits; the launcher
//! passes its verdict on.

use std::path::PathBuf;
use std::time::Duration;

use abi::cmdline::CommandLine;

use crate::Machine;
use crate::kernel::Profile;
use crate::link::Link;
use crate::options::{self, CmdlineOptions, QemuOptions};
use crate::scenario::Scenario;
use crate::shm::{PlainRegion, ShmFile};

/// The `boot` command's options (`cargo run -- boot --help`).
#[derive(Debug, Clone, clap::Args)]
pub struct BootOptions {
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    pub machine: Machine,
    /// Size of the ivshmem-plain shared memory (a power of two ≥ 32K, e.g.
    /// 1M, 4G, 0x100000).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = options::parse_net_shm_size)]
    pub shm_size: u64,
    /// Kill the VM after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = options::parse_seconds)]
    pub timeout: Duration,
    /// Guest memory (QEMU -m syntax).
    #[arg(long, value_name = "SIZE", default_value = "128M")]
    pub memory: String,
    /// Kernel build profile.
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    pub profile: Profile,
    /// Boot this ELF instead of building the kernel.
    #[arg(long, value_name = "ELF")]
    pub kernel: Option<PathBuf>,
    /// The kernel command line.
    #[command(flatten)]
    pub cmdline: CmdlineOptions,
    /// QEMU.
    #[command(flatten)]
    pub qemu: QemuOptions,
}

/// Boots the VM and waits for it; returns whether the guest reported
/// success. The serial output goes to stdout, the launcher's words to stderr.
pub fn run(options: &BootOptions) -> anyhow::Result<bool> {
    let kernel = match &options.kernel {
        Some(elf) => elf.clone(),
        None => crate::kernel::build(options.profile)?,
    };
    let template = options
        .qemu
        .template(kernel)?
        .machine(options.machine)
        .memory(options.memory.clone());
    // A descriptor page for two ivshmem-net peers, as the network apps need.
    let region = PlainRegion::create_net(&ShmFile::unique_path("boot"), options.shm_size)?;
    eprintln!("eth-ivshmem: {}", region.layout());
    let mut scenario = Scenario::new("boot", template, Link::Plain(region));
    scenario.set_timeout(options.qemu.timeout(Some(options.timeout)));
    let config = options
        .cmdline
        .configure(scenario.vm("boot"), &CommandLine::default())?
        .echo("");
    let config = options.qemu.debug(config);
    eprintln!("eth-ivshmem: {}", config.command_line());
    scenario.spawn(config, None)?;
    let outcome = scenario.wait_exit("boot")?;
    eprintln!(
        "eth-ivshmem: {outcome} after {:.2} s",
        scenario.handle("boot")?.elapsed().as_secs_f64()
    );
    Ok(outcome.is_success())
}
