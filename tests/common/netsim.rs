//! A deterministic driver: several rrqnet nodes on a virtual network, on a
//! virtual clock (in the manner of quinn-proto's `Pair` and smoltcp's
//! netsim).
//!
//! Each host runs a real [`Node`] built from a real command line (parsed by
//! `rrqnet::cli`), with real declarations, keys, heartbeats and staleness.
//! Its channels are numbered as the daemon numbers them: the UDP socket, the
//! local end (the host's own interface: what the node plans for it is
//! recorded, and the test injects what the host sends), and the multicast
//! group. The network carries each planned UDP datagram to the host bound to
//! its destination address after the link's delay (plus jitter), and may
//! lose, duplicate or (through jitter) reorder it, all from one seeded
//! generator, so every run with a seed is the same run. Multicast datagrams
//! reach every member of the group, the sender too (as with
//! `IP_MULTICAST_LOOP`), from the sender's own address.
//!
//! Time is a fixed origin plus a `Duration`; timers fire when a node's
//! `poll_timeout` says. Nothing sleeps. Everything carried is counted, so a
//! broadcast storm shows as a count that grows, or as a run that never
//! settles (which fails).

#![allow(dead_code)]

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use rrqnet::channel::{Datagram, SendReport};
use rrqnet::cli::{self, Invocation};
use rrqnet::config::LocalEnd;
use rrqnet::crypto::MasterKey;
use rrqnet::node::{MulticastSetup, Node, Now, Setup};
use rrqnet::switch::{DropReason, Params, Stats};

/// A run that takes more steps than this is a storm.
pub const MAX_STEPS: usize = 1_000_000;
/// The delay of a link nobody configured.
pub const DEFAULT_LATENCY: Duration = Duration::from_millis(1);
/// The wall clock at the virtual origin.
pub const UNIX_ORIGIN: u64 = 1_800_000_000;

/// The channel numbers of a simulated host, as the daemon assigns them.
pub const UDP: usize = 0;
/// The local end.
pub const LOCAL: usize = 1;
/// The multicast group.
pub const GROUP: usize = 2;

/// A small, seeded generator (SplitMix64): the same seed, the same run.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in [0, 1).
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in [0, n).
    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next_u64() % n
        }
    }

    /// Standard normal (Box-Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.unit().max(f64::MIN_POSITIVE);
        let u2 = self.unit();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }
}

/// How a directed link treats datagrams.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Link {
    /// Fixed delay.
    pub latency: Duration,
    /// Standard deviation of a normally distributed extra delay (cut at 0).
    pub jitter: Duration,
    /// Probability that a datagram is lost.
    pub loss: f64,
    /// Probability that a datagram arrives twice.
    pub duplicate: f64,
    /// False while the link is cut: nothing crosses.
    pub up: bool,
}

impl Default for Link {
    fn default() -> Self {
        Link { latency: DEFAULT_LATENCY, jitter: Duration::ZERO, loss: 0.0, duplicate: 0.0, up: true }
    }
}

/// One simulated host: its node, its addresses, what reached its interface.
pub struct Host {
    pub name: String,
    /// The UDP address it binds and sends from.
    pub addr: SocketAddr,
    /// The address its multicast datagrams come from.
    pub own_group_addr: SocketAddr,
    pub node: Node,
    pub in_group: bool,
    pub has_local: bool,
    /// Seconds this host's wall clock is off the network's.
    pub clock_offset: i64,
}

/// A datagram or frame in flight.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct InFlight {
    at: Duration,
    seq: u64,
    /// Links crossed so far, this one included (not on the wire: the
    /// driver's own bookkeeping, to bound how far a frame travels).
    hops: u32,
    to: usize,
    chan: usize,
    from_host: usize,
    from: SocketAddr,
    payload: Vec<u8>,
}

/// What kind of datagram a payload is, as a capture would tell.
pub fn is_heartbeat(payload: &[u8]) -> bool {
    // A plain heartbeat is short; a keyed one is version 1, type 2.
    payload.len() <= 11 || (payload.len() == 50 && payload[0] == 1 && payload[1] == 2)
}

/// What the network carried, for the test to read.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Tally {
    /// Non-heartbeat datagrams carried on each directed link, by host names.
    pub links: BTreeMap<(String, String), usize>,
    /// Frames delivered to each host's interface, in order.
    pub local: BTreeMap<String, Vec<Vec<u8>>>,
    /// Heartbeats carried.
    pub heartbeats: usize,
    /// Datagrams to an address no host holds.
    pub unrouted: usize,
    /// Datagrams lost by the links.
    pub lost: usize,
    /// Every distinct non-heartbeat payload carried: how many datagrams
    /// carried it and the most links one copy of it crossed.
    pub frames: BTreeMap<Vec<u8>, Carried>,
}

/// What the network did with one payload (one frame, on plain channels).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Carried {
    /// Datagrams that carried it, over all links (a multicast datagram
    /// counts once per member that heard it).
    pub datagrams: usize,
    /// The most links one copy crossed from where it entered the network.
    pub max_hops: u32,
}

impl Tally {
    pub fn link_frames(&self) -> usize {
        self.links.values().sum()
    }
    pub fn local_frames(&self) -> usize {
        self.local.values().map(Vec::len).sum()
    }
    pub fn received(&self, host: &str) -> &[Vec<u8>] {
        self.local.get(host).map_or(&[], Vec::as_slice)
    }
}

/// A tap on the wire: every datagram that crossed a link, for replays (a
/// multicast datagram once per member that heard it, to that member's
/// address, from the sender's group address).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Captured {
    pub from: SocketAddr,
    pub to: SocketAddr,
    pub payload: Vec<u8>,
}

/// The network.
pub struct Net {
    base: Instant,
    pub now: Duration,
    pub hosts: Vec<Host>,
    in_flight: BinaryHeap<Reverse<InFlight>>,
    seq: u64,
    pub default_link: Link,
    /// The time a host takes to send one datagram: the k-th datagram of one
    /// flush leaves k times this after the first (a real sender's copies of
    /// a flood go out one after another). Zero unless a test sets it.
    pub send_spacing: Duration,
    links: HashMap<(usize, usize), Link>,
    pub rng: Rng,
    pub tally: Tally,
    pub capture: Vec<Captured>,
    pub capturing: bool,
    buf: Vec<u8>,
    /// The hop count of what the host being flushed plans: one more than
    /// the datagram it is handling, 1 for what its own end or a timer made.
    hops: u32,
}

/// The material of a named key file, for [`Net::add`].
pub type KeyMaterial<'a> = (&'a str, &'a [u8]);

impl Net {
    /// An empty network whose randomness comes from `seed`.
    pub fn new(seed: u64) -> Net {
        Net {
            base: Instant::now(),
            now: Duration::ZERO,
            hosts: Vec::new(),
            in_flight: BinaryHeap::new(),
            seq: 0,
            default_link: Link::default(),
            send_spacing: Duration::ZERO,
            links: HashMap::new(),
            rng: Rng::new(seed),
            tally: Tally::default(),
            capture: Vec::new(),
            capturing: false,
            buf: vec![0u8; 70_000],
            hops: 1,
        }
    }

    /// The time as host `i` reads it.
    pub fn now_of(&self, i: usize) -> Now {
        let secs = UNIX_ORIGIN as i64 + self.now.as_secs() as i64 + self.hosts.get(i).map_or(0, |h| h.clock_offset);
        Now { mono: self.base + self.now, unix: secs.max(0) as u64 }
    }

    /// Adds a host at `addr` running `rrqnet ARGS` (the port in the
    /// arguments is the port of `addr`); key files named in declarations are
    /// looked up in `keys` by path. Returns its index.
    pub fn add(&mut self, name: &str, addr: &str, args: &str, keys: &[KeyMaterial<'_>]) -> usize {
        self.add_with(name, addr, args, keys, Params::default())
    }

    /// [`Net::add`] with switch bounds of its own.
    pub fn add_with(&mut self, name: &str, addr: &str, args: &str, keys: &[KeyMaterial<'_>], params: Params) -> usize {
        let argv = std::iter::once("rrqnet").chain(args.split_whitespace());
        let cfg = match cli::parse(argv) {
            Ok(Invocation::Run(cfg)) => cfg,
            other => panic!("{name}: rrqnet {args}: {other:?}"),
        };
        let addr: SocketAddr = addr.parse().unwrap();
        let i = self.hosts.len();
        let mut materials: Vec<MasterKey> = Vec::new();
        let mut paths: Vec<PathBuf> = Vec::new();
        let mut key = |path: &Option<PathBuf>| -> Option<usize> {
            let path = path.as_ref()?;
            if let Some(k) = paths.iter().position(|p| p == path) {
                return Some(k);
            }
            let (_, bytes) =
                keys.iter().find(|(n, _)| path.as_os_str() == *n).unwrap_or_else(|| panic!("no key {path:?}"));
            materials.push(MasterKey::from_bytes(bytes).unwrap());
            paths.push(path.clone());
            Some(materials.len() - 1)
        };
        let remotes: Vec<_> = cfg.remotes.iter().map(|r| (r.clone(), key(&r.key))).collect();
        let own_group_addr = SocketAddr::new(addr.ip(), 40_000 + i as u16);
        let multicast = cfg.multicast.as_ref().map(|m| MulticastSetup {
            chan: GROUP,
            group: m.addr(),
            own: own_group_addr,
            key: key(&m.key),
        });
        let has_local = cfg.local != LocalEnd::None;
        let in_group = multicast.is_some();
        let setup = Setup {
            remotes,
            keys: materials,
            channels: 3,
            local: has_local.then_some(LOCAL),
            udp: cfg.port.map(|_| UDP),
            multicast,
            switch: params,
            batch: 32,
        };
        let node = Node::new(setup, self.now_of(usize::MAX)).unwrap();
        self.hosts.push(Host {
            name: name.to_owned(),
            addr,
            own_group_addr,
            node,
            in_group,
            has_local,
            clock_offset: 0,
        });
        i
    }

    /// The host with this name.
    pub fn host(&self, name: &str) -> usize {
        self.hosts.iter().position(|h| h.name == name).unwrap_or_else(|| panic!("no host {name}"))
    }

    /// The link from host `a` to host `b`.
    pub fn link(&self, a: usize, b: usize) -> Link {
        self.links.get(&(a, b)).copied().unwrap_or(self.default_link)
    }

    /// Sets the link from `a` to `b`.
    pub fn set_link(&mut self, a: usize, b: usize, link: Link) {
        self.links.insert((a, b), link);
    }

    /// Sets both directions between `a` and `b`.
    pub fn set_links(&mut self, a: usize, b: usize, link: Link) {
        self.set_link(a, b, link);
        self.set_link(b, a, link);
    }

    /// Host `i` puts a frame on its interface (the node's local end).
    pub fn send_local(&mut self, i: usize, frame: &[u8]) {
        let now = self.now_of(i);
        let mut buf = frame.to_vec();
        let len = buf.len();
        self.hosts[i].node.handle_input(now, LOCAL, None, &mut buf, 0..len);
        self.hops = 1;
        self.flush(i);
    }

    /// Puts a datagram on the wire from `from` to `to`, as anybody could.
    pub fn inject(&mut self, from: SocketAddr, to: SocketAddr, payload: &[u8]) {
        match self.hosts.iter().position(|h| h.addr == to) {
            Some(j) => {
                self.hops = 0;
                self.schedule(j, UDP, usize::MAX, from, payload.to_vec(), Duration::ZERO)
            }
            None => self.tally.unrouted += 1,
        }
    }

    fn schedule(
        &mut self,
        to: usize,
        chan: usize,
        from_host: usize,
        from: SocketAddr,
        payload: Vec<u8>,
        delay: Duration,
    ) {
        self.seq += 1;
        let f = InFlight { at: self.now + delay, seq: self.seq, hops: self.hops, to, chan, from_host, from, payload };
        self.in_flight.push(Reverse(f));
    }

    /// The delay of one datagram on link `a` to `b`, or `None` if it is lost.
    fn carry(&mut self, a: usize, b: usize) -> Vec<Duration> {
        let link = self.link(a, b);
        if !link.up || self.rng.unit() < link.loss {
            self.tally.lost += 1;
            return Vec::new();
        }
        let copies = if self.rng.unit() < link.duplicate { 2 } else { 1 };
        (0..copies)
            .map(|_| {
                let extra = (self.rng.normal() * link.jitter.as_secs_f64()).max(0.0);
                link.latency + Duration::from_secs_f64(extra)
            })
            .collect()
    }

    /// Takes what host `i`'s node planned: frames for its interface into
    /// the tally, datagrams onto the links.
    pub fn flush(&mut self, i: usize) {
        let now = self.now_of(i);
        let mut out: Vec<(usize, Option<SocketAddr>, Vec<u8>)> = Vec::new();
        let has_local = self.hosts[i].has_local;
        self.hosts[i]
            .node
            .flush_with(now, |chan, arena, batch: &[Datagram]| {
                for d in batch {
                    out.push((chan, d.to, arena[d.range.clone()].to_vec()));
                }
                if chan == LOCAL && !has_local {
                    panic!("a frame planned for a local end the host does not have");
                }
                Ok::<_, ()>(SendReport { sent: batch.len(), failed: 0, too_large: 0 })
            })
            .unwrap();
        let name = self.hosts[i].name.clone();
        let from = self.hosts[i].addr;
        let mut queued = Duration::ZERO;
        for (chan, to, payload) in out {
            match chan {
                LOCAL => self.tally.local.entry(name.clone()).or_default().push(payload),
                UDP => {
                    let to = to.expect("a UDP datagram has a destination");
                    let Some(j) = self.hosts.iter().position(|h| h.addr == to) else {
                        self.tally.unrouted += 1;
                        continue;
                    };
                    if self.capturing {
                        self.capture.push(Captured { from, to, payload: payload.clone() });
                    }
                    let spacing = queued;
                    queued += self.send_spacing;
                    for delay in self.carry(i, j) {
                        let delay = delay + spacing;
                        if is_heartbeat(&payload) {
                            self.tally.heartbeats += 1;
                        } else {
                            *self.tally.links.entry((name.clone(), self.hosts[j].name.clone())).or_default() += 1;
                            self.count_frame(&payload);
                        }
                        self.schedule(j, UDP, i, from, payload.clone(), delay);
                    }
                }
                GROUP => {
                    let own = self.hosts[i].own_group_addr;
                    for j in 0..self.hosts.len() {
                        if !self.hosts[j].in_group {
                            continue;
                        }
                        let delays = if j == i { vec![Duration::ZERO] } else { self.carry(i, j) };
                        for delay in delays {
                            if j != i {
                                *self.tally.links.entry((name.clone(), self.hosts[j].name.clone())).or_default() += 1;
                                self.count_frame(&payload);
                                if self.capturing {
                                    let to = self.hosts[j].addr;
                                    self.capture.push(Captured { from: own, to, payload: payload.clone() });
                                }
                            }
                            self.schedule(j, GROUP, i, own, payload.clone(), delay);
                        }
                    }
                }
                other => panic!("a payload planned for channel {other}"),
            }
        }
    }

    fn count_frame(&mut self, payload: &[u8]) {
        let hops = self.hops;
        let c = match self.tally.frames.get_mut(payload) {
            Some(c) => c,
            None => self.tally.frames.entry(payload.to_vec()).or_default(),
        };
        c.datagrams += 1;
        c.max_hops = c.max_hops.max(hops);
    }

    /// When the next thing happens: an arrival or a timer.
    fn next_event(&self) -> Option<Duration> {
        let arrival = self.in_flight.peek().map(|Reverse(f)| f.at);
        let timer = self.hosts.iter().filter_map(|h| h.node.poll_timeout()).min().map(|t| t - self.base);
        match (arrival, timer) {
            (Some(a), Some(t)) => Some(a.min(t)),
            (a, t) => a.or(t),
        }
    }

    /// Runs the network for `d` of virtual time: datagrams arrive and timers
    /// fire in time order.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        for step in 0.. {
            assert!(step < MAX_STEPS, "no end to the traffic: a broadcast storm? {:?}", self.tally.links);
            let Some(next) = self.next_event() else { break };
            if next > end {
                break;
            }
            self.now = self.now.max(next);
            let due = self.in_flight.peek().is_some_and(|Reverse(f)| f.at <= self.now);
            if due {
                let Reverse(f) = self.in_flight.pop().unwrap();
                let now = self.now_of(f.to);
                let len = f.payload.len();
                self.buf[..len].copy_from_slice(&f.payload);
                self.hosts[f.to].node.handle_input(now, f.chan, Some(f.from), &mut self.buf, 0..len);
                self.hops = f.hops + 1;
                self.flush(f.to);
            } else {
                for i in 0..self.hosts.len() {
                    let now = self.now_of(i);
                    if self.hosts[i].node.poll_timeout().is_some_and(|t| t <= now.mono) {
                        self.hosts[i].node.handle_timeout(now);
                        self.hops = 1;
                        self.flush(i);
                    }
                }
            }
        }
        self.now = end;
    }

    /// Lets the start-up heartbeats pass, then forgets what was carried.
    pub fn started(mut self) -> Net {
        for i in 0..self.hosts.len() {
            let now = self.now_of(i);
            self.hosts[i].node.handle_timeout(now);
            self.hops = 1;
            self.flush(i);
        }
        self.run_for(Duration::from_millis(100));
        self.take_tally();
        self
    }

    pub fn take_tally(&mut self) -> Tally {
        std::mem::take(&mut self.tally)
    }

    pub fn stats(&self, i: usize) -> &Stats {
        self.hosts[i].node.stats()
    }

    pub fn drops(&self, reason: DropReason) -> Vec<u64> {
        self.hosts.iter().map(|h| h.node.stats().dropped(reason)).collect()
    }

    pub fn floods(&self) -> u64 {
        self.hosts.iter().map(|h| h.node.stats().flooded).sum()
    }
}
