//! The tap offloads (`rrqnet::offload`) checked against an independent
//! parser, etherparse: every segment the splitter writes parses, its IPv4
//! header and TCP checksums are right, its sequence numbers, ids and flags
//! are what Linux's own segmentation makes; coalescing the segments of a
//! kernel super-frame gives that super-frame back byte for byte, header
//! included, for IPv4 and IPv6 over many sizes and MSS values (drawn from a
//! small deterministic PRNG); every refusal and every reason to pass a frame
//! as it came is met; neither direction allocates per frame. UDP datagrams
//! the same way: joined into a USO super-frame and cut back, byte for byte,
//! both ways round. The fuzz seeds
//! under fuzz/seeds/vnet are made here too, and checked to be current.

use std::path::Path;

use etherparse::{
    EtherType, Ethernet2Header, IpDscp, IpEcn, IpNumber, Ipv4Header, Ipv6FlowLabel, Ipv6Header, NetSlice, SlicedPacket,
    TcpHeader, TransportSlice, UdpHeader,
};
use rrqnet::offload::vnet::{F_DATA_VALID, F_NEEDS_CSUM};
use rrqnet::offload::{
    Break, Coalescer, FromTap, Gso, Output, Placement, Plain, Refusal, Segmenter, Splitter, Super, VnetHdr,
    VnetHdrSize, MAX_IP_LEN,
};

/// xorshift64*: small, deterministic, good enough to pick sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `lo..=hi`.
    fn range(&mut self, lo: usize, hi: usize) -> usize {
        lo + (self.next() % (hi - lo + 1) as u64) as usize
    }

    fn bool(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

const MAC_A: [u8; 6] = [2, 0, 0, 0, 0, 1];
const MAC_B: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Everything about a TCP flow and one of its frames that a test varies.
#[derive(Clone, Debug)]
struct Flow {
    v6: bool,
    src_port: u16,
    seq: u32,
    ack: u32,
    window: u16,
    /// TCP options, a multiple of 4 bytes, at most 40.
    options: Vec<u8>,
    /// IPv4 id.
    id: u16,
    df: bool,
    ttl: u8,
    dscp: u8,
    ecn: u8,
    flow_label: u32,
    psh: bool,
    fin: bool,
    cwr: bool,
    ece: bool,
    syn: bool,
}

impl Flow {
    fn new(v6: bool) -> Flow {
        Flow {
            v6,
            src_port: 40000,
            seq: 1_000_000,
            ack: 77,
            window: 502,
            options: vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2], // NOP NOP timestamps
            id: 0x1234,
            df: true,
            ttl: 64,
            dscp: 0,
            ecn: 0,
            flow_label: 0x12345,
            psh: false,
            fin: false,
            cwr: false,
            ece: false,
            syn: false,
        }
    }

    fn random(rng: &mut Rng, v6: bool) -> Flow {
        let mut f = Flow::new(v6);
        f.src_port = rng.range(1024, 65535) as u16;
        f.seq = rng.next() as u32;
        f.ack = rng.next() as u32;
        f.window = rng.next() as u16;
        f.options = (0..rng.range(0, 10) * 4).map(|_| 1).collect(); // NOPs
        f.id = rng.next() as u16;
        f.df = rng.bool();
        f.ttl = rng.range(1, 255) as u8;
        f.dscp = rng.range(0, 63) as u8;
        f.ecn = rng.range(0, 2) as u8; // not CE
        f.flow_label = rng.next() as u32 & 0xfffff;
        f.psh = rng.bool();
        f
    }

    fn tcp(&self) -> TcpHeader {
        let mut t = TcpHeader::new(self.src_port, 443, self.seq, self.window);
        t.ack = true;
        t.acknowledgment_number = self.ack;
        (t.psh, t.fin, t.cwr, t.ece, t.syn) = (self.psh, self.fin, self.cwr, self.ece, self.syn);
        t.set_options_raw(&self.options).unwrap();
        t
    }

    fn ipv4(&self, payload_len: usize) -> Ipv4Header {
        let mut ip =
            Ipv4Header::new(payload_len as u16, self.ttl, IpNumber::TCP, [192, 0, 2, 1], [192, 0, 2, 2]).unwrap();
        ip.identification = self.id;
        ip.dont_fragment = self.df;
        ip.dscp = IpDscp::try_new(self.dscp).unwrap();
        ip.ecn = IpEcn::try_new(self.ecn).unwrap();
        ip.header_checksum = ip.calc_header_checksum();
        ip
    }

    fn ipv6(&self, payload_len: usize) -> Ipv6Header {
        Ipv6Header {
            traffic_class: (self.dscp << 2) | self.ecn,
            flow_label: Ipv6FlowLabel::try_new(self.flow_label).unwrap(),
            payload_length: payload_len as u16,
            next_header: IpNumber::TCP,
            hop_limit: self.ttl,
            source: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            destination: [0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2],
        }
    }

    /// An ordinary frame, checksums computed by etherparse.
    fn frame(&self, payload: &[u8]) -> Vec<u8> {
        let mut tcp = self.tcp();
        let mut out = Vec::new();
        let ether_type = if self.v6 { EtherType::IPV6 } else { EtherType::IPV4 };
        Ethernet2Header { source: MAC_A, destination: MAC_B, ether_type }.write(&mut out).unwrap();
        let l4_len = tcp.header_len() + payload.len();
        if self.v6 {
            let ip = self.ipv6(l4_len);
            tcp.checksum = tcp.calc_checksum_ipv6(&ip, payload).unwrap();
            ip.write(&mut out).unwrap();
        } else {
            let ip = self.ipv4(l4_len);
            tcp.checksum = tcp.calc_checksum_ipv4(&ip, payload).unwrap();
            ip.write(&mut out).unwrap();
        }
        tcp.write(&mut out).unwrap();
        out.extend_from_slice(payload);
        out
    }

    /// A super-frame as a tap with TSO hands it over: IP lengths of the
    /// whole, the IPv4 header checksum right, the pseudo-header sum (not
    /// complemented) in the TCP checksum field, and the virtio-net header
    /// Linux's `virtio_net_hdr_from_skb` writes for it.
    fn super_frame(&self, payload: &[u8], mss: u16) -> (VnetHdr, Vec<u8>) {
        let mut f = self.frame(payload);
        let l4 = if self.v6 { 54 } else { 34 };
        let hdr_len = l4 + self.tcp().header_len();
        let sum = pseudo_sum(&f, self.v6, (f.len() - l4) as u32);
        f[l4 + 16..l4 + 18].copy_from_slice(&sum.to_be_bytes());
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: if self.v6 { Gso::TcpV6 } else { Gso::TcpV4 },
            ecn: self.cwr,
            hdr_len: hdr_len as u16,
            gso_size: mss,
            csum_start: l4 as u16,
            csum_offset: 16,
            num_buffers: 0,
        };
        (hdr, f)
    }
}

/// The TCP pseudo-header sum, folded, word by word as RFC 793 and RFC 8200
/// define it: written here, apart from the library's checksum code.
fn pseudo_sum(frame: &[u8], v6: bool, tcp_len: u32) -> u16 {
    let addrs = if v6 { &frame[22..54] } else { &frame[26..34] };
    let mut s: u32 = addrs.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    s += 6 + (tcp_len >> 16) + (tcp_len & 0xffff);
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The header and the frame, as one read from the tap.
fn tap_read(hdr: &VnetHdr, frame: &[u8], size: VnetHdrSize) -> Vec<u8> {
    let mut v = vec![0u8; size.len()];
    hdr.emit(&mut v, size);
    v.extend_from_slice(frame);
    v
}

fn payload(rng: &mut Rng, len: usize) -> Vec<u8> {
    (0..len).map(|_| rng.next() as u8).collect()
}

/// Every segment of `s`, each into its own buffer.
fn segments(mut s: Segmenter) -> Vec<Vec<u8>> {
    let mut out = Vec::with_capacity(s.segments());
    let mut buf = vec![0u8; s.max_len()];
    while let Some(n) = s.next_into(&mut buf) {
        out.push(buf[..n.unwrap()].to_vec());
    }
    out
}

fn split(size: VnetHdrSize, read: &mut [u8]) -> Vec<Vec<u8>> {
    match Splitter::new(size).handle(read) {
        Ok(FromTap::Segments(s)) => segments(s),
        Ok(FromTap::Frame(f)) => panic!("not split: a {}-byte frame", f.len()),
        Err(e) => panic!("refused: {e}"),
    }
}

/// Checks the segments of `flow`'s super-frame with `payload` and `mss`
/// the way the kernel's GSO makes them, through etherparse.
fn check_segments(flow: &Flow, payload: &[u8], mss: usize, segs: &[Vec<u8>]) {
    let n = payload.len().div_ceil(mss).max(1);
    assert_eq!(segs.len(), n, "segment count for {} bytes at mss {mss}", payload.len());
    let mut joined = Vec::new();
    for (i, seg) in segs.iter().enumerate() {
        let (first, last) = (i == 0, i + 1 == n);
        let p = SlicedPacket::from_ethernet(seg).expect("a segment parses");
        let Some(TransportSlice::Tcp(tcp)) = p.transport else { panic!("segment {i} is not TCP") };
        match p.net {
            Some(NetSlice::Ipv4(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(h.header_checksum, h.calc_header_checksum(), "IPv4 header checksum of segment {i}");
                assert_eq!(usize::from(h.total_len), seg.len() - 14);
                assert_eq!(h.identification, flow.id.wrapping_add(i as u16), "ids count up");
                assert_eq!((h.dont_fragment, h.time_to_live), (flow.df, flow.ttl));
                assert_eq!((h.dscp.value(), h.ecn.value()), (flow.dscp, flow.ecn));
                assert!(ip.extensions().is_empty() && !h.more_fragments);
                let want = tcp.calc_checksum_ipv4(h.source, h.destination).unwrap();
                assert_eq!(tcp.checksum(), want, "TCP checksum of segment {i}");
            }
            Some(NetSlice::Ipv6(ip)) => {
                let h = ip.header().to_header();
                assert_eq!(usize::from(h.payload_length), seg.len() - 54);
                assert_eq!(
                    (h.hop_limit, h.flow_label.value(), h.traffic_class),
                    (flow.ttl, flow.flow_label, (flow.dscp << 2) | flow.ecn)
                );
                let want = tcp.calc_checksum_ipv6(h.source, h.destination).unwrap();
                assert_eq!(tcp.checksum(), want, "TCP checksum of segment {i}");
            }
            _ => panic!("segment {i} is not IP"),
        }
        assert_eq!(tcp.sequence_number(), flow.seq.wrapping_add((i * mss) as u32), "sequence of segment {i}");
        assert_eq!(
            (tcp.acknowledgment_number(), tcp.window_size(), tcp.options()),
            (flow.ack, flow.window, &flow.options[..])
        );
        assert!(tcp.ack());
        assert_eq!(tcp.psh(), flow.psh && last, "PSH on the last segment only");
        assert_eq!(tcp.fin(), flow.fin && last, "FIN on the last segment only");
        assert_eq!(tcp.cwr(), flow.cwr && first, "CWR on the first segment only");
        assert_eq!(tcp.ece(), flow.ece);
        let len = tcp.payload().len();
        assert!(if last { len <= mss } else { len == mss }, "segment {i} carries {len} at mss {mss}");
        joined.extend_from_slice(tcp.payload());
    }
    assert!(joined == payload, "the payloads put together are the super-frame's");
}

/// Coalesces `frames` as one batch and writes every output.
fn coalesce(size: VnetHdrSize, frames: &[Vec<u8>]) -> (Coalescer, Vec<(Output, Vec<u8>)>) {
    coalesce_with(Coalescer::new(size, frames.len()), frames)
}

/// [`coalesce`] with a coalescer made by the caller.
fn coalesce_with(mut c: Coalescer, frames: &[Vec<u8>]) -> (Coalescer, Vec<(Output, Vec<u8>)>) {
    for f in frames {
        c.push(f).unwrap();
    }
    let outs = c
        .outputs()
        .map(|o| {
            let mut buf = vec![0u8; 70_000];
            let n = match o {
                Output::Frame(i) => c.write_frame(&frames[i], &mut buf).unwrap(),
                Output::Super(s) => c.write(&s, |i| &frames[i], &mut buf).unwrap(),
            };
            buf.truncate(n);
            (o, buf)
        })
        .collect();
    (c, outs)
}

fn the_super(outs: &[(Output, Vec<u8>)]) -> (Super, &[u8]) {
    match outs {
        [(Output::Super(s), bytes)] => (*s, bytes),
        other => panic!("not one super-frame: {:?}", other.iter().map(|o| o.0).collect::<Vec<_>>()),
    }
}

#[test]
fn split_segments_are_what_the_kernel_makes() {
    let mut rng = Rng(0x5eed_0001);
    for case in 0..400 {
        let v6 = case % 2 == 1;
        let mut flow = Flow::random(&mut rng, v6);
        flow.fin = rng.range(0, 3) == 0;
        flow.cwr = rng.range(0, 3) == 0;
        flow.ece = flow.cwr && rng.bool();
        let hl = if v6 { 54 } else { 34 } + 20 + flow.options.len();
        let len = rng.range(0, MAX_IP_LEN + 14 - hl);
        let mss = rng.range((len / 3000).max(1), 9000);
        let data = payload(&mut rng, len);
        let size = if rng.bool() { VnetHdrSize::Basic } else { VnetHdrSize::WithNumBuffers };
        let (hdr, f) = flow.super_frame(&data, mss as u16);
        let segs = split(size, &mut tap_read(&hdr, &f, size));
        check_segments(&flow, &data, mss, &segs);
    }
}

#[test]
fn coalescing_the_split_gives_the_super_frame_back() {
    let mut rng = Rng(0x5eed_0002);
    let mut sizes_seen = (usize::MAX, 0);
    for case in 0..600 {
        let v6 = case % 2 == 1;
        let flow = Flow::random(&mut rng, v6);
        let hl = if v6 { 54 } else { 34 } + 20 + flow.options.len();
        // Mostly real MSS values, sometimes tiny ones; always two segments
        // or more, or there is nothing to coalesce.
        let mss = match rng.range(0, 9) {
            0 => rng.range(1, 64),
            1 => rng.range(64, 9000),
            _ => [536, 1220, 1340, 1348, 1388, 1400, 1428, 1448, 1460][rng.range(0, 8)],
        };
        let max = MAX_IP_LEN + 14 - hl;
        let len = rng.range(mss + 1, max.min(mss * 2500));
        sizes_seen = (sizes_seen.0.min(len), sizes_seen.1.max(len));
        let data = payload(&mut rng, len);
        let size = if case % 4 < 2 { VnetHdrSize::Basic } else { VnetHdrSize::WithNumBuffers };
        let (hdr, f) = flow.super_frame(&data, mss as u16);
        let read = tap_read(&hdr, &f, size);
        let segs = split(size, &mut read.clone());
        let (c, outs) = coalesce(size, &segs);
        let (s, bytes) = the_super(&outs);
        assert_eq!((s.segments, usize::from(s.gso_size), s.first), (segs.len(), mss, 0));
        assert!(bytes == &read[..], "case {case}: v6 {v6}, {len} bytes at mss {mss}: not the same super-frame");
        assert_eq!((c.counters.super_frames, c.counters.joined), (1, segs.len() as u64 - 1));
    }
    assert!(sizes_seen.0 < 100 && sizes_seen.1 > 60_000, "sizes drawn: {sizes_seen:?}");
}

#[test]
fn splitting_the_coalesced_gives_the_segments_back() {
    // Segments built by etherparse, as a peer sends them.
    let mut rng = Rng(0x5eed_0003);
    for case in 0..200 {
        let v6 = case % 2 == 1;
        let mut flow = Flow::random(&mut rng, v6);
        let mss = rng.range(1, 1460);
        let n = rng.range(2, 40);
        let last = rng.range(1, mss);
        let mut frames = Vec::new();
        for i in 0..n {
            let mut f = flow.clone();
            f.psh = flow.psh && i + 1 == n;
            frames.push(f.frame(&payload(&mut rng, if i + 1 == n { last } else { mss })));
            flow.seq = flow.seq.wrapping_add(mss as u32);
            flow.id = flow.id.wrapping_add(1);
        }
        let size = VnetHdrSize::Basic;
        let (_, outs) = coalesce(size, &frames);
        let (s, bytes) = the_super(&outs);
        assert_eq!(s.segments, n);
        let mut read = bytes.to_vec();
        assert!(split(size, &mut read) == frames, "case {case}: the segments come back");
    }
}

/// A UDP datagram of `flow`'s addresses, TTL, TOS, id and flow label from
/// port `from` to port `to`, its checksum computed by etherparse.
fn udp_datagram(flow: &Flow, from: u16, to: u16, payload: &[u8]) -> Vec<u8> {
    let mut udp =
        UdpHeader { source_port: from, destination_port: to, length: (8 + payload.len()) as u16, checksum: 0 };
    let mut out = Vec::new();
    let ether_type = if flow.v6 { EtherType::IPV6 } else { EtherType::IPV4 };
    Ethernet2Header { source: MAC_A, destination: MAC_B, ether_type }.write(&mut out).unwrap();
    if flow.v6 {
        let mut ip = flow.ipv6(8 + payload.len());
        ip.next_header = IpNumber::UDP;
        udp.checksum = udp.calc_checksum_ipv6(&ip, payload).unwrap();
        ip.write(&mut out).unwrap();
    } else {
        let mut ip = flow.ipv4(8 + payload.len());
        ip.protocol = IpNumber::UDP;
        ip.header_checksum = ip.calc_header_checksum();
        udp.checksum = udp.calc_checksum_ipv4(&ip, payload).unwrap();
        ip.write(&mut out).unwrap();
    }
    udp.write(&mut out).unwrap();
    out.extend_from_slice(payload);
    out
}

#[test]
fn udp_datagrams_come_back_through_coalesce_and_split() {
    let mut rng = Rng(0x5eed_0006);
    for case in 0..400 {
        let v6 = case % 2 == 1;
        let mut flow = Flow::random(&mut rng, v6);
        flow.df = true;
        let port = rng.range(1024, 65535) as u16;
        let gso = match rng.range(0, 3) {
            0 => rng.range(1, 64),
            1 => rng.range(64, 1472),
            _ => [64, 100, 512, 1200, 1350, 1452][rng.range(0, 5)],
        };
        // As many as the kernel takes in one and fit in 64 KiB.
        let hl = if v6 { 62 } else { 42 };
        let n = rng.range(2, 64.min((MAX_IP_LEN + 14 - hl) / gso));
        let last = rng.range(1, gso);
        let mut frames = Vec::new();
        for i in 0..n {
            frames.push(udp_datagram(&flow, port, 443, &payload(&mut rng, if i + 1 == n { last } else { gso })));
            flow.id = flow.id.wrapping_add(1);
        }
        // Network to tap: one USO super-frame, which etherparse reads as
        // one datagram of the whole length.
        let size = if case % 4 < 2 { VnetHdrSize::Basic } else { VnetHdrSize::WithNumBuffers };
        let (c, outs) = coalesce_with(Coalescer::new(size, n).with_udp(true), &frames);
        let (s, bytes) = the_super(&outs);
        assert_eq!((s.segments, usize::from(s.gso_size)), (n, gso), "case {case}");
        assert_eq!((c.counters.super_frames, c.counters.joined), (1, n as u64 - 1));
        let hdr = VnetHdr::parse(bytes, size).unwrap();
        assert_eq!((hdr.gso, hdr.flags, hdr.csum_offset, usize::from(hdr.hdr_len)), (Gso::UdpL4, F_NEEDS_CSUM, 6, hl));
        let whole = SlicedPacket::from_ethernet(&bytes[size.len()..]).expect("etherparse reads the super-frame");
        let Some(TransportSlice::Udp(u)) = whole.transport else { panic!("case {case}: not UDP") };
        assert_eq!(usize::from(u.length()), 8 + (n - 1) * gso + last);
        // Tap to network: the same bytes, as a local UDP_SEGMENT sender's
        // super-frame, cut into exactly the datagrams that came.
        let mut read = bytes.to_vec();
        assert!(split(size, &mut read) == frames, "case {case}: v6 {v6}, {n} x {gso}: the datagrams come back");
        // And round again: what the split made joins into the same bytes.
        let (_, again) = coalesce_with(Coalescer::new(size, n).with_udp(true), &split(size, &mut bytes.to_vec()));
        assert!(the_super(&again).1 == bytes, "case {case}: the same super-frame");
    }
}

#[test]
fn single_segment_super_frames_and_partial_checksums() {
    for v6 in [false, true] {
        let mut flow = Flow::new(v6);
        flow.psh = true;
        let data = b"a payload that fits one segment";
        // A super-frame whose payload fits one MSS: one ordinary frame.
        let (hdr, f) = flow.super_frame(data, 1400);
        let segs = split(VnetHdrSize::Basic, &mut tap_read(&hdr, &f, VnetHdrSize::Basic));
        assert!(segs == [flow.frame(data)]);
        // The same frame with NEEDS_CSUM and no GSO: completed in place.
        let plain = VnetHdr { gso: Gso::None, gso_size: 0, hdr_len: 0, ..hdr };
        let mut read = tap_read(&plain, &f, VnetHdrSize::Basic);
        let mut sp = Splitter::new(VnetHdrSize::Basic);
        match sp.handle(&mut read) {
            Ok(FromTap::Frame(out)) => assert!(out == &flow.frame(data)[..]),
            _ => panic!("not one frame"),
        }
        assert_eq!(sp.counters.completed, 1);
    }
}

/// A UDP frame with its checksum left partial, as the kernel hands it over.
fn udp_partial(v6: bool, payload: &[u8]) -> (Vec<u8>, u16, usize) {
    let mut flow = Flow::new(v6);
    flow.ttl = 9;
    let mut out = udp_datagram(&flow, 5353, 53, payload);
    let l4 = if v6 { 54 } else { 34 };
    let want = u16::from_be_bytes([out[l4 + 6], out[l4 + 7]]);
    let addrs = if v6 { &out[22..54] } else { &out[26..34] };
    let mut s: u32 = addrs.chunks(2).map(|w| u32::from(u16::from_be_bytes([w[0], w[1]]))).sum();
    s += 17 + 8 + payload.len() as u32;
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    out[l4 + 6..l4 + 8].copy_from_slice(&(s as u16).to_be_bytes());
    (out, want, l4)
}

#[test]
fn partial_udp_checksums_are_completed_and_never_zero() {
    let mut rng = Rng(0x5eed_0004);
    let mut zeros = 0;
    for case in 0..3000 {
        let v6 = case % 2 == 1;
        let len = rng.range(0, 300);
        let data = payload(&mut rng, len);
        let (mut f, want, l4) = udp_partial(v6, &data);
        let hdr =
            VnetHdr { flags: F_NEEDS_CSUM | F_DATA_VALID, csum_start: l4 as u16, csum_offset: 6, ..VnetHdr::ZERO };
        let Ok(FromTap::Frame(out)) = rrqnet::offload::from_tap(&hdr, &mut f) else { panic!("refused") };
        let got = u16::from_be_bytes([out[l4 + 6], out[l4 + 7]]);
        // etherparse writes 0xffff for a computed 0, as UDP wants.
        assert_eq!(got, want, "case {case}");
        zeros += usize::from(got == 0xffff);
    }
    // Make sure the zero case is exercised: pick payloads until one sums
    // to it.
    let mut tries = 0;
    while zeros == 0 && tries < 1_000_000 {
        tries += 1;
        let data = payload(&mut rng, 4);
        let (mut f, want, l4) = udp_partial(false, &data);
        let hdr = VnetHdr { flags: F_NEEDS_CSUM, csum_start: l4 as u16, csum_offset: 6, ..VnetHdr::ZERO };
        let Ok(FromTap::Frame(out)) = rrqnet::offload::from_tap(&hdr, &mut f) else { panic!("refused") };
        let got = u16::from_be_bytes([out[l4 + 6], out[l4 + 7]]);
        assert_eq!(got, want);
        zeros += usize::from(want == 0xffff);
    }
    assert!(zeros > 0, "no checksum came out as zero in {tries} tries");
}

/// What a read with `hdr` and `frame` is refused for.
fn refused(hdr: VnetHdr, frame: &[u8]) -> Refusal {
    let mut sp = Splitter::new(VnetHdrSize::Basic);
    let r = sp.handle(&mut tap_read(&hdr, frame, VnetHdrSize::Basic)).map(|_| ()).unwrap_err();
    assert_eq!((sp.counters.refused(r), sp.counters.refused_total()), (1, 1), "counted once");
    r
}

#[test]
fn every_refusal() {
    let flow = Flow::new(false);
    let data = vec![7u8; 3000];
    let (hdr, f) = flow.super_frame(&data, 1000);
    let edit = |i: usize, b: u8| {
        let mut g = f.clone();
        g[i] = b;
        g
    };
    let (hdr6, f6) = Flow::new(true).super_frame(&data, 1000);
    let mut vlan = f[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&f[12..]);
    let mut ext = f6.clone();
    ext[20] = 0; // hop-by-hop
    let mut seen = Vec::new();
    let mut expect = |r: Refusal, want: Refusal| {
        assert_eq!(r, want);
        seen.push(r);
    };
    let mut sp = Splitter::new(VnetHdrSize::WithNumBuffers);
    expect(sp.handle(&mut [0u8; 11]).map(|_| ()).unwrap_err(), Refusal::VnetTruncated);
    let mut raw = tap_read(&hdr, &f, VnetHdrSize::Basic);
    raw[0] = 0x04;
    expect(Splitter::new(VnetHdrSize::Basic).handle(&mut raw).map(|_| ()).unwrap_err(), Refusal::UnknownFlags);
    raw[0] = 1;
    raw[1] = 2;
    expect(Splitter::new(VnetHdrSize::Basic).handle(&mut raw).map(|_| ()).unwrap_err(), Refusal::UnknownGsoType);
    raw[1] = 0x83; // ECN with UDP
    expect(Splitter::new(VnetHdrSize::Basic).handle(&mut raw).map(|_| ()).unwrap_err(), Refusal::UnknownGsoType);
    expect(refused(VnetHdr { gso: Gso::Udp, ..hdr }, &f), Refusal::Ufo);
    expect(refused(VnetHdr { gso: Gso::UdpL4, ..hdr }, &f), Refusal::GsoTypeMismatch);
    expect(refused(VnetHdr { gso: Gso::TcpV6, ..hdr }, &f), Refusal::GsoTypeMismatch);
    expect(refused(VnetHdr { gso: Gso::TcpV4, ..hdr6 }, &f6), Refusal::GsoTypeMismatch);
    expect(refused(hdr, &vlan), Refusal::VlanTagged);
    expect(
        refused(
            hdr,
            &edit(12, 0x08).iter().copied().enumerate().map(|(i, b)| if i == 13 { 6 } else { b }).collect::<Vec<_>>(),
        ),
        Refusal::NotIp,
    );
    expect(refused(hdr, &f[..50]), Refusal::Truncated);
    expect(refused(hdr, &edit(14, 0x43)), Refusal::BadIpHeader);
    expect(refused(hdr, &edit(14, 0x47)), Refusal::Ipv4Options);
    expect(refused(hdr, &edit(20, 0x60)), Refusal::Fragment);
    expect(refused(hdr6, &ext), Refusal::Ipv6ExtensionHeaders);
    expect(refused(hdr, &edit(23, 17)), Refusal::NotTcp);
    expect(refused(hdr, &edit(46, 0x30)), Refusal::BadTcpHeader);
    expect(refused(hdr, &edit(16, 0x0f)), Refusal::LengthMismatch);
    expect(refused(VnetHdr { csum_start: 14, ..hdr }, &f), Refusal::ChecksumOffsets);
    expect(refused(VnetHdr { csum_offset: 6, ..hdr }, &f), Refusal::ChecksumOffsets);
    let plain = VnetHdr { gso: Gso::None, csum_offset: f.len() as u16, ..hdr };
    expect(refused(plain, &f), Refusal::ChecksumOffsets);
    expect(refused(VnetHdr { hdr_len: f.len() as u16 + 1, ..hdr }, &f), Refusal::HdrLenPastEnd);
    expect(refused(VnetHdr { gso_size: 0, ..hdr }, &f), Refusal::GsoSizeZero);
    for r in Refusal::ALL {
        assert!(seen.contains(&r), "no test for {r}");
    }
}

#[test]
fn ecn_super_frames_keep_cwr_on_the_first_segment() {
    let mut flow = Flow::new(true);
    flow.cwr = true;
    flow.ece = true;
    let data = vec![1u8; 5000];
    let (hdr, f) = flow.super_frame(&data, 1448);
    assert!(hdr.ecn);
    let mut sp = Splitter::new(VnetHdrSize::Basic);
    let mut read = tap_read(&hdr, &f, VnetHdrSize::Basic);
    let Ok(FromTap::Segments(s)) = sp.handle(&mut read) else { panic!("not split") };
    check_segments(&flow, &data, 1448, &segments(s));
    assert_eq!((sp.counters.ecn, sp.counters.super_frames, sp.counters.segments), (1, 1, 4));
}

#[test]
fn frames_that_must_not_be_coalesced_pass_unchanged() {
    let base = Flow::new(false);
    let data = vec![3u8; 500];
    let with = |edit: &dyn Fn(&mut Flow)| {
        let mut f = base.clone();
        f.seq += 500;
        f.id += 1;
        edit(&mut f);
        f.frame(&data)
    };
    let mut corrupt_tcp = with(&|_| {});
    corrupt_tcp[100] ^= 0x40;
    let mut corrupt_ip = with(&|_| {});
    corrupt_ip[22] ^= 1;
    let mut arp = vec![0xffu8; 6];
    arp.extend_from_slice(&MAC_A);
    arp.extend_from_slice(&[0x08, 0x06]);
    arp.extend_from_slice(&[0u8; 28]);
    let mut vlan = with(&|_| {});
    vlan.splice(12..12, [0x81, 0x00, 0x00, 0x07]);
    let mut options = with(&|_| {});
    options[14] = 0x46; // IHL 6 and a zero option word after the header
    options.splice(34..34, [0u8; 4]);
    let mut frag = with(&|f| f.df = false);
    frag[20] = 0x20;
    let (mut udp, _, _) = udp_partial(false, &data);
    udp[40..42].copy_from_slice(&[0, 0]);
    let ext = {
        let mut f = Flow::new(true).frame(&data);
        f[20] = 60;
        f
    };
    let mut short = with(&|_| {});
    short.truncate(40);
    let mut bad_ip = with(&|_| {});
    bad_ip[14] = 0x55;
    let mut bad_tcp = with(&|_| {});
    bad_tcp[46] = 0x20;
    let mut padded = base.frame(&[]);
    padded[47] = 0x18;
    padded.resize(60, 0);
    let cases: Vec<(Vec<u8>, Plain)> = vec![
        (short, Plain::Truncated),
        (vlan, Plain::VlanTagged),
        (arp, Plain::NotIp),
        (bad_ip, Plain::BadIpHeader),
        (options, Plain::Ipv4Options),
        (frag, Plain::Fragment),
        (ext, Plain::Ipv6ExtensionHeaders),
        (udp, Plain::NotTcp),
        (bad_tcp, Plain::BadTcpHeader),
        (padded, Plain::LengthMismatch),
        (with(&|f| f.fin = true), Plain::Flags),
        (with(&|f| f.syn = true), Plain::Flags),
        (with(&|f| f.cwr = true), Plain::Flags),
        (with(&|f| f.ece = true), Plain::Flags),
        (base.frame(&[]), Plain::NoPayload),
        (with(&|f| f.ecn = 3), Plain::EcnCe),
        (corrupt_ip, Plain::BadIpChecksum),
        (corrupt_tcp, Plain::BadTcpChecksum),
    ];
    // Where UDP is joined: a damaged UDP checksum, between two datagrams
    // of a flow that would otherwise join.
    let mut udp_flow = base.clone();
    let good_udp = udp_datagram(&udp_flow, 5000, 443, &data);
    udp_flow.id += 1;
    let mut bad_udp = udp_datagram(&udp_flow, 5000, 443, &data);
    bad_udp[50] ^= 1;
    udp_flow.id += 1;
    let udp_after = udp_datagram(&udp_flow, 5000, 443, &data);
    let mut seen = Vec::new();
    let udp_cases = [(bad_udp, Plain::BadUdpChecksum, Some((good_udp, udp_after)))];
    for (frame, why, around) in cases.into_iter().map(|(f, w)| (f, w, None)).chain(udp_cases) {
        // Between two segments of a flow that would otherwise join.
        let mut after = base.clone();
        after.seq += 1000;
        after.id += 2;
        let udp = around.is_some();
        let (first, after) = around.unwrap_or_else(|| (base.frame(&data), after.frame(&data)));
        let frames = vec![first, frame, after];
        let (c, outs) = coalesce_with(Coalescer::new(VnetHdrSize::Basic, 3).with_udp(udp), &frames);
        assert_eq!(c.counters.plain(why), 1, "{why:?}");
        assert_eq!(c.counters.super_frames, 0, "{why:?}");
        assert_eq!(outs.len(), 3);
        for (k, (o, bytes)) in outs.iter().enumerate() {
            assert_eq!(*o, Output::Frame(k));
            assert_eq!(&bytes[..10], &[0; 10], "an all-zero header");
            assert!(bytes[10..] == frames[k][..], "{why:?}: frame {k} passes unchanged");
        }
        seen.push(why);
    }
    for r in Plain::ALL {
        assert!(seen.contains(&r), "no test for {r:?}");
    }
}

#[test]
fn a_mixed_batch_keeps_every_frame_and_every_flow_in_order() {
    let mut rng = Rng(0x5eed_0005);
    for _ in 0..100 {
        // Three flows of in-order segments, interleaved at random with ARP
        // frames and now and then a segment that arrived out of order.
        let mut flows: Vec<Flow> = (0..3).map(|k| Flow::random(&mut rng, k == 1)).collect();
        for f in &mut flows {
            f.psh = false;
        }
        let mut frames: Vec<Vec<u8>> = Vec::new();
        let mut flow_of = Vec::new();
        for _ in 0..rng.range(1, 120) {
            let k = rng.range(0, 3);
            if k == 3 {
                let mut arp = vec![0xffu8; 6];
                arp.extend_from_slice(&MAC_A);
                arp.extend_from_slice(&[0x08, 0x06]);
                arp.extend_from_slice(&payload(&mut rng, 28));
                frames.push(arp);
                flow_of.push(None);
                continue;
            }
            let f = &mut flows[k];
            let len = if rng.range(0, 10) == 0 { rng.range(1, 499) } else { 500 };
            let mut g = f.clone();
            if rng.range(0, 20) == 0 {
                g.seq = g.seq.wrapping_add(100_000);
            }
            frames.push(g.frame(&payload(&mut rng, len)));
            flow_of.push(Some(k));
            f.seq = f.seq.wrapping_add(len as u32);
            f.id = f.id.wrapping_add(1);
        }
        let size = VnetHdrSize::WithNumBuffers;
        let (c, outs) = coalesce(size, &frames);
        // What the tap gets, split back into ordinary frames, is every
        // frame once, and each flow's frames in their order.
        let mut got: Vec<Vec<u8>> = Vec::new();
        for (o, bytes) in &outs {
            match o {
                Output::Frame(_) => got.push(bytes[12..].to_vec()),
                Output::Super(_) => got.extend(split(size, &mut bytes.clone())),
            }
        }
        let order = |list: &[Vec<u8>], k: Option<usize>| -> Vec<Vec<u8>> {
            list.iter()
                .filter(|f| frames.iter().position(|g| g == *f).map(|i| flow_of[i]) == Some(k))
                .cloned()
                .collect()
        };
        assert_eq!(got.len(), frames.len());
        for k in [Some(0), Some(1), Some(2)] {
            assert!(order(&got, k) == order(&frames, k), "flow {k:?} kept its order");
        }
        let mut a = got.clone();
        let mut b = frames.clone();
        a.sort();
        b.sort();
        assert!(a == b, "every frame once");
        assert_eq!(c.counters.frames, frames.len() as u64);
    }
}

#[test]
fn neither_direction_allocates_per_frame() {
    let flow = Flow::new(false);
    let data = vec![9u8; 60_000];
    let (hdr, f) = flow.super_frame(&data, 1448);
    let mut read = tap_read(&hdr, &f, VnetHdrSize::Basic);
    let mut sp = Splitter::new(VnetHdrSize::Basic);
    let mut arena = vec![0u8; 70_000];
    let mut segs: Vec<(usize, usize)> = Vec::with_capacity(64);
    let mut c = Coalescer::new(VnetHdrSize::Basic, 64);
    let mut out = vec![0u8; rrqnet::offload::MAX_SUPER_FRAME];
    let mut written = 0;
    let counted = allocation_counter::measure(|| {
        for _ in 0..3 {
            // Split into one arena, back to back, as into a transmit queue.
            // A super-frame's read is left as it was, so it is read again.
            let Ok(FromTap::Segments(mut s)) = sp.handle(&mut read) else { panic!("not split") };
            let mut at = 0;
            segs.clear();
            while let Some(n) = s.next_into(&mut arena[at..]) {
                let n = n.unwrap();
                segs.push((at, n));
                at += n;
            }
            c.clear();
            for &(a, n) in &segs {
                c.push(&arena[a..a + n]).unwrap();
            }
            for o in c.outputs() {
                let Output::Super(s) = o else { panic!("not coalesced") };
                written = c.write(&s, |i| &arena[segs[i].0..segs[i].0 + segs[i].1], &mut out).unwrap();
            }
        }
    });
    assert_eq!(written, read.len());
    assert!(out[..written] == read[..]);
    assert_eq!(counted.count_total, 0, "allocations on the hot path");
}

#[test]
fn break_reasons_are_counted() {
    let base = Flow::new(true);
    let data = vec![5u8; 1000];
    let mut next = base.clone();
    next.seq += 1000;
    let mut gap = next.clone();
    gap.seq += 1;
    let mut ack = next.clone();
    ack.ack += 1;
    let mut label = next.clone();
    label.flow_label ^= 1;
    let mut hops = next.clone();
    hops.ttl -= 1;
    let mut class = next.clone();
    class.dscp = 10;
    let mut window = next.clone();
    window.window += 1;
    let mut opts = next.clone();
    opts.options[11] = 3; // another timestamp echo
    let mut bigger = base.clone();
    bigger.seq += 1000;
    let cases = [
        (gap, Break::Sequence, &data[..]),
        (ack, Break::Header, &data[..]),
        (label, Break::Header, &data[..]),
        (hops, Break::Header, &data[..]),
        (class, Break::Header, &data[..]),
        (window, Break::Header, &data[..]),
        (opts, Break::Header, &data[..]),
        (bigger, Break::Size, &[5u8; 1001][..]),
    ];
    for (second, why, data2) in cases {
        let (c, _) = coalesce(VnetHdrSize::Basic, &[base.frame(&data), second.frame(data2)]);
        assert_eq!(c.counters.breaks(why), 1, "{why:?}");
        assert_eq!(c.counters.super_frames, 0);
    }
    let mut c = Coalescer::new(VnetHdrSize::Basic, 4);
    assert!(matches!(c.push(&base.frame(&data)), Ok(Placement::Started { after: None, .. })));
    assert!(matches!(c.push(&next.frame(&data[..10])), Ok(Placement::Joined(_))));
    let mut third = next.clone();
    third.seq += 10;
    assert!(matches!(c.push(&third.frame(&data)), Ok(Placement::Started { after: Some(Break::Ended), .. })));
}

// The fuzz seeds: made here, so they stay valid inputs as the code changes.

fn seeds() -> Vec<(&'static str, Vec<u8>)> {
    use rrqnet::offload::fuzz::vnet_input;
    let mut out = Vec::new();
    let data: Vec<u8> = (0..6000u32).map(|i| (i * 31) as u8).collect();
    let mut flow = Flow::new(false);
    let (hdr, f) = flow.super_frame(&data, 1448);
    let arp = {
        let mut a = vec![0xffu8; 6];
        a.extend_from_slice(&MAC_A);
        a.extend_from_slice(&[0x08, 0x06]);
        a.extend_from_slice(&[0u8; 28]);
        a
    };
    out.push(("tcp4-super", vnet_input(0, &tap_read(&hdr, &f, VnetHdrSize::Basic), &[])));
    let dup = {
        let mut s = split(VnetHdrSize::Basic, &mut tap_read(&hdr, &f, VnetHdrSize::Basic));
        s.swap_remove(1)
    };
    out.push(("tcp4-super-mixed", vnet_input(0, &tap_read(&hdr, &f, VnetHdrSize::Basic), &[(1, &arp), (3, &dup)])));
    flow.psh = true;
    flow.cwr = true;
    let (h, g) = flow.super_frame(&data[..3000], 1000);
    out.push(("tcp4-ecn-psh", vnet_input(1, &tap_read(&h, &g, VnetHdrSize::WithNumBuffers), &[])));
    let v6 = Flow::new(true);
    let (h, g) = v6.super_frame(&data, 1220);
    out.push(("tcp6-super", vnet_input(1, &tap_read(&h, &g, VnetHdrSize::WithNumBuffers), &[(0, &arp)])));
    let (h, g) = v6.super_frame(&data[..700], 1220);
    out.push(("tcp6-single", vnet_input(0, &tap_read(&h, &g, VnetHdrSize::Basic), &[])));
    let (u, _, l4) = udp_partial(false, &data[..100]);
    let h = VnetHdr { flags: F_NEEDS_CSUM, csum_start: l4 as u16, csum_offset: 6, ..VnetHdr::ZERO };
    out.push(("udp4-partial", vnet_input(0, &tap_read(&h, &u, VnetHdrSize::Basic), &[])));
    out.push(("udp-gso", vnet_input(0, &tap_read(&VnetHdr { gso: Gso::UdpL4, ..hdr }, &u, VnetHdrSize::Basic), &[])));
    // UDP super-frames (USO) as the coalescer writes them, which is how a
    // local UDP_SEGMENT sender's come from the tap; mode bit 1 joins UDP.
    for (name, v6, mode) in [("udp4-super", false, 2), ("udp6-super-mixed", true, 3)] {
        let mut uflow = Flow::new(v6);
        let datagrams: Vec<Vec<u8>> = (0..5)
            .map(|i| {
                uflow.id = uflow.id.wrapping_add(1);
                udp_datagram(&uflow, 5000, 443, &data[i * 1200..i * 1200 + if i == 4 { 700 } else { 1200 }])
            })
            .collect();
        let size = if mode & 1 == 1 { VnetHdrSize::WithNumBuffers } else { VnetHdrSize::Basic };
        let (_, outs) = coalesce_with(Coalescer::new(size, 5).with_udp(true), &datagrams);
        let (_, read) = the_super(&outs);
        let extra: Vec<(u8, &[u8])> = if v6 { vec![(1, &arp), (3, &datagrams[0])] } else { vec![] };
        out.push((name, vnet_input(mode, read, &extra)));
    }
    let mut vlan = f[..12].to_vec();
    vlan.extend_from_slice(&[0x81, 0x00, 0x00, 0x05]);
    vlan.extend_from_slice(&f[12..]);
    out.push(("vlan", vnet_input(0, &tap_read(&hdr, &vlan, VnetHdrSize::Basic), &[])));
    let segs = split(VnetHdrSize::Basic, &mut tap_read(&hdr, &f, VnetHdrSize::Basic));
    let batch: Vec<(u8, &[u8])> = segs.iter().map(|s| (0xff, &s[..])).collect();
    out.push(("coalesce-only", vnet_input(0, &[], &batch)));
    out
}

#[test]
fn fuzz_seeds_are_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/vnet");
    let write = std::env::var_os("RRQNET_WRITE_SEEDS").is_some();
    for (name, bytes) in seeds() {
        let path = dir.join(name);
        if write {
            std::fs::write(&path, &bytes).unwrap();
        }
        let on_disk =
            std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e} (RRQNET_WRITE_SEEDS=1 makes it)", path.display()));
        assert!(on_disk == bytes, "{} is stale: run with RRQNET_WRITE_SEEDS=1", path.display());
        rrqnet::fuzzing::vnet(&bytes);
    }
}
