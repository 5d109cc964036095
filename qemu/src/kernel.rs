//! Building the unikernel ELF.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Mutex, OnceLock};

/// The cargo profile to build the kernel with.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, clap::ValueEnum)]
pub enum Profile {
    /// `--release` (what every VM runs by default).
    #[default]
    Release,
    /// The dev profile (opt-level 1, debug assertions).
    Debug,
}

impl Profile {
    fn dir(self) -> &'static str {
        match self {
            Profile::Release => "release",
            Profile::Debug => "debug",
        }
    }
}

/// `<workspace>/target/kernel`, the kernel's own target directory (so that
/// building it never invalidates the host build).
pub fn target_dir() -> PathBuf {
    crate::target_dir().join("kernel")
}

/// Where [`build`] puts the ELF for `profile`:
/// `target/kernel/x86_64-unknown-linux-gnu/<profile>/kernel`.
pub fn elf_path(profile: Profile) -> PathBuf {
    target_dir()
        .join("x86_64-unknown-linux-gnu")
        .join(profile.dir())
        .join("kernel")
}

/// Builds the kernel (`cargo build -p kernel --features runtime [--release] --target-dir
/// target/kernel`, run in the workspace root so its `.cargo/config.toml`
/// applies) and returns the ELF path.
///
/// Memoised per process and profile: tests calling this concurrently build
/// once (cargo's own lock serialises separate processes). On failure the
/// error carries cargo's stderr.
pub fn build(profile: Profile) -> anyhow::Result<PathBuf> {
    type Results = Mutex<HashMap<Profile, Result<PathBuf, String>>>;
    static RESULTS: OnceLock<Results> = OnceLock::new();
    let results = RESULTS.get_or_init(Default::default);
    // Holding the lock while building makes concurrent callers wait for the
    // one build instead of racing it.
    let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
    let result = results
        .entry(profile)
        .or_insert_with(|| build_uncached(profile).map_err(|e| format!("{e:#}")));
    result.clone().map_err(anyhow::Error::msg)
}

fn build_uncached(profile: Profile) -> anyhow::Result<PathBuf> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(cargo);
    command
        .current_dir(crate::workspace_root())
        .args(["build", "-p", "kernel", "--features", "runtime"])
        .arg("--target-dir")
        .arg(target_dir());
    if profile == Profile::Release {
        command.arg("--release");
    }
    // Do not let an outer cargo's target directory or build settings leak in.
    command
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET_DIR");
    eprintln!(
        "eth-ivshmem: building the kernel ({} profile)…",
        profile.dir()
    );
    let output = command
        .stdin(Stdio::null())
        .stdout(Stdio::inherit())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run cargo to build the kernel: {e}"))?;
    let stderr = String::from_utf8_lossy(&output.stderr);
    if !output.status.success() {
        anyhow::bail!(
            "building the kernel failed ({}):\n{}",
            output.status,
            stderr.trim_end()
        );
    }
    let elf = elf_path(profile);
    anyhow::ensure!(
        elf.is_file(),
        "cargo built the kernel but {} does not exist",
        elf.display()
    );
    Ok(elf)
}

/// The Jailhouse cell ELF [`build`] links next to the PVH one
/// (`kernel-cell`, `boot/jailhouse.ld`).
pub fn cell_elf_path(profile: Profile) -> PathBuf {
    elf_path(profile).with_file_name("kernel-cell")
}

/// Where [`build_cell_image`] puts the flat image: `eth-ivshmem.bin` next
/// to the ELFs.
pub fn cell_image_path(profile: Profile) -> PathBuf {
    elf_path(profile).with_file_name("eth-ivshmem.bin")
}

/// Builds the kernel and turns the cell ELF into the flat image that
/// `jailhouse cell load` takes (`objcopy -O binary`, as Jailhouse's own
/// inmates are made), checking its layout: the reset entry at offset 0, the
/// command-line buffer at 0x1000, the end below
/// [`abi::jailhouse::IMAGE_LIMIT`]. Returns the image's path.
///
/// Memoised per process and profile, like [`build`]; the image is written
/// under a temporary name and renamed into place, so that a VM being
/// started (by this process or another) never reads a half-written one.
pub fn build_cell_image(profile: Profile) -> anyhow::Result<PathBuf> {
    type Results = Mutex<HashMap<Profile, Result<PathBuf, String>>>;
    static RESULTS: OnceLock<Results> = OnceLock::new();
    let results = RESULTS.get_or_init(Default::default);
    let mut results = results.lock().unwrap_or_else(|p| p.into_inner());
    let result = results
        .entry(profile)
        .or_insert_with(|| make_cell_image(profile).map_err(|e| format!("{e:#}")));
    result.clone().map_err(anyhow::Error::msg)
}

fn make_cell_image(profile: Profile) -> anyhow::Result<PathBuf> {
    build(profile)?;
    let elf = cell_elf_path(profile);
    let image = cell_image_path(profile);
    let partial = image.with_extension(format!("bin.{}.partial", std::process::id()));
    let output = Command::new("objcopy")
        .args(["-O", "binary"])
        .arg(&elf)
        .arg(&partial)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run objcopy (package binutils): {e}"))?;
    let checked = if output.status.success() {
        std::fs::read(&partial)
            .map_err(|e| anyhow::anyhow!("cannot read {}: {e}", partial.display()))
            .and_then(|bytes| {
                check_cell_image(&bytes).map_err(|e| anyhow::anyhow!("{}: {e}", elf.display()))
            })
            .and_then(|()| {
                std::fs::rename(&partial, &image).map_err(|e| {
                    anyhow::anyhow!("cannot move the image to {}: {e}", image.display())
                })
            })
    } else {
        Err(anyhow::anyhow!(
            "objcopy -O binary {} failed ({}): {}",
            elf.display(),
            output.status,
            String::from_utf8_lossy(&output.stderr).trim_end()
        ))
    };
    if checked.is_err() {
        let _ = std::fs::remove_file(&partial);
    }
    checked.map(|()| image)
}

/// Checks a flat cell image's layout (see [`build_cell_image`]).
pub fn check_cell_image(bytes: &[u8]) -> Result<(), String> {
    use abi::jailhouse::{CMDLINE_ADDRESS, CMDLINE_SIZE, IMAGE_LIMIT};
    let buffer = CMDLINE_ADDRESS as usize..CMDLINE_ADDRESS as usize + CMDLINE_SIZE;
    if bytes.len() < buffer.end {
        return Err(format!(
            "{} bytes end before the command-line buffer",
            bytes.len()
        ));
    }
    if bytes.len() as u64 > IMAGE_LIMIT {
        return Err(format!(
            "{} bytes run past {IMAGE_LIMIT:#x}, where the cell's loadable RAM ends",
            bytes.len()
        ));
    }
    // The reset entry starts with `cli` (0xfa), as boot/src/lib.rs writes it.
    if bytes[0] != 0xfa {
        return Err(format!(
            "offset 0 holds {:#04x}, not the reset entry's cli",
            bytes[0]
        ));
    }
    if bytes[buffer].iter().any(|byte| *byte != 0) {
        return Err("the command-line buffer at 0x1000 is not empty".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::check_cell_image;

    fn image(len: usize) -> Vec<u8> {
        let mut bytes = vec![0x90u8; len];
        bytes[0] = 0xfa;
        let buffer = 0x1000.min(len)..0x2000.min(len);
        bytes[buffer].fill(0);
        bytes
    }

    #[test]
    fn a_cell_image_is_checked_for_the_layout_jailhouse_loads() {
        assert_eq!(check_cell_image(&image(0x5000)), Ok(()));
        let error = check_cell_image(&image(0x1800)).unwrap_err();
        assert!(error.contains("before the command-line buffer"), "{error}");
        let error = check_cell_image(&image(0xa_0001)).unwrap_err();
        assert!(error.contains("run past 0xa0000"), "{error}");
        let mut no_entry = image(0x5000);
        no_entry[0] = 0;
        let error = check_cell_image(&no_entry).unwrap_err();
        assert!(error.contains("reset entry"), "{error}");
        let mut written = image(0x5000);
        written[0x1000] = b'a';
        let error = check_cell_image(&written).unwrap_err();
        assert!(error.contains("not empty"), "{error}");
    }
}
