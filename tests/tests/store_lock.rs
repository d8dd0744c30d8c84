//! A token database held by another process: the module waits up to
//! `store_lock_timeout_ms`, then answers `CKR_DEVICE_ERROR` with a log line
//! naming the lock, and works again as soon as the holder lets go.
//!
//! The "other process" is simulated by taking sled's own exclusive `flock`
//! on the token's `db` file, which is what a second FerroHSM process in the
//! middle of a store call holds.

use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use ferrohsm_tests::raw::{RawModule, check};
use ferrohsm_tests::{TestEnv, USER_PIN, ck};

#[test]
fn held_database_gives_device_error_after_the_timeout_then_recovers() {
    let env = TestEnv::with_config("store_lock_timeout_ms = 300");
    let m = RawModule::load();
    check(
        ck!(m, C_Initialize(std::ptr::null_mut())),
        CKR_OK,
        "C_Initialize",
    );
    let slot = m.make_token("locked");
    let s = m.open(slot, true);

    let db = env
        .data_dir()
        .join(format!("token-{slot}"))
        .join("db")
        .join("db");
    let holder = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open(&db)
        .expect("token database file");
    // The module keeps the database open for a few ms after a call (its
    // linger time), then lets go: the lock must become free within a second.
    let free_by = Instant::now() + Duration::from_secs(1);
    loop {
        // SAFETY: flock on a file descriptor this test owns and keeps open.
        let rc = unsafe { libc::flock(holder.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        if rc == 0 {
            break;
        }
        assert!(
            Instant::now() < free_by,
            "the module still holds the database a second after its last call"
        );
        std::thread::sleep(Duration::from_millis(5));
    }

    // Logging in reads the private objects from the store.
    let start = Instant::now();
    check(
        m.login(s, CKU_USER, USER_PIN),
        CKR_DEVICE_ERROR,
        "C_Login while another process holds the database",
    );
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(300),
        "gave up after {waited:?}, before the configured 300 ms"
    );
    let log = std::fs::read_to_string(env.log_path()).unwrap_or_default();
    assert!(
        log.contains("locked by another process"),
        "the log names the cause:\n{log}"
    );

    drop(holder);
    check(
        m.login(s, CKU_USER, USER_PIN),
        CKR_OK,
        "C_Login once the holder let go",
    );
    check(
        ck!(m, C_Finalize(std::ptr::null_mut())),
        CKR_OK,
        "C_Finalize",
    );
}
