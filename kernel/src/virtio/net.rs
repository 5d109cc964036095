//! virtio-net as the stack's [`NetDevice`]: `virtio_drivers`'
//! `VirtIONetRaw` with our own receive and transmit buffers, frames handed
//! to smoltcp in place, and MSI-X vector 0 for the device configuration and
//! vector 1 for both queues, latched like the ivshmem device's
//! ([`Pending`]).

use alloc::boxed::Box;
use alloc::vec;
use alloc::vec::Vec;
use core::cell::RefCell;
use log::{info, warn};
use smoltcp::phy::{self, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use virtio_drivers::device::net::VirtIONetRaw;
use virtio_drivers::transport::pci::PciTransport;
use virtio_drivers::transport::pci::bus::{DeviceFunction, PciRoot};

use super::hal::KernelHal;
use super::pci::{Bus, common_config, find_net};
use crate::ivshmem::pending::Pending;
use crate::kprintln;
use crate::net::device::NetDevice;
use crate::paging::{self, Attributes};
use crate::pci::{self, ConfigAccess, Function, Msix, MsixTable, command};
use abi::cmdline::{CommandLine, Mode};
use abi::report::LinkUp;

/// Entries of each virtqueue (QEMU's default for virtio-net).
const QUEUE_SIZE: usize = 256;
/// One receive or transmit buffer: the 12-byte virtio-net header and an
/// Ethernet frame of up to 1514 bytes (no mergeable buffers, no offloads).
const BUFFER_SIZE: usize = 1536;
/// The virtio-net header the device puts before each frame (VERSION_1).
const HEADER_SIZE: usize = 12;
/// The largest Ethernet frame (MTU 1500).
const MAX_FRAME: usize = 1514;
/// virtio's "no MSI-X vector" (virtio 1.1 §4.1.4.3).
const NO_VECTOR: u16 = 0xffff;
/// Offsets in the common configuration (virtio 1.1 §4.1.4.3).
const MSIX_CONFIG: u64 = 0x10;
const QUEUE_SELECT: u64 = 0x16;
const QUEUE_MSIX_VECTOR: u64 = 0x1a;

/// The interrupts of the one virtio-net device (vector 0 configuration,
/// vector 1 the queues).
static PENDING: Pending = Pending::new();

type Raw = VirtIONetRaw<KernelHal, PciTransport, QUEUE_SIZE>;

/// The device and its buffers, shared by the tokens of one poll.
struct Inner {
    raw: Raw,
    /// Receive buffers handed to the device, by descriptor token.
    receiving: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers handed to the device, by descriptor token.
    transmitting: Vec<Option<Box<[u8]>>>,
    /// Transmit buffers the device gave back.
    free: Vec<Box<[u8]>>,
    received: u64,
    transmitted: u64,
}

impl Inner {
    /// Takes back the transmit buffers the device is done with.
    fn reclaim(&mut self) {
        while let Some(token) = self.raw.poll_transmit() {
            let Some(buffer) = self.transmitting[usize::from(token)].take() else {
                warn!("virtio-net: completion of unknown transmit token {token}");
                return;
            };
            // SAFETY: `buffer` is the one passed to `transmit_begin` for this
            // token, alive (boxed) ever since.
            if let Err(error) = unsafe { self.raw.transmit_complete(token, &buffer) } {
                warn!("virtio-net: transmit completion: {error}");
            }
            self.free.push(buffer);
        }
    }
}

/// virtio-net under the stack.
pub struct VirtioNet {
    inner: RefCell<Inner>,
    id: u16,
    mac: [u8; 6],
    interrupts: bool,
}

impl core::fmt::Debug for VirtioNet {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("VirtioNet")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Why no virtio-net device could be used.
pub type OpenError = alloc::string::String;

impl VirtioNet {
    /// Finds, initialises and (in interrupt mode) wires up the first
    /// virtio-net function.
    ///
    /// # Errors
    ///
    /// No virtio-net function, or the crate's transport or driver failed.
    pub fn open(
        config: &dyn ConfigAccess,
        functions: &[Function],
        command_line: &CommandLine,
    ) -> Result<Self, OpenError> {
        let function = find_net(functions).ok_or("no virtio-net PCI function")?;
        let bdf = function.bdf;
        pci::enable(
            config,
            bdf,
            command::MEMORY_SPACE | command::BUS_MASTER | command::INTX_DISABLE,
        );
        let mut root = PciRoot::new(Bus(config));
        let device_function = DeviceFunction {
            bus: bdf.bus,
            device: bdf.device,
            function: bdf.function,
        };
        let transport = PciTransport::new::<KernelHal, _>(&mut root, device_function)
            .map_err(|error| alloc::format!("virtio PCI transport: {error}"))?;
        let mut raw = Raw::new(transport).map_err(|error| alloc::format!("virtio-net: {error}"))?;
        let mac = raw.mac_address();
        let mut receiving: Vec<Option<Box<[u8]>>> = (0..QUEUE_SIZE).map(|_| None).collect();
        for _ in 0..QUEUE_SIZE {
            let mut buffer = vec![0u8; BUFFER_SIZE].into_boxed_slice();
            // SAFETY: the buffer is boxed and kept in `receiving` until the
            // device hands it back, and nothing touches it meanwhile.
            let token = unsafe { raw.receive_begin(&mut buffer) }
                .map_err(|error| alloc::format!("virtio-net receive queue: {error}"))?;
            receiving[usize::from(token)] = Some(buffer);
        }
        let free = (0..QUEUE_SIZE)
            .map(|_| vec![0u8; BUFFER_SIZE].into_boxed_slice())
            .collect();
        let interrupts =
            command_line.mode == Mode::Interrupt && enable_interrupts(config, function);
        if command_line.mode == Mode::Interrupt && !interrupts {
            warn!("virtio-net: no MSI-X; polling instead");
        }
        info!(
            "virtio-net at {bdf}: MAC {}, {QUEUE_SIZE}-entry queues, {}",
            crate::net::link::format_mac(mac),
            if interrupts { "MSI-X" } else { "polling" }
        );
        Ok(Self {
            inner: RefCell::new(Inner {
                raw,
                receiving,
                transmitting: (0..QUEUE_SIZE).map(|_| None).collect(),
                free,
                received: 0,
                transmitted: 0,
            }),
            id: command_line.id.unwrap_or(0),
            mac,
            interrupts,
        })
    }
}

/// Points the configuration and both queues at MSI-X vectors 0 and 1 and
/// enables MSI-X; false if the function has no MSI-X or refuses a vector.
fn enable_interrupts(config: &dyn ConfigAccess, function: &Function) -> bool {
    let bdf = function.bdf;
    let (Some(msix), Some((common_bar, common_offset))) =
        (Msix::find(config, bdf), common_config(config, bdf))
    else {
        return false;
    };
    let (Some(table_bar), Some(common_bar)) =
        (function.bar(msix.table_bar), function.bar(common_bar))
    else {
        return false;
    };
    if msix.table_size < 2 {
        return false;
    }
    let table_address = table_bar.address + u64::from(msix.table_offset);
    // SAFETY: the MSI-X table of this function, inside its own BAR.
    if unsafe { paging::map(table_address, 16 * 2, Attributes::DEVICE) }.is_err() {
        return false;
    }
    // SAFETY: just mapped uncached; only this driver programs this table.
    let table = unsafe { MsixTable::new(table_address, 2) };
    let Some(first) = crate::interrupts::allocate(2) else {
        return false;
    };
    msix.set_control(config, bdf, true, true);
    for vector in 0..2u16 {
        let idt_vector = first + vector as u8;
        crate::interrupts::register(idt_vector, PENDING.handler(vector));
        let (address, data) = pci::msi_message(crate::apic::id(), idt_vector);
        table.program(vector, address, data, false);
    }
    msix.set_control(config, bdf, true, false);
    // The common configuration was mapped by the transport (mmio_phys_to_virt).
    let common = common_bar.address + u64::from(common_offset);
    let write = |offset: u64, value: u16| {
        // SAFETY: a 16-bit register of the common configuration, mapped
        // uncached by `KernelHal::mmio_phys_to_virt` for the transport.
        unsafe { core::ptr::write_volatile((common + offset) as *mut u16, value) }
    };
    let read = |offset: u64| {
        // SAFETY: as for `write`.
        unsafe { core::ptr::read_volatile((common + offset) as *const u16) }
    };
    write(MSIX_CONFIG, 0);
    let mut accepted = read(MSIX_CONFIG) != NO_VECTOR;
    for queue in 0..2 {
        write(QUEUE_SELECT, queue);
        write(QUEUE_MSIX_VECTOR, 1);
        accepted &= read(QUEUE_MSIX_VECTOR) == 1;
    }
    accepted
}

/// A received frame: its buffer's descriptor token.
pub struct RxToken<'a> {
    inner: &'a RefCell<Inner>,
    token: u16,
}

impl core::fmt::Debug for RxToken<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("RxToken")
            .field("token", &self.token)
            .finish_non_exhaustive()
    }
}

/// Room for one frame to send.
pub struct TxToken<'a> {
    inner: &'a RefCell<Inner>,
}

impl core::fmt::Debug for TxToken<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TxToken").finish_non_exhaustive()
    }
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let mut inner = self.inner.borrow_mut();
        let mut buffer = inner.receiving[usize::from(self.token)]
            .take()
            .expect("a token from poll_receive has a buffer");
        // SAFETY: `buffer` is the one passed to `receive_begin` for this token.
        let (header, length) = unsafe { inner.raw.receive_complete(self.token, &mut buffer) }
            .unwrap_or((HEADER_SIZE, 0));
        inner.received += 1;
        drop(inner);
        let result = f(&buffer[header..header + length]);
        let mut inner = self.inner.borrow_mut();
        // SAFETY: as in `VirtioNet::open`: boxed, kept in `receiving`.
        match unsafe { inner.raw.receive_begin(&mut buffer) } {
            Ok(token) => inner.receiving[usize::from(token)] = Some(buffer),
            Err(error) => warn!("virtio-net: cannot give a receive buffer back: {error}"),
        }
        result
    }
}

impl phy::TxToken for TxToken<'_> {
    fn consume<R, F>(self, length: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut inner = self.inner.borrow_mut();
        inner.reclaim();
        let mut buffer = inner
            .free
            .pop()
            .expect("transmit() checked for a free buffer");
        let header = inner
            .raw
            .fill_buffer_header(&mut buffer)
            .unwrap_or(HEADER_SIZE);
        let length = length.min(BUFFER_SIZE - header);
        let result = f(&mut buffer[header..header + length]);
        // SAFETY: the buffer is boxed and kept in `transmitting` until the
        // device completes it; nothing touches it meanwhile.
        match unsafe { inner.raw.transmit_begin(&buffer[..header + length]) } {
            Ok(token) => {
                inner.transmitted += 1;
                inner.transmitting[usize::from(token)] = Some(buffer);
            }
            Err(error) => {
                warn!("virtio-net: cannot send a frame: {error}");
                inner.free.push(buffer);
            }
        }
        result
    }
}

impl phy::Device for VirtioNet {
    type RxToken<'a> = RxToken<'a>;
    type TxToken<'a> = TxToken<'a>;

    fn receive(&mut self, _timestamp: Instant) -> Option<(RxToken<'_>, TxToken<'_>)> {
        let token = self.inner.get_mut().raw.poll_receive()?;
        Some((
            RxToken {
                inner: &self.inner,
                token,
            },
            TxToken { inner: &self.inner },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<TxToken<'_>> {
        let inner = self.inner.get_mut();
        inner.reclaim();
        (!inner.free.is_empty() && inner.raw.can_send()).then_some(TxToken { inner: &self.inner })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut capabilities = DeviceCapabilities::default();
        capabilities.medium = Medium::Ethernet;
        capabilities.max_transmission_unit = MAX_FRAME;
        capabilities.max_burst_size = Some(QUEUE_SIZE / 2);
        capabilities
    }
}

impl NetDevice for VirtioNet {
    fn id(&self) -> u16 {
        self.id
    }

    fn mac(&self) -> [u8; 6] {
        self.mac
    }

    fn poll_link(&mut self, _now: Instant) -> bool {
        if self.interrupts {
            PENDING.take_all();
        }
        true
    }

    fn flush(&mut self) {}

    fn has_work(&mut self) -> bool {
        PENDING.any() || self.inner.get_mut().raw.poll_receive().is_some()
    }

    fn report_link(&self, up: bool) {
        if up {
            kprintln!(
                "{}",
                LinkUp {
                    link_ups: 1,
                    resets: 0
                }
            );
        }
    }

    /// None: QEMU's virtio-net moves frames on its I/O thread, which a
    /// spinning vCPU would compete with for the host's CPUs (issue 12's
    /// bench: TCP echo 130 -> 87 Mbit/s with 1 ms).
    fn spin_micros(&self) -> u32 {
        0
    }

    /// Only the frame counts: virtio-net has no link sessions, rings shared
    /// with a peer or protocol errors in netdev's sense.
    fn statistics(&self) -> netdev::Statistics {
        let inner = self.inner.borrow();
        netdev::Statistics {
            received_frames: inner.received,
            transmitted_frames: inner.transmitted,
            ..netdev::Statistics::default()
        }
    }

    fn log_statistics(&self) {
        let inner = self.inner.borrow();
        info!(
            "virtio-net statistics: {} frames received, {} transmitted",
            inner.received, inner.transmitted
        );
    }
}
