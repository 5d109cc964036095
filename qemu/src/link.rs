//! The shared memory the VMs of a scenario are attached to: which QEMU
//! device each VM gets, what its kernel command line needs, and who plays
//! "peer gone" when a VM leaves.
//!
//! ivshmem-v2 zeroes a departed peer's state-table entry (`docs/ivshmem-v2.md`
//! §6.1). On the server links our server does that (and rings or tells the
//! others); on a plain file nobody is there to notice, so the launcher does it
//! ([`Link::peer_gone`]) when it sees the VM end.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use abi::cmdline::{CommandLine, Mode};

use crate::ShmDevice;
use crate::options::UsageError;
use crate::server::{Protocol, Server, ServerConfig, ServerError, ServerThread};
use crate::shm::{PROTOCOL_NET, PlainRegion, ShmFile};
use crate::size::Size;

/// Size of a plain file the launcher creates when none is given.
pub const DEFAULT_PLAIN_SIZE: u64 = 1 << 20;

/// Vectors of an `ivshmem-doorbell` on a server we do not run (ours
/// defaults to 2: state and data).
const DOORBELL_VECTORS: u32 = 2;

/// A link named on the command line: `doorbell:SOCKET`, `v2:SOCKET`,
/// `plain:PATH` or `none`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LinkSpec {
    /// `doorbell:SOCKET`: `ivshmem-doorbell` on a v1 server.
    Doorbell(PathBuf),
    /// `v2:SOCKET`: the Siemens `ivshmem` device on a v2 server.
    V2(PathBuf),
    /// `plain:PATH`: `ivshmem-plain` on a shared file with a descriptor page.
    Plain(PathBuf),
    /// `none`: no shared memory.
    #[default]
    None,
}

impl FromStr for LinkSpec {
    type Err = String;

    fn from_str(s: &str) -> Result<LinkSpec, String> {
        if s == "none" {
            return Ok(LinkSpec::None);
        }
        let (kind, path) = s.split_once(':').ok_or_else(|| {
            format!("{s:?} is not doorbell:SOCKET, v2:SOCKET, plain:PATH or none")
        })?;
        if path.is_empty() {
            return Err(format!("{s:?} names no path after \"{kind}:\""));
        }
        let path = PathBuf::from(path);
        match kind {
            "doorbell" => Ok(LinkSpec::Doorbell(path)),
            "v2" => Ok(LinkSpec::V2(path)),
            "plain" => Ok(LinkSpec::Plain(path)),
            _ => Err(format!(
                "unknown link kind {kind:?} (doorbell:SOCKET, v2:SOCKET, plain:PATH or none)"
            )),
        }
    }
}

impl fmt::Display for LinkSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LinkSpec::Doorbell(p) => write!(f, "doorbell:{}", p.display()),
            LinkSpec::V2(p) => write!(f, "v2:{}", p.display()),
            LinkSpec::Plain(p) => write!(f, "plain:{}", p.display()),
            LinkSpec::None => f.write_str("none"),
        }
    }
}

/// A unique socket path for a server (under `/dev/shm` or the temporary
/// directory, short enough for `sun_path`).
pub fn unique_socket_path(tag: &str) -> PathBuf {
    let mut path = ShmFile::unique_path(tag).into_os_string();
    path.push(".sock");
    PathBuf::from(path)
}

/// A server's socket, and the server itself if it runs in this process.
#[derive(Debug)]
pub struct ServerSocket {
    socket: PathBuf,
    vectors: u32,
    /// Stopping it removes the socket.
    server: Option<ServerThread>,
}

impl ServerSocket {
    /// The socket QEMU connects to.
    pub fn path(&self) -> &Path {
        &self.socket
    }
}

impl Drop for ServerSocket {
    fn drop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.stop();
            crate::cleanup::unregister_path(&self.socket);
        }
    }
}

/// What the VMs of a scenario share.
#[derive(Debug)]
pub enum Link {
    /// `ivshmem-doorbell` (MSI-X) on a v1 server, which zeroes a departed
    /// peer's state entry and rings vector 0 of the others.
    Doorbell(ServerSocket),
    /// The Siemens fork's `ivshmem` on a v2 server, which zeroes the entry
    /// and sends PEER_GONE (QEMU then raises vector 0).
    V2(ServerSocket),
    /// `ivshmem-plain` on a file with a descriptor page: no interrupts, so
    /// the kernel polls and needs its ID on the command line; the launcher
    /// zeroes a departed peer's entry.
    Plain(PlainRegion),
    /// No shared memory.
    None,
}

impl Link {
    /// Starts our server on `config.socket` in this process: a
    /// [`Link::Doorbell`] for [`Protocol::V1`], a [`Link::V2`] otherwise.
    /// The socket is removed when the link is dropped, and if the launcher
    /// is interrupted.
    pub fn serve(config: ServerConfig) -> Result<Link, ServerError> {
        let protocol = config.protocol;
        let socket = config.socket.clone();
        let server = Server::bind(config)?;
        crate::cleanup::register_path(&socket);
        let server = match server.spawn() {
            Ok(server) => server,
            Err(source) => {
                crate::cleanup::unregister_path(&socket);
                return Err(ServerError::Io {
                    what: "cannot start the server thread",
                    source,
                });
            }
        };
        let socket = ServerSocket {
            socket,
            vectors: server.layout().vectors,
            server: Some(server),
        };
        Ok(match protocol {
            Protocol::V1 => Link::Doorbell(socket),
            Protocol::V2 => Link::V2(socket),
        })
    }

    /// Opens the link `spec` names: a server socket must exist; a plain file
    /// is opened (it must carry a valid ivshmem-net descriptor page and, if
    /// `size` is given, have that size) or created with `size` (default
    /// [`DEFAULT_PLAIN_SIZE`]) and kept for other VMs.
    ///
    /// # Errors
    ///
    /// A [`UsageError`] for a missing socket or an unusable file.
    pub fn open(spec: &LinkSpec, size: Option<u64>) -> anyhow::Result<Link> {
        let external = |socket: &PathBuf| ServerSocket {
            socket: socket.clone(),
            vectors: DOORBELL_VECTORS,
            server: None,
        };
        match spec {
            LinkSpec::Doorbell(socket) | LinkSpec::V2(socket) if !socket.exists() => {
                let v2 = if matches!(spec, LinkSpec::V2(_)) {
                    " --protocol v2"
                } else {
                    ""
                };
                Err(UsageError(format!(
                    "--link {spec}: {} does not exist (start a server: cargo run -- server --socket {}{v2})",
                    socket.display(),
                    socket.display(),
                ))
                .into())
            }
            LinkSpec::Doorbell(socket) => Ok(Link::Doorbell(external(socket))),
            LinkSpec::V2(socket) => Ok(Link::V2(external(socket))),
            LinkSpec::Plain(path) if path.exists() => {
                let region = PlainRegion::open(path)
                    .map_err(|e| UsageError(format!("--link {spec}: {e:#}")))?;
                let layout = region.layout();
                if let Some(size) = size
                    && size != layout.shm_size
                {
                    return Err(UsageError(format!(
                        "--shm-size {}: {} already exists with {} bytes",
                        Size(size),
                        path.display(),
                        Size(layout.shm_size)
                    ))
                    .into());
                }
                if layout.protocol != PROTOCOL_NET || layout.max_peers() != 2 {
                    return Err(UsageError(format!(
                        "--link {spec}: not an ivshmem-net region ({layout})"
                    ))
                    .into());
                }
                Ok(Link::Plain(region))
            }
            LinkSpec::Plain(path) => {
                let mut region = PlainRegion::create_net(path, size.unwrap_or(DEFAULT_PLAIN_SIZE))?;
                region.persist();
                Ok(Link::Plain(region))
            }
            LinkSpec::None => Ok(Link::None),
        }
    }

    /// The device a VM attaches to this link with, if any.
    pub fn device(&self) -> Option<ShmDevice> {
        match self {
            Link::Doorbell(socket) => Some(ShmDevice::Doorbell {
                socket: socket.socket.clone(),
                vectors: socket.vectors,
            }),
            Link::V2(socket) => Some(ShmDevice::V2 {
                socket: socket.socket.clone(),
            }),
            Link::Plain(region) => Some(region.device()),
            Link::None => None,
        }
    }

    /// Sets what the kernel of peer `id` needs on this link if its apps use
    /// it: on a plain file its ID (`ivshmem-plain` has no ID register) and
    /// polling (nor has it interrupts). Other devices tell the kernel both.
    pub fn configure(&self, cmdline: &mut CommandLine, id: Option<u16>) {
        let uses_link = cmdline.apps.iter().any(|app| app.needs_link());
        if let (Link::Plain(_), true) = (self, uses_link) {
            cmdline.mode = Mode::Poll;
            if id.is_some() {
                cmdline.id = id;
            }
        }
    }

    /// Plays "peer gone" for peer `id` where nobody else does (a plain file:
    /// its state entry is zeroed); returns what was done.
    pub fn peer_gone(&self, id: u16) -> Option<String> {
        match self {
            Link::Plain(region) => {
                region.zero_state(id);
                Some(format!("state of peer {id} zeroed"))
            }
            Link::Doorbell(_) | Link::V2(_) | Link::None => None,
        }
    }

    /// How the host bridge joins this link ([`crate::bridge`]): a v1
    /// client of the doorbell server, or the plain file; `None` for a v2
    /// server (the bridge speaks v1 only) or no link.
    pub fn bridge_link(&self) -> Option<crate::bridge::BridgeLink> {
        match self {
            Link::Doorbell(socket) => {
                Some(crate::bridge::BridgeLink::Doorbell(socket.socket.clone()))
            }
            Link::Plain(region) => Some(crate::bridge::BridgeLink::Plain(
                region.path().to_path_buf(),
            )),
            Link::V2(_) | Link::None => None,
        }
    }

    /// Whether VMs on this link poll (`ivshmem-plain`).
    pub fn is_plain(&self) -> bool {
        matches!(self, Link::Plain(_))
    }
}

impl fmt::Display for Link {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Link::Doorbell(socket) | Link::V2(socket) => {
                let (device, protocol) = match self {
                    Link::V2(_) => ("ivshmem", "v2"),
                    _ => ("ivshmem-doorbell", "v1"),
                };
                match &socket.server {
                    Some(server) => write!(
                        f,
                        "{device} on our {protocol} server at {} ({} vectors): {}",
                        socket.socket.display(),
                        server.layout().vectors,
                        server.layout()
                    ),
                    None => write!(f, "{device} on {}", socket.socket.display()),
                }
            }
            Link::Plain(region) => write!(
                f,
                "ivshmem-plain on {} (polling, no server): {}",
                region.path().display(),
                region.layout()
            ),
            Link::None => f.write_str("no shared memory"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use abi::cmdline::App;

    #[test]
    fn link_specs_parse() {
        assert_eq!("none".parse(), Ok(LinkSpec::None));
        assert_eq!(
            "doorbell:/tmp/s.sock".parse(),
            Ok(LinkSpec::Doorbell("/tmp/s.sock".into()))
        );
        assert_eq!("v2:s".parse(), Ok(LinkSpec::V2("s".into())));
        assert_eq!(
            "plain:/dev/shm/x:y".parse(),
            Ok(LinkSpec::Plain("/dev/shm/x:y".into()))
        );
        for bad in ["", "plain:", "doorbell", "tcp:1.2.3.4", "None"] {
            assert!(bad.parse::<LinkSpec>().is_err(), "{bad:?}");
        }
        assert_eq!(LinkSpec::Plain("/a".into()).to_string(), "plain:/a");
    }

    #[test]
    fn a_served_link_knows_its_device_and_leaves_peer_gone_to_the_server() {
        let dir = tempfile::tempdir().unwrap();
        let socket = dir.path().join("s.sock");
        let link = Link::serve(ServerConfig::new(&socket)).unwrap();
        assert_eq!(
            link.device(),
            Some(ShmDevice::Doorbell {
                socket: socket.clone(),
                vectors: 2
            })
        );
        assert!(link.to_string().contains("on our v1 server"), "{link}");
        let mut line = CommandLine {
            apps: vec![App::Link],
            ..CommandLine::default()
        };
        link.configure(&mut line, Some(1));
        assert_eq!(line.to_string(), "app=link", "the device tells the ID");
        assert_eq!(link.peer_gone(1), None);
        assert_eq!(
            link.bridge_link(),
            Some(crate::bridge::BridgeLink::Doorbell(socket.clone()))
        );
        assert!(socket.exists());
        drop(link);
        assert!(!socket.exists(), "the server removes its socket");
    }

    #[test]
    fn a_plain_link_polls_and_plays_peer_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("shm");
        let spec = LinkSpec::Plain(path.clone());
        let link = Link::open(&spec, Some(1 << 16)).unwrap();
        let Link::Plain(region) = &link else {
            panic!("{link:?}")
        };
        let mut line = CommandLine::default();
        link.configure(&mut line, Some(1));
        assert_eq!(line, CommandLine::default(), "the inventory needs no link");
        line.apps = vec![App::Link];
        link.configure(&mut line, Some(1));
        assert_eq!(line.to_string(), "app=link mode=poll id=1");
        region
            .mapping()
            .store_u32(region.layout().state_offset(1), 4);
        assert_eq!(link.peer_gone(1).as_deref(), Some("state of peer 1 zeroed"));
        assert_eq!(region.state(1), 0);
        drop(link);
        assert!(path.exists(), "a file made for --link is kept");
        // Opened again: another size than asked for is refused.
        let err = Link::open(&spec, Some(1 << 20)).unwrap_err();
        assert!(err.to_string().contains("already exists with 64K"), "{err}");
        assert!(matches!(Link::open(&spec, None), Ok(Link::Plain(_))));
        let missing = LinkSpec::Doorbell(dir.path().join("none.sock"));
        let err = Link::open(&missing, None).unwrap_err();
        assert!(err.downcast_ref::<UsageError>().is_some(), "{err}");
    }
}
