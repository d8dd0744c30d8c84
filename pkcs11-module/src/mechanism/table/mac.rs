//! MAC rows: HMAC over each SHA hash, AES CMAC (MD5 and DES MACs are with
//! the legacy rows, `des.rs`).
use cryptoki_sys::*;

use super::{AES, row};
use crate::mechanism::{MAX_SECRET_LEN, Mechanism, ParamShape, SignBuilder, key_value, mac};

/// A MAC row: the `_GENERAL` forms (`general`) take `CK_MAC_GENERAL_PARAMS`.
pub(super) const fn mac_row(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    keys: &'static [CK_KEY_TYPE],
    (min, max): (CK_ULONG, CK_ULONG),
    general: bool,
    build: SignBuilder,
) -> Mechanism {
    Mechanism {
        min_key: min,
        max_key: max,
        key_types: keys,
        param: if general {
            ParamShape::MacGeneral
        } else {
            ParamShape::None
        },
        sign: Some(build),
        ..row(ty, name, CKF_SIGN | CKF_VERIFY)
    }
}

pub(super) const HMAC_KEYS: &[CK_KEY_TYPE] = &[
    CKK_GENERIC_SECRET,
    CKK_AES,
    CKK_SHA_1_HMAC,
    CKK_SHA224_HMAC,
    CKK_SHA256_HMAC,
    CKK_SHA384_HMAC,
    CKK_SHA512_HMAC,
    CKK_SHA3_224_HMAC,
    CKK_SHA3_256_HMAC,
    CKK_SHA3_384_HMAC,
    CKK_SHA3_512_HMAC,
];
pub(super) const HMAC_SIZES: (CK_ULONG, CK_ULONG) = (1, MAX_SECRET_LEN as CK_ULONG);

macro_rules! hmac_rows {
    ($($full:ident, $general:ident, $d:ty;)*) => {
        &[$(
            mac_row($full, stringify!($full), HMAC_KEYS, HMAC_SIZES, false, |p, k, _| mac::hmac::<$d>(p, key_value(k)?, false)),
            mac_row($general, stringify!($general), HMAC_KEYS, HMAC_SIZES, true, |p, k, _| mac::hmac::<$d>(p, key_value(k)?, true)),
        )*]
    };
}

pub(super) static ROWS: &[Mechanism] = &[
    mac_row(
        CKM_AES_CMAC,
        "CKM_AES_CMAC",
        AES,
        (16, 32),
        false,
        |p, k, _| mac::cmac(p, key_value(k)?, false),
    ),
    mac_row(
        CKM_AES_CMAC_GENERAL,
        "CKM_AES_CMAC_GENERAL",
        AES,
        (16, 32),
        true,
        |p, k, _| mac::cmac(p, key_value(k)?, true),
    ),
];

pub(super) static HMACS: &[Mechanism] = hmac_rows! {
    CKM_SHA_1_HMAC, CKM_SHA_1_HMAC_GENERAL, sha1::Sha1;
    CKM_SHA224_HMAC, CKM_SHA224_HMAC_GENERAL, sha2::Sha224;
    CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL, sha2::Sha256;
    CKM_SHA384_HMAC, CKM_SHA384_HMAC_GENERAL, sha2::Sha384;
    CKM_SHA512_HMAC, CKM_SHA512_HMAC_GENERAL, sha2::Sha512;
    CKM_SHA3_224_HMAC, CKM_SHA3_224_HMAC_GENERAL, sha3::Sha3_224;
    CKM_SHA3_256_HMAC, CKM_SHA3_256_HMAC_GENERAL, sha3::Sha3_256;
    CKM_SHA3_384_HMAC, CKM_SHA3_384_HMAC_GENERAL, sha3::Sha3_384;
    CKM_SHA3_512_HMAC, CKM_SHA3_512_HMAC_GENERAL, sha3::Sha3_512;
};

/// `CKM_SHA*_KEY_GEN` (v3.0): an HMAC key of the hash's type, sized in bytes
/// by `CKA_VALUE_LEN` like a generic secret.
const fn hmac_keygen(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    key_type: CK_KEY_TYPE,
) -> Mechanism {
    Mechanism {
        min_key: HMAC_SIZES.0,
        max_key: HMAC_SIZES.1,
        keygen: Some(crate::mechanism::KeyGen { key_type }),
        ..row(ty, name, CKF_GENERATE)
    }
}

pub(super) static KEYGENS: &[Mechanism] = &[
    hmac_keygen(CKM_SHA_1_KEY_GEN, "CKM_SHA_1_KEY_GEN", CKK_SHA_1_HMAC),
    hmac_keygen(CKM_SHA224_KEY_GEN, "CKM_SHA224_KEY_GEN", CKK_SHA224_HMAC),
    hmac_keygen(CKM_SHA256_KEY_GEN, "CKM_SHA256_KEY_GEN", CKK_SHA256_HMAC),
    hmac_keygen(CKM_SHA384_KEY_GEN, "CKM_SHA384_KEY_GEN", CKK_SHA384_HMAC),
    hmac_keygen(CKM_SHA512_KEY_GEN, "CKM_SHA512_KEY_GEN", CKK_SHA512_HMAC),
    hmac_keygen(
        CKM_SHA3_224_KEY_GEN,
        "CKM_SHA3_224_KEY_GEN",
        CKK_SHA3_224_HMAC,
    ),
    hmac_keygen(
        CKM_SHA3_256_KEY_GEN,
        "CKM_SHA3_256_KEY_GEN",
        CKK_SHA3_256_HMAC,
    ),
    hmac_keygen(
        CKM_SHA3_384_KEY_GEN,
        "CKM_SHA3_384_KEY_GEN",
        CKK_SHA3_384_HMAC,
    ),
    hmac_keygen(
        CKM_SHA3_512_KEY_GEN,
        "CKM_SHA3_512_KEY_GEN",
        CKK_SHA3_512_HMAC,
    ),
];
