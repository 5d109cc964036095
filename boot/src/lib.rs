//! Entry code for the eth-ivshmem kernel: two ways in, one way on.
//!
//! **PVH** (QEMU): QEMU loads the kernel ELF with `-kernel` and, finding the
//! Xen PVH note (`XEN_ELFNOTE_PHYS32_ENTRY`, type 18), enters `pvh_start32`
//! in 32-bit protected mode with paging off and `EBX` = the physical address
//! of `struct hvm_start_info` (docs/toolchain.md §3–§4). Linker script:
//! `boot/linker.ld` (everything from 1 MiB).
//!
//! **Jailhouse reset vector** (a Jailhouse x86 non-root cell, and our cell
//! harness on stock QEMU): the flat image's offset 0 is `jailhouse_reset`,
//! entered in 16-bit real mode with CS base 0, caches disabled and no stack
//! (docs/jailhouse.md §1). It loads its own GDT, enables caches (CR0.CD/NW
//! clear, MTRRs on with write-back default), enters 32-bit protected mode and
//! joins the PVH path with no start info. The command-line buffer
//! `jailhouse_cmdline` sits at 0x1000, where `jailhouse cell load … -s "…"
//! -a 0x1000` writes it. Linker script: `boot/jailhouse.ld`.
//!
//! The common path zeroes `.bss`, identity-maps the first 4 GiB with 2 MiB
//! pages, enables PAE, long mode, NX and SSE (the precompiled `core` uses
//! SSE, docs/toolchain.md §7), loads a minimal GDT and calls the Rust
//! function `kmain(start_info: u32, entry: u32) -> !`, which the kernel
//! crate defines: `entry` is [`ENTRY_PVH`] or [`ENTRY_JAILHOUSE`].
//!
//! The page tables are exported (`boot_pml4`, `boot_pdpt`, `boot_pd`) so that
//! the kernel can extend or refine the mapping later.
#![no_std]

/// The size of the boot stack in bytes (also the kernel's main stack).
pub const BOOT_STACK_SIZE: usize = 1024 * 1024;

/// `kmain`'s `entry` after the PVH entry.
pub const ENTRY_PVH: u32 = 0;
/// `kmain`'s `entry` after the Jailhouse reset vector.
pub const ENTRY_JAILHOUSE: u32 = 1;

/// The MSR of the MTRR default type (IA32_MTRR_DEF_TYPE).
const MTRR_DEF_TYPE: u32 = 0x2ff;
/// IA32_MTRR_DEF_TYPE: MTRRs enabled (E, bit 11), default type write-back (6).
const MTRR_ENABLED_WRITE_BACK: u32 = (1 << 11) | 6;

core::arch::global_asm!(
    r#"
    /* The Jailhouse reset vector: guest address 0, 16-bit real mode, CS = 0,
       CR0 = CD | NW | ET, interrupts off, no usable stack. */
    .section .boot.reset, "ax"
    .code16
    .global jailhouse_reset
jailhouse_reset:
    cli
    cld
    xor %ax, %ax
    mov %ax, %ds
    lgdtl reset_gdt_ptr
    mov %cr0, %eax                  /* caches on (clear CD, NW), protection on */
    and $~((1 << 29) | (1 << 30)), %eax
    or $1, %eax
    mov %eax, %cr0
    ljmpl $0x08, $reset_start32

    .code32
reset_start32:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    mov %ax, %fs
    mov %ax, %gs
    mov ${mtrr_def_type}, %ecx      /* MTRRs on, memory write-back by default */
    rdmsr
    and $~0xfff, %eax
    or ${mtrr_wb}, %eax
    wrmsr
    xor %esi, %esi                  /* no PVH start info */
    mov ${entry_jailhouse}, %ebp
    jmp start32

    .balign 8
reset_gdt:
    .quad 0
    .quad 0x00cf9a000000ffff        /* 0x08: 32-bit code, flat */
    .quad 0x00cf92000000ffff        /* 0x10: data, flat */
reset_gdt_end:
reset_gdt_ptr:
    .word reset_gdt_end - reset_gdt - 1
    .long reset_gdt

    /* The command-line buffer Jailhouse fills (NUL-terminated). */
    .section .cmdline, "aw"
    .global jailhouse_cmdline
jailhouse_cmdline:
    .skip {cmdline_size}
    .code64
"#,
    mtrr_def_type = const MTRR_DEF_TYPE,
    mtrr_wb = const MTRR_ENABLED_WRITE_BACK,
    entry_jailhouse = const ENTRY_JAILHOUSE,
    cmdline_size = const abi::jailhouse::CMDLINE_SIZE,
    options(att_syntax)
);

core::arch::global_asm!(
    r#"
    .section .note.pvh, "a", @note
    .balign 4
    .long 4                 /* namesz: "Xen\0" */
    .long 8                 /* descsz: QEMU reads a 64-bit entry for ELF64 */
    .long 18                /* XEN_ELFNOTE_PHYS32_ENTRY */
    .asciz "Xen"
    .balign 4
    .quad pvh_start32
    .balign 4

    .section .text.boot, "ax"
    .code32
    .global pvh_start32
pvh_start32:
    cli
    cld
    mov %ebx, %esi                  /* keep the start-info address */
    mov ${entry_pvh}, %ebp          /* ... and how we were entered */

    /* The common 32-bit path: flat segments, paging off, ESI = start info,
       EBP = entry kind; neither register is touched below. */
    .global start32
start32:

    mov $__bss_start, %edi          /* zero .bss: page tables and stack live there */
    mov $__bss_end, %ecx
    sub %edi, %ecx
    xor %eax, %eax
    rep stosb

    mov $boot_stack_top, %esp

    mov $boot_pdpt, %eax            /* PML4[0] -> PDPT */
    or $0x3, %eax
    mov %eax, boot_pml4
    mov $boot_pd, %eax              /* PDPT[0..4] -> four page directories */
    or $0x3, %eax
    mov $boot_pdpt, %edi
    mov $4, %ecx
1:  mov %eax, (%edi)
    add $0x1000, %eax
    add $8, %edi
    loop 1b
    mov $boot_pd, %edi              /* 2048 x 2 MiB pages: PS | RW | P */
    mov $0x83, %eax
    mov $2048, %ecx
2:  mov %eax, (%edi)
    add $0x200000, %eax
    add $8, %edi
    loop 2b

    mov %cr4, %eax                  /* PAE | OSFXSR | OSXMMEXCPT */
    or $((1 << 5) | (1 << 9) | (1 << 10)), %eax
    mov %eax, %cr4
    mov $boot_pml4, %eax
    mov %eax, %cr3
    mov $0xC0000080, %ecx           /* EFER: LME | NXE */
    rdmsr
    or $((1 << 8) | (1 << 11)), %eax
    wrmsr
    mov %cr0, %eax                  /* clear EM, TS; set PE, MP, NE, WP, PG */
    and $~((1 << 2) | (1 << 3)), %eax
    or $((1 << 0) | (1 << 1) | (1 << 5) | (1 << 16) | (1 << 31)), %eax
    mov %eax, %cr0

    lgdt boot_gdt_ptr
    ljmp $0x08, $long_mode_entry

    .code64
long_mode_entry:
    mov $0x10, %ax
    mov %ax, %ds
    mov %ax, %es
    mov %ax, %ss
    xor %ax, %ax
    mov %ax, %fs
    mov %ax, %gs
    mov $boot_stack_top, %rsp
    fninit
    mov %esi, %edi                  /* arg0: start-info address */
    mov %ebp, %esi                  /* arg1: entry kind */
    xor %ebp, %ebp
    call kmain
3:  cli
    hlt
    jmp 3b

    .section .rodata.boot, "a"
    .balign 16
boot_gdt:
    .quad 0
    .quad 0x00af9a000000ffff        /* 0x08: 64-bit code */
    .quad 0x00cf92000000ffff        /* 0x10: data */
boot_gdt_end:
    .balign 4
boot_gdt_ptr:
    .word boot_gdt_end - boot_gdt - 1
    .long boot_gdt

    .section .bss.boot, "aw", @nobits
    .balign 4096
    .global boot_pml4, boot_pdpt, boot_pd, boot_stack, boot_stack_top
boot_pml4:  .skip 4096
boot_pdpt:  .skip 4096
boot_pd:    .skip 4096 * 4
boot_stack: .skip {stack_size}
boot_stack_top:
    .code64
"#,
    stack_size = const BOOT_STACK_SIZE,
    entry_pvh = const ENTRY_PVH,
    options(att_syntax)
);
