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

pub(super) const HMAC_KEYS: &[CK_KEY_TYPE] = &[CKK_GENERIC_SECRET, CKK_AES];
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
