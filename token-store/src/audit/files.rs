//! The files of an audit log ([`AuditLog`]): starting a chain, the
//! cross-process lock, the `state` file's two slots, appending (after
//! recovering what a killed writer left) and rotating `log.jsonl`, and
//! listing and reading the log files line by line.
#![forbid(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::Mac;
use zeroize::Zeroizing;

use crate::private_fs;
use crate::record::StoreError;
use crate::seal::AuditKey;

use super::chain::{
    CHAIN_PREFIX, LineOut, SLOT, State, check_line, decode_slot, encode_slot, hex, line_seq,
};
use super::event::AuditEvent;

pub(super) const CURRENT: &str = "log.jsonl";
pub(super) const STATE: &str = "state";
pub(super) const LOCK: &str = "lock";

/// First read of the tail of `log.jsonl` during recovery: a few lines' worth,
/// so the common case is one small read, not the whole file.
const TAIL_WINDOW: u64 = 8 * 1024;

/// How the audit log of a token is written.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AuditOptions {
    /// `log.jsonl` is rotated once an append leaves it larger than this.
    pub max_file_bytes: u64,
}

impl Default for AuditOptions {
    fn default() -> Self {
        AuditOptions {
            max_file_bytes: 16 * 1024 * 1024,
        }
    }
}

/// One token's audit log directory. Cheap to create: every call opens the
/// files afresh, so any number of values (and processes) may share a directory.
#[derive(Clone, Debug)]
pub struct AuditLog {
    pub(super) dir: PathBuf,
    options: AuditOptions,
}

/// Why an audit log operation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AuditError {
    /// The log has no state file: [`AuditLog::start`] has not run.
    NotStarted,
    /// Reading or writing the files failed.
    Io(String),
    /// The files are not in a form this code writes.
    Corrupt(String),
}

impl std::fmt::Display for AuditError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AuditError::NotStarted => f.write_str("audit log not started"),
            AuditError::Io(m) => write!(f, "audit log I/O error: {m}"),
            AuditError::Corrupt(m) => write!(f, "audit log corrupt: {m}"),
        }
    }
}

impl std::error::Error for AuditError {}

impl From<AuditError> for StoreError {
    fn from(e: AuditError) -> StoreError {
        match e {
            AuditError::NotStarted => StoreError::Io(e.to_string()),
            AuditError::Io(m) => StoreError::Io(format!("audit log: {m}")),
            AuditError::Corrupt(m) => StoreError::Corrupt(format!("audit log: {m}")),
        }
    }
}

pub(super) fn io_err(what: &str, path: &Path, e: std::io::Error) -> AuditError {
    AuditError::Io(format!("{what} {}: {e}", path.display()))
}

pub(super) fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

/// Numeric first seq of a rotated file name `log.<digits>.jsonl`.
pub(super) fn rotated_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log.")?.strip_suffix(".jsonl")?;
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

pub(super) fn is_log_name(name: &str) -> bool {
    name == CURRENT || rotated_seq(name).is_some()
}

/// Reads one line (with its `\n`, if any) into `buf`; `Ok(false)` at end.
fn next_line(r: &mut impl BufRead, buf: &mut Vec<u8>, path: &Path) -> Result<bool, AuditError> {
    buf.clear();
    let n = r
        .read_until(b'\n', buf)
        .map_err(|e| io_err("reading", path, e))?;
    Ok(n > 0)
}

/// Holds the cross-process lock until dropped (closing the file releases it).
pub(super) struct LockGuard {
    file: File,
}

impl Drop for LockGuard {
    // Unlock explicitly rather than by closing: a `fork()` while the lock is
    // held gives the child a copy of the descriptor, and a flock lives until
    // every copy is closed, so only an unlock frees it for the parent.
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

impl AuditLog {
    /// The log in `dir` (`<token_dir>/audit`); nothing is touched yet.
    pub fn new(dir: &Path, options: AuditOptions) -> AuditLog {
        AuditLog {
            dir: dir.to_path_buf(),
            options,
        }
    }

    /// The audit directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether [`AuditLog::start`] has run (the state file exists).
    pub fn is_started(&self) -> bool {
        self.dir.join(STATE).is_file()
    }

    /// Starts a new chain under `root`.
    ///
    /// Anything already in the directory is first renamed aside to
    /// `<dir>.<unix nanos>.old`: an old log is evidence and is never deleted.
    /// Meant for token initialisation; appenders still working in the old
    /// directory keep writing there.
    pub fn start(&self, root: &AuditKey) -> Result<(), AuditError> {
        let parent = self
            .dir
            .parent()
            .filter(|p| !p.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        match fs::read_dir(&self.dir) {
            Ok(mut entries) => {
                if entries.next().is_some() {
                    let nanos = SystemTime::now()
                        .duration_since(UNIX_EPOCH)
                        .unwrap_or_default()
                        .as_nanos();
                    let mut aside = self.dir.clone().into_os_string();
                    aside.push(format!(".{nanos}.old"));
                    let aside = PathBuf::from(aside);
                    if aside.exists() {
                        return Err(AuditError::Io(format!("{} exists", aside.display())));
                    }
                    fs::rename(&self.dir, &aside)
                        .map_err(|e| io_err("moving aside", &self.dir, e))?;
                    sync_dir(parent)?;
                }
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(io_err("reading", &self.dir, e)),
        }
        create_private_dir(&self.dir).map_err(|e| io_err("creating", &self.dir, e))?;
        let state = State::initial(root);
        let slot = encode_slot(&state);
        let path = self.dir.join(STATE);
        let mut f = create_file(&path).map_err(|e| io_err("creating", &path, e))?;
        // Both slots hold the same state, so either may be overwritten next.
        f.write_all(&slot)
            .and_then(|()| f.write_all(&slot))
            .and_then(|()| f.sync_all())
            .map_err(|e| io_err("writing", &path, e))?;
        for name in [CURRENT, LOCK] {
            let p = self.dir.join(name);
            create_file(&p).map_err(|e| io_err("creating", &p, e))?;
        }
        sync_dir(&self.dir)?;
        sync_dir(parent)
    }

    pub(super) fn lock(&self, exclusive: bool) -> Result<LockGuard, AuditError> {
        let path = self.dir.join(LOCK);
        let file = match private_fs::file_options()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
        {
            Ok(f) => f,
            // A reader without write access to the directory can still lock an
            // existing lock file.
            Err(e) if e.kind() == ErrorKind::PermissionDenied && !exclusive => {
                File::open(&path).map_err(|e| io_err("opening", &path, e))?
            }
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(AuditError::NotStarted),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        if exclusive {
            file.lock()
        } else {
            file.lock_shared()
        }
        .map_err(|e| io_err("locking", &path, e))?;
        Ok(LockGuard { file })
    }

    pub(super) fn read_state(&self) -> Result<State, AuditError> {
        let path = self.dir.join(STATE);
        let mut buf = Zeroizing::new(Vec::with_capacity(2 * SLOT));
        match File::open(&path) {
            Ok(f) => f
                .take(2 * SLOT as u64)
                .read_to_end(&mut buf)
                .map_err(|e| io_err("reading", &path, e))?,
            Err(e) if e.kind() == ErrorKind::NotFound => return Err(AuditError::NotStarted),
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        buf.chunks_exact(SLOT)
            .filter_map(decode_slot)
            .max_by_key(|s| s.seq)
            .ok_or_else(|| AuditError::Corrupt("state: no valid slot".into()))
    }

    /// Writes `state` into both slots, in one write and without fsync. Both,
    /// because a stale slot would keep an old key on disk and let whoever
    /// reads it rewrite lines already written. No fsync, because the log
    /// lines it follows are already durable and the state may lag them:
    /// `append` and `verify` catch up from the log's tail. A killed process
    /// loses nothing (the page cache survives); after a power loss the state
    /// on disk may be up to the kernel's writeback delay old, so the lines
    /// written in that window could be cut off or rewritten by someone who
    /// then reads the disk before the next append. That fsync was 40 % of a
    /// durable object creation. The two slots share one 512-byte sector, so a
    /// torn write leaves one of them whole.
    fn write_state(&self, state: &State) -> Result<(), AuditError> {
        let path = self.dir.join(STATE);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err("opening", &path, e))?;
        let slot = encode_slot(state);
        let mut both = Zeroizing::new(Vec::with_capacity(2 * SLOT));
        both.extend_from_slice(&slot);
        both.extend_from_slice(&slot);
        f.write_all_at(&both, 0)
            .map_err(|e| io_err("writing", &path, e))
    }

    /// Appends `events`, in order; durable when it returns `Ok`.
    pub fn append(&self, events: &[AuditEvent]) -> Result<(), AuditError> {
        let _lock = self.lock(true)?;
        let mut state = self.read_state()?;
        if events.is_empty() {
            return Ok(());
        }
        let path = self.dir.join(CURRENT);
        let (file, created) = match OpenOptions::new().read(true).append(true).open(&path) {
            Ok(f) => (f, false),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                let f = private_fs::file_options()
                    .read(true)
                    .append(true)
                    .create(true)
                    .open(&path)
                    .map_err(|e| io_err("creating", &path, e))?;
                (f, true)
            }
            Err(e) => return Err(io_err("opening", &path, e)),
        };
        let len = file
            .metadata()
            .map_err(|e| io_err("reading", &path, e))?
            .len();
        let (keep, tail) = read_tail(&file, len, state.seq, &path)?;
        if keep < len {
            // Bytes after the last newline were never acknowledged.
            file.set_len(keep)
                .map_err(|e| io_err("truncating", &path, e))?;
        }
        for line in tail.split_inclusive(|&b| b == b'\n') {
            if check_line(&line[..line.len() - 1], &mut state).is_err() {
                break;
            }
        }
        let mut buf = Vec::new();
        for event in events {
            let seq = state.seq + 1;
            let body = serde_json::to_vec(&LineOut { seq, event })
                .map_err(|e| AuditError::Corrupt(format!("encoding event: {e}")))?;
            let head = &body[..body.len() - 1];
            let chain: [u8; 32] = state.mac(head).finalize().into_bytes().into();
            buf.extend_from_slice(head);
            buf.extend_from_slice(CHAIN_PREFIX);
            let mut h = String::with_capacity(64);
            hex(&chain, &mut h);
            buf.extend_from_slice(h.as_bytes());
            buf.extend_from_slice(b"\"}\n");
            state.advance(chain);
        }
        (&file)
            .write_all(&buf)
            .and_then(|()| file.sync_data())
            .map_err(|e| io_err("writing", &path, e))?;
        if created {
            sync_dir(&self.dir)?;
        }
        self.write_state(&state)?;
        if keep + buf.len() as u64 > self.options.max_file_bytes {
            self.rotate()?;
        }
        Ok(())
    }

    /// Renames `log.jsonl` after its first seq and starts an empty one.
    fn rotate(&self) -> Result<(), AuditError> {
        let path = self.dir.join(CURRENT);
        let f = File::open(&path).map_err(|e| io_err("opening", &path, e))?;
        let mut first = Vec::new();
        BufReader::new(f)
            .read_until(b'\n', &mut first)
            .map_err(|e| io_err("reading", &path, e))?;
        let Some(seq) = first.strip_suffix(b"\n").and_then(line_seq) else {
            // A damaged first line: verify reports it; renaming could clash.
            return Ok(());
        };
        let target = self.dir.join(format!("log.{seq:012}.jsonl"));
        if target.exists() {
            return Ok(());
        }
        fs::rename(&path, &target).map_err(|e| io_err("rotating", &path, e))?;
        create_new_file(&path).map_err(|e| io_err("creating", &path, e))?;
        sync_dir(&self.dir)
    }

    /// Log file names in seq order: rotated ones by number, `log.jsonl` last.
    pub(super) fn log_files(&self) -> Result<Vec<String>, AuditError> {
        let mut rotated = Vec::new();
        let mut current = false;
        let entries = fs::read_dir(&self.dir).map_err(|e| io_err("reading", &self.dir, e))?;
        for entry in entries {
            let entry = entry.map_err(|e| io_err("reading", &self.dir, e))?;
            let Ok(name) = entry.file_name().into_string() else {
                continue;
            };
            if name == CURRENT {
                current = true;
            } else if let Some(seq) = rotated_seq(&name) {
                rotated.push((seq, name));
            }
        }
        rotated.sort();
        let mut names: Vec<String> = rotated.into_iter().map(|(_, n)| n).collect();
        if current {
            names.push(CURRENT.to_string());
        }
        Ok(names)
    }

    /// Calls `f(file, 1-based line, line without "\n")` for every complete
    /// line. An unterminated end of `log.jsonl` is skipped: a writer died
    /// before acknowledging it. Elsewhere it is passed on as is, to be flagged.
    pub(super) fn each_line(
        &self,
        names: &[String],
        mut f: impl FnMut(&str, u64, &[u8]) -> Result<(), AuditError>,
    ) -> Result<(), AuditError> {
        let mut buf = Vec::new();
        for name in names {
            let path = self.dir.join(name);
            let file = File::open(&path).map_err(|e| io_err("opening", &path, e))?;
            let mut r = BufReader::new(file);
            let mut n = 0;
            while next_line(&mut r, &mut buf, &path)? {
                let line = match buf.strip_suffix(b"\n") {
                    Some(l) => l,
                    None if name == CURRENT => break,
                    None => &buf[..],
                };
                n += 1;
                f(name, n, line)?;
            }
        }
        Ok(())
    }
}

/// Reads the end of `log.jsonl` (`len` bytes long). Returns the length up to
/// its last `\n`, and the complete lines after the last one whose seq is at
/// most `seq` (the candidates a killed writer left behind). Reads backwards in
/// growing windows so the common case is one small read.
pub(super) fn read_tail(
    file: &File,
    len: u64,
    seq: u64,
    path: &Path,
) -> Result<(u64, Vec<u8>), AuditError> {
    let mut window = TAIL_WINDOW;
    loop {
        let w = window.min(len);
        let start = len - w;
        let mut buf = vec![0u8; w as usize];
        file.read_exact_at(&mut buf, start)
            .map_err(|e| io_err("reading", path, e))?;
        let Some(last_nl) = buf.iter().rposition(|&b| b == b'\n') else {
            if start == 0 {
                return Ok((0, Vec::new()));
            }
            window *= 2;
            continue;
        };
        let keep = start + last_nl as u64 + 1;
        buf.truncate(last_nl + 1);
        // Without the start of the file in the window, the first piece may be
        // the end of a longer line: not usable.
        let usable_from = if start == 0 {
            0
        } else {
            buf.iter()
                .position(|&b| b == b'\n')
                .map_or(buf.len(), |p| p + 1)
        };
        let mut end = buf.len();
        while end > usable_from {
            let line_start = buf[usable_from..end - 1]
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(usable_from, |p| usable_from + p + 1);
            if line_seq(&buf[line_start..end - 1]).is_some_and(|s| s <= seq) {
                return Ok((keep, buf[end..].to_vec()));
            }
            end = line_start;
        }
        if start == 0 {
            return Ok((keep, buf));
        }
        window *= 2;
    }
}

/// Creates the audit directory readable by its owner only: the lines name
/// keys, processes and times, which other local users need not see.
pub(super) fn create_private_dir(dir: &Path) -> std::io::Result<()> {
    private_fs::create_dir_all(dir)
}

/// Creates (or truncates) a file, owner-only (0600) whatever the umask.
fn create_file(path: &Path) -> std::io::Result<File> {
    private_fs::file_options()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
}

/// Creates a new file, owner-only (0600) whatever the umask; fails if it exists.
pub(super) fn create_new_file(path: &Path) -> std::io::Result<File> {
    private_fs::file_options()
        .write(true)
        .create_new(true)
        .open(path)
}
