//! Issue 17, causes 2 and 8, through the real `.so`:
//!
//! - legacy algorithms (DES and triple DES, MD5, RSA PKCS#1 v1.5 key
//!   transport) work on `spec` tokens, against published vectors (FIPS 81,
//!   SP 800-67, SP 800-38B, RFC 1321, RFC 2202) and the `openssl` CLI, while
//!   `hsm` tokens neither list nor accept them (`CKR_MECHANISM_INVALID`, a log
//!   line naming the policy) and store no DES key;
//! - SHA-3 everywhere SHA-2 is, on both policies: digests (FIPS 202),
//!   HMACs, RSA PKCS#1 v1.5 and PSS, ECDSA and OAEP, each signature checked by
//!   `openssl` with the public key the token exports; and the SHA-224 forms.

use std::path::PathBuf;
use std::process::Command;
use std::ptr;

use cryptoki_sys::*;
use ferrohsm_tests::child::{init_token_args, pkcs11_tool, run_captured};
use ferrohsm_tests::mech::{Mech, mech_of};
use ferrohsm_tests::raw::{b, by, check, err, ok, rv_name, secret_key_template, u};
use ferrohsm_tests::tok::{Dir, H, Tok, tokens};
use ferrohsm_tests::{TestEnv, USER_PIN, ck, from_hex, to_hex};

const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const P384: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];

/// Every legacy mechanism, with the capability a client would use it for.
const LEGACY: &[CK_MECHANISM_TYPE] = &[
    CKM_DES_KEY_GEN,
    CKM_DES2_KEY_GEN,
    CKM_DES3_KEY_GEN,
    CKM_DES_ECB,
    CKM_DES_CBC,
    CKM_DES_CBC_PAD,
    CKM_DES3_ECB,
    CKM_DES3_CBC,
    CKM_DES3_CBC_PAD,
    CKM_DES3_CMAC,
    CKM_DES3_CMAC_GENERAL,
    CKM_MD5,
    CKM_MD5_HMAC,
    CKM_MD5_HMAC_GENERAL,
    CKM_MD5_RSA_PKCS,
];

/// The SHA-3 mechanisms, offered on every token.
const SHA3: &[CK_MECHANISM_TYPE] = &[
    CKM_SHA3_224,
    CKM_SHA3_256,
    CKM_SHA3_384,
    CKM_SHA3_512,
    CKM_SHA3_224_HMAC,
    CKM_SHA3_256_HMAC_GENERAL,
    CKM_SHA3_512_HMAC,
    CKM_SHA3_224_RSA_PKCS,
    CKM_SHA3_256_RSA_PKCS_PSS,
    CKM_SHA3_512_RSA_PKCS,
    CKM_ECDSA_SHA3_224,
    CKM_ECDSA_SHA3_256,
    CKM_ECDSA_SHA3_384,
    CKM_ECDSA_SHA3_512,
];

/// A test process's `hsm` and `spec` tokens (one module, one data directory).
fn both() -> (TestEnv, Tok, Tok) {
    let env = TestEnv::new();
    let t = tokens(&[("hsm", "hsm"), ("spec", "spec")]);
    (env, t[0], t[1])
}

/// A test process with one `spec` token.
fn spec() -> (TestEnv, Tok) {
    let env = TestEnv::new();
    let t = tokens(&[("spec", "spec")]);
    (env, t[0])
}

/// A test process with one `hsm` token.
fn hsm() -> (TestEnv, Tok) {
    let env = TestEnv::new();
    let t = tokens(&[("hsm", "hsm")]);
    (env, t[0])
}

fn mechanism_list(t: &Tok) -> Vec<CK_MECHANISM_TYPE> {
    let mut n: CK_ULONG = 0;
    check(
        ck!(t.m, C_GetMechanismList(t.slot, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_GetMechanismList count",
    );
    let mut v = vec![0; n as usize];
    check(
        ck!(t.m, C_GetMechanismList(t.slot, v.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_GetMechanismList",
    );
    v.truncate(n as usize);
    v
}

fn mechanism_info(t: &Tok, ty: CK_MECHANISM_TYPE) -> Result<CK_MECHANISM_INFO, CK_RV> {
    let mut info = CK_MECHANISM_INFO::default();
    match ck!(t.m, C_GetMechanismInfo(t.slot, ty, &mut info)) {
        CKR_OK => Ok(info),
        rv => Err(rv),
    }
}

/// `C_DigestInit` + `C_Digest` (with its size query).
fn digest(t: &Tok, ty: CK_MECHANISM_TYPE, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
    let mut m = CK_MECHANISM {
        mechanism: ty,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    match ck!(t.m, C_DigestInit(t.s, &mut m)) {
        CKR_OK => {}
        rv => return Err(rv),
    }
    let mut d = data.to_vec();
    let mut n: CK_ULONG = 0;
    let rv = ck!(
        t.m,
        C_Digest(
            t.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            ptr::null_mut(),
            &mut n
        )
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut out = vec![0u8; n as usize];
    let rv = ck!(
        t.m,
        C_Digest(
            t.s,
            d.as_mut_ptr(),
            d.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    out.truncate(n as usize);
    Ok(out)
}

/// A session secret key of type `kt` for every use (non-sensitive: `spec`).
fn secret(t: &Tok, kt: CK_KEY_TYPE, value: &[u8]) -> H {
    ok(
        t.create(secret_key_template(
            kt,
            value,
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SENSITIVE, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_WRAP, true),
                b(CKA_UNWRAP, true),
            ],
        )),
        &format!("C_CreateObject key type {kt:#x}"),
    )
}

/// An RSA-2048 session key pair for signing, encryption and wrapping.
fn rsa_pair(t: &Tok) -> (H, H) {
    ok(
        t.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
                b(CKA_ENCRYPT, true),
                b(CKA_WRAP, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_DECRYPT, true),
                b(CKA_UNWRAP, true),
                b(CKA_SENSITIVE, true),
            ],
        ),
        "RSA-2048 key pair",
    )
}

/// An EC session key pair on the curve of `params`.
fn ec_pair(t: &Tok, params: &[u8]) -> (H, H) {
    ok(
        t.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![
                by(CKA_EC_PARAMS, params),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_SENSITIVE, true),
            ],
        ),
        "EC key pair",
    )
}

fn ul(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

/// `CK_RSA_PKCS_PSS_PARAMS` for mechanism `ty`.
fn pss(ty: CK_MECHANISM_TYPE, hash: CK_MECHANISM_TYPE, mgf: CK_ULONG, salt: CK_ULONG) -> Mech {
    Mech::Bytes(ty, [ul(hash), ul(mgf), ul(salt)].concat())
}

fn file(env: &TestEnv, name: &str, data: &[u8]) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, data).expect("write scratch file");
    p
}

/// Runs `openssl args`: (success, stdout, stderr).
fn openssl(args: &[&str]) -> (bool, Vec<u8>, String) {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl (Debian package openssl)");
    (
        out.status.success(),
        out.stdout,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Whether `openssl dgst -<md> -verify` (with `sigopts`) accepts `sig` over
/// `msg` under the token's public key `public` (its `CKA_PUBLIC_KEY_INFO`).
fn openssl_verifies(
    env: &TestEnv,
    t: &Tok,
    public: H,
    md: &str,
    sigopts: &[&str],
    msg: &[u8],
    sig: &[u8],
) -> bool {
    let spki = ok(t.get(public, CKA_PUBLIC_KEY_INFO), "CKA_PUBLIC_KEY_INFO");
    let key = file(env, "pub.der", &spki);
    let (m, s) = (file(env, "msg.bin", msg), file(env, "sig.bin", sig));
    let mut args = vec![
        "dgst".to_string(),
        format!("-{md}"),
        "-verify".into(),
        key.display().to_string(),
        "-keyform".into(),
        "DER".into(),
        "-signature".into(),
        s.display().to_string(),
    ];
    for o in sigopts {
        args.push("-sigopt".into());
        args.push(o.to_string());
    }
    args.push(m.display().to_string());
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let (ok, stdout, stderr) = openssl(&args);
    assert!(
        ok || String::from_utf8_lossy(&stdout).contains("Verification failure"),
        "openssl {args:?} failed to run: {stderr}"
    );
    ok
}

/// Asserts openssl accepts `sig` and refuses it with one bit changed.
#[track_caller]
fn assert_openssl_verifies(
    env: &TestEnv,
    t: &Tok,
    public: H,
    md: &str,
    sigopts: &[&str],
    msg: &[u8],
    sig: &[u8],
) {
    assert!(
        openssl_verifies(env, t, public, md, sigopts, msg, sig),
        "openssl dgst -{md} {sigopts:?} refuses the token's signature"
    );
    let mut bad = sig.to_vec();
    bad[sig.len() / 2] ^= 1;
    assert!(
        !openssl_verifies(env, t, public, md, sigopts, msg, &bad),
        "openssl dgst -{md} accepts a changed signature"
    );
}

fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x100 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn der_uint(be: &[u8]) -> Vec<u8> {
    let first = be.iter().position(|&x| x != 0).unwrap_or(be.len() - 1);
    let mut v = be[first..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    [vec![0x02], der_len(v.len()), v].concat()
}

/// PKCS#11's ECDSA `r || s` as a DER `ECDSA-Sig-Value`, for openssl.
fn ecdsa_der(rs: &[u8]) -> Vec<u8> {
    let (r, s) = rs.split_at(rs.len() / 2);
    let body = [der_uint(r), der_uint(s)].concat();
    [vec![0x30], der_len(body.len()), body].concat()
}

// ---------------------------------------------------------------------------
// the policy: hsm tokens refuse and hide legacy algorithms, spec tokens offer them
// ---------------------------------------------------------------------------

#[test]
fn hsm_token_neither_lists_nor_accepts_legacy_mechanisms() {
    let (env, hsm, spec) = both();
    let (hl, sl) = (mechanism_list(&hsm), mechanism_list(&spec));
    for &ty in LEGACY {
        assert!(!hl.contains(&ty), "{ty:#x} listed on the hsm token");
        assert!(sl.contains(&ty), "{ty:#x} missing on the spec token");
        err(
            mechanism_info(&hsm, ty),
            CKR_MECHANISM_INVALID,
            "C_GetMechanismInfo of a legacy mechanism on hsm",
        );
        let info = ok(mechanism_info(&spec, ty), "C_GetMechanismInfo on spec");
        assert_ne!(info.flags & CKF_HW, 0);
    }
    for &ty in SHA3 {
        assert!(hl.contains(&ty) && sl.contains(&ty), "{ty:#x} on both");
    }
    assert_eq!(sl.len() - hl.len(), LEGACY.len());
    // CKM_RSA_PKCS: listed on both; key transport only on spec.
    let wraps = CKF_WRAP | CKF_UNWRAP;
    let h = ok(mechanism_info(&hsm, CKM_RSA_PKCS), "RSA_PKCS info (hsm)");
    let s = ok(mechanism_info(&spec, CKM_RSA_PKCS), "RSA_PKCS info (spec)");
    assert_eq!((h.flags & wraps, s.flags & wraps), (0, wraps));
    assert_eq!(h.flags | wraps, s.flags);

    // Each entry point refuses before looking at the key.
    let aes = ok(
        hsm.create(secret_key_template(
            CKK_AES,
            &[7; 16],
            vec![b(CKA_TOKEN, false), b(CKA_SENSITIVE, true)],
        )),
        "AES key",
    );
    let (rsa_pub, rsa_priv) = rsa_pair(&hsm);
    for ty in [CKM_DES_KEY_GEN, CKM_DES2_KEY_GEN, CKM_DES3_KEY_GEN] {
        err(
            hsm.generate(ty, vec![b(CKA_TOKEN, false)]),
            CKR_MECHANISM_INVALID,
            "C_GenerateKey DES on hsm",
        );
    }
    let iv = vec![0u8; 8];
    for m in [
        Mech::Plain(CKM_DES_ECB),
        Mech::Bytes(CKM_DES_CBC, iv.clone()),
        Mech::Bytes(CKM_DES_CBC_PAD, iv.clone()),
        Mech::Plain(CKM_DES3_ECB),
        Mech::Bytes(CKM_DES3_CBC, iv.clone()),
        Mech::Bytes(CKM_DES3_CBC_PAD, iv.clone()),
    ] {
        for dir in [Dir::Enc, Dir::Dec] {
            check(
                hsm.crypt_init(dir, &m, aes),
                CKR_MECHANISM_INVALID,
                &format!("{dir:?} init {:#x} on hsm", m.ty()),
            );
        }
    }
    for m in [
        Mech::Plain(CKM_DES3_CMAC),
        Mech::General(CKM_DES3_CMAC_GENERAL, 4),
        Mech::Plain(CKM_MD5_HMAC),
        Mech::General(CKM_MD5_HMAC_GENERAL, 8),
    ] {
        check(hsm.sign_init(&m, aes), CKR_MECHANISM_INVALID, "C_SignInit");
        check(
            hsm.verify_init(&m, aes),
            CKR_MECHANISM_INVALID,
            "C_VerifyInit",
        );
    }
    check(
        hsm.sign_init(CKM_MD5_RSA_PKCS, rsa_priv),
        CKR_MECHANISM_INVALID,
        "C_SignInit MD5_RSA_PKCS",
    );
    check(
        hsm.verify_init(CKM_MD5_RSA_PKCS, rsa_pub),
        CKR_MECHANISM_INVALID,
        "C_VerifyInit MD5_RSA_PKCS",
    );
    err(
        digest(&hsm, CKM_MD5, b"abc"),
        CKR_MECHANISM_INVALID,
        "C_DigestInit MD5",
    );
    let rsa_pkcs = Mech::Plain(CKM_RSA_PKCS);
    err(
        hsm.wrap(&rsa_pkcs, rsa_pub, aes),
        CKR_MECHANISM_INVALID,
        "C_WrapKey RSA_PKCS on hsm",
    );
    err(
        hsm.unwrap(
            &rsa_pkcs,
            rsa_priv,
            &[1; 256],
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                b(CKA_TOKEN, false),
            ],
        ),
        CKR_MECHANISM_INVALID,
        "C_UnwrapKey RSA_PKCS on hsm",
    );
    // No DES key is stored on an hsm token, however it comes.
    for (kt, len) in [(CKK_DES, 8), (CKK_DES2, 16), (CKK_DES3, 24)] {
        err(
            hsm.create(secret_key_template(
                kt,
                &vec![1; len],
                vec![b(CKA_TOKEN, false), b(CKA_SENSITIVE, true)],
            )),
            CKR_ATTRIBUTE_VALUE_INVALID,
            "C_CreateObject DES on hsm",
        );
    }
    // The log says why, naming the policy.
    let log = env.log();
    assert!(
        log.contains("CKM_DES3_KEY_GEN refused: a legacy algorithm")
            && log.contains("key policy 'hsm'"),
        "log: {}",
        env.log_tail(20)
    );
    assert!(log.contains("CKK_DES3 is a legacy key type"));
    // The RSA key still encrypts with CKM_RSA_PKCS (not legacy).
    let ct = ok(
        hsm.encrypt(&rsa_pkcs, rsa_pub, b"still here"),
        "RSA_PKCS encrypt",
    );
    assert_eq!(
        ok(hsm.decrypt(&rsa_pkcs, rsa_priv, &ct), "decrypt"),
        b"still here"
    );
}

#[test]
fn spec_token_generates_des_keys_with_odd_parity_and_check_values() {
    let (env, t) = spec();
    for (ty, kt, len, cipher) in [
        (CKM_DES_KEY_GEN, CKK_DES, 8, "des-ecb"),
        (CKM_DES2_KEY_GEN, CKK_DES2, 16, "des-ede-ecb"),
        (CKM_DES3_KEY_GEN, CKK_DES3, 24, "des-ede3-ecb"),
    ] {
        // No CKA_VALUE_LEN: DES keys have one size.
        let k = ok(
            t.generate(
                ty,
                vec![
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, false),
                    b(CKA_ENCRYPT, true),
                ],
            ),
            "C_GenerateKey DES",
        );
        assert_eq!(t.get_ulong(k, CKA_KEY_TYPE), kt);
        let v = t.value(k);
        assert_eq!(v.len(), len);
        assert!(
            v.iter().all(|x| x.count_ones() % 2 == 1),
            "odd parity: {}",
            to_hex(&v)
        );
        assert_eq!(t.get_ulong(k, CKA_VALUE_LEN), len as CK_ULONG);
        // CKA_CHECK_VALUE = first 3 bytes of E_K(0^64), as openssl computes it.
        let kcv = ok(t.get(k, CKA_CHECK_VALUE), "CKA_CHECK_VALUE");
        let zero = file(&env, "zero.bin", &[0; 8]);
        let (done, ct, e) = openssl(&[
            "enc",
            &format!("-{cipher}"),
            "-K",
            &to_hex(&v),
            "-nopad",
            "-provider",
            "legacy",
            "-provider",
            "default",
            "-in",
            zero.to_str().unwrap(),
        ]);
        assert!(done, "openssl enc -{cipher}: {e}");
        assert_eq!(kcv, ct[..3], "{cipher} check value");
        let ecb = if kt == CKK_DES {
            CKM_DES_ECB
        } else {
            CKM_DES3_ECB
        };
        let on_token = ok(t.encrypt(ecb, k, &[0; 8]), "ECB of the zero block");
        assert_eq!(on_token, ct);
    }
    err(
        t.generate(
            CKM_DES3_KEY_GEN,
            vec![b(CKA_TOKEN, false), u(CKA_VALUE_LEN, 16)],
        ),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "DES3 key of 16 bytes",
    );
    // A DES key of the wrong length is refused at import.
    err(
        t.create(secret_key_template(
            CKK_DES3,
            &[1; 16],
            vec![b(CKA_TOKEN, false)],
        )),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "CKK_DES3 of 16 bytes",
    );
}

#[test]
fn des_and_tdes_known_answers() {
    let (_env, t) = spec();
    // FIPS 81 Appendix B (ECB and CBC), key 0123456789ABCDEF.
    let k = secret(&t, CKK_DES, &from_hex("0123456789abcdef"));
    assert_eq!(ok(t.get(k, CKA_CHECK_VALUE), "KCV"), from_hex("d5d44f"));
    let plain = b"Now is the time for all ";
    let ecb = from_hex("3fa40e8a984d48156a271787ab8883f9893d51ec4b563b53");
    assert_eq!(ok(t.encrypt(CKM_DES_ECB, k, plain), "DES_ECB"), ecb);
    assert_eq!(ok(t.decrypt(CKM_DES_ECB, k, &ecb), "DES_ECB dec"), plain);
    let cbc = Mech::Bytes(CKM_DES_CBC, from_hex("1234567890abcdef"));
    let ct = from_hex("e5c7cdde872bf27c43e934008c389c0f683788499a7c05f6");
    assert_eq!(ok(t.encrypt(&cbc, k, plain), "DES_CBC"), ct);
    assert_eq!(
        ok(
            t.crypt_multi(Dir::Dec, &cbc, k, &ct, &[3, 11, 20]),
            "DES_CBC multi"
        ),
        plain
    );
    err(
        t.encrypt(&cbc, k, &plain[..5]),
        CKR_DATA_LEN_RANGE,
        "DES_CBC partial block",
    );
    err(
        t.encrypt(&Mech::Bytes(CKM_DES_CBC, vec![0; 16]), k, plain),
        CKR_MECHANISM_PARAM_INVALID,
        "DES_CBC with a 16-byte IV",
    );
    // A DES key is no triple-DES key.
    check(
        t.crypt_init(Dir::Enc, CKM_DES3_ECB, k),
        CKR_KEY_TYPE_INCONSISTENT,
        "DES3_ECB with a DES key",
    );
    // SP 800-67 Rev. 2 Appendix B: three-key TDEA.
    let k3 = secret(
        &t,
        CKK_DES3,
        &from_hex("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123"),
    );
    let ct = from_hex("A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900");
    assert_eq!(
        ok(
            t.encrypt(CKM_DES3_ECB, k3, b"The qufck brown fox jump"),
            "DES3_ECB"
        ),
        ct
    );
    assert_eq!(
        ok(t.decrypt(CKM_DES3_ECB, k3, &ct), "DES3_ECB dec"),
        b"The qufck brown fox jump"
    );
}

#[test]
fn tdes_cbc_pad_agrees_with_openssl() {
    let (env, t) = spec();
    let value = from_hex("0123456789abcdeffedcba987654321089abcdef01234567");
    let k = secret(&t, CKK_DES3, &value);
    let k2 = secret(&t, CKK_DES2, &value[..16]);
    let iv = from_hex("0102030405060708");
    for (key, kv, cipher) in [
        (k, &value[..], "des-ede3-cbc"),
        (k2, &value[..16], "des-ede-cbc"),
    ] {
        for len in [0usize, 1, 7, 8, 9, 33] {
            let data: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
            let m = Mech::Bytes(CKM_DES3_CBC_PAD, iv.clone());
            let ct = ok(t.encrypt(&m, key, &data), "DES3_CBC_PAD");
            assert_eq!(
                ok(t.crypt_multi(Dir::Enc, &m, key, &data, &[1, 9]), "multi"),
                ct
            );
            let input = file(&env, "plain.bin", &data);
            let (done, want, e) = openssl(&[
                "enc",
                &format!("-{cipher}"),
                "-K",
                &to_hex(kv),
                "-iv",
                &to_hex(&iv),
                "-in",
                input.to_str().unwrap(),
            ]);
            assert!(done, "openssl enc: {e}");
            assert_eq!(to_hex(&ct), to_hex(&want), "{cipher} of {len} bytes");
            assert_eq!(ok(t.decrypt(&m, key, &ct), "DES3_CBC_PAD dec"), data);
        }
    }
    // CBC without padding, and a wrong padding on decryption.
    let m = Mech::Bytes(CKM_DES3_CBC, iv.clone());
    let ct = ok(t.encrypt(&m, k, &[0x42; 16]), "DES3_CBC");
    assert_eq!(ok(t.decrypt(&m, k, &ct), "DES3_CBC dec"), vec![0x42; 16]);
    err(
        t.decrypt(&Mech::Bytes(CKM_DES3_CBC_PAD, iv), k, &ct),
        CKR_ENCRYPTED_DATA_INVALID,
        "CBC_PAD decryption of unpadded data",
    );
}

#[test]
fn tdes_cmac_sp800_38b() {
    let (_env, t) = spec();
    let msg = from_hex("6bc1bee22e409f96e93d7e117393172aae2d8a57");
    // SP 800-38B Appendix D, examples 9-11 (three-key) and 13-15 (two-key).
    let k3 = secret(
        &t,
        CKK_DES3,
        &from_hex("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5"),
    );
    let k2 = secret(&t, CKK_DES2, &from_hex("4cf15134a2850dd58a3d10ba80570d38"));
    for (k, data, tag) in [
        (k3, &msg[..0], "b7a688e122ffaf95"),
        (k3, &msg[..8], "8e8f293136283797"),
        (k3, &msg[..], "743ddbe0ce2dc2ed"),
        (k2, &msg[..0], "bd2ebf9a3ba00361"),
        (k2, &msg[..8], "4ff2ab813c53ce83"),
        (k2, &msg[..], "62dd1b471902bd4e"),
    ] {
        let mac = ok(t.sign(CKM_DES3_CMAC, k, data), "DES3_CMAC");
        assert_eq!(to_hex(&mac), tag);
        assert_eq!(
            ok(
                t.sign_multi(CKM_DES3_CMAC, k, data, &[3]),
                "DES3_CMAC multi"
            ),
            mac
        );
        check(t.verify(CKM_DES3_CMAC, k, data, &mac), CKR_OK, "verify");
        let mut bad = mac.clone();
        bad[0] ^= 1;
        check(
            t.verify(CKM_DES3_CMAC, k, data, &bad),
            CKR_SIGNATURE_INVALID,
            "verify of a wrong MAC",
        );
        let general = Mech::General(CKM_DES3_CMAC_GENERAL, 4);
        assert_eq!(ok(t.sign(&general, k, data), "GENERAL"), mac[..4]);
    }
    check(
        t.sign_init(&Mech::General(CKM_DES3_CMAC_GENERAL, 9), k3),
        CKR_MECHANISM_PARAM_INVALID,
        "DES3_CMAC_GENERAL of 9 bytes",
    );
}

#[test]
fn md5_digest_and_hmac_vectors() {
    let (_env, t) = spec();
    // RFC 1321 §A.5.
    for (msg, want) in [
        (&b""[..], "d41d8cd98f00b204e9800998ecf8427e"),
        (b"abc", "900150983cd24fb0d6963f7d28e17f72"),
        (b"message digest", "f96b697d7cb7938d525a2f31aaf161d0"),
        (
            b"12345678901234567890123456789012345678901234567890123456789012345678901234567890",
            "57edf4a22be3c955ac49da2e2107b67a",
        ),
    ] {
        assert_eq!(to_hex(&ok(digest(&t, CKM_MD5, msg), "MD5")), want);
    }
    // RFC 2202 §2, test cases 1, 2, 3 and 6 (a key longer than a block).
    let cases: [(Vec<u8>, Vec<u8>, &str); 4] = [
        (
            vec![0x0b; 16],
            b"Hi There".to_vec(),
            "9294727a3638bb1c13f48ef8158bfc9d",
        ),
        (
            b"Jefe".to_vec(),
            b"what do ya want for nothing?".to_vec(),
            "750c783e6ab0b503eaa86e310a5db738",
        ),
        (
            vec![0xaa; 16],
            vec![0xdd; 50],
            "56be34521d144c88dbb8c733f0e8b3f6",
        ),
        (
            vec![0xaa; 80],
            b"Test Using Larger Than Block-Size Key - Hash Key First".to_vec(),
            "6b1ab7fe4bd7bf8f0b62e6ce61b9d0cd",
        ),
    ];
    for (key, data, want) in cases {
        let k = secret(&t, CKK_GENERIC_SECRET, &key);
        let mac = ok(t.sign(CKM_MD5_HMAC, k, &data), "MD5_HMAC");
        assert_eq!(to_hex(&mac), want);
        check(t.verify(CKM_MD5_HMAC, k, &data, &mac), CKR_OK, "verify");
        let general = Mech::General(CKM_MD5_HMAC_GENERAL, 12);
        assert_eq!(
            ok(t.sign(&general, k, &data), "MD5_HMAC_GENERAL"),
            mac[..12]
        );
    }
    // MD5 is not a hash for parameters (PSS, OAEP): those are not legacy rows.
    let (_, rsa) = rsa_pair(&t);
    check(
        t.sign_init(&pss(CKM_RSA_PKCS_PSS, CKM_MD5, CKG_MGF1_SHA1, 16), rsa),
        CKR_MECHANISM_PARAM_INVALID,
        "PSS with MD5",
    );
}

#[test]
fn md5_rsa_pkcs_signature_verifies_with_openssl() {
    let (env, t) = spec();
    let (public, private) = rsa_pair(&t);
    let msg = b"a message signed the old way".repeat(5);
    let sig = ok(t.sign(CKM_MD5_RSA_PKCS, private, &msg), "MD5_RSA_PKCS");
    assert_eq!(sig.len(), 256);
    check(
        t.verify(CKM_MD5_RSA_PKCS, public, &msg, &sig),
        CKR_OK,
        "verify",
    );
    assert_eq!(
        ok(
            t.sign_multi(CKM_MD5_RSA_PKCS, private, &msg, &[10, 50]),
            "multi"
        ),
        sig,
        "PKCS#1 v1.5 is deterministic"
    );
    assert_openssl_verifies(&env, &t, public, "md5", &[], &msg, &sig);
}

#[test]
fn rsa_pkcs_wraps_and_unwraps_secret_keys_on_spec_tokens() {
    let (_env, t) = spec();
    let (public, private) = rsa_pair(&t);
    let value = from_hex("000102030405060708090a0b0c0d0e0f1011121314151617");
    let aes = secret(&t, CKK_AES, &value);
    let rsa_pkcs = Mech::Plain(CKM_RSA_PKCS);
    let wrapped = ok(t.wrap(&rsa_pkcs, public, aes), "C_WrapKey RSA_PKCS");
    assert_eq!(wrapped.len(), 256);
    // It is PKCS#1 v1.5 encryption of the value: C_Decrypt gives it back.
    assert_eq!(
        ok(t.decrypt(&rsa_pkcs, private, &wrapped), "decrypt"),
        value
    );
    let back = ok(
        t.unwrap(
            &rsa_pkcs,
            private,
            &wrapped,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                b(CKA_TOKEN, false),
                b(CKA_ENCRYPT, true),
                b(CKA_SENSITIVE, false),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "C_UnwrapKey RSA_PKCS",
    );
    assert_eq!(t.value(back), value);
    assert_eq!(
        ok(
            t.encrypt(CKM_AES_ECB, back, &[0; 16]),
            "ECB with the unwrapped key"
        ),
        ok(
            t.encrypt(CKM_AES_ECB, aes, &[0; 16]),
            "ECB with the original"
        ),
    );
    // A DES3 key travels the same way.
    let des = secret(&t, CKK_DES3, &[0x2a; 24]);
    let w = ok(t.wrap(&rsa_pkcs, public, des), "wrap DES3");
    let d = ok(
        t.unwrap(
            &rsa_pkcs,
            private,
            &w,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_DES3),
                b(CKA_TOKEN, false),
            ],
        ),
        "unwrap DES3",
    );
    assert_eq!(
        ok(t.get(d, CKA_CHECK_VALUE), "KCV"),
        ok(t.get(des, CKA_CHECK_VALUE), "KCV")
    );
    // Secret keys only (PKCS#8 of a private key does not fit), as with OAEP.
    let (_, ec) = ok(
        t.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![by(CKA_EC_PARAMS, P256), b(CKA_TOKEN, false)],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_SENSITIVE, true),
            ],
        ),
        "EC pair",
    );
    err(
        t.wrap(&rsa_pkcs, public, ec),
        CKR_KEY_NOT_WRAPPABLE,
        "RSA_PKCS wrap of a private key",
    );
}

#[test]
fn des3_cbc_pad_wraps_keys_on_spec_tokens() {
    let (_env, t) = spec();
    let kek = ok(
        t.generate(
            CKM_DES3_KEY_GEN,
            vec![b(CKA_TOKEN, false), b(CKA_WRAP, true), b(CKA_UNWRAP, true)],
        ),
        "DES3 wrapping key",
    );
    let value: Vec<u8> = (0u8..32).collect();
    let aes = secret(&t, CKK_AES, &value);
    let m = Mech::Bytes(CKM_DES3_CBC_PAD, vec![9; 8]);
    let wrapped = ok(t.wrap(&m, kek, aes), "C_WrapKey DES3_CBC_PAD");
    assert_eq!(wrapped.len(), 40, "32 bytes padded to 40");
    let back = ok(
        t.unwrap(
            &m,
            kek,
            &wrapped,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_SENSITIVE, false),
            ],
        ),
        "C_UnwrapKey DES3_CBC_PAD",
    );
    assert_eq!(t.value(back), value);
    // A two-key DES key travels under it too, and keeps its check value.
    let des = secret(&t, CKK_DES2, &[0x31; 16]);
    let w = ok(t.wrap(&m, kek, des), "wrap DES2");
    let d = ok(
        t.unwrap(
            &m,
            kek,
            &w,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_DES2),
                b(CKA_TOKEN, false),
            ],
        ),
        "unwrap DES2",
    );
    assert_eq!(
        ok(t.get(d, CKA_CHECK_VALUE), "KCV"),
        ok(t.get(des, CKA_CHECK_VALUE), "KCV")
    );
}

// ---------------------------------------------------------------------------
// SHA-3 (both policies) and SHA-224
// ---------------------------------------------------------------------------

#[test]
fn sha3_digests_fips_202_on_both_policies() {
    let (_env, hsm, spec) = both();
    for t in [hsm, spec] {
        for (ty, want) in [
            (
                CKM_SHA3_224,
                "e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf",
            ),
            (
                CKM_SHA3_256,
                "3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532",
            ),
            (
                CKM_SHA3_384,
                "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25",
            ),
            (
                CKM_SHA3_512,
                "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0",
            ),
        ] {
            assert_eq!(to_hex(&ok(digest(&t, ty, b"abc"), "SHA3")), want);
            let info = ok(mechanism_info(&t, ty), "info");
            assert_ne!(info.flags & CKF_DIGEST, 0);
        }
    }
}

#[test]
fn sha3_hmacs_agree_with_openssl() {
    let (env, t) = hsm();
    let key = from_hex("000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f");
    let k = ok(
        t.create(secret_key_template(
            CKK_GENERIC_SECRET,
            &key,
            vec![b(CKA_TOKEN, false), b(CKA_SENSITIVE, true)],
        )),
        "HMAC key",
    );
    let data = b"Sample message for keylen<blocklen";
    let input = file(&env, "hmac.bin", data);
    for (ty, general, md) in [
        (CKM_SHA3_224_HMAC, CKM_SHA3_224_HMAC_GENERAL, "SHA3-224"),
        (CKM_SHA3_256_HMAC, CKM_SHA3_256_HMAC_GENERAL, "SHA3-256"),
        (CKM_SHA3_384_HMAC, CKM_SHA3_384_HMAC_GENERAL, "SHA3-384"),
        (CKM_SHA3_512_HMAC, CKM_SHA3_512_HMAC_GENERAL, "SHA3-512"),
    ] {
        let mac = ok(t.sign(ty, k, data), md);
        let (done, out, e) = openssl(&[
            "mac",
            "-digest",
            md,
            "-macopt",
            &format!("hexkey:{}", to_hex(&key)),
            "-in",
            input.to_str().unwrap(),
            "HMAC",
        ]);
        assert!(done, "openssl mac: {e}");
        let want = String::from_utf8_lossy(&out).trim().to_ascii_lowercase();
        assert_eq!(to_hex(&mac), want, "HMAC-{md}");
        check(t.verify(ty, k, data, &mac), CKR_OK, "verify");
        assert_eq!(
            ok(t.sign(&Mech::General(general, 10), k, data), "GENERAL"),
            mac[..10]
        );
    }
    // NIST's HMAC-SHA3-256 example (keylen < blocklen), from the CSRC
    // "Examples with Intermediate Values" page.
    let mac = ok(t.sign(CKM_SHA3_256_HMAC, k, data), "HMAC-SHA3-256");
    assert_eq!(
        to_hex(&mac),
        "4fe8e202c4f058e8dddc23d8c34e467343e23555e24fc2f025d598f558f67205"
    );
}

#[test]
fn sha3_and_sha224_rsa_signatures_verify_with_openssl() {
    let (env, t) = hsm();
    let (public, private) = rsa_pair(&t);
    let msg = b"signed with a SHA-3 hash".repeat(3);
    for (pkcs, pss_ty, hash, mgf, md, len) in [
        (
            CKM_SHA3_224_RSA_PKCS,
            CKM_SHA3_224_RSA_PKCS_PSS,
            CKM_SHA3_224,
            CKG_MGF1_SHA3_224,
            "sha3-224",
            28,
        ),
        (
            CKM_SHA3_256_RSA_PKCS,
            CKM_SHA3_256_RSA_PKCS_PSS,
            CKM_SHA3_256,
            CKG_MGF1_SHA3_256,
            "sha3-256",
            32,
        ),
        (
            CKM_SHA3_384_RSA_PKCS,
            CKM_SHA3_384_RSA_PKCS_PSS,
            CKM_SHA3_384,
            CKG_MGF1_SHA3_384,
            "sha3-384",
            48,
        ),
        (
            CKM_SHA3_512_RSA_PKCS,
            CKM_SHA3_512_RSA_PKCS_PSS,
            CKM_SHA3_512,
            CKG_MGF1_SHA3_512,
            "sha3-512",
            64,
        ),
        (
            CKM_SHA224_RSA_PKCS,
            CKM_SHA224_RSA_PKCS_PSS,
            CKM_SHA224,
            CKG_MGF1_SHA224,
            "sha224",
            28,
        ),
    ] {
        let sig = ok(t.sign(pkcs, private, &msg), md);
        check(t.verify(pkcs, public, &msg, &sig), CKR_OK, "verify PKCS#1");
        assert_eq!(ok(t.sign_multi(pkcs, private, &msg, &[7]), "multi"), sig);
        assert_openssl_verifies(&env, &t, public, md, &[], &msg, &sig);
        let m = pss(pss_ty, hash, mgf, len);
        let sig = ok(t.sign(&m, private, &msg), "PSS");
        check(t.verify(&m, public, &msg, &sig), CKR_OK, "verify PSS");
        let saltlen = format!("rsa_pss_saltlen:{len}");
        let mgf1 = format!("rsa_mgf1_md:{md}");
        assert_openssl_verifies(
            &env,
            &t,
            public,
            md,
            &["rsa_padding_mode:pss", &saltlen, &mgf1],
            &msg,
            &sig,
        );
        // CKM_RSA_PKCS_PSS over the digest the token computes itself.
        let h = ok(digest(&t, hash, &msg), "digest");
        let raw = pss(CKM_RSA_PKCS_PSS, hash, mgf, len);
        check(
            t.verify(&raw, public, &h, &sig),
            CKR_OK,
            "RSA_PKCS_PSS over the digest",
        );
        // A PSS parameter naming another hash than the mechanism's is refused.
        check(
            t.sign_init(&pss(pss_ty, CKM_SHA256, CKG_MGF1_SHA256, 32), private),
            CKR_MECHANISM_PARAM_INVALID,
            "mismatched PSS hash",
        );
    }
    // SHA-2 message hash with a SHA-3 MGF1: PKCS#11 allows any pair.
    let m = pss(CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256, CKG_MGF1_SHA3_256, 32);
    let sig = ok(t.sign(&m, private, &msg), "PSS SHA-256 / MGF1-SHA3-256");
    assert_openssl_verifies(
        &env,
        &t,
        public,
        "sha256",
        &[
            "rsa_padding_mode:pss",
            "rsa_pss_saltlen:32",
            "rsa_mgf1_md:sha3-256",
        ],
        &msg,
        &sig,
    );
}

#[test]
fn sha3_and_sha224_ecdsa_verify_with_openssl() {
    let (env, t) = hsm();
    let msg = b"ECDSA over SHA-3".repeat(4);
    for (curve, name) in [(P256, "P-256"), (P384, "P-384")] {
        let (public, private) = ec_pair(&t, curve);
        for (ty, md) in [
            (CKM_ECDSA_SHA3_224, "sha3-224"),
            (CKM_ECDSA_SHA3_256, "sha3-256"),
            (CKM_ECDSA_SHA3_384, "sha3-384"),
            (CKM_ECDSA_SHA3_512, "sha3-512"),
            (CKM_ECDSA_SHA224, "sha224"),
        ] {
            let sig = ok(t.sign(ty, private, &msg), md);
            check(t.verify(ty, public, &msg, &sig), CKR_OK, "verify");
            let sig2 = ok(t.sign_multi(ty, private, &msg, &[5, 40]), "multi");
            check(t.verify(ty, public, &msg, &sig2), CKR_OK, "verify multi");
            let der = ecdsa_der(&sig);
            assert!(
                openssl_verifies(&env, &t, public, md, &[], &msg, &der),
                "openssl refuses ECDSA {name} {md}"
            );
            let mut bad = msg.clone();
            bad[0] ^= 1;
            assert!(!openssl_verifies(&env, &t, public, md, &[], &bad, &der));
        }
    }
}

#[test]
fn ecdh_with_sha3_x963_kdf_agrees_with_openssl() {
    let (_env, t) = spec();
    let pair = || {
        ok(
            t.generate_pair(
                CKM_EC_KEY_PAIR_GEN,
                vec![by(CKA_EC_PARAMS, P256), b(CKA_TOKEN, false)],
                vec![
                    b(CKA_TOKEN, false),
                    b(CKA_DERIVE, true),
                    b(CKA_SENSITIVE, false),
                ],
            ),
            "EC pair",
        )
    };
    let ((_, a), (b_pub, _)) = (pair(), pair());
    let point = ok(t.get(b_pub, CKA_EC_POINT), "CKA_EC_POINT");
    let derive = |kdf: CK_ULONG, shared: &[u8], len: CK_ULONG| {
        let (mut shared, mut public) = (shared.to_vec(), point.clone());
        let mut prm = CK_ECDH1_DERIVE_PARAMS {
            kdf,
            ulSharedDataLen: shared.len() as CK_ULONG,
            pSharedData: if shared.is_empty() {
                ptr::null_mut()
            } else {
                shared.as_mut_ptr()
            },
            ulPublicDataLen: public.len() as CK_ULONG,
            pPublicData: public.as_mut_ptr(),
        };
        let mut m = mech_of(CKM_ECDH1_DERIVE, &mut prm);
        let k = ok(
            t.derive(
                &mut m,
                a,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                    u(CKA_VALUE_LEN, len),
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, false),
                    b(CKA_EXTRACTABLE, true),
                ],
            ),
            "C_DeriveKey ECDH",
        );
        t.value(k)
    };
    let z = derive(CKD_NULL, b"", 32);
    for (kdf, md) in [
        (CKD_SHA3_224_KDF, "SHA3-224"),
        (CKD_SHA3_256_KDF, "SHA3-256"),
        (CKD_SHA3_384_KDF, "SHA3-384"),
        (CKD_SHA3_512_KDF, "SHA3-512"),
    ] {
        let got = derive(kdf, b"shared info", 72);
        let (done, out, e) = openssl(&[
            "kdf",
            "-keylen",
            "72",
            "-kdfopt",
            &format!("digest:{md}"),
            "-kdfopt",
            &format!("hexsecret:{}", to_hex(&z)),
            "-kdfopt",
            &format!("hexinfo:{}", to_hex(b"shared info")),
            "X963KDF",
        ]);
        assert!(done, "openssl kdf X963KDF: {e}");
        let want: String = String::from_utf8_lossy(&out)
            .trim()
            .replace(':', "")
            .to_ascii_lowercase();
        assert_eq!(to_hex(&got), want, "ECDH with X9.63 KDF over {md}");
    }
}

#[test]
fn oaep_with_sha3_agrees_with_openssl() {
    let (env, t) = hsm();
    let (public, private) = rsa_pair(&t);
    let spki = ok(t.get(public, CKA_PUBLIC_KEY_INFO), "SPKI");
    let key = file(&env, "oaep-pub.der", &spki);
    let msg = b"thirty-two bytes of key material";
    let input = file(&env, "oaep.bin", msg);
    for (hash, mgf, md) in [
        (CKM_SHA3_256, CKG_MGF1_SHA3_256, "sha3-256"),
        (CKM_SHA3_512, CKG_MGF1_SHA3_512, "sha3-512"),
    ] {
        let mut label = b"a label".to_vec();
        let mut prm = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: hash,
            mgf,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: label.as_mut_ptr() as *mut _,
            ulSourceDataLen: label.len() as CK_ULONG,
        };
        let mut m = mech_of(CKM_RSA_PKCS_OAEP, &mut prm);
        let ct = ok(t.encrypt(&mut m, public, msg), "OAEP encrypt");
        assert_eq!(ok(t.decrypt(&mut m, private, &ct), "OAEP decrypt"), msg);
        // openssl encrypts with the same parameters; the token decrypts.
        let (done, ct, e) = openssl(&[
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-keyform",
            "DER",
            "-inkey",
            key.to_str().unwrap(),
            "-pkeyopt",
            "rsa_padding_mode:oaep",
            "-pkeyopt",
            &format!("rsa_oaep_md:{md}"),
            "-pkeyopt",
            &format!("rsa_mgf1_md:{md}"),
            "-pkeyopt",
            &format!("rsa_oaep_label:{}", to_hex(b"a label")),
            "-in",
            input.to_str().unwrap(),
        ]);
        assert!(done, "openssl pkeyutl -encrypt: {e}");
        let got = t.decrypt(&mut m, private, &ct);
        assert_eq!(
            got.as_deref().map_err(|rv| rv_name(*rv)),
            Ok(&msg[..]),
            "OAEP-{md} from openssl"
        );
    }
}

// ---------------------------------------------------------------------------
// a stock client: OpenSC's pkcs11-tool
// ---------------------------------------------------------------------------

/// `pkcs11-tool --module <ferrohsm> <args>` in `env`, asserting exit 0:
/// its standard output.
fn tool(env: &TestEnv, args: &[&str]) -> String {
    let run = run_captured(
        env,
        pkcs11_tool(env, args),
        b"",
        std::time::Duration::from_secs(60),
        &format!("pkcs11-tool {args:?}"),
    );
    assert!(
        run.status.success(),
        "pkcs11-tool {args:?} failed:\n{}\nmodule log:\n{}",
        run.show(),
        env.log_tail(20)
    );
    run.stdout
}

#[test]
fn pkcs11_tool_sees_legacy_mechanisms_on_spec_tokens_only() {
    for (policy, offered) in [("spec", true), ("hsm", false)] {
        let env = TestEnv::with_config(&format!("default_policy = \"{policy}\""));
        tool(
            &env,
            &init_token_args(policy, &["--init-pin", "--pin", USER_PIN]),
        );
        let list = tool(&env, &["--list-mechanisms"]);
        for name in [
            "DES3-CBC-PAD",
            "DES3-KEY-GEN",
            "DES-ECB",
            "MD5-RSA-PKCS",
            "MD5-HMAC,",
        ] {
            assert_eq!(list.contains(name), offered, "{policy}: {name} in\n{list}");
        }
        for name in ["SHA3-256", "SHA3-512-HMAC", "ECDSA-SHA3-384"] {
            assert!(list.contains(name), "{policy}: {name} missing from\n{list}");
        }
        let input = file(&env, "abc.txt", b"abc");
        let output = env.dir.path().join("md5.bin");
        let args = [
            "--hash",
            "-m",
            "MD5",
            "-i",
            input.to_str().unwrap(),
            "-o",
            output.to_str().unwrap(),
        ];
        if offered {
            tool(&env, &args);
            assert_eq!(
                to_hex(&std::fs::read(&output).unwrap()),
                "900150983cd24fb0d6963f7d28e17f72"
            );
            let out = tool(
                &env,
                &[
                    "--login",
                    "--pin",
                    USER_PIN,
                    "--keygen",
                    "--key-type",
                    "DES3:24",
                    "--label",
                    "d3",
                ],
            );
            assert!(out.contains("DES3 length 24"), "{out}");
        } else {
            let run = run_captured(
                &env,
                pkcs11_tool(&env, &args),
                b"",
                std::time::Duration::from_secs(60),
                "pkcs11-tool --hash -m MD5",
            );
            assert!(
                !run.status.success(),
                "MD5 on an hsm token:\n{}",
                run.show()
            );
            assert!(
                env.log().contains("key policy 'hsm'"),
                "{}",
                env.log_tail(10)
            );
        }
    }
}
