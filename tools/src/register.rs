//! `ferrohsm register`: a p11-kit module config, so that p11-kit based
//! programs (GnuTLS, `p11-kit list-modules`, `p11tool`) find the module.

use std::io::Write;
use std::path::PathBuf;

use crate::RegisterArgs;
use crate::out;
use crate::p11::{Fail, Result};

/// File name of the module config.
const FILE_NAME: &str = "ferrohsm.module";

/// The per-user p11-kit module directory (`ferrohsm_pkcs11::locate` reads
/// registrations from the same place).
pub(crate) fn default_dir() -> Result<PathBuf> {
    ferrohsm_pkcs11::locate::p11kit_user_dir(&|k| std::env::var_os(k)).ok_or_else(|| {
        "neither XDG_CONFIG_HOME (absolute) nor HOME is set: give --config-dir DIR".into()
    })
}

/// `ferrohsm register`.
pub fn register(a: &RegisterArgs) -> Result<()> {
    let module = ferrohsm_pkcs11::locate::module_path()
        .ok_or_else(ferrohsm_pkcs11::locate::not_found_message)?;
    let module = module
        .canonicalize()
        .map_err(|e| format!("module {}: {e}", module.display()))?;
    let text = module.to_str().ok_or_else(|| {
        Fail::Msg(format!(
            "module path {} is not UTF-8; p11-kit cannot name it",
            module.display()
        ))
    })?;
    if text.contains('\n') {
        return Err("the module path contains a newline".into());
    }
    let dir = match &a.config_dir {
        Some(d) => d.clone(),
        None => default_dir()?,
    };
    std::fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    let path = dir.join(FILE_NAME);
    let content = format!(
        "# FerroHSM PKCS#11 module, written by `ferrohsm register`.\n\
         # The module reads FERROHSM_DIR / FERROHSM_CONF from the environment of the\n\
         # program that loads it.\n\
         module: {text}\n"
    );
    // Write beside, then rename: a reader never sees half a file.
    let tmp = dir.join(format!(".{FILE_NAME}.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(content.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, &path)
    };
    if let Err(e) = write() {
        let _ = std::fs::remove_file(&tmp);
        return Err(Fail::Msg(format!("cannot write {}: {e}", path.display())));
    }
    let mut msg = format!(
        "registered {} in {}\ncheck with: p11-kit list-modules\n",
        module.display(),
        path.display()
    );
    if a.config_dir.is_none() && is_root() {
        msg.push_str(
            "note: p11-kit ignores per-user module configs in programs run as root; \
             for those, register system-wide with --config-dir /etc/pkcs11/modules\n",
        );
    }
    out::stdout(&msg)
}

/// True when running as root (p11-kit then skips per-user configs).
fn is_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    // Without libc: a file this process just created is owned by its euid.
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}
