//! Discovery of a real ivshmem-v2 device (Jailhouse, the Siemens QEMU fork):
//! PCI identity, the vendor capability, the BAR0 registers and the layout.
//!
//! Pure: it talks to hardware only through [`ConfigAccess`] and
//! [`RegisterBlock`], so the tests below run it against fake devices with both
//! capability layouts (docs/ivshmem-v2.md §3.3).

use super::error::{ProbeError, Requirements};
use super::layout::{Layout, Sections};
use super::registers::RegisterBlock;
use crate::pci::{self, ConfigAccess, Function, Msix};

/// Vendor ID: Siemens (docs/ivshmem-v2.md §2).
pub const VENDOR: u16 = 0x110a;
/// Device ID of ivshmem-v2.
pub const DEVICE: u16 = 0x4106;
/// Base class of ivshmem-v2 ("unassigned class").
pub const CLASS: u8 = 0xff;

/// BAR0 register offsets (docs/ivshmem-v2.md §5); aligned 32-bit accesses only.
pub mod register {
    /// Own peer ID (RO).
    pub const ID: u32 = 0x00;
    /// Maximum number of peers, including self (RO).
    pub const MAX_PEERS: u32 = 0x04;
    /// Bit 0: enable interrupts (RW).
    pub const INT_CONTROL: u32 = 0x08;
    /// Bits 0–15 vector, bits 16–31 target peer (WO).
    pub const DOORBELL: u32 = 0x0c;
    /// Own state; copied into the state table (RW).
    pub const STATE: u32 = 0x10;
}

/// Vendor capability fields, relative to the capability (docs/ivshmem-v2.md §3.2).
mod capability_field {
    /// Capability length (byte).
    pub const LENGTH: u16 = 0x02;
    /// State Table Size (u32).
    pub const STATE_TABLE_SIZE: u16 = 0x04;
    /// R/W Section Size (u64).
    pub const RW_SECTION_SIZE: u16 = 0x08;
    /// Output Section Size (u64).
    pub const OUTPUT_SECTION_SIZE: u16 = 0x10;
    /// Base Address (u64), only when the length is 0x20.
    pub const BASE_ADDRESS: u16 = 0x18;
}

/// Capability length without a Base Address (QEMU fork, BAR2 present).
const LENGTH_WITHOUT_BASE: u8 = 0x18;
/// Capability length with a Base Address (Jailhouse, no BAR2).
const LENGTH_WITH_BASE: u8 = 0x20;
/// Privileged Control bit 0 (one-shot interrupt mode), as a bit of the capability's first dword.
const ONE_SHOT: u32 = 1 << 24;

/// What discovery found on an ivshmem-v2 device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Discovered {
    /// Our peer ID.
    pub id: u16,
    /// The protocol advertised in the class code.
    pub protocol: u16,
    /// The shared memory.
    pub sections: Sections,
    /// Offset of the vendor capability.
    pub vendor_capability: u16,
    /// The MSI-X capability, if any (vectors = its table size).
    pub msix: Option<Msix>,
}

fn read64(config: &dyn ConfigAccess, function: &Function, offset: u16) -> u64 {
    // Two dword reads, low first (docs/ivshmem-v2.md §3.2: the fields are not 8-byte aligned under QEMU).
    u64::from(config.read32(function.bdf, offset))
        | (u64::from(config.read32(function.bdf, offset + 4)) << 32)
}

/// Reads the PCI identity, capability and registers of a 110a:4106 function.
/// Clears one-shot mode (it survives a QEMU reset, docs/ivshmem-v2.md §15).
pub fn discover(
    config: &dyn ConfigAccess,
    function: &Function,
    registers: &dyn RegisterBlock,
    requirements: Requirements,
) -> Result<Discovered, ProbeError> {
    if (function.vendor, function.device) != (VENDOR, DEVICE) {
        return Err(ProbeError::NoDevice);
    }
    if function.class != CLASS {
        return Err(ProbeError::WrongClass {
            class: function.class,
        });
    }
    let protocol = (u16::from(function.subclass) << 8) | u16::from(function.prog_if);
    requirements.check_protocol(protocol)?;
    let capability = pci::find_capability(config, function.bdf, pci::capability::VENDOR)
        .ok_or(ProbeError::NoVendorCapability)?
        .offset;
    let length = config.read8(function.bdf, capability + capability_field::LENGTH);
    if length != LENGTH_WITHOUT_BASE && length != LENGTH_WITH_BASE {
        return Err(ProbeError::BadCapabilityLength { length });
    }
    let header = config.read32(function.bdf, capability);
    config.write32(function.bdf, capability, header & !ONE_SHOT);

    let state_table_size = u64::from(config.read32(
        function.bdf,
        capability + capability_field::STATE_TABLE_SIZE,
    ));
    let rw_section_size = read64(
        config,
        function,
        capability + capability_field::RW_SECTION_SIZE,
    );
    let output_section_size = read64(
        config,
        function,
        capability + capability_field::OUTPUT_SECTION_SIZE,
    );
    let (base, available) = match function.bar(2) {
        Some(bar) if bar.address == 0 => return Err(ProbeError::BarUnassigned { index: 2 }),
        Some(bar) => (bar.address, bar.size),
        None if length == LENGTH_WITH_BASE => (
            read64(
                config,
                function,
                capability + capability_field::BASE_ADDRESS,
            ),
            u64::MAX,
        ),
        None => return Err(ProbeError::NoSharedMemory),
    };

    let max_peers = requirements.check_max_peers(registers.read32(register::MAX_PEERS))?;
    let id = registers.read32(register::ID);
    if id >= u32::from(max_peers) {
        return Err(ProbeError::BadId {
            id,
            max_peers: u32::from(max_peers),
        });
    }
    let layout = Layout {
        state_table_offset: 0,
        state_table_size,
        rw_section_size,
        output_section_size,
        max_peers,
    };
    Ok(Discovered {
        id: id as u16,
        protocol,
        sections: Sections::new(base, available, layout)?,
        vendor_capability: capability,
        msix: Msix::find(config, function.bdf),
    })
}

#[cfg(test)]
mod tests {
    use super::super::registers::fake::FakeRegisters;
    use super::*;
    use crate::ivshmem::layout::LayoutError;
    use crate::pci::fake::{FakeConfigSpace, FakeFunction};
    use crate::pci::{Bdf, enumerate};

    const BDF: Bdf = Bdf {
        bus: 0,
        device: 0x0e,
        function: 0,
    };

    /// What ivshmem-net asks for.
    const NET: Requirements = Requirements {
        protocol: Some(1),
        min_peers: 2,
        max_peers: 2,
    };

    /// Jailhouse: vendor cap at 0x40 with length 0x20 and a Base Address, MSI-X at 0x60, no BAR2.
    fn jailhouse(protocol: u16, capability_length: u32) -> FakeConfigSpace {
        let class = 0xff00_0000 | (u32::from(protocol) << 8);
        FakeConfigSpace::default().with(
            BDF,
            FakeFunction::new(VENDOR, DEVICE, class)
                .bar32(0, 0xff00_0000, 0x1000)
                .bar32(1, 0xff00_1000, 0x1000)
                .capabilities(&[
                    (
                        0x40,
                        0x0100_0009 | (capability_length << 16),
                        &[0x1000, 0, 0, 0x7f000, 0, 0x3f10_0000, 0],
                    ),
                    (0x60, 0x0001_0011, &[0x0000_0001, 0x0000_0101]),
                ]),
        )
    }

    /// The QEMU fork: vendor cap at 0x4c with length 0x18, MSI-X at 0x40, BAR2 of 1 MiB.
    fn qemu_fork(bar2: bool) -> FakeConfigSpace {
        let mut function = FakeFunction::new(VENDOR, DEVICE, 0xff00_0100)
            .bar32(0, 0xfebf_0000, 0x1000)
            .bar32(1, 0xfebf_1000, 0x1000)
            .capabilities(&[
                (0x4c, 0x0018_0009, &[0x1000, 0x1000, 0, 0x7f000, 0]),
                (0x40, 0x0001_0011, &[0x0000_0001, 0x0000_0801]),
            ]);
        if bar2 {
            function = function.bar64(2, 0xfe00_0000, 0x10_0000);
        }
        FakeConfigSpace::default().with(BDF, function)
    }

    fn probe(
        config: &FakeConfigSpace,
        registers: &FakeRegisters,
    ) -> Result<Discovered, ProbeError> {
        let functions = enumerate(config);
        discover(config, &functions[0], registers, NET)
    }

    #[test]
    fn jailhouse_layout_uses_the_capability_base_address() {
        let config = jailhouse(1, 0x20);
        let registers = FakeRegisters::new(1, 2);
        let found = probe(&config, &registers).unwrap();
        assert_eq!(found.id, 1);
        assert_eq!(found.vendor_capability, 0x40);
        assert_eq!(found.sections.base(), 0x3f10_0000);
        assert_eq!(
            found.sections.layout(),
            Layout {
                state_table_offset: 0,
                state_table_size: 0x1000,
                rw_section_size: 0,
                output_section_size: 0x7f000,
                max_peers: 2
            }
        );
        assert_eq!(found.msix.unwrap().table_size, 2);
        assert_eq!(found.msix.unwrap().pba_offset, 0x100);
        assert_eq!(
            config.peek(BDF, 0x40) & ONE_SHOT,
            0,
            "one-shot mode cleared"
        );
        assert!(
            registers.writes.borrow().is_empty(),
            "discovery only reads BAR0"
        );
    }

    #[test]
    fn qemu_fork_layout_uses_bar2() {
        let config = qemu_fork(true);
        let found = probe(&config, &FakeRegisters::new(0, 2)).unwrap();
        assert_eq!(found.id, 0);
        assert_eq!(found.vendor_capability, 0x4c);
        assert_eq!(found.sections.base(), 0xfe00_0000);
        assert_eq!(
            found.sections.output_section(1).unwrap().address,
            0xfe00_0000 + 0x2000 + 0x7f000
        );
        assert_eq!(found.msix.unwrap().offset, 0x40);
    }

    #[test]
    fn bad_devices_end_in_clear_errors() {
        let no_bar2 = probe(&qemu_fork(false), &FakeRegisters::new(0, 2));
        assert_eq!(no_bar2, Err(ProbeError::NoSharedMemory));

        let short = probe(&jailhouse(1, 0x10), &FakeRegisters::new(0, 2));
        assert_eq!(short, Err(ProbeError::BadCapabilityLength { length: 0x10 }));
        assert!(short.unwrap_err().to_string().contains("length 0x10"));

        let wrong = probe(&jailhouse(0x4000, 0x20), &FakeRegisters::new(0, 2));
        assert_eq!(
            wrong,
            Err(ProbeError::WrongProtocol {
                found: 0x4000,
                expected: 1
            })
        );

        let three = probe(&jailhouse(1, 0x20), &FakeRegisters::new(0, 3));
        assert_eq!(
            three,
            Err(ProbeError::BadMaxPeers {
                found: 3,
                min: 2,
                max: 2
            })
        );
        assert!(three.unwrap_err().to_string().contains("MAX_PEERS is 3"));

        let id = probe(&jailhouse(1, 0x20), &FakeRegisters::new(2, 2));
        assert_eq!(
            id,
            Err(ProbeError::BadId {
                id: 2,
                max_peers: 2
            })
        );

        let small = FakeConfigSpace::default().with(
            BDF,
            FakeFunction::new(VENDOR, DEVICE, 0xff00_0100)
                .bar64(2, 0xfe00_0000, 0x8_0000)
                .capabilities(&[(0x4c, 0x0018_0009, &[0x1000, 0x1000, 0, 0x7f000, 0])]),
        );
        assert!(matches!(
            probe(&small, &FakeRegisters::new(0, 2)),
            Err(ProbeError::Layout(LayoutError::TooLarge { .. }))
        ));
    }
}
