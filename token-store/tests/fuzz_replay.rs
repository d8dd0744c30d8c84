//! The store's fuzz targets (`fuzz/fuzz_targets/`), run on their checked-in
//! corpus plus a few seconds of mutations (`FERROHSM_FUZZ_SECONDS`), so they
//! run in every test run without libFuzzer. See `fuzz/replay.rs` and
//! `fuzz/README.md`.
//!
//! The seeds of these targets are made by the store's own encoders
//! (`ferrohsm_store::fuzzing::seeds`); `FERROHSM_WRITE_SEEDS=1` rewrites
//! them after a format change.

#[path = "../../fuzz/replay.rs"]
mod replay;

use ferrohsm_store::fuzzing;

fn run(target: &'static str, f: fn(&[u8])) {
    if std::env::var_os("FERROHSM_WRITE_SEEDS").is_some() {
        let seeds = fuzzing::seeds(target);
        replay::write_seeds(env!("CARGO_MANIFEST_DIR"), target, &seeds);
    }
    replay::run(env!("CARGO_MANIFEST_DIR"), target, f);
}

#[test]
fn store_records() {
    run("store_records", fuzzing::store_records);
}

#[test]
fn audit_log() {
    run("audit_log", fuzzing::audit_log);
}

#[test]
fn backup() {
    run("backup", fuzzing::backup);
}
