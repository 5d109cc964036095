//! The ivshmem-net protocol engine: virtio-style split rings over
//! ivshmem-v2 shared memory, byte-compatible with Linux `ivshmem-net` and
//! Zephyr `eth_ivshmem`.
//!
//! The wire protocol is described in `docs/ivshmem-net.md` (cited as §n
//! below); the device in `docs/ivshmem-v2.md`.
//!
//! # The seam
//!
//! The engine is hardware-agnostic. The kernel gives it
//!
//! * three views of shared memory ([`Sections`]): the state table and the
//!   peer's output section through [`SharedMemory`] (read-only), and our own
//!   output section through [`SharedMemoryMut`]. Every access names a byte
//!   offset, and index accesses an [`Ordering`](core::sync::atomic::Ordering);
//!   the engine never holds a Rust reference into memory the peer can write.
//!   Offsets are validated by the engine before each call; an implementation
//!   may panic on a bad one (that would be an engine bug);
//! * a [`Notifier`]: `notify(vector)` rings the peer's doorbell
//!   (`(peer_id << 16) | vector`), `set_state(state)` writes our State
//!   register. The engine issues `fence(SeqCst)` before both.
//!
//! # The API
//!
//! * [`Engine::new`] validates a [`Config`] (peer ID, vector count, MTU,
//!   MAC) and the section sizes ([`Layout`], §3.3) and writes State = RESET.
//!   The MTU defaults to what Linux's driver picks for the section,
//!   `min(16384, data area / 16)` ([`Layout::default_mtu`], §4), so that a
//!   Linux peer and the engine agree without configuration; [`Engine::mtu`]
//!   is the one in use.
//! * [`Engine::poll`] runs the RESET → INIT → READY → RUN state machine
//!   (§2), reclaims transmit completions, resets a link whose peer stopped
//!   completing our frames ([`Config::transmit_timeout`]) and renews the
//!   receive budget; the kernel calls it on every interrupt and on a timer.
//!   It returns whether the link is up. Nothing depends on an interrupt
//!   arriving: a lost kick costs latency only.
//! * The frame channel, in the spirit of Tegra IVC: [`Engine::send`],
//!   [`Engine::receive`], [`Engine::can_send`], [`Engine::can_receive`],
//!   [`Engine::transmit_empty`], and the zero-copy pairs
//!   [`Engine::send_buffer`] / [`Engine::send_advance`] and
//!   [`Engine::receive_frame`] / [`Engine::receive_advance`].
//! * [`smoltcp::phy::Device`] for [`Engine`] (see [`device`]).
//! * [`Engine::statistics`]: frames and bytes each way, drops by reason,
//!   protocol errors seen from the peer, resets, kicks, and how the peer
//!   drives its ring ([`PeerEvidence`], with a guess at its
//!   implementation).
//!
//! # Guarantees against a hostile peer
//!
//! * **Bounded work.** Every call reads at most `num` ring entries and
//!   copies at most one frame of at most [`Layout::max_frame_length`]
//!   bytes; between two polls all receive paths together read at most
//!   `num` entries and copy at most [`Layout::data_size`] +
//!   [`Layout::max_frame_length`] bytes (see [`Engine`]). A frame longer
//!   than any conforming sender makes (`min(65535, data area / 4) + 18`,
//!   `docs/ivshmem-net.md` §11) is rejected and counted.
//! * **One link condition.** Every transmit path ([`Engine::send`],
//!   [`Engine::send_buffer`]/[`Engine::send_advance`], smoltcp's tokens)
//!   and every receive path requires the link up: our state and the peer's
//!   RUN at the last evaluation. Otherwise [`SendError::LinkDown`] and
//!   nothing is written into the ring.
//! * **No data across a reset.** A received frame not yet advanced past
//!   and a reserved transmit buffer belong to a session; when the link drops
//!   (or drops and comes back within one poll) they are discarded, never
//!   delivered or published in the next session.
//! * **Progress.** A peer in RUN that completes none of our frames in
//!   flight for [`Config::transmit_timeout`] gets the link reset (counted
//!   in [`Statistics::transmit_timeouts`]); the handshake then restarts.
//!
//! # Safety argument
//!
//! All protocol modules are `#![forbid(unsafe_code)]`. The peer is
//! untrusted: each peer-written field (index, ring entry, descriptor field,
//! used element, state) is read exactly once into a local, validated, then
//! used. Descriptor addresses and lengths are checked against our copy of
//! the layout before any access; invalid entries are consumed, completed in
//! order with len 1 and counted. An index that is impossible (the peer's
//! avail index more than `num` ahead, or its used index ahead of what we
//! published) cannot be reconciled: it is counted and the link is reset,
//! which restarts the handshake. Received frames are copied into our own
//! buffer before anyone sees them. Our own producer state (indices, buffer
//! offsets) is a trusted shadow that the peer cannot change.
//!
//! The crate has no `unsafe` code at all (`#![forbid(unsafe_code)]`): memory
//! access goes through the seam's traits. Implementations of the seam carry
//! the unsafe code: the kernel's mapped windows (`kernel/src/ivshmem/memory.rs`)
//! and, for tests and benchmarks, the heap-backed shared memory of the
//! `netdev-host` crate (`netdev/host`), whose module documentation gives its
//! safety argument. miri is not installed on the build machine, so `cargo
//! miri test` has not been run.
#![no_std]
#![forbid(unsafe_code)]
#![deny(missing_docs)]

extern crate alloc;

pub mod device;
mod engine;
mod error;
pub mod layout;
mod memory;
mod ring;
mod state;
mod statistics;

pub use engine::{
    Config, DEFAULT_TRANSMIT_TIMEOUT, ETHERNET_HEADER_LENGTH, ETHERNET_MTU, Engine, MIN_MTU,
    Sections, locally_administered_mac,
};
pub use error::{ConfigError, ReceiveError, SendError};
pub use layout::{Layout, LayoutError};
pub use memory::{Notifier, SharedMemory, SharedMemoryMut};
pub use ring::need_event;
/// The time types [`Engine::poll`] and [`Config`] take (smoltcp's).
pub use smoltcp::time::{Duration, Instant};
pub use state::State;
pub use statistics::{Drops, PeerEvidence, PeerImplementation, ProtocolErrors, Statistics};
