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

use std::io;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use mio::unix::SourceFd;
use mio::{Interest, Registry, Token};
use tun_tap::{Iface, Mode};

use super::{Channel, Rx, Tx};

/// A tap interface as a channel.
#[derive(Debug)]
pub struct TapChannel {
    iface: Iface,
    label: String,
    oversize: u64,
}

impl TapChannel {
    /// Opens (or creates) the tap `name`, non-blocking, without packet
    /// information.
    pub fn open(name: &str) -> io::Result<Self> {
        let iface = Iface::without_packet_info(name, Mode::Tap)?;
        iface.set_non_blocking()?;
        let label = format!("tap {}", iface.name());
        Ok(TapChannel { iface, label, oversize: 0 })
    }

    /// The interface name the kernel gave (the one asked for, unless it had
    /// a `%d` pattern).
    pub fn ifname(&self) -> &str {
        self.iface.name()
    }

    /// Frames read that were too large for the buffer, and dropped.
    pub fn oversize_drops(&self) -> u64 {
        self.oversize
    }

    /// Turns an error that ends the channel into one that says why.
    fn fatal(&self, e: io::Error) -> io::Error {
        match e.raw_os_error() {
            Some(libc::EBADFD) | Some(libc::ENODEV) | Some(libc::ENXIO) => {
                io::Error::new(e.kind(), format!("the interface is gone (deleted with 'ip link del'?): {e}"))
            }
            _ => e,
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

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        // Writes to a tap do not block (the kernel queues or drops), so only
        // readability is asked for; EPOLLERR comes regardless, and that is
        // how a deleted interface shows.
        registry.register(&mut SourceFd(&self.iface.as_raw_fd()), token, Interest::READABLE)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Rx> {
        loop {
            return match self.iface.recv(buf) {
                // The kernel reports a frame's full length even when it
                // copied only what fit; such a frame cannot cross any of our
                // channels anyway.
                Ok(n) if n > buf.len() => {
                    self.oversize += 1;
                    if self.oversize == 1 {
                        log::warn!(
                            "{}: dropped a {n}-byte frame, larger than the largest datagram; lower the interface MTU",
                            self.label
                        );
                    } else {
                        log::trace!("{}: dropped a {n}-byte frame (too large)", self.label);
                    }
                    continue;
                }
                // A tap never reads 0 bytes for a frame; treat it as nothing.
                Ok(0) => Ok(Rx::Idle),
                Ok(len) => Ok(Rx::Packet { len, from: None }),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(Rx::Idle),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(self.fatal(e)),
            };
        }
    }

    fn send(&mut self, _to: Option<SocketAddr>, payload: &[u8]) -> io::Result<Tx> {
        loop {
            return match self.iface.send(payload) {
                Ok(_) => Ok(Tx::Sent),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if transient_write_error(&e) => Ok(Tx::Busy),
                Err(e) => Err(self.fatal(e)),
            };
        }
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
