//! The kernel's own GDT and TSS, with the interrupt stacks (IST).
//!
//! Every IDT vector runs on an IST stack because the precompiled `core` uses
//! the red zone (docs/toolchain.md §7): a fresh stack guarantees an
//! interrupt never writes below an interrupted function's RSP. Vectors that may
//! nest get different stacks.

use spin::Once;
use x86_64::VirtAddr;
use x86_64::instructions::segmentation::{CS, DS, ES, SS, Segment};
use x86_64::instructions::tables::load_tss;
use x86_64::registers::segmentation::SegmentSelector;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable};
use x86_64::structures::tss::TaskStateSegment;

/// IST slot (0-based, as `set_stack_index` takes it) for exceptions, IRQs and MSIs.
pub const IST_GENERAL: u16 = 0;
/// IST slot for #DF, which may strike while the general stack is in use.
pub const IST_DOUBLE_FAULT: u16 = 1;
/// IST slot for NMI and #MC, which can arrive at any moment.
pub const IST_NMI: u16 = 2;

const GENERAL_STACK_SIZE: usize = 64 * 1024;
const SMALL_STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack<const N: usize>([u8; N]);

static mut GENERAL_STACK: Stack<GENERAL_STACK_SIZE> = Stack([0; GENERAL_STACK_SIZE]);
static mut DOUBLE_FAULT_STACK: Stack<SMALL_STACK_SIZE> = Stack([0; SMALL_STACK_SIZE]);
static mut NMI_STACK: Stack<SMALL_STACK_SIZE> = Stack([0; SMALL_STACK_SIZE]);

struct Selectors {
    code: SegmentSelector,
    data: SegmentSelector,
    tss: SegmentSelector,
}

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(GlobalDescriptorTable, Selectors)> = Once::new();

fn stack_top<const N: usize>(stack: *mut Stack<N>) -> VirtAddr {
    VirtAddr::from_ptr(stack)
        .as_u64()
        .checked_add(N as u64)
        .map(VirtAddr::new)
        .expect("stack below 4 GiB")
}

/// Loads the GDT and TSS and reloads the segment registers. Call once, early.
pub fn init() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        // Only the addresses of the stacks are taken; the CPU alone writes them.
        tss.interrupt_stack_table[IST_GENERAL as usize] = stack_top(&raw mut GENERAL_STACK);
        tss.interrupt_stack_table[IST_DOUBLE_FAULT as usize] =
            stack_top(&raw mut DOUBLE_FAULT_STACK);
        tss.interrupt_stack_table[IST_NMI as usize] = stack_top(&raw mut NMI_STACK);
        tss
    });
    let (gdt, selectors) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss = gdt.append(Descriptor::tss_segment(tss));
        (gdt, Selectors { code, data, tss })
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, whose code and data
    // descriptors are the flat 64-bit kernel segments the boot code also used.
    unsafe {
        CS::set_reg(selectors.code);
        SS::set_reg(selectors.data);
        DS::set_reg(selectors.data);
        ES::set_reg(selectors.data);
    }
    // SAFETY: the selector points at a valid, 'static TSS descriptor in the loaded GDT.
    unsafe { load_tss(selectors.tss) };
}
