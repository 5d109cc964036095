//! The [`smoltcp::phy::Device`] implementation.
//!
//! * `transmit()` returns `None` unless a descriptor and space for an
//!   MTU-sized frame are free; the token writes straight into our own
//!   section (zero copy). The engine stays mutably borrowed by the token, so
//!   the space cannot be taken by anyone else, and a dropped token has
//!   published nothing: there is no reservation to leak.
//! * Frames written through the tokens, and completions of received ones,
//!   are published as one batch by [`Engine::flush`]: call it after
//!   `Interface::poll` (the next [`Engine::poll`] does it too), so that a
//!   burst costs one index store and at most one doorbell.
//! * `receive()` copies the frame out of the peer's section (and completes
//!   it) before smoltcp sees it. Its transmit token checks for space only
//!   when consumed; without space the reply is dropped and counted.
#![forbid(unsafe_code)]

use alloc::vec;

use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;

use crate::engine::{Engine, Held, Link};
use crate::error::SendError;
use crate::memory::{Notifier, SharedMemory, SharedMemoryMut};

/// A received frame, already copied out of shared memory.
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: &'a [u8],
    held_frame: &'a mut Option<Held>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.frame)
    }
}

/// The frame is handed to smoltcp once, consumed or not.
impl Drop for RxToken<'_> {
    fn drop(&mut self) {
        *self.held_frame = None;
    }
}

/// Permission to send one frame into our own section.
#[derive(Debug)]
pub struct TxToken<'a, M, W, N> {
    link: &'a mut Link<M, W, N>,
}

impl<M: SharedMemory, W: SharedMemoryMut, N: Notifier> phy::TxToken for TxToken<'_, M, W, N> {
    fn consume<R, F>(self, length: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        match self.link.transmit_allocation(length) {
            Ok(allocation) => {
                let offset = self.link.layout.header_size() + allocation.offset;
                let result = f(self.link.own.bytes_mut(offset, length));
                self.link.publish(allocation, length);
                result
            }
            Err(error) => {
                // `consume` cannot fail: let smoltcp build the frame in a
                // scratch buffer and drop it (rare: only tokens from
                // `receive()` get here, or a frame above the MTU).
                let drops = &mut self.link.statistics.drops;
                match error {
                    SendError::RingFull => drops.ring_full += 1,
                    SendError::LinkDown | SendError::NoReservation => drops.link_down += 1,
                    SendError::InvalidLength { .. } => drops.invalid_length += 1,
                }
                let mut scratch = vec![0; length];
                f(&mut scratch)
            }
        }
    }
}

impl<M: SharedMemory, W: SharedMemoryMut, N: Notifier> phy::Device for Engine<M, W, N> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, M, W, N>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.pending_send = None;
        // Bounded work per `Engine::poll` (the engine's receive budget);
        // frames left in the ring wait for the next poll, which
        // `can_receive` asks for.
        let length = self.fetch()?;
        let Self {
            link,
            receive_buffer,
            held_frame,
            ..
        } = self;
        Some((
            RxToken {
                frame: &receive_buffer[..length],
                held_frame,
            },
            TxToken { link },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.pending_send = None;
        let length = self.mtu_frame_length();
        self.link.transmit_allocation(length).ok()?;
        Some(TxToken {
            link: &mut self.link,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = self.mtu_frame_length();
        // The peer can have at most this many MTU-sized frames in its ring
        // for us (its section has our layout): bounded by descriptors and by
        // cache-line-aligned buffers in the data area.
        let layout = self.layout();
        let per_frame = (self.mtu_frame_length() + 63) & !63;
        let burst = (layout.data_size() / per_frame).min(usize::from(layout.queue_length()));
        capabilities.max_burst_size = Some(burst.max(1));
        capabilities
    }
}
