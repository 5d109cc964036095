//! `eth-ivshmem`: the launcher. Builds the kernel, runs VMs, serves ivshmem.
//!
//! `cargo run -- --help` lists the commands; a bare `cargo run` runs `demo`.
//! The commands live in the `qemu` library; this file parses the command
//! line and maps results to exit statuses (0 pass, 1 fail, 2 bad arguments).

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use qemu::boot::BootOptions;
use qemu::demo::DemoOptions;
use qemu::options::{self, UsageError};
use qemu::server::{Protocol, Server, ServerConfig, V1Disconnect};
use qemu::standalone::VmOptions;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};

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
    Demo(DemoOptions),
    /// Start ONE VM with a chosen app and link, to compose setups by hand
    /// (e.g. with `server`, or two `vm`s on one plain file).
    Vm(VmOptions),
    /// Boot one VM with an ivshmem-plain device and print its serial output.
    Boot(BootOptions),
    /// Measure: the engine on the host next to an SPSC ring and memcpy, VM
    /// pairs over ivshmem-net and virtio-net in both modes, and (as root)
    /// Linux through the bridge against a VM, in one table.
    Bench(qemu::bench::BenchOptions),
    /// Run an ivshmem server (v1: QEMU's ivshmem-doorbell; v2: the Siemens ivshmem device).
    Server(ServerArgs),
    /// Join a link as one of its two peers and move its Ethernet frames to
    /// and from a Linux TAP device (needs root or CAP_NET_ADMIN).
    Bridge(BridgeArgs),
    /// Build the Jailhouse cell image (eth-ivshmem.bin) and print its path,
    /// for `jailhouse cell load CELL eth-ivshmem.bin -s "…" -a 0x1000`.
    CellImage(CellImageArgs),
}

#[derive(Debug, Args)]
struct CellImageArgs {
    /// Kernel build profile.
    #[arg(long, value_enum, default_value_t = qemu::kernel::Profile::Release)]
    profile: qemu::kernel::Profile,
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
    #[arg(long, value_name = "SIZE", default_value = "1M", value_parser = options::parse_any_size)]
    size: u64,
    /// Maximum number of peers (2..=16; ivshmem-net needs exactly 2).
    #[arg(long, value_name = "N", default_value_t = 2)]
    peers: u32,
    /// Interrupt vectors per peer (1..=64).
    #[arg(long, value_name = "N", default_value_t = 2)]
    vectors: u32,
    /// Size of ONE output section [default: the largest page multiple that fits].
    #[arg(long, value_name = "SIZE", value_parser = options::parse_any_size)]
    output_section: Option<u64>,
    /// The 16-bit ivshmem-v2 protocol ID advertised (0x0001 = ivshmem-net).
    #[arg(long, value_name = "ID", default_value = "0x0001", value_parser = options::parse_u16)]
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
    #[arg(long, value_name = "LINK", value_parser = clap::builder::ValueParser::new(str::parse::<qemu::bridge::BridgeLink>))]
    link: qemu::bridge::BridgeLink,
    /// The TAP device: created (up, with --mtu) and removed on exit if no
    /// interface has the name; an existing TAP (e.g. `ip tuntap add mode tap
    /// NAME`) is used as it is and left in place.
    #[arg(long, value_name = "NAME")]
    tap: String,
    /// Our peer ID on a plain link (0 or 1; the VM takes the other).
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(0..=1))]
    id: Option<u16>,
    /// MTU of a TAP the bridge creates (68 up to the link's largest)
    /// [default: the link's default, min(16384, data area / 16), as Linux's
    /// driver and the kernel pick it].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    mtu: Option<u32>,
    /// Give a TAP the bridge creates this IPv4 address before joining the
    /// link (e.g. 10.0.0.254/24; the VMs are 10.0.0.1 and 10.0.0.2).
    #[arg(long, value_name = "ADDR/PREFIX", value_parser = qemu::bridge::parse_address)]
    ip: Option<abi::cmdline::Ipv4Cidr>,
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
        Cmd::Demo(options) => demo(&options).map(verdict),
        Cmd::Vm(options) => vm(&options),
        Cmd::Boot(options) => boot(&options).map(verdict),
        Cmd::Bench(options) => bench(&options).map(verdict),
        Cmd::Server(args) => server(args).map(verdict),
        Cmd::Bridge(args) => bridge(args),
        Cmd::CellImage(args) => cell_image(&args).map(verdict),
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

fn demo(options: &DemoOptions) -> anyhow::Result<bool> {
    qemu::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    let started = std::time::Instant::now();
    let pass = qemu::demo::run(options)?;
    eprintln!(
        "eth-ivshmem: demo {} after {:.2} s",
        if pass { "passed" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Ok(pass)
}

fn vm(options: &VmOptions) -> anyhow::Result<ExitCode> {
    qemu::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    // Bad combinations and bad links are reported before anything slow.
    let link = qemu::standalone::open_link(options)?;
    qemu::standalone::run(options, link)
}

fn bench(options: &qemu::bench::BenchOptions) -> anyhow::Result<bool> {
    qemu::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    qemu::bench::run(options)
}

fn cell_image(args: &CellImageArgs) -> anyhow::Result<bool> {
    let image = qemu::kernel::build_cell_image(args.profile)?;
    let size = std::fs::metadata(&image)
        .with_context(|| format!("cannot stat {}", image.display()))?
        .len();
    eprintln!(
        "eth-ivshmem: cell image of {size} bytes (entry at 0, command line at {:#x}); load it with\n  \
         jailhouse cell load CELL {} -s \"app=server\" -a {:#x}",
        abi::jailhouse::CMDLINE_ADDRESS,
        image.display(),
        abi::jailhouse::CMDLINE_ADDRESS
    );
    println!("{}", image.display());
    Ok(true)
}

fn boot(options: &BootOptions) -> anyhow::Result<bool> {
    qemu::cleanup::exit_on_signal().context("cannot install the signal handler")?;
    qemu::boot::run(options)
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
    let options = qemu::bridge::BridgeOptions {
        link: args.link,
        tap: args.tap,
        id: args.id,
        mtu: args.mtu,
        address: args.ip,
        pcap: args.pcap,
        signals: true,
    };
    let control =
        qemu::bridge::Control::new().context("cannot create the bridge's control eventfd")?;
    let summary = qemu::bridge::run(&options, &control)?;
    let how = match summary.signal {
        Some(signal) => nix::sys::signal::Signal::try_from(signal)
            .map_or_else(|_| format!("signal {signal}"), |s| s.as_str().to_string()),
        None => "stop".to_string(),
    };
    eprintln!("bridge: stopped by {how}: {summary}");
    Ok(ExitCode::from(qemu::bridge::exit_status(&summary)))
}
