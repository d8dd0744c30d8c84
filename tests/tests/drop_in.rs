//! Drop-in for SoftHSMv2 (issue "drop-in"): what test suites do in their
//! set-up must work on a `spec` token the way it works on SoftHSMv2, and the
//! order of errors must be the one clients test for.
//!
//! - RSA sizes: `spec` tokens generate 1024 to 8192 bits, import public keys
//!   from 512 and private keys from 1024 bits; `hsm` tokens keep 2048 and
//!   say why in the log.
//! - Error precedence: session handle, then session state (read-only), then
//!   login, then template and mechanism checks.

use std::process::Command;

use cryptoki_sys::*;
use ferrohsm_tests::raw::{b, by, check, u};
use ferrohsm_tests::tok::{H, Tok, tokens};
use ferrohsm_tests::{TestEnv, ck};

fn rsa_pair(t: &Tok, bits: CK_ULONG, extractable: bool) -> Result<(H, H), CK_RV> {
    t.generate_pair(
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        vec![
            u(CKA_MODULUS_BITS, bits),
            b(CKA_VERIFY, true),
            b(CKA_TOKEN, false),
        ],
        vec![
            b(CKA_SIGN, true),
            b(CKA_TOKEN, false),
            b(CKA_SENSITIVE, !extractable),
            b(CKA_EXTRACTABLE, extractable),
        ],
    )
}

fn openssl(args: &[&str]) -> std::process::Output {
    let out = Command::new("openssl")
        .args(args)
        .output()
        .expect("openssl CLI");
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

#[test]
fn rsa_sizes_follow_the_key_policy() {
    let env = TestEnv::new();
    let toks = tokens(&[("spec", "spec"), ("hsm", "hsm")]);
    let (spec, hsm) = (toks[0], toks[1]);
    let dir = env.dir.path();

    // spec: 1024-bit generation, a signature OpenSSL verifies.
    let (public, private) = rsa_pair(&spec, 1024, true).expect("RSA-1024 on a spec token");
    assert_eq!(spec.get_ulong(public, CKA_MODULUS_BITS), 1024);
    let data = b"drop-in: test suites make 1024-bit keys";
    let sig = spec
        .sign(CKM_SHA256_RSA_PKCS, private, data)
        .expect("sign with RSA-1024");
    assert_eq!(sig.len(), 128);
    let spki = spec.get(public, CKA_PUBLIC_KEY_INFO).expect("SPKI");
    std::fs::write(dir.join("pub.der"), &spki).unwrap();
    std::fs::write(dir.join("msg"), data).unwrap();
    std::fs::write(dir.join("sig"), &sig).unwrap();
    let p = |f: &str| dir.join(f).to_str().unwrap().to_string();
    openssl(&[
        "pkey",
        "-pubin",
        "-inform",
        "DER",
        "-in",
        &p("pub.der"),
        "-out",
        &p("pub.pem"),
    ]);
    let v = openssl(&[
        "dgst",
        "-sha256",
        "-verify",
        &p("pub.pem"),
        "-signature",
        &p("sig"),
        &p("msg"),
    ]);
    assert!(String::from_utf8_lossy(&v.stdout).contains("Verified OK"));

    // hsm: the same generation is refused, and the log says why.
    check(
        rsa_pair(&hsm, 1024, false).err().unwrap_or(CKR_OK),
        CKR_KEY_SIZE_RANGE,
        "RSA-1024 generation on an hsm token",
    );
    assert!(
        env.log().contains("RSA keys need at least 2048 bits"),
        "the refusal names the policy: {}",
        env.log_tail(5)
    );
    // Beyond the generation range on any token.
    check(
        rsa_pair(&spec, 512, true).err().unwrap_or(CKR_OK),
        CKR_KEY_SIZE_RANGE,
        "RSA-512 generation",
    );

    // Import of the 1024-bit private key: spec takes it, hsm refuses it.
    let parts = [
        CKA_MODULUS,
        CKA_PUBLIC_EXPONENT,
        CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,
        CKA_PRIME_2,
        CKA_EXPONENT_1,
        CKA_EXPONENT_2,
        CKA_COEFFICIENT,
    ]
    .map(|ty| {
        (
            ty,
            spec.get(private, ty)
                .expect("component of an extractable key"),
        )
    });
    let private_template = |t: &Tok| {
        let mut list = vec![
            u(CKA_CLASS, CKO_PRIVATE_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            b(CKA_TOKEN, false),
            b(CKA_SIGN, true),
        ];
        list.extend(parts.iter().map(|(ty, v)| by(*ty, v)));
        t.create(list)
    };
    let imported = private_template(&spec).expect("RSA-1024 private import on spec");
    let sig2 = spec.sign(CKM_SHA256_RSA_PKCS, imported, data).unwrap();
    assert_eq!(
        sig2, sig,
        "PKCS#1 v1.5 is deterministic: same key, same signature"
    );
    check(
        private_template(&hsm).err().unwrap_or(CKR_OK),
        CKR_KEY_SIZE_RANGE,
        "RSA-1024 private import on hsm",
    );

    // A 512-bit public key from OpenSSL: spec imports it and verifies its
    // signature; hsm refuses it.
    openssl(&[
        "genpkey",
        "-algorithm",
        "RSA",
        "-pkeyopt",
        "rsa_keygen_bits:512",
        "-out",
        &p("k512.pem"),
    ]);
    openssl(&[
        "dgst",
        "-sha256",
        "-sign",
        &p("k512.pem"),
        "-out",
        &p("sig512"),
        &p("msg"),
    ]);
    let m = openssl(&["rsa", "-in", &p("k512.pem"), "-noout", "-modulus"]);
    let hex = String::from_utf8(m.stdout).unwrap();
    let hex = hex.trim().trim_start_matches("Modulus=");
    let n: Vec<u8> = (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect();
    let public512 = |t: &Tok| {
        t.create(vec![
            u(CKA_CLASS, CKO_PUBLIC_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            b(CKA_TOKEN, false),
            b(CKA_VERIFY, true),
            by(CKA_MODULUS, &n),
            by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
        ])
    };
    let k512 = public512(&spec).expect("RSA-512 public import on spec");
    let sig512 = std::fs::read(dir.join("sig512")).unwrap();
    check(
        spec.verify(CKM_SHA256_RSA_PKCS, k512, data, &sig512),
        CKR_OK,
        "verify OpenSSL's RSA-512 signature",
    );
    check(
        public512(&hsm).err().unwrap_or(CKR_OK),
        CKR_KEY_SIZE_RANGE,
        "RSA-512 public import on hsm",
    );

    // The mechanism info says what the spec token does.
    let mut info = CK_MECHANISM_INFO::default();
    check(
        ck!(
            spec.m,
            C_GetMechanismInfo(spec.slot, CKM_RSA_PKCS_KEY_PAIR_GEN, &mut info)
        ),
        CKR_OK,
        "C_GetMechanismInfo",
    );
    assert_eq!((info.ulMinKeySize, info.ulMaxKeySize), (1024, 8192));
}

/// Each call that creates objects, in a read-only session, with a token
/// object in a template that is also wrong in another way: the session state
/// comes first. Then, logged out, a private object: login comes before the
/// template.
#[test]
fn session_state_and_login_come_before_template_checks() {
    let _env = TestEnv::new();
    let toks = tokens(&[("precedence", "spec")]);
    let rw = toks[0];
    let ro = rw.on(rw.m.open(rw.slot, false));
    let aes = rw
        .generate(
            CKM_AES_KEY_GEN,
            vec![
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_DERIVE, true),
                b(CKA_UNWRAP, true),
                b(CKA_WRAP, true),
                b(CKA_EXTRACTABLE, true),
            ],
        )
        .expect("AES key");
    let wrapped = rw
        .wrap(
            &ferrohsm_tests::mech::Mech::Plain(CKM_AES_KEY_WRAP),
            aes,
            aes,
        )
        .expect("wrap");
    // A token object and an attribute no key has: the template is bad too.
    let bad = || vec![b(CKA_TOKEN, true), u(0x7fff_0001, 1)];
    let secret = |mut list: Vec<_>| {
        list.extend([u(CKA_CLASS, CKO_SECRET_KEY), u(CKA_KEY_TYPE, CKK_AES)]);
        list
    };
    let cases: Vec<(&str, CK_RV)> = vec![
        (
            "C_CreateObject",
            ro.create(secret(bad())).err().unwrap_or(CKR_OK),
        ),
        (
            "C_GenerateKey",
            ro.generate(CKM_AES_KEY_GEN, bad()).err().unwrap_or(CKR_OK),
        ),
        (
            "C_GenerateKeyPair (RSA-1 bit)",
            ro.generate_pair(
                CKM_RSA_PKCS_KEY_PAIR_GEN,
                vec![b(CKA_TOKEN, true), u(CKA_MODULUS_BITS, 1)],
                vec![b(CKA_TOKEN, true)],
            )
            .err()
            .unwrap_or(CKR_OK),
        ),
        (
            "C_DeriveKey",
            ro.derive(CKM_AES_ECB_ENCRYPT_DATA, aes, bad())
                .err()
                .unwrap_or(CKR_OK),
        ),
        (
            "C_UnwrapKey",
            ro.unwrap(
                &ferrohsm_tests::mech::Mech::Plain(CKM_AES_KEY_WRAP),
                aes,
                &wrapped,
                secret(bad()),
            )
            .err()
            .unwrap_or(CKR_OK),
        ),
        ("C_CopyObject", ro.copy(aes, bad()).err().unwrap_or(CKR_OK)),
    ];
    for (f, rv) in cases {
        check(rv, CKR_SESSION_READ_ONLY, &format!("{f} in a R/O session"));
    }

    // Logged out: a private key with a bad template is "not logged in".
    rw.logout();
    let private_bad = vec![b(CKA_TOKEN, false), u(0x7fff_0001, 1)];
    check(
        rw.create(secret(private_bad.clone()))
            .err()
            .unwrap_or(CKR_OK),
        CKR_USER_NOT_LOGGED_IN,
        "C_CreateObject of a secret key, logged out",
    );
    check(
        rw.generate(CKM_AES_KEY_GEN, private_bad)
            .err()
            .unwrap_or(CKR_OK),
        CKR_USER_NOT_LOGGED_IN,
        "C_GenerateKey, logged out",
    );
    // A public data object needs no login: its bad template is the error.
    check(
        rw.create(vec![
            u(CKA_CLASS, CKO_DATA),
            b(CKA_TOKEN, false),
            u(0x7fff_0001, 1),
        ])
        .err()
        .unwrap_or(CKR_OK),
        CKR_ATTRIBUTE_TYPE_INVALID,
        "C_CreateObject of a data object, logged out",
    );
}

/// The v3.0 HMAC key generators (`CKM_SHA*_KEY_GEN`, past SoftHSMv2, as
/// Kryoptic has them): a key of the hash's type that the HMAC mechanisms
/// take, whose MAC equals that of a generic secret with the same value.
#[test]
fn hmac_key_generators_make_typed_hmac_keys() {
    let _env = TestEnv::new();
    let t = tokens(&[("hmac", "spec")])[0];
    let data = b"HMAC keys of v3.0";
    for (keygen, kt, mac) in [
        (CKM_SHA_1_KEY_GEN, CKK_SHA_1_HMAC, CKM_SHA_1_HMAC),
        (CKM_SHA256_KEY_GEN, CKK_SHA256_HMAC, CKM_SHA256_HMAC),
        (CKM_SHA512_KEY_GEN, CKK_SHA512_HMAC, CKM_SHA512_HMAC),
        (CKM_SHA3_256_KEY_GEN, CKK_SHA3_256_HMAC, CKM_SHA3_256_HMAC),
    ] {
        let k = t
            .generate(
                keygen,
                vec![
                    u(CKA_VALUE_LEN, 32),
                    b(CKA_SIGN, true),
                    b(CKA_VERIFY, true),
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, false),
                    b(CKA_EXTRACTABLE, true),
                ],
            )
            .unwrap_or_else(|rv| panic!("{keygen:#x}: {rv:#x}"));
        assert_eq!(t.get_ulong(k, CKA_KEY_TYPE), kt);
        let value = t.value(k);
        assert_eq!(value.len(), 32);
        let sig = t.sign(mac, k, data).expect("HMAC with a typed key");
        check(t.verify(mac, k, data, &sig), CKR_OK, "verify");
        let generic = t
            .create(vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                by(CKA_VALUE, &value),
            ])
            .expect("generic secret");
        assert_eq!(t.sign(mac, generic, data).unwrap(), sig);
    }
    // Without CKA_VALUE_LEN, as for a generic secret: incomplete.
    check(
        t.generate(CKM_SHA256_KEY_GEN, vec![b(CKA_TOKEN, false)])
            .err()
            .unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCOMPLETE,
        "CKM_SHA256_KEY_GEN without CKA_VALUE_LEN",
    );
}
