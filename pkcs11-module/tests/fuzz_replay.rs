//! The module's fuzz targets (`fuzz/fuzz_targets/`), run on their checked-in
//! corpus plus a few seconds of mutations (`FERROHSM_FUZZ_SECONDS`), so they
//! run in every test run without libFuzzer. See `fuzz/replay.rs` and
//! `fuzz/README.md`.
//!
//! Seeds of `mechanism_params`, `template`, `ec_import` and `rsa_import` are
//! made by `ferrohsm_pkcs11::fuzzing::seeds` (`FERROHSM_WRITE_SEEDS=1`
//! rewrites them); those of `pkcs8`, `x509` (and `key_files`) are DER files
//! made by OpenSSL (`fuzz/README.md`).

#[path = "../../fuzz/replay.rs"]
mod replay;

use ferrohsm_pkcs11::fuzzing;

fn run(target: &'static str, f: fn(&[u8])) {
    if std::env::var_os("FERROHSM_WRITE_SEEDS").is_some() {
        let seeds = fuzzing::seeds(target);
        replay::write_seeds(env!("CARGO_MANIFEST_DIR"), target, &seeds);
    }
    replay::run(env!("CARGO_MANIFEST_DIR"), target, f);
}

#[test]
fn mechanism_params() {
    run("mechanism_params", fuzzing::mechanism_params);
}

#[test]
fn template() {
    run("template", fuzzing::template);
}

#[test]
fn pkcs8() {
    run("pkcs8", fuzzing::pkcs8);
}

#[test]
fn ec_import() {
    run("ec_import", fuzzing::ec_import);
}

#[test]
fn rsa_import() {
    run("rsa_import", fuzzing::rsa_import);
}

#[test]
fn x509() {
    run("x509", fuzzing::x509);
}
