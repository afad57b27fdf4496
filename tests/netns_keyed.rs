//! Keyed channels (`=keyfile`, SPEC 5) with real taps across network
//! namespaces: a keyed pair pings and carries 20 MB intact at the documented
//! tap MTUs without IP fragmentation (1408 over IPv4, 1388 over IPv6, and one
//! byte more does fragment); different key files pass nothing; datagrams
//! captured on the underlay and sent again from the client's own address and
//! port deliver nothing and are counted as replays; a spoofed source inside
//! the allowed prefix, without the key, gets nothing through and nothing back.
//!
//! Underlay 192.0.2.0/24 or 2001:db8::/64, overlay 198.51.100.0/24; every
//! namespace is removed on drop, also on failure. Needs root, iproute2,
//! ping and python3 (the TCP transfer, the capture and the re-sending).

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::process::Stdio;
use std::time::Duration;

use common::netns_util::{self, counter, logs, one_broadcast, pings, tcp_transfer, Logged};
use common::scratch::Scratch;
use common::{drop_count, have_program, privileged, Netns, Proc};

/// A scratch directory for logs and key files, removed on drop.
fn scratch(tag: &str) -> Scratch {
    Scratch::new("netns-keyed", tag)
}

/// Two namespaces joined by a veth (names `k<pid><tag><i>`), IPv6 off for
/// an IPv4 underlay and for the taps. Returns them and the veth names.
fn pair(tag: &str, a_addr: &str, b_addr: &str) -> (Netns, Netns, String, String) {
    netns_util::pair("k", tag, a_addr, b_addr, true)
}

/// Makes tap0 in `ns` with `addr` and `mtu`, up.
fn add_tap(ns: &Netns, addr: &str, mtu: u32) {
    netns_util::add_tap(ns, "tap0", &[addr], Some(mtu))
}

/// A counter of `/proc/net/snmp` (IPv4, "Ip" row) or `/proc/net/snmp6`
/// (IPv6) in a namespace: fragments made by this host.
fn frag_creates(ns: &Netns, v6: bool) -> u64 {
    if v6 {
        let text = ns.sh("cat /proc/net/snmp6");
        let line = text.lines().find(|l| l.starts_with("Ip6FragCreates")).expect("Ip6FragCreates");
        line.split_whitespace().nth(1).unwrap().parse().unwrap()
    } else {
        let text = ns.sh("cat /proc/net/snmp");
        let mut ip = text.lines().filter(|l| l.starts_with("Ip:"));
        let (names, values) = (ip.next().unwrap(), ip.next().unwrap());
        let i = names.split_whitespace().position(|n| n == "FragCreates").expect("FragCreates");
        values.split_whitespace().nth(i).unwrap().parse().unwrap()
    }
}

/// The largest ping payload that fills an IP packet of `mtu` bytes.
fn ping_payload(mtu: u32) -> u32 {
    mtu - 20 - 8
}

/// Pings with the don't-fragment bit and a packet of exactly the tap MTU,
/// and returns how many fragments the sending host made meanwhile.
fn full_size_ping_fragments(from: &Netns, to: &str, mtu: u32, v6_underlay: bool, ds: &[&Logged]) -> u64 {
    let before = frag_creates(from, v6_underlay);
    let cmd = format!("ping -c3 -i0.2 -W2 -M do -s {} {to}", ping_payload(mtu));
    assert!(from.try_sh(&cmd), "{cmd} failed at tap MTU {mtu}\n{}", logs(ds));
    frag_creates(from, v6_underlay) - before
}

fn keyed_pair_mtu(tag: &str, v6: bool) {
    let dir = scratch(tag);
    let key = dir.random_key("vpn0.key");
    let (a_addr, b_addr, b_peer, a_peer) = if v6 {
        ("2001:db8::1/64 nodad", "2001:db8::2/64 nodad", "[2001:db8::2]:1400", "[2001:db8::/64]:1400")
    } else {
        ("192.0.2.1/24", "192.0.2.2/24", "192.0.2.2:1400", "192.0.2.0/24:1400")
    };
    let (a, b, _, _) = pair(tag, a_addr, b_addr);
    let mtu = if v6 { 1388 } else { 1408 };
    add_tap(&a, "198.51.100.1/24", mtu);
    add_tap(&b, "198.51.100.2/24", mtu);
    let (up, down) = (format!("{b_peer}={key}"), format!("{a_peer}={key}"));
    let db = Logged::rrqnet(&b, &dir, "server", &["-vv", "-t", "tap0", "1400", &down]);
    let da = Logged::rrqnet(&a, &dir, "client", &["-vv", "-t", "tap0", "1400", &up]);
    let ds = [&da, &db];
    assert!(pings(&a, "198.51.100.2"), "the client cannot ping the server\n{}", logs(&ds));
    assert!(pings(&b, "198.51.100.1"), "the server cannot ping the client\n{}", logs(&ds));

    // A full-size frame makes a 1500-byte datagram: no fragments. One byte
    // more on the tap, and the datagram is fragmented.
    assert_eq!(full_size_ping_fragments(&a, "198.51.100.2", mtu, v6, &ds), 0, "fragments at tap MTU {mtu}");
    assert_eq!(full_size_ping_fragments(&b, "198.51.100.1", mtu, v6, &ds), 0, "fragments at tap MTU {mtu}");
    if !v6 {
        let before = (frag_creates(&a, v6), frag_creates(&b, v6));
        let secs = tcp_transfer(&a, &b, "198.51.100.2", 5001, 20 << 20, &ds);
        eprintln!("keyed: 20 MiB over the tunnel in {secs:.2} s ({:.0} Mbit/s)", 20.0 * 8.388608 / secs);
        assert_eq!((frag_creates(&a, v6), frag_creates(&b, v6)), before, "the transfer was fragmented");
    }
    for ns in [&a, &b] {
        ns.ip(&["link", "set", "tap0", "mtu", &(mtu + 1).to_string()]);
    }
    let n = full_size_ping_fragments(&a, "198.51.100.2", mtu + 1, v6, &ds);
    assert!(n >= 3, "a {}-byte tap MTU made {n} fragments for 3 full-size pings", mtu + 1);

    let (la, lb) = (da.stop(), db.stop());
    for log in [&la, &lb] {
        for r in ["bad-auth", "replay", "stale-session", "own-session", "too-large", "send-failed"] {
            assert_eq!(drop_count(log, r), 0, "{r}:\n{log}");
        }
    }
}

/// A keyed uplink and downlink with taps at MTU 1408 over IPv4: pings, 20 MB
/// of TCP intact, no IP fragments; at MTU 1409 full-size frames fragment.
#[test]
fn keyed_pair_with_taps_carries_20mb_intact_unfragmented_at_mtu_1408() {
    let name = "keyed_pair_with_taps_carries_20mb_intact_unfragmented_at_mtu_1408";
    if !privileged(name) || !have_program(name, "python3") {
        return;
    }
    keyed_pair_mtu("kp4", false);
}

/// The same over an IPv6 underlay at MTU 1388 (and 1389 fragments).
#[test]
fn keyed_pair_over_ipv6_is_unfragmented_at_mtu_1388() {
    if !privileged("keyed_pair_over_ipv6_is_unfragmented_at_mtu_1388") {
        return;
    }
    keyed_pair_mtu("kp6", true);
}

/// Different key files: no ping, no remote on the server, bad-auth drops.
#[test]
fn keyed_pair_with_different_key_files_passes_nothing() {
    if !privileged("keyed_pair_with_different_key_files_passes_nothing") {
        return;
    }
    let dir = scratch("kdiff");
    let (k1, k2) = (dir.random_key("k1"), dir.random_key("k2"));
    let (a, b, _, _) = pair("kd", "192.0.2.1/24", "192.0.2.2/24");
    add_tap(&a, "198.51.100.1/24", 1408);
    add_tap(&b, "198.51.100.2/24", 1408);
    let db = Logged::rrqnet(&b, &dir, "server", &["-vv", "-t", "tap0", "1400", &format!("192.0.2.0/24:1400={k2}")]);
    let da = Logged::rrqnet(&a, &dir, "client", &["-vv", "-t", "tap0", "1400", &format!("192.0.2.2:1400={k1}")]);
    assert!(!a.try_sh("ping -c3 -i0.3 -W1 198.51.100.2"), "a ping crossed keys\n{}", logs(&[&da, &db]));
    assert!(!b.try_sh("ping -c2 -i0.3 -W1 198.51.100.1"), "a ping crossed keys\n{}", logs(&[&da, &db]));
    assert_eq!(counter(&b, "tap0", "rx_packets"), 0, "the server's tap got frames");
    assert_eq!(counter(&a, "tap0", "rx_packets"), 0, "the client's tap got frames");
    da.stop();
    let log = db.stop();
    assert!(!log.contains("connected"), "the server made a remote:\n{log}");
    // The client's heartbeat and at least its ARP requests.
    assert!(drop_count(&log, "bad-auth") >= 2, "{log}");
}

/// Records, from inside a namespace, the UDP payloads arriving on an
/// interface from `src` to `dst` port 1400, one hex line each, after a
/// "ready" line; ends after the given number of seconds.
const CAPTURE: &str = r#"
import socket, sys, time
ifc, src, secs = sys.argv[1], socket.inet_aton(sys.argv[2]), float(sys.argv[3])
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
s.bind((ifc, 0))
s.settimeout(0.05)
print("ready", flush=True)
end = time.time() + secs
while time.time() < end:
    try:
        data, addr = s.recvfrom(65536)
    except socket.timeout:
        continue
    if addr[2] == socket.PACKET_OUTGOING or data[12:14] != b"\x08\x00":
        continue
    ip = data[14:]
    hl = (ip[0] & 15) * 4
    if ip[9] != 17 or ip[12:16] != src or ip[6:8] not in (b"\x00\x00", b"\x40\x00"):
        continue
    udp = ip[hl:]
    if int.from_bytes(udp[2:4], "big") == 1400:
        print(udp[8:int.from_bytes(udp[4:6], "big")].hex(), flush=True)
"#;

/// Sends each hex line of stdin as one datagram from `bind:port` to
/// `dst:1400`, then listens on that socket for the given seconds and prints
/// how many datagrams came back.
const RESEND: &str = r#"
import socket, sys, time
bind, port, dst, secs = sys.argv[1], int(sys.argv[2]), sys.argv[3], float(sys.argv[4])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((bind, port))
sent = 0
for line in sys.stdin:
    line = line.strip()
    if line:
        s.sendto(bytes.fromhex(line), (dst, 1400))
        sent += 1
s.settimeout(0.1)
got = 0
end = time.time() + secs
while time.time() < end:
    try:
        s.recvfrom(65536)
        got += 1
    except socket.timeout:
        pass
print(sent, got)
"#;

/// Runs RESEND in `ns`: returns (sent, datagrams that came back).
fn resend(ns: &Netns, bind: &str, port: u16, dst: &str, listen: f64, lines: &str) -> (u64, u64) {
    let mut cmd = ns.cmd("python3");
    cmd.args(["-c", RESEND, bind, &port.to_string(), dst, &listen.to_string()])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut p = Proc::spawn("resend", &mut cmd);
    p.child.stdin.take().unwrap().write_all(lines.as_bytes()).unwrap();
    let st = p.wait_timeout(Duration::from_secs(30)).expect("the re-sender did not finish");
    let mut out = String::new();
    p.child.stdout.take().unwrap().read_to_string(&mut out).unwrap();
    assert!(st.success(), "re-sender failed: {st}: {}", p.stderr_text());
    let n: Vec<u64> = out.split_whitespace().map(|x| x.parse().unwrap()).collect();
    (n[0], n[1])
}

/// Datagrams captured on the underlay and sent again a second later, from
/// the client's own address and port after the client stopped, deliver
/// nothing to the server's tap, get nothing back, and are counted as replays.
#[test]
fn captured_datagrams_sent_again_from_the_clients_address_deliver_nothing() {
    let name = "captured_datagrams_sent_again_from_the_clients_address_deliver_nothing";
    if !privileged(name) || !have_program(name, "python3") {
        return;
    }
    let dir = scratch("kreplay");
    let key = dir.random_key("k");
    let (a, b, _, ib) = pair("kr", "192.0.2.1/24", "192.0.2.2/24");
    add_tap(&a, "198.51.100.1/24", 1408);
    add_tap(&b, "198.51.100.2/24", 1408);
    let db = Logged::rrqnet(&b, &dir, "server", &["-vv", "-t", "tap0", "1400", &format!("192.0.2.0/24:1400={key}")]);

    // Capture on the server's side of the underlay from before the client starts.
    let mut cap = b.cmd("python3");
    cap.args(["-c", CAPTURE, &ib, "192.0.2.1", "6"]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut cap = Proc::spawn("capture", &mut cap);
    let mut out = BufReader::new(cap.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready", "the capture did not start");

    let da = Logged::rrqnet(&a, &dir, "client", &["-vv", "-t", "tap0", "1400", &format!("192.0.2.2:1400={key}")]);
    assert!(pings(&a, "198.51.100.2"), "no ping\n{}", logs(&[&da, &db]));
    assert!(a.try_sh("ping -c5 -i0.2 -W1 198.51.100.2"), "pings lost\n{}", logs(&[&da, &db]));
    let mut captured = String::new();
    out.read_to_string(&mut captured).unwrap();
    cap.wait_timeout(Duration::from_secs(10)).expect("the capture did not end");
    let n = captured.lines().count() as u64;
    // The heartbeat, ARP, and at least six echo requests.
    assert!(n >= 8, "captured only {n} datagrams");
    for l in captured.lines() {
        assert!(l.starts_with("01"), "not a keyed datagram: {l}");
    }
    da.stop();
    std::thread::sleep(Duration::from_secs(1));

    let rx_before = counter(&b, "tap0", "rx_packets");
    let (sent, back) = resend(&a, "192.0.2.1", 1400, "192.0.2.2", 2.0, &captured);
    assert_eq!(sent, n);
    // Had the echo requests reached the server's tap, its replies would
    // have come back here, to the client's address and port.
    assert_eq!(back, 0, "the server answered replayed datagrams\n{}", db.text());
    assert_eq!(counter(&b, "tap0", "rx_packets"), rx_before, "replayed frames reached the server's tap");
    let log = db.stop();
    assert_eq!(drop_count(&log, "replay"), n, "{log}");
    assert_eq!(drop_count(&log, "bad-auth"), 0, "{log}");
}

/// A spoofed source inside the server's allowed prefix, without the key:
/// plaintext frames, heartbeats and keyed-looking garbage deliver nothing
/// to the server's tap, make no remote, and get nothing back, while the
/// server floods broadcasts to the real client.
#[test]
fn a_spoofed_source_inside_the_prefix_without_the_key_gets_nothing() {
    let name = "a_spoofed_source_inside_the_prefix_without_the_key_gets_nothing";
    if !privileged(name) || !have_program(name, "python3") {
        return;
    }
    let dir = scratch("kspoof");
    let key = dir.random_key("k");
    let (a, b, ia, _) = pair("ks", "192.0.2.1/24", "192.0.2.2/24");
    a.ip(&["addr", "add", "192.0.2.3/24", "dev", &ia]);
    add_tap(&a, "198.51.100.1/24", 1408);
    add_tap(&b, "198.51.100.2/24", 1408);
    let db = Logged::rrqnet(&b, &dir, "server", &["-vv", "-t", "tap0", "1400", &format!("192.0.2.0/24={key}")]);
    let da = Logged::rrqnet(&a, &dir, "client", &["-vv", "-t", "tap0", "1400", &format!("192.0.2.2:1400={key}")]);
    assert!(pings(&a, "198.51.100.2"), "no ping\n{}", logs(&[&da, &db]));

    // What the spoofer sends: ARP requests and a ping for the server's tap
    // address in clear, a plain heartbeat, a keyed-looking heartbeat and
    // keyed-looking data without the key.
    let mac = "020000000099";
    let arp = format!("ffffffffffff{mac}08060001080006040001{mac}c6336401000000000000c6336402");
    let icmp = "4500001c00014000400100000000000000000000"; // enough of an IPv4 header to look like one
    let echo = format!("ffffffffffff{mac}0800{icmp}0800f7ff00000000");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let header = |kind: &str, counter: u64| format!("01{kind}{}{counter:016x}{now:016x}", "ab".repeat(16));
    let fake_hb = format!("{}{}", header("02", 0), "00".repeat(16));
    let fake_data = format!("{}{}{}", header("01", 1), arp, "00".repeat(16));
    let datagrams = [arp.clone(), arp, echo, "00".to_owned(), fake_hb, fake_data];
    let lines = datagrams.join("\n") + "\n";

    let rx_before = counter(&b, "tap0", "rx_packets");
    let client_rx_before = counter(&a, "tap0", "rx_packets");
    // While the spoofer (port 1401: the client holds 1400 on every address)
    // listens for 2 s, the server floods three broadcasts.
    let flood = std::thread::scope(|s| {
        let h = s.spawn(|| resend(&a, "192.0.2.3", 1401, "192.0.2.2", 2.0, &lines));
        std::thread::sleep(Duration::from_millis(500));
        for _ in 0..3 {
            let st = b.cmd("python3").args(["-c", &one_broadcast("198.51.100.2")]).status().expect("python3");
            assert!(st.success(), "could not send a broadcast");
            std::thread::sleep(Duration::from_millis(200));
        }
        h.join().unwrap()
    });
    let (sent, back) = flood;
    assert_eq!(sent, datagrams.len() as u64);
    assert_eq!(back, 0, "the spoofed source got datagrams back\n{}", db.text());
    assert_eq!(counter(&b, "tap0", "rx_packets"), rx_before, "spoofed frames reached the server's tap");
    assert!(
        counter(&a, "tap0", "rx_packets") >= client_rx_before + 3,
        "the server's broadcasts did not reach the real client\n{}",
        logs(&[&da, &db])
    );
    da.stop();
    let log = db.stop();
    assert!(!log.contains("192.0.2.3:1401 connected"), "the spoofed source became a remote:\n{log}");
    assert_eq!(log.matches("connected").count(), 1, "{log}");
    assert_eq!(drop_count(&log, "bad-auth"), sent, "{log}");
}
