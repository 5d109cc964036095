//! "One VM pair at a time": a process-wide and cross-process lock.
//!
//! Under TCG each busy-polling QEMU uses a whole host core, so on a 2-core
//! machine only one VM pair may run at a time (`docs/toolchain.md` §9).
//! End-to-end tests hold a [`VmLock`] around each scenario.

use std::fs::{File, OpenOptions};
use std::os::fd::AsRawFd;
use std::path::PathBuf;
use std::sync::{Mutex, MutexGuard};

static IN_PROCESS: Mutex<()> = Mutex::new(());

/// Holds the VM lock until dropped: a process-wide mutex (for test threads)
/// plus `flock(LOCK_EX)` on [`VmLock::path`] (for separate test binaries
/// running at the same time).
#[derive(Debug)]
pub struct VmLock {
    _file: File,
    _guard: MutexGuard<'static, ()>,
}

impl VmLock {
    /// The lock file: `$ETH_IVSHMEM_VM_LOCK` if set (so that several
    /// checkouts on one machine share one lock), else
    /// `<workspace>/target/vm.lock`.
    pub fn path() -> PathBuf {
        std::env::var_os("ETH_IVSHMEM_VM_LOCK")
            .map(PathBuf::from)
            .unwrap_or_else(|| crate::target_dir().join("vm.lock"))
    }

    /// Blocks until the lock is ours. A panic in another holder does not
    /// poison it. Not reentrant: taking it twice in one thread deadlocks.
    pub fn acquire() -> std::io::Result<VmLock> {
        let guard = IN_PROCESS.lock().unwrap_or_else(|p| p.into_inner());
        let path = Self::path();
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let file = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)?;
        loop {
            // SAFETY: flock(2) on a descriptor we own; no memory is involved.
            let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
            if r == 0 {
                break;
            }
            let err = std::io::Error::last_os_error();
            if err.kind() != std::io::ErrorKind::Interrupted {
                return Err(err);
            }
        }
        Ok(VmLock {
            _file: file,
            _guard: guard,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_is_exclusive_across_threads() {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, Ordering};
        let held = Arc::new(AtomicBool::new(false));
        let threads: Vec<_> = (0..3)
            .map(|_| {
                let held = Arc::clone(&held);
                std::thread::spawn(move || {
                    let _lock = VmLock::acquire().unwrap();
                    assert!(!held.swap(true, Ordering::SeqCst));
                    std::thread::sleep(std::time::Duration::from_millis(20));
                    held.store(false, Ordering::SeqCst);
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
    }
}
