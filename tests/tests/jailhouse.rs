//! Issue 11 acceptance: the kernel as a Jailhouse x86 non-root cell, in the
//! cell harness on stock QEMU (`qemu::cell`: no firmware, a reset ROM that
//! jumps to 0000:0000, the flat image at 0 with its command line at 0x1000,
//! a communication region at 0x100000, BARs nobody assigned, no ACPI).
//!
//! Two cells ping and TCP-echo each other over the ivshmem-net link (the v2
//! emulation over `ivshmem-doorbell` on our server), a measuring cell denies
//! a shutdown request and a serving one approves it; the fatal paths end in
//! the cell state with the same reports as under PVH; a communication
//! region of another ABI revision stops the cell as `FAILED_COMM_REV`; and
//! the flat image has the layout `jailhouse cell load` expects.
//!
//! What this cannot cover (docs/jailhouse.md §5): VMX and the hypercall
//! console, MMCONFIG through the hypervisor, Jailhouse's own ivshmem-v2
//! device and its MSI-X delivery, cache attributes on real hardware.

use std::process::Command;

use abi::cmdline::{App, CommandLine};
use abi::exit::ExitCode;
use abi::jailhouse::{CellState, Message, Reply};
use abi::report::{CellStopped, Fatal, LinkUp, PciBar, TcpEchoProgress, TcpEchoResult};
use e2e::{Outcome, Pair, Run, apps, boot_cell};

const MIB: u64 = 1 << 20;

/// Asserts a cell run ended in `state` with `code`, through its `cell:` line.
#[track_caller]
fn assert_cell_end(run: &Run, state: CellState, code: ExitCode) {
    run.assert_outcome(Outcome::Exit(code));
    assert_eq!(run.cell_state, Some(Ok(state)), "{}", run.context());
    assert_eq!(run.report::<CellStopped>(), CellStopped { state, code });
}

#[test]
fn two_cells_ping_and_echo_and_answer_shutdown_requests() {
    let mut pair = Pair::doorbell_cells("two cells");
    pair.start("A", 0, apps(&[App::Server]));
    let client = CommandLine {
        bytes: 32 * MIB,
        ..apps(&[App::Ping, App::TcpEcho])
    };
    pair.start("B", 1, client);
    pair.wait_for::<LinkUp>("B", 0);
    // B measures and ends by itself: it refuses to be shut down meanwhile.
    pair.wait_for::<TcpEchoProgress>("B", 0);
    let reply = pair.send_cell_message("B", Message::ShutdownRequest);
    if reply != Reply::RequestDenied {
        pair.fail(&format!("B answered {reply} while measuring"));
    }
    pair.assert_pass("B");
    let result: TcpEchoResult = pair.report("B");
    if result.bytes != 32 * MIB {
        pair.fail(&format!("B: {result}"));
    }
    pair.assert_report(
        "B",
        &CellStopped {
            state: CellState::ShutDown,
            code: ExitCode::Success,
        },
    );
    // A serves for ever: it approves and stops as SHUT_DOWN.
    pair.assert_running("A");
    let reply = pair.send_cell_message("A", Message::ReconfigCompleted);
    if reply != Reply::Received {
        pair.fail(&format!("A answered {reply} to RECONFIG_COMPLETED"));
    }
    let reply = pair.send_cell_message("A", Message::ShutdownRequest);
    if reply != Reply::RequestApproved {
        pair.fail(&format!("A answered {reply} to a shutdown request"));
    }
    let outcome = pair.wait_exit("A");
    if outcome != Outcome::Exit(ExitCode::Success) {
        pair.fail(&format!("A after approving: {outcome}"));
    }
    pair.assert_report(
        "A",
        &CellStopped {
            state: CellState::ShutDown,
            code: ExitCode::Success,
        },
    );
}

#[test]
fn a_cell_assigns_the_bars_nobody_assigned_and_shuts_down() {
    let shm = e2e::shm_file("cell-inventory", MIB);
    let run = boot_cell("", |config| config.shm(shm.device()));
    assert_cell_end(&run, CellState::ShutDown, ExitCode::Success);
    let bars: Vec<PciBar> = run.reports();
    let ivshmem: Vec<&PciBar> = bars
        .iter()
        .filter(|bar| bar.bar.kind != abi::report::BarKind::Io)
        .collect();
    assert_eq!(ivshmem.len(), 2, "BAR0 and BAR2\n{}", run.context());
    for bar in ivshmem {
        assert!(
            (0xff00_0000..0xfff0_0000).contains(&bar.bar.address),
            "{bar} lies outside the cell window\n{}",
            run.context()
        );
    }
}

#[test]
fn a_cell_ends_every_fatal_path_in_its_state() {
    let cases = [
        ("bogus=1", ExitCode::BadCommandLine),
        ("mem=3M", ExitCode::BadCommandLine),
        ("selftest=panic", ExitCode::Panic),
        ("selftest=pagefault", ExitCode::CpuException),
        ("selftest=stack-overflow", ExitCode::CpuException),
        ("selftest=oom", ExitCode::OutOfMemory),
    ];
    for (words, code) in cases {
        let run = boot_cell(words, |config| config);
        assert_cell_end(&run, CellState::Failed, code);
        if code != ExitCode::CpuException {
            run.report::<Fatal<String>>();
        }
    }
}

#[test]
fn a_cell_refuses_another_communication_region_revision() {
    let run = boot_cell("", |mut config| {
        if let Some(files) = config.cell.as_mut() {
            files.revision = abi::jailhouse::ABI_REVISION + 1;
        }
        config
    });
    assert_eq!(
        run.cell_state,
        Some(Ok(CellState::FailedCommRev)),
        "{}",
        run.context()
    );
    run.assert_outcome(Outcome::Exit(ExitCode::Failure));
    run.assert_no::<CellStopped>();
}

/// The symbol `name`'s address in the cell ELF, from `nm`.
fn symbol(nm: &str, name: &str) -> u64 {
    nm.lines()
        .find_map(|line| {
            let mut words = line.split_whitespace();
            let address = words.next()?;
            let _kind = words.next()?;
            (words.next()? == name).then(|| u64::from_str_radix(address, 16).ok())?
        })
        .unwrap_or_else(|| panic!("no symbol {name} in\n{nm}"))
}

#[test]
fn the_flat_image_has_the_layout_jailhouse_loads() {
    let image = e2e::cell_image();
    let bytes = std::fs::read(&image).unwrap();
    qemu::kernel::check_cell_image(&bytes).unwrap();
    let elf = qemu::kernel::cell_elf_path(qemu::kernel::Profile::Release);
    let output = Command::new("nm")
        .arg(&elf)
        .output()
        .expect("nm (binutils)");
    assert!(output.status.success(), "nm {}", elf.display());
    let nm = String::from_utf8_lossy(&output.stdout);
    assert_eq!(symbol(&nm, "jailhouse_reset"), 0, "the reset entry");
    assert_eq!(symbol(&nm, "jailhouse_cmdline"), 0x1000, "the buffer");
    assert_eq!(
        symbol(&nm, "__image_end"),
        bytes.len() as u64,
        "the flat image ends where the loaded sections do"
    );
    let bss = symbol(&nm, "__bss_start");
    assert!(
        bss >= abi::jailhouse::HIGH_RAM_START,
        ".bss at {bss:#x} would overlap the communication region"
    );
    println!(
        "cell image: {} bytes ({:.0}% of the {:#x} bytes below the legacy hole), .bss from {bss:#x}",
        bytes.len(),
        bytes.len() as f64 * 100.0 / abi::jailhouse::IMAGE_LIMIT as f64,
        abi::jailhouse::IMAGE_LIMIT
    );
}
