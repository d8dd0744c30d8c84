//! Whole-token backups: one sealed file per token, useless without the token's
//! SO PIN.
//!
//! # File format (version 2; version 1 files, without an audit log, are
//! still restored)
//!
//! ```text
//! "FERROHSM-BACKUP\n"      16 bytes, MAGIC
//! 0x01                     format version, VERSION
//! postcard(Header)         token id, label, serial, creation time, the SO PIN
//!                          wrap of the backup key, the body's nonce
//! sealed body              AES-256-GCM(backup key, nonce,
//!                                      aad = every byte before the body,
//!                                      postcard(Body))
//! ```
//!
//! The backup key is a fresh random 256-bit key, stored only wrapped under
//! Argon2id(SO PIN) ([`PinWrap`], associated data `"ferrohsm backup v1/" ||
//! token id`). The body holds the token record (PIN wraps of the storage key,
//! policy, label) and every object in the clear; sealed as a whole it cannot
//! be read without the SO PIN. Because the header is the associated data of
//! the body, a flipped or missing byte anywhere is refused: in the body or the
//! header fields as a failed tag ([`BackupError::Damaged`]), in the wrap itself
//! as a PIN that does not open it ([`BackupError::BackupPinOrDamaged`]: the
//! two cannot be told apart without the key).
//!
//! Restoring writes the token, with the same token id (the associated data of
//! every sealed record and of the manifest), into a new slot above every slot
//! in use, via [`SledStore::init_token`] and one [`SledStore::put_objects`]
//! batch, which re-seals private records under the token's own storage key.
//! The body also carries the token's audit log files (with their chain state),
//! so the restored token's log still verifies with its own audit root; keys
//! scheduled for deletion travel as the sealed records they are.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

use crate::audit::AuditEvent;
use crate::record::{ObjectRecord, StoreError, TokenRecord};
use crate::seal::{KdfParams, PinWrap, SealError, StorageKey};
use crate::sled_store::SledStore;
use crate::sled_store::TokenRecordV1;
use crate::store::Store;

/// The first bytes of every backup file.
pub const MAGIC: &[u8; 16] = b"FERROHSM-BACKUP\n";
/// The format version written by this code (the byte after [`MAGIC`]).
pub const VERSION: u8 = 2;
/// Associated data prefix of the backup key's PIN wrap.
const BACKUP_WRAP_AAD: &[u8] = b"ferrohsm backup v1/";
/// AES-GCM tag length.
const TAG_LEN: usize = 16;

pub use crate::access::{PinRole, pin_wrap_aad};

fn backup_wrap_aad(token_id: &[u8; 16]) -> Vec<u8> {
    [BACKUP_WRAP_AAD, token_id.as_slice()].concat()
}

/// The unencrypted part of a backup file (authenticated as the body's
/// associated data).
#[derive(Serialize, Deserialize)]
struct Header {
    token_id: [u8; 16],
    label: [u8; 32],
    serial: [u8; 16],
    /// Seconds since the Unix epoch.
    created: u64,
    /// The backup key, wrapped under the SO PIN.
    wrap: PinWrap,
    /// Nonce of the body's AES-GCM.
    nonce: [u8; 12],
}

/// The sealed part of a backup file.
#[derive(Serialize, Deserialize)]
struct Body {
    /// Same as the file's version byte (checked).
    format: u8,
    token: TokenRecord,
    objects: Vec<ObjectRecord>,
    /// The audit log files (`AuditLog::export`).
    audit: Vec<(String, Vec<u8>)>,
}

/// The sealed part of a version 1 file.
#[derive(Deserialize)]
struct BodyV1 {
    format: u8,
    token: TokenRecordV1,
    objects: Vec<ObjectRecord>,
}

/// Why a backup or a restore failed. `Display` gives one line for a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupError {
    /// There is no token in the slot to back up.
    NoToken,
    /// The SO PIN does not open the token's storage key.
    WrongPin,
    /// The token's SO PIN is locked after too many wrong PINs.
    PinLocked,
    /// The user PIN was asked for, but the token has none yet (`C_InitPIN`).
    UserPinNotSet,
    /// The token was re-initialised by another process during the backup.
    TokenChanged,
    /// The file does not start with [`MAGIC`].
    NotABackup,
    /// The file is a backup of a format this code does not read.
    UnsupportedVersion(u8),
    /// The SO PIN does not open the backup key: a wrong PIN, or an altered
    /// wrap (indistinguishable without the key).
    BackupPinOrDamaged,
    /// The file is truncated, altered or otherwise unreadable.
    Damaged(String),
    /// A token with the backup's token id is already in the data directory.
    TokenExists {
        /// Its slot.
        slot_id: u64,
    },
    /// A token with the restored label is already in the data directory.
    LabelTaken {
        /// Its slot.
        slot_id: u64,
    },
    /// The store failed.
    Store(StoreError),
    /// Sealing failed (random generator, KDF parameters).
    Seal(SealError),
}

impl std::fmt::Display for BackupError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BackupError::NoToken => write!(f, "no such token"),
            BackupError::WrongPin => write!(f, "wrong SO PIN"),
            BackupError::PinLocked => write!(f, "the SO PIN is locked"),
            BackupError::UserPinNotSet => write!(f, "the token has no user PIN yet"),
            BackupError::TokenChanged => {
                write!(f, "the token was re-initialised during the backup")
            }
            BackupError::NotABackup => write!(f, "not a FerroHSM backup file"),
            BackupError::UnsupportedVersion(v) => {
                write!(
                    f,
                    "backup format version {v} is not supported (this tool reads {VERSION})"
                )
            }
            BackupError::BackupPinOrDamaged => write!(
                f,
                "the SO PIN does not open this backup (wrong PIN, or the file was altered)"
            ),
            BackupError::Damaged(why) => write!(f, "backup file damaged or tampered with: {why}"),
            BackupError::TokenExists { slot_id } => write!(
                f,
                "this token is already in the data directory (slot {slot_id}); \
                 restore into another data directory, or delete the token first \
                 (`ferrohsm delete-token`)"
            ),
            BackupError::LabelTaken { slot_id } => write!(
                f,
                "a token with this label is already in the data directory (slot {slot_id}); \
                 choose another label"
            ),
            BackupError::Store(e) => write!(f, "{e}"),
            BackupError::Seal(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BackupError {}

impl From<StoreError> for BackupError {
    fn from(e: StoreError) -> Self {
        BackupError::Store(e)
    }
}

/// Settings of [`create_backup`]; take them from the module's configuration.
#[derive(Clone, Copy, Debug)]
pub struct BackupOptions {
    /// Argon2id cost of the backup key's wrap under the SO PIN.
    pub kdf: KdfParams,
    /// Consecutive wrong SO PINs that lock the SO PIN (the module's
    /// `max_login_failures`); a wrong PIN here counts as a failed SO login.
    pub max_login_failures: u32,
}

/// What a backup or restore held, for the user.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupSummary {
    /// Slot of the token (the new slot, for a restore).
    pub slot_id: u64,
    /// Token id (the same before and after a restore).
    pub token_id: [u8; 16],
    /// Label, space padded.
    pub label: [u8; 32],
    /// Serial number, space padded.
    pub serial: [u8; 16],
    /// Number of objects, public and private.
    pub objects: usize,
    /// When the backup was made, seconds since the Unix epoch.
    pub created: u64,
}

/// An opened, authenticated backup.
pub struct OpenedBackup {
    /// The token record as it was backed up.
    pub token: TokenRecord,
    /// Every object of the token (keys scheduled for deletion included).
    pub objects: Vec<ObjectRecord>,
    /// The token's audit log files, empty for a version 1 backup.
    pub audit: Vec<(String, Vec<u8>)>,
    /// The token's storage key (opened with the SO PIN from the record).
    pub storage_key: StorageKey,
    /// When the backup was made, seconds since the Unix epoch.
    pub created: u64,
}

impl std::fmt::Debug for OpenedBackup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OpenedBackup")
            .field("slot_id", &self.token.slot_id)
            .field("objects", &self.objects.len())
            .finish_non_exhaustive()
    }
}

/// Verifies `so_pin` against the token in `slot_id` and counts the outcome as
/// an SO login would (a wrong PIN adds a failure, a right one clears them;
/// a locked PIN stays locked). Returns the token record and storage key.
pub fn open_with_so_pin(
    store: &dyn Store,
    slot_id: u64,
    so_pin: &[u8],
    max_login_failures: u32,
) -> Result<(TokenRecord, StorageKey), BackupError> {
    open_with_pin(store, slot_id, PinRole::So, so_pin, max_login_failures)
}

/// [`open_with_so_pin`] for either role: the tool's commands that need the
/// storage key count their PIN checks exactly as `C_Login` does, because
/// both go through the one gate, [`crate::access::check_pin`].
pub fn open_with_pin(
    store: &dyn Store,
    slot_id: u64,
    role: PinRole,
    pin: &[u8],
    max_login_failures: u32,
) -> Result<(TokenRecord, StorageKey), BackupError> {
    crate::access::tool_login(store, slot_id, role, pin, max_login_failures)
        .map_err(BackupError::from)
}

impl From<crate::access::AccessError> for BackupError {
    fn from(e: crate::access::AccessError) -> Self {
        use crate::access::AccessError as A;
        match e {
            A::NoToken => BackupError::NoToken,
            A::UserPinNotSet => BackupError::UserPinNotSet,
            A::WrongPin { .. } => BackupError::WrongPin,
            A::PinLocked => BackupError::PinLocked,
            A::TokenChanged => BackupError::TokenChanged,
            A::Store(e) => BackupError::Store(e),
            A::Seal(e) => BackupError::Seal(e),
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// Backs up the token in `slot_id`: checks the SO PIN (counted as an SO
/// login), reads the token record and every object with the storage key (so
/// the token's own integrity checks run) and returns the sealed file bytes.
pub fn create_backup(
    store: &SledStore,
    slot_id: u64,
    so_pin: &[u8],
    options: &BackupOptions,
) -> Result<(Vec<u8>, BackupSummary), BackupError> {
    let (rec, key) = open_with_so_pin(store, slot_id, so_pin, options.max_login_failures)?;
    let objects = store.objects(slot_id, Some(&key))?;
    // A re-initialisation between the two reads would have changed the id
    // (and the objects would then have failed authentication already).
    let again = store.token(slot_id)?.ok_or(BackupError::TokenChanged)?;
    if again.token_id != rec.token_id {
        return Err(BackupError::TokenChanged);
    }
    let mut token = again;
    token.so_failures = 0;
    let backup_key = StorageKey::generate().map_err(BackupError::Seal)?;
    let wrap = PinWrap::seal(
        so_pin,
        &backup_key,
        options.kdf,
        &backup_wrap_aad(&token.token_id),
    )
    .map_err(BackupError::Seal)?;
    let mut nonce = [0u8; 12];
    getrandom::fill(&mut nonce).map_err(|_| BackupError::Seal(SealError::Rng))?;
    let created = now();
    let header = Header {
        token_id: token.token_id,
        label: token.label,
        serial: token.serial,
        created,
        wrap,
        nonce,
    };
    let summary = BackupSummary {
        slot_id,
        token_id: token.token_id,
        label: token.label,
        serial: token.serial,
        objects: objects.len(),
        created,
    };
    let log = store.audit_log(slot_id);
    let audit = if log.is_started() {
        log.export().map_err(StoreError::from)?
    } else {
        Vec::new()
    };
    let body = Body {
        format: VERSION,
        token,
        objects,
        audit,
    };
    let plain = Zeroizing::new(
        postcard::to_allocvec(&body)
            .map_err(|_| BackupError::Store(StoreError::Io("cannot encode backup".into())))?,
    );
    drop(body);
    let mut file = MAGIC.to_vec();
    file.push(VERSION);
    file.extend(
        postcard::to_allocvec(&header)
            .map_err(|_| BackupError::Store(StoreError::Io("cannot encode backup".into())))?,
    );
    let cipher = Aes256Gcm::new_from_slice(backup_key.bytes())
        .map_err(|_| BackupError::Seal(SealError::BadParams))?;
    let sealed = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: &plain,
                aad: &file,
            },
        )
        .map_err(|_| BackupError::Seal(SealError::BadParams))?;
    file.extend(sealed);
    Ok((file, summary))
}

/// Checks and decrypts a backup file with the SO PIN it was made with.
pub fn open_backup(file: &[u8], so_pin: &[u8]) -> Result<OpenedBackup, BackupError> {
    let rest = file.strip_prefix(MAGIC).ok_or(BackupError::NotABackup)?;
    let (&version, rest) = rest
        .split_first()
        .ok_or_else(|| BackupError::Damaged("truncated after the magic".into()))?;
    if version != VERSION && version != 1 {
        return Err(BackupError::UnsupportedVersion(version));
    }
    let (header, body) = postcard::take_from_bytes::<Header>(rest)
        .map_err(|_| BackupError::Damaged("the header cannot be decoded".into()))?;
    if body.len() < TAG_LEN {
        return Err(BackupError::Damaged("truncated".into()));
    }
    let aad = &file[..file.len() - body.len()];
    let kdf = header.wrap.kdf;
    if !kdf.plausible() {
        // Not from this code: refuse before the KDF allocates or spins.
        return Err(BackupError::Damaged(
            "implausible KDF cost in the header".into(),
        ));
    }
    let backup_key = header
        .wrap
        .open(so_pin, &backup_wrap_aad(&header.token_id))
        .map_err(|e| match e {
            SealError::BadPin => BackupError::BackupPinOrDamaged,
            other => BackupError::Damaged(format!("the header's key wrap is unusable: {other}")),
        })?;
    let cipher = Aes256Gcm::new_from_slice(backup_key.bytes())
        .map_err(|_| BackupError::Seal(SealError::BadParams))?;
    let plain = Zeroizing::new(
        cipher
            .decrypt(&Nonce::from(header.nonce), Payload { msg: body, aad })
            .map_err(|_| {
                BackupError::Damaged("authentication failed (altered or truncated)".into())
            })?,
    );
    let decoded: Body = if version == 1 {
        match postcard::take_from_bytes::<BodyV1>(&plain) {
            Ok((b, [])) => Body {
                format: b.format,
                token: b.token.into(),
                objects: b.objects,
                audit: Vec::new(),
            },
            _ => return Err(BackupError::Damaged("the body cannot be decoded".into())),
        }
    } else {
        match postcard::take_from_bytes::<Body>(&plain) {
            Ok((b, [])) => b,
            _ => return Err(BackupError::Damaged("the body cannot be decoded".into())),
        }
    };
    if decoded.format != version
        || decoded.token.token_id != header.token_id
        || decoded.token.label != header.label
        || decoded.token.serial != header.serial
    {
        return Err(BackupError::Damaged(
            "the body does not match its header".into(),
        ));
    }
    let storage_key = decoded
        .token
        .so_pin
        .open(so_pin, &pin_wrap_aad(&decoded.token.token_id, PinRole::So))
        .map_err(|_| {
            BackupError::Damaged("the token's SO PIN wrap does not open with this PIN".into())
        })?;
    Ok(OpenedBackup {
        token: decoded.token,
        objects: decoded.objects,
        audit: decoded.audit,
        storage_key,
        created: header.created,
    })
}

/// Restores a backup into a new slot of `store` (above every slot in use),
/// with the same token id, optionally under a new `label` (space padded).
///
/// Refuses a token whose id is already in the store, and a label another
/// token already has. All objects are written in one atomic batch; if that
/// fails the new token directory is removed again.
pub fn restore_backup(
    store: &SledStore,
    file: &[u8],
    so_pin: &[u8],
    label: Option<[u8; 32]>,
) -> Result<BackupSummary, BackupError> {
    let opened = open_backup(file, so_pin)?;
    let scan = store.scan_tokens()?;
    if let Some(t) = scan
        .tokens
        .iter()
        .find(|t| t.token_id == opened.token.token_id)
    {
        return Err(BackupError::TokenExists { slot_id: t.slot_id });
    }
    let label = label.unwrap_or(opened.token.label);
    if let Some(t) = scan.tokens.iter().find(|t| t.label == label) {
        return Err(BackupError::LabelTaken { slot_id: t.slot_id });
    }
    let slot_id = match store.slot_ids()?.into_iter().max() {
        Some(top) => top
            .checked_add(1)
            .ok_or_else(|| StoreError::Io("no free slot ID".into()))?,
        None => 0,
    };
    // Another process could have created this slot since the listing.
    if store.token(slot_id)?.is_some() {
        return Err(BackupError::Store(StoreError::Io(format!(
            "slot {slot_id} was taken by another process meanwhile; try again"
        ))));
    }
    let mut token = opened.token.clone();
    token.slot_id = slot_id;
    token.label = label;
    token.so_failures = 0;
    store.init_token(&token)?;
    let written = store
        .put_objects(slot_id, &opened.objects, Some(&opened.storage_key))
        .and_then(|()| {
            if opened.audit.is_empty() {
                return Ok(());
            }
            store.audit_log(slot_id).import(&opened.audit)?;
            let mut e = AuditEvent::now("ferrohsm restore", "CKR_OK");
            e.detail = Some(format!(
                "restored into slot {slot_id} from a backup made at {}",
                crate::audit::rfc3339(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(opened.created)
                )
            ));
            store.audit(slot_id, &[e])
        });
    if let Err(e) = written {
        let _ = std::fs::remove_dir_all(store.token_dir(slot_id));
        return Err(e.into());
    }
    Ok(BackupSummary {
        slot_id,
        token_id: token.token_id,
        label,
        serial: token.serial,
        objects: opened.objects.len(),
        created: opened.created,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{AttrValue, KeyPolicy};
    use crate::sled_store::SledOptions;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };
    const SO: &[u8] = b"so-pin-1234";
    const OPTS: BackupOptions = BackupOptions {
        kdf: CHEAP,
        max_login_failures: 3,
    };

    fn label(s: &str) -> [u8; 32] {
        let mut l = [b' '; 32];
        l[..s.len()].copy_from_slice(s.as_bytes());
        l
    }

    /// A token in `slot` with one public and one private object.
    fn make_token(store: &SledStore, slot: u64, name: &str) -> TokenRecord {
        let key = StorageKey::generate().unwrap();
        let mut token_id = [0u8; 16];
        getrandom::fill(&mut token_id).unwrap();
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
            user_failures: 1,
            audit_root: None,
        };
        store.init_token(&rec).unwrap();
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
        rec
    }

    fn store(dir: &std::path::Path) -> SledStore {
        SledStore::open(dir, SledOptions::default()).unwrap()
    }

    #[test]
    fn round_trip_into_another_directory() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = store(a.path());
        let rec = make_token(&sa, 0, "alpha");
        let (file, summary) = create_backup(&sa, 0, SO, &OPTS).unwrap();
        assert_eq!(summary.objects, 2);
        assert!(file.starts_with(MAGIC));
        // No object value in the clear.
        assert!(!file.windows(8).any(|w| w == [0xAB; 8]));
        let sb = store(b.path());
        make_token(&sb, 3, "other");
        let restored = restore_backup(&sb, &file, SO, None).unwrap();
        assert_eq!(restored.slot_id, 4);
        assert_eq!(restored.token_id, rec.token_id);
        let back = sb.token(4).unwrap().unwrap();
        assert_eq!(back.label, label("alpha"));
        assert_eq!(back.user_failures, 1);
        let key = back
            .so_pin
            .open(SO, &pin_wrap_aad(&back.token_id, PinRole::So))
            .unwrap();
        let mut objs = sb.objects(4, Some(&key)).unwrap();
        objs.sort_by_key(|o| o.id);
        let mut orig = sa
            .objects(
                0,
                Some(
                    &rec.so_pin
                        .open(SO, &pin_wrap_aad(&rec.token_id, PinRole::So))
                        .unwrap(),
                ),
            )
            .unwrap();
        orig.sort_by_key(|o| o.id);
        assert_eq!(objs, orig);
        // Same token again: refused; under a new label into the same
        // directory: still refused (same token id).
        assert!(matches!(
            restore_backup(&sb, &file, SO, None),
            Err(BackupError::TokenExists { slot_id: 4 })
        ));
        assert!(matches!(
            restore_backup(&sa, &file, SO, Some(label("beta"))),
            Err(BackupError::TokenExists { slot_id: 0 })
        ));
    }

    /// A version 1 file (before audit logs: no audit files, a token record
    /// without `audit_root`) still opens and restores. Made here by
    /// re-encoding a current backup as version 1 would have written it.
    #[test]
    fn version_1_files_still_restore() {
        #[derive(Serialize)]
        struct TokenV1<'a> {
            slot_id: u64,
            token_id: [u8; 16],
            label: [u8; 32],
            serial: [u8; 16],
            policy: crate::record::KeyPolicy,
            so_pin: &'a PinWrap,
            user_pin: &'a Option<PinWrap>,
            so_failures: u32,
            user_failures: u32,
        }
        #[derive(Serialize)]
        struct BodyV1Out<'a> {
            format: u8,
            token: TokenV1<'a>,
            objects: &'a [ObjectRecord],
        }
        let a = tempfile::tempdir().unwrap();
        let sa = store(a.path());
        make_token(&sa, 0, "old");
        let (v2, _) = create_backup(&sa, 0, SO, &OPTS).unwrap();
        let opened = open_backup(&v2, SO).unwrap();
        let (header, _) = postcard::take_from_bytes::<Header>(&v2[MAGIC.len() + 1..]).unwrap();
        let t = &opened.token;
        let body = postcard::to_allocvec(&BodyV1Out {
            format: 1,
            token: TokenV1 {
                slot_id: t.slot_id,
                token_id: t.token_id,
                label: t.label,
                serial: t.serial,
                policy: t.policy,
                so_pin: &t.so_pin,
                user_pin: &t.user_pin,
                so_failures: t.so_failures,
                user_failures: t.user_failures,
            },
            objects: &opened.objects,
        })
        .unwrap();
        let backup_key = header
            .wrap
            .open(SO, &backup_wrap_aad(&header.token_id))
            .unwrap();
        let mut v1 = MAGIC.to_vec();
        v1.push(1);
        v1.extend(postcard::to_allocvec(&header).unwrap());
        let sealed = Aes256Gcm::new_from_slice(backup_key.bytes())
            .unwrap()
            .encrypt(
                &Nonce::from(header.nonce),
                Payload {
                    msg: &body,
                    aad: &v1,
                },
            )
            .unwrap();
        v1.extend(sealed);
        let old = open_backup(&v1, SO).unwrap();
        assert!(old.audit.is_empty());
        assert_eq!(old.token.audit_root, None);
        assert_eq!(old.objects, opened.objects);
        let b = tempfile::tempdir().unwrap();
        let sb = store(b.path());
        let restored = restore_backup(&sb, &v1, SO, None).unwrap();
        assert_eq!(restored.objects, 2);
        assert!(!sb.audit_started(restored.slot_id), "no log came with it");
    }

    #[test]
    fn label_taken_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let sa = store(a.path());
        make_token(&sa, 0, "alpha");
        let (file, _) = create_backup(&sa, 0, SO, &OPTS).unwrap();
        let sb = store(b.path());
        make_token(&sb, 0, "alpha");
        assert!(matches!(
            restore_backup(&sb, &file, SO, None),
            Err(BackupError::LabelTaken { slot_id: 0 })
        ));
        let ok = restore_backup(&sb, &file, SO, Some(label("alpha2"))).unwrap();
        assert_eq!(ok.label, label("alpha2"));
    }

    #[test]
    fn wrong_pin_counts_and_locks() {
        let a = tempfile::tempdir().unwrap();
        let s = store(a.path());
        make_token(&s, 0, "alpha");
        assert_eq!(
            create_backup(&s, 0, b"nope", &OPTS).unwrap_err(),
            BackupError::WrongPin
        );
        assert_eq!(s.token(0).unwrap().unwrap().so_failures, 1);
        // A right PIN clears the count.
        create_backup(&s, 0, SO, &OPTS).unwrap();
        assert_eq!(s.token(0).unwrap().unwrap().so_failures, 0);
        for _ in 0..3 {
            assert_eq!(
                create_backup(&s, 0, b"nope", &OPTS).unwrap_err(),
                BackupError::WrongPin
            );
        }
        assert_eq!(
            create_backup(&s, 0, SO, &OPTS).unwrap_err(),
            BackupError::PinLocked
        );
        assert_eq!(
            create_backup(&s, 5, SO, &OPTS).unwrap_err(),
            BackupError::NoToken
        );
    }

    #[test]
    fn every_flipped_byte_and_truncation_is_refused() {
        let a = tempfile::tempdir().unwrap();
        let s = store(a.path());
        make_token(&s, 0, "alpha");
        let (file, _) = create_backup(&s, 0, SO, &OPTS).unwrap();
        assert!(open_backup(&file, SO).is_ok());
        assert_eq!(
            open_backup(&file, b"wrong").unwrap_err(),
            BackupError::BackupPinOrDamaged
        );
        for i in 0..file.len() {
            let mut bad = file.clone();
            bad[i] ^= 0x01;
            assert!(open_backup(&bad, SO).is_err(), "flip at {i} accepted");
        }
        for len in 0..file.len() {
            assert!(
                open_backup(&file[..len], SO).is_err(),
                "truncation to {len} accepted"
            );
        }
        let mut longer = file.clone();
        longer.push(0);
        assert!(open_backup(&longer, SO).is_err());
        assert_eq!(
            open_backup(b"hello", SO).unwrap_err(),
            BackupError::NotABackup
        );
        let mut v3 = file.clone();
        v3[MAGIC.len()] = 3;
        assert_eq!(
            open_backup(&v3, SO).unwrap_err(),
            BackupError::UnsupportedVersion(3)
        );
        // The version byte is authenticated: a v2 file relabelled v1 is refused.
        let mut v1 = file.clone();
        v1[MAGIC.len()] = 1;
        assert!(open_backup(&v1, SO).is_err());
    }

    #[test]
    fn aad_matches_the_modules_format() {
        let id = [7u8; 16];
        let mut want = b"ferrohsm pin wrap v1/".to_vec();
        want.extend_from_slice(&id);
        want.extend_from_slice(b"/so");
        assert_eq!(pin_wrap_aad(&id, PinRole::So), want);
    }
}

/// Fuzz entry point (`crate::fuzzing`, `fuzz/`).
pub(crate) mod fuzzing;
