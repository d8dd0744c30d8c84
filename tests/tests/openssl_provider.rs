//! OpenSSL 3 with pkcs11-provider loading the module (issue 18, point 2): a
//! host process with its own libcrypto (the `openssl` command, linked to
//! `libcrypto.so.3`) loads `libferrohsm_pkcs11.so`, which carries AWS-LC
//! statically and exports only `C_*`, so the two cannot clash.
//!
//! Through the provider, with keys that never leave the token:
//! 1. RSA PKCS#1 v1.5 and PSS and ECDSA signatures (`openssl dgst -sign
//!    pkcs11:…`) verify with plain OpenSSL against the public key the provider
//!    reads, which equals the token's `CKA_PUBLIC_KEY_INFO`;
//! 2. an RSA-OAEP (SHA-256) ciphertext made by plain OpenSSL decrypts;
//! 3. ECDH (`openssl pkeyutl -derive`) agrees with plain OpenSSL on a `spec`
//!    token, and on an `hsm` token is refused with the module's reason logged
//!    (the provider asks for a readable shared secret, which `hsm` forbids);
//! 4. `openssl req -x509` makes self-signed certificates with the token keys,
//!    and `openssl s_server` completes TLS 1.3 handshakes (ECDSA, RSA-PSS)
//!    with them, checked by a plain `openssl s_client`.
//!
//! Needs `openssl` and the provider (Debian `pkcs11-provider`, from
//! bookworm-backports on Debian 12); a test whose tool is missing says so on
//! stderr and returns (skips). `scripts/test` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectHandle};
use cryptoki::session::Session;
use ferrohsm_tests::child::{
    Run, find_in_path, read_lossy, run_captured, spawn_captured, wait_or_kill,
};
use ferrohsm_tests::p11::{ready_token, user_session};
use ferrohsm_tests::{TestEnv, USER_PIN, module_path, tok};

/// How long any child process may take before the test fails as a hang.
const TIMEOUT: Duration = Duration::from_secs(60);
/// DER of the P-256 curve OID, the `CKA_EC_PARAMS` value.
const P256: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// The provider's shared object (`pkcs11.so` in OpenSSL's modules
/// directory), if `openssl` and the provider are installed; otherwise says
/// which is missing and the test should return.
fn provider(test: &str) -> Option<PathBuf> {
    if find_in_path("openssl").is_none() {
        eprintln!("SKIPPED {test}: `openssl` is not in PATH (apt-get install -y openssl)");
        return None;
    }
    let out = Command::new("openssl")
        .args(["version", "-m"])
        .output()
        .expect("openssl version -m");
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .split('"')
        .nth(1)
        .unwrap_or("/usr/lib/x86_64-linux-gnu/ossl-modules");
    let so = Path::new(dir).join("pkcs11.so");
    if !so.exists() {
        eprintln!(
            "SKIPPED {test}: {} is missing (Debian package pkcs11-provider, in \
             bookworm-backports on Debian 12; scripts/test installs it)",
            so.display()
        );
        return None;
    }
    Some(so)
}

/// Writes an OpenSSL configuration that activates the default provider and
/// pkcs11-provider on our module, with the user PIN in a file.
fn write_conf(env: &TestEnv, provider: &Path) -> PathBuf {
    let pin = env.dir.path().join("user.pin");
    std::fs::write(&pin, USER_PIN).expect("write the PIN file");
    let conf = format!(
        "openssl_conf = openssl_init\n\
         [openssl_init]\n\
         providers = provider_sect\n\
         [provider_sect]\n\
         default = default_sect\n\
         pkcs11 = pkcs11_sect\n\
         [default_sect]\n\
         activate = 1\n\
         [pkcs11_sect]\n\
         module = {}\n\
         pkcs11-module-path = {}\n\
         pkcs11-module-token-pin = file:{}\n\
         activate = 1\n",
        provider.display(),
        module_path().display(),
        pin.display()
    );
    let path = env.dir.path().join("openssl-provider.cnf");
    std::fs::write(&path, conf).expect("write the OpenSSL configuration");
    path
}

/// `openssl <args>`: with `conf` (the provider on our module), or plain.
fn openssl(env: &TestEnv, conf: Option<&Path>, args: &[&str]) -> Run {
    let mut cmd = Command::new("openssl");
    cmd.args(args)
        .envs(env.env_vars())
        .env_remove("OPENSSL_CONF");
    if let Some(conf) = conf {
        cmd.env("OPENSSL_CONF", conf);
    }
    let what = format!("openssl {}", args.join(" "));
    run_captured(env, cmd, b"", TIMEOUT, &what)
}

/// As `openssl`, and the command must succeed.
#[track_caller]
fn openssl_ok(env: &TestEnv, conf: Option<&Path>, args: &[&str]) -> Run {
    let r = openssl(env, conf, args);
    assert!(
        r.status.success(),
        "{}\nmodule log (tail):\n{}",
        r.show(),
        env.log_tail(30)
    );
    r
}

fn path_str(p: &Path) -> &str {
    p.to_str().expect("UTF-8 test path")
}

/// A token key pair (public, private) labelled `label`.
fn key_pair(s: &Session, rsa: bool, label: &str, id: u8) -> (ObjectHandle, ObjectHandle) {
    let common = |extra: &[Attribute]| {
        let mut t = vec![
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(vec![id]),
        ];
        t.extend_from_slice(extra);
        t
    };
    let (mech, public, private) = if rsa {
        (
            Mechanism::RsaPkcsKeyPairGen,
            common(&[
                Attribute::ModulusBits(2048.into()),
                Attribute::PublicExponent(vec![1, 0, 1]),
                Attribute::Verify(true),
                Attribute::Encrypt(true),
            ]),
            common(&[
                Attribute::Private(true),
                Attribute::Sign(true),
                Attribute::Decrypt(true),
            ]),
        )
    } else {
        (
            Mechanism::EccKeyPairGen,
            common(&[Attribute::EcParams(P256.to_vec()), Attribute::Verify(true)]),
            common(&[
                Attribute::Private(true),
                Attribute::Sign(true),
                Attribute::Derive(true),
            ]),
        )
    };
    s.generate_key_pair(&mech, &public, &private)
        .expect("C_GenerateKeyPair")
}

/// The PEM public key the provider reads for `label`, checked against the
/// token's `CKA_PUBLIC_KEY_INFO` (converted to PEM by plain OpenSSL).
fn provider_public(
    env: &TestEnv,
    conf: &Path,
    s: &Session,
    public: ObjectHandle,
    label: &str,
) -> PathBuf {
    let pem = env.dir.path().join(format!("{label}.pub.pem"));
    let uri = format!("pkcs11:object={label};type=public");
    openssl_ok(
        env,
        Some(conf),
        &[
            "pkey",
            "-pubin",
            "-in",
            &uri,
            "-pubout",
            "-out",
            path_str(&pem),
        ],
    );
    let spki = match s
        .get_attributes(public, &[AttributeType::PublicKeyInfo])
        .expect("C_GetAttributeValue")
        .as_slice()
    {
        [Attribute::PublicKeyInfo(der)] => der.clone(),
        other => panic!("CKA_PUBLIC_KEY_INFO: {other:?}"),
    };
    let der = env.dir.path().join(format!("{label}.spki.der"));
    std::fs::write(&der, &spki).expect("write SPKI");
    let ours = env.dir.path().join(format!("{label}.spki.pem"));
    openssl_ok(
        env,
        None,
        &[
            "pkey",
            "-pubin",
            "-inform",
            "DER",
            "-in",
            path_str(&der),
            "-out",
            path_str(&ours),
        ],
    );
    assert_eq!(
        std::fs::read(&pem).expect("provider public key"),
        std::fs::read(&ours).expect("token public key"),
        "{label}: the provider's public key differs from CKA_PUBLIC_KEY_INFO"
    );
    pem
}

/// Makes a token of the current policy with an RSA-2048 (`rsa-key`) and a
/// P-256 (`ec-key`) key pair; returns the module handle, the session and the
/// exported public keys (RSA, EC).
fn token_with_keys(env: &TestEnv, conf: &Path) -> (Pkcs11, Session, PathBuf, PathBuf) {
    let p = env.load();
    let slot = ready_token(&p, "provider-tok");
    let s = user_session(&p, slot);
    let (rsa_pub, _) = key_pair(&s, true, "rsa-key", 1);
    let (ec_pub, _) = key_pair(&s, false, "ec-key", 2);
    let rsa = provider_public(env, conf, &s, rsa_pub, "rsa-key");
    let ec = provider_public(env, conf, &s, ec_pub, "ec-key");
    (p, s, rsa, ec)
}

#[test]
fn provider_signs_and_decrypts_with_token_keys() {
    const TEST: &str = "provider_signs_and_decrypts_with_token_keys";
    let env = TestEnv::new();
    let Some(provider) = provider(TEST) else {
        return;
    };
    let conf = write_conf(&env, &provider);
    let (_p, _s, rsa, ec) = token_with_keys(&env, &conf);
    let msg = env.dir.path().join("msg.bin");
    let data: Vec<u8> = (0..3000u32).map(|i| (i * 31 + 7) as u8).collect();
    std::fs::write(&msg, &data).expect("write message");

    let pss = [
        "-sigopt",
        "rsa_padding_mode:pss",
        "-sigopt",
        "rsa_pss_saltlen:32",
    ];
    let cases: [(&str, &str, &str, &Path, &[&str]); 3] = [
        ("RSA PKCS#1 v1.5", "rsa-key", "-sha256", &rsa, &[]),
        ("RSA-PSS", "rsa-key", "-sha256", &rsa, &pss),
        ("ECDSA", "ec-key", "-sha384", &ec, &[]),
    ];
    for (i, (what, label, digest, public, opts)) in cases.into_iter().enumerate() {
        let sig = env.dir.path().join(format!("sig-{i}"));
        let uri = format!("pkcs11:object={label};type=private");
        let mut sign = vec!["dgst", digest];
        sign.extend_from_slice(opts);
        sign.extend(["-sign", &uri, "-out", path_str(&sig), path_str(&msg)]);
        openssl_ok(&env, Some(&conf), &sign);
        // Plain OpenSSL, no provider, checks it with the exported public key.
        let mut verify = vec!["dgst", digest];
        verify.extend_from_slice(opts);
        verify.extend([
            "-verify",
            path_str(public),
            "-signature",
            path_str(&sig),
            path_str(&msg),
        ]);
        let r = openssl_ok(&env, None, &verify);
        assert!(r.stdout.contains("Verified OK"), "{what}: {}", r.show());
        // A damaged signature does not verify.
        let mut bad = std::fs::read(&sig).expect("signature");
        let mid = bad.len() / 2;
        bad[mid] ^= 0x40;
        std::fs::write(&sig, bad).expect("write damaged signature");
        let r = openssl(&env, None, &verify);
        assert!(
            !r.status.success(),
            "{what}: damaged signature verified: {}",
            r.show()
        );
    }

    // RSA-OAEP: plain OpenSSL encrypts, the token decrypts through the provider.
    let secret: Vec<u8> = (0..32u8).map(|i| i.wrapping_mul(37) ^ 0x5c).collect();
    let (pt, ct, back) = (
        env.dir.path().join("secret.bin"),
        env.dir.path().join("oaep.bin"),
        env.dir.path().join("back.bin"),
    );
    std::fs::write(&pt, &secret).expect("write secret");
    let oaep = [
        "-pkeyopt",
        "rsa_padding_mode:oaep",
        "-pkeyopt",
        "rsa_oaep_md:sha256",
        "-pkeyopt",
        "rsa_mgf1_md:sha256",
    ];
    let mut enc = vec!["pkeyutl", "-encrypt", "-pubin", "-inkey", path_str(&rsa)];
    enc.extend_from_slice(&oaep);
    enc.extend(["-in", path_str(&pt), "-out", path_str(&ct)]);
    openssl_ok(&env, None, &enc);
    let mut dec = vec![
        "pkeyutl",
        "-decrypt",
        "-inkey",
        "pkcs11:object=rsa-key;type=private",
    ];
    dec.extend_from_slice(&oaep);
    dec.extend(["-in", path_str(&ct), "-out", path_str(&back)]);
    openssl_ok(&env, Some(&conf), &dec);
    assert_eq!(
        std::fs::read(&back).expect("decrypted"),
        secret,
        "OAEP round trip"
    );

    // ECDH on an hsm token: the provider asks for a readable secret, refused.
    let (_peer, peer_pub, z) = peer_key(&env);
    let r = derive_through_provider(&env, &conf, &peer_pub, &z);
    assert!(
        !r.status.success(),
        "hsm token gave out an ECDH secret: {}",
        r.show()
    );
    assert!(
        env.log().contains("C_DeriveKey refused") && env.log().contains("'hsm'"),
        "the module log names the policy:\n{}",
        env.log_tail(20)
    );
}

/// ECDH of the token's `ec-key` with `peer_pub` through the provider, the
/// secret written to `z`.
fn derive_through_provider(env: &TestEnv, conf: &Path, peer_pub: &Path, z: &Path) -> Run {
    openssl(
        env,
        Some(conf),
        &[
            "pkeyutl",
            "-derive",
            "-inkey",
            "pkcs11:object=ec-key;type=private",
            "-peerkey",
            path_str(peer_pub),
            "-out",
            path_str(z),
        ],
    )
}

/// A P-256 key made by plain OpenSSL: (private PEM, public PEM, a path for
/// the shared secret).
fn peer_key(env: &TestEnv) -> (PathBuf, PathBuf, PathBuf) {
    let peer = env.dir.path().join("peer.pem");
    let peer_pub = env.dir.path().join("peer.pub.pem");
    openssl_ok(
        env,
        None,
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            path_str(&peer),
        ],
    );
    openssl_ok(
        env,
        None,
        &[
            "pkey",
            "-in",
            path_str(&peer),
            "-pubout",
            "-out",
            path_str(&peer_pub),
        ],
    );
    (peer, peer_pub, env.dir.path().join("z-token.bin"))
}

#[test]
fn provider_ecdh_agrees_with_openssl_on_a_spec_token() {
    const TEST: &str = "provider_ecdh_agrees_with_openssl_on_a_spec_token";
    let env = TestEnv::new();
    let Some(provider) = provider(TEST) else {
        return;
    };
    tok::set_policy("spec");
    let conf = write_conf(&env, &provider);
    let (_p, _s, _rsa, ec) = token_with_keys(&env, &conf);
    let (peer, peer_pub, z) = peer_key(&env);
    let r = derive_through_provider(&env, &conf, &peer_pub, &z);
    assert!(
        r.status.success(),
        "{}\nmodule log (tail):\n{}",
        r.show(),
        env.log_tail(30)
    );
    let z_peer = env.dir.path().join("z-peer.bin");
    openssl_ok(
        &env,
        None,
        &[
            "pkeyutl",
            "-derive",
            "-inkey",
            path_str(&peer),
            "-peerkey",
            path_str(&ec),
            "-out",
            path_str(&z_peer),
        ],
    );
    let (a, b) = (
        std::fs::read(&z).expect("token secret"),
        std::fs::read(&z_peer).expect("peer secret"),
    );
    assert_eq!(a.len(), 32, "P-256 shared secret length");
    assert_eq!(a, b, "ECDH through the provider differs from OpenSSL's");
}

/// The host has its own shared libcrypto, the module none: what lets them
/// share a process.
#[test]
fn openssl_has_its_libcrypto_and_the_module_none() {
    const TEST: &str = "openssl_has_its_libcrypto_and_the_module_none";
    let env = TestEnv::new();
    let Some(provider) = provider(TEST) else {
        return;
    };
    if find_in_path("ldd").is_none() || find_in_path("readelf").is_none() {
        eprintln!("SKIPPED {TEST}: ldd or readelf missing (apt-get install -y libc-bin binutils)");
        return;
    }
    let openssl_bin = find_in_path("openssl").expect("openssl");
    let ldd = Command::new("ldd").arg(&openssl_bin).output().expect("ldd");
    assert!(
        String::from_utf8_lossy(&ldd.stdout).contains("libcrypto.so.3"),
        "openssl is not linked to a shared libcrypto 3"
    );
    let dynamic = Command::new("readelf")
        .args(["-d", path_str(&module_path())])
        .output()
        .expect("readelf -d");
    let dynamic = String::from_utf8_lossy(&dynamic.stdout);
    let needed: Vec<&str> = dynamic.lines().filter(|l| l.contains("(NEEDED)")).collect();
    assert!(
        !needed.is_empty(),
        "readelf -d shows no NEEDED entries:\n{dynamic}"
    );
    for line in &needed {
        assert!(
            !line.contains("libcrypto") && !line.contains("libssl"),
            "the module needs a shared OpenSSL library: {line}"
        );
    }
    // The provider loads and reports itself active on our module.
    let conf = write_conf(&env, &provider);
    let r = openssl_ok(&env, Some(&conf), &["list", "-providers"]);
    assert!(
        r.stdout.contains("pkcs11") && r.stdout.contains("status: active"),
        "pkcs11-provider is not active: {}",
        r.show()
    );
}

/// An `openssl s_server` killed (and reaped) when dropped.
struct Server(ferrohsm_tests::child::Spawned);

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

/// A TCP port on the loopback nobody listens on (just now).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// `openssl s_client` to `accept`, trusting only `cert`, sending a request;
/// tried again while the server is not listening yet (it loads the provider
/// and finds the key first).
fn tls_client(env: &TestEnv, accept: &str, cert: &Path) -> Run {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let mut client = Command::new("openssl");
        client
            .args([
                "s_client",
                "-connect",
                accept,
                "-CAfile",
                path_str(cert),
                "-verify_return_error",
                "-verify_hostname",
                "localhost",
                "-servername",
                "localhost",
            ])
            .env_remove("OPENSSL_CONF");
        let what = format!("openssl s_client -connect {accept}");
        let r = run_captured(env, client, b"GET / HTTP/1.0\r\n\r\n", TIMEOUT, &what);
        let refused = !r.status.success()
            && (r.stderr.contains("onnection refused") || r.stdout.contains("onnection refused"));
        if !refused || std::time::Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn provider_keys_serve_tls() {
    const TEST: &str = "provider_keys_serve_tls";
    let env = TestEnv::new();
    let Some(provider) = provider(TEST) else {
        return;
    };
    let conf = write_conf(&env, &provider);
    let (_p, _s, _rsa, _ec) = token_with_keys(&env, &conf);
    for (label, sig_type) in [("ec-key", "ECDSA"), ("rsa-key", "RSA-PSS")] {
        let uri = format!("pkcs11:object={label};type=private");
        let cert = env.dir.path().join(format!("{label}.crt"));
        openssl_ok(
            &env,
            Some(&conf),
            &[
                "req",
                "-new",
                "-x509",
                "-days",
                "1",
                "-key",
                &uri,
                "-subj",
                "/CN=localhost",
                "-addext",
                "subjectAltName=DNS:localhost",
                "-out",
                path_str(&cert),
            ],
        );
        let accept = format!("127.0.0.1:{}", free_port());
        let mut cmd = Command::new("openssl");
        cmd.args([
            "s_server",
            "-accept",
            &accept,
            "-naccept",
            "1",
            "-key",
            &uri,
            "-cert",
            path_str(&cert),
            "-www",
            "-tls1_3",
        ])
        .envs(env.env_vars())
        .env("OPENSSL_CONF", &conf);
        let mut server = Server(spawn_captured(&env, &mut cmd, b""));
        let r = tls_client(&env, &accept, &cert);
        assert!(
            r.status.success()
                && r.stdout.contains("Verify return code: 0 (ok)")
                && r.stdout
                    .contains(&format!("Peer signature type: {sig_type}"))
                && r.stdout.contains("TLSv1.3"),
            "{}\nserver: {}\nmodule log (tail):\n{}",
            r.show(),
            read_lossy(&server.0.stderr),
            env.log_tail(30)
        );
        assert!(
            wait_or_kill(&mut server.0.child, TIMEOUT).is_some_and(|s| s.success()),
            "s_server did not end cleanly: {}",
            read_lossy(&server.0.stderr)
        );
    }
}
