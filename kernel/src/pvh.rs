//! The PVH start info QEMU hands to the entry point (`struct hvm_start_info`,
//! docs/toolchain.md §3).

/// `hvm_start_info.magic`.
const START_INFO_MAGIC: u32 = 0x336e_c578;
/// The longest command line we read.
const MAX_CMDLINE: usize = 4096;
/// The most memory-map entries we read.
const MAX_MEMMAP_ENTRIES: usize = 128;

/// One entry of the E820-style memory map.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MemoryRegion {
    /// Physical start address.
    pub start: u64,
    /// Length in bytes.
    pub size: u64,
    /// E820 type: 1 = usable RAM, 2 = reserved, 3 = ACPI reclaimable, 4 = ACPI NVS.
    pub kind: u32,
}

impl MemoryRegion {
    /// E820 type of usable RAM.
    pub const USABLE: u32 = 1;

    /// The first address after the region (saturating).
    pub fn end(&self) -> u64 {
        self.start.saturating_add(self.size)
    }
}

/// What the boot loader told us. Reading it needs no heap, so it can size the heap.
#[derive(Debug, Clone)]
pub struct StartInfo {
    /// The kernel command line (`-append`), possibly empty.
    pub cmdline: &'static str,
    /// Physical address of the ACPI RSDP, if given.
    pub rsdp: Option<u64>,
    regions: [MemoryRegion; MAX_MEMMAP_ENTRIES],
    region_count: usize,
    /// The physical range `[start, end)` the loader's structures occupy
    /// (start info, command line, memory map); the heap must avoid it.
    pub loader_data: (u64, u64),
}

/// The raw fields of `hvm_start_info` version 1 (all little-endian).
#[derive(Debug, Clone, Copy)]
struct RawStartInfo {
    magic: u32,
    cmdline_paddr: u64,
    rsdp_paddr: u64,
    memmap_paddr: u64,
    memmap_entries: u32,
}

/// Errors in the start info.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartInfoError {
    /// The magic number is wrong: not booted through PVH.
    BadMagic(u32),
    /// The command line is not UTF-8.
    CmdlineNotUtf8,
}

impl core::fmt::Display for StartInfoError {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            Self::BadMagic(magic) => write!(
                f,
                "PVH start info has magic {magic:#x}, expected {START_INFO_MAGIC:#x}"
            ),
            Self::CmdlineNotUtf8 => write!(f, "the kernel command line is not UTF-8"),
        }
    }
}

/// Reads `N` bytes at physical address `address`.
///
/// # Safety
///
/// The bytes must lie in one of the loader's structures (the start info,
/// the command line, the memory map): the boot code identity-maps the first
/// 4 GiB, and the loader places these in low RAM that nothing writes (the
/// heap starts above them).
unsafe fn read_physical<const N: usize>(address: u64) -> [u8; N] {
    let mut bytes = [0u8; N];
    // SAFETY: identity-mapped loader memory nothing writes (the caller's
    // contract), copied into a local array.
    unsafe { core::ptr::copy_nonoverlapping(address as usize as *const u8, bytes.as_mut_ptr(), N) };
    bytes
}

/// The little-endian `u32` at `address`.
///
/// # Safety
///
/// As for [`read_physical`].
unsafe fn u32_at(address: u64) -> u32 {
    // SAFETY: the caller's contract.
    u32::from_le_bytes(unsafe { read_physical(address) })
}

/// The little-endian `u64` at `address`.
///
/// # Safety
///
/// As for [`read_physical`].
unsafe fn u64_at(address: u64) -> u64 {
    // SAFETY: the caller's contract.
    u64::from_le_bytes(unsafe { read_physical(address) })
}

impl StartInfo {
    /// The memory map.
    pub fn memory_map(&self) -> &[MemoryRegion] {
        &self.regions[..self.region_count]
    }

    /// Reads the start info at physical address `address` (below 4 GiB).
    ///
    /// # Errors
    ///
    /// A wrong magic number, or a command line that is not UTF-8.
    ///
    /// # Safety
    ///
    /// `address` must be the start info the PVH loader passed (in `ebx`):
    /// its fields lead to the command line and memory map, which are read
    /// through the identity map, and the command line is kept as a
    /// `&'static str`.
    pub unsafe fn read(address: u32) -> Result<Self, StartInfoError> {
        let base = u64::from(address);
        // SAFETY: the fields of the start info (the caller's contract).
        let raw = unsafe {
            RawStartInfo {
                magic: u32_at(base),
                cmdline_paddr: u64_at(base + 24),
                rsdp_paddr: u64_at(base + 32),
                memmap_paddr: u64_at(base + 40),
                memmap_entries: u32_at(base + 48),
            }
        };
        if raw.magic != START_INFO_MAGIC {
            return Err(StartInfoError::BadMagic(raw.magic));
        }
        let mut cmdline_len = 0;
        if raw.cmdline_paddr != 0 {
            while cmdline_len < MAX_CMDLINE {
                // SAFETY: the command line the start info names, up to its NUL.
                let [byte] = unsafe { read_physical::<1>(raw.cmdline_paddr + cmdline_len as u64) };
                if byte == 0 {
                    break;
                }
                cmdline_len += 1;
            }
        }
        let cmdline = if cmdline_len == 0 {
            ""
        } else {
            // SAFETY: the `cmdline_len` bytes at `cmdline_paddr` were just read
            // through the identity map; they are never written again (see
            // `read_physical`), so a shared 'static view is sound.
            let bytes = unsafe {
                core::slice::from_raw_parts(raw.cmdline_paddr as usize as *const u8, cmdline_len)
            };
            core::str::from_utf8(bytes).map_err(|_| StartInfoError::CmdlineNotUtf8)?
        };
        let region_count = (raw.memmap_entries as usize).min(MAX_MEMMAP_ENTRIES);
        let mut regions = [MemoryRegion {
            start: 0,
            size: 0,
            kind: 0,
        }; MAX_MEMMAP_ENTRIES];
        for (index, region) in regions.iter_mut().take(region_count).enumerate() {
            let entry = raw.memmap_paddr + 24 * index as u64;
            // SAFETY: an entry of the memory map the start info names.
            *region = unsafe {
                MemoryRegion {
                    start: u64_at(entry),
                    size: u64_at(entry + 8),
                    kind: u32_at(entry + 16),
                }
            };
        }
        let ranges = [
            (base, base + 56),
            (
                raw.cmdline_paddr,
                raw.cmdline_paddr + cmdline_len as u64 + 1,
            ),
            (
                raw.memmap_paddr,
                raw.memmap_paddr + 24 * region_count as u64,
            ),
        ];
        let loader_data = (
            ranges
                .iter()
                .map(|range| range.0)
                .filter(|&start| start != 0)
                .min()
                .unwrap_or(base),
            ranges.iter().map(|range| range.1).max().unwrap_or(base),
        );
        Ok(Self {
            cmdline,
            rsdp: (raw.rsdp_paddr != 0).then_some(raw.rsdp_paddr),
            regions,
            region_count,
            loader_data,
        })
    }
}
