//! RSA rows: key-pair generation, raw/PKCS#1/OAEP/PSS, hashed signatures.
use cryptoki_sys::*;

use super::{RSA, WRAPS, row};
use crate::mechanism::{CipherBuilder, KeyPairGen, Mechanism, ParamShape, SignBuilder, rsa};

pub(super) const fn rsa_row(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    flags: CK_FLAGS,
    param: ParamShape,
    cipher: Option<CipherBuilder>,
    sign: Option<SignBuilder>,
) -> Mechanism {
    Mechanism {
        min_key: rsa::MIN_PUBLIC_BITS as CK_ULONG,
        max_key: rsa::MAX_BITS as CK_ULONG,
        key_types: RSA,
        param,
        cipher,
        sign,
        ..row(ty, name, flags)
    }
}

/// `C_SignRecover`/`C_VerifyRecover` (the `recover` column).
const RECOVERS: CK_FLAGS = CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER;

macro_rules! rsa_hash_rows {
    ($($pkcs:ident, $pss:ident, $h:ident;)*) => {
        &[$(
            rsa_row($pkcs, stringify!($pkcs), CKF_SIGN | CKF_VERIFY, ParamShape::None, None,
                Some(|p, k, v| rsa::sign_op(p, k, v, $pkcs, Some($h)))),
            rsa_row($pss, stringify!($pss), CKF_SIGN | CKF_VERIFY, ParamShape::Pss, None,
                Some(|p, k, v| rsa::sign_op(p, k, v, $pss, Some($h)))),
        )*]
    };
}

pub(super) static ROWS: &[Mechanism] = &[
    Mechanism {
        min_key: rsa::MIN_BITS as CK_ULONG,
        max_key: rsa::MAX_GEN_BITS as CK_ULONG,
        keypair: Some(KeyPairGen {
            key_type: CKK_RSA,
            generate: rsa::generate,
        }),
        ..row(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            "CKM_RSA_PKCS_KEY_PAIR_GEN",
            CKF_GENERATE_KEY_PAIR,
        )
    },
    // PKCS#1 v1.5 key transport (C_WrapKey/C_UnwrapKey of secret keys, as
    // SoftHSMv2 offers it) is legacy: spec tokens only. Its message is
    // shorter than any private key's PKCS#8, so it wraps secret keys only.
    Mechanism {
        wraps_private_keys: false,
        legacy: WRAPS,
        recover: Some(|p, k, v| rsa::recover_op(p, k, v, CKM_RSA_PKCS)),
        ..rsa_row(
            CKM_RSA_PKCS,
            "CKM_RSA_PKCS",
            CKF_ENCRYPT | CKF_DECRYPT | CKF_SIGN | CKF_VERIFY | WRAPS | RECOVERS,
            ParamShape::None,
            Some(|p, k, d| rsa::cipher(p, k, d, CKM_RSA_PKCS)),
            Some(|p, k, v| rsa::sign_op(p, k, v, CKM_RSA_PKCS, None)),
        )
    },
    Mechanism {
        recover: Some(|p, k, v| rsa::recover_op(p, k, v, CKM_RSA_X_509)),
        ..rsa_row(
            CKM_RSA_X_509,
            "CKM_RSA_X_509",
            CKF_ENCRYPT | CKF_DECRYPT | CKF_SIGN | CKF_VERIFY | RECOVERS,
            ParamShape::None,
            Some(|p, k, d| rsa::cipher(p, k, d, CKM_RSA_X_509)),
            Some(|p, k, v| rsa::sign_op(p, k, v, CKM_RSA_X_509, None)),
        )
    },
    Mechanism {
        wraps_private_keys: false,
        ..rsa_row(
            CKM_RSA_PKCS_OAEP,
            "CKM_RSA_PKCS_OAEP",
            CKF_ENCRYPT | CKF_DECRYPT | WRAPS,
            ParamShape::Oaep,
            Some(|p, k, d| rsa::cipher(p, k, d, CKM_RSA_PKCS_OAEP)),
            None,
        )
    },
    rsa_row(
        CKM_RSA_PKCS_PSS,
        "CKM_RSA_PKCS_PSS",
        CKF_SIGN | CKF_VERIFY,
        ParamShape::Pss,
        None,
        Some(|p, k, v| rsa::sign_op(p, k, v, CKM_RSA_PKCS_PSS, None)),
    ),
];

pub(super) static HASHED: &[Mechanism] = rsa_hash_rows! {
    CKM_SHA1_RSA_PKCS, CKM_SHA1_RSA_PKCS_PSS, CKM_SHA_1;
    CKM_SHA224_RSA_PKCS, CKM_SHA224_RSA_PKCS_PSS, CKM_SHA224;
    CKM_SHA256_RSA_PKCS, CKM_SHA256_RSA_PKCS_PSS, CKM_SHA256;
    CKM_SHA384_RSA_PKCS, CKM_SHA384_RSA_PKCS_PSS, CKM_SHA384;
    CKM_SHA512_RSA_PKCS, CKM_SHA512_RSA_PKCS_PSS, CKM_SHA512;
    CKM_SHA3_224_RSA_PKCS, CKM_SHA3_224_RSA_PKCS_PSS, CKM_SHA3_224;
    CKM_SHA3_256_RSA_PKCS, CKM_SHA3_256_RSA_PKCS_PSS, CKM_SHA3_256;
    CKM_SHA3_384_RSA_PKCS, CKM_SHA3_384_RSA_PKCS_PSS, CKM_SHA3_384;
    CKM_SHA3_512_RSA_PKCS, CKM_SHA3_512_RSA_PKCS_PSS, CKM_SHA3_512;
};
