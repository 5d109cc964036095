//! virtio-net, the baseline QEMU users would pick instead of ivshmem-net
//! (`net=virtio` on the command line): the `virtio-drivers` crate behind
//! this kernel's PCI configuration access ([`pci`]), page allocator and
//! identity mapping ([`hal`]), with MSI-X interrupts wired like the ivshmem
//! device's, and smoltcp on top through the same stack ([`net`]).

pub mod hal;
pub mod net;
pub mod pci;

pub use net::VirtioNet;
