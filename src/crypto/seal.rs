//! The sending side: one [`Sealer`] per key file.
//!
//! The sealer owns the current session (its random id, its start time, its
//! key and the next counter) and seals datagrams in place. It never reuses a
//! counter: when the counter reaches its limit, or the session grows older
//! than [`SealerLimits::max_session_age`], the next seal starts a new session
//! with a fresh random id and counter 0.
//!
//! It also remembers its own recent session ids so that the receiving side
//! can reject our own datagrams reflected back at us ([`OwnSessions`]).

use std::collections::VecDeque;
use std::fmt;
use std::ops::Range;
use std::time::Duration;

use ring::rand::{SecureRandom, SystemRandom};

use super::aead::Aead;
use super::key::MasterKey;
use super::timing;
use super::wire::{Header, Kind, SessionId, HEADER_LEN, TAG_LEN};

/// When a sender starts a new session.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SealerLimits {
    /// Counters `0..counter_limit` are used; the datagram that would take
    /// `counter_limit` starts a new session instead. At most `u64::MAX`,
    /// which receivers never accept.
    pub counter_limit: u64,
    /// A session whose start is this far from the current wall-clock time
    /// (either way) is replaced at the next seal, so that a receiver that
    /// restarted, and knows none of our sessions, soon sees one that is fresh
    /// enough to accept. Keep it well under [`timing::FRESHNESS`].
    pub max_session_age: Duration,
}

impl Default for SealerLimits {
    fn default() -> Self {
        SealerLimits { counter_limit: u64::MAX, max_session_age: timing::MAX_SESSION_AGE }
    }
}

/// Why a datagram was not sealed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SealError {
    /// Less than [`HEADER_LEN`] bytes before the payload, or less than
    /// [`TAG_LEN`] after it.
    NoRoom,
    /// A data datagram with an empty payload, or a heartbeat with a
    /// non-empty one.
    BadPayload,
    /// The system's random source failed, so no new session could start.
    Random,
}

impl fmt::Display for SealError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            SealError::NoRoom => "no room for the header or the tag around the payload",
            SealError::BadPayload => "data needs a payload and a heartbeat has none",
            SealError::Random => "the system random source failed",
        })
    }
}

impl std::error::Error for SealError {}

/// How many of our own past sessions are remembered at most.
const OWN_SESSIONS_CAP: usize = 1024;

/// Our own sessions whose start is still fresh: a datagram of one of them
/// that comes back to us is a reflection. Older ones need no entry: the
/// freshness check refuses them anyway.
#[derive(Clone, Debug)]
pub struct OwnSessions {
    /// (id, start), oldest first; the last is the current session.
    recent: VecDeque<(SessionId, u64)>,
}

impl OwnSessions {
    fn new() -> OwnSessions {
        OwnSessions { recent: VecDeque::with_capacity(8) }
    }

    /// Whether `id` is one of ours.
    pub fn contains(&self, id: &SessionId) -> bool {
        self.recent.iter().any(|(own, _)| own == id)
    }

    fn push(&mut self, id: SessionId, start: u64, now_unix: u64) {
        let keep = timing::FRESHNESS.as_secs();
        self.recent.retain(|&(_, s)| s.abs_diff(now_unix) <= keep);
        if self.recent.len() >= OWN_SESSIONS_CAP {
            self.recent.pop_front();
        }
        self.recent.push_back((id, start));
    }
}

/// The sending side of one key file.
pub struct Sealer {
    master: MasterKey,
    rng: SystemRandom,
    limits: SealerLimits,
    session: SessionId,
    start: u64,
    /// The counter of the next datagram.
    counter: u64,
    aead: Aead,
    own: OwnSessions,
}

impl fmt::Debug for Sealer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Sealer")
            .field("key", &self.master)
            .field("session", &self.session)
            .field("start", &self.start)
            .field("counter", &self.counter)
            .finish_non_exhaustive()
    }
}

impl Sealer {
    /// A sealer with a new random session that starts at `now_unix`.
    pub fn new(master: &MasterKey, now_unix: u64, limits: SealerLimits) -> Result<Sealer, SealError> {
        let session = random_session(&SystemRandom::new())?;
        Ok(Self::with_session(master, session, now_unix, 0, limits))
    }

    /// A sealer whose current session is given: for known-answer vectors and
    /// tests. Two sealers given the same key, session and counter produce
    /// the same nonces, which destroys the encryption: the daemon uses
    /// [`Sealer::new`].
    pub fn with_session(
        master: &MasterKey,
        session: SessionId,
        start: u64,
        counter: u64,
        limits: SealerLimits,
    ) -> Sealer {
        let mut own = OwnSessions::new();
        own.push(session, start, start);
        Sealer {
            master: master.clone(),
            rng: SystemRandom::new(),
            limits,
            session,
            start,
            counter,
            aead: Aead::new(&master.session_key(&session)),
            own,
        }
    }

    /// Starts a new session now: a fresh random id, counter 0.
    pub fn rotate(&mut self, now_unix: u64) -> Result<(), SealError> {
        let mut session = random_session(&self.rng)?;
        // 2^-128, but a repeated id would repeat nonces: draw again.
        while self.own.contains(&session) {
            session = random_session(&self.rng)?;
        }
        self.aead = Aead::new(&self.master.session_key(&session));
        self.session = session;
        self.start = now_unix;
        self.counter = 0;
        self.own.push(session, now_unix, now_unix);
        Ok(())
    }

    /// Seals the payload at `buf[payload_offset..payload_offset +
    /// payload_len]` in place: the header goes into the [`HEADER_LEN`] bytes
    /// before it and the tag into the [`TAG_LEN`] bytes after it. Returns
    /// where the datagram is in `buf`. A heartbeat has `payload_len` 0.
    ///
    /// `now_unix` is the wall-clock time in unix seconds; it decides whether
    /// the session is due for renewal and is the start time of a new one.
    /// On error nothing was sealed and `buf` is unchanged.
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        payload_offset: usize,
        payload_len: usize,
        kind: Kind,
        now_unix: u64,
    ) -> Result<Range<usize>, SealError> {
        let start = payload_offset.checked_sub(HEADER_LEN).ok_or(SealError::NoRoom)?;
        let payload_end = payload_offset.checked_add(payload_len).ok_or(SealError::NoRoom)?;
        let end = payload_end.checked_add(TAG_LEN).filter(|&e| e <= buf.len()).ok_or(SealError::NoRoom)?;
        match (kind, payload_len) {
            (Kind::Data, 0) => return Err(SealError::BadPayload),
            (Kind::Heartbeat, n) if n != 0 => return Err(SealError::BadPayload),
            _ => {}
        }
        if self.counter >= self.limits.counter_limit.max(1)
            || self.start.abs_diff(now_unix) >= self.limits.max_session_age.as_secs()
        {
            self.rotate(now_unix)?;
        }
        let header = Header { kind, session: self.session, counter: self.counter, start: self.start }.to_bytes();
        let (head, rest) = buf[start..end].split_at_mut(HEADER_LEN);
        let (payload, tag) = rest.split_at_mut(payload_len);
        let t = self.aead.seal(Aead::nonce(self.counter), &header, payload).map_err(|_| SealError::NoRoom)?;
        head.copy_from_slice(&header);
        tag.copy_from_slice(&t);
        self.counter += 1;
        Ok(start..end)
    }

    /// The current session.
    pub fn session(&self) -> SessionId {
        self.session
    }

    /// When the current session started, in unix seconds.
    pub fn session_start(&self) -> u64 {
        self.start
    }

    /// The counter the next datagram gets (unless the session is renewed).
    pub fn next_counter(&self) -> u64 {
        self.counter
    }

    /// Our own recent sessions, for the receiving side.
    pub fn own_sessions(&self) -> &OwnSessions {
        &self.own
    }

    /// The key this sealer seals with.
    pub fn key(&self) -> &MasterKey {
        &self.master
    }
}

fn random_session(rng: &SystemRandom) -> Result<SessionId, SealError> {
    let mut id = [0u8; 16];
    rng.fill(&mut id).map_err(|_| SealError::Random)?;
    Ok(SessionId(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key() -> MasterKey {
        MasterKey::from_bytes(&[0x42; 32]).unwrap()
    }

    #[test]
    fn counters_count_up_from_zero_within_a_session() {
        let mut s = Sealer::new(&key(), 1000, SealerLimits::default()).unwrap();
        let id = s.session();
        let mut buf = [0u8; 100];
        for c in 0..5u64 {
            let r = s.seal_in_place(&mut buf, HEADER_LEN, 10, Kind::Data, 1000).unwrap();
            assert_eq!(r, 0..HEADER_LEN + 10 + TAG_LEN);
            let h = Header::parse(&buf).unwrap();
            assert_eq!((h.session, h.counter, h.start, h.kind), (id, c, 1000, Kind::Data));
        }
        assert_eq!(s.next_counter(), 5);
    }

    #[test]
    fn no_room_and_bad_payloads_seal_nothing() {
        let mut s = Sealer::new(&key(), 1000, SealerLimits::default()).unwrap();
        let mut buf = [5u8; 100];
        assert_eq!(s.seal_in_place(&mut buf, HEADER_LEN - 1, 10, Kind::Data, 1000), Err(SealError::NoRoom));
        assert_eq!(
            s.seal_in_place(&mut buf, HEADER_LEN, 100 - HEADER_LEN - 15, Kind::Data, 1000),
            Err(SealError::NoRoom)
        );
        assert_eq!(s.seal_in_place(&mut buf, HEADER_LEN, usize::MAX, Kind::Data, 1000), Err(SealError::NoRoom));
        assert_eq!(s.seal_in_place(&mut buf, usize::MAX, 1, Kind::Data, 1000), Err(SealError::NoRoom));
        assert_eq!(s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Data, 1000), Err(SealError::BadPayload));
        assert_eq!(s.seal_in_place(&mut buf, HEADER_LEN, 1, Kind::Heartbeat, 1000), Err(SealError::BadPayload));
        assert_eq!(buf, [5u8; 100]);
        assert_eq!(s.next_counter(), 0);
        // Exactly enough room is enough.
        assert_eq!(s.seal_in_place(&mut buf, HEADER_LEN, 100 - HEADER_LEN - TAG_LEN, Kind::Data, 1000), Ok(0..100));
        assert_eq!(s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000), Ok(0..HEADER_LEN + TAG_LEN));
    }

    #[test]
    fn the_counter_limit_starts_a_new_session_instead_of_wrapping() {
        let limits = SealerLimits { counter_limit: 3, ..SealerLimits::default() };
        let mut s = Sealer::new(&key(), 1000, limits).unwrap();
        let first = s.session();
        let mut buf = [0u8; 80];
        let mut seen = Vec::new();
        for _ in 0..7 {
            s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000).unwrap();
            let h = Header::parse(&buf).unwrap();
            seen.push((h.session, h.counter));
        }
        let counters: Vec<u64> = seen.iter().map(|&(_, c)| c).collect();
        assert_eq!(counters, [0, 1, 2, 0, 1, 2, 0]);
        assert!(seen[..3].iter().all(|&(id, _)| id == first));
        assert!(seen[3..6].iter().all(|&(id, _)| id == seen[3].0));
        assert_ne!(seen[3].0, first);
        assert_ne!(seen[6].0, seen[3].0);
        for (id, _) in &seen {
            assert!(s.own_sessions().contains(id));
        }
    }

    #[test]
    fn the_last_counter_before_u64_max_is_used_and_then_the_session_changes() {
        let mut s = Sealer::with_session(&key(), SessionId([1; 16]), 1000, u64::MAX - 1, SealerLimits::default());
        let mut buf = [0u8; 80];
        s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000).unwrap();
        assert_eq!(Header::parse(&buf).unwrap().counter, u64::MAX - 1);
        s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000).unwrap();
        let h = Header::parse(&buf).unwrap();
        assert_eq!(h.counter, 0);
        assert_ne!(h.session, SessionId([1; 16]));
    }

    #[test]
    fn an_old_session_is_renewed_at_the_next_seal() {
        let mut s = Sealer::new(&key(), 1000, SealerLimits::default()).unwrap();
        let first = s.session();
        let mut buf = [0u8; 80];
        let age = timing::MAX_SESSION_AGE.as_secs();
        s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000 + age - 1).unwrap();
        assert_eq!(s.session(), first);
        s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000 + age).unwrap();
        assert_ne!(s.session(), first);
        assert_eq!(Header::parse(&buf).unwrap().start, 1000 + age);
        assert_eq!(Header::parse(&buf).unwrap().counter, 0);
        // A clock stepped back renews too: the old start would look like the
        // future to everyone else.
        let second = s.session();
        s.seal_in_place(&mut buf, HEADER_LEN, 0, Kind::Heartbeat, 1000 + age - age).unwrap();
        assert_ne!(s.session(), second);
    }

    #[test]
    fn own_sessions_forget_only_what_the_freshness_check_refuses_anyway() {
        let mut s = Sealer::new(&key(), 1000, SealerLimits::default()).unwrap();
        let first = s.session();
        let fresh = timing::FRESHNESS.as_secs();
        s.rotate(1000 + fresh).unwrap();
        assert!(s.own_sessions().contains(&first));
        s.rotate(1000 + fresh + 1).unwrap();
        assert!(!s.own_sessions().contains(&first));
        assert!(s.own_sessions().contains(&s.session()));
    }
}
