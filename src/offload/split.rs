//! Tap to network: what a tap with checksum and TCP (and UDP) segmentation
//! offload switched on hands us, made into ordinary Ethernet frames.
//!
//! A read from such a tap is a virtio-net header and a frame. Most frames
//! need nothing. A frame with `NEEDS_CSUM` and no GSO has a partial
//! checksum (the kernel left only the pseudo-header sum in the field); it is
//! completed in place. A TCP or UDP super-frame of up to 64 KiB is cut into
//! `gso_size` payloads by a [`Segmenter`], which writes each segment,
//! headers and checksums complete, straight into space the caller gives it
//! (a slot of the UDP transmit queue), so no segment is ever built twice.
//!
//! The segments are what Linux's own software GSO (`tcp_gso_segment`,
//! `inet_gso_segment`) would make: the IPv4 id counts up from the
//! super-frame's, sequence numbers advance by the payload, FIN and PSH stay
//! on the last segment only and CWR on the first only; a UDP datagram gets
//! its own length and checksum (`__udp_gso_segment`).
//!
//! Whatever cannot be made into ordinary frames that way is refused with a
//! [`Refusal`] and counted; nothing here panics on any input.

use std::fmt;

use super::checksum::Sum;
use super::headers::{put_u16, put_u32, u16_at, Shape, Tcp, CWR, ETH_LEN, FIN, PSH, TCP_FLAGS};
use super::vnet::{Gso, VnetError, VnetHdr, VnetHdrSize};

/// Why a read from the tap cannot be made into ordinary frames.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum Refusal {
    /// Shorter than the virtio-net header.
    VnetTruncated,
    /// Unknown flags in the virtio-net header.
    UnknownFlags,
    /// A GSO type we do not know (or ECN without TCP).
    UnknownGsoType,
    /// UDP fragmentation offload (UFO: never switched on).
    Ufo,
    /// TCPV4 on an IPv6 frame or the other way round, or a TCP type on a
    /// UDP frame or the other way round.
    GsoTypeMismatch,
    /// A super-frame with a VLAN tag.
    VlanTagged,
    /// A super-frame that is not IP.
    NotIp,
    /// A super-frame that ends inside its headers.
    Truncated,
    /// A super-frame whose IP header contradicts itself.
    BadIpHeader,
    /// A super-frame with IPv4 options.
    Ipv4Options,
    /// A super-frame that is an IPv4 fragment.
    Fragment,
    /// A super-frame with IPv6 extension headers.
    Ipv6ExtensionHeaders,
    /// A super-frame that carries neither TCP nor UDP.
    NotTcp,
    /// A super-frame whose TCP data offset is under 5 or past the end.
    BadTcpHeader,
    /// A super-frame whose IP length is not the rest of the frame.
    LengthMismatch,
    /// `csum_start`/`csum_offset` not at the TCP (or UDP) checksum of a super-frame,
    /// or past the end of an ordinary frame.
    ChecksumOffsets,
    /// `hdr_len` past the end of the frame.
    HdrLenPastEnd,
    /// A super-frame with `gso_size` 0.
    GsoSizeZero,
}

impl Refusal {
    /// Number of reasons.
    pub const COUNT: usize = 18;
    /// All reasons, in counter order.
    pub const ALL: [Refusal; Self::COUNT] = [
        Refusal::VnetTruncated,
        Refusal::UnknownFlags,
        Refusal::UnknownGsoType,
        Refusal::Ufo,
        Refusal::GsoTypeMismatch,
        Refusal::VlanTagged,
        Refusal::NotIp,
        Refusal::Truncated,
        Refusal::BadIpHeader,
        Refusal::Ipv4Options,
        Refusal::Fragment,
        Refusal::Ipv6ExtensionHeaders,
        Refusal::NotTcp,
        Refusal::BadTcpHeader,
        Refusal::LengthMismatch,
        Refusal::ChecksumOffsets,
        Refusal::HdrLenPastEnd,
        Refusal::GsoSizeZero,
    ];

    /// A short name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Refusal::VnetTruncated => "vnet-truncated",
            Refusal::UnknownFlags => "vnet-unknown-flags",
            Refusal::UnknownGsoType => "vnet-unknown-gso-type",
            Refusal::Ufo => "ufo",
            Refusal::GsoTypeMismatch => "gso-type-mismatch",
            Refusal::VlanTagged => "vlan-tagged",
            Refusal::NotIp => "not-ip",
            Refusal::Truncated => "truncated",
            Refusal::BadIpHeader => "bad-ip-header",
            Refusal::Ipv4Options => "ipv4-options",
            Refusal::Fragment => "fragment",
            Refusal::Ipv6ExtensionHeaders => "ipv6-extension-headers",
            Refusal::NotTcp => "not-tcp",
            Refusal::BadTcpHeader => "bad-tcp-header",
            Refusal::LengthMismatch => "length-mismatch",
            Refusal::ChecksumOffsets => "checksum-offsets",
            Refusal::HdrLenPastEnd => "hdr-len-past-end",
            Refusal::GsoSizeZero => "gso-size-zero",
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for Refusal {}

impl From<VnetError> for Refusal {
    fn from(e: VnetError) -> Refusal {
        match e {
            VnetError::Truncated => Refusal::VnetTruncated,
            VnetError::UnknownFlags(_) => Refusal::UnknownFlags,
            VnetError::UnknownGsoType(_) => Refusal::UnknownGsoType,
        }
    }
}

impl From<Shape> for Refusal {
    fn from(s: Shape) -> Refusal {
        match s {
            Shape::Truncated => Refusal::Truncated,
            Shape::VlanTagged => Refusal::VlanTagged,
            Shape::NotIp => Refusal::NotIp,
            Shape::BadIpHeader => Refusal::BadIpHeader,
            Shape::Ipv4Options => Refusal::Ipv4Options,
            Shape::Fragment => Refusal::Fragment,
            Shape::Ipv6ExtensionHeaders => Refusal::Ipv6ExtensionHeaders,
            Shape::NotTcp => Refusal::NotTcp,
            Shape::BadTcpHeader => Refusal::BadTcpHeader,
            Shape::LengthMismatch => Refusal::LengthMismatch,
        }
    }
}

/// The output space given to [`Segmenter::next_into`] was too small; the
/// segment was not written and is still next.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct TooSmall {
    /// Bytes the segment needs.
    pub need: usize,
}

impl fmt::Display for TooSmall {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "output space too small: the frame needs {} bytes", self.need)
    }
}

impl std::error::Error for TooSmall {}

/// Counters of the tap-to-network direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SplitCounters {
    /// Reads that needed nothing: ordinary frames with a zero header.
    pub plain: u64,
    /// Ordinary frames whose partial checksum was completed in place.
    pub completed: u64,
    /// Super-frames accepted for segmentation.
    pub super_frames: u64,
    /// Segments those super-frames make.
    pub segments: u64,
    /// Super-frames that fit one segment (payload at most `gso_size`).
    pub single: u64,
    /// Super-frames with the ECN bit (CWR kept on the first segment only).
    pub ecn: u64,
    /// Refusals, indexed by [`Refusal`].
    pub refused: [u64; Refusal::COUNT],
}

impl SplitCounters {
    /// The count for one refusal reason.
    pub fn refused(&self, r: Refusal) -> u64 {
        self.refused[r as usize]
    }

    /// All refusals.
    pub fn refused_total(&self) -> u64 {
        self.refused.iter().sum()
    }
}

/// What a read from the tap turned into.
#[derive(Debug)]
pub enum FromTap<'a> {
    /// One ordinary frame, ready to go (its checksum completed if it was
    /// partial).
    Frame(&'a [u8]),
    /// A super-frame, to be written out segment by segment.
    Segments(Segmenter<'a>),
}

/// Reads from a tap opened with `IFF_VNET_HDR`, and counts what it saw.
#[derive(Clone, Debug, Default)]
pub struct Splitter {
    size: VnetHdrSize,
    /// What this splitter saw.
    pub counters: SplitCounters,
}

impl Splitter {
    /// A splitter for headers of `size` bytes.
    pub fn new(size: VnetHdrSize) -> Splitter {
        Splitter { size, counters: SplitCounters::default() }
    }

    /// The header size it expects.
    pub fn size(&self) -> VnetHdrSize {
        self.size
    }

    /// Handles one read from the tap (`read` is the header and the frame,
    /// as `read(2)` returned them). A partial checksum is completed in
    /// place, which is why `read` is mutable.
    pub fn handle<'a>(&mut self, read: &'a mut [u8]) -> Result<FromTap<'a>, Refusal> {
        let hdr = VnetHdr::parse(read, self.size).map_err(Refusal::from);
        let r = hdr.and_then(|hdr| from_tap(&hdr, &mut read[self.size.len()..]));
        let c = &mut self.counters;
        match &r {
            Ok(FromTap::Frame(_)) if hdr.is_ok_and(|h| h.needs_csum()) => c.completed += 1,
            Ok(FromTap::Frame(_)) => c.plain += 1,
            Ok(FromTap::Segments(s)) => {
                c.super_frames += 1;
                c.segments += s.segments() as u64;
                c.single += u64::from(s.segments() == 1);
                c.ecn += u64::from(s.ecn);
            }
            Err(e) => c.refused[*e as usize] += 1,
        }
        r
    }
}

/// Makes `frame`, which came with `hdr`, into ordinary frames: completes a
/// partial checksum in place, or returns a [`Segmenter`] for a super-frame.
pub fn from_tap<'a>(hdr: &VnetHdr, frame: &'a mut [u8]) -> Result<FromTap<'a>, Refusal> {
    match hdr.gso {
        Gso::None => {
            if hdr.needs_csum() {
                complete_checksum(frame, hdr.csum_start, hdr.csum_offset)?;
            }
            Ok(FromTap::Frame(frame))
        }
        Gso::TcpV4 | Gso::TcpV6 | Gso::UdpL4 => Segmenter::new(hdr, frame).map(FromTap::Segments),
        Gso::Udp => Err(Refusal::Ufo),
    }
}

/// Completes the partial checksum of an ordinary frame in place: the
/// one's-complement sum from `start` to the end, with what is in the field
/// (the pseudo-header sum) counted, goes into the field at `start + offset`.
/// As Linux's `skb_checksum_help` does, a result of 0 is stored as 0xffff,
/// which UDP needs and TCP does not mind.
pub fn complete_checksum(frame: &mut [u8], start: u16, offset: u16) -> Result<(), Refusal> {
    let (start, at) = (usize::from(start), usize::from(start) + usize::from(offset));
    if at + 2 > frame.len() {
        return Err(Refusal::ChecksumOffsets);
    }
    // The sum must start at `start` for the words to line up; the field's
    // old content is the initial value and is replaced.
    let initial = u16::from_be_bytes([frame[at], frame[at + 1]]);
    frame[at] = 0;
    frame[at + 1] = 0;
    let c = Sum::of(&frame[start..]).word(initial).finish();
    put_u16(frame, at, if c == 0 { 0xffff } else { c });
    Ok(())
}

/// Cuts one TCP or UDP super-frame into ordinary frames, one at a time,
/// into space the caller provides.
#[derive(Clone, Debug)]
pub struct Segmenter<'a> {
    frame: &'a [u8],
    tcp: Tcp,
    mss: usize,
    /// Where the next segment's payload starts in `frame`.
    next: usize,
    /// Segments written so far.
    done: usize,
    count: usize,
    seq: u32,
    id: u16,
    flags: u8,
    pseudo: Sum,
    ecn: bool,
}

impl<'a> Segmenter<'a> {
    /// Checks a TCP or UDP super-frame and its header. `hdr_len` is only checked
    /// to lie inside the frame: the kernel fills it with the length of its
    /// buffer's linear part, which may well be more than the headers, so
    /// the headers are found in the frame itself.
    pub fn new(hdr: &VnetHdr, frame: &'a [u8]) -> Result<Segmenter<'a>, Refusal> {
        // USO is one type for both IP versions.
        let (v6, udp) = match hdr.gso {
            Gso::TcpV4 => (Some(false), false),
            Gso::TcpV6 => (Some(true), false),
            Gso::UdpL4 => (None, true),
            Gso::Udp => return Err(Refusal::Ufo),
            Gso::None => return Err(Refusal::UnknownGsoType),
        };
        let tcp = Tcp::parse(frame, udp)?;
        if tcp.udp != udp || v6.is_some_and(|v6| v6 != tcp.v6) {
            return Err(Refusal::GsoTypeMismatch);
        }
        if hdr.needs_csum()
            && (usize::from(hdr.csum_start) != tcp.l4 || usize::from(hdr.csum_offset) != tcp.csum_offset())
        {
            return Err(Refusal::ChecksumOffsets);
        }
        if usize::from(hdr.hdr_len) > frame.len() {
            return Err(Refusal::HdrLenPastEnd);
        }
        if hdr.gso_size == 0 {
            return Err(Refusal::GsoSizeZero);
        }
        let mss = usize::from(hdr.gso_size);
        let payload = frame.len() - tcp.hdr_len;
        Ok(Segmenter {
            frame,
            tcp,
            mss,
            next: tcp.hdr_len,
            done: 0,
            count: payload.div_ceil(mss).max(1),
            seq: if udp { 0 } else { tcp.seq(frame) },
            id: if tcp.v6 { 0 } else { u16_at(frame, ETH_LEN + 4) },
            flags: if udp { 0 } else { tcp.flags(frame) },
            pseudo: tcp.pseudo(frame),
            ecn: hdr.ecn,
        })
    }

    /// The whole super-frame: every segment repeats its headers, so this
    /// is what the switch decides on, once for all of them.
    pub fn super_frame(&self) -> &'a [u8] {
        self.frame
    }

    /// How many segments the super-frame makes (at least one).
    pub fn segments(&self) -> usize {
        self.count
    }

    /// How many are still to be written.
    pub fn remaining(&self) -> usize {
        self.count - self.done
    }

    /// The payload bytes per segment.
    pub fn mss(&self) -> usize {
        self.mss
    }

    /// The length of the headers every segment repeats.
    pub fn header_len(&self) -> usize {
        self.tcp.hdr_len
    }

    /// The length of the largest segment: the first.
    pub fn max_len(&self) -> usize {
        self.tcp.hdr_len + self.mss.min(self.frame.len() - self.tcp.hdr_len)
    }

    /// The length of the next segment, if there is one.
    pub fn next_len(&self) -> Option<usize> {
        (self.done < self.count).then(|| self.tcp.hdr_len + self.mss.min(self.frame.len() - self.next))
    }

    /// Writes the next segment at the start of `out` and returns its length;
    /// `None` when all are written. If `out` is too small nothing is written
    /// and the same segment is next again.
    pub fn next_into(&mut self, out: &mut [u8]) -> Option<Result<usize, TooSmall>> {
        let len = self.next_len()?;
        let Some(out) = out.get_mut(..len) else { return Some(Err(TooSmall { need: len })) };
        let (hl, l4) = (self.tcp.hdr_len, self.tcp.l4);
        let payload = &self.frame[self.next..self.next + (len - hl)];
        let last = self.done + 1 == self.count;
        out[..hl].copy_from_slice(&self.frame[..hl]);
        out[hl..].copy_from_slice(payload);
        if self.tcp.v6 {
            put_u16(out, ETH_LEN + 4, (len - l4) as u16);
        } else {
            put_u16(out, ETH_LEN + 2, (len - ETH_LEN) as u16);
            put_u16(out, ETH_LEN + 4, self.id.wrapping_add(self.done as u16));
            put_u16(out, ETH_LEN + 10, 0);
            let c = Sum::of(&out[ETH_LEN..l4]).finish();
            put_u16(out, ETH_LEN + 10, c);
        }
        if self.tcp.udp {
            put_u16(out, l4 + 4, (len - l4) as u16);
        } else {
            put_u32(out, l4 + 4, self.seq);
            let mut flags = self.flags;
            if !last {
                flags &= !(FIN | PSH);
            }
            if self.done > 0 {
                flags &= !CWR;
            }
            out[l4 + TCP_FLAGS] = flags;
        }
        let at = l4 + self.tcp.csum_offset();
        put_u16(out, at, 0);
        let c = self.pseudo.word((len - l4) as u16).bytes(&out[l4..hl]).bytes(payload).finish();
        // A UDP checksum that comes out 0 is sent as all ones (RFC 768).
        put_u16(out, at, if c == 0 && self.tcp.udp { 0xffff } else { c });
        self.seq = self.seq.wrapping_add(payload.len() as u32);
        self.next += payload.len();
        self.done += 1;
        Some(Ok(len))
    }
}

#[cfg(test)]
mod tests {
    use super::super::headers::tests::{fix_ip_csum, tcp_frame, udp_frame};
    use super::super::headers::{ACK, TCP_CSUM};
    use super::super::vnet::F_NEEDS_CSUM;
    use super::*;

    /// A super-frame as the kernel hands it over: full lengths, IPv4 header
    /// checksum right, the pseudo-header sum in the TCP checksum field.
    fn super_frame(v6: bool, payload: usize, mss: u16, flags: u8) -> (VnetHdr, Vec<u8>) {
        let data: Vec<u8> = (0..payload).map(|i| (i * 7 + 3) as u8).collect();
        let mut f = tcp_frame(v6, 0xffff_f000, 0xfffe, &data);
        let t = Tcp::parse(&f, false).unwrap();
        f[t.l4 + TCP_FLAGS] = flags;
        let tcp_len = (f.len() - t.l4) as u16;
        let ps = t.pseudo(&f).word(tcp_len).fold();
        put_u16(&mut f, t.l4 + TCP_CSUM, ps);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: if v6 { Gso::TcpV6 } else { Gso::TcpV4 },
            hdr_len: t.hdr_len as u16,
            gso_size: mss,
            csum_start: t.l4 as u16,
            csum_offset: 16,
            ..VnetHdr::ZERO
        };
        (hdr, f)
    }

    fn all(s: &mut Segmenter) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        let mut buf = vec![0u8; 70_000];
        while let Some(r) = s.next_into(&mut buf) {
            out.push(buf[..r.unwrap()].to_vec());
        }
        out
    }

    #[test]
    fn cuts_at_mss_and_fixes_every_field() {
        for v6 in [false, true] {
            let (hdr, f) = super_frame(v6, 3000, 1400, ACK | PSH | FIN | CWR);
            let mut s = Segmenter::new(&hdr, &f).unwrap();
            assert_eq!(
                (s.segments(), s.max_len(), s.next_len()),
                (3, s.header_len() + 1400, Some(s.header_len() + 1400))
            );
            let segs = all(&mut s);
            assert_eq!(s.remaining(), 0);
            assert_eq!(segs.iter().map(|x| x.len() - s.header_len()).collect::<Vec<_>>(), [1400, 1400, 200]);
            for (i, seg) in segs.iter().enumerate() {
                let t = Tcp::parse(seg, false).expect("each segment parses");
                assert!(t.tcp_csum_ok(seg) && t.ip_csum_ok(seg), "segment {i} checksums");
                assert_eq!(t.seq(seg), 0xffff_f000u32.wrapping_add(1400 * i as u32));
                let want = match i {
                    0 => ACK | CWR,
                    1 => ACK,
                    _ => ACK | PSH | FIN,
                };
                assert_eq!(t.flags(seg), want, "segment {i} flags");
                if !v6 {
                    assert_eq!(
                        u16_at(seg, ETH_LEN + 4),
                        0xfffeu16.wrapping_add(i as u16),
                        "the id counts up and wraps"
                    );
                }
            }
        }
    }

    #[test]
    fn a_segment_that_does_not_fit_stays_next() {
        let (hdr, f) = super_frame(false, 100, 60, ACK);
        let mut s = Segmenter::new(&hdr, &f).unwrap();
        let mut small = [0u8; 50];
        assert_eq!(s.next_into(&mut small), Some(Err(TooSmall { need: 54 + 60 })));
        assert_eq!(s.remaining(), 2);
        let mut buf = [0u8; 200];
        assert_eq!(s.next_into(&mut buf), Some(Ok(114)));
        assert_eq!(s.next_into(&mut buf), Some(Ok(94)));
        assert_eq!(s.next_into(&mut buf), None);
    }

    #[test]
    fn payload_within_one_mss_is_one_segment() {
        for payload in [0, 1, 1400] {
            let (hdr, f) = super_frame(false, payload, 1400, ACK | PSH);
            let mut s = Segmenter::new(&hdr, &f).unwrap();
            let segs = all(&mut s);
            assert_eq!(segs.len(), 1);
            let mut want = f.clone();
            fix_tcp(&mut want);
            assert_eq!(segs[0], want, "the frame itself, checksum complete");
        }
    }

    fn fix_tcp(f: &mut [u8]) {
        super::super::headers::tests::fix_tcp_csum(f)
    }

    #[test]
    fn completes_a_partial_checksum_in_place() {
        let mut f = tcp_frame(false, 1, 2, b"some payload bytes");
        let good = f.clone();
        let t = Tcp::parse(&f, false).unwrap();
        let ps = t.pseudo(&f).word((f.len() - t.l4) as u16).fold();
        put_u16(&mut f, t.l4 + TCP_CSUM, ps);
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: 16, ..VnetHdr::ZERO };
        match from_tap(&hdr, &mut f) {
            Ok(FromTap::Frame(out)) => assert_eq!(out, &good[..]),
            other => panic!("{other:?}"),
        }
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: 34, csum_offset: (f.len() - 34 - 1) as u16, ..hdr };
        assert_eq!(from_tap(&hdr, &mut f).unwrap_err(), Refusal::ChecksumOffsets);
        // Without NEEDS_CSUM nothing is touched, whatever the offsets say.
        let hdr = VnetHdr { flags: 0, csum_start: 9999, ..VnetHdr::ZERO };
        assert!(matches!(from_tap(&hdr, &mut f), Ok(FromTap::Frame(out)) if out == &good[..]));
    }

    #[test]
    fn refusals() {
        let (hdr, f) = super_frame(false, 3000, 1400, ACK);
        let refused = |h: VnetHdr, f: &[u8]| Segmenter::new(&h, f).map(|_| ()).unwrap_err();
        assert_eq!(refused(VnetHdr { gso: Gso::TcpV6, ..hdr }, &f), Refusal::GsoTypeMismatch);
        assert_eq!(refused(VnetHdr { gso: Gso::UdpL4, ..hdr }, &f), Refusal::GsoTypeMismatch);
        assert_eq!(refused(VnetHdr { gso: Gso::Udp, ..hdr }, &f), Refusal::Ufo);
        assert_eq!(refused(VnetHdr { gso_size: 0, ..hdr }, &f), Refusal::GsoSizeZero);
        assert_eq!(refused(VnetHdr { csum_start: 35, ..hdr }, &f), Refusal::ChecksumOffsets);
        assert_eq!(refused(VnetHdr { csum_offset: 6, ..hdr }, &f), Refusal::ChecksumOffsets);
        assert_eq!(refused(VnetHdr { hdr_len: f.len() as u16 + 1, ..hdr }, &f), Refusal::HdrLenPastEnd);
        // hdr_len is a hint: more than the headers is what a forwarded
        // super-frame comes with, and fine.
        assert!(Segmenter::new(&VnetHdr { hdr_len: 200, ..hdr }, &f).is_ok());
        // Without NEEDS_CSUM the offsets are not looked at.
        assert!(Segmenter::new(&VnetHdr { flags: 0, csum_start: 0, ..hdr }, &f).is_ok());
        let mut opt = f.clone();
        opt[ETH_LEN] = 0x46;
        assert_eq!(refused(hdr, &opt), Refusal::Ipv4Options);
        let mut frag = f.clone();
        frag[ETH_LEN + 6] |= 0x20;
        fix_ip_csum(&mut frag);
        assert_eq!(refused(hdr, &frag), Refusal::Fragment);
        assert_eq!(refused(hdr, &f[..40]), Refusal::Truncated);
    }

    /// A UDP super-frame as a local `UDP_SEGMENT` sender hands it over: the
    /// UDP length and the pseudo-header sum of the whole.
    fn udp_super_frame(v6: bool, payload: usize, gso_size: u16) -> (VnetHdr, Vec<u8>) {
        let data: Vec<u8> = (0..payload).map(|i| (i * 5 + 1) as u8).collect();
        let mut f = udp_frame(v6, 0xfffe, &data);
        let t = Tcp::parse(&f, true).unwrap();
        let ps = t.pseudo(&f).word((f.len() - t.l4) as u16).fold();
        put_u16(&mut f, t.l4 + t.csum_offset(), ps);
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: Gso::UdpL4,
            hdr_len: t.hdr_len as u16,
            gso_size,
            csum_start: t.l4 as u16,
            csum_offset: t.csum_offset() as u16,
            ..VnetHdr::ZERO
        };
        (hdr, f)
    }

    #[test]
    fn cuts_a_udp_super_frame_into_datagrams() {
        for v6 in [false, true] {
            let (hdr, f) = udp_super_frame(v6, 2500, 1000);
            let t = Tcp::parse(&f, true).unwrap();
            let mut s = Segmenter::new(&hdr, &f).unwrap();
            assert_eq!(s.segments(), 3);
            let segs = all(&mut s);
            let payload = &f[t.hdr_len..];
            for (k, g) in segs.iter().enumerate() {
                let want = &payload[k * 1000..(k * 1000 + 1000).min(payload.len())];
                // Each is the datagram a sender would have sent alone.
                let id = if v6 { 0 } else { 0xfffe_u16.wrapping_add(k as u16) };
                assert_eq!(g, &udp_frame(v6, id, want), "v6 {v6} segment {k}");
                let pk = etherparse::SlicedPacket::from_ethernet(g).expect("etherparse reads it");
                assert!(matches!(pk.transport, Some(etherparse::TransportSlice::Udp(_))));
            }
            assert_eq!(segs.iter().map(|g| g.len() - t.hdr_len).collect::<Vec<_>>(), vec![1000, 1000, 500]);
        }
        let (hdr, f) = udp_super_frame(false, 2500, 1000);
        let refused = |h: VnetHdr, f: &[u8]| Segmenter::new(&h, f).map(|_| ()).unwrap_err();
        assert_eq!(refused(VnetHdr { csum_offset: 16, ..hdr }, &f), Refusal::ChecksumOffsets);
        assert_eq!(refused(VnetHdr { gso: Gso::TcpV4, ..hdr }, &f), Refusal::NotTcp);
        let mut short = f.clone();
        put_u16(&mut short, 34 + 4, 100);
        assert_eq!(refused(hdr, &short), Refusal::LengthMismatch);
    }

    #[test]
    fn the_splitter_counts() {
        let mut sp = Splitter::new(VnetHdrSize::Basic);
        let (hdr, f) = super_frame(true, 5000, 1000, ACK);
        let mut read = vec![0u8; 10];
        hdr.emit(&mut read, VnetHdrSize::Basic);
        read.extend_from_slice(&f);
        assert!(matches!(sp.handle(&mut read), Ok(FromTap::Segments(s)) if s.segments() == 5));
        let mut plain = vec![0u8; 10];
        plain.extend_from_slice(&tcp_frame(false, 0, 0, b"x"));
        assert!(matches!(sp.handle(&mut plain), Ok(FromTap::Frame(_))));
        assert_eq!(sp.handle(&mut [0u8; 9]).map(|_| ()), Err(Refusal::VnetTruncated));
        read[1] = 3;
        assert_eq!(sp.handle(&mut read).map(|_| ()), Err(Refusal::Ufo));
        let c = &sp.counters;
        assert_eq!((c.super_frames, c.segments, c.plain, c.completed, c.refused_total()), (1, 5, 1, 0, 2));
        assert_eq!((c.refused(Refusal::Ufo), c.refused(Refusal::VnetTruncated)), (1, 1));
    }

    #[test]
    fn refusal_table_is_complete() {
        for (i, r) in Refusal::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        let names: std::collections::BTreeSet<_> = Refusal::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Refusal::COUNT);
    }
}
