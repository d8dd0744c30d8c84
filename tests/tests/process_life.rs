//! Process-lifecycle behaviour of the module, driven from a C program
//! (`tests/c/process_life.c`): fork, exit without `C_Finalize`, `C_Finalize`
//! from `atexit`, `dlclose` followed by `fork`, repeated initialise/finalise
//! cycles and concurrent `C_Initialize`.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN, module_path};

const P11_KIT_INCLUDE: &str = "/usr/include/p11-kit-1";

/// Compiles `tests/c/<name>.c` into `out_dir` and returns the executable's path.
fn compile_c(name: &str, out_dir: &Path) -> PathBuf {
    let header = Path::new(P11_KIT_INCLUDE).join("p11-kit/pkcs11.h");
    assert!(
        header.exists(),
        "{} not found: install p11-kit's development files (`apt-get install libp11-kit-dev`)",
        header.display()
    );
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("c")
        .join(format!("{name}.c"));
    let exe = out_dir.join(name);
    let cc = std::env::var("CC").unwrap_or_else(|_| "cc".to_string());
    let out = Command::new(&cc)
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-O1", "-g"])
        .arg(format!("-I{P11_KIT_INCLUDE}"))
        .arg(&src)
        .arg("-o")
        .arg(&exe)
        .args(["-lpthread", "-ldl"])
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run the C compiler `{cc}` ({e}): install gcc (`apt-get install gcc`)")
        });
    assert!(
        out.status.success(),
        "compiling {} failed:\n{}{}",
        src.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    exe
}

/// Output of a finished child process.
struct Run {
    status: ExitStatus,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` with stdout/stderr captured to files in `dir`; kills it and
/// panics if it does not finish within `timeout`.
fn run_with_timeout(mut cmd: Command, dir: &Path, timeout: Duration, what: &str) -> Run {
    let out_path = dir.join(format!("{what}.stdout"));
    let err_path = dir.join(format!("{what}.stderr"));
    let out = File::create(&out_path).expect("create stdout file");
    let err = File::create(&err_path).expect("create stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {what}: {e}"));
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "{what} did not finish within {timeout:?} (hang); killed.\nstdout:\n{}\nstderr:\n{}",
                std::fs::read_to_string(&out_path).unwrap_or_default(),
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Run {
        status,
        stdout: std::fs::read_to_string(&out_path).unwrap_or_default(),
        stderr: std::fs::read_to_string(&err_path).unwrap_or_default(),
    }
}

/// The last `n` lines of the module log, for failure messages.
fn log_tail(env: &TestEnv, n: usize) -> String {
    let log = env.log();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Builds `process_life`, runs it in `mode` and asserts it exits 0 with the
/// mode's success line (and any `extra` lines) in its output.
fn run_mode(mode: &str, extra: &[&str]) {
    let env = TestEnv::new();
    let exe = compile_c("process_life", env.dir.path());
    let module = module_path();
    let mut cmd = Command::new(&exe);
    cmd.arg(&module)
        .arg(mode)
        .arg(SO_PIN)
        .arg(USER_PIN)
        .envs(env.env_vars())
        .current_dir(env.dir.path());
    let run = run_with_timeout(cmd, env.dir.path(), Duration::from_secs(60), mode);
    let failures: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    let passed_line = format!("MODE {mode} PASSED");
    let missing: Vec<&&str> = extra.iter().filter(|l| !run.stdout.contains(**l)).collect();
    assert!(
        run.status.success()
            && failures.is_empty()
            && run.stdout.contains(&passed_line)
            && missing.is_empty(),
        "process_life {mode}: exit {}; {} failed check(s):\n{}\nmissing output lines: {missing:?}\n\nfull stdout:\n{}\nstderr:\n{}\nmodule log (tail):\n{}",
        run.status,
        failures.len(),
        failures.join("\n"),
        run.stdout,
        run.stderr,
        log_tail(&env, 40)
    );
}

/// After `fork()` the child gets `CKR_CRYPTOKI_NOT_INITIALIZED` from every call
/// until it calls `C_Initialize`, which then works (token init + digests); the
/// parent's sessions, including a half-done digest, keep working.
#[test]
fn fork_child_must_reinitialize_and_parent_is_unaffected() {
    run_mode("fork", &[]);
}

/// Exiting with sessions open, a user logged in and digests active, without
/// `C_Finalize`, exits cleanly (code 0, no crash, no hang).
#[test]
fn exit_with_open_sessions_without_finalize() {
    run_mode(
        "exit-open",
        &["exiting with sessions open and a digest active, no C_Finalize"],
    );
}

/// `exit()` while other threads are still inside the module exits cleanly.
#[test]
fn exit_while_threads_use_the_module() {
    run_mode(
        "exit-busy",
        &["exiting while 4 threads are inside the module, no C_Finalize"],
    );
}

/// `C_Finalize` from an `atexit` handler registered after `C_Initialize`
/// returns `CKR_OK` and the process exits 0.
#[test]
fn finalize_from_atexit_handler() {
    run_mode("atexit", &["atexit handler: C_Finalize returned CKR_OK"]);
}

/// Same, with the handler registered before the module was loaded (so it runs
/// after anything the module itself registered for process exit).
#[test]
fn finalize_from_atexit_handler_registered_before_load() {
    run_mode(
        "atexit-early",
        &["atexit handler: C_Finalize returned CKR_OK"],
    );
}

/// `C_Finalize` + `dlclose`, then `fork()`: no fork handler of the unloaded
/// library may run. The library can then be loaded and used again.
#[test]
fn dlclose_then_fork() {
    run_mode("dlclose-fork", &[]);
}

/// 200 `C_Initialize`/`C_Finalize` cycles in one process, each using a session
/// and leaving one with an active operation; no file descriptor or thread leak.
#[test]
fn many_initialize_finalize_cycles() {
    run_mode("cycles", &[]);
}

/// Two threads calling `C_Initialize` at the same moment: exactly one gets
/// `CKR_OK`, the other `CKR_CRYPTOKI_ALREADY_INITIALIZED`; one `C_Finalize`
/// then undoes it.
#[test]
fn concurrent_initialize() {
    run_mode("init-race", &[]);
}

/// Two copies of the library in one process (a copied file: independent
/// instances that both work, finalising one leaves the other running) and the
/// same file through a symlink (one instance: `CKR_CRYPTOKI_ALREADY_INITIALIZED`).
#[test]
fn two_copies_in_one_process() {
    run_mode("two-copies", &[]);
}
