//! Key-derivation rows: HKDF, AES encrypt-data, the simple derivations of
//! v3.0 §2.42 (concatenation, XOR, extraction), SP 800-108.
use cryptoki_sys::*;

use super::{AES, GENERIC, SECRETS, derive_row};
use crate::mechanism::kdf::kbkdf::{self, Mode};
use crate::mechanism::kdf::simple::{self, Join};
use crate::mechanism::{Derive, Mechanism, MultiKey, ParamShape, kdf};

/// An SP 800-108 row: one-way, several keys per run.
const fn kbkdf_row(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    param: ParamShape,
    derive: Derive,
    multi: MultiKey,
) -> Mechanism {
    derive_row(
        ty,
        name,
        SECRETS,
        param,
        Derive {
            one_way: true,
            multi: Some(multi),
            ..derive
        },
    )
}

pub(super) static ROWS: &[Mechanism] = &[
    derive_row(
        CKM_HKDF_DERIVE,
        "CKM_HKDF_DERIVE",
        GENERIC,
        ParamShape::Hkdf,
        Derive {
            second_key: kdf::hkdf_salt_key,
            one_way: true,
            ..Derive::new(kdf::hkdf, kdf::hkdf_len)
        },
    ),
    derive_row(
        CKM_HKDF_DATA,
        "CKM_HKDF_DATA",
        GENERIC,
        ParamShape::Hkdf,
        Derive {
            second_key: kdf::hkdf_salt_key,
            data: true,
            one_way: true,
            ..Derive::new(kdf::hkdf, kdf::hkdf_len)
        },
    ),
    derive_row(
        CKM_AES_ECB_ENCRYPT_DATA,
        "CKM_AES_ECB_ENCRYPT_DATA",
        AES,
        ParamShape::StringData,
        Derive::new(
            |p, b, _, n| kdf::encrypt_data(p, b, false, n),
            |p, _, _| kdf::encrypt_data_len(p, false),
        ),
    ),
    derive_row(
        CKM_AES_CBC_ENCRYPT_DATA,
        "CKM_AES_CBC_ENCRYPT_DATA",
        AES,
        ParamShape::AesCbcData,
        Derive::new(
            |p, b, _, n| kdf::encrypt_data(p, b, true, n),
            |p, _, _| kdf::encrypt_data_len(p, true),
        ),
    ),
    derive_row(
        CKM_CONCATENATE_BASE_AND_KEY,
        "CKM_CONCATENATE_BASE_AND_KEY",
        SECRETS,
        ParamShape::KeyHandle,
        Derive {
            second_key: simple::concatenated_key,
            copied: Some(simple::concatenate_copied),
            ..Derive::new(simple::concatenate, simple::concatenate_len)
        },
    ),
    derive_row(
        CKM_CONCATENATE_BASE_AND_DATA,
        "CKM_CONCATENATE_BASE_AND_DATA",
        SECRETS,
        ParamShape::StringData,
        Derive {
            copied: Some(|p, b, _, n| simple::join_copied(p, b, Join::BaseFirst, n)),
            ..Derive::new(
                |p, b, _, n| simple::join(p, b, Join::BaseFirst, n),
                |p, b, _| simple::join_len(p, b, Join::BaseFirst),
            )
        },
    ),
    derive_row(
        CKM_CONCATENATE_DATA_AND_BASE,
        "CKM_CONCATENATE_DATA_AND_BASE",
        SECRETS,
        ParamShape::StringData,
        Derive {
            copied: Some(|p, b, _, n| simple::join_copied(p, b, Join::DataFirst, n)),
            ..Derive::new(
                |p, b, _, n| simple::join(p, b, Join::DataFirst, n),
                |p, b, _| simple::join_len(p, b, Join::DataFirst),
            )
        },
    ),
    derive_row(
        CKM_XOR_BASE_AND_DATA,
        "CKM_XOR_BASE_AND_DATA",
        SECRETS,
        ParamShape::StringData,
        Derive {
            copied: Some(|p, b, _, n| simple::join_copied(p, b, Join::Xor, n)),
            ..Derive::new(
                |p, b, _, n| simple::join(p, b, Join::Xor, n),
                |p, b, _| simple::join_len(p, b, Join::Xor),
            )
        },
    ),
    derive_row(
        CKM_EXTRACT_KEY_FROM_KEY,
        "CKM_EXTRACT_KEY_FROM_KEY",
        SECRETS,
        ParamShape::Extract,
        Derive {
            copied: Some(|_, _, _, n| [n, 0]),
            ..Derive::new(
                |p, b, _, n| simple::extract(p, b, n),
                |p, b, _| simple::extract_len(p, b),
            )
        },
    ),
    kbkdf_row(
        CKM_SP800_108_COUNTER_KDF,
        "CKM_SP800_108_COUNTER_KDF",
        ParamShape::Kbkdf,
        Derive::new(
            |p, b, _, n| kbkdf::derive_one(p, b, Mode::Counter, n),
            |p, b, _| kbkdf::default_len(p, b),
        ),
        MultiKey {
            templates: kbkdf::extra_templates,
            derive: |p, b, lens| kbkdf::derive(p, b, Mode::Counter, lens),
        },
    ),
    kbkdf_row(
        CKM_SP800_108_FEEDBACK_KDF,
        "CKM_SP800_108_FEEDBACK_KDF",
        ParamShape::KbkdfFeedback,
        Derive::new(
            |p, b, _, n| kbkdf::derive_one(p, b, Mode::Feedback, n),
            |p, b, _| kbkdf::default_len(p, b),
        ),
        MultiKey {
            templates: kbkdf::extra_templates,
            derive: |p, b, lens| kbkdf::derive(p, b, Mode::Feedback, lens),
        },
    ),
    kbkdf_row(
        CKM_SP800_108_DOUBLE_PIPELINE_KDF,
        "CKM_SP800_108_DOUBLE_PIPELINE_KDF",
        ParamShape::Kbkdf,
        Derive::new(
            |p, b, _, n| kbkdf::derive_one(p, b, Mode::DoublePipeline, n),
            |p, b, _| kbkdf::default_len(p, b),
        ),
        MultiKey {
            templates: kbkdf::extra_templates,
            derive: |p, b, lens| kbkdf::derive(p, b, Mode::DoublePipeline, lens),
        },
    ),
];
