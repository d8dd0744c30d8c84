//! The derivations clients use (issue 17, cause 4), through the real module:
//!
//! 1. ECDH with OpenSC's `pkcs11-tool --derive` (no `CKA_VALUE_LEN`, a readable
//!    secret from a sensitive key) and with the libp11 OpenSSL engine
//!    (`openssl pkeyutl -derive -engine pkcs11`) gives the secret `openssl
//!    pkeyutl -derive` gives with the software keys;
//! 2. `CKM_ECDH1_DERIVE` / `CKM_ECDH1_COFACTOR_DERIVE` with `CKD_NULL` (whole
//!    secret, shorter keys) and the X9.63 KDFs `CKD_SHA*_KDF` against
//!    `openssl kdf ... X963KDF`, the SP 800-56A `CKD_SHA*_KDF_SP800` against
//!    `openssl kdf ... SSKDF`, and their parameter errors;
//! 3. `CKM_CONCATENATE_BASE_AND_DATA`, `CKM_CONCATENATE_DATA_AND_BASE`,
//!    `CKM_XOR_BASE_AND_DATA`, `CKM_EXTRACT_KEY_FROM_KEY`, with the `hsm`
//!    rule against short copies of a key;
//! 4. SP 800-108 (`CKM_SP800_108_COUNTER_KDF`, `_FEEDBACK_KDF`,
//!    `_DOUBLE_PIPELINE_KDF`): NIST CAVP counter-mode vectors, `openssl kdf
//!    ... KBKDF` for the counter and feedback forms with HMAC and CMAC, a
//!    hand-written double pipeline, additional derived keys;
//! 5. `CKM_AES_ECB_ENCRYPT_DATA`/`CBC_ENCRYPT_DATA` refuse empty and misaligned
//!    data with `CKR_MECHANISM_PARAM_INVALID` (as SoftHSMv2 and Kryoptic);
//! 6. `CKA_ALWAYS_SENSITIVE`/`CKA_NEVER_EXTRACTABLE` of derived keys follow
//!    PKCS#11 v3.0 on both key policies.
//!
//! Needs `openssl`, `pkcs11-tool` (`opensc`) and the libp11 engine
//! (`libengine-pkcs11-openssl`); a test whose tool is missing fails.

use std::mem::size_of;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::ptr;
use std::time::Duration;

use cryptoki_sys::*;
use ferrohsm_tests::child::{Run, find_in_path, init_token_args, pkcs11_tool, run_captured};
use ferrohsm_tests::mech::{Mech, mech_of, opt_ptr};
use ferrohsm_tests::raw::{b, by, check, ok, u};
use ferrohsm_tests::tok::{H, Template, Tok, tokens};
use ferrohsm_tests::{TestEnv, USER_PIN, from_hex as hex, module_path, to_hex};
use sha2::Digest;

const TIMEOUT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// tools
// ---------------------------------------------------------------------------

#[track_caller]
fn need(tool: &str) {
    assert!(
        find_in_path(tool).is_some(),
        "`{tool}` is not in PATH (apt-get install -y openssl opensc libengine-pkcs11-openssl)"
    );
}

/// Runs `cmd`, which must succeed.
#[track_caller]
fn run_ok(env: &TestEnv, cmd: Command) -> Run {
    let what = format!("{cmd:?}");
    let r = run_captured(env, cmd, b"", TIMEOUT, &what);
    r.assert_success(env);
    r
}

/// `openssl <args>` with no engine configuration.
fn openssl(env: &TestEnv, args: &[&str]) -> Command {
    let mut c = Command::new("openssl");
    c.args(args).envs(env.env_vars()).env_remove("OPENSSL_CONF");
    c
}

fn path(env: &TestEnv, name: &str) -> PathBuf {
    env.dir.path().join(name)
}

fn s(p: &Path) -> &str {
    p.to_str().expect("UTF-8 path")
}

/// A software EC key pair from `openssl genpkey` on `curve` (`P-256`,
/// `P-384`): the private PEM, the public SPKI DER and its point.
fn openssl_key(env: &TestEnv, name: &str, curve: &str) -> (PathBuf, Vec<u8>, Vec<u8>) {
    let pem = path(env, &format!("{name}.pem"));
    let der = path(env, &format!("{name}.pub.der"));
    let opt = format!("ec_paramgen_curve:{curve}");
    run_ok(
        env,
        openssl(
            env,
            &[
                "genpkey",
                "-algorithm",
                "EC",
                "-pkeyopt",
                &opt,
                "-out",
                s(&pem),
            ],
        ),
    );
    run_ok(
        env,
        openssl(
            env,
            &[
                "pkey",
                "-in",
                s(&pem),
                "-pubout",
                "-outform",
                "DER",
                "-out",
                s(&der),
            ],
        ),
    );
    let spki = std::fs::read(&der).expect("peer SPKI");
    let point = uncompressed_point(&spki);
    (pem, spki, point)
}

/// The uncompressed point at the end of an EC SPKI (its BIT STRING's content).
fn uncompressed_point(spki: &[u8]) -> Vec<u8> {
    let n = match spki.len() {
        91 => 65,  // P-256
        120 => 97, // P-384
        other => panic!("unexpected EC SPKI length {other}"),
    };
    let p = spki[spki.len() - n..].to_vec();
    assert_eq!(p[0], 4, "uncompressed point");
    p
}

/// `openssl pkeyutl -derive` of the private key `mine` with the public key
/// `theirs` (SPKI DER): the shared secret Z.
fn openssl_z(env: &TestEnv, mine: &Path, theirs: &[u8]) -> Vec<u8> {
    let der = path(env, "z-peer.der");
    let pem = path(env, "z-peer.pem");
    let out = path(env, "z.bin");
    std::fs::write(&der, theirs).unwrap();
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
                s(&der),
                "-out",
                s(&pem),
            ],
        ),
    );
    run_ok(
        env,
        openssl(
            env,
            &[
                "pkeyutl",
                "-derive",
                "-inkey",
                s(mine),
                "-peerkey",
                s(&pem),
                "-out",
                s(&out),
            ],
        ),
    );
    std::fs::read(&out).unwrap()
}

/// `openssl kdf` with `opts` (each `-kdfopt`), `len` bytes, as bytes.
fn openssl_kdf(env: &TestEnv, kdf: &str, len: usize, opts: &[String]) -> Vec<u8> {
    let mut args = vec!["kdf".to_string(), "-keylen".into(), len.to_string()];
    for o in opts {
        args.push("-kdfopt".into());
        args.push(o.clone());
    }
    args.push(kdf.into());
    let argv: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_ok(env, openssl(env, &argv));
    hex(&r.stdout.trim().replace(':', ""))
}

// ---------------------------------------------------------------------------
// templates and mechanisms
// ---------------------------------------------------------------------------

/// A session generic secret (or `kt`) template; `len` `None` leaves
/// `CKA_VALUE_LEN` out.
fn secret(kt: CK_KEY_TYPE, len: Option<CK_ULONG>, readable: bool) -> Template {
    let mut t = vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, kt),
        b(CKA_TOKEN, false),
        b(CKA_SENSITIVE, !readable),
        b(CKA_EXTRACTABLE, readable),
    ];
    if let Some(n) = len {
        t.push(u(CKA_VALUE_LEN, n));
    }
    t
}

/// A known secret key made by `C_CreateObject` (spec tokens).
fn import(t: &Tok, kt: CK_KEY_TYPE, value: &[u8], sensitive: bool) -> H {
    ok(
        t.create(vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, kt),
            b(CKA_TOKEN, false),
            b(CKA_DERIVE, true),
            b(CKA_SENSITIVE, sensitive),
            by(CKA_VALUE, value),
        ]),
        "C_CreateObject secret",
    )
}

/// A P-256/P-384 key pair generated in the token: (public, private).
fn ec_pair(t: &Tok, params: &[u8], private: Template) -> (H, H) {
    let mut pt = vec![b(CKA_TOKEN, false), by(CKA_EC_PARAMS, params)];
    pt.push(b(CKA_VERIFY, true));
    let mut kt = vec![b(CKA_TOKEN, false), b(CKA_DERIVE, true)];
    kt.extend(private);
    ok(
        t.generate_pair(CKM_EC_KEY_PAIR_GEN, pt, kt),
        "C_GenerateKeyPair EC",
    )
}

const P256: &str = "06082a8648ce3d030107";
const P384: &str = "06052b81040022";

/// `CK_ECDH1_DERIVE_PARAMS` with every field chosen, passed to `f`.
fn with_ecdh<R>(
    ty: CK_MECHANISM_TYPE,
    kdf: CK_ULONG,
    shared: &[u8],
    public: &[u8],
    f: impl FnOnce(&mut CK_MECHANISM) -> R,
) -> R {
    let (mut shared, mut public) = (shared.to_vec(), public.to_vec());
    let mut p = CK_ECDH1_DERIVE_PARAMS {
        kdf,
        ulSharedDataLen: shared.len() as CK_ULONG,
        pSharedData: opt_ptr(&mut shared),
        ulPublicDataLen: public.len() as CK_ULONG,
        pPublicData: opt_ptr(&mut public),
    };
    f(&mut mech_of(ty, &mut p))
}

fn ecdh(
    t: &Tok,
    base: H,
    kdf: CK_ULONG,
    shared: &[u8],
    peer: &[u8],
    tpl: Template,
) -> Result<H, CK_RV> {
    with_ecdh(CKM_ECDH1_DERIVE, kdf, shared, peer, |m| {
        t.derive(m, base, tpl)
    })
}

// ---------------------------------------------------------------------------
// 1. pkcs11-tool and the OpenSSL engine
// ---------------------------------------------------------------------------

fn tool(env: &TestEnv, args: &[&str], policy: Option<&str>) -> Run {
    let mut c = pkcs11_tool(env, args);
    if let Some(p) = policy {
        c.env("FERROHSM_POLICY", p);
    }
    run_ok(env, c)
}

/// The public keys of `ids` on token `label` as SPKI DER, read in-process
/// (`CKA_PUBLIC_KEY_INFO`): OpenSC 0.23's EC `--read-object` is not relied on.
fn public_spkis(label: &str, ids: &[u8]) -> Vec<Vec<u8>> {
    let m = ferrohsm_tests::raw::RawModule::init();
    let slot = m
        .slot_list()
        .into_iter()
        .find(|&sl| m.token_info(sl).label.starts_with(label.as_bytes()))
        .expect("the token");
    let t = Tok::login(m, slot);
    ids.iter()
        .map(|&id| {
            let found = ok(
                t.find(vec![u(CKA_CLASS, CKO_PUBLIC_KEY), by(CKA_ID, &[id])]),
                "C_FindObjects public key",
            );
            assert_eq!(found.len(), 1, "one public key with id {id}");
            ok(t.get(found[0], CKA_PUBLIC_KEY_INFO), "CKA_PUBLIC_KEY_INFO")
        })
        .collect()
}

/// pkcs11-tool makes a spec token and EC keys (`--keypairgen`: sensitive
/// private keys), derives with `--derive -m ECDH1-DERIVE` and the peer's
/// SPKI; the libp11 engine derives with the same key; both must equal
/// `openssl pkeyutl -derive` with the peer's private key and our public key.
#[test]
fn pkcs11_tool_and_engine_ecdh_match_openssl() {
    let env = TestEnv::new();
    for t in ["openssl", "pkcs11-tool"] {
        need(t);
    }
    tool(
        &env,
        &init_token_args("ecdh-tool", &["--init-pin", "--pin", USER_PIN]),
        Some("spec"),
    );
    let engine = PathBuf::from("/usr/lib/x86_64-linux-gnu/engines-3/pkcs11.so");
    assert!(
        engine.is_file(),
        "libengine-pkcs11-openssl is not installed"
    );
    let conf = path(&env, "engine.cnf");
    std::fs::write(
        &conf,
        format!(
            "openssl_conf = openssl_init\n[openssl_init]\nengines = engine_section\n\
             [engine_section]\npkcs11 = pkcs11_section\n[pkcs11_section]\nengine_id = pkcs11\n\
             dynamic_path = {}\nMODULE_PATH = {}\ninit = 0\n",
            engine.display(),
            module_path().display()
        ),
    )
    .unwrap();
    let keys = [
        (1u8, "P-256", "EC:prime256v1"),
        (2, "P-384", "EC:secp384r1"),
    ];
    for (id, _, tool_curve) in keys {
        let ids = format!("{id:02x}");
        let label = format!("ec{id}");
        tool(
            &env,
            &[
                "--token-label",
                "ecdh-tool",
                "--login",
                "--pin",
                USER_PIN,
                "--keypairgen",
                "--key-type",
                tool_curve,
                "--id",
                &ids,
                "--label",
                &label,
                "--usage-derive",
            ],
            None,
        );
    }
    let spkis = public_spkis("ecdh-tool", &[1, 2]);
    for ((id, curve, _), ours) in keys.into_iter().zip(spkis) {
        let ids = format!("{id:02x}");
        let label = format!("ec{id}");
        let (peer, peer_spki, _) = openssl_key(&env, &format!("peer{id}"), curve);
        let want = openssl_z(&env, &peer, &ours);

        // pkcs11-tool: the peer's SPKI DER as input, the secret as output.
        let peer_der = path(&env, &format!("peer{id}.pub.der"));
        assert_eq!(std::fs::read(&peer_der).unwrap(), peer_spki);
        let out = path(&env, &format!("tool{id}.bin"));
        tool(
            &env,
            &[
                "--token-label",
                "ecdh-tool",
                "--login",
                "--pin",
                USER_PIN,
                "--derive",
                "-m",
                "ECDH1-DERIVE",
                "--id",
                &ids,
                "--input-file",
                s(&peer_der),
                "--output-file",
                s(&out),
            ],
            None,
        );
        assert_eq!(
            to_hex(&std::fs::read(&out).unwrap()),
            to_hex(&want),
            "{curve}: pkcs11-tool --derive differs from openssl pkeyutl -derive"
        );

        // The engine: our key by URI, the peer's public key as PEM.
        let peer_pub = path(&env, &format!("peer{id}.pub.pem"));
        run_ok(
            &env,
            openssl(
                &env,
                &["pkey", "-in", s(&peer), "-pubout", "-out", s(&peer_pub)],
            ),
        );
        let uri =
            format!("pkcs11:token=ecdh-tool;object={label};type=private;pin-value={USER_PIN}");
        let out = path(&env, &format!("engine{id}.bin"));
        let mut c = Command::new("openssl");
        c.args([
            "pkeyutl",
            "-derive",
            "-engine",
            "pkcs11",
            "-keyform",
            "engine",
            "-inkey",
            &uri,
            "-peerkey",
            s(&peer_pub),
            "-out",
            s(&out),
        ])
        .envs(env.env_vars())
        .env("OPENSSL_CONF", &conf);
        run_ok(&env, c);
        assert_eq!(
            to_hex(&std::fs::read(&out).unwrap()),
            to_hex(&want),
            "{curve}: the engine's ECDH differs from openssl pkeyutl -derive"
        );
    }
}

// ---------------------------------------------------------------------------
// 2. ECDH: lengths, KDFs, errors, flags
// ---------------------------------------------------------------------------

#[test]
fn ecdh_null_and_x963_kdfs_match_openssl() {
    let env = TestEnv::new();
    need("openssl");
    let toks = tokens(&[("ecdh-spec", "spec"), ("ecdh-hsm", "hsm")]);
    let t = toks[0];
    for (curve, params, field) in [("P-256", P256, 32usize), ("P-384", P384, 48)] {
        let (peer, _, peer_point) = openssl_key(&env, &format!("peer-{curve}"), curve);
        let (public, private) = ec_pair(&t, &hex(params), vec![]);
        let ours = ok(t.get(public, CKA_PUBLIC_KEY_INFO), "CKA_PUBLIC_KEY_INFO");
        let z = openssl_z(&env, &peer, &ours);
        assert_eq!(z.len(), field);

        // CKD_NULL, no CKA_VALUE_LEN: the whole secret; the point bare or as
        // a DER OCTET STRING.
        let mut wrapped = vec![0x04, peer_point.len() as u8];
        wrapped.extend_from_slice(&peer_point);
        for point in [&peer_point, &wrapped] {
            let k = ok(
                ecdh(
                    &t,
                    private,
                    CKD_NULL,
                    &[],
                    point,
                    secret(CKK_GENERIC_SECRET, None, true),
                ),
                "ECDH CKD_NULL",
            );
            assert_eq!(to_hex(&t.value(k)), to_hex(&z), "{curve} CKD_NULL");
        }
        // The cofactor form: the same on curves of cofactor 1.
        let k = ok(
            with_ecdh(CKM_ECDH1_COFACTOR_DERIVE, CKD_NULL, &[], &peer_point, |m| {
                t.derive(m, private, secret(CKK_GENERIC_SECRET, None, true))
            }),
            "ECDH1_COFACTOR_DERIVE",
        );
        assert_eq!(t.value(k), z, "{curve} cofactor");
        // A shorter key: the rightmost bytes (SoftHSMv2, Kryoptic); an AES
        // key with its length; longer than Z is refused.
        let k = ok(
            ecdh(
                &t,
                private,
                CKD_NULL,
                &[],
                &peer_point,
                secret(CKK_GENERIC_SECRET, Some(20), true),
            ),
            "ECDH 20",
        );
        assert_eq!(t.value(k), z[field - 20..].to_vec(), "{curve} truncated");
        let k = ok(
            ecdh(
                &t,
                private,
                CKD_NULL,
                &[],
                &peer_point,
                secret(CKK_AES, Some(16), true),
            ),
            "ECDH AES-128",
        );
        assert_eq!(t.value(k), z[field - 16..].to_vec());
        check(
            ecdh(
                &t,
                private,
                CKD_NULL,
                &[],
                &peer_point,
                secret(CKK_GENERIC_SECRET, Some(field as CK_ULONG + 1), true),
            )
            .err()
            .unwrap_or(CKR_OK),
            CKR_TEMPLATE_INCONSISTENT,
            "CKD_NULL longer than the secret",
        );
        // AES needs its length (the key type has several).
        check(
            ecdh(
                &t,
                private,
                CKD_NULL,
                &[],
                &peer_point,
                secret(CKK_AES, None, true),
            )
            .err()
            .unwrap_or(CKR_OK),
            CKR_TEMPLATE_INCOMPLETE,
            "AES without CKA_VALUE_LEN",
        );
        // CKD_NULL takes no shared data; unknown KDFs and missing points.
        for (kdf, shared, point, what) in [
            (
                CKD_NULL,
                &b"info"[..],
                &peer_point[..],
                "CKD_NULL with shared data",
            ),
            (0x99, &[][..], &peer_point[..], "an unknown KDF"),
            (CKD_NULL, &[][..], &[][..], "no public data"),
            (CKD_NULL, &[][..], &peer_point[..10], "a cut point"),
        ] {
            check(
                ecdh(
                    &t,
                    private,
                    kdf,
                    shared,
                    point,
                    secret(CKK_GENERIC_SECRET, None, true),
                )
                .err()
                .unwrap_or(CKR_OK),
                CKR_MECHANISM_PARAM_INVALID,
                what,
            );
        }
        // X9.63 with each hash, with and without shared data, against
        // `openssl kdf X963KDF`; no CKA_VALUE_LEN gives the field size.
        // The `_SP800` KDFs are SP 800-56A's one-step KDF: `openssl kdf SSKDF`.
        for (kdf, digest, algorithm) in [
            (CKD_SHA1_KDF, "SHA1", "X963KDF"),
            (CKD_SHA224_KDF, "SHA224", "X963KDF"),
            (CKD_SHA256_KDF, "SHA256", "X963KDF"),
            (CKD_SHA384_KDF, "SHA384", "X963KDF"),
            (CKD_SHA512_KDF, "SHA512", "X963KDF"),
            (CKD_SHA1_KDF_SP800, "SHA1", "SSKDF"),
            (CKD_SHA256_KDF_SP800, "SHA256", "SSKDF"),
            (CKD_SHA512_KDF_SP800, "SHA512", "SSKDF"),
            (CKD_SHA3_256_KDF_SP800, "SHA3-256", "SSKDF"),
        ] {
            for (shared, len) in [(&b""[..], None), (&b"shared info"[..], Some(80))] {
                let k = ok(
                    ecdh(
                        &t,
                        private,
                        kdf,
                        shared,
                        &peer_point,
                        secret(CKK_GENERIC_SECRET, len, true),
                    ),
                    &format!("ECDH {digest} KDF"),
                );
                let n = len.map_or(field, |l| l as usize);
                let mut opts = vec![
                    format!("digest:{digest}"),
                    format!("hexsecret:{}", to_hex(&z)),
                ];
                if !shared.is_empty() {
                    opts.push(format!("hexinfo:{}", to_hex(shared)));
                }
                let want = openssl_kdf(&env, algorithm, n, &opts);
                assert_eq!(
                    to_hex(&t.value(k)),
                    to_hex(&want),
                    "{curve} {digest} {algorithm}, {n} bytes"
                );
            }
        }
    }

    // Flags (v3.0 ECDH rules): the template decides on a spec token, the
    // base's history caps ALWAYS_SENSITIVE/NEVER_EXTRACTABLE.
    let (_, peer_point) = {
        let (_, spki, p) = openssl_key(&env, "flags", "P-256");
        (spki, p)
    };
    let (_, guarded) = ec_pair(
        &t,
        &hex(P256),
        vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)],
    );
    let (_, open) = ec_pair(
        &t,
        &hex(P256),
        vec![b(CKA_SENSITIVE, false), b(CKA_EXTRACTABLE, true)],
    );
    let flags = |k: H| {
        [
            CKA_SENSITIVE,
            CKA_EXTRACTABLE,
            CKA_ALWAYS_SENSITIVE,
            CKA_NEVER_EXTRACTABLE,
        ]
        .map(|a| t.get_bool(k, a))
    };
    let plain = vec![u(CKA_CLASS, CKO_SECRET_KEY), b(CKA_TOKEN, false)];
    for (base, tpl, want) in [
        // Asked readable from a sensitive, unextractable key: allowed.
        (
            guarded,
            secret(CKK_GENERIC_SECRET, None, true),
            [false, true, false, false],
        ),
        // Asked protected: always sensitive, never extractable.
        (
            guarded,
            secret(CKK_GENERIC_SECRET, None, false),
            [true, false, true, true],
        ),
        // Omitted: as the base.
        (guarded, plain.clone(), [true, false, true, true]),
        // From a key that never was sensitive: never "always sensitive".
        (
            open,
            secret(CKK_GENERIC_SECRET, None, false),
            [true, false, false, false],
        ),
        (open, plain.clone(), [false, true, false, false]),
    ] {
        let k = ok(
            ecdh(&t, base, CKD_NULL, &[], &peer_point, tpl),
            "ECDH flags",
        );
        assert_eq!(
            flags(k),
            want,
            "SENSITIVE, EXTRACTABLE, ALWAYS_SENSITIVE, NEVER_EXTRACTABLE"
        );
    }

    // hsm: a readable secret is refused; the protected one keeps the history.
    let h = toks[1];
    let (_, key) = ec_pair(&h, &hex(P256), vec![]);
    check(
        ecdh(
            &h,
            key,
            CKD_NULL,
            &[],
            &peer_point,
            secret(CKK_GENERIC_SECRET, None, true),
        )
        .err()
        .unwrap_or(CKR_OK),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "hsm: readable ECDH secret",
    );
    let k = ok(
        ecdh(&h, key, CKD_NULL, &[], &peer_point, plain.clone()),
        "hsm ECDH",
    );
    let got = [
        CKA_SENSITIVE,
        CKA_EXTRACTABLE,
        CKA_ALWAYS_SENSITIVE,
        CKA_NEVER_EXTRACTABLE,
        CKA_LOCAL,
    ]
    .map(|a| h.get_bool(k, a));
    assert_eq!(
        got,
        [true, false, true, true, false],
        "hsm ECDH secret flags"
    );
    check(
        ecdh(
            &h,
            key,
            CKD_NULL,
            &[],
            &peer_point,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
            ],
        )
        .err()
        .unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCONSISTENT,
        "hsm: an extractable secret from an unextractable key",
    );
}

// ---------------------------------------------------------------------------
// 3. concatenation, XOR, extraction
// ---------------------------------------------------------------------------

fn str_data(ty: CK_MECHANISM_TYPE, data: &[u8]) -> Mech {
    Mech::StrData(ty, data.to_vec())
}

/// A mechanism's hex type, for messages.
trait Named {
    fn name(&self) -> String;
}

impl Named for Mech {
    fn name(&self) -> String {
        format!("{:#x}", self.ty())
    }
}

fn extract(t: &Tok, base: H, bit: CK_ULONG, tpl: Template) -> Result<H, CK_RV> {
    let mut p: CK_EXTRACT_PARAMS = bit;
    t.derive(&mut mech_of(CKM_EXTRACT_KEY_FROM_KEY, &mut p), base, tpl)
}

#[test]
fn simple_derivations() {
    let _env = TestEnv::new();
    let toks = tokens(&[("simple-spec", "spec"), ("simple-hsm", "hsm")]);
    let t = toks[0];
    let value: Vec<u8> = (1..=32).collect();
    let base = import(&t, CKK_GENERIC_SECRET, &value, false);
    let data = b"caller data".to_vec();
    let get = |m: &Mech, len: Option<CK_ULONG>| {
        t.value(ok(
            t.derive(m, base, secret(CKK_GENERIC_SECRET, len, true)),
            &m.name(),
        ))
    };
    let cat = |a: &[u8], b: &[u8]| [a, b].concat();
    // Defaults: everything the mechanism makes; shorter: the leftmost bytes.
    let bd = str_data(CKM_CONCATENATE_BASE_AND_DATA, &data);
    let db = str_data(CKM_CONCATENATE_DATA_AND_BASE, &data);
    let x = str_data(CKM_XOR_BASE_AND_DATA, &data);
    assert_eq!(get(&bd, None), cat(&value, &data));
    assert_eq!(get(&db, None), cat(&data, &value));
    assert_eq!(get(&bd, Some(20)), value[..20].to_vec());
    assert_eq!(get(&db, Some(20)), cat(&data, &value)[..20].to_vec());
    let xored: Vec<u8> = value.iter().zip(&data).map(|(a, b)| a ^ b).collect();
    assert_eq!(get(&x, None), xored);
    assert_eq!(get(&x, Some(4)), xored[..4].to_vec());
    // AES keys from the same, by length.
    let k = ok(
        t.derive(&bd, base, secret(CKK_AES, Some(32), true)),
        "AES from base||data",
    );
    assert_eq!(t.value(k), value);
    for (m, len) in [(&bd, 44), (&db, 44), (&x, 12)] {
        check(
            t.derive(m, base, secret(CKK_GENERIC_SECRET, Some(len), true))
                .err()
                .unwrap_or(CKR_OK),
            CKR_TEMPLATE_INCONSISTENT,
            &format!("{} longer than it makes", m.name()),
        );
        check(
            t.derive(
                &str_data(m.ty(), &[]),
                base,
                secret(CKK_GENERIC_SECRET, None, true),
            )
            .err()
            .unwrap_or(CKR_OK),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("{} with no data", m.name()),
        );
    }
    // Extraction: the v3.0 example, then a rotation of the whole key.
    let small = import(&t, CKK_GENERIC_SECRET, &hex("329F84A9"), false);
    let k = ok(
        extract(&t, small, 21, secret(CKK_GENERIC_SECRET, Some(2), true)),
        "extract",
    );
    assert_eq!(to_hex(&t.value(k)), "9526");
    let k = ok(
        extract(&t, base, 8, secret(CKK_GENERIC_SECRET, None, true)),
        "extract whole",
    );
    assert_eq!(t.value(k), cat(&value[1..], &value[..1]));
    for (bit, len, want) in [
        (256, 1, CKR_MECHANISM_PARAM_INVALID),
        (0, 33, CKR_TEMPLATE_INCONSISTENT),
    ] {
        check(
            extract(&t, base, bit, secret(CKK_GENERIC_SECRET, Some(len), true))
                .err()
                .unwrap_or(CKR_OK),
            want,
            &format!("extract bit {bit}, {len} bytes"),
        );
    }
    // Sensitivity is inherited (v3.0 §2.42: "if the base key has its
    // CKA_SENSITIVE attribute set to CK_TRUE, so does the derived key").
    let guarded = import(&t, CKK_GENERIC_SECRET, &value, true);
    check(
        t.derive(&bd, guarded, secret(CKK_GENERIC_SECRET, None, true))
            .err()
            .unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCONSISTENT,
        "readable copy of a sensitive key",
    );
    let k = ok(
        t.derive(
            &bd,
            guarded,
            vec![u(CKA_CLASS, CKO_SECRET_KEY), b(CKA_TOKEN, false)],
        ),
        "protected copy",
    );
    assert!(t.get_bool(k, CKA_SENSITIVE));
    // An imported key was never "always sensitive": nor is what it makes.
    assert!(!t.get_bool(k, CKA_ALWAYS_SENSITIVE));

    // hsm: no key with a short piece of the base (found by trying every
    // value against a MAC made with it); 16 bytes or more pass.
    let h = toks[1];
    let target = ok(
        h.generate(
            CKM_GENERIC_SECRET_KEY_GEN,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_DERIVE, true),
            ],
        ),
        "hsm generic secret",
    );
    let protected = |len: CK_ULONG| {
        vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
            u(CKA_VALUE_LEN, len),
            b(CKA_TOKEN, false),
        ]
    };
    let d16 = vec![7u8; 16];
    for (m, len) in [
        (str_data(CKM_CONCATENATE_BASE_AND_DATA, &d16), 8),
        (str_data(CKM_CONCATENATE_DATA_AND_BASE, &d16), 17),
        (str_data(CKM_CONCATENATE_DATA_AND_BASE, &d16), 16),
        (str_data(CKM_XOR_BASE_AND_DATA, &d16), 1),
    ] {
        check(
            h.derive(&m, target, protected(len)).err().unwrap_or(CKR_OK),
            CKR_TEMPLATE_INCONSISTENT,
            &format!("hsm: {} giving {len} bytes", m.name()),
        );
    }
    check(
        extract(&h, target, 3, protected(4)).err().unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCONSISTENT,
        "hsm: extract 4 bytes",
    );
    for (m, len) in [
        (str_data(CKM_CONCATENATE_BASE_AND_DATA, &d16), 16),
        (str_data(CKM_CONCATENATE_DATA_AND_BASE, &d16), 32),
        (str_data(CKM_XOR_BASE_AND_DATA, &d16), 16),
    ] {
        let k = ok(
            h.derive(&m, target, protected(len)),
            &format!("hsm {}", m.name()),
        );
        let got = [
            CKA_SENSITIVE,
            CKA_EXTRACTABLE,
            CKA_ALWAYS_SENSITIVE,
            CKA_NEVER_EXTRACTABLE,
        ]
        .map(|a| h.get_bool(k, a));
        assert_eq!(got, [true, false, true, true], "{} flags", m.name());
    }
    ok(
        extract(&h, target, 3, protected(16)),
        "hsm: extract 16 bytes",
    );
}

// ---------------------------------------------------------------------------
// 4. SP 800-108
// ---------------------------------------------------------------------------

/// One data parameter, owned.
#[derive(Clone)]
enum Data {
    /// The iteration variable: a counter format (counter mode) or none.
    Iter(Option<(bool, CK_ULONG)>),
    /// The optional counter.
    Counter(bool, CK_ULONG),
    /// The DKM length (method, little endian, bits).
    Dkm(CK_ULONG, bool, CK_ULONG),
    /// A byte array.
    Bytes(Vec<u8>),
}

/// An SP 800-108 call: mechanism, PRF, data, IV (feedback), additional keys.
struct Kbkdf {
    ty: CK_MECHANISM_TYPE,
    prf: CK_MECHANISM_TYPE,
    data: Vec<Data>,
    iv: Vec<u8>,
    extra: Vec<Template>,
}

impl Kbkdf {
    /// Runs `C_DeriveKey` with `tpl`: the primary handle, the additional
    /// handles as written to `phKey`.
    fn derive(&self, t: &Tok, base: H, tpl: Template) -> (Result<H, CK_RV>, Vec<H>) {
        let mut counters: Vec<CK_SP800_108_COUNTER_FORMAT> = Vec::new();
        let mut dkms: Vec<CK_SP800_108_DKM_LENGTH_FORMAT> = Vec::new();
        let mut bytes: Vec<Vec<u8>> = Vec::new();
        for d in &self.data {
            match d {
                Data::Iter(Some((le, bits))) | Data::Counter(le, bits) => {
                    counters.push(CK_SP800_108_COUNTER_FORMAT {
                        bLittleEndian: *le as CK_BBOOL,
                        ulWidthInBits: *bits,
                    })
                }
                Data::Dkm(method, le, bits) => dkms.push(CK_SP800_108_DKM_LENGTH_FORMAT {
                    dkmLengthMethod: *method,
                    bLittleEndian: *le as CK_BBOOL,
                    ulWidthInBits: *bits,
                }),
                Data::Bytes(b) => bytes.push(b.clone()),
                Data::Iter(None) => {}
            }
        }
        let (mut ci, mut di, mut bi) = (0, 0, 0);
        let mut params: Vec<CK_PRF_DATA_PARAM> = Vec::new();
        for d in &self.data {
            let (type_, p, n) = match d {
                Data::Iter(None) => (CK_SP800_108_ITERATION_VARIABLE, ptr::null_mut(), 0),
                Data::Iter(Some(_)) | Data::Counter(..) => {
                    ci += 1;
                    let ty = if matches!(d, Data::Iter(_)) {
                        CK_SP800_108_ITERATION_VARIABLE
                    } else {
                        CK_SP800_108_COUNTER
                    };
                    (
                        ty,
                        &mut counters[ci - 1] as *mut _ as *mut std::ffi::c_void,
                        size_of::<CK_SP800_108_COUNTER_FORMAT>(),
                    )
                }
                Data::Dkm(..) => {
                    di += 1;
                    (
                        CK_SP800_108_DKM_LENGTH,
                        &mut dkms[di - 1] as *mut _ as *mut std::ffi::c_void,
                        size_of::<CK_SP800_108_DKM_LENGTH_FORMAT>(),
                    )
                }
                Data::Bytes(_) => {
                    bi += 1;
                    let b = &mut bytes[bi - 1];
                    (CK_SP800_108_BYTE_ARRAY, b.as_mut_ptr() as *mut _, b.len())
                }
            };
            params.push(CK_PRF_DATA_PARAM {
                type_,
                pValue: p,
                ulValueLen: n as CK_ULONG,
            });
        }
        let mut tpls: Vec<ferrohsm_tests::raw::Tpl> = self
            .extra
            .iter()
            .map(|x| ferrohsm_tests::raw::Tpl::new(x.clone()))
            .collect();
        let mut handles = vec![0xdead_beef as CK_OBJECT_HANDLE; self.extra.len()];
        let mut keys: Vec<CK_DERIVED_KEY> = tpls
            .iter_mut()
            .zip(handles.iter_mut())
            .map(|(t, h)| CK_DERIVED_KEY {
                pTemplate: t.ptr(),
                ulAttributeCount: t.len(),
                phKey: h,
            })
            .collect();
        let keys_ptr = if keys.is_empty() {
            ptr::null_mut()
        } else {
            keys.as_mut_ptr()
        };
        let mut iv = self.iv.clone();
        let r = if self.ty == CKM_SP800_108_FEEDBACK_KDF {
            let mut p = CK_SP800_108_FEEDBACK_KDF_PARAMS {
                prfType: self.prf,
                ulNumberOfDataParams: params.len() as CK_ULONG,
                pDataParams: params.as_mut_ptr(),
                ulIVLen: iv.len() as CK_ULONG,
                pIV: opt_ptr(&mut iv),
                ulAdditionalDerivedKeys: keys.len() as CK_ULONG,
                pAdditionalDerivedKeys: keys_ptr,
            };
            t.derive(&mut mech_of(self.ty, &mut p), base, tpl)
        } else {
            let mut p = CK_SP800_108_KDF_PARAMS {
                prfType: self.prf,
                ulNumberOfDataParams: params.len() as CK_ULONG,
                pDataParams: params.as_mut_ptr(),
                ulAdditionalDerivedKeys: keys.len() as CK_ULONG,
                pAdditionalDerivedKeys: keys_ptr,
            };
            t.derive(&mut mech_of(self.ty, &mut p), base, tpl)
        };
        drop(keys);
        (r, handles)
    }
}

/// HMAC-SHA-256 written out (RFC 2104), independent of the module.
fn hmac_sha256(key: &[u8], msg: &[u8]) -> Vec<u8> {
    let mut k = [0u8; 64];
    if key.len() > 64 {
        k[..32].copy_from_slice(&sha2::Sha256::digest(key));
    } else {
        k[..key.len()].copy_from_slice(key);
    }
    let pad = |x: u8| k.iter().map(|b| b ^ x).collect::<Vec<u8>>();
    let inner = sha2::Sha256::digest([pad(0x36), msg.to_vec()].concat());
    sha2::Sha256::digest([pad(0x5c), inner.to_vec()].concat()).to_vec()
}

#[test]
fn sp800_108_against_cavp_openssl_and_by_hand() {
    let env = TestEnv::new();
    need("openssl");
    let toks = tokens(&[("kbkdf-spec", "spec"), ("kbkdf-hsm", "hsm")]);
    let t = toks[0];
    let counter = |prf, data| Kbkdf {
        ty: CKM_SP800_108_COUNTER_KDF,
        prf,
        data,
        iv: vec![],
        extra: vec![],
    };
    // NIST CAVP KDFCTR_gen.rsp (CAVS 14.4): [PRF] [CTRLOCATION] [RLEN] COUNT=0.
    for (prf, kt, ki, r, before, after, ko) in [
        (
            CKM_AES_CMAC,
            CKK_AES,
            "dff1e50ac0b69dc40f1051d46c2b069c",
            8,
            "",
            "c16e6e02c5a3dcc8d78b9ac1306877761310455b4e41469951d9e6c2245a064b33fd8c3b01203a7824485bf0a64060c4648b707d2607935699316ea5",
            "8be8f0869b3c0ba97b71863d1b9f7813",
        ),
        (
            CKM_AES_CMAC,
            CKK_AES,
            "b6e04abd1651f8794d4326f4c684e631",
            8,
            "93612f7256c46a3d856d3e951e32dbf15fe11159d0b389ad38d603850fee6d18d22031435ed36ee20da76745fbea4b10fe1e",
            "99322aae605a5f01e32b",
            "dcb1db87a68762c6b3354779fa590bef",
        ),
        (
            CKM_SHA256_HMAC,
            CKK_GENERIC_SECRET,
            "08d0a37d2e2fb84d44838efaeac28135d964b0daf154369783cfe007fa883966",
            8,
            "80866d761e34084b45ea668a25deabffdbca446aa0bf793bccdf3790d584d26056315a4c060ac7b1b01cace96ba97e8fed81953c8b82ba5132dd1713",
            "",
            "8f5b47d23d5d3ba632acdf6543509bd8",
        ),
        (
            CKM_SHA256_HMAC,
            CKK_GENERIC_SECRET,
            "c4bedbddb66493e7c7259a3bbbc25f8c7e0ca7fe284d92d431d9cd99a0d214ac",
            32,
            "",
            "1c69c54766791e315c2cc5c47ecd3ffab87d0d273dd920e70955814c220eacace6a5946542da3dfe24ff626b4897898cafb7db83bdff3c14fa46fd4b",
            "1da47638d6c9c4d04d74d4640bbd42ab814d9e8cc22f4326695239f96b0693f12d0dd1152cf44430",
        ),
    ] {
        let base = import(&t, kt, &hex(ki), false);
        let mut data = Vec::new();
        if !before.is_empty() {
            data.push(Data::Bytes(hex(before)));
        }
        data.push(Data::Iter(Some((false, r))));
        if !after.is_empty() {
            data.push(Data::Bytes(hex(after)));
        }
        let ko = hex(ko);
        let (k, _) = counter(prf, data).derive(
            &t,
            base,
            secret(CKK_GENERIC_SECRET, Some(ko.len() as CK_ULONG), true),
        );
        assert_eq!(
            to_hex(&t.value(ok(k, "CAVP counter KDF"))),
            to_hex(&ko),
            "CAVP KI {ki}"
        );
    }

    // OpenSSL's KBKDF: [i]32 || label || 0x00 || context || [L]32 (bits),
    // counter and feedback modes, HMAC-SHA256 and CMAC-AES-128 (OpenSSL
    // takes a feedback IV of one PRF output).
    let (label, context) = (b"label".to_vec(), b"context".to_vec());
    let hkey = hex("0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b0b");
    let akey = hex("2b7e151628aed2a6abf7158809cf4f3c");
    for (prf, kt, key, mac) in [
        (
            CKM_SHA256_HMAC,
            CKK_GENERIC_SECRET,
            &hkey,
            ["mac:HMAC", "digest:SHA256"],
        ),
        (
            CKM_AES_CMAC,
            CKK_AES,
            &akey,
            ["mac:CMAC", "cipher:AES-128-CBC"],
        ),
    ] {
        let base = import(&t, kt, key, false);
        let iv: Vec<u8> = (0..if kt == CKK_AES { 16 } else { 32 }).collect();
        for feedback in [false, true] {
            for len in [16usize, 42] {
                let mut data = vec![
                    Data::Iter(if feedback { None } else { Some((false, 32)) }),
                    Data::Bytes(label.clone()),
                    Data::Bytes(vec![0]),
                    Data::Bytes(context.clone()),
                    Data::Dkm(CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS, false, 32),
                ];
                if feedback {
                    data.insert(1, Data::Counter(false, 32));
                }
                let call = Kbkdf {
                    ty: if feedback {
                        CKM_SP800_108_FEEDBACK_KDF
                    } else {
                        CKM_SP800_108_COUNTER_KDF
                    },
                    prf,
                    data,
                    iv: if feedback { iv.clone() } else { vec![] },
                    extra: vec![],
                };
                let (k, _) = call.derive(
                    &t,
                    base,
                    secret(CKK_GENERIC_SECRET, Some(len as CK_ULONG), true),
                );
                let mut opts: Vec<String> = mac.iter().map(|s| s.to_string()).collect();
                opts.extend([
                    format!("hexkey:{}", to_hex(key)),
                    format!("hexsalt:{}", to_hex(&label)),
                    format!("hexinfo:{}", to_hex(&context)),
                ]);
                if feedback {
                    opts.extend([
                        "mode:FEEDBACK".to_string(),
                        format!("hexseed:{}", to_hex(&iv)),
                    ]);
                }
                let want = openssl_kdf(&env, "KBKDF", len, &opts);
                assert_eq!(
                    to_hex(&t.value(ok(k, "KBKDF"))),
                    to_hex(&want),
                    "{prf:#x} feedback={feedback} {len} bytes vs openssl kdf KBKDF"
                );
            }
        }
    }

    // Double pipeline and additional keys, by hand: A(0) = label || [L]16,
    // A(i) = PRF(A(i-1)), K(i) = PRF(A(i) || [i]16 || label || [L]16); keys of
    // 40 and 16 bytes start on segments 0 and 2; L = 56 * 8 bits.
    let base = import(&t, CKK_GENERIC_SECRET, &hkey, false);
    let data = vec![
        Data::Iter(None),
        Data::Counter(false, 16),
        Data::Bytes(label.clone()),
        Data::Dkm(CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS, false, 16),
    ];
    let l = ((56u16) * 8).to_be_bytes().to_vec();
    let mut want = Vec::new();
    let mut a = [label.clone(), l.clone()].concat();
    for i in 1u16..=3 {
        a = hmac_sha256(&hkey, &a);
        want.extend(hmac_sha256(
            &hkey,
            &[
                a.clone(),
                i.to_be_bytes().to_vec(),
                label.clone(),
                l.clone(),
            ]
            .concat(),
        ));
    }
    let call = Kbkdf {
        ty: CKM_SP800_108_DOUBLE_PIPELINE_KDF,
        prf: CKM_SHA256_HMAC,
        data: data.clone(),
        iv: vec![],
        extra: vec![secret(CKK_GENERIC_SECRET, Some(16), true)],
    };
    let (k, extra) = call.derive(&t, base, secret(CKK_GENERIC_SECRET, Some(40), true));
    let k = ok(k, "double pipeline with an additional key");
    assert_eq!(to_hex(&t.value(k)), to_hex(&want[..40]));
    assert_eq!(extra.len(), 1);
    assert_ne!(extra[0], CK_INVALID_HANDLE);
    assert_eq!(
        to_hex(&t.value(extra[0])),
        to_hex(&want[64..80]),
        "the additional key starts on a fresh segment"
    );
    // An AES additional key; the additional key's own flags.
    let call = Kbkdf {
        extra: vec![
            secret(CKK_AES, Some(16), false),
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
            ],
        ],
        ..call
    };
    let (k, extra) = call.derive(&t, base, secret(CKK_GENERIC_SECRET, Some(40), true));
    ok(k, "two additional keys");
    assert_eq!(extra.len(), 2);
    assert!(t.get_bool(extra[0], CKA_SENSITIVE));
    assert_eq!(t.get_ulong(extra[1], CKA_KEY_TYPE), CKK_AES);
    // A bad additional template: nothing is made, phKey is CK_INVALID_HANDLE.
    let before = ok(t.find(vec![u(CKA_CLASS, CKO_SECRET_KEY)]), "find").len();
    let bad = Kbkdf {
        extra: vec![
            secret(CKK_GENERIC_SECRET, Some(16), true),
            secret(CKK_AES, Some(17), true),
        ],
        ..call
    };
    let (r, extra) = bad.derive(&t, base, secret(CKK_GENERIC_SECRET, Some(40), true));
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCONSISTENT,
        "an AES key of 17 bytes",
    );
    assert_eq!(extra, vec![CK_INVALID_HANDLE; 2]);
    assert_eq!(
        ok(t.find(vec![u(CKA_CLASS, CKO_SECRET_KEY)]), "find").len(),
        before,
        "no key left behind"
    );

    // Parameter errors.
    let it = Data::Iter(Some((false, 16)));
    for (call, what) in [
        (counter(CKM_SHA256_HMAC, vec![]), "no iteration variable"),
        (
            counter(CKM_SHA256_HMAC, vec![it.clone(), Data::Counter(false, 8)]),
            "a counter in counter mode",
        ),
        (
            counter(CKM_SHA256_HMAC, vec![Data::Iter(Some((false, 12)))]),
            "a 12-bit counter",
        ),
        (
            counter(CKM_SHA256_HMAC, vec![it.clone(), Data::Dkm(3, false, 16)]),
            "an unknown DKM method",
        ),
        (counter(CKM_SHA256, vec![it.clone()]), "a digest as PRF"),
        (
            counter(CKM_SHA256_HMAC, vec![Data::Iter(None)]),
            "counter mode without a counter format",
        ),
    ] {
        let (r, _) = call.derive(&t, base, secret(CKK_GENERIC_SECRET, Some(16), true));
        check(r.err().unwrap_or(CKR_OK), CKR_MECHANISM_PARAM_INVALID, what);
    }
    let (r, _) = counter(CKM_AES_CMAC, vec![it.clone()]).derive(
        &t,
        base,
        secret(CKK_GENERIC_SECRET, Some(16), true),
    );
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_KEY_TYPE_INCONSISTENT,
        "CMAC over a generic secret",
    );

    // Flags: the template decides on a spec token; an imported base was never
    // always sensitive. On an hsm token the keys stay protected.
    let h = toks[1];
    let hbase = ok(
        h.generate(
            CKM_GENERIC_SECRET_KEY_GEN,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_DERIVE, true),
            ],
        ),
        "hsm base",
    );
    let (r, _) = counter(CKM_SHA256_HMAC, vec![it.clone()]).derive(
        &h,
        hbase,
        secret(CKK_GENERIC_SECRET, Some(16), true),
    );
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "hsm: readable KBKDF key",
    );
    let call = Kbkdf {
        extra: vec![vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_VALUE_LEN, 16),
            b(CKA_TOKEN, false),
        ]],
        ..counter(CKM_SHA256_HMAC, vec![it.clone()])
    };
    let (k, extra) = call.derive(
        &h,
        hbase,
        vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_VALUE_LEN, 16),
            b(CKA_TOKEN, false),
        ],
    );
    for k in [ok(k, "hsm KBKDF"), extra[0]] {
        let got = [
            CKA_SENSITIVE,
            CKA_EXTRACTABLE,
            CKA_ALWAYS_SENSITIVE,
            CKA_NEVER_EXTRACTABLE,
            CKA_LOCAL,
        ]
        .map(|a| h.get_bool(k, a));
        assert_eq!(got, [true, false, true, true, false], "hsm KBKDF flags");
    }
}

// ---------------------------------------------------------------------------
// 5. encrypt-data codes, 6. the mechanism list
// ---------------------------------------------------------------------------

#[test]
fn encrypt_data_refuses_short_and_misaligned_data() {
    let _env = TestEnv::new();
    let t = tokens(&[("encdata", "spec")])[0];
    let aes = import(&t, CKK_AES, &[0x11; 16], false);
    for d in [vec![], vec![1; 15], vec![1; 20]] {
        for m in [
            str_data(CKM_AES_ECB_ENCRYPT_DATA, &d),
            Mech::CbcData([0; 16], d.clone()),
        ] {
            check(
                t.derive(&m, aes, secret(CKK_GENERIC_SECRET, Some(16), true))
                    .err()
                    .unwrap_or(CKR_OK),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("{} with {} bytes", m.name(), d.len()),
            );
        }
    }
    // NULL parameter too.
    check(
        t.derive(
            CKM_AES_ECB_ENCRYPT_DATA,
            aes,
            secret(CKK_GENERIC_SECRET, Some(16), true),
        )
        .err()
        .unwrap_or(CKR_OK),
        CKR_MECHANISM_PARAM_INVALID,
        "ECB_ENCRYPT_DATA without a parameter",
    );
}

#[test]
fn new_mechanisms_are_listed_for_derivation() {
    let _env = TestEnv::new();
    let t = tokens(&[("mechs", "spec")])[0];
    for ty in [
        CKM_ECDH1_COFACTOR_DERIVE,
        CKM_CONCATENATE_BASE_AND_DATA,
        CKM_CONCATENATE_DATA_AND_BASE,
        CKM_XOR_BASE_AND_DATA,
        CKM_EXTRACT_KEY_FROM_KEY,
        CKM_SP800_108_COUNTER_KDF,
        CKM_SP800_108_FEEDBACK_KDF,
        CKM_SP800_108_DOUBLE_PIPELINE_KDF,
    ] {
        let mut info = CK_MECHANISM_INFO {
            ulMinKeySize: 0,
            ulMaxKeySize: 0,
            flags: 0,
        };
        let rv = ferrohsm_tests::ck!(t.m, C_GetMechanismInfo(t.slot, ty, &mut info));
        check(rv, CKR_OK, &format!("C_GetMechanismInfo {ty:#x}"));
        assert!(info.flags & CKF_DERIVE != 0, "{ty:#x} lacks CKF_DERIVE");
    }
}
