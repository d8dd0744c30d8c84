//! The `key_files` fuzz target (`fuzz/fuzz_targets/key_files.rs`) run on
//! its checked-in corpus plus a few seconds of mutations, as a unit test of
//! the tool (the parser is private to this binary). See `fuzz/replay.rs`.

#[path = "../../fuzz/replay.rs"]
mod replay;

#[path = "../../fuzz/key_files.rs"]
mod key_files;

#[test]
fn key_files() {
    replay::run(
        env!("CARGO_MANIFEST_DIR"),
        "key_files",
        key_files::key_files,
    );
}
