//! Key wrapping and derivation through the raw C ABI: round trips between two
//! tokens and known answers.
//!
//! * Wrap on token A, unwrap on token B (two `spec`-policy tokens in one data
//!   directory), under a wrapping key imported with the same value on both: an
//!   AES key, an RSA and an EC private key (PKCS#8) with `CKM_AES_KEY_WRAP_KWP`,
//!   then used on B (AES: encrypt on A, decrypt on B; RSA/EC: sign on B, verify
//!   on A). AES keys also under `CKM_AES_KEY_WRAP`, `CKM_AES_CBC_PAD`,
//!   `CKM_AES_GCM` and `CKM_RSA_PKCS_OAEP` (B's public key on A). Wrapped bytes
//!   are checked against RFC 3394 / RFC 5649 vectors and an independent AES-CBC-PAD.
//! * `C_WrapKey` size queries: NULL buffer gives the length, a short buffer
//!   `CKR_BUFFER_TOO_SMALL` with the length.
//! * `CKM_HKDF_DERIVE` / `CKM_HKDF_DATA` against RFC 5869 test cases 1-3
//!   (SHA-256): extract+expand, extract only, expand only, salt as data and as
//!   a key; HKDF base key types.
//! * `CKM_AES_ECB_ENCRYPT_DATA` / `CKM_AES_CBC_ENCRYPT_DATA` against an independent
//!   AES (the `aes` crate), `CKM_CONCATENATE_BASE_AND_KEY` == base || key.
//! * Sensitivity inheritance of derived keys, and `CKA_WRAP_TEMPLATE` /
//!   `CKA_UNWRAP_TEMPLATE`.

use std::ffi::c_void;
use std::ptr;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cryptoki_sys::*;
use ferrohsm_tests::mech::{Mech, Salt, kwp, with_mech};
use ferrohsm_tests::raw::{RawModule, Tpl, V, rv_name};
use ferrohsm_tests::{TestEnv, USER_PIN, ck, from_hex as hex, to_hex};

type H = CK_OBJECT_HANDLE;
/// A template as a list of (type, value).
type Template = Vec<(CK_ATTRIBUTE_TYPE, V)>;

/// DER of the P-256 OID (`CKA_EC_PARAMS`).
const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// The wrapping key imported with the same value on both tokens.
const SHARED_KEK: [u8; 32] = [0x5a; 32];

/// The last lines of the module log (`FERROHSM_LOG` is `debug:<file>`, set by
/// `TestEnv`), for failure messages.
fn log_tail() -> String {
    let path = std::env::var("FERROHSM_LOG").unwrap_or_default();
    let path = path.split_once(':').map_or("", |(_, p)| p);
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(6)..].join("\n")
}

#[track_caller]
fn ok<T>(r: Result<T, CK_RV>, what: &str) -> T {
    r.unwrap_or_else(|rv| {
        panic!(
            "{what}: expected CKR_OK, got {}\nmodule log (tail):\n{}",
            rv_name(rv),
            log_tail()
        )
    })
}

/// Asserts one expected return value (with the module log's tail on failure).
#[track_caller]
fn check(rv: CK_RV, want: CK_RV, what: &str) {
    check_any(rv, &[want], what);
}

/// Asserts one of several return values the specification allows.
#[track_caller]
fn check_any(rv: CK_RV, want: &[CK_RV], what: &str) {
    assert!(
        want.contains(&rv),
        "{what}: expected {}, got {}\nmodule log (tail):\n{}",
        want.iter()
            .map(|r| rv_name(*r))
            .collect::<Vec<_>>()
            .join(" or "),
        rv_name(rv),
        log_tail()
    );
}

// ---------------------------------------------------------------------------
// templates and mechanisms (minimal; exfiltration.rs and symmetric.rs have
// similar private helpers)
// ---------------------------------------------------------------------------

fn u(t: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::U(v))
}
fn b(t: CK_ATTRIBUTE_TYPE, v: bool) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::B(v))
}
fn by(t: CK_ATTRIBUTE_TYPE, v: &[u8]) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::Bytes(v.to_vec()))
}

/// Full mechanism names for the messages of this file.
trait MechName {
    fn name(&self) -> String;
}

impl MechName for Mech {
    fn name(&self) -> String {
        match self {
            Mech::Plain(CKM_AES_KEY_WRAP_KWP) => "CKM_AES_KEY_WRAP_KWP".into(),
            Mech::Plain(CKM_AES_KEY_WRAP) => "CKM_AES_KEY_WRAP".into(),
            Mech::Plain(t) => format!("mechanism {t:#x}"),
            Mech::Bytes(CKM_AES_CBC_PAD, _) => "CKM_AES_CBC_PAD".into(),
            Mech::Bytes(t, _) => format!("mechanism {t:#x}"),
            Mech::Gcm(_) => "CKM_AES_GCM".into(),
            Mech::Oaep => "CKM_RSA_PKCS_OAEP".into(),
            Mech::Hkdf { data: true, .. } => "CKM_HKDF_DATA".into(),
            Mech::Hkdf { .. } => "CKM_HKDF_DERIVE".into(),
            Mech::StrData(..) => "CKM_AES_ECB_ENCRYPT_DATA".into(),
            Mech::CbcData(..) => "CKM_AES_CBC_ENCRYPT_DATA".into(),
            Mech::Concat(_) => "CKM_CONCATENATE_BASE_AND_KEY".into(),
            Mech::Ecdh(_) => "CKM_ECDH1_DERIVE".into(),
            m => format!("mechanism {:#x}", m.ty()),
        }
    }
}

fn hkdf(extract: bool, expand: bool, salt: Salt, info: &[u8]) -> Mech {
    Mech::Hkdf {
        data: false,
        extract,
        expand,
        salt,
        info: info.to_vec(),
    }
}

// ---------------------------------------------------------------------------
// tokens and calls
// ---------------------------------------------------------------------------

/// A token with a logged-in R/W user session.
#[derive(Clone, Copy)]
struct Tok {
    m: RawModule,
    s: CK_SESSION_HANDLE,
}

/// Initialises the module and makes `n` tokens (policy from `policies`, set
/// through `FERROHSM_POLICY` before each `C_Initialize`), each with a user session.
fn tokens(policies: &[&str]) -> (TestEnv, Vec<Tok>) {
    let env = TestEnv::new();
    let m = RawModule::load();
    let mut toks = Vec::new();
    let mut slots = Vec::new();
    for (i, p) in policies.iter().enumerate() {
        // SAFETY: this test's only thread runs here; the module reads the
        // environment only inside C_Initialize and starts no threads, and
        // nextest runs one test per process.
        unsafe { std::env::set_var("FERROHSM_POLICY", p) };
        check(
            ck!(m, C_Initialize(ptr::null_mut())),
            CKR_OK,
            "C_Initialize",
        );
        slots.push(m.make_token(&format!("wrap-derive-{i}")));
        if i + 1 < policies.len() {
            check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
        }
    }
    for slot in slots {
        let s = m.open(slot, true);
        check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
        toks.push(Tok { m, s });
    }
    (env, toks)
}

impl Tok {
    fn create(&self, list: Vec<(CK_ATTRIBUTE_TYPE, V)>) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        match ck!(self.m, C_CreateObject(self.s, t.ptr(), t.len(), &mut h)) {
            CKR_OK => Ok(h),
            rv => Err(rv),
        }
    }
    fn generate(
        &self,
        mech: CK_MECHANISM_TYPE,
        list: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    ) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        match with_mech(&Mech::Plain(mech), |mm| {
            ck!(self.m, C_GenerateKey(self.s, mm, t.ptr(), t.len(), &mut h))
        }) {
            CKR_OK => Ok(h),
            rv => Err(rv),
        }
    }
    fn generate_pair(
        &self,
        mech: CK_MECHANISM_TYPE,
        public: Vec<(CK_ATTRIBUTE_TYPE, V)>,
        private: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    ) -> Result<(H, H), CK_RV> {
        let (mut pt, mut kt) = (Tpl::new(public), Tpl::new(private));
        let (mut ph, mut kh) = (CK_INVALID_HANDLE, CK_INVALID_HANDLE);
        match with_mech(&Mech::Plain(mech), |mm| {
            ck!(
                self.m,
                C_GenerateKeyPair(
                    self.s,
                    mm,
                    pt.ptr(),
                    pt.len(),
                    kt.ptr(),
                    kt.len(),
                    &mut ph,
                    &mut kh
                )
            )
        }) {
            CKR_OK => Ok((ph, kh)),
            rv => Err(rv),
        }
    }
    fn get(&self, o: H, ty: CK_ATTRIBUTE_TYPE) -> Result<Vec<u8>, CK_RV> {
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: ptr::null_mut(),
            ulValueLen: 0,
        };
        let rv = ck!(self.m, C_GetAttributeValue(self.s, o, &mut a, 1));
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut buf = vec![0u8; a.ulValueLen as usize];
        a.pValue = buf.as_mut_ptr() as *mut c_void;
        let rv = ck!(self.m, C_GetAttributeValue(self.s, o, &mut a, 1));
        if rv != CKR_OK {
            return Err(rv);
        }
        buf.truncate(a.ulValueLen as usize);
        Ok(buf)
    }
    fn value(&self, o: H) -> Vec<u8> {
        ok(self.get(o, CKA_VALUE), "C_GetAttributeValue CKA_VALUE")
    }
    fn flag(&self, o: H, ty: CK_ATTRIBUTE_TYPE) -> bool {
        let v = ok(self.get(o, ty), &format!("C_GetAttributeValue {ty:#x}"));
        v.first().is_some_and(|x| *x != 0)
    }
    /// `C_WrapKey` with `buf` (`None`: NULL, a size query): (rv, *pulWrappedKeyLen).
    fn wrap_raw(&self, mech: &Mech, wrapping: H, key: H, buf: Option<&mut [u8]>) -> (CK_RV, usize) {
        let (p, mut n) = match buf {
            Some(b) => (b.as_mut_ptr(), b.len() as CK_ULONG),
            None => (ptr::null_mut(), 0),
        };
        let rv = with_mech(mech, |mm| {
            ck!(self.m, C_WrapKey(self.s, mm, wrapping, key, p, &mut n))
        });
        (rv, n as usize)
    }
    /// Size query, then the wrap into a buffer of exactly that size.
    fn wrap(&self, mech: &Mech, wrapping: H, key: H) -> Result<Vec<u8>, CK_RV> {
        let (rv, n) = self.wrap_raw(mech, wrapping, key, None);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; n];
        let (rv, m) = self.wrap_raw(mech, wrapping, key, Some(&mut out));
        if rv != CKR_OK {
            return Err(rv);
        }
        assert!(
            m <= n,
            "C_WrapKey wrote {m} bytes after a size query of {n}"
        );
        out.truncate(m);
        Ok(out)
    }
    fn unwrap(
        &self,
        mech: &Mech,
        unwrapping: H,
        blob: &[u8],
        list: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    ) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut blob = blob.to_vec();
        let mut h = CK_INVALID_HANDLE;
        match with_mech(mech, |mm| {
            ck!(
                self.m,
                C_UnwrapKey(
                    self.s,
                    mm,
                    unwrapping,
                    blob.as_mut_ptr(),
                    blob.len() as CK_ULONG,
                    t.ptr(),
                    t.len(),
                    &mut h
                )
            )
        }) {
            CKR_OK => Ok(h),
            rv => Err(rv),
        }
    }
    fn derive(&self, mech: &Mech, base: H, list: Vec<(CK_ATTRIBUTE_TYPE, V)>) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        match with_mech(mech, |mm| {
            ck!(
                self.m,
                C_DeriveKey(self.s, mm, base, t.ptr(), t.len(), &mut h)
            )
        }) {
            CKR_OK => Ok(h),
            rv => Err(rv),
        }
    }
    /// Single-part `C_Encrypt` (or `C_Decrypt`) with a size query first.
    fn crypt(&self, encrypt: bool, mech: &Mech, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        let rv = with_mech(mech, |mm| {
            if encrypt {
                ck!(self.m, C_EncryptInit(self.s, mm, key))
            } else {
                ck!(self.m, C_DecryptInit(self.s, mm, key))
            }
        });
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut d = data.to_vec();
        let call = |out: *mut u8, n: &mut CK_ULONG, d: &mut Vec<u8>| {
            if encrypt {
                ck!(
                    self.m,
                    C_Encrypt(self.s, d.as_mut_ptr(), d.len() as CK_ULONG, out, n)
                )
            } else {
                ck!(
                    self.m,
                    C_Decrypt(self.s, d.as_mut_ptr(), d.len() as CK_ULONG, out, n)
                )
            }
        };
        let mut n: CK_ULONG = 0;
        let rv = call(ptr::null_mut(), &mut n, &mut d);
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut out = vec![0u8; n as usize];
        let rv = call(out.as_mut_ptr(), &mut n, &mut d);
        if rv != CKR_OK {
            return Err(rv);
        }
        out.truncate(n as usize);
        Ok(out)
    }
    fn sign(&self, mech: CK_MECHANISM_TYPE, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        let rv = with_mech(&Mech::Plain(mech), |mm| {
            ck!(self.m, C_SignInit(self.s, mm, key))
        });
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut d = data.to_vec();
        let mut n: CK_ULONG = 0;
        let rv = ck!(
            self.m,
            C_Sign(
                self.s,
                d.as_mut_ptr(),
                d.len() as CK_ULONG,
                ptr::null_mut(),
                &mut n
            )
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        let mut sig = vec![0u8; n as usize];
        let rv = ck!(
            self.m,
            C_Sign(
                self.s,
                d.as_mut_ptr(),
                d.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut n
            )
        );
        if rv != CKR_OK {
            return Err(rv);
        }
        sig.truncate(n as usize);
        Ok(sig)
    }
    fn verify(&self, mech: CK_MECHANISM_TYPE, key: H, data: &[u8], sig: &[u8]) -> CK_RV {
        let rv = with_mech(&Mech::Plain(mech), |mm| {
            ck!(self.m, C_VerifyInit(self.s, mm, key))
        });
        if rv != CKR_OK {
            return rv;
        }
        let (mut d, mut s) = (data.to_vec(), sig.to_vec());
        ck!(
            self.m,
            C_Verify(
                self.s,
                d.as_mut_ptr(),
                d.len() as CK_ULONG,
                s.as_mut_ptr(),
                s.len() as CK_ULONG
            )
        )
    }

    /// Imports a secret key (session object) usable for everything.
    fn secret(&self, kt: CK_KEY_TYPE, value: &[u8], extra: Vec<(CK_ATTRIBUTE_TYPE, V)>) -> H {
        let mut l = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, kt),
            by(CKA_VALUE, value),
            b(CKA_TOKEN, false),
        ];
        l.extend(extra);
        ok(
            self.create(l),
            &format!("C_CreateObject secret key {kt:#x}, {} bytes", value.len()),
        )
    }
    /// The shared KEK: same value on every token, wraps and unwraps.
    fn kek(&self, value: &[u8]) -> H {
        self.secret(
            CKK_AES,
            value,
            vec![
                b(CKA_WRAP, true),
                b(CKA_UNWRAP, true),
                b(CKA_ENCRYPT, true),
                b(CKA_DECRYPT, true),
            ],
        )
    }
    /// An extractable, non-sensitive key of type `kt` with `value` (spec token).
    fn extractable(&self, kt: CK_KEY_TYPE, value: &[u8]) -> H {
        self.secret(
            kt,
            value,
            vec![
                b(CKA_EXTRACTABLE, true),
                b(CKA_SENSITIVE, false),
                b(CKA_DERIVE, true),
                b(CKA_ENCRYPT, true),
                b(CKA_DECRYPT, true),
            ],
        )
    }
}

fn secret_tpl(kt: CK_KEY_TYPE, len: Option<CK_ULONG>) -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    let mut l = vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, kt),
        b(CKA_TOKEN, false),
        b(CKA_SENSITIVE, false),
        b(CKA_EXTRACTABLE, true),
    ];
    if let Some(n) = len {
        l.push(u(CKA_VALUE_LEN, n));
    }
    l
}

// ---------------------------------------------------------------------------
// independent AES
// ---------------------------------------------------------------------------

fn aes_ecb(key: &[u8], data: &[u8]) -> Vec<u8> {
    assert_eq!(data.len() % 16, 0);
    let mut out = Vec::new();
    for chunk in data.chunks(16) {
        let mut blk = aes::Block::default();
        blk.copy_from_slice(chunk);
        match key.len() {
            16 => aes::Aes128::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut blk),
            24 => aes::Aes192::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut blk),
            _ => aes::Aes256::new_from_slice(key)
                .unwrap()
                .encrypt_block(&mut blk),
        }
        out.extend_from_slice(&blk);
    }
    out
}

/// AES-CBC without padding (`data` a multiple of 16 bytes).
fn aes_cbc(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let mut prev = *iv;
    let mut out = Vec::new();
    for chunk in data.chunks(16) {
        let x: Vec<u8> = chunk.iter().zip(prev.iter()).map(|(a, b)| a ^ b).collect();
        let c = aes_ecb(key, &x);
        prev.copy_from_slice(&c);
        out.extend_from_slice(&c);
    }
    out
}

/// AES-CBC with PKCS#7 padding.
fn aes_cbc_pad(key: &[u8], iv: &[u8; 16], data: &[u8]) -> Vec<u8> {
    let pad = 16 - data.len() % 16;
    let mut d = data.to_vec();
    d.extend(std::iter::repeat_n(pad as u8, pad));
    aes_cbc(key, iv, &d)
}

// ---------------------------------------------------------------------------
// 1. two tokens: wrap on A, unwrap on B, use on B
// ---------------------------------------------------------------------------

#[test]
fn kwp_round_trip_between_tokens() {
    let (_env, toks) = tokens(&["spec", "spec"]);
    let (a, bt) = (toks[0], toks[1]);
    let (kek_a, kek_b) = (a.kek(&SHARED_KEK), bt.kek(&SHARED_KEK));
    let mech = kwp();

    // An AES key generated (extractable) on A.
    let aes_a = ok(
        a.generate(
            CKM_AES_KEY_GEN,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_SENSITIVE, true),
                b(CKA_ENCRYPT, true),
                b(CKA_DECRYPT, true),
            ],
        ),
        "generate AES on A",
    );
    let blob = ok(a.wrap(&mech, kek_a, aes_a), "KWP wrap AES on A");
    assert_eq!(blob.len(), 40, "KWP of a 32-byte key is 40 bytes");
    let aes_b = ok(
        bt.unwrap(
            &mech,
            kek_b,
            &blob,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                b(CKA_TOKEN, false),
                b(CKA_DECRYPT, true),
                b(CKA_ENCRYPT, true),
            ],
        ),
        "KWP unwrap AES on B",
    );
    assert_eq!(
        a.get(aes_a, CKA_CHECK_VALUE),
        bt.get(aes_b, CKA_CHECK_VALUE),
        "same key: same CKA_CHECK_VALUE"
    );
    let cbc = Mech::Bytes(CKM_AES_CBC_PAD, vec![3; 16]);
    let msg = b"wrapped on A, unwrapped on B, decrypted on B";
    let ct = ok(a.crypt(true, &cbc, aes_a, msg), "encrypt on A");
    let pt = ok(bt.crypt(false, &cbc, aes_b, &ct), "decrypt on B");
    assert_eq!(pt, msg);
    // An unwrapped key is neither local nor always sensitive/never extractable,
    // and unextractable since the template did not ask.
    for (ty, name, want) in [
        (CKA_LOCAL, "CKA_LOCAL", false),
        (CKA_ALWAYS_SENSITIVE, "CKA_ALWAYS_SENSITIVE", false),
        (CKA_NEVER_EXTRACTABLE, "CKA_NEVER_EXTRACTABLE", false),
        (CKA_EXTRACTABLE, "CKA_EXTRACTABLE", false),
    ] {
        assert_eq!(bt.flag(aes_b, ty), want, "unwrapped AES key: {name}");
    }
    // Unextractable after unwrap: it cannot be wrapped again.
    let (rv, _) = bt.wrap_raw(&mech, kek_b, aes_b, None);
    check(
        rv,
        CKR_KEY_UNEXTRACTABLE,
        "re-wrap of an unwrapped (unextractable) key",
    );

    // RSA and EC private keys, extractable on A, as PKCS#8 under KWP.
    let data = b"signed on B with a key born on A";
    let (rsa_pub_a, rsa_a) = ok(
        a.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "RSA key pair on A",
    );
    let (ec_pub_a, ec_a) = ok(
        a.generate_pair(
            CKM_EC_KEY_PAIR_GEN,
            vec![
                by(CKA_EC_PARAMS, P256_OID),
                b(CKA_TOKEN, false),
                b(CKA_VERIFY, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_SIGN, true),
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "EC key pair on A",
    );
    for (name, kt, priv_a, pub_a, sig_mech) in [
        ("RSA", CKK_RSA, rsa_a, rsa_pub_a, CKM_SHA256_RSA_PKCS),
        ("EC", CKK_EC, ec_a, ec_pub_a, CKM_ECDSA_SHA256),
    ] {
        let blob = ok(
            a.wrap(&mech, kek_a, priv_a),
            &format!("KWP wrap {name} private key on A"),
        );
        let priv_b = ok(
            bt.unwrap(
                &mech,
                kek_b,
                &blob,
                vec![
                    u(CKA_CLASS, CKO_PRIVATE_KEY),
                    u(CKA_KEY_TYPE, kt),
                    b(CKA_TOKEN, false),
                    b(CKA_SIGN, true),
                ],
            ),
            &format!("KWP unwrap {name} private key on B"),
        );
        let sig = ok(
            bt.sign(sig_mech, priv_b, data),
            &format!("sign with the unwrapped {name} key on B"),
        );
        check(
            a.verify(sig_mech, pub_a, data, &sig),
            CKR_OK,
            &format!("verify on A the {name} signature made on B"),
        );
        check(
            a.verify(sig_mech, pub_a, b"another message", &sig),
            CKR_SIGNATURE_INVALID,
            &format!("{name} signature over other data"),
        );
        assert!(
            !bt.flag(priv_b, CKA_LOCAL),
            "unwrapped {name} key: CKA_LOCAL"
        );
        assert!(
            !bt.flag(priv_b, CKA_EXTRACTABLE),
            "unwrapped {name} key: CKA_EXTRACTABLE"
        );
        let attr = if kt == CKK_RSA {
            CKA_MODULUS
        } else {
            CKA_EC_PARAMS
        };
        assert_eq!(
            ok(
                bt.get(priv_b, attr),
                "public attribute of the unwrapped key"
            ),
            ok(a.get(priv_a, attr), "public attribute of the original"),
            "{name}: the unwrapped key carries the same public part"
        );
        // A wrong KEK on B: the blob does not unwrap.
        let other = bt.kek(&[0x77; 32]);
        let r = bt.unwrap(
            &mech,
            other,
            &blob,
            vec![
                u(CKA_CLASS, CKO_PRIVATE_KEY),
                u(CKA_KEY_TYPE, kt),
                b(CKA_TOKEN, false),
            ],
        );
        assert_eq!(
            r.err(),
            Some(CKR_WRAPPED_KEY_INVALID),
            "{name} blob under the wrong KEK"
        );
    }
    // Last (the module refuses it): the AES Key Wrap section ("CKM_AES_KEY_WRAP
    // can wrap a key of any length. A key whose length is not a multiple of the
    // AES Key Wrap semiblock size (8 bytes) will be zero padded to fit"; the
    // OASIS 3.1+ text adds: "A private key will be encoded as defined in section
    // 6.7; the encoded private key will be zero padded to fit if necessary" and
    // unwrapping "ignores trailing zero bytes").
    for (name, kt, priv_a, pub_a, sig_mech) in [
        ("RSA", CKK_RSA, rsa_a, rsa_pub_a, CKM_SHA256_RSA_PKCS),
        ("EC", CKK_EC, ec_a, ec_pub_a, CKM_ECDSA_SHA256),
    ] {
        let kw = Mech::Plain(CKM_AES_KEY_WRAP);
        let kw_blob = ok(
            a.wrap(&kw, kek_a, priv_a),
            &format!("KW wrap {name} private key on A"),
        );
        let kw_b = ok(
            bt.unwrap(
                &kw,
                kek_b,
                &kw_blob,
                vec![
                    u(CKA_CLASS, CKO_PRIVATE_KEY),
                    u(CKA_KEY_TYPE, kt),
                    b(CKA_TOKEN, false),
                    b(CKA_SIGN, true),
                ],
            ),
            &format!("KW unwrap {name} private key on B"),
        );
        let sig = ok(
            bt.sign(sig_mech, kw_b, data),
            &format!("sign with the KW-unwrapped {name} key on B"),
        );
        check(
            a.verify(sig_mech, pub_a, data, &sig),
            CKR_OK,
            &format!("verify on A the {name} signature (KW)"),
        );
    }
}

// ---------------------------------------------------------------------------
// 2. the other wrapping mechanisms, with known answers
// ---------------------------------------------------------------------------

#[test]
fn aes_wrap_mechanisms_and_known_answers() {
    let (_env, toks) = tokens(&["spec", "spec"]);
    let (a, bt) = (toks[0], toks[1]);
    let (kek_a, kek_b) = (a.kek(&SHARED_KEK), bt.kek(&SHARED_KEK));
    let value = hex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f");
    let key_a = a.extractable(CKK_AES, &value);
    let unwrap_tpl = || {
        vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            b(CKA_TOKEN, false),
            b(CKA_ENCRYPT, true),
            b(CKA_DECRYPT, true),
        ]
    };
    let cbc_iv = [0x3c; 16];
    let mechs = [
        kwp(),
        Mech::Plain(CKM_AES_KEY_WRAP),
        Mech::Bytes(CKM_AES_CBC_PAD, cbc_iv.to_vec()),
        Mech::Gcm(vec![0x1f; 12]),
    ];
    let probe = Mech::Bytes(CKM_AES_CBC_PAD, vec![9; 16]);
    let msg = b"the key moved between tokens";
    for mech in &mechs {
        let name = mech.name();
        let blob = ok(a.wrap(mech, kek_a, key_a), &format!("{name}: wrap on A"));
        // The wrapped bytes, computed another way.
        let want = match mech {
            Mech::Plain(CKM_AES_KEY_WRAP_KWP) => blob.clone(), // checked by the RFC 5649 vectors below
            Mech::Plain(_) => blob.clone(),                    // RFC 3394 vector below
            Mech::Bytes(..) => aes_cbc_pad(&SHARED_KEK, &cbc_iv, &value),
            Mech::Gcm(_) => ok(
                a.crypt(true, mech, kek_a, &value),
                "GCM C_Encrypt of the key value",
            ),
            _ => unreachable!(),
        };
        assert_eq!(to_hex(&blob), to_hex(&want), "{name}: wrapped bytes");
        let key_b = ok(
            bt.unwrap(mech, kek_b, &blob, unwrap_tpl()),
            &format!("{name}: unwrap on B"),
        );
        let ct = ok(a.crypt(true, &probe, key_a, msg), "encrypt on A");
        assert_eq!(
            ok(bt.crypt(false, &probe, key_b, &ct), "decrypt on B"),
            msg,
            "{name}: round trip"
        );
        // A damaged blob does not unwrap (KW/KWP integrity check, GCM tag, CBC padding or length).
        let mut bad = blob.clone();
        let last = bad.len() - 1;
        bad[last] ^= 0x01;
        let r = bt.unwrap(mech, kek_b, &bad, unwrap_tpl());
        match mech {
            // A flipped last byte may still leave valid padding or a valid AES length in CBC-PAD.
            Mech::Bytes(..) => {
                if let Err(rv) = r {
                    check_any(
                        rv,
                        &[CKR_WRAPPED_KEY_INVALID, CKR_WRAPPED_KEY_LEN_RANGE],
                        &format!("{name}: damaged blob"),
                    )
                }
            }
            _ => check(
                r.err().unwrap_or(CKR_OK),
                CKR_WRAPPED_KEY_INVALID,
                &format!("{name}: damaged blob"),
            ),
        }
    }

    // RFC 3394 4.6: 256 bits of key data under a 256-bit KEK.
    let kek = a.kek(&hex(
        "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ));
    let k = a.extractable(
        CKK_AES,
        &hex("00112233445566778899aabbccddeeff000102030405060708090a0b0c0d0e0f"),
    );
    let blob = ok(
        a.wrap(&Mech::Plain(CKM_AES_KEY_WRAP), kek, k),
        "RFC 3394 4.6 wrap",
    );
    assert_eq!(
        to_hex(&blob),
        "28c9f404c4b810f4cbccb35cfb87f8263f5786e2d80ed326cbc7f0e71a99f43bfb988b9b7a02dd21",
        "RFC 3394 4.6"
    );
    // RFC 5649 section 6: 20- and 7-octet keys (generic secrets) under a 192-bit KEK.
    let kek = a.kek(&hex("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8"));
    for (pt, ct) in [
        (
            "c37b7e6492584340bed12207808941155068f738",
            "138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a",
        ),
        ("466f7250617369", "afbeb0f07dfbf5419200f2ccb50bb24f"),
    ] {
        let k = a.extractable(CKK_GENERIC_SECRET, &hex(pt));
        let blob = ok(a.wrap(&kwp(), kek, k), "RFC 5649 wrap");
        assert_eq!(
            to_hex(&blob),
            ct,
            "RFC 5649 section 6, {} octets",
            pt.len() / 2
        );
        let back = ok(
            a.unwrap(&kwp(), kek, &blob, secret_tpl(CKK_GENERIC_SECRET, None)),
            "RFC 5649 unwrap",
        );
        assert_eq!(
            to_hex(&a.value(back)),
            pt,
            "RFC 5649 unwrap gives the key back"
        );
    }
    // RSA-OAEP: A wraps under B's public key (imported on A), B unwraps with its private key.
    let (pub_b, priv_b) = ok(
        bt.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_UNWRAP, true),
                b(CKA_SENSITIVE, true),
            ],
        ),
        "RSA key pair on B",
    );
    let modulus = ok(bt.get(pub_b, CKA_MODULUS), "B's modulus");
    let pub_on_a = ok(
        a.create(vec![
            u(CKA_CLASS, CKO_PUBLIC_KEY),
            u(CKA_KEY_TYPE, CKK_RSA),
            by(CKA_MODULUS, &modulus),
            by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
            b(CKA_TOKEN, false),
            b(CKA_WRAP, true),
        ]),
        "import B's public key on A",
    );
    let blob = ok(a.wrap(&Mech::Oaep, pub_on_a, key_a), "RSA-OAEP wrap on A");
    assert_eq!(blob.len(), 256, "RSA-2048 OAEP output length");
    let key_b = ok(
        bt.unwrap(&Mech::Oaep, priv_b, &blob, unwrap_tpl()),
        "RSA-OAEP unwrap on B",
    );
    let ct = ok(a.crypt(true, &probe, key_a, msg), "encrypt on A");
    assert_eq!(
        ok(bt.crypt(false, &probe, key_b, &ct), "decrypt on B"),
        msg,
        "RSA-OAEP round trip"
    );
    // OAEP wraps secret keys only.
    let (_, rsa_a) = ok(
        a.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
            ],
            vec![
                b(CKA_TOKEN, false),
                b(CKA_EXTRACTABLE, true),
                b(CKA_SIGN, true),
            ],
        ),
        "RSA key pair on A",
    );
    let (rv, _) = a.wrap_raw(&Mech::Oaep, pub_on_a, rsa_a, None);
    check(rv, CKR_KEY_NOT_WRAPPABLE, "RSA-OAEP wrap of a private key");
    // Last (the module refuses it): KW zero-pads a secret key to a multiple of
    // 8 bytes ("A key whose length is not a multiple of the AES Key Wrap
    // semiblock size (8 bytes) will be zero padded to fit"), and unwrapping
    // truncates to CKA_VALUE_LEN (the AES Key Wrap section, "CKM_AES_KEY_WRAP").
    let odd = a.extractable(CKK_GENERIC_SECRET, &[0x42; 20]);
    let blob = ok(
        a.wrap(&Mech::Plain(CKM_AES_KEY_WRAP), kek, odd),
        "KW of a 20-byte key",
    );
    assert_eq!(blob.len(), 32, "KW of 20 bytes: zero-padded to 24, plus 8");
    let back = ok(
        a.unwrap(
            &Mech::Plain(CKM_AES_KEY_WRAP),
            kek,
            &blob,
            secret_tpl(CKK_GENERIC_SECRET, Some(20)),
        ),
        "KW unwrap with CKA_VALUE_LEN 20",
    );
    assert_eq!(
        a.value(back),
        vec![0x42; 20],
        "KW unwrap truncates to CKA_VALUE_LEN"
    );
}

// ---------------------------------------------------------------------------
// 3. size queries
// ---------------------------------------------------------------------------

#[test]
fn wrap_size_queries() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    let kek = t.kek(&SHARED_KEK);
    let key = t.extractable(CKK_AES, &[0x24; 32]);
    let (rsa_pub, _) = ok(
        t.generate_pair(
            CKM_RSA_PKCS_KEY_PAIR_GEN,
            vec![
                u(CKA_MODULUS_BITS, 2048),
                by(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
            ],
            vec![b(CKA_TOKEN, false), b(CKA_UNWRAP, true)],
        ),
        "RSA key pair",
    );
    for (mech, wk, want_len) in [
        (kwp(), kek, 40),
        (Mech::Plain(CKM_AES_KEY_WRAP), kek, 40),
        (Mech::Bytes(CKM_AES_CBC_PAD, vec![1; 16]), kek, 48),
        (Mech::Gcm(vec![2; 12]), kek, 48),
        (Mech::Oaep, rsa_pub, 256),
    ] {
        let name = mech.name();
        let (rv, n) = t.wrap_raw(&mech, wk, key, None);
        check(rv, CKR_OK, &format!("{name}: size query"));
        assert_eq!(n, want_len, "{name}: size query length");
        let mut small = vec![0u8; n - 1];
        let (rv, m) = t.wrap_raw(&mech, wk, key, Some(&mut small));
        check(
            rv,
            CKR_BUFFER_TOO_SMALL,
            &format!("{name}: buffer one byte short"),
        );
        assert_eq!(m, n, "{name}: CKR_BUFFER_TOO_SMALL reports the length");
        assert!(
            small.iter().all(|x| *x == 0),
            "{name}: nothing written to a short buffer"
        );
        let mut empty: [u8; 0] = [];
        let (rv, m) = with_mech(&mech, |mm| {
            let mut l: CK_ULONG = 0;
            let rv = ck!(t.m, C_WrapKey(t.s, mm, wk, key, empty.as_mut_ptr(), &mut l));
            (rv, l)
        });
        check(
            rv,
            CKR_BUFFER_TOO_SMALL,
            &format!("{name}: zero-length buffer"),
        );
        assert_eq!(
            m as usize, n,
            "{name}: zero-length buffer reports the length"
        );
        let mut buf = vec![0u8; n + 16];
        let (rv, m) = t.wrap_raw(&mech, wk, key, Some(&mut buf));
        check(rv, CKR_OK, &format!("{name}: wrap into a larger buffer"));
        assert_eq!(m, want_len, "{name}: wrapped length");
    }
}

// ---------------------------------------------------------------------------
// 4. HKDF (RFC 5869, SHA-256)
// ---------------------------------------------------------------------------

struct HkdfCase {
    name: &'static str,
    ikm: Vec<u8>,
    salt: Option<Vec<u8>>,
    info: Vec<u8>,
    prk: &'static str,
    okm: &'static str,
}

fn rfc5869() -> Vec<HkdfCase> {
    vec![
        HkdfCase {
            name: "RFC 5869 A.1",
            ikm: vec![0x0b; 22],
            salt: Some((0x00..=0x0c).collect()),
            info: (0xf0..=0xf9).collect(),
            prk: "077709362c2e32df0ddc3f0dc47bba6390b6c73bb50f9c3122ec844ad7c2b3e5",
            okm: "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865",
        },
        HkdfCase {
            name: "RFC 5869 A.2",
            ikm: (0x00..=0x4f).collect(),
            salt: Some((0x60..=0xaf).collect()),
            info: (0xb0..=0xff).collect(),
            prk: "06a6b88c5853361a06104c9ceb35b45cef760014904671014a193f40c15fc244",
            okm: "b11e398dc80327a1c8e7f78c596a49344f012eda2d4efad8a050cc4c19afa97c59045a99cac7827271cb41c65e590e09da3275600c2f09b8367793a9aca3db71cc30c58179ec3e87c14c01d5c1f3434f1d87",
        },
        HkdfCase {
            name: "RFC 5869 A.3",
            ikm: vec![0x0b; 22],
            salt: None,
            info: Vec::new(),
            prk: "19ef24a32c717b167f33a91d6f648bdf96596776afdb6377ac434c1c293ccb04",
            okm: "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8",
        },
    ]
}

#[test]
fn hkdf_rfc5869_vectors() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    for c in rfc5869() {
        let name = c.name;
        let okm_len = (c.okm.len() / 2) as CK_ULONG;
        let ikm = t.extractable(CKK_GENERIC_SECRET, &c.ikm);
        let salt = match &c.salt {
            Some(s) => Salt::Data(s.clone()),
            None => Salt::Null,
        };
        // Extract and expand.
        let h = ok(
            t.derive(
                &hkdf(true, true, salt.clone(), &c.info),
                ikm,
                secret_tpl(CKK_GENERIC_SECRET, Some(okm_len)),
            ),
            &format!("{name}: HKDF_DERIVE extract+expand"),
        );
        assert_eq!(to_hex(&t.value(h)), c.okm, "{name}: OKM");
        // Extract only: the PRK; CKA_VALUE_LEN may be left to the mechanism.
        let h = ok(
            t.derive(
                &hkdf(true, false, salt.clone(), &c.info),
                ikm,
                secret_tpl(CKK_GENERIC_SECRET, None),
            ),
            &format!("{name}: HKDF_DERIVE extract only, no CKA_VALUE_LEN"),
        );
        assert_eq!(to_hex(&t.value(h)), c.prk, "{name}: PRK");
        let h = ok(
            t.derive(
                &hkdf(true, false, salt.clone(), &c.info),
                ikm,
                secret_tpl(CKK_GENERIC_SECRET, Some(32)),
            ),
            &format!("{name}: HKDF_DERIVE extract only, CKA_VALUE_LEN 32"),
        );
        assert_eq!(to_hex(&t.value(h)), c.prk, "{name}: PRK (CKA_VALUE_LEN 32)");
        // Expand only, from the PRK (the salt is ignored).
        let prk = t.extractable(CKK_GENERIC_SECRET, &hex(c.prk));
        let h = ok(
            t.derive(
                &hkdf(false, true, Salt::Data(b"ignored".to_vec()), &c.info),
                prk,
                secret_tpl(CKK_GENERIC_SECRET, Some(okm_len)),
            ),
            &format!("{name}: HKDF_DERIVE expand only"),
        );
        assert_eq!(to_hex(&t.value(h)), c.okm, "{name}: OKM from the PRK");
        // Salt as a key object.
        if let Some(s) = &c.salt {
            let salt_key = t.extractable(CKK_GENERIC_SECRET, s);
            let h = ok(
                t.derive(
                    &hkdf(true, true, Salt::Key(salt_key), &c.info),
                    ikm,
                    secret_tpl(CKK_GENERIC_SECRET, Some(okm_len)),
                ),
                &format!("{name}: HKDF_DERIVE with CKF_HKDF_SALT_KEY"),
            );
            assert_eq!(
                to_hex(&t.value(h)),
                c.okm,
                "{name}: OKM with the salt as a key"
            );
        }
        // CKM_HKDF_DATA: a data object holding the OKM.
        let h = ok(
            t.derive(
                &Mech::Hkdf {
                    data: true,
                    extract: true,
                    expand: true,
                    salt: salt.clone(),
                    info: c.info.clone(),
                },
                ikm,
                vec![
                    u(CKA_CLASS, CKO_DATA),
                    u(CKA_VALUE_LEN, okm_len),
                    b(CKA_TOKEN, false),
                ],
            ),
            &format!("{name}: HKDF_DATA"),
        );
        assert_eq!(
            CK_ULONG::from_ne_bytes(ok(t.get(h, CKA_CLASS), "CKA_CLASS").try_into().unwrap()),
            CKO_DATA,
            "{name}: HKDF_DATA makes a data object"
        );
        assert_eq!(to_hex(&t.value(h)), c.okm, "{name}: HKDF_DATA value");
    }
    // An AES key of the OKM's first 32 bytes (A.1): the derived key works as an AES key.
    let c = &rfc5869()[0];
    let ikm = t.extractable(CKK_GENERIC_SECRET, &c.ikm);
    let aes_key = ok(
        t.derive(
            &hkdf(true, true, Salt::Data(c.salt.clone().unwrap()), &c.info),
            ikm,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_ENCRYPT, true),
                b(CKA_SENSITIVE, false),
            ],
        ),
        "HKDF_DERIVE to an AES-256 key",
    );
    let okm = hex(c.okm);
    let ct = ok(
        t.crypt(true, &Mech::Plain(CKM_AES_ECB), aes_key, &[0u8; 16]),
        "AES-ECB with the derived key",
    );
    assert_eq!(
        ct,
        aes_ecb(&okm[..32], &[0u8; 16]),
        "the derived AES key is OKM[..32]"
    );
}

#[test]
fn hkdf_parameter_and_base_key_rules() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    let ikm = t.extractable(CKK_GENERIC_SECRET, &[0x0b; 32]);
    let tpl = || secret_tpl(CKK_GENERIC_SECRET, Some(32));
    // Neither extract nor expand.
    let r = t.derive(&hkdf(false, false, Salt::Null, b""), ikm, tpl());
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_MECHANISM_PARAM_INVALID,
        "HKDF with bExtract and bExpand FALSE",
    );
    // A salt key handle that is no key.
    let r = t.derive(&hkdf(true, true, Salt::Key(0xdead_beef), b""), ikm, tpl());
    check_any(
        r.err().unwrap_or(CKR_OK),
        &[CKR_MECHANISM_PARAM_INVALID, CKR_KEY_HANDLE_INVALID],
        "HKDF with an invalid hSaltKey",
    );
    // PKCS#11 3.0, HKDF mechanisms, "HKDF derive": "The input key must be of
    // type CKK_HKDF or CKK_GENERIC_SECRET".
    let aes_base = t.extractable(CKK_AES, &[0x0b; 32]);
    let r = t.derive(&hkdf(true, true, Salt::Null, b""), aes_base, tpl());
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_KEY_TYPE_INCONSISTENT,
        "HKDF_DERIVE with a CKK_AES base key",
    );
}

// ---------------------------------------------------------------------------
// 5. derivation by encryption, concatenation
// ---------------------------------------------------------------------------

#[test]
fn aes_encrypt_data_and_concatenate() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    let k = hex("603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4");
    let base = t.extractable(CKK_AES, &k);
    let data: Vec<u8> = (0u8..32).collect();
    let iv: [u8; 16] = core::array::from_fn(|i| 0xa0 + i as u8);

    let h = ok(
        t.derive(
            &Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, data.clone()),
            base,
            secret_tpl(CKK_GENERIC_SECRET, Some(32)),
        ),
        "AES_ECB_ENCRYPT_DATA",
    );
    assert_eq!(
        to_hex(&t.value(h)),
        to_hex(&aes_ecb(&k, &data)),
        "ECB_ENCRYPT_DATA == AES-ECB(K, data)"
    );
    let h = ok(
        t.derive(
            &Mech::CbcData(iv, data.clone()),
            base,
            secret_tpl(CKK_GENERIC_SECRET, Some(32)),
        ),
        "AES_CBC_ENCRYPT_DATA",
    );
    assert_eq!(
        to_hex(&t.value(h)),
        to_hex(&aes_cbc(&k, &iv, &data)),
        "CBC_ENCRYPT_DATA == AES-CBC(K, iv, data)"
    );
    // As an AES-256 key, usable for encryption.
    let h = ok(
        t.derive(
            &Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, data.clone()),
            base,
            secret_tpl(CKK_AES, Some(32)),
        ),
        "AES_ECB_ENCRYPT_DATA to an AES key",
    );
    assert_eq!(
        t.value(h),
        aes_ecb(&k, &data),
        "ECB_ENCRYPT_DATA AES key value"
    );
    // The data must be a multiple of the block size.
    for mech in [
        Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![1; 20]),
        Mech::CbcData(iv, vec![1; 20]),
    ] {
        let r = t.derive(&mech, base, secret_tpl(CKK_GENERIC_SECRET, Some(16)));
        check_any(
            r.err().unwrap_or(CKR_OK),
            &[CKR_MECHANISM_PARAM_INVALID, CKR_DATA_LEN_RANGE],
            &format!("{} with 20 bytes of data", mech.name()),
        );
    }

    // CONCATENATE_BASE_AND_KEY: base || key.
    let k1 = [0x11u8; 16];
    let k2: Vec<u8> = (0x20u8..0x40).collect();
    let base1 = t.extractable(CKK_GENERIC_SECRET, &k1);
    let key2 = t.extractable(CKK_AES, &k2);
    let mut both = k1.to_vec();
    both.extend_from_slice(&k2);
    let h = ok(
        t.derive(
            &Mech::Concat(key2),
            base1,
            secret_tpl(CKK_GENERIC_SECRET, Some(48)),
        ),
        "CONCATENATE_BASE_AND_KEY, 48 bytes",
    );
    assert_eq!(
        to_hex(&t.value(h)),
        to_hex(&both),
        "CONCATENATE_BASE_AND_KEY, explicit length"
    );
    let h = ok(
        t.derive(&Mech::Concat(key2), base1, secret_tpl(CKK_AES, Some(32))),
        "CONCATENATE_BASE_AND_KEY to AES-256",
    );
    assert_eq!(
        to_hex(&t.value(h)),
        to_hex(&both[..32]),
        "AES-256 from 48 bytes: the leading 32"
    );
    let r = t.derive(
        &Mech::Concat(key2),
        base1,
        secret_tpl(CKK_GENERIC_SECRET, Some(49)),
    );
    check_any(
        r.err().unwrap_or(CKR_OK),
        &[
            CKR_TEMPLATE_INCONSISTENT,
            CKR_KEY_SIZE_RANGE,
            CKR_ATTRIBUTE_VALUE_INVALID,
        ],
        "CONCATENATE_BASE_AND_KEY asking for more bytes than the keys have",
    );
    let r = t.derive(
        &Mech::Concat(0xdead_beef),
        base1,
        secret_tpl(CKK_GENERIC_SECRET, None),
    );
    check_any(
        r.err().unwrap_or(CKR_OK),
        &[CKR_MECHANISM_PARAM_INVALID, CKR_KEY_HANDLE_INVALID],
        "CONCATENATE_BASE_AND_KEY with an invalid second handle",
    );
    // Last, as the module refuses it: PKCS#11 3.0 "Concatenation of a base key
    // and another key": "If no length or key type is provided in the template,
    // then the key produced by this mechanism will be a generic secret key. Its
    // length will be equal to the sum of the lengths of the values of the two
    // original keys."
    let h = ok(
        t.derive(
            &Mech::Concat(key2),
            base1,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                b(CKA_TOKEN, false),
                b(CKA_SENSITIVE, false),
                b(CKA_EXTRACTABLE, true),
            ],
        ),
        "CONCATENATE_BASE_AND_KEY, no type or length",
    );
    assert_eq!(
        CK_ULONG::from_ne_bytes(
            ok(t.get(h, CKA_KEY_TYPE), "CKA_KEY_TYPE")
                .try_into()
                .unwrap()
        ),
        CKK_GENERIC_SECRET,
        "no type given: a generic secret"
    );
    assert_eq!(
        to_hex(&t.value(h)),
        to_hex(&both),
        "CONCATENATE_BASE_AND_KEY == base || key"
    );
}

// ---------------------------------------------------------------------------
// 6. sensitivity inheritance
// ---------------------------------------------------------------------------

#[test]
fn derived_keys_inherit_sensitivity() {
    let (_env, toks) = tokens(&["spec", "hsm"]);
    // Mismatches of CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE, all reported at the end.
    let mut bad = Vec::new();
    for (policy, t) in ["spec", "hsm"].iter().zip(toks) {
        // An always-sensitive, never-extractable base born in the token.
        let born = ok(
            t.generate(
                CKM_GENERIC_SECRET_KEY_GEN,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                    u(CKA_VALUE_LEN, 32),
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, true),
                    b(CKA_EXTRACTABLE, false),
                    b(CKA_DERIVE, true),
                ],
            ),
            "generate an always-sensitive base",
        );
        assert!(t.flag(born, CKA_ALWAYS_SENSITIVE) && t.flag(born, CKA_NEVER_EXTRACTABLE));
        // An imported base: sensitive but not always sensitive, and extractable.
        let imported = t.secret(
            CKK_GENERIC_SECRET,
            &[0x33; 32],
            vec![
                b(CKA_SENSITIVE, true),
                b(CKA_EXTRACTABLE, true),
                b(CKA_DERIVE, true),
            ],
        );
        assert!(
            !t.flag(imported, CKA_ALWAYS_SENSITIVE) && !t.flag(imported, CKA_NEVER_EXTRACTABLE)
        );
        let mech = hkdf(true, true, Salt::Null, b"inherit");
        let sensitive_tpl = |extra: Vec<(CK_ATTRIBUTE_TYPE, V)>| {
            let mut l = vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
            ];
            l.extend(extra);
            l
        };
        // (what, base, template extras, want ALWAYS_SENSITIVE, want NEVER_EXTRACTABLE)
        let cases: Vec<(&str, H, Template, bool, bool)> = vec![
            (
                "always-sensitive base, SENSITIVE/!EXTRACTABLE asked",
                born,
                vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)],
                true,
                true,
            ),
            (
                "always-sensitive base, template defaults",
                born,
                vec![],
                true,
                true,
            ),
            (
                "imported base, SENSITIVE/!EXTRACTABLE asked",
                imported,
                vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)],
                false,
                false,
            ),
            (
                "imported base, template defaults",
                imported,
                vec![],
                false,
                false,
            ),
        ];
        for (what, base, extra, want_as, want_ne) in cases {
            let h = ok(
                t.derive(&mech, base, sensitive_tpl(extra)),
                &format!("{policy}: {what}"),
            );
            let (sens, ext) = (t.flag(h, CKA_SENSITIVE), t.flag(h, CKA_EXTRACTABLE));
            // The base is sensitive (both bases are): so is the derived key.
            assert!(sens, "{policy}: {what}: derived CKA_SENSITIVE");
            if base == born {
                assert!(
                    !ext,
                    "{policy}: {what}: derived from an unextractable base: CKA_EXTRACTABLE"
                );
            }
            flags_check(
                &mut bad,
                &t,
                h,
                (want_as, want_ne),
                format!(
                    "{policy}: {what}: CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE (derived SENSITIVE {sens}, EXTRACTABLE {ext})"
                ),
            );
            assert!(
                !t.flag(h, CKA_LOCAL),
                "{policy}: {what}: a derived key is not CKA_LOCAL"
            );
        }
        // Two bases: always-sensitive base || imported key → not always sensitive.
        let h = ok(
            t.derive(
                &Mech::Concat(imported),
                born,
                sensitive_tpl(vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)]),
            ),
            &format!("{policy}: CONCATENATE(born, imported)"),
        );
        flags_check(
            &mut bad,
            &t,
            h,
            (false, false),
            format!(
                "{policy}: concatenation with an imported key is neither always sensitive nor never extractable"
            ),
        );
        // ECDH from an always-sensitive EC key.
        let (_, ec) = ok(
            t.generate_pair(
                CKM_EC_KEY_PAIR_GEN,
                vec![by(CKA_EC_PARAMS, P256_OID), b(CKA_TOKEN, false)],
                vec![
                    b(CKA_TOKEN, false),
                    b(CKA_SENSITIVE, true),
                    b(CKA_EXTRACTABLE, false),
                    b(CKA_DERIVE, true),
                ],
            ),
            "EC key pair",
        );
        let (peer_pub, _) = ok(
            t.generate_pair(
                CKM_EC_KEY_PAIR_GEN,
                vec![by(CKA_EC_PARAMS, P256_OID), b(CKA_TOKEN, false)],
                vec![b(CKA_TOKEN, false), b(CKA_DERIVE, true)],
            ),
            "peer EC key pair",
        );
        let point = ok(t.get(peer_pub, CKA_EC_POINT), "peer CKA_EC_POINT");
        let h = ok(
            t.derive(
                &Mech::Ecdh(point),
                ec,
                sensitive_tpl(vec![b(CKA_SENSITIVE, true), b(CKA_EXTRACTABLE, false)]),
            ),
            &format!("{policy}: ECDH from an always-sensitive key"),
        );
        flags_check(
            &mut bad,
            &t,
            h,
            (true, true),
            format!("{policy}: ECDH from an always-sensitive, never-extractable key"),
        );
    }
    assert!(
        bad.is_empty(),
        "derived keys with untruthful flags:\n{}",
        bad.join("\n")
    );
}

/// Records a mismatch of a derived key's CKA_ALWAYS_SENSITIVE/CKA_NEVER_EXTRACTABLE.
fn flags_check(bad: &mut Vec<String>, t: &Tok, h: H, want: (bool, bool), what: String) {
    let got = (
        t.flag(h, CKA_ALWAYS_SENSITIVE),
        t.flag(h, CKA_NEVER_EXTRACTABLE),
    );
    if got != want {
        bad.push(format!("{what}: got {got:?}, expected {want:?}"));
    }
}

// ---------------------------------------------------------------------------
// 7. CKA_WRAP_TEMPLATE and CKA_UNWRAP_TEMPLATE
// ---------------------------------------------------------------------------

#[test]
fn wrap_and_unwrap_templates() {
    let (_env, toks) = tokens(&["spec"]);
    let t = toks[0];
    // Wraps only AES keys; unwraps only into sensitive AES keys that cannot encrypt.
    let kek = t.secret(
        CKK_AES,
        &SHARED_KEK,
        vec![
            b(CKA_WRAP, true),
            b(CKA_UNWRAP, true),
            (CKA_WRAP_TEMPLATE, V::Attrs(vec![u(CKA_KEY_TYPE, CKK_AES)])),
            (
                CKA_UNWRAP_TEMPLATE,
                V::Attrs(vec![
                    u(CKA_KEY_TYPE, CKK_AES),
                    b(CKA_SENSITIVE, true),
                    b(CKA_ENCRYPT, false),
                ]),
            ),
        ],
    );
    let aes = t.extractable(CKK_AES, &[0x44; 32]);
    let generic = t.extractable(CKK_GENERIC_SECRET, &[0x44; 32]);
    let (rv, _) = t.wrap_raw(&kwp(), kek, generic, None);
    check(
        rv,
        CKR_KEY_NOT_WRAPPABLE,
        "a generic secret does not match CKA_WRAP_TEMPLATE",
    );
    let blob = ok(
        t.wrap(&kwp(), kek, aes),
        "an AES key matches CKA_WRAP_TEMPLATE",
    );
    let base = || {
        vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            b(CKA_TOKEN, false),
        ]
    };
    let h = ok(
        t.unwrap(&kwp(), kek, &blob, base()),
        "unwrap under CKA_UNWRAP_TEMPLATE",
    );
    assert!(
        t.flag(h, CKA_SENSITIVE),
        "CKA_UNWRAP_TEMPLATE forces CKA_SENSITIVE"
    );
    assert!(
        !t.flag(h, CKA_ENCRYPT),
        "CKA_UNWRAP_TEMPLATE forces CKA_ENCRYPT FALSE"
    );
    for (what, extra) in [
        ("CKA_SENSITIVE FALSE", b(CKA_SENSITIVE, false)),
        ("CKA_ENCRYPT TRUE", b(CKA_ENCRYPT, true)),
    ] {
        let mut tpl = base();
        tpl.push(extra);
        let r = t.unwrap(&kwp(), kek, &blob, tpl);
        check(
            r.err().unwrap_or(CKR_OK),
            CKR_TEMPLATE_INCONSISTENT,
            &format!("unwrap template {what} against CKA_UNWRAP_TEMPLATE"),
        );
    }
    let mut tpl = base();
    tpl[1] = u(CKA_KEY_TYPE, CKK_GENERIC_SECRET);
    let r = t.unwrap(&kwp(), kek, &blob, tpl);
    check(
        r.err().unwrap_or(CKR_OK),
        CKR_TEMPLATE_INCONSISTENT,
        "unwrap as a generic secret against CKA_UNWRAP_TEMPLATE",
    );
}
