//! The IDT: every vector, exception or interrupt, enters through a small stub
//! on an IST stack, saves all general registers and the SSE state (the
//! precompiled `core` uses SSE, docs/toolchain.md §7), and calls `trap_handler`.
//!
//! CPU exceptions are fatal: the kernel prints the vector, RIP, error code and
//! (for page faults) CR2, and exits with
//! [`ExitCode::CpuException`].
//! Vectors 32–254 run the [`Handler`] registered with [`register`] (set a
//! bit in a device's own pending word, or nothing but end a `hlt`); the
//! local APIC gets its EOI afterwards. Devices take their IDT vectors from
//! [`allocate`].

use core::ptr;
use core::sync::atomic::{AtomicPtr, AtomicU8, AtomicU32, Ordering};
use spin::Once;
use x86_64::VirtAddr;
use x86_64::structures::idt::InterruptDescriptorTable;

use crate::exit::exit;
use crate::gdt::{IST_DOUBLE_FAULT, IST_GENERAL, IST_NMI};
use abi::exit::ExitCode;
use abi::report::{ExceptionErrorCode, ExceptionFrame, ExceptionHeadline, PageFaultAddress};

/// The spurious-interrupt vector programmed into the local APIC; it gets no EOI.
pub const SPURIOUS_VECTOR: u8 = 0xff;

/// Registers and stub data saved on entry, in memory order (lowest address first).
#[repr(C)]
#[derive(Debug)]
pub struct TrapFrame {
    rax: u64,
    rbx: u64,
    rcx: u64,
    rdx: u64,
    rsi: u64,
    rdi: u64,
    rbp: u64,
    r8: u64,
    r9: u64,
    r10: u64,
    r11: u64,
    r12: u64,
    r13: u64,
    r14: u64,
    r15: u64,
    vector: u64,
    error_code: u64,
    rip: u64,
    cs: u64,
    rflags: u64,
    rsp: u64,
    ss: u64,
}

// The stubs: 256 entries of 16 bytes at `isr_stubs + 16 * vector`. Vectors
// whose exception pushes no error code push a 0 so that every frame has the
// same shape. 0x60227d00 has a bit set for each vector below 32 that pushes an
// error code: 8, 10–14, 17, 21, 29, 30 (Intel SDM vol. 3, table 6-1).
core::arch::global_asm!(
    r#"
    .section .text.isr, "ax"
    .balign 16
    .global isr_stubs
isr_stubs:
    .set vector, 0
    .rept 256
    .balign 16
    .if vector < 32
    .if ((0x60227d00 >> vector) & 1) == 0
    pushq $0
    .endif
    .else
    pushq $0
    .endif
    pushq $vector
    jmp isr_common
    .set vector, vector + 1
    .endr

isr_common:
    push %r15
    push %r14
    push %r13
    push %r12
    push %r11
    push %r10
    push %r9
    push %r8
    push %rbp
    push %rdi
    push %rsi
    push %rdx
    push %rcx
    push %rbx
    push %rax
    mov %rsp, %rbx
    sub $512, %rsp
    and $-16, %rsp
    fxsave64 (%rsp)
    mov %rbx, %rdi
    cld
    call {handler}
    fxrstor64 (%rsp)
    mov %rbx, %rsp
    pop %rax
    pop %rbx
    pop %rcx
    pop %rdx
    pop %rsi
    pop %rdi
    pop %rbp
    pop %r8
    pop %r9
    pop %r10
    pop %r11
    pop %r12
    pop %r13
    pop %r14
    pop %r15
    add $16, %rsp
    iretq
"#,
    handler = sym trap_handler,
    options(att_syntax)
);

unsafe extern "C" {
    /// The first of the 256 entry stubs defined above.
    static isr_stubs: u8;
}

/// Size of one stub; must match `.balign 16` above.
const STUB_SIZE: u64 = 16;

/// Per vector 32–255: the word a registered [`Handler`] sets bits in (null:
/// nothing registered).
static WORDS: [AtomicPtr<AtomicU32>; 256] = [const { AtomicPtr::new(ptr::null_mut()) }; 256];
/// Per vector: the bits to set in its word (0 for [`Handler::Wake`]).
static MASKS: [AtomicU32; 256] = [const { AtomicU32::new(0) }; 256];
/// The word of every [`Handler::Wake`] (never changed: its mask is 0).
static WAKE_WORD: AtomicU32 = AtomicU32::new(0);

/// The first IDT vector [`allocate`] hands out (above the APIC timer and
/// the remapped legacy PICs).
pub const FIRST_DEVICE_VECTOR: u8 = 0x40;
/// The next IDT vector [`allocate`] hands out.
static NEXT_VECTOR: AtomicU8 = AtomicU8::new(FIRST_DEVICE_VECTOR);

static IDT: Once<InterruptDescriptorTable> = Once::new();

fn stub(vector: u8) -> VirtAddr {
    VirtAddr::from_ptr(&raw const isr_stubs) + STUB_SIZE * u64::from(vector)
}

/// Builds and loads the IDT. Call after [`crate::gdt::init`] (the entries take
/// the current CS, docs/toolchain.md §2, P11).
pub fn init() {
    let idt = IDT.call_once(|| {
        let mut idt = InterruptDescriptorTable::new();
        macro_rules! entry {
            ($field:ident, $vector:literal, $ist:expr) => {
                // SAFETY: the stub for this vector exists in `isr_stubs`, ends in
                // `iretq` after restoring every register, and matches the frame
                // shape the CPU pushes for this vector; the IST slot is set in the TSS.
                unsafe {
                    idt.$field
                        .set_handler_addr(stub($vector))
                        .set_stack_index($ist)
                };
            };
        }
        entry!(divide_error, 0, IST_GENERAL);
        entry!(debug, 1, IST_GENERAL);
        entry!(non_maskable_interrupt, 2, IST_NMI);
        entry!(breakpoint, 3, IST_GENERAL);
        entry!(overflow, 4, IST_GENERAL);
        entry!(bound_range_exceeded, 5, IST_GENERAL);
        entry!(invalid_opcode, 6, IST_GENERAL);
        entry!(device_not_available, 7, IST_GENERAL);
        entry!(double_fault, 8, IST_DOUBLE_FAULT);
        // SAFETY: as above (vector 9 has no public field; `IndexMut<u8>` reaches it).
        unsafe {
            idt[9]
                .set_handler_addr(stub(9))
                .set_stack_index(IST_GENERAL)
        };
        entry!(invalid_tss, 10, IST_GENERAL);
        entry!(segment_not_present, 11, IST_GENERAL);
        entry!(stack_segment_fault, 12, IST_GENERAL);
        entry!(general_protection_fault, 13, IST_GENERAL);
        entry!(page_fault, 14, IST_GENERAL);
        entry!(x87_floating_point, 16, IST_GENERAL);
        entry!(alignment_check, 17, IST_GENERAL);
        entry!(machine_check, 18, IST_NMI);
        entry!(simd_floating_point, 19, IST_GENERAL);
        entry!(virtualization, 20, IST_GENERAL);
        entry!(cp_protection_exception, 21, IST_GENERAL);
        entry!(hv_injection_exception, 28, IST_GENERAL);
        entry!(vmm_communication_exception, 29, IST_GENERAL);
        entry!(security_exception, 30, IST_GENERAL);
        for vector in 32..=255u8 {
            // SAFETY: as above; interrupts 32–255 push no error code, like their stubs.
            unsafe {
                idt[vector]
                    .set_handler_addr(stub(vector))
                    .set_stack_index(IST_GENERAL)
            };
        }
        idt
    });
    idt.load();
}

/// What the kernel does when an interrupt vector fires, besides the EOI.
///
/// Handlers run with interrupts off on an IST stack, so they do the least
/// possible: set a bit the interrupted code looks at. Whoever waits for an
/// interrupt sleeps in `hlt` (see [`crate::idle`]), which any interrupt ends.
#[derive(Debug, Clone, Copy)]
pub enum Handler {
    /// Nothing: the interrupt only ends a `hlt` (the local APIC timer).
    Wake,
    /// Sets bit `bit` (0–31) of `pending`: a device's own record of the
    /// vectors that fired, which its driver takes bits from.
    Latch {
        /// The device's pending word.
        pending: &'static AtomicU32,
        /// The bit of this vector.
        bit: u8,
    },
}

/// Registers `handler` for `vector` (32–254; 255 is the APIC's spurious
/// vector), replacing any earlier one.
///
/// # Panics
///
/// If `vector` is a CPU exception or the spurious vector, or a latch bit is
/// above 31.
pub fn register(vector: u8, handler: Handler) {
    assert!(vector >= 32, "vector {vector} is a CPU exception");
    assert!(
        vector != SPURIOUS_VECTOR,
        "vector {vector} is the spurious vector"
    );
    let (word, mask) = match handler {
        Handler::Wake => (&WAKE_WORD, 0),
        Handler::Latch { pending, bit } => {
            assert!(bit < 32, "latch bit {bit} is not a bit of a u32");
            (pending, 1 << bit)
        }
    };
    // With interrupts off, the handler cannot run between the two stores and
    // see a new mask with an old word (there is one CPU).
    x86_64::instructions::interrupts::without_interrupts(|| {
        MASKS[usize::from(vector)].store(mask, Ordering::Relaxed);
        WORDS[usize::from(vector)].store(ptr::from_ref(word).cast_mut(), Ordering::Release);
    });
}

/// Reserves `count` consecutive IDT vectors for a device and returns the
/// first, or `None` if too few are left below the spurious vector.
pub fn allocate(count: u8) -> Option<u8> {
    // The block is `next..next + count`; an end that fits a u8 (at most 255)
    // keeps the block below the spurious vector 255.
    NEXT_VECTOR
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |next| {
            next.checked_add(count)
        })
        .ok()
}

/// The Rust side of every interrupt and exception.
extern "C" fn trap_handler(frame: &mut TrapFrame) {
    let vector = frame.vector as u8;
    if vector < 32 {
        report_exception(frame);
    }
    let word = WORDS[usize::from(vector)].load(Ordering::Acquire);
    if !word.is_null() {
        // SAFETY: only `register` stores non-null pointers here, and it
        // stores them from `&'static AtomicU32` references.
        let word = unsafe { &*word };
        word.fetch_or(
            MASKS[usize::from(vector)].load(Ordering::Relaxed),
            Ordering::SeqCst,
        );
    } else if vector != SPURIOUS_VECTOR {
        log::warn!("interrupt on vector {vector:#x} without a handler");
    }
    if vector != SPURIOUS_VECTOR {
        crate::apic::end_of_interrupt();
    }
}

const EXCEPTION_NAMES: [&str; 32] = [
    "#DE divide error",
    "#DB debug",
    "NMI",
    "#BP breakpoint",
    "#OF overflow",
    "#BR bound range exceeded",
    "#UD invalid opcode",
    "#NM device not available",
    "#DF double fault",
    "coprocessor segment overrun",
    "#TS invalid TSS",
    "#NP segment not present",
    "#SS stack-segment fault",
    "#GP general protection fault",
    "#PF page fault",
    "reserved",
    "#MF x87 floating-point error",
    "#AC alignment check",
    "#MC machine check",
    "#XM SIMD floating-point exception",
    "#VE virtualization exception",
    "#CP control protection exception",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "reserved",
    "#HV hypervisor injection exception",
    "#VC VMM communication exception",
    "#SX security exception",
    "reserved",
];

fn report_exception(frame: &TrapFrame) -> ! {
    // SAFETY: a CPU exception ends the VM; the interrupted code (which may
    // hold the console) never runs again.
    unsafe { crate::serial::force_unlock() };
    let vector = frame.vector as u8;
    crate::kprintln!(
        "{}",
        ExceptionHeadline {
            name: EXCEPTION_NAMES[usize::from(vector % 32)],
            vector,
        }
    );
    crate::kprintln!(
        "{}",
        ExceptionFrame {
            rip: frame.rip,
            cs: frame.cs,
            rflags: frame.rflags,
            rsp: frame.rsp,
            ss: frame.ss,
        }
    );
    crate::kprintln!("{}", ExceptionErrorCode(frame.error_code));
    if vector == 14 {
        crate::kprintln!(
            "{}",
            PageFaultAddress {
                cr2: x86_64::registers::control::Cr2::read_raw(),
                cause: page_fault_cause(frame.error_code),
            }
        );
    }
    crate::kprintln!(
        "  RAX {:#x} RBX {:#x} RCX {:#x} RDX {:#x} RSI {:#x} RDI {:#x} RBP {:#x}",
        frame.rax,
        frame.rbx,
        frame.rcx,
        frame.rdx,
        frame.rsi,
        frame.rdi,
        frame.rbp
    );
    crate::kprintln!(
        "  R8 {:#x} R9 {:#x} R10 {:#x} R11 {:#x} R12 {:#x} R13 {:#x} R14 {:#x} R15 {:#x}",
        frame.r8,
        frame.r9,
        frame.r10,
        frame.r11,
        frame.r12,
        frame.r13,
        frame.r14,
        frame.r15
    );
    exit(ExitCode::CpuException)
}

/// Decodes the page-fault error code (Intel SDM vol. 3, §4.7).
fn page_fault_cause(error_code: u64) -> &'static str {
    match (
        error_code & 1 != 0,
        error_code & 2 != 0,
        error_code & 16 != 0,
    ) {
        (_, _, true) => "instruction fetch",
        (false, false, _) => "read of a non-present page",
        (false, true, _) => "write to a non-present page",
        (true, false, _) => "read protection violation",
        (true, true, _) => "write to a read-only page",
    }
}
