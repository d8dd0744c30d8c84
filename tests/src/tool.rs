//! The `ferrohsm` binary and the module the tests hand it: one definition for
//! the test files that run the tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use crate::{SO_PIN, TestEnv, USER_PIN, module_path};

fn mtime(p: &Path) -> SystemTime {
    std::fs::metadata(p)
        .and_then(|m| m.modified())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// The built `ferrohsm`: `FERROHSM_BIN`, else `target/<profile>/ferrohsm`
/// beside this test binary's `deps/` directory. Refuses one older than its
/// sources, so a stale binary is never what gets tested.
pub fn binary() -> PathBuf {
    if let Some(p) = std::env::var_os("FERROHSM_BIN") {
        return PathBuf::from(p);
    }
    let exe = std::env::current_exe().expect("current_exe");
    let mut dir = exe.parent().expect("test binary directory").to_path_buf();
    if dir.ends_with("deps") {
        dir.pop();
    }
    let bin = dir.join("ferrohsm");
    assert!(
        bin.is_file(),
        "{} is not built: run `cargo build --workspace` (scripts/test does), \
         or name the binary in FERROHSM_BIN",
        bin.display()
    );
    let built = mtime(&bin);
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tools/src");
    for entry in std::fs::read_dir(&src).into_iter().flatten().flatten() {
        assert!(
            mtime(&entry.path()) <= built,
            "{} is older than {}: run `cargo build -p ferrohsm`",
            bin.display(),
            entry.path().display()
        );
    }
    bin
}

/// The module a test loads and hands the tool (`FERROHSM_MODULE`), chosen
/// once: `module_path()` picks the newest build, which a concurrent build
/// could change between two calls.
pub fn module() -> &'static Path {
    static MODULE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    MODULE.get_or_init(module_path)
}

/// Loads and initialises `module()` in this process, as `TestEnv::load` does.
pub fn load() -> Pkcs11 {
    let p = Pkcs11::new(module()).expect("load module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    p
}

/// The tool with `args` in `env`, loading `module()`; the test SO PIN is in
/// `T_SO`, the user PIN in `T_PIN`, and `FERROHSM_POLICY` is unset (a test
/// asks for a policy explicitly).
pub fn command(env: &TestEnv, args: &[&str]) -> Command {
    let mut c = Command::new(binary());
    c.args(args)
        .envs(env.env_vars())
        .env("FERROHSM_MODULE", module())
        .env("T_SO", SO_PIN)
        .env("T_PIN", USER_PIN)
        .env_remove("FERROHSM_POLICY");
    c
}
