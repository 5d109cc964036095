//! The Jailhouse cell platform (docs/jailhouse.md): the communication region
//! at 0x100000, the command-line buffer at 0x1000, the debug-console
//! hypercall, and the cell's life cycle (its state, and the hypervisor's
//! messages). The only code that touches those addresses.
//!
//! The layout and the codes are the `abi` crate's
//! ([`abi::jailhouse`]), shared with the cell harness on the host.

use core::sync::atomic::{AtomicBool, AtomicU8, Ordering};

use abi::jailhouse::{
    COMM_REGION_ADDRESS, CellState, CommRegion, CommRegionError, HypercallInstruction, Message,
    Reply, hypercall, offset,
};
use log::{info, warn};

/// Set once the kernel knows it runs in a Jailhouse cell.
static IN_CELL: AtomicBool = AtomicBool::new(false);

/// Whether the kernel was entered through the Jailhouse reset vector (the
/// cell life cycle replaces `isa-debug-exit`).
pub fn in_cell() -> bool {
    IN_CELL.load(Ordering::Relaxed)
}

/// What a `SHUTDOWN_REQUEST` gets while the kernel runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ShutdownPolicy {
    /// A client app is measuring: refuse, with a log line.
    Deny = 0,
    /// Idle, or a server: approve and stop as `SHUT_DOWN`.
    Approve = 1,
}

static POLICY: AtomicU8 = AtomicU8::new(ShutdownPolicy::Approve as u8);

/// Sets how the kernel answers a shutdown request from now on.
pub fn set_shutdown_policy(policy: ShutdownPolicy) {
    POLICY.store(policy as u8, Ordering::Relaxed);
}

/// The address of a 32-bit field of the communication region.
fn field(at: usize) -> *mut u32 {
    (COMM_REGION_ADDRESS as usize + at) as *mut u32
}

fn read_field(at: usize) -> u32 {
    // SAFETY: only called once `enter` found the region (IN_CELL); the boot
    // page tables identity-map it, and the hypervisor writes it concurrently,
    // hence the volatile access of an aligned u32.
    unsafe { core::ptr::read_volatile(field(at)) }
}

fn write_field(at: usize, value: u32) {
    // SAFETY: as in `read_field`; the fields we write (state, reply) are the
    // cell's to write.
    unsafe { core::ptr::write_volatile(field(at), value) }
}

/// Reads and checks the communication region and marks the kernel as a
/// cell. On an unknown ABI revision the cell stops at once with
/// `FAILED_COMM_REV`, as Jailhouse expects.
///
/// # Safety
///
/// Call once, and only when the kernel was entered through the Jailhouse
/// reset vector: then 0x100000 is the communication region (and not, as
/// under PVH, the kernel image).
pub unsafe fn enter() -> Result<CommRegion, CommRegionError> {
    let mut bytes = [0u8; offset::END];
    for (index, byte) in bytes.iter_mut().enumerate() {
        // SAFETY: the caller guarantees the region is there; the boot page
        // tables identity-map it; byte reads of it cannot fault.
        *byte = unsafe {
            core::ptr::read_volatile((COMM_REGION_ADDRESS as usize + index) as *const u8)
        };
    }
    let region = CommRegion::parse(&bytes);
    match region {
        Ok(_) => IN_CELL.store(true, Ordering::Relaxed),
        // Nothing says how we may print yet: stop silently, in the one
        // field every revision keeps at the same place.
        Err(CommRegionError::Revision(_)) => stop(CellState::FailedCommRev),
        Err(_) => {}
    }
    region
}

/// The command line `jailhouse cell load … -s "…" -a 0x1000` wrote into the
/// image's buffer: up to the first NUL, which must be valid UTF-8.
pub fn command_line() -> Result<&'static str, core::str::Utf8Error> {
    unsafe extern "C" {
        /// The buffer at 0x1000 (`boot`), `abi::jailhouse::CMDLINE_SIZE` bytes.
        static jailhouse_cmdline: [u8; abi::jailhouse::CMDLINE_SIZE];
    }
    // SAFETY: the buffer is part of the image; the loader wrote it before
    // the cell started and nothing writes it afterwards.
    let buffer: &'static [u8; abi::jailhouse::CMDLINE_SIZE] = unsafe { &jailhouse_cmdline };
    let end = buffer
        .iter()
        .position(|byte| *byte == 0)
        .unwrap_or(buffer.len());
    core::str::from_utf8(&buffer[..end])
}

/// The hypercall instruction of this CPU, from the CPUID vendor string.
pub fn hypercall_instruction() -> HypercallInstruction {
    let leaf = core::arch::x86_64::__cpuid(0);
    let mut vendor = [0u8; 12];
    vendor[..4].copy_from_slice(&leaf.ebx.to_le_bytes());
    vendor[4..8].copy_from_slice(&leaf.edx.to_le_bytes());
    vendor[8..].copy_from_slice(&leaf.ecx.to_le_bytes());
    HypercallInstruction::for_vendor(&vendor)
}

/// Prints one byte on the hypervisor's debug console.
pub fn debug_putc(instruction: HypercallInstruction, byte: u8) {
    // SAFETY: the console only uses this once the communication region's
    // flags permit the hypercall; it takes RAX = number, RDI = character,
    // returns in RAX and touches no memory of ours.
    unsafe {
        match instruction {
            HypercallInstruction::Vmcall => core::arch::asm!(
                "vmcall",
                inout("rax") hypercall::DEBUG_CONSOLE_PUTC => _,
                in("rdi") u64::from(byte),
                options(nostack),
            ),
            HypercallInstruction::Vmmcall => core::arch::asm!(
                "vmmcall",
                inout("rax") hypercall::DEBUG_CONSOLE_PUTC => _,
                in("rdi") u64::from(byte),
                options(nostack),
            ),
        }
    }
}

/// What the kernel does about a message from the hypervisor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// No message: nothing to do.
    Nothing,
    /// Reply, and go on.
    Reply(Reply),
    /// Approve the shutdown request, then stop as `SHUT_DOWN`.
    ShutDown,
}

/// The answer to the raw `msg_to_cell` value under `policy` (pure: the
/// decision of [`service_messages`]).
pub fn answer_for(raw: u32, policy: ShutdownPolicy) -> Answer {
    match Message::from_value(raw) {
        Ok(Message::None) => Answer::Nothing,
        Ok(Message::ShutdownRequest) => match policy {
            ShutdownPolicy::Approve => Answer::ShutDown,
            ShutdownPolicy::Deny => Answer::Reply(Reply::RequestDenied),
        },
        Ok(Message::ReconfigCompleted) => Answer::Reply(Reply::Received),
        Err(_) => Answer::Reply(Reply::Unknown),
    }
}

/// Answers a pending hypervisor message, if any (called from the idle
/// paths, [`answer_for`] decides): an approved shutdown request is
/// answered and then the cell stops through `on_approve`; everything else
/// is answered with a log line and the kernel goes on.
pub fn service_messages(on_approve: fn() -> !) {
    if !in_cell() {
        return;
    }
    let raw = read_field(offset::MSG_TO_CELL);
    let policy = if POLICY.load(Ordering::Relaxed) == ShutdownPolicy::Approve as u8 {
        ShutdownPolicy::Approve
    } else {
        ShutdownPolicy::Deny
    };
    match answer_for(raw, policy) {
        Answer::Nothing => {}
        Answer::ShutDown => {
            info!("jailhouse: shutdown request approved");
            answer(Reply::RequestApproved);
            on_approve()
        }
        Answer::Reply(reply) => {
            match reply {
                Reply::RequestDenied => {
                    warn!("jailhouse: shutdown request denied: an app is still measuring");
                }
                Reply::Received => info!("jailhouse: the system configuration changed"),
                _ => warn!("jailhouse: unknown message {raw:#x}"),
            }
            answer(reply);
        }
    }
}

/// Clears the message, then gives the reply (the hypervisor waits for it).
fn answer(reply: Reply) {
    write_field(offset::MSG_TO_CELL, Message::None.value());
    core::sync::atomic::fence(Ordering::SeqCst);
    write_field(offset::REPLY_FROM_CELL, reply.value());
}

/// Writes the cell's final state and halts for ever.
pub fn stop(state: CellState) -> ! {
    core::sync::atomic::fence(Ordering::SeqCst);
    write_field(offset::CELL_STATE, state.value());
    halt()
}

fn halt() -> ! {
    loop {
        x86_64::instructions::interrupts::disable();
        x86_64::instructions::hlt();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_are_answered_by_the_policy() {
        use ShutdownPolicy::{Approve, Deny};
        assert_eq!(answer_for(0, Approve), Answer::Nothing);
        assert_eq!(answer_for(0, Deny), Answer::Nothing);
        assert_eq!(answer_for(1, Approve), Answer::ShutDown);
        assert_eq!(answer_for(1, Deny), Answer::Reply(Reply::RequestDenied));
        assert_eq!(answer_for(2, Deny), Answer::Reply(Reply::Received));
        assert_eq!(answer_for(2, Approve), Answer::Reply(Reply::Received));
        assert_eq!(answer_for(7, Approve), Answer::Reply(Reply::Unknown));
    }
}
