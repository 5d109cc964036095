//! Our ivshmem server: hands shared memory and doorbell eventfds to QEMU.
//!
//! One poll-based thread serves a UNIX socket in one of two protocols:
//!
//! * [`Protocol::V1`], for stock QEMU's `ivshmem-doorbell`
//!   (`docs/ivshmem-v2.md` §14.3; every message an 8-byte LE `i64`,
//!   optionally with one fd). On connect the new peer gets: version 0; its
//!   ID; `-1` + the shm fd; for each existing peer that peer's ID once per
//!   vector with its eventfds. Every existing peer then gets the new ID once
//!   per vector with the new eventfds, and finally the new peer its own ID
//!   with its own eventfds. The shared memory starts with the descriptor page
//!   (see [`crate::shm`]) followed by the ivshmem-v2 layout. On disconnect
//!   the server zeroes the peer's state-table entry (full fence) and **rings
//!   vector 0 of every remaining peer** (writes 1 to that peer's own vector-0
//!   eventfd), reproducing ivshmem-v2 "peer gone" semantics.
//!
//!   What the remaining peers' QEMUs are *told* depends on
//!   [`V1Disconnect`]. The default, [`V1Disconnect::Quiet`], tells them
//!   nothing and keeps each peer ID's eventfds for the server's lifetime: a
//!   peer that reconnects under the same ID gets the same eventfds, and peers
//!   that already hold them are not told again. This is because QEMU's
//!   `ivshmem-doorbell` (verified with 7.2) frees a peer's eventfd array on a
//!   disconnect message without forgetting it, so a reused ID corrupts the
//!   survivor's heap and its next departure aborts it ("double free"); the
//!   upstream server avoids that by never reusing IDs, which ivshmem-net (IDs
//!   0 and 1 select the output sections) cannot afford. The guest sees no
//!   difference: v1 devices never tell the guest about disconnects, the
//!   state table and vector 0 do. [`V1Disconnect::Notify`] sends the bare ID
//!   to the remaining peers as the protocol describes (fresh eventfds per
//!   connection).
//! * [`Protocol::V2`], the Siemens fork's ivshmem2-server protocol
//!   (`docs/ivshmem-v2.md` §11.2; [`wire::V2Message`]): INIT + shm fd, then
//!   EVENT_FD messages in the order of §11.2 steps 4–6; PEER_GONE on
//!   disconnect (after zeroing the state-table entry; QEMU itself raises
//!   vector 0). No descriptor page: the state table is at offset 0.
//!
//! In both, a new peer gets the **lowest free ID** below max peers (so a
//! restarted VM gets its old ID back); a connection beyond max peers is
//! closed and logged. Any readable event on a client socket (data, EOF,
//! error) disconnects that peer. Sends never block and never raise SIGPIPE: a
//! client that cannot take a message is disconnected instead.
//!
//! The shared memory is a memfd; the socket file is removed when the
//! [`Server`] is dropped.

pub mod client;
mod sys;
pub mod wire;

use std::fs::File;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::memfd::{MFdFlags, memfd_create};

use crate::shm::{LayoutError, SharedMapping, ShmLayout};
use wire::V2Message;

/// Which server protocol to speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Protocol {
    /// QEMU's stock `ivshmem-doorbell` (with our descriptor page).
    #[default]
    V1,
    /// The Siemens fork's ivshmem-v2 device (`-device ivshmem`).
    V2,
}

/// What remaining v1 peers are told when a peer disconnects (module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum V1Disconnect {
    /// Tell them nothing; keep each ID's eventfds so a reconnecting peer gets
    /// the same ones (safe with QEMU's ivshmem-doorbell).
    #[default]
    Quiet,
    /// Send the bare peer ID (the v1 protocol's disconnect message); fresh
    /// eventfds per connection. Crashes QEMU 7.2 when an ID is reused twice.
    Notify,
}

/// Server settings. [`ServerConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerConfig {
    /// The UNIX socket to listen on.
    pub socket: PathBuf,
    /// Protocol (default v1).
    pub protocol: Protocol,
    /// Total shared memory; rounded up to a power of two (default 1 MiB).
    pub size: u64,
    /// Maximum number of peers (default 2).
    pub max_peers: u32,
    /// Interrupt vectors per peer, 1..=64 (default 2).
    pub vectors: u32,
    /// Size of ONE output section; `None` = the largest page multiple that
    /// fits (see [`ShmLayout::new`]).
    pub output_section: Option<u64>,
    /// The 16-bit ivshmem-v2 protocol ID advertised (default 0x0001,
    /// ivshmem-net).
    pub net_protocol: u16,
    /// v1 only: what remaining peers are told about a disconnect.
    pub v1_disconnect: V1Disconnect,
    /// Log connects and disconnects to stderr.
    pub verbose: bool,
}

impl ServerConfig {
    /// The defaults, listening on `socket`.
    pub fn new(socket: impl Into<PathBuf>) -> ServerConfig {
        ServerConfig {
            socket: socket.into(),
            protocol: Protocol::V1,
            size: 1 << 20,
            max_peers: 2,
            vectors: 2,
            output_section: None,
            net_protocol: crate::shm::PROTOCOL_NET,
            v1_disconnect: V1Disconnect::Quiet,
            verbose: false,
        }
    }

    /// Validates the settings and computes the shared-memory layout.
    pub fn layout(&self) -> Result<ShmLayout, ServerError> {
        if !(1..=64).contains(&self.vectors) {
            return Err(ServerError::BadVectors(self.vectors));
        }
        if self.net_protocol >= 0x8000 && self.max_peers != 2 {
            return Err(ServerError::VirtioPeers(self.max_peers));
        }
        let size = self
            .size
            .max(0x1000)
            .checked_next_power_of_two()
            .ok_or(ServerError::Layout(LayoutError::BadSize(self.size)))?;
        Ok(ShmLayout::new(
            size,
            self.protocol == Protocol::V1,
            self.max_peers,
            self.vectors,
            self.net_protocol,
            self.output_section,
        )?)
    }
}

/// Why the server could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// The shared-memory layout is impossible.
    #[error(transparent)]
    Layout(#[from] LayoutError),
    /// Vector count out of range.
    #[error("vectors {0} out of range 1..=64")]
    BadVectors(u32),
    /// Virtio protocols are point-to-point.
    #[error("virtio protocols (>= 0x8000) need exactly 2 peers, not {0}")]
    VirtioPeers(u32),
    /// Another server listens on the socket.
    #[error("socket {0} is in use: another server is listening on it")]
    SocketInUse(PathBuf),
    /// Something that is not a socket is in the way.
    #[error("{0} exists and is not a socket; refusing to replace it")]
    NotASocket(PathBuf),
    /// The socket cannot be created.
    #[error("cannot create socket {path}: {source}")]
    Bind {
        /// The socket path.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// Another system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The OS error.
        source: io::Error,
    },
}

fn io_err(what: &'static str) -> impl FnOnce(io::Error) -> ServerError {
    move |source| ServerError::Io { what, source }
}

#[derive(Debug)]
struct Peer {
    stream: UnixStream,
    /// Whether other peers have been told about it (so they need a "gone").
    announced: bool,
    /// `knows[other]`: this connection holds `other`'s eventfds.
    knows: Vec<bool>,
}

/// A bound ivshmem server. [`Server::run_until`] serves it; dropping it
/// closes all connections and removes the socket file.
#[derive(Debug)]
pub struct Server {
    config: ServerConfig,
    layout: ShmLayout,
    listener: UnixListener,
    /// (device, inode) of the socket file we created, to remove only ours.
    socket_id: (u64, u64),
    shm: OwnedFd,
    mapping: SharedMapping,
    peers: Vec<Option<Peer>>,
    /// Each ID's own eventfds, one per vector (others use them to ring it).
    /// Kept across reconnects in v1 quiet mode, else per connection.
    eventfds: Vec<Option<Vec<EventFd>>>,
}

impl Server {
    /// Validates `config`, creates and initialises the shared memory, and
    /// binds the socket. A stale socket file (nobody listening) is replaced;
    /// a live one is refused with [`ServerError::SocketInUse`].
    pub fn bind(config: ServerConfig) -> Result<Server, ServerError> {
        let layout = config.layout()?;
        let shm =
            memfd_create("eth-ivshmem", MFdFlags::MFD_CLOEXEC).map_err(|e| ServerError::Io {
                what: "memfd_create",
                source: e.into(),
            })?;
        let file = File::from(shm);
        file.set_len(layout.shm_size)
            .map_err(io_err("cannot size the shared memory"))?;
        let mut mapping =
            SharedMapping::new(&file).map_err(io_err("cannot map the shared memory"))?;
        if let Some(descriptor) = layout.descriptor() {
            mapping.write(0, &descriptor.emit());
        }
        let shm = OwnedFd::from(file);

        let path = &config.socket;
        match std::fs::symlink_metadata(path) {
            Ok(meta) if meta.file_type().is_socket() && listed_as_listening(path) => {
                return Err(ServerError::SocketInUse(path.clone()));
            }
            // Not listed (e.g. bound under another relative name): probe it.
            // A live server sees this as a peer that comes and goes at once.
            Ok(meta) if meta.file_type().is_socket() => match UnixStream::connect(path) {
                Ok(_) => return Err(ServerError::SocketInUse(path.clone())),
                Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
                    std::fs::remove_file(path).map_err(|source| ServerError::Bind {
                        path: path.clone(),
                        source,
                    })?;
                }
                Err(source) => {
                    return Err(ServerError::Bind {
                        path: path.clone(),
                        source,
                    });
                }
            },
            Ok(_) => return Err(ServerError::NotASocket(path.clone())),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(source) => {
                return Err(ServerError::Bind {
                    path: path.clone(),
                    source,
                });
            }
        }
        let listener = UnixListener::bind(path).map_err(|source| ServerError::Bind {
            path: path.clone(),
            source,
        })?;
        let meta = std::fs::symlink_metadata(path).map_err(io_err("cannot stat the socket"))?;
        listener
            .set_nonblocking(true)
            .map_err(io_err("cannot make the socket non-blocking"))?;
        let peers = (0..layout.max_peers()).map(|_| None).collect();
        let eventfds = (0..layout.max_peers()).map(|_| None).collect();
        Ok(Server {
            config,
            layout,
            listener,
            socket_id: (meta.dev(), meta.ino()),
            shm,
            mapping,
            peers,
            eventfds,
        })
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.config.socket
    }

    /// The shared-memory layout.
    pub fn layout(&self) -> &ShmLayout {
        &self.layout
    }

    /// The configuration.
    pub fn config(&self) -> &ServerConfig {
        &self.config
    }

    /// The IDs of the connected peers.
    pub fn peer_ids(&self) -> Vec<u32> {
        (0..self.layout.max_peers())
            .filter(|&id| self.peers[id as usize].is_some())
            .collect()
    }

    /// Reads peer `id`'s state-table entry.
    pub fn state(&self, id: u32) -> u32 {
        self.mapping.load_u32(self.state_offset(id))
    }

    /// Offset of peer `id`'s state-table entry (IDs are below max peers, ≤ 16).
    fn state_offset(&self, id: u32) -> u64 {
        self.layout.state_offset(id as u16)
    }

    fn log(&self, message: std::fmt::Arguments<'_>) {
        if self.config.verbose {
            eprintln!("ivshmem-server: {message}");
        }
    }

    /// Serves until `stop` becomes true (checked at least every 100 ms).
    /// Only fails if `poll` itself fails; client errors disconnect clients.
    pub fn run_until(&mut self, stop: &AtomicBool) -> io::Result<()> {
        self.log(format_args!(
            "listening on {} ({:?}, {}, {} vectors)",
            self.config.socket.display(),
            self.config.protocol,
            self.layout,
            self.layout.vectors
        ));
        while !stop.load(Ordering::SeqCst) {
            self.poll_once(Duration::from_millis(100))?;
        }
        Ok(())
    }

    /// Waits up to `timeout` for events and handles them.
    pub fn poll_once(&mut self, timeout: Duration) -> io::Result<()> {
        let ids: Vec<u32> = self.peer_ids();
        let (listener_ready, ready_peers) = {
            let mut fds = Vec::with_capacity(1 + ids.len());
            fds.push(PollFd::new(self.listener.as_fd(), PollFlags::POLLIN));
            for &id in &ids {
                let peer = self.peers[id as usize].as_ref().expect("listed peer");
                fds.push(PollFd::new(peer.stream.as_fd(), PollFlags::POLLIN));
            }
            let timeout = PollTimeout::try_from(timeout).unwrap_or(PollTimeout::MAX);
            match poll(&mut fds, timeout) {
                Ok(_) => {}
                Err(nix::errno::Errno::EINTR) => return Ok(()),
                Err(e) => return Err(e.into()),
            }
            let ready = |fd: &PollFd<'_>| fd.revents().is_some_and(|r| !r.is_empty());
            let listener_ready = ready(&fds[0]);
            let peers: Vec<u32> = ids
                .iter()
                .zip(&fds[1..])
                .filter(|(_, fd)| ready(fd))
                .map(|(&id, _)| id)
                .collect();
            (listener_ready, peers)
        };
        for id in ready_peers {
            self.log(format_args!("peer {id} disconnected"));
            self.disconnect(id);
        }
        if listener_ready {
            loop {
                match self.listener.accept() {
                    Ok((stream, _)) => self.connect(stream),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        // ECONNABORTED, EMFILE…: log and try again next round.
                        self.log(format_args!("accept failed: {e}"));
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// Whether IDs keep their eventfds across connections (v1 quiet mode).
    fn sticky(&self) -> bool {
        self.config.protocol == Protocol::V1 && self.config.v1_disconnect == V1Disconnect::Quiet
    }

    fn connect(&mut self, stream: UnixStream) {
        let Some(id) = (0..self.layout.max_peers()).find(|&id| self.peers[id as usize].is_none())
        else {
            self.log(format_args!(
                "refusing a connection: all {} peer IDs are in use",
                self.layout.max_peers()
            ));
            return; // dropping `stream` closes it
        };
        if !self.sticky() || self.eventfds[id as usize].is_none() {
            let eventfds: Result<Vec<EventFd>, _> = (0..self.layout.vectors)
                .map(|_| EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC))
                .collect();
            match eventfds {
                Ok(e) => self.eventfds[id as usize] = Some(e),
                Err(e) => {
                    self.log(format_args!("refusing a connection: eventfd: {e}"));
                    return;
                }
            }
        }
        // Rings aimed at a previous holder of this ID must not reach the new one.
        for eventfd in self.own_eventfds(id) {
            drain(eventfd);
        }
        let _ = stream.set_nonblocking(true);
        self.peers[id as usize] = Some(Peer {
            stream,
            announced: false,
            knows: vec![false; self.layout.max_peers() as usize],
        });
        self.log(format_args!("peer {id} connected"));
        let dead = match self.config.protocol {
            Protocol::V1 => self.greet_v1(id),
            Protocol::V2 => self.greet_v2(id),
        };
        for id in dead {
            if self.peers[id as usize].is_some() {
                self.log(format_args!("peer {id} is not reachable, disconnecting it"));
                self.disconnect(id);
            }
        }
    }

    fn others(&self, id: u32) -> Vec<u32> {
        self.peer_ids().into_iter().filter(|&o| o != id).collect()
    }

    fn peer(&self, id: u32) -> &Peer {
        self.peers[id as usize].as_ref().expect("connected peer")
    }

    fn peer_mut(&mut self, id: u32) -> &mut Peer {
        self.peers[id as usize].as_mut().expect("connected peer")
    }

    fn own_eventfds(&self, id: u32) -> &[EventFd] {
        self.eventfds[id as usize].as_deref().unwrap_or(&[])
    }

    /// Sends `owner`'s eventfds to `to`, as v1 messages or v2 EVENT_FDs.
    fn send_eventfds(&self, to: u32, owner: u32) -> io::Result<()> {
        let stream = &self.peer(to).stream;
        for (vector, eventfd) in self.own_eventfds(owner).iter().enumerate() {
            let message = match self.config.protocol {
                Protocol::V1 => wire::v1_message(i64::from(owner)).to_vec(),
                Protocol::V2 => V2Message::EventFd {
                    id: owner,
                    vector: vector as u32,
                }
                .to_bytes(),
            };
            sys::send_with_fd(stream, &message, Some(eventfd.as_fd()))?;
        }
        Ok(())
    }

    /// Steps shared by both protocols after the first message(s): the
    /// existing peers learn the new peer's eventfds (step 4 in
    /// `docs/ivshmem-v2.md` §11.2; in v1 quiet mode only those that do not
    /// hold them yet), the new peer learns theirs (in v1 right after the shm
    /// fd) and finally its own. Returns the peers whose sockets failed.
    fn distribute_eventfds(&mut self, new: u32) -> Vec<u32> {
        let others = self.others(new);
        let mut dead = Vec::new();
        if self.config.protocol == Protocol::V1 {
            // v1: the existing peers' eventfds come before the others hear of
            // the new one.
            for &other in &others {
                if self.send_eventfds(new, other).is_err() {
                    return vec![new];
                }
                self.peer_mut(new).knows[other as usize] = true;
            }
        }
        self.peer_mut(new).announced = true;
        for &other in &others {
            if self.sticky() && self.peer(other).knows[new as usize] {
                continue;
            }
            if self.send_eventfds(other, new).is_err() {
                dead.push(other);
                continue;
            }
            self.peer_mut(other).knows[new as usize] = true;
        }
        if self.config.protocol == Protocol::V2 {
            for &other in &others {
                if self.send_eventfds(new, other).is_err() {
                    dead.push(new);
                    return dead;
                }
                self.peer_mut(new).knows[other as usize] = true;
            }
        }
        if self.send_eventfds(new, new).is_err() {
            dead.push(new);
        }
        dead
    }

    /// v1 greeting; returns the peers whose sockets failed.
    fn greet_v1(&mut self, new: u32) -> Vec<u32> {
        use wire::{V1_PROTOCOL_VERSION, V1_SHM_ID, v1_message};
        let stream = &self.peer(new).stream;
        let first = [
            (v1_message(V1_PROTOCOL_VERSION), None),
            (v1_message(i64::from(new)), None),
            (v1_message(V1_SHM_ID), Some(self.shm.as_fd())),
        ];
        for (message, fd) in first {
            if sys::send_with_fd(stream, &message, fd).is_err() {
                return vec![new];
            }
        }
        self.distribute_eventfds(new)
    }

    /// v2 greeting (`docs/ivshmem-v2.md` §11.2 steps 3–6); returns the peers
    /// whose sockets failed.
    fn greet_v2(&mut self, new: u32) -> Vec<u32> {
        let init = V2Message::Init {
            version: wire::V2_PROTOCOL_VERSION,
            compatible_version: wire::V2_PROTOCOL_VERSION,
            id: new,
            max_peers: self.layout.max_peers(),
            vectors: self.layout.vectors,
            protocol: wire::v2_protocol_for_peer(self.layout.protocol, new),
            output_section_size: self.layout.sections.output_section_size,
        };
        if sys::send_with_fd(
            &self.peer(new).stream,
            &init.to_bytes(),
            Some(self.shm.as_fd()),
        )
        .is_err()
        {
            return vec![new];
        }
        self.distribute_eventfds(new)
    }

    /// Frees peer `id`: closes it, zeroes its state, rings (v1) and tells
    /// (v1 notify mode, v2) the others. Peers that fail to take the news are
    /// disconnected too.
    fn disconnect(&mut self, id: u32) {
        let mut pending = vec![id];
        while let Some(id) = pending.pop() {
            let Some(peer) = self.peers[id as usize].take() else {
                continue;
            };
            drop(peer.stream);
            // Zero the state entry before anyone hears about the departure.
            self.mapping.store_u32(self.state_offset(id), 0);
            if peer.announced {
                for other in self.peer_ids() {
                    let gone = match self.config.protocol {
                        Protocol::V1 if self.sticky() => None,
                        Protocol::V1 => Some(wire::v1_message(i64::from(id)).to_vec()),
                        Protocol::V2 => Some(V2Message::PeerGone { id }.to_bytes()),
                    };
                    if let Some(gone) = gone {
                        self.peer_mut(other).knows[id as usize] = false;
                        if sys::send_with_fd(&self.peer(other).stream, &gone, None).is_err()
                            && !pending.contains(&other)
                        {
                            pending.push(other);
                            continue;
                        }
                    }
                    if self.config.protocol == Protocol::V1 {
                        // Ring vector 0 of the survivor, as ivshmem-v2 does on
                        // a state change. A full counter (EAGAIN) is still a
                        // pending interrupt, so errors are irrelevant.
                        if let Some(vector0) = self.own_eventfds(other).first() {
                            let _ = vector0.write(1);
                        }
                    }
                }
            }
            if !self.sticky() {
                self.eventfds[id as usize] = None; // closes them
            }
        }
    }

    /// Runs the server on a new thread until the returned handle is stopped
    /// or dropped (for tests and for launchers that run VMs meanwhile).
    pub fn spawn(self) -> io::Result<ServerThread> {
        let stop = Arc::new(AtomicBool::new(false));
        let socket = self.config.socket.clone();
        let layout = self.layout;
        let protocol = self.config.protocol;
        let flag = Arc::clone(&stop);
        let mut server = self;
        let handle = std::thread::Builder::new()
            .name("ivshmem-server".into())
            .spawn(move || server.run_until(&flag))?;
        Ok(ServerThread {
            stop,
            handle: Some(handle),
            socket,
            layout,
            protocol,
        })
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        // Remove the socket only if it is still the one we created.
        if let Ok(meta) = std::fs::symlink_metadata(&self.config.socket)
            && (meta.dev(), meta.ino()) == self.socket_id
        {
            let _ = std::fs::remove_file(&self.config.socket);
        }
    }
}

/// Empties `eventfd` without blocking, whatever its mode: QEMU clears
/// `O_NONBLOCK` on the eventfds it receives, and that flag lives in the file
/// description it shares with us, so a plain read of an empty counter could
/// block the server for ever. One read takes the whole counter.
fn drain(eventfd: &EventFd) {
    let mut fds = [PollFd::new(eventfd.as_fd(), PollFlags::POLLIN)];
    if poll(&mut fds, PollTimeout::ZERO).is_ok_and(|ready| ready > 0) {
        let _ = eventfd.read();
    }
}

/// Whether `/proc/net/unix` lists a listening socket bound to `path` (as
/// given or as an absolute path). This detects a live server without
/// connecting to it.
fn listed_as_listening(path: &Path) -> bool {
    /// `__SO_ACCEPTCON` in the Flags column: the socket is listening.
    const ACCEPTCON: u32 = 1 << 16;
    let Ok(table) = std::fs::read_to_string("/proc/net/unix") else {
        return false;
    };
    let mut names = vec![path.to_path_buf()];
    if let Ok(absolute) = std::path::absolute(path) {
        names.push(absolute);
    }
    if let Ok(canonical) = path.canonicalize() {
        names.push(canonical);
    }
    table.lines().skip(1).any(|line| {
        // Num RefCount Protocol Flags Type St Inode Path
        let fields: Vec<&str> = line.split_whitespace().collect();
        fields.len() >= 8
            && u32::from_str_radix(fields[3], 16).is_ok_and(|flags| flags & ACCEPTCON != 0)
            && names.iter().any(|name| Path::new(fields[7]) == name)
    })
}

/// A [`Server`] running on its own thread; stopping or dropping it stops the
/// server, closes all connections and removes the socket.
#[derive(Debug)]
pub struct ServerThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<io::Result<()>>>,
    socket: PathBuf,
    layout: ShmLayout,
    protocol: Protocol,
}

impl ServerThread {
    /// The device a VM attaches to this server with: `ivshmem-doorbell`
    /// (with the server's vector count) for v1, the Siemens `ivshmem` for v2.
    pub fn device(&self) -> crate::ShmDevice {
        match self.protocol {
            Protocol::V1 => crate::ShmDevice::Doorbell {
                socket: self.socket.clone(),
                vectors: self.layout.vectors,
            },
            Protocol::V2 => crate::ShmDevice::V2 {
                socket: self.socket.clone(),
            },
        }
    }

    /// The socket path.
    pub fn socket_path(&self) -> &Path {
        &self.socket
    }

    /// The shared-memory layout.
    pub fn layout(&self) -> &ShmLayout {
        &self.layout
    }

    /// Stops the server and waits for it (at most ~100 ms).
    pub fn stop(mut self) -> io::Result<()> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> io::Result<()> {
        self.stop.store(true, Ordering::SeqCst);
        match self.handle.take() {
            Some(handle) => handle
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the server thread panicked"))),
            None => Ok(()),
        }
    }
}

impl Drop for ServerThread {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}
