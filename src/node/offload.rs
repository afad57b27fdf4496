//! The super-frame path: what a tap with offloads hands the node, made into
//! the same datagrams a tap without them would have caused.
//!
//! A read from such a tap is a virtio-net header and a frame. An ordinary
//! frame (its partial checksum completed in place) takes the usual path,
//! [`Node::forward`]. A TCP super-frame of up to 64 KiB is switched once:
//! every segment it makes repeats its Ethernet header, so one decision
//! holds for all of them. Its segments are then cut straight into the
//! transmit plan, once for the plaintext targets and once per key (each
//! segment sealed in place there, as any frame is), and queued target by
//! target so that a run of equal datagrams to one peer stays together for
//! `UDP_SEGMENT`. What cannot be split is counted by reason, logged at a
//! limited pace, and reported to the shell, which scales the tap's offloads
//! back so the kernel does that work from then on: the next try of the same
//! TCP data arrives as ordinary frames, and nothing loops.
//!
//! The local port's receive counters count reads from the tap (a super-frame
//! once, with all its bytes); the segments are in [`SplitCounters`] and in
//! every remote's transmit counters.

use std::ops::Range;
use std::time::Duration;

use log::{trace, warn};

use super::{Node, HEARTBEAT_MAX};
use crate::crypto::Kind;
use crate::offload::{FromTap, Segmenter, SplitCounters, Splitter, Trouble, VnetHdrSize};
use crate::plan::HEADROOM;
use crate::ratelimit::Every;
use crate::switch::{DropReason, Forward, PortId, Target};

/// The tap-to-network half of the offloads, present when the local end is
/// a tap that reads with a virtio-net header.
#[derive(Debug)]
pub(super) struct TapSplit {
    splitter: Splitter,
    /// The segments of the super-frame being planned, as arena ranges;
    /// grows to the most segments one super-frame made, never per frame.
    segs: Vec<Range<usize>>,
    /// What could not be split since the shell last asked.
    trouble: Trouble,
    log: Every,
}

impl Node {
    /// Says that the local end reads and writes frames behind a
    /// virtio-net header of `size` bytes: reads are split from now on.
    pub fn enable_tap_offload(&mut self, size: VnetHdrSize) {
        self.tap = Some(TapSplit {
            splitter: Splitter::new(size),
            segs: Vec::with_capacity(64),
            trouble: Trouble::default(),
            log: Every::new(Duration::from_secs(10)),
        });
    }

    /// What the tap-to-network split saw, if the local end has offloads.
    pub fn split_counters(&self) -> Option<&SplitCounters> {
        self.tap.as_ref().map(|t| &t.splitter.counters)
    }

    /// What the tap handed over that could not be split, once: the shell
    /// scales the tap's offloads back by it.
    pub fn take_offload_trouble(&mut self) -> Trouble {
        self.tap.as_mut().map(|t| std::mem::take(&mut t.trouble)).unwrap_or_default()
    }

    /// One read from a tap with offloads: the header and the frame.
    pub(super) fn forward_from_tap(&mut self, now: super::Now, ingress: PortId, read: &mut [u8]) {
        let Some(tap) = self.tap.as_mut() else { return };
        // The GSO type byte, read before the frame is borrowed: a refused
        // super-frame and a refused ordinary frame scale back differently.
        let gso = read.get(1).is_some_and(|t| t & 0x7f != 0);
        match tap.splitter.handle(read) {
            Ok(FromTap::Frame(frame)) => self.forward(now, ingress, frame),
            Ok(FromTap::Segments(segments)) => self.forward_super_frame(now, ingress, segments),
            Err(refusal) => {
                if gso {
                    tap.trouble.super_frame = true;
                } else {
                    tap.trouble.frame = true;
                }
                if let Some(s) = tap.log.check(now.mono, &mut self.logs.budget) {
                    warn!("dropped a {}-byte read from the tap that cannot be split: {refusal}{s}", read.len());
                }
            }
        }
    }

    /// Switches a super-frame once and plans its segments for every target.
    fn forward_super_frame(&mut self, now: super::Now, ingress: PortId, segments: Segmenter<'_>) {
        self.targets.clear();
        match self.switch.handle_frame(now.mono, ingress, segments.super_frame()) {
            Forward::Drop(r) => {
                trace!("drop super-frame {} from port {}: {}", segments.super_frame().len(), ingress.0, r.name());
                return;
            }
            Forward::Unicast(t) => self.targets.push(t),
            Forward::Flood(targets) => self.targets.extend_from_slice(targets),
        }
        let Node { switch, decls, keys, roles, plan, targets, logs, tap, .. } = self;
        let Some(tap) = tap.as_mut() else { return };
        let segs = &mut tap.segs;
        let key_of = |t: &Target| t.decl.and_then(|d| decls.key_of(d));
        // The plaintext targets share one copy of each segment.
        if targets.iter().any(|t| key_of(t).is_none()) {
            segs.clear();
            let mut s = segments.clone();
            while let Some(len) = s.next_len() {
                let (start, area) = plan.reserve_frame(len);
                if !matches!(s.next_into(area), Some(Ok(_))) {
                    break;
                }
                segs.push(start + HEADROOM..start + HEADROOM + len);
            }
            for t in targets.iter().filter(|t| key_of(t).is_none()) {
                let Some((chan, to)) = roles.route(t.dest) else {
                    switch.count_drops(DropReason::NoTarget, segs.len() as u64);
                    continue;
                };
                for r in segs.iter() {
                    // Never anything this short to the group (SPEC 4); a
                    // segment carries at least its headers, so this is
                    // only the rule kept.
                    if r.len() <= HEARTBEAT_MAX && t.dest == crate::switch::Dest::Multicast {
                        switch.count_drop(DropReason::Runt);
                        continue;
                    }
                    plan.queue(chan, r.clone(), to);
                    switch.count_tx(t.port, r.len());
                }
            }
        }
        // Each key seals its own copy of each segment, once for all its
        // targets.
        for (k, key) in keys.iter_mut().enumerate() {
            let mine = |t: &&Target| key_of(t) == Some(k);
            let n_targets = targets.iter().filter(mine).count();
            if n_targets == 0 {
                continue;
            }
            segs.clear();
            let mut s = segments.clone();
            while let Some(len) = s.next_len() {
                let (start, area) = plan.reserve_frame(len);
                if !matches!(s.next_into(area), Some(Ok(_))) {
                    break;
                }
                let entry = plan.entry_mut(start, len);
                match key.transport.seal_in_place(entry, HEADROOM, len, Kind::Data, now.unix) {
                    Ok(d) => segs.push(start + d.start..start + d.end),
                    Err(e) => {
                        switch.count_drops(DropReason::SendFailed, n_targets as u64);
                        if let Some(s) = logs.seal.check(now.mono, &mut logs.budget) {
                            warn!("cannot seal a datagram with key {}: {e}{s}", key.fingerprint);
                        }
                    }
                }
            }
            for t in targets.iter().filter(mine) {
                let Some((chan, to)) = roles.route(t.dest) else {
                    switch.count_drops(DropReason::NoTarget, segs.len() as u64);
                    continue;
                };
                for r in segs.iter() {
                    plan.queue(chan, r.clone(), to);
                    // The frame's length, as for every keyed frame.
                    switch.count_tx(t.port, r.len() - crate::crypto::HEADER_LEN - crate::crypto::TAG_LEN);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::SocketAddr;
    use std::time::Instant;

    use super::super::{Now, Setup};
    use super::*;
    use crate::config::parse_remote;
    use crate::crypto::{MasterKey, Opener, Sealer, Transport};
    use crate::switch::Params;

    const UDP: usize = 0;
    const LOCAL: usize = 1;
    const T0: u64 = 1_800_000_000;
    const VNET: VnetHdrSize = VnetHdrSize::Basic;

    fn now() -> Now {
        Now { mono: Instant::now(), unix: T0 }
    }

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[7; 64]).unwrap()
    }

    /// Two plain uplinks and one keyed, the local end a tap with offloads.
    fn node(now: Now) -> Node {
        let remotes = [("192.0.2.1:2300", None), ("192.0.2.2:2300", None), ("192.0.2.3:2300", Some(0))];
        let setup = Setup {
            remotes: remotes.iter().map(|(r, k)| (parse_remote(r, false).unwrap(), *k)).collect(),
            keys: vec![key()],
            channels: 2,
            local: Some(LOCAL),
            udp: Some(UDP),
            multicast: None,
            switch: Params::default(),
            batch: 32,
        };
        let mut n = Node::new(setup, now).unwrap();
        n.enable_tap_offload(VNET);
        n
    }

    fn read(payload: usize, mss: u16) -> Vec<u8> {
        crate::testing::tcp_super_frame_read(payload, mss)
    }

    /// What the node planned for the UDP channel; nothing goes back to the tap.
    fn planned(n: &mut Node, now: Now) -> Vec<(Option<SocketAddr>, Vec<u8>)> {
        let mut by_chan = crate::node::tests::planned(n, now);
        assert!(by_chan[LOCAL].is_empty(), "nothing goes back to the tap");
        by_chan.swap_remove(UDP)
    }

    /// One switch decision for the super-frame; each plain remote gets its
    /// run of segments, byte for byte what the segmenter makes (valid
    /// checksums, counted sequence numbers, checked with etherparse); the
    /// keyed remote gets the same segments, each sealed once.
    #[test]
    fn a_super_frame_is_switched_once_and_cut_into_the_plan() {
        let now = now();
        let mut n = node(now);
        let mut r = read(4500, 1000);
        let want = crate::testing::tcp_segments(4500, 1000);
        assert_eq!(want.len(), 5);
        let len = r.len();
        n.handle_input(now, LOCAL, None, &mut r, 0..len);
        assert_eq!(n.stats().frames_in, 1, "one decision for the super-frame");
        let out = planned(&mut n, now);
        assert_eq!(out.len(), 15, "five segments to each of three remotes");
        let to = |i: u8| Some(SocketAddr::from(([192, 0, 2, i], 2300)));
        for (k, remote) in [1u8, 2].into_iter().enumerate() {
            let run = &out[k * 5..k * 5 + 5];
            assert!(run.iter().all(|(t, _)| *t == to(remote)), "a run to one peer, for UDP_SEGMENT");
            let bytes: Vec<Vec<u8>> = run.iter().map(|(_, b)| b.clone()).collect();
            assert_eq!(bytes, want);
        }
        let mut seq = 0x1000u32;
        for seg in &want {
            let p = etherparse::SlicedPacket::from_ethernet(seg).unwrap();
            let Some(etherparse::NetSlice::Ipv4(ip)) = p.net else { panic!("IPv4") };
            let Some(etherparse::TransportSlice::Tcp(tcp)) = p.transport else { panic!("TCP") };
            let sum = tcp.to_header().calc_checksum_ipv4(&ip.header().to_header(), tcp.payload()).unwrap();
            assert_eq!(sum, tcp.checksum());
            assert_eq!(tcp.sequence_number(), seq);
            seq = seq.wrapping_add(tcp.payload().len() as u32);
            assert!(seg.len() <= 14 + 20 + 20 + 1000);
        }
        let mut rx =
            Transport::from_parts(Sealer::new(&key(), T0, Default::default()).unwrap(), Opener::new(&key(), 16));
        for (i, (t, sealed)) in out[10..].iter().enumerate() {
            assert_eq!(*t, to(3));
            let mut d = sealed.clone();
            let o = rx.open_in_place(&mut d, T0).unwrap();
            assert_eq!(d[o.payload], want[i][..], "segment {i} sealed in place");
        }
        let c = n.split_counters().unwrap();
        assert_eq!((c.super_frames, c.segments), (1, 5));
        assert!(!n.take_offload_trouble().any());
    }

    /// A read that cannot be split plans nothing, is counted, and asks the
    /// shell once to scale the offloads back; an ordinary frame behind a
    /// zero header goes the usual way.
    #[test]
    fn what_cannot_be_split_is_counted_and_reported_once() {
        let now = now();
        let mut n = node(now);
        let mut r = read(3000, 1000);
        r[1] = 4; // TCPV6 on an IPv4 frame
        let len = r.len();
        n.handle_input(now, LOCAL, None, &mut r, 0..len);
        assert!(planned(&mut n, now).is_empty());
        assert_eq!(n.split_counters().unwrap().refused(crate::offload::Refusal::GsoTypeMismatch), 1);
        assert_eq!(n.take_offload_trouble(), Trouble { super_frame: true, frame: false });
        assert!(!n.take_offload_trouble().any(), "once per refusal");
        // An ordinary frame whose partial checksum points past its end.
        let mut bad = vec![1u8, 0, 0, 0, 0, 0, 200, 0, 16, 0];
        bad.extend_from_slice(&crate::testing::frame([0xff; 6], [2, 0, 0, 0, 0, 1], 100, 9));
        let len = bad.len();
        n.handle_input(now, LOCAL, None, &mut bad, 0..len);
        assert_eq!(n.take_offload_trouble(), Trouble { super_frame: false, frame: true });
        assert!(planned(&mut n, now).is_empty());
        let mut plain = vec![0u8; VNET.len()];
        plain.extend_from_slice(&crate::testing::frame([0xff; 6], [2, 0, 0, 0, 0, 1], 100, 9));
        let len = plain.len();
        n.handle_input(now, LOCAL, None, &mut plain, 0..len);
        let out = planned(&mut n, now);
        assert_eq!(out.len(), 3, "a broadcast to every remote");
        assert_eq!(out[0].1, plain[VNET.len()..], "the frame without its header");
        assert_eq!(n.split_counters().unwrap().plain, 1);
    }
}
