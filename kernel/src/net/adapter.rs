//! The seam between the netdev engine and the ivshmem device layer: netdev's
//! shared-memory traits over the device's [`Window`]s.

use core::sync::atomic::Ordering;

use crate::ivshmem::memory::{Access, OwnWindow, Window};

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
