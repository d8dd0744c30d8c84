//! [`SledStore`] itself and its options: the data directory and its
//! `token-N` directories, opening a token's database (waiting out another
//! process's lock, keeping it open for `linger` with the closer thread,
//! cleaning up after a killed writer), and the `generation` file.
#![forbid(unsafe_code)]

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::audit::{AuditLog, AuditOptions};
use crate::record::{StoreError, TokenRecord};

use super::layout::{K_SEQ, corrupt, io, load_token, map_sled, no_record, read_u64};

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
    pub(super) dir: PathBuf,
    options: SledOptions,
    notes: Vec<String>,
    pub(super) serial: Mutex<()>,
    held: Arc<Mutex<Held>>,
    /// Group commit (see [`SledStore::flush_upto`]); taken after `serial`
    /// and `held`, or alone.
    flushed: Mutex<Flushed>,
    /// Held by the writer whose flush is running (others wait: it may
    /// cover them).
    flushing: Mutex<()>,
    /// Counts the databases opened (under the `held` lock), so a flush of
    /// one is never taken to cover a write to another (a token
    /// re-initialised or reopened meanwhile).
    opened: std::sync::atomic::AtomicU64,
    closer: Mutex<Option<std::thread::JoinHandle<()>>>,
}

/// Object writes applied but not yet flushed, and how far flushes went.
#[derive(Default)]
struct Flushed {
    /// Writes applied (or about to be) whose flush has not finished.
    in_flight: usize,
    /// The slot, database opening ([`SledStore::opened`]) and sequence
    /// number up to which a flush has finished.
    upto: Option<(u64, u64, u64)>,
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
            flushed: Mutex::new(Flushed::default()),
            flushing: Mutex::new(()),
            opened: std::sync::atomic::AtomicU64::new(0),
            closer: Mutex::new(None),
        })
    }

    /// Closes the database kept open between calls, if any (before `fork()`,
    /// so the child inherits no lock; at drop).
    pub fn release(&self) {
        self.held.lock().db = None;
    }

    /// Deletes the token in `slot_id` for good: its database (every object,
    /// sealed or not, and the token record) is removed, so the slot is free
    /// again. `token_id` must be the token the caller authenticated (with
    /// the SO PIN): a token re-initialised meanwhile is left alone
    /// (`StoreError::Corrupt` naming the change). Done under the database
    /// lock, which other processes wait for: the database directory is first
    /// renamed aside (atomic: no process sees half a token), then removed.
    /// The audit log (`<token dir>/audit`) is evidence and stays; the next
    /// token initialised in the slot sets it aside (and removes a renamed
    /// database a killed `delete_token` left). The `generation` file
    /// stays too, one step higher, so a process caching the token notices.
    pub fn delete_token(&self, slot_id: u64, token_id: &[u8; 16]) -> Result<(), StoreError> {
        let _g = self.serial.lock();
        let mut held = self.held.lock();
        held.db = None;
        let path = self.db_path(slot_id);
        if !path.join("conf").exists() {
            return Err(StoreError::NotFound);
        }
        let db = self.open_db(slot_id, &path)?;
        let token = load_token(&db, slot_id)?.ok_or_else(|| no_record(slot_id))?;
        if &token.token_id != token_id {
            return Err(corrupt(format!(
                "token {slot_id} was re-initialised meanwhile: not deleted"
            )));
        }
        let seq = read_u64(&db, K_SEQ)?;
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        let aside = self.token_dir(slot_id).join(format!("db.deleted.{nanos}"));
        std::fs::rename(&path, &aside)
            .map_err(|e| StoreError::Io(format!("token {slot_id}: removing database: {e}")))?;
        drop(db);
        self.write_generation(slot_id, seq + 1)?;
        std::fs::remove_dir_all(&aside).map_err(|e| {
            StoreError::Io(format!(
                "token {slot_id}: deleted, but {} could not be removed: {e}",
                aside.display()
            ))
        })
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
    pub(super) fn with_db<R>(
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
                Ok(Ok(db)) => {
                    self.opened
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    break db;
                }
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
        // Temp files of the generation file (earlier versions wrote one and
        // renamed it, under this lock) left by a process killed before its
        // rename. (The generation file is written while the database lock is
        // held, so writers in several processes update it in commit order.)
        remove_stale_generation_temps(&self.token_dir(slot_id));
        Ok(db)
    }

    /// Runs `apply` (which applies a batch, unflushed, and returns its
    /// sequence number) on the token's database, and returns a handle on it
    /// for [`SledStore::flush_upto`], which the caller must call next,
    /// without holding `serial`, whatever `apply` returned.
    pub(super) fn with_db_unflushed(
        &self,
        slot_id: u64,
        apply: impl FnOnce(&sled::Db) -> Result<u64, StoreError>,
    ) -> Result<(Option<(sled::Db, u64)>, u64), StoreError> {
        // Counted before the batch is applied, so that no one who sees its
        // sequence number in `s` takes it for flushed.
        self.flushed.lock().in_flight += 1;
        let mut handle = None;
        let r = self.with_db(slot_id, false, |db| {
            let seq = apply(db)?;
            // `with_db` holds `held`: `db` is the database opened last.
            let opening = self.opened.load(std::sync::atomic::Ordering::Relaxed);
            handle = Some((db.clone(), opening));
            Ok(seq)
        });
        match r {
            Ok(seq) => Ok((handle, seq)),
            Err(e) => {
                // A batch may have been applied: flush, but report the error.
                let _ = self.flush_upto(slot_id, handle, u64::MAX);
                Err(e)
            }
        }
    }

    /// Group commit: makes the writes up to `seq` durable and announces
    /// them in the `generation` file. Writers apply their batches under
    /// `serial` and flush here after letting it go; a flush makes every
    /// batch applied before it durable, so a writer whose batch an earlier
    /// flush covered returns without flushing, and one flush serves all
    /// the writers that applied while the previous one ran. Must follow
    /// [`SledStore::with_db_unflushed`] exactly once.
    pub(super) fn flush_upto(
        &self,
        slot_id: u64,
        db: Option<(sled::Db, u64)>,
        seq: u64,
    ) -> Result<(), StoreError> {
        let opening = db.as_ref().map_or(0, |(_, o)| *o);
        let db = db.map(|(db, _)| db);
        let r = catch_unwind(AssertUnwindSafe(|| -> Result<(), StoreError> {
            let Some(db) = &db else { return Ok(()) };
            let _leader = self.flushing.lock();
            let upto = self.flushed.lock().upto;
            if matches!(upto, Some((s, o, top)) if s == slot_id && o == opening && top >= seq) {
                return Ok(());
            }
            // Every batch up to `top` has been applied: this flush covers it.
            let top = read_u64(db, K_SEQ)?;
            db.flush().map_err(map_sled)?;
            self.flushed.lock().upto = Some((slot_id, opening, top));
            Ok(())
        }))
        .unwrap_or_else(|_| {
            Err(corrupt(format!(
                "token {slot_id}: database unreadable (sled panicked)"
            )))
        });
        let mut f = self.flushed.lock();
        f.in_flight -= 1;
        let announce = match (&r, &db, f.upto) {
            // Nothing unflushed is left: all of `s` is durable.
            (Ok(()), Some(db), _) if f.in_flight == 0 => read_u64(db, K_SEQ),
            (Ok(()), Some(_), Some((s, o, top))) if s == slot_id && o == opening => Ok(top),
            _ => return r,
        }?;
        if self.read_generation(slot_id)? < announce {
            self.write_generation(slot_id, announce)?;
        }
        drop(f);
        // `db` (keeping the database lock) is dropped only now.
        drop(db);
        r
    }

    fn sync_generation(&self, slot_id: u64, db: &sled::Db) -> Result<(), StoreError> {
        let f = self.flushed.lock();
        if f.in_flight > 0 {
            // Not all of `s` is durable yet: the last flush announces it.
            return Ok(());
        }
        let seq = read_u64(db, K_SEQ)?;
        if self.read_generation(slot_id)? != seq {
            self.write_generation(slot_id, seq)?;
        }
        drop(f);
        Ok(())
    }

    pub(super) fn read_generation(&self, slot_id: u64) -> Result<u64, StoreError> {
        let path = self.token_dir(slot_id).join("generation");
        // A reader may meet a write in progress (the file is rewritten in
        // place): the two copies then differ, and a second look sees it done.
        for _ in 0..GENERATION_READ_TRIES {
            let bytes = match std::fs::read(&path) {
                Ok(b) => b,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
                Err(e) => return Err(StoreError::Io(format!("token {slot_id}: generation: {e}"))),
            };
            match parse_generation(&bytes) {
                Some(Some(v)) => return Ok(v),
                Some(None) => std::thread::yield_now(),
                None => break,
            }
        }
        Err(corrupt(format!(
            "token {slot_id}: generation file malformed"
        )))
    }

    /// Rewrites the `generation` file in place: one write of a fixed size at
    /// offset 0, no temp file, no rename and no fsync. The stamp is a hint
    /// for caches, derived from `s` in the (flushed) database: a killed
    /// process loses nothing of it (the page cache survives); a power loss
    /// may leave it stale, empty or zeroed, and the next call that opens the
    /// database rewrites it (`sync_generation`). The replace-by-rename this
    /// replaced cost more than the database's own flush (ext4 flushes a file
    /// renamed over another at the rename: ~1.3 ms a write here).
    fn write_generation(&self, slot_id: u64, value: u64) -> Result<(), StoreError> {
        use std::os::unix::fs::FileExt;
        let path = self.token_dir(slot_id).join("generation");
        let r = crate::private_fs::file_options()
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .and_then(|f| {
                let text = format_generation(value);
                f.write_all_at(text.as_bytes(), 0)?;
                // Longer contents (written by something else) would stay behind.
                if f.metadata()?.len() > text.len() as u64 {
                    f.set_len(text.len() as u64)?;
                }
                Ok(())
            });
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
    pub(super) fn token_dirs(&self) -> Result<Vec<u64>, StoreError> {
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
    /// for each; [`Store::tokens`](crate::store::Store::tokens) leaves them out.
    pub fn broken_tokens(&self) -> Result<Vec<BrokenToken>, StoreError> {
        Ok(self.scan_tokens()?.broken)
    }
}

/// Removes the `db.deleted.<nanos>` directories a `delete_token` killed
/// between its rename and its removal left in `token_dir`; best effort.
pub(super) fn remove_deleted_dbs(token_dir: &Path) {
    let Ok(rd) = std::fs::read_dir(token_dir) else {
        return;
    };
    for entry in rd.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with("db.deleted.")
        {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// How often `read_generation` looks again at a file caught mid-write.
const GENERATION_READ_TRIES: usize = 100;

/// The `generation` file's contents: the value twice, fixed width (so every
/// rewrite covers the whole of the previous one), decimal for people.
fn format_generation(value: u64) -> String {
    format!("{value:020} {value:020}\n")
}

/// Parses a `generation` file: `Some(Some(v))` for a value, `Some(None)` for
/// two copies that differ (a write in progress), `None` for garbage. Empty or
/// zeroed contents (a power loss) read as 0; a single number is the format
/// of earlier versions (written by rename).
fn parse_generation(bytes: &[u8]) -> Option<Option<u64>> {
    let text = std::str::from_utf8(bytes).ok()?;
    let text = text.trim_matches(|c: char| c.is_ascii_whitespace() || c == '\0');
    let mut words = text.split_ascii_whitespace();
    let Some(first) = words.next() else {
        return Some(Some(0));
    };
    let first: u64 = first.parse().ok()?;
    match (words.next(), words.next()) {
        (None, _) => Some(Some(first)),
        (Some(second), None) => match second.parse::<u64>() {
            Ok(v) if v == first => Some(Some(v)),
            // A torn read shows digits of both values in one copy.
            _ if second.len() == 20 && second.bytes().all(|b| b.is_ascii_digit()) => Some(None),
            _ => None,
        },
        _ => None,
    }
}

/// Removes `generation.tmp.<pid>` files that versions before the in-place
/// `generation` left behind when killed (see `with_db`); best effort.
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

#[cfg(test)]
mod generation_tests {
    use super::{format_generation, parse_generation};

    #[test]
    fn round_trip_and_earlier_format() {
        for v in [0, 1, 494, u64::MAX] {
            assert_eq!(
                parse_generation(format_generation(v).as_bytes()),
                Some(Some(v))
            );
        }
        assert_eq!(parse_generation(b"494\n"), Some(Some(494)));
    }

    #[test]
    fn power_loss_leftovers_read_as_zero() {
        assert_eq!(parse_generation(b""), Some(Some(0)));
        assert_eq!(parse_generation(&[0u8; 41]), Some(Some(0)));
    }

    #[test]
    fn a_torn_read_asks_for_another_look() {
        let old = format_generation(499);
        let new = format_generation(500);
        // Every prefix of the new text over the old one: each is either a
        // consistent value (old or new) or recognised as torn, never a third value.
        for k in 0..=new.len() {
            let mixed: Vec<u8> = new.as_bytes()[..k]
                .iter()
                .chain(&old.as_bytes()[k..])
                .copied()
                .collect();
            match parse_generation(&mixed) {
                Some(Some(v)) => assert!(v == 499 || v == 500, "prefix {k}: read {v}"),
                Some(None) => {}
                None => panic!("prefix {k}: taken for garbage"),
            }
        }
    }

    #[test]
    fn garbage_is_malformed() {
        assert_eq!(parse_generation(b"not a number\n"), None);
        assert_eq!(parse_generation(b"1 2 3\n"), None);
        assert_eq!(parse_generation(b"7 8\n"), None);
    }
}
