//! Per-token audit log: tamper-evident, append-only, JSON lines.
//!
//! Every line carries a forward-secure keyed hash chain (Schneier–Kelsey
//! style). The chain's root key is sealed in the token and known only to whoever
//! can open the storage key with a PIN; the evolving per-line key sits in the
//! `state` file so that processes without the root can still append. Each key
//! is replaced by a one-way function of itself once used, so someone who reads
//! the disk later cannot rewrite lines written before that moment without the
//! root finding out in [`AuditLog::verify`].
//!
//! Layout of `<token_dir>/audit/`:
//! - `log.jsonl`, the newest file; older ones are `log.<first seq, 12 digits>.jsonl`;
//! - `state`, two checksummed 256-byte slots with the newest seq, chain and key;
//! - `lock`, an empty file locked (`flock`) across processes.
//!
//! The directory is 0700 and its files 0600, whatever the umask.

use std::fmt::Write as _;
use std::fs::{self, File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{SystemTime, UNIX_EPOCH};

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::{Zeroize, Zeroizing};

use crate::attr::{CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_LABEL, CKA_UNIQUE_ID};
use crate::private_fs;
use crate::record::{AttrValue, ObjectRecord, StoreError};
use crate::seal::AuditKey;
pub use crate::time::{parse_time, rfc3339};

type HmacSha256 = Hmac<Sha256>;

const K1_LABEL: &[u8] = b"ferrohsm/audit/v1/k1";
const EVOLVE_LABEL: &[u8] = b"ferrohsm/audit/v1/evolve";

const CURRENT: &str = "log.jsonl";
const STATE: &str = "state";
const LOCK: &str = "lock";

/// The stored line ends with `,"chain":"<64 hex>"}`: 10 + 64 + 2 bytes.
const CHAIN_PREFIX: &[u8] = b",\"chain\":\"";
const SUFFIX_LEN: usize = 10 + 64 + 2;

const SLOT: usize = 256;
const SLOT_JSON: usize = 224;

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
    dir: PathBuf,
    options: AuditOptions,
}

/// One audited event. Fields are written in this order; `None` fields are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened: RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Process ID of the caller.
    pub pid: u32,
    /// Name of the calling process.
    pub process: String,
    /// PKCS#11 session handle, if the call had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// Who was logged in: `so`, `user` or `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What was done: a PKCS#11 function name or an administrative action.
    pub function: String,
    /// Mechanism name, for calls that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The object acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<AuditObject>,
    /// Outcome, as a `CKR_*` name.
    pub result: String,
    /// Key-use summaries: how many calls this line stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Key-use summaries: time of the first call summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Key-use summaries: time of the last call summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Free text; never secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How an object is named in the audit log; never any value of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditObject {
    /// Object handle in the session that used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// `CKA_LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `CKA_ID`, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `CKO_*` name of the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `CKK_*` name of the key type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// `CKA_UNIQUE_ID`: links the events of one object (a purge made without
    /// the storage key can name the object by this alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
}

impl AuditObject {
    /// What the audit log says about an object with attributes `get`
    /// (handle, label, `CKA_ID` in hex, class, key type, `CKA_UNIQUE_ID`):
    /// never a value. The one description the module and the tool share.
    pub fn describe<'a>(
        handle: Option<u64>,
        get: impl Fn(u64) -> Option<&'a AttrValue>,
    ) -> AuditObject {
        let bytes = |ty| match get(ty) {
            Some(AttrValue::Bytes(b)) => Some(b.as_slice()),
            _ => None,
        };
        let ulong = |ty| match get(ty) {
            Some(AttrValue::Ulong(v)) => Some(*v),
            _ => None,
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        AuditObject {
            handle,
            label: bytes(CKA_LABEL).map(text),
            id: bytes(CKA_ID).map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
            class: ulong(CKA_CLASS).map(class_name),
            key_type: ulong(CKA_KEY_TYPE).map(key_type_name),
            unique_id: bytes(CKA_UNIQUE_ID).map(text),
        }
    }

    /// [`AuditObject::describe`] of a stored record (no handle: not loaded).
    pub fn of_record(rec: &ObjectRecord) -> AuditObject {
        AuditObject::describe(None, |ty| rec.get(ty))
    }
}

/// `CKO_*` name of an object class.
fn class_name(c: u64) -> String {
    match c {
        0 => "CKO_DATA".into(),
        1 => "CKO_CERTIFICATE".into(),
        2 => "CKO_PUBLIC_KEY".into(),
        3 => "CKO_PRIVATE_KEY".into(),
        4 => "CKO_SECRET_KEY".into(),
        other => format!("CKO_{other:#x}"),
    }
}

/// `CKK_*` name of a key type.
fn key_type_name(k: u64) -> String {
    match k {
        0 => "CKK_RSA".into(),
        3 => "CKK_EC".into(),
        0x10 => "CKK_GENERIC_SECRET".into(),
        0x1f => "CKK_AES".into(),
        other => format!("CKK_{other:#x}"),
    }
}

impl AuditEvent {
    /// An event stamped now with this process's pid and name.
    pub fn now(function: &str, result: &str) -> AuditEvent {
        AuditEvent {
            time: rfc3339(SystemTime::now()),
            pid: std::process::id(),
            process: process_name().to_string(),
            function: function.to_string(),
            result: result.to_string(),
            ..AuditEvent::default()
        }
    }
}

fn process_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        fs::read_to_string("/proc/self/comm")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "unknown".to_string())
    })
}

/// One line of the log as read back (not authenticated: see [`AuditLog::verify`]).
#[derive(Clone, Debug, PartialEq)]
pub struct AuditLine {
    /// File name, relative to the audit directory.
    pub file: String,
    /// 1-based line number within `file`.
    pub line: u64,
    /// Sequence number across all files.
    pub seq: u64,
    /// What the line records.
    pub event: AuditEvent,
}

/// The outcome of [`AuditLog::verify`].
#[derive(Clone, Debug, PartialEq)]
pub struct VerifyReport {
    /// Complete lines found in all files (including any after a bad one).
    pub lines: u64,
    /// Log files found.
    pub files: usize,
    /// The first line that failed, `None` when the whole log checks out.
    pub first_bad: Option<BadLine>,
}

/// Where verification first failed, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct BadLine {
    /// File name, relative to the audit directory.
    pub file: String,
    /// 1-based line number within `file` (one past the end for a missing tail).
    pub line: u64,
    /// The line's sequence number, when it could be read, or the first missing one.
    pub seq: Option<u64>,
    /// What is wrong, for people.
    pub reason: String,
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

fn io_err(what: &str, path: &Path, e: std::io::Error) -> AuditError {
    AuditError::Io(format!("{what} {}: {e}", path.display()))
}

/// The chain position after the line with sequence number `seq`. Holds the
/// key of the *next* line, so it is never printed.
struct State {
    seq: u64,
    chain: [u8; 32],
    key: Zeroizing<[u8; 32]>,
}

impl State {
    fn initial(root: &AuditKey) -> State {
        let mut mac = new_mac(root.bytes());
        mac.update(K1_LABEL);
        let mut key = Zeroizing::new([0u8; 32]);
        key.copy_from_slice(&mac.finalize().into_bytes());
        State {
            seq: 0,
            chain: [0u8; 32],
            key,
        }
    }

    /// Moves past one line whose chain value is `chain`; the used key is
    /// overwritten by its successor, which is what makes old lines safe.
    fn advance(&mut self, chain: [u8; 32]) {
        let mut h = Sha256::new();
        h.update(EVOLVE_LABEL);
        h.update(&self.key[..]);
        let mut next = h.finalize();
        self.key.copy_from_slice(&next);
        next.zeroize();
        self.chain = chain;
        self.seq += 1;
    }

    /// The chain value of a line with this body, keyed with the current key.
    fn mac(&self, body_without_brace: &[u8]) -> HmacSha256 {
        let mut mac = new_mac(&self.key[..]);
        mac.update(&self.chain);
        mac.update(body_without_brace);
        mac.update(b"}");
        mac
    }
}

fn new_mac(key: &[u8]) -> HmacSha256 {
    <HmacSha256 as KeyInit>::new_from_slice(key).expect("HMAC takes keys of any length")
}

#[derive(Serialize)]
struct LineOut<'a> {
    seq: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
}

#[derive(Deserialize)]
struct LineIn {
    seq: u64,
    #[serde(flatten)]
    event: AuditEvent,
}

#[derive(Deserialize)]
struct SeqOnly {
    seq: u64,
}

/// Why a line did not continue the chain.
enum Fault {
    Malformed,
    OutOfOrder,
    Altered,
}

impl Fault {
    fn reason(&self, expected: u64) -> String {
        match self {
            Fault::Malformed => "malformed".to_string(),
            Fault::OutOfOrder => format!("out of order: expected seq {expected}"),
            Fault::Altered => "altered (chain value does not match)".to_string(),
        }
    }
}

/// Splits a stored line (without `\n`) into the body minus its final `}` and
/// the stored chain value, or `None` if the suffix is not exactly ours.
fn split_line(line: &[u8]) -> Option<(&[u8], [u8; 32])> {
    if line.len() < SUFFIX_LEN + 2 || !line.ends_with(b"\"}") {
        return None;
    }
    let cut = line.len() - SUFFIX_LEN;
    let (head, tail) = line.split_at(cut);
    let hex = tail.strip_prefix(CHAIN_PREFIX)?.strip_suffix(b"\"}")?;
    Some((head, unhex32(hex)?))
}

/// The seq of a stored line, if it is well-formed JSON with our suffix.
fn line_seq(line: &[u8]) -> Option<u64> {
    split_line(line)?;
    serde_json::from_slice::<SeqOnly>(line).ok().map(|s| s.seq)
}

/// Checks one stored line against `state`; on success advances it.
fn check_line(line: &[u8], state: &mut State) -> Result<u64, (Fault, Option<u64>)> {
    let (head, chain) = split_line(line).ok_or((Fault::Malformed, None))?;
    let seq = serde_json::from_slice::<SeqOnly>(line)
        .map_err(|_| (Fault::Malformed, None))?
        .seq;
    if seq != state.seq + 1 {
        return Err((Fault::OutOfOrder, Some(seq)));
    }
    state
        .mac(head)
        .verify_slice(&chain)
        .map_err(|_| (Fault::Altered, Some(seq)))?;
    state.advance(chain);
    Ok(seq)
}

fn hex(bytes: &[u8], out: &mut String) {
    for b in bytes {
        let _ = write!(out, "{b:02x}");
    }
}

fn unhex32(s: &[u8]) -> Option<[u8; 32]> {
    fn nibble(c: u8) -> Option<u8> {
        match c {
            b'0'..=b'9' => Some(c - b'0'),
            b'a'..=b'f' => Some(c - b'a' + 10),
            _ => None,
        }
    }
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

/// Encodes one state slot: JSON padded to 224 bytes, then its SHA-256.
fn encode_slot(state: &State) -> Zeroizing<Vec<u8>> {
    // Capacity fixed up front so no reallocation leaves a key copy behind.
    let mut json = Zeroizing::new(String::with_capacity(SLOT));
    json.push_str("{\"seq\":");
    let _ = write!(json, "{}", state.seq);
    json.push_str(",\"chain\":\"");
    hex(&state.chain, &mut json);
    json.push_str("\",\"key\":\"");
    hex(&state.key[..], &mut json);
    json.push_str("\"}");
    let mut slot = Zeroizing::new(Vec::with_capacity(SLOT));
    slot.extend_from_slice(json.as_bytes());
    slot.resize(SLOT_JSON, b' ');
    let sum = Sha256::digest(&slot[..]);
    slot.extend_from_slice(&sum);
    slot
}

fn decode_slot(slot: &[u8]) -> Option<State> {
    #[derive(Deserialize)]
    struct Raw {
        seq: u64,
        chain: String,
        key: String,
    }
    if slot.len() != SLOT || Sha256::digest(&slot[..SLOT_JSON])[..] != slot[SLOT_JSON..] {
        return None;
    }
    let mut raw: Raw = serde_json::from_slice(&slot[..SLOT_JSON]).ok()?;
    let key = unhex32(raw.key.as_bytes()).map(Zeroizing::new);
    raw.key.zeroize();
    Some(State {
        seq: raw.seq,
        chain: unhex32(raw.chain.as_bytes())?,
        key: key?,
    })
}

fn sync_dir(dir: &Path) -> Result<(), AuditError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| io_err("syncing directory", dir, e))
}

/// Numeric first seq of a rotated file name `log.<digits>.jsonl`.
fn rotated_seq(name: &str) -> Option<u64> {
    let digits = name.strip_prefix("log.")?.strip_suffix(".jsonl")?;
    if digits.len() < 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

fn is_log_name(name: &str) -> bool {
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
struct LockGuard {
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

    fn lock(&self, exclusive: bool) -> Result<LockGuard, AuditError> {
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

    fn read_state(&self) -> Result<State, AuditError> {
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

    /// Writes `state` durably into slot `seq % 2`, then overwrites the other
    /// slot too: a stale slot would keep an old key on disk and let whoever
    /// reads it rewrite lines already written. The second write is not synced;
    /// if it tears, the first slot is already durable.
    fn write_state(&self, state: &State) -> Result<(), AuditError> {
        let path = self.dir.join(STATE);
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(|e| io_err("opening", &path, e))?;
        let slot = encode_slot(state);
        let first = (state.seq % 2) as usize * SLOT;
        let other = SLOT - first;
        f.write_all_at(&slot, first as u64)
            .and_then(|()| f.sync_data())
            .and_then(|()| f.write_all_at(&slot, other as u64))
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
    fn log_files(&self) -> Result<Vec<String>, AuditError> {
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
    fn each_line(
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

    /// Checks the whole chain from seq 1 under `root`; reports the first bad line.
    pub fn verify(&self, root: &AuditKey) -> Result<VerifyReport, AuditError> {
        let _lock = self.lock(false)?;
        let saved = self.read_state()?;
        let names = self.log_files()?;
        let mut state = State::initial(root);
        let mut at_saved = (saved.seq == 0).then(|| (state.chain, state.key.clone()));
        let mut lines = 0u64;
        let mut first_bad: Option<BadLine> = None;
        let mut last_pos = (CURRENT.to_string(), 0u64);
        self.each_line(&names, |file, line, bytes| {
            lines += 1;
            last_pos = (file.to_string(), line);
            if first_bad.is_some() {
                return Ok(());
            }
            let expected = state.seq + 1;
            match check_line(bytes, &mut state) {
                Ok(seq) => {
                    if seq == saved.seq {
                        at_saved = Some((state.chain, state.key.clone()));
                    }
                }
                Err((fault, seq)) => {
                    first_bad = Some(BadLine {
                        file: file.to_string(),
                        line,
                        seq,
                        reason: fault.reason(expected),
                    });
                }
            }
            Ok(())
        })?;
        if first_bad.is_none() {
            if let Some(last) = names.last()
                && *last != last_pos.0
            {
                last_pos = (last.clone(), 0);
            }
            let end = BadLine {
                file: last_pos.0.clone(),
                line: last_pos.1 + 1,
                seq: Some(state.seq + 1),
                reason: String::new(),
            };
            first_bad = match at_saved {
                None => Some(BadLine {
                    reason: format!("lines missing at the end: state says {}", saved.seq),
                    ..end
                }),
                Some((chain, key)) if chain != saved.chain || key != saved.key => Some(BadLine {
                    seq: None,
                    reason: "state does not match the log (tail removed or state altered)"
                        .to_string(),
                    ..end
                }),
                Some(_) => None,
            };
        }
        Ok(VerifyReport {
            lines,
            files: names.len(),
            first_bad,
        })
    }

    /// All lines in order, parsed; no key needed, so not authenticated.
    pub fn read(&self) -> Result<Vec<AuditLine>, AuditError> {
        let _lock = self.lock(false)?;
        self.read_state()?;
        let names = self.log_files()?;
        let mut out = Vec::new();
        self.each_line(&names, |file, line, bytes| {
            let parsed = split_line(bytes)
                .and_then(|_| serde_json::from_slice::<LineIn>(bytes).ok())
                .ok_or_else(|| AuditError::Corrupt(format!("{file} line {line}: malformed")))?;
            out.push(AuditLine {
                file: file.to_string(),
                line,
                seq: parsed.seq,
                event: parsed.event,
            });
            Ok(())
        })?;
        Ok(out)
    }

    /// The raw files (name relative to the directory, bytes), `state`
    /// included, for backups.
    pub fn export(&self) -> Result<Vec<(String, Vec<u8>)>, AuditError> {
        let _lock = self.lock(false)?;
        self.read_state()?;
        let mut names = self.log_files()?;
        names.push(STATE.to_string());
        names
            .into_iter()
            .map(|name| {
                let path = self.dir.join(&name);
                let bytes = fs::read(&path).map_err(|e| io_err("reading", &path, e))?;
                Ok((name, bytes))
            })
            .collect()
    }

    /// Writes files from [`AuditLog::export`] into this (empty or missing)
    /// directory, durably, so the chain verifies after a restore.
    pub fn import(&self, files: &[(String, Vec<u8>)]) -> Result<(), AuditError> {
        let mut seen = std::collections::HashSet::new();
        for (name, _) in files {
            if name.contains('/') || name.contains("..") || !(name == STATE || is_log_name(name)) {
                return Err(AuditError::Corrupt(format!(
                    "not an audit log file name: {name:?}"
                )));
            }
            if !seen.insert(name.as_str()) {
                return Err(AuditError::Corrupt(format!("{name} given twice")));
            }
        }
        if !seen.contains(STATE) {
            return Err(AuditError::Corrupt("no state file".into()));
        }
        let created = match fs::read_dir(&self.dir) {
            Ok(entries) => {
                for entry in entries {
                    let entry = entry.map_err(|e| io_err("reading", &self.dir, e))?;
                    if entry.file_name() != LOCK {
                        return Err(AuditError::Io(format!(
                            "{} is not empty",
                            self.dir.display()
                        )));
                    }
                }
                false
            }
            Err(e) if e.kind() == ErrorKind::NotFound => {
                create_private_dir(&self.dir).map_err(|e| io_err("creating", &self.dir, e))?;
                true
            }
            Err(e) => return Err(io_err("reading", &self.dir, e)),
        };
        for (name, bytes) in files {
            let path = self.dir.join(name);
            let mut f = create_new_file(&path).map_err(|e| io_err("creating", &path, e))?;
            f.write_all(bytes)
                .and_then(|()| f.sync_all())
                .map_err(|e| io_err("writing", &path, e))?;
        }
        sync_dir(&self.dir)?;
        if created && let Some(parent) = self.dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            sync_dir(parent)?;
        }
        Ok(())
    }
}

/// Reads the end of `log.jsonl` (`len` bytes long). Returns the length up to
/// its last `\n`, and the complete lines after the last one whose seq is at
/// most `seq` (the candidates a killed writer left behind). Reads backwards in
/// growing windows so the common case is one small read.
fn read_tail(file: &File, len: u64, seq: u64, path: &Path) -> Result<(u64, Vec<u8>), AuditError> {
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
fn create_private_dir(dir: &Path) -> std::io::Result<()> {
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
fn create_new_file(path: &Path) -> std::io::Result<File> {
    private_fs::file_options()
        .write(true)
        .create_new(true)
        .open(path)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn root() -> AuditKey {
        AuditKey::from_bytes([7u8; 32])
    }

    fn ev(i: u64) -> AuditEvent {
        AuditEvent {
            session: Some(i),
            user: Some("user".into()),
            mechanism: i.is_multiple_of(2).then(|| "CKM_AES_GCM".to_string()),
            object: Some(AuditObject {
                handle: Some(i),
                label: Some(format!("key {i}")),
                ..AuditObject::default()
            }),
            detail: Some(format!("event number {i}")),
            ..AuditEvent::now("C_Encrypt", "CKR_OK")
        }
    }

    /// A started log with `calls` appends of 1, 2, 3, … events.
    fn setup(calls: u64, options: AuditOptions) -> (tempfile::TempDir, AuditLog, u64) {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&tmp.path().join("audit"), options);
        log.start(&root()).unwrap();
        let mut n = 0;
        for c in 1..=calls {
            let events: Vec<_> = (0..c).map(|k| ev(n + k + 1)).collect();
            log.append(&events).unwrap();
            n += c;
        }
        (tmp, log, n)
    }

    fn current(log: &AuditLog) -> PathBuf {
        log.dir().join(CURRENT)
    }

    fn lines_of(path: &Path) -> Vec<Vec<u8>> {
        fs::read(path)
            .unwrap()
            .split_inclusive(|&b| b == b'\n')
            .map(<[u8]>::to_vec)
            .collect()
    }

    fn bad(log: &AuditLog) -> BadLine {
        log.verify(&root())
            .unwrap()
            .first_bad
            .expect("expected a bad line")
    }

    fn seqs(log: &AuditLog) -> Vec<u64> {
        log.read().unwrap().iter().map(|l| l.seq).collect()
    }

    #[test]
    fn append_verify_round_trip() {
        let (_t, log, n) = setup(4, AuditOptions::default());
        assert_eq!(n, 10);
        let report = log.verify(&root()).unwrap();
        assert_eq!(
            report,
            VerifyReport {
                lines: 10,
                files: 1,
                first_bad: None
            }
        );
        let lines = log.read().unwrap();
        assert_eq!(lines.len(), 10);
        for (i, l) in lines.iter().enumerate() {
            let i = i as u64 + 1;
            assert_eq!((l.seq, l.line, l.file.as_str()), (i, i, CURRENT));
            assert_eq!(l.event, ev(i).clone_with_time(&l.event.time));
        }
        // The stored form: seq first, no nulls, chain last.
        let first = &lines_of(&current(&log))[0];
        let text = std::str::from_utf8(first).unwrap();
        assert!(text.starts_with("{\"seq\":1,\"time\":\""), "{text}");
        assert!(!text.contains("null"));
        assert!(text.ends_with("\"}\n"));
        assert_eq!(log.read_state().unwrap().seq, 10);
    }

    impl AuditEvent {
        fn clone_with_time(mut self, time: &str) -> AuditEvent {
            self.time = time.to_string();
            self
        }
    }

    #[test]
    fn empty_log_verifies_and_not_started_is_reported() {
        let tmp = tempfile::tempdir().unwrap();
        let log = AuditLog::new(&tmp.path().join("audit"), AuditOptions::default());
        assert!(!log.is_started());
        assert_eq!(log.append(&[ev(1)]), Err(AuditError::NotStarted));
        assert_eq!(log.verify(&root()), Err(AuditError::NotStarted));
        assert_eq!(log.read(), Err(AuditError::NotStarted));
        log.start(&root()).unwrap();
        assert!(log.is_started());
        let report = log.verify(&root()).unwrap();
        assert_eq!((report.lines, report.first_bad), (0, None));
        // An empty log under another root: the state gives it away.
        let other = log.verify(&AuditKey::from_bytes([8; 32])).unwrap();
        assert!(
            other
                .first_bad
                .unwrap()
                .reason
                .starts_with("state does not match")
        );
    }

    #[test]
    fn edited_byte_is_found() {
        let (_t, log, _) = setup(3, AuditOptions::default());
        let path = current(&log);
        let mut lines = lines_of(&path);
        let pos = lines[3].windows(9).position(|w| w == b"C_Encrypt").unwrap();
        lines[3][pos + 2] = b'D';
        fs::write(&path, lines.concat()).unwrap();
        let b = bad(&log);
        assert_eq!((b.file.as_str(), b.line, b.seq), (CURRENT, 4, Some(4)));
        assert_eq!(b.reason, "altered (chain value does not match)");
        // Breaking the JSON itself is reported as such.
        lines[3][0] = b'[';
        fs::write(&path, lines.concat()).unwrap();
        assert_eq!(bad(&log).reason, "malformed");
        assert_eq!(bad(&log).line, 4);
    }

    #[test]
    fn deleted_line_is_found() {
        let (_t, log, _) = setup(3, AuditOptions::default());
        let path = current(&log);
        let mut lines = lines_of(&path);
        lines.remove(2);
        fs::write(&path, lines.concat()).unwrap();
        let b = bad(&log);
        assert_eq!((b.line, b.seq), (3, Some(4)));
        assert_eq!(b.reason, "out of order: expected seq 3");
    }

    #[test]
    fn swapped_lines_are_found() {
        let (_t, log, _) = setup(3, AuditOptions::default());
        let path = current(&log);
        let mut lines = lines_of(&path);
        lines.swap(1, 4);
        fs::write(&path, lines.concat()).unwrap();
        let b = bad(&log);
        assert_eq!((b.line, b.seq), (2, Some(5)));
        assert_eq!(b.reason, "out of order: expected seq 2");
    }

    #[test]
    fn removed_last_line_is_found() {
        let (_t, log, n) = setup(3, AuditOptions::default());
        let path = current(&log);
        let mut lines = lines_of(&path);
        lines.pop();
        fs::write(&path, lines.concat()).unwrap();
        let b = bad(&log);
        assert_eq!((b.file.as_str(), b.line, b.seq), (CURRENT, n, Some(n)));
        assert_eq!(
            b.reason,
            format!("lines missing at the end: state says {n}")
        );
    }

    #[test]
    fn altered_state_is_found() {
        let (_t, log, n) = setup(2, AuditOptions::default());
        let forged = State {
            seq: n,
            chain: [1; 32],
            key: Zeroizing::new([2; 32]),
        };
        let slot = encode_slot(&forged);
        fs::write(log.dir().join(STATE), [&slot[..], &slot[..]].concat()).unwrap();
        assert_eq!(
            bad(&log).reason,
            "state does not match the log (tail removed or state altered)"
        );
    }

    #[test]
    fn other_root_fails_on_line_one() {
        let (_t, log, _) = setup(2, AuditOptions::default());
        let report = log.verify(&AuditKey::from_bytes([9; 32])).unwrap();
        let b = report.first_bad.unwrap();
        assert_eq!((b.file.as_str(), b.line, b.seq), (CURRENT, 1, Some(1)));
        assert_eq!(b.reason, "altered (chain value does not match)");
    }

    #[test]
    fn rotation_keeps_the_chain_and_a_missing_file_is_found() {
        let options = AuditOptions {
            max_file_bytes: 1000,
        };
        let (_t, log, n) = setup(6, options);
        let names = log.log_files().unwrap();
        assert!(names.len() >= 4, "{names:?}");
        assert_eq!(names.last().unwrap(), CURRENT);
        assert_eq!(names[0], "log.000000000001.jsonl");
        for name in &names[..names.len() - 1] {
            let first = lines_of(&log.dir().join(name))[0].clone();
            let seq = line_seq(first.strip_suffix(b"\n").unwrap()).unwrap();
            assert_eq!(*name, format!("log.{seq:012}.jsonl"));
        }
        let report = log.verify(&root()).unwrap();
        assert_eq!(report.first_bad, None);
        assert_eq!((report.lines, report.files), (n, names.len()));
        assert_eq!(seqs(&log), (1..=n).collect::<Vec<_>>());

        let gone = &names[1];
        fs::remove_file(log.dir().join(gone)).unwrap();
        let b = bad(&log);
        assert_eq!((b.file.as_str(), b.line), (names[2].as_str(), 1));
        assert!(b.reason.starts_with("out of order"), "{}", b.reason);
        fs::remove_file(log.dir().join(&names[0])).unwrap();
        let b = bad(&log);
        assert_eq!(b.reason, "out of order: expected seq 1");
    }

    #[test]
    fn partial_trailing_line_is_dropped_by_the_next_append() {
        let (_t, log, n) = setup(2, AuditOptions::default());
        let path = current(&log);
        let mut f = OpenOptions::new().append(true).open(&path).unwrap();
        f.write_all(b"{\"seq\":4,\"time\":\"2026-").unwrap();
        drop(f);
        // Never acknowledged, so not a fault.
        assert_eq!(log.verify(&root()).unwrap().first_bad, None);
        log.append(&[ev(4)]).unwrap();
        assert_eq!(log.verify(&root()).unwrap().first_bad, None);
        assert_eq!(seqs(&log), (1..=n + 1).collect::<Vec<_>>());
        assert!(fs::read(&path).unwrap().ends_with(b"\"}\n"));
    }

    #[test]
    fn state_one_write_behind_is_caught_up() {
        let (_t, log, n) = setup(2, AuditOptions::default());
        let state_path = log.dir().join(STATE);
        let old = fs::read(&state_path).unwrap();
        log.append(&[ev(4), ev(5)]).unwrap();
        fs::write(&state_path, &old).unwrap();
        assert_eq!(log.read_state().unwrap().seq, n);
        // Lines past the state that verify are a killed writer's, not a fault.
        assert_eq!(log.verify(&root()).unwrap().first_bad, None);
        log.append(&[ev(6)]).unwrap();
        assert_eq!(log.read_state().unwrap().seq, n + 3);
        assert_eq!(log.verify(&root()).unwrap().first_bad, None);
        assert_eq!(seqs(&log), (1..=n + 3).collect::<Vec<_>>());
    }

    #[test]
    fn unverifiable_lines_past_the_state_are_not_adopted() {
        let (_t, log, n) = setup(2, AuditOptions::default());
        let state_path = log.dir().join(STATE);
        let old = fs::read(&state_path).unwrap();
        log.append(&[ev(4), ev(5)]).unwrap();
        fs::write(&state_path, &old).unwrap();
        let path = current(&log);
        let mut lines = lines_of(&path);
        let i = lines.len() - 1;
        let pos = lines[i].windows(9).position(|w| w == b"C_Encrypt").unwrap();
        lines[i][pos] = b'X';
        fs::write(&path, lines.concat()).unwrap();
        log.append(&[ev(6)]).unwrap();
        // seq 4 adopted, seq 5 left in place, the new line continues from 4.
        assert_eq!(log.read_state().unwrap().seq, n + 2);
        let b = bad(&log);
        assert_eq!((b.line, b.seq), (n + 2, Some(n + 2)));
        assert_eq!(b.reason, "altered (chain value does not match)");
    }

    #[test]
    fn torn_state_slot_falls_back_to_the_other() {
        let (_t, log, n) = setup(2, AuditOptions::default());
        let state_path = log.dir().join(STATE);
        let old = fs::read(&state_path).unwrap();
        log.append(&[ev(4)]).unwrap();
        let new_seq = n + 1;
        // Both slots now hold the newest state: no old key stays on disk.
        let now = fs::read(&state_path).unwrap();
        assert_eq!(now[..SLOT], now[SLOT..]);
        assert!(!now.windows(SLOT).any(|w| old.windows(SLOT).any(|o| o == w)));

        // The valid slot with the higher seq wins.
        let newest = (new_seq % 2) as usize * SLOT;
        let mut mixed = old.clone();
        mixed[newest..newest + SLOT].copy_from_slice(&now[..SLOT]);
        fs::write(&state_path, &mixed).unwrap();
        assert_eq!(log.read_state().unwrap().seq, new_seq);

        // A crash while the newest slot was being written: it is garbled and
        // the other still holds the state before.
        let mut torn = old.clone();
        torn[newest + 10..newest + 40].fill(b'#');
        fs::write(&state_path, &torn).unwrap();
        assert_eq!(log.read_state().unwrap().seq, n);
        log.append(&[ev(5)]).unwrap();
        assert_eq!(log.read_state().unwrap().seq, n + 2);
        assert_eq!(log.verify(&root()).unwrap().first_bad, None);
        assert_eq!(seqs(&log), (1..=n + 2).collect::<Vec<_>>());

        // Both slots garbled: nothing to trust.
        fs::write(&state_path, vec![b'#'; 2 * SLOT]).unwrap();
        assert!(matches!(log.append(&[ev(6)]), Err(AuditError::Corrupt(_))));
    }

    #[test]
    fn concurrent_appenders_share_one_chain() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("audit");
        let options = AuditOptions {
            max_file_bytes: 8 * 1024,
        };
        AuditLog::new(&dir, options).start(&root()).unwrap();
        std::thread::scope(|s| {
            for t in 0..4u64 {
                let dir = dir.clone();
                s.spawn(move || {
                    let log = AuditLog::new(&dir, options);
                    for i in 0..50 {
                        log.append(&[ev(t * 1000 + i)]).unwrap();
                    }
                });
            }
        });
        let log = AuditLog::new(&dir, options);
        let report = log.verify(&root()).unwrap();
        assert_eq!(report.first_bad, None);
        assert_eq!(report.lines, 200);
        assert!(report.files > 1);
        assert_eq!(seqs(&log), (1..=200).collect::<Vec<_>>());
    }

    #[test]
    fn export_import_verifies() {
        let options = AuditOptions {
            max_file_bytes: 1500,
        };
        let (t, log, n) = setup(5, options);
        let files = log.export().unwrap();
        assert!(files.iter().any(|(name, _)| name == STATE));
        assert!(files.len() > 2);
        let restored = AuditLog::new(&t.path().join("restored/audit"), options);
        restored.import(&files).unwrap();
        assert_eq!(restored.verify(&root()).unwrap().first_bad, None);
        assert_eq!(seqs(&restored), (1..=n).collect::<Vec<_>>());
        restored.append(&[ev(n + 1)]).unwrap();
        assert_eq!(restored.verify(&root()).unwrap().first_bad, None);
        // Only into an empty directory.
        assert!(matches!(restored.import(&files), Err(AuditError::Io(_))));

        let other = AuditLog::new(&t.path().join("other"), options);
        for name in [
            "../state",
            "a/state",
            "lock",
            "log.x.jsonl",
            "..",
            "notes.txt",
        ] {
            let r = other.import(&[(name.to_string(), vec![]), (STATE.into(), vec![])]);
            assert!(matches!(r, Err(AuditError::Corrupt(_))), "{name}");
        }
        assert!(!other.dir().exists());
    }

    #[test]
    fn start_moves_an_old_log_aside() {
        let (t, log, n) = setup(2, AuditOptions::default());
        log.start(&root()).unwrap();
        assert_eq!(log.verify(&root()).unwrap().lines, 0);
        let aside: Vec<_> = fs::read_dir(t.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.to_string_lossy().ends_with(".old"))
            .collect();
        assert_eq!(aside.len(), 1);
        let old = AuditLog::new(&aside[0], AuditOptions::default());
        let report = old.verify(&root()).unwrap();
        assert_eq!((report.lines, report.first_bad), (n, None));
    }

    #[test]
    fn root_key_never_reaches_the_files() {
        let (_t, log, _) = setup(
            4,
            AuditOptions {
                max_file_bytes: 800,
            },
        );
        let root = root();
        let mut root_hex = String::new();
        hex(root.bytes(), &mut root_hex);
        let k1 = State::initial(&root);
        let mut k1_hex = String::new();
        hex(&k1.key[..], &mut k1_hex);
        for (name, bytes) in log.export().unwrap() {
            for needle in [&root.bytes()[..], root_hex.as_bytes(), k1_hex.as_bytes()] {
                assert!(!bytes.windows(needle.len()).any(|w| w == needle), "{name}");
            }
        }
        assert_eq!(format!("{root:?}"), "AuditKey(<redacted>)");
    }

    #[test]
    fn time_round_trip() {
        let cases = [
            ("1970-01-01T00:00:00.000Z", 0i64),
            ("2000-02-29T12:34:56.789Z", 951_827_696_789),
            ("2024-02-29T23:59:59.999Z", 1_709_251_199_999),
            ("2026-12-03T17:05:01.123Z", 1_796_317_501_123),
            ("1969-12-31T23:59:59.500Z", -500),
            ("1900-03-01T00:00:00.000Z", -2_203_891_200_000),
        ];
        for (text, ms) in cases {
            let t = if ms >= 0 {
                UNIX_EPOCH + Duration::from_millis(ms as u64)
            } else {
                UNIX_EPOCH - Duration::from_millis(ms.unsigned_abs())
            };
            assert_eq!(rfc3339(t), text);
            assert_eq!(parse_time(text), Some(t), "{text}");
        }
        let at = |s| parse_time(s).unwrap();
        assert_eq!(at("2024-02-29"), at("2024-02-29T00:00:00Z"));
        assert_eq!(at("2024-02-29T01:30:00+01:30"), at("2024-02-29T00:00:00Z"));
        assert_eq!(at("2024-02-28T22:00:00-02:00"), at("2024-02-29"));
        assert_eq!(
            at("2024-03-01T00:00:00.5Z"),
            at("2024-03-01") + Duration::from_millis(500)
        );
        assert_eq!(
            rfc3339(at("2024-12-31T23:59:59.123456789+00:00")),
            "2024-12-31T23:59:59.123Z"
        );
        for bad in [
            "2023-02-29",
            "1900-02-29",
            "2024-13-01",
            "2024-00-10",
            "2024-04-31",
            "2024-01-01T24:00:00Z",
            "2024-01-01T00:00:00",
            "2024-01-01T00:00:00.Z",
            "2024-01-01T00:00:00+0100",
            "2024-01-01 00:00:00Z",
            "2024-1-01",
            "",
        ] {
            assert_eq!(parse_time(bad), None, "{bad}");
        }
        assert!(parse_time("2000-02-29").is_some());
        // Every day for some years survives a round trip through both.
        let mut t = at("1999-12-25T06:07:08.009Z");
        for _ in 0..3000 {
            assert_eq!(parse_time(&rfc3339(t)), Some(t));
            t += Duration::from_secs(86_400 + 3601);
        }
    }

    #[test]
    fn errors_convert_to_store_errors() {
        assert!(matches!(
            StoreError::from(AuditError::NotStarted),
            StoreError::Io(_)
        ));
        assert!(matches!(
            StoreError::from(AuditError::Corrupt("x".into())),
            StoreError::Corrupt(_)
        ));
    }
}

/// Fuzz entry point (`crate::fuzzing`, `fuzz/`).
pub(crate) mod fuzzing;
