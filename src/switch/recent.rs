//! A short memory of frames, to know a copy of one.
//!
//! Two kinds of frame can come twice in a way the source-address rules do
//! not see. The multicast group is one port shared by every member: a
//! frame that two members relay into it arrives twice on that one port.
//! And a unicast relayed *across* (by a port its source is not bound to)
//! teaches nothing, so should one ever come round, nothing stops it but
//! knowing it. So the switch remembers, for [`super::timing::SETTLE`], a
//! digest of each frame from the group and of each frame relayed across,
//! with the port it came by. (Copies of a frame for the local end are told
//! by the source's binding, which keeps the last one's digest.)
//!
//! The memory is a fixed set-associative array, allocated once: [`SETS`]
//! sets of [`WAYS`], the least recently used way of a set making room. A
//! copy is recognised while fewer than [`WAYS`] other frames have fallen
//! into its set since the original, that is at up to several thousand such
//! frames per [`super::timing::SETTLE`]; past that a copy can get through,
//! counted nowhere, as one extra delivery (never a loop: that is the source
//! rules' job, see `Switch::handle_frame`).

use std::time::{Duration, Instant};

use super::PortId;

/// Sets in the memory.
pub const SETS: usize = 1024;
/// Frames remembered per set.
pub const WAYS: usize = 4;

/// A digest of a frame for telling copies of one frame from other frames
/// (the memory is only a guard, so a collision costs at most one frame):
/// its length and its first 64 bytes (every header up to and past TCP's
/// sequence numbers and ICMP's echo sequence), so that it costs a few
/// multiplications whatever the frame's size.
pub fn digest(frame: &[u8]) -> u64 {
    const M: u64 = 0xff51_afd7_ed55_8ccd;
    let head = &frame[..frame.len().min(64)];
    // Four lanes, so the multiplications do not wait on each other.
    let mut lanes = [
        (frame.len() as u64) ^ 0x9e37_79b9_7f4a_7c15,
        0x6a09_e667_f3bc_c908,
        0xbb67_ae85_84ca_a73b,
        0x3c6e_f372_fe94_f82b,
    ];
    let words = head.chunks_exact(8);
    let tail = words.remainder();
    for (i, w) in words.enumerate() {
        let w = u64::from_le_bytes([w[0], w[1], w[2], w[3], w[4], w[5], w[6], w[7]]);
        lanes[i % 4] = (lanes[i % 4] ^ w).wrapping_mul(M);
    }
    if !tail.is_empty() {
        let mut w = [0u8; 8];
        w[..tail.len()].copy_from_slice(tail);
        lanes[3] = (lanes[3] ^ u64::from_le_bytes(w)).wrapping_mul(M);
    }
    let h = lanes[0] ^ lanes[1].rotate_left(16) ^ lanes[2].rotate_left(32) ^ lanes[3].rotate_left(48);
    let h = (h ^ (h >> 32)).wrapping_mul(M);
    h ^ (h >> 29)
}

#[derive(Debug, Clone, Copy)]
struct Seen {
    digest: u64,
    port: PortId,
    at: Option<Instant>,
}

/// The memory.
#[derive(Debug)]
pub struct Recent {
    sets: Box<[[Seen; WAYS]]>,
    window: Duration,
}

impl Recent {
    /// An empty memory of frames seen less than `window` ago.
    pub fn new(window: Duration) -> Recent {
        let empty = Seen { digest: 0, port: PortId(0), at: None };
        Recent { sets: vec![[empty; WAYS]; SETS].into_boxed_slice(), window }
    }

    /// Whether the frame with `digest`, come by `port` at `now`, is a copy
    /// of one seen less than the window ago: by any port if `any_port`, by
    /// another port if not. Remembers it if it is not.
    pub fn copy(&mut self, digest: u64, port: PortId, now: Instant, any_port: bool) -> bool {
        let window = self.window;
        let set = &mut self.sets[(digest % SETS as u64) as usize];
        let fresh = |s: &Seen| s.at.is_some_and(|t| now < t + window);
        if set.iter().any(|s| s.digest == digest && fresh(s) && (any_port || s.port != port)) {
            return true;
        }
        if let Some(way) = set.iter_mut().min_by_key(|s| s.at) {
            *way = Seen { digest, port, at: Some(now) };
        }
        false
    }
}
