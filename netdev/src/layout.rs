//! Section layout and queue sizing (docs/ivshmem-net.md §3.2, §3.3).
//!
//! Each output section holds, in this order: the sender's descriptor table,
//! its avail ring (with `used_event` after the ring), padding to 64 bytes,
//! the used ring for the *other* direction (with `avail_event` after it),
//! padding to 64 bytes, then the sender's data area. The used rings are
//! swapped relative to plain virtio, so every field a side writes lies in its
//! own section (§3.1).
#![forbid(unsafe_code)]

use core::fmt;

/// Size of one descriptor: `u64 addr, u32 len, u16 flags, u16 next` (§3.2).
pub const DESCRIPTOR_SIZE: usize = 16;
/// Size of one used-ring element: `u32 id, u32 len` (§3.2).
pub const USED_ELEMENT_SIZE: usize = 8;
/// The vring alignment both Linux and Zephyr pass to `vring_init` (§3.2).
pub const VRING_ALIGN: usize = 64;
/// The largest queue length the sizing loop tries (§3.3).
pub const MAX_QUEUE_LENGTH: u16 = 4096;
/// An Ethernet header with one 802.1Q tag: what a frame may add to the IP
/// MTU (§4).
pub const MAX_LINK_HEADER_LENGTH: usize = 18;
/// The smallest data area both implementations accept: 4 × 68 bytes (§3.3).
pub const MIN_DATA_SIZE: usize = 4 * 68;

/// Rounds `value` up to a multiple of 64 ([`VRING_ALIGN`]).
///
/// Returns `None` on overflow. Aligned input is returned unchanged.
pub const fn align64(value: usize) -> Option<usize> {
    match value.checked_add(VRING_ALIGN - 1) {
        Some(sum) => Some(sum & !(VRING_ALIGN - 1)),
        None => None,
    }
}

/// `vring_size(num, 64)` as in the Linux uapi and OpenAMP headers (§3.2).
pub const fn vring_size(queue_length: usize) -> usize {
    // For queue_length ≤ 4096 nothing here can overflow.
    let used = (16 * queue_length + 2 * (3 + queue_length) + VRING_ALIGN - 1) & !(VRING_ALIGN - 1);
    used + 6 + USED_ELEMENT_SIZE * queue_length
}

/// Why an output section cannot carry ivshmem-net.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LayoutError {
    /// The ring header does not fit into the section.
    SectionTooSmall {
        /// The output section size in bytes.
        section_size: usize,
        /// The header size the sizing loop arrived at.
        header_size: usize,
    },
    /// The data area left after the header is below 4 × 68 bytes.
    DataAreaTooSmall {
        /// The data area size in bytes.
        data_size: usize,
    },
    /// The section is larger than 4 GiB, which descriptor lengths cannot
    /// address.
    SectionTooLarge {
        /// The output section size in bytes.
        section_size: usize,
    },
}

impl fmt::Display for LayoutError {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            Self::SectionTooSmall {
                section_size,
                header_size,
            } => write!(
                formatter,
                "output section of {section_size:#x} bytes is smaller than the ring header ({header_size:#x})"
            ),
            Self::DataAreaTooSmall { data_size } => write!(
                formatter,
                "data area of {data_size} bytes is below the minimum of {MIN_DATA_SIZE}"
            ),
            Self::SectionTooLarge { section_size } => {
                write!(
                    formatter,
                    "output section of {section_size:#x} bytes exceeds 4 GiB"
                )
            }
        }
    }
}

impl core::error::Error for LayoutError {}

/// The layout of one output section; both sections of a link have the same
/// layout because both sides derive it from the same Output Section Size.
///
/// All offsets are relative to the section base.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Layout {
    section_size: usize,
    queue_length: u16,
    header_size: usize,
}

impl Layout {
    /// Computes num, H and the data area exactly as Linux
    /// `ivshm_net_calc_qsize` and Zephyr `calc_vring_size` do (§3.3),
    /// including the quirk that a loop without `break` ends with num = 32
    /// but H still computed for num = 64 (0x700).
    ///
    /// # Errors
    ///
    /// [`LayoutError`] when the header does not fit or the data area is below
    /// 272 bytes, or when the section exceeds 4 GiB.
    pub const fn new(section_size: usize) -> Result<Self, LayoutError> {
        if section_size > u32::MAX as usize {
            return Err(LayoutError::SectionTooLarge { section_size });
        }
        let mut queue_length = MAX_QUEUE_LENGTH as usize;
        let mut header_size = 0;
        while queue_length > 32 {
            // vring_size is at most 0x1A046 here, so align64 cannot overflow.
            header_size = (vring_size(queue_length) + VRING_ALIGN - 1) & !(VRING_ALIGN - 1);
            if header_size < section_size / 8 {
                break;
            }
            queue_length >>= 1;
        }
        if header_size > section_size {
            return Err(LayoutError::SectionTooSmall {
                section_size,
                header_size,
            });
        }
        let data_size = section_size - header_size;
        if data_size < MIN_DATA_SIZE {
            return Err(LayoutError::DataAreaTooSmall { data_size });
        }
        Ok(Self {
            section_size,
            queue_length: queue_length as u16,
            header_size,
        })
    }

    /// The output section size in bytes.
    pub const fn section_size(&self) -> usize {
        self.section_size
    }

    /// The queue length `num` (a power of two, 32..=4096).
    pub const fn queue_length(&self) -> u16 {
        self.queue_length
    }

    /// The header size H: where the data area starts.
    pub const fn header_size(&self) -> usize {
        self.header_size
    }

    /// The size of the data area, `section_size - H`.
    pub const fn data_size(&self) -> usize {
        self.section_size - self.header_size
    }

    /// The largest IP MTU a Linux peer accepts for this section:
    /// `min(65535, data area / 4)` (§4). Our own MTU may not exceed it.
    pub const fn max_mtu(&self) -> usize {
        let quarter = self.data_size() / 4;
        if quarter < 65_535 { quarter } else { 65_535 }
    }

    /// The IP MTU a Linux peer picks by default for this section:
    /// `min(16384, data area / 16)` (§4).
    pub const fn default_mtu(&self) -> usize {
        let sixteenth = self.data_size() / 16;
        if sixteenth < 16_384 {
            sixteenth
        } else {
            16_384
        }
    }

    /// The longest frame a conforming peer sends on this section, and the
    /// longest we accept: [`max_mtu`](Self::max_mtu) plus an Ethernet header
    /// with one VLAN tag (18 bytes, §11). Always within the data area.
    pub const fn max_frame_length(&self) -> usize {
        self.max_mtu() + MAX_LINK_HEADER_LENGTH
    }

    /// `index mod num` as a ring slot.
    pub const fn slot(&self, index: u16) -> usize {
        (index & (self.queue_length - 1)) as usize
    }

    /// Offset of descriptor `index` (`index < num`).
    pub const fn descriptor(&self, index: usize) -> usize {
        DESCRIPTOR_SIZE * index
    }

    /// Offset of the avail ring (`avail.flags`).
    pub const fn avail(&self) -> usize {
        DESCRIPTOR_SIZE * self.queue_length as usize
    }

    /// Offset of `avail.flags` (always 0).
    pub const fn avail_flags(&self) -> usize {
        self.avail()
    }

    /// Offset of `avail.idx`.
    pub const fn avail_index(&self) -> usize {
        self.avail() + 2
    }

    /// Offset of `avail.ring[slot]` (`slot < num`).
    pub const fn avail_ring(&self, slot: usize) -> usize {
        self.avail() + 4 + 2 * slot
    }

    /// Offset of `used_event` (= `avail.ring[num]`).
    pub const fn used_event(&self) -> usize {
        self.avail_ring(self.queue_length as usize)
    }

    /// Offset U of the used ring (`used.flags`): `align64(18·num + 6)`.
    pub const fn used(&self) -> usize {
        (self.used_event() + 2 + VRING_ALIGN - 1) & !(VRING_ALIGN - 1)
    }

    /// Offset of `used.flags` (always 0).
    pub const fn used_flags(&self) -> usize {
        self.used()
    }

    /// Offset of `used.idx`.
    pub const fn used_index(&self) -> usize {
        self.used() + 2
    }

    /// Offset of `used.ring[slot].id` (`slot < num`); `len` follows at +4.
    pub const fn used_ring(&self, slot: usize) -> usize {
        self.used() + 4 + USED_ELEMENT_SIZE * slot
    }

    /// Offset of `avail_event` (= `used.ring[num]`).
    pub const fn avail_event(&self) -> usize {
        self.used_ring(self.queue_length as usize)
    }

    /// `vring_size(num, 64)` for the chosen `num`: the end of `avail_event`.
    pub const fn vring_size(&self) -> usize {
        self.avail_event() + 2
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The worked examples of §3.3: section size, num, H, data area.
    const EXAMPLES: [(usize, u16, usize, usize); 5] = [
        (0x7F000, 2048, 0xD080, 0x71F80),
        (0x3F000, 1024, 0x6880, 0x38780),
        (0x10000, 256, 0x1A80, 0xE580),
        (0x4000, 64, 0x700, 0x3900),
        (0x2000, 32, 0x700, 0x1900),
    ];

    #[test]
    fn reference_sizes() {
        for (size, num, header, data) in EXAMPLES {
            let layout = Layout::new(size).unwrap();
            assert_eq!(layout.queue_length(), num, "num for {size:#x}");
            assert_eq!(layout.header_size(), header, "H for {size:#x}");
            assert_eq!(layout.data_size(), data, "data for {size:#x}");
        }
    }

    /// The per-num table of §3.3: avail, used_event, U, avail_event,
    /// vring_size, H.
    /// Section size, num, avail, used_event, U, avail_event, vring_size, H.
    type Row = (usize, u16, usize, usize, usize, usize, usize, usize);

    #[test]
    fn reference_ring_offsets() {
        let table: [Row; 8] = [
            // section size chosen so the loop picks num
            (
                0x100000, 4096, 0x10000, 0x12004, 0x12040, 0x1A044, 0x1A046, 0x1A080,
            ),
            (
                0x7F000, 2048, 0x8000, 0x9004, 0x9040, 0xD044, 0xD046, 0xD080,
            ),
            (
                0x3F000, 1024, 0x4000, 0x4804, 0x4840, 0x6844, 0x6846, 0x6880,
            ),
            (0x1F000, 512, 0x2000, 0x2404, 0x2440, 0x3444, 0x3446, 0x3480),
            (0x10000, 256, 0x1000, 0x1204, 0x1240, 0x1A44, 0x1A46, 0x1A80),
            (0x8000, 128, 0x800, 0x904, 0x940, 0xD44, 0xD46, 0xD80),
            (0x4000, 64, 0x400, 0x484, 0x4C0, 0x6C4, 0x6C6, 0x700),
            (0x2000, 32, 0x200, 0x244, 0x280, 0x384, 0x386, 0x700),
        ];
        for (size, num, avail, used_event, used, avail_event, vring, header) in table {
            let layout = Layout::new(size).unwrap();
            assert_eq!(layout.queue_length(), num, "{size:#x}");
            assert_eq!(layout.descriptor(0), 0);
            assert_eq!(layout.descriptor(1), 16);
            assert_eq!(layout.avail(), avail, "avail {num}");
            assert_eq!(layout.avail_flags(), avail);
            assert_eq!(layout.avail_index(), avail + 2);
            assert_eq!(layout.avail_ring(0), avail + 4);
            assert_eq!(
                layout.avail_ring(num as usize - 1),
                avail + 4 + 2 * (num as usize - 1)
            );
            assert_eq!(layout.used_event(), used_event, "used_event {num}");
            assert_eq!(layout.used(), used, "used {num}");
            assert_eq!(layout.used_flags(), used);
            assert_eq!(layout.used_index(), used + 2);
            assert_eq!(layout.used_ring(0), used + 4);
            assert_eq!(layout.used_ring(1), used + 12);
            assert_eq!(layout.avail_event(), avail_event, "avail_event {num}");
            assert_eq!(layout.vring_size(), vring, "vring_size {num}");
            assert_eq!(vring_size(num as usize), vring);
            assert_eq!(layout.header_size(), header, "H {num}");
        }
    }

    #[test]
    fn thresholds() {
        // "chosen when size ≥" column of §3.3.
        for (threshold, num) in [
            (853000, 4096),
            (427016, 2048),
            (214024, 1024),
            (107528, 512),
            (54280, 256),
            (27656, 128),
            (14344, 64),
        ] {
            assert_eq!(Layout::new(threshold).unwrap().queue_length(), num);
            assert_eq!(Layout::new(threshold - 1).unwrap().queue_length(), num / 2);
        }
    }

    #[test]
    fn mtu_rules() {
        // The worked examples of §3.3 with Linux's default and maximum MTU.
        for (size, default, maximum) in [
            (0x7F000, 16384, 65535),
            (0x3F000, 14456, 57824),
            (0x10000, 3672, 14688),
            (0x4000, 912, 3648),
            (0x2000, 400, 1600),
        ] {
            let layout = Layout::new(size).unwrap();
            assert_eq!(layout.default_mtu(), default, "{size:#x}");
            assert_eq!(layout.max_mtu(), maximum, "{size:#x}");
            assert_eq!(layout.max_frame_length(), maximum + 18);
            assert!(layout.max_frame_length() <= layout.data_size());
        }
        // The smallest section still carries a frame.
        let smallest = Layout::new(0x700 + 272).unwrap();
        assert_eq!(smallest.max_frame_length(), 68 + 18);
    }

    #[test]
    fn too_small() {
        assert_eq!(
            Layout::new(0x700 + 271),
            Err(LayoutError::DataAreaTooSmall { data_size: 271 })
        );
        assert!(Layout::new(0x700 + 272).is_ok());
        assert_eq!(
            Layout::new(0x600),
            Err(LayoutError::SectionTooSmall {
                section_size: 0x600,
                header_size: 0x700
            })
        );
        assert_eq!(
            Layout::new(0),
            Err(LayoutError::SectionTooSmall {
                section_size: 0,
                header_size: 0x700
            })
        );
    }

    #[test]
    fn align_boundaries() {
        assert_eq!(align64(0), Some(0));
        assert_eq!(align64(1), Some(64));
        assert_eq!(align64(64), Some(64));
        assert_eq!(align64(65), Some(128));
        assert_eq!(align64(usize::MAX), None);
        assert_eq!(align64(usize::MAX - 63), Some(usize::MAX - 63));
    }
}
