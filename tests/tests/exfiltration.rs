//! Exfiltration attempts against keys that must never leave FerroHSM: one test
//! per path an attacker holding the user PIN could try, through the raw C ABI.
//!
//! Every test makes two tokens in one data directory, one with the `hsm` key
//! policy and one with the `spec` policy, and generates on each, inside the token,
//! the targets: a sensitive, unextractable AES-256 key, a 256-bit generic secret
//! (the base key type HKDF accepts), an RSA-2048 private key and an EC P-256
//! private key (all `CKA_SENSITIVE` TRUE, `CKA_EXTRACTABLE` FALSE). Each attempt
//! must fail with the `CKR_*` the specification names (a set where it allows
//! alternatives, e.g. when two checks both apply and their order is the module's
//! choice), and the module log must hold a line recording the refusal (the
//! function name with the `CKR_*` name, or a "refused" line). No log line may hold
//! the bytes (raw or hex) of a key value the attacker imported.
//!
//! Paths: reading key material; wrapping under attacker-imported, target-derived
//! and target keys with every wrapping mechanism; copy/set of the protection
//! attributes; derivation with every derivation mechanism (results must be refused
//! or unreadable and, where the derivation is not one-way, unwrappable);
//! `CKA_TRUSTED`/`CKA_WRAP_WITH_TRUSTED` tricks; a public (logged-out) or SO
//! session; `C_GetObjectSize`; `C_DigestKey`.
//!
//! Each test prints a table path × key × policy → `CKR_*` and fails at the end
//! listing every failed attempt (run with `--no-capture` to see the table of a
//! passing test).

use std::ops::Deref;

use cryptoki_sys::*;
use ferrohsm_tests::mech::{Mech, Salt, kwp, with_mech};
use ferrohsm_tests::raw::{V, attr_bytes, attr_ref, b, by, check, rv_name, rv_of, u};
use ferrohsm_tests::tok::{self, Dir, H, tokens};
use ferrohsm_tests::{SO_PIN, TestEnv, ck, from_hex as hex, to_hex};

/// DER of the P-256 OID (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// A valid uncompressed P-256 point, the attacker's ECDH peer key.
const PEER_POINT: &str = "0431e435e0d5bc7381fe4a674bdadf652c93699c9183aea59a253b99c7752c19e0abb16ea042b8e226174e4405f510a9830607bc0971789974656745d76b1c2f36";
/// The value of the attacker's imported wrapping key (known to the attacker).
const KNOWN_WRAP: &[u8; 32] = &[
    0xcb, 0x5d, 0x46, 0xd9, 0xd3, 0xd9, 0x46, 0x58, 0x7c, 0xd1, 0x75, 0xc8, 0x58, 0x10, 0x08, 0x1e,
    0x16, 0xd9, 0x73, 0x25, 0x51, 0x30, 0xae, 0xec, 0x0d, 0x66, 0xe8, 0xc0, 0x7e, 0xf9, 0xbb, 0x55,
];
/// The value of an attacker-imported, extractable secret key.
const KNOWN_KEY: &[u8; 32] = &[
    0xc9, 0x36, 0xef, 0x51, 0xcf, 0xbf, 0xe1, 0x6d, 0xbe, 0xe8, 0x47, 0xa0, 0xc8, 0x10, 0xde, 0x6a,
    0x20, 0x3a, 0xdf, 0xb2, 0x4a, 0x34, 0x9b, 0x6a, 0xf6, 0xc3, 0xe6, 0x55, 0xa3, 0x6c, 0xd3, 0x90,
];

/// HKDF, ECDH and SP 800-108 are one-way: a readable result does not reveal the base key,
/// and the specification lets the template make it non-sensitive. With `false`
/// a readable result of these mechanisms (on the `spec` token) is reported in
/// the table as `READABLE(one-way)` without failing; `true` makes it a failure.
const STRICT_ONE_WAY_KDF: bool = false;

// ---------------------------------------------------------------------------
// templates and mechanisms
// ---------------------------------------------------------------------------

/// Short names for the tables of this file.
trait MechNames {
    fn name(&self) -> &'static str;
    fn is_aes_wrap(&self) -> bool;
}

impl MechNames for Mech {
    fn name(&self) -> &'static str {
        match self {
            Mech::Plain(CKM_AES_KEY_WRAP_KWP) => "KWP",
            Mech::Plain(CKM_AES_KEY_WRAP) => "KW",
            Mech::Plain(_) => "plain",
            Mech::Bytes(..) => "CBC_PAD",
            Mech::Gcm(_) => "GCM",
            Mech::Oaep => "RSA_OAEP",
            Mech::Hkdf { data: true, .. } => "HKDF_DATA",
            Mech::Hkdf { extract: false, .. } => "HKDF_DERIVE(expand-only)",
            Mech::Hkdf { .. } => "HKDF_DERIVE",
            Mech::StrData(..) => "AES_ECB_ENCRYPT_DATA",
            Mech::CbcData(..) => "AES_CBC_ENCRYPT_DATA",
            Mech::Concat(_) => "CONCATENATE_BASE_AND_KEY",
            Mech::Ecdh(_) => "ECDH1_DERIVE",
            _ => "other",
        }
    }
    fn is_aes_wrap(&self) -> bool {
        matches!(
            self,
            Mech::Plain(CKM_AES_KEY_WRAP_KWP | CKM_AES_KEY_WRAP) | Mech::Bytes(..) | Mech::Gcm(_)
        )
    }
}

/// The wrapping mechanisms, in table order.
fn wrap_mechs() -> Vec<Mech> {
    vec![
        kwp(),
        Mech::Plain(CKM_AES_KEY_WRAP),
        Mech::Bytes(CKM_AES_CBC_PAD, vec![7; 16]),
        Mech::Gcm(vec![9; 12]),
        Mech::Oaep,
    ]
}

// ---------------------------------------------------------------------------
// tokens and calls
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Policy {
    Hsm,
    Spec,
}

impl Policy {
    fn name(self) -> &'static str {
        match self {
            Policy::Hsm => "hsm",
            Policy::Spec => "spec",
        }
    }
}

/// A token of the lab, with its key policy (the calls: `tok::Tok`'s).
#[derive(Clone, Copy)]
struct Tok {
    tok: tok::Tok,
    policy: Policy,
}

impl Deref for Tok {
    type Target = tok::Tok;
    fn deref(&self) -> &tok::Tok {
        &self.tok
    }
}

// ---------------------------------------------------------------------------
// the targets
// ---------------------------------------------------------------------------

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Aes,
    Generic,
    Rsa,
    Ec,
}

const KINDS: [Kind; 4] = [Kind::Aes, Kind::Generic, Kind::Rsa, Kind::Ec];

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Aes => "AES-256",
            Kind::Generic => "GENERIC-256",
            Kind::Rsa => "RSA-2048",
            Kind::Ec => "EC-P256",
        }
    }
    fn is_private(self) -> bool {
        matches!(self, Kind::Rsa | Kind::Ec)
    }
    /// The attributes holding the key material.
    fn secret_attrs(self) -> &'static [(CK_ATTRIBUTE_TYPE, &'static str)] {
        match self {
            Kind::Aes | Kind::Generic | Kind::Ec => &[(CKA_VALUE, "CKA_VALUE")],
            Kind::Rsa => &[
                (CKA_PRIVATE_EXPONENT, "CKA_PRIVATE_EXPONENT"),
                (CKA_PRIME_1, "CKA_PRIME_1"),
                (CKA_PRIME_2, "CKA_PRIME_2"),
                (CKA_EXPONENT_1, "CKA_EXPONENT_1"),
                (CKA_EXPONENT_2, "CKA_EXPONENT_2"),
                (CKA_COEFFICIENT, "CKA_COEFFICIENT"),
            ],
        }
    }
}

/// The protected keys of one token.
struct Targets {
    aes: H,
    generic: H,
    rsa: H,
    rsa_pub: H,
    ec: H,
}

impl Targets {
    fn get(&self, k: Kind) -> H {
        match k {
            Kind::Aes => self.aes,
            Kind::Generic => self.generic,
            Kind::Rsa => self.rsa,
            Kind::Ec => self.ec,
        }
    }
}

fn protected() -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    vec![
        b(CKA_TOKEN, true),
        b(CKA_PRIVATE, true),
        b(CKA_SENSITIVE, true),
        b(CKA_EXTRACTABLE, false),
    ]
}

fn make_targets(t: &Tok) -> Targets {
    let secret = |mech, kt, len, extra: Vec<(CK_ATTRIBUTE_TYPE, V)>| {
        let mut l = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, kt),
            u(CKA_VALUE_LEN, len),
            b(CKA_DERIVE, true),
        ];
        l.extend(protected());
        l.extend(extra);
        t.generate(mech, l).unwrap_or_else(|rv| {
            panic!(
                "{}: generate target {kt:#x}: {}",
                t.policy.name(),
                rv_name(rv)
            )
        })
    };
    let aes = secret(
        CKM_AES_KEY_GEN,
        CKK_AES,
        32,
        vec![
            b(CKA_ENCRYPT, true),
            b(CKA_DECRYPT, true),
            b(CKA_WRAP, true),
            b(CKA_UNWRAP, true),
        ],
    );
    let generic = secret(
        CKM_GENERIC_SECRET_KEY_GEN,
        CKK_GENERIC_SECRET,
        32,
        vec![b(CKA_SIGN, true), b(CKA_VERIFY, true)],
    );
    let mut priv_rsa = protected();
    priv_rsa.extend([b(CKA_SIGN, true), b(CKA_DECRYPT, true), b(CKA_UNWRAP, true)]);
    let (rsa_pub, rsa) = t
        .generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, true),
                b(CKA_VERIFY, true),
                b(CKA_ENCRYPT, true),
                b(CKA_WRAP, true),
            ],
            priv_rsa,
        )
        .unwrap_or_else(|rv| panic!("{}: RSA key pair: {}", t.policy.name(), rv_name(rv)));
    let mut priv_ec = protected();
    priv_ec.extend([b(CKA_SIGN, true), b(CKA_DERIVE, true)]);
    let (_, ec) = t
        .generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![
                by(CKA_EC_PARAMS, P256_OID),
                b(CKA_TOKEN, true),
                b(CKA_VERIFY, true),
            ],
            priv_ec,
        )
        .unwrap_or_else(|rv| panic!("{}: EC key pair: {}", t.policy.name(), rv_name(rv)));
    let targets = Targets {
        aes,
        generic,
        rsa,
        rsa_pub,
        ec,
    };
    for k in KINDS {
        let h = targets.get(k);
        for (ty, what, want) in [
            (CKA_SENSITIVE, "CKA_SENSITIVE", true),
            (CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false),
            (CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", true),
            (CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", true),
            (CKA_LOCAL, "CKA_LOCAL", true),
        ] {
            assert_eq!(
                t.flag(h, ty),
                Some(want),
                "{} {}: {what} of the generated target",
                t.policy.name(),
                k.name()
            );
        }
    }
    targets
}

/// The attacker's imported AES wrapping key (known value; `CKA_WRAP` TRUE).
fn import_wrapping_key(t: &Tok) -> H {
    t.create(vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, CKK_AES),
        by(CKA_VALUE, KNOWN_WRAP),
        b(CKA_TOKEN, false),
        b(CKA_WRAP, true),
        b(CKA_UNWRAP, true),
        b(CKA_ENCRYPT, true),
        b(CKA_DECRYPT, true),
    ])
    .unwrap_or_else(|rv| panic!("{}: import wrapping key: {}", t.policy.name(), rv_name(rv)))
}

/// The attacker's extractable known secret key (for concatenation and controls).
fn import_known_key(t: &Tok) -> H {
    t.create(vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, CKK_AES),
        by(CKA_VALUE, KNOWN_KEY),
        b(CKA_TOKEN, false),
        b(CKA_EXTRACTABLE, true),
        b(CKA_DERIVE, true),
        b(CKA_ENCRYPT, true),
    ])
    .unwrap_or_else(|rv| panic!("{}: import known key: {}", t.policy.name(), rv_name(rv)))
}

/// An RSA public key the attacker imports (`CKA_WRAP` TRUE), with `modulus`.
fn import_rsa_public(
    t: &Tok,
    s: CK_SESSION_HANDLE,
    modulus: &[u8],
    extra: Vec<(CK_ATTRIBUTE_TYPE, V)>,
) -> Result<H, CK_RV> {
    let mut l = vec![
        u(CKA_CLASS, CKO_PUBLIC_KEY),
        u(CKA_KEY_TYPE, CKK_RSA),
        by(CKA_MODULUS, modulus),
        by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
        b(CKA_WRAP, true),
        b(CKA_ENCRYPT, true),
    ];
    l.extend(extra);
    t.on(s).create(l)
}

// ---------------------------------------------------------------------------
// the lab: two tokens, the results table, log checks
// ---------------------------------------------------------------------------

struct Row {
    path: &'static str,
    key: String,
    policy: Policy,
    attempt: String,
    got: String,
    pass: bool,
    why: String,
}

/// One attempt: its name, the function it calls, the answers allowed, the call.
type Attempt<'a> = (String, &'a str, &'a [CK_RV], &'a dyn Fn() -> CK_RV);

struct Lab {
    env: TestEnv,
    toks: Vec<Tok>,
    rows: Vec<Row>,
    /// Log bytes already seen by `mark`.
    seen: usize,
}

impl Lab {
    /// Two tokens in one data directory: `hsm` policy, then `spec` (the policy
    /// is chosen at `C_InitToken` from `FERROHSM_POLICY`, read at `C_Initialize`).
    fn new() -> Lab {
        let env = TestEnv::new();
        let toks: Vec<Tok> = tokens(&[("exfil-hsm", "hsm"), ("exfil-spec", "spec")])
            .into_iter()
            .zip([Policy::Hsm, Policy::Spec])
            .map(|(tok, policy)| Tok { tok, policy })
            .collect();
        // Each token has the policy it was made with.
        for t in &toks {
            let r = t.create(vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                by(CKA_VALUE, &[0x11; 16]),
                b(CKA_TOKEN, false),
                b(CKA_SENSITIVE, false),
            ]);
            match t.policy {
                Policy::Hsm => assert_eq!(
                    r,
                    Err(CKR_ATTRIBUTE_VALUE_INVALID),
                    "hsm token refuses CKA_SENSITIVE FALSE"
                ),
                Policy::Spec => assert!(r.is_ok(), "spec token accepts CKA_SENSITIVE FALSE: {r:?}"),
            }
        }
        let seen = std::fs::read(env.log_path()).map_or(0, |l| l.len());
        Lab {
            env,
            toks,
            rows: Vec::new(),
            seen,
        }
    }

    /// The log written since the last call.
    fn new_log(&mut self) -> String {
        let all = std::fs::read(self.env.log_path()).unwrap_or_default();
        let fresh = String::from_utf8_lossy(&all[self.seen.min(all.len())..]).into_owned();
        self.seen = all.len();
        fresh
    }

    /// Forgets the log so far (call before an attempt).
    fn mark(&mut self) {
        self.new_log();
    }

    /// Records one attempt: `rv` must be one of `want`; when `want` has no
    /// `CKR_OK`, the log since `mark` must hold a line naming `func` and the
    /// `CKR_*`, or a "refused" line.
    #[allow(clippy::too_many_arguments)]
    fn expect(
        &mut self,
        path: &'static str,
        key: &str,
        t: &Tok,
        attempt: &str,
        func: &str,
        rv: CK_RV,
        want: &[CK_RV],
    ) -> bool {
        let log = self.new_log();
        let mut why = String::new();
        if !want.contains(&rv) {
            why = format!(
                "expected {}, got {}",
                want.iter()
                    .map(|r| rv_name(*r))
                    .collect::<Vec<_>>()
                    .join("|"),
                rv_name(rv)
            );
        } else if rv != CKR_OK {
            let name = rv_name(rv);
            let logged = log
                .lines()
                .any(|l| (l.contains(func) && l.contains(&name)) || l.contains("refused"));
            if !logged {
                why = format!("no log line records the refusal ({func}/{name}); new log: {log:?}");
            }
        }
        let pass = why.is_empty();
        self.rows.push(Row {
            path,
            key: key.to_string(),
            policy: t.policy,
            attempt: attempt.to_string(),
            got: rv_name(rv),
            pass,
            why,
        });
        pass
    }

    /// Makes the attempts of `rows` in order, each after `mark`, recording
    /// each answer with `expect`.
    fn attempts(&mut self, path: &'static str, key: &str, t: &Tok, rows: &[Attempt<'_>]) {
        for (attempt, func, want, call) in rows {
            self.mark();
            let rv = call();
            self.expect(path, key, t, attempt, func, rv, want);
        }
    }

    /// Records a verdict computed by the caller.
    fn verdict(
        &mut self,
        path: &'static str,
        key: &str,
        t: &Tok,
        attempt: &str,
        got: String,
        why: Option<String>,
    ) {
        self.new_log();
        self.rows.push(Row {
            path,
            key: key.to_string(),
            policy: t.policy,
            attempt: attempt.to_string(),
            got,
            pass: why.is_none(),
            why: why.unwrap_or_default(),
        });
    }

    /// Prints the table, checks the log for known key bytes, fails on any failed row.
    fn finish(self) {
        let log = std::fs::read(self.env.log_path()).unwrap_or_default();
        let mut leaks = Vec::new();
        for (name, v) in [
            ("KNOWN_WRAP", &KNOWN_WRAP[..]),
            ("KNOWN_KEY", &KNOWN_KEY[..]),
        ] {
            let lower = to_hex(v);
            let upper = lower.to_uppercase();
            for (enc, needle) in [
                ("raw", v.to_vec()),
                ("hex", lower.into_bytes()),
                ("HEX", upper.into_bytes()),
            ] {
                if log.windows(needle.len()).any(|w| w == needle.as_slice()) {
                    leaks.push(format!("{name} ({enc})"));
                }
                // Also any 8-byte piece of the raw value (a partial dump).
                if enc == "raw" && v.windows(8).any(|p| log.windows(8).any(|w| w == p)) {
                    leaks.push(format!("{name} (8-byte piece)"));
                }
            }
            // `{:?}` of a byte slice: "[203, 93, ...".
            let debug = format!("{:?}", &v[..8]);
            let debug = debug.trim_end_matches(']').as_bytes();
            if log.windows(debug.len()).any(|w| w == debug) {
                leaks.push(format!("{name} (Debug list)"));
            }
        }
        let w = [
            self.rows
                .iter()
                .map(|r| r.path.len())
                .max()
                .unwrap_or(4)
                .max(4),
            self.rows
                .iter()
                .map(|r| r.key.len())
                .max()
                .unwrap_or(3)
                .max(3),
            6,
            self.rows
                .iter()
                .map(|r| r.attempt.len())
                .max()
                .unwrap_or(7)
                .max(7),
            self.rows
                .iter()
                .map(|r| r.got.len())
                .max()
                .unwrap_or(2)
                .max(2),
        ];
        println!(
            "{:<a$} | {:<b$} | {:<c$} | {:<d$} | {:<e$} | verdict",
            "path",
            "key",
            "policy",
            "attempt",
            "rv",
            a = w[0],
            b = w[1],
            c = w[2],
            d = w[3],
            e = w[4]
        );
        for r in &self.rows {
            println!(
                "{:<a$} | {:<b$} | {:<c$} | {:<d$} | {:<e$} | {}",
                r.path,
                r.key,
                r.policy.name(),
                r.attempt,
                r.got,
                if r.pass {
                    "ok".to_string()
                } else {
                    format!("FAIL: {}", r.why)
                },
                a = w[0],
                b = w[1],
                c = w[2],
                d = w[3],
                e = w[4]
            );
        }
        let failed: Vec<String> = self
            .rows
            .iter()
            .filter(|r| !r.pass)
            .map(|r| {
                format!(
                    "{} / {} / {} / {}: {}",
                    r.path,
                    r.key,
                    r.policy.name(),
                    r.attempt,
                    r.why
                )
            })
            .collect();
        println!(
            "{} attempts, {} failed; log: {}",
            self.rows.len(),
            failed.len(),
            self.env.log_path().display()
        );
        assert!(
            leaks.is_empty(),
            "the module log holds known key bytes: {leaks:?}"
        );
        assert!(
            failed.is_empty(),
            "{} failed attempts:\n{}",
            failed.len(),
            failed.join("\n")
        );
    }
}

// ---------------------------------------------------------------------------
// 1. reading key material
// ---------------------------------------------------------------------------

#[test]
fn read_key_material() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        for k in KINDS {
            for &(ty, name) in k.secret_attrs() {
                // Size query (pValue NULL).
                lab.mark();
                let (rv, n, _) = t.get_raw(tg.get(k), ty, None);
                if lab.expect(
                    "read",
                    k.name(),
                    &t,
                    &format!("{name} (NULL buffer)"),
                    "C_GetAttributeValue",
                    rv,
                    &[CKR_ATTRIBUTE_SENSITIVE],
                ) && n != CK_UNAVAILABLE_INFORMATION
                {
                    lab.verdict(
                        "read",
                        k.name(),
                        &t,
                        &format!("{name} ulValueLen"),
                        format!("{n}"),
                        Some("ulValueLen must be CK_UNAVAILABLE_INFORMATION".into()),
                    );
                }
                // With a large buffer: refused, length unavailable, buffer untouched.
                lab.mark();
                let (rv, n, buf) = t.get_raw(tg.get(k), ty, Some(4096));
                lab.expect(
                    "read",
                    k.name(),
                    &t,
                    &format!("{name} (4096-byte buffer)"),
                    "C_GetAttributeValue",
                    rv,
                    &[CKR_ATTRIBUTE_SENSITIVE],
                );
                if n != CK_UNAVAILABLE_INFORMATION || buf.iter().any(|x| *x != 0xa5) {
                    lab.verdict("read", k.name(), &t, &format!("{name} buffer"), format!("len {n}"), Some("ulValueLen must be CK_UNAVAILABLE_INFORMATION and the buffer untouched".into()));
                }
                // In a template with a readable attribute: that one is still filled.
                lab.mark();
                let mut class: CK_ULONG = 0;
                let mut secret = vec![0u8; 4096];
                let mut tpl = [attr_ref(CKA_CLASS, &mut class), attr_bytes(ty, &mut secret)];
                let rv = ck!(
                    t.m,
                    C_GetAttributeValue(t.s, tg.get(k), tpl.as_mut_ptr(), 2)
                );
                lab.expect(
                    "read",
                    k.name(),
                    &t,
                    &format!("CKA_CLASS + {name}"),
                    "C_GetAttributeValue",
                    rv,
                    &[CKR_ATTRIBUTE_SENSITIVE],
                );
                let want_class = if k.is_private() {
                    CKO_PRIVATE_KEY
                } else {
                    CKO_SECRET_KEY
                };
                if class != want_class || tpl[1].ulValueLen != CK_UNAVAILABLE_INFORMATION {
                    lab.verdict(
                        "read",
                        k.name(),
                        &t,
                        &format!("CKA_CLASS + {name} values"),
                        format!("class {class:#x}, len {}", tpl[1].ulValueLen),
                        Some("CKA_CLASS must be filled and the secret's length unavailable".into()),
                    );
                }
            }
        }
    }
    lab.finish();
}

// ---------------------------------------------------------------------------
// 2. wrapping
// ---------------------------------------------------------------------------

/// Wrapping keys of one kind for one target.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum WrapKind {
    Imported,
    Derived,
    Itself,
}

#[test]
fn wrap_under_every_mechanism_and_wrapping_key() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        let imported_aes = import_wrapping_key(&t);
        let modulus = t
            .get(tg.rsa_pub, CKA_MODULUS)
            .expect("CKA_MODULUS of the public key");
        let imported_rsa = import_rsa_public(&t, t.s, &modulus, vec![b(CKA_TOKEN, false)])
            .unwrap_or_else(|rv| panic!("import RSA public key: {}", rv_name(rv)));

        // Control: the same wrapping keys wrap an extractable key on a `spec`
        // token. An `hsm` token wraps under no caller-known key at all (the
        // wrapped key could be one generated inside), so it refuses even a
        // key the caller knows.
        let known = import_known_key(&t);
        let control = match t.policy {
            Policy::Hsm => CKR_KEY_NOT_WRAPPABLE,
            Policy::Spec => CKR_OK,
        };
        for (mech, wk) in [(kwp(), imported_aes), (Mech::Oaep, imported_rsa)] {
            lab.mark();
            let rv = t.wrap(&mech, wk, known).err().unwrap_or(CKR_OK);
            lab.expect(
                "wrap",
                "known (control)",
                &t,
                &format!("{} under imported", mech.name()),
                "C_WrapKey",
                rv,
                &[control],
            );
        }

        // Sensitive AES-256 wrapping keys derived from each target, where the
        // target's type allows a derivation.
        let derived_tpl = || {
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, false),
                b(CKA_WRAP, true),
            ]
        };
        let derive_from = |k: Kind| -> Result<H, CK_RV> {
            let mech = match k {
                Kind::Aes => Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![0x42; 32]),
                Kind::Generic => Mech::Hkdf {
                    data: false,
                    extract: true,
                    expand: true,
                    salt: Salt::Null,
                    info: b"wrap".to_vec(),
                },
                Kind::Ec => Mech::Ecdh(hex(PEER_POINT)),
                Kind::Rsa => return Err(CKR_MECHANISM_INVALID),
            };
            t.derive(&mech, tg.get(k), derived_tpl())
        };

        for k in KINDS {
            let target = tg.get(k);
            let derived = derive_from(k);
            if k != Kind::Rsa {
                let got = derived.err().map_or("CKR_OK".to_string(), rv_name);
                let why = derived.is_err().then(|| "a sensitive wrapping key could not be derived from the target (derived-key rows below are void)".to_string());
                lab.verdict(
                    "wrap",
                    k.name(),
                    &t,
                    "derive a sensitive wrapping key from the target",
                    got,
                    why,
                );
            }
            for mech in wrap_mechs() {
                for kind in [WrapKind::Imported, WrapKind::Derived, WrapKind::Itself] {
                    let wk = match (kind, mech.is_aes_wrap()) {
                        (WrapKind::Imported, true) => imported_aes,
                        (WrapKind::Imported, false) => imported_rsa,
                        (WrapKind::Derived, _) => match derived {
                            Ok(h) => h,
                            Err(_) => continue,
                        },
                        (WrapKind::Itself, _) => target,
                    };
                    // What the wrapping key is: (an AES secret key?, an RSA public key?, has CKA_WRAP?).
                    let (wk_aes, wk_rsa_pub, wk_wrap) = match kind {
                        WrapKind::Imported => (mech.is_aes_wrap(), !mech.is_aes_wrap(), true),
                        WrapKind::Derived => (true, false, true),
                        WrapKind::Itself => (k == Kind::Aes, false, k == Kind::Aes),
                    };
                    let mut want = vec![CKR_KEY_UNEXTRACTABLE];
                    let type_ok = if mech.is_aes_wrap() {
                        wk_aes
                    } else {
                        wk_rsa_pub
                    };
                    if !type_ok {
                        want.push(CKR_WRAPPING_KEY_TYPE_INCONSISTENT);
                    }
                    if !wk_wrap {
                        want.push(CKR_KEY_FUNCTION_NOT_PERMITTED);
                    }
                    // RSA-OAEP wraps secret keys only (KW zero-pads, so it
                    // takes private keys too).
                    if k.is_private() && matches!(mech, Mech::Oaep) {
                        want.push(CKR_KEY_NOT_WRAPPABLE);
                    }
                    let attempt = format!("{} under {:?}", mech.name(), kind);
                    lab.mark();
                    let (rv, _) = t.wrap_raw(&mech, wk, target, None);
                    lab.expect(
                        "wrap",
                        k.name(),
                        &t,
                        &format!("{attempt} (size query)"),
                        "C_WrapKey",
                        rv,
                        &want,
                    );
                    lab.mark();
                    let mut buf = vec![0u8; 8192];
                    let (rv, _) = t.wrap_raw(&mech, wk, target, Some(&mut buf));
                    lab.expect("wrap", k.name(), &t, &attempt, "C_WrapKey", rv, &want);
                }
            }
        }
    }
    lab.finish();
}

// ---------------------------------------------------------------------------
// 3. copy and set of the protection attributes
// ---------------------------------------------------------------------------

#[test]
fn copy_and_set_cannot_unprotect() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        for k in KINDS {
            let h = tg.get(k);
            let copy_want: &[CK_RV] = &[CKR_ATTRIBUTE_READ_ONLY, CKR_TEMPLATE_INCONSISTENT];
            let read_only: &[CK_RV] = &[CKR_ATTRIBUTE_READ_ONLY];
            let (copy, set) = ("C_CopyObject", "C_SetAttributeValue");
            let (ty, name) = k.secret_attrs()[0];
            lab.attempts(
                "copy/set",
                k.name(),
                &t,
                &[
                    (
                        "C_CopyObject EXTRACTABLE=TRUE".into(),
                        copy,
                        copy_want,
                        &|| rv_of(&t.copy(h, vec![b(CKA_EXTRACTABLE, true)])),
                    ),
                    (
                        "C_CopyObject SENSITIVE=FALSE".into(),
                        copy,
                        copy_want,
                        &|| rv_of(&t.copy(h, vec![b(CKA_SENSITIVE, false)])),
                    ),
                    (
                        "C_SetAttributeValue SENSITIVE=FALSE".into(),
                        set,
                        read_only,
                        &|| t.set(h, vec![b(CKA_SENSITIVE, false)]),
                    ),
                    (
                        "C_SetAttributeValue EXTRACTABLE=TRUE".into(),
                        set,
                        read_only,
                        &|| t.set(h, vec![b(CKA_EXTRACTABLE, true)]),
                    ),
                    // Replacing the key material with a known value.
                    (
                        format!("C_SetAttributeValue {name}=known"),
                        set,
                        read_only,
                        &|| t.set(h, vec![by(ty, KNOWN_KEY)]),
                    ),
                ],
            );
            // A plain copy is allowed and stays protected.
            lab.mark();
            match t.copy(h, vec![b(CKA_TOKEN, false)]) {
                Ok(c) => {
                    let flags = (
                        t.flag(c, CKA_SENSITIVE),
                        t.flag(c, CKA_EXTRACTABLE),
                        t.flag(c, CKA_ALWAYS_SENSITIVE),
                        t.flag(c, CKA_NEVER_EXTRACTABLE),
                    );
                    let why = (flags != (Some(true), Some(false), Some(true), Some(true)))
                        .then(|| format!("copy must keep SENSITIVE/EXTRACTABLE/ALWAYS_SENSITIVE/NEVER_EXTRACTABLE = T/F/T/T, got {flags:?}"));
                    lab.verdict(
                        "copy/set",
                        k.name(),
                        &t,
                        "C_CopyObject (plain) flags",
                        "CKR_OK".into(),
                        why,
                    );
                    lab.mark();
                    let rv = t.get(c, ty).err().unwrap_or(CKR_OK);
                    lab.expect(
                        "copy/set",
                        k.name(),
                        &t,
                        &format!("read {name} of the copy"),
                        "C_GetAttributeValue",
                        rv,
                        &[CKR_ATTRIBUTE_SENSITIVE],
                    );
                    lab.mark();
                    let rv = t.set(c, vec![b(CKA_EXTRACTABLE, true)]);
                    lab.expect(
                        "copy/set",
                        k.name(),
                        &t,
                        "copy: C_SetAttributeValue EXTRACTABLE=TRUE",
                        "C_SetAttributeValue",
                        rv,
                        &[CKR_ATTRIBUTE_READ_ONLY],
                    );
                }
                Err(rv) => lab.verdict(
                    "copy/set",
                    k.name(),
                    &t,
                    "C_CopyObject (plain)",
                    rv_name(rv),
                    Some("a plain copy of a copyable key should work".into()),
                ),
            }
            let after = (t.flag(h, CKA_SENSITIVE), t.flag(h, CKA_EXTRACTABLE));
            let why =
                (after != (Some(true), Some(false))).then(|| format!("target changed: {after:?}"));
            lab.verdict(
                "copy/set",
                k.name(),
                &t,
                "target still SENSITIVE, not EXTRACTABLE",
                format!("{after:?}"),
                why,
            );
        }
    }
    lab.finish();
}

// ---------------------------------------------------------------------------
// 4. derivation
// ---------------------------------------------------------------------------

/// One derivation attempt against a target.
struct DeriveCase {
    label: &'static str,
    mech: Mech,
    /// The base key handed to `C_DeriveKey`.
    base: H,
    /// The attacker's known key is one of the bases (the derived key is then
    /// neither always sensitive nor never extractable).
    with_known: bool,
    /// The mechanism accepts the target's key type where the target is used.
    type_ok: bool,
    /// A readable result would not reveal the target (HKDF, ECDH).
    one_way: bool,
    /// The result is a `CKO_DATA` object.
    data: bool,
    /// Length of the result.
    len: CK_ULONG,
}

/// The derivations to try against `target` (of kind `k`); `known` is the
/// attacker's extractable AES key, `known_generic` the same bytes as a generic secret.
fn derive_cases(k: Kind, target: H, known: H, known_generic: H) -> Vec<DeriveCase> {
    let hkdf = |data: bool, extract: bool, salt: Salt| Mech::Hkdf {
        data,
        extract,
        expand: true,
        salt,
        info: b"exfiltrate".to_vec(),
    };
    let secret = matches!(k, Kind::Aes | Kind::Generic);
    let case = |label, mech, base, with_known, type_ok, one_way, data, len| DeriveCase {
        label,
        mech,
        base,
        with_known,
        type_ok,
        one_way,
        data,
        len,
    };
    let salt = || Salt::Data(b"salt".to_vec());
    let generic = k == Kind::Generic;
    vec![
        case(
            "HKDF_DERIVE",
            hkdf(false, true, Salt::Null),
            target,
            false,
            generic,
            true,
            false,
            32,
        ),
        case(
            "HKDF_DERIVE(expand-only)",
            hkdf(false, false, Salt::Null),
            target,
            false,
            generic,
            true,
            false,
            32,
        ),
        case(
            "HKDF_DATA",
            hkdf(true, true, salt()),
            target,
            false,
            generic,
            true,
            true,
            32,
        ),
        // The target as the HKDF salt key (HMAC key of the extract step), the
        // attacker's key as input: PRK = HMAC(target, known). HKDF keys are
        // generic secrets: an AES target is refused for its type.
        case(
            "HKDF_DERIVE(known, salt key=target)",
            hkdf(false, true, Salt::Key(target)),
            known_generic,
            true,
            generic,
            true,
            false,
            32,
        ),
        case(
            "HKDF_DATA(known, salt key=target)",
            hkdf(true, true, Salt::Key(target)),
            known_generic,
            true,
            generic,
            true,
            true,
            32,
        ),
        case(
            "AES_ECB_ENCRYPT_DATA",
            Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![0x42; 32]),
            target,
            false,
            k == Kind::Aes,
            false,
            false,
            32,
        ),
        case(
            "AES_CBC_ENCRYPT_DATA",
            Mech::CbcData([0x24; 16], vec![0x42; 32]),
            target,
            false,
            k == Kind::Aes,
            false,
            false,
            32,
        ),
        case(
            "CONCATENATE(target, known)",
            Mech::Concat(known),
            target,
            true,
            secret,
            false,
            false,
            64,
        ),
        case(
            "CONCATENATE(known, target)",
            Mech::Concat(target),
            known,
            true,
            secret,
            false,
            false,
            64,
        ),
        case(
            "CONCATENATE_BASE_AND_DATA",
            Mech::StrData(CKM_CONCATENATE_BASE_AND_DATA, vec![0x42; 16]),
            target,
            false,
            secret,
            false,
            false,
            48,
        ),
        case(
            "CONCATENATE_DATA_AND_BASE",
            Mech::StrData(CKM_CONCATENATE_DATA_AND_BASE, vec![0x42; 16]),
            target,
            false,
            secret,
            false,
            false,
            48,
        ),
        case(
            "XOR_BASE_AND_DATA",
            Mech::StrData(CKM_XOR_BASE_AND_DATA, vec![0x42; 32]),
            target,
            false,
            secret,
            false,
            false,
            32,
        ),
        case(
            "EXTRACT_KEY_FROM_KEY",
            Mech::Extract(8),
            target,
            false,
            secret,
            false,
            false,
            32,
        ),
        case(
            "SP800_108_COUNTER_KDF(HMAC)",
            Mech::Kbkdf(CKM_SHA256_HMAC, b"exfiltrate".to_vec()),
            target,
            false,
            secret,
            true,
            false,
            32,
        ),
        case(
            "ECDH1_DERIVE",
            Mech::Ecdh(hex(PEER_POINT)),
            target,
            false,
            k == Kind::Ec,
            true,
            false,
            32,
        ),
    ]
}

#[test]
fn derive_cannot_unprotect() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        let known = import_known_key(&t);
        let known_generic = t
            .create(vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                by(CKA_VALUE, KNOWN_KEY),
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_DERIVE, true),
            ])
            .expect("import the known generic secret");
        let attacker_wrap = import_wrapping_key(&t);
        for k in KINDS {
            let target = tg.get(k);
            for case in derive_cases(k, target, known, known_generic) {
                let label = case.label;
                // (SENSITIVE, EXTRACTABLE) asked for; `None`: the defaults.
                for (tname, ask) in [
                    ("SENSITIVE=F,EXTRACTABLE=T", Some((false, true))),
                    ("EXTRACTABLE=T", Some((true, true))),
                    ("defaults", None),
                ] {
                    // A data object has no CKA_SENSITIVE/CKA_EXTRACTABLE: it is
                    // tried once, with a plain data template.
                    if case.data && ask.is_some() {
                        continue;
                    }
                    let mut tpl = if case.data {
                        vec![
                            u(CKA_CLASS, CKO_DATA),
                            u(CKA_VALUE_LEN, case.len),
                            b(CKA_TOKEN, false),
                        ]
                    } else {
                        vec![
                            u(CKA_CLASS, CKO_SECRET_KEY),
                            u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                            u(CKA_VALUE_LEN, case.len),
                            b(CKA_TOKEN, false),
                        ]
                    };
                    if let Some((sens, ext)) = ask {
                        if !sens {
                            tpl.push(b(CKA_SENSITIVE, false));
                        }
                        tpl.push(b(CKA_EXTRACTABLE, ext));
                    }
                    let base = case.base;
                    let attempt = format!("{label} [{tname}]");
                    lab.mark();
                    match t.derive(&case.mech, base, tpl) {
                        Err(rv) => {
                            let mut want = vec![
                                CKR_ATTRIBUTE_VALUE_INVALID,
                                CKR_TEMPLATE_INCONSISTENT,
                                CKR_KEY_FUNCTION_NOT_PERMITTED,
                                CKR_KEY_UNEXTRACTABLE,
                            ];
                            if !case.type_ok {
                                want.extend([
                                    CKR_KEY_TYPE_INCONSISTENT,
                                    CKR_MECHANISM_PARAM_INVALID,
                                ]);
                            }
                            lab.expect("derive", k.name(), &t, &attempt, "C_DeriveKey", rv, &want);
                        }
                        Ok(h) => {
                            let (got, why) = judge_derived(&t, h, &case, attacker_wrap);
                            lab.verdict("derive", k.name(), &t, &attempt, got, why);
                        }
                    }
                }
            }
        }

        // The oracle: E_K(0^16) is what CKA_CHECK_VALUE's first 3 bytes come from.
        let kcv = t.get(tg.aes, CKA_CHECK_VALUE).unwrap_or_default();
        for mech in [
            Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![0; 16]),
            Mech::CbcData([0; 16], vec![0; 16]),
        ] {
            lab.mark();
            let r = t.derive(
                &mech,
                tg.aes,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                    u(CKA_VALUE_LEN, 16),
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, false),
                    b(CKA_EXTRACTABLE, true),
                ],
            );
            let attempt = format!("oracle {}(0^16) vs CKA_CHECK_VALUE", mech.name());
            match r {
                Err(rv) => {
                    lab.expect(
                        "derive",
                        "AES-256",
                        &t,
                        &attempt,
                        "C_DeriveKey",
                        rv,
                        &[
                            CKR_ATTRIBUTE_VALUE_INVALID,
                            CKR_TEMPLATE_INCONSISTENT,
                            CKR_KEY_FUNCTION_NOT_PERMITTED,
                            CKR_KEY_UNEXTRACTABLE,
                        ],
                    );
                }
                Ok(h) => {
                    let v = t.get(h, CKA_VALUE);
                    let why = match &v {
                        Ok(v) if v.len() >= 3 && kcv.len() == 3 && v[..3] == kcv[..] => Some(
                            "E_K(0^16) is readable: it matches the target's check value"
                                .to_string(),
                        ),
                        Ok(_) => Some("E_K(data) is readable".to_string()),
                        Err(CKR_ATTRIBUTE_SENSITIVE) => None,
                        Err(rv) => Some(format!("reading CKA_VALUE gave {}", rv_name(*rv))),
                    };
                    lab.verdict(
                        "derive",
                        "AES-256",
                        &t,
                        &attempt,
                        format!(
                            "derived; CKA_VALUE {}",
                            v.err().map_or("READABLE".into(), rv_name)
                        ),
                        why,
                    );
                }
            }
        }
    }
    lab.finish();
}

/// Judges a derived object: its value must be unreadable, its flags truthful, and
/// (unless the derivation is one-way) it must not wrap under the attacker's key.
fn judge_derived(t: &Tok, h: H, case: &DeriveCase, attacker_wrap: H) -> (String, Option<String>) {
    let mut problems = Vec::new();
    let value = t.get(h, CKA_VALUE);
    let readable = value.is_ok();
    let lenient = case.one_way && !STRICT_ONE_WAY_KDF;
    match &value {
        Ok(_) if lenient => {}
        Ok(_) => problems.push("the derived value is readable".to_string()),
        Err(CKR_ATTRIBUTE_SENSITIVE) => {}
        Err(rv) => problems.push(format!("reading CKA_VALUE gave {}", rv_name(*rv))),
    }
    let mut got = format!(
        "derived; CKA_VALUE {}",
        value.err().map_or(
            if lenient {
                "READABLE(one-way)".to_string()
            } else {
                "READABLE".to_string()
            },
            rv_name
        )
    );
    if !case.data {
        let sens = t.flag(h, CKA_SENSITIVE).unwrap_or(false);
        let ext = t.flag(h, CKA_EXTRACTABLE).unwrap_or(true);
        // The bases: the target (always sensitive, never extractable) and, for a
        // concatenation, the attacker's imported key (neither).
        let bases_always = !case.with_known;
        let want_as = bases_always && sens;
        let want_ne = bases_always && !ext;
        let got_as = t.flag(h, CKA_ALWAYS_SENSITIVE);
        let got_ne = t.flag(h, CKA_NEVER_EXTRACTABLE);
        if got_as != Some(want_as) || got_ne != Some(want_ne) {
            problems.push(format!(
                "ALWAYS_SENSITIVE/NEVER_EXTRACTABLE = {got_as:?}/{got_ne:?}, expected {want_as}/{want_ne} (SENSITIVE {sens}, EXTRACTABLE {ext}, base {})",
                if bases_always { "always sensitive" } else { "includes an imported key" }
            ));
        }
        if t.flag(h, CKA_LOCAL) != Some(false) {
            problems.push("a derived key must not be CKA_LOCAL".into());
        }
        // The derived key under the attacker's wrapping key.
        let w = t.wrap(&kwp(), attacker_wrap, h);
        got.push_str(&format!(
            "; KWP wrap {}",
            w.as_ref().err().map_or("CKR_OK".into(), |rv| rv_name(*rv))
        ));
        match w {
            Err(CKR_KEY_UNEXTRACTABLE) => {}
            Ok(_) if lenient => {}
            Ok(_) => problems.push(format!(
                "the derived key wraps under the attacker's key, revealing {}",
                if matches!(case.mech, Mech::Concat(_)) {
                    "the target"
                } else {
                    "E_K(data)"
                }
            )),
            Err(rv) => problems.push(format!("wrapping the derived key gave {}", rv_name(rv))),
        }
    } else if readable && !lenient {
        problems.push("HKDF_DATA output from a protected base is readable".into());
    }
    (got, (!problems.is_empty()).then(|| problems.join("; ")))
}

// ---------------------------------------------------------------------------
// 5. CKA_TRUSTED and CKA_WRAP_WITH_TRUSTED
// ---------------------------------------------------------------------------

/// Neither `C_SetAttributeValue` nor `C_CopyObject` of `h` may set the
/// boolean `flag`; `what` names the attempt, `{}` standing for the function.
fn set_and_copy(
    lab: &mut Lab,
    key: &str,
    t: &Tok,
    h: H,
    flag: (CK_ATTRIBUTE_TYPE, bool),
    what: &str,
) {
    let (set, copy) = ("C_SetAttributeValue", "C_CopyObject");
    let template = || vec![b(flag.0, flag.1)];
    lab.attempts(
        "trusted",
        key,
        t,
        &[
            (
                what.replace("{}", set),
                set,
                &[CKR_ATTRIBUTE_READ_ONLY],
                &|| t.set(h, template()),
            ),
            (
                what.replace("{}", copy),
                copy,
                &[CKR_ATTRIBUTE_READ_ONLY, CKR_TEMPLATE_INCONSISTENT],
                &|| rv_of(&t.copy(h, template())),
            ),
        ],
    );
}

#[test]
fn trusted_attribute_tricks() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        let modulus = t.get(tg.rsa_pub, CKA_MODULUS).expect("CKA_MODULUS");
        // The SO (and only the SO) makes a trusted RSA public wrapping key.
        t.logout();
        check(t.m.login(t.s, CKU_SO, SO_PIN), CKR_OK, "C_Login SO");
        let trusted = import_rsa_public(
            &t,
            t.s,
            &modulus,
            vec![
                b(CKA_TOKEN, true),
                b(CKA_PRIVATE, false),
                b(CKA_TRUSTED, true),
            ],
        )
        .unwrap_or_else(|rv| panic!("SO creates a trusted public key: {}", rv_name(rv)));
        t.logout();
        t.login_user();
        // Handles of private objects may change across a logout: find the
        // AES target anew (the only sensitive token AES-256 key with CKA_WRAP).
        let target_aes = t
            .find(vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                b(CKA_TOKEN, true),
                b(CKA_WRAP, true),
            ])
            .expect("find the AES target");
        assert_eq!(target_aes.len(), 1, "one AES target");
        let target_aes = target_aes[0];

        let imported_aes = import_wrapping_key(&t);
        let imported_rsa = import_rsa_public(&t, t.s, &modulus, vec![b(CKA_TOKEN, false)])
            .expect("import RSA public");
        let key = "imported";

        // The user cannot make a trusted key: create, set, copy, unwrap.
        let trusted_rsa = vec![b(CKA_TOKEN, false), b(CKA_TRUSTED, true)];
        let trusted_aes = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            by(CKA_VALUE, KNOWN_WRAP),
            b(CKA_TOKEN, false),
            b(CKA_WRAP, true),
            b(CKA_TRUSTED, true),
        ];
        let (create, read_only) = ("C_CreateObject", &[CKR_ATTRIBUTE_READ_ONLY]);
        lab.attempts(
            "trusted",
            key,
            &t,
            &[
                (
                    "user C_CreateObject RSA public TRUSTED=TRUE".into(),
                    create,
                    read_only,
                    &|| rv_of(&import_rsa_public(&t, t.s, &modulus, trusted_rsa.clone())),
                ),
                (
                    "user C_CreateObject AES TRUSTED=TRUE".into(),
                    create,
                    read_only,
                    &|| rv_of(&t.create(trusted_aes.clone())),
                ),
            ],
        );
        for (what, h) in [("AES", imported_aes), ("RSA public", imported_rsa)] {
            set_and_copy(
                &mut lab,
                key,
                &t,
                h,
                (CKA_TRUSTED, true),
                &format!("user {{}} {what} TRUSTED=TRUE"),
            );
        }
        // Unwrapping a known key with forged attributes.
        let known = import_known_key(&t);
        lab.mark();
        let blob = match t.policy {
            // The caller can make the blob itself: C_Encrypt with the
            // wrapping key it imported (an `hsm` token wraps under no
            // caller-known key, see wrap_under_every_mechanism_and_wrapping_key).
            Policy::Hsm => t.encrypt(&kwp(), imported_aes, KNOWN_KEY),
            Policy::Spec => t.wrap(&kwp(), imported_aes, known),
        };
        lab.expect(
            "trusted",
            key,
            &t,
            "control: KWP wrap of the known key",
            "C_WrapKey",
            blob.as_ref().err().copied().unwrap_or(CKR_OK),
            &[CKR_OK],
        );
        if let Ok(blob) = blob {
            let base = || {
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_AES),
                    b(CKA_TOKEN, false),
                    b(CKA_WRAP, true),
                ]
            };
            for (what, forged) in [
                ("TRUSTED=TRUE", b(CKA_TRUSTED, true)),
                ("LOCAL=TRUE", b(CKA_LOCAL, true)),
                ("ALWAYS_SENSITIVE=TRUE", b(CKA_ALWAYS_SENSITIVE, true)),
                ("NEVER_EXTRACTABLE=TRUE", b(CKA_NEVER_EXTRACTABLE, true)),
            ] {
                let mut tpl = base();
                tpl.push(forged);
                lab.mark();
                let rv = t
                    .unwrap(&kwp(), imported_aes, &blob, tpl)
                    .err()
                    .unwrap_or(CKR_OK);
                lab.expect(
                    "trusted",
                    key,
                    &t,
                    &format!("C_UnwrapKey known key with {what}"),
                    "C_UnwrapKey",
                    rv,
                    &[CKR_ATTRIBUTE_READ_ONLY, CKR_TEMPLATE_INCONSISTENT],
                );
            }
            lab.mark();
            match t.unwrap(&kwp(), imported_aes, &blob, base()) {
                Ok(h) => {
                    let flags = [
                        CKA_LOCAL,
                        CKA_ALWAYS_SENSITIVE,
                        CKA_NEVER_EXTRACTABLE,
                        CKA_EXTRACTABLE,
                        CKA_TRUSTED,
                    ]
                    .map(|a| t.flag(h, a));
                    let why = (flags != [Some(false), Some(false), Some(false), Some(false), Some(false)])
                        .then(|| format!("unwrapped key LOCAL/ALWAYS_SENSITIVE/NEVER_EXTRACTABLE/EXTRACTABLE/TRUSTED must be all FALSE, got {flags:?}"));
                    lab.verdict(
                        "trusted",
                        key,
                        &t,
                        "C_UnwrapKey known key (plain template) flags",
                        "CKR_OK".into(),
                        why,
                    );
                }
                Err(rv) => lab.verdict(
                    "trusted",
                    key,
                    &t,
                    "C_UnwrapKey known key (plain template)",
                    rv_name(rv),
                    Some("plain unwrap should work".into()),
                ),
            }
        }

        // A key that may only be wrapped under trusted keys.
        let wwt = t
            .generate(
                CKM_AES_KEY_GEN,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_AES),
                    u(CKA_VALUE_LEN, 32),
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, true),
                    b(CKA_EXTRACTABLE, true),
                    b(CKA_WRAP_WITH_TRUSTED, true),
                ],
            )
            .expect("generate a WRAP_WITH_TRUSTED key");
        let kk = "WRAP_WITH_TRUSTED AES";
        lab.mark();
        let rv = t.wrap(&Mech::Oaep, trusted, wwt).err().unwrap_or(CKR_OK);
        lab.expect(
            "trusted",
            kk,
            &t,
            "control: RSA_OAEP under the SO's trusted key",
            "C_WrapKey",
            rv,
            &[CKR_OK],
        );
        for (what, mech, wk) in [
            ("KWP under imported AES", kwp(), imported_aes),
            ("RSA_OAEP under imported RSA", Mech::Oaep, imported_rsa),
            ("KWP under the target AES", kwp(), target_aes),
        ] {
            for null in [true, false] {
                lab.mark();
                let mut buf = vec![0u8; 4096];
                let (rv, _) = t.wrap_raw(&mech, wk, wwt, if null { None } else { Some(&mut buf) });
                lab.expect(
                    "trusted",
                    kk,
                    &t,
                    &format!("{what}{}", if null { " (size query)" } else { "" }),
                    "C_WrapKey",
                    rv,
                    &[CKR_KEY_NOT_WRAPPABLE],
                );
            }
        }
        let flag = (CKA_WRAP_WITH_TRUSTED, false);
        set_and_copy(&mut lab, kk, &t, wwt, flag, "{} WRAP_WITH_TRUSTED=FALSE");
    }
    lab.finish();
}

// ---------------------------------------------------------------------------
// 6. public and SO sessions
// ---------------------------------------------------------------------------

#[test]
fn logged_out_and_so_sessions_see_nothing() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        let imported = import_wrapping_key(&t);
        let hidden: Vec<(Kind, H)> = KINDS.iter().map(|k| (*k, tg.get(*k))).collect();
        t.logout();
        let public_ro = t.m.open(t.slot, false);
        for (who, s) in [("public", t.s), ("public RO", public_ro), ("SO", t.s)] {
            if who == "SO" {
                check(
                    ck!(t.m, C_CloseSession(public_ro)),
                    CKR_OK,
                    "C_CloseSession",
                );
                check(t.m.login(t.s, CKU_SO, SO_PIN), CKR_OK, "C_Login SO");
            }
            let path = if who == "SO" {
                "SO session"
            } else {
                "public session"
            };
            let found = t.on(s).find(vec![]).expect("C_FindObjects");
            let visible_secret: Vec<H> = found
                .iter()
                .copied()
                .filter(|h| {
                    let c = t
                        .on(s)
                        .get(*h, CKA_CLASS)
                        .ok()
                        .map(|v| CK_ULONG::from_ne_bytes(v.try_into().unwrap_or_default()));
                    hidden.iter().any(|(_, x)| x == h)
                        || *h == imported
                        || matches!(c, Some(CKO_SECRET_KEY | CKO_PRIVATE_KEY))
                })
                .collect();
            let why = (!visible_secret.is_empty())
                .then(|| format!("secret/private objects visible: {visible_secret:?}"));
            lab.verdict(
                path,
                "all",
                &t,
                &format!("{who}: C_FindObjects (all)"),
                format!("{} objects", found.len()),
                why,
            );
            for (what, class) in [
                ("secret keys", CKO_SECRET_KEY),
                ("private keys", CKO_PRIVATE_KEY),
            ] {
                let n = t
                    .on(s)
                    .find(vec![u(CKA_CLASS, class)])
                    .map(|v| v.len())
                    .unwrap_or(usize::MAX);
                lab.verdict(
                    path,
                    "all",
                    &t,
                    &format!("{who}: find {what}"),
                    format!("{n} found"),
                    (n != 0).then(|| "must find none".into()),
                );
            }
            for (k, h) in &hidden {
                let (h, ts) = (*h, t.on(s));
                let (ty, name) = k.secret_attrs()[0];
                let no_object: &[CK_RV] = &[CKR_OBJECT_HANDLE_INVALID];
                let no_key: &[CK_RV] = &[CKR_KEY_HANDLE_INVALID];
                let derive = Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![0; 32]);
                let derived = vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                    u(CKA_VALUE_LEN, 32),
                    b(CKA_TOKEN, false),
                ];
                let attempts: [Attempt<'_>; 9] = [
                    (
                        "C_GetAttributeValue CKA_CLASS".into(),
                        "C_GetAttributeValue",
                        no_object,
                        &|| ts.get_raw(h, CKA_CLASS, Some(8)).0,
                    ),
                    (
                        format!("C_GetAttributeValue {name}"),
                        "C_GetAttributeValue",
                        no_object,
                        &|| ts.get_raw(h, ty, Some(4096)).0,
                    ),
                    (
                        "C_GetObjectSize".into(),
                        "C_GetObjectSize",
                        no_object,
                        &|| {
                            let mut size: CK_ULONG = 0;
                            ck!(t.m, C_GetObjectSize(s, h, &mut size))
                        },
                    ),
                    (
                        "C_CopyObject".into(),
                        "C_CopyObject",
                        &[CKR_OBJECT_HANDLE_INVALID, CKR_SESSION_READ_ONLY],
                        &|| rv_of(&ts.copy(h, vec![b(CKA_TOKEN, false)])),
                    ),
                    (
                        "C_WrapKey (imported wrapping key)".into(),
                        "C_WrapKey",
                        &[CKR_WRAPPING_KEY_HANDLE_INVALID, CKR_KEY_HANDLE_INVALID],
                        &|| ts.wrap_raw(&kwp(), imported, h, None).0,
                    ),
                    (
                        "C_WrapKey (visible RSA public key)".into(),
                        "C_WrapKey",
                        no_key,
                        &|| ts.wrap_raw(&Mech::Oaep, tg.rsa_pub, h, None).0,
                    ),
                    ("C_DeriveKey".into(), "C_DeriveKey", no_key, &|| {
                        rv_of(&ts.derive(&derive, h, derived.clone()))
                    }),
                    ("C_EncryptInit".into(), "C_EncryptInit", no_key, &|| {
                        let cbc_pad = Mech::Bytes(CKM_AES_CBC_PAD, vec![0; 16]);
                        ts.crypt_init(Dir::Enc, &cbc_pad, h)
                    }),
                    ("C_DigestKey".into(), "C_DigestKey", no_key, &|| {
                        let rv =
                            with_mech(&Mech::Plain(CKM_SHA256), |mm| ck!(t.m, C_DigestInit(s, mm)));
                        check(rv, CKR_OK, "C_DigestInit");
                        let rv = ck!(t.m, C_DigestKey(s, h));
                        let mut out = [0u8; 64];
                        let mut n = out.len() as CK_ULONG;
                        let _ = ck!(t.m, C_DigestFinal(s, out.as_mut_ptr(), &mut n));
                        rv
                    }),
                ];
                let attempts = attempts.map(|(a, f, w, c)| (format!("{who}: {a}"), f, w, c));
                lab.attempts(path, k.name(), &t, &attempts);
            }
        }
        t.logout();
        t.login_user();
        // Back as the user, the keys are visible again (handles of private
        // objects may change across a logout, so they are found anew).
        for (what, class) in [
            ("secret keys", CKO_SECRET_KEY),
            ("private keys", CKO_PRIVATE_KEY),
        ] {
            let n = t
                .find(vec![u(CKA_CLASS, class), b(CKA_TOKEN, true)])
                .map_or(0, |v| v.len());
            lab.verdict(
                "public session",
                "all",
                &t,
                &format!("user again: find token {what}"),
                format!("{n} found"),
                (n < 2).then(|| "the user must see the 2 token keys again".into()),
            );
        }
    }
    lab.finish();
}

// ---------------------------------------------------------------------------
// 7. object size and log contents
// ---------------------------------------------------------------------------

#[test]
fn object_size_and_log_reveal_nothing() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let make = |kt, len| {
            let mut l = vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, kt),
                u(CKA_VALUE_LEN, len),
                b(CKA_ENCRYPT, true),
            ];
            l.extend(protected());
            let mech = if kt == CKK_AES {
                CKM_AES_KEY_GEN
            } else {
                CKM_GENERIC_SECRET_KEY_GEN
            };
            t.generate(mech, l).expect("generate")
        };
        let size = |h| {
            let mut n: CK_ULONG = 0;
            check(
                ck!(t.m, C_GetObjectSize(t.s, h, &mut n)),
                CKR_OK,
                "C_GetObjectSize",
            );
            n
        };
        // Asserted: sensitive keys of different lengths (same attributes
        // otherwise) have equal object sizes, so the size reveals nothing of
        // the key length.
        for (name, kt, short, long) in [
            ("AES", CKK_AES, 16, 32),
            ("GENERIC", CKK_GENERIC_SECRET, 16, 64),
        ] {
            let (a, c) = (make(kt, short), make(kt, long));
            let (sa, sc) = (size(a), size(c));
            let why = (sa != sc).then(|| format!("C_GetObjectSize differs ({sa} vs {sc}) between {short}- and {long}-byte sensitive keys"));
            lab.verdict(
                "object size",
                &format!("{name}-{} vs {name}-{}", short * 8, long * 8),
                &t,
                "C_GetObjectSize equal",
                format!("{sa} / {sc}"),
                why,
            );
        }
        // Refused operations with known key values in the template must not
        // echo them in the log (checked for every test in `finish`).
        let aes = |value: &[u8], extra: Option<(CK_ATTRIBUTE_TYPE, V)>| {
            let mut l = vec![u(CKA_CLASS, CKO_SECRET_KEY), u(CKA_KEY_TYPE, CKK_AES)];
            l.extend([by(CKA_VALUE, value), b(CKA_TOKEN, false)]);
            l.extend(extra);
            rv_of(&t.create(l))
        };
        let create = "C_CreateObject";
        lab.attempts(
            "log",
            "known",
            &t,
            &[
                (
                    "C_CreateObject AES with a 31-byte value".into(),
                    create,
                    &[CKR_ATTRIBUTE_VALUE_INVALID],
                    &|| aes(&KNOWN_KEY[..31], None),
                ),
                (
                    "C_CreateObject AES TRUSTED=TRUE".into(),
                    create,
                    &[CKR_ATTRIBUTE_READ_ONLY],
                    &|| aes(KNOWN_KEY, Some(b(CKA_TRUSTED, true))),
                ),
                (
                    "C_CreateObject AES wrong CKA_CHECK_VALUE".into(),
                    create,
                    &[CKR_ATTRIBUTE_VALUE_INVALID],
                    &|| aes(KNOWN_WRAP, Some(by(CKA_CHECK_VALUE, &[1, 2, 3]))),
                ),
            ],
        );
        let wk = import_wrapping_key(&t);
        lab.mark();
        let rv = t
            .unwrap(
                &kwp(),
                wk,
                KNOWN_KEY,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_AES),
                    b(CKA_TOKEN, false),
                ],
            )
            .err()
            .unwrap_or(CKR_OK);
        lab.expect(
            "log",
            "known",
            &t,
            "C_UnwrapKey of a bogus blob (the known key bytes)",
            "C_UnwrapKey",
            rv,
            &[CKR_WRAPPED_KEY_INVALID],
        );
    }
    lab.finish();
}

// ---------------------------------------------------------------------------
// 8. C_DigestKey
// ---------------------------------------------------------------------------

#[test]
fn digest_key_refused() {
    let mut lab = Lab::new();
    for t in lab.toks.clone() {
        let tg = make_targets(&t);
        for k in KINDS {
            let rv = with_mech(&Mech::Plain(CKM_SHA256), |mm| {
                ck!(t.m, C_DigestInit(t.s, mm))
            });
            check(rv, CKR_OK, "C_DigestInit");
            lab.mark();
            let rv = ck!(t.m, C_DigestKey(t.s, tg.get(k)));
            lab.expect(
                "digest key",
                k.name(),
                &t,
                "C_DigestKey",
                "C_DigestKey",
                rv,
                &[CKR_KEY_INDIGESTIBLE],
            );
            // The operation ended with the error (or still runs: finish it).
            let mut out = [0u8; 64];
            let mut n = out.len() as CK_ULONG;
            let _ = ck!(t.m, C_DigestFinal(t.s, out.as_mut_ptr(), &mut n));
        }
    }
    lab.finish();
}
