//! Legacy rows (`legacy: LEGACY`: `spec` tokens only, see
//! `module/legacy.rs`): DES and triple-DES key generation, ECB/CBC/CBC-PAD
//! and CMAC; MD5 as a digest, in HMACs and in PKCS#1 v1.5 signatures.
use cryptoki_sys::*;

use super::digest::digest_row;
use super::mac::{HMAC_KEYS, HMAC_SIZES, mac_row};
use super::rsa::rsa_row;
use super::{DES, DES3, WRAPS, row};
use crate::mechanism::{
    CipherBuilder, KeyGen, LEGACY, Mechanism, ParamShape, des, digest, key_value, mac, rsa,
};

/// A legacy row.
const fn legacy(m: Mechanism) -> Mechanism {
    Mechanism {
        legacy: LEGACY,
        ..m
    }
}

/// A DES key generation row; sizes in bytes, as the AES rows have them.
const fn des_keygen(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    key_type: CK_KEY_TYPE,
    len: CK_ULONG,
) -> Mechanism {
    legacy(Mechanism {
        min_key: len,
        max_key: len,
        keygen: Some(KeyGen { key_type }),
        ..row(ty, name, CKF_GENERATE)
    })
}

/// A DES cipher row: `single` for `CKK_DES`, else two- and three-key DES.
const fn des_cipher(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    single: bool,
    extra: CK_FLAGS,
    param: ParamShape,
    build: CipherBuilder,
) -> Mechanism {
    legacy(Mechanism {
        min_key: if single { 8 } else { 16 },
        max_key: if single { 8 } else { 24 },
        key_types: if single { DES } else { DES3 },
        param,
        cipher: Some(build),
        ..row(ty, name, CKF_ENCRYPT | CKF_DECRYPT | extra)
    })
}

pub(super) static ROWS: &[Mechanism] = &[
    des_keygen(CKM_DES_KEY_GEN, "CKM_DES_KEY_GEN", CKK_DES, 8),
    des_keygen(CKM_DES2_KEY_GEN, "CKM_DES2_KEY_GEN", CKK_DES2, 16),
    des_keygen(CKM_DES3_KEY_GEN, "CKM_DES3_KEY_GEN", CKK_DES3, 24),
    des_cipher(
        CKM_DES_ECB,
        "CKM_DES_ECB",
        true,
        0,
        ParamShape::None,
        des::ecb,
    ),
    des_cipher(
        CKM_DES_CBC,
        "CKM_DES_CBC",
        true,
        0,
        ParamShape::Bytes,
        des::cbc,
    ),
    des_cipher(
        CKM_DES_CBC_PAD,
        "CKM_DES_CBC_PAD",
        true,
        WRAPS,
        ParamShape::Bytes,
        des::cbc_pad,
    ),
    des_cipher(
        CKM_DES3_ECB,
        "CKM_DES3_ECB",
        false,
        0,
        ParamShape::None,
        des::ecb,
    ),
    des_cipher(
        CKM_DES3_CBC,
        "CKM_DES3_CBC",
        false,
        0,
        ParamShape::Bytes,
        des::cbc,
    ),
    des_cipher(
        CKM_DES3_CBC_PAD,
        "CKM_DES3_CBC_PAD",
        false,
        WRAPS,
        ParamShape::Bytes,
        des::cbc_pad,
    ),
    legacy(mac_row(
        CKM_DES3_CMAC,
        "CKM_DES3_CMAC",
        DES3,
        (16, 24),
        false,
        |p, k, _| des::cmac(p, k, false),
    )),
    legacy(mac_row(
        CKM_DES3_CMAC_GENERAL,
        "CKM_DES3_CMAC_GENERAL",
        DES3,
        (16, 24),
        true,
        |p, k, _| des::cmac(p, k, true),
    )),
];

pub(super) static MD5: &[Mechanism] = &[
    legacy(digest_row(CKM_MD5, "CKM_MD5", digest::new::<md5::Md5>)),
    legacy(mac_row(
        CKM_MD5_HMAC,
        "CKM_MD5_HMAC",
        HMAC_KEYS,
        HMAC_SIZES,
        false,
        |p, k, _| mac::hmac::<md5::Md5>(p, key_value(k)?, false),
    )),
    legacy(mac_row(
        CKM_MD5_HMAC_GENERAL,
        "CKM_MD5_HMAC_GENERAL",
        HMAC_KEYS,
        HMAC_SIZES,
        true,
        |p, k, _| mac::hmac::<md5::Md5>(p, key_value(k)?, true),
    )),
    legacy(rsa_row(
        CKM_MD5_RSA_PKCS,
        "CKM_MD5_RSA_PKCS",
        CKF_SIGN | CKF_VERIFY,
        ParamShape::None,
        None,
        Some(|p, k, v| rsa::sign_op(p, k, v, CKM_MD5_RSA_PKCS, Some(CKM_MD5))),
    )),
];
