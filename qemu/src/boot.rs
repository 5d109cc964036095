//! One VM with an `ivshmem-plain` device (`cargo run -- boot`): it prints
//! the PCI inventory (or what `--append` asks for) and exits; the launcher
//! passes its verdict on.

use std::time::Duration;

use abi::cmdline::CommandLine;

use crate::Machine;
use crate::link::Link;
use crate::options::{self, StartOptions};
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
    /// The kernel, its command line and QEMU.
    #[command(flatten)]
    pub start: StartOptions,
}

/// Boots the VM and waits for it; returns whether the guest reported
/// success. The serial output goes to stdout, the launcher's words to stderr.
pub fn run(options: &BootOptions) -> anyhow::Result<bool> {
    let template = options
        .start
        .template()?
        .machine(options.machine)
        .memory(options.memory.clone());
    // A descriptor page for two ivshmem-net peers, as the network apps need.
    let region = PlainRegion::create_net(&ShmFile::unique_path("boot"), options.shm_size)?;
    eprintln!("eth-ivshmem: {}", region.layout());
    let mut scenario = Scenario::new("boot", template, Link::Plain(region));
    scenario.set_timeout(options.start.qemu.timeout(Some(options.timeout)));
    let config = options
        .start
        .cmdline
        .configure(scenario.vm("boot"), &CommandLine::default())?
        .echo("");
    let config = options.start.qemu.debug(config);
    eprintln!("eth-ivshmem: {}", config.command_line());
    scenario.spawn(config, None)?;
    let outcome = scenario.wait_exit("boot")?;
    eprintln!(
        "eth-ivshmem: {outcome} after {:.2} s",
        scenario.handle("boot")?.elapsed().as_secs_f64()
    );
    Ok(outcome.is_success())
}
