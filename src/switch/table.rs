//! The MAC forwarding table: a bounded, expiring map from source address to
//! the port it was last seen on, with the sticky hold that stops broadcast
//! cycles.
//!
//! Lookups answer with an enum rather than an error, and the table never
//! evicts a live entry to make room: when it is full, new addresses are simply
//! not learned (and frames to them are flooded).

use std::collections::HashMap;
use std::time::Instant;

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
    /// The table is full: not learned, the frame goes on.
    Full,
}

/// The bounded table.
#[derive(Debug)]
pub struct MacTable {
    map: HashMap<MacAddr, Binding>,
    capacity: usize,
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
        MacTable { map: HashMap::with_capacity(capacity.saturating_mul(2)), capacity }
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
    pub fn lookup(&self, mac: &MacAddr, now: Instant, ageing: std::time::Duration) -> Answer {
        match self.map.get(mac) {
            Some(b) if now.saturating_duration_since(b.last_seen) < ageing => Answer::Found(b.port),
            _ => Answer::Unknown,
        }
    }

    /// Records `mac` as seen on `port` at `now`, holding it there for `hold`.
    pub fn learn(&mut self, mac: MacAddr, port: PortId, now: Instant, hold: std::time::Duration) -> Learn {
        let until = now + hold;
        let full = self.map.len() >= self.capacity;
        match self.map.get_mut(&mac) {
            Some(b) if b.port == port => {
                b.sticky_until = b.sticky_until.max(until);
                b.last_seen = now;
                Learn::Refreshed
            }
            Some(b) if now < b.sticky_until => Learn::HeldElsewhere(b.port),
            Some(b) => {
                let old = b.port;
                *b = Binding { port, sticky_until: until, last_seen: now };
                Learn::Moved(old)
            }
            None if full => Learn::Full,
            None => {
                self.map.insert(mac, Binding { port, sticky_until: until, last_seen: now });
                Learn::New
            }
        }
    }

    /// Forgets everything bound to `port`.
    pub fn forget_port(&mut self, port: PortId) {
        self.map.retain(|_, b| b.port != port);
    }

    /// Drops entries not seen for `ageing` and no longer sticky.
    pub fn expire(&mut self, now: Instant, ageing: std::time::Duration) -> usize {
        let before = self.map.len();
        self.map.retain(|_, b| now < b.sticky_until || now.saturating_duration_since(b.last_seen) < ageing);
        before - self.map.len()
    }
}
