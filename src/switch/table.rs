//! The MAC forwarding table: a bounded, expiring map from source address to
//! the port it was last seen on, with the sticky hold that stops broadcast
//! cycles.
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

use super::PortId;
use crate::mac::MacAddr;

/// One learned address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Binding {
    /// Where the address was last seen as a source.
    pub port: PortId,
    /// Until then, frames from this address on any other port are dropped.
    pub sticky_until: Instant,
    /// When the address was last seen as a source.
    pub last_seen: Instant,
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

    /// Records `mac` as seen on `port` at `now`, holding it there for `hold`.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Instant, hold: Duration) -> Learn {
        let until = now + hold;
        let full = self.map.len() >= self.capacity;
        let Some(b) = self.map.get_mut(&mac) else {
            return self.learn_new(mac, port, now, until, full);
        };
        if b.port == port {
            b.sticky_until = b.sticky_until.max(until);
            b.last_seen = now;
            Learn::Refreshed
        } else if now < b.sticky_until {
            Learn::HeldElsewhere(b.port)
        } else {
            let old = b.port;
            *b = Binding { port, sticky_until: until, last_seen: now };
            Learn::Moved(old)
        }
    }

    /// Learns an address not in the table, or only holds it if the table is
    /// full. A hold kept while the table was full still counts once there is
    /// room again: the copies of a looping frame must not get in then.
    fn learn_new(&mut self, mac: MacAddr, port: PortId, now: Instant, until: Instant, full: bool) -> Learn {
        let slot = &mut self.holds[hold_slot(&mac)];
        let live = slot.filter(|h| now < h.until);
        if let Some(h) = live.filter(|h| h.mac == mac && h.port != port) {
            return Learn::HeldElsewhere(h.port);
        }
        if !full {
            if live.is_some_and(|h| h.mac == mac) {
                *slot = None;
            }
            self.map.insert(mac, Binding { port, sticky_until: until, last_seen: now });
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
