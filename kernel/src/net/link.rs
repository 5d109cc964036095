//! The ivshmem-net link over an ivshmem device: the netdev engine, built
//! and configured for the device, and its carrier reports.

use abi::report::{LinkDown, LinkUp};
use log::{info, warn};
use netdev::{Config, Engine, Sections};

use super::adapter::PeerNotifier;
use crate::exit::exit;
use crate::ivshmem::memory::{OwnWindow, Window};
use crate::ivshmem::{Device, Requirements};
use crate::pci::ConfigAccess;
use crate::{kprintln, time};
use abi::cmdline::{CommandLine, Mode};
use abi::exit::ExitCode;

/// What ivshmem-net asks of the device: protocol 0x0001 and exactly two
/// peers (docs/ivshmem-net.md §1).
pub const REQUIREMENTS: Requirements = Requirements {
    protocol: Some(0x0001),
    min_peers: 2,
    max_peers: 2,
};

/// The engine over a kernel device.
pub type LinkEngine = Engine<Window, OwnWindow, PeerNotifier>;

/// How often the rings and the state table are re-checked without a kick
/// (a lost notification may cost this much latency, never the link).
pub const RECHECK_MICROS: u64 = 5_000;

/// A MAC address for this boot: locally administered, unicast, derived from
/// the TSC (peers learn it through ARP, docs/ivshmem-net.md §4) and our ID.
fn mac_address(id: u16) -> [u8; 6] {
    let seed =
        time::micros_since_boot() ^ 0x9e37_79b9_7f4a_7c15_u64.wrapping_mul(u64::from(id) + 1);
    let bytes = seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes();
    netdev::locally_administered_mac([bytes[0], bytes[1], bytes[2], bytes[3], bytes[4], id as u8])
}

/// Creates the engine for `device`, enables its interrupts (interrupt mode)
/// and returns it. Exits with a message if the configuration is unusable.
pub fn open(
    device: &'static Device,
    config: &dyn ConfigAccess,
    command_line: &CommandLine,
) -> LinkEngine {
    let id = device.id();
    let peer = 1 - id;
    let mut engine_config = Config::new(id, device.vectors().max(1), mac_address(id));
    // Without `mtu=`, the engine picks Linux's default for the section
    // (docs/ivshmem-net.md §4), so a Linux peer and we agree unconfigured.
    engine_config.mtu = command_line.mtu.map(usize::from);
    let Some(own) = device.take_own_section() else {
        kprintln!("ivshmem-net: our output section is already in use");
        exit(ExitCode::Failure)
    };
    let sections = Sections {
        state_table: device.state_table(),
        own,
        peer: device
            .peer_section(peer)
            .expect("the other peer of a two-peer link"),
    };
    let engine = Engine::new(engine_config, sections, PeerNotifier::new(device, peer))
        .unwrap_or_else(|error| {
            kprintln!("ivshmem-net: {error}");
            exit(ExitCode::Failure)
        });
    let layout = engine.layout();
    info!(
        "ivshmem-net: id {id}, {} vector(s), queue {} entries, header {:#x}, data area {:#x}, MTU {}, MAC {}",
        device.vectors(),
        layout.queue_length(),
        layout.header_size(),
        layout.data_size(),
        engine.mtu(),
        format_mac(engine.config().mac)
    );
    if command_line.mode == Mode::Interrupt && !device.enable_interrupts(config) {
        warn!("ivshmem-net: the device has no interrupts; polling instead");
    }
    engine
}

/// `aa:bb:cc:dd:ee:ff`.
pub fn format_mac(mac: [u8; 6]) -> alloc::string::String {
    alloc::format!(
        "{:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        mac[0],
        mac[1],
        mac[2],
        mac[3],
        mac[4],
        mac[5]
    )
}

/// Prints a carrier change: `link: up (…)` or `link: down (…)`.
pub fn report_link(engine: &LinkEngine, up: bool) {
    let statistics = engine.statistics();
    if up {
        kprintln!(
            "{}",
            LinkUp {
                link_ups: statistics.link_ups,
                resets: statistics.resets,
            }
        );
    } else {
        kprintln!(
            "{}",
            LinkDown {
                resets: statistics.resets
            }
        );
    }
}
