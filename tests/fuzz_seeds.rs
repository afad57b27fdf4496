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
