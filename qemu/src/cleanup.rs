//! Process-wide registry of QEMU children and temporary files, so that
//! nothing outlives the launcher, whichever way it ends.
//!
//! * Every QEMU started through [`crate::VmHandle`] is registered here and
//!   unregistered when its handle reaps it; the handle's `Drop` kills it.
//! * Children also get `PR_SET_PDEATHSIG = SIGKILL`, so even a `SIGKILL` of
//!   the launcher takes them down. They are spawned from one long-lived
//!   thread (see [`spawn`]) because the death signal fires when the *thread*
//!   that forked the child exits, not the process.
//! * [`exit_on_signal`] installs a handler thread for SIGINT/SIGTERM/SIGHUP
//!   that kills every registered child, removes every registered path and
//!   exits with `128 + signal`. While a [`DeferSignals`] guard lives, the
//!   first signal is only recorded (see [`pending_signal`]) so that the main
//!   thread can stop its VMs in order; a second one still ends the process.

use std::collections::{BTreeSet, HashSet};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

static CHILDREN: Mutex<BTreeSet<i32>> = Mutex::new(BTreeSet::new());
static PATHS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());
static DEFER: AtomicBool = AtomicBool::new(false);
static PENDING: AtomicI32 = AtomicI32::new(0);

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// Spawns `command` from the long-lived spawner thread, with
/// `PR_SET_PDEATHSIG = SIGKILL` and in a process group of its own (so that
/// the terminal's Ctrl-C goes to the launcher alone), and registers its pid.
///
/// The caller must call [`unregister_child`] once it has reaped the child.
pub fn spawn(mut command: Command) -> io::Result<Child> {
    static SPAWNER: OnceLock<Mutex<mpsc::Sender<SpawnRequest>>> = OnceLock::new();
    prepare_child(&mut command);
    let spawner = SPAWNER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<SpawnRequest>();
        std::thread::Builder::new()
            .name("qemu-spawner".into())
            .spawn(move || {
                for (mut command, reply) in rx {
                    let result = command.spawn();
                    if let Ok(child) = &result {
                        register_child(child.id());
                    }
                    let _ = reply.send(result);
                }
            })
            .expect("cannot start the spawner thread");
        Mutex::new(tx)
    });
    let (reply_tx, reply_rx) = mpsc::channel();
    lock(spawner)
        .send((command, reply_tx))
        .map_err(|_| io::Error::other("the spawner thread is gone"))?;
    reply_rx
        .recv()
        .map_err(|_| io::Error::other("the spawner thread is gone"))?
}

/// Makes `command`'s child die with the thread that forks it
/// (`PR_SET_PDEATHSIG = SIGKILL`) and puts it in a process group of its own
/// (so that the terminal's Ctrl-C goes to the launcher alone, which then
/// stops its children in order). Fork it from a thread that outlives it.
pub fn prepare_child(command: &mut Command) {
    // SAFETY: the closure runs in the forked child before exec; it only calls
    // prctl(2) and setpgid(2), which are async-signal-safe, and touches no
    // locks or heap.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL, 0, 0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            if libc::setpgid(0, 0) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// Records a child pid to be killed on [`kill_all_children`].
pub fn register_child(pid: u32) {
    lock(&CHILDREN).insert(pid as i32);
}

/// Forgets a child pid (call after reaping it, so a reused pid is never killed).
pub fn unregister_child(pid: u32) {
    lock(&CHILDREN).remove(&(pid as i32));
}

/// Sends SIGKILL to every registered child (it is still reaped by its owner).
pub fn kill_all_children() {
    for &pid in lock(&CHILDREN).iter() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
}

/// Kills every registered child and reaps it (waiting up to `timeout`),
/// holding the registry's lock throughout and never releasing it: the
/// process is about to exit, and an owner that reaps a child meanwhile then
/// blocks in [`unregister_child`] instead of carrying on (e.g. judging a VM
/// that we killed) and racing our exit status.
fn kill_and_reap_for_exit(timeout: std::time::Duration) {
    use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
    let children = lock(&CHILDREN);
    for &pid in children.iter() {
        let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
    }
    let deadline = std::time::Instant::now() + timeout;
    for &pid in children.iter() {
        // The pid stays ours until it is reaped (by us here, or by its owner,
        // in which case waitpid fails with ECHILD).
        while let Ok(WaitStatus::StillAlive) =
            waitpid(Pid::from_raw(pid), Some(WaitPidFlag::WNOHANG))
        {
            if std::time::Instant::now() >= deadline {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
    }
    std::mem::forget(children);
}

/// Records a file to remove on [`remove_all_paths`].
pub fn register_path(path: &Path) {
    lock(&PATHS).push(path.to_path_buf());
}

/// Forgets a file (after its owner removed it).
pub fn unregister_path(path: &Path) {
    lock(&PATHS).retain(|p| p != path);
}

/// Removes every registered file, ignoring errors.
pub fn remove_all_paths() {
    let paths: HashSet<PathBuf> = lock(&PATHS).drain(..).collect();
    for path in paths {
        let _ = std::fs::remove_file(path);
    }
}

/// Installs a thread that, on SIGINT, SIGTERM or SIGHUP, kills all registered
/// children, removes all registered files and exits the process with status
/// `128 + signal` (unless a [`DeferSignals`] guard is alive, see there). For
/// the launcher binary; tests rely on `Drop` instead.
pub fn exit_on_signal() -> io::Result<()> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])?;
    std::thread::Builder::new()
        .name("signal-cleanup".into())
        .spawn(move || {
            for signal in signals.forever() {
                if DEFER.load(Ordering::SeqCst)
                    && PENDING
                        .compare_exchange(0, signal, Ordering::SeqCst, Ordering::SeqCst)
                        .is_ok()
                {
                    eprintln!("eth-ivshmem: interrupted (signal {signal}), stopping");
                    continue;
                }
                eprintln!("eth-ivshmem: interrupted (signal {signal}), stopping VMs");
                kill_and_reap_for_exit(std::time::Duration::from_secs(2));
                remove_all_paths();
                std::process::exit(128 + signal);
            }
        })?;
    Ok(())
}

/// While alive, the handler of [`exit_on_signal`] records the first signal
/// (see [`pending_signal`]) instead of ending the process, so that the main
/// thread can shut down in order (e.g. play "peer gone" for a VM it stops).
/// A second signal ends the process as usual.
#[derive(Debug)]
pub struct DeferSignals(());

impl DeferSignals {
    /// Starts deferring signals until the guard is dropped.
    pub fn new() -> DeferSignals {
        DEFER.store(true, Ordering::SeqCst);
        DeferSignals(())
    }
}

impl Default for DeferSignals {
    fn default() -> Self {
        DeferSignals::new()
    }
}

impl Drop for DeferSignals {
    fn drop(&mut self) {
        DEFER.store(false, Ordering::SeqCst);
    }
}

/// The signal recorded while a [`DeferSignals`] guard was alive, if any.
pub fn pending_signal() -> Option<i32> {
    match PENDING.load(Ordering::SeqCst) {
        0 => None,
        signal => Some(signal),
    }
}
