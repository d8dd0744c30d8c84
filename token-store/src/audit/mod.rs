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
#![forbid(unsafe_code)]

/// The keyed hash chain, the stored line format and the state slot encoding.
mod chain;
/// `AuditEvent` and `AuditObject`: what a line records (a leaf).
mod event;
/// `AuditLog` and its files: start, lock, state slots, append, rotation.
mod files;
/// Reading back: verify, read, export and import.
mod verify;

pub use crate::time::{parse_time, rfc3339};
pub use event::{AuditEvent, AuditObject};
pub use files::{AuditError, AuditLog, AuditOptions};
pub use verify::{AuditLine, BadLine, VerifyReport};

#[cfg(test)]
mod tests;

/// Fuzz entry point (`crate::fuzzing`, `fuzz/`).
pub(crate) mod fuzzing;
