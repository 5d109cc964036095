//! A network namespace of our own: Linux's stack for one host peer, with
//! nothing shared with the host's own network.
//!
//! The namespace is made with `unshare(CLONE_NEWNET)` in a thread of its own
//! and kept by an fd to it; it has no name (nothing in `ip netns`, no bind
//! mount in `/run/netns`), so it disappears with the last thread, process or
//! fd that holds it: whatever ends this process, a `SIGKILL` included,
//! nothing is left behind. Namespaces are per **thread**: code runs in it on
//! a thread that entered it with `setns` ([`Namespace::run`],
//! [`Namespace::spawn`]), sockets stay in the namespace they were made in
//! whatever thread uses them, and processes are forked from a thread inside
//! it ([`Namespace::spawn_process`]), so that they inherit it.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::os::fd::{AsFd, OwnedFd};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sched::{CloneFlags, setns, unshare};

type SpawnRequest = (Command, mpsc::Sender<io::Result<Child>>);

/// A network namespace, alive while this handle (or a thread, process or
/// socket in it) lives. Only its loopback interface exists at first, down.
#[derive(Debug)]
pub struct Namespace {
    fd: Arc<OwnedFd>,
    /// The thread inside that forks our processes (started on first use).
    spawner: Mutex<Option<mpsc::Sender<SpawnRequest>>>,
}

/// Why a namespace could not be made.
#[derive(Debug, thiserror::Error)]
pub enum NamespaceError {
    /// Not allowed.
    #[error(
        "cannot create a network namespace: permission denied (it needs root, or CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    )]
    Permission,
    /// Another failure.
    #[error("cannot create a network namespace: {0}")]
    Io(#[from] io::Error),
}

impl Namespace {
    /// Makes a new, empty network namespace.
    ///
    /// # Errors
    ///
    /// [`NamespaceError::Permission`] without the capabilities;
    /// [`NamespaceError::Io`] when no thread can be started or the kernel
    /// has no network namespaces.
    pub fn new() -> Result<Namespace, NamespaceError> {
        let fd = thread::Builder::new()
            .name("netns-new".into())
            .spawn(|| -> Result<OwnedFd, NamespaceError> {
                unshare(CloneFlags::CLONE_NEWNET).map_err(|e| match e {
                    Errno::EPERM => NamespaceError::Permission,
                    e => NamespaceError::Io(e.into()),
                })?;
                Ok(OwnedFd::from(File::open("/proc/thread-self/ns/net")?))
            })?
            .join()
            .map_err(|_| io::Error::other("the namespace thread panicked"))??;
        Ok(Namespace {
            fd: Arc::new(fd),
            spawner: Mutex::new(None),
        })
    }

    /// Starts `f` on a new thread called `name` inside the namespace.
    ///
    /// # Errors
    ///
    /// The thread cannot be started. If entering the namespace fails (it
    /// cannot, for a namespace this process made), the thread panics.
    pub fn spawn<T: Send + 'static>(
        &self,
        name: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> io::Result<JoinHandle<T>> {
        let fd = Arc::clone(&self.fd);
        thread::Builder::new().name(name.into()).spawn(move || {
            setns(fd.as_fd(), CloneFlags::CLONE_NEWNET).expect("setns into our own namespace");
            f()
        })
    }

    /// Runs `f` inside the namespace and returns its result; a panic in
    /// `f` is resumed in the caller.
    ///
    /// # Panics
    ///
    /// If no thread can be started.
    pub fn run<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let handle = self.spawn("netns-run", f).expect("cannot start a thread");
        match handle.join() {
            Ok(value) => value,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    }

    /// Starts `command` inside the namespace. The child is registered with
    /// [`crate::cleanup`] (killed if the launcher is interrupted) and dies
    /// with the namespace's spawner thread, which lives as long as this
    /// handle, or with this process; the caller reaps it and then calls
    /// [`crate::cleanup::unregister_child`].
    ///
    /// # Errors
    ///
    /// The program cannot be started.
    pub fn spawn_process(&self, mut command: Command) -> io::Result<Child> {
        crate::cleanup::prepare_child(&mut command);
        let (reply, answer) = mpsc::channel();
        {
            let mut spawner = self.spawner.lock().unwrap_or_else(|e| e.into_inner());
            if spawner.is_none() {
                let (requests, incoming) = mpsc::channel::<SpawnRequest>();
                self.spawn("netns-spawner", move || {
                    for (mut command, reply) in incoming {
                        let result = command.spawn();
                        if let Ok(child) = &result {
                            crate::cleanup::register_child(child.id());
                        }
                        let _ = reply.send(result);
                    }
                })?;
                *spawner = Some(requests);
            }
            spawner
                .as_ref()
                .expect("started above")
                .send((command, reply))
                .map_err(|_| io::Error::other("the namespace's spawner thread is gone"))?;
        }
        answer
            .recv()
            .map_err(|_| io::Error::other("the namespace's spawner thread is gone"))?
    }

    /// Runs `command` inside the namespace to its end, with null stdin,
    /// calling `on_line` with each line of its standard output as it
    /// arrives; kills it after `timeout`.
    ///
    /// # Errors
    ///
    /// The program cannot be started.
    pub fn run_process(
        &self,
        mut command: Command,
        timeout: Duration,
        mut on_line: impl FnMut(&str),
    ) -> io::Result<ProcessOutput> {
        command
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.spawn_process(command)?;
        let pid = child.id();
        let stdout = child.stdout.take().expect("stdout is piped");
        let mut stderr = child.stderr.take().expect("stderr is piped");
        let stderr = thread::spawn(move || {
            let mut text = String::new();
            let _ = stderr.read_to_string(&mut text);
            text
        });
        // The lines arrive on a channel, so that the deadline holds even if
        // the program stops printing without ending.
        let (lines, incoming) = mpsc::channel();
        thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if lines.send(line).is_err() {
                    break;
                }
            }
        });
        let deadline = Instant::now() + timeout;
        let mut stdout = Vec::new();
        let mut timed_out = false;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match incoming.recv_timeout(left.max(Duration::from_millis(1))) {
                Ok(line) => {
                    on_line(&line);
                    stdout.push(line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        timed_out = true;
                        let _ = child.kill();
                        break;
                    }
                }
            }
        }
        let status = child.wait();
        crate::cleanup::unregister_child(pid);
        Ok(ProcessOutput {
            status: status?,
            timed_out,
            stdout,
            stderr: stderr.join().unwrap_or_default(),
        })
    }
}

/// What a process run with [`Namespace::run_process`] printed, and how it
/// ended.
#[derive(Debug, Clone)]
pub struct ProcessOutput {
    /// Its exit status.
    pub status: ExitStatus,
    /// Whether it was killed for the timeout.
    pub timed_out: bool,
    /// Its standard output, line by line.
    pub stdout: Vec<String>,
    /// Its standard error.
    pub stderr: String,
}

/// Whether `program` can be run (found in `PATH`).
pub fn have_program(program: &str) -> bool {
    crate::install::find_in_path(program).is_some()
}
