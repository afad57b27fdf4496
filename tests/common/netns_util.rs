//! Helpers for tests with real taps across network namespaces: unique
//! interface names, namespace pairs joined by a veth, taps, pings, interface
//! counters, daemons whose stderr goes to a log file, and a TCP transfer
//! checked end to end with python3.

#![allow(dead_code)]

use std::fs::File;
use std::io::Read;
use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use super::scratch::Scratch;
use super::{rrqnet_bin, veth, wait_for, Netns, Proc};

/// How long a daemon gets to start.
pub const START: Duration = Duration::from_secs(5);
/// How long a ping gets to get through.
pub const PING: Duration = Duration::from_secs(10);

/// An interface name unique to this test process: `<prefix><pid><tag><i>`,
/// at most 15 bytes for tags of up to 6.
pub fn ifname(prefix: &str, tag: &str, i: usize) -> String {
    let n = format!("{prefix}{}{tag}{i}", std::process::id() % 100000);
    assert!(n.len() <= 15, "{n} is too long for an interface name");
    n
}

/// Turns IPv6 off in a namespace, for devices made after this: a quiet
/// overlay (no router solicitations, MLD or DAD frames).
pub fn no_ipv6(ns: &Netns) {
    ns.sh("sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1");
}

/// Two namespaces joined by a veth (names from [`ifname`] with `prefix`),
/// underlay addresses given per side; IPv6 off for an IPv4 underlay. With
/// an IPv6 underlay and `quiet_v6_taps`, devices made later (the taps) get
/// no IPv6. Returns them and the veth names.
pub fn pair(
    prefix: &str,
    tag: &str,
    a_addr: &str,
    b_addr: &str,
    quiet_v6_taps: bool,
) -> (Netns, Netns, String, String) {
    let a = Netns::new(&format!("{tag}a"));
    let b = Netns::new(&format!("{tag}b"));
    let v6 = a_addr.contains(':');
    if !v6 {
        no_ipv6(&a);
        no_ipv6(&b);
    }
    let (ia, ib) = (ifname(prefix, tag, 0), ifname(prefix, tag, 1));
    veth(&a, &ia, &b, &ib);
    if v6 && quiet_v6_taps {
        // The underlay keeps IPv6; the taps made after this are quiet.
        for ns in [&a, &b] {
            ns.sh("sysctl -qw net.ipv6.conf.default.disable_ipv6=1");
        }
    }
    for (ns, addr, ifc) in [(&a, a_addr, &ia), (&b, b_addr, &ib)] {
        let mut args = vec!["addr", "add"];
        args.extend(addr.split_whitespace());
        args.extend(["dev", ifc.as_str()]);
        ns.ip(&args);
    }
    (a, b, ia, ib)
}

/// Creates tap `name` in `ns` (as the manual does, `ip tuntap add`), with
/// `addrs` and, if given, `mtu`, and brings it up.
pub fn add_tap(ns: &Netns, name: &str, addrs: &[&str], mtu: Option<u32>) {
    ns.ip(&["tuntap", "add", name, "mode", "tap"]);
    for a in addrs {
        let mut args = vec!["addr", "add"];
        args.extend(a.split_whitespace());
        args.extend(["dev", name]);
        ns.ip(&args);
    }
    let mtu = mtu.map(|m| m.to_string());
    let mut args = vec!["link", "set", name];
    if let Some(m) = &mtu {
        args.extend(["mtu", m.as_str()]);
    }
    args.push("up");
    ns.ip(&args);
}

/// Pings `addr` from `ns` until it answers or [`PING`] passes.
pub fn pings(ns: &Netns, addr: &str) -> bool {
    wait_for(PING, || ns.try_sh(&format!("ping -c1 -W1 {addr}")))
}

/// A counter of an interface in a namespace.
pub fn counter(ns: &Netns, ifname: &str, which: &str) -> u64 {
    ns.sh(&format!("cat /sys/class/net/{ifname}/statistics/{which}")).trim().parse().unwrap()
}

/// A python3 script sending one broadcast ARP request (who has
/// 198.51.100.99) from `sender_ip` out of tap0.
pub fn one_broadcast(sender_ip: &str) -> String {
    format!(
        r#"
import socket
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW)
s.bind(("tap0", 0))
me = bytes.fromhex(open("/sys/class/net/tap0/address").read().strip().replace(":", ""))
arp = bytes([0, 1, 8, 0, 6, 4, 0, 1]) + me + socket.inet_aton("{sender_ip}") + bytes(6) + socket.inet_aton("198.51.100.99")
s.send(b"\xff" * 6 + me + b"\x08\x06" + arp)
"#
    )
}

/// A process in a namespace whose stderr goes to a log file.
pub struct Logged {
    pub proc: Proc,
    pub log: PathBuf,
}

impl Logged {
    /// Starts `prog args` in `ns`, stdin and stdout on /dev/null, stderr to
    /// `<name>.log` in `dir`, and waits until its log shows `ready`.
    pub fn start(ns: &Netns, dir: &Scratch, name: &str, prog: &str, args: &[&str], ready: &str) -> Logged {
        let log = dir.file(&format!("{name}.log"));
        let f = File::create(&log).expect("log file");
        let mut cmd = ns.cmd(prog);
        cmd.args(args).stdin(Stdio::null()).stdout(Stdio::null()).stderr(f);
        let l = Logged { proc: Proc::spawn(name, &mut cmd), log };
        assert!(wait_for(START, || l.text().contains(ready)), "{name} did not start ({args:?}):\n{}", l.text());
        l
    }

    /// `rrqnet ARGS` in `ns`, ready once its local end is open.
    pub fn rrqnet(ns: &Netns, dir: &Scratch, name: &str, args: &[&str]) -> Logged {
        let bin = rrqnet_bin();
        Logged::start(ns, dir, name, bin.to_str().unwrap(), args, "local end:")
    }

    /// Its log so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Stops it with SIGTERM (it exits through its normal path) and returns
    /// its whole log, statistics included.
    pub fn stop(mut self) -> String {
        self.proc.stop();
        let log = self.text();
        assert!(log.contains("terminated by a signal"), "{} did not exit cleanly on SIGTERM:\n{log}", self.proc.name);
        log
    }
}

/// All logs, for failure messages.
pub fn logs(ds: &[&Logged]) -> String {
    ds.iter().map(|d| format!("--- {} ---\n{}", d.proc.name, d.text())).collect()
}

/// Receives one TCP stream and prints its length and SHA-256.
pub const TCP_SERVER: &str = r#"
import hashlib, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], int(sys.argv[2])))
s.listen(1)
s.settimeout(60)
c, _ = s.accept()
c.settimeout(30)
h = hashlib.sha256()
n = 0
while True:
    d = c.recv(1 << 16)
    if not d:
        break
    h.update(d)
    n += len(d)
print(n, h.hexdigest())
"#;

/// Sends random bytes over TCP and prints their length and SHA-256.
pub const TCP_CLIENT: &str = r#"
import hashlib, os, socket, sys, time
data = os.urandom(int(sys.argv[3]))
deadline = time.time() + 10
while True:
    try:
        s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=30)
        break
    except OSError:
        if time.time() > deadline:
            raise
        time.sleep(0.1)
s.sendall(data)
s.shutdown(socket.SHUT_WR)
s.recv(1)
print(len(data), hashlib.sha256(data).hexdigest())
"#;

/// Sends `bytes` random bytes over TCP from `from` to a server at
/// `to_addr:port` in `to` and checks the byte count and SHA-256 on both
/// ends. Returns the seconds taken.
pub fn tcp_transfer(from: &Netns, to: &Netns, to_addr: &str, port: u16, bytes: usize, ds: &[&Logged]) -> f64 {
    tcp_transfer_with(from, to, to_addr, port, bytes, TCP_SERVER, TCP_CLIENT, ds)
}

/// [`tcp_transfer`] with other scripts, taking the same arguments and
/// printing the same lines as [`TCP_SERVER`] and [`TCP_CLIENT`].
#[allow(clippy::too_many_arguments)]
pub fn tcp_transfer_with(
    from: &Netns,
    to: &Netns,
    to_addr: &str,
    port: u16,
    bytes: usize,
    server: &str,
    client: &str,
    ds: &[&Logged],
) -> f64 {
    let script = server;
    let mut server = to.cmd("python3");
    server.args(["-c", script, to_addr, &port.to_string()]).stdin(Stdio::null()).stdout(Stdio::piped());
    let mut server = Proc::spawn("tcp server", &mut server);
    let t0 = Instant::now();
    let client = from
        .cmd("python3")
        .args(["-c", client, to_addr, &port.to_string(), &bytes.to_string()])
        .stdin(Stdio::null())
        .output()
        .expect("python3 client");
    let secs = t0.elapsed().as_secs_f64();
    assert!(client.status.success(), "TCP client failed: {}\n{}", String::from_utf8_lossy(&client.stderr), logs(ds));
    let st = server.wait_timeout(Duration::from_secs(30)).expect("TCP server did not finish");
    let mut got = String::new();
    server.child.stdout.take().unwrap().read_to_string(&mut got).unwrap();
    assert!(st.success(), "TCP server failed: {st}");
    let sent = String::from_utf8_lossy(&client.stdout).trim().to_owned();
    assert_eq!(got.trim(), sent, "the transfer arrived damaged (bytes and sha256, received vs sent)");
    assert!(sent.starts_with(&format!("{bytes} ")), "{sent}");
    secs
}

/// Whether the interface `dev` in `ns` has transmit checksum offload and
/// TCP segmentation offload on, as the kernel's ethtool ioctl reports them
/// (`SIOCETHTOOL` with `ETHTOOL_GTXCSUM` and `ETHTOOL_GTSO`; no ethtool
/// program needed).
pub fn offloads_of(ns: &Netns, dev: &str) -> (bool, bool) {
    let script = format!(
        r#"
import array, fcntl, socket, struct
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
def get(cmd):
    buf = array.array("B", struct.pack("II", cmd, 0))
    fcntl.ioctl(s, 0x8946, struct.pack("16sP", b"{dev}", buf.buffer_info()[0]))
    return struct.unpack("II", buf.tobytes())[1]
print(get(0x16), get(0x1e))
"#
    );
    let out = ns.sh(&format!("python3 -c '{script}'"));
    let v: Vec<u32> = out.split_whitespace().map(|w| w.parse().expect("a number")).collect();
    assert_eq!(v.len(), 2, "ethtool ioctl: {out}");
    (v[0] != 0, v[1] != 0)
}
