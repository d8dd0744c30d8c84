//! Crash safety of the token store, through the real `.so`: a writer process
//! killed with `SIGKILL` at a random moment, usually in the middle of a store
//! call, never loses a change the module acknowledged with `CKR_OK`, and never
//! leaves a half-done one.
//!
//! Each round re-runs this test binary as a writer child (its role,
//! `FERROHSM_TEST_ROLE`, holds its slot, round and seed). The child logs in and loops over random
//! token-object operations (create a data object, generate an AES key, rename
//! or destroy an object), printing `@@ begin <op>` before each call and
//! `@@ <op>` once it returned `CKR_OK`. The parent kills it 5–150 ms after it
//! is ready, then reopens the store (`C_Initialize` afresh) and requires the
//! token's objects to be exactly its model of acknowledged changes, with the
//! operation that was in flight either wholly applied or wholly absent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::ptr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use ferrohsm_tests::child::{child_command, emit, emit_line, report_line, role};
use ferrohsm_tests::raw::{
    RawModule, Tpl, V, aes_keygen_template, check, ok, plain_mechanism, text,
};
use ferrohsm_tests::{Rng, TestEnv, USER_PIN, ck, to_hex};

const TEST: &str = "sigkill_at_random_moments_keeps_every_acknowledged_change";
/// Rounds run (`FERROHSM_CRASH_ROUNDS` overrides).
const ROUNDS: u64 = 60;

/// What an object holds, as the checker can observe it.
#[derive(Clone, Debug, PartialEq)]
enum Obj {
    /// A data object: `CKA_PRIVATE` and the hex of `CKA_VALUE`.
    Data { private: bool, value: String },
    /// An AES key: hex of its AES-ECB encryption of 16 zero bytes.
    Key { ecb: String },
}

/// An operation as the writer announces it (`keygen` gets its `ecb` in the
/// acknowledgement only).
#[derive(Clone, Debug, PartialEq)]
enum Op {
    Create { label: String, obj: Obj },
    Keygen { label: String, ecb: Option<String> },
    Rename { old: String, new: String },
    Destroy { label: String },
}

impl Op {
    /// The PKCS#11 call that makes this change (as its audit line names it).
    fn call(&self) -> &'static str {
        match self {
            Op::Create { .. } => "C_CreateObject",
            Op::Keygen { .. } => "C_GenerateKey",
            Op::Rename { .. } => "C_SetAttributeValue",
            Op::Destroy { .. } => "C_DestroyObject",
        }
    }

    fn parse(s: &str) -> Op {
        let w: Vec<&str> = s.split(' ').collect();
        let l = |i: usize| w[i].to_string();
        match w.as_slice() {
            ["create", _, p, _] => Op::Create {
                label: l(1),
                obj: Obj::Data {
                    private: *p == "1",
                    value: l(3),
                },
            },
            ["keygen", _] => Op::Keygen {
                label: l(1),
                ecb: None,
            },
            ["keygen", _, _] => Op::Keygen {
                label: l(1),
                ecb: Some(l(2)),
            },
            ["rename", _, _] => Op::Rename {
                old: l(1),
                new: l(2),
            },
            ["destroy", _] => Op::Destroy { label: l(1) },
            _ => panic!("unparsable operation line {s:?}"),
        }
    }

    fn show(&self) -> String {
        match self {
            Op::Create { label, obj } => format!("create {label} {obj:?}"),
            Op::Keygen { label, .. } => format!("keygen {label}"),
            Op::Rename { old, new } => format!("rename {old} -> {new}"),
            Op::Destroy { label } => format!("destroy {label}"),
        }
    }

    /// `model` with this operation applied; `seen` (the reopened token) gives
    /// the value of a key whose generation was never acknowledged.
    fn apply(&self, model: &Model, seen: &Model) -> Model {
        let mut m = model.clone();
        let fresh = |m: &mut Model, label: &String, obj: Obj| {
            assert!(
                m.insert(label.clone(), obj).is_none(),
                "label {label} reused"
            );
        };
        match self {
            Op::Create { label, obj } => fresh(&mut m, label, obj.clone()),
            Op::Keygen { label, ecb } => {
                let ecb = match (ecb, seen.get(label)) {
                    (Some(e), _) => e.clone(),
                    (None, Some(Obj::Key { ecb })) => ecb.clone(),
                    (None, _) => "(not generated)".to_string(),
                };
                fresh(&mut m, label, Obj::Key { ecb });
            }
            Op::Rename { old, new } => {
                let o = m
                    .remove(old)
                    .unwrap_or_else(|| panic!("rename of unknown {old}"));
                fresh(&mut m, new, o);
            }
            Op::Destroy { label } => {
                m.remove(label)
                    .unwrap_or_else(|| panic!("destroy of unknown {label}"));
            }
        }
        m
    }
}

/// Label → object: what the token must hold.
type Model = BTreeMap<String, Obj>;

// ---------------------------------------------------------------------------
// raw calls
// ---------------------------------------------------------------------------

/// One attribute's value, which must be readable.
fn attr(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    ty: CK_ATTRIBUTE_TYPE,
) -> Vec<u8> {
    ok(m.attribute(s, o, ty), "C_GetAttributeValue")
}

fn label_of(m: &RawModule, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> String {
    String::from_utf8(attr(m, s, o, CKA_LABEL)).expect("UTF-8 label")
}

/// Hex of the AES-ECB encryption of one zero block under `key`.
fn ecb_zero(m: &RawModule, s: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> String {
    let mut mech = plain_mechanism(CKM_AES_ECB);
    let out = ok(m.crypt(s, &mut mech, key, &[0u8; 16], true), "AES-ECB");
    assert_eq!(out.len(), 16, "AES-ECB output length");
    to_hex(&out)
}

// ---------------------------------------------------------------------------
// the writer child
// ---------------------------------------------------------------------------

/// Loops over random operations until killed (or, orphaned, for 30 s).
fn writer(spec: &str) {
    let v: Vec<u64> = spec
        .split(' ')
        .map(|x| x.parse().expect("writer role: <slot> <round> <seed>"))
        .collect();
    let (slot, round, mut rng) = (v[0], v[1], Rng::new(v[2]));
    let m = RawModule::init();
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let mut objs: BTreeMap<String, CK_OBJECT_HANDLE> = ok(m.find(s, vec![]), "find all objects")
        .into_iter()
        .map(|h| (label_of(&m, s, h), h))
        .collect();
    emit("ready", objs.len());
    let deadline = Instant::now() + Duration::from_secs(30);
    for n in 0.. {
        assert!(Instant::now() < deadline, "writer not killed in time");
        let label = format!("r{round}-{n}");
        let (create, keygen, rename) = match objs.len() {
            0 => (70, 100, 100),
            1..=40 => (35, 50, 75),
            _ => (20, 30, 55),
        };
        let pick = rng.below(100);
        if pick < create {
            let private = rng.below(2) == 1;
            let len = 1 + rng.below(64);
            let value = rng.bytes(len);
            let op = format!("create {label} {} {}", private as u8, to_hex(&value));
            emit("begin", &op);
            let h = ok(
                m.create(
                    s,
                    vec![
                        (CKA_CLASS, V::U(CKO_DATA)),
                        (CKA_TOKEN, V::B(true)),
                        (CKA_PRIVATE, V::B(private)),
                        (CKA_LABEL, text(&label)),
                        (CKA_VALUE, V::Bytes(value)),
                    ],
                ),
                "C_CreateObject",
            );
            emit_line(&op);
            objs.insert(label, h);
        } else if pick < keygen {
            let len = [16, 24, 32][rng.below(3)];
            emit("begin keygen", &label);
            let h = ok(
                m.generate_key(s, CKM_AES_KEY_GEN, aes_keygen_template(&label, true, len)),
                "C_GenerateKey",
            );
            emit_line(&format!("keygen {label} {}", ecb_zero(&m, s, h)));
            objs.insert(label, h);
        } else {
            let old = objs.keys().nth(rng.below(objs.len())).unwrap().clone();
            let h = objs.remove(&old).unwrap();
            if pick < rename {
                let op = format!("rename {old} {label}");
                let mut t = Tpl::new(vec![(CKA_LABEL, text(&label))]);
                emit("begin", &op);
                let rv = ck!(m, C_SetAttributeValue(s, h, t.ptr(), t.len()));
                check(rv, CKR_OK, "C_SetAttributeValue CKA_LABEL");
                emit_line(&op);
                objs.insert(label, h);
            } else {
                emit("begin destroy", &old);
                check(ck!(m, C_DestroyObject(s, h)), CKR_OK, "C_DestroyObject");
                emit("destroy", &old);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// the parent
// ---------------------------------------------------------------------------

/// Runs one writer, kills it `delay` after it is ready, and returns the
/// operation lines it completed before dying (after `ready`).
fn run_writer(env: &TestEnv, spec: &str, delay: Duration) -> Vec<String> {
    let err_path = env.dir.path().join("writer.stderr");
    let mut child = child_command(env, TEST, spec)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(std::fs::File::create(&err_path).expect("stderr file"))
        .spawn()
        .expect("start writer");
    let stdout = child.stdout.take().expect("writer stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        let mut r = BufReader::new(stdout);
        loop {
            let mut line = String::new();
            // A line cut short by the kill (no newline) is not a report.
            match r.read_line(&mut line) {
                Ok(_) if line.ends_with('\n') => {
                    if let Some(rest) = report_line(line.trim_end()) {
                        let _ = tx.send(rest.to_string());
                    }
                }
                _ => break,
            }
        }
    });
    let died = |child: &mut std::process::Child, why: &str| -> ! {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "writer {spec}: {why}\nstderr:\n{}\nmodule log (tail):\n{}",
            std::fs::read_to_string(&err_path).unwrap_or_default(),
            env.log_tail(30)
        );
    };
    match rx.recv_timeout(Duration::from_secs(30)) {
        Ok(l) if l.starts_with("ready") => {}
        other => died(&mut child, &format!("no 'ready' line, got {other:?}")),
    }
    std::thread::sleep(delay);
    if child.try_wait().expect("try_wait").is_some() {
        died(&mut child, "exited before it was killed");
    }
    child.kill().expect("SIGKILL writer");
    let status = child.wait().expect("wait writer");
    assert_eq!(
        status.signal(),
        Some(libc::SIGKILL),
        "writer {spec}: {status}"
    );
    reader.join().expect("reader thread");
    rx.try_iter().collect()
}

/// Opens the store afresh (`C_Initialize` … `C_Finalize`), logs in and reads
/// every object of the token.
fn observe(m: &RawModule, slot: CK_SLOT_ID) -> Model {
    m.initialize();
    m.token_info(slot);
    let s = m.open(slot, false);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let mut seen = Model::new();
    for h in ok(m.find(s, vec![]), "find all objects") {
        let label = label_of(m, s, h);
        let class = CK_ULONG::from_ne_bytes(attr(m, s, h, CKA_CLASS).try_into().unwrap());
        let obj = match class {
            CKO_DATA => Obj::Data {
                private: attr(m, s, h, CKA_PRIVATE) == [CK_TRUE],
                value: to_hex(&attr(m, s, h, CKA_VALUE)),
            },
            CKO_SECRET_KEY => Obj::Key {
                ecb: ecb_zero(m, s, h),
            },
            other => panic!("object {label} has class {other}"),
        };
        if let Some(first) = seen.insert(label.clone(), obj.clone()) {
            panic!("two objects labelled {label}: {first:?} and {obj:?}");
        }
    }
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout");
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    seen
}

/// How `seen` differs from `want`, one line per label.
fn diff(want: &Model, seen: &Model) -> String {
    let mut out = String::new();
    for (l, w) in want {
        match seen.get(l) {
            None => out += &format!("  missing {l}: {w:?}\n"),
            Some(s) if s != w => out += &format!("  changed {l}: want {w:?}, found {s:?}\n"),
            Some(_) => {}
        }
    }
    for (l, s) in seen.iter().filter(|(l, _)| !want.contains_key(*l)) {
        out += &format!("  unexpected {l}: {s:?}\n");
    }
    out
}

/// Names and sizes of the files in `dir`.
/// The token's audit events, after checking the whole chain with the audit
/// root (opened with the user PIN, as `ferrohsm audit verify` does).
fn verified_audit_events(env: &TestEnv, slot: CK_SLOT_ID) -> Vec<ferrohsm_store::AuditEvent> {
    use ferrohsm_store::AuditKey;
    let (store, token, key) = ferrohsm_tests::open_token_store(env, slot);
    let root = AuditKey::open(
        token.audit_root.as_ref().expect("audit root"),
        &key,
        &token.token_id,
    )
    .expect("audit root");
    let log = store.audit_log(slot);
    let report = log.verify(&root).expect("audit verify");
    assert_eq!(report.first_bad, None, "audit chain broken after the kills");
    log.read()
        .expect("read audit log")
        .into_iter()
        .map(|l| l.event)
        .collect()
}

fn files(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn sigkill_at_random_moments_keeps_every_acknowledged_change() {
    if let Some(spec) = role() {
        return writer(&spec);
    }
    let env = TestEnv::new();
    let rounds: u64 = std::env::var("FERROHSM_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let mut rng = Rng::seeded("crash test");
    let m = RawModule::init();
    let slot = m.make_token("crash");
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");

    let token_dir = env.data_dir().join(format!("token-{slot}"));
    let mut unfinished_snapshots = 0;
    let mut model = Model::new();
    let (mut acked, mut applied, mut absent) = (0usize, 0usize, 0usize);
    let mut acked_by_call: std::collections::BTreeMap<&str, usize> = Default::default();
    let start = Instant::now();
    for round in 0..rounds {
        let t0 = Instant::now();
        let seed = rng.next_u64();
        let delay = Duration::from_millis(5 + rng.below(146) as u64);
        let spec = format!("{slot} {round} {seed}");
        let lines = run_writer(&env, &spec, delay);
        let context = format!("round {round} (writer seed {seed}, killed {delay:?} after ready)");
        let mut pending: Option<Op> = None;
        for line in &lines {
            if let Some(op) = line.strip_prefix("begin ") {
                assert!(pending.is_none(), "{context}: two operations begun");
                pending = Some(Op::parse(op));
            } else {
                let op = Op::parse(line);
                let begun = pending
                    .take()
                    .unwrap_or_else(|| panic!("{context}: {line:?} never begun"));
                let same = match (&begun, &op) {
                    (Op::Keygen { label: a, .. }, Op::Keygen { label: b, .. }) => a == b,
                    (a, b) => a == b,
                };
                assert!(same, "{context}: begun {begun:?}, acknowledged {op:?}");
                *acked_by_call.entry(op.call()).or_default() += 1;
                model = op.apply(&model, &Model::new());
                acked += 1;
            }
        }
        if files(&token_dir.join("db"))
            .iter()
            .any(|(n, _)| n.ends_with(".generating"))
        {
            unfinished_snapshots += 1;
        }
        let seen = observe(&m, slot);
        let verdict = match &pending {
            None if seen == model => "nothing in flight".to_string(),
            Some(op) if seen == model => {
                absent += 1;
                format!("in flight, not applied: {}", op.show())
            }
            Some(op) if seen == op.apply(&model, &seen) => {
                applied += 1;
                model = seen.clone();
                format!("in flight, applied: {}", op.show())
            }
            _ => panic!(
                "{context}: the reopened token is not the acknowledged state{}\n\
                 difference from the acknowledged state:\n{}\nwriter's lines:\n{}\n\
                 module log (tail):\n{}",
                pending
                    .map(|op| format!(" (in flight: {})", op.show()))
                    .unwrap_or_default(),
                diff(&model, &seen),
                lines.join("\n"),
                env.log_tail(30)
            ),
        };
        let log = env.log();
        let corrupt: Vec<&str> = log
            .lines()
            .filter(|l| l.to_lowercase().contains("corrupt"))
            .collect();
        assert!(
            corrupt.is_empty(),
            "{context}: the module log reports corruption:\n{}",
            corrupt.join("\n")
        );
        println!(
            "{context}: {} acknowledged, {verdict}; {} objects; {:?}",
            lines.iter().filter(|l| !l.starts_with("begin ")).count(),
            model.len(),
            t0.elapsed()
        );
    }
    // Every acknowledged change has its audit line (token changes are logged
    // durably before CKR_OK), and the chain survived the kills.
    let events = verified_audit_events(&env, slot);
    for (call, n) in &acked_by_call {
        let logged = events
            .iter()
            .filter(|e| e.function == *call && e.result == "CKR_OK")
            .count();
        assert!(
            logged >= *n,
            "{n} acknowledged {call} but {logged} in the audit log"
        );
    }
    println!(
        "audit log: {} events, chain intact; acknowledged {acked_by_call:?}",
        events.len()
    );
    let top = files(&token_dir);
    let db = files(&token_dir.join("db"));
    println!(
        "store: a kill left an unfinished sled snapshot in {unfinished_snapshots} rounds; \
         token directory now {} bytes; {} generation temp files left behind",
        top.iter().chain(&db).map(|(_, len)| len).sum::<u64>(),
        top.iter()
            .filter(|(n, _)| n.starts_with("generation.tmp"))
            .count(),
    );
    assert_eq!(
        top.iter()
            .filter(|(n, _)| n.starts_with("generation.tmp"))
            .count(),
        0,
        "the store removes generation temp files of killed writers"
    );
    let log = env.log();
    let loud: Vec<&str> = log
        .lines()
        .filter(|l| l.contains(" ERROR: ") || l.contains(" WARN: "))
        .collect();
    println!(
        "module log: {} lines, {} at WARN/ERROR{}",
        log.lines().count(),
        loud.len(),
        loud.iter()
            .take(10)
            .map(|l| format!("\n  {l}"))
            .collect::<String>()
    );
    println!(
        "crash test: {rounds} rounds in {:?}: {acked} operations acknowledged and kept, \
         in-flight operations found applied {applied}, not applied {absent}, \
         nothing in flight {}; {} objects at the end",
        start.elapsed(),
        rounds as usize - applied - absent,
        model.len()
    );
}
