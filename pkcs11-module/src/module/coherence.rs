//! Coherence with the store and with other processes: loading a token's
//! objects, adopting writes made elsewhere (generation stamps), purging keys
//! whose deletion wait is over, logging out after a storage-key rotation,
//! and mapping store failures to `CKR_*`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;

use cryptoki_sys::*;
use ferrohsm_store::{
    AuditEvent, AuditKey, AuditObject, ObjectRecord, StorageKey, StoreError, TokenRecord,
};

use super::auditing::{result_name, unix_now};
use super::slot::{Login, Slot, Token};
use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::object::{Object, unique_id};
use crate::secret;

impl Module {
    pub(super) fn store_error(&self, what: &str, e: StoreError) -> Error {
        log!(self.log, Level::Error, "{what}: {e}");
        match e {
            StoreError::NotFound => Error::TokenNotRecognized,
            _ => Error::DeviceError,
        }
    }

    /// The error of a failed write with the storage key. When another process
    /// rotated the storage key meanwhile (ours no longer opens the token's
    /// audit root), that is not corruption: this login is over, as the next
    /// `refresh` would find, so log out and say `CKR_USER_NOT_LOGGED_IN`.
    pub(super) fn write_failed(
        &self,
        slot: &Slot,
        t: &mut Token,
        what: &str,
        e: StoreError,
    ) -> Error {
        if matches!(e, StoreError::Corrupt(_))
            && let Ok(Some(rec)) = self.store.token(slot.id)
            && self.logout_if_rotated(slot, t, &rec)
        {
            t.generation = None;
            return Error::UserNotLoggedIn;
        }
        self.store_error(what, e)
    }

    /// Makes the token cache equal to the store: public objects, and private
    /// ones too when `key` is given. Unchanged objects keep their handle and
    /// their cached key schedule; changed ones keep their handle; objects gone
    /// from the store vanish; session objects are untouched.
    pub(super) fn load_objects(
        &self,
        slot_id: CK_SLOT_ID,
        token: &mut Token,
        key: Option<&StorageKey>,
    ) -> Result<()> {
        let records: Vec<ObjectRecord> = self
            .store
            .objects(slot_id, key)
            .map_err(|e| self.store_error("loading objects", e))?;
        let mut old: HashMap<u64, Arc<Object>> = HashMap::new();
        token.objects.retain(|_, o| {
            if o.owner.is_none() {
                old.insert(o.store_id, o.clone());
                false
            } else {
                true
            }
        });
        token.handles.clear();
        token.loads += 1;
        let now = unix_now();
        for rec in &records {
            if let Some(at) = rec.delete_at() {
                // Scheduled for deletion: invisible; purged once its time came.
                if at <= now {
                    self.purge(slot_id, rec);
                }
                continue;
            }
            let obj = match old.remove(&rec.id) {
                Some(o) if o.to_record() == *rec => o,
                Some(o) => Arc::new(Object::from_record(o.handle, rec)),
                None => Arc::new(Object::from_record(self.new_handle(), rec)),
            };
            if !rec.private {
                token.handles.insert(rec.id, obj.handle);
            }
            token.objects.insert(obj.handle, obj);
        }
        Ok(())
    }

    /// Deletes for good a key whose deletion waiting period has passed, and
    /// records it. A failure is logged; the key stays invisible and the next
    /// load tries again.
    pub(super) fn purge(&self, slot_id: CK_SLOT_ID, rec: &ObjectRecord) {
        let r = self
            .store
            .delete_object(slot_id, rec.id)
            .map_err(|e| self.store_error("purging a key after its waiting period", e));
        self.purged(slot_id, rec.id, AuditObject::of_record(rec), &r);
    }

    /// Purges, in every token and without the storage key, the keys whose
    /// deletion waiting period is over (at `C_Initialize`, the "next open";
    /// a login purges too, from the sealed records themselves).
    pub(super) fn purge_due(&self) {
        let now = unix_now();
        let slots: Vec<CK_SLOT_ID> = self
            .slots
            .read()
            .iter()
            .filter(|s| s.token.read().record.is_some())
            .map(|s| s.id)
            .collect();
        for slot_id in slots {
            let purged = match self.store.purge_due(slot_id, now) {
                Ok(p) => p,
                Err(e) => {
                    log!(
                        self.log,
                        Level::Error,
                        "slot {slot_id}: purging keys after their waiting period: {e}"
                    );
                    continue;
                }
            };
            for id in purged {
                // Without the key, the object is named by its unique id only;
                // its earlier events carry the same id with its label.
                let object = AuditObject {
                    unique_id: Some(unique_id(id)),
                    ..Default::default()
                };
                self.purged(slot_id, id, object, &Ok(()));
            }
        }
    }

    /// Records the purge of object `id` (`r`: its outcome).
    pub(super) fn purged(&self, slot_id: CK_SLOT_ID, id: u64, object: AuditObject, r: &Result<()>) {
        let mut e = AuditEvent::now("purge", &result_name(r));
        e.object = Some(object);
        e.detail = Some("deletion waiting period over: key deleted for good".into());
        self.audit.record(slot_id, e, true);
        if r.is_ok() {
            log!(
                self.log,
                Level::Info,
                "slot {slot_id}: purged object {} after its deletion waiting period",
                unique_id(id)
            );
        }
    }

    /// Logs out when the storage key held in `t` no longer opens the audit
    /// root of `rec` (the token's current record): another process rotated
    /// the storage key, so this login is over. Returns whether it did.
    pub(super) fn logout_if_rotated(&self, slot: &Slot, t: &mut Token, rec: &TokenRecord) -> bool {
        let rotated = match (&t.key, &rec.audit_root) {
            (Some(key), Some(sealed)) => AuditKey::open(sealed, key, &rec.token_id).is_err(),
            _ => false,
        };
        if rotated {
            log!(
                self.log,
                Level::Warn,
                "slot {}: the storage key was rotated by another process; logged out",
                slot.id
            );
            Self::logout_token(slot, t);
        }
        rotated
    }

    /// Brings a slot's cache up to date when the store changed behind it
    /// (another process wrote, or created a token in this slot). Costs one
    /// small file read when nothing changed.
    pub(super) fn refresh(&self, slot: &Slot) -> Result<()> {
        let stamp = slot.token.read().generation;
        let now = self
            .store
            .generation(slot.id)
            .map_err(|e| self.store_error("reading the token generation", e))?;
        if stamp == Some(now) {
            return Ok(());
        }
        let mut t = slot.token.write();
        if t.generation == Some(now) {
            return Ok(());
        }
        let rec = self
            .store
            .token(slot.id)
            .map_err(|e| self.store_error(&format!("slot {}: reading the token", slot.id), e))?;
        let same = matches!((&t.record, &rec), (Some(a), Some(b)) if a.token_id == b.token_id);
        if !same {
            if t.record.is_some() {
                log!(
                    self.log,
                    Level::Info,
                    "slot {}: token re-initialised or removed by another process",
                    slot.id
                );
            }
            Self::logout_token(slot, &mut t);
            t.objects.retain(|_, o| o.owner.is_some());
            t.handles.clear();
        }
        if let Some(r) = &rec {
            self.logout_if_rotated(slot, &mut t, r);
        }
        t.record = rec;
        if t.record.is_some() {
            // Sealed records are opened, and their objects built, in the key region.
            secret::scope(|| {
                let key = if t.login == Login::User {
                    t.key.clone()
                } else {
                    None
                };
                self.load_objects(slot.id, &mut t, key.as_ref())
            })?;
        }
        t.generation = Some(now);
        Ok(())
    }

    /// Records that this process just wrote the token: the cache stays valid
    /// if the store's generation moved by exactly our one write.
    pub(super) fn wrote(&self, slot_id: CK_SLOT_ID, t: &mut Token) {
        let before = t.generation.take();
        if let (Some(g), Ok(now)) = (before, self.store.generation(slot_id))
            && now == g + 1
        {
            t.generation = Some(now);
        }
    }

    /// Gives every token in the store a slot (tokens created by other
    /// processes appear here), refreshes slots whose token changed, and keeps
    /// one spare slot, above every used ID, for `C_InitToken`. A token that
    /// cannot be read keeps its slot (its calls fail with `CKR_DEVICE_ERROR`)
    /// and never hides the others.
    pub(super) fn adopt_tokens(&self) -> Result<()> {
        let ids = self
            .store
            .slot_ids()
            .map_err(|e| self.store_error("listing tokens", e))?;
        {
            let mut slots = self.slots.write();
            for id in &ids {
                let id = *id;
                if !slots.iter().any(|s| s.id == id) {
                    slots.push(Arc::new(Slot::new(id)));
                }
            }
            slots.sort_by_key(|s| s.id);
        }
        let all: Vec<Arc<Slot>> = self.slots.read().clone();
        for slot in &all {
            if ids.contains(&slot.id) {
                // A damaged token was logged by `refresh`; the others go on.
                let _ = self.refresh(slot);
            }
        }
        self.add_spares(&mut self.slots.write(), &ids);
        Ok(())
    }

    /// Appends uninitialised slots until the top one is a spare above every
    /// slot ID the store uses and the configured slot count is reached.
    pub(super) fn add_spares(&self, slots: &mut Vec<Arc<Slot>>, used: &[u64]) {
        loop {
            let top_is_spare = slots
                .last()
                .is_some_and(|s| !used.contains(&s.id) && s.token.read().record.is_none());
            if top_is_spare && slots.len() as u64 >= self.config.slots {
                return;
            }
            let next = slots.last().map_or(0, |s| s.id + 1);
            slots.push(Arc::new(Slot::new(next)));
        }
    }
}
