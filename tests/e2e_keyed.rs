//! Keyed channels (`=keyfile`, SPEC 5) end to end with the built binary:
//! daemons in stdio mode over loopback, and keyed peers played by this test
//! itself (a UDP socket and the crate's own [`Transport`]), which can send
//! what a real peer never would: replays, reflections, stale sessions,
//! forgeries. No root needed, except for the multicast group, which needs a
//! namespace with a multicast route.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::frames::{frame_with, mac, BCAST};
use common::scratch::Scratch;
use common::stdio::{exchange_frames, StdioDaemon};
use common::{drop_count, free_port, privileged, rrqnet_bin, unix_now, wait_for, Netns};
use rrqnet::crypto::{
    Header, Kind, MasterKey, Opener, Sealer, SealerLimits, SessionId, Transport, DEFAULT_MAX_SESSIONS, HEADER_LEN,
    OVERHEAD, TAG_LEN,
};

/// An rrqnet with `-vv -t -`, once its log says its local end is open.
fn rrq(args: &[&str]) -> StdioDaemon {
    rrq_in(None, args)
}

/// Like [`rrq`], in `ns` if given.
fn rrq_in(ns: Option<&Netns>, args: &[&str]) -> StdioDaemon {
    let r = StdioDaemon::spawn("rrqnet", ns, "-vv", args);
    assert!(
        wait_for(Duration::from_secs(5), || r.log().contains("local end: stdio")),
        "rrqnet {args:?} did not start:\n{}",
        r.log()
    );
    r
}

/// Frames padded with `(fill + offset) * 7`.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    frame_with(dst, src, len, |i| fill.wrapping_add(i as u8).wrapping_mul(7))
}

/// A keyed peer played by the test: a UDP socket and a transport of the
/// key file's key, with its own session, and its own idea of the time.
struct Peer {
    sock: UdpSocket,
    tr: Transport,
    /// How far this peer's clock is from ours, in seconds.
    skew: i64,
}

impl Peer {
    fn new(bind: &str, key: &str) -> Peer {
        Peer::with_transport(bind, Transport::new(&load(key), unix_now()).unwrap())
    }

    /// A peer whose clock is `skew` seconds from ours, with a session that
    /// starts at that clock's "now".
    fn skewed(sock: UdpSocket, key: &str, skew: i64) -> Peer {
        let key = load(key);
        let start = unix_now().checked_add_signed(skew).unwrap();
        let mut id = [0u8; 16];
        id[..8].copy_from_slice(&start.to_be_bytes());
        id[8..].copy_from_slice(&(sock.local_addr().unwrap().port() as u64).to_be_bytes());
        let sealer = Sealer::with_session(&key, SessionId(id), start, 0, SealerLimits::default());
        let tr = Transport::from_parts(sealer, Opener::new(&key, DEFAULT_MAX_SESSIONS));
        Peer { sock, tr, skew }
    }

    fn with_transport(bind: &str, tr: Transport) -> Peer {
        let sock = UdpSocket::bind(bind).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100))).unwrap();
        Peer { sock, tr, skew: 0 }
    }

    /// This peer's clock.
    fn now(&self) -> u64 {
        unix_now().checked_add_signed(self.skew).unwrap()
    }

    fn addr(&self) -> SocketAddr {
        self.sock.local_addr().unwrap()
    }

    fn port(&self) -> u16 {
        self.addr().port()
    }

    /// A data datagram of `frame` under this peer's session.
    fn seal(&mut self, frame: &[u8]) -> Vec<u8> {
        let now = self.now();
        seal_with(&mut self.tr, frame, now)
    }

    fn send(&self, datagram: &[u8], to: u16) {
        self.sock.send_to(datagram, ("127.0.0.1", to)).unwrap();
    }

    /// The next datagram that arrives within `limit`.
    fn recv_raw(&self, limit: Duration) -> Option<Vec<u8>> {
        let deadline = Instant::now() + limit;
        let mut buf = vec![0u8; 65536];
        while Instant::now() < deadline {
            if let Ok((n, _)) = self.sock.recv_from(&mut buf) {
                return Some(buf[..n].to_vec());
            }
        }
        None
    }

    /// The next data datagram (heartbeats skipped), and the frame it opens to.
    fn recv_data(&mut self, limit: Duration) -> Option<(Vec<u8>, Vec<u8>)> {
        let deadline = Instant::now() + limit;
        while let Some(d) = self.recv_raw(deadline.saturating_duration_since(Instant::now())) {
            let mut copy = d.clone();
            let now = self.now();
            let o = self.tr.open_in_place(&mut copy, now).expect("rrqnet's datagram opens");
            if o.kind == Kind::Data {
                return Some((d, copy[o.payload].to_vec()));
            }
        }
        None
    }

    fn expect_data(&mut self, want: &[u8], what: &str) -> Vec<u8> {
        let (d, f) = self.recv_data(Duration::from_secs(5)).unwrap_or_else(|| panic!("{what}: nothing arrived"));
        assert!(f == want, "{what}: opened to a different frame ({} bytes, want {})", f.len(), want.len());
        assert_eq!(d.len(), want.len() + OVERHEAD, "{what}: a data datagram is the frame plus 50 bytes");
        d
    }

    fn expect_no_data(&mut self, limit: Duration, what: &str) {
        if let Some((_, f)) = self.recv_data(limit) {
            panic!("{what}: an unexpected {}-byte frame arrived", f.len());
        }
    }
}

fn load(path: &str) -> MasterKey {
    MasterKey::load(Path::new(path)).unwrap().key
}

fn seal_with(tr: &mut Transport, frame: &[u8], now: u64) -> Vec<u8> {
    let mut buf = vec![0u8; HEADER_LEN + frame.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + frame.len()].copy_from_slice(frame);
    let kind = if frame.is_empty() { Kind::Heartbeat } else { Kind::Data };
    let r = tr.seal_in_place(&mut buf, HEADER_LEN, frame.len(), kind, now).unwrap();
    assert_eq!(r, 0..buf.len());
    buf
}

fn pair_passes_frames(lo: &str, bracket: bool) {
    let keys = Scratch::unique("keyed");
    let k = keys.seeded_key("k", 1);
    let (pa, pb) = (free_port(), free_port());
    let up = if bracket { format!("[{lo}]:{pb}={k}") } else { format!("{lo}:{pb}={k}") };
    let mask = if bracket { format!("[{lo}]={k}") } else { format!("{lo}={k}") };
    let mut b = rrq(&[&pb.to_string(), &mask]);
    let mut a = rrq(&[&pa.to_string(), &up]);

    exchange_frames(&mut a, &mut b, frame);
    let (la, lb) = (a.finish(), b.finish());
    for log in [&la, &lb] {
        for r in ["bad-auth", "replay", "stale-session", "own-session"] {
            assert_eq!(drop_count(log, r), 0, "{r}:\n{log}");
        }
    }
    assert!(
        lb.contains(&format!(
            "remote {} connected",
            if bracket { format!("[{lo}]:{pa}") } else { format!("{lo}:{pa}") }
        )),
        "{lb}"
    );
}

#[test]
fn keyed_uplink_and_downlink_pass_frames_ipv4() {
    pair_passes_frames("127.0.0.1", false);
}

#[test]
fn keyed_uplink_and_downlink_pass_frames_ipv6() {
    pair_passes_frames("::1", true);
}

/// A relay between two rrqnets sees only sealed datagrams of the documented
/// shape; what it captured and sends again is refused as replays, and a
/// flipped bit as a forgery.
#[test]
fn the_wire_carries_sealed_datagrams_and_captures_do_not_replay() {
    let keys = Scratch::unique("keyed");
    let k = keys.seeded_key("k", 2);
    let relay = UdpSocket::bind("127.0.0.1:0").unwrap();
    relay.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let rp = relay.local_addr().unwrap().port();
    let (pa, pb) = (free_port(), free_port());
    // A's uplink is the relay; B accepts anything keyed from 127.0.0.1 (the relay).
    let mut b = rrq(&[&pb.to_string(), &format!("127.0.0.1={k}")]);
    let mut a = rrq(&[&pa.to_string(), &format!("127.0.0.1:{rp}={k}")]);
    // (A to B?, datagram) for everything the relay passed on.
    type Captured = Vec<(bool, Vec<u8>)>;
    let captured: Arc<Mutex<Captured>> = Arc::default();
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let relay_thread = {
        let (captured, stop, relay) = (Arc::clone(&captured), Arc::clone(&stop), relay.try_clone().unwrap());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            while !stop.load(Ordering::SeqCst) {
                let Ok((n, from)) = relay.recv_from(&mut buf) else { continue };
                let a_to_b = from.port() == pa;
                let to = if a_to_b { pb } else { pa };
                relay.send_to(&buf[..n], ("127.0.0.1", to)).unwrap();
                captured.lock().unwrap().push((a_to_b, buf[..n].to_vec()));
            }
        })
    };
    let frames: Vec<Vec<u8>> = (0..20).map(|i| frame(BCAST, mac(1), 60 + i * 70, i as u8)).collect();
    a.send_all(&frames);
    for (i, f) in frames.iter().enumerate() {
        b.expect(f, &format!("frame {i} through the relay"));
    }
    let g = frame(mac(1), mac(2), 100, 9);
    b.send(&g);
    a.expect(&g, "reply through the relay");
    // Everything A sent went through the relay before B could have it.
    let from_a_count = || captured.lock().unwrap().iter().filter(|(ab, _)| *ab).count();
    assert!(wait_for(Duration::from_secs(2), || from_a_count() >= 21), "{} datagrams from A", from_a_count());
    stop.store(true, Ordering::SeqCst);
    relay_thread.join().unwrap();

    let captured = captured.lock().unwrap().clone();
    let from_a: Vec<&Vec<u8>> = captured.iter().filter(|(ab, _)| *ab).map(|(_, d)| d).collect();
    // A's start heartbeat, then the 20 frames.
    assert_eq!(from_a.len(), 21, "datagrams A -> B");
    let hb = Header::parse(from_a[0]).expect("a keyed header");
    assert_eq!((hb.kind, hb.counter, from_a[0].len()), (Kind::Heartbeat, 0, OVERHEAD), "the heartbeat");
    let mut counters = Vec::new();
    for (d, f) in from_a[1..].iter().zip(&frames) {
        let h = Header::parse(d).expect("a keyed header");
        assert_eq!(d[0], 1, "version");
        assert_eq!(h.kind, Kind::Data);
        assert_eq!(h.session, hb.session, "one session");
        assert!(h.start.abs_diff(unix_now()) < 10, "the session started now");
        assert_eq!(d.len(), f.len() + OVERHEAD);
        assert!(d[HEADER_LEN..d.len() - TAG_LEN] != f[..], "the frame is not on the wire in clear");
        assert!(!d.windows(12).any(|w| w == &f[..12]), "not even its MAC addresses");
        counters.push(h.counter);
    }
    assert_eq!(counters, (1..=20).collect::<Vec<u64>>(), "counters count up");

    // Everything A sent, again from the relay's address: nothing passes.
    for d in &from_a {
        relay.send_to(d, ("127.0.0.1", pb)).unwrap();
    }
    // A captured datagram given a counter not seen yet (the replay check
    // would refuse its own counter before any decryption): a forgery.
    let mut forged = from_a[5].clone();
    forged[18..26].copy_from_slice(&1000u64.to_be_bytes());
    relay.send_to(&forged, ("127.0.0.1", pb)).unwrap();
    b.expect_nothing(Duration::from_millis(700), "replayed or forged datagrams");
    a.finish();
    let log = b.finish();
    assert_eq!(drop_count(&log, "replay"), 21, "{log}");
    assert_eq!(drop_count(&log, "bad-auth"), 1, "{log}");
}

#[test]
fn different_key_files_pass_nothing_and_make_no_remote() {
    let keys = Scratch::unique("keyed");
    let (k1, k2) = (keys.seeded_key("k1", 3), keys.seeded_key("k2", 4));
    let (ps, pc) = (free_port(), free_port());
    let mut server = rrq(&[&ps.to_string(), &format!("127.0.0.1={k2}")]);
    let mut client = rrq(&[&pc.to_string(), &format!("127.0.0.1:{ps}={k1}")]);
    for i in 0..10 {
        client.send(&frame(BCAST, mac(1), 60 + i * 100, i as u8));
    }
    server.expect_nothing(Duration::from_millis(700), "frames sealed with another key");
    server.send(&frame(BCAST, mac(2), 60, 1));
    client.expect_nothing(Duration::from_millis(500), "the server has no remote to send to");
    client.finish();
    let log = server.finish();
    assert!(!log.contains("connected"), "the server made a remote:\n{log}");
    // The client's start heartbeat and its ten frames.
    assert_eq!(drop_count(&log, "bad-auth"), 11, "{log}");
    assert!(log.contains("no-target 1"), "the server's own broadcast found no remote:\n{log}");
}

#[test]
fn plaintext_to_a_keyed_server_gets_nothing_through() {
    let keys = Scratch::unique("keyed");
    let k = keys.seeded_key("k", 5);
    let (ps, pc) = (free_port(), free_port());
    let mut server = rrq(&[&ps.to_string(), &format!("127.0.0.1={k}")]);
    // A plain rrqnet uplink, and a bare socket.
    let mut client = rrq(&[&pc.to_string(), &format!("127.0.0.1:{ps}")]);
    let bare = UdpSocket::bind("127.0.0.1:0").unwrap();
    bare.set_read_timeout(Some(Duration::from_millis(500))).unwrap();
    let f = frame(BCAST, mac(1), 60, 1);
    client.send(&f);
    bare.send_to(&f, ("127.0.0.1", ps)).unwrap();
    bare.send_to(b"\0", ("127.0.0.1", ps)).unwrap();
    // Even a datagram shaped like a keyed heartbeat, without the key.
    let mut fake = vec![0u8; OVERHEAD];
    fake[0] = 1;
    fake[1] = 2;
    fake[26..34].copy_from_slice(&unix_now().to_be_bytes());
    bare.send_to(&fake, ("127.0.0.1", ps)).unwrap();
    server.expect_nothing(Duration::from_millis(700), "plaintext to a keyed server");
    // Had the server made a remote of either, its broadcast would go there.
    server.send(&frame(BCAST, mac(2), 60, 2));
    let mut buf = [0u8; 2048];
    assert!(bare.recv_from(&mut buf).is_err(), "the bare socket got a datagram back");
    client.expect_nothing(Duration::from_millis(300), "the plain client got a frame back");
    client.finish();
    let log = server.finish();
    assert!(!log.contains("connected"), "{log}");
    // The plain client's heartbeat and frame, and the bare socket's three.
    assert_eq!(drop_count(&log, "bad-auth"), 5, "{log}");
}

#[test]
fn unusable_key_files_stop_the_start_naming_the_path() {
    let keys = Scratch::unique("keyed");
    let missing = keys.file("missing").to_str().unwrap().to_owned();
    let empty = keys.write("empty", b"", 0o600);
    let short = keys.write("short", &[7u8; 31], 0o600);
    let dir = keys.file("dir");
    std::fs::create_dir(&dir).unwrap();
    let dir = dir.to_str().unwrap().to_owned();
    let good = keys.seeded_key("good", 6);
    let cases: &[(&str, &str)] =
        &[(&missing, "cannot open"), (&empty, "is empty"), (&short, "too short: 31 bytes"), (&dir, "is a directory")];
    for (path, why) in cases {
        let port = free_port().to_string();
        for args in [
            vec![port.as_str(), "127.0.0.1:9=GOOD", "127.0.0.0/8=PATH"],
            vec!["-m", "239.1.2.3:5000=PATH"],
            vec![port.as_str(), "[::1]:9=PATH"],
        ] {
            let args: Vec<String> = args.iter().map(|a| a.replace("PATH", path).replace("GOOD", &good)).collect();
            let out = Command::new(rrqnet_bin()).args(["-t", "-"]).args(&args).stdin(Stdio::null()).output().unwrap();
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?}: {err}");
            assert!(err.starts_with(&format!("rrqnet: key file {path}: ")), "{args:?}: {err}");
            assert!(err.contains(why), "{args:?}: {err}");
            assert_eq!(err.lines().count(), 1, "{args:?}: {err}");
            assert!(out.stdout.is_empty());
        }
    }
}

#[test]
fn a_key_file_readable_by_others_warns_and_still_works() {
    let keys = Scratch::unique("keyed");
    let content: Vec<u8> = (0..64).collect();
    let open_key = keys.write("open", &content, 0o644);
    let group_key = keys.write("group", &content, 0o640);
    let (ps, pc) = (free_port(), free_port());
    let mut server = rrq(&[&ps.to_string(), &format!("127.0.0.1={open_key}")]);
    let client = rrq(&[&pc.to_string(), &format!("127.0.0.1:{ps}={group_key}")]);
    let f = frame(BCAST, mac(1), 80, 1);
    wait_for(Duration::from_secs(3), || server.log().contains("connected"));
    server.send(&f);
    client.expect(&f, "a frame under a key readable by others");
    let (lc, ls) = (client.finish(), server.finish());
    assert!(ls.contains(&format!("[WARN] key file {open_key} is readable by group or others (mode 0644)")), "{ls}");
    assert!(lc.contains(&format!("[WARN] key file {group_key} is readable by group or others (mode 0640)")), "{lc}");
    // Without -v the warning still shows.
    let out = Command::new(rrqnet_bin())
        .args([&free_port().to_string(), &format!("127.0.0.1={open_key}"), &format!("127.0.0.2=/nonexistent/{ps}")])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("readable by group or others"), "{err}");
}

/// A hub with two key files of the same content (one key), another key, and
/// a plain remote: a flood is sealed once per key (the two remotes of one key
/// get the very same datagram), plain remotes and the local end get the
/// frame, and frames cross between keys.
#[test]
fn a_flood_is_sealed_once_per_key_and_frames_cross_between_keys() {
    let keys = Scratch::unique("keyed");
    let k1 = keys.seeded_key("k1", 7);
    let k1_copy = keys.write("k1-copy", &std::fs::read(&k1).unwrap(), 0o600);
    let k2 = keys.seeded_key("k2", 8);
    let mut a = Peer::new("127.0.0.1:0", &k1);
    let mut b = Peer::new("127.0.0.1:0", &k1);
    let mut c = Peer::new("127.0.0.1:0", &k2);
    let d = UdpSocket::bind("127.0.0.1:0").unwrap();
    d.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let ph = free_port();
    let mut hub = rrq(&[
        &ph.to_string(),
        &format!("127.0.0.1:{}={k1}", a.port()),
        &format!("127.0.0.1:{}={k1_copy}", b.port()),
        &format!("127.0.0.1:{}={k2}", c.port()),
        &format!("127.0.0.1:{}", d.local_addr().unwrap().port()),
    ]);
    let log = hub.log();
    assert_eq!(log.matches("key file ").count(), 3, "{log}");
    let fp = |path: &str| {
        log.lines().find(|l| l.contains(&format!("key file {path}:"))).unwrap().rsplit(' ').next().unwrap().to_owned()
    };
    assert_eq!(fp(&k1), fp(&k1_copy), "same content, one key:\n{log}");
    assert_ne!(fp(&k1), fp(&k2));
    let mut buf = vec![0u8; 65536];
    let mut recv_d = |what: &str| -> Vec<u8> {
        loop {
            let (n, _) = d.recv_from(&mut buf).unwrap_or_else(|e| panic!("{what}: nothing for the plain remote: {e}"));
            if n > 11 {
                return buf[..n].to_vec();
            }
        }
    };

    // From the local end: two keys and a plain remote.
    let f = frame(BCAST, mac(1), 1000, 1);
    hub.send(&f);
    let da = a.expect_data(&f, "flood to a (key 1)");
    let db = b.expect_data(&f, "flood to b (key 1, other file)");
    assert_eq!(da, db, "one seal for both remotes of key 1");
    let dc = c.expect_data(&f, "flood to c (key 2)");
    assert_ne!(Header::parse(&dc).unwrap().session, Header::parse(&da).unwrap().session);
    assert_eq!(recv_d("flood to d"), f, "the plain remote gets the frame");

    // From a keyed remote: re-sealed for the other remote of its key and for
    // the other key, plaintext for the local end and the plain remote.
    let g = frame(BCAST, mac(2), 1400, 2);
    let sealed = a.seal(&g);
    a.send(&sealed, ph);
    hub.expect(&g, "a's frame at the hub's local end");
    let db = b.expect_data(&g, "a's frame to b");
    assert_ne!(db, sealed, "the hub seals with its own session");
    c.expect_data(&g, "a's frame to c");
    assert_eq!(recv_d("a's frame to d"), g);
    a.expect_no_data(Duration::from_millis(300), "never back to the sender");

    // From the plain remote: both keys, the first one from the scratch copy.
    let h = frame(BCAST, mac(4), 600, 4);
    d.send_to(&h, ("127.0.0.1", ph)).unwrap();
    hub.expect(&h, "d's frame at the local end");
    let da = a.expect_data(&h, "d's frame to a");
    assert_eq!(b.expect_data(&h, "d's frame to b"), da);
    c.expect_data(&h, "d's frame to c");

    // Unicast from key 2 to a MAC learned on key 1 (a's), and back.
    let u = frame(mac(2), mac(3), 9000, 5);
    let sealed = c.seal(&u);
    c.send(&sealed, ph);
    a.expect_data(&u, "unicast c -> a across keys");
    b.expect_no_data(Duration::from_millis(300), "unicast goes to a only");
    let v = frame(mac(3), mac(2), 200, 6);
    let sealed = a.seal(&v);
    a.send(&sealed, ph);
    c.expect_data(&v, "unicast a -> c across keys");

    let log = hub.finish();
    for r in ["bad-auth", "replay", "send-failed", "too-large"] {
        assert_eq!(drop_count(&log, r), 0, "{r}:\n{log}");
    }
}

/// SPEC 5's receive rules at the daemon: replays, our own datagrams sent
/// back, sessions that are not fresh, forgeries and plaintext are dropped,
/// each counted under its reason, and none of them makes a remote.
#[test]
fn replays_reflections_stale_sessions_and_forgeries_are_dropped_and_counted() {
    let keys = Scratch::unique("keyed");
    let k = keys.seeded_key("k", 9);
    let ph = free_port();
    let mut hub = rrq(&[&ph.to_string(), &format!("127.0.0.1={k}")]);
    let mut p = Peer::new("127.0.0.1:0", &k);

    let f = frame(BCAST, mac(1), 100, 1);
    let x = p.seal(&f);
    p.send(&x, ph);
    hub.expect(&f, "a keyed frame");
    assert!(wait_for(Duration::from_secs(2), || hub.log().contains(&format!("remote {} connected", p.addr()))));
    p.send(&x, ph);
    hub.expect_nothing(Duration::from_millis(300), "the same datagram again");

    // The hub's own datagram, sent back to it.
    let g = frame(BCAST, mac(2), 100, 2);
    hub.send(&g);
    let (r, _) = p.recv_data(Duration::from_secs(3)).expect("the hub's flood");
    p.send(&r, ph);
    hub.expect_nothing(Duration::from_millis(300), "the hub's own datagram");

    // From other (declared) sources: a session that started 1000 s ago, a
    // session 400 s in the future, a forgery, a datagram of a session whose
    // start was changed, plaintext.
    let sock = || UdpSocket::bind("127.0.0.1:0").unwrap();
    // A session that began 1000 s ago (an old capture, or a clock 1000 s
    // behind).
    let mut stale = Peer::skewed(sock(), &k, -1000);
    let d = stale.seal(&frame(BCAST, mac(5), 100, 5));
    stale.send(&d, ph);
    // A peer whose clock is 400 s ahead.
    let mut future = Peer::skewed(sock(), &k, 400);
    let d = future.seal(&frame(BCAST, mac(6), 100, 6));
    future.send(&d, ph);
    let mut forger = Peer::new("127.0.0.1:0", &k);
    let mut d = forger.seal(&frame(BCAST, mac(7), 100, 7));
    let last = d.len() - 1;
    d[last] ^= 1;
    forger.send(&d, ph);
    let mut d = p.seal(&frame(BCAST, mac(8), 100, 8));
    d[33] ^= 1; // p's session, with another start time
    p.send(&d, ph);
    let plain = UdpSocket::bind("127.0.0.1:0").unwrap();
    plain.send_to(&frame(BCAST, mac(9), 100, 9), ("127.0.0.1", ph)).unwrap();
    hub.expect_nothing(Duration::from_millis(500), "stale, future, forged, altered or plain datagrams");

    // Only p is a remote: the hub's next flood reaches p and no one else.
    let h = frame(BCAST, mac(3), 100, 3);
    hub.send(&h);
    p.expect_data(&h, "the flood to the one real remote");
    for (who, sock) in [("stale", &stale.sock), ("future", &future.sock), ("forger", &forger.sock), ("plain", &plain)] {
        sock.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        assert!(sock.recv_from(&mut [0u8; 2048]).is_err(), "{who} got a datagram");
    }
    let log = hub.finish();
    assert_eq!(log.matches("connected").count(), 1, "{log}");
    assert_eq!(drop_count(&log, "replay"), 1, "{log}");
    assert_eq!(drop_count(&log, "own-session"), 1, "{log}");
    assert_eq!(drop_count(&log, "stale-session"), 2, "{log}");
    assert_eq!(drop_count(&log, "bad-auth"), 3, "{log}");
}

/// A peer that restarts with a clock far ahead makes us renew our session,
/// so that it accepts what we send next; one with a clock in agreement does
/// not (peers renewing must not make each other renew).
#[test]
fn a_restarted_peer_with_a_distant_clock_makes_us_renew() {
    let keys = Scratch::unique("keyed");
    let k = keys.seeded_key("k", 10);
    let ph = free_port();
    let mut hub = rrq(&[&ph.to_string(), &format!("127.0.0.1={k}")]);
    let mut p = Peer::new("127.0.0.1:0", &k);
    let hb = p.seal(&[]);
    p.send(&hb, ph);
    assert!(wait_for(Duration::from_secs(2), || hub.log().contains("connected")), "{}", hub.log());
    let f = frame(BCAST, mac(1), 100, 1);
    hub.send(&f);
    let first = Header::parse(&p.expect_data(&f, "the hub's first session")).unwrap();
    // Our session must be older than the 10 s before a peer may renew it.
    std::thread::sleep(Duration::from_secs(11));

    // p restarts with its clock in agreement: nothing changes.
    let mut p = Peer::skewed(p.sock, &k, 0);
    let hb = p.seal(&[]);
    p.send(&hb, ph);
    assert!(sessions(&hub, 2), "the hub saw p's new session:\n{}", hub.log());
    hub.send(&f);
    let same = Header::parse(&p.expect_data(&f, "after a restart in agreement")).unwrap();
    assert_eq!(same.session, first.session, "no renewal for a peer whose clock agrees:\n{}", hub.log());

    // p restarts with its clock 200 s ahead: it would refuse the hub's
    // session 80 s from now; the hub renews at once.
    let mut p = Peer::skewed(p.sock, &k, 200);
    let hb = p.seal(&[]);
    p.send(&hb, ph);
    assert!(sessions(&hub, 3), "the hub saw p's third session:\n{}", hub.log());
    hub.send(&f);
    let renewed = Header::parse(&p.expect_data(&f, "after a restart 200 s ahead")).unwrap();
    assert_ne!(renewed.session, first.session, "renewed:\n{}", hub.log());
    assert!(renewed.start >= first.start + 11 && renewed.counter == 0, "{renewed:?} after {first:?}");
    let log = hub.finish();
    assert_eq!(log.matches("renewed our session").count(), 1, "{log}");
}

/// Two rrqnets on one group with one key pass frames both ways; a third with
/// another key, and a plain sender, are heard by no one.
#[test]
fn keyed_multicast_pair_passes_frames() {
    if !privileged("keyed_multicast_pair_passes_frames") {
        return;
    }
    let keys = Scratch::unique("keyed");
    let (k, other) = (keys.seeded_key("k", 11), keys.seeded_key("other", 12));
    let ns = Netns::new("kmc");
    ns.ip(&["link", "set", "lo", "multicast", "on"]);
    ns.ip(&["route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1"]);
    let group = "239.1.2.4:5001";
    let mut a = rrq_in(Some(&ns), &["-m", &format!("{group}={k}")]);
    let mut b = rrq_in(Some(&ns), &["-m", &format!("{group}={k}")]);
    let mut c = rrq_in(Some(&ns), &["-m", &format!("{group}={other}")]);
    let f1 = frame(BCAST, mac(1), 60, 1);
    a.send(&f1);
    b.expect(&f1, "broadcast A -> B on the keyed group");
    let f2 = frame(mac(1), mac(2), 1514, 2);
    b.send(&f2);
    a.expect(&f2, "unicast B -> A on the keyed group");
    let f3 = frame(mac(2), mac(1), 9000, 3);
    a.send(&f3);
    b.expect(&f3, "jumbo A -> B on the keyed group");
    let burst: Vec<Vec<u8>> = (0..200).map(|i| frame(mac(1), mac(2), 64 + i * 7, i as u8)).collect();
    b.send_all(&burst);
    for (i, f) in burst.iter().enumerate() {
        a.expect(f, &format!("burst frame {i} B -> A"));
    }
    // Another key on the group: C hears nothing, and is heard by no one.
    c.expect_nothing(Duration::from_millis(300), "C with another key");
    c.send(&frame(BCAST, mac(3), 60, 3));
    // A plain sender on the group.
    let (host, port) = group.split_once(':').unwrap();
    let script = format!("printf '%s' {} > /dev/udp/{host}/{port}", "x".repeat(60));
    assert!(ns.cmd("bash").args(["-c", &script]).status().unwrap().success());
    a.expect_nothing(Duration::from_millis(500), "A hears neither C nor plaintext");
    b.expect_nothing(Duration::from_millis(100), "B hears neither C nor plaintext");
    let (la, lb, lc) = (a.finish(), b.finish(), c.finish());
    for log in [&la, &lb] {
        // C's frame and the plain datagram.
        assert_eq!(drop_count(log, "bad-auth"), 2, "{log}");
        assert!(drop_count(log, "own-multicast") > 0, "{log}");
    }
    assert!(drop_count(&lc, "bad-auth") >= 204, "C drops everything A and B sent:\n{lc}");
}

/// Waits until `hub` has logged `n` new sessions of its peers.
fn sessions(hub: &StdioDaemon, n: usize) -> bool {
    wait_for(Duration::from_secs(2), || hub.log().matches("new session").count() >= n)
}
