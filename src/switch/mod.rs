//! The switch: a pure state machine that owns the MAC forwarding table and
//! the set of ports.
//!
//! It never touches a socket, a file descriptor or the clock. Frames and the
//! current time go in ([`Switch::handle_frame`], [`Switch::remote_rx`],
//! [`Switch::handle_timeout`]); decisions come out ([`Forward`], heartbeats
//! due from [`Switch::poll_heartbeat`], events from [`Switch::poll_event`],
//! and the next wake-up from [`Switch::poll_timeout`]). That makes every rule
//! here testable on a virtual clock, and it is where most tests live.

pub mod recent;
pub mod table;

use std::collections::VecDeque;
use std::fmt;
use std::net::SocketAddr;
use std::time::Instant;

use crate::hash::Map;
use crate::mac::{Frame, MacAddr};
use recent::{digest, Recent};
use table::{Answer, Learn, MacTable, DEFAULT_LOCAL_MAC_LIMIT, DEFAULT_PORT_MAC_LIMIT};

/// Every lifetime the switch uses, in one place.
pub mod timing {
    use std::time::Duration;

    /// A binding made by a broadcast or multicast frame holds this long.
    pub const STICKY_BROADCAST: Duration = Duration::from_secs(6);
    /// A binding made by a unicast frame holds this long.
    pub const STICKY_UNICAST: Duration = Duration::from_secs(20);
    /// A port that relayed a unicast from an address keeps relaying unicast
    /// from it, against the same address on other ports, this long after the
    /// last one; and a copy of a frame delivered to the local end is known
    /// as one this long. It must exceed the time any frame takes to cross
    /// the network (see `Switch::handle_frame`).
    pub const SETTLE: Duration = Duration::from_millis(500);
    /// Uplinks get a heartbeat this often.
    pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(30);
    /// A downlink silent this long is stale and removed.
    pub const DOWNLINK_STALE: Duration = Duration::from_secs(180);
    /// A learned MAC address not seen this long is forgotten (the Linux
    /// bridge's default ageing time).
    pub const MAC_AGEING: Duration = Duration::from_secs(300);
    /// How often aged MAC entries are swept.
    pub const SWEEP_INTERVAL: Duration = Duration::from_secs(30);
}

/// Default bound on the MAC table.
pub const DEFAULT_MAC_CAPACITY: usize = 16384;
/// Default bound on the number of remotes (ports) at once.
pub const DEFAULT_MAX_PORTS: usize = 4096;

/// A port of the switch: an index that stays valid while the port lives.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub struct PortId(pub u32);

/// Which remote declaration (or the multicast channel) a port belongs to:
/// an index the daemon assigns.
pub type DeclId = u16;

/// Where a port's frames go, as the I/O shell needs to know it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Dest {
    /// The local end: the tap or stdio.
    Local,
    /// A unicast UDP remote.
    Remote(SocketAddr),
    /// The multicast group.
    Multicast,
}

impl fmt::Display for Dest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Dest::Local => f.write_str("local"),
            Dest::Remote(a) => write!(f, "{a}"),
            Dest::Multicast => f.write_str("multicast"),
        }
    }
}

/// A port a frame should go out of.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Target {
    /// The port.
    pub port: PortId,
    /// Where it leads.
    pub dest: Dest,
    /// Its declaration, for keys; `None` for the local end.
    pub decl: Option<DeclId>,
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Kind {
    Local,
    Uplink,
    Downlink,
    Multicast,
}

#[derive(Debug)]
struct Port {
    kind: Kind,
    dest: Dest,
    decl: Option<DeclId>,
    since: Instant,
    last_rx: Instant,
    next_heartbeat: Option<Instant>,
    counters: PortCounters,
}

/// What crossed one port, counted with plain increments on the hot path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PortCounters {
    /// Frames that came in on the port (dropped ones too).
    pub rx_frames: u64,
    /// Their bytes (Ethernet frames, from the destination MAC).
    pub rx_bytes: u64,
    /// Frames planned out of the port.
    pub tx_frames: u64,
    /// Their bytes (the frames, not the datagrams that carried them).
    pub tx_bytes: u64,
    /// Drops of what came in on the port, by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
}

impl Default for PortCounters {
    fn default() -> Self {
        PortCounters { rx_frames: 0, rx_bytes: 0, tx_frames: 0, tx_bytes: 0, drops: [0; DropReason::COUNT] }
    }
}

/// What kind of port, for status reports.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum PortKind {
    /// The tap or stdio.
    Local,
    /// A fixed remote we keep alive.
    Uplink,
    /// A remote that came to us through a downlink mask.
    Downlink,
    /// The multicast group.
    Multicast,
}

impl PortKind {
    /// Its name in status reports.
    pub fn name(self) -> &'static str {
        match self {
            PortKind::Local => "local",
            PortKind::Uplink => "uplink",
            PortKind::Downlink => "downlink",
            PortKind::Multicast => "multicast",
        }
    }
}

/// One live port, as a status report sees it.
#[derive(Debug, Clone)]
pub struct PortInfo<'a> {
    /// The port.
    pub id: PortId,
    /// Its kind.
    pub kind: PortKind,
    /// Where it leads.
    pub dest: Dest,
    /// Its declaration.
    pub decl: Option<DeclId>,
    /// When it was added.
    pub since: Instant,
    /// When it last received a frame or a heartbeat.
    pub last_rx: Instant,
    /// What crossed it.
    pub counters: &'a PortCounters,
}

impl Port {
    fn new(kind: Kind, dest: Dest, decl: Option<DeclId>, now: Instant, next_heartbeat: Option<Instant>) -> Port {
        Port { kind, dest, decl, since: now, last_rx: now, next_heartbeat, counters: PortCounters::default() }
    }

    fn target(&self, id: PortId) -> Target {
        Target { port: id, dest: self.dest, decl: self.decl }
    }
}

/// What [`Switch::decide`] decided, without a borrow of the switch.
enum Decision {
    Drop(DropReason),
    Unicast(Target),
    /// To every target in `Switch::flood`.
    Flood,
}

/// Why a frame or datagram was dropped. Every drop has one, and a counter.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
#[repr(usize)]
pub enum DropReason {
    /// Shorter than an Ethernet header.
    Runt,
    /// Source MAC is multicast, broadcast or all-zero.
    InvalidSource,
    /// Source or destination is on the ignore list of the port's declaration.
    Ignored,
    /// Source MAC is held by another port (cycle protection).
    Sticky,
    /// Destination is on the port the frame came from.
    Hairpin,
    /// Nowhere to send it.
    NoTarget,
    /// Too many remotes at once; a new downlink peer was refused.
    TooManyRemotes,
    /// The UDP source matches no remote declaration.
    UnknownSource,
    /// Too large for the channel it should leave by.
    TooLarge,
    /// Failed authentication or was malformed on a keyed channel (a
    /// plaintext datagram to a keyed channel is one of these).
    BadAuth,
    /// A replayed or too old datagram on a keyed channel.
    Replay,
    /// The output channel could not take it (full queue, send error).
    SendFailed,
    /// Our own multicast datagram heard back.
    OwnMulticast,
    /// The MAC table is full, and the source could not be held against
    /// loops either: flooding it could start a broadcast storm.
    NoLoopHold,
    /// A keyed datagram of one of our own sessions: a reflection.
    OwnSession,
    /// A keyed datagram of a session we do not know whose start time is
    /// more than 300 s from our clock: an old capture, or a wrong clock.
    StaleSession,
    /// An authentic new session refused because the session cache holds
    /// only sessions still fresh enough to be replayed if forgotten.
    SessionCacheFull,
    /// A frame of a protocol that runs between the two ends of one physical
    /// link and that no bridge forwards: 802.3x PAUSE, LACP and the other
    /// slow protocols, MAC Control ([`Frame::is_link_control`]).
    LinkControl,
    // Issue 13's limits (admission and storm control in `node::guard`, port
    // security in `table`).
    /// A new remote refused: its declaration has as many remotes as its cap.
    DeclarationFull,
    /// A new remote refused: its declaration made new remotes too fast.
    NewRemoteRate,
    /// A new remote refused: its source /24 (IPv4) or /64 (IPv6) made new
    /// remotes too fast.
    NewRemotePrefixRate,
    /// A broadcast over its ingress port's flood rate (storm control).
    StormBroadcast,
    /// A multicast frame over its ingress port's flood rate.
    StormMulticast,
    /// A frame to an unknown unicast address over its ingress port's flood
    /// rate.
    StormUnknownUnicast,
    /// A frame from a new source address on a port that owns its whole
    /// share of the MAC table (port security).
    PortMacLimit,
}

impl DropReason {
    /// Number of reasons.
    pub const COUNT: usize = 25;
    /// All reasons, in counter order.
    pub const ALL: [DropReason; Self::COUNT] = [
        DropReason::Runt,
        DropReason::InvalidSource,
        DropReason::Ignored,
        DropReason::Sticky,
        DropReason::Hairpin,
        DropReason::NoTarget,
        DropReason::TooManyRemotes,
        DropReason::UnknownSource,
        DropReason::TooLarge,
        DropReason::BadAuth,
        DropReason::Replay,
        DropReason::SendFailed,
        DropReason::OwnMulticast,
        DropReason::NoLoopHold,
        DropReason::OwnSession,
        DropReason::StaleSession,
        DropReason::SessionCacheFull,
        DropReason::LinkControl,
        DropReason::DeclarationFull,
        DropReason::NewRemoteRate,
        DropReason::NewRemotePrefixRate,
        DropReason::StormBroadcast,
        DropReason::StormMulticast,
        DropReason::StormUnknownUnicast,
        DropReason::PortMacLimit,
    ];

    /// A short name for logs.
    pub fn name(self) -> &'static str {
        match self {
            DropReason::Runt => "runt",
            DropReason::InvalidSource => "invalid-source-mac",
            DropReason::Ignored => "ignored-mac",
            DropReason::Sticky => "sticky-elsewhere",
            DropReason::Hairpin => "hairpin",
            DropReason::NoTarget => "no-target",
            DropReason::TooManyRemotes => "too-many-remotes",
            DropReason::UnknownSource => "unknown-source",
            DropReason::TooLarge => "too-large",
            DropReason::BadAuth => "bad-auth",
            DropReason::Replay => "replay",
            DropReason::SendFailed => "send-failed",
            DropReason::OwnMulticast => "own-multicast",
            DropReason::NoLoopHold => "table-full-no-loop-hold",
            DropReason::OwnSession => "own-session",
            DropReason::StaleSession => "stale-session",
            DropReason::SessionCacheFull => "session-cache-full",
            DropReason::LinkControl => "link-control",
            DropReason::DeclarationFull => "declaration-full",
            DropReason::NewRemoteRate => "new-remote-rate",
            DropReason::NewRemotePrefixRate => "new-remote-prefix-rate",
            DropReason::StormBroadcast => "storm-broadcast",
            DropReason::StormMulticast => "storm-multicast",
            DropReason::StormUnknownUnicast => "storm-unknown-unicast",
            DropReason::PortMacLimit => "port-mac-limit",
        }
    }
}

/// Counters of what the switch did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Frames handed to [`Switch::handle_frame`].
    pub frames_in: u64,
    /// Frames sent to one known port.
    pub unicast: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Frames whose source address was not learned because the table was
    /// full (whether they went on or were dropped as [`DropReason::NoLoopHold`]).
    pub table_full: u64,
    /// Addresses that moved from one port to another.
    pub moved: u64,
    /// Unicast frames passed on (to the local end or relayed) from a port
    /// their source is not bound to, the binding staying where it was.
    pub across: u64,
    /// Drops, indexed by [`DropReason`].
    pub drops: [u64; DropReason::COUNT],
}

impl Stats {
    /// The count for one reason.
    pub fn dropped(&self, r: DropReason) -> u64 {
        self.drops[r as usize]
    }
}

/// The decision for one frame.
#[derive(Debug, PartialEq, Eq)]
pub enum Forward<'a> {
    /// Drop it.
    Drop(DropReason),
    /// Send it out of this one port.
    Unicast(Target),
    /// Send it out of each of these ports (never empty).
    Flood(&'a [Target]),
}

/// Something that happened to the set of remotes, for the log.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A downlink peer appeared.
    RemoteUp(SocketAddr),
    /// A downlink peer went stale and was removed.
    RemoteStale(SocketAddr),
}

/// Settings of a switch.
#[derive(Debug, Clone)]
pub struct Params {
    /// Bound on learned MAC addresses.
    pub mac_capacity: usize,
    /// Bound on remotes (uplinks, downlinks, the multicast group) at once;
    /// the local end is not counted.
    pub max_ports: usize,
    /// Ignore lists, indexed by [`DeclId`].
    pub ignore: Vec<Vec<MacAddr>>,
    /// Most learned addresses one remote port may own (port security).
    pub port_mac_limit: usize,
    /// Most learned addresses the local end may own.
    pub local_mac_limit: usize,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            mac_capacity: DEFAULT_MAC_CAPACITY,
            max_ports: DEFAULT_MAX_PORTS,
            ignore: Vec::new(),
            port_mac_limit: DEFAULT_PORT_MAC_LIMIT,
            local_mac_limit: DEFAULT_LOCAL_MAC_LIMIT,
        }
    }
}

/// The learning switch.
#[derive(Debug)]
pub struct Switch {
    ports: Vec<Option<Port>>,
    free: Vec<u32>,
    live: usize,
    locals: usize,
    by_addr: Map<SocketAddr, PortId>,
    table: MacTable,
    params: Params,
    flood: Vec<Target>,
    events: VecDeque<Event>,
    next_sweep: Option<Instant>,
    stats: Stats,
    /// The frames that came from the multicast group or went to the local
    /// end lately.
    recent: Recent,
}

impl Switch {
    /// A switch with no ports.
    pub fn new(params: Params) -> Self {
        Switch {
            ports: Vec::new(),
            free: Vec::new(),
            live: 0,
            locals: 0,
            by_addr: Map::default(),
            table: MacTable::new(params.mac_capacity),
            params,
            flood: Vec::new(),
            events: VecDeque::new(),
            next_sweep: None,
            stats: Stats::default(),
            recent: Recent::new(timing::SETTLE),
        }
    }

    /// What the switch has counted.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Counts a drop decided outside the switch (by the node).
    pub fn count_drop(&mut self, reason: DropReason) {
        self.stats.drops[reason as usize] += 1;
    }

    /// Counts `n` drops decided outside the switch.
    pub fn count_drops(&mut self, reason: DropReason, n: u64) {
        self.stats.drops[reason as usize] += n;
    }

    /// Number of learned MAC addresses.
    pub fn mac_count(&self) -> usize {
        self.table.len()
    }

    /// Number of live ports.
    pub fn port_count(&self) -> usize {
        self.live
    }

    /// The live ports in port order.
    pub fn targets(&self) -> impl Iterator<Item = Target> + '_ {
        self.ports.iter().enumerate().filter_map(|(i, p)| p.as_ref().map(|p| p.target(PortId(i as u32))))
    }

    /// The port a learned MAC address is bound to.
    pub fn port_of(&self, mac: &MacAddr, now: Instant) -> Option<PortId> {
        match self.table.lookup(mac, now, timing::MAC_AGEING) {
            Answer::Found(p) => Some(p),
            Answer::Unknown => None,
        }
    }

    /// Adds a remote port; `None` if its address is already a port or
    /// `max_ports` remotes are live.
    fn add_remote(&mut self, port: Port) -> Option<PortId> {
        if self.live - self.locals >= self.params.max_ports {
            return None;
        }
        if let Dest::Remote(addr) = port.dest {
            if self.by_addr.contains_key(&addr) {
                return None;
            }
        }
        Some(self.insert_port(port))
    }

    fn insert_port(&mut self, port: Port) -> PortId {
        let (kind, dest) = (port.kind, port.dest);
        let id = match self.free.pop() {
            Some(i) => {
                self.ports[i as usize] = Some(port);
                PortId(i)
            }
            None => {
                self.ports.push(Some(port));
                PortId(self.ports.len() as u32 - 1)
            }
        };
        if let Dest::Remote(addr) = dest {
            self.by_addr.insert(addr, id);
        }
        self.live += 1;
        if kind == Kind::Local {
            self.locals += 1;
        }
        // Reserve flood room now, so handle_frame never allocates.
        self.flood.reserve(self.live.saturating_sub(self.flood.len()));
        self.table.reserve_ports(self.ports.len());
        id
    }

    fn remove_port(&mut self, id: PortId) -> Option<Port> {
        let port = self.ports.get_mut(id.0 as usize)?.take()?;
        if let Dest::Remote(addr) = port.dest {
            self.by_addr.remove(&addr);
        }
        self.table.forget_port(id);
        self.free.push(id.0);
        self.live -= 1;
        if port.kind == Kind::Local {
            self.locals -= 1;
        }
        Some(port)
    }

    /// Adds the local end (tap or stdio). It does not count against
    /// [`Params::max_ports`], which bounds remotes, so it always fits.
    pub fn add_local(&mut self, now: Instant) -> PortId {
        self.insert_port(Port::new(Kind::Local, Dest::Local, None, now, None))
    }

    /// Adds an uplink: a fixed remote, flooded to from the start, with a
    /// heartbeat due at once and every [`timing::HEARTBEAT_INTERVAL`] after.
    /// `None` if the address is already a port or the switch is full.
    pub fn add_uplink(&mut self, now: Instant, addr: SocketAddr, decl: DeclId) -> Option<PortId> {
        self.add_remote(Port::new(Kind::Uplink, Dest::Remote(addr), Some(decl), now, Some(now)))
    }

    /// Adds the multicast group: a persistent remote that gets no heartbeats.
    pub fn add_multicast(&mut self, now: Instant, decl: DeclId) -> Option<PortId> {
        self.add_remote(Port::new(Kind::Multicast, Dest::Multicast, Some(decl), now, None))
    }

    /// The port of a known remote address, and its declaration.
    pub fn lookup(&self, addr: &SocketAddr) -> Option<(PortId, Option<DeclId>)> {
        let id = *self.by_addr.get(addr)?;
        let port = self.ports[id.0 as usize].as_ref()?;
        Some((id, port.decl))
    }

    /// Records that an (authenticated, declared) datagram came from `addr`
    /// under declaration `decl`: refreshes the remote, or makes a new
    /// downlink port for it.
    pub fn remote_rx(&mut self, now: Instant, addr: SocketAddr, decl: DeclId) -> Result<PortId, DropReason> {
        if let Some(&id) = self.by_addr.get(&addr) {
            if let Some(p) = self.ports[id.0 as usize].as_mut() {
                p.last_rx = now;
            }
            return Ok(id);
        }
        let port = Port::new(Kind::Downlink, Dest::Remote(addr), Some(decl), now, None);
        match self.add_remote(port) {
            Some(id) => {
                self.events.push_back(Event::RemoteUp(addr));
                Ok(id)
            }
            None => {
                self.count_drop(DropReason::TooManyRemotes);
                Err(DropReason::TooManyRemotes)
            }
        }
    }

    /// Records that something arrived on a port that is not a UDP remote
    /// (the local end, the multicast group).
    pub fn port_rx(&mut self, now: Instant, id: PortId) {
        if let Some(Some(p)) = self.ports.get_mut(id.0 as usize) {
            p.last_rx = now;
        }
    }

    fn ignores(&self, decl: Option<DeclId>, a: MacAddr, b: MacAddr) -> bool {
        match decl.and_then(|d| self.params.ignore.get(d as usize)) {
            Some(list) if !list.is_empty() => list.contains(&a) || list.contains(&b),
            _ => false,
        }
    }

    fn drop(&mut self, reason: DropReason) -> Decision {
        self.count_drop(reason);
        Decision::Drop(reason)
    }

    /// Decides where a frame that came in on `ingress` goes, learning its
    /// source address on the way, and counts it on the port.
    ///
    /// # The rules
    ///
    /// 1. A *flood* (broadcast, multicast, or unicast to an unknown address)
    ///    is accepted only by its source's flood port while the manual's hold
    ///    runs: 6 s after a broadcast, 20 s after a unicast by that port. The
    ///    first copy after the hold binds the flood port.
    /// 2. A unicast *relayed* to a remote, by a port other than the one its
    ///    source is bound to, moves the binding there, unless the bound port
    ///    relayed a unicast from that source less than [`timing::SETTLE`]
    ///    (500 ms) ago: then the frame is relayed *across*, nothing learned,
    ///    and a switch relays one frame across at most once per 500 ms.
    /// 3. A unicast for the *local end* is delivered by whatever port it came
    ///    (a copy of one delivered by another port less than 500 ms ago
    ///    excepted), and moves the binding as in 2; delivery ends there.
    /// 4. A binding on the local end moves only when the manual's hold has
    ///    run out: frames from a remote with the local host's own address are
    ///    reflections or forgeries.
    /// 5. A frame from the multicast group that came from the group less than
    ///    500 ms ago is a copy (two members relayed it into the group).
    ///
    /// # Why no broadcast storm
    ///
    /// By 1 a switch accepts each flood at most once: its first copy binds
    /// the flood port for at least 6 s, copies by other ports are dropped,
    /// and by the same port it comes twice only if the neighbour accepted it
    /// twice (which, by induction over time, none did first) or, on the
    /// group's one shared port, if two members relayed it, which 5 drops. So
    /// a flood crosses each link at most once each way: at most one datagram
    /// per remote of each switch. Unicast relayed across (2) and delivered
    /// across (3) change no flood port, so they cannot let a second copy of a
    /// broadcast in. This holds while every copy of a frame arrives within
    /// 500 ms of the first, as the manual's 6 s hold assumed 6 s.
    ///
    /// # Why no unicast loop
    ///
    /// Unicast to an address follows the bindings of that address, so it
    /// loops only if those bindings form a cycle. A binding moves only to the
    /// port a frame *from* the address just came by, and never at a switch
    /// that relayed unicast from the address by the bound port in the last
    /// 500 ms (2, 3). The switch behind the new port has just passed that
    /// frame on; if it is relaying the address's unicast its own binding is
    /// settled on the port the frame came by, and so on back along the
    /// frame's path to the address: the chain of bindings is the frame's own
    /// path, which ends at the address. Closing a cycle would take a switch
    /// whose binding moved within 500 ms of relaying by it (forbidden), or a
    /// frame still in flight 500 ms after a later one passed (the transit
    /// bound above). Frames relayed across teach the switches after this one
    /// a path through it while this one's binding stays put; such a path
    /// still follows a settled binding back to the address. As a last guard
    /// a frame that does come round is relayed across at most once per
    /// switch. tests/mesh.rs checks all of this on random meshes, stars,
    /// chains of pure switches and meshes with a multicast segment.
    ///
    /// # Why no cut
    ///
    /// The manual's rule applied the hold to every frame. In a full mesh with
    /// jitter a relayed copy of a broadcast often arrives first, so X binds
    /// S to the relay while S binds X direct; X's unicast to S then came by
    /// the relay and S dropped it, and the mirror image held the other way:
    /// the pair was cut until the holds ran out (6 s, or 20 s and more once
    /// unicast renewed them). Now a unicast is never dropped for the port it
    /// came by (but reflections of the local end's own addresses, copies,
    /// and what a full table's loop holds refuse),
    /// and the binding follows unicast within 500 ms of a path going quiet.
    pub fn handle_frame(&mut self, now: Instant, ingress: PortId, bytes: &[u8]) -> Forward<'_> {
        self.stats.frames_in += 1;
        let port = self.ports.get_mut(ingress.0 as usize).and_then(Option::as_mut);
        if let Some(p) = port {
            p.counters.rx_frames += 1;
            p.counters.rx_bytes += bytes.len() as u64;
        }
        match self.decide(now, ingress, bytes) {
            Decision::Drop(r) => {
                if let Some(Some(p)) = self.ports.get_mut(ingress.0 as usize) {
                    p.counters.drops[r as usize] += 1;
                }
                Forward::Drop(r)
            }
            Decision::Unicast(t) => Forward::Unicast(t),
            Decision::Flood => Forward::Flood(&self.flood),
        }
    }

    /// The forwarding rules: learn the source (or drop the frame), then the
    /// one port of a known destination, or a flood.
    fn decide(&mut self, now: Instant, ingress: PortId, bytes: &[u8]) -> Decision {
        let Some(frame) = Frame::new_checked(bytes) else {
            return self.drop(DropReason::Runt);
        };
        let (src, dst) = (frame.src(), frame.dst());
        if !src.is_learnable() {
            return self.drop(DropReason::InvalidSource);
        }
        // Before learning: a frame no bridge relays teaches nothing either.
        // Which link-local group addresses pass is decided and explained at
        // `Frame::is_link_control`.
        if frame.is_link_control() {
            return self.drop(DropReason::LinkControl);
        }
        let Some(in_port) = self.ports.get(ingress.0 as usize).and_then(Option::as_ref) else {
            return self.drop(DropReason::NoTarget);
        };
        if self.ignores(in_port.decl, src, dst) {
            return self.drop(DropReason::Ignored);
        }
        // Where it goes decides how its source is learned, so look first.
        let out = match dst.is_multicast() {
            true => None,
            false => match self.table.lookup(&dst, now, timing::MAC_AGEING) {
                Answer::Found(p) => Some(p),
                Answer::Unknown => None,
            },
        };
        let from_group = in_port.kind == Kind::Multicast;
        let ports = &self.ports;
        let is_local = |p: PortId| matches!(ports.get(p.0 as usize), Some(Some(Port { kind: Kind::Local, .. })));
        let to_local = out.is_some_and(is_local);
        if from_group && self.recent.copy(digest(bytes), ingress, now, true) {
            return self.drop(DropReason::Sticky);
        }
        // Port security (issue 13): the share of the table this port may own.
        let limit = if in_port.kind == Kind::Local { self.params.local_mac_limit } else { self.params.port_mac_limit };
        let learned = match out {
            None => {
                let hold = if dst.is_multicast() { timing::STICKY_BROADCAST } else { timing::STICKY_UNICAST };
                self.table.learn_within(src, ingress, now, hold, limit)
            }
            Some(_) if to_local => self.table.learn_delivered(src, ingress, now, digest(bytes), limit, is_local),
            // Also a unicast for an address behind its own ingress (common
            // on the group): the port carries unicast from its source, and
            // settles as if it relayed it. Learning from it as from a frame
            // that ends here (no settling) let bindings swing between the
            // group and a UDP port fast enough for unicast to go round in
            // tests/mesh.rs's random meshes with a group.
            Some(_) => self.table.learn_relayed(src, ingress, now, limit, is_local),
        };
        match learned {
            Learn::PortFull => return self.drop(DropReason::PortMacLimit),
            Learn::HeldElsewhere(_) | Learn::Copy => return self.drop(DropReason::Sticky),
            Learn::Full => self.stats.table_full += 1,
            Learn::Unheld => {
                self.stats.table_full += 1;
                return self.drop(DropReason::NoLoopHold);
            }
            Learn::Moved(_) => self.stats.moved += 1,
            Learn::Across => {
                self.stats.across += 1;
                // Relayed across at most once: a frame back by another way
                // is going round.
                if !to_local && self.recent.copy(digest(bytes), ingress, now, true) {
                    return self.drop(DropReason::Sticky);
                }
            }
            Learn::New => {
                if self.next_sweep.is_none() {
                    self.next_sweep = Some(now + timing::SWEEP_INTERVAL);
                }
            }
            Learn::Refreshed => {}
        }
        // A frame to its own source goes where the source now is.
        let out = if dst == src { self.port_of(&dst, now) } else { out };
        if let Some(out) = out {
            if out == ingress {
                return self.drop(DropReason::Hairpin);
            }
            if let Some(p) = self.ports.get(out.0 as usize).and_then(Option::as_ref) {
                if self.ignores(p.decl, src, dst) {
                    return self.drop(DropReason::Ignored);
                }
                self.stats.unicast += 1;
                return Decision::Unicast(p.target(out));
            }
        }
        self.flood.clear();
        for (i, p) in self.ports.iter().enumerate() {
            let Some(p) = p else { continue };
            let id = PortId(i as u32);
            if id == ingress {
                continue;
            }
            let ignored = match p.decl.and_then(|d| self.params.ignore.get(d as usize)) {
                Some(list) if !list.is_empty() => list.contains(&src) || list.contains(&dst),
                _ => false,
            };
            if !ignored {
                self.flood.push(p.target(id));
            }
        }
        if self.flood.is_empty() {
            return self.drop(DropReason::NoTarget);
        }
        self.stats.flooded += 1;
        Decision::Flood
    }

    /// Counts a frame of `len` bytes planned out of `port`.
    pub fn count_tx(&mut self, port: PortId, len: usize) {
        if let Some(Some(p)) = self.ports.get_mut(port.0 as usize) {
            p.counters.tx_frames += 1;
            p.counters.tx_bytes += len as u64;
        }
    }

    /// Counts a drop, decided outside the switch, of what came in on `port`
    /// (a datagram of a known remote that failed authentication, say), in
    /// the totals and on the port.
    pub fn count_port_drop(&mut self, port: PortId, reason: DropReason) {
        self.count_drop(reason);
        if let Some(Some(p)) = self.ports.get_mut(port.0 as usize) {
            p.counters.drops[reason as usize] += 1;
        }
    }

    /// The live ports in port order, for status reports.
    pub fn port_infos(&self) -> impl Iterator<Item = PortInfo<'_>> + '_ {
        self.ports.iter().enumerate().filter_map(|(i, p)| {
            let p = p.as_ref()?;
            let kind = match p.kind {
                Kind::Local => PortKind::Local,
                Kind::Uplink => PortKind::Uplink,
                Kind::Downlink => PortKind::Downlink,
                Kind::Multicast => PortKind::Multicast,
            };
            Some(PortInfo {
                id: PortId(i as u32),
                kind,
                dest: p.dest,
                decl: p.decl,
                since: p.since,
                last_rx: p.last_rx,
                counters: &p.counters,
            })
        })
    }

    /// How many learned addresses each port holds, indexed by port number.
    pub fn macs_per_port(&self) -> Vec<usize> {
        let mut n = vec![0; self.ports.len()];
        for b in self.table.bindings() {
            if let Some(c) = n.get_mut(b.port.0 as usize) {
                *c += 1;
            }
        }
        n
    }

    /// The bound on learned MAC addresses.
    pub fn mac_capacity(&self) -> usize {
        self.params.mac_capacity
    }

    /// Expires stale downlinks and aged MAC entries.
    pub fn handle_timeout(&mut self, now: Instant) {
        for i in 0..self.ports.len() {
            let stale = matches!(&self.ports[i], Some(p) if p.kind == Kind::Downlink
                && now.saturating_duration_since(p.last_rx) >= timing::DOWNLINK_STALE);
            if stale {
                if let Some(Port { dest: Dest::Remote(addr), .. }) = self.remove_port(PortId(i as u32)) {
                    self.events.push_back(Event::RemoteStale(addr));
                }
            }
        }
        match self.next_sweep {
            Some(t) if now >= t => {
                self.table.expire(now, timing::MAC_AGEING);
                self.next_sweep = None;
            }
            _ => {}
        }
        if self.next_sweep.is_none() && !self.table.is_empty() {
            self.next_sweep = Some(now + timing::SWEEP_INTERVAL);
        }
    }

    /// The next uplink whose heartbeat is due at `now`, marked as sent.
    pub fn poll_heartbeat(&mut self, now: Instant) -> Option<Target> {
        for (i, p) in self.ports.iter_mut().enumerate() {
            let Some(p) = p else { continue };
            if let Some(due) = p.next_heartbeat {
                if due <= now {
                    p.next_heartbeat = Some(now + timing::HEARTBEAT_INTERVAL);
                    return Some(p.target(PortId(i as u32)));
                }
            }
        }
        None
    }

    /// The next thing that happened to the set of remotes.
    pub fn poll_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// When [`Switch::handle_timeout`] or [`Switch::poll_heartbeat`] next has
    /// work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let mut next = self.next_sweep;
        let mut earliest = |t: Instant| next = Some(next.map_or(t, |n: Instant| n.min(t)));
        for p in self.ports.iter().flatten() {
            if let Some(hb) = p.next_heartbeat {
                earliest(hb);
            }
            if p.kind == Kind::Downlink {
                earliest(p.last_rx + timing::DOWNLINK_STALE);
            }
        }
        next
    }
}

#[cfg(test)]
mod tests;
