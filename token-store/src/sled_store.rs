//! Persistent [`Store`] on sled 0.34, one sled database per token.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/token-<slot_id>/db/          sled database of that token
//! <data_dir>/token-<slot_id>/generation   decimal change counter (see `generation`)
//! ```
//!
//! The data directory and every directory under it are 0700, every file 0600,
//! whatever the umask; [`SledStore::open`] tightens what an older version left
//! looser (see `private_fs`).
//!
//! Keys in the database's default tree (all integers big-endian):
//!
//! | key                                   | value                                                       |
//! |---------------------------------------|-------------------------------------------------------------|
//! | `t`                                   | format byte `1` + postcard(`TokenRecord`) — no secret in it |
//! | `s`                                   | u64 change sequence (the generation)                        |
//! | `m`                                   | sealed manifest (only after a write with the storage key)   |
//! | `o` id                                | format byte `1` + postcard(`Envelope{version,private,body}`)|
//! | `p` id                                | empty: "changed without the key" marker (see below)         |
//! | `i` attr_type len(u32) value id       | empty: public-attribute index entry                         |
//! | `r` id                                | postcard(list of that object's `i` keys)                    |
//! | `d` id                                | u64 Unix time: the object is scheduled for deletion then    |
//!
//! # Sealing
//!
//! A private record's `body` is `seal_record(key, aad, postcard(ObjectRecord))`
//! with `aad = token_id (16) || object id (8, BE) || version (8, BE)`: the whole
//! record, attributes and all, is AES-256-GCM sealed, and cannot be moved to
//! another token, slot, object or version. A public record's `body` is
//! postcard(`ObjectRecord`) in the clear; a public record carrying `CKA_VALUE`
//! with class `CKO_SECRET_KEY`/`CKO_PRIVATE_KEY` is refused (`KeyRequired`).
//!
//! `version` is the token's change sequence at the time of the write, so it
//! grows with every write of every record and is never reused.
//!
//! # Rollback and tamper detection
//!
//! The manifest, sealed under the storage key with
//! `aad = "ferrohsm/manifest/v1" || token_id`, maps each object id to
//! `(version, private, hash)`, where `hash` is the first 16 bytes of
//! SHA-256(`token_id || id || version || private || body`). With the key,
//! [`Store::objects`] requires every record to match its manifest entry and
//! every private entry to have its record, so a flipped byte, a record copied
//! from another token, two records swapped and an older copy put back are all
//! reported as [`StoreError::Corrupt`]; private records are in addition
//! authenticated by their own AEAD tag.
//!
//! Limits, by construction:
//! * Without the key (no login) public records cannot be authenticated: a
//!   public-only read detects only undecodable records and records whose
//!   embedded id does not match their key (a swap). Tampering with a public
//!   record's attributes is detected only by a read with the key.
//! * Writes of public records without the key and `delete_object` (which gets
//!   no key) cannot update the sealed manifest. They leave a `p` marker; a
//!   public record with a marker is accepted unverified until the next write
//!   with the key folds it into the manifest. A private record must always
//!   match its entry, whatever the markers say; but a marked object may be
//!   absent (deleted without the key) or public (replaced by a public record
//!   without the key, which the `Store` contract allows). Someone who can
//!   write the files can therefore delete objects, or replace them with
//!   public ones, by also adding a marker; they cannot alter, move, swap or
//!   roll back private records, nor read them.
//! * Rolling back the *whole* database (manifest and records together) to an
//!   older consistent state is not detectable without a monotonic counter
//!   outside the files.
//!
//! # Atomicity and durability
//!
//! Every mutation is one sled batch on one tree (applied atomically, also
//! across a crash), followed by `flush()` before `Ok` is returned; then the
//! `generation` file is rewritten from `s` (temp file, fsync, rename, fsync of
//! the directory) while the database lock is still held. A crash between the
//! two leaves a stale `generation`, which the next call that opens the
//! database repairs.
//!
//! # Processes and threads
//!
//! sled takes an exclusive `flock` on its database. Calls of one `SledStore`
//! are serialized by a mutex. After a call the database stays open for
//! [`SledOptions::linger`] (20 ms), so that a burst of calls pays sled's open
//! cost (which grows with the number of records) once; a `ferrohsm-store`
//! thread closes it when it has been idle that long, and exits. Another
//! process that finds the database locked retries with backoff until
//! [`SledOptions::lock_deadline`], then gets
//! `StoreError::Io("… locked by another process …")`. [`SledStore::release`]
//! closes it at once (the module calls it before `fork()`, so a child never
//! inherits the lock); dropping the store closes it and joins the thread.
//!
//! sled 0.34 is opened with `flush_every_ms(None)`, so it starts no flusher
//! thread, and FerroHSM builds it with the inline I/O "pool" (upstream's miri
//! mode, see `vendor/sled/FERROHSM-PATCH.md`), so it starts no thread at all.
//! `tests/threads.rs` checks both.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::audit::{AuditEvent, AuditLog, AuditOptions};
use crate::record::{AttrValue, ObjectRecord, StoreError, TokenRecord};
use crate::seal::StorageKey;
use crate::seal::{AuditKey, open_record, seal_record};
use crate::store::Store;

use crate::attr::{
    CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_LABEL, CKA_VALUE, CKO_PRIVATE_KEY, CKO_SECRET_KEY,
};

/// Attribute types of public records that [`SledStore::find_public`] can
/// look up: class, label, key type, id. None of them is secret.
pub const INDEXED_ATTRS: [u64; 4] = [CKA_CLASS, CKA_LABEL, CKA_KEY_TYPE, CKA_ID];

const FORMAT: u8 = 1;
const K_TOKEN: &[u8] = b"t";
const K_SEQ: &[u8] = b"s";
const K_MANIFEST: &[u8] = b"m";
const P_OBJECT: u8 = b'o';
const P_PENDING: u8 = b'p';
const P_INDEX: u8 = b'i';
const P_REVERSE: u8 = b'r';
const P_DUE: u8 = b'd';
const MANIFEST_AAD: &[u8] = b"ferrohsm/manifest/v1";

/// Options of a [`SledStore`].
#[derive(Clone, Debug)]
pub struct SledOptions {
    /// How long a call waits for a token database locked by another process
    /// (or another `SledStore`) before failing with `StoreError::Io`.
    pub lock_deadline: Duration,
    /// How long the last database used stays open after a call, so that a
    /// burst of calls opens it once (opening costs O(records) in sled 0.34).
    /// Other processes wait at most this long for it. Zero: close at once.
    pub linger: Duration,
    /// sled page cache size per open database, in bytes.
    pub cache_capacity: u64,
    /// Size at which a token's audit log file is rotated (see `audit`).
    pub audit_max_file_bytes: u64,
}

impl Default for SledOptions {
    fn default() -> Self {
        SledOptions {
            lock_deadline: Duration::from_secs(10),
            linger: Duration::from_millis(20),
            cache_capacity: 8 << 20,
            audit_max_file_bytes: AuditOptions::default().max_file_bytes,
        }
    }
}

/// A token directory that could not be read, as reported by
/// [`SledStore::scan_tokens`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokenToken {
    /// Slot ID taken from the directory name (`token-<slot_id>`).
    pub slot_id: u64,
    /// The token directory.
    pub path: PathBuf,
    /// Why it could not be read (`Corrupt` or `Io`).
    pub error: StoreError,
}

/// The result of listing the token directories: the readable tokens and,
/// separately, the ones that could not be read.
#[derive(Clone, Debug, Default)]
pub struct TokenScan {
    /// Readable, initialised tokens, by slot ID.
    pub tokens: Vec<TokenRecord>,
    /// Token directories that exist but could not be read.
    pub broken: Vec<BrokenToken>,
}

/// The persistent store: one sled database per token under a data directory.
///
/// Keeps the last database it used open for [`SledOptions::linger`] after a
/// call, then closes it. See the module documentation.
pub struct SledStore {
    dir: PathBuf,
    options: SledOptions,
    notes: Vec<String>,
    serial: Mutex<()>,
    held: Arc<Mutex<Held>>,
    closer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// The database kept open between calls, and when it was last used.
#[derive(Default)]
struct Held {
    db: Option<(u64, sled::Db)>,
    last_use: Option<Instant>,
    closer_running: bool,
}

impl Drop for SledStore {
    fn drop(&mut self) {
        self.release();
        if let Some(h) = self.closer.lock().take() {
            let _ = h.join();
        }
    }
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore").field("dir", &self.dir).finish()
    }
}

/// One stored object record (value of an `o` key, after the format byte).
#[derive(Serialize, Deserialize)]
struct Envelope {
    version: u64,
    private: bool,
    body: Vec<u8>,
}

#[derive(Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
struct ManifestEntry {
    version: u64,
    private: bool,
    hash: [u8; 16],
}

#[derive(Default, Serialize, Deserialize)]
struct Manifest {
    /// Highest sequence number written with the key (guards against a
    /// rolled-back `s`).
    seq: u64,
    entries: BTreeMap<u64, ManifestEntry>,
}

fn corrupt(m: impl Into<String>) -> StoreError {
    StoreError::Corrupt(m.into())
}

/// A token database without its token record: damaged, or its first
/// initialisation was interrupted. Reported as corrupt (the directory exists),
/// never as "no such token".
fn no_record(slot_id: u64) -> StoreError {
    corrupt(format!(
        "token {slot_id}: database holds no token record \
         (first initialisation interrupted, or damaged)"
    ))
}

fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

fn id_key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

fn key_id(k: &[u8]) -> Result<u64, StoreError> {
    if k.len() < 9 {
        return Err(corrupt("malformed key"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[k.len() - 8..]);
    Ok(u64::from_be_bytes(b))
}

/// Associated data of a sealed object record.
fn record_aad(token_id: &[u8; 16], id: u64, version: u64) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..16].copy_from_slice(token_id);
    a[16..24].copy_from_slice(&id.to_be_bytes());
    a[24..].copy_from_slice(&version.to_be_bytes());
    a
}

fn manifest_aad(token_id: &[u8; 16]) -> Vec<u8> {
    [MANIFEST_AAD, token_id.as_slice()].concat()
}

fn record_hash(token_id: &[u8; 16], id: u64, env: &Envelope) -> [u8; 16] {
    let mut h = Sha256::new();
    h.update(record_aad(token_id, id, env.version));
    h.update([u8::from(env.private)]);
    h.update(&env.body);
    let d = h.finalize();
    let mut out = [0u8; 16];
    out.copy_from_slice(&d[..16]);
    out
}

fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_allocvec(v).map_err(|_| io("cannot encode record"))?);
    Ok(out)
}

fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => match postcard::take_from_bytes::<T>(rest) {
            Ok((v, [])) => Ok(v),
            _ => Err(corrupt(format!("{what} cannot be decoded"))),
        },
        _ => Err(corrupt(format!("{what} has an unknown format"))),
    }
}

/// True when a public record would carry secret key material in the clear.
fn carries_secret(obj: &ObjectRecord) -> bool {
    let class = obj.attrs.iter().find(|(t, _)| *t == CKA_CLASS);
    let secret_class = matches!(
        class,
        Some((_, AttrValue::Ulong(CKO_SECRET_KEY | CKO_PRIVATE_KEY)))
    );
    secret_class && obj.attrs.iter().any(|(t, _)| *t == CKA_VALUE)
}

/// The index keys of a public record.
fn index_keys(obj: &ObjectRecord) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = Vec::new();
    for (t, v) in &obj.attrs {
        if INDEXED_ATTRS.contains(t) {
            keys.push(index_key(*t, v, Some(obj.id))?);
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// `i || type || len || value` (the prefix), then `|| id` when `id` is given.
fn index_key(attr_type: u64, value: &AttrValue, id: Option<u64>) -> Result<Vec<u8>, StoreError> {
    let enc = postcard::to_allocvec(value).map_err(|_| io("cannot encode attribute"))?;
    let len = u32::try_from(enc.len()).map_err(|_| io("attribute too long to index"))?;
    let mut k = Vec::with_capacity(1 + 8 + 4 + enc.len() + 8);
    k.push(P_INDEX);
    k.extend_from_slice(&attr_type.to_be_bytes());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&enc);
    if let Some(id) = id {
        k.extend_from_slice(&id.to_be_bytes());
    }
    Ok(k)
}

fn map_sled(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Io(e.to_string()),
        sled::Error::Corruption { .. } => corrupt("database corrupt (sled)"),
        sled::Error::ReportableBug(_) => corrupt("database unreadable (sled internal error)"),
        other => StoreError::Io(other.to_string()),
    }
}

fn read_u64(db: &sled::Db, key: &[u8]) -> Result<u64, StoreError> {
    match db.get(key).map_err(map_sled)? {
        None => Ok(0),
        Some(v) => {
            let b: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("sequence number malformed"))?;
            Ok(u64::from_be_bytes(b))
        }
    }
}

impl SledStore {
    /// Opens (creating it if needed) the data directory. No token database is
    /// opened here; each call opens the one it needs for its own duration.
    ///
    /// Everything under the data directory is owner-only (directories 0700,
    /// files 0600) whatever the umask. A data directory that exists with group
    /// or world access is made owner-only, and so is whatever an older version
    /// left readable by others in its token directories ([`SledStore::notes`]
    /// says what was changed); one that is shared by design (sticky bit),
    /// holds entries that are not FerroHSM's, or belongs to another user is
    /// refused with `StoreError::Io` saying what to do.
    pub fn open(data_dir: &Path, options: SledOptions) -> Result<SledStore, StoreError> {
        let notes = crate::private_fs::prepare_data_dir(data_dir)?;
        Ok(SledStore {
            dir: data_dir.to_path_buf(),
            options,
            notes,
            serial: Mutex::new(()),
            held: Arc::new(Mutex::new(Held::default())),
            closer: Mutex::new(None),
        })
    }

    /// Closes the database kept open between calls, if any (before `fork()`,
    /// so the child inherits no lock; at drop).
    pub fn release(&self) {
        self.held.lock().db = None;
    }

    /// Starts the thread that closes the held database once it has been idle
    /// for `linger`, unless it is running; it exits when nothing is held.
    fn ensure_closer(&self, held: &mut Held) {
        if held.closer_running {
            return;
        }
        held.closer_running = true;
        let weak = Arc::downgrade(&self.held);
        let linger = self.options.linger;
        let spawned = std::thread::Builder::new()
            .name("ferrohsm-store".into())
            .spawn(move || {
                loop {
                    std::thread::sleep(linger / 2);
                    let Some(held) = weak.upgrade() else { return };
                    let mut h = held.lock();
                    if h.last_use.is_none_or(|t| t.elapsed() >= linger) {
                        h.db = None;
                    }
                    if h.db.is_none() {
                        h.closer_running = false;
                        return;
                    }
                }
            });
        match spawned {
            Ok(j) => {
                // A previous closer has exited (closer_running was false).
                if let Some(old) = self.closer.lock().replace(j) {
                    let _ = old.join();
                }
            }
            Err(_) => {
                // No thread: do not keep the database open.
                held.closer_running = false;
                held.db = None;
            }
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// What [`SledStore::open`] changed to make the data directory
    /// owner-only, one line each (for the caller's log at `info`); empty
    /// when nothing was needed.
    pub fn notes(&self) -> &[String] {
        &self.notes
    }

    /// The directory of the token in `slot_id` (which may not exist).
    pub fn token_dir(&self, slot_id: u64) -> PathBuf {
        self.dir.join(format!("token-{slot_id}"))
    }

    /// The audit log of the token in `slot_id` (`<token dir>/audit`).
    pub fn audit_log(&self, slot_id: u64) -> AuditLog {
        AuditLog::new(
            &self.token_dir(slot_id).join("audit"),
            AuditOptions {
                max_file_bytes: self.options.audit_max_file_bytes,
            },
        )
    }

    fn db_path(&self, slot_id: u64) -> PathBuf {
        self.token_dir(slot_id).join("db")
    }

    /// Opens the token's database (retrying a held lock until the deadline),
    /// runs `f` on it, and closes it. sled panics become `Corrupt`.
    fn with_db<R>(
        &self,
        slot_id: u64,
        create: bool,
        f: impl FnOnce(&sled::Db) -> Result<R, StoreError>,
    ) -> Result<R, StoreError> {
        let mut held = self.held.lock();
        let reuse = matches!(&held.db, Some((s, _)) if *s == slot_id);
        let path = self.db_path(slot_id);
        if !reuse && !create && !path.join("conf").exists() {
            return Err(StoreError::NotFound);
        }
        let db = match held.db.take() {
            Some((_, db)) if reuse => db,
            _ => self.open_db(slot_id, &path)?,
        };
        let result = catch_unwind(AssertUnwindSafe(|| {
            let r = f(&db)?;
            self.sync_generation(slot_id, &db)?;
            Ok(r)
        }));
        let result = result.unwrap_or_else(|_| {
            Err(corrupt(format!(
                "token {slot_id}: database unreadable (sled panicked)"
            )))
        });
        // Keep it open for the next call, unless something went wrong with it.
        if result.is_ok() && !self.options.linger.is_zero() {
            held.db = Some((slot_id, db));
            held.last_use = Some(Instant::now());
            self.ensure_closer(&mut held);
        }
        result
    }

    /// Opens a token database, retrying while another process holds it.
    fn open_db(&self, slot_id: u64, path: &Path) -> Result<sled::Db, StoreError> {
        let deadline = Instant::now() + self.options.lock_deadline;
        let mut backoff = Duration::from_millis(1);
        let mut cleaned = false;
        let config = sled::Config::new()
            .path(path)
            .flush_every_ms(None)
            .cache_capacity(self.options.cache_capacity);
        let db = loop {
            match catch_unwind(AssertUnwindSafe(|| config.open())) {
                Err(_) => {
                    return Err(corrupt(format!(
                        "token {slot_id}: database unreadable (sled panicked on open)"
                    )));
                }
                Ok(Ok(db)) => break db,
                Ok(Err(sled::Error::Io(e))) if e.to_string().contains("could not acquire lock") => {
                    let now = Instant::now();
                    if now >= deadline {
                        return Err(StoreError::Io(format!(
                            "token {slot_id}: database {} locked by another process \
                             (waited {:?})",
                            path.display(),
                            self.options.lock_deadline
                        )));
                    }
                    std::thread::sleep(backoff.min(deadline - now));
                    backoff = (backoff * 2).min(Duration::from_millis(100));
                }
                Ok(Err(sled::Error::Corruption { .. }))
                    if !cleaned && remove_unfinished_snapshots(path) =>
                {
                    cleaned = true;
                }
                Ok(Err(e)) => {
                    return Err(match map_sled(e) {
                        StoreError::Io(m) => StoreError::Io(format!("token {slot_id}: {m}")),
                        StoreError::Corrupt(m) => corrupt(format!("token {slot_id}: {m}")),
                        other => other,
                    });
                }
            }
        };
        // Temp files of the generation file are written only under this lock,
        // so any left now belong to a process killed before its rename. (The
        // generation file is written while the database lock is held, so
        // writers in several processes update it in commit order.)
        remove_stale_generation_temps(&self.token_dir(slot_id));
        Ok(db)
    }

    fn sync_generation(&self, slot_id: u64, db: &sled::Db) -> Result<(), StoreError> {
        let seq = read_u64(db, K_SEQ)?;
        if self.read_generation(slot_id)? != seq {
            self.write_generation(slot_id, seq)?;
        }
        Ok(())
    }

    fn read_generation(&self, slot_id: u64) -> Result<u64, StoreError> {
        match std::fs::read_to_string(self.token_dir(slot_id).join("generation")) {
            Ok(s) => s
                .trim()
                .parse()
                .map_err(|_| corrupt(format!("token {slot_id}: generation file malformed"))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
            Err(e) => Err(StoreError::Io(format!("token {slot_id}: generation: {e}"))),
        }
    }

    fn write_generation(&self, slot_id: u64, value: u64) -> Result<(), StoreError> {
        let dir = self.token_dir(slot_id);
        let tmp = dir.join(format!("generation.tmp.{}", std::process::id()));
        let fin = dir.join("generation");
        let r = (|| {
            let mut f = crate::private_fs::file_options()
                .write(true)
                .create(true)
                .truncate(true)
                .open(&tmp)?;
            writeln!(f, "{value}")?;
            f.sync_all()?;
            std::fs::rename(&tmp, &fin)?;
            std::fs::File::open(&dir)?.sync_all()
        })();
        r.map_err(|e| StoreError::Io(format!("token {slot_id}: writing generation: {e}")))
    }

    /// Lists the token directories: readable tokens and, separately, the
    /// broken ones (garbage, truncated, unopenable, locked past the deadline,
    /// or a database without a token record, e.g. after a crash during the
    /// first `init_token`). A broken token never hides the others; `init_token`
    /// on its slot replaces it. A `token-N` directory without a database is
    /// ignored.
    pub fn scan_tokens(&self) -> Result<TokenScan, StoreError> {
        let slots = self.token_dirs()?;
        let _g = self.serial.lock();
        let mut scan = TokenScan::default();
        for slot in slots {
            match self.with_db(slot, false, |db| load_token(db, slot)) {
                Ok(Some(t)) => scan.tokens.push(t),
                Err(StoreError::NotFound) => {}
                Ok(None) => scan.broken.push(BrokenToken {
                    slot_id: slot,
                    path: self.token_dir(slot),
                    error: no_record(slot),
                }),
                Err(error) => scan.broken.push(BrokenToken {
                    slot_id: slot,
                    path: self.token_dir(slot),
                    error,
                }),
            }
        }
        Ok(scan)
    }

    /// Slot IDs of the `token-N` directories holding a database, ascending;
    /// reads no database.
    fn token_dirs(&self) -> Result<Vec<u64>, StoreError> {
        let rd = std::fs::read_dir(&self.dir)
            .map_err(|e| StoreError::Io(format!("cannot list {}: {e}", self.dir.display())))?;
        let mut slots = Vec::new();
        for entry in rd {
            let entry = entry.map_err(io)?;
            let name = entry.file_name();
            let Some(slot) = name
                .to_str()
                .and_then(|n| n.strip_prefix("token-"))
                .filter(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|n| n.parse::<u64>().ok())
            else {
                continue;
            };
            if self.db_path(slot).join("conf").exists() {
                slots.push(slot);
            }
        }
        slots.sort_unstable();
        Ok(slots)
    }

    /// The token directories that exist but cannot be read, with the reason
    /// for each; [`Store::tokens`] leaves them out.
    pub fn broken_tokens(&self) -> Result<Vec<BrokenToken>, StoreError> {
        Ok(self.scan_tokens()?.broken)
    }

    /// Ids of the PUBLIC objects of a token whose attribute `attr_type` (one
    /// of [`INDEXED_ATTRS`]) equals `value`, in ascending order, without
    /// reading or decrypting any record.
    ///
    /// The index is a hint, not authenticated: confirm each id against the
    /// records from [`Store::objects`]. Private objects are not indexed (their
    /// attributes are sealed); search them in memory after login. Other
    /// attribute types give `StoreError::Io("… not indexed")`.
    pub fn find_public(
        &self,
        slot_id: u64,
        attr_type: u64,
        value: &AttrValue,
    ) -> Result<Vec<u64>, StoreError> {
        if !INDEXED_ATTRS.contains(&attr_type) {
            return Err(StoreError::Io(format!(
                "attribute type {attr_type:#x} is not indexed"
            )));
        }
        let prefix = index_key(attr_type, value, None)?;
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let mut ids = Vec::new();
            for kv in db.scan_prefix(&prefix) {
                let (k, _) = kv.map_err(map_sled)?;
                if k.len() != prefix.len() + 8 {
                    return Err(corrupt(format!("token {slot_id}: index entry malformed")));
                }
                ids.push(key_id(&k)?);
            }
            Ok(ids)
        })
    }

    /// Writes several objects in one atomic, durable batch (the same as
    /// `put_object` for each, but all or nothing and much faster in bulk).
    pub fn put_objects(
        &self,
        slot_id: u64,
        objects: &[ObjectRecord],
        key: Option<&StorageKey>,
    ) -> Result<(), StoreError> {
        let mut ids = BTreeSet::new();
        for o in objects {
            if !ids.insert(o.id) {
                return Err(StoreError::Io(format!("object {} given twice", o.id)));
            }
            if (o.private && key.is_none()) || (!o.private && carries_secret(o)) {
                return Err(StoreError::KeyRequired);
            }
        }
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            let token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let mut seq = read_u64(db, K_SEQ)?;
            let mut batch = sled::Batch::default();
            let mut manifest = match key {
                Some(k) => {
                    let mut m = load_manifest(db, &token, k)?;
                    seq = seq.max(m.seq);
                    fold_pending(db, &token, &mut m, &mut batch)?;
                    Some(m)
                }
                None => None,
            };
            seq += 1;
            stage_objects(db, &token, objects, key, manifest.as_mut(), seq, &mut batch)?;
            if let (Some(m), Some(k)) = (manifest.as_mut(), key) {
                stage_manifest(&token, m, k, seq, &mut batch)?;
            }
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }
    /// The batch of `init_token`: clears the database, writes the record.
    fn init_db(&self, slot: u64, token: &TokenRecord, floor: u64) -> Result<(), StoreError> {
        self.with_db(slot, true, |db| {
            let seq = read_u64(db, K_SEQ)?.max(floor) + 1;
            let mut batch = sled::Batch::default();
            for kv in db.iter() {
                let (k, _) = kv.map_err(map_sled)?;
                batch.remove(k);
            }
            batch.insert(K_TOKEN, encode(token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }
}

/// Adds the writes of `objects` at version `seq` to `batch`: records (sealed
/// when private), public-attribute index, and either manifest entries (with
/// the key) or "changed without the key" markers.
fn stage_objects(
    db: &sled::Db,
    token: &TokenRecord,
    objects: &[ObjectRecord],
    key: Option<&StorageKey>,
    mut manifest: Option<&mut Manifest>,
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
                m.entries.insert(obj.id, entry);
                batch.remove(&id_key(P_PENDING, obj.id)[..]);
            }
            None => batch.insert(&id_key(P_PENDING, obj.id)[..], &[][..]),
        }
        batch.insert(&id_key(P_OBJECT, obj.id)[..], encode(&env)?);
    }
    Ok(())
}

/// Adds the sealed manifest at `seq` to `batch`.
fn stage_manifest(
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

/// Removes `generation.tmp.<pid>` files (see `with_db`); best effort.
fn remove_stale_generation_temps(token_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(token_dir) else {
        return;
    };
    for e in rd.flatten() {
        if e.file_name()
            .to_string_lossy()
            .starts_with("generation.tmp.")
        {
            let _ = std::fs::remove_file(e.path());
        }
    }
}

/// Removes `snap.*.generating` files: snapshots whose writer was killed
/// before renaming them. sled 0.34 writes a snapshot when a `Db` is dropped
/// (`snap.X.generating`, fsync, rename to `snap.X`) but on open it takes the
/// lexically last `snap.*` file, unfinished ones included, and then fails
/// with `Corruption` (sled issues #1527, #1533). An unfinished snapshot holds
/// nothing that is not in the log (every commit here was flushed to the log
/// before `Ok`), and the previous finished snapshot is still there; so it is
/// safe to remove. Returns true when something was removed.
fn remove_unfinished_snapshots(db_path: &Path) -> bool {
    let Ok(rd) = std::fs::read_dir(db_path) else {
        return false;
    };
    let mut removed = false;
    for e in rd.flatten() {
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.starts_with("snap.")
            && name.ends_with(".generating")
            && std::fs::remove_file(e.path()).is_ok()
        {
            removed = true;
        }
    }
    removed
}

/// Applies and flushes a batch.
fn commit(db: &sled::Db, batch: sled::Batch) -> Result<(), StoreError> {
    db.apply_batch(batch).map_err(map_sled)?;
    db.flush().map_err(map_sled)?;
    Ok(())
}

/// The token record as written before audit logs existed (no `audit_root`).
#[derive(Deserialize)]
pub(crate) struct TokenRecordV1 {
    slot_id: u64,
    token_id: [u8; 16],
    label: [u8; 32],
    serial: [u8; 16],
    policy: crate::record::KeyPolicy,
    so_pin: crate::seal::PinWrap,
    user_pin: Option<crate::seal::PinWrap>,
    so_failures: u32,
    user_failures: u32,
}

/// Decodes a token record, current or from before audit logs existed.
pub(crate) fn decode_token(bytes: &[u8]) -> Result<TokenRecord, StoreError> {
    decode::<TokenRecord>(bytes, "token record").or_else(|e| {
        decode::<TokenRecordV1>(bytes, "token record")
            .map(TokenRecord::from)
            .map_err(|_| e)
    })
}

impl From<TokenRecordV1> for TokenRecord {
    fn from(v1: TokenRecordV1) -> TokenRecord {
        TokenRecord {
            slot_id: v1.slot_id,
            token_id: v1.token_id,
            label: v1.label,
            serial: v1.serial,
            policy: v1.policy,
            so_pin: v1.so_pin,
            user_pin: v1.user_pin,
            so_failures: v1.so_failures,
            user_failures: v1.user_failures,
            audit_root: None,
        }
    }
}

fn load_token(db: &sled::Db, slot_id: u64) -> Result<Option<TokenRecord>, StoreError> {
    match db.get(K_TOKEN).map_err(map_sled)? {
        None => Ok(None),
        Some(v) => {
            let t = decode_token(&v)?;
            if t.slot_id != slot_id {
                return Err(corrupt(format!(
                    "token directory {slot_id} holds the record of slot {}",
                    t.slot_id
                )));
            }
            Ok(Some(t))
        }
    }
}

fn load_manifest(
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

fn pending_ids(db: &sled::Db) -> Result<BTreeSet<u64>, StoreError> {
    let mut set = BTreeSet::new();
    for kv in db.scan_prefix([P_PENDING]) {
        let (k, _) = kv.map_err(map_sled)?;
        set.insert(key_id(&k)?);
    }
    Ok(set)
}

fn load_envelope(db: &sled::Db, id: u64) -> Result<Option<Envelope>, StoreError> {
    match db.get(id_key(P_OBJECT, id)).map_err(map_sled)? {
        None => Ok(None),
        Some(v) => decode(&v, &format!("object {id}")).map(Some),
    }
}

/// Brings the manifest up to date with the changes made without the key and
/// clears their markers (in `batch`).
fn fold_pending(
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

fn remove_index(db: &sled::Db, id: u64, batch: &mut sled::Batch) -> Result<(), StoreError> {
    let rk = id_key(P_REVERSE, id);
    if let Some(v) = db.get(rk).map_err(map_sled)? {
        let keys: Vec<Vec<u8>> = decode(&v, "index")?;
        for k in keys {
            batch.remove(k);
        }
        batch.remove(&rk[..]);
    }
    Ok(())
}

fn read_objects(
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

impl Store for SledStore {
    fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        Ok(self.scan_tokens()?.tokens)
    }

    fn slot_ids(&self) -> Result<Vec<u64>, StoreError> {
        self.token_dirs()
    }

    fn release(&self) {
        SledStore::release(self);
    }

    /// Reads one token's record. A database without a record (interrupted
    /// first initialisation) is reported as `Corrupt`, as `scan_tokens` does.
    fn token(&self, slot_id: u64) -> Result<Option<TokenRecord>, StoreError> {
        let _g = self.serial.lock();
        match self.with_db(slot_id, false, |db| load_token(db, slot_id)) {
            Ok(Some(t)) => Ok(Some(t)),
            Err(StoreError::NotFound) => Ok(None),
            Ok(None) => Err(no_record(slot_id)),
            Err(e) => Err(e),
        }
    }

    fn init_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let slot = token.slot_id;
        let _g = self.serial.lock();
        let dir = self.token_dir(slot);
        crate::private_fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        // Never let a new database's counter go below what others have seen.
        let floor = self.read_generation(slot).unwrap_or(0);
        let first = self.init_db(slot, token, floor);
        if !matches!(first, Err(StoreError::Corrupt(_))) {
            return first;
        }
        // C_InitToken on a token whose database is damaged: set the damaged
        // directory aside (never delete data) and start afresh.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = self.dir.join(format!("broken-token-{slot}-{nanos}"));
        std::fs::rename(&dir, &aside).map_err(|e| {
            StoreError::Io(format!("cannot move damaged {} aside: {e}", dir.display()))
        })?;
        crate::private_fs::create_dir_all(&dir)
            .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", dir.display())))?;
        self.init_db(slot, token, floor)
    }

    fn update_token(&self, token: &TokenRecord) -> Result<(), StoreError> {
        let slot = token.slot_id;
        let _g = self.serial.lock();
        self.with_db(slot, false, |db| {
            load_token(db, slot)?.ok_or_else(|| no_record(slot))?;
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            batch.insert(K_TOKEN, encode(token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }

    fn modify_token(
        &self,
        slot_id: u64,
        edit: &mut dyn FnMut(&mut TokenRecord),
    ) -> Result<TokenRecord, StoreError> {
        let _g = self.serial.lock();
        // The database lock excludes other processes from read to commit.
        self.with_db(slot_id, false, |db| {
            let mut token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            edit(&mut token);
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            batch.insert(K_TOKEN, encode(&token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)?;
            Ok(token)
        })
    }

    fn objects(
        &self,
        slot_id: u64,
        key: Option<&StorageKey>,
    ) -> Result<Vec<ObjectRecord>, StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| read_objects(db, slot_id, key))
    }

    fn put_object(
        &self,
        slot_id: u64,
        object: &ObjectRecord,
        key: Option<&StorageKey>,
    ) -> Result<(), StoreError> {
        self.put_objects(slot_id, std::slice::from_ref(object), key)
    }

    fn delete_object(&self, slot_id: u64, id: u64) -> Result<(), StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let ok = id_key(P_OBJECT, id);
            if !db.contains_key(ok).map_err(map_sled)? {
                return Ok(());
            }
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            remove_index(db, id, &mut batch)?;
            batch.remove(&ok[..]);
            batch.remove(&id_key(P_DUE, id)[..]);
            batch.insert(&id_key(P_PENDING, id)[..], &[][..]);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)
        })
    }

    /// Reads the token's `generation` file: no database is opened. 0 for a
    /// slot without a token.
    fn generation(&self, slot_id: u64) -> Result<u64, StoreError> {
        self.read_generation(slot_id)
    }

    fn start_audit(&self, slot_id: u64, root: &AuditKey) -> Result<(), StoreError> {
        Ok(self.audit_log(slot_id).start(root)?)
    }

    fn audit_started(&self, slot_id: u64) -> bool {
        self.audit_log(slot_id).is_started()
    }

    fn audit(&self, slot_id: u64, events: &[AuditEvent]) -> Result<(), StoreError> {
        Ok(self.audit_log(slot_id).append(events)?)
    }

    fn rekey(
        &self,
        slot_id: u64,
        old: &StorageKey,
        new: &StorageKey,
        edit: &mut dyn FnMut(&mut TokenRecord) -> bool,
    ) -> Result<TokenRecord, StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            let mut token = load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            // Reading with `old` checks every record against the manifest,
            // so nothing damaged is re-sealed as if it were sound.
            let objects = read_objects(db, slot_id, Some(old))?;
            if let Some(root) = &token.audit_root {
                AuditKey::open(root, old, &token.token_id).map_err(|_| {
                    corrupt("rotation: the old storage key does not open the audit root")
                })?;
            }
            let old_manifest = load_manifest(db, &token, old)?;
            let seq = read_u64(db, K_SEQ)?.max(old_manifest.seq) + 1;
            if !edit(&mut token) {
                return Err(StoreError::NotFound);
            }
            let mut batch = sled::Batch::default();
            for id in pending_ids(db)? {
                batch.remove(&id_key(P_PENDING, id)[..]);
            }
            let mut manifest = Manifest::default();
            stage_objects(
                db,
                &token,
                &objects,
                Some(new),
                Some(&mut manifest),
                seq,
                &mut batch,
            )?;
            stage_manifest(&token, &mut manifest, new, seq, &mut batch)?;
            batch.insert(K_TOKEN, encode(&token)?);
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)?;
            Ok(token)
        })
    }

    fn purge_due(&self, slot_id: u64, now: u64) -> Result<Vec<u64>, StoreError> {
        let _g = self.serial.lock();
        self.with_db(slot_id, false, |db| {
            load_token(db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
            let mut due = Vec::new();
            for kv in db.scan_prefix([P_DUE]) {
                let (k, v) = kv.map_err(map_sled)?;
                let at: [u8; 8] = v.as_ref().try_into().map_err(|_| {
                    corrupt(format!("token {slot_id}: deletion schedule malformed"))
                })?;
                if u64::from_be_bytes(at) <= now {
                    due.push(key_id(&k)?);
                }
            }
            if due.is_empty() {
                return Ok(due);
            }
            // As `delete_object` (without the key): the manifest learns of it
            // through the markers at the next write with the key.
            let seq = read_u64(db, K_SEQ)? + 1;
            let mut batch = sled::Batch::default();
            for id in &due {
                remove_index(db, *id, &mut batch)?;
                batch.remove(&id_key(P_OBJECT, *id)[..]);
                batch.remove(&id_key(P_DUE, *id)[..]);
                batch.insert(&id_key(P_PENDING, *id)[..], &[][..]);
            }
            batch.insert(K_SEQ, &seq.to_be_bytes()[..]);
            commit(db, batch)?;
            Ok(due)
        })
    }
}

/// Fuzz entry point (`crate::fuzzing`, `fuzz/`).
pub(crate) mod fuzzing;
