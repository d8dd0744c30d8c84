//! Fuzz entry points: one function per parser, taking arbitrary bytes and
//! asserting the invariants that must hold for any input (no panic, no
//! allocation out of proportion to the input, round trips where they exist).
//!
//! The libFuzzer targets in `fuzz/fuzz_targets/` are one call each into this
//! module, and `tests/fuzz_replay.rs` replays the checked-in corpus
//! (`fuzz/corpus/<target>/`) plus a few seconds of mutations through the same
//! functions in every test run, so the targets cannot rot. Not an API: the
//! functions panic on purpose when an invariant breaks.
//!
//! The raw-pointer half of the parameter and template parsers lives in `ffi`
//! and is exercised through the C ABI tests; what is fuzzed here is
//! everything that consumes the copied bytes: the mechanism builders and the
//! operations they return (`mechanism_params`), the attribute-array encoding
//! and the attribute policy (`template`), and the key importers (`pkcs8`,
//! `ec_import`, `rsa_import`, `x509`).
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, KeyPolicy};

use crate::error::Error;
use crate::mechanism::{self, Dir, MECHANISMS, MechanismArg, Param, ec, edwards, rsa};
use crate::object::policy::{self, Actor, Attrs, Edit, Origin, RawAttr, Reading};
use crate::object::{Object, cert};

mod input;
mod seeds;

use input::{HASHES, Input, MGFS, SIZES, keys, object, with_identity};
pub use seeds::seeds;

/// The parameter shape `ffi::mechanism` produces for `ty`, filled from input.
fn param_for(ty: CK_MECHANISM_TYPE, u: &mut Input<'_>) -> Param {
    let ulong = |v: CK_ULONG| v.to_ne_bytes().to_vec();
    match ty {
        CKM_AES_CBC | CKM_AES_CBC_PAD | CKM_DES_CBC | CKM_DES_CBC_PAD | CKM_DES3_CBC
        | CKM_DES3_CBC_PAD => Param::Raw(u.bytes().to_vec()),
        CKM_AES_CTR => {
            let mut p = ulong(u.pick(&[1, 8, 32, 64, 127, 128, 129]));
            p.extend((0..16).map(|_| u.byte()));
            Param::Raw(p)
        }
        CKM_AES_GCM => Param::Gcm {
            iv: u.bytes().to_vec(),
            aad: u.bytes().to_vec(),
            tag_bits: u.pick(&[0, 32, 64, 96, 104, 112, 120, 128, 129]),
        },
        CKM_RSA_PKCS_OAEP => Param::Oaep {
            hash: u.pick(HASHES),
            mgf: u.pick(MGFS),
            source: u.pick(&[0, CKZ_DATA_SPECIFIED]),
            label: u.bytes().to_vec(),
        },
        CKM_RSA_PKCS_PSS
        | CKM_SHA1_RSA_PKCS_PSS
        | CKM_SHA224_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS
        | CKM_SHA3_224_RSA_PKCS_PSS
        | CKM_SHA3_256_RSA_PKCS_PSS
        | CKM_SHA3_384_RSA_PKCS_PSS
        | CKM_SHA3_512_RSA_PKCS_PSS => {
            let mut p = ulong(u.pick(HASHES));
            p.extend(ulong(u.pick(MGFS)));
            p.extend(ulong(u.pick(SIZES)));
            Param::Raw(p)
        }
        CKM_AES_CMAC_GENERAL
        | CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL
        | CKM_SHA3_224_HMAC_GENERAL
        | CKM_SHA3_256_HMAC_GENERAL
        | CKM_SHA3_384_HMAC_GENERAL
        | CKM_SHA3_512_HMAC_GENERAL
        | CKM_MD5_HMAC_GENERAL
        | CKM_DES3_CMAC_GENERAL => Param::Raw(ulong(u.pick(SIZES))),
        CKM_ECDH1_DERIVE => Param::Ecdh {
            kdf: u.pick(&[
                CKD_NULL,
                CKD_SHA1_KDF,
                CKD_SHA224_KDF,
                CKD_SHA256_KDF,
                CKD_SHA384_KDF,
                CKD_SHA512_KDF,
            ]),
            shared: u.bytes().to_vec(),
            public: u.bytes().to_vec(),
        },
        CKM_HKDF_DERIVE | CKM_HKDF_DATA => Param::Hkdf {
            extract: u.byte() & 1 == 1,
            expand: u.byte() & 1 == 1,
            prf: u.pick(HASHES),
            salt_type: u.pick(&[CKF_HKDF_SALT_NULL, CKF_HKDF_SALT_DATA, CKF_HKDF_SALT_KEY]),
            salt: u.bytes().to_vec(),
            salt_key: u.pick(&[1, 2, 3, 4]),
            info: u.bytes().to_vec(),
        },
        CKM_AES_ECB_ENCRYPT_DATA => Param::Raw(u.bytes().to_vec()),
        CKM_AES_CBC_ENCRYPT_DATA => {
            let mut iv = [0u8; 16];
            iv.iter_mut().for_each(|b| *b = u.byte());
            Param::AesCbcData {
                iv,
                data: u.bytes().to_vec(),
            }
        }
        CKM_CONCATENATE_BASE_AND_KEY => Param::Raw(ulong(u.pick(&[1, 2, 3, 4]))),
        CKM_AES_CTS | CKM_AES_XTS => Param::Raw(u.bytes().to_vec()),
        CKM_AES_CCM => Param::Ccm {
            data_len: u.pick(&[0, 1, 16, 33, 48, 65535, 1 << 24, u64::MAX]),
            nonce: u.bytes().to_vec(),
            aad: u.bytes().to_vec(),
            mac_len: u.pick(&[0, 4, 7, 8, 16, 18]),
        },
        CKM_CHACHA20_POLY1305 => Param::ChaChaPoly {
            nonce: u.bytes().to_vec(),
            aad: u.bytes().to_vec(),
        },
        CKM_CHACHA20 => {
            let counter = u.bytes().to_vec();
            let nonce = u.bytes().to_vec();
            Param::ChaCha20 {
                counter_bits: counter.len() as u64 * 8,
                counter,
                nonce_bits: nonce.len() as u64 * 8,
                nonce,
            }
        }
        CKM_EDDSA => match u.byte() % 3 {
            0 => Param::None,
            _ => Param::Eddsa {
                prehash: u.byte() & 1 == 1,
                context: u.bytes().to_vec(),
            },
        },
        _ => Param::None,
    }
}

/// Any parameter shape at all, for the mechanisms that expect another one.
fn any_param(u: &mut Input<'_>) -> Param {
    let shapes = [
        CKM_AES_ECB,
        CKM_AES_CBC,
        CKM_AES_GCM,
        CKM_RSA_PKCS_OAEP,
        CKM_ECDH1_DERIVE,
        CKM_HKDF_DERIVE,
        CKM_AES_CBC_ENCRYPT_DATA,
        CKM_AES_CCM,
        CKM_CHACHA20_POLY1305,
        CKM_CHACHA20,
    ];
    let ty = shapes[u.byte() as usize % shapes.len()];
    param_for(ty, u)
}

/// Whether `key` is of a type the row takes.
fn fits(row: &mechanism::Mechanism, key: &Object) -> bool {
    key.ulong(CKA_KEY_TYPE)
        .is_some_and(|kt| row.key_types.contains(&kt))
}

/// No operation may ask for output out of proportion to its input: the
/// largest legitimate expansion here is an RSA-4096 block.
fn check_len(what: &str, out: usize, input: usize) {
    assert!(
        out <= input + 1024,
        "{what}: {out} bytes of output asked for {input} bytes of input"
    );
}

/// Runs a cipher operation over `data` (single-part, or in `chunks`) and
/// returns the output, checking the length promises of the `CipherOp` trait.
fn run_cipher(
    op: &mut dyn mechanism::CipherOp,
    data: &[u8],
    chunks: Option<&[usize]>,
) -> Result<Vec<u8>, Error> {
    let Some(chunks) = chunks else {
        let n = op.single_len(data.len());
        check_len("single_len", n, data.len());
        let mut out = vec![0u8; n];
        let w = op.single(data, &mut out)?;
        assert!(w <= n, "single wrote {w} of {n} bytes offered");
        out.truncate(w);
        return Ok(out);
    };
    let mut out = Vec::new();
    let mut rest = data;
    for c in chunks.iter().copied().chain([usize::MAX]) {
        let (part, tail) = rest.split_at(c.min(rest.len()));
        rest = tail;
        let n = op.update_len(part.len());
        check_len("update_len", n, data.len());
        let mut buf = vec![0u8; n];
        let w = op.update(part, &mut buf)?;
        assert!(w <= n, "update wrote {w} of {n} bytes offered");
        out.extend_from_slice(&buf[..w]);
    }
    let n = op.final_len();
    check_len("final_len", n, data.len());
    let mut buf = vec![0u8; n];
    let w = op.finish(&mut buf)?;
    assert!(w <= n, "final wrote {w} of {n} bytes offered");
    out.extend_from_slice(&buf[..w]);
    Ok(out)
}

fn chunks(u: &mut Input<'_>) -> Option<Vec<usize>> {
    match u.byte() % 3 {
        0 => None,
        _ => Some((0..u.byte() % 5).map(|_| u.len()).collect()),
    }
}

/// Mechanism parameters: picks a row of the mechanism table, a parameter
/// (mostly of the shape the row expects, filled from the input), a key and
/// data, and runs whatever the row builds — digest, cipher, sign/verify,
/// derive — checking length promises and round trips (what is encrypted
/// decrypts to the input; what is signed verifies, and a flipped signature
/// does not).
pub fn mechanism_params(data: &[u8]) {
    let mut u = Input(data);
    let keys = keys();
    let row = match u.byte() {
        b @ 0..=0x7f => &MECHANISMS[b as usize % MECHANISMS.len()],
        _ => mechanism::lookup(u.ulong()).unwrap_or(&MECHANISMS[0]),
    };
    let param = if u.byte() < 0xe8 {
        param_for(row.ty, &mut u)
    } else {
        any_param(&mut u)
    };
    let arg = MechanismArg { ty: row.ty, param };
    let key = keys.choose(row, &mut u);
    let what = u.byte();
    let split = chunks(&mut u);
    let payload = u.rest();

    if row.digest.is_some()
        && let Ok(mut d) = mechanism::digest_op(&arg)
    {
        for part in payload.chunks(split.as_ref().map_or(usize::MAX, |_| 7)) {
            d.update(part);
        }
        let mut out = vec![0u8; d.output_len()];
        d.finish(&mut out);
    }
    if let Some(build) = row.cipher {
        let dir = if what & 1 == 0 {
            Dir::Encrypt
        } else {
            Dir::Decrypt
        };
        if let Ok(mut op) = build(&arg.param, key, dir) {
            let out = run_cipher(op.as_mut(), payload, split.as_deref());
            // Round trips only with a key of a type the row takes: the
            // module checks that (`usable_key`) before it calls a builder.
            if let (Dir::Encrypt, Ok(ct), true) = (dir, out, fits(row, key)) {
                let back = build(&arg.param, keys.holding(key, CKO_PRIVATE_KEY), Dir::Decrypt)
                    .and_then(|mut op| run_cipher(op.as_mut(), &ct, None));
                let pt = back.unwrap_or_else(|e| {
                    panic!("{}: decrypting what was encrypted gives {e}", row.name)
                });
                if row.ty == CKM_RSA_X_509 {
                    // Raw RSA returns the modulus-sized integer.
                    let (zeros, tail) = pt.split_at(pt.len().saturating_sub(payload.len()));
                    assert!(zeros.iter().all(|&b| b == 0) && tail.len() <= payload.len());
                } else {
                    assert!(pt == payload, "{}: round trip changed the data", row.name);
                }
            }
        }
    }
    if let Some(build) = row.sign {
        let verify_first = what & 2 != 0;
        if let Ok(mut op) = build(&arg.param, key, verify_first) {
            let n = op.sig_len();
            check_len("sig_len", n, 0);
            let fed = feed(op.as_mut(), payload, split.as_deref());
            if verify_first {
                let _ = fed.and_then(|()| op.verify(payload));
            } else if fed.is_ok() {
                let mut sig = vec![0u8; n];
                if op.sign(&mut sig).is_ok() && fits(row, key) {
                    let verifier = keys.holding(key, CKO_PUBLIC_KEY);
                    check_signature(row, &arg, verifier, payload, &sig, split.as_deref());
                }
            }
        }
    }
    if let Some(derive) = row.derive {
        let second = (derive.second_key)(&arg.param).and_then(|h| keys.by_handle(h));
        let len = match what >> 4 {
            0..=7 => (derive.default_len)(&arg.param, key, second).ok(),
            _ => Some(u16::from(what) as usize * 3 % 600),
        };
        if let Some(len) = len {
            check_len("derive length", len, 0);
            if let Ok(v) = (derive.derive)(&arg.param, key, second, len) {
                assert_eq!(v.len(), len, "{}: derived the wrong length", row.name);
            }
        }
    }
    if let Some(kg) = row.keygen {
        let value_len = mechanism::key_types::lookup(kg.key_type).and_then(|k| k.value_len);
        let _ = value_len.map(|ok| ok(payload.len()));
    }
}

fn feed(
    op: &mut dyn mechanism::SignOp,
    data: &[u8],
    chunks: Option<&[usize]>,
) -> crate::Result<()> {
    match chunks {
        Some(c) if op.multi_part() => {
            let mut rest = data;
            for &n in c {
                let (part, tail) = rest.split_at(n.min(rest.len()));
                op.update(part)?;
                rest = tail;
            }
            op.update(rest)
        }
        _ => op.update(data),
    }
}

/// A signature just made verifies with the partner key, and a flipped one
/// does not.
fn check_signature(
    row: &mechanism::Mechanism,
    arg: &MechanismArg,
    partner: &Object,
    data: &[u8],
    sig: &[u8],
    chunks: Option<&[usize]>,
) {
    let build = row.sign.expect("a sign row");
    let verify = |s: &[u8]| {
        let mut op = build(&arg.param, partner, true)?;
        feed(op.as_mut(), data, chunks)?;
        op.verify(s)
    };
    if let Err(e) = verify(sig) {
        panic!("{}: a signature just made does not verify: {e}", row.name);
    }
    if let Some(last) = sig.len().checked_sub(1) {
        let mut bad = sig.to_vec();
        bad[last] ^= 0x01;
        assert!(
            verify(&bad).is_err(),
            "{}: a flipped signature verifies",
            row.name
        );
    }
}

/// Templates: the attribute-array encoding (`CKA_WRAP_TEMPLATE` & co.) must
/// round-trip exactly, and any template — well-formed or not — goes through
/// the policy (`build` for every origin and both key policies, then
/// `modify`, `read`, find queries) without panicking and without breaking
/// the policy's promises: a private or secret key on an `hsm` token is
/// sensitive, sensitive never becomes false, extractable never becomes true
/// again, token-computed attributes never move, every value read back decodes
/// to what is stored, and an object survives the store record round trip.
pub fn template(data: &[u8]) {
    let mut u = Input(data);
    let flags = u.byte();
    let split = u.byte() as usize;
    let body = u.rest();
    let attrs = match policy::decode_template_value(body) {
        Some(v) => {
            assert_eq!(
                policy::encode_template(&v),
                body,
                "the attribute-array encoding does not round-trip"
            );
            v
        }
        None => lenient_template(body),
    };
    let (first, second) = attrs.split_at(split.min(attrs.len()));
    let actor = Actor {
        policy: if flags & 1 == 0 {
            KeyPolicy::Hsm
        } else {
            KeyPolicy::Spec
        },
        so: flags & 2 != 0,
    };
    let origin = match (flags >> 2) & 3 {
        0 => Origin::Create,
        1 => Origin::Generate(CKM_AES_KEY_GEN),
        2 => Origin::Derive(CKM_HKDF_DERIVE),
        _ => Origin::Unwrap,
    };
    let implied: &[(CK_ATTRIBUTE_TYPE, CK_ULONG)] = match (flags >> 4) & 3 {
        0 => &[],
        1 => &[(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES)],
        2 => &[(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_KEY_TYPE, CKK_EC)],
        _ => &[(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, CKK_RSA)],
    };
    for a in first {
        for kind in [
            policy::Kind::Bool,
            policy::Kind::Ulong,
            policy::Kind::Bytes,
            policy::Kind::Date,
            policy::Kind::Template,
            policy::Kind::Mechanisms,
        ] {
            if let Ok(v) = policy::decode(kind, &a.value) {
                let again = policy::decode(kind, &policy::encode(&v));
                assert!(
                    again == Ok(v),
                    "decode/encode of {kind:?} does not round-trip"
                );
            }
        }
    }
    let query = policy::Query::new(first);
    let Ok(built) = policy::build(first, implied, origin, actor, "00000000000000ff") else {
        return;
    };
    check_built(&built, actor);
    let _ = query.matches(&built);
    let _ = policy::matches_template(&built, second);
    let obj = object(7, built.clone());
    let back = Object::from_record(7, &obj.to_record());
    assert!(
        back.attrs == built,
        "the store record round trip changed attributes"
    );
    let _ = crate::object::policy::revealed_size(&obj.attrs);
    for edit in [Edit::Set, Edit::Copy] {
        let Ok(new) = policy::modify(&built, second, edit, actor, None) else {
            continue;
        };
        check_built(&new, actor);
        let flag = |a: &Attrs, ty| policy::get_bool(a, ty);
        if flag(&built, CKA_SENSITIVE) {
            assert!(flag(&new, CKA_SENSITIVE), "{edit:?} cleared CKA_SENSITIVE");
        }
        if built.contains_key(&CKA_EXTRACTABLE) && !flag(&built, CKA_EXTRACTABLE) {
            assert!(
                !flag(&new, CKA_EXTRACTABLE),
                "{edit:?} set CKA_EXTRACTABLE again"
            );
        }
        for ty in [
            CKA_CLASS,
            CKA_KEY_TYPE,
            CKA_LOCAL,
            CKA_ALWAYS_SENSITIVE,
            CKA_NEVER_EXTRACTABLE,
            CKA_KEY_GEN_MECHANISM,
            CKA_UNIQUE_ID,
        ] {
            assert!(
                built.get(&ty) == new.get(&ty),
                "{edit:?} changed {}",
                policy::attr_name(ty)
            );
        }
    }
}

/// Invariants of any attribute set the policy produced.
fn check_built(attrs: &Attrs, actor: Actor) {
    let class = match attrs.get(&CKA_CLASS) {
        Some(AttrValue::Ulong(c)) => *c as CK_ULONG,
        other => panic!("built object without a class: {other:?}"),
    };
    let kt = match attrs.get(&CKA_KEY_TYPE) {
        Some(AttrValue::Ulong(k)) => Some(*k as CK_ULONG),
        _ => None,
    };
    let keyish = matches!(class, CKO_PRIVATE_KEY | CKO_SECRET_KEY);
    if keyish && actor.policy == KeyPolicy::Hsm {
        assert!(
            policy::get_bool(attrs, CKA_SENSITIVE),
            "an hsm-token key that is not sensitive"
        );
    }
    let cls = policy::class_bit(class).expect("a known class");
    for (ty, v) in attrs {
        match policy::read(attrs, *ty) {
            Reading::Value(bytes) => {
                if let Some(rule) = policy::rule_for(*ty, cls, kt) {
                    if rule.secret {
                        assert!(!policy::is_protected(attrs), "a protected secret was read");
                    }
                    let again = policy::decode(rule.kind, &bytes);
                    assert!(
                        again.as_ref() == Ok(v),
                        "{} does not read back",
                        policy::attr_name(*ty)
                    );
                }
            }
            Reading::Sensitive => assert!(policy::is_protected(attrs)),
            Reading::Invalid => panic!("{} is stored but reads as invalid", policy::attr_name(*ty)),
        }
    }
}

/// A template from bytes that are not the attribute-array encoding: each
/// attribute is a type picked from the policy table (or any), then a value
/// that is mostly of a plausible size.
fn lenient_template(data: &[u8]) -> Vec<RawAttr> {
    let mut u = Input(data);
    let mut out = Vec::new();
    while !u.0.is_empty() && out.len() < 64 {
        let b = u.byte();
        let ty = if b < 0xf0 {
            policy::RULES[b as usize % policy::RULES.len()].ty
        } else {
            u.ulong()
        };
        let v = match u.byte() {
            0..=0x3f => vec![u.byte() & 1],
            0x40..=0x9f => ((u.byte() & 0x0f) as CK_ULONG).to_ne_bytes().to_vec(),
            0xa0..=0xaf => u.ulong().to_ne_bytes().to_vec(),
            _ => u.bytes().to_vec(),
        };
        out.push(RawAttr::new(ty, &v));
    }
    out
}

/// PKCS#8 `PrivateKeyInfo` (the form `C_UnwrapKey` takes private keys in):
/// the importer of every key-pair type of the key-type table (RSA, EC,
/// Ed25519, X25519). A key that imports exports again (`C_WrapKey`'s form)
/// and re-imports to the same attributes.
pub fn pkcs8(data: &[u8]) {
    for row in mechanism::key_types::KEY_TYPES {
        let (Some(from), Some(to)) = (row.from_pkcs8, row.to_pkcs8) else {
            continue;
        };
        if let Ok(a) = from(data) {
            let obj = object(1, with_identity(a.clone(), CKO_PRIVATE_KEY, row.ty));
            let der = to(&obj).unwrap_or_else(|e| panic!("an imported {} exports: {e}", row.name));
            let again =
                from(&der).unwrap_or_else(|e| panic!("an exported {} imports: {e}", row.name));
            assert!(again == a, "{} PKCS#8 round trip changed the key", row.name);
        }
    }
}

/// EC imports (`C_CreateObject` of `CKK_EC` keys): `CKA_EC_PARAMS` (a named
/// curve), `CKA_EC_POINT` (a SEC1 point, bare or as a DER OCTET STRING) and
/// the private scalar; the same bytes as Ed25519 and X25519 keys. A key that
/// imports re-imports to the same attributes.
pub fn ec_import(data: &[u8]) {
    let mut u = Input(data);
    // Selectors 0-3 as before P-521 and curve25519 came (3: any bytes).
    let params: Vec<u8> = match u.byte() % 8 {
        0 | 1 => ec::P256_PARAMS.to_vec(),
        2 => ec::P384_PARAMS.to_vec(),
        4 => ec::P521_PARAMS.to_vec(),
        5 => edwards::ED25519_OID.to_vec(),
        6 => edwards::X25519_NAME.to_vec(),
        _ => u.bytes().to_vec(),
    };
    let value = u.rest();
    if let Ok(curve) = ec::Curve::from_params(&params)
        && let Some(p) = ec::sec1_point(value, curve)
    {
        assert!(
            value.ends_with(p),
            "sec1_point is not a suffix of its input"
        );
    }
    let start = |ty, v: &[u8]| {
        let mut a = Attrs::new();
        a.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.clone()));
        a.insert(ty, AttrValue::Bytes(v.to_vec()));
        a
    };
    let mut public = start(CKA_EC_POINT, value);
    if ec::check_public_import(&mut public).is_ok() {
        let mut again = public.clone();
        ec::check_public_import(&mut again).expect("an imported EC point imports again");
        assert!(again == public, "EC point import is not idempotent");
    }
    let mut private = start(CKA_VALUE, value);
    if ec::check_private_import(&mut private).is_ok() {
        let mut again = private.clone();
        ec::check_private_import(&mut again).expect("an imported EC scalar imports again");
        assert!(again == private, "EC scalar import is not idempotent");
    }
    // The same for Ed25519 and X25519 keys, through the key-type table.
    for kt in [CKK_EC_EDWARDS, CKK_EC_MONTGOMERY] {
        let row = mechanism::key_types::lookup(kt).expect("a key-type row");
        for (ty, check) in [
            (CKA_EC_POINT, row.import_public),
            (CKA_VALUE, row.import_private),
        ] {
            let check = check.expect("pair import checks");
            let mut a = start(ty, value);
            if check(&mut a).is_ok() {
                let mut again = a.clone();
                check(&mut again)
                    .unwrap_or_else(|e| panic!("{}: an imported key imports again: {e}", row.name));
                assert!(again == a, "{} import is not idempotent", row.name);
            }
        }
    }
}

/// RSA imports from components (`C_CreateObject` of `CKK_RSA` keys):
/// modulus, exponents and optional primes; CRT values are checked against
/// the key. A key that imports re-imports to the same attributes.
pub fn rsa_import(data: &[u8]) {
    let mut u = Input(data);
    let which = u.byte();
    let parts = [
        CKA_MODULUS,
        CKA_PUBLIC_EXPONENT,
        CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,
        CKA_PRIME_2,
        CKA_EXPONENT_1,
    ];
    let mut a = Attrs::new();
    for (i, ty) in parts.into_iter().enumerate() {
        let v = u.bytes();
        if which & (1 << i) == 0 || i < 2 {
            a.insert(ty, AttrValue::Bytes(v.to_vec()));
        }
    }
    let mut public = Attrs::new();
    for ty in [CKA_MODULUS, CKA_PUBLIC_EXPONENT] {
        public.insert(ty, a[&ty].clone());
    }
    if rsa::check_public_import(&mut public).is_ok() {
        let mut again = public.clone();
        rsa::check_public_import(&mut again).expect("an imported RSA public key imports again");
        assert!(again == public, "RSA public import is not idempotent");
    }
    if rsa::check_private_import(&mut a).is_ok() {
        let mut again = a.clone();
        rsa::check_private_import(&mut again).expect("an imported RSA key imports again");
        assert!(again == a, "RSA private import is not idempotent");
    }
}

/// X.509 certificate objects: the DER is parsed and the subject, issuer,
/// serial and public key info filled in; a certificate that imports imports
/// again with those attributes given, and through the whole policy.
pub fn x509(data: &[u8]) {
    let mut a = Attrs::new();
    a.insert(CKA_VALUE, AttrValue::Bytes(data.to_vec()));
    if cert::check_x509(&mut a).is_ok() {
        for ty in [
            CKA_SUBJECT,
            CKA_ISSUER,
            CKA_SERIAL_NUMBER,
            CKA_PUBLIC_KEY_INFO,
        ] {
            assert!(a.contains_key(&ty), "{} not filled", policy::attr_name(ty));
        }
        let mut again = a.clone();
        cert::check_x509(&mut again).expect("a checked certificate checks again");
        assert!(again == a, "certificate check is not idempotent");
    }
    let template = [
        RawAttr::ulong(CKA_CLASS, CKO_CERTIFICATE),
        RawAttr::ulong(CKA_CERTIFICATE_TYPE, CKC_X_509),
        RawAttr::new(CKA_VALUE, data),
    ];
    let actor = Actor {
        policy: KeyPolicy::Hsm,
        so: false,
    };
    let _ = policy::build(&template, &[], Origin::Create, actor, "0000000000000001");
}
