//! rrqnet: a virtual-cable Ethernet switch.
//!
//! The crate is split the way the program works. [`switch`] is the pure core:
//! frames and the current time go in, forwarding decisions come out; it never
//! touches a socket or a clock. [`channel`] holds the endpoints (tap, VDE
//! stdio, the UDP socket serving uplinks and downlinks, multicast), all behind
//! one small [`channel::Channel`] trait. [`daemon`] is the one event loop that
//! joins them. [`cli`] and [`config`] are the edge where user input becomes
//! types. [`crypto`] is the keyed datagram format, as pure as the switch:
//! key files, sessions, sealing and opening, with time as an argument.

#![deny(unsafe_code)]

pub mod channel;
pub mod cli;
pub mod config;
pub mod crypto;
pub mod daemon;
#[doc(hidden)]
pub mod fuzzing;
pub mod mac;
pub mod offload;
pub mod ratelimit;
pub mod remote;
pub mod switch;
pub mod sys;
