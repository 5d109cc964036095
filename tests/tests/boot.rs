//! Issue 2 acceptance: the kernel boots on `pc` and `q35`, inventories PCI,
//! maps the ivshmem BAR (also above 4 GiB), and ends every fatal path with
//! its report and exit status. Each test boots the real kernel under QEMU.

use abi::exit::ExitCode;
use e2e::{
    BarKind, Machine, Outcome, boot, parse_exception, parse_pci_inventory, parse_shm_line, shm_file,
};

const MIB: u64 = 1 << 20;
const GIB: u64 = 1 << 30;

/// Boots with an `ivshmem-plain` of `size` bytes and checks the inventory
/// lists exactly one 1af4:1110 function with BAR0 (registers) and a 64-bit
/// prefetchable BAR2 of exactly `size`, and that the kernel exits successfully.
fn inventory_shows_ivshmem(machine: Machine, size: u64) {
    let shm = shm_file("e2e-inventory", size);
    let run = boot(machine, "selftest=shm", Some(&shm));
    run.assert_outcome(Outcome::Exit(ExitCode::Success));
    run.line("boot: ok");

    let functions =
        parse_pci_inventory(&run.lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    let ivshmem: Vec<_> = functions
        .iter()
        .filter(|f| (f.vendor, f.device) == (0x1af4, 0x1110))
        .collect();
    assert_eq!(
        ivshmem.len(),
        1,
        "expected exactly one ivshmem function\n{}",
        run.context()
    );
    let f = ivshmem[0];
    assert_eq!(f.class, "05.00.00", "ivshmem is a RAM controller");
    let bar0 = f
        .bar(0)
        .unwrap_or_else(|| panic!("no BAR0\n{}", run.context()));
    assert_eq!(bar0.kind, BarKind::Mem32, "{}", run.context());
    assert_eq!(bar0.size, 0x100, "ivshmem register BAR\n{}", run.context());
    let bar2 = f
        .bar(2)
        .unwrap_or_else(|| panic!("no BAR2\n{}", run.context()));
    assert_eq!(bar2.kind, BarKind::Mem64, "{}", run.context());
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
    let report = parse_shm_line(run.line("shm: ")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!((report.address, report.size), (bar2.address, bar2.size));
    assert_eq!((report.first, report.last), (0, 0), "{}", run.context());
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

    let run = boot(machine, "selftest=shm", Some(&shm));
    run.assert_outcome(Outcome::Exit(ExitCode::Success));
    let report = parse_shm_line(run.line("shm: ")).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.bar, BarKind::Mem64, "{}", run.context());
    assert_eq!(report.size, 4 * GIB, "{}", run.context());
    assert!(
        report.address >= 0x1_0000_0000,
        "BAR2 at {:#x} is not above 4 GiB\n{}",
        report.address,
        run.context()
    );
    assert_eq!(
        report.first,
        FIRST,
        "first u64 of the shared memory\n{}",
        run.context()
    );
    assert_eq!(
        report.last,
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

#[test]
fn unknown_cmdline_key_fails_naming_it() {
    let run = boot(Machine::Pc, "log=info bogus=1", None);
    run.assert_outcome(Outcome::Exit(ExitCode::BadCommandLine));
    let line = run.line("cmdline: ");
    assert!(
        line.contains("unknown key 'bogus'"),
        "message must name the key: {line:?}"
    );
    // It lists the keys it does know.
    assert!(
        line.contains("log") && line.contains("selftest"),
        "{line:?}"
    );
    assert!(
        !run.lines.iter().any(|l| l.contains("boot: ok")),
        "{}",
        run.context()
    );
}

#[test]
fn bad_cmdline_value_fails_naming_key_and_value() {
    let run = boot(Machine::Pc, "log=loud", None);
    run.assert_outcome(Outcome::Exit(ExitCode::BadCommandLine));
    let line = run.line("cmdline: ");
    assert!(
        line.contains("'loud'") && line.contains("'log'"),
        "message must name the value and the key: {line:?}"
    );
}

#[test]
fn page_fault_selftest_reports_the_exception() {
    let run = boot(Machine::Pc, "selftest=pagefault", None);
    run.assert_outcome(Outcome::Exit(ExitCode::CpuException));
    let report = parse_exception(&run.lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    assert_eq!(report.vector, 14, "{}", run.context());
    assert!(report.name.contains("#PF"), "{report:?}");
    // The kernel is linked at 1 MiB; the faulting load is in its text.
    assert!(
        report.rip >= 0x10_0000,
        "RIP {:#x} is not in the kernel\n{}",
        report.rip,
        run.context()
    );
    // A supervisor read of a non-present page: P=0, W=0, U=0.
    assert_eq!(report.error_code, Some(0), "{}", run.context());
    let (cr2, why) = report
        .cr2
        .unwrap_or_else(|| panic!("no CR2 line\n{}", run.context()));
    assert_eq!(
        cr2, 0x10_0000_0000,
        "CR2 {cr2:#x} is not the self-test's unmapped address"
    );
    assert_eq!(why, "(read of a non-present page)");
}

#[test]
fn stack_overflow_hits_the_guard_page() {
    let run = boot(Machine::Pc, "selftest=stack-overflow", None);
    run.assert_outcome(Outcome::Exit(ExitCode::CpuException));
    let line = run.line("self-test: overflowing the stack; guard page at ");
    let guard = line
        .rsplit(' ')
        .next()
        .and_then(|hex| u64::from_str_radix(hex.trim_start_matches("0x"), 16).ok())
        .unwrap_or_else(|| panic!("no guard address in {line:?}\n{}", run.context()));
    let report = parse_exception(&run.lines).unwrap_or_else(|e| panic!("{e}\n{}", run.context()));
    assert_eq!(report.vector, 14, "{}", run.context());
    let (cr2, _) = report
        .cr2
        .unwrap_or_else(|| panic!("no CR2 line\n{}", run.context()));
    assert!(
        (guard..guard + 0x1000).contains(&cr2),
        "CR2 {cr2:#x} is not in the guard page at {guard:#x}\n{}",
        run.context()
    );
}

#[test]
fn panic_selftest_reports_the_panic() {
    let run = boot(Machine::Pc, "selftest=panic", None);
    run.assert_outcome(Outcome::Exit(ExitCode::Panic));
    run.line("KERNEL PANIC: ");
    run.line("deliberate panic");
    assert!(
        !run.lines.iter().any(|l| l.contains("CPU EXCEPTION")),
        "{}",
        run.context()
    );
}

#[test]
fn oom_selftest_reports_out_of_memory() {
    let run = boot(Machine::Pc, "selftest=oom", None);
    run.assert_outcome(Outcome::Exit(ExitCode::OutOfMemory));
    run.line("OUT OF MEMORY: ");
}
