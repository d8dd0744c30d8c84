//! Java through SunPKCS11 (issue "drop-in", cause 6): `keytool -genkeypair`,
//! `-list` and `-certreq` on a default (`hsm`) token, and a small Java
//! program (`tests/java/SignEncrypt.java`) that signs, decrypts and runs
//! AES-GCM with token keys, checked by the JDK's software providers.
//! Needs a JDK (`openjdk-17-jdk-headless`; scripts/test installs it): the
//! test fails, not skips, without one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use ferrohsm_tests::child::{Run, find_in_path, run_captured};
use ferrohsm_tests::{TestEnv, USER_PIN, tool};

const TIMEOUT: Duration = Duration::from_secs(180);

fn java_tool(env: &TestEnv, name: &str, args: &[&str]) -> Run {
    assert!(
        find_in_path(name).is_some(),
        "{name} not found in PATH: install a JDK (`apt-get install -y openjdk-17-jdk-headless`); \
         scripts/test installs it, so this test does not skip"
    );
    let mut cmd = Command::new(name);
    cmd.args(args)
        .envs(env.env_vars())
        .env("FERROHSM_MODULE", tool::module());
    let run = run_captured(env, cmd, b"", TIMEOUT, &format!("{name} {args:?}"));
    assert!(
        run.status.success(),
        "{name} {args:?} failed:\n{}\nmodule log:\n{}",
        run.show(),
        env.log_tail(20)
    );
    run
}

/// `keytool` with the PKCS11 keystore of the provider config `cfg`.
fn keytool(env: &TestEnv, cfg: &Path, args: &[&str]) -> Run {
    let cfg = cfg.to_str().unwrap();
    let mut all = vec![
        "-storetype",
        "PKCS11",
        "-providerClass",
        "sun.security.pkcs11.SunPKCS11",
        "-providerArg",
        cfg,
        "-keystore",
        "NONE",
        "-storepass",
        USER_PIN,
    ];
    all.extend_from_slice(args);
    java_tool(env, "keytool", &all)
}

#[test]
fn keytool_and_a_java_program_use_an_hsm_token() {
    let env = TestEnv::new();
    let init = tool::init(&env, "java", &[]);
    assert!(init.stdout.contains("key policy hsm"), "{}", init.show());
    let slot: u64 = init
        .stdout
        .split("in slot ")
        .nth(1)
        .and_then(|r| r.split(':').next())
        .and_then(|n| n.trim().parse().ok())
        .unwrap_or_else(|| panic!("slot in {}", init.stdout));
    let dir = env.dir.path();
    let cfg = dir.join("p11.cfg");
    std::fs::write(
        &cfg,
        format!(
            "name = FerroHSM\nlibrary = {}\nslot = {slot}\n",
            tool::module().display()
        ),
    )
    .unwrap();

    // Each -genkeypair stores a key pair and a self-signed certificate whose
    // CKA_SERIAL_NUMBER is the INTEGER's content bytes, not its DER.
    keytool(
        &env,
        &cfg,
        &[
            "-genkeypair",
            "-alias",
            "ec",
            "-keyalg",
            "EC",
            "-groupname",
            "secp256r1",
            "-dname",
            "CN=ec",
        ],
    );
    keytool(
        &env,
        &cfg,
        &[
            "-genkeypair",
            "-alias",
            "rsa",
            "-keyalg",
            "RSA",
            "-keysize",
            "2048",
            "-dname",
            "CN=rsa",
        ],
    );
    let list = keytool(&env, &cfg, &["-list"]);
    assert!(
        list.stdout.contains("contains 2 entries")
            && list.stdout.contains("ec, PrivateKeyEntry")
            && list.stdout.contains("rsa, PrivateKeyEntry"),
        "{}",
        list.show()
    );

    // The request keytool signs with the token key verifies in OpenSSL.
    let csr = keytool(&env, &cfg, &["-certreq", "-alias", "ec"]);
    assert!(
        csr.stdout.contains("BEGIN NEW CERTIFICATE REQUEST"),
        "{}",
        csr.show()
    );
    let csr_path = dir.join("ec.csr");
    std::fs::write(&csr_path, &csr.stdout).unwrap();
    let v = Command::new("openssl")
        .args(["req", "-verify", "-noout", "-in"])
        .arg(&csr_path)
        .output()
        .expect("openssl");
    assert!(
        v.status.success(),
        "openssl req -verify: {}",
        String::from_utf8_lossy(&v.stderr)
    );

    // The Java program: token signatures verified by SunEC/SunRsaSign, a
    // SunJCE ciphertext decrypted by the token, AES-GCM on a token key.
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("java/SignEncrypt.java");
    let classes = dir.join("classes");
    java_tool(
        &env,
        "javac",
        &["-d", classes.to_str().unwrap(), src.to_str().unwrap()],
    );
    let run = java_tool(
        &env,
        "java",
        &[
            "-cp",
            classes.to_str().unwrap(),
            "SignEncrypt",
            cfg.to_str().unwrap(),
            USER_PIN,
        ],
    );
    for line in [
        "ok sign SHA256withECDSA",
        "ok sign SHA256withRSA",
        "ok decrypt RSA/ECB/PKCS1Padding",
        "ok AES/GCM/NoPadding",
    ] {
        assert!(
            run.stdout.contains(line),
            "missing {line:?}:\n{}",
            run.show()
        );
    }
}
