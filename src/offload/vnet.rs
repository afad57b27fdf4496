//! The virtio-net header a tap opened with `IFF_VNET_HDR` puts in front of
//! every frame, both ways: `struct virtio_net_hdr` of
//! `include/uapi/linux/virtio_net.h`, 10 bytes, or 12 with the trailing
//! `num_buffers` when `TUNSETVNETHDRSZ` says 12.
//!
//! This file is the only place that knows its byte layout. Fields are
//! little-endian: that is what a tap uses by default on a little-endian
//! host (x86, arm64), unless `TUNSETVNETBE` says otherwise; a big-endian
//! host would need `TUNSETVNETLE` before these offloads are switched on.
//! [`VnetHdr::parse`] checks what can be checked without the frame (known
//! flags, a known GSO type, ECN only with TCP); whether the offsets fit the
//! frame is the business of the code that reads the frame.

use std::fmt;

/// How many bytes the header takes: what `TUNSETVNETHDRSZ` was given.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum VnetHdrSize {
    /// `struct virtio_net_hdr`: 10 bytes, the tap's default.
    #[default]
    Basic,
    /// `struct virtio_net_hdr_mrg_rxbuf`: 12 bytes, `num_buffers` last.
    WithNumBuffers,
}

impl VnetHdrSize {
    /// The size in bytes.
    pub const fn len(self) -> usize {
        match self {
            VnetHdrSize::Basic => 10,
            VnetHdrSize::WithNumBuffers => 12,
        }
    }

    /// Never true; here because `len` is.
    pub const fn is_empty(self) -> bool {
        false
    }
}

/// `VIRTIO_NET_HDR_F_NEEDS_CSUM`: the checksum from `csum_start` to the end
/// is partial and belongs at `csum_start + csum_offset`.
pub const F_NEEDS_CSUM: u8 = 1;
/// `VIRTIO_NET_HDR_F_DATA_VALID`: the checksums were already verified.
pub const F_DATA_VALID: u8 = 2;
const KNOWN_FLAGS: u8 = F_NEEDS_CSUM | F_DATA_VALID;

const GSO_NONE: u8 = 0;
const GSO_TCPV4: u8 = 1;
const GSO_UDP: u8 = 3;
const GSO_TCPV6: u8 = 4;
const GSO_UDP_L4: u8 = 5;
/// `VIRTIO_NET_HDR_GSO_ECN`: the super-frame's TCP header has CWR set.
const GSO_ECN: u8 = 0x80;

/// The kind of segmentation a frame asks for (`gso_type` without the ECN bit).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum Gso {
    /// An ordinary frame.
    #[default]
    None,
    /// TCP over IPv4, to be cut into `gso_size` payloads.
    TcpV4,
    /// TCP over IPv6.
    TcpV6,
    /// UDP fragmentation offload (`VIRTIO_NET_HDR_GSO_UDP`, UFO).
    Udp,
    /// UDP segmentation (`VIRTIO_NET_HDR_GSO_UDP_L4`, USO).
    UdpL4,
}

/// A parsed virtio-net header.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct VnetHdr {
    /// [`F_NEEDS_CSUM`] and/or [`F_DATA_VALID`].
    pub flags: u8,
    /// The segmentation asked for.
    pub gso: Gso,
    /// The ECN bit of `gso_type`: the first segment alone keeps CWR.
    pub ecn: bool,
    /// Length of the headers. From a tap this is only a hint (the kernel
    /// puts the linear part of its buffer there, which may be more).
    pub hdr_len: u16,
    /// Payload bytes per segment.
    pub gso_size: u16,
    /// Where the checksummed part starts, from the start of the frame.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`.
    pub csum_offset: u16,
    /// Only in the 12-byte form; taps leave it alone.
    pub num_buffers: u16,
}

/// Why bytes are not a virtio-net header we understand.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum VnetError {
    /// Fewer bytes than the header size.
    Truncated,
    /// Flag bits other than `NEEDS_CSUM` and `DATA_VALID`.
    UnknownFlags(u8),
    /// A `gso_type` that is not one of the five, or ECN without TCP.
    UnknownGsoType(u8),
}

impl fmt::Display for VnetError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            VnetError::Truncated => f.write_str("shorter than a virtio-net header"),
            VnetError::UnknownFlags(x) => write!(f, "unknown virtio-net header flags {x:#04x}"),
            VnetError::UnknownGsoType(x) => write!(f, "unknown virtio-net GSO type {x:#04x}"),
        }
    }
}

impl std::error::Error for VnetError {}

impl VnetHdr {
    /// The header of an ordinary frame: all zero.
    pub const ZERO: VnetHdr = VnetHdr {
        flags: 0,
        gso: Gso::None,
        ecn: false,
        hdr_len: 0,
        gso_size: 0,
        csum_start: 0,
        csum_offset: 0,
        num_buffers: 0,
    };

    /// Reads a header of `size` bytes from the front of `buf`.
    pub fn parse(buf: &[u8], size: VnetHdrSize) -> Result<VnetHdr, VnetError> {
        let b = buf.get(..size.len()).ok_or(VnetError::Truncated)?;
        let u16_at = |i: usize| u16::from_le_bytes([b[i], b[i + 1]]);
        let flags = b[0];
        if flags & !KNOWN_FLAGS != 0 {
            return Err(VnetError::UnknownFlags(flags));
        }
        let ecn = b[1] & GSO_ECN != 0;
        let gso = match b[1] & !GSO_ECN {
            GSO_NONE => Gso::None,
            GSO_TCPV4 => Gso::TcpV4,
            GSO_TCPV6 => Gso::TcpV6,
            GSO_UDP => Gso::Udp,
            GSO_UDP_L4 => Gso::UdpL4,
            _ => return Err(VnetError::UnknownGsoType(b[1])),
        };
        if ecn && !matches!(gso, Gso::TcpV4 | Gso::TcpV6) {
            return Err(VnetError::UnknownGsoType(b[1]));
        }
        Ok(VnetHdr {
            flags,
            gso,
            ecn,
            hdr_len: u16_at(2),
            gso_size: u16_at(4),
            csum_start: u16_at(6),
            csum_offset: u16_at(8),
            num_buffers: if size == VnetHdrSize::WithNumBuffers { u16_at(10) } else { 0 },
        })
    }

    /// Writes the header as `size` bytes at the front of `out`, which must
    /// hold them. Returns `size.len()`.
    pub fn emit(&self, out: &mut [u8], size: VnetHdrSize) -> usize {
        let b = &mut out[..size.len()];
        b[0] = self.flags;
        b[1] = self.gso_type();
        b[2..4].copy_from_slice(&self.hdr_len.to_le_bytes());
        b[4..6].copy_from_slice(&self.gso_size.to_le_bytes());
        b[6..8].copy_from_slice(&self.csum_start.to_le_bytes());
        b[8..10].copy_from_slice(&self.csum_offset.to_le_bytes());
        if size == VnetHdrSize::WithNumBuffers {
            b[10..12].copy_from_slice(&self.num_buffers.to_le_bytes());
        }
        size.len()
    }

    /// The `gso_type` byte.
    pub fn gso_type(&self) -> u8 {
        let base = match self.gso {
            Gso::None => GSO_NONE,
            Gso::TcpV4 => GSO_TCPV4,
            Gso::TcpV6 => GSO_TCPV6,
            Gso::Udp => GSO_UDP,
            Gso::UdpL4 => GSO_UDP_L4,
        };
        base | if self.ecn { GSO_ECN } else { 0 }
    }

    /// True if the checksum is partial and must be completed.
    pub fn needs_csum(&self) -> bool {
        self.flags & F_NEEDS_CSUM != 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layout_is_little_endian_and_round_trips() {
        let h = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: Gso::TcpV4,
            ecn: true,
            hdr_len: 0x0136,
            gso_size: 0x05a8,
            csum_start: 0x0022,
            csum_offset: 16,
            num_buffers: 0x0201,
        };
        let mut b = [0u8; 12];
        assert_eq!(h.emit(&mut b, VnetHdrSize::WithNumBuffers), 12);
        assert_eq!(b, [1, 0x81, 0x36, 0x01, 0xa8, 0x05, 0x22, 0, 16, 0, 0x01, 0x02]);
        assert_eq!(VnetHdr::parse(&b, VnetHdrSize::WithNumBuffers), Ok(h));
        // The short form never reads or writes num_buffers.
        let mut s = [0xeeu8; 12];
        assert_eq!(h.emit(&mut s, VnetHdrSize::Basic), 10);
        assert_eq!(&s[10..], &[0xee, 0xee]);
        assert_eq!(VnetHdr::parse(&s, VnetHdrSize::Basic), Ok(VnetHdr { num_buffers: 0, ..h }));
    }

    #[test]
    fn every_gso_type_parses_to_itself() {
        for (byte, gso, ecn) in [
            (0, Gso::None, false),
            (1, Gso::TcpV4, false),
            (3, Gso::Udp, false),
            (4, Gso::TcpV6, false),
            (5, Gso::UdpL4, false),
            (0x81, Gso::TcpV4, true),
            (0x84, Gso::TcpV6, true),
        ] {
            let h = VnetHdr::parse(&[0, byte, 0, 0, 0, 0, 0, 0, 0, 0], VnetHdrSize::Basic).unwrap();
            assert_eq!((h.gso, h.ecn, h.gso_type()), (gso, ecn, byte));
        }
    }

    #[test]
    fn refuses_what_it_does_not_know() {
        let hdr = |flags: u8, gso: u8| [flags, gso, 0, 0, 0, 0, 0, 0, 0, 0];
        assert_eq!(VnetHdr::parse(&hdr(0, 0)[..9], VnetHdrSize::Basic), Err(VnetError::Truncated));
        assert_eq!(VnetHdr::parse(&hdr(0, 0), VnetHdrSize::WithNumBuffers), Err(VnetError::Truncated));
        assert_eq!(VnetHdr::parse(&hdr(4, 0), VnetHdrSize::Basic), Err(VnetError::UnknownFlags(4)));
        for t in [2u8, 6, 0x7f, 0x80, 0x83, 0x85, 0xff] {
            assert_eq!(VnetHdr::parse(&hdr(0, t), VnetHdrSize::Basic), Err(VnetError::UnknownGsoType(t)));
        }
        assert_eq!(VnetHdr::parse(&hdr(3, 0), VnetHdrSize::Basic).map(|h| h.flags), Ok(3));
    }

    #[test]
    fn zero_is_all_zero_bytes() {
        let mut b = [0xffu8; 12];
        VnetHdr::ZERO.emit(&mut b, VnetHdrSize::WithNumBuffers);
        assert_eq!(b, [0; 12]);
        assert_eq!(VnetHdr::default(), VnetHdr::ZERO);
    }
}
