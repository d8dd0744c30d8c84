//! The sealed manifest (rollback and tamper detection, see `sled_store`):
//! its entries and record hashes, loading and staging it, and the `p`
//! markers of changes made without the storage key, folded into it at the
//! next write with the key.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::record::{StoreError, TokenRecord};
use crate::seal::{StorageKey, open_record, seal_record};

use super::layout::{
    Envelope, K_MANIFEST, P_PENDING, corrupt, decode, encode, id_key, key_id, load_envelope,
    map_sled, record_aad,
};

const MANIFEST_AAD: &[u8] = b"ferrohsm/manifest/v1";

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ManifestEntry {
    pub(super) version: u64,
    pub(super) private: bool,
    pub(super) hash: [u8; 16],
}

#[derive(Default, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// Highest sequence number written with the key (guards against a
    /// rolled-back `s`).
    pub(super) seq: u64,
    pub(super) entries: BTreeMap<u64, ManifestEntry>,
}

pub(super) fn manifest_aad(token_id: &[u8; 16]) -> Vec<u8> {
    [MANIFEST_AAD, token_id.as_slice()].concat()
}

pub(super) fn record_hash(token_id: &[u8; 16], id: u64, env: &Envelope) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(record_aad(token_id, id, env.version));
    h.update([u8::from(env.private)]);
    h.update(&env.body);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

/// Adds the sealed manifest at `seq` to `batch`.
pub(super) fn stage_manifest(
    token: &TokenRecord,
    m: &mut Manifest,
    key: &StorageKey,
    seq: u64,
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    m.seq = seq;
    let plain = Zeroizing::new(encode(&*m)?);
    let sealed = seal_record(key, &manifest_aad(&token.token_id), &plain)
        .map_err(|e| StoreError::Io(format!("sealing manifest: {e}")))?;
    batch.insert(K_MANIFEST, sealed);
    Ok(())
}

pub(super) fn load_manifest(
    db: &sled::Db,
    token: &TokenRecord,
    key: &StorageKey,
) -> Result<Manifest, StoreError> {
    match db.get(K_MANIFEST).map_err(map_sled)? {
        None => Ok(Manifest::default()),
        Some(sealed) => {
            let plain = open_record(key, &manifest_aad(&token.token_id), &sealed)
                .map_err(|_| corrupt("manifest fails authentication (altered, or wrong key)"))?;
            decode(&plain, "manifest")
        }
    }
}

pub(super) fn pending_ids(db: &sled::Db) -> Result<BTreeSet<u64>, StoreError> {
    let mut set = BTreeSet::new();
    for kv in db.scan_prefix([P_PENDING]) {
        let (k, _) = kv.map_err(map_sled)?;
        set.insert(key_id(&k)?);
    }
    Ok(set)
}

/// Brings the manifest up to date with the changes made without the key and
/// clears their markers (in `batch`).
pub(super) fn fold_pending(
    db: &sled::Db,
    token: &TokenRecord,
    m: &mut Manifest,
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    for id in pending_ids(db)? {
        match load_envelope(db, id)? {
            None => {
                m.entries.remove(&id);
            }
            // Never adopt a private record: it must match its entry as it is
            // (checked on read), whatever the marker says.
            Some(env) if env.private => {}
            Some(env) => {
                let entry = ManifestEntry {
                    version: env.version,
                    private: false,
                    hash: record_hash(&token.token_id, id, &env),
                };
                m.entries.insert(id, entry);
            }
        }
        batch.remove(&id_key(P_PENDING, id)[..]);
    }
    Ok(())
}
