//! The unicast UDP channel: one socket serving every uplink and downlink.
//!
//! By default the socket is dual-stack (`[::]:port`, IPv6-only off) and IPv4
//! peers appear as mapped addresses; we fold them to plain IPv4 on receive
//! and map them back on send, so the rest of the program sees one form.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::{Channel, Rx, Tx};
use crate::remote::canonical;

/// Socket buffer size we ask for: room for bursts of a few thousand frames.
pub const SOCKET_BUFFER: usize = 4 << 20;

/// The UDP socket of the daemon.
#[derive(Debug)]
pub struct UdpChannel {
    sock: mio::net::UdpSocket,
    dual_stack: bool,
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
    /// Binds the daemon's port, dual-stack unless `ipv4_only`.
    pub fn bind(port: u16, ipv4_only: bool) -> io::Result<Self> {
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
        Ok(UdpChannel { sock: mio::net::UdpSocket::from_std(sock.into()), dual_stack: !ipv4_only })
    }

    /// The bound address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.sock.local_addr()
    }

    /// The socket, for batched I/O.
    pub fn socket(&self) -> &mio::net::UdpSocket {
        &self.sock
    }

    /// `to` as this socket sends to it: IPv4 peers as mapped addresses on a
    /// dual-stack socket.
    pub fn wire_addr(&self, to: SocketAddr) -> SocketAddr {
        match (self.dual_stack, to.ip()) {
            (true, IpAddr::V4(v4)) => SocketAddr::new(IpAddr::V6(v4.to_ipv6_mapped()), to.port()),
            _ => to,
        }
    }
}

/// Receives one datagram without blocking: `None` when there is none.
/// Interruptions and ICMP errors queued on the socket (port unreachable after
/// a send) are not fatal and are passed over.
pub fn recv_datagram(sock: &mio::net::UdpSocket, buf: &mut [u8]) -> io::Result<Option<(usize, SocketAddr)>> {
    loop {
        return match sock.recv_from(buf) {
            Ok(got) => Ok(Some(got)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(None),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) if matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH)) => {
                continue
            }
            Err(e) => Err(e),
        };
    }
}

/// Maps a send error to what it means for one datagram.
pub fn classify_send_error(e: io::Error) -> io::Result<Tx> {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(Tx::Busy),
        _ if e.raw_os_error() == Some(libc::EMSGSIZE) => Ok(Tx::TooLarge),
        // Unreachable networks, refused ports, a v6 destination on a v4
        // socket: that datagram is lost, the channel is fine.
        _ => Ok(Tx::Busy),
    }
}

impl Channel for UdpChannel {
    fn name(&self) -> &str {
        "udp"
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.sock, token, Interest::READABLE)
    }

    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Rx> {
        Ok(match recv_datagram(&self.sock, buf)? {
            Some((len, from)) => Rx::Packet { len, from: Some(canonical(from)) },
            None => Rx::Idle,
        })
    }

    fn send(&mut self, to: Option<SocketAddr>, payload: &[u8]) -> io::Result<Tx> {
        let Some(to) = to else { return Ok(Tx::Busy) };
        match self.sock.send_to(payload, self.wire_addr(to)) {
            Ok(_) => Ok(Tx::Sent),
            Err(e) => classify_send_error(e),
        }
    }
}
