//! What the stack ([`super::stack`]) needs from a network device besides
//! smoltcp's `phy::Device`: its own work between smoltcp's polls (a link
//! state machine, interrupt bits), publication of a batch, and whether work
//! is waiting. Two devices implement it: the ivshmem-net link
//! ([`IvshmemNet`], the netdev engine over an ivshmem device) and virtio-net
//! ([`crate::virtio::VirtioNet`], the baseline). The stack is generic over
//! it, so each is compiled in without a dispatch on the frame path.

use smoltcp::phy;
use smoltcp::time::Instant;

use super::link::{LinkEngine, report_link};
use crate::ivshmem::Device;

/// A network device the stack runs smoltcp on.
pub trait NetDevice: phy::Device {
    /// Our peer ID (0 or 1): the default addresses derive from it.
    fn id(&self) -> u16;
    /// Our MAC address.
    fn mac(&self) -> [u8; 6];
    /// Takes the interrupt bits and runs the device's own work; returns
    /// whether the carrier is up.
    fn poll_link(&mut self, now: Instant) -> bool;
    /// Publishes what smoltcp sent and the completions of what it took.
    fn flush(&mut self);
    /// Whether work waits without sleeping: an interrupt that was not taken
    /// yet, or received frames left over.
    fn has_work(&mut self) -> bool;
    /// Prints a carrier change (`link: up (…)` / `link: down (…)`).
    fn report_link(&self, up: bool);
    /// Logs the device's counters (at the end of the apps).
    fn log_statistics(&self);
    /// The device's counters in the engine's terms (the stack's session and
    /// `stats` reports are built from them).
    fn statistics(&self) -> netdev::Statistics;
    /// How long to poll for a reply after our own traffic before halting,
    /// in interrupt mode, unless the command line says (`spin=`).
    fn spin_micros(&self) -> u32;
}

/// The ivshmem-net link: the netdev engine and the device it runs on.
#[derive(Debug)]
pub struct IvshmemNet {
    /// The engine.
    pub engine: LinkEngine,
    device: &'static Device,
}

impl IvshmemNet {
    /// The engine `engine` over `device`.
    pub fn new(engine: LinkEngine, device: &'static Device) -> Self {
        Self { engine, device }
    }
}

impl phy::Device for IvshmemNet {
    type RxToken<'a> = <LinkEngine as phy::Device>::RxToken<'a>;
    type TxToken<'a> = <LinkEngine as phy::Device>::TxToken<'a>;

    #[inline]
    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        phy::Device::receive(&mut self.engine, timestamp)
    }

    #[inline]
    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        phy::Device::transmit(&mut self.engine, timestamp)
    }

    fn capabilities(&self) -> phy::DeviceCapabilities {
        self.engine.capabilities()
    }
}

impl NetDevice for IvshmemNet {
    fn id(&self) -> u16 {
        self.device.id()
    }

    fn mac(&self) -> [u8; 6] {
        self.engine.config().mac
    }

    fn poll_link(&mut self, now: Instant) -> bool {
        self.device.take_pending();
        self.engine.poll(now)
    }

    fn flush(&mut self) {
        self.engine.flush();
    }

    fn has_work(&mut self) -> bool {
        self.device.has_pending() || self.engine.can_receive()
    }

    fn report_link(&self, up: bool) {
        report_link(&self.engine, up);
    }

    /// The peer's reply shows up in shared memory long before its doorbell
    /// has gone through both QEMUs and woken our vCPU. Long enough for a
    /// typical reply (poll-mode RTT is 0.12-0.16 ms), no longer: while we
    /// spin we hold a host CPU the peer's threads may need, and the tail
    /// grows with the spin (issue 12's bench, ivshmem irq, load 0.2: spin
    /// 0/200/1000 us gave RTT p50 0.185/0.126/0.123 ms and p99
    /// 0.271/0.240/2.123 ms).
    fn spin_micros(&self) -> u32 {
        200
    }

    fn log_statistics(&self) {
        log::info!("ivshmem-net statistics: {:?}", self.engine.statistics());
    }

    fn statistics(&self) -> netdev::Statistics {
        self.engine.statistics()
    }
}
