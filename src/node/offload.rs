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
use crate::offload::{FromTap, Segmenter, SplitCounters, Splitter, VnetHdrSize};
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
    /// Something could not be split since the shell last asked.
    trouble: bool,
    log: Every,
}

impl Node {
    /// Says that the local end reads and writes frames behind a
    /// virtio-net header of `size` bytes: reads are split from now on.
    pub fn enable_tap_offload(&mut self, size: VnetHdrSize) {
        self.tap = Some(TapSplit {
            splitter: Splitter::new(size),
            segs: Vec::with_capacity(64),
            trouble: false,
            log: Every::new(Duration::from_secs(10)),
        });
    }

    /// What the tap-to-network split saw, if the local end has offloads.
    pub fn split_counters(&self) -> Option<&SplitCounters> {
        self.tap.as_ref().map(|t| &t.splitter.counters)
    }

    /// True once after something the tap handed over could not be split:
    /// the shell should then scale the tap's offloads back.
    pub fn take_offload_trouble(&mut self) -> bool {
        self.tap.as_mut().is_some_and(|t| std::mem::take(&mut t.trouble))
    }

    /// One read from a tap with offloads: the header and the frame.
    pub(super) fn forward_from_tap(&mut self, now: super::Now, ingress: PortId, read: &mut [u8]) {
        let Some(tap) = self.tap.as_mut() else { return };
        match tap.splitter.handle(read) {
            Ok(FromTap::Frame(frame)) => self.forward(now, ingress, frame),
            Ok(FromTap::Segments(segments)) => self.forward_super_frame(now, ingress, segments),
            Err(refusal) => {
                tap.trouble = true;
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
