//! The seam between the netdev engine and the ivshmem device layer:
//! netdev's shared-memory traits over the device's [`Window`]s, and its
//! [`Notifier`](netdev::Notifier) over the device's doorbell and state.

use core::sync::atomic::Ordering;

use crate::ivshmem::Device;
use crate::ivshmem::memory::{Access, OwnWindow, Window};

/// The notifier the netdev engine uses: doorbells to, and state writes for,
/// the one peer of a two-peer link.
///
/// The barrier before each register write: netdev's engine issues
/// `fence(SeqCst)` before it calls either method, which is all its rings
/// need (the `netdev::Notifier` contract). [`Device::notify`] and
/// [`Device::set_state`] are releases by themselves anyway, because other
/// users of the device API rely on that; for the engine that second fence
/// is redundant and costs one `mfence` per kick.
#[derive(Debug, Clone, Copy)]
pub struct PeerNotifier {
    device: &'static Device,
    peer: u16,
}

impl PeerNotifier {
    /// A notifier for `peer` on `device`.
    pub fn new(device: &'static Device, peer: u16) -> Self {
        Self { device, peer }
    }
}

impl netdev::Notifier for PeerNotifier {
    fn notify(&self, vector: u16) {
        self.device.notify(self.peer, vector);
    }

    fn set_state(&self, state: u32) {
        self.device.set_state(state);
    }
}

impl<A: Access> netdev::SharedMemory for Window<A> {
    fn len(&self) -> usize {
        Window::len(self)
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        Window::load_u16(self, offset, order)
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        Window::load_u32(self, offset, order)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        Window::read(self, offset, destination)
    }
}

impl netdev::SharedMemory for OwnWindow {
    fn len(&self) -> usize {
        self.window().len()
    }

    fn load_u16(&self, offset: usize, order: Ordering) -> u16 {
        self.window().load_u16(offset, order)
    }

    fn load_u32(&self, offset: usize, order: Ordering) -> u32 {
        self.window().load_u32(offset, order)
    }

    fn read(&self, offset: usize, destination: &mut [u8]) {
        self.window().read(offset, destination)
    }
}

impl netdev::SharedMemoryMut for OwnWindow {
    fn store_u16(&self, offset: usize, value: u16, order: Ordering) {
        self.window().store_u16(offset, value, order)
    }

    fn store_u32(&self, offset: usize, value: u32, order: Ordering) {
        self.window().store_u32(offset, value, order)
    }

    fn write(&self, offset: usize, source: &[u8]) {
        self.window().write(offset, source)
    }

    fn fill_zero(&self, offset: usize, length: usize) {
        self.window().fill_zero(offset, length)
    }

    fn bytes_mut(&mut self, offset: usize, length: usize) -> &mut [u8] {
        OwnWindow::bytes_mut(self, offset, length)
    }
}
