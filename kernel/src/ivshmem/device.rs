//! The ivshmem device: probe and mapping, then the device API (facts,
//! memory, state, doorbells, events) over whichever kind was found.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicBool, Ordering};

use abi::cmdline::Mode;

use super::control::Control;
use super::error::{ProbeError, Requirements};
use super::layout::{Region, Sections};
use super::memory::{OwnWindow, ReadWrite, Window};
use super::pending::Pending;
use super::registers::Mmio;
use super::{emulated, v2};
use crate::paging::{self, Attributes};
use crate::pci::{self, Bdf, ConfigAccess, Function, Msix, MsixTable};
use crate::{idle, time};

/// Device vectors this driver handles at most (one bit each in its pending word).
pub const MAX_VECTORS: u16 = Pending::VECTORS;
/// Where BAR0 and BAR1 go when nobody assigned them (Jailhouse resets them to
/// 0; these are the addresses its demo inmate uses, docs/ivshmem-v2.md §4).
const UNASSIGNED_BAR0: u32 = 0xff00_0000;
const UNASSIGNED_BAR1: u32 = 0xff00_1000;

/// Which kind of device it is.
pub use abi::report::DeviceKind as Kind;

/// An ivshmem device, mapped and ready for a protocol on top.
///
/// The API, grouped as in Zephyr's ivshmem driver API and Xen's event
/// channels (which it follows):
///
/// * facts: [`id`](Self::id), [`max_peers`](Self::max_peers),
///   [`protocol`](Self::protocol), [`vectors`](Self::vectors),
///   [`kind`](Self::kind), [`bdf`](Self::bdf), [`sections`](Self::sections);
/// * memory: [`state_table`](Self::state_table),
///   [`rw_section`](Self::rw_section), [`peer_section`](Self::peer_section),
///   [`take_own_section`](Self::take_own_section);
/// * state: [`state`](Self::state), [`set_state`](Self::set_state);
/// * doorbells (Zephyr's `int_peer`, Xen's `notify`): [`notify`](Self::notify);
/// * events: [`enable_interrupts`](Self::enable_interrupts) once, then
///   [`take_vector`](Self::take_vector) and
///   [`wait_for_vector`](Self::wait_for_vector) for one vector (Zephyr's
///   registered signal and its wait), [`take_pending`](Self::take_pending)
///   and [`has_pending`](Self::has_pending) for all of them.
///
/// Events are latched per vector from the moment interrupts are enabled
/// until taken, like Xen's pending bits; but a device drops what fires
/// while its interrupts are disabled (docs/ivshmem-v2.md §7.3), and an
/// event says only that something happened: whoever takes one re-checks the
/// state or memory it stands for.
#[derive(Debug)]
pub struct Device {
    kind: Kind,
    bdf: Bdf,
    id: u16,
    protocol: u16,
    sections: Sections,
    control: Control<Mmio>,
    msix: Option<(Msix, MsixTable)>,
    /// Vectors that work, at most [`MAX_VECTORS`].
    vectors: u16,
    /// Whether [`Device::take_own_section`] handed out our section.
    own_section_taken: AtomicBool,
    /// The vectors that fired and were not yet taken.
    pending: Pending,
    /// Whether [`Device::enable_interrupts`] succeeded.
    interrupts_enabled: AtomicBool,
}

/// Assigns BAR0/BAR1 if nobody did (Jailhouse), and returns the re-sized function.
fn assign_bars(config: &dyn ConfigAccess, function: &Function) -> Function {
    let mut function = function.clone();
    if function.bar(0).is_some_and(|bar| bar.address == 0) {
        config.write32(function.bdf, pci::offset::BAR0, UNASSIGNED_BAR0);
        if function.bar(1).is_some_and(|bar| bar.address == 0) {
            config.write32(function.bdf, pci::offset::BAR0 + 4, UNASSIGNED_BAR1);
        }
        function.bars = pci::size_bars(config, function.bdf);
    }
    function
}

/// Maps a region of the device being probed: its registers, its MSI-X table
/// or its shared memory, at the addresses configuration space reports
/// (which [`ConfigAccess`] implementations vouch for).
fn map(region: Region, attributes: Attributes) -> Result<(), ProbeError> {
    // SAFETY: `probe` maps only the BARs of the ivshmem function it found
    // and the sections inside its shared memory, with the attributes the
    // spec asks for (docs/ivshmem-v2.md §6.3); none of it is kernel memory.
    unsafe { paging::map(region.address, region.size, attributes) }.map_err(ProbeError::Map)
}

/// Whether [`Device::probe`] returned a device: a second one over the same
/// function would hand out a second [`OwnWindow`] and [`MsixTable`].
static PROBED: AtomicBool = AtomicBool::new(false);

impl Device {
    /// Finds the first ivshmem device (a real v2 device first, else an emulated
    /// one), checks it against `requirements`, maps it and returns it, leaked:
    /// the device lives as long as the kernel. `id` is the command line's `id=`
    /// (needed for `ivshmem-plain` only).
    ///
    /// # Errors
    ///
    /// [`ProbeError`] says why no device can be used; after one success,
    /// every later call fails with [`ProbeError::AlreadyProbed`].
    pub fn probe(
        config: &dyn ConfigAccess,
        functions: &[Function],
        id: Option<u16>,
        requirements: Requirements,
    ) -> Result<&'static Self, ProbeError> {
        if PROBED.load(Ordering::Relaxed) {
            return Err(ProbeError::AlreadyProbed);
        }
        let is = |vendor, device| move |f: &&Function| (f.vendor, f.device) == (vendor, device);
        let function = functions
            .iter()
            .find(is(v2::VENDOR, v2::DEVICE))
            .or_else(|| {
                functions
                    .iter()
                    .find(is(emulated::VENDOR, emulated::DEVICE))
            })
            .ok_or(ProbeError::NoDevice)?;
        let function = assign_bars(config, function);
        pci::enable(
            config,
            function.bdf,
            pci::command::MEMORY_SPACE | pci::command::BUS_MASTER,
        );
        let bar0 = function
            .bar(0)
            .ok_or(ProbeError::BarUnassigned { index: 0 })?;
        if bar0.address == 0 {
            return Err(ProbeError::BarUnassigned { index: 0 });
        }
        map(
            Region {
                address: bar0.address,
                size: bar0.size,
            },
            Attributes::DEVICE,
        )?;
        // SAFETY: BAR0 of this ivshmem device was just mapped uncached for
        // the kernel's life.
        let registers = unsafe { Mmio::new(bar0.address, bar0.size) };

        let (kind, id, protocol, sections, msix, vectors) = if function.vendor == v2::VENDOR {
            let found = v2::discover(config, &function, &registers, requirements)?;
            map(found.sections.state_table(), Attributes::SHARED_READ_ONLY)?;
            (
                Kind::V2,
                found.id,
                found.protocol,
                found.sections,
                found.msix,
                found.msix.map_or(0, |msix| msix.table_size),
            )
        } else {
            let bar2 = function.bar(2).ok_or(ProbeError::NoSharedMemory)?;
            if bar2.address == 0 {
                return Err(ProbeError::BarUnassigned { index: 2 });
            }
            let page = Region {
                address: bar2.address,
                size: abi::layout::PAGE_SIZE,
            };
            map(page, Attributes::SHARED_READ_ONLY)?;
            let mut bytes = [0u8; abi::descriptor::LENGTH];
            // SAFETY: the first page of BAR2 was just mapped read-only for the
            // kernel's life; it is not an output section, so no `OwnWindow`
            // covers it. A peer could change it concurrently (v1 devices
            // protect nothing): we copy it once and validate the copy.
            unsafe { Window::new(page) }.read(0, &mut bytes);
            let found =
                emulated::discover(config, &function, &bytes, &registers, id, requirements)?;
            // In emulation we write our own state-table entry ourselves.
            map(found.sections.state_table(), Attributes::SHARED_WRITABLE)?;
            let kind = if found.msix.is_some() {
                Kind::Doorbell
            } else {
                Kind::Plain
            };
            (
                kind,
                found.id,
                found.protocol,
                found.sections,
                found.msix,
                found.vectors,
            )
        };
        map(sections.rw_section(), Attributes::SHARED_WRITABLE)?;
        for peer in 0..sections.max_peers() {
            let attributes = if peer == id {
                Attributes::SHARED_WRITABLE
            } else {
                Attributes::SHARED_READ_ONLY
            };
            let section = sections.output_section(peer).expect("one of the peers");
            map(section, attributes)?;
        }
        let msix = match msix {
            Some(msix) => {
                let bar = function
                    .bar(msix.table_bar)
                    .ok_or(ProbeError::BarUnassigned {
                        index: msix.table_bar,
                    })?;
                if bar.address == 0 {
                    return Err(ProbeError::BarUnassigned {
                        index: msix.table_bar,
                    });
                }
                let table = Region {
                    address: bar.address + u64::from(msix.table_offset),
                    size: 16 * u64::from(msix.table_size),
                };
                map(table, Attributes::DEVICE)?;
                // SAFETY: the table region was just mapped uncached for the
                // kernel's life. No other `MsixTable` covers it: one made by
                // an earlier, failed probe was dropped, and `PROBED` lets
                // only one probe succeed.
                let table = unsafe { MsixTable::new(table.address, msix.table_size) };
                Some((msix, table))
            }
            None => None,
        };
        let state_table = (kind != Kind::V2).then(|| {
            // SAFETY: in emulation the state table was mapped writable above
            // for the kernel's life; it is not an output section.
            unsafe { Window::new_writable(sections.state_table()) }
        });
        let control = Control::new(kind, id, sections.max_peers(), registers, state_table);
        if PROBED.swap(true, Ordering::Relaxed) {
            return Err(ProbeError::AlreadyProbed);
        }
        Ok(Box::leak(Box::new(Self {
            kind,
            bdf: function.bdf,
            id,
            protocol,
            sections,
            control,
            msix,
            vectors: vectors.min(MAX_VECTORS),
            own_section_taken: AtomicBool::new(false),
            pending: Pending::new(),
            interrupts_enabled: AtomicBool::new(false),
        })))
    }

    /// The kind of device.
    pub fn kind(&self) -> Kind {
        self.kind
    }

    /// Where it sits on PCI.
    pub fn bdf(&self) -> Bdf {
        self.bdf
    }

    /// Our peer ID.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// Peers on the link, including us.
    pub fn max_peers(&self) -> u16 {
        self.sections.max_peers()
    }

    /// The protocol ID.
    pub fn protocol(&self) -> u16 {
        self.protocol
    }

    /// Interrupt vectors per peer (0 for `ivshmem-plain`): the MSI-X
    /// table's (on an emulated device, no more than the descriptor page
    /// names), at most [`MAX_VECTORS`].
    pub fn vectors(&self) -> u16 {
        self.vectors
    }

    /// Where the sections are.
    pub fn sections(&self) -> Sections {
        self.sections
    }

    /// A read-only window over the state table: one little-endian `u32`
    /// per peer (docs/ivshmem-v2.md §6.1).
    pub fn state_table(&self) -> Window {
        // SAFETY: `probe` mapped the state table for the kernel's life; it is
        // not an output section, so no `OwnWindow` covers it.
        unsafe { Window::new(self.sections.state_table()) }
    }

    /// A window over the R/W section, which every peer may write (empty if
    /// the link has none). What lives there is the protocol's business.
    pub fn rw_section(&self) -> Window<ReadWrite> {
        // SAFETY: `probe` mapped the R/W section writable for the kernel's
        // life; it is not an output section, so no `OwnWindow` covers it.
        unsafe { Window::new_writable(self.sections.rw_section()) }
    }

    /// A read-only window over the output section of another peer, or
    /// `None` if `peer` is not one of the link's peers or is us: a window
    /// over our own section would alias the `&mut [u8]` that
    /// [`OwnWindow::bytes_mut`] lends out
    /// (take that section with [`take_own_section`](Self::take_own_section)).
    pub fn peer_section(&self, peer: u16) -> Option<Window> {
        if peer == self.id {
            return None;
        }
        let section = self.sections.output_section(peer)?;
        // SAFETY: `probe` mapped every output section for the kernel's life,
        // and this one is not ours, so no `OwnWindow` covers it.
        Some(unsafe { Window::new(section) })
    }

    /// The writable window over our own output section: the first call gets
    /// it, later calls get `None` (two writable views would alias).
    pub fn take_own_section(&self) -> Option<OwnWindow> {
        if self.own_section_taken.swap(true, Ordering::SeqCst) {
            return None;
        }
        let section = self.sections.output_section(self.id)?;
        // SAFETY: `probe` mapped our output section writable for the kernel's
        // life, and the flag above makes this the only `OwnWindow` over it.
        Some(unsafe { OwnWindow::new(section) })
    }

    /// The state of `peer` from the state table (an Acquire load: what the
    /// peer wrote before its state is visible after it), or `None` if `peer`
    /// is not one of the link's peers. 0 means reset or gone.
    pub fn state(&self, peer: u16) -> Option<u32> {
        (peer < self.max_peers()).then(|| {
            self.state_table()
                .load_u32(4 * usize::from(peer), Ordering::Acquire)
        })
    }

    /// Writes our state with the v2 semantics (docs/ivshmem-v2.md §5): our
    /// state-table entry changes, and if the value changed every other peer
    /// gets vector 0.
    ///
    /// A release: every memory access before the call is visible to the
    /// peers before they can see the new state (`fence(SeqCst)` first). In
    /// emulation we store the entry ourselves and ring vector 0 with
    /// [`notify`](Self::notify), whose own fence orders the store before the
    /// doorbell.
    pub fn set_state(&self, state: u32) {
        self.control.set_state(state);
    }

    /// Rings `peer`'s doorbell on `vector` (no effect on `ivshmem-plain`).
    /// Devices ignore a peer or vector that does not exist, and QEMU honours
    /// only the low 8 bits of the vector (docs/ivshmem-v2.md §5).
    ///
    /// A release, as the spec makes the doorbell (docs/ivshmem-v2.md §5):
    /// every memory access before the call is visible to the peer before
    /// its interrupt arrives. The `fence(SeqCst)` before the register write
    /// is this layer's, whoever calls; callers need no barrier of their own.
    pub fn notify(&self, peer: u16, vector: u16) {
        self.control.notify(peer, vector);
    }

    /// Programs MSI-X (each device vector on an IDT vector of its own,
    /// delivered to this CPU and latched in this device's pending bits) and
    /// enables interrupt generation (Zephyr's `enable_interrupts`). Returns
    /// false if the device has no interrupts (`ivshmem-plain`) or no IDT
    /// vectors are left.
    ///
    /// Events that fire while interrupts are disabled are lost, not latched
    /// (docs/ivshmem-v2.md §7.3): enable them before telling peers we are
    /// ready, and re-check state and memory after this call.
    pub fn enable_interrupts(&'static self, config: &dyn ConfigAccess) -> bool {
        let Some((msix, table)) = &self.msix else {
            return false;
        };
        if self.interrupts_enabled.load(Ordering::Relaxed) {
            return true;
        }
        let Some(first) = crate::interrupts::allocate(self.vectors() as u8) else {
            return false;
        };
        msix.set_control(config, self.bdf, true, true);
        for vector in 0..self.vectors() {
            let idt_vector = first + vector as u8;
            crate::interrupts::register(idt_vector, self.pending.handler(vector));
            let (address, data) = pci::msi_message(crate::apic::id(), idt_vector);
            table.program(vector, address, data, false);
        }
        msix.set_control(config, self.bdf, true, false);
        self.control.enable_interrupts();
        self.interrupts_enabled.store(true, Ordering::Relaxed);
        true
    }

    /// Whether [`enable_interrupts`](Self::enable_interrupts) succeeded.
    pub fn interrupts_enabled(&self) -> bool {
        self.interrupts_enabled.load(Ordering::Relaxed)
    }

    /// Takes every vector's pending bit at once: bit `i` is set if vector
    /// `i` fired since it was last taken.
    pub fn take_pending(&self) -> u32 {
        self.pending.take_all()
    }

    /// Whether a vector fired and was not yet taken.
    pub fn has_pending(&self) -> bool {
        self.pending.any()
    }

    /// Takes `vector`'s pending bit: whether it fired since it was last taken.
    pub fn take_vector(&self, vector: u16) -> bool {
        self.pending.take(vector)
    }

    /// Waits until `vector` fires (true, its bit taken) or `micros` pass
    /// (false): in `hlt` in interrupt mode, spinning in polling mode. Returns
    /// false at once if interrupts are not enabled, since then no vector can
    /// fire. Either way, re-check the work the vector stands for.
    pub fn wait_for_vector(&self, vector: u16, mode: Mode, micros: u64) -> bool {
        if !self.interrupts_enabled() {
            return false;
        }
        let deadline = time::micros_since_boot().saturating_add(micros);
        loop {
            if self.pending.take(vector) {
                return true;
            }
            let now = time::micros_since_boot();
            if now >= deadline {
                return false;
            }
            idle::wait(mode, deadline - now);
        }
    }
}
