//! End to end with the built binary on loopback: daemons in stdio mode (VDE
//! framing on stdin/stdout) joined by UDP. No root needed.

mod common;

use std::io::{Read, Write};
use std::net::UdpSocket;
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::Duration;

use common::Proc;

/// Ports for this file's tests: distinct per test so they can run in parallel.
static NEXT_PORT: AtomicU16 = AtomicU16::new(0);

fn port() -> u16 {
    let base = 30000 + (std::process::id() % 2000) as u16 * 10;
    base + NEXT_PORT.fetch_add(1, Ordering::SeqCst)
}

/// A daemon with stdin/stdout as its local end.
struct Stdio_ {
    proc_: Proc,
    stdin: Option<ChildStdin>,
    frames: Receiver<Vec<u8>>,
}

impl Stdio_ {
    fn spawn(args: &[&str]) -> Stdio_ {
        let mut cmd = Command::new(common::rrqnet_bin());
        cmd.arg("-vv")
            .arg("-t")
            .arg("-")
            .args(args)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut p = Proc::spawn("rrqnet", &mut cmd);
        let stdin = p.child.stdin.take();
        let mut out = p.child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut hdr = [0u8; 2];
            loop {
                if out.read_exact(&mut hdr).is_err() {
                    return;
                }
                let mut f = vec![0u8; u16::from_be_bytes(hdr) as usize];
                if out.read_exact(&mut f).is_err() || tx.send(f).is_err() {
                    return;
                }
            }
        });
        // Give the daemon a moment to bind before anyone sends to it.
        std::thread::sleep(Duration::from_millis(150));
        Stdio_ { proc_: p, stdin, frames: rx }
    }

    fn send(&mut self, frame: &[u8]) {
        let mut rec = (frame.len() as u16).to_be_bytes().to_vec();
        rec.extend_from_slice(frame);
        self.stdin.as_mut().expect("stdin open").write_all(&rec).expect("write to rrqnet stdin");
    }

    fn send_all(&mut self, frames: &[Vec<u8>]) {
        let mut buf = Vec::new();
        for f in frames {
            buf.extend_from_slice(&(f.len() as u16).to_be_bytes());
            buf.extend_from_slice(f);
        }
        self.stdin.as_mut().expect("stdin open").write_all(&buf).expect("write to rrqnet stdin");
    }

    fn recv(&self, limit: Duration) -> Option<Vec<u8>> {
        self.frames.recv_timeout(limit).ok()
    }

    fn expect(&self, want: &[u8], what: &str) {
        match self.recv(Duration::from_secs(3)) {
            Some(got) => {
                assert!(got == want, "{what}: got a different frame ({} bytes, want {})", got.len(), want.len())
            }
            None => panic!("{what}: nothing arrived"),
        }
    }

    fn expect_nothing(&self, limit: Duration, what: &str) {
        if let Some(got) = self.recv(limit) {
            panic!("{what}: unexpected {}-byte frame", got.len());
        }
    }

    /// Closes stdin and checks the daemon exits 0.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let st = self.proc_.wait_timeout(Duration::from_secs(5)).expect("rrqnet exits on stdin EOF");
        let err = self.proc_.stderr_text();
        assert!(st.success(), "rrqnet exit status {st}; stderr:\n{err}");
        err
    }
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental EtherType
    while f.len() < len {
        f.push(fill.wrapping_add(f.len() as u8));
    }
    f
}

const BCAST: [u8; 6] = [0xff; 6];

fn pair_passes_frames(lo: &str, bracket: bool) {
    let (pa, pb) = (port(), port());
    let up = if bracket { format!("[{lo}]:{pb}") } else { format!("{lo}:{pb}") };
    let mask = if bracket { format!("[{lo}]") } else { lo.to_owned() };
    let mut b = Stdio_::spawn(&[&pb.to_string(), &mask]);
    let mut a = Stdio_::spawn(&[&pa.to_string(), &up]);

    // A's broadcast reaches B (B learns A from it), B's unicast reply reaches A.
    let hello = frame(BCAST, mac(1), 60, 1);
    a.send(&hello);
    b.expect(&hello, "broadcast a->b");
    let reply = frame(mac(1), mac(2), 60, 2);
    b.send(&reply);
    a.expect(&reply, "unicast b->a");

    for len in [60, 1514, 9000] {
        let f = frame(mac(2), mac(1), len, len as u8);
        a.send(&f);
        b.expect(&f, &format!("{len}-byte frame a->b"));
        let g = frame(mac(1), mac(2), len, 3);
        b.send(&g);
        a.expect(&g, &format!("{len}-byte frame b->a"));
    }

    // 1000 back to back, none lost, in order.
    let burst: Vec<Vec<u8>> = (0..1000).map(|i| frame(mac(2), mac(1), 60 + (i * 97) % 1455, i as u8)).collect();
    a.send_all(&burst);
    for (i, f) in burst.iter().enumerate() {
        match b.recv(Duration::from_secs(5)) {
            Some(got) => assert!(&got == f, "burst frame {i} differs"),
            None => panic!("burst: only {i} of 1000 frames arrived"),
        }
    }
    let burst: Vec<Vec<u8>> = (0..1000).map(|i| frame(mac(1), mac(2), 1514, i as u8)).collect();
    b.send_all(&burst);
    for (i, f) in burst.iter().enumerate() {
        match a.recv(Duration::from_secs(5)) {
            Some(got) => assert!(&got == f, "reverse burst frame {i} differs"),
            None => panic!("reverse burst: only {i} of 1000 frames arrived"),
        }
    }
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
    let mut b = Stdio_::spawn(&["-4", &pb.to_string(), "127.0.0.0/8"]);
    let a = Stdio_::spawn(&["-4", &pa.to_string(), &format!("127.0.0.1:{pb}")]);
    std::thread::sleep(Duration::from_millis(200)); // a's first heartbeat makes b know it
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
    hub.args(["-vv", &ps.to_string(), "127.0.0.0/8"]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::piped());
    let mut hub = Proc::spawn("rrqnet hub", &mut hub);
    std::thread::sleep(Duration::from_millis(150));
    let mut a = Stdio_::spawn(&[&pa.to_string(), &format!("127.0.0.1:{ps}")]);
    let mut b = Stdio_::spawn(&[&pb.to_string(), &format!("127.0.0.1:{ps}")]);
    // Both clients' first heartbeats make the hub know them.
    std::thread::sleep(Duration::from_millis(300));
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
    assert!(hub.running(), "the hub keeps running");
    hub.stop();
}

#[test]
fn heartbeat_makes_the_server_learn_the_client() {
    let (ps, pc) = (port(), port());
    let mut server = Stdio_::spawn(&[&ps.to_string(), "127.0.0.0/8"]);
    let client = Stdio_::spawn(&[&pc.to_string(), &format!("127.0.0.1:{ps}")]);
    // The client sends nothing but its heartbeat; the server's broadcast
    // must still reach it.
    std::thread::sleep(Duration::from_millis(300));
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
    let mut server = Stdio_::spawn(&[&ps.to_string(), "127.0.0.2"]);
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
    let client = Stdio_::spawn(&[&pc.to_string(), &format!("127.0.0.1:{lport}")]);
    let mut buf = [0u8; 64];
    let (n, from) = listener.recv_from(&mut buf).expect("a heartbeat at start");
    assert!(n > 0 && n < 12, "heartbeat of {n} bytes");
    assert_eq!(from.port(), pc);
    client.finish();
}

#[test]
fn stdin_eof_exits_zero_and_flushes() {
    let (pa, pb) = (port(), port());
    let b = Stdio_::spawn(&[&pb.to_string(), "127.0.0.1"]);
    let mut a = Stdio_::spawn(&[&pa.to_string(), &format!("127.0.0.1:{pb}")]);
    let f = frame(BCAST, mac(1), 200, 1);
    a.send(&f);
    b.expect(&f, "frame before EOF");
    a.finish();
    b.finish();
}
