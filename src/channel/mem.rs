//! An in-memory channel: two queues in place of a socket or a tap.
//!
//! What is pushed into its inbound queue comes out of
//! [`Channel::recv_batch`], with the source it was pushed with; what is sent
//! through it is appended to its outbound queue, with the destination it was
//! sent to, for a test to take. It registers nothing with the event loop, so
//! it is driven by hand: a test of the shell, or a diagnostic, puts it where
//! a tap or a socket would be.
//!
//! It copies each payload into a `Vec` on send, so it is not for the hot path.
//! Optional bounds make it refuse payloads like a real channel would: too
//! large ([`Tx::TooLarge`]) or a full outbound queue ([`Tx::Busy`]).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::{Registry, Token};

use super::batch::{ReadOne, RxPool};
use super::{Channel, Datagram, Rx, SendReport, MAX_PAYLOAD};

/// One queued payload and its peer: the source for inbound payloads, the
/// destination for outbound ones (`None` on a channel with a single peer).
pub type Queued = (Option<SocketAddr>, Vec<u8>);

/// A channel backed by queues.
#[derive(Debug)]
pub struct MemChannel {
    name: String,
    inbound: VecDeque<Queued>,
    outbound: VecDeque<Queued>,
    max_payload: usize,
    queue_limit: usize,
    closed: bool,
}

impl MemChannel {
    /// An empty, open channel with no bound on its outbound queue that takes
    /// payloads up to [`MAX_PAYLOAD`] bytes.
    pub fn new(name: impl Into<String>) -> Self {
        MemChannel {
            name: name.into(),
            inbound: VecDeque::new(),
            outbound: VecDeque::new(),
            max_payload: MAX_PAYLOAD,
            queue_limit: usize::MAX,
            closed: false,
        }
    }

    /// Refuses to send payloads longer than `bytes` (counted too large).
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Refuses to send while `datagrams` are queued outbound (counted failed).
    pub fn with_queue_limit(mut self, datagrams: usize) -> Self {
        self.queue_limit = datagrams;
        self
    }

    /// Queues a payload for [`Channel::recv`], as if it came from `from`.
    pub fn push_inbound(&mut self, from: Option<SocketAddr>, payload: &[u8]) {
        self.inbound.push_back((from, payload.to_vec()));
    }

    /// Takes the oldest payload sent through the channel, with where it was
    /// sent to.
    pub fn pop_outbound(&mut self) -> Option<Queued> {
        self.outbound.pop_front()
    }

    /// Payloads waiting to be received.
    pub fn inbound_len(&self) -> usize {
        self.inbound.len()
    }

    /// Payloads sent and not yet taken.
    pub fn outbound_len(&self) -> usize {
        self.outbound.len()
    }

    /// Ends the input: once the inbound queue is drained, receiving reports
    /// [`Rx::Closed`], as stdin at end of file does.
    pub fn close(&mut self) {
        self.closed = true;
    }
}

impl MemChannel {
    /// Pops the oldest inbound payload into `buf`. A payload longer than
    /// `buf` is reported with its full length (the pool marks it cut), as a
    /// tap does.
    fn read_one(&mut self, buf: &mut [u8]) -> ReadOne {
        let Some((from, payload)) = self.inbound.pop_front() else {
            return if self.closed { ReadOne::Closed } else { ReadOne::Empty };
        };
        let n = payload.len().min(buf.len());
        buf[..n].copy_from_slice(&payload[..n]);
        ReadOne::Got { len: payload.len(), from }
    }
}

impl Channel for MemChannel {
    fn name(&self) -> &str {
        &self.name
    }

    /// Nothing to register: the channel has no file descriptor.
    fn kind(&self) -> &'static str {
        "memory"
    }

    fn register(&mut self, _registry: &Registry, _token: Token) -> io::Result<()> {
        Ok(())
    }

    fn recv_batch(&mut self, pool: &mut RxPool) -> io::Result<Rx> {
        pool.fill_each(|buf| Ok(self.read_one(buf)))
    }

    fn send_batch(&mut self, arena: &[u8], batch: &[Datagram]) -> io::Result<SendReport> {
        let mut report = SendReport::default();
        for d in batch {
            let payload = &arena[d.range.clone()];
            if payload.len() > self.max_payload {
                report.too_large += 1;
            } else if self.outbound.len() >= self.queue_limit {
                report.failed += 1;
            } else {
                self.outbound.push_back((d.to, payload.to_vec()));
                report.sent += 1;
            }
        }
        Ok(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::channel::batch::HEADROOM;
    use crate::plan::Plan;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// Receives one batch and returns its payloads with their sources.
    fn recv_all(c: &mut MemChannel, pool: &mut RxPool) -> (Rx, Vec<Queued>) {
        let rx = c.recv_batch(pool).unwrap();
        let count = match rx {
            Rx::Batch { count, .. } => count,
            Rx::Closed => 0,
        };
        let got = (0..count)
            .map(|i| {
                let m = pool.meta(i);
                let len = if m.truncated() { 0 } else { m.len };
                (m.from, pool.slot_mut(i)[HEADROOM..HEADROOM + len].to_vec())
            })
            .collect();
        (rx, got)
    }

    /// Sends `payloads` through the channel as one planned batch.
    fn send(c: &mut MemChannel, payloads: &[(Option<SocketAddr>, &[u8])]) -> SendReport {
        let mut plan = Plan::new(1, 1 << 20, 64);
        for (to, p) in payloads {
            let r = plan.push_bytes(p);
            plan.queue(0, r, *to);
        }
        c.send_batch(plan.arena(), plan.queued(0)).unwrap()
    }

    #[test]
    fn receives_in_order_with_sources() {
        let mut c = MemChannel::new("mem");
        let mut pool = RxPool::new(4);
        assert_eq!(recv_all(&mut c, &mut pool), (Rx::Batch { count: 0, drained: true }, vec![]));
        c.push_inbound(Some(addr(1)), b"first");
        c.push_inbound(None, b"second!");
        assert_eq!(c.inbound_len(), 2);
        let (rx, got) = recv_all(&mut c, &mut pool);
        assert_eq!(rx, Rx::Batch { count: 2, drained: true });
        assert_eq!(got, vec![(Some(addr(1)), b"first".to_vec()), (None, b"second!".to_vec())]);
        assert_eq!(c.inbound_len(), 0);
    }

    #[test]
    fn a_full_pool_says_there_may_be_more() {
        let mut c = MemChannel::new("mem");
        let mut pool = RxPool::new(2);
        for i in 0..3u8 {
            c.push_inbound(None, &[i; 20]);
        }
        assert_eq!(recv_all(&mut c, &mut pool).0, Rx::Batch { count: 2, drained: false });
        assert_eq!(recv_all(&mut c, &mut pool).1, vec![(None, vec![2; 20])]);
    }

    #[test]
    fn sends_in_order_with_destinations() {
        let mut c = MemChannel::new("mem");
        let r = send(&mut c, &[(Some(addr(2)), b"to two"), (None, b"to the peer")]);
        assert_eq!(r, SendReport { sent: 2, failed: 0, too_large: 0 });
        assert_eq!(c.outbound_len(), 2);
        assert_eq!(c.pop_outbound(), Some((Some(addr(2)), b"to two".to_vec())));
        assert_eq!(c.pop_outbound(), Some((None, b"to the peer".to_vec())));
        assert_eq!(c.pop_outbound(), None);
    }

    #[test]
    fn empty_and_maximal_payloads_pass_whole() {
        let mut c = MemChannel::new("mem");
        let mut pool = RxPool::new(4);
        let big: Vec<u8> = (0..MAX_PAYLOAD).map(|i| i as u8).collect();
        c.push_inbound(None, &big);
        c.push_inbound(None, b"");
        let (_, got) = recv_all(&mut c, &mut pool);
        assert_eq!(got, vec![(None, big.clone()), (None, vec![])]);
        assert_eq!(send(&mut c, &[(None, &big)]).sent, 1);
        assert_eq!(c.pop_outbound().unwrap().1, big);
    }

    #[test]
    fn a_payload_larger_than_a_slot_is_marked_cut() {
        let mut c = MemChannel::new("mem");
        let mut pool = RxPool::new(3);
        c.push_inbound(None, &vec![7u8; MAX_PAYLOAD + 1]);
        c.push_inbound(None, &[8u8; 100]);
        assert_eq!(c.recv_batch(&mut pool).unwrap(), Rx::Batch { count: 2, drained: true });
        assert!(pool.meta(0).truncated());
        assert_eq!(pool.meta(0).payloads().count(), 0, "a cut payload is not served");
        assert_eq!(pool.meta(1).len, 100);
    }

    #[test]
    fn refuses_too_large_payloads() {
        let mut c = MemChannel::new("mem").with_max_payload(1500);
        let r = send(&mut c, &[(None, &[0u8; 1500]), (None, &[0u8; 1501])]);
        assert_eq!(r, SendReport { sent: 1, failed: 0, too_large: 1 });
        assert_eq!(c.outbound_len(), 1);
    }

    #[test]
    fn is_busy_while_its_queue_is_full() {
        let mut c = MemChannel::new("mem").with_queue_limit(2);
        let r = send(&mut c, &[(None, b"1"), (None, b"2"), (None, b"3")]);
        assert_eq!(r, SendReport { sent: 2, failed: 1, too_large: 0 });
        assert_eq!(c.pop_outbound().unwrap().1, b"1");
        assert_eq!(send(&mut c, &[(None, b"4")]).sent, 1);
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| c.pop_outbound()).map(|d| d.1).collect();
        assert_eq!(sent, vec![b"2".to_vec(), b"4".to_vec()]);
    }

    #[test]
    fn closes_after_the_input_drains() {
        let mut c = MemChannel::new("mem");
        let mut pool = RxPool::new(4);
        c.push_inbound(None, b"last");
        c.close();
        assert_eq!(c.recv_batch(&mut pool).unwrap(), Rx::Batch { count: 1, drained: false });
        assert_eq!(c.recv_batch(&mut pool).unwrap(), Rx::Closed);
        assert_eq!(c.recv_batch(&mut pool).unwrap(), Rx::Closed);
    }
}
