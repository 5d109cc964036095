//! The `link` app: brings the ivshmem-net link up and reports every change
//! of our state, the peer's and the carrier until the VM is stopped.

use abi::cmdline::Mode;
use log::info;
use netdev::State;

use crate::ivshmem::Device;
use crate::net::link::{LinkEngine, RECHECK_MICROS, report_link};
use crate::{idle, time};

/// Watches the link and prints every change of our state, the peer's state
/// and the carrier, until the VM is stopped.
pub fn run_link(engine: &mut LinkEngine, device: &'static Device, mode: Mode) -> ! {
    let mut last = (State::Unknown(u32::MAX), State::Unknown(u32::MAX), false);
    loop {
        device.take_pending();
        let up = engine.poll(time::now());
        let now = (engine.state(), engine.peer_state(), up);
        if now != last {
            info!("ivshmem-net: own {:?}, peer {:?}", now.0, now.1);
            if now.2 != last.2 && (up || last.2) {
                report_link(engine, up);
            }
            last = now;
        }
        if !device.has_pending() {
            idle::wait(mode, RECHECK_MICROS);
        }
    }
}
