//! Several switches joined by in-memory links, on a virtual clock.
//!
//! Each simulated host runs a [`Switch`] with two [`MemChannel`]s, as the
//! daemon runs one with a tap and a UDP socket: a local channel whose inbound
//! queue is what its host sends and whose outbound queue is what its host
//! receives, and a "UDP" channel whose outbound datagrams the simulated
//! network carries to the channel of the host they are addressed to. Frames
//! flow switch -> MemChannel -> link -> MemChannel -> switch, and every frame
//! delivered on a link or to a local port is counted, so a broadcast cycle
//! would show as a count that grows (or a run that never settles).
//!
//! Time is a fixed origin plus a `Duration`; links have a latency; timers
//! (heartbeats, staleness, sweeps) fire when `poll_timeout` says. Nothing
//! sleeps.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rrqnet::channel::mem::MemChannel;
use rrqnet::channel::{Channel, Rx, Tx, MAX_PAYLOAD};
use rrqnet::mac::MacAddr;
use rrqnet::switch::{Dest, DropReason, Forward, Params, PortId, Switch, Target};

/// What the daemon sends as a heartbeat: short, but not empty.
const HEARTBEAT: &[u8] = &[0];
/// Datagrams this short are heartbeats.
const HEARTBEAT_MAX: usize = 11;
const DEFAULT_LATENCY: Duration = Duration::from_millis(1);
/// A run that takes more steps than this is a storm.
const MAX_STEPS: usize = 100_000;

fn name(i: usize) -> char {
    (b'A' + i as u8) as char
}

/// The MAC address of host `i`'s local interface.
fn host(i: usize) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0x10, i as u8])
}

fn frame(dst: MacAddr, src: MacAddr, tag: u8) -> Vec<u8> {
    let mut b = vec![0u8; 60];
    b[0..6].copy_from_slice(&dst.0);
    b[6..12].copy_from_slice(&src.0);
    b[12] = 0x88;
    b[13] = 0xb5;
    b[14] = tag;
    b
}

struct Node {
    addr: SocketAddr,
    sw: Switch,
    local_port: PortId,
    local: MemChannel,
    udp: MemChannel,
}

/// Carries a frame or heartbeat to where the switch sent it.
fn deliver(local: &mut MemChannel, udp: &mut MemChannel, t: &Target, payload: &[u8]) {
    let tx = match t.dest {
        Dest::Local => local.send(None, payload),
        Dest::Remote(a) => udp.send(Some(a), payload),
        Dest::Multicast => panic!("no multicast in this simulation"),
    };
    assert_eq!(tx.unwrap(), Tx::Sent);
}

/// What the simulated network saw.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
struct Tally {
    /// Frames carried on each directed link.
    links: BTreeMap<(char, char), usize>,
    /// Frames delivered to each host.
    local: BTreeMap<char, Vec<Vec<u8>>>,
    /// Heartbeats carried on all links.
    heartbeats: usize,
}

impl Tally {
    fn link_frames(&self) -> usize {
        self.links.values().sum()
    }
    fn local_frames(&self) -> usize {
        self.local.values().map(Vec::len).sum()
    }
    fn received(&self, host: usize) -> &[Vec<u8>] {
        self.local.get(&name(host)).map_or(&[], Vec::as_slice)
    }
}

/// A datagram in flight: arrival time, sequence (for a stable order),
/// receiver, sender, payload.
type InFlight = Reverse<(Duration, u64, usize, usize, Vec<u8>)>;

struct Net {
    base: Instant,
    now: Duration,
    nodes: Vec<Node>,
    in_flight: BinaryHeap<InFlight>,
    seq: u64,
    latency: HashMap<(usize, usize), Duration>,
    tally: Tally,
    buf: Box<[u8]>,
}

impl Net {
    /// `n` switches, each with a local end and an uplink to every other one:
    /// the manual's "multiple pair-wise uplinks".
    fn full_mesh(n: usize) -> Net {
        Net::full_mesh_with(n, Params::default())
    }

    fn full_mesh_with(n: usize, params: Params) -> Net {
        let base = Instant::now();
        let addrs: Vec<SocketAddr> = (0..n).map(|i| SocketAddr::from(([192, 0, 2, 1 + i as u8], 2300))).collect();
        let nodes = (0..n)
            .map(|i| {
                let mut sw = Switch::new(params.clone());
                let local_port = sw.add_local(base);
                for (decl, &peer) in addrs.iter().filter(|&&a| a != addrs[i]).enumerate() {
                    sw.add_uplink(base, peer, decl as u16).unwrap();
                }
                Node {
                    addr: addrs[i],
                    sw,
                    local_port,
                    local: MemChannel::new(format!("tap {}", name(i))),
                    udp: MemChannel::new(format!("udp {}", name(i))),
                }
            })
            .collect();
        Net {
            base,
            now: Duration::ZERO,
            nodes,
            in_flight: BinaryHeap::new(),
            seq: 0,
            latency: HashMap::new(),
            tally: Tally::default(),
            buf: vec![0u8; MAX_PAYLOAD].into_boxed_slice(),
        }
    }

    fn at(&self) -> Instant {
        self.base + self.now
    }

    fn index_of(&self, addr: SocketAddr) -> usize {
        self.nodes.iter().position(|n| n.addr == addr).unwrap_or_else(|| panic!("no host at {addr}"))
    }

    /// Host `i` puts a frame on its local interface.
    fn host_send(&mut self, i: usize, frame: &[u8]) {
        self.nodes[i].local.push_inbound(None, frame);
        self.serve(i);
    }

    /// Runs node `i`'s switch over whatever its channels received, as the
    /// daemon does, then puts what it sent on the links.
    fn serve(&mut self, i: usize) {
        let now = self.at();
        let node = &mut self.nodes[i];
        loop {
            let (len, from) = match node.udp.recv(&mut self.buf).unwrap() {
                Rx::Packet { len, from: Some(from) } => (len, from),
                Rx::Idle => break,
                other => panic!("udp channel gave {other:?}"),
            };
            let Some((_, Some(decl))) = node.sw.lookup(&from) else {
                node.sw.count_drop(DropReason::UnknownSource);
                continue;
            };
            let Ok(port) = node.sw.remote_rx(now, from, decl) else { continue };
            if len <= HEARTBEAT_MAX {
                continue;
            }
            forward(node, now, port, &self.buf[..len]);
        }
        loop {
            match node.local.recv(&mut self.buf).unwrap() {
                Rx::Packet { len, .. } => {
                    let port = node.local_port;
                    forward(node, now, port, &self.buf[..len]);
                }
                Rx::Idle => break,
                other => panic!("local channel gave {other:?}"),
            }
        }
        self.flush(i);
    }

    /// Takes what node `i` sent: frames for its host into the tally,
    /// datagrams onto the links.
    fn flush(&mut self, i: usize) {
        while let Some((_, f)) = self.nodes[i].local.pop_outbound() {
            self.tally.local.entry(name(i)).or_default().push(f);
        }
        while let Some((to, payload)) = self.nodes[i].udp.pop_outbound() {
            let j = self.index_of(to.expect("datagrams have a destination"));
            let latency = self.latency.get(&(i, j)).copied().unwrap_or(DEFAULT_LATENCY);
            self.seq += 1;
            self.in_flight.push(Reverse((self.now + latency, self.seq, j, i, payload)));
        }
    }

    /// Fires node `i`'s timers due now: heartbeats out, stale remotes gone.
    fn tick(&mut self, i: usize) {
        let now = self.at();
        let node = &mut self.nodes[i];
        node.sw.handle_timeout(now);
        while let Some(t) = node.sw.poll_heartbeat(now) {
            deliver(&mut node.local, &mut node.udp, &t, HEARTBEAT);
        }
        while node.sw.poll_event().is_some() {}
        self.flush(i);
    }

    /// Runs the network for `d` of virtual time: datagrams arrive and timers
    /// fire in time order.
    fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for step in 0.. {
            assert!(step < MAX_STEPS, "no end to the traffic: a broadcast storm? {:?}", self.tally);
            let next_arrival = self.in_flight.peek().map(|Reverse(f)| f.0);
            let next_timer = self.nodes.iter().filter_map(|n| n.sw.poll_timeout()).min().map(|t| t - self.base);
            let next = match (next_arrival, next_timer) {
                (Some(a), Some(t)) => a.min(t),
                (a, t) => match a.or(t) {
                    Some(x) => x,
                    None => break,
                },
            };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            if next_arrival == Some(next) {
                let Reverse((_, _, to, from, payload)) = self.in_flight.pop().unwrap();
                if payload.len() <= HEARTBEAT_MAX {
                    self.tally.heartbeats += 1;
                } else {
                    *self.tally.links.entry((name(from), name(to))).or_default() += 1;
                }
                let from_addr = self.nodes[from].addr;
                self.nodes[to].udp.push_inbound(Some(from_addr), &payload);
                self.serve(to);
            } else {
                let now = self.at();
                for i in 0..self.nodes.len() {
                    if self.nodes[i].sw.poll_timeout().is_some_and(|t| t <= now) {
                        self.tick(i);
                    }
                }
            }
        }
        self.now = end;
    }

    /// Lets the start-up heartbeats pass, then forgets them.
    fn started(mut self) -> Net {
        self.run_for(Duration::from_millis(100));
        let n = self.nodes.len();
        assert_eq!(self.tally.heartbeats, n * (n - 1));
        self.take_tally();
        self
    }

    fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    fn sticky_drops(&self) -> Vec<u64> {
        self.nodes.iter().map(|n| n.sw.stats().dropped(DropReason::Sticky)).collect()
    }

    fn floods(&self) -> u64 {
        self.nodes.iter().map(|n| n.sw.stats().flooded).sum()
    }
}

fn forward(node: &mut Node, now: Instant, ingress: PortId, frame: &[u8]) {
    match node.sw.handle_frame(now, ingress, frame) {
        Forward::Drop(_) => {}
        Forward::Unicast(t) => deliver(&mut node.local, &mut node.udp, &t, frame),
        Forward::Flood(targets) => {
            for t in targets {
                deliver(&mut node.local, &mut node.udp, t, frame);
            }
        }
    }
}

fn links(pairs: &[(char, char)]) -> BTreeMap<(char, char), usize> {
    pairs.iter().map(|&p| (p, 1)).collect()
}

const SETTLE: Duration = Duration::from_millis(500);

#[test]
fn triangle_broadcast_reaches_every_other_host_once() {
    let mut net = Net::full_mesh(3).started();
    let bcast = frame(MacAddr::BROADCAST, host(0), 1);
    net.host_send(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert!(t.received(0).is_empty());
    assert_eq!(t.received(1), [bcast.as_slice()]);
    assert_eq!(t.received(2), [bcast.as_slice()]);
    // A to both, then B and C each pass it on to the other, which drops it:
    // the binding of A's address to the link from A is still sticky there.
    assert_eq!(t.links, links(&[('A', 'B'), ('A', 'C'), ('B', 'C'), ('C', 'B')]));
    assert_eq!(t.link_frames() + t.local_frames(), 6);
    assert_eq!(net.sticky_drops(), [0, 1, 1]);
    // Nothing more, however long we wait (but heartbeats).
    net.run_for(Duration::from_secs(120));
    let later = net.take_tally();
    assert_eq!((later.link_frames(), later.local_frames()), (0, 0));
    assert_eq!(later.heartbeats, 4 * 6);
}

#[test]
fn triangle_unicast_replies_follow_the_learned_path() {
    let mut net = Net::full_mesh(3).started();
    net.host_send(0, &frame(MacAddr::BROADCAST, host(0), 1));
    net.run_for(SETTLE);
    net.take_tally();
    let floods = net.floods();

    // B answers A: straight over the B-A link, and only to A's host.
    let reply = frame(host(0), host(1), 2);
    net.host_send(1, &reply);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[('B', 'A')]));
    assert_eq!(t.received(0), [reply]);
    assert_eq!(t.local_frames(), 1);

    // A now knows B's host, and C answers too.
    let to_b = frame(host(1), host(0), 3);
    net.host_send(0, &to_b);
    let from_c = frame(host(0), host(2), 4);
    net.host_send(2, &from_c);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[('A', 'B'), ('C', 'A')]));
    assert_eq!(t.received(1), [to_b]);
    assert_eq!(t.received(0), [from_c]);
    assert!(t.received(2).is_empty());
    assert_eq!(net.floods(), floods, "no reply was flooded");
}

#[test]
fn triangle_with_a_slow_link_still_delivers_once() {
    let mut net = Net::full_mesh(3).started();
    // The copy from A to B arrives after the one that went round by C.
    net.latency.insert((0, 1), Duration::from_millis(50));
    let bcast = frame(MacAddr::BROADCAST, host(0), 1);
    net.host_send(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received(1), [bcast.as_slice()]);
    assert_eq!(t.received(2), [bcast.as_slice()]);
    assert!(t.received(0).is_empty());
    // B took the copy from C, passed it to A (which dropped it: its own
    // host's address is sticky on its local end), and dropped the late
    // direct copy.
    assert_eq!(t.links, links(&[('A', 'B'), ('A', 'C'), ('C', 'B'), ('B', 'A')]));
    assert_eq!(t.link_frames() + t.local_frames(), 6);
    assert_eq!(net.sticky_drops(), [1, 1, 0]);

    // B learned A's host behind C, so its answer goes that way round.
    let reply = frame(host(0), host(1), 2);
    net.host_send(1, &reply);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[('B', 'C'), ('C', 'A')]));
    assert_eq!(t.received(0), [reply]);
    assert_eq!(t.local_frames(), 1);
}

#[test]
fn triangle_unknown_unicast_is_flooded_just_as_boundedly() {
    let mut net = Net::full_mesh(3).started();
    let f = frame(MacAddr([0x02, 0, 0, 0, 0x99, 0x99]), host(0), 1);
    net.host_send(0, &f);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received(1), [f.as_slice()]);
    assert_eq!(t.received(2), [f.as_slice()]);
    assert_eq!(t.link_frames() + t.local_frames(), 6);
}

#[test]
fn four_switch_full_mesh_broadcast_is_bounded() {
    let mut net = Net::full_mesh(4).started();
    let bcast = frame(MacAddr::BROADCAST, host(0), 1);
    net.host_send(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    for i in 1..4 {
        assert_eq!(t.received(i), [bcast.as_slice()], "host {}", name(i));
    }
    assert!(t.received(0).is_empty());
    // A to each of three, and each of those to the two others: 3 + 3 * 2.
    assert_eq!(t.link_frames(), 9);
    assert!(t.links.values().all(|&n| n == 1), "{:?}", t.links);
    assert!(!t.links.contains_key(&('B', 'A')) && !t.links.contains_key(&('C', 'A')));
    assert_eq!(t.link_frames() + t.local_frames(), 12);
    assert_eq!(net.sticky_drops(), [0, 2, 2, 2]);

    // Every other host answers; each answer takes its one direct link.
    let floods = net.floods();
    for i in 1..4 {
        net.host_send(i, &frame(host(0), host(i), 10 + i as u8));
    }
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[('B', 'A'), ('C', 'A'), ('D', 'A')]));
    assert_eq!(t.received(0).len(), 3);
    assert_eq!(t.local_frames(), 3);
    assert_eq!(net.floods(), floods);
}

#[test]
fn four_switch_mesh_stays_bounded_over_time() {
    let mut net = Net::full_mesh(4).started();
    // Every host broadcasts in turn, every 7 s (past the 6 s hold) for ten
    // minutes: past heartbeats, sticky holds and MAC ageing.
    let mut tag = 0u8;
    for round in 0..86 {
        let i = round % 4;
        tag = tag.wrapping_add(1);
        let bcast = frame(MacAddr::BROADCAST, host(i), tag);
        net.host_send(i, &bcast);
        net.run_for(Duration::from_secs(7));
        let t = net.take_tally();
        for j in (0..4).filter(|&j| j != i) {
            assert_eq!(t.received(j), [bcast.as_slice()], "round {round}, host {}", name(j));
        }
        assert_eq!(t.link_frames(), 9, "round {round}: {:?}", t.links);
        assert_eq!(t.local_frames(), 3);
    }
    // All at once, too: each host's broadcast reaches each other host once.
    for i in 0..4 {
        net.host_send(i, &frame(MacAddr::BROADCAST, host(i), 200 + i as u8));
    }
    net.run_for(SETTLE);
    let t = net.take_tally();
    for j in 0..4 {
        let mut got: Vec<u8> = t.received(j).iter().map(|f| f[14]).collect();
        got.sort_unstable();
        let want: Vec<u8> = (0..4).filter(|&i| i != j).map(|i| 200 + i as u8).collect();
        assert_eq!(got, want, "host {}", name(j));
    }
    assert_eq!(t.link_frames(), 4 * 9);
}

/// With every table full, nothing can be learned, and without the loop holds
/// a full table still keeps, this broadcast went round the triangle for ever
/// (1000 copies on the links and 1000 to the hosts in the first 500 ms).
#[test]
fn full_tables_do_not_start_a_storm() {
    // Tables of eight entries, filled by eight addresses behind A.
    let mut net = Net::full_mesh_with(3, Params { mac_capacity: 8, ..Params::default() }).started();
    for k in 0..8 {
        net.host_send(0, &frame(MacAddr::BROADCAST, MacAddr([0x02, 0, 0, 0, 0x20, k]), k));
    }
    net.run_for(SETTLE);
    assert!(net.nodes.iter().all(|n| n.sw.mac_count() == 8));
    net.take_tally();
    let before = net.sticky_drops();
    // B's host is new to every switch, and no switch can learn it.
    let bcast = frame(MacAddr::BROADCAST, host(1), 100);
    net.host_send(1, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received(0), [bcast.as_slice()]);
    assert_eq!(t.received(2), [bcast.as_slice()]);
    assert!(t.received(1).is_empty());
    assert_eq!(t.link_frames() + t.local_frames(), 6);
    assert!(net.nodes.iter().all(|n| n.sw.stats().table_full >= 1));
    // A and C each dropped the copy that came the long way round.
    let after = net.sticky_drops();
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [1, 0, 1]);
}
