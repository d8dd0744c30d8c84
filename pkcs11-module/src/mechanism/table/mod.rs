//! THE mechanism table, one file of rows per family: `FAMILIES` lists them in
//! `C_GetMechanismList` order and `super::MECHANISMS` is their concatenation.
//! Adding a mechanism is one row here plus its code in the family file
//! (`super::aes`, `super::rsa`, ...); the row constructors below keep rows short.
#![forbid(unsafe_code)]

mod aes;
mod chacha;
mod des;
mod digest;
mod ec;
mod edwards;
mod kdf;
mod mac;
mod rsa;

use cryptoki_sys::*;

use super::{Derive, Mechanism, ParamShape};

/// Every family's rows, in the order `C_GetMechanismList` reports them.
pub(super) static FAMILIES: &[&[Mechanism]] = &[
    digest::ROWS,
    aes::ROWS,
    aes::MODES,
    chacha::ROWS,
    des::ROWS,
    mac::ROWS,
    mac::HMACS,
    mac::KEYGENS,
    rsa::ROWS,
    rsa::HASHED,
    ec::ROWS,
    ec::HASHED,
    edwards::ROWS,
    kdf::ROWS,
    des::MD5,
];

/// A row with no key sizes, key types, parameter or builders yet.
pub(super) const fn row(ty: CK_MECHANISM_TYPE, name: &'static str, flags: CK_FLAGS) -> Mechanism {
    Mechanism {
        ty,
        name,
        min_key: 0,
        max_key: 0,
        flags: CKF_HW | flags,
        key_types: &[],
        param: ParamShape::None,
        digest: None,
        cipher: None,
        sign: None,
        keygen: None,
        keypair: None,
        derive: None,
        pad_wrap: None,
        wraps_private_keys: true,
        legacy: 0,
        recover: None,
        aead: None,
    }
}

/// `C_WrapKey`/`C_UnwrapKey` with a cipher mechanism.
pub(super) const WRAPS: CK_FLAGS = CKF_WRAP | CKF_UNWRAP;
pub(super) const AES: &[CK_KEY_TYPE] = &[CKK_AES];
/// Single DES keys.
pub(super) const DES: &[CK_KEY_TYPE] = &[CKK_DES];
/// Triple-DES keys, two- and three-key.
pub(super) const DES3: &[CK_KEY_TYPE] = &[CKK_DES2, CKK_DES3];
pub(super) const SECRETS: &[CK_KEY_TYPE] = &[CKK_GENERIC_SECRET, CKK_AES];
/// HKDF takes generic secrets (PKCS#11 v3.0 §2.43 also names CKK_HKDF, which
/// this token does not create).
pub(super) const GENERIC: &[CK_KEY_TYPE] = &[CKK_GENERIC_SECRET];
pub(super) const RSA: &[CK_KEY_TYPE] = &[CKK_RSA];
pub(super) const EC: &[CK_KEY_TYPE] = &[CKK_EC];
/// `CKM_ECDH1_DERIVE` takes NIST-curve and X25519 keys.
pub(super) const ECDH_KEYS: &[CK_KEY_TYPE] = &[CKK_EC, CKK_EC_MONTGOMERY];
pub(super) const EC_FLAGS: CK_FLAGS = CKF_EC_F_P | CKF_EC_NAMEDCURVE | CKF_EC_UNCOMPRESS;

/// A derivation row: key sizes are those of the derived secret.
pub(super) const fn derive_row(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    keys: &'static [CK_KEY_TYPE],
    param: ParamShape,
    derive: Derive,
) -> Mechanism {
    Mechanism {
        min_key: 1,
        max_key: super::MAX_SECRET_LEN as CK_ULONG,
        key_types: keys,
        param,
        derive: Some(derive),
        ..row(ty, name, CKF_DERIVE)
    }
}
