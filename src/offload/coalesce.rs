//! Network to tap: consecutive TCP segments of one flow from a receive
//! batch, joined into one super-frame for a tap with `IFF_VNET_HDR`, so the
//! kernel takes in one frame what came as many; and, where the kernel takes
//! UDP super-frames (USO, Linux 6.2 and later), consecutive UDP datagrams of
//! one flow the same way.
//!
//! The rules are those of Linux GRO (`tcp_gro_receive`, `inet_gro_receive`,
//! `ipv6_gro_receive`) and wireguard-go's `tcpGRO`, on Ethernet frames: a
//! segment joins the run of its flow (same Ethernet header, addresses and
//! ports) when it carries the next sequence number, the same ACK, window,
//! options, TTL or hop limit, TOS or traffic class and flow label, DF, an
//! IPv4 id one more than the last (or the same, with DF), no more payload
//! than the first and the run has not ended (a shorter segment or PSH ends
//! it); only ACK, and PSH on the last, may be set; no IPv4 options,
//! fragments, IPv6 extension headers or ECN CE; both checksums right; and
//! the result at most 64 KiB. Everything else goes to the tap as it came,
//! behind an all-zero header, and is counted.
//!
//! UDP datagrams join under the rules of Linux's `udp_gro_receive_segment`
//! and wireguard-go's `udpGRO`: same flow, TTL or hop limit, TOS or
//! traffic class, flow label and DF, IPv4 ids as for TCP, the same payload
//! size but the last (which may be shorter and ends the run), at most
//! [`UDP_MAX_SEGMENTS`] datagrams, checksums right (or absent, over IPv4).
//! The kernel cuts such a super-frame (`__udp_gso_segment`) into exactly the
//! datagrams that came: the same headers, the ids counting up, the lengths
//! and checksums its own.
//!
//! The checksums of every segment that may join are verified here because
//! a super-frame goes to the kernel with `NEEDS_CSUM`: the kernel will
//! compute the TCP checksum itself and never learn that a segment was
//! damaged on the way.
//!
//! Which frames join which run is data: [`Coalescer::push`] says where each
//! frame went, [`Coalescer::outputs`] lists what to write in order, and
//! [`Coalescer::write`] builds a super-frame into the caller's buffer from
//! the frames, which stay where they were received. Runs are kept in
//! first-frame order, and a frame of a flow that cannot join its run closes
//! the run, so no flow is ever reordered. After [`Coalescer::new`] nothing
//! allocates.

use std::fmt;

use super::checksum::Sum;
use super::headers::{put_u16, u16_at, u32_at, Shape, Tcp, ACK, ETH_LEN, MAX_HEADERS, PSH, TCP_FLAGS};
use super::vnet::{Gso, VnetHdr, VnetHdrSize, F_NEEDS_CSUM};

/// The longest IP packet a super-frame may hold (IPv4 total length, or
/// the IPv6 header and its payload length): what one 16-bit length field
/// and the kernel's default `gro_max_size` of 64 KiB allow.
pub const MAX_IP_LEN: usize = 65535;
/// The longest thing [`Coalescer::write`] writes: the longest virtio-net
/// header, Ethernet, and the longest IP packet.
pub const MAX_SUPER_FRAME: usize = 12 + ETH_LEN + MAX_IP_LEN;

/// The most datagrams one UDP super-frame may carry: the kernel refuses
/// more (`UDP_MAX_SEGMENTS`, 64 before Linux 6.9).
pub const UDP_MAX_SEGMENTS: u32 = 64;

/// How many of the most recent runs are searched for a frame's flow: a
/// batch rarely interleaves more flows than this, and a flow that is not
/// found starts a new run, which costs a missed merge, never an error.
const FLOW_SEARCH: usize = 16;

/// Why a frame goes to the tap as it came.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum Plain {
    /// Ends inside its headers.
    Truncated,
    /// Has a VLAN tag.
    VlanTagged,
    /// Not IP (ARP, say).
    NotIp,
    /// An IP header that contradicts itself.
    BadIpHeader,
    /// IPv4 with options.
    Ipv4Options,
    /// An IPv4 fragment.
    Fragment,
    /// IPv6 with extension headers.
    Ipv6ExtensionHeaders,
    /// IP but not TCP (ICMP, say; or UDP where UDP is not joined).
    NotTcp,
    /// A TCP data offset under 5 or past the end.
    BadTcpHeader,
    /// The IP length is not the rest of the frame (Ethernet padding, say).
    LengthMismatch,
    /// Flags other than ACK and PSH (SYN, FIN, RST, URG, ECE, CWR), or no ACK.
    Flags,
    /// No payload: a pure ACK.
    NoPayload,
    /// Marked ECN CE: a congestion signal kept on its own segment.
    EcnCe,
    /// The IPv4 header checksum is wrong.
    BadIpChecksum,
    /// The TCP checksum is wrong.
    BadTcpChecksum,
    /// The UDP checksum is wrong.
    BadUdpChecksum,
}

impl Plain {
    /// Number of reasons.
    pub const COUNT: usize = 16;
    /// All reasons, in counter order.
    pub const ALL: [Plain; Self::COUNT] = [
        Plain::Truncated,
        Plain::VlanTagged,
        Plain::NotIp,
        Plain::BadIpHeader,
        Plain::Ipv4Options,
        Plain::Fragment,
        Plain::Ipv6ExtensionHeaders,
        Plain::NotTcp,
        Plain::BadTcpHeader,
        Plain::LengthMismatch,
        Plain::Flags,
        Plain::NoPayload,
        Plain::EcnCe,
        Plain::BadIpChecksum,
        Plain::BadTcpChecksum,
        Plain::BadUdpChecksum,
    ];

    /// A short name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Plain::Truncated => "truncated",
            Plain::VlanTagged => "vlan-tagged",
            Plain::NotIp => "not-ip",
            Plain::BadIpHeader => "bad-ip-header",
            Plain::Ipv4Options => "ipv4-options",
            Plain::Fragment => "fragment",
            Plain::Ipv6ExtensionHeaders => "ipv6-extension-headers",
            Plain::NotTcp => "not-tcp",
            Plain::BadTcpHeader => "bad-tcp-header",
            Plain::LengthMismatch => "length-mismatch",
            Plain::Flags => "tcp-flags",
            Plain::NoPayload => "no-payload",
            Plain::EcnCe => "ecn-ce",
            Plain::BadIpChecksum => "bad-ip-checksum",
            Plain::BadTcpChecksum => "bad-tcp-checksum",
            Plain::BadUdpChecksum => "bad-udp-checksum",
        }
    }
}

impl From<Shape> for Plain {
    fn from(s: Shape) -> Plain {
        match s {
            Shape::Truncated => Plain::Truncated,
            Shape::VlanTagged => Plain::VlanTagged,
            Shape::NotIp => Plain::NotIp,
            Shape::BadIpHeader => Plain::BadIpHeader,
            Shape::Ipv4Options => Plain::Ipv4Options,
            Shape::Fragment => Plain::Fragment,
            Shape::Ipv6ExtensionHeaders => Plain::Ipv6ExtensionHeaders,
            Shape::NotTcp => Plain::NotTcp,
            Shape::BadTcpHeader => Plain::BadTcpHeader,
            Shape::LengthMismatch => Plain::LengthMismatch,
        }
    }
}

/// Why a segment of a flow could not join the flow's run and started a new
/// one.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum Break {
    /// The run had ended: PSH, a shorter segment, or a frame of the flow
    /// that could not join.
    Ended,
    /// Not the next sequence number.
    Sequence,
    /// More payload than the run's segments.
    Size,
    /// A different ACK, window, urgent pointer, TCP options, TTL or hop
    /// limit, TOS or traffic class, flow label or DF.
    Header,
    /// An IPv4 id that does not follow.
    IpId,
    /// The super-frame would pass 64 KiB (or, for UDP,
    /// [`UDP_MAX_SEGMENTS`] datagrams).
    Full,
}

impl Break {
    /// Number of reasons.
    pub const COUNT: usize = 6;
    /// All reasons, in counter order.
    pub const ALL: [Break; Self::COUNT] =
        [Break::Ended, Break::Sequence, Break::Size, Break::Header, Break::IpId, Break::Full];

    /// A short name for logs and counters.
    pub fn name(self) -> &'static str {
        match self {
            Break::Ended => "run-ended",
            Break::Sequence => "sequence-gap",
            Break::Size => "larger-segment",
            Break::Header => "header-differs",
            Break::IpId => "ip-id",
            Break::Full => "run-full",
        }
    }
}

/// Counters of the network-to-tap direction.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CoalesceCounters {
    /// Frames pushed.
    pub frames: u64,
    /// Super-frames made (runs of two or more segments).
    pub super_frames: u64,
    /// Segments that joined a run started by another.
    pub joined: u64,
    /// Frames passed as they came, indexed by [`Plain`].
    pub plain: [u64; Plain::COUNT],
    /// Runs ended by a segment of their flow, indexed by [`Break`].
    pub breaks: [u64; Break::COUNT],
}

impl CoalesceCounters {
    /// The count for one reason a frame was passed as it came.
    pub fn plain(&self, r: Plain) -> u64 {
        self.plain[r as usize]
    }

    /// The count for one reason a run ended.
    pub fn breaks(&self, b: Break) -> u64 {
        self.breaks[b as usize]
    }
}

/// A run of segments in the current batch.
#[derive(Clone, Copy, PartialEq, Eq, Debug, PartialOrd, Ord, Hash)]
pub struct RunId(usize);

/// Where [`Coalescer::push`] put a frame.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Placement {
    /// It goes to the tap as it came.
    Plain(Plain),
    /// It starts a run (possibly of one), after the flow's previous run
    /// ended for the reason given.
    Started {
        /// The new run.
        run: RunId,
        /// Why it did not join the flow's previous run, if there was one
        /// among the runs searched.
        after: Option<Break>,
    },
    /// It joined a run.
    Joined(RunId),
}

/// The batch holds as many frames as it was made for; write it out and
/// [`Coalescer::clear`] it first.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct BatchFull;

impl fmt::Display for BatchFull {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the coalescing batch is full")
    }
}

impl std::error::Error for BatchFull {}

/// Why [`Coalescer::write`] wrote nothing.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum WriteError {
    /// The output buffer is smaller than the bytes needed.
    TooSmall {
        /// Bytes the super-frame needs.
        need: usize,
    },
    /// The run is not in this batch, or the frames given are not the ones
    /// pushed (their lengths differ).
    NotPushed,
}

impl fmt::Display for WriteError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WriteError::TooSmall { need } => write!(f, "output space too small: the super-frame needs {need} bytes"),
            WriteError::NotPushed => f.write_str("the frames given are not those pushed for this run"),
        }
    }
}

impl std::error::Error for WriteError {}

/// One thing to write to the tap, in order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// Frame `index` of the batch, behind an all-zero header.
    Frame(usize),
    /// A super-frame of several frames.
    Super(Super),
}

/// A run of two or more segments, to be written by [`Coalescer::write`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Super {
    /// The run.
    pub run: RunId,
    /// Index of its first frame in the batch.
    pub first: usize,
    /// How many frames it joins.
    pub segments: usize,
    /// Bytes [`Coalescer::write`] writes: the virtio-net header and the
    /// super-frame.
    pub len: usize,
    /// The payload of each segment but the last, which may be shorter.
    pub gso_size: u16,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Ids {
    /// One segment so far.
    Unknown,
    /// Each id one more than the last.
    Increment,
    /// All the same (allowed with DF).
    Fixed,
}

#[derive(Clone, Copy, Debug)]
enum Item {
    Frame(u32),
    Run(u32),
}

const NO_FRAME: u32 = u32::MAX;

/// A run: the first segment's headers, and what the next must match.
#[derive(Clone, Debug)]
struct Run {
    head: [u8; MAX_HEADERS],
    tcp: Tcp,
    ports: u32,
    first: u32,
    last: u32,
    count: u32,
    gso_size: u16,
    payload: u32,
    next_seq: u32,
    last_id: u16,
    ids: Ids,
    psh: bool,
    open: bool,
}

impl Run {
    fn same_flow(&self, frame: &[u8], tcp: &Tcp) -> bool {
        let addrs = if tcp.v6 { ETH_LEN + 8..ETH_LEN + 40 } else { ETH_LEN + 12..ETH_LEN + 20 };
        self.tcp.v6 == tcp.v6
            && self.tcp.udp == tcp.udp
            && self.ports == u32_at(frame, tcp.l4)
            && self.head[addrs.clone()] == frame[addrs]
            && self.head[..ETH_LEN] == frame[..ETH_LEN]
    }

    /// Whether `frame`, of the same flow, may follow the run's last segment.
    fn can_join(&self, frame: &[u8], tcp: &Tcp, max_ip_len: usize) -> Result<(), Break> {
        if !self.open {
            return Err(Break::Ended);
        }
        let (h, l4) = (&self.head, tcp.l4);
        let same = |r: std::ops::Range<usize>| h[r.clone()] == frame[r];
        let ip_same = if tcp.v6 {
            // Version, traffic class and flow label; hop limit.
            same(ETH_LEN..ETH_LEN + 4) && h[ETH_LEN + 7] == frame[ETH_LEN + 7]
        } else {
            // TOS; DF and the reserved bit; TTL.
            h[ETH_LEN + 1] == frame[ETH_LEN + 1] && same(ETH_LEN + 6..ETH_LEN + 9)
        };
        // ACK number, data offset and NS, window and urgent pointer, options.
        let tcp_same = tcp.udp
            || (tcp.hdr_len == self.tcp.hdr_len
                && same(l4 + 8..l4 + 13)
                && same(l4 + 14..l4 + 16)
                && same(l4 + 18..tcp.hdr_len));
        if !(ip_same && tcp_same) {
            return Err(Break::Header);
        }
        if !tcp.udp && tcp.seq(frame) != self.next_seq {
            return Err(Break::Sequence);
        }
        let len = frame.len() - tcp.hdr_len;
        if len > usize::from(self.gso_size) {
            return Err(Break::Size);
        }
        if !tcp.v6 {
            let id = u16_at(frame, ETH_LEN + 4);
            let df = frame[ETH_LEN + 6] & 0x40 != 0;
            let ok = match self.ids {
                Ids::Unknown => id == self.last_id.wrapping_add(1) || (df && id == self.last_id),
                Ids::Increment => id == self.last_id.wrapping_add(1),
                Ids::Fixed => id == self.last_id,
            };
            if !ok {
                return Err(Break::IpId);
            }
        }
        if self.tcp.hdr_len - ETH_LEN + self.payload as usize + len > max_ip_len
            || (tcp.udp && self.count >= UDP_MAX_SEGMENTS)
        {
            return Err(Break::Full);
        }
        Ok(())
    }
}

/// Plans and builds super-frames for one receive batch at a time.
#[derive(Clone, Debug)]
pub struct Coalescer {
    size: VnetHdrSize,
    capacity: usize,
    max_ip_len: usize,
    udp: bool,
    pushed: usize,
    runs: Vec<Run>,
    items: Vec<Item>,
    /// For each frame of the batch in a run, the next frame of that run.
    next: Vec<u32>,
    /// What this coalescer did, over all batches.
    pub counters: CoalesceCounters,
}

impl Coalescer {
    /// A coalescer for batches of up to `capacity` frames (at least one)
    /// and virtio-net headers of `size` bytes.
    pub fn new(size: VnetHdrSize, capacity: usize) -> Coalescer {
        let capacity = capacity.clamp(1, u32::MAX as usize - 1);
        Coalescer {
            size,
            capacity,
            max_ip_len: MAX_IP_LEN,
            udp: false,
            pushed: 0,
            runs: Vec::with_capacity(capacity),
            items: Vec::with_capacity(capacity),
            next: vec![NO_FRAME; capacity],
            counters: CoalesceCounters::default(),
        }
    }

    /// Caps the IP length of a super-frame lower than [`MAX_IP_LEN`] (at
    /// least one segment's worth is always allowed).
    pub fn with_max_ip_len(mut self, max_ip_len: usize) -> Coalescer {
        self.max_ip_len = max_ip_len.min(MAX_IP_LEN);
        self
    }

    /// Joins UDP datagrams too (into `VIRTIO_NET_HDR_GSO_UDP_L4`
    /// super-frames), for a tap whose kernel takes them.
    pub fn with_udp(mut self, udp: bool) -> Coalescer {
        self.udp = udp;
        self
    }

    /// True if it joins UDP datagrams too.
    pub fn joins_udp(&self) -> bool {
        self.udp
    }

    /// The header size it writes.
    pub fn size(&self) -> VnetHdrSize {
        self.size
    }

    /// Frames pushed in this batch.
    pub fn len(&self) -> usize {
        self.pushed
    }

    /// True if no frame was pushed in this batch.
    pub fn is_empty(&self) -> bool {
        self.pushed == 0
    }

    /// Forgets the batch (not the counters), for the next one.
    pub fn clear(&mut self) {
        self.pushed = 0;
        self.runs.clear();
        self.items.clear();
    }

    /// Takes the next frame of the batch, in arrival order (its index is
    /// [`Coalescer::len`] before the call) and says where it goes. The
    /// frame is only read; the caller keeps it until the batch is written.
    pub fn push(&mut self, frame: &[u8]) -> Result<Placement, BatchFull> {
        if self.pushed == self.capacity {
            return Err(BatchFull);
        }
        let index = self.pushed as u32;
        self.pushed += 1;
        self.next[index as usize] = NO_FRAME;
        let p = self.place(index, frame);
        let c = &mut self.counters;
        c.frames += 1;
        match p {
            Placement::Plain(r) => {
                c.plain[r as usize] += 1;
                self.items.push(Item::Frame(index));
            }
            Placement::Started { run, after } => {
                if let Some(b) = after {
                    c.breaks[b as usize] += 1;
                }
                self.items.push(Item::Run(run.0 as u32));
            }
            Placement::Joined(run) => {
                c.joined += 1;
                c.super_frames += u64::from(self.runs[run.0].count == 2);
            }
        }
        Ok(p)
    }

    fn place(&mut self, index: u32, frame: &[u8]) -> Placement {
        let tcp = match Tcp::parse(frame, self.udp) {
            Ok(t) => t,
            Err(s) => return Placement::Plain(s.into()),
        };
        let found = self.find_flow(frame, &tcp);
        // UDP has no flags, and a CE mark is the same on every datagram
        // of a run (the TOS must match), as the kernel's cut keeps it.
        let plain = if !tcp.udp && tcp.flags(frame) & !PSH != ACK {
            Some(Plain::Flags)
        } else if frame.len() == tcp.hdr_len {
            Some(Plain::NoPayload)
        } else if !tcp.udp && tcp.ecn(frame) == 3 {
            Some(Plain::EcnCe)
        } else if !tcp.ip_csum_ok(frame) {
            Some(Plain::BadIpChecksum)
        } else if !tcp.tcp_csum_ok(frame) {
            Some(if tcp.udp { Plain::BadUdpChecksum } else { Plain::BadTcpChecksum })
        } else {
            None
        };
        if let Some(reason) = plain {
            // What follows in this flow must not overtake this frame.
            if let Some(r) = found {
                self.runs[r].open = false;
            }
            return Placement::Plain(reason);
        }
        let mut after = None;
        if let Some(r) = found {
            match self.runs[r].can_join(frame, &tcp, self.max_ip_len) {
                Ok(()) => {
                    let next = &mut self.next;
                    let run = &mut self.runs[r];
                    let len = frame.len() - tcp.hdr_len;
                    let psh = !tcp.udp && tcp.flags(frame) & PSH != 0;
                    next[run.last as usize] = index;
                    run.last = index;
                    run.count += 1;
                    run.payload += len as u32;
                    run.next_seq = run.next_seq.wrapping_add(len as u32);
                    if !tcp.v6 {
                        let id = u16_at(frame, ETH_LEN + 4);
                        if run.ids == Ids::Unknown {
                            run.ids = if id == run.last_id { Ids::Fixed } else { Ids::Increment };
                        }
                        run.last_id = id;
                    }
                    run.psh = psh;
                    run.open = !psh && len == usize::from(run.gso_size);
                    return Placement::Joined(RunId(r));
                }
                Err(b) => {
                    self.runs[r].open = false;
                    after = Some(b);
                }
            }
        }
        let len = frame.len() - tcp.hdr_len;
        let psh = !tcp.udp && tcp.flags(frame) & PSH != 0;
        let mut head = [0u8; MAX_HEADERS];
        head[..tcp.hdr_len].copy_from_slice(&frame[..tcp.hdr_len]);
        self.runs.push(Run {
            head,
            tcp,
            ports: u32_at(frame, tcp.l4),
            first: index,
            last: index,
            count: 1,
            // A segment longer than a 16-bit gso_size could say cannot be
            // joined by anything: its run stays one frame.
            gso_size: len.min(usize::from(u16::MAX)) as u16,
            payload: len as u32,
            next_seq: if tcp.udp { 0 } else { tcp.seq(frame).wrapping_add(len as u32) },
            last_id: if tcp.v6 { 0 } else { u16_at(frame, ETH_LEN + 4) },
            ids: Ids::Unknown,
            psh,
            open: !psh && len <= usize::from(u16::MAX),
        });
        Placement::Started { run: RunId(self.runs.len() - 1), after }
    }

    /// The most recent run of `frame`'s flow among the last few.
    fn find_flow(&self, frame: &[u8], tcp: &Tcp) -> Option<usize> {
        let from = self.runs.len().saturating_sub(FLOW_SEARCH);
        (from..self.runs.len()).rev().find(|&r| self.runs[r].same_flow(frame, tcp))
    }

    /// What to write to the tap for this batch, in order: every pushed
    /// frame exactly once, alone or inside a super-frame.
    pub fn outputs(&self) -> impl Iterator<Item = Output> + '_ {
        self.items.iter().map(move |item| match *item {
            Item::Frame(i) => Output::Frame(i as usize),
            Item::Run(r) => {
                let run = &self.runs[r as usize];
                if run.count == 1 {
                    Output::Frame(run.first as usize)
                } else {
                    Output::Super(Super {
                        run: RunId(r as usize),
                        first: run.first as usize,
                        segments: run.count as usize,
                        len: self.size.len() + run.tcp.hdr_len + run.payload as usize,
                        gso_size: run.gso_size,
                    })
                }
            }
        })
    }

    /// The frames of a run, in order (none for a run not in this batch).
    pub fn members(&self, run: RunId) -> impl Iterator<Item = usize> + '_ {
        let mut at = self.runs.get(run.0).map_or(NO_FRAME, |r| r.first);
        std::iter::from_fn(move || {
            let i = (at != NO_FRAME).then_some(at as usize)?;
            at = self.next[i];
            Some(i)
        })
    }

    /// Writes an ordinary frame behind an all-zero header at the start of
    /// `out`; returns the bytes written.
    pub fn write_frame(&self, frame: &[u8], out: &mut [u8]) -> Result<usize, WriteError> {
        let v = self.size.len();
        let need = v + frame.len();
        let out = out.get_mut(..need).ok_or(WriteError::TooSmall { need })?;
        VnetHdr::ZERO.emit(out, self.size);
        out[v..].copy_from_slice(frame);
        Ok(need)
    }

    /// Writes the super-frame `s` (from [`Coalescer::outputs`] of this
    /// batch) at the start of `out`, its header first, reading the frames
    /// of the batch through `frame(index)`; returns the bytes written
    /// (`s.len`).
    pub fn write<'f>(&self, s: &Super, frame: impl Fn(usize) -> &'f [u8], out: &mut [u8]) -> Result<usize, WriteError> {
        let run = self.runs.get(s.run.0).ok_or(WriteError::NotPushed)?;
        let (v, hl, l4) = (self.size.len(), run.tcp.hdr_len, run.tcp.l4);
        let need = v + hl + run.payload as usize;
        if run.count < 2 || s.len != need {
            return Err(WriteError::NotPushed);
        }
        let out = out.get_mut(..need).ok_or(WriteError::TooSmall { need })?;
        let hdr = VnetHdr {
            flags: F_NEEDS_CSUM,
            gso: match (run.tcp.udp, run.tcp.v6) {
                (true, _) => Gso::UdpL4,
                (false, true) => Gso::TcpV6,
                (false, false) => Gso::TcpV4,
            },
            ecn: false,
            hdr_len: hl as u16,
            gso_size: run.gso_size,
            csum_start: l4 as u16,
            csum_offset: run.tcp.csum_offset() as u16,
            num_buffers: 0,
        };
        hdr.emit(out, self.size);
        let o = &mut out[v..];
        o[..hl].copy_from_slice(&run.head[..hl]);
        let mut at = hl;
        for (k, i) in self.members(s.run).enumerate() {
            let f = frame(i);
            let len = f.len().checked_sub(hl).ok_or(WriteError::NotPushed)?;
            let last = k + 1 == run.count as usize;
            let fits = if last { at + len == o.len() } else { len == usize::from(run.gso_size) && at + len < o.len() };
            if !fits {
                return Err(WriteError::NotPushed);
            }
            o[at..at + len].copy_from_slice(&f[hl..]);
            at += len;
        }
        let ip_len = o.len() - ETH_LEN;
        if run.tcp.v6 {
            put_u16(o, ETH_LEN + 4, (ip_len - 40) as u16);
        } else {
            put_u16(o, ETH_LEN + 2, ip_len as u16);
            put_u16(o, ETH_LEN + 10, 0);
            let c = Sum::of(&o[ETH_LEN..l4]).finish();
            put_u16(o, ETH_LEN + 10, c);
        }
        let l4_len = (o.len() - l4) as u16;
        if run.tcp.udp {
            // The kernel cuts by this length (`__udp_gso_segment`).
            put_u16(o, l4 + 4, l4_len);
        }
        if run.psh {
            o[l4 + TCP_FLAGS] |= PSH;
        }
        // As the kernel's own GSO frames have it: the pseudo-header sum of
        // the whole super-frame, not complemented, for it to finish.
        let ps = run.tcp.pseudo(o).word(l4_len).fold();
        put_u16(o, l4 + run.tcp.csum_offset(), ps);
        Ok(need)
    }
}

#[cfg(test)]
mod tests {
    use super::super::headers::tests::{fix_ip_csum, fix_tcp_csum, tcp_frame, udp_frame};
    use super::super::headers::{put_u32, CWR, ECE, FIN, SYN, UDP_CSUM};
    use super::*;

    fn seg(v6: bool, seq: u32, id: u16, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (seq as usize + i) as u8).collect();
        tcp_frame(v6, seq, id, &data)
    }

    /// Pushes the frames and returns the placements.
    fn push_all(c: &mut Coalescer, frames: &[Vec<u8>]) -> Vec<Placement> {
        frames.iter().map(|f| c.push(f).unwrap()).collect()
    }

    fn supers(c: &Coalescer) -> Vec<Super> {
        c.outputs()
            .filter_map(|o| match o {
                Output::Super(s) => Some(s),
                Output::Frame(_) => None,
            })
            .collect()
    }

    #[test]
    fn joins_a_flow_and_builds_the_super_frame() {
        for v6 in [false, true] {
            let frames = vec![seg(v6, 1000, 7, 100), seg(v6, 1100, 8, 100), seg(v6, 1200, 9, 40)];
            let mut c = Coalescer::new(VnetHdrSize::Basic, 8);
            let p = push_all(&mut c, &frames);
            let r = RunId(0);
            assert_eq!(p, [Placement::Started { run: r, after: None }, Placement::Joined(r), Placement::Joined(r)]);
            let s = supers(&c);
            assert_eq!(s.len(), 1);
            assert_eq!((s[0].first, s[0].segments, s[0].gso_size), (0, 3, 100));
            assert_eq!(c.members(r).collect::<Vec<_>>(), [0, 1, 2]);
            let mut out = vec![0u8; s[0].len];
            assert_eq!(c.write(&s[0], |i| &frames[i], &mut out), Ok(s[0].len));
            let hdr = VnetHdr::parse(&out, VnetHdrSize::Basic).unwrap();
            let t = Tcp::parse(&out[10..], false).unwrap();
            assert_eq!(hdr.gso, if v6 { Gso::TcpV6 } else { Gso::TcpV4 });
            assert_eq!(
                (hdr.flags, hdr.gso_size, hdr.hdr_len as usize, hdr.csum_start as usize),
                (1, 100, t.hdr_len, t.l4)
            );
            assert_eq!(hdr.csum_offset, 16);
            let f = &out[10..];
            assert_eq!(&f[t.hdr_len..t.hdr_len + 100], &frames[0][t.hdr_len..]);
            assert_eq!(&f[t.hdr_len + 200..], &frames[2][t.hdr_len..]);
            assert!(t.ip_csum_ok(f));
            assert_eq!(u16_at(f, t.l4 + 16), t.pseudo(f).word((f.len() - t.l4) as u16).fold());
            assert_eq!(c.counters.super_frames, 1);
            assert_eq!(c.counters.joined, 2);
        }
    }

    #[test]
    fn interleaved_flows_each_make_a_run_and_keep_their_order() {
        let a = |seq, id| seg(false, seq, id, 50);
        let b = |seq, id| {
            let mut f = seg(false, seq, id, 50);
            f[34] = 0x11; // another source port
            fix_tcp_csum(&mut f);
            f
        };
        let frames = vec![a(0, 1), b(500, 9), a(50, 2), b(550, 10), a(100, 3)];
        let mut c = Coalescer::new(VnetHdrSize::Basic, 8);
        push_all(&mut c, &frames);
        assert_eq!(c.members(RunId(0)).collect::<Vec<_>>(), [0, 2, 4]);
        assert_eq!(c.members(RunId(1)).collect::<Vec<_>>(), [1, 3]);
        assert_eq!(supers(&c).iter().map(|s| s.first).collect::<Vec<_>>(), [0, 1]);
    }

    #[test]
    fn each_rule_breaks_a_run() {
        let base = || vec![seg(false, 0, 1, 100), seg(false, 100, 2, 100)];
        let check = |edit: &dyn Fn(&mut Vec<u8>), want: Break| {
            let mut f = base();
            edit(&mut f[1]);
            fix_ip_csum(&mut f[1]);
            fix_tcp_csum(&mut f[1]);
            let mut c = Coalescer::new(VnetHdrSize::Basic, 4);
            let p = push_all(&mut c, &f);
            assert_eq!(p[1], Placement::Started { run: RunId(1), after: Some(want) }, "{want:?}");
            assert_eq!(c.counters.breaks(want), 1);
            assert!(supers(&c).is_empty());
            assert_eq!(c.outputs().collect::<Vec<_>>(), [Output::Frame(0), Output::Frame(1)]);
        };
        check(&|f| put_u32(f, 38, 101), Break::Sequence);
        check(&|f| put_u32(f, 42, 7), Break::Header); // ACK number
        check(&|f| f[48] = 9, Break::Header); // window
        check(&|f| f[22] = 63, Break::Header); // TTL
        check(&|f| f[15] = 0x10, Break::Header); // TOS
        check(&|f| f[20] = 0, Break::Header); // DF cleared
        check(&|f| put_u16(f, 18, 5), Break::IpId);
        check(
            &|f| {
                f.push(0);
                let ip_len = (f.len() - 14) as u16;
                put_u16(f, 16, ip_len);
            },
            Break::Size,
        );
        // A fixed id is fine with DF, not without.
        let mut f = base();
        put_u16(&mut f[1], 18, 1);
        fix_ip_csum(&mut f[1]);
        let mut c = Coalescer::new(VnetHdrSize::Basic, 4);
        assert_eq!(push_all(&mut c, &f)[1], Placement::Joined(RunId(0)));
    }

    #[test]
    fn short_segment_and_psh_end_a_run() {
        let mut psh = seg(false, 100, 2, 100);
        psh[47] |= PSH;
        fix_tcp_csum(&mut psh);
        for second in [seg(false, 100, 2, 60), psh] {
            let f = vec![seg(false, 0, 1, 100), second, seg(false, 200, 3, 100)];
            let mut c = Coalescer::new(VnetHdrSize::Basic, 4);
            let p = push_all(&mut c, &f);
            assert_eq!(p[1], Placement::Joined(RunId(0)));
            assert!(matches!(p[2], Placement::Started { after: Some(Break::Ended), .. }));
        }
    }

    #[test]
    fn ineligible_frames_pass_and_close_their_flow() {
        let flag = |flags: u8| {
            let mut f = seg(false, 100, 2, 100);
            f[47] = flags;
            fix_tcp_csum(&mut f);
            f
        };
        let mut bad_tcp = seg(false, 100, 2, 100);
        bad_tcp[60] ^= 1;
        let mut bad_ip = seg(false, 100, 2, 100);
        bad_ip[24] ^= 1;
        let mut ce = seg(false, 100, 2, 100);
        ce[15] = 3;
        fix_ip_csum(&mut ce);
        for (f, why) in [
            (flag(ACK | FIN), Plain::Flags),
            (flag(ACK | SYN), Plain::Flags),
            (flag(ACK | CWR), Plain::Flags),
            (flag(ACK | ECE), Plain::Flags),
            (flag(PSH), Plain::Flags),
            (seg(false, 100, 2, 0), Plain::NoPayload),
            (bad_tcp, Plain::BadTcpChecksum),
            (bad_ip, Plain::BadIpChecksum),
            (ce, Plain::EcnCe),
        ] {
            let frames = vec![seg(false, 0, 1, 100), f, seg(false, 200, 3, 100)];
            let mut c = Coalescer::new(VnetHdrSize::Basic, 4);
            let p = push_all(&mut c, &frames);
            assert_eq!(p[1], Placement::Plain(why));
            // The next segment may not overtake the frame that passed.
            assert_eq!(p[2], Placement::Started { run: RunId(1), after: Some(Break::Ended) }, "{why:?}");
            assert_eq!(c.outputs().collect::<Vec<_>>(), [Output::Frame(0), Output::Frame(1), Output::Frame(2)]);
            assert_eq!(c.counters.plain(why), 1);
        }
    }

    #[test]
    fn the_size_cap_holds() {
        let frames: Vec<_> = (0..10u16).map(|i| seg(false, u32::from(i) * 100, i, 100)).collect();
        let mut c = Coalescer::new(VnetHdrSize::WithNumBuffers, 16).with_max_ip_len(40 + 450);
        let p = push_all(&mut c, &frames);
        assert_eq!(p.iter().filter(|p| matches!(p, Placement::Started { after: Some(Break::Full), .. })).count(), 2);
        let s = supers(&c);
        assert_eq!(s.iter().map(|s| s.segments).collect::<Vec<_>>(), [4, 4, 2]);
        assert!(s.iter().all(|s| s.len - 12 - 14 <= 490));
    }

    #[test]
    fn batch_full_and_clear() {
        let mut c = Coalescer::new(VnetHdrSize::Basic, 2);
        let f = seg(false, 0, 0, 10);
        assert!(c.push(&f).is_ok() && c.push(&f).is_ok());
        assert_eq!(c.push(&f), Err(BatchFull));
        assert_eq!(c.len(), 2);
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.push(&f), Ok(Placement::Started { run: RunId(0), after: None }));
        assert_eq!(c.counters.frames, 3);
    }

    #[test]
    fn write_refuses_other_frames_and_small_buffers() {
        let frames = vec![seg(false, 0, 1, 100), seg(false, 100, 2, 100)];
        let mut c = Coalescer::new(VnetHdrSize::Basic, 4);
        push_all(&mut c, &frames);
        let s = supers(&c)[0];
        let mut out = vec![0u8; s.len];
        assert_eq!(c.write(&s, |i| &frames[i], &mut out[..s.len - 1]), Err(WriteError::TooSmall { need: s.len }));
        let other = [seg(false, 0, 1, 100), seg(false, 100, 2, 99)];
        assert_eq!(c.write(&s, |i| &other[i], &mut out), Err(WriteError::NotPushed));
        let short = [vec![0u8; 10], vec![0u8; 10]];
        assert_eq!(c.write(&s, |i| &short[i], &mut out), Err(WriteError::NotPushed));
        let short_last = [frames[0].clone(), vec![0u8; 10]];
        assert_eq!(c.write(&s, |i| &short_last[i], &mut out), Err(WriteError::NotPushed));
        c.clear();
        assert_eq!(c.write(&s, |i| &frames[i], &mut out), Err(WriteError::NotPushed));
        assert_eq!(c.members(s.run).count(), 0);
        let mut plain = [0xffu8; 200];
        assert_eq!(c.write_frame(&frames[0], &mut plain), Ok(10 + frames[0].len()));
        assert_eq!(&plain[..10], &[0; 10]);
        assert_eq!(c.write_frame(&frames[0], &mut plain[..20]), Err(WriteError::TooSmall { need: 164 }));
    }

    fn udp(v6: bool, id: u16, len: usize) -> Vec<u8> {
        let data: Vec<u8> = (0..len).map(|i| (usize::from(id) * 7 + i) as u8).collect();
        udp_frame(v6, id, &data)
    }

    /// What the kernel makes of a UDP super-frame (`__udp_gso_segment`
    /// after `inet_gso_segment` or `ipv6_gso_segment`): `gso_size` payloads,
    /// each behind a copy of the headers with its own lengths, the IPv4 id
    /// counting up, and its checksums computed.
    fn kernel_cuts_udp(out: &[u8]) -> Vec<Vec<u8>> {
        let hdr = VnetHdr::parse(out, VnetHdrSize::Basic).unwrap();
        assert_eq!((hdr.gso, hdr.flags, usize::from(hdr.csum_offset)), (Gso::UdpL4, F_NEEDS_CSUM, UDP_CSUM));
        let f = &out[10..];
        let t = Tcp::parse(f, true).expect("the super-frame parses");
        assert_eq!((usize::from(hdr.csum_start), usize::from(hdr.hdr_len)), (t.l4, t.hdr_len));
        // The field holds the pseudo-header sum of the whole, as the
        // kernel's own USO frames do.
        let whole = t.pseudo(f).word((f.len() - t.l4) as u16).fold();
        assert_eq!(u16_at(f, t.l4 + UDP_CSUM), whole);
        let id0 = u16_at(f, ETH_LEN + 4);
        f[t.hdr_len..]
            .chunks(usize::from(hdr.gso_size))
            .enumerate()
            .map(|(k, payload)| {
                let mut g = f[..t.hdr_len].to_vec();
                g.extend_from_slice(payload);
                let ip_len = g.len() - ETH_LEN;
                if t.v6 {
                    put_u16(&mut g, ETH_LEN + 4, (ip_len - 40) as u16);
                } else {
                    put_u16(&mut g, ETH_LEN + 2, ip_len as u16);
                    put_u16(&mut g, ETH_LEN + 4, id0.wrapping_add(k as u16));
                    fix_ip_csum(&mut g);
                }
                let udp_len = (g.len() - t.l4) as u16;
                put_u16(&mut g, t.l4 + 4, udp_len);
                fix_tcp_csum(&mut g);
                g
            })
            .collect()
    }

    #[test]
    fn joins_udp_datagrams_that_the_kernel_cuts_back_into_the_same() {
        for v6 in [false, true] {
            let frames = vec![udp(v6, 7, 64), udp(v6, 8, 64), udp(v6, 9, 64), udp(v6, 10, 20)];
            let mut c = Coalescer::new(VnetHdrSize::Basic, 8).with_udp(true);
            let p = push_all(&mut c, &frames);
            assert!(matches!(p[0], Placement::Started { after: None, .. }), "{p:?}");
            assert!(p[1..].iter().all(|p| matches!(p, Placement::Joined(_))), "{p:?}");
            let s = supers(&c);
            assert_eq!(s.len(), 1);
            assert_eq!((s[0].segments, s[0].gso_size), (4, 64));
            let mut out = vec![0u8; MAX_SUPER_FRAME];
            let n = c.write(&s[0], |i| &frames[i], &mut out).unwrap();
            assert_eq!(n, s[0].len);
            // An independent parser reads one UDP datagram of the whole length.
            let pk = etherparse::SlicedPacket::from_ethernet(&out[10..n]).expect("etherparse reads it");
            match pk.transport {
                Some(etherparse::TransportSlice::Udp(u)) => {
                    assert_eq!(usize::from(u.length()), 8 + 3 * 64 + 20);
                    assert_eq!(u.payload().len(), 3 * 64 + 20);
                }
                other => panic!("not UDP: {other:?}"),
            }
            assert_eq!(kernel_cuts_udp(&out[..n]), frames, "v6 {v6}");
            assert_eq!(c.counters.super_frames, 1);
            assert_eq!(c.counters.joined, 3);
        }
    }

    #[test]
    fn udp_runs_break_by_the_rules() {
        let joined = |frames: &[Vec<u8>]| {
            let mut c = Coalescer::new(VnetHdrSize::Basic, 128).with_udp(true);
            let p = push_all(&mut c, frames);
            (p, c)
        };
        // A shorter datagram ends the run.
        let (p, _) = joined(&[udp(false, 1, 64), udp(false, 2, 10), udp(false, 3, 64)]);
        assert_eq!(p[2], Placement::Started { run: RunId(1), after: Some(Break::Ended) });
        // A larger one cannot follow.
        let (p, _) = joined(&[udp(false, 1, 64), udp(false, 2, 65)]);
        assert_eq!(p[1], Placement::Started { run: RunId(1), after: Some(Break::Size) });
        // An id that does not follow.
        let (p, _) = joined(&[udp(false, 1, 64), udp(false, 5, 64)]);
        assert_eq!(p[1], Placement::Started { run: RunId(1), after: Some(Break::IpId) });
        // A different TTL, or TOS.
        for at in [ETH_LEN + 8, ETH_LEN + 1] {
            let mut other = udp(false, 2, 64);
            other[at] ^= 0x04;
            fix_ip_csum(&mut other);
            let (p, _) = joined(&[udp(false, 1, 64), other]);
            assert_eq!(p[1], Placement::Started { run: RunId(1), after: Some(Break::Header) }, "byte {at}");
        }
        // No more than the kernel cuts.
        let many: Vec<Vec<u8>> = (0..70).map(|i| udp(false, i, 16)).collect();
        let (p, c) = joined(&many);
        assert_eq!(p[64], Placement::Started { run: RunId(1), after: Some(Break::Full) });
        assert_eq!(supers(&c).iter().map(|s| s.segments).collect::<Vec<_>>(), vec![64, 6]);
        // The 64 KiB cap.
        let big: Vec<Vec<u8>> = (0..50).map(|i| udp(false, i, 1400)).collect();
        let (_, c) = joined(&big);
        assert!(supers(&c).iter().all(|s| s.len - 10 - ETH_LEN <= MAX_IP_LEN));
        assert_eq!(c.counters.breaks(Break::Full), 1);
    }

    #[test]
    fn udp_that_cannot_join_passes_as_it_came() {
        // Not joined at all unless asked for.
        let mut c = Coalescer::new(VnetHdrSize::Basic, 8);
        assert!(!c.joins_udp());
        assert_eq!(c.push(&udp(false, 1, 64)).unwrap(), Placement::Plain(Plain::NotTcp));
        let mut c = Coalescer::new(VnetHdrSize::Basic, 8).with_udp(true);
        let mut bad = udp(false, 2, 64);
        bad[50] ^= 0x10;
        assert_eq!(c.push(&bad).unwrap(), Placement::Plain(Plain::BadUdpChecksum));
        let mut bad_ip = udp(false, 3, 64);
        bad_ip[ETH_LEN + 10] ^= 1;
        assert_eq!(c.push(&bad_ip).unwrap(), Placement::Plain(Plain::BadIpChecksum));
        assert_eq!(c.push(&udp(false, 4, 0)).unwrap(), Placement::Plain(Plain::NoPayload));
        let mut padded = udp(false, 5, 30);
        put_u16(&mut padded, 34 + 4, 20);
        assert_eq!(c.push(&padded).unwrap(), Placement::Plain(Plain::LengthMismatch));
        // IPv6 must have a checksum; IPv4 may go without, and still joins.
        let mut none6 = udp(true, 0, 64);
        put_u16(&mut none6, 54 + 6, 0);
        assert_eq!(c.push(&none6).unwrap(), Placement::Plain(Plain::BadUdpChecksum));
        c.clear();
        let mut frames = vec![udp(false, 10, 64), udp(false, 11, 64)];
        put_u16(&mut frames[1], 34 + 6, 0);
        assert!(matches!(push_all(&mut c, &frames)[1], Placement::Joined(_)));
        // TCP and UDP between the same ports and addresses are two flows.
        c.clear();
        let mut t = seg(false, 0, 1, 64);
        put_u32(&mut t, 34, u32_at(&udp(false, 0, 1), 34));
        fix_tcp_csum(&mut t);
        let p = push_all(&mut c, &[t, udp(false, 2, 64)]);
        assert_eq!(p[1], Placement::Started { run: RunId(1), after: None });
    }

    #[test]
    fn reason_tables_are_complete() {
        for (i, r) in Plain::ALL.iter().enumerate() {
            assert_eq!(*r as usize, i);
        }
        for (i, b) in Break::ALL.iter().enumerate() {
            assert_eq!(*b as usize, i);
        }
        let names: std::collections::BTreeSet<_> = Plain::ALL.iter().map(|r| r.name()).collect();
        assert_eq!(names.len(), Plain::COUNT);
    }
}
