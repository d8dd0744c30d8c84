//! FerroHSM token store: what a token is on disk (or in memory), and the seam
//! (`Store`) through which the PKCS#11 module reads and writes it.
//!
//! The module never touches files itself. It hands records to a `Store` and gets
//! records back; sealing of secret material happens on this side of the seam
//! (see `seal`), so no backend can forget it.
#![forbid(unsafe_code)]

pub mod audit;
pub mod backup;
pub mod memory;
mod private_fs;
pub mod seal;
pub mod sled_store;

use serde::{Deserialize, Serialize};
use zeroize::{Zeroize, ZeroizeOnDrop};

pub use audit::{AuditEvent, AuditLog, AuditObject, AuditOptions};
pub use backup::{BackupError, BackupOptions, BackupSummary, PinRole, pin_wrap_aad};
pub use memory::MemoryStore;
pub use seal::{
    AuditKey, KdfParams, MAX_PIN_LEN, MIN_PIN_LEN, PinWrap, SealError, StorageKey, open_record,
    seal_record,
};
pub use sled_store::{BrokenToken, SledOptions, SledStore, TokenScan};

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
    /// ([`AuditKey::seal`]); `None` for tokens made before audit logs existed
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

/// What the PKCS#11 module needs from persistent storage.
///
/// Every mutating call is durable when it returns `Ok`. Private object records
/// are sealed under the token's storage key by the implementation; public ones
/// are readable without it.
pub trait Store: Send + Sync {
    /// All initialised tokens.
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError>;
    /// The slot IDs that hold a token or the remains of one (a damaged token
    /// still occupies its slot), cheaply: without reading any token.
    fn slot_ids(&self) -> Result<Vec<u64>, StoreError> {
        Ok(self.tokens()?.iter().map(|t| t.slot_id).collect())
    }
    /// The token in `slot_id`, `None` if there is none.
    fn token(&self, slot_id: u64) -> Result<Option<TokenRecord>, StoreError> {
        Ok(self.tokens()?.into_iter().find(|t| t.slot_id == slot_id))
    }
    /// Creates a token, or replaces one with the same slot ID, removing all its
    /// objects: the whole of `C_InitToken`, atomically.
    fn init_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Rewrites a token's record (PIN wraps, counters) without touching objects.
    fn update_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    /// Reads the token's record, applies `edit` and writes it back, as one
    /// step that no other process can interleave with (the failed-login
    /// counters of several processes add up). Returns the record written.
    fn modify_token(
        &self,
        slot_id: u64,
        edit: &mut dyn FnMut(&mut TokenRecord),
    ) -> Result<TokenRecord, StoreError>;
    /// The objects of a token: public ones always, private ones only with `key`.
    fn objects(
        &self,
        slot_id: u64,
        key: Option<&StorageKey>,
    ) -> Result<Vec<ObjectRecord>, StoreError>;
    /// Writes (creates or replaces) an object; private objects need `key`. A
    /// public record carrying a secret or private key's `CKA_VALUE` is refused
    /// (`KeyRequired`): key material is only ever stored sealed.
    fn put_object(
        &self,
        slot_id: u64,
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<(), StoreError>;
    /// Deletes an object; deleting a missing object is not an error.
    fn delete_object(&self, slot_id: u64, id: u64) -> Result<(), StoreError>;
    /// Lets go of any database or lock kept open between calls (called
    /// before `fork()`, so that a child never inherits one).
    fn release(&self) {}
    /// A stamp that changes whenever anything in the token changes, so a cache
    /// can tell cheaply whether another process wrote. Each mutating call that
    /// changes something raises it by exactly one, so a writer that sees
    /// `before + 1` after its own write knows nobody else wrote in between.
    fn generation(&self, slot_id: u64) -> Result<u64, StoreError>;
    /// Starts the token's audit chain under `root` (after `init_token`, or
    /// for a token that has none yet); an existing log is set aside, never
    /// deleted.
    fn start_audit(&self, slot_id: u64, root: &AuditKey) -> Result<(), StoreError>;
    /// Whether the token's audit chain has been started.
    fn audit_started(&self, slot_id: u64) -> bool;
    /// Appends events to the token's audit log; durable when it returns `Ok`.
    fn audit(&self, slot_id: u64, events: &[AuditEvent]) -> Result<(), StoreError>;
    /// Deletes for good the objects whose deletion waiting period ended at
    /// or before `now` (Unix seconds; see [`CKA_FERROHSM_DELETE_AT`]), without
    /// the storage key, and returns their ids. The schedule is kept beside the
    /// sealed records for this (a time and an id, nothing else), so a token
    /// nobody logs in to still loses its expired keys at the next open.
    fn purge_due(&self, slot_id: u64, now: u64) -> Result<Vec<u64>, StoreError>;
    /// Storage-key rotation: re-seals every record of the token under `new`
    /// and applies `edit` to the token record (new PIN wraps, re-sealed audit
    /// root), all in one atomic, durable step, so a crash leaves the token
    /// wholly under `old` or wholly under `new`. `old` must be the current
    /// key (checked against the records). When `edit` returns false (e.g. it
    /// finds another token than it expected) nothing is written and the
    /// result is `StoreError::NotFound`.
    fn rekey(
        &self,
        slot_id: u64,
        old: &StorageKey,
        new: &StorageKey,
        edit: &mut dyn FnMut(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, StoreError>;
}
