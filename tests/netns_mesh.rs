//! The manual's full mesh of four tap hosts over a jittery underlay
//! (issue 14), with real daemons, taps and pings in network namespaces.
//!
//! The kernel here has no `sch_netem`, so the jitter comes from a small
//! userspace relay ([`RELAY`], python3) in the hub namespace: every pair of
//! hosts talks through its own pair of relay addresses, and each datagram
//! waits a normally distributed time (cut at zero) before it goes on. Host
//! i's uplink to host j is the relay address on i's side of the pair; the
//! relay sends what i sent from the address on j's side, which is j's
//! uplink to i. So each daemon sees a full mesh of three uplinks, as in the
//! manual's example, and every datagram crosses one jittery hop.
//!
//! After an ARP flush every host pings every other one at once, 20 pings a
//! second, twice: from fresh tables and again with the tables full. No
//! stream may go more than 1 s without a reply: a direction cut for longer
//! stops both streams of its pair. Needs root, iproute2, ping and python3.
//! `RRQNET_BIN` runs another build of rrqnet (to show what an old one does).

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::netns_util::{add_tap, ifname, logs, no_ipv6, Logged};
use common::scratch::Scratch;
use common::{have_program, privileged, rrqnet_bin, veth, Netns, Proc};

/// Longer than this without a reply is a cut.
const CUT: f64 = 1.0;
/// How long each round of pings lasts.
const ROUND: u32 = 6;
/// Hosts in the mesh.
const HOSTS: usize = 4;

/// Relays UDP between pairs of addresses, each datagram after a normally
/// distributed delay (cut at zero): argv is the seed, the mean and the
/// deviation in ms, then one `a,b,host_i,host_j` per pair (what host i
/// sends to a goes to host j from b, and back). Prints `ready`, relays
/// until its stdin closes, then prints how many datagrams it relayed.
const RELAY: &str = r#"
import heapq, random, select, socket, sys, time
rng = random.Random(int(sys.argv[1]))
mean, dev = float(sys.argv[2]) / 1e3, float(sys.argv[3]) / 1e3
route = {}
for spec in sys.argv[4:]:
    a, b, hi, hj = spec.split(",")
    sa = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sa.bind((a, 1400))
    sb = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sb.bind((b, 1400))
    route[sa] = (sb, (hj, 1400))
    route[sb] = (sa, (hi, 1400))
print("ready", flush=True)
queue, seq, relayed = [], 0, 0
watch = list(route) + [sys.stdin]
while True:
    wait = 0.05 if not queue else min(0.05, max(0.0, queue[0][0] - time.monotonic()))
    ready, _, _ = select.select(watch, [], [], wait)
    if sys.stdin in ready and not sys.stdin.buffer.read1(1):
        break
    now = time.monotonic()
    for s in ready:
        if s is sys.stdin:
            continue
        data, _ = s.recvfrom(65536)
        out, to = route[s]
        seq += 1
        heapq.heappush(queue, (now + max(0.0, rng.gauss(mean, dev)), seq, out, to, data))
    now = time.monotonic()
    while queue and queue[0][0] <= now:
        _, _, out, to, data = heapq.heappop(queue)
        out.sendto(data, to)
        relayed += 1
print(relayed, flush=True)
"#;

/// The rrqnet to run: `RRQNET_BIN`, or the one cargo built.
fn rrqnet() -> PathBuf {
    std::env::var_os("RRQNET_BIN").map_or_else(rrqnet_bin, PathBuf::from)
}

/// The relay address on host `i`'s side of its pair with host `j`.
fn relay_addr(i: usize, j: usize) -> String {
    let (lo, hi) = (i.min(j), i.max(j));
    let pair = (0..lo).map(|k| HOSTS - 1 - k).sum::<usize>() + (hi - lo - 1);
    format!("192.0.2.{}", 101 + 2 * pair + usize::from(i == hi))
}

fn unix_secs() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).unwrap().as_secs_f64()
}

/// The longest stretch without a reply in `ping -D` output, from `start`
/// to `end` (Unix seconds), and when it began.
fn longest_gap(out: &str, start: f64, end: f64) -> (f64, f64) {
    let mut times: Vec<f64> = out
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    times.push(end);
    let mut last = start;
    let mut worst = (0.0, start);
    for t in times {
        if t - last > worst.0 {
            worst = (t - last, last);
        }
        last = last.max(t);
    }
    worst
}

/// One run: four hosts on a hub, the relay with `mean` ± `dev` ms, the
/// daemons, and two rounds of pings. Returns every stream's longest gap
/// over 1 s, and what the relay carried.
fn run(mean: u32, dev: u32, seed: u32) -> (Vec<String>, u64, String) {
    let tag = format!("j{mean}");
    let dir = Scratch::new("netns_mesh", &tag);
    let hub = Netns::new(&format!("{tag}hub"));
    no_ipv6(&hub);
    hub.ip(&["link", "add", "br0", "type", "bridge"]);
    hub.ip(&["link", "set", "br0", "up"]);
    let mut hosts = Vec::new();
    for i in 0..HOSTS {
        let h = Netns::new(&format!("{tag}{i}"));
        no_ipv6(&h);
        let (hi, pi) = (ifname("m", &tag, 2 * i), ifname("m", &tag, 2 * i + 1));
        veth(&h, &hi, &hub, &pi);
        hub.ip(&["link", "set", &pi, "master", "br0"]);
        h.ip(&["addr", "add", &format!("192.0.2.{}/24", i + 1), "dev", &hi]);
        add_tap(&h, "tap0", &[&format!("198.51.100.{}/24", i + 1)], None);
        hosts.push(h);
    }
    let mut pairs = Vec::new();
    for i in 0..HOSTS {
        for j in i + 1..HOSTS {
            let (a, b) = (relay_addr(i, j), relay_addr(j, i));
            for addr in [&a, &b] {
                hub.ip(&["addr", "add", &format!("{addr}/24"), "dev", "br0"]);
            }
            pairs.push(format!("{a},{b},192.0.2.{},192.0.2.{}", i + 1, j + 1));
        }
    }
    let mut relay = hub.cmd("python3");
    relay.args(["-c", RELAY, &seed.to_string(), &mean.to_string(), &dev.to_string()]).args(&pairs);
    relay.stdin(Stdio::piped()).stdout(Stdio::piped());
    let mut relay = Proc::spawn("relay", &mut relay);
    let mut relay_out = BufReader::new(relay.child.stdout.take().unwrap());
    let mut line = String::new();
    relay_out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the relay did not start");

    let bin = rrqnet();
    let mut ds = Vec::new();
    for (i, h) in hosts.iter().enumerate() {
        let ups: Vec<String> = (0..HOSTS).filter(|&j| j != i).map(|j| format!("{}:1400", relay_addr(i, j))).collect();
        let mut args = vec!["-v", "-t", "tap0", "1400"];
        args.extend(ups.iter().map(String::as_str));
        let name = format!("host{}", i + 1);
        ds.push(Logged::start(h, &dir, &name, bin.to_str().unwrap(), &args, "local end:"));
    }
    // The start-up heartbeats make every uplink a live port.
    std::thread::sleep(Duration::from_millis(300));

    let mut cuts = Vec::new();
    for round in ["fresh tables", "full tables"] {
        for h in &hosts {
            h.sh("ip neigh flush dev tap0");
        }
        let start = unix_secs();
        let mut pings = Vec::new();
        for (i, h) in hosts.iter().enumerate() {
            for j in (0..HOSTS).filter(|&j| j != i) {
                let mut p = h.cmd("ping");
                let to = format!("198.51.100.{}", j + 1);
                p.args(["-D", "-n", "-i", "0.05", "-W", "1", "-w", &ROUND.to_string(), &to]);
                p.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::null());
                pings.push((i, j, Proc::spawn("ping", &mut p)));
            }
        }
        for (i, j, mut p) in pings {
            let mut out = String::new();
            p.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
            p.wait_timeout(Duration::from_secs(5)).expect("ping did not end");
            // The last reply may come just before ping's deadline.
            let (gap, at) = longest_gap(&out, start, start + f64::from(ROUND) - 0.2);
            if gap > CUT {
                cuts.push(format!(
                    "{round}: host{} -> host{} got no reply for {gap:.2} s from {:.2} s",
                    i + 1,
                    j + 1,
                    at - start
                ));
            }
        }
    }

    drop(relay.child.stdin.take());
    let st = relay.wait_timeout(Duration::from_secs(5)).expect("the relay did not end");
    assert!(st.success(), "relay: {st}");
    line.clear();
    relay_out.read_line(&mut line).unwrap();
    let relayed: u64 = line.trim().parse().unwrap();
    let all: Vec<&Logged> = ds.iter().collect();
    let log = logs(&all);
    (cuts, relayed, log)
}

#[test]
fn a_jittery_full_mesh_of_four_is_never_cut() {
    let test = "a_jittery_full_mesh_of_four_is_never_cut";
    if !privileged(test) || !have_program(test, "python3") || !have_program(test, "ping") {
        return;
    }
    for (mean, dev, seed) in [(2, 2, 1), (5, 5, 2)] {
        let (cuts, relayed, log) = run(mean, dev, seed);
        eprintln!("{mean} ± {dev} ms: {} cut(s), {relayed} datagrams relayed", cuts.len());
        assert!(cuts.is_empty(), "{mean} ± {dev} ms:\n{}\n{log}", cuts.join("\n"));
        // Twelve streams of 20 pings a second for 2 x 6 s, each ping and
        // reply one datagram (three if relayed by a host), plus ARP and
        // heartbeats: a storm would be far more.
        let pings = 12 * 20 * 2 * ROUND as u64 * 2;
        assert!(relayed <= 3 * pings, "{relayed} datagrams for {pings} pings and replies\n{log}");
    }
}
