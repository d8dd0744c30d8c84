//! Curve25519 rows: Ed25519 key-pair generation and `CKM_EDDSA`, X25519
//! key-pair generation (its ECDH is `CKM_ECDH1_DERIVE`, in `ec.rs`'s rows).
//! Key sizes in bits, as SoftHSMv2 and OpenSC report them (255).
use cryptoki_sys::*;

use super::row;
use crate::mechanism::{KeyPairGen, Mechanism, ParamShape, edwards};

/// The curve is named by OID or by PrintableString (`CKA_EC_PARAMS`).
const FLAGS: CK_FLAGS = CKF_EC_OID | CKF_EC_CURVENAME;

pub(super) static ROWS: &[Mechanism] = &[
    Mechanism {
        min_key: 255,
        max_key: 255,
        keypair: Some(KeyPairGen {
            key_type: CKK_EC_EDWARDS,
            generate: edwards::generate_edwards,
        }),
        ..row(
            CKM_EC_EDWARDS_KEY_PAIR_GEN,
            "CKM_EC_EDWARDS_KEY_PAIR_GEN",
            CKF_GENERATE_KEY_PAIR | FLAGS,
        )
    },
    Mechanism {
        min_key: 255,
        max_key: 255,
        key_types: &[CKK_EC_EDWARDS],
        param: ParamShape::Eddsa,
        sign: Some(edwards::eddsa),
        ..row(CKM_EDDSA, "CKM_EDDSA", CKF_SIGN | CKF_VERIFY | FLAGS)
    },
    Mechanism {
        min_key: 255,
        max_key: 255,
        keypair: Some(KeyPairGen {
            key_type: CKK_EC_MONTGOMERY,
            generate: edwards::generate_montgomery,
        }),
        ..row(
            CKM_EC_MONTGOMERY_KEY_PAIR_GEN,
            "CKM_EC_MONTGOMERY_KEY_PAIR_GEN",
            CKF_GENERATE_KEY_PAIR | FLAGS,
        )
    },
];
