//! The IPv4 multicast channel (`-m group:port`), compatible with QEMU's
//! `-netdev socket,mcast=group:port` (SPEC section 4).
//!
//! QEMU (net/socket.c, `net_socket_mcast_create`) binds one socket to
//! group:port with `SO_REUSEADDR`, joins the group on the interface the
//! kernel picks (`INADDR_ANY`), turns `IP_MULTICAST_LOOP` on so that several
//! QEMUs on one host hear each other, leaves the TTL at the kernel's default
//! of 1, and sends each frame as one datagram to group:port. We receive the
//! same way, so every QEMU and rrqnet on the group shares its traffic.
//!
//! We send from a second socket on an ephemeral port, connected to
//! group:port. Connecting fixes the source address the kernel uses (the
//! address of the interface the group is routed through), so the source our
//! looped-back datagrams carry is exactly that socket's local address
//! ([`McastChannel::own_addr`]): that is how the node recognises our own
//! traffic heard back, without a per-packet lookup. A connected UDP socket also accepts nothing but
//! datagrams from group:port, which no one sends from, so its receive queue
//! never fills.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, SocketAddrV4};

use mio::{Interest, Registry, Token};
use socket2::{Domain, Protocol, Socket, Type};

use super::batch::RxPool;
use super::udp::{count_send_error, recv_datagram, size_buffers, SOCKET_BUFFER};
use super::{Channel, Datagram, Rx, SendReport};

/// The multicast TTL, as QEMU leaves it (the kernel default): the group stays
/// on the local link.
pub const MULTICAST_TTL: u32 = 1;

/// A failure to set up the channel, with the step that failed.
#[derive(Debug)]
pub struct McastError {
    /// What we were doing ("bind", "join", "connect", ...).
    pub step: &'static str,
    /// Why it failed.
    pub source: io::Error,
}

impl std::fmt::Display for McastError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.step, self.source)?;
        match (self.step, self.source.raw_os_error()) {
            ("IP_ADD_MEMBERSHIP" | "connect", Some(libc::ENODEV | libc::ENETUNREACH)) => f.write_str(
                " (no route for the group: add one, e.g. 'ip route add 224.0.0.0/4 dev lo' to keep it on this host)",
            ),
            ("bind", Some(libc::EADDRINUSE)) => f.write_str(
                " (another socket holds that port without SO_REUSEADDR; the group port must differ from rrqnet's own UDP port)",
            ),
            _ => Ok(()),
        }
    }
}

impl std::error::Error for McastError {}

fn step<T>(step: &'static str, r: io::Result<T>) -> Result<T, McastError> {
    r.map_err(|source| McastError { step, source })
}

/// The multicast group as a channel: one socket to receive, one to send.
#[derive(Debug)]
pub struct McastChannel {
    rx: mio::net::UdpSocket,
    tx: mio::net::UdpSocket,
    own: SocketAddr,
    group: SocketAddrV4,
    name: String,
}

impl McastChannel {
    /// Joins `group:port` and opens the sending socket.
    pub fn open(group: Ipv4Addr, port: u16) -> Result<Self, McastError> {
        let addr = SocketAddrV4::new(group, port);

        let rx = step("socket", Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)))?;
        step("SO_REUSEADDR", rx.set_reuse_address(true))?;
        step("bind", rx.bind(&SocketAddr::V4(addr).into()))?;
        step("IP_ADD_MEMBERSHIP", rx.join_multicast_v4(&group, &Ipv4Addr::UNSPECIFIED))?;
        step("IP_MULTICAST_LOOP", rx.set_multicast_loop_v4(true))?;
        step("O_NONBLOCK", rx.set_nonblocking(true))?;
        size_buffers(&rx, SOCKET_BUFFER);

        let tx = step("socket", Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)))?;
        step("IP_MULTICAST_LOOP", tx.set_multicast_loop_v4(true))?;
        step("IP_MULTICAST_TTL", tx.set_multicast_ttl_v4(MULTICAST_TTL))?;
        step("bind", tx.bind(&SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), 0).into()))?;
        step("connect", tx.connect(&SocketAddr::V4(addr).into()))?;
        step("O_NONBLOCK", tx.set_nonblocking(true))?;
        size_buffers(&tx, SOCKET_BUFFER);
        let own = step("getsockname", tx.local_addr())?
            .as_socket()
            .ok_or_else(|| McastError { step: "getsockname", source: io::ErrorKind::InvalidData.into() })?;

        Ok(McastChannel {
            rx: mio::net::UdpSocket::from_std(rx.into()),
            tx: mio::net::UdpSocket::from_std(tx.into()),
            own,
            group: addr,
            name: format!("multicast {addr}"),
        })
    }

    /// The group and port.
    pub fn group(&self) -> SocketAddrV4 {
        self.group
    }

    /// The address our datagrams leave from (and come back from).
    pub fn own_addr(&self) -> SocketAddr {
        self.own
    }
}

impl Channel for McastChannel {
    fn name(&self) -> &str {
        &self.name
    }

    fn kind(&self) -> &'static str {
        "multicast"
    }

    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()> {
        registry.register(&mut self.rx, token, Interest::READABLE)
    }

    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx> {
        pool.fill_each(|buf| recv_datagram(&self.rx, buf))
    }

    /// Sends each datagram to the group; their destinations are ignored.
    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        for d in batch {
            match self.tx.send(&arena[d.range.clone()]) {
                Ok(_) => report.sent += 1,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => report.failed += 1,
                Err(e) => count_send_error(&e, &mut report),
            }
        }
        Ok(report)
    }
}
