//! The few PKCS#11 numbers the store itself reads in records (to index public
//! labels and IDs, to find key material that must be sealed, to describe
//! objects in the audit log). Written once here, from the specification's
//! values in `cryptoki-sys`, so that the store's files share one copy.
#![forbid(unsafe_code)]
// CK_ULONG is u64 here but u32 on 32-bit targets: the casts are needed there.
#![allow(clippy::unnecessary_cast)]

/// `CKA_CLASS`.
pub const CKA_CLASS: u64 = cryptoki_sys::CKA_CLASS as u64;
/// `CKA_LABEL`.
pub const CKA_LABEL: u64 = cryptoki_sys::CKA_LABEL as u64;
/// `CKA_VALUE`.
pub const CKA_VALUE: u64 = cryptoki_sys::CKA_VALUE as u64;
/// `CKA_UNIQUE_ID`.
pub const CKA_UNIQUE_ID: u64 = cryptoki_sys::CKA_UNIQUE_ID as u64;
/// `CKA_KEY_TYPE`.
pub const CKA_KEY_TYPE: u64 = cryptoki_sys::CKA_KEY_TYPE as u64;
/// `CKA_ID`.
pub const CKA_ID: u64 = cryptoki_sys::CKA_ID as u64;
/// `CKO_PRIVATE_KEY`.
pub const CKO_PRIVATE_KEY: u64 = cryptoki_sys::CKO_PRIVATE_KEY as u64;
/// `CKO_SECRET_KEY`.
pub const CKO_SECRET_KEY: u64 = cryptoki_sys::CKO_SECRET_KEY as u64;
/// `CKO_PUBLIC_KEY`.
pub const CKO_PUBLIC_KEY: u64 = cryptoki_sys::CKO_PUBLIC_KEY as u64;
