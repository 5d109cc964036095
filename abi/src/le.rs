//! Little-endian fields of the byte images this crate parses (the
//! descriptor page, the Jailhouse communication region). Callers check the
//! image's length first; a range outside it panics.

use core::ops::Range;

/// The `u16` in `bytes[range]` (two bytes).
pub(crate) fn u16_at(bytes: &[u8], range: Range<usize>) -> u16 {
    let mut value = [0; 2];
    value.copy_from_slice(&bytes[range]);
    u16::from_le_bytes(value)
}

/// The `u32` in `bytes[range]` (four bytes).
pub(crate) fn u32_at(bytes: &[u8], range: Range<usize>) -> u32 {
    let mut value = [0; 4];
    value.copy_from_slice(&bytes[range]);
    u32::from_le_bytes(value)
}

/// The `u64` in `bytes[range]` (eight bytes).
pub(crate) fn u64_at(bytes: &[u8], range: Range<usize>) -> u64 {
    let mut value = [0; 8];
    value.copy_from_slice(&bytes[range]);
    u64::from_le_bytes(value)
}
