//! Making sure QEMU is installed.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// The QEMU binary every VM uses unless told otherwise.
pub const QEMU_BINARY: &str = "qemu-system-x86_64";

/// The command that installs it on Debian.
pub const INSTALL_COMMAND: &str =
    "apt-get update && apt-get install -y --no-install-recommends qemu-system-x86";

/// Finds `name` in `PATH`.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    path.metadata()
        .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// Whether `qemu-system-x86_64` is installed (tests use this to skip).
pub fn available() -> bool {
    find_in_path(QEMU_BINARY).is_some()
}

/// What [`ensure_installed`] does when QEMU is missing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InstallPlan {
    /// Root on Debian: run apt-get.
    AptGet,
    /// Anything else: fail with this message (it names the command to run).
    Refuse(String),
}

/// Decides how to get QEMU (pure, for tests).
pub fn install_plan(debian: bool, root: bool) -> InstallPlan {
    if debian && root {
        return InstallPlan::AptGet;
    }
    let how = if root {
        INSTALL_COMMAND.to_string()
    } else {
        format!("sudo sh -c '{INSTALL_COMMAND}'")
    };
    let what = if debian { "" } else { " (on Debian)" };
    InstallPlan::Refuse(format!(
        "{QEMU_BINARY} is not installed; install it{what} with:\n    {how}"
    ))
}

/// Makes sure `qemu-system-x86_64` is installed and returns its path.
///
/// If it is missing and we are root on Debian, runs `apt-get update` and
/// `apt-get install -y --no-install-recommends qemu-system-x86` (saying so on
/// stderr). Otherwise fails with a message naming the command to run.
pub fn ensure_installed() -> anyhow::Result<PathBuf> {
    if let Some(path) = find_in_path(QEMU_BINARY) {
        return Ok(path);
    }
    let debian = Path::new("/etc/debian_version").exists();
    let root = nix::unistd::geteuid().is_root();
    if let InstallPlan::Refuse(message) = install_plan(debian, root) {
        anyhow::bail!(message);
    }
    eprintln!("eth-ivshmem: {QEMU_BINARY} not found; installing it: {INSTALL_COMMAND}");
    for args in [
        &["update"][..],
        &[
            "install",
            "-y",
            "--no-install-recommends",
            "qemu-system-x86",
        ][..],
    ] {
        let status = Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .stdout(Stdio::inherit())
            .stderr(Stdio::inherit())
            .status();
        match status {
            Ok(s) if s.success() => {}
            Ok(s) => anyhow::bail!(
                "`apt-get {}` failed ({s}); install QEMU by hand: {INSTALL_COMMAND}",
                args.join(" ")
            ),
            Err(e) => {
                anyhow::bail!("cannot run apt-get ({e}); install QEMU by hand: {INSTALL_COMMAND}")
            }
        }
    }
    find_in_path(QEMU_BINARY).ok_or_else(|| {
        anyhow::anyhow!("{QEMU_BINARY} still not found after installing qemu-system-x86")
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn install_only_as_root_on_debian() {
        assert_eq!(install_plan(true, true), InstallPlan::AptGet);
        for (debian, root) in [(true, false), (false, true), (false, false)] {
            let InstallPlan::Refuse(message) = install_plan(debian, root) else {
                panic!("must refuse for debian={debian} root={root}");
            };
            assert!(message.contains(INSTALL_COMMAND), "{message}");
            assert_eq!(message.contains("sudo"), !root, "{message}");
        }
    }

    #[test]
    fn finds_sh_in_path() {
        assert!(find_in_path("sh").is_some());
        assert!(find_in_path("no-such-binary-eth-ivshmem").is_none());
    }
}
