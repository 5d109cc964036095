//! Parsing and formatting of memory sizes (`1M`, `4G`, `0x100000`, `65536`).

use std::fmt;

/// A size string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "invalid size {input:?}: expected a number with an optional K/M/G/T suffix (e.g. 1M, 4G, 0x100000)"
)]
pub struct ParseSizeError {
    input: String,
}

/// Parses a byte count: decimal or `0x` hex, optionally followed by a binary
/// suffix `K`, `M`, `G` or `T` (case-insensitive, an optional trailing `B` or
/// `iB` is accepted: `4KiB`, `1MB`).
pub fn parse_size(input: &str) -> Result<u64, ParseSizeError> {
    let err = || ParseSizeError {
        input: input.to_string(),
    };
    let s = input.trim();
    let (digits, radix) = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => (hex, 16),
        None => (s, 10),
    };
    let split = digits
        .find(|c: char| !c.is_digit(radix) && c != '_')
        .unwrap_or(digits.len());
    let (number, suffix) = digits.split_at(split);
    let number = number.replace('_', "");
    if number.is_empty() {
        return Err(err());
    }
    let value = u64::from_str_radix(&number, radix).map_err(|_| err())?;
    let suffix = suffix.to_ascii_lowercase();
    let suffix = suffix
        .strip_suffix("ib")
        .or_else(|| suffix.strip_suffix('b'))
        .unwrap_or(&suffix);
    let shift = match suffix {
        "" => 0,
        "k" => 10,
        "m" => 20,
        "g" => 30,
        "t" => 40,
        _ => return Err(err()),
    };
    value.checked_mul(1u64 << shift).ok_or_else(err)
}

/// A byte count displayed with the largest exact binary unit (`1M`, `4K`,
/// `0x1800`), in the form QEMU's `size=` option accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Size(pub u64);

impl fmt::Display for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const UNITS: [(u32, &str); 4] = [(40, "T"), (30, "G"), (20, "M"), (10, "K")];
        let v = self.0;
        for (shift, unit) in UNITS {
            if v != 0 && v.trailing_zeros() >= shift {
                return write!(f, "{}{}", v >> shift, unit);
            }
        }
        write!(f, "{v}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_suffixes_and_hex() {
        assert_eq!(parse_size("1M"), Ok(1 << 20));
        assert_eq!(parse_size("4G"), Ok(4 << 30));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("4KiB"), Ok(4096));
        assert_eq!(parse_size("2MB"), Ok(2 << 20));
        assert_eq!(parse_size("0x100000"), Ok(0x100000));
        assert_eq!(parse_size("0x1_000"), Ok(0x1000));
        assert_eq!(parse_size("65536"), Ok(65536));
        assert_eq!(parse_size(" 8M "), Ok(8 << 20));
    }

    #[test]
    fn rejects_garbage() {
        for bad in [
            "",
            "M",
            "1Q",
            "0x",
            "-1",
            "1.5M",
            "99999999999T",
            "0xfffffffffffffffffM",
        ] {
            assert!(parse_size(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn displays_exact_units() {
        assert_eq!(Size(1 << 20).to_string(), "1M");
        assert_eq!(Size(4 << 30).to_string(), "4G");
        assert_eq!(Size(0x1800).to_string(), "6K");
        assert_eq!(Size(100).to_string(), "100");
        assert_eq!(Size(0).to_string(), "0");
    }
}
