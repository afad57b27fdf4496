//! End to end with the built binary on loopback: daemons in stdio mode (VDE
//! framing on stdin/stdout) joined by UDP. No root needed.

mod common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use common::frames::{frame, mac, BCAST};
use common::stdio::exchange_frames;
use common::stdio::{Captured, StdioDaemon};

/// Ports for this file's tests: distinct per test so they can run in parallel.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

fn port() -> u16 {
    let base = 30000 + (std::process::id() % 2000) as u16 * 10;
    base + NEXT_PORT.fetch_add(1, Ordering::SeqCst)
}

/// A daemon with stdin/stdout as its local end, bound before anyone sends
/// to it; frames are expected within 3 s.
fn stdio_daemon(args: &[&str]) -> StdioDaemon {
    let d = StdioDaemon::spawn("rrqnet", None, "-vv", args).with_expect_limit(Duration::from_secs(3));
    assert!(d.wait_log("listening on UDP", Duration::from_secs(5)), "rrqnet did not bind:\n{}", d.log());
    d
}

fn pair_passes_frames(lo: &str, bracket: bool) {
    let (pa, pb) = (port(), port());
    let up = if bracket { format!("[{lo}]:{pb}") } else { format!("{lo}:{pb}") };
    let mask = if bracket { format!("[{lo}]") } else { lo.to_owned() };
    let mut b = stdio_daemon(&[&pb.to_string(), &mask]);
    let mut a = stdio_daemon(&[&pa.to_string(), &up]);

    exchange_frames(&mut a, &mut b, frame);
    a.finish();
    b.finish();
}

#[test]
fn uplink_and_downlink_pass_frames_ipv4() {
    pair_passes_frames("127.0.0.1", false);
}

#[test]
fn uplink_and_downlink_pass_frames_ipv6() {
    pair_passes_frames("::1", true);
}

#[test]
fn ipv4_only_socket_passes_frames() {
    let (pa, pb) = (port(), port());
    let mut b = stdio_daemon(&["-4", &pb.to_string(), "127.0.0.0/8"]);
    let a = stdio_daemon(&["-4", &pa.to_string(), &format!("127.0.0.1:{pb}")]);
    // a's first heartbeat makes b know it.
    assert!(b.wait_log(&format!("remote 127.0.0.1:{pa} connected"), Duration::from_secs(5)), "{}", b.log());
    let f = frame(BCAST, mac(7), 100, 9);
    b.send(&f);
    a.expect(&f, "-4 broadcast b->a");
    a.finish();
    b.finish();
}

#[test]
fn pure_switch_in_the_middle_forwards() {
    let (ps, pa, pb) = (port(), port(), port());
    let mut hub = Command::new(common::rrqnet_bin());
    hub.args(["-vv", &ps.to_string(), "127.0.0.0/8"]).stdin(Stdio::null()).stdout(Stdio::null());
    let mut hub = Captured::spawn("rrqnet hub", &mut hub);
    assert!(hub.wait_log("listening on UDP", Duration::from_secs(5)), "{}", hub.log());
    let mut a = stdio_daemon(&[&pa.to_string(), &format!("127.0.0.1:{ps}")]);
    let mut b = stdio_daemon(&[&pb.to_string(), &format!("127.0.0.1:{ps}")]);
    // Both clients' first heartbeats make the hub know them.
    for p in [pa, pb] {
        let known = format!("remote 127.0.0.1:{p} connected");
        assert!(hub.wait_log(&known, Duration::from_secs(5)), "{}", hub.log());
    }
    let f = frame(BCAST, mac(1), 60, 1);
    a.send(&f);
    b.expect(&f, "broadcast through the hub");
    let g = frame(mac(1), mac(2), 1514, 2);
    b.send(&g);
    a.expect(&g, "unicast back through the hub");
    let h = frame(mac(2), mac(1), 9000, 3);
    a.send(&h);
    b.expect(&h, "jumbo unicast through the hub");
    a.finish();
    b.finish();
    assert!(hub.proc.running(), "the hub keeps running");
    hub.proc.stop();
}

#[test]
fn heartbeat_makes_the_server_learn_the_client() {
    let (ps, pc) = (port(), port());
    let mut server = stdio_daemon(&[&ps.to_string(), "127.0.0.0/8"]);
    let client = stdio_daemon(&[&pc.to_string(), &format!("127.0.0.1:{ps}")]);
    // The client sends nothing but its heartbeat; the server's broadcast
    // must still reach it.
    let known = format!("remote 127.0.0.1:{pc} connected");
    assert!(server.wait_log(&known, Duration::from_secs(5)), "{}", server.log());
    let f = frame(BCAST, mac(5), 80, 5);
    server.send(&f);
    client.expect(&f, "server broadcast after only a heartbeat");
    client.finish();
    let log = server.finish();
    assert!(log.contains(&format!("remote 127.0.0.1:{pc} connected")), "server log:\n{log}");
}

#[test]
fn undeclared_source_gets_nothing_through() {
    let ps = port();
    let mut server = stdio_daemon(&[&ps.to_string(), "127.0.0.2"]);
    let stranger = UdpSocket::bind("127.0.0.1:0").unwrap();
    stranger.set_read_timeout(Some(Duration::from_millis(300))).unwrap();
    let f = frame(BCAST, mac(9), 60, 9);
    for _ in 0..20 {
        stranger.send_to(&f, ("127.0.0.1", ps)).unwrap();
        stranger.send_to(b"\0", ("127.0.0.1", ps)).unwrap();
    }
    server.expect_nothing(Duration::from_millis(500), "frame from an undeclared source");
    // The server must not have learned the stranger as a remote either.
    server.send(&frame(BCAST, mac(3), 60, 3));
    let mut buf = [0u8; 2048];
    assert!(stranger.recv_from(&mut buf).is_err(), "the stranger received a frame");

    // A declared source (127.0.0.2) does get through: the rule is the
    // declaration, not the socket.
    let friend = UdpSocket::bind("127.0.0.2:0").unwrap();
    let g = frame(BCAST, mac(4), 60, 4);
    friend.send_to(&g, ("127.0.0.1", ps)).unwrap();
    server.expect(&g, "frame from a declared source");
    let log = server.finish();
    assert!(log.matches("undeclared source").count() <= 1, "unknown sources are logged at most once a minute:\n{log}");
}

#[test]
fn heartbeats_are_short_and_not_empty() {
    let listener = UdpSocket::bind("127.0.0.1:0").unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    let lport = listener.local_addr().unwrap().port();
    let pc = port();
    let client = stdio_daemon(&[&pc.to_string(), &format!("127.0.0.1:{lport}")]);
    let mut buf = [0u8; 64];
    let (n, from) = listener.recv_from(&mut buf).expect("a heartbeat at start");
    assert!(n > 0 && n < 12, "heartbeat of {n} bytes");
    assert_eq!(from.port(), pc);
    client.finish();
}

#[test]
fn stdin_eof_exits_zero_and_flushes() {
    let (pa, pb) = (port(), port());
    let b = stdio_daemon(&[&pb.to_string(), "127.0.0.1"]);
    let mut a = stdio_daemon(&[&pa.to_string(), &format!("127.0.0.1:{pb}")]);
    let f = frame(BCAST, mac(1), 200, 1);
    a.send(&f);
    b.expect(&f, "frame before EOF");
    a.finish();
    b.finish();
}
