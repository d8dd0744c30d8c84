//! File modes under the data directory: every directory the store makes is
//! 0700 and every file 0600 whatever the process umask, a data directory made
//! beforehand with group/world access is tightened, and the loose modes an
//! older version left (0755 directories, 0644 files) are tightened when the
//! store opens the data directory.
//!
//! The umask is process-wide: every test in this binary (its own process)
//! sets the same permissive umask first thing, so their order does not matter.
mod common;

use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
use std::path::Path;

use common::CHEAP;
use ferrohsm_store::backup::{create_backup, restore_backup};
use ferrohsm_store::{
    AttrValue, AuditEvent, AuditKey, BackupOptions, KeyPolicy, ObjectRecord, PinRole, PinWrap,
    SledOptions, SledStore, StorageKey, Store, TokenRecord, pin_wrap_aad,
};

const SO: &[u8] = b"so-pin-1234";

/// The most permissive umask: without explicit modes everything would be
/// created world-readable and writable.
fn open_umask() {
    // SAFETY: umask(2) only sets the process's file mode creation mask and
    // cannot fail; every test in this binary sets the same value.
    unsafe { libc::umask(0o000) };
}

/// Makes `dir` (and its parents) with `mode` exactly, as a user would
/// beforehand.
fn premade(dir: &Path, mode: u32) {
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(dir)
        .unwrap();
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p).unwrap().permissions().mode() & 0o7777
}

/// Every path under `root` (itself included) whose mode is not 0700 for a
/// directory or 0600 for a regular file (or that is something else), with its
/// mode; and how many files were seen.
fn loose(root: &Path) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut files = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let m = md.permissions().mode() & 0o7777;
        if md.is_dir() {
            if m != 0o700 {
                bad.push(format!("{} (dir {m:04o})", p.display()));
            }
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        } else if md.is_file() {
            files += 1;
            if m != 0o600 {
                bad.push(format!("{} (file {m:04o})", p.display()));
            }
        } else {
            bad.push(format!("{} (neither file nor directory)", p.display()));
        }
    }
    (bad, files)
}

#[track_caller]
fn assert_private(root: &Path) {
    let (bad, files) = loose(root);
    assert!(files > 0, "nothing written under {}", root.display());
    assert!(
        bad.is_empty(),
        "not owner-only under {}:\n{}",
        root.display(),
        bad.join("\n")
    );
}

fn label(s: &str) -> [u8; 32] {
    let mut l = [b' '; 32];
    l[..s.len()].copy_from_slice(s.as_bytes());
    l
}

/// A token in `slot` with an audit log and a public and a private object.
fn make_token(store: &SledStore, slot: u64, name: &str) -> StorageKey {
    let key = StorageKey::generate().unwrap();
    let mut token_id = [0u8; 16];
    getrandom::fill(&mut token_id).unwrap();
    let root = AuditKey::generate().unwrap();
    let rec = TokenRecord {
        slot_id: slot,
        token_id,
        label: label(name),
        serial: *b"0123456789abcdef",
        policy: KeyPolicy::Hsm,
        so_pin: PinWrap::seal(SO, &key, CHEAP, &pin_wrap_aad(&token_id, PinRole::So)).unwrap(),
        user_pin: Some(
            PinWrap::seal(
                b"user",
                &key,
                CHEAP,
                &pin_wrap_aad(&token_id, PinRole::User),
            )
            .unwrap(),
        ),
        so_failures: 0,
        user_failures: 0,
        audit_root: Some(root.seal(&key, &token_id).unwrap()),
    };
    store.init_token(&rec).unwrap();
    store.start_audit(slot, &root).unwrap();
    let objs = [
        ObjectRecord {
            id: 7,
            private: false,
            attrs: vec![(3, AttrValue::Bytes(b"pub".to_vec()))],
        },
        ObjectRecord {
            id: 9,
            private: true,
            attrs: vec![
                (0, AttrValue::Ulong(4)),
                (0x11, AttrValue::Bytes(vec![0xAB; 32])),
            ],
        },
    ];
    store.put_objects(slot, &objs, Some(&key)).unwrap();
    // Enough lines to rotate the log file (see the store's options below).
    for n in 0..40 {
        let mut e = AuditEvent::now("C_Sign", "CKR_OK");
        e.detail = Some(format!("line {n}"));
        store.audit(slot, &[e]).unwrap();
    }
    key
}

fn store(dir: &Path) -> SledStore {
    SledStore::open(
        dir,
        SledOptions {
            audit_max_file_bytes: 2048,
            ..SledOptions::default()
        },
    )
    .unwrap()
}

/// With umask 000 and a data directory made beforehand with mode 0777:
/// tokens, their databases, generation files, audit logs (rotated too) and a
/// restored backup are all owner-only.
#[test]
fn everything_under_the_data_directory_is_owner_only_whatever_the_umask() {
    open_umask();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    premade(&a, 0o777);
    let sa = store(&a);
    assert_eq!(mode(&a), 0o700, "the pre-made data directory is tightened");
    let key = make_token(&sa, 0, "alpha");
    make_token(&sa, 1, "beta");
    sa.delete_object(1, 7).unwrap();
    // Re-initialising a token starts a new audit log beside the old one.
    let t1 = sa.token(1).unwrap().unwrap();
    sa.init_token(&t1).unwrap();
    sa.start_audit(1, &AuditKey::generate().unwrap()).unwrap();
    assert_eq!(sa.objects(0, Some(&key)).unwrap().len(), 2);

    // A backup restored into another data directory (not made beforehand,
    // so the store makes it, and its parent).
    let (file, _) = create_backup(
        &sa,
        0,
        SO,
        &BackupOptions {
            kdf: CHEAP,
            max_login_failures: 3,
        },
    )
    .unwrap();
    let b = tmp.path().join("new").join("b");
    let sb = store(&b);
    let restored = restore_backup(&sb, &file, SO, None).unwrap();
    assert_eq!(restored.objects, 2);
    drop(sa);
    drop(sb);
    // The audit logs did rotate, and sled wrote its files.
    let audit = a.join("token-0").join("audit");
    let rotated = std::fs::read_dir(&audit)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != "log.jsonl")
        .filter(|e| {
            let n = e.as_ref().unwrap().file_name();
            let n = n.to_string_lossy();
            n.starts_with("log.") && n.ends_with(".jsonl")
        })
        .count();
    assert!(rotated > 0, "the audit log was not rotated");
    for f in ["conf", "db", "blobs"] {
        assert!(a.join("token-0/db").join(f).exists(), "no db/{f}");
    }
    assert_private(&a);
    assert_private(&b);
}

/// Modes an older version left (directories 0755, files 0644) are tightened
/// when the store opens the data directory again.
#[test]
fn loose_modes_of_an_older_version_are_tightened_on_open() {
    open_umask();
    let tmp = tempfile::tempdir().unwrap();
    let a = tmp.path().join("a");
    let key = {
        let s = store(&a);
        make_token(&s, 0, "alpha")
    };
    // As an older version (or a umask of 022) would have left them.
    let mut todo = vec![a.clone()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let m = if md.is_dir() {
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
            0o755
        } else {
            0o644
        };
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(m)).unwrap();
    }
    assert!(!loose(&a).0.is_empty());
    let s = store(&a);
    assert_eq!(s.objects(0, Some(&key)).unwrap().len(), 2);
    drop(s);
    assert_private(&a);
}
