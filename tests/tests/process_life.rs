//! Process-lifecycle behaviour of the module, driven from a C program
//! (`tests/c/process_life.c`): fork, exit without `C_Finalize`, `C_Finalize`
//! from `atexit`, `dlclose` followed by `fork`, repeated initialise/finalise
//! cycles and concurrent `C_Initialize`.

use std::time::Duration;

use ferrohsm_tests::TestEnv;
use ferrohsm_tests::child::{c_program, run_captured};

/// Builds `process_life`, runs it in `mode` and asserts it exits 0 with the
/// mode's success line (and any `extra` lines) in its output.
fn run_mode(mode: &str, extra: &[&str]) {
    let env = TestEnv::new();
    let cmd = c_program(&env, "process_life", &[mode]);
    let what = format!("process_life {mode}");
    let run = run_captured(&env, cmd, b"", Duration::from_secs(60), &what);
    let passed_line = format!("MODE {mode} PASSED");
    let mut want = vec![passed_line.as_str()];
    want.extend_from_slice(extra);
    run.assert_c_passed(&env, &want);
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
