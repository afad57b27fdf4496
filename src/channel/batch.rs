//! Receive buffers, allocated once at start and shared by every channel.
//!
//! [`RxPool`] holds `-B` receive slots. Each slot has [`HEADROOM`] bytes
//! before the payload and [`TAILROOM`] after it, so the payload area of any
//! slot can take the largest datagram or a tap's largest super-frame with
//! its virtio-net header ([`MAX_READ`]), and a keyed datagram opened in place
//! leaves its frame inside the slot. One `recvmmsg` fills many slots; channels
//! that read one payload per system call (the tap, stdio, the group) fill
//! them one by one with [`RxPool::fill_each`]. The shell serves one channel
//! at a time and hands every payload to the node before the pool is reused.

use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::os::fd::AsRawFd;

use super::{Rx, MAX_PAYLOAD};
use crate::offload::MAX_SUPER_FRAME;
use crate::sys::{Mmsg, RecvMeta};

pub use crate::plan::{HEADROOM, TAILROOM};

/// The most one read may put in a slot: a whole datagram, or what a tap
/// with offloads hands over at once (a virtio-net header and a 64 KiB
/// super-frame).
pub const MAX_READ: usize = if MAX_SUPER_FRAME > MAX_PAYLOAD { MAX_SUPER_FRAME } else { MAX_PAYLOAD };

/// One receive slot.
pub const SLOT: usize = HEADROOM + MAX_READ + TAILROOM;

/// What one read of a single-payload channel gave.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadOne {
    /// A payload of `len` bytes (more than the buffer if it was cut).
    Got {
        /// Its length as the kernel reported it.
        len: usize,
        /// Its source, on a channel with many peers.
        from: Option<SocketAddr>,
    },
    /// Nothing more right now.
    Empty,
    /// The channel ended.
    Closed,
}

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
    /// payload areas, each source passed through `map`; `Ok(0)` when none
    /// is waiting. ICMP errors queued on the socket are passed over.
    pub fn recv_from(&mut self, sock: &impl AsRawFd, map: impl Fn(SocketAddr) -> SocketAddr) -> io::Result<usize> {
        loop {
            return match self.mmsg.recv(sock, &mut self.store, SLOT, HEADROOM, &mut self.meta) {
                Ok(n) => {
                    for m in &mut self.meta[..n] {
                        m.from = m.from.map(&map);
                    }
                    Ok(n)
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_icmp_error(&e) => continue,
                Err(e) => Err(e),
            };
        }
    }

    /// Fills slots one at a time with `read`, which gets a slot's payload
    /// area of [`MAX_PAYLOAD`] bytes, until it reports nothing more or every
    /// slot is full. A payload longer than the area was cut and is marked
    /// so ([`RecvMeta::len`] is `usize::MAX`).
    pub fn fill_each(&mut self, read: impl FnMut(&mut [u8]) -> io::Result<ReadOne>) -> io::Result<Rx> {
        self.fill_each_with(MAX_PAYLOAD, read)
    }

    /// As [`RxPool::fill_each`], with a payload area of `area` bytes (at
    /// most [`MAX_READ`]): a tap with offloads reads super-frames.
    pub fn fill_each_with(
        &mut self,
        area: usize,
        mut read: impl FnMut(&mut [u8]) -> io::Result<ReadOne>,
    ) -> io::Result<Rx> {
        let area = area.min(MAX_READ);
        let mut count = 0;
        while count < self.meta.len() {
            let buf = &mut self.store[count * SLOT + HEADROOM..count * SLOT + HEADROOM + area];
            match read(buf)? {
                ReadOne::Got { len, from } => {
                    let len = if len > area { usize::MAX } else { len };
                    self.meta[count] = RecvMeta { len, from, segment: 0 };
                    count += 1;
                }
                ReadOne::Empty => return Ok(Rx::Batch { count, drained: true }),
                ReadOne::Closed if count == 0 => return Ok(Rx::Closed),
                // What was read is served first; the next call says closed.
                ReadOne::Closed => return Ok(Rx::Batch { count, drained: false }),
            }
        }
        Ok(Rx::Batch { count, drained: false })
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

/// Whether a receive error is an ICMP error queued on the socket (a port
/// unreachable after one of our sends): not a failure of the channel.
pub fn is_icmp_error(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::ECONNREFUSED | libc::EHOSTUNREACH | libc::ENETUNREACH))
}

impl RecvMeta {
    /// The payloads in a slot, as ranges of [`RxPool::slot_mut`]: one (an
    /// empty datagram too), or with `UDP_GRO` a run of them from one peer,
    /// each `segment` bytes but the last. Nothing for a payload that was cut.
    pub fn payloads(&self) -> impl Iterator<Item = Range<usize>> {
        let (len, step) = (self.len, if self.segment == 0 { self.len } else { self.segment });
        // An empty datagram is one payload (a heartbeat); a cut one is none.
        let count = match len {
            usize::MAX => 0,
            0 => 1,
            _ => len.div_ceil(step),
        };
        (0..count).map(move |k| HEADROOM + k * step..HEADROOM + ((k + 1) * step).min(len))
    }

    /// Whether the payload was longer than the slot and was cut.
    pub fn truncated(&self) -> bool {
        self.len == usize::MAX
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::udp::UdpChannel;
    use crate::channel::Channel;
    use crate::plan::Plan;
    use std::net::UdpSocket;
    use std::time::Duration;

    /// Receives from `chan` until `want` payloads arrived (or 100 tries),
    /// splitting coalesced slots; also says whether any slot held several.
    fn recv_payloads(chan: &mut UdpChannel, pool: &mut RxPool, want: usize) -> (Vec<(SocketAddr, Vec<u8>)>, bool) {
        let mut got = Vec::new();
        let mut coalesced = false;
        for _ in 0..100 {
            let Rx::Batch { count, .. } = chan.recv_batch(pool).unwrap() else { panic!("closed") };
            for i in 0..count {
                let m = pool.meta(i);
                coalesced |= m.payloads().count() > 1;
                for r in m.payloads() {
                    got.push((m.from.unwrap(), pool.slot_mut(i)[r].to_vec()));
                }
            }
            if got.len() >= want {
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (got, coalesced)
    }

    #[test]
    fn planned_datagrams_cross_a_udp_channel_whole() {
        let mut rx = UdpChannel::bind(0, true, 8).unwrap();
        let to: SocketAddr = SocketAddr::from(([127, 0, 0, 1], rx.local_addr().unwrap().port()));
        let mut tx = UdpChannel::bind(0, true, 8).unwrap();
        let from = SocketAddr::from(([127, 0, 0, 1], tx.local_addr().unwrap().port()));
        let mut plan = Plan::new(1, 1 << 20, 64);
        let frames: Vec<Vec<u8>> = (0..6).map(|i| vec![i as u8 + 1; 60 + i * 300]).collect();
        for f in &frames {
            let start = plan.push_frame(f);
            plan.queue(0, start + HEADROOM..start + HEADROOM + f.len(), Some(to));
        }
        let r = tx.send_batch(plan.arena(), plan.queued(0)).unwrap();
        assert_eq!(r, crate::plan::SendReport { sent: 6, failed: 0, too_large: 0 });
        let mut pool = RxPool::new(4);
        let (got, _) = recv_payloads(&mut rx, &mut pool, frames.len());
        let want: Vec<_> = frames.iter().map(|f| (from, f.clone())).collect();
        assert_eq!(got, want, "sources in canonical (unmapped) form, payloads whole");
    }

    #[test]
    fn segmented_send_and_coalesced_receive_keep_every_datagram() {
        let mut rx = UdpChannel::bind(0, true, 64).unwrap();
        let to = SocketAddr::from(([127, 0, 0, 1], rx.local_addr().unwrap().port()));
        let mut tx = UdpChannel::bind(0, true, 64).unwrap();
        let mut plan = Plan::new(1, 1 << 20, 64);
        let frames: Vec<Vec<u8>> = (0..20u8).map(|i| vec![i; if i == 19 { 77 } else { 1200 }]).collect();
        for f in &frames {
            let r = plan.push_bytes(f);
            plan.queue(0, r, Some(to));
        }
        assert_eq!(tx.send_batch(plan.arena(), plan.queued(0)).unwrap().sent, 20);
        let mut pool = RxPool::new(4);
        let (got, coalesced) = recv_payloads(&mut rx, &mut pool, frames.len());
        assert_eq!(got.into_iter().map(|(_, p)| p).collect::<Vec<_>>(), frames);
        assert!(coalesced, "a segmented send to a UDP_GRO socket arrives as one message");
    }

    /// The receive headers are pointed at the slots once and only the slots
    /// a batch filled are reset for the next: batches of every size, from
    /// two peers of two families, each get their own sources and lengths.
    #[test]
    fn slots_reused_by_later_batches_report_their_own_sources_and_lengths() {
        let mut rx = UdpChannel::bind(0, false, 8).unwrap();
        let port = rx.local_addr().unwrap().port();
        let v4 = UdpSocket::bind("127.0.0.1:0").unwrap();
        let v6 = UdpSocket::bind("[::1]:0").unwrap();
        let mut pool = RxPool::new(4);
        let rounds: [&[(bool, usize)]; 5] = [
            &[(false, 100), (false, 200), (false, 300)],
            &[(true, 5)],
            &[(true, 1400), (false, 0), (true, 7), (false, 9000), (true, 64), (false, 1)],
            &[(false, 2)],
            &[(true, 3), (true, 4)],
        ];
        for (r, round) in rounds.iter().enumerate() {
            let mut want = Vec::new();
            for (i, &(six, len)) in round.iter().enumerate() {
                let payload = vec![(r * 16 + i) as u8; len];
                let (sock, to) = if six {
                    (&v6, SocketAddr::from(([0u16, 0, 0, 0, 0, 0, 0, 1], port)))
                } else {
                    (&v4, SocketAddr::from(([127, 0, 0, 1], port)))
                };
                sock.send_to(&payload, to).unwrap();
                want.push((sock.local_addr().unwrap(), payload));
            }
            let (got, _) = recv_payloads(&mut rx, &mut pool, want.len());
            assert_eq!(got, want, "round {r}");
        }
    }

    #[test]
    fn empty_datagrams_are_one_payload_and_cut_ones_none() {
        let empty = RecvMeta { len: 0, from: None, segment: 0 };
        assert_eq!(empty.payloads().collect::<Vec<_>>(), vec![HEADROOM..HEADROOM]);
        let cut = RecvMeta { len: usize::MAX, from: None, segment: 0 };
        assert!(cut.truncated() && cut.payloads().next().is_none());
        let run = RecvMeta { len: 25, from: None, segment: 10 };
        let want = [HEADROOM..HEADROOM + 10, HEADROOM + 10..HEADROOM + 20, HEADROOM + 20..HEADROOM + 25];
        assert_eq!(run.payloads().collect::<Vec<_>>(), want);
    }

    #[test]
    fn an_empty_udp_datagram_is_received() {
        let mut rx = UdpChannel::bind(0, true, 4).unwrap();
        let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
        peer.send_to(&[], ("127.0.0.1", rx.local_addr().unwrap().port())).unwrap();
        let mut pool = RxPool::new(4);
        let (got, _) = recv_payloads(&mut rx, &mut pool, 1);
        assert_eq!(got, vec![(peer.local_addr().unwrap(), vec![])]);
    }
}
