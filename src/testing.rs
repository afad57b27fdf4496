//! Helpers for tests, benchmarks and fuzz targets: a virtual clock, and
//! Ethernet frames (the one set of
//! builders every test uses (the integration tests through
//! `tests/common/frames.rs`), so that all frames in tests look alike:
//! locally administered MACs and the local experimental EtherType, with the
//! padding pattern a parameter (tests compare frames byte for byte, so each
//! keeps the pattern it was written with)).

use std::time::{Duration, Instant};

/// A virtual clock: one origin, read from the real clock once per test, and
/// every other instant an offset from it.
#[derive(Debug, Clone, Copy)]
pub struct Clock(pub Instant);

impl Clock {
    /// A clock whose origin is now.
    pub fn new() -> Self {
        Clock(Instant::now())
    }
    /// The origin plus `ms` milliseconds.
    pub fn ms(&self, ms: u64) -> Instant {
        self.0 + Duration::from_millis(ms)
    }
    /// The origin plus `s` seconds.
    pub fn s(&self, s: u64) -> Instant {
        self.0 + Duration::from_secs(s)
    }
}

impl Default for Clock {
    fn default() -> Self {
        Self::new()
    }
}

/// The broadcast MAC.
pub const BCAST: [u8; 6] = [0xff; 6];

/// The local experimental EtherType every test frame carries.
pub const ETHERTYPE: [u8; 2] = [0x88, 0xb5];

/// A locally administered unicast MAC, `02:00:00:00:00:<last>`.
pub fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

/// A `len`-byte frame `dst`, `src`, [`ETHERTYPE`], whose byte at offset `i`
/// (from the start of the frame, so `i >= 14`) is `byte(i)`.
pub fn frame_with(dst: [u8; 6], src: [u8; 6], len: usize, byte: impl Fn(usize) -> u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&ETHERTYPE);
    while f.len() < len {
        f.push(byte(f.len()));
    }
    f
}

/// A `len`-byte frame padded with `fill + offset` (wrapping).
pub fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    frame_with(dst, src, len, |i| fill.wrapping_add(i as u8))
}

/// A 60-byte frame whose first payload byte is `tag` (zeros after it), for
/// tests that tell frames apart by one byte.
pub fn tagged(dst: [u8; 6], src: [u8; 6], tag: u8) -> Vec<u8> {
    frame_with(dst, src, 60, |i| if i == 14 { tag } else { 0 })
}

/// An `N`-byte frame padded with zeros, on the stack: for loops that must
/// not allocate.
pub fn frame_array<const N: usize>(dst: [u8; 6], src: [u8; 6]) -> [u8; N] {
    let mut f = [0u8; N];
    f[..6].copy_from_slice(&dst);
    f[6..12].copy_from_slice(&src);
    f[12..14].copy_from_slice(&ETHERTYPE);
    f
}
