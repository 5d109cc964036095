//! Issue 2 acceptance: the kernel boots on `pc` and `q35`, inventories PCI,
//! maps the ivshmem BAR (also above 4 GiB), and ends every fatal path with
//! its report and exit status. Each test boots the real kernel under QEMU.

use abi::cmdline::{CommandLine, SelfTest};
use abi::exit::ExitCode;
use abi::report::{
    BarKind, BootOk, ExceptionErrorCode, ExceptionHeadline, ExceptionReport, Fatal, FatalKind,
    SharedMemoryProbe, StackGuard, parse_inventory,
};
use e2e::{Machine, Outcome, Run, boot, boot_unchecked, shm_file};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

fn selftest(selftest: SelfTest) -> CommandLine {
    CommandLine {
        selftest: Some(selftest),
        ..CommandLine::default()
    }
}

/// Boots with an `ivshmem-plain` of `size` bytes and checks the inventory
/// lists exactly one 1af4:1110 function with BAR0 (registers) and a 64-bit
/// prefetchable BAR2 of exactly `size`, and that the kernel exits successfully.
fn inventory_shows_ivshmem(machine: Machine, size: u64) {
    let shm = shm_file("e2e-inventory", size);
    let run = boot(machine, selftest(SelfTest::SharedMemory), Some(&shm));
    run.assert_outcome(Outcome::Exit(ExitCode::Success));
    run.report::<BootOk>();

    let entries = parse_inventory(&run.lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    let ivshmem: Vec<_> = entries
        .iter()
        .filter(|entry| (entry.function.vendor, entry.function.device) == (0x1af4, 0x1110))
        .collect();
    assert_eq!(
        ivshmem.len(),
        1,
        "expected exactly one ivshmem function\n{}",
        run.context()
    );
    let entry = ivshmem[0];
    assert_eq!(
        entry.function.class,
        [0x05, 0, 0],
        "ivshmem is a RAM controller"
    );
    let bar0 = entry
        .bar(0)
        .unwrap_or_else(|| panic!("no BAR0\n{}", run.context()));
    assert_eq!(bar0.kind, BarKind::Memory32, "{}", run.context());
    assert_eq!(bar0.size, 0x100, "ivshmem register BAR\n{}", run.context());
    let bar2 = entry
        .bar(2)
        .unwrap_or_else(|| panic!("no BAR2\n{}", run.context()));
    assert_eq!(bar2.kind, BarKind::Memory64, "{}", run.context());
    assert!(bar2.prefetchable, "{}", run.context());
    assert_eq!(
        bar2.size,
        size,
        "BAR2 size vs configured shared memory\n{}",
        run.context()
    );
    assert!(
        bar2.address != 0 && bar2.address % size == 0,
        "BAR2 at {:#x} is not naturally aligned\n{}",
        bar2.address,
        run.context()
    );

    // The self-test maps that same BAR and reads the (zeroed) file through it.
    let probe: SharedMemoryProbe = run.report();
    assert_eq!(
        (probe.bar.address, probe.bar.size),
        (bar2.address, bar2.size)
    );
    assert_eq!((probe.first, probe.last), (0, 0), "{}", run.context());
}

#[test]
fn pc_inventory_lists_ivshmem_with_1m_bar2() {
    inventory_shows_ivshmem(Machine::Pc, MIB);
}

#[test]
fn q35_inventory_lists_ivshmem_with_2m_bar2() {
    inventory_shows_ivshmem(Machine::Q35, 2 * MIB);
}

#[test]
fn q35_inventory_lists_ivshmem_with_1m_bar2() {
    inventory_shows_ivshmem(Machine::Q35, MIB);
}

#[test]
fn pc_inventory_lists_ivshmem_with_2m_bar2() {
    inventory_shows_ivshmem(Machine::Pc, 2 * MIB);
}

/// A 4 GiB BAR2 cannot fit below 4 GiB, so the firmware puts it at or above
/// 0x1_0000_0000; the kernel must map it there and read the host's values.
fn shm_above_4g_is_mapped(machine: Machine) {
    const FIRST: u64 = 0x0123_4567_89ab_cdef;
    const LAST: u64 = 0xfedc_ba98_7654_3210;
    let shm = shm_file("e2e-4g", 4 * GIB);
    shm.write_at(0, &FIRST.to_le_bytes()).unwrap();
    shm.write_at(shm.size() - 8, &LAST.to_le_bytes()).unwrap();

    let run = boot(machine, selftest(SelfTest::SharedMemory), Some(&shm));
    run.assert_outcome(Outcome::Exit(ExitCode::Success));
    let probe: SharedMemoryProbe = run.report();
    assert_eq!(probe.bar.kind, BarKind::Memory64, "{}", run.context());
    assert_eq!(probe.bar.size, 4 * GIB, "{}", run.context());
    assert!(
        probe.bar.address >= 0x1_0000_0000,
        "BAR2 at {:#x} is not above 4 GiB\n{}",
        probe.bar.address,
        run.context()
    );
    assert_eq!(
        probe.first,
        FIRST,
        "first u64 of the shared memory\n{}",
        run.context()
    );
    assert_eq!(
        probe.last,
        LAST,
        "last u64 of the shared memory\n{}",
        run.context()
    );
}

#[test]
fn q35_shm_bar_above_4g_is_mapped_and_readable() {
    shm_above_4g_is_mapped(Machine::Q35);
}

#[test]
fn pc_shm_bar_above_4g_is_mapped_and_readable() {
    shm_above_4g_is_mapped(Machine::Pc);
}

/// The kernel's complaint about its command line.
fn cmdline_complaint(run: &Run) -> String {
    run.report_where(|fatal: &Fatal<String>| fatal.kind == FatalKind::CommandLine)
        .message
}

#[test]
fn unknown_cmdline_key_fails_naming_it() {
    let run = boot_unchecked(Machine::Pc, "log=info bogus=1");
    run.assert_outcome(Outcome::Exit(ExitCode::BadCommandLine));
    let message = cmdline_complaint(&run);
    assert!(
        message.contains("unknown key 'bogus'"),
        "message must name the key: {message:?}"
    );
    // It lists the keys it does know.
    assert!(
        message.contains("log") && message.contains("selftest"),
        "{message:?}"
    );
    run.assert_no::<BootOk>();
}

#[test]
fn bad_cmdline_value_fails_naming_key_and_value() {
    let run = boot_unchecked(Machine::Pc, "log=loud");
    run.assert_outcome(Outcome::Exit(ExitCode::BadCommandLine));
    let message = cmdline_complaint(&run);
    assert!(
        message.contains("'loud'") && message.contains("'log'"),
        "message must name the value and the key: {message:?}"
    );
}

#[test]
fn page_fault_selftest_reports_the_exception() {
    let run = boot(Machine::Pc, selftest(SelfTest::PageFault), None);
    run.assert_outcome(Outcome::Exit(ExitCode::CpuException));
    let report =
        ExceptionReport::parse(&run.lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    assert_eq!(report.headline.vector, 14, "{}", run.context());
    assert!(report.headline.name.contains("#PF"), "{report:?}");
    // The kernel is linked at 1 MiB; the faulting load is in its text.
    assert!(
        report.frame.rip >= 0x10_0000,
        "RIP {:#x} is not in the kernel\n{}",
        report.frame.rip,
        run.context()
    );
    // A supervisor read of a non-present page: P=0, W=0, U=0.
    assert_eq!(
        report.error_code,
        ExceptionErrorCode(0),
        "{}",
        run.context()
    );
    let fault = report
        .page_fault
        .unwrap_or_else(|| panic!("no CR2 line\n{}", run.context()));
    assert_eq!(
        fault.cr2, 0x10_0000_0000,
        "CR2 {:#x} is not the self-test's unmapped address",
        fault.cr2
    );
    assert_eq!(fault.cause, "read of a non-present page");
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let run = boot(Machine::Pc, selftest(SelfTest::StackOverflow), None);
    run.assert_outcome(Outcome::Exit(ExitCode::CpuException));
    let guard = run.report::<StackGuard>().guard_page;
    let report =
        ExceptionReport::parse(&run.lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    assert_eq!(report.headline.vector, 14, "{}", run.context());
    let cr2 = report
        .page_fault
        .unwrap_or_else(|| panic!("no CR2 line\n{}", run.context()))
        .cr2;
    assert!(
        (guard..guard + 0x1000).contains(&cr2),
        "CR2 {cr2:#x} is not in the guard page at {guard:#x}\n{}",
        run.context()
    );
}

#[test]
fn panic_selftest_reports_the_panic() {
    let run = boot(Machine::Pc, selftest(SelfTest::Panic), None);
    run.assert_outcome(Outcome::Exit(ExitCode::Panic));
    // The panic message may go on over the next lines (`panicked at
    // file:line:` first).
    let start = run
        .lines
        .iter()
        .position(|line| {
            line.parse::<Fatal<String>>()
                .is_ok_and(|fatal| fatal.kind == FatalKind::Panic)
        })
        .unwrap_or_else(|| panic!("no KERNEL PANIC line\n{}", run.context()));
    assert!(
        run.lines[start..]
            .iter()
            .any(|line| line.contains("deliberate panic")),
        "{}",
        run.context()
    );
    run.assert_no::<ExceptionHeadline<String>>();
}

#[test]
fn oom_selftest_reports_out_of_memory() {
    let run = boot(Machine::Pc, selftest(SelfTest::OutOfMemory), None);
    run.assert_outcome(Outcome::Exit(ExitCode::OutOfMemory));
    run.report_where(|fatal: &Fatal<String>| fatal.kind == FatalKind::OutOfMemory);
}
