//! Seed inputs of the fuzz targets: valid parameters, templates and keys
//! in the encodings the targets read, from which the corpus grows.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;

use crate::mechanism::{MECHANISMS, ec, rsa};
use crate::object::policy::{self, RawAttr};

use super::input::{HASHES, MGFS, RSA_TEST_KEY, SIZES, keys};

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
pub(super) fn with_len(v: &[u8]) -> Vec<u8> {
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
pub(super) fn index_of(valid: &[CK_ULONG], value: CK_ULONG) -> u8 {
    valid.iter().position(|&v| v == value).unwrap_or(0) as u8
}

/// P-256's base point, uncompressed: a valid ECDH peer for any P-256 key.
pub(super) const P256_G: [u8; 65] = [
    0x04, 0x6b, 0x17, 0xd1, 0xf2, 0xe1, 0x2c, 0x42, 0x47, 0xf8, 0xbc, 0xe6, 0xe5, 0x63, 0xa4, 0x40,
    0xf2, 0x77, 0x03, 0x7d, 0x81, 0x2d, 0xeb, 0x33, 0xa0, 0xf4, 0xa1, 0x39, 0x45, 0xd8, 0x98, 0xc2,
    0x96, 0x4f, 0xe3, 0x42, 0xe2, 0xfe, 0x1a, 0x7f, 0x9b, 0x8e, 0xe7, 0xeb, 0x4a, 0x7c, 0x0f, 0x9e,
    0x16, 0x2b, 0xce, 0x33, 0x57, 0x6b, 0x31, 0x5e, 0xce, 0xcb, 0xb6, 0x40, 0x68, 0x37, 0xbf, 0x51,
    0xf5,
];

/// A valid parameter of `ty` in the encoding [`param_for`] reads.
pub(super) fn param_seed(ty: CK_MECHANISM_TYPE) -> Vec<u8> {
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
        CKM_AES_CTS | CKM_AES_XTS => with_len(&[0x06; 16]),
        // ulDataLen 48 (the payload), nonce 12, AAD, MAC 16.
        CKM_AES_CCM => [vec![4], with_len(&[0x0c; 12]), with_len(b"aad"), vec![4]].concat(),
        CKM_CHACHA20_POLY1305 => [with_len(&[0x0c; 12]), with_len(b"aad")].concat(),
        CKM_CHACHA20 => [with_len(&[0; 4]), with_len(&[0x0c; 12])].concat(),
        // Ed25519ph with a context.
        CKM_EDDSA => [vec![1, 1], with_len(b"context")].concat(),
        _ => Vec::new(),
    }
}

pub(super) fn mechanism_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for m in MECHANISMS.iter() {
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

pub(super) fn template_seeds() -> Vec<(String, Vec<u8>)> {
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

pub(super) fn ec_seeds() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for o in &keys().0 {
        let (Some(params), Some(kt)) = (o.bytes(CKA_EC_PARAMS), o.ulong(CKA_KEY_TYPE)) else {
            continue;
        };
        // The selectors of `fuzzing::ec_import`.
        let (sel, name) = match (kt, params) {
            (CKK_EC, p) if p == ec::P256_PARAMS => (0, "p256"),
            (CKK_EC, p) if p == ec::P384_PARAMS => (2, "p384"),
            (CKK_EC, _) => (4, "p521"),
            (CKK_EC_EDWARDS, _) => (5, "ed25519"),
            _ => (6, "x25519"),
        };
        if let Some(point) = o.bytes(CKA_EC_POINT) {
            out.push((format!("{name}-point-der"), [&[sel][..], point].concat()));
            let curve = ec::Curve::from_params(params);
            let bare = match curve {
                Ok(c) => ec::sec1_point(point, c).expect("a generated point"),
                Err(_) => &point[2..],
            };
            out.push((format!("{name}-point-bare"), [&[sel][..], bare].concat()));
            if curve.is_ok() {
                let mut compressed = vec![2 + (bare[bare.len() - 1] & 1)];
                compressed.extend_from_slice(&bare[1..1 + (bare.len() - 1) / 2]);
                out.push((
                    format!("{name}-point-compressed"),
                    [vec![sel], compressed].concat(),
                ));
                out.push((
                    format!("{name}-explicit-params"),
                    [vec![3], with_len(params), point.to_vec()].concat(),
                ));
            }
        }
        if let Some(v) = o.bytes(CKA_VALUE) {
            out.push((format!("{name}-scalar"), [&[sel][..], v].concat()));
        }
    }
    out.push((
        "secp256k1-params".into(),
        [vec![3], with_len(&[6, 5, 0x2b, 0x81, 4, 0, 0x0a])].concat(),
    ));
    out
}

pub(super) fn rsa_seeds() -> Vec<(String, Vec<u8>)> {
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
