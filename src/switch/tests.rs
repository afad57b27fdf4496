//! The switch's rules, each at its edges, on a virtual clock: every instant is
//! a fixed origin plus a `Duration`, and nothing here sleeps.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use super::table::{Learn, MacTable};
use super::*;

use crate::testing::Clock;

fn mac(n: u8) -> MacAddr {
    MacAddr([0x02, 0, 0, 0, 0, n])
}

const MCAST: MacAddr = MacAddr([0x01, 0x00, 0x5e, 0x00, 0x00, 0x01]);
const IPV6_MCAST: MacAddr = MacAddr([0x33, 0x33, 0x00, 0x00, 0x00, 0x01]);

fn frame(dst: MacAddr, src: MacAddr) -> [u8; 60] {
    crate::testing::frame_array(dst.0, src.0)
}

fn addr(n: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 20000 + n))
}

/// A forwarding decision without the borrow of the switch.
#[derive(Debug, PartialEq, Eq)]
enum Out {
    Drop(DropReason),
    To(PortId),
    Flood(Vec<PortId>),
}

fn send(sw: &mut Switch, now: Instant, ingress: PortId, dst: MacAddr, src: MacAddr) -> Out {
    send_bytes(sw, now, ingress, &frame(dst, src))
}

fn send_bytes(sw: &mut Switch, now: Instant, ingress: PortId, bytes: &[u8]) -> Out {
    match sw.handle_frame(now, ingress, bytes) {
        Forward::Drop(r) => Out::Drop(r),
        Forward::Unicast(t) => Out::To(t.port),
        Forward::Flood(ts) => {
            assert!(!ts.is_empty(), "a flood is never empty");
            Out::Flood(ts.iter().map(|t| t.port).collect())
        }
    }
}

/// Calls `handle_timeout` at every instant `poll_timeout` asks for up to
/// `until`, then at `until`: what the daemon's loop does.
fn run_until(sw: &mut Switch, until: Instant) {
    while let Some(t) = sw.poll_timeout() {
        if t > until {
            break;
        }
        sw.handle_timeout(t);
        while sw.poll_heartbeat(t).is_some() {}
        if sw.poll_timeout() == Some(t) {
            break;
        }
    }
    sw.handle_timeout(until);
}

fn events(sw: &mut Switch) -> Vec<Event> {
    std::iter::from_fn(|| sw.poll_event()).collect()
}

/// A switch with a local end and two uplinks (declarations 0 and 1).
fn three_ports(c: &Clock, params: Params) -> (Switch, PortId, PortId, PortId) {
    let mut sw = Switch::new(params);
    let l = sw.add_local(c.0);
    let u1 = sw.add_uplink(c.0, addr(1), 0).unwrap();
    let u2 = sw.add_uplink(c.0, addr(2), 1).unwrap();
    (sw, l, u1, u2)
}

#[test]
fn learns_and_unicasts_to_the_known_port() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let (a, b) = (mac(0xa), mac(0xb));
    // b is unknown: flooded; a is learned on u1.
    assert_eq!(send(&mut sw, c.ms(1), u1, b, a), Out::Flood(vec![l, u2]));
    assert_eq!(sw.port_of(&a, c.ms(1)), Some(u1));
    assert_eq!(sw.mac_count(), 1);
    // The reply goes to u1 only, and b is learned on the local end.
    assert_eq!(send(&mut sw, c.ms(2), l, a, b), Out::To(u1));
    assert_eq!(sw.port_of(&b, c.ms(2)), Some(l));
    // And now both ways are unicast.
    assert_eq!(send(&mut sw, c.ms(3), u1, b, a), Out::To(l));
    let s = sw.stats();
    assert_eq!((s.frames_in, s.unicast, s.flooded, s.moved, s.table_full), (3, 2, 1, 0, 0));
    assert_eq!(s.drops.iter().sum::<u64>(), 0);
}

#[test]
fn unicast_target_carries_dest_and_decl() {
    let c = Clock::new();
    let (mut sw, l, u1, _u2) = three_ports(&c, Params::default());
    send(&mut sw, c.ms(1), u1, MacAddr::BROADCAST, mac(0xa));
    match sw.handle_frame(c.ms(2), l, &frame(mac(0xa), mac(0xb))) {
        Forward::Unicast(t) => assert_eq!(t, Target { port: u1, dest: Dest::Remote(addr(1)), decl: Some(0) }),
        other => panic!("expected unicast, got {other:?}"),
    }
    match sw.handle_frame(c.ms(3), u1, &frame(mac(0xb), mac(0xa))) {
        Forward::Unicast(t) => assert_eq!(t, Target { port: l, dest: Dest::Local, decl: None }),
        other => panic!("expected unicast, got {other:?}"),
    }
}

#[test]
fn floods_broadcast_multicast_and_unknown_unicast_to_every_live_port_but_ingress() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let d = sw.remote_rx(c.0, addr(3), 2).unwrap();
    let m = sw.add_multicast(c.0, 3).unwrap();
    let all = [l, u1, u2, d, m];
    assert_eq!(sw.port_count(), 5);
    let mut t = 0;
    for (i, &ingress) in all.iter().enumerate() {
        let src = mac(0x10 + i as u8);
        let others: Vec<PortId> = all.iter().copied().filter(|&p| p != ingress).collect();
        for dst in [MacAddr::BROADCAST, MCAST, IPV6_MCAST, mac(0xee)] {
            t += 1;
            assert_eq!(send(&mut sw, c.ms(t), ingress, dst, src), Out::Flood(others.clone()), "{dst} from {ingress:?}");
        }
    }
    assert_eq!(sw.stats().flooded, 20);
    // The flood list is the live ports in port order: what `targets` lists.
    let listed: Vec<PortId> = sw.targets().map(|t| t.port).collect();
    assert_eq!(listed, all);
}

#[test]
fn never_sends_back_out_of_the_ingress_port() {
    let c = Clock::new();
    let (mut sw, l, u1, _u2) = three_ports(&c, Params::default());
    let (a, b) = (mac(0xa), mac(0xb));
    send(&mut sw, c.ms(1), u1, MacAddr::BROADCAST, a);
    send(&mut sw, c.ms(2), u1, MacAddr::BROADCAST, b);
    // a and b both live behind u1: a frame between them is not ours to send.
    assert_eq!(send(&mut sw, c.ms(3), u1, b, a), Out::Drop(DropReason::Hairpin));
    assert_eq!(sw.stats().dropped(DropReason::Hairpin), 1);
    // Nor is a frame a host sends to itself.
    assert_eq!(send(&mut sw, c.ms(4), l, mac(0xc), mac(0xc)), Out::Drop(DropReason::Hairpin));
    assert_eq!(sw.stats().dropped(DropReason::Hairpin), 2);
}

#[test]
fn a_flood_with_nowhere_to_go_is_dropped() {
    let c = Clock::new();
    let mut sw = Switch::new(Params::default());
    let l = sw.add_local(c.0);
    assert_eq!(send(&mut sw, c.ms(1), l, MacAddr::BROADCAST, mac(1)), Out::Drop(DropReason::NoTarget));
    // A port that does not exist (any more) is no ingress.
    assert_eq!(send(&mut sw, c.ms(2), PortId(7), MacAddr::BROADCAST, mac(2)), Out::Drop(DropReason::NoTarget));
    assert_eq!(sw.stats().dropped(DropReason::NoTarget), 2);
    assert_eq!(sw.stats().flooded, 0);
    assert_eq!(sw.port_of(&mac(2), c.ms(2)), None);
}

#[test]
fn a_binding_made_by_a_broadcast_holds_six_seconds() {
    for dst in [MacAddr::BROADCAST, MCAST] {
        let c = Clock::new();
        let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
        let a = mac(0xa);
        assert_eq!(send(&mut sw, c.0, u1, dst, a), Out::Flood(vec![l, u2]));
        // From another port inside the hold: dropped, not learned, and the
        // binding is not extended by the attempt.
        assert_eq!(send(&mut sw, c.ms(5_900), u2, dst, a), Out::Drop(DropReason::Sticky));
        assert_eq!(send(&mut sw, c.ms(5_900), l, mac(0xb), a), Out::Drop(DropReason::Sticky));
        assert_eq!(sw.port_of(&a, c.ms(5_900)), Some(u1));
        assert_eq!(sw.stats().dropped(DropReason::Sticky), 2);
        // After it: accepted, and the address moves.
        assert_eq!(send(&mut sw, c.ms(6_100), u2, dst, a), Out::Flood(vec![l, u1]));
        assert_eq!(sw.port_of(&a, c.ms(6_100)), Some(u2));
        assert_eq!(sw.stats().moved, 1);
        assert_eq!(sw.stats().dropped(DropReason::Sticky), 2);
        // The new binding holds on its own port in turn.
        assert_eq!(send(&mut sw, c.ms(12_000), u1, dst, a), Out::Drop(DropReason::Sticky));
        assert_eq!(send(&mut sw, c.ms(12_200), u1, dst, a), Out::Flood(vec![l, u2]));
    }
}

#[test]
fn a_binding_made_by_a_unicast_holds_twenty_seconds() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let (a, b) = (mac(0xa), mac(0xb));
    // Unknown unicast: flooded, and a is held on u1 for 20 s.
    assert_eq!(send(&mut sw, c.0, u1, b, a), Out::Flood(vec![l, u2]));
    assert_eq!(send(&mut sw, c.ms(19_900), u2, b, a), Out::Drop(DropReason::Sticky));
    assert_eq!(send(&mut sw, c.ms(19_900), u2, MacAddr::BROADCAST, a), Out::Drop(DropReason::Sticky));
    assert_eq!(sw.port_of(&a, c.ms(19_900)), Some(u1));
    assert_eq!(send(&mut sw, c.ms(20_100), u2, b, a), Out::Flood(vec![l, u1]));
    assert_eq!(sw.port_of(&a, c.ms(20_100)), Some(u2));
    assert_eq!(sw.stats().moved, 1);
}

#[test]
fn traffic_on_the_bound_port_extends_the_hold() {
    let c = Clock::new();
    let (mut sw, _l, u1, u2) = three_ports(&c, Params::default());
    let a = mac(0xa);
    send(&mut sw, c.0, u1, MacAddr::BROADCAST, a);
    send(&mut sw, c.s(5), u1, MacAddr::BROADCAST, a);
    // Held until 11 s now, not 6 s.
    assert_eq!(send(&mut sw, c.ms(10_900), u2, MacAddr::BROADCAST, a), Out::Drop(DropReason::Sticky));
    assert!(matches!(send(&mut sw, c.ms(11_100), u2, MacAddr::BROADCAST, a), Out::Flood(_)));
    // A broadcast never shortens a longer unicast hold.
    let b = mac(0xb);
    send(&mut sw, c.s(100), u1, mac(0xee), b);
    send(&mut sw, c.s(101), u1, MacAddr::BROADCAST, b);
    assert_eq!(send(&mut sw, c.ms(119_900), u2, MacAddr::BROADCAST, b), Out::Drop(DropReason::Sticky));
    assert!(matches!(send(&mut sw, c.ms(120_100), u2, MacAddr::BROADCAST, b), Out::Flood(_)));
}

#[test]
fn group_and_zero_sources_are_dropped_and_never_learned() {
    let c = Clock::new();
    let (mut sw, l, u1, _u2) = three_ports(&c, Params::default());
    let bad = [MacAddr::BROADCAST, MCAST, IPV6_MCAST, MacAddr::ZERO, MacAddr([0x03, 0, 0, 0, 0, 1])];
    for (i, src) in bad.iter().enumerate() {
        for ingress in [l, u1] {
            assert_eq!(
                send(&mut sw, c.ms(i as u64), ingress, MacAddr::BROADCAST, *src),
                Out::Drop(DropReason::InvalidSource),
                "{src}"
            );
            assert_eq!(send(&mut sw, c.ms(i as u64), ingress, mac(1), *src), Out::Drop(DropReason::InvalidSource));
        }
    }
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(sw.stats().dropped(DropReason::InvalidSource), 20);
    assert_eq!(sw.stats().frames_in, 20);
    assert_eq!((sw.stats().flooded, sw.stats().unicast), (0, 0));
}

#[test]
fn runts_are_dropped() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let full = frame(MacAddr::BROADCAST, mac(1));
    for len in 0..14 {
        assert_eq!(send_bytes(&mut sw, c.0, l, &full[..len]), Out::Drop(DropReason::Runt), "{len} bytes");
    }
    assert_eq!(sw.stats().dropped(DropReason::Runt), 14);
    assert_eq!(sw.mac_count(), 0);
    // A bare header is a frame.
    assert_eq!(send_bytes(&mut sw, c.0, l, &full[..14]), Out::Flood(vec![u1, u2]));
}

#[test]
fn ignored_macs_are_dropped_on_ingress() {
    let c = Clock::new();
    let x = mac(0x99);
    let params = Params { ignore: vec![vec![mac(0x98), x], vec![]], ..Params::default() };
    let (mut sw, l, u1, u2) = three_ports(&c, params);
    let d = sw.remote_rx(c.0, addr(3), 0).unwrap();
    // From a remote of declaration 0, with x as source or destination.
    for ingress in [u1, d] {
        assert_eq!(send(&mut sw, c.ms(1), ingress, MacAddr::BROADCAST, x), Out::Drop(DropReason::Ignored));
        assert_eq!(send(&mut sw, c.ms(1), ingress, x, mac(0xa)), Out::Drop(DropReason::Ignored));
    }
    assert_eq!(sw.stats().dropped(DropReason::Ignored), 4);
    // Nothing was learned from those frames.
    assert_eq!(sw.mac_count(), 0);
    // Declaration 1 and the local end have no such list (and d, of
    // declaration 0, gets no copy).
    assert_eq!(send(&mut sw, c.ms(2), u2, MacAddr::BROADCAST, x), Out::Flood(vec![l]));
    assert_eq!(sw.port_of(&x, c.ms(2)), Some(u2));
}

#[test]
fn ignored_macs_are_not_sent_to_the_remotes_that_ignore_them() {
    let c = Clock::new();
    let (x, z, y, a) = (mac(0x99), mac(0x98), mac(0x55), mac(0xa));
    let params = Params { ignore: vec![vec![x, z]], ..Params::default() };
    let (mut sw, l, u1, u2) = three_ports(&c, params);
    let d = sw.remote_rx(c.0, addr(3), 0).unwrap();
    let d1 = sw.remote_rx(c.0, addr(4), 1).unwrap();
    // Floods skip every port of declaration 0, for x as source...
    assert_eq!(send(&mut sw, c.ms(1), l, MacAddr::BROADCAST, x), Out::Flood(vec![u2, d1]));
    // ...and as an unknown destination.
    assert_eq!(send(&mut sw, c.ms(2), l, z, a), Out::Flood(vec![u2, d1]));
    // Other addresses still go everywhere.
    assert_eq!(send(&mut sw, c.ms(3), l, MacAddr::BROADCAST, a), Out::Flood(vec![u1, u2, d, d1]));
    // A known destination behind an ignoring port: dropped rather than sent.
    assert_eq!(send(&mut sw, c.ms(4), u1, MacAddr::BROADCAST, y), Out::Flood(vec![l, u2, d, d1]));
    assert_eq!(send(&mut sw, c.ms(5), l, y, x), Out::Drop(DropReason::Ignored));
    assert_eq!(sw.stats().dropped(DropReason::Ignored), 1);
    // But y is still reachable from anyone else.
    assert_eq!(send(&mut sw, c.ms(6), l, y, a), Out::To(u1));
}

#[test]
fn a_flood_that_every_port_ignores_is_no_flood() {
    let c = Clock::new();
    let x = mac(0x99);
    let mut sw = Switch::new(Params { ignore: vec![vec![x]], ..Params::default() });
    let l = sw.add_local(c.0);
    sw.add_uplink(c.0, addr(1), 0).unwrap();
    assert_eq!(send(&mut sw, c.ms(1), l, MacAddr::BROADCAST, x), Out::Drop(DropReason::NoTarget));
    assert_eq!(sw.stats().dropped(DropReason::NoTarget), 1);
    assert_eq!(sw.stats().flooded, 0);
}

#[test]
fn a_full_table_stops_learning_but_keeps_flooding_and_evicts_nothing() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params { mac_capacity: 4, ..Params::default() });
    for n in 1..=4 {
        assert_eq!(send(&mut sw, c.ms(n as u64), u1, MacAddr::BROADCAST, mac(n)), Out::Flood(vec![l, u2]));
    }
    assert_eq!(sw.mac_count(), 4);
    assert_eq!(sw.stats().table_full, 0);
    // A fifth address: still flooded, not learned, counted.
    let e = mac(0xe);
    assert_eq!(send(&mut sw, c.ms(10), u2, MacAddr::BROADCAST, e), Out::Flood(vec![l, u1]));
    assert_eq!(sw.stats().table_full, 1);
    assert_eq!(sw.port_of(&e, c.ms(10)), None);
    // Frames to it are flooded as unknown unicast.
    assert_eq!(send(&mut sw, c.ms(11), l, e, mac(1)), Out::Drop(DropReason::Sticky));
    assert_eq!(send(&mut sw, c.ms(12), u1, e, mac(1)), Out::Flood(vec![l, u2]));
    assert_eq!(sw.stats().table_full, 1);
    assert_eq!(send(&mut sw, c.ms(13), u2, MacAddr::BROADCAST, e), Out::Flood(vec![l, u1]));
    assert_eq!(sw.stats().table_full, 2);
    // Nothing live was evicted; known addresses still go by unicast, and
    // refreshing a known address needs no room.
    for n in 1..=4 {
        assert_eq!(sw.port_of(&mac(n), c.ms(14)), Some(u1));
        assert_eq!(send(&mut sw, c.ms(14), u2, mac(n), mac(0xf)), Out::To(u1));
    }
    assert_eq!(sw.mac_count(), 4);
    assert_eq!(sw.stats().table_full, 6);
}

#[test]
fn ageing_frees_entries_through_handle_timeout() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params { mac_capacity: 4, ..Params::default() });
    for n in 1..=3 {
        send(&mut sw, c.0, u1, MacAddr::BROADCAST, mac(n));
    }
    // mac(4) keeps talking, every minute.
    let mut t = 0;
    while t <= 300 {
        send(&mut sw, c.s(t), u2, MacAddr::BROADCAST, mac(4));
        t += 60;
    }
    assert_eq!(sw.mac_count(), 4);
    // Just before the ageing time nothing is forgotten.
    let age = timing::MAC_AGEING;
    run_until(&mut sw, c.0 + age - Duration::from_millis(1));
    assert_eq!(sw.mac_count(), 4);
    assert_eq!(sw.port_of(&mac(1), c.0 + age - Duration::from_millis(1)), Some(u1));
    // At the ageing time the silent ones are unknown at once...
    assert_eq!(sw.port_of(&mac(1), c.0 + age), None);
    assert_eq!(send(&mut sw, c.0 + age, l, mac(1), mac(4)), Out::Drop(DropReason::Sticky));
    assert_eq!(send(&mut sw, c.0 + age, u2, mac(1), mac(4)), Out::Flood(vec![l, u1]));
    // ...and gone from the table by the next sweep.
    run_until(&mut sw, c.0 + age + timing::SWEEP_INTERVAL);
    assert_eq!(sw.mac_count(), 1);
    assert_eq!(sw.port_of(&mac(4), c.0 + age + timing::SWEEP_INTERVAL), Some(u2));
    // The freed room is used again.
    let now = c.0 + age + timing::SWEEP_INTERVAL;
    for n in 5..=7 {
        send(&mut sw, now, u1, MacAddr::BROADCAST, mac(n));
    }
    assert_eq!(sw.mac_count(), 4);
    assert_eq!(sw.stats().table_full, 0);
    // Once everything is forgotten, sweeping stops.
    run_until(&mut sw, now + 2 * age);
    assert_eq!(sw.mac_count(), 0);
    // Only the uplinks' heartbeats are left to wake up for.
    let next = sw.poll_timeout().unwrap();
    assert!(next <= now + 2 * age + timing::HEARTBEAT_INTERVAL);
}

#[test]
fn silent_downlinks_go_stale_at_180_seconds() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let m = sw.add_multicast(c.0, 3).unwrap();
    let d = sw.remote_rx(c.0, addr(3), 2).unwrap();
    assert_eq!(events(&mut sw), vec![Event::RemoteUp(addr(3))]);
    let a = mac(0xa);
    assert_eq!(send(&mut sw, c.ms(1), d, MacAddr::BROADCAST, a), Out::Flood(vec![l, u1, u2, m]));
    sw.remote_rx(c.ms(1), addr(3), 2).unwrap();
    // The last datagram was at 1 ms: stale at 180.001 s.
    let stale_at = c.ms(1) + timing::DOWNLINK_STALE;
    assert_eq!(sw.poll_timeout().map(|t| t <= stale_at), Some(true));
    run_until(&mut sw, stale_at - Duration::from_millis(100));
    assert_eq!(sw.lookup(&addr(3)), Some((d, Some(2))));
    assert_eq!(sw.port_count(), 5);
    assert_eq!(events(&mut sw), vec![]);
    sw.handle_timeout(stale_at);
    assert_eq!(sw.lookup(&addr(3)), None);
    assert_eq!(sw.port_count(), 4);
    assert_eq!(events(&mut sw), vec![Event::RemoteStale(addr(3))]);
    // Its bindings went with it, and floods no longer include it.
    assert_eq!(sw.port_of(&a, stale_at), None);
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(send(&mut sw, stale_at, l, a, mac(0xb)), Out::Flood(vec![u1, u2, m]));
    assert_eq!(send(&mut sw, stale_at, l, MacAddr::BROADCAST, mac(0xb)), Out::Flood(vec![u1, u2, m]));
    // Uplinks and the multicast group, silent all along, are still there,
    // and stay there.
    run_until(&mut sw, c.s(10_000));
    let ports: Vec<PortId> = sw.targets().map(|t| t.port).collect();
    assert_eq!(ports, vec![l, u1, u2, m]);
    assert_eq!(events(&mut sw), vec![]);
    // The peer coming back is a new remote.
    let d2 = sw.remote_rx(c.s(10_001), addr(3), 2).unwrap();
    assert_eq!(events(&mut sw), vec![Event::RemoteUp(addr(3))]);
    assert_eq!(sw.lookup(&addr(3)), Some((d2, Some(2))));
}

#[test]
fn the_stale_edge_is_exactly_180_seconds() {
    let c = Clock::new();
    let mut sw = Switch::new(Params::default());
    sw.add_local(c.0);
    sw.remote_rx(c.0, addr(3), 0).unwrap();
    sw.handle_timeout(c.ms(179_900));
    assert!(sw.lookup(&addr(3)).is_some());
    sw.handle_timeout(c.s(180));
    assert!(sw.lookup(&addr(3)).is_none());
}

#[test]
fn heartbeats_keep_a_downlink_alive() {
    let c = Clock::new();
    let mut sw = Switch::new(Params::default());
    let l = sw.add_local(c.0);
    let d = sw.remote_rx(c.0, addr(3), 0).unwrap();
    // A heartbeat is remote_rx without a frame: every 30 s for 10 minutes.
    let mut t = 0;
    while t <= 600 {
        run_until(&mut sw, c.s(t));
        assert_eq!(sw.remote_rx(c.s(t), addr(3), 0), Ok(d));
        t += 30;
    }
    assert_eq!(sw.lookup(&addr(3)), Some((d, Some(0))));
    assert_eq!(sw.poll_timeout(), Some(c.s(600) + timing::DOWNLINK_STALE));
    // Frames alone do not count as traffic from the remote: only remote_rx
    // does (the daemon calls it for every datagram, frame or heartbeat).
    send(&mut sw, c.s(700), d, MacAddr::BROADCAST, mac(0xa));
    run_until(&mut sw, c.ms(779_900));
    assert!(sw.lookup(&addr(3)).is_some());
    run_until(&mut sw, c.s(780));
    assert!(sw.lookup(&addr(3)).is_none());
    assert_eq!(events(&mut sw), vec![Event::RemoteUp(addr(3)), Event::RemoteStale(addr(3))]);
    assert_eq!(sw.targets().map(|t| t.port).collect::<Vec<_>>(), vec![l]);
}

#[test]
fn a_freed_port_number_carries_no_old_bindings() {
    let c = Clock::new();
    let mut sw = Switch::new(Params::default());
    let l = sw.add_local(c.0);
    let d = sw.remote_rx(c.0, addr(3), 0).unwrap();
    send(&mut sw, c.0, d, MacAddr::BROADCAST, mac(0xa));
    sw.handle_timeout(c.s(180));
    let d2 = sw.remote_rx(c.s(181), addr(4), 0).unwrap();
    assert_eq!(d2, d, "the slot is reused");
    assert_eq!(sw.port_of(&mac(0xa), c.s(181)), None);
    assert_eq!(send(&mut sw, c.s(181), l, mac(0xa), mac(0xb)), Out::Flood(vec![d2]));
    // A fresh downlink on the reused slot is not stale on arrival.
    sw.handle_timeout(c.s(182));
    assert_eq!(sw.lookup(&addr(4)), Some((d2, Some(0))));
}

#[test]
fn uplinks_get_a_heartbeat_at_once_then_every_30_seconds() {
    let c = Clock::new();
    let (mut sw, _l, u1, u2) = three_ports(&c, Params::default());
    sw.add_multicast(c.0, 3).unwrap();
    sw.remote_rx(c.0, addr(3), 2).unwrap();
    let beats = |sw: &mut Switch, now: Instant| -> Vec<PortId> {
        std::iter::from_fn(|| sw.poll_heartbeat(now)).map(|t| t.port).collect()
    };
    // At start: every uplink, and only uplinks.
    assert_eq!(sw.poll_timeout(), Some(c.0));
    assert_eq!(beats(&mut sw, c.0), vec![u1, u2]);
    assert_eq!(beats(&mut sw, c.0), vec![]);
    assert_eq!(sw.poll_timeout(), Some(c.s(30)));
    assert_eq!(sw.poll_timeout().map(|t| t.saturating_duration_since(c.s(10))), Some(Duration::from_secs(20)));
    // Not before 30 s.
    assert_eq!(beats(&mut sw, c.ms(29_999)), vec![]);
    assert_eq!(beats(&mut sw, c.s(30)), vec![u1, u2]);
    assert_eq!(sw.poll_timeout(), Some(c.s(60)));
    // Inbound traffic does not move the schedule; a late poll moves it on.
    sw.remote_rx(c.s(45), addr(1), 0).unwrap();
    assert_eq!(beats(&mut sw, c.ms(59_999)), vec![]);
    assert_eq!(beats(&mut sw, c.s(75)), vec![u1, u2]);
    assert_eq!(sw.poll_timeout(), Some(c.s(105)));
    // The targets say where to send.
    let t = sw.poll_heartbeat(c.s(105)).unwrap();
    assert_eq!((t.port, t.dest, t.decl), (u1, Dest::Remote(addr(1)), Some(0)));
    // An uplink added later gets its first heartbeat at once.
    let u3 = sw.add_uplink(c.s(106), addr(5), 4).unwrap();
    assert_eq!(sw.poll_timeout(), Some(c.s(105)));
    assert_eq!(beats(&mut sw, c.s(106)), vec![u2, u3]);
    assert_eq!(sw.poll_timeout(), Some(c.s(135)));
}

#[test]
fn poll_timeout_covers_staleness_and_sweeps() {
    let c = Clock::new();
    let mut sw = Switch::new(Params::default());
    assert_eq!(sw.poll_timeout(), None);
    assert_eq!(sw.poll_timeout().map(|t| t.saturating_duration_since(c.0)), None);
    let l = sw.add_local(c.0);
    sw.add_multicast(c.0, 0).unwrap();
    assert_eq!(sw.poll_timeout(), None, "the local end and multicast need no timer");
    // A downlink: due when it would go stale.
    sw.remote_rx(c.s(10), addr(3), 0).unwrap();
    assert_eq!(sw.poll_timeout(), Some(c.s(190)));
    sw.remote_rx(c.s(50), addr(3), 0).unwrap();
    assert_eq!(sw.poll_timeout(), Some(c.s(230)));
    // A learned address: due at the first sweep.
    send(&mut sw, c.s(60), l, MacAddr::BROADCAST, mac(1));
    assert_eq!(sw.poll_timeout(), Some(c.s(90)));
    sw.handle_timeout(c.s(89));
    assert_eq!(sw.poll_timeout(), Some(c.s(90)));
    sw.handle_timeout(c.s(90));
    assert_eq!(sw.poll_timeout(), Some(c.s(120)));
    // The earliest of the two wins, whichever it is.
    run_until(&mut sw, c.s(229));
    assert_eq!(sw.poll_timeout(), Some(c.s(230)));
    sw.handle_timeout(c.s(230));
    assert_eq!(sw.lookup(&addr(3)), None);
    assert_eq!(sw.poll_timeout(), Some(c.s(240)));
    // Once the address has aged out and been swept, nothing is due.
    run_until(&mut sw, c.s(400));
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(sw.poll_timeout(), None);
}

#[test]
fn remote_rx_refuses_past_max_ports() {
    let c = Clock::new();
    let mut sw = Switch::new(Params { max_ports: 2, ..Params::default() });
    // The local end is not a remote: it always fits.
    sw.add_local(c.0);
    let u1 = sw.add_uplink(c.0, addr(1), 0).unwrap();
    let d1 = sw.remote_rx(c.0, addr(3), 1).unwrap();
    assert_eq!(sw.remote_rx(c.s(1), addr(4), 1), Err(DropReason::TooManyRemotes));
    assert_eq!(sw.stats().dropped(DropReason::TooManyRemotes), 1);
    assert_eq!(sw.add_uplink(c.s(1), addr(5), 0), None);
    assert_eq!(sw.add_multicast(c.s(1), 0), None);
    assert_eq!(sw.lookup(&addr(4)), None);
    assert_eq!(sw.port_count(), 3);
    assert_eq!(events(&mut sw), vec![Event::RemoteUp(addr(3))]);
    // Known remotes still get through.
    assert_eq!(sw.remote_rx(c.s(2), addr(1), 0), Ok(u1));
    assert_eq!(sw.remote_rx(c.s(2), addr(3), 1), Ok(d1));
    assert_eq!(sw.stats().dropped(DropReason::TooManyRemotes), 1);
    // Room frees up when a downlink goes stale.
    sw.handle_timeout(c.s(182));
    assert!(sw.remote_rx(c.s(183), addr(4), 1).is_ok());
}

#[test]
fn the_local_end_fits_even_with_no_room_for_remotes() {
    let c = Clock::new();
    let mut sw = Switch::new(Params { max_ports: 0, ..Params::default() });
    let l = sw.add_local(c.0);
    assert_eq!(sw.remote_rx(c.0, addr(3), 0), Err(DropReason::TooManyRemotes));
    assert_eq!(sw.targets().map(|t| t.port).collect::<Vec<_>>(), vec![l]);
}

#[test]
fn an_address_is_one_port() {
    let c = Clock::new();
    let (mut sw, _l, u1, _u2) = three_ports(&c, Params::default());
    assert_eq!(sw.add_uplink(c.0, addr(1), 5), None);
    // Datagrams from an uplink's address refresh the uplink: no downlink.
    assert_eq!(sw.remote_rx(c.s(1), addr(1), 0), Ok(u1));
    assert_eq!(events(&mut sw), vec![]);
    assert_eq!(sw.port_count(), 3);
}

#[test]
fn every_drop_counts_under_its_own_reason() {
    let c = Clock::new();
    let params = Params { max_ports: 2, ignore: vec![vec![mac(0x99)]], ..Params::default() };
    let (mut sw, l, u1, u2) = three_ports(&c, params);
    send(&mut sw, c.0, u1, MacAddr::BROADCAST, mac(0xa));
    let t = c.ms(1);
    type Case = fn(&mut Switch, Instant, [PortId; 3]) -> Result<PortId, DropReason>;
    fn frame_case(o: Out) -> Result<PortId, DropReason> {
        match o {
            Out::Drop(r) => Err(r),
            other => panic!("expected a drop, got {other:?}"),
        }
    }
    let cases: [(DropReason, Case); 8] = [
        (DropReason::Runt, |sw, t, [l, _, _]| frame_case(send_bytes(sw, t, l, &[0u8; 13]))),
        (DropReason::InvalidSource, |sw, t, [l, _, _]| frame_case(send(sw, t, l, mac(1), MacAddr::ZERO))),
        (DropReason::Ignored, |sw, t, [_, u1, _]| frame_case(send(sw, t, u1, MacAddr::BROADCAST, mac(0x99)))),
        (DropReason::Sticky, |sw, t, [_, _, u2]| frame_case(send(sw, t, u2, MacAddr::BROADCAST, mac(0xa)))),
        (DropReason::Hairpin, |sw, t, [_, u1, _]| frame_case(send(sw, t, u1, mac(0xa), mac(0xc)))),
        (DropReason::NoTarget, |sw, t, _| frame_case(send(sw, t, PortId(99), mac(1), mac(2)))),
        (DropReason::TooManyRemotes, |sw, t, _| sw.remote_rx(t, addr(9), 0)),
        (DropReason::LinkControl, |sw, t, [l, _, _]| frame_case(send(sw, t, l, MacAddr::PAUSE, mac(1)))),
    ];
    for (want, case) in cases {
        let before = sw.stats().drops;
        assert_eq!(case(&mut sw, t, [l, u1, u2]), Err(want));
        let after = sw.stats().drops;
        for r in DropReason::ALL {
            let expect = before[r as usize] + u64::from(r == want);
            assert_eq!(after[r as usize], expect, "{} after a {} drop", r.name(), want.name());
        }
    }
    // The drops decided by the I/O shell are counted through count_drop.
    for r in DropReason::ALL {
        let before = sw.stats().drops;
        sw.count_drop(r);
        let after = sw.stats().drops;
        for o in DropReason::ALL {
            assert_eq!(after[o as usize], before[o as usize] + u64::from(o == r));
        }
    }
}

#[test]
fn drop_reasons_are_listed_in_counter_order_with_distinct_names() {
    for (i, r) in DropReason::ALL.iter().enumerate() {
        assert_eq!(*r as usize, i);
    }
    let mut names: Vec<&str> = DropReason::ALL.iter().map(|r| r.name()).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), DropReason::COUNT);
}

#[test]
fn table_learn_answers() {
    let c = Clock::new();
    let mut t = MacTable::new(2);
    let (p, q) = (PortId(1), PortId(2));
    let six = timing::STICKY_BROADCAST;
    assert_eq!(t.learn(mac(1), p, c.0, six), Learn::New);
    assert_eq!(t.learn(mac(1), p, c.s(1), six), Learn::Refreshed);
    assert_eq!(t.learn(mac(1), q, c.ms(6_999), six), Learn::HeldElsewhere(p));
    assert_eq!(t.learn(mac(1), q, c.s(7), six), Learn::Moved(p));
    assert_eq!(t.learn(mac(2), p, c.s(7), six), Learn::New);
    assert_eq!(t.learn(mac(3), p, c.s(7), six), Learn::Full);
    assert_eq!(t.len(), 2);
    t.forget_port(q);
    assert_eq!(t.len(), 1);
    assert!(t.get(&mac(1)).is_none());
    assert_eq!(t.expire(c.s(7) + timing::MAC_AGEING, timing::MAC_AGEING), 1);
    assert!(t.is_empty());
}

#[test]
fn a_full_table_still_holds_what_it_cannot_learn() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params { mac_capacity: 2, ..Params::default() });
    send(&mut sw, c.0, l, MacAddr::BROADCAST, mac(1));
    send(&mut sw, c.0, l, MacAddr::BROADCAST, mac(2));
    let e = mac(0xe);
    // Not learned, but its copies from elsewhere are dropped as sticky, as
    // they would be if it were: otherwise full tables make broadcast loops.
    assert_eq!(send(&mut sw, c.0, u1, MacAddr::BROADCAST, e), Out::Flood(vec![l, u2]));
    assert_eq!(sw.port_of(&e, c.0), None);
    assert_eq!(send(&mut sw, c.ms(5_900), u2, MacAddr::BROADCAST, e), Out::Drop(DropReason::Sticky));
    // More from the same port extends the hold.
    assert_eq!(send(&mut sw, c.s(5), u1, mac(0xf), e), Out::Flood(vec![l, u2]));
    assert_eq!(send(&mut sw, c.ms(24_900), u2, MacAddr::BROADCAST, e), Out::Drop(DropReason::Sticky));
    // After the hold, another port may take it.
    assert_eq!(send(&mut sw, c.ms(25_100), u2, MacAddr::BROADCAST, e), Out::Flood(vec![l, u1]));
    assert_eq!(send(&mut sw, c.ms(25_200), u1, MacAddr::BROADCAST, e), Out::Drop(DropReason::Sticky));
    assert_eq!(sw.stats().table_full, 3);
    assert_eq!(sw.stats().dropped(DropReason::Sticky), 3);
    assert_eq!(sw.mac_count(), 2);
}

#[test]
fn a_full_table_drops_what_it_can_neither_learn_nor_hold() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params { mac_capacity: 1, ..Params::default() });
    send(&mut sw, c.0, l, MacAddr::BROADCAST, mac(1));
    // New addresses until one finds its hold slot taken: by the pigeonhole
    // principle within HOLD_SLOTS + 1 of them.
    let mut refused = None;
    for n in 0..=table::HOLD_SLOTS as u32 {
        let b = n.to_be_bytes();
        let src = MacAddr([0x02, 0x77, b[0], b[1], b[2], b[3]]);
        match send(&mut sw, c.0, u1, MacAddr::BROADCAST, src) {
            Out::Flood(to) => assert_eq!(to, vec![l, u2]),
            Out::Drop(DropReason::NoLoopHold) => {
                refused = Some(src);
                break;
            }
            other => panic!("{src}: {other:?}"),
        }
    }
    let src = refused.expect("some hold slot is shared");
    assert_eq!(sw.stats().dropped(DropReason::NoLoopHold), 1);
    // Once the other address's hold has run out, this one gets the slot.
    assert_eq!(send(&mut sw, c.ms(6_100), u1, MacAddr::BROADCAST, src), Out::Flood(vec![l, u2]));
    assert_eq!(send(&mut sw, c.ms(6_200), u2, MacAddr::BROADCAST, src), Out::Drop(DropReason::Sticky));
}

#[test]
fn table_holds_outlast_a_full_table_and_go_with_their_port() {
    let c = Clock::new();
    let (p, q) = (PortId(1), PortId(2));
    let six = timing::STICKY_BROADCAST;
    let mut t = MacTable::new(1);
    assert_eq!(t.learn(mac(1), p, c.0, six), Learn::New);
    assert_eq!(t.learn(mac(2), q, c.0, six), Learn::Full);
    assert_eq!(t.learn(mac(2), p, c.s(1), six), Learn::HeldElsewhere(q));
    assert_eq!(t.learn(mac(2), q, c.s(1), six), Learn::Full);
    assert_eq!(t.len(), 1);
    // Room again: the hold still keeps mac(2) off p until it runs out...
    t.forget_port(p);
    assert!(t.is_empty());
    assert_eq!(t.learn(mac(2), p, c.s(2), six), Learn::HeldElsewhere(q));
    // ...and on q it is learned at last.
    assert_eq!(t.learn(mac(2), q, c.s(3), six), Learn::New);
    assert_eq!(t.lookup(&mac(2), c.s(3), timing::MAC_AGEING), super::table::Answer::Found(q));
    // A port that goes away takes its holds with it.
    let mut t = MacTable::new(0);
    assert_eq!(t.learn(mac(3), p, c.0, six), Learn::Full);
    assert_eq!(t.learn(mac(3), q, c.0, six), Learn::HeldElsewhere(p));
    t.forget_port(p);
    assert_eq!(t.learn(mac(3), q, c.0, six), Learn::Full);
}

// ---------------------------------------------------------------------------
// Where unicast goes in a mesh (issue 14): the binding follows relayed
// unicast once its port has settled, the local end takes unicast by any
// port, and copies are known as copies.

/// A switch with a local end and three uplinks.
fn four_ports(c: &Clock) -> (Switch, PortId, PortId, PortId, PortId) {
    let (mut sw, l, u1, u2) = three_ports(c, Params::default());
    let u3 = sw.add_uplink(c.0, addr(3), 2).unwrap();
    (sw, l, u1, u2, u3)
}

#[test]
fn a_relayed_unicast_takes_a_binding_a_broadcast_made() {
    let c = Clock::new();
    let (mut sw, _l, u1, u2, u3) = four_ports(&c);
    let (x, s) = (mac(0xa), mac(0xb));
    // x's broadcast came first by u1 (a relay), s is behind u3.
    assert!(matches!(send(&mut sw, c.0, u1, MacAddr::BROADCAST, x), Out::Flood(_)));
    assert!(matches!(send(&mut sw, c.0, u3, MacAddr::BROADCAST, s), Out::Flood(_)));
    // x's unicast to s comes straight from x by u2: relayed, and x is
    // bound to u2 now, although the broadcast's 6 s have not run out.
    assert_eq!(send(&mut sw, c.ms(10), u2, s, x), Out::To(u3));
    assert_eq!(sw.port_of(&x, c.ms(10)), Some(u2));
    assert_eq!(sw.stats().moved, 1);
    // Replies to x go that way.
    assert_eq!(send(&mut sw, c.ms(11), u3, x, s), Out::To(u2));
    // The broadcast's hold still keeps floods from x to the port of its
    // first copy: a late copy of the broadcast by u2 is not a second one.
    assert_eq!(send(&mut sw, c.ms(12), u2, MacAddr::BROADCAST, x), Out::Drop(DropReason::Sticky));
    assert!(matches!(send(&mut sw, c.ms(13), u1, MacAddr::BROADCAST, x), Out::Flood(_)));
    assert_eq!(sw.port_of(&x, c.ms(13)), Some(u2), "a flood does not move a binding unicast settled");
}

#[test]
fn a_port_relaying_unicast_keeps_its_binding_while_it_settles() {
    let c = Clock::new();
    let (mut sw, _l, u1, u2, u3) = four_ports(&c);
    let (x, s) = (mac(0xa), mac(0xb));
    send(&mut sw, c.0, u3, MacAddr::BROADCAST, s);
    // x's unicast to s is relayed from u1.
    assert_eq!(send(&mut sw, c.ms(100), u1, s, x), Out::To(u3));
    // Another of x's frames comes by u2 within 500 ms: relayed (a second
    // path, not a loop), and nothing learned.
    let mut f = frame(s, x);
    f[14] = 1;
    assert_eq!(send_bytes(&mut sw, c.ms(599), u2, &f), Out::To(u3));
    assert_eq!(sw.port_of(&x, c.ms(599)), Some(u1));
    assert_eq!((sw.stats().across, sw.stats().moved), (1, 0));
    // 500 ms after the last one by u1, the next by u2 takes the binding.
    f[14] = 2;
    assert_eq!(send_bytes(&mut sw, c.ms(600), u2, &f), Out::To(u3));
    assert_eq!(sw.port_of(&x, c.ms(600)), Some(u2));
    assert_eq!(sw.stats().moved, 1);
    assert_eq!(send(&mut sw, c.ms(601), u3, x, s), Out::To(u2));
}

#[test]
fn a_frame_relayed_across_once_is_not_relayed_across_again() {
    let c = Clock::new();
    let (mut sw, _l, u1, u2, u3) = four_ports(&c);
    let (x, s) = (mac(0xa), mac(0xb));
    send(&mut sw, c.0, u3, MacAddr::BROADCAST, s);
    let mut f = frame(s, x);
    assert_eq!(send_bytes(&mut sw, c.ms(1), u1, &f), Out::To(u3));
    f[14] = 1;
    assert_eq!(send_bytes(&mut sw, c.ms(2), u2, &f), Out::To(u3));
    // The same frame back by another way is going round: dropped.
    assert_eq!(send_bytes(&mut sw, c.ms(3), u2, &f), Out::Drop(DropReason::Sticky));
    assert_eq!(sw.stats().across, 2);
}

#[test]
fn the_local_end_takes_unicast_by_any_port() {
    let c = Clock::new();
    let (mut sw, l, u1, u2, _u3) = four_ports(&c);
    let (h, x, y) = (mac(0x1), mac(0xa), mac(0xb));
    send(&mut sw, c.0, l, MacAddr::BROADCAST, h);
    send(&mut sw, c.0, u1, MacAddr::BROADCAST, x);
    send(&mut sw, c.0, u1, MacAddr::BROADCAST, y);
    // x's unicast for the host comes by u2, not by the broadcast's u1:
    // delivered, and (no relayed unicast from x settles u1) x moves there.
    assert_eq!(send(&mut sw, c.ms(10), u2, h, x), Out::To(l));
    assert_eq!(sw.port_of(&x, c.ms(10)), Some(u2));
    // y's unicast is being relayed by u1 (to x, now behind u2)...
    assert_eq!(send(&mut sw, c.ms(20), u1, x, y), Out::To(u2));
    // ...so y's unicast for the host by u2 is delivered, and y stays on u1.
    assert_eq!(send(&mut sw, c.ms(21), u2, h, y), Out::To(l));
    assert_eq!(sw.port_of(&y, c.ms(21)), Some(u1));
    assert_eq!(sw.stats().across, 1);
}

#[test]
fn a_copy_of_a_frame_for_the_local_end_by_another_port_is_dropped() {
    let c = Clock::new();
    let (mut sw, l, u1, u2, u3) = four_ports(&c);
    let (h, x) = (mac(0x1), mac(0xa));
    send(&mut sw, c.0, l, MacAddr::BROADCAST, h);
    send(&mut sw, c.0, u1, MacAddr::BROADCAST, x);
    // A unicast x's switch flooded arrives by every port it was flooded to.
    let f = frame(h, x);
    assert_eq!(send_bytes(&mut sw, c.ms(1), u2, &f), Out::To(l));
    assert_eq!(send_bytes(&mut sw, c.ms(2), u1, &f), Out::Drop(DropReason::Sticky));
    assert_eq!(send_bytes(&mut sw, c.ms(3), u3, &f), Out::Drop(DropReason::Sticky));
    // The same bytes again by the same port are news (a retransmission),
    // and so are they by another port once the settling time is over.
    assert_eq!(send_bytes(&mut sw, c.ms(4), u2, &f), Out::To(l));
    assert_eq!(send_bytes(&mut sw, c.ms(504), u1, &f), Out::To(l));
}

#[test]
fn the_local_ends_own_addresses_are_not_taken_by_remotes_while_held() {
    let c = Clock::new();
    let (mut sw, l, u1, u2, _u3) = four_ports(&c);
    let (h, s) = (mac(0x1), mac(0xb));
    send(&mut sw, c.0, l, MacAddr::BROADCAST, h);
    send(&mut sw, c.0, u2, MacAddr::BROADCAST, s);
    // The host's own address, from a remote: a reflection or a forgery.
    assert_eq!(send(&mut sw, c.ms(10), u1, s, h), Out::Drop(DropReason::Sticky));
    assert_eq!(send(&mut sw, c.ms(10), u1, MacAddr::BROADCAST, h), Out::Drop(DropReason::Sticky));
    assert_eq!(sw.port_of(&h, c.ms(10)), Some(l));
    // After its 6 s hold it may move (the host moved), as before.
    assert_eq!(send(&mut sw, c.ms(6_100), u1, s, h), Out::To(u2));
    assert_eq!(sw.port_of(&h, c.ms(6_100)), Some(u1));
}

#[test]
fn copies_from_the_multicast_group_are_dropped() {
    let c = Clock::new();
    let mut sw = Switch::new(Params::default());
    let l = sw.add_local(c.0);
    let g = sw.add_multicast(c.0, 0).unwrap();
    let u = sw.add_uplink(c.0, addr(1), 1).unwrap();
    let x = mac(0xa);
    // Two members relayed one broadcast into the group: one port, twice.
    let f = frame(MacAddr::BROADCAST, x);
    assert_eq!(send_bytes(&mut sw, c.ms(1), g, &f), Out::Flood(vec![l, u]));
    assert_eq!(send_bytes(&mut sw, c.ms(30), g, &f), Out::Drop(DropReason::Sticky));
    // Another frame from the same source is news.
    let mut f2 = f;
    f2[14] = 1;
    assert_eq!(send_bytes(&mut sw, c.ms(31), g, &f2), Out::Flood(vec![l, u]));
    // So is the first once the settling time is over.
    assert_eq!(send_bytes(&mut sw, c.ms(501), g, &f), Out::Flood(vec![l, u]));
}

#[test]
fn table_answers_for_relayed_and_delivered_unicast() {
    let c = Clock::new();
    let mut t = MacTable::new(4);
    let (l, p, q) = (PortId(0), PortId(1), PortId(2));
    let local = |x: PortId| x == l;
    let six = timing::STICKY_BROADCAST;
    assert_eq!(t.learn(mac(1), p, c.0, six), Learn::New);
    assert_eq!(t.learn_relayed(mac(1), q, c.ms(1), usize::MAX, local), Learn::Moved(p));
    assert_eq!(t.learn_relayed(mac(1), p, c.ms(2), usize::MAX, local), Learn::Across);
    assert_eq!(t.learn_relayed(mac(1), q, c.ms(3), usize::MAX, local), Learn::Refreshed);
    assert_eq!(t.learn_delivered(mac(1), p, c.ms(4), 1, usize::MAX, local), Learn::Across);
    // The same frame again by another port: a copy.
    assert_eq!(t.learn_delivered(mac(1), q, c.ms(5), 1, usize::MAX, local), Learn::Copy);
    assert_eq!(t.learn_relayed(mac(1), p, c.ms(503), usize::MAX, local), Learn::Moved(q));
    assert_eq!(t.learn_delivered(mac(1), q, c.ms(1_100), 2, usize::MAX, local), Learn::Moved(p));
    // Floods: by the port of the first copy only, for the whole hold.
    assert_eq!(t.learn(mac(1), q, c.ms(1_101), six), Learn::HeldElsewhere(p));
    assert_eq!(t.learn(mac(2), l, c.0, six), Learn::New);
    assert_eq!(t.learn_relayed(mac(2), p, c.ms(1), usize::MAX, local), Learn::HeldElsewhere(l));
    assert_eq!(t.learn_delivered(mac(2), p, c.ms(1), 3, usize::MAX, local), Learn::HeldElsewhere(l));
}

// ---------------------------------------------------------------------------
// Link-local control frames (see `Frame::is_link_control` for the rules).

/// A frame to `dst` from `src` with this EtherType (or 802.3 length).
fn typed_frame(dst: MacAddr, src: MacAddr, ethertype: u16) -> [u8; 60] {
    let mut b = frame(dst, src);
    b[12..14].copy_from_slice(&ethertype.to_be_bytes());
    b
}

#[test]
fn pause_and_slow_protocol_frames_are_dropped_counted_and_not_learned() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let cases = [
        (MacAddr::PAUSE, crate::mac::ETHERTYPE_MAC_CONTROL), // 802.3x PAUSE
        (MacAddr::SLOW_PROTOCOLS, 0x8809),                   // LACP
        (MacAddr::PAUSE, 0x0800),                            // the address alone
        (mac(0xb), crate::mac::ETHERTYPE_MAC_CONTROL),       // a PAUSE to a unicast address
        (MacAddr::BROADCAST, crate::mac::ETHERTYPE_MAC_CONTROL),
    ];
    let mut n = 0;
    for ingress in [l, u1, u2] {
        for (i, &(dst, ethertype)) in cases.iter().enumerate() {
            let src = mac(0x40 + i as u8);
            let out = send_bytes(&mut sw, c.ms(n), ingress, &typed_frame(dst, src, ethertype));
            assert_eq!(out, Out::Drop(DropReason::LinkControl), "{dst} {ethertype:04x} from {ingress:?}");
            n += 1;
            assert_eq!(sw.port_of(&src, c.ms(n)), None, "a dropped frame teaches nothing");
        }
    }
    assert_eq!(sw.stats().dropped(DropReason::LinkControl), n);
    assert_eq!(sw.stats().drops.iter().sum::<u64>(), n, "no other counter moved");
    assert_eq!(sw.stats().frames_in, n);
    assert_eq!(sw.mac_count(), 0);
    assert_eq!(DropReason::LinkControl.name(), "link-control");
}

#[test]
fn a_pause_frame_does_not_move_a_learned_address() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let a = mac(0xa);
    assert_eq!(send(&mut sw, c.0, u1, MacAddr::BROADCAST, a), Out::Flood(vec![l, u2]));
    // Long after the hold, a PAUSE with a's address from u2 would move it
    // if it were learned from.
    let pause = typed_frame(MacAddr::PAUSE, a, crate::mac::ETHERTYPE_MAC_CONTROL);
    assert_eq!(send_bytes(&mut sw, c.s(30), u2, &pause), Out::Drop(DropReason::LinkControl));
    assert_eq!(sw.port_of(&a, c.s(30)), Some(u1));
    assert_eq!(sw.stats().moved, 0);
}

#[test]
fn other_link_local_groups_pass_as_through_a_cable() {
    let c = Clock::new();
    let (mut sw, l, u1, u2) = three_ports(&c, Params::default());
    let group = |last: u8| MacAddr([0x01, 0x80, 0xc2, 0, 0, last]);
    let mut passed = vec![
        (MacAddr::STP, 0x0026), // an STP BPDU: 802.3 length, LLC
        (group(0x03), 0x888e),  // 802.1X EAPOL
        (group(0x0e), 0x88cc),  // LLDP
    ];
    passed.extend((0x04..=0x0f).map(|last| (group(last), 0x0800)));
    passed.push((group(0x10), 0x0026)); // all bridges: not link-local
    passed.push((MacAddr([2, 0, 0, 0, 0, 0x7f]), 0x8809)); // slow protocols type, unicast
    for (i, &(dst, ethertype)) in passed.iter().enumerate() {
        let src = mac(0x60 + i as u8);
        let out = send_bytes(&mut sw, c.ms(i as u64), l, &typed_frame(dst, src, ethertype));
        assert_eq!(out, Out::Flood(vec![u1, u2]), "{dst} {ethertype:04x}");
        assert_eq!(sw.port_of(&src, c.ms(i as u64)), Some(l));
    }
    // And from a remote, never back out of it.
    assert_eq!(send_bytes(&mut sw, c.s(1), u2, &typed_frame(MacAddr::STP, mac(0x90), 0x0026)), Out::Flood(vec![l, u1]));
    assert_eq!(sw.stats().dropped(DropReason::LinkControl), 0);
    assert_eq!(sw.stats().flooded, passed.len() as u64 + 1);
}
