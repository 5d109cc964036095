//! The boot sequence and the self-tests.

use alloc::boxed::Box;
use alloc::vec::Vec;
use log::{debug, info, warn};

use crate::exit::exit;
use crate::ivshmem::layout::Region;
use crate::ivshmem::memory::Window;
use crate::ivshmem::{Device, Requirements};
use crate::net::device::{IvshmemNet, NetDevice};
use crate::net::stack::Stack;
use crate::paging::{self, Attributes};
use crate::pci::{self, ConfigAccess};
use crate::pvh::MemoryRegion;
use crate::{acpi, apic, apps, gdt, heap, interrupts, kprintln, net, pvh, serial, time};
use abi::cmdline::{App, CommandLine, Net, SelfTest};
use abi::exit::ExitCode;
use abi::jailhouse::{self as jailhouse_layout, flags as jailhouse_flags};
use abi::report::{
    AppVerdict, AppsVerdict, BootOk, DEVICE_PREFIX, DeviceFound, Fatal, FatalKind, InventoryHeader,
    PciBar, SharedMemoryProbe, StackGuard,
};
use core::sync::atomic::Ordering;

/// What the platform below the seam hands to everything above it: PVH and
/// ACPI on QEMU, the communication region and the command line in a
/// Jailhouse cell (docs/jailhouse.md §3). PCI enumeration, the drivers, the
/// network stack and the apps are one code path for both.
struct Platform {
    /// The kernel command line, parsed.
    command_line: CommandLine,
    /// How to reach the local APIC.
    local_apic: apic::Access,
    /// PCI configuration access.
    config: Box<dyn ConfigAccess>,
    /// Whether this is a Jailhouse cell: no firmware assigned the BARs, and
    /// virtual devices may sit on any bus.
    cell: bool,
}

/// Brings the platform up and runs what the command line asks for. Never returns.
///
/// # Safety
///
/// Call once, from the boot code: `entry` must say how the kernel was
/// entered (`boot::ENTRY_*`), and under PVH `start_info` must be the
/// physical address of the start info the loader passed.
pub unsafe fn start(start_info: u32, entry: u32) -> ! {
    let platform = if entry == boot::ENTRY_JAILHOUSE {
        // SAFETY: entered through the Jailhouse reset vector (the caller).
        unsafe { start_cell() }
    } else {
        // SAFETY: the PVH start info (the caller).
        unsafe { start_pvh(start_info) }
    };
    run(platform)
}

/// Console, heap, clock, ACPI and the local APIC under QEMU's PVH loader.
///
/// # Safety
///
/// As [`start`] under PVH.
unsafe fn start_pvh(start_info: u32) -> Platform {
    serial::init();
    gdt::init();
    interrupts::init();
    // SAFETY: `kmain`'s argument, the start info the PVH loader passed.
    let info = unsafe { pvh::StartInfo::read(start_info) }
        .unwrap_or_else(|error| fatal(FatalKind::Boot, error, ExitCode::Failure));
    // SAFETY: called once, before anything allocates; the map is the
    // firmware's and the loader's data is excluded.
    let heap = unsafe { heap::init(&heap::HEAP, info.memory_map(), info.loader_data) }
        .unwrap_or_else(|| no_heap());
    guard_stack();
    let command_line = parse_command_line(info.cmdline);
    let tsc_khz = time::init();
    boot_banner(info.cmdline, heap, tsc_khz);
    for region in info.memory_map() {
        debug!(
            "memory {:#012x}-{:#012x} type {}",
            region.start,
            region.end(),
            region.kind
        );
    }
    if command_line.mem.is_some() {
        warn!("mem= is for Jailhouse cells; under PVH the firmware's memory map rules");
    }

    // SAFETY: the RSDP address the loader passed, if any.
    let acpi = unsafe { acpi::probe(info.rsdp) }.unwrap_or_else(|error| {
        warn!("{error}; assuming a local APIC at the default address and no ECAM");
        acpi::Platform {
            local_apic: apic::DEFAULT_BASE,
            cpus: 1,
            ecam: Vec::new(),
        }
    });
    info!(
        "ACPI: {} CPU(s), local APIC at {:#x}, {} ECAM window(s)",
        acpi.cpus,
        acpi.local_apic,
        acpi.ecam.len()
    );
    let ecam = acpi
        .ecam
        .iter()
        .find(|window| window.segment == 0)
        .map(|window| (window.base, window.bus_start, window.bus_end));
    Platform {
        command_line,
        local_apic: apic::Access::Mmio(acpi.local_apic),
        config: config_access(ecam),
        cell: false,
    }
}

/// The same in a Jailhouse cell: the communication region gives the clock,
/// MMCONFIG and the console; RAM is the cell's, up to `mem=`; no firmware
/// assigned the BARs.
///
/// # Safety
///
/// As [`start`] through the Jailhouse reset vector.
unsafe fn start_cell() -> Platform {
    // SAFETY: entered through the reset vector (the caller): 0x100000 is
    // the communication region. A bad revision stops the cell in there.
    let region = unsafe { crate::jailhouse::enter() };
    match region {
        Ok(region) if region.flags & jailhouse_flags::DBG_PUTC_PERMITTED != 0 => {
            serial::init_hypervisor(crate::jailhouse::hypercall_instruction());
        }
        _ => serial::init(),
    }
    gdt::init();
    interrupts::init();
    // Without a region there is no cell state to write: say why on the
    // UART (the harness's, or a cell that passes one through) and halt.
    let region = region.unwrap_or_else(|error| {
        kprintln!(
            "{}",
            Fatal {
                kind: FatalKind::Boot,
                message: error
            }
        );
        loop {
            x86_64::instructions::interrupts::disable();
            x86_64::instructions::hlt();
        }
    });
    // The heap starts with the least it needs, above the image's .bss in
    // the cell's RAM, until `mem=` says where that RAM ends.
    let first = [MemoryRegion {
        start: jailhouse_layout::HIGH_RAM_START,
        size: heap::kernel_end() + heap::MIN_HEAP - jailhouse_layout::HIGH_RAM_START,
        kind: MemoryRegion::USABLE,
    }];
    // SAFETY: called once, before anything allocates; the cell's RAM from
    // 2 MiB holds only the image's .bss below `kernel_end` (boot/jailhouse.ld),
    // and every cell has at least the minimum heap above it.
    let heap = unsafe { heap::init(&heap::HEAP, &first, (0, 0)) }.unwrap_or_else(|| no_heap());
    guard_stack();
    let cmdline = crate::jailhouse::command_line().unwrap_or_else(|error| {
        fatal(
            FatalKind::CommandLine,
            format_args!("the command-line buffer is not UTF-8: {error}"),
            ExitCode::BadCommandLine,
        )
    });
    let command_line = parse_command_line(cmdline);
    let top = command_line
        .mem
        .unwrap_or(jailhouse_layout::DEFAULT_RAM_TOP);
    if top < heap.start + heap.size {
        fatal(
            FatalKind::CommandLine,
            format_args!(
                "mem={top:#x} is below the kernel's minimum ({:#x})",
                heap.start + heap.size
            ),
            ExitCode::BadCommandLine,
        );
    }
    // SAFETY: `heap` came from `init`; the cell's RAM reaches `top` (the
    // cell configuration and `mem=` agree, docs/jailhouse.md §2), inside
    // the boot identity map (`mem` is at most 4 GiB).
    let heap = unsafe { heap::extend(&heap::HEAP, heap, top) };
    let tsc_khz = time::init_with_khz(u64::from(region.tsc_khz));
    boot_banner(cmdline, heap, tsc_khz);
    info!(
        "jailhouse: communication region revision {}, {} CPU(s), TSC {} kHz, APIC timer {}, \
         MMCONFIG {}, console {}",
        jailhouse_layout::ABI_REVISION,
        region.num_cpus,
        region.tsc_khz,
        region
            .apic_khz
            .map_or("TSC deadline".into(), |khz| alloc::format!("{khz} kHz")),
        region
            .pci_mmconfig_base
            .map_or("none".into(), |base| alloc::format!("{base:#x}")),
        if region.flags & jailhouse_flags::DBG_PUTC_PERMITTED != 0 {
            "hypervisor"
        } else {
            "COM1"
        }
    );
    // Jailhouse emulates the x2APIC MSRs for its cells (its own inmate
    // library uses nothing else); without x2APIC the xAPIC page is there.
    let local_apic = if apic::cpu_has_x2apic() {
        apic::Access::X2apicMsrs
    } else {
        apic::Access::Mmio(apic::DEFAULT_BASE)
    };
    match local_apic {
        apic::Access::X2apicMsrs => info!("jailhouse: local APIC through the x2APIC MSRs"),
        apic::Access::Mmio(base) => info!("jailhouse: local APIC through its page at {base:#x}"),
    }
    Platform {
        command_line,
        local_apic,
        // Configuration through 0xCF8, which Jailhouse answers for every
        // bus, device and function. Its MMCONFIG window covers only the
        // platform's buses, which the region does not name: an access past
        // them would stop the cell, and everything we read is in the first
        // 256 bytes (docs/jailhouse.md §1.4).
        config: config_access(None),
        cell: true,
    }
}

fn parse_command_line(text: &str) -> CommandLine {
    let command_line = CommandLine::parse(text)
        .unwrap_or_else(|error| fatal(FatalKind::CommandLine, error, ExitCode::BadCommandLine));
    serial::init_logger(command_line.log);
    command_line
}

fn boot_banner(cmdline: &str, heap: heap::HeapRange, tsc_khz: u64) {
    info!(
        "eth-ivshmem {} booting; command line '{}'",
        env!("CARGO_PKG_VERSION"),
        cmdline
    );
    info!(
        "heap {:#x}-{:#x} ({} MiB); TSC {} MHz",
        heap.start,
        heap.start + heap.size,
        heap.size >> 20,
        tsc_khz / 1000
    );
}

fn no_heap() -> ! {
    fatal(
        FatalKind::Boot,
        "no usable RAM region of 4 MiB or more for the heap",
        ExitCode::OutOfMemory,
    )
}

/// Everything above the platform seam.
fn run(platform: Platform) -> ! {
    let Platform {
        command_line,
        local_apic,
        config,
        cell,
    } = platform;
    // SAFETY: the address comes from the MADT, or is the architectural
    // default (a cell's APIC is where the hardware has it); x2APIC access
    // only where CPUID reports it, in a cell.
    if let Err(error) = unsafe { apic::init(local_apic, !cell) } {
        fail(format_args!("local APIC: {error}"));
    }
    // A cell that serves may be shut down at any time; one whose apps
    // measure and end by themselves refuses until they are done.
    crate::jailhouse::set_shutdown_policy(if command_line.ends_by_itself() {
        crate::jailhouse::ShutdownPolicy::Deny
    } else {
        crate::jailhouse::ShutdownPolicy::Approve
    });

    let mut functions = pci::enumerate_buses(
        &*config,
        if cell {
            pci::Scan::EveryBus
        } else {
            pci::Scan::FromBusZero
        },
    );
    if cell {
        match pci::assign::assign_memory_bars(&*config, &mut functions, pci::assign::CELL_WINDOW) {
            Ok(count) => info!("PCI: assigned {count} memory BAR(s) (no firmware did)"),
            Err(error) => fail(format_args!("PCI: {error}")),
        }
    }
    kprintln!(
        "{}",
        InventoryHeader {
            functions: functions.len()
        }
    );
    for function in &functions {
        kprintln!("{}", function.report());
        for bar in &function.bars {
            kprintln!(
                "{}",
                PciBar {
                    bdf: function.bdf,
                    bar: *bar
                }
            );
        }
    }

    match command_line.selftest {
        Some(SelfTest::PageFault) => {
            info!("self-test: reading unmapped address {UNMAPPED:#x}");
            // SAFETY: none; this read is meant to fault and end the kernel
            // through the page-fault handler.
            let value = unsafe { core::ptr::read_volatile(UNMAPPED as *const u64) };
            fail(format_args!(
                "self-test: reading {UNMAPPED:#x} returned {value:#x} instead of faulting"
            ));
        }
        Some(SelfTest::Panic) => panic!("self-test: deliberate panic"),
        Some(SelfTest::OutOfMemory) => {
            let mut hoard: Vec<Box<[u8]>> = Vec::new();
            loop {
                hoard.push(alloc::vec![1u8; 1 << 20].into_boxed_slice());
            }
        }
        Some(SelfTest::SharedMemory) => shared_memory_probe(&functions),
        Some(SelfTest::StackOverflow) => {
            kprintln!(
                "{}",
                StackGuard {
                    guard_page: stack_guard_page()
                }
            );
            let depth = recurse(0);
            fail(format_args!(
                "self-test: recursion returned at depth {depth} instead of faulting"
            ));
        }
        None => {}
    }
    if command_line.apps == [App::Inventory] {
        kprintln!("{BootOk}");
        exit(ExitCode::Success)
    }
    if command_line.apps.contains(&App::Ivshmem) {
        if command_line.apps.len() > 1 {
            fail(format_args!("app=ivshmem runs alone"));
        }
        let device = probe_device(&*config, &functions, &command_line, Requirements::ANY);
        let pass = apps::ivshmem::run(device, &*config, &command_line);
        report_verdict(App::Ivshmem, pass);
        finish(pass)
    }
    if command_line.net == Net::Virtio {
        let device = crate::virtio::VirtioNet::open(&*config, &functions, &command_line)
            .unwrap_or_else(|error| fail(format_args!("{error}")));
        run_apps(Stack::new(device, &command_line), &command_line)
    }
    let device = probe_device(&*config, &functions, &command_line, net::REQUIREMENTS);
    let mut engine = crate::net::open(device, &*config, &command_line);
    if command_line.apps == [App::Link] {
        crate::net::apps::run_link(&mut engine, device, command_line.mode)
    }
    run_apps(
        Stack::new(IvshmemNet::new(engine, device), &command_line),
        &command_line,
    )
}

/// Runs the network apps in order and exits with their verdict.
fn run_apps<D: NetDevice>(mut stack: Stack<D>, command_line: &CommandLine) -> ! {
    use crate::net::apps;
    // A server opens its sockets at once and brings the link up in its own
    // loop, so that it is ready when the peer sees the link (the peer's
    // first request must not wait for our socket buffers to be zeroed).
    let serves_first = command_line.apps.first() == Some(&App::Server);
    if !serves_first && !stack.wait_for_link(command_line.link_timeout) {
        fail(format_args!(
            "link: the peer did not come up within {} s",
            command_line.link_timeout
        ));
    }
    let mut passed = true;
    for app in &command_line.apps {
        let ok = match app {
            App::Inventory => true,
            App::Link => fail(format_args!("app=link runs alone")),
            App::Ivshmem => fail(format_args!("app=ivshmem runs alone")),
            App::Server => apps::serve(&mut stack, command_line),
            App::Ping => apps::ping(&mut stack, command_line),
            App::TcpEcho => apps::tcp_echo(&mut stack, command_line),
            App::UdpEcho => apps::udp_echo(&mut stack, command_line),
            App::TcpSend => apps::tcp_send(&mut stack, command_line),
            App::TcpRecv => apps::tcp_recv(&mut stack, command_line),
            App::UdpFlood => apps::udp_flood(&mut stack, command_line),
            App::Statistics => apps::stats(&mut stack),
            App::FragmentFlood => apps::fragment_flood(&mut stack, command_line),
        };
        report_verdict(*app, ok);
        passed &= ok;
    }
    apps::report_statistics(&mut stack);
    stack.engine().log_statistics();
    finish(passed)
}

/// Prints one app's verdict.
fn report_verdict(app: App, pass: bool) {
    kprintln!("{}", AppVerdict { app, pass });
}

/// Ends the kernel after the hypervisor's approved shutdown request: the
/// apps still running (servers) are done, and the cell stops as `SHUT_DOWN`.
pub fn shut_down() -> ! {
    exit(ExitCode::Success)
}

/// Prints the verdict over all apps and exits with it.
fn finish(pass: bool) -> ! {
    kprintln!("{}", AppsVerdict { pass });
    exit(if pass {
        ExitCode::Success
    } else {
        ExitCode::Failure
    })
}

/// Finds and maps the ivshmem device for a protocol with `requirements`,
/// or exits with the reason.
fn probe_device(
    config: &dyn ConfigAccess,
    functions: &[pci::Function],
    command_line: &CommandLine,
    requirements: Requirements,
) -> &'static Device {
    let device =
        Device::probe(config, functions, command_line.id, requirements).unwrap_or_else(|error| {
            kprintln!("{DEVICE_PREFIX}{error}");
            exit(ExitCode::Failure)
        });
    let sections = device.sections();
    kprintln!(
        "{}",
        DeviceFound {
            kind: device.kind(),
            bdf: device.bdf(),
            id: device.id(),
            max_peers: device.max_peers(),
            protocol: device.protocol(),
            vectors: device.vectors(),
        }
    );
    info!(
        "ivshmem: shared memory at {:#x}: {}",
        sections.base(),
        sections.layout()
    );
    device
}

/// An address no page table maps (64 GiB: PDPT entry 64 is never used).
const UNMAPPED: u64 = 0x10_0000_0000;

/// Reports a fatal condition and exits with [`ExitCode::Failure`].
pub fn fail(message: core::fmt::Arguments<'_>) -> ! {
    fatal(FatalKind::Failed, message, ExitCode::Failure)
}

/// Prints the fatal report `kind: message` and exits with `code`.
fn fatal(kind: FatalKind, message: impl core::fmt::Display, code: ExitCode) -> ! {
    kprintln!("{}", Fatal { kind, message });
    exit(code)
}

/// The lowest page of the boot stack.
fn stack_guard_page() -> u64 {
    unsafe extern "C" {
        /// The bottom of the boot stack, from `boot`.
        static boot_stack: u8;
    }
    (&raw const boot_stack) as u64
}

/// Recurses with 4 KiB frames until the stack runs out (self-test).
#[inline(never)]
fn recurse(depth: u64) -> u64 {
    let mut frame = [0u8; 4096];
    frame[(depth % 4096) as usize] = depth as u8;
    core::hint::black_box(&mut frame);
    if depth == u64::MAX {
        return depth; // unreachable: the guard page stops us long before
    }
    recurse(depth + 1) + u64::from(frame[0])
}

/// Unmaps the lowest page of the boot stack, so that an overflow faults
/// instead of silently overwriting the page tables below it.
fn guard_stack() {
    // SAFETY: the boot stack (1 MiB) grows down from its top, and the kernel
    // never comes near its lowest page; faulting there is the point.
    if let Err(error) = unsafe { paging::unmap_page(stack_guard_page()) } {
        fatal(
            FatalKind::Boot,
            format_args!("cannot place the stack guard page: {error}"),
            ExitCode::Failure,
        );
    }
}

/// ECAM for segment 0 (`(base, first bus, last bus)`) if the firmware
/// names one, else port I/O.
fn config_access(ecam: Option<(u64, u8, u8)>) -> Box<dyn ConfigAccess> {
    if let Some((base, bus_start, bus_end)) = ecam {
        // SAFETY: the window comes from the firmware's MCFG table.
        match unsafe { pci::Ecam::new(base, bus_start, bus_end) } {
            Ok(ecam) => {
                info!("PCI: ECAM at {base:#x}, buses {bus_start}-{bus_end}");
                return Box::new(ecam);
            }
            Err(error) => warn!("PCI: cannot map ECAM ({error}); using port I/O"),
        }
    }
    info!("PCI: configuration through port I/O");
    Box::new(pci::PortIo::default())
}

/// Maps the shared-memory BAR (BAR2) of the first ivshmem device read-only and
/// prints its first and last u64.
fn shared_memory_probe(functions: &[pci::Function]) {
    let Some(bar) = functions
        .iter()
        .filter(|f| matches!((f.vendor, f.device), (0x1af4, 0x1110) | (0x110a, 0x4106)))
        .find_map(|f| f.bar(2))
    else {
        fail(format_args!("self-test shm: no ivshmem device with a BAR2"));
    };
    if bar.address == 0 || bar.size < 8 {
        fail(format_args!("self-test shm: BAR2 is unassigned ({bar})"));
    }
    // SAFETY: BAR2 of an ivshmem device, as configuration space reports it:
    // shared memory, which we only read.
    if let Err(error) = unsafe { paging::map(bar.address, bar.size, Attributes::SHARED_READ_ONLY) }
    {
        fail(format_args!("self-test shm: cannot map BAR2: {error}"));
    }
    let region = Region {
        address: bar.address,
        size: bar.size,
    };
    // SAFETY: BAR2 was just mapped read-only for the kernel's life, and no
    // device was probed, so no `OwnWindow` covers any of it.
    let memory = unsafe { Window::new(region) };
    let first_value = memory.load_u64(0, Ordering::Relaxed);
    let last_value = memory.load_u64(memory.len() - 8, Ordering::Relaxed);
    kprintln!(
        "{}",
        SharedMemoryProbe {
            bar: *bar,
            first: first_value,
            last: last_value,
        }
    );
}
