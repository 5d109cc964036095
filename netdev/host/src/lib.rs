//! Host backing for the [`netdev`] engine, kept out of `netdev` itself so that
//! the protocol crate stays `no_std` with `#![forbid(unsafe_code)]` and never
//! brings `std` into the kernel's build.
//!
//! * [`host`]: shared memory between threads (`HostMemory`, `HostLink`) and
//!   doorbells (`HostNotifier`), the only `unsafe` code on the engine's path;
//!   its module documentation gives the safety argument.
//! * [`test_utils`]: a scripted peer that plays Linux or Zephyr against an
//!   engine, for tests, the benchmark and the fuzz target.
#![deny(missing_docs)]

pub mod bench;
pub mod host;
pub mod test_utils;

/// The host's monotonic clock as the engine takes it ([`netdev::Engine::poll`]):
/// time since this function was first called in the process.
pub fn now() -> netdev::Instant {
    use std::sync::OnceLock;
    static EPOCH: OnceLock<std::time::Instant> = OnceLock::new();
    let elapsed = EPOCH.get_or_init(std::time::Instant::now).elapsed();
    netdev::Instant::from_micros(elapsed.as_micros() as i64)
}
