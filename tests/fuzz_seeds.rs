//! Replays every committed fuzz seed (fuzz/seeds/TARGET/*) through the same
//! entry points the fuzz targets use, on stable, under `cargo test`.

use std::path::Path;

fn replay(target: &str, f: fn(&[u8])) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds").join(target);
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        f(&data);
        n += 1;
    }
    assert!(n > 0, "no seeds in {}", dir.display());
}

#[test]
fn cli_args_seeds() {
    replay("cli_args", rrqnet::fuzzing::cli_args);
}

#[test]
fn remote_decl_seeds() {
    replay("remote_decl", rrqnet::fuzzing::remote_decl);
}

#[test]
fn vde_stream_seeds() {
    replay("vde_stream", rrqnet::fuzzing::vde_stream);
}

#[test]
fn switch_ops_seeds() {
    replay("switch_ops", rrqnet::fuzzing::switch_ops);
}

#[test]
fn vnet_seeds() {
    replay("vnet", rrqnet::fuzzing::vnet);
}

#[test]
fn crypto_open_seeds() {
    replay("crypto_open", rrqnet::fuzzing::crypto_open);
}

/// The committed seeds stay what their names say: the valid ones open (so
/// the fuzzer starts from datagrams that reach the end of the opener), the
/// others are refused for the reason named.
#[test]
fn crypto_open_seeds_are_what_they_say() {
    use rrqnet::crypto::{Kind, OpenError};
    use rrqnet::fuzzing::crypto_open_result;
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/crypto_open");
    let seed = |name: &str| crypto_open_result(&std::fs::read(dir.join(name)).unwrap());
    assert_eq!(seed("valid-data-0").map(|o| (o.kind, o.payload.len())), Ok((Kind::Data, 42)));
    assert_eq!(seed("valid-data-1").map(|o| (o.kind, o.payload.len(), o.counter)), Ok((Kind::Data, 1514, 7)));
    assert_eq!(seed("valid-heartbeat").map(|o| (o.kind, o.payload.len())), Ok((Kind::Heartbeat, 0)));
    assert_eq!(seed("own-session"), Err(OpenError::OwnSession));
    assert_eq!(seed("stale-session"), Err(OpenError::StaleSession));
    assert_eq!(seed("bad-tag"), Err(OpenError::BadAuth));
    assert_eq!(seed("counter-max"), Err(OpenError::Malformed));
    assert_eq!(seed("plaintext-frame"), Err(OpenError::Malformed));
    assert_eq!(seed("short"), Err(OpenError::Malformed));
}
