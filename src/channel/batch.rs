//! Buffers for batched UDP I/O, allocated once at start.
//!
//! [`RxPool`] holds `-B` receive slots. Each slot has [`HEADROOM`] bytes
//! before the payload and [`TAILROOM`] after it, so a frame read into it can
//! be sealed in place (header in front, tag behind) without a copy, and a
//! datagram opened in place leaves its frame with that headroom. One
//! `recvmmsg` fills many slots.
//!
//! [`TxQueue`] is where outgoing UDP datagrams are assembled: a frame is
//! copied in once per distinct key (the one copy on the hot path), sealed
//! there if keyed, and queued for every remote that gets those bytes. The
//! queue goes out with `sendmmsg`, as many datagrams per system call as the
//! batch holds.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;

use super::MAX_PAYLOAD;
use crate::sys::{Mmsg, RecvMeta};

/// Bytes before each payload: room for the transport header.
pub const HEADROOM: usize = crate::crypto::HEADER_LEN;
/// Bytes after each payload: room for the transport tag.
pub const TAILROOM: usize = crate::crypto::TAG_LEN;
/// One receive slot.
pub const SLOT: usize = HEADROOM + MAX_PAYLOAD + TAILROOM;

/// Receive slots and their `recvmmsg` headers.
pub struct RxPool {
    store: Box<[u8]>,
    meta: Vec<RecvMeta>,
    mmsg: Mmsg,
}

impl std::fmt::Debug for RxPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RxPool({} slots)", self.meta.len())
    }
}

impl RxPool {
    /// A pool of `slots` slots (at least one). The memory is reserved but
    /// only pages that datagrams land on are ever touched.
    pub fn new(slots: usize) -> Self {
        let slots = slots.max(1);
        RxPool {
            store: vec![0u8; slots * SLOT].into_boxed_slice(),
            meta: vec![RecvMeta::default(); slots],
            mmsg: Mmsg::new(slots),
        }
    }

    /// Number of slots.
    pub fn slots(&self) -> usize {
        self.meta.len()
    }

    /// Receives up to a batch of datagrams from `sock` into the slots'
    /// payload areas; `Ok(0)` when none is waiting.
    pub fn recv_from(&mut self, sock: &impl AsRawFd) -> io::Result<usize> {
        loop {
            return match self.mmsg.recv(sock, &mut self.store, SLOT, HEADROOM, &mut self.meta) {
                Ok(n) => Ok(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// What slot `i` holds: its length (`usize::MAX` if it was cut), its
    /// source, and the size of the datagrams in it when the kernel
    /// coalesced several (`UDP_GRO`; 0 for one).
    pub fn meta(&self, i: usize) -> RecvMeta {
        self.meta[i]
    }

    /// Slot `i`, headroom included; the payload starts at [`HEADROOM`].
    pub fn slot_mut(&mut self, i: usize) -> &mut [u8] {
        &mut self.store[i * SLOT..(i + 1) * SLOT]
    }
}

/// Outgoing UDP datagrams, assembled in one arena and sent together.
pub struct TxQueue {
    arena: Box<[u8]>,
    used: usize,
    msgs: Vec<(Range<usize>, SocketAddr)>,
    max_msgs: usize,
    mmsg: Mmsg,
}

impl std::fmt::Debug for TxQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TxQueue({} queued, {} bytes)", self.msgs.len(), self.used)
    }
}

impl TxQueue {
    /// A queue of up to `max_msgs` datagrams in an arena of `bytes` bytes
    /// (at least room for one largest datagram).
    pub fn new(bytes: usize, max_msgs: usize) -> Self {
        let bytes = bytes.max(SLOT);
        let max_msgs = max_msgs.max(1);
        TxQueue {
            arena: vec![0u8; bytes].into_boxed_slice(),
            used: 0,
            msgs: Vec::with_capacity(max_msgs),
            max_msgs,
            mmsg: Mmsg::new(max_msgs.min(1024)),
        }
    }

    /// True when nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.msgs.is_empty()
    }

    /// Whether a datagram of up to `len` bytes and `dests` more destinations
    /// fit without a flush first.
    pub fn has_room(&self, len: usize, dests: usize) -> bool {
        self.used + len <= self.arena.len() && self.msgs.len() + dests <= self.max_msgs
    }

    /// Copies `payload` into the arena after [`HEADROOM`] bytes, leaving
    /// [`TAILROOM`] after it. Returns the start of the entry; the caller may
    /// seal the entry in place with [`TxQueue::entry_mut`]. The caller checks
    /// [`TxQueue::has_room`] first.
    pub fn push_frame(&mut self, payload: &[u8]) -> usize {
        let start = self.used;
        let total = HEADROOM + payload.len() + TAILROOM;
        self.arena[start + HEADROOM..start + HEADROOM + payload.len()].copy_from_slice(payload);
        self.used += total;
        start
    }

    /// Bytes of the arena, as queued.
    pub fn bytes(&self, range: Range<usize>) -> &[u8] {
        &self.arena[range]
    }

    /// The entry that starts at `start`, `HEADROOM + len + TAILROOM` bytes.
    pub fn entry_mut(&mut self, start: usize, len: usize) -> &mut [u8] {
        &mut self.arena[start..start + HEADROOM + len + TAILROOM]
    }

    /// Copies `bytes` into the arena as they are; returns where they are.
    /// The caller checks [`TxQueue::has_room`] first.
    pub fn push_bytes(&mut self, bytes: &[u8]) -> Range<usize> {
        let start = self.used;
        self.arena[start..start + bytes.len()].copy_from_slice(bytes);
        self.used += bytes.len();
        start..self.used
    }

    /// Queues `range` (absolute in the arena) for `to`. False, queueing
    /// nothing, when the batch is full: flush and try again.
    pub fn push_dest(&mut self, range: Range<usize>, to: SocketAddr) -> bool {
        if self.msgs.len() >= self.max_msgs {
            return false;
        }
        self.msgs.push((range, to));
        true
    }

    /// Sends everything queued on `sock` (each destination passed through
    /// `map` first) and empties the queue. Returns how many datagrams went
    /// and how many did not.
    pub fn flush(&mut self, sock: &impl AsRawFd, map: impl Fn(SocketAddr) -> SocketAddr) -> io::Result<(usize, usize)> {
        if self.msgs.is_empty() {
            self.used = 0;
            return Ok((0, 0));
        }
        for m in self.msgs.iter_mut() {
            m.1 = map(m.1);
        }
        let r = self.mmsg.send(sock, &self.arena, &self.msgs);
        self.msgs.clear();
        self.used = 0;
        r
    }

    /// Like [`TxQueue::flush`], but keeps the bytes at `keep` (moved to the
    /// start of the arena) for more destinations; returns their new range.
    /// For a datagram with more destinations than one batch holds.
    pub fn flush_keeping(
        &mut self,
        sock: &impl AsRawFd,
        map: impl Fn(SocketAddr) -> SocketAddr,
        keep: Range<usize>,
    ) -> (io::Result<(usize, usize)>, Range<usize>) {
        let r = self.flush(sock, map);
        let len = keep.len();
        self.arena.copy_within(keep, 0);
        self.used = len;
        (r, 0..len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::UdpSocket;

    #[test]
    fn pool_and_queue_round_trip() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut q = TxQueue::new(4 * SLOT, 8);
        let frames: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 60 + i * 300]).collect();
        for f in &frames {
            assert!(q.has_room(HEADROOM + f.len() + TAILROOM, 1));
            let start = q.push_frame(f);
            assert!(q.push_dest(start + HEADROOM..start + HEADROOM + f.len(), to));
        }
        assert_eq!(q.flush(&tx, |a| a).unwrap(), (6, 0));
        assert!(q.is_empty());
        let mut pool = RxPool::new(4);
        let mut got = Vec::new();
        for _ in 0..100 {
            let n = pool.recv_from(&rx).unwrap();
            for i in 0..n {
                let m = pool.meta(i);
                assert_eq!(m.from, Some(tx.local_addr().unwrap()));
                got.push(pool.slot_mut(i)[HEADROOM..HEADROOM + m.len].to_vec());
            }
            if got.len() == frames.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, frames);
    }

    #[test]
    fn flush_keeping_keeps_one_datagram_for_more_destinations() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        rx.set_read_timeout(Some(std::time::Duration::from_secs(1))).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut q = TxQueue::new(SLOT, 2);
        let first = q.push_bytes(b"first datagram");
        assert!(q.push_dest(first, to));
        let keep = q.push_bytes(b"kept for many");
        assert!(q.push_dest(keep.clone(), to));
        assert!(!q.push_dest(keep.clone(), to), "the batch holds two");
        let (r, kept) = q.flush_keeping(&tx, |a| a, keep);
        assert_eq!(r.unwrap(), (2, 0));
        assert!(q.push_dest(kept, to));
        assert_eq!(q.flush(&tx, |a| a).unwrap(), (1, 0));
        let mut buf = [0u8; 64];
        let got: Vec<Vec<u8>> = (0..3)
            .map(|_| {
                let n = rx.recv(&mut buf).unwrap();
                buf[..n].to_vec()
            })
            .collect();
        assert_eq!(got, [b"first datagram".to_vec(), b"kept for many".to_vec(), b"kept for many".to_vec()]);
    }

    #[test]
    fn segmented_send_and_coalesced_receive_keep_every_datagram() {
        let rx = UdpSocket::bind("127.0.0.1:0").unwrap();
        crate::sys::enable_udp_gro(&rx).unwrap();
        let tx = UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = rx.local_addr().unwrap();
        let mut q = TxQueue::new(64 * 2048, 64);
        let frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; if i == 19 { 77 } else { 1200 }]).collect();
        for f in &frames {
            let r = q.push_bytes(f);
            assert!(q.push_dest(r, to));
        }
        assert_eq!(q.flush(&tx, |a| a).unwrap(), (20, 0));
        let mut pool = RxPool::new(4);
        let mut got = Vec::new();
        let mut coalesced = false;
        for _ in 0..100 {
            let n = pool.recv_from(&rx).unwrap();
            for i in 0..n {
                let m = pool.meta(i);
                let seg = if m.segment == 0 { m.len } else { m.segment };
                coalesced |= m.segment != 0 && m.len > m.segment;
                let slot = pool.slot_mut(i);
                let mut at = 0;
                while at < m.len {
                    let end = (at + seg).min(m.len);
                    got.push(slot[HEADROOM + at..HEADROOM + end].to_vec());
                    at = end;
                }
            }
            if got.len() >= frames.len() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(5));
        }
        assert_eq!(got, frames);
        assert!(coalesced, "a segmented send to a UDP_GRO socket arrives as one message");
    }

    #[test]
    fn queue_room_is_bounded() {
        let q = TxQueue::new(SLOT, 2);
        assert!(q.has_room(SLOT, 2));
        assert!(!q.has_room(SLOT + 1, 1));
        assert!(!q.has_room(10, 3));
    }
}
