//! The endpoints of the switch, all behind one small trait about I/O only.
//!
//! A [`Channel`] moves whole payloads in batches: Ethernet frames for the
//! local ends (tap, VDE stdio), UDP payloads for the remote ones (the socket
//! that serves every uplink and downlink, the multicast group). It receives a
//! batch into the shared, preallocated [`batch::RxPool`] and sends a batch the
//! node planned ([`crate::plan::Plan`]). It knows nothing of MAC addresses,
//! declarations or keys: the node decides what goes where, and the event loop
//! only moves bytes between the two.

pub mod batch;
pub mod mcast;
pub mod mem;
pub mod stdio;
pub mod tap;
pub mod udp;

use std::io;

use mio::{Registry, Token};

pub use crate::plan::{Datagram, SendReport};
use batch::RxPool;

/// The largest payload any channel carries: a whole UDP datagram.
pub const MAX_PAYLOAD: usize = 65535;

/// What one receive call gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rx {
    /// `count` slots of the pool were filled (possibly none). `drained` is
    /// true when the channel had nothing more, so the loop waits for
    /// readiness before reading it again; false when it may have more.
    Batch {
        /// Slots filled, from slot 0.
        count: usize,
        /// Whether the channel said it had nothing more.
        drained: bool,
    },
    /// The channel ended (stdin reached end of file).
    Closed,
}

/// An endpoint of the switch.
pub trait Channel {
    /// A short name for logs and errors ("udp [::]:1400", "stdio", "tap vpn0").
    fn name(&self) -> &str;

    /// What kind of endpoint it is ("tap", "stdio", "udp", "multicast"),
    /// for status reports.
    fn kind(&self) -> &'static str;

    /// Registers the channel's file descriptors with the event loop.
    fn register(&mut self, registry: &Registry, token: Token) -> io::Result<()>;

    /// Receives up to a batch into the pool's slots, without blocking. An
    /// `Err` is fatal to the channel.
    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx>;

    /// Sends the planned payloads `batch`, whose bytes are in `arena`,
    /// without blocking. Payloads the channel could not take are counted in
    /// the report; an `Err` is fatal to the channel.
    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport>;

    /// Called when the channel became writable; pushes out queued output.
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }

    /// True while output is queued.
    fn has_backlog(&self) -> bool {
        false
    }

    /// Which offloads are on and what they did, for a tap opened with
    /// them; `None` for every other channel.
    fn offload(&self) -> Option<crate::offload::TapState> {
        None
    }

    /// The node could not use something this channel handed it under its
    /// offloads (a super-frame it cannot split, a partial checksum it
    /// cannot complete): scale them back so the kernel does that work
    /// itself from now on.
    fn offload_refused(&mut self, _trouble: crate::offload::Trouble) {}
}
