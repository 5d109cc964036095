//! `pcap=com2`: every frame smoltcp sends or receives on the link, as a
//! classic libpcap capture (linktype Ethernet, microsecond timestamps since
//! boot) written as raw bytes to the second serial port, which the launcher
//! connects to a file (`cargo run -- demo --pcap FILE`).
//!
//! The capture is smoltcp's own [`PcapWriter`] middleware around whatever
//! device the stack polls ([`poll_ingress_single`], [`poll_egress`]); without `pcap=` there is no capture
//! and the device is polled directly, so the link pays nothing for it.
//!
//! The writer is made anew for each poll, over a borrowed device (`Lower`)
//! and a sink (`PerPoll`) that skips the pcap global header, which
//! [`Capture::open`] wrote once: the stack keeps owning its device, and
//! other middleware can wrap it the same way. QEMU's 16550 hands each byte
//! written to the transmit register to the chardev before the next
//! register access, so nothing is lost when the kernel exits; a capture
//! costs about one port write per byte (a 1 MiB TCP echo takes seconds).

use core::sync::atomic::{AtomicBool, Ordering};

use abi::cmdline::{Capture as Target, CommandLine};
use smoltcp::iface::{Interface, PollIngressSingleResult, PollResult, SocketSet};
use smoltcp::phy::{Device, DeviceCapabilities, PcapLinkType, PcapMode, PcapSink, PcapWriter};
use smoltcp::time::Instant;
use uart_16550::Uart16550;
use uart_16550::backend::PioBackend;

use crate::start::fail;

/// I/O port base of COM2.
const COM2: u16 = 0x2f8;

/// Whether COM2 has been claimed (it is opened at most once).
static CLAIMED: AtomicBool = AtomicBool::new(false);

/// The capture: COM2, with the global header already written.
pub struct Capture {
    port: Uart16550<PioBackend>,
}

impl core::fmt::Debug for Capture {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Capture").finish_non_exhaustive()
    }
}

impl Capture {
    /// The capture the command line asks for, its global header written;
    /// `None` without `pcap=`. Ends the kernel with a message if COM2 is
    /// missing (QEMU was started with one `-serial` only).
    pub fn open(command_line: &CommandLine) -> Option<Capture> {
        let Some(Target::Com2) = command_line.pcap else {
            return None;
        };
        if CLAIMED.swap(true, Ordering::SeqCst) {
            fail(format_args!("pcap: COM2 is already in use"));
        }
        // SAFETY: COM2's eight ports at 0x2f8 belong to this module, which
        // claims them once (`CLAIMED`); nothing else in the kernel touches
        // them, and the claim lasts for the kernel's life.
        let port = unsafe { Uart16550::new_port(COM2) };
        let Ok(mut port) = port else {
            fail(format_args!("pcap: COM2 ({COM2:#x}) is not a valid port"));
        };
        if let Err(error) = port.init(uart_16550::Config::default()) {
            fail(format_args!(
                "pcap: no UART at COM2 ({COM2:#x}): {error}; QEMU needs a second -serial for pcap=com2"
            ));
        }
        let mut capture = Capture { port };
        capture.global_header(PcapLinkType::Ethernet);
        Some(capture)
    }
}

impl PcapSink for Capture {
    fn write(&mut self, data: &[u8]) {
        self.port.send_bytes_exact(data);
    }
}

/// The capture as each poll's writer sees it: the global header was written
/// once by [`Capture::open`], so the one every new [`PcapWriter`] writes is
/// dropped.
struct PerPoll<'a>(&'a mut Capture);

impl PcapSink for PerPoll<'_> {
    fn write(&mut self, data: &[u8]) {
        self.0.write(data);
    }

    fn global_header(&mut self, _link_type: PcapLinkType) {}
}

/// A device borrowed for one poll: smoltcp's middleware owns its lower
/// device, the stack keeps owning its own.
struct Lower<'a, D: Device>(&'a mut D);

impl<D: Device> Device for Lower<'_, D> {
    type RxToken<'a>
        = D::RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = D::TxToken<'a>
    where
        Self: 'a;

    fn receive(&mut self, timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        self.0.receive(timestamp)
    }

    fn transmit(&mut self, timestamp: Instant) -> Option<Self::TxToken<'_>> {
        self.0.transmit(timestamp)
    }

    fn capabilities(&self) -> DeviceCapabilities {
        self.0.capabilities()
    }
}

/// One frame of ingress on `device`, through the capture if there is one.
pub fn poll_ingress_single<D: Device>(
    capture: Option<&mut Capture>,
    interface: &mut Interface,
    timestamp: Instant,
    device: &mut D,
    sockets: &mut SocketSet<'_>,
) -> PollIngressSingleResult {
    match capture {
        None => interface.poll_ingress_single(timestamp, device, sockets),
        Some(capture) => {
            let mut captured = PcapWriter::new(Lower(device), PerPoll(capture), PcapMode::Both);
            interface.poll_ingress_single(timestamp, &mut captured, sockets)
        }
    }
}

/// smoltcp's egress on `device`, through the capture if there is one.
pub fn poll_egress<D: Device>(
    capture: Option<&mut Capture>,
    interface: &mut Interface,
    timestamp: Instant,
    device: &mut D,
    sockets: &mut SocketSet<'_>,
) -> PollResult {
    match capture {
        None => interface.poll_egress(timestamp, device, sockets),
        Some(capture) => {
            let mut captured = PcapWriter::new(Lower(device), PerPoll(capture), PcapMode::Both);
            interface.poll_egress(timestamp, &mut captured, sockets)
        }
    }
}
