//! The event loop: one mio `Poll`, the channels, the switch, and the keys.
//!
//! This is the only place that reads the clocks (both once per turn: the
//! monotonic one for the switch, the wall clock in unix seconds for session
//! freshness) and the only place that joins I/O to decisions. Channels are
//! read until they would block, but with a budget per turn so that no
//! channel starves another; a channel left readable is served again without
//! waiting. The poll timeout comes from the switch.
//!
//! # Keyed channels
//!
//! Each distinct key (key files with the same content share one) has one
//! [`Transport`]; a declaration with `=keyfile` names its key. Receiving
//! follows SPEC 5: the source's declaration is found first (an undeclared
//! source is dropped), then the datagram is opened in place, and only an
//! authentic, fresh, unreplayed one may create or refresh a remote
//! ([`Switch::remote_rx`]) and reach the switch, which learns MACs. A
//! remote's identity stays its UDP source address: a datagram from a new
//! address that authenticates is a new remote if a declaration admits that
//! address, exactly as on a plain channel (no roaming of an existing remote).
//!
//! Sending: every frame goes out through `Keys::send_frame`. The plaintext
//! targets come first (the local end and the multicast group are written
//! directly; unkeyed UDP remotes share one copy of the frame in the
//! transmit queue); then, for each key among the targets, the frame is
//! copied into the queue once, sealed there in place, and that one datagram
//! is queued for every remote of the key. So a frame is copied at most once
//! per key, and a flood is sealed once per key, never once per remote.
//!
//! # Batches
//!
//! The UDP socket is read with `recvmmsg` into `-B` receive slots and every
//! UDP datagram we send waits in the transmit queue until the batch that
//! caused it has been switched; then one `sendmmsg` sends them all. The local
//! end and the group are read one frame per system call, up to a budget per
//! turn, and what they cause is sent the same way.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, trace, warn};
use mio::{Events, Poll, Token};

use crate::channel::batch::{RxPool, TxQueue, HEADROOM, TAILROOM};
use crate::channel::mcast::McastChannel;
use crate::channel::stdio::StdioChannel;
use crate::channel::tap::TapChannel;
use crate::channel::udp::UdpChannel;
use crate::channel::{Channel, Rx, Tx, MAX_PAYLOAD};
use crate::config::{Config, LocalEnd};
use crate::crypto::{KeyFingerprint, Kind, MasterKey, OpenError, Transport, HEADER_LEN, TAG_LEN};
use crate::ratelimit::{Every, PerKey};
use crate::remote::{canonical, Declarations};
use crate::switch::{DeclId, Dest, DropReason, Event, Forward, Params, PortId, Switch, Target};

/// Payloads shorter than this on a plain UDP channel are heartbeats.
pub const HEARTBEAT_MAX: usize = 11;
/// What we send as a heartbeat on a plain channel: short and non-empty
/// (SPEC 3: a zero-length datagram stops QEMU's UDP netdevs for good). On a
/// keyed channel a heartbeat is an authenticated empty payload.
pub const HEARTBEAT: &[u8] = b"\0";
/// Receive slots, and the UDP batch, without `-B`.
pub const DEFAULT_BATCH: u16 = 32;
/// Longest wait between looks at the switch's timers.
const TICK_MAX: Duration = Duration::from_secs(1);
/// Packets read from one channel before the others get a turn.
pub const READ_BUDGET: usize = 64;
/// The size of a packet buffer: room for a header before the largest
/// payload and a tag after it, so any frame can be sealed in place.
pub const PACKET_BUF: usize = HEADER_LEN + MAX_PAYLOAD + TAG_LEN;
/// Where channels receive into a packet buffer.
const RX: Range<usize> = HEADER_LEN..HEADER_LEN + MAX_PAYLOAD;

const LOCAL: Token = Token(0);
const UDP: Token = Token(1);
const MCAST: Token = Token(2);

/// A failure that stops the daemon, with what it concerns.
#[derive(Debug)]
pub enum StartError {
    /// The UDP port could not be bound.
    Bind { port: u16, source: io::Error },
    /// stdin/stdout could not be set up.
    Stdio(io::Error),
    /// The tap could not be opened.
    Tap { name: String, source: io::Error },
    /// The multicast group could not be joined or sent to.
    Multicast { group: SocketAddr, source: crate::channel::mcast::McastError },
    /// The local end (a tap) failed while running.
    Local { name: String, source: io::Error },
    /// A key file could not be used.
    Key { path: PathBuf, reason: String },
    /// Something this build does not do yet.
    Unsupported(String),
    /// The event loop failed.
    Poll(io::Error),
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::Bind { port, source } => write!(f, "cannot bind UDP port {port}: {source}"),
            StartError::Stdio(e) => write!(f, "cannot use stdin/stdout as the local channel: {e}"),
            StartError::Tap { name, source } => write!(f, "cannot open tap {name}: {source}"),
            StartError::Multicast { group, source } => write!(f, "cannot use multicast group {group}: {source}"),
            StartError::Local { name, source } => write!(f, "{name} failed: {source}"),
            StartError::Key { path, reason } => write!(f, "key file {}: {reason}", path.display()),
            StartError::Unsupported(what) => f.write_str(what),
            StartError::Poll(e) => write!(f, "event loop failed: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// How the daemon ended, when it ends on its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// stdin reached end of file (or stdout's reader left): status 0.
    LocalClosed,
    /// SIGTERM or SIGINT ([`crate::sys::catch_termination`]): status 0.
    Terminated,
}

/// The wall clock in unix seconds (0 if it is before 1970).
fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs())
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

/// The channels, apart from the switch so that a forwarding decision (which
/// borrows the switch) can be carried out on them.
struct Chans {
    local: Option<Box<dyn Channel>>,
    udp: Option<UdpChannel>,
    mcast: Option<McastChannel>,
    fatal: Option<(String, io::Error)>,
}

impl Chans {
    fn note_fatal(&mut self, name: &str, e: io::Error) {
        if self.fatal.is_none() {
            self.fatal = Some((name.to_owned(), e));
        }
    }

    /// Sends `bytes` to one target that is not a UDP remote: the local end
    /// or the multicast group. A drop reason if it did not go.
    fn send_direct(&mut self, t: &Target, bytes: &[u8]) -> Option<DropReason> {
        let chan: &mut dyn Channel = match t.dest {
            Dest::Local => match self.local.as_deref_mut() {
                Some(c) => c,
                None => return Some(DropReason::NoTarget),
            },
            // Never a heartbeat or an empty datagram to the group (SPEC 4).
            Dest::Multicast if bytes.len() <= HEARTBEAT_MAX => return Some(DropReason::Runt),
            Dest::Multicast => match self.mcast.as_mut() {
                Some(c) => c,
                None => return Some(DropReason::NoTarget),
            },
            Dest::Remote(_) => return Some(DropReason::NoTarget),
        };
        match chan.send(None, bytes) {
            Ok(Tx::Sent) => None,
            Ok(Tx::Busy) => Some(DropReason::SendFailed),
            Ok(Tx::TooLarge) => Some(DropReason::TooLarge),
            Err(e) => {
                let name = chan.name().to_owned();
                self.note_fatal(&name, e);
                Some(DropReason::SendFailed)
            }
        }
    }
}

/// The channels and the queue of UDP datagrams waiting for the next
/// `sendmmsg`: every send of the daemon goes through here.
struct Io {
    chans: Chans,
    txq: TxQueue,
    /// Queued datagrams the kernel did not take, not yet counted.
    unsent: u64,
}

impl Io {
    /// Sends the queued UDP datagrams, in as few system calls as it takes.
    fn flush_udp(&mut self) {
        let Some(udp) = self.chans.udp.as_ref() else { return };
        match self.txq.flush(udp.socket(), |a| udp.wire_addr(a)) {
            Ok((_, failed)) => self.unsent += failed as u64,
            Err(e) => self.chans.note_fatal("udp", e),
        }
    }

    /// Makes room in the queue for `len` bytes and one destination.
    fn room_for(&mut self, len: usize) {
        if !self.txq.has_room(len, 1) {
            self.flush_udp();
        }
    }

    /// Queues the datagram at `range` of the arena for `to`, flushing first
    /// (and keeping the datagram) when the batch is full. Returns where the
    /// datagram is now.
    fn queue_dest(&mut self, range: Range<usize>, to: SocketAddr) -> Range<usize> {
        if self.txq.push_dest(range.clone(), to) {
            return range;
        }
        let Some(udp) = self.chans.udp.as_ref() else { return range };
        let (r, kept) = self.txq.flush_keeping(udp.socket(), |a| udp.wire_addr(a), range);
        match r {
            Ok((_, failed)) => self.unsent += failed as u64,
            Err(e) => self.chans.note_fatal("udp", e),
        }
        self.txq.push_dest(kept.clone(), to);
        kept
    }

    /// Sends `bytes` as they are to every target in `group`: the local end
    /// and the multicast group directly, UDP remotes through the queue, where
    /// the bytes are copied once for all of them.
    fn deliver<'t>(
        &mut self,
        group: impl Iterator<Item = &'t Target>,
        bytes: &[u8],
        failed: &mut [u64; DropReason::COUNT],
    ) {
        let mut queued: Option<Range<usize>> = None;
        for t in group {
            let Dest::Remote(addr) = t.dest else {
                if let Some(r) = self.chans.send_direct(t, bytes) {
                    failed[r as usize] += 1;
                }
                continue;
            };
            if self.chans.udp.is_none() {
                failed[DropReason::NoTarget as usize] += 1;
                continue;
            }
            let range = match queued.take() {
                Some(r) => r,
                None => {
                    self.room_for(bytes.len());
                    self.txq.push_bytes(bytes)
                }
            };
            queued = Some(self.queue_dest(range, addr));
        }
    }
}

/// One distinct key: its transport, and its name for logs.
struct Keyed {
    transport: Transport,
    fingerprint: KeyFingerprint,
}

/// The keys of the keyed channels, which declaration uses which, and the
/// per-key sealing step of the send path.
struct Keys {
    keyed: Vec<Keyed>,
    /// Indexed by [`DeclId`]; the multicast group's declaration is last.
    by_decl: Vec<Option<usize>>,
    seal_log: Every,
}

impl Keys {
    /// Reads each distinct key file once and gives each declaration its key;
    /// `paths` are the declarations' key files, in [`DeclId`] order.
    fn load(paths: &[Option<&PathBuf>], now_unix: u64) -> Result<Keys, StartError> {
        let mut keyed: Vec<Keyed> = Vec::new();
        let mut loaded: Vec<(&PathBuf, usize)> = Vec::new();
        let mut by_decl = Vec::with_capacity(paths.len());
        for path in paths {
            let Some(path) = *path else {
                by_decl.push(None);
                continue;
            };
            if let Some(&(_, k)) = loaded.iter().find(|(p, _)| *p == path) {
                by_decl.push(Some(k));
                continue;
            }
            let key = MasterKey::load(path)
                .map_err(|e| StartError::Key { path: path.clone(), reason: e.problem.to_string() })?;
            if let Some(w) = &key.warning {
                warn!("{w}");
            }
            let fingerprint = key.key.fingerprint();
            // Files with the same content are one key: one seal per flood.
            let k = match keyed.iter().position(|k| k.fingerprint == fingerprint) {
                Some(k) => k,
                None => {
                    let transport = Transport::new(&key.key, now_unix).map_err(|e| StartError::Key {
                        path: path.clone(),
                        reason: format!("cannot start a session: {e}"),
                    })?;
                    keyed.push(Keyed { transport, fingerprint });
                    keyed.len() - 1
                }
            };
            info!("key file {}: key {fingerprint}", path.display());
            loaded.push((path, k));
            by_decl.push(Some(k));
        }
        Ok(Keys { keyed, by_decl, seal_log: Every::new(Duration::from_secs(10)) })
    }

    /// The key of a declaration, if it has one.
    fn of_decl(&self, decl: DeclId) -> Option<usize> {
        self.by_decl.get(decl as usize).copied().flatten()
    }

    /// The key's name, for logs.
    fn name(&self, k: usize) -> String {
        self.keyed.get(k).map_or_else(String::new, |k| format!("key {}", k.fingerprint))
    }

    /// Sends `frame` to every target: as it is to the plaintext ones (the
    /// local end, unkeyed remotes), then sealed once per key, the same
    /// datagram to every target of that key. The seal happens in the
    /// transmit queue, where the frame is copied once per key.
    /// Counts a drop reason in `failed` for each target it did not reach.
    fn send_frame(
        &mut self,
        io: &mut Io,
        targets: &[Target],
        frame: &[u8],
        kind: Kind,
        now: Now,
        failed: &mut [u64; DropReason::COUNT],
    ) {
        let Keys { keyed, by_decl, seal_log } = self;
        // Plain heartbeats are the short datagram, not an empty frame.
        let plain_bytes = if kind == Kind::Heartbeat { HEARTBEAT } else { frame };
        io.deliver(targets.iter().filter(|t| key_of(by_decl, t).is_none()), plain_bytes, failed);
        for (k, key) in keyed.iter_mut().enumerate() {
            let mine = |t: &&Target| key_of(by_decl, t) == Some(k);
            if !targets.iter().any(|t| mine(&t)) {
                continue;
            }
            io.room_for(HEADROOM + frame.len() + TAILROOM);
            let start = io.txq.push_frame(frame);
            let entry = io.txq.entry_mut(start, frame.len());
            let datagram = match key.transport.seal_in_place(entry, HEADROOM, frame.len(), kind, now.unix) {
                Ok(d) => d,
                Err(e) => {
                    failed[DropReason::SendFailed as usize] += targets.iter().filter(mine).count() as u64;
                    if let Some(more) = seal_log.allow(now.mono) {
                        warn!("cannot seal a datagram with key {}: {e} ({more} more not logged)", key.fingerprint);
                    }
                    continue;
                }
            };
            let mut range = start + datagram.start..start + datagram.end;
            for t in targets.iter().filter(mine) {
                match t.dest {
                    Dest::Remote(addr) => range = io.queue_dest(range, addr),
                    _ => {
                        if let Some(r) = io.chans.send_direct(t, io.txq.bytes(range.clone())) {
                            failed[r as usize] += 1;
                        }
                    }
                }
            }
        }
    }
}

/// The key a target's datagrams are sealed with, if any: its declaration's.
fn key_of(by_decl: &[Option<usize>], t: &Target) -> Option<usize> {
    t.decl.and_then(|d| by_decl.get(d as usize).copied().flatten())
}

/// The time of one turn of the loop: both clocks, read together.
#[derive(Clone, Copy, Debug)]
struct Now {
    /// For the switch's timers.
    mono: Instant,
    /// Unix seconds, for the freshness of keyed sessions.
    unix: u64,
}

impl Now {
    fn read() -> Now {
        Now { mono: Instant::now(), unix: unix_now() }
    }
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

/// The running daemon: the event loop's state, the receive buffers, and the
/// [`Core`] that decides and sends.
pub struct Daemon {
    poll: Poll,
    core: Core,
    /// Receive slots for batched UDP reads (`-B` of them).
    pool: RxPool,
    /// The buffer the local end and the multicast group are read into, at
    /// [`RX`].
    buf: Box<[u8]>,
    local_ready: bool,
}

/// Everything a packet meets after it was read: the switch, the keys, the
/// channels to send on.
struct Core {
    switch: Switch,
    decls: Declarations,
    io: Io,
    keys: Keys,
    local_port: Option<PortId>,
    mcast_port: Option<PortId>,
    mcast_decl: DeclId,
    /// The targets of the frame being sent, copied out of the switch's
    /// decision; its capacity grows with the number of ports, never per frame.
    targets: Vec<Target>,
    unknown_log: PerKey<std::net::IpAddr>,
    auth_log: Every,
    drop_log: Every,
}

impl Daemon {
    /// Reads the key files and opens every channel the configuration names.
    pub fn new(cfg: &Config, now: Instant) -> Result<Daemon, StartError> {
        let poll = Poll::new().map_err(StartError::Poll)?;
        let decls = Declarations::new(cfg.remotes.clone());
        // The multicast group's declaration comes after the remote ones; it
        // has no ignore list.
        let mcast_decl = DeclId::try_from(cfg.remotes.len())
            .map_err(|_| StartError::Unsupported(format!("too many remote declarations (at most {})", DeclId::MAX)))?;
        let key_paths: Vec<Option<&PathBuf>> = cfg
            .remotes
            .iter()
            .map(|r| r.key.as_ref())
            .chain(std::iter::once(cfg.multicast.as_ref().and_then(|m| m.key.as_ref())))
            .collect();
        // Before any socket: a key file that cannot be used stops us here,
        // and nothing ever runs in plaintext instead.
        let keys = Keys::load(&key_paths, unix_now())?;
        let mut ignore: Vec<_> = cfg.remotes.iter().map(|r| r.ignore.clone()).collect();
        ignore.push(Vec::new());
        let params = Params { ignore, ..Params::default() };
        let mut switch = Switch::new(params);

        let udp = match cfg.port {
            Some(port) => {
                let mut u =
                    UdpChannel::bind(port, cfg.ipv4_only).map_err(|source| StartError::Bind { port, source })?;
                u.register(poll.registry(), UDP).map_err(StartError::Poll)?;
                info!("listening on UDP {}", u.local_addr().map_err(StartError::Poll)?);
                Some(u)
            }
            None => None,
        };
        let mut local: Option<Box<dyn Channel>> = match &cfg.local {
            LocalEnd::None => {
                hint_if_stdin_is_a_pipe();
                None
            }
            LocalEnd::Stdio => Some(Box::new(StdioChannel::open().map_err(StartError::Stdio)?)),
            LocalEnd::Tap(name) => {
                let tap = TapChannel::open(name).map_err(|source| StartError::Tap { name: name.clone(), source })?;
                // The manual: with a tap, stdin and stdout are closed (stderr stays).
                crate::sys::close_stdin_stdout().map_err(StartError::Stdio)?;
                Some(Box::new(tap))
            }
        };
        let local_port = match local.as_mut() {
            Some(c) => {
                c.register(poll.registry(), LOCAL).map_err(StartError::Poll)?;
                info!("local end: {}", c.name());
                Some(switch.add_local(now))
            }
            None => {
                info!("no local end: switching among remotes only");
                None
            }
        };
        let keyed = |decl: DeclId| keys.of_decl(decl).map_or_else(String::new, |k| format!(" ({})", keys.name(k)));
        let (mcast, mcast_port) = match &cfg.multicast {
            Some(m) => {
                let mut c = McastChannel::open(m.group, m.port)
                    .map_err(|source| StartError::Multicast { group: m.addr(), source })?;
                c.register(poll.registry(), MCAST).map_err(StartError::Poll)?;
                info!("multicast channel {} (sending from {}){}", c.group(), c.own_addr(), keyed(mcast_decl));
                (Some(c), switch.add_multicast(now, mcast_decl))
            }
            None => (None, None),
        };
        for (id, spec) in decls.iter() {
            match spec.uplink_addr() {
                Some(addr) => {
                    if switch.add_uplink(now, addr, id).is_none() {
                        warn!("uplink {spec} not added: declared twice, or too many remotes");
                    } else {
                        info!("uplink {spec}{}", keyed(id));
                    }
                }
                None => info!("downlink mask {spec}{}", keyed(id)),
            }
        }
        let batch = usize::from(cfg.buffers.unwrap_or(DEFAULT_BATCH));
        debug!("receive batch and buffer pool: {batch} slots");
        Ok(Daemon {
            poll,
            core: Core {
                switch,
                decls,
                io: Io {
                    chans: Chans { local, udp, mcast, fatal: None },
                    txq: TxQueue::new((batch * 4096).max(256 << 10), (batch * 4).max(64)),
                    unsent: 0,
                },
                keys,
                local_port,
                mcast_port,
                mcast_decl,
                targets: Vec::with_capacity(64),
                unknown_log: PerKey::new(Duration::from_secs(60), 1024),
                auth_log: Every::new(Duration::from_secs(10)),
                drop_log: Every::new(Duration::from_secs(10)),
            },
            pool: RxPool::new(batch),
            buf: vec![0u8; PACKET_BUF].into_boxed_slice(),
            local_ready: false,
        })
    }

    /// The bound UDP address, if any.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.core.io.chans.udp.as_ref().and_then(|u| u.local_addr().ok())
    }

    /// The switch, for inspection.
    pub fn switch(&self) -> &Switch {
        &self.core.switch
    }

    /// Runs until the local end closes, a signal ends it, or a channel fails.
    pub fn run(&mut self) -> Result<Exit, StartError> {
        let mut events = Events::with_capacity(64);
        let chans = &self.core.io.chans;
        let mut ready_local = chans.local.is_some();
        let mut ready_udp = chans.udp.is_some();
        let mut ready_mcast = chans.mcast.is_some();
        let mut next_tick = Instant::now();
        loop {
            if crate::sys::termination_requested() {
                info!("terminated by a signal; exiting");
                return Ok(Exit::Terminated);
            }
            let now = Now::read();
            self.core.log_events();
            if now.mono >= next_tick {
                self.core.tick(now);
                // Timers are looked at when the switch says one is due, and at
                // least every TICK_MAX, so a deadline that appears between
                // ticks (a new downlink's staleness) is never late by more.
                let max = now.mono + TICK_MAX;
                next_tick = self.core.switch.poll_timeout().map_or(max, |t| t.min(max));
            }
            let timeout = if ready_local || ready_udp || ready_mcast {
                Some(Duration::ZERO)
            } else {
                Some(next_tick.saturating_duration_since(now.mono))
            };
            match self.poll.poll(&mut events, timeout) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(StartError::Poll(e)),
            }
            for ev in events.iter() {
                match ev.token() {
                    LOCAL => {
                        // An error event (a deleted tap shows as EPOLLERR
                        // alone) is served as a read, which reports it.
                        if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                            ready_local = true;
                        }
                        if ev.is_writable() || ev.is_write_closed() {
                            if let Some(c) = self.core.io.chans.local.as_mut() {
                                if let Err(e) = c.flush() {
                                    return self.core.local_failed(e);
                                }
                            }
                        }
                    }
                    UDP => ready_udp = true,
                    MCAST => ready_mcast = true,
                    _ => {}
                }
            }
            let now = Now::read();
            if ready_udp {
                ready_udp = self.serve_udp(now)?;
            }
            if ready_mcast {
                ready_mcast = self.serve_mcast(now)?;
            }
            if ready_local {
                match self.serve_local(now)? {
                    Some(exit) => return Ok(exit),
                    None => ready_local = self.local_ready,
                }
            }
            if let Some((name, e)) = self.core.io.chans.fatal.take() {
                if self.core.io.chans.local.as_ref().is_some_and(|l| l.name() == name) {
                    return self.core.local_failed(e);
                }
                return Err(StartError::Poll(io::Error::new(e.kind(), format!("{name}: {e}"))));
            }
        }
    }

    /// Reads one batch from the UDP socket (one `recvmmsg`), switches it,
    /// and sends what it caused. True if the socket may have more.
    fn serve_udp(&mut self, now: Now) -> Result<bool, StartError> {
        let Some(udp) = self.core.io.chans.udp.as_ref() else { return Ok(false) };
        let n = self
            .pool
            .recv_from(udp.socket())
            .map_err(|e| StartError::Poll(io::Error::new(e.kind(), format!("udp receive: {e}"))))?;
        for i in 0..n {
            let m = self.pool.meta(i);
            let Some(from) = m.from.map(canonical) else { continue };
            if m.len > MAX_PAYLOAD {
                self.core.switch.count_drop(DropReason::TooLarge);
                continue;
            }
            // A slot holds one datagram, or with UDP_GRO a run of them from
            // one peer, each `segment` bytes but the last.
            let segment = if m.segment == 0 { m.len } else { m.segment };
            let mut at = 0;
            loop {
                let end = (at + segment).min(m.len);
                self.serve_datagram(now, from, i, HEADROOM + at..HEADROOM + end);
                at = end;
                if at >= m.len {
                    break;
                }
            }
        }
        self.core.flush(now);
        Ok(n == self.pool.slots())
    }

    /// Admits one UDP datagram, at `range` of receive slot `slot`, and
    /// switches it.
    fn serve_datagram(&mut self, now: Now, from: SocketAddr, slot: usize, range: Range<usize>) {
        let core = &mut self.core;
        let Some(decl) = core.declaration_of(from, now) else { return };
        let buf = self.pool.slot_mut(slot);
        let admitted = core.admit(now, from, decl, buf, range);
        if matches!(admitted, Admit::Dropped) {
            return;
        }
        // Only now, authentic if keyed: the remote is created or refreshed.
        let Ok(port) = core.switch.remote_rx(now.mono, from, decl) else { return };
        match admitted {
            Admit::Frame(frame) => core.forward(now, port, &buf[frame]),
            Admit::Heartbeat => trace!("heartbeat from {from}"),
            Admit::Dropped => {}
        }
    }

    /// Reads up to the budget from the multicast group. True if it may have
    /// more. Everything heard on the group is from the one multicast remote.
    fn serve_mcast(&mut self, now: Now) -> Result<bool, StartError> {
        let mut more = true;
        for _ in 0..READ_BUDGET {
            let core = &mut self.core;
            let (Some(mcast), Some(port)) = (core.io.chans.mcast.as_mut(), core.mcast_port) else { return Ok(false) };
            let (len, from) = match mcast.recv(&mut self.buf[RX]) {
                Ok(Rx::Packet { len, from: Some(from) }) => (len, from),
                Ok(Rx::Packet { from: None, .. }) => continue,
                Ok(Rx::Idle) | Ok(Rx::Closed) => {
                    more = false;
                    break;
                }
                Err(e) => {
                    return Err(StartError::Poll(io::Error::new(e.kind(), format!("multicast receive: {e}"))));
                }
            };
            if mcast.is_own(from) {
                core.switch.count_drop(DropReason::OwnMulticast);
                continue;
            }
            let keyed = core.keys.of_decl(core.mcast_decl).is_some();
            match core.admit(now, from, core.mcast_decl, &mut self.buf, RX.start..RX.start + len) {
                Admit::Dropped => {}
                Admit::Heartbeat if keyed => core.switch.port_rx(now.mono, port),
                // Not a frame, and the plain group has no heartbeats.
                Admit::Heartbeat => {
                    core.switch.count_drop(DropReason::Runt);
                    trace!("dropped a {len}-byte datagram from {from} on the multicast group");
                }
                Admit::Frame(frame) => {
                    core.switch.port_rx(now.mono, port);
                    core.forward(now, port, &self.buf[frame]);
                }
            }
        }
        self.core.flush(now);
        Ok(more)
    }

    /// Reads up to the budget from the local end. `Some` when it closed.
    fn serve_local(&mut self, now: Now) -> Result<Option<Exit>, StartError> {
        self.local_ready = true;
        for _ in 0..READ_BUDGET {
            let core = &mut self.core;
            let (Some(local), Some(port)) = (core.io.chans.local.as_mut(), core.local_port) else { break };
            match local.recv(&mut self.buf[RX]) {
                Ok(Rx::Packet { len, .. }) => core.forward(now, port, &self.buf[RX.start..RX.start + len]),
                Ok(Rx::Idle) => {
                    self.local_ready = false;
                    break;
                }
                Ok(Rx::Closed) => {
                    self.core.flush(now);
                    info!("local end closed; exiting");
                    return Ok(Some(Exit::LocalClosed));
                }
                Err(e) => return Err(core.local_error(e)),
            }
        }
        self.core.flush(now);
        Ok(None)
    }

    /// Logs the statistics and flushes queued output, at exit.
    pub fn finish(&mut self) {
        self.core.finish();
    }
}

impl Core {
    /// The error for a failure of the local end, naming it.
    fn local_error(&self, e: io::Error) -> StartError {
        match self.io.chans.local.as_ref().map(|l| l.name()) {
            Some(name) if name != "stdio" => StartError::Local { name: name.to_owned(), source: e },
            _ => StartError::Stdio(e),
        }
    }

    fn local_failed(&mut self, e: io::Error) -> Result<Exit, StartError> {
        match self.local_error(e) {
            StartError::Stdio(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                info!("stdout closed by its reader; exiting");
                Ok(Exit::LocalClosed)
            }
            err => Err(err),
        }
    }

    /// Logs what happened to the set of remotes.
    fn log_events(&mut self) {
        while let Some(ev) = self.switch.poll_event() {
            match ev {
                Event::RemoteUp(a) => debug!("remote {a} connected"),
                Event::RemoteStale(a) => debug!("remote {a} is stale; removed"),
            }
        }
    }

    /// Timers: heartbeats and stale downlinks.
    fn tick(&mut self, now: Now) {
        self.switch.handle_timeout(now.mono);
        let mut failed = [0u64; DropReason::COUNT];
        while let Some(t) = self.switch.poll_heartbeat(now.mono) {
            trace!("heartbeat to {}", t.dest);
            self.keys.send_frame(&mut self.io, std::slice::from_ref(&t), &[], Kind::Heartbeat, now, &mut failed);
        }
        self.count_failed(now, 0, &failed);
        self.flush(now);
    }

    /// Sends the queued UDP datagrams and counts those that did not go.
    fn flush(&mut self, now: Now) {
        self.io.flush_udp();
        let unsent = std::mem::take(&mut self.io.unsent);
        if unsent > 0 {
            let mut failed = [0u64; DropReason::COUNT];
            failed[DropReason::SendFailed as usize] = unsent;
            self.count_failed(now, 0, &failed);
        }
    }

    /// The declaration a UDP source falls under: its remote's, or the best
    /// matching one. `None` (counted, logged rate-limited) when none does.
    fn declaration_of(&mut self, from: SocketAddr, now: Now) -> Option<DeclId> {
        if let Some((_, Some(d))) = self.switch.lookup(&from) {
            return Some(d);
        }
        if let Some(d) = self.decls.match_source(from) {
            return Some(d);
        }
        self.switch.count_drop(DropReason::UnknownSource);
        if let Some(more) = self.unknown_log.allow(from.ip(), now.mono) {
            debug!("dropped a datagram from undeclared source {from} ({more} other drops not logged)");
        }
        None
    }

    /// Decides what the datagram at `buf[datagram]` from `from` under
    /// declaration `decl` is. On a keyed channel it is opened in place;
    /// whatever fails is counted and changes nothing.
    fn admit(&mut self, now: Now, from: SocketAddr, decl: DeclId, buf: &mut [u8], datagram: Range<usize>) -> Admit {
        let len = datagram.len();
        let Some(k) = self.keys.of_decl(decl) else {
            return if len <= HEARTBEAT_MAX { Admit::Heartbeat } else { Admit::Frame(datagram) };
        };
        let key = &mut self.keys.keyed[k];
        let opened = match key.transport.open_in_place(&mut buf[datagram.clone()], now.unix) {
            Ok(o) => o,
            Err(e) => {
                self.switch.count_drop(open_drop_reason(e));
                if let Some(more) = self.auth_log.allow(now.mono) {
                    debug!("dropped a {len}-byte datagram from {from}: {e} ({more} more keyed drops not logged)");
                }
                return Admit::Dropped;
            }
        };
        if opened.new_session {
            debug!("{from}: new session {} of key {}", opened.session, key.fingerprint);
            match key.transport.peer_session(opened.start, now.unix) {
                Ok(true) => debug!(
                    "renewed our session of key {} so that {from} (clock {}s from ours) accepts it",
                    key.fingerprint,
                    opened.start as i128 - now.unix as i128
                ),
                Ok(false) => {}
                Err(e) => warn!("cannot renew our session of key {}: {e}", key.fingerprint),
            }
        }
        match opened.kind {
            Kind::Heartbeat => Admit::Heartbeat,
            Kind::Data => Admit::Frame(datagram.start + opened.payload.start..datagram.start + opened.payload.end),
        }
    }

    /// Switches `frame`, which came in on `ingress`, and sends it (or queues
    /// it) where the switch says.
    fn forward(&mut self, now: Now, ingress: PortId, frame: &[u8]) {
        self.targets.clear();
        match self.switch.handle_frame(now.mono, ingress, frame) {
            Forward::Drop(r) => {
                trace!("drop {} from port {}: {}", frame.len(), ingress.0, r.name());
                return;
            }
            Forward::Unicast(t) => self.targets.push(t),
            Forward::Flood(targets) => self.targets.extend_from_slice(targets),
        }
        let mut failed = [0u64; DropReason::COUNT];
        self.keys.send_frame(&mut self.io, &self.targets, frame, Kind::Data, now, &mut failed);
        self.count_failed(now, frame.len(), &failed);
    }

    /// Counts sends that did not happen, and logs them rate-limited.
    fn count_failed(&mut self, now: Now, len: usize, failed: &[u64; DropReason::COUNT]) {
        for r in DropReason::ALL {
            let n = failed[r as usize];
            if n == 0 {
                continue;
            }
            for _ in 0..n {
                self.switch.count_drop(r);
            }
            if let Some(more) = self.drop_log.allow(now.mono) {
                debug!("could not send a {len}-byte frame: {} ({more} more not logged)", r.name());
            }
        }
    }

    /// Logs the statistics and flushes queued output.
    fn finish(&mut self) {
        self.flush(Now::read());
        self.log_events();
        let s = self.switch.stats();
        let drops: Vec<String> = DropReason::ALL
            .iter()
            .filter(|r| s.dropped(**r) > 0)
            .map(|r| format!("{} {}", r.name(), s.dropped(*r)))
            .collect();
        info!(
            "frames in {}, unicast {}, flooded {}, macs {}, drops: {}",
            s.frames_in,
            s.unicast,
            s.flooded,
            self.switch.mac_count(),
            if drops.is_empty() { "none".to_owned() } else { drops.join(", ") }
        );
        if let Some(local) = self.io.chans.local.as_mut() {
            let deadline = Instant::now() + Duration::from_secs(2);
            while local.has_backlog() && Instant::now() < deadline {
                if local.flush().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

fn hint_if_stdin_is_a_pipe() {
    use std::os::fd::AsFd;
    use std::os::unix::fs::FileTypeExt;
    let Ok(fd) = io::stdin().as_fd().try_clone_to_owned() else { return };
    if let Ok(m) = std::fs::File::from(fd).metadata() {
        if m.file_type().is_fifo() || m.file_type().is_socket() {
            info!(
                "stdin is a pipe but no -t was given: stdin is not used; '-t -' makes stdin/stdout the local channel"
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::{Header, Opener, Transport, OVERHEAD};
    use allocation_counter::measure;
    use std::net::UdpSocket;
    use std::os::unix::fs::PermissionsExt;

    /// A key file in a scratch directory, removed with it.
    struct KeyFiles(PathBuf);

    impl KeyFiles {
        fn new(tag: &str) -> KeyFiles {
            let dir = std::env::temp_dir().join(format!("rrqnet-daemon-{tag}-{}", std::process::id()));
            std::fs::create_dir_all(&dir).unwrap();
            KeyFiles(dir)
        }

        fn key(&self, name: &str, byte: u8) -> PathBuf {
            let path = self.0.join(name);
            std::fs::write(&path, [byte; 64]).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
            path
        }
    }

    impl Drop for KeyFiles {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    /// A flood to two remotes of one key (two files, same content), one of
    /// another key and a plain one: one seal per key, the same datagram to
    /// both remotes of the first key, the frame to the plain one, and no
    /// allocation once warmed up.
    #[test]
    fn a_flood_seals_once_per_key_and_allocates_nothing() {
        let files = KeyFiles::new("flood");
        let (k1, k1b, k2) = (files.key("k1", 1), files.key("k1b", 1), files.key("k2", 2));
        let now = Now::read();
        let paths = [Some(&k1), Some(&k1b), Some(&k2), None];
        let mut keys = Keys::load(&paths, now.unix).unwrap();
        assert_eq!(keys.keyed.len(), 2, "two files with one content are one key");
        let peers: Vec<UdpSocket> = (0..4).map(|_| UdpSocket::bind("127.0.0.1:0").unwrap()).collect();
        for p in &peers {
            p.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
        }
        let targets: Vec<Target> = peers
            .iter()
            .enumerate()
            .map(|(i, p)| Target {
                port: PortId(i as u32),
                dest: Dest::Remote(p.local_addr().unwrap()),
                decl: Some(i as DeclId),
            })
            .collect();
        let udp = UdpChannel::bind(0, true).unwrap();
        let mut io = Io {
            chans: Chans { local: None, udp: Some(udp), mcast: None, fatal: None },
            txq: TxQueue::new(256 << 10, 64),
            unsent: 0,
        };
        let frame: Vec<u8> = (0..1000u32).map(|i| (i * 13) as u8).collect();
        let mut failed = [0u64; DropReason::COUNT];
        let send = |keys: &mut Keys, io: &mut Io, failed: &mut [u64; DropReason::COUNT]| {
            keys.send_frame(io, &targets, &frame, Kind::Data, now, failed);
            io.flush_udp();
        };
        send(&mut keys, &mut io, &mut failed);
        let info = measure(|| {
            for _ in 0..50 {
                send(&mut keys, &mut io, &mut failed);
            }
        });
        assert_eq!(info.count_total, 0, "the keyed send path allocated: {info:?}");
        assert_eq!(failed, [0; DropReason::COUNT]);
        assert_eq!(io.unsent, 0);

        let recv = |i: usize| {
            let mut d = vec![0u8; 2048];
            let n = peers[i].recv(&mut d).unwrap();
            d.truncate(n);
            d
        };
        let key = |path: &PathBuf| MasterKey::load(path).unwrap().key;
        let mut rx1 = Transport::from_parts(
            crate::crypto::Sealer::new(&key(&k1), now.unix, Default::default()).unwrap(),
            Opener::new(&key(&k1), 16),
        );
        let mut rx2 = Transport::new(&key(&k2), now.unix).unwrap();
        for n in 0..51u64 {
            let (a, b, c, d) = (recv(0), recv(1), recv(2), recv(3));
            assert_eq!(a, b, "datagram {n}: one seal for both remotes of key 1");
            assert_eq!(d, frame, "datagram {n}: the plain remote gets the frame");
            assert_eq!((Header::parse(&a).unwrap().counter, Header::parse(&c).unwrap().counter), (n, n));
            let mut a = a;
            let o = rx1.open_in_place(&mut a, now.unix).unwrap();
            assert_eq!(a[o.payload], frame[..]);
            let mut c = c;
            let o = rx2.open_in_place(&mut c, now.unix).unwrap();
            assert_eq!(c[o.payload], frame[..]);
        }
    }

    /// Opening datagrams of a known session, in place, allocates nothing
    /// (the first of a session does: it is remembered).
    #[test]
    fn opening_a_known_session_allocates_nothing() {
        let key = MasterKey::from_bytes(&[3; 32]).unwrap();
        let mut tx = Transport::new(&key, 1_700_000_000).unwrap();
        let mut rx = Transport::new(&key, 1_700_000_000).unwrap();
        let mut datagrams: Vec<Vec<u8>> = (0..20)
            .map(|i| {
                let mut d = vec![i as u8; OVERHEAD + 100];
                tx.seal_in_place(&mut d, HEADER_LEN, 100, Kind::Data, 1_700_000_000).unwrap();
                d
            })
            .collect();
        assert!(rx.open_in_place(&mut datagrams[0], 1_700_000_000).unwrap().new_session);
        let info = measure(|| {
            for d in &mut datagrams[1..] {
                assert!(!rx.open_in_place(d, 1_700_000_000).unwrap().new_session);
            }
        });
        assert_eq!(info.count_total, 0, "opening allocated: {info:?}");
    }
}
