//! The node: the whole rrqnet protocol as one pure state machine (sans-IO).
//!
//! Payloads, the channel they came from and the time go in
//! ([`Node::handle_input`], [`Node::handle_timeout`]); a transmit plan comes
//! out ([`Node::flush_with`] hands it to the shell, channel by channel),
//! with the next wake-up ([`Node::poll_timeout`]). The node owns the
//! declarations (one table: block, port, kind, ignore list, key), the keyed
//! transports (sessions, replay windows), admission, heartbeats, stale
//! remotes, the multicast rules, and the one-seal-per-key flood; the
//! [`Switch`] underneath owns the MAC table and the ports. It never opens a
//! socket or a file and never reads a clock: the shell reads both clocks once
//! per turn ([`Now`]) and loads key files before building the node. That is
//! what lets `tests/` run many nodes over a virtual network on a virtual
//! clock, with real declarations, keys and heartbeats.
//!
//! # Receiving (SPEC 5's order)
//!
//! A UDP datagram's source must fall under a declaration (the one of its
//! remote, or the best match); an undeclared source is dropped. Then, on a
//! keyed declaration, the datagram is opened in place; only an authentic,
//! fresh, unreplayed one may create or refresh a remote
//! ([`Switch::remote_rx`]) and reach the switch, which learns MACs. A
//! remote's identity is its UDP source address: a datagram from a new address
//! that authenticates is a new remote if a declaration admits that address,
//! exactly as on a plain channel. Payloads under 12 bytes on a plain channel
//! are heartbeats. Everything heard on the multicast group is from the one
//! multicast remote, except our own datagrams heard back.
//!
//! # Sending
//!
//! Every frame goes out through one path ([`Node::forward`] and the
//! heartbeats): the plaintext targets share one copy of the frame in the
//! plan; then, for each key among the targets, the frame is copied once,
//! sealed there in place, and that one datagram is queued for every target
//! of the key. So a frame is copied at most once per key, and a flood is
//! sealed once per key, never once per remote. Nothing with fewer than 12
//! bytes ever goes to the multicast group (SPEC 4).

pub mod decl;
pub mod guard;
mod offload;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::time::{Duration, Instant};

use log::{debug, info, log_enabled, trace, warn, Level};

use crate::config::RemoteSpec;
use crate::crypto::{KeyFingerprint, Kind, MasterKey, OpenError, SealError, Transport};
use crate::plan::{ChanId, Datagram, Plan, SendReport, HEADROOM};
use crate::ratelimit::{Every, LogBudget, PerKey};
use crate::status::{Frames, Local, Macs, Remote, Status, Traffic};
use crate::switch::{
    DeclId, Dest, DropReason, Event, Forward, Params, PortCounters, PortId, PortKind, Stats, Switch, Target,
};
use decl::{DeclKind, Declarations};
use guard::Guard;

/// Payloads shorter than this on a plain UDP channel are heartbeats.
pub const HEARTBEAT_MAX: usize = 11;
/// What we send as a heartbeat on a plain channel: short and non-empty
/// (SPEC 3: a zero-length datagram stops QEMU's UDP netdevs for good). On a
/// keyed channel a heartbeat is an authenticated empty payload.
pub const HEARTBEAT: &[u8] = b"\0";

/// The time of one turn of the loop: both clocks, read together by the
/// shell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Now {
    /// For the switch's timers.
    pub mono: Instant,
    /// Unix seconds, for the freshness of keyed sessions.
    pub unix: u64,
}

/// The multicast group, as the shell opened it.
#[derive(Clone, Debug)]
pub struct MulticastSetup {
    /// Its channel.
    pub chan: ChanId,
    /// The group and port, for status reports.
    pub group: SocketAddr,
    /// The address our own datagrams to the group come from, so that we
    /// drop them when we hear them back.
    pub own: SocketAddr,
    /// Index of its key in [`Setup::keys`], if keyed.
    pub key: Option<usize>,
}

/// Everything a node is made from: the command line's declarations, the
/// keys the shell loaded, and which channel plays which part.
#[derive(Debug)]
pub struct Setup {
    /// The remote declarations in command-line order, each with the index
    /// of its key in [`Setup::keys`].
    pub remotes: Vec<(RemoteSpec, Option<usize>)>,
    /// The key files' master keys (files with the same content may appear
    /// twice; they become one key).
    pub keys: Vec<MasterKey>,
    /// Number of channels the shell opened (channel ids are below it).
    pub channels: usize,
    /// The local end's channel (tap or stdio), if any.
    pub local: Option<ChanId>,
    /// The UDP socket's channel, if any.
    pub udp: Option<ChanId>,
    /// The multicast group, if any.
    pub multicast: Option<MulticastSetup>,
    /// Bounds of the switch (its ignore lists come from the declarations).
    pub switch: Params,
    /// The receive batch: the plan is sized for what one batch causes.
    pub batch: usize,
}

/// A node that cannot be built from its setup.
#[derive(Debug)]
pub enum SetupError {
    /// More declarations than a [`DeclId`] can number.
    TooManyDeclarations(usize),
    /// A key's first sending session could not be started.
    Session {
        /// The key.
        fingerprint: KeyFingerprint,
        /// Why.
        source: SealError,
    },
}

impl fmt::Display for SetupError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SetupError::TooManyDeclarations(n) => {
                write!(f, "too many remote declarations: {n} (at most {})", DeclId::MAX)
            }
            SetupError::Session { fingerprint, .. } => write!(f, "cannot start a session of key {fingerprint}"),
        }
    }
}

impl std::error::Error for SetupError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            SetupError::TooManyDeclarations(_) => None,
            SetupError::Session { source, .. } => Some(source),
        }
    }
}

/// One distinct key: its transport, and its name for logs.
struct Keyed {
    transport: Transport,
    fingerprint: KeyFingerprint,
}

/// What a received datagram turned out to be.
enum Admit {
    /// A frame, at this range of the buffer.
    Frame(Range<usize>),
    /// A heartbeat: a short plain datagram, or an authenticated empty one.
    Heartbeat,
    /// Dropped and counted.
    Dropped,
}

/// The channels that play a part, as ids.
#[derive(Clone, Copy, Debug, Default)]
struct Roles {
    local: Option<ChanId>,
    udp: Option<ChanId>,
    multicast: Option<ChanId>,
}

impl Roles {
    /// The channel and peer a switch destination is reached through.
    fn route(&self, dest: Dest) -> Option<(ChanId, Option<SocketAddr>)> {
        match dest {
            Dest::Local => self.local.map(|c| (c, None)),
            Dest::Remote(a) => self.udp.map(|c| (c, Some(a))),
            Dest::Multicast => self.multicast.map(|c| (c, None)),
        }
    }
}

/// The multicast group's port and declaration.
#[derive(Clone, Copy, Debug)]
struct Group {
    port: PortId,
    decl: DeclId,
    own: SocketAddr,
    addr: SocketAddr,
}

/// Rate limits of the log lines strangers can trigger: one limiter per log
/// site, and one budget over all of them, so that no input makes more than a
/// few lines a second below trace.
struct Logs {
    unknown: PerKey<IpAddr>,
    auth: Every,
    send: Every,
    seal: Every,
    budget: LogBudget,
    /// Remotes refused by the guard (issue 13).
    guard: Every,
}

/// The protocol state of one rrqnet.
pub struct Node {
    switch: Switch,
    decls: Declarations,
    keys: Vec<Keyed>,
    roles: Roles,
    local_port: Option<PortId>,
    group: Option<Group>,
    plan: Plan,
    /// The targets of the frame being sent, copied out of the switch's
    /// decision; its capacity grows with the number of ports, never per frame.
    targets: Vec<Target>,
    logs: Logs,
    started: Instant,
    /// Admission and storm control (issue 13).
    guard: Guard,
    /// Splits what a tap with offloads reads ([`offload`]).
    tap: Option<offload::TapSplit>,
}

impl fmt::Debug for Node {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Node").field("switch", &self.switch).field("plan", &self.plan).finish_non_exhaustive()
    }
}

impl Node {
    /// A node with the setup's declarations, keys and channels, its uplinks
    /// due a heartbeat at once.
    pub fn new(setup: Setup, now: Now) -> Result<Node, SetupError> {
        let n_decls = setup.remotes.len() + usize::from(setup.multicast.is_some());
        if n_decls > usize::from(DeclId::MAX) {
            return Err(SetupError::TooManyDeclarations(n_decls));
        }
        // Files with the same content are one key: one seal per flood.
        let mut keys: Vec<Keyed> = Vec::new();
        let mut key_index = Vec::with_capacity(setup.keys.len());
        for key in &setup.keys {
            let fingerprint = key.fingerprint();
            let k = match keys.iter().position(|k| k.fingerprint == fingerprint) {
                Some(k) => k,
                None => {
                    let transport =
                        Transport::new(key, now.unix).map_err(|source| SetupError::Session { fingerprint, source })?;
                    keys.push(Keyed { transport, fingerprint });
                    keys.len() - 1
                }
            };
            key_index.push(k);
        }
        let map = |k: Option<usize>| k.and_then(|k| key_index.get(k).copied());
        let mut decls = Declarations::new(setup.remotes.into_iter().map(|(spec, k)| (spec, map(k))));
        let group_decl = setup.multicast.as_ref().map(|m| decls.add_multicast(map(m.key)));

        let params = Params { ignore: decls.ignore_lists(), ..setup.switch };
        let mut switch = Switch::new(params);
        let local_port = setup.local.map(|_| switch.add_local(now.mono));
        let group = match (&setup.multicast, group_decl) {
            (Some(m), Some(decl)) => {
                switch.add_multicast(now.mono, decl).map(|port| Group { port, decl, own: m.own, addr: m.group })
            }
            _ => None,
        };
        let keys_name =
            |decl: &decl::Declaration| decl.key.map_or_else(String::new, |k| format!(" (key {})", keys[k].fingerprint));
        for (id, decl) in decls.iter() {
            match decl.kind {
                DeclKind::Uplink(addr) => {
                    if switch.add_uplink(now.mono, addr, id).is_none() {
                        warn!("uplink {decl} not added: declared twice, or too many remotes");
                    } else {
                        info!("uplink {decl}{}", keys_name(decl));
                    }
                }
                DeclKind::Downlink => {
                    info!("downlink mask {decl}{}", keys_name(decl));
                    // Issue 13: hook of the guard.
                    if let Some(w) = guard::wide_plain_downlink(&decls, id) {
                        warn!("{w}");
                    }
                }
                DeclKind::Multicast => info!("multicast group{}", keys_name(decl)),
            }
        }
        let batch = setup.batch.max(1);
        let guard = Guard::new(&decls, guard::Limits::default(), switch.port_count());
        Ok(Node {
            switch,
            decls,
            keys,
            roles: Roles { local: setup.local, udp: setup.udp, multicast: setup.multicast.map(|m| m.chan) },
            local_port,
            group,
            plan: Plan::new(setup.channels, (batch * 4096).max(256 << 10), (batch * 4).max(64)),
            targets: Vec::with_capacity(64),
            logs: Logs {
                unknown: PerKey::new(Duration::from_secs(60), 1024),
                auth: Every::new(Duration::from_secs(10)),
                send: Every::new(Duration::from_secs(10)),
                seal: Every::new(Duration::from_secs(10)),
                budget: LogBudget::default(),
                guard: Every::new(Duration::from_secs(60)),
            },
            started: now.mono,
            guard,
            tap: None,
        })
    }

    /// The admission and storm state, for inspection.
    pub fn guard(&self) -> &Guard {
        &self.guard
    }

    /// The switch underneath, for inspection.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// What the switch and the node have counted.
    pub fn stats(&self) -> &Stats {
        self.switch.stats()
    }

    /// The declarations.
    pub fn declarations(&self) -> &Declarations {
        &self.decls
    }

    /// Number of distinct keys.
    pub fn key_count(&self) -> usize {
        self.keys.len()
    }

    /// What is planned and not yet handed to the channels.
    pub fn plan(&self) -> &Plan {
        &self.plan
    }

    /// Whether the shell should flush before handing over more input.
    pub fn should_flush(&self) -> bool {
        self.plan.should_flush()
    }

    /// When [`Node::handle_timeout`] next has work, if ever.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.switch.poll_timeout()
    }

    /// Takes one payload that channel `chan` received from `from`: the bytes
    /// at `range` of `buf` (opened in place when keyed).
    pub fn handle_input(
        &mut self,
        now: Now,
        chan: ChanId,
        from: Option<SocketAddr>,
        buf: &mut [u8],
        range: Range<usize>,
    ) {
        if Some(chan) == self.roles.udp {
            match from {
                Some(from) => self.handle_datagram(now, from, buf, range),
                None => self.switch.count_drop(DropReason::UnknownSource),
            }
        } else if Some(chan) == self.roles.multicast {
            self.handle_group(now, from, buf, range);
        } else if Some(chan) == self.roles.local {
            if let Some(port) = self.local_port {
                if self.tap.is_some() {
                    self.forward_from_tap(now, port, &mut buf[range]);
                } else {
                    self.forward(now, port, &buf[range]);
                }
            }
        }
        self.log_events(now);
    }

    /// Counts a payload that channel `chan` received cut short, because it
    /// was larger than any payload we carry.
    pub fn handle_truncated(&mut self, chan: ChanId) {
        trace!("dropped a payload too large for a receive slot from channel {chan}");
        self.switch.count_drop(DropReason::TooLarge);
    }

    /// Fires what is due at `now`: heartbeats to uplinks, stale downlinks
    /// and aged MAC addresses out.
    pub fn handle_timeout(&mut self, now: Now) {
        self.switch.handle_timeout(now.mono);
        while let Some(t) = self.switch.poll_heartbeat(now.mono) {
            trace!("heartbeat to {}", t.dest);
            self.targets.clear();
            self.targets.push(t);
            self.send_planned(now, &[], Kind::Heartbeat);
        }
        self.log_events(now);
    }

    /// Hands the plan to the channels, one call per channel with anything
    /// queued, counts what they could not send, and empties the plan. Stops
    /// at the first channel that fails and returns its error (the plan is
    /// emptied all the same).
    pub fn flush_with<E>(
        &mut self,
        now: Now,
        mut send: impl FnMut(ChanId, &[u8], &[Datagram]) -> Result<SendReport, E>,
    ) -> Result<(), E> {
        let mut result = Ok(());
        for chan in 0..self.plan.channels() {
            let batch = self.plan.queued(chan);
            if batch.is_empty() {
                continue;
            }
            match send(chan, self.plan.arena(), batch) {
                Ok(r) => {
                    self.switch.count_drops(DropReason::SendFailed, r.failed as u64);
                    self.switch.count_drops(DropReason::TooLarge, r.too_large as u64);
                    if r.failed + r.too_large > 0 && log_enabled!(Level::Debug) {
                        if let Some(s) = self.logs.send.check(now.mono, &mut self.logs.budget) {
                            debug!(
                                "channel {chan} did not send {} of {} payloads ({} too large){s}",
                                r.failed + r.too_large,
                                batch.len(),
                                r.too_large
                            );
                        }
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        self.plan.clear();
        result
    }

    /// What the node has counted, as one status document. `local` is the
    /// local end's kind and name as the shell knows them.
    pub fn status(&self, now: Now, local: Option<(&str, &str)>) -> Status {
        let secs = |t: Instant| now.mono.saturating_duration_since(t).as_secs_f64();
        let drops_of = |d: &[u64; DropReason::COUNT], all: bool| -> BTreeMap<String, u64> {
            DropReason::ALL
                .iter()
                .filter(|r| all || d[**r as usize] > 0)
                .map(|r| (r.name().to_owned(), d[*r as usize]))
                .collect()
        };
        let traffic = |c: &PortCounters| Traffic {
            rx_frames: c.rx_frames,
            rx_bytes: c.rx_bytes,
            tx_frames: c.tx_frames,
            tx_bytes: c.tx_bytes,
        };
        let macs = self.switch.macs_per_port();
        let mut local_status = None;
        let mut remotes = Vec::new();
        for p in self.switch.port_infos() {
            if p.kind == PortKind::Local {
                let (kind, name) = local.unwrap_or(("local", "local"));
                local_status = Some(Local {
                    kind: kind.to_owned(),
                    name: name.to_owned(),
                    traffic: traffic(p.counters),
                    drops: drops_of(&p.counters.drops, false),
                });
                continue;
            }
            let address = match p.dest {
                Dest::Remote(a) => a.to_string(),
                _ => self.group.map_or_else(String::new, |g| g.addr.to_string()),
            };
            let decl = p.decl.and_then(|d| self.decls.get(d));
            remotes.push(Remote {
                address,
                kind: p.kind.name().to_owned(),
                declaration: decl.map_or_else(String::new, |d| d.to_string()),
                key: decl.and_then(|d| d.key).map(|k| self.keys[k].fingerprint.to_string()),
                since_s: secs(p.since),
                last_rx_s: secs(p.last_rx),
                traffic: traffic(p.counters),
                macs: macs.get(p.id.0 as usize).copied().unwrap_or(0) as u64,
                drops: drops_of(&p.counters.drops, false),
            });
        }
        let s = self.switch.stats();
        Status {
            version: env!("CARGO_PKG_VERSION").to_owned(),
            uptime_s: secs(self.started),
            local: local_status,
            remotes,
            frames: Frames { frames_in: s.frames_in, unicast: s.unicast, flooded: s.flooded },
            macs: Macs { count: self.switch.mac_count() as u64, capacity: self.switch.mac_capacity() as u64 },
            drops: drops_of(&s.drops, true),
            sessions: self.keys.iter().map(|k| k.transport.opener().session_count() as u64).sum(),
            offload: None,
        }
    }

    /// The statistics line logged at exit.
    pub fn summary(&self) -> String {
        let s = self.switch.stats();
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| s.dropped(**r) > 0)
            .map(|r| format!("{} {}", r.name(), s.dropped(*r)))
            .collect();
        format!(
            "frames in {}, unicast {}, flooded {}, macs {}, drops: {}",
            s.frames_in,
            s.unicast,
            s.flooded,
            self.switch.mac_count(),
            if drops.is_empty() { "none".to_owned() } else { drops.join(", ") }
        )
    }

    /// Logs what happened to the set of remotes (a forged source can make
    /// many remotes on a plain downlink, so these lines are budgeted too).
    fn log_events(&mut self, now: Now) {
        while let Some(ev) = self.switch.poll_event() {
            if let Event::RemoteStale(a) = ev {
                self.guard.remote_removed(a);
            }
            if !log_enabled!(Level::Debug) {
                continue;
            }
            let Some(s) = self.logs.budget.allow(now.mono) else { continue };
            match ev {
                Event::RemoteUp(a) => debug!("remote {a} connected{s}"),
                Event::RemoteStale(a) => debug!("remote {a} is stale; removed{s}"),
            }
        }
    }

    /// A datagram on the UDP socket.
    fn handle_datagram(&mut self, now: Now, from: SocketAddr, buf: &mut [u8], range: Range<usize>) {
        let Some((decl, known)) = self.declaration_of(from, now) else { return };
        let admitted = self.admit(now, from, decl, buf, range);
        if matches!(admitted, Admit::Dropped) {
            return;
        }
        // Only now, authentic if keyed: the remote is created or refreshed;
        // a new one only if the guard allows (issue 13).
        let new = !known;
        if new {
            if let Err(r) = self.guard.admit_new(now.mono, from, decl) {
                self.refused(now, from, decl, r);
                return;
            }
        }
        let Ok(port) = self.switch.remote_rx(now.mono, from, decl) else { return };
        if new {
            self.guard.remote_added(from, decl, port);
        }
        match admitted {
            Admit::Frame(frame) => self.forward(now, port, &buf[frame]),
            Admit::Heartbeat => trace!("heartbeat from {from}"),
            Admit::Dropped => {}
        }
    }

    /// Counts and logs (rate-limited) a new remote the guard refused.
    fn refused(&mut self, now: Now, from: SocketAddr, decl: DeclId, r: DropReason) {
        self.switch.count_drop(r);
        if log_enabled!(Level::Warn) {
            if let Some(s) = self.logs.guard.check(now.mono, &mut self.logs.budget) {
                let name = self.decls.get(decl).map_or_else(String::new, |d| d.to_string());
                let why = match r {
                    DropReason::DeclarationFull => {
                        format!("it has {} remotes, its cap ('-r n' to change)", self.guard.live(decl))
                    }
                    _ => format!("new remotes come too fast ({})", r.name()),
                };
                warn!("refused a new remote {from} under {name}: {why}{s}");
            }
        }
    }

    /// A datagram heard on the multicast group: from the one multicast
    /// remote, unless it is our own heard back.
    fn handle_group(&mut self, now: Now, from: Option<SocketAddr>, buf: &mut [u8], range: Range<usize>) {
        let Some(group) = self.group else { return };
        let Some(from) = from else { return };
        if from == group.own {
            self.switch.count_drop(DropReason::OwnMulticast);
            return;
        }
        let keyed = self.decls.key_of(group.decl).is_some();
        let len = range.len();
        match self.admit(now, from, group.decl, buf, range) {
            Admit::Dropped => {}
            Admit::Heartbeat if keyed => self.switch.port_rx(now.mono, group.port),
            // Not a frame, and the plain group has no heartbeats.
            Admit::Heartbeat => {
                self.switch.count_drop(DropReason::Runt);
                trace!("dropped a {len}-byte datagram from {from} on the multicast group");
            }
            Admit::Frame(frame) => {
                self.switch.port_rx(now.mono, group.port);
                self.forward(now, group.port, &buf[frame]);
            }
        }
    }

    /// The declaration a UDP source falls under: its remote's, or the best
    /// matching one. `None` (counted, logged rate-limited) when none does.
    fn declaration_of(&mut self, from: SocketAddr, now: Now) -> Option<(DeclId, bool)> {
        // The flag says whether `from` is a remote already (issue 13: only a
        // new one asks the guard).
        if let Some((_, Some(d))) = self.switch.lookup(&from) {
            return Some((d, true));
        }
        if let Some(d) = self.decls.match_source(from) {
            return Some((d, false));
        }
        self.switch.count_drop(DropReason::UnknownSource);
        if log_enabled!(Level::Debug) {
            let Logs { unknown, budget, .. } = &mut self.logs;
            if let Some(s) = unknown.check(from.ip(), now.mono, budget) {
                debug!("dropped a datagram from undeclared source {from}{s}");
            }
        }
        None
    }

    /// Decides what the datagram at `buf[datagram]` from `from` under
    /// declaration `decl` is. On a keyed channel it is opened in place;
    /// whatever fails is counted and changes nothing.
    fn admit(&mut self, now: Now, from: SocketAddr, decl: DeclId, buf: &mut [u8], datagram: Range<usize>) -> Admit {
        let len = datagram.len();
        let Some(k) = self.decls.key_of(decl) else {
            return if len <= HEARTBEAT_MAX { Admit::Heartbeat } else { Admit::Frame(datagram) };
        };
        let key = &mut self.keys[k];
        let opened = match key.transport.open_in_place(&mut buf[datagram.clone()], now.unix) {
            Ok(o) => o,
            Err(e) => {
                let reason = open_drop_reason(e);
                match self.switch.lookup(&from) {
                    Some((port, _)) => self.switch.count_port_drop(port, reason),
                    None if decl_is_group(&self.group, decl) => {
                        let port = self.group.map(|g| g.port).unwrap_or(PortId(u32::MAX));
                        self.switch.count_port_drop(port, reason)
                    }
                    None => self.switch.count_drop(reason),
                }
                if log_enabled!(Level::Debug) {
                    if let Some(s) = self.logs.auth.check(now.mono, &mut self.logs.budget) {
                        debug!("dropped a {len}-byte datagram from {from}: {e}{s}");
                    }
                }
                return Admit::Dropped;
            }
        };
        if opened.new_session {
            // Only key holders get here, but they can start sessions at will.
            let budget = &mut self.logs.budget;
            let mut line = |level: Level| if log_enabled!(level) { budget.allow(now.mono) } else { None };
            if let Some(s) = line(Level::Debug) {
                debug!("{from}: new session {} of key {}{s}", opened.session, key.fingerprint);
            }
            match key.transport.peer_session(opened.start, now.unix) {
                Ok(true) => {
                    if let Some(s) = line(Level::Debug) {
                        debug!(
                            "renewed our session of key {} so that {from} (clock {}s from ours) accepts it{s}",
                            key.fingerprint,
                            opened.start as i128 - now.unix as i128
                        );
                    }
                }
                Ok(false) => {}
                Err(e) => {
                    if let Some(s) = line(Level::Warn) {
                        warn!("cannot renew our session of key {}: {e}{s}", key.fingerprint);
                    }
                }
            }
        }
        match opened.kind {
            Kind::Heartbeat => Admit::Heartbeat,
            Kind::Data => Admit::Frame(datagram.start + opened.payload.start..datagram.start + opened.payload.end),
        }
    }

    /// Switches `frame`, which came in on `ingress`, and plans it where the
    /// switch says.
    fn forward(&mut self, now: Now, ingress: PortId, frame: &[u8]) {
        self.targets.clear();
        match self.switch.handle_frame(now.mono, ingress, frame) {
            Forward::Drop(r) => {
                trace!("drop {} from port {}: {}", frame.len(), ingress.0, r.name());
                return;
            }
            Forward::Unicast(t) => self.targets.push(t),
            Forward::Flood(targets) => {
                // Storm control (issue 13): after the switch decided to flood.
                let dst = crate::mac::MacAddr([frame[0], frame[1], frame[2], frame[3], frame[4], frame[5]]);
                match self.guard.flood(now.mono, ingress, dst, targets.len()) {
                    Ok(()) => self.targets.extend_from_slice(targets),
                    Err(r) => {
                        self.switch.count_port_drop(ingress, r);
                        trace!("drop {} from port {}: {}", frame.len(), ingress.0, r.name());
                        return;
                    }
                }
            }
        }
        self.send_planned(now, frame, Kind::Data);
    }

    /// Plans `frame` for every target in `self.targets`: as it is to the
    /// plaintext ones (the local end, unkeyed remotes), sharing one copy;
    /// then sealed once per key, the same datagram to every target of that
    /// key. A target that cannot be reached is counted.
    fn send_planned(&mut self, now: Now, frame: &[u8], kind: Kind) {
        let Node { switch, decls, keys, roles, plan, targets, logs, .. } = self;
        let key_of = |t: &Target| t.decl.and_then(|d| decls.key_of(d));
        // Plain heartbeats are the short datagram, not an empty frame.
        let plain = if kind == Kind::Heartbeat { HEARTBEAT } else { frame };
        // Issue 13: a datagram larger than UDP can carry is too large, not a
        // failed send. Only a frame near 64 KiB needs the look.
        if frame.len() + crate::crypto::OVERHEAD > guard::MAX_UDP_PAYLOAD_V4 {
            let before = targets.len();
            targets.retain(|t| {
                let len = if key_of(t).is_some() { frame.len() + crate::crypto::OVERHEAD } else { plain.len() };
                !guard::too_large_for(t.dest, len)
            });
            switch.count_drops(DropReason::TooLarge, (before - targets.len()) as u64);
        }
        let mut copy: Option<Range<usize>> = None;
        for t in targets.iter().filter(|t| key_of(t).is_none()) {
            let Some((chan, to)) = roles.route(t.dest) else {
                switch.count_drop(DropReason::NoTarget);
                continue;
            };
            // Never a heartbeat or an empty datagram to the group (SPEC 4).
            if t.dest == Dest::Multicast && plain.len() <= HEARTBEAT_MAX {
                switch.count_drop(DropReason::Runt);
                continue;
            }
            let range = copy.get_or_insert_with(|| plan.push_bytes(plain)).clone();
            plan.queue(chan, range, to);
            if kind == Kind::Data {
                switch.count_tx(t.port, frame.len());
            }
        }
        for (k, key) in keys.iter_mut().enumerate() {
            let mine = |t: &&Target| key_of(t) == Some(k);
            if !targets.iter().any(|t| mine(&t)) {
                continue;
            }
            let start = plan.push_frame(frame);
            let entry = plan.entry_mut(start, frame.len());
            let sealed = match key.transport.seal_in_place(entry, HEADROOM, frame.len(), kind, now.unix) {
                Ok(d) => start + d.start..start + d.end,
                Err(e) => {
                    switch.count_drops(DropReason::SendFailed, targets.iter().filter(mine).count() as u64);
                    if let Some(s) = logs.seal.check(now.mono, &mut logs.budget) {
                        warn!("cannot seal a datagram with key {}: {e}{s}", key.fingerprint);
                    }
                    continue;
                }
            };
            for t in targets.iter().filter(mine) {
                match roles.route(t.dest) {
                    Some((chan, to)) => {
                        plan.queue(chan, sealed.clone(), to);
                        if kind == Kind::Data {
                            switch.count_tx(t.port, frame.len());
                        }
                    }
                    None => switch.count_drop(DropReason::NoTarget),
                }
            }
        }
    }
}

/// Whether `decl` is the multicast group's declaration.
fn decl_is_group(group: &Option<Group>, decl: DeclId) -> bool {
    group.is_some_and(|g| g.decl == decl)
}

/// The drop reason counted for a datagram a keyed channel refused.
pub fn open_drop_reason(e: OpenError) -> DropReason {
    match e {
        // A plaintext datagram on a keyed channel is malformed: the same
        // thing as a forgery for whoever counts.
        OpenError::Malformed | OpenError::BadAuth => DropReason::BadAuth,
        OpenError::Replay => DropReason::Replay,
        OpenError::OwnSession => DropReason::OwnSession,
        OpenError::StaleSession => DropReason::StaleSession,
        OpenError::SessionCacheFull => DropReason::SessionCacheFull,
    }
}

#[cfg(test)]
mod tests;
