//! Persistence of tokens through the module's on-disk store, seen from several
//! processes sharing one data directory (`FERROHSM_DIR`):
//!
//! * a token, its PINs, its token objects (public and private) and the keys'
//!   values survive the process that made them; session objects do not;
//! * two live processes see each other's token objects (created, then
//!   destroyed) at `C_FindObjectsInit`;
//! * the failed-login counter is written before `C_Login` answers, so a process
//!   killed right after a wrong PIN still counts, and the lock persists until
//!   the SO unlocks it;
//! * OpenSC's `pkcs11-tool` works across separate invocations;
//! * no key value or PIN appears in the clear in any file of the data directory
//!   (nor in the log);
//! * a token secret key with `CKA_PRIVATE` FALSE is either stored sealed or
//!   refused as a template, never accepted and then lost in the store;
//! * after `fork()` parent and child both use the token through the store
//!   (`tests/c/store_fork.c`).
//!
//! Tests that need a second process re-run this test binary with
//! `--exact <test>` and `FERROHSM_TEST_ROLE` naming the part to play; the test
//! function checks that variable first and plays the role instead. Children
//! report to the parent with lines `@@ <key> <value>` on stdout.

use std::ffi::c_void;
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::ptr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use ferrohsm_tests::child::{
    Run, c_program, child_command, emit, find_in_path, init_token_args, pkcs11_tool, report, role,
    run_captured, wait_with_timeout,
};
use ferrohsm_tests::raw::{
    RawModule, V, aes_keygen_template, check, ok, padded32, plain_mechanism, rv_name, rv_result,
    secret_key_template, text,
};
use ferrohsm_tests::{Rng, SO_PIN, TestEnv, USER_PIN, ck, from_hex, to_hex};
use sha2::Digest;

// ---------------------------------------------------------------------------
// child processes
// ---------------------------------------------------------------------------

/// How long any child process may take.
const CHILD_TIMEOUT: Duration = Duration::from_secs(30);

/// Runs `cmd` to completion with captured output, failing the test after
/// `CHILD_TIMEOUT`.
fn run_child(env: &TestEnv, cmd: Command, what: &str) -> Run {
    run_captured(env, cmd, b"", CHILD_TIMEOUT, what)
}

/// Re-runs this binary's `test` in role `role` and waits for it.
fn run_role(env: &TestEnv, test: &str, role: &str) -> Run {
    let cmd = child_command(env, test, role);
    run_child(env, cmd, &format!("child {test}/{role}"))
}

/// A child that stays alive and answers commands: lines written to its stdin,
/// `@@` lines read back from its stdout (by a thread, so reads have deadlines).
struct Interactive {
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    seen: Vec<String>,
}

impl Interactive {
    fn spawn(mut cmd: Command) -> Interactive {
        let mut child = cmd
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start interactive child");
        let stdout = child.stdout.take().expect("child stdout");
        let stdin = child.stdin.take();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        Interactive {
            child,
            stdin,
            lines,
            seen: Vec::new(),
        }
    }

    /// Sends one command line.
    fn send(&mut self, cmd: &str) {
        let stdin = self.stdin.as_mut().expect("child stdin open");
        writeln!(stdin, "{cmd}").expect("write to child");
        stdin.flush().expect("flush child stdin");
    }

    /// The value of the next `@@ key value` line (other lines are skipped),
    /// waiting at most `CHILD_TIMEOUT`.
    #[track_caller]
    fn expect(&mut self, key: &str) -> String {
        let deadline = Instant::now() + CHILD_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.seen.push(line.clone());
                    if let Some(v) = report(&line, key) {
                        return v.to_string();
                    }
                    if report(&line, "error").is_some() {
                        panic!(
                            "child reported an error while we waited for '{key}':\n{}",
                            self.seen.join("\n")
                        );
                    }
                }
                Err(e) => {
                    let _ = self.child.kill();
                    panic!(
                        "no '@@ {key}' line from the child ({e:?}); its output so far:\n{}",
                        self.seen.join("\n")
                    );
                }
            }
        }
    }

    /// Closes stdin and waits for a clean exit.
    fn finish(mut self) -> ExitStatus {
        drop(self.stdin.take());
        wait_with_timeout(&mut self.child, CHILD_TIMEOUT, "interactive child")
    }
}

impl Drop for Interactive {
    fn drop(&mut self) {
        // A failed test must not leave the child behind.
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

// ---------------------------------------------------------------------------
// raw calls
// ---------------------------------------------------------------------------

/// The slot whose token is labelled `label`, if any.
fn slot_by_label(m: &RawModule, label: &str) -> Option<CK_SLOT_ID> {
    m.slot_list()
        .into_iter()
        .find(|s| m.token_info(*s).label == padded32(label))
}

#[track_caller]
fn slot_of(m: &RawModule, label: &str) -> CK_SLOT_ID {
    slot_by_label(m, label).unwrap_or_else(|| {
        let labels: Vec<String> = m
            .slot_list()
            .into_iter()
            .map(|s| format!("{s}: {:?}", String::from_utf8_lossy(&m.token_info(s).label)))
            .collect();
        panic!("no token labelled {label:?}; slots: {labels:?}")
    })
}

/// The objects labelled `label`.
#[track_caller]
fn find_label(m: &RawModule, s: CK_SESSION_HANDLE, label: &str) -> Vec<CK_OBJECT_HANDLE> {
    ok(
        m.find(s, vec![(CKA_LABEL, text(label))]),
        &format!("finding objects labelled {label:?}"),
    )
}

/// A data object.
fn data_object(label: &str, token: bool, value: &[u8]) -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    vec![
        (CKA_CLASS, V::U(CKO_DATA)),
        (CKA_TOKEN, V::B(token)),
        (CKA_PRIVATE, V::B(false)),
        (CKA_LABEL, text(label)),
        (CKA_APPLICATION, text("ferrohsm-tests")),
        (CKA_VALUE, V::Bytes(value.to_vec())),
    ]
}

/// Generates a sensitive AES-256 key for encryption and decryption.
fn generate_aes(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    label: &str,
    token: bool,
) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    let mut t = aes_keygen_template(label, token, 32);
    t.push((CKA_DECRYPT, V::B(true)));
    m.generate_key(s, CKM_AES_KEY_GEN, t)
}

/// AES-ECB over whole blocks.
fn aes_ecb(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, CK_RV> {
    m.crypt(s, &mut plain_mechanism(CKM_AES_ECB), key, data, encrypt)
}

/// AES-GCM with a caller-chosen IV and AAD, 128-bit tag.
fn aes_gcm(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    (iv, aad): (&[u8], &[u8]),
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, CK_RV> {
    let (mut iv, mut aad) = (iv.to_vec(), aad.to_vec());
    let mut prm = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: iv.len() as CK_ULONG,
        ulIvBits: (iv.len() * 8) as CK_ULONG,
        pAAD: aad.as_mut_ptr(),
        ulAADLen: aad.len() as CK_ULONG,
        ulTagBits: 128,
    };
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: &mut prm as *mut CK_GCM_PARAMS as *mut c_void,
        ulParameterLen: std::mem::size_of::<CK_GCM_PARAMS>() as CK_ULONG,
    };
    m.crypt(s, &mut mech, key, data, encrypt)
}

/// Single-part `C_Sign` (HMAC here).
fn sign(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    key: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let mut mech = plain_mechanism(mech);
    let mut input = data.to_vec();
    let mut out = vec![0u8; 128];
    let mut n = out.len() as CK_ULONG;
    rv_result(ck!(m, C_SignInit(s, &mut mech, key)))?;
    rv_result(ck!(
        m,
        C_Sign(
            s,
            input.as_mut_ptr(),
            input.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )
    ))?;
    out.truncate(n as usize);
    Ok(out)
}

// ---------------------------------------------------------------------------
// 1. a token and its objects survive the process that made them
// ---------------------------------------------------------------------------

const SURVIVE_LABEL: &str = "survivor";
const SURVIVE_DATA: &[u8] = b"public data object value, kept on disk";
const GCM_IV: [u8; 12] = *b"fixed-iv-012";
const GCM_AAD: &[u8] = b"persistence test aad";
const GCM_PT: &[u8] = b"the same key encrypts this the same way after a restart";

/// Process A: makes the token and objects, prints a GCM ciphertext, exits
/// without `C_Finalize`.
fn survive_writer() {
    let m = RawModule::init();
    let slot = m.make_token(SURVIVE_LABEL);
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    ok(
        m.create(s, data_object("pub-data", true, SURVIVE_DATA)),
        "C_CreateObject public token data object",
    );
    let key = ok(
        generate_aes(&m, s, "aes-key", true),
        "C_GenerateKey token AES key",
    );
    ok(
        m.create(s, data_object("session-obj", false, b"gone at exit")),
        "C_CreateObject session data object",
    );
    assert_eq!(
        find_label(&m, s, "session-obj").len(),
        1,
        "session object visible in its own process"
    );
    let ct = ok(
        aes_gcm(&m, s, key, (&GCM_IV, GCM_AAD), GCM_PT, true),
        "AES-GCM encrypt in process A",
    );
    emit("slot", slot);
    emit("ct", to_hex(&ct));
    // Exit with the session open and logged in, no C_Finalize: whatever the
    // store holds is what a crash would leave.
    std::process::exit(0);
}

#[test]
fn token_and_objects_survive_restart() {
    if role().is_some() {
        return survive_writer();
    }
    let env = TestEnv::new();
    let run = run_role(&env, "token_and_objects_survive_restart", "writer");
    run.assert_success(&env);
    let slot_a: CK_SLOT_ID = run.value("slot").parse().expect("slot number");
    let ct_a = run.value("ct").to_string();

    // This process has not loaded the module before: all it sees comes from disk.
    let m = RawModule::init();
    let slot = slot_of(&m, SURVIVE_LABEL);
    assert_eq!(
        slot, slot_a,
        "the token's slot ID changed across the restart"
    );
    let ti = m.token_info(slot);
    let want = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED;
    assert_eq!(
        ti.flags & want,
        want,
        "token flags {:#x} after restart lack CKF_TOKEN_INITIALIZED|CKF_USER_PIN_INITIALIZED",
        ti.flags
    );
    assert_eq!(
        ti.flags & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_COUNT_LOW),
        0,
        "no failed login happened"
    );
    assert!(
        m.slot_list()
            .into_iter()
            .any(|s| m.token_info(s).flags & CKF_TOKEN_INITIALIZED == 0),
        "a spare (uninitialised) slot is still offered after the restart"
    );

    let s = m.open(slot, false);
    // Before login: the public data object, nothing private, no session object.
    let data = find_label(&m, s, "pub-data");
    assert_eq!(data.len(), 1, "public token data object after restart");
    assert_eq!(
        ok(
            m.attribute(s, data[0], CKA_VALUE),
            "CKA_VALUE of the data object"
        ),
        SURVIVE_DATA,
        "data object's value after restart"
    );
    assert!(
        find_label(&m, s, "aes-key").is_empty(),
        "a private key is visible without login"
    );
    assert!(
        find_label(&m, s, "session-obj").is_empty(),
        "the session object of the dead process survived"
    );

    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let keys = find_label(&m, s, "aes-key");
    assert_eq!(keys.len(), 1, "private AES key after login");
    let key = keys[0];
    assert!(
        find_label(&m, s, "session-obj").is_empty(),
        "the session object of the dead process survived (after login)"
    );
    let all = ok(m.find(s, vec![]), "find all objects");
    assert_eq!(
        all.len(),
        2,
        "exactly the data object and the key are left after restart, got {} objects",
        all.len()
    );
    assert_eq!(
        m.attribute(s, key, CKA_VALUE),
        Err(CKR_ATTRIBUTE_SENSITIVE),
        "the key is still sensitive after restart"
    );
    assert_eq!(
        ok(m.attribute(s, key, CKA_VALUE_LEN), "CKA_VALUE_LEN"),
        (32 as CK_ULONG).to_ne_bytes(),
        "key length after restart"
    );

    let ct = ok(
        aes_gcm(&m, s, key, (&GCM_IV, GCM_AAD), GCM_PT, true),
        "AES-GCM encrypt after restart",
    );
    assert_eq!(
        to_hex(&ct),
        ct_a,
        "same IV, AAD and plaintext give another ciphertext: the reloaded key is not the same key"
    );
    let pt = ok(
        aes_gcm(&m, s, key, (&GCM_IV, GCM_AAD), &ct, false),
        "AES-GCM decrypt after restart",
    );
    assert_eq!(pt, GCM_PT, "round trip after restart");
}

// ---------------------------------------------------------------------------
// 2. two live processes share a token
// ---------------------------------------------------------------------------

const SHARED_LABEL: &str = "shared";
const BLOCK: [u8; 16] = *b"sixteen byte blk";

/// The long-running child: a logged-in session held open while it answers
/// `find` (look for "from-other", encrypt with it), `old` (use the last handle
/// found), `make` (create a token object "from-child") until stdin closes.
fn holder_child() {
    let m = RawModule::init();
    let slot = slot_of(&m, SHARED_LABEL);
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    emit("ready", find_label(&m, s, "from-other").len());
    let mut last = CK_INVALID_HANDLE;
    for line in std::io::stdin().lock().lines() {
        let line = line.expect("read stdin");
        match line.trim() {
            "find" => {
                let found = find_label(&m, s, "from-other");
                emit("found", found.len());
                if let [k] = found[..] {
                    last = k;
                    match aes_ecb(&m, s, k, &BLOCK, true) {
                        Ok(ct) => emit("ct", to_hex(&ct)),
                        Err(rv) => emit("ct", format!("error:{}", rv_name(rv))),
                    }
                }
            }
            "old" => match aes_ecb(&m, s, last, &BLOCK, true) {
                Ok(_) => emit("old", "CKR_OK"),
                Err(rv) => emit("old", rv_name(rv)),
            },
            "make" => match m.create(s, data_object("from-child", true, b"child was here")) {
                Ok(_) => emit("made", "CKR_OK"),
                Err(rv) => emit("made", rv_name(rv)),
            },
            "" => {}
            other => emit("error", format!("unknown command {other:?}")),
        }
    }
    std::process::exit(0);
}

#[test]
fn two_processes_share_a_token() {
    if role().is_some() {
        return holder_child();
    }
    let env = TestEnv::new();
    let m = RawModule::init();
    let slot = m.make_token(SHARED_LABEL);
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");

    let mut child =
        Interactive::spawn(child_command(&env, "two_processes_share_a_token", "holder"));
    assert_eq!(
        child.expect("ready"),
        "0",
        "child sees a key before it exists"
    );

    // The parent makes a token key while the child holds its session open.
    let key = ok(
        generate_aes(&m, s, "from-other", true),
        "C_GenerateKey token key in the parent",
    );
    let ct = to_hex(&ok(
        aes_ecb(&m, s, key, &BLOCK, true),
        "parent encrypts with its key",
    ));
    child.send("find");
    assert_eq!(
        child.expect("found"),
        "1",
        "the child's next C_FindObjectsInit does not find the key the parent made\n\
         module log (tail):\n{}",
        env.log_tail(30)
    );
    assert_eq!(
        child.expect("ct"),
        ct,
        "the child's copy of the parent's key encrypts differently"
    );

    // The parent destroys it: the child's next search no longer finds it.
    check(
        ck!(m, C_DestroyObject(s, key)),
        CKR_OK,
        "C_DestroyObject in the parent",
    );
    child.send("find");
    assert_eq!(
        child.expect("found"),
        "0",
        "the child still finds the key the parent destroyed\nmodule log (tail):\n{}",
        env.log_tail(30)
    );
    // Not asserted (the spec says nothing of handles to objects another
    // application destroyed); shown for the record with --nocapture.
    child.send("old");
    println!(
        "child using its old handle to the destroyed key: {}",
        child.expect("old")
    );

    // And the other way round: the parent notices the child's new object.
    child.send("make");
    assert_eq!(
        child.expect("made"),
        "CKR_OK",
        "child creates a token object"
    );
    assert_eq!(
        find_label(&m, s, "from-child").len(),
        1,
        "the parent's C_FindObjectsInit does not find the child's new object"
    );
    let st = child.finish();
    assert!(st.success(), "holder child exited with {st}");
}

// ---------------------------------------------------------------------------
// 3. the failed-login counter survives SIGKILL
// ---------------------------------------------------------------------------

const LOCK_LABEL: &str = "lockout";

/// The child roles: `mktoken` makes the token; `wrong` tries a wrong user PIN
/// and SIGKILLs itself as soon as `C_Login` returns; `login` logs in rightly.
fn lockout_child(role: &str) {
    match role {
        "mktoken" => {
            let m = RawModule::init();
            emit("slot", m.make_token(LOCK_LABEL));
            std::process::exit(0);
        }
        "wrong" => {
            let m = RawModule::init();
            let slot = slot_of(&m, LOCK_LABEL);
            emit("flags", m.token_info(slot).flags);
            let s = m.open(slot, false);
            let rv = m.login(s, CKU_USER, "wrong-user-pin");
            emit("rv", rv_name(rv));
            // SAFETY: raising SIGKILL on this process ends it at once; no Rust
            // invariant outlives the process.
            unsafe { libc::raise(libc::SIGKILL) };
            unreachable!("SIGKILL did not end the process");
        }
        "login" => {
            let m = RawModule::init();
            let slot = slot_of(&m, LOCK_LABEL);
            emit("flags", m.token_info(slot).flags);
            let s = m.open(slot, false);
            emit("rv", rv_name(m.login(s, CKU_USER, USER_PIN)));
            std::process::exit(0);
        }
        other => panic!("unknown role {other}"),
    }
}

#[test]
fn lockout_survives_kill() {
    if let Some(r) = role() {
        return lockout_child(&r);
    }
    let env = TestEnv::with_config("max_login_failures = 3");
    const TEST: &str = "lockout_survives_kill";
    run_role(&env, TEST, "mktoken").assert_success(&env);

    let want_flags = [
        0,
        CKF_USER_PIN_COUNT_LOW,
        CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY,
    ];
    let pin_bits = CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED;
    for (i, want) in want_flags.iter().enumerate() {
        let run = run_role(&env, TEST, "wrong");
        assert_eq!(
            run.status.signal(),
            Some(libc::SIGKILL),
            "wrong-PIN child {i} was to die by SIGKILL\n{}",
            run.show()
        );
        assert_eq!(
            run.value("rv"),
            "CKR_PIN_INCORRECT",
            "wrong-PIN child {i}\n{}",
            run.show()
        );
        let flags: CK_FLAGS = run.value("flags").parse().expect("flags");
        assert_eq!(
            flags & pin_bits,
            *want,
            "child {i} saw token flags {flags:#x} before its attempt: {i} earlier \
             failure(s) of killed processes were not counted\nmodule log (tail):\n{}",
            env.log_tail(20)
        );
    }

    // A new process (this one has not loaded the module yet).
    let m = RawModule::init();
    let slot = slot_of(&m, LOCK_LABEL);
    let flags = m.token_info(slot).flags;
    assert_ne!(
        flags & CKF_USER_PIN_LOCKED,
        0,
        "three wrong PINs in three killed processes: token flags {flags:#x} lack CKF_USER_PIN_LOCKED\n\
         module log (tail):\n{}",
        env.log_tail(20)
    );
    let s = m.open(slot, true);
    check(
        m.login(s, CKU_USER, USER_PIN),
        CKR_PIN_LOCKED,
        "C_Login user with the right PIN while locked",
    );
    check(m.login(s, CKU_SO, SO_PIN), CKR_OK, "C_Login SO");
    let mut pin = USER_PIN.as_bytes().to_vec();
    check(
        ck!(m, C_InitPIN(s, pin.as_mut_ptr(), pin.len() as CK_ULONG)),
        CKR_OK,
        "C_InitPIN by the SO",
    );
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout SO");
    let flags = m.token_info(slot).flags;
    assert_eq!(flags & pin_bits, 0, "C_InitPIN unlocks: flags {flags:#x}");
    check(
        m.login(s, CKU_USER, USER_PIN),
        CKR_OK,
        "C_Login user after C_InitPIN",
    );
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout user");

    // The unlock is on disk too.
    let run = run_role(&env, TEST, "login");
    run.assert_success(&env);
    let flags: CK_FLAGS = run.value("flags").parse().expect("flags");
    assert_eq!(
        flags & pin_bits,
        0,
        "another process still sees PIN flags {flags:#x} after the unlock"
    );
    assert_eq!(
        run.value("rv"),
        "CKR_OK",
        "user login in another process after the unlock"
    );
}

// ---------------------------------------------------------------------------
// 4. pkcs11-tool, one action per invocation
// ---------------------------------------------------------------------------

/// Runs `pkcs11-tool --module <ferrohsm> <args>` with `env`'s data directory.
fn tool(env: &TestEnv, args: &[&str]) -> Run {
    run_child(
        env,
        pkcs11_tool(env, args),
        &format!("pkcs11-tool {args:?}"),
    )
}

#[track_caller]
fn tool_ok(env: &TestEnv, args: &[&str]) -> Run {
    let run = tool(env, args);
    run.assert_success(env);
    run
}

fn as_strs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// The labels of the objects `-O` lists (data object labels come quoted).
fn listed_labels(out: &str) -> Vec<String> {
    out.lines()
        .filter_map(|l| l.trim().strip_prefix("label:"))
        .map(|l| l.trim().trim_matches('\'').to_string())
        .collect()
}

#[test]
fn pkcs11_tool_separate_invocations() {
    let env = TestEnv::new();
    if find_in_path("pkcs11-tool").is_none() {
        eprintln!(
            "SKIPPED pkcs11_tool_separate_invocations: pkcs11-tool not in PATH \
             (install OpenSC: `apt-get install opensc`; scripts/test does)"
        );
        return;
    }
    let dir = env.dir.path();
    let path = |name: &str| dir.join(name).to_str().expect("utf-8 path").to_string();

    let run = tool_ok(&env, &init_token_args("t1", &[]));
    assert!(
        run.stdout.contains("Token successfully initialized"),
        "{}",
        run.show()
    );
    // --init-pin logs in as SO with --so-pin and sets --pin as the user PIN.
    let run = tool_ok(
        &env,
        &[
            "--token-label",
            "t1",
            "--init-pin",
            "--login",
            "--so-pin",
            SO_PIN,
            "--pin",
            USER_PIN,
        ],
    );
    assert!(
        run.stdout.contains("User PIN successfully initialized"),
        "{}",
        run.show()
    );

    let run = tool_ok(&env, &["-L"]);
    let label_line = run
        .stdout
        .lines()
        .find(|l| l.trim_start().starts_with("token label"))
        .unwrap_or_else(|| panic!("-L shows no token label:\n{}", run.show()));
    assert!(
        label_line.trim_end().ends_with(": t1"),
        "-L in a new process does not show the token made by another: {label_line:?}\n{}",
        run.show()
    );
    assert!(
        run.stdout.contains("PIN initialized"),
        "-L: token flags lack 'PIN initialized' (CKF_USER_PIN_INITIALIZED):\n{}",
        run.show()
    );

    let user = ["--token-label", "t1", "--login", "--pin", USER_PIN];
    let with_user = |more: &[&str]| -> Vec<String> {
        user.iter()
            .chain(more.iter())
            .map(|s| s.to_string())
            .collect()
    };
    let list_args = with_user(&["-O"]);
    let run = tool_ok(&env, &as_strs(&list_args));
    assert!(
        listed_labels(&run.stdout).is_empty(),
        "a new token lists objects:\n{}",
        run.show()
    );

    // Hash, compared with sha2.
    let input: Vec<u8> = (0..3000u32).map(|i| (i * 7 + 3) as u8).collect();
    std::fs::write(path("in.bin"), &input).expect("write input");
    tool_ok(
        &env,
        &[
            "--token-label",
            "t1",
            "--hash",
            "-m",
            "SHA256",
            "-i",
            &path("in.bin"),
            "-o",
            &path("hash.bin"),
        ],
    );
    assert_eq!(
        to_hex(&std::fs::read(path("hash.bin")).unwrap_or_default()),
        to_hex(&sha2::Sha256::digest(&input)),
        "pkcs11-tool --hash -m SHA256"
    );

    // A data object written by one invocation, read back by another.
    let data: Vec<u8> = b"data object written by pkcs11-tool\n".repeat(5);
    std::fs::write(path("d1.bin"), &data).expect("write data");
    let write_args = with_user(&[
        "--write-object",
        &path("d1.bin"),
        "--type",
        "data",
        "--label",
        "d1",
    ]);
    tool_ok(&env, &as_strs(&write_args));
    // Public data object: read without login.
    tool_ok(
        &env,
        &[
            "--token-label",
            "t1",
            "--read-object",
            "--type",
            "data",
            "--label",
            "d1",
            "-o",
            &path("d1.out"),
        ],
    );
    assert_eq!(
        std::fs::read(path("d1.out")).unwrap_or_default(),
        data,
        "--read-object of d1 in a new process differs from the file written"
    );

    // Secret keys. pkcs11-tool sends CKA_SENSITIVE FALSE unless --sensitive is
    // given, which this token's default `hsm` key policy refuses (private and
    // secret keys must be sensitive): that refusal must be a clean
    // CKR_ATTRIBUTE_VALUE_INVALID, and with --sensitive the same request must
    // work under `hsm`, so no FERROHSM_POLICY=spec token is needed. It also
    // sends CKA_PRIVATE FALSE unless --private is given; keys that are
    // private, as the module makes them by default, come first; the public
    // (CKA_PRIVATE FALSE) variant is checked at the end.
    let refused_cleanly = |run: &Run, func: &str| {
        assert!(
            run.status.code() == Some(1)
                && run.stderr.contains(func)
                && run.stderr.contains("CKR_ATTRIBUTE_VALUE_INVALID"),
            "a non-sensitive secret key on an `hsm` token must be refused cleanly \
             ({func}: CKR_ATTRIBUTE_VALUE_INVALID):\n{}",
            run.show()
        );
    };
    let keygen = with_user(&[
        "--keygen",
        "--key-type",
        "AES:32",
        "--private",
        "--label",
        "k0",
    ]);
    let run = tool(&env, &as_strs(&keygen));
    let plain_keygen_ok = run.status.success();
    if !plain_keygen_ok {
        refused_cleanly(&run, "C_GenerateKey");
    }
    let keygen = with_user(&[
        "--keygen",
        "--key-type",
        "AES:32",
        "--sensitive",
        "--private",
        "--label",
        "k1",
    ]);
    tool_ok(&env, &as_strs(&keygen));

    std::fs::write(path("k2.bin"), [0x5au8; 32]).expect("write key");
    let import = |label: &str, flags: &[&str]| {
        let mut more = vec![
            "--write-object".to_string(),
            path("k2.bin"),
            "--type".into(),
            "secrkey".into(),
            "--key-type".into(),
            "AES:32".into(),
            "--label".into(),
            label.into(),
        ];
        more.extend(flags.iter().map(|f| f.to_string()));
        let more: Vec<&str> = as_strs(&more);
        with_user(&more)
    };
    let run = tool(&env, &as_strs(&import("k2", &["--private"])));
    let plain_import_ok = run.status.success();
    if !plain_import_ok {
        refused_cleanly(&run, "C_CreateObject");
    }
    tool_ok(&env, &as_strs(&import("k3", &["--private", "--sensitive"])));

    let run = tool_ok(&env, &as_strs(&list_args));
    let labels = listed_labels(&run.stdout);
    let mut want = vec!["d1", "k1", "k3"];
    if plain_keygen_ok {
        want.push("k0");
    }
    if plain_import_ok {
        want.push("k2");
    }
    for l in &want {
        assert!(
            labels.iter().any(|x| x == l),
            "-O in a new process does not list {l:?} (labels {labels:?}):\n{}",
            run.show()
        );
    }
    assert_eq!(
        labels.len(),
        want.len(),
        "-O lists {labels:?}, expected {want:?}"
    );

    let delete = with_user(&["--delete-object", "--type", "data", "--label", "d1"]);
    tool_ok(&env, &as_strs(&delete));
    let run = tool_ok(&env, &as_strs(&list_args));
    let labels = listed_labels(&run.stdout);
    assert!(
        !labels.iter().any(|x| x == "d1"),
        "d1 still listed after --delete-object in another invocation:\n{}",
        run.show()
    );
    assert!(
        labels.iter().any(|x| x == "k1"),
        "deleting d1 took k1 with it:\n{}",
        run.show()
    );

    // pkcs11-tool's default for secret keys: sensitive (given --sensitive) but
    // CKA_PRIVATE FALSE. Storing it or refusing the template are both fine;
    // failing in the store after accepting it (CKR_DEVICE_ERROR, CKR_GENERAL_ERROR)
    // is not.
    for (what, args) in [
        (
            "--keygen",
            with_user(&[
                "--keygen",
                "--key-type",
                "AES:32",
                "--sensitive",
                "--label",
                "k4",
            ]),
        ),
        ("--write-object", import("k5", &["--sensitive"])),
    ] {
        let run = tool(&env, &as_strs(&args));
        assert!(
            run.status.success()
                || (run.status.code() == Some(1)
                    && ["CKR_ATTRIBUTE_VALUE_INVALID", "CKR_TEMPLATE_INCONSISTENT"]
                        .iter()
                        .any(|rv| run.stderr.contains(rv))),
            "{what} of a sensitive secret key with CKA_PRIVATE FALSE (pkcs11-tool's default) \
             must be stored or refused as a template, not fail inside the module:\n{}\n\
             module log (tail):\n{}",
            run.show(),
            env.log_tail(4)
        );
    }
}

// ---------------------------------------------------------------------------
// 5. no key value or PIN in the clear on disk
// ---------------------------------------------------------------------------

const NOPT_LABEL: &str = "no plaintext";

/// Reloads the token in a fresh process and uses both keys.
fn nopt_child() {
    let m = RawModule::init();
    let slot = slot_of(&m, NOPT_LABEL);
    let s = m.open(slot, false);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let aes = find_label(&m, s, "aes-known");
    let generic = find_label(&m, s, "generic-known");
    assert_eq!((aes.len(), generic.len()), (1, 1), "both keys after reload");
    emit(
        "ct",
        to_hex(&ok(
            aes_ecb(&m, s, aes[0], &BLOCK, true),
            "AES-ECB after reload",
        )),
    );
    emit(
        "mac",
        to_hex(&ok(
            sign(&m, s, CKM_SHA256_HMAC, generic[0], &BLOCK),
            "HMAC after reload",
        )),
    );
    std::process::exit(0);
}

/// Every regular file under `dir`, recursively.
fn files_under(dir: &Path, out: &mut Vec<PathBuf>) {
    for e in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("read_dir {}: {e}", dir.display())) {
        let e = e.expect("dir entry");
        let ft = e.file_type().expect("file type");
        if ft.is_dir() {
            files_under(&e.path(), out);
        } else if ft.is_file() {
            out.push(e.path());
        }
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn no_plaintext_on_disk() {
    if role().is_some() {
        return nopt_child();
    }
    let env = TestEnv::new();
    let mut rng = Rng::seeded("no_plaintext_on_disk");
    let aes_value = rng.bytes(32);
    let gen_value = rng.bytes(48);
    let marker = rng.bytes(32);

    let m = RawModule::init();
    let slot = m.make_token(NOPT_LABEL);
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let secret = |kt: CK_KEY_TYPE, label: &str, value: &[u8]| {
        secret_key_template(
            kt,
            value,
            vec![
                (CKA_TOKEN, V::B(true)),
                (CKA_SENSITIVE, V::B(true)),
                (CKA_LABEL, text(label)),
            ],
        )
    };
    let aes = ok(
        m.create(s, secret(CKK_AES, "aes-known", &aes_value)),
        "C_CreateObject AES-256 token key with a known value",
    );
    let generic = ok(
        m.create(s, secret(CKK_GENERIC_SECRET, "generic-known", &gen_value)),
        "C_CreateObject generic secret token key with a known value",
    );
    // An EC P-256 and an RSA-2048 private key with known values.
    let ec_scalar = rng.bytes(32);
    let p256_params = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let private = |kt: CK_KEY_TYPE, label: &str, parts: Vec<(CK_ATTRIBUTE_TYPE, V)>| {
        let mut tpl = vec![
            (CKA_CLASS, V::U(CKO_PRIVATE_KEY)),
            (CKA_KEY_TYPE, V::U(kt)),
            (CKA_TOKEN, V::B(true)),
            (CKA_SENSITIVE, V::B(true)),
            (CKA_LABEL, text(label)),
        ];
        tpl.extend(parts);
        tpl
    };
    ok(
        m.create(
            s,
            private(
                CKK_EC,
                "ec-known",
                vec![
                    (CKA_EC_PARAMS, V::Bytes(p256_params.to_vec())),
                    (CKA_VALUE, V::Bytes(ec_scalar.clone())),
                ],
            ),
        ),
        "C_CreateObject EC P-256 private key with a known value",
    );
    let rsa_d = from_hex(RSA_D);
    ok(
        m.create(
            s,
            private(
                CKK_RSA,
                "rsa-known",
                vec![
                    (CKA_MODULUS, V::Bytes(from_hex(RSA_N))),
                    (CKA_PUBLIC_EXPONENT, V::Bytes(vec![1, 0, 1])),
                    (CKA_PRIVATE_EXPONENT, V::Bytes(rsa_d.clone())),
                ],
            ),
        ),
        "C_CreateObject RSA-2048 private key with a known value",
    );
    // Positive control for the scan: a public value that is stored readable.
    ok(
        m.create(s, data_object("marker", true, &marker)),
        "C_CreateObject public marker",
    );
    let ct = to_hex(&ok(aes_ecb(&m, s, aes, &BLOCK, true), "AES-ECB"));
    let mac = to_hex(&ok(sign(&m, s, CKM_SHA256_HMAC, generic, &BLOCK), "HMAC"));
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");

    let mut files = Vec::new();
    files_under(&env.data_dir(), &mut files);
    let mut total = 0usize;
    let mut marker_seen = false;
    let aes_hex = to_hex(&aes_value);
    let needles: [(&str, &[u8]); 12] = [
        ("the EC private scalar", &ec_scalar),
        ("half of the EC private scalar", &ec_scalar[..16]),
        ("the RSA private exponent", &rsa_d),
        ("part of the RSA private exponent", &rsa_d[100..132]),
        ("the AES key value", &aes_value),
        ("the first half of the AES key", &aes_value[..16]),
        ("the second half of the AES key", &aes_value[16..]),
        ("the generic secret value", &gen_value),
        ("the first half of the generic secret", &gen_value[..24]),
        ("the AES key value in hex", aes_hex.as_bytes()),
        ("the SO PIN", SO_PIN.as_bytes()),
        ("the user PIN", USER_PIN.as_bytes()),
    ];
    for f in &files {
        let mut bytes = Vec::new();
        File::open(f)
            .and_then(|mut h| h.read_to_end(&mut bytes))
            .unwrap_or_else(|e| panic!("read {}: {e}", f.display()));
        total += bytes.len();
        marker_seen |= contains(&bytes, &marker);
        for (what, needle) in &needles {
            assert!(
                !contains(&bytes, needle),
                "{what} occurs in the clear in {}",
                f.display()
            );
        }
    }
    assert!(
        !files.is_empty() && total > 0,
        "the data directory {} holds no data ({} files, {total} bytes): nothing was scanned",
        env.data_dir().display(),
        files.len()
    );
    assert!(
        marker_seen,
        "the public marker value is in none of the {} files ({total} bytes) under the data \
         directory: the scan would not see a stored value either",
        files.len()
    );
    let log = std::fs::read(env.log_path()).unwrap_or_default();
    for (what, needle) in &needles {
        assert!(!contains(&log, needle), "{what} occurs in the module log");
    }

    // Positive control: both keys still work in a fresh process.
    let run = run_role(&env, "no_plaintext_on_disk", "reload");
    run.assert_success(&env);
    assert_eq!(run.value("ct"), ct, "AES key after reload");
    assert_eq!(run.value("mac"), mac, "generic secret after reload");
}

/// A 2048-bit RSA key (openssl genrsa) for the no-plaintext scan: modulus and
/// private exponent, hex.
const RSA_N: &str = "a194dc77c5d5e429f63132e6a1307f45261693558bfce90f3d8d6c96c20ac0f13a0533e02cb316747312f510852791cbd15bf14307aec0af29f86bed78adaa20555b649f87a0a3f00d4772c7c3b0d3dfd44b8807d7f6d8fb027edf8997c1ac8eb0768e9b85d4466f4fcb4d6966b28ca5d9ca33a71238a00e1061eeab7bacf285bb543f3685272c13d53a01fa7c2c98f508bc9ebbe941100323ad1be5d0a49a1b2a8e856c8cde71e2739ad4aca45f0f29c2d1603e6f9d84bbc061031e98b356a6b76da856708aa91801a73c6a5207a0277f305498eb611f62e4a1bb4ae60c595126453912cd50234e7e0b6edc49f2b3ac76b5a7c4dac7773d7f30b5d5e6ad3281";
const RSA_D: &str = "04d94558e4434800a0da46d96020a70f0d86aba6eb679c5c4857f2385f6c08706cb1eb85b87daac8b58bcdf61012d9078d59a596a1f842e0b6c1154707e2293ae568d3cf0c383c3727c4db3b46a26ba739b50708da38967808d20315fb4b74e8c6bf9605b1794660507c0caf83250c3ead57899f83b6d689b980e0d33d47ba32d01f4bba6fe9a09fa46d4ed4e3dcd7343d5e5759f421c02605153a26993a7263c6a0e11f437d840d75dd0c844056506a47b36eaaa10afd6ba8e3f665224887d2e5a87a8c4fbb4fcef792314ec1a2fd4df1ca54c46488a4718ff52c7ef940665a3691ed33628b155485d3cffe7debc140679aa257b8db2814c29bd06b79888f81";

/// A secret key with `CKA_PRIVATE` FALSE (what `pkcs11-tool` asks for unless
/// given `--private`) as a token object: the module may store it (then its
/// value must not be on disk in the clear, and it must work in a new process)
/// or refuse the template; it must not accept it and then fail in the store.
#[test]
fn public_token_secret_key_is_sealed_or_refused() {
    if role().is_some() {
        let m = RawModule::init();
        let s = m.open(slot_of(&m, "public secret"), false);
        check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
        let k = find_label(&m, s, "public-aes");
        assert_eq!(k.len(), 1, "the key after reload");
        emit(
            "ct",
            to_hex(&ok(
                aes_ecb(&m, s, k[0], &BLOCK, true),
                "AES-ECB after reload",
            )),
        );
        std::process::exit(0);
    }
    let env = TestEnv::new();
    let value = Rng::seeded("public_token_secret_key_is_sealed_or_refused").bytes(32);
    let m = RawModule::init();
    let slot = m.make_token("public secret");
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let r = m.create(
        s,
        vec![
            (CKA_CLASS, V::U(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, V::U(CKK_AES)),
            (CKA_TOKEN, V::B(true)),
            (CKA_PRIVATE, V::B(false)),
            (CKA_SENSITIVE, V::B(true)),
            (CKA_ENCRYPT, V::B(true)),
            (CKA_LABEL, text("public-aes")),
            (CKA_VALUE, V::Bytes(value.clone())),
        ],
    );
    let key = match r {
        Ok(k) => k,
        Err(rv) if rv == CKR_ATTRIBUTE_VALUE_INVALID || rv == CKR_TEMPLATE_INCONSISTENT => {
            // Refusing such a key outright is an acceptable design.
            return;
        }
        Err(rv) => panic!(
            "C_CreateObject of a sensitive token AES key with CKA_PRIVATE FALSE: got {}; \
             expected CKR_OK or a template refusal\nmodule log (tail):\n{}",
            rv_name(rv),
            env.log_tail(4)
        ),
    };
    let ct = to_hex(&ok(aes_ecb(&m, s, key, &BLOCK, true), "AES-ECB"));
    let mut files = Vec::new();
    files_under(&env.data_dir(), &mut files);
    for f in &files {
        let bytes = std::fs::read(f).unwrap_or_default();
        assert!(
            !contains(&bytes, &value),
            "the value of a CKA_PRIVATE FALSE secret key is in the clear in {}",
            f.display()
        );
    }
    let run = run_role(
        &env,
        "public_token_secret_key_is_sealed_or_refused",
        "reload",
    );
    run.assert_success(&env);
    assert_eq!(run.value("ct"), ct, "the key after reload");
}

// ---------------------------------------------------------------------------
// 6. fork: parent and child both use the token (C program)
// ---------------------------------------------------------------------------

#[test]
fn fork_parent_and_child_both_use_the_token() {
    let env = TestEnv::new();
    let cmd = c_program(&env, "store_fork", &[]);
    let run = run_child(&env, cmd, "store_fork");
    run.assert_c_passed(&env, &["STORE FORK PASSED"]);
}
