//! The sealed manifest (rollback and tamper detection, see `sled_store`):
//! its entries and record hashes, loading and staging it, and the `p`
//! markers of changes made without the storage key, folded into it at the
//! next write with the key.
//!
//! Two formats. Version 1 (written before issue 18) is one sealed list of
//! every entry under `m`, rewritten by every keyed write: O(objects) per
//! write. Version 2 keeps one entry per object in the clear under `e` id and
//! a small sealed head under `m` (sequence, entry count and a keyed
//! multiset hash of the entries, MSet-XOR-Hash of Clarke et al., 2003: the
//! XOR of HMAC-SHA256 over each entry under a key derived from the storage
//! key), so a keyed write reads and rewrites O(1) of it. Reads take both;
//! the first keyed write to a version 1 token converts it, in the same
//! atomic batch as the write.
#![forbid(unsafe_code)]

use std::collections::{BTreeMap, BTreeSet};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::record::{StoreError, TokenRecord};
use crate::seal::{StorageKey, open_record, seal_record};

use super::layout::{
    Envelope, K_MANIFEST, P_ENTRY, P_PENDING, corrupt, decode, encode, id_key, key_id,
    load_envelope, map_sled, record_aad,
};

const MANIFEST_AAD: &[u8] = b"ferrohsm/manifest/v1";
const HEAD_AAD: &[u8] = b"ferrohsm/manifest/v2";
const ENTRY_MAC_LABEL: &[u8] = b"ferrohsm/manifest/v2/entry-mac";

type HmacSha256 = Hmac<Sha256>;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ManifestEntry {
    pub(super) version: u64,
    pub(super) private: bool,
    pub(super) hash: [u8; 16],
}

/// The whole manifest, as reads check records against it (and as version 1
/// stores it).
#[derive(Default, Serialize, Deserialize)]
pub(super) struct Manifest {
    /// Highest sequence number written with the key (guards against a
    /// rolled-back `s`).
    pub(super) seq: u64,
    pub(super) entries: BTreeMap<u64, ManifestEntry>,
}

/// The sealed head of a version 2 manifest (value of `m`).
#[derive(Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub(super) struct ManifestHead {
    /// As [`Manifest::seq`].
    pub(super) seq: u64,
    /// Number of `e` entries.
    pub(super) count: u64,
    /// XOR of [`EntryMac::mac`] over every `e` entry.
    pub(super) acc: [u8; 32],
}

pub(super) fn manifest_aad(token_id: &[u8; 16]) -> Vec<u8> {
    [MANIFEST_AAD, token_id.as_slice()].concat()
}

fn head_aad(token_id: &[u8; 16]) -> Vec<u8> {
    [HEAD_AAD, token_id.as_slice()].concat()
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

/// The keyed hash of one manifest entry (its term in [`ManifestHead::acc`]).
struct EntryMac(HmacSha256);

impl EntryMac {
    fn new(key: &StorageKey, token_id: &[u8; 16]) -> EntryMac {
        let mut kdf = <HmacSha256 as KeyInit>::new_from_slice(key.bytes())
            .expect("HMAC takes keys of any length");
        kdf.update(ENTRY_MAC_LABEL);
        kdf.update(token_id);
        let sub: Zeroizing<[u8; 32]> = Zeroizing::new(kdf.finalize().into_bytes().into());
        EntryMac(
            <HmacSha256 as KeyInit>::new_from_slice(sub.as_slice())
                .expect("HMAC takes keys of any length"),
        )
    }

    fn mac(&self, id: u64, e: &ManifestEntry) -> [u8; 32] {
        let mut m = self.0.clone();
        m.update(&id.to_be_bytes());
        m.update(&e.version.to_be_bytes());
        m.update(&[u8::from(e.private)]);
        m.update(&e.hash);
        m.finalize().into_bytes().into()
    }

    fn toggle(&self, acc: &mut [u8; 32], id: u64, e: &ManifestEntry) {
        for (a, b) in acc.iter_mut().zip(self.mac(id, e)) {
            *a ^= b;
        }
    }
}

/// What `m` holds.
enum Stored {
    None,
    V1(Manifest),
    V2(ManifestHead),
}

fn load_stored(db: &sled::Db, token: &TokenRecord, key: &StorageKey) -> Result<Stored, StoreError> {
    let Some(sealed) = db.get(K_MANIFEST).map_err(map_sled)? else {
        return Ok(Stored::None);
    };
    if let Ok(plain) = open_record(key, &head_aad(&token.token_id), &sealed) {
        return decode(&plain, "manifest head").map(Stored::V2);
    }
    let plain = open_record(key, &manifest_aad(&token.token_id), &sealed)
        .map_err(|_| corrupt("manifest fails authentication (altered, or wrong key)"))?;
    decode(&plain, "manifest").map(Stored::V1)
}

fn load_entry(db: &sled::Db, id: u64) -> Result<Option<ManifestEntry>, StoreError> {
    match db.get(id_key(P_ENTRY, id)).map_err(map_sled)? {
        None => Ok(None),
        Some(v) => decode(&v, &format!("manifest entry {id}")).map(Some),
    }
}

/// The whole manifest, checked: a version 2 manifest's entries must add up
/// to its sealed head.
pub(super) fn load_manifest(
    db: &sled::Db,
    token: &TokenRecord,
    key: &StorageKey,
) -> Result<Manifest, StoreError> {
    let head = match load_stored(db, token, key)? {
        Stored::V1(m) => return Ok(m),
        Stored::None => ManifestHead::default(),
        Stored::V2(h) => h,
    };
    let macs = EntryMac::new(key, &token.token_id);
    let mut m = Manifest {
        seq: head.seq,
        entries: BTreeMap::new(),
    };
    let mut acc = [0u8; 32];
    for kv in db.scan_prefix([P_ENTRY]) {
        let (k, v) = kv.map_err(map_sled)?;
        if k.len() != 9 {
            return Err(corrupt("malformed manifest entry key"));
        }
        let id = key_id(&k)?;
        let e: ManifestEntry = decode(&v, &format!("manifest entry {id}"))?;
        macs.toggle(&mut acc, id, &e);
        m.entries.insert(id, e);
    }
    if m.entries.len() as u64 != head.count || acc != head.acc {
        return Err(corrupt(
            "manifest entries do not match the sealed manifest \
             (altered, added, removed or rolled back)",
        ));
    }
    Ok(m)
}

/// A keyed write's view of the manifest: the head, and the entries this
/// write changes (read from the database on first use), staged at the end.
pub(super) struct ManifestWriter {
    head: ManifestHead,
    macs: EntryMac,
    changed: BTreeMap<u64, Option<ManifestEntry>>,
    /// Converting from version 1 (or starting afresh): every `e` key not in
    /// `changed` is removed when staged.
    rewrite_all: bool,
}

impl ManifestWriter {
    /// Reads the head (O(1)); a version 1 manifest is converted (O(objects),
    /// once).
    pub(super) fn open(
        db: &sled::Db,
        token: &TokenRecord,
        key: &StorageKey,
    ) -> Result<ManifestWriter, StoreError> {
        let macs = EntryMac::new(key, &token.token_id);
        match load_stored(db, token, key)? {
            Stored::V2(head) => Ok(ManifestWriter {
                head,
                macs,
                changed: BTreeMap::new(),
                rewrite_all: false,
            }),
            Stored::None => Ok(ManifestWriter {
                head: ManifestHead::default(),
                macs,
                changed: BTreeMap::new(),
                rewrite_all: false,
            }),
            Stored::V1(m) => {
                let mut w = ManifestWriter::fresh(key, token);
                w.head.seq = m.seq;
                for (id, e) in m.entries {
                    w.set(db, id, Some(e))?;
                }
                Ok(w)
            }
        }
    }

    /// An empty manifest replacing whatever is stored (key rotation).
    pub(super) fn fresh(key: &StorageKey, token: &TokenRecord) -> ManifestWriter {
        ManifestWriter {
            head: ManifestHead::default(),
            macs: EntryMac::new(key, &token.token_id),
            changed: BTreeMap::new(),
            rewrite_all: true,
        }
    }

    /// Highest sequence number written with the key.
    pub(super) fn seq(&self) -> u64 {
        self.head.seq
    }

    fn get(&self, db: &sled::Db, id: u64) -> Result<Option<ManifestEntry>, StoreError> {
        match self.changed.get(&id) {
            Some(e) => Ok(*e),
            None if self.rewrite_all => Ok(None),
            None => load_entry(db, id),
        }
    }

    /// Sets (or with `None` removes) the entry of `id`.
    pub(super) fn set(
        &mut self,
        db: &sled::Db,
        id: u64,
        entry: Option<ManifestEntry>,
    ) -> Result<(), StoreError> {
        if let Some(old) = self.get(db, id)? {
            self.macs.toggle(&mut self.head.acc, id, &old);
            self.head.count = self.head.count.wrapping_sub(1);
        }
        if let Some(new) = &entry {
            self.macs.toggle(&mut self.head.acc, id, new);
            self.head.count = self.head.count.wrapping_add(1);
        }
        self.changed.insert(id, entry);
        Ok(())
    }

    /// Brings the manifest up to date with the changes made without the key
    /// and clears their markers (in `batch`).
    pub(super) fn fold_pending(
        &mut self,
        db: &sled::Db,
        token: &TokenRecord,
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        for id in pending_ids(db)? {
            match load_envelope(db, id)? {
                None => self.set(db, id, None)?,
                // Never adopt a private record: it must match its entry as it
                // is (checked on read), whatever the marker says.
                Some(env) if env.private => {}
                Some(env) => {
                    let entry = ManifestEntry {
                        version: env.version,
                        private: false,
                        hash: record_hash(&token.token_id, id, &env),
                    };
                    self.set(db, id, Some(entry))?;
                }
            }
            batch.remove(&id_key(P_PENDING, id)[..]);
        }
        Ok(())
    }

    /// Adds the changed entries and the sealed head at `seq` to `batch`.
    pub(super) fn stage(
        mut self,
        db: &sled::Db,
        token: &TokenRecord,
        key: &StorageKey,
        seq: u64,
        batch: &mut sled::Batch,
    ) -> Result<(), StoreError> {
        if self.rewrite_all {
            for kv in db.scan_prefix([P_ENTRY]) {
                let (k, _) = kv.map_err(map_sled)?;
                batch.remove(k);
            }
        }
        for (id, e) in &self.changed {
            let k = id_key(P_ENTRY, *id);
            match e {
                Some(e) => batch.insert(&k[..], encode(e)?),
                None => batch.remove(&k[..]),
            }
        }
        self.head.seq = seq;
        let plain = Zeroizing::new(encode(&self.head)?);
        let sealed = seal_record(key, &head_aad(&token.token_id), &plain)
            .map_err(|e| StoreError::Io(format!("sealing manifest: {e}")))?;
        batch.insert(K_MANIFEST, sealed);
        Ok(())
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
