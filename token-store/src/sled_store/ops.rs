//! The [`Store`] calls of [`SledStore`], and the two it has beyond the
//! trait: `find_public` (through the index) and `put_objects` (one batch
//! for many objects).
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use crate::audit::AuditEvent;
use crate::record::{AttrValue, ObjectRecord, StoreError, TokenRecord};
use crate::seal::{AuditKey, StorageKey};
use crate::store::Store;

use super::db::SledStore;
use super::index::{INDEXED_ATTRS, index_key, remove_index};
use super::layout::{
    K_SEQ, K_TOKEN, P_DUE, P_OBJECT, P_PENDING, commit, corrupt, encode, id_key, key_id,
    load_token, map_sled, no_record, read_u64,
};
use super::manifest::{ManifestWriter, load_manifest, pending_ids};
use super::records::{carries_secret, read_objects, stage_objects};

impl SledStore {
    /// Ids of the PUBLIC objects of a token whose attribute `attr_type` (one
    /// of [`INDEXED_ATTRS`]) equals `value`, in ascending order, without
    /// reading or decrypting any record.
    ///
    /// The index is a hint, not authenticated: confirm each id against the
    /// records from [`Store::objects`]. Private objects are not indexed (their
    /// attributes are sealed); search them in memory after login. Other
    /// attribute types give `StoreError::Io("… not indexed")`.
    pub fn find_public(
        &self,
        slot_id: u64,
        attr_type: u64,
        value: &AttrValue,
    ) -> Result<Vec<u64>, StoreError> {
        if !INDEXED_ATTRS.contains(&attr_type) {
            return Err(StoreError::Io(format!(
                "attribute type {attr_type:#x} is not indexed"
            )));
        }
        let prefix = index_key(attr_type, value, None)?;
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let mut ids = Vec::new();
            for kv in db.scan_prefix(&prefix) {
                let (k, _) = kv.map_err(map_sled)?;
                if k.len() != prefix.len() + 8 {
                    return Err(corrupt(format!("token {slot_id}: index entry malformed")));
                }
                ids.push(key_id(&k)?);
            }
            Ok(ids)
        })
    }

    /// Writes several objects in one atomic, durable batch (the same as
    /// `put_object` for each, but all or nothing and much faster in bulk).
    pub fn put_objects(
        &self,
        slot_id: u64,
        objects: &[ObjectRecord],
        key: Option<&StorageKey>,
    ) -> Result<(), StoreError> {
        self.put_objects_numbered(slot_id, None, objects, key)
            .map(drop)
    }

    /// `put_objects`, into the token `token_id` only when given
    /// (`StoreError::NotFound` otherwise), returning the batch's sequence
    /// number: the generation it made.
    fn put_objects_numbered(
        &self,
        slot_id: u64,
        token_id: Option<&[u8; 16]>,
        objects: &[ObjectRecord],
        key: Option<&StorageKey>,
    ) -> Result<u64, StoreError> {
        let mut ids = BTreeSet::new();
        for o in objects {
            if !ids.insert(o.id) {
                return Err(StoreError::Io(format!("object {} given twice", o.id)));
            }
            if (o.private && key.is_none()) || (!o.private && carries_secret(o)) {
                return Err(StoreError::KeyRequired);
            }
        }
        let g = self.serial.lock();
        let applied = self.with_db_unflushed(slot_id, |db| {
            let token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            if token_id.is_some_and(|id| *id != token.token_id) {
                return Err(StoreError::NotFound);
            }
            let mut seq = read_u64(db, K_SEQ)?;
            let mut batch = sled::Batch::default();
            let mut manifest = match key {
                Some(k) => {
                    let mut m = ManifestWriter::open(db, &token, k)?;
                    seq = seq.max(m.seq());
                    m.fold_pending(db, &token, &mut batch)?;
                    Some(m)
                }
                None => None,
            };
            seq += 1;
            stage_objects(db, &token, objects, key, manifest.as_mut(), seq, &mut batch)?;
            if let (Some(m), Some(k)) = (manifest, key) {
                m.stage(db, &token, k, seq, &mut batch)?;
            }
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            db.apply_batch(batch).map_err(map_sled)?;
            Ok(seq)
        });
        drop(g);
        let (db, seq) = applied?;
        self.flush_upto(slot_id, db, seq)?;
        Ok(seq)
    }

    /// The batch of `init_token`: clears the database, writes the record.
    fn init_db(&self, slot: u64, token: &TokenRecord, floor: u64) -> Result<(), StoreError> {
        self.with_db(slot, true, |db| {
            let seq = read_u64(db, K_SEQ)?.max(floor) + 1;
            let mut batch = sled::Batch::default();
            for kv in db.iter() {
                let (k, _) = kv.map_err(map_sled)?;
                batch.remove(k);
            }
            batch.insert(K_TOKEN, encode(token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }
}

impl Store for SledStore {
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.scan_tokens()?.tokens)
    }

    fn slot_ids(&self) -> Result<Vec<u64>, StoreError> {
        self.token_dirs()
    }

    fn release(&self) {
        SledStore::release(self);
    }

    /// Reads one token's record. A database without a record (interrupted
    /// first initialisation) is reported as `Corrupt`, as `scan_tokens` does.
    fn token(&self, slot_id: u64) -> Result<Option<TokenRecord>, StoreError> {
        let _g = self.serial.lock();
        match self.with_db(slot_id, false, |db| load_token(db, slot_id)) {
            Ok(Some(t)) => Ok(Some(t)),
            Err(StoreError::NotFound) => Ok(None),
            Ok(None) => Err(no_record(slot_id)),
            Err(e) => Err(e),
        }
    }

    fn init_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let slot = token.slot_id;
        let _g = self.serial.lock();
        let dir = self.token_dir(slot);
        crate::private_fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        // A `delete_token` killed before it removed the old database.
        super::db::remove_deleted_dbs(&dir);
        // Never let a new database's counter go below what others have seen.
        let floor = self.read_generation(slot).unwrap_or(0);
        let first = self.init_db(slot, token, floor);
        if !matches!(first, Err(StoreError::Corrupt(_))) {
            return first;
        }
        // C_InitToken on a token whose database is damaged: set the damaged
        // directory aside (never delete data) and start afresh.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = self.dir.join(format!("broken-token-{slot}-{nanos}"));
        std::fs::rename(&dir, &aside).map_err(|e| {
            StoreError::Io(format!("cannot move damaged {} aside: {e}", dir.display()))
        })?;
        crate::private_fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        self.init_db(slot, token, floor)
    }

    fn update_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let slot = token.slot_id;
        let _g = self.serial.lock();
        self.with_db(slot, false, |db| {
            load_token(db, slot)?.ok_or_else(|| no_record(slot))?;
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            batch.insert(K_TOKEN, encode(token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }

    fn modify_token(
        &self,
        slot_id: u64,
        edit: &mut dyn FnMut(&mut TokenRecord),
    ) -> Result<TokenRecord, StoreError> {
        let _g = self.serial.lock();
        // The database lock excludes other processes from read to commit.
        self.with_db(slot_id, false, |db| {
            let mut token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            edit(&mut token);
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            batch.insert(K_TOKEN, encode(&token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)?;
            Ok(token)
        })
    }

    fn objects(
        &self,
        slot_id: u64,
        key: Option<&StorageKey>,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| read_objects(db, slot_id, key))
    }

    fn put_object(
        &self,
        slot_id: u64,
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<(), StoreError> {
        self.put_objects(slot_id, std::slice::from_ref(object), key)
    }

    fn put_object_numbered(
        &self,
        slot_id: u64,
        token_id: &[u8; 16],
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<Option<u64>, StoreError> {
        self.put_objects_numbered(slot_id, Some(token_id), std::slice::from_ref(object), key)
            .map(Some)
    }

    fn delete_object(&self, slot_id: u64, id: u64) -> Result<(), StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let ok = id_key(P_OBJECT, id);
            if !db.contains_key(ok).map_err(map_sled)? {
                return Ok(());
            }
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            remove_index(db, id, &mut batch)?;
            batch.remove(&ok[..]);
            batch.remove(&id_key(P_DUE, id)[..]);
            batch.insert(&id_key(P_PENDING, id)[..], &[][..]);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }

    /// Reads the token's `generation` file: no database is opened. 0 for a
    /// slot without a token.
    fn generation(&self, slot_id: u64) -> Result<u64, StoreError> {
        self.read_generation(slot_id)
    }

    fn start_audit(&self, slot_id: u64, root: &AuditKey) -> Result<(), StoreError> {
        Ok(self.audit_log(slot_id).start(root)?)
    }

    fn audit_started(&self, slot_id: u64) -> bool {
        self.audit_log(slot_id).is_started()
    }

    fn audit(&self, slot_id: u64, events: &[AuditEvent]) -> Result<(), StoreError> {
        Ok(self.audit_log(slot_id).append(events)?)
    }

    fn rekey(
        &self,
        slot_id: u64,
        old: &StorageKey,
        new: &StorageKey,
        edit: &mut dyn FnMut(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            let mut token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            // Reading with `old` checks every record against the manifest,
            // so nothing damaged is re-sealed as if it were sound.
            let objects = read_objects(db, slot_id, Some(old))?;
            if let Some(root) = &token.audit_root {
                AuditKey::open(root, old, &token.token_id).map_err(|_| {
                    corrupt("rotation: the old storage key does not open the audit root")
                })?;
            }
            let old_manifest = load_manifest(db, &token, old)?;
            let seq = read_u64(db, K_SEQ)?.max(old_manifest.seq) + 1;
            if !edit(&mut token) {
                return Err(StoreError::NotFound);
            }
            let mut batch = sled::Batch::default();
            for id in pending_ids(db)? {
                batch.remove(&id_key(P_PENDING, id)[..]);
            }
            let mut manifest = ManifestWriter::fresh(new, &token);
            stage_objects(
                db,
                &token,
                &objects,
                Some(new),
                Some(&mut manifest),
                seq,
                &mut batch,
            )?;
            manifest.stage(db, &token, new, seq, &mut batch)?;
            batch.insert(K_TOKEN, encode(&token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)?;
            Ok(token)
        })
    }

    fn purge_due(&self, slot_id: u64, now: u64) -> Result<Vec<u64>, StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let mut due = Vec::new();
            for kv in db.scan_prefix([P_DUE]) {
                let (k, v) = kv.map_err(map_sled)?;
                let at: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    corrupt(format!("token {slot_id}: deletion schedule malformed"))
                })?;
                if u64::from_be_bytes(at) <= now {
                    due.push(key_id(&k)?);
                }
            }
            if due.is_empty() {
                return Ok(due);
            }
            // As `delete_object` (without the key): the manifest learns of it
            // through the markers at the next write with the key.
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            for id in &due {
                remove_index(db, *id, &mut batch)?;
                batch.remove(&id_key(P_OBJECT, *id)[..]);
                batch.remove(&id_key(P_DUE, *id)[..]);
                batch.insert(&id_key(P_PENDING, *id)[..], &[][..]);
            }
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)?;
            Ok(due)
        })
    }
}
