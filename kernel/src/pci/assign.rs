//! Giving addresses to memory BARs nobody assigned: a Jailhouse cell has no
//! firmware, so its virtual ivshmem device (and, in the cell harness on
//! QEMU, every device) comes up with its BARs at 0 (docs/jailhouse.md §1.4).

use core::fmt;
use core::ops::Range;

use super::config::{ConfigAccess, offset};
use super::enumerate::Function;
use super::{Bar, BarKind, Bdf};

/// Where unassigned BARs go on a cell: the top of the 32-bit space, where
/// Jailhouse's own demo inmates put the ivshmem registers, below the last
/// MiB (the harness's reset ROM) and clear of the local APIC and I/O APIC.
pub const CELL_WINDOW: Range<u64> = 0xff00_0000..0xfff0_0000;

/// A BAR that does not fit in the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowFull {
    /// The function.
    pub bdf: Bdf,
    /// Its BAR.
    pub bar: Bar,
}

impl fmt::Display for WindowFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "no room for {} BAR{} ({:#x} bytes) in {:#x}-{:#x}",
            self.bdf, self.bar.index, self.bar.size, CELL_WINDOW.start, CELL_WINDOW.end
        )
    }
}

/// Assigns every unassigned memory BAR of `functions` an address in
/// `window`, naturally aligned, lowest BAR first; writes it to configuration
/// space and into `functions`. I/O BARs and assigned BARs are left alone.
/// Returns how many BARs it assigned.
pub fn assign_memory_bars(
    config: &dyn ConfigAccess,
    functions: &mut [Function],
    window: Range<u64>,
) -> Result<usize, WindowFull> {
    let mut next = window.start;
    let mut assigned = 0;
    for function in functions.iter_mut() {
        let bdf = function.bdf;
        for bar in function.bars.iter_mut() {
            if bar.kind == BarKind::Io || bar.address != 0 || bar.size == 0 {
                continue;
            }
            let full = WindowFull { bdf, bar: *bar };
            let address = next.checked_next_multiple_of(bar.size).ok_or(full)?;
            let end = address.checked_add(bar.size).ok_or(full)?;
            if end > window.end || (bar.kind == BarKind::Memory32 && end > 1 << 32) {
                return Err(full);
            }
            let register = offset::BAR0 + 4 * u16::from(bar.index);
            let low_flags = config.read32(bdf, register) & 0xf;
            config.write32(bdf, register, address as u32 | low_flags);
            if bar.kind == BarKind::Memory64 {
                config.write32(bdf, register + 4, (address >> 32) as u32);
            }
            bar.address = address;
            next = end;
            assigned += 1;
        }
    }
    Ok(assigned)
}

#[cfg(test)]
mod tests {
    use super::super::enumerate::enumerate;
    use super::super::fake::{FakeConfigSpace, FakeFunction, bdf};
    use super::*;

    #[test]
    fn unassigned_bars_get_aligned_addresses_and_assigned_ones_stay() {
        let config = FakeConfigSpace::default()
            .with(bdf(0, 0, 0), FakeFunction::new(0x8086, 0x1237, 0x0600_0002))
            .with(
                bdf(0, 3, 0),
                FakeFunction::new(0x1af4, 0x1110, 0x0500_0001)
                    .bar32(0, 0, 0x100)
                    .bar32(1, 0, 0x1000)
                    .bar64(2, 0, 0x10_0000),
            )
            .with(
                bdf(0, 4, 0),
                FakeFunction::new(0x110a, 0x4106, 0xff00_0100).bar32(0, 0xfe00_0000, 0x1000),
            );
        let mut functions = enumerate(&config);
        let count = assign_memory_bars(&config, &mut functions, CELL_WINDOW).unwrap();
        assert_eq!(count, 3);
        let device = bdf(0, 3, 0);
        assert_eq!(config.peek(device, offset::BAR0), 0xff00_0000);
        assert_eq!(config.peek(device, offset::BAR0 + 4), 0xff00_1000);
        assert_eq!(config.peek(device, offset::BAR0 + 8) & !0xf, 0xff10_0000);
        assert_eq!(
            config.peek(device, offset::BAR0 + 8) & 0xf,
            0xc,
            "64-bit prefetchable flags kept"
        );
        assert_eq!(config.peek(device, offset::BAR0 + 12), 0);
        assert_eq!(
            config.peek(bdf(0, 4, 0), offset::BAR0),
            0xfe00_0000,
            "an assigned BAR is left alone"
        );
        let again = enumerate(&config);
        assert_eq!(again[1].bar(2).unwrap().address, 0xff10_0000);
        assert_eq!(functions[1].bar(2).unwrap().address, 0xff10_0000);
    }

    #[test]
    fn a_bar_larger_than_the_window_is_refused() {
        let config = FakeConfigSpace::default().with(
            bdf(0, 3, 0),
            FakeFunction::new(0x1af4, 0x1110, 0x0500_0001).bar64(2, 0, 0x4000_0000),
        );
        let mut functions = enumerate(&config);
        let error = assign_memory_bars(&config, &mut functions, CELL_WINDOW).unwrap_err();
        assert_eq!(error.bar.index, 2);
        assert!(error.to_string().contains("no room"), "{error}");
        assert_eq!(config.peek(bdf(0, 3, 0), offset::BAR0 + 8) & !0xf, 0);
    }
}
