//! Entry points for the fuzz targets under `fuzz/`, kept in the library so
//! `cargo test` replays the committed seeds through exactly the same code
//! (tests/fuzz_seeds.rs). Each function must never panic on any input; the
//! assertions inside are properties that must hold for every input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::channel::stdio::Decoder;
use crate::config::parse_remote;
use crate::switch::{Forward, Params, PortId, Switch};

/// The command line: NUL-separated arguments.
pub fn cli_args(data: &[u8]) {
    let args = std::iter::once(std::ffi::OsString::from("rrqnet"))
        .chain(data.split(|&b| b == 0).map(|a| std::ffi::OsString::from(String::from_utf8_lossy(a).into_owned())));
    let _ = crate::cli::parse(args);
}

/// One remote declaration; what parses prints back to an equal declaration.
pub fn remote_decl(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else { return };
    for ipv4_only in [false, true] {
        let Ok(spec) = parse_remote(text, ipv4_only) else { continue };
        if spec.key.is_none() {
            let again = parse_remote(&spec.to_string(), ipv4_only).expect("a printed declaration parses");
            assert_eq!(again, spec, "round trip of {text:?}");
        }
    }
}

/// A VDE byte stream: decoding accounts for every byte.
pub fn vde_stream(data: &[u8]) {
    let (frames, pending) = Decoder::decode_all(data);
    let used: usize = frames.iter().map(|f| 2 + f.len()).sum();
    assert!(frames.iter().all(|f| !f.is_empty()));
    assert!(used + pending <= data.len());
}

/// A sequence of switch operations: the forwarding invariants hold.
///
/// Each step takes 3 bytes: an opcode, a port selector and a parameter.
pub fn switch_ops(data: &[u8]) {
    let t0 = Instant::now();
    let mut now = t0;
    let mut sw = Switch::new(Params {
        mac_capacity: 8,
        max_ports: 6,
        ignore: vec![vec![], vec![crate::mac::MacAddr([2, 0, 0, 0, 0, 3])]],
    });
    let local = sw.add_local(now);
    let up: SocketAddr = "192.0.2.1:2300".parse().unwrap();
    let _ = sw.add_uplink(now, up, 0);
    let mut ports = vec![local];
    for step in data.chunks_exact(3) {
        let (op, sel, arg) = (step[0], step[1], step[2]);
        match op % 4 {
            0 => now += Duration::from_millis(arg as u64 * 997),
            1 => {
                let addr: SocketAddr = SocketAddr::from(([198, 51, 100, sel % 8], 1400 + (arg % 3) as u16));
                if let Ok(p) = sw.remote_rx(now, addr, (arg % 2) as u16) {
                    if !ports.contains(&p) {
                        ports.push(p);
                    }
                }
            }
            2 => sw.handle_timeout(now),
            _ => {
                let ingress = match sw.targets().nth(sel as usize % sw.port_count().max(1)) {
                    Some(t) => t.port,
                    None => PortId(u32::from(sel)),
                };
                let dst = if arg & 0x80 != 0 { [0xff; 6] } else { [2, 0, 0, 0, 0, arg & 7] };
                let src = [if arg & 0x40 != 0 { 1 } else { 2 }, 0, 0, 0, 0, (arg >> 3) & 7];
                let mut frame = [0u8; 20];
                frame[..6].copy_from_slice(&dst);
                frame[6..12].copy_from_slice(&src);
                let len = if arg & 0x20 != 0 { 13 } else { 20 };
                match sw.handle_frame(now, ingress, &frame[..len]) {
                    Forward::Drop(_) => {}
                    Forward::Unicast(t) => assert_ne!(t.port, ingress, "unicast back out of the ingress"),
                    Forward::Flood(ts) => {
                        assert!(!ts.is_empty());
                        assert!(ts.iter().all(|t| t.port != ingress), "flood back out of the ingress");
                    }
                }
            }
        }
        assert!(sw.mac_count() <= 8, "the MAC table is bounded");
        assert!(sw.port_count() <= 7, "the port set is bounded (6 remotes and the local end)");
    }
}
