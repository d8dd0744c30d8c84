//! The `ferrohsm` binary and the module the tests hand it: one definition for
//! the test files that run the tool.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};

use crate::child::{Run, run_captured};
use crate::{SO_PIN, TestEnv, USER_PIN, module_path};

/// How long one run of the tool may take.
pub const TIMEOUT: Duration = Duration::from_secs(60);

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

/// Runs `cmd` (the tool with `args`, from `command`) to its end with captured
/// output, failing the test after `TIMEOUT`.
pub fn run_cmd(env: &TestEnv, cmd: Command, args: &[&str]) -> Run {
    run_captured(
        env,
        cmd,
        b"",
        TIMEOUT,
        &format!("ferrohsm {}", args.join(" ")),
    )
}

/// `run_cmd`, requiring exit 0.
#[track_caller]
pub fn ok_cmd(env: &TestEnv, cmd: Command, args: &[&str]) -> Run {
    let r = run_cmd(env, cmd, args);
    r.assert_success(env);
    r
}

/// The tool with `args` in `env` (see `command`), run to its end.
pub fn run(env: &TestEnv, args: &[&str]) -> Run {
    run_cmd(env, command(env, args), args)
}

/// `run`, requiring exit 0.
#[track_caller]
pub fn ok(env: &TestEnv, args: &[&str]) -> Run {
    ok_cmd(env, command(env, args), args)
}

/// `ferrohsm init` of token `label` with the test PINs (`T_SO`, `T_PIN`) and
/// `more` arguments, run by `ok` on `cmd(args)`; it must report the token.
#[track_caller]
pub fn init_with(
    env: &TestEnv,
    label: &str,
    more: &[&str],
    cmd: impl FnOnce(&[&str]) -> Command,
) -> Run {
    let mut args = vec![
        "init",
        "--label",
        label,
        "--so-pin-env",
        "T_SO",
        "--pin-env",
        "T_PIN",
    ];
    args.extend_from_slice(more);
    let r = ok_cmd(env, cmd(&args), &args);
    assert!(r.stdout.contains("initialised token"), "{}", r.show());
    r
}

/// `init_with` the plain `command`.
#[track_caller]
pub fn init(env: &TestEnv, label: &str, more: &[&str]) -> Run {
    init_with(env, label, more, |args| command(env, args))
}
