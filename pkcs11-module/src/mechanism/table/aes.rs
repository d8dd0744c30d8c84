//! AES rows: key generation and the cipher modes (CMAC is with the MACs).
use cryptoki_sys::*;

use super::{AES, WRAPS, row};
use crate::mechanism::aes_modes::{self, xts_key};
use crate::mechanism::{
    CipherBuilder, KeyGen, MAX_SECRET_LEN, Mechanism, ParamShape, aes, aes_gcm_key, aes_key,
    key_value, message,
};

const fn aes_cipher(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    extra: CK_FLAGS,
    param: ParamShape,
    build: CipherBuilder,
) -> Mechanism {
    Mechanism {
        min_key: 16,
        max_key: 32,
        key_types: AES,
        param,
        cipher: Some(build),
        ..row(ty, name, CKF_ENCRYPT | CKF_DECRYPT | extra)
    }
}

pub(super) static ROWS: &[Mechanism] = &[
    Mechanism {
        min_key: 16,
        max_key: 32,
        keygen: Some(KeyGen { key_type: CKK_AES }),
        ..row(CKM_AES_KEY_GEN, "CKM_AES_KEY_GEN", CKF_GENERATE)
    },
    Mechanism {
        // Generic secret key sizes are in bits (PKCS#11 v3.0 §6.43).
        min_key: 8,
        max_key: (MAX_SECRET_LEN * 8) as CK_ULONG,
        keygen: Some(KeyGen {
            key_type: CKK_GENERIC_SECRET,
        }),
        ..row(
            CKM_GENERIC_SECRET_KEY_GEN,
            "CKM_GENERIC_SECRET_KEY_GEN",
            CKF_GENERATE,
        )
    },
    aes_cipher(
        CKM_AES_ECB,
        "CKM_AES_ECB",
        0,
        ParamShape::None,
        |p, k, d| aes::ecb(p, aes_key(k)?, d),
    ),
    aes_cipher(
        CKM_AES_CBC,
        "CKM_AES_CBC",
        0,
        ParamShape::Bytes,
        |p, k, d| aes::cbc(p, aes_key(k)?, d),
    ),
    aes_cipher(
        CKM_AES_CBC_PAD,
        "CKM_AES_CBC_PAD",
        WRAPS,
        ParamShape::Bytes,
        |p, k, d| aes::cbc_pad(p, aes_key(k)?, d),
    ),
    aes_cipher(CKM_AES_CTR, "CKM_AES_CTR", 0, ParamShape::Ctr, |p, k, d| {
        aes::ctr(p, aes_key(k)?, d)
    }),
    Mechanism {
        aead: Some(|k| Ok(message::gcm(aes_key(k)?))),
        ..aes_cipher(
            CKM_AES_GCM,
            "CKM_AES_GCM",
            WRAPS,
            ParamShape::Gcm,
            |p, k, d| aes::gcm_cached(p, aes_gcm_key(k)?, d),
        )
    },
    Mechanism {
        pad_wrap: Some(|p, k, d| aes::kw_zero_padded(p, key_value(k)?, d)),
        ..aes_cipher(
            CKM_AES_KEY_WRAP,
            "CKM_AES_KEY_WRAP",
            WRAPS,
            ParamShape::Bytes,
            |p, k, d| aes::kw(p, key_value(k)?, d),
        )
    },
    aes_cipher(
        CKM_AES_KEY_WRAP_KWP,
        "CKM_AES_KEY_WRAP_KWP",
        WRAPS,
        ParamShape::Bytes,
        |p, k, d| aes::kwp(p, key_value(k)?, d),
    ),
];

/// The modes of `aes_modes`: CTS, CCM and XTS (with its own key type).
pub(super) static MODES: &[Mechanism] = &[
    aes_cipher(
        CKM_AES_CTS,
        "CKM_AES_CTS",
        0,
        ParamShape::Bytes,
        |p, k, d| aes_modes::cts(p, aes_key(k)?, d),
    ),
    aes_cipher(
        CKM_AES_CCM,
        "CKM_AES_CCM",
        WRAPS,
        ParamShape::Ccm,
        |p, k, d| aes_modes::ccm(p, aes_key(k)?, d),
    ),
    Mechanism {
        // An XTS key is two AES keys: 32 or 64 bytes (AES-128 or AES-256).
        min_key: 32,
        max_key: 64,
        keygen: Some(KeyGen {
            key_type: CKK_AES_XTS,
        }),
        ..row(CKM_AES_XTS_KEY_GEN, "CKM_AES_XTS_KEY_GEN", CKF_GENERATE)
    },
    Mechanism {
        min_key: 32,
        max_key: 64,
        key_types: &[CKK_AES_XTS],
        param: ParamShape::Bytes,
        cipher: Some(|p, k, d| aes_modes::xts(p, xts_key(k)?, d)),
        ..row(CKM_AES_XTS, "CKM_AES_XTS", CKF_ENCRYPT | CKF_DECRYPT)
    },
];
