//! The `ferrohsm` command-line tool, run as its users run it: the built binary
//! in a child process, with this test's data directory and config (cheap KDF)
//! in its environment, standard input not a terminal (so PINs come from
//! `--*-pin-env`), and the same `libferrohsm_pkcs11.so` this test loads.
//!
//! Covered: `--help` on every command and usage errors (exit 2); `init`,
//! `tokens --json`, `objects --json`, `keygen`, `import` (OpenSSL-made PKCS#8,
//! PKCS#1, SEC1 keys, an X.509 certificate, a raw AES key), `export-public`
//! (parsed by `openssl pkey -pubin`; signatures made in the token verify with
//! it), `delete`, `set-pin`; failures as one line on stderr with exit 1;
//! `backup` → `restore` into a fresh data directory, after which the keys
//! compute exactly what they did (and every damaged or truncated file is
//! refused); a process holding the module open sees the tool's changes;
//! `register` + `p11-kit list-modules`; `demo --temp`.
//!
//! Needs the `ferrohsm` binary built (`cargo build --workspace`, as
//! `scripts/test` does). The OpenSSL and p11-kit parts skip, saying so, when
//! `openssl` / `p11-kit` are not installed.

use std::path::Path;
use std::process::Command;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use ferrohsm_tests::child::{Run, find_in_path, run_captured};
use ferrohsm_tests::p11::{pin, slot_of, user};
use ferrohsm_tests::tool::{TIMEOUT, command, init_with, load, module, ok_cmd, run_cmd};
use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN};
use serde_json::Value;

/// A PIN no token here has.
const BAD_PIN: &str = "wrong-pin-0000";
/// PINs `set-pin` moves to.
const NEW_PIN: &str = "new-user-pin-5678";
const NEW_SO_PIN: &str = "new-so-pin-9876";

/// The tool with `args`, in `env`, loading this test's module; the test PINs
/// are in `T_SO`, `T_PIN`, `T_BAD`, `T_NEW`, `T_NEW_SO`.
fn cli(env: &TestEnv, args: &[&str]) -> Command {
    let mut c = command(env, args);
    c.env("T_BAD", BAD_PIN)
        .env("T_NEW", NEW_PIN)
        .env("T_NEW_SO", NEW_SO_PIN);
    c
}

fn run(env: &TestEnv, args: &[&str]) -> Run {
    run_cmd(env, cli(env, args), args)
}

/// Runs the tool and requires exit 0.
#[track_caller]
fn ok(env: &TestEnv, args: &[&str]) -> Run {
    ok_cmd(env, cli(env, args), args)
}

/// Checks a failed run: exit `code`; for 1, exactly one line on stderr,
/// `ferrohsm: ...`, containing every one of `needles`.
#[track_caller]
fn check_fail(r: &Run, code: i32, needles: &[&str]) {
    assert_eq!(r.status.code(), Some(code), "{}", r.show());
    if code == 1 {
        let lines: Vec<&str> = r.stderr.lines().collect();
        assert_eq!(lines.len(), 1, "want one line on stderr\n{}", r.show());
        assert!(lines[0].starts_with("ferrohsm: "), "{}", r.show());
    }
    for n in needles {
        assert!(r.stderr.contains(n), "stderr lacks {n:?}\n{}", r.show());
    }
}

#[track_caller]
fn fails(env: &TestEnv, args: &[&str], code: i32, needles: &[&str]) -> Run {
    let r = run(env, args);
    check_fail(&r, code, needles);
    r
}

#[track_caller]
fn json(r: &Run) -> Value {
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("not JSON ({e}):\n{}", r.show()))
}

/// `ferrohsm keygen` of a `ty` key labelled `label` on `token`, with `more`
/// arguments; it must succeed.
#[track_caller]
fn keygen(env: &TestEnv, token: &str, ty: &str, label: &str, more: &[&str]) -> Run {
    let args = ["keygen", "--token", token, "--type", ty, "--label", label];
    ok(env, &[&args[..], more, &["--pin-env", "T_PIN"]].concat())
}

/// `ferrohsm init` with the test PINs.
fn init(env: &TestEnv, label: &str, more: &[&str]) {
    init_with(env, label, more, |args| cli(env, args));
}

fn objects_json(env: &TestEnv, token: &str) -> Vec<Value> {
    let r = ok(
        env,
        &["objects", "--token", token, "--pin-env", "T_PIN", "--json"],
    );
    json(&r).as_array().expect("objects: an array").clone()
}

/// The objects labelled `label` in an `objects --json` listing.
fn labelled<'a>(objs: &'a [Value], label: &str) -> Vec<&'a Value> {
    objs.iter().filter(|o| o["label"] == label).collect()
}

fn of_class<'a>(objs: &[&'a Value], class: &str) -> &'a Value {
    objs.iter()
        .find(|o| o["class"] == class)
        .unwrap_or_else(|| panic!("no {class} in {objs:?}"))
}

fn usage(o: &Value) -> Vec<String> {
    o["usage"]
        .as_array()
        .expect("usage array")
        .iter()
        .map(|u| u.as_str().expect("usage name").to_string())
        .collect()
}

fn find(s: &Session, label: &str, class: Option<ObjectClass>) -> Vec<ObjectHandle> {
    let mut t = vec![Attribute::Label(label.as_bytes().to_vec())];
    if let Some(c) = class {
        t.push(Attribute::Class(c));
    }
    s.find_objects(&t).expect("C_FindObjects")
}

#[track_caller]
fn one(s: &Session, label: &str, class: ObjectClass) -> ObjectHandle {
    match find(s, label, Some(class)).as_slice() {
        [h] => *h,
        other => panic!("{} objects labelled {label:?} of {class}", other.len()),
    }
}

/// AES-ECB of one block with the token key labelled `label`.
fn ecb(s: &Session, label: &str, block: &[u8; 16]) -> Vec<u8> {
    let key = one(s, label, ObjectClass::SECRET_KEY);
    s.encrypt(&Mechanism::AesEcb, key, block)
        .expect("C_Encrypt AES-ECB")
}

// ---------------------------------------------------------------------------
// OpenSSL
// ---------------------------------------------------------------------------

fn have(test: &str, tool: &str) -> bool {
    if find_in_path(tool).is_some() {
        return true;
    }
    eprintln!(
        "SKIPPED {test}: `{tool}` is not in PATH (apt-get install -y {tool}; scripts/test installs it)"
    );
    false
}

#[track_caller]
fn openssl(env: &TestEnv, args: &[&str]) -> Run {
    let mut c = Command::new("openssl");
    c.args(args);
    let r = run_captured(env, c, b"", TIMEOUT, &format!("openssl {}", args.join(" ")));
    r.assert_success(env);
    r
}

fn der_int(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len() - 1);
    let mut v = b[first..].to_vec();
    if v[0] & 0x80 != 0 {
        v.insert(0, 0);
    }
    let mut out = vec![0x02, v.len() as u8];
    out.extend(v);
    out
}

/// A PKCS#11 ECDSA signature (`r || s`) as the DER OpenSSL verifies.
fn ecdsa_der(sig: &[u8]) -> Vec<u8> {
    let (r, s) = sig.split_at(sig.len() / 2);
    let body = [der_int(r), der_int(s)].concat();
    let mut out = vec![0x30, body.len() as u8];
    out.extend(body);
    out
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 temp path")
}

// ---------------------------------------------------------------------------
// the tests
// ---------------------------------------------------------------------------

#[test]
fn help_on_every_command_and_bad_usage_exits_2() {
    let env = TestEnv::new();
    let top = ok(&env, &["--help"]);
    let commands = [
        "init",
        "tokens",
        "objects",
        "keygen",
        "import",
        "export-public",
        "delete",
        "set-pin",
        "backup",
        "restore",
        "register",
        "demo",
    ];
    for c in commands {
        assert!(top.stdout.contains(c), "top-level help lacks {c}");
        let r = ok(&env, &[c, "--help"]);
        assert!(
            r.stdout.contains(&format!("Usage: ferrohsm {c}")),
            "{}",
            r.show()
        );
    }
    assert!(top.stdout.contains("FERROHSM_DIR"));
    ok(&env, &["--version"]);
    let bad: &[&[&str]] = &[
        &[],
        &["frobnicate"],
        &["keygen", "--token", "t", "--label", "k"],
        &["keygen", "--token", "t", "--label", "k", "--type", "des"],
        &[
            "keygen", "--token", "t", "--label", "k", "--type", "aes256", "--id", "xyz",
        ],
        &[
            "keygen", "--token", "t", "--label", "k", "--type", "ec-p256", "--usage", "encrypt",
        ],
        &["objects"],
        &["objects", "--token", "t", "--pin", "1234"],
        &[
            "init",
            "--label",
            "x",
            "--pin-env",
            "A",
            "--pin-file",
            "/dev/null",
        ],
        &["set-pin", "--token", "t", "--so-pin-env", "T_SO"],
        &["set-pin", "--token", "t", "--so", "--pin-env", "T_PIN"],
        &["init", "--label", "x", "--policy", "lax"],
        &["restore"],
    ];
    for args in bad {
        let r = run(&env, args);
        assert_eq!(r.status.code(), Some(2), "{}", r.show());
        assert!(!r.stderr.is_empty(), "{}", r.show());
    }
}

#[test]
fn init_tokens_keygen_and_objects_report_truthfully_in_json() {
    let env = TestEnv::new();
    init(&env, "alpha", &[]);
    init(&env, "beta", &["--policy", "spec"]);
    let again = [
        "--label",
        "alpha",
        "--so-pin-env",
        "T_SO",
        "--pin-env",
        "T_PIN",
    ];
    fails(
        &env,
        &[&["init"], &again[..]].concat(),
        1,
        &["already exists"],
    );

    keygen(&env, "alpha", "aes256", "k-aes", &[]);
    keygen(&env, "alpha", "ec-p256", "k-ec", &["--id", "0102"]);
    keygen(
        &env,
        "alpha",
        "ec-p384",
        "k-384",
        &["--usage", "sign,verify,derive"],
    );
    let r = keygen(&env, "alpha", "rsa2048", "k-rsa", &[]);
    assert!(
        r.stderr.is_empty(),
        "no spinner without a terminal\n{}",
        r.show()
    );
    fails(
        &env,
        &[
            "keygen",
            "--token",
            "alpha",
            "--type",
            "aes128",
            "--label",
            "k-aes",
            "--pin-env",
            "T_PIN",
        ],
        1,
        &["already has a key labelled \"k-aes\""],
    );
    keygen(&env, "beta", "aes128", "b-aes", &[]);

    let t = json(&ok(&env, &["tokens", "--json"]));
    assert!(t["note"].as_str().unwrap().contains("public objects only"));
    let slots = t["slots"].as_array().unwrap();
    let alpha = slots.iter().find(|s| s["label"] == "alpha").unwrap();
    let beta = slots.iter().find(|s| s["label"] == "beta").unwrap();
    assert_eq!(alpha["policy"], "hsm");
    assert_eq!(beta["policy"], "spec");
    assert_eq!(alpha["flags"]["initialized"], true);
    assert_eq!(alpha["flags"]["user_pin_initialized"], true);
    assert_eq!(alpha["flags"]["user_pin_locked"], false);
    assert_eq!(alpha["serial"].as_str().unwrap().len(), 16);
    // Three public keys; the secret and private keys need a login.
    assert_eq!(alpha["public_objects"], 3);
    assert_eq!(beta["public_objects"], 0);
    let last = slots.last().unwrap();
    assert_eq!(last["initialized"], false, "the free slot is listed last");
    let table = ok(&env, &["tokens"]);
    assert!(table.stdout.contains("alpha") && table.stdout.contains("note:"));

    let objs = objects_json(&env, "alpha");
    assert_eq!(objs.len(), 7, "{objs:#?}");
    let aes = labelled(&objs, "k-aes");
    let aes = of_class(&aes, "secret-key");
    assert_eq!(aes["key_type"], "AES");
    assert_eq!(aes["size"], "256-bit");
    assert_eq!(aes["id"], "");
    assert_eq!(usage(aes), ["encrypt", "decrypt", "wrap", "unwrap"]);
    for o in &objs {
        if o["class"] != "public-key" {
            assert_eq!(o["sensitive"], true, "{o}");
            assert_eq!(o["extractable"], false, "{o}");
            assert_eq!(o["private"], true, "{o}");
        }
        assert_eq!(o["local"], true, "generated here: {o}");
        assert!(o.get("value").is_none());
    }
    let ec = labelled(&objs, "k-ec");
    assert_eq!(ec.len(), 2);
    assert!(ec.iter().all(|o| o["id"] == "0102" && o["size"] == "P-256"));
    assert_eq!(usage(of_class(&ec, "private-key")), ["sign"]);
    assert_eq!(usage(of_class(&ec, "public-key")), ["verify"]);
    let p384 = labelled(&objs, "k-384");
    assert_eq!(usage(of_class(&p384, "private-key")), ["sign", "derive"]);
    let rsa = labelled(&objs, "k-rsa");
    let id = rsa[0]["id"].as_str().unwrap();
    assert_eq!(id.len(), 40, "default id: SHA-1 key identifier");
    assert!(rsa.iter().all(|o| o["id"] == id && o["size"] == "2048-bit"));
    assert_eq!(
        usage(of_class(&rsa, "private-key")),
        ["decrypt", "sign"],
        "{rsa:?}"
    );
    // A spec-policy token still gets sensitive, non-extractable keys.
    let b = objects_json(&env, "beta");
    assert_eq!(b.len(), 1);
    assert_eq!(b[0]["sensitive"], true);
    assert_eq!(b[0]["extractable"], false);
    assert_eq!(b[0]["size"], "128-bit");
    let table = ok(&env, &["objects", "--token", "alpha", "--pin-env", "T_PIN"]);
    assert!(table.stdout.contains("7 object(s)"), "{}", table.show());
}

#[test]
fn failures_are_one_line_with_exit_1() {
    let env = TestEnv::new();
    init(&env, "alpha", &[]);
    let garbage = env.dir.path().join("garbage.bin");
    std::fs::write(&garbage, b"this is not a key").unwrap();
    let short = env.dir.path().join("short.key");
    std::fs::write(&short, [7u8; 31]).unwrap();
    let g = path_str(&garbage);
    let s = path_str(&short);
    let bak_path = env.dir.path().join("never.bak");
    let bak = path_str(&bak_path);
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["objects", "--token", "alpha", "--pin-env", "T_BAD"],
            &["wrong PIN", "CKR_PIN_INCORRECT"],
        ),
        (
            &["objects", "--token", "nope", "--pin-env", "T_PIN"],
            &["no token labelled \"nope\""],
        ),
        (
            &["objects", "--token", "alpha"],
            &["no user PIN", "--pin-env", "not a terminal"],
        ),
        (
            &[
                "objects",
                "--token",
                "alpha",
                "--pin-env",
                "T_UNSET_VARIABLE",
            ],
            &["T_UNSET_VARIABLE is not set"],
        ),
        (
            &[
                "objects",
                "--token",
                "alpha",
                "--pin-file",
                "/nonexistent/pin",
            ],
            &["cannot read PIN file"],
        ),
        (
            &[
                "import",
                "--token",
                "alpha",
                "--label",
                "x",
                "--pin-env",
                "T_PIN",
                "/nonexistent/key.pem",
            ],
            &["cannot read /nonexistent/key.pem"],
        ),
        (
            &[
                "import",
                "--token",
                "alpha",
                "--label",
                "x",
                "--pin-env",
                "T_PIN",
                g,
            ],
            &["not a PEM or DER"],
        ),
        (
            &[
                "import",
                "--token",
                "alpha",
                "--label",
                "x",
                "--aes",
                "--pin-env",
                "T_PIN",
                s,
            ],
            &["16, 24 or 32 bytes"],
        ),
        (
            &["export-public", "--token", "alpha", "--label", "missing"],
            &["no public key or certificate labelled \"missing\""],
        ),
        (
            &[
                "delete",
                "--token",
                "alpha",
                "--label",
                "missing",
                "--pin-env",
                "T_PIN",
            ],
            &["no object labelled \"missing\""],
        ),
        (
            &[
                "init",
                "--label",
                "a-label-that-is-much-longer-than-32-bytes",
                "--so-pin-env",
                "T_SO",
                "--pin-env",
                "T_PIN",
            ],
            &["1 to 32 bytes"],
        ),
        (
            &[
                "init",
                "--label",
                "gamma",
                "--so-pin-env",
                "T_SO",
                "--pin-env",
                "T_SHORT",
            ],
            &["4 to 64 bytes", "CKR_PIN_LEN_RANGE"],
        ),
        (
            &[
                "backup",
                "--token",
                "alpha",
                "--out",
                bak,
                "--so-pin-env",
                "T_BAD",
            ],
            &["wrong SO PIN", "CKR_PIN_INCORRECT"],
        ),
        (
            &[
                "backup",
                "--token",
                "alpha",
                "--out",
                "/nonexistent/dir/x.bak",
                "--so-pin-env",
                "T_SO",
            ],
            &["cannot create /nonexistent/dir/x.bak"],
        ),
        (
            &[
                "backup",
                "--token",
                "nope",
                "--out",
                bak,
                "--so-pin-env",
                "T_SO",
            ],
            &["no token labelled \"nope\""],
        ),
        (
            &["restore", "/nonexistent/x.bak", "--so-pin-env", "T_SO"],
            &["cannot read /nonexistent/x.bak"],
        ),
        (
            &["restore", g, "--so-pin-env", "T_SO"],
            &["not a FerroHSM backup"],
        ),
    ];
    for (args, needles) in cases {
        let mut c = cli(&env, args);
        c.env("T_SHORT", "123");
        check_fail(&run_cmd(&env, c, args), 1, needles);
    }
    assert!(!bak_path.exists(), "a failed backup leaves no file");
    // No token was created by the failed init calls.
    let t = json(&ok(&env, &["tokens", "--json"]));
    assert_eq!(
        t["slots"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["initialized"] == true)
            .count(),
        1
    );
    // A module that cannot be loaded.
    let mut c = cli(&env, &["tokens"]);
    c.env("FERROHSM_MODULE", "/nonexistent/libferrohsm_pkcs11.so");
    check_fail(
        &run_cmd(&env, c, &["tokens"]),
        1,
        &["cannot load the module"],
    );
}

/// A user PIN locked by wrong PINs is unlocked by `init-pin` (the SO's
/// C_InitPIN) with a new PIN; a wrong SO PIN changes nothing.
#[test]
fn init_pin_unlocks_a_locked_user_pin() {
    let env = TestEnv::with_config("max_login_failures = 2");
    init(&env, "alpha", &[]);
    for _ in 0..2 {
        fails(
            &env,
            &["objects", "--token", "alpha", "--pin-env", "T_BAD"],
            1,
            &["CKR_PIN_INCORRECT"],
        );
    }
    fails(
        &env,
        &["objects", "--token", "alpha", "--pin-env", "T_PIN"],
        1,
        &["CKR_PIN_LOCKED"],
    );
    let init_pin = |so: &str| {
        vec![
            "init-pin".to_string(),
            "--token".into(),
            "alpha".into(),
            "--so-pin-env".into(),
            so.into(),
            "--new-pin-env".into(),
            "T_NEW".into(),
        ]
    };
    let args = init_pin("T_BAD");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    fails(&env, &args, 1, &["SO login", "CKR_PIN_INCORRECT"]);
    fails(
        &env,
        &["objects", "--token", "alpha", "--pin-env", "T_PIN"],
        1,
        &["CKR_PIN_LOCKED"],
    );
    let args = init_pin("T_SO");
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = ok(&env, &args);
    assert!(r.stdout.contains("unlocked"), "{}", r.stdout);
    ok(&env, &["objects", "--token", "alpha", "--pin-env", "T_NEW"]);
    fails(
        &env,
        &["objects", "--token", "alpha", "--pin-env", "T_PIN"],
        1,
        &["CKR_PIN_INCORRECT"],
    );
}

#[test]
fn set_pin_changes_the_user_and_so_pins() {
    let env = TestEnv::new();
    init(&env, "alpha", &[]);
    ok(
        &env,
        &[
            "set-pin",
            "--token",
            "alpha",
            "--pin-env",
            "T_PIN",
            "--new-pin-env",
            "T_NEW",
        ],
    );
    fails(
        &env,
        &["objects", "--token", "alpha", "--pin-env", "T_PIN"],
        1,
        &["wrong PIN (CKR_PIN_INCORRECT)"],
    );
    ok(&env, &["objects", "--token", "alpha", "--pin-env", "T_NEW"]);
    fails(
        &env,
        &["set-pin", "--token", "alpha", "--pin-env", "T_NEW"],
        1,
        &["no new user PIN", "--new-pin-env"],
    );
    ok(
        &env,
        &[
            "set-pin",
            "--token",
            "alpha",
            "--so",
            "--so-pin-env",
            "T_SO",
            "--new-pin-env",
            "T_NEW_SO",
        ],
    );
    fails(
        &env,
        &[
            "set-pin",
            "--token",
            "alpha",
            "--so",
            "--so-pin-env",
            "T_SO",
            "--new-pin-env",
            "T_NEW",
        ],
        1,
        &["SO login", "CKR_PIN_INCORRECT"],
    );
    let bak = env.dir.path().join("a.bak");
    let b = path_str(&bak);
    fails(
        &env,
        &[
            "backup",
            "--token",
            "alpha",
            "--out",
            b,
            "--so-pin-env",
            "T_SO",
        ],
        1,
        &["wrong SO PIN"],
    );
    ok(
        &env,
        &[
            "backup",
            "--token",
            "alpha",
            "--out",
            b,
            "--so-pin-env",
            "T_NEW_SO",
        ],
    );
    // The failed SO logins were counted, and the good one cleared them.
    let t = json(&ok(&env, &["tokens", "--json"]));
    assert_eq!(t["slots"][0]["flags"]["so_pin_count_low"], false);
}

#[test]
fn imported_openssl_keys_sign_in_the_token_and_verify_with_openssl() {
    let test = "imported_openssl_keys_sign_in_the_token_and_verify_with_openssl";
    if !have(test, "openssl") {
        return;
    }
    let env = TestEnv::new();
    init(&env, "alpha", &[]);
    let d = env.dir.path();
    let f = |n: &str| d.join(n).to_str().expect("UTF-8").to_string();
    let (ec, rsa8, rsa1, p384, p384der, cert) = (
        f("ec.pem"),
        f("rsa8.pem"),
        f("rsa1.pem"),
        f("p384.pem"),
        f("p384.der"),
        f("cert.pem"),
    );
    openssl(
        &env,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            &ec,
        ],
    );
    openssl(
        &env,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            &rsa8,
        ],
    );
    openssl(&env, &["rsa", "-in", &rsa8, "-traditional", "-out", &rsa1]);
    assert!(
        std::fs::read_to_string(&rsa1)
            .unwrap()
            .starts_with("-----BEGIN RSA PRIVATE KEY-----"),
        "PKCS#1 PEM expected"
    );
    openssl(
        &env,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-384",
            "-out",
            &p384,
        ],
    );
    openssl(
        &env,
        &["ec", "-in", &p384, "-outform", "DER", "-out", &p384der],
    );
    openssl(
        &env,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            &rsa8,
            "-subj",
            "/CN=ferrohsm cli test",
            "-days",
            "2",
            "-out",
            &cert,
        ],
    );
    let aes_key: [u8; 32] = std::array::from_fn(|i| (i * 7 + 3) as u8);
    let aes_file = f("aes.key");
    std::fs::write(&aes_file, aes_key).unwrap();

    let import = |label: &str, file: &str, more: &[&str]| {
        let mut args = vec![
            "import",
            "--token",
            "alpha",
            "--label",
            label,
            "--pin-env",
            "T_PIN",
        ];
        args.extend_from_slice(more);
        args.push(file);
        ok(&env, &args)
    };
    import("ec-key", &ec, &[]);
    import("rsa-key", &rsa1, &[]);
    // A certificate may share its key's label (and gets the same id).
    import("rsa-key", &cert, &[]);
    import("cert-only", &cert, &[]);
    import("ec384", &p384der, &["--id", "abcd"]);
    import("aes-imp", &aes_file, &["--aes"]);
    fails(
        &env,
        &[
            "import",
            "--token",
            "alpha",
            "--label",
            "rsa-key",
            "--pin-env",
            "T_PIN",
            &cert,
        ],
        1,
        &["already has a certificate"],
    );

    let objs = objects_json(&env, "alpha");
    let rsa = labelled(&objs, "rsa-key");
    assert_eq!(rsa.len(), 3);
    let id = rsa[0]["id"].as_str().unwrap();
    assert!(
        rsa.iter().all(|o| o["id"] == id),
        "key and certificate share the key identifier: {rsa:?}"
    );
    for o in &objs {
        if o["class"] == "private-key" || o["class"] == "secret-key" {
            assert_eq!(o["sensitive"], true, "{o}");
            assert_eq!(o["extractable"], false, "{o}");
            assert_eq!(o["local"], false, "imported keys are not local: {o}");
        }
    }
    let p384o = labelled(&objs, "ec384");
    assert!(
        p384o
            .iter()
            .all(|o| o["id"] == "abcd" && o["size"] == "P-384")
    );

    // export-public: parses with OpenSSL and is the key OpenSSL made.
    let ec_pub = f("ec.pub.pem");
    ok(
        &env,
        &[
            "export-public",
            "--token",
            "alpha",
            "--label",
            "ec-key",
            "--out",
            &ec_pub,
        ],
    );
    openssl(&env, &["pkey", "-pubin", "-in", &ec_pub, "-noout"]);
    let want = openssl(&env, &["pkey", "-in", &ec, "-pubout"]).stdout;
    assert_eq!(std::fs::read_to_string(&ec_pub).unwrap(), want);
    let rsa_pub = ok(
        &env,
        &["export-public", "--token", "alpha", "--label", "rsa-key"],
    )
    .stdout;
    let cert_pub = openssl(&env, &["x509", "-in", &cert, "-pubkey", "-noout"]).stdout;
    assert_eq!(rsa_pub, cert_pub);
    let cert_only = ok(
        &env,
        &["export-public", "--token", "alpha", "--label", "cert-only"],
    )
    .stdout;
    assert_eq!(cert_only, cert_pub, "a certificate's public key");
    let rsa_pub_file = f("rsa.pub.pem");
    std::fs::write(&rsa_pub_file, &rsa_pub).unwrap();

    // Sign in the token; verify with OpenSSL and the exported keys.
    let msg = f("msg.txt");
    std::fs::write(&msg, b"signed inside FerroHSM").unwrap();
    let p = load();
    let s = user(&p, "alpha", USER_PIN);
    let ec_priv = one(&s, "ec-key", ObjectClass::PRIVATE_KEY);
    let sig = s
        .sign(&Mechanism::EcdsaSha256, ec_priv, b"signed inside FerroHSM")
        .expect("C_Sign ECDSA");
    let sig_file = f("ec.sig");
    std::fs::write(&sig_file, ecdsa_der(&sig)).unwrap();
    let v = openssl(
        &env,
        &[
            "dgst",
            "-sha256",
            "-verify",
            &ec_pub,
            "-signature",
            &sig_file,
            &msg,
        ],
    );
    assert!(v.stdout.contains("Verified OK"), "{}", v.show());
    let rsa_priv = one(&s, "rsa-key", ObjectClass::PRIVATE_KEY);
    let sig = s
        .sign(
            &Mechanism::Sha256RsaPkcs,
            rsa_priv,
            b"signed inside FerroHSM",
        )
        .expect("C_Sign RSA");
    let rsa_sig = f("rsa.sig");
    std::fs::write(&rsa_sig, sig).unwrap();
    let v = openssl(
        &env,
        &[
            "dgst",
            "-sha256",
            "-verify",
            &rsa_pub_file,
            "-signature",
            &rsa_sig,
            &msg,
        ],
    );
    assert!(v.stdout.contains("Verified OK"), "{}", v.show());
    // The raw AES key is the one in the file: AES-256 of a block agrees.
    let block = *b"sixteen byte blk";
    let mut want = aes::Block::from(block);
    aes::Aes256::new_from_slice(&aes_key)
        .unwrap()
        .encrypt_block(&mut want);
    assert_eq!(ecb(&s, "aes-imp", &block), want.to_vec());
    drop(s);
    p.finalize().expect("C_Finalize");

    // delete removes every object of a label.
    let r = ok(
        &env,
        &[
            "delete",
            "--token",
            "alpha",
            "--label",
            "rsa-key",
            "--pin-env",
            "T_PIN",
        ],
    );
    // The private key and its public key are scheduled for deletion (an hsm
    // token), the certificate deleted.
    let said: Vec<&str> = r
        .stdout
        .lines()
        .filter(|l| l.starts_with("scheduled ") || l.starts_with("deleted "))
        .collect();
    assert_eq!(said.len(), 3, "{}", r.show());
    assert!(
        r.stdout.contains("scheduled private-key (RSA)"),
        "{}",
        r.show()
    );
    assert!(r.stdout.contains("deleted certificate"), "{}", r.show());
    assert!(labelled(&objects_json(&env, "alpha"), "rsa-key").is_empty());
}

#[test]
fn backup_restores_into_a_fresh_directory_with_working_keys() {
    let env = TestEnv::new();
    init(&env, "alpha", &[]);
    for (ty, label) in [("aes256", "k-aes"), ("ec-p256", "k-ec")] {
        keygen(&env, "alpha", ty, label, &[]);
    }
    let block = *b"0123456789abcdef";
    let p = load();
    let s = user(&p, "alpha", USER_PIN);
    let before = ecb(&s, "k-aes", &block);
    let ec_pub_before = s
        .get_attributes(
            one(&s, "k-ec", ObjectClass::PUBLIC_KEY),
            &[AttributeType::PublicKeyInfo],
        )
        .unwrap();
    drop(s);
    p.finalize().expect("C_Finalize");
    let listing = objects_json(&env, "alpha");

    let bak = env.dir.path().join("alpha.ferrohsm-backup");
    let b = path_str(&bak);
    let r = ok(
        &env,
        &[
            "backup",
            "--token",
            "alpha",
            "--out",
            b,
            "--so-pin-env",
            "T_SO",
        ],
    );
    assert!(r.stdout.contains("3 objects"), "{}", r.show());
    let file = std::fs::read(&bak).unwrap();
    assert!(file.starts_with(b"FERROHSM-BACKUP\n"));
    fails(
        &env,
        &[
            "backup",
            "--token",
            "alpha",
            "--out",
            b,
            "--so-pin-env",
            "T_SO",
        ],
        1,
        &["already exists"],
    );
    // The same token back into the same directory: refused.
    fails(
        &env,
        &["restore", b, "--so-pin-env", "T_SO", "--label", "again"],
        1,
        &["already in the data directory"],
    );

    let fresh = env.dir.path().join("fresh-data");
    std::fs::create_dir_all(&fresh).unwrap();
    let in_fresh = |args: &[&str]| {
        let mut c = cli(&env, args);
        c.env("FERROHSM_DIR", &fresh);
        run_cmd(&env, c, args)
    };
    // Damaged copies: a flipped byte anywhere (header, wrap, body, tag) or a
    // truncation is refused with one line and nothing is restored.
    let positions = [
        20,
        file.len() / 4,
        file.len() / 2,
        file.len() - 20,
        file.len() - 1,
    ];
    for (i, pos) in positions.iter().enumerate() {
        let mut bad = file.clone();
        bad[*pos] ^= 0x20;
        let path = env.dir.path().join(format!("flipped-{i}.bak"));
        std::fs::write(&path, &bad).unwrap();
        let args = ["restore", path_str(&path), "--so-pin-env", "T_SO"];
        let r = in_fresh(&args);
        check_fail(&r, 1, &[]);
        assert!(
            r.stderr.contains("damaged or tampered") || r.stderr.contains("file was altered"),
            "{}",
            r.show()
        );
    }
    let cut = env.dir.path().join("truncated.bak");
    std::fs::write(&cut, &file[..file.len() - 100]).unwrap();
    let r = in_fresh(&["restore", path_str(&cut), "--so-pin-env", "T_SO"]);
    check_fail(&r, 1, &["damaged or tampered"]);
    let r = in_fresh(&["restore", b, "--so-pin-env", "T_BAD"]);
    check_fail(&r, 1, &["does not open this backup"]);
    let r = in_fresh(&["tokens", "--json"]);
    r.assert_success(&env);
    assert!(
        json(&r)["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["initialized"] == false),
        "nothing restored from bad files"
    );

    let r = in_fresh(&["restore", b, "--so-pin-env", "T_SO", "--label", "restored"]);
    r.assert_success(&env);
    assert!(
        r.stdout.contains("\"restored\"") && r.stdout.contains("slot 0"),
        "{}",
        r.show()
    );
    let r = in_fresh(&[
        "objects",
        "--token",
        "restored",
        "--pin-env",
        "T_PIN",
        "--json",
    ]);
    r.assert_success(&env);
    // The same objects but for their URIs, which name the token by its
    // (new) label.
    let without_uri = |l: &[Value]| {
        l.iter()
            .map(|o| {
                let mut o = o.clone();
                assert!(o["uri"].as_str().is_some_and(|u| u.starts_with("pkcs11:")));
                o.as_object_mut().unwrap().remove("uri");
                o
            })
            .collect::<Vec<_>>()
    };
    let restored = json(&r);
    assert_eq!(
        without_uri(restored.as_array().unwrap()),
        without_uri(&listing),
        "the same objects, attributes and ids"
    );

    // The restored keys compute what the originals did: switch this
    // process's module to the fresh directory.
    // SAFETY: this test runs alone in its process (nextest) and no other
    // thread exists; the module is finalised and reads the variable at the
    // next C_Initialize.
    unsafe { std::env::set_var("FERROHSM_DIR", &fresh) };
    let p = load();
    let s = user(&p, "restored", USER_PIN);
    assert_eq!(ecb(&s, "k-aes", &block), before, "same AES key");
    let ec_pub_after = s
        .get_attributes(
            one(&s, "k-ec", ObjectClass::PUBLIC_KEY),
            &[AttributeType::PublicKeyInfo],
        )
        .unwrap();
    assert_eq!(ec_pub_after, ec_pub_before);
    let ec_priv = one(&s, "k-ec", ObjectClass::PRIVATE_KEY);
    let pubk = one(&s, "k-ec", ObjectClass::PUBLIC_KEY);
    let sig = s.sign(&Mechanism::EcdsaSha256, ec_priv, b"m").unwrap();
    s.verify(&Mechanism::EcdsaSha256, pubk, b"m", &sig)
        .expect("restored EC pair signs and verifies");
    drop(s);
    // The SO PIN works on the restored token too.
    let so = p
        .open_rw_session(slot_of(&p, "restored"))
        .expect("C_OpenSession");
    so.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("SO login on the restored token");
}

#[test]
fn a_process_holding_the_module_sees_the_tools_changes() {
    let env = TestEnv::new();
    init(&env, "alpha", &[]);
    let p = load();
    let s = user(&p, "alpha", USER_PIN);
    assert!(find(&s, "live", None).is_empty());

    keygen(&env, "alpha", "ec-p256", "live", &[]);
    keygen(&env, "alpha", "aes128", "live-aes", &[]);
    assert_eq!(find(&s, "live", None).len(), 2, "both halves of the pair");
    let sig = s
        .sign(
            &Mechanism::EcdsaSha256,
            one(&s, "live", ObjectClass::PRIVATE_KEY),
            b"x",
        )
        .expect("the holder signs with the tool's key");
    s.verify(
        &Mechanism::EcdsaSha256,
        one(&s, "live", ObjectClass::PUBLIC_KEY),
        b"x",
        &sig,
    )
    .unwrap();
    assert_eq!(ecb(&s, "live-aes", &[0; 16]).len(), 16);

    // The other direction: the tool lists what the holder made.
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Label(b"from-holder".to_vec()),
            Attribute::ValueLen(16.into()),
        ],
    )
    .expect("C_GenerateKey");
    let objs = objects_json(&env, "alpha");
    assert_eq!(labelled(&objs, "from-holder").len(), 1);
    let t = json(&ok(&env, &["tokens", "--json"]));
    assert_eq!(t["slots"][0]["label"], "alpha");

    ok(
        &env,
        &[
            "delete",
            "--token",
            "alpha",
            "--label",
            "live",
            "--pin-env",
            "T_PIN",
        ],
    );
    assert!(
        find(&s, "live", None).is_empty(),
        "the holder sees the deletion"
    );
    assert_eq!(find(&s, "live-aes", None).len(), 1);
    // A token initialised by the tool appears in the holder's slot list.
    init(&env, "beta", &[]);
    slot_of(&p, "beta");
}

#[test]
fn register_writes_a_module_file_that_p11_kit_lists() {
    let test = "register_writes_a_module_file_that_p11_kit_lists";
    let env = TestEnv::new();
    let xdg = env.dir.path().join("xdg");
    let args = ["register"];
    let mut c = cli(&env, &args);
    c.env("XDG_CONFIG_HOME", &xdg);
    let r = run_cmd(&env, c, &args);
    r.assert_success(&env);
    let file = xdg.join("pkcs11/modules/ferrohsm.module");
    let text = std::fs::read_to_string(&file).expect("ferrohsm.module written");
    let module = module().canonicalize().unwrap();
    assert!(
        text.lines()
            .any(|l| l == format!("module: {}", module.display())),
        "{text}"
    );
    let other = env.dir.path().join("elsewhere");
    ok(&env, &["register", "--config-dir", path_str(&other)]);
    assert!(other.join("ferrohsm.module").is_file());

    if !have(test, "p11-kit") {
        return;
    }
    // p11-kit reads per-user module configs only for non-root programs: as
    // root, run it as `nobody` (the files made readable for that, the data
    // directory nobody's own: the module refuses one that is open to others
    // and that it cannot make owner-only).
    let root = std::fs::metadata("/proc/self")
        .map(|m| std::os::unix::fs::MetadataExt::uid(&m) == 0)
        .unwrap_or(false);
    let data = env.dir.path().join("p11kit-data");
    std::fs::create_dir_all(&data).unwrap();
    let mut cmd = if root {
        if find_in_path("setpriv").is_none() {
            eprintln!("SKIPPED {test} (p11-kit part): running as root and `setpriv` is missing");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let open = |p: &Path, mode| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode)).unwrap()
        };
        open(env.dir.path(), 0o755);
        std::os::unix::fs::chown(&data, Some(65534), Some(65534)).unwrap();
        open(&data, 0o700);
        let probe = Command::new("setpriv")
            .args([
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                "test",
                "-r",
            ])
            .arg(&module)
            .status();
        if !probe.is_ok_and(|s| s.success()) {
            eprintln!(
                "SKIPPED {test} (p11-kit part): user nobody cannot read {}",
                module.display()
            );
            return;
        }
        let mut c = Command::new("setpriv");
        c.args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "p11-kit",
            "list-modules",
        ]);
        c
    } else {
        let mut c = Command::new("p11-kit");
        c.arg("list-modules");
        c
    };
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &data)
        .env("XDG_CONFIG_HOME", &xdg)
        .env("FERROHSM_DIR", &data);
    let r = run_captured(&env, cmd, b"", TIMEOUT, "p11-kit list-modules");
    assert!(
        r.stdout
            .lines()
            .any(|l| l.starts_with("ferrohsm:") && l.contains(&module.display().to_string())),
        "p11-kit does not list the module\n{}",
        r.show()
    );
    assert!(r.stdout.contains("FerroHSM"), "{}", r.show());
}

#[test]
fn demo_still_runs_in_a_temporary_directory() {
    let env = TestEnv::new();
    let r = ok(&env, &["demo", "--temp"]);
    assert!(r.stdout.contains("FerroHSM demo"), "{}", r.show());
    assert!(!r.stdout.contains(" ERR "), "{}", r.show());
    // --temp leaves the configured data directory alone.
    let t = json(&ok(&env, &["tokens", "--json"]));
    assert!(
        t["slots"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["initialized"] == false)
    );
}
