//! The MAC forwarding table: a bounded, expiring map from source address to
//! where it is, with the sticky hold that stops broadcast cycles.
//!
//! Each address has two bindings, for the two things a learning switch
//! without spanning tree asks of it (the rules and why they are loop-safe
//! are in the README's "How it switches" and at `Switch::handle_frame`):
//!
//! - the *flood port*: floods (broadcast, multicast, unknown unicast) from
//!   the address are accepted only on it while the manual's sticky hold runs
//!   (6 s after a broadcast, 20 s after a unicast), which is what keeps one
//!   broadcast from going round a mesh; [`MacTable::learn`];
//! - the *port*: where frames to the address go, and the one port a unicast
//!   from it may be relayed from. A unicast relayed from another port moves
//!   it there unless the port relayed a unicast from the address less than
//!   [`super::timing::SETTLE`] ago ([`MacTable::learn_relayed`]); a unicast
//!   for the local end is delivered whatever port it came by, and moves the
//!   port only once the hold has run out ([`MacTable::learn_delivered`]).
//!
//! Lookups answer with an enum rather than an error, and the table never
//! evicts a live entry to make room: when it is full, new addresses are simply
//! not learned (and frames to them are flooded).
//!
//! An address that is not learned still needs its sticky hold: without one, a
//! broadcast from it goes round a meshed set of switches for ever once every
//! table is full (and a host that sends from many source addresses fills them
//! all). So a full table keeps the hold alone, in a small fixed array of
//! [`HOLD_SLOTS`] slots indexed by a hash of the address; a slot held by
//! another address cannot be taken before its hold runs out, and then the
//! frame is refused ([`Learn::Unheld`]) rather than flooded unprotected.
//!
//! # Port security
//!
//! One port must not be able to fill the table: a host (a tap guest, a
//! plain peer, any key holder) sending from random source addresses would
//! otherwise take every entry and then every hold slot, and frames from
//! addresses not yet learned on all the other ports would be refused
//! (issue 13, finding 2). So each port may own at most a share of the table
//! ([`DEFAULT_PORT_MAC_LIMIT`] entries for a remote,
//! [`DEFAULT_LOCAL_MAC_LIMIT`] for the local end, which often has a whole
//! bridged LAN behind it). A frame from a new address on a port that owns
//! its share is dropped ([`Learn::PortFull`]), as a managed switch's port
//! security does in its "restrict" mode: it is neither learned nor flooded,
//! and it takes no hold slot, so the flood costs its sender alone. The table
//! as a whole still fills only when several ports fill their shares, and then
//! the rules above apply.
//!
//! # Why the sticky rules still stop loops
//!
//! A frame can circle only if a switch forwards a copy of it that came back.
//! Each switch forwards a frame only when [`MacTable::learn`] returned
//! [`Learn::New`], [`Learn::Refreshed`], [`Learn::Moved`] or [`Learn::Full`],
//! and in each of those cases the source address is bound to, or held on,
//! the ingress port until at least the end of its hold (6 s after a
//! broadcast, 20 s after a unicast): as an entry, or as a hold in its slot.
//! A copy that comes back within the hold arrives on another port (a copy
//! never returns by the port it left through: the switch does not send a
//! frame back out of its ingress) and finds the address bound or held
//! elsewhere: [`Learn::HeldElsewhere`], dropped. Every other answer
//! ([`Learn::Unheld`], [`Learn::PortFull`]) drops the frame, and a dropped
//! frame has no copies. The per-port limit only adds drops: it can refuse
//! a new entry or a move, never remove a binding or a hold that exists, and a
//! move is still allowed only once the hold on the old port has run out. So
//! the argument is unchanged: a copy that returns before the hold ends is
//! dropped, and one that returns later than that (longer than any path
//! through the virtual network takes) does not exist.

use crate::hash::{Map, Seeded};
use std::time::{Duration, Instant};

use super::timing::{SETTLE, STICKY_UNICAST};
use super::PortId;
use crate::mac::MacAddr;

/// One learned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Where frames to the address go: the port it was last accepted from.
    pub port: PortId,
    /// The port floods from the address are accepted on while
    /// `sticky_until` runs.
    pub flood_port: PortId,
    /// Until then, floods from this address on any other port than
    /// `flood_port` are dropped, and `port` moves for nothing but a relayed
    /// unicast.
    pub sticky_until: Instant,
    /// Until then `port` keeps the address against unicast from it by
    /// other ports (which goes on across, nothing learned): [`SETTLE`] after
    /// the last unicast from it that `port` relayed.
    pub settled_until: Instant,
    /// When the address was last seen as a source.
    pub last_seen: Instant,
    /// A digest of the last frame from the address delivered to the local
    /// end, the port it came by and when: a copy of it by another port
    /// within [`SETTLE`] is a copy (of a unicast flooded on its way).
    delivered: u64,
    delivered_port: PortId,
    delivered_at: Instant,
}

impl Binding {
    fn new(port: PortId, now: Instant, hold: Duration) -> Binding {
        Binding {
            port,
            flood_port: port,
            sticky_until: now + hold,
            settled_until: now,
            last_seen: now,
            delivered: 0,
            delivered_port: port,
            delivered_at: now,
        }
    }

    /// Whether a frame for the local end with `digest` by `port` is a copy
    /// of the one delivered last; remembers it if not.
    fn copy(&mut self, port: PortId, digest: u64, now: Instant) -> bool {
        if digest == self.delivered && port != self.delivered_port && now < self.delivered_at + SETTLE {
            return true;
        }
        (self.delivered, self.delivered_port, self.delivered_at) = (digest, port, now);
        false
    }

    /// A frame by `port` refreshes the hold there, or takes the flood port
    /// once the hold has run out.
    fn hold(&mut self, port: PortId, now: Instant, hold: Duration) {
        if port == self.flood_port {
            self.sticky_until = self.sticky_until.max(now + hold);
        } else if now >= self.sticky_until {
            self.flood_port = port;
            self.sticky_until = now + hold;
        }
    }
}

/// The answer to "where is this address?".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Answer {
    /// Seen recently on this port.
    Found(PortId),
    /// Never seen, or aged out.
    Unknown,
}

/// What learning a source address did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Learn {
    /// A new entry.
    New,
    /// The entry was refreshed on the same port.
    Refreshed,
    /// The entry moved here from another port whose hold had run out.
    Moved(PortId),
    /// The address is held by another port: the frame must be dropped.
    HeldElsewhere(PortId),
    /// A unicast from a port the address is not bound to, while the bound
    /// port is relaying unicast from it: the frame goes on (to the local
    /// end, or relayed once), and nothing is learned.
    Across,
    /// A frame for the local end that is a copy, by another port, of the
    /// one delivered just before: the frame must be dropped.
    Copy,
    /// The table is full: not learned, but held; the frame goes on.
    Full,
    /// The table is full and the address could not be held either: the
    /// frame must be dropped.
    Unheld,
    /// The port owns its whole share of the table: the address is not
    /// learned (nor held), and the frame must be dropped.
    PortFull,
}

/// Entries a remote port may own by default: a quarter of the default
/// table, so one port can never fill it, and a big LAN behind an uplink
/// (a hub with hundreds of clients) still fits.
pub const DEFAULT_PORT_MAC_LIMIT: usize = 4096;
/// Entries the local end may own by default: half of the default table, for
/// a tap bridged to a LAN.
pub const DEFAULT_LOCAL_MAC_LIMIT: usize = 8192;

/// Loop holds kept for addresses a full table cannot learn.
pub const HOLD_SLOTS: usize = 1024;

/// The sticky hold of an address the table could not learn.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Hold {
    mac: MacAddr,
    port: PortId,
    until: Instant,
}

/// The bounded table.
#[derive(Debug)]
pub struct MacTable {
    map: Map<MacAddr, Binding>,
    capacity: usize,
    holds: Box<[Option<Hold>]>,
    /// Entries bound to each port, by port id.
    owned: Vec<u32>,
}

/// The hold slot of an address: a multiplicative hash of its 48 bits.
fn hold_slot(mac: &MacAddr) -> usize {
    let mut v = [0u8; 8];
    v[..6].copy_from_slice(&mac.0);
    let h = u64::from_le_bytes(v).wrapping_mul(0x9e37_79b9_7f4a_7c15);
    (h >> (64 - HOLD_SLOTS.trailing_zeros())) as usize
}

impl MacTable {
    /// An empty table that holds at most `capacity` entries. Its memory is
    /// reserved here, so learning never allocates.
    ///
    /// The map gets room for twice `capacity`: entries removed by ageing or
    /// by a port going away leave deleted slots behind, and once those use up
    /// the spare room an insert has to reclaim them. The hash map does that in
    /// place only while it is at most half full; above that it grows, which
    /// would allocate (once, doubling the table) inside `handle_frame`. With
    /// the doubled room the table is never more than half full.
    pub fn new(capacity: usize) -> Self {
        MacTable {
            map: Map::with_capacity_and_hasher(capacity.saturating_mul(2), Seeded::default()),
            capacity,
            holds: vec![None; HOLD_SLOTS].into_boxed_slice(),
            owned: Vec::new(),
        }
    }

    /// Makes room for the counts of ports numbered below `ports`, so that
    /// learning on them never allocates.
    pub fn reserve_ports(&mut self, ports: usize) {
        if self.owned.len() < ports {
            self.owned.resize(ports, 0);
        }
    }

    /// Entries bound to `port`.
    pub fn owned(&self, port: PortId) -> usize {
        self.owned.get(port.0 as usize).map_or(0, |&n| n as usize)
    }

    fn own(&mut self, port: PortId) {
        Self::own_in(&mut self.owned, port);
    }

    /// Moves binding `b` to `port`, keeping the ports' counts; returns the
    /// port it left.
    fn rebind(owned: &mut Vec<u32>, b: &mut Binding, port: PortId) -> PortId {
        let old = b.port;
        b.port = port;
        Self::disown(owned, old);
        Self::own_in(owned, port);
        old
    }

    fn own_in(owned: &mut Vec<u32>, port: PortId) {
        let i = port.0 as usize;
        if owned.len() <= i {
            owned.resize(i + 1, 0);
        }
        owned[i] += 1;
    }

    fn disown(owned: &mut [u32], port: PortId) {
        if let Some(n) = owned.get_mut(port.0 as usize) {
            *n = n.saturating_sub(1);
        }
    }

    /// Every binding, in no particular order (for status reports).
    pub fn bindings(&self) -> impl Iterator<Item = &Binding> + '_ {
        self.map.values()
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when nothing is learned.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// The binding of `mac`, if any, regardless of age.
    pub fn get(&self, mac: &MacAddr) -> Option<&Binding> {
        self.map.get(mac)
    }

    /// Where frames to `mac` go, given entries expire `ageing` after they were
    /// last seen.
    pub fn lookup(&self, mac: &MacAddr, now: Instant, ageing: Duration) -> Answer {
        match self.map.get(mac) {
            Some(b) if now.saturating_duration_since(b.last_seen) < ageing => Answer::Found(b.port),
            _ => Answer::Unknown,
        }
    }

    /// Records `mac` as the source of a flood (broadcast, multicast or
    /// unknown unicast) that came in on `port` at `now`, holding it there
    /// for `hold` against floods on other ports, with no limit on the
    /// entries a port may own.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Instant, hold: Duration) -> Learn {
        self.learn_within(mac, port, now, hold, usize::MAX)
    }

    /// [`MacTable::learn`] for a port that may own at most `limit` entries:
    /// a new address on a port that owns `limit` already, or one that would
    /// move to it, is [`Learn::PortFull`].
    pub fn learn_within(&mut self, mac: MacAddr, port: PortId, now: Instant, hold: Duration, limit: usize) -> Learn {
        let full = self.map.len() >= self.capacity;
        let at_limit = self.owned(port) >= limit;
        let Some(b) = self.map.get_mut(&mac) else {
            return self.learn_new(mac, port, now, hold, full, at_limit, |_| {});
        };
        if port != b.flood_port && now < b.sticky_until {
            return Learn::HeldElsewhere(b.flood_port);
        }
        let moves = port != b.port && now >= b.settled_until;
        if moves && at_limit {
            // Over the port's share: neither learned nor held here.
            return Learn::PortFull;
        }
        b.hold(port, now, hold);
        b.last_seen = now;
        if !moves {
            // The flood goes on; where unicast to the address goes stays
            // where unicast from it is still being relayed.
            Learn::Refreshed
        } else {
            Learn::Moved(Self::rebind(&mut self.owned, b, port))
        }
    }

    /// Records `mac` as the source of a unicast that came in on `port` at
    /// `now` and is to be relayed to a remote. A binding on another port
    /// moves here unless that port relayed a unicast from `mac` less than
    /// [`SETTLE`] ago: then the frame goes on and nothing is learned
    /// ([`Learn::Across`]). A binding on a local end (`is_local`) moves only
    /// once its hold has run out; until then the frame is a reflection.
    pub fn learn_relayed(
        &mut self,
        mac: MacAddr,
        port: PortId,
        now: Instant,
        limit: usize,
        is_local: impl Fn(PortId) -> bool,
    ) -> Learn {
        let full = self.map.len() >= self.capacity;
        let at_limit = self.owned(port) >= limit;
        let Some(b) = self.map.get_mut(&mac) else {
            return self.learn_new(mac, port, now, STICKY_UNICAST, full, at_limit, |b| b.settled_until = now + SETTLE);
        };
        let answer = if port == b.port {
            Learn::Refreshed
        } else if is_local(b.port) && now < b.sticky_until {
            return Learn::HeldElsewhere(b.port);
        } else if now < b.settled_until {
            return Learn::Across;
        } else if at_limit {
            return Learn::PortFull;
        } else {
            Learn::Moved(Self::rebind(&mut self.owned, b, port))
        };
        b.hold(port, now, STICKY_UNICAST);
        b.settled_until = now + SETTLE;
        b.last_seen = now;
        answer
    }

    /// Records `mac` as the source of a unicast that came in on `port` at
    /// `now` for the local end, whose digest is `digest`. It is delivered by
    /// any port ([`Learn::Across`]) but as a copy of the frame from `mac`
    /// delivered just before by another port ([`Learn::Copy`]), and moves
    /// the binding here unless the
    /// bound port relayed a unicast from `mac` less than [`SETTLE`] ago, or
    /// is a local end whose hold still runs; delivery ends here, so it does
    /// not settle the binding itself.
    #[allow(clippy::too_many_arguments)]
    pub fn learn_delivered(
        &mut self,
        mac: MacAddr,
        port: PortId,
        now: Instant,
        digest: u64,
        limit: usize,
        is_local: impl Fn(PortId) -> bool,
    ) -> Learn {
        let full = self.map.len() >= self.capacity;
        let at_limit = self.owned(port) >= limit;
        let Some(b) = self.map.get_mut(&mac) else {
            return self.learn_new(mac, port, now, STICKY_UNICAST, full, at_limit, |b| {
                b.copy(port, digest, now);
            });
        };
        if b.copy(port, digest, now) {
            return Learn::Copy;
        }
        let answer = if port == b.port {
            Learn::Refreshed
        } else if is_local(b.port) && now < b.sticky_until {
            // The address lives at the local end: this is a reflection or a
            // forgery, not news.
            return Learn::HeldElsewhere(b.port);
        } else if !is_local(b.port) && now < b.settled_until {
            return Learn::Across;
        } else if at_limit {
            return Learn::PortFull;
        } else {
            Learn::Moved(Self::rebind(&mut self.owned, b, port))
        };
        b.hold(port, now, STICKY_UNICAST);
        b.last_seen = now;
        answer
    }

    /// Learns an address not in the table (its new binding finished by
    /// `init`), or only holds it if the table is full. A hold kept while the
    /// table was full still counts once there is room again: the copies of a
    /// looping frame must not get in then.
    #[allow(clippy::too_many_arguments)]
    fn learn_new(
        &mut self,
        mac: MacAddr,
        port: PortId,
        now: Instant,
        hold: Duration,
        full: bool,
        at_limit: bool,
        init: impl FnOnce(&mut Binding),
    ) -> Learn {
        let until = now + hold;
        let slot = &mut self.holds[hold_slot(&mac)];
        let live = slot.filter(|h| now < h.until);
        if let Some(h) = live.filter(|h| h.mac == mac && h.port != port) {
            return Learn::HeldElsewhere(h.port);
        }
        if at_limit {
            return Learn::PortFull;
        }
        if !full {
            if live.is_some_and(|h| h.mac == mac) {
                *slot = None;
            }
            let mut b = Binding::new(port, now, hold);
            init(&mut b);
            self.map.insert(mac, b);
            self.own(port);
            return Learn::New;
        }
        match live {
            Some(h) if h.mac != mac => Learn::Unheld,
            Some(h) => {
                *slot = Some(Hold { until: h.until.max(until), ..h });
                Learn::Full
            }
            None => {
                *slot = Some(Hold { mac, port, until });
                Learn::Full
            }
        }
    }

    /// Forgets everything bound to or held on `port`.
    pub fn forget_port(&mut self, port: PortId) {
        self.map.retain(|_, b| b.port != port);
        for b in self.map.values_mut() {
            if b.flood_port == port {
                b.flood_port = b.port;
            }
        }
        if let Some(n) = self.owned.get_mut(port.0 as usize) {
            *n = 0;
        }
        for slot in self.holds.iter_mut() {
            if slot.is_some_and(|h| h.port == port) {
                *slot = None;
            }
        }
    }

    /// Drops entries not seen for `ageing` and no longer sticky.
    pub fn expire(&mut self, now: Instant, ageing: Duration) -> usize {
        let before = self.map.len();
        let owned = &mut self.owned;
        self.map.retain(|_, b| {
            let keep = now < b.sticky_until || now.saturating_duration_since(b.last_seen) < ageing;
            if !keep {
                Self::disown(owned, b.port);
            }
            keep
        });
        before - self.map.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mac(n: u32) -> MacAddr {
        let b = n.to_be_bytes();
        MacAddr([0x02, 0x33, b[0], b[1], b[2], b[3]])
    }

    const SIX: Duration = Duration::from_secs(6);

    /// Unicast moves (relayed or delivered) keep the ports' counts, and a
    /// port over its share takes no address by them either.
    #[test]
    fn unicast_moves_keep_the_counts_and_the_shares() {
        let t0 = Instant::now();
        let (p, q, r) = (PortId(1), PortId(2), PortId(3));
        let remote = |_: PortId| false;
        let mut t = MacTable::new(100);
        assert_eq!(t.learn_within(mac(1), p, t0, SIX, 10), Learn::New);
        // Past the flood hold, a relayed unicast moves the address.
        let later = t0 + SIX + Duration::from_secs(1);
        assert_eq!(t.learn_relayed(mac(1), q, later, 10, remote), Learn::Moved(p));
        assert_eq!((t.owned(p), t.owned(q)), (0, 1));
        // Port r owns its whole share (one): nothing moves to it.
        assert_eq!(t.learn_within(mac(2), r, later, SIX, 1), Learn::New);
        let settled = later + SETTLE + Duration::from_millis(1);
        assert_eq!(t.learn_delivered(mac(1), r, settled, 7, 1, remote), Learn::PortFull);
        assert_eq!(t.learn_relayed(mac(1), r, settled, 1, remote), Learn::PortFull);
        assert_eq!((t.owned(q), t.owned(r)), (1, 1));
        // With room, a delivered unicast moves it.
        assert_eq!(t.learn_delivered(mac(1), r, settled, 8, 2, remote), Learn::Moved(q));
        assert_eq!((t.owned(q), t.owned(r)), (0, 2));
        t.forget_port(r);
        assert_eq!((t.owned(r), t.len()), (0, 0));
    }

    #[test]
    fn a_port_owns_at_most_its_share_and_others_still_learn() {
        let t0 = Instant::now();
        let (p, q) = (PortId(1), PortId(2));
        let mut t = MacTable::new(100);
        for n in 0..10 {
            assert_eq!(t.learn_within(mac(n), p, t0, SIX, 10), Learn::New);
        }
        assert_eq!(t.owned(p), 10);
        // Over its share: dropped, neither learned nor held.
        for n in 10..2000 {
            assert_eq!(t.learn_within(mac(n), p, t0, SIX, 10), Learn::PortFull, "{n}");
        }
        assert_eq!(t.len(), 10);
        assert!(t.holds.iter().all(Option::is_none), "a port over its share takes no hold slot");
        // What it owns is refreshed as usual.
        assert_eq!(t.learn_within(mac(3), p, t0, SIX, 10), Learn::Refreshed);
        // Another port learns new addresses, including ones p was refused.
        assert_eq!(t.learn_within(mac(500), q, t0, SIX, 10), Learn::New);
        assert_eq!(t.learn_within(mac(501), q, t0, SIX, 10), Learn::New);
        assert_eq!(t.owned(q), 2);
        // And p's addresses stay sticky on p against q.
        assert_eq!(t.learn_within(mac(4), q, t0, SIX, 10), Learn::HeldElsewhere(p));
    }

    #[test]
    fn moves_respect_the_share_and_carry_the_count() {
        let t0 = Instant::now();
        let later = t0 + Duration::from_secs(7);
        let (p, q) = (PortId(1), PortId(2));
        let mut t = MacTable::new(100);
        assert_eq!(t.learn_within(mac(1), p, t0, SIX, 2), Learn::New);
        assert_eq!(t.learn_within(mac(2), q, t0, SIX, 1), Learn::New);
        // q owns its one entry: mac(1) may not move there, even unheld.
        assert_eq!(t.learn_within(mac(1), q, later, SIX, 1), Learn::PortFull);
        assert_eq!(t.get(&mac(1)).map(|b| b.port), Some(p));
        // With room it moves, and the counts follow.
        assert_eq!(t.learn_within(mac(1), q, later, SIX, 2), Learn::Moved(p));
        assert_eq!((t.owned(p), t.owned(q)), (0, 2));
    }

    #[test]
    fn ageing_and_ports_going_away_give_the_share_back() {
        let t0 = Instant::now();
        let (p, q) = (PortId(1), PortId(2));
        let ageing = Duration::from_secs(300);
        let mut t = MacTable::new(100);
        for n in 0..5 {
            assert_eq!(t.learn_within(mac(n), p, t0, SIX, 5), Learn::New);
            assert_eq!(t.learn_within(mac(100 + n), q, t0, SIX, 5), Learn::New);
        }
        assert_eq!(t.learn_within(mac(5), p, t0, SIX, 5), Learn::PortFull);
        let later = t0 + ageing;
        assert_eq!(t.expire(later, ageing), 10);
        assert_eq!((t.owned(p), t.owned(q)), (0, 0));
        assert_eq!(t.learn_within(mac(5), p, later, SIX, 5), Learn::New);
        t.forget_port(p);
        assert_eq!(t.owned(p), 0);
        for n in 0..5 {
            assert_eq!(t.learn_within(mac(200 + n), p, later, SIX, 5), Learn::New);
        }
        assert_eq!(t.owned(p), 5);
    }

    #[test]
    fn a_full_table_still_holds_for_ports_under_their_share() {
        let t0 = Instant::now();
        let (p, q) = (PortId(1), PortId(2));
        let mut t = MacTable::new(4);
        for n in 0..4 {
            assert_eq!(t.learn_within(mac(n), p, t0, SIX, 4), Learn::New);
        }
        // p is at its share: refused. q is not: held, and forwarded.
        assert_eq!(t.learn_within(mac(9), p, t0, SIX, 4), Learn::PortFull);
        assert_eq!(t.learn_within(mac(9), q, t0, SIX, 4), Learn::Full);
        assert_eq!(t.learn_within(mac(9), p, t0, SIX, 4), Learn::HeldElsewhere(q));
    }
}
