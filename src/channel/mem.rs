//! An in-memory channel: two queues in place of a socket or a tap.
//!
//! What is pushed into its inbound queue comes out of [`Channel::recv`], with
//! the source it was pushed with; what the switch sends is appended to its
//! outbound queue, with the destination it was sent to, for a test (or a
//! simulated link) to take. It registers nothing with the event loop, so it
//! is driven by hand: the multi-switch simulation in `tests/sim.rs` joins
//! switches with it on a virtual clock.
//!
//! It copies each payload into a `Vec` on send, so it is not for the hot path.
//! Optional bounds make it refuse payloads like a real channel would: too
//! large ([`Tx::TooLarge`]) or a full outbound queue ([`Tx::Busy`]).

use std::collections::VecDeque;
use std::io;
use std::net::SocketAddr;

use mio::{Registry, Token};

use super::{Channel, Rx, Tx, MAX_PAYLOAD};

/// One queued payload and its peer: the source for inbound payloads, the
/// destination for outbound ones (`None` on a channel with a single peer).
pub type Datagram = (Option<SocketAddr>, Vec<u8>);

/// A channel backed by queues.
#[derive(Debug)]
pub struct MemChannel {
    name: String,
    inbound: VecDeque<Datagram>,
    outbound: VecDeque<Datagram>,
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

    /// Refuses to send payloads longer than `bytes` ([`Tx::TooLarge`]).
    pub fn with_max_payload(mut self, bytes: usize) -> Self {
        self.max_payload = bytes;
        self
    }

    /// Refuses to send while `datagrams` are queued outbound ([`Tx::Busy`]).
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
    pub fn pop_outbound(&mut self) -> Option<Datagram> {
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

    /// Ends the input: once the inbound queue is drained, `recv` reports
    /// [`Rx::Closed`], as stdin at end of file does.
    pub fn close(&mut self) {
        self.closed = true;
    }
}

impl Channel for MemChannel {
    fn name(&self) -> &str {
        &self.name
    }

    /// Nothing to register: the channel has no file descriptor.
    fn register(&mut self, _registry: &Registry, _token: Token) -> io::Result<()> {
        Ok(())
    }

    /// Pops the oldest inbound payload into `buf`. A payload longer than
    /// `buf` is an error and stays queued: it is never cut.
    fn recv(&mut self, buf: &mut [u8]) -> io::Result<Rx> {
        let Some((from, payload)) = self.inbound.front() else {
            return Ok(if self.closed { Rx::Closed } else { Rx::Idle });
        };
        if payload.len() > buf.len() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{}: a {}-byte payload does not fit a {}-byte buffer", self.name, payload.len(), buf.len()),
            ));
        }
        let (len, from) = (payload.len(), *from);
        buf[..len].copy_from_slice(payload);
        self.inbound.pop_front();
        Ok(Rx::Packet { len, from })
    }

    fn send(&mut self, to: Option<SocketAddr>, payload: &[u8]) -> io::Result<Tx> {
        if payload.len() > self.max_payload {
            return Ok(Tx::TooLarge);
        }
        if self.outbound.len() >= self.queue_limit {
            return Ok(Tx::Busy);
        }
        self.outbound.push_back((to, payload.to_vec()));
        Ok(Tx::Sent)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(port: u16) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    #[test]
    fn receives_in_order_with_sources() {
        let mut c = MemChannel::new("mem");
        let mut buf = vec![0u8; MAX_PAYLOAD];
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Idle);
        c.push_inbound(Some(addr(1)), b"first");
        c.push_inbound(None, b"second!");
        assert_eq!(c.inbound_len(), 2);
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Packet { len: 5, from: Some(addr(1)) });
        assert_eq!(&buf[..5], b"first");
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Packet { len: 7, from: None });
        assert_eq!(&buf[..7], b"second!");
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Idle);
        assert_eq!(c.inbound_len(), 0);
    }

    #[test]
    fn sends_in_order_with_destinations() {
        let mut c = MemChannel::new("mem");
        assert_eq!(c.send(Some(addr(2)), b"to two").unwrap(), Tx::Sent);
        assert_eq!(c.send(None, b"to the peer").unwrap(), Tx::Sent);
        assert_eq!(c.outbound_len(), 2);
        assert_eq!(c.pop_outbound(), Some((Some(addr(2)), b"to two".to_vec())));
        assert_eq!(c.pop_outbound(), Some((None, b"to the peer".to_vec())));
        assert_eq!(c.pop_outbound(), None);
    }

    #[test]
    fn empty_and_maximal_payloads_pass_whole() {
        let mut c = MemChannel::new("mem");
        let mut buf = vec![0u8; MAX_PAYLOAD];
        let big: Vec<u8> = (0..MAX_PAYLOAD).map(|i| i as u8).collect();
        c.push_inbound(None, &big);
        c.push_inbound(None, b"");
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Packet { len: MAX_PAYLOAD, from: None });
        assert_eq!(buf, big);
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Packet { len: 0, from: None });
        assert_eq!(c.send(None, &big).unwrap(), Tx::Sent);
        assert_eq!(c.pop_outbound().unwrap().1, big);
    }

    #[test]
    fn a_payload_larger_than_the_buffer_is_an_error_and_stays_queued() {
        let mut c = MemChannel::new("mem");
        c.push_inbound(None, &[7u8; 100]);
        let mut small = [0u8; 99];
        let e = c.recv(&mut small).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(e.to_string().starts_with("mem: a 100-byte payload"), "{e}");
        let mut buf = [0u8; 100];
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Packet { len: 100, from: None });
        assert_eq!(buf, [7u8; 100]);
    }

    #[test]
    fn refuses_too_large_payloads() {
        let mut c = MemChannel::new("mem").with_max_payload(1500);
        assert_eq!(c.send(None, &[0u8; 1500]).unwrap(), Tx::Sent);
        assert_eq!(c.send(None, &[0u8; 1501]).unwrap(), Tx::TooLarge);
        assert_eq!(c.outbound_len(), 1);
    }

    #[test]
    fn is_busy_while_its_queue_is_full() {
        let mut c = MemChannel::new("mem").with_queue_limit(2);
        assert_eq!(c.send(None, b"1").unwrap(), Tx::Sent);
        assert_eq!(c.send(None, b"2").unwrap(), Tx::Sent);
        assert_eq!(c.send(None, b"3").unwrap(), Tx::Busy);
        assert_eq!(c.pop_outbound().unwrap().1, b"1");
        assert_eq!(c.send(None, b"4").unwrap(), Tx::Sent);
        let sent: Vec<Vec<u8>> = std::iter::from_fn(|| c.pop_outbound()).map(|d| d.1).collect();
        assert_eq!(sent, vec![b"2".to_vec(), b"4".to_vec()]);
    }

    #[test]
    fn closes_after_the_input_drains() {
        let mut c = MemChannel::new("mem");
        let mut buf = [0u8; 16];
        c.push_inbound(None, b"last");
        c.close();
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Packet { len: 4, from: None });
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Closed);
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Closed);
    }

    #[test]
    fn works_as_a_channel_object() {
        let poll = mio::Poll::new().unwrap();
        let mut c: Box<dyn Channel> = Box::new(MemChannel::new("mem0"));
        assert_eq!(c.name(), "mem0");
        c.register(poll.registry(), Token(3)).unwrap();
        assert_eq!(c.send(Some(addr(9)), b"x").unwrap(), Tx::Sent);
        assert!(!c.has_backlog());
        c.flush().unwrap();
        let mut buf = [0u8; 4];
        assert_eq!(c.recv(&mut buf).unwrap(), Rx::Idle);
    }
}
