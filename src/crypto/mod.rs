//! Transport encryption v1: the keyed datagram format, pure.
//!
//! This module owns everything about keyed channels that is not I/O: reading
//! a key file into a master key, the sending session and its counter, the
//! datagram format, and the receiving side's session cache and replay
//! windows. It never opens a socket and never reads a clock: the wall-clock
//! time is an argument (`now_unix`, unix seconds), because the freshness of
//! a session start is a wall-clock matter between two hosts.
//!
//! # Keys
//!
//! A key file (at least 32 bytes, typically 1 MiB of random data) is read
//! once and streamed through HKDF-SHA256 into a master key; see [`key`] for
//! the exact derivation. Each process start picks a random 128-bit session
//! id and sends under the session key derived from the master key and that
//! id. A receiver derives the same key from the session id in the datagram,
//! once per session, and caches it.
//!
//! # Datagram, byte by byte
//!
//! ```text
//! offset  size  field
//!      0     1  version: 1
//!      1     1  type: 1 = data, 2 = heartbeat
//!      2    16  session id: random, picked when the sender's session starts
//!     18     8  counter, big-endian: 0, 1, 2, ... within the session
//!     26     8  session start, big-endian: unix seconds when the session began
//!     34     n  ciphertext: the Ethernet frame under ChaCha20 (n = 0 for a heartbeat)
//!   34+n    16  Poly1305 tag
//! ```
//!
//! The AEAD is ChaCha20-Poly1305 (RFC 8439) under the session key. The
//! 34-byte header ([`HEADER_LEN`]) is the associated data, so every header
//! byte is authenticated. The nonce is four zero bytes, then the counter
//! big-endian. A data datagram carries one non-empty frame; a heartbeat is
//! an authenticated empty payload, so a keyed heartbeat is 50 bytes and never
//! empty on the wire.
//!
//! # Overhead and MTU
//!
//! Encryption adds [`OVERHEAD`] = 50 bytes to each frame. Over an underlay
//! with a 1500-byte path MTU, the largest frame that travels without IP
//! fragmentation is 1500 − 20 (IPv4) − 8 (UDP) − 50 = 1422 bytes over IPv4
//! and 1500 − 40 (IPv6) − 8 − 50 = 1402 bytes over IPv6. A frame carries a
//! 14-byte Ethernet header, so set the tap MTU to **1408** for an IPv4
//! underlay and **1388** for IPv6 (4 less when VLAN-tagged frames cross).
//! Unkeyed channels carry 50 bytes more: 1458 and 1438.
//!
//! # Sessions, counters and replay
//!
//! The sender never reuses a counter and never wraps it: when the counter
//! reaches its limit the sender starts a new session (new random id, counter
//! 0). It also starts a new one when its session is [`timing::MAX_SESSION_AGE`]
//! old, for the reason below.
//!
//! A receiver keeps, per key, a bounded cache of the sender sessions it
//! accepted, each with a replay window of 8128 counters ([`REPLAY_WINDOW`]):
//! reordering inside the window is accepted once per counter, anything older
//! is refused. A session not in the cache is accepted only if its start time
//! is within [`timing::FRESHNESS`] (±300 s) of the receiver's clock, so an old
//! capture cannot be replayed after the receiver restarts with an empty
//! cache. That is why senders renew sessions: a receiver that restarted knows
//! none of our sessions, and our current one must still be fresh when it
//! first sees it. Peers' clocks must therefore agree within a few minutes.
//! When a peer's new session shows its clock far ahead of our session start,
//! we renew at once ([`Transport::peer_session`]), so a restarted peer hears
//! us one round trip after it speaks.
//! The cache forgets the least recently used session whose start is no
//! longer fresh; it never forgets a fresh one (that would reopen it to
//! replay) and refuses a new session instead ([`OpenError::SessionCacheFull`]).
//!
//! Our own session ids are refused on receipt, so a datagram reflected back
//! to us (by a mirror, or by an attacker) is never taken for a peer's.
//!
//! # One seal per key
//!
//! Nothing in a datagram names its receiver: the session and counter belong
//! to the sender and its key file, not to a remote. So a frame flooded to
//! several remotes that share a key file is sealed once, by that key file's
//! [`Sealer`], and the same datagram is sent to each of them; every receiver
//! checks the counter against its own window. Remotes with different key
//! files need one seal per key.

pub mod key;

mod aead;
mod open;
mod replay;
mod seal;
mod wire;

pub use key::{
    FileKind, KeyFileError, KeyFileProblem, KeyFileWarning, KeyFingerprint, LoadedKey, MasterKey, MIN_KEY_FILE_LEN,
};
pub use open::{OpenError, Opened, Opener, DEFAULT_MAX_SESSIONS};
pub use replay::REPLAY_WINDOW;
pub use seal::{OwnSessions, SealError, Sealer, SealerLimits};
pub use wire::{Header, Kind, SessionId, HEADER_LEN, OVERHEAD, TAG_LEN, VERSION};

use std::ops::Range;

/// Every time limit of the keyed format, in one place.
pub mod timing {
    use std::time::Duration;

    /// A session not yet known is accepted only if its start time is at
    /// most this far from the receiver's wall clock, either way.
    pub const FRESHNESS: Duration = Duration::from_secs(300);
    /// A sender starts a new session when its current one is this old.
    pub const MAX_SESSION_AGE: Duration = Duration::from_secs(120);
    /// When a peer's new session starts this far from our current one, the
    /// peer may refuse ours (see [`super::Transport::peer_session`]).
    pub const PEER_START_GAP: Duration = Duration::from_secs(150);
    /// A renewal for a peer's sake must bring our session start at least this
    /// much closer to the peer's clock, so renewing is worth it, at most one
    /// side of a pair renews, and no more often than this.
    pub const PEER_RENEW_MIN_GAIN: Duration = Duration::from_secs(10);
}

/// Both sides of one key file: what the daemon holds per distinct key.
///
/// It seals with the key's [`Sealer`] and opens with its [`Opener`], which
/// refuses the sealer's own sessions.
#[derive(Debug)]
pub struct Transport {
    sealer: Sealer,
    opener: Opener,
}

impl Transport {
    /// Both sides for `key`, with a new random session starting at
    /// `now_unix` and the default limits.
    pub fn new(key: &MasterKey, now_unix: u64) -> Result<Transport, SealError> {
        Ok(Transport::from_parts(
            Sealer::new(key, now_unix, SealerLimits::default())?,
            Opener::new(key, DEFAULT_MAX_SESSIONS),
        ))
    }

    /// Joins a sealer and an opener made by hand (tests, other limits). They
    /// should be of the same key.
    pub fn from_parts(sealer: Sealer, opener: Opener) -> Transport {
        Transport { sealer, opener }
    }

    /// See [`Sealer::seal_in_place`].
    pub fn seal_in_place(
        &mut self,
        buf: &mut [u8],
        payload_offset: usize,
        payload_len: usize,
        kind: Kind,
        now_unix: u64,
    ) -> Result<Range<usize>, SealError> {
        self.sealer.seal_in_place(buf, payload_offset, payload_len, kind, now_unix)
    }

    /// See [`Opener::open_in_place`]; our own sessions are refused.
    pub fn open_in_place(&mut self, datagram: &mut [u8], now_unix: u64) -> Result<Opened, OpenError> {
        self.opener.open_in_place(datagram, now_unix, self.sealer.own_sessions())
    }

    /// The sending side.
    pub fn sealer(&self) -> &Sealer {
        &self.sealer
    }

    /// The sending side, to renew its session ([`Sealer::rotate`]).
    pub fn sealer_mut(&mut self) -> &mut Sealer {
        &mut self.sealer
    }

    /// The receiving side.
    pub fn opener(&self) -> &Opener {
        &self.opener
    }

    /// Called when a datagram made a peer's session known
    /// ([`Opened::new_session`]), with that session's start time: renews our
    /// own session when the peer might not accept it. Returns true when it
    /// did.
    ///
    /// A peer that restarted knows none of our sessions and accepts ours
    /// only if its start is within [`timing::FRESHNESS`] of the peer's clock.
    /// A new session starts at about its sender's "now", so the peer's start
    /// tells us roughly what its clock says. When our session start is more
    /// than [`timing::PEER_START_GAP`] from it, and a session starting now
    /// would be at least [`timing::PEER_RENEW_MIN_GAIN`] closer, we renew, so
    /// that the peer accepts what we send next: one round trip after it
    /// spoke, not after our own renewal at [`timing::MAX_SESSION_AGE`].
    ///
    /// With clocks in agreement the gap is our session's age, under
    /// [`timing::MAX_SESSION_AGE`], and nothing happens: peers renewing do
    /// not make each other renew, which would multiply the sessions every
    /// receiver has to remember. With clocks far apart only the side whose
    /// clock is behind renews (for the other, a newer session of its own is
    /// no closer to the peer's clock), and at most once per
    /// [`timing::PEER_RENEW_MIN_GAIN`], since the gain is at most our age.
    pub fn peer_session(&mut self, peer_start: u64, now_unix: u64) -> Result<bool, SealError> {
        let gap = self.sealer.session_start().abs_diff(peer_start);
        let gap_if_renewed = now_unix.abs_diff(peer_start);
        if gap <= timing::PEER_START_GAP.as_secs()
            || gap_if_renewed.saturating_add(timing::PEER_RENEW_MIN_GAIN.as_secs()) > gap
        {
            return Ok(false);
        }
        self.sealer.rotate(now_unix)?;
        Ok(true)
    }
}
