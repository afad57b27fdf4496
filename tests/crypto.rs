//! The keyed datagram format through its public API: golden vectors that pin
//! the wire format, the receive rules of SPEC section 5 (every way a datagram
//! must be refused), session renewal, and key file handling.

use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rrqnet::crypto::{
    timing, FileKind, KeyFileProblem, KeyFileWarning, Kind, MasterKey, OpenError, Opener, Sealer, SealerLimits,
    SessionId, Transport, DEFAULT_MAX_SESSIONS, HEADER_LEN, OVERHEAD, REPLAY_WINDOW, TAG_LEN,
};

const NOW: u64 = 1_700_000_000;

fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(s: &str) -> Vec<u8> {
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap()).collect()
}

/// The key material of the golden vectors: bytes 0, 1, ..., 63.
fn golden_key() -> MasterKey {
    MasterKey::from_bytes(&(0..64u8).collect::<Vec<_>>()).unwrap()
}

fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes(&[byte; 64]).unwrap()
}

/// An ARP request, 42 bytes.
const FRAME_HEX: &str = "ffffffffffff020000000001080600010800060400010200000000010a000001000000000000000a000002";

/// Seals `payload` (a heartbeat when empty) and returns the datagram.
fn seal(s: &mut Sealer, payload: &[u8], now: u64) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    let kind = if payload.is_empty() { Kind::Heartbeat } else { Kind::Data };
    let r = s.seal_in_place(&mut buf, HEADER_LEN, payload.len(), kind, now).unwrap();
    assert_eq!(r, 0..buf.len());
    buf
}

/// A sender and a receiver of the same key, each with its own sessions.
fn pair(k: &MasterKey) -> (Sealer, Transport) {
    (Sealer::new(k, NOW, SealerLimits::default()).unwrap(), Transport::new(k, NOW).unwrap())
}

fn open(rx: &mut Transport, datagram: &[u8], now: u64) -> Result<Vec<u8>, OpenError> {
    let mut d = datagram.to_vec();
    let o = rx.open_in_place(&mut d, now)?;
    Ok(d[o.payload].to_vec())
}

fn frame(n: usize, tag: u64) -> Vec<u8> {
    (0..n).map(|i| (i as u64).wrapping_mul(31).wrapping_add(tag) as u8).collect()
}

// ---------------------------------------------------------------------------
// Golden vectors: the wire format must not change by accident. The expected
// bytes were computed independently (Python: hmac/hashlib HKDF, and the
// `cryptography` package's ChaCha20Poly1305) from the documented format.

#[test]
fn golden_data_datagram() {
    let k = golden_key();
    let mut s =
        Sealer::with_session(&k, SessionId(*b"0123456789abcdef"), NOW, 0x0102_0304_0506_0708, SealerLimits::default());
    let frame = unhex(FRAME_HEX);
    let d = seal(&mut s, &frame, NOW);
    assert_eq!(
        hex(&d),
        "0101303132333435363738396162636465660102030405060708000000006553f100\
         36267e81c8bcda3aacbef8471762cf3fb4c1b01e4a485cbbca446176382f804acc1416a53ae26c892c\
         145b7b8b2c0b8d7ccee1f812f622de10015d"
    );
    let mut rx = Opener::new(&k, 4);
    let own = Sealer::new(&k, NOW, SealerLimits::default()).unwrap();
    let mut buf = d.clone();
    let o = rx.open_in_place(&mut buf, NOW, own.own_sessions()).unwrap();
    assert_eq!((o.kind, o.counter, o.new_session), (Kind::Data, 0x0102_0304_0506_0708, true));
    assert_eq!(o.session, SessionId(*b"0123456789abcdef"));
    assert_eq!(buf[o.payload], frame[..]);
}

#[test]
fn golden_heartbeat_datagram() {
    let k = golden_key();
    let mut s = Sealer::with_session(&k, SessionId(*b"0123456789abcdef"), NOW, 7, SealerLimits::default());
    let d = seal(&mut s, &[], NOW);
    assert_eq!(d.len(), OVERHEAD);
    assert_eq!(
        hex(&d),
        "0102303132333435363738396162636465660000000000000007000000006553f100\
         9cbe8224d22d1320d36fff5af832386b"
    );
}

#[test]
fn golden_fingerprint() {
    assert_eq!(golden_key().fingerprint().to_string(), "c3ad36c96d912237");
}

// ---------------------------------------------------------------------------
// Round trips.

#[test]
fn data_and_heartbeats_round_trip_in_place() {
    let k = key(1);
    let (mut tx, mut rx) = pair(&k);
    for (i, n) in [1usize, 14, 60, 1400, 9000, 65_000].into_iter().enumerate() {
        let f = frame(n, i as u64);
        // Headroom and tailroom inside a larger buffer, as the daemon has it.
        let mut buf = vec![0xeeu8; 100 + HEADER_LEN + n + TAG_LEN + 100];
        let off = 100 + HEADER_LEN;
        buf[off..off + n].copy_from_slice(&f);
        let r = tx.seal_in_place(&mut buf, off, n, Kind::Data, NOW).unwrap();
        assert_eq!(r, 100..off + n + TAG_LEN);
        assert!(buf[..100].iter().chain(&buf[r.end..]).all(|&b| b == 0xee), "outside the datagram untouched");
        assert_ne!(buf[off..off + n], f[..], "encrypted");
        let o = rx.open_in_place(&mut buf[r.clone()], NOW).unwrap();
        assert_eq!(o.kind, Kind::Data);
        assert_eq!(o.payload, HEADER_LEN..HEADER_LEN + n);
        assert_eq!(buf[r][o.payload], f[..]);
        assert_eq!(o.new_session, i == 0);
    }
    let hb = seal(&mut tx, &[], NOW);
    let mut d = hb.clone();
    let o = rx.open_in_place(&mut d, NOW).unwrap();
    assert_eq!((o.kind, o.payload.len()), (Kind::Heartbeat, 0));
}

#[test]
fn a_datagram_sealed_once_is_accepted_by_every_receiver_of_the_key_once() {
    let k = key(2);
    let mut tx = Sealer::new(&k, NOW, SealerLimits::default()).unwrap();
    let mut receivers: Vec<Transport> = (0..3).map(|_| Transport::new(&k, NOW).unwrap()).collect();
    for i in 0..5 {
        let f = frame(200, i);
        let d = seal(&mut tx, &f, NOW);
        for rx in &mut receivers {
            assert_eq!(open(rx, &d, NOW), Ok(f.clone()));
            assert_eq!(open(rx, &d, NOW), Err(OpenError::Replay));
        }
    }
}

// ---------------------------------------------------------------------------
// What must be refused.

#[test]
fn every_single_bit_flip_is_rejected() {
    let k = key(3);
    let (mut tx, mut rx) = pair(&k);
    // One accepted datagram first, so flips are tested against a known
    // session (replay window) as well as an unknown one.
    for known in [false, true] {
        if known {
            let d = seal(&mut tx, &frame(20, 99), NOW);
            assert!(open(&mut rx, &d, NOW).is_ok());
        }
        for d in [seal(&mut tx, &frame(64, 1), NOW), seal(&mut tx, &[], NOW)] {
            for bit in 0..d.len() * 8 {
                let mut bad = d.clone();
                bad[bit / 8] ^= 1 << (bit % 8);
                assert!(open(&mut rx, &bad, NOW).is_err(), "bit {bit} of {} (known session: {known})", d.len());
            }
            // Nothing above changed the receiver: the genuine one still works.
            assert!(open(&mut rx, &d, NOW).is_ok());
        }
    }
}

#[test]
fn every_truncation_is_rejected() {
    let k = key(4);
    let (mut tx, mut rx) = pair(&k);
    let d = seal(&mut tx, &frame(100, 4), NOW);
    for n in 0..d.len() {
        let got = open(&mut rx, &d[..n], NOW);
        assert!(got.is_err(), "length {n}");
        if n < OVERHEAD {
            assert_eq!(got, Err(OpenError::Malformed), "length {n}");
        }
    }
    // A heartbeat cut short, down to nothing.
    let hb = seal(&mut tx, &[], NOW);
    for n in 0..hb.len() {
        assert_eq!(open(&mut rx, &hb[..n], NOW), Err(OpenError::Malformed), "length {n}");
    }
    assert!(open(&mut rx, &d, NOW).is_ok());
    assert!(open(&mut rx, &hb, NOW).is_ok());
}

#[test]
fn another_key_is_rejected() {
    let (mut tx, _) = pair(&key(5));
    let mut rx = Transport::new(&key(6), NOW).unwrap();
    let d = seal(&mut tx, &frame(60, 5), NOW);
    assert_eq!(open(&mut rx, &d, NOW), Err(OpenError::BadAuth));
    assert_eq!(rx.opener().session_count(), 0);
    let hb = seal(&mut tx, &[], NOW);
    assert_eq!(open(&mut rx, &hb, NOW), Err(OpenError::BadAuth));
}

#[test]
fn the_same_datagram_twice_is_accepted_once() {
    let (mut tx, mut rx) = pair(&key(7));
    let d = seal(&mut tx, &frame(60, 7), NOW);
    assert!(open(&mut rx, &d, NOW).is_ok());
    assert_eq!(open(&mut rx, &d, NOW), Err(OpenError::Replay));
    let hb = seal(&mut tx, &[], NOW);
    assert!(open(&mut rx, &hb, NOW).is_ok());
    assert_eq!(open(&mut rx, &hb, NOW), Err(OpenError::Replay));
}

#[test]
fn reordering_inside_the_window_is_accepted_once_each_and_older_is_not() {
    let (mut tx, mut rx) = pair(&key(8));
    let sent: Vec<Vec<u8>> = (0..(REPLAY_WINDOW + 10)).map(|i| seal(&mut tx, &frame(16, i), NOW)).collect();
    // The newest first, then everything back to the window's edge, newest
    // to oldest; each once.
    let top = sent.len() - 1;
    assert!(open(&mut rx, &sent[top], NOW).is_ok());
    let oldest = top - REPLAY_WINDOW as usize;
    for i in (oldest..top).rev() {
        assert_eq!(open(&mut rx, &sent[i], NOW), Ok(frame(16, i as u64)), "counter {i}");
    }
    for (i, d) in sent.iter().enumerate().skip(oldest) {
        assert_eq!(open(&mut rx, d, NOW), Err(OpenError::Replay), "counter {i} again");
    }
    for (i, d) in sent.iter().enumerate().take(oldest) {
        assert_eq!(open(&mut rx, d, NOW), Err(OpenError::Replay), "counter {i}, behind the window");
    }
}

#[test]
fn a_swapped_pair_and_a_gap_are_fine() {
    let (mut tx, mut rx) = pair(&key(9));
    let d: Vec<Vec<u8>> = (0..6).map(|i| seal(&mut tx, &frame(30, i), NOW)).collect();
    for i in [1, 0, 3, 5, 2, 4] {
        assert_eq!(open(&mut rx, &d[i], NOW), Ok(frame(30, i as u64)));
    }
}

#[test]
fn our_own_datagrams_are_rejected() {
    let mut t = Transport::new(&key(10), NOW).unwrap();
    let mut buf = vec![0u8; HEADER_LEN + 40 + TAG_LEN];
    let r = t.seal_in_place(&mut buf, HEADER_LEN, 40, Kind::Data, NOW).unwrap();
    let mut d = buf[r].to_vec();
    assert_eq!(t.open_in_place(&mut d, NOW), Err(OpenError::OwnSession));
    // Also the sessions we had before renewing ours.
    let old = t.sealer().session();
    t.sealer_mut().rotate(NOW + 1).unwrap();
    assert_ne!(t.sealer().session(), old);
    let mut d = buf.clone();
    assert_eq!(t.open_in_place(&mut d, NOW + 1), Err(OpenError::OwnSession));
    assert_eq!(t.opener().session_count(), 0);
}

#[test]
fn a_new_session_must_start_within_300_seconds_of_now() {
    let k = key(11);
    let fresh = timing::FRESHNESS.as_secs();
    assert_eq!(fresh, 300);
    for (start, ok) in
        [(NOW - fresh - 1, false), (NOW - fresh, true), (NOW, true), (NOW + fresh, true), (NOW + fresh + 1, false)]
    {
        let mut tx = Sealer::new(&k, start, SealerLimits::default()).unwrap();
        let d = seal(&mut tx, &frame(30, 11), start);
        let mut rx = Transport::new(&k, NOW).unwrap();
        let got = open(&mut rx, &d, NOW);
        if ok {
            assert!(got.is_ok(), "start {start}");
        } else {
            assert_eq!(got, Err(OpenError::StaleSession), "start {start}");
            assert_eq!(rx.opener().session_count(), 0);
        }
    }
}

#[test]
fn a_known_session_stays_accepted_as_it_ages() {
    let k = key(12);
    let limits = SealerLimits { max_session_age: std::time::Duration::from_secs(100_000), ..SealerLimits::default() };
    let mut tx = Sealer::new(&k, NOW, limits).unwrap();
    let mut rx = Transport::new(&k, NOW).unwrap();
    assert!(open(&mut rx, &seal(&mut tx, &frame(30, 1), NOW), NOW).is_ok());
    let later = NOW + 10 * timing::FRESHNESS.as_secs();
    assert!(open(&mut rx, &seal(&mut tx, &frame(30, 2), later), later).is_ok());
    // But a receiver that never saw it refuses it: an old capture replayed
    // after a restart.
    let mut restarted = Transport::new(&k, later).unwrap();
    assert_eq!(open(&mut restarted, &seal(&mut tx, &frame(30, 3), later), later), Err(OpenError::StaleSession));
}

#[test]
fn an_old_capture_is_refused_after_the_receiver_restarts() {
    let k = key(13);
    let (mut tx, mut rx) = pair(&k);
    let captured: Vec<Vec<u8>> = (0..3).map(|i| seal(&mut tx, &frame(30, i), NOW)).collect();
    for d in &captured {
        assert!(open(&mut rx, d, NOW).is_ok());
    }
    let later = NOW + timing::FRESHNESS.as_secs() + 1;
    let mut restarted = Transport::new(&k, later).unwrap();
    for d in &captured {
        assert_eq!(open(&mut restarted, d, later), Err(OpenError::StaleSession));
    }
}

#[test]
fn a_counter_at_its_limit_renews_the_session_and_the_receiver_accepts_the_new_one() {
    let k = key(14);
    let limits = SealerLimits { counter_limit: 4, ..SealerLimits::default() };
    let mut tx = Sealer::new(&k, NOW, limits).unwrap();
    let mut rx = Transport::new(&k, NOW).unwrap();
    let first = tx.session();
    let mut sessions = Vec::new();
    for i in 0..10u64 {
        let d = seal(&mut tx, &frame(30, i), NOW);
        let mut buf = d.clone();
        let o = rx.open_in_place(&mut buf, NOW).unwrap();
        assert_eq!(o.counter, i % 4, "datagram {i}");
        assert_eq!(o.new_session, i % 4 == 0, "datagram {i}");
        sessions.push(o.session);
    }
    assert_eq!(sessions[0], first);
    assert_ne!(sessions[4], first);
    assert_ne!(sessions[8], sessions[4]);
    assert_eq!(rx.opener().session_count(), 3);
}

#[test]
fn a_restarted_receiver_hears_a_long_running_sender_after_its_next_renewal() {
    let k = key(15);
    let (mut tx, _) = pair(&k);
    let age = timing::MAX_SESSION_AGE.as_secs();
    // The sender has run for a long time: 20 renewals.
    let mut now = NOW;
    for _ in 0..20 {
        now += age;
        seal(&mut tx, &frame(30, 0), now);
    }
    // A receiver starts now and hears the current session: it is fresh.
    let mut rx = Transport::new(&k, now).unwrap();
    for dt in [0, age / 2, age - 1, age, age + 1] {
        let d = seal(&mut tx, &frame(30, dt), now + dt);
        assert!(open(&mut rx, &d, now + dt).is_ok(), "{dt} s after the receiver started");
    }
}

/// `Transport::peer_session` with our session started at NOW and the
/// clock at `NOW + age`: did a peer session starting at `NOW + age + skew`
/// (a peer whose clock is `skew` seconds from ours) make us renew?
fn renews(age: u64, skew: i64) -> bool {
    let mut t = Transport::new(&key(30), NOW).unwrap();
    let before = t.sealer().session();
    let now = NOW + age;
    let renewed = t.peer_session(now.checked_add_signed(skew).unwrap(), now).unwrap();
    assert_eq!(renewed, t.sealer().session() != before);
    if renewed {
        assert_eq!((t.sealer().session_start(), t.sealer().next_counter()), (now, 0));
    }
    renewed
}

#[test]
fn peers_whose_clocks_agree_never_make_us_renew() {
    for age in 0..timing::MAX_SESSION_AGE.as_secs() {
        for skew in [-5, 0, 5] {
            assert!(!renews(age, skew), "age {age}, skew {skew}");
        }
    }
}

#[test]
fn a_peer_far_ahead_makes_us_renew_when_that_gains_ten_seconds() {
    let gap = timing::PEER_START_GAP.as_secs() as i64;
    let gain = timing::PEER_RENEW_MIN_GAIN.as_secs();
    // Our session 10 s old, the peer's clock 200 s ahead: 210 s apart now,
    // 200 s after a renewal.
    assert!(renews(gain, 200));
    assert!(!renews(gain - 1, 200), "not for less than the minimum gain");
    // The gap must exceed 150 s.
    assert!(!renews(gain, gap - gain as i64));
    assert!(renews(gain, gap - gain as i64 + 1));
    assert!(renews(100, 60), "an old session and a peer somewhat ahead: 160 s apart");
    // A peer behind us is closer to our older session than to a new one.
    for age in [0, 10, 60, 119] {
        for skew in [-100, -200, -290] {
            assert!(!renews(age, skew), "age {age}, skew {skew}");
        }
    }
}

#[test]
fn two_peers_with_distant_clocks_do_not_make_each_other_renew() {
    let k = key(31);
    // B's clock is 200 s ahead of A's; A's session is 30 s old when B restarts.
    let mut a = Transport::new(&k, NOW).unwrap();
    let a_now = NOW + 30;
    let mut b = Transport::new(&k, a_now + 200).unwrap();
    assert_eq!(a.peer_session(b.sealer().session_start(), a_now), Ok(true));
    // B hears A's new session: a session of its own starting now would be no
    // closer to A's clock.
    for b_age in [0, 1, 30, 119] {
        assert_eq!(b.peer_session(a.sealer().session_start(), a_now + 200 + b_age), Ok(false), "B at age {b_age}");
    }
    // When B renews later, A renews again only once its session gained 10 s.
    assert_eq!(a.peer_session(a_now + 5 + 200, a_now + 5), Ok(false));
    assert_eq!(a.peer_session(a_now + 120 + 200, a_now + 120), Ok(true));
}

#[test]
fn a_restarted_peer_accepts_what_we_send_next_whatever_the_clocks_within_290_seconds() {
    let k = key(32);
    for age in 0..timing::MAX_SESSION_AGE.as_secs() {
        for skew in (-290..=290i64).step_by(10) {
            let mut us = Transport::new(&k, NOW).unwrap();
            let now = NOW + age;
            let peer_now = now.checked_add_signed(skew).unwrap();
            let mut peer = Transport::new(&k, peer_now).unwrap();
            us.peer_session(peer.sealer().session_start(), now).unwrap();
            let mut d = vec![0u8; OVERHEAD + 20];
            us.seal_in_place(&mut d, HEADER_LEN, 20, Kind::Data, now).unwrap();
            assert!(peer.open_in_place(&mut d, peer_now).is_ok(), "age {age}, skew {skew}");
        }
    }
}

#[test]
fn a_failed_datagram_changes_nothing() {
    let k = key(16);
    let (mut tx, mut rx) = pair(&k);
    let d0 = seal(&mut tx, &frame(30, 0), NOW);
    let d1 = seal(&mut tx, &frame(30, 1), NOW);
    // A forgery of the next counter, far ahead counters, and a new session
    // that does not authenticate: none moves the window or fills the cache.
    let mut forged = d1.clone();
    *forged.last_mut().unwrap() ^= 1;
    assert_eq!(open(&mut rx, &forged, NOW), Err(OpenError::BadAuth));
    assert_eq!(rx.opener().session_count(), 0);
    assert!(open(&mut rx, &d0, NOW).is_ok());
    let mut ahead = d1.clone();
    ahead[18..26].copy_from_slice(&(1u64 << 40).to_be_bytes());
    assert_eq!(open(&mut rx, &ahead, NOW), Err(OpenError::BadAuth));
    assert_eq!(open(&mut rx, &forged, NOW), Err(OpenError::BadAuth));
    assert!(open(&mut rx, &d1, NOW).is_ok());
    // Counter u64::MAX is never sent and refused before decryption.
    let mut last = d1.clone();
    last[18..26].copy_from_slice(&u64::MAX.to_be_bytes());
    assert_eq!(open(&mut rx, &last, NOW), Err(OpenError::Malformed));
    assert_eq!(rx.opener().session_count(), 1);
}

#[test]
fn malformed_shapes_are_named_malformed() {
    let k = key(17);
    let (mut tx, mut rx) = pair(&k);
    let d = seal(&mut tx, &frame(30, 0), NOW);
    let hb = seal(&mut tx, &[], NOW);
    let mut v = d.clone();
    v[0] = 2;
    assert_eq!(open(&mut rx, &v, NOW), Err(OpenError::Malformed), "version");
    let mut v = d.clone();
    v[1] = 0;
    assert_eq!(open(&mut rx, &v, NOW), Err(OpenError::Malformed), "type");
    let mut v = d.clone();
    v[1] = 2;
    assert_eq!(open(&mut rx, &v, NOW), Err(OpenError::Malformed), "heartbeat with payload");
    let mut v = hb.clone();
    v[1] = 1;
    assert_eq!(open(&mut rx, &v, NOW), Err(OpenError::Malformed), "data without payload");
    // A known session's start time is part of the session.
    assert!(open(&mut rx, &d, NOW).is_ok());
    let mut v = hb.clone();
    v[33] ^= 1;
    assert_eq!(open(&mut rx, &v, NOW), Err(OpenError::Malformed), "start of a known session changed");
    assert!(open(&mut rx, &hb, NOW).is_ok());
}

#[test]
fn the_session_cache_is_bounded_and_never_forgets_a_fresh_session() {
    let k = key(18);
    let own = Sealer::new(&k, NOW, SealerLimits::default()).unwrap();
    let mut rx = Opener::new(&k, 2);
    let mut senders: Vec<Sealer> = (0..3).map(|_| Sealer::new(&k, NOW, SealerLimits::default()).unwrap()).collect();
    let try_open = |rx: &mut Opener, s: &mut Sealer, now: u64| {
        let mut d = seal(s, &frame(20, 0), now);
        rx.open_in_place(&mut d, now, own.own_sessions())
    };
    assert!(try_open(&mut rx, &mut senders[0], NOW).is_ok());
    assert!(try_open(&mut rx, &mut senders[1], NOW).is_ok());
    assert_eq!(try_open(&mut rx, &mut senders[2], NOW), Err(OpenError::SessionCacheFull));
    assert_eq!(rx.session_count(), 2);
    // Sender 0 is used again later, so sender 1 is the least recently used.
    let later = NOW + timing::FRESHNESS.as_secs() + 1;
    let keep_age = |s: &Sealer| {
        // Keep the old session despite the age, as a sender with a long
        // renewal interval would.
        let mut d = vec![0u8; HEADER_LEN + 20 + TAG_LEN];
        let limits =
            SealerLimits { max_session_age: std::time::Duration::from_secs(10_000), ..SealerLimits::default() };
        let mut s2 = Sealer::with_session(&k, s.session(), s.session_start(), s.next_counter(), limits);
        s2.seal_in_place(&mut d, HEADER_LEN, 20, Kind::Data, later).unwrap();
        d
    };
    let mut d = keep_age(&senders[0]);
    assert!(rx.open_in_place(&mut d, later, own.own_sessions()).is_ok());
    let s1 = senders[1].session();
    let s0 = senders[0].session();
    // Both cached sessions are now stale; a new fresh one evicts sender 1's.
    let mut fresh3 = Sealer::new(&k, later, SealerLimits::default()).unwrap();
    assert!(try_open(&mut rx, &mut fresh3, later).is_ok());
    assert!(!rx.knows(&s1));
    assert!(rx.knows(&s0));
    assert_eq!(rx.session_count(), 2);
    assert_eq!(DEFAULT_MAX_SESSIONS, 4 * rrqnet::switch::DEFAULT_MAX_PORTS);
}

// ---------------------------------------------------------------------------
// Key files.

/// A scratch directory removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Scratch {
        let p = std::env::temp_dir().join(format!("rrqnet-crypto-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&p);
        fs::create_dir_all(&p).unwrap();
        Scratch(p)
    }

    fn file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let p = self.0.join(name);
        fs::write(&p, content).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

fn load_err(path: &Path) -> (KeyFileProblem, String) {
    match MasterKey::load(path) {
        Ok(_) => panic!("{} loaded", path.display()),
        Err(e) => {
            let line = e.to_string();
            assert!(line.contains(&path.display().to_string()), "{line:?} names the path");
            assert_eq!(e.path, path);
            (e.problem, line)
        }
    }
}

#[test]
fn unusable_key_files_are_errors_naming_the_path_and_the_reason() {
    let dir = Scratch::new("bad");
    let (p, line) = load_err(&dir.0.join("missing.key"));
    assert!(matches!(p, KeyFileProblem::Open(ref e) if e.kind() == std::io::ErrorKind::NotFound), "{line}");
    assert!(line.contains("No such file"), "{line}");

    let (p, line) = load_err(&dir.file("empty.key", b"", 0o600));
    assert!(matches!(p, KeyFileProblem::Empty), "{line}");
    assert!(line.contains("is empty"), "{line}");

    let (p, line) = load_err(&dir.file("short.key", &[7; 31], 0o600));
    assert!(matches!(p, KeyFileProblem::TooShort(31)), "{line}");
    assert!(line.contains("too short: 31 bytes"), "{line}");

    let sub = dir.0.join("a-directory");
    fs::create_dir(&sub).unwrap();
    let (p, line) = load_err(&sub);
    assert!(matches!(p, KeyFileProblem::Directory), "{line}");
    assert!(line.contains("is a directory"), "{line}");

    let (p, line) = load_err(Path::new("/dev/null"));
    assert!(matches!(p, KeyFileProblem::NotRegular(FileKind::CharDevice)), "{line}");
    assert!(line.ends_with("/dev/null: is a character device, not a regular file"), "{line}");
}

#[test]
fn a_key_file_readable_by_others_is_used_with_a_warning() {
    let dir = Scratch::new("perm");
    for (mode, warn) in [(0o644, true), (0o640, true), (0o604, true), (0o600, false), (0o400, false)] {
        let p = dir.file(&format!("k{mode:o}"), &[1; 64], mode);
        let loaded = MasterKey::load(&p).unwrap();
        assert_eq!(loaded.key.fingerprint(), key(1).fingerprint());
        match loaded.warning {
            Some(w @ KeyFileWarning::ReadableByOthers { .. }) => {
                assert!(warn, "mode {mode:o}");
                let line = w.to_string();
                assert!(line.contains(&p.display().to_string()) && line.contains(&format!("{mode:04o}")), "{line}");
            }
            Some(w) => panic!("mode {mode:o}: {w}"),
            None => assert!(!warn, "mode {mode:o}"),
        }
    }
}

#[test]
fn key_files_of_32_bytes_and_of_1_mib_are_read_whole() {
    let dir = Scratch::new("ok");
    let p = dir.file("32.key", &(0..32u8).collect::<Vec<_>>(), 0o600);
    let k = MasterKey::load(&p).unwrap();
    assert!(k.warning.is_none());
    assert_eq!(k.key.fingerprint(), MasterKey::from_bytes(&(0..32u8).collect::<Vec<_>>()).unwrap().fingerprint());

    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8).collect();
    let p = dir.file("1m.key", &big, 0o600);
    let k = MasterKey::load(&p).unwrap().key;
    assert_eq!(k.fingerprint(), MasterKey::from_bytes(&big).unwrap().fingerprint());
    // The last byte counts: the whole file is read.
    let mut changed = big.clone();
    *changed.last_mut().unwrap() ^= 1;
    let p2 = dir.file("1m-changed.key", &changed, 0o600);
    assert_ne!(MasterKey::load(&p2).unwrap().key.fingerprint(), k.fingerprint());

    // Two hosts with copies of the file talk.
    let mut tx = Sealer::new(&k, NOW, SealerLimits::default()).unwrap();
    let mut rx = Transport::new(&MasterKey::load(&p).unwrap().key, NOW).unwrap();
    assert_eq!(open(&mut rx, &seal(&mut tx, &frame(100, 0), NOW), NOW), Ok(frame(100, 0)));
}

/// Makes a FIFO with mkfifo(1) (the tests have no unsafe code to call
/// mkfifo(3) with).
fn mkfifo(path: &Path) {
    let status = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo(1) runs");
    assert!(status.success(), "mkfifo {}", path.display());
}

/// Loads `path` on another thread and gives up after `limit`: a load that
/// blocks fails the test instead of hanging it. On a timeout the FIFO, if
/// that is what `path` is, gets a writer so that the stuck thread ends.
fn load_within(path: &Path, limit: std::time::Duration) -> Result<rrqnet::crypto::LoadedKey, (KeyFileProblem, String)> {
    let (tx, rx) = std::sync::mpsc::channel();
    let p = path.to_path_buf();
    let started = std::time::Instant::now();
    let worker = std::thread::spawn(move || {
        let _ = tx.send(MasterKey::load(&p).map_err(|e| (e.to_string(), e)));
    });
    match rx.recv_timeout(limit) {
        Ok(r) => {
            worker.join().unwrap();
            r.map_err(|(line, e)| {
                assert!(line.contains(&path.display().to_string()), "{line:?} names the path");
                (e.problem, line)
            })
        }
        Err(_) => {
            use std::os::unix::fs::OpenOptionsExt;
            let _writer = fs::OpenOptions::new().write(true).custom_flags(libc::O_NONBLOCK).open(path);
            let _ = worker.join();
            panic!("loading {} took more than {limit:?} ({:?})", path.display(), started.elapsed());
        }
    }
}

#[test]
fn a_fifo_key_file_is_refused_at_once_naming_the_path() {
    let dir = Scratch::new("fifo");
    let fifo = dir.0.join("fifo.key");
    mkfifo(&fifo);
    // Nobody writes to it: opening it for reading the usual way waits for a
    // writer, for ever, and the daemon never started.
    let started = std::time::Instant::now();
    let (p, line) = load_within(&fifo, std::time::Duration::from_secs(5)).map(|_| ()).unwrap_err();
    assert!(matches!(p, KeyFileProblem::NotRegular(FileKind::Fifo)), "{line}");
    assert_eq!(line, format!("key file {}: is a FIFO (named pipe), not a regular file", fifo.display()));
    assert!(started.elapsed() < std::time::Duration::from_secs(1), "{:?}", started.elapsed());

    // The same behind a symbolic link, which is otherwise fine.
    let link = dir.0.join("link.key");
    std::os::unix::fs::symlink(&fifo, &link).unwrap();
    let (p, _) = load_within(&link, std::time::Duration::from_secs(5)).map(|_| ()).unwrap_err();
    assert!(matches!(p, KeyFileProblem::NotRegular(FileKind::Fifo)));
}

#[test]
fn sockets_devices_and_directories_are_refused_naming_what_they_are() {
    let dir = Scratch::new("kinds");
    let sock = dir.0.join("sock.key");
    let _listener = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let limit = std::time::Duration::from_secs(5);
    let (p, line) = load_within(&sock, limit).map(|_| ()).unwrap_err();
    assert!(matches!(p, KeyFileProblem::NotRegular(FileKind::Socket)), "{line}");
    assert!(line.ends_with(": is a socket, not a regular file"), "{line}");

    for dev in ["/dev/null", "/dev/zero", "/dev/urandom"] {
        let (p, line) = load_within(Path::new(dev), limit).map(|_| ()).unwrap_err();
        assert!(matches!(p, KeyFileProblem::NotRegular(FileKind::CharDevice)), "{line}");
    }

    let sub = dir.0.join("dir.key");
    fs::create_dir(&sub).unwrap();
    let (p, line) = load_within(&sub, limit).map(|_| ()).unwrap_err();
    assert!(matches!(p, KeyFileProblem::Directory), "{line}");
}

#[test]
fn a_symlink_to_a_key_file_is_a_key_file() {
    let dir = Scratch::new("symlink");
    let target = dir.file("real.key", &[1; 64], 0o600);
    let link = dir.0.join("link.key");
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let loaded = MasterKey::load(&link).unwrap();
    assert_eq!(loaded.key.fingerprint(), key(1).fingerprint());
    assert!(loaded.warning.is_none(), "the link's own mode (0777) is not the file's");
}

#[test]
fn a_key_file_writable_by_others_is_used_with_a_warning() {
    let dir = Scratch::new("writable");
    for (mode, readable) in [(0o602, false), (0o620, false), (0o622, false), (0o666, true), (0o646, true)] {
        let p = dir.file(&format!("k{mode:o}"), &[1; 64], mode);
        let loaded = MasterKey::load(&p).unwrap();
        assert_eq!(loaded.key.fingerprint(), key(1).fingerprint());
        let w = loaded.warning.unwrap_or_else(|| panic!("mode {mode:o} gave no warning"));
        let line = w.to_string();
        assert!(line.starts_with(&format!("key file {} is ", p.display())), "{line}");
        assert!(line.contains("writable by"), "{line}");
        assert!(line.contains(&format!("(mode {mode:04o})")), "{line}");
        match w {
            KeyFileWarning::ReadableByOthers { .. } => assert!(readable, "{line}"),
            KeyFileWarning::WritableByOthers { .. } => assert!(!readable, "{line}"),
        }
    }
    // Group-readable warns; the owner's own bits never do.
    for (mode, warn) in [(0o640, true), (0o600, false), (0o700, false), (0o400, false)] {
        let p = dir.file(&format!("g{mode:o}"), &[1; 64], mode);
        assert_eq!(MasterKey::load(&p).unwrap().warning.is_some(), warn, "mode {mode:o}");
    }
}

/// The daemon given a FIFO as a key file exits 1 at once with one line
/// naming it, as it does for any unusable key file (it used to hang).
#[test]
fn the_daemon_refuses_a_fifo_key_file_at_start() {
    let dir = Scratch::new("daemon-fifo");
    let fifo = dir.0.join("fifo.key");
    mkfifo(&fifo);
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port().to_string();
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_rrqnet"))
        .args(["-t", "-", &port, &format!("127.0.0.1:9={}", fifo.display())])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            // Our own child, by its handle.
            let _ = child.kill();
            let _ = child.wait();
            panic!("rrqnet still running 10 s after start with a FIFO key file");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(status.code(), Some(1), "{err}");
    assert_eq!(
        err.trim_end(),
        format!("rrqnet: key file {}: is a FIFO (named pipe), not a regular file", fifo.display())
    );
    assert!(out.stdout.is_empty());
}
