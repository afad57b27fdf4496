//! Admission and storm control: the limits that keep a stranger's traffic
//! from costing the node more than it costs the stranger.
//!
//! A plain downlink admits any source inside its address block, and a
//! forged UDP source costs an attacker nothing. Without limits, forged
//! heartbeats from thousands of addresses make thousands of remotes, and
//! from then on every broadcast is sent to each of them: one forged
//! datagram becomes thousands (issue 13, finding 1). So the guard bounds,
//! and counts, every way in:
//!
//! - **How fast remotes are made**: a token bucket per declaration
//!   ([`Limits::new_remotes`]) and one per source prefix, /24 for IPv4 and
//!   /64 for IPv6 ([`Limits::new_remotes_per_prefix`]), so that one network
//!   cannot spend a declaration's whole allowance. Only a datagram that was
//!   admitted (authentic, on a keyed declaration) asks, so a forger without
//!   the key spends nothing of it.
//! - **How many remotes a declaration may have at once**: its cap (`-r n`
//!   after the declaration, [`DEFAULT_MAX_REMOTES`] without), below the
//!   switch's bound on all remotes. The cap is the amplification factor of a
//!   forged broadcast, whatever else the attacker does.
//! - **How much a port may flood**: a token bucket per ingress port for
//!   broadcast, multicast and unknown-unicast frames
//!   ([`Limits::flood_per_port`]), as managed switches do ("storm
//!   control"), set far above what a LAN makes. A flood is charged what it
//!   costs: one token per port it goes out of. A flood to one port costs
//!   what a unicast frame does (a stream to a silent receiver, or a
//!   multicast stream over a point-to-point link, is limited only at the
//!   port's whole rate), while a broadcast to 256 remotes costs 256.
//! - **How much a downlink's remotes may flood, together**: forged sources
//!   are many ports, each under its own limit, so the remotes a downlink
//!   declaration made also share one bucket, charged the same way
//!   ([`Limits::flood_per_declaration`]). That bounds what forgers can make
//!   the node send (its CPU and its upstream), and since it is per
//!   declaration, the remotes of the other declarations (the real clients,
//!   on a keyed or a narrower block) keep their own.
//!
//! Everything here is pure: the time is an argument, the state is bounded
//! (the prefix buckets are a fixed array, the flood buckets one per port,
//! grown when a remote is made, never past the switch's bound), and nothing
//! allocates per datagram or per frame. Each refusal is a [`DropReason`]
//! the node counts.

use crate::hash::Map;
use std::net::{IpAddr, SocketAddr};
use std::time::Instant;

use ipnet::IpNet;

use crate::mac::MacAddr;
use crate::switch::{DeclId, Dest, DropReason, PortId};

use super::decl::{DeclKind, Declarations};

/// Remotes one declaration may have at once, unless its `-r n` says
/// otherwise: a star of a few hundred clients fits, and a forged broadcast
/// is multiplied by at most this much.
pub const DEFAULT_MAX_REMOTES: u16 = 256;

/// The prefix buckets: a fixed array indexed by a hash of the prefix.
pub const PREFIX_SLOTS: usize = 1024;

/// An unkeyed downlink wider than this many bits (IPv4) is warned about.
pub const WIDE_V4: u8 = 16;
/// An unkeyed downlink wider than this many bits (IPv6) is warned about.
pub const WIDE_V6: u8 = 48;

/// A rate: `per_sec` events a second, sustained, after a burst of up to
/// `burst` at once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rate {
    /// Events a second, sustained (at least 1).
    pub per_sec: u32,
    /// Events at once after a quiet spell (at least 1).
    pub burst: u32,
}

impl Rate {
    /// The time one event costs, in nanoseconds.
    fn interval(self) -> u64 {
        1_000_000_000 / u64::from(self.per_sec.max(1))
    }

    /// The burst, at least 1.
    fn burst(self) -> u64 {
        u64::from(self.burst.max(1))
    }
}

/// The guard's limits. The defaults are documented in the README's
/// "Security" section; every one of them is far above what a working
/// network needs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// New remotes per declaration.
    pub new_remotes: Rate,
    /// New remotes per source /24 (IPv4) or /64 (IPv6), all declarations
    /// together.
    pub new_remotes_per_prefix: Rate,
    /// What the floods (broadcast, multicast, unknown unicast) coming in on
    /// one port may send out: one per frame and port it goes out of.
    pub flood_per_port: Rate,
    /// The same, for the floods of all the remotes of one downlink
    /// declaration together.
    pub flood_per_declaration: Rate,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            // A server's clients coming back after its restart (one
            // heartbeat each within 30 s) get in at once, up to the cap.
            new_remotes: Rate { per_sec: 50, burst: 100 },
            // The clients behind one NAT (distinct ports, one address).
            new_remotes_per_prefix: Rate { per_sec: 5, burst: 20 },
            // A LAN's broadcasts and multicasts (ARP, ND, DHCP, mDNS) are
            // tens a second, to tens of ports: a storm is far more.
            flood_per_port: Rate { per_sec: 20_000, burst: 40_000 },
            // 100 broadcasts a second to 250 remotes; a few percent of a
            // core, whatever forgers send.
            flood_per_declaration: Rate { per_sec: 25_000, burst: 50_000 },
        }
    }
}

/// A token bucket in its GCRA form: the one time at which it would be full
/// again, so a bucket is one word and a check a few integer operations
/// (this is on the path of every flooded frame). Times are nanoseconds
/// since the guard's epoch ([`Guard`] turns its `Instant`s into these once
/// per call).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Bucket {
    /// When every token spent so far has been earned back (0: never used,
    /// full).
    tat: u64,
}

impl Bucket {
    /// Whether `n` events at `now` fit the rate, without spending. More than
    /// a burst fits a full bucket (and empties it).
    pub fn allows(&self, now: u64, rate: Rate, n: u32) -> bool {
        let n = u64::from(n).clamp(1, rate.burst());
        let t = rate.interval();
        // After these, the schedule may run at most a burst ahead of now.
        self.tat.max(now) - now + t * n <= t * rate.burst()
    }

    /// Spends `n` events (call only after [`Bucket::allows`] said yes). A
    /// clock that went back spends from the schedule as it stands.
    pub fn spend(&mut self, now: u64, rate: Rate, n: u32) {
        let n = u64::from(n).clamp(1, rate.burst());
        self.tat = self.tat.max(now) + rate.interval() * n;
    }

    /// Spends `n` events if they fit the rate.
    pub fn take(&mut self, now: u64, rate: Rate, n: u32) -> bool {
        let ok = self.allows(now, rate, n);
        if ok {
            self.spend(now, rate, n);
        }
        ok
    }
}

/// One declaration's admission state.
#[derive(Clone, Debug)]
struct DeclState {
    /// Most remotes at once; `None` for declarations that do not make
    /// remotes on demand (uplinks, the multicast group).
    cap: Option<usize>,
    /// Remotes it made that are still live.
    live: usize,
    bucket: Bucket,
    /// Datagrams its remotes' floods caused.
    flood: Bucket,
}

/// A prefix bucket: the prefix it belongs to and its state.
#[derive(Clone, Copy, Debug, Default)]
struct PrefixSlot {
    prefix: u64,
    bucket: Bucket,
}

/// The source prefix a remote is limited by: the /24 of an IPv4 address,
/// the /64 of an IPv6 one, as one number (the family in the top bit).
pub fn source_prefix(ip: IpAddr) -> u64 {
    match ip {
        IpAddr::V4(v4) => (1 << 63) | u64::from(u32::from(v4) >> 8),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => source_prefix(IpAddr::V4(v4)),
            // The top bit of a /64 is 0 except in multicast and reserved
            // space, which never sends: clear it so families never meet.
            None => (u128::from(v6) >> 64) as u64 & !(1 << 63),
        },
    }
}

fn prefix_slot(prefix: u64) -> usize {
    let h = prefix.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - PREFIX_SLOTS.trailing_zeros())) as usize
}

/// What a flooded frame is, for its drop counter.
pub fn flood_drop_reason(dst: MacAddr) -> DropReason {
    if dst.is_broadcast() {
        DropReason::StormBroadcast
    } else if dst.is_multicast() {
        DropReason::StormMulticast
    } else {
        DropReason::StormUnknownUnicast
    }
}

/// The largest UDP payload to `dest`: 65535 less the IPv4 (20) and UDP (8)
/// headers, or the UDP header alone for IPv6 (whose 16-bit payload length
/// counts the UDP header and not its own). A larger frame is too large for
/// the channel, not a send that failed.
pub fn max_udp_payload(dest: SocketAddr) -> usize {
    match super::decl::canonical(dest).ip() {
        IpAddr::V4(_) => MAX_UDP_PAYLOAD_V4,
        IpAddr::V6(_) => MAX_UDP_PAYLOAD_V6,
    }
}

/// Whether a payload of `len` bytes is too large for `dest` (the local end
/// says so itself, per channel).
pub fn too_large_for(dest: Dest, len: usize) -> bool {
    match dest {
        Dest::Remote(a) => len > max_udp_payload(a),
        Dest::Multicast => len > MAX_UDP_PAYLOAD_V4,
        Dest::Local => false,
    }
}

/// The largest UDP payload over IPv4 (the multicast group's too).
pub const MAX_UDP_PAYLOAD_V4: usize = 65535 - 20 - 8;
/// The largest UDP payload over IPv6, without jumbograms.
pub const MAX_UDP_PAYLOAD_V6: usize = 65535 - 8;

/// The admission and storm state of a node.
#[derive(Debug)]
pub struct Guard {
    limits: Limits,
    decls: Vec<DeclState>,
    prefixes: Box<[PrefixSlot]>,
    /// The remotes made on demand, with their declaration and port, so
    /// that one going stale frees its place under the cap.
    admitted: Map<SocketAddr, (DeclId, PortId)>,
    /// The instant the buckets' times count from: the first one seen.
    epoch: Option<Instant>,
    /// The last instant turned into bucket time, and what it became: the
    /// frames of one batch share their `now`, and the turning costs more
    /// than the bucket.
    last: Option<(Instant, u64)>,
    /// Flood buckets by port id, one for each port the switch has had.
    flood: Vec<Bucket>,
    /// The declaration of each port that a downlink made, by port id.
    port_decl: Vec<Option<DeclId>>,
}

impl Guard {
    /// A guard for these declarations and a switch whose ports are numbered
    /// below `ports` (the local end, the uplinks and the multicast group
    /// when it starts; remotes made later are added by
    /// [`Guard::remote_added`]).
    pub fn new(decls: &Declarations, limits: Limits, ports: usize) -> Guard {
        let decls = decls
            .iter()
            .map(|(_, d)| DeclState {
                cap: match d.kind {
                    DeclKind::Downlink => {
                        Some(usize::from(d.spec.as_ref().and_then(|s| s.max_remotes).unwrap_or(DEFAULT_MAX_REMOTES)))
                    }
                    DeclKind::Uplink(_) | DeclKind::Multicast => None,
                },
                live: 0,
                bucket: Bucket::default(),
                flood: Bucket::default(),
            })
            .collect();
        Guard {
            limits,
            decls,
            prefixes: vec![PrefixSlot::default(); PREFIX_SLOTS].into_boxed_slice(),
            admitted: Map::default(),
            epoch: None,
            last: None,
            flood: vec![Bucket::default(); ports],
            port_decl: vec![None; ports],
        }
    }

    /// Changes the limits; the buckets keep what they spent.
    pub fn set_limits(&mut self, limits: Limits) {
        self.limits = limits;
    }

    /// Remotes declaration `decl` may have at once (`None`: not limited
    /// here, as for uplinks).
    pub fn cap(&self, decl: DeclId) -> Option<usize> {
        self.decls.get(usize::from(decl)).and_then(|d| d.cap)
    }

    /// Live remotes that declaration `decl` made.
    pub fn live(&self, decl: DeclId) -> usize {
        self.decls.get(usize::from(decl)).map_or(0, |d| d.live)
    }

    /// `now` in the buckets' time.
    fn ns(&mut self, now: Instant) -> u64 {
        if let Some((then, ns)) = self.last {
            if then == now {
                return ns;
            }
        }
        let epoch = *self.epoch.get_or_insert(now);
        let ns = u64::try_from(now.saturating_duration_since(epoch).as_nanos()).unwrap_or(u64::MAX);
        self.last = Some((now, ns));
        ns
    }

    /// May an admitted datagram from `from`, under `decl`, make a new
    /// remote at `now`? Checks the declaration's cap, then the source
    /// prefix's and the declaration's rates, and spends from both buckets
    /// only when both allow. [`Guard::remote_added`] must follow when the
    /// switch did make the remote.
    pub fn admit_new(&mut self, now: Instant, from: SocketAddr, decl: DeclId) -> Result<(), DropReason> {
        let limits = self.limits;
        let now = self.ns(now);
        let Some(d) = self.decls.get_mut(usize::from(decl)) else { return Ok(()) };
        let Some(cap) = d.cap else { return Ok(()) };
        if d.live >= cap {
            return Err(DropReason::DeclarationFull);
        }
        let prefix = source_prefix(from.ip());
        let slot = &mut self.prefixes[prefix_slot(prefix)];
        if slot.prefix != prefix {
            // Another prefix's bucket: it starts over for this one. A
            // collision can only make a prefix freer, never block one.
            *slot = PrefixSlot { prefix, bucket: Bucket::default() };
        }
        if !slot.bucket.allows(now, limits.new_remotes_per_prefix, 1) {
            return Err(DropReason::NewRemotePrefixRate);
        }
        if !d.bucket.allows(now, limits.new_remotes, 1) {
            return Err(DropReason::NewRemoteRate);
        }
        slot.bucket.spend(now, limits.new_remotes_per_prefix, 1);
        d.bucket.spend(now, limits.new_remotes, 1);
        Ok(())
    }

    /// The switch made a remote for `addr` under `decl` (after
    /// [`Guard::admit_new`] allowed it), on `port`.
    pub fn remote_added(&mut self, addr: SocketAddr, decl: DeclId, port: PortId) {
        let i = port.0 as usize;
        if i >= self.flood.len() {
            // Port ids are reused, so these never outgrow the switch.
            self.flood.resize(i + 1, Bucket::default());
            self.port_decl.resize(i + 1, None);
        }
        if let Some(d) = self.decls.get_mut(usize::from(decl)) {
            if d.cap.is_some() && self.admitted.insert(addr, (decl, port)).is_none() {
                d.live += 1;
                if let Some(p) = self.port_decl.get_mut(port.0 as usize) {
                    *p = Some(decl);
                }
            }
        }
        // A port id is reused: the new remote does not inherit a flood debt.
        if let Some(b) = self.flood.get_mut(port.0 as usize) {
            *b = Bucket::default();
        }
    }

    /// The remote at `addr` is gone (stale).
    pub fn remote_removed(&mut self, addr: SocketAddr) {
        if let Some((decl, port)) = self.admitted.remove(&addr) {
            if let Some(d) = self.decls.get_mut(usize::from(decl)) {
                d.live = d.live.saturating_sub(1);
            }
            if let Some(p) = self.port_decl.get_mut(port.0 as usize) {
                *p = None;
            }
        }
    }

    /// May a frame to `dst` that came in on `ingress` be flooded to
    /// `fanout` targets at `now`? Charges `fanout` to the port's bucket and,
    /// for a remote a downlink made, to its declaration's, and spends from
    /// both only when both allow. `Err` names what kind of flood was
    /// refused.
    pub fn flood(&mut self, now: Instant, ingress: PortId, dst: MacAddr, fanout: usize) -> Result<(), DropReason> {
        let (rate, shared) = (self.limits.flood_per_port, self.limits.flood_per_declaration);
        let now = self.ns(now);
        let i = ingress.0 as usize;
        let Some(port) = self.flood.get_mut(i) else { return Ok(()) };
        let decl = self.port_decl.get(i).copied().flatten().and_then(|d| self.decls.get_mut(usize::from(d)));
        let cost = u32::try_from(fanout).unwrap_or(u32::MAX);
        if !port.allows(now, rate, cost) || decl.as_ref().is_some_and(|d| !d.flood.allows(now, shared, cost)) {
            return Err(flood_drop_reason(dst));
        }
        port.spend(now, rate, cost);
        if let Some(d) = decl {
            d.flood.spend(now, shared, cost);
        }
        Ok(())
    }
}

/// Why a declaration deserves a warning at start: an unkeyed downlink whose
/// block is wider than /16 (IPv4) or /48 (IPv6), which lets anyone who can
/// send from those addresses (or forge them) become a remote.
pub fn wide_plain_downlink(decls: &Declarations, decl: DeclId) -> Option<String> {
    let d = decls.get(decl)?;
    let spec = d.spec.as_ref()?;
    if d.kind != DeclKind::Downlink || d.key.is_some() {
        return None;
    }
    let (len, limit) = match spec.net {
        IpNet::V4(n) => (n.prefix_len(), WIDE_V4),
        IpNet::V6(n) => (n.prefix_len(), WIDE_V6),
    };
    (len < limit).then(|| {
        format!(
            "downlink {spec} is unkeyed and wider than /{limit}: any host that can send (or forge) a datagram \
             from it becomes a remote that gets every broadcast; key it (=keyfile) or narrow it \
             (at most {} remotes, '-r n' to change)",
            spec.max_remotes.unwrap_or(DEFAULT_MAX_REMOTES)
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_remote;
    use std::time::Duration;

    fn decls(list: &[&str]) -> Declarations {
        Declarations::new(list.iter().map(|s| (parse_remote(s, false).unwrap(), None)))
    }

    fn sa(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    fn ms(t0: Instant, n: u64) -> Instant {
        t0 + Duration::from_millis(n)
    }

    /// `n` milliseconds in a bucket's time.
    fn at(n: u64) -> u64 {
        n * 1_000_000
    }

    #[test]
    fn a_bucket_allows_its_burst_then_its_rate() {
        let rate = Rate { per_sec: 10, burst: 5 };
        let mut b = Bucket::default();
        let t0 = at(1000);
        for i in 0..5 {
            assert!(b.take(t0, rate, 1), "burst event {i}");
        }
        assert!(!b.take(t0, rate, 1));
        assert!(!b.take(t0 + at(99), rate, 1));
        assert!(b.take(t0 + at(100), rate, 1));
        assert!(!b.take(t0 + at(150), rate, 1));
        // Sustained: one per 100 ms, whatever is asked in between.
        let mut allowed = 0;
        for step in 0..1000 {
            if b.take(t0 + at(200 + step), rate, 1) {
                allowed += 1;
            }
        }
        assert_eq!(allowed, 10);
        // A quiet spell refills it to the burst, no more.
        let later = t0 + at(60_000);
        assert_eq!((0..10).filter(|_| b.take(later, rate, 1)).count(), 5);
        // A clock that went back earns nothing.
        assert!(!b.take(t0 + at(59_000), rate, 1));
    }

    #[test]
    fn prefixes_are_the_24_and_the_64() {
        let p = |s: &str| source_prefix(s.parse().unwrap());
        assert_eq!(p("192.0.2.1"), p("192.0.2.254"));
        assert_ne!(p("192.0.2.1"), p("192.0.3.1"));
        assert_eq!(p("::ffff:192.0.2.9"), p("192.0.2.1"));
        assert_eq!(p("2001:db8:0:1::1"), p("2001:db8:0:1:ffff::2"));
        assert_ne!(p("2001:db8:0:1::1"), p("2001:db8:0:2::1"));
        // The families never share a prefix.
        assert_ne!(p("0.0.0.1"), p("::1"));
        assert_ne!(p("255.255.255.1"), p("ffff:ffff:ffff:ffff::1"));
    }

    #[test]
    fn a_declaration_makes_at_most_its_cap_of_remotes_and_frees_places() {
        let t0 = Instant::now();
        let d = decls(&["10.0.0.0/8", "192.0.2.0/24", "198.51.100.1:2300"]);
        let mut g = Guard::new(&d, Limits::default(), 4096);
        assert_eq!(g.cap(0), Some(usize::from(DEFAULT_MAX_REMOTES)));
        assert_eq!(g.cap(2), None, "an uplink is not capped here");
        let mut made = Vec::new();
        let mut refused = 0;
        // From many /24s, slowly enough for the rates: only the cap refuses.
        for i in 0..400u32 {
            let now = t0 + Duration::from_secs(u64::from(i));
            let from = SocketAddr::new(IpAddr::from(((10u32 << 24) | (i << 8) | 1).to_be_bytes()), 2300);
            match g.admit_new(now, from, 0) {
                Ok(()) => {
                    g.remote_added(from, 0, PortId(made.len() as u32 + 1));
                    made.push(from);
                }
                Err(r) => {
                    assert_eq!(r, DropReason::DeclarationFull);
                    refused += 1;
                }
            }
        }
        assert_eq!(made.len(), usize::from(DEFAULT_MAX_REMOTES));
        assert_eq!(refused, 400 - made.len());
        assert_eq!(g.live(0), made.len());
        // Another declaration has its own cap.
        assert!(g.admit_new(t0, sa("192.0.2.7:1"), 1).is_ok());
        // One going stale frees one place; an unknown address frees none.
        g.remote_removed(made[0]);
        g.remote_removed(sa("203.0.113.1:1"));
        assert_eq!(g.live(0), made.len() - 1);
        let late = t0 + Duration::from_secs(1000);
        assert!(g.admit_new(late, sa("10.200.0.1:1"), 0).is_ok());
        g.remote_added(sa("10.200.0.1:1"), 0, PortId(9));
        assert_eq!(g.admit_new(late, sa("10.201.0.1:1"), 0), Err(DropReason::DeclarationFull));
        // The uplink's declaration is never refused here.
        assert!(g.admit_new(late, sa("198.51.100.1:2300"), 2).is_ok());
    }

    #[test]
    fn new_remotes_are_rate_limited_per_prefix_and_per_declaration() {
        let t0 = Instant::now();
        let d = decls(&["10.0.0.0/8", "192.0.2.0/24"]);
        let limits = Limits::default();
        let mut g = Guard::new(&d, limits, 4096);
        // One /24 gets its burst, then is refused, while others still get in.
        let one = |i: u32| SocketAddr::new(IpAddr::from(((10u32 << 24) | (7 << 8) | (i & 0xff)).to_be_bytes()), 9);
        let mut ok = 0;
        for i in 0..100 {
            match g.admit_new(t0, one(i), 0) {
                Ok(()) => {
                    g.remote_added(one(i), 0, PortId(i));
                    ok += 1
                }
                Err(r) => assert_eq!(r, DropReason::NewRemotePrefixRate),
            }
        }
        assert_eq!(ok, limits.new_remotes_per_prefix.burst);
        // Many /24s: the declaration's burst, then its rate.
        let spread = |i: u32| SocketAddr::new(IpAddr::from(((10u32 << 24) | ((i + 1000) << 8)).to_be_bytes()), 9);
        let mut ok = 0;
        for i in 0..1000 {
            match g.admit_new(t0, spread(i), 0) {
                Ok(()) => ok += 1,
                Err(r) => assert_eq!(r, DropReason::NewRemoteRate),
            }
        }
        assert_eq!(ok, limits.new_remotes.burst - limits.new_remotes_per_prefix.burst);
        // The other declaration has its own bucket.
        assert!(g.admit_new(t0, sa("192.0.2.1:9"), 1).is_ok());
        // A second later the declaration has earned 50 more.
        let t1 = t0 + Duration::from_secs(1);
        let ok = (2000..3000).filter(|&i| g.admit_new(t1, spread(i), 0).is_ok()).count();
        assert_eq!(ok as u32, limits.new_remotes.per_sec);
    }

    #[test]
    fn a_refused_rate_spends_nothing_from_the_other_bucket() {
        let t0 = Instant::now();
        let d = decls(&["10.0.0.0/8"]);
        let limits = Limits {
            new_remotes: Rate { per_sec: 1, burst: 1 },
            new_remotes_per_prefix: Rate { per_sec: 1, burst: 2 },
            ..Limits::default()
        };
        let mut g = Guard::new(&d, limits, 16);
        assert!(g.admit_new(t0, sa("10.0.0.1:1"), 0).is_ok());
        // The declaration refuses: the prefix keeps its second token.
        assert_eq!(g.admit_new(t0, sa("10.0.0.2:1"), 0), Err(DropReason::NewRemoteRate));
        assert_eq!(g.admit_new(t0, sa("10.0.0.3:1"), 0), Err(DropReason::NewRemoteRate));
        let t1 = t0 + Duration::from_secs(1);
        assert!(g.admit_new(t1, sa("10.0.0.2:1"), 0).is_ok());
    }

    #[test]
    fn floods_are_limited_per_ingress_port_and_counted_by_kind() {
        let t0 = Instant::now();
        let d = decls(&["10.0.0.0/8"]);
        let limits = Limits { flood_per_port: Rate { per_sec: 100, burst: 10 }, ..Limits::default() };
        let mut g = Guard::new(&d, limits, 8);
        let (p, q) = (PortId(1), PortId(2));
        let group = MacAddr([0x01, 0x00, 0x5e, 0, 0, 1]);
        let unknown = MacAddr([0x02, 0, 0, 0, 0, 9]);
        for _ in 0..10 {
            assert!(g.flood(t0, p, MacAddr::BROADCAST, 1).is_ok());
        }
        assert_eq!(g.flood(t0, p, MacAddr::BROADCAST, 1), Err(DropReason::StormBroadcast));
        assert_eq!(g.flood(t0, p, group, 1), Err(DropReason::StormMulticast));
        assert_eq!(g.flood(t0, p, unknown, 1), Err(DropReason::StormUnknownUnicast));
        // Another port is not held back by this one.
        assert!(g.flood(t0, q, MacAddr::BROADCAST, 1).is_ok());
        // 100 a second after the burst.
        let ok = (0..1000).filter(|i| g.flood(ms(t0, 10 + i), p, unknown, 1).is_ok()).count();
        assert_eq!(ok, 100);
        // A port id beyond the switch's bound is not refused (none exists).
        assert!(g.flood(t0, PortId(1000), MacAddr::BROADCAST, 1).is_ok());
        // A reused port id starts with a full bucket.
        g.remote_added(sa("10.0.0.1:1"), 0, p);
        assert!(g.flood(ms(t0, 1010), p, MacAddr::BROADCAST, 1).is_ok());
        // A flood costs one per port it goes out of.
        let t2 = ms(t0, 100_000);
        assert!(g.flood(t2, q, MacAddr::BROADCAST, 6).is_ok());
        assert!(g.flood(t2, q, MacAddr::BROADCAST, 4).is_ok());
        assert_eq!(g.flood(t2, q, MacAddr::BROADCAST, 1), Err(DropReason::StormBroadcast));
        assert!(g.flood(ms(t2, 50), q, MacAddr::BROADCAST, 5).is_ok(), "5 earned in 50 ms");
    }

    #[test]
    fn a_bucket_takes_several_at_once() {
        let rate = Rate { per_sec: 1000, burst: 100 };
        let mut b = Bucket::default();
        let t0 = at(5);
        assert!(b.allows(t0, rate, 60));
        b.spend(t0, rate, 60);
        assert!(b.allows(t0, rate, 40));
        assert!(!b.allows(t0, rate, 41));
        // One more each millisecond.
        assert!(b.allows(t0 + at(1), rate, 41) && !b.allows(t0 + at(1), rate, 42));
        // More than a burst passes a full bucket, and empties it.
        let mut b = Bucket::default();
        assert!(b.allows(t0, rate, 5000));
        b.spend(t0, rate, 5000);
        assert!(!b.allows(t0, rate, 1));
        assert!(b.allows(t0 + at(100), rate, 100));
    }

    #[test]
    fn the_remotes_of_a_downlink_share_one_flood_budget_in_datagrams() {
        let t0 = Instant::now();
        let d = decls(&["10.0.0.0/8", "192.0.2.0/24"]);
        let limits = Limits { flood_per_declaration: Rate { per_sec: 10_000, burst: 10_000 }, ..Limits::default() };
        let mut g = Guard::new(&d, limits, 600);
        // 300 forged remotes of 10.0.0.0/8, one real client of 192.0.2.0/24.
        for i in 0..300u32 {
            g.remote_added(SocketAddr::new(IpAddr::from([10, 0, (i >> 8) as u8, i as u8]), 1), 0, PortId(i + 1));
        }
        g.remote_added(sa("192.0.2.2:1"), 1, PortId(400));
        // Each sends one broadcast to all 301 others: one per port is far
        // under the port rate, but together they have 10 000 datagrams.
        let passed = (0..300u32).filter(|i| g.flood(t0, PortId(i + 1), MacAddr::BROADCAST, 301).is_ok()).count();
        assert_eq!(passed, 10_000 / 301);
        // The client's declaration has its own budget.
        assert!(g.flood(t0, PortId(400), MacAddr::BROADCAST, 301).is_ok());
        // The local end (port 0, no declaration) only has its port's.
        assert!(g.flood(t0, PortId(0), MacAddr::BROADCAST, 301).is_ok());
        // A refused flood spent nothing of the port's bucket.
        let limits = Limits { flood_per_port: Rate { per_sec: 1, burst: 1 }, ..limits };
        g.set_limits(limits);
        assert!(g.flood(t0, PortId(299), MacAddr::BROADCAST, 301).is_err());
        assert!(g.flood(ms(t0, 100), PortId(299), MacAddr::BROADCAST, 1).is_ok(), "the port's token is still there");
        // A remote gone stale leaves its port without a declaration.
        g.remote_removed(SocketAddr::new(IpAddr::from([10, 0, 0, 9]), 1));
        assert!(g.flood(ms(t0, 100), PortId(10), MacAddr::BROADCAST, 301).is_ok());
    }

    #[test]
    fn wide_unkeyed_downlinks_are_named() {
        let d = Declarations::new(
            [
                ("10.0.0.0/8", None),
                ("10.2.0.0/16", None),
                ("0.0.0.0/0", Some(0)),
                ("2001:db8::/32", None),
                ("[2001:db8::/48]:9", None),
                ("::/0", None),
                ("198.51.100.1:2300", None),
            ]
            .map(|(s, k)| (parse_remote(s, false).unwrap(), k)),
        );
        let wide: Vec<DeclId> = d.iter().filter_map(|(id, _)| wide_plain_downlink(&d, id).map(|_| id)).collect();
        assert_eq!(wide, [0, 3, 5]);
        let text = wide_plain_downlink(&d, 0).unwrap();
        assert!(text.contains("10.0.0.0/8") && text.contains("/16") && text.contains("256"), "{text}");
    }

    #[test]
    fn udp_payload_limits_by_family() {
        assert_eq!(max_udp_payload(sa("192.0.2.1:1")), 65507);
        assert_eq!(max_udp_payload(sa("[::ffff:192.0.2.1]:1")), 65507);
        assert_eq!(max_udp_payload(sa("[2001:db8::1]:1")), 65527);
        assert!(too_large_for(Dest::Remote(sa("192.0.2.1:1")), 65508));
        assert!(!too_large_for(Dest::Remote(sa("[2001:db8::1]:1")), 65508));
        assert!(too_large_for(Dest::Multicast, 65508));
        assert!(!too_large_for(Dest::Local, 65535));
    }
}
