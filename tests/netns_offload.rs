//! The tap offloads end to end, in network namespaces: TCP through
//! offloading rrqnets with the underlay captured (every datagram must be one
//! ordinary Ethernet frame no larger than the tap's MTU allows), plain and
//! keyed, over IPv4 and IPv6; an offloading rrqnet against `vde_plug udp://` and against a QEMU
//! `dgram` netdev, both ways, sha256 intact; a persistent tap handed to
//! `vde_plug` after rrqnet exits; and super-frames rrqnet cannot split (a
//! VLAN on the tap) counted, with the offload switched off and the transfer
//! finishing all the same; UDP datagrams joined for the tap and cut back
//! by the kernel, arriving intact.
//!
//! Underlay 192.0.2.0/24, overlay 198.51.100.0/24 (VLAN 203.0.113.0/24), tap
//! MTU 1400. Needs root, iproute2, ping, python3, vdeplug and QEMU.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use common::netns_util::{self, add_tap, logs, pings, tcp_transfer, Logged};
use common::scratch::Scratch;
use common::{have_program, privileged, rrqnet_bin, wait_for, Netns, Proc};
use rrqnet::status::Status;

const MTU: u32 = 1400;
/// The largest ordinary frame the tap MTU allows: MTU and Ethernet header.
const MAX_FRAME: usize = MTU as usize + 14;
/// Bytes per TCP transfer: enough for many super-frames each way.
const BYTES: usize = 16 << 20;

fn scratch(tag: &str) -> Scratch {
    Scratch::new("netns_offload", tag)
}

/// Two namespaces joined by a veth (192.0.2.1 and .2), each with a tap
/// `tap0` of MTU 1400 at 198.51.100.1 and .2. Returns them and the veth
/// name in B, where the underlay is captured.
fn pair(tag: &str) -> (Netns, Netns, String) {
    let (a, b, _, vb) = netns_util::pair("o", tag, "192.0.2.1/24", "192.0.2.2/24", false);
    add_tap(&a, "tap0", &["198.51.100.1/24"], Some(MTU));
    add_tap(&b, "tap0", &["198.51.100.2/24"], Some(MTU));
    (a, b, vb)
}

/// IPv6 on the overlay as well: 2001:db8:100::1 and ::2 on the taps.
fn overlay_v6(a: &Netns, b: &Netns) {
    for (ns, addr) in [(a, "2001:db8:100::1/64"), (b, "2001:db8:100::2/64")] {
        ns.sh("sysctl -qw net.ipv6.conf.tap0.disable_ipv6=0");
        ns.ip(&["addr", "add", addr, "dev", "tap0", "nodad"]);
    }
}

/// An rrqnet on `tap0` with a status socket in `dir`.
fn rrqnet(ns: &Netns, dir: &Scratch, name: &str, args: &[&str]) -> (Logged, std::path::PathBuf) {
    let sock = dir.file(&format!("{name}.sock"));
    let mut all = vec!["-v", "-v", "--status-socket", sock.to_str().unwrap(), "-t", "tap0"];
    all.extend_from_slice(args);
    (Logged::rrqnet(ns, dir, name, &all), sock)
}

/// The status document of the rrqnet whose status socket is `sock`.
fn status(sock: &Path) -> Status {
    let out = std::process::Command::new(rrqnet_bin())
        .args(["--status", sock.to_str().unwrap(), "--json"])
        .stdin(Stdio::null())
        .output()
        .expect("rrqnet --status");
    assert!(out.status.success(), "rrqnet --status: {}", String::from_utf8_lossy(&out.stderr));
    Status::from_json(&String::from_utf8_lossy(&out.stdout)).expect("a status document")
}

/// Watches every UDP datagram on an interface of a namespace (both
/// directions) until told to stop, and checks each one's payload is one
/// ordinary Ethernet frame: its IP length says exactly the payload's length
/// (so no virtio-net header in front, no super-frame, nothing joined), no
/// longer than the tap MTU allows, and the datagram is not an IP fragment.
const SNIFFER: &str = r#"
import json, select, socket, struct, sys
ifname, max_frame, ports = sys.argv[1], int(sys.argv[2]), {int(p) for p in sys.argv[3].split(",")}
sealed = int(sys.argv[4])  # bytes a keyed channel adds; 0 when plain
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(3))
# PACKET_VNET_HDR: a segmented UDP send (UDP_SEGMENT) crosses the veth as
# one packet; its virtio-net header says where the datagrams are cut.
s.setsockopt(263, 15, 1)
s.bind((ifname, 0))
s.setsockopt(socket.SOL_SOCKET, 33, 64 << 20)  # SO_RCVBUFFORCE: lose nothing
print("ready", flush=True)
n = bad = largest = tcp = 0
examples = []
def wrong(why, d):
    global bad
    bad += 1
    if len(examples) < 5:
        examples.append(why + " " + d[:64].hex())
def check(f):
    global n, largest, tcp
    n += 1
    if sealed:
        # Sealed frames cannot be read here; only their size can be checked.
        largest = max(largest, len(f) - sealed)
        if len(f) > max_frame + sealed:
            wrong("longer-than-mtu", f)
        return
    if len(f) < 14:
        return  # a heartbeat
    if f[12:14] == b"\x81\x00":
        f = f[:12] + f[16:]  # a VLAN tag: the frame inside it counts
    largest = max(largest, len(f))
    if len(f) > max_frame:
        return wrong("longer-than-mtu", f)
    et = f[12:14]
    if et == b"\x08\x00":
        if (f[14] >> 4) != 4 or (struct.unpack("!H", f[16:18])[0] + 14 != len(f) and len(f) != 60):
            wrong("ipv4-length", f)
        elif f[23] == 6:
            tcp += 1
    elif et == b"\x86\xdd":
        if struct.unpack("!H", f[18:20])[0] + 54 != len(f):
            wrong("ipv6-length", f)
        elif f[20] == 6:
            tcp += 1
    elif et != b"\x08\x06":
        wrong("ethertype", f)
while True:
    r, _, _ = select.select([s, sys.stdin], [], [], 1.0)
    if sys.stdin in r:
        break
    if s not in r:
        continue
    while True:
        try:
            pkt = s.recv(1 << 17, socket.MSG_DONTWAIT)
        except BlockingIOError:
            break
        gso_type, gso_size = pkt[1] & 0x7f, struct.unpack("<H", pkt[4:6])[0]
        data = pkt[10:]
        if data[12:14] != b"\x08\x00" or data[23] != 17:
            continue
        ihl = (data[14] & 15) * 4
        sport, dport = struct.unpack("!HH", data[14 + ihl:14 + ihl + 4])
        if sport not in ports and dport not in ports:
            continue
        if struct.unpack("!H", data[20:22])[0] & 0x3fff:
            n += 1
            wrong("ip-fragment", data)
            continue
        if gso_type == 5 and gso_size:
            payload = data[14 + ihl + 8:]
            for at in range(0, len(payload), gso_size):
                check(payload[at:at + gso_size])
        elif gso_type == 0:
            ulen = struct.unpack("!H", data[14 + ihl + 4:14 + ihl + 6])[0]
            check(data[14 + ihl + 8:14 + ihl + ulen])
        else:
            n += 1
            wrong("gso-type-%d" % gso_type, data)
print(json.dumps({"datagrams": n, "bad": bad, "largest": largest, "tcp": tcp, "examples": examples}), flush=True)
"#;

/// A running underlay capture.
struct Capture {
    proc: Proc,
    out: BufReader<std::process::ChildStdout>,
}

/// What a capture saw.
#[derive(Debug)]
struct Seen {
    datagrams: u64,
    bad: u64,
    largest: u64,
    tcp: u64,
    text: String,
}

impl Capture {
    fn start(ns: &Netns, ifname: &str, ports: &str) -> Capture {
        Capture::start_sealed(ns, ifname, ports, 0)
    }

    /// A capture of keyed datagrams, each `sealed` bytes longer than its
    /// frame: only their sizes are checked.
    fn start_sealed(ns: &Netns, ifname: &str, ports: &str, sealed: usize) -> Capture {
        let mut cmd = ns.cmd("python3");
        cmd.args(["-c", SNIFFER, ifname, &MAX_FRAME.to_string(), ports, &sealed.to_string()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped());
        let mut proc = Proc::spawn("sniffer", &mut cmd);
        let mut out = BufReader::new(proc.child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the sniffer did not start");
        Capture { proc, out }
    }

    fn stop(mut self) -> Seen {
        drop(self.proc.child.stdin.take());
        let mut text = String::new();
        self.out.read_to_string(&mut text).unwrap();
        let st = self.proc.wait_timeout(Duration::from_secs(30)).expect("the sniffer did not end");
        assert!(st.success(), "sniffer: {st}");
        let v: serde_json::Value = serde_json::from_str(text.trim()).expect("the sniffer's report");
        let num = |k: &str| v[k].as_u64().unwrap();
        Seen { datagrams: num("datagrams"), bad: num("bad"), largest: num("largest"), tcp: num("tcp"), text }
    }
}

/// Checks a capture: many TCP datagrams, every one ordinary and small.
fn assert_ordinary(seen: &Seen, what: &str, ds: &[&Logged]) {
    assert_eq!(seen.bad, 0, "{what}: datagrams that are not one ordinary frame: {}\n{}", seen.text, logs(ds));
    assert!(seen.tcp >= (BYTES / MTU as usize) as u64, "{what}: too few TCP datagrams seen: {seen:?}");
    assert!(seen.largest <= MAX_FRAME as u64, "{what}: {seen:?}");
    eprintln!("{what}: {} datagrams, the largest frame {} bytes", seen.datagrams, seen.largest);
}

/// The offload part of a status document, which must be there.
fn offload(sock: &Path) -> rrqnet::status::Offload {
    status(sock).offload.expect("a tap with offloads reports them")
}

/// Plain and keyed: a TCP transfer each way through two offloading rrqnets
/// moves super-frames across both taps, and the underlay carries only
/// ordinary frames of at most MTU + 14 bytes.
#[test]
fn tcp_through_offloading_rrqnets_puts_only_ordinary_frames_on_the_wire() {
    let t = "tcp_through_offloading_rrqnets_puts_only_ordinary_frames_on_the_wire";
    if !privileged(t) || !have_program(t, "python3") {
        return;
    }
    let dir = scratch("wire");
    let key = dir.random_key("wire.key");
    for keyed in [false, true] {
        let (a, b, vb) = pair(if keyed { "wk" } else { "wp" });
        let k = if keyed { format!("={key}") } else { String::new() };
        let (ra, sa) = rrqnet(&a, &dir, &format!("a{keyed}"), &["7000", &format!("192.0.2.2:7000{k}")]);
        let (rb, sb) = rrqnet(&b, &dir, &format!("b{keyed}"), &["7000", &format!("192.0.2.1:7000{k}")]);
        assert!(pings(&a, "198.51.100.2"), "no ping through\n{}", logs(&[&ra, &rb]));
        // Sealed: each datagram is a frame with the transport's header and tag.
        let sealed = if keyed { rrqnet::crypto::HEADER_LEN + rrqnet::crypto::TAG_LEN } else { 0 };
        let cap = Capture::start_sealed(&b, &vb, "7000", sealed);
        tcp_transfer(&a, &b, "198.51.100.2", 5001, BYTES, &[&ra, &rb]);
        tcp_transfer(&b, &a, "198.51.100.1", 5002, BYTES, &[&ra, &rb]);
        let seen = cap.stop();
        assert_eq!(seen.bad, 0, "keyed {keyed}: {seen:?}\n{}", logs(&[&ra, &rb]));
        assert!(seen.datagrams >= (BYTES / MTU as usize) as u64, "keyed {keyed}: too few datagrams: {seen:?}");
        if !keyed {
            assert_ordinary(&seen, "plain", &[&ra, &rb]);
        }
        eprintln!("keyed {keyed}: {} datagrams, the largest frame {} bytes", seen.datagrams, seen.largest);
        for (name, sock) in [("a", &sa), ("b", &sb)] {
            let o = offload(sock);
            assert!(o.tso && o.checksum && o.gro, "{name}: offloads on: {o:?}");
            assert!(o.from_tap.super_frames > 0 && o.from_tap.segments > 2 * o.from_tap.super_frames, "{name}: {o:?}");
            assert!(o.to_tap.super_frames > 0 && o.to_tap.joined > o.to_tap.super_frames, "{name}: {o:?}");
            assert!(o.from_tap.refused.is_empty() && o.to_tap.rejected == 0, "{name}: {o:?}");
        }
        let la = ra.stop();
        assert!(!la.contains("WARN"), "{la}");
        rb.stop();
    }
}

/// TCP over IPv6 on the overlay: super-frames of TSO6 cut and IPv6
/// segments joined, the wire ordinary, the bytes intact both ways.
#[test]
fn tcp_over_ipv6_through_offloading_rrqnets() {
    let t = "tcp_over_ipv6_through_offloading_rrqnets";
    if !privileged(t) || !have_program(t, "python3") {
        return;
    }
    let dir = scratch("v6");
    let (a, b, vb) = pair("v6");
    overlay_v6(&a, &b);
    let (ra, sa) = rrqnet(&a, &dir, "a", &["7000", "192.0.2.2:7000"]);
    let (rb, sb) = rrqnet(&b, &dir, "b", &["7000", "192.0.2.1:7000"]);
    assert!(pings(&a, "2001:db8:100::2"), "no ping over IPv6\n{}", logs(&[&ra, &rb]));
    let server = netns_util::TCP_SERVER.replace("socket.AF_INET,", "socket.AF_INET6,");
    assert!(server.contains("AF_INET6"));
    let cap = Capture::start(&b, &vb, "7000");
    let ds = [&ra, &rb];
    netns_util::tcp_transfer_with(&a, &b, "2001:db8:100::2", 5001, BYTES, &server, netns_util::TCP_CLIENT, &ds);
    netns_util::tcp_transfer_with(&b, &a, "2001:db8:100::1", 5002, BYTES, &server, netns_util::TCP_CLIENT, &ds);
    assert_ordinary(&cap.stop(), "TCP over IPv6", &ds);
    for (name, sock) in [("a", &sa), ("b", &sb)] {
        let o = offload(sock);
        assert!(o.from_tap.super_frames > 0 && o.to_tap.super_frames > 0, "{name}: {o:?}");
        assert!(o.from_tap.refused.is_empty() && o.to_tap.rejected == 0, "{name}: {o:?}");
    }
    ra.stop();
    rb.stop();
}

/// Receives UDP datagrams on (argv[1], argv[2]) until argv[3] arrived or
/// none came for 3 s; each must be the datagram `udp_sender` made for its
/// number. Prints "ready", then one JSON line: how many arrived, how many
/// were damaged, and how many distinct numbers.
const UDP_RECEIVER: &str = r#"
import json, socket, sys
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(3)
want = int(sys.argv[3])
def expected(n, size):
    return n.to_bytes(4, "big") + bytes((n * 7 + i) & 0xff for i in range(size - 4))
got = bad = 0
seen = set()
print("ready", flush=True)
while len(seen) < want:
    try:
        d = s.recv(65535)
    except socket.timeout:
        break
    got += 1
    n = int.from_bytes(d[:4], "big")
    size = 1200 if n % 20 != 19 else 100 + n % 7
    if len(d) < 4 or d != expected(n, size):
        bad += 1
    seen.add(n)
print(json.dumps({"got": got, "bad": bad, "distinct": len(seen)}), flush=True)
"#;

/// Sends argv[3] datagrams to (argv[1], argv[2]) in bursts of 20 from one
/// connected socket: 19 of 1200 bytes and a shorter one, numbered, for the
/// receiver to check. With argv[4] "gso" each burst is one send with
/// `UDP_SEGMENT` 1200: the kernel hands the tap one UDP super-frame.
const UDP_SENDER: &str = r#"
import socket, sys, time
fam = socket.AF_INET6 if ":" in sys.argv[1] else socket.AF_INET
s = socket.socket(fam, socket.SOCK_DGRAM)
s.connect((sys.argv[1], int(sys.argv[2])))
gso = sys.argv[4] == "gso"
if gso:
    s.setsockopt(socket.IPPROTO_UDP, 103, 1200)  # UDP_SEGMENT
burst = b""
for n in range(int(sys.argv[3])):
    size = 1200 if n % 20 != 19 else 100 + n % 7
    d = n.to_bytes(4, "big") + bytes((n * 7 + i) & 0xff for i in range(size - 4))
    if gso:
        burst += d
    else:
        s.send(d)
    if n % 20 == 19:
        if gso:
            s.send(burst)
            burst = b""
        time.sleep(0.002)
"#;

/// UDP both ways through the tap's offloads (Linux 6.2 and later): a
/// `UDP_SEGMENT` sender in A hands A's tap UDP super-frames, which rrqnet
/// cuts into ordinary datagrams on the wire; with `--join-udp`, datagrams
/// of one flow that come in one receive batch are joined into a UDP
/// super-frame for B's tap, which the kernel cuts back into exactly the
/// datagrams sent. Every one arrives, intact, over IPv4 and IPv6, sent one
/// by one and segmented.
#[test]
fn udp_super_frames_both_ways_arrive_as_they_were_sent() {
    let t = "udp_super_frames_both_ways_arrive_as_they_were_sent";
    if !privileged(t) || !have_program(t, "python3") {
        return;
    }
    let dir = scratch("udp");
    let (a, b, vb) = pair("ud");
    overlay_v6(&a, &b);
    let (ra, sa) = rrqnet(&a, &dir, "a", &["7000", "192.0.2.2:7000"]);
    let (rb, sb) = rrqnet(&b, &dir, "b", &["--join-udp", "7000", "192.0.2.1:7000"]);
    let ds = [&ra, &rb];
    assert!(pings(&a, "198.51.100.2") && pings(&a, "2001:db8:100::2"), "no ping through\n{}", logs(&ds));
    let before = offload(&sb);
    assert!(before.uso && before.gro_udp, "this kernel takes UDP super-frames (Linux 6.2): {before:?}");
    let a_before = offload(&sa);
    assert!(a_before.uso && !a_before.gro_udp, "joining UDP is asked for with --join-udp: {a_before:?}");
    let cap = Capture::start(&b, &vb, "7000");
    const N: usize = 2000;
    let cases = [
        ("198.51.100.2", "6001", "one-by-one"),
        ("2001:db8:100::2", "6002", "one-by-one"),
        ("198.51.100.2", "6003", "gso"),
        ("2001:db8:100::2", "6004", "gso"),
    ];
    for (to, port, how) in cases {
        let mut rx = b.cmd("python3");
        rx.args(["-c", UDP_RECEIVER, to, port, &N.to_string()]).stdin(Stdio::null()).stdout(Stdio::piped());
        let mut rx = Proc::spawn("udp receiver", &mut rx);
        let mut out = BufReader::new(rx.child.stdout.take().unwrap());
        let mut line = String::new();
        out.read_line(&mut line).unwrap();
        assert_eq!(line.trim(), "ready", "the receiver did not start");
        let tx = a.cmd("python3").args(["-c", UDP_SENDER, to, port, &N.to_string(), how]).stdin(Stdio::null()).output();
        let tx = tx.expect("python3 sender");
        assert!(tx.status.success(), "sender: {}", String::from_utf8_lossy(&tx.stderr));
        line.clear();
        out.read_line(&mut line).unwrap();
        rx.wait_timeout(Duration::from_secs(30)).expect("the receiver did not end");
        let v: serde_json::Value = serde_json::from_str(line.trim()).expect("the receiver's report");
        assert_eq!(v["bad"], 0, "{to} {how}: damaged datagrams: {v}\n{}", logs(&ds));
        assert_eq!(v["distinct"], N, "{to} {how}: datagrams lost: {v}\n{}", logs(&ds));
        assert_eq!(v["got"], N, "{to} {how}: datagrams twice: {v}");
    }
    let seen = cap.stop();
    assert_eq!(seen.bad, 0, "datagrams that are not one ordinary frame: {}\n{}", seen.text, logs(&ds));
    assert!(seen.datagrams >= 4 * N as u64 && seen.largest <= MAX_FRAME as u64, "{seen:?}");
    let oa = offload(&sa);
    // The segmented sends: 100 bursts of 20 over each IP version.
    assert!(oa.from_tap.super_frames >= 200 && oa.from_tap.segments >= 20 * 200, "A cut them: {oa:?}");
    assert!(oa.from_tap.refused.is_empty() && oa.uso, "{oa:?}");
    let o = offload(&sb);
    let udp_supers = o.to_tap.super_frames - before.to_tap.super_frames;
    assert!(udp_supers > 0 && o.to_tap.joined > before.to_tap.joined + udp_supers, "joined: {o:?}");
    assert_eq!(o.to_tap.rejected, 0, "{o:?}");
    assert!(o.gro_udp, "{o:?}");
    eprintln!("{} UDP super-frames, {} datagrams joined", udp_supers, o.to_tap.joined - before.to_tap.joined);
    ra.stop();
    assert!(!rb.stop().contains("WARN"));
}

/// `vde_plug udp://` in B speaks the plain wire format; an offloading rrqnet
/// in A talks TCP with it both ways, and everything on the wire is ordinary.
#[test]
fn offloading_rrqnet_and_vde_plug_udp_carry_tcp_both_ways() {
    let t = "offloading_rrqnet_and_vde_plug_udp_carry_tcp_both_ways";
    if !privileged(t) || !have_program(t, "python3") || !have_program(t, "vde_plug") {
        return;
    }
    let dir = scratch("vde");
    let (a, b, vb) = pair("vd");
    let (ra, sa) = rrqnet(&a, &dir, "rrqnet", &["7000", "192.0.2.2:7100"]);
    let vde = Logged::start(&b, &dir, "vde_plug", "vde_plug", &["udp://7100->192.0.2.1:7000", "tap://tap0"], "");
    assert!(pings(&a, "198.51.100.2"), "no ping through\n{}", logs(&[&ra, &vde]));
    let cap = Capture::start(&b, &vb, "7000,7100");
    tcp_transfer(&a, &b, "198.51.100.2", 5001, BYTES, &[&ra, &vde]);
    tcp_transfer(&b, &a, "198.51.100.1", 5002, BYTES, &[&ra, &vde]);
    assert_ordinary(&cap.stop(), "rrqnet <-> vde_plug", &[&ra, &vde]);
    let o = offload(&sa);
    assert!(o.from_tap.super_frames > 0 && o.to_tap.super_frames > 0, "{o:?}");
    ra.stop();
}

/// A persistent tap that an offloading rrqnet used is handed to vde_plug
/// after rrqnet exits: the offloads were switched off, so vde_plug gets
/// ordinary frames and a TCP transfer from that tap crosses the wire as
/// ordinary frames.
#[test]
fn a_persistent_tap_is_handed_on_with_offloads_off() {
    let t = "a_persistent_tap_is_handed_on_with_offloads_off";
    if !privileged(t) || !have_program(t, "python3") || !have_program(t, "vde_plug") {
        return;
    }
    let dir = scratch("persist");
    let (a, b, vb) = pair("pe");
    let (ra, _) = rrqnet(&a, &dir, "rrqnet-a", &["7000", "192.0.2.2:7000"]);
    let (rb, sb) = rrqnet(&b, &dir, "rrqnet-b", &["7000", "192.0.2.1:7000"]);
    tcp_transfer(&b, &a, "198.51.100.1", 5001, 4 << 20, &[&ra, &rb]);
    assert!(offload(&sb).from_tap.super_frames > 0, "B's tap handed over super-frames while rrqnet had it");
    rb.stop();
    // The tap is still there (made by `ip tuntap add`), up, with its address.
    assert!(b.try_sh("test -d /sys/class/net/tap0"), "the persistent tap is gone");
    assert_eq!(netns_util::offloads_of(&b, "tap0"), (false, false), "offloads left on at exit");
    vde_plug_takes_the_tap_over(&a, &b, &vb, &dir, &ra, "vde_plug on the handed-on tap");
    ra.stop();
}

/// B's persistent tap, rrqnet gone from it, handed to `vde_plug` towards
/// A's rrqnet `ra`: pings pass, and a TCP transfer from B crosses the
/// underlay (`vb`) as ordinary frames (`what` names the case).
fn vde_plug_takes_the_tap_over(a: &Netns, b: &Netns, vb: &str, dir: &Scratch, ra: &Logged, what: &str) {
    let vde = Logged::start(b, dir, "vde_plug", "vde_plug", &["udp://7000->192.0.2.1:7000", "tap://tap0"], "");
    assert!(pings(b, "198.51.100.1"), "no ping through vde_plug\n{}", logs(&[ra, &vde]));
    let cap = Capture::start(b, vb, "7000");
    tcp_transfer(b, a, "198.51.100.1", 5002, BYTES, &[ra, &vde]);
    assert_ordinary(&cap.stop(), what, &[ra, &vde]);
}

/// The same when rrqnet cannot switch the offloads off: killed with
/// SIGKILL after a transfer through its tap. The kernel keeps the offloads
/// for the next program that opens the tap (measured: vde_plug then passes
/// pings, but TCP's partial checksums cross unfinished and no connection
/// gets up), so `rrqnet --release-tap` switches them off; while a program
/// holds the tap it refuses and changes nothing.
#[test]
fn a_killed_rrqnets_tap_is_released_for_the_next_program() {
    let t = "a_killed_rrqnets_tap_is_released_for_the_next_program";
    if !privileged(t) || !have_program(t, "python3") || !have_program(t, "vde_plug") {
        return;
    }
    let dir = scratch("killed");
    let (a, b, vb) = pair("pk");
    let (ra, _) = rrqnet(&a, &dir, "rrqnet-a", &["7000", "192.0.2.2:7000"]);
    let (mut rb, sb) = rrqnet(&b, &dir, "rrqnet-b", &["7000", "192.0.2.1:7000"]);
    tcp_transfer(&b, &a, "198.51.100.1", 5001, 4 << 20, &[&ra, &rb]);
    assert!(offload(&sb).from_tap.super_frames > 0, "B's tap handed over super-frames while rrqnet had it");
    let release = || {
        let out = b.cmd(rrqnet_bin().to_str().unwrap()).args(["--release-tap", "tap0"]).output().expect("rrqnet");
        (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
    };
    let (code, err) = release();
    assert_eq!(code, Some(1), "released a tap rrqnet holds: {err}");
    assert!(err.contains("a program has it open"), "{err}");
    assert!(pings(&b, "198.51.100.1"), "the running rrqnet stopped carrying frames\n{}", logs(&[&ra, &rb]));
    assert_eq!(
        netns_util::offloads_of(&b, "tap0"),
        (true, true),
        "checksum and segmentation offload while rrqnet runs"
    );
    rb.proc.child.kill().expect("SIGKILL");
    rb.proc.child.wait().expect("reaped");
    assert!(b.try_sh("test -d /sys/class/net/tap0"), "the persistent tap is gone");
    assert_eq!(netns_util::offloads_of(&b, "tap0"), (true, true), "the kernel kept them");
    let (code, err) = release();
    assert_eq!(code, Some(0), "{err}");
    assert_eq!(netns_util::offloads_of(&b, "tap0"), (false, false), "released");
    vde_plug_takes_the_tap_over(&a, &b, &vb, &dir, &ra, "vde_plug on the released tap of a killed rrqnet");
    ra.stop();
}

/// With `--user` the offloads are set up as root, used as the user, and
/// switched off at exit as the user (the tap's descriptor allows it).
#[test]
fn offloads_work_and_are_switched_off_after_dropping_to_a_user() {
    let t = "offloads_work_and_are_switched_off_after_dropping_to_a_user";
    if !privileged(t) || !have_program(t, "python3") {
        return;
    }
    let dir = scratch("user");
    let (a, b, _) = pair("pu");
    let (ra, _) = rrqnet(&a, &dir, "rrqnet-a", &["7000", "192.0.2.2:7000"]);
    let (rb, sb) = rrqnet(&b, &dir, "rrqnet-b", &["--user", "nobody", "7000", "192.0.2.1:7000"]);
    assert!(wait_for(Duration::from_secs(5), || rb.text().contains("running as user nobody")), "{}", rb.text());
    tcp_transfer(&b, &a, "198.51.100.1", 5001, 4 << 20, &[&ra, &rb]);
    tcp_transfer(&a, &b, "198.51.100.2", 5002, 4 << 20, &[&ra, &rb]);
    let o = offload(&sb);
    assert!(o.from_tap.super_frames > 0 && o.to_tap.super_frames > 0, "{o:?}");
    assert_eq!(netns_util::offloads_of(&b, "tap0"), (true, true));
    let log = rb.stop();
    assert!(!log.contains("could not switch offloads off"), "{log}");
    assert_eq!(netns_util::offloads_of(&b, "tap0"), (false, false), "offloads left on at exit\n{log}");
    ra.stop();
}

/// QEMU's user network (slirp) on a `dgram` netdev, one frame per datagram:
/// a TCP transfer each way between the offloading rrqnet's tap and slirp's
/// forward to the namespace's loopback.
#[test]
fn offloading_rrqnet_and_a_qemu_dgram_netdev_carry_tcp_both_ways() {
    let t = "offloading_rrqnet_and_a_qemu_dgram_netdev_carry_tcp_both_ways";
    if !privileged(t) || !have_program(t, "python3") || !have_program(t, "qemu-system-x86_64") {
        return;
    }
    let dir = scratch("qemu");
    let ns = Netns::new("oqemu");
    netns_util::no_ipv6(&ns);
    add_tap(&ns, "tap0", &["10.0.2.15/24"], Some(MTU));
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
        "dgram,id=s0,local.type=inet,local.host=127.0.0.1,local.port=7101,\
         remote.type=inet,remote.host=127.0.0.1,remote.port=7000",
        "-netdev",
        "hubport,id=h0,hubid=0,netdev=u0",
        "-netdev",
        "hubport,id=h1,hubid=0,netdev=s0",
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::null())
    .stderr(Stdio::null());
    let _qemu = Proc::spawn("qemu", &mut cmd);
    let (r, sock) = rrqnet(&ns, &dir, "rrqnet", &["7000", "127.0.0.1:7101"]);
    assert!(pings(&ns, "10.0.2.2"), "slirp's 10.0.2.2 never answered\n{}", r.text());
    // Tap to slirp, then slirp to tap.
    through_slirp(&ns, 5001, true, &r);
    let o = offload(&sock);
    assert!(o.from_tap.super_frames > 0, "the transfer to slirp was split: {o:?}");
    through_slirp(&ns, 5002, false, &r);
    let o = offload(&sock);
    assert!(o.to_tap.super_frames > 0, "the transfer from slirp was joined: {o:?}");
    assert!(o.from_tap.refused.is_empty() && o.to_tap.rejected == 0, "{o:?}");
    r.stop();
}

/// One TCP connection from the tap side to slirp's 10.0.2.2, which slirp
/// forwards to a server on the namespace's loopback; [`BYTES`] random bytes
/// go from the tap side to slirp (`to_slirp`) or the other way. Both ends
/// print the byte count and sha256, which must agree.
fn through_slirp(ns: &Netns, port: u16, to_slirp: bool, r: &Logged) {
    let server = r#"
import hashlib, os, socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", int(sys.argv[1]))); s.listen(1); s.settimeout(60)
print("ready", flush=True)
c, _ = s.accept(); c.settimeout(60)
if sys.argv[2] == "send":
    data = os.urandom(int(sys.argv[3]))
    c.sendall(data); c.shutdown(socket.SHUT_WR); c.recv(1)
    print(len(data), hashlib.sha256(data).hexdigest(), flush=True)
else:
    h = hashlib.sha256(); n = 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d); n += len(d)
    c.close()
    print(n, h.hexdigest(), flush=True)
"#;
    let client = r#"
import hashlib, os, socket, sys
c = socket.create_connection(("10.0.2.2", int(sys.argv[1])), timeout=60)
if sys.argv[2] == "send":
    data = os.urandom(int(sys.argv[3]))
    c.sendall(data); c.shutdown(socket.SHUT_WR); c.recv(1)
    print(len(data), hashlib.sha256(data).hexdigest())
else:
    h = hashlib.sha256(); n = 0
    while True:
        d = c.recv(1 << 16)
        if not d:
            break
        h.update(d); n += len(d)
    c.close()
    print(n, h.hexdigest())
"#;
    let (server_role, client_role) = if to_slirp { ("recv", "send") } else { ("send", "recv") };
    let (port, bytes) = (port.to_string(), BYTES.to_string());
    let mut cmd = ns.cmd("python3");
    cmd.args(["-c", server, &port, server_role, &bytes]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut srv = Proc::spawn("server", &mut cmd);
    let mut out = BufReader::new(srv.child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line.trim(), "ready");
    let got = ns.cmd("python3").args(["-c", client, &port, client_role, &bytes]).stdin(Stdio::null()).output();
    let got = got.expect("python3 client");
    assert!(got.status.success(), "client: {}\n{}", String::from_utf8_lossy(&got.stderr), r.text());
    let mut other = String::new();
    out.read_to_string(&mut other).unwrap();
    assert!(srv.wait_timeout(Duration::from_secs(30)).is_some_and(|s| s.success()), "server failed");
    let mine = String::from_utf8_lossy(&got.stdout).trim().to_owned();
    assert_eq!(mine, other.trim(), "the transfer arrived damaged (to slirp: {to_slirp})");
    assert!(mine.starts_with(&format!("{BYTES} ")), "{mine}");
}

/// A TCP stream whose packets carry IPv4 options (`IP_OPTIONS`, four
/// bytes of no-ops): the kernel still hands rrqnet super-frames, which it
/// does not split (the segments' options are not its business). The first
/// is counted and dropped, segmentation offload goes off (the kernel cuts
/// them itself from then on, checksum offload stays), TCP sends the data
/// again, and the transfer completes intact; the other side passes such
/// frames to its tap as they came, counted.
#[test]
fn super_frames_that_cannot_be_split_switch_segmentation_off() {
    let t = "super_frames_that_cannot_be_split_switch_segmentation_off";
    if !privileged(t) || !have_program(t, "python3") {
        return;
    }
    let dir = scratch("ipopt");
    let (a, b, vb) = pair("io");
    let (ra, sa) = rrqnet(&a, &dir, "a", &["7000", "192.0.2.2:7000"]);
    let (rb, sb) = rrqnet(&b, &dir, "b", &["7000", "192.0.2.1:7000"]);
    assert!(pings(&a, "198.51.100.2"), "no ping through\n{}", logs(&[&ra, &rb]));
    let cap = Capture::start(&b, &vb, "7000");
    let client = netns_util::TCP_CLIENT.replace(
        "s.sendall(data)",
        "s.setsockopt(socket.IPPROTO_IP, socket.IP_OPTIONS, bytes([1, 1, 1, 0]))\ns.sendall(data)",
    );
    assert!(client.contains("IP_OPTIONS"));
    netns_util::tcp_transfer_with(&a, &b, "198.51.100.2", 5001, BYTES, netns_util::TCP_SERVER, &client, &[&ra, &rb]);
    assert_ordinary(&cap.stop(), "TCP with IPv4 options", &[&ra, &rb]);
    let o = offload(&sa);
    assert!(o.from_tap.refused.get("ipv4-options").copied().unwrap_or(0) >= 1, "{o:?}");
    assert!(!o.tso && o.checksum, "segmentation offload off, checksum offload kept: {o:?}");
    let ob = offload(&sb);
    assert!(ob.to_tap.plain.get("ipv4-options").copied().unwrap_or(0) > 0, "{ob:?}");
    let la = ra.stop();
    assert!(la.contains("TCP segmentation offload switched off"), "{la}");
    rb.stop();
}
