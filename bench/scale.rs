//! A thousand remotes: what one server's node costs per frame, and in
//! memory, with 1000 downlink remotes (sources in 127.0.0.0/8, each in a
//! /24 of its own) and 16 000 MAC addresses behind them, against the same
//! node with two remotes. Run: `cargo bench --bench scale`.
//!
//! The remotes come in as a real server lets them: the downlink is declared
//! with `-r 2000` (the default cap is 256 remotes a declaration), and its
//! clock moves on 20 ms between new remotes, the pace the admission limit
//! allows (50 a second a declaration; 5 a second for each /24, which one
//! remote a /24 never reaches). 1000 remotes take 20 s of the node's time,
//! well inside a downlink's 180 s of staleness; everything is measured at
//! the instant the last one came in.
//!
//! It prints, before criterion's timings:
//!
//! - the memory the node holds for its remotes and MACs, from the
//!   allocator (`allocation_counter`): bytes per remote (a remote made by
//!   its first datagram, 1000 of them) and per MAC (16 000 learned);
//! - for floods, the arena the plan used for one frame, which shows one
//!   sealed copy per key however many remotes share the key.
//!
//! Then the timings, each for one frame through `Node::handle_input` and
//! the plan handed to a channel that sends nothing:
//!
//! - `unicast/out/{2r4m,4r16000m,1000r16000m}`: the local end to a learned
//!   MAC behind a remote, every learned MAC in turn: 2 remotes with 4 MACs
//!   in all, 4 remotes with 16 000, 1000 remotes with 16 000; one frame
//!   whose addresses are rewritten in place;
//! - `unicast/in/{...}`: a datagram from a remote to a MAC behind the local
//!   end (the remote looked up by its source among all);
//! - `unicast/{out,in}-burst32/{...}`: the same, 32 frames in a row for each
//!   remote and MAC, as one receive batch from one peer brings them;
//! - `flood/plain/{2,10,100,1000}` and `flood/keyed/{...}`: a broadcast from
//!   the local end to every remote, plain or all under one key, each as late
//!   as storm control lets it be sent.
//!
//! The 10 % target is unicast with 1000 remotes against unicast with 2.
//! With every frame to another of 16 000 MACs, the lookups leave the CPU's
//! nearest caches (a MAC table of 16 384 entries is megabytes): that is the
//! price of the MACs, not of the remotes, which `4r16000m` against
//! `1000r16000m` separates, and the burst variants show.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use rrqnet::config::parse_remote;
use rrqnet::crypto::{Kind, MasterKey, Transport, HEADER_LEN, OVERHEAD};
use rrqnet::node::{Node, Now, Setup};
use rrqnet::plan::SendReport;
use rrqnet::switch::Params;

const UDP: usize = 0;
const LOCAL: usize = 1;
const T0: u64 = 1_800_000_000;
const MACS_PER_REMOTE: usize = 16;
const LEN: usize = 1000;

fn key() -> MasterKey {
    MasterKey::from_bytes(&[5; 64]).expect("a key")
}

/// A server: a downlink mask over the loopback for up to 2000 remotes
/// (`127.0.0.0/8 -r 2000`), plain or keyed, a local end.
fn server(keyed: bool, now: Now) -> Node {
    let mut decl = parse_remote("127.0.0.0/8", false).expect("a declaration");
    decl.max_remotes = Some(2000);
    let setup = Setup {
        remotes: vec![(decl, keyed.then_some(0))],
        keys: if keyed { vec![key()] } else { Vec::new() },
        channels: 2,
        local: Some(LOCAL),
        udp: Some(UDP),
        multicast: None,
        switch: Params::default(),
        batch: 32,
    };
    Node::new(setup, now).expect("a node")
}

/// Remote `i`'s source address, in a /24 of its own.
fn source(i: usize) -> SocketAddr {
    SocketAddr::from(([127, 1 + (i / 256) as u8, (i % 256) as u8, 1], 20_000 + i as u16))
}

/// The pace of new remotes the admission limit allows a declaration (50 a
/// second).
const ADMISSION_PACE: Duration = Duration::from_millis(20);

/// `now`, `d` later.
fn later(now: Now, d: Duration) -> Now {
    Now { mono: now.mono + d, unix: now.unix + d.as_secs() }
}

/// What a flood from the local end may send a second (the guard's limit
/// per ingress port, one for each port a flood goes out of).
const FLOOD_BUDGET: u32 = 20_000;

/// MAC `m` of remote `i`.
fn mac(i: usize, m: usize) -> [u8; 6] {
    [2, 1, (i >> 8) as u8, i as u8, (m >> 8) as u8, m as u8]
}

const HOST: [u8; 6] = [2, 0, 0, 0, 0, 1];

fn frame(dst: [u8; 6], src: [u8; 6]) -> Vec<u8> {
    rrqnet::testing::frame_with(dst, src, LEN, |i| i as u8)
}

/// Empties the plan into a channel that takes everything and sends nothing.
fn drain(n: &mut Node, now: Now) {
    let _ = n.flush_with(now, |_, _, b| Ok::<_, ()>(SendReport { sent: b.len(), failed: 0, too_large: 0 }));
}

/// Brings up `remotes` downlinks, each by a first frame per MAC behind it
/// (`macs` of them) or, with none, by a heartbeat; sealed by `peer` (the
/// remotes' side of the key) on a keyed node. Then the local host's MAC.
/// The remotes come [`ADMISSION_PACE`] apart from `start`; returns the
/// instant the last came in.
fn populate(n: &mut Node, remotes: usize, macs: usize, mut peer: Option<&mut Transport>, start: Now) -> Now {
    let mut now = start;
    let keyed = peer.is_some();
    let mut send = |n: &mut Node, now: Now, i: usize, payload: &[u8]| {
        let mut d = match peer.as_deref_mut() {
            Some(tx) => {
                let mut d = vec![0u8; OVERHEAD + payload.len()];
                d[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
                let kind = if payload.is_empty() { Kind::Heartbeat } else { Kind::Data };
                tx.seal_in_place(&mut d, HEADER_LEN, payload.len(), kind, now.unix).expect("sealed");
                d
            }
            None => payload.to_vec(),
        };
        let len = d.len();
        n.handle_input(now, UDP, Some(source(i)), &mut d, 0..len);
    };
    for i in 0..remotes {
        now = later(start, ADMISSION_PACE * i as u32);
        if macs == 0 {
            send(n, now, i, if keyed { &[] } else { &[0] });
        }
        for m in 0..macs {
            send(n, now, i, &frame(HOST, mac(i, m)));
        }
        drain(n, now);
    }
    let mut f = frame([0xff; 6], HOST);
    let len = f.len();
    n.handle_input(now, LOCAL, None, &mut f, 0..len);
    drain(n, now);
    now
}

fn memory(start: Now) {
    let mut n = server(false, start);
    // Warm the plan and the first remote, so what follows is per remote.
    let mut now = populate(&mut n, 1, 0, None, start);
    let remotes = allocation_counter::measure(|| {
        for i in 1..1001 {
            now = later(now, ADMISSION_PACE);
            let mut hb = [0u8; 1];
            n.handle_input(now, UDP, Some(source(i)), &mut hb, 0..1);
            drain(&mut n, now);
        }
    });
    assert_eq!(n.switch().port_count(), 1 + 1001, "the local end and 1001 remotes");
    let macs = allocation_counter::measure(|| {
        populate(&mut n, 1000, MACS_PER_REMOTE, None, now);
    });
    assert_eq!(n.switch().mac_count(), 1000 * MACS_PER_REMOTE + 1);
    let table = allocation_counter::measure(|| {
        let _ = black_box(server(false, start));
    });
    println!(
        "memory: {:.0} bytes per remote (1000 remotes: {} bytes held), {:.1} bytes per MAC learned after start \
         (16 000 MACs: {} bytes held); a new node allocates {} bytes up front (its MAC table for {} addresses \
         among them)",
        remotes.bytes_current as f64 / 1000.0,
        remotes.bytes_current,
        macs.bytes_current as f64 / 16_000.0,
        macs.bytes_current,
        table.bytes_max,
        n.switch().mac_capacity(),
    );
    for keyed in [false, true] {
        let mut n = server(keyed, start);
        let mut peer = Transport::new(&key(), T0).expect("a peer");
        let now = populate(&mut n, 1000, 0, keyed.then_some(&mut peer), start);
        assert_eq!(n.switch().port_count(), 1001);
        let mut f = frame([0xff; 6], HOST);
        n.handle_input(now, LOCAL, None, &mut f, 0..LEN);
        println!(
            "flood to 1000 remotes, {}: {} datagrams planned, {} bytes of arena (one copy of the {LEN}-byte frame{})",
            if keyed { "one key" } else { "plain" },
            n.plan().len(),
            n.plan().arena().len(),
            if keyed { ", sealed once" } else { "" }
        );
        drain(&mut n, now);
    }
}

fn bench(c: &mut Criterion, start: Now) {
    let mut g = c.benchmark_group("unicast");
    g.throughput(Throughput::Elements(1));
    // Two remotes with two MACs each (everything in the CPU's nearest
    // cache), four remotes with 4000 each (the 16 000 MACs of the
    // 1000-remote case behind 4, each within the port security limit of
    // 4096), and 1000 remotes with 16 each: the second against the third is
    // the number of remotes alone, the first against the second the MACs.
    for (remotes, macs) in [(2, 2), (4, 4000), (1000, MACS_PER_REMOTE)] {
        let label = format!("{remotes}r{}m", remotes * macs);
        let mut n = server(false, start);
        let now = populate(&mut n, remotes, macs, None, start);
        // One frame, its destination (or source) rewritten in place: the
        // cost of the table, not of copying frames from cold memory.
        let pairs: Vec<(SocketAddr, [u8; 6])> =
            (0..remotes).flat_map(|i| (0..macs).map(move |m| (source(i), mac(i, m)))).collect();
        let mut buf = frame(HOST, HOST);
        // `burst` frames in a row for one pair before the next: 1 is the
        // worst case (every frame another remote and MAC, all over memory),
        // 32 what one receive batch from one peer brings.
        for burst in [1usize, 32] {
            let mut k = 0;
            let name = |dir: &str| if burst == 1 { dir.to_owned() } else { format!("{dir}-burst{burst}") };
            g.bench_with_input(BenchmarkId::new(name("out"), &label), &remotes, |b, _| {
                b.iter(|| {
                    let (_, dst) = &pairs[(k / burst) % pairs.len()];
                    k += 1;
                    buf[..6].copy_from_slice(dst);
                    buf[6..12].copy_from_slice(&HOST);
                    n.handle_input(now, LOCAL, None, black_box(&mut buf), 0..LEN);
                    drain(&mut n, now);
                })
            });
            g.bench_with_input(BenchmarkId::new(name("in"), &label), &remotes, |b, _| {
                b.iter(|| {
                    let (from, src) = &pairs[(k / burst) % pairs.len()];
                    k += 1;
                    buf[..6].copy_from_slice(&HOST);
                    buf[6..12].copy_from_slice(src);
                    n.handle_input(now, UDP, Some(*from), black_box(&mut buf), 0..LEN);
                    drain(&mut n, now);
                })
            });
        }
    }
    g.finish();
    let mut g = c.benchmark_group("flood");
    for keyed in [false, true] {
        for remotes in [2usize, 10, 100, 1000] {
            let mut n = server(keyed, start);
            let mut peer = Transport::new(&key(), T0).expect("a peer");
            let now = populate(&mut n, remotes, 0, keyed.then_some(&mut peer), start);
            assert_eq!(n.switch().port_count(), remotes + 1);
            let f = frame([0xff; 6], HOST);
            let mut buf = f.clone();
            g.throughput(Throughput::Elements(remotes as u64));
            let name = if keyed { "keyed" } else { "plain" };
            // Each flood comes as late as storm control wants it (a flood to
            // 1000 remotes spends 1000 of the 20 000 a second), so every one
            // is sent, not dropped. Only the monotonic clock moves: the keyed
            // session stays what it is.
            let pace = Duration::from_secs(1) * remotes as u32 / FLOOD_BUDGET;
            let mut t = now;
            g.bench_with_input(BenchmarkId::new(name, remotes), &remotes, |b, _| {
                b.iter(|| {
                    t.mono += pace;
                    buf.copy_from_slice(&f);
                    n.handle_input(t, LOCAL, None, black_box(&mut buf), 0..LEN);
                    drain(&mut n, t);
                })
            });
            assert_eq!(n.switch().stats().dropped(rrqnet::switch::DropReason::StormBroadcast), 0, "floods dropped");
        }
    }
    g.finish();
}

fn main() {
    // Each node starts at this instant and is measured at the one its last
    // remote came in: nothing here ages out, and the node's timers are not
    // what is measured.
    let now = Now { mono: Instant::now(), unix: T0 };
    memory(now);
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    bench(&mut c, now);
    c.final_summary();
}
