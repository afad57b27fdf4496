//! A full mesh stays connected when the underlay jitters (issue 14), and
//! no topology the manual allows storms or loops: real nodes on the
//! deterministic driver (tests/common/netsim.rs), with hosts that resolve
//! each other the way ARP does and then ping.
//!
//! The hosts: each starts with nothing resolved and broadcasts a request
//! for every other host (again every second while it has no answer, as
//! Linux's ARP does); a host that gets a request for itself resolves the
//! asker and answers it with a unicast reply; a reply resolves its sender.
//! Every 50 ms each host pings every host it has resolved, and answers each
//! ping with a unicast echo. Every frame is tagged, so the test knows who
//! sent what and can tell copies apart.
//!
//! A direction X to Y is *cut* when Y's host goes more than [`CUT`] of
//! virtual time without receiving a ping from X while X wants to ping it:
//! from the start (or an ARP flush) to the first ping that arrives, between
//! two that arrive, and from the last one to the end of the run.
//!
//! Two tests: the four-host full mesh over five jittery underlays,
//! 30 seeds each (it cut a pair in 28 of the 150 runs on the manual's rule
//! applied to every frame); and random topologies of up to eight hosts,
//! checked for what no rule change may break (each broadcast reaches each
//! host once, no frame takes more than one datagram per remote of each
//! switch, no unicast crosses as many links as there are hosts) and for
//! cuts.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use common::frames::{frame_with, mac, BCAST};
use common::netsim::{Carried, Link, Net, Rng};
use rrqnet::switch::DropReason;

/// Longer than this without a ping getting through is a cut.
const CUT: Duration = Duration::from_secs(1);
/// How often each host pings each host it has resolved.
const PING_EVERY: Duration = Duration::from_millis(50);
/// How long an unanswered ARP request waits before it is sent again.
const ARP_RETRY: Duration = Duration::from_secs(1);
/// The hosts' reaction time: the driver runs this long between looks.
const STEP: Duration = Duration::from_millis(1);

const REQUEST: u8 = 1;
const REPLY: u8 = 2;
const PING: u8 = 3;
const ECHO: u8 = 4;

fn name(i: usize) -> String {
    ((b'A' + i as u8) as char).to_string()
}

/// The MAC address of host `i`'s interface.
fn host_mac(i: usize) -> [u8; 6] {
    mac(0x10 + i as u8)
}

fn addr(i: usize) -> String {
    format!("192.0.2.{}:2300", 1 + i)
}

/// A tagged frame: kind, sender, receiver (the target of a request) and a
/// sequence number that makes every frame distinct.
fn message(kind: u8, from: usize, to: usize, seq: u32) -> Vec<u8> {
    let dst = if kind == REQUEST { BCAST } else { host_mac(to) };
    let s = seq.to_be_bytes();
    frame_with(dst, host_mac(from), 60, |i| match i {
        14 => kind,
        15 => from as u8,
        16 => to as u8,
        17..=20 => s[i - 17],
        _ => 0,
    })
}

/// Who sent a delivered frame, and what it was.
struct Message {
    kind: u8,
    from: usize,
    to: usize,
}

fn parse(f: &[u8]) -> Message {
    Message { kind: f[14], from: f[15] as usize, to: f[16] as usize }
}

/// One cut: who could not reach whom, from when, for how long.
#[derive(Debug, Clone, PartialEq)]
struct Cut {
    from: usize,
    to: usize,
    at: Duration,
    length: Duration,
}

impl fmt::Display for Cut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}->{} for {:.2} s from {:.2} s",
            name(self.from),
            name(self.to),
            self.length.as_secs_f64(),
            self.at.as_secs_f64()
        )
    }
}

/// What a run of ARP and pings saw.
#[derive(Debug, Default)]
struct Report {
    cuts: Vec<Cut>,
    /// Frames a host received more than once.
    duplicates: usize,
    /// Broadcasts a host received more than once.
    broadcast_duplicates: usize,
    /// Pings sent and pings received.
    pings: (usize, usize),
    /// The most datagrams any one broadcast took.
    most_datagrams_per_broadcast: usize,
    /// The most links any copy of a unicast frame crossed.
    most_unicast_hops: u32,
    /// `sticky-elsewhere` drops during the run.
    sticky: u64,
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} cut(s)", self.cuts.len())?;
        for c in &self.cuts {
            write!(f, "; {c}")?;
        }
        write!(
            f,
            " ({} of {} pings arrived, {} frame(s) and {} broadcast(s) received twice, {} sticky drop(s), at most {} \
             datagrams per broadcast, unicast hops at most {})",
            self.pings.1,
            self.pings.0,
            self.duplicates,
            self.broadcast_duplicates,
            self.sticky,
            self.most_datagrams_per_broadcast,
            self.most_unicast_hops
        )
    }
}

/// The hosts above the nodes: ARP and ping, as a kernel does them.
struct Hosts {
    /// The driver's host index of each pinging host.
    idx: Vec<usize>,
    resolved: Vec<Vec<bool>>,
    next_request: Vec<Vec<Option<Duration>>>,
    /// When each pinging direction started wanting to get through.
    since: Vec<Vec<Duration>>,
    /// When pings from X arrived at Y, by [X][Y].
    arrived: Vec<Vec<Vec<Duration>>>,
    seen: BTreeMap<(usize, Vec<u8>), usize>,
    seq: u32,
    sent: usize,
    received: usize,
    cuts: Vec<Cut>,
    /// What the network carried of each frame, over the whole run.
    carried: BTreeMap<Vec<u8>, Carried>,
}

impl Hosts {
    fn new(idx: Vec<usize>, now: Duration) -> Hosts {
        let n = idx.len();
        Hosts {
            idx,
            resolved: vec![vec![false; n]; n],
            next_request: vec![vec![Some(now); n]; n],
            since: vec![vec![now; n]; n],
            arrived: vec![vec![Vec::new(); n]; n],
            seen: BTreeMap::new(),
            seq: 0,
            sent: 0,
            received: 0,
            cuts: Vec::new(),
            carried: BTreeMap::new(),
        }
    }

    fn send(&mut self, net: &mut Net, kind: u8, from: usize, to: usize) {
        self.seq += 1;
        net.send_local(self.idx[from], &message(kind, from, to, self.seq));
    }

    /// Every host forgets every other host's address at once (an ARP
    /// flush): it must ask again before it can ping.
    fn flush(&mut self, now: Duration) {
        self.close(now);
        let n = self.idx.len();
        for x in 0..n {
            for y in 0..n {
                self.resolved[x][y] = false;
                self.next_request[x][y] = Some(now);
                self.since[x][y] = now;
            }
        }
    }

    /// Finds the cuts up to `now` and forgets the arrivals.
    fn close(&mut self, now: Duration) {
        let n = self.idx.len();
        for x in 0..n {
            for y in (0..n).filter(|&y| y != x) {
                let times = std::mem::take(&mut self.arrived[x][y]);
                self.received += times.len();
                let mut last = self.since[x][y];
                for t in times.into_iter().chain(std::iter::once(now)) {
                    if t - last > CUT {
                        self.cuts.push(Cut { from: x, to: y, at: last, length: t - last });
                    }
                    last = t;
                }
            }
        }
    }

    /// Runs the hosts and the network for `length`.
    fn run(&mut self, net: &mut Net, length: Duration) {
        let n = self.idx.len();
        let end = net.now + length;
        // Each direction pings at its own phase within the 50 ms period.
        let phase = |x: usize, y: usize| Duration::from_millis(((x * n + y) * 7 % 50) as u64);
        while net.now < end {
            let now = net.now;
            for x in 0..n {
                for y in (0..n).filter(|&y| y != x) {
                    if self.next_request[x][y].is_some_and(|t| t <= now) && !self.resolved[x][y] {
                        self.send(net, REQUEST, x, y);
                        self.next_request[x][y] = Some(now + ARP_RETRY);
                    }
                    let tick = (now.as_millis() + 50 - phase(x, y).as_millis()) % PING_EVERY.as_millis() == 0;
                    if tick && self.resolved[x][y] {
                        self.sent += 1;
                        self.send(net, PING, x, y);
                    }
                }
            }
            net.run_for(STEP);
            let t = net.take_tally();
            for (payload, c) in t.frames {
                let all = self.carried.entry(payload).or_default();
                all.datagrams += c.datagrams;
                all.max_hops = all.max_hops.max(c.max_hops);
            }
            for (hname, frames) in &t.local {
                let y = self.idx.iter().position(|&h| net.hosts[h].name == *hname).expect("a pinging host");
                for f in frames {
                    *self.seen.entry((y, f.clone())).or_default() += 1;
                    let m = parse(f);
                    match m.kind {
                        REQUEST if m.to == y => {
                            self.resolved[y][m.from] = true;
                            self.send(net, REPLY, y, m.from);
                        }
                        REPLY => self.resolved[y][m.from] = true,
                        PING => {
                            self.arrived[m.from][y].push(net.now);
                            self.send(net, ECHO, y, m.from);
                        }
                        _ => {}
                    }
                }
            }
        }
    }

    fn report(&mut self, net: &Net) -> Report {
        self.close(net.now);
        let cuts = std::mem::take(&mut self.cuts);
        let received = self.received;
        let duplicates = self.seen.values().filter(|&&c| c > 1).count();
        let broadcast_duplicates = self.seen.iter().filter(|((_, f), &c)| c > 1 && f[..6] == BCAST).count();
        let broadcasts = self.carried.iter().filter(|(f, _)| f[..6] == BCAST);
        let unicasts = self.carried.iter().filter(|(f, _)| f[..6] != BCAST);
        Report {
            cuts,
            duplicates,
            broadcast_duplicates,
            pings: (self.sent, received),
            most_datagrams_per_broadcast: broadcasts.map(|(_, c)| c.datagrams).max().unwrap_or(0),
            most_unicast_hops: unicasts.map(|(_, c)| c.max_hops).max().unwrap_or(0),
            sticky: net.drops(DropReason::Sticky).iter().sum(),
        }
    }
}

/// `n` hosts, each with a local end and an uplink to every other one: the
/// manual's "multiple pair-wise uplinks", over links of `delay` plus a
/// normally distributed `jitter`, all from `seed`.
fn jittery_mesh(n: usize, seed: u64, u: Underlay) -> Net {
    let mut net = Net::new(seed);
    net.default_link = Link { latency: u.delay, jitter: u.jitter, ..Link::default() };
    net.send_spacing = u.spacing;
    for i in 0..n {
        let others: Vec<String> = (0..n).filter(|&j| j != i).map(addr).collect();
        net.add(&name(i), &addr(i), &format!("-t - 2300 {}", others.join(" ")), &[]);
    }
    net.started()
}

/// Every host resolves and pings every other one from empty tables for
/// 12 s, then every host flushes its ARP cache at once and does it again
/// for 12 s (the switches still hold what they learned).
fn arp_and_pings(n: usize, seed: u64, u: Underlay) -> Report {
    let mut net = jittery_mesh(n, seed, u);
    let mut hosts = Hosts::new((0..n).collect(), net.now);
    hosts.run(&mut net, Duration::from_secs(12));
    hosts.flush(net.now);
    hosts.run(&mut net, Duration::from_secs(12));
    hosts.report(&net)
}

const fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

const fn us(n: u64) -> Duration {
    Duration::from_micros(n)
}

/// An underlay: each datagram takes `delay` plus a normally distributed
/// extra of deviation `jitter` (cut at zero), and a host's datagrams leave
/// `spacing` apart.
#[derive(Debug, Clone, Copy)]
struct Underlay {
    delay: Duration,
    jitter: Duration,
    spacing: Duration,
}

impl fmt::Display for Underlay {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        write!(f, "{:.2} ± {:.2} ms, sends {:.2} ms apart", ms(self.delay), ms(self.jitter), ms(self.spacing))
    }
}

/// The underlays of the issue (2 ± 2 ms and 5 ± 5 ms added to a fast
/// LAN), the LAN alone (where a relay that is quicker than the sender's
/// next send is enough), a rougher one, and one with slow senders.
const UNDERLAYS: [Underlay; 5] = [
    Underlay { delay: us(2050), jitter: ms(2), spacing: us(30) },
    Underlay { delay: us(5050), jitter: ms(5), spacing: us(30) },
    Underlay { delay: us(50), jitter: us(20), spacing: us(30) },
    Underlay { delay: ms(5), jitter: ms(10), spacing: us(30) },
    Underlay { delay: ms(1), jitter: ms(3), spacing: us(300) },
];

const SEEDS: u64 = 30;

#[test]
fn a_jittery_full_mesh_of_four_is_never_cut() {
    let mut bad = Vec::new();
    for u in UNDERLAYS {
        for seed in 1..=SEEDS {
            let r = arp_and_pings(4, seed, u);
            eprintln!("{u}, seed {seed}: {r}");
            // A broadcast: 3 copies from the sender, 2 from each other host
            // at most. A unicast: a simple path, three links at most.
            if !r.cuts.is_empty() || r.duplicates > 0 || r.most_datagrams_per_broadcast > 9 || r.most_unicast_hops > 3 {
                bad.push(format!("{u}, seed {seed}: {r}"));
            }
        }
    }
    let runs = UNDERLAYS.len() as u64 * SEEDS;
    assert!(bad.is_empty(), "{} of {runs} runs cut a direction or duplicated a frame:\n{}", bad.len(), bad.join("\n"));
}

// ---------------------------------------------------------------------------
// Any topology the manual allows: no storm, no loop, no duplicate, no cut.
// ---------------------------------------------------------------------------

/// A topology: which hosts have a local end, which share the multicast
/// group, who uplinks to whom, and who accepts downlinks from anyone.
#[derive(Debug, Clone)]
struct Topology {
    kind: &'static str,
    local: Vec<bool>,
    group: Vec<bool>,
    uplinks: Vec<Vec<usize>>,
    downlinks: Vec<bool>,
}

impl Topology {
    fn new(kind: &'static str, n: usize) -> Topology {
        Topology {
            kind,
            local: vec![true; n],
            group: vec![false; n],
            uplinks: vec![Vec::new(); n],
            downlinks: vec![false; n],
        }
    }

    fn len(&self) -> usize {
        self.local.len()
    }

    /// A link between `a` and `b`: both uplink to each other, or one
    /// uplinks and the other takes it as a downlink.
    fn link(&mut self, a: usize, b: usize, rng: &mut Rng) {
        match rng.below(3) {
            0 => {
                self.uplinks[a].push(b);
                self.uplinks[b].push(a);
            }
            1 => {
                self.uplinks[a].push(b);
                self.downlinks[b] = true;
            }
            _ => {
                self.uplinks[b].push(a);
                self.downlinks[a] = true;
            }
        }
    }

    /// Whether two members of the multicast group have other links too:
    /// then the group is one of several paths between them.
    fn group_is_a_second_path(&self) -> bool {
        let linked = |i: usize| !self.uplinks[i].is_empty() || self.uplinks.iter().any(|u| u.contains(&i));
        (0..self.len()).filter(|&i| self.group[i] && linked(i)).count() >= 2
    }

    /// The command line of host `i`.
    fn args(&self, i: usize) -> String {
        let mut a = Vec::new();
        if self.group[i] {
            a.push("-m 239.1.2.3:5000".to_owned());
        }
        if self.local[i] {
            a.push("-t -".to_owned());
        }
        a.push("2300".to_owned());
        a.extend(self.uplinks[i].iter().map(|&j| addr(j)));
        if self.downlinks[i] {
            a.push("192.0.2.0/24:2300".to_owned());
        }
        a.join(" ")
    }

    /// Meshes, stars, chains of pure switches, random graphs with pure
    /// switches in them, and meshes with a multicast segment, of 3 to 8
    /// hosts, at least two of them with a local end, always connected.
    fn random(rng: &mut Rng) -> Topology {
        let n = 3 + rng.below(6) as usize;
        match rng.below(5) {
            0 => {
                let mut t = Topology::new("full mesh", n);
                for a in 0..n {
                    for b in a + 1..n {
                        t.link(a, b, rng);
                    }
                }
                t
            }
            1 => {
                let mut t = Topology::new("star", n);
                t.local[0] = rng.below(2) == 0;
                for i in 1..n {
                    t.link(0, i, rng);
                }
                t
            }
            2 => {
                let mut t = Topology::new("chain of pure switches", n);
                for i in 1..n - 1 {
                    t.local[i] = false;
                }
                for i in 0..n - 1 {
                    t.link(i, i + 1, rng);
                }
                t
            }
            3 => {
                let mut t = Topology::new("random graph", n);
                for i in 1..n {
                    let j = rng.below(i as u64) as usize;
                    t.link(i, j, rng);
                }
                for a in 0..n {
                    for b in a + 1..n {
                        if rng.below(3) == 0 && !t.uplinks[a].contains(&b) && !t.uplinks[b].contains(&a) {
                            t.link(a, b, rng);
                        }
                    }
                }
                for i in 2..n {
                    t.local[i] = rng.below(3) != 0;
                }
                t
            }
            _ => {
                let mut t = Topology::new("mesh with a multicast segment", n);
                let members = 2 + rng.below(n as u64 - 1) as usize;
                for i in 0..members {
                    t.group[i] = true;
                }
                // The others mesh among themselves and uplink to some member.
                for a in members..n {
                    for b in a + 1..n {
                        t.link(a, b, rng);
                    }
                    let m = rng.below(members as u64) as usize;
                    t.link(a, m, rng);
                    if rng.below(2) == 0 {
                        t.link(a, (m + 1) % members, rng);
                    }
                }
                // Some members have uplinks between them too: two paths.
                if members >= 2 && rng.below(2) == 0 {
                    t.link(0, 1, rng);
                }
                t
            }
        }
    }
}

impl fmt::Display for Topology {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} of {}:", self.kind, self.len())?;
        for i in 0..self.len() {
            write!(f, " [{}: rrqnet {}]", name(i), self.args(i))?;
        }
        Ok(())
    }
}

/// The topology on links of random delay (50 µs to 10 ms) and jitter (up
/// to the delay), every host's sends spaced at random (up to 0.3 ms).
fn build(t: &Topology, rng: &mut Rng, seed: u64) -> Net {
    let mut net = Net::new(seed);
    net.send_spacing = us(rng.below(300));
    for i in 0..t.len() {
        net.add(&name(i), &addr(i), &t.args(i), &[]);
    }
    for a in 0..t.len() {
        for b in (0..t.len()).filter(|&b| b != a) {
            let latency = us(50 + rng.below(10_000));
            let jitter = us(rng.below(latency.as_micros() as u64 + 1));
            net.set_link(a, b, Link { latency, jitter, ..Link::default() });
        }
    }
    net.started()
}

/// The most datagrams one frame may take: each host relays it at most once
/// to each remote (the multicast group counts once per other member).
fn relay_bound(t: &Topology, net: &Net) -> usize {
    let members = t.group.iter().filter(|&&g| g).count();
    (0..t.len())
        .map(|i| {
            let sw = net.hosts[i].node.switch();
            let udp = sw.targets().filter(|p| matches!(p.dest, rrqnet::switch::Dest::Remote(_))).count();
            udp + if t.group[i] { members - 1 } else { 0 }
        })
        .sum()
}

/// Sixty random topologies (`TOPO_SEED` and `TOPO_RUNS` pick others, e.g.
/// `TOPO_RUNS=400 cargo test --release --test mesh random`), each with
/// random links; the hosts resolve and ping each other for 4 s, flush and
/// do it again for 4 s, then all broadcast at once, twice.
#[test]
fn random_topologies_neither_storm_nor_loop_nor_cut() {
    let mut rng = Rng::new(std::env::var("TOPO_SEED").map_or(14, |v| v.parse().unwrap()));
    let mut bad = Vec::new();
    let runs = std::env::var("TOPO_RUNS").map_or(60, |v| v.parse().unwrap());
    for run in 0..runs {
        let t = Topology::random(&mut rng);
        let seed = rng.next_u64();
        let mut net = build(&t, &mut rng, seed);
        let locals: Vec<usize> = (0..t.len()).filter(|&i| t.local[i]).collect();
        let mut hosts = Hosts::new(locals, net.now);
        hosts.run(&mut net, Duration::from_secs(4));
        hosts.flush(net.now);
        hosts.run(&mut net, Duration::from_secs(4));
        // Every host broadcasts at once, twice: the floods cross.
        for round in 0..2 {
            for (k, &i) in hosts.idx.clone().iter().enumerate() {
                // A request for nobody (target 255): every host gets it, none answers.
                net.send_local(i, &message(REQUEST, k, 255, 1_000_000 + round * 100 + k as u32));
            }
            net.run_for(Duration::from_millis(300));
        }
        let bound = relay_bound(&t, &net);
        let tail = net.take_tally();
        let r = hosts.report(&net);
        let copies = tail
            .local
            .iter()
            .flat_map(|(h, fs)| fs.iter().filter(|f| f[..6] == BCAST).map(move |f| (h, f)))
            .fold(BTreeMap::new(), |mut m, hf| {
                *m.entry(hf).or_insert(0usize) += 1;
                m
            });
        let most_tail = tail.frames.values().map(|c| c.datagrams).max().unwrap_or(0);
        let n = t.len() as u32;
        let line =
            format!("run {run} (seed {seed}): {t}\n    {r}; bound {bound}, after the crossing floods {most_tail}");
        // Loops, storms and copies of broadcasts: never, anywhere.
        let safe = r.broadcast_duplicates == 0
            && copies.values().all(|&c| c <= 1)
            && r.most_datagrams_per_broadcast <= bound
            && most_tail <= bound
            && r.most_unicast_hops < n;
        // Cuts and copies of unicast: never but where the group is a second
        // path between two members (see the README: not solved there).
        let connected = r.cuts.is_empty() && r.duplicates == 0;
        if t.group_is_a_second_path() && !connected {
            eprintln!("known limit: {line}");
        }
        if !safe || !(connected || t.group_is_a_second_path()) {
            eprintln!("{line}");
            bad.push(line);
        }
    }
    assert!(bad.is_empty(), "{} of {runs} topologies failed:\n{}", bad.len(), bad.join("\n"));
}
