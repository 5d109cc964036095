//! Host backing for the [`netdev`] engine, kept out of `netdev` itself so that
//! the protocol crate stays `no_std` with `#![forbid(unsafe_code)]` and never
//! brings `std` into the kernel's build.
//!
//! * [`host`]: shared memory between threads (`HostMemory`, `HostLink`) and
//!   doorbells (`HostNotifier`), safe against a hostile peer thread;
//!   its module documentation gives the safety argument.
//! * [`mapped`]: shared memory mapped from another process (a QEMU guest's
//!   BAR, a file), for a host process that is a peer of a link; its module
//!   documentation gives the safety argument and when not to use it.
//! * [`test_utils`]: a scripted peer that plays Linux or Zephyr against an
//!   engine, for tests, the benchmark and the fuzz target.
#![deny(missing_docs)]

pub mod bench;
pub mod host;
pub mod mapped;
pub mod test_utils;

/// The host's monotonic clock as the engine takes it ([`netdev::Engine::poll`]):
/// time since this function was first called in the process.
pub fn now() -> netdev::Instant {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    netdev::Instant::from_micros(elapsed.as_micros() as i64)
}
