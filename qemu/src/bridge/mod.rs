//! The host bridge: this process becomes one of the two peers of an
//! ivshmem-net link.
//!
//! * [`link`]: the shared memory, the netdev engine over it
//!   ([`netdev_host::mapped`]), and the notifier that emulates the v2 State
//!   and Doorbell registers (`docs/descriptor-page.md` §7, §8);
//! * [`doorbell`]: the v1 client of our ivshmem server, as QEMU's
//!   `ivshmem-doorbell` plays it (`docs/ivshmem-v2.md` §14.3);
//! * [`tap`]: the TAP device (created and removed by us, or a persistent one
//!   the user made and configured);
//! * [`pcap`]: `--pcap FILE`, every frame that crosses the link.

pub mod doorbell;
pub mod link;
pub mod pcap;
pub mod tap;
