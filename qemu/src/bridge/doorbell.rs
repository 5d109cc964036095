//! The v1 client side of our ivshmem server, as QEMU's `ivshmem-doorbell`
//! plays it (`docs/ivshmem-v2.md` §14.3, `docs/descriptor-page.md` §10).
//!
//! Every message is one little-endian `i64`, with at most one fd. On connect
//! we receive the protocol version 0, our ID, `-1` with the shared-memory
//! fd, then for each peer already connected its ID once per vector, each
//! time with one of its eventfds (to ring it), and last our own ID once per
//! vector with our own eventfds (to wait on). Afterwards the server sends
//! a peer's ID with an fd when that peer (re)connects, and a bare ID when it
//! leaves (only with `--v1-disconnect notify`; in the default quiet mode
//! a reconnecting peer keeps its eventfds and we are told nothing).
//!
//! We never write to the socket: the server takes any readable event on it
//! as our disconnect.

use std::fs::File;
use std::io::{self, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};

/// How long the greeting may take.
const GREETING_TIMEOUT: Duration = Duration::from_secs(5);

/// One v1 message: the value and the fd that came with it.
#[derive(Debug)]
pub struct Message {
    /// The `i64` (a version, a peer ID, or -1 for the shared memory).
    pub value: i64,
    /// The fd attached to it, if any.
    pub fd: Option<OwnedFd>,
}

/// What the greeting told us, up to the shared-memory fd.
#[derive(Debug)]
pub struct Greeting {
    /// Our peer ID.
    pub id: u16,
    /// The shared memory.
    pub memory: File,
}

/// A connection to our ivshmem server as a v1 client.
#[derive(Debug)]
pub struct DoorbellClient {
    socket: PathBuf,
    stream: UnixStream,
    /// Bytes of a message received in part (the fd comes with the first).
    partial: [u8; 8],
    partial_length: usize,
    partial_fd: Option<OwnedFd>,
}

impl DoorbellClient {
    /// Connects to the server at `socket` and receives the greeting up to
    /// the shared-memory fd. The eventfds follow; the caller reads them with
    /// [`receive`](Self::receive) once it knows the vector count from the
    /// descriptor page.
    ///
    /// # Errors
    ///
    /// No server at `socket`; a server that closes the connection at once
    /// (it does that when the link already has its two peers); a greeting
    /// that is not the v1 protocol.
    pub fn connect(socket: &Path) -> anyhow::Result<(DoorbellClient, Greeting)> {
        let stream = UnixStream::connect(socket).with_context(|| {
            format!(
                "cannot connect to the ivshmem server at {} (is `cargo run -- server --socket {}` running?)",
                socket.display(),
                socket.display()
            )
        })?;
        stream
            .set_read_timeout(Some(GREETING_TIMEOUT))
            .context("cannot set a receive timeout on the server socket")?;
        let mut client = DoorbellClient {
            socket: socket.to_path_buf(),
            stream,
            partial: [0; 8],
            partial_length: 0,
            partial_fd: None,
        };
        let version = match client.receive_blocking() {
            Ok(message) => message,
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => bail!(
                "the ivshmem server at {} closed the connection at once: the link already has two peers",
                socket.display()
            ),
            Err(e) => return Err(e).context(client.greeting_error("the protocol version")),
        };
        if version.value != 0 || version.fd.is_some() {
            bail!(
                "{} does not speak the v1 ivshmem protocol (first message {}; is it a `--protocol v2` server?)",
                socket.display(),
                version.value
            );
        }
        let id = client
            .receive_blocking()
            .with_context(|| client.greeting_error("our peer ID"))?;
        let id = match (u16::try_from(id.value), &id.fd) {
            (Ok(value), None) => value,
            _ => bail!(
                "{}: bad peer ID {} in the greeting",
                socket.display(),
                id.value
            ),
        };
        let shm = client
            .receive_blocking()
            .with_context(|| client.greeting_error("the shared memory"))?;
        let (-1, Some(fd)) = (shm.value, shm.fd) else {
            bail!(
                "{}: expected the shared memory (-1 with an fd), got {}",
                socket.display(),
                shm.value
            );
        };
        Ok((
            client,
            Greeting {
                id,
                memory: File::from(fd),
            },
        ))
    }

    fn greeting_error(&self, what: &str) -> String {
        format!(
            "the ivshmem server at {} did not send {what}",
            self.socket.display()
        )
    }

    /// The socket path.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The connection, to wait on it (never to write to it).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Receives one message, waiting up to the greeting timeout.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the server closed the connection, `WouldBlock` on
    /// a timeout.
    pub fn receive_blocking(&mut self) -> io::Result<Message> {
        loop {
            if let Some(message) = self.receive_some(MsgFlags::empty())? {
                return Ok(message);
            }
        }
    }

    /// Receives one message if a whole one is there, without waiting.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` if the server closed the connection.
    pub fn receive(&mut self) -> io::Result<Option<Message>> {
        match self.receive_some(MsgFlags::MSG_DONTWAIT) {
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            other => other,
        }
    }

    /// One `recvmsg` towards the current message; returns it once complete.
    fn receive_some(&mut self, flags: MsgFlags) -> io::Result<Option<Message>> {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let (bytes, fds) = {
            let mut iov = [IoSliceMut::new(&mut self.partial[self.partial_length..])];
            let message = match recvmsg::<()>(
                self.stream.as_raw_fd(),
                &mut iov,
                Some(&mut space),
                flags | MsgFlags::MSG_CMSG_CLOEXEC,
            ) {
                Ok(message) => message,
                Err(Errno::EINTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            };
            let mut fds = Vec::new();
            for cmsg in message.cmsgs().map_err(io::Error::from)? {
                if let ControlMessageOwned::ScmRights(received) = cmsg {
                    for raw in received {
                        // SAFETY: the kernel just installed `raw` in our fd
                        // table for this message; nothing else owns it.
                        fds.push(unsafe { OwnedFd::from_raw_fd(raw) });
                    }
                }
            }
            (message.bytes, fds)
        };
        if bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server closed the connection",
            ));
        }
        // One fd per message; extra ones are closed as they drop.
        if let Some(fd) = fds.into_iter().next() {
            self.partial_fd.get_or_insert(fd);
        }
        self.partial_length += bytes;
        if self.partial_length < self.partial.len() {
            return Ok(None);
        }
        self.partial_length = 0;
        Ok(Some(Message {
            value: i64::from_le_bytes(self.partial),
            fd: self.partial_fd.take(),
        }))
    }
}

/// The eventfds of one peer, one per vector, as announced by the server.
#[derive(Debug, Default)]
pub struct Eventfds {
    fds: Vec<OwnedFd>,
}

impl Eventfds {
    /// Adds the eventfd of the next vector; a full set starts over (the
    /// peer reconnected and is announced again), as QEMU does.
    pub fn add(&mut self, fd: OwnedFd, vectors: usize) {
        if self.fds.len() >= vectors {
            self.fds.clear();
        }
        self.fds.push(fd);
    }

    /// Forgets them (the peer left).
    pub fn clear(&mut self) {
        self.fds.clear();
    }

    /// The eventfd of `vector`, if announced.
    pub fn get(&self, vector: usize) -> Option<&OwnedFd> {
        self.fds.get(vector)
    }

    /// How many are known.
    pub fn len(&self) -> usize {
        self.fds.len()
    }

    /// Whether none are known.
    pub fn is_empty(&self) -> bool {
        self.fds.is_empty()
    }

    /// All of them.
    pub fn iter(&self) -> impl Iterator<Item = &OwnedFd> {
        self.fds.iter()
    }
}

/// Writes 1 to an eventfd: one interrupt. A full counter (EAGAIN) is still a
/// pending interrupt, so that error is not one.
pub fn ring(eventfd: &OwnedFd) {
    let _ = nix::unistd::write(eventfd, &1u64.to_ne_bytes());
}

/// Clears an eventfd's counter (non-blocking; nothing pending is fine).
pub fn clear(eventfd: &OwnedFd) {
    let mut counter = [0u8; 8];
    let _ = nix::unistd::read(eventfd, &mut counter);
}
