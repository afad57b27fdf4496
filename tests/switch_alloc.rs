//! The hot-path claim, measured: once warmed up, [`Switch::handle_frame`]
//! allocates nothing, on the learning, unicast, flood and drop paths alike,
//! and neither does the table's churn of ageing out and learning anew.
//!
//! The counting global allocator comes from the `allocation-counter` dev
//! dependency, which counts per thread, so tests running in parallel do not
//! disturb each other.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use allocation_counter::measure;
use rrqnet::mac::MacAddr;
use rrqnet::switch::{timing, DropReason, Forward, Params, PortId, Switch};

fn frame(dst: MacAddr, src: MacAddr) -> [u8; 60] {
    rrqnet::testing::frame_array(dst.0, src.0)
}

fn host(n: u32) -> MacAddr {
    let b = n.to_be_bytes();
    MacAddr([0x02, 0, b[0], b[1], b[2], b[3]])
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20000 + n))
}

/// What a forwarding decision was, without the borrow.
fn kind(f: Forward<'_>) -> &'static str {
    match f {
        Forward::Drop(_) => "drop",
        Forward::Unicast(_) => "unicast",
        Forward::Flood(_) => "flood",
    }
}

#[test]
fn handle_frame_allocates_nothing_in_steady_state() {
    let base = Instant::now();
    let mut sw = Switch::new(Params::default());
    let local = sw.add_local(base);
    let up1 = sw.add_uplink(base, addr(1), 0).unwrap();
    let up2 = sw.add_uplink(base, addr(2), 1).unwrap();
    let mut downs: Vec<PortId> = (10..20).map(|n| sw.remote_rx(base, addr(n), 2).unwrap()).collect();
    downs.push(up1);
    downs.push(up2);
    while sw.poll_heartbeat(base).is_some() {}
    while sw.poll_event().is_some() {}

    // The first frames: the room for floods and for the table was made when
    // the switch and its ports were, so even these allocate nothing.
    let local_host = host(1);
    let t = base + Duration::from_millis(1);
    let first = measure(|| {
        assert_eq!(kind(sw.handle_frame(t, local, &frame(MacAddr::BROADCAST, local_host))), "flood");
        for (i, p) in downs.iter().enumerate() {
            let f = frame(local_host, host(100 + i as u32));
            assert_eq!(kind(sw.handle_frame(t, *p, &f)), "unicast");
        }
        sw.handle_timeout(t);
    });
    assert_eq!(first.count_total, 0, "the first frames allocated: {first:?}");

    let frames_before = sw.stats().frames_in;
    let mut next_new = 1_000u32;
    let info = measure(|| {
        for i in 0..10_000u32 {
            let now = t + Duration::from_millis(i as u64);
            let p = downs[(i as usize) % downs.len()];
            let remote_host = host(100 + (i % downs.len() as u32));
            let got = match i % 8 {
                // Learning a new address.
                0 => {
                    next_new += 1;
                    kind(sw.handle_frame(now, p, &frame(local_host, host(next_new))))
                }
                // Unicast both ways.
                1 => kind(sw.handle_frame(now, p, &frame(local_host, remote_host))),
                2 => kind(sw.handle_frame(now, local, &frame(remote_host, local_host))),
                // Broadcast, multicast, unknown unicast.
                3 => kind(sw.handle_frame(now, local, &frame(MacAddr::BROADCAST, local_host))),
                4 => kind(sw.handle_frame(now, p, &frame(MacAddr([1, 0, 0x5e, 0, 0, 1]), remote_host))),
                5 => kind(sw.handle_frame(now, p, &frame(host(0xdead_0000), remote_host))),
                // Drops: sticky elsewhere, runt.
                6 => kind(sw.handle_frame(now, p, &frame(remote_host, local_host))),
                _ => kind(sw.handle_frame(now, local, &[0u8; 10])),
            };
            let want = ["unicast", "unicast", "unicast", "flood", "flood", "flood", "drop", "drop"][i as usize % 8];
            assert_eq!(got, want, "frame {i}");
            // The rest of a loop turn, on existing remotes.
            let _ = sw.remote_rx(now, addr(10), 2);
            let _ = sw.poll_heartbeat(now);
            let _ = sw.poll_timeout();
        }
    });
    assert_eq!(sw.stats().frames_in - frames_before, 10_000);
    assert!(sw.stats().dropped(DropReason::Sticky) >= 1250);
    assert_eq!(info.count_total, 0, "handle_frame allocated: {info:?}");
}

/// Near-full tables that keep ageing out and learning anew leave deleted
/// slots behind in the hash map; the table must be sized so that reclaiming
/// them never grows it, however long this goes on. (4096 has the same
/// ratio of entries to hash buckets as the default 16384, and was the size
/// that made the map grow before it was given double room.)
#[test]
fn table_churn_at_capacity_allocates_nothing() {
    for cap in [8usize, 64, 1000, 4096] {
        let base = Instant::now();
        let mut sw = Switch::new(Params { mac_capacity: cap, ..Params::default() });
        let local = sw.add_local(base);
        let up = sw.add_uplink(base, addr(1), 0).unwrap();
        let mut now = base;
        let mut next = 0u32;
        // Warm-up: fill the table once.
        for _ in 0..cap {
            next += 1;
            sw.handle_frame(now, up, &frame(MacAddr::BROADCAST, host(next)));
        }
        assert_eq!(sw.mac_count(), cap);
        let info = measure(|| {
            for round in 0..40 {
                // Half the addresses stay alive, the other half ages out and
                // is replaced by new ones.
                let keep_from = next - cap as u32 / 2;
                for _ in 0..12 {
                    now += timing::SWEEP_INTERVAL;
                    for m in keep_from..=next {
                        sw.handle_frame(now, up, &frame(MacAddr::BROADCAST, host(m)));
                    }
                    sw.handle_timeout(now);
                }
                while sw.mac_count() < cap {
                    next += 1;
                    let f = sw.handle_frame(now, local, &frame(MacAddr::BROADCAST, host(next)));
                    assert!(matches!(f, Forward::Flood(_)), "round {round}");
                }
                assert_eq!(sw.stats().table_full, 0);
            }
        });
        assert_eq!(info.count_total, 0, "capacity {cap}: {info:?}");
    }
}

/// A full table refusing, holding and dropping new addresses allocates
/// nothing either.
#[test]
fn a_full_table_allocates_nothing() {
    let base = Instant::now();
    let mut sw = Switch::new(Params { mac_capacity: 16, ..Params::default() });
    let local = sw.add_local(base);
    let up = sw.add_uplink(base, addr(1), 0).unwrap();
    for n in 0..16 {
        sw.handle_frame(base, local, &frame(MacAddr::BROADCAST, host(n)));
    }
    let info = measure(|| {
        for n in 0..10_000u32 {
            let now = base + Duration::from_millis(n as u64);
            let f = frame(MacAddr::BROADCAST, host(1_000_000 + n));
            let _ = kind(sw.handle_frame(now, up, &f));
            let _ = kind(sw.handle_frame(now, local, &f));
        }
    });
    let s = sw.stats();
    // Each address is held on the uplink, or refused on both ports.
    assert_eq!(s.table_full + s.dropped(DropReason::Sticky), 20_000);
    assert!(s.dropped(DropReason::Sticky) > 0 && s.dropped(DropReason::NoLoopHold) > 0, "{s:?}");
    assert_eq!(info.count_total, 0, "{info:?}");
}
