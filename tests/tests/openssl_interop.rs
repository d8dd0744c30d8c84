//! RSA and EC interoperability with OpenSSL and OpenSC, the way real clients use
//! the module:
//!
//! 1. signatures made in the token (`CKM_SHA256_RSA_PKCS`, `CKM_RSA_PKCS` with a
//!    caller-built DigestInfo, `CKM_SHA256_RSA_PKCS_PSS`, `CKM_RSA_PKCS_PSS`,
//!    `CKM_ECDSA_SHA256`/`SHA384`, `CKM_ECDSA`) verify with the `openssl` command
//!    line against the public key exported from `CKA_PUBLIC_KEY_INFO` (itself
//!    checked byte for byte against one built from `CKA_MODULUS`/`CKA_PUBLIC_EXPONENT`
//!    or `CKA_EC_PARAMS`/`CKA_EC_POINT`), and a damaged signature does not;
//! 2. ciphertexts made by `openssl pkeyutl` (RSA-OAEP with SHA-256 and a label,
//!    OAEP with SHA-1, PKCS#1 v1.5) decrypt in the token;
//! 3. ECDH (`CKM_ECDH1_DERIVE`, `CKD_NULL`) with an OpenSSL key gives the secret
//!    `openssl pkeyutl -derive` gives;
//! 4. the libp11 OpenSSL engine signs with RSA and EC keys that never leave the
//!    token, found by `pkcs11:` URI;
//! 5. `openssl s_server` completes TLS 1.3 and 1.2 handshakes (RSA-PSS, RSA
//!    PKCS#1 v1.5, ECDSA) with its private key in the token, its self-signed
//!    certificate made by the engine and stored beside the key (`C_CreateObject`);
//! 6. OpenSC's `pkcs11-tool --test` and `--test-ec` pass in full, and its key
//!    generation, signing, verification and public-key export work on an `hsm`
//!    token (OpenSC 0.23's EC `--read-object` use-after-free is recognised and the
//!    module's side of it checked in-process instead).
//!
//! Needs `openssl` (Debian `openssl`), `pkcs11-tool` (`opensc`) and the libp11
//! engine (`libengine-pkcs11-openssl`); a test whose tool is missing says so on
//! stderr and returns (skips). `scripts/test` installs them.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use cryptoki::context::Pkcs11;
use cryptoki::mechanism::elliptic_curve::{EcKdf, Ecdh1DeriveParams};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, UserType};
use ferrohsm_tests::child::{
    Run, Spawned, find_in_path, init_token_args, pkcs11_tool, read_lossy, run_captured,
    spawn_captured, wait_or_kill,
};
use ferrohsm_tests::p11::{pin, ready_token, user_session};
use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN, module_path, to_hex};
use sha2::Digest;

/// How long any child process may take before the test fails as a hang.
const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// child processes
// ---------------------------------------------------------------------------

/// True if every tool is installed; otherwise says which is missing (and the
/// Debian package that has it) and the test should return.
fn have_tools(test: &str, tools: &[&str]) -> bool {
    for tool in tools {
        if find_in_path(tool).is_none() {
            let package = match *tool {
                "pkcs11-tool" => "opensc",
                other => other,
            };
            eprintln!(
                "SKIPPED {test}: `{tool}` is not in PATH (apt-get install -y {package}; \
                 scripts/test installs it)"
            );
            return false;
        }
    }
    true
}

/// The libp11 engine (`pkcs11.so` in OpenSSL's engines directory), if installed;
/// otherwise says so and the test should return.
fn engine_path(test: &str) -> Option<PathBuf> {
    let out = Command::new("openssl")
        .args(["version", "-e"])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let dir = text
        .split_once("ENGINESDIR:")
        .map(|(_, d)| d.trim().trim_matches('"').to_string());
    let found = dir
        .iter()
        .map(|d| Path::new(d).join("pkcs11.so"))
        .chain([PathBuf::from(
            "/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so",
        )])
        .find(|p| p.is_file());
    if found.is_none() {
        eprintln!(
            "SKIPPED {test}: the OpenSSL pkcs11 engine (pkcs11.so in {dir:?}) is not installed \
             (apt-get install -y libengine-pkcs11-openssl; scripts/test installs it)"
        );
    }
    found
}

/// A fresh numbered path in the test directory, for scratch files.
fn scratch(env: &TestEnv, stem: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    env.dir.path().join(format!("{stem}-{n}"))
}

/// Runs `cmd` to completion with `input` on stdin, failing the test if it takes
/// longer than `TIMEOUT`.
fn run_with(env: &TestEnv, cmd: Command, input: &[u8]) -> Run {
    let what = format!("{cmd:?}");
    run_captured(env, cmd, input, TIMEOUT, &what)
}

/// Runs `cmd` with empty stdin.
fn run(env: &TestEnv, cmd: Command) -> Run {
    run_with(env, cmd, b"")
}

/// Runs `cmd` and asserts exit status 0.
#[track_caller]
fn run_ok(env: &TestEnv, cmd: Command) -> Run {
    let r = run(env, cmd);
    r.assert_success(env);
    r
}

/// Plain `openssl <args>` (the system configuration, no engine) with the test's
/// module environment.
fn openssl(env: &TestEnv, args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(args)
        .envs(env.env_vars())
        .env_remove("OPENSSL_CONF");
    cmd
}

/// `openssl <args>` with `conf` (which loads the pkcs11 engine on our module) as
/// its configuration.
fn openssl_engine(env: &TestEnv, conf: &Path, args: &[&str]) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(args)
        .envs(env.env_vars())
        .env("OPENSSL_CONF", conf);
    cmd
}

/// Writes `data` to `name` in the test directory; returns the path.
fn write_file(env: &TestEnv, name: &str, data: &[u8]) -> PathBuf {
    let p = env.dir.path().join(name);
    std::fs::write(&p, data).unwrap_or_else(|e| panic!("write {}: {e}", p.display()));
    p
}

/// Reads `name` from the test directory.
fn read_file(env: &TestEnv, name: &str) -> Vec<u8> {
    let p = env.dir.path().join(name);
    std::fs::read(&p).unwrap_or_else(|e| panic!("read {}: {e}", p.display()))
}

/// A path as `&str` (test directories are UTF-8).
fn pstr(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// The OpenSSL configuration loading the libp11 engine with `MODULE_PATH` = our
/// module, plus what `openssl req -x509` needs for a self-signed TLS certificate.
fn write_engine_conf(env: &TestEnv, engine: &Path) -> PathBuf {
    let conf = format!(
        "openssl_conf = openssl_init\n\
         \n\
         [openssl_init]\n\
         engines = engine_section\n\
         \n\
         [engine_section]\n\
         pkcs11 = pkcs11_section\n\
         \n\
         [pkcs11_section]\n\
         engine_id = pkcs11\n\
         dynamic_path = {}\n\
         MODULE_PATH = {}\n\
         init = 0\n\
         \n\
         [req]\n\
         distinguished_name = req_dn\n\
         x509_extensions = v3_self\n\
         prompt = no\n\
         \n\
         [req_dn]\n\
         CN = localhost\n\
         \n\
         [v3_self]\n\
         basicConstraints = critical,CA:TRUE\n\
         keyUsage = critical,digitalSignature,keyCertSign\n\
         subjectAltName = DNS:localhost\n\
         subjectKeyIdentifier = hash\n",
        engine.display(),
        module_path().display()
    );
    write_file(env, "openssl-engine.cnf", conf.as_bytes())
}

// ---------------------------------------------------------------------------
// DER and PEM
// ---------------------------------------------------------------------------

/// DER length octets.
fn der_len(n: usize) -> Vec<u8> {
    match n {
        0..=0x7f => vec![n as u8],
        0x80..=0xff => vec![0x81, n as u8],
        0x100..=0xffff => vec![0x82, (n >> 8) as u8, n as u8],
        _ => panic!("DER length {n} too large for these tests"),
    }
}

/// One DER TLV.
fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut v = vec![tag];
    v.extend(der_len(content.len()));
    v.extend_from_slice(content);
    v
}

/// A DER SEQUENCE of already encoded parts.
fn seq(parts: &[&[u8]]) -> Vec<u8> {
    tlv(0x30, &parts.concat())
}

/// A DER INTEGER from unsigned big-endian bytes (minimal, non-negative).
fn uint(be: &[u8]) -> Vec<u8> {
    let first = be.iter().position(|&b| b != 0).unwrap_or(be.len());
    let mut content = be[first..].to_vec();
    if content.first().is_none_or(|&b| b & 0x80 != 0) {
        content.insert(0, 0);
    }
    tlv(0x02, &content)
}

/// A DER BIT STRING with no unused bits.
fn bit_string(bytes: &[u8]) -> Vec<u8> {
    let mut content = vec![0];
    content.extend_from_slice(bytes);
    tlv(0x03, &content)
}

/// Reads one DER TLV from the front of `b`: (tag, content, rest).
#[track_caller]
fn der_read(b: &[u8]) -> (u8, &[u8], &[u8]) {
    assert!(b.len() >= 2, "truncated DER: {}", to_hex(b));
    let tag = b[0];
    let (len, head) = match b[1] {
        n @ 0..=0x7f => (n as usize, 2),
        0x81 => (b[2] as usize, 3),
        0x82 => (((b[2] as usize) << 8) | b[3] as usize, 4),
        other => panic!("unexpected DER length octet {other:#x} in {}", to_hex(b)),
    };
    assert!(b.len() >= head + len, "truncated DER: {}", to_hex(b));
    (tag, &b[head..head + len], &b[head + len..])
}

/// DER of `rsaEncryption` with NULL parameters.
const RSA_ALG: &[u8] = &[
    0x30, 0x0d, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01, 0x05, 0x00,
];
/// DER of the `id-ecPublicKey` OID.
const EC_PUBLIC_KEY_OID: &[u8] = &[0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];

/// SubjectPublicKeyInfo of an RSA public key.
fn rsa_spki(modulus: &[u8], exponent: &[u8]) -> Vec<u8> {
    let key = seq(&[&uint(modulus), &uint(exponent)]);
    seq(&[RSA_ALG, &bit_string(&key)])
}

/// SubjectPublicKeyInfo of an EC public key (named curve, uncompressed point).
fn ec_spki(curve_oid: &[u8], point: &[u8]) -> Vec<u8> {
    seq(&[&seq(&[EC_PUBLIC_KEY_OID, curve_oid]), &bit_string(point)])
}

/// The public key bytes (BIT STRING content) of a SubjectPublicKeyInfo.
#[track_caller]
fn spki_key_bits(spki: &[u8]) -> Vec<u8> {
    let (tag, body, rest) = der_read(spki);
    assert!(
        tag == 0x30 && rest.is_empty(),
        "not a SPKI: {}",
        to_hex(spki)
    );
    let (_, _alg, rest) = der_read(body);
    let (tag, bits, rest) = der_read(rest);
    assert!(
        tag == 0x03 && rest.is_empty() && bits.first() == Some(&0),
        "SPKI without a whole-byte BIT STRING: {}",
        to_hex(spki)
    );
    bits[1..].to_vec()
}

/// A DER ECDSA-Sig-Value from PKCS#11's `r || s`.
fn ecdsa_der(rs: &[u8]) -> Vec<u8> {
    let (r, s) = rs.split_at(rs.len() / 2);
    seq(&[&uint(r), &uint(s)])
}

/// Standard base64 with padding.
fn base64(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// PEM armour around DER.
fn pem(label: &str, der: &[u8]) -> String {
    let b64 = base64(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("ascii"));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Deterministic test data of `n` bytes.
fn test_data(n: usize, seed: u32) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678 ^ seed;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

/// `data` with one bit of byte `i` flipped.
fn flipped(data: &[u8], i: usize) -> Vec<u8> {
    let mut v = data.to_vec();
    v[i] ^= 0x01;
    v
}

// ---------------------------------------------------------------------------
// token, keys
// ---------------------------------------------------------------------------

/// One attribute's bytes, which must be readable.
#[track_caller]
fn attr_bytes(env: &TestEnv, s: &Session, h: ObjectHandle, t: AttributeType) -> Vec<u8> {
    let attrs = s
        .get_attributes(h, &[t])
        .unwrap_or_else(|e| panic!("C_GetAttributeValue {t:?}: {e}\n{}", env.log_tail(10)));
    match attrs.as_slice() {
        [
            Attribute::Modulus(v)
            | Attribute::PublicExponent(v)
            | Attribute::EcParams(v)
            | Attribute::EcPoint(v)
            | Attribute::PublicKeyInfo(v)
            | Attribute::Value(v)
            | Attribute::Id(v)
            | Attribute::Label(v),
        ] => v.clone(),
        other => panic!("{t:?} not readable: got {other:?}\n{}", env.log_tail(10)),
    }
}

/// The two halves of a generated key pair.
#[derive(Clone, Copy)]
struct KeyPair {
    public: ObjectHandle,
    private: ObjectHandle,
}

/// The NIST curves the module implements.
#[derive(Clone, Copy, Debug)]
enum Curve {
    P256,
    P384,
}

impl Curve {
    /// DER of the namedCurve OID (`CKA_EC_PARAMS`).
    fn params(self) -> &'static [u8] {
        match self {
            Curve::P256 => &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
            Curve::P384 => &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
        }
    }

    /// Bytes of a field element.
    fn field_len(self) -> usize {
        match self {
            Curve::P256 => 32,
            Curve::P384 => 48,
        }
    }

    /// OpenSSL's name.
    fn openssl_name(self) -> &'static str {
        match self {
            Curve::P256 => "P-256",
            Curve::P384 => "P-384",
        }
    }
}

/// Generates an RSA-2048 key pair (exponent 65537) labelled `label` with
/// `CKA_ID` = `id` on both halves; token objects if `token`.
fn gen_rsa(env: &TestEnv, s: &Session, label: &str, id: &[u8], token: bool) -> KeyPair {
    let public = [
        Attribute::Token(token),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::ModulusBits(2048.into()),
        Attribute::PublicExponent(vec![0x01, 0x00, 0x01]),
        Attribute::Verify(true),
        Attribute::Encrypt(true),
    ];
    let private = [
        Attribute::Token(token),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Sign(true),
        Attribute::Decrypt(true),
    ];
    let start = Instant::now();
    let (public, private) = s
        .generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &public, &private)
        .unwrap_or_else(|e| {
            panic!(
                "C_GenerateKeyPair(CKM_RSA_PKCS_KEY_PAIR_GEN, 2048): {e}\nmodule log (tail):\n{}",
                env.log_tail(20)
            )
        });
    eprintln!(
        "RSA-2048 key pair {label:?} generated in {:?}",
        start.elapsed()
    );
    KeyPair { public, private }
}

/// Generates an EC key pair on `curve` labelled `label` with `CKA_ID` = `id`;
/// token objects if `token`; the private key may derive.
fn gen_ec(
    env: &TestEnv,
    s: &Session,
    curve: Curve,
    label: &str,
    id: &[u8],
    token: bool,
) -> KeyPair {
    let public = [
        Attribute::Token(token),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::EcParams(curve.params().to_vec()),
        Attribute::Verify(true),
    ];
    let private = [
        Attribute::Token(token),
        Attribute::Private(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.to_vec()),
        Attribute::Sign(true),
        Attribute::Derive(true),
    ];
    let (public, private) = s
        .generate_key_pair(&Mechanism::EccKeyPairGen, &public, &private)
        .unwrap_or_else(|e| {
            panic!(
                "C_GenerateKeyPair(CKM_EC_KEY_PAIR_GEN, {curve:?}): {e}\nmodule log (tail):\n{}",
                env.log_tail(20)
            )
        });
    KeyPair { public, private }
}

/// The uncompressed EC point inside `CKA_EC_POINT` (a DER OCTET STRING).
#[track_caller]
fn ec_point(env: &TestEnv, s: &Session, public: ObjectHandle, curve: Curve) -> Vec<u8> {
    let wrapped = attr_bytes(env, s, public, AttributeType::EcPoint);
    let (tag, point, rest) = der_read(&wrapped);
    assert!(
        tag == 0x04 && rest.is_empty(),
        "CKA_EC_POINT must be a DER OCTET STRING around the point, got {}",
        to_hex(&wrapped)
    );
    assert_eq!(
        point.len(),
        1 + 2 * curve.field_len(),
        "{curve:?} point length: {}",
        to_hex(point)
    );
    assert_eq!(point[0], 0x04, "point not uncompressed: {}", to_hex(point));
    point.to_vec()
}

/// Exports a public key: reads `CKA_PUBLIC_KEY_INFO`, checks it byte for byte
/// against the SPKI built from the key's own attributes (`rsa`: modulus and
/// exponent; else the curve and point), checks OpenSSL parses it and re-encodes
/// it identically, and writes it as `<name>.pem`. Returns (PEM path, SPKI DER).
fn export_public(
    env: &TestEnv,
    s: &Session,
    public: ObjectHandle,
    curve: Option<Curve>,
    name: &str,
) -> (PathBuf, Vec<u8>) {
    let spki = attr_bytes(env, s, public, AttributeType::PublicKeyInfo);
    let built = match curve {
        None => {
            let n = attr_bytes(env, s, public, AttributeType::Modulus);
            let e = attr_bytes(env, s, public, AttributeType::PublicExponent);
            assert_eq!(n.len(), 256, "RSA-2048 CKA_MODULUS length");
            assert!(n[0] & 0x80 != 0, "RSA-2048 modulus top bit clear");
            let e_trim: Vec<u8> = e.iter().copied().skip_while(|&b| b == 0).collect();
            assert_eq!(e_trim, [1, 0, 1], "CKA_PUBLIC_EXPONENT {}", to_hex(&e));
            rsa_spki(&n, &e)
        }
        Some(curve) => {
            let params = attr_bytes(env, s, public, AttributeType::EcParams);
            assert_eq!(params, curve.params(), "CKA_EC_PARAMS of the {curve:?} key");
            let point = ec_point(env, s, public, curve);
            ec_spki(curve.params(), &point)
        }
    };
    assert_eq!(
        to_hex(&spki),
        to_hex(&built),
        "CKA_PUBLIC_KEY_INFO differs from the SPKI built from the key's own attributes"
    );
    let der_path = write_file(env, &format!("{name}.der"), &spki);
    let pem_path = write_file(
        env,
        &format!("{name}.pem"),
        pem("PUBLIC KEY", &spki).as_bytes(),
    );
    let again = env.dir.path().join(format!("{name}.openssl.der"));
    run_ok(
        env,
        openssl(
            env,
            &[
                "pkey",
                "-pubin",
                "-inform",
                "DER",
                "-in",
                pstr(&der_path),
                "-outform",
                "DER",
                "-out",
                pstr(&again),
            ],
        ),
    );
    assert_eq!(
        to_hex(&std::fs::read(&again).expect("openssl re-encoding")),
        to_hex(&spki),
        "OpenSSL re-encodes the module's SPKI differently (not canonical DER?)"
    );
    (pem_path, spki)
}

/// Signs `data` in the token, failing with the module log on error.
#[track_caller]
fn sign(env: &TestEnv, s: &Session, mech: &Mechanism, key: ObjectHandle, data: &[u8]) -> Vec<u8> {
    s.sign(mech, key, data).unwrap_or_else(|e| {
        panic!(
            "C_Sign with {:?}: {e}\nmodule log (tail):\n{}",
            mech.mechanism_type(),
            env.log_tail(20)
        )
    })
}

/// `openssl dgst -<md> -verify pub -signature sig [extra] msg`: did it verify?
fn dgst_verifies(
    env: &TestEnv,
    md: &str,
    public: &Path,
    msg: &Path,
    sig: &[u8],
    extra: &[&str],
) -> Run {
    let sig_path = write_file(env, &format!("{}.sig", pstr(&scratch(env, "dgst"))), sig);
    let mut args = vec![
        "dgst",
        md,
        "-verify",
        pstr(public),
        "-signature",
        pstr(&sig_path),
    ];
    args.extend_from_slice(extra);
    args.push(pstr(msg));
    run(env, openssl(env, &args))
}

/// Asserts `openssl dgst -verify` accepts `sig` and rejects it with one byte changed.
#[track_caller]
fn assert_dgst_verify(
    env: &TestEnv,
    what: &str,
    md: &str,
    public: &Path,
    msg: &Path,
    sig: &[u8],
    extra: &[&str],
) {
    let good = dgst_verifies(env, md, public, msg, sig, extra);
    assert!(
        good.status.success() && good.stdout.contains("Verified OK"),
        "{what}: OpenSSL does not verify the module's signature {}\n{}",
        to_hex(sig),
        good.show()
    );
    let bad = dgst_verifies(env, md, public, msg, &flipped(sig, sig.len() / 3), extra);
    assert!(
        !bad.status.success() && !bad.stdout.contains("Verified OK"),
        "{what}: OpenSSL accepts a damaged signature\n{}",
        bad.show()
    );
}

/// `openssl pkeyutl -verify` of `sig` over the precomputed `digest`.
fn pkeyutl_verifies(env: &TestEnv, public: &Path, digest: &[u8], sig: &[u8], opts: &[&str]) -> Run {
    let base = scratch(env, "pkeyutl");
    let dgst_path = write_file(env, &format!("{}.in", pstr(&base)), digest);
    let sig_path = write_file(env, &format!("{}.sig", pstr(&base)), sig);
    let mut args = vec![
        "pkeyutl",
        "-verify",
        "-pubin",
        "-inkey",
        pstr(public),
        "-in",
        pstr(&dgst_path),
        "-sigfile",
        pstr(&sig_path),
    ];
    for o in opts {
        args.extend(["-pkeyopt", o]);
    }
    run(env, openssl(env, &args))
}

/// Asserts `openssl pkeyutl -verify` accepts `sig` over `digest` and rejects
/// a damaged copy.
#[track_caller]
fn assert_pkeyutl_verify(
    env: &TestEnv,
    what: &str,
    public: &Path,
    digest: &[u8],
    sig: &[u8],
    opts: &[&str],
) {
    let good = pkeyutl_verifies(env, public, digest, sig, opts);
    assert!(
        good.status.success() && good.stdout.contains("Signature Verified Successfully"),
        "{what}: OpenSSL does not verify the module's signature {}\n{}",
        to_hex(sig),
        good.show()
    );
    let bad = pkeyutl_verifies(env, public, digest, &flipped(sig, sig.len() / 3), opts);
    assert!(
        !bad.status.success() && !bad.stdout.contains("Signature Verified Successfully"),
        "{what}: OpenSSL accepts a damaged signature\n{}",
        bad.show()
    );
}

/// DER DigestInfo prefix for SHA-256 (RFC 8017, 9.2 note 1).
const SHA256_DIGEST_INFO: &[u8] = &[
    0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x01, 0x05,
    0x00, 0x04, 0x20,
];

fn pss_sha256(s_len: u64) -> PkcsPssParams {
    PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: s_len.into(),
    }
}

// ---------------------------------------------------------------------------
// 1. module signatures verify with openssl
// ---------------------------------------------------------------------------

#[test]
fn module_signatures_verify_with_openssl() {
    let env = TestEnv::new();
    if !have_tools("module_signatures_verify_with_openssl", &["openssl"]) {
        return;
    }
    let p = env.load();
    let slot = ready_token(&p, "sig-interop");
    let sess = user_session(&p, slot);
    let msg = test_data(1000, 1);
    let msg_path = write_file(&env, "msg.bin", &msg);
    let digest256 = sha2::Sha256::digest(&msg).to_vec();
    let digest384 = sha2::Sha384::digest(&msg).to_vec();

    // RSA-2048.
    let rsa = gen_rsa(&env, &sess, "rsa", b"\x01", false);
    let (rsa_pem, _) = export_public(&env, &sess, rsa.public, None, "rsa-pub");

    let v15 = sign(&env, &sess, &Mechanism::Sha256RsaPkcs, rsa.private, &msg);
    assert_eq!(v15.len(), 256, "CKM_SHA256_RSA_PKCS signature length");
    assert_dgst_verify(
        &env,
        "CKM_SHA256_RSA_PKCS",
        "-sha256",
        &rsa_pem,
        &msg_path,
        &v15,
        &[],
    );
    // CKM_RSA_PKCS over a caller-built DigestInfo is the same deterministic signature.
    let info = [SHA256_DIGEST_INFO, &digest256].concat();
    let raw15 = sign(&env, &sess, &Mechanism::RsaPkcs, rsa.private, &info);
    assert_eq!(
        to_hex(&raw15),
        to_hex(&v15),
        "CKM_RSA_PKCS over the SHA-256 DigestInfo differs from CKM_SHA256_RSA_PKCS"
    );

    let pss_opts = [
        "rsa_padding_mode:pss",
        "rsa_pss_saltlen:32",
        "digest:sha256",
    ];
    let pss = sign(
        &env,
        &sess,
        &Mechanism::Sha256RsaPkcsPss(pss_sha256(32)),
        rsa.private,
        &msg,
    );
    assert_eq!(pss.len(), 256, "CKM_SHA256_RSA_PKCS_PSS signature length");
    assert_pkeyutl_verify(
        &env,
        "CKM_SHA256_RSA_PKCS_PSS (sLen 32, MGF1-SHA256)",
        &rsa_pem,
        &digest256,
        &pss,
        &pss_opts,
    );
    assert_dgst_verify(
        &env,
        "CKM_SHA256_RSA_PKCS_PSS via dgst",
        "-sha256",
        &rsa_pem,
        &msg_path,
        &pss,
        &[
            "-sigopt",
            "rsa_padding_mode:pss",
            "-sigopt",
            "rsa_pss_saltlen:32",
        ],
    );
    let pss2 = sign(
        &env,
        &sess,
        &Mechanism::Sha256RsaPkcsPss(pss_sha256(32)),
        rsa.private,
        &msg,
    );
    assert_ne!(
        pss, pss2,
        "two PSS signatures with a 32-byte salt are identical: the salt is not random"
    );
    // CKM_RSA_PKCS_PSS signs a digest the caller computed.
    let raw_pss = sign(
        &env,
        &sess,
        &Mechanism::RsaPkcsPss(pss_sha256(32)),
        rsa.private,
        &digest256,
    );
    assert_pkeyutl_verify(
        &env,
        "CKM_RSA_PKCS_PSS over a SHA-256 digest",
        &rsa_pem,
        &digest256,
        &raw_pss,
        &pss_opts,
    );

    // ECDSA P-256 and P-384: r || s, each field-sized, converted to DER for OpenSSL.
    for (curve, mech, md, digest) in [
        (Curve::P256, Mechanism::EcdsaSha256, "-sha256", &digest256),
        (Curve::P384, Mechanism::EcdsaSha384, "-sha384", &digest384),
    ] {
        let name = format!("ec-{}", curve.openssl_name());
        let ec = gen_ec(&env, &sess, curve, &name, b"\x02", false);
        let (ec_pem, _) = export_public(&env, &sess, ec.public, Some(curve), &name);
        let rs = sign(&env, &sess, &mech, ec.private, &msg);
        assert_eq!(
            rs.len(),
            2 * curve.field_len(),
            "{mech:?} on {curve:?}: signature must be r || s, each {} bytes",
            curve.field_len()
        );
        let what = format!("{:?} on {curve:?}", mech.mechanism_type());
        assert_dgst_verify(&env, &what, md, &ec_pem, &msg_path, &ecdsa_der(&rs), &[]);
        // A damaged r (before DER encoding) fails too.
        let bad = dgst_verifies(
            &env,
            md,
            &ec_pem,
            &msg_path,
            &ecdsa_der(&flipped(&rs, 5)),
            &[],
        );
        assert!(
            !bad.status.success(),
            "{what}: OpenSSL accepts a signature with r changed\n{}",
            bad.show()
        );
        // CKM_ECDSA signs a digest the caller computed.
        let raw = sign(&env, &sess, &Mechanism::Ecdsa, ec.private, digest);
        assert_eq!(raw.len(), 2 * curve.field_len(), "CKM_ECDSA on {curve:?}");
        assert_pkeyutl_verify(
            &env,
            &format!("CKM_ECDSA on {curve:?}"),
            &ec_pem,
            digest,
            &ecdsa_der(&raw),
            &[],
        );
    }
}

// ---------------------------------------------------------------------------
// 2. openssl ciphertexts decrypt in the module
// ---------------------------------------------------------------------------

#[test]
fn openssl_oaep_ciphertext_decrypts_in_module() {
    let env = TestEnv::new();
    if !have_tools("openssl_oaep_ciphertext_decrypts_in_module", &["openssl"]) {
        return;
    }
    let p = env.load();
    let slot = ready_token(&p, "oaep-interop");
    let sess = user_session(&p, slot);
    let rsa = gen_rsa(&env, &sess, "rsa-dec", b"\x03", false);
    let (rsa_pem, _) = export_public(&env, &sess, rsa.public, None, "rsa-pub");

    let encrypt = |name: &str, plaintext: &[u8], opts: &[&str]| -> Vec<u8> {
        let pt = write_file(&env, &format!("{name}.pt"), plaintext);
        let ct = env.dir.path().join(format!("{name}.ct"));
        let mut args = vec![
            "pkeyutl",
            "-encrypt",
            "-pubin",
            "-inkey",
            pstr(&rsa_pem),
            "-in",
            pstr(&pt),
            "-out",
            pstr(&ct),
        ];
        for o in opts {
            args.extend(["-pkeyopt", o]);
        }
        run_ok(&env, openssl(&env, &args));
        let c = std::fs::read(&ct).expect("ciphertext");
        assert_eq!(c.len(), 256, "{name}: RSA-2048 ciphertext length");
        c
    };
    let decrypt = |mech: &Mechanism, ct: &[u8]| sess.decrypt(mech, rsa.private, ct);

    // OAEP, SHA-256 / MGF1-SHA-256, with a label; a short and the longest plaintext.
    let label = b"ferrohsm OAEP label".to_vec();
    let label_opt = format!("rsa_oaep_label:{}", to_hex(&label));
    let oaep256 = [
        "rsa_padding_mode:oaep",
        "rsa_oaep_md:sha256",
        "rsa_mgf1_md:sha256",
        label_opt.as_str(),
    ];
    let mech = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::data_specified(&label),
    ));
    for (name, len) in [("oaep-short", 24), ("oaep-max", 256 - 2 * 32 - 2)] {
        let plaintext = test_data(len, len as u32);
        let ct = encrypt(name, &plaintext, &oaep256);
        let got = decrypt(&mech, &ct).unwrap_or_else(|e| {
            panic!(
                "C_Decrypt(CKM_RSA_PKCS_OAEP SHA-256, label) of OpenSSL's {len}-byte ciphertext: {e}\n\
                 module log (tail):\n{}",
                env.log_tail(20)
            )
        });
        assert_eq!(
            to_hex(&got),
            to_hex(&plaintext),
            "OAEP-SHA256 {len}-byte plaintext"
        );
    }
    // The same ciphertext with another label must not decrypt.
    let ct = encrypt("oaep-label", b"label check", &oaep256);
    let other = b"another label".to_vec();
    let wrong = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::data_specified(&other),
    ));
    let res = decrypt(&wrong, &ct);
    assert!(
        res.is_err(),
        "OAEP ciphertext decrypted under the wrong label: {res:?}"
    );
    let unlabelled = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ));
    let res = decrypt(&unlabelled, &ct);
    assert!(
        res.is_err(),
        "labelled OAEP ciphertext decrypted with an empty label: {res:?}"
    );

    // OAEP with OpenSSL's defaults: SHA-1, MGF1-SHA-1, empty label.
    let plaintext = b"OAEP with SHA-1 and no label".to_vec();
    let ct = encrypt("oaep-sha1", &plaintext, &["rsa_padding_mode:oaep"]);
    let sha1 = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ));
    let got = decrypt(&sha1, &ct).unwrap_or_else(|e| {
        panic!(
            "C_Decrypt(CKM_RSA_PKCS_OAEP SHA-1, no label): {e}\nmodule log (tail):\n{}",
            env.log_tail(20)
        )
    });
    assert_eq!(got, plaintext, "OAEP-SHA1 plaintext");

    // PKCS#1 v1.5 encryption.
    let plaintext = b"PKCS#1 v1.5 encryption from OpenSSL".to_vec();
    let ct = encrypt("pkcs1", &plaintext, &["rsa_padding_mode:pkcs1"]);
    let got = decrypt(&Mechanism::RsaPkcs, &ct).unwrap_or_else(|e| {
        panic!(
            "C_Decrypt(CKM_RSA_PKCS): {e}\nmodule log (tail):\n{}",
            env.log_tail(20)
        )
    });
    assert_eq!(got, plaintext, "PKCS#1 v1.5 plaintext");
}

// ---------------------------------------------------------------------------
// 3. ECDH agrees with openssl
// ---------------------------------------------------------------------------

#[test]
fn ecdh_agrees_with_openssl() {
    let env = TestEnv::with_config("default_policy = \"spec\"");
    if !have_tools("ecdh_agrees_with_openssl", &["openssl"]) {
        return;
    }
    let p = env.load();
    let slot = ready_token(&p, "ecdh-interop");
    let sess = user_session(&p, slot);
    for curve in [Curve::P256, Curve::P384] {
        let name = curve.openssl_name();
        // OpenSSL's key pair, and its public point.
        let peer = env.dir.path().join(format!("peer-{name}.pem"));
        let peer_pub = env.dir.path().join(format!("peer-{name}.pub.der"));
        let paramgen = format!("ec_paramgen_curve:{name}");
        run_ok(
            &env,
            openssl(
                &env,
                &[
                    "genpkey",
                    "-algorithm",
                    "EC",
                    "-pkeyopt",
                    &paramgen,
                    "-out",
                    pstr(&peer),
                ],
            ),
        );
        run_ok(
            &env,
            openssl(
                &env,
                &[
                    "pkey",
                    "-in",
                    pstr(&peer),
                    "-pubout",
                    "-outform",
                    "DER",
                    "-out",
                    pstr(&peer_pub),
                ],
            ),
        );
        let peer_point = spki_key_bits(&std::fs::read(&peer_pub).expect("peer public key"));
        assert_eq!(peer_point.len(), 1 + 2 * curve.field_len());

        // The module's key pair; it derives with OpenSSL's point.
        let ours = gen_ec(&env, &sess, curve, &format!("ecdh-{name}"), b"\x04", false);
        let (our_pem, _) = export_public(
            &env,
            &sess,
            ours.public,
            Some(curve),
            &format!("ours-{name}"),
        );
        let len = curve.field_len();
        let template = [
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen((len as u64).into()),
            Attribute::Token(false),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ];
        let params = Ecdh1DeriveParams::new(EcKdf::null(), &peer_point);
        let secret = sess
            .derive_key(&Mechanism::Ecdh1Derive(params), ours.private, &template)
            .unwrap_or_else(|e| {
                panic!(
                    "C_DeriveKey(CKM_ECDH1_DERIVE, CKD_NULL, {curve:?}): {e}\nmodule log (tail):\n{}",
                    env.log_tail(20)
                )
            });
        let ours_value = attr_bytes(&env, &sess, secret, AttributeType::Value);
        assert_eq!(ours_value.len(), len, "derived CKA_VALUE length");

        let shared = env.dir.path().join(format!("shared-{name}.bin"));
        run_ok(
            &env,
            openssl(
                &env,
                &[
                    "pkeyutl",
                    "-derive",
                    "-inkey",
                    pstr(&peer),
                    "-peerkey",
                    pstr(&our_pem),
                    "-out",
                    pstr(&shared),
                ],
            ),
        );
        let theirs = std::fs::read(&shared).expect("openssl shared secret");
        assert_eq!(
            to_hex(&ours_value),
            to_hex(&theirs),
            "{curve:?}: the module's ECDH secret differs from OpenSSL's"
        );
    }
}

// ---------------------------------------------------------------------------
// 4. the OpenSSL pkcs11 engine signs with token keys
// ---------------------------------------------------------------------------

/// A `pkcs11:` URI for the private key `object` on token `token`, PIN included.
fn key_uri(token: &str, object: &str) -> String {
    format!("pkcs11:token={token};object={object};type=private;pin-value={USER_PIN}")
}

/// Makes an `hsm` token `token` holding an RSA-2048 key pair `rsa-key` (CKA_ID 01)
/// and a P-256 key pair `ec-key` (CKA_ID 02) as token objects; checks the
/// private keys are sensitive and unextractable; returns the exported public
/// keys' PEM paths (RSA, EC).
fn engine_token(env: &TestEnv, p: &Pkcs11, token: &str) -> (PathBuf, PathBuf) {
    let slot = ready_token(p, token);
    let sess = user_session(p, slot);
    let rsa = gen_rsa(env, &sess, "rsa-key", b"\x01", true);
    let ec = gen_ec(env, &sess, Curve::P256, "ec-key", b"\x02", true);
    for (what, k) in [("RSA", rsa.private), ("EC", ec.private)] {
        let attrs = sess
            .get_attributes(k, &[AttributeType::Sensitive, AttributeType::Extractable])
            .expect("C_GetAttributeValue");
        assert!(
            attrs.contains(&Attribute::Sensitive(true))
                && attrs.contains(&Attribute::Extractable(false)),
            "{what} private key on an hsm token must be sensitive and unextractable: {attrs:?}"
        );
    }
    let (rsa_pem, _) = export_public(env, &sess, rsa.public, None, "rsa-key");
    let (ec_pem, _) = export_public(env, &sess, ec.public, Some(Curve::P256), "ec-key");
    sess.logout().expect("C_Logout");
    (rsa_pem, ec_pem)
}

#[test]
fn openssl_engine_signs_with_token_key() {
    const TEST: &str = "openssl_engine_signs_with_token_key";
    let env = TestEnv::new();
    if !have_tools(TEST, &["openssl"]) {
        return;
    }
    let Some(engine) = engine_path(TEST) else {
        return;
    };
    let conf = write_engine_conf(&env, &engine);
    let p = env.load();
    let token = "engine-tok";
    let (rsa_pem, ec_pem) = engine_token(&env, &p, token);
    let msg = test_data(3000, 4);
    let msg_path = write_file(&env, "msg.bin", &msg);

    let cases = [
        ("RSA by label", key_uri(token, "rsa-key"), &rsa_pem),
        (
            "RSA by id",
            format!("pkcs11:token={token};id=%01;type=private;pin-value={USER_PIN}"),
            &rsa_pem,
        ),
        ("EC by label", key_uri(token, "ec-key"), &ec_pem),
    ];
    for (i, (what, uri, public)) in cases.iter().enumerate() {
        let sig = env.dir.path().join(format!("engine-{i}.sig"));
        let r = run(
            &env,
            openssl_engine(
                &env,
                &conf,
                &[
                    "dgst",
                    "-engine",
                    "pkcs11",
                    "-keyform",
                    "engine",
                    "-sign",
                    uri,
                    "-sha256",
                    "-out",
                    pstr(&sig),
                    pstr(&msg_path),
                ],
            ),
        );
        assert!(
            r.status.success(),
            "{what}: openssl dgst -engine pkcs11 -sign failed\n{}\nmodule log (tail):\n{}",
            r.show(),
            env.log_tail(40)
        );
        let sig = std::fs::read(&sig).expect("engine signature");
        // Verified by plain OpenSSL (no engine) with the key exported from the token.
        assert_dgst_verify(&env, what, "-sha256", public, &msg_path, &sig, &[]);
    }

    // The engine finds the public keys too, and they are the ones exported.
    for (object, public) in [("rsa-key", &rsa_pem), ("ec-key", &ec_pem)] {
        let uri = format!("pkcs11:token={token};object={object};type=public");
        let out = env.dir.path().join(format!("{object}.engine.pem"));
        let r = run(
            &env,
            openssl_engine(
                &env,
                &conf,
                &[
                    "pkey",
                    "-engine",
                    "pkcs11",
                    "-inform",
                    "engine",
                    "-pubin",
                    "-in",
                    &uri,
                    "-pubout",
                    "-out",
                    pstr(&out),
                ],
            ),
        );
        assert!(
            r.status.success(),
            "openssl pkey -engine pkcs11 -pubin {uri}\n{}\nmodule log (tail):\n{}",
            r.show(),
            env.log_tail(40)
        );
        assert_eq!(
            std::fs::read_to_string(&out).expect("engine public key"),
            std::fs::read_to_string(public).expect("exported public key"),
            "{object}: the engine's public key differs from CKA_PUBLIC_KEY_INFO"
        );
    }
}

// ---------------------------------------------------------------------------
// 5. TLS with the server key in the token
// ---------------------------------------------------------------------------

/// A child process killed (and reaped) when dropped, so a failing test never
/// leaves a server behind.
struct KillOnDrop(Spawned);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.child.kill();
        let _ = self.0.child.wait();
    }
}

impl KillOnDrop {
    fn output(&self) -> String {
        format!(
            "server stdout:\n{}\nserver stderr:\n{}",
            read_lossy(&self.0.stdout),
            read_lossy(&self.0.stderr)
        )
    }
}

/// One TLS handshake: `openssl s_server` with the token key `uri` and `cert`
/// on an ephemeral port (one connection), `openssl s_client` trusting only
/// `cert`; asserts the chain verifies, the peer signature type is `sig_type`
/// and the HTTP answer arrives. Returns the client's output.
fn handshake(
    env: &TestEnv,
    conf: &Path,
    uri: &str,
    cert: &Path,
    client_opts: &[&str],
    sig_type: &str,
) -> String {
    let what = format!("TLS {client_opts:?} with {uri}");
    let mut cmd = openssl_engine(
        env,
        conf,
        &[
            "s_server",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-key",
            uri,
            "-cert",
            pstr(cert),
            "-accept",
            "127.0.0.1:0",
            "-naccept",
            "1",
            "-www",
        ],
    );
    let mut server = KillOnDrop(spawn_captured(env, &mut cmd, b""));
    // Wait (bounded) for the server to report its port.
    let start = Instant::now();
    let port = loop {
        let out = read_lossy(&server.0.stdout);
        if let Some(port) = out.lines().find_map(|l| {
            l.strip_prefix("ACCEPT 127.0.0.1:")
                .and_then(|p| p.trim().parse::<u16>().ok())
        }) {
            break port;
        }
        if let Some(st) = server.0.child.try_wait().expect("try_wait") {
            panic!(
                "{what}: s_server exited ({st}) before accepting\n{}\nmodule log (tail):\n{}",
                server.output(),
                env.log_tail(40)
            );
        }
        if start.elapsed() > TIMEOUT {
            panic!(
                "{what}: s_server did not start listening within {TIMEOUT:?}\n{}",
                server.output()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let connect = format!("127.0.0.1:{port}");
    let mut args = vec![
        "s_client",
        "-connect",
        &connect,
        "-CAfile",
        pstr(cert),
        "-verify_return_error",
        "-verify_hostname",
        "localhost",
        "-servername",
        "localhost",
        "-ign_eof",
    ];
    args.extend_from_slice(client_opts);
    let client = run_with(env, openssl(env, &args), b"GET / HTTP/1.0\r\n\r\n");
    let fail = |why: &str| -> ! {
        panic!(
            "{what}: {why}\n{}\n{}\nmodule log (tail):\n{}",
            client.show(),
            server.output(),
            env.log_tail(40)
        )
    };
    if !client.status.success() {
        fail("s_client failed");
    }
    if !client.stdout.contains("Verify return code: 0 (ok)") {
        fail("the server certificate did not verify");
    }
    if !client
        .stdout
        .lines()
        .any(|l| l.trim() == format!("Peer signature type: {sig_type}"))
    {
        fail(&format!("peer signature type is not {sig_type}"));
    }
    if !client.stdout.contains("HTTP/1.0 200 ok") {
        fail("no HTTP answer from the server after the handshake");
    }
    // -naccept 1: the server exits by itself after the one connection.
    if wait_or_kill(&mut server.0.child, TIMEOUT).is_none() {
        panic!(
            "{what}: s_server did not exit after its one connection\n{}",
            server.output()
        );
    }
    client.stdout
}

/// The subject Name (whole DER element) of a DER certificate.
fn certificate_subject(cert: &[u8]) -> Vec<u8> {
    let (_, certificate, _) = der_read(cert);
    let (_, tbs, _) = der_read(certificate);
    let mut rest = tbs;
    // [0] version (optional), serialNumber, signature, issuer, validity, subject.
    if rest.first() == Some(&0xa0) {
        rest = der_read(rest).2;
    }
    for _ in 0..4 {
        rest = der_read(rest).2;
    }
    let (tag, _, after) = der_read(rest);
    assert_eq!(tag, 0x30, "certificate subject is not a SEQUENCE");
    rest[..rest.len() - after.len()].to_vec()
}

/// Stores `der` as an X.509 certificate token object labelled `label` with
/// `CKA_ID` = `id` on token `token`, and checks it reads back.
fn import_certificate(env: &TestEnv, p: &Pkcs11, token: &str, label: &str, id: u8, der: &[u8]) {
    let slot = p
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| {
            p.get_token_info(*s)
                .is_ok_and(|i| i.label().trim() == token)
        })
        .unwrap_or_else(|| panic!("token {token} listed"));
    let sess = user_session(p, slot);
    let subject = certificate_subject(der);
    let cert = sess
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(label.as_bytes().to_vec()),
            Attribute::Id(vec![id]),
            Attribute::Subject(subject),
            Attribute::Value(der.to_vec()),
        ])
        .unwrap_or_else(|e| {
            panic!(
                "C_CreateObject(CKO_CERTIFICATE, CKC_X_509): {e}\nmodule log (tail):\n{}",
                env.log_tail(20)
            )
        });
    assert_eq!(
        to_hex(&attr_bytes(env, &sess, cert, AttributeType::Value)),
        to_hex(der),
        "certificate CKA_VALUE read back"
    );
    sess.logout().expect("C_Logout");
}

#[test]
fn tls_handshake_with_key_in_token() {
    const TEST: &str = "tls_handshake_with_key_in_token";
    let env = TestEnv::new();
    if !have_tools(TEST, &["openssl"]) {
        return;
    }
    let Some(engine) = engine_path(TEST) else {
        return;
    };
    let conf = write_engine_conf(&env, &engine);
    let p = env.load();
    let token = "tls-tok";
    let (rsa_pem, ec_pem) = engine_token(&env, &p, token);

    for (object, id, public, cases) in [
        (
            "rsa-key",
            0x01u8,
            &rsa_pem,
            &[
                (&["-tls1_3"][..], "RSA-PSS"),
                (&["-tls1_2"][..], "RSA-PSS"),
                (&["-tls1_2", "-sigalgs", "RSA+SHA256"][..], "RSA"),
            ][..],
        ),
        (
            "ec-key",
            0x02u8,
            &ec_pem,
            &[(&["-tls1_3"][..], "ECDSA"), (&["-tls1_2"][..], "ECDSA")][..],
        ),
    ] {
        let uri = key_uri(token, object);
        // A self-signed certificate for the token key, signed by the engine.
        let cert = env.dir.path().join(format!("{object}.crt"));
        let r = run(
            &env,
            openssl_engine(
                &env,
                &conf,
                &[
                    "req",
                    "-new",
                    "-x509",
                    "-engine",
                    "pkcs11",
                    "-keyform",
                    "engine",
                    "-key",
                    &uri,
                    "-subj",
                    "/CN=localhost",
                    "-days",
                    "2",
                    "-sha256",
                    "-out",
                    pstr(&cert),
                ],
            ),
        );
        assert!(
            r.status.success(),
            "openssl req -x509 with {uri}\n{}\nmodule log (tail):\n{}",
            r.show(),
            env.log_tail(40)
        );
        // The certificate carries the token's public key and its signature verifies.
        let cert_pub = env.dir.path().join(format!("{object}.crt.pub.pem"));
        run_ok(
            &env,
            openssl(
                &env,
                &[
                    "x509",
                    "-in",
                    pstr(&cert),
                    "-noout",
                    "-pubkey",
                    "-out",
                    pstr(&cert_pub),
                ],
            ),
        );
        assert_eq!(
            std::fs::read_to_string(&cert_pub).expect("certificate public key"),
            std::fs::read_to_string(public).expect("exported public key"),
            "{object}: the certificate's key is not the token key"
        );
        let v = run_ok(
            &env,
            openssl(
                &env,
                &[
                    "verify",
                    "-CAfile",
                    pstr(&cert),
                    "-check_ss_sig",
                    pstr(&cert),
                ],
            ),
        );
        assert!(v.stdout.contains(": OK"), "{}", v.show());

        // The certificate joins its key in the token (C_CreateObject, same
        // CKA_ID), as a deployed identity would, before the handshakes.
        let cert_der = env.dir.path().join(format!("{object}.crt.der"));
        run_ok(
            &env,
            openssl(
                &env,
                &[
                    "x509",
                    "-in",
                    pstr(&cert),
                    "-outform",
                    "DER",
                    "-out",
                    pstr(&cert_der),
                ],
            ),
        );
        let der = std::fs::read(&cert_der).expect("certificate DER");
        import_certificate(&env, &p, token, object, id, &der);
        if find_in_path("pkcs11-tool").is_some() {
            let out = env.dir.path().join(format!("{object}.crt.read.der"));
            let id_hex = format!("{id:02x}");
            run_ok(
                &env,
                pkcs11_tool(
                    &env,
                    &[
                        "--token-label",
                        token,
                        "--read-object",
                        "--type",
                        "cert",
                        "--id",
                        &id_hex,
                        "-o",
                        pstr(&out),
                    ],
                ),
            );
            assert_eq!(
                to_hex(&std::fs::read(&out).expect("certificate read back")),
                to_hex(&der),
                "{object}: pkcs11-tool reads back a different certificate"
            );
        }

        for (opts, sig_type) in cases {
            let out = handshake(&env, &conf, &uri, &cert, opts, sig_type);
            let protocol = if opts.contains(&"-tls1_3") {
                "TLSv1.3"
            } else {
                "TLSv1.2"
            };
            assert!(
                out.lines()
                    .any(|l| l.trim() == format!("Protocol  : {protocol}")
                        || l.starts_with(&format!("New, {protocol}"))),
                "{object} {opts:?}: not a {protocol} session:\n{out}"
            );
        }
    }
}

// ---------------------------------------------------------------------------
// 6. pkcs11-tool's own test suites and key handling
// ---------------------------------------------------------------------------

/// The one failure line pkcs11-tool expects and accepts: `--test` tries
/// `C_SignUpdate` on the first RSA signature mechanism, which is single-part
/// (`CKM_RSA_PKCS`), and skips the multi-part check on this answer (as with SoftHSMv2).
const SINGLE_PART_WARNING: &str =
    "warning: PKCS11 function C_SignUpdate failed: rv = CKR_FUNCTION_NOT_SUPPORTED (0x54)";

/// Whether the installed OpenSC is 0.23.x (Debian 12), whose `--read-object
/// --type pubkey` of an EC key uses the EC point after freeing it.
fn opensc_0_23() -> bool {
    Command::new("dpkg-query")
        .args(["-W", "-f", "${Version}", "opensc"])
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0.23."))
}

/// Asserts a pkcs11-tool run exited 0 and printed no failure.
#[track_caller]
fn assert_clean(env: &TestEnv, r: &Run) {
    let bad: Vec<&str> = r
        .stdout
        .lines()
        .chain(r.stderr.lines())
        .filter(|l| {
            let low = l.to_ascii_lowercase();
            low.contains("fail") || l.contains("ERR") || low.contains("error")
        })
        .filter(|l| !l.trim_start().starts_with("No errors") && l.trim() != SINGLE_PART_WARNING)
        .collect();
    assert!(
        r.status.success() && bad.is_empty(),
        "failure lines {bad:#?}\n{}\nmodule log (tail):\n{}",
        r.show(),
        env.log_tail(40)
    );
}

#[test]
fn pkcs11_tool_test_suites() {
    let env = TestEnv::new();
    if !have_tools("pkcs11_tool_test_suites", &["pkcs11-tool", "openssl"]) {
        return;
    }
    let login = ["--login", "--pin", USER_PIN];
    let with = |token: &str, more: &[&str]| -> Vec<String> {
        ["--token-label", token]
            .iter()
            .chain(login.iter())
            .chain(more.iter())
            .map(|a| a.to_string())
            .collect()
    };
    let tool = |args: &[String]| -> Run {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        run(&env, pkcs11_tool(&env, &args))
    };

    // A `spec` token (FERROHSM_POLICY overrides the config) for the test suites.
    let mut init = pkcs11_tool(
        &env,
        &init_token_args("spec-tok", &["--init-pin", "--pin", USER_PIN]),
    );
    init.env("FERROHSM_POLICY", "spec");
    run_ok(&env, init);

    // --test tests the keys it finds: give it an RSA key pair.
    let r = tool(&with(
        "spec-tok",
        &[
            "--keypairgen",
            "--key-type",
            "rsa:2048",
            "--id",
            "10",
            "--label",
            "rsa-test",
            "--usage-sign",
            "--usage-decrypt",
        ],
    ));
    assert_clean(&env, &r);
    let r = tool(&with("spec-tok", &["--test"]));
    assert_clean(&env, &r);
    for needed in ["Signatures", "Verify", "Decryption", "No errors"] {
        assert!(
            r.stdout.contains(needed),
            "pkcs11-tool --test: no {needed:?} section:\n{}",
            r.show()
        );
    }
    assert!(
        !r.stdout.contains("not implemented") && !r.stdout.contains("No private key found"),
        "pkcs11-tool --test skipped its signature tests (no usable key or mechanism):\n{}",
        r.show()
    );
    // --test-ec makes token objects: it needs a R/W session.
    let r = tool(&with(
        "spec-tok",
        &[
            "--session-rw",
            "--test-ec",
            "--id",
            "20",
            "--key-type",
            "EC:prime256v1",
        ],
    ));
    assert_clean(&env, &r);
    for needed in ["Key pair generated", "Doing a signature", "==> OK"] {
        assert!(
            r.stdout.contains(needed),
            "pkcs11-tool --test-ec: no {needed:?}:\n{}",
            r.show()
        );
    }

    // An `hsm` token (the config's default): generate, sign, verify, export.
    run_ok(
        &env,
        pkcs11_tool(
            &env,
            &[
                "--slot-index",
                "1",
                "--init-token",
                "--so-pin",
                SO_PIN,
                "--label",
                "hsm-tok",
                "--init-pin",
                "--pin",
                USER_PIN,
            ],
        ),
    );
    for (kt, id, label) in [("rsa:2048", "01", "r"), ("EC:prime256v1", "02", "e")] {
        let r = tool(&with(
            "hsm-tok",
            &[
                "--keypairgen",
                "--key-type",
                kt,
                "--id",
                id,
                "--label",
                label,
            ],
        ));
        assert_clean(&env, &r);
    }
    let msg = write_file(&env, "tool-msg.bin", &test_data(777, 6));
    let msg = pstr(&msg);
    let p = |name: &str| pstr(&env.dir.path().join(name)).to_string();
    for (id, mech, name) in [
        ("02", "ECDSA-SHA256", "e"),
        ("01", "SHA256-RSA-PKCS", "r"),
        ("01", "SHA256-RSA-PKCS-PSS", "r"),
    ] {
        let sig = p(&format!("tool-{name}-{mech}.sig"));
        let r = tool(&with(
            "hsm-tok",
            &["--sign", "--id", id, "-m", mech, "-i", msg, "-o", &sig],
        ));
        assert_clean(&env, &r);
        let r = tool(&with(
            "hsm-tok",
            &[
                "--verify",
                "--id",
                id,
                "-m",
                mech,
                "-i",
                msg,
                "--signature-file",
                &sig,
            ],
        ));
        assert_clean(&env, &r);
        assert!(
            r.stdout.contains("Signature is valid"),
            "pkcs11-tool --verify {mech}:\n{}",
            r.show()
        );
        // A damaged signature is refused.
        let bad = p(&format!("tool-{name}-{mech}.bad"));
        let data = std::fs::read(&sig).expect("pkcs11-tool signature");
        std::fs::write(&bad, flipped(&data, data.len() / 2)).expect("write");
        let r = tool(&with(
            "hsm-tok",
            &[
                "--verify",
                "--id",
                id,
                "-m",
                mech,
                "-i",
                msg,
                "--signature-file",
                &bad,
            ],
        ));
        assert!(
            !r.stdout.contains("Signature is valid"),
            "pkcs11-tool --verify {mech} accepted a damaged signature:\n{}",
            r.show()
        );
    }

    // Public keys come out as DER SubjectPublicKeyInfo OpenSSL parses, equal to
    // the module's CKA_PUBLIC_KEY_INFO (read here in-process, cross-checked
    // against the key's attributes by `export_public`), and pkcs11-tool's
    // signatures verify with them in OpenSSL.
    let p11 = env.load();
    let slot = p11
        .get_slots_with_token()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| {
            p11.get_token_info(*s)
                .is_ok_and(|i| i.label().trim() == "hsm-tok")
        })
        .expect("token hsm-tok listed");
    let sess = p11.open_ro_session(slot).expect("C_OpenSession");
    sess.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    for (id, name, curve, expect) in [
        (0x01u8, "r", None, "Public-Key: (2048 bit)"),
        (0x02u8, "e", Some(Curve::P256), "prime256v1"),
    ] {
        let found = sess
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::Id(vec![id]),
            ])
            .expect("C_FindObjects");
        assert_eq!(found.len(), 1, "public keys with CKA_ID {id:02x}");
        let (module_pem, module_der) =
            export_public(&env, &sess, found[0], curve, &format!("module-{name}"));

        let der = p(&format!("tool-{name}.pub.der"));
        let id_hex = format!("{id:02x}");
        let r = tool(&with(
            "hsm-tok",
            &[
                "--read-object",
                "--type",
                "pubkey",
                "--id",
                &id_hex,
                "-o",
                &der,
            ],
        ));
        if curve.is_some()
            && !r.status.success()
            && r.stderr.contains("cannot create EVP_PKEY")
            && opensc_0_23()
        {
            // OpenSC 0.23's read_object frees the EC point buffer before
            // EVP_PKEY_fromdata reads it (heap-layout dependent: the module's
            // answers, traced with pkcs11-spy, are right); checked in-process above.
            eprintln!(
                "NOTE: pkcs11-tool 0.23 --read-object of the EC public key hit OpenSC's \
                 use-after-free (\"cannot create EVP_PKEY\"); the module's \
                 CKA_EC_PARAMS/CKA_EC_POINT/CKA_PUBLIC_KEY_INFO were checked in-process"
            );
        } else {
            assert_clean(&env, &r);
            let tool_der = std::fs::read(&der).expect("pkcs11-tool public key");
            assert_eq!(
                to_hex(&tool_der),
                to_hex(&module_der),
                "pkcs11-tool's SPKI for CKA_ID {id:02x} differs from CKA_PUBLIC_KEY_INFO"
            );
            let parsed = run_ok(
                &env,
                openssl(
                    &env,
                    &[
                        "pkey", "-pubin", "-inform", "DER", "-in", &der, "-text", "-noout",
                    ],
                ),
            );
            assert!(
                parsed.stdout.contains(expect),
                "pubkey {id:02x}: expected {expect:?} in\n{}",
                parsed.show()
            );
        }
        if curve.is_some() {
            let rs = read_file(&env, "tool-e-ECDSA-SHA256.sig");
            assert_eq!(rs.len(), 64, "pkcs11-tool ECDSA signature (r || s) length");
            assert_dgst_verify(
                &env,
                "pkcs11-tool ECDSA-SHA256",
                "-sha256",
                &module_pem,
                Path::new(msg),
                &ecdsa_der(&rs),
                &[],
            );
        } else {
            let sig = read_file(&env, "tool-r-SHA256-RSA-PKCS.sig");
            assert_dgst_verify(
                &env,
                "pkcs11-tool SHA256-RSA-PKCS",
                "-sha256",
                &module_pem,
                Path::new(msg),
                &sig,
                &[],
            );
        }
    }
}
