//! Issue 18, point 1: key-pair generation, RustCrypto (what the module
//! uses: `rsa` 0.10 with the module's pairwise check, `p256`) against
//! aws-lc-rs (`RsaKeyPair::generate`, `EcdsaKeyPair::generate`), alternating
//! rounds so a loaded machine hurts both alike. Prints keys/s and the
//! spread of RSA generation times (prime search is random: a few slow keys
//! move the mean). A measurement to read, not a test.
//!
//! `cargo run --release -p ferrohsm-benches --bin keygen-backends [rsa keys per round] [rounds]`

use std::time::{Duration, Instant};

use aws_lc_rs::rsa::{KeyPair as AwsRsa, KeySize};
use aws_lc_rs::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use getrandom::SysRng;
use rsa::{BoxedUint, Generate, PrivateKey};

/// Times `n` calls of `f`: (keys/s, median, slowest).
fn time(n: usize, mut f: impl FnMut()) -> (f64, Duration, Duration) {
    let mut each: Vec<Duration> = (0..n)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    let total: Duration = each.iter().sum();
    each.sort();
    (n as f64 / total.as_secs_f64(), each[n / 2], each[n - 1])
}

/// One table row: both backends' (keys/s, median, slowest) and the ratio.
fn row(round: usize, key: &str, rc: (f64, Duration, Duration), lc: (f64, Duration, Duration)) {
    println!(
        "| {round} | {key} | {:.1} ({:.0?}, {:.0?}) | {:.1} ({:.0?}, {:.0?}) | {:.2} |",
        rc.0,
        rc.1,
        rc.2,
        lc.0,
        lc.1,
        lc.2,
        lc.0 / rc.0
    );
}

fn main() {
    let mut args = std::env::args().skip(1).map(|a| a.parse::<usize>());
    let keys = args.next().and_then(Result::ok).unwrap_or(20).max(1);
    let rounds = args.next().and_then(Result::ok).unwrap_or(3).max(1);
    println!(
        "| round | key | RustCrypto keys/s (p50, max) | aws-lc-rs keys/s (p50, max) | aws-lc-rs ÷ RustCrypto |"
    );
    println!("|---:|---|---:|---:|---:|");
    for round in 1..=rounds {
        let rc = time(keys, || {
            let k = PrivateKey::new_with_exp(&mut SysRng, 2048, BoxedUint::from(65_537u32))
                .expect("rsa keygen");
            std::hint::black_box(k);
        });
        let lc = time(keys, || {
            let k = AwsRsa::generate(KeySize::Rsa2048).expect("aws-lc-rs rsa keygen");
            std::hint::black_box(k);
        });
        row(round, "RSA-2048", rc, lc);
        let n = 2000;
        let rc = time(n, || {
            let k =
                p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).expect("p256 keygen");
            std::hint::black_box(k);
        });
        let lc = time(n, || {
            let k =
                EcdsaKeyPair::generate(&ECDSA_P256_SHA256_FIXED_SIGNING).expect("aws-lc-rs p256");
            std::hint::black_box(k);
        });
        row(round, "P-256", rc, lc);
    }
}
