//! Bulk copies and fills for the C memory functions of the runtime
//! (`rt.rs`, docs/toolchain.md §5.3), as plain functions so that the host
//! tests can check them at every length and alignment.
//!
//! They are inline assembly so that LLVM cannot turn them back into calls
//! to `memcpy`/`memset`. Under TCG every iteration of a `rep` instruction
//! costs about the same whatever its width, and more than a straight run of
//! SSE moves: the bulk goes 128 bytes per loop iteration through XMM
//! registers, the rest 8 bytes per `movsq`/`stosq` iteration and only the
//! last bytes one by one; frame copies are the hot path of the link.

use core::arch::asm;

/// Copies `n` bytes from `src` to `dst`.
///
/// # Safety
///
/// `dst` and `src` must be valid for `n` bytes and must not overlap.
pub unsafe fn copy(dst: *mut u8, src: *const u8, n: usize) {
    // SAFETY: the caller guarantees both ranges are valid and disjoint; DF is
    // clear (the ABI requires it, and the interrupt stubs `cld`). The loop
    // moves 128 bytes per iteration through XMM0-7 (unaligned loads and
    // stores; interrupt handlers preserve the XMM registers, docs/toolchain.md
    // §7), then `movsq` the quadwords and `movsb` the bytes left.
    unsafe {
        asm!(
            "cmp rcx, 128",
            "jb 3f",
            "2:",
            "movdqu xmm0, [rsi]",
            "movdqu xmm1, [rsi + 16]",
            "movdqu xmm2, [rsi + 32]",
            "movdqu xmm3, [rsi + 48]",
            "movdqu xmm4, [rsi + 64]",
            "movdqu xmm5, [rsi + 80]",
            "movdqu xmm6, [rsi + 96]",
            "movdqu xmm7, [rsi + 112]",
            "movdqu [rdi], xmm0",
            "movdqu [rdi + 16], xmm1",
            "movdqu [rdi + 32], xmm2",
            "movdqu [rdi + 48], xmm3",
            "movdqu [rdi + 64], xmm4",
            "movdqu [rdi + 80], xmm5",
            "movdqu [rdi + 96], xmm6",
            "movdqu [rdi + 112], xmm7",
            "add rsi, 128",
            "add rdi, 128",
            "sub rcx, 128",
            "cmp rcx, 128",
            "jae 2b",
            "3:",
            "mov {tail}, rcx",
            "shr rcx, 3",
            "rep movsq",
            "mov rcx, {tail}",
            "and rcx, 7",
            "rep movsb",
            tail = out(reg) _,
            inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
            out("xmm0") _, out("xmm1") _, out("xmm2") _, out("xmm3") _,
            out("xmm4") _, out("xmm5") _, out("xmm6") _, out("xmm7") _,
            options(nostack),
        );
    }
}

/// Sets `n` bytes at `dst` to `value`.
///
/// # Safety
///
/// `dst` must be valid for `n` bytes.
pub unsafe fn fill(dst: *mut u8, value: u8, n: usize) {
    let pattern = u64::from(value) * 0x0101_0101_0101_0101;
    // SAFETY: the caller guarantees `dst` is valid for `n` bytes. The loop
    // stores 128 bytes per iteration from XMM0 (the byte repeated; handlers
    // preserve XMM registers, docs/toolchain.md §7), then `stosq` the
    // quadwords and `stosb` the bytes left.
    unsafe {
        asm!(
            "movq xmm0, rax",
            "punpcklqdq xmm0, xmm0",
            "cmp rcx, 128",
            "jb 3f",
            "2:",
            "movdqu [rdi], xmm0",
            "movdqu [rdi + 16], xmm0",
            "movdqu [rdi + 32], xmm0",
            "movdqu [rdi + 48], xmm0",
            "movdqu [rdi + 64], xmm0",
            "movdqu [rdi + 80], xmm0",
            "movdqu [rdi + 96], xmm0",
            "movdqu [rdi + 112], xmm0",
            "add rdi, 128",
            "sub rcx, 128",
            "cmp rcx, 128",
            "jae 2b",
            "3:",
            "mov {tail}, rcx",
            "shr rcx, 3",
            "rep stosq",
            "mov rcx, {tail}",
            "and rcx, 7",
            "rep stosb",
            tail = out(reg) _,
            inout("rcx") n => _, inout("rdi") dst => _, in("rax") pattern,
            out("xmm0") _,
            options(nostack),
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_every_length_at_every_alignment() {
        let source: std::vec::Vec<u8> = (0..700u32).map(|i| (i * 7 + 3) as u8).collect();
        for length in (0..300).chain([383, 384, 385, 511, 512, 513, 640]) {
            for (from, to) in [(0, 0), (1, 0), (0, 3), (5, 9), (15, 1)] {
                let mut target = std::vec![0xeeu8; 700];
                // SAFETY: both ranges lie inside their vectors, which differ.
                unsafe {
                    copy(
                        target.as_mut_ptr().add(to),
                        source.as_ptr().add(from),
                        length,
                    )
                };
                assert_eq!(&target[to..to + length], &source[from..from + length]);
                assert!(target[..to].iter().all(|b| *b == 0xee), "length {length}");
                assert!(
                    target[to + length..].iter().all(|b| *b == 0xee),
                    "length {length}"
                );
            }
        }
    }

    #[test]
    fn fills_every_length_at_every_alignment() {
        for length in (0..300).chain([383, 384, 385, 640]) {
            for at in [0, 1, 7, 13] {
                let mut target = std::vec![0x11u8; 700];
                // SAFETY: the range lies inside the vector.
                unsafe { fill(target.as_mut_ptr().add(at), 0xa5, length) };
                assert!(target[at..at + length].iter().all(|b| *b == 0xa5));
                assert!(target[..at].iter().all(|b| *b == 0x11));
                assert!(target[at + length..].iter().all(|b| *b == 0x11));
            }
        }
    }
}
