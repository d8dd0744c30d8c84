//! `ferrohsm unregister`: removes the p11-kit module config that `ferrohsm
//! register` wrote, so p11-kit based programs stop loading the module.

use std::path::PathBuf;

use crate::UnregisterArgs;
use crate::out;
use crate::p11::{Fail, Result};

/// File name of the module config (as `register` writes it).
const FILE_NAME: &str = "ferrohsm.module";

/// The module a p11-kit config names (its `module:` line), if any.
fn module_line(text: &str) -> Option<&str> {
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("module:"))
        .map(str::trim)
        .next()
}

/// `ferrohsm unregister`. Removes only a config naming a FerroHSM module,
/// never another program's file of the same name.
pub fn unregister(a: &UnregisterArgs) -> Result<()> {
    let dir: PathBuf = match &a.config_dir {
        Some(d) => d.clone(),
        None => crate::register::default_dir()?,
    };
    let path = dir.join(FILE_NAME);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(Fail::Msg(format!(
                "nothing to unregister: {} does not exist",
                path.display()
            )));
        }
        Err(e) => return Err(Fail::Msg(format!("cannot read {}: {e}", path.display()))),
    };
    let module = module_line(&text).unwrap_or("");
    if !module.ends_with("libferrohsm_pkcs11.so") {
        return Err(Fail::Msg(format!(
            "{} does not name a FerroHSM module (module: {module:?}): left alone",
            path.display()
        )));
    }
    std::fs::remove_file(&path)
        .map_err(|e| Fail::Msg(format!("cannot remove {}: {e}", path.display())))?;
    out::stdout(&format!(
        "unregistered {module}: removed {}\ncheck with: p11-kit list-modules\n",
        path.display()
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn module_lines() {
        assert_eq!(
            module_line("# c\nmodule: /x/libferrohsm_pkcs11.so\n"),
            Some("/x/libferrohsm_pkcs11.so")
        );
        assert_eq!(module_line("critical: yes\n"), None);
    }
}
