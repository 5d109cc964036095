//! The Jailhouse x86 inmate interface the kernel relies on when it runs as a
//! non-root cell (`docs/jailhouse.md`): the communication region, its cell
//! states and messages, the hypercall numbers, and the cell's memory layout.
//!
//! The kernel reads the region with [`CommRegion::parse`] and writes its
//! state and replies at the offsets in [`offset`]; the cell harness on
//! stock QEMU builds the region with [`CommRegion::encode`] and reads the
//! state back at the same offsets.

use core::fmt;

/// Guest-physical address of the communication region (`docs/jailhouse.md` §1.3).
pub const COMM_REGION_ADDRESS: u64 = 0x10_0000;
/// Size of the communication region.
pub const COMM_REGION_SIZE: usize = 4096;
/// The region's signature.
pub const SIGNATURE: [u8; 6] = *b"JHCOMM";
/// The communication-region ABI revision we implement.
pub const ABI_REVISION: u16 = 2;

/// Guest-physical address (and image offset) of the command-line buffer
/// that `jailhouse cell load … -s "…" -a 0x1000` fills.
pub const CMDLINE_ADDRESS: u64 = 0x1000;
/// Size of the command-line buffer, its NUL terminator included.
pub const CMDLINE_SIZE: usize = 4096;

/// Where the cell's RAM above the communication region starts: `.bss`, the
/// stack, the page tables and the heap live from here (`boot/jailhouse.ld`).
pub const HIGH_RAM_START: u64 = 0x20_0000;
/// The default top of the cell's RAM (`mem=`), matching the shipped cell
/// configuration (`jailhouse/eth-ivshmem-cell.c`: 62 MiB from 2 MiB).
pub const DEFAULT_RAM_TOP: u64 = 64 << 20;
/// The flat image must end below this address (the legacy VGA hole of the
/// QEMU cell harness, and inside the cell's 1 MiB of loadable RAM).
pub const IMAGE_LIMIT: u64 = 0xA_0000;

/// Byte offsets of the communication region's fields (all little-endian).
pub mod offset {
    /// `char signature[6]`.
    pub const SIGNATURE: usize = 0;
    /// `u16 revision`.
    pub const REVISION: usize = 6;
    /// `u32 cell_state`, written by the cell ([`super::CellState`]).
    pub const CELL_STATE: usize = 8;
    /// `u32 msg_to_cell`, written by the hypervisor ([`super::Message`]).
    pub const MSG_TO_CELL: usize = 12;
    /// `u32 reply_from_cell`, written by the cell ([`super::Reply`]).
    pub const REPLY_FROM_CELL: usize = 16;
    /// `u32 flags` ([`super::flags`]).
    pub const FLAGS: usize = 20;
    /// `struct jailhouse_console` (32 bytes), unused by us.
    pub const CONSOLE: usize = 24;
    /// `u64 pci_mmconfig_base` (0: none).
    pub const PCI_MMCONFIG_BASE: usize = 56;
    /// `u16 pm_timer_address`.
    pub const PM_TIMER_ADDRESS: usize = 64;
    /// `u16 num_cpus`.
    pub const NUM_CPUS: usize = 66;
    /// `u32 tsc_khz`.
    pub const TSC_KHZ: usize = 68;
    /// `u32 apic_khz` (0: TSC deadline mode available).
    pub const APIC_KHZ: usize = 72;
    /// The bytes [`super::CommRegion::parse`] reads.
    pub const END: usize = 76;
}

/// Bits of the `flags` field.
pub mod flags {
    /// The cell may print through the debug-console hypercall.
    pub const DBG_PUTC_PERMITTED: u32 = 1 << 0;
    /// The debug console is active (output goes somewhere).
    pub const DBG_PUTC_ACTIVE: u32 = 1 << 1;
}

/// Hypercall numbers (in RAX of `VMCALL`/`VMMCALL`, arguments in RDI, RSI).
pub mod hypercall {
    /// Print one character (RDI) on the hypervisor's debug console.
    pub const DEBUG_CONSOLE_PUTC: u64 = 8;
}

/// The instruction that enters the hypervisor on this CPU.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HypercallInstruction {
    /// Intel VT-x.
    Vmcall,
    /// AMD-V.
    Vmmcall,
}

impl HypercallInstruction {
    /// The instruction for the CPU whose CPUID leaf 0 vendor string (EBX,
    /// EDX, ECX concatenated) is `vendor`: `VMMCALL` on AMD, `VMCALL`
    /// everywhere else (as Jailhouse's own inmates decide).
    pub fn for_vendor(vendor: &[u8; 12]) -> Self {
        if vendor == b"AuthenticAMD" {
            Self::Vmmcall
        } else {
            Self::Vmcall
        }
    }
}

/// A 32-bit value of the region that is not one of the known codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCode(pub u32);

macro_rules! codes {
    ($(#[$meta:meta])* $name:ident { $($(#[$vmeta:meta])* $variant:ident = $value:literal => $text:literal,)* }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        #[repr(u32)]
        pub enum $name {
            $($(#[$vmeta])* $variant = $value,)*
        }

        impl $name {
            /// The value in the communication region.
            pub const fn value(self) -> u32 {
                self as u32
            }

            /// The code with this value.
            pub fn from_value(value: u32) -> Result<Self, UnknownCode> {
                match value {
                    $($value => Ok(Self::$variant),)*
                    other => Err(UnknownCode(other)),
                }
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(match self {
                    $(Self::$variant => $text,)*
                })
            }
        }
    };
}

codes! {
    /// `cell_state`: what the cell tells the hypervisor about itself.
    CellState {
        /// Running, may be shut down.
        Running = 0 => "RUNNING",
        /// Running, refuses shutdown (we never use it).
        RunningLocked = 1 => "RUNNING_LOCKED",
        /// Stopped on purpose (our success).
        ShutDown = 2 => "SHUT_DOWN",
        /// Stopped on a fatal error.
        Failed = 3 => "FAILED",
        /// Stopped because the region's ABI revision is not ours.
        FailedCommRev = 4 => "FAILED_COMM_REV",
    }
}

impl CellState {
    /// Whether the cell has stopped for good.
    pub fn is_final(self) -> bool {
        matches!(self, Self::ShutDown | Self::Failed | Self::FailedCommRev)
    }
}

codes! {
    /// `msg_to_cell`: what the hypervisor asks of the cell.
    Message {
        /// No message pending.
        None = 0 => "NONE",
        /// The root cell wants to shut this cell down or destroy it.
        ShutdownRequest = 1 => "SHUTDOWN_REQUEST",
        /// The system configuration changed (another cell came or went).
        ReconfigCompleted = 2 => "RECONFIG_COMPLETED",
    }
}

codes! {
    /// `reply_from_cell`: the cell's answer to a message.
    Reply {
        /// No reply yet (the hypervisor clears the field before a message).
        None = 0 => "NONE",
        /// The message was not understood.
        Unknown = 1 => "UNKNOWN",
        /// The request is refused.
        RequestDenied = 2 => "REQUEST_DENIED",
        /// The request is granted.
        RequestApproved = 3 => "REQUEST_APPROVED",
        /// An informational message was seen.
        Received = 4 => "RECEIVED",
    }
}

/// What the communication region tells the cell about its platform.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CommRegion {
    /// The `flags` field ([`flags`]).
    pub flags: u32,
    /// The PCI MMCONFIG (ECAM) base, if the platform has one.
    pub pci_mmconfig_base: Option<u64>,
    /// The ACPI PM timer's I/O port, if any.
    pub pm_timer_address: Option<u16>,
    /// CPUs in the cell.
    pub num_cpus: u16,
    /// The TSC frequency in kHz.
    pub tsc_khz: u32,
    /// The local APIC timer's frequency in kHz (`None`: TSC deadline mode
    /// is available instead).
    pub apic_khz: Option<u32>,
}

/// Why a communication region is unusable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommRegionError {
    /// Shorter than [`offset::END`] bytes.
    Truncated(usize),
    /// The signature is not `JHCOMM`: not started by Jailhouse (or its harness).
    BadSignature([u8; 6]),
    /// Another ABI revision than [`ABI_REVISION`] (the cell must stop with
    /// [`CellState::FailedCommRev`]).
    Revision(u16),
    /// `tsc_khz` is 0: the kernel has no clock.
    NoTscFrequency,
}

impl fmt::Display for CommRegionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Truncated(len) => write!(
                f,
                "the communication region is {len} bytes, need {}",
                offset::END
            ),
            Self::BadSignature(found) => write!(
                f,
                "no Jailhouse communication region at {COMM_REGION_ADDRESS:#x} (signature {found:02x?})"
            ),
            Self::Revision(found) => write!(
                f,
                "communication region ABI revision {found}, this kernel speaks {ABI_REVISION}"
            ),
            Self::NoTscFrequency => f.write_str("the communication region gives no TSC frequency"),
        }
    }
}

fn u16_at(bytes: &[u8], at: usize) -> u16 {
    crate::le::u16_at(bytes, at..at + 2)
}

fn u32_at(bytes: &[u8], at: usize) -> u32 {
    crate::le::u32_at(bytes, at..at + 4)
}

fn u64_at(bytes: &[u8], at: usize) -> u64 {
    crate::le::u64_at(bytes, at..at + 8)
}

impl CommRegion {
    /// Reads the platform fields from the region's first [`offset::END`]
    /// bytes (a snapshot: the kernel copies them out of shared memory once).
    pub fn parse(region: &[u8]) -> Result<Self, CommRegionError> {
        if region.len() < offset::END {
            return Err(CommRegionError::Truncated(region.len()));
        }
        let mut signature = [0; 6];
        signature.copy_from_slice(&region[offset::SIGNATURE..offset::SIGNATURE + 6]);
        if signature != SIGNATURE {
            return Err(CommRegionError::BadSignature(signature));
        }
        let revision = u16_at(region, offset::REVISION);
        if revision != ABI_REVISION {
            return Err(CommRegionError::Revision(revision));
        }
        let tsc_khz = u32_at(region, offset::TSC_KHZ);
        if tsc_khz == 0 {
            return Err(CommRegionError::NoTscFrequency);
        }
        let nonzero16 = |value: u16| (value != 0).then_some(value);
        let mmconfig = u64_at(region, offset::PCI_MMCONFIG_BASE);
        let apic_khz = u32_at(region, offset::APIC_KHZ);
        Ok(Self {
            flags: u32_at(region, offset::FLAGS),
            pci_mmconfig_base: (mmconfig != 0).then_some(mmconfig),
            pm_timer_address: nonzero16(u16_at(region, offset::PM_TIMER_ADDRESS)),
            num_cpus: u16_at(region, offset::NUM_CPUS),
            tsc_khz,
            apic_khz: (apic_khz != 0).then_some(apic_khz),
        })
    }

    /// Writes a fresh region (signature, revision, these fields, state
    /// RUNNING, no message) into `region` as the hypervisor would, for the
    /// cell harness. `region` must be at least [`offset::END`] bytes.
    pub fn encode(&self, region: &mut [u8]) {
        region[..offset::END].fill(0);
        region[offset::SIGNATURE..offset::SIGNATURE + 6].copy_from_slice(&SIGNATURE);
        let mut put = |at: usize, bytes: &[u8]| region[at..at + bytes.len()].copy_from_slice(bytes);
        put(offset::REVISION, &ABI_REVISION.to_le_bytes());
        put(
            offset::CELL_STATE,
            &CellState::Running.value().to_le_bytes(),
        );
        put(offset::FLAGS, &self.flags.to_le_bytes());
        put(
            offset::PCI_MMCONFIG_BASE,
            &self.pci_mmconfig_base.unwrap_or(0).to_le_bytes(),
        );
        put(
            offset::PM_TIMER_ADDRESS,
            &self.pm_timer_address.unwrap_or(0).to_le_bytes(),
        );
        put(offset::NUM_CPUS, &self.num_cpus.to_le_bytes());
        put(offset::TSC_KHZ, &self.tsc_khz.to_le_bytes());
        put(offset::APIC_KHZ, &self.apic_khz.unwrap_or(0).to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    fn sample() -> CommRegion {
        CommRegion {
            flags: flags::DBG_PUTC_PERMITTED,
            pci_mmconfig_base: Some(0xb000_0000),
            pm_timer_address: Some(0x608),
            num_cpus: 1,
            tsc_khz: 2_400_000,
            apic_khz: Some(1_000_000),
        }
    }

    #[test]
    fn a_region_reads_back_what_was_written_at_the_documented_offsets() {
        let mut page = [0xaau8; COMM_REGION_SIZE];
        sample().encode(&mut page);
        assert_eq!(&page[..6], b"JHCOMM");
        assert_eq!(page[6..8], [2, 0]);
        assert_eq!(page[8..12], [0, 0, 0, 0], "state RUNNING");
        assert_eq!(page[56..64], 0xb000_0000u64.to_le_bytes());
        assert_eq!(page[68..72], 2_400_000u32.to_le_bytes());
        assert_eq!(page[offset::END], 0xaa, "nothing past the fields");
        assert_eq!(CommRegion::parse(&page), Ok(sample()));
    }

    #[test]
    fn a_bad_signature_is_not_a_region() {
        let mut page = [0u8; 128];
        sample().encode(&mut page);
        page[0] = b'X';
        assert_eq!(
            CommRegion::parse(&page),
            Err(CommRegionError::BadSignature(*b"XHCOMM"))
        );
        assert_eq!(
            CommRegion::parse(&[0; 128]),
            Err(CommRegionError::BadSignature([0; 6]))
        );
    }

    #[test]
    fn another_revision_is_refused_with_its_number() {
        let mut page = [0u8; 128];
        sample().encode(&mut page);
        page[offset::REVISION..offset::REVISION + 2].copy_from_slice(&3u16.to_le_bytes());
        let error = CommRegion::parse(&page).unwrap_err();
        assert_eq!(error, CommRegionError::Revision(3));
        assert!(error.to_string().contains("revision 3"), "{error}");
    }

    #[test]
    fn missing_mmconfig_and_pm_timer_read_as_none() {
        let mut page = [0u8; 128];
        CommRegion {
            pci_mmconfig_base: None,
            pm_timer_address: None,
            apic_khz: None,
            ..sample()
        }
        .encode(&mut page);
        let region = CommRegion::parse(&page).unwrap();
        assert_eq!(region.pci_mmconfig_base, None);
        assert_eq!(region.pm_timer_address, None);
        assert_eq!(region.apic_khz, None);
    }

    #[test]
    fn a_region_without_a_clock_or_too_short_is_refused() {
        let mut page = [0u8; 128];
        CommRegion {
            tsc_khz: 0,
            ..sample()
        }
        .encode(&mut page);
        assert_eq!(
            CommRegion::parse(&page),
            Err(CommRegionError::NoTscFrequency)
        );
        assert_eq!(
            CommRegion::parse(&page[..40]),
            Err(CommRegionError::Truncated(40))
        );
    }

    #[test]
    fn codes_round_trip_and_unknown_values_are_kept() {
        for state in [
            CellState::Running,
            CellState::RunningLocked,
            CellState::ShutDown,
            CellState::Failed,
            CellState::FailedCommRev,
        ] {
            assert_eq!(CellState::from_value(state.value()), Ok(state));
        }
        assert_eq!(CellState::from_value(9), Err(UnknownCode(9)));
        assert_eq!(Message::from_value(1), Ok(Message::ShutdownRequest));
        assert_eq!(Reply::RequestApproved.value(), 3);
        assert!(CellState::ShutDown.is_final() && !CellState::Running.is_final());
    }

    #[test]
    fn the_hypercall_instruction_follows_the_cpu_vendor() {
        assert_eq!(
            HypercallInstruction::for_vendor(b"AuthenticAMD"),
            HypercallInstruction::Vmmcall
        );
        assert_eq!(
            HypercallInstruction::for_vendor(b"GenuineIntel"),
            HypercallInstruction::Vmcall
        );
    }
}
