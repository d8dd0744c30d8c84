//! Owner-only files and directories under the data directory.
//!
//! Token databases hold ciphertext and public objects, audit logs name keys,
//! processes and times: no other local user needs to read either. So every
//! directory the store makes is 0700 and every file 0600, given at creation
//! (a umask can only narrow a mode, never widen it); sled's own files are
//! created the same way (`vendor/sled/FERROHSM-PATCH.md`).
//!
//! [`prepare_data_dir`] creates the data directory 0700 (its missing parents
//! with the default mode), or, when it exists with group or world access,
//! tightens it to owner-only, and tightens whatever an older version left
//! group/world-accessible in FerroHSM's own entries (`token-N`,
//! `broken-token-…`). It refuses, with a message saying what to do, a
//! directory it must not change: one shared by design (sticky bit), one
//! holding entries that are not FerroHSM's (the data directory was pointed at
//! a general-purpose directory), or one this process may not chmod (another
//! user's). It never widens a mode.

use std::fs;
use std::io::{self, ErrorKind};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::record::StoreError;

/// Mode of every directory the store creates.
pub(crate) const DIR_MODE: u32 = 0o700;
/// Mode of every file the store creates.
pub(crate) const FILE_MODE: u32 = 0o600;
/// Group and world permission bits.
const OTHERS: u32 = 0o077;
/// The sticky bit: a directory shared by design (`/tmp`).
const STICKY: u32 = 0o1000;

/// Creates `dir` and its missing parents with mode 0700.
pub(crate) fn create_dir_all(dir: &Path) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(DIR_MODE)
        .create(dir)
}

/// `OpenOptions` that create a missing file with mode 0600.
pub(crate) fn file_options() -> fs::OpenOptions {
    let mut options = fs::OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Whether `name` is an entry FerroHSM makes in a data directory
/// (`token-<slot>`, `broken-token-<slot>-<nanos>`), or `lost+found` (the
/// data directory is a file system of its own).
fn ours(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    name == "lost+found"
        || name.strip_prefix("token-").is_some_and(digits)
        || name
            .strip_prefix("broken-token-")
            .and_then(|r| r.split_once('-'))
            .is_some_and(|(slot, nanos)| digits(slot) && digits(nanos))
}

fn mode_of(md: &fs::Metadata) -> u32 {
    md.permissions().mode() & 0o7777
}

/// Creates the data directory (0700) if missing; makes an existing one
/// owner-only, with FerroHSM's entries in it. Returns what it changed, one
/// line each, for the caller's log.
pub(crate) fn prepare_data_dir(dir: &Path) -> Result<Vec<String>, StoreError> {
    let shown = dir.display();
    if !dir.exists() {
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent)
                .map_err(|e| StoreError::Io(format!("cannot create {}: {e}", parent.display())))?;
        }
        match fs::DirBuilder::new().mode(DIR_MODE).create(dir) {
            // Another process may have made it meanwhile: checked below.
            Err(e) if e.kind() != ErrorKind::AlreadyExists => {
                return Err(StoreError::Io(format!("cannot create {shown}: {e}")));
            }
            _ => {}
        }
    }
    let md = fs::metadata(dir).map_err(|e| StoreError::Io(format!("cannot read {shown}: {e}")))?;
    if !md.is_dir() {
        return Err(StoreError::Io(format!(
            "data directory {shown} is not a directory"
        )));
    }
    let mut notes = Vec::new();
    let mode = mode_of(&md);
    if mode & OTHERS != 0 {
        let refuse = |why: String| {
            StoreError::Io(format!(
                "data directory {shown} is accessible to other users (mode {mode:04o}) and {why}, \
                 so FerroHSM leaves it as it is and does not use it: have its owner make it \
                 owner-only (chmod 700 {shown}), or point FERROHSM_DIR (data_dir) at a \
                 directory of its own"
            ))
        };
        if mode & STICKY != 0 {
            return Err(refuse("is shared by design (sticky bit)".into()));
        }
        let foreign = foreign_entries(dir)?;
        if !foreign.is_empty() {
            return Err(refuse(format!(
                "holds entries that are not FerroHSM's ({})",
                foreign.join(", ")
            )));
        }
        let tight = mode & !OTHERS;
        fs::set_permissions(dir, fs::Permissions::from_mode(tight)).map_err(|e| {
            if e.kind() == ErrorKind::PermissionDenied {
                refuse(format!(
                    "belongs to another user (cannot change its mode: {e})"
                ))
            } else {
                StoreError::Io(format!("cannot change the mode of {shown}: {e}"))
            }
        })?;
        notes.push(format!(
            "data directory {shown} was accessible to other users (mode {mode:04o}): \
             made it owner-only (mode {tight:04o})"
        ));
    }
    let mut tightened = 0usize;
    let mut failed = Vec::new();
    let entries =
        fs::read_dir(dir).map_err(|e| StoreError::Io(format!("cannot list {shown}: {e}")))?;
    for entry in entries.flatten() {
        let name = entry.file_name();
        if name.to_str().is_some_and(|n| n != "lost+found" && ours(n)) {
            tighten_tree(&entry.path(), &mut tightened, &mut failed);
        }
    }
    if tightened > 0 {
        notes.push(format!(
            "made {tightened} files and directories under {shown} owner-only \
             (an older version had left them readable by other users)"
        ));
    }
    for (path, e) in failed {
        notes.push(format!("cannot make {} owner-only: {e}", path.display()));
    }
    Ok(notes)
}

/// Up to three names in `dir` that FerroHSM would not have made.
fn foreign_entries(dir: &Path) -> Result<Vec<String>, StoreError> {
    let rd = fs::read_dir(dir)
        .map_err(|e| StoreError::Io(format!("cannot list {}: {e}", dir.display())))?;
    let mut foreign = Vec::new();
    for entry in rd.flatten() {
        let name = entry.file_name();
        if !name.to_str().is_some_and(ours) {
            foreign.push(format!("{name:?}"));
            if foreign.len() == 3 {
                foreign.push("…".into());
                break;
            }
        }
    }
    Ok(foreign)
}

/// Removes the group and world bits of `root` and of everything under it
/// (symbolic links are left alone, never followed). Counts what it changed;
/// collects what it could not change, except entries removed meanwhile by
/// another process.
fn tighten_tree(root: &Path, tightened: &mut usize, failed: &mut Vec<(PathBuf, io::Error)>) {
    let mut todo = vec![root.to_path_buf()];
    while let Some(path) = todo.pop() {
        let md = match fs::symlink_metadata(&path) {
            Ok(md) => md,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => {
                failed.push((path, e));
                continue;
            }
        };
        if md.file_type().is_symlink() {
            continue;
        }
        let mode = mode_of(&md);
        if mode & OTHERS != 0 {
            match fs::set_permissions(&path, fs::Permissions::from_mode(mode & !OTHERS)) {
                Ok(()) => *tightened += 1,
                Err(e) if e.kind() == ErrorKind::NotFound => continue,
                Err(e) => failed.push((path.clone(), e)),
            }
        }
        if md.is_dir() {
            match fs::read_dir(&path) {
                Ok(rd) => todo.extend(rd.flatten().map(|e| e.path())),
                Err(e) if e.kind() == ErrorKind::NotFound => {}
                Err(e) => failed.push((path, e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_of_entries_ferrohsm_makes() {
        for n in [
            "token-0",
            "token-17",
            "broken-token-3-1700000000123456789",
            "lost+found",
        ] {
            assert!(ours(n), "{n}");
        }
        for n in [
            "token-",
            "token-x",
            "token-1.bak",
            "broken-token-3",
            "broken-token--5",
            "ferrohsm.toml",
            ".bashrc",
        ] {
            assert!(!ours(n), "{n}");
        }
    }

    #[test]
    fn a_directory_with_other_files_or_the_sticky_bit_is_refused_and_left_alone() {
        let d = tempfile::tempdir().unwrap();
        let data = d.path().join("data");
        fs::create_dir(&data).unwrap();
        fs::write(data.join("notes.txt"), b"mine").unwrap();
        fs::create_dir(data.join("token-0")).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o755)).unwrap();
        let e = prepare_data_dir(&data).unwrap_err().to_string();
        assert!(e.contains("mode 0755"), "{e}");
        assert!(e.contains("\"notes.txt\""), "{e}");
        assert!(e.contains("chmod 700"), "{e}");
        assert_eq!(mode_of(&fs::metadata(&data).unwrap()), 0o755);

        fs::remove_file(data.join("notes.txt")).unwrap();
        fs::set_permissions(&data, fs::Permissions::from_mode(0o1777)).unwrap();
        let e = prepare_data_dir(&data).unwrap_err().to_string();
        assert!(e.contains("sticky"), "{e}");
        assert_eq!(mode_of(&fs::metadata(&data).unwrap()), 0o1777);

        fs::set_permissions(&data, fs::Permissions::from_mode(0o750)).unwrap();
        let notes = prepare_data_dir(&data).unwrap();
        assert!(notes[0].contains("mode 0750"), "{notes:?}");
        assert_eq!(mode_of(&fs::metadata(&data).unwrap()), 0o700);
        // Nothing left to do: nothing to say.
        assert_eq!(prepare_data_dir(&data).unwrap(), Vec::<String>::new());
    }
}
