//! The per-token audit log and the key deletion waiting period, seen from
//! outside: through the real `libferrohsm_pkcs11.so` (loaded with `cryptoki`)
//! and the `ferrohsm` tool run as a child process.
//!
//! Covered: every recorded PKCS#11 call appears with its function, result,
//! login state, session and object (label, id, class, key type) and
//! mechanism; key use as summaries (counts, flushed periodically and at
//! `C_Finalize`) or one line per call; no key byte or PIN in any audit file;
//! `ferrohsm audit verify` accepts an intact log and names the first line of
//! an edited, shortened or reordered one; destroyed keys wait (unusable,
//! invisible, listed by `pending`, restorable by `cancel-deletion`) and are
//! purged after the period, at a login or by `pending`; `spec` tokens delete
//! at once; backup/restore carries the log and pending deletions; the log
//! rotates by size and still verifies; re-initialising a token keeps the old
//! log aside; one process's log is in call order in per-call mode too.
//!
//! Needs the `ferrohsm` binary built (`cargo build --workspace`).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::mechanism::ekdf::AesCbcDeriveParams;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use ferrohsm_tests::child::Run;
use ferrohsm_tests::p11::{pin, slot_of, spare_slot, user};
use ferrohsm_tests::tool::{self, command, load, run_cmd};
use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN, to_hex};
use serde_json::Value;

/// A PIN no token here has.
const BAD_PIN: &str = "wrong-pin-0000";
/// PINs `C_SetPIN` moves to.
const NEW_PIN: &str = "new-user-pin-5678";
const NEW_SO_PIN: &str = "new-so-pin-9876";
/// The block every AES-ECB check encrypts.
const BLOCK: [u8; 16] = *b"audit test block";
/// DER of the P-256 OID (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

// ---------------------------------------------------------------------------
// the tool and the module
// ---------------------------------------------------------------------------

/// The tool with `args` in `env` (data directory `data`, else `env`'s); the
/// test PINs are in `T_SO`, `T_PIN`, `T_BAD`.
fn cli_in(env: &TestEnv, data: Option<&Path>, args: &[&str]) -> Run {
    let mut c = command(env, args);
    c.env("T_BAD", BAD_PIN);
    if let Some(d) = data {
        c.env("FERROHSM_DIR", d);
    }
    run_cmd(env, c, args)
}

/// Runs the tool and requires exit 0.
#[track_caller]
fn ok_in(env: &TestEnv, data: Option<&Path>, args: &[&str]) -> Run {
    let r = cli_in(env, data, args);
    r.assert_success(env);
    r
}

#[track_caller]
fn ok(env: &TestEnv, args: &[&str]) -> Run {
    ok_in(env, None, args)
}

#[track_caller]
fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", r.show()))
}

/// `ferrohsm init` with the test PINs (and `--policy spec` when `spec`).
fn init(env: &TestEnv, label: &str, spec: bool) {
    let more: &[&str] = if spec { &["--policy", "spec"] } else { &[] };
    tool::init_with(env, label, more, |args| {
        let mut c = command(env, args);
        c.env("T_BAD", BAD_PIN);
        c
    });
}

/// `ferrohsm pending --json` of token `label`.
fn pending(env: &TestEnv, data: Option<&Path>, label: &str) -> Vec<Value> {
    let r = ok_in(
        env,
        data,
        &["pending", "--token", label, "--pin-env", "T_PIN", "--json"],
    );
    json(&r).as_array().expect("pending: an array").clone()
}

/// The return value of a failed `cryptoki` call.
#[track_caller]
fn rv<T: std::fmt::Debug>(r: cryptoki::error::Result<T>) -> RvError {
    match r {
        Err(CkError::Pkcs11(rv, _)) => rv,
        other => panic!("expected a PKCS#11 error, got {other:?}"),
    }
}

/// Template of an AES token key imported with `value`.
fn aes_import(label: &str, id: &[u8], value: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(value.to_vec()),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]
}

fn find(s: &Session, template: &[Attribute]) -> Vec<ObjectHandle> {
    s.find_objects(template).expect("C_FindObjects")
}

fn by_label(label: &str) -> Vec<Attribute> {
    vec![Attribute::Label(label.as_bytes().to_vec())]
}

fn ecb(s: &Session, key: ObjectHandle) -> Vec<u8> {
    s.encrypt(&Mechanism::AesEcb, key, &BLOCK)
        .expect("C_Encrypt AES-ECB")
}

// ---------------------------------------------------------------------------
// reading the audit files
// ---------------------------------------------------------------------------

/// The audit directory of the token in `slot` under data directory `data`.
fn audit_dir(data: &Path, slot: Slot) -> PathBuf {
    data.join(format!("token-{}", slot.id())).join("audit")
}

/// The log files in seq order: rotated `log.<12 digits>.jsonl` by number,
/// then `log.jsonl`.
fn log_files(dir: &Path) -> Vec<PathBuf> {
    let mut rotated: Vec<(u64, PathBuf)> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("reading {}: {e}", dir.display()))
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            let digits = name.strip_prefix("log.")?.strip_suffix(".jsonl")?;
            (digits.len() == 12 && digits.bytes().all(|b| b.is_ascii_digit()))
                .then(|| (digits.parse().unwrap(), e.path()))
        })
        .collect();
    rotated.sort();
    let mut files: Vec<PathBuf> = rotated.into_iter().map(|(_, p)| p).collect();
    let current = dir.join("log.jsonl");
    assert!(current.is_file(), "{} missing", current.display());
    files.push(current);
    files
}

/// Whether `t` is RFC 3339 UTC with milliseconds: `2026-12-03T17:10:06.026Z`.
fn is_time(t: &str) -> bool {
    let b = t.as_bytes();
    b.len() == 24
        && b.iter().enumerate().all(|(i, c)| match i {
            4 | 7 => *c == b'-',
            10 => *c == b'T',
            13 | 16 => *c == b':',
            19 => *c == b'.',
            23 => *c == b'Z',
            _ => c.is_ascii_digit(),
        })
}

/// Every event of the log in `dir`, parsed, after checking the form of each
/// line: `{"seq":…` first, `"chain":"<64 hex>"}` last, seq 1, 2, 3, … across
/// all files, an RFC 3339 time, a pid and a process name.
#[track_caller]
fn events(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    for f in log_files(dir) {
        let text = std::fs::read_to_string(&f).expect("read log file");
        for (i, line) in text.lines().enumerate() {
            let at = format!("{} line {}: {line}", f.display(), i + 1);
            let v: Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {at}"));
            assert!(line.starts_with("{\"seq\":"), "seq not first: {at}");
            let chain = v["chain"]
                .as_str()
                .unwrap_or_else(|| panic!("no chain: {at}"));
            assert!(
                chain.len() == 64 && chain.bytes().all(|c| c.is_ascii_hexdigit()),
                "chain not 64 hex: {at}"
            );
            assert!(
                line.ends_with(&format!(",\"chain\":\"{chain}\"}}")),
                "chain not last: {at}"
            );
            assert_eq!(v["seq"], out.len() + 1, "seq out of order: {at}");
            assert!(is_time(v["time"].as_str().unwrap_or("")), "time: {at}");
            assert!(v["pid"].as_u64().is_some_and(|p| p > 0), "pid: {at}");
            assert!(
                v["process"].as_str().is_some_and(|p| !p.is_empty()),
                "process: {at}"
            );
            assert!(v["result"].as_str().is_some(), "result: {at}");
            out.push(v);
        }
    }
    out
}

/// The events of function `f`.
fn of<'a>(evs: &'a [Value], f: &str) -> Vec<&'a Value> {
    evs.iter().filter(|e| e["function"] == f).collect()
}

/// The events of function `f` about the object labelled `label`.
fn about<'a>(evs: &'a [Value], f: &str, label: &str) -> Vec<&'a Value> {
    evs.iter()
        .filter(|e| e["function"] == f && e["object"]["label"] == label)
        .collect()
}

/// The one purge event of the key labelled `label` with `CKA_ID` `id` (hex):
/// a purge made without the storage key names it by `CKA_UNIQUE_ID` alone,
/// which its earlier events carry beside the label.
#[track_caller]
fn purges_of<'a>(evs: &'a [Value], label: &str, id: &str) -> Vec<&'a Value> {
    // (Both halves of a pair share label and id, and wait together.)
    let uids: Vec<&Value> = evs
        .iter()
        .filter(|e| e["object"]["label"] == label && e["object"]["id"] == id)
        .map(|e| &e["object"]["unique_id"])
        .filter(|u| u.is_string())
        .collect();
    assert!(
        !uids.is_empty(),
        "no event names {label:?} ({id}) with its unique id"
    );
    evs.iter()
        .filter(|e| e["function"] == "purge" && uids.contains(&&e["object"]["unique_id"]))
        .collect()
}

/// The one purge event of the key `label` with CKA_ID `id`.
#[track_caller]
fn purge_of<'a>(evs: &'a [Value], label: &str, id: &str) -> &'a Value {
    let purges = purges_of(evs, label, id);
    match purges.as_slice() {
        [e] => e,
        other => panic!("want one purge of {label:?} ({id}), got {other:#?}"),
    }
}

/// The one event of function `f` about the object labelled `label`.
#[track_caller]
fn one_about<'a>(evs: &'a [Value], f: &str, label: &str) -> &'a Value {
    match about(evs, f, label).as_slice() {
        [e] => e,
        other => panic!(
            "want one {f} event about {label:?}, got {}: {other:#?}",
            other.len()
        ),
    }
}

/// Asserts the object of an event: handle, label, id (hex), class, key type.
#[track_caller]
fn check_object(e: &Value, handle: ObjectHandle, label: &str, id: &str, class: &str, kt: &str) {
    let o = &e["object"];
    assert_eq!(o["handle"], handle.handle(), "handle in {e}");
    assert_eq!(o["label"], label, "label in {e}");
    assert_eq!(o["id"], id, "id in {e}");
    assert_eq!(o["class"], class, "class in {e}");
    assert_eq!(o["key_type"], kt, "key type in {e}");
}

/// Asserts who made a call: function, result, session handle, login state,
/// and that this process made it.
#[track_caller]
fn check_call(e: &Value, function: &str, result: &str, session: u64, user: &str) {
    assert_eq!(e["function"], function, "{e}");
    assert_eq!(e["result"], result, "{e}");
    assert_eq!(e["session"], session, "session in {e}");
    assert_eq!(e["user"], user, "user in {e}");
    assert_eq!(e["pid"], std::process::id(), "pid in {e}");
}

/// The details of the `C_Login` events, in order.
fn login_results(evs: &[Value]) -> Vec<(String, String, String)> {
    of(evs, "C_Login")
        .iter()
        .map(|e| {
            (
                e["user"].as_str().unwrap_or("").to_string(),
                e["result"].as_str().unwrap_or("").to_string(),
                e["detail"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

// ---------------------------------------------------------------------------
// 1. what each call records
// ---------------------------------------------------------------------------

/// Every recorded call through the .so appears with its function, result,
/// login state, session handle, object (handle, label, id, class, key type)
/// and mechanism: C_InitToken, C_Login (ok, wrong PIN, lockout, locked),
/// C_InitPIN, C_SetPIN, creation by C_CreateObject / C_GenerateKey /
/// C_GenerateKeyPair (a line per key) / C_CopyObject / C_UnwrapKey /
/// C_DeriveKey, C_SetAttributeValue, C_WrapKey, C_DestroyObject, policy
/// refusals (sensitive read, refused template, key used against its flags);
/// token changes are on disk when the call returns, in call order; key use
/// appears only as summaries (per key, function, mechanism and login state)
/// whose counts equal the calls, written at C_Finalize.
#[test]
fn each_call_is_recorded_with_its_session_user_object_and_result() {
    let env = TestEnv::with_config("max_login_failures = 3\n[audit]\nflush_seconds = 60\n");
    let p = load();
    let slot = spare_slot(&p);
    p.init_token(slot, &pin(SO_PIN), "audited")
        .expect("C_InitToken");
    let dir = audit_dir(&env.data_dir(), slot);

    let so = p.open_rw_session(slot).expect("C_OpenSession");
    so.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    so.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    let so_handle = so.handle();
    so.close().expect("C_CloseSession");

    let s = p.open_rw_session(slot).expect("C_OpenSession");
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin(BAD_PIN)))),
        RvError::PinIncorrect
    );
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    s.set_pin(&pin(USER_PIN), &pin(NEW_PIN)).expect("C_SetPIN");

    let imported_value: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0xa5).collect();
    let mut t = aes_import("imported", &[0x01, 0x02], &imported_value);
    t.extend([
        Attribute::Wrap(true),
        Attribute::Unwrap(true),
        Attribute::Sign(false),
    ]);
    let imported = s.create_object(&t).expect("C_CreateObject");
    // Refused by the hsm policy (a secret key must be sensitive).
    let mut refused = aes_import("refused", &[0x09], &imported_value);
    refused.push(Attribute::Sensitive(false));
    assert_eq!(
        rv(s.create_object(&refused)),
        RvError::AttributeValueInvalid
    );
    let generated = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Label(b"generated".to_vec()),
                Attribute::Id(vec![0x03]),
                Attribute::Extractable(true),
                Attribute::Derive(true),
                Attribute::Encrypt(true),
            ],
        )
        .expect("C_GenerateKey");
    let (pub_key, priv_key) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Label(b"pair".to_vec()),
                Attribute::Id(vec![0x04]),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sign(true),
                Attribute::Label(b"pair".to_vec()),
                Attribute::Id(vec![0x04]),
            ],
        )
        .expect("C_GenerateKeyPair");
    let copied = s
        .copy_object(imported, &[Attribute::Label(b"copied".to_vec())])
        .expect("C_CopyObject");
    s.update_attributes(copied, &[Attribute::Label(b"relabelled".to_vec())])
        .expect("C_SetAttributeValue");
    // On an hsm token only a key generated here, never extractable and unable
    // to decrypt, may wrap (the imported key is refused: hardening.rs).
    let wrapper = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(32.into()),
                Attribute::Token(true),
                Attribute::Label(b"wrapper".to_vec()),
                Attribute::Id(vec![0x07]),
                Attribute::Extractable(false),
                Attribute::Wrap(true),
                Attribute::Unwrap(true),
                Attribute::Decrypt(false),
            ],
        )
        .expect("C_GenerateKey wrapper");
    let wrapped = s
        .wrap_key(&Mechanism::AesKeyWrap, wrapper, generated)
        .expect("C_WrapKey");
    let unwrapped = s
        .unwrap_key(
            &Mechanism::AesKeyWrap,
            wrapper,
            &wrapped,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::Token(true),
                Attribute::Label(b"unwrapped".to_vec()),
                Attribute::Id(vec![0x05]),
                Attribute::Encrypt(true),
            ],
        )
        .expect("C_UnwrapKey");
    let data = [0x11u8; 16];
    let derived = s
        .derive_key(
            &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([0x22; 16], &data)),
            generated,
            &[
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(16.into()),
                Attribute::Token(true),
                Attribute::Label(b"derived".to_vec()),
                Attribute::Id(vec![0x06]),
                Attribute::Encrypt(true),
            ],
        )
        .expect("C_DeriveKey");
    let read = s
        .get_attributes(imported, &[AttributeType::Value])
        .expect("C_GetAttributeValue");
    assert!(
        !read.iter().any(|a| matches!(a, Attribute::Value(_))),
        "a sensitive key's value was returned"
    );
    const ENCRYPTS: usize = 5;
    let mut ct = Vec::new();
    for _ in 0..ENCRYPTS {
        ct = ecb(&s, imported);
    }
    s.decrypt(&Mechanism::AesEcb, imported, &ct)
        .expect("C_Decrypt");

    // Token changes are on disk before the call returns; key use is counted
    // in memory (the flush interval is 60 s) and not written yet.
    let early = events(&dir);
    one_about(&early, "C_CreateObject", "imported");
    one_about(&early, "C_DeriveKey", "derived");
    assert!(
        of(&early, "C_EncryptInit").is_empty(),
        "key use written before a flush: {:#?}",
        of(&early, "C_EncryptInit")
    );

    s.destroy_object(copied).expect("C_DestroyObject");
    let ephemeral = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::ValueLen(16.into()),
                Attribute::Token(false),
                Attribute::Label(b"ephemeral".to_vec()),
            ],
        )
        .expect("C_GenerateKey session key");
    s.destroy_object(ephemeral)
        .expect("C_DestroyObject session key");

    // A key used against its usage flags: refused, and recorded.
    assert_eq!(
        rv(s.sign(&Mechanism::AesCMac, imported, b"m")),
        RvError::KeyFunctionNotPermitted
    );
    // Signing as the user; verifying as the user, then logged out: one
    // summary per login state.
    let sig = s
        .sign(&Mechanism::Ecdsa, priv_key, &[0x33; 32])
        .expect("C_Sign");
    s.verify(&Mechanism::Ecdsa, pub_key, &[0x33; 32], &sig)
        .expect("C_Verify");
    s.logout().expect("C_Logout");
    for _ in 0..2 {
        s.verify(&Mechanism::Ecdsa, pub_key, &[0x33; 32], &sig)
            .expect("C_Verify in a public session");
    }

    // Lockout: three wrong PINs lock the user PIN; the right one is then refused.
    for _ in 0..3 {
        assert_eq!(
            rv(s.login(UserType::User, Some(&pin(BAD_PIN)))),
            RvError::PinIncorrect
        );
    }
    assert_eq!(
        rv(s.login(UserType::User, Some(&pin(NEW_PIN)))),
        RvError::PinLocked
    );
    let h = s.handle();
    drop(s);
    p.finalize().expect("C_Finalize");
    let evs = events(&dir);
    let print = || {
        evs.iter()
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join("\n")
    };

    // C_InitToken: no session, the SO, the label.
    let e = &evs[0];
    assert_eq!(e["function"], "C_InitToken", "first event\n{}", print());
    assert_eq!(e["result"], "CKR_OK");
    assert_eq!(e["user"], "so");
    assert!(
        e.get("session").is_none(),
        "C_InitToken has no session: {e}"
    );
    assert!(
        e["detail"].as_str().unwrap_or("").contains("audited"),
        "{e}"
    );

    // Logins, in order: SO ok, user wrong, user ok, then the lockout.
    let logins = login_results(&evs);
    let want: [(&str, &str, &[&str]); 7] = [
        ("so", "CKR_OK", &[]),
        ("user", "CKR_PIN_INCORRECT", &["1 consecutive failure"]),
        ("user", "CKR_OK", &[]),
        ("user", "CKR_PIN_INCORRECT", &["1 consecutive failure"]),
        ("user", "CKR_PIN_INCORRECT", &["2 consecutive failure"]),
        (
            "user",
            "CKR_PIN_INCORRECT",
            &["3 consecutive failure", "lockout"],
        ),
        ("user", "CKR_PIN_LOCKED", &[]),
    ];
    assert_eq!(logins.len(), want.len(), "C_Login events: {logins:#?}");
    for ((who, result, detail), (w_who, w_result, w_detail)) in logins.iter().zip(want) {
        assert_eq!(
            (who.as_str(), result.as_str()),
            (w_who, w_result),
            "{logins:#?}"
        );
        for d in w_detail {
            assert!(
                detail.contains(d),
                "detail {detail:?} lacks {d:?}: {logins:#?}"
            );
        }
    }
    let login_events = of(&evs, "C_Login");
    assert_eq!(login_events[0]["session"], so_handle);
    for e in &login_events[1..] {
        assert_eq!(e["session"], h, "{e}");
    }

    let init_pin = of(&evs, "C_InitPIN");
    assert_eq!(init_pin.len(), 1, "{}", print());
    assert_eq!(init_pin[0]["session"], so_handle);
    assert_eq!(init_pin[0]["user"], "so");
    assert_eq!(init_pin[0]["result"], "CKR_OK");
    let set_pin = of(&evs, "C_SetPIN");
    assert_eq!(set_pin.len(), 1, "{}", print());
    assert_eq!(set_pin[0]["session"], h);
    assert_eq!(set_pin[0]["user"], "user");
    assert_eq!(set_pin[0]["result"], "CKR_OK");

    // Objects created, by each function.
    let secret = ("CKO_SECRET_KEY", "CKK_AES");
    let e = one_about(&evs, "C_CreateObject", "imported");
    check_call(e, "C_CreateObject", "CKR_OK", h, "user");
    check_object(e, imported, "imported", "0102", secret.0, secret.1);
    assert!(e.get("mechanism").is_none(), "{e}");
    let refusals: Vec<&Value> = of(&evs, "C_CreateObject")
        .into_iter()
        .filter(|e| e["result"] != "CKR_OK")
        .collect();
    assert_eq!(refusals.len(), 1, "{}", print());
    let e = refusals[0];
    check_call(
        e,
        "C_CreateObject",
        "CKR_ATTRIBUTE_VALUE_INVALID",
        h,
        "user",
    );
    assert!(
        e["detail"].as_str().unwrap_or("").contains("CKA_SENSITIVE"),
        "a refused template names its attributes: {e}"
    );
    let e = one_about(&evs, "C_GenerateKey", "generated");
    check_call(e, "C_GenerateKey", "CKR_OK", h, "user");
    check_object(e, generated, "generated", "03", secret.0, secret.1);
    assert_eq!(e["mechanism"], "CKM_AES_KEY_GEN");
    let pair = about(&evs, "C_GenerateKeyPair", "pair");
    assert_eq!(pair.len(), 2, "one line per key of the pair\n{}", print());
    check_call(pair[0], "C_GenerateKeyPair", "CKR_OK", h, "user");
    check_object(pair[0], pub_key, "pair", "04", "CKO_PUBLIC_KEY", "CKK_EC");
    check_call(pair[1], "C_GenerateKeyPair", "CKR_OK", h, "user");
    check_object(pair[1], priv_key, "pair", "04", "CKO_PRIVATE_KEY", "CKK_EC");
    for e in &pair {
        assert_eq!(e["mechanism"], "CKM_EC_KEY_PAIR_GEN", "{e}");
    }
    let e = one_about(&evs, "C_CopyObject", "copied");
    check_call(e, "C_CopyObject", "CKR_OK", h, "user");
    check_object(e, copied, "copied", "0102", secret.0, secret.1);
    // The object as it was when the call began; the detail names what changed.
    let e = one_about(&evs, "C_SetAttributeValue", "copied");
    check_call(e, "C_SetAttributeValue", "CKR_OK", h, "user");
    check_object(e, copied, "copied", "0102", secret.0, secret.1);
    assert!(
        e["detail"].as_str().unwrap_or("").contains("CKA_LABEL"),
        "{e}"
    );
    let wraps = about(&evs, "C_WrapKey", "generated");
    assert!(!wraps.is_empty(), "no C_WrapKey event\n{}", print());
    for e in &wraps {
        check_call(e, "C_WrapKey", "CKR_OK", h, "user");
        check_object(e, generated, "generated", "03", secret.0, secret.1);
        assert_eq!(e["mechanism"], "CKM_AES_KEY_WRAP");
        assert!(
            e["detail"].as_str().unwrap_or("").contains("wrapper"),
            "the detail names the wrapping key: {e}"
        );
    }
    let e = one_about(&evs, "C_UnwrapKey", "unwrapped");
    check_call(e, "C_UnwrapKey", "CKR_OK", h, "user");
    check_object(e, unwrapped, "unwrapped", "05", secret.0, secret.1);
    assert_eq!(e["mechanism"], "CKM_AES_KEY_WRAP");
    let e = one_about(&evs, "C_DeriveKey", "derived");
    check_call(e, "C_DeriveKey", "CKR_OK", h, "user");
    check_object(e, derived, "derived", "06", secret.0, secret.1);
    assert_eq!(e["mechanism"], "CKM_AES_CBC_ENCRYPT_DATA");

    // Refused read of a sensitive value.
    let e = one_about(&evs, "C_GetAttributeValue", "imported");
    check_call(
        e,
        "C_GetAttributeValue",
        "CKR_ATTRIBUTE_SENSITIVE",
        h,
        "user",
    );
    check_object(e, imported, "imported", "0102", secret.0, secret.1);
    assert!(
        e["detail"].as_str().unwrap_or("").contains("CKA_VALUE"),
        "{e}"
    );

    // Destroyed: the token key is scheduled (hsm token), the session key is gone.
    let e = one_about(&evs, "C_DestroyObject", "relabelled");
    check_call(e, "C_DestroyObject", "CKR_OK", h, "user");
    check_object(e, copied, "relabelled", "0102", secret.0, secret.1);
    assert!(
        e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("deletion scheduled"),
        "{e}"
    );
    let e = one_about(&evs, "C_GenerateKey", "ephemeral");
    assert!(
        e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("session object"),
        "{e}"
    );
    let e = one_about(&evs, "C_DestroyObject", "ephemeral");
    check_call(e, "C_DestroyObject", "CKR_OK", h, "user");

    // Key use: one summary per key, function and mechanism, with the count.
    let enc = about(&evs, "C_EncryptInit", "imported");
    assert_eq!(enc.len(), 1, "one summary line\n{}", print());
    let e = enc[0];
    assert_eq!(e["count"], ENCRYPTS, "{e}");
    assert_eq!(e["mechanism"], "CKM_AES_ECB");
    assert_eq!(e["user"], "user");
    assert_eq!(e["result"], "CKR_OK");
    assert_eq!(e["object"]["handle"], imported.handle());
    assert_eq!(e["object"]["id"], "0102");
    let (first, last) = (
        e["first"].as_str().unwrap_or(""),
        e["last"].as_str().unwrap_or(""),
    );
    assert!(is_time(first) && is_time(last) && first <= last, "{e}");
    let dec = about(&evs, "C_DecryptInit", "imported");
    assert_eq!(dec.len(), 1, "{}", print());
    assert_eq!(dec[0]["count"], 1);
    let wrap_use = about(&evs, "C_WrapKey", "wrapper");
    assert_eq!(wrap_use.len(), 1, "wrapping key use\n{}", print());
    assert_eq!(
        wrap_use[0]["count"],
        wraps.len(),
        "one wrapping-key use per C_WrapKey call"
    );
    let e = one_about(&evs, "C_SignInit", "imported");
    check_call(e, "C_SignInit", "CKR_KEY_FUNCTION_NOT_PERMITTED", h, "user");
    check_object(e, imported, "imported", "0102", secret.0, secret.1);
    assert_eq!(e["mechanism"], "CKM_AES_CMAC", "{e}");
    assert!(
        e["detail"]
            .as_str()
            .unwrap_or("")
            .contains("policy refusal"),
        "{e}"
    );
    let sign_use = about(&evs, "C_SignInit", "pair");
    assert_eq!(sign_use.len(), 1, "{sign_use:#?}");
    assert_eq!(sign_use[0]["count"], 1);
    assert_eq!(sign_use[0]["mechanism"], "CKM_ECDSA");
    assert_eq!(sign_use[0]["object"]["class"], "CKO_PRIVATE_KEY");
    let mut verify_use: Vec<(String, u64)> = about(&evs, "C_VerifyInit", "pair")
        .iter()
        .map(|e| {
            assert_eq!(e["object"]["handle"], pub_key.handle(), "{e}");
            (
                e["user"].as_str().unwrap().to_string(),
                e["count"].as_u64().unwrap(),
            )
        })
        .collect();
    verify_use.sort();
    assert_eq!(
        verify_use,
        [("public".to_string(), 2), ("user".to_string(), 1)],
        "one summary per login state"
    );
    let derive_use = about(&evs, "C_DeriveKey", "generated");
    assert_eq!(derive_use.len(), 1, "base key use\n{}", print());
    assert_eq!(derive_use[0]["count"], 1);
    assert_eq!(derive_use[0]["mechanism"], "CKM_AES_CBC_ENCRYPT_DATA");

    // Token changes are in call order.
    let order = [
        "C_InitToken",
        "C_InitPIN",
        "C_SetPIN",
        "C_CreateObject",
        "C_GenerateKey",
        "C_GenerateKeyPair",
        "C_CopyObject",
        "C_SetAttributeValue",
        "C_WrapKey",
        "C_UnwrapKey",
        "C_DeriveKey",
        "C_DestroyObject",
    ];
    let pos = |f: &str| {
        evs.iter()
            .position(|e| e["function"] == f && e["result"] == "CKR_OK")
            .unwrap_or_else(|| panic!("no {f}\n{}", print()))
    };
    for w in order.windows(2) {
        assert!(
            pos(w[0]) < pos(w[1]),
            "{} after {}\n{}",
            w[0],
            w[1],
            print()
        );
    }
}

/// With `key_use = "per-call"` each C_EncryptInit / C_DecryptInit is its own
/// line (session, mechanism, key; no count), on disk before the call returns,
/// and C_Finalize adds no summary.
#[test]
fn per_call_key_use_writes_one_line_per_call() {
    let env = TestEnv::with_config("[audit]\nkey_use = \"per-call\"\nflush_seconds = 60\n");
    init(&env, "percall", false);
    let p = load();
    let slot = slot_of(&p, "percall");
    let dir = audit_dir(&env.data_dir(), slot);
    let s = user(&p, "percall", USER_PIN);
    let key = s
        .create_object(&aes_import("k", &[0x0c], &[0x3c; 16]))
        .expect("C_CreateObject");
    const ENCRYPTS: usize = 7;
    let mut ct = Vec::new();
    for _ in 0..ENCRYPTS {
        ct = ecb(&s, key);
    }
    for _ in 0..2 {
        s.decrypt(&Mechanism::AesEcb, key, &ct).expect("C_Decrypt");
    }
    let h = s.handle();
    let check = |evs: &[Value]| {
        let enc = about(evs, "C_EncryptInit", "k");
        assert_eq!(enc.len(), ENCRYPTS, "one line per C_EncryptInit: {enc:#?}");
        for e in &enc {
            check_call(e, "C_EncryptInit", "CKR_OK", h, "user");
            check_object(e, key, "k", "0c", "CKO_SECRET_KEY", "CKK_AES");
            assert_eq!(e["mechanism"], "CKM_AES_ECB", "{e}");
            assert!(
                e.get("count").is_none(),
                "a per-call line has no count: {e}"
            );
        }
        let dec = about(evs, "C_DecryptInit", "k");
        assert_eq!(dec.len(), 2, "{dec:#?}");
        assert!(
            evs.iter()
                .all(|e| e["detail"] != "key use summary" && e.get("count").is_none()),
            "no summaries in per-call mode"
        );
    };
    // Durable at once: no flush has run (60 s interval), the module is loaded.
    check(&events(&dir));
    drop(s);
    p.finalize().expect("C_Finalize");
    check(&events(&dir));
}

/// Summaries are written every `flush_seconds` while the module stays
/// loaded: each flush writes the calls counted since the previous one.
#[test]
fn summaries_are_flushed_every_interval() {
    let env = TestEnv::with_config("[audit]\nflush_seconds = 1\n");
    init(&env, "flushing", false);
    let p = load();
    let dir = audit_dir(&env.data_dir(), slot_of(&p, "flushing"));
    let s = user(&p, "flushing", USER_PIN);
    let key = s
        .create_object(&aes_import("k", &[0x0f], &[0x0f; 16]))
        .expect("C_CreateObject");
    let counts = || -> Vec<u64> {
        about(&events(&dir), "C_EncryptInit", "k")
            .iter()
            .map(|e| e["count"].as_u64().expect("count"))
            .collect()
    };
    // Waits (up to 5 s) until summaries worth `total` calls are on disk.
    let wait_for = |total: u64| -> Vec<u64> {
        let start = Instant::now();
        loop {
            let got = counts();
            if got.iter().sum::<u64>() == total {
                return got;
            }
            assert!(
                start.elapsed() < Duration::from_secs(5),
                "summaries {got:?}, want {total} calls within a 1 s flush interval"
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    };
    for _ in 0..3 {
        ecb(&s, key);
    }
    let first = wait_for(3);
    for _ in 0..2 {
        ecb(&s, key);
    }
    let second = wait_for(5);
    assert!(
        second.len() > first.len() && second.starts_with(&first),
        "a later flush adds lines for the new calls: {first:?} then {second:?}"
    );
    drop(s);
    p.finalize().expect("C_Finalize");
    assert_eq!(counts(), second, "nothing left to write at C_Finalize");
}

// ---------------------------------------------------------------------------
// 2. no secret in the audit files
// ---------------------------------------------------------------------------

/// Every file under `dir` (recursively) with its bytes.
fn all_files(dir: &Path) -> Vec<(PathBuf, Vec<u8>)> {
    let mut out = Vec::new();
    for e in std::fs::read_dir(dir).expect("read_dir").flatten() {
        let path = e.path();
        if path.is_dir() {
            out.extend(all_files(&path));
        } else {
            let bytes = std::fs::read(&path).expect("read file");
            out.push((path, bytes));
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    !needle.is_empty() && hay.windows(needle.len()).any(|w| w == needle)
}

/// `(what, bytes)` for a secret: the bytes themselves and their lower- and
/// upper-case hex.
fn forms(what: &str, secret: &[u8]) -> Vec<(String, Vec<u8>)> {
    let hex = to_hex(secret);
    vec![
        (format!("{what} (raw)"), secret.to_vec()),
        (format!("{what} (hex)"), hex.clone().into_bytes()),
        (format!("{what} (HEX)"), hex.to_uppercase().into_bytes()),
    ]
}

/// The value of `key` (it must be readable: a `spec` token key made
/// non-sensitive and extractable).
#[track_caller]
fn value_of(s: &Session, key: ObjectHandle) -> Vec<u8> {
    match s
        .get_attributes(key, &[AttributeType::Value])
        .expect("C_GetAttributeValue")
        .as_slice()
    {
        [Attribute::Value(v)] if !v.is_empty() => v.clone(),
        other => panic!("CKA_VALUE not readable: {other:?}"),
    }
}

/// No key byte and no PIN appears in any file of the audit directories
/// (current, rotated, state, lock) nor in the module's debug log, raw or as
/// hex: keys imported on an `hsm` and a `spec` token, keys generated, derived
/// and read back on the `spec` token, every PIN set, used or mistyped.
#[test]
fn no_key_byte_or_pin_reaches_the_audit_files_or_the_module_log() {
    let env = TestEnv::with_config(
        "[audit]\nkey_use = \"per-call\"\nmax_file_bytes = 65536\nflush_seconds = 1\n",
    );
    init(&env, "hsm-tok", false);
    init(&env, "spec-tok", true);
    let mut rng = ferrohsm_tests::Rng::seeded("secret key values");
    let mut secrets: Vec<(String, Vec<u8>)> = Vec::new();
    for (what, p) in [
        ("SO PIN", SO_PIN),
        ("user PIN", USER_PIN),
        ("new user PIN", NEW_PIN),
        ("new SO PIN", NEW_SO_PIN),
        ("mistyped PIN", BAD_PIN),
    ] {
        secrets.extend(forms(what, p.as_bytes()));
    }
    let p = load();
    let mut dirs = Vec::new();
    for label in ["hsm-tok", "spec-tok"] {
        let slot = slot_of(&p, label);
        dirs.push(audit_dir(&env.data_dir(), slot));
        let s = p.open_rw_session(slot).expect("C_OpenSession");
        assert_eq!(
            rv(s.login(UserType::User, Some(&pin(BAD_PIN)))),
            RvError::PinIncorrect
        );
        s.login(UserType::User, Some(&pin(USER_PIN)))
            .expect("C_Login");
        s.set_pin(&pin(USER_PIN), &pin(NEW_PIN)).expect("C_SetPIN");
        // Imported keys: AES of each size, a generic secret, a session key.
        let mut keys = Vec::new();
        for (i, len) in [16usize, 24, 32].into_iter().enumerate() {
            let v = rng.bytes(len);
            secrets.extend(forms(&format!("{label} AES-{} key", len * 8), &v));
            let k = s
                .create_object(&aes_import(&format!("aes-{i}"), &[i as u8], &v))
                .expect("C_CreateObject AES");
            keys.push(k);
        }
        let g = rng.bytes(40);
        secrets.extend(forms(&format!("{label} generic secret"), &g));
        s.create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Value(g),
            Attribute::Token(true),
            Attribute::Label(b"generic".to_vec()),
        ])
        .expect("C_CreateObject generic secret");
        let v = rng.bytes(32);
        secrets.extend(forms(&format!("{label} session key"), &v));
        let mut t = aes_import("session", &[0x55], &v);
        t[3] = Attribute::Token(false);
        let sk = s.create_object(&t).expect("C_CreateObject session key");
        s.update_attributes(keys[0], &[Attribute::Label(b"renamed".to_vec())])
            .expect("C_SetAttributeValue");
        // Key use, per call: enough lines to rotate the hsm token's log.
        let uses = if label == "hsm-tok" { 260 } else { 20 };
        for i in 0..uses {
            ecb(&s, keys[i % keys.len()]);
        }
        ecb(&s, sk);
        s.destroy_object(sk).expect("C_DestroyObject");
        s.destroy_object(keys[1]).expect("C_DestroyObject");
        if label == "spec-tok" {
            // Generated, derived and unwrapped keys, read back.
            let extractable = |label: &str| {
                vec![
                    Attribute::Token(true),
                    Attribute::Label(label.as_bytes().to_vec()),
                    Attribute::Sensitive(false),
                    Attribute::Extractable(true),
                    Attribute::Encrypt(true),
                    Attribute::Derive(true),
                ]
            };
            let mut t = extractable("gen-aes");
            t.push(Attribute::ValueLen(32.into()));
            let gen_aes = s
                .generate_key(&Mechanism::AesKeyGen, &t)
                .expect("C_GenerateKey AES");
            let mut t = extractable("gen-secret");
            t.retain(|a| !matches!(a, Attribute::Encrypt(_)));
            t.push(Attribute::ValueLen(32.into()));
            let gen_secret = s
                .generate_key(&Mechanism::GenericSecretKeyGen, &t)
                .expect("C_GenerateKey generic secret");
            let (_, ec_priv) = s
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &[
                        Attribute::Token(true),
                        Attribute::EcParams(P256_OID.to_vec()),
                        Attribute::Label(b"gen-ec".to_vec()),
                    ],
                    &[
                        Attribute::Token(true),
                        Attribute::Label(b"gen-ec".to_vec()),
                        Attribute::Sensitive(false),
                        Attribute::Extractable(true),
                        Attribute::Sign(true),
                    ],
                )
                .expect("C_GenerateKeyPair");
            let data = [0x42u8; 32];
            let mut t = extractable("derived");
            t.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::AES),
                Attribute::ValueLen(32.into()),
            ]);
            let derived = s
                .derive_key(
                    &Mechanism::AesCbcEncryptData(AesCbcDeriveParams::new([7; 16], &data)),
                    gen_aes,
                    &t,
                )
                .expect("C_DeriveKey");
            let mut wrap_t = extractable("kek");
            wrap_t.extend([Attribute::Wrap(true), Attribute::Unwrap(true)]);
            wrap_t.push(Attribute::ValueLen(32.into()));
            let kek = s
                .generate_key(&Mechanism::AesKeyGen, &wrap_t)
                .expect("C_GenerateKey KEK");
            let wrapped = s
                .wrap_key(&Mechanism::AesKeyWrap, kek, gen_secret)
                .expect("C_WrapKey");
            let mut t = extractable("unwrapped");
            t.extend([
                Attribute::Class(ObjectClass::SECRET_KEY),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
            ]);
            t.retain(|a| !matches!(a, Attribute::Encrypt(_)));
            let unwrapped = s
                .unwrap_key(&Mechanism::AesKeyWrap, kek, &wrapped, &t)
                .expect("C_UnwrapKey");
            for (what, k) in [
                ("generated AES key", gen_aes),
                ("generated generic secret", gen_secret),
                ("generated EC private key", ec_priv),
                ("derived AES key", derived),
                ("KEK", kek),
                ("unwrapped key", unwrapped),
            ] {
                let v = value_of(&s, k);
                assert!(v.len() >= 16, "{what}: {} bytes", v.len());
                secrets.extend(forms(what, &v));
            }
            for i in 0..10 {
                ecb(&s, if i % 2 == 0 { gen_aes } else { derived });
            }
            s.destroy_object(gen_aes).expect("C_DestroyObject");
        }
        s.logout().expect("C_Logout");
        // The SO: a mistyped PIN, then a PIN change.
        assert_eq!(
            rv(s.login(UserType::So, Some(&pin(BAD_PIN)))),
            RvError::PinIncorrect
        );
        s.login(UserType::So, Some(&pin(SO_PIN)))
            .expect("C_Login SO");
        s.set_pin(&pin(SO_PIN), &pin(NEW_SO_PIN))
            .expect("C_SetPIN SO");
    }
    p.finalize().expect("C_Finalize");

    let mut scanned = Vec::new();
    for dir in &dirs {
        let files = all_files(dir);
        // The scan reads what it should: labels (not secret) are there.
        assert!(
            files.iter().any(|(_, b)| contains(b, b"\"renamed\"")),
            "no audit file of {} names the key labels",
            dir.display()
        );
        for (path, bytes) in &files {
            for (what, secret) in &secrets {
                assert!(
                    !contains(bytes, secret),
                    "{what} found in {}",
                    path.display()
                );
            }
            scanned.push(path.clone());
        }
    }
    // The module's own log (debug level here) says no more than the audit log.
    let module_log = std::fs::read(env.log_path()).expect("module log");
    assert!(!module_log.is_empty(), "the module log was written");
    for (what, secret) in &secrets {
        assert!(
            !contains(&module_log, secret),
            "{what} found in the module log"
        );
    }
    let rotated = scanned
        .iter()
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("log.") && n != "log.jsonl"
        })
        .count();
    assert!(rotated >= 1, "no rotated file was scanned: {scanned:#?}");
    for name in ["state", "lock", "log.jsonl"] {
        assert!(
            scanned.iter().filter(|p| p.ends_with(name)).count() == 2,
            "{name} of both tokens scanned: {scanned:#?}"
        );
    }
    println!(
        "{} files scanned for {} secret forms ({rotated} rotated)",
        scanned.len(),
        secrets.len()
    );
}

// ---------------------------------------------------------------------------
// 3. tamper evidence
// ---------------------------------------------------------------------------

/// `ferrohsm audit verify --token <label>` with the user PIN.
fn verify(env: &TestEnv, data: Option<&Path>, label: &str) -> Run {
    cli_in(
        env,
        data,
        &["audit", "verify", "--token", label, "--pin-env", "T_PIN"],
    )
}

/// Asserts that `audit verify` passed, and returns its line count.
#[track_caller]
fn verify_ok(env: &TestEnv, data: Option<&Path>, label: &str) -> u64 {
    let r = verify(env, data, label);
    r.assert_success(env);
    assert!(r.stdout.contains("chain intact"), "{}", r.show());
    let words: Vec<&str> = r.stdout.split_whitespace().collect();
    let at = words
        .iter()
        .position(|w| *w == "lines")
        .unwrap_or_else(|| panic!("no line count\n{}", r.show()));
    words[at - 1].parse().expect("line count")
}

/// Asserts that `audit verify` failed (exit 1, one line) naming `file line
/// N (seq S)` and containing `reason`.
#[track_caller]
fn verify_fails_at(env: &TestEnv, label: &str, line: usize, seq: usize, reason: &str) {
    verify_fails_in(env, label, "log.jsonl", line, seq as u64, reason);
}

/// As `verify_fails_at`, for a line of log file `file`.
#[track_caller]
fn verify_fails_in(env: &TestEnv, label: &str, file: &str, line: usize, seq: u64, reason: &str) {
    let r = verify(env, None, label);
    assert_eq!(r.status.code(), Some(1), "{}", r.show());
    assert_eq!(r.stderr.lines().count(), 1, "{}", r.show());
    let want = format!("fails verification at {file} line {line} (seq {seq}): ");
    assert!(r.stderr.contains(&want), "want {want:?}\n{}", r.show());
    assert!(r.stderr.contains(reason), "want {reason:?}\n{}", r.show());
    assert!(!r.stdout.contains("chain intact"), "{}", r.show());
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for e in std::fs::read_dir(from).expect("read_dir").flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).expect("copy");
    }
}

/// Puts the saved copy `saved` back as the audit directory `dir`.
fn put_back(saved: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).expect("remove audit dir");
    copy_dir(saved, dir);
}

/// `audit verify` passes on an intact log (exit 0, "chain intact"; user or
/// SO PIN) and, on a log with one byte of a middle line changed, a middle
/// line deleted, two lines swapped, the last line deleted or every line
/// deleted, exits 1 naming the first line out of place (the original files
/// are put back between the cases); a removed audit directory is reported
/// and not silently restarted by the module.
#[test]
fn audit_verify_names_the_first_tampered_line() {
    let env = TestEnv::new();
    init(&env, "tamper", false);
    let p = load();
    let slot = slot_of(&p, "tamper");
    let dir = audit_dir(&env.data_dir(), slot);
    let s = user(&p, "tamper", USER_PIN);
    for i in 0..6u8 {
        let k = s
            .create_object(&aes_import(&format!("k{i}"), &[i], &[i; 16]))
            .expect("C_CreateObject");
        ecb(&s, k);
    }
    drop(s);
    p.finalize().expect("C_Finalize");

    let lines = verify_ok(&env, None, "tamper");
    // The SO PIN opens the audit root too (its check adds a line).
    let r = ok(
        &env,
        &[
            "audit",
            "verify",
            "--token",
            "tamper",
            "--so-pin-env",
            "T_SO",
        ],
    );
    assert!(r.stdout.contains("chain intact"), "{}", r.show());
    let lines = lines + 1;
    // Nothing but log.jsonl here, so line numbers are seqs.
    assert_eq!(log_files(&dir).len(), 1);
    let text = std::fs::read_to_string(dir.join("log.jsonl")).unwrap();
    let n = text.lines().count();
    assert_eq!(lines as usize, n, "verify counts every line");
    assert!(n >= 12, "{n} lines:\n{text}");
    let saved = env.dir.path().join("audit-saved");
    copy_dir(&dir, &saved);
    let original: Vec<String> = text.lines().map(str::to_string).collect();
    let write = |lines: &[String]| {
        let mut t = lines.join("\n");
        t.push('\n');
        std::fs::write(dir.join("log.jsonl"), t).expect("write log");
    };
    let k = n / 2; // 1-based number of a middle line

    // One byte of a middle line: the function name C_… becomes D_….
    let mut edited = original.clone();
    let at = edited[k - 1]
        .find("\"function\":\"C_")
        .unwrap_or_else(|| panic!("line {k} has no C_ function: {}", edited[k - 1]))
        + "\"function\":\"".len();
    edited[k - 1].replace_range(at..at + 1, "D");
    write(&edited);
    verify_fails_at(&env, "tamper", k, k, "altered");
    put_back(&saved, &dir);

    // A middle line deleted: the next one is out of place.
    let mut cut = original.clone();
    cut.remove(k - 1);
    write(&cut);
    verify_fails_at(&env, "tamper", k, k + 1, &format!("expected seq {k}"));
    put_back(&saved, &dir);

    // Two lines swapped.
    let mut swapped = original.clone();
    swapped.swap(k - 1, k);
    write(&swapped);
    verify_fails_at(&env, "tamper", k, k + 1, &format!("expected seq {k}"));
    put_back(&saved, &dir);

    // The last line deleted. `audit verify` itself appends a line (its PIN
    // check) from the state file, so that line lands where the deleted one
    // was, with the next seq.
    let mut short = original.clone();
    short.pop();
    write(&short);
    verify_fails_at(&env, "tamper", n, n + 1, &format!("expected seq {n}"));
    put_back(&saved, &dir);

    // The original verifies again (one more line: this verify's own login).
    assert_eq!(verify_ok(&env, None, "tamper"), n as u64 + 1);
    put_back(&saved, &dir);

    // Every line removed, the state kept: the first line is out of place.
    std::fs::write(dir.join("log.jsonl"), b"").unwrap();
    verify_fails_at(&env, "tamper", 1, n + 1, "expected seq 1");
    put_back(&saved, &dir);

    // The whole directory removed: reported, and not silently restarted by
    // the module's next events.
    std::fs::remove_dir_all(&dir).unwrap();
    let p = load();
    let s = user(&p, "tamper", USER_PIN);
    s.create_object(&aes_import("after", &[0xaf], &[0xaf; 16]))
        .expect("C_CreateObject");
    drop(s);
    p.finalize().expect("C_Finalize");
    assert!(!dir.exists(), "the audit log was restarted");
    let r = verify(&env, None, "tamper");
    assert_eq!(r.status.code(), Some(1), "{}", r.show());
    assert!(r.stderr.contains("not started"), "{}", r.show());
    assert!(!dir.exists(), "audit verify restarted the log");
}

// ---------------------------------------------------------------------------
// 4. the deletion waiting period
// ---------------------------------------------------------------------------

/// Asserts that `pending` lists exactly one key, `label` with CKA_ID `id`, an
/// AES secret key, and returns its deletion time.
#[track_caller]
fn pending_one(list: &[Value], label: &str, id: &str) -> String {
    match list {
        [k] => {
            assert_eq!(k["label"], label, "{k}");
            assert_eq!(k["id"], id, "{k}");
            assert_eq!(k["class"], "secret-key", "{k}");
            assert_eq!(k["key_type"], "AES", "{k}");
            let at = k["delete_at"].as_str().expect("delete_at").to_string();
            assert!(is_time(&at), "{k}");
            at
        }
        other => panic!("want one pending key {label:?}, got {other:#?}"),
    }
}

/// On an `hsm` token (deletion_wait_seconds = 2) C_DestroyObject schedules
/// the key: at once unusable, unreadable and unfindable, its label free;
/// `pending` lists it; `cancel-deletion` restores it and it encrypts as
/// before; destroyed again, it is purged once the period is over, at the next
/// user login of a new module instance (a "purge" event by this process) or
/// by `ferrohsm pending` (a "purge" event by the tool). An EC key pair
/// waits as one unit (its public key too); a session key and a `spec`
/// token's key are deleted at once. `audit show --key` / `--since` filter the events.
#[test]
fn destroyed_keys_wait_then_are_purged_or_restored() {
    let env = TestEnv::with_config("deletion_wait_seconds = 2\n");
    init(&env, "wait", false);
    init(&env, "wait-b", false);
    init(&env, "spec-wait", true);
    let p = load();
    let sa = user(&p, "wait", USER_PIN);
    let value = [0x6du8; 32];
    let doomed = sa
        .create_object(&aes_import("doomed", &[0x0d], &value))
        .expect("C_CreateObject");
    let ct = ecb(&sa, doomed);

    // Destroyed early in a second, so the checks below run well within the
    // 2 s period, which ends on a whole second.
    let second = at_next_second();
    sa.destroy_object(doomed).expect("C_DestroyObject");
    assert_eq!(
        rv(sa.encrypt_init(&Mechanism::AesEcb, doomed)),
        RvError::KeyHandleInvalid,
        "a scheduled key is unusable"
    );
    assert_eq!(
        rv(sa.get_attributes(doomed, &[AttributeType::Label])),
        RvError::ObjectHandleInvalid,
        "a scheduled key is unreadable"
    );
    assert!(find(&sa, &by_label("doomed")).is_empty(), "still findable");
    // The label may be reused at once.
    let other = sa
        .create_object(&aes_import("doomed", &[0x0e], &[0x0e; 32]))
        .expect("C_CreateObject with the label of a scheduled key");
    assert_eq!(find(&sa, &by_label("doomed")), vec![other]);
    assert_ne!(ecb(&sa, other), ct);

    let at = pending_one(&pending(&env, None, "wait"), "doomed", "0d");
    assert_eq!(
        at,
        rfc3339_ms((second + 2) * 1000),
        "deleted deletion_wait_seconds after the destroy"
    );

    let r = ok(
        &env,
        &[
            "cancel-deletion",
            "--token",
            "wait",
            "--label",
            "doomed",
            "--pin-env",
            "T_PIN",
        ],
    );
    assert!(r.stdout.contains("restored"), "{}", r.show());
    assert!(pending(&env, None, "wait").is_empty(), "still pending");
    // Back in this process at the next C_FindObjectsInit, with its value.
    let mut restored = by_label("doomed");
    restored.push(Attribute::Id(vec![0x0d]));
    let back = match find(&sa, &restored).as_slice() {
        [h] => *h,
        other => panic!("restored key found {} times", other.len()),
    };
    assert_eq!(find(&sa, &by_label("doomed")).len(), 2);
    assert_eq!(ecb(&sa, back), ct, "the restored key encrypts as before");

    // Spec token and session keys: deleted at once, never pending.
    let sc = user(&p, "spec-wait", USER_PIN);
    let spec_key = sc
        .create_object(&aes_import("at-once", &[0x0a], &[0x0a; 16]))
        .expect("C_CreateObject");
    sc.destroy_object(spec_key).expect("C_DestroyObject");
    assert!(find(&sc, &by_label("at-once")).is_empty());
    assert!(
        pending(&env, None, "spec-wait").is_empty(),
        "spec token key pending"
    );
    let mut t = aes_import("session", &[0x5e], &[0x5e; 16]);
    t[3] = Attribute::Token(false);
    let session_key = sa.create_object(&t).expect("C_CreateObject session key");
    sa.destroy_object(session_key)
        .expect("C_DestroyObject session key");
    assert!(
        pending(&env, None, "wait").is_empty(),
        "session key pending"
    );

    // Destroyed again on "wait"; on "wait-b" an AES key and an EC key pair
    // (both halves wait, the public key destroyed first).
    let sb = user(&p, "wait-b", USER_PIN);
    let b_key = sb
        .create_object(&aes_import("doomed-b", &[0x0b], &[0x0b; 16]))
        .expect("C_CreateObject");
    let (b_pub, b_priv) = sb
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Label(b"pair-b".to_vec()),
                Attribute::Id(vec![0xb2]),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label(b"pair-b".to_vec()),
                Attribute::Id(vec![0xb2]),
                Attribute::Sign(true),
            ],
        )
        .expect("C_GenerateKeyPair");
    let second = at_next_second();
    sa.destroy_object(back).expect("C_DestroyObject");
    sb.destroy_object(b_key).expect("C_DestroyObject");
    sb.destroy_object(b_pub)
        .expect("C_DestroyObject public key");
    sb.destroy_object(b_priv)
        .expect("C_DestroyObject private key");
    assert!(find(&sb, &by_label("pair-b")).is_empty());
    pending_one(&pending(&env, None, "wait"), "doomed", "0d");
    let list = pending(&env, None, "wait-b");
    assert_eq!(list.len(), 3, "the AES key and both EC halves: {list:#?}");
    let aes: Vec<Value> = list
        .iter()
        .filter(|k| k["label"] == "doomed-b")
        .cloned()
        .collect();
    pending_one(&aes, "doomed-b", "0b");
    for class in ["private-key", "public-key"] {
        let ec = list
            .iter()
            .find(|k| k["label"] == "pair-b" && k["class"] == class)
            .unwrap_or_else(|| panic!("EC {class} not pending: {list:#?}"));
        assert_eq!(ec["id"], "b2", "{ec}");
        assert_eq!(ec["key_type"], "EC", "{ec}");
    }

    // Past the period.
    sleep_past(second + 2);
    drop((sa, sb, sc));
    p.finalize().expect("C_Finalize");

    // A new module instance: the user login on "wait" purges "doomed" (0d).
    let p = load();
    let sa = user(&p, "wait", USER_PIN);
    assert_eq!(
        find(&sa, &by_label("doomed")),
        find(&sa, &[Attribute::Id(vec![0x0e])]),
        "only the other key labelled doomed is left"
    );
    assert_eq!(find(&sa, &by_label("doomed")).len(), 1);
    let wait_dir = audit_dir(&env.data_dir(), slot_of(&p, "wait"));
    let b_dir = audit_dir(&env.data_dir(), slot_of(&p, "wait-b"));
    let spec_dir = audit_dir(&env.data_dir(), slot_of(&p, "spec-wait"));
    drop(sa);
    p.finalize().expect("C_Finalize");
    let evs = events(&wait_dir);
    let purge = purge_of(&evs, "doomed", "0d");
    assert_eq!(purge["result"], "CKR_OK", "{purge}");
    assert_eq!(
        purge["pid"],
        std::process::id(),
        "purged when this process opened the token: {purge}"
    );
    assert!(pending(&env, None, "wait").is_empty());
    let cancel = one_about(&evs, "ferrohsm cancel-deletion", "doomed");
    assert_eq!(cancel["result"], "CKR_OK", "{cancel}");
    let destroys = about(&evs, "C_DestroyObject", "doomed");
    assert_eq!(destroys.len(), 2, "{destroys:#?}");
    for d in &destroys {
        assert!(
            d["detail"]
                .as_str()
                .unwrap_or("")
                .contains("deletion scheduled"),
            "{d}"
        );
    }

    // `audit show --key` shows this label's events only (both keys labelled
    // doomed); `--since` only those at or after a time.
    let all = events(&wait_dir);
    let shown = json(&ok(
        &env,
        &[
            "audit", "show", "--token", "wait", "--key", "doomed", "--json",
        ],
    ));
    let shown = shown.as_array().expect("an array");
    // Its events, and the purge, which names the key by unique id only.
    let uids: Vec<&Value> = all
        .iter()
        .filter(|e| e["object"]["label"] == "doomed")
        .map(|e| &e["object"]["unique_id"])
        .collect();
    let want: Vec<&Value> = all
        .iter()
        .filter(|e| {
            e["object"]["label"] == "doomed"
                || (e["object"]["label"].is_null() && uids.contains(&&e["object"]["unique_id"]))
        })
        .collect();
    assert_eq!(shown.len(), want.len(), "{shown:#?}");
    for (a, b) in shown.iter().zip(&want) {
        assert_eq!(a["seq"], b["seq"], "{a}");
    }
    for f in [
        "C_CreateObject",
        "C_DestroyObject",
        "ferrohsm cancel-deletion",
        "purge",
    ] {
        assert!(
            shown.iter().any(|e| e["function"] == f),
            "no {f}: {shown:#?}"
        );
    }
    let since = purge["time"].as_str().unwrap();
    let shown = json(&ok(
        &env,
        &[
            "audit", "show", "--token", "wait", "--since", since, "--json",
        ],
    ));
    let shown = shown.as_array().expect("an array");
    let want: Vec<&Value> = all
        .iter()
        .filter(|e| e["last"].as_str().or(e["time"].as_str()).unwrap() >= since)
        .collect();
    assert!(shown.iter().any(|e| e["function"] == "purge"), "{shown:#?}");
    assert!(shown.len() < all.len(), "--since {since} showed everything");
    assert_eq!(
        shown.iter().map(|e| &e["seq"]).collect::<Vec<_>>(),
        want.iter().map(|e| &e["seq"]).collect::<Vec<_>>()
    );

    // "wait-b" was never logged into: opening the token (this process's
    // C_Initialize) purged its keys all the same, without the storage key.
    let evs = events(&b_dir);
    let mut purged = vec![purge_of(&evs, "doomed-b", "0b")];
    let pair_purges = purges_of(&evs, "pair-b", "b2");
    assert_eq!(
        pair_purges.len(),
        2,
        "both halves of the pair: {pair_purges:#?}"
    );
    purged.extend(pair_purges);
    for purge in purged {
        assert_eq!(purge["result"], "CKR_OK", "{purge}");
        assert_eq!(
            purge["pid"],
            std::process::id(),
            "purged at C_Initialize: {purge}"
        );
    }
    assert!(pending(&env, None, "wait-b").is_empty(), "not purged");
    let pair: Vec<&Value> = about(&evs, "C_DestroyObject", "pair-b");
    assert_eq!(pair.len(), 2, "{pair:#?}");
    assert_eq!(pair[0]["object"]["class"], "CKO_PUBLIC_KEY");
    assert_eq!(pair[1]["object"]["class"], "CKO_PRIVATE_KEY");
    for d in pair {
        assert!(
            d["detail"]
                .as_str()
                .unwrap_or("")
                .contains("deletion scheduled"),
            "the pair waits as one unit: {d}"
        );
    }

    // The spec token deleted its key at once and has nothing to purge.
    let evs = events(&spec_dir);
    let d = one_about(&evs, "C_DestroyObject", "at-once");
    assert_eq!(d["detail"], "deleted", "{d}");
    assert!(of(&evs, "purge").is_empty());
}

/// The wall clock as a duration since the Unix epoch.
fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .expect("clock after 1970")
}

/// Sleeps to just after the next whole second of the wall clock; returns it
/// (Unix seconds).
fn at_next_second() -> u64 {
    let now = unix_now();
    let next = now.as_secs() + 1;
    std::thread::sleep(Duration::from_secs(next) + Duration::from_millis(10) - now);
    next
}

/// Sleeps until the wall clock is past Unix second `secs`.
fn sleep_past(secs: u64) {
    let until = Duration::from_secs(secs) + Duration::from_millis(50);
    std::thread::sleep(until.saturating_sub(unix_now()));
}

/// Unix time `ms` (milliseconds) as the audit log and `pending` write times:
/// RFC 3339 UTC with milliseconds.
fn rfc3339_ms(ms: u64) -> String {
    ferrohsm_store::audit::rfc3339(std::time::UNIX_EPOCH + Duration::from_millis(ms))
}

// ---------------------------------------------------------------------------
// 5. backup and restore
// ---------------------------------------------------------------------------

/// `backup` → `restore` into a fresh data directory carries the audit log
/// (every original line, byte for byte, then a "ferrohsm restore" event; the
/// restored chain verifies) and the pending deletion (`pending` lists the
/// key with its original deletion time; it stays unfindable while the kept
/// key encrypts as before).
#[test]
fn backup_and_restore_carry_the_audit_log_and_pending_deletions() {
    let env = TestEnv::new();
    init(&env, "bk", false);
    let p = load();
    let slot = slot_of(&p, "bk");
    let dir = audit_dir(&env.data_dir(), slot);
    let s = user(&p, "bk", USER_PIN);
    let keep = s
        .create_object(&aes_import("keep", &[0x01], &[0x11; 32]))
        .expect("C_CreateObject");
    let gone = s
        .create_object(&aes_import("gone", &[0x02], &[0x22; 32]))
        .expect("C_CreateObject");
    let ct = ecb(&s, keep);
    ecb(&s, gone);
    s.destroy_object(gone).expect("C_DestroyObject");
    drop(s);
    p.finalize().expect("C_Finalize");
    let at = pending_one(&pending(&env, None, "bk"), "gone", "02");
    verify_ok(&env, None, "bk");

    let bak = env.dir.path().join("bk.backup");
    let b = bak.to_str().unwrap();
    ok(
        &env,
        &[
            "backup",
            "--token",
            "bk",
            "--out",
            b,
            "--so-pin-env",
            "T_SO",
        ],
    );
    // The log as the backup took it (its SO PIN check is the last line).
    let original = std::fs::read(dir.join("log.jsonl")).unwrap();
    let original_events = events(&dir);
    assert_eq!(
        original_events.last().unwrap()["function"],
        "ferrohsm login",
        "the backup's SO PIN check"
    );

    let fresh = env.dir.path().join("fresh-data");
    std::fs::create_dir_all(&fresh).unwrap();
    let f = Some(fresh.as_path());
    ok_in(&env, f, &["restore", b, "--so-pin-env", "T_SO"]);

    let shown = json(&ok_in(
        &env,
        f,
        &["audit", "show", "--token", "bk", "--json"],
    ));
    let shown = shown.as_array().expect("audit show --json: an array");
    assert_eq!(shown.len(), original_events.len() + 1, "{shown:#?}");
    let last = shown.last().unwrap();
    assert_eq!(last["function"], "ferrohsm restore", "{last}");
    assert_eq!(last["result"], "CKR_OK", "{last}");
    assert_eq!(last["seq"], shown.len(), "{last}");
    for (a, b) in shown.iter().zip(&original_events) {
        let mut b = b.clone();
        b.as_object_mut().unwrap().remove("chain");
        assert_eq!(*a, b, "audit show differs from the original log");
    }
    let lines_before = shown.len() as u64;
    // Verify appends its own PIN check, then checks the whole chain.
    assert_eq!(verify_ok(&env, f, "bk"), lines_before + 1);
    let restored_slot_dirs: Vec<PathBuf> = std::fs::read_dir(&fresh)
        .unwrap()
        .flatten()
        .map(|e| e.path().join("audit"))
        .filter(|p| p.is_dir())
        .collect();
    let [restored_dir] = restored_slot_dirs.as_slice() else {
        panic!("want one restored token: {restored_slot_dirs:?}");
    };
    let restored = std::fs::read(restored_dir.join("log.jsonl")).unwrap();
    assert!(
        restored.starts_with(&original),
        "the restored log does not start with the original lines"
    );

    assert_eq!(
        pending_one(&pending(&env, f, "bk"), "gone", "02"),
        at,
        "the same deletion time after the restore"
    );
    // SAFETY: this test runs alone in its process (nextest); the module is
    // finalised and reads the variable at the next C_Initialize.
    unsafe { std::env::set_var("FERROHSM_DIR", &fresh) };
    let p = load();
    let s = user(&p, "bk", USER_PIN);
    assert!(
        find(&s, &by_label("gone")).is_empty(),
        "a pending key is visible"
    );
    let keep = match find(&s, &by_label("keep")).as_slice() {
        [h] => *h,
        other => panic!("keep found {} times", other.len()),
    };
    assert_eq!(ecb(&s, keep), ct, "the kept key encrypts as before");
    drop(s);
    p.finalize().expect("C_Finalize");
    // The restored token's log goes on: the module's login and key use
    // continue the chain.
    let lines = verify_ok(&env, f, "bk");
    let evs = events(restored_dir);
    assert_eq!(lines, evs.len() as u64);
    assert!(lines > lines_before + 1);
    let login = evs
        .iter()
        .rev()
        .find(|e| e["function"] == "C_Login")
        .unwrap();
    assert_eq!(login["pid"], std::process::id(), "{login}");
    assert_eq!(login["result"], "CKR_OK", "{login}");
}

// ---------------------------------------------------------------------------
// 6. rotation by size
// ---------------------------------------------------------------------------

/// With `max_file_bytes = 65536` (the minimum) and one line per key use, the
/// log is split into `log.<first seq>.jsonl` files just over the limit, then
/// `log.jsonl`; seqs run on across files, `audit verify` passes and counts
/// every line of every file, and `audit show` shows them all. A byte changed
/// in a rotated file, or a rotated file removed, is named by `audit verify`;
/// a backup restored elsewhere has the same files and verifies.
#[test]
fn log_rotates_by_size_and_still_verifies() {
    const MAX: u64 = 65_536;
    let env = TestEnv::with_config(&format!(
        "[audit]\nkey_use = \"per-call\"\nmax_file_bytes = {MAX}\n"
    ));
    init(&env, "rot", false);
    let p = load();
    let slot = slot_of(&p, "rot");
    let dir = audit_dir(&env.data_dir(), slot);
    let s = user(&p, "rot", USER_PIN);
    let key = s
        .create_object(&aes_import("k", &[0x01], &[0x01; 16]))
        .expect("C_CreateObject");
    const USES: usize = 700;
    for _ in 0..USES {
        ecb(&s, key); // one C_EncryptInit, one line
    }
    drop(s);
    p.finalize().expect("C_Finalize");

    let files = log_files(&dir);
    assert!(files.len() >= 3, "want 2+ rotated files: {files:?}");
    let evs = events(&dir); // checks seqs run on 1, 2, 3, … across files
    assert!(
        of(&evs, "C_EncryptInit").len() >= USES,
        "{} C_EncryptInit lines",
        of(&evs, "C_EncryptInit").len()
    );
    let longest = evs
        .iter()
        .map(|e| e.to_string().len() as u64 + 1)
        .max()
        .unwrap();
    let mut first_seq = 1u64;
    for f in &files[..files.len() - 1] {
        let name = f.file_name().unwrap().to_string_lossy().into_owned();
        assert_eq!(
            name,
            format!("log.{first_seq:012}.jsonl"),
            "rotated file named after its first seq"
        );
        let text = std::fs::read_to_string(f).unwrap();
        let size = text.len() as u64;
        assert!(
            size > MAX && size <= MAX + 2 * longest,
            "{name}: {size} bytes, limit {MAX}"
        );
        first_seq += text.lines().count() as u64;
    }
    let current = std::fs::read_to_string(files.last().unwrap()).unwrap();
    let first_current: Value = serde_json::from_str(current.lines().next().unwrap()).unwrap();
    assert_eq!(first_current["seq"], first_seq);

    let lines = verify_ok(&env, None, "rot");
    let after = events(&dir);
    assert_eq!(
        lines,
        after.len() as u64,
        "verify counts the lines of all files"
    );
    assert_eq!(lines, evs.len() as u64 + 1, "plus its own PIN check");
    let r = ok(
        &env,
        &[
            "audit",
            "verify",
            "--token",
            "rot",
            "--pin-env",
            "T_PIN",
            "--json",
        ],
    );
    let report = json(&r);
    assert_eq!(report["intact"], true, "{report}");
    assert_eq!(report["files"], log_files(&dir).len(), "{report}");
    let shown = json(&ok(&env, &["audit", "show", "--token", "rot", "--json"]));
    assert_eq!(
        shown.as_array().unwrap().len() as u64,
        lines + 1,
        "audit show reads every file"
    );

    // Tampering inside a rotated file is found there.
    let saved = env.dir.path().join("audit-saved");
    copy_dir(&dir, &saved);
    let files = log_files(&dir);
    let first = files[0].file_name().unwrap().to_string_lossy().into_owned();
    assert_eq!(first, "log.000000000001.jsonl");
    // One digit of the pid of line 3 of the first rotated file.
    let text = std::fs::read_to_string(&files[0]).unwrap();
    let mut lines: Vec<String> = text.lines().map(str::to_string).collect();
    let at = lines[2].find("\"pid\":").expect("pid") + "\"pid\":".len();
    let digit = if lines[2].as_bytes()[at] == b'9' {
        "8"
    } else {
        "9"
    };
    lines[2].replace_range(at..at + 1, digit);
    std::fs::write(&files[0], lines.join("\n") + "\n").unwrap();
    verify_fails_in(&env, "rot", &first, 3, 3, "altered");
    put_back(&saved, &dir);
    // A whole rotated file removed: the next file does not start at seq 1.
    std::fs::remove_file(&files[0]).unwrap();
    let second = files[1].file_name().unwrap().to_string_lossy().into_owned();
    let second_seq: u64 = second[4..16].parse().unwrap();
    verify_fails_in(&env, "rot", &second, 1, second_seq, "expected seq 1");
    put_back(&saved, &dir);
    let lines = verify_ok(&env, None, "rot");

    // A backup carries every file: the restored log verifies, line for line.
    let bak = env.dir.path().join("rot.backup");
    let b = bak.to_str().unwrap();
    ok(
        &env,
        &[
            "backup",
            "--token",
            "rot",
            "--out",
            b,
            "--so-pin-env",
            "T_SO",
        ],
    );
    let fresh = env.dir.path().join("fresh-data");
    std::fs::create_dir_all(&fresh).unwrap();
    let f = Some(fresh.as_path());
    ok_in(&env, f, &["restore", b, "--so-pin-env", "T_SO"]);
    let names = |d: &Path| -> Vec<String> {
        log_files(d)
            .iter()
            .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
            .collect()
    };
    let restored_dir = fresh.join(dir.strip_prefix(env.data_dir()).unwrap());
    assert_eq!(names(&restored_dir), names(&dir), "the same log files");
    for p in &log_files(&dir)[..log_files(&dir).len() - 1] {
        let twin = restored_dir.join(p.file_name().unwrap());
        assert!(
            std::fs::read(p).unwrap() == std::fs::read(&twin).unwrap(),
            "{} differs after the restore",
            twin.display()
        );
    }
    // + the backup's SO PIN check, the restore event, this verify's check.
    assert_eq!(verify_ok(&env, f, "rot"), lines + 3);
}

// ---------------------------------------------------------------------------
// re-initialisation and call order
// ---------------------------------------------------------------------------

/// C_InitToken on an existing token: a wrong SO PIN is recorded in its log;
/// a successful re-initialisation starts a new chain (seq 1, C_InitToken
/// naming the new label) that verifies, and keeps the old log aside with
/// every line.
#[test]
fn reinitialising_a_token_keeps_the_old_log_aside() {
    let env = TestEnv::new();
    let p = load();
    let slot = spare_slot(&p);
    p.init_token(slot, &pin(SO_PIN), "first")
        .expect("C_InitToken");
    let so = p.open_rw_session(slot).expect("C_OpenSession");
    so.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    so.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    so.close().expect("C_CloseSession");
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    s.create_object(&aes_import("old-key", &[0x01], &[0x01; 16]))
        .expect("C_CreateObject");
    s.close().expect("C_CloseSession");
    assert_eq!(
        rv(p.init_token(slot, &pin(BAD_PIN), "second")),
        RvError::PinIncorrect
    );
    p.init_token(slot, &pin(SO_PIN), "second")
        .expect("C_InitToken again");
    let so = p.open_rw_session(slot).expect("C_OpenSession");
    so.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    so.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    drop(so);
    p.finalize().expect("C_Finalize");

    let dir = audit_dir(&env.data_dir(), slot);
    let evs = events(&dir);
    assert_eq!(evs[0]["function"], "C_InitToken", "{:#?}", evs[0]);
    assert_eq!(evs[0]["result"], "CKR_OK");
    assert!(
        evs[0]["detail"].as_str().unwrap_or("").contains("second"),
        "{}",
        evs[0]
    );
    assert!(about(&evs, "C_CreateObject", "old-key").is_empty());
    let token_dir = dir.parent().unwrap();
    let aside: Vec<PathBuf> = std::fs::read_dir(token_dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy();
            n.starts_with("audit.") && n.ends_with(".old")
        })
        .collect();
    let [old] = aside.as_slice() else {
        panic!("want one old audit directory beside the new: {aside:?}");
    };
    let old_evs = events(old);
    assert!(
        old_evs[0]["detail"]
            .as_str()
            .unwrap_or("")
            .contains("first")
    );
    one_about(&old_evs, "C_CreateObject", "old-key");
    let last = old_evs.last().unwrap();
    assert_eq!(last["function"], "C_InitToken", "{last}");
    assert_eq!(last["result"], "CKR_PIN_INCORRECT", "{last}");
    assert_eq!(last["user"], "so", "{last}");
    verify_ok(&env, None, "second");
}

/// In per-call mode too, the log of one process is in call order: a
/// refusal (queued) made before some key uses (each written at once) comes
/// before them, so `seq` order and `time` order agree.
#[test]
fn per_call_lines_stay_in_call_order_with_queued_events() {
    let env = TestEnv::with_config("[audit]\nkey_use = \"per-call\"\n");
    init(&env, "order", false);
    let p = load();
    let dir = audit_dir(&env.data_dir(), slot_of(&p, "order"));
    let s = user(&p, "order", USER_PIN);
    let key = s
        .create_object(&aes_import("k", &[0x01], &[0x01; 16]))
        .expect("C_CreateObject");
    s.get_attributes(key, &[AttributeType::Value])
        .expect("C_GetAttributeValue");
    for _ in 0..3 {
        ecb(&s, key);
    }
    drop(s);
    p.finalize().expect("C_Finalize");
    let evs = events(&dir);
    let seq_of = |f: &str| {
        evs.iter()
            .find(|e| e["function"] == f)
            .unwrap_or_else(|| panic!("no {f}"))["seq"]
            .as_u64()
            .unwrap()
    };
    let listing: Vec<String> = evs
        .iter()
        .map(|e| format!("{} {} {}", e["seq"], e["time"], e["function"]))
        .collect();
    assert!(
        seq_of("C_GetAttributeValue") < seq_of("C_EncryptInit"),
        "the refusal made before the key uses is logged after them:\n{}",
        listing.join("\n")
    );
    for w in evs.windows(2) {
        assert!(
            w[0]["time"].as_str() <= w[1]["time"].as_str(),
            "time goes backwards from seq {} to {}:\n{}",
            w[0]["seq"],
            w[1]["seq"],
            listing.join("\n")
        );
    }
}
