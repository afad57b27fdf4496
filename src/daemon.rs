//! The event loop: a thin I/O shell around the [`Node`].
//!
//! It opens the channels the configuration names and loads the key files
//! (the only place that knows what kinds of channel there are), then runs
//! one mio `Poll`: it reads the clocks once per turn, reads a batch from each
//! ready channel through the [`Channel`] trait into the shared receive pool,
//! hands every payload to the node, and gives the node's transmit plan back
//! to the channels. Channels are indexed by their mio token. A channel read
//! to its batch limit stays ready and is served again on the next turn
//! without waiting, so no channel starves another. The poll timeout comes
//! from the node. Signals arrive through the same poll (signal-hook-mio):
//! SIGTERM and SIGINT end the loop at once, through the normal exit; SIGUSR1
//! and SIGUSR2 write a status dump to stderr; SIGHUP is logged and ignored.
//! With `--status-socket` the loop also serves status documents, and under
//! systemd it reports readiness, status and watchdog keep-alives.

use std::error::Error;
use std::fmt;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use log::{debug, info, warn};
use mio::{Events, Interest, Poll, Token};
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use signal_hook_mio::v1_0::Signals;

use crate::channel::batch::RxPool;
use crate::channel::mcast::{McastChannel, McastError};
use crate::channel::stdio::StdioChannel;
use crate::channel::tap::TapChannel;
use crate::channel::udp::UdpChannel;
use crate::channel::{Channel, Rx};
use crate::config::{Config, LocalEnd};
use crate::crypto::{KeyFileError, MasterKey};
use crate::node::{MulticastSetup, Node, Now, Setup, SetupError};
use crate::notify::{Notifier, STATUS_INTERVAL};
use crate::status::server::{StatusServer, StatusSocketError, MAX_PENDING};
use crate::switch::Params;

/// Receive slots, and the UDP batch, without `-B`.
pub const DEFAULT_BATCH: u16 = 32;
/// Longest wait between looks at the node's timers.
const TICK_MAX: Duration = Duration::from_secs(1);
/// How long queued output may take to drain at exit.
const DRAIN_LIMIT: Duration = Duration::from_secs(2);
/// The token of the signal pipe (channels use their index).
const SIGNALS: Token = Token(usize::MAX - 1);
/// The first token of the status socket (its connections take the next).
const STATUS: Token = Token(usize::MAX - 2 - MAX_PENDING);

/// A failure before the loop runs, with what it concerns.
#[derive(Debug)]
pub enum StartError {
    /// The event loop could not be created.
    EventLoop(io::Error),
    /// SIGTERM and SIGINT could not be caught.
    Signals(io::Error),
    /// A key file could not be used.
    Key(KeyFileError),
    /// The UDP port could not be bound.
    Bind {
        /// The port.
        port: u16,
        /// Why.
        source: io::Error,
    },
    /// stdin/stdout could not be set up.
    Stdio(io::Error),
    /// The tap could not be opened.
    Tap {
        /// The tap's name.
        name: String,
        /// Why.
        source: io::Error,
    },
    /// The multicast group could not be joined or sent to.
    Multicast {
        /// The group and port.
        group: SocketAddr,
        /// Which step failed, and why.
        source: McastError,
    },
    /// A channel could not be watched by the event loop.
    Register {
        /// The channel.
        channel: String,
        /// Why.
        source: io::Error,
    },
    /// The declarations or keys do not make a node.
    Node(SetupError),
    /// The status socket could not be created.
    StatusSocket(StatusSocketError),
    /// `--user`: the process could not become that user.
    User {
        /// The user.
        user: String,
        /// Why.
        source: crate::sys::PrivilegeError,
    },
}

impl fmt::Display for StartError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StartError::EventLoop(_) => f.write_str("cannot create the event loop"),
            StartError::Signals(_) => f.write_str("cannot catch SIGTERM and SIGINT"),
            StartError::Key(e) => write!(f, "{e}"),
            StartError::Bind { port, .. } => write!(f, "cannot bind UDP port {port}"),
            StartError::Stdio(_) => f.write_str("cannot use stdin/stdout as the local channel"),
            StartError::Tap { name, .. } => write!(f, "cannot open tap {name}"),
            StartError::Multicast { group, .. } => write!(f, "cannot use multicast group {group}"),
            StartError::Register { channel, .. } => write!(f, "cannot watch {channel}"),
            StartError::Node(e) => write!(f, "{e}"),
            StartError::StatusSocket(e) => write!(f, "{e}"),
            StartError::User { user, .. } => write!(f, "cannot run as user {user}"),
        }
    }
}

impl Error for StartError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            StartError::EventLoop(e) | StartError::Signals(e) | StartError::Stdio(e) => Some(e),
            StartError::Bind { source, .. } | StartError::Tap { source, .. } | StartError::Register { source, .. } => {
                Some(source)
            }
            StartError::Key(e) => e.source(),
            StartError::Multicast { source, .. } => Some(source),
            StartError::Node(e) => e.source(),
            StartError::StatusSocket(e) => e.source(),
            StartError::User { source, .. } => Some(source),
        }
    }
}

/// A failure that ends the loop while it runs.
#[derive(Debug)]
pub enum RunError {
    /// Waiting for events failed.
    Poll(io::Error),
    /// A channel failed for good (a deleted tap, a socket error).
    Channel {
        /// The channel's name.
        name: String,
        /// Why.
        source: io::Error,
    },
}

impl fmt::Display for RunError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RunError::Poll(_) => f.write_str("waiting for events failed"),
            RunError::Channel { name, .. } => write!(f, "{name} failed"),
        }
    }
}

impl Error for RunError {
    fn source(&self) -> Option<&(dyn Error + 'static)> {
        match self {
            RunError::Poll(e) | RunError::Channel { source: e, .. } => Some(e),
        }
    }
}

/// How the daemon ended, when it ends on its own.
#[derive(Debug, PartialEq, Eq)]
pub enum Exit {
    /// stdin reached end of file (or stdout's reader left): status 0.
    LocalClosed,
    /// SIGTERM or SIGINT: status 0.
    Terminated,
}

/// Why a turn of the loop stops it.
enum Stop {
    Exit(Exit),
    Failed(RunError),
}

impl Now {
    /// Reads both clocks.
    pub fn read() -> Now {
        let unix = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        Now { mono: Instant::now(), unix }
    }
}

/// The running daemon: the poll, the channels (indexed by token), the
/// receive pool and the node.
pub struct Daemon {
    poll: Poll,
    node: Node,
    chans: Vec<Box<dyn Channel>>,
    /// Channels that may have more to read without a new readiness event.
    ready: Vec<bool>,
    pool: RxPool,
    signals: Signals,
    /// The local end's channel, for status reports.
    local: Option<usize>,
    status: Option<StatusServer>,
    notifier: Option<Notifier>,
}

impl Daemon {
    /// Reads the key files and opens every channel the configuration names.
    pub fn new(cfg: &Config, now: Now) -> Result<Daemon, StartError> {
        // Before any socket: a key file that cannot be used stops us here,
        // and nothing ever runs in plaintext instead.
        let mut keys = KeyFiles::default();
        let remotes = cfg
            .remotes
            .iter()
            .map(|r| Ok((r.clone(), keys.load(r.key.as_ref())?)))
            .collect::<Result<Vec<_>, StartError>>()?;
        let mcast_key = match &cfg.multicast {
            Some(m) => keys.load(m.key.as_ref())?,
            None => None,
        };

        let poll = Poll::new().map_err(StartError::EventLoop)?;
        let batch = usize::from(cfg.buffers.unwrap_or(DEFAULT_BATCH));
        let mut chans: Vec<Box<dyn Channel>> = Vec::new();
        let (mut udp, mut local, mut multicast, mut vnet) = (None, None, None, None);
        if let Some(port) = cfg.port {
            let u = UdpChannel::bind(port, cfg.ipv4_only, batch).map_err(|source| StartError::Bind { port, source })?;
            let addr = u.local_addr().map_err(|source| StartError::Bind { port, source })?;
            info!("listening on UDP {addr}");
            udp = Some(chans.len());
            chans.push(Box::new(u));
        }
        match &cfg.local {
            LocalEnd::None => {
                hint_if_stdin_is_a_pipe();
                info!("no local end: switching among remotes only");
            }
            LocalEnd::Stdio => {
                local = Some(chans.len());
                chans.push(Box::new(StdioChannel::open().map_err(StartError::Stdio)?));
            }
            LocalEnd::Tap(name) => {
                let tap = TapChannel::open(name, batch, cfg.join_udp)
                    .map_err(|source| StartError::Tap { name: name.clone(), source })?;
                vnet = tap.vnet();
                // The manual: with a tap, stdin and stdout are closed (stderr stays).
                crate::sys::close_stdin_stdout().map_err(StartError::Stdio)?;
                local = Some(chans.len());
                chans.push(Box::new(tap));
            }
        }
        if let Some(id) = local {
            info!("local end: {}", chans[id].name());
        }
        if let Some(m) = &cfg.multicast {
            let c = McastChannel::open(m.group, m.port)
                .map_err(|source| StartError::Multicast { group: m.addr(), source })?;
            info!("multicast channel {} (sending from {})", c.group(), c.own_addr());
            multicast = Some(MulticastSetup { chan: chans.len(), group: m.addr(), own: c.own_addr(), key: mcast_key });
            chans.push(Box::new(c));
        }
        for (i, c) in chans.iter_mut().enumerate() {
            c.register(poll.registry(), Token(i))
                .map_err(|source| StartError::Register { channel: c.name().to_owned(), source })?;
        }
        let mut signals = Signals::new([SIGTERM, SIGINT, SIGUSR1, SIGUSR2, SIGHUP]).map_err(StartError::Signals)?;
        poll.registry().register(&mut signals, SIGNALS, Interest::READABLE).map_err(StartError::Signals)?;
        let status = match &cfg.status_socket {
            Some(path) => {
                let mut server = StatusServer::bind(path).map_err(StartError::StatusSocket)?;
                server.register(poll.registry(), STATUS).map_err(|source| StartError::Register {
                    channel: format!("status socket {}", path.display()),
                    source,
                })?;
                info!("status socket {}", path.display());
                Some(server)
            }
            None => None,
        };
        let notifier = Notifier::from_env().unwrap_or_else(|e| {
            warn!("not notifying the service manager: {e}");
            None
        });
        // Issue 13: everything that needs privilege is open (the tap, the
        // sockets, the key files, the status socket); give it up.
        if let Some(user) = &cfg.user {
            let acct =
                crate::sys::become_user(user).map_err(|source| StartError::User { user: user.clone(), source })?;
            info!("running as user {} (uid {}, gid {})", acct.name, acct.uid, acct.gid);
        }

        debug!("receive batch and buffer pool: {batch} slots");
        let setup = Setup {
            remotes,
            keys: keys.keys,
            channels: chans.len(),
            local,
            udp,
            multicast,
            switch: Params::default(),
            batch,
        };
        let mut node = Node::new(setup, now).map_err(StartError::Node)?;
        if let Some(size) = vnet {
            node.enable_tap_offload(size);
        }
        Ok(Daemon {
            poll,
            node,
            ready: vec![true; chans.len()],
            chans,
            pool: RxPool::new(batch),
            signals,
            local,
            status,
            notifier,
        })
    }

    /// Runs until the local end closes, a signal ends it, or a channel fails.
    pub fn run(&mut self) -> Result<Exit, RunError> {
        match self.run_loop() {
            Stop::Exit(e) => Ok(e),
            Stop::Failed(e) => Err(e),
        }
    }

    fn run_loop(&mut self) -> Stop {
        let mut events = Events::with_capacity(64);
        let mut next_tick = Instant::now();
        // Every channel is open and every key loaded: ready.
        let mut next_notify = Instant::now();
        let mut next_watchdog = Instant::now();
        if let Some(n) = self.notifier.as_mut() {
            n.send("READY=1");
        }
        // Read once a turn, when poll returns: the timers below use the time
        // the last turn's frames were handled at, microseconds old.
        let mut now = Now::read();
        loop {
            if let Some(n) = self.notifier.as_mut() {
                if now.mono >= next_notify {
                    let s = self.node.switch();
                    n.send(&format!(
                        "STATUS=remotes {}, macs {}",
                        s.port_count() - self.local.map_or(0, |_| 1),
                        s.mac_count()
                    ));
                    next_notify = now.mono + STATUS_INTERVAL;
                }
                if let Some(every) = n.watchdog() {
                    if now.mono >= next_watchdog {
                        n.send("WATCHDOG=1");
                        next_watchdog = now.mono + every;
                    }
                }
            }
            if let Some(server) = self.status.as_mut() {
                server.expire(self.poll.registry(), now.mono);
            }
            if now.mono >= next_tick {
                self.node.handle_timeout(now);
                if let Err(stop) = self.flush(now) {
                    return stop;
                }
                // Timers are looked at when the node says one is due, and at
                // least every TICK_MAX, so a deadline that appears between
                // ticks (a new downlink's staleness) is never late by more.
                let max = now.mono + TICK_MAX;
                next_tick = self.node.poll_timeout().map_or(max, |t| t.min(max));
            }
            let timeout =
                if self.ready.contains(&true) { Duration::ZERO } else { next_tick.saturating_duration_since(now.mono) };
            match self.poll.poll(&mut events, Some(timeout)) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                    now = Now::read();
                    continue;
                }
                Err(e) => return Stop::Failed(RunError::Poll(e)),
            }
            for ev in events.iter() {
                if ev.token() == SIGNALS {
                    if let Some(stop) = self.signalled() {
                        return stop;
                    }
                    continue;
                }
                if self.status.as_ref().is_some_and(|s| s.owns(ev.token())) {
                    self.serve_status(ev.token());
                    continue;
                }
                let id = ev.token().0;
                // An error event (a deleted tap shows as EPOLLERR alone) is
                // served as a read, which reports it.
                if ev.is_readable() || ev.is_read_closed() || ev.is_error() {
                    if let Some(r) = self.ready.get_mut(id) {
                        *r = true;
                    }
                }
                if ev.is_writable() || ev.is_write_closed() {
                    if let Some(c) = self.chans.get_mut(id) {
                        if let Err(e) = c.flush() {
                            return channel_failed(c.as_ref(), e);
                        }
                    }
                }
            }
            now = Now::read();
            for id in 0..self.chans.len() {
                if self.ready[id] {
                    if let Err(stop) = self.serve(id, now) {
                        return stop;
                    }
                }
            }
        }
    }

    /// Acts on the signals that arrived; `Some` when one ends the loop.
    fn signalled(&mut self) -> Option<Stop> {
        let pending: Vec<i32> = self.signals.pending().collect();
        for signal in pending {
            match signal {
                SIGTERM | SIGINT => {
                    let name = if signal == SIGINT { "SIGINT" } else { "SIGTERM" };
                    info!("terminated by a signal ({name}); exiting");
                    return Some(Stop::Exit(Exit::Terminated));
                }
                SIGUSR1 | SIGUSR2 => {
                    // Whatever the -v level: the operator asked for it.
                    let status = self.status_now();
                    let mut err = io::stderr().lock();
                    for line in status.dump_lines() {
                        let _ = writeln!(err, "{line}");
                    }
                }
                _ => info!("SIGHUP ignored: rrqnet has nothing to reload or reopen"),
            }
        }
        None
    }

    /// The status document as of now.
    fn status_now(&self) -> crate::status::Status {
        status_of(&self.node, &self.chans, self.local, Now::read())
    }

    /// A readiness event of the status socket or one of its connections.
    fn serve_status(&mut self, token: Token) {
        let now = Now::read();
        let Daemon { status, node, chans, local, poll, .. } = self;
        let Some(server) = status.as_mut() else { return };
        server.handle(poll.registry(), token, now.mono, || status_of(node, chans, *local, now).to_json());
    }

    /// Reads one batch from channel `id`, hands it to the node, and sends
    /// what the node planned.
    fn serve(&mut self, id: usize, now: Now) -> Result<(), Stop> {
        let count = match self.chans[id].recv_batch(&mut self.pool) {
            Ok(Rx::Batch { count, drained }) => {
                self.ready[id] = !drained;
                count
            }
            Ok(Rx::Closed) => {
                self.flush(now)?;
                info!("{} closed; exiting", self.chans[id].name());
                return Err(Stop::Exit(Exit::LocalClosed));
            }
            Err(e) => return Err(channel_failed(self.chans[id].as_ref(), e)),
        };
        for slot in 0..count {
            let meta = self.pool.meta(slot);
            if meta.truncated() {
                self.node.handle_truncated(id);
            }
            for payload in meta.payloads() {
                self.node.handle_input(now, id, meta.from, self.pool.slot_mut(slot), payload);
            }
            if self.node.should_flush() {
                self.flush(now)?;
            }
        }
        let trouble = self.node.take_offload_trouble();
        if trouble.any() {
            self.chans[id].offload_refused(trouble);
        }
        self.flush(now)
    }

    /// Hands the node's plan to the channels.
    fn flush(&mut self, now: Now) -> Result<(), Stop> {
        let chans = &mut self.chans;
        self.node
            .flush_with(now, |id, arena, batch| chans[id].send_batch(arena, batch).map_err(|e| (id, e)))
            .map_err(|(id, e)| channel_failed(self.chans[id].as_ref(), e))
    }

    /// Logs the statistics and pushes out queued output, at exit.
    pub fn finish(&mut self) {
        if let Some(n) = self.notifier.as_mut() {
            n.send("STOPPING=1");
        }
        let now = Now::read();
        if self.flush(now).is_err() {
            debug!("could not send what was planned at exit");
        }
        info!("{}", self.node.summary());
        let deadline = Instant::now() + DRAIN_LIMIT;
        for c in &mut self.chans {
            while c.has_backlog() && Instant::now() < deadline {
                if c.flush().is_err() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(1));
            }
        }
    }
}

/// The node's status document, with the local channel's offloads.
fn status_of(node: &Node, chans: &[Box<dyn Channel>], local: Option<usize>, now: Now) -> crate::status::Status {
    let mut status = node.status(now, local.map(|id| (chans[id].kind(), chans[id].name())));
    let tap = local.and_then(|id| chans[id].offload());
    if let (Some(split), Some(tap)) = (node.split_counters(), tap) {
        status.offload = Some(crate::status::Offload::new(split, &tap));
    }
    status
}

/// What a channel's failure means: a reader that left our output (stdout's
/// pipe) ends the daemon like end of input; anything else is an error.
fn channel_failed(c: &dyn Channel, e: io::Error) -> Stop {
    if e.kind() == io::ErrorKind::BrokenPipe {
        info!("{}: output closed by its reader; exiting", c.name());
        return Stop::Exit(Exit::LocalClosed);
    }
    Stop::Failed(RunError::Channel { name: c.name().to_owned(), source: e })
}

/// The key files, each read once however many declarations name it.
#[derive(Default)]
struct KeyFiles {
    keys: Vec<MasterKey>,
    paths: Vec<PathBuf>,
}

impl KeyFiles {
    /// The index of the key in `path`, reading the file the first time.
    fn load(&mut self, path: Option<&PathBuf>) -> Result<Option<usize>, StartError> {
        let Some(path) = path else { return Ok(None) };
        if let Some(k) = self.paths.iter().position(|p| p == path) {
            return Ok(Some(k));
        }
        let loaded = MasterKey::load(path).map_err(StartError::Key)?;
        if let Some(w) = &loaded.warning {
            warn!("{w}");
        }
        info!("key file {}: key {}", path.display(), loaded.key.fingerprint());
        self.keys.push(loaded.key);
        self.paths.push(path.clone());
        Ok(Some(self.keys.len() - 1))
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
