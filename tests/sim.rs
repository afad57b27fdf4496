//! Several rrqnet nodes on a virtual network, on a virtual clock: the
//! protocol end to end without a socket (tests/common/netsim.rs).
//!
//! The first tests are the storm bounds of the manual's topologies (a
//! triangle and a four-host full mesh of pair-wise uplinks): every frame
//! delivered on a link or to a host is counted, so a broadcast cycle would
//! show as a count that grows, or as a run that never settles. The others
//! drive what a node does above the switch: a keyed downlink admitting a
//! client, a replayed datagram, a stale remote at 180 s, lossy, duplicating
//! and reordering links, and a multicast segment.

mod common;

use std::collections::BTreeMap;
use std::time::Duration;

use common::frames::{mac, tagged, BCAST};
use common::netsim::{Link, Net};
use rrqnet::switch::{timing, DropReason, Params};

const SETTLE: Duration = Duration::from_millis(500);

fn name(i: usize) -> String {
    ((b'A' + i as u8) as char).to_string()
}

/// The MAC address of host `i`'s interface.
fn host(i: usize) -> [u8; 6] {
    mac(0x10 + i as u8)
}

fn addr(i: usize) -> String {
    format!("192.0.2.{}:2300", 1 + i)
}

/// `n` hosts, each with a local end and an uplink to every other one: the
/// manual's "multiple pair-wise uplinks".
fn full_mesh(n: usize) -> Net {
    full_mesh_with(n, Params::default())
}

fn full_mesh_with(n: usize, params: Params) -> Net {
    let mut net = Net::new(1);
    for i in 0..n {
        let others: Vec<String> = (0..n).filter(|&j| j != i).map(addr).collect();
        let args = format!("-t - 2300 {}", others.join(" "));
        net.add_with(&name(i), &addr(i), &args, &[], params.clone());
    }
    net
}

fn links(pairs: &[(&str, &str)]) -> BTreeMap<(String, String), usize> {
    pairs.iter().map(|&(a, b)| ((a.to_owned(), b.to_owned()), 1)).collect()
}

#[test]
fn start_up_heartbeats_go_to_every_uplink() {
    let mut net = full_mesh(4);
    net.run_for(Duration::from_millis(100));
    assert_eq!(net.tally.heartbeats, 4 * 3);
    assert_eq!(net.tally.link_frames(), 0);
}

#[test]
fn triangle_broadcast_reaches_every_other_host_once() {
    let mut net = full_mesh(3).started();
    let bcast = tagged(BCAST, host(0), 1);
    net.send_local(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert!(t.received("A").is_empty());
    assert_eq!(t.received("B"), [bcast.as_slice()]);
    assert_eq!(t.received("C"), [bcast.as_slice()]);
    // A to both, then B and C each pass it on to the other, which drops it:
    // the binding of A's address to the link from A is still sticky there.
    assert_eq!(t.links, links(&[("A", "B"), ("A", "C"), ("B", "C"), ("C", "B")]));
    assert_eq!(t.link_frames() + t.local_frames(), 6);
    assert_eq!(net.drops(DropReason::Sticky), [0, 1, 1]);
    // Nothing more, however long we wait (but heartbeats).
    net.run_for(Duration::from_secs(120));
    let later = net.take_tally();
    assert_eq!((later.link_frames(), later.local_frames()), (0, 0));
    assert_eq!(later.heartbeats, 4 * 6);
}

#[test]
fn triangle_unicast_replies_follow_the_learned_path() {
    let mut net = full_mesh(3).started();
    net.send_local(0, &tagged(BCAST, host(0), 1));
    net.run_for(SETTLE);
    net.take_tally();
    let floods = net.floods();

    // B answers A: straight over the B-A link, and only to A's host.
    let reply = tagged(host(0), host(1), 2);
    net.send_local(1, &reply);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[("B", "A")]));
    assert_eq!(t.received("A"), [reply]);
    assert_eq!(t.local_frames(), 1);

    // A now knows B's host, and C answers too.
    let to_b = tagged(host(1), host(0), 3);
    net.send_local(0, &to_b);
    let from_c = tagged(host(0), host(2), 4);
    net.send_local(2, &from_c);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[("A", "B"), ("C", "A")]));
    assert_eq!(t.received("B"), [to_b]);
    assert_eq!(t.received("A"), [from_c]);
    assert!(t.received("C").is_empty());
    assert_eq!(net.floods(), floods, "no reply was flooded");
}

#[test]
fn triangle_with_a_slow_link_still_delivers_once() {
    let mut net = full_mesh(3).started();
    // The copy from A to B arrives after the one that went round by C.
    net.set_link(0, 1, Link { latency: Duration::from_millis(50), ..Link::default() });
    let bcast = tagged(BCAST, host(0), 1);
    net.send_local(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received("B"), [bcast.as_slice()]);
    assert_eq!(t.received("C"), [bcast.as_slice()]);
    assert!(t.received("A").is_empty());
    // B took the copy from C, passed it to A (which dropped it: its own
    // host's address is sticky on its local end), and dropped the late
    // direct copy.
    assert_eq!(t.links, links(&[("A", "B"), ("A", "C"), ("C", "B"), ("B", "A")]));
    assert_eq!(t.link_frames() + t.local_frames(), 6);
    assert_eq!(net.drops(DropReason::Sticky), [1, 1, 0]);

    // B learned A's host behind C, so its answer goes that way round.
    let reply = tagged(host(0), host(1), 2);
    net.send_local(1, &reply);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[("B", "C"), ("C", "A")]));
    assert_eq!(t.received("A"), [reply]);
    assert_eq!(t.local_frames(), 1);
}

#[test]
fn triangle_unknown_unicast_is_flooded_just_as_boundedly() {
    let mut net = full_mesh(3).started();
    let f = tagged(mac(0x99), host(0), 1);
    net.send_local(0, &f);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received("B"), [f.as_slice()]);
    assert_eq!(t.received("C"), [f.as_slice()]);
    assert_eq!(t.link_frames() + t.local_frames(), 6);
}

#[test]
fn four_host_full_mesh_broadcast_is_bounded() {
    let mut net = full_mesh(4).started();
    let bcast = tagged(BCAST, host(0), 1);
    net.send_local(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    for i in 1..4 {
        assert_eq!(t.received(&name(i)), [bcast.as_slice()], "host {}", name(i));
    }
    assert!(t.received("A").is_empty());
    // A to each of three, and each of those to the two others: 3 + 3 * 2.
    assert_eq!(t.link_frames(), 9);
    assert!(t.links.values().all(|&n| n == 1), "{:?}", t.links);
    assert_eq!(t.link_frames() + t.local_frames(), 12);
    assert_eq!(net.drops(DropReason::Sticky), [0, 2, 2, 2]);

    // Every other host answers; each answer takes its one direct link.
    let floods = net.floods();
    for i in 1..4 {
        net.send_local(i, &tagged(host(0), host(i), 10 + i as u8));
    }
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.links, links(&[("B", "A"), ("C", "A"), ("D", "A")]));
    assert_eq!(t.received("A").len(), 3);
    assert_eq!(t.local_frames(), 3);
    assert_eq!(net.floods(), floods);
}

#[test]
fn four_host_mesh_stays_bounded_over_time() {
    let mut net = full_mesh(4).started();
    // Every host broadcasts in turn, every 7 s (past the 6 s hold) for ten
    // minutes: past heartbeats, sticky holds and MAC ageing.
    let mut tag = 0u8;
    for round in 0..86 {
        let i = round % 4;
        tag = tag.wrapping_add(1);
        let bcast = tagged(BCAST, host(i), tag);
        net.send_local(i, &bcast);
        net.run_for(Duration::from_secs(7));
        let t = net.take_tally();
        for j in (0..4).filter(|&j| j != i) {
            assert_eq!(t.received(&name(j)), [bcast.as_slice()], "round {round}, host {}", name(j));
        }
        assert_eq!(t.link_frames(), 9, "round {round}: {:?}", t.links);
        assert_eq!(t.local_frames(), 3);
    }
    // All at once, too: each host's broadcast reaches each other host once.
    for i in 0..4 {
        net.send_local(i, &tagged(BCAST, host(i), 200 + i as u8));
    }
    net.run_for(SETTLE);
    let t = net.take_tally();
    for j in 0..4 {
        let mut got: Vec<u8> = t.received(&name(j)).iter().map(|f| f[14]).collect();
        got.sort_unstable();
        let want: Vec<u8> = (0..4).filter(|&i| i != j).map(|i| 200 + i as u8).collect();
        assert_eq!(got, want, "host {}", name(j));
    }
    assert_eq!(t.link_frames(), 4 * 9);
}

/// With every table full, nothing can be learned, and without the loop holds
/// a full table still keeps, this broadcast went round the triangle for ever.
#[test]
fn full_tables_do_not_start_a_storm() {
    // Tables of eight entries, filled by eight addresses behind A.
    let mut net = full_mesh_with(3, Params { mac_capacity: 8, ..Params::default() }).started();
    for k in 0..8 {
        net.send_local(0, &tagged(BCAST, [0x02, 0, 0, 0, 0x20, k], k));
    }
    net.run_for(SETTLE);
    assert!(net.hosts.iter().all(|h| h.node.switch().mac_count() == 8));
    net.take_tally();
    let before = net.drops(DropReason::Sticky);
    // B's host is new to every switch, and no switch can learn it.
    let bcast = tagged(BCAST, host(1), 100);
    net.send_local(1, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received("A"), [bcast.as_slice()]);
    assert_eq!(t.received("C"), [bcast.as_slice()]);
    assert!(t.received("B").is_empty());
    assert_eq!(t.link_frames() + t.local_frames(), 6);
    assert!(net.hosts.iter().all(|h| h.node.stats().table_full >= 1));
    // A and C each dropped the copy that came the long way round.
    let after = net.drops(DropReason::Sticky);
    assert_eq!([after[0] - before[0], after[1] - before[1], after[2] - before[2]], [1, 0, 1]);
}

// ---------------------------------------------------------------------------
// Above the switch: declarations, keys, heartbeats, staleness.
// ---------------------------------------------------------------------------

const KEY: &[u8] = &[0x5a; 64];
const OTHER_KEY: &[u8] = &[0xa5; 64];

/// A server with a keyed downlink mask, and a client behind "NAT" (an
/// address in the mask) that uplinks to it with the same key.
fn keyed_pair(client_key: &[u8]) -> Net {
    let mut net = Net::new(7);
    net.add("S", "192.0.2.1:2300", "-t - 2300 198.51.100.0/24:2300=k", &[("k", KEY)]);
    net.add("C", "198.51.100.7:2300", "-t - 2300 192.0.2.1:2300=k", &[("k", client_key)]);
    net
}

#[test]
fn a_keyed_downlink_admits_a_client_with_the_key() {
    let mut net = keyed_pair(KEY).started();
    let (s, c) = (net.host("S"), net.host("C"));
    // The client's first heartbeat made it a remote of the server.
    assert_eq!(net.hosts[s].node.switch().port_count(), 2, "the local end and the client");
    let hello = tagged(BCAST, host(2), 1);
    net.send_local(c, &hello);
    net.run_for(SETTLE);
    let reply = tagged(host(2), host(1), 2);
    net.send_local(s, &reply);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received("S"), [hello]);
    assert_eq!(t.received("C"), [reply]);
    // Everything on the wire was sealed: 50 bytes more than each frame.
    net.capturing = true;
    net.send_local(c, &tagged(host(1), host(2), 3));
    net.run_for(SETTLE);
    assert_eq!(net.capture.len(), 1);
    assert_eq!(net.capture[0].payload.len(), 60 + 50);
    assert_ne!(&net.capture[0].payload[50..], &tagged(host(1), host(2), 3)[..10]);
    assert_eq!(net.drops(DropReason::BadAuth), [0, 0]);
}

#[test]
fn a_keyed_downlink_refuses_a_client_with_another_key() {
    let mut net = keyed_pair(OTHER_KEY).started();
    let (s, c) = (net.host("S"), net.host("C"));
    net.send_local(c, &tagged(BCAST, host(2), 1));
    net.run_for(Duration::from_secs(65));
    let t = net.take_tally();
    assert!(t.received("S").is_empty());
    assert_eq!(net.hosts[s].node.switch().port_count(), 1, "no remote was made");
    // The first heartbeat, the frame and two more heartbeats (at 30 s and 60 s).
    assert_eq!(net.stats(s).dropped(DropReason::BadAuth), 4);
    assert_eq!(net.stats(c).dropped(DropReason::BadAuth), 0, "the server never answered");
}

#[test]
fn a_replayed_datagram_delivers_nothing() {
    let mut net = keyed_pair(KEY).started();
    let (s, c) = (net.host("S"), net.host("C"));
    net.capturing = true;
    let f = tagged(BCAST, host(2), 1);
    net.send_local(c, &f);
    net.run_for(SETTLE);
    assert_eq!(net.take_tally().received("S"), [f]);
    let captured = net.capture.pop().unwrap();
    // The same datagram again, from the client's own address: a replay.
    net.inject(captured.from, captured.to, &captured.payload);
    net.run_for(SETTLE);
    assert!(net.take_tally().received("S").is_empty());
    assert_eq!(net.stats(s).dropped(DropReason::Replay), 1);
    // From another address in the mask it is the same replay, and makes no
    // remote there.
    net.inject("198.51.100.8:2300".parse().unwrap(), captured.to, &captured.payload);
    net.run_for(SETTLE);
    assert!(net.take_tally().received("S").is_empty());
    assert_eq!(net.stats(s).dropped(DropReason::Replay), 2);
    assert_eq!(net.hosts[s].node.switch().port_count(), 2);
    assert_eq!(net.stats(c).dropped(DropReason::Replay), 0);
}

#[test]
fn a_silent_downlink_is_stale_at_180_s() {
    let mut net = Net::new(3);
    let s = net.add("S", "192.0.2.1:2300", "-t - 2300 198.51.100.0/24:2300", &[]);
    let c = net.add("C", "198.51.100.7:2300", "-t - 2300 192.0.2.1:2300", &[]);
    let mut net = net.started();
    net.send_local(c, &tagged(BCAST, host(2), 1));
    net.run_for(SETTLE);
    assert_eq!(net.hosts[s].node.switch().port_count(), 2);
    // The client's heartbeats stop reaching the server: its last one was
    // at about 0 s (the frame at 0 s refreshed it too).
    net.set_link(c, s, Link { up: false, ..Link::default() });
    let heard = net.now;
    net.run_for(timing::DOWNLINK_STALE - Duration::from_millis(600));
    assert_eq!(net.hosts[s].node.switch().port_count(), 2, "still there just before 180 s");
    net.run_for(Duration::from_secs(2));
    assert!(net.now - heard >= timing::DOWNLINK_STALE);
    assert_eq!(net.hosts[s].node.switch().port_count(), 1, "gone after 180 s of silence");
    // A frame for the client's host now finds no remote.
    net.take_tally();
    net.send_local(s, &tagged(host(2), host(1), 2));
    net.run_for(SETTLE);
    assert_eq!(net.take_tally().link_frames(), 0);
    // Its heartbeats get through again: it is a remote again at the next one.
    net.set_link(c, s, Link::default());
    net.run_for(timing::HEARTBEAT_INTERVAL);
    assert_eq!(net.hosts[s].node.switch().port_count(), 2);
}

#[test]
fn lossy_duplicating_reordering_links_deliver_each_keyed_frame_at_most_once() {
    let mut net = keyed_pair(KEY).started();
    let (s, c) = (net.host("S"), net.host("C"));
    let rough = Link {
        latency: Duration::from_millis(5),
        jitter: Duration::from_millis(4),
        loss: 0.1,
        duplicate: 0.3,
        up: true,
    };
    net.set_links(s, c, rough);
    let frames: Vec<Vec<u8>> = (0..200u8).map(|i| tagged(host(1), host(2), i)).collect();
    for f in &frames {
        net.send_local(c, f);
        net.run_for(Duration::from_micros(500));
    }
    net.run_for(SETTLE);
    let t = net.take_tally();
    let got = t.received("S");
    let mut tags: Vec<u8> = got.iter().map(|f| f[14]).collect();
    tags.sort_unstable();
    let mut unique = tags.clone();
    unique.dedup();
    assert_eq!(tags, unique, "a duplicated datagram was delivered twice");
    assert!(got.len() > 150 && got.len() < 200, "about 10 % lost: {} of 200 arrived", got.len());
    assert!(got.windows(2).any(|w| w[0][14] > w[1][14]), "jitter reordered some");
    assert!(net.stats(s).dropped(DropReason::Replay) > 20, "the duplicates were refused as replays");
}

#[test]
fn a_multicast_segment_joins_two_meshes_without_a_storm() {
    // A and B share a group (QEMU VMs would be there too); B uplinks to C.
    let mut net = Net::new(5);
    net.add("A", "192.0.2.1:2300", "-m 239.1.2.3:5000 -t - 2300", &[]);
    net.add("B", "192.0.2.2:2300", "-m 239.1.2.3:5000 -t - 2300 192.0.2.3:2300", &[]);
    net.add("C", "192.0.2.3:2300", "-t - 2300 192.0.2.2:2300", &[]);
    let mut net = net.started();
    let bcast = tagged(BCAST, host(0), 1);
    net.send_local(0, &bcast);
    net.run_for(SETTLE);
    let t = net.take_tally();
    assert_eq!(t.received("B"), [bcast.as_slice()]);
    assert_eq!(t.received("C"), [bcast.as_slice()]);
    assert!(t.received("A").is_empty());
    // A's own datagram came back to it on the group and was dropped.
    assert_eq!(net.drops(DropReason::OwnMulticast), [1, 0, 0]);
    // Nothing under 12 bytes ever went to the group: no heartbeats there.
    net.run_for(Duration::from_secs(61));
    assert_eq!(net.drops(DropReason::Runt), [0, 0, 0]);
    let t = net.take_tally();
    assert_eq!(t.link_frames(), 0, "only heartbeats on the uplinks: {:?}", t.links);
    // C's answer reaches A through B and the group.
    let reply = tagged(host(0), host(2), 2);
    net.send_local(2, &reply);
    net.run_for(SETTLE);
    assert_eq!(net.take_tally().received("A"), [reply]);
}
