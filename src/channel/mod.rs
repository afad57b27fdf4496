//! The endpoints of the switch, all behind one small trait about I/O only.
//!
//! A [`Channel`] moves whole payloads: Ethernet frames for the local ends,
//! UDP payloads for the remote ones. It knows nothing of MAC addresses,
//! declarations or keys; the daemon and the switch decide what goes where.

pub mod batch;
pub mod mcast;
pub mod mem;
pub mod stdio;
pub mod tap;
pub mod udp;

use std::io;
use std::net::SocketAddr;

use mio::{Registry, Token};

/// The largest payload any channel carries: a whole UDP datagram.
pub const MAX_PAYLOAD: usize = 65535;

/// What one receive attempt gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    /// A payload of `len` bytes is at the start of the buffer.
    Packet {
        /// Its length.
        len: usize,
        /// Its source, for datagram channels.
        from: Option<SocketAddr>,
    },
    /// Nothing more right now: wait for readiness.
    Idle,
    /// The channel ended (stdin reached end of file).
    Closed,
}

/// What one send attempt did with the payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tx {
    /// Handed to the kernel, or queued in full.
    Sent,
    /// Not sent: the channel is congested (a full queue or socket buffer).
    Busy,
    /// Not sent: too large for this channel.
    TooLarge,
}

/// An endpoint of the switch.
pub trait Channel {
    /// A short name for logs ("udp", "stdio", "tap vpn0", ...).
    fn name(&self) -> &str;

    /// Registers the channel's file descriptors with the event loop.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;

    /// Receives one payload into `buf`, which holds [`MAX_PAYLOAD`] bytes.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Rx>;

    /// Sends one payload, to `to` on datagram channels with many peers.
    /// Transient failures are `Ok(Tx::Busy)`; an `Err` is fatal to the channel.
    fn send(&mut self, to: Option<SocketAddr>, payload: &[u8]) -> io::Result<Tx>;

    /// Called when the channel became writable; pushes out queued output.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// True while output is queued.
    fn has_backlog(&self) -> bool {
        false
    }
}
