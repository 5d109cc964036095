//! The few system calls the server needs: sending and receiving one message
//! with an optional fd, memfds and eventfds.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

/// Sends `bytes` (whole) with an optional fd, without blocking and without
/// SIGPIPE. A peer that cannot take a few dozen bytes right now is treated as
/// broken (`WouldBlock` is returned as an error).
pub fn send_with_fd(
    stream: &UnixStream,
    bytes: &[u8],
    fd: Option<BorrowedFd<'_>>,
) -> io::Result<()> {
    let flags = MsgFlags::MSG_NOSIGNAL | MsgFlags::MSG_DONTWAIT;
    let raw: [RawFd; 1] = [fd.map_or(-1, |f| f.as_raw_fd())];
    let rights = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if fd.is_some() { &rights } else { &[] };
    let mut sent = 0;
    while sent < bytes.len() {
        let iov = [IoSlice::new(&bytes[sent..])];
        let this_cmsgs = if sent == 0 { cmsgs } else { &[] };
        match sendmsg::<()>(stream.as_raw_fd(), &iov, this_cmsgs, flags, None) {
            Ok(n) => sent += n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        }
    }
    Ok(())
}

/// Receives exactly `buf.len()` bytes (blocking, honouring the stream's read
/// timeout) and the fd that came with the first of them, if any. EOF before
/// the first byte is `UnexpectedEof`.
pub fn recv_with_fd(stream: &UnixStream, buf: &mut [u8]) -> io::Result<Option<OwnedFd>> {
    let mut got = 0;
    let mut fd = None;
    while got < buf.len() {
        let mut space = nix::cmsg_space!([RawFd; 4]);
        let mut iov = [IoSliceMut::new(&mut buf[got..])];
        let msg = match recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut space),
            MsgFlags::MSG_CMSG_CLOEXEC,
        ) {
            Ok(msg) => msg,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(io::Error::from(e)),
        };
        if msg.bytes == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the server",
            ));
        }
        for cmsg in msg.cmsgs().map_err(io::Error::from)? {
            if let ControlMessageOwned::ScmRights(fds) = cmsg {
                for raw in fds {
                    // SAFETY: the kernel just installed `raw` in our fd table
                    // for this message; nothing else owns it.
                    let owned = unsafe { OwnedFd::from_raw_fd(raw) };
                    if fd.is_none() {
                        fd = Some(owned);
                    }
                }
            }
        }
        got += msg.bytes;
    }
    Ok(fd)
}
