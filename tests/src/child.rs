//! Child processes: the C test programs, `pkcs11-tool`, `openssl`, and this test
//! binary re-run in a role. Output goes through files (no pipe can block either
//! side, nor a stray grandchild holding one open) and every wait has a deadline,
//! so a hang fails the test instead of stalling it.

use std::fmt::Display;
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use crate::{SO_PIN, TestEnv, USER_PIN, module_path};

/// `name` from PATH, if installed.
pub fn find_in_path(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}

/// A file's contents as text (binary bytes replaced), empty if unreadable.
pub fn read_lossy(path: &Path) -> String {
    String::from_utf8_lossy(&std::fs::read(path).unwrap_or_default()).into_owned()
}

// ---------------------------------------------------------------------------
// running with captured output and a timeout
// ---------------------------------------------------------------------------

/// Output of a finished child process.
pub struct Run {
    /// What ran, for messages.
    pub what: String,
    /// How it ended.
    pub status: ExitStatus,
    /// Its standard output.
    pub stdout: String,
    /// Its standard error.
    pub stderr: String,
}

impl Run {
    /// What ran, how it ended and its output, for failure messages.
    pub fn show(&self) -> String {
        format!(
            "{}: {}\nstdout:\n{}\nstderr:\n{}",
            self.what, self.status, self.stdout, self.stderr
        )
    }

    /// The stdout lines starting with `FAIL` (failed checks of a C test program).
    pub fn failures(&self) -> Vec<&str> {
        self.stdout
            .lines()
            .filter(|l| l.starts_with("FAIL"))
            .collect()
    }

    /// Values of the `@@ key value` lines (see `emit`).
    pub fn values(&self, key: &str) -> Vec<&str> {
        self.stdout.lines().filter_map(|l| report(l, key)).collect()
    }

    /// The value of the one `@@ key value` line.
    #[track_caller]
    pub fn value(&self, key: &str) -> &str {
        match self.values(key).as_slice() {
            [v] => v,
            other => panic!(
                "expected one '@@ {key}' line, got {}\n{}",
                other.len(),
                self.show()
            ),
        }
    }

    /// Asserts that a C test program passed: exit 0, no `FAIL` line, and every
    /// line of `want` in its stdout.
    #[track_caller]
    pub fn assert_c_passed(&self, env: &TestEnv, want: &[&str]) {
        let failures = self.failures();
        let missing: Vec<&&str> = want.iter().filter(|l| !self.stdout.contains(**l)).collect();
        assert!(
            self.status.success() && failures.is_empty() && missing.is_empty(),
            "{}: exit {}; {} failed check(s):\n{}\nmissing output lines: {missing:?}\n\n\
             full stdout:\n{}\nstderr:\n{}\nmodule log (tail):\n{}",
            self.what,
            self.status,
            failures.len(),
            failures.join("\n"),
            self.stdout,
            self.stderr,
            env.log_tail(40)
        );
    }

    /// Asserts a clean exit 0.
    #[track_caller]
    pub fn assert_success(&self, env: &TestEnv) {
        assert!(
            self.status.success(),
            "{}\nmodule log (tail):\n{}",
            self.show(),
            env.log_tail(30)
        );
    }
}

/// A started child whose standard output and error go to files.
pub struct Spawned {
    /// The process.
    pub child: Child,
    /// The file its stdout goes to.
    pub stdout: PathBuf,
    /// The file its stderr goes to.
    pub stderr: PathBuf,
}

/// Starts `cmd` in `env`'s directory with `input` on stdin and stdout/stderr
/// going to fresh numbered files there.
pub fn spawn_captured(env: &TestEnv, cmd: &mut Command, input: &[u8]) -> Spawned {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let base = env.dir.path().join(format!("child-{n}"));
    let in_path = base.with_extension("stdin");
    let stdout = base.with_extension("stdout");
    let stderr = base.with_extension("stderr");
    std::fs::write(&in_path, input).expect("write child stdin");
    let child = cmd
        .current_dir(env.dir.path())
        .stdin(File::open(&in_path).expect("stdin file"))
        .stdout(File::create(&stdout).expect("stdout file"))
        .stderr(File::create(&stderr).expect("stderr file"))
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {cmd:?}: {e}"));
    Spawned {
        child,
        stdout,
        stderr,
    }
}

/// Waits up to `timeout` for `child` to exit; if it is still running then,
/// kills and reaps it and returns `None`.
pub fn wait_or_kill(child: &mut Child, timeout: Duration) -> Option<ExitStatus> {
    let start = Instant::now();
    loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            return Some(st);
        }
        if start.elapsed() > timeout {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Waits for `child`, killing it and panicking after `timeout`.
pub fn wait_with_timeout(child: &mut Child, timeout: Duration, what: &str) -> ExitStatus {
    wait_or_kill(child, timeout)
        .unwrap_or_else(|| panic!("{what} did not finish within {timeout:?} (hang?); killed"))
}

/// Runs `cmd` to completion as `spawn_captured` starts it; kills it and fails
/// the test (showing its output and the module log) if it takes longer than
/// `timeout`.
pub fn run_captured(
    env: &TestEnv,
    mut cmd: Command,
    input: &[u8],
    timeout: Duration,
    what: &str,
) -> Run {
    let mut sp = spawn_captured(env, &mut cmd, input);
    let Some(status) = wait_or_kill(&mut sp.child, timeout) else {
        panic!(
            "{what} did not finish within {timeout:?} (hang); killed.\nstdout:\n{}\nstderr:\n{}\n\
             module log (tail):\n{}",
            read_lossy(&sp.stdout),
            read_lossy(&sp.stderr),
            env.log_tail(30)
        );
    };
    Run {
        what: what.to_string(),
        status,
        stdout: read_lossy(&sp.stdout),
        stderr: read_lossy(&sp.stderr),
    }
}

// ---------------------------------------------------------------------------
// this test binary as a child, in a role
// ---------------------------------------------------------------------------

/// Names the role a re-executed test binary plays.
pub const ROLE_VAR: &str = "FERROHSM_TEST_ROLE";

/// The role this process plays, if a test started it with `child_command`.
pub fn role() -> Option<String> {
    std::env::var(ROLE_VAR).ok().filter(|r| !r.is_empty())
}

/// A command re-running this test binary for only `test`, in role `role`, with
/// `env`'s data directory and config, in its directory. The test function
/// checks `role()` first and plays the role instead.
pub fn child_command(env: &TestEnv, test: &str, role: &str) -> Command {
    let exe = std::env::current_exe().expect("current_exe");
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", test, "--nocapture", "--test-threads", "1"])
        .env(ROLE_VAR, role)
        .envs(env.env_vars())
        .current_dir(env.dir.path());
    cmd
}

/// Reports one line to the parent on stdout, marked `@@ ` (libtest writes to
/// stdout too) and flushed at once.
pub fn emit_line(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").expect("write to stdout");
    out.flush().expect("flush stdout");
}

/// Reports `key value` to the parent (see `emit_line`).
pub fn emit(key: &str, value: impl Display) {
    emit_line(&format!("{key} {value}"));
}

/// The text of an `@@ ` report in `line`. The report may follow other text on
/// the line: libtest prints `test <name> ... ` without a newline before the
/// test runs.
pub fn report_line(line: &str) -> Option<&str> {
    line.split_once("@@ ").map(|(_, rest)| rest)
}

/// The value of an `@@ key value` report in `line` (see `report_line`).
pub fn report<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    report_line(line)?.strip_prefix(key)?.strip_prefix(' ')
}

// ---------------------------------------------------------------------------
// the C test programs and pkcs11-tool
// ---------------------------------------------------------------------------

/// Where p11-kit's standard PKCS#11 header is installed.
const P11_KIT_INCLUDE: &str = "/usr/include/p11-kit-1";

/// Compiles `tests/c/<name>.c` into `out_dir` and returns the executable's path.
pub fn compile_c(name: &str, out_dir: &Path) -> PathBuf {
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

/// Compiles `tests/c/<name>.c` into `env`'s directory and returns the command
/// the C programs take: `<exe> <module> <args…> <SO PIN> <user PIN>`, with
/// `env`'s environment.
pub fn c_program(env: &TestEnv, name: &str, args: &[&str]) -> Command {
    let exe = compile_c(name, env.dir.path());
    let mut cmd = Command::new(&exe);
    cmd.arg(module_path())
        .args(args)
        .arg(SO_PIN)
        .arg(USER_PIN)
        .envs(env.env_vars());
    cmd
}

/// `pkcs11-tool` arguments initialising the token of the first slot (in a
/// fresh process, the spare) as `label` with the test SO PIN, then `more`.
pub fn init_token_args<'a>(label: &'a str, more: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "--slot-index",
        "0",
        "--init-token",
        "--so-pin",
        SO_PIN,
        "--label",
        label,
    ];
    v.extend_from_slice(more);
    v
}

/// `pkcs11-tool --module <ferrohsm> <args>` (from PATH) with `env`'s module
/// environment.
pub fn pkcs11_tool(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new("pkcs11-tool");
    cmd.arg("--module")
        .arg(module_path())
        .args(args)
        .envs(env.env_vars());
    cmd
}
