//! The multicast channel (`-m group:port`, SPEC section 4), end to end.
//!
//! Privileged tests run everything inside network namespaces made here, with
//! the group routed over the namespace's loopback; nothing leaves them. The
//! QEMU tests use a real QEMU (no guest) whose slirp answers ARP and ping on
//! 10.0.2.2 (SPEC section 7); its 10.0.2.0/24 is slirp's own virtual network
//! inside the QEMU process, and the namespace has no route out.

mod common;

use std::io::{Read, Write};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{have_program, privileged, rrqnet_bin, veth, wait_for, Netns, Proc};
use rrqnet::switch::{Dest, Params, Switch};

const GROUP: &str = "239.1.2.3:5000";

/// Which interface a namespace routes the group through.
#[derive(Clone, Copy)]
enum Via {
    /// Loopback: every datagram sent comes back in as input, as SPEC 7 sets
    /// it up.
    Lo,
    /// A veth whose other end is in an empty namespace, like a host whose
    /// group is routed out of its Ethernet: what goes out is gone, and local
    /// listeners (ourselves, a QEMU on the same host) hear only the
    /// IP_MULTICAST_LOOP copy.
    Veth,
}

/// A namespace where IPv4 multicast works, and the namespace at the far end
/// of its veth, if any.
struct McastNs {
    ns: Netns,
    _far: Option<Netns>,
}

impl std::ops::Deref for McastNs {
    type Target = Netns;
    fn deref(&self) -> &Netns {
        &self.ns
    }
}

/// A namespace where IPv4 multicast works, routed `via` one interface.
fn mcast_netns(tag: &str, via: Via) -> McastNs {
    let ns = Netns::new(tag);
    match via {
        Via::Lo => {
            ns.ip(&["link", "set", "lo", "multicast", "on"]);
            ns.ip(&["route", "add", "224.0.0.0/4", "dev", "lo", "src", "127.0.0.1"]);
            McastNs { ns, _far: None }
        }
        Via::Veth => {
            let far = Netns::new(&format!("{tag}far"));
            veth(&ns, "rqmc0", &far, "rqmc1");
            ns.ip(&["addr", "add", "192.0.2.10/24", "dev", "rqmc0"]);
            ns.ip(&["route", "add", "224.0.0.0/4", "dev", "rqmc0", "src", "192.0.2.10"]);
            McastNs { ns, _far: Some(far) }
        }
    }
}

/// A process whose stderr is collected as it comes, for readiness checks and
/// for the failure message.
struct Logged {
    proc: Proc,
    log: Arc<Mutex<String>>,
}

impl Logged {
    fn spawn(name: &str, cmd: &mut Command) -> Logged {
        cmd.stderr(Stdio::piped());
        let mut proc = Proc::spawn(name, cmd);
        let log = Arc::new(Mutex::new(String::new()));
        let mut err = proc.child.stderr.take().expect("stderr is piped");
        let sink = Arc::clone(&log);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n) = err.read(&mut buf) {
                if n == 0 {
                    break;
                }
                sink.lock().unwrap().push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        });
        Logged { proc, log }
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    fn wait_log(&self, what: &str, limit: Duration) -> bool {
        wait_for(limit, || self.log().contains(what))
    }
}

/// An rrqnet with `-t -`: frames go in as VDE records and come out decoded.
struct StdioPeer {
    logged: Logged,
    stdin: Option<ChildStdin>,
    frames: Receiver<Vec<u8>>,
}

impl StdioPeer {
    fn spawn(name: &str, ns: &Netns, args: &[&str]) -> StdioPeer {
        let mut cmd = ns.cmd(rrqnet_bin().to_str().unwrap());
        cmd.args(["-v", "-t", "-"]).args(args).stdin(Stdio::piped()).stdout(Stdio::piped());
        let mut logged = Logged::spawn(name, &mut cmd);
        let stdin = logged.proc.child.stdin.take();
        let mut out = logged.proc.child.stdout.take().expect("stdout is piped");
        let (tx, frames) = mpsc::channel();
        std::thread::spawn(move || {
            let mut stream = Vec::new();
            let mut buf = [0u8; 65536];
            while let Ok(n) = out.read(&mut buf) {
                if n == 0 {
                    break;
                }
                stream.extend_from_slice(&buf[..n]);
                while stream.len() >= 2 {
                    let len = u16::from_be_bytes([stream[0], stream[1]]) as usize;
                    if stream.len() < 2 + len {
                        break;
                    }
                    let frame: Vec<u8> = stream.drain(..2 + len).skip(2).collect();
                    if tx.send(frame).is_err() {
                        return;
                    }
                }
            }
        });
        StdioPeer { logged, stdin, frames }
    }

    fn send(&mut self, frame: &[u8]) {
        let mut rec = (frame.len() as u16).to_be_bytes().to_vec();
        rec.extend_from_slice(frame);
        self.stdin.as_mut().expect("stdin is open").write_all(&rec).expect("write to rrqnet's stdin");
    }

    fn expect(&self, want: &[u8], what: &str, others: &[&StdioPeer]) {
        match self.frames.recv_timeout(Duration::from_secs(5)) {
            Ok(got) => assert!(got == want, "{what}: got a different frame ({} bytes) than sent", got.len()),
            Err(_) => panic!("{what}: nothing arrived\n{}", logs(self, others)),
        }
    }

    fn expect_nothing(&self, what: &str) {
        if let Ok(got) = self.frames.recv_timeout(Duration::from_millis(500)) {
            panic!("{what}: an unexpected {}-byte frame arrived: {:02x?}", got.len(), &got[..got.len().min(32)]);
        }
    }

    /// Closes stdin and waits for the clean exit; returns the log.
    fn finish(mut self) -> String {
        drop(self.stdin.take());
        let st = self.logged.proc.wait_timeout(Duration::from_secs(5));
        std::thread::sleep(Duration::from_millis(100));
        let log = self.logged.log();
        assert!(st.is_some_and(|s| s.success()), "{} did not exit 0 on EOF ({st:?}):\n{log}", self.logged.proc.name);
        log
    }
}

fn logs(p: &StdioPeer, others: &[&StdioPeer]) -> String {
    let mut s = format!("--- {} ---\n{}", p.logged.proc.name, p.logged.log());
    for o in others {
        s += &format!("--- {} ---\n{}", o.logged.proc.name, o.logged.log());
    }
    s
}

/// A scratch directory, removed when dropped.
struct TempDir(std::path::PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("rrqnet-mcast-{tag}-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    let mut f = Vec::with_capacity(len);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x88, 0xb5]); // local experimental ethertype
    f.extend((0..len - 14).map(|i| fill ^ i as u8));
    f
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];
const BCAST: [u8; 6] = [0xff; 6];

#[test]
fn two_rrqnets_share_a_group_both_ways() {
    if privileged("two_rrqnets_share_a_group_both_ways") {
        two_rrqnets_share_a_group(Via::Lo);
    }
}

#[test]
fn two_rrqnets_share_a_group_routed_out_of_an_interface() {
    if privileged("two_rrqnets_share_a_group_routed_out_of_an_interface") {
        two_rrqnets_share_a_group(Via::Veth);
    }
}

fn two_rrqnets_share_a_group(via: Via) {
    let ns = mcast_netns("mc2", via);
    // No port: -m alone with no remotes is allowed (the manual's example).
    let mut a = StdioPeer::spawn("rrqnet A", &ns, &["-m", GROUP]);
    let mut b = StdioPeer::spawn("rrqnet B", &ns, &["-m", GROUP]);
    for p in [&a, &b] {
        assert!(p.logged.wait_log("multicast channel", Duration::from_secs(5)), "not joined:\n{}", logs(p, &[]));
    }

    let mut sent_a = 0;
    let mut sent_b = 0;
    // A broadcast from A reaches B, which learns A's MAC on the group.
    let f1 = frame(BCAST, MAC_A, 60, 1);
    a.send(&f1);
    sent_a += 1;
    b.expect(&f1, "broadcast A -> B", &[&a]);
    // B answers unicast; A learns B on the group.
    let f2 = frame(MAC_A, MAC_B, 98, 2);
    b.send(&f2);
    sent_b += 1;
    a.expect(&f2, "unicast B -> A", &[&b]);
    // Unicast both ways now that both are learned, including a jumbo frame
    // that passes whole.
    let f3 = frame(MAC_B, MAC_A, 1514, 3);
    let f4 = frame(MAC_B, MAC_A, 9014, 4);
    a.send(&f3);
    a.send(&f4);
    sent_a += 2;
    b.expect(&f3, "unicast A -> B", &[&a]);
    b.expect(&f4, "jumbo A -> B", &[&a]);
    // A burst, in order and complete.
    let burst: Vec<Vec<u8>> = (0..1000).map(|i| frame(MAC_A, MAC_B, 64 + i % 1400, i as u8)).collect();
    for f in &burst {
        b.send(f);
    }
    sent_b += burst.len() as u64;
    for (i, f) in burst.iter().enumerate() {
        a.expect(f, &format!("burst frame {i} B -> A"), &[&b]);
    }

    // Neither heard its own frames back as input.
    a.expect_nothing("A's own frames must not come back");
    b.expect_nothing("B's own frames must not come back");
    let (log_a, log_b) = (a.finish(), b.finish());
    // With the loop on, each hears every datagram it sent, and drops it as its
    // own before the switch sees it (else they would be "sticky" drops).
    assert_eq!(common::drop_count(&log_a, "own-multicast"), sent_a, "A:\n{log_a}");
    assert_eq!(common::drop_count(&log_b, "own-multicast"), sent_b, "B:\n{log_b}");
    for log in [&log_a, &log_b] {
        assert_eq!(common::drop_count(log, "sticky-elsewhere"), 0, "{log}");
        assert_eq!(common::drop_count(log, "hairpin"), 0, "{log}");
    }
}

#[test]
fn short_datagrams_on_the_group_are_dropped_not_heartbeats() {
    if !privileged("short_datagrams_on_the_group_are_dropped_not_heartbeats") || !have_program("short", "bash") {
        return;
    }
    let ns = mcast_netns("mcrunt", Via::Lo);
    let a = StdioPeer::spawn("rrqnet A", &ns, &["-m", GROUP]);
    assert!(a.logged.wait_log("multicast channel", Duration::from_secs(5)), "{}", logs(&a, &[]));
    // bash's /dev/udp connects; cat sends each (small) file in one write, so
    // as one datagram.
    let (host, port) = GROUP.split_once(':').unwrap();
    let dir = TempDir::new("runt");
    let send = |payload: &[u8]| {
        let path = dir.0.join("datagram");
        std::fs::write(&path, payload).unwrap();
        let script = format!("cat {} > /dev/udp/{host}/{port}", path.display());
        let st = ns.cmd("bash").args(["-c", &script]).status().unwrap();
        assert!(st.success(), "bash -c {script}: {st}");
    };
    send(b"x");
    send(b"0123456789a");
    // Then a real frame from the same kind of sender passes.
    let f = frame(BCAST, MAC_B, 60, 9);
    send(&f);
    a.expect(&f, "a frame from a plain UDP sender", &[]);
    a.expect_nothing("the short datagrams are not frames");
    let log = a.finish();
    assert_eq!(common::drop_count(&log, "runt"), 2, "{log}");
}

/// A keyed group whose key file cannot be read never starts (and never runs
/// in plaintext instead); the keyed group itself is tested in tests/e2e_keyed.rs.
#[test]
fn keyed_multicast_with_a_missing_key_file_is_a_start_error() {
    let out = Command::new(rrqnet_bin())
        .args(["-m", "239.1.2.3:5000=/nonexistent/key", "-t", "-"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.starts_with("rrqnet: key file /nonexistent/key: "), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn a_group_that_cannot_be_joined_is_a_start_error() {
    if !privileged("a_group_that_cannot_be_joined_is_a_start_error") {
        return;
    }
    // Loopback up but no multicast route: the kernel has no interface to join on.
    let ns = Netns::new("mcnoroute");
    let out = ns.cmd(rrqnet_bin().to_str().unwrap()).args(["-m", GROUP]).stdin(Stdio::null()).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains(GROUP), "{err}");
}

/// The multicast port is a persistent remote: no heartbeat, never stale.
#[test]
fn multicast_port_gets_no_heartbeats_and_never_goes_stale() {
    let t0 = Instant::now();
    let mut sw = Switch::new(Params { ignore: vec![vec![]], ..Params::default() });
    let port = sw.add_multicast(t0, 0).unwrap();
    assert_eq!(sw.poll_timeout(), None, "nothing is due for a multicast port");
    for h in [0, 31, 181, 3600] {
        let now = t0 + Duration::from_secs(h);
        sw.handle_timeout(now);
        assert_eq!(sw.poll_heartbeat(now), None);
    }
    let targets: Vec<_> = sw.targets().collect();
    assert_eq!(targets.len(), 1);
    assert_eq!((targets[0].port, targets[0].dest), (port, Dest::Multicast));
}

/// QEMU with a slirp user network on a multicast socket netdev (SPEC 7).
fn spawn_qemu(ns: &Netns, group: &str) -> Logged {
    spawn_qemu_with(ns, &format!("socket,id=s0,mcast={group}"))
}

/// QEMU with a slirp user network hubbed to the netdev `s0` given.
fn spawn_qemu_with(ns: &Netns, netdev: &str) -> Logged {
    let mut cmd = ns.cmd("qemu-system-x86_64");
    cmd.args([
        "-nodefaults",
        "-display",
        "none",
        "-machine",
        "none",
        "-netdev",
        "user,id=u0",
        "-netdev",
        netdev,
        "-netdev",
        "hubport,id=h0,hubid=0,netdev=u0",
        "-netdev",
        "hubport,id=h1,hubid=0,netdev=s0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null());
    Logged::spawn("qemu", &mut cmd)
}

/// `vde_plug -- tap://TAP = rrqnet -v -t - ARGS`: a kernel tap in `ns`
/// bridged to an rrqnet's stdio.
fn spawn_tap_rrqnet(ns: &Netns, tap: &str, args: &[&str]) -> Logged {
    ns.ip(&["tuntap", "add", tap, "mode", "tap"]);
    ns.ip(&["addr", "add", "10.0.2.15/24", "dev", tap]);
    ns.ip(&["link", "set", tap, "up"]);
    let mut cmd = ns.cmd("vde_plug");
    cmd.args(["--", &format!("tap://{tap}"), "=", rrqnet_bin().to_str().unwrap(), "-v", "-t", "-"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Logged::spawn("vde_plug + rrqnet", &mut cmd)
}

/// Pings slirp's 10.0.2.2 from `ns` until it answers, then asks for five of five.
fn ping_slirp(ns: &Netns, procs: &[&Logged]) {
    let dump = || procs.iter().map(|p| format!("--- {} ---\n{}", p.proc.name, p.log())).collect::<String>();
    let first = wait_for(Duration::from_secs(30), || ns.try_sh("ping -n -c 1 -W 1 10.0.2.2"));
    assert!(first, "10.0.2.2 (QEMU slirp) never answered a ping\n{}", dump());
    let out = ns.cmd("ping").args(["-n", "-c", "5", "-i", "0.2", "-W", "2", "10.0.2.2"]).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains(" 0% packet loss"), "ping 10.0.2.2:\n{text}\n{}", dump());
    eprintln!("{}", text.lines().last().unwrap_or(""));
}

#[test]
fn tap_reaches_qemu_slirp_over_the_group() {
    tap_reaches_qemu_slirp("tap_reaches_qemu_slirp_over_the_group", Via::Lo);
}

#[test]
fn tap_reaches_qemu_slirp_over_a_group_routed_out_of_an_interface() {
    tap_reaches_qemu_slirp("tap_reaches_qemu_slirp_over_a_group_routed_out_of_an_interface", Via::Veth);
}

/// QEMU 7.2's newer `dgram` netdev with a multicast remote is the same wire.
#[test]
fn tap_reaches_qemu_slirp_over_a_dgram_netdev() {
    let (host, port) = GROUP.split_once(':').unwrap();
    let netdev = format!("dgram,id=s0,remote.type=inet,remote.host={host},remote.port={port}");
    tap_reaches_qemu_slirp_with("tap_reaches_qemu_slirp_over_a_dgram_netdev", Via::Lo, &netdev);
}

fn tap_reaches_qemu_slirp(name: &str, via: Via) {
    tap_reaches_qemu_slirp_with(name, via, &format!("socket,id=s0,mcast={GROUP}"));
}

fn tap_reaches_qemu_slirp_with(name: &str, via: Via, netdev: &str) {
    if !privileged(name) || !have_program(name, "qemu-system-x86_64") || !have_program(name, "vde_plug") {
        return;
    }
    let ns = mcast_netns("mcqemu", via);
    let qemu = spawn_qemu_with(&ns, netdev);
    let plug = spawn_tap_rrqnet(&ns, "rrqtap0", &["-m", GROUP]);
    assert!(plug.wait_log("multicast channel", Duration::from_secs(5)), "{}", plug.log());
    ping_slirp(&ns, &[&plug, &qemu]);
}

#[test]
fn remote_tap_reaches_qemu_through_a_multicast_bridge() {
    let name = "remote_tap_reaches_qemu_through_a_multicast_bridge";
    if !privileged(name) || !have_program(name, "qemu-system-x86_64") || !have_program(name, "vde_plug") {
        return;
    }
    // QEMU and a bridging rrqnet (multicast + uplink, no local end) in one
    // namespace; a tap behind a second rrqnet in another, joined by a veth.
    let qns = mcast_netns("mcbrq", Via::Lo);
    let tns = Netns::new("mcbrt");
    veth(&qns, "rqbr0", &tns, "rqbr1");
    qns.ip(&["addr", "add", "192.0.2.1/24", "dev", "rqbr0"]);
    tns.ip(&["addr", "add", "192.0.2.2/24", "dev", "rqbr1"]);
    let qemu = spawn_qemu(&qns, GROUP);
    let mut cmd = qns.cmd(rrqnet_bin().to_str().unwrap());
    cmd.args(["-v", "-m", GROUP, "2300", "192.0.2.2:2300"]).stdin(Stdio::null()).stdout(Stdio::null());
    let bridge = Logged::spawn("bridge rrqnet", &mut cmd);
    let plug = spawn_tap_rrqnet(&tns, "rrqtap1", &["2300", "192.0.2.1:2300"]);
    assert!(bridge.wait_log("multicast channel", Duration::from_secs(5)), "{}", bridge.log());
    ping_slirp(&tns, &[&plug, &bridge, &qemu]);
}
