//! ChaCha20 rows: key generation, the stream cipher and the AEAD.
use cryptoki_sys::*;

use super::{WRAPS, row};
use crate::mechanism::chacha::{self, KEY_LEN, chacha_key};
use crate::mechanism::{KeyGen, Mechanism, ParamShape};

const CHACHA: &[CK_KEY_TYPE] = &[CKK_CHACHA20];

pub(super) static ROWS: &[Mechanism] = &[
    Mechanism {
        min_key: KEY_LEN as CK_ULONG,
        max_key: KEY_LEN as CK_ULONG,
        keygen: Some(KeyGen {
            key_type: CKK_CHACHA20,
        }),
        ..row(CKM_CHACHA20_KEY_GEN, "CKM_CHACHA20_KEY_GEN", CKF_GENERATE)
    },
    Mechanism {
        min_key: KEY_LEN as CK_ULONG,
        max_key: KEY_LEN as CK_ULONG,
        key_types: CHACHA,
        param: ParamShape::ChaCha20,
        cipher: Some(|p, k, d| chacha::chacha20(p, chacha_key(k)?, d)),
        ..row(CKM_CHACHA20, "CKM_CHACHA20", CKF_ENCRYPT | CKF_DECRYPT)
    },
    Mechanism {
        min_key: KEY_LEN as CK_ULONG,
        max_key: KEY_LEN as CK_ULONG,
        key_types: CHACHA,
        param: ParamShape::ChaChaPoly,
        cipher: Some(|p, k, d| chacha::chacha20_poly1305(p, chacha_key(k)?, d)),
        ..row(
            CKM_CHACHA20_POLY1305,
            "CKM_CHACHA20_POLY1305",
            CKF_ENCRYPT | CKF_DECRYPT | WRAPS,
        )
    },
];
