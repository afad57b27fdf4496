//! rrqnet: a virtual-cable Ethernet switch.
//!
//! The crate is split the way the program works. [`switch`] is the pure core:
//! frames and the current time go in, forwarding decisions come out; it never
//! touches a socket or a clock. [`node`] is the protocol above it, just as
//! pure: declarations, admission, keys, heartbeats, the multicast rules and
//! the one-seal-per-key flood, with a transmit [`plan`] as its output.
//! [`crypto`] is the keyed datagram format (sessions, sealing, opening, with
//! time as an argument). [`channel`] holds the endpoints (tap, VDE stdio, the
//! UDP socket serving uplinks and downlinks, multicast), all behind one small
//! [`channel::Channel`] trait. [`daemon`] is the thin I/O shell, one event
//! loop that moves bytes between the channels and the node. [`cli`] and
//! [`config`] are the edge where user input becomes types.

#![deny(unsafe_code)]

pub mod channel;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod hash;
pub mod mac;
pub mod node;
pub mod notify;
pub mod offload;
pub mod plan;
pub mod ratelimit;
pub mod status;
pub mod switch;
pub mod sys;
#[doc(hidden)]
pub mod testing;
