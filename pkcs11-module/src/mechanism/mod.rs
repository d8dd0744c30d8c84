//! The mechanism table: ONE static list saying, for each mechanism, its key size
//! range, its flags, the C layout of its parameter (which `ffi` reads) and the
//! builders of its operations. `C_GetMechanismList` and
//! `C_GetMechanismInfo` read it, every `*Init` looks its row up, and nothing else
//! lists mechanisms. Beside it, `key_types` is the table of key types (sizes,
//! check values, import checks, PKCS#8 forms). Each family lives in its own file.
#![forbid(unsafe_code)]

pub mod aes;
pub mod aes_modes;
pub mod backend;
pub mod chacha;
pub mod des;
pub mod digest;
pub mod ec;
pub mod edwards;
pub mod kdf;
pub mod key_types;
pub mod mac;
pub mod message;
pub mod rsa;
mod table;

use std::sync::{Arc, LazyLock};

use cryptoki_sys::*;

use crate::error::{Error, Result};
use crate::object::Object;
use crate::object::attrs::Attrs;
use digest::DigestOp;
use zeroize::Zeroizing;

/// A mechanism parameter as the C caller gave it, made safe by `ffi`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    /// No parameter (`pParameter` NULL and `ulParameterLen` 0).
    None,
    /// A flat parameter: the bytes at `pParameter`.
    Raw(Vec<u8>),
    /// `CK_GCM_PARAMS` (either layout), with the pointed-to IV and AAD copied.
    Gcm {
        /// The IV.
        iv: Vec<u8>,
        /// Additional authenticated data.
        aad: Vec<u8>,
        /// Tag length in bits.
        tag_bits: u64,
    },
    /// `CK_RSA_PKCS_OAEP_PARAMS`, with the pointed-to source data copied.
    Oaep {
        /// `hashAlg` (`CKM_SHA*`).
        hash: CK_MECHANISM_TYPE,
        /// `mgf` (`CKG_MGF1_*`).
        mgf: CK_ULONG,
        /// `source` (`CKZ_DATA_SPECIFIED` or 0).
        source: CK_ULONG,
        /// The label (`pSourceData`).
        label: Vec<u8>,
    },
    /// `CK_ECDH1_DERIVE_PARAMS`, with the pointed-to data copied.
    Ecdh {
        /// `kdf` (`CKD_*`).
        kdf: CK_ULONG,
        /// `pSharedData`.
        shared: Vec<u8>,
        /// `pPublicData`: the other party's point (bare or DER OCTET STRING).
        public: Vec<u8>,
    },
    /// `CK_HKDF_PARAMS` (v3.0), with the pointed-to data copied.
    Hkdf {
        /// `bExtract`.
        extract: bool,
        /// `bExpand`.
        expand: bool,
        /// `prfHashMechanism` (`CKM_SHA*`).
        prf: CK_MECHANISM_TYPE,
        /// `ulSaltType` (`CKF_HKDF_SALT_*`).
        salt_type: CK_ULONG,
        /// `pSalt`.
        salt: Vec<u8>,
        /// `hSaltKey`.
        salt_key: CK_OBJECT_HANDLE,
        /// `pInfo`.
        info: Vec<u8>,
    },
    /// `CK_CCM_PARAMS` (v3.0; the same layout as v2.40's `CK_AES_CCM_PARAMS`),
    /// with the nonce and AAD copied.
    Ccm {
        /// `ulDataLen`: the length of the plaintext.
        data_len: u64,
        /// `pNonce`.
        nonce: Vec<u8>,
        /// `pAAD`.
        aad: Vec<u8>,
        /// `ulMACLen`, in bytes.
        mac_len: u64,
    },
    /// `CK_SALSA20_CHACHA20_POLY1305_PARAMS`, with the nonce and AAD copied.
    ChaChaPoly {
        /// `pNonce`.
        nonce: Vec<u8>,
        /// `pAAD`.
        aad: Vec<u8>,
    },
    /// `CK_CHACHA20_PARAMS`, with the counter and nonce copied (whole bytes
    /// of the bit lengths given; the builder checks the lengths).
    ChaCha20 {
        /// `pBlockCounter`: `blockCounterBits / 8` bytes.
        counter: Vec<u8>,
        /// `blockCounterBits`.
        counter_bits: u64,
        /// `pNonce`: `ulNonceBits / 8` bytes.
        nonce: Vec<u8>,
        /// `ulNonceBits`.
        nonce_bits: u64,
    },
    /// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`, with the data copied.
    AesCbcData {
        /// The IV.
        iv: [u8; 16],
        /// The data to encrypt (whole blocks).
        data: Vec<u8>,
    },
    /// `CK_SP800_108_KDF_PARAMS` or `CK_SP800_108_FEEDBACK_KDF_PARAMS`, with
    /// the data parameters and the additional keys' templates copied.
    Kbkdf {
        /// `prfType`: a MAC mechanism (`CKM_SHA256_HMAC`, `CKM_AES_CMAC`, ...).
        prf: CK_MECHANISM_TYPE,
        /// `pDataParams`, in order.
        data: Vec<kdf::kbkdf::PrfData>,
        /// `pIV` of the feedback form (`Some`, possibly empty); `None` for
        /// the counter and double-pipeline forms.
        iv: Option<Vec<u8>>,
        /// The templates of `pAdditionalDerivedKeys`, in order.
        extra: Templates,
    },
    /// `CK_EDDSA_PARAMS` (v3.0), with the context copied.
    Eddsa {
        /// `phFlag`: the prehashed variant (Ed25519ph).
        prehash: bool,
        /// `pContextData`.
        context: Vec<u8>,
    },
}

/// Attribute templates carried by a mechanism parameter (the additional keys
/// of SP 800-108). Debug shows only their number: templates may hold values.
#[derive(Clone, Default)]
pub struct Templates(pub Vec<Vec<crate::object::policy::RawAttr>>);

impl std::fmt::Debug for Templates {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Templates({})", self.0.len())
    }
}

impl PartialEq for Templates {
    fn eq(&self, other: &Self) -> bool {
        self.0.len() == other.0.len()
            && self.0.iter().zip(&other.0).all(|(a, b)| {
                a.len() == b.len()
                    && a.iter()
                        .zip(b)
                        .all(|(x, y)| x.ty == y.ty && *x.value == *y.value)
            })
    }
}

impl Eq for Templates {}

/// The C layout of a mechanism's parameter: what `ffi` reads at
/// `pParameter` for the row (PKCS#11 v3.0 names each structure). Flat layouts
/// are copied as bytes (`Param::Raw`; an empty one is `Param::None`) and
/// checked by the family's builder; layouts that hold pointers are read as
/// their `cryptoki-sys` structure, the data they point to is copied, and the
/// result is the `Param` variant named below.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ParamShape {
    /// No parameter: `Param::None` (anything else is refused by the builder).
    None,
    /// A byte string: the IV of `CKM_AES_CBC`/`CKM_AES_CBC_PAD`, the optional
    /// initial value of AES key wrap. `Param::Raw`.
    Bytes,
    /// `CK_AES_CTR_PARAMS` (flat). `Param::Raw`.
    Ctr,
    /// `CK_GCM_PARAMS`, v3.0 layout or the older one without `ulIvBits`,
    /// told apart by `ulParameterLen`. `Param::Gcm`.
    Gcm,
    /// `CK_RSA_PKCS_OAEP_PARAMS`. `Param::Oaep`.
    Oaep,
    /// `CK_RSA_PKCS_PSS_PARAMS` (flat). `Param::Raw`.
    Pss,
    /// `CK_MAC_GENERAL_PARAMS`: one `CK_ULONG`, the MAC length. `Param::Raw`.
    MacGeneral,
    /// `CK_ECDH1_DERIVE_PARAMS`. `Param::Ecdh`.
    Ecdh,
    /// `CK_HKDF_PARAMS`. `Param::Hkdf`.
    Hkdf,
    /// `CK_KEY_DERIVATION_STRING_DATA`: `Param::Raw` of the data it points to.
    StringData,
    /// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`. `Param::AesCbcData`.
    AesCbcData,
    /// `CK_CCM_PARAMS`. `Param::Ccm`.
    Ccm,
    /// `CK_SALSA20_CHACHA20_POLY1305_PARAMS`. `Param::ChaChaPoly`.
    ChaChaPoly,
    /// `CK_CHACHA20_PARAMS`. `Param::ChaCha20`.
    ChaCha20,
    /// A `CK_OBJECT_HANDLE` (flat): the other key of
    /// `CKM_CONCATENATE_BASE_AND_KEY`. `Param::Raw`.
    KeyHandle,
    /// `CK_EXTRACT_PARAMS` (flat): one `CK_ULONG`, the bit index of
    /// `CKM_EXTRACT_KEY_FROM_KEY`. `Param::Raw`.
    Extract,
    /// `CK_SP800_108_KDF_PARAMS` (counter and double-pipeline forms).
    /// `Param::Kbkdf` with no IV.
    Kbkdf,
    /// `CK_SP800_108_FEEDBACK_KDF_PARAMS`. `Param::Kbkdf` with an IV.
    KbkdfFeedback,
    /// `CK_EDDSA_PARAMS`, optional (`CKM_EDDSA`). `Param::Eddsa`.
    Eddsa,
}

/// Direction of a cipher operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `C_Encrypt*`.
    Encrypt,
    /// `C_Decrypt*`.
    Decrypt,
}

/// A running encryption or decryption. Length functions give the exact or
/// maximum output of the next call, for the size-query rules.
pub trait CipherOp: Send {
    /// Output of a single-part call on `len` input bytes.
    fn single_len(&self, len: usize) -> usize;
    /// Single-part: all input at once; returns the bytes written.
    fn single(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize>;
    /// Output of an update with `len` more input bytes.
    fn update_len(&self, len: usize) -> usize;
    /// Multi-part update; returns the bytes written.
    fn update(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize>;
    /// Output of the final call.
    fn final_len(&self) -> usize;
    /// Multi-part final; returns the bytes written.
    fn finish(&mut self, out: &mut [u8]) -> Result<usize>;
}

/// A running signature or MAC operation (sign or verify). Signatures and
/// MACs have a fixed length per key and mechanism.
pub trait SignOp: Send {
    /// Length of the signature or MAC in bytes.
    fn sig_len(&self) -> usize;
    /// Whether `C_SignUpdate`/`C_VerifyUpdate` are allowed (the raw
    /// mechanisms such as `CKM_ECDSA` and `CKM_RSA_PKCS` are single-part).
    fn multi_part(&self) -> bool {
        true
    }
    /// Absorbs more data.
    fn update(&mut self, data: &[u8]) -> Result<()>;
    /// Writes the signature (`out.len() == sig_len()`).
    fn sign(&mut self, out: &mut [u8]) -> Result<()>;
    /// Checks a signature; MACs are compared in constant time.
    fn verify(&mut self, signature: &[u8]) -> Result<()>;
}

/// A mode that must see its whole input at once (GCM, key wrap, RSA).
pub trait OneShot: Send {
    /// Output length for `len` bytes of input.
    fn out_len(&self, len: usize) -> usize;
    /// Processes the whole input.
    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize>;
}

/// Runs a one-shot mode under PKCS#11's multi-part calls: updates only buffer
/// (and output nothing), the final call processes everything.
pub struct Buffered<T> {
    mode: T,
    buffered: Zeroizing<Vec<u8>>,
}

/// Boxes a one-shot mode as a cipher operation (see `Buffered`).
pub fn buffered<T: OneShot + 'static>(mode: T) -> Box<dyn CipherOp> {
    Box::new(Buffered {
        mode,
        buffered: Zeroizing::new(Vec::new()),
    })
}

impl<T: OneShot> CipherOp for Buffered<T> {
    fn single_len(&self, len: usize) -> usize {
        self.mode.out_len(len)
    }
    fn single(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        // Block ciphers spill round keys to the stack: wiped after.
        crate::secret::scrubbed(|| self.mode.process(input, out))
    }
    fn update_len(&self, _len: usize) -> usize {
        0
    }
    fn update(&mut self, input: &[u8], _out: &mut [u8]) -> Result<usize> {
        self.buffered.extend_from_slice(input);
        Ok(0)
    }
    fn final_len(&self) -> usize {
        self.mode.out_len(self.buffered.len())
    }
    fn finish(&mut self, out: &mut [u8]) -> Result<usize> {
        let data = Zeroizing::new(std::mem::take(&mut *self.buffered));
        crate::secret::scrubbed(|| self.mode.process(&data, out))
    }
}

/// A single-part operation with message recovery (`C_SignRecover`,
/// `C_VerifyRecover`): the output is the signature, or the data recovered
/// from one.
pub trait RecoverOp: Send {
    /// The output length for `len` input bytes when it is known before the
    /// work is done (a signature: the modulus length); `None` when only the
    /// work tells (the data recovered from a signature).
    fn known_len(&self, len: usize) -> Option<usize>;
    /// Signs, or checks and recovers; a signature that does not verify is
    /// `CKR_SIGNATURE_INVALID`.
    fn run(&mut self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>>;
}

/// Builds a sign-recover (`false`) or verify-recover (`true`) operation.
pub type RecoverBuilder = fn(&Param, &Object, bool) -> Result<Box<dyn RecoverOp>>;

/// Builds the per-key part of a v3.0 message-based AEAD (`C_MessageEncryptInit`).
pub type AeadBuilder = fn(&Object) -> Result<Box<dyn message::MessageAead>>;

/// Builds a cipher operation for a key.
pub type CipherBuilder = fn(&Param, &Object, Dir) -> Result<Box<dyn CipherOp>>;
/// Builds a sign (`false`) or verify (`true`) operation for a key.
pub type SignBuilder = fn(&Param, &Object, bool) -> Result<Box<dyn SignOp>>;

/// What `C_GenerateKey` makes with a key-generation mechanism.
#[derive(Clone, Copy)]
pub struct KeyGen {
    /// `CKA_KEY_TYPE` of the new key (its `key_types` row has the sizes).
    pub key_type: CK_KEY_TYPE,
}

/// What `C_GenerateKeyPair` makes with a key-pair mechanism.
#[derive(Clone, Copy)]
pub struct KeyPairGen {
    /// `CKA_KEY_TYPE` of both keys.
    pub key_type: CK_KEY_TYPE,
    /// Makes a pair from the (policy-checked) public attributes: returns the
    /// attributes to add to the public and to the private key.
    pub generate: fn(&Attrs) -> Result<(Attrs, Attrs)>,
}

/// Derives `len` bytes of key value from a mechanism parameter, the base key
/// and the second key the parameter names (if any).
pub type DeriveFn = fn(&Param, &Object, Option<&Object>, usize) -> Result<Zeroizing<Vec<u8>>>;

/// How many of `len` derived bytes are bytes of the base key, and of the
/// second key, in the clear.
pub type CopiedFn = fn(&Param, &Object, Option<&Object>, usize) -> [usize; 2];

/// Derives several keys at once: the values for `lens` (the key of the
/// `C_DeriveKey` template first, then each key the parameter adds).
pub type MultiFn = fn(&Param, &Object, &[usize]) -> Result<Vec<Zeroizing<Vec<u8>>>>;

/// Keys a mechanism parameter asks to derive besides the template's
/// (SP 800-108 `pAdditionalDerivedKeys`).
#[derive(Clone, Copy)]
pub struct MultiKey {
    /// The additional keys' templates, in the order their values are cut.
    pub templates: fn(&Param) -> &[Vec<crate::object::policy::RawAttr>],
    /// All the values, in one run of the KDF.
    pub derive: MultiFn,
}

/// What `C_DeriveKey` does with a derivation mechanism.
#[derive(Clone, Copy)]
pub struct Derive {
    /// The derived value, `len` bytes.
    pub derive: DeriveFn,
    /// The length of a generic secret whose template gives no `CKA_VALUE_LEN`.
    pub default_len: fn(&Param, &Object, Option<&Object>) -> Result<usize>,
    /// A second key named by the parameter (HKDF salt key, concatenated key),
    /// which the module looks up and checks like the base key.
    pub second_key: fn(&Param) -> Option<CK_OBJECT_HANDLE>,
    /// Makes a data object (`CKM_HKDF_DATA`) instead of a secret key.
    pub data: bool,
    /// The output reveals nothing of the base key (ECDH, HKDF, SP 800-108),
    /// and PKCS#11 v3.0 lets the template choose `CKA_SENSITIVE` and
    /// `CKA_EXTRACTABLE` freely (omitted, they follow the base): honoured on
    /// `spec` tokens. Otherwise (and on `hsm` tokens) the new key is at least
    /// as protected as its bases.
    pub one_way: bool,
    /// For mechanisms that copy the base keys' bytes (concatenation, XOR,
    /// extraction): how many derived bytes are copies of each base. On `hsm`
    /// tokens a key holding fewer than `MIN_COPIED` bytes of a base (or of
    /// all that base has) is refused: a short piece of a key is found by
    /// trying every value against a MAC made with it, a piece at a time.
    pub copied: Option<CopiedFn>,
    /// Several keys from one run (SP 800-108 additional derived keys).
    pub multi: Option<MultiKey>,
}

/// The fewest base-key bytes a copying derivation may put in a key on an
/// `hsm` token (see `Derive::copied`): 128 bits, beyond any search.
pub const MIN_COPIED: usize = 16;

impl Derive {
    /// A derivation row's behaviour with the usual defaults: no second key,
    /// a secret key out, protected like its bases, one key per call.
    pub const fn new(
        derive: DeriveFn,
        default_len: fn(&Param, &Object, Option<&Object>) -> Result<usize>,
    ) -> Derive {
        Derive {
            derive,
            default_len,
            second_key: |_| None,
            data: false,
            one_way: false,
            copied: None,
            multi: None,
        }
    }
}

/// The key's secret value (internal use only: operations, never callers).
pub fn key_value(key: &Object) -> Result<&[u8]> {
    key.bytes(CKA_VALUE).ok_or(Error::KeyTypeInconsistent)
}

/// A parsed form of a key object (expanded AES key, parsed RSA or EC key),
/// built once by `make` and cached with the object, so that the hot path
/// parses nothing. Objects are immutable: a changed key is a new object.
/// Built in the key region (`secret::scope`): the cached value and every heap
/// part of it (RSA's big integers) stay in locked, non-dumpable memory.
pub fn cached<T: std::any::Any + Send + Sync>(
    key: &Object,
    make: impl FnOnce() -> Result<T>,
) -> Result<Arc<T>> {
    if let Some(k) = key.cache.get().and_then(|c| c.clone().downcast::<T>().ok()) {
        return Ok(k);
    }
    let k = crate::secret::scope(|| make().map(Arc::new))?;
    let _ = key.cache.set(k.clone());
    Ok(k)
}

/// The cached forms of an AES key object: the expanded key, and the
/// backend's GCM key (built at the first GCM use).
pub struct AesCached {
    /// The expanded key (RustCrypto), for every AES mode.
    pub key: Arc<aes::AesKey>,
    /// The backend's GCM key (`backend::AesGcm::prepare`).
    pub gcm: backend::AesGcm,
}

/// The cached forms of an AES key object, built once.
pub fn aes_cached(key: &Object) -> Result<Arc<AesCached>> {
    cached(key, || {
        Ok(AesCached {
            key: Arc::new(aes::AesKey::new(key_value(key)?)?),
            gcm: backend::AesGcm::default(),
        })
    })
}

/// An AES key object's cached forms, with the backend's GCM key built.
pub fn aes_gcm_key(key: &Object) -> Result<Arc<AesCached>> {
    let c = aes_cached(key)?;
    c.gcm.prepare(|| {
        key_value(key)
            .ok()
            .map(|v| zeroize::Zeroizing::new(v.to_vec()))
    });
    Ok(c)
}

/// The expanded AES key of an object, built once and cached with it.
pub fn aes_key(key: &Object) -> Result<Arc<aes::AesKey>> {
    Ok(aes_cached(key)?.key.clone())
}

/// A mechanism request: type and parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MechanismArg {
    /// `CKM_*`.
    pub ty: CK_MECHANISM_TYPE,
    /// Its parameter.
    pub param: Param,
}

/// One row of the table.
#[derive(Clone, Copy)]
pub struct Mechanism {
    /// `CKM_*`.
    pub ty: CK_MECHANISM_TYPE,
    /// Its name, for logs.
    pub name: &'static str,
    /// Minimum key size (bits or bytes, as the spec says for the mechanism).
    pub min_key: CK_ULONG,
    /// Maximum key size.
    pub max_key: CK_ULONG,
    /// `CKF_*` capabilities; always includes `CKF_HW` (this token is the hardware).
    pub flags: CK_FLAGS,
    /// Key types the mechanism accepts.
    pub key_types: &'static [CK_KEY_TYPE],
    /// The C layout of its parameter, which `ffi` reads.
    pub param: ParamShape,
    /// Builds a digest operation (mechanisms with `CKF_DIGEST`).
    pub digest: Option<fn() -> Box<dyn DigestOp>>,
    /// Builds encrypt/decrypt operations (`CKF_ENCRYPT`/`CKF_DECRYPT`).
    pub cipher: Option<CipherBuilder>,
    /// Builds sign/verify operations (`CKF_SIGN`/`CKF_VERIFY`).
    pub sign: Option<SignBuilder>,
    /// Key generation (`CKF_GENERATE`).
    pub keygen: Option<KeyGen>,
    /// Key-pair generation (`CKF_GENERATE_KEY_PAIR`).
    pub keypair: Option<KeyPairGen>,
    /// Key derivation (`CKF_DERIVE`).
    pub derive: Option<Derive>,
    /// For a wrapping mechanism that zero-pads a key to whole blocks
    /// (`CKM_AES_KEY_WRAP`: "a key whose length is not a multiple of the AES
    /// Key Wrap semiblock size (8 bytes) will be zero padded to fit", v3.0
    /// §2.14.3): builds `C_WrapKey`'s padding encryption, used instead of
    /// `cipher`; `C_UnwrapKey` then strips the zeros to the key's length.
    pub pad_wrap: Option<CipherBuilder>,
    /// Whether `C_WrapKey` may carry private keys (as PKCS#8) with this
    /// mechanism; FALSE for RSA-OAEP and RSA PKCS#1 v1.5, whose message is
    /// shorter than any private key, so they wrap secret keys only.
    pub wraps_private_keys: bool,
    /// The capabilities (`CKF_*` of `flags`) that are legacy algorithms
    /// (DES, MD5, RSA PKCS#1 v1.5 key transport): offered on `spec` tokens as
    /// SoftHSMv2 offers them, refused with `CKR_MECHANISM_INVALID` and left
    /// out of the mechanism's info on `hsm` tokens, as a FIPS-mode HSM does.
    /// `LEGACY` (every bit) makes the whole row legacy: `hsm` tokens do not
    /// list it. The module checks this in one place (`module/legacy.rs`).
    pub legacy: CK_FLAGS,
    /// `C_SignRecover`/`C_VerifyRecover` (`CKF_SIGN_RECOVER`/`CKF_VERIFY_RECOVER`).
    pub recover: Option<RecoverBuilder>,
    /// The message-based encryption functions of v3.0 (`CKF_MESSAGE_ENCRYPT`/
    /// `CKF_MESSAGE_DECRYPT`): the AEAD run once per message with that
    /// message's own parameter (`CK_GCM_MESSAGE_PARAMS`, ...).
    pub aead: Option<AeadBuilder>,
}

/// `Mechanism::legacy` of a row that is legacy as a whole.
pub const LEGACY: CK_FLAGS = !0;

impl Mechanism {
    /// `CK_MECHANISM_INFO` for `C_GetMechanismInfo`; `legacy_too` FALSE
    /// leaves out the legacy capabilities (an `hsm` token's answer).
    pub fn info(&self, legacy_too: bool) -> CK_MECHANISM_INFO {
        CK_MECHANISM_INFO {
            ulMinKeySize: self.min_key,
            ulMaxKeySize: self.max_key,
            flags: if legacy_too {
                self.flags
            } else {
                self.flags & !self.legacy
            },
        }
    }

    /// Whether the row is legacy as a whole (`hsm` tokens do not offer it).
    pub fn is_legacy(&self) -> bool {
        self.legacy == LEGACY
    }
}

/// Largest generic secret / HMAC key the token makes, in bytes.
pub const MAX_SECRET_LEN: usize = 512;

/// THE table: every family's rows (`table::FAMILIES`) in one list, in
/// `C_GetMechanismList` order, with the flags of the v3.0 message-based
/// functions added (`message_flags`).
pub static MECHANISMS: LazyLock<Vec<Mechanism>> = LazyLock::new(|| {
    table::FAMILIES
        .iter()
        .flat_map(|f| f.iter().copied())
        .map(|m| Mechanism {
            flags: m.flags | message_flags(&m),
            ..m
        })
        .collect()
});

/// The message-based functions run a row's own builders once per message:
/// `C_SignMessage` and `C_VerifyMessage` its sign builder (so every row that
/// signs signs messages, `CKF_MESSAGE_SIGN`/`CKF_MESSAGE_VERIFY`), and
/// `C_EncryptMessage`/`C_DecryptMessage` its `aead` column. Derived here, in
/// one place, so that no row can claim them without the builder or lack them
/// with it. `CKF_MULTI_MESSAGE`: `C_*MessageBegin`/`Next` work for all of them.
fn message_flags(m: &Mechanism) -> CK_FLAGS {
    let mut f = 0;
    if m.sign.is_some() && m.flags & CKF_SIGN != 0 {
        f |= CKF_MESSAGE_SIGN;
    }
    if m.sign.is_some() && m.flags & CKF_VERIFY != 0 {
        f |= CKF_MESSAGE_VERIFY;
    }
    if m.aead.is_some() {
        f |= CKF_MESSAGE_ENCRYPT | CKF_MESSAGE_DECRYPT;
    }
    if f != 0 {
        f |= CKF_MULTI_MESSAGE;
    }
    f
}

/// The row of a mechanism, or `CKR_MECHANISM_INVALID`.
pub fn lookup(ty: CK_MECHANISM_TYPE) -> Result<&'static Mechanism> {
    MECHANISMS
        .iter()
        .find(|m| m.ty == ty)
        .ok_or(Error::MechanismInvalid)
}

/// Builds a digest operation, checking the mechanism supports digesting and
/// takes no parameter.
pub fn digest_op(arg: &MechanismArg) -> Result<Box<dyn DigestOp>> {
    let m = lookup(arg.ty)?;
    let build = m.digest.ok_or(Error::MechanismInvalid)?;
    if arg.param != Param::None {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, m) in MECHANISMS.iter().enumerate() {
            assert!(m.flags & CKF_HW != 0, "{} lacks CKF_HW", m.name);
            assert!(m.min_key <= m.max_key, "{} key range", m.name);
            assert_eq!(
                m.digest.is_some(),
                m.flags & CKF_DIGEST != 0,
                "{} digest flag",
                m.name
            );
            assert!(
                MECHANISMS[i + 1..].iter().all(|o| o.ty != m.ty),
                "{} listed twice",
                m.name
            );
            assert_eq!(
                m.recover.is_some(),
                m.flags & (CKF_SIGN_RECOVER | CKF_VERIFY_RECOVER) != 0,
                "{} recover flags",
                m.name
            );
            assert_eq!(
                m.aead.is_some(),
                m.flags & CKF_MESSAGE_ENCRYPT != 0,
                "{} message flags",
                m.name
            );
        }
    }

    const SHAPES: [ParamShape; 19] = [
        ParamShape::None,
        ParamShape::Bytes,
        ParamShape::Ctr,
        ParamShape::Gcm,
        ParamShape::Oaep,
        ParamShape::Pss,
        ParamShape::MacGeneral,
        ParamShape::Ecdh,
        ParamShape::Hkdf,
        ParamShape::StringData,
        ParamShape::AesCbcData,
        ParamShape::KeyHandle,
        ParamShape::Extract,
        ParamShape::Kbkdf,
        ParamShape::KbkdfFeedback,
        ParamShape::Ccm,
        ParamShape::ChaChaPoly,
        ParamShape::ChaCha20,
        ParamShape::Eddsa,
    ];

    fn ul(v: CK_ULONG) -> Vec<u8> {
        v.to_ne_bytes().to_vec()
    }

    /// Parameters of a shape as `ffi` makes them, each valid for some row of
    /// the shape (an empty flat parameter arrives as `Param::None`).
    fn samples(shape: ParamShape, peer: &[u8]) -> Vec<Param> {
        use ParamShape as S;
        match shape {
            S::None => vec![Param::None],
            S::Bytes => vec![
                Param::None,
                Param::Raw(vec![7; 16]),
                Param::Raw(vec![0xA6; 8]),
                Param::Raw(vec![0xA6, 0x59, 0x59, 0xA6]),
            ],
            S::Ctr => vec![Param::Raw([ul(64), vec![0; 16]].concat())],
            S::Gcm => vec![Param::Gcm {
                iv: vec![1; 12],
                aad: b"aad".to_vec(),
                tag_bits: 128,
            }],
            S::Oaep => vec![Param::Oaep {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                source: CKZ_DATA_SPECIFIED,
                label: b"label".to_vec(),
            }],
            S::Pss => [
                (CKM_SHA_1, CKG_MGF1_SHA1),
                (CKM_SHA224, CKG_MGF1_SHA224),
                (CKM_SHA256, CKG_MGF1_SHA256),
                (CKM_SHA384, CKG_MGF1_SHA384),
                (CKM_SHA512, CKG_MGF1_SHA512),
                (CKM_SHA3_224, CKG_MGF1_SHA3_224),
                (CKM_SHA3_256, CKG_MGF1_SHA3_256),
                (CKM_SHA3_384, CKG_MGF1_SHA3_384),
                (CKM_SHA3_512, CKG_MGF1_SHA3_512),
            ]
            .map(|(h, mgf)| Param::Raw([ul(h), ul(mgf), ul(20)].concat()))
            .to_vec(),
            S::MacGeneral => vec![Param::Raw(ul(8))],
            S::Ecdh => vec![Param::Ecdh {
                kdf: CKD_SHA256_KDF,
                shared: b"shared".to_vec(),
                public: peer.to_vec(),
            }],
            S::Hkdf => vec![Param::Hkdf {
                extract: true,
                expand: true,
                prf: CKM_SHA256,
                salt_type: CKF_HKDF_SALT_DATA,
                salt: b"salt".to_vec(),
                salt_key: 0,
                info: b"info".to_vec(),
            }],
            S::StringData => vec![Param::Raw(vec![0x33; 32])],
            S::AesCbcData => vec![Param::AesCbcData {
                iv: [0x44; 16],
                data: vec![0x55; 32],
            }],
            S::KeyHandle => vec![Param::Raw(ul(2))],
            S::Extract => vec![Param::Raw(ul(3))],
            S::Kbkdf | S::KbkdfFeedback => {
                use kdf::kbkdf::{Format, PrfData};
                let format = Format {
                    little_endian: 0,
                    bits: 32,
                };
                let label = PrfData::Bytes(b"label".to_vec());
                // Counter mode, then the chained forms (feedback, pipeline).
                let forms = [
                    vec![PrfData::Iteration(Some(format)), label.clone()],
                    vec![PrfData::Iteration(None), PrfData::Counter(format), label],
                ];
                let iv = (shape == S::KbkdfFeedback).then(|| vec![9; 16]);
                forms
                    .into_iter()
                    .filter(|f| iv.is_none() || f[0] == PrfData::Iteration(None))
                    .flat_map(|data| {
                        [CKM_SHA256_HMAC, CKM_AES_CMAC].map(|prf| Param::Kbkdf {
                            prf,
                            data: data.clone(),
                            iv: iv.clone(),
                            extra: Templates::default(),
                        })
                    })
                    .collect::<Vec<_>>()
            }
            S::Ccm => vec![Param::Ccm {
                data_len: 16,
                nonce: vec![3; 13],
                aad: b"aad".to_vec(),
                mac_len: 16,
            }],
            S::ChaChaPoly => vec![Param::ChaChaPoly {
                nonce: vec![4; 12],
                aad: b"aad".to_vec(),
            }],
            S::ChaCha20 => vec![Param::ChaCha20 {
                counter: vec![0; 4],
                counter_bits: 32,
                nonce: vec![5; 12],
                nonce_bits: 96,
            }],
            S::Eddsa => vec![
                Param::None,
                Param::Eddsa {
                    prehash: true,
                    context: b"context".to_vec(),
                },
            ],
        }
    }

    fn key_object(
        handle: CK_OBJECT_HANDLE,
        class: CK_ULONG,
        kt: CK_KEY_TYPE,
        mut attrs: Attrs,
    ) -> Object {
        use ferrohsm_store::AttrValue;
        attrs.insert(CKA_CLASS, AttrValue::Ulong(class as _));
        attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(kt as _));
        Object {
            handle,
            store_id: handle,
            owner: None,
            attrs,
            cache: Default::default(),
        }
    }

    /// One key per key type the table takes, and an EC point to agree with.
    fn test_keys() -> (Vec<Object>, Vec<u8>) {
        use ferrohsm_store::AttrValue;
        let secret = |h, kt, value: &[u8]| {
            let mut a = Attrs::new();
            crate::object::policy::set_secret_value(&mut a, kt, value).unwrap();
            key_object(h, CKO_SECRET_KEY, kt, a)
        };
        let rsa = rsa::from_pkcs8(include_bytes!("../fuzzing/rsa2048.pk8")).unwrap();
        let mut t = Attrs::new();
        t.insert(CKA_EC_PARAMS, AttrValue::Bytes(ec::P256_PARAMS.to_vec()));
        let (public, mut private) = ec::generate(&t).unwrap();
        private.insert(CKA_EC_PARAMS, AttrValue::Bytes(ec::P256_PARAMS.to_vec()));
        let Some(AttrValue::Bytes(peer)) = public.get(&CKA_EC_POINT) else {
            panic!("CKA_EC_POINT is bytes")
        };
        let peer = peer.clone();
        let keys = vec![
            secret(1, CKK_AES, &[0x11; 16]),
            secret(2, CKK_GENERIC_SECRET, &[0x5a; 32]),
            secret(5, CKK_DES, &[0x01; 8]),
            secret(6, CKK_DES3, &[0x23; 24]),
            key_object(3, CKO_PRIVATE_KEY, CKK_RSA, rsa),
            key_object(4, CKO_PRIVATE_KEY, CKK_EC, private),
            secret(5, CKK_AES_XTS, &(0..32).collect::<Vec<u8>>()),
            secret(6, CKK_CHACHA20, &[0x66; 32]),
        ];
        (keys, peer)
    }

    /// Whether every builder of the row takes `p` (`false` as soon as one
    /// refuses it with `CKR_MECHANISM_PARAM_INVALID`; other refusals are
    /// about the key or the data, not the parameter's shape).
    fn takes(m: &Mechanism, p: &Param, keys: &[Object]) -> bool {
        let ok = |e: Option<Error>| e != Some(Error::MechanismParamInvalid);
        let key = keys
            .iter()
            .find(|k| {
                k.ulong(CKA_KEY_TYPE)
                    .is_some_and(|kt| m.key_types.contains(&kt))
            })
            .unwrap_or(&keys[0]);
        let mut all = true;
        if m.digest.is_some() {
            let arg = MechanismArg {
                ty: m.ty,
                param: p.clone(),
            };
            all &= ok(digest_op(&arg).err());
        }
        for build in [m.cipher, m.pad_wrap].into_iter().flatten() {
            for dir in [Dir::Encrypt, Dir::Decrypt] {
                all &= ok(build(p, key, dir).err());
            }
        }
        if let Some(build) = m.sign {
            for verify in [false, true] {
                all &= ok(build(p, key, verify).err());
            }
        }
        if let Some(d) = m.derive {
            let second = (d.second_key)(p).map(|_| &keys[0]);
            all &= ok((d.derive)(p, key, second, 16).err());
            all &= ok((d.default_len)(p, key, second).err());
        }
        all
    }

    #[test]
    fn every_row_takes_its_parameter_shape_and_refuses_others() {
        let (keys, peer) = test_keys();
        for m in MECHANISMS.iter() {
            // The module refuses any parameter for key (pair) generation.
            if m.digest.is_some() || m.keygen.is_some() || m.keypair.is_some() {
                assert_eq!(m.param, ParamShape::None, "{}", m.name);
            }
            if m.flags & (CKF_ENCRYPT | CKF_DECRYPT | CKF_SIGN | CKF_VERIFY | CKF_DERIVE) == 0 {
                continue;
            }
            let own = samples(m.param, &peer);
            assert!(
                own.iter().any(|p| takes(m, p, &keys)),
                "{} refuses every {:?} parameter",
                m.name,
                m.param
            );
            let kinds: Vec<_> = own.iter().map(std::mem::discriminant).collect();
            for shape in SHAPES.into_iter().filter(|&s| s != m.param) {
                for p in samples(shape, &peer) {
                    if p == Param::None || kinds.contains(&std::mem::discriminant(&p)) {
                        continue;
                    }
                    assert!(
                        !takes(m, &p, &keys),
                        "{} takes a {shape:?} parameter",
                        m.name
                    );
                }
            }
        }
    }

    #[test]
    fn only_key_wrap_pads_wrapped_keys() {
        for m in MECHANISMS.iter() {
            assert_eq!(m.pad_wrap.is_some(), m.ty == CKM_AES_KEY_WRAP, "{}", m.name);
            assert!(m.pad_wrap.is_none() || m.flags & CKF_WRAP != 0);
        }
    }

    #[test]
    fn digest_lookup_errors() {
        let arg = |ty, param| MechanismArg { ty, param };
        assert!(digest_op(&arg(CKM_SHA256, Param::None)).is_ok());
        assert_eq!(
            digest_op(&arg(CKM_SHA256, Param::Raw(vec![1]))).err(),
            Some(Error::MechanismParamInvalid)
        );
        assert_eq!(
            digest_op(&arg(0xdead_beef, Param::None)).err(),
            Some(Error::MechanismInvalid)
        );
    }
}
