//! smoltcp on a network device (the ivshmem-net engine, or virtio-net; see
//! [`NetDevice`]): the interface, its sockets, and the loop step every app
//! uses (run the link's state machine, run smoltcp, sleep until a doorbell,
//! smoltcp's next deadline or the re-check timer).
//!
//! # Layers
//!
//! ```text
//!   apps ── sockets (SocketSet, survive link changes)
//!            │
//!   Interface (smoltcp: IPv4 with fragmentation, IPv6, ARP/NDP; rebuilt
//!            │  when the link goes down, dropping every neighbour)
//!   (pcap=com2: smoltcp's PcapWriter around the port, per call, capture.rs)
//!            │
//!   Port<D>  Port: watches frames (reassembly drops, the peer), paces
//!            │  smoltcp's fragmenter (port.rs)
//!   D: NetDevice (the netdev engine over the ivshmem device, or virtio-net)
//! ```
//!
//! Announcements sent past smoltcp are written to the capture by hand.
//!
//! # Sessions
//!
//! A session of the link runs from a link-up to the next link-down. At
//! link-up the stack announces itself (gratuitous ARP, unsolicited
//! neighbour advertisements: `announce.rs`); when the first frame of the
//! peer arrives it reports the peer's MAC; at link-down it reports what the
//! session saw ([`PeerSession`]) and rebuilds the interface, so that no
//! neighbour, reassembly buffer or fragment of the old peer survives (a
//! restarted Linux peer comes back with a new MAC, `docs/ivshmem-net.md`
//! §4). smoltcp has no public way to flush its neighbour cache; the
//! sockets live in the [`SocketSet`] and are not affected.

use alloc::vec::Vec;
use core::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use log::info;
use smoltcp::iface::{
    Config as InterfaceConfig, Interface, PollIngressSingleResult, PollResult, SocketSet,
};
use smoltcp::phy::{Device as _, PcapSink as _};
use smoltcp::time::{Duration, Instant};
use smoltcp::wire::{EthernetAddress, HardwareAddress, IpCidr, Ipv4Cidr, Ipv6Cidr};

use super::announce;
use super::capture::{self, Capture};
use super::device::NetDevice;
use super::link::RECHECK_MICROS;
use super::port::Port;
use super::reassembly::{ReassemblyCounters, ReassemblyWatch};
use crate::{idle, kprintln, time};
use abi::cmdline::{CommandLine, Mode};
use abi::report::{
    IpPrefix, LinkDrops, MacAddress, NetConfig, NetStatistics, PeerFirstFrame, PeerGuess,
    PeerSession, Reassembly, Traffic,
};

/// How long smoltcp keeps an incomplete IPv4 datagram (its default is 60 s,
/// RFC 4944's maximum). Fragments of one datagram cross shared memory
/// within microseconds to milliseconds; a datagram still incomplete after
/// 3 s has lost a fragment (and a peer that stalls for 2 s has its link
/// reset anyway, `netdev::DEFAULT_TRANSMIT_TIMEOUT`). A short timeout also
/// bounds how long a stream of first fragments that never complete keeps
/// the slots taken after it ends.
///
/// The slots: four (`reassembly-buffer-count-4` in the workspace's
/// smoltcp features). On a point-to-point link the fragments of a datagram
/// arrive back to back, so one slot per concurrent flow (a ping, a UDP
/// echo, an echo reply) is enough, with room for a datagram that lost a
/// fragment and waits out its timeout. With `alloc`, smoltcp grows each
/// slot's buffer to the largest datagram it held: 4 × 64 KiB at most for
/// a conforming peer.
pub const REASSEMBLY_TIMEOUT: Duration = Duration::from_secs(3);

/// Egress rounds per poll at most (one fragment per round while a datagram
/// goes out in fragments: 65535 bytes at the smallest MTU, 68, take 1366;
/// what is left goes on at the next poll).
const MAX_EGRESS_ROUNDS: usize = 2048;

/// The current session of the link (module documentation).
#[derive(Debug, Clone, Copy)]
struct Session {
    /// The link-up count when it began (its number).
    number: u64,
    /// The engine's counters then.
    start: netdev::Statistics,
    /// The reassembly counters then.
    reassembly: ReassemblyCounters,
}

/// The network stack of this kernel.
pub struct Stack<D: NetDevice> {
    /// The device smoltcp sees (the network device behind the port).
    pub device: Port<D>,
    /// The smoltcp interface (rebuilt when the link goes down).
    pub interface: Interface,
    /// The sockets of the running apps.
    pub sockets: SocketSet<'static>,
    /// Our IPv4 address.
    pub local: Ipv4Addr,
    /// The peer's address (IPv4 or IPv6): the clients' target.
    pub peer: IpAddr,
    mac: EthernetAddress,
    addresses: Vec<IpCidr>,
    mode: Mode,
    spin_micros: u64,
    /// When smoltcp last sent or took something for a socket.
    active_at: u64,
    link_up: bool,
    session: Session,
    /// `pcap=`: the capture of every frame, if asked for.
    capture: Option<Capture>,
}

impl<D: NetDevice> core::fmt::Debug for Stack<D> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Stack")
            .field("local", &self.local)
            .field("peer", &self.peer)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// The IPv6 link-local address of `mac`: fe80::/64 with the modified EUI-64
/// interface identifier (RFC 4291 appendix A), as Linux derives it.
pub fn link_local(mac: [u8; 6]) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfe80,
        0,
        0,
        0,
        u16::from_be_bytes([mac[0] ^ 0x02, mac[1]]),
        u16::from_be_bytes([mac[2], 0xff]),
        u16::from_be_bytes([0xfe, mac[3]]),
        u16::from_be_bytes([mac[4], mac[5]]),
    )
}

impl<D: NetDevice> Stack<D> {
    /// Builds the interface on `engine` with the addresses from the command
    /// line: IPv4 (default 10.0.0.(id+1)/24), the IPv6 link-local address
    /// from our MAC, and `ip6=` if given; the peer defaults to
    /// 10.0.0.(2-id). Prints the [`NetConfig`] line.
    pub fn new(engine: D, command_line: &CommandLine) -> Self {
        let id = engine.id();
        let mac = EthernetAddress(engine.mac());
        let mtu = engine.capabilities().max_transmission_unit - 14;
        let spin_micros = u64::from(command_line.spin.unwrap_or(engine.spin_micros()));
        let (local, prefix) = command_line
            .ip
            .map_or((Ipv4Addr::new(10, 0, 0, id as u8 + 1), 24), |cidr| {
                (cidr.address, cidr.prefix)
            });
        let peer = command_line
            .peer
            .unwrap_or(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 2 - id as u8)));
        let ipv4 = Ipv4Cidr::new(local, prefix);
        let mut addresses = alloc::vec![
            IpCidr::Ipv4(ipv4),
            IpCidr::Ipv6(Ipv6Cidr::new(link_local(mac.0), 64)),
        ];
        if let Some(cidr) = command_line.ip6 {
            addresses.push(IpCidr::Ipv6(Ipv6Cidr::new(cidr.address, cidr.prefix)));
        }
        let mut device = Port::new(
            engine,
            ReassemblyWatch::new(mac, Some(ipv4), REASSEMBLY_TIMEOUT),
        );
        let interface = build_interface(&mut device, mac, &addresses);
        kprintln!(
            "{}",
            NetConfig {
                mac: MacAddress(mac.0),
                mtu: mtu as u32,
                addresses: addresses.iter().map(prefix_of).collect(),
            }
        );
        info!("net: peer {peer}");
        let start = device.inner().statistics();
        Self {
            device,
            interface,
            sockets: SocketSet::new(Vec::new()),
            local,
            peer,
            mac,
            addresses,
            mode: command_line.mode,
            spin_micros,
            active_at: 0,
            link_up: false,
            session: Session {
                number: start.link_ups,
                start,
                reassembly: ReassemblyCounters::default(),
            },
            capture: Capture::open(command_line),
        }
    }

    /// The network device below the port.
    pub fn engine(&self) -> &D {
        self.device.inner()
    }

    /// The network device below the port, mutably.
    pub fn engine_mut(&mut self) -> &mut D {
        self.device.inner_mut()
    }

    /// The IP MTU of the link.
    pub fn mtu(&self) -> usize {
        self.device.capabilities().max_transmission_unit - 14
    }

    /// Our address for talking to `peer`, as smoltcp picks it: the IPv4
    /// address, or for IPv6 the link-local address for a link-local peer
    /// and the static one (`ip6=`), if any, for the others.
    pub fn local_for(&self, peer: IpAddr) -> IpAddr {
        let IpAddr::V6(peer) = peer else {
            return IpAddr::V4(self.local);
        };
        let ipv6 = || {
            self.addresses.iter().filter_map(|cidr| match cidr {
                IpCidr::Ipv6(cidr) => Some(cidr.address()),
                IpCidr::Ipv4(_) => None,
            })
        };
        let link_local = ipv6().find(Ipv6Addr::is_unicast_link_local);
        let other = ipv6().find(|address| !address.is_unicast_link_local());
        let chosen = if peer.is_unicast_link_local() {
            link_local
        } else {
            other.or(link_local)
        };
        IpAddr::V6(chosen.unwrap_or(Ipv6Addr::UNSPECIFIED))
    }

    /// Every address we answer on.
    pub fn addresses(&self) -> &[IpCidr] {
        &self.addresses
    }

    /// One round of work: the link state machine (reporting link changes
    /// and sessions) and smoltcp, then one publication of what was sent
    /// and consumed.
    pub fn poll(&mut self) {
        let now = time::now();
        let up = self.engine_mut().poll_link(now);
        let link_ups = self.engine().statistics().link_ups;
        if self.link_up && (!up || link_ups != self.session.number) {
            // Down, or down and up again within one poll.
            self.link_down(now);
        }
        if up && !self.link_up {
            self.link_up_again(now);
        }
        self.interface.poll_maintenance(now);
        if self.device.fragmenting() {
            // Finish a datagram going out in fragments first (port.rs).
            self.egress(now);
        }
        loop {
            match capture::poll_ingress_single(
                self.capture.as_mut(),
                &mut self.interface,
                now,
                &mut self.device,
                &mut self.sockets,
            ) {
                PollIngressSingleResult::None => break,
                PollIngressSingleResult::PacketProcessed => {}
                PollIngressSingleResult::SocketStateChanged => {
                    self.active_at = time::micros_since_boot();
                }
            }
        }
        self.egress(now);
        if let Some((mac, length)) = self.device.take_first_frame() {
            kprintln!(
                "{}",
                PeerFirstFrame {
                    mac: MacAddress(mac.0),
                    length: length as u32,
                }
            );
        }
        // Publish what smoltcp sent and the completions of what it took, as
        // one batch with at most one doorbell.
        self.engine_mut().flush();
    }

    /// smoltcp's egress, round by round (one fragment per round while a
    /// datagram goes out in fragments).
    fn egress(&mut self, now: Instant) {
        for _ in 0..MAX_EGRESS_ROUNDS {
            self.device.begin_round();
            let result = capture::poll_egress(
                self.capture.as_mut(),
                &mut self.interface,
                now,
                &mut self.device,
                &mut self.sockets,
            );
            if result == PollResult::SocketStateChanged {
                self.active_at = time::micros_since_boot();
            }
            let sent = self.device.end_round();
            if self.device.fragmenting() {
                if !sent {
                    // The link below is full: the rest at a later poll.
                    break;
                }
            } else if matches!(result, PollResult::None) {
                break;
            }
        }
    }

    /// The link came up: a new session; announce ourselves.
    fn link_up_again(&mut self, now: Instant) {
        self.engine().report_link(true);
        self.link_up = true;
        let start = self.engine().statistics();
        self.session = Session {
            number: start.link_ups,
            start,
            reassembly: self.device.reassembly(now),
        };
        let mut frames = Vec::new();
        for cidr in &self.addresses {
            frames.push(match cidr {
                IpCidr::Ipv4(cidr) => announce::gratuitous_arp(self.mac, cidr.address()),
                IpCidr::Ipv6(cidr) => announce::unsolicited_advertisement(self.mac, cidr.address()),
            });
        }
        for frame in frames {
            self.send_raw(now, &frame);
        }
    }

    /// The link went down: report the session, then forget the peer.
    fn link_down(&mut self, now: Instant) {
        self.engine().report_link(false);
        self.link_up = false;
        let peer = *self.device.peer();
        // No neighbour, reassembly buffer or fragment of the old session
        // may survive: a new interface, a new session in the port.
        self.interface = build_interface(&mut self.device, self.mac, &self.addresses);
        self.device.new_session();
        let report = self.session_report(now, true, peer);
        kprintln!("{report}");
    }

    /// What the current session saw of the peer.
    fn session_report(
        &mut self,
        now: Instant,
        ended: bool,
        peer: super::peer::PeerWatch,
    ) -> PeerSession {
        let statistics = self.engine().statistics();
        let start = &self.session.start;
        let reassembly = self.device.reassembly(now).since(&self.session.reassembly);
        PeerSession {
            session: self.session.number,
            ended,
            mac: peer.mac.map(|mac| MacAddress(mac.0)),
            received: Traffic {
                frames: statistics.received_frames - start.received_frames,
                bytes: statistics.received_bytes - start.received_bytes,
            },
            largest_frame: peer.largest_frame as u32,
            sent: Traffic {
                frames: statistics.transmitted_frames - start.transmitted_frames,
                bytes: statistics.transmitted_bytes - start.transmitted_bytes,
            },
            protocol_errors: statistics.protocol_errors.total() - start.protocol_errors.total(),
            reassembly: reassembly_report(reassembly),
            guess: match statistics.peer.since(&start.peer).guess() {
                Some(netdev::PeerImplementation::Linux) => PeerGuess::Linux,
                Some(netdev::PeerImplementation::Zephyr) => PeerGuess::Zephyr,
                Some(netdev::PeerImplementation::EthIvshmem) => PeerGuess::EthIvshmem,
                None => PeerGuess::Unknown,
            },
        }
    }

    /// The current session so far (`peer: session N so far: …`).
    pub fn session_so_far(&mut self) -> PeerSession {
        let peer = *self.device.peer();
        self.session_report(time::now(), !self.link_up, peer)
    }

    /// The link's and the stack's counters since boot.
    pub fn statistics(&mut self) -> NetStatistics {
        let statistics = self.engine().statistics();
        let reassembly = self.device.reassembly(time::now());
        let fragments = self.device.fragments();
        NetStatistics {
            link_ups: statistics.link_ups,
            resets: statistics.resets,
            sent: Traffic {
                frames: statistics.transmitted_frames,
                bytes: statistics.transmitted_bytes,
            },
            received: Traffic {
                frames: statistics.received_frames,
                bytes: statistics.received_bytes,
            },
            kicks: statistics.kicks_sent,
            drops: LinkDrops {
                ring_full: statistics.drops.ring_full,
                link_down: statistics.drops.link_down,
                invalid_length: statistics.drops.invalid_length,
                bad_descriptor: statistics.drops.bad_descriptor,
            },
            protocol_errors: statistics.protocol_errors.total(),
            transmit_timeouts: statistics.transmit_timeouts,
            reassembly: reassembly_report(reassembly),
            fragmented: fragments.datagrams,
            fragments: fragments.fragments,
        }
    }

    /// Sends a frame built outside smoltcp to the link, past the port's
    /// watch ([`Port::send_unwatched`]); false if the link cannot take it
    /// now.
    pub fn send_raw(&mut self, now: Instant, frame: &[u8]) -> bool {
        let sent = self.device.send_unwatched(now, frame);
        if let (true, Some(capture)) = (sent, self.capture.as_mut()) {
            capture.packet(now, frame);
        }
        sent
    }

    /// The peer's MAC, once a frame of this session came.
    pub fn peer_mac(&self) -> Option<EthernetAddress> {
        self.device.peer().mac
    }

    /// Our MAC.
    pub fn mac(&self) -> EthernetAddress {
        self.mac
    }

    /// Sleeps until a doorbell, smoltcp's next deadline or the re-check timer,
    /// whichever is first (returns at once if work is pending).
    pub fn wait(&mut self) {
        self.wait_at_most(RECHECK_MICROS);
    }

    /// Like [`wait`](Self::wait), but never longer than `limit` microseconds.
    pub fn wait_at_most(&mut self, limit: u64) {
        // Frames left over by the receive budget, or a doorbell: no sleep.
        if self.engine_mut().has_work() {
            return;
        }
        let mut delay = self
            .interface
            .poll_delay(time::now(), &self.sockets)
            .map_or(RECHECK_MICROS, |delay| delay.total_micros());
        if delay == 0 {
            // smoltcp has something to send now; if the ring is full, the
            // engine asked the peer for a completion kick, which wakes us
            // (spinning would take the CPU from the peer under TCG).
            if self.engine_mut().transmit(time::now()).is_some() {
                return;
            }
            delay = RECHECK_MICROS;
        }
        let delay = delay.min(RECHECK_MICROS).min(limit);
        if delay > 0 {
            // Poll a while after our own traffic: a reply is likely soon.
            let spin =
                (self.active_at + self.spin_micros).saturating_sub(time::micros_since_boot());
            let engine = self.device.inner_mut();
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

/// A new interface on `device` with our MAC and `addresses`, a fresh random
/// seed (IPv4 identifications, TCP sequence numbers) and our reassembly
/// timeout.
fn build_interface<D: NetDevice>(
    device: &mut Port<D>,
    mac: EthernetAddress,
    addresses: &[IpCidr],
) -> Interface {
    let mut config = InterfaceConfig::new(HardwareAddress::Ethernet(mac));
    let mac_bits = u64::from_le_bytes([
        mac.0[0], mac.0[1], mac.0[2], mac.0[3], mac.0[4], mac.0[5], 0, 0,
    ]);
    config.random_seed = time::micros_since_boot().wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ mac_bits;
    let mut interface = Interface::new(config, device, time::now());
    interface.update_ip_addrs(|list| {
        for cidr in addresses {
            list.push(*cidr)
                .expect("iface-max-addr-count-3 holds IPv4, link-local and ip6=");
        }
    });
    interface.set_reassembly_timeout(REASSEMBLY_TIMEOUT);
    interface
}

/// An address as the report lines print it.
fn prefix_of(cidr: &IpCidr) -> IpPrefix {
    IpPrefix {
        address: IpAddr::from(cidr.address()),
        prefix: cidr.prefix_len(),
    }
}

fn reassembly_report(counters: ReassemblyCounters) -> Reassembly {
    Reassembly {
        reassembled: counters.reassembled,
        incomplete: counters.incomplete,
        no_slot: counters.no_slot,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_local_addresses_follow_the_mac_as_linux_derives_them() {
        assert_eq!(
            link_local([0x02, 0x4e, 0x49, 0x0a, 0xbc, 0x01]),
            "fe80::4e:49ff:fe0a:bc01".parse::<Ipv6Addr>().unwrap()
        );
        assert_eq!(
            link_local([0x52, 0x54, 0x00, 0x12, 0x34, 0x56]),
            "fe80::5054:ff:fe12:3456".parse::<Ipv6Addr>().unwrap()
        );
    }
}
