//! Our state and the doorbells: how each kind of device writes the one and
//! rings the other (docs/ivshmem-v2.md §5, §7.3, §14.2), over any
//! [`RegisterBlock`], so that the tests below run it against fake registers.
//!
//! | | set state | ring a peer | enable interrupts |
//! |---|---|---|---|
//! | ivshmem-v2 | STATE register (the device copies it into the table and rings vector 0 of the others on a change) | DOORBELL | INT_CONTROL = 1 |
//! | doorbell | our table entry, then vector 0 of every other peer on a change | v1 DOORBELL | (MSI-X only) |
//! | plain | our table entry | nothing | nothing |

use core::sync::atomic::{AtomicU32, Ordering, fence};

use super::Kind;
use super::memory::{ReadWrite, Window};
use super::registers::{RegisterBlock, doorbell};
use super::v2;

/// The state and doorbell side of one device.
#[derive(Debug)]
pub struct Control<R> {
    kind: Kind,
    id: u16,
    max_peers: u16,
    registers: R,
    /// Emulation only: the state table, where we write our own entry.
    state_table: Option<Window<ReadWrite>>,
    /// The last state we wrote (emulation rings vector 0 only on a change).
    written_state: AtomicU32,
}

impl<R: RegisterBlock> Control<R> {
    /// The control side of a device of `kind` where we are `id` of
    /// `max_peers`. Emulated devices need a writable window over the state
    /// table (we write our own entry there); a real v2 device needs none.
    ///
    /// # Panics
    ///
    /// If an emulated kind comes without its state table.
    pub fn new(
        kind: Kind,
        id: u16,
        max_peers: u16,
        registers: R,
        state_table: Option<Window<ReadWrite>>,
    ) -> Self {
        assert!(
            kind == Kind::V2 || state_table.is_some(),
            "an emulated device writes its state into the state table"
        );
        Self {
            kind,
            id,
            max_peers,
            registers,
            state_table,
            written_state: AtomicU32::new(u32::MAX),
        }
    }

    /// The register block.
    pub fn registers(&self) -> &R {
        &self.registers
    }

    /// Writes our state; see [`Device::set_state`](super::Device::set_state).
    pub fn set_state(&self, state: u32) {
        fence(Ordering::SeqCst);
        match (self.kind, &self.state_table) {
            (Kind::V2, _) | (_, None) => self.registers.write32(v2::register::STATE, state),
            (Kind::Doorbell | Kind::Plain, Some(table)) => {
                // Only we write our own entry; the fence above releases what
                // came before.
                table.store_u32(4 * usize::from(self.id), state, Ordering::Relaxed);
                let previous = self.written_state.swap(state, Ordering::Relaxed);
                if previous != state && self.kind == Kind::Doorbell {
                    for peer in (0..self.max_peers).filter(|&peer| peer != self.id) {
                        self.notify(peer, 0);
                    }
                }
            }
        }
    }

    /// Rings `peer`'s doorbell on `vector`; see
    /// [`Device::notify`](super::Device::notify).
    pub fn notify(&self, peer: u16, vector: u16) {
        if self.kind != Kind::Plain {
            fence(Ordering::SeqCst);
            self.registers
                .write32(v2::register::DOORBELL, doorbell(peer, vector));
        }
    }

    /// Lets the device generate interrupts, once MSI-X is programmed (only
    /// ivshmem-v2 has a switch of its own, INT_CONTROL).
    pub fn enable_interrupts(&self) {
        if self.kind == Kind::V2 {
            self.registers.write32(v2::register::INT_CONTROL, 1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::layout::Region;
    use super::super::registers::fake::FakeRegisters;
    use super::*;
    use std::vec;

    /// A writable window over a fresh (leaked) state table of 4 KiB.
    fn state_table() -> Window<ReadWrite> {
        let table = vec![0u64; 512].leak();
        // SAFETY: the leaked buffer lives for ever and nothing else covers it.
        unsafe {
            Window::new_writable(Region {
                address: table.as_mut_ptr() as u64,
                size: 0x1000,
            })
        }
    }

    #[test]
    fn a_v2_device_takes_state_doorbells_and_interrupt_control_in_registers() {
        let control = Control::new(Kind::V2, 1, 2, FakeRegisters::new(1, 2), None);
        control.set_state(0x8000_0001);
        control.notify(0, 1);
        control.enable_interrupts();
        assert_eq!(
            *control.registers().writes.borrow(),
            [(0x10, 0x8000_0001), (0x0c, 0x0000_0001), (0x08, 1)]
        );
    }

    #[test]
    fn emulation_writes_our_entry_and_rings_vector_0_on_a_change() {
        let table = state_table();
        let control = Control::new(Kind::Doorbell, 1, 3, FakeRegisters::new(0, 0), Some(table));
        control.set_state(3);
        assert_eq!(table.load_u32(4, Ordering::Relaxed), 3);
        assert_eq!(table.load_u32(0, Ordering::Relaxed), 0, "only our entry");
        assert_eq!(
            *control.registers().writes.borrow(),
            [(0x0c, 0x0000_0000), (0x0c, 0x0002_0000)],
            "vector 0 of peers 0 and 2"
        );
        control.set_state(3);
        assert_eq!(
            control.registers().writes.borrow().len(),
            2,
            "no change, no ring"
        );
        control.notify(2, 1);
        assert_eq!(control.registers().writes.borrow()[2], (0x0c, 0x0002_0001));
        control.enable_interrupts();
        assert_eq!(
            control.registers().writes.borrow().len(),
            3,
            "no INT_CONTROL on v1"
        );
    }

    #[test]
    fn a_plain_device_only_writes_the_table() {
        let table = state_table();
        let control = Control::new(Kind::Plain, 0, 2, FakeRegisters::new(0, 0), Some(table));
        control.set_state(4);
        control.notify(1, 0);
        control.enable_interrupts();
        assert_eq!(table.load_u32(0, Ordering::Relaxed), 4);
        assert!(control.registers().writes.borrow().is_empty());
    }

    #[test]
    #[should_panic(expected = "state table")]
    fn emulation_needs_the_state_table() {
        Control::new(Kind::Plain, 0, 2, FakeRegisters::new(0, 0), None);
    }
}
