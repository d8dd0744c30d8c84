//! The AES modes and ChaCha20 of issue 17 (cause 9) through the real
//! `libferrohsm_pkcs11.so`: `CKM_AES_CTS` (CBC-CS1), `CKM_AES_CCM`,
//! `CKM_AES_XTS` with `CKK_AES_XTS` keys, `CKM_CHACHA20_POLY1305` and
//! `CKM_CHACHA20` with `CKK_CHACHA20` keys, and `CKM_AES_CMAC_GENERAL`.
//!
//! Each mode runs on a `spec` and an `hsm` token (generated keys, round trips
//! single- and multi-part); known-value checks import keys: Project Wycheproof's
//! AES-CCM, AES-XTS, ChaCha20-Poly1305 and XChaCha20-Poly1305 files (valid
//! vectors must give the expected output, invalid ones the spec's code, and
//! lengths the mechanism does not take `CKR_MECHANISM_PARAM_INVALID`), and the
//! `openssl` CLI for CTS (`-aes-*-cbc-cts`, CS1) and ChaCha20 (`-chacha20`).
//! OpenSSL's `enc` has no AEADs and no XTS, so those rest on the vectors.

use std::collections::HashMap;
use std::ffi::c_void;
use std::process::Command;
use std::ptr;

use cryptoki_sys::*;
use ferrohsm_tests::mech::{Mech, mech_of, opt_ptr};
use ferrohsm_tests::raw::{V, b, check, check_any, ok, rv_name, secret_key_template, u};
use ferrohsm_tests::tok::{Dir, H, Tok, tokens};
use ferrohsm_tests::{Rng, TestEnv, ck, to_hex};

// ---------------------------------------------------------------------------
// mechanisms with pointer parameters, owned
// ---------------------------------------------------------------------------

/// A mechanism of this file with its parameter.
#[derive(Clone, Debug)]
enum P {
    /// A flat byte-string parameter (CTS IV, XTS tweak).
    Bytes(CK_MECHANISM_TYPE, Vec<u8>),
    /// `CK_CCM_PARAMS`.
    Ccm {
        data_len: CK_ULONG,
        nonce: Vec<u8>,
        aad: Vec<u8>,
        mac_len: CK_ULONG,
    },
    /// `CK_SALSA20_CHACHA20_POLY1305_PARAMS`.
    Poly { nonce: Vec<u8>, aad: Vec<u8> },
    /// `CK_CHACHA20_PARAMS` (counter and nonce as bytes; bits = 8 × length).
    Stream { counter: Vec<u8>, nonce: Vec<u8> },
}

/// Lays `p` out as C structures for one call of `f`.
fn with_p<R>(p: &P, f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R {
    match p {
        P::Bytes(ty, v) => {
            let mut v = v.clone();
            f(&mut CK_MECHANISM {
                mechanism: *ty,
                pParameter: opt_ptr(&mut v) as *mut c_void,
                ulParameterLen: v.len() as CK_ULONG,
            })
        }
        P::Ccm {
            data_len,
            nonce,
            aad,
            mac_len,
        } => {
            let (mut nonce, mut aad) = (nonce.clone(), aad.clone());
            let mut prm = CK_CCM_PARAMS {
                ulDataLen: *data_len,
                pNonce: opt_ptr(&mut nonce),
                ulNonceLen: nonce.len() as CK_ULONG,
                pAAD: opt_ptr(&mut aad),
                ulAADLen: aad.len() as CK_ULONG,
                ulMACLen: *mac_len,
            };
            f(&mut mech_of(CKM_AES_CCM, &mut prm))
        }
        P::Poly { nonce, aad } => {
            let (mut nonce, mut aad) = (nonce.clone(), aad.clone());
            let mut prm = CK_SALSA20_CHACHA20_POLY1305_PARAMS {
                pNonce: opt_ptr(&mut nonce),
                ulNonceLen: nonce.len() as CK_ULONG,
                pAAD: opt_ptr(&mut aad),
                ulAADLen: aad.len() as CK_ULONG,
            };
            f(&mut mech_of(CKM_CHACHA20_POLY1305, &mut prm))
        }
        P::Stream { counter, nonce } => {
            let (mut counter, mut nonce) = (counter.clone(), nonce.clone());
            let mut prm = CK_CHACHA20_PARAMS {
                pBlockCounter: opt_ptr(&mut counter),
                blockCounterBits: (counter.len() * 8) as CK_ULONG,
                pNonce: opt_ptr(&mut nonce),
                ulNonceBits: (nonce.len() * 8) as CK_ULONG,
            };
            f(&mut mech_of(CKM_CHACHA20, &mut prm))
        }
    }
}

fn cts(iv: &[u8]) -> P {
    P::Bytes(CKM_AES_CTS, iv.to_vec())
}

fn xts(tweak: &[u8]) -> P {
    P::Bytes(CKM_AES_XTS, tweak.to_vec())
}

fn ccm(data_len: usize, nonce: &[u8], aad: &[u8], mac_len: usize) -> P {
    P::Ccm {
        data_len: data_len as CK_ULONG,
        nonce: nonce.to_vec(),
        aad: aad.to_vec(),
        mac_len: mac_len as CK_ULONG,
    }
}

fn poly(nonce: &[u8], aad: &[u8]) -> P {
    P::Poly {
        nonce: nonce.to_vec(),
        aad: aad.to_vec(),
    }
}

fn stream(counter: &[u8], nonce: &[u8]) -> P {
    P::Stream {
        counter: counter.to_vec(),
        nonce: nonce.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// tokens, keys, calls
// ---------------------------------------------------------------------------

/// A `spec` and an `hsm` token in one data directory, each with a user session.
fn spec_and_hsm() -> (TestEnv, Tok, Tok) {
    let env = TestEnv::new();
    let t = tokens(&[("modes-spec", "spec"), ("modes-hsm", "hsm")]);
    (env, t[0], t[1])
}

/// Imports a session secret key of type `kt` (encrypt, decrypt, sign, verify,
/// wrap, unwrap).
fn import(h: &Tok, kt: CK_KEY_TYPE, value: &[u8]) -> H {
    ok(
        h.create(secret_key_template(
            kt,
            value,
            vec![b(CKA_TOKEN, false), b(CKA_WRAP, true), b(CKA_UNWRAP, true)],
        )),
        &format!("C_CreateObject key type {kt:#x}, {} bytes", value.len()),
    )
}

/// `C_GenerateKey` of a session key with `mech`; `len` as `CKA_VALUE_LEN`
/// when given.
fn generate(h: &Tok, mech: CK_MECHANISM_TYPE, len: Option<CK_ULONG>) -> Result<H, CK_RV> {
    let mut t = vec![
        b(CKA_TOKEN, false),
        b(CKA_ENCRYPT, true),
        b(CKA_DECRYPT, true),
        b(CKA_WRAP, true),
        b(CKA_UNWRAP, true),
    ];
    if let Some(n) = len {
        t.push(u(CKA_VALUE_LEN, n));
    }
    h.generate(mech, t)
}

fn enc(h: &Tok, p: &P, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
    with_p(p, |m| h.crypt(Dir::Enc, m, key, data))
}

fn dec(h: &Tok, p: &P, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
    with_p(p, |m| h.crypt(Dir::Dec, m, key, data))
}

fn multi(h: &Tok, dir: Dir, p: &P, key: H, data: &[u8], cuts: &[usize]) -> Result<Vec<u8>, CK_RV> {
    with_p(p, |m| h.crypt_multi(dir, m, key, data, cuts))
}

fn init(h: &Tok, dir: Dir, p: &P, key: H) -> CK_RV {
    with_p(p, |m| h.crypt_init(dir, m, key))
}

/// Encrypts `data`, checks single-part and multi-part agree both ways, and
/// returns the ciphertext.
#[track_caller]
fn round_trip(h: &Tok, what: &str, p: &P, key: H, data: &[u8], cuts: &[usize]) -> Vec<u8> {
    let ct = ok(enc(h, p, key, data), &format!("{what}: C_Encrypt"));
    let ct2 = ok(
        multi(h, Dir::Enc, p, key, data, cuts),
        &format!("{what}: multi-part encrypt"),
    );
    assert_eq!(to_hex(&ct), to_hex(&ct2), "{what}: multi-part ciphertext");
    let pt = ok(dec(h, p, key, &ct), &format!("{what}: C_Decrypt"));
    assert_eq!(pt, data, "{what}: decrypted");
    let pt2 = ok(
        multi(h, Dir::Dec, p, key, &ct, cuts),
        &format!("{what}: multi-part decrypt"),
    );
    assert_eq!(pt2, data, "{what}: multi-part decrypted");
    ct
}

/// Runs `openssl enc` on `input`; returns stdout.
fn openssl_enc(env: &TestEnv, args: &[&str], input: &[u8]) -> Vec<u8> {
    let inp = env.dir.path().join("openssl-in.bin");
    std::fs::write(&inp, input).expect("write openssl input");
    let out = Command::new("openssl")
        .arg("enc")
        .arg("-in")
        .arg(&inp)
        .args(args)
        .output()
        .expect("run openssl (install the openssl CLI)");
    assert!(
        out.status.success(),
        "openssl enc {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

// ---------------------------------------------------------------------------
// mechanism list
// ---------------------------------------------------------------------------

#[test]
fn new_mechanisms_are_listed_with_their_info() {
    let (_env, spec, _hsm) = spec_and_hsm();
    let ed = CKF_ENCRYPT | CKF_DECRYPT;
    let wraps = CKF_WRAP | CKF_UNWRAP;
    let list: [(CK_MECHANISM_TYPE, CK_FLAGS, CK_ULONG, CK_ULONG); 8] = [
        (CKM_AES_CTS, ed, 16, 32),
        (CKM_AES_CCM, ed | wraps, 16, 32),
        (CKM_AES_XTS_KEY_GEN, CKF_GENERATE, 32, 64),
        (CKM_AES_XTS, ed, 32, 64),
        (CKM_CHACHA20_KEY_GEN, CKF_GENERATE, 32, 32),
        (CKM_CHACHA20, ed, 32, 32),
        (CKM_CHACHA20_POLY1305, ed | wraps, 32, 32),
        (CKM_AES_CMAC_GENERAL, CKF_SIGN | CKF_VERIFY, 16, 32),
    ];
    let mut count: CK_ULONG = 0;
    let rv = ck!(
        spec.m,
        C_GetMechanismList(spec.slot, ptr::null_mut(), &mut count)
    );
    check(rv, CKR_OK, "C_GetMechanismList count");
    let mut all = vec![0; count as usize];
    let rv = ck!(
        spec.m,
        C_GetMechanismList(spec.slot, all.as_mut_ptr(), &mut count)
    );
    check(rv, CKR_OK, "C_GetMechanismList");
    for (mech, flags, min, max) in list {
        assert!(all.contains(&mech), "C_GetMechanismList lacks {mech:#x}");
        let mut info = CK_MECHANISM_INFO::default();
        let rv = ck!(spec.m, C_GetMechanismInfo(spec.slot, mech, &mut info));
        check(rv, CKR_OK, &format!("C_GetMechanismInfo {mech:#x}"));
        assert_eq!(
            info.flags & (flags | CKF_HW),
            flags | CKF_HW,
            "{mech:#x} flags"
        );
        assert_eq!(
            (info.ulMinKeySize, info.ulMaxKeySize),
            (min, max),
            "{mech:#x} sizes"
        );
    }
}

// ---------------------------------------------------------------------------
// CTS
// ---------------------------------------------------------------------------

#[test]
fn cts_matches_openssl_cbc_cts_and_round_trips_on_both_tokens() {
    let (env, spec, hsm) = spec_and_hsm();
    let mut rng = Rng::seeded("cts");
    for klen in [16usize, 24, 32] {
        let kv = rng.bytes(klen);
        let key = import(&spec, CKK_AES, &kv);
        for len in [16usize, 17, 31, 32, 33, 47, 64, 100, 257] {
            let (iv, data) = (rng.bytes(16), rng.bytes(len));
            let what = format!("CTS AES-{} {len} bytes", klen * 8);
            let ct = round_trip(&spec, &what, &cts(&iv), key, &data, &[5, 16, 40]);
            let want = openssl_enc(
                &env,
                &[
                    &format!("-aes-{}-cbc-cts", klen * 8),
                    "-K",
                    &to_hex(&kv),
                    "-iv",
                    &to_hex(&iv),
                ],
                &data,
            );
            assert_eq!(to_hex(&ct), to_hex(&want), "{what}: openssl -cbc-cts (CS1)");
        }
    }
    for tok in [&spec, &hsm] {
        let key = ok(generate(tok, CKM_AES_KEY_GEN, Some(32)), "AES key");
        let data = rng.bytes(77);
        round_trip(
            tok,
            "CTS generated key",
            &cts(&[3; 16]),
            key,
            &data,
            &[1, 70],
        );
        // Shorter than a block: the spec's length codes.
        check(
            enc(tok, &cts(&[3; 16]), key, &[0; 15]).unwrap_err(),
            CKR_DATA_LEN_RANGE,
            "CTS 15 bytes",
        );
        check(
            dec(tok, &cts(&[3; 16]), key, &[0; 15]).unwrap_err(),
            CKR_ENCRYPTED_DATA_LEN_RANGE,
            "CTS decrypt 15 bytes",
        );
        check(
            multi(tok, Dir::Enc, &cts(&[3; 16]), key, &[0; 10], &[4]).unwrap_err(),
            CKR_DATA_LEN_RANGE,
            "CTS multi-part 10 bytes",
        );
        for bad in [vec![], vec![0; 8], vec![0; 17]] {
            check(
                init(tok, Dir::Enc, &cts(&bad), key),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("CTS IV of {} bytes", bad.len()),
            );
        }
    }
}

// ---------------------------------------------------------------------------
// CCM
// ---------------------------------------------------------------------------

#[test]
fn ccm_round_trips_and_refuses_bad_input_on_both_tokens() {
    let (_env, spec, hsm) = spec_and_hsm();
    let mut rng = Rng::seeded("ccm");
    for tok in [&spec, &hsm] {
        let key = ok(generate(tok, CKM_AES_KEY_GEN, Some(16)), "AES key");
        for (len, nonce, mac) in [
            (0usize, 7usize, 4usize),
            (1, 13, 16),
            (40, 12, 8),
            (1000, 10, 14),
        ] {
            let data = rng.bytes(len);
            let p = ccm(len, &rng.bytes(nonce), b"header", mac);
            let ct = round_trip(
                tok,
                &format!("CCM {len}/{nonce}/{mac}"),
                &p,
                key,
                &data,
                &[3, 17],
            );
            assert_eq!(ct.len(), len + mac);
            // A changed byte anywhere fails the tag.
            let mut bad = ct.clone();
            bad[ct.len() / 2] ^= 0x20;
            check(
                dec(tok, &p, key, &bad).unwrap_err(),
                CKR_ENCRYPTED_DATA_INVALID,
                "CCM wrong tag",
            );
        }
        // The data must have the announced length.
        let p = ccm(20, &[1; 12], b"", 16);
        check(
            enc(tok, &p, key, &[0; 21]).unwrap_err(),
            CKR_DATA_LEN_RANGE,
            "CCM longer than ulDataLen",
        );
        check(
            dec(tok, &p, key, &[0; 35]).unwrap_err(),
            CKR_ENCRYPTED_DATA_LEN_RANGE,
            "CCM ciphertext shorter than ulDataLen + MAC",
        );
        for (what, bad) in [
            ("nonce 6", ccm(20, &[1; 6], b"", 16)),
            ("nonce 14", ccm(20, &[1; 14], b"", 16)),
            ("MAC 3", ccm(20, &[1; 12], b"", 3)),
            ("MAC 5", ccm(20, &[1; 12], b"", 5)),
            ("MAC 18", ccm(20, &[1; 12], b"", 18)),
            ("data 2^16 with nonce 13", ccm(65536, &[1; 13], b"", 16)),
        ] {
            check(
                init(tok, Dir::Enc, &bad, key),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("CCM {what}"),
            );
        }
        // A CK_CCM_PARAMS of the wrong size.
        let mut short = [0u8; 40];
        let rv = tok.crypt_init(
            Dir::Enc,
            &mut CK_MECHANISM {
                mechanism: CKM_AES_CCM,
                pParameter: short.as_mut_ptr() as *mut c_void,
                ulParameterLen: 40,
            },
            key,
        );
        check(rv, CKR_MECHANISM_PARAM_INVALID, "CCM parameter of 40 bytes");
    }
}

/// Size queries: NULL output gives the exact length, a short buffer
/// `CKR_BUFFER_TOO_SMALL` with the operation still alive.
#[test]
fn size_queries_follow_the_spec() {
    let (_env, spec, _hsm) = spec_and_hsm();
    let aes = import(&spec, CKK_AES, &[7; 16]);
    let chacha = import(&spec, CKK_CHACHA20, &[8; 32]);
    let xts_key = import(&spec, CKK_AES_XTS, &(0..32).collect::<Vec<u8>>());
    let data = [0x5au8; 40];
    let cases: [(&str, P, H, usize); 4] = [
        ("CTS", cts(&[1; 16]), aes, 40),
        ("CCM", ccm(40, &[2; 12], b"a", 12), aes, 52),
        ("ChaCha20-Poly1305", poly(&[3; 12], b"a"), chacha, 56),
        ("XTS", xts(&[4; 16]), xts_key, 40),
    ];
    for (what, p, key, want) in cases {
        check(init(&spec, Dir::Enc, &p, key), CKR_OK, what);
        let (rv, n) = spec.once_raw(Dir::Enc, &data, None);
        check(rv, CKR_OK, &format!("{what}: size query"));
        assert_eq!(n, want, "{what}: announced length");
        let mut small = vec![0u8; want - 1];
        let (rv, n) = spec.once_raw(Dir::Enc, &data, Some(&mut small));
        check(rv, CKR_BUFFER_TOO_SMALL, &format!("{what}: short buffer"));
        assert_eq!(n, want, "{what}: length after CKR_BUFFER_TOO_SMALL");
        let mut out = vec![0u8; want];
        let (rv, n) = spec.once_raw(Dir::Enc, &data, Some(&mut out));
        check(rv, CKR_OK, &format!("{what}: still alive"));
        assert_eq!(n, want);
        // Decrypting it back: the size query of C_DecryptFinal after updates.
        check(init(&spec, Dir::Dec, &p, key), CKR_OK, what);
        let got = ok(spec.update(Dir::Dec, &out[..10]), what);
        let mut all = got;
        all.extend(ok(spec.update(Dir::Dec, &out[10..]), what));
        all.extend(ok(
            spec.finish(Dir::Dec),
            &format!("{what}: C_DecryptFinal"),
        ));
        assert_eq!(all, data, "{what}: decrypted");
    }
}

// ---------------------------------------------------------------------------
// ChaCha20 and ChaCha20-Poly1305
// ---------------------------------------------------------------------------

#[test]
fn chacha20_keys_generate_without_value_len_and_check_values() {
    let (env, spec, hsm) = spec_and_hsm();
    for tok in [&spec, &hsm] {
        let k = ok(generate(tok, CKM_CHACHA20_KEY_GEN, None), "ChaCha20 key");
        assert_eq!(tok.get_ulong(k, CKA_VALUE_LEN), 32);
        assert_eq!(tok.get_ulong(k, CKA_KEY_TYPE), CKK_CHACHA20);
        let k2 = ok(generate(tok, CKM_CHACHA20_KEY_GEN, Some(32)), "with 32");
        assert_ne!(k, k2);
        check(
            generate(tok, CKM_CHACHA20_KEY_GEN, Some(16)).unwrap_err(),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "ChaCha20 key of 16 bytes",
        );
        let data = b"a message for the generated ChaCha20 key".to_vec();
        round_trip(
            tok,
            "ChaCha20-Poly1305",
            &poly(&[9; 12], b"aad"),
            k,
            &data,
            &[2, 33],
        );
        round_trip(
            tok,
            "ChaCha20",
            &stream(&[0; 4], &[9; 12]),
            k,
            &data,
            &[2, 33],
        );
    }
    // Check value: the keystream's first three bytes (zero nonce and
    // counter), as `openssl enc -chacha20` of zeros gives it.
    let kv: Vec<u8> = (100..132).collect();
    let k = import(&spec, CKK_CHACHA20, &kv);
    let want = openssl_enc(
        &env,
        &["-chacha20", "-K", &to_hex(&kv), "-iv", &"00".repeat(16)],
        &[0; 3],
    );
    assert_eq!(ok(spec.get(k, CKA_CHECK_VALUE), "CKA_CHECK_VALUE"), want);
    check(
        spec.create(secret_key_template(CKK_CHACHA20, &[1; 16], vec![]))
            .unwrap_err(),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "ChaCha20 key of 16 bytes imported",
    );
}

#[test]
fn chacha20_stream_matches_openssl() {
    let (env, spec, _hsm) = spec_and_hsm();
    let mut rng = Rng::seeded("chacha20");
    for len in [1usize, 63, 64, 65, 300] {
        let (kv, nonce, data) = (rng.bytes(32), rng.bytes(12), rng.bytes(len));
        let counter = (rng.next_u64() as u32).to_le_bytes();
        let k = import(&spec, CKK_CHACHA20, &kv);
        let p = stream(&counter, &nonce);
        let ct = round_trip(&spec, "ChaCha20", &p, k, &data, &[1, 64, 70]);
        // OpenSSL's 16-byte IV is the counter (little-endian) then the nonce.
        let iv = [&counter[..], &nonce].concat();
        let want = openssl_enc(
            &env,
            &["-chacha20", "-K", &to_hex(&kv), "-iv", &to_hex(&iv)],
            &data,
        );
        assert_eq!(to_hex(&ct), to_hex(&want), "ChaCha20 {len} bytes: openssl");
        // The 64-bit counter / 64-bit nonce split: OpenSSL's IV is the same
        // state words (counter low, counter high = nonce[..4], nonce[4..]).
        let p64 = stream(&[&counter[..], &nonce[..4]].concat(), &nonce[4..]);
        let ct64 = ok(enc(&spec, &p64, k, &data), "ChaCha20 64/64");
        assert_eq!(to_hex(&ct64), to_hex(&want), "64/64 split, same state");
    }
    let k = import(&spec, CKK_CHACHA20, &[1; 32]);
    // The AEADs encrypt with the stream from block 1: with a 24-byte nonce
    // (XChaCha20) and with an 8-byte one (the original ChaCha20, the same
    // state as a 12-byte nonce with four zero bytes in front).
    for (nonce, counter) in [
        (vec![3u8; 24], vec![1u8, 0, 0, 0]),
        (vec![4; 8], vec![1, 0, 0, 0, 0, 0, 0, 0]),
    ] {
        let zeros = [0u8; 100];
        let sealed = ok(enc(&spec, &poly(&nonce, b""), k, &zeros), "AEAD");
        let ks = ok(enc(&spec, &stream(&counter, &nonce), k, &zeros), "stream");
        assert_eq!(
            to_hex(&sealed[..100]),
            to_hex(&ks),
            "nonce of {}",
            nonce.len()
        );
    }
    let padded = [&[0u8; 4][..], &[4; 8]].concat();
    assert_eq!(
        ok(enc(&spec, &poly(&[4; 8], b"x"), k, b"data"), "8-byte nonce"),
        ok(
            enc(&spec, &poly(&padded, b"x"), k, b"data"),
            "12-byte nonce"
        ),
    );
    for (what, bad) in [
        ("counter 32, nonce 64", stream(&[0; 4], &[0; 8])),
        ("counter 64, nonce 96", stream(&[0; 8], &[0; 12])),
        ("counter 16", stream(&[0; 2], &[0; 12])),
    ] {
        check(
            init(&spec, Dir::Enc, &bad, k),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("ChaCha20 {what}"),
        );
    }
}

#[test]
fn chacha20_poly1305_rfc8439_wrong_tag_and_wrapping() {
    let (_env, spec, hsm) = spec_and_hsm();
    let kv: Vec<u8> = (0x80..0xa0).collect();
    let k = import(&spec, CKK_CHACHA20, &kv);
    let p = poly(
        &ferrohsm_tests::from_hex("070000004041424344454647"),
        &ferrohsm_tests::from_hex("50515253c0c1c2c3c4c5c6c7"),
    );
    let msg = b"Ladies and Gentlemen of the class of '99: If I could offer you only one tip for the future, sunscreen would be it.";
    let ct = round_trip(&spec, "RFC 8439 2.8.2", &p, k, msg, &[10, 64]);
    assert_eq!(
        to_hex(&ct[..16]),
        "d31a8d34648e60db7b86afbc53ef7ec2",
        "RFC 8439 2.8.2 ciphertext"
    );
    assert_eq!(
        to_hex(&ct[ct.len() - 16..]),
        "1ae10b594f09e26a7e902ecbd0600691",
        "RFC 8439 2.8.2 tag"
    );
    let mut bad = ct.clone();
    *bad.last_mut().unwrap() ^= 1;
    check(
        dec(&spec, &p, k, &bad).unwrap_err(),
        CKR_ENCRYPTED_DATA_INVALID,
        "ChaCha20-Poly1305 wrong tag",
    );
    check(
        multi(&spec, Dir::Dec, &p, k, &bad, &[5]).unwrap_err(),
        CKR_ENCRYPTED_DATA_INVALID,
        "ChaCha20-Poly1305 wrong tag, multi-part",
    );
    check(
        dec(&spec, &p, k, &ct[..15]).unwrap_err(),
        CKR_ENCRYPTED_DATA_LEN_RANGE,
        "ChaCha20-Poly1305 shorter than the tag",
    );
    for (what, bad) in [
        ("nonce 7", poly(&[0; 7], b"")),
        ("nonce 16", poly(&[0; 16], b"")),
        ("no nonce", poly(&[], b"")),
    ] {
        check(
            init(&spec, Dir::Enc, &bad, k),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("ChaCha20-Poly1305 {what}"),
        );
    }
    // An AES key is the wrong key type for ChaCha20 mechanisms.
    let aes = import(&spec, CKK_AES, &[1; 16]);
    check(
        init(&spec, Dir::Enc, &p, aes),
        CKR_KEY_TYPE_INCONSISTENT,
        "ChaCha20-Poly1305 with an AES key",
    );
    // Wrapping an AES key under a generated ChaCha20 key on both tokens
    // (CCM too): unwrap gives a key that decrypts what the original encrypted.
    for tok in [&spec, &hsm] {
        // Wrapping keys that wrap and unwrap only (the hsm policy refuses a
        // wrapping key that may also decrypt).
        let kek_template = |len: Option<CK_ULONG>| {
            let mut t = vec![
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
                b(CKA_UNWRAP, true),
                b(CKA_ENCRYPT, false),
                b(CKA_DECRYPT, false),
            ];
            t.extend(len.map(|n| u(CKA_VALUE_LEN, n)));
            t
        };
        let kek = ok(
            tok.generate(CKM_CHACHA20_KEY_GEN, kek_template(None)),
            "ChaCha20 KEK",
        );
        let aes_kek = ok(
            tok.generate(CKM_AES_KEY_GEN, kek_template(Some(32))),
            "AES KEK",
        );
        let mut t = vec![
            b(CKA_TOKEN, false),
            b(CKA_ENCRYPT, true),
            b(CKA_DECRYPT, true),
            b(CKA_EXTRACTABLE, true),
            u(CKA_VALUE_LEN, 16),
        ];
        let target = ok(tok.generate(CKM_AES_KEY_GEN, t.clone()), "key to wrap");
        let ct = ok(
            tok.encrypt(&Mech::Bytes(CKM_AES_CBC, vec![0; 16]), target, &[0x42; 32]),
            "encrypt under the key to wrap",
        );
        t.retain(|(a, _)| *a != CKA_VALUE_LEN);
        t.push((CKA_CLASS, V::U(CKO_SECRET_KEY)));
        t.push((CKA_KEY_TYPE, V::U(CKK_AES)));
        for (what, p, kek) in [
            ("ChaCha20-Poly1305", poly(&[5; 12], b"wrap"), kek),
            ("CCM", ccm(16, &[6; 12], b"wrap", 16), aes_kek),
        ] {
            let wrapped = with_p(&p, |m| wrap(tok, m, kek, target));
            let wrapped = ok(wrapped, &format!("{what}: C_WrapKey"));
            assert_eq!(wrapped.len(), 32, "{what}: 16-byte key + tag");
            let back = with_p(&p, |m| unwrap(tok, m, kek, &wrapped, &t));
            let back = ok(back, &format!("{what}: C_UnwrapKey"));
            let pt = ok(
                tok.decrypt(&Mech::Bytes(CKM_AES_CBC, vec![0; 16]), back, &ct),
                "decrypt with the unwrapped key",
            );
            assert_eq!(pt, [0x42; 32], "{what}: unwrapped key works");
            let mut bad = wrapped.clone();
            bad[0] ^= 1;
            let rv = with_p(&p, |m| unwrap(tok, m, kek, &bad, &t)).unwrap_err();
            assert!(
                rv == CKR_WRAPPED_KEY_INVALID || rv == CKR_ENCRYPTED_DATA_INVALID,
                "{what}: tampered wrapped key gave {}",
                rv_name(rv)
            );
        }
    }
}

fn wrap(tok: &Tok, m: &mut CK_MECHANISM, kek: H, key: H) -> Result<Vec<u8>, CK_RV> {
    let mut n: CK_ULONG = 0;
    let rv = ck!(
        tok.m,
        C_WrapKey(tok.s, m, kek, key, ptr::null_mut(), &mut n)
    );
    ferrohsm_tests::raw::rv_result(rv)?;
    let mut out = vec![0u8; n as usize];
    let rv = ck!(
        tok.m,
        C_WrapKey(tok.s, m, kek, key, out.as_mut_ptr(), &mut n)
    );
    ferrohsm_tests::raw::rv_result(rv)?;
    out.truncate(n as usize);
    Ok(out)
}

fn unwrap(
    tok: &Tok,
    m: &mut CK_MECHANISM,
    kek: H,
    wrapped: &[u8],
    t: &[(CK_ATTRIBUTE_TYPE, V)],
) -> Result<H, CK_RV> {
    let mut tpl = ferrohsm_tests::raw::Tpl::new(t.to_vec());
    let mut w = wrapped.to_vec();
    let mut h = CK_INVALID_HANDLE;
    let rv = ck!(
        tok.m,
        C_UnwrapKey(
            tok.s,
            m,
            kek,
            w.as_mut_ptr(),
            w.len() as CK_ULONG,
            tpl.ptr(),
            tpl.len(),
            &mut h,
        )
    );
    ferrohsm_tests::raw::rv_result(rv)?;
    Ok(h)
}

// ---------------------------------------------------------------------------
// XTS
// ---------------------------------------------------------------------------

#[test]
fn xts_keys_round_trips_and_errors_on_both_tokens() {
    let (_env, spec, hsm) = spec_and_hsm();
    let mut rng = Rng::seeded("xts");
    for tok in [&spec, &hsm] {
        for len in [32, 64] {
            let k = ok(generate(tok, CKM_AES_XTS_KEY_GEN, Some(len)), "XTS key");
            assert_eq!(tok.get_ulong(k, CKA_KEY_TYPE), CKK_AES_XTS);
            for n in [16usize, 17, 31, 32, 100, 4096] {
                let data = rng.bytes(n);
                let ct = round_trip(
                    tok,
                    &format!("XTS {len} {n}"),
                    &xts(&[7; 16]),
                    k,
                    &data,
                    &[3],
                );
                assert_eq!(ct.len(), n);
            }
            check(
                enc(tok, &xts(&[7; 16]), k, &[0; 15]).unwrap_err(),
                CKR_DATA_LEN_RANGE,
                "XTS 15 bytes",
            );
            check(
                dec(tok, &xts(&[7; 16]), k, &[0; 15]).unwrap_err(),
                CKR_ENCRYPTED_DATA_LEN_RANGE,
                "XTS decrypt 15 bytes",
            );
            check(
                init(tok, Dir::Enc, &xts(&[7; 8]), k),
                CKR_MECHANISM_PARAM_INVALID,
                "XTS tweak of 8 bytes",
            );
            // XTS keys are no AES keys, and the other way round.
            check(
                init(tok, Dir::Enc, &cts(&[0; 16]), k),
                CKR_KEY_TYPE_INCONSISTENT,
                "CTS with an XTS key",
            );
        }
        for bad in [None, Some(16), Some(48)] {
            let rv = generate(tok, CKM_AES_XTS_KEY_GEN, bad).unwrap_err();
            let want = if bad.is_none() {
                CKR_TEMPLATE_INCOMPLETE
            } else {
                CKR_ATTRIBUTE_VALUE_INVALID
            };
            check(rv, want, &format!("XTS key of {bad:?} bytes"));
        }
        // SP 800-38E: the two halves must differ.
        let mut same = [0x11u8; 64];
        check(
            tok.create(secret_key_template(
                CKK_AES_XTS,
                &same,
                vec![b(CKA_TOKEN, false)],
            ))
            .unwrap_err(),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "XTS key with equal halves",
        );
        same[63] = 0x12;
        ok(
            tok.create(secret_key_template(
                CKK_AES_XTS,
                &same,
                vec![b(CKA_TOKEN, false)],
            )),
            "XTS key with different halves",
        );
        let aes = ok(generate(tok, CKM_AES_KEY_GEN, Some(32)), "AES key");
        check(
            init(tok, Dir::Enc, &xts(&[7; 16]), aes),
            CKR_KEY_TYPE_INCONSISTENT,
            "XTS with an AES key",
        );
    }
}

// ---------------------------------------------------------------------------
// Wycheproof: AES-CCM, AES-XTS, ChaCha20-Poly1305, XChaCha20-Poly1305
// ---------------------------------------------------------------------------

/// Imports each distinct key value once.
struct KeyCache<'a> {
    tok: &'a Tok,
    kt: CK_KEY_TYPE,
    keys: HashMap<Vec<u8>, H>,
}

impl KeyCache<'_> {
    fn get(&mut self, value: &[u8]) -> H {
        let (tok, kt) = (self.tok, self.kt);
        *self
            .keys
            .entry(value.to_vec())
            .or_insert_with(|| import(tok, kt, value))
    }
}

/// One AEAD vector: encrypt must give ct||tag (valid), decrypt must give the
/// message back (valid) or `CKR_ENCRYPTED_DATA_INVALID` (invalid); a
/// parameter the mechanism does not take must be refused at init. Returns
/// whether the vector was in the mechanism's range.
fn aead_vector(
    h: &Tok,
    name: &str,
    p: &P,
    in_range: bool,
    key: H,
    t: &wycheproof::aead::Test,
) -> bool {
    let valid = t.result != wycheproof::TestResult::Invalid;
    if !in_range {
        check(
            init(h, Dir::Dec, p, key),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("{name}: out-of-range parameter"),
        );
        return false;
    }
    let sealed = [&t.ct[..], &t.tag[..]].concat();
    match dec(h, p, key, &sealed) {
        Ok(pt) => {
            assert!(valid, "{name}: invalid vector decrypted");
            assert_eq!(to_hex(&pt), to_hex(&t.pt), "{name}: plaintext");
            let ct = ok(enc(h, p, key, &t.pt), &format!("{name}: encrypt"));
            assert_eq!(to_hex(&ct), to_hex(&sealed), "{name}: ciphertext");
        }
        Err(rv) => {
            assert!(!valid, "{name}: valid vector refused with {}", rv_name(rv));
            // A wrong tag, or a ciphertext too short to hold one.
            check_any(
                rv,
                &[CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE],
                name,
            );
        }
    }
    true
}

#[test]
fn wycheproof_aes_ccm() {
    use wycheproof::aead::{TestName, TestSet};
    let (_env, spec, _hsm) = spec_and_hsm();
    let set = TestSet::load(TestName::AesCcm).expect("load");
    let mut keys = KeyCache {
        tok: &spec,
        kt: CKK_AES,
        keys: HashMap::new(),
    };
    let (mut run, mut refused) = (0, 0);
    for g in &set.test_groups {
        for t in &g.tests {
            let name = format!("AES-CCM tc {} ({})", t.tc_id, t.comment);
            let (n, m) = (t.nonce.len(), g.tag_size / 8);
            let in_range = (7..=13).contains(&n) && (4..=16).contains(&m) && m % 2 == 0;
            let p = ccm(t.pt.len(), &t.nonce, &t.aad, m);
            let key = keys.get(&t.key);
            if aead_vector(&spec, &name, &p, in_range, key, t) {
                run += 1;
            } else {
                refused += 1;
            }
        }
    }
    println!("Wycheproof AES-CCM: {run} run, {refused} refused as out of range");
    assert!(run > 300, "only {run} vectors in range");
}

#[test]
fn wycheproof_chacha20_poly1305_and_xchacha() {
    use wycheproof::aead::{TestName, TestSet};
    let (_env, spec, _hsm) = spec_and_hsm();
    let mut keys = KeyCache {
        tok: &spec,
        kt: CKK_CHACHA20,
        keys: HashMap::new(),
    };
    // A 12-byte nonce is RFC 8439, a 24-byte one XChaCha20-Poly1305: each
    // file's vectors with the other's nonce length fail authentication.
    for file in [TestName::ChaCha20Poly1305, TestName::XChaCha20Poly1305] {
        let set = TestSet::load(file).expect("load");
        let file = format!("{file:?}");
        let (mut run, mut refused) = (0, 0);
        for g in &set.test_groups {
            for t in &g.tests {
                let name = format!("{file} tc {} ({})", t.tc_id, t.comment);
                let in_range = matches!(t.nonce.len(), 8 | 12 | 24) && g.tag_size == 128;
                if t.key.len() != 32 {
                    continue;
                }
                let key = keys.get(&t.key);
                if aead_vector(&spec, &name, &poly(&t.nonce, &t.aad), in_range, key, t) {
                    run += 1;
                } else {
                    refused += 1;
                }
            }
        }
        println!("Wycheproof {file}: {run} run, {refused} refused as out of range");
        assert!(run > 250, "{file}: only {run} vectors in range");
    }
}

#[test]
fn wycheproof_aes_xts() {
    use wycheproof::cipher::{TestName, TestSet};
    let (_env, spec, _hsm) = spec_and_hsm();
    let set = TestSet::load(TestName::AesXts).expect("load");
    let mut keys = KeyCache {
        tok: &spec,
        kt: CKK_AES_XTS,
        keys: HashMap::new(),
    };
    let (mut run, mut skipped) = (0, 0);
    for g in &set.test_groups {
        for t in &g.tests {
            // PKCS#11 XTS keys are 32 or 64 bytes (two AES-128 or AES-256
            // keys); the 48-byte groups (two AES-192 keys) have no key type.
            if !matches!(t.key.len(), 32 | 64) {
                skipped += 1;
                continue;
            }
            let name = format!("AES-XTS tc {} ({})", t.tc_id, t.comment);
            // Shorter IVs are the tweak's first bytes (a little-endian
            // sector number), zero-padded to the block.
            let mut tweak = t.nonce.to_vec();
            tweak.resize(16, 0);
            let key = keys.get(&t.key);
            let ct = ok(enc(&spec, &xts(&tweak), key, &t.pt), &name);
            assert_eq!(to_hex(&ct), to_hex(&t.ct), "{name}: ciphertext");
            let pt = ok(dec(&spec, &xts(&tweak), key, &t.ct), &name);
            assert_eq!(to_hex(&pt), to_hex(&t.pt), "{name}: plaintext");
            run += 1;
        }
    }
    println!("Wycheproof AES-XTS: {run} run, {skipped} with 48-byte keys skipped");
    assert!(run >= 80, "only {run} XTS vectors run");
}

// ---------------------------------------------------------------------------
// CMAC_GENERAL
// ---------------------------------------------------------------------------

#[test]
fn cmac_general_lengths_and_errors() {
    let (_env, spec, hsm) = spec_and_hsm();
    // RFC 4493 example 2 (16-byte message).
    let k = import(
        &spec,
        CKK_AES,
        &ferrohsm_tests::from_hex("2b7e151628aed2a6abf7158809cf4f3c"),
    );
    let msg = ferrohsm_tests::from_hex("6bc1bee22e409f96e93d7e117393172a");
    let full = "070a16b46b4d4144f79bdd9dd04a287c";
    for len in [1usize, 4, 10, 16] {
        let g = Mech::General(CKM_AES_CMAC_GENERAL, len as CK_ULONG);
        let mac = ok(spec.sign(&g, k, &msg), &format!("CMAC_GENERAL {len}"));
        assert_eq!(to_hex(&mac), full[..2 * len], "CMAC_GENERAL {len}");
        check(spec.verify(&g, k, &msg, &mac), CKR_OK, "verify");
        let mut bad = mac.clone();
        bad[0] ^= 1;
        check(
            spec.verify(&g, k, &msg, &bad),
            CKR_SIGNATURE_INVALID,
            &format!("CMAC_GENERAL {len} wrong MAC"),
        );
        check(
            spec.verify(&g, k, &msg, &full.as_bytes()[..len + 1]),
            CKR_SIGNATURE_LEN_RANGE,
            &format!("CMAC_GENERAL {len}: MAC one byte longer"),
        );
    }
    for bad in [0, 17] {
        check(
            spec.sign_init(&Mech::General(CKM_AES_CMAC_GENERAL, bad), k),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("CMAC_GENERAL length {bad}"),
        );
    }
    check(
        spec.sign_init(&Mech::Plain(CKM_AES_CMAC_GENERAL), k),
        CKR_MECHANISM_PARAM_INVALID,
        "CMAC_GENERAL without parameter",
    );
    // On the hsm token with a generated key: the general MAC is the full
    // one cut short.
    let gk = ok(
        hsm.generate(
            CKM_AES_KEY_GEN,
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_VERIFY, true),
                u(CKA_VALUE_LEN, 32),
            ],
        ),
        "hsm AES key",
    );
    let full = ok(hsm.sign(&Mech::Plain(CKM_AES_CMAC), gk, b"data"), "CMAC");
    let cut = ok(
        hsm.sign(&Mech::General(CKM_AES_CMAC_GENERAL, 8), gk, b"data"),
        "CMAC_GENERAL 8",
    );
    assert_eq!(cut, full[..8]);
}

// ---------------------------------------------------------------------------
// derived keys of the new types
// ---------------------------------------------------------------------------

#[test]
fn hkdf_derives_chacha20_and_xts_keys() {
    use ferrohsm_tests::mech::Salt;
    let (_env, spec, hsm) = spec_and_hsm();
    for tok in [&spec, &hsm] {
        let base = ok(
            tok.generate(
                CKM_GENERIC_SECRET_KEY_GEN,
                vec![
                    b(CKA_TOKEN, false),
                    b(CKA_DERIVE, true),
                    u(CKA_VALUE_LEN, 32),
                ],
            ),
            "HKDF base key",
        );
        let hkdf = Mech::Hkdf {
            data: false,
            extract: true,
            expand: true,
            salt: Salt::Data(b"salt".to_vec()),
            info: b"info".to_vec(),
        };
        let usage = || {
            vec![
                (CKA_CLASS, V::U(CKO_SECRET_KEY)),
                b(CKA_TOKEN, false),
                b(CKA_ENCRYPT, true),
                b(CKA_DECRYPT, true),
            ]
        };
        // ChaCha20: one size, so no CKA_VALUE_LEN needed.
        let mut t = usage();
        t.push((CKA_KEY_TYPE, V::U(CKK_CHACHA20)));
        let k = ok(tok.derive(&hkdf, base, t), "derive a ChaCha20 key");
        assert_eq!(tok.get_ulong(k, CKA_VALUE_LEN), 32);
        round_trip(
            tok,
            "derived ChaCha20",
            &poly(&[1; 12], b""),
            k,
            b"derived",
            &[3],
        );
        // XTS: two sizes, so CKA_VALUE_LEN is required.
        let mut t = usage();
        t.push((CKA_KEY_TYPE, V::U(CKK_AES_XTS)));
        check(
            tok.derive(&hkdf, base, t.clone()).unwrap_err(),
            CKR_TEMPLATE_INCOMPLETE,
            "derive an XTS key without CKA_VALUE_LEN",
        );
        t.push(u(CKA_VALUE_LEN, 64));
        let k = ok(tok.derive(&hkdf, base, t), "derive an XTS key");
        assert_eq!(tok.get_ulong(k, CKA_VALUE_LEN), 64);
        round_trip(tok, "derived XTS", &xts(&[2; 16]), k, &[9; 40], &[3]);
    }
}
