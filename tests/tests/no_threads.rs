//! `CKF_LIBRARY_CANT_CREATE_OS_THREADS` is honoured: an application that
//! forbids library threads gets none (no `ferrohsm-store` database closer, no
//! `ferrohsm-audit` flusher), and nothing is lost: objects persist and the
//! audit log still records key use, written at `C_Finalize`.

use std::ffi::c_void;
use std::ptr;

use cryptoki_sys::*;
use ferrohsm_tests::raw::{RawModule, aes_keygen_template, check, plain_mechanism};
use ferrohsm_tests::{TestEnv, USER_PIN, ck};

/// Names of this process's threads.
fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("comm")).ok())
        .map(|n| n.trim().to_string())
        .collect()
}

fn init(m: &RawModule, flags: CK_FLAGS) {
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags,
        pReserved: ptr::null_mut(),
    };
    check(
        ck!(m, C_Initialize(&mut args as *mut _ as *mut c_void)),
        CKR_OK,
        "C_Initialize",
    );
}

/// Makes a token and a key, and encrypts with it a few times.
fn work(m: &RawModule) {
    let slot = m.make_token("threads");
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login");
    let key = m
        .generate_key(s, CKM_AES_KEY_GEN, aes_keygen_template("k", true, 32))
        .expect("C_GenerateKey");
    for _ in 0..3 {
        let mut mech = plain_mechanism(CKM_AES_ECB);
        m.crypt(s, &mut mech, key, &[0u8; 16], true)
            .expect("C_Encrypt");
    }
}

#[test]
fn no_library_thread_when_the_application_forbids_them() {
    let env = TestEnv::with_config("[audit]\nflush_seconds = 1\n");
    let m = RawModule::load();
    init(&m, CKF_LIBRARY_CANT_CREATE_OS_THREADS | CKF_OS_LOCKING_OK);
    work(&m);
    std::thread::sleep(std::time::Duration::from_millis(100));
    let names = thread_names();
    assert!(
        !names.iter().any(|n| n.starts_with("ferrohsm")),
        "threads started although forbidden: {names:?}"
    );
    assert!(
        env.log().contains("CKF_LIBRARY_CANT_CREATE_OS_THREADS"),
        "the log says how it runs"
    );
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    // Key use was counted and written at C_Finalize, without a flusher.
    let logs: String = std::fs::read_dir(env.data_dir())
        .unwrap()
        .flatten()
        .filter(|d| d.file_name().to_string_lossy().starts_with("token-"))
        .filter_map(|d| std::fs::read_to_string(d.path().join("audit/log.jsonl")).ok())
        .collect();
    assert!(
        logs.contains("\"C_EncryptInit\""),
        "key use reached the audit log: {logs}"
    );
    // The token persists: a second initialisation (threads allowed) finds it.
    init(&m, CKF_OS_LOCKING_OK);
    let found = m
        .slot_list()
        .into_iter()
        .any(|s| m.token_info(s).label.starts_with(b"threads"));
    assert!(found, "the token made without threads is there");
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
}

#[test]
fn threads_are_used_otherwise() {
    let _env = TestEnv::with_config("[audit]\nflush_seconds = 1\n");
    let m = RawModule::load();
    init(&m, CKF_OS_LOCKING_OK);
    work(&m);
    let names = thread_names();
    assert!(
        names.iter().any(|n| n.starts_with("ferrohsm")),
        "a store or audit thread runs after token work: {names:?}"
    );
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
}
