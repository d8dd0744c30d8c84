//! Crash safety of the token store, through the real `.so`: a writer process
//! killed with `SIGKILL` at a random moment, usually in the middle of a store
//! call, never loses a change the module acknowledged with `CKR_OK`, and never
//! leaves a half-done one.
//!
//! Each round re-runs this test binary as a writer child (`FERROHSM_CRASH_CHILD`
//! holds its slot, round and seed). The child logs in and loops over random
//! token-object operations (create a data object, generate an AES key, rename
//! or destroy an object), printing `@@ begin <op>` before each call and
//! `@@ <op>` once it returned `CKR_OK`. The parent kills it 5–150 ms after it
//! is ready, then reopens the store (`C_Initialize` afresh) and requires the
//! token's objects to be exactly its model of acknowledged changes, with the
//! operation that was in flight either wholly applied or wholly absent.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::process::{Command, Stdio};
use std::ptr;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use cryptoki_sys::*;
use ferrohsm_tests::raw::{RawModule, check};
use ferrohsm_tests::{Rng, TestEnv, USER_PIN, ck};

const TEST: &str = "sigkill_at_random_moments_keeps_every_acknowledged_change";
/// Set in a writer child: `<slot> <round> <seed>`.
const CHILD_VAR: &str = "FERROHSM_CRASH_CHILD";
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

/// A template pointing into `vals`, which must outlive the call it is used in.
fn template(vals: &mut [(CK_ATTRIBUTE_TYPE, Vec<u8>)]) -> Vec<CK_ATTRIBUTE> {
    vals.iter_mut()
        .map(|(t, v)| CK_ATTRIBUTE {
            type_: *t,
            pValue: v.as_mut_ptr().cast(),
            ulValueLen: v.len() as CK_ULONG,
        })
        .collect()
}

fn ul(v: CK_ULONG) -> Vec<u8> {
    v.to_ne_bytes().to_vec()
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn attr(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    o: CK_OBJECT_HANDLE,
    ty: CK_ATTRIBUTE_TYPE,
) -> Vec<u8> {
    let mut a = CK_ATTRIBUTE {
        type_: ty,
        pValue: ptr::null_mut(),
        ulValueLen: 0,
    };
    check(
        ck!(m, C_GetAttributeValue(s, o, &mut a, 1)),
        CKR_OK,
        "C_GetAttributeValue size",
    );
    let mut buf = vec![0u8; a.ulValueLen as usize];
    a.pValue = buf.as_mut_ptr().cast();
    check(
        ck!(m, C_GetAttributeValue(s, o, &mut a, 1)),
        CKR_OK,
        "C_GetAttributeValue",
    );
    buf.truncate(a.ulValueLen as usize);
    buf
}

fn label_of(m: &RawModule, s: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> String {
    String::from_utf8(attr(m, s, o, CKA_LABEL)).expect("UTF-8 label")
}

/// Every object the session sees.
fn all_objects(m: &RawModule, s: CK_SESSION_HANDLE) -> Vec<CK_OBJECT_HANDLE> {
    check(
        ck!(m, C_FindObjectsInit(s, ptr::null_mut(), 0)),
        CKR_OK,
        "C_FindObjectsInit",
    );
    let mut found = Vec::new();
    loop {
        let mut buf = [CK_INVALID_HANDLE; 64];
        let mut n: CK_ULONG = 0;
        let rv = ck!(
            m,
            C_FindObjects(s, buf.as_mut_ptr(), buf.len() as CK_ULONG, &mut n)
        );
        check(rv, CKR_OK, "C_FindObjects");
        if n == 0 {
            break;
        }
        found.extend_from_slice(&buf[..n as usize]);
    }
    check(ck!(m, C_FindObjectsFinal(s)), CKR_OK, "C_FindObjectsFinal");
    found
}

/// Hex of the AES-ECB encryption of one zero block under `key`.
fn ecb_zero(m: &RawModule, s: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> String {
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_ECB,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    check(
        ck!(m, C_EncryptInit(s, &mut mech, key)),
        CKR_OK,
        "C_EncryptInit AES-ECB",
    );
    let (mut zero, mut out, mut n) = ([0u8; 16], [0u8; 16], 16 as CK_ULONG);
    let rv = ck!(
        m,
        C_Encrypt(s, zero.as_mut_ptr(), 16, out.as_mut_ptr(), &mut n)
    );
    check(rv, CKR_OK, "C_Encrypt AES-ECB");
    assert_eq!(n, 16, "AES-ECB output length");
    hex(&out)
}

// ---------------------------------------------------------------------------
// the writer child
// ---------------------------------------------------------------------------

/// Tells the parent one line (`@@ ` marks it: libtest writes to stdout too).
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    writeln!(out, "@@ {line}").expect("write to parent");
    out.flush().expect("flush to parent");
}

/// Loops over random operations until killed (or, orphaned, for 30 s).
fn writer(spec: &str) {
    let v: Vec<u64> = spec
        .split(' ')
        .map(|x| x.parse().expect(CHILD_VAR))
        .collect();
    let (slot, round, mut rng) = (v[0], v[1], Rng::new(v[2]));
    let m = RawModule::load();
    check(
        ck!(m, C_Initialize(ptr::null_mut())),
        CKR_OK,
        "C_Initialize",
    );
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let mut objs: BTreeMap<String, CK_OBJECT_HANDLE> = all_objects(&m, s)
        .into_iter()
        .map(|h| (label_of(&m, s, h), h))
        .collect();
    say(&format!("ready {}", objs.len()));
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
        let mut h = CK_INVALID_HANDLE;
        if pick < create {
            let private = rng.below(2) == 1;
            let len = 1 + rng.below(64);
            let value = rng.bytes(len);
            let op = format!("create {label} {} {}", private as u8, hex(&value));
            let mut vals = [
                (CKA_CLASS, ul(CKO_DATA)),
                (CKA_TOKEN, vec![CK_TRUE]),
                (CKA_PRIVATE, vec![private as u8]),
                (CKA_LABEL, label.clone().into_bytes()),
                (CKA_VALUE, value),
            ];
            let mut t = template(&mut vals);
            say(&format!("begin {op}"));
            let rv = ck!(
                m,
                C_CreateObject(s, t.as_mut_ptr(), t.len() as CK_ULONG, &mut h)
            );
            check(rv, CKR_OK, "C_CreateObject");
            say(&op);
            objs.insert(label, h);
        } else if pick < keygen {
            let len = [16, 24, 32][rng.below(3)];
            let mut vals = [
                (CKA_CLASS, ul(CKO_SECRET_KEY)),
                (CKA_KEY_TYPE, ul(CKK_AES)),
                (CKA_TOKEN, vec![CK_TRUE]),
                (CKA_LABEL, label.clone().into_bytes()),
                (CKA_VALUE_LEN, ul(len)),
                (CKA_SENSITIVE, vec![CK_TRUE]),
                (CKA_ENCRYPT, vec![CK_TRUE]),
            ];
            let mut t = template(&mut vals);
            let mut mech = CK_MECHANISM {
                mechanism: CKM_AES_KEY_GEN,
                pParameter: ptr::null_mut(),
                ulParameterLen: 0,
            };
            say(&format!("begin keygen {label}"));
            let n = t.len() as CK_ULONG;
            let rv = ck!(m, C_GenerateKey(s, &mut mech, t.as_mut_ptr(), n, &mut h));
            check(rv, CKR_OK, "C_GenerateKey");
            say(&format!("keygen {label} {}", ecb_zero(&m, s, h)));
            objs.insert(label, h);
        } else {
            let old = objs.keys().nth(rng.below(objs.len())).unwrap().clone();
            let h = objs.remove(&old).unwrap();
            if pick < rename {
                let op = format!("rename {old} {label}");
                let mut vals = [(CKA_LABEL, label.clone().into_bytes())];
                let mut t = template(&mut vals);
                say(&format!("begin {op}"));
                let rv = ck!(m, C_SetAttributeValue(s, h, t.as_mut_ptr(), 1));
                check(rv, CKR_OK, "C_SetAttributeValue CKA_LABEL");
                say(&op);
                objs.insert(label, h);
            } else {
                say(&format!("begin destroy {old}"));
                check(ck!(m, C_DestroyObject(s, h)), CKR_OK, "C_DestroyObject");
                say(&format!("destroy {old}"));
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
    let mut child = Command::new(std::env::current_exe().expect("current_exe"))
        .args(["--exact", TEST, "--nocapture", "--test-threads", "1"])
        .env(CHILD_VAR, spec)
        .envs(env.env_vars())
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
                    if let Some((_, rest)) = line.trim_end().split_once("@@ ") {
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
            tail(&env.log(), 30)
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
    check(
        ck!(m, C_Initialize(ptr::null_mut())),
        CKR_OK,
        "C_Initialize",
    );
    let mut ti = CK_TOKEN_INFO::default();
    check(
        ck!(m, C_GetTokenInfo(slot, &mut ti)),
        CKR_OK,
        "C_GetTokenInfo",
    );
    let s = m.open(slot, false);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let mut seen = Model::new();
    for h in all_objects(m, s) {
        let label = label_of(m, s, h);
        let class = CK_ULONG::from_ne_bytes(attr(m, s, h, CKA_CLASS).try_into().unwrap());
        let obj = match class {
            CKO_DATA => Obj::Data {
                private: attr(m, s, h, CKA_PRIVATE) == [CK_TRUE],
                value: hex(&attr(m, s, h, CKA_VALUE)),
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
fn files(dir: &std::path::Path) -> Vec<(String, u64)> {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.flatten()
                .filter_map(|e| Some((e.file_name().into_string().ok()?, e.metadata().ok()?.len())))
                .collect()
        })
        .unwrap_or_default()
}

fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[test]
fn sigkill_at_random_moments_keeps_every_acknowledged_change() {
    if let Ok(spec) = std::env::var(CHILD_VAR) {
        return writer(&spec);
    }
    let env = TestEnv::new();
    let rounds: u64 = std::env::var("FERROHSM_CRASH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(ROUNDS);
    let mut rng = Rng::seeded("crash test");
    let m = RawModule::load();
    check(
        ck!(m, C_Initialize(ptr::null_mut())),
        CKR_OK,
        "C_Initialize",
    );
    let slot = m.make_token("crash");
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");

    let token_dir = env.data_dir().join(format!("token-{slot}"));
    let mut unfinished_snapshots = 0;
    let mut model = Model::new();
    let (mut acked, mut applied, mut absent) = (0usize, 0usize, 0usize);
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
                tail(&env.log(), 30)
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
