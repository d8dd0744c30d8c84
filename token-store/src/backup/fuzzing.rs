//! Fuzz entry point for backup files (see `crate::fuzzing`): `open_backup`
//! with the SO PIN of the seed corpus, so mutations of a real file reach
//! every check after the key wrap.

use super::*;

/// The SO PIN the seed backups were made with.
pub(crate) const PIN: &[u8] = b"fuzz-so-pin";

/// Largest KDF cost run per input: a header may ask `open_backup` for up to
/// 8 GiB and 1000 passes (its own bound), minutes to hours of Argon2id per
/// file, which a fuzzer cannot afford; such headers are checked up to the
/// KDF only.
const FUZZ_KDF_MEMORY_KIB: u32 = 1024;
const FUZZ_KDF_PASSES: u32 = 4;

/// See the module documentation.
pub(crate) fn backup(data: &[u8]) {
    let header = data
        .strip_prefix(MAGIC)
        .and_then(|r| r.get(1..))
        .and_then(|r| postcard::take_from_bytes::<Header>(r).ok());
    if let Some((h, _)) = &header {
        let k = h.wrap.kdf;
        if k.memory_kib > FUZZ_KDF_MEMORY_KIB || k.passes > FUZZ_KDF_PASSES || k.lanes > 4 {
            return;
        }
    }
    match open_backup(data, PIN) {
        Ok(b) => {
            assert_eq!(
                Some(b.token.token_id),
                header.map(|(h, _)| h.token_id),
                "an opened backup's token is not its header's"
            );
            for o in &b.objects {
                let bytes = postcard::to_allocvec(o).expect("encodes");
                let again: ObjectRecord = postcard::from_bytes(&bytes).expect("decodes");
                assert_eq!(&again, o, "object round trip");
            }
        }
        Err(BackupError::TokenExists { .. } | BackupError::LabelTaken { .. }) => {
            panic!("open_backup reports a restore error")
        }
        Err(_) => {}
    }
}

/// Seeds for `fuzz/corpus/backup/`: backups of a token with a public and a
/// private object, current format and version 1, under [`PIN`] with a cheap
/// KDF.
pub(crate) fn seeds() -> Vec<(String, Vec<u8>)> {
    let cheap = KdfParams {
        memory_kib: 8,
        passes: 1,
        lanes: 1,
    };
    let dir = std::env::temp_dir().join(format!("ferrohsm-fuzz-backup-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let store = SledStore::open(&dir, crate::sled_store::SledOptions::default()).expect("a store");
    let key = StorageKey::generate().expect("a key");
    let token_id = [9u8; 16];
    let rec = TokenRecord {
        slot_id: 0,
        token_id,
        label: *b"fuzz backup                     ",
        serial: *b"fedcba9876543210",
        policy: crate::record::KeyPolicy::Hsm,
        so_pin: PinWrap::seal(PIN, &key, cheap, &pin_wrap_aad(&token_id, PinRole::So))
            .expect("seals"),
        user_pin: Some(
            PinWrap::seal(
                b"user",
                &key,
                cheap,
                &pin_wrap_aad(&token_id, PinRole::User),
            )
            .expect("seals"),
        ),
        so_failures: 0,
        user_failures: 0,
        audit_root: None,
    };
    store.init_token(&rec).expect("a token");
    let objects = [
        ObjectRecord {
            id: 3,
            private: false,
            attrs: vec![(3, crate::record::AttrValue::Bytes(b"label".to_vec()))],
        },
        ObjectRecord {
            id: 5,
            private: true,
            attrs: vec![
                (0, crate::record::AttrValue::Ulong(4)),
                (0x11, crate::record::AttrValue::Bytes(vec![0xCD; 16])),
            ],
        },
    ];
    store.put_objects(0, &objects, Some(&key)).expect("objects");
    let options = BackupOptions {
        kdf: cheap,
        max_login_failures: 10,
    };
    let (file, _) = create_backup(&store, 0, PIN, &options).expect("a backup");
    drop(store);
    let _ = std::fs::remove_dir_all(&dir);
    let mut truncated = file.clone();
    truncated.truncate(file.len() / 2);
    vec![("backup".into(), file), ("truncated".into(), truncated)]
}
