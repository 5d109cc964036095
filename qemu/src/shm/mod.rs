//! Shared memory for ivshmem links.
//!
//! What kernel and host agree on lives in [`abi`]: the descriptor page
//! ([`abi::descriptor`], `docs/descriptor-page.md`) that the host writes at
//! offset 0 for QEMU's stock v1 devices, and the ivshmem-v2 sections after it
//! ([`abi::layout`], `docs/ivshmem-v2.md` §6.1). With the Siemens `ivshmem`
//! (v2) device there is no descriptor page: the device itself reports the
//! sizes and the state table is at offset 0.
//!
//! * [`layout`]: how a region is laid out and how small it may be.
//! * [`mapping`]: a mapping of a region that guests use at the same time.
//! * [`file`](mod@file): shared-memory files for `ivshmem-plain` and their life cycle.

pub mod file;
pub mod layout;
pub mod mapping;

pub use file::{PlainRegion, ShmFile};
pub use layout::{
    LayoutError, MAX_PEERS, NET_MIN_OUTPUT_SECTION, PROTOCOL_NET, STATE_TABLE_SIZE, ShmLayout,
    net_output_section_fits,
};
pub use mapping::SharedMapping;
