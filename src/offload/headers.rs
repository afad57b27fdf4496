//! Where the headers of an Ethernet/IP/TCP (or UDP) frame are, found once
//! and checked, for both directions of the offloads.
//!
//! Only the plain shape is accepted: an untagged Ethernet header, IPv4
//! without options and not a fragment, or IPv6 without extension headers,
//! then TCP (or, where the caller asks for it, UDP), with the IP length
//! exactly the rest of the frame. Anything else gets a reason, and the
//! offloads leave it alone.

/// Length of an untagged Ethernet header.
pub const ETH_LEN: usize = 14;
/// Length of an IPv4 header without options.
pub const IPV4_LEN: usize = 20;
/// Length of the fixed IPv6 header.
pub const IPV6_LEN: usize = 40;
/// Length of a TCP header without options.
pub const TCP_MIN: usize = 20;
/// Longest TCP header: data offset 15.
pub const TCP_MAX: usize = 60;
/// The longest headers the offloads handle: Ethernet, IPv6, TCP with options.
pub const MAX_HEADERS: usize = ETH_LEN + IPV6_LEN + TCP_MAX;

/// Offset of the TCP checksum in the TCP header (`csum_offset`).
pub const TCP_CSUM: usize = 16;
/// Length of a UDP header.
pub const UDP_LEN: usize = 8;
/// Offset of the UDP checksum in the UDP header (`csum_offset`).
pub const UDP_CSUM: usize = 6;
/// Offset of the TCP flags byte.
pub const TCP_FLAGS: usize = 13;

pub const FIN: u8 = 0x01;
#[cfg(test)]
pub const SYN: u8 = 0x02;
pub const PSH: u8 = 0x08;
pub const ACK: u8 = 0x10;
#[cfg(test)]
pub const ECE: u8 = 0x40;
pub const CWR: u8 = 0x80;

const ETHERTYPE_IPV4: u16 = 0x0800;
const ETHERTYPE_IPV6: u16 = 0x86dd;
const PROTO_TCP: u8 = 6;
const PROTO_UDP: u8 = 17;

/// Why a frame is not one the offloads work on.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Shape {
    /// Ends inside its headers.
    Truncated,
    /// An 802.1Q/802.1ad tag after the addresses.
    VlanTagged,
    /// Neither IPv4 nor IPv6.
    NotIp,
    /// An IP header that contradicts itself or its EtherType.
    BadIpHeader,
    /// IPv4 with options.
    Ipv4Options,
    /// An IPv4 fragment.
    Fragment,
    /// IPv6 with extension headers.
    Ipv6ExtensionHeaders,
    /// IP, but not carrying TCP (nor UDP, where UDP was asked for).
    NotTcp,
    /// A TCP data offset under 5 or past the end.
    BadTcpHeader,
    /// The IP length is not the rest of the frame.
    LengthMismatch,
}

/// The layout of an Ethernet/IP/TCP frame, or Ethernet/IP/UDP where
/// [`Tcp::parse`] was asked for it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Tcp {
    /// IPv6 rather than IPv4.
    pub v6: bool,
    /// UDP rather than TCP.
    pub udp: bool,
    /// Start of the TCP (or UDP) header (`csum_start`).
    pub l4: usize,
    /// End of the TCP (or UDP) header: where the payload starts.
    pub hdr_len: usize,
}

impl Tcp {
    /// Finds the headers of `frame`, which must carry TCP, or with `udp_ok`
    /// TCP or UDP. A UDP length that is not the rest of the frame is a
    /// [`Shape::LengthMismatch`].
    pub fn parse(frame: &[u8], udp_ok: bool) -> Result<Tcp, Shape> {
        let carries = |proto: u8| proto == PROTO_TCP || (udp_ok && proto == PROTO_UDP);
        let ethertype =
            u16::from_be_bytes([*frame.get(12).ok_or(Shape::Truncated)?, *frame.get(13).ok_or(Shape::Truncated)?]);
        // The IP length field, and what it must say for the frame to end
        // where the IP packet does.
        let (v6, proto, l4, ip_len, want) = match ethertype {
            ETHERTYPE_IPV4 => {
                let ip = frame.get(ETH_LEN..ETH_LEN + IPV4_LEN).ok_or(Shape::Truncated)?;
                let ihl = usize::from(ip[0] & 0x0f) * 4;
                if ip[0] >> 4 != 4 || ihl < IPV4_LEN {
                    return Err(Shape::BadIpHeader);
                }
                if !carries(ip[9]) {
                    return Err(Shape::NotTcp);
                }
                if ihl != IPV4_LEN {
                    return Err(Shape::Ipv4Options);
                }
                // More-fragments set, or a non-zero offset.
                if u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0 {
                    return Err(Shape::Fragment);
                }
                (false, ip[9], ETH_LEN + IPV4_LEN, u16::from_be_bytes([ip[2], ip[3]]), frame.len() - ETH_LEN)
            }
            ETHERTYPE_IPV6 => {
                let ip = frame.get(ETH_LEN..ETH_LEN + IPV6_LEN).ok_or(Shape::Truncated)?;
                if ip[0] >> 4 != 6 {
                    return Err(Shape::BadIpHeader);
                }
                match ip[6] {
                    p if carries(p) => {}
                    // Hop-by-hop, routing, fragment, destination options,
                    // AH, mobility, HIP, shim6.
                    0 | 43 | 44 | 60 | 51 | 135 | 139 | 140 => return Err(Shape::Ipv6ExtensionHeaders),
                    _ => return Err(Shape::NotTcp),
                }
                let ip_len = u16::from_be_bytes([ip[4], ip[5]]);
                (true, ip[6], ETH_LEN + IPV6_LEN, ip_len, frame.len() - ETH_LEN - IPV6_LEN)
            }
            0x8100 | 0x88a8 | 0x9100 => return Err(Shape::VlanTagged),
            _ => return Err(Shape::NotIp),
        };
        let udp = proto == PROTO_UDP;
        if udp {
            let h = frame.get(l4..l4 + UDP_LEN).ok_or(Shape::Truncated)?;
            if usize::from(ip_len) != want || usize::from(u16::from_be_bytes([h[4], h[5]])) != frame.len() - l4 {
                return Err(Shape::LengthMismatch);
            }
            return Ok(Tcp { v6, udp, l4, hdr_len: l4 + UDP_LEN });
        }
        let tcp = frame.get(l4..l4 + TCP_MIN).ok_or(Shape::Truncated)?;
        if usize::from(ip_len) != want {
            return Err(Shape::LengthMismatch);
        }
        let doff = usize::from(tcp[12] >> 4) * 4;
        if doff < TCP_MIN || l4 + doff > frame.len() {
            return Err(Shape::BadTcpHeader);
        }
        Ok(Tcp { v6, udp: false, l4, hdr_len: l4 + doff })
    }

    /// The pseudo-header sum without the length: addresses and protocol.
    pub fn pseudo(&self, frame: &[u8]) -> super::checksum::Sum {
        let addrs = if self.v6 { &frame[ETH_LEN + 8..ETH_LEN + 40] } else { &frame[ETH_LEN + 12..ETH_LEN + 20] };
        super::checksum::Sum::of(addrs).word(u16::from(if self.udp { PROTO_UDP } else { PROTO_TCP }))
    }

    /// Where the checksum is, from the start of the TCP (or UDP) header.
    pub fn csum_offset(&self) -> usize {
        if self.udp {
            UDP_CSUM
        } else {
            TCP_CSUM
        }
    }

    /// The TCP flags byte.
    pub fn flags(&self, frame: &[u8]) -> u8 {
        frame[self.l4 + TCP_FLAGS]
    }

    /// The sequence number.
    pub fn seq(&self, frame: &[u8]) -> u32 {
        u32_at(frame, self.l4 + 4)
    }

    /// True if the TCP (or UDP) checksum of `frame` is right. An IPv4
    /// UDP datagram may have none (a zero checksum); over IPv6 it must.
    pub fn tcp_csum_ok(&self, frame: &[u8]) -> bool {
        let seg = &frame[self.l4..];
        if self.udp && !self.v6 && u16_at(seg, UDP_CSUM) == 0 {
            return true;
        }
        self.pseudo(frame).word(seg.len() as u16).bytes(seg).fold() == 0xffff
    }

    /// True if the IPv4 header checksum is right (always for IPv6).
    pub fn ip_csum_ok(&self, frame: &[u8]) -> bool {
        self.v6 || super::checksum::Sum::of(&frame[ETH_LEN..self.l4]).fold() == 0xffff
    }

    /// The two ECN bits of the TOS or traffic class.
    pub fn ecn(&self, frame: &[u8]) -> u8 {
        if self.v6 {
            (frame[ETH_LEN + 1] >> 4) & 3
        } else {
            frame[ETH_LEN + 1] & 3
        }
    }
}

pub fn u16_at(b: &[u8], i: usize) -> u16 {
    u16::from_be_bytes([b[i], b[i + 1]])
}

pub fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_be_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

pub fn put_u16(b: &mut [u8], i: usize, v: u16) {
    b[i..i + 2].copy_from_slice(&v.to_be_bytes());
}

pub fn put_u32(b: &mut [u8], i: usize, v: u32) {
    b[i..i + 4].copy_from_slice(&v.to_be_bytes());
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Ethernet and IP headers, checksum right, of a packet carrying
    /// `proto` and `l4_len` bytes after the IP header.
    fn ip_head(v6: bool, proto: u8, l4_len: usize, id: u16) -> Vec<u8> {
        let mut f = vec![2, 0, 0, 0, 0, 2, 2, 0, 0, 0, 0, 1];
        if v6 {
            f.extend_from_slice(&[0x86, 0xdd, 0x60, 0, 0, 0]);
            f.extend_from_slice(&(l4_len as u16).to_be_bytes());
            f.extend_from_slice(&[proto, 64]);
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1]);
            f.extend_from_slice(&[0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2]);
        } else {
            f.extend_from_slice(&[0x08, 0x00, 0x45, 0]);
            f.extend_from_slice(&((IPV4_LEN + l4_len) as u16).to_be_bytes());
            f.extend_from_slice(&id.to_be_bytes());
            f.extend_from_slice(&[0x40, 0, 64, proto, 0, 0, 192, 0, 2, 1, 192, 0, 2, 2]);
            let c = crate::offload::checksum::Sum::of(&f[ETH_LEN..]).finish();
            put_u16(&mut f, ETH_LEN + 10, c);
        }
        f
    }

    /// A frame of `payload` bytes of TCP over IPv4 (or IPv6), flags ACK,
    /// checksums right, for the unit tests of this module and its siblings.
    pub fn tcp_frame(v6: bool, seq: u32, id: u16, payload: &[u8]) -> Vec<u8> {
        let mut f = ip_head(v6, PROTO_TCP, TCP_MIN + payload.len(), id);
        f.extend_from_slice(&[0x9c, 0x40, 0x01, 0xbb]);
        f.extend_from_slice(&seq.to_be_bytes());
        f.extend_from_slice(&[0, 0, 0x10, 0, 0x50, ACK, 0x01, 0xf6, 0, 0, 0, 0]);
        f.extend_from_slice(payload);
        fix_tcp_csum(&mut f);
        f
    }

    /// A frame of `payload` bytes of UDP over IPv4 (or IPv6), checksums
    /// right.
    pub fn udp_frame(v6: bool, id: u16, payload: &[u8]) -> Vec<u8> {
        let udp_len = UDP_LEN + payload.len();
        let mut f = ip_head(v6, PROTO_UDP, udp_len, id);
        f.extend_from_slice(&[0x9c, 0x40, 0x14, 0x51]);
        f.extend_from_slice(&(udp_len as u16).to_be_bytes());
        f.extend_from_slice(&[0, 0]);
        f.extend_from_slice(payload);
        fix_tcp_csum(&mut f);
        f
    }

    /// Recomputes the TCP (or UDP) checksum after a test changed the frame.
    pub fn fix_tcp_csum(f: &mut [u8]) {
        let t = Tcp::parse(f, true).expect("a TCP or UDP frame");
        put_u16(f, t.l4 + t.csum_offset(), 0);
        let seg = &f[t.l4..];
        let c = t.pseudo(f).word(seg.len() as u16).bytes(seg).finish();
        // A computed UDP checksum of zero is sent as all ones (RFC 768).
        let c = if t.udp && c == 0 { 0xffff } else { c };
        put_u16(f, t.l4 + t.csum_offset(), c);
    }

    /// Recomputes the IPv4 header checksum after a test changed it.
    pub fn fix_ip_csum(f: &mut [u8]) {
        put_u16(f, ETH_LEN + 10, 0);
        let ihl = usize::from(f[ETH_LEN] & 0x0f) * 4;
        let c = crate::offload::checksum::Sum::of(&f[ETH_LEN..ETH_LEN + ihl]).finish();
        put_u16(f, ETH_LEN + 10, c);
    }

    #[test]
    fn finds_the_headers() {
        let f = tcp_frame(false, 7, 1, b"hello");
        let t = Tcp::parse(&f, false).unwrap();
        assert_eq!(t, Tcp { v6: false, udp: false, l4: 34, hdr_len: 54 });
        assert!(t.tcp_csum_ok(&f) && t.ip_csum_ok(&f));
        assert_eq!((t.seq(&f), t.flags(&f), t.ecn(&f)), (7, ACK, 0));
        let f = tcp_frame(true, 7, 0, b"hello");
        assert_eq!(Tcp::parse(&f, false), Ok(Tcp { v6: true, udp: false, l4: 54, hdr_len: 74 }));
        assert!(Tcp::parse(&f, false).unwrap().tcp_csum_ok(&f));
    }

    #[test]
    fn finds_udp_only_where_asked() {
        for v6 in [false, true] {
            let f = udp_frame(v6, 1, b"hello");
            assert_eq!(Tcp::parse(&f, false), Err(Shape::NotTcp));
            let t = Tcp::parse(&f, true).unwrap();
            let l4 = if v6 { 54 } else { 34 };
            assert_eq!(t, Tcp { v6, udp: true, l4, hdr_len: l4 + 8 });
            assert!(t.tcp_csum_ok(&f) && t.ip_csum_ok(&f));
            assert_eq!(t.csum_offset(), UDP_CSUM);
            // A UDP length that is not the rest of the frame.
            let mut g = f.clone();
            put_u16(&mut g, l4 + 4, 12);
            assert_eq!(Tcp::parse(&g, true), Err(Shape::LengthMismatch));
            assert_eq!(Tcp::parse(&f[..l4 + 4], true), Err(Shape::Truncated));
            // A damaged checksum; and no checksum, which IPv4 allows.
            let mut g = f.clone();
            g[l4 + 9] ^= 1;
            assert!(!t.tcp_csum_ok(&g));
            put_u16(&mut g, l4 + UDP_CSUM, 0);
            assert_eq!(t.tcp_csum_ok(&g), !v6);
        }
        let mut icmp = tcp_frame(false, 0, 0, b"data");
        icmp[14 + 9] = 1;
        assert_eq!(Tcp::parse(&icmp, true), Err(Shape::NotTcp));
    }

    #[test]
    fn names_every_shape_it_refuses() {
        let v4 = tcp_frame(false, 0, 0, b"data");
        let v6 = tcp_frame(true, 0, 0, b"data");
        let with = |base: &[u8], i: usize, b: u8| {
            let mut f = base.to_vec();
            f[i] = b;
            f
        };
        assert_eq!(Tcp::parse(&v4[..13], false), Err(Shape::Truncated));
        assert_eq!(Tcp::parse(&v4[..30], false), Err(Shape::Truncated));
        assert_eq!(Tcp::parse(&v6[..50], false), Err(Shape::Truncated));
        assert_eq!(Tcp::parse(&with(&v4, 12, 0x81), false), Err(Shape::VlanTagged));
        assert_eq!(Tcp::parse(&with(&v4, 13, 0x06), false), Err(Shape::NotIp));
        assert_eq!(Tcp::parse(&with(&v4, 14, 0x65), false), Err(Shape::BadIpHeader));
        assert_eq!(Tcp::parse(&with(&v4, 14, 0x44), false), Err(Shape::BadIpHeader));
        assert_eq!(Tcp::parse(&with(&v6, 14, 0x40), false), Err(Shape::BadIpHeader));
        assert_eq!(Tcp::parse(&with(&v4, 14, 0x46), false), Err(Shape::Ipv4Options));
        assert_eq!(Tcp::parse(&with(&v4, 14 + 6, 0x60), false), Err(Shape::Fragment));
        assert_eq!(Tcp::parse(&with(&v4, 14 + 7, 0x01), false), Err(Shape::Fragment));
        assert_eq!(Tcp::parse(&with(&v4, 14 + 9, 17), false), Err(Shape::NotTcp));
        assert_eq!(Tcp::parse(&with(&v6, 14 + 6, 17), false), Err(Shape::NotTcp));
        assert_eq!(Tcp::parse(&with(&v6, 14 + 6, 0), false), Err(Shape::Ipv6ExtensionHeaders));
        assert_eq!(Tcp::parse(&with(&v6, 14 + 6, 44), false), Err(Shape::Ipv6ExtensionHeaders));
        assert_eq!(Tcp::parse(&with(&v4, 14 + 3, 43), false), Err(Shape::LengthMismatch));
        assert_eq!(Tcp::parse(&with(&v6, 14 + 5, 23), false), Err(Shape::LengthMismatch));
        assert_eq!(Tcp::parse(&with(&v4, 34 + 12, 0x40), false), Err(Shape::BadTcpHeader));
        assert_eq!(Tcp::parse(&with(&v4, 34 + 12, 0x70), false), Err(Shape::BadTcpHeader));
        let mut padded = v4.clone();
        padded.push(0);
        assert_eq!(Tcp::parse(&padded, false), Err(Shape::LengthMismatch));
    }
}
