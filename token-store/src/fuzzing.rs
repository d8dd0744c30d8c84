//! Fuzz entry points: one function per decoder family of the token store,
//! taking arbitrary bytes and asserting what must hold for any input (no
//! panic, round trips where they exist).
//!
//! The libFuzzer targets in `fuzz/fuzz_targets/` are one call each into this
//! module, and `tests/fuzz_replay.rs` replays the checked-in corpus
//! (`fuzz/corpus/<target>/`) plus a few seconds of mutations through the
//! same functions in every test run. Not an API: these functions panic on
//! purpose when an invariant breaks.
#![forbid(unsafe_code)]

/// Token database contents (token record, object envelopes, public and
/// sealed object records, manifest, index lists) read back as
/// `SledStore` reads a token; see `sled_store/fuzzing.rs`.
pub fn store_records(data: &[u8]) {
    crate::sled_store::fuzzing::records(data);
}

/// Audit log state slots, stored lines, tail recovery and times; see
/// `audit/fuzzing.rs`.
pub fn audit_log(data: &[u8]) {
    crate::audit::fuzzing::audit(data);
}

/// Backup files, opened with the seed corpus's SO PIN; see
/// `backup/fuzzing.rs`.
pub fn backup(data: &[u8]) {
    crate::backup::fuzzing::backup(data);
}

/// The seed corpus of a target, made from the real encoders (so it follows
/// format changes): `(file name, bytes)`. `tests/fuzz_replay.rs` writes it
/// into `fuzz/corpus/<target>/` when run with `FERROHSM_WRITE_SEEDS=1`.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "store_records" => crate::sled_store::fuzzing::seeds(),
        "audit_log" => crate::audit::fuzzing::seeds(),
        "backup" => crate::backup::fuzzing::seeds(),
        _ => Vec::new(),
    }
}
