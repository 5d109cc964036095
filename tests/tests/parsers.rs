//! The serial-output parsers the end-to-end tests rely on: they must accept
//! the kernel's format and reject anything else, or the VM tests would be
//! vacuous. No VM is started here.

use e2e::{
    BarKind, DeviceLine, parse_device_line, parse_exception, parse_link_up, parse_pci_inventory,
    parse_ping_summary, parse_shm_line, parse_tcp_echo, parse_udp_echo,
};

const PC_SERIAL: &str = "\
[   0.002263] INFO  PCI: configuration through port I/O
PCI inventory (3 functions):
pci 00:00.0 8086:1237 class 06.00.00 rev 02
pci 00:01.1 8086:7010 class 01.01.80 rev 00
pci 00:01.1   BAR4 io 0xc000 size 0x10
pci 00:02.0 1af4:1110 class 05.00.00 rev 01
pci 00:02.0   BAR0 mem32 0xfebff000 size 0x100
pci 00:02.0   BAR2 mem64 prefetchable 0xfea00000 size 0x100000
shm: BAR2 mem64 prefetchable 0xfea00000 size 0x100000 first 0x0000000000000000 last 0x9900ffeeddccbbaa
boot: ok
";

#[test]
fn inventory_is_parsed() {
    let lines: Vec<&str> = PC_SERIAL.lines().collect();
    let functions = parse_pci_inventory(&lines).unwrap();
    assert_eq!(functions.len(), 3);
    let ivshmem = &functions[2];
    assert_eq!(
        (ivshmem.bdf.as_str(), ivshmem.vendor, ivshmem.device),
        ("00:02.0", 0x1af4, 0x1110)
    );
    let bar2 = ivshmem.bar(2).unwrap();
    assert_eq!(bar2.kind, BarKind::Mem64);
    assert!(bar2.prefetchable);
    assert_eq!((bar2.address, bar2.size), (0xfea0_0000, 0x10_0000));
    assert!(!ivshmem.bar(0).unwrap().prefetchable);
    assert_eq!(functions[1].bar(4).unwrap().kind, BarKind::Io);
    assert!(functions[0].bars.is_empty());
}

#[test]
fn inventory_rejects_bad_input() {
    let lines: Vec<&str> = PC_SERIAL.lines().collect();
    assert!(parse_pci_inventory(&lines[2..]).is_err(), "no header");
    let wrong_count = PC_SERIAL.replace("(3 functions)", "(4 functions)");
    let lines: Vec<&str> = wrong_count.lines().collect();
    assert!(parse_pci_inventory(&lines).is_err(), "count mismatch");
    let bad_size = PC_SERIAL.replace("size 0x100000\n", "size 1M\n");
    let lines: Vec<&str> = bad_size.lines().collect();
    assert!(parse_pci_inventory(&lines).is_err(), "size not hex");
    let orphan = PC_SERIAL.replace("pci 00:01.1   BAR4", "pci 00:03.0   BAR4");
    let lines: Vec<&str> = orphan.lines().collect();
    assert!(
        parse_pci_inventory(&lines).is_err(),
        "BAR of another function"
    );
}

#[test]
fn shm_line_is_parsed() {
    let line = PC_SERIAL.lines().find(|l| l.starts_with("shm: ")).unwrap();
    let report = parse_shm_line(line).unwrap();
    assert_eq!(report.bar, BarKind::Mem64);
    assert_eq!((report.address, report.size), (0xfea0_0000, 0x10_0000));
    assert_eq!((report.first, report.last), (0, 0x9900_ffee_ddcc_bbaa));
    assert!(parse_shm_line("shm: BAR2 mem64 0x1 size 0x2 first 0x3").is_err());
    assert!(parse_shm_line("boot: ok").is_err());
}

#[test]
fn exception_report_is_parsed() {
    let serial = [
        "CPU EXCEPTION #PF page fault (vector 14)",
        "  RIP 0x000000000010605f  CS 0x0008  RFLAGS 0x00000006  RSP 0x0000000000231660  SS 0x0010",
        "  error code 0x0",
        "  CR2 0x0000001000000000 (read of a non-present page)",
        "  RAX 0x1000000000 RBX 0x232f70",
    ];
    let report = parse_exception(&serial).unwrap();
    assert_eq!(report.name, "#PF page fault");
    assert_eq!(report.vector, 14);
    assert_eq!(report.rip, 0x10_605f);
    assert_eq!(report.error_code, Some(0));
    assert_eq!(
        report.cr2,
        Some((0x10_0000_0000, "(read of a non-present page)".into()))
    );
    assert!(parse_exception(&serial[1..]).is_err(), "no headline");
    assert!(
        parse_exception(&[serial[0], serial[2]]).is_err(),
        "no RIP line"
    );
}

#[test]
fn device_line_is_parsed() {
    let line = "ivshmem: ivshmem-v2 emulated on ivshmem-doorbell at 00:02.0, id 1 of 2, protocol 0x0001, 2 vector(s)";
    assert_eq!(
        parse_device_line(line),
        Ok(DeviceLine {
            kind: "ivshmem-v2 emulated on ivshmem-doorbell".into(),
            bdf: "00:02.0".into(),
            id: 1,
            max_peers: 2,
            protocol: 1,
            vectors: 2,
        })
    );
    for bad in [
        "ivshmem: device speaks protocol 0x4000, expected 0x0001",
        "[   0.016] INFO  ivshmem: state table 0xfea01000+0x1000, R/W section 0xfea02000+0x0",
        "ivshmem: ivshmem-plain at 00:02.0, id one of 2, protocol 0x0001, 0 vector(s)",
        "ivshmem: ivshmem-plain at 00:02.0, id 0 of 2, protocol 1, 0 vector(s)",
        "ivshmem: ivshmem-plain at 00:02.0, id 0 of 2, protocol 0x0001",
    ] {
        assert!(parse_device_line(bad).is_err(), "{bad}");
    }
}

#[test]
fn link_and_app_results_are_parsed() {
    assert_eq!(parse_link_up("link: up (link-ups 2, resets 1)"), Ok((2, 1)));
    assert!(parse_link_up("link: down (resets 1)").is_err());
    assert!(parse_link_up("link: up").is_err());

    assert_eq!(
        parse_ping_summary("ping: 5 transmitted, 4 received, 20% loss"),
        Ok((5, 4, 20))
    );
    assert!(parse_ping_summary("ping: rtt min/avg/max = 0.1/0.2/0.3 ms").is_err());
    assert!(parse_ping_summary("ping: 5 transmitted, 5 received").is_err());

    assert_eq!(
        parse_tcp_echo("tcp-echo: 1048576 bytes verified, throughput 427.3 Mbit/s"),
        Ok((1_048_576, 427.3))
    );
    assert!(parse_tcp_echo("tcp-echo: 1048576 bytes verified, throughput fast").is_err());
    assert!(parse_tcp_echo("tcp-echo: PASS").is_err());

    assert_eq!(
        parse_udp_echo("udp-echo: 4 of 5 datagrams of 56 bytes echoed intact"),
        Ok((4, 5, 56))
    );
    assert!(parse_udp_echo("udp-echo: 5 of 5 datagrams echoed intact").is_err());
    assert!(parse_udp_echo("udp-echo: datagram 3 was not echoed intact within 2 s").is_err());
}
