//! One end of an ivshmem-net link on the host: the shared memory mapped into
//! this process, the netdev sections over it, and the notifier that plays
//! the v2 State and Doorbell registers on our v1 emulation
//! (`docs/descriptor-page.md` §7, §8).
//!
//! Two ways in:
//!
//! * [`Link::doorbell`]: as a v1 client of our server ([`super::doorbell`]),
//!   with eventfds to ring the peer and to be rung;
//! * [`Link::plain`]: a file with a descriptor page, as `cargo run -- vm
//!   --link plain:PATH` creates it; no doorbells, both sides poll.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;
use std::ptr::NonNull;
use std::sync::atomic::{Ordering, fence};
use std::sync::{Arc, Mutex, MutexGuard};

use anyhow::{Context, bail, ensure};
use memmap2::MmapRaw;
use netdev::{Config, Engine, Notifier, Sections, SharedMemory, SharedMemoryMut, State};
use netdev_host::mapped::{MappedRegion, MappedRegionMut};
use nix::fcntl::{FcntlArg, OFlag, fcntl};

use super::doorbell::{self, DoorbellClient, Eventfds};
use abi::descriptor::{self, DescriptorPage};

use crate::shm::{PROTOCOL_NET, ShmLayout};

/// The engine over a host link.
pub type LinkEngine = Engine<MappedRegion, MappedRegionMut, LinkNotifier>;

/// The layout described by the descriptor page at the start of a mapping of
/// `size` bytes: the one place that parses the page
/// (`docs/descriptor-page.md` §3, §4), checked to be an ivshmem-net link of
/// two peers.
fn describe(page: &[u8], size: u64) -> anyhow::Result<ShmLayout> {
    let descriptor = DescriptorPage::parse(page)?;
    ensure!(
        descriptor.protocol == PROTOCOL_NET,
        "the shared memory is for protocol {:#06x}, not ivshmem-net ({PROTOCOL_NET:#06x})",
        descriptor.protocol
    );
    ensure!(
        descriptor.layout.max_peers == 2,
        "the shared memory is laid out for {} peers; ivshmem-net needs exactly 2",
        descriptor.layout.max_peers
    );
    ShmLayout::from_descriptor(size, descriptor)
        .context("the descriptor page does not describe this region")
}

/// How the link is reached.
#[derive(Debug)]
enum Transport {
    /// A v1 client of our server.
    Doorbell {
        client: DoorbellClient,
        /// Our own eventfds, one per vector: the server and the peer ring them.
        own: Eventfds,
    },
    /// A shared file: nothing to wait on.
    Plain,
}

/// One end of a link: the mapping, our ID, and (on doorbell links) the
/// server connection and eventfds.
#[derive(Debug)]
pub struct Link {
    id: u16,
    layout: ShmLayout,
    description: String,
    mapping: Arc<MmapRaw>,
    transport: Transport,
    /// The peer's eventfds, shared with the notifier.
    peer: Arc<Mutex<Eventfds>>,
    /// Whether [`engine`](Self::engine) handed out our writable section.
    engine_made: bool,
}

/// What the server told us since the last look.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ServerNews {
    /// The peer (re)connected and announced its eventfds.
    pub peer_announced: bool,
    /// The peer left (`--v1-disconnect notify` servers only).
    pub peer_gone: bool,
    /// The server closed our connection.
    pub closed: bool,
}

impl Link {
    /// Joins the link served by our ivshmem server at `socket` as a v1
    /// client: receives the greeting with the shared memory and the
    /// eventfds, maps the memory and parses its descriptor page.
    ///
    /// # Errors
    ///
    /// Those of [`DoorbellClient::connect`]; shared memory without a valid
    /// ivshmem-net descriptor page or without doorbell vectors; an ID that
    /// is not 0 or 1.
    pub fn doorbell(socket: &Path) -> anyhow::Result<Link> {
        let (mut client, greeting) = DoorbellClient::connect(socket)?;
        let id = greeting.id;
        let what = format!("the shared memory of {}", socket.display());
        let (mapping, layout) = map(&greeting.memory, &what)?;
        ensure!(
            id < 2,
            "the server gave us peer ID {id}; ivshmem-net has 0 and 1"
        );
        ensure!(
            layout.vectors > 0,
            "{what} has no doorbell vectors (a plain-file layout?)"
        );
        let vectors = layout.vectors as usize;
        let mut own = Eventfds::default();
        let mut peer = Eventfds::default();
        while own.len() < vectors {
            let message = client
                .receive_blocking()
                .with_context(|| format!("the server at {} sent no eventfds", socket.display()))?;
            let sender = u16::try_from(message.value).ok().filter(|&s| s < 2);
            match (sender, message.fd) {
                (Some(sender), Some(fd)) if sender == id => own.add(nonblocking(fd)?, vectors),
                (Some(_), Some(fd)) => peer.add(nonblocking(fd)?, vectors),
                (Some(sender), None) if sender != id => peer.clear(),
                _ => bail!(
                    "unexpected message {} in the greeting of {}",
                    message.value,
                    socket.display()
                ),
            }
        }
        Ok(Link {
            id,
            layout,
            description: format!("doorbell:{}", socket.display()),
            mapping,
            transport: Transport::Doorbell { client, own },
            peer: Arc::new(Mutex::new(peer)),
            engine_made: false,
        })
    }

    /// Joins the link in the shared file at `path` (with a descriptor page,
    /// `docs/descriptor-page.md` §5) as peer `id`.
    ///
    /// # Errors
    ///
    /// A missing or unreadable file, no valid ivshmem-net descriptor page,
    /// an `id` other than 0 or 1.
    pub fn plain(path: &Path, id: u16) -> anyhow::Result<Link> {
        ensure!(id < 2, "peer ID {id}: ivshmem-net has 0 and 1");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .with_context(|| format!("cannot open the shared file {}", path.display()))?;
        let (mapping, layout) = map(&file, &path.display().to_string())?;
        Ok(Link {
            id,
            layout,
            description: format!("plain:{}", path.display()),
            mapping,
            transport: Transport::Plain,
            peer: Arc::new(Mutex::new(Eventfds::default())),
            engine_made: false,
        })
    }

    /// Our peer ID.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The shared-memory layout.
    pub fn layout(&self) -> &ShmLayout {
        &self.layout
    }

    /// `doorbell:SOCKET` or `plain:PATH`.
    pub fn description(&self) -> &str {
        &self.description
    }

    /// Whether the link has doorbells (a server connection).
    pub fn has_doorbells(&self) -> bool {
        matches!(self.transport, Transport::Doorbell { .. })
    }

    /// The section layout of the ivshmem-net rings (`docs/ivshmem-net.md` §3.3).
    ///
    /// # Errors
    ///
    /// An output section too small for ivshmem-net.
    pub fn net_layout(&self) -> anyhow::Result<netdev::Layout> {
        let size = usize::try_from(self.layout.sections.output_section_size)?;
        netdev::Layout::new(size).map_err(|e| anyhow::anyhow!("output section: {e}"))
    }

    /// Our own eventfds (to wait on); none on a plain link.
    pub fn own_eventfds(&self) -> impl Iterator<Item = &OwnedFd> {
        let own = match &self.transport {
            Transport::Doorbell { own, .. } => Some(own.iter()),
            Transport::Plain => None,
        };
        own.into_iter().flatten()
    }

    /// The server connection (to wait on), on a doorbell link.
    pub fn server(&self) -> Option<&std::os::unix::net::UnixStream> {
        match &self.transport {
            Transport::Doorbell { client, .. } => Some(client.stream()),
            Transport::Plain => None,
        }
    }

    /// Whether the peer's eventfds are known (always false on plain links).
    pub fn peer_reachable(&self) -> bool {
        !lock(&self.peer).is_empty()
    }

    /// Reads what the server sent since the last call, without waiting: a
    /// peer that (re)connects announces its eventfds (they replace the old
    /// ones); a bare peer ID means it left.
    pub fn server_news(&mut self) -> ServerNews {
        let mut news = ServerNews::default();
        let Transport::Doorbell { client, own } = &mut self.transport else {
            return news;
        };
        let vectors = self.layout.vectors as usize;
        loop {
            match client.receive() {
                Ok(None) => break,
                Ok(Some(message)) => {
                    let sender = u16::try_from(message.value).ok();
                    match (sender, message.fd) {
                        (Some(sender), Some(fd)) if sender == self.id => {
                            if let Ok(fd) = nonblocking(fd) {
                                own.add(fd, vectors);
                            }
                        }
                        (Some(sender), Some(fd)) if sender == 1 - self.id => {
                            if let Ok(fd) = nonblocking(fd) {
                                lock(&self.peer).add(fd, vectors);
                                news.peer_announced = true;
                            }
                        }
                        (Some(sender), None) if sender == 1 - self.id => {
                            lock(&self.peer).clear();
                            news.peer_gone = true;
                        }
                        // Anything else (an ID we cannot have) is ignored.
                        _ => {}
                    }
                }
                Err(_) => {
                    news.closed = true;
                    break;
                }
            }
        }
        news
    }

    /// The engine for our end: the state table and the peer's output
    /// section read-only, our own output section writable, and a notifier
    /// over our state-table entry and the peer's eventfds. Writes State =
    /// RESET (`docs/ivshmem-net.md` §10 item 4).
    ///
    /// # Errors
    ///
    /// A second call (there is one writable view of our section); what
    /// [`Engine::new`] refuses (e.g. an MTU above the section's limit).
    pub fn engine(&mut self, mtu: usize) -> anyhow::Result<LinkEngine> {
        ensure!(!self.engine_made, "the link's engine was already made");
        let layout = self.layout;
        let offset = |value: u64| usize::try_from(value).expect("offsets fit the mapping");
        let sections = &layout.sections;
        let section = offset(sections.output_section_size);
        let own_section = offset(
            sections
                .output_section(self.id)
                .expect("peer 0 or 1 of a two-peer layout")
                .offset,
        );
        let peer_section = offset(
            sections
                .output_section(1 - self.id)
                .expect("peer 0 or 1 of a two-peer layout")
                .offset,
        );
        let state_table = offset(sections.state_table_offset);
        let own_entry = offset(layout.state_offset(self.id));
        let whole = self.whole();
        let owner = Some(self.mapping.clone() as netdev_host::mapped::Owner);
        let base = self.mapping.as_mut_ptr();
        let at = |offset: usize| NonNull::new(base.wrapping_add(offset)).expect("mapped address");
        // SAFETY: the mapping covers `layout.shm_size` bytes (checked in
        // `map`), every range below lies inside it (`Layout::new` checked
        // that the sections fit), and the owner keeps it mapped while any
        // view lives. In this process only these two views write it (our
        // section and our state-table entry, disjoint ranges), and only
        // once: `engine_made` refuses a second call. The peer is another
        // process, or a conforming peer (tests).
        let (own, entry) = unsafe {
            (
                MappedRegionMut::new(at(own_section), section, owner.clone()),
                MappedRegionMut::new(at(own_entry), 4, owner),
            )
        };
        let sections = Sections {
            state_table: whole.subregion(state_table, offset(sections.state_table_size)),
            own,
            peer: whole.subregion(peer_section, section),
        };
        let notifier = LinkNotifier {
            entry,
            peer: self.has_doorbells().then(|| self.peer.clone()),
            last: Mutex::new(None),
        };
        // The bridge speaks no protocol above Ethernet; the MAC only labels
        // the engine (smoltcp would use it).
        let pid = std::process::id().to_le_bytes();
        let mac = netdev::locally_administered_mac([0x02, 0x1b, pid[0], pid[1], pid[2], 0xb0]);
        let mut config = Config::new(self.id, u16::try_from(layout.vectors.max(1))?, mac);
        config.mtu = Some(mtu);
        self.engine_made = true;
        Engine::new(config, sections, notifier).map_err(|e| anyhow::anyhow!("{e}"))
    }

    /// A read-only view of the whole mapping.
    fn whole(&self) -> MappedRegion {
        let base = NonNull::new(self.mapping.as_mut_ptr()).expect("mapped address");
        // SAFETY: the mapping is `len` bytes, page-aligned, and kept alive by
        // the owner; this process writes it only through the views made in
        // `engine` (atomics and copies), never through references.
        unsafe { MappedRegion::new(base, self.mapping.len(), Some(self.mapping.clone())) }
    }

    /// Peer `id`'s state-table entry (for diagnostics and tests).
    pub fn state(&self, id: u16) -> State {
        let offset = self.layout.state_offset(id);
        State::from_raw(
            self.whole()
                .load_u32(usize::try_from(offset).expect("offset"), Ordering::Acquire),
        )
    }
}

/// Maps all of `file` and reads its descriptor page.
fn map(file: &File, what: &str) -> anyhow::Result<(Arc<MmapRaw>, ShmLayout)> {
    let size = file
        .metadata()
        .with_context(|| format!("cannot stat {what}"))?
        .len();
    ensure!(
        size >= descriptor::LENGTH as u64,
        "{what} is {size} bytes: too small for a descriptor page"
    );
    let mapping = MmapRaw::map_raw(file).with_context(|| format!("cannot map {what}"))?;
    ensure!(
        mapping.len() as u64 == size,
        "{what}: mapped {} of {size} bytes",
        mapping.len()
    );
    let mapping = Arc::new(mapping);
    let base = NonNull::new(mapping.as_mut_ptr()).expect("mapped address");
    // SAFETY: `mapping` is `len` bytes, page-aligned, and kept alive by the
    // owner; this view only reads the page once through a copy.
    let whole = unsafe { MappedRegion::new(base, mapping.len(), Some(mapping.clone())) };
    let mut page = [0u8; descriptor::LENGTH];
    whole.read(0, &mut page);
    let layout = describe(&page, size).with_context(|| format!("{what}: no usable link"))?;
    Ok((mapping, layout))
}

fn nonblocking(fd: OwnedFd) -> io::Result<OwnedFd> {
    let flags = fcntl(fd.as_fd(), FcntlArg::F_GETFL)?;
    fcntl(
        fd.as_fd(),
        FcntlArg::F_SETFL(OFlag::from_bits_truncate(flags) | OFlag::O_NONBLOCK),
    )?;
    Ok(fd)
}

fn lock(eventfds: &Mutex<Eventfds>) -> MutexGuard<'_, Eventfds> {
    // A panic while holding it cannot leave the list inconsistent.
    eventfds.lock().unwrap_or_else(|e| e.into_inner())
}

/// The v2 registers as our v1 emulation plays them on the host
/// (`docs/descriptor-page.md` §7, §8).
#[derive(Debug)]
pub struct LinkNotifier {
    /// Our state-table entry.
    entry: MappedRegionMut,
    /// The peer's eventfds (`None` on a plain link: no doorbells).
    peer: Option<Arc<Mutex<Eventfds>>>,
    /// The last state we wrote (`None` before the first write).
    last: Mutex<Option<u32>>,
}

impl Notifier for LinkNotifier {
    /// Rings the peer's eventfd for `vector`, if we know it.
    fn notify(&self, vector: u16) {
        if let Some(peer) = &self.peer
            && let Some(eventfd) = lock(peer).get(usize::from(vector))
        {
            doorbell::ring(eventfd);
        }
    }

    /// Stores the state into our entry (release, then a full fence) and, if
    /// it differs from what we last wrote (or is our first write), rings
    /// vector 0 of the peer (`docs/descriptor-page.md` §7).
    fn set_state(&self, state: u32) {
        fence(Ordering::SeqCst);
        self.entry.store_u32(0, state, Ordering::Release);
        fence(Ordering::SeqCst);
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        if last.replace(state) != Some(state) {
            self.notify(0);
        }
    }
}
