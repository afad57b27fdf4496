//! The node's send path and admission, driven by hand: what it plans for
//! each channel, byte for byte, without a socket.

use super::*;
use crate::config::parse_remote;
use crate::crypto::{Header, Opener, Sealer, OVERHEAD};
use allocation_counter::measure;

const UDP: ChanId = 0;
const LOCAL: ChanId = 1;
const T0: u64 = 1_800_000_000;

fn now() -> Now {
    Now { mono: Instant::now(), unix: T0 }
}

fn key(byte: u8) -> MasterKey {
    MasterKey::from_bytes(&[byte; 64]).unwrap()
}

fn node(remotes: &[(&str, Option<usize>)], keys: Vec<MasterKey>, now: Now) -> Node {
    let setup = Setup {
        remotes: remotes.iter().map(|(r, k)| (parse_remote(r, false).unwrap(), *k)).collect(),
        keys,
        channels: 2,
        local: Some(LOCAL),
        udp: Some(UDP),
        multicast: None,
        switch: Params::default(),
        batch: 32,
    };
    Node::new(setup, now).unwrap()
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize) -> Vec<u8> {
    crate::testing::frame_with(dst, src, len, |i| (i * 13) as u8)
}

/// What the node planned, per channel: (destination, bytes).
pub(super) fn planned(n: &mut Node, now: Now) -> Vec<Vec<(Option<SocketAddr>, Vec<u8>)>> {
    let mut out = vec![Vec::new(), Vec::new()];
    n.flush_with(now, |chan, arena, batch| {
        out[chan].extend(batch.iter().map(|d| (d.to, arena[d.range.clone()].to_vec())));
        Ok::<_, ()>(SendReport { sent: batch.len(), failed: 0, too_large: 0 })
    })
    .unwrap();
    out
}

/// A flood from the local end to two uplinks of one key (two files with the
/// same content), one of another key and a plain one: one seal per key, the
/// same datagram to both uplinks of the first key, the frame to the plain
/// one; no allocation once warmed up.
#[test]
fn a_flood_seals_once_per_key_and_allocates_nothing() {
    let now = now();
    let remotes = [
        ("192.0.2.1:2300", Some(0)),
        ("192.0.2.2:2300", Some(1)),
        ("192.0.2.3:2300", Some(2)),
        ("192.0.2.4:2300", None),
    ];
    let mut n = node(&remotes, vec![key(1), key(1), key(2)], now);
    assert_eq!(n.key_count(), 2, "two files with one content are one key");
    let _ = planned(&mut n, now);
    let f = frame([0xff; 6], [2, 0, 0, 0, 0, 1], 1000);
    let send = |n: &mut Node| {
        let mut buf = f.clone();
        n.handle_input(now, LOCAL, None, &mut buf, 0..1000);
        assert_eq!(n.plan().len(), 4);
        assert_eq!(n.plan().arena().len(), 1000 + 2 * (HEADROOM + 1000 + crate::plan::TAILROOM));
        n.flush_with(now, |_, _, b| Ok::<_, ()>(SendReport { sent: b.len(), failed: 0, too_large: 0 })).unwrap();
    };
    send(&mut n);
    let mut buf = f.clone();
    let info = measure(|| {
        for _ in 0..50 {
            buf.copy_from_slice(&f);
            n.handle_input(now, LOCAL, None, &mut buf, 0..1000);
            n.flush_with(now, |_, _, b| Ok::<_, ()>(SendReport { sent: b.len(), failed: 0, too_large: 0 })).unwrap();
        }
    });
    assert_eq!(info.count_total, 0, "the keyed send path allocated: {info:?}");

    n.handle_input(now, LOCAL, None, &mut f.clone(), 0..1000);
    let out = planned(&mut n, now);
    let udp = &out[UDP];
    assert_eq!(udp.len(), 4);
    let by = |a: &str| udp.iter().find(|(to, _)| *to == Some(a.parse().unwrap())).unwrap().1.clone();
    let (a, b, c, d) = (by("192.0.2.1:2300"), by("192.0.2.2:2300"), by("192.0.2.3:2300"), by("192.0.2.4:2300"));
    assert_eq!(a, b, "one seal for both uplinks of key 1");
    assert_eq!(d, f, "the plain uplink gets the frame");
    assert_eq!(a.len(), 1000 + OVERHEAD);
    assert_eq!((Header::parse(&a).unwrap().counter, Header::parse(&c).unwrap().counter), (51, 51));
    let mut rx1 = crate::crypto::Transport::from_parts(
        Sealer::new(&key(1), T0, Default::default()).unwrap(),
        Opener::new(&key(1), 16),
    );
    let mut a = a;
    let o = rx1.open_in_place(&mut a, T0).unwrap();
    assert_eq!(a[o.payload], f[..]);
    let mut rx2 = crate::crypto::Transport::new(&key(2), T0).unwrap();
    let mut c = c;
    let o = rx2.open_in_place(&mut c, T0).unwrap();
    assert_eq!(c[o.payload], f[..]);
    assert!(out[LOCAL].is_empty(), "never back to the ingress");
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
            tx.seal_in_place(&mut d, crate::crypto::HEADER_LEN, 100, Kind::Data, 1_700_000_000).unwrap();
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

/// SPEC 5's order: an undeclared source, a forgery and a short plain
/// datagram change nothing; a declared plain datagram makes a remote.
#[test]
fn admission_follows_the_declarations() {
    let now = now();
    let mut n = node(&[("198.51.100.0/24:2300", None), ("203.0.113.0/24=k", Some(0))], vec![key(9)], now);
    let f = frame([0xff; 6], [2, 0, 0, 0, 0, 7], 60);
    let undeclared: SocketAddr = "192.0.2.9:2300".parse().unwrap();
    n.handle_input(now, UDP, Some(undeclared), &mut f.clone(), 0..60);
    assert_eq!(n.stats().dropped(DropReason::UnknownSource), 1);
    let wrong_port: SocketAddr = "198.51.100.5:2301".parse().unwrap();
    n.handle_input(now, UDP, Some(wrong_port), &mut f.clone(), 0..60);
    assert_eq!(n.stats().dropped(DropReason::UnknownSource), 2);
    let keyed_src: SocketAddr = "203.0.113.5:9".parse().unwrap();
    n.handle_input(now, UDP, Some(keyed_src), &mut f.clone(), 0..60);
    assert_eq!(n.stats().dropped(DropReason::BadAuth), 1, "plaintext on a keyed declaration");
    assert_eq!(n.switch().port_count(), 1, "only the local end");
    assert!(planned(&mut n, now).iter().all(Vec::is_empty));

    let peer: SocketAddr = "198.51.100.5:2300".parse().unwrap();
    n.handle_input(now, UDP, Some(peer), &mut [0u8; 0], 0..0);
    assert_eq!(n.switch().port_count(), 2, "an empty datagram is a heartbeat that makes a remote");
    assert_eq!(n.stats().frames_in, 0);
    n.handle_input(now, UDP, Some(peer), &mut f.clone(), 0..60);
    let out = planned(&mut n, now);
    assert_eq!(out[LOCAL], [(None, f.clone())]);
    assert!(out[UDP].is_empty(), "not back to the one remote");
}

/// Heartbeats: a short non-empty datagram to plain uplinks, an
/// authenticated empty one to keyed uplinks, at once and every 30 s.
#[test]
fn heartbeats_are_planned_for_every_uplink() {
    let t = now();
    let mut n =
        node(&[("192.0.2.1:2300", None), ("192.0.2.2:2300=k", Some(0)), ("198.51.100.0/24", None)], vec![key(4)], t);
    n.handle_timeout(t);
    let out = planned(&mut n, t);
    assert_eq!(out[UDP].len(), 2, "one each to the two uplinks, none to a mask");
    assert_eq!(out[UDP][0], (Some("192.0.2.1:2300".parse().unwrap()), HEARTBEAT.to_vec()));
    assert_eq!(out[UDP][1].1.len(), OVERHEAD);
    assert_eq!(Header::parse(&out[UDP][1].1).unwrap().kind, Kind::Heartbeat);
    n.handle_timeout(t);
    assert!(n.plan().is_empty(), "not again before 30 s");
    let later = Now { mono: t.mono + crate::switch::timing::HEARTBEAT_INTERVAL, unix: t.unix + 30 };
    assert_eq!(n.poll_timeout().map(|d| d <= later.mono), Some(true));
    n.handle_timeout(later);
    assert_eq!(planned(&mut n, later)[UDP].len(), 2);
}

/// What a channel could not send reaches the statistics.
#[test]
fn unsent_payloads_are_counted() {
    let t = now();
    let mut n = node(&[("192.0.2.1:2300", None), ("192.0.2.2:2300", None)], vec![], t);
    n.handle_input(t, LOCAL, None, &mut frame([0xff; 6], [2, 0, 0, 0, 0, 1], 60), 0..60);
    n.flush_with(t, |_, _, b| Ok::<_, ()>(SendReport { sent: 0, failed: b.len() - 1, too_large: 1 })).unwrap();
    assert_eq!(n.stats().dropped(DropReason::SendFailed), 1);
    assert_eq!(n.stats().dropped(DropReason::TooLarge), 1);
    assert!(n.plan().is_empty());
    n.handle_truncated(LOCAL);
    assert_eq!(n.stats().dropped(DropReason::TooLarge), 2);
}

/// A node with more declarations than a declaration id can number is not
/// made.
#[test]
fn too_many_declarations_are_refused() {
    let spec = parse_remote("198.51.100.0/24", false).unwrap();
    let setup = Setup {
        remotes: vec![(spec, None); usize::from(DeclId::MAX) + 1],
        keys: vec![],
        channels: 2,
        local: Some(LOCAL),
        udp: Some(UDP),
        multicast: None,
        switch: Params::default(),
        batch: 1,
    };
    let e = Node::new(setup, now()).unwrap_err();
    assert!(matches!(e, SetupError::TooManyDeclarations(n) if n == usize::from(DeclId::MAX) + 1), "{e}");
}
