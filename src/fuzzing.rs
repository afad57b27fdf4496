//! Entry points for the fuzz targets under `fuzz/`, kept in the library so
//! `cargo test` replays the committed seeds through exactly the same code
//! (tests/fuzz_seeds.rs). Each function must never panic on any input; the
//! assertions inside are properties that must hold for every input.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::channel::stdio::Decoder;
use crate::config::parse_remote;
use crate::crypto::{Kind, MasterKey, OpenError, Opened, Opener, Sealer, SealerLimits, SessionId, Transport};
use crate::crypto::{HEADER_LEN, TAG_LEN};
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
        port_mac_limit: 4,
        local_mac_limit: 6,
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

/// The key material of the `crypto_open` target: bytes 0, 1, ..., 31.
pub const CRYPTO_KEY: [u8; 32] = {
    let mut k = [0u8; 32];
    let mut i = 0;
    while i < 32 {
        k[i] = i as u8;
        i += 1;
    }
    k
};
/// The wall clock of the `crypto_open` target, in unix seconds.
pub const CRYPTO_NOW: u64 = 1_700_000_000;
/// The receiver's own session in the `crypto_open` target: datagrams of it
/// are reflections.
pub const CRYPTO_OWN_SESSION: SessionId = SessionId([0xee; 16]);

/// The receiving transport of the `crypto_open` target: fixed key, clock
/// and own session, and a small session cache.
fn crypto_receiver() -> Transport {
    let key = MasterKey::from_bytes(&CRYPTO_KEY).expect("32 bytes are a key");
    let own = Sealer::with_session(&key, CRYPTO_OWN_SESSION, CRYPTO_NOW, 0, SealerLimits::default());
    Transport::from_parts(own, Opener::new(&key, 4))
}

/// What the `crypto_open` target makes of one input, for the seed tests.
pub fn crypto_open_result(data: &[u8]) -> Result<Opened, OpenError> {
    crypto_receiver().open_in_place(&mut data.to_vec(), CRYPTO_NOW)
}

/// Seals a datagram the `crypto_open` target accepts: for making seeds.
pub fn crypto_seed(kind: Kind, payload: &[u8], session: SessionId, counter: u64, start: u64) -> Vec<u8> {
    let key = MasterKey::from_bytes(&CRYPTO_KEY).expect("32 bytes are a key");
    let mut s = Sealer::with_session(&key, session, start, counter, SealerLimits::default());
    let mut buf = vec![0u8; HEADER_LEN + payload.len() + TAG_LEN];
    buf[HEADER_LEN..HEADER_LEN + payload.len()].copy_from_slice(payload);
    match s.seal_in_place(&mut buf, HEADER_LEN, payload.len(), kind, start) {
        Ok(_) => buf,
        Err(_) => Vec::new(),
    }
}

/// One keyed datagram, opened in place: never a panic; what opens has its
/// plaintext inside the buffer, between the header and the tag, of its
/// kind's shape, and the same bytes never open twice.
pub fn crypto_open(data: &[u8]) {
    let mut rx = crypto_receiver();
    let mut buf = data.to_vec();
    let Ok(o) = rx.open_in_place(&mut buf, CRYPTO_NOW) else { return };
    assert!(o.payload.start <= o.payload.end && o.payload.end <= buf.len(), "payload {:?} in {}", o.payload, buf.len());
    assert_eq!((o.payload.start, o.payload.end + TAG_LEN), (HEADER_LEN, data.len()));
    match o.kind {
        Kind::Data => assert!(!o.payload.is_empty(), "data has a payload"),
        Kind::Heartbeat => assert!(o.payload.is_empty(), "a heartbeat has none"),
    }
    assert!(o.new_session && o.session != CRYPTO_OWN_SESSION);
    assert!(rx.opener().knows(&o.session));
    assert_eq!(rx.open_in_place(&mut data.to_vec(), CRYPTO_NOW), Err(OpenError::Replay), "opened twice");
}

/// A tap read through the splitter, and a batch through the coalescer.
pub use crate::offload::fuzz::vnet;
