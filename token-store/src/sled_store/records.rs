//! Object records in and out: staging the writes of a batch (sealed or in
//! the clear, index entries, manifest entries or "changed without the key"
//! markers) and reading a token's records back, checked against the
//! manifest when the storage key is given.
#![forbid(unsafe_code)]

use std::collections::BTreeSet;

use zeroize::Zeroizing;

use crate::attr::{CKA_CLASS, CKA_VALUE, CKO_PRIVATE_KEY, CKO_SECRET_KEY};
use crate::record::{AttrValue, ObjectRecord, StoreError, TokenRecord};
use crate::seal::{StorageKey, open_record, seal_record};

use super::index::{index_keys, remove_index};
use super::layout::{
    Envelope, P_DUE, P_OBJECT, P_PENDING, P_REVERSE, corrupt, decode, encode, id_key, key_id,
    load_token, map_sled, no_record, record_aad,
};
use super::manifest::{ManifestEntry, ManifestWriter, load_manifest, pending_ids, record_hash};

/// True when a public record would carry secret key material in the clear.
pub(super) fn carries_secret(obj: &ObjectRecord) -> bool {
    let class = obj.attrs.iter().find(|(t, _)| *t == CKA_CLASS);
    let secret_class = matches!(
        class,
        Some((_, AttrValue::Ulong(CKO_SECRET_KEY | CKO_PRIVATE_KEY)))
    );
    secret_class && obj.attrs.iter().any(|(t, _)| *t == CKA_VALUE)
}

/// Adds the writes of `objects` at version `seq` to `batch`: records (sealed
/// when private), public-attribute index, and either manifest entries (with
/// the key) or "changed without the key" markers.
pub(super) fn stage_objects(
    db: &sled::Db,
    token: &TokenRecord,
    objects: &[ObjectRecord],
    key: Option<&StorageKey>,
    mut manifest: Option<&mut ManifestWriter>,
    seq: u64,
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    for obj in objects {
        let plain = Zeroizing::new(encode(obj)?);
        let body = if obj.private {
            let k = key.ok_or(StoreError::KeyRequired)?;
            seal_record(k, &record_aad(&token.token_id, obj.id, seq), &plain)
                .map_err(|e| StoreError::Io(format!("sealing record: {e}")))?
        } else {
            plain.to_vec()
        };
        let env = Envelope {
            version: seq,
            private: obj.private,
            body,
        };
        remove_index(db, obj.id, batch)?;
        match obj.delete_at() {
            Some(at) => batch.insert(&id_key(P_DUE, obj.id)[..], &at.to_be_bytes()[..]),
            None => batch.remove(&id_key(P_DUE, obj.id)[..]),
        }
        if !obj.private {
            let keys = index_keys(obj)?;
            for k in &keys {
                batch.insert(k.as_slice(), &[][..]);
            }
            if !keys.is_empty() {
                batch.insert(&id_key(P_REVERSE, obj.id)[..], encode(&keys)?);
            }
        }
        match manifest.as_deref_mut() {
            Some(m) => {
                let entry = ManifestEntry {
                    version: seq,
                    private: obj.private,
                    hash: record_hash(&token.token_id, obj.id, &env),
                };
                m.set(db, obj.id, Some(entry))?;
                batch.remove(&id_key(P_PENDING, obj.id)[..]);
            }
            None => batch.insert(&id_key(P_PENDING, obj.id)[..], &[][..]),
        }
        batch.insert(&id_key(P_OBJECT, obj.id)[..], encode(&env)?);
    }
    Ok(())
}

pub(super) fn read_objects(
    db: &sled::Db,
    slot_id: u64,
    key: Option<&StorageKey>,
) -> Result<Vec<ObjectRecord>, StoreError> {
    let token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
    let check = match key {
        Some(k) => Some((load_manifest(db, &token, k)?, pending_ids(db)?)),
        None => None,
    };
    let mut seen = BTreeSet::new();
    let mut out = Vec::new();
    for kv in db.scan_prefix([P_OBJECT]) {
        let (k, v) = kv.map_err(map_sled)?;
        if k.len() != 9 {
            return Err(corrupt("malformed object key"));
        }
        let id = key_id(&k)?;
        seen.insert(id);
        let env: Envelope = decode(&v, &format!("object {id}"))?;
        if let Some((m, pending)) = &check {
            let entry = m.entries.get(&id);
            let must_match = env.private || !pending.contains(&id);
            if must_match {
                let expected = ManifestEntry {
                    version: env.version,
                    private: env.private,
                    hash: record_hash(&token.token_id, id, &env),
                };
                if entry != Some(&expected) {
                    return Err(corrupt(format!(
                        "object {id}: record does not match the manifest \
                         (altered, moved, swapped or rolled back)"
                    )));
                }
            }
        }
        let rec: ObjectRecord = if env.private {
            let Some(k) = key else { continue };
            let plain = open_record(k, &record_aad(&token.token_id, id, env.version), &env.body)
                .map_err(|_| corrupt(format!("object {id}: sealed record fails authentication")))?;
            decode(&plain, &format!("object {id}"))?
        } else {
            decode(&env.body, &format!("object {id}"))?
        };
        if rec.id != id || rec.private != env.private {
            return Err(corrupt(format!(
                "object {id}: record belongs elsewhere (swapped or moved)"
            )));
        }
        out.push(rec);
    }
    if let Some((m, pending)) = &check {
        for (id, e) in &m.entries {
            if !seen.contains(id) && !pending.contains(id) {
                let kind = if e.private { "private" } else { "public" };
                return Err(corrupt(format!("{kind} object {id} is missing")));
            }
        }
    }
    Ok(out)
}
