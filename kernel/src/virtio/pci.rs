//! `virtio_drivers`' PCI configuration access over this kernel's
//! [`ConfigAccess`], and what the crate leaves to its user on PCI: finding
//! the virtio-net function, enabling it, the common configuration structure
//! (virtio 1.1 §4.1.4.3) for the MSI-X vectors of its queues.

use virtio_drivers::transport::pci::bus::{ConfigurationAccess, DeviceFunction};

use crate::pci::{Bdf, ConfigAccess, Function, capabilities};

/// The virtio vendor ID and the modern virtio-net device ID (virtio 1.1 §4.1.2).
pub const VIRTIO_NET: (u16, u16) = (0x1af4, 0x1041);
/// The transitional virtio-net device ID.
pub const VIRTIO_NET_TRANSITIONAL: u16 = 0x1000;

/// Our configuration access as `virtio_drivers` wants it.
#[derive(Clone, Copy)]
pub struct Bus<'a>(pub &'a dyn ConfigAccess);

impl core::fmt::Debug for Bus<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Bus")
    }
}

/// Our address of `virtio_drivers`' device function.
pub fn bdf(function: DeviceFunction) -> Bdf {
    Bdf {
        bus: function.bus,
        device: function.device,
        function: function.function,
    }
}

impl ConfigurationAccess for Bus<'_> {
    fn read_word(&self, device_function: DeviceFunction, register_offset: u8) -> u32 {
        self.0
            .read32(bdf(device_function), u16::from(register_offset))
    }

    fn write_word(&mut self, device_function: DeviceFunction, register_offset: u8, data: u32) {
        self.0
            .write32(bdf(device_function), u16::from(register_offset), data)
    }

    unsafe fn unsafe_clone(&self) -> Self {
        *self
    }
}

/// The first virtio-net function in the inventory.
pub fn find_net(functions: &[Function]) -> Option<&Function> {
    functions.iter().find(|function| {
        function.vendor == VIRTIO_NET.0
            && (function.device == VIRTIO_NET.1 || function.device == VIRTIO_NET_TRANSITIONAL)
    })
}

/// The vendor capability of virtio's PCI transport (virtio 1.1 §4.1.4).
const VENDOR_CAPABILITY: u8 = 0x09;
/// `cfg_type` of the common configuration (virtio 1.1 §4.1.4).
const COMMON_CFG: u8 = 1;

/// Where the common configuration lies: (BAR index, offset in it).
pub fn common_config(config: &dyn ConfigAccess, bdf: Bdf) -> Option<(u8, u32)> {
    capabilities(config, bdf)
        .into_iter()
        .filter(|capability| capability.id == VENDOR_CAPABILITY)
        .find_map(|capability| {
            let header = config.read32(bdf, capability.offset);
            let cfg_type = (header >> 24) as u8;
            (cfg_type == COMMON_CFG).then(|| {
                let bar = config.read32(bdf, capability.offset + 4) as u8;
                let offset = config.read32(bdf, capability.offset + 8);
                (bar, offset)
            })
        })
}
