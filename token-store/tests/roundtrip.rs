//! Round trips through a reopened `SledStore`, the public index, scale, no
//! plaintext on disk, several stores on one directory.
mod common;

use std::time::Duration;

use common::*;
use ferrohsm_store::{
    AttrValue, ObjectRecord, PinWrap, SledOptions, SledStore, StorageKey, Store, StoreError,
};

fn open(dir: &std::path::Path) -> SledStore {
    SledStore::open(dir, SledOptions::default()).unwrap()
}

#[test]
fn round_trip_every_record_kind_through_reopen() {
    let d = tempfile::tempdir().unwrap();
    let (t1, k1) = token(1, 1);
    let (mut t2, k2) = token(7, 2);
    t2.user_pin = None;
    let public = object(10, false, "pub");
    let private = object(11, true, "priv");
    let empty = ObjectRecord {
        id: 12,
        private: false,
        attrs: vec![],
    };
    let all_kinds = ObjectRecord {
        id: 13,
        private: true,
        attrs: vec![
            (1, AttrValue::Bool(false)),
            (2, AttrValue::Ulong(0)),
            (3, AttrValue::Bytes(vec![])),
            (4, AttrValue::Mechanisms(vec![])),
            (5, AttrValue::Ulong(u64::MAX)),
            (6, AttrValue::Bytes(vec![0; 5000])),
        ],
    };
    {
        let s = open(d.path());
        assert_eq!(s.tokens().unwrap().len(), 0);
        s.init_token(&t1).unwrap();
        s.init_token(&t2).unwrap();
        s.put_object(1, &public, None).unwrap();
        s.put_object(1, &private, Some(&k1)).unwrap();
        s.put_object(1, &empty, Some(&k1)).unwrap();
        s.put_object(1, &all_kinds, Some(&k1)).unwrap();
        s.put_object(7, &object(1, true, "other"), Some(&k2))
            .unwrap();
        t2.so_failures = 3;
        s.update_token(&t2).unwrap();
    }
    let s = open(d.path());
    let toks = s.tokens().unwrap();
    assert_eq!(toks.len(), 2);
    assert_eq!(toks[0].slot_id, 1);
    assert_eq!(toks[0].token_id, t1.token_id);
    assert_eq!(toks[0].so_pin, t1.so_pin);
    assert_eq!(toks[0].user_pin, t1.user_pin);
    assert_eq!(toks[1].so_failures, 3);
    assert_eq!(toks[1].user_pin, None);
    // The stored wrap still opens with the PIN.
    let k = toks[0]
        .user_pin
        .as_ref()
        .unwrap()
        .open(USER_PIN, b"user")
        .unwrap();
    assert_eq!(k.bytes(), k1.bytes());

    assert_eq!(
        s.objects(1, None).unwrap(),
        vec![public.clone(), empty.clone()]
    );
    assert_eq!(
        s.objects(1, Some(&k1)).unwrap(),
        vec![public, private, empty, all_kinds]
    );
    assert_eq!(
        s.objects(7, Some(&k2)).unwrap(),
        vec![object(1, true, "other")]
    );
    assert_eq!(s.objects(99, None), Err(StoreError::NotFound));
    assert!(s.broken_tokens().unwrap().is_empty());
}

#[test]
fn rules_init_delete_and_generation() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let (t, k) = token(3, 0);
    assert_eq!(s.generation(3).unwrap(), 0);
    assert_eq!(s.update_token(&t), Err(StoreError::NotFound));
    assert_eq!(
        s.put_object(3, &object(1, false, "x"), None),
        Err(StoreError::NotFound)
    );
    assert_eq!(s.delete_object(3, 1), Err(StoreError::NotFound));
    s.init_token(&t).unwrap();
    let g0 = s.generation(3).unwrap();
    assert!(g0 > 0);
    // Private without key; public carrying a secret value: refused.
    assert_eq!(
        s.put_object(3, &object(1, true, "x"), None),
        Err(StoreError::KeyRequired)
    );
    let mut leaky = object(2, false, "leak");
    leaky.attrs[0].1 = AttrValue::Ulong(4);
    leaky.attrs.push((0x11, AttrValue::Bytes(vec![1; 16])));
    assert_eq!(
        s.put_object(3, &leaky, Some(&k)),
        Err(StoreError::KeyRequired)
    );
    leaky.attrs[0].1 = AttrValue::Ulong(3);
    assert_eq!(s.put_object(3, &leaky, None), Err(StoreError::KeyRequired));
    assert_eq!(s.generation(3).unwrap(), g0);
    s.put_object(3, &object(1, true, "x"), Some(&k)).unwrap();
    s.put_object(3, &object(2, false, "y"), None).unwrap();
    let g1 = s.generation(3).unwrap();
    assert!(g1 > g0);
    s.delete_object(3, 99).unwrap();
    assert_eq!(s.generation(3).unwrap(), g1);
    s.delete_object(3, 1).unwrap();
    assert!(s.generation(3).unwrap() > g1);
    assert_eq!(s.objects(3, Some(&k)).unwrap(), vec![object(2, false, "y")]);
    // Re-init removes every object and the manifest; the new key works.
    let g2 = s.generation(3).unwrap();
    let (t_new, k_new) = token(3, 1);
    s.init_token(&t_new).unwrap();
    assert!(s.generation(3).unwrap() > g2);
    assert!(s.objects(3, Some(&k_new)).unwrap().is_empty());
    assert!(
        s.find_public(3, 0x3, &AttrValue::Bytes(b"y".to_vec()))
            .unwrap()
            .is_empty()
    );
    s.put_object(3, &object(5, true, "z"), Some(&k_new))
        .unwrap();
    assert_eq!(
        s.objects(3, Some(&k_new)).unwrap(),
        vec![object(5, true, "z")]
    );
    // A wrong key is not silently accepted.
    assert!(matches!(
        s.objects(3, Some(&k)),
        Err(StoreError::Corrupt(_))
    ));
}

#[test]
fn public_index_finds_without_decrypting() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let (t, k) = token(1, 0);
    s.init_token(&t).unwrap();
    s.put_object(1, &object(1, false, "alpha"), None).unwrap();
    s.put_object(1, &object(2, false, "beta"), Some(&k))
        .unwrap();
    s.put_object(1, &object(3, false, "alpha"), None).unwrap();
    s.put_object(1, &object(4, true, "alpha"), Some(&k))
        .unwrap();
    let label = |l: &str| AttrValue::Bytes(l.as_bytes().to_vec());
    assert_eq!(s.find_public(1, 0x3, &label("alpha")).unwrap(), vec![1, 3]);
    assert_eq!(
        s.find_public(1, 0x3, &label("alph")).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(
        s.find_public(1, 0x0, &AttrValue::Ulong(2)).unwrap(),
        vec![1, 2, 3]
    );
    assert_eq!(
        s.find_public(1, 0x102, &AttrValue::Bytes(2u64.to_be_bytes().to_vec()))
            .unwrap(),
        vec![2]
    );
    // Rewrites and deletes keep it exact.
    s.put_object(1, &object(3, false, "gamma"), None).unwrap();
    s.delete_object(1, 1).unwrap();
    assert_eq!(
        s.find_public(1, 0x3, &label("alpha")).unwrap(),
        Vec::<u64>::new()
    );
    assert_eq!(s.find_public(1, 0x3, &label("gamma")).unwrap(), vec![3]);
    // A public object turned private leaves the index.
    s.put_object(1, &object(3, true, "gamma"), Some(&k))
        .unwrap();
    assert_eq!(
        s.find_public(1, 0x3, &label("gamma")).unwrap(),
        Vec::<u64>::new()
    );
    assert!(matches!(
        s.find_public(1, 0x11, &label("x")),
        Err(StoreError::Io(_))
    ));
    assert_eq!(
        s.find_public(2, 0x3, &label("x")),
        Err(StoreError::NotFound)
    );
}

#[test]
fn ten_thousand_objects() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let (t, k) = token(1, 0);
    s.init_token(&t).unwrap();
    let t0 = std::time::Instant::now();
    let all: Vec<ObjectRecord> = (0..10_000u64)
        .map(|i| object(i, i % 2 == 0, &format!("label-{}", i % 100)))
        .collect();
    for chunk in all.chunks(1000) {
        s.put_objects(1, chunk, Some(&k)).unwrap();
    }
    let put = t0.elapsed();
    // Single puts still work at that size.
    s.put_object(1, &object(10_001, true, "one more"), Some(&k))
        .unwrap();
    s.put_object(1, &object(10_003, false, "label-7"), None)
        .unwrap();
    let t1 = std::time::Instant::now();
    let objs = s.objects(1, Some(&k)).unwrap();
    let read = t1.elapsed();
    assert_eq!(objs.len(), 10_002);
    assert_eq!(objs[..10_000], all[..]);
    assert_eq!(s.objects(1, None).unwrap().len(), 5001);
    let t2 = std::time::Instant::now();
    let found = s
        .find_public(1, 0x3, &AttrValue::Bytes(b"label-7".to_vec()))
        .unwrap();
    let find = t2.elapsed();
    let mut expect: Vec<u64> = (0..10_000).filter(|i| i % 100 == 7).collect();
    expect.push(10_003);
    assert_eq!(found, expect);
    eprintln!("10k: put {put:?}, objects(key) {read:?}, find_public {find:?}");
}

#[test]
fn no_plaintext_secret_on_disk() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let key_value: Vec<u8> = (0..32u8).map(|i| 0xc0 ^ i.wrapping_mul(37)).collect();
    let pin = b"Distinctive-PIN-8841-zq";
    let (mut t, k) = token(1, 0);
    t.so_pin = PinWrap::seal(pin, &k, CHEAP, b"so").unwrap();
    t.user_pin = Some(PinWrap::seal(pin, &k, CHEAP, b"user").unwrap());
    s.init_token(&t).unwrap();
    let mut secret = object(1, true, "Distinctive-Private-Label");
    secret.attrs.retain(|(ty, _)| *ty != 0x11);
    secret
        .attrs
        .push((0x11, AttrValue::Bytes(key_value.clone())));
    s.put_object(1, &secret, Some(&k)).unwrap();
    s.put_object(1, &object(2, false, "public-label"), Some(&k))
        .unwrap();
    // Rewrite it a few times so old versions could linger in the log.
    for i in 0..5u64 {
        s.put_object(
            1,
            &ObjectRecord {
                id: 3 + i,
                ..secret.clone()
            },
            Some(&k),
        )
        .unwrap();
    }
    assert_eq!(s.objects(1, Some(&k)).unwrap()[0], secret);
    drop(s);
    let needles: [(&str, &[u8]); 4] = [
        ("key value", &key_value),
        ("PIN", pin),
        ("storage key", k.bytes()),
        ("private label", b"Distinctive-Private-Label"),
    ];
    let mut files = 0;
    let mut found_public = false;
    let mut stack = vec![d.path().to_path_buf()];
    while let Some(p) = stack.pop() {
        for e in std::fs::read_dir(&p).unwrap() {
            let e = e.unwrap();
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
                continue;
            }
            let bytes = std::fs::read(e.path()).unwrap();
            files += 1;
            for (what, n) in needles {
                assert!(
                    !bytes.windows(n.len()).any(|w| w == n),
                    "{what} found in {}",
                    e.path().display()
                );
            }
            found_public |= bytes.windows(12).any(|w| w == b"public-label");
        }
    }
    assert!(files >= 3, "scanned {files} files");
    // The scan does see record bytes: the public label is there in the clear.
    assert!(found_public);
}

#[test]
fn two_stores_on_one_directory_interleave() {
    let d = tempfile::tempdir().unwrap();
    let a = open(d.path());
    let b = SledStore::open(
        d.path(),
        SledOptions {
            lock_deadline: Duration::from_secs(5),
            ..SledOptions::default()
        },
    )
    .unwrap();
    let (t, k) = token(1, 0);
    a.init_token(&t).unwrap();
    let mut last = b.generation(1).unwrap();
    for i in 0..20u64 {
        let (w, r) = if i % 2 == 0 { (&a, &b) } else { (&b, &a) };
        w.put_object(1, &object(i, i % 3 == 0, "x"), Some(&k))
            .unwrap();
        let g = r.generation(1).unwrap();
        assert!(g > last, "the other store sees the change");
        last = g;
        assert_eq!(r.objects(1, Some(&k)).unwrap().len() as u64, i + 1);
    }
    // Concurrent writers from two threads, one store each: both finish.
    std::thread::scope(|sc| {
        for (n, st) in [(0u64, &a), (1u64, &b)] {
            let k = k.clone();
            sc.spawn(move || {
                for i in 0..15u64 {
                    st.put_object(1, &object(100 + n * 100 + i, i % 2 == 0, "c"), Some(&k))
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(a.objects(1, Some(&k)).unwrap().len(), 50);
    assert_eq!(b.objects(1, Some(&k)).unwrap().len(), 50);
}

#[test]
fn lock_held_past_deadline_is_io_error() {
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(
        d.path(),
        SledOptions {
            lock_deadline: Duration::from_millis(300),
            ..SledOptions::default()
        },
    )
    .unwrap();
    let (t, _) = token(1, 0);
    s.init_token(&t).unwrap();
    let g = s.generation(1).unwrap();
    let holder = raw_db(d.path(), 1);
    let t0 = std::time::Instant::now();
    match s.objects(1, None) {
        Err(StoreError::Io(m)) => assert!(m.contains("locked by another process"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(t0.elapsed() >= Duration::from_millis(300));
    // generation() does not need the database.
    assert_eq!(s.generation(1).unwrap(), g);
    drop(holder);
    assert!(s.objects(1, None).unwrap().is_empty());
}

/// Rotation re-seals every record: the new key reads everything (private
/// records included), the old key no longer opens the manifest, the record
/// edit lands in the same step, and a failing edit writes nothing.
#[test]
fn rekey_reseals_everything_atomically() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let (mut t, old) = common::token(0, 1);
    let root = ferrohsm_store::AuditKey::generate().unwrap();
    t.audit_root = Some(root.seal(&old, &t.token_id).unwrap());
    s.init_token(&t).unwrap();
    let objects: Vec<_> = (1..=20)
        .map(|i| common::object(i, i % 2 == 0, &format!("o{i}")))
        .collect();
    s.put_objects(0, &objects, Some(&old)).unwrap();
    let new = StorageKey::generate().unwrap();
    // An edit that refuses leaves everything as it was.
    assert_eq!(
        s.rekey(0, &old, &new, &mut |_| false).unwrap_err(),
        StoreError::NotFound
    );
    assert_eq!(s.objects(0, Some(&old)).unwrap().len(), 20);
    // A wrong "old" key is refused before anything is written.
    let wrong = StorageKey::generate().unwrap();
    assert!(s.rekey(0, &wrong, &new, &mut |_| true).is_err());
    let resealed = root.seal(&new, &t.token_id).unwrap();
    let rec = s
        .rekey(0, &old, &new, &mut |r| {
            r.audit_root = Some(resealed.clone());
            true
        })
        .unwrap();
    assert_eq!(rec.audit_root.as_ref(), Some(&resealed));
    let mut back = s.objects(0, Some(&new)).unwrap();
    back.sort_by_key(|o| o.id);
    assert_eq!(back, objects);
    assert!(matches!(
        s.objects(0, Some(&old)),
        Err(StoreError::Corrupt(_))
    ));
    let stored = s.token(0).unwrap().unwrap();
    assert!(
        ferrohsm_store::AuditKey::open(stored.audit_root.as_ref().unwrap(), &new, &t.token_id)
            .is_ok()
    );
    // The public index still works after the rewrite.
    let hits = s
        .find_public(
            0,
            ferrohsm_store::attr::CKA_LABEL,
            &AttrValue::Bytes(b"o3".to_vec()),
        )
        .unwrap();
    assert_eq!(hits, vec![3]);
    // And it survives a reopen.
    drop(s);
    let s = open(dir.path());
    assert_eq!(s.objects(0, Some(&new)).unwrap().len(), 20);
}

/// A token record written before audit logs existed (no `audit_root` field)
/// still opens, with no audit root, and is rewritten in the new form.
#[test]
fn token_records_from_before_audit_logs_still_open() {
    #[derive(serde::Serialize)]
    struct V1 {
        slot_id: u64,
        token_id: [u8; 16],
        label: [u8; 32],
        serial: [u8; 16],
        policy: ferrohsm_store::KeyPolicy,
        so_pin: PinWrap,
        user_pin: Option<PinWrap>,
        so_failures: u32,
        user_failures: u32,
    }
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let (t, _) = common::token(0, 2);
    s.init_token(&t).unwrap();
    drop(s);
    let v1 = V1 {
        slot_id: t.slot_id,
        token_id: t.token_id,
        label: t.label,
        serial: t.serial,
        policy: t.policy,
        so_pin: t.so_pin.clone(),
        user_pin: t.user_pin.clone(),
        so_failures: 0,
        user_failures: 3,
    };
    {
        let db = raw_db(dir.path(), 0);
        let mut bytes = vec![1u8];
        bytes.extend(postcard::to_allocvec(&v1).unwrap());
        db.insert(b"t", bytes).unwrap();
        db.flush().unwrap();
    }
    let s = open(dir.path());
    let back = s.token(0).unwrap().unwrap();
    assert_eq!(back.token_id, t.token_id);
    assert_eq!(back.user_failures, 3);
    assert_eq!(back.audit_root, None);
    let edited = s.modify_token(0, &mut |r| r.user_failures = 0).unwrap();
    assert_eq!(edited.user_failures, 0);
    assert_eq!(s.token(0).unwrap().unwrap().user_failures, 0);
}

/// Keys whose deletion waiting period is over are purged without the storage
/// key (the schedule is kept beside the sealed records); the others stay,
/// and the token still reads cleanly with the key afterwards.
#[test]
fn purge_due_deletes_expired_keys_without_the_storage_key() {
    let dir = tempfile::tempdir().unwrap();
    let s = open(dir.path());
    let (t, key) = common::token(0, 3);
    s.init_token(&t).unwrap();
    let scheduled = |id: u64, at: u64| {
        let mut o = common::object(id, true, &format!("k{id}"));
        o.attrs
            .push((ferrohsm_store::CKA_FERROHSM_DELETE_AT, AttrValue::Ulong(at)));
        o.attrs.sort_by_key(|(t, _)| *t);
        o
    };
    let keep = common::object(1, true, "kept");
    s.put_objects(
        0,
        &[keep.clone(), scheduled(2, 1_000), scheduled(3, 5_000)],
        Some(&key),
    )
    .unwrap();
    assert_eq!(s.purge_due(0, 999).unwrap(), Vec::<u64>::new());
    assert_eq!(s.purge_due(0, 1_000).unwrap(), vec![2]);
    let ids = |s: &SledStore| {
        let mut v: Vec<u64> = s
            .objects(0, Some(&key))
            .unwrap()
            .iter()
            .map(|o| o.id)
            .collect();
        v.sort_unstable();
        v
    };
    assert_eq!(ids(&s), vec![1, 3]);
    // A cancelled deletion (record rewritten without the attribute) is not purged.
    s.put_object(0, &common::object(3, true, "k3"), Some(&key))
        .unwrap();
    assert_eq!(s.purge_due(0, u64::MAX).unwrap(), Vec::<u64>::new());
    assert_eq!(ids(&s), vec![1, 3]);
    // A write with the key afterwards folds the purge into the manifest.
    s.put_object(0, &keep, Some(&key)).unwrap();
    drop(s);
    let s = open(dir.path());
    assert_eq!(ids(&s), vec![1, 3]);
}

#[test]
fn delete_token_frees_the_slot_and_keeps_the_audit_log() {
    let d = tempfile::tempdir().unwrap();
    let s = open(d.path());
    let (t, k) = token(4, 0);
    let (other, other_key) = token(5, 0);
    s.init_token(&t).unwrap();
    s.init_token(&other).unwrap();
    s.put_object(4, &object(1, true, "secret"), Some(&k))
        .unwrap();
    s.put_object(5, &object(1, true, "kept"), Some(&other_key))
        .unwrap();
    std::fs::create_dir_all(s.token_dir(4).join("audit")).unwrap();
    std::fs::write(s.token_dir(4).join("audit/log.jsonl"), b"evidence\n").unwrap();
    let g = s.generation(4).unwrap();
    // Only the token that was authenticated: a re-initialised one stays.
    let (t_new, _) = token(4, 1);
    assert!(matches!(
        s.delete_token(4, &t_new.token_id),
        Err(StoreError::Corrupt(_))
    ));
    assert_eq!(s.tokens().unwrap().len(), 2);
    s.delete_token(4, &t.token_id).unwrap();
    assert_eq!(s.slot_ids().unwrap(), vec![5]);
    assert!(s.token(4).unwrap().is_none());
    assert_eq!(s.objects(4, Some(&k)), Err(StoreError::NotFound));
    assert!(s.generation(4).unwrap() > g, "watchers see a change");
    assert_eq!(
        std::fs::read(s.token_dir(4).join("audit/log.jsonl")).unwrap(),
        b"evidence\n"
    );
    let leftovers: Vec<_> = std::fs::read_dir(s.token_dir(4))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        leftovers.iter().all(|n| n == "audit" || n == "generation"),
        "{leftovers:?}"
    );
    assert_eq!(s.delete_token(4, &t.token_id), Err(StoreError::NotFound));
    // The other token is untouched, and the slot can be initialised again.
    assert_eq!(
        s.objects(5, Some(&other_key)).unwrap(),
        vec![object(1, true, "kept")]
    );
    // A delete killed between its rename and its removal: the next init
    // removes what it left.
    let left = s.token_dir(4).join("db.deleted.1");
    std::fs::create_dir_all(left.join("x")).unwrap();
    s.init_token(&t_new).unwrap();
    assert!(!left.exists());
    assert!(s.generation(4).unwrap() > g);
    drop(s);
    // Reopened: the same.
    let s = open(d.path());
    assert_eq!(s.slot_ids().unwrap(), vec![4, 5]);
}

/// Writers on several threads share flushes (group commit): every write is
/// there after a reopen, the generation rose by exactly one per write, and
/// the manifest still checks.
#[test]
fn concurrent_writers_share_flushes_and_lose_nothing() {
    let d = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(SledStore::open(d.path(), SledOptions::default()).unwrap());
    let (t, key) = token(1, 0);
    s.init_token(&t).unwrap();
    let key = std::sync::Arc::new(key);
    let g0 = s.generation(1).unwrap();
    let threads: Vec<_> = (0..4u64)
        .map(|n| {
            let (s, key) = (s.clone(), key.clone());
            std::thread::spawn(move || {
                for i in 0..25u64 {
                    let id = 1 + n * 100 + i;
                    s.put_object(1, &object(id, i % 2 == 0, "w"), Some(&key))
                        .unwrap();
                    if i % 10 == 9 {
                        s.delete_object(1, id).unwrap();
                    }
                }
            })
        })
        .collect();
    for h in threads {
        h.join().unwrap();
    }
    assert_eq!(s.generation(1).unwrap(), g0 + 100 + 8);
    drop(s);
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    assert_eq!(s.objects(1, Some(&key)).unwrap().len(), 100 - 8);
    assert_eq!(s.generation(1).unwrap(), g0 + 100 + 8);
}

/// `put_object_numbered` writes only into the token it names and returns
/// the generation it made, in both stores.
#[test]
fn numbered_put_names_its_token_and_its_generation() {
    let d = tempfile::tempdir().unwrap();
    let sled = open(d.path());
    let memory = ferrohsm_store::MemoryStore::default();
    for s in [&sled as &dyn Store, &memory as &dyn Store] {
        let (t, k) = token(4, 0);
        s.init_token(&t).unwrap();
        let g0 = s.generation(4).unwrap();
        let other = [0xee; 16];
        assert_eq!(
            s.put_object_numbered(4, &other, &object(1, true, "x"), Some(&k)),
            Err(StoreError::NotFound),
            "a write meant for a token that was re-initialised meanwhile"
        );
        assert_eq!(s.generation(4).unwrap(), g0);
        assert!(s.objects(4, Some(&k)).unwrap().is_empty());
        let seq = s
            .put_object_numbered(4, &t.token_id, &object(1, true, "x"), Some(&k))
            .unwrap()
            .expect("both stores number their writes");
        assert_eq!(seq, g0 + 1);
        assert_eq!(s.generation(4).unwrap(), seq);
        let seq2 = s
            .put_object_numbered(4, &t.token_id, &object(2, false, "y"), None)
            .unwrap();
        assert_eq!(seq2, Some(seq + 1));
        assert_eq!(s.objects(4, Some(&k)).unwrap().len(), 2);
    }
}
