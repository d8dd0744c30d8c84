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

use std::sync::OnceLock;

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, KeyPolicy};

use crate::error::Error;
use crate::mechanism::{self, Dir, MECHANISMS, MechanismArg, Param, ec, rsa};
use crate::object::policy::{self, Actor, Attrs, Edit, Origin, RawAttr, Reading};
use crate::object::{Object, cert};

/// A fixed RSA-2048 test key (PKCS#8, made with `openssl genpkey`): generating
/// one per run would cost seconds in a debug build. Not secret, never a token key.
const RSA_TEST_KEY: &[u8] = include_bytes!("fuzzing/rsa2048.pk8");

/// Reads fuzz input front to back; past the end every read gives zeros, so
/// any input, even empty, decodes to something.
struct Input<'a>(&'a [u8]);

impl<'a> Input<'a> {
    fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    fn ulong(&mut self) -> CK_ULONG {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b) as CK_ULONG
    }

    /// A length: mostly small, sometimes up to 64 KiB.
    fn len(&mut self) -> usize {
        match self.byte() {
            b @ 0..=0xef => b as usize,
            _ => u16::from_le_bytes([self.byte(), self.byte()]) as usize,
        }
    }

    fn bytes(&mut self) -> &'a [u8] {
        let n = self.len().min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }

    fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    /// Mostly one of `valid`, sometimes any value.
    fn pick(&mut self, valid: &[CK_ULONG]) -> CK_ULONG {
        match self.byte() {
            b @ 0..=0xdf => valid[b as usize % valid.len()],
            _ => self.ulong(),
        }
    }
}

const HASHES: &[CK_ULONG] = &[CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512];
const MGFS: &[CK_ULONG] = &[
    CKG_MGF1_SHA1,
    CKG_MGF1_SHA224,
    CKG_MGF1_SHA256,
    CKG_MGF1_SHA384,
    CKG_MGF1_SHA512,
];

/// Sizes a caller may sensibly name (tags, salts, counters, lengths).
const SIZES: &[CK_ULONG] = &[0, 1, 4, 8, 12, 16, 20, 32, 48, 64, 96, 128, 256, 512];

/// The parameter shape `ffi::mechanism` produces for `ty`, filled from input.
fn param_for(ty: CK_MECHANISM_TYPE, u: &mut Input<'_>) -> Param {
    let ulong = |v: CK_ULONG| v.to_ne_bytes().to_vec();
    match ty {
        CKM_AES_CBC | CKM_AES_CBC_PAD => Param::Raw(u.bytes().to_vec()),
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
        | CKM_SHA512_RSA_PKCS_PSS => {
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
        | CKM_SHA512_HMAC_GENERAL => Param::Raw(ulong(u.pick(SIZES))),
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
    ];
    let ty = shapes[u.byte() as usize % shapes.len()];
    param_for(ty, u)
}

/// Test keys, one object per kind: handles 1.. in this order.
struct Keys(Vec<Object>);

fn object(handle: CK_OBJECT_HANDLE, attrs: Attrs) -> Object {
    Object {
        handle,
        store_id: handle,
        owner: None,
        attrs,
        cache: Default::default(),
    }
}

fn with_identity(mut attrs: Attrs, class: CK_ULONG, kt: CK_ULONG) -> Attrs {
    attrs.insert(CKA_CLASS, AttrValue::Ulong(class));
    attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(kt));
    attrs
}

fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret = |kt, value: &[u8]| {
            let mut a = with_identity(Attrs::new(), CKO_SECRET_KEY, kt);
            policy::set_secret_value(&mut a, kt, value).expect("test secret");
            a
        };
        let mut all = vec![
            secret(CKK_GENERIC_SECRET, &[0x5a; 32]),
            secret(CKK_AES, &[0x11; 16]),
            secret(CKK_AES, &[0x22; 32]),
            secret(CKK_GENERIC_SECRET, &[0x01]),
        ];
        let rsa_priv = rsa::from_pkcs8(RSA_TEST_KEY).expect("the RSA test key parses");
        let mut rsa_pub = Attrs::new();
        for ty in [CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PUBLIC_KEY_INFO] {
            rsa_pub.insert(ty, rsa_priv[&ty].clone());
        }
        all.push(with_identity(rsa_priv, CKO_PRIVATE_KEY, CKK_RSA));
        all.push(with_identity(rsa_pub, CKO_PUBLIC_KEY, CKK_RSA));
        for params in [ec::P256_PARAMS, ec::P384_PARAMS] {
            let mut t = Attrs::new();
            t.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
            let (mut public, mut private) = ec::generate(&t).expect("EC test key");
            for a in [&mut public, &mut private] {
                a.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
            }
            all.push(with_identity(private, CKO_PRIVATE_KEY, CKK_EC));
            all.push(with_identity(public, CKO_PUBLIC_KEY, CKK_EC));
        }
        Keys(
            all.into_iter()
                .enumerate()
                .map(|(i, a)| object(i as CK_OBJECT_HANDLE + 1, a))
                .collect(),
        )
    })
}

impl Keys {
    fn by_handle(&self, h: CK_OBJECT_HANDLE) -> Option<&Object> {
        self.0.iter().find(|o| o.handle == h)
    }

    /// A key the mechanism takes (mostly), or any key.
    fn choose(&self, m: &mechanism::Mechanism, u: &mut Input<'_>) -> &Object {
        let b = u.byte();
        let fitting: Vec<&Object> = self
            .0
            .iter()
            .filter(|o| {
                o.ulong(CKA_KEY_TYPE)
                    .is_some_and(|kt| m.key_types.contains(&kt))
            })
            .collect();
        if b < 0xe0 && !fitting.is_empty() {
            fitting[b as usize % fitting.len()]
        } else {
            &self.0[b as usize % self.0.len()]
        }
    }

    /// The half of `key`'s pair of class `other` (the key itself when it
    /// is of that class, or a secret key).
    fn holding<'k>(&'k self, key: &'k Object, other: CK_OBJECT_CLASS) -> &'k Object {
        if !matches!(key.ulong(CKA_CLASS), Some(CKO_PRIVATE_KEY | CKO_PUBLIC_KEY))
            || key.ulong(CKA_CLASS) == Some(other)
        {
            return key;
        }
        let same = |o: &&Object| {
            o.ulong(CKA_CLASS) == Some(other)
                && o.ulong(CKA_KEY_TYPE) == key.ulong(CKA_KEY_TYPE)
                && o.bytes(CKA_EC_PARAMS) == key.bytes(CKA_EC_PARAMS)
        };
        self.0.iter().find(same).unwrap_or(key)
    }
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
        let _ = (kg.value_len)(payload.len());
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
/// RSA and EC importers. A key that imports exports again (`C_WrapKey`'s
/// form) and re-imports to the same attributes.
pub fn pkcs8(data: &[u8]) {
    if let Ok(a) = rsa::from_pkcs8(data) {
        let obj = object(1, with_identity(a.clone(), CKO_PRIVATE_KEY, CKK_RSA));
        let der = rsa::to_pkcs8(&obj).expect("an imported RSA key exports");
        let again = rsa::from_pkcs8(&der).expect("an exported RSA key imports");
        assert!(again == a, "RSA PKCS#8 round trip changed the key");
    }
    if let Ok(a) = ec::from_pkcs8(data) {
        let obj = object(1, with_identity(a.clone(), CKO_PRIVATE_KEY, CKK_EC));
        let der = ec::to_pkcs8(&obj).expect("an imported EC key exports");
        let again = ec::from_pkcs8(&der).expect("an exported EC key imports");
        assert!(again == a, "EC PKCS#8 round trip changed the key");
    }
}

/// EC imports (`C_CreateObject` of `CKK_EC` keys): `CKA_EC_PARAMS` (a named
/// curve), `CKA_EC_POINT` (a SEC1 point, bare or as a DER OCTET STRING) and
/// the private scalar. A key that imports re-imports to the same attributes.
pub fn ec_import(data: &[u8]) {
    let mut u = Input(data);
    let params: Vec<u8> = match u.byte() % 4 {
        0 | 1 => ec::P256_PARAMS.to_vec(),
        2 => ec::P384_PARAMS.to_vec(),
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

/// The seed corpus of a target, made with the encodings the targets read
/// (so it follows changes to them): `(file name, bytes)`. The replay test
/// writes it into `fuzz/corpus/<target>/` when run with
/// `FERROHSM_WRITE_SEEDS=1`; DER files (keys, certificates) are checked in
/// as made by OpenSSL instead.
pub fn seeds(target: &str) -> Vec<(String, Vec<u8>)> {
    match target {
        "mechanism_params" => mechanism_seeds(),
        "template" => template_seeds(),
        "ec_import" => ec_seeds(),
        "rsa_import" => rsa_seeds(),
        _ => Vec::new(),
    }
}

/// A length as [`Input::len`] reads it, then the bytes.
fn with_len(v: &[u8]) -> Vec<u8> {
    let mut out = if v.len() < 0xf0 {
        vec![v.len() as u8]
    } else {
        let n = v.len() as u16;
        vec![0xf0, n as u8, (n >> 8) as u8]
    };
    out.extend_from_slice(v);
    out
}

/// The index [`Input::pick`] reads for `value` among `valid`.
fn index_of(valid: &[CK_ULONG], value: CK_ULONG) -> u8 {
    valid.iter().position(|&v| v == value).unwrap_or(0) as u8
}

/// P-256's base point, uncompressed: a valid ECDH peer for any P-256 key.
const P256_G: [u8; 65] = [
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

/// A valid parameter of `ty` in the encoding [`param_for`] reads.
fn param_seed(ty: CK_MECHANISM_TYPE) -> Vec<u8> {
    let pss_hash = match ty {
        CKM_SHA1_RSA_PKCS_PSS => CKM_SHA_1,
        CKM_SHA224_RSA_PKCS_PSS => CKM_SHA224,
        CKM_SHA384_RSA_PKCS_PSS => CKM_SHA384,
        CKM_SHA512_RSA_PKCS_PSS => CKM_SHA512,
        _ => CKM_SHA256,
    };
    let mgf = |h| match h {
        CKM_SHA_1 => CKG_MGF1_SHA1,
        CKM_SHA224 => CKG_MGF1_SHA224,
        CKM_SHA384 => CKG_MGF1_SHA384,
        CKM_SHA512 => CKG_MGF1_SHA512,
        _ => CKG_MGF1_SHA256,
    };
    match ty {
        CKM_AES_CBC | CKM_AES_CBC_PAD => with_len(&[0x01; 16]),
        CKM_AES_CTR => [&[3u8][..], &[0xfe; 16]].concat(),
        CKM_AES_GCM => [with_len(&[0x0c; 12]), with_len(b"aad"), vec![7]].concat(),
        CKM_RSA_PKCS_OAEP => [
            index_of(HASHES, CKM_SHA256),
            index_of(MGFS, CKG_MGF1_SHA256),
            1,
        ]
        .into_iter()
        .chain(with_len(b"label"))
        .collect(),
        CKM_RSA_PKCS_PSS
        | CKM_SHA1_RSA_PKCS_PSS
        | CKM_SHA224_RSA_PKCS_PSS
        | CKM_SHA256_RSA_PKCS_PSS
        | CKM_SHA384_RSA_PKCS_PSS
        | CKM_SHA512_RSA_PKCS_PSS => vec![
            index_of(HASHES, pss_hash),
            index_of(MGFS, mgf(pss_hash)),
            index_of(SIZES, 20),
        ],
        CKM_AES_CMAC_GENERAL => vec![index_of(SIZES, 8)],
        CKM_SHA_1_HMAC_GENERAL
        | CKM_SHA224_HMAC_GENERAL
        | CKM_SHA256_HMAC_GENERAL
        | CKM_SHA384_HMAC_GENERAL
        | CKM_SHA512_HMAC_GENERAL => vec![index_of(SIZES, 16)],
        CKM_ECDH1_DERIVE => [vec![0], with_len(&[]), with_len(&P256_G)].concat(),
        CKM_HKDF_DERIVE | CKM_HKDF_DATA => [
            vec![1, 1, index_of(HASHES, CKM_SHA256), 1],
            with_len(b"salt"),
            vec![0],
            with_len(b"info"),
        ]
        .concat(),
        CKM_AES_ECB_ENCRYPT_DATA => with_len(&[0x33; 32]),
        CKM_AES_CBC_ENCRYPT_DATA => [vec![0x44; 16], with_len(&[0x55; 32])].concat(),
        CKM_CONCATENATE_BASE_AND_KEY => vec![0],
        _ => Vec::new(),
    }
}

fn mechanism_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for m in MECHANISMS {
        let head = [&[0x80u8][..], &m.ty.to_le_bytes(), &[0]].concat();
        let param = param_seed(m.ty);
        let payload: Vec<u8> = (0..48u8).collect();
        // key 0 (the first that fits), then: single-part encrypt/sign;
        // multi-part in chunks of 5, 3 and the rest; decrypt/verify first.
        let bodies = [
            [vec![0, 0x00, 0], payload.clone()].concat(),
            [vec![0, 0x10, 1, 2, 5, 3], payload[..33].to_vec()].concat(),
            [vec![1, 0x93, 0], payload[..16].to_vec()].concat(),
        ];
        for (i, b) in bodies.into_iter().enumerate() {
            let name = format!("{}-{i}", m.name.to_ascii_lowercase());
            out.push((name, [head.clone(), param.clone(), b].concat()));
        }
    }
    out
}

fn template_seeds() -> Vec<(String, Vec<u8>)> {
    let ul = RawAttr::ulong;
    let b = RawAttr::bool;
    let n = RawAttr::new;
    let keys = keys();
    let ec_pub = keys
        .0
        .iter()
        .find(|o| o.ulong(CKA_CLASS) == Some(CKO_PUBLIC_KEY) && o.bytes(CKA_EC_POINT).is_some())
        .expect("an EC test key");
    let rsa_pub = keys
        .0
        .iter()
        .find(|o| o.ulong(CKA_CLASS) == Some(CKO_PUBLIC_KEY) && o.bytes(CKA_MODULUS).is_some())
        .expect("an RSA test key");
    let wrap = policy::encode_template(&[ul(CKA_CLASS, CKO_SECRET_KEY), b(CKA_SENSITIVE, true)]);
    let mechs: Vec<u8> = [CKM_AES_GCM, CKM_AES_KEY_WRAP_KWP]
        .iter()
        .flat_map(|m| m.to_ne_bytes())
        .collect();
    let templates: Vec<(&str, u8, Vec<RawAttr>, usize)> = vec![
        (
            "aes-create",
            0,
            vec![
                ul(CKA_CLASS, CKO_SECRET_KEY),
                ul(CKA_KEY_TYPE, CKK_AES),
                n(CKA_VALUE, &[0x11; 16]),
                b(CKA_SENSITIVE, true),
                b(CKA_ENCRYPT, true),
                n(CKA_LABEL, b"aes"),
                b(CKA_EXTRACTABLE, false),
                n(CKA_LABEL, b"renamed"),
                b(CKA_SENSITIVE, false),
            ],
            7,
        ),
        (
            "secret-generate-spec",
            0x05,
            vec![
                ul(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, true),
                n(CKA_ALLOWED_MECHANISMS, &mechs),
                n(CKA_WRAP_TEMPLATE, &wrap),
                n(CKA_START_DATE, b"20260101"),
                b(CKA_WRAP, true),
                b(CKA_EXTRACTABLE, true),
            ],
            5,
        ),
        (
            "data-object",
            0x01,
            vec![
                ul(CKA_CLASS, CKO_DATA),
                b(CKA_PRIVATE, true),
                n(CKA_APPLICATION, b"app"),
                n(CKA_VALUE, b"payload"),
                n(CKA_LABEL, b"new label"),
            ],
            4,
        ),
        (
            "ec-public-import",
            0x01,
            vec![
                ul(CKA_CLASS, CKO_PUBLIC_KEY),
                ul(CKA_KEY_TYPE, CKK_EC),
                n(
                    CKA_EC_PARAMS,
                    ec_pub.bytes(CKA_EC_PARAMS).unwrap_or_default(),
                ),
                n(CKA_EC_POINT, ec_pub.bytes(CKA_EC_POINT).unwrap_or_default()),
                b(CKA_VERIFY, true),
                b(CKA_TRUSTED, true),
            ],
            5,
        ),
        (
            "rsa-public-import",
            0x01,
            vec![
                ul(CKA_CLASS, CKO_PUBLIC_KEY),
                ul(CKA_KEY_TYPE, CKK_RSA),
                n(CKA_MODULUS, rsa_pub.bytes(CKA_MODULUS).unwrap_or_default()),
                n(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_ENCRYPT, true),
            ],
            5,
        ),
        (
            "ec-private-generate",
            0x24,
            vec![b(CKA_SIGN, true), n(CKA_ID, b"id"), b(CKA_SENSITIVE, true)],
            3,
        ),
        (
            "unwrap-origin",
            0x1c,
            vec![
                n(CKA_VALUE, &[0x22; 32]),
                b(CKA_DECRYPT, true),
                n(CKA_UNWRAP_TEMPLATE, &wrap),
            ],
            2,
        ),
    ];
    templates
        .into_iter()
        .map(|(name, flags, attrs, split)| {
            let body = policy::encode_template(&attrs);
            (name.to_string(), [vec![flags, split as u8], body].concat())
        })
        .chain([("lenient".to_string(), vec![0, 2, 0, 0x41, 1, 0x10, 0x45, 3])])
        .collect()
}

fn ec_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in &keys().0 {
        let (Some(params), Some(CKK_EC)) = (o.bytes(CKA_EC_PARAMS), o.ulong(CKA_KEY_TYPE)) else {
            continue;
        };
        let sel = if params == ec::P256_PARAMS { 0 } else { 2 };
        let bits = if sel == 0 { 256 } else { 384 };
        if let Some(point) = o.bytes(CKA_EC_POINT) {
            let bare = &point[2..];
            let mut compressed = vec![2 + (bare[bare.len() - 1] & 1)];
            compressed.extend_from_slice(&bare[1..1 + (bare.len() - 1) / 2]);
            out.push((format!("p{bits}-point-der"), [&[sel][..], point].concat()));
            out.push((format!("p{bits}-point-bare"), [&[sel][..], bare].concat()));
            out.push((
                format!("p{bits}-point-compressed"),
                [vec![sel], compressed].concat(),
            ));
            out.push((
                format!("p{bits}-explicit-params"),
                [vec![3], with_len(params), point.to_vec()].concat(),
            ));
        }
        if let Some(v) = o.bytes(CKA_VALUE) {
            out.push((format!("p{bits}-scalar"), [&[sel][..], v].concat()));
        }
    }
    out.push((
        "secp256k1-params".into(),
        [vec![3], with_len(&[6, 5, 0x2b, 0x81, 4, 0, 0x0a])].concat(),
    ));
    out
}

fn rsa_seeds() -> Vec<(String, Vec<u8>)> {
    let a = rsa::from_pkcs8(RSA_TEST_KEY).expect("the RSA test key parses");
    let get = |ty| match a.get(&ty) {
        Some(AttrValue::Bytes(b)) => b.clone(),
        _ => Vec::new(),
    };
    let body: Vec<u8> = [
        CKA_MODULUS,
        CKA_PUBLIC_EXPONENT,
        CKA_PRIVATE_EXPONENT,
        CKA_PRIME_1,
        CKA_PRIME_2,
        CKA_EXPONENT_1,
    ]
    .into_iter()
    .flat_map(|ty| with_len(&get(ty)))
    .collect();
    vec![
        ("all-components".into(), [vec![0], body.clone()].concat()),
        ("n-e-d".into(), [vec![0x38], body.clone()].concat()),
        ("no-crt".into(), [vec![0x20], body.clone()].concat()),
        ("public-only".into(), [vec![0x3c], body].concat()),
    ]
}
