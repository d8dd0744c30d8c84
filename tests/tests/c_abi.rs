//! Drives the module through its raw C ABI from a C program (`tests/c/abi_check.c`)
//! built against p11-kit's standard PKCS#11 header: function lists, interfaces,
//! token set-up and multi-threaded random/digest use.

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

#[test]
fn abi_check_program_passes() {
    let env = TestEnv::new();
    let module = module_path();
    let exe = compile_c("abi_check", env.dir.path());
    let mut cmd = Command::new(&exe);
    cmd.arg(&module)
        .arg(SO_PIN)
        .arg(USER_PIN)
        .envs(env.env_vars());
    let run = run_with_timeout(cmd, env.dir.path(), Duration::from_secs(120), "abi_check");
    let failures: Vec<&str> = run
        .stdout
        .lines()
        .filter(|l| l.starts_with("FAIL"))
        .collect();
    assert!(
        run.status.success() && failures.is_empty() && run.stdout.contains("ALL CHECKS PASSED"),
        "abi_check failed ({}), {} failed check(s):\n{}\n\nfull stdout:\n{}\nstderr:\n{}\nmodule log (tail):\n{}",
        run.status,
        failures.len(),
        failures.join("\n"),
        run.stdout,
        run.stderr,
        log_tail(&env, 40)
    );
}
