//! Key wrapping and derivation through the raw C ABI: round trips between two
//! tokens and known answers.
//!
//! * Wrap on token A, unwrap on token B (two `spec`-policy tokens in one data
//!   directory), under a wrapping key imported with the same value on both: an
//!   AES key, an RSA and an EC private key (PKCS#8) with `CKM_AES_KEY_WRAP_KWP`,
//!   then used on B (AES: encrypt on A, decrypt on B; RSA/EC: sign on B, verify
//!   on A). AES keys also under `CKM_AES_KEY_WRAP`, `CKM_AES_CBC_PAD`,
//!   `CKM_AES_GCM` and `CKM_RSA_PKCS_OAEP` (B's public key on A). Wrapped bytes
//!   are checked against RFC 3394 / RFC 5649 vectors and an independent AES-CBC-PAD.
//! * `C_WrapKey` size queries: NULL buffer gives the length, a short buffer
//!   `CKR_BUFFER_TOO_SMALL` with the length.
//! * `CKM_HKDF_DERIVE` / `CKM_HKDF_DATA` against RFC 5869 test cases 1-3
//!   (SHA-256): extract+expand, extract only, expand only, salt as data and as
//!   a key; HKDF base key types.
//! * `CKM_AES_ECB_ENCRYPT_DATA` / `CKM_AES_CBC_ENCRYPT_DATA` against an independent
//!   AES (the `aes` crate), `CKM_CONCATENATE_BASE_AND_KEY` == base || key.
//! * Sensitivity inheritance of derived keys, and `CKA_WRAP_TEMPLATE` /
//!   `CKA_UNWRAP_TEMPLATE`.

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cryptoki_sys::*;
use ferrohsm_tests::mech::{Mech, Salt, kwp};
use ferrohsm_tests::raw::{V, b, by, check, check_any, ok, u};
use ferrohsm_tests::tok::{Dir, H, Template, Tok};
use ferrohsm_tests::{TestEnv, from_hex as hex, to_hex};

/// DER of the P-256 OID (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The wrapping key imported with the same value on both tokens.
const SHARED_KEK: [u8; 32] = [0x5a; 32];

// ---------------------------------------------------------------------------
// templates and mechanisms (minimal; exfiltration.rs and symmetric.rs have
// similar private helpers)
// ---------------------------------------------------------------------------

/// Full mechanism names for the messages of this file.
trait MechName {
    fn name(&self) -> String;
}

impl MechName for Mech {
    fn name(&self) -> String {
        match self {
            Mech::Plain(CKM_AES_KEY_WRAP_KWP) => "CKM_AES_KEY_WRAP_KWP".into(),
            Mech::Plain(CKM_AES_KEY_WRAP) => "CKM_AES_KEY_WRAP".into(),
            Mech::Plain(t) => format!("mechanism {t:#x}"),
            Mech::Bytes(CKM_AES_CBC_PAD, _) => "CKM_AES_CBC_PAD".into(),
            Mech::Bytes(t, _) => format!("mechanism {t:#x}"),
            Mech::Gcm(_) => "CKM_AES_GCM".into(),
            Mech::Oaep => "CKM_RSA_PKCS_OAEP".into(),
            Mech::Hkdf { data: true, .. } => "CKM_HKDF_DATA".into(),
            Mech::Hkdf { .. } => "CKM_HKDF_DERIVE".into(),
            Mech::StrData(..) => "CKM_AES_ECB_ENCRYPT_DATA".into(),
            Mech::CbcData(..) => "CKM_AES_CBC_ENCRYPT_DATA".into(),
            Mech::Concat(_) => "CKM_CONCATENATE_BASE_AND_KEY".into(),
            Mech::Ecdh(_) => "CKM_ECDH1_DERIVE".into(),
            m => format!("mechanism {:#x}", m.ty()),
        }
    }
}

fn hkdf(extract: bool, expand: bool, salt: Salt, info: &[u8]) -> Mech {
    Mech::Hkdf {
        data: false,
        extract,
        expand,
        salt,
        info: info.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// tokens and calls
// ---------------------------------------------------------------------------

/// Makes a token per policy of `policies` in one data directory (see
/// `tok::tokens`), each with a user session.
fn tokens(policies: &[&str]) -> (TestEnv, Vec<Tok>) {
    let env = TestEnv::new();
    let labels: Vec<String> = (0..policies.len())
        .map(|i| format!("wrap-derive-{i}"))
        .collect();
    let specs: Vec<(&str, &str)> = labels
        .iter()
        .map(String::as_str)
        .zip(policies.iter().copied())
        .collect();
    (env, ferrohsm_tests::tok::tokens(&specs))
}

/// The session secret keys the tests of this file import.
trait Keys {
    /// Imports a secret key (session object) of type `kt` with `value`, plus `extra`.
    fn secret(&self, kt: CK_KEY_TYPE, value: &[u8], extra: Template) -> H;
    /// The shared KEK: same value on every token, wraps and unwraps.
    fn kek(&self, value: &[u8]) -> H;
    /// An extractable, non-sensitive key of type `kt` with `value` (spec token).
    fn extractable(&self, kt: CK_KEY_TYPE, value: &[u8]) -> H;
}

impl Keys for Tok {
    fn secret(&self, kt: CK_KEY_TYPE, value: &[u8], extra: Template) -> H {
        let mut l = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, kt),
            by(CKA_VALUE, value),
            b(CKA_TOKEN, false),
        ];
        l.extend(extra);
        ok(
            self.create(l),
            &format!("C_CreateObject secret key {kt:#x}, {} bytes", value.len()),
        )
    }
    fn kek(&self, value: &[u8]) -> H {
        let usages = [CKA_WRAP, CKA_UNWRAP, CKA_ENCRYPT, CKA_DECRYPT];
        self.secret(CKK_AES, value, usages.map(|a| b(a, true)).into())
    }
    fn extractable(&self, kt: CK_KEY_TYPE, value: &[u8]) -> H {
        let mut extra = vec![b(CKA_EXTRACTABLE, true), b(CKA_SENSITIVE, false)];
        extra.extend([CKA_DERIVE, CKA_ENCRYPT, CKA_DECRYPT].map(|a| b(a, true)));
        self.secret(kt, value, extra)
    }
}

fn secret_tpl(kt: CK_KEY_TYPE, len: Option<CK_ULONG>) -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    let mut l = vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, kt),
        b(CKA_TOKEN, false),
        b(CKA_SENSITIVE, false),
        b(CKA_EXTRACTABLE, true),
    ];
    if let Some(n) = len {
        l.push(u(CKA_VALUE_LEN, n));
    }
    l
}

// ---------------------------------------------------------------------------
// independent AES
// ---------------------------------------------------------------------------

fn aes_ecb(key: &[u8], data: &[u8]) -> Vec<u8> {
    assert_eq!(data.len() % 16, 0);
    let mut out = Vec::new();
    for chunk in data.chunks(16) {
        let mut blk = aes::Block::default();
        blk.copy_from_slice(chunk);
        match key.len() {
            16 => aes::Aes128::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut blk),
            24 => aes::Aes192::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut blk),
            _ => aes::Aes256::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut blk),
        }
        out.extend_from_slice(&blk);
    }
    out
}

/// AES-CBC without padding (`data` a multiple of 16 bytes).
fn aes_cbc(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut prev = *iv;
    let mut out = Vec::new();
    for chunk in data.chunks(16) {
        let x: Vec<u8> = chunk.iter().zip(prev.iter()).map(|(a, b)| a ^ b).collect();
        let c = aes_ecb(key, &x);
        prev.copy_from_slice(&c);
        out.extend_from_slice(&c);
    }
    out
}

/// AES-CBC with PKCS#7 padding.
fn aes_cbc_pad(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let pad = 16 - data.len() % 16;
    let mut d = data.to_vec();
    d.extend(std::iter::repeat_n(pad as u8, pad));
    aes_cbc(key, iv, &d)
}

// ---------------------------------------------------------------------------
// 1. two tokens: wrap on A, unwrap on B, use on B
// ---------------------------------------------------------------------------

#[test]
fn kwp_round_trip_between_tokens() {
    let (_env, toks) = tokens(&["spec", "spec"]);
    let (a, bt) = (toks[0], toks[1]);
    let (kek_a, kek_b) = (a.kek(&SHARED_KEK), bt.kek(&SHARED_KEK));
    let mech = kwp();

    // An AES key generated (extractable) on A.
    let aes_a = ok(
        a.generate(
            CKM_AES_KEY_GEN,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_SENSITIVE, true),
                b(CKA_ENCRYPT, true),
                b(CKA_DECRYPT, true),
            ],
        ),
        "generate AES on A",
    );
    let blob = ok(a.wrap(&mech, kek_a, aes_a), "KWP wrap AES on A");
    assert_eq!(blob.len(), 40, "KWP of a 32-byte key is 40 bytes");
    let aes_b = ok(
        bt.unwrap(
            &mech,
            kek_b,
            &blob,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                b(CKA_TOKEN, false),
                b(CKA_DECRYPT, true),
                b(CKA_ENCRYPT, true),
            ],
        ),
        "KWP unwrap AES on B",
    );
    assert_eq!(
        a.get(aes_a, CKA_CHECK_VALUE),
        bt.get(aes_b, CKA_CHECK_VALUE),
        "same key: same CKA_CHECK_VALUE"
    );
    let cbc = Mech::Bytes(CKM_AES_CBC_PAD, vec![3; 16]);
    let msg = b"wrapped on A, unwrapped on B, decrypted on B";
    let ct = ok(a.crypt(Dir::Enc, &cbc, aes_a, msg), "encrypt on A");
    let pt = ok(bt.crypt(Dir::Dec, &cbc, aes_b, &ct), "decrypt on B");
    assert_eq!(pt, msg);
    // An unwrapped key is neither local nor always sensitive/never extractable,
    // and unextractable since the template did not ask.
    for (ty, name, want) in [
        (CKA_LOCAL, "CKA_LOCAL", false),
        (CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", false),
        (CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", false),
        (CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false),
    ] {
        assert_eq!(bt.get_bool(aes_b, ty), want, "unwrapped AES key: {name}");
    }
    // Unextractable after unwrap: it cannot be wrapped again.
    let (rv, _) = bt.wrap_raw(&mech, kek_b, aes_b, None);
    check(
        rv,
        CKR_KEY_UNEXTRACTABLE,
        "re-wrap of an unwrapped (unextractable) key",
    );

    // RSA and EC private keys, extractable on A, as PKCS#8 under KWP.
    let data = b"signed on B with a key born on A";
    let (rsa_pub_a, rsa_a) = ok(
        a.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "RSA key pair on A",
    );
    let (ec_pub_a, ec_a) = ok(
        a.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![
                by(CKA_EC_PARAMS, P256_OID),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "EC key pair on A",
    );
    let pairs = [
        ("RSA", CKK_RSA, rsa_a, rsa_pub_a, CKM_SHA256_RSA_PKCS),
        ("EC", CKK_EC, ec_a, ec_pub_a, CKM_ECDSA_SHA256),
    ];
    // Wraps the private key `priv_a` of `pair` on A under `wm` (named `wn`),
    // unwraps it on B as a signing key, signs `data` with it on B and verifies
    // on A: the blob, B's key and the signature.
    let carry = |wn: &str, wm: &Mech, (name, kt, priv_a, pub_a, sig_mech): (&str, _, _, _, _)| {
        let blob = ok(
            a.wrap(wm, kek_a, priv_a),
            &format!("{wn} wrap {name} private key on A"),
        );
        let signer = vec![
            u(CKA_CLASS, CKO_PRIVATE_KEY),
            u(CKA_KEY_TYPE, kt),
            b(CKA_TOKEN, false),
            b(CKA_SIGN, true),
        ];
        let priv_b = ok(
            bt.unwrap(wm, kek_b, &blob, signer),
            &format!("{wn} unwrap {name} private key on B"),
        );
        let sig = ok(
            bt.sign(sig_mech, priv_b, data),
            &format!("sign with the {wn}-unwrapped {name} key on B"),
        );
        check(
            a.verify(sig_mech, pub_a, data, &sig),
            CKR_OK,
            &format!("verify on A the {name} signature made on B ({wn})"),
        );
        (blob, priv_b, sig)
    };
    for pair in pairs {
        let (name, kt, priv_a, pub_a, sig_mech) = pair;
        let (blob, priv_b, sig) = carry("KWP", &mech, pair);
        check(
            a.verify(sig_mech, pub_a, b"another message", &sig),
            CKR_SIGNATURE_INVALID,
            &format!("{name} signature over other data"),
        );
        assert!(
            !bt.get_bool(priv_b, CKA_LOCAL),
            "unwrapped {name} key: CKA_LOCAL"
        );
        assert!(
            !bt.get_bool(priv_b, CKA_EXTRACTABLE),
            "unwrapped {name} key: CKA_EXTRACTABLE"
        );
        let attr = if kt == CKK_RSA {
            CKA_MODULUS
        } else {
            CKA_EC_PARAMS
        };
        assert_eq!(
            ok(
                bt.get(priv_b, attr),
                "public attribute of the unwrapped key"
            ),
            ok(a.get(priv_a, attr), "public attribute of the original"),
            "{name}: the unwrapped key carries the same public part"
        );
        // A wrong KEK on B: the blob does not unwrap.
        let other = bt.kek(&[0x77; 32]);
        let r = bt.unwrap(
            &mech,
            other,
            &blob,
            vec![
                u(CKA_CLASS, CKO_PRIVATE_KEY),
                u(CKA_KEY_TYPE, kt),
                b(CKA_TOKEN, false),
            ],
        );
        assert_eq!(
            r.err(),
            Some(CKR_WRAPPED_KEY_INVALID),
            "{name} blob under the wrong KEK"
        );
    }
    // Last (the module refuses it): the AES Key Wrap section ("CKM_AES_KEY_WRAP
    // can wrap a key of any length. A key whose length is not a multiple of the
    // AES Key Wrap semiblock size (8 bytes) will be zero padded to fit"; the
    // OASIS 3.1+ text adds: "A private key will be encoded as defined in section
    // 6.7; the encoded private key will be zero padded to fit if necessary" and
    // unwrapping "ignores trailing zero bytes").
    for pair in pairs {
        carry("KW", &Mech::Plain(CKM_AES_KEY_WRAP), pair);
    }
}

// ---------------------------------------------------------------------------
// 2. the other wrapping mechanisms, with known answers
// ---------------------------------------------------------------------------

#[test]
fn aes_wrap_mechanisms_and_known_answers() {
    let (_env, toks) = tokens(&["spec", "spec"]);
    let (a, bt) = (toks[0], toks[1]);
    let (kek_a, kek_b) = (a.kek(&SHARED_KEK), bt.kek(&SHARED_KEK));
    let value = hex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f");
    let key_a = a.extractable(CKK_AES, &value);
    let unwrap_tpl = || {
        vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            b(CKA_TOKEN, false),
            b(CKA_ENCRYPT, true),
            b(CKA_DECRYPT, true),
        ]
    };
    let cbc_iv = [0x3c; 16];
    let mechs = [
        kwp(),
        Mech::Plain(CKM_AES_KEY_WRAP),
        Mech::Bytes(CKM_AES_CBC_PAD, cbc_iv.to_vec()),
        Mech::Gcm(vec![0x1f; 12]),
    ];
    let probe = Mech::Bytes(CKM_AES_CBC_PAD, vec![9; 16]);
    let msg = b"the key moved between tokens";
    for mech in &mechs {
        let name = mech.name();
        let blob = ok(a.wrap(mech, kek_a, key_a), &format!("{name}: wrap on A"));
        // The wrapped bytes, computed another way.
        let want = match mech {
            Mech::Plain(CKM_AES_KEY_WRAP_KWP) => blob.clone(), // checked by the RFC 5649 vectors below
            Mech::Plain(_) => blob.clone(),                    // RFC 3394 vector below
            Mech::Bytes(..) => aes_cbc_pad(&SHARED_KEK, &cbc_iv, &value),
            Mech::Gcm(_) => ok(
                a.crypt(Dir::Enc, mech, kek_a, &value),
                "GCM C_Encrypt of the key value",
            ),
            _ => unreachable!(),
        };
        assert_eq!(to_hex(&blob), to_hex(&want), "{name}: wrapped bytes");
        let key_b = ok(
            bt.unwrap(mech, kek_b, &blob, unwrap_tpl()),
            &format!("{name}: unwrap on B"),
        );
        let ct = ok(a.crypt(Dir::Enc, &probe, key_a, msg), "encrypt on A");
        assert_eq!(
            ok(bt.crypt(Dir::Dec, &probe, key_b, &ct), "decrypt on B"),
            msg,
            "{name}: round trip"
        );
        // A damaged blob does not unwrap (KW/KWP integrity check, GCM tag, CBC padding or length).
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let r = bt.unwrap(mech, kek_b, &bad, unwrap_tpl());
        match mech {
            // A flipped last byte may still leave valid padding or a valid AES length in CBC-PAD.
            Mech::Bytes(..) => {
                if let Err(rv) = r {
                    check_any(
                        rv,
                        &[CKR_WRAPPED_KEY_INVALID, CKR_WRAPPED_KEY_LEN_RANGE],
                        &format!("{name}: damaged blob"),
                    )
                }
            }
            _ => check(
                r.err().unwrap_or(CKR_OK),
                CKR_WRAPPED_KEY_INVALID,
                &format!("{name}: damaged blob"),
            ),
        }
    }

    // RFC 3394 4.6: 256 bits of key data under a 256-bit KEK.
    let kek = a.kek(&hex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ));
    let k = a.extractable(
        CKK_AES,
        &hex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f"),
    );
    let blob = ok(
        a.wrap(&Mech::Plain(CKM_AES_KEY_WRAP), kek, k),
        "RFC 3394 4.6 wrap",
    );
    assert_eq!(
        to_hex(&blob),
        "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21",
        "RFC 3394 4.6"
    );
    // RFC 5649 section 6: 20- and 7-octet keys (generic secrets) under a 192-bit KEK.
    let kek = a.kek(&hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"));
    for (pt, ct) in [
        (
            "c37b7e6492584340bed12207808941155068f738",
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
        ),
        ("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"),
    ] {
        let k = a.extractable(CKK_GENERIC_SECRET, &hex(pt));
        let blob = ok(a.wrap(&kwp(), kek, k), "RFC 5649 wrap");
        assert_eq!(
            to_hex(&blob),
            ct,
            "RFC 5649 section 6, {} octets",
            pt.len() / 2
        );
        let back = ok(
            a.unwrap(&kwp(), kek, &blob, secret_tpl(CKK_GENERIC_SECRET, None)),
            "RFC 5649 unwrap",
        );
        assert_eq!(
            to_hex(&a.value(back)),
            pt,
            "RFC 5649 unwrap gives the key back"
        );
    }
    // RSA-OAEP: A wraps under B's public key (imported on A), B unwraps with its private key.
    let (pub_b, priv_b) = ok(
        bt.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_UNWRAP, true),
                b(CKA_SENSITIVE, true),
            ],
        ),
        "RSA key pair on B",
    );
    let modulus = ok(bt.get(pub_b, CKA_MODULUS), "B's modulus");
    let pub_on_a = ok(
        a.create(vec![
            u(CKA_CLASS, CKO_PUBLIC_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            by(CKA_MODULUS, &modulus),
            by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
            b(CKA_TOKEN, false),
            b(CKA_WRAP, true),
        ]),
        "import B's public key on A",
    );
    let blob = ok(a.wrap(&Mech::Oaep, pub_on_a, key_a), "RSA-OAEP wrap on A");
    assert_eq!(blob.len(), 256, "RSA-2048 OAEP output length");
    let key_b = ok(
        bt.unwrap(&Mech::Oaep, priv_b, &blob, unwrap_tpl()),
        "RSA-OAEP unwrap on B",
    );
    let ct = ok(a.crypt(Dir::Enc, &probe, key_a, msg), "encrypt on A");
    assert_eq!(
        ok(bt.crypt(Dir::Dec, &probe, key_b, &ct), "decrypt on B"),
        msg,
        "RSA-OAEP round trip"
    );
    // OAEP wraps secret keys only.
    let (_, rsa_a) = ok(
        a.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_SIGN, true),
            ],
        ),
        "RSA key pair on A",
    );
    let (rv, _) = a.wrap_raw(&Mech::Oaep, pub_on_a, rsa_a, None);
    check(rv, CKR_KEY_NOT_WRAPPABLE, "RSA-OAEP wrap of a private key");
    // Last (the module refuses it): KW zero-pads a secret key to a multiple of
    // 8 bytes ("A key whose length is not a multiple of the AES Key Wrap
    // semiblock size (8 bytes) will be zero padded to fit"), and unwrapping
    // truncates to CKA_VALUE_LEN (the AES Key Wrap section, "CKM_AES_KEY_WRAP").
    let odd = a.extractable(CKK_GENERIC_SECRET, &[0x42; 20]);
    let blob = ok(
        a.wrap(&Mech::Plain(CKM_AES_KEY_WRAP), kek, odd),
        "KW of a 20-byte key",
    );
    assert_eq!(blob.len(), 32, "KW of 20 bytes: zero-padded to 24, plus 8");
    let back = ok(
        a.unwrap(
            &Mech::Plain(CKM_AES_KEY_WRAP),
            kek,
            &blob,
            secret_tpl(CKK_GENERIC_SECRET, Some(20)),
        ),
        "KW unwrap with CKA_VALUE_LEN 20",
    );
    assert_eq!(
        a.value(back),
        vec![0x42; 20],
        "KW unwrap truncates to CKA_VALUE_LEN"
    );
}

// ---------------------------------------------------------------------------
// 3. size queries
// ---------------------------------------------------------------------------

#[test]
fn wrap_size_queries() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    let kek = t.kek(&SHARED_KEK);
    let key = t.extractable(CKK_AES, &[0x24; 32]);
    let (rsa_pub, _) = ok(
        t.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
            ],
            vec![b(CKA_TOKEN, false), b(CKA_UNWRAP, true)],
        ),
        "RSA key pair",
    );
    for (mech, wk, want_len) in [
        (kwp(), kek, 40),
        (Mech::Plain(CKM_AES_KEY_WRAP), kek, 40),
        (Mech::Bytes(CKM_AES_CBC_PAD, vec![1; 16]), kek, 48),
        (Mech::Gcm(vec![2; 12]), kek, 48),
        (Mech::Oaep, rsa_pub, 256),
    ] {
        let name = mech.name();
        let (rv, n) = t.wrap_raw(&mech, wk, key, None);
        check(rv, CKR_OK, &format!("{name}: size query"));
        assert_eq!(n, want_len, "{name}: size query length");
        let mut small = vec![0u8; n - 1];
        let (rv, m) = t.wrap_raw(&mech, wk, key, Some(&mut small));
        check(
            rv,
            CKR_BUFFER_TOO_SMALL,
            &format!("{name}: buffer one byte short"),
        );
        assert_eq!(m, n, "{name}: CKR_BUFFER_TOO_SMALL reports the length");
        assert!(
            small.iter().all(|x| *x == 0),
            "{name}: nothing written to a short buffer"
        );
        // A zero-length buffer (not NULL).
        let (rv, m) = t.wrap_raw(&mech, wk, key, Some(&mut []));
        check(
            rv,
            CKR_BUFFER_TOO_SMALL,
            &format!("{name}: zero-length buffer"),
        );
        assert_eq!(m, n, "{name}: zero-length buffer reports the length");
        let mut buf = vec![0u8; n + 16];
        let (rv, m) = t.wrap_raw(&mech, wk, key, Some(&mut buf));
        check(rv, CKR_OK, &format!("{name}: wrap into a larger buffer"));
        assert_eq!(m, want_len, "{name}: wrapped length");
    }
}

// ---------------------------------------------------------------------------
// 4. HKDF (RFC 5869, SHA-256)
// ---------------------------------------------------------------------------

struct HkdfCase {
    name: &'static str,
    ikm: Vec<u8>,
    salt: Option<Vec<u8>>,
    info: Vec<u8>,
    prk: &'static str,
    okm: &'static str,
}

fn rfc5869() -> Vec<HkdfCase> {
    vec![
        HkdfCase {
            name: "RFC 5869 A.1",
            ikm: vec![0x0b; 22],
            salt: Some((0x00..=0x0c).collect()),
            info: (0xf0..=0xf9).collect(),
            prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        },
        HkdfCase {
            name: "RFC 5869 A.2",
            ikm: (0x00..=0x4f).collect(),
            salt: Some((0x60..=0xaf).collect()),
            info: (0xb0..=0xff).collect(),
            prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        },
        HkdfCase {
            name: "RFC 5869 A.3",
            ikm: vec![0x0b; 22],
            salt: None,
            info: Vec::new(),
            prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        },
    ]
}

#[test]
fn hkdf_rfc5869_vectors() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    for c in rfc5869() {
        let name = c.name;
        let okm_len = (c.okm.len() / 2) as CK_ULONG;
        let ikm = t.extractable(CKK_GENERIC_SECRET, &c.ikm);
        let salt = match &c.salt {
            Some(s) => Salt::Data(s.clone()),
            None => Salt::Null,
        };
        // Extract and expand.
        let h = ok(
            t.derive(
                &hkdf(true, true, salt.clone(), &c.info),
                ikm,
                secret_tpl(CKK_GENERIC_SECRET, Some(okm_len)),
            ),
            &format!("{name}: HKDF_DERIVE extract+expand"),
        );
        assert_eq!(to_hex(&t.value(h)), c.okm, "{name}: OKM");
        // Extract only: the PRK; CKA_VALUE_LEN may be left to the mechanism.
        let h = ok(
            t.derive(
                &hkdf(true, false, salt.clone(), &c.info),
                ikm,
                secret_tpl(CKK_GENERIC_SECRET, None),
            ),
            &format!("{name}: HKDF_DERIVE extract only, no CKA_VALUE_LEN"),
        );
        assert_eq!(to_hex(&t.value(h)), c.prk, "{name}: PRK");
        let h = ok(
            t.derive(
                &hkdf(true, false, salt.clone(), &c.info),
                ikm,
                secret_tpl(CKK_GENERIC_SECRET, Some(32)),
            ),
            &format!("{name}: HKDF_DERIVE extract only, CKA_VALUE_LEN 32"),
        );
        assert_eq!(to_hex(&t.value(h)), c.prk, "{name}: PRK (CKA_VALUE_LEN 32)");
        // Expand only, from the PRK (the salt is ignored).
        let prk = t.extractable(CKK_GENERIC_SECRET, &hex(c.prk));
        let h = ok(
            t.derive(
                &hkdf(false, true, Salt::Data(b"ignored".to_vec()), &c.info),
                prk,
                secret_tpl(CKK_GENERIC_SECRET, Some(okm_len)),
            ),
            &format!("{name}: HKDF_DERIVE expand only"),
        );
        assert_eq!(to_hex(&t.value(h)), c.okm, "{name}: OKM from the PRK");
        // Salt as a key object.
        if let Some(s) = &c.salt {
            let salt_key = t.extractable(CKK_GENERIC_SECRET, s);
            let h = ok(
                t.derive(
                    &hkdf(true, true, Salt::Key(salt_key), &c.info),
                    ikm,
                    secret_tpl(CKK_GENERIC_SECRET, Some(okm_len)),
                ),
                &format!("{name}: HKDF_DERIVE with CKF_HKDF_SALT_KEY"),
            );
            assert_eq!(
                to_hex(&t.value(h)),
                c.okm,
                "{name}: OKM with the salt as a key"
            );
        }
        // CKM_HKDF_DATA: a data object holding the OKM.
        let h = ok(
            t.derive(
                &Mech::Hkdf {
                    data: true,
                    extract: true,
                    expand: true,
                    salt: salt.clone(),
                    info: c.info.clone(),
                },
                ikm,
                vec![
                    u(CKA_CLASS, CKO_DATA),
                    u(CKA_VALUE_LEN, okm_len),
                    b(CKA_TOKEN, false),
                ],
            ),
            &format!("{name}: HKDF_DATA"),
        );
        assert_eq!(
            CK_ULONG::from_ne_bytes(ok(t.get(h, CKA_CLASS), "CKA_CLASS").try_into().unwrap()),
            CKO_DATA,
            "{name}: HKDF_DATA makes a data object"
        );
        assert_eq!(to_hex(&t.value(h)), c.okm, "{name}: HKDF_DATA value");
    }
    // An AES key of the OKM's first 32 bytes (A.1): the derived key works as an AES key.
    let c = &rfc5869()[0];
    let ikm = t.extractable(CKK_GENERIC_SECRET, &c.ikm);
    let aes_key = ok(
        t.derive(
            &hkdf(true, true, Salt::Data(c.salt.clone().unwrap()), &c.info),
            ikm,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_ENCRYPT, true),
                b(CKA_SENSITIVE, false),
            ],
        ),
        "HKDF_DERIVE to an AES-256 key",
    );
    let okm = hex(c.okm);
    let ct = ok(
        t.crypt(Dir::Enc, &Mech::Plain(CKM_AES_ECB), aes_key, &[0u8; 16]),
        "AES-ECB with the derived key",
    );
    assert_eq!(
        ct,
        aes_ecb(&okm[..32], &[0u8; 16]),
        "the derived AES key is OKM[..32]"
    );
}

#[test]
fn hkdf_parameter_and_base_key_rules() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    let ikm = t.extractable(CKK_GENERIC_SECRET, &[0x0b; 32]);
    let tpl = || secret_tpl(CKK_GENERIC_SECRET, Some(32));
    // Neither extract nor expand.
    let r = t.derive(&hkdf(false, false, Salt::Null, b""), ikm, tpl());
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_MECHANISM_PARAM_INVALID,
        "HKDF with bExtract and bExpand FALSE",
    );
    // A salt key handle that is no key.
    let r = t.derive(&hkdf(true, true, Salt::Key(0xdead_beef), b""), ikm, tpl());
    check_any(
        r.err().unwrap_or(CKR_OK),
        &[CKR_MECHANISM_PARAM_INVALID, CKR_KEY_HANDLE_INVALID],
        "HKDF with an invalid hSaltKey",
    );
    // PKCS#11 3.0, HKDF mechanisms, "HKDF derive": "The input key must be of
    // type CKK_HKDF or CKK_GENERIC_SECRET".
    let aes_base = t.extractable(CKK_AES, &[0x0b; 32]);
    let r = t.derive(&hkdf(true, true, Salt::Null, b""), aes_base, tpl());
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_KEY_TYPE_INCONSISTENT,
        "HKDF_DERIVE with a CKK_AES base key",
    );
}

// ---------------------------------------------------------------------------
// 5. derivation by encryption, concatenation
// ---------------------------------------------------------------------------

#[test]
fn aes_encrypt_data_and_concatenate() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    let k = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
    let base = t.extractable(CKK_AES, &k);
    let data: Vec<u8> = (0u8..32).collect();
    let iv: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);
    // CONCATENATE_BASE_AND_KEY of these two: base || key.
    let k1 = [0x11u8; 16];
    let k2: Vec<u8> = (0x20u8..0x40).collect();
    let mut both = k1.to_vec();
    both.extend_from_slice(&k2);

    let ecb_data = Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, data.clone());
    // (what, base, mechanism, key type and length of the result, its value);
    // an AES-256 result is usable for encryption.
    let base1 = t.extractable(CKK_GENERIC_SECRET, &k1);
    let key2 = t.extractable(CKK_AES, &k2);
    for (what, base, mech, (kt, len), want) in [
        (
            "ECB_ENCRYPT_DATA == AES-ECB(K, data)",
            base,
            ecb_data.clone(),
            (CKK_GENERIC_SECRET, 32),
            aes_ecb(&k, &data),
        ),
        (
            "CBC_ENCRYPT_DATA == AES-CBC(K, iv, data)",
            base,
            Mech::CbcData(iv, data.clone()),
            (CKK_GENERIC_SECRET, 32),
            aes_cbc(&k, &iv, &data),
        ),
        (
            "ECB_ENCRYPT_DATA to an AES key",
            base,
            ecb_data,
            (CKK_AES, 32),
            aes_ecb(&k, &data),
        ),
        (
            "CONCATENATE_BASE_AND_KEY, 48 bytes, explicit length",
            base1,
            Mech::Concat(key2),
            (CKK_GENERIC_SECRET, 48),
            both.clone(),
        ),
        (
            "CONCATENATE_BASE_AND_KEY to AES-256: the leading 32 of 48 bytes",
            base1,
            Mech::Concat(key2),
            (CKK_AES, 32),
            both[..32].to_vec(),
        ),
    ] {
        let h = ok(t.derive(&mech, base, secret_tpl(kt, Some(len))), what);
        assert_eq!(to_hex(&t.value(h)), to_hex(&want), "{what}");
    }
    // The data must be a multiple of the block size.
    for mech in [
        Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![1; 20]),
        Mech::CbcData(iv, vec![1; 20]),
    ] {
        let r = t.derive(&mech, base, secret_tpl(CKK_GENERIC_SECRET, Some(16)));
        check_any(
            r.err().unwrap_or(CKR_OK),
            &[CKR_MECHANISM_PARAM_INVALID, CKR_DATA_LEN_RANGE],
            &format!("{} with 20 bytes of data", mech.name()),
        );
    }

    // CONCATENATE_BASE_AND_KEY: base || key, no more.
    let r = t.derive(
        &Mech::Concat(key2),
        base1,
        secret_tpl(CKK_GENERIC_SECRET, Some(49)),
    );
    check_any(
        r.err().unwrap_or(CKR_OK),
        &[
            CKR_TEMPLATE_INCONSISTENT,
            CKR_KEY_SIZE_RANGE,
            CKR_ATTRIBUTE_VALUE_INVALID,
        ],
        "CONCATENATE_BASE_AND_KEY asking for more bytes than the keys have",
    );
    let r = t.derive(
        &Mech::Concat(0xdead_beef),
        base1,
        secret_tpl(CKK_GENERIC_SECRET, None),
    );
    check_any(
        r.err().unwrap_or(CKR_OK),
        &[CKR_MECHANISM_PARAM_INVALID, CKR_KEY_HANDLE_INVALID],
        "CONCATENATE_BASE_AND_KEY with an invalid second handle",
    );
    // Last, as the module refuses it: PKCS#11 3.0 "Concatenation of a base key
    // and another key": "If no length or key type is provided in the template,
    // then the key produced by this mechanism will be a generic secret key. Its
    // length will be equal to the sum of the lengths of the values of the two
    // original keys."
    let h = ok(
        t.derive(
            &Mech::Concat(key2),
            base1,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                b(CKA_TOKEN, false),
                b(CKA_SENSITIVE, false),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "CONCATENATE_BASE_AND_KEY, no type or length",
    );
    assert_eq!(
        CK_ULONG::from_ne_bytes(
            ok(t.get(h, CKA_KEY_TYPE), "CKA_KEY_TYPE")
                .try_into()
                .unwrap()
        ),
        CKK_GENERIC_SECRET,
        "no type given: a generic secret"
    );
    assert_eq!(
        to_hex(&t.value(h)),
        to_hex(&both),
        "CONCATENATE_BASE_AND_KEY == base || key"
    );
}

// ---------------------------------------------------------------------------
// 6. sensitivity inheritance
// ---------------------------------------------------------------------------

#[test]
fn derived_keys_inherit_sensitivity() {
    let (_env, toks) = tokens(&["spec", "hsm"]);
    // Mismatches of CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE, all reported at the end.
    let mut bad = Vec::new();
    for (policy, t) in ["spec", "hsm"].iter().zip(toks) {
        // An always-sensitive, never-extractable base born in the token.
        let born = ok(
            t.generate(
                CKM_GENERIC_SECRET_KEY_GEN,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                    u(CKA_VALUE_LEN, 32),
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, true),
                    b(CKA_EXTRACTABLE, false),
                    b(CKA_DERIVE, true),
                ],
            ),
            "generate an always-sensitive base",
        );
        assert!(t.get_bool(born, CKA_ALWAYS_SENSITIVE) && t.get_bool(born, CKA_NEVER_EXTRACTABLE));
        // An imported base: sensitive but not always sensitive, and extractable.
        let imported = t.secret(
            CKK_GENERIC_SECRET,
            &[0x33; 32],
            vec![
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, true),
                b(CKA_DERIVE, true),
            ],
        );
        assert!(
            !t.get_bool(imported, CKA_ALWAYS_SENSITIVE)
                && !t.get_bool(imported, CKA_NEVER_EXTRACTABLE)
        );
        let mech = hkdf(true, true, Salt::Null, b"inherit");
        let sensitive_tpl = |extra: Vec<(CK_ATTRIBUTE_TYPE, V)>| {
            let mut l = vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
            ];
            l.extend(extra);
            l
        };
        // (what, base, template extras, want ALWAYS_SENSITIVE, want NEVER_EXTRACTABLE)
        let cases: Vec<(&str, H, Template, bool, bool)> = vec![
            (
                "always-sensitive base, SENSITIVE/!EXTRACTABLE asked",
                born,
                vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)],
                true,
                true,
            ),
            (
                "always-sensitive base, template defaults",
                born,
                vec![],
                true,
                true,
            ),
            (
                "imported base, SENSITIVE/!EXTRACTABLE asked",
                imported,
                vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)],
                false,
                false,
            ),
            (
                "imported base, template defaults",
                imported,
                vec![],
                false,
                false,
            ),
        ];
        for (what, base, extra, want_as, want_ne) in cases {
            let h = ok(
                t.derive(&mech, base, sensitive_tpl(extra)),
                &format!("{policy}: {what}"),
            );
            let (sens, ext) = (t.get_bool(h, CKA_SENSITIVE), t.get_bool(h, CKA_EXTRACTABLE));
            // The base is sensitive (both bases are): so is the derived key.
            assert!(sens, "{policy}: {what}: derived CKA_SENSITIVE");
            if base == born {
                assert!(
                    !ext,
                    "{policy}: {what}: derived from an unextractable base: CKA_EXTRACTABLE"
                );
            }
            flags_check(
                &mut bad,
                &t,
                h,
                (want_as, want_ne),
                format!(
                    "{policy}: {what}: CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE (derived SENSITIVE {sens}, EXTRACTABLE {ext})"
                ),
            );
            assert!(
                !t.get_bool(h, CKA_LOCAL),
                "{policy}: {what}: a derived key is not CKA_LOCAL"
            );
        }
        // Two bases: always-sensitive base || imported key → not always sensitive.
        let h = ok(
            t.derive(
                &Mech::Concat(imported),
                born,
                sensitive_tpl(vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)]),
            ),
            &format!("{policy}: CONCATENATE(born, imported)"),
        );
        flags_check(
            &mut bad,
            &t,
            h,
            (false, false),
            format!(
                "{policy}: concatenation with an imported key is neither always sensitive nor never extractable"
            ),
        );
        // ECDH from an always-sensitive EC key.
        let (_, ec) = ok(
            t.generate_pair(
                CKM_EC_KEY_PAIR_GEN,
                vec![by(CKA_EC_PARAMS, P256_OID), b(CKA_TOKEN, false)],
                vec![
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, true),
                    b(CKA_EXTRACTABLE, false),
                    b(CKA_DERIVE, true),
                ],
            ),
            "EC key pair",
        );
        let (peer_pub, _) = ok(
            t.generate_pair(
                CKM_EC_KEY_PAIR_GEN,
                vec![by(CKA_EC_PARAMS, P256_OID), b(CKA_TOKEN, false)],
                vec![b(CKA_TOKEN, false), b(CKA_DERIVE, true)],
            ),
            "peer EC key pair",
        );
        let point = ok(t.get(peer_pub, CKA_EC_POINT), "peer CKA_EC_POINT");
        let h = ok(
            t.derive(
                &Mech::Ecdh(point),
                ec,
                sensitive_tpl(vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)]),
            ),
            &format!("{policy}: ECDH from an always-sensitive key"),
        );
        flags_check(
            &mut bad,
            &t,
            h,
            (true, true),
            format!("{policy}: ECDH from an always-sensitive, never-extractable key"),
        );
    }
    assert!(
        bad.is_empty(),
        "derived keys with untruthful flags:\n{}",
        bad.join("\n")
    );
}

/// Records a mismatch of a derived key's CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE.
fn flags_check(bad: &mut Vec<String>, t: &Tok, h: H, want: (bool, bool), what: String) {
    let got = (
        t.get_bool(h, CKA_ALWAYS_SENSITIVE),
        t.get_bool(h, CKA_NEVER_EXTRACTABLE),
    );
    if got != want {
        bad.push(format!("{what}: got {got:?}, expected {want:?}"));
    }
}

// ---------------------------------------------------------------------------
// 7. CKA_WRAP_TEMPLATE and CKA_UNWRAP_TEMPLATE
// ---------------------------------------------------------------------------

#[test]
fn wrap_and_unwrap_templates() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    // Wraps only AES keys; unwraps only into sensitive AES keys that cannot encrypt.
    let kek = t.secret(
        CKK_AES,
        &SHARED_KEK,
        vec![
            b(CKA_WRAP, true),
            b(CKA_UNWRAP, true),
            (CKA_WRAP_TEMPLATE, V::Attrs(vec![u(CKA_KEY_TYPE, CKK_AES)])),
            (
                CKA_UNWRAP_TEMPLATE,
                V::Attrs(vec![
                    u(CKA_KEY_TYPE, CKK_AES),
                    b(CKA_SENSITIVE, true),
                    b(CKA_ENCRYPT, false),
                ]),
            ),
        ],
    );
    let aes = t.extractable(CKK_AES, &[0x44; 32]);
    let generic = t.extractable(CKK_GENERIC_SECRET, &[0x44; 32]);
    let (rv, _) = t.wrap_raw(&kwp(), kek, generic, None);
    check(
        rv,
        CKR_KEY_NOT_WRAPPABLE,
        "a generic secret does not match CKA_WRAP_TEMPLATE",
    );
    let blob = ok(
        t.wrap(&kwp(), kek, aes),
        "an AES key matches CKA_WRAP_TEMPLATE",
    );
    let base = || {
        vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            b(CKA_TOKEN, false),
        ]
    };
    let h = ok(
        t.unwrap(&kwp(), kek, &blob, base()),
        "unwrap under CKA_UNWRAP_TEMPLATE",
    );
    assert!(
        t.get_bool(h, CKA_SENSITIVE),
        "CKA_UNWRAP_TEMPLATE forces CKA_SENSITIVE"
    );
    assert!(
        !t.get_bool(h, CKA_ENCRYPT),
        "CKA_UNWRAP_TEMPLATE forces CKA_ENCRYPT FALSE"
    );
    for (what, extra) in [
        ("CKA_SENSITIVE FALSE", b(CKA_SENSITIVE, false)),
        ("CKA_ENCRYPT TRUE", b(CKA_ENCRYPT, true)),
    ] {
        let mut tpl = base();
        tpl.push(extra);
        let r = t.unwrap(&kwp(), kek, &blob, tpl);
        check(
            r.err().unwrap_or(CKR_OK),
            CKR_TEMPLATE_INCONSISTENT,
            &format!("unwrap template {what} against CKA_UNWRAP_TEMPLATE"),
        );
    }
    let mut tpl = base();
    tpl[1] = u(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    let r = t.unwrap(&kwp(), kek, &blob, tpl);
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCONSISTENT,
        "unwrap as a generic secret against CKA_UNWRAP_TEMPLATE",
    );
}
