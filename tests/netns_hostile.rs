//! Hostile traffic (issue 13) against the built binary, with real taps in
//! network namespaces: forged datagrams from raw sockets (python3) in a
//! namespace of their own, a MAC flood from a tap guest, a tap taken down
//! and up again, and privileges (`--user`, and no root at all on a tap made
//! for the user).
//!
//! Underlays use 192.0.2.0/24 (the real peers) and 203.0.113.0/24 (the
//! attacker's link); forged sources are in 10.0.0.0/8, routed back towards
//! the attacker, whose namespace drops what comes (it does not forward).
//! Overlays use 198.51.100.0/24. Every namespace, tap and process is removed
//! on drop, also when a test fails. Needs root, iproute2, ping, python3 and
//! util-linux (`setpriv`, `unshare`).

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::netns_util::{self, add_tap, logs, no_ipv6, pings, Logged};
use common::scratch::Scratch;
use common::stdio::Captured;
use common::{drop_count, have_program, privileged, rrqnet_bin, veth, wait_for, Netns, Proc};

/// An interface name unique to this test process.
fn ifname(tag: &str, i: usize) -> String {
    netns_util::ifname("h", tag, i)
}

fn scratch(tag: &str) -> Scratch {
    Scratch::new("netns-hostile", tag)
}

/// What `ping` measured.
#[derive(Debug, Clone)]
struct PingStats {
    sent: usize,
    rtts_ms: Vec<f64>,
}

impl PingStats {
    fn lost(&self) -> usize {
        self.sent - self.rtts_ms.len()
    }

    fn median(&self) -> f64 {
        let mut v = self.rtts_ms.clone();
        v.sort_by(f64::total_cmp);
        v.get(v.len() / 2).copied().unwrap_or(f64::INFINITY)
    }

    fn mean(&self) -> f64 {
        self.rtts_ms.iter().sum::<f64>() / self.rtts_ms.len().max(1) as f64
    }
}

/// `count` pings from `ns` to `addr`, `interval` seconds apart, each
/// waiting up to a second for its answer.
fn ping(ns: &Netns, addr: &str, count: usize, interval: f64) -> PingStats {
    let out = ns
        .cmd("ping")
        .args(["-n", "-c", &count.to_string(), "-i", &interval.to_string(), "-W", "1", addr])
        .stdin(Stdio::null())
        .output()
        .expect("ping runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let rtts_ms = text
        .lines()
        .filter_map(|l| l.split("time=").nth(1))
        .filter_map(|t| t.split_whitespace().next())
        .filter_map(|t| t.parse::<f64>().ok())
        .collect();
    PingStats { sent: count, rtts_ms }
}

/// Forges datagrams to an rrqnet at `argv[1]:argv[2]` from sources in
/// 10.0.0.0/8 (source `i` is in a /24 of its own for the first 65536),
/// through a raw socket. First heartbeats from `argv[3]` sources, as fast as
/// it can; it prints "attacking"; then for `argv[4]` seconds, 100 forged
/// broadcasts a second (100-byte frames) from sources 0..99 (the first a
/// server admits), while heartbeats from all the sources go on at 2000 a
/// second. Prints what it sent.
const FORGER: &str = r#"
import socket, struct, sys, time
dst, port, n, secs = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
daddr = socket.inet_aton(dst)
def source(i):
    return bytes([10, (i >> 8) & 255, i & 255, 1 + (i >> 16)])
def send(i, payload):
    udp = struct.pack("!HHHH", 2300, port, 8 + len(payload), 0) + payload
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, source(i), daddr)
    while True:
        try:
            s.sendto(ip + udp, (dst, 0))
            return
        except BlockingIOError:
            time.sleep(0.001)
sent = 0
for i in range(n):
    send(i, b"\0")
    sent += 1
    if i % 500 == 499:
        time.sleep(0.02)
print("attacking", flush=True)
bcasts = 0
end = time.time() + secs
tick = 0
while time.time() < end:
    t = time.time()
    frame = b"\xff" * 6 + bytes([2, 0xaa, 0, 0, 0, tick % 100]) + b"\x88\xb5" + bytes([tick & 255]) * 86
    send(tick % 100, frame)
    bcasts += 1
    for k in range(20):
        send((tick * 20 + k) % n, b"\0")
        sent += 1
    tick += 1
    time.sleep(max(0.0, 0.01 - (time.time() - t)))
print("sent", sent, "heartbeats and", bcasts, "broadcasts", flush=True)
"#;

/// Finding 1, end to end: a server with the issue's plain downlinks
/// (`192.0.2.0/24` and `10.0.0.0/8`) and a real client's tunnel through it.
/// Forged heartbeats from 50 000 sources in 10.0.0.0/8 and 100 forged
/// broadcasts a second arrive from a third namespace; the real tunnel's
/// pings lose nothing and are not held up (their median round trip stays
/// under 50 ms, where the build before the guard took seconds), and the
/// server writes a few log lines.
#[test]
fn forged_heartbeats_and_broadcasts_cost_a_real_tunnel_nothing() {
    if !privileged("forged_heartbeats_and_broadcasts_cost_a_real_tunnel_nothing") {
        return;
    }
    let dir = scratch("amp");
    let (s, c, x) = (Netns::new("amps"), Netns::new("ampc"), Netns::new("ampx"));
    for ns in [&s, &c, &x] {
        no_ipv6(ns);
    }
    let (s1, c1, s2, x2) = (ifname("amp", 0), ifname("amp", 1), ifname("amp", 2), ifname("amp", 3));
    veth(&s, &s1, &c, &c1);
    veth(&s, &s2, &x, &x2);
    s.ip(&["addr", "add", "192.0.2.1/24", "dev", &s1]);
    c.ip(&["addr", "add", "192.0.2.2/24", "dev", &c1]);
    s.ip(&["addr", "add", "203.0.113.1/24", "dev", &s2]);
    x.ip(&["addr", "add", "203.0.113.2/24", "dev", &x2]);
    // Answers to forged sources go to the attacker's namespace.
    s.ip(&["route", "add", "10.0.0.0/8", "via", "203.0.113.2"]);
    s.sh(&format!("sysctl -qw net.ipv4.conf.all.rp_filter=0 net.ipv4.conf.{s2}.rp_filter=0"));
    add_tap(&s, "tap0", &["198.51.100.1/24"], None);
    add_tap(&c, "tap0", &["198.51.100.2/24"], None);
    let server = Logged::rrqnet(&s, &dir, "server", &["-v", "-t", "tap0", "2300", "192.0.2.0/24:2300", "10.0.0.0/8"]);
    let client = Logged::rrqnet(&c, &dir, "client", &["-v", "-t", "tap0", "2300", "192.0.2.1:2300"]);
    assert!(pings(&c, "198.51.100.1"), "no tunnel\n{}", logs(&[&server, &client]));
    assert!(server.text().contains("is unkeyed and wider than /16"), "no warning:\n{}", server.text());

    let baseline = ping(&c, "198.51.100.1", 100, 0.02);
    assert_eq!(baseline.lost(), 0, "pings lost before the attack\n{}", logs(&[&server, &client]));

    let mut forger = x.cmd("python3");
    forger.args(["-c", FORGER, "203.0.113.1", "2300", "50000", "12"]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut forger = Proc::spawn("forger", &mut forger);
    let mut out = BufReader::new(forger.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "attacking", "the forger did not start");
    let lines_before = server.text().lines().count();
    std::thread::sleep(Duration::from_secs(1));
    let under = ping(&c, "198.51.100.1", 150, 0.05);
    line.clear();
    out.read_line(&mut line).unwrap();
    let st = forger.wait_timeout(Duration::from_secs(20)).expect("the forger did not end");
    assert!(st.success(), "forger: {st}");
    let log_lines = server.text().lines().count() - lines_before;
    let _ = client.stop();
    let log = server.stop();
    eprintln!(
        "baseline median {:.3} ms (mean {:.3}), under attack median {:.3} ms (mean {:.3}), lost {}; forger: {}",
        baseline.median(),
        baseline.mean(),
        under.median(),
        under.mean(),
        under.lost(),
        line.trim()
    );
    assert_eq!(under.lost(), 0, "pings lost under the attack\n{log}");
    // Not a speed bound (bench/soak measures that): the build before the
    // guard delayed these pings by seconds (a 4.5 s median) while its log
    // and admission spun; the sibling tests share the two cores, so
    // anything within tens of milliseconds is the machine, not the attack.
    assert!(
        under.median() <= 50.0,
        "median round trip {:.3} ms under the attack, {:.3} ms before",
        under.median(),
        baseline.median()
    );
    assert!(drop_count(&log, "declaration-full") > 0, "{log}");
    assert!(log_lines < 20, "{log_lines} log lines during the attack:\n{log}");
}

/// Sends, from `argv[1]` (a tap), `argv[2]` frames a second with random
/// source addresses to the MAC `argv[3]`, for `argv[4]` seconds.
const MAC_FLOODER: &str = r#"
import os, socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
rate, dst, secs = int(sys.argv[2]), bytes.fromhex(sys.argv[3].replace(":", "")), float(sys.argv[4])
print("flooding", flush=True)
end = time.time() + secs
n = 0
while time.time() < end:
    t = time.time()
    for _ in range(rate // 100):
        src = bytearray(os.urandom(6))
        src[0] = (src[0] & 0xfc) | 2
        s.send(dst + bytes(src) + b"\x88\xb5" + bytes(46))
        n += 1
    time.sleep(max(0.0, 0.01 - (time.time() - t)))
print("sent", n, flush=True)
"#;

/// Sends, from `argv[1]` (a tap), 60 frames from each of 10 new source
/// addresses 02:bb:00:00:00:0X to the MAC `argv[2]`, 10 a second each.
const NEW_HOSTS: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind((sys.argv[1], 0))
dst = bytes.fromhex(sys.argv[2].replace(":", ""))
for k in range(60):
    for h in range(10):
        s.send(dst + bytes([2, 0xbb, 0, 0, 0, h]) + b"\x88\xb6" + bytes([k]) * 46)
    time.sleep(0.1)
"#;

/// Counts, on `argv[1]` (a tap), frames of EtherType 0x88b6 from the new
/// hosts' addresses, for `argv[2]` seconds.
const NEW_HOST_COUNTER: &str = r#"
import socket, sys, time
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x88b6))
s.bind((sys.argv[1], 0))
s.settimeout(0.1)
print("ready", flush=True)
end = time.time() + float(sys.argv[2])
n = 0
while time.time() < end:
    try:
        d = s.recv(2048)
    except socket.timeout:
        continue
    if d[6:11] == bytes([2, 0xbb, 0, 0, 0]):
        n += 1
print(n, flush=True)
"#;

/// The MAC address of an interface in a namespace.
fn mac_of(ns: &Netns, ifname: &str) -> String {
    ns.sh(&format!("cat /sys/class/net/{ifname}/address")).trim().to_owned()
}

/// Finding 2, end to end: a guest behind one client's tap sends 5000
/// frames a second from random source addresses to the server's tap (more
/// than the whole table holds within 4 s); meanwhile 10 new hosts behind
/// another client send 60 frames each to the server's tap, and all 600
/// arrive.
#[test]
fn a_mac_flood_from_one_tap_leaves_new_hosts_elsewhere_all_their_frames() {
    if !privileged("a_mac_flood_from_one_tap_leaves_new_hosts_elsewhere_all_their_frames") {
        return;
    }
    let dir = scratch("macflood");
    let hub = Netns::new("mfh");
    no_ipv6(&hub);
    hub.ip(&["link", "add", "br0", "type", "bridge"]);
    hub.ip(&["link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    for i in 0..3 {
        let h = Netns::new(&format!("mf{i}"));
        no_ipv6(&h);
        let (hi, pi) = (ifname("mf", 2 * i), ifname("mf", 2 * i + 1));
        veth(&h, &hi, &hub, &pi);
        hub.ip(&["link", "set", &pi, "master", "br0"]);
        h.ip(&["addr", "add", &format!("192.0.2.{}/24", i + 1), "dev", &hi]);
        add_tap(&h, "tap0", &[&format!("198.51.100.{}/24", i + 1)], None);
        hosts.push(h);
    }
    let (s, a, b) = (&hosts[0], &hosts[1], &hosts[2]);
    let ds = Logged::rrqnet(s, &dir, "server", &["-v", "-t", "tap0", "2300", "192.0.2.0/24:2300"]);
    let da = Logged::rrqnet(a, &dir, "flooder", &["-v", "-t", "tap0", "2300", "192.0.2.1:2300"]);
    let db = Logged::rrqnet(b, &dir, "newhosts", &["-v", "-t", "tap0", "2300", "192.0.2.1:2300"]);
    let all = [&ds, &da, &db];
    assert!(pings(a, "198.51.100.1"), "no tunnel from a\n{}", logs(&all));
    assert!(pings(b, "198.51.100.1"), "no tunnel from b\n{}", logs(&all));
    let server_mac = mac_of(s, "tap0");

    let mut flood = a.cmd("python3");
    flood.args(["-c", MAC_FLOODER, "tap0", "5000", &server_mac, "14"]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut flood = Proc::spawn("mac flooder", &mut flood);
    let mut out = BufReader::new(flood.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "flooding");
    // 4 s of flood: 20 000 addresses, more than the table's 16 384.
    std::thread::sleep(Duration::from_secs(4));
    let mut counter = s.cmd("python3");
    counter.args(["-c", NEW_HOST_COUNTER, "tap0", "9"]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut counter = Proc::spawn("counter", &mut counter);
    let mut counted = BufReader::new(counter.child.stdout.take().unwrap());
    let mut ready = String::new();
    counted.read_line(&mut ready).unwrap();
    assert_eq!(ready.trim(), "ready");
    let st = b.cmd("python3").args(["-c", NEW_HOSTS, "tap0", &server_mac]).stdin(Stdio::null()).status().unwrap();
    assert!(st.success(), "the new hosts' sender failed");
    let mut n = String::new();
    counted.read_line(&mut n).unwrap();
    let _ = counter.wait_timeout(Duration::from_secs(5));
    line.clear();
    out.read_line(&mut line).unwrap();
    let _ = flood.wait_timeout(Duration::from_secs(10));
    let (log_s, log_a) = (ds.stop(), da.stop());
    let _ = db.stop();
    let got: usize = n.trim().parse().unwrap_or_else(|_| panic!("counter said {n:?}"));
    eprintln!("flooder: {}; new hosts' frames at the server: {got} of 600", line.trim());
    assert_eq!(got, 600, "new hosts' frames that reached the server's tap\n{log_s}\n{log_a}");
    assert!(drop_count(&log_s, "port-mac-limit") > 0 || drop_count(&log_a, "port-mac-limit") > 0, "{log_s}\n{log_a}");
}

/// CPU time (user + system, in clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// A tap taken down under a running daemon, with a peer still sending to
/// it, then brought up again: the daemon keeps running, costs no CPU while
/// the tap is down (no spin), writes a few lines at most, counts what it
/// could not deliver, and the tunnel works again once the tap is up.
#[test]
fn a_tap_taken_down_and_up_again_resumes_without_a_spin() {
    if !privileged("a_tap_taken_down_and_up_again_resumes_without_a_spin") {
        return;
    }
    let dir = scratch("tapdown");
    let (a, b, _, _) = netns_util::pair("h", "td", "192.0.2.1/24", "192.0.2.2/24", false);
    add_tap(&a, "tap0", &["198.51.100.1/24"], None);
    add_tap(&b, "tap0", &["198.51.100.2/24"], None);
    let da = Logged::rrqnet(&a, &dir, "a", &["-vv", "-t", "tap0", "2300", "192.0.2.2:2300"]);
    let db = Logged::rrqnet(&b, &dir, "b", &["-v", "-t", "tap0", "2300", "192.0.2.1:2300"]);
    assert!(pings(&b, "198.51.100.1"), "no tunnel\n{}", logs(&[&da, &db]));
    let lines0 = da.text().lines().count();
    a.ip(&["link", "set", "tap0", "down"]);
    let cpu0 = cpu_ticks(da.proc.pid());
    let t0 = Instant::now();
    // b keeps sending (pings, then broadcasts of ARP) towards a's tap.
    let lost = ping(&b, "198.51.100.1", 40, 0.1);
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_ticks(da.proc.pid()) - cpu0;
    assert_eq!(lost.rtts_ms.len(), 0, "pings answered by a tap that is down");
    a.ip(&["link", "set", "tap0", "up"]);
    assert!(pings(&b, "198.51.100.1"), "the tunnel did not come back\n{}", logs(&[&da, &db]));
    assert!(pings(&a, "198.51.100.2"), "the tunnel did not come back the other way\n{}", logs(&[&da, &db]));
    let lines = da.text().lines().count() - lines0;
    let log = da.stop();
    let _ = db.stop();
    assert!((cpu as f64) < secs * 100.0 * 0.05, "{cpu} ticks of CPU in {secs:.1} s while the tap was down");
    assert!(lines < 20, "{lines} log lines while the tap was down:\n{log}");
    assert!(drop_count(&log, "send-failed") > 0, "frames for the downed tap are counted\n{log}");
}

/// The user, group and supplementary groups of a process, from /proc.
fn ids(pid: u32) -> (String, String, String) {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let field = |name: &str| {
        status.lines().find_map(|l| l.strip_prefix(name)).map(|v| v.split_whitespace().collect::<Vec<_>>().join(" "))
    };
    (field("Uid:").unwrap(), field("Gid:").unwrap(), field("Groups:").unwrap_or_default())
}

/// The uid and gid of `nobody`.
fn nobody() -> (String, String) {
    let out = std::process::Command::new("id").args(["-u", "nobody"]).output().unwrap();
    let uid = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    let out = std::process::Command::new("id").args(["-g", "nobody"]).output().unwrap();
    (uid, String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// `--user nobody`: the daemon opens the tap (creating it) and its socket
/// as root, then runs as nobody, with nobody's groups only, and the tunnel
/// works. An unknown user is refused at start, naming it.
#[test]
fn user_option_drops_to_that_user_after_opening_everything() {
    if !privileged("user_option_drops_to_that_user_after_opening_everything") {
        return;
    }
    let dir = scratch("user");
    let (a, b, _, _) = netns_util::pair("h", "us", "192.0.2.1/24", "192.0.2.2/24", false);
    add_tap(&b, "tap0", &["198.51.100.2/24"], None);
    // a's tap does not exist: rrqnet creates it as root, before dropping.
    let da = Logged::rrqnet(&a, &dir, "a", &["-v", "-t", "utap0", "--user", "nobody", "2300", "192.0.2.2:2300"]);
    let db = Logged::rrqnet(&b, &dir, "b", &["-v", "-t", "tap0", "2300", "192.0.2.1:2300"]);
    assert!(wait_for(Duration::from_secs(5), || da.text().contains("running as user nobody")), "{}", da.text());
    a.ip(&["addr", "add", "198.51.100.1/24", "dev", "utap0"]);
    a.ip(&["link", "set", "utap0", "up"]);
    assert!(pings(&b, "198.51.100.1"), "no tunnel\n{}", logs(&[&da, &db]));
    // `ip netns exec` execs rrqnet: the child is rrqnet itself.
    assert_eq!(std::fs::read_link(format!("/proc/{}/exe", da.proc.pid())).unwrap(), rrqnet_bin());
    let (nuid, ngid) = nobody();
    let (uid, gid, groups) = ids(da.proc.pid());
    assert_eq!(uid, [nuid.as_str(); 4].join(" "), "real, effective, saved and fs uid");
    assert_eq!(gid, [ngid.as_str(); 4].join(" "));
    assert_eq!(groups.split_whitespace().collect::<Vec<_>>(), [ngid.as_str()], "supplementary groups");
    let _ = da.stop();
    let _ = db.stop();

    let out = a
        .cmd(rrqnet_bin().to_str().unwrap())
        .args(["-t", "utap1", "--user", "no-such-user-here", "2300"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.trim(), "rrqnet: cannot run as user no-such-user-here: no user named no-such-user-here");
}

/// No root at all: a tap made for `nobody` (`ip tuntap add NAME mode tap
/// user nobody`) serves an rrqnet started as nobody, and a tap made for
/// another user, or one that does not exist, is refused with a line that
/// says what is missing. Where
/// /dev/net/tun is not open to everyone (Debian makes it 0666; some
/// containers do not), the test sees a 0666 node of its own through a
/// private mount namespace.
#[test]
fn without_root_a_tap_made_for_the_user_works() {
    if !privileged("without_root_a_tap_made_for_the_user_works")
        || !have_program("without_root_a_tap_made_for_the_user_works", "setpriv")
        || !have_program("without_root_a_tap_made_for_the_user_works", "unshare")
    {
        return;
    }
    let dir = scratch("noroot");
    let (a, b, _, _) = netns_util::pair("h", "nr", "192.0.2.1/24", "192.0.2.2/24", false);
    a.ip(&["tuntap", "add", "ntap0", "mode", "tap", "user", "nobody"]);
    a.ip(&["addr", "add", "198.51.100.1/24", "dev", "ntap0"]);
    a.ip(&["link", "set", "ntap0", "up"]);
    add_tap(&b, "tap0", &["198.51.100.2/24"], None);
    let node = dir.file("tun");
    let bin = rrqnet_bin();
    // As nobody, in a mount namespace whose /dev/net/tun is mode 0666.
    let as_nobody = |args: &str| {
        format!(
            "rm -f {node} && mknod {node} c 10 200 && chmod 666 {node} && mount --bind {node} /dev/net/tun && \
             exec setpriv --reuid=nobody --regid=nogroup --clear-groups {bin} {args}",
            node = node.display(),
            bin = bin.display()
        )
    };
    let da = Logged::start(
        &a,
        &dir,
        "a",
        "unshare",
        &["-m", "sh", "-c", &as_nobody("-v -t ntap0 2300 192.0.2.2:2300")],
        "local end:",
    );
    let db = Logged::rrqnet(&b, &dir, "b", &["-v", "-t", "tap0", "2300", "192.0.2.1:2300"]);
    assert!(pings(&b, "198.51.100.1"), "no tunnel\n{}", logs(&[&da, &db]));
    let _ = db.stop();
    let _ = da.stop();

    // A tap made for another user, and one that does not exist (creating
    // one needs CAP_NET_ADMIN).
    a.ip(&["tuntap", "add", "rtap0", "mode", "tap", "user", "root"]);
    for tap in ["rtap0", "xtap0"] {
        let mut cmd = a.cmd("unshare");
        cmd.args(["-m", "sh", "-c", &as_nobody(&format!("-t {tap} 2300"))]).stdin(Stdio::null()).stdout(Stdio::null());
        let mut c = Captured::spawn(tap, &mut cmd);
        let st = c.proc.wait_timeout(Duration::from_secs(5));
        c.wait_eof(Duration::from_secs(2));
        let err = c.log();
        assert_eq!(st.and_then(|s| s.code()), Some(1), "{tap}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains(&format!("cannot open tap {tap}"))
                && err.contains("root or CAP_NET_ADMIN")
                && err.contains(&format!("ip tuntap add {tap} mode tap user nobody")),
            "{err}"
        );
    }
}
