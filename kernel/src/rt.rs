//! What the freestanding binary needs from a runtime: the global allocator,
//! the panic handler, the C memory functions and the unwinding stubs
//! (docs/toolchain.md §2, P1 and P2).

use core::arch::asm;

use crate::exit::exit;
use abi::exit::ExitCode;
use abi::report::{Fatal, FatalKind};

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    x86_64::instructions::interrupts::disable();
    // SAFETY: the panic handler ends the VM; the code that panicked (which
    // may hold the console) never runs again.
    unsafe { crate::serial::force_unlock() };
    crate::kprintln!(
        "{}",
        Fatal {
            kind: FatalKind::Panic,
            message: info
        }
    );
    exit(ExitCode::Panic)
}

// The host target's precompiled `compiler_builtins` does not export these
// (libc normally does). Copies and fills are in `crate::mem` (inline
// assembly, so that LLVM cannot turn them back into calls to themselves);
// `memmove` and `memcmp` are used rarely and stay simple.

/// `memcpy` for the compiler.
///
/// # Safety
/// `dst` and `src` must be valid for `n` bytes and must not overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's guarantees are `copy`'s contract.
    unsafe { crate::mem::copy(dst, src, n) };
    dst
}

/// `memmove` for the compiler.
///
/// # Safety
/// `dst` and `src` must be valid for `n` bytes; they may overlap.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dst as usize).wrapping_sub(src as usize) >= n {
        // SAFETY: no harmful overlap for a forward copy; see `memcpy`.
        unsafe {
            asm!("rep movsb", inout("rcx") n => _, inout("rdi") dst => _, inout("rsi") src => _,
                 options(nostack, preserves_flags));
        }
    } else {
        // SAFETY: `dst` lies inside `[src, src + n)`: copy backwards from the
        // last byte with DF set, and clear DF again before returning.
        unsafe {
            asm!("std", "rep movsb", "cld",
                 inout("rcx") n => _, inout("rdi") dst.add(n - 1) => _, inout("rsi") src.add(n - 1) => _,
                 options(nostack));
        }
    }
    dst
}

/// `memset` for the compiler.
///
/// # Safety
/// `dst` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memset(dst: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's guarantee is `fill`'s contract.
    unsafe { crate::mem::fill(dst, value as u8, n) };
    dst
}

/// `memcmp` for the compiler.
///
/// # Safety
/// `a` and `b` must be valid for `n` bytes.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for index in 0..n {
        // SAFETY: the caller guarantees both ranges are valid for `n` bytes;
        // volatile reads keep LLVM from turning this loop into a `memcmp` call.
        let (x, y) = unsafe { (a.add(index).read_volatile(), b.add(index).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// `bcmp` for the compiler.
///
/// # Safety
/// As [`memcmp`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as `memcmp`.
    unsafe { memcmp(a, b, n) }
}

/// Referenced by the landing pads of the precompiled, unwind-built `core`;
/// with `panic = "abort"` nothing ever unwinds.
#[unsafe(no_mangle)]
pub extern "C" fn _Unwind_Resume() -> ! {
    exit(ExitCode::Panic)
}

/// See [`_Unwind_Resume`].
#[unsafe(no_mangle)]
pub extern "C" fn rust_eh_personality() {}
