//! smoltcp on a network device (the ivshmem-net engine, or virtio-net; see
//! [`NetDevice`]): the interface, its sockets, and the loop step every app
//! uses (run the state machine, run smoltcp, sleep until a doorbell,
//! smoltcp's next deadline or the re-check timer).

use alloc::vec::Vec;
use core::net::Ipv4Addr;
use log::info;
use smoltcp::iface::{Config as InterfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr};

use super::capture::{self, Capture};
use super::device::NetDevice;
use super::link::RECHECK_MICROS;
use crate::{idle, time};
use abi::cmdline::{CommandLine, Mode};

/// The network stack of this kernel.
pub struct Stack<D: NetDevice> {
    /// The network device (smoltcp's device).
    pub engine: D,
    /// The smoltcp interface.
    pub interface: Interface,
    /// The sockets of the running apps.
    pub sockets: SocketSet<'static>,
    /// Our address.
    pub local: Ipv4Addr,
    /// The peer's address.
    pub peer: Ipv4Addr,
    mode: Mode,
    spin_micros: u64,
    /// When smoltcp last sent or took something for a socket.
    active_at: u64,
    link_up: bool,
    /// `pcap=`: the capture of every frame, if asked for.
    capture: Option<Capture>,
}

impl<D: NetDevice> core::fmt::Debug for Stack<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stack")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .finish_non_exhaustive()
    }
}

impl<D: NetDevice> Stack<D> {
    /// Builds the interface on `engine` with the addresses from the command
    /// line, defaulting to 10.0.0.(id+1)/24 and the peer 10.0.0.(2-id).
    pub fn new(mut engine: D, command_line: &CommandLine) -> Self {
        let id = engine.id();
        let mac = engine.mac();
        let spin_micros = u64::from(command_line.spin.unwrap_or(engine.spin_micros()));
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
            mode: command_line.mode,
            spin_micros,
            active_at: 0,
            link_up: false,
            capture: Capture::open(command_line),
        }
    }

    /// One round of work: the link state machine and smoltcp. Prints link changes.
    pub fn poll(&mut self) {
        let up = self.engine.poll_link(time::now());
        if up != self.link_up {
            self.engine.report_link(up);
            self.link_up = up;
        }
        let result = capture::poll(
            self.capture.as_mut(),
            &mut self.interface,
            time::now(),
            &mut self.engine,
            &mut self.sockets,
        );
        if result == PollResult::SocketStateChanged {
            self.active_at = time::micros_since_boot();
        }
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
        if self.engine.has_work() {
            return;
        }
        let delay = self
            .interface
            .poll_delay(time::now(), &self.sockets)
            .map_or(RECHECK_MICROS, |delay| delay.total_micros())
            .min(RECHECK_MICROS)
            .min(limit);
        if delay > 0 {
            // Poll a while after our own traffic: a reply is likely soon.
            let spin =
                (self.active_at + self.spin_micros).saturating_sub(time::micros_since_boot());
            let engine = &mut self.engine;
            idle::wait_for(self.mode, delay, spin, || engine.has_work());
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
