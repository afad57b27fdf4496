//! The event loop: one mio `Poll`, the channels, and the switch.
//!
//! This is the only place that reads the clock (once per turn) and the only
//! place that joins I/O to decisions. Channels are read until they would
//! block, but with a budget per turn so that no channel starves another;
//! a channel left readable is served again without waiting. The poll timeout
//! comes from the switch.

use std::fmt;
use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use log::{debug, info, trace, warn};
use mio::{Events, Poll, Token};

use crate::channel::mcast::McastChannel;
use crate::channel::stdio::StdioChannel;
use crate::channel::tap::TapChannel;
use crate::channel::udp::UdpChannel;
use crate::channel::{Channel, Rx, Tx, MAX_PAYLOAD};
use crate::config::{Config, LocalEnd};
use crate::ratelimit::{Every, PerKey};
use crate::remote::Declarations;
use crate::switch::{DeclId, Dest, DropReason, Event, Forward, Params, PortId, Switch, Target};

/// Payloads shorter than this on a plain UDP channel are heartbeats.
pub const HEARTBEAT_MAX: usize = 11;
/// What we send as a heartbeat: short and non-empty (SPEC 3: a zero-length
/// datagram stops QEMU's UDP netdevs for good).
pub const HEARTBEAT: &[u8] = b"\0";
/// Longest wait between looks at the switch's timers.
const TICK_MAX: Duration = Duration::from_secs(1);
/// Packets read from one channel before the others get a turn.
pub const READ_BUDGET: usize = 64;

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
}

/// The channels, apart from the switch so that a forwarding decision (which
/// borrows the switch) can be carried out on them.
struct Io {
    local: Option<Box<dyn Channel>>,
    udp: Option<UdpChannel>,
    mcast: Option<McastChannel>,
    fatal: Option<(String, io::Error)>,
}

impl Io {
    /// Sends one frame to one target; a drop reason if it did not go.
    fn deliver(&mut self, t: &Target, frame: &[u8]) -> Option<DropReason> {
        let (chan, to): (&mut dyn Channel, Option<SocketAddr>) = match t.dest {
            Dest::Local => match self.local.as_deref_mut() {
                Some(c) => (c, None),
                None => return Some(DropReason::NoTarget),
            },
            Dest::Remote(addr) => match self.udp.as_mut() {
                Some(c) => (c, Some(addr)),
                None => return Some(DropReason::NoTarget),
            },
            // Never a heartbeat or an empty datagram to the group (SPEC 4).
            Dest::Multicast if frame.len() <= HEARTBEAT_MAX => return Some(DropReason::Runt),
            Dest::Multicast => match self.mcast.as_mut() {
                Some(c) => (c, None),
                None => return Some(DropReason::NoTarget),
            },
        };
        match chan.send(to, frame) {
            Ok(Tx::Sent) => None,
            Ok(Tx::Busy) => Some(DropReason::SendFailed),
            Ok(Tx::TooLarge) => Some(DropReason::TooLarge),
            Err(e) => {
                if self.fatal.is_none() {
                    self.fatal = Some((chan.name().to_owned(), e));
                }
                Some(DropReason::SendFailed)
            }
        }
    }
}

/// The running daemon.
pub struct Daemon {
    poll: Poll,
    switch: Switch,
    decls: Declarations,
    io: Io,
    local_port: Option<PortId>,
    mcast_port: Option<PortId>,
    local_ready: bool,
    buf: Box<[u8]>,
    unknown_log: PerKey<std::net::IpAddr>,
    drop_log: Every,
}

impl Daemon {
    /// Opens every channel the configuration names.
    pub fn new(cfg: &Config, now: Instant) -> Result<Daemon, StartError> {
        if cfg.remotes.iter().any(|r| r.key.is_some()) {
            return Err(StartError::Unsupported(
                "transport encryption (=keyfile) is not available in this build yet; refusing to run a keyed channel in plaintext".into(),
            ));
        }
        if let Some(m) = cfg.multicast.as_ref().filter(|m| m.key.is_some()) {
            return Err(StartError::Unsupported(format!(
                "-m {}: transport encryption (=keyfile) on the multicast channel is not available in this build yet; refusing to run it in plaintext",
                m.addr()
            )));
        }
        let poll = Poll::new().map_err(StartError::Poll)?;
        let decls = Declarations::new(cfg.remotes.clone());
        // The multicast group's declaration comes after the remote ones; it
        // has no ignore list.
        let mcast_decl = DeclId::try_from(cfg.remotes.len())
            .map_err(|_| StartError::Unsupported(format!("too many remote declarations (at most {})", DeclId::MAX)))?;
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
        let (mcast, mcast_port) = match &cfg.multicast {
            Some(m) => {
                let mut c = McastChannel::open(m.group, m.port)
                    .map_err(|source| StartError::Multicast { group: m.addr(), source })?;
                c.register(poll.registry(), MCAST).map_err(StartError::Poll)?;
                info!("multicast channel {} (sending from {})", c.group(), c.own_addr());
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
                        info!("uplink {spec}");
                    }
                }
                None => info!("downlink mask {spec}"),
            }
        }
        Ok(Daemon {
            poll,
            switch,
            decls,
            io: Io { local, udp, mcast, fatal: None },
            local_port,
            mcast_port,
            local_ready: false,
            buf: vec![0u8; MAX_PAYLOAD].into_boxed_slice(),
            unknown_log: PerKey::new(Duration::from_secs(60), 1024),
            drop_log: Every::new(Duration::from_secs(10)),
        })
    }

    /// The bound UDP address, if any.
    pub fn udp_addr(&self) -> Option<SocketAddr> {
        self.io.udp.as_ref().and_then(|u| u.local_addr().ok())
    }

    /// The switch, for inspection.
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Runs until the local end closes or a channel fails.
    pub fn run(&mut self) -> Result<Exit, StartError> {
        let mut events = Events::with_capacity(64);
        let mut ready_local = self.io.local.is_some();
        let mut ready_udp = self.io.udp.is_some();
        let mut ready_mcast = self.io.mcast.is_some();
        let mut next_tick = Instant::now();
        loop {
            let now = Instant::now();
            self.log_events();
            if now >= next_tick {
                self.tick(now);
                // Timers are looked at when the switch says one is due, and at
                // least every TICK_MAX, so a deadline that appears between
                // ticks (a new downlink's staleness) is never late by more.
                next_tick = self.switch.poll_timeout().map_or(now + TICK_MAX, |t| t.min(now + TICK_MAX));
            }
            let timeout = if ready_local || ready_udp || ready_mcast {
                Some(Duration::ZERO)
            } else {
                Some(next_tick.saturating_duration_since(now))
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
                            if let Some(c) = self.io.local.as_mut() {
                                if let Err(e) = c.flush() {
                                    return self.local_failed(e);
                                }
                            }
                        }
                    }
                    UDP => ready_udp = true,
                    MCAST => ready_mcast = true,
                    _ => {}
                }
            }
            let now = Instant::now();
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
            if let Some((name, e)) = self.io.fatal.take() {
                if self.io.local.as_ref().is_some_and(|l| l.name() == name) {
                    return self.local_failed(e);
                }
                return Err(StartError::Poll(io::Error::new(e.kind(), format!("{name}: {e}"))));
            }
        }
    }

    /// The error for a failure of the local end, naming it.
    fn local_error(&self, e: io::Error) -> StartError {
        match self.io.local.as_ref().map(|l| l.name()) {
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
    fn tick(&mut self, now: Instant) {
        self.switch.handle_timeout(now);
        while let Some(t) = self.switch.poll_heartbeat(now) {
            trace!("heartbeat to {}", t.dest);
            if let Some(r) = self.io.deliver(&t, HEARTBEAT) {
                self.switch.count_drop(r);
            }
        }
    }

    /// Reads up to the budget from the UDP socket. True if it may have more.
    fn serve_udp(&mut self, now: Instant) -> Result<bool, StartError> {
        for _ in 0..READ_BUDGET {
            let Some(udp) = self.io.udp.as_mut() else { return Ok(false) };
            let (len, from) = match udp.recv(&mut self.buf) {
                Ok(Rx::Packet { len, from: Some(from) }) => (len, from),
                Ok(Rx::Packet { from: None, .. }) => continue,
                Ok(Rx::Idle) | Ok(Rx::Closed) => return Ok(false),
                Err(e) => return Err(StartError::Poll(io::Error::new(e.kind(), format!("udp receive: {e}")))),
            };
            let decl = match self.switch.lookup(&from) {
                Some((_, Some(d))) => d,
                _ => match self.decls.match_source(from) {
                    Some(d) => d,
                    None => {
                        self.switch.count_drop(DropReason::UnknownSource);
                        if let Some(more) = self.unknown_log.allow(from.ip(), now) {
                            debug!("dropped a datagram from undeclared source {from} ({more} other drops not logged)");
                        }
                        continue;
                    }
                },
            };
            let Ok(port) = self.switch.remote_rx(now, from, decl) else { continue };
            if len <= HEARTBEAT_MAX {
                trace!("heartbeat from {from}");
                continue;
            }
            self.forward(now, port, len);
        }
        Ok(true)
    }

    /// Reads up to the budget from the multicast group. True if it may have
    /// more. Everything heard on the group is from the one multicast remote.
    fn serve_mcast(&mut self, now: Instant) -> Result<bool, StartError> {
        for _ in 0..READ_BUDGET {
            let (Some(mcast), Some(port)) = (self.io.mcast.as_mut(), self.mcast_port) else { return Ok(false) };
            let (len, from) = match mcast.recv(&mut self.buf) {
                Ok(Rx::Packet { len, from: Some(from) }) => (len, from),
                Ok(Rx::Packet { from: None, .. }) => continue,
                Ok(Rx::Idle) | Ok(Rx::Closed) => return Ok(false),
                Err(e) => {
                    return Err(StartError::Poll(io::Error::new(e.kind(), format!("multicast receive: {e}"))));
                }
            };
            if mcast.is_own(from) {
                self.switch.count_drop(DropReason::OwnMulticast);
                continue;
            }
            // Not a frame, and the group has no heartbeats.
            if len <= HEARTBEAT_MAX {
                self.switch.count_drop(DropReason::Runt);
                trace!("dropped a {len}-byte datagram from {from} on the multicast group");
                continue;
            }
            self.switch.port_rx(now, port);
            self.forward(now, port, len);
        }
        Ok(true)
    }

    /// Reads up to the budget from the local end. `Some` when it closed.
    fn serve_local(&mut self, now: Instant) -> Result<Option<Exit>, StartError> {
        self.local_ready = false;
        for _ in 0..READ_BUDGET {
            let (Some(local), Some(port)) = (self.io.local.as_mut(), self.local_port) else { return Ok(None) };
            match local.recv(&mut self.buf) {
                Ok(Rx::Packet { len, .. }) => self.forward(now, port, len),
                Ok(Rx::Idle) => return Ok(None),
                Ok(Rx::Closed) => {
                    info!("local end closed; exiting");
                    return Ok(Some(Exit::LocalClosed));
                }
                Err(e) => return Err(self.local_error(e)),
            }
        }
        self.local_ready = true;
        Ok(None)
    }

    fn forward(&mut self, now: Instant, ingress: PortId, len: usize) {
        let frame = &self.buf[..len];
        let mut failed = [0u64; DropReason::COUNT];
        match self.switch.handle_frame(now, ingress, frame) {
            Forward::Drop(r) => {
                trace!("drop {} from port {}: {}", len, ingress.0, r.name());
                return;
            }
            Forward::Unicast(t) => {
                if let Some(r) = self.io.deliver(&t, frame) {
                    failed[r as usize] += 1;
                }
            }
            Forward::Flood(targets) => {
                for t in targets {
                    if let Some(r) = self.io.deliver(t, frame) {
                        failed[r as usize] += 1;
                    }
                }
            }
        }
        for r in DropReason::ALL {
            let n = failed[r as usize];
            if n == 0 {
                continue;
            }
            for _ in 0..n {
                self.switch.count_drop(r);
            }
            if let Some(more) = self.drop_log.allow(now) {
                debug!("could not send a {len}-byte frame: {} ({more} more not logged)", r.name());
            }
        }
    }

    /// Flushes queued local output at exit.
    pub fn finish(&mut self) {
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
        if let Some(local) = self.io.local.as_mut() {
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
