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

/// What a tap with offloads hands over for a TCP/IPv4 super-frame from
/// `mac(0xaa)` to `mac(0xbb)` with `payload` bytes to be cut at `mss`: a
/// 10-byte virtio-net header (GSO TCPV4, partial checksum), then the frame.
/// Its checksums are left as they come: every segment's are computed anew.
pub fn tcp_super_frame_read(payload: usize, mss: u16) -> Vec<u8> {
    use crate::offload::{vnet::F_NEEDS_CSUM, Gso, VnetHdr, VnetHdrSize};
    let mut f = vec![0u8; 54 + payload];
    f[..6].copy_from_slice(&mac(0xbb));
    f[6..12].copy_from_slice(&mac(0xaa));
    f[12..14].copy_from_slice(&[8, 0]);
    f[14..34].copy_from_slice(&[0x45, 0, 0, 0, 0x12, 0x34, 0x40, 0, 64, 6, 0, 0, 198, 51, 100, 1, 198, 51, 100, 2]);
    f[16..18].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
    // Ports 5001 and 50000, sequence number 4096, ACK 1, ACK|PSH.
    f[34..54].copy_from_slice(&[0x13, 0x89, 0xc3, 0x50, 0, 0, 0x10, 0, 0, 0, 0, 1, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0]);
    for (i, b) in f[54..].iter_mut().enumerate() {
        *b = (i * 7) as u8;
    }
    let hdr = VnetHdr {
        flags: F_NEEDS_CSUM,
        gso: Gso::TcpV4,
        hdr_len: 54,
        gso_size: mss,
        csum_start: 34,
        csum_offset: 16,
        ..VnetHdr::ZERO
    };
    let mut r = vec![0u8; VnetHdrSize::Basic.len()];
    hdr.emit(&mut r, VnetHdrSize::Basic);
    r.extend_from_slice(&f);
    r
}

/// The ordinary frames a super-frame from [`tcp_super_frame_read`] makes,
/// as the segmenter cuts them (checksums valid).
pub fn tcp_segments(payload: usize, mss: u16) -> Vec<Vec<u8>> {
    use crate::offload::{FromTap, Splitter, VnetHdrSize};
    let mut read = tcp_super_frame_read(payload, mss);
    let mut sp = Splitter::new(VnetHdrSize::Basic);
    let Ok(FromTap::Segments(mut s)) = sp.handle(&mut read) else { return Vec::new() };
    let mut out = Vec::new();
    let mut buf = vec![0u8; 54 + usize::from(mss)];
    while let Some(Ok(len)) = s.next_into(&mut buf) {
        out.push(buf[..len].to_vec());
    }
    out
}
