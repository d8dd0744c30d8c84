//! Reading a log back: [`AuditLog::verify`] (the whole chain from seq 1
//! under the root), [`AuditLog::read`] (the lines, not authenticated), and
//! [`AuditLog::export`]/[`AuditLog::import`] of the raw files for backups.
#![forbid(unsafe_code)]

use std::fs;
use std::io::{ErrorKind, Write};

use crate::seal::AuditKey;

use super::chain::{LineIn, State, check_line, split_line};
use super::event::AuditEvent;
use super::files::{
    AuditError, AuditLog, CURRENT, LOCK, STATE, create_new_file, create_private_dir, io_err,
    is_log_name, sync_dir,
};

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

impl AuditLog {
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
