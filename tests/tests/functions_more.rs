//! The functions issue 17 (cause 3) asked for, through the raw C ABI of the
//! real shared library: `C_SeedRandom`, `C_DigestKey`, `C_SignRecover` /
//! `C_VerifyRecover` (cross-checked with `openssl pkeyutl -verifyrecover`),
//! the v3.0 message-based functions (AES-GCM with each IV generator, a NIST
//! vector, multi-part messages, tag mismatch; HMAC and ECDSA message
//! signatures) and `C_GetOperationState` / `C_SetOperationState` for
//! digests (round trip into another session, tampered and foreign states).

use std::ffi::c_void;
use std::mem::size_of;
use std::process::Command;
use std::ptr;

use cryptoki_sys::*;
use ferrohsm_tests::mech::{Mech, opt_ptr};
use ferrohsm_tests::raw::{V, b, by, check, err, ok, rv_name, secret_key_template, u};
use ferrohsm_tests::tok::{Dir, H, Tok, out_buf, set_policy};
use ferrohsm_tests::{TestEnv, ck, ck3, from_hex, to_hex};
use sha2::Digest;

/// A fresh test process with one token of `policy` and a user session.
fn token(policy: &str) -> (TestEnv, Tok) {
    let env = TestEnv::new();
    set_policy(policy);
    (env, Tok::ready("functions"))
}

/// An AES key holding `value`, allowed every use.
fn aes_key(t: &Tok, value: &[u8]) -> H {
    ok(
        t.create(secret_key_template(
            CKK_AES,
            value,
            vec![b(CKA_TOKEN, false)],
        )),
        "C_CreateObject AES",
    )
}

/// A 2048-bit RSA pair (public, private) allowed to sign/verify with recovery.
fn rsa_pair(t: &Tok) -> (H, H) {
    ok(
        t.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
                b(CKA_VERIFY_RECOVER, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_SIGN_RECOVER, true),
            ],
        ),
        "RSA key pair",
    )
}

fn mech_info(t: &Tok, ty: CK_MECHANISM_TYPE) -> CK_MECHANISM_INFO {
    let mut mi = CK_MECHANISM_INFO::default();
    check(
        ck!(t.m, C_GetMechanismInfo(t.slot, ty, &mut mi)),
        CKR_OK,
        "C_GetMechanismInfo",
    );
    mi
}

// ---------------------------------------------------------------------------
// C_SeedRandom
// ---------------------------------------------------------------------------

#[test]
fn seed_random_is_accepted() {
    let (_env, t) = token("hsm");
    let mut seed = *b"some seed bytes";
    check(
        ck!(
            t.m,
            C_SeedRandom(t.s, seed.as_mut_ptr(), seed.len() as CK_ULONG)
        ),
        CKR_OK,
        "C_SeedRandom",
    );
    check(
        ck!(t.m, C_SeedRandom(t.s, ptr::null_mut(), 0)),
        CKR_OK,
        "C_SeedRandom(NULL, 0)",
    );
    check(
        ck!(t.m, C_SeedRandom(t.s, ptr::null_mut(), 8)),
        CKR_ARGUMENTS_BAD,
        "C_SeedRandom(NULL, 8)",
    );
    check(
        ck!(t.m, C_SeedRandom(0xdead, seed.as_mut_ptr(), 4)),
        CKR_SESSION_HANDLE_INVALID,
        "C_SeedRandom(bad session)",
    );
    // Random output still differs call to call after a seed.
    let (mut a, mut c) = ([0u8; 32], [0u8; 32]);
    check(
        ck!(t.m, C_GenerateRandom(t.s, a.as_mut_ptr(), 32)),
        CKR_OK,
        "C_GenerateRandom",
    );
    check(
        ck!(t.m, C_SeedRandom(t.s, seed.as_mut_ptr(), 4)),
        CKR_OK,
        "C_SeedRandom",
    );
    check(
        ck!(t.m, C_GenerateRandom(t.s, c.as_mut_ptr(), 32)),
        CKR_OK,
        "C_GenerateRandom",
    );
    assert_ne!(a, c);
}

// ---------------------------------------------------------------------------
// C_DigestKey
// ---------------------------------------------------------------------------

fn digest_init(t: &Tok, ty: CK_MECHANISM_TYPE) {
    let mut m = CK_MECHANISM {
        mechanism: ty,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    check(ck!(t.m, C_DigestInit(t.s, &mut m)), CKR_OK, "C_DigestInit");
}

fn digest_update(t: &Tok, data: &[u8]) -> CK_RV {
    let mut d = data.to_vec();
    ck!(
        t.m,
        C_DigestUpdate(t.s, opt_ptr(&mut d), d.len() as CK_ULONG)
    )
}

fn digest_final(t: &Tok) -> Result<Vec<u8>, CK_RV> {
    let mut out = [0u8; 64];
    let mut n: CK_ULONG = 64;
    let rv = ck!(t.m, C_DigestFinal(t.s, out.as_mut_ptr(), &mut n));
    if rv != CKR_OK {
        return Err(rv);
    }
    Ok(out[..n as usize].to_vec())
}

#[test]
fn digest_key_on_a_spec_token_digests_the_value() {
    let (_env, t) = token("spec");
    let value = b"a generic secret, readable".to_vec();
    let k = ok(
        t.create(vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
            b(CKA_TOKEN, false),
            b(CKA_SENSITIVE, false),
            b(CKA_EXTRACTABLE, true),
            by(CKA_VALUE, &value),
        ]),
        "C_CreateObject generic secret",
    );
    digest_init(&t, CKM_SHA256);
    check(digest_update(&t, b"before "), CKR_OK, "C_DigestUpdate");
    check(ck!(t.m, C_DigestKey(t.s, k)), CKR_OK, "C_DigestKey");
    check(digest_update(&t, b" after"), CKR_OK, "C_DigestUpdate");
    let want = sha2::Sha256::digest([&b"before "[..], &value, b" after"].concat());
    assert_eq!(ok(digest_final(&t), "C_DigestFinal"), want.to_vec());

    // The value alone, with SHA-1.
    digest_init(&t, CKM_SHA_1);
    check(ck!(t.m, C_DigestKey(t.s, k)), CKR_OK, "C_DigestKey");
    assert_eq!(
        ok(digest_final(&t), "C_DigestFinal"),
        sha1::Sha1::digest(&value).to_vec()
    );

    // A sensitive secret key, and a key that is no secret key, are indigestible
    // (and end the digest).
    let sensitive = ok(
        t.create(vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
            b(CKA_TOKEN, false),
            b(CKA_SENSITIVE, true),
            by(CKA_VALUE, &value),
        ]),
        "C_CreateObject sensitive secret",
    );
    let (public, _) = rsa_pair(&t);
    for (key, what) in [(sensitive, "sensitive secret"), (public, "RSA public key")] {
        digest_init(&t, CKM_SHA256);
        check(
            ck!(t.m, C_DigestKey(t.s, key)),
            CKR_KEY_INDIGESTIBLE,
            &format!("C_DigestKey({what})"),
        );
        err(
            digest_final(&t),
            CKR_OPERATION_NOT_INITIALIZED,
            "CKR_KEY_INDIGESTIBLE ends the digest",
        );
    }
}

#[test]
fn digest_key_on_an_hsm_token_is_refused() {
    let (_env, t) = token("hsm");
    let k = ok(
        t.generate(
            CKM_GENERIC_SECRET_KEY_GEN,
            vec![u(CKA_VALUE_LEN, 32), b(CKA_TOKEN, false)],
        ),
        "C_GenerateKey",
    );
    digest_init(&t, CKM_SHA256);
    check(
        ck!(t.m, C_DigestKey(t.s, k)),
        CKR_KEY_INDIGESTIBLE,
        "C_DigestKey of an hsm token's key",
    );
}

// ---------------------------------------------------------------------------
// C_SignRecover / C_VerifyRecover
// ---------------------------------------------------------------------------

fn recover_init(t: &Tok, verify: bool, ty: CK_MECHANISM_TYPE, key: H) -> CK_RV {
    let mut m = CK_MECHANISM {
        mechanism: ty,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    if verify {
        ck!(t.m, C_VerifyRecoverInit(t.s, &mut m, key))
    } else {
        ck!(t.m, C_SignRecoverInit(t.s, &mut m, key))
    }
}

fn recover_raw(t: &Tok, verify: bool, input: &[u8], out: Option<&mut [u8]>) -> (CK_RV, usize) {
    let mut d = input.to_vec();
    let (p, mut n) = out_buf(out);
    let rv = if verify {
        ck!(
            t.m,
            C_VerifyRecover(t.s, opt_ptr(&mut d), d.len() as CK_ULONG, p, &mut n)
        )
    } else {
        ck!(
            t.m,
            C_SignRecover(t.s, opt_ptr(&mut d), d.len() as CK_ULONG, p, &mut n)
        )
    };
    (rv, n as usize)
}

/// Init, size query, then the call into a buffer of the announced size.
fn recover(
    t: &Tok,
    verify: bool,
    ty: CK_MECHANISM_TYPE,
    key: H,
    input: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = recover_init(t, verify, ty, key);
    if rv != CKR_OK {
        return Err(rv);
    }
    let (rv, n) = recover_raw(t, verify, input, None);
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut out = vec![0u8; n];
    let (rv, m) = recover_raw(t, verify, input, Some(&mut out));
    if rv != CKR_OK {
        return Err(rv);
    }
    assert_eq!(m, n, "the size query gave the exact length");
    out.truncate(m);
    Ok(out)
}

/// `openssl pkeyutl -verifyrecover` of `sig` with the public key `spki`
/// (DER), with extra options; the recovered bytes.
fn openssl_verifyrecover(env: &TestEnv, spki: &[u8], sig: &[u8], opts: &[&str]) -> Vec<u8> {
    let dir = env.dir.path();
    let (kp, sp) = (dir.join("pub.der"), dir.join("sig.bin"));
    std::fs::write(&kp, spki).expect("write key");
    std::fs::write(&sp, sig).expect("write signature");
    let mut args = vec![
        "pkeyutl",
        "-verifyrecover",
        "-pubin",
        "-keyform",
        "DER",
        "-inkey",
        kp.to_str().unwrap(),
        "-in",
        sp.to_str().unwrap(),
    ];
    for o in opts {
        args.extend(["-pkeyopt", o]);
    }
    let out = Command::new("openssl")
        .args(&args)
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn sign_recover_and_verify_recover_round_trip_and_match_openssl() {
    let (env, t) = token("hsm");
    for ty in [CKM_RSA_PKCS, CKM_RSA_X_509] {
        let mi = mech_info(&t, ty);
        assert_eq!(
            mi.flags & (CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER),
            CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER,
            "mechanism {ty:#x} advertises recovery"
        );
    }
    let (public, private) = rsa_pair(&t);
    let spki = ok(t.get(public, CKA_PUBLIC_KEY_INFO), "CKA_PUBLIC_KEY_INFO");
    let data = b"recover me: some bytes of a message".to_vec();

    // PKCS #1 v1.5: the signature is C_Sign's, recovery gives the data back.
    let sig = ok(
        recover(&t, false, CKM_RSA_PKCS, private, &data),
        "C_SignRecover CKM_RSA_PKCS",
    );
    assert_eq!(sig.len(), 256);
    assert_eq!(
        ok(t.sign(CKM_RSA_PKCS, private, &data), "C_Sign CKM_RSA_PKCS"),
        sig,
        "PKCS #1 v1.5 signatures are deterministic: C_SignRecover == C_Sign"
    );
    assert_eq!(
        ok(
            recover(&t, true, CKM_RSA_PKCS, public, &sig),
            "C_VerifyRecover CKM_RSA_PKCS"
        ),
        data
    );
    assert_eq!(openssl_verifyrecover(&env, &spki, &sig, &[]), data);

    // Raw RSA: the whole block comes back (leading zeros kept).
    let mut block = vec![0u8; 256];
    block[200..].copy_from_slice(&[0x5a; 56]);
    let raw = ok(
        recover(&t, false, CKM_RSA_X_509, private, &block),
        "C_SignRecover CKM_RSA_X_509",
    );
    assert_eq!(
        ok(
            recover(&t, true, CKM_RSA_X_509, public, &raw),
            "C_VerifyRecover CKM_RSA_X_509"
        ),
        block
    );
    assert_eq!(
        openssl_verifyrecover(&env, &spki, &raw, &["rsa_padding_mode:none"]),
        block
    );

    // A changed signature does not verify; a short one is the wrong length.
    let mut bad = sig.clone();
    bad[100] ^= 1;
    err(
        recover(&t, true, CKM_RSA_PKCS, public, &bad),
        CKR_SIGNATURE_INVALID,
        "C_VerifyRecover of a changed signature",
    );
    err(
        recover(&t, true, CKM_RSA_PKCS, public, &sig[1..]),
        CKR_SIGNATURE_LEN_RANGE,
        "C_VerifyRecover of a short signature",
    );
    // PKCS #1 v1.5 takes at most k - 11 bytes.
    err(
        recover(&t, false, CKM_RSA_PKCS, private, &[1; 246]),
        CKR_DATA_LEN_RANGE,
        "C_SignRecover of k - 10 bytes",
    );
    // A too-small buffer keeps the operation; the right one then works.
    check(
        recover_init(&t, false, CKM_RSA_PKCS, private),
        CKR_OK,
        "C_SignRecoverInit",
    );
    let mut small = [0u8; 16];
    let (rv, n) = recover_raw(&t, false, &data, Some(&mut small));
    check(rv, CKR_BUFFER_TOO_SMALL, "C_SignRecover into 16 bytes");
    assert_eq!(n, 256);
    check(
        recover_init(&t, false, CKM_RSA_PKCS, private),
        CKR_OPERATION_ACTIVE,
        "C_SignRecoverInit while one is active",
    );
    let mut full = [0u8; 256];
    let (rv, _) = recover_raw(&t, false, &data, Some(&mut full));
    check(rv, CKR_OK, "C_SignRecover after CKR_BUFFER_TOO_SMALL");
    assert_eq!(full.to_vec(), sig);
    let (rv, _) = recover_raw(&t, false, &data, Some(&mut full));
    check(
        rv,
        CKR_OPERATION_NOT_INITIALIZED,
        "C_SignRecover after it ended",
    );

    // Mechanisms without recovery, and keys without the usage attribute.
    check(
        recover_init(&t, false, CKM_SHA256_RSA_PKCS, private),
        CKR_MECHANISM_INVALID,
        "C_SignRecoverInit(CKM_SHA256_RSA_PKCS)",
    );
    let (public2, private2) = ok(
        t.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY_RECOVER, false),
            ],
            vec![b(CKA_TOKEN, false), b(CKA_SIGN_RECOVER, false)],
        ),
        "RSA pair without recovery",
    );
    check(
        recover_init(&t, false, CKM_RSA_PKCS, private2),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "C_SignRecoverInit, CKA_SIGN_RECOVER false",
    );
    check(
        recover_init(&t, true, CKM_RSA_PKCS, public2),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "C_VerifyRecoverInit, CKA_VERIFY_RECOVER false",
    );
}

/// Runs `openssl args…` in the test directory, asserting success; stdout.
fn openssl(env: &TestEnv, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(env.dir.path())
        .output()
        .expect("run openssl");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

#[test]
fn verify_recover_of_signatures_made_by_openssl() {
    let (env, t) = token("hsm");
    openssl(
        &env,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k.pem",
        ],
    );
    let text = String::from_utf8(openssl(
        &env,
        &["rsa", "-in", "k.pem", "-noout", "-modulus"],
    ))
    .expect("utf-8");
    let modulus = from_hex(text.trim().trim_start_matches("Modulus="));
    assert_eq!(modulus.len(), 256);
    let public = ok(
        t.create(vec![
            u(CKA_CLASS, CKO_PUBLIC_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            b(CKA_TOKEN, false),
            b(CKA_VERIFY_RECOVER, true),
            by(CKA_MODULUS, &modulus),
            by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
        ]),
        "import the OpenSSL public key",
    );
    let dir = env.dir.path();
    // PKCS #1 v1.5 over raw data (no DigestInfo), and raw RSA.
    let data = b"signed by openssl, recovered by the token".to_vec();
    std::fs::write(dir.join("data.bin"), &data).expect("write data");
    let mut block = vec![0u8; 256];
    block[1..].copy_from_slice(&[0x3c; 255]);
    std::fs::write(dir.join("block.bin"), &block).expect("write block");
    openssl(
        &env,
        &[
            "pkeyutl", "-sign", "-inkey", "k.pem", "-in", "data.bin", "-out", "sig.bin",
        ],
    );
    openssl(
        &env,
        &[
            // The raw private-key operation (pkeyutl -sign wants a hash).
            "pkeyutl",
            "-decrypt",
            "-inkey",
            "k.pem",
            "-pkeyopt",
            "rsa_padding_mode:none",
            "-in",
            "block.bin",
            "-out",
            "raw.bin",
        ],
    );
    let sig = std::fs::read(dir.join("sig.bin")).expect("read signature");
    let raw = std::fs::read(dir.join("raw.bin")).expect("read raw signature");
    assert_eq!(
        ok(
            recover(&t, true, CKM_RSA_PKCS, public, &sig),
            "C_VerifyRecover of an OpenSSL PKCS #1 v1.5 signature"
        ),
        data
    );
    assert_eq!(
        ok(
            recover(&t, true, CKM_RSA_X_509, public, &raw),
            "C_VerifyRecover of an OpenSSL raw RSA signature"
        ),
        block
    );
    // The raw block of a PKCS #1 signature shows the type 1 padding around the data.
    let em = ok(
        recover(&t, true, CKM_RSA_X_509, public, &sig),
        "C_VerifyRecover (X.509) of a PKCS #1 signature",
    );
    assert_eq!(em[..2], [0, 1]);
    assert!(em[2..256 - data.len() - 1].iter().all(|&b| b == 0xff));
    assert_eq!(em[256 - data.len() - 1], 0);
    assert_eq!(em[256 - data.len()..], data[..]);
}

// ---------------------------------------------------------------------------
// message-based encryption (AES-GCM)
// ---------------------------------------------------------------------------

/// A `CK_GCM_MESSAGE_PARAMS` with its buffers, owned.
#[derive(Clone, Debug)]
struct GcmMsg {
    iv: Vec<u8>,
    fixed_bits: CK_ULONG,
    generator: CK_ULONG,
    tag: Vec<u8>,
    tag_bits: CK_ULONG,
}

impl GcmMsg {
    fn new(iv: &[u8], fixed_bits: CK_ULONG, generator: CK_ULONG) -> GcmMsg {
        GcmMsg {
            iv: iv.to_vec(),
            fixed_bits,
            generator,
            tag: vec![0; 16],
            tag_bits: 128,
        }
    }

    /// Runs `f` with the C structure pointing into this value's buffers.
    fn with<R>(&mut self, f: impl FnOnce(*mut c_void, CK_ULONG) -> R) -> R {
        let mut p = CK_GCM_MESSAGE_PARAMS {
            pIv: self.iv.as_mut_ptr(),
            ulIvLen: self.iv.len() as CK_ULONG,
            ulIvFixedBits: self.fixed_bits,
            ivGenerator: self.generator,
            pTag: self.tag.as_mut_ptr(),
            ulTagBits: self.tag_bits,
        };
        f(
            &mut p as *mut _ as *mut c_void,
            size_of::<CK_GCM_MESSAGE_PARAMS>() as CK_ULONG,
        )
    }
}

fn msg_init(t: &Tok, dir: Dir, key: H) -> CK_RV {
    let mut m = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    match dir {
        Dir::Enc => ck3!(t.m, C_MessageEncryptInit(t.s, &mut m, key)),
        Dir::Dec => ck3!(t.m, C_MessageDecryptInit(t.s, &mut m, key)),
    }
}

fn msg_final(t: &Tok, dir: Dir) -> CK_RV {
    match dir {
        Dir::Enc => ck3!(t.m, C_MessageEncryptFinal(t.s)),
        Dir::Dec => ck3!(t.m, C_MessageDecryptFinal(t.s)),
    }
}

/// `C_EncryptMessage` / `C_DecryptMessage` into `out` (`None`: NULL).
fn msg_once_raw(
    t: &Tok,
    dir: Dir,
    p: &mut GcmMsg,
    aad: &[u8],
    input: &[u8],
    out: Option<&mut [u8]>,
) -> (CK_RV, usize) {
    let (mut a, mut d) = (aad.to_vec(), input.to_vec());
    let (o, mut n) = out_buf(out);
    let rv = p.with(|pp, pl| match dir {
        Dir::Enc => ck3!(
            t.m,
            C_EncryptMessage(
                t.s,
                pp,
                pl,
                opt_ptr(&mut a),
                a.len() as CK_ULONG,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                o,
                &mut n
            )
        ),
        Dir::Dec => ck3!(
            t.m,
            C_DecryptMessage(
                t.s,
                pp,
                pl,
                opt_ptr(&mut a),
                a.len() as CK_ULONG,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                o,
                &mut n
            )
        ),
    });
    (rv, n as usize)
}

/// One message with the size query first.
fn msg_once(t: &Tok, dir: Dir, p: &mut GcmMsg, aad: &[u8], input: &[u8]) -> Result<Vec<u8>, CK_RV> {
    let (rv, n) = msg_once_raw(t, dir, p, aad, input, None);
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut out = vec![0u8; n];
    let (rv, m) = msg_once_raw(t, dir, p, aad, input, Some(&mut out));
    if rv != CKR_OK {
        return Err(rv);
    }
    out.truncate(m);
    Ok(out)
}

fn msg_begin(t: &Tok, dir: Dir, p: &mut GcmMsg, aad: &[u8]) -> CK_RV {
    let mut a = aad.to_vec();
    p.with(|pp, pl| match dir {
        Dir::Enc => ck3!(
            t.m,
            C_EncryptMessageBegin(t.s, pp, pl, opt_ptr(&mut a), a.len() as CK_ULONG)
        ),
        Dir::Dec => ck3!(
            t.m,
            C_DecryptMessageBegin(t.s, pp, pl, opt_ptr(&mut a), a.len() as CK_ULONG)
        ),
    })
}

fn msg_next_raw(
    t: &Tok,
    dir: Dir,
    p: &mut GcmMsg,
    input: &[u8],
    out: Option<&mut [u8]>,
    flags: CK_FLAGS,
) -> (CK_RV, usize) {
    let mut d = input.to_vec();
    let (o, mut n) = out_buf(out);
    let rv = p.with(|pp, pl| match dir {
        Dir::Enc => ck3!(
            t.m,
            C_EncryptMessageNext(
                t.s,
                pp,
                pl,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                o,
                &mut n,
                flags
            )
        ),
        Dir::Dec => ck3!(
            t.m,
            C_DecryptMessageNext(
                t.s,
                pp,
                pl,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                o,
                &mut n,
                flags
            )
        ),
    });
    (rv, n as usize)
}

/// A whole message in parts: Begin, Next for each part (the last with
/// `CKF_END_OF_MESSAGE`, after a size query), the output of all parts.
fn msg_parts(
    t: &Tok,
    dir: Dir,
    p: &mut GcmMsg,
    aad: &[u8],
    parts: &[&[u8]],
) -> Result<Vec<u8>, CK_RV> {
    let rv = msg_begin(t, dir, p, aad);
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut all = Vec::new();
    for (i, part) in parts.iter().enumerate() {
        let last = i + 1 == parts.len();
        let flags = if last { CKF_END_OF_MESSAGE } else { 0 };
        let (rv, n) = msg_next_raw(t, dir, p, part, None, flags);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; n];
        let (rv, m) = msg_next_raw(t, dir, p, part, Some(&mut out), flags);
        if rv != CKR_OK {
            return Err(rv);
        }
        all.extend_from_slice(&out[..m]);
    }
    Ok(all)
}

/// `C_Encrypt` with `CKM_AES_GCM` (v3.0 `CK_GCM_PARAMS`): ciphertext || tag.
fn gcm_encrypt(t: &Tok, key: H, iv: &[u8], aad: &[u8], data: &[u8]) -> Vec<u8> {
    let mech = Mech::GcmFull {
        iv: iv.to_vec(),
        aad: aad.to_vec(),
        tag_bits: 128,
    };
    ok(t.encrypt(&mech, key, data), "C_Encrypt CKM_AES_GCM")
}

#[test]
fn message_encrypt_with_each_iv_generator() {
    let (_env, t) = token("hsm");
    let mi = mech_info(&t, CKM_AES_GCM);
    assert_eq!(
        mi.flags & (CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT | CKF_MULTI_MESSAGE),
        CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT | CKF_MULTI_MESSAGE,
        "CKM_AES_GCM advertises the message functions"
    );
    let key = aes_key(&t, &[0x42; 32]);
    let (aad, data) = (
        b"header".to_vec(),
        b"the message body, 33 bytes long!!".to_vec(),
    );
    let fixed = [0xA1, 0xB2, 0xC3, 0xD4];
    check(msg_init(&t, Dir::Enc, key), CKR_OK, "C_MessageEncryptInit");
    check(msg_init(&t, Dir::Dec, key), CKR_OK, "C_MessageDecryptInit");
    check(
        msg_init(&t, Dir::Enc, key),
        CKR_OPERATION_ACTIVE,
        "C_MessageEncryptInit twice",
    );
    let mut seen = Vec::new();
    for (generator, name) in [
        (CKG_NO_GENERATE, "CKG_NO_GENERATE"),
        (CKG_GENERATE, "CKG_GENERATE"),
        (CKG_GENERATE_COUNTER, "CKG_GENERATE_COUNTER"),
        (CKG_GENERATE_COUNTER, "CKG_GENERATE_COUNTER again"),
        (CKG_GENERATE_RANDOM, "CKG_GENERATE_RANDOM"),
        (CKG_GENERATE_RANDOM, "CKG_GENERATE_RANDOM again"),
    ] {
        let mut iv = vec![0u8; 12];
        iv[..4].copy_from_slice(&fixed);
        if generator == CKG_NO_GENERATE {
            iv[4..].copy_from_slice(&[9; 8]);
        }
        let given = iv.clone();
        let mut p = GcmMsg::new(&iv, 32, generator);
        let ct = ok(msg_once(&t, Dir::Enc, &mut p, &aad, &data), name);
        assert_eq!(
            ct.len(),
            data.len(),
            "{name}: ciphertext as long as the input"
        );
        assert_eq!(p.iv[..4], fixed, "{name}: the fixed part is kept");
        if generator == CKG_NO_GENERATE {
            assert_eq!(p.iv, given, "{name}: the IV is the caller's");
        }
        assert!(
            !seen.contains(&p.iv),
            "{name}: IV {} repeated",
            to_hex(&p.iv)
        );
        seen.push(p.iv.clone());
        // The same bytes as C_Encrypt with CKM_AES_GCM on that IV and AAD.
        let whole = gcm_encrypt(&t, key, &p.iv, &aad, &data);
        assert_eq!(
            [ct.clone(), p.tag.clone()].concat(),
            whole,
            "{name}: C_EncryptMessage == C_Encrypt(CKM_AES_GCM)"
        );
        // Decrypts back with the written-back IV and tag.
        let mut d = GcmMsg {
            generator: CKG_NO_GENERATE,
            ..p.clone()
        };
        assert_eq!(
            ok(
                msg_once(&t, Dir::Dec, &mut d, &aad, &ct),
                "C_DecryptMessage"
            ),
            data,
            "{name}: decrypts back"
        );
        // A wrong tag, AAD or ciphertext is CKR_ENCRYPTED_DATA_INVALID, and
        // the operation lives on.
        let mut bad = d.clone();
        bad.tag[3] ^= 0x10;
        err(
            msg_once(&t, Dir::Dec, &mut bad, &aad, &ct),
            CKR_ENCRYPTED_DATA_INVALID,
            "C_DecryptMessage, changed tag",
        );
        err(
            msg_once(&t, Dir::Dec, &mut d.clone(), b"other", &ct),
            CKR_ENCRYPTED_DATA_INVALID,
            "C_DecryptMessage, other AAD",
        );
    }
    // The counter generator counts (from a random start): the two counter
    // IVs' 64-bit counter fields differ by one.
    let field = |iv: &[u8]| u64::from_be_bytes(iv[4..].try_into().unwrap());
    let (c1, c2) = (field(&seen[2]), field(&seen[3]));
    assert_eq!(c1.wrapping_add(1), c2);
    // A size query or a too-small buffer generates nothing: the next counter
    // IV follows on.
    let mut p = GcmMsg::new(&fixed.repeat(3), 32, CKG_GENERATE_COUNTER);
    let (rv, n) = msg_once_raw(&t, Dir::Enc, &mut p, &aad, &data, None);
    check(rv, CKR_OK, "size query");
    assert_eq!(n, data.len());
    assert_eq!(p.iv, fixed.repeat(3), "a size query writes no IV");
    let mut small = [0u8; 4];
    let (rv, _) = msg_once_raw(&t, Dir::Enc, &mut p, &aad, &data, Some(&mut small));
    check(rv, CKR_BUFFER_TOO_SMALL, "too small");
    ok(
        msg_once(&t, Dir::Enc, &mut p, &aad, &data),
        "C_EncryptMessage",
    );
    assert_eq!(p.iv[..4], fixed);
    assert_eq!(field(&p.iv), c2.wrapping_add(1));

    // Bad parameters: too few random bits, nothing left to generate, an
    // unknown generator, a tag that is too long.
    for (mut p, what) in [
        (
            GcmMsg::new(&[0; 12], 40, CKG_GENERATE_RANDOM),
            "56 random bits",
        ),
        (
            GcmMsg::new(&[0; 12], 96, CKG_GENERATE_COUNTER),
            "no counter bits",
        ),
        (GcmMsg::new(&[0; 12], 0, 0x77), "unknown generator"),
        (
            GcmMsg {
                tag_bits: 136,
                ..GcmMsg::new(&[0; 12], 0, CKG_GENERATE_RANDOM)
            },
            "136-bit tag",
        ),
    ] {
        err(
            msg_once(&t, Dir::Enc, &mut p, &aad, &data),
            CKR_ARGUMENTS_BAD,
            what,
        );
    }
    check(msg_final(&t, Dir::Enc), CKR_OK, "C_MessageEncryptFinal");
    check(msg_final(&t, Dir::Dec), CKR_OK, "C_MessageDecryptFinal");
    check(
        msg_final(&t, Dir::Enc),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_MessageEncryptFinal twice",
    );
    let mut p = GcmMsg::new(&[0; 12], 0, CKG_GENERATE_RANDOM);
    err(
        msg_once(&t, Dir::Enc, &mut p, &aad, &data),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_EncryptMessage after Final",
    );
    // Init takes no parameter; the key must allow the use.
    let mut with_param = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: [0u8; 8].as_mut_ptr() as *mut c_void,
        ulParameterLen: 8,
    };
    check(
        ck3!(t.m, C_MessageEncryptInit(t.s, &mut with_param, key)),
        CKR_MECHANISM_PARAM_INVALID,
        "C_MessageEncryptInit with a parameter",
    );
    // A first message's CK_GCM_MESSAGE_PARAMS at Init (as the cryptoki crate
    // passes it) is accepted and not used; its pointers are never read as
    // CK_GCM_PARAMS' AAD (same size, ivGenerator where pAAD would be).
    let mut first = GcmMsg::new(&[0; 12], 0, CKG_GENERATE);
    first.with(|pp, pl| {
        let mut m = CK_MECHANISM {
            mechanism: CKM_AES_GCM,
            pParameter: pp,
            ulParameterLen: pl,
        };
        check(
            ck3!(t.m, C_MessageEncryptInit(t.s, &mut m, key)),
            CKR_OK,
            "C_MessageEncryptInit with a CK_GCM_MESSAGE_PARAMS",
        );
    });
    let mut p = GcmMsg::new(&[5; 12], 64, CKG_GENERATE_COUNTER);
    let ct = ok(
        msg_once(&t, Dir::Enc, &mut p, &aad, &data),
        "C_EncryptMessage",
    );
    assert_eq!(p.iv[..8], [5; 8]);
    assert_eq!(
        [ct, p.tag.clone()].concat(),
        gcm_encrypt(&t, key, &p.iv, &aad, &data)
    );
    check(msg_final(&t, Dir::Enc), CKR_OK, "C_MessageEncryptFinal");
    let no_encrypt = ok(
        t.create(vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            b(CKA_TOKEN, false),
            b(CKA_ENCRYPT, false),
            by(CKA_VALUE, &[1; 16]),
        ]),
        "AES key without CKA_ENCRYPT",
    );
    check(
        msg_init(&t, Dir::Enc, no_encrypt),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "C_MessageEncryptInit, CKA_ENCRYPT false",
    );
}

/// NIST GCM test case 16 (AES-256, 60-byte plaintext, 20-byte AAD, 96-bit IV)
/// of McGrew–Viega / the GCM specification, through C_EncryptMessage.
#[test]
fn message_encrypt_nist_vector() {
    let (_env, t) = token("hsm");
    let key = aes_key(
        &t,
        &from_hex("feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308"),
    );
    let iv = from_hex("cafebabefacedbaddecaf888");
    let pt = from_hex(
        "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39",
    );
    let aad = from_hex("feedfacedeadbeeffeedfacedeadbeefabaddad2");
    let ct = from_hex(
        "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662",
    );
    let tag = from_hex("76fc6ece0f4e1768cddf8853bb2d551b");
    check(msg_init(&t, Dir::Enc, key), CKR_OK, "C_MessageEncryptInit");
    let mut p = GcmMsg::new(&iv, 0, CKG_NO_GENERATE);
    assert_eq!(
        to_hex(&ok(
            msg_once(&t, Dir::Enc, &mut p, &aad, &pt),
            "C_EncryptMessage"
        )),
        to_hex(&ct)
    );
    assert_eq!(to_hex(&p.tag), to_hex(&tag));
    // A 96-bit tag is the first 12 bytes of it.
    let mut p96 = GcmMsg {
        tag: vec![0; 12],
        tag_bits: 96,
        ..GcmMsg::new(&iv, 0, CKG_NO_GENERATE)
    };
    ok(msg_once(&t, Dir::Enc, &mut p96, &aad, &pt), "96-bit tag");
    assert_eq!(p96.tag, tag[..12]);
    check(msg_init(&t, Dir::Dec, key), CKR_OK, "C_MessageDecryptInit");
    let mut d = GcmMsg {
        tag: tag.clone(),
        ..GcmMsg::new(&iv, 0, CKG_NO_GENERATE)
    };
    assert_eq!(
        ok(
            msg_once(&t, Dir::Dec, &mut d, &aad, &ct),
            "C_DecryptMessage"
        ),
        pt
    );
    // In three parts, too.
    assert_eq!(
        ok(
            msg_parts(
                &t,
                Dir::Dec,
                &mut d,
                &aad,
                &[&ct[..7], &ct[7..40], &ct[40..]]
            ),
            "C_DecryptMessageBegin/Next"
        ),
        pt
    );
}

#[test]
fn message_encrypt_in_parts() {
    let (_env, t) = token("hsm");
    let key = aes_key(&t, &[0x17; 16]);
    let aad = b"aad of the multi-part message".to_vec();
    let data: Vec<u8> = (0..100u8).collect();
    check(msg_init(&t, Dir::Enc, key), CKR_OK, "C_MessageEncryptInit");
    check(msg_init(&t, Dir::Dec, key), CKR_OK, "C_MessageDecryptInit");
    let mut p = GcmMsg::new(
        &[7, 7, 7, 7, 0, 0, 0, 0, 0, 0, 0, 0],
        32,
        CKG_GENERATE_COUNTER,
    );
    let ct = ok(
        msg_parts(
            &t,
            Dir::Enc,
            &mut p,
            &aad,
            &[&data[..10], &data[10..11], &data[11..]],
        ),
        "C_EncryptMessageBegin/Next",
    );
    assert_eq!(ct.len(), data.len());
    assert_eq!(
        [ct.clone(), p.tag.clone()].concat(),
        gcm_encrypt(&t, key, &p.iv, &aad, &data),
        "multi-part message == C_Encrypt(CKM_AES_GCM)"
    );
    let mut d = GcmMsg {
        generator: CKG_NO_GENERATE,
        ..p.clone()
    };
    assert_eq!(
        ok(
            msg_once(&t, Dir::Dec, &mut d, &aad, &ct),
            "C_DecryptMessage"
        ),
        data
    );
    let mut bad = d.clone();
    bad.tag[0] ^= 1;
    err(
        msg_parts(&t, Dir::Dec, &mut bad, &aad, &[&ct[..50], &ct[50..]]),
        CKR_ENCRYPTED_DATA_INVALID,
        "multi-part decryption with a wrong tag",
    );

    // Encryption answers each part at once (as long as the part), the tag
    // at the end; decryption answers nothing before the end, then all of it.
    let mut e = GcmMsg::new(&[3; 12], 0, CKG_GENERATE_RANDOM);
    check(
        msg_begin(&t, Dir::Enc, &mut e, &aad),
        CKR_OK,
        "C_EncryptMessageBegin",
    );
    let (rv, n) = msg_next_raw(&t, Dir::Enc, &mut e, &data[..10], None, 0);
    check(rv, CKR_OK, "size query of a part");
    assert_eq!(n, 10);
    let mut first = [0u8; 10];
    let (rv, n) = msg_next_raw(&t, Dir::Enc, &mut e, &data[..10], Some(&mut first), 0);
    check(rv, CKR_OK, "C_EncryptMessageNext");
    assert_eq!(n, 10);
    let mut rest = vec![0u8; 90];
    let (rv, n) = msg_next_raw(
        &t,
        Dir::Enc,
        &mut e,
        &data[10..],
        Some(&mut rest),
        CKF_END_OF_MESSAGE,
    );
    check(rv, CKR_OK, "C_EncryptMessageNext, last part");
    assert_eq!(n, 90);
    let streamed = [&first[..], &rest, &e.tag].concat();
    assert_eq!(streamed, gcm_encrypt(&t, key, &e.iv, &aad, &data));
    let mut dq = GcmMsg {
        generator: CKG_NO_GENERATE,
        ..e.clone()
    };
    check(
        msg_begin(&t, Dir::Dec, &mut dq, &aad),
        CKR_OK,
        "C_DecryptMessageBegin",
    );
    let (rv, n) = msg_next_raw(&t, Dir::Dec, &mut dq, &first, Some(&mut [0u8; 16]), 0);
    check(rv, CKR_OK, "C_DecryptMessageNext");
    assert_eq!(n, 0, "no plaintext before the tag is checked");
    let mut plain = vec![0u8; 100];
    let (rv, n) = msg_next_raw(
        &t,
        Dir::Dec,
        &mut dq,
        &rest,
        Some(&mut plain),
        CKF_END_OF_MESSAGE,
    );
    check(rv, CKR_OK, "C_DecryptMessageNext, last part");
    assert_eq!((n, plain), (100, data.clone()));

    // Ordering rules.
    let mut q = GcmMsg::new(&[1; 12], 0, CKG_GENERATE_RANDOM);
    let (rv, _) = msg_next_raw(&t, Dir::Enc, &mut q, b"x", Some(&mut [0u8; 8]), 0);
    check(rv, CKR_OPERATION_NOT_INITIALIZED, "Next without Begin");
    check(msg_begin(&t, Dir::Enc, &mut q, b""), CKR_OK, "Begin");
    check(
        msg_begin(&t, Dir::Enc, &mut q, b""),
        CKR_OPERATION_ACTIVE,
        "Begin during a message",
    );
    err(
        msg_once(&t, Dir::Enc, &mut q.clone(), b"", b"x"),
        CKR_OPERATION_ACTIVE,
        "C_EncryptMessage during a message",
    );
    let (rv, _) = msg_next_raw(&t, Dir::Enc, &mut q, b"x", Some(&mut [0u8; 8]), 0x80);
    check(rv, CKR_ARGUMENTS_BAD, "Next with unknown flags");
    // Final ends the message in progress with the operation.
    check(
        msg_final(&t, Dir::Enc),
        CKR_OK,
        "C_MessageEncryptFinal mid-message",
    );
    check(
        msg_init(&t, Dir::Enc, key),
        CKR_OK,
        "C_MessageEncryptInit again",
    );
    let mut r = GcmMsg::new(&[1; 12], 0, CKG_GENERATE_RANDOM);
    ok(
        msg_once(&t, Dir::Enc, &mut r, b"", b"after"),
        "C_EncryptMessage",
    );
    // C_SessionCancel with CKF_MESSAGE_ENCRYPT ends it.
    check(
        ck3!(t.m, C_SessionCancel(t.s, CKF_MESSAGE_ENCRYPT)),
        CKR_OK,
        "C_SessionCancel",
    );
    err(
        msg_once(&t, Dir::Enc, &mut r, b"", b"after"),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_EncryptMessage after C_SessionCancel",
    );
}

// ---------------------------------------------------------------------------
// message-based signatures
// ---------------------------------------------------------------------------

fn msg_sign_init(t: &Tok, verify: bool, ty: CK_MECHANISM_TYPE, key: H) -> CK_RV {
    let mut m = CK_MECHANISM {
        mechanism: ty,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    if verify {
        ck3!(t.m, C_MessageVerifyInit(t.s, &mut m, key))
    } else {
        ck3!(t.m, C_MessageSignInit(t.s, &mut m, key))
    }
}

fn sign_message(t: &Tok, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
    let mut d = data.to_vec();
    let mut n: CK_ULONG = 0;
    let np = ptr::null_mut();
    let rv = ck3!(
        t.m,
        C_SignMessage(
            t.s,
            np,
            0,
            opt_ptr(&mut d),
            d.len() as CK_ULONG,
            ptr::null_mut(),
            &mut n
        )
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut out = vec![0u8; n as usize];
    let rv = ck3!(
        t.m,
        C_SignMessage(
            t.s,
            np,
            0,
            opt_ptr(&mut d),
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

fn verify_message(t: &Tok, data: &[u8], sig: &[u8]) -> CK_RV {
    let (mut d, mut s) = (data.to_vec(), sig.to_vec());
    ck3!(
        t.m,
        C_VerifyMessage(
            t.s,
            ptr::null_mut(),
            0,
            opt_ptr(&mut d),
            d.len() as CK_ULONG,
            opt_ptr(&mut s),
            s.len() as CK_ULONG
        )
    )
}

/// Begin, Next for each part (NULL `pulSignatureLen` until the last), the
/// signature.
fn sign_message_parts(t: &Tok, parts: &[&[u8]]) -> Result<Vec<u8>, CK_RV> {
    let rv = ck3!(t.m, C_SignMessageBegin(t.s, ptr::null_mut(), 0));
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut sig = vec![0u8; 512];
    let mut n = sig.len() as CK_ULONG;
    for (i, part) in parts.iter().enumerate() {
        let mut d = part.to_vec();
        let last = i + 1 == parts.len();
        let (sp, np) = if last {
            (sig.as_mut_ptr(), &mut n as *mut CK_ULONG)
        } else {
            (ptr::null_mut(), ptr::null_mut())
        };
        let rv = ck3!(
            t.m,
            C_SignMessageNext(
                t.s,
                ptr::null_mut(),
                0,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                sp,
                np
            )
        );
        if rv != CKR_OK {
            return Err(rv);
        }
    }
    sig.truncate(n as usize);
    Ok(sig)
}

fn verify_message_parts(t: &Tok, parts: &[&[u8]], sig: &[u8]) -> CK_RV {
    let rv = ck3!(t.m, C_VerifyMessageBegin(t.s, ptr::null_mut(), 0));
    if rv != CKR_OK {
        return rv;
    }
    for (i, part) in parts.iter().enumerate() {
        let mut d = part.to_vec();
        let mut s = sig.to_vec();
        let (sp, sl) = if i + 1 == parts.len() {
            (s.as_mut_ptr(), s.len() as CK_ULONG)
        } else {
            (ptr::null_mut(), 0)
        };
        let rv = ck3!(
            t.m,
            C_VerifyMessageNext(
                t.s,
                ptr::null_mut(),
                0,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                sp,
                sl
            )
        );
        if rv != CKR_OK {
            return rv;
        }
    }
    CKR_OK
}

#[test]
fn message_sign_and_verify_hmac_and_ecdsa() {
    let (_env, t) = token("hsm");
    for ty in [
        CKM_SHA256_HMAC,
        CKM_ECDSA_SHA256,
        CKM_SHA256_RSA_PKCS,
        CKM_AES_CMAC,
    ] {
        let f = mech_info(&t, ty).flags;
        assert_eq!(
            f & (CKF_MESSAGE_SIGN | CKF_MESSAGE_VERIFY),
            CKF_MESSAGE_SIGN | CKF_MESSAGE_VERIFY,
            "{ty:#x} advertises message signatures"
        );
    }
    assert_eq!(
        mech_info(&t, CKM_SHA256).flags & (CKF_MESSAGE_SIGN | CKF_MESSAGE_ENCRYPT),
        0,
        "a digest signs no messages"
    );
    let data = b"a message to authenticate, in several parts".to_vec();
    let parts: [&[u8]; 3] = [&data[..5], &data[5..30], &data[30..]];

    // HMAC: C_SignMessage == C_Sign, one call or in parts.
    let hk = ok(
        t.create(secret_key_template(
            CKK_GENERIC_SECRET,
            &[0x0b; 32],
            vec![b(CKA_TOKEN, false)],
        )),
        "HMAC key",
    );
    let want = ok(t.sign(CKM_SHA256_HMAC, hk, &data), "C_Sign HMAC");
    check(
        msg_sign_init(&t, false, CKM_SHA256_HMAC, hk),
        CKR_OK,
        "C_MessageSignInit",
    );
    assert_eq!(ok(sign_message(&t, &data), "C_SignMessage"), want);
    assert_eq!(ok(sign_message(&t, &data), "C_SignMessage again"), want);
    assert_eq!(
        ok(sign_message_parts(&t, &parts), "C_SignMessageNext"),
        want
    );
    check(
        ck3!(t.m, C_MessageSignFinal(t.s)),
        CKR_OK,
        "C_MessageSignFinal",
    );
    check(
        msg_sign_init(&t, true, CKM_SHA256_HMAC, hk),
        CKR_OK,
        "C_MessageVerifyInit",
    );
    check(verify_message(&t, &data, &want), CKR_OK, "C_VerifyMessage");
    check(
        verify_message(&t, b"other data", &want),
        CKR_SIGNATURE_INVALID,
        "C_VerifyMessage of other data",
    );
    check(
        verify_message_parts(&t, &parts, &want),
        CKR_OK,
        "C_VerifyMessageNext",
    );
    let mut bad = want.clone();
    bad[0] ^= 1;
    check(
        verify_message_parts(&t, &parts, &bad),
        CKR_SIGNATURE_INVALID,
        "C_VerifyMessageNext, wrong MAC",
    );
    check(
        ck3!(t.m, C_MessageVerifyFinal(t.s)),
        CKR_OK,
        "C_MessageVerifyFinal",
    );

    // ECDSA over P-256: message signatures verify with C_Verify and back.
    let (ep, ek) = ok(
        t.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![
                by(
                    CKA_EC_PARAMS,
                    &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
                ),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ],
            vec![b(CKA_TOKEN, false), b(CKA_SIGN, true)],
        ),
        "EC pair",
    );
    check(
        msg_sign_init(&t, false, CKM_ECDSA_SHA256, ek),
        CKR_OK,
        "C_MessageSignInit ECDSA",
    );
    let s1 = ok(sign_message(&t, &data), "C_SignMessage ECDSA");
    let s2 = ok(sign_message_parts(&t, &parts), "C_SignMessageNext ECDSA");
    assert_eq!(s1.len(), 64);
    check(
        t.verify(CKM_ECDSA_SHA256, ep, &data, &s1),
        CKR_OK,
        "C_Verify of C_SignMessage",
    );
    check(
        t.verify(CKM_ECDSA_SHA256, ep, &data, &s2),
        CKR_OK,
        "C_Verify of C_SignMessageNext",
    );
    let plain = ok(t.sign(CKM_ECDSA_SHA256, ek, &data), "C_Sign ECDSA");
    check(
        msg_sign_init(&t, true, CKM_ECDSA_SHA256, ep),
        CKR_OK,
        "C_MessageVerifyInit ECDSA",
    );
    check(
        verify_message(&t, &data, &plain),
        CKR_OK,
        "C_VerifyMessage of C_Sign",
    );
    // The wrong key kind for a usage is refused at Init.
    check(
        ck3!(t.m, C_MessageSignFinal(t.s)),
        CKR_OK,
        "C_MessageSignFinal",
    );
    check(
        msg_sign_init(&t, false, CKM_ECDSA_SHA256, ep),
        CKR_KEY_FUNCTION_NOT_PERMITTED,
        "C_MessageSignInit with a public key",
    );
    // A parameter on a message of a mechanism that takes none is a bad argument.
    let mut d = data.clone();
    let mut junk = [0u8; 8];
    let mut s = plain.clone();
    check(
        ck3!(
            t.m,
            C_VerifyMessage(
                t.s,
                junk.as_mut_ptr() as *mut c_void,
                8,
                d.as_mut_ptr(),
                d.len() as CK_ULONG,
                s.as_mut_ptr(),
                s.len() as CK_ULONG
            )
        ),
        CKR_ARGUMENTS_BAD,
        "C_VerifyMessage with a parameter",
    );
}

// ---------------------------------------------------------------------------
// C_GetOperationState / C_SetOperationState
// ---------------------------------------------------------------------------

fn get_state(t: &Tok) -> Result<Vec<u8>, CK_RV> {
    let mut n: CK_ULONG = 0;
    let rv = ck!(t.m, C_GetOperationState(t.s, ptr::null_mut(), &mut n));
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut small = vec![0u8; n as usize - 1];
    let mut m = small.len() as CK_ULONG;
    check(
        ck!(t.m, C_GetOperationState(t.s, small.as_mut_ptr(), &mut m)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetOperationState into a short buffer",
    );
    assert_eq!(m, n);
    let mut out = vec![0u8; n as usize];
    let rv = ck!(t.m, C_GetOperationState(t.s, out.as_mut_ptr(), &mut n));
    if rv != CKR_OK {
        return Err(rv);
    }
    out.truncate(n as usize);
    Ok(out)
}

fn set_state(t: &Tok, state: &[u8], enc: H, auth: H) -> CK_RV {
    let mut st = state.to_vec();
    ck!(
        t.m,
        C_SetOperationState(t.s, opt_ptr(&mut st), st.len() as CK_ULONG, enc, auth)
    )
}

#[test]
fn operation_state_round_trip_into_another_session() {
    let (_env, t) = token("hsm");
    let other = t.on(t.m.open(t.slot, false));
    let head: Vec<u8> = (0..=200u8).collect();
    let tail = b" and the rest of the message".to_vec();
    for (ty, want) in [
        (
            CKM_SHA256,
            sha2::Sha256::digest([&head[..], &tail].concat()).to_vec(),
        ),
        (
            CKM_SHA512,
            sha2::Sha512::digest([&head[..], &tail].concat()).to_vec(),
        ),
        (
            CKM_SHA_1,
            sha1::Sha1::digest([&head[..], &tail].concat()).to_vec(),
        ),
    ] {
        digest_init(&t, ty);
        check(digest_update(&t, &head), CKR_OK, "C_DigestUpdate");
        let state = ok(get_state(&t), "C_GetOperationState");
        // Restored in another session (read-only, not logged in itself).
        check(
            set_state(&other, &state, 0, 0),
            CKR_OK,
            "C_SetOperationState",
        );
        check(
            digest_update(&other, &tail),
            CKR_OK,
            "C_DigestUpdate (restored)",
        );
        assert_eq!(
            ok(digest_final(&other), "C_DigestFinal (restored)"),
            want,
            "{ty:#x}: the restored digest ends like the original"
        );
        // The original goes on undisturbed.
        check(digest_update(&t, &tail), CKR_OK, "C_DigestUpdate");
        assert_eq!(ok(digest_final(&t), "C_DigestFinal"), want);
        // And the state can be taken up again, replacing a running digest.
        digest_init(&other, CKM_SHA256);
        check(
            digest_update(&other, b"something else"),
            CKR_OK,
            "C_DigestUpdate",
        );
        check(
            set_state(&other, &state, 0, 0),
            CKR_OK,
            "C_SetOperationState over a digest",
        );
        check(digest_update(&other, &tail), CKR_OK, "C_DigestUpdate");
        assert_eq!(ok(digest_final(&other), "C_DigestFinal"), want);
    }
}

#[test]
fn operation_state_rules_and_tampering() {
    let (_env, t) = token("hsm");
    check(
        get_state(&t).err().unwrap_or(CKR_OK),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_GetOperationState with nothing active",
    );
    digest_init(&t, CKM_SHA256);
    check(digest_update(&t, b"hello "), CKR_OK, "C_DigestUpdate");
    let state = ok(get_state(&t), "C_GetOperationState");
    let want = sha2::Sha256::digest(b"hello world").to_vec();

    // Every single-byte change, a cut, an extension and garbage are refused.
    for i in 0..state.len() {
        let mut bad = state.clone();
        bad[i] ^= 0x01;
        check(
            set_state(&t, &bad, 0, 0),
            CKR_SAVED_STATE_INVALID,
            &format!("state with byte {i} changed"),
        );
    }
    for bad in [
        state[..state.len() - 1].to_vec(),
        state[..10].to_vec(),
        [state.clone(), vec![0]].concat(),
        vec![0u8; state.len()],
        vec![0u8; 1],
    ] {
        check(
            set_state(&t, &bad, 0, 0),
            CKR_SAVED_STATE_INVALID,
            &format!("state of {} bytes", bad.len()),
        );
    }
    check(
        ck!(t.m, C_SetOperationState(t.s, ptr::null_mut(), 4, 0, 0)),
        CKR_ARGUMENTS_BAD,
        "C_SetOperationState(NULL)",
    );
    // A digest needs no key.
    let key = aes_key(&t, &[3; 16]);
    check(
        set_state(&t, &state, key, 0),
        CKR_KEY_NOT_NEEDED,
        "C_SetOperationState with an encryption key",
    );
    check(
        set_state(&t, &state, 0, key),
        CKR_KEY_NOT_NEEDED,
        "C_SetOperationState with an authentication key",
    );
    // The digest is still the one of "hello " (refusals changed nothing).
    check(set_state(&t, &state, 0, 0), CKR_OK, "C_SetOperationState");
    check(digest_update(&t, b"world"), CKR_OK, "C_DigestUpdate");
    assert_eq!(ok(digest_final(&t), "C_DigestFinal"), want);

    // Another operation alongside the digest: unsaveable.
    digest_init(&t, CKM_SHA256);
    check(
        t.crypt_init(Dir::Enc, CKM_AES_ECB, key),
        CKR_OK,
        "C_EncryptInit",
    );
    check(
        get_state(&t).err().unwrap_or(CKR_OK),
        CKR_STATE_UNSAVEABLE,
        "C_GetOperationState with an encryption active",
    );
    check(
        ck3!(t.m, C_SessionCancel(t.s, CKF_ENCRYPT)),
        CKR_OK,
        "C_SessionCancel",
    );
    ok(
        get_state(&t),
        "C_GetOperationState after the encryption ended",
    );

    // A state from before C_Finalize/C_Initialize (another module instance,
    // as another process would be) is foreign.
    check(ck!(t.m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    t.m.initialize();
    let t2 = Tok::login(t.m, t.slot);
    check(
        set_state(&t2, &state, 0, 0),
        CKR_SAVED_STATE_INVALID,
        "a state saved by an earlier module instance",
    );
}

#[test]
fn operation_state_after_digest_key_is_unsaveable() {
    let (_env, t) = token("spec");
    let k = ok(
        t.create(vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
            b(CKA_TOKEN, false),
            b(CKA_SENSITIVE, false),
            b(CKA_EXTRACTABLE, true),
            (CKA_VALUE, V::Bytes(vec![0x61; 20])),
        ]),
        "generic secret",
    );
    digest_init(&t, CKM_SHA256);
    check(ck!(t.m, C_DigestKey(t.s, k)), CKR_OK, "C_DigestKey");
    let rv = get_state(&t).err().unwrap_or(CKR_OK);
    assert_eq!(
        rv,
        CKR_STATE_UNSAVEABLE,
        "a digest that took in a key is not handed out (got {})",
        rv_name(rv)
    );
}
