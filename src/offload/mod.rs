//! Tap offloads in software: the pure part, with no socket, no clock and
//! no allocation per frame.
//!
//! A tap opened with `IFF_VNET_HDR` and told (`TUNSETOFFLOAD`) that we do
//! checksums and TCP (and UDP) segmentation hands us TCP (and UDP)
//! super-frames of up to 64 KiB and takes them back, which saves the kernel
//! most of its per-frame work.
//! The wire must not notice: every datagram stays one ordinary Ethernet
//! frame, which QEMU, vde_plug and older rrqnets understand. So:
//!
//! - [`vnet`] is the virtio-net header in front of each frame;
//! - [`split`] turns what the tap reads into ordinary frames: a partial
//!   checksum completed, a super-frame cut into MSS-sized segments (or
//!   datagrams) written straight into the caller's transmit space (software
//!   TSO and USO);
//! - [`coalesce`] joins consecutive in-order TCP segments of one flow from
//!   a receive batch into super-frames for the tap (software GRO), UDP
//!   datagrams of one flow too where the kernel takes them, and passes
//!   everything else as it came.
//!
//! Both count every frame they could not help, by reason
//! ([`SplitCounters`], [`CoalesceCounters`]), so the loop can report them.

mod checksum;
pub mod coalesce;
#[doc(hidden)]
pub mod fuzz;
mod headers;
pub mod split;
pub mod vnet;

pub use coalesce::{
    Break, CoalesceCounters, Coalescer, Output, Placement, Plain, RunId, Super, WriteError, MAX_IP_LEN, MAX_SUPER_FRAME,
};
pub use split::{complete_checksum, from_tap, FromTap, Refusal, Segmenter, SplitCounters, Splitter, TooSmall};
pub use vnet::{Gso, VnetError, VnetHdr, VnetHdrSize};

/// What the tap handed over that could not be used, since the shell last
/// asked: the tap's offloads are scaled back by what it was.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Trouble {
    /// A super-frame (GSO) could not be cut: segmentation offload must go.
    pub super_frame: bool,
    /// An ordinary frame's partial checksum could not be completed (or its
    /// header not read): checksum offload must go too.
    pub frame: bool,
}

impl Trouble {
    /// True if anything went wrong.
    pub fn any(self) -> bool {
        self.super_frame || self.frame
    }
}

/// What a tap channel with offloads reports: which offloads are on now,
/// and what its writes towards the tap did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TapState {
    /// The kernel may hand us partial checksums (`TUN_F_CSUM`).
    pub checksum: bool,
    /// The kernel may hand us TCP super-frames (`TUN_F_TSO4 | TUN_F_TSO6`).
    pub tso: bool,
    /// The kernel may hand us UDP super-frames (`TUN_F_USO4 | TUN_F_USO6`,
    /// Linux 6.2 and later).
    pub uso: bool,
    /// We join TCP segments into super-frames for the tap.
    pub gro: bool,
    /// We join UDP datagrams into super-frames for the tap too (its kernel
    /// takes them: Linux 6.2 and later).
    pub gro_udp: bool,
    /// What the coalescer did.
    pub coalesce: CoalesceCounters,
    /// Super-frames written whole.
    pub written: u64,
    /// Super-frames the kernel refused (`EINVAL`), written frame by frame.
    pub rejected: u64,
}
