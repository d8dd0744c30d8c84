//! The benchmark rows: what each one does through PKCS#11 (via `cryptoki`),
//! how its answer is checked before it is timed, and the same work done
//! directly with the RustCrypto crates (the raw-crate column).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit};
use cbc::cipher::KeyIvInit;
use cbc::cipher::block_padding::Pkcs7;
use cbc::cipher::{BlockModeDecrypt, BlockModeEncrypt};
use cryptoki::error::RvError;
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::{AuthPin, Ulong};
use getrandom::SysRng;
use hmac::{Hmac, Mac};
use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
use rsa::{
    BoxedUint, Generate, Oaep, Pkcs1v15Sign, PrivateKey as RsaPrivateKey, PublicKey as RsaPublicKey,
};
use sha2::{Digest, Sha256};

use crate::measure::OpFn;
use crate::token::{BResult, BenchError, Target, USER_PIN, ckr_name, context, ensure};

mod more;

/// One kind of benchmark row.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `C_OpenSession` + `C_CloseSession`.
    Session,
    /// User `C_Login` + `C_Logout` (production Argon2id cost in FerroHSM).
    Login,
    /// `C_GenerateRandom` of 32 bytes.
    Random32,
    /// `C_Digest` SHA-256 of 1 KiB.
    Sha256,
    /// AES-256-GCM encryption of 64 bytes.
    GcmEnc64,
    /// AES-256-GCM decryption of 64 bytes.
    GcmDec64,
    /// AES-256-GCM encryption of 4 KiB.
    GcmEnc4k,
    /// AES-256-GCM decryption of 4 KiB.
    GcmDec4k,
    /// AES-256-CBC-PAD encryption of 4 KiB.
    CbcPad4k,
    /// HMAC-SHA256 of 64 bytes.
    Hmac64,
    /// The AWS XKS proxy's encrypt sequence: random 12-byte IV, GCM init
    /// with 40 bytes of AAD, size query, encrypt of 4 KiB.
    Xks,
    /// ECDSA P-256 signature of a SHA-256 digest (`CKM_ECDSA`).
    EcdsaSign,
    /// ECDSA P-256 verification.
    EcdsaVerify,
    /// RSA-2048 PKCS#1 v1.5 signature with SHA-256 of 64 bytes.
    RsaSign,
    /// RSA-2048 PKCS#1 v1.5 verification.
    RsaVerify,
    /// RSA-2048 OAEP (SHA-256, MGF1-SHA-256) decryption of 32 bytes.
    RsaOaepDec,
    /// AES-256 token key generation.
    GenAes256,
    /// P-256 token key-pair generation.
    GenP256,
    /// RSA-2048 token key-pair generation.
    GenRsa2048,
    /// Token data-object creation with 1,000 token objects (the find rows' population).
    CreateData,
    /// `C_FindObjects` by label among 1,000 token objects.
    Find1k,
    /// `C_FindObjects` by label among 10,000 token objects.
    Find10k,
    // Issue 18 rows (`rows/more.rs`).
    /// ECDSA P-384 signature of a SHA-384 digest (`CKM_ECDSA`).
    EcdsaP384Sign,
    /// ECDSA P-384 verification.
    EcdsaP384Verify,
    /// RSA-2048 PSS (SHA-256, MGF1-SHA-256, 32-byte salt) signature of 64 bytes.
    RsaPssSign,
    /// RSA-2048 OAEP decryption with SHA-1 and MGF1-SHA-1 (SoftHSMv2's only OAEP).
    RsaOaepSha1Dec,
    /// RSA-3072 PKCS#1 v1.5 signature with SHA-256 of 64 bytes (imported key).
    Rsa3072Sign,
    /// RSA-4096 PKCS#1 v1.5 signature with SHA-256 of 64 bytes (imported key).
    Rsa4096Sign,
    /// Ed25519 signature of 64 bytes (`CKM_EDDSA`).
    EddsaSign,
    /// Ed25519 verification.
    EddsaVerify,
    /// User `C_Login` + `C_Logout` with 10,000 token objects (login
    /// unseals and checks the token's objects).
    Login10k,
    /// Token data-object creation with 10,000 token objects (the find rows'
    /// population).
    CreateData10k,
    /// Token data-object creation with 100,000 token objects.
    CreateData100k,
    /// User `C_Login` + `C_Logout` with 100,000 token objects.
    Login100k,
}

impl Op {
    /// Every row kind, in report order (the object-finding rows last, since
    /// their objects stay on the token).
    pub const ALL: [Op; 34] = [
        Op::Session,
        Op::Login,
        Op::Random32,
        Op::Sha256,
        Op::GcmEnc64,
        Op::GcmDec64,
        Op::GcmEnc4k,
        Op::GcmDec4k,
        Op::CbcPad4k,
        Op::Hmac64,
        Op::Xks,
        Op::EcdsaSign,
        Op::EcdsaVerify,
        Op::RsaSign,
        Op::RsaVerify,
        Op::RsaOaepDec,
        Op::EcdsaP384Sign,
        Op::EcdsaP384Verify,
        Op::RsaPssSign,
        Op::RsaOaepSha1Dec,
        Op::Rsa3072Sign,
        Op::Rsa4096Sign,
        Op::EddsaSign,
        Op::EddsaVerify,
        Op::GenAes256,
        Op::GenP256,
        Op::GenRsa2048,
        Op::CreateData,
        Op::Find1k,
        Op::Find10k,
        Op::Login10k,
        Op::CreateData10k,
        Op::CreateData100k,
        Op::Login100k,
    ];

    /// The id used by `--ops` and in JSON.
    pub fn id(self) -> &'static str {
        match self {
            Op::Session => "session",
            Op::Login => "login",
            Op::Random32 => "random32",
            Op::Sha256 => "sha256_1k",
            Op::GcmEnc64 => "gcm_enc_64",
            Op::GcmDec64 => "gcm_dec_64",
            Op::GcmEnc4k => "gcm_enc_4k",
            Op::GcmDec4k => "gcm_dec_4k",
            Op::CbcPad4k => "cbc_pad_enc_4k",
            Op::Hmac64 => "hmac_sha256_64",
            Op::Xks => "xks_gcm_4k",
            Op::EcdsaSign => "ecdsa_p256_sign",
            Op::EcdsaVerify => "ecdsa_p256_verify",
            Op::RsaSign => "rsa2048_sign",
            Op::RsaVerify => "rsa2048_verify",
            Op::RsaOaepDec => "rsa2048_oaep_dec",
            Op::GenAes256 => "keygen_aes256",
            Op::GenP256 => "keygen_p256",
            Op::GenRsa2048 => "keygen_rsa2048",
            Op::CreateData => "create_data_obj",
            Op::Find1k => "find_1k",
            Op::Find10k => "find_10k",
            Op::Login10k => "pop10k_login",
            Op::CreateData10k => "pop10k_create_data_obj",
            Op::CreateData100k => "pop100k_create_data_obj",
            Op::Login100k => "pop100k_login",
            more => more::describe(more).map_or("?", |d| d.0),
        }
    }

    /// A short human title for the table.
    pub fn title(self) -> &'static str {
        match self {
            Op::Session => "session open+close",
            Op::Login => "login+logout (user)",
            Op::Random32 => "GenerateRandom 32 B",
            Op::Sha256 => "SHA-256 1 KiB",
            Op::GcmEnc64 => "AES-GCM enc 64 B",
            Op::GcmDec64 => "AES-GCM dec 64 B",
            Op::GcmEnc4k => "AES-GCM enc 4 KiB",
            Op::GcmDec4k => "AES-GCM dec 4 KiB",
            Op::CbcPad4k => "AES-CBC-PAD enc 4 KiB",
            Op::Hmac64 => "HMAC-SHA256 64 B",
            Op::Xks => "XKS seq (IV+GCM 4 KiB)",
            Op::EcdsaSign => "ECDSA P-256 sign",
            Op::EcdsaVerify => "ECDSA P-256 verify",
            Op::RsaSign => "RSA-2048 PKCS#1 sign",
            Op::RsaVerify => "RSA-2048 PKCS#1 verify",
            Op::RsaOaepDec => "RSA-2048 OAEP dec",
            Op::GenAes256 => "keygen AES-256",
            Op::GenP256 => "keygen P-256",
            Op::GenRsa2048 => "keygen RSA-2048",
            Op::CreateData => "create data obj /1k",
            Op::Find1k => "find by label /1k",
            Op::Find10k => "find by label /10k",
            Op::Login10k => "login+logout /10k objs",
            Op::CreateData10k => "create data obj /10k",
            Op::CreateData100k => "create data obj /100k",
            Op::Login100k => "login+logout /100k objs",
            more => more::describe(more).map_or("?", |d| d.1),
        }
    }

    /// Whether the row is also run with more than one thread (`--threads`).
    pub fn scales(self) -> bool {
        matches!(
            self,
            Op::GcmEnc64 | Op::EcdsaSign | Op::CreateData | Op::CreateData10k | Op::CreateData100k
        )
    }

    /// Whether each timed call writes the token to disk and waits for it
    /// (object creation, key generation), so the runner lets the disk settle
    /// first.
    pub fn writes_durably(self) -> bool {
        matches!(
            self,
            Op::CreateData
                | Op::CreateData10k
                | Op::CreateData100k
                | Op::GenAes256
                | Op::GenP256
                | Op::GenRsa2048
        )
    }

    /// Whether the row logs the application out (the runner logs in again).
    pub fn is_login(self) -> bool {
        matches!(self, Op::Login | Op::Login10k | Op::Login100k)
    }

    /// Number of token objects on the token while the row runs (made
    /// untimed, shared between rows, skipped past the setup cap).
    pub fn population(self) -> Option<usize> {
        match self {
            Op::CreateData => Some(1_000),
            Op::Login10k | Op::CreateData10k => Some(10_000),
            Op::CreateData100k | Op::Login100k => Some(100_000),
            _ => self.find_population(),
        }
    }

    /// The mechanisms the row needs from `C_GetMechanismList`, the one it
    /// measures first.
    pub fn mechanisms(self) -> &'static [MechanismType] {
        match self {
            Op::Session
            | Op::Login
            | Op::Random32
            | Op::CreateData
            | Op::Find1k
            | Op::Find10k
            | Op::Login10k
            | Op::CreateData10k
            | Op::CreateData100k
            | Op::Login100k => &[],
            Op::Sha256 => &[MechanismType::SHA256],
            Op::GcmEnc64 | Op::GcmDec64 | Op::GcmEnc4k | Op::GcmDec4k | Op::Xks => {
                &[MechanismType::AES_GCM, MechanismType::AES_KEY_GEN]
            }
            Op::CbcPad4k => &[MechanismType::AES_CBC_PAD, MechanismType::AES_KEY_GEN],
            Op::Hmac64 => &[
                MechanismType::SHA256_HMAC,
                MechanismType::GENERIC_SECRET_KEY_GEN,
            ],
            Op::EcdsaSign | Op::EcdsaVerify => {
                &[MechanismType::ECDSA, MechanismType::ECC_KEY_PAIR_GEN]
            }
            Op::RsaSign | Op::RsaVerify => &[
                MechanismType::SHA256_RSA_PKCS,
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            ],
            Op::RsaOaepDec => &[
                MechanismType::RSA_PKCS_OAEP,
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            ],
            Op::GenAes256 => &[MechanismType::AES_KEY_GEN],
            Op::GenP256 => &[MechanismType::ECC_KEY_PAIR_GEN],
            Op::GenRsa2048 => &[MechanismType::RSA_PKCS_KEY_PAIR_GEN],
            more => more::describe(more).map_or(&[], |d| d.2),
        }
    }

    /// Number of token objects a find row searches among.
    pub fn find_population(self) -> Option<usize> {
        match self {
            Op::Find1k => Some(1_000),
            Op::Find10k => Some(10_000),
            _ => None,
        }
    }
}

// ---- inputs ----------------------------------------------------------------------------

/// AAD length of the XKS row (XKS sends an encryption context of about this size).
pub(crate) const XKS_AAD_LEN: usize = 40;
/// GCM tag length in bits.
const GCM_TAG_BITS: u64 = 128;
/// DER of the P-256 curve OID (prime256v1), the `CKA_EC_PARAMS` value.
const P256_OID_DER: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Deterministic, non-trivial input bytes.
pub fn pattern(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u32).wrapping_mul(2_654_435_761).to_be_bytes()[0])
        .collect()
}

/// Plaintext length of a row.
fn input_len(op: Op) -> usize {
    match op {
        Op::GcmEnc64 | Op::GcmDec64 | Op::Hmac64 | Op::RsaSign | Op::RsaVerify => 64,
        Op::Sha256 => 1024,
        Op::GcmEnc4k | Op::GcmDec4k | Op::CbcPad4k | Op::Xks => 4096,
        Op::RsaOaepDec => 32,
        _ => 0,
    }
}

/// A 12-byte GCM IV made from a counter, so no IV repeats under one key.
pub(crate) fn counter_iv(counter: &AtomicU64) -> [u8; 12] {
    let mut iv = [0u8; 12];
    iv[4..].copy_from_slice(&counter.fetch_add(1, Ordering::Relaxed).to_be_bytes());
    iv
}

/// GCM IVs used by encrypt rows; shared by all threads of one row.
pub(crate) static GCM_IV_COUNTER: AtomicU64 = AtomicU64::new(1 << 32);

fn oaep() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ))
}

// ---- keys on the token -----------------------------------------------------------------

/// Keys made once per module and shared by the rows that need them.
#[derive(Default)]
pub struct Keys {
    aes: Option<ObjectHandle>,
    hmac: Option<ObjectHandle>,
    ec: Option<(ObjectHandle, ObjectHandle)>,
    rsa: Option<(ObjectHandle, ObjectHandle)>,
    /// Labels and handles of the find rows' data objects, in creation order.
    pub found: Vec<(Vec<u8>, ObjectHandle)>,
    /// The keys of the issue 18 rows.
    more: more::MoreKeys,
}

fn aes_template(label: &str) -> Vec<Attribute> {
    vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::ValueLen(Ulong::from(32)),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
        Attribute::Label(label.as_bytes().to_vec()),
    ]
}

fn ec_templates(label: &str) -> (Vec<Attribute>, Vec<Attribute>) {
    let l = label.as_bytes().to_vec();
    (
        vec![
            Attribute::Token(true),
            Attribute::EcParams(P256_OID_DER.to_vec()),
            Attribute::Verify(true),
            Attribute::Label(l.clone()),
        ],
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(l),
        ],
    )
}

fn rsa_templates(label: &str) -> (Vec<Attribute>, Vec<Attribute>) {
    let l = label.as_bytes().to_vec();
    (
        vec![
            Attribute::Token(true),
            Attribute::ModulusBits(Ulong::from(2048)),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::Verify(true),
            Attribute::Encrypt(true),
            Attribute::Label(l.clone()),
        ],
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Decrypt(true),
            Attribute::Label(l),
        ],
    )
}

fn data_template(label: Vec<u8>) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Label(label),
        Attribute::Application(b"ferrohsm-bench".to_vec()),
        Attribute::Value(pattern(32)),
    ]
}

impl Keys {
    fn aes(&mut self, s: &Session) -> BResult<ObjectHandle> {
        if self.aes.is_none() {
            let k = s.generate_key(&Mechanism::AesKeyGen, &aes_template("bench-aes"))?;
            self.aes = Some(k);
        }
        self.aes
            .ok_or_else(|| BenchError::Fail("no AES key".into()))
    }

    fn hmac(&mut self, s: &Session) -> BResult<ObjectHandle> {
        if self.hmac.is_none() {
            let t = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::KeyType(KeyType::GENERIC_SECRET),
                Attribute::ValueLen(Ulong::from(32)),
                Attribute::Sign(true),
                Attribute::Verify(true),
                Attribute::Label(b"bench-hmac".to_vec()),
            ];
            self.hmac = Some(s.generate_key(&Mechanism::GenericSecretKeyGen, &t)?);
        }
        self.hmac
            .ok_or_else(|| BenchError::Fail("no HMAC key".into()))
    }

    fn ec(&mut self, s: &Session) -> BResult<(ObjectHandle, ObjectHandle)> {
        if self.ec.is_none() {
            let (pubt, privt) = ec_templates("bench-ec");
            self.ec = Some(s.generate_key_pair(&Mechanism::EccKeyPairGen, &pubt, &privt)?);
        }
        self.ec.ok_or_else(|| BenchError::Fail("no EC key".into()))
    }

    fn rsa(&mut self, s: &Session) -> BResult<(ObjectHandle, ObjectHandle)> {
        if self.rsa.is_none() {
            let (pubt, privt) = rsa_templates("bench-rsa");
            self.rsa = Some(s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &pubt, &privt)?);
        }
        self.rsa
            .ok_or_else(|| BenchError::Fail("no RSA key".into()))
    }
}

// ---- PKCS#11 rows -----------------------------------------------------------------------

/// What a row's timed operation works on, after its answer was checked.
#[derive(Default)]
pub struct Prepared {
    /// The key the operation uses (private key for signatures).
    key: Option<ObjectHandle>,
    /// Public key of a pair.
    public: Option<ObjectHandle>,
    /// Input of the operation (plaintext, message or digest).
    input: Vec<u8>,
    /// Ciphertext or signature the operation consumes.
    aux: Vec<u8>,
    /// IV that produced `aux`.
    iv: Vec<u8>,
    /// Objects to look up: label and the only handle it may find.
    lookups: Vec<(Vec<u8>, ObjectHandle)>,
}

/// Limits of the object-finding rows' setup.
#[derive(Clone, Copy, Debug)]
pub struct FindBudget {
    /// Longest the object creation for one find row may take, in seconds.
    pub setup_cap_s: f64,
}

/// Checks the row's answer on `t` with the logged-in session `s` and
/// returns what the timed operation needs. `Skip` when the module lacks the
/// row's mechanism, `Fail` on a wrong answer.
pub fn prepare(
    op: Op,
    t: &Target,
    s: &Session,
    keys: &mut Keys,
    budget: FindBudget,
) -> BResult<Prepared> {
    t.require(op.mechanisms())?;
    let mut p = Prepared {
        input: pattern(input_len(op)),
        ..Prepared::default()
    };
    match op {
        Op::Session => {
            let s2 = t.session()?;
            ensure(s2.get_session_info()?.slot_id() == t.slot, || {
                "session on the wrong slot".into()
            })?;
            s2.close()?;
        }
        Op::Login | Op::Login10k | Op::Login100k => {
            if let Some(n) = op.population() {
                populate(s, keys, n, budget)?;
            }
            s.logout()?;
            let pin = AuthPin::new(USER_PIN.into());
            s.login(UserType::User, Some(&pin))?;
            s.logout()?;
            let wrong = AuthPin::new("not-the-pin".into());
            ensure(s.login(UserType::User, Some(&wrong)).is_err(), || {
                "login with a wrong PIN succeeded".into()
            })?;
        }
        Op::Random32 => {
            let (mut a, mut b) = ([0u8; 32], [0u8; 32]);
            s.generate_random_slice(&mut a)?;
            s.generate_random_slice(&mut b)?;
            ensure(a != b && a != [0; 32], || {
                "C_GenerateRandom repeated itself or gave zeros".into()
            })?;
        }
        Op::Sha256 => {
            let got = s.digest(&Mechanism::Sha256, &p.input)?;
            let want = Sha256::digest(&p.input);
            ensure(got == want.as_slice(), || {
                format!("SHA-256 {} != sha2 crate's", hex(&got))
            })?;
        }
        Op::GcmEnc64 | Op::GcmDec64 | Op::GcmEnc4k | Op::GcmDec4k | Op::Xks => {
            let key = keys.aes(s)?;
            let aad = if op == Op::Xks {
                pattern(XKS_AAD_LEN)
            } else {
                Vec::new()
            };
            let mut iv = counter_iv(&GCM_IV_COUNTER).to_vec();
            let ct = s.encrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, Ulong::from(GCM_TAG_BITS))?),
                key,
                &p.input,
            )?;
            ensure(ct.len() == p.input.len() + 16, || {
                format!("GCM ciphertext of {} bytes", ct.len())
            })?;
            let pt = s.decrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, Ulong::from(GCM_TAG_BITS))?),
                key,
                &ct,
            )?;
            ensure(pt == p.input, || "AES-GCM decrypt(encrypt(x)) != x".into())?;
            let mut bad = ct.clone();
            bad[0] ^= 1;
            let tampered = s.decrypt(
                &Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, Ulong::from(GCM_TAG_BITS))?),
                key,
                &bad,
            );
            ensure(tampered.is_err(), || {
                "AES-GCM decrypted a tampered ciphertext".into()
            })?;
            p.key = Some(key);
            p.aux = ct;
            p.iv = iv;
        }
        Op::CbcPad4k => {
            let key = keys.aes(s)?;
            let iv = [7u8; 16];
            let ct = s.encrypt(&Mechanism::AesCbcPad(iv), key, &p.input)?;
            ensure(ct.len() == p.input.len() + 16, || {
                format!("CBC-PAD ciphertext of {} bytes", ct.len())
            })?;
            let pt = s.decrypt(&Mechanism::AesCbcPad(iv), key, &ct)?;
            ensure(pt == p.input, || {
                "AES-CBC-PAD decrypt(encrypt(x)) != x".into()
            })?;
            p.key = Some(key);
        }
        Op::Hmac64 => {
            let key = keys.hmac(s)?;
            let mac = s.sign(&Mechanism::Sha256Hmac, key, &p.input)?;
            ensure(mac.len() == 32, || format!("HMAC of {} bytes", mac.len()))?;
            context(
                s.verify(&Mechanism::Sha256Hmac, key, &p.input, &mac)
                    .map_err(Into::into),
                "verify(sign(x))",
            )?;
            let mut bad = mac.clone();
            bad[5] ^= 0x10;
            ensure(
                s.verify(&Mechanism::Sha256Hmac, key, &p.input, &bad)
                    .is_err(),
                || "HMAC verify accepted a wrong MAC".into(),
            )?;
            p.key = Some(key);
        }
        Op::EcdsaSign | Op::EcdsaVerify => {
            let (public, private) = keys.ec(s)?;
            p.input = Sha256::digest(pattern(64)).to_vec();
            let sig = s.sign(&Mechanism::Ecdsa, private, &p.input)?;
            ensure(sig.len() == 64, || {
                format!("P-256 signature of {} bytes", sig.len())
            })?;
            context(
                s.verify(&Mechanism::Ecdsa, public, &p.input, &sig)
                    .map_err(Into::into),
                "verify(sign(x))",
            )?;
            check_ecdsa_with_p256(s, public, &p.input, &sig)?;
            let mut bad = sig.clone();
            bad[40] ^= 0x01;
            ensure(
                s.verify(&Mechanism::Ecdsa, public, &p.input, &bad).is_err(),
                || "ECDSA verify accepted a wrong signature".into(),
            )?;
            (p.key, p.public, p.aux) = (Some(private), Some(public), sig);
        }
        Op::RsaSign | Op::RsaVerify => {
            let (public, private) = keys.rsa(s)?;
            let sig = s.sign(&Mechanism::Sha256RsaPkcs, private, &p.input)?;
            ensure(sig.len() == 256, || {
                format!("RSA-2048 signature of {} bytes", sig.len())
            })?;
            context(
                s.verify(&Mechanism::Sha256RsaPkcs, public, &p.input, &sig)
                    .map_err(Into::into),
                "verify(sign(x))",
            )?;
            let pk = rsa_public(s, public)?;
            let digest = Sha256::digest(&p.input);
            ensure(
                pk.verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                    .is_ok(),
                || "the rsa crate rejects the token's PKCS#1 signature".into(),
            )?;
            let mut bad = sig.clone();
            bad[100] ^= 0x01;
            ensure(
                s.verify(&Mechanism::Sha256RsaPkcs, public, &p.input, &bad)
                    .is_err(),
                || "RSA verify accepted a wrong signature".into(),
            )?;
            (p.key, p.public, p.aux) = (Some(private), Some(public), sig);
        }
        Op::RsaOaepDec => {
            let (public, private) = keys.rsa(s)?;
            let ct = s.encrypt(&oaep(), public, &p.input).map_err(|e| match e {
                // SoftHSMv2 2.6 accepts only SHA-1 OAEP and says so with
                // CKR_ARGUMENTS_BAD; the spec's code is CKR_MECHANISM_PARAM_INVALID.
                cryptoki::error::Error::Pkcs11(rv @ (RvError::ArgumentsBad | RvError::MechanismParamInvalid), f) => {
                    BenchError::Skip(format!(
                        "rejects OAEP with SHA-256/MGF1-SHA-256 ({} from C_{f:?}; SoftHSMv2 2.6 supports SHA-1 OAEP only)",
                        ckr_name(rv)
                    ))
                }
                other => other.into(),
            })?;
            ensure(ct.len() == 256, || {
                format!("OAEP ciphertext of {} bytes", ct.len())
            })?;
            let pt = s.decrypt(&oaep(), private, &ct)?;
            ensure(pt == p.input, || "RSA-OAEP decrypt(encrypt(x)) != x".into())?;
            // The rsa crate's OAEP ciphertext must decrypt on the token too.
            let pk = rsa_public(s, public)?;
            let ct2 = pk
                .encrypt(&mut SysRng, Oaep::<Sha256>::new(), &p.input)
                .map_err(|e| BenchError::Fail(format!("rsa crate OAEP encrypt: {e}")))?;
            let pt2 = s.decrypt(&oaep(), private, &ct2)?;
            ensure(pt2 == p.input, || {
                "token OAEP-decrypts the rsa crate's ciphertext wrongly".into()
            })?;
            (p.key, p.aux) = (Some(private), ct);
        }
        Op::GenAes256 => {
            let k = s.generate_key(&Mechanism::AesKeyGen, &aes_template("bench-gen"))?;
            let attrs = s.get_attributes(k, &[AttributeType::ValueLen])?;
            ensure(
                matches!(attrs.first(), Some(Attribute::ValueLen(l)) if u64::from(*l) == 32),
                || format!("generated AES key has {attrs:?}"),
            )?;
            s.destroy_object(k)?;
        }
        Op::GenP256 => {
            let (pubt, privt) = ec_templates("bench-gen");
            let (pb, pr) = s.generate_key_pair(&Mechanism::EccKeyPairGen, &pubt, &privt)?;
            let attrs = s.get_attributes(pb, &[AttributeType::EcPoint])?;
            ensure(
                matches!(attrs.first(), Some(Attribute::EcPoint(p)) if sec1_point(p).is_some()),
                || "generated P-256 key has no valid CKA_EC_POINT".into(),
            )?;
            s.destroy_object(pb)?;
            s.destroy_object(pr)?;
        }
        Op::GenRsa2048 => {
            let (pubt, privt) = rsa_templates("bench-gen");
            let (pb, pr) = s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &pubt, &privt)?;
            let pk = rsa_public(s, pb)?;
            ensure(rsa::traits::PublicKeyParts::size(&pk) == 256, || {
                "generated RSA key is not 2048-bit".into()
            })?;
            s.destroy_object(pb)?;
            s.destroy_object(pr)?;
        }
        Op::CreateData | Op::CreateData10k | Op::CreateData100k => {
            if let Some(n) = op.population() {
                populate(s, keys, n, budget)?;
            }
            let label = b"bench-create-check".to_vec();
            let h = s.create_object(&data_template(label.clone()))?;
            let found = s.find_objects(&[Attribute::Label(label)])?;
            ensure(found == [h], || {
                format!("created object {h:?}, found {found:?}")
            })?;
            s.destroy_object(h)?;
        }
        Op::Find1k | Op::Find10k => {
            let n = op.find_population().unwrap_or(0);
            populate(s, keys, n, budget)?;
            p.lookups = keys.found[..n].to_vec();
            for (label, h) in [&p.lookups[0], &p.lookups[n - 1], &p.lookups[n / 2]] {
                let found = s.find_objects(&[Attribute::Label(label.clone())])?;
                ensure(found == [*h], || {
                    format!(
                        "find {:?}: want [{h:?}], got {found:?}",
                        String::from_utf8_lossy(label)
                    )
                })?;
            }
        }
        more => {
            let rsa2048 = match more {
                Op::RsaPssSign | Op::RsaOaepSha1Dec => Some(keys.rsa(s)?),
                _ => None,
            };
            more::prepare(more, s, &mut keys.more, rsa2048, &mut p)?;
        }
    }
    Ok(p)
}

/// Writes back every dirty page before a row that flushes to disk is timed
/// (`sync`), so that neither module's fsyncs wait behind the other's writeback
/// (SoftHSMv2 leaves thousands of object files dirty after populating the
/// find rows, and the kernel writes them back up to 30 s later). Best effort.
pub fn settle_disk() {
    let _ = std::process::Command::new("sync").status();
}

/// Objects created before `populate` first extrapolates its time: enough that
/// one slow flush does not make a 100k population look out of reach.
const PROBE: usize = 500;

/// Creates token data objects until `keys.found` holds `n`, or skips when
/// the measured creation rate says it would take longer than the cap.
fn populate(s: &Session, keys: &mut Keys, n: usize, budget: FindBudget) -> BResult<()> {
    let have = keys.found.len();
    if have >= n {
        return Ok(());
    }
    // The probe below extrapolates from the first objects: not behind the
    // other module's writeback.
    settle_disk();
    let start = Instant::now();
    let mut probe_done = false;
    for i in have..n {
        let label = format!("bench-find-{i:05}").into_bytes();
        let h = s.create_object(&data_template(label.clone()))?;
        keys.found.push((label, h));
        let made = i + 1 - have;
        let spent = start.elapsed().as_secs_f64();
        // After a probe of PROBE objects, extrapolate; then keep watching, since
        // creation may slow down as the token fills.
        if (made == PROBE && !probe_done)
            || (made.is_multiple_of(500) && spent > budget.setup_cap_s / 2.0)
        {
            probe_done = true;
            let estimate = spent / made as f64 * (n - have) as f64;
            if estimate > budget.setup_cap_s {
                return Err(BenchError::Skip(format!(
                    "creating {n} token objects would take ~{estimate:.0} s ({:.1} ms/object measured over {made}), over \
                     the {:.0} s setup cap (grows with --seconds)",
                    spent * 1e3 / made as f64,
                    budget.setup_cap_s
                )));
            }
        }
    }
    Ok(())
}

/// The timed operation of `op` on `t`, in a new session of its own.
pub fn p11_op<'a>(op: Op, t: &'a Target, p: &'a Prepared) -> BResult<OpFn<'a>> {
    let s = t.session()?;
    let missing = || BenchError::Fail("internal: row prepared without its key".into());
    let key = || p.key.ok_or_else(missing);
    let public = || p.public.ok_or_else(missing);
    Ok(match op {
        Op::Session => Box::new(move || {
            t.session()?.close()?;
            Ok(())
        }),
        Op::Login | Op::Login10k | Op::Login100k => {
            let pin = AuthPin::new(USER_PIN.into());
            Box::new(move || {
                s.login(UserType::User, Some(&pin))?;
                s.logout()?;
                Ok(())
            })
        }
        Op::Random32 => {
            let mut buf = [0u8; 32];
            Box::new(move || Ok(s.generate_random_slice(&mut buf)?))
        }
        Op::Sha256 => Box::new(move || {
            s.digest(&Mechanism::Sha256, &p.input)?;
            Ok(())
        }),
        Op::GcmEnc64 | Op::GcmEnc4k => {
            let key = key()?;
            Box::new(move || {
                let mut iv = counter_iv(&GCM_IV_COUNTER);
                let m = Mechanism::AesGcm(GcmParams::new(&mut iv, &[], Ulong::from(GCM_TAG_BITS))?);
                s.encrypt(&m, key, &p.input)?;
                Ok(())
            })
        }
        Op::GcmDec64 | Op::GcmDec4k => {
            let key = key()?;
            let mut iv = p.iv.clone();
            Box::new(move || {
                let m = Mechanism::AesGcm(GcmParams::new(&mut iv, &[], Ulong::from(GCM_TAG_BITS))?);
                s.decrypt(&m, key, &p.aux)?;
                Ok(())
            })
        }
        Op::CbcPad4k => {
            let key = key()?;
            Box::new(move || {
                s.encrypt(&Mechanism::AesCbcPad([7u8; 16]), key, &p.input)?;
                Ok(())
            })
        }
        Op::Hmac64 => {
            let key = key()?;
            Box::new(move || {
                s.sign(&Mechanism::Sha256Hmac, key, &p.input)?;
                Ok(())
            })
        }
        Op::Xks => {
            let key = key()?;
            let aad = pattern(XKS_AAD_LEN);
            Box::new(move || {
                let mut iv = [0u8; 12];
                s.generate_random_slice(&mut iv)?;
                // cryptoki's encrypt is C_EncryptInit, C_Encrypt with a NULL
                // buffer (size query), then C_Encrypt: the XKS sequence.
                let m =
                    Mechanism::AesGcm(GcmParams::new(&mut iv, &aad, Ulong::from(GCM_TAG_BITS))?);
                s.encrypt(&m, key, &p.input)?;
                Ok(())
            })
        }
        Op::EcdsaSign => {
            let key = key()?;
            Box::new(move || {
                s.sign(&Mechanism::Ecdsa, key, &p.input)?;
                Ok(())
            })
        }
        Op::EcdsaVerify => {
            let public = public()?;
            Box::new(move || Ok(s.verify(&Mechanism::Ecdsa, public, &p.input, &p.aux)?))
        }
        Op::RsaSign => {
            let key = key()?;
            Box::new(move || {
                s.sign(&Mechanism::Sha256RsaPkcs, key, &p.input)?;
                Ok(())
            })
        }
        Op::RsaVerify => {
            let public = public()?;
            Box::new(move || Ok(s.verify(&Mechanism::Sha256RsaPkcs, public, &p.input, &p.aux)?))
        }
        Op::RsaOaepDec => {
            let key = key()?;
            Box::new(move || {
                s.decrypt(&oaep(), key, &p.aux)?;
                Ok(())
            })
        }
        Op::GenAes256 => {
            let mut made = Made::new(s);
            let template = aes_template("bench-gen");
            Box::new(move || {
                let k = made
                    .session
                    .generate_key(&Mechanism::AesKeyGen, &template)?;
                made.handles.push(k);
                Ok(())
            })
        }
        Op::GenP256 | Op::GenRsa2048 => {
            let mut made = Made::new(s);
            let ((pubt, privt), mech) = if op == Op::GenP256 {
                (ec_templates("bench-gen"), Mechanism::EccKeyPairGen)
            } else {
                (rsa_templates("bench-gen"), Mechanism::RsaPkcsKeyPairGen)
            };
            Box::new(move || {
                let (a, b) = made.session.generate_key_pair(&mech, &pubt, &privt)?;
                made.handles.extend([a, b]);
                Ok(())
            })
        }
        Op::CreateData | Op::CreateData10k | Op::CreateData100k => {
            let mut made = Made::new(s);
            let mut i = 0u64;
            Box::new(move || {
                i += 1;
                let h = made
                    .session
                    .create_object(&data_template(format!("bench-create-{i}").into_bytes()))?;
                made.handles.push(h);
                Ok(())
            })
        }
        Op::Find1k | Op::Find10k => {
            let mut i: usize = 0;
            let n = p.lookups.len();
            Box::new(move || {
                // A stride coprime to any population walks all labels in a scrambled order.
                i = (i + 7_919) % n;
                let (label, h) = &p.lookups[i];
                let found = s.find_objects(&[Attribute::Label(label.clone())])?;
                ensure(found.len() == 1 && found[0] == *h, || {
                    format!("find by label returned {found:?}, want [{h:?}]")
                })
            })
        }
        more => return more::p11_op(more, s, p),
    })
}

/// A session plus the objects an operation created in it, destroyed (untimed)
/// when the measurement ends and the operation is dropped.
struct Made {
    session: Session,
    handles: Vec<ObjectHandle>,
}

impl Made {
    fn new(session: Session) -> Made {
        Made {
            session,
            handles: Vec::new(),
        }
    }
}

impl Drop for Made {
    fn drop(&mut self) {
        for h in self.handles.drain(..) {
            let _ = self.session.destroy_object(h);
        }
    }
}

/// The RSA public key of a token object, via `CKA_MODULUS` and `CKA_PUBLIC_EXPONENT`.
fn rsa_public(s: &Session, public: ObjectHandle) -> BResult<RsaPublicKey> {
    let attrs = s.get_attributes(
        public,
        &[AttributeType::Modulus, AttributeType::PublicExponent],
    )?;
    let (mut n, mut e) = (None, None);
    for a in attrs {
        match a {
            Attribute::Modulus(v) => n = Some(v),
            Attribute::PublicExponent(v) => e = Some(v),
            _ => {}
        }
    }
    let bad = |what: &str| BenchError::Fail(format!("wrong answer: RSA public key {what}"));
    let (n, e) = (
        n.ok_or_else(|| bad("has no modulus"))?,
        e.ok_or_else(|| bad("has no exponent"))?,
    );
    let n = BoxedUint::from_be_slice(&n, (n.len() * 8) as u32).map_err(|_| bad("modulus"))?;
    let e = BoxedUint::from_be_slice(&e, 64).map_err(|_| bad("exponent"))?;
    RsaPublicKey::new(n, e).map_err(|err| bad(&format!("rejected by the rsa crate: {err}")))
}

/// The uncompressed SEC1 point inside a `CKA_EC_POINT` value (a DER OCTET
/// STRING, or the bare point some modules return).
fn sec1_point(v: &[u8]) -> Option<&[u8]> {
    match v {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 && rest[0] == 0x04 => Some(rest),
        [0x04, rest @ ..] if rest.len() == 64 => Some(v),
        _ => None,
    }
}

/// Verifies a token's ECDSA signature with the p256 crate.
fn check_ecdsa_with_p256(
    s: &Session,
    public: ObjectHandle,
    digest: &[u8],
    sig: &[u8],
) -> BResult<()> {
    let attrs = s.get_attributes(public, &[AttributeType::EcPoint])?;
    let point = match attrs.first() {
        Some(Attribute::EcPoint(p)) => sec1_point(p).map(<[u8]>::to_vec),
        _ => None,
    };
    let point =
        point.ok_or_else(|| BenchError::Fail("wrong answer: no valid CKA_EC_POINT".into()))?;
    let vk = p256::ecdsa::VerifyingKey::from_sec1_bytes(&point)
        .map_err(|_| BenchError::Fail("wrong answer: CKA_EC_POINT is not a P-256 point".into()))?;
    let sig = p256::ecdsa::Signature::from_slice(sig)
        .map_err(|_| BenchError::Fail("wrong answer: signature is not r||s".into()))?;
    ensure(vk.verify_prehash(digest, &sig).is_ok(), || {
        "the p256 crate rejects the token's signature".into()
    })
}

/// Lower-case hex, for messages.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

// ---- raw RustCrypto rows ----------------------------------------------------------------

/// Key material for the raw-crate column, made once.
pub struct RawKeys {
    pub(crate) aes: [u8; 32],
    hmac: [u8; 32],
    pub(crate) ec: p256::ecdsa::SigningKey,
    pub(crate) rsa: RsaPrivateKey,
}

/// The raw keys, generated on first use (the RSA key takes a moment).
pub fn raw_keys() -> BResult<&'static RawKeys> {
    static KEYS: OnceLock<RawKeys> = OnceLock::new();
    if let Some(k) = KEYS.get() {
        return Ok(k);
    }
    let mut aes = [0u8; 32];
    let mut hmac = [0u8; 32];
    getrandom::fill(&mut aes).map_err(|e| BenchError::Fail(format!("getrandom: {e}")))?;
    getrandom::fill(&mut hmac).map_err(|e| BenchError::Fail(format!("getrandom: {e}")))?;
    let ec =
        p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).map_err(fail("p256 keygen"))?;
    let rsa = RsaPrivateKey::new(&mut SysRng, 2048)
        .map_err(|e| BenchError::Fail(format!("rsa keygen: {e}")))?;
    Ok(KEYS.get_or_init(|| RawKeys { aes, hmac, ec, rsa }))
}

/// Input and expected intermediate values of a raw row, checked like the
/// module rows' round trips.
pub struct RawPrepared {
    pub(crate) input: Vec<u8>,
    pub(crate) aux: Vec<u8>,
    pub(crate) iv: [u8; 12],
}

/// Whether the row has a raw-crate equivalent.
pub fn has_raw(op: Op) -> bool {
    !matches!(
        op,
        Op::Session
            | Op::Login
            | Op::CreateData
            | Op::Find1k
            | Op::Find10k
            | Op::Login10k
            | Op::CreateData10k
            | Op::CreateData100k
            | Op::Login100k
    ) && more::describe(op).is_none()
}

fn fail<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Fail(format!("{what}: {e}"))
}

/// Checks the raw row's round trip and returns its inputs.
pub fn raw_prepare(op: Op) -> BResult<RawPrepared> {
    let k = raw_keys()?;
    let mut p = RawPrepared {
        input: pattern(input_len(op)),
        aux: Vec::new(),
        iv: counter_iv(&GCM_IV_COUNTER),
    };
    match op {
        Op::GcmEnc64 | Op::GcmDec64 | Op::GcmEnc4k | Op::GcmDec4k | Op::Xks => {
            let c = Aes256Gcm::new(&k.aes.into());
            let aad = if op == Op::Xks {
                pattern(XKS_AAD_LEN)
            } else {
                Vec::new()
            };
            let ct = c
                .encrypt(
                    &p.iv.into(),
                    Payload {
                        msg: &p.input,
                        aad: &aad,
                    },
                )
                .map_err(fail("aes-gcm encrypt"))?;
            let pt = c
                .decrypt(
                    &p.iv.into(),
                    Payload {
                        msg: &ct,
                        aad: &aad,
                    },
                )
                .map_err(fail("aes-gcm decrypt"))?;
            ensure(pt == p.input, || "aes-gcm round trip".into())?;
            p.aux = ct;
        }
        Op::CbcPad4k => {
            let ct = cbc::Encryptor::<aes::Aes256>::new(&k.aes.into(), &[7u8; 16].into())
                .encrypt_padded_vec::<Pkcs7>(&p.input);
            let pt = cbc::Decryptor::<aes::Aes256>::new(&k.aes.into(), &[7u8; 16].into())
                .decrypt_padded_vec::<Pkcs7>(&ct)
                .map_err(fail("cbc decrypt"))?;
            ensure(pt == p.input, || "cbc round trip".into())?;
        }
        Op::EcdsaSign | Op::EcdsaVerify => {
            p.input = Sha256::digest(pattern(64)).to_vec();
            let sig: p256::ecdsa::Signature =
                k.ec.sign_prehash(&p.input).map_err(fail("p256 sign"))?;
            k.ec.verifying_key()
                .verify_prehash(&p.input, &sig)
                .map_err(fail("p256 verify"))?;
            p.aux = sig.to_bytes().to_vec();
        }
        Op::RsaSign | Op::RsaVerify => {
            let d = Sha256::digest(&p.input);
            let sig = k
                .rsa
                .sign(Pkcs1v15Sign::new::<Sha256>(), &d)
                .map_err(fail("rsa sign"))?;
            k.rsa
                .to_public_key()
                .verify(Pkcs1v15Sign::new::<Sha256>(), &d, &sig)
                .map_err(fail("rsa verify"))?;
            p.aux = sig;
        }
        Op::RsaOaepDec => {
            let ct = k
                .rsa
                .to_public_key()
                .encrypt(&mut SysRng, Oaep::<Sha256>::new(), &p.input)
                .map_err(fail("rsa encrypt"))?;
            let pt = k
                .rsa
                .decrypt(Oaep::<Sha256>::new(), &ct)
                .map_err(fail("rsa decrypt"))?;
            ensure(pt == p.input, || "rsa OAEP round trip".into())?;
            p.aux = ct;
        }
        _ => {}
    }
    if crate::rawlc::takes(op) {
        crate::rawlc::check(op, &p)?;
    }
    Ok(p)
}

/// The raw-crate version of the row's timed operation.
pub fn raw_op<'a>(op: Op, p: &'a RawPrepared) -> BResult<OpFn<'a>> {
    if crate::rawlc::takes(op) {
        return crate::rawlc::op(op, p);
    }
    let k = raw_keys()?;
    let rng_err = |e: getrandom::Error| BenchError::Fail(format!("getrandom: {e}"));
    Ok(match op {
        Op::Random32 => Box::new(move || {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(rng_err)
        }),
        Op::Sha256 => Box::new(move || {
            std::hint::black_box(Sha256::digest(&p.input));
            Ok(())
        }),
        Op::GcmEnc64 | Op::GcmEnc4k => {
            let c = Aes256Gcm::new(&k.aes.into());
            Box::new(move || {
                let iv = counter_iv(&GCM_IV_COUNTER);
                std::hint::black_box(
                    c.encrypt(&iv.into(), p.input.as_slice())
                        .map_err(fail("aes-gcm"))?,
                );
                Ok(())
            })
        }
        Op::GcmDec64 | Op::GcmDec4k => {
            let c = Aes256Gcm::new(&k.aes.into());
            Box::new(move || {
                std::hint::black_box(
                    c.decrypt(&p.iv.into(), p.aux.as_slice())
                        .map_err(fail("aes-gcm"))?,
                );
                Ok(())
            })
        }
        Op::CbcPad4k => Box::new(move || {
            let e = cbc::Encryptor::<aes::Aes256>::new(&k.aes.into(), &[7u8; 16].into());
            std::hint::black_box(e.encrypt_padded_vec::<Pkcs7>(&p.input));
            Ok(())
        }),
        Op::Hmac64 => Box::new(move || {
            let mut m = <Hmac<Sha256> as KeyInit>::new_from_slice(&k.hmac).map_err(fail("hmac"))?;
            m.update(&p.input);
            std::hint::black_box(m.finalize().into_bytes());
            Ok(())
        }),
        Op::Xks => {
            let c = Aes256Gcm::new(&k.aes.into());
            let aad = pattern(XKS_AAD_LEN);
            Box::new(move || {
                let mut iv = [0u8; 12];
                getrandom::fill(&mut iv).map_err(rng_err)?;
                let ct = c
                    .encrypt(
                        &iv.into(),
                        Payload {
                            msg: &p.input,
                            aad: &aad,
                        },
                    )
                    .map_err(fail("aes-gcm"))?;
                std::hint::black_box(ct);
                Ok(())
            })
        }
        Op::EcdsaSign => Box::new(move || {
            let sig: p256::ecdsa::Signature = k.ec.sign_prehash(&p.input).map_err(fail("p256"))?;
            std::hint::black_box(sig);
            Ok(())
        }),
        Op::EcdsaVerify => {
            let vk = *k.ec.verifying_key();
            let sig = p256::ecdsa::Signature::from_slice(&p.aux).map_err(fail("p256"))?;
            Box::new(move || {
                vk.verify_prehash(&p.input, &sig)
                    .map_err(fail("p256 verify"))
            })
        }
        Op::RsaSign => Box::new(move || {
            let d = Sha256::digest(&p.input);
            std::hint::black_box(
                k.rsa
                    .sign(Pkcs1v15Sign::new::<Sha256>(), &d)
                    .map_err(fail("rsa"))?,
            );
            Ok(())
        }),
        Op::RsaVerify => {
            let pk = k.rsa.to_public_key();
            Box::new(move || {
                let d = Sha256::digest(&p.input);
                pk.verify(Pkcs1v15Sign::new::<Sha256>(), &d, &p.aux)
                    .map_err(fail("rsa verify"))
            })
        }
        Op::RsaOaepDec => Box::new(move || {
            std::hint::black_box(
                k.rsa
                    .decrypt(Oaep::<Sha256>::new(), &p.aux)
                    .map_err(fail("rsa"))?,
            );
            Ok(())
        }),
        Op::GenAes256 => Box::new(move || {
            let mut b = [0u8; 32];
            getrandom::fill(&mut b).map_err(rng_err)
        }),
        Op::GenP256 => Box::new(move || {
            std::hint::black_box(
                p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng)
                    .map_err(fail("p256 keygen"))?,
            );
            Ok(())
        }),
        Op::GenRsa2048 => Box::new(move || {
            std::hint::black_box(
                RsaPrivateKey::new(&mut SysRng, 2048).map_err(fail("rsa keygen"))?,
            );
            Ok(())
        }),
        _ => {
            return Err(BenchError::Skip("no raw-crate equivalent".into()));
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_unique() {
        let mut ids: Vec<_> = Op::ALL.iter().map(|o| o.id()).collect();
        ids.sort_unstable();
        ids.dedup();
        assert_eq!(ids.len(), Op::ALL.len());
    }

    #[test]
    fn ec_point_forms() {
        let mut der = vec![0x04, 0x41, 0x04];
        der.extend([1u8; 64]);
        assert_eq!(sec1_point(&der).map(<[u8]>::len), Some(65));
        assert_eq!(sec1_point(&der[2..]).map(<[u8]>::len), Some(65));
        assert_eq!(sec1_point(&der[..20]), None);
    }

    #[test]
    fn raw_round_trips_hold() {
        for op in [Op::GcmDec64, Op::Xks, Op::CbcPad4k, Op::EcdsaVerify] {
            raw_prepare(op).unwrap();
        }
    }
}
