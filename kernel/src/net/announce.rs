//! Announcing ourselves when the link comes up: a gratuitous ARP request for
//! our IPv4 address and an unsolicited neighbour advertisement (override
//! flag set) for each IPv6 address, built with smoltcp's wire types and sent
//! past smoltcp's `Interface`.
//!
//! A peer that restarted with a new MAC (Linux's driver takes a random one
//! at every probe, `docs/ivshmem-net.md` §4) or that kept an old entry for
//! us learns our current MAC at once instead of after its cache times out:
//! Linux updates an existing neighbour entry from either. (smoltcp ignores
//! gratuitous ARP, but our kernel drops its whole neighbour cache when the
//! link goes down, so it asks anyway.)

use alloc::vec;
use alloc::vec::Vec;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, IPV6_LINK_LOCAL_ALL_NODES, Icmpv6Packet, Icmpv6Repr, IpProtocol, Ipv4Address,
    Ipv6Address, Ipv6Packet, Ipv6Repr, NdiscNeighborFlags, NdiscRepr, RawHardwareAddress,
};

/// The Ethernet address of the IPv6 all-nodes group (ff02::1, RFC 2464 §7).
const ALL_NODES_MAC: EthernetAddress = EthernetAddress([0x33, 0x33, 0, 0, 0, 1]);

/// A gratuitous ARP request: "who has `address`? tell `address`", from
/// `mac`, broadcast (RFC 5227 §3, ARP announcement).
pub fn gratuitous_arp(mac: EthernetAddress, address: Ipv4Address) -> Vec<u8> {
    let arp = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: mac,
        source_protocol_addr: address,
        target_hardware_addr: EthernetAddress([0; 6]),
        target_protocol_addr: address,
    };
    let mut frame = vec![0u8; EthernetFrame::<&[u8]>::buffer_len(arp.buffer_len())];
    let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut ethernet);
    arp.emit(&mut ArpPacket::new_unchecked(ethernet.payload_mut()));
    frame
}

/// An unsolicited neighbour advertisement for `address` with our link-layer
/// address and the override flag, to all nodes (RFC 4861 §7.2.6), from
/// `address` itself (smoltcp keys its cache by the source address).
pub fn unsolicited_advertisement(mac: EthernetAddress, address: Ipv6Address) -> Vec<u8> {
    let icmp = Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
        flags: NdiscNeighborFlags::OVERRIDE,
        target_addr: address,
        lladdr: Some(RawHardwareAddress::from(mac)),
    });
    let ip = Ipv6Repr {
        src_addr: address,
        dst_addr: IPV6_LINK_LOCAL_ALL_NODES,
        next_header: IpProtocol::Icmpv6,
        payload_len: icmp.buffer_len(),
        hop_limit: 255,
    };
    let mut frame =
        vec![0u8; EthernetFrame::<&[u8]>::buffer_len(ip.buffer_len() + icmp.buffer_len())];
    let mut ethernet = EthernetFrame::new_unchecked(&mut frame[..]);
    EthernetRepr {
        src_addr: mac,
        dst_addr: ALL_NODES_MAC,
        ethertype: EthernetProtocol::Ipv6,
    }
    .emit(&mut ethernet);
    let mut packet = Ipv6Packet::new_unchecked(ethernet.payload_mut());
    ip.emit(&mut packet);
    icmp.emit(
        &address,
        &IPV6_LINK_LOCAL_ALL_NODES,
        &mut Icmpv6Packet::new_unchecked(packet.payload_mut()),
        &ChecksumCapabilities::default(),
    );
    frame
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAC: EthernetAddress = EthernetAddress([0x02, 0x4e, 0x49, 0, 0, 1]);

    #[test]
    fn a_gratuitous_arp_announces_our_address() {
        let frame = gratuitous_arp(MAC, Ipv4Address::new(10, 0, 0, 1));
        let ethernet = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(ethernet.dst_addr(), EthernetAddress::BROADCAST);
        assert_eq!(ethernet.ethertype(), EthernetProtocol::Arp);
        let arp = ArpRepr::parse(&ArpPacket::new_checked(ethernet.payload()).unwrap()).unwrap();
        assert_eq!(
            arp,
            ArpRepr::EthernetIpv4 {
                operation: ArpOperation::Request,
                source_hardware_addr: MAC,
                source_protocol_addr: Ipv4Address::new(10, 0, 0, 1),
                target_hardware_addr: EthernetAddress([0; 6]),
                target_protocol_addr: Ipv4Address::new(10, 0, 0, 1),
            }
        );
    }

    #[test]
    fn an_unsolicited_advertisement_overrides_caches() {
        let address = Ipv6Address::new(0xfe80, 0, 0, 0, 0x4e, 0x49ff, 0xfe00, 1);
        let frame = unsolicited_advertisement(MAC, address);
        let ethernet = EthernetFrame::new_checked(&frame[..]).unwrap();
        assert_eq!(ethernet.dst_addr(), ALL_NODES_MAC);
        let packet = Ipv6Packet::new_checked(ethernet.payload()).unwrap();
        let ip = Ipv6Repr::parse(&packet).unwrap();
        assert_eq!((ip.src_addr, ip.hop_limit), (address, 255));
        let icmp = Icmpv6Repr::parse(
            &ip.src_addr,
            &ip.dst_addr,
            &Icmpv6Packet::new_checked(packet.payload()).unwrap(),
            &ChecksumCapabilities::default(),
        )
        .expect("a valid checksum");
        assert_eq!(
            icmp,
            Icmpv6Repr::Ndisc(NdiscRepr::NeighborAdvert {
                flags: NdiscNeighborFlags::OVERRIDE,
                target_addr: address,
                lladdr: Some(RawHardwareAddress::from(MAC)),
            })
        );
    }
}
