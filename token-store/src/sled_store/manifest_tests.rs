//! The version 2 manifest: conversion from version 1, and the tampering
//! its per-object entries must not hide.

use std::time::Duration;

use crate::record::{AttrValue, KeyPolicy, ObjectRecord, StoreError, TokenRecord};
use crate::seal::{KdfParams, PinWrap, StorageKey, open_record, seal_record};
use crate::store::Store;

use super::db::{SledOptions, SledStore};
use super::layout::{K_MANIFEST, P_ENTRY, encode, id_key};
use super::manifest::{ManifestEntry, load_manifest, manifest_aad};

const CHEAP: KdfParams = KdfParams {
    memory_kib: 64,
    passes: 1,
    lanes: 1,
};

fn setup() -> (tempfile::TempDir, SledStore, StorageKey, TokenRecord) {
    let d = tempfile::tempdir().unwrap();
    let options = SledOptions {
        linger: Duration::ZERO,
        ..SledOptions::default()
    };
    let s = SledStore::open(d.path(), options).unwrap();
    let key = StorageKey::generate().unwrap();
    let t = TokenRecord {
        slot_id: 1,
        token_id: [9; 16],
        label: [b' '; 32],
        serial: [b' '; 16],
        policy: KeyPolicy::Hsm,
        so_pin: PinWrap::seal(b"so", &key, CHEAP, b"so").unwrap(),
        user_pin: None,
        so_failures: 0,
        user_failures: 0,
        audit_root: None,
    };
    s.init_token(&t).unwrap();
    for id in 1..=4 {
        s.put_object(1, &obj(id, id % 2 == 0, "one"), Some(&key))
            .unwrap();
    }
    (d, s, key, t)
}

fn obj(id: u64, private: bool, label: &str) -> ObjectRecord {
    ObjectRecord {
        id,
        private,
        attrs: vec![
            (0x0, AttrValue::Ulong(0)),
            (0x3, AttrValue::Bytes(label.as_bytes().to_vec())),
        ],
    }
}

fn is_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
}

/// Rewrites the token's manifest in the version 1 format (one sealed list).
fn downgrade(s: &SledStore, key: &StorageKey, t: &TokenRecord) {
    s.with_db(1, false, |db| {
        let m = load_manifest(db, t, key)?;
        let sealed = seal_record(key, &manifest_aad(&t.token_id), &encode(&m)?).unwrap();
        db.insert(K_MANIFEST, sealed).unwrap();
        for kv in db.scan_prefix([P_ENTRY]) {
            db.remove(kv.unwrap().0).unwrap();
        }
        db.flush().unwrap();
        Ok(())
    })
    .unwrap();
}

fn is_v1(s: &SledStore, key: &StorageKey, t: &TokenRecord) -> bool {
    s.with_db(1, false, |db| {
        let m = db.get(K_MANIFEST).unwrap().unwrap();
        let entries = db.scan_prefix([P_ENTRY]).count();
        Ok(open_record(key, &manifest_aad(&t.token_id), &m).is_ok() && entries == 0)
    })
    .unwrap()
}

#[test]
fn version_1_manifest_is_read_and_converted_by_the_next_keyed_write() {
    let (_d, s, key, t) = setup();
    assert!(!is_v1(&s, &key, &t));
    downgrade(&s, &key, &t);
    assert!(is_v1(&s, &key, &t));
    assert_eq!(s.objects(1, Some(&key)).unwrap().len(), 4);
    // A keyless change stays pending; the keyed write folds it and converts.
    s.delete_object(1, 1).unwrap();
    assert!(is_v1(&s, &key, &t));
    s.put_object(1, &obj(5, true, "five"), Some(&key)).unwrap();
    assert!(!is_v1(&s, &key, &t));
    let mut ids: Vec<u64> = s
        .objects(1, Some(&key))
        .unwrap()
        .iter()
        .map(|o| o.id)
        .collect();
    ids.sort_unstable();
    assert_eq!(ids, [2, 3, 4, 5]);
    // Rotation writes version 2 too, and the old key no longer reads it.
    let new = StorageKey::generate().unwrap();
    downgrade(&s, &key, &t);
    s.rekey(1, &key, &new, &mut |_| true).unwrap();
    assert!(!is_v1(&s, &new, &t));
    assert_eq!(s.objects(1, Some(&new)).unwrap().len(), 4);
    is_corrupt(s.objects(1, Some(&key)));
}

#[test]
fn altered_removed_or_added_entry_is_noticed() {
    let edits: [&dyn Fn(&sled::Db); 4] = [
        // An entry altered to claim another version.
        &|db| {
            let k = id_key(P_ENTRY, 2);
            let mut v = db.get(k).unwrap().unwrap().to_vec();
            let last = v.len() - 1;
            v[last] ^= 1;
            db.insert(k, v).unwrap();
        },
        // A public object's entry removed.
        &|db| {
            db.remove(id_key(P_ENTRY, 3)).unwrap().unwrap();
        },
        // An entry added for an object that does not exist.
        &|db| {
            let e = ManifestEntry {
                version: 1,
                private: false,
                hash: [0; 16],
            };
            db.insert(id_key(P_ENTRY, 99), encode(&e).unwrap()).unwrap();
        },
        // Two entries swapped.
        &|db| {
            let a = db.get(id_key(P_ENTRY, 1)).unwrap().unwrap();
            let b = db.get(id_key(P_ENTRY, 3)).unwrap().unwrap();
            db.insert(id_key(P_ENTRY, 1), b).unwrap();
            db.insert(id_key(P_ENTRY, 3), a).unwrap();
        },
    ];
    for edit in edits {
        let (_d, s, key, _t) = setup();
        s.with_db(1, false, |db| {
            edit(db);
            db.flush().unwrap();
            Ok(())
        })
        .unwrap();
        is_corrupt(s.objects(1, Some(&key)));
    }
}

#[test]
fn record_rolled_back_with_its_entry_is_noticed() {
    let (_d, s, key, _t) = setup();
    let old = s
        .with_db(1, false, |db| {
            let r = db.get(id_key(b'o', 2)).unwrap().unwrap();
            let e = db.get(id_key(P_ENTRY, 2)).unwrap().unwrap();
            Ok((r, e))
        })
        .unwrap();
    s.put_object(1, &obj(2, true, "two, later"), Some(&key))
        .unwrap();
    s.with_db(1, false, |db| {
        db.insert(id_key(b'o', 2), old.0.clone()).unwrap();
        db.insert(id_key(P_ENTRY, 2), old.1.clone()).unwrap();
        db.flush().unwrap();
        Ok(())
    })
    .unwrap();
    is_corrupt(s.objects(1, Some(&key)));
}
