//! Hostile traffic (issue 13), without privileges: the rules on the node
//! driver (tests/common/netsim.rs: real nodes on a virtual network and a
//! virtual clock, forged datagrams put on the wire with `Net::inject`), and
//! the built binary over loopback for what only the shell does (stdio on
//! files, a reader that leaves, ICMP errors on an uplink).
//!
//! Each finding of the issue is a test here that fails on the code before
//! the fix: forged heartbeats making thousands of remotes (finding 1), a MAC
//! flood cutting new hosts off (finding 2), `-t -` on files (finding 5) and
//! 65535-byte stdin frames counted as failed sends (finding 6). The others
//! had no test: storm control, a wall-clock jump of an hour either way, a
//! reader of stdout that leaves (SIGPIPE), an uplink answered by ICMP port
//! unreachable. The root-only tests (namespaces, taps) are in
//! `netns_hostile.rs`.

mod common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::frames::{frame, mac, tagged, BCAST};
use common::netsim::Net;
use common::scratch::Scratch;
use common::stdio::Captured;
use common::{drop_count, free_port, rrqnet_bin, wait_for};
use rrqnet::node::guard::{Limits, DEFAULT_MAX_REMOTES};
use rrqnet::switch::DropReason;

const KEY: &[u8] = &[0x5a; 64];

/// The `i`-th forged source in 10.0.0.0/8: 200 per /24, port 2300.
fn forged(i: u32) -> SocketAddr {
    let net = i / 200;
    let ip = Ipv4Addr::new(10, (net >> 8) as u8, net as u8, (i % 200 + 1) as u8);
    SocketAddr::new(IpAddr::V4(ip), 2300)
}

/// Puts `n` forged datagrams on the wire to `to`, `per_tick` every 10 ms of
/// virtual time, from sources `first..first + n` (by `source`).
fn forge(net: &mut Net, to: SocketAddr, n: u32, per_tick: u32, source: impl Fn(u32) -> SocketAddr, payload: &[u8]) {
    let mut sent = 0;
    while sent < n {
        for _ in 0..per_tick.min(n - sent) {
            net.inject(source(sent), to, payload);
            sent += 1;
        }
        net.run_for(Duration::from_millis(10));
    }
}

/// The manual's NAT-style server with a second, wide, plain downlink (the
/// issue's `rrqnet -t tap0 1400 192.0.2.0/24 10.0.0.0/8`), and a real
/// client in the first block.
fn server_and_client() -> (Net, usize, usize) {
    let mut net = Net::new(13);
    let s = net.add("S", "192.0.2.1:2300", "-t - 2300 192.0.2.0/24:2300 10.0.0.0/8", &[]);
    let c = net.add("C", "192.0.2.2:2300", "-t - 2300 192.0.2.1:2300", &[]);
    (net.started(), s, c)
}

fn refused_new_remotes(net: &Net, i: usize) -> u64 {
    let s = net.stats(i);
    [DropReason::DeclarationFull, DropReason::NewRemoteRate, DropReason::NewRemotePrefixRate]
        .iter()
        .map(|r| s.dropped(*r))
        .sum()
}

// ---------------------------------------------------------------------------
// Finding 1: amplification on plain downlinks.

/// Forged heartbeats from 50 000 addresses in a plain downlink make at most
/// its cap of remotes (not 4096), every refusal is counted, and a forged
/// broadcast is then sent to at most that many, while the real client's
/// frames go through untouched.
#[test]
fn forged_heartbeats_make_at_most_the_cap_of_remotes() {
    let (mut net, s, c) = server_and_client();
    let server = net.hosts[s].addr;
    let cap = usize::from(DEFAULT_MAX_REMOTES);
    // 50 000 sources over 10 s.
    forge(&mut net, server, 50_000, 50, forged, b"\0");
    assert_eq!(net.hosts[s].node.guard().live(1), cap, "remotes of 10.0.0.0/8");
    // The local end, the client and the forged remotes.
    assert_eq!(net.hosts[s].node.switch().port_count(), 2 + cap);
    assert_eq!(refused_new_remotes(&net, s), 50_000 - cap as u64);
    assert_eq!(net.stats(s).dropped(DropReason::TooManyRemotes), 0);

    // A forged broadcast from one of them: to the local end, the client and
    // the other forged remotes (the datagrams to those are "unrouted").
    net.take_tally();
    let hello = tagged(BCAST, mac(0x66), 1);
    net.inject(forged(0), server, &hello);
    net.run_for(Duration::from_millis(50));
    let t = net.take_tally();
    assert_eq!(t.unrouted, cap - 1, "one forged broadcast became {} datagrams", t.unrouted);

    // 100 forged broadcasts a second for 5 s, from forged remotes, while the
    // real client and the server's host talk: nothing of theirs is lost.
    let (client_host, server_host) = (mac(0x21), mac(0x11));
    net.send_local(c, &tagged(BCAST, client_host, 2));
    net.send_local(s, &tagged(client_host, server_host, 3));
    net.run_for(Duration::from_millis(50));
    net.take_tally();
    for tick in 0..500u32 {
        net.inject(forged(tick % cap as u32), server, &frame(BCAST, mac(0x67), 60, tick as u8));
        if tick % 5 == 0 {
            net.send_local(c, &frame(server_host, client_host, 100, tick as u8));
            net.send_local(s, &frame(client_host, server_host, 100, tick as u8));
        }
        net.run_for(Duration::from_millis(10));
    }
    net.run_for(Duration::from_millis(100));
    let t = net.take_tally();
    let from = |got: &[Vec<u8>], src: [u8; 6]| got.iter().filter(|f| f[6..12] == src).count();
    assert_eq!(from(t.received("S"), client_host), 100, "client to server");
    assert_eq!(from(t.received("C"), server_host), 100, "server to client");
    assert!(t.unrouted <= 500 * cap, "{} datagrams for 500 forged broadcasts", t.unrouted);
}

/// Floods from the forged remotes of one downlink share one budget in
/// datagrams: 600 floods a second from 100 of them (each far under its own
/// port's rate) cause at most the declaration's burst and rate, while the
/// real client's broadcasts, under another declaration, all go out.
#[test]
fn floods_from_forged_remotes_share_their_declarations_budget() {
    let (mut net, s, c) = server_and_client();
    let server = net.hosts[s].addr;
    // Sources in /24s of their own, so that the first 100 get in at once.
    let spread = |i: u32| forged(i * 200);
    forge(&mut net, server, 20_000, 50, spread, b"\0");
    let cap = net.hosts[s].node.guard().live(1);
    assert_eq!(cap, usize::from(DEFAULT_MAX_REMOTES));
    net.take_tally();
    let budget = Limits::default().flood_per_declaration;
    let client_host = mac(0x21);
    // 5 s: every 10 ms, 6 floods from forged remotes 0..99 (admitted first,
    // in the burst) and, every 100 ms, a broadcast from the real client.
    for tick in 0..500u32 {
        for k in 0..6u32 {
            let i = (tick * 6 + k) % 100;
            let dst = [0x03, 0, 0, 0, (tick >> 8) as u8, tick as u8 ^ k as u8];
            net.inject(spread(i), server, &frame(dst, [2, 0xaa, 0, 0, 0, i as u8], 60, k as u8));
        }
        if tick % 10 == 0 {
            net.send_local(c, &frame(BCAST, client_host, 60, tick as u8));
        }
        net.run_for(Duration::from_millis(10));
    }
    let t = net.take_tally();
    // The forged remotes' floods, and the client's 50 broadcasts to them.
    let bound = (budget.burst + 5 * budget.per_sec) as usize + 50 * cap;
    assert!(t.unrouted <= bound, "{} datagrams to forged remotes in 5 s (bound {bound})", t.unrouted);
    assert!(t.unrouted >= 5 * budget.per_sec as usize, "the budget is used: {}", t.unrouted);
    let from_client = t.received("S").iter().filter(|f| f[6..12] == client_host).count();
    assert_eq!(from_client, 50, "the client's broadcasts");
    assert!(net.stats(s).dropped(DropReason::StormMulticast) > 0, "{:?}", net.stats(s));
}

/// `-r n` sets a declaration's cap; a remote going stale frees its place.
#[test]
fn a_declarations_cap_is_settable_and_stale_remotes_free_it() {
    let mut net = Net::new(14);
    let s = net.add("S", "192.0.2.1:2300", "-t - 2300 10.0.0.0/8 -r 10 192.0.2.0/24 -r 3", &[]);
    let mut net = net.started();
    let server = net.hosts[s].addr;
    forge(&mut net, server, 100, 100, |i| forged(i * 200), b"\0");
    forge(&mut net, server, 50, 50, |i| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 10 + i as u8)), 9), b"\0");
    assert_eq!((net.hosts[s].node.guard().live(0), net.hosts[s].node.guard().live(1)), (10, 3));
    assert_eq!(net.stats(s).dropped(DropReason::DeclarationFull), 90 + 47);
    // After 180 s of silence they are stale: places for new ones.
    net.run_for(Duration::from_secs(181));
    assert_eq!(net.hosts[s].node.guard().live(0), 0);
    forge(&mut net, server, 10, 10, |i| forged(1000 + i * 200), b"\0");
    assert_eq!(net.hosts[s].node.guard().live(0), 10);
}

/// New remotes from one /24 are limited to a few a second, and that leaves
/// the declaration's allowance to other networks.
#[test]
fn one_source_network_cannot_spend_a_declarations_allowance() {
    let (mut net, s, _) = server_and_client();
    let server = net.hosts[s].addr;
    let limits = Limits::default();
    // 1000 sources of 10.9.9.0/24 (ports vary) in one second.
    let one_net = |i: u32| SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 9, 9, (i % 250) as u8 + 1)), 1000 + i as u16);
    forge(&mut net, server, 1000, 10, one_net, b"\0");
    let made = net.hosts[s].node.guard().live(1) as u32;
    let bound = limits.new_remotes_per_prefix.burst + limits.new_remotes_per_prefix.per_sec;
    assert!(made <= bound, "{made} remotes from one /24 in a second");
    assert!(net.stats(s).dropped(DropReason::NewRemotePrefixRate) >= u64::from(1000 - bound));
    // Others still get in at once.
    forge(&mut net, server, 50, 50, |i| forged(10_000 + i * 200), b"\0");
    assert_eq!(net.hosts[s].node.guard().live(1) as u32, made + 50);
}

/// On a keyed downlink, forgeries never reach admission: 50 000 forged
/// datagrams make no remote and spend nothing, and a real key holder gets
/// in at once afterwards.
#[test]
fn forgeries_on_a_keyed_downlink_spend_no_admission() {
    let mut net = Net::new(15);
    let s = net.add("S", "192.0.2.1:2300", "-t - 2300 10.0.0.0/8=k", &[("k", KEY)]);
    let mut net = net.started();
    let server = net.hosts[s].addr;
    forge(&mut net, server, 50_000, 1000, forged, &tagged(BCAST, mac(0x66), 1));
    assert_eq!(net.hosts[s].node.switch().port_count(), 1, "only the local end");
    assert_eq!(net.stats(s).dropped(DropReason::BadAuth), 50_000);
    assert_eq!(refused_new_remotes(&net, s), 0);
    let c = net.add("C", "10.1.2.3:2300", "-t - 2300 192.0.2.1:2300=k", &[("k", KEY)]);
    let now = net.now_of(c);
    net.hosts[c].node.handle_timeout(now);
    net.flush(c);
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.hosts[s].node.guard().live(0), 1, "the key holder is a remote");
    let hello = tagged(BCAST, mac(0x21), 7);
    net.send_local(c, &hello);
    net.run_for(Duration::from_millis(50));
    assert_eq!(net.take_tally().received("S"), [hello.as_slice()]);
}

// ---------------------------------------------------------------------------
// Storm control.

/// A port flooding broadcasts gets its burst and its rate through (a flood
/// charged one per port it goes out of), no more; another port's broadcasts
/// are not held back.
#[test]
fn broadcasts_from_one_port_are_limited_and_others_pass() {
    let mut net = Net::new(16);
    let s = net.add("S", "192.0.2.1:2300", "-t - 2300 192.0.2.0/24:2300", &[]);
    let a = net.add("A", "192.0.2.2:2300", "-t - 2300 192.0.2.1:2300", &[]);
    let b = net.add("B", "192.0.2.3:2300", "-t - 2300 192.0.2.1:2300", &[]);
    let mut net = net.started();
    let rate = Limits::default().flood_per_port;
    // 60 000 broadcasts in one second from A's address, straight to S; each
    // goes out of two ports (S's host and B), so it costs two.
    let (server, from_a) = (net.hosts[s].addr, net.hosts[a].addr);
    for tick in 0..100u32 {
        for k in 0..600u32 {
            let f = frame(BCAST, mac(0x31), 60, (tick * 600 + k) as u8);
            net.inject(from_a, server, &f);
        }
        net.run_for(Duration::from_millis(10));
    }
    let t = net.take_tally();
    let passed = t.received("S").len() as u32;
    let (low, high) = (rate.burst / 2, (rate.burst + rate.per_sec) / 2);
    assert!((low..=high).contains(&passed), "{passed} of 60 000 broadcasts passed (expected {low} to {high})");
    assert_eq!(t.received("B").len() as u32, passed, "B gets what S's host gets");
    assert_eq!(u64::from(60_000 - passed), net.stats(s).dropped(DropReason::StormBroadcast));
    // B's broadcast goes through at once.
    let hello = tagged(BCAST, mac(0x41), 9);
    net.send_local(b, &hello);
    net.run_for(Duration::from_millis(50));
    let t = net.take_tally();
    assert_eq!(t.received("S"), [hello.as_slice()]);
    assert_eq!(t.received("A"), [hello.as_slice()]);
}

// ---------------------------------------------------------------------------
// Finding 2: a MAC flood cuts new hosts off.

/// One port sends 1000 frames a second from random source addresses for
/// 30 s (the table holds 16384); 10 new hosts behind another port then send
/// 60 frames each, and every one of the 600 arrives.
#[test]
fn a_mac_flood_on_one_port_leaves_new_hosts_on_others_their_frames() {
    let mut net = Net::new(17);
    let s = net.add("S", "192.0.2.1:2300", "-t - 2300 192.0.2.0/24:2300", &[]);
    let a = net.add("A", "192.0.2.2:2300", "-t - 2300 192.0.2.1:2300", &[]);
    let b = net.add("B", "192.0.2.3:2300", "-t - 2300 192.0.2.1:2300", &[]);
    let mut net = net.started();
    let server_host = mac(0x11);
    net.send_local(s, &tagged(BCAST, server_host, 1));
    net.run_for(Duration::from_millis(50));
    net.take_tally();
    let mut rng = common::netsim::Rng::new(99);
    let mut random_src = || {
        let v = rng.next_u64().to_be_bytes();
        [0x02 | (v[0] & 0xfc), v[1], v[2], v[3], v[4], v[5]]
    };
    let new_hosts: Vec<[u8; 6]> = (0..10).map(|i| [0x02, 0xbb, 0, 0, 0, i]).collect();
    let mut sent_by_new = 0;
    for ms in 0..40_000u32 {
        if ms < 30_000 {
            net.send_local(a, &frame(server_host, random_src(), 60, ms as u8));
        }
        // The new hosts start when the table would be full: 20 s in.
        if ms >= 20_000 && ms % 200 == 0 && sent_by_new < 600 {
            for h in &new_hosts {
                net.send_local(b, &frame(server_host, *h, 100, ms as u8));
                sent_by_new += 1;
            }
        }
        net.run_for(Duration::from_millis(1));
    }
    net.run_for(Duration::from_millis(100));
    assert_eq!(sent_by_new, 600);
    let t = net.take_tally();
    let got = t.received("S").iter().filter(|f| new_hosts.iter().any(|h| f[6..12] == *h)).count();
    assert_eq!(got, 600, "frames of the new hosts that reached S's host\nS: {:?}", net.stats(s));
    // The flooding port owns its share at S, no more.
    let limit = rrqnet::switch::table::DEFAULT_PORT_MAC_LIMIT;
    assert!(net.hosts[s].node.switch().mac_count() <= limit + 11, "{}", net.hosts[s].node.switch().mac_count());
    assert!(net.stats(s).dropped(DropReason::PortMacLimit) > 0);
    assert!(net.stats(a).dropped(DropReason::PortMacLimit) > 0, "A's local end is over its share too");
}

// ---------------------------------------------------------------------------
// The wall clock jumps.

/// A keyed pair exchanging a frame each way every second for `secs`
/// seconds; returns how many arrived, each way (heartbeats are left in the
/// tally).
fn exchange_each_second(net: &mut Net, secs: u32, tag: &mut u8) -> (usize, usize) {
    let (a, b) = (0, 1);
    let (ha, hb) = (mac(0x51), mac(0x52));
    let before = (net.tally.received("B").len(), net.tally.received("A").len());
    for _ in 0..secs {
        *tag = tag.wrapping_add(1);
        net.send_local(a, &tagged(hb, ha, *tag));
        net.send_local(b, &tagged(ha, hb, *tag));
        net.run_for(Duration::from_secs(1));
    }
    (net.tally.received("B").len() - before.0, net.tally.received("A").len() - before.1)
}

fn keyed_pair() -> Net {
    let mut net = Net::new(18);
    net.add("A", "192.0.2.1:2300", "-t - 2300 192.0.2.2:2300=k", &[("k", KEY)]);
    net.add("B", "192.0.2.2:2300", "-t - 2300 192.0.2.1:2300=k", &[("k", KEY)]);
    let mut net = net.started();
    // Each learns the other's host.
    net.send_local(0, &tagged(BCAST, mac(0x51), 0));
    net.send_local(1, &tagged(BCAST, mac(0x52), 0));
    net.run_for(Duration::from_millis(50));
    net.take_tally();
    net
}

/// The session start time in a keyed datagram (bytes 26..34).
fn session_start(d: &[u8]) -> u64 {
    u64::from_be_bytes(d[26..34].try_into().unwrap())
}

/// Every clock jumps an hour ahead, and later two hours back: sessions are
/// renewed at once with the new time (peers accept them, their clocks
/// agree), no frame is lost, and the timers, on the monotonic clock, go on.
#[test]
fn clocks_jumping_an_hour_either_way_renew_sessions_and_lose_nothing() {
    let mut net = keyed_pair();
    let mut tag = 0;
    assert_eq!(exchange_each_second(&mut net, 30, &mut tag), (30, 30));
    for jump in [3600i64, -7200] {
        for h in &mut net.hosts {
            h.clock_offset += jump;
        }
        net.capturing = true;
        assert_eq!(exchange_each_second(&mut net, 200, &mut tag), (200, 200), "after a jump of {jump} s");
        net.capturing = false;
        let clock = net.now_of(0).unix;
        let last = net.capture.last().expect("datagrams were captured");
        assert!(session_start(&last.payload).abs_diff(clock) <= 120, "the session was renewed after {jump} s");
        net.capture.clear();
        assert_eq!(net.drops(DropReason::StaleSession), [0, 0]);
    }
    // Heartbeats every 30 s all along, on both uplinks: 430 s of them.
    assert!(net.take_tally().heartbeats >= 2 * 14, "heartbeats stopped");
}

/// One host's clock jumps an hour ahead (a wrong step), then back: while
/// the clocks disagree its new sessions are refused as stale (documented:
/// clocks must agree within 300 s); once they agree again, frames flow
/// both ways within seconds, and heartbeats never stopped.
#[test]
fn a_host_whose_clock_was_wrong_for_a_while_is_heard_again_at_once() {
    let mut net = keyed_pair();
    let mut tag = 0;
    assert_eq!(exchange_each_second(&mut net, 10, &mut tag), (10, 10));
    net.hosts[0].clock_offset = 3600;
    net.take_tally();
    let (to_b, _) = exchange_each_second(&mut net, 300, &mut tag);
    assert!(to_b < 5, "{to_b} frames crossed with clocks an hour apart");
    assert!(net.tally.heartbeats >= 2 * 9, "heartbeats stopped while the clock was wrong");
    assert!(net.stats(1).dropped(DropReason::StaleSession) > 0);
    net.hosts[0].clock_offset = 0;
    // The first second may still be refused (sessions renew on send).
    let _ = exchange_each_second(&mut net, 2, &mut tag);
    assert_eq!(exchange_each_second(&mut net, 60, &mut tag), (60, 60));
}

// ---------------------------------------------------------------------------
// The command line of the limits: `-r n` after a downlink, `--user USER`.

fn cli_error(args: &[&str]) -> String {
    let argv = std::iter::once("rrqnet").chain(args.iter().copied());
    match rrqnet::cli::parse(argv) {
        Err(e) => e.to_string(),
        Ok(other) => panic!("{args:?} parsed: {other:?}"),
    }
}

#[test]
fn max_remotes_and_user_options_parse_and_refuse_clearly() {
    let argv = ["rrqnet", "--user", "nobody", "2300", "10.0.0.0/8", "-r", "64", "-i", "02:00:00:00:00:01", "::/0"];
    let cfg = match rrqnet::cli::parse(argv) {
        Ok(rrqnet::cli::Invocation::Run(cfg)) => cfg,
        other => panic!("{other:?}"),
    };
    assert_eq!(cfg.user.as_deref(), Some("nobody"));
    assert_eq!(cfg.remotes.iter().map(|r| r.max_remotes).collect::<Vec<_>>(), [Some(64), None]);
    assert_eq!(cfg.remotes[0].ignore.len(), 1);
    let cases: &[(&[&str], &str)] = &[
        (&["2300", "10.0.0.0/8", "-r", "0"], "bad argument '0' for -r: expected a number of remotes (1-4096) after -r"),
        (&["2300", "10.0.0.0/8", "-r", "5000"], "bad argument '5000' for -r"),
        (&["2300", "10.0.0.0/8", "-r"], "bad argument '-r': expected a number of remotes after -r"),
        (&["2300", "-r", "5"], "bad argument '-r': -r must follow a downlink declaration"),
        (&["2300", "10.0.0.0/8", "-r", "5", "-r", "6"], "-r may be given once per declaration"),
        (&["2300", "192.0.2.1:2300", "-r", "5"], "bad argument '192.0.2.1:2300': -r limits the remotes of a downlink"),
        (&["--user", "-v", "2300"], "bad argument '-v' for --user: expected a user name after --user"),
        (&["--user"], "bad argument '--user': expected a user name after --user"),
        (&["2300", "--user", "nobody"], "options must come before the port"),
    ];
    for (args, want) in cases {
        let got = cli_error(args);
        assert!(got.contains(want), "{args:?}: {got}");
        assert_eq!(got.lines().count(), 1, "{got}");
    }
}

// ---------------------------------------------------------------------------
// The built binary: stdio on files, 65535-byte frames, a reader that leaves,
// ICMP errors on an uplink.

/// VDE records of `frames`.
fn records(frames: &[Vec<u8>]) -> Vec<u8> {
    let mut out = Vec::new();
    for f in frames {
        out.extend_from_slice(&(f.len() as u16).to_be_bytes());
        out.extend_from_slice(f);
    }
    out
}

/// Receives datagrams on `sock` until `n` arrived or a second passes
/// without one.
fn receive(sock: &UdpSocket, n: usize) -> Vec<Vec<u8>> {
    sock.set_read_timeout(Some(Duration::from_secs(1))).unwrap();
    let mut buf = vec![0u8; 70_000];
    let mut got = Vec::new();
    while got.len() < n {
        match sock.recv(&mut buf) {
            Ok(len) => got.push(buf[..len].to_vec()),
            Err(_) => break,
        }
    }
    got
}

/// rrqnet as a command, with its stderr collected.
fn rrqnet(args: &[&str], stdin: Stdio, stdout: Stdio) -> Captured {
    let mut cmd = Command::new(rrqnet_bin());
    cmd.args(args).stdin(stdin).stdout(stdout);
    Captured::spawn("rrqnet", &mut cmd)
}

/// Waits for it to exit and returns its status code and whole log.
fn exit_of(c: &mut Captured) -> (Option<i32>, String) {
    let st = c.proc.wait_timeout(Duration::from_secs(10));
    c.wait_eof(Duration::from_secs(2));
    (st.and_then(|s| s.code()), c.log())
}

/// stdin a regular file of records, stdout /dev/null: every frame that fits
/// a UDP datagram reaches the uplink, the largest over IPv4 (65507 bytes)
/// included; 65508- and 65535-byte frames are counted too large, none as
/// failed sends; end of the file ends the daemon with status 0.
#[test]
fn stdin_from_a_file_is_read_to_its_end_and_oversized_frames_are_too_large() {
    let dir = Scratch::unique("hostile");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    let frames: Vec<Vec<u8>> = [60, 65535, 1514, 65508, 9000, 65507, 65535]
        .iter()
        .enumerate()
        .map(|(i, &len)| frame(mac(0x77), mac(0x70 + i as u8), len, i as u8))
        .collect();
    let input = dir.file("in.vde");
    std::fs::write(&input, records(&frames)).unwrap();
    let port = free_port().to_string();
    let mut c =
        rrqnet(&["-v", "-t", "-", &port, &peer_addr], Stdio::from(std::fs::File::open(&input).unwrap()), Stdio::null());
    let (code, log) = exit_of(&mut c);
    assert_eq!(code, Some(0), "{log}");
    assert!(log.contains("stdio closed"), "{log}");
    let want: Vec<Vec<u8>> = frames.iter().filter(|f| f.len() <= 65507).cloned().collect();
    let got = receive(&peer, want.len() + 1);
    let got = got.into_iter().filter(|d| d.len() > 11).collect::<Vec<_>>();
    assert_eq!(got.len(), want.len(), "{log}");
    assert!(got == want, "the frames arrived changed");
    assert_eq!(drop_count(&log, "too-large"), 3, "{log}");
    assert_eq!(drop_count(&log, "send-failed"), 0, "{log}");
}

/// stdout a regular file (stdin a pipe held open): frames from the network
/// are written to it as records, whole; closing stdin ends the daemon.
#[test]
fn stdout_to_a_file_gets_every_frame_as_a_record() {
    let dir = Scratch::unique("hostile");
    let out = dir.file("out.vde");
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    let port = free_port();
    let mut c = rrqnet(
        &["-v", "-t", "-", &port.to_string(), &peer_addr],
        Stdio::piped(),
        Stdio::from(std::fs::File::create(&out).unwrap()),
    );
    assert!(c.wait_log("uplink", Duration::from_secs(5)), "{}", c.log());
    let frames: Vec<Vec<u8>> = (0..200).map(|i| frame(mac(0x10), mac(0x20), 60 + i * 40, i as u8)).collect();
    for f in &frames {
        peer.send_to(f, ("127.0.0.1", port)).unwrap();
    }
    let want = records(&frames);
    let arrived =
        wait_for(Duration::from_secs(5), || std::fs::metadata(&out).map(|m| m.len()).unwrap_or(0) >= want.len() as u64);
    drop(c.proc.child.stdin.take());
    let (code, log) = exit_of(&mut c);
    assert!(arrived, "{log}");
    assert_eq!(code, Some(0), "{log}");
    assert!(std::fs::read(&out).unwrap() == want, "the records in the file differ");
}

/// stdin on /dev/null is an empty input: status 0 at once. A device epoll
/// cannot watch is refused with one line that names stdin or stdout.
#[test]
fn stdio_on_dev_null_works_and_unwatchable_devices_are_named() {
    let port = free_port().to_string();
    let mut c = rrqnet(&["-t", "-", &port], Stdio::null(), Stdio::null());
    let (code, log) = exit_of(&mut c);
    assert_eq!(code, Some(0), "{log}");
    for (which, stdin, stdout) in [
        ("stdin", std::fs::File::open("/dev/zero").unwrap(), Stdio::null()),
        ("stdout", std::fs::File::open("/dev/null").unwrap(), Stdio::from(std::fs::File::create("/dev/zero").unwrap())),
    ] {
        let mut cmd = Command::new(rrqnet_bin());
        cmd.args(["-t", "-", &port]).stdin(Stdio::from(stdin)).stdout(stdout);
        let out = cmd.output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{which}: {err}");
        assert_eq!(err.lines().count(), 1, "{which}: {err}");
        assert!(err.contains(&format!("{which} is a character device")), "{which}: {err}");
    }
}

/// The reader of stdout leaves: the next write gets EPIPE (SIGPIPE is
/// ignored), and the daemon exits 0 saying why, not killed by the signal.
#[test]
fn a_reader_that_leaves_stdout_ends_the_daemon_cleanly() {
    let peer = UdpSocket::bind("127.0.0.1:0").unwrap();
    let peer_addr = peer.local_addr().unwrap().to_string();
    let port = free_port();
    let mut c = rrqnet(&["-v", "-t", "-", &port.to_string(), &peer_addr], Stdio::piped(), Stdio::piped());
    assert!(c.wait_log("uplink", Duration::from_secs(5)), "{}", c.log());
    drop(c.proc.child.stdout.take());
    let _stdin = c.proc.child.stdin.take();
    let f = frame(mac(0x10), mac(0x20), 100, 1);
    let ended = wait_for(Duration::from_secs(5), || {
        let _ = peer.send_to(&f, ("127.0.0.1", port));
        !c.proc.running()
    });
    let (code, log) = exit_of(&mut c);
    assert!(ended, "still running:\n{log}");
    assert_eq!(code, Some(0), "killed by a signal, or failed:\n{log}");
    assert!(log.contains("output closed by its reader"), "{log}");
}

/// CPU time (user + system, in clock ticks) of a process.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    let after = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

/// An uplink whose port nobody listens on answers every datagram with ICMP
/// port unreachable: 2000 frames flooded to it and 30 s of heartbeats cost
/// no CPU to speak of (no spin), write a few log lines at -vv (no flood),
/// and the heartbeats go on: once something listens there, the next one
/// arrives. Over IPv4 and IPv6 at once.
#[test]
fn an_uplink_answered_by_port_unreachable_does_not_spin_and_keeps_its_heartbeats() {
    let (dead4, dead6) = (free_port(), free_port());
    let port = free_port();
    let mut c = rrqnet(
        &["-vv", "-t", "-", &port.to_string(), &format!("127.0.0.1:{dead4}"), &format!("[::1]:{dead6}")],
        Stdio::piped(),
        Stdio::piped(),
    );
    assert!(c.wait_log("uplink [::1]", Duration::from_secs(5)), "{}", c.log());
    let mut stdin = c.proc.child.stdin.take().unwrap();
    // Drain stdout so nothing blocks on it.
    let mut stdout = c.proc.child.stdout.take().unwrap();
    std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        while matches!(stdout.read(&mut sink), Ok(n) if n > 0) {}
    });
    let t0 = Instant::now();
    let cpu0 = cpu_ticks(c.proc.pid());
    let lines0 = c.log().lines().count();
    let burst: Vec<Vec<u8>> = (0..2000).map(|i| frame(mac(0x77), mac(0x20), 200, i as u8)).collect();
    for chunk in burst.chunks(100) {
        stdin.write_all(&records(chunk)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
    }
    // Something listens at the dead IPv4 port after a while; the heartbeat
    // at 30 s must reach it.
    std::thread::sleep(Duration::from_secs(2));
    let listener = UdpSocket::bind(("127.0.0.1", dead4)).unwrap();
    listener.set_read_timeout(Some(Duration::from_secs(35))).unwrap();
    let mut buf = [0u8; 100];
    let heard = loop {
        match listener.recv(&mut buf) {
            Ok(n) if n <= 11 => break true,
            Ok(_) => continue,
            Err(_) => break false,
        }
    };
    let secs = t0.elapsed().as_secs_f64();
    let cpu = cpu_ticks(c.proc.pid()) - cpu0;
    let lines = c.log().lines().count() - lines0;
    assert!(c.proc.running(), "{}", c.log());
    drop(stdin);
    let (code, log) = exit_of(&mut c);
    assert!(heard, "no heartbeat after the ICMP errors:\n{log}");
    // 100 ticks a second; a spinning loop would take all of them.
    assert!((cpu as f64) < secs * 100.0 * 0.05, "{cpu} ticks of CPU in {secs:.1} s");
    assert!(lines < 40, "{lines} log lines:\n{log}");
    assert_eq!(code, Some(0), "{log}");
}
