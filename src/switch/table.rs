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

use std::collections::HashMap;
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
}

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
    map: HashMap<MacAddr, Binding>,
    capacity: usize,
    holds: Box<[Option<Hold>]>,
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
            map: HashMap::with_capacity(capacity.saturating_mul(2)),
            capacity,
            holds: vec![None; HOLD_SLOTS].into_boxed_slice(),
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
    /// for `hold` against floods on other ports.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Instant, hold: Duration) -> Learn {
        let full = self.map.len() >= self.capacity;
        let Some(b) = self.map.get_mut(&mac) else {
            return self.learn_new(mac, port, now, hold, full);
        };
        if port != b.flood_port && now < b.sticky_until {
            return Learn::HeldElsewhere(b.flood_port);
        }
        b.hold(port, now, hold);
        b.last_seen = now;
        if port == b.port || now < b.settled_until {
            // The flood goes on; where unicast to the address goes stays
            // where unicast from it is still being relayed.
            Learn::Refreshed
        } else {
            let old = b.port;
            b.port = port;
            Learn::Moved(old)
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
        is_local: impl Fn(PortId) -> bool,
    ) -> Learn {
        let full = self.map.len() >= self.capacity;
        let Some(b) = self.map.get_mut(&mac) else {
            let l = self.learn_new(mac, port, now, STICKY_UNICAST, full);
            if let Some(b) = self.map.get_mut(&mac) {
                b.settled_until = now + SETTLE;
            }
            return l;
        };
        let answer = if port == b.port {
            Learn::Refreshed
        } else if is_local(b.port) && now < b.sticky_until {
            return Learn::HeldElsewhere(b.port);
        } else if now < b.settled_until {
            return Learn::Across;
        } else {
            let old = b.port;
            b.port = port;
            Learn::Moved(old)
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
    pub fn learn_delivered(
        &mut self,
        mac: MacAddr,
        port: PortId,
        now: Instant,
        digest: u64,
        is_local: impl Fn(PortId) -> bool,
    ) -> Learn {
        let full = self.map.len() >= self.capacity;
        let Some(b) = self.map.get_mut(&mac) else {
            let l = self.learn_new(mac, port, now, STICKY_UNICAST, full);
            if let Some(b) = self.map.get_mut(&mac) {
                b.copy(port, digest, now);
            }
            return l;
        };
        if b.copy(port, digest, now) {
            return Learn::Copy;
        }
        let answer = if port == b.port {
            Learn::Refreshed
        } else if is_local(b.port) {
            if now < b.sticky_until {
                // The address lives at the local end: this is a reflection
                // or a forgery, not news.
                return Learn::HeldElsewhere(b.port);
            }
            let old = b.port;
            b.port = port;
            Learn::Moved(old)
        } else if now < b.settled_until {
            return Learn::Across;
        } else {
            let old = b.port;
            b.port = port;
            Learn::Moved(old)
        };
        b.hold(port, now, STICKY_UNICAST);
        b.last_seen = now;
        answer
    }

    /// Learns an address not in the table, or only holds it if the table is
    /// full. A hold kept while the table was full still counts once there is
    /// room again: the copies of a looping frame must not get in then.
    fn learn_new(&mut self, mac: MacAddr, port: PortId, now: Instant, hold: Duration, full: bool) -> Learn {
        let until = now + hold;
        let slot = &mut self.holds[hold_slot(&mac)];
        let live = slot.filter(|h| now < h.until);
        if let Some(h) = live.filter(|h| h.mac == mac && h.port != port) {
            return Learn::HeldElsewhere(h.port);
        }
        if !full {
            if live.is_some_and(|h| h.mac == mac) {
                *slot = None;
            }
            self.map.insert(mac, Binding::new(port, now, hold));
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
        for slot in self.holds.iter_mut() {
            if slot.is_some_and(|h| h.port == port) {
                *slot = None;
            }
        }
    }

    /// Drops entries not seen for `ageing` and no longer sticky.
    pub fn expire(&mut self, now: Instant, ageing: Duration) -> usize {
        let before = self.map.len();
        self.map.retain(|_, b| now < b.sticky_until || now.saturating_duration_since(b.last_seen) < ageing);
        before - self.map.len()
    }
}
