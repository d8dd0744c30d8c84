//! In-memory `Store`: ephemeral tokens, unit tests and the reference model for
//! model checks of the persistent stores.

use std::collections::BTreeMap;

use parking_lot::Mutex;

use crate::audit::AuditEvent;
use crate::record::{AttrValue, CKA_FERROHSM_DELETE_AT, ObjectRecord, StoreError, TokenRecord};
use crate::seal::{AuditKey, StorageKey};
use crate::store::Store;

#[derive(Default)]
struct TokenData {
    record: Option<TokenRecord>,
    objects: BTreeMap<u64, ObjectRecord>,
    generation: u64,
    audit: Option<Vec<AuditEvent>>,
}

/// A store that lives as long as the value; nothing reaches the disk.
#[derive(Default)]
pub struct MemoryStore {
    tokens: Mutex<BTreeMap<u64, TokenData>>,
}

impl MemoryStore {
    /// An empty store with no tokens.
    pub fn new() -> Self {
        Self::default()
    }

    /// The audit events recorded for a token (what a log file would hold).
    pub fn audit_events(&self, slot_id: u64) -> Vec<AuditEvent> {
        self.tokens
            .lock()
            .get(&slot_id)
            .and_then(|t| t.audit.clone())
            .unwrap_or_default()
    }

    /// Writes an object (into the token `token_id` only, when given) and
    /// returns the generation the write made.
    fn put(
        &self,
        slot_id: u64,
        token_id: Option<&[u8; 16]>,
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        if object.private && key.is_none() {
            return Err(StoreError::KeyRequired);
        }
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        if let Some(id) = token_id
            && data.record.as_ref().map(|r| &r.token_id) != Some(id)
        {
            return Err(StoreError::NotFound);
        }
        data.objects.insert(object.id, object.clone());
        data.generation += 1;
        Ok(data.generation)
    }
}

impl Store for MemoryStore {
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self
            .tokens
            .lock()
            .values()
            .filter_map(|t| t.record.clone())
            .collect())
    }

    fn init_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.entry(token.slot_id).or_default();
        data.record = Some(token.clone());
        data.objects.clear();
        data.audit = None;
        data.generation += 1;
        Ok(())
    }

    fn update_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&token.slot_id).ok_or(StoreError::NotFound)?;
        data.record = Some(token.clone());
        data.generation += 1;
        Ok(())
    }

    fn modify_token(
        &self,
        slot_id: u64,
        edit: &mut dyn FnMut(&mut TokenRecord),
    ) -> Result<TokenRecord, StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        let rec = data.record.as_mut().ok_or(StoreError::NotFound)?;
        edit(rec);
        data.generation += 1;
        Ok(rec.clone())
    }

    fn objects(
        &self,
        slot_id: u64,
        key: Option<&StorageKey>,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        let tokens = self.tokens.lock();
        let data = tokens.get(&slot_id).ok_or(StoreError::NotFound)?;
        Ok(data
            .objects
            .values()
            .filter(|o| !o.private || key.is_some())
            .cloned()
            .collect())
    }

    fn put_object(
        &self,
        slot_id: u64,
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<(), StoreError> {
        self.put(slot_id, None, object, key).map(drop)
    }

    fn put_object_numbered(
        &self,
        slot_id: u64,
        token_id: &[u8; 16],
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<Option<u64>, StoreError> {
        self.put(slot_id, Some(token_id), object, key).map(Some)
    }

    fn delete_object(&self, slot_id: u64, id: u64) -> Result<(), StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        if data.objects.remove(&id).is_some() {
            data.generation += 1;
        }
        Ok(())
    }

    fn generation(&self, slot_id: u64) -> Result<u64, StoreError> {
        let tokens = self.tokens.lock();
        Ok(tokens.get(&slot_id).map_or(0, |t| t.generation))
    }

    fn start_audit(&self, slot_id: u64, _root: &AuditKey) -> Result<(), StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        data.audit = Some(Vec::new());
        Ok(())
    }

    fn audit_started(&self, slot_id: u64) -> bool {
        self.tokens
            .lock()
            .get(&slot_id)
            .is_some_and(|t| t.audit.is_some())
    }

    fn audit(&self, slot_id: u64, events: &[AuditEvent]) -> Result<(), StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        data.audit
            .as_mut()
            .ok_or_else(|| StoreError::Io("audit log not started".into()))?
            .extend_from_slice(events);
        Ok(())
    }

    fn rekey(
        &self,
        slot_id: u64,
        _old: &StorageKey,
        _new: &StorageKey,
        edit: &mut dyn FnMut(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, StoreError> {
        // Nothing is sealed in memory: only the record changes.
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        let mut rec = data.record.clone().ok_or(StoreError::NotFound)?;
        if !edit(&mut rec) {
            return Err(StoreError::NotFound);
        }
        data.record = Some(rec.clone());
        data.generation += 1;
        Ok(rec)
    }

    fn purge_due(&self, slot_id: u64, now: u64) -> Result<Vec<u64>, StoreError> {
        let mut tokens = self.tokens.lock();
        let data = tokens.get_mut(&slot_id).ok_or(StoreError::NotFound)?;
        let due: Vec<u64> = data
            .objects
            .values()
            .filter(|o| {
                o.attrs.iter().any(|(t, v)| {
                    *t == CKA_FERROHSM_DELETE_AT && matches!(v, AttrValue::Ulong(at) if *at <= now)
                })
            })
            .map(|o| o.id)
            .collect();
        for id in &due {
            data.objects.remove(id);
        }
        if !due.is_empty() {
            data.generation += 1;
        }
        Ok(due)
    }
}
