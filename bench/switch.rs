//! Micro-benchmark of the switch core alone: frames per second through
//! `Switch::handle_frame` for the three paths that matter (a learned
//! unicast, a flood to every port, and learning new addresses), with
//! criterion. Run: `cargo bench --bench switch`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use rrqnet::switch::{Forward, Params, PortId, Switch};

fn frame(dst: [u8; 6], src: [u8; 6]) -> [u8; 64] {
    rrqnet::testing::frame_array(dst, src)
}

/// A switch with a local port and `remotes` downlink peers.
fn switch_with(remotes: u16, now: Instant) -> (Switch, PortId, Vec<PortId>) {
    let mut sw = Switch::new(Params { ignore: vec![vec![]], ..Params::default() });
    let local = sw.add_local(now);
    let ports = (0..remotes)
        .map(|i| {
            let addr = SocketAddr::from(([198, 51, 100, (i % 250) as u8 + 1], 2000 + i));
            sw.remote_rx(now, addr, 0).unwrap()
        })
        .collect();
    (sw, local, ports)
}

fn outcome(f: Forward<'_>) -> usize {
    match f {
        Forward::Drop(_) => 0,
        Forward::Unicast(_) => 1,
        Forward::Flood(t) => t.len(),
    }
}

fn bench(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut g = c.benchmark_group("handle_frame");

    // A conversation between the local host and a host behind remote 0.
    let (mut sw, local, ports) = switch_with(8, t0);
    let (a, b) = ([2, 0, 0, 0, 0, 1], [2, 0, 0, 0, 0, 2]);
    outcome(sw.handle_frame(t0, ports[0], &frame([0xff; 6], b)));
    outcome(sw.handle_frame(t0, local, &frame(b, a)));
    let out = frame(b, a);
    let back = frame(a, b);
    let mut now = t0;
    // Two frames an iteration: one each way.
    g.throughput(Throughput::Elements(2));
    g.bench_function("unicast (learned both ways)", |bench| {
        bench.iter(|| {
            now += Duration::from_nanos(100);
            black_box(outcome(sw.handle_frame(now, local, black_box(&out))));
            black_box(outcome(sw.handle_frame(now, ports[0], black_box(&back))))
        })
    });

    g.throughput(Throughput::Elements(1));

    // Broadcasts from the local host to 8 and to 64 remotes.
    for n in [8u16, 64] {
        let (mut sw, local, _) = switch_with(n, t0);
        let f = frame([0xff; 6], a);
        let mut now = t0;
        g.bench_function(format!("flood to {n} remotes"), |bench| {
            bench.iter(|| {
                now += Duration::from_nanos(100);
                black_box(outcome(sw.handle_frame(now, local, black_box(&f))))
            })
        });
    }

    // A new source address every frame, 100 ms apart, so the table (aged
    // every 4096 frames) keeps learning rather than filling up.
    let (mut sw, local, _) = switch_with(8, t0);
    let mut i = 0u32;
    let mut now = t0;
    g.bench_function("learning a new source", |bench| {
        bench.iter(|| {
            i = i.wrapping_add(1);
            now += Duration::from_millis(100);
            let s = i.to_be_bytes();
            let f = frame([0xff; 6], [2, 0, s[0], s[1], s[2], s[3]]);
            if i % 4096 == 0 {
                sw.handle_timeout(now);
            }
            black_box(outcome(sw.handle_frame(now, local, black_box(&f))))
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2));
    targets = bench
}
criterion_main!(benches);
