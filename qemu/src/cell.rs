//! The cell harness: a Jailhouse x86 non-root cell imitated on stock QEMU
//! (docs/jailhouse.md §4), so that CI boots the kernel through the same
//! entry and platform code it uses under Jailhouse.
//!
//! What the harness gives the VM, as Jailhouse would:
//! * no SeaBIOS: a 64 KiB reset ROM (`-bios`) whose reset vector only jumps
//!   to 0000:0000 in real mode, with the CPU's reset state (CR0 = CD|NW|ET,
//!   interrupts off) that Jailhouse also gives a cell's first CPU;
//! * the flat image ([`crate::kernel::build_cell_image`]) at guest address
//!   0, with the command line written into its buffer at 0x1000 as
//!   `jailhouse cell load … -s "…" -a 0x1000` does;
//! * a communication region at 0x100000 (signature, revision, the TSC rate
//!   measured on the host, no MMCONFIG: PCI goes through port 0xCF8);
//! * PCI devices nobody assigned BARs to, and no ACPI tables.
//!
//! Guest RAM is a shared file, so the harness reads the cell state and
//! writes messages at the region's offsets ([`abi::jailhouse::offset`]) while
//! the VM runs, as the hypervisor does. What it does not cover: VMX, the
//! hypercall console (its flag stays off, the console is COM1), MMCONFIG
//! through the hypervisor, and Jailhouse's ivshmem-v2 device (the link is
//! the v2 emulation over `ivshmem-doorbell`).

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use abi::jailhouse::{
    self, COMM_REGION_ADDRESS, COMM_REGION_SIZE, CellState, CommRegion, Message, Reply, offset,
};
use anyhow::Context;
use memmap2::MmapRaw;

/// The reset ROM's size: QEMU takes `-bios` files in multiples of 64 KiB.
const ROM_SIZE: usize = 64 << 10;

/// The reset ROM: zeros, and at the reset vector (offset 0xFFF0, address
/// 0xFFFFFFF0) a far jump to 0000:0000.
pub fn reset_rom() -> Vec<u8> {
    let mut rom = vec![0u8; ROM_SIZE];
    // jmp far 0000:0000 (EA, offset 0x0000, segment 0x0000)
    rom[ROM_SIZE - 16..ROM_SIZE - 11].copy_from_slice(&[0xea, 0, 0, 0, 0]);
    rom
}

/// Writes `cmdline` into a copy of the flat `image` at the buffer's offset
/// (NUL-terminated), as `jailhouse cell load … -s CMDLINE -a 0x1000` does.
pub fn image_with_cmdline(image: &[u8], cmdline: &str) -> anyhow::Result<Vec<u8>> {
    let at = abi::jailhouse::CMDLINE_ADDRESS as usize;
    anyhow::ensure!(
        image.len() >= at + abi::jailhouse::CMDLINE_SIZE,
        "{} bytes are no cell image: the command-line buffer ends at {:#x}",
        image.len(),
        at + abi::jailhouse::CMDLINE_SIZE
    );
    anyhow::ensure!(
        cmdline.len() < abi::jailhouse::CMDLINE_SIZE && !cmdline.contains('\0'),
        "the command line is {} bytes; the cell's buffer holds {} and a NUL",
        cmdline.len(),
        abi::jailhouse::CMDLINE_SIZE - 1
    );
    let mut image = image.to_vec();
    image[at..at + abi::jailhouse::CMDLINE_SIZE].fill(0);
    image[at..at + cmdline.len()].copy_from_slice(cmdline.as_bytes());
    Ok(image)
}

/// The TSC rate of this machine in kHz, measured once against the
/// monotonic clock over 50 ms. Under TCG the guest's TSC is the host's, so
/// this is what Jailhouse would publish in `tsc_khz`.
pub fn host_tsc_khz() -> u32 {
    static KHZ: OnceLock<u32> = OnceLock::new();
    *KHZ.get_or_init(|| {
        // SAFETY: `rdtsc` only reads the time-stamp counter.
        let read = || unsafe { core::arch::x86_64::_rdtsc() };
        let (start_tsc, start) = (read(), Instant::now());
        std::thread::sleep(Duration::from_millis(50));
        let (end_tsc, elapsed) = (read(), start.elapsed());
        let khz = (end_tsc - start_tsc) as u128 * 1000 / elapsed.as_micros().max(1);
        u32::try_from(khz).unwrap_or(u32::MAX).max(1)
    })
}

/// The communication region the harness gives a cell, with ABI `revision`
/// (tests give another one to see the cell refuse it).
pub fn comm_region(revision: u16) -> Vec<u8> {
    let mut page = vec![0u8; COMM_REGION_SIZE];
    CommRegion {
        flags: 0,
        pci_mmconfig_base: None,
        pm_timer_address: None,
        num_cpus: 1,
        tsc_khz: host_tsc_khz(),
        // QEMU's APIC timer counts nanoseconds before its divider.
        apic_khz: Some(1_000_000),
    }
    .encode(&mut page);
    page[offset::REVISION..offset::REVISION + 2].copy_from_slice(&revision.to_le_bytes());
    page
}

/// The files of one harness VM, in `/dev/shm` ([`CellFiles::remove`] them
/// when the VM is gone; the launcher's cleanup removes them on a signal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellFiles {
    /// Guest RAM (`memory-backend-file`, shared with us).
    pub ram: PathBuf,
    /// The image with its command line.
    pub image: PathBuf,
    /// The communication region's first contents.
    pub comm: PathBuf,
    /// The reset ROM.
    pub rom: PathBuf,
    /// The ABI revision the communication region claims (default
    /// [`jailhouse::ABI_REVISION`]).
    pub revision: u16,
}

impl CellFiles {
    /// Where the files of a VM go: `/dev/shm/eth-ivshmem-cell-<pid>-<n>-*`.
    pub fn unique() -> CellFiles {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let stem = format!(
            "/dev/shm/eth-ivshmem-cell-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let path = |what: &str| PathBuf::from(format!("{stem}-{what}"));
        CellFiles {
            ram: path("ram"),
            image: path("image"),
            comm: path("comm"),
            rom: path("rom"),
            revision: jailhouse::ABI_REVISION,
        }
    }

    /// The same settings under fresh paths (each VM gets its own files).
    pub fn renamed(&self) -> CellFiles {
        CellFiles {
            revision: self.revision,
            ..CellFiles::unique()
        }
    }

    fn all(&self) -> [&Path; 4] {
        [&self.ram, &self.image, &self.comm, &self.rom]
    }

    /// Writes the files for a VM with `ram_size` bytes of RAM running the
    /// flat `image` with `cmdline`.
    pub fn create(&self, image: &Path, cmdline: &str, ram_size: u64) -> anyhow::Result<()> {
        for path in self.all() {
            crate::cleanup::register_path(path);
        }
        let flat = std::fs::read(image)
            .with_context(|| format!("cannot read the cell image {}", image.display()))?;
        let write = |path: &Path, bytes: &[u8]| {
            std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
        };
        write(&self.image, &image_with_cmdline(&flat, cmdline)?)?;
        write(&self.comm, &comm_region(self.revision))?;
        write(&self.rom, &reset_rom())?;
        let ram = File::create(&self.ram)
            .and_then(|file| file.set_len(ram_size).map(|()| file))
            .with_context(|| format!("cannot create the guest RAM file {}", self.ram.display()))?;
        drop(ram);
        Ok(())
    }

    /// The QEMU arguments that make a VM a cell (instead of `-kernel`).
    pub fn qemu_args(&self, ram_size: &str) -> Vec<String> {
        let opt = |path: &Path| path.to_string_lossy().replace(',', ",,");
        vec![
            "-object".into(),
            format!(
                "memory-backend-file,id=cell-ram,size={ram_size},mem-path={},share=on",
                opt(&self.ram)
            ),
            "-machine".into(),
            "memory-backend=cell-ram".into(),
            "-bios".into(),
            self.rom.to_string_lossy().into_owned(),
            "-device".into(),
            format!("loader,file={},addr=0x0,force-raw=on", opt(&self.image)),
            "-device".into(),
            format!(
                "loader,file={},addr={COMM_REGION_ADDRESS:#x},force-raw=on",
                opt(&self.comm)
            ),
        ]
    }
}

impl CellFiles {
    /// Removes the files (ignoring those that do not exist).
    pub fn remove(&self) {
        for path in self.all() {
            let _ = std::fs::remove_file(path);
            crate::cleanup::unregister_path(path);
        }
    }
}

/// The communication region of a running harness VM, through its RAM file.
#[derive(Debug)]
pub struct CommWindow {
    map: MmapRaw,
}

impl CommWindow {
    /// Maps the RAM file's communication-region page.
    pub fn open(ram: &Path) -> anyhow::Result<CommWindow> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(ram)
            .with_context(|| format!("cannot open the guest RAM file {}", ram.display()))?;
        let map = memmap2::MmapOptions::new()
            .offset(COMM_REGION_ADDRESS)
            .len(COMM_REGION_SIZE)
            .map_raw(&file)
            .with_context(|| format!("cannot map {}", ram.display()))?;
        Ok(CommWindow { map })
    }

    fn field(&self, at: usize) -> *mut u32 {
        debug_assert!(at.is_multiple_of(4) && at + 4 <= COMM_REGION_SIZE);
        // The offsets are the region's aligned u32 fields, inside the page.
        self.map.as_mut_ptr().wrapping_add(at).cast::<u32>()
    }

    fn read(&self, at: usize) -> u32 {
        // SAFETY: an aligned u32 inside the mapping, which lives as long as
        // `self`; the guest writes it concurrently, hence volatile.
        unsafe { std::ptr::read_volatile(self.field(at)) }
    }

    fn write(&self, at: usize, value: u32) {
        // SAFETY: as in `read`.
        unsafe { std::ptr::write_volatile(self.field(at), value) }
    }

    /// The cell's state, or the raw value if it is none of the known ones.
    pub fn state(&self) -> Result<CellState, jailhouse::UnknownCode> {
        CellState::from_value(self.read(offset::CELL_STATE))
    }

    /// Sends `message` as the hypervisor does (reply cleared first) and
    /// waits up to `timeout` for the cell's reply.
    pub fn send(&self, message: Message, timeout: Duration) -> anyhow::Result<Reply> {
        self.write(offset::REPLY_FROM_CELL, Reply::None.value());
        std::sync::atomic::fence(Ordering::SeqCst);
        self.write(offset::MSG_TO_CELL, message.value());
        let deadline = Instant::now() + timeout;
        loop {
            let raw = self.read(offset::REPLY_FROM_CELL);
            match Reply::from_value(raw) {
                Ok(Reply::None) => {}
                Ok(reply) => return Ok(reply),
                Err(unknown) => anyhow::bail!("the cell replied {:#x}", unknown.0),
            }
            anyhow::ensure!(
                Instant::now() < deadline,
                "the cell did not answer {message} within {timeout:?}"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_reset_rom_jumps_to_zero_from_the_reset_vector() {
        let rom = reset_rom();
        assert_eq!(rom.len(), 64 << 10);
        assert_eq!(&rom[0xfff0..0xfff5], &[0xea, 0, 0, 0, 0]);
        assert!(rom[..0xfff0].iter().all(|b| *b == 0));
    }

    #[test]
    fn the_command_line_lands_in_the_buffer_with_a_nul() {
        let mut image = vec![0x90u8; 0x3000];
        image[0x1000..0x2000].fill(0xee);
        let patched = image_with_cmdline(&image, "app=server id=1").unwrap();
        assert_eq!(&patched[0x1000..0x100f], b"app=server id=1");
        assert!(patched[0x100f..0x2000].iter().all(|b| *b == 0));
        assert_eq!(patched[..0x1000], image[..0x1000]);
        assert_eq!(patched[0x2000..], image[0x2000..]);
        let long = "x".repeat(4096);
        let error = image_with_cmdline(&image, &long).unwrap_err();
        assert!(error.to_string().contains("4095"), "{error}");
        assert!(image_with_cmdline(&image[..0x1800], "").is_err());
    }

    #[test]
    fn the_harness_region_parses_as_the_kernel_reads_it() {
        let page = comm_region(jailhouse::ABI_REVISION);
        let region = CommRegion::parse(&page).unwrap();
        assert_eq!(region.pci_mmconfig_base, None);
        assert_eq!(region.flags, 0, "no hypercall console in the harness");
        assert!(region.tsc_khz > 100_000, "{} kHz", region.tsc_khz);
    }
}
