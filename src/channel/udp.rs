//! The unicast UDP channel: one socket serving every uplink and downlink.
//!
//! By default the socket is dual-stack (`[::]:port`, IPv6-only off) and IPv4
//! peers appear as mapped addresses; we fold them to plain IPv4 on receive
//! and map them back on send, so the rest of the program sees one form.
//! Reads are one `recvmmsg` per batch and sends one `sendmmsg` per batch, with
//! runs of equal datagrams to one peer segmented (`UDP_SEGMENT`).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::{is_icmp_error, ReadOne, RxPool};
use super::{Channel, Datagram, Rx, SendReport};
use crate::node::decl::canonical;
use crate::sys::Mmsg;

/// Socket buffer size we ask for: room for bursts of a few thousand frames.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP socket of the daemon, with its batch headers for `sendmmsg`.
#[derive(Debug)]
pub struct UdpChannel {
    sock: mio::net::UdpSocket,
    dual_stack: bool,
    mmsg: Mmsg,
    name: String,
}

/// Sets large socket buffers, forcing past the sysctl limits when we may.
pub fn size_buffers(sock: &Socket, bytes: usize) {
    if crate::sys::set_buffer_force(sock, libc::SO_RCVBUFFORCE, bytes).is_err() {
        let _ = sock.set_recv_buffer_size(bytes);
    }
    if crate::sys::set_buffer_force(sock, libc::SO_SNDBUFFORCE, bytes).is_err() {
        let _ = sock.set_send_buffer_size(bytes);
    }
}

impl UdpChannel {
    /// Binds the daemon's port, dual-stack unless `ipv4_only`; sends go out
    /// in batches of up to `batch` system-call headers.
    pub fn bind(port: u16, ipv4_only: bool, batch: usize) -> io::Result<Self> {
        let (domain, addr) = if ipv4_only {
            (Domain::IPV4, SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), port))
        } else {
            (Domain::IPV6, SocketAddr::new(IpAddr::V6(Ipv6Addr::UNSPECIFIED), port))
        };
        let sock = Socket::new(domain, Type::DGRAM, Some(Protocol::UDP))?;
        if !ipv4_only {
            sock.set_only_v6(false)?;
        }
        sock.set_nonblocking(true)?;
        size_buffers(&sock, SOCKET_BUFFER);
        sock.bind(&addr.into())?;
        // Runs of datagrams from one peer arrive coalesced, one pass through
        // the stack for many; older kernels without it deliver one by one.
        if let Err(e) = crate::sys::enable_udp_gro(&sock) {
            log::debug!("UDP_GRO not available: {e}");
        }
        let sock = mio::net::UdpSocket::from_std(sock.into());
        let name = format!("udp {}", sock.local_addr()?);
        Ok(UdpChannel { sock, dual_stack: !ipv4_only, mmsg: Mmsg::new(batch.clamp(1, MAX_SEND_BATCH)), name })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// `to` as this socket sends to it: IPv4 peers as mapped addresses on a
    /// dual-stack socket.
    pub fn wire_addr(&self, to: SocketAddr) -> SocketAddr {
        wire_addr(self.dual_stack, to)
    }
}

/// Most headers in one `sendmmsg` (the kernel's `UIO_MAXIOV`).
pub const MAX_SEND_BATCH: usize = 1024;

fn wire_addr(dual_stack: bool, to: SocketAddr) -> SocketAddr {
    match (dual_stack, to.ip()) {
        (true, IpAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), to.port()),
        _ => to,
    }
}

/// Receives one datagram without blocking. Interruptions and ICMP errors
/// queued on the socket (port unreachable after a send) are not fatal and
/// are passed over.
pub fn recv_datagram(sock: &mio::net::UdpSocket, buf: &mut [u8]) -> io::Result<ReadOne> {
    loop {
        return match sock.recv_from(buf) {
            Ok((len, from)) => Ok(ReadOne::Got { len, from: Some(from) }),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(ReadOne::Empty),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if is_icmp_error(&e) => continue,
            Err(e) => Err(e),
        };
    }
}

/// What a failed send of one datagram means for it: too large, or lost (a
/// full buffer, an unreachable network, a refused port, a v6 destination on
/// a v4 socket). The channel itself is fine either way.
pub fn count_send_error(e: &io::Error, report: &mut SendReport) {
    if e.raw_os_error() == Some(libc::EMSGSIZE) {
        report.too_large += 1;
    } else {
        report.failed += 1;
    }
}

impl Channel for UdpChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "udp"
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.sock, token, Interest::READABLE)
    }

    /// One `recvmmsg`; sources in canonical form (IPv4 unmapped).
    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx> {
        let count = pool.recv_from(&self.sock, canonical)?;
        Ok(Rx::Batch { count, drained: count < pool.slots() })
    }

    /// As few `sendmmsg` calls as it takes, runs to one peer segmented.
    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport> {
        let dual = self.dual_stack;
        let (sent, failed) = self.mmsg.send(&self.sock, arena, batch, |a| wire_addr(dual, a))?;
        Ok(SendReport { sent, failed, too_large: 0 })
    }
}
