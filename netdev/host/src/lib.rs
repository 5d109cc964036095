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

pub mod host;
pub mod test_utils;
