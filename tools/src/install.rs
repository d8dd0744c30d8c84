//! What an installed `ferrohsm` needs beyond its commands: `--version`
//! saying which module it loads, and the man pages and shell completions
//! that packaging generates from the clap definitions (`generate-docs`).

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, CommandFactory};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use crate::p11::{Fail, ck};

/// `ferrohsm generate-docs` (hidden: for `scripts/package` and `make install`).
#[derive(Args)]
pub struct GenerateDocsArgs {
    /// Directory to write `man/*.1` and `completions/` into
    #[arg(long, value_name = "DIR")]
    pub out: PathBuf,
}

/// Major and minor of this CLI, as the module reports its `libraryVersion`.
fn cli_major_minor() -> String {
    let mut parts = env!("CARGO_PKG_VERSION").split('.');
    format!(
        "{}.{}",
        parts.next().unwrap_or("0"),
        parts.next().unwrap_or("0")
    )
}

/// `ferrohsm --version`: the CLI's version, the module it would load (and
/// why that one), and the module's own version from `C_GetInfo`. Exits 1
/// when no module is found, it cannot be loaded, or the versions differ.
pub fn print_version() -> ExitCode {
    println!("ferrohsm {}", env!("CARGO_PKG_VERSION"));
    let Some(found) = ferrohsm_pkcs11::locate::find() else {
        println!("module: none");
        eprintln!("ferrohsm: {}", ferrohsm_pkcs11::locate::not_found_message());
        return ExitCode::from(1);
    };
    println!("module: {} ({})", found.path.display(), found.how);
    match module_info(&found.path) {
        Ok((version, description)) => {
            println!("module version: {version} ({description})");
            let cli = cli_major_minor();
            if version == cli {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "ferrohsm: the module is version {version} but this program is {}: they come \
                     from different installations; install both from one package or `make \
                     install`, or set FERROHSM_MODULE to the matching module",
                    env!("CARGO_PKG_VERSION")
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            println!("module version: unknown");
            eprintln!("ferrohsm: {e}");
            ExitCode::from(1)
        }
    }
}

/// The `libraryVersion` ("0.1") and a description of the module at `path`,
/// or one line saying what failed (as every other command says it).
fn module_info(path: &Path) -> Result<(String, String), String> {
    let msg = |f: Fail| match f {
        Fail::Msg(m) => m,
        Fail::Exit(code) => format!("failed (exit {code})"),
    };
    let p11 = Pkcs11::new(path).map_err(|e| msg(ck(format!("loading {}", path.display()))(e)))?;
    // C_GetInfo needs an initialised module; C_Initialize opens the data
    // directory, so a bad FERROHSM_DIR / FERROHSM_CONF shows up here.
    p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|e| {
            msg(ck(format!(
                "C_Initialize of {} (check FERROHSM_CONF / FERROHSM_DIR; \
                 FERROHSM_LOG=info:FILE says more)",
                path.display()
            ))(e))
        })?;
    let info = p11
        .get_library_info()
        .map_err(|e| msg(ck("C_GetInfo")(e)))?;
    Ok((
        info.library_version().to_string(),
        format!(
            "{}, {}, Cryptoki {}",
            info.library_description().trim(),
            info.manufacturer_id().trim(),
            info.cryptoki_version()
        ),
    ))
}

/// `ferrohsm generate-docs --out DIR`: `DIR/man/ferrohsm*.1` (one page per
/// command) and `DIR/completions/{ferrohsm.bash,_ferrohsm,ferrohsm.fish}`.
pub fn generate_docs(a: &GenerateDocsArgs) -> Result<(), String> {
    use clap_complete::Shell;
    let man = a.out.join("man");
    let completions = a.out.join("completions");
    for d in [&man, &completions] {
        std::fs::create_dir_all(d).map_err(|e| format!("cannot create {}: {e}", d.display()))?;
    }
    clap_mangen::generate_to(crate::Cli::command(), &man)
        .map_err(|e| format!("writing man pages into {}: {e}", man.display()))?;
    for shell in [Shell::Bash, Shell::Zsh, Shell::Fish] {
        let mut cmd = visible_command();
        clap_complete::generate_to(shell, &mut cmd, "ferrohsm", &completions)
            .map_err(|e| format!("writing {shell} completions: {e}"))?;
    }
    println!("wrote {} and {}", man.display(), completions.display());
    Ok(())
}

/// The CLI without its hidden commands (clap_complete would offer them).
fn visible_command() -> clap::Command {
    let full = crate::Cli::command();
    let visible: Vec<clap::Command> = full
        .get_subcommands()
        .filter(|s| !s.is_hide_set())
        .cloned()
        .collect();
    clap::Command::new("ferrohsm")
        .version(env!("CARGO_PKG_VERSION"))
        .subcommands(visible)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docs_cover_every_visible_command() {
        let t = tempfile::tempdir().unwrap();
        generate_docs(&GenerateDocsArgs {
            out: t.path().to_path_buf(),
        })
        .unwrap();
        let man = t.path().join("man");
        let top = std::fs::read_to_string(man.join("ferrohsm.1")).unwrap();
        assert!(
            top.starts_with(".ie"),
            "not roff: {}",
            &top[..40.min(top.len())]
        );
        assert!(
            top.contains("FERROHSM_MODULE"),
            "environment section missing"
        );
        for sub in crate::Cli::command().get_subcommands() {
            let page = man.join(format!("ferrohsm-{}.1", sub.get_name()));
            assert_eq!(
                page.exists(),
                !sub.is_hide_set(),
                "{} (hidden: {})",
                page.display(),
                sub.is_hide_set()
            );
        }
        assert!(man.join("ferrohsm-audit-verify.1").exists());
        let bash = std::fs::read_to_string(t.path().join("completions/ferrohsm.bash")).unwrap();
        assert!(bash.contains("export-public") && !bash.contains("generate-docs"));
        assert!(t.path().join("completions/_ferrohsm").exists());
        assert!(t.path().join("completions/ferrohsm.fish").exists());
    }

    #[test]
    fn major_minor_matches_the_module_rule() {
        let v = ferrohsm_pkcs11::module::library_version();
        assert_eq!(cli_major_minor(), format!("{}.{}", v.major, v.minor));
    }
}
