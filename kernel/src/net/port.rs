//! [`Port`]: the device smoltcp sees, a middleware between the link and
//! smoltcp's `Interface`, in the manner of smoltcp's own `phy` middlewares
//! (`Tracer`, `PcapWriter`, `FaultInjector`). It wraps any
//! [`smoltcp::phy::Device`] (the netdev engine here) and
//! changes no frame; it watches them and paces one thing.
//!
//! # What it watches
//!
//! * Incoming IPv4 fragments, with a bookkeeping mirror of smoltcp's
//!   reassembly slots ([`ReassemblyWatch`]): datagrams reassembled,
//!   incomplete ones dropped at their timeout, fragments refused a slot.
//!   smoltcp drops all of these silently.
//! * The peer, per session ([`PeerWatch`]): its MAC from the first frame,
//!   its longest frame.
//! * Outgoing IPv4 fragments: datagrams sent in fragments, and whether
//!   smoltcp is in the middle of one (below).
//!
//! # Pacing smoltcp's fragmenter
//!
//! smoltcp 0.14 has a single fragmenter: a datagram above the IP MTU goes
//! out one fragment per `poll_egress` round (the first one right away, the
//! others from the fragmenter, which asks the device for a token before
//! anything else in the round). A second datagram that needs fragments
//! before the first is done takes the fragmenter over, and the first never
//! completes at the receiver. Two large pings in a row, or a large echo
//! reply while a large UDP datagram is under way, would lose one. So, while
//! the last fragment we saw go out had "more fragments" set:
//!
//! * [`transmit`](smoltcp::phy::Device::transmit) gives one token per
//!   egress round ([`Port::begin_round`]): the fragmenter's; the sockets
//!   wait for the next round;
//! * [`receive`](smoltcp::phy::Device::receive) gives nothing (an echo
//!   reply could need fragments) as long as the link below can take a
//!   frame, so the stack drains the fragmenter first. When it cannot (its
//!   ring is full), receiving goes on: the peer may be waiting for us to
//!   consume before it completes our frames, and two stacks that both
//!   waited would wait for ever.
//!
//! A round in which smoltcp asks for no token at all means its fragmenter
//! is empty (it always asks first), whatever we last saw: the pacing ends.
//!
//! # Where other middleware goes
//!
//! The port observes what smoltcp sends and receives; wrap the link device
//! *inside* it (`Port<Capture<LinkEngine>>`) for a capture that also sees
//! the frames the stack sends past smoltcp (link-up announcements, the
//! `fragment-flood` app), which go to the device below through
//! [`Port::send_unwatched`].

use smoltcp::phy::{self, Device, DeviceCapabilities, PacketMeta};
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetFrame, EthernetProtocol, Ipv4Packet};

use super::peer::PeerWatch;
use super::reassembly::{ReassemblyCounters, ReassemblyWatch};

/// Outgoing IPv4 fragments (counted since boot).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FragmentCounters {
    /// Datagrams sent in fragments (their first fragments).
    pub datagrams: u64,
    /// Fragments sent.
    pub fragments: u64,
}

/// What the receive side watches.
#[derive(Debug)]
struct RxWatch {
    reassembly: ReassemblyWatch,
    peer: PeerWatch,
}

/// What the transmit side watches and paces.
#[derive(Debug, Default)]
struct TxWatch {
    /// The last fragment sent had "more fragments" set: smoltcp's
    /// fragmenter is under way.
    fragmenting: bool,
    /// `transmit` calls in this egress round.
    round_requests: u32,
    /// Tokens given in this egress round.
    round_tokens: u32,
    counters: FragmentCounters,
}

impl TxWatch {
    /// Looks at a frame smoltcp wrote.
    fn observe(&mut self, frame: &[u8]) {
        let Ok(ethernet) = EthernetFrame::new_checked(frame) else {
            return;
        };
        if ethernet.ethertype() != EthernetProtocol::Ipv4 {
            return;
        }
        let Ok(packet) = Ipv4Packet::new_checked(ethernet.payload()) else {
            return;
        };
        if packet.more_frags() {
            if packet.frag_offset() == 0 {
                self.counters.datagrams += 1;
            }
            self.counters.fragments += 1;
            self.fragmenting = true;
        } else if packet.frag_offset() != 0 {
            self.counters.fragments += 1;
            self.fragmenting = false;
        }
    }
}

/// The middleware (module documentation).
#[derive(Debug)]
pub struct Port<D> {
    inner: D,
    rx: RxWatch,
    tx: TxWatch,
}

impl<D: Device> Port<D> {
    /// The port over `inner`, counting reassembly with `reassembly`.
    pub fn new(inner: D, reassembly: ReassemblyWatch) -> Self {
        Self {
            inner,
            rx: RxWatch {
                reassembly,
                peer: PeerWatch::default(),
            },
            tx: TxWatch::default(),
        }
    }

    /// The device below.
    pub fn inner(&self) -> &D {
        &self.inner
    }

    /// The device below, mutably (sending past the port skips its watch).
    pub fn inner_mut(&mut self) -> &mut D {
        &mut self.inner
    }

    /// Sends a frame built outside smoltcp (announcements, test traffic)
    /// through the device below, past this port's watch: such frames are
    /// not smoltcp's, and would mislead the pacing. False if the device
    /// cannot take a frame now.
    pub fn send_unwatched(&mut self, timestamp: Instant, frame: &[u8]) -> bool {
        use phy::TxToken as _;
        match self.inner.transmit(timestamp) {
            Some(token) => {
                token.consume(frame.len(), |buffer| buffer.copy_from_slice(frame));
                true
            }
            None => false,
        }
    }

    /// An egress round begins (one `Interface::poll_egress`).
    pub fn begin_round(&mut self) {
        self.tx.round_requests = 0;
        self.tx.round_tokens = 0;
    }

    /// Ends an egress round: whether a token went out in it. A round
    /// without a single request for a token shows that smoltcp's
    /// fragmenter is empty.
    pub fn end_round(&mut self) -> bool {
        if self.tx.round_requests == 0 {
            self.tx.fragmenting = false;
        }
        self.tx.round_tokens > 0
    }

    /// Whether smoltcp is in the middle of sending a datagram in fragments.
    pub fn fragmenting(&self) -> bool {
        self.tx.fragmenting
    }

    /// IPv4 reassembly, with the slots expired at `now`.
    pub fn reassembly(&mut self, now: Instant) -> ReassemblyCounters {
        self.rx.reassembly.expire(now);
        self.rx.reassembly.counters()
    }

    /// Datagrams sent in fragments.
    pub fn fragments(&self) -> FragmentCounters {
        self.tx.counters
    }

    /// The peer as seen in this session.
    pub fn peer(&self) -> &PeerWatch {
        &self.rx.peer
    }

    /// The peer's first frame of the session (MAC, length), once.
    pub fn take_first_frame(&mut self) -> Option<(smoltcp::wire::EthernetAddress, usize)> {
        self.rx.peer.take_first_frame()
    }

    /// The interface above was rebuilt (the link went down): its
    /// reassembly slots and its fragmenter are gone, and the next session
    /// may have another peer.
    pub fn new_session(&mut self) {
        self.rx.reassembly.abandon();
        self.rx.peer = PeerWatch::default();
        self.tx.fragmenting = false;
    }
}

impl<D: Device> Device for Port<D> {
    type RxToken<'a>
        = RxToken<'a, D::RxToken<'a>>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, D::TxToken<'a>>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.rx.reassembly.expire(timestamp);
        if self.tx.fragmenting && self.inner.transmit(timestamp).is_some() {
            // Drain smoltcp's fragmenter first (module documentation).
            return None;
        }
        let Self { inner, rx, tx } = self;
        let (rx_token, tx_token) = inner.receive(timestamp)?;
        Some((
            RxToken {
                inner: rx_token,
                watch: rx,
                now: timestamp,
            },
            TxToken {
                inner: tx_token,
                watch: tx,
            },
        ))
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.tx.round_requests += 1;
        if self.tx.fragmenting && self.tx.round_tokens > 0 {
            return None;
        }
        let inner = self.inner.transmit(timestamp)?;
        self.tx.round_tokens += 1;
        Some(TxToken {
            inner,
            watch: &mut self.tx,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.inner.capabilities()
    }
}

/// A received frame, watched before smoltcp sees it.
#[derive(Debug)]
pub struct RxToken<'a, T> {
    inner: T,
    watch: &'a mut RxWatch,
    now: Instant,
}

impl<T: phy::RxToken> phy::RxToken for RxToken<'_, T> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let Self { inner, watch, now } = self;
        inner.consume(|frame| {
            watch.reassembly.observe(frame, now);
            watch.peer.observe(frame);
            f(frame)
        })
    }

    fn meta(&self) -> PacketMeta {
        self.inner.meta()
    }
}

/// A frame to send, watched once smoltcp has written it.
#[derive(Debug)]
pub struct TxToken<'a, T> {
    inner: T,
    watch: &'a mut TxWatch,
}

impl<T: phy::TxToken> phy::TxToken for TxToken<'_, T> {
    fn consume<R, F>(self, length: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let Self { inner, watch } = self;
        inner.consume(length, |buffer| {
            let result = f(buffer);
            watch.observe(buffer);
            result
        })
    }

    fn set_meta(&mut self, meta: PacketMeta) {
        self.inner.set_meta(meta);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::reassembly::tests::{OURS, fragment};
    use alloc::vec::Vec;
    use phy::{RxToken as _, TxToken as _};
    use smoltcp::phy::Loopback;
    use smoltcp::phy::Medium;
    use smoltcp::time::Duration;

    fn port() -> Port<Loopback> {
        Port::new(
            Loopback::new(Medium::Ethernet),
            ReassemblyWatch::new(OURS, None, Duration::from_secs(3)),
        )
    }

    fn send(port: &mut Port<Loopback>, frame: &[u8]) -> bool {
        match port.transmit(Instant::ZERO) {
            Some(token) => {
                token.consume(frame.len(), |buffer| buffer.copy_from_slice(frame));
                true
            }
            None => false,
        }
    }

    #[test]
    fn while_a_datagram_goes_out_in_fragments_one_token_per_round() {
        let mut port = port();
        port.begin_round();
        assert!(send(&mut port, &fragment(1, 0, 1480, true)));
        assert!(port.fragmenting());
        assert!(
            !send(&mut port, &fragment(2, 0, 100, false)),
            "a socket waits"
        );
        assert!(port.end_round());
        port.begin_round();
        assert!(send(&mut port, &fragment(1, 1480, 1480, true)));
        assert!(!send(&mut port, &fragment(2, 0, 100, false)));
        assert!(port.end_round());
        // Incoming frames wait while the fragments can go out.
        assert!(port.receive(Instant::ZERO).is_none());
        port.begin_round();
        assert!(send(&mut port, &fragment(1, 2960, 20, false)));
        assert!(!port.fragmenting());
        assert!(send(&mut port, &fragment(2, 0, 100, false)), "free again");
        assert!(port.end_round());
        assert_eq!(
            port.fragments(),
            FragmentCounters {
                datagrams: 1,
                fragments: 3
            }
        );
        // The frames come back through the loopback and are watched.
        let mut received = Vec::new();
        while let Some((rx, _)) = port.receive(Instant::ZERO) {
            rx.consume(|frame| received.push(frame.len()));
        }
        assert_eq!(received.len(), 4);
        assert_eq!(port.reassembly(Instant::ZERO).reassembled, 1);
        assert_eq!(port.peer().largest_frame, 14 + 20 + 1480);
        assert!(port.take_first_frame().is_some());
    }

    #[test]
    fn a_round_without_requests_ends_the_pacing() {
        let mut port = port();
        port.begin_round();
        assert!(send(&mut port, &fragment(1, 0, 1480, true)));
        port.end_round();
        // The interface was rebuilt, or its fragmenter gave up: smoltcp
        // asks for nothing.
        port.begin_round();
        assert!(!port.end_round());
        assert!(!port.fragmenting());
        port.begin_round();
        assert!(send(&mut port, &fragment(1, 0, 1480, true)));
        port.new_session();
        assert!(!port.fragmenting());
    }
}
