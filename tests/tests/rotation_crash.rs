//! Crash safety of `ferrohsm rotate-storage-key`, through the real `.so` and
//! the real `ferrohsm` binary.
//!
//! The rotation generates a new storage key, re-seals every object record, the
//! PIN wraps and the audit root under it in ONE atomic sled batch
//! (`Store::rekey`), then appends a `ferrohsm rotate-storage-key` audit event.
//! A `SIGKILL` at any moment must leave the token usable under either the old
//! or the new key, with the same PINs, the same key material and an intact
//! audit chain.
//!
//! * `sigkill_at_random_moments_of_a_rotation_leaves_the_token_usable` kills
//!   the tool at random moments spread over a whole rotation, checks the token
//!   after each kill and tells kills before the commit from kills after it.
//! * `a_process_logged_in_during_a_rotation_is_logged_out_and_logs_in_again`
//!   shows what a process that stays logged in through the `.so` sees while
//!   another process rotates the key.
//! * `audit_verify_on_a_log_with_a_partial_last_line` shows what `ferrohsm
//!   audit verify` does with the partial last line a killed append leaves.
//!
//! Needs the `ferrohsm` binary built (`cargo build --workspace`).

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::Slot;
use ferrohsm_tests::child::{Run, read_lossy, spawn_captured, wait_or_kill};
use ferrohsm_tests::p11::{pin, user_session};
use ferrohsm_tests::tool::{self, TIMEOUT, command, ok, run};
use ferrohsm_tests::{Rng, SO_PIN, TestEnv, USER_PIN, to_hex};
use serde_json::Value;

/// Kill rounds (`FERROHSM_ROTATION_ROUNDS` overrides).
const ROUNDS: usize = 36;
/// Extra rounds, with delays narrowed to the part of the run time not yet
/// hit, when the random delays missed the kills before or after the commit.
const MAX_EXTRA_ROUNDS: usize = 24;
/// Label of the test tokens.
const LABEL: &str = "rot";
/// AES-256 keys on the token.
const AES_KEYS: usize = 24;
/// Private and public data objects on the token (each).
const DATA_OBJECTS: usize = 4;
/// The block every AES key encrypts.
const BLOCK: [u8; 16] = *b"rotation-block16";
/// The message signed before the rotations and verified after each.
const MESSAGE: &[u8] = b"signed before any storage key rotation";
/// DER OID of NIST P-256 (`CKA_EC_PARAMS`).
const P256: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The audit event the tool appends after a rotation.
const ROTATE_EVENT: &str = "ferrohsm rotate-storage-key";
/// The module's log line when another process rotated the key.
const ROTATED_WARN: &str = "the storage key was rotated by another process; logged out";

// ---------------------------------------------------------------------------
// the tool
// ---------------------------------------------------------------------------

const ROTATE: &[&str] = &[
    "rotate-storage-key",
    "--token",
    LABEL,
    "--so-pin-env",
    "T_SO",
    "--pin-env",
    "T_PIN",
];

/// The line a completed rotation of `n` records prints.
fn rotated_line(n: usize) -> String {
    format!("token {LABEL:?}: storage key rotated; {n} record(s) re-sealed under the new key")
}

/// `ferrohsm init` of the test token.
fn init_token(env: &TestEnv) {
    tool::init(env, LABEL, &[]);
}

/// The token's audit events, from `ferrohsm audit show --json` (no PIN, no append).
fn audit_events(env: &TestEnv) -> Vec<Value> {
    let r = ok(env, &["audit", "show", "--token", LABEL, "--json"]);
    let v: Value = serde_json::from_str(&r.stdout)
        .unwrap_or_else(|e| panic!("audit show: not JSON ({e})\n{}", r.show()));
    v.as_array().expect("audit show: an array").clone()
}

/// Completed rotations according to the audit log; fails on a rotation event
/// with another result.
#[track_caller]
fn rotation_events(env: &TestEnv) -> usize {
    let events = audit_events(env);
    let all: Vec<&Value> = events
        .iter()
        .filter(|e| e["function"] == ROTATE_EVENT)
        .collect();
    for e in &all {
        assert_eq!(e["result"], "CKR_OK", "a failed rotation was audited: {e}");
    }
    // Each rotation records its start before the commit and its outcome
    // after it; count the outcomes, and check none lacks its start.
    let is_start = |e: &&&Value| e["detail"].as_str().is_some_and(|d| d.contains("starting"));
    let starts = all.iter().filter(is_start).count();
    let done = all.len() - starts;
    assert!(
        starts >= done,
        "a rotation outcome without its start: {all:?}"
    );
    done
}

/// `ferrohsm audit verify` with the user PIN.
fn audit_verify(env: &TestEnv) -> Run {
    run(
        env,
        &["audit", "verify", "--token", LABEL, "--pin-env", "T_PIN"],
    )
}

#[track_caller]
fn assert_audit_intact(env: &TestEnv, ctx: &str) {
    let r = audit_verify(env);
    assert!(
        r.status.success() && r.stdout.contains("chain intact"),
        "{ctx}: audit verify does not pass\n{}\nmodule log (tail):\n{}",
        r.show(),
        env.log_tail(20)
    );
}

// ---------------------------------------------------------------------------
// the token's files
// ---------------------------------------------------------------------------

fn token_dir(env: &TestEnv, slot: Slot) -> PathBuf {
    env.data_dir().join(format!("token-{}", slot.id()))
}

/// The token's change counter (`generation` file).
fn generation(env: &TestEnv, slot: Slot) -> u64 {
    let p = token_dir(env, slot).join("generation");
    let s = std::fs::read_to_string(&p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    // The value, written twice (a reader can tell a write in progress).
    let first = s.split_ascii_whitespace().next().unwrap_or_default();
    first
        .parse()
        .unwrap_or_else(|e| panic!("{}: {s:?}: {e}", p.display()))
}

/// The current audit log file's bytes.
fn audit_log_bytes(env: &TestEnv, slot: Slot) -> Vec<u8> {
    std::fs::read(token_dir(env, slot).join("audit/log.jsonl")).unwrap_or_default()
}

/// Names of the files in `dir` whose name satisfies `f`.
fn files_where(dir: &Path, f: impl Fn(&str) -> bool) -> Vec<String> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| e.file_name().into_string().ok())
                .filter(|n| f(n))
                .collect()
        })
        .unwrap_or_default()
}

// ---------------------------------------------------------------------------
// the token's contents, through the .so
// ---------------------------------------------------------------------------

/// What the token must still compute after any kill.
struct Reference {
    /// Label and AES-ECB encryption of `BLOCK` of each AES key.
    aes: Vec<(String, Vec<u8>)>,
    /// Label, `CKA_PRIVATE` and value of each data object.
    data: Vec<(String, bool, Vec<u8>)>,
    /// The EC public key's `CKA_EC_POINT`.
    ec_point: Vec<u8>,
    /// ECDSA-SHA256 signature of `MESSAGE`, made before any rotation.
    signature: Vec<u8>,
}

impl Reference {
    /// Token objects: the AES keys, the data objects and the EC pair.
    fn objects(&self) -> usize {
        self.aes.len() + self.data.len() + 2
    }
}

fn init_args() -> CInitializeArgs {
    CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)
}

/// The slot of the token labelled `LABEL`.
fn slot_of(p: &Pkcs11) -> Slot {
    p.get_all_slots()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| p.get_token_info(*s).is_ok_and(|i| i.label() == LABEL))
        .unwrap_or_else(|| panic!("no token {LABEL:?}"))
}

#[track_caller]
fn one(s: &Session, label: &str, class: ObjectClass) -> ObjectHandle {
    let t = [
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Class(class),
    ];
    match s.find_objects(&t).expect("C_FindObjects").as_slice() {
        [h] => *h,
        other => panic!("{} objects labelled {label:?} of {class}", other.len()),
    }
}

fn bytes_attr(s: &Session, h: ObjectHandle, ty: AttributeType) -> Vec<u8> {
    let attrs = s.get_attributes(h, &[ty]).expect("C_GetAttributeValue");
    match attrs.as_slice() {
        [Attribute::Value(v)] | [Attribute::EcPoint(v)] => v.clone(),
        other => panic!("{ty}: unexpected {other:?}"),
    }
}

fn private_attr(s: &Session, h: ObjectHandle) -> bool {
    match s
        .get_attributes(h, &[AttributeType::Private])
        .expect("C_GetAttributeValue CKA_PRIVATE")
        .as_slice()
    {
        [Attribute::Private(b)] => *b,
        other => panic!("CKA_PRIVATE: unexpected {other:?}"),
    }
}

fn aes_label(i: usize) -> String {
    format!("aes-{i:02}")
}

/// Fills the token (logged-in user session `s`) and records what it computes.
fn populate(s: &Session, rng: &mut Rng) -> Reference {
    let mut aes = Vec::new();
    for i in 0..AES_KEYS {
        let label = aes_label(i);
        let h = s
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Sensitive(true),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                    Attribute::ValueLen(32u64.into()),
                    Attribute::Label(label.as_bytes().to_vec()),
                ],
            )
            .expect("C_GenerateKey AES-256");
        let ct = s
            .encrypt(&Mechanism::AesEcb, h, &BLOCK)
            .expect("C_Encrypt AES-ECB");
        aes.push((label, ct));
    }
    let mut data = Vec::new();
    for i in 0..2 * DATA_OBJECTS {
        let private = i % 2 == 0;
        let label = format!("data-{}-{i}", if private { "private" } else { "public" });
        let len = 8 + rng.below(56);
        let value = rng.bytes(len);
        s.create_object(&[
            Attribute::Class(ObjectClass::DATA),
            Attribute::Token(true),
            Attribute::Private(private),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Value(value.clone()),
        ])
        .expect("C_CreateObject data");
        data.push((label, private, value));
    }
    let (public, private) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256.to_vec()),
                Attribute::Verify(true),
                Attribute::Label(b"ec".to_vec()),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Sign(true),
                Attribute::Label(b"ec".to_vec()),
            ],
        )
        .expect("C_GenerateKeyPair EC P-256");
    let ec_point = bytes_attr(s, public, AttributeType::EcPoint);
    let signature = s
        .sign(&Mechanism::EcdsaSha256, private, MESSAGE)
        .expect("C_Sign ECDSA-SHA256");
    s.verify(&Mechanism::EcdsaSha256, public, MESSAGE, &signature)
        .expect("C_Verify of a fresh signature");
    Reference {
        aes,
        data,
        ec_point,
        signature,
    }
}

/// Checks, in logged-in user session `s`, that every object is there by
/// label and computes what it did: AES-ECB ciphertexts, data values, the EC
/// public point; the old signature verifies and a new one is made and verifies.
fn check_objects(s: &Session, r: &Reference) {
    let all = s.find_objects(&[]).expect("C_FindObjects all");
    assert_eq!(all.len(), r.objects(), "objects visible to the user");
    for (label, ct) in &r.aes {
        let h = one(s, label, ObjectClass::SECRET_KEY);
        let now = s
            .encrypt(&Mechanism::AesEcb, h, &BLOCK)
            .unwrap_or_else(|e| panic!("{label}: C_Encrypt: {e}"));
        assert_eq!(
            to_hex(&now),
            to_hex(ct),
            "{label}: AES-ECB differs from before"
        );
    }
    for (label, private, value) in &r.data {
        let h = one(s, label, ObjectClass::DATA);
        assert_eq!(private_attr(s, h), *private, "{label}: CKA_PRIVATE");
        assert_eq!(
            bytes_attr(s, h, AttributeType::Value),
            *value,
            "{label}: value"
        );
    }
    let public = one(s, "ec", ObjectClass::PUBLIC_KEY);
    let private = one(s, "ec", ObjectClass::PRIVATE_KEY);
    assert_eq!(
        bytes_attr(s, public, AttributeType::EcPoint),
        r.ec_point,
        "EC point"
    );
    s.verify(&Mechanism::EcdsaSha256, public, MESSAGE, &r.signature)
        .expect("the signature made before the rotations no longer verifies");
    let fresh = s
        .sign(&Mechanism::EcdsaSha256, private, b"signed after a rotation")
        .expect("C_Sign with the EC key");
    s.verify(
        &Mechanism::EcdsaSha256,
        public,
        b"signed after a rotation",
        &fresh,
    )
    .expect("C_Verify of a signature made after a rotation");
}

/// Initialises the module afresh (the store is re-read from disk), logs in
/// with the user PIN and checks every object, then logs in with the SO PIN,
/// then finalises. `p` keeps the library loaded between calls.
fn check_token(p: &Pkcs11, r: &Reference, env: &TestEnv, ctx: &str) {
    p.initialize(init_args())
        .unwrap_or_else(|e| panic!("{ctx}: C_Initialize: {e}\n{}", env.log_tail(20)));
    let checked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let slot = slot_of(p);
        let s = p.open_rw_session(slot).expect("C_OpenSession");
        s.login(UserType::User, Some(&pin(USER_PIN)))
            .expect("C_Login with the user PIN");
        check_objects(&s, r);
        s.logout().expect("C_Logout user");
        s.login(UserType::So, Some(&pin(SO_PIN)))
            .expect("C_Login with the SO PIN");
        let public = s.find_objects(&[]).expect("C_FindObjects as SO").len();
        assert_eq!(public, DATA_OBJECTS + 1, "public objects seen by the SO");
        s.logout().expect("C_Logout SO");
        s.close().expect("C_CloseSession");
    }));
    p.clone().finalize().expect("C_Finalize");
    if let Err(e) = checked {
        let why = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        panic!(
            "{ctx}: the token is not usable: {why}\nmodule log (tail):\n{}",
            env.log_tail(30)
        );
    }
}

// ---------------------------------------------------------------------------
// the kill test
// ---------------------------------------------------------------------------

/// How a round's rotation ended.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Fate {
    /// Killed; the old key is still in force.
    Before,
    /// Killed after the commit: the new key is in force; `audited`: its audit
    /// event was written before the kill.
    After { audited: bool },
    /// It finished before the kill was due.
    Exited,
}

impl Fate {
    fn letter(self) -> char {
        match self {
            Fate::Before => 'b',
            Fate::After { audited: true } => 'A',
            Fate::After { audited: false } => 'a',
            Fate::Exited => 'e',
        }
    }
}

/// State carried from round to round.
struct Tally {
    generation: u64,
    rotations: usize,
}

/// What one round observed, for the summary.
struct Round {
    delay: Duration,
    fate: Fate,
    /// The kill left a partial last line in the audit log.
    partial: bool,
    /// The kill left an unfinished sled snapshot.
    snapshot: bool,
    /// Killed after printing its success line.
    printed: bool,
}

/// Starts a rotation and waits for it; returns its run time.
fn full_rotation(env: &TestEnv, objects: usize) -> Duration {
    let t0 = Instant::now();
    let r = ok(env, ROTATE);
    let took = t0.elapsed();
    assert!(
        r.stdout.contains(&rotated_line(objects)),
        "want {:?}\n{}",
        rotated_line(objects),
        r.show()
    );
    took
}

/// One round: a rotation killed `delay` after its start (unless it finished
/// first), then every check; returns how it ended.
fn kill_round(
    env: &TestEnv,
    p: &Pkcs11,
    slot: Slot,
    r: &Reference,
    tally: &mut Tally,
    ctx: &str,
    delay: Duration,
) -> Round {
    let t0 = Instant::now();
    let mut sp = spawn_captured(env, &mut command(env, ROTATE), b"");
    std::thread::sleep(delay.saturating_sub(t0.elapsed()));
    let killed = match sp.child.try_wait().expect("try_wait") {
        Some(_) => false,
        None => {
            sp.child.kill().expect("SIGKILL rotate-storage-key");
            true
        }
    };
    let status = wait_or_kill(&mut sp.child, TIMEOUT)
        .unwrap_or_else(|| panic!("{ctx}: rotate-storage-key did not end"));
    let stdout = read_lossy(&sp.stdout);
    let stderr = read_lossy(&sp.stderr);
    // A rotation that exited just before the kill landed counts as finished.
    let exited = !killed || status.success();
    if exited {
        assert!(
            status.success() && stdout.contains(&rotated_line(r.objects())),
            "{ctx}: rotate-storage-key: {status}\nstdout:\n{stdout}\nstderr:\n{stderr}"
        );
    } else {
        assert_eq!(status.signal(), Some(libc::SIGKILL), "{ctx}: {status}");
        assert!(
            stdout.is_empty() || stdout.contains(&rotated_line(r.objects())),
            "{ctx}: killed; it printed {stdout:?}"
        );
    }
    // Killed while exiting, after its last line (the store is closed last).
    let printed = !exited && !stdout.is_empty();
    let dir = token_dir(env, slot);
    let snapshots = files_where(&dir.join("db"), |n| n.ends_with(".generating"));
    let log = audit_log_bytes(env, slot);
    let partial = !log.is_empty() && !log.ends_with(b"\n");
    let mut notes = Vec::new();
    if printed {
        notes.push("killed after printing its success line".to_string());
    }
    if !snapshots.is_empty() {
        notes.push(format!("unfinished sled snapshot {snapshots:?}"));
    }
    if partial {
        // `audit verify` on the log as the kill left it, before anything else
        // appends (the tool's own PIN check appends a line first: see below).
        let complete = log.iter().filter(|&&b| b == b'\n').count();
        let v = audit_verify(env);
        let repaired = audit_log_bytes(env, slot).ends_with(b"\n");
        if v.status.success() {
            assert!(v.stdout.contains("chain intact"), "{ctx}: {}", v.show());
            notes.push(format!(
                "partial last audit line ({} bytes): verify says intact{}",
                log.len() - log.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1),
                if repaired {
                    ", its own login event truncated the partial line"
                } else {
                    ""
                }
            ));
        } else {
            // Accepted only when it concerns the end of the log.
            let line: Option<usize> = v
                .stderr
                .split("log.jsonl line ")
                .nth(1)
                .and_then(|t| t.split(|c: char| !c.is_ascii_digit()).next())
                .and_then(|n| n.parse().ok());
            assert!(
                line.is_some_and(|n| n >= complete),
                "{ctx}: audit verify on a log with a partial last line reports \
                 something before its end ({complete} complete lines)\n{}",
                v.show()
            );
            notes.push(format!(
                "partial last audit line: verify reports the end: {}",
                v.stderr.trim()
            ));
        }
    }

    check_token(p, r, env, ctx);

    let generation = generation(env, slot);
    let rotations = rotation_events(env);
    let dg = generation
        .checked_sub(tally.generation)
        .unwrap_or_else(|| panic!("{ctx}: generation went back to {generation}"));
    let de = rotations
        .checked_sub(tally.rotations)
        .unwrap_or_else(|| panic!("{ctx}: rotation events went back to {rotations}"));
    assert!(
        dg <= 1 && de as u64 <= dg,
        "{ctx}: generation moved by {dg}, rotation events by {de}: want 0/0, 1/0 or 1/1"
    );
    // dg and de are 0 or 1 here, and de <= dg.
    let fate = match (exited, dg, de) {
        (true, 1, 1) => Fate::Exited,
        (true, ..) => panic!("{ctx}: a finished rotation moved generation {dg}, events {de}"),
        (false, 1, 1) => Fate::After { audited: true },
        _ if printed => {
            panic!("{ctx}: printed its success line, yet generation moved {dg}, events {de}")
        }
        (false, 0, _) => Fate::Before,
        (false, ..) => Fate::After { audited: false },
    };
    tally.generation = generation;
    tally.rotations = rotations;
    assert_audit_intact(env, ctx);
    let temps = files_where(&dir, |n| n.starts_with("generation.tmp"));
    assert!(temps.is_empty(), "{ctx}: temp files left: {temps:?}");
    let corrupt: Vec<String> = env
        .log()
        .lines()
        .filter(|l| l.to_lowercase().contains("corrupt"))
        .map(str::to_string)
        .collect();
    assert!(
        corrupt.is_empty(),
        "{ctx}: the module log reports corruption:\n{}",
        corrupt.join("\n")
    );
    println!(
        "{ctx}: {} -> {fate:?}{}; round {:?}",
        if exited { "finished" } else { "killed" },
        notes.iter().map(|n| format!("; {n}")).collect::<String>(),
        t0.elapsed()
    );
    Round {
        delay,
        fate,
        partial,
        snapshot: !snapshots.is_empty(),
        printed,
    }
}

/// The delays of one fate, as a short text.
fn spread(rounds: &[Round], pick: impl Fn(Fate) -> bool) -> String {
    let mut ms: Vec<f64> = rounds
        .iter()
        .filter(|r| pick(r.fate))
        .map(|r| r.delay.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    match (ms.first(), ms.last()) {
        (Some(a), Some(b)) => format!("{} in {a:.0}..{b:.0} ms", ms.len()),
        _ => "0".to_string(),
    }
}

/// A `SIGKILL` at a random moment of `ferrohsm rotate-storage-key` (delays
/// drawn over 0..=1.2x the run time of a full rotation) leaves a token that
/// opens with the same user and SO PINs, holds every object, computes the
/// same AES ciphertexts, EC point and signatures, and has an intact audit
/// chain; kills land both before and after the commit (told apart by the
/// token's change counter, cross-checked with the audit log's rotation
/// events: a kill between the commit and the audit event leaves a rotation
/// the log does not mention, counted apart), and a final uninterrupted
/// rotation works. Should the random delays miss either kind, up to
/// `MAX_EXTRA_ROUNDS` extra rounds aim at the commit point.
#[test]
fn sigkill_at_random_moments_of_a_rotation_leaves_the_token_usable() {
    let env = TestEnv::new();
    let start = Instant::now();
    let rounds: usize = std::env::var("FERROHSM_ROTATION_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let mut rng = Rng::seeded("rotation crash test");

    init_token(&env);
    let p = tool::load();
    let slot = slot_of(&p);
    let s = user_session(&p, slot);
    let reference = populate(&s, &mut rng);
    s.close().expect("C_CloseSession");
    p.clone().finalize().expect("C_Finalize");
    let objects = reference.objects();

    // The run time of a whole rotation: the larger of two.
    let mut tally = Tally {
        generation: generation(&env, slot),
        rotations: rotation_events(&env),
    };
    let full = (0..2)
        .map(|i| {
            let took = full_rotation(&env, objects);
            check_token(&p, &reference, &env, &format!("full rotation {i}"));
            tally.generation += 1;
            tally.rotations += 1;
            assert_eq!(generation(&env, slot), tally.generation, "generation");
            assert_eq!(rotation_events(&env), tally.rotations, "rotation events");
            took
        })
        .max()
        .unwrap();
    let span = full.mul_f64(1.2);
    println!(
        "a full rotation of {objects} records takes {full:?}: kill delays drawn from 0..={span:?}"
    );

    let mut done: Vec<Round> = Vec::new();
    let mut round = 0;
    let mut widened = 0;
    loop {
        let before = done.iter().any(|r| r.fate == Fate::Before);
        let after = done.iter().any(|r| matches!(r.fate, Fate::After { .. }));
        if round >= rounds && (before && after || widened >= MAX_EXTRA_ROUNDS) {
            break;
        }
        let (lo, hi) = if round < rounds {
            (Duration::ZERO, span)
        } else {
            // The random delays missed one kind: aim at the commit, between
            // the latest kill that found the old key and the earliest delay
            // that found the new one (10% either side, for the jitter of the
            // run time); with no delay yet that found the new key, reach
            // further past the measured run time each extra round.
            widened += 1;
            let latest_before = done
                .iter()
                .filter(|r| r.fate == Fate::Before)
                .map(|r| r.delay)
                .max()
                .unwrap_or(Duration::ZERO);
            let earliest_new = done
                .iter()
                .filter(|r| r.fate != Fate::Before)
                .map(|r| r.delay)
                .min()
                .unwrap_or_else(|| span.mul_f64(1.0 + widened as f64 / 4.0));
            (
                latest_before.min(earliest_new).mul_f64(0.9),
                earliest_new.max(latest_before).mul_f64(1.1),
            )
        };
        let width = (hi - lo).as_micros() as usize;
        let delay = lo + Duration::from_micros(rng.below(width + 1) as u64);
        let ctx = format!(
            "round {round}{} (kill after {delay:?})",
            if round >= rounds { " (extra)" } else { "" }
        );
        done.push(kill_round(
            &env, &p, slot, &reference, &mut tally, &ctx, delay,
        ));
        round += 1;
    }

    // Where the kills landed, in tenths of a full rotation's run time.
    let buckets = 12;
    let mut histogram = String::new();
    for b in 0..buckets {
        let cell: String = done
            .iter()
            .filter(|r| {
                let x = r.delay.as_secs_f64() / full.as_secs_f64();
                ((x * 10.0) as usize).min(buckets - 1) == b
            })
            .map(|r| r.fate.letter())
            .collect();
        let range = if b + 1 < buckets {
            format!("{:.1}-{:.1}x", b as f64 / 10.0, (b + 1) as f64 / 10.0)
        } else {
            format!("{:.1}x and more", b as f64 / 10.0)
        };
        histogram += &format!("\n  {range}: {cell}");
    }
    let before = done.iter().filter(|r| r.fate == Fate::Before).count();
    let after = done
        .iter()
        .filter(|r| matches!(r.fate, Fate::After { .. }))
        .count();
    println!(
        "rotation crash test: {} rounds ({widened} extra) in {:?}; full rotation {full:?}\n\
         killed before the commit: {}\n\
         killed after the commit, audit event written: {}\n\
         killed after the commit, before its audit event (rotation not in the audit log): {}\n\
         finished before the kill: {}\n\
         kills that left a partial last audit line: {}, an unfinished sled snapshot: {}, \
         killed after printing the success line: {}\n\
         delays by fraction of a full rotation (b before, A/a after with/without \
         audit event, e finished):{histogram}",
        done.len(),
        start.elapsed(),
        spread(&done, |f| f == Fate::Before),
        spread(&done, |f| f == Fate::After { audited: true }),
        spread(&done, |f| f == Fate::After { audited: false }),
        spread(&done, |f| f == Fate::Exited),
        done.iter().filter(|r| r.partial).count(),
        done.iter().filter(|r| r.snapshot).count(),
        done.iter().filter(|r| r.printed).count(),
    );
    assert!(
        before > 0 && after > 0,
        "kills must land both before ({before}) and after ({after}) the commit"
    );

    // A last, uninterrupted rotation.
    full_rotation(&env, objects);
    check_token(&p, &reference, &env, "final rotation");
    assert_eq!(generation(&env, slot), tally.generation + 1, "generation");
    assert_eq!(
        rotation_events(&env),
        tally.rotations + 1,
        "rotation events"
    );
    assert_audit_intact(&env, "final rotation");
    println!("whole test: {:?}", start.elapsed());
}

// ---------------------------------------------------------------------------
// a process logged in meanwhile
// ---------------------------------------------------------------------------

fn state(s: &Session) -> SessionState {
    s.get_session_info()
        .expect("C_GetSessionInfo")
        .session_state()
}

fn warn_lines(env: &TestEnv) -> usize {
    env.log()
        .lines()
        .filter(|l| l.contains(" WARN: ") && l.contains(ROTATED_WARN))
        .count()
}

/// A process that stays logged in through the `.so` while `ferrohsm
/// rotate-storage-key` runs elsewhere: until something refreshes its view it
/// keeps working with the objects it holds; its next `C_FindObjectsInit` (in
/// any session; `C_OpenSession` does not look) logs it out, with a WARN line in the module log, after
/// which the private objects are gone from its view; it logs in again with the
/// same PIN and its keys compute what they did. A token write made before any
/// refresh (with the old key) fails without damaging the token.
#[test]
fn a_process_logged_in_during_a_rotation_is_logged_out_and_logs_in_again() {
    let env = TestEnv::new();
    let mut rng = Rng::new(7);
    init_token(&env);
    let p = tool::load();
    let slot = slot_of(&p);
    let s = user_session(&p, slot);
    let reference = populate(&s, &mut rng);
    let objects = reference.objects();
    let key0 = one(&s, &aes_label(0), ObjectClass::SECRET_KEY);
    let gen0 = generation(&env, slot);

    // 1. Rotation, then C_FindObjectsInit.
    let r = ok(&env, ROTATE);
    assert!(r.stdout.contains(&rotated_line(objects)), "{}", r.show());
    assert_eq!(generation(&env, slot), gen0 + 1);
    assert_eq!(
        state(&s),
        SessionState::RwUser,
        "C_GetSessionInfo does not look at the store"
    );
    let ct = s
        .encrypt(&Mechanism::AesEcb, key0, &BLOCK)
        .expect("a key handle held before the rotation, before any refresh");
    assert_eq!(ct, reference.aes[0].1, "AES-ECB before the refresh");
    assert_eq!(warn_lines(&env), 0, "no refresh yet");
    let seen = s
        .find_objects(&[])
        .expect("C_FindObjects after the rotation");
    assert_eq!(
        state(&s),
        SessionState::RwPublic,
        "C_FindObjectsInit after a rotation elsewhere logs out"
    );
    assert_eq!(
        seen.len(),
        DATA_OBJECTS + 1,
        "logged out: only public objects"
    );
    assert_eq!(warn_lines(&env), 1, "WARN line\n{}", env.log_tail(10));
    let err = s
        .encrypt(&Mechanism::AesEcb, key0, &BLOCK)
        .expect_err("a private key handle after the logout");
    println!("key handle held across the logout: {err}");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login again with the same user PIN");
    check_objects(&s, &reference);

    // 2. Rotation, then C_OpenSession, which does not look at the store (it
    // is a hot path); the new session's C_FindObjectsInit refreshes, and the
    // login is the token's, so every session of this process is logged out.
    ok(&env, ROTATE);
    let s2 = p
        .open_ro_session(slot)
        .expect("C_OpenSession after a rotation");
    assert_eq!(
        state(&s2),
        SessionState::RoUser,
        "C_OpenSession does not look at the store"
    );
    assert_eq!(warn_lines(&env), 1, "no refresh at C_OpenSession");
    let seen = s2
        .find_objects(&[])
        .expect("C_FindObjects in the new session after the rotation");
    assert_eq!(seen.len(), DATA_OBJECTS + 1, "logged out: public objects");
    assert_eq!(state(&s), SessionState::RwPublic, "every session logs out");
    assert_eq!(state(&s2), SessionState::RoPublic);
    assert_eq!(warn_lines(&env), 2, "WARN line\n{}", env.log_tail(10));
    s2.close().expect("C_CloseSession");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login again after the second rotation");
    check_objects(&s, &reference);

    // 3. Rotation, then a token write before anything refreshed: the process
    // still holds the old key.
    ok(&env, ROTATE);
    let gen3 = generation(&env, slot);
    let stale = s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Encrypt(true),
            Attribute::ValueLen(32u64.into()),
            Attribute::Label(b"stale-write".to_vec()),
        ],
    );
    println!("C_GenerateKey of a token key with the pre-rotation key: {stale:?}");
    // Not corruption: the login is over, as the next refresh would find.
    assert!(
        matches!(stale, Err(CkError::Pkcs11(RvError::UserNotLoggedIn, _))),
        "a token write with the old key: {stale:?}\n{}",
        env.log_tail(10)
    );
    assert_eq!(
        generation(&env, slot),
        gen3,
        "the refused write changed nothing"
    );
    assert!(
        !env.log().lines().any(|l| l.contains(" ERROR: ")),
        "no error line for an ordinary race\n{}",
        env.log_tail(10)
    );
    assert_eq!(state(&s), SessionState::RwPublic, "logged out at once");
    assert_eq!(warn_lines(&env), 3, "WARN line\n{}", env.log_tail(10));
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login again after the third rotation");
    check_objects(&s, &reference);
    assert!(
        s.find_objects(&[Attribute::Label(b"stale-write".to_vec())])
            .expect("C_FindObjects")
            .is_empty(),
        "the refused key is not on the token"
    );
    s.close().expect("C_CloseSession");
    p.clone().finalize().expect("C_Finalize");

    // A fresh load agrees, with both PINs, and the audit chain is intact.
    check_token(&p, &reference, &env, "after three rotations");
    assert_eq!(rotation_events(&env), 3, "rotation events");
    assert_audit_intact(&env, "after three rotations");
    let log = env.log();
    let warns: Vec<&str> = log.lines().filter(|l| l.contains(ROTATED_WARN)).collect();
    println!(
        "module log lines about the rotations:\n  {}",
        warns.join("\n  ")
    );
}

// ---------------------------------------------------------------------------
// audit verify on a partial last line
// ---------------------------------------------------------------------------

/// What `ferrohsm audit verify` does with a log whose last line is partial, as
/// a writer killed in the middle of an append leaves it (here written by the
/// test, since kills rarely land there): `audit show` leaves the partial line
/// out; `audit verify` first appends its own `ferrohsm login` event (its PIN
/// check), which truncates the partial line, and then reports the chain
/// intact; the partial bytes are gone for good.
#[test]
fn audit_verify_on_a_log_with_a_partial_last_line() {
    let env = TestEnv::new();
    init_token(&env);
    let p = tool::load();
    let slot = slot_of(&p);
    p.finalize().expect("C_Finalize");
    let path = token_dir(&env, slot).join("audit/log.jsonl");
    let before = audit_events(&env).len();
    let whole = std::fs::read(&path).expect("read log.jsonl");
    assert!(whole.ends_with(b"\n"), "a complete log");
    let partial = format!("{{\"seq\":{},\"time\":\"2026-12-03T17:", before + 1);
    let mut cut = whole.clone();
    cut.extend_from_slice(partial.as_bytes());
    std::fs::write(&path, &cut).expect("write log.jsonl");

    assert_eq!(
        audit_events(&env).len(),
        before,
        "audit show leaves the partial line out"
    );
    let v = audit_verify(&env);
    println!("audit verify on a partial last line: {}", v.show());
    assert!(
        v.status.success() && v.stdout.contains("chain intact"),
        "{}",
        v.show()
    );
    let after = std::fs::read(&path).expect("read log.jsonl");
    assert!(after.starts_with(&whole), "the complete lines are kept");
    let added = String::from_utf8_lossy(&after[whole.len()..]).into_owned();
    assert!(
        added.ends_with('\n') && added.lines().count() == 1 && added.contains("\"ferrohsm login\""),
        "the partial line is replaced by verify's own login event: {added:?}"
    );
    assert_eq!(audit_events(&env).len(), before + 1);
    assert_audit_intact(&env, "after the repair");
}
