//! Ethernet frames for the tests: the library's one set of builders
//! (`rrqnet::testing`), re-exported for every test binary.

#![allow(unused_imports)]

pub use rrqnet::testing::{frame, frame_array, frame_with, mac, tagged, BCAST, ETHERTYPE};
