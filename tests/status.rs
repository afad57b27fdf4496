//! Watching a running rrqnet, end to end with the built binary: the status
//! socket's counters against what a test sent through a pair of daemons,
//! the client's three formats, the status dump on SIGUSR1/SIGUSR2, SIGHUP
//! ignored, the socket's mode and life, clients that never read, systemd's
//! readiness protocol, and logging to the journal.

mod common;

use std::collections::{BTreeMap, HashSet};
use std::io::Read;
use std::net::UdpSocket;
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixDatagram, UnixStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::frames::{frame, mac, BCAST};
use common::scratch::Scratch;
use common::stdio::StdioDaemon;
use common::{free_port, wait_for, Proc};
use rrqnet::crypto::{Kind, MasterKey, Transport, HEADER_LEN, TAG_LEN};
use rrqnet::status::Status;

/// Runs `rrqnet --status PATH [FORMAT]`: (exit code, stdout, stderr).
fn client(path: &Path, format: Option<&str>) -> (Option<i32>, String, String) {
    let mut cmd = Command::new(common::rrqnet_bin());
    cmd.arg("--status").arg(path).args(format).stdin(Stdio::null());
    let out = cmd.output().expect("run rrqnet --status");
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The status of the daemon serving `path`, through the client.
fn status(path: &Path) -> Status {
    let (code, out, err) = client(path, Some("--json"));
    assert_eq!(code, Some(0), "rrqnet --status: {err}");
    Status::from_json(&out).unwrap_or_else(|e| panic!("not a status document ({e}): {out}"))
}

fn spawn(name: &str, sock: &Path, args: &[&str]) -> StdioDaemon {
    let mut all = vec!["--status-socket", sock.to_str().unwrap()];
    all.extend_from_slice(args);
    let d = StdioDaemon::spawn(name, None, "-vv", &all);
    assert!(d.wait_log("listening on UDP", Duration::from_secs(5)), "{}", d.log());
    assert!(wait_for(Duration::from_secs(5), || sock.exists()), "no status socket\n{}", d.log());
    d
}

fn drops(map: &BTreeMap<String, u64>, reason: &str) -> u64 {
    map.get(reason).copied().unwrap_or(0)
}

/// A pair: b serves a downlink mask for 127.0.0.1, a uplinks to it. They
/// exchange known frames; then strangers provoke drops at b. Every counter
/// in both documents is then exactly what crossed.
fn counters_match_what_crossed(keyed: bool) {
    let dir = Scratch::unique("status");
    let key = dir.seeded_key("k", 3);
    let suffix = if keyed { format!("={key}") } else { String::new() };
    let (pa, pb) = (free_port(), free_port());
    let (sa, sb) = (dir.file("a.sock"), dir.file("b.sock"));
    let mut b = spawn("b", &sb, &[&pb.to_string(), &format!("127.0.0.1{suffix}")]);
    let mut a = spawn("a", &sa, &[&pa.to_string(), &format!("127.0.0.1:{pb}{suffix}")]);
    assert!(b.wait_log(&format!("remote 127.0.0.1:{pa} connected"), Duration::from_secs(5)), "{}", b.log());

    // a's host broadcasts; b's host answers; a's host sends ten more.
    let hello = frame(BCAST, mac(1), 60, 1);
    a.send(&hello);
    b.expect(&hello, "the broadcast");
    let reply = frame(mac(1), mac(2), 1514, 2);
    b.send(&reply);
    a.expect(&reply, "the reply");
    let more: Vec<Vec<u8>> = (0..10).map(|i| frame(mac(2), mac(1), 200, 10 + i)).collect();
    a.send_all(&more);
    for f in &more {
        b.expect(f, "a unicast");
    }
    let (a_out, b_out) = (60 + 10 * 200, 1514);

    // Strangers: an undeclared source, and a source inside the mask that
    // is a forger (keyed) or floods from a's host's address (plain: a sticky
    // drop; a unicast for b's host would be delivered from any port since
    // issue 14).
    let stranger = UdpSocket::bind("127.0.0.2:0").unwrap();
    stranger.send_to(&frame(BCAST, mac(9), 60, 9), ("127.0.0.1", pb)).unwrap();
    let inside = UdpSocket::bind("127.0.0.1:0").unwrap();
    if keyed {
        // A data datagram of a fresh session whose tag is wrong.
        let mut forged = vec![1u8, 1];
        forged.extend_from_slice(&[0xab; 16]);
        forged.extend_from_slice(&0u64.to_be_bytes());
        forged.extend_from_slice(&common::unix_now().to_be_bytes());
        forged.extend_from_slice(&[0x55; 60 + TAG_LEN]);
        inside.send_to(&forged, ("127.0.0.1", pb)).unwrap();
    } else {
        inside.send_to(&frame(BCAST, mac(1), 80, 7), ("127.0.0.1", pb)).unwrap();
    }
    let provoked = if keyed { "bad-auth" } else { "sticky-elsewhere" };
    assert!(
        wait_for(Duration::from_secs(3), || {
            let s = status(&sb);
            drops(&s.drops, "unknown-source") == 1 && drops(&s.drops, provoked) == 1
        }),
        "the drops were not counted: {:?}",
        status(&sb).drops
    );

    let (ja, jb) = (status(&sa), status(&sb));
    // a: its local end sent 11 frames in and got the reply out.
    let la = ja.local.as_ref().unwrap();
    assert_eq!((la.kind.as_str(), la.name.as_str()), ("stdio", "stdio"));
    assert_eq!((la.traffic.rx_frames, la.traffic.rx_bytes), (11, a_out));
    assert_eq!((la.traffic.tx_frames, la.traffic.tx_bytes), (1, b_out));
    assert_eq!(ja.remotes.len(), 1);
    let rb = &ja.remotes[0];
    assert_eq!(rb.address, format!("127.0.0.1:{pb}"));
    assert_eq!(rb.kind, "uplink");
    assert_eq!(rb.declaration, format!("127.0.0.1:{pb}{}", if keyed { "=<key>" } else { "" }));
    assert_eq!(rb.key.is_some(), keyed);
    assert_eq!(
        (rb.traffic.rx_frames, rb.traffic.rx_bytes, rb.traffic.tx_frames, rb.traffic.tx_bytes),
        (1, b_out, 11, a_out)
    );
    assert_eq!(rb.macs, 1, "b's host");
    assert!(rb.drops.is_empty(), "{:?}", rb.drops);
    assert_eq!((ja.frames.frames_in, ja.frames.unicast, ja.frames.flooded), (12, 11, 1));
    assert_eq!(ja.macs.count, 2);
    assert_eq!(ja.macs.capacity, 16384);
    assert!(ja.drops.values().all(|n| *n == 0), "{:?}", ja.drops);
    assert_eq!(ja.drops.len(), rrqnet::switch::DropReason::COUNT, "every reason, zeros too: {:?}", ja.drops);
    assert_eq!(ja.sessions, u64::from(keyed));

    // b: the mirror image, plus the strangers.
    let lb = jb.local.as_ref().unwrap();
    assert_eq!((lb.traffic.rx_frames, lb.traffic.rx_bytes), (1, b_out));
    assert_eq!((lb.traffic.tx_frames, lb.traffic.tx_bytes), (11, a_out));
    let ra = jb.remotes.iter().find(|r| r.address == format!("127.0.0.1:{pa}")).expect("a is b's remote");
    assert_eq!(ra.kind, "downlink");
    assert_eq!(ra.declaration, format!("127.0.0.1{}", if keyed { "=<key>" } else { "" }));
    assert_eq!(
        (ra.traffic.rx_frames, ra.traffic.rx_bytes, ra.traffic.tx_frames, ra.traffic.tx_bytes),
        (11, a_out, 1, b_out)
    );
    assert_eq!(ra.macs, 1, "a's host");
    assert!(ra.last_rx_s < 30.0 && ra.since_s >= ra.last_rx_s);
    assert_eq!(drops(&jb.drops, "unknown-source"), 1);
    if keyed {
        // The forger is no remote; its drop is b's alone.
        assert_eq!(jb.remotes.len(), 1);
        assert_eq!(drops(&jb.drops, "bad-auth"), 1);
        assert_eq!(jb.frames.frames_in, 12);
    } else {
        // A plain source in the mask is a remote; its frame was dropped there.
        assert_eq!(jb.remotes.len(), 2);
        let other = jb.remotes.iter().find(|r| r.address != format!("127.0.0.1:{pa}")).unwrap();
        assert_eq!((other.traffic.rx_frames, other.traffic.rx_bytes, other.traffic.tx_frames), (1, 80, 0));
        assert_eq!(drops(&other.drops, "sticky-elsewhere"), 1);
        assert_eq!(other.macs, 0);
        assert_eq!(jb.frames.frames_in, 13);
    }
    a.finish();
    b.finish();
    assert!(!sa.exists() && !sb.exists(), "the sockets are removed at exit");
}

#[test]
fn plain_counters_match_what_crossed_a_pair() {
    counters_match_what_crossed(false);
}

#[test]
fn keyed_counters_match_what_crossed_a_pair() {
    counters_match_what_crossed(true);
}

/// Keyed sessions are counted, and a keyed peer's authentic frames too.
#[test]
fn a_keyed_peer_is_a_session() {
    let dir = Scratch::unique("status-session");
    let key = dir.seeded_key("k", 4);
    let pb = free_port();
    let sb = dir.file("b.sock");
    let b = spawn("b", &sb, &[&pb.to_string(), &format!("127.0.0.1={key}")]);
    let master = MasterKey::load(Path::new(&key)).unwrap().key;
    let now = common::unix_now();
    let mut t = Transport::new(&master, now).unwrap();
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let f = frame(BCAST, mac(5), 100, 5);
    let mut d = vec![0u8; HEADER_LEN + f.len() + TAG_LEN];
    d[HEADER_LEN..HEADER_LEN + f.len()].copy_from_slice(&f);
    let r = t.seal_in_place(&mut d, HEADER_LEN, f.len(), Kind::Data, now).unwrap();
    peer.send_to(&d[r], ("127.0.0.1", pb)).unwrap();
    b.expect(&f, "the keyed frame");
    let s = status(&sb);
    assert_eq!(s.sessions, 1);
    assert_eq!(s.remotes[0].traffic.rx_bytes, 100);
    assert!(s.remotes[0].key.is_some());
    b.finish();
}

#[test]
fn the_status_signals_dump_and_sighup_changes_nothing() {
    let dir = Scratch::unique("status-signals");
    let (pa, pb) = (free_port(), free_port());
    let mut b = spawn("b", &dir.file("b.sock"), &[&pb.to_string(), "127.0.0.1"]);
    let mut a = spawn("a", &dir.file("a.sock"), &[&pa.to_string(), &format!("127.0.0.1:{pb}")]);
    assert!(b.wait_log("connected", Duration::from_secs(5)));
    let pid = b.captured.proc.pid().to_string();
    for (n, signal) in ["USR1", "USR2"].iter().enumerate() {
        assert!(Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap().success());
        let line = format!("remote 127.0.0.1:{pa} downlink (127.0.0.1)");
        assert!(
            wait_for(Duration::from_secs(3), || b.log().matches(&line).count() == n + 1),
            "SIG{signal}: no remote line\n{}",
            b.log()
        );
        // And it keeps forwarding.
        let f = frame(BCAST, mac(3), 70, n as u8);
        a.send(&f);
        b.expect(&f, "a frame after the dump");
    }
    let log = b.log();
    assert_eq!(log.matches("status: rrqnet").count(), 2, "{log}");
    assert_eq!(log.matches("\ndrops: ").count(), 2, "{log}");
    assert!(Command::new("kill").args(["-HUP", &pid]).status().unwrap().success());
    assert!(b.wait_log("SIGHUP ignored", Duration::from_secs(3)), "{}", b.log());
    let f = frame(mac(3), mac(4), 90, 9);
    b.send(&f);
    a.expect(&f, "a frame after SIGHUP");
    assert!(b.captured.proc.running(), "SIGHUP ended the daemon");
    a.finish();
    b.finish();
}

#[test]
fn the_socket_is_private_replaces_a_stale_one_and_refuses_a_live_one() {
    let dir = Scratch::unique("status-socket");
    let sock = dir.file("s.sock");
    // A socket left by a dead daemon.
    drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
    assert!(sock.exists());
    let d = spawn("d", &sock, &[&free_port().to_string()]);
    let meta = std::fs::metadata(&sock).unwrap();
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    // A second daemon on the same path is refused with one line.
    let out = Command::new(common::rrqnet_bin())
        .args(["--status-socket", sock.to_str().unwrap(), &free_port().to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("is served by a running process"), "{err}");
    assert!(sock.exists(), "the refused daemon left the live socket alone");
    d.finish();
    assert!(!sock.exists());
    // The client on a missing socket: exit 1, one line.
    let (code, out, err) = client(&sock, None);
    assert_eq!((code, out.as_str()), (Some(1), ""));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.starts_with("rrqnet: cannot read status socket"), "{err}");
}

fn rss_kib(pid: u32) -> u64 {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = text.lines().find(|l| l.starts_with("VmRSS:")).unwrap();
    line.split_whitespace().nth(1).unwrap().parse().unwrap()
}

/// Sends `n` frames a -> b and returns the time until b had them all.
fn push(a: &mut StdioDaemon, b: &StdioDaemon, n: usize, tag: u8) -> Duration {
    let frames: Vec<Vec<u8>> = (0..n).map(|i| frame(mac(2), mac(1), 1000, tag.wrapping_add(i as u8))).collect();
    let t0 = Instant::now();
    a.send_all(&frames);
    for f in &frames {
        b.expect(f, "a pushed frame");
    }
    t0.elapsed()
}

#[test]
fn many_clients_and_idle_ones_neither_stall_nor_grow_the_daemon() {
    let dir = Scratch::unique("status-load");
    let (pa, pb) = (free_port(), free_port());
    let sock = dir.file("b.sock");
    let b = spawn("b", &sock, &[&pb.to_string(), "127.0.0.1"]);
    let mut a = spawn("a", &dir.file("a.sock"), &[&pa.to_string(), &format!("127.0.0.1:{pb}")]);
    assert!(b.wait_log("connected", Duration::from_secs(5)));
    // Warm up: the traffic touches the receive slots and buffers it will
    // use, so what follows measures the status clients alone.
    push(&mut a, &b, 2000, 0);
    let before = push(&mut a, &b, 2000, 1);
    let pid = b.captured.proc.pid();
    let rss0 = rss_kib(pid);

    for _ in 0..1000 {
        let mut s = UnixStream::connect(&sock).unwrap();
        let mut doc = String::new();
        s.read_to_string(&mut doc).unwrap();
        assert!(doc.starts_with("{\"version\""), "{doc}");
    }
    let idle: Vec<UnixStream> = (0..50).map(|_| UnixStream::connect(&sock).unwrap()).collect();
    // Every idle client was accepted and served (the document sits in its
    // socket buffer): the daemon is not waiting on any of them.
    assert!(wait_for(Duration::from_secs(3), || status(&sock).version == env!("CARGO_PKG_VERSION")));
    let rss1 = rss_kib(pid);
    let during = push(&mut a, &b, 2000, 2);
    // The idle clients got their documents (in their socket buffers) and
    // were closed: the daemon holds none of them.
    let fds = std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().count();
    assert!(fds < 30, "{fds} descriptors open");
    drop(idle);
    assert!(rss1 <= rss0 + 1024, "RSS grew from {rss0} to {rss1} KiB");
    // Not a benchmark: only that the clients did not stall forwarding.
    assert!(
        during < before * 3 + Duration::from_millis(500),
        "2000 frames took {during:?} with clients, {before:?} before"
    );
    eprintln!("2000 frames: {before:?} before, {during:?} with 50 idle clients; RSS {rss0} -> {rss1} KiB");
    a.finish();
    b.finish();
}

/// One Prometheus text exposition line, checked as the format says.
fn check_prometheus(text: &str) -> usize {
    let mut types: HashSet<String> = HashSet::new();
    let mut samples = 0;
    let mut current = String::new();
    for line in text.lines() {
        if let Some(rest) = line.strip_prefix("# HELP ") {
            assert!(rest.split_once(' ').is_some_and(|(n, h)| !n.is_empty() && !h.is_empty()), "{line}");
        } else if let Some(rest) = line.strip_prefix("# TYPE ") {
            let (name, kind) = rest.split_once(' ').unwrap();
            assert!(["counter", "gauge"].contains(&kind), "{line}");
            assert!(types.insert(name.to_owned()), "{name} typed twice");
            current = name.to_owned();
        } else {
            let (series, value) = line.rsplit_once(' ').unwrap_or_else(|| panic!("no value: {line}"));
            value.parse::<f64>().unwrap_or_else(|_| panic!("bad value: {line}"));
            let name = series.split('{').next().unwrap();
            assert!(name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
            assert_eq!(name, current, "{line} is not under its # TYPE");
            if let Some(labels) = series.strip_prefix(name) {
                if !labels.is_empty() {
                    let inner = labels.strip_prefix('{').and_then(|l| l.strip_suffix('}')).expect(line);
                    for pair in inner.split("\",") {
                        let (k, v) = pair.split_once("=\"").unwrap_or_else(|| panic!("label {pair} in {line}"));
                        assert!(k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'), "{line}");
                        assert!(!v.contains('\n'), "{line}");
                    }
                }
            }
            samples += 1;
        }
    }
    samples
}

#[test]
fn the_client_prints_a_table_json_and_prometheus() {
    let dir = Scratch::unique("status-client");
    let (pa, pb) = (free_port(), free_port());
    let sb = dir.file("b.sock");
    let mut b = spawn("b", &sb, &[&pb.to_string(), "127.0.0.1"]);
    let a = spawn("a", &dir.file("a.sock"), &[&pa.to_string(), &format!("127.0.0.1:{pb}")]);
    assert!(b.wait_log("connected", Duration::from_secs(5)));
    b.send(&frame(BCAST, mac(8), 64, 8));
    a.expect(&frame(BCAST, mac(8), 64, 8), "the broadcast");
    let (code, table, _) = client(&sb, None);
    assert_eq!(code, Some(0));
    assert!(table.starts_with("rrqnet "), "{table}");
    assert!(table.contains(&format!("\nremote: 127.0.0.1:{pa}\n  kind: downlink\n")), "{table}");
    let (code, json, _) = client(&sb, Some("--json"));
    assert_eq!(code, Some(0));
    assert_eq!(json.lines().count(), 1);
    let (code, prom, _) = client(&sb, Some("--prometheus"));
    assert_eq!(code, Some(0));
    let samples = check_prometheus(&prom);
    assert!(samples > 30, "{samples} samples:\n{prom}");
    assert!(prom.contains("rrqnet_port_rx_frames_total{port=\"local\",kind=\"stdio\"} 1\n"), "{prom}");
    if let Some(promtool) = common::which("promtool") {
        let mut p = Command::new(promtool).args(["check", "metrics"]).stdin(Stdio::piped()).spawn().unwrap();
        std::io::Write::write_all(p.stdin.as_mut().unwrap(), prom.as_bytes()).unwrap();
        assert!(p.wait().unwrap().success(), "promtool check metrics failed");
    }
    a.finish();
    b.finish();
}

#[test]
fn systemd_hears_ready_only_once_the_port_answers_then_status_then_stopping() {
    let dir = Scratch::unique("status-notify");
    let path = dir.file("notify");
    let rx = UnixDatagram::bind(&path).unwrap();
    rx.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let port = free_port();
    let mut cmd = Command::new(common::rrqnet_bin());
    cmd.args(["-v", "-t", "-", &port.to_string()])
        .env("NOTIFY_SOCKET", &path)
        .env("WATCHDOG_USEC", "400000")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn("rrqnet", &mut cmd);
    let mut buf = [0u8; 256];
    let mut next = || {
        let n = rx.recv(&mut buf).expect("a notification");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    assert_eq!(next(), "READY=1");
    // Ready means the port is bound: nobody else can have it now.
    assert!(UdpSocket::bind(("::", port)).is_err(), "READY=1 before the UDP port was bound");
    assert!(next().starts_with("STATUS=remotes 0, macs 0"));
    // The watchdog is kept at half of WATCHDOG_USEC.
    let t0 = Instant::now();
    assert_eq!(next(), "WATCHDOG=1");
    assert!(t0.elapsed() < Duration::from_millis(400));
    drop(p.child.stdin.take());
    let mut last = String::new();
    while let Ok(n) = rx.recv(&mut buf) {
        last = String::from_utf8_lossy(&buf[..n]).into_owned();
        if last == "STOPPING=1" {
            break;
        }
    }
    assert_eq!(last, "STOPPING=1");
    assert!(p.wait_timeout(Duration::from_secs(5)).is_some_and(|s| s.success()));
}

#[test]
fn logs_to_the_journal_carry_priorities_and_elsewhere_a_dated_timestamp() {
    let dir = Scratch::unique("status-journal");
    for journal in [true, false] {
        let log = dir.file(&format!("log-{journal}"));
        let file = std::fs::File::create(&log).unwrap();
        let meta = file.metadata().unwrap();
        let mut cmd = Command::new(common::rrqnet_bin());
        cmd.args(["-v", "-t", "-", &free_port().to_string()]).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(file);
        if journal {
            cmd.env("JOURNAL_STREAM", format!("{}:{}", meta.dev(), meta.ino()));
        } else {
            cmd.env("JOURNAL_STREAM", "1:1");
        }
        let mut p = Proc::spawn("rrqnet", &mut cmd);
        drop(p.child.stdin.take());
        let st = p.wait_timeout(Duration::from_secs(5));
        assert!(
            st.is_some_and(|s| s.success()),
            "stdin at EOF ends it: {st:?}\n{}",
            std::fs::read_to_string(&log).unwrap()
        );
        let text = std::fs::read_to_string(&log).unwrap();
        let first = text.lines().next().unwrap_or_default();
        if journal {
            assert!(first.starts_with("<6>listening on UDP"), "{text}");
            assert!(text.lines().all(|l| l.starts_with('<')), "{text}");
        } else {
            // 2026-11-30T09:48:53.619039738Z [INFO] ...: date, time, zone.
            let stamp = first.split(' ').next().unwrap();
            assert!(stamp.len() >= 20 && stamp.as_bytes()[4] == b'-' && stamp.as_bytes()[10] == b'T', "{first}");
            assert!(stamp.ends_with('Z') || stamp.contains('+') || stamp[19..].contains('-'), "no zone: {first}");
        }
    }
}
