//! Elliptic-curve rows: key-pair generation, ECDSA, ECDH (P-256, P-384,
//! P-521; ECDH also with X25519 keys, whose secret `ec::ecdh` asks
//! `edwards` for).
use cryptoki_sys::*;

use super::{EC, EC_FLAGS, ECDH_KEYS, row};
use crate::mechanism::{Derive, KeyPairGen, Mechanism, ParamShape, SignBuilder, ec};

const fn ec_row(ty: CK_MECHANISM_TYPE, name: &'static str, sign: SignBuilder) -> Mechanism {
    Mechanism {
        min_key: 256,
        max_key: 521,
        key_types: EC,
        sign: Some(sign),
        ..row(ty, name, CKF_SIGN | CKF_VERIFY | EC_FLAGS)
    }
}

macro_rules! ecdsa_rows {
    ($($m:ident, $h:ident;)*) => {
        &[$( ec_row($m, stringify!($m), |p, k, v| ec::ecdsa(p, k, v, Some($h))), )*]
    };
}

pub(super) static ROWS: &[Mechanism] = &[
    Mechanism {
        min_key: 256,
        max_key: 521,
        keypair: Some(KeyPairGen {
            key_type: CKK_EC,
            generate: ec::generate,
        }),
        ..row(
            CKM_EC_KEY_PAIR_GEN,
            "CKM_EC_KEY_PAIR_GEN",
            CKF_GENERATE_KEY_PAIR | EC_FLAGS,
        )
    },
    ec_row(CKM_ECDSA, "CKM_ECDSA", |p, k, v| ec::ecdsa(p, k, v, None)),
    ecdh_row(CKM_ECDH1_DERIVE, "CKM_ECDH1_DERIVE"),
    // The NIST curves have cofactor 1: cofactor ECDH is plain ECDH on them.
    ecdh_row(CKM_ECDH1_COFACTOR_DERIVE, "CKM_ECDH1_COFACTOR_DERIVE"),
];

/// An ECDH row: one-way (the template may ask a readable secret).
const fn ecdh_row(ty: CK_MECHANISM_TYPE, name: &'static str) -> Mechanism {
    Mechanism {
        min_key: 255,
        max_key: 521,
        key_types: ECDH_KEYS,
        param: ParamShape::Ecdh,
        derive: Some(Derive {
            one_way: true,
            ..Derive::new(ec::ecdh, ec::field_len)
        }),
        ..row(ty, name, CKF_DERIVE | EC_FLAGS)
    }
}

pub(super) static HASHED: &[Mechanism] = ecdsa_rows! {
    CKM_ECDSA_SHA1, CKM_SHA_1;
    CKM_ECDSA_SHA224, CKM_SHA224;
    CKM_ECDSA_SHA256, CKM_SHA256;
    CKM_ECDSA_SHA384, CKM_SHA384;
    CKM_ECDSA_SHA512, CKM_SHA512;
    CKM_ECDSA_SHA3_224, CKM_SHA3_224;
    CKM_ECDSA_SHA3_256, CKM_SHA3_256;
    CKM_ECDSA_SHA3_384, CKM_SHA3_384;
    CKM_ECDSA_SHA3_512, CKM_SHA3_512;
};
