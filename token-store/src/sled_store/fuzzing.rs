//! Fuzz entry point for the store's record decoding (see `crate::fuzzing`).
//!
//! The input is a list of database entries, each
//! `[tag][id][version][len: u16 LE][value]`, written into a temporary sled
//! database the way `SledStore` lays a token out; then the token is read as
//! the store reads it, with and without the storage key. Values that the
//! store seals (private record bodies, the manifest) are sealed here with
//! the right associated data, so the fuzzer reaches the decoders behind the
//! AEAD: an authentic but malformed record must be refused, never panic.
//! When the input gives no manifest, one that matches the records is made,
//! so the checks pass and every record body is decoded.

use std::cell::RefCell;
use std::sync::OnceLock;

use crate::attr::{CKA_CLASS, CKA_KEY_TYPE, CKA_LABEL, CKA_VALUE, CKO_SECRET_KEY};
use crate::record::{AttrValue, ObjectRecord, StoreError, TokenRecord};
use crate::seal::{StorageKey, seal_record};

use super::index::{index_key, index_keys, remove_index};
use super::layout::{
    Envelope, K_MANIFEST, K_TOKEN, P_OBJECT, P_PENDING, P_REVERSE, decode, decode_token, encode,
    id_key, key_id, load_token, record_aad,
};
use super::manifest::{
    Manifest, ManifestEntry, ManifestWriter, manifest_aad, pending_ids, record_hash,
};
use super::records::{carries_secret, read_objects};

const SLOT: u64 = 0;

fn key() -> &'static StorageKey {
    static KEY: OnceLock<StorageKey> = OnceLock::new();
    KEY.get_or_init(|| StorageKey::generate().expect("OS random generator"))
}

thread_local! {
    static DB: RefCell<Option<sled::Db>> = const { RefCell::new(None) };
}

/// Tags of the entry list.
mod tag {
    pub const TOKEN: u8 = 0;
    pub const RAW_OBJECT: u8 = 1;
    pub const PUBLIC: u8 = 2;
    pub const PRIVATE: u8 = 3;
    pub const MANIFEST: u8 = 4;
    pub const PENDING: u8 = 5;
    pub const REVERSE: u8 = 6;
    // 7 (any other): the value is a database key of its own, with an empty value.
}

struct Entry<'a> {
    tag: u8,
    id: u64,
    version: u64,
    value: &'a [u8],
}

fn entries(mut data: &[u8]) -> Vec<Entry<'_>> {
    let mut out = Vec::new();
    while data.len() >= 5 && out.len() < 64 {
        let len = u16::from_le_bytes([data[3], data[4]]) as usize;
        let end = (5 + len).min(data.len());
        out.push(Entry {
            tag: data[0] % 8,
            id: u64::from(data[1] % 8),
            version: u64::from(data[2]),
            value: &data[5..end],
        });
        data = &data[end..];
    }
    out
}

/// Serialises entries (for the seed corpus).
fn entry(tag: u8, id: u64, version: u64, value: &[u8]) -> Vec<u8> {
    let mut v = vec![tag, id as u8, version as u8];
    v.extend_from_slice(&(value.len() as u16).to_le_bytes());
    v.extend_from_slice(value);
    v
}

/// Each decoder alone on the whole input: what decodes re-encodes to bytes
/// that decode to the same value.
fn decoders(data: &[u8]) {
    if let Ok(t) = decode_token(data) {
        let bytes = encode(&t).expect("encodes");
        let again = decode_token(&bytes).expect("a re-encoded token record decodes");
        assert_eq!(
            encode(&again).expect("encodes"),
            bytes,
            "token record round trip"
        );
    }
    if let Ok(e) = decode::<Envelope>(data, "fuzz") {
        let bytes = encode(&e).expect("encodes");
        let again: Envelope = decode(&bytes, "fuzz").expect("a re-encoded envelope decodes");
        assert_eq!(
            encode(&again).expect("encodes"),
            bytes,
            "envelope round trip"
        );
    }
    if let Ok(r) = decode::<ObjectRecord>(data, "fuzz") {
        let bytes = encode(&r).expect("encodes");
        let again: ObjectRecord = decode(&bytes, "fuzz").expect("a re-encoded record decodes");
        assert_eq!(again, r, "object record round trip");
        let _ = carries_secret(&r);
        let _ = index_keys(&r);
    }
    if let Ok(m) = decode::<Manifest>(data, "fuzz") {
        let bytes = encode(&m).expect("encodes");
        let again: Manifest = decode(&bytes, "fuzz").expect("a re-encoded manifest decodes");
        assert_eq!(
            encode(&again).expect("encodes"),
            bytes,
            "manifest round trip"
        );
    }
    let _ = decode::<Vec<Vec<u8>>>(data, "fuzz");
    let _ = key_id(data);
}

/// See the module documentation.
pub(crate) fn records(data: &[u8]) {
    decoders(data);
    let key = key();
    DB.with(|cell| {
        let mut cell = cell.borrow_mut();
        let db = cell.get_or_insert_with(|| {
            sled::Config::new()
                .temporary(true)
                .flush_every_ms(None)
                .open()
                .expect("a temporary sled database")
        });
        db.clear().expect("clears");
        let mut token: Option<TokenRecord> = None;
        let mut manifest_given = false;
        let mut envelopes = Vec::new();
        for e in entries(data) {
            let token_id = token.as_ref().map_or([0u8; 16], |t| t.token_id);
            let put = |k: &[u8], v: &[u8]| {
                db.insert(k, v).expect("inserts");
            };
            match e.tag {
                tag::TOKEN => {
                    put(K_TOKEN, e.value);
                    token = decode_token(e.value).ok().or(token);
                }
                tag::RAW_OBJECT => put(&id_key(P_OBJECT, e.id), e.value),
                tag::PUBLIC | tag::PRIVATE => {
                    let private = e.tag == tag::PRIVATE;
                    let body = if private {
                        let aad = record_aad(&token_id, e.id, e.version);
                        seal_record(key, &aad, e.value).expect("seals")
                    } else {
                        e.value.to_vec()
                    };
                    let env = Envelope {
                        version: e.version,
                        private,
                        body,
                    };
                    put(&id_key(P_OBJECT, e.id), &encode(&env).expect("encodes"));
                    envelopes.push((e.id, env));
                }
                tag::MANIFEST => {
                    let sealed =
                        seal_record(key, &manifest_aad(&token_id), e.value).expect("seals");
                    put(K_MANIFEST, &sealed);
                    manifest_given = true;
                }
                tag::PENDING => put(&id_key(P_PENDING, e.id), &[]),
                tag::REVERSE => put(&id_key(P_REVERSE, e.id), e.value),
                _ => put(e.value, &[]),
            }
        }
        if let (Some(t), false) = (&token, manifest_given) {
            let mut m = Manifest::default();
            for (id, env) in &envelopes {
                let entry = ManifestEntry {
                    version: env.version,
                    private: env.private,
                    hash: record_hash(&t.token_id, *id, env),
                };
                m.entries.insert(*id, entry);
            }
            let plain = encode(&m).expect("encodes");
            let sealed = seal_record(key, &manifest_aad(&t.token_id), &plain).expect("seals");
            db.insert(K_MANIFEST, sealed).expect("inserts");
        }
        let slot = token.as_ref().map_or(SLOT, |t| t.slot_id);
        let _ = load_token(db, slot);
        let _ = pending_ids(db);
        let public = read_objects(db, slot, None);
        let all = read_objects(db, slot, Some(key));
        for recs in [&public, &all].into_iter().flatten() {
            for r in recs {
                let bytes = encode(r).expect("encodes");
                let again: ObjectRecord = decode(&bytes, "fuzz").expect("decodes");
                assert_eq!(&again, r, "object record round trip");
            }
        }
        if let (Ok(p), Ok(a)) = (&public, &all) {
            // What is readable without the key is readable with it.
            for r in p {
                assert!(
                    a.contains(r),
                    "object {} readable only without the key",
                    r.id
                );
            }
        }
        let mut batch = sled::Batch::default();
        for id in 0..8 {
            let _ = remove_index(db, id, &mut batch);
        }
        if let Some(t) = &token
            && let Ok(mut m) = ManifestWriter::open(db, t, key)
        {
            let _ = m.fold_pending(db, t, &mut batch);
        }
    });
}

/// Seeds for `fuzz/corpus/store_records/`: a token with public and private
/// objects as the store lays it out, and each record alone.
pub(crate) fn seeds() -> Vec<(String, Vec<u8>)> {
    use crate::seal::{KdfParams, PinWrap};
    let kdf = KdfParams {
        memory_kib: 8,
        passes: 1,
        lanes: 1,
    };
    let token = TokenRecord {
        slot_id: 0,
        token_id: [7; 16],
        label: *b"fuzz token                      ",
        serial: *b"0123456789abcdef",
        policy: crate::record::KeyPolicy::Hsm,
        so_pin: PinWrap::seal(b"so-pin", key(), kdf, b"aad").expect("seals"),
        user_pin: None,
        so_failures: 1,
        user_failures: 0,
        audit_root: Some(vec![1, 2, 3]),
    };
    let public = ObjectRecord {
        id: 1,
        private: false,
        attrs: vec![
            (CKA_CLASS, AttrValue::Ulong(2)),
            (CKA_LABEL, AttrValue::Bytes(b"public key".to_vec())),
            (CKA_KEY_TYPE, AttrValue::Ulong(3)),
            (
                0x180,
                AttrValue::Bytes(vec![6, 8, 42, 134, 72, 206, 61, 3, 1, 7]),
            ),
            (0x162, AttrValue::Bool(true)),
        ],
    };
    let private = ObjectRecord {
        id: 2,
        private: true,
        attrs: vec![
            (CKA_CLASS, AttrValue::Ulong(CKO_SECRET_KEY)),
            (CKA_VALUE, AttrValue::Bytes(vec![0xAB; 32])),
            (0x600, AttrValue::Mechanisms(vec![0x1082, 0x1087])),
        ],
    };
    let enc = |v: &dyn Fn() -> Result<Vec<u8>, StoreError>| v().expect("encodes");
    let t = enc(&|| encode(&token));
    let p = enc(&|| encode(&public));
    let s = enc(&|| encode(&private));
    let mut whole = entry(tag::TOKEN, 0, 0, &t);
    whole.extend(entry(tag::PUBLIC, 1, 3, &p));
    whole.extend(entry(tag::PRIVATE, 2, 4, &s));
    whole.extend(entry(tag::PENDING, 1, 0, &[]));
    let mut with_index = whole.clone();
    with_index.extend(entry(
        tag::REVERSE,
        1,
        0,
        &enc(&|| {
            encode(&vec![index_key(
                CKA_LABEL,
                &AttrValue::Bytes(b"x".to_vec()),
                Some(1),
            )?])
        }),
    ));
    let mut m = Manifest {
        seq: 9,
        ..Manifest::default()
    };
    m.entries.insert(
        1,
        ManifestEntry {
            version: 3,
            private: false,
            hash: [1; 16],
        },
    );
    let mut with_manifest = entry(tag::TOKEN, 0, 0, &t);
    with_manifest.extend(entry(tag::MANIFEST, 0, 0, &enc(&|| encode(&m))));
    with_manifest.extend(entry(tag::PUBLIC, 1, 3, &p));
    vec![
        ("token-with-objects".into(), whole),
        ("token-with-index".into(), with_index),
        ("token-with-stale-manifest".into(), with_manifest),
        ("token-record".into(), t),
        ("public-record".into(), p),
        ("private-record".into(), s),
        (
            "envelope".into(),
            enc(&|| {
                encode(&Envelope {
                    version: 5,
                    private: false,
                    body: vec![1, 2, 3],
                })
            }),
        ),
    ]
}
