//! The transmit plan: what the node decided to send, waiting for the channels.
//!
//! The node never touches a socket. Everything it sends (frames to the local
//! end, datagrams to UDP remotes and to the multicast group) is assembled
//! here: a frame is copied into the arena once per distinct key (the one copy
//! on the hot path), sealed there in place when keyed, and queued for every
//! target that gets those bytes. The I/O shell then hands each channel its
//! list in one call ([`crate::channel::Channel::send_batch`]), which is where
//! `sendmmsg` and `UDP_SEGMENT` turn a list into as few system calls as the
//! kernel allows. Which datagrams go out together is data here, decided
//! without a socket, so unit tests can read it (STYLE 14).
//!
//! Memory is allocated at start and grows only when one decision needs more
//! than ever before (a flood to more remotes, a larger frame); after that the
//! plan is reused without allocating. The shell flushes it when
//! [`Plan::should_flush`] says so, so it stays bounded by one batch of input
//! plus the output of one frame.

use std::net::SocketAddr;
use std::ops::Range;

/// Bytes reserved before each frame copied into the arena: room for the
/// transport header when it is sealed in place.
pub const HEADROOM: usize = crate::crypto::HEADER_LEN;
/// Bytes reserved after each frame: room for the transport tag.
pub const TAILROOM: usize = crate::crypto::TAG_LEN;

/// An index of a channel, as the I/O shell numbers them.
pub type ChanId = usize;

/// One planned payload for a channel: where its bytes are in the arena, and
/// the peer for a channel with many (the UDP socket).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Datagram {
    /// The bytes, as a range of [`Plan::arena`].
    pub range: Range<usize>,
    /// The destination on a channel with many peers; `None` otherwise.
    pub to: Option<SocketAddr>,
}

/// What a channel did with a planned batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Handed to the kernel, or queued whole by the channel.
    pub sent: usize,
    /// Not sent: the channel was congested or refused that payload.
    pub failed: usize,
    /// Not sent: too large for the channel.
    pub too_large: usize,
}

/// The arena and the per-channel lists.
#[derive(Debug)]
pub struct Plan {
    arena: Vec<u8>,
    out: Vec<Vec<Datagram>>,
    queued: usize,
    flush_bytes: usize,
    flush_msgs: usize,
}

impl Plan {
    /// A plan for `channels` channels that asks to be flushed once it holds
    /// `flush_bytes` bytes or `flush_msgs` payloads.
    pub fn new(channels: usize, flush_bytes: usize, flush_msgs: usize) -> Plan {
        let flush_msgs = flush_msgs.max(1);
        Plan {
            arena: Vec::with_capacity(flush_bytes + crate::channel::MAX_PAYLOAD + HEADROOM + TAILROOM),
            out: (0..channels).map(|_| Vec::with_capacity(flush_msgs)).collect(),
            queued: 0,
            flush_bytes,
            flush_msgs,
        }
    }

    /// The arena the ranges of every [`Datagram`] point into.
    pub fn arena(&self) -> &[u8] {
        &self.arena
    }

    /// What is queued for `chan`, in order.
    pub fn queued(&self, chan: ChanId) -> &[Datagram] {
        self.out.get(chan).map_or(&[], Vec::as_slice)
    }

    /// Number of channels the plan serves.
    pub fn channels(&self) -> usize {
        self.out.len()
    }

    /// Payloads queued over all channels.
    pub fn len(&self) -> usize {
        self.queued
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.queued == 0
    }

    /// Whether the shell should send what is queued before taking more input.
    pub fn should_flush(&self) -> bool {
        self.arena.len() >= self.flush_bytes || self.queued >= self.flush_msgs
    }

    /// Forgets everything queued, keeping the memory.
    pub fn clear(&mut self) {
        self.arena.clear();
        for list in &mut self.out {
            list.clear();
        }
        self.queued = 0;
    }

    /// Copies `payload` into the arena after [`HEADROOM`] bytes and leaves
    /// [`TAILROOM`] after it; returns the start of this entry, for
    /// [`Plan::entry_mut`] to seal it in place.
    pub fn push_frame(&mut self, payload: &[u8]) -> usize {
        let start = self.arena.len();
        self.arena.resize(start + HEADROOM, 0);
        self.arena.extend_from_slice(payload);
        self.arena.resize(start + HEADROOM + payload.len() + TAILROOM, 0);
        start
    }

    /// Reserves an entry as [`Plan::push_frame`] makes one, for a payload
    /// of `len` bytes that the caller writes itself into the area returned
    /// (a segment cut from a super-frame goes straight there); returns the
    /// start of the entry and that area.
    pub fn reserve_frame(&mut self, len: usize) -> (usize, &mut [u8]) {
        let start = self.arena.len();
        self.arena.resize(start + HEADROOM + len + TAILROOM, 0);
        (start, &mut self.arena[start + HEADROOM..start + HEADROOM + len])
    }

    /// The entry of [`Plan::push_frame`] that starts at `start`, for a
    /// payload of `len` bytes: headroom, payload and tailroom.
    pub fn entry_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        &mut self.arena[start..start + HEADROOM + len + TAILROOM]
    }

    /// Copies `bytes` into the arena as they are; returns where they are.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.arena.len();
        self.arena.extend_from_slice(bytes);
        start..self.arena.len()
    }

    /// Queues the bytes at `range` of the arena for `chan` (to `to` on a
    /// channel with many peers).
    pub fn queue(&mut self, chan: ChanId, range: Range<usize>, to: Option<SocketAddr>) {
        if let Some(list) = self.out.get_mut(chan) {
            list.push(Datagram { range, to });
            self.queued += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_copy_serves_many_destinations() {
        let mut p = Plan::new(2, 1 << 16, 8);
        let a: SocketAddr = "192.0.2.1:1".parse().unwrap();
        let b: SocketAddr = "192.0.2.2:1".parse().unwrap();
        let r = p.push_bytes(b"frame");
        p.queue(1, r.clone(), Some(a));
        p.queue(1, r.clone(), Some(b));
        p.queue(0, r.clone(), None);
        assert_eq!(p.len(), 3);
        assert_eq!(p.arena().len(), 5, "the bytes are in the arena once");
        assert_eq!(
            p.queued(1),
            [Datagram { range: r.clone(), to: Some(a) }, Datagram { range: r.clone(), to: Some(b) }]
        );
        assert_eq!(p.queued(0), [Datagram { range: r, to: None }]);
        assert!(p.queued(7).is_empty());
        p.clear();
        assert!(p.is_empty() && p.arena().is_empty() && p.queued(1).is_empty());
    }

    #[test]
    fn frames_get_room_to_be_sealed_in_place() {
        let mut p = Plan::new(1, 1 << 16, 8);
        p.push_bytes(b"x");
        let start = p.push_frame(b"payload");
        assert_eq!(start, 1);
        let entry = p.entry_mut(start, 7);
        assert_eq!(entry.len(), HEADROOM + 7 + TAILROOM);
        assert_eq!(&entry[HEADROOM..HEADROOM + 7], b"payload");
    }

    #[test]
    fn a_reserved_entry_is_laid_out_as_a_pushed_one() {
        let mut p = Plan::new(1, 1 << 16, 8);
        let pushed = p.push_frame(b"abc");
        let (start, area) = p.reserve_frame(3);
        assert_eq!(area.len(), 3);
        area.copy_from_slice(b"abc");
        assert_eq!(start, HEADROOM + 3 + TAILROOM);
        assert_eq!(p.entry_mut(start, 3).to_vec(), p.entry_mut(pushed, 3).to_vec());
        assert_eq!(p.arena().len(), 2 * (HEADROOM + 3 + TAILROOM));
    }

    #[test]
    fn asks_for_a_flush_at_its_bounds() {
        let mut p = Plan::new(1, 100, 3);
        let r = p.push_bytes(&[0; 10]);
        p.queue(0, r.clone(), None);
        p.queue(0, r.clone(), None);
        assert!(!p.should_flush());
        p.queue(0, r, None);
        assert!(p.should_flush(), "three payloads");
        p.clear();
        p.push_bytes(&[0; 100]);
        assert!(p.should_flush(), "100 bytes");
    }
}
