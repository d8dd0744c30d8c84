//! Tampering with the files: every case is `Corrupt` (or `Io` for files sled
//! cannot open), never a wrong record, never a panic; other tokens unaffected.
mod common;

use common::*;
use ferrohsm_store::{SledOptions, SledStore, Store, StoreError};

fn setup() -> (tempfile::TempDir, SledStore, ferrohsm_store::StorageKey) {
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    let (t, k) = token(1, 0);
    s.init_token(&t).unwrap();
    s.put_object(1, &object(1, true, "one"), Some(&k)).unwrap();
    s.put_object(1, &object(2, true, "two"), Some(&k)).unwrap();
    s.put_object(1, &object(3, false, "three"), Some(&k))
        .unwrap();
    s.put_object(1, &object(4, false, "four"), None).unwrap();
    (d, s, k)
}

fn get(d: &tempfile::TempDir, slot: u64, id: u64) -> Vec<u8> {
    raw_db(d.path(), slot)
        .get(obj_key(id))
        .unwrap()
        .unwrap()
        .to_vec()
}

fn set(d: &tempfile::TempDir, slot: u64, id: u64, v: &[u8]) {
    let db = raw_db(d.path(), slot);
    db.insert(obj_key(id), v).unwrap();
    db.flush().unwrap();
}

fn is_corrupt<T: std::fmt::Debug>(r: Result<T, StoreError>) {
    assert!(matches!(r, Err(StoreError::Corrupt(_))), "{r:?}");
}

#[test]
fn flipped_byte_in_every_position_of_a_private_record() {
    let (d, s, k) = setup();
    let orig = get(&d, 1, 1);
    for i in 0..orig.len() {
        let mut bad = orig.clone();
        bad[i] ^= 0x01;
        set(&d, 1, 1, &bad);
        is_corrupt(s.objects(1, Some(&k)));
    }
    set(&d, 1, 1, &orig);
    assert_eq!(s.objects(1, Some(&k)).unwrap().len(), 4);
}

#[test]
fn flipped_byte_in_a_public_record() {
    let (d, s, k) = setup();
    for id in [3, 4] {
        let orig = get(&d, 1, id);
        // Flip a byte of the label (inside the clear body).
        let pos = orig
            .windows(4)
            .position(|w| w == b"thre" || w == b"four")
            .unwrap();
        let mut bad = orig.clone();
        bad[pos] ^= 0x20;
        set(&d, 1, id, &bad);
        if id == 3 {
            // Attested public record: caught by a read with the key.
            is_corrupt(s.objects(1, Some(&k)));
        } else {
            // Written without the key and not yet attested: documented limit.
            assert!(s.objects(1, Some(&k)).is_ok());
        }
        // Without the key: not detectable (documented), but no panic.
        assert!(s.objects(1, None).is_ok());
        set(&d, 1, id, &orig);
    }
    // Once a keyed write folds the keyless one into the manifest, it is attested.
    s.put_object(1, &object(5, true, "five"), Some(&k)).unwrap();
    let orig = get(&d, 1, 4);
    let mut bad = orig.clone();
    let pos = orig.windows(4).position(|w| w == b"four").unwrap();
    bad[pos] ^= 0x20;
    set(&d, 1, 4, &bad);
    is_corrupt(s.objects(1, Some(&k)));
}

#[test]
fn record_copied_from_another_token() {
    let (d, s, k) = setup();
    let (t2, k2) = token(2, 1);
    s.init_token(&t2).unwrap();
    s.put_object(2, &object(1, true, "other one"), Some(&k2))
        .unwrap();
    s.put_object(2, &object(3, false, "other three"), Some(&k2))
        .unwrap();
    for id in [1, 3] {
        let orig = get(&d, 1, id);
        set(&d, 1, id, &get(&d, 2, id));
        is_corrupt(s.objects(1, Some(&k)));
        set(&d, 1, id, &orig);
    }
    assert_eq!(s.objects(1, Some(&k)).unwrap().len(), 4);
    assert_eq!(s.objects(2, Some(&k2)).unwrap().len(), 2);
}

#[test]
fn two_records_swapped() {
    let (d, s, k) = setup();
    for (a, b) in [(1, 2), (3, 4)] {
        let (ra, rb) = (get(&d, 1, a), get(&d, 1, b));
        set(&d, 1, a, &rb);
        set(&d, 1, b, &ra);
        is_corrupt(s.objects(1, Some(&k)));
        if a == 3 {
            // Public swap is caught even without the key (embedded id).
            is_corrupt(s.objects(1, None));
        }
        set(&d, 1, a, &ra);
        set(&d, 1, b, &rb);
    }
    assert_eq!(s.objects(1, Some(&k)).unwrap().len(), 4);
}

#[test]
fn older_version_put_back() {
    let (d, s, k) = setup();
    for (id, private) in [(1, true), (3, false)] {
        let v1 = get(&d, 1, id);
        s.put_object(1, &object(id, private, "version two"), Some(&k))
            .unwrap();
        set(&d, 1, id, &v1);
        is_corrupt(s.objects(1, Some(&k)));
        // Writing again with the key does not launder the rolled-back record.
        s.put_object(1, &object(id, private, "version three"), Some(&k))
            .unwrap();
        assert!(s.objects(1, Some(&k)).is_ok());
    }
}

#[test]
fn deleted_record_or_manifest_is_noticed() {
    let (d, s, k) = setup();
    let db = raw_db(d.path(), 1);
    let r1 = db.remove(obj_key(1)).unwrap().unwrap();
    db.flush().unwrap();
    drop(db);
    is_corrupt(s.objects(1, Some(&k)));
    set(&d, 1, 1, &r1);
    let db = raw_db(d.path(), 1);
    db.remove(b"m").unwrap().unwrap();
    db.flush().unwrap();
    drop(db);
    is_corrupt(s.objects(1, Some(&k)));
}

#[test]
fn garbage_and_truncated_databases_do_not_break_other_tokens() {
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    let mut keys = Vec::new();
    for slot in 1..=6 {
        let (t, k) = token(slot, slot as u8);
        s.init_token(&t).unwrap();
        for i in 0..30 {
            s.put_object(slot, &object(i, i % 2 == 0, "some label"), Some(&k))
                .unwrap();
        }
        keys.push(k);
    }
    let tok = |slot: u64| d.path().join(format!("token-{slot}"));
    // 2: log file replaced by garbage.
    let mut x = 0x1234_5678u64;
    let garbage: Vec<u8> = (0..200_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect();
    std::fs::write(tok(2).join("db/db"), &garbage).unwrap();
    // 3: log file truncated to half, then to a few bytes.
    let len = std::fs::metadata(tok(3).join("db/db")).unwrap().len();
    std::fs::OpenOptions::new()
        .write(true)
        .open(tok(3).join("db/db"))
        .unwrap()
        .set_len(len / 2)
        .unwrap();
    // 4: config garbage.
    std::fs::write(tok(4).join("db/conf"), b"\xff\xfe garbage").unwrap();
    // 5: the database directory replaced by a file.
    std::fs::remove_dir_all(tok(5).join("db")).unwrap();
    std::fs::create_dir(tok(5).join("db")).unwrap();
    std::fs::write(tok(5).join("db/conf"), b"").unwrap();
    // 6: every file truncated to 7 bytes.
    for e in std::fs::read_dir(tok(6).join("db")).unwrap() {
        let p = e.unwrap().path();
        if p.is_file() {
            std::fs::OpenOptions::new()
                .write(true)
                .open(&p)
                .unwrap()
                .set_len(7)
                .unwrap();
        }
    }
    // A stray directory and file are ignored.
    std::fs::create_dir(d.path().join("token-x")).unwrap();
    std::fs::write(d.path().join("notes"), b"hi").unwrap();

    let scan = s.scan_tokens().unwrap();
    eprintln!("broken: {:#?}", scan.broken);
    assert!(scan.tokens.iter().any(|t| t.slot_id == 1));
    for b in &scan.broken {
        assert!(matches!(
            b.error,
            StoreError::Corrupt(_) | StoreError::Io(_)
        ));
        assert_ne!(b.slot_id, 1);
    }
    assert_eq!(scan.tokens.len() + scan.broken.len(), 6);
    for slot in 2..=6u64 {
        let r = s.objects(slot, Some(&keys[slot as usize - 1]));
        eprintln!("slot {slot}: {:?}", r.as_ref().map(|v| v.len()));
        match r {
            Err(StoreError::Corrupt(_) | StoreError::Io(_)) => {}
            // An empty database directory: no token there.
            Err(StoreError::NotFound) if slot == 5 => {}
            // sled may recover a truncated log to an older state: then the
            // manifest check must still hold or flag it.
            Ok(v) => assert!(v.len() <= 30),
            Err(e) => panic!("slot {slot}: {e:?}"),
        }
    }
    // Token 1 still works, for reading and writing.
    assert_eq!(s.objects(1, Some(&keys[0])).unwrap().len(), 30);
    s.put_object(1, &object(99, true, "after"), Some(&keys[0]))
        .unwrap();
    assert_eq!(s.objects(1, Some(&keys[0])).unwrap().len(), 31);
    // A broken token can be initialised again.
    let (t2, k2) = token(2, 9);
    s.init_token(&t2).unwrap();
    s.put_object(2, &object(1, true, "fresh"), Some(&k2))
        .unwrap();
    assert_eq!(s.objects(2, Some(&k2)).unwrap().len(), 1);
}
