//! The multicast channel (`-m group:port`, SPEC section 4), end to end.
//!
//! Privileged tests run everything inside network namespaces made here, with
//! the group routed over the namespace's loopback; nothing leaves them. The
//! QEMU tests use a real QEMU (no guest) whose slirp answers ARP and ping on
//! 10.0.2.2 (SPEC section 7); its 10.0.2.0/24 is slirp's own virtual network
//! inside the QEMU process, and the namespace has no route out.

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::frames::{frame_with, BCAST};
use common::scratch::Scratch;
use common::stdio::{Captured, StdioDaemon};
use common::{drop_count, have_program, privileged, rrqnet_bin, veth, wait_for, Netns};
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

/// An rrqnet with `-v -t -` in `ns`.
fn stdio_peer(name: &str, ns: &Netns, args: &[&str]) -> StdioDaemon {
    StdioDaemon::spawn(name, Some(ns), "-v", args)
}

/// Frames padded with `fill ^ payload offset`.
fn frame(dst: [u8; 6], src: [u8; 6], len: usize, fill: u8) -> Vec<u8> {
    frame_with(dst, src, len, |i| fill ^ (i - 14) as u8)
}

const MAC_A: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0a];
const MAC_B: [u8; 6] = [0x02, 0, 0, 0, 0, 0x0b];

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
    let mut a = stdio_peer("rrqnet A", &ns, &["-m", GROUP]);
    let mut b = stdio_peer("rrqnet B", &ns, &["-m", GROUP]);
    for p in [&a, &b] {
        assert!(p.wait_log("multicast channel", Duration::from_secs(5)), "not joined:\n{}", p.logs(&[]));
    }

    let mut sent_a = 0;
    let mut sent_b = 0;
    // A broadcast from A reaches B, which learns A's MAC on the group.
    let f1 = frame(BCAST, MAC_A, 60, 1);
    a.send(&f1);
    sent_a += 1;
    b.expect_with_logs(&f1, "broadcast A -> B", &[&a]);
    // B answers unicast; A learns B on the group.
    let f2 = frame(MAC_A, MAC_B, 98, 2);
    b.send(&f2);
    sent_b += 1;
    a.expect_with_logs(&f2, "unicast B -> A", &[&b]);
    // Unicast both ways now that both are learned, including a jumbo frame
    // that passes whole.
    let f3 = frame(MAC_B, MAC_A, 1514, 3);
    let f4 = frame(MAC_B, MAC_A, 9014, 4);
    a.send(&f3);
    a.send(&f4);
    sent_a += 2;
    b.expect_with_logs(&f3, "unicast A -> B", &[&a]);
    b.expect_with_logs(&f4, "jumbo A -> B", &[&a]);
    // A burst, in order and complete.
    let burst: Vec<Vec<u8>> = (0..1000).map(|i| frame(MAC_A, MAC_B, 64 + i % 1400, i as u8)).collect();
    for f in &burst {
        b.send(f);
    }
    sent_b += burst.len() as u64;
    for (i, f) in burst.iter().enumerate() {
        a.expect_with_logs(f, &format!("burst frame {i} B -> A"), &[&b]);
    }

    // Neither heard its own frames back as input.
    a.expect_nothing(Duration::from_millis(500), "A's own frames must not come back");
    b.expect_nothing(Duration::from_millis(500), "B's own frames must not come back");
    let (log_a, log_b) = (a.finish(), b.finish());
    // With the loop on, each hears every datagram it sent, and drops it as its
    // own before the switch sees it (else they would be "sticky" drops).
    assert_eq!(drop_count(&log_a, "own-multicast"), sent_a, "A:\n{log_a}");
    assert_eq!(drop_count(&log_b, "own-multicast"), sent_b, "B:\n{log_b}");
    for log in [&log_a, &log_b] {
        assert_eq!(drop_count(log, "sticky-elsewhere"), 0, "{log}");
        assert_eq!(drop_count(log, "hairpin"), 0, "{log}");
    }
}

#[test]
fn short_datagrams_on_the_group_are_dropped_not_heartbeats() {
    if !privileged("short_datagrams_on_the_group_are_dropped_not_heartbeats") || !have_program("short", "bash") {
        return;
    }
    let ns = mcast_netns("mcrunt", Via::Lo);
    let a = stdio_peer("rrqnet A", &ns, &["-m", GROUP]);
    assert!(a.wait_log("multicast channel", Duration::from_secs(5)), "{}", a.logs(&[]));
    // bash's /dev/udp connects; cat sends each (small) file in one write, so
    // as one datagram.
    let (host, port) = GROUP.split_once(':').unwrap();
    let dir = Scratch::new("mcast", "runt");
    let send = |payload: &[u8]| {
        let path = dir.file("datagram");
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
    a.expect(&f, "a frame from a plain UDP sender");
    a.expect_nothing(Duration::from_millis(500), "the short datagrams are not frames");
    let log = a.finish();
    assert_eq!(drop_count(&log, "runt"), 2, "{log}");
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
fn spawn_qemu(ns: &Netns, group: &str) -> Captured {
    spawn_qemu_with(ns, &format!("socket,id=s0,mcast={group}"))
}

/// QEMU with a slirp user network hubbed to the netdev `s0` given.
fn spawn_qemu_with(ns: &Netns, netdev: &str) -> Captured {
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
    Captured::spawn("qemu", &mut cmd)
}

/// `vde_plug -- tap://TAP = rrqnet -v -t - ARGS`: a kernel tap in `ns`
/// bridged to an rrqnet's stdio.
fn spawn_tap_rrqnet(ns: &Netns, tap: &str, args: &[&str]) -> Captured {
    ns.ip(&["tuntap", "add", tap, "mode", "tap"]);
    ns.ip(&["addr", "add", "10.0.2.15/24", "dev", tap]);
    ns.ip(&["link", "set", tap, "up"]);
    let mut cmd = ns.cmd("vde_plug");
    cmd.args(["--", &format!("tap://{tap}"), "=", rrqnet_bin().to_str().unwrap(), "-v", "-t", "-"])
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null());
    Captured::spawn("vde_plug + rrqnet", &mut cmd)
}

/// Pings slirp's 10.0.2.2 from `ns` until it answers, then asks for five of five.
fn ping_slirp(ns: &Netns, procs: &[&Captured]) {
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
    let bridge = Captured::spawn("bridge rrqnet", &mut cmd);
    let plug = spawn_tap_rrqnet(&tns, "rrqtap1", &["2300", "192.0.2.1:2300"]);
    assert!(bridge.wait_log("multicast channel", Duration::from_secs(5)), "{}", bridge.log());
    ping_slirp(&tns, &[&plug, &bridge, &qemu]);
}
