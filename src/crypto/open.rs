//! The receiving side: one [`Opener`] per key file, with its bounded cache of
//! the sender sessions it has accepted.
//!
//! [`Opener::open_in_place`] follows the receive order of SPEC section 5:
//! cheap checks first (length, version, type, counter), then our own sessions
//! (reflection), then the replay quick-check against the session's window
//! (or, for a session not yet known, the freshness of its start time), then
//! decryption, and only after the tag verified: mark the replay window,
//! accept a new session. A datagram that fails any step changes nothing.

use crate::hash::Map;
use std::fmt;
use std::ops::Range;

use super::aead::Aead;
use super::key::MasterKey;
use super::replay::ReplayWindow;
use super::seal::OwnSessions;
use super::timing;
use super::wire::{Header, Kind, SessionId, HEADER_LEN, OVERHEAD, TAG_LEN};

/// The default bound on the number of sender sessions remembered per key.
///
/// A session is remembered while its start is fresh (300 s), and a sender
/// renews every 120 s, so each busy peer holds about four: this is room for
/// the switch's 4096 remotes all on one key. Only authentic sessions are
/// remembered, so only key holders can fill it; each takes about 1.7 KiB
/// (its replay window and its key), 28 MiB when full.
pub const DEFAULT_MAX_SESSIONS: usize = 16384;

/// Why a datagram was dropped. Each is counted separately by the daemon.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpenError {
    /// Too short, another version, an unknown type, a data datagram without
    /// payload or a heartbeat with one, the counter `u64::MAX`, or a start
    /// time that differs from the one of the known session.
    Malformed,
    /// One of our own sessions: a reflection of what we sent.
    OwnSession,
    /// A counter already accepted, or older than the replay window.
    Replay,
    /// An unknown session whose start time is more than
    /// [`timing::FRESHNESS`] from now: an old capture, a sender with a badly
    /// wrong clock, or a forgery (this is decided before any decryption).
    StaleSession,
    /// The tag did not verify: another key, corruption or forgery.
    BadAuth,
    /// An authentic new session, refused because every remembered session
    /// is still fresh and forgetting one would let its datagrams be replayed.
    SessionCacheFull,
}

impl OpenError {
    /// Every variant, for counters.
    pub const ALL: [OpenError; 6] = [
        OpenError::Malformed,
        OpenError::OwnSession,
        OpenError::Replay,
        OpenError::StaleSession,
        OpenError::BadAuth,
        OpenError::SessionCacheFull,
    ];

    /// A short name for counters and logs.
    pub fn name(self) -> &'static str {
        match self {
            OpenError::Malformed => "malformed",
            OpenError::OwnSession => "own-session",
            OpenError::Replay => "replay",
            OpenError::StaleSession => "stale-session",
            OpenError::BadAuth => "bad-auth",
            OpenError::SessionCacheFull => "session-cache-full",
        }
    }
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for OpenError {}

/// An accepted datagram.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Opened {
    /// Data or heartbeat.
    pub kind: Kind,
    /// Where the plaintext is in the datagram buffer (empty for heartbeats).
    pub payload: Range<usize>,
    /// The sender's session.
    pub session: SessionId,
    /// The datagram's counter in that session.
    pub counter: u64,
    /// When that session started, in unix seconds of the sender's clock.
    pub start: u64,
    /// True when this datagram made the session known: the peer restarted
    /// or renewed its session (or is new).
    pub new_session: bool,
}

/// A sender session we accepted.
struct Peer {
    aead: Aead,
    start: u64,
    window: ReplayWindow,
    /// The opener's tick when the session last had a datagram accepted.
    last_used: u64,
}

/// The receiving side of one key file.
pub struct Opener {
    master: MasterKey,
    sessions: Map<SessionId, Peer>,
    max_sessions: usize,
    /// Counts accepted datagrams; orders sessions by last use.
    tick: u64,
}

impl fmt::Debug for Opener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Opener")
            .field("key", &self.master)
            .field("sessions", &self.sessions.len())
            .field("max_sessions", &self.max_sessions)
            .finish_non_exhaustive()
    }
}

impl Opener {
    /// An opener that remembers at most `max_sessions` sender sessions (at
    /// least 1).
    pub fn new(master: &MasterKey, max_sessions: usize) -> Opener {
        Opener { master: master.clone(), sessions: Map::default(), max_sessions: max_sessions.max(1), tick: 0 }
    }

    /// Checks and decrypts one keyed datagram in place. `now_unix` is the
    /// wall-clock time in unix seconds; `own` are our own sessions, which
    /// are refused. On success the plaintext is at `datagram[opened.payload]`;
    /// on failure nothing changed here and the buffer's contents are
    /// unspecified.
    pub fn open_in_place(
        &mut self,
        datagram: &mut [u8],
        now_unix: u64,
        own: &OwnSessions,
    ) -> Result<Opened, OpenError> {
        if datagram.len() < OVERHEAD {
            return Err(OpenError::Malformed);
        }
        let h = Header::parse(datagram).ok_or(OpenError::Malformed)?;
        let payload = HEADER_LEN..datagram.len() - TAG_LEN;
        match h.kind {
            Kind::Data if payload.is_empty() => return Err(OpenError::Malformed),
            Kind::Heartbeat if !payload.is_empty() => return Err(OpenError::Malformed),
            _ if h.counter == u64::MAX => return Err(OpenError::Malformed),
            _ => {}
        }
        if own.contains(&h.session) {
            return Err(OpenError::OwnSession);
        }
        let nonce = Aead::nonce(h.counter);
        let (aad, body) = datagram.split_at_mut(HEADER_LEN);
        let opened = |new_session| Opened {
            kind: h.kind,
            payload,
            session: h.session,
            counter: h.counter,
            start: h.start,
            new_session,
        };

        if let Some(peer) = self.sessions.get_mut(&h.session) {
            if peer.start != h.start {
                return Err(OpenError::Malformed);
            }
            if !peer.window.check(h.counter) {
                return Err(OpenError::Replay);
            }
            peer.aead.open(nonce, aad, body).map_err(|_| OpenError::BadAuth)?;
            peer.window.mark(h.counter);
            self.tick += 1;
            peer.last_used = self.tick;
            return Ok(opened(false));
        }

        if h.start.abs_diff(now_unix) > timing::FRESHNESS.as_secs() {
            return Err(OpenError::StaleSession);
        }
        let aead = Aead::new(&self.master.session_key(&h.session));
        aead.open(nonce, aad, body).map_err(|_| OpenError::BadAuth)?;
        if self.sessions.len() >= self.max_sessions && !self.evict_one(now_unix) {
            return Err(OpenError::SessionCacheFull);
        }
        let mut window = ReplayWindow::new();
        window.mark(h.counter);
        self.tick += 1;
        self.sessions.insert(h.session, Peer { aead, start: h.start, window, last_used: self.tick });
        Ok(opened(true))
    }

    /// Forgets the least recently used session among those whose start is
    /// no longer fresh: those can never be accepted anew, so forgetting them
    /// cannot reopen a replay. Returns false when every session is fresh.
    fn evict_one(&mut self, now_unix: u64) -> bool {
        let fresh = timing::FRESHNESS.as_secs();
        // last_used values are distinct, so the choice does not depend on
        // the map's order.
        let victim = self
            .sessions
            .iter()
            .filter(|(_, p)| p.start.abs_diff(now_unix) > fresh)
            .min_by_key(|(_, p)| p.last_used)
            .map(|(id, _)| *id);
        match victim {
            Some(id) => self.sessions.remove(&id).is_some(),
            None => false,
        }
    }

    /// How many sender sessions are remembered.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Whether a sender session is remembered.
    pub fn knows(&self, id: &SessionId) -> bool {
        self.sessions.contains_key(id)
    }
}
