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
use crate::{acpi, apic, apps, gdt, heap, interrupts, kprintln, net, pvh, serial, time};
use abi::cmdline::{App, CommandLine, Net, SelfTest};
use abi::exit::ExitCode;
use abi::report::{
    AppVerdict, AppsVerdict, BootOk, DEVICE_PREFIX, DeviceFound, Fatal, FatalKind, InventoryHeader,
    PciBar, SharedMemoryProbe, StackGuard,
};
use core::sync::atomic::Ordering;

/// Brings the platform up and runs what the command line asks for. Never returns.
///
/// # Safety
///
/// Call once, from the boot code: `start_info` must be the physical address
/// of the PVH start info the loader passed.
pub unsafe fn start(start_info: u32) -> ! {
    serial::init();
    gdt::init();
    interrupts::init();
    // SAFETY: `kmain`'s argument, the start info the PVH loader passed.
    let info = unsafe { pvh::StartInfo::read(start_info) }
        .unwrap_or_else(|error| fatal(FatalKind::Boot, error, ExitCode::Failure));
    let heap = init_heap(&info);
    guard_stack();
    let command_line = CommandLine::parse(info.cmdline)
        .unwrap_or_else(|error| fatal(FatalKind::CommandLine, error, ExitCode::BadCommandLine));
    serial::init_logger(command_line.log);
    let tsc_khz = time::init();
    info!(
        "eth-ivshmem {} booting; command line '{}'",
        env!("CARGO_PKG_VERSION"),
        info.cmdline
    );
    for region in info.memory_map() {
        debug!(
            "memory {:#012x}-{:#012x} type {}",
            region.start,
            region.end(),
            region.kind
        );
    }
    info!(
        "heap {:#x}-{:#x} ({} MiB); TSC {} MHz",
        heap.start,
        heap.start + heap.size,
        heap.size >> 20,
        tsc_khz / 1000
    );

    // SAFETY: the RSDP address the loader passed, if any.
    let platform = unsafe { acpi::probe(info.rsdp) }.unwrap_or_else(|error| {
        warn!("{error}; assuming a local APIC at the default address and no ECAM");
        acpi::Platform {
            local_apic: apic::DEFAULT_BASE,
            cpus: 1,
            ecam: Vec::new(),
        }
    });
    info!(
        "ACPI: {} CPU(s), local APIC at {:#x}, {} ECAM window(s)",
        platform.cpus,
        platform.local_apic,
        platform.ecam.len()
    );
    // SAFETY: the address comes from the MADT, or is the architectural default.
    if let Err(error) = unsafe { apic::init(platform.local_apic) } {
        fail(format_args!("local APIC: {error}"));
    }

    let config = config_access(&platform);
    let functions = pci::enumerate(&*config);
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

fn init_heap(info: &pvh::StartInfo) -> heap::HeapRange {
    // SAFETY: boot calls this once, before anything allocates, with the
    // start info the loader gave.
    unsafe { heap::init(&heap::HEAP, info) }.unwrap_or_else(|| {
        fatal(
            FatalKind::Boot,
            "no usable RAM region of 4 MiB or more for the heap",
            ExitCode::OutOfMemory,
        )
    })
}

fn config_access(platform: &acpi::Platform) -> Box<dyn ConfigAccess> {
    if let Some(window) = platform.ecam.iter().find(|window| window.segment == 0) {
        // SAFETY: the window comes from the firmware's MCFG table.
        match unsafe { pci::Ecam::new(window.base, window.bus_start, window.bus_end) } {
            Ok(ecam) => {
                info!(
                    "PCI: ECAM at {:#x}, buses {}-{}",
                    window.base, window.bus_start, window.bus_end
                );
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
