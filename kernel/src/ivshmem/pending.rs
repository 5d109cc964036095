//! The vectors of one device that fired and were not yet taken.
//!
//! Each device owns one [`Pending`] word; [`crate::interrupts`] sets the
//! vector's bit when its interrupt arrives, and the driver takes bits. An
//! event that fires while nobody waits stays latched until taken; events
//! the device drops (interrupts disabled or a vector masked,
//! docs/ivshmem-v2.md §7.3) never get here, so whoever takes a bit still
//! re-checks the work it stands for.

use core::sync::atomic::{AtomicU32, Ordering};

use crate::interrupts::Handler;

/// One bit per device vector: set when it fires, cleared when taken.
#[derive(Debug, Default)]
pub struct Pending(AtomicU32);

impl Pending {
    /// Vectors one word can track.
    pub const VECTORS: u16 = 32;

    /// Nothing pending.
    pub const fn new() -> Self {
        Self(AtomicU32::new(0))
    }

    /// The interrupt handler that sets `vector`'s bit.
    ///
    /// # Panics
    ///
    /// If `vector` is not below [`VECTORS`](Self::VECTORS).
    pub fn handler(&'static self, vector: u16) -> Handler {
        assert!(vector < Self::VECTORS, "vector {vector} has no pending bit");
        Handler::Latch {
            pending: &self.0,
            bit: vector as u8,
        }
    }

    /// Takes every pending bit at once.
    pub fn take_all(&self) -> u32 {
        self.0.swap(0, Ordering::SeqCst)
    }

    /// Whether any vector fired and was not yet taken.
    pub fn any(&self) -> bool {
        self.0.load(Ordering::SeqCst) != 0
    }

    /// Takes `vector`'s bit: whether it fired since it was last taken.
    pub fn take(&self, vector: u16) -> bool {
        vector < Self::VECTORS
            && self.0.fetch_and(!(1 << vector), Ordering::SeqCst) & (1 << vector) != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the interrupt handler does for `handler`.
    fn fire(handler: Handler) {
        let Handler::Latch { pending, bit } = handler else {
            panic!("a device vector latches");
        };
        pending.fetch_or(1 << bit, Ordering::SeqCst);
    }

    #[test]
    fn vectors_are_taken_one_at_a_time() {
        let pending: &'static Pending = std::boxed::Box::leak(std::boxed::Box::default());
        assert!(!pending.any());
        fire(pending.handler(1));
        fire(pending.handler(0));
        assert!(pending.any());
        assert!(pending.take(1));
        assert!(!pending.take(1), "taken once");
        assert!(pending.take(0));
        assert!(
            !pending.take(Pending::VECTORS),
            "out of range is never pending"
        );
        assert!(!pending.any());
        fire(pending.handler(31));
        fire(pending.handler(2));
        assert_eq!(pending.take_all(), (1 << 31) | (1 << 2));
        assert_eq!(pending.take_all(), 0);
    }

    #[test]
    fn two_devices_do_not_share_bits() {
        let a: &'static Pending = std::boxed::Box::leak(std::boxed::Box::default());
        let b: &'static Pending = std::boxed::Box::leak(std::boxed::Box::default());
        fire(a.handler(1));
        assert!(!b.any());
        assert!(a.take(1));
    }

    #[test]
    #[should_panic(expected = "no pending bit")]
    fn a_vector_beyond_the_word_has_no_handler() {
        let pending: &'static Pending = std::boxed::Box::leak(std::boxed::Box::default());
        pending.handler(32);
    }
}
