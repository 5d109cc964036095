//! What one session of the link shows of the peer, from the frames it sends:
//! its MAC (the source of its first frame) and the longest frame (a lower
//! bound of its MTU). The rest of a session's report (frames, bytes,
//! protocol errors, a guess at the implementation) comes from the engine's
//! statistics (`netdev::Statistics`, `docs/ivshmem-net.md` §12).

use smoltcp::wire::EthernetAddress;

/// The peer as seen in the frames of one session.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PeerWatch {
    /// The source MAC of the first frame of the session.
    pub mac: Option<EthernetAddress>,
    /// The longest frame, Ethernet header included.
    pub largest_frame: usize,
    /// The first frame's MAC and length, until taken for the report.
    first_frame: Option<(EthernetAddress, usize)>,
}

impl PeerWatch {
    /// Looks at a frame from the peer.
    pub fn observe(&mut self, frame: &[u8]) {
        self.largest_frame = self.largest_frame.max(frame.len());
        if self.mac.is_none() && frame.len() >= 14 {
            let mac = EthernetAddress::from_bytes(&frame[6..12]);
            self.mac = Some(mac);
            self.first_frame = Some((mac, frame.len()));
        }
    }

    /// The first frame's source MAC and length, once per session.
    pub fn take_first_frame(&mut self) -> Option<(EthernetAddress, usize)> {
        self.first_frame.take()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_frame_names_the_peer() {
        let mut watch = PeerWatch::default();
        assert_eq!(watch.take_first_frame(), None);
        let mut frame = [0u8; 60];
        frame[6..12].copy_from_slice(&[0x02, 1, 2, 3, 4, 5]);
        watch.observe(&frame);
        let mut longer = [0u8; 1514];
        longer[6..12].copy_from_slice(&[0x02, 9, 9, 9, 9, 9]);
        watch.observe(&longer);
        let mac = EthernetAddress([0x02, 1, 2, 3, 4, 5]);
        assert_eq!(watch.take_first_frame(), Some((mac, 60)));
        assert_eq!(watch.take_first_frame(), None, "reported once");
        assert_eq!((watch.mac, watch.largest_frame), (Some(mac), 1514));
        watch.observe(&[0u8; 10]);
        assert_eq!(watch.largest_frame, 1514);
    }
}
