//! The seam between the PKCS#11 module and the token's storage: the
//! `Store` trait, which the sled backend and the in-memory backend implement.
#![forbid(unsafe_code)]

use crate::audit::AuditEvent;
use crate::record::{ObjectRecord, StoreError, TokenRecord};
use crate::seal::{AuditKey, StorageKey};

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
    /// As [`Store::put_object`], but only into the token whose id is
    /// `token_id` (`StoreError::NotFound` if the slot now holds another: a
    /// writer that let its locks go may meet a `C_InitToken` of another
    /// process). Returns the generation this write made (see
    /// [`Store::generation`]) when the store knows it, so a cache that lets
    /// several of its writers run at once can tell its own writes from
    /// another process's; `None` when it does not.
    fn put_object_numbered(
        &self,
        slot_id: u64,
        token_id: &[u8; 16],
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<Option<u64>, StoreError>;
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
    /// or before `now` (Unix seconds; see [`CKA_FERROHSM_DELETE_AT`](crate::record::CKA_FERROHSM_DELETE_AT)), without
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
