//! Key-derivation rows: HKDF, AES encrypt-data, concatenation.
use cryptoki_sys::*;

use super::{AES, GENERIC, SECRETS, derive_row};
use crate::mechanism::{Derive, Mechanism, ParamShape, kdf};

pub(super) static ROWS: &[Mechanism] = &[
    derive_row(
        CKM_HKDF_DERIVE,
        "CKM_HKDF_DERIVE",
        GENERIC,
        ParamShape::Hkdf,
        Derive {
            derive: kdf::hkdf,
            default_len: kdf::hkdf_len,
            second_key: kdf::hkdf_salt_key,
            data: false,
        },
    ),
    derive_row(
        CKM_HKDF_DATA,
        "CKM_HKDF_DATA",
        GENERIC,
        ParamShape::Hkdf,
        Derive {
            derive: kdf::hkdf,
            default_len: kdf::hkdf_len,
            second_key: kdf::hkdf_salt_key,
            data: true,
        },
    ),
    derive_row(
        CKM_AES_ECB_ENCRYPT_DATA,
        "CKM_AES_ECB_ENCRYPT_DATA",
        AES,
        ParamShape::StringData,
        Derive {
            derive: |p, b, _, n| kdf::encrypt_data(p, b, false, n),
            default_len: |p, _, _| kdf::encrypt_data_len(p, false),
            second_key: |_| None,
            data: false,
        },
    ),
    derive_row(
        CKM_AES_CBC_ENCRYPT_DATA,
        "CKM_AES_CBC_ENCRYPT_DATA",
        AES,
        ParamShape::AesCbcData,
        Derive {
            derive: |p, b, _, n| kdf::encrypt_data(p, b, true, n),
            default_len: |p, _, _| kdf::encrypt_data_len(p, true),
            second_key: |_| None,
            data: false,
        },
    ),
    derive_row(
        CKM_CONCATENATE_BASE_AND_KEY,
        "CKM_CONCATENATE_BASE_AND_KEY",
        SECRETS,
        ParamShape::KeyHandle,
        Derive {
            derive: kdf::concatenate,
            default_len: kdf::concatenate_len,
            second_key: kdf::concatenated_key,
            data: false,
        },
    ),
];
