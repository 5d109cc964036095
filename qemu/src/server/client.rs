//! A minimal client for both server protocols, playing QEMU's part: for
//! tests and for poking at a running server.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::Duration;

use super::sys::recv_with_fd;
use super::wire::{V2_HEADER_LEN, V2Message};

/// A connection to an ivshmem server.
#[derive(Debug)]
pub struct Client {
    stream: UnixStream,
}

impl Client {
    /// Connects; receives time out after 5 s (see [`Client::set_timeout`]).
    pub fn connect(path: &Path) -> io::Result<Client> {
        let stream = UnixStream::connect(path)?;
        stream.set_read_timeout(Some(Duration::from_secs(5)))?;
        Ok(Client { stream })
    }

    /// Sets the receive timeout (`None` blocks for ever).
    pub fn set_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.stream.set_read_timeout(timeout)
    }

    /// The socket (e.g. to check for EOF or to send junk).
    pub fn stream(&self) -> &UnixStream {
        &self.stream
    }

    /// Receives one v1 message: the `i64` and its fd, if any. A closed
    /// connection is `UnexpectedEof`, a timeout `WouldBlock`/`TimedOut`.
    pub fn recv_v1(&self) -> io::Result<(i64, Option<OwnedFd>)> {
        let mut buf = [0u8; 8];
        let fd = recv_with_fd(&self.stream, &mut buf)?;
        Ok((i64::from_le_bytes(buf), fd))
    }

    /// Receives one v2 message and its fd, if any.
    pub fn recv_v2(&self) -> io::Result<(V2Message, Option<OwnedFd>)> {
        let mut header = [0u8; V2_HEADER_LEN];
        let fd = recv_with_fd(&self.stream, &mut header)?;
        let invalid = |e: super::wire::V2ParseError| io::Error::new(io::ErrorKind::InvalidData, e);
        let (_, len) = V2Message::parse_header(&header).map_err(invalid)?;
        let len = len as usize;
        if !(V2_HEADER_LEN..=4096).contains(&len) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("v2 message length {len}"),
            ));
        }
        let mut message = vec![0u8; len];
        message[..V2_HEADER_LEN].copy_from_slice(&header);
        recv_with_fd(&self.stream, &mut message[V2_HEADER_LEN..])?;
        Ok((V2Message::parse(&message).map_err(invalid)?, fd))
    }
}
