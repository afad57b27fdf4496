//! The tap channel (`-t NAME`): Ethernet frames to and from a Linux tap
//! interface, one frame per `read()` and per `write()`.
//!
//! The tap is opened through `/dev/net/tun` (the `tun-tap` crate) as
//! `IFF_TAP | IFF_NO_PI`: no packet-information header, so a read gives
//! exactly one frame from the destination MAC on. An existing tap (`ip tuntap
//! add NAME mode tap`) is attached to; a missing one is created and vanishes
//! when we exit. The descriptor is non-blocking and lives in the event loop.
//!
//! Errors are sorted by what they mean for the channel. A tap whose
//! interface was deleted answers every read and write with `EBADFD` (and
//! epoll reports `EPOLLERR`): that is fatal, with a message saying so. A
//! write refused for one frame (`EIO` while the interface is down, `EINVAL`
//! for a runt from the network, no memory) loses that frame only.

use std::fmt;
use std::io;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tun_tap::{Iface, Mode};

use super::batch::{ReadOne, RxPool};
use super::{Channel, Datagram, Rx, SendReport, MAX_PAYLOAD};

/// A tap interface as a channel.
#[derive(Debug)]
pub struct TapChannel {
    iface: Iface,
    label: String,
    warned_oversize: bool,
}

/// The tap's interface was deleted: every read and write fails from now on.
#[derive(Debug)]
pub struct InterfaceGone {
    source: io::Error,
}

impl fmt::Display for InterfaceGone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the interface is gone (deleted with 'ip link del'?)")
    }
}

impl std::error::Error for InterfaceGone {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The tap could not be opened for lack of privilege: says what is missing.
#[derive(Debug)]
pub struct NotPermitted {
    name: String,
    source: io::Error,
}

impl fmt::Display for NotPermitted {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let user = crate::sys::current_account().map_or_else(|| "USER".to_owned(), |a| a.name);
        f.write_str("not permitted: ")?;
        if self.source.raw_os_error() == Some(libc::EACCES) {
            // open("/dev/net/tun") refused: the device node's mode.
            f.write_str("/dev/net/tun is not open to this user (Debian makes it mode 0666), and ")?;
        }
        write!(
            f,
            "opening a tap needs root or CAP_NET_ADMIN, or a tap made beforehand for this user \
             ('ip tuntap add {} mode tap user {user}')",
            self.name
        )
    }
}

impl std::error::Error for NotPermitted {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

impl TapChannel {
    /// Opens (or creates) the tap `name`, non-blocking, without packet
    /// information.
    pub fn open(name: &str) -> io::Result<Self> {
        let iface = Iface::without_packet_info(name, Mode::Tap).map_err(|e| match e.raw_os_error() {
            Some(libc::EPERM | libc::EACCES) => {
                io::Error::new(e.kind(), NotPermitted { name: name.to_owned(), source: e })
            }
            _ => e,
        })?;
        iface.set_non_blocking()?;
        let label = format!("tap {}", iface.name());
        Ok(TapChannel { iface, label, warned_oversize: false })
    }

    /// Turns an error that ends the channel into one that says why.
    fn fatal(&self, e: io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                io::Error::new(e.kind(), InterfaceGone { source: e })
            }
            _ => e,
        }
    }

    fn read_one(&mut self, buf: &mut [u8]) -> io::Result<ReadOne> {
        loop {
            return match self.iface.recv(buf) {
                // The kernel reports a frame's full length even when it
                // copied only what fit; such a frame cannot cross any of our
                // channels anyway. The pool marks it cut; the node counts it.
                Ok(n) if n > buf.len() => {
                    if !self.warned_oversize {
                        self.warned_oversize = true;
                        log::warn!(
                            "{}: dropped a {n}-byte frame, larger than the largest datagram ({MAX_PAYLOAD}); \
                             lower the interface MTU",
                            self.label
                        );
                    }
                    Ok(ReadOne::Got { len: n, from: None })
                }
                // A tap never reads 0 bytes for a frame; treat it as nothing.
                Ok(0) => Ok(ReadOne::Empty),
                Ok(len) => Ok(ReadOne::Got { len, from: None }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOne::Empty),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(self.fatal(e)),
            };
        }
    }
}

/// Whether a write error loses only that frame.
fn transient_write_error(e: &io::Error) -> bool {
    matches!(e.kind(), io::ErrorKind::WouldBlock)
        || matches!(e.raw_os_error(), Some(libc::EIO | libc::EINVAL | libc::ENOMEM | libc::ENOBUFS | libc::EMSGSIZE))
}

impl Channel for TapChannel {
    fn name(&self) -> &str {
        &self.label
    }

    fn kind(&self) -> &'static str {
        "tap"
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        // Writes to a tap do not block (the kernel queues or drops), so only
        // readability is asked for; EPOLLERR comes regardless, and that is
        // how a deleted interface shows.
        registry.register(&mut SourceFd(&self.iface.as_raw_fd()), token, Interest::READABLE)
    }

    /// One `read` per frame, up to a batch.
    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx> {
        pool.fill_each(|buf| self.read_one(buf))
    }

    /// One `write` per frame.
    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        for d in batch {
            loop {
                match self.iface.send(&arena[d.range.clone()]) {
                    Ok(_) => report.sent += 1,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) if e.raw_os_error() == Some(libc::EMSGSIZE) => report.too_large += 1,
                    Err(e) if transient_write_error(&e) => report.failed += 1,
                    Err(e) => return Err(self.fatal(e)),
                }
                break;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn write_errors_are_sorted() {
        for errno in [libc::EAGAIN, libc::EIO, libc::EINVAL, libc::ENOMEM, libc::ENOBUFS] {
            assert!(transient_write_error(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
        for errno in [libc::EBADFD, libc::EBADF, libc::ENODEV, libc::EFAULT] {
            assert!(!transient_write_error(&io::Error::from_raw_os_error(errno)), "errno {errno}");
        }
    }
}
