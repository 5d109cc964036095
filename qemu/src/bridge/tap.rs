//! A Linux TAP device: Ethernet frames in and out of the host's network
//! stack, through `/dev/net/tun` with `IFF_TAP | IFF_NO_PI` (no packet-info
//! header, no offloads: the kernel hands us complete frames with their
//! checksums filled in, at most MTU + 14 bytes).
//!
//! [`Tap::open`] creates the interface if it does not exist, brings it up
//! and sets its MTU, all with ioctls on an `AF_INET` datagram socket (no
//! `ip` tool); such a TAP is not persistent and disappears when its fd is
//! closed, including when the process is killed. An interface that exists
//! already must be a free TAP device (e.g. made with `ip tuntap add mode tap
//! NAME`, persistent): we attach to it and leave its configuration and its
//! existence alone.
//!
//! Everything happens in the network namespace of the calling **thread**
//! (the one `/dev/net/tun` is opened from), so a test thread that entered a
//! namespace of its own gets its TAP there.

use std::ffi::c_int;
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Write};
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::OpenOptionsExt;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socket};

/// The clone device of the TUN/TAP driver.
pub const TUN_DEVICE: &str = "/dev/net/tun";
/// The smallest MTU Linux accepts for an Ethernet device (IPv4's minimum).
pub const MIN_MTU: u32 = 68;
/// Room for the longest frame a TAP can hand us: a 64 KiB MTU, the Ethernet
/// header and a VLAN tag.
pub const MAX_FRAME: usize = 65535 + 14 + 4;

/// Why a TAP device could not be opened or configured.
#[derive(Debug, thiserror::Error)]
pub enum TapError {
    /// The name cannot be an interface name.
    #[error(
        "{0:?} is not a valid interface name (1 to 15 characters, none of '/', ':' or whitespace)"
    )]
    BadName(String),
    /// No TUN/TAP driver.
    #[error(
        "{TUN_DEVICE} is missing: the kernel's TUN/TAP driver is not available (load it with `modprobe tun`, or create the device node with `mknod {TUN_DEVICE} c 10 200`)"
    )]
    NoTunDevice,
    /// Not allowed.
    #[error(
        "permission denied to {what}: the bridge needs CAP_NET_ADMIN (run it as root, e.g. with sudo), or a TAP made for your user beforehand (ip tuntap add mode tap user $USER NAME)"
    )]
    Permission {
        /// What was refused.
        what: String,
    },
    /// A TAP of that name is attached to another process.
    #[error("{0} is in use: it is a TAP device that another process has attached")]
    Busy(String),
    /// Something that is not a free TAP has that name.
    #[error(
        "the interface {0} exists and is not a free TAP device (a TUN device or another kind of interface has the name); choose another --tap"
    )]
    NotTap(String),
    /// An MTU Linux or the link refuses.
    #[error("MTU {mtu} for {name} refused: {source}")]
    Mtu {
        /// The interface.
        name: String,
        /// The MTU asked for.
        mtu: u32,
        /// The OS error.
        source: io::Error,
    },
    /// Another system call failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        source: io::Error,
    },
}

/// An open TAP device.
#[derive(Debug)]
pub struct Tap {
    file: File,
    name: String,
    created: bool,
}

impl Tap {
    /// Attaches to the TAP device `name`, creating it (up, with `mtu`) if
    /// no interface has that name. An existing TAP keeps its configuration:
    /// `mtu` is not applied to it.
    ///
    /// # Errors
    ///
    /// See [`TapError`].
    pub fn open(name: &str, mtu: u32) -> Result<Tap, TapError> {
        check_name(name)?;
        let existed = interface_index(name)
            .map_err(|source| TapError::Io {
                what: format!("cannot look up interface {name}"),
                source,
            })?
            .is_some();
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(TUN_DEVICE)
            .map_err(|source| match source.kind() {
                io::ErrorKind::NotFound => TapError::NoTunDevice,
                io::ErrorKind::PermissionDenied => TapError::Permission {
                    what: format!("open {TUN_DEVICE}"),
                },
                _ => TapError::Io {
                    what: format!("cannot open {TUN_DEVICE}"),
                    source,
                },
            })?;
        let mut request = interface_request(name);
        request.ifr_ifru.ifru_flags = (libc::IFF_TAP | libc::IFF_NO_PI) as libc::c_short;
        if let Err(source) = ioctl(file.as_fd(), libc::TUNSETIFF, &mut request) {
            return Err(match source.raw_os_error() {
                Some(libc::EPERM | libc::EACCES) => TapError::Permission {
                    what: if existed {
                        format!("attach to the TAP device {name}")
                    } else {
                        format!("create the TAP device {name}")
                    },
                },
                Some(libc::EBUSY) => TapError::Busy(name.to_string()),
                Some(libc::EINVAL) if existed => TapError::NotTap(name.to_string()),
                _ => TapError::Io {
                    what: format!("TUNSETIFF {name}"),
                    source,
                },
            });
        }
        let tap = Tap {
            file,
            name: name.to_string(),
            created: !existed,
        };
        if tap.created {
            // Dropping `tap` on an error closes the fd, which removes it.
            set_mtu(name, mtu)?;
            set_up(name)?;
        }
        Ok(tap)
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Whether we created the interface (it goes away with us) rather than
    /// attached to one that existed.
    pub fn created(&self) -> bool {
        self.created
    }

    /// The interface's MTU.
    ///
    /// # Errors
    ///
    /// The interface is gone.
    pub fn mtu(&self) -> io::Result<u32> {
        mtu(&self.name)
    }

    /// Sets the interface's carrier (`TUNSETCARRIER`, Linux 5.0 and later):
    /// the bridge makes it follow the link, so that Linux neither sends into
    /// a link that is down nor keeps neighbour entries across a peer's
    /// restart (a rebooted VM comes back with a new MAC; losing the carrier
    /// flushes the ARP cache).
    ///
    /// # Errors
    ///
    /// A kernel without the ioctl.
    pub fn set_carrier(&self, on: bool) -> io::Result<()> {
        let carrier = c_int::from(on);
        // SAFETY: TUNSETCARRIER reads one `int` through its pointer
        // argument, which points at `carrier`, alive for the call; the fd is
        // our open TAP.
        let result = unsafe {
            libc::ioctl(
                self.file.as_raw_fd(),
                libc::TUNSETCARRIER,
                std::ptr::from_ref(&carrier),
            )
        };
        if result < 0 {
            Err(io::Error::last_os_error())
        } else {
            Ok(())
        }
    }

    /// Reads one frame into `buffer` (at least [`MAX_FRAME`] bytes), or
    /// `None` if none is waiting.
    ///
    /// # Errors
    ///
    /// What `read` on the TAP fd returns (e.g. `EBADFD` after the interface
    /// was deleted).
    pub fn read(&self, buffer: &mut [u8]) -> io::Result<Option<usize>> {
        loop {
            match (&self.file).read(buffer) {
                Ok(length) => return Ok(Some(length)),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(None),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Hands one frame to the host's stack.
    ///
    /// # Errors
    ///
    /// `EIO` while the interface is down, `EINVAL` for a malformed or
    /// oversized frame, and whatever else `write` returns.
    pub fn write(&self, frame: &[u8]) -> io::Result<()> {
        loop {
            match (&self.file).write(frame) {
                Ok(_) => return Ok(()),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            }
        }
    }
}

impl AsFd for Tap {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}

fn check_name(name: &str) -> Result<(), TapError> {
    let valid = !name.is_empty()
        && name.len() < libc::IFNAMSIZ
        && name != "."
        && name != ".."
        && !name
            .chars()
            .any(|c| c == '/' || c == ':' || c.is_whitespace() || c == '\0');
    if valid {
        Ok(())
    } else {
        Err(TapError::BadName(name.to_string()))
    }
}

/// An `ifreq` naming the interface (the name was checked to fit).
fn interface_request(name: &str) -> libc::ifreq {
    // SAFETY: `ifreq` is plain old data (a name array and a union of
    // integers, socket addresses and a pointer); all zeroes is a valid value.
    let mut request: libc::ifreq = unsafe { std::mem::zeroed() };
    for (slot, byte) in request.ifr_name.iter_mut().zip(name.bytes()) {
        *slot = byte as libc::c_char;
    }
    request
}

/// One interface ioctl taking a `struct ifreq *`.
fn ioctl(fd: BorrowedFd<'_>, request: libc::Ioctl, argument: &mut libc::ifreq) -> io::Result<()> {
    // SAFETY: every request passed here (TUNSETIFF, SIOCGIFINDEX,
    // SIOC[GS]IFFLAGS, SIOC[GS]IFMTU, SIOCSIFADDR, SIOCSIFNETMASK) takes a
    // pointer to one `struct ifreq`, which `argument` is, valid and
    // exclusively borrowed for the call; `fd` is open.
    let result = unsafe { libc::ioctl(fd.as_raw_fd(), request, std::ptr::from_mut(argument)) };
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

/// A socket for interface ioctls, in the calling thread's namespace.
fn control_socket() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// The ifindex of `name` in the calling thread's namespace, if it exists.
///
/// # Errors
///
/// A failure other than "no such device".
pub fn interface_index(name: &str) -> io::Result<Option<u32>> {
    let socket = control_socket()?;
    let mut request = interface_request(name);
    match ioctl(socket.as_fd(), libc::SIOCGIFINDEX, &mut request) {
        // SAFETY: SIOCGIFINDEX succeeded and filled in `ifru_ifindex`.
        Ok(()) => Ok(Some(unsafe { request.ifr_ifru.ifru_ifindex } as u32)),
        Err(e) if e.raw_os_error() == Some(libc::ENODEV) => Ok(None),
        Err(e) => Err(e),
    }
}

fn io_error(what: String) -> impl FnOnce(io::Error) -> TapError {
    move |source| TapError::Io { what, source }
}

fn permission_or(what: String, source: io::Error) -> TapError {
    match source.raw_os_error() {
        Some(libc::EPERM | libc::EACCES) => TapError::Permission { what },
        _ => TapError::Io {
            what: format!("cannot {what}"),
            source,
        },
    }
}

/// The MTU of `name`.
///
/// # Errors
///
/// No such interface.
pub fn mtu(name: &str) -> io::Result<u32> {
    let socket = control_socket()?;
    let mut request = interface_request(name);
    ioctl(socket.as_fd(), libc::SIOCGIFMTU, &mut request)?;
    // SAFETY: SIOCGIFMTU succeeded and filled in `ifru_mtu`.
    Ok(unsafe { request.ifr_ifru.ifru_mtu } as u32)
}

/// Whether `name` is operationally up (`IFF_RUNNING`: up and with a
/// carrier; Linux updates it shortly after a carrier change).
///
/// # Errors
///
/// No such interface.
pub fn running(name: &str) -> io::Result<bool> {
    let socket = control_socket()?;
    let mut request = interface_request(name);
    ioctl(socket.as_fd(), libc::SIOCGIFFLAGS, &mut request)?;
    // SAFETY: SIOCGIFFLAGS succeeded and filled in `ifru_flags`.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    Ok(c_int::from(flags) & libc::IFF_RUNNING != 0)
}

/// Sets the MTU of `name`.
///
/// # Errors
///
/// [`TapError::Mtu`] if Linux refuses the value, [`TapError::Permission`].
pub fn set_mtu(name: &str, mtu: u32) -> Result<(), TapError> {
    let socket = control_socket().map_err(io_error("cannot open a control socket".into()))?;
    let mut request = interface_request(name);
    request.ifr_ifru.ifru_mtu = c_int::try_from(mtu).unwrap_or(c_int::MAX);
    ioctl(socket.as_fd(), libc::SIOCSIFMTU, &mut request).map_err(|source| {
        match source.raw_os_error() {
            Some(libc::EINVAL) => TapError::Mtu {
                name: name.to_string(),
                mtu,
                source,
            },
            _ => permission_or(format!("set the MTU of {name}"), source),
        }
    })
}

/// Brings `name` up (`IFF_UP`), keeping its other flags.
///
/// # Errors
///
/// [`TapError::Permission`] and system call failures.
pub fn set_up(name: &str) -> Result<(), TapError> {
    let socket = control_socket().map_err(io_error("cannot open a control socket".into()))?;
    let mut request = interface_request(name);
    ioctl(socket.as_fd(), libc::SIOCGIFFLAGS, &mut request)
        .map_err(io_error(format!("cannot read the flags of {name}")))?;
    // SAFETY: SIOCGIFFLAGS succeeded and filled in `ifru_flags`.
    let flags = unsafe { request.ifr_ifru.ifru_flags };
    request.ifr_ifru.ifru_flags = flags | libc::IFF_UP as libc::c_short;
    ioctl(socket.as_fd(), libc::SIOCSIFFLAGS, &mut request)
        .map_err(|source| permission_or(format!("bring {name} up"), source))
}

/// Gives `name` the IPv4 address `address/prefix` (for tests and recipes
/// that must not depend on the `ip` tool).
///
/// # Errors
///
/// [`TapError::Permission`] and system call failures.
pub fn set_ipv4(name: &str, address: Ipv4Addr, prefix: u8) -> Result<(), TapError> {
    let socket = control_socket().map_err(io_error("cannot open a control socket".into()))?;
    let netmask = u32::MAX
        .checked_shl(32 - u32::from(prefix.min(32)))
        .unwrap_or(0);
    for (request_code, value, what) in [
        (libc::SIOCSIFADDR, address, "address"),
        (libc::SIOCSIFNETMASK, Ipv4Addr::from(netmask), "netmask"),
    ] {
        let mut request = interface_request(name);
        let socket_address = libc::sockaddr_in {
            sin_family: libc::AF_INET as libc::sa_family_t,
            sin_port: 0,
            sin_addr: libc::in_addr {
                s_addr: u32::from(value).to_be(),
            },
            sin_zero: [0; 8],
        };
        // SAFETY: `sockaddr_in` is 16 bytes, the size of the generic
        // `sockaddr` it is read as (the kernel reads it as `sockaddr_in` for
        // AF_INET), and both are plain old data.
        request.ifr_ifru.ifru_addr =
            unsafe { std::mem::transmute::<libc::sockaddr_in, libc::sockaddr>(socket_address) };
        ioctl(socket.as_fd(), request_code, &mut request)
            .map_err(|source| permission_or(format!("set the {what} of {name}"), source))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        assert!(check_name("tap0").is_ok());
        assert!(check_name("a-very-long-nam").is_ok());
        for bad in ["", "a-very-long-name", "a/b", "a b", "a:1", ".", ".."] {
            assert!(
                matches!(check_name(bad), Err(TapError::BadName(_))),
                "{bad}"
            );
        }
    }
}
