//! `eth-ivshmem`: the launcher. Builds the kernel, runs VMs, serves ivshmem.
//!
//! `cargo run -- --help` lists the commands; a bare `cargo run` runs `demo`.

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use host::demo::DemoOptions;
use host::kernel::Profile;
use host::server::{Protocol, Server, ServerConfig, V1Disconnect};
use host::shm::{self, Layout};
use host::size::{Size, parse_size};
use host::standalone::{LinkSpec, UsageError, VmOptions};
use host::{Machine, Mode, ShmDevice, VmConfig};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

/// Runs eth-ivshmem unikernel VMs in QEMU and serves their shared memory.
#[derive(Debug, Parser)]
#[command(name = "eth-ivshmem", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Option<Cmd>,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The two-VM demo (the default): VM B serves, VM A pings it and runs a
    /// TCP echo through it, then a summary (link-up time, RTT, throughput).
    Demo(DemoArgs),
    /// Start ONE VM with a chosen app and link, to compose setups by hand
    /// (e.g. with `server`, or two `vm`s on one plain file).
    Vm(VmArgs),
    /// Boot one VM with an ivshmem-plain device and print its serial output.
    Boot(BootArgs),
    /// Run an ivshmem server (v1: QEMU's ivshmem-doorbell; v2: the Siemens ivshmem device).
    Server(ServerArgs),
    /// Join a link as one of its two peers and move its Ethernet frames to
    /// and from a Linux TAP device (needs root or CAP_NET_ADMIN).
    Bridge(BridgeArgs),
}

/// Parses a shared-memory size for QEMU's BAR: a power of two ≥ 4 KiB.
fn parse_bar_size(s: &str) -> Result<u64, String> {
    let size = parse_size(s).map_err(|e| e.to_string())?;
    if !size.is_power_of_two() || size < 0x1000 {
        return Err(format!(
            "{s} is not a power of two of at least 4K (QEMU's BAR needs a power of two)"
        ));
    }
    Ok(size)
}

fn parse_seconds(s: &str) -> Result<Duration, String> {
    let secs: f64 = s
        .parse()
        .map_err(|_| format!("{s:?} is not a number of seconds"))?;
    if !(secs > 0.0 && secs.is_finite()) {
        return Err(format!("timeout must be positive, not {s}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// Parses a shared-memory size for an ivshmem-net link: a power of two that
/// holds the descriptor page, the state table and two output sections.
fn parse_net_shm_size(s: &str) -> Result<u64, String> {
    let size = parse_bar_size(s)?;
    Layout::new(size, true, 2, 0, shm::PROTOCOL_NET, None)
        .map_err(|e| format!("{e} (ivshmem-net needs at least 32K)"))?;
    Ok(size)
}

/// Parses the TCP echo size: 1 byte to 4G (what the kernel accepts).
fn parse_echo_bytes(s: &str) -> Result<u64, String> {
    let bytes = parse_size(s).map_err(|e| e.to_string())?;
    if !(1..=1 << 32).contains(&bytes) {
        return Err(format!("{s} is out of range 1..=4G"));
    }
    Ok(bytes)
}

#[derive(Debug, Parser)]
struct DemoArgs {
    /// irq: ivshmem-doorbell on our server (MSI-X doorbells); poll:
    /// ivshmem-plain on a shared file, no server, both VMs poll.
    #[arg(long, value_enum, default_value_t = Mode::Irq)]
    mode: Mode,
    /// QEMU machine type of both VMs.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    machine: Machine,
    /// IP MTU of the link (kernel `mtu=`, 68–65535) [default: the kernel's, 1500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(68..))]
    mtu: Option<u16>,
    /// Shared memory size (a power of two ≥ 32K).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_net_shm_size)]
    shm_size: u64,
    /// Bytes sent through the TCP echo (e.g. 64K, 16M; up to 4G).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_echo_bytes)]
    bytes: u64,
    /// Number of pings (1–65535, the ICMP sequence space).
    #[arg(long, value_name = "N", default_value_t = 4,
          value_parser = clap::value_parser!(u32).range(1..=65_535))]
    count: u32,
    /// Limit for the whole demo in seconds, from the first VM's start to the
    /// summary (the kernel build is not counted; with --keep the VMs then run
    /// on until Ctrl-C).
    #[arg(long, value_name = "SECS", default_value = "120", value_parser = parse_seconds)]
    timeout: Duration,
    /// Keep both VMs running after the summary (A then serves echo too) and
    /// print their QEMU monitor sockets; Ctrl-C stops them.
    #[arg(long)]
    keep: bool,
    /// Extra kernel command line for both VMs (e.g. "log=debug").
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true
    )]
    append: String,
}

#[derive(Debug, Args)]
struct VmArgs {
    /// Apps to run, comma-separated: inventory, link, server, ping, tcp-echo,
    /// udp-echo [default: the kernel's, inventory].
    #[arg(long, value_name = "LIST", value_parser = host::standalone::parse_apps)]
    app: Option<String>,
    /// doorbell:SOCKET (a `server`), v2:SOCKET (a `server --protocol v2`,
    /// Siemens QEMU), plain:PATH (a shared file, created with a descriptor
    /// page if missing and then kept for other VMs), or none.
    #[arg(long, value_name = "LINK", default_value = "none", value_parser = clap::builder::ValueParser::new(str::parse::<LinkSpec>))]
    link: LinkSpec,
    /// Kernel `mode=` [default: poll on plain links, irq otherwise].
    #[arg(long, value_enum)]
    mode: Option<Mode>,
    /// Peer ID on a plain link (required there; 0 or 1).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=1))]
    id: Option<u32>,
    /// Size of the plain file to create (a power of two ≥ 32K) [default: 1M,
    /// or the size of an existing file].
    #[arg(long, value_name = "SIZE", value_parser = parse_net_shm_size)]
    shm_size: Option<u64>,
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    machine: Machine,
    /// IP MTU of the link (kernel `mtu=`, 68–65535).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(68..))]
    mtu: Option<u16>,
    /// Extra kernel command line (e.g. "count=10 log=debug").
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true
    )]
    append: String,
    /// Kill the VM after this many seconds [default: none for the server and
    /// link apps, 120 otherwise].
    #[arg(long, value_name = "SECS", value_parser = parse_seconds)]
    timeout: Option<Duration>,
    /// Name of the VM; its serial output is prefixed with `[NAME] `.
    #[arg(long, value_name = "NAME")]
    name: Option<String>,
    /// QEMU binary (e.g. a self-built Siemens fork for v2 links) [default:
    /// qemu-system-x86_64, installed if missing].
    #[arg(long, value_name = "PATH")]
    qemu: Option<PathBuf>,
    /// Boot this ELF instead of building the kernel.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct BootArgs {
    /// QEMU machine type.
    #[arg(long, value_enum, default_value_t = Machine::Pc)]
    machine: Machine,
    /// Size of the ivshmem-plain shared memory (power of two, e.g. 1M, 4G, 0x100000).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_bar_size)]
    shm_size: u64,
    /// Extra kernel command line (e.g. "log=debug selftest=shm").
    #[arg(
        long,
        value_name = "CMDLINE",
        default_value = "",
        allow_hyphen_values = true
    )]
    append: String,
    /// Kill the VM after this many seconds.
    #[arg(long, value_name = "SECS", default_value = "60", value_parser = parse_seconds)]
    timeout: Duration,
    /// Guest memory (QEMU -m syntax).
    #[arg(long, value_name = "SIZE", default_value = "128M")]
    memory: String,
    /// Kernel build profile.
    #[arg(long, value_enum, default_value_t = Profile::Release)]
    profile: Profile,
    /// Boot this ELF instead of building the kernel.
    #[arg(long, value_name = "ELF")]
    kernel: Option<PathBuf>,
    /// Extra raw QEMU argument (repeatable), e.g. --qemu-arg=-d --qemu-arg=int.
    #[arg(long = "qemu-arg", value_name = "ARG", allow_hyphen_values = true)]
    qemu_args: Vec<String>,
    /// Wait for gdb on tcp::1234 before running (QEMU -s -S); disables the timeout.
    #[arg(long)]
    gdb: bool,
    /// QEMU monitor, e.g. unix:/tmp/mon.sock,server,nowait.
    #[arg(long, value_name = "SPEC")]
    monitor: Option<String>,
}

impl Default for BootArgs {
    fn default() -> Self {
        BootArgs {
            machine: Machine::Pc,
            shm_size: 1 << 20,
            append: String::new(),
            timeout: Duration::from_secs(60),
            memory: "128M".into(),
            profile: Profile::Release,
            kernel: None,
            qemu_args: Vec::new(),
            gdb: false,
            monitor: None,
        }
    }
}

fn parse_u16(s: &str) -> Result<u16, String> {
    let value = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u16::from_str_radix(hex, 16),
        None => s.parse(),
    };
    value.map_err(|_| format!("{s:?} is not a 16-bit number (e.g. 0x0001)"))
}

fn parse_any_size(s: &str) -> Result<u64, String> {
    parse_size(s).map_err(|e| e.to_string())
}

#[derive(Debug, Args)]
struct ServerArgs {
    /// UNIX socket to listen on.
    #[arg(long, value_name = "PATH", default_value = "/tmp/eth-ivshmem.sock")]
    socket: PathBuf,
    /// v1: stock QEMU ivshmem-doorbell (with a descriptor page); v2: the Siemens ivshmem device.
    #[arg(long, value_enum, default_value_t = Protocol::V1)]
    protocol: Protocol,
    /// Total shared memory, rounded up to a power of two (e.g. 1M, 0x100000).
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = parse_any_size)]
    size: u64,
    /// Maximum number of peers (2..=16; ivshmem-net needs exactly 2).
    #[arg(long, value_name = "N", default_value_t = 2)]
    peers: u32,
    /// Interrupt vectors per peer (1..=64).
    #[arg(long, value_name = "N", default_value_t = 2)]
    vectors: u32,
    /// Size of ONE output section [default: the largest page multiple that fits].
    #[arg(long, value_name = "SIZE", value_parser = parse_any_size)]
    output_section: Option<u64>,
    /// The 16-bit ivshmem-v2 protocol ID advertised (0x0001 = ivshmem-net).
    #[arg(long, value_name = "ID", default_value = "0x0001", value_parser = parse_u16)]
    net_protocol: u16,
    /// v1: what QEMU is told when a peer leaves. `quiet` (safe with QEMU's
    /// ivshmem-doorbell, which corrupts its heap when a reused peer ID leaves
    /// again) or `notify` (the bare-ID message of the v1 protocol).
    #[arg(long, value_enum, default_value_t = V1Disconnect::Quiet)]
    v1_disconnect: V1Disconnect,
    /// Do not log connects and disconnects.
    #[arg(long, short)]
    quiet: bool,
}

#[derive(Debug, Args)]
struct BridgeArgs {
    /// doorbell:SOCKET (a `server`; the server assigns our ID) or plain:PATH
    /// (a shared file with a descriptor page, as `vm --link plain:PATH`
    /// makes it; needs --id).
    #[arg(long, value_name = "LINK", value_parser = clap::builder::ValueParser::new(str::parse::<host::bridge::BridgeLink>))]
    link: host::bridge::BridgeLink,
    /// The TAP device: created (up, with --mtu) and removed on exit if no
    /// interface has the name; an existing TAP (e.g. `ip tuntap add mode tap
    /// NAME`) is used as it is and left in place.
    #[arg(long, value_name = "NAME")]
    tap: String,
    /// Our peer ID on a plain link (0 or 1; the VM takes the other).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=1))]
    id: Option<u16>,
    /// MTU of a TAP the bridge creates (68 up to the link's largest)
    /// [default: 1500].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    mtu: Option<u32>,
    /// Write every frame that crosses the link to this pcap file (tcpdump -r).
    #[arg(long, value_name = "FILE")]
    pcap: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let command = match cli.command {
        Some(command) => command,
        None => Cli::parse_from(["eth-ivshmem", "demo"])
            .command
            .expect("demo is a command"),
    };
    let result = match command {
        Cmd::Demo(args) => demo(args).map(verdict),
        Cmd::Vm(args) => vm(args),
        Cmd::Boot(args) => boot(args).map(verdict),
        Cmd::Server(args) => server(args).map(verdict),
        Cmd::Bridge(args) => bridge(args),
    };
    match result {
        Ok(code) => code,
        Err(e) => match e.downcast_ref::<UsageError>() {
            // A bad argument found late (e.g. a bad file): exit 2 like clap.
            Some(usage) => clap::Error::raw(
                clap::error::ErrorKind::ValueValidation,
                format!("{usage}\n"),
            )
            .exit(),
            None => {
                eprintln!("eth-ivshmem: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}

fn verdict(pass: bool) -> ExitCode {
    if pass {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

fn demo(args: DemoArgs) -> anyhow::Result<bool> {
    host::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    let qemu = host::qemu::ensure_installed()?;
    let kernel = host::kernel::build(Profile::Release)?;
    let options = DemoOptions {
        mode: args.mode,
        machine: args.machine,
        mtu: args.mtu,
        shm_size: args.shm_size,
        bytes: args.bytes,
        count: args.count,
        timeout: args.timeout,
        keep: args.keep,
        append: args.append,
        qemu,
        kernel,
    };
    let started = std::time::Instant::now();
    let pass = host::demo::run(&options)?;
    eprintln!(
        "eth-ivshmem: demo {} after {:.2} s",
        if pass { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(pass)
}

fn vm(args: VmArgs) -> anyhow::Result<ExitCode> {
    let mut options = VmOptions {
        app: args.app,
        link: args.link,
        mode: args.mode,
        id: args.id,
        shm_size: args.shm_size,
        machine: args.machine,
        mtu: args.mtu,
        append: args.append,
        timeout: args.timeout,
        name: args.name,
        qemu: PathBuf::new(),
        kernel: PathBuf::new(),
    };
    // Bad combinations and bad links are reported before anything slow.
    host::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    let link = host::standalone::open_link(&options)?;
    options.qemu = match args.qemu {
        Some(qemu) => qemu,
        None => host::qemu::ensure_installed()?,
    };
    options.kernel = match args.kernel {
        Some(elf) => elf,
        None => host::kernel::build(Profile::Release)?,
    };
    host::standalone::run(&options, link)
}

/// Returns Ok(true) if the guest reported success.
fn boot(args: BootArgs) -> anyhow::Result<bool> {
    // The plain region carries a descriptor page for two ivshmem-net peers;
    // check that the size can hold it before doing anything slow.
    if let Err(e) = Layout::new(args.shm_size, true, 2, 0, shm::PROTOCOL_NET, None) {
        clap::Error::raw(
            clap::error::ErrorKind::ValueValidation,
            format!(
                "--shm-size {}: {e} (at least 32K are needed)\n",
                Size(args.shm_size)
            ),
        )
        .exit();
    }
    host::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    let qemu = host::qemu::ensure_installed()?;
    let kernel = match args.kernel {
        Some(elf) => elf,
        None => host::kernel::build(args.profile)?,
    };
    let path = shm::unique_shm_path("boot");
    let region = shm::create_plain_region(&path, args.shm_size, 2, 0, shm::PROTOCOL_NET, None)?;
    let mut config = VmConfig::new(kernel)
        .name("boot")
        .qemu_binary(qemu)
        .machine(args.machine)
        .memory(args.memory)
        .append(&args.append)
        .shm(ShmDevice::Plain {
            mem_path: region.path().to_path_buf(),
            size: args.shm_size,
        })
        .qemu_args(args.qemu_args)
        .echo("");
    config.monitor = args.monitor;
    config.gdb = args.gdb;
    eprintln!("eth-ivshmem: {}", region.layout());
    eprintln!("eth-ivshmem: {}", config.command_line());
    let mut vm = config.spawn()?;
    let timeout = if args.gdb {
        Duration::from_secs(365 * 24 * 3600)
    } else {
        args.timeout
    };
    let outcome = vm.wait(timeout);
    eprintln!(
        "eth-ivshmem: {outcome} after {:.2} s",
        vm.elapsed().as_secs_f64()
    );
    Ok(outcome.is_success())
}

fn server(args: ServerArgs) -> anyhow::Result<bool> {
    let config = ServerConfig {
        socket: args.socket,
        protocol: args.protocol,
        size: args.size,
        max_peers: args.peers,
        vectors: args.vectors,
        output_section: args.output_section,
        net_protocol: args.net_protocol,
        v1_disconnect: args.v1_disconnect,
        verbose: !args.quiet,
    };
    // An impossible layout is a bad argument (exit 2), like clap's own errors.
    if let Err(e) = config.layout() {
        clap::Error::raw(clap::error::ErrorKind::ValueValidation, format!("{e}\n")).exit();
    }
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [SIGINT, SIGTERM, SIGHUP] {
        signal_hook::flag::register(signal, Arc::clone(&stop))
            .context("cannot install the signal handler")?;
    }
    let mut server = Server::bind(config)?;
    if !args.quiet {
        let device = match args.protocol {
            Protocol::V1 => format!("ivshmem-doorbell,chardev=ivs,vectors={}", args.vectors),
            Protocol::V2 => "ivshmem,chardev=ivs".to_string(),
        };
        eprintln!(
            "ivshmem-server: connect QEMU with: -chardev socket,path={},id=ivs -device {device}",
            server.socket_path().display()
        );
    }
    let result = server.run_until(&stop);
    drop(server);
    eprintln!("ivshmem-server: stopped");
    result.context("the server failed")?;
    Ok(true)
}

fn bridge(args: BridgeArgs) -> anyhow::Result<ExitCode> {
    let options = host::bridge::BridgeOptions {
        link: args.link,
        tap: args.tap,
        id: args.id,
        mtu: args.mtu,
        pcap: args.pcap,
        signals: true,
    };
    let stop = host::bridge::Stop::new().context("cannot create the stop eventfd")?;
    let summary = host::bridge::run(&options, &stop)?;
    let how = match summary.signal {
        Some(signal) => nix::sys::signal::Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string()),
        None => "stop".to_string(),
    };
    eprintln!("bridge: stopped by {how}: {summary}");
    Ok(ExitCode::from(host::bridge::exit_status(&summary)))
}
