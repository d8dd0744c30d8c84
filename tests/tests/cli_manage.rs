//! Issue 19, "CLI and messages", through the built `ferrohsm` binary and the
//! real `libferrohsm_pkcs11.so`:
//!
//! - `delete` on an `hsm` token says the key is scheduled, until when and
//!   how to cancel; a key pair waits as one unit (also when a client
//!   destroys the halves itself), so `cancel-deletion` brings both back and
//!   `export-public` works again; `pending` names its column for what it is
//!   and uses the class words of `objects`;
//! - tokens named by `--slot`, `--serial` and `pkcs11:` URIs (two tokens may
//!   share a label); `objects` prints each object's URI; `delete-token`
//!   frees the slot (and lets a backup be restored into the same data
//!   directory); `unregister` removes what `register` wrote;
//! - `import` of a key with its certificate chain, or a refusal with the
//!   count; `export-cert`; unsupported key types named; `--out` not
//!   overwritten without `--force`;
//! - `demo --temp` ends with statements that stay true;
//! - the key policy's refusals on a host program's stderr at the default log
//!   level, once per kind; a bad `FERROHSM_LOG` warns instead of failing
//!   `C_Initialize`; log file lines carry a time.
//!
//! The OpenSSL and pkcs11-tool parts skip, saying so, when the tools are
//! missing.

use std::path::Path;
use std::process::Command;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use ferrohsm_tests::child::{Run, child_command, find_in_path, role, run_captured};
use ferrohsm_tests::p11::{pin, ready_token, spare_slot, user};
use ferrohsm_tests::tool::{TIMEOUT, command, init_with, load, module, ok_cmd, run_cmd};
use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN};
use serde_json::Value;

/// DER of the P-256 curve OID (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

fn run(env: &TestEnv, args: &[&str]) -> Run {
    run_cmd(env, command(env, args), args)
}

#[track_caller]
fn ok(env: &TestEnv, args: &[&str]) -> Run {
    ok_cmd(env, command(env, args), args)
}

/// A failed run: exit 1, one line on stderr holding every one of `needles`.
#[track_caller]
fn fails(env: &TestEnv, args: &[&str], needles: &[&str]) -> Run {
    let r = run(env, args);
    assert_eq!(r.status.code(), Some(1), "{}", r.show());
    assert_eq!(r.stderr.lines().count(), 1, "one line\n{}", r.show());
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks {n:?}\n{}", r.show());
    }
    r
}

#[track_caller]
fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", r.show()))
}

fn init(env: &TestEnv, label: &str, more: &[&str]) {
    init_with(env, label, more, |args| command(env, args));
}

/// `objects --json` of the token named by `sel` (e.g. `["--token", "t"]`).
#[track_caller]
fn objects(env: &TestEnv, sel: &[&str]) -> Vec<Value> {
    let args = [&["objects"], sel, &["--pin-env", "T_PIN", "--json"]].concat();
    json(&ok(env, &args)).as_array().expect("array").clone()
}

/// `pending --json` of token `label`.
#[track_caller]
fn pending(env: &TestEnv, label: &str) -> Vec<Value> {
    let r = ok(
        env,
        &["pending", "--token", label, "--pin-env", "T_PIN", "--json"],
    );
    json(&r).as_array().expect("array").clone()
}

/// The (class, label) pairs of a listing, sorted.
fn classes(list: &[Value]) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = list
        .iter()
        .map(|o| {
            (
                o["class"].as_str().unwrap_or("?").to_string(),
                o["label"].as_str().unwrap_or("?").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn have(test: &str, tool: &str) -> bool {
    let found = find_in_path(tool).is_some();
    if !found {
        eprintln!("SKIPPED {test} (part): `{tool}` is not installed");
    }
    found
}

#[track_caller]
fn openssl(env: &TestEnv, args: &[&str]) -> Run {
    let mut c = Command::new("openssl");
    c.args(args).current_dir(env.dir.path());
    let r = run_captured(env, c, b"", TIMEOUT, &format!("openssl {}", args.join(" ")));
    r.assert_success(env);
    r
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

fn find(s: &Session, label: &str) -> Vec<ObjectHandle> {
    s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .expect("C_FindObjects")
}

// ---------------------------------------------------------------------------
// 5. deletion messages and key pairs in the waiting period
// ---------------------------------------------------------------------------

#[test]
fn delete_says_scheduled_and_a_pair_waits_as_one_unit() {
    let env = TestEnv::with_config("deletion_wait_seconds = 3600\n");
    init(&env, "w", &[]);
    init(&env, "s", &["--policy", "spec"]);
    ok(
        &env,
        &[
            "keygen",
            "--token",
            "w",
            "--type",
            "ec-p256",
            "--label",
            "pair",
            "--pin-env",
            "T_PIN",
        ],
    );
    let before = ok(&env, &["export-public", "--token", "w", "--label", "pair"]).stdout;
    let start = std::time::SystemTime::now();
    let r = ok(
        &env,
        &[
            "delete",
            "--token",
            "w",
            "--label",
            "pair",
            "--pin-env",
            "T_PIN",
        ],
    );
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(lines.len(), 3, "{}", r.show());
    assert!(!r.stdout.contains("deleted"), "{}", r.show());
    for (line, class) in lines.iter().zip(["private-key (EC)", "public-key (EC)"]) {
        let prefix = format!("scheduled {class} \"pair\" for deletion on ");
        let date = line
            .strip_prefix(&prefix)
            .unwrap_or_else(|| panic!("{line:?} is not {prefix:?}…"));
        let at = ferrohsm_store::audit::parse_time(date).expect("an RFC 3339 date");
        let wait = at.duration_since(start).expect("in the future");
        assert!(
            (3595..=3605).contains(&wait.as_secs()),
            "due in the waiting period: {line}"
        );
    }
    assert!(
        lines[2].contains("cancel with `ferrohsm cancel-deletion --token w --label pair`"),
        "{}",
        r.show()
    );
    assert!(objects(&env, &["--token", "w"]).is_empty());

    // `pending`: both halves, in the words of `objects`, under a column
    // named for a date in the future.
    let list = pending(&env, "w");
    assert_eq!(
        classes(&list),
        [
            ("private-key".to_string(), "pair".to_string()),
            ("public-key".to_string(), "pair".to_string())
        ]
    );
    assert!(list.iter().all(|k| k["key_type"] == "EC"), "{list:#?}");
    let table = ok(&env, &["pending", "--token", "w", "--pin-env", "T_PIN"]).stdout;
    assert!(table.contains("DELETION DUE"), "{table}");
    assert!(!table.contains("DELETED AT"), "{table}");

    // cancel-deletion brings the whole pair back; export-public works again.
    let r = ok(
        &env,
        &[
            "cancel-deletion",
            "--token",
            "w",
            "--label",
            "pair",
            "--pin-env",
            "T_PIN",
        ],
    );
    assert!(
        r.stdout
            .contains("private-key and public-key \"pair\" restored"),
        "{}",
        r.show()
    );
    assert!(pending(&env, "w").is_empty());
    assert_eq!(
        classes(&objects(&env, &["--token", "w"])),
        [
            ("private-key".to_string(), "pair".to_string()),
            ("public-key".to_string(), "pair".to_string())
        ]
    );
    let after = ok(&env, &["export-public", "--token", "w", "--label", "pair"]).stdout;
    assert_eq!(after, before, "the same public key is back");

    // A spec token deletes at once, and says so.
    ok(
        &env,
        &[
            "keygen",
            "--token",
            "s",
            "--type",
            "aes128",
            "--label",
            "k",
            "--pin-env",
            "T_PIN",
        ],
    );
    let r = ok(
        &env,
        &[
            "delete",
            "--token",
            "s",
            "--label",
            "k",
            "--pin-env",
            "T_PIN",
        ],
    );
    assert_eq!(r.stdout, "deleted secret-key (AES) \"k\"\n", "{}", r.show());
    assert!(pending(&env, "s").is_empty());
}

/// A client destroying the halves itself, public key first (as pkcs11-tool
/// --delete-object does one object at a time): the public key is invisible
/// at once, and comes back with its private key.
#[test]
fn a_client_destroying_both_halves_gets_the_pair_back() {
    let env = TestEnv::with_config("deletion_wait_seconds = 3600\n");
    init(&env, "w", &[]);
    let p = load();
    let s = user(&p, "w", USER_PIN);
    let gen_pair = |label: &str, id: u8| {
        s.generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(vec![id]),
                Attribute::Verify(true),
            ],
            &[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::Id(vec![id]),
                Attribute::Sign(true),
            ],
        )
        .expect("C_GenerateKeyPair")
    };
    let (public, private) = gen_pair("p", 0x01);
    s.destroy_object(public).expect("C_DestroyObject public");
    assert_eq!(
        find(&s, "p"),
        vec![private],
        "the public key is gone at once"
    );
    s.destroy_object(private).expect("C_DestroyObject private");
    assert!(find(&s, "p").is_empty());
    // A private key alone is restored alone; a public key without a private
    // key (imported) is deleted at once.
    let (lone_pub, lone_priv) = gen_pair("lone", 0x02);
    s.destroy_object(lone_priv).expect("C_DestroyObject");
    let r = ok(
        &env,
        &[
            "cancel-deletion",
            "--token",
            "w",
            "--label",
            "lone",
            "--pin-env",
            "T_PIN",
        ],
    );
    assert!(
        r.stdout.contains("private-key \"lone\" restored"),
        "{}",
        r.show()
    );
    let imported_pub = s
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::EcParams(P256_OID.to_vec()),
            Attribute::EcPoint(
                s.get_attributes(lone_pub, &[AttributeType::EcPoint])
                    .expect("CKA_EC_POINT")
                    .into_iter()
                    .find_map(|a| match a {
                        Attribute::EcPoint(p) => Some(p),
                        _ => None,
                    })
                    .expect("EC point"),
            ),
            Attribute::Label(b"bare".to_vec()),
            Attribute::Id(vec![0x03]),
        ])
        .expect("C_CreateObject public key");
    s.destroy_object(imported_pub).expect("C_DestroyObject");
    drop(s);
    p.finalize().expect("C_Finalize");

    let list = pending(&env, "w");
    assert_eq!(
        classes(&list),
        [
            ("private-key".to_string(), "p".to_string()),
            ("public-key".to_string(), "p".to_string())
        ],
        "the pair waits; a public key without its private key does not"
    );
    ok(
        &env,
        &[
            "cancel-deletion",
            "--token",
            "w",
            "--label",
            "p",
            "--pin-env",
            "T_PIN",
        ],
    );
    let objs = objects(&env, &["--token", "w"]);
    let p_objs: Vec<Value> = objs.iter().filter(|o| o["label"] == "p").cloned().collect();
    assert_eq!(p_objs.len(), 2, "{objs:#?}");
    assert!(objs.iter().all(|o| o["label"] != "bare"), "{objs:#?}");
    ok(&env, &["export-public", "--token", "w", "--label", "p"]);
}

// ---------------------------------------------------------------------------
// 6. naming tokens; object URIs; delete-token; unregister
// ---------------------------------------------------------------------------

/// The (slot, serial) of every initialised token labelled `label`.
fn tokens_labelled(env: &TestEnv, label: &str) -> Vec<(u64, String)> {
    let t = json(&ok(env, &["tokens", "--json"]));
    t["slots"]
        .as_array()
        .expect("slots")
        .iter()
        .filter(|s| s["label"] == label)
        .map(|s| {
            (
                s["slot"].as_u64().expect("slot"),
                s["serial"].as_str().expect("serial").to_string(),
            )
        })
        .collect()
}

#[test]
fn tokens_by_slot_serial_and_uri_and_delete_token() {
    let test = "tokens_by_slot_serial_and_uri_and_delete_token";
    let env = TestEnv::new();
    // Two tokens labelled "dup", as C_InitToken allows.
    let p = load();
    ready_token(&p, "dup");
    p.finalize().expect("C_Finalize");
    let p = load();
    ready_token(&p, "dup");
    p.finalize().expect("C_Finalize");
    let dups = tokens_labelled(&env, "dup");
    assert_eq!(dups.len(), 2, "{dups:?}");
    let (slot_a, serial_a) = &dups[0];
    let (slot_b, serial_b) = &dups[1];
    let (slot_a, slot_b) = (slot_a.to_string(), slot_b.to_string());

    let r = fails(
        &env,
        &["objects", "--token", "dup", "--pin-env", "T_PIN"],
        &[
            "several tokens match labelled \"dup\"",
            &format!("slot {slot_a} (serial {serial_a})"),
            "--slot N or --serial S",
        ],
    );
    drop(r);
    fails(
        &env,
        &[
            "backup",
            "--token",
            "dup",
            "--out",
            path_str(&env.dir.path().join("x.bak")),
            "--so-pin-env",
            "T_SO",
        ],
        &["several tokens match"],
    );
    // Each way of naming one token reaches the same one.
    ok(
        &env,
        &[
            "keygen",
            "--slot",
            &slot_a,
            "--type",
            "ec-p256",
            "--label",
            "a-key",
            "--pin-env",
            "T_PIN",
        ],
    );
    ok(
        &env,
        &[
            "keygen",
            "--serial",
            serial_b,
            "--type",
            "aes128",
            "--label",
            "b-key",
            "--pin-env",
            "T_PIN",
        ],
    );
    let uri_a = format!("pkcs11:token=dup;serial={serial_a}");
    let by_uri = classes(&objects(&env, &["--token", &uri_a]));
    assert_eq!(by_uri, classes(&objects(&env, &["--slot", &slot_a])));
    assert_eq!(by_uri.len(), 2, "{by_uri:?}");
    let uri_b = format!("pkcs11:slot-id={slot_b}");
    assert_eq!(
        classes(&objects(&env, &["--token", &uri_b])),
        [("secret-key".to_string(), "b-key".to_string())]
    );
    fails(
        &env,
        &[
            "objects",
            "--token",
            "pkcs11:tokn=dup",
            "--pin-env",
            "T_PIN",
        ],
        &["unknown attribute \"tokn\""],
    );
    let r = run(&env, &["objects", "--slot", &slot_a, "--serial", serial_a]);
    assert_eq!(r.status.code(), Some(2), "one way at a time\n{}", r.show());

    // `objects` prints each object's URI; OpenSSL takes it.
    let objs = objects(&env, &["--slot", &slot_a]);
    let private = objs
        .iter()
        .find(|o| o["class"] == "private-key")
        .expect("private key");
    let id = private["id"].as_str().expect("id");
    let id_pct: String = ferrohsm_tests::from_hex(id)
        .iter()
        .map(|b| format!("%{b:02X}"))
        .collect();
    let uri = private["uri"].as_str().expect("uri");
    assert_eq!(
        uri,
        format!("pkcs11:token=dup;serial={serial_a};id={id_pct};object=a-key;type=private")
    );
    // An object's URI (binary id and all) names its token too.
    assert_eq!(classes(&objects(&env, &["--token", uri])), by_uri);
    let table = ok(&env, &["objects", "--slot", &slot_a, "--pin-env", "T_PIN"]).stdout;
    assert!(table.lines().any(|l| l.trim() == uri), "{table}");
    let engine = Path::new("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so");
    if have(test, "openssl") && engine.exists() {
        let public_uri = objs
            .iter()
            .find(|o| o["class"] == "public-key")
            .and_then(|o| o["uri"].as_str())
            .expect("public key URI");
        let mut c = Command::new("openssl");
        c.args([
            "pkey", "-engine", "pkcs11", "-inform", "engine", "-pubin", "-in",
        ])
        .arg(public_uri)
        .arg("-pubout")
        .envs(env.env_vars())
        .env("PKCS11_MODULE_PATH", module());
        let r = run_captured(&env, c, b"", TIMEOUT, "openssl pkey -engine pkcs11");
        let exported = ok(
            &env,
            &["export-public", "--slot", &slot_a, "--label", "a-key"],
        );
        if r.status.success() {
            assert!(
                r.stdout.contains(exported.stdout.trim()),
                "OpenSSL reads the same public key by URI\n{}",
                r.show()
            );
        } else {
            eprintln!("SKIPPED {test} (OpenSSL engine part): {}", r.show());
        }
    }

    // delete-token: SO PIN checked, slot freed, audit log kept.
    let backup = env.dir.path().join("a.bak");
    ok(
        &env,
        &[
            "backup",
            "--slot",
            &slot_a,
            "--out",
            path_str(&backup),
            "--so-pin-env",
            "T_SO",
        ],
    );
    fails(
        &env,
        &["restore", path_str(&backup), "--so-pin-env", "T_SO"],
        &["already"],
    );
    let r = run(
        &env,
        &["delete-token", "--slot", &slot_a, "--so-pin-env", "T_PIN"],
    );
    assert_eq!(r.status.code(), Some(1), "{}", r.show());
    assert!(r.stderr.contains("CKR_PIN_INCORRECT"), "{}", r.show());
    assert_eq!(tokens_labelled(&env, "dup").len(), 2);
    // A process holding the module open (logged in) sees the token go.
    let holder = load();
    let held = holder
        .get_all_slots()
        .unwrap()
        .into_iter()
        .find(|s| s.id().to_string() == slot_a)
        .expect("slot a");
    let hs = holder.open_rw_session(held).expect("C_OpenSession");
    hs.login(cryptoki::session::UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    assert_eq!(find(&hs, "a-key").len(), 2);
    let r = ok(
        &env,
        &["delete-token", "--slot", &slot_a, "--so-pin-env", "T_SO"],
    );
    assert!(
        hs.find_objects(&[]).map_or(true, |v| v.is_empty()),
        "the holder still finds the deleted token's objects"
    );
    assert!(
        !holder.get_token_info(held).unwrap().token_initialized(),
        "the holder's slot is free"
    );
    drop(hs);
    holder.finalize().expect("C_Finalize");
    assert!(
        r.stdout.starts_with(&format!(
            "deleted token \"dup\" (slot {slot_a}, serial {serial_a})"
        )),
        "{}",
        r.show()
    );
    assert_eq!(tokens_labelled(&env, "dup"), vec![dups[1].clone()]);
    let audit = env.data_dir().join(format!("token-{slot_a}/audit"));
    assert!(audit.is_dir(), "the audit log stays");
    let log: String = std::fs::read_dir(&audit)
        .unwrap()
        .flatten()
        .map(|e| std::fs::read_to_string(e.path()).unwrap_or_default())
        .collect();
    assert!(log.contains("ferrohsm delete-token"), "{log}");
    // Now "dup" names one token, and the backup restores into this directory.
    objects(&env, &["--token", "dup"]);
    let r = ok(
        &env,
        &[
            "restore",
            path_str(&backup),
            "--so-pin-env",
            "T_SO",
            "--label",
            "back",
        ],
    );
    assert!(r.stdout.contains("restored token \"back\""), "{}", r.show());
    assert_eq!(
        classes(&objects(&env, &["--token", "back"])).len(),
        2,
        "the deleted token's keys are back from the backup"
    );
    // The module sees the slot as free, and a new token can take it.
    let p = load();
    let free = spare_slot(&p);
    assert!(!p.get_token_info(free).unwrap().token_initialized());
    p.init_token(free, &pin(SO_PIN), "fresh")
        .expect("C_InitToken into a freed slot");
    p.finalize().expect("C_Finalize");
    assert_eq!(tokens_labelled(&env, "fresh").len(), 1);
}

#[test]
fn unregister_removes_what_register_wrote() {
    let env = TestEnv::new();
    let dir = env.dir.path().join("modules");
    ok(&env, &["register", "--config-dir", path_str(&dir)]);
    let file = dir.join("ferrohsm.module");
    assert!(file.is_file());
    let r = ok(&env, &["unregister", "--config-dir", path_str(&dir)]);
    assert!(r.stdout.contains("unregistered"), "{}", r.show());
    assert!(!file.exists());
    fails(
        &env,
        &["unregister", "--config-dir", path_str(&dir)],
        &["nothing to unregister"],
    );
    // Another module's file of that name is left alone.
    std::fs::write(&file, "module: /usr/lib/other/libother.so\n").unwrap();
    fails(
        &env,
        &["unregister", "--config-dir", path_str(&dir)],
        &["does not name a FerroHSM module"],
    );
    assert!(file.exists());
    // The default directory is register's: XDG_CONFIG_HOME.
    let xdg = env.dir.path().join("xdg");
    let mut c = command(&env, &["register"]);
    c.env("XDG_CONFIG_HOME", &xdg);
    ok_cmd(&env, c, &["register"]);
    assert!(xdg.join("pkcs11/modules/ferrohsm.module").is_file());
    let mut c = command(&env, &["unregister"]);
    c.env("XDG_CONFIG_HOME", &xdg);
    ok_cmd(&env, c, &["unregister"]);
    assert!(!xdg.join("pkcs11/modules/ferrohsm.module").exists());
}

// ---------------------------------------------------------------------------
// 7. import of a chain, export-cert, unsupported keys, --force
// ---------------------------------------------------------------------------

#[test]
fn import_a_key_with_its_chain_and_export_its_certificate() {
    let test = "import_a_key_with_its_chain_and_export_its_certificate";
    let env = TestEnv::new();
    if !have(test, "openssl") {
        return;
    }
    init(&env, "t", &[]);
    let d = env.dir.path();
    // A root CA, an intermediate CA and a leaf, all P-256.
    let o = |args: &[&str]| openssl(&env, args);
    for name in ["root", "mid", "leaf", "other"] {
        o(&[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &format!("{name}.key"),
        ]);
    }
    o(&[
        "req", "-x509", "-new", "-key", "root.key", "-subj", "/CN=Root", "-days", "30", "-out",
        "root.crt",
    ]);
    std::fs::write(d.join("ca.ext"), "basicConstraints=critical,CA:TRUE\n").unwrap();
    o(&[
        "req", "-new", "-key", "mid.key", "-subj", "/CN=Mid", "-out", "mid.csr",
    ]);
    o(&[
        "x509", "-req", "-in", "mid.csr", "-CA", "root.crt", "-CAkey", "root.key", "-days", "30",
        "-extfile", "ca.ext", "-out", "mid.crt",
    ]);
    o(&[
        "req", "-new", "-key", "leaf.key", "-subj", "/CN=web", "-out", "leaf.csr",
    ]);
    o(&[
        "x509", "-req", "-in", "leaf.csr", "-CA", "mid.crt", "-CAkey", "mid.key", "-days", "30",
        "-out", "leaf.crt",
    ]);
    let read = |n: &str| std::fs::read_to_string(d.join(n)).unwrap();
    let bundle = d.join("bundle.pem");
    std::fs::write(
        &bundle,
        [
            read("leaf.key"),
            read("leaf.crt"),
            read("mid.crt"),
            read("root.crt"),
        ]
        .concat(),
    )
    .unwrap();
    let import = |label: &str, file: &Path| {
        vec![
            "import".to_string(),
            "--token".into(),
            "t".into(),
            "--label".into(),
            label.into(),
            "--pin-env".into(),
            "T_PIN".into(),
            path_str(file).into(),
        ]
    };
    let args = import("web", &bundle);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok(&env, &args);
    let lines: Vec<&str> = r.stdout.lines().collect();
    assert_eq!(
        lines.len(),
        5,
        "key, public key, leaf, two CAs\n{}",
        r.show()
    );
    assert!(
        lines[0].starts_with("imported EC P-256 private key \"web\""),
        "{}",
        r.show()
    );
    assert!(
        lines[2].starts_with("imported certificate \"web\""),
        "{}",
        r.show()
    );
    assert!(
        lines[3].starts_with("imported CA certificate \"web-ca1\""),
        "{}",
        r.show()
    );
    assert!(
        lines[4].starts_with("imported CA certificate \"web-ca2\""),
        "{}",
        r.show()
    );

    let objs = objects(&env, &["--token", "t"]);
    let id_of = |class: &str, label: &str| {
        objs.iter()
            .find(|o| o["class"] == class && o["label"] == label)
            .unwrap_or_else(|| panic!("no {class} {label}: {objs:#?}"))["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let key_id = id_of("private-key", "web");
    assert_eq!(
        id_of("certificate", "web"),
        key_id,
        "the leaf has the key's id"
    );
    assert_ne!(id_of("certificate", "web-ca1"), key_id);
    // A certificate alone: its category is not known, so not claimed.
    let args = import("alone", &d.join("root.crt"));
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok(&env, &args);
    assert!(
        r.stdout.starts_with("imported X.509 certificate \"alone\""),
        "{}",
        r.show()
    );
    // CKA_CERTIFICATE_CATEGORY through the module (found by value): 1 for
    // the leaf, 2 for the CAs, 0 (unspecified) for the lone one.
    let p = load();
    let s = user(&p, "t", USER_PIN);
    let with_category = |category: u64| {
        let found = s
            .find_objects(&[
                Attribute::Class(ObjectClass::CERTIFICATE),
                Attribute::VendorDefined((
                    AttributeType::VendorDefined(0x87),
                    category.to_ne_bytes().to_vec(),
                )),
            ])
            .expect("C_FindObjects by CKA_CERTIFICATE_CATEGORY");
        let mut labels: Vec<String> = found
            .into_iter()
            .map(|h| {
                match s
                    .get_attributes(h, &[AttributeType::Label])
                    .unwrap()
                    .as_slice()
                {
                    [Attribute::Label(l)] => String::from_utf8_lossy(l).into_owned(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        labels.sort();
        labels
    };
    assert_eq!(with_category(1), ["web"]);
    assert_eq!(with_category(2), ["web-ca1", "web-ca2"]);
    assert_eq!(with_category(0), ["alone"]);
    drop(s);
    p.finalize().expect("C_Finalize");

    // export-cert gives back the leaf; --out never overwrites without --force.
    let r = ok(&env, &["export-cert", "--token", "t", "--label", "web"]);
    let der = |pem: &str| {
        let f = d.join("cmp.pem");
        std::fs::write(&f, pem).unwrap();
        openssl(&env, &["x509", "-in", path_str(&f), "-outform", "DER"]).stdout
    };
    assert_eq!(der(&r.stdout), der(&read("leaf.crt")));
    let out = d.join("exported.crt");
    std::fs::write(&out, "keep me").unwrap();
    for cmd in ["export-cert", "export-public"] {
        fails(
            &env,
            &[
                cmd,
                "--token",
                "t",
                "--label",
                "web",
                "--out",
                path_str(&out),
            ],
            &["already exists: not overwriting it", "--force"],
        );
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "keep me");
    }
    ok(
        &env,
        &[
            "export-cert",
            "--token",
            "t",
            "--label",
            "web-ca2",
            "--out",
            path_str(&out),
            "--force",
        ],
    );
    assert_eq!(der(&read("exported.crt")), der(&read("root.crt")));
    fails(
        &env,
        &["export-cert", "--token", "t", "--label", "nope"],
        &["no certificate labelled \"nope\""],
    );

    // Refusals, with the count; nothing imported.
    let two_keys = d.join("two-keys.pem");
    std::fs::write(&two_keys, [read("leaf.key"), read("other.key")].concat()).unwrap();
    let certs_only = d.join("certs.pem");
    std::fs::write(&certs_only, [read("leaf.crt"), read("mid.crt")].concat()).unwrap();
    let wrong_chain = d.join("wrong.pem");
    std::fs::write(&wrong_chain, [read("other.key"), read("leaf.crt")].concat()).unwrap();
    for (file, needle) in [
        (&two_keys, "holds 2 private key(s) and 0 certificate(s)"),
        (&certs_only, "holds 0 private key(s) and 2 certificate(s)"),
        (
            &wrong_chain,
            "none of its 1 certificate(s) is for its private key",
        ),
    ] {
        let args = import("x", file);
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        fails(&env, &args, &[needle]);
    }
    assert!(
        objects(&env, &["--token", "t"])
            .iter()
            .all(|o| o["label"] != "x")
    );

    // Unsupported key types are named, not dumped as OIDs.
    let mut cases: Vec<(&str, Vec<&str>, &str)> = vec![
        (
            "ed.pem",
            vec!["genpkey", "-algorithm", "ed448"],
            "Ed448 is not supported yet",
        ),
        (
            "x.pem",
            vec!["genpkey", "-algorithm", "x25519"],
            "X25519 is not supported yet",
        ),
        (
            "k1.pem",
            vec!["ecparam", "-genkey", "-name", "secp256k1", "-noout"],
            "secp256k1 is not supported yet",
        ),
    ];
    for (file, gen_args, needle) in &mut cases {
        gen_args.extend(["-out", file]);
        o(gen_args);
        let args = import("x", &d.join(*file));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = fails(&env, &args, &[needle]);
        assert!(!r.stderr.contains("1.3."), "no OID: {}", r.show());
    }
}

// ---------------------------------------------------------------------------
// 8. demo --temp
// ---------------------------------------------------------------------------

#[test]
fn demo_temp_ends_with_true_statements() {
    let env = TestEnv::new();
    let r = ok(&env, &["demo", "--temp"]);
    assert!(r.stdout.contains("FerroHSM demo"), "{}", r.show());
    for wrong in [
        "stays in the data directory",
        "the demo reuses it",
        "ferrohsm audit show --token",
        "--login --pin",
        "openssl dgst -engine",
    ] {
        assert!(!r.stdout.contains(wrong), "says {wrong:?}\n{}", r.show());
    }
    assert!(
        r.stdout.contains("temporary data directory is removed"),
        "{}",
        r.show()
    );
    // The one command it still suggests works.
    if find_in_path("pkcs11-tool").is_some() {
        let line = r
            .stdout
            .lines()
            .find(|l| l.contains("pkcs11-tool --module"))
            .expect("a pkcs11-tool hint");
        let cmd = line.split_once(": ").map_or(line, |(_, c)| c).trim();
        let words: Vec<&str> = cmd.split_whitespace().collect();
        let mut c = Command::new(words[0]);
        c.args(&words[1..]).envs(env.env_vars());
        let r = run_captured(&env, c, b"", TIMEOUT, cmd);
        r.assert_success(&env);
    }
}

// ---------------------------------------------------------------------------
// 9. policy refusals on stderr; FERROHSM_LOG
// ---------------------------------------------------------------------------

/// The child: five refusals of three kinds, each a `CKR_*` only the log
/// explains, at the default log level.
fn refuse_in_child() {
    let p = load();
    let s = user(&p, "h", USER_PIN);
    let aes = |label: &str| {
        s.generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(true),
                Attribute::Label(label.as_bytes().to_vec()),
                Attribute::ValueLen(32.into()),
                Attribute::Sensitive(false),
            ],
        )
    };
    assert!(aes("a").is_err());
    assert!(aes("b").is_err());
    let rsa = s.generate_key_pair(
        &Mechanism::RsaPkcsKeyPairGen,
        &[
            Attribute::Token(true),
            Attribute::ModulusBits(1024.into()),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ],
        &[Attribute::Token(true), Attribute::Sign(true)],
    );
    assert!(rsa.is_err());
    // Turning a usage on afterwards, twice.
    let k = s
        .generate_key(
            &Mechanism::AesKeyGen,
            &[
                Attribute::Token(false),
                Attribute::ValueLen(16.into()),
                Attribute::Decrypt(false),
            ],
        )
        .expect("C_GenerateKey");
    for _ in 0..2 {
        assert!(s.update_attributes(k, &[Attribute::Decrypt(true)]).is_err());
    }
    drop(s);
    p.finalize().expect("C_Finalize");
}

#[test]
fn policy_refusals_warn_once_per_kind_on_stderr() {
    let test = "policy_refusals_warn_once_per_kind_on_stderr";
    if role().as_deref() == Some("refuse") {
        refuse_in_child();
        return;
    }
    let env = TestEnv::new();
    init(&env, "h", &[]);
    let mut c = child_command(&env, test, "refuse");
    c.env_remove("FERROHSM_LOG");
    let r = run_captured(&env, c, b"", TIMEOUT, "refusing child");
    r.assert_success(&env);
    let warns: Vec<&str> = r
        .stderr
        .lines()
        .filter(|l| l.contains("ferrohsm["))
        .collect();
    assert_eq!(
        warns.len(),
        3,
        "one line per kind, nothing else\n{}",
        r.show()
    );
    assert!(warns.iter().all(|l| l.contains("] WARN: ")), "{}", r.show());
    assert!(
        warns[0].contains("C_GenerateKey refused (CKR_ATTRIBUTE_VALUE_INVALID)")
            && warns[0].contains("must be sensitive")
            && warns[0].contains("pkcs11-tool --sensitive"),
        "{}",
        warns[0]
    );
    assert!(
        warns[1].contains("C_GenerateKeyPair refused (CKR_KEY_SIZE_RANGE)")
            && warns[1].contains("2048"),
        "{}",
        warns[1]
    );
    assert!(
        warns[2].contains("C_SetAttributeValue refused (CKR_ATTRIBUTE_READ_ONLY)")
            && warns[2].contains("usages")
            && warns[2].contains("--usage-decrypt"),
        "{}",
        warns[2]
    );

    // The same with pkcs11-tool, as the issue found it.
    if have(test, "pkcs11-tool") {
        let mut c = Command::new("pkcs11-tool");
        c.arg("--module")
            .arg(module())
            .args([
                "--token-label",
                "h",
                "--login",
                "--pin",
                USER_PIN,
                "--keygen",
                "--key-type",
                "AES:32",
                "--label",
                "k",
            ])
            .envs(env.env_vars())
            .env_remove("FERROHSM_LOG");
        let r = run_captured(&env, c, b"", TIMEOUT, "pkcs11-tool --keygen AES:32");
        assert!(!r.status.success(), "{}", r.show());
        assert!(
            r.stderr.contains("WARN") && r.stderr.contains("--sensitive"),
            "pkcs11-tool's user sees why\n{}",
            r.show()
        );
    }

    // A bad FERROHSM_LOG: the tool (and so C_Initialize) still works, with
    // one warning; a good one to a file stamps every line.
    let mut c = command(&env, &["tokens"]);
    c.env("FERROHSM_LOG", "loud");
    let r = ok_cmd(&env, c, &["tokens"]);
    assert!(r.stdout.contains("h"), "{}", r.show());
    assert!(
        r.stderr.contains("FERROHSM_LOG: unknown level \"loud\"")
            && r.stderr.contains("logging at warn to stderr"),
        "{}",
        r.show()
    );
    let file = env.dir.path().join("stamped.log");
    let mut c = command(&env, &["tokens"]);
    c.env("FERROHSM_LOG", format!("info:{}", file.display()));
    ok_cmd(&env, c, &["tokens"]);
    let text = std::fs::read_to_string(&file).expect("log file");
    assert!(!text.is_empty());
    for line in text.lines() {
        let (time, rest) = line.split_once(' ').expect("time first");
        assert!(ferrohsm_store::audit::parse_time(time).is_some(), "{line}");
        assert!(rest.starts_with("ferrohsm["), "{line}");
    }
}

#[test]
fn new_commands_and_flags_have_help() {
    let env = TestEnv::new();
    let top = ok(&env, &["--help"]);
    for c in ["export-cert", "delete-token", "unregister"] {
        assert!(top.stdout.contains(c), "top-level help lacks {c}");
        let r = ok(&env, &[c, "--help"]);
        assert!(
            r.stdout.contains(&format!("Usage: ferrohsm {c}")),
            "{}",
            r.show()
        );
    }
    for c in ["objects", "backup", "pending", "audit show", "delete-token"] {
        let args: Vec<&str> = c.split(' ').chain(["--help"]).collect();
        let r = ok(&env, &args);
        for flag in ["--token <LABEL|URI>", "--slot <N>", "--serial <SERIAL>"] {
            assert!(r.stdout.contains(flag), "{c} lacks {flag}\n{}", r.show());
        }
    }
    // One way of naming the token is required.
    let r = run(&env, &["objects", "--pin-env", "T_PIN"]);
    assert_eq!(r.status.code(), Some(2), "{}", r.show());
    let r = run(
        &env,
        &["export-public", "--token", "t", "--label", "k", "--force"],
    );
    assert_eq!(
        r.status.code(),
        Some(2),
        "--force needs --out\n{}",
        r.show()
    );
}
