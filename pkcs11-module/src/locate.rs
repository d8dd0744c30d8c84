//! Finds the built `libferrohsm_pkcs11.so` for programs of this workspace (the
//! CLI, tests, benchmarks) that load it by path, as real clients do.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};

/// File name of the shared library.
pub const LIBRARY_NAME: &str = "libferrohsm_pkcs11.so";

/// The module to load: `FERROHSM_MODULE` if set, else the newest
/// `libferrohsm_pkcs11.so` beside `exe` or in the Cargo profile directory
/// around it (`target/<profile>/` and `target/<profile>/deps/`, where Cargo
/// leaves the cdylib of a dependency).
pub fn module_path_for(exe: &Path) -> Option<PathBuf> {
    if let Some(p) = std::env::var_os("FERROHSM_MODULE") {
        return Some(PathBuf::from(p));
    }
    let dir = exe.parent()?;
    let mut dirs = vec![dir.to_path_buf(), dir.join("deps")];
    if dir.file_name().is_some_and(|n| n == "deps") {
        dirs.extend(dir.parent().map(Path::to_path_buf));
    }
    dirs.iter()
        .map(|d| d.join(LIBRARY_NAME))
        .filter_map(|p| Some((std::fs::metadata(&p).ok()?.modified().ok()?, p)))
        .max_by_key(|(t, _)| *t)
        .map(|(_, p)| p)
}

/// `module_path_for` the running executable.
pub fn module_path() -> Option<PathBuf> {
    module_path_for(&std::env::current_exe().ok()?)
}
