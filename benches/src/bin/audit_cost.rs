//! What the audit log costs the XKS hot path, measured in one process: two
//! `Module`s over memory stores, one with auditing on and one off, run the
//! XKS proxy's encrypt sequence (C_GenerateRandom for the IV, C_EncryptInit
//! with AES-GCM and 40 bytes of AAD, a size query, C_Encrypt) in alternating
//! blocks, so machine noise hits both alike. Through the `.so`, compare
//! `ferrohsm-benches --ops xks --audit on` and `--audit off` instead: the same
//! code, but two processes, so only many alternating runs show the difference.
//!
//! Run: `cargo run --release -p ferrohsm-benches --bin audit-cost -- [BYTES] [BLOCKS] [CALLS]`
//! (defaults 4096, 20, 50000 calls per block).
#![forbid(unsafe_code)]
use std::sync::Arc;
use std::time::Instant;

use cryptoki_sys::*;
use ferrohsm_pkcs11::Module;
use ferrohsm_pkcs11::config::Config;
use ferrohsm_pkcs11::mechanism::{Dir, MechanismArg, Param};
use ferrohsm_pkcs11::module::pad;
use ferrohsm_pkcs11::object::policy::RawAttr;
use ferrohsm_pkcs11::session::OutBuf;
use ferrohsm_store::MemoryStore;

/// A module with one token, a logged-in user session and an AES-256 token key.
fn setup(audit: bool) -> (Module, CK_SESSION_HANDLE, CK_OBJECT_HANDLE) {
    let mut c = Config::for_tests();
    c.audit.enabled = audit;
    c.log_level = ferrohsm_pkcs11::logging::Level::Off;
    let m = Module::new(c, Arc::new(MemoryStore::new())).unwrap();
    m.init_token(0, b"so-pin-1", &pad(b"t")).unwrap();
    let h = m
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    m.login(h, CKU_SO, b"so-pin-1").unwrap();
    m.init_pin(h, b"user-pin").unwrap();
    m.logout(h).unwrap();
    m.login(h, CKU_USER, b"user-pin").unwrap();
    let k = m
        .generate_key(
            h,
            &MechanismArg {
                ty: CKM_AES_KEY_GEN,
                param: Param::None,
            },
            &[
                RawAttr::bool(CKA_TOKEN, true),
                RawAttr::ulong(CKA_VALUE_LEN, 32),
                RawAttr::new(CKA_LABEL, b"k"),
            ],
        )
        .unwrap();
    (m, h, k)
}

/// One XKS encrypt sequence.
fn xks(m: &Module, h: CK_SESSION_HANDLE, k: CK_OBJECT_HANDLE, data: &[u8], out: &mut [u8]) {
    let mut iv = [0u8; 12];
    m.generate_random(h, &mut iv).unwrap();
    let mech = MechanismArg {
        ty: CKM_AES_GCM,
        param: Param::Gcm {
            iv: iv.to_vec(),
            aad: vec![7u8; 40],
            tag_bits: 128,
        },
    };
    m.cipher_init(h, &mech, k, Dir::Encrypt).unwrap();
    m.cipher(h, Dir::Encrypt, data, &mut OutBuf::new(None))
        .unwrap();
    m.cipher(h, Dir::Encrypt, data, &mut OutBuf::new(Some(out)))
        .unwrap();
}

fn main() {
    let arg = |i: usize, default: usize| {
        std::env::args().nth(i).map_or(default, |s| {
            s.parse().expect("usage: audit-cost [BYTES] [BLOCKS]")
        })
    };
    let size = arg(1, 4096);
    let blocks = arg(2, 20).max(1);
    let (on, hon, kon) = setup(true);
    let (off, hoff, koff) = setup(false);
    let data = vec![1u8; size];
    let mut out = vec![0u8; size + 16];
    let n = arg(3, 50_000).max(1);
    let (mut ton, mut toff) = (Vec::new(), Vec::new());
    for _ in 0..blocks {
        let t = Instant::now();
        for _ in 0..n {
            xks(&on, hon, kon, &data, &mut out);
        }
        ton.push(t.elapsed().as_nanos() as f64 / n as f64);
        let t = Instant::now();
        for _ in 0..n {
            xks(&off, hoff, koff, &data, &mut out);
        }
        toff.push(t.elapsed().as_nanos() as f64 / n as f64);
    }
    ton.sort_by(|a, b| a.partial_cmp(b).unwrap());
    toff.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let med = |v: &Vec<f64>| v[v.len() / 2];
    println!(
        "{size} B: audit on median {:.0} ns (min {:.0}), off median {:.0} ns (min {:.0}); on/off throughput {:.3} (median), {:.3} (min)",
        med(&ton),
        ton[0],
        med(&toff),
        toff[0],
        med(&toff) / med(&ton),
        toff[0] / ton[0]
    );
}
