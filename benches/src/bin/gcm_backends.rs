//! Issue 18, point 3: AES-256-GCM over 4 KiB with the key state made once,
//! RustCrypto (`aes-gcm` on the same `aes`/`ghash` crates the module's GCM
//! uses) against aws-lc-rs (`LessSafeKey`). Prints ops/s per round,
//! alternating the two so a loaded machine hurts both alike; the module
//! moves GCM to aws-lc-rs only if it is at least 1.3x faster. A measurement
//! to read, not a test: nothing here asserts a speed.
//!
//! `cargo run --release -p ferrohsm-benches --bin gcm-backends [seconds] [rounds]`

use std::time::{Duration, Instant};

use aes_gcm::aead::{AeadInOut, Buffer};
use aes_gcm::{Aes256Gcm, KeyInit};
use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};

const LEN: usize = 4096;

/// Runs `f` for `secs` seconds; ops/s.
fn rate(secs: f64, mut f: impl FnMut(u64)) -> f64 {
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (t0, mut n) = (Instant::now(), 0u64);
    while Instant::now() < end {
        for _ in 0..64 {
            f(n);
            n += 1;
        }
    }
    n as f64 / t0.elapsed().as_secs_f64()
}

fn nonce(n: u64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&n.to_be_bytes());
    iv
}

struct V(Vec<u8>);
impl AsRef<[u8]> for V {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}
impl AsMut<[u8]> for V {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.0
    }
}
impl Buffer for V {
    fn len(&self) -> usize {
        self.0.len()
    }
    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    fn extend_from_slice(&mut self, other: &[u8]) -> aes_gcm::aead::Result<()> {
        self.0.extend_from_slice(other);
        Ok(())
    }
    fn truncate(&mut self, len: usize) {
        self.0.truncate(len)
    }
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let secs: f64 = args.get(1).and_then(|s| s.parse().ok()).unwrap_or(2.0);
    let rounds: usize = args.get(2).and_then(|s| s.parse().ok()).unwrap_or(3);
    let key = [0x42u8; 32];
    let msg: Vec<u8> = (0..LEN).map(|i| i as u8).collect();
    let rc = Aes256Gcm::new(&key.into());
    let lc = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &key).expect("aws-lc-rs key"));

    // Same answer from both before timing.
    let mut a = V(msg.clone());
    rc.encrypt_in_place(&nonce(1).into(), b"", &mut a)
        .expect("RustCrypto seal");
    let mut b = msg.clone();
    lc.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce(1)), Aad::empty(), &mut b)
        .expect("aws-lc-rs seal");
    assert_eq!(a.0, b, "the two GCMs disagree");
    let sealed = b;

    println!("AES-256-GCM, {LEN} B, key state cached, {secs} s per cell, single thread");
    println!(
        "| round | RustCrypto seal | aws-lc-rs seal | ratio | RustCrypto open | aws-lc-rs open | ratio |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|");
    let mut buf = msg.clone();
    for r in 1..=rounds {
        let rc_seal = rate(secs, |n| {
            let mut v = V(std::mem::take(&mut buf));
            v.0.truncate(LEN);
            rc.encrypt_in_place(&nonce(n).into(), b"", &mut v).unwrap();
            buf = std::hint::black_box(v.0);
        });
        let lc_seal = rate(secs, |n| {
            buf.truncate(LEN);
            lc.seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce(n)),
                Aad::empty(),
                &mut buf,
            )
            .unwrap();
            std::hint::black_box(&buf);
        });
        let rc_open = rate(secs, |_| {
            let mut v = V(sealed.clone());
            rc.decrypt_in_place(&nonce(1).into(), b"", &mut v).unwrap();
            std::hint::black_box(v.0);
        });
        let lc_open = rate(secs, |_| {
            let mut v = sealed.clone();
            let p = lc
                .open_in_place(Nonce::assume_unique_for_key(nonce(1)), Aad::empty(), &mut v)
                .unwrap();
            std::hint::black_box(p.len());
        });
        println!(
            "| {r} | {:.0} | {:.0} | {:.2} | {:.0} | {:.0} | {:.2} |",
            rc_seal,
            lc_seal,
            lc_seal / rc_seal,
            rc_open,
            lc_open,
            lc_open / rc_open
        );
    }
}
