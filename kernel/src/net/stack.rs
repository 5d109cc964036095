//! smoltcp on the ivshmem-net engine: the interface, its sockets, and the
//! loop step every app uses (run the state machine, run smoltcp, sleep until a
//! doorbell, smoltcp's next deadline or the re-check timer).

use alloc::vec::Vec;
use core::net::Ipv4Addr;
use log::info;
use smoltcp::iface::{Config as InterfaceConfig, Interface, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use super::capture::{self, Capture};
use super::link::{LinkEngine, RECHECK_MICROS};
use crate::ivshmem::Device;
use crate::{idle, time};
use abi::cmdline::{CommandLine, Mode};

/// The network stack of this kernel.
pub struct Stack {
    /// The ivshmem-net engine (smoltcp's device).
    pub engine: LinkEngine,
    /// The smoltcp interface.
    pub interface: Interface,
    /// The sockets of the running apps.
    pub sockets: SocketSet<'static>,
    /// Our address.
    pub local: Ipv4Addr,
    /// The peer's address.
    pub peer: Ipv4Addr,
    device: &'static Device,
    mode: Mode,
    link_up: bool,
    /// `pcap=`: the capture of every frame, if asked for.
    capture: Option<Capture>,
}

impl core::fmt::Debug for Stack {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stack")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl Stack {
    /// Builds the interface on `engine` with the addresses from the command
    /// line, defaulting to 10.0.0.(id+1)/24 and the peer 10.0.0.(2-id).
    pub fn new(
        mut engine: LinkEngine,
        device: &'static Device,
        command_line: &CommandLine,
    ) -> Self {
        let id = device.id();
        let mac = engine.config().mac;
        let local = command_line
            .ip
            .map_or((Ipv4Addr::new(10, 0, 0, id as u8 + 1), 24), |cidr| {
                (cidr.address, cidr.prefix)
            });
        let peer = command_line
            .peer
            .unwrap_or(Ipv4Addr::new(10, 0, 0, 2 - id as u8));
        let mut config = InterfaceConfig::new(HardwareAddress::Ethernet(EthernetAddress(mac)));
        config.random_seed = time::micros_since_boot()
            ^ (u64::from(id) << 48)
            ^ u64::from_le_bytes([mac[0], mac[1], mac[2], mac[3], mac[4], mac[5], 0, 0]);
        let mut interface = Interface::new(config, &mut engine, time::now());
        interface.update_ip_addrs(|addresses| {
            addresses
                .push(IpCidr::new(local.0.into(), local.1))
                .expect("one address fits");
        });
        info!(
            "net: {}/{} peer {} MAC {}",
            local.0,
            local.1,
            peer,
            super::link::format_mac(mac)
        );
        Self {
            engine,
            interface,
            sockets: SocketSet::new(Vec::new()),
            local: local.0,
            peer,
            device,
            mode: command_line.mode,
            link_up: false,
            capture: Capture::open(command_line),
        }
    }

    /// One round of work: the link state machine and smoltcp. Prints link changes.
    pub fn poll(&mut self) {
        self.device.take_pending();
        let up = self.engine.poll(time::now());
        if up != self.link_up {
            super::link::report_link(&self.engine, up);
            self.link_up = up;
        }
        capture::poll(
            self.capture.as_mut(),
            &mut self.interface,
            time::now(),
            &mut self.engine,
            &mut self.sockets,
        );
        // Publish what smoltcp sent and the completions of what it took, as
        // one batch with at most one doorbell.
        self.engine.flush();
    }

    /// Sleeps until a doorbell, smoltcp's next deadline or the re-check timer,
    /// whichever is first (returns at once if work is pending).
    pub fn wait(&mut self) {
        self.wait_at_most(RECHECK_MICROS);
    }

    /// Like [`wait`](Self::wait), but never longer than `limit` microseconds.
    pub fn wait_at_most(&mut self, limit: u64) {
        // Frames left over by the receive budget, or a doorbell: no sleep.
        if self.device.has_pending() || self.engine.can_receive() {
            return;
        }
        let delay = self
            .interface
            .poll_delay(time::now(), &self.sockets)
            .map_or(RECHECK_MICROS, |delay| delay.total_micros())
            .min(RECHECK_MICROS)
            .min(limit);
        if delay > 0 {
            idle::wait(self.mode, delay);
        }
    }

    /// Whether the link is up.
    pub fn link_up(&self) -> bool {
        self.link_up
    }

    /// Polls until the link is up; false after `seconds` without it.
    pub fn wait_for_link(&mut self, seconds: u32) -> bool {
        let deadline = time::micros_since_boot() + u64::from(seconds) * 1_000_000;
        while !self.link_up {
            if time::micros_since_boot() > deadline {
                return false;
            }
            self.poll();
            self.wait();
        }
        true
    }

    /// The current time.
    pub fn now(&self) -> Instant {
        time::now()
    }
}
