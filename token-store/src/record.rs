//! The records a token is made of (its `TokenRecord`, its objects'
//! `ObjectRecord`s and their `AttrValue`s), the key policy, and the store's
//! error type: plain data, shared by every backend, the audit log and backups.
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::seal::PinWrap;

/// Vendor attribute (`CKA_VENDOR_DEFINED | 0x4648_0001`, "FH") holding the
/// Unix time after which a destroyed key is purged: a key carrying it is
/// scheduled for deletion, unusable and invisible to applications (see the
/// deletion waiting period in the README). Stored only inside sealed records.
pub const CKA_FERROHSM_DELETE_AT: u64 = 0x8000_0000 | 0x4648_0001;

/// The key policy of a token, fixed at initialisation (see DESIGN.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum KeyPolicy {
    /// Non-exportable by default: every private/secret key is sensitive.
    Hsm,
    /// The PKCS#11 specification's own permissive defaults.
    Spec,
}

impl KeyPolicy {
    /// Parses the names used in the environment and config (`hsm`, `spec`).
    pub fn parse(s: &str) -> Option<KeyPolicy> {
        match s.trim().to_ascii_lowercase().as_str() {
            "hsm" => Some(KeyPolicy::Hsm),
            "spec" => Some(KeyPolicy::Spec),
            _ => None,
        }
    }

    /// The name of the policy as written in config files and logs.
    pub fn name(self) -> &'static str {
        match self {
            KeyPolicy::Hsm => "hsm",
            KeyPolicy::Spec => "spec",
        }
    }
}

/// One initialised token: identity, policy, PIN wraps and lockout counters.
///
/// Contains no secret in the clear: the storage key appears only wrapped.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Slot ID under which the token is presented; stable across restarts.
    pub slot_id: u64,
    /// Random identity of this incarnation of the token (changes on re-init);
    /// bound into every sealed record as associated data.
    pub token_id: [u8; 16],
    /// `CK_TOKEN_INFO.label`, space padded.
    pub label: [u8; 32],
    /// `CK_TOKEN_INFO.serialNumber`, space padded.
    pub serial: [u8; 16],
    /// The token's key policy.
    pub policy: KeyPolicy,
    /// The storage key wrapped under the SO PIN.
    pub so_pin: PinWrap,
    /// The storage key wrapped under the user PIN, once `C_InitPIN` has run.
    pub user_pin: Option<PinWrap>,
    /// Consecutive failed SO logins since the last success.
    pub so_failures: u32,
    /// Consecutive failed user logins since the last success.
    pub user_failures: u32,
    /// The root of the audit chain, sealed under the storage key
    /// ([`AuditKey::seal`](crate::seal::AuditKey::seal)); `None` for tokens made before audit logs existed
    /// (the module starts their chain at the next login).
    pub audit_root: Option<Vec<u8>>,
}

/// An attribute value in its typed form; encoded to C bytes only at the boundary.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, Zeroize, ZeroizeOnDrop)]
pub enum AttrValue {
    /// `CK_BBOOL`.
    Bool(bool),
    /// `CK_ULONG` (and the ULONG-typed enumerations: class, key type, …).
    Ulong(u64),
    /// Byte strings: labels, IDs, DER values, key material.
    Bytes(Vec<u8>),
    /// `CK_MECHANISM_TYPE_PTR` arrays (`CKA_ALLOWED_MECHANISMS`).
    Mechanisms(Vec<u64>),
}

impl std::fmt::Debug for AttrValue {
    // Values may be key material: Debug never shows bytes.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttrValue::Bool(b) => write!(f, "Bool({b})"),
            AttrValue::Ulong(v) => write!(f, "Ulong({v:#x})"),
            AttrValue::Bytes(b) => write!(f, "Bytes(<{} bytes>)", b.len()),
            AttrValue::Mechanisms(m) => write!(f, "Mechanisms({m:x?})"),
        }
    }
}

/// A token object as stored: its store id, whether it is private, its attributes.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ObjectRecord {
    /// Store-assigned identifier, unique within the token, never reused.
    pub id: u64,
    /// `CKA_PRIVATE`: private records are readable only with the storage key.
    pub private: bool,
    /// Attributes, sorted by type.
    pub attrs: Vec<(u64, AttrValue)>,
}

impl ObjectRecord {
    /// The value of attribute `ty`, if the record has it.
    pub fn get(&self, ty: u64) -> Option<&AttrValue> {
        self.attrs.iter().find(|(t, _)| *t == ty).map(|(_, v)| v)
    }

    /// When this object, scheduled for deletion, is to be purged (Unix
    /// seconds; [`CKA_FERROHSM_DELETE_AT`]); `None` when it is not scheduled.
    pub fn delete_at(&self) -> Option<u64> {
        match self.get(CKA_FERROHSM_DELETE_AT) {
            Some(AttrValue::Ulong(at)) => Some(*at),
            _ => None,
        }
    }
}

/// Why a store operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StoreError {
    /// The backend could not read or write (I/O, lock deadline passed).
    Io(String),
    /// A record failed its integrity check or could not be decoded.
    Corrupt(String),
    /// The token or object does not exist.
    NotFound,
    /// A private record was written or read without the storage key.
    KeyRequired,
}

impl std::fmt::Display for StoreError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StoreError::Io(m) => write!(f, "store I/O error: {m}"),
            StoreError::Corrupt(m) => write!(f, "store record corrupt: {m}"),
            StoreError::NotFound => write!(f, "no such token or object"),
            StoreError::KeyRequired => write!(f, "private record needs the storage key"),
        }
    }
}

impl std::error::Error for StoreError {}
