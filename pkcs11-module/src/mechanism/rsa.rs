//! RSA keys (RustCrypto `rsa` 0.10): key pairs, import checks, PKCS#1 v1.5
//! and PSS signatures, PKCS#1 v1.5 and OAEP encryption, raw RSA (X.509).
//!
//! # PKCS#1 v1.5 decryption and padding oracles
//!
//! RUSTSEC-2023-0071 ("Marvin"): `rsa` before 0.10 leaked timing through
//! variable-time big-integer arithmetic, enough to recover plaintexts (and
//! forge signatures) over the network. 0.10 moved to `crypto-bigint`'s
//! constant-time `BoxedUint`; its authors still warn that PKCS#1 v1.5
//! decryption is a long-running source of Bleichenbacher-style oracles. A
//! PKCS#11 token adds one of its own: the return code of `C_Decrypt`.
//!
//! So `CKM_RSA_PKCS` decryption here never reports bad padding. It runs the
//! raw RSA operation (`rsa::hazmat`, blinded, with the CRT fault check), then
//! checks the padding in constant time (`subtle`) and, when the padding is
//! wrong, returns a synthetic message derived from the private exponent and
//! the ciphertext with `CKR_OK` — "implicit rejection", as OpenSSL 3.2+ and
//! draft-irtf-cfrg-rsa-guidance do (same idea, not byte-compatible output).
//! The caller cannot tell a wrong ciphertext from a right one by the answer,
//! its length or its timing; protocols (TLS 1.2 RSA key exchange) already
//! treat a wrong premaster secret that way. OAEP decryption reports
//! `CKR_ENCRYPTED_DATA_INVALID`, as the OAEP check happens after the
//! constant-time RSA operation and Manger's attack needs a distinguishable
//! integer-too-large failure, which this code never gives separately. For
//! the same reason the `rsa` crate ignores the leading octet of the OAEP
//! encoding instead of branching on it (draft-irtf-cfrg-rsa-guidance §7):
//! Wycheproof's "first byte is 1" vectors (tcId 23) decrypt, which
//! `tests/wycheproof.rs` counts and reports rather than fails.
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;
use getrandom::SysRng;
use hmac::{KeyInit, Mac};
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, Oaep, Pkcs1v15Encrypt, Pkcs1v15Sign, PrivateKey, PublicKey};
use subtle::{ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroizing;

use super::digest::{DigestOp, digest_of, for_mechanism};
use super::{CipherOp, Dir, OneShot, Param, SignOp, buffered, cached};
use crate::error::{Error, Result};
use crate::object::Object;
use crate::object::attrs::Attrs;

/// Smallest modulus generated or accepted, in bits.
pub const MIN_BITS: usize = 2048;
/// Largest modulus generated or accepted, in bits.
pub const MAX_BITS: usize = 4096;
/// Public exponent when the template gives none.
const DEFAULT_E: u64 = 65537;

/// A big-endian integer without leading zero bytes, as PKCS#11 stores them.
fn be(u: &BoxedUint) -> Vec<u8> {
    let b = u.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// A `BoxedUint` of at least `bits` precision from big-endian bytes.
fn uint(bytes: &[u8], bits: usize) -> Result<BoxedUint> {
    let first = bytes.iter().position(|&x| x != 0).unwrap_or(bytes.len());
    let b = &bytes[first..];
    let prec = (b.len() * 8).max(bits).max(64).div_ceil(64) * 64;
    BoxedUint::from_be_slice(b, prec as u32).map_err(|_| Error::AttributeValueInvalid)
}

fn attr<'a>(
    get: &impl Fn(CK_ATTRIBUTE_TYPE) -> Option<&'a [u8]>,
    ty: CK_ATTRIBUTE_TYPE,
) -> Result<&'a [u8]> {
    get(ty).ok_or(Error::TemplateIncomplete)
}

/// Builds and validates a private key from its PKCS#11 components: all of
/// them, or n, e and d only (the primes are then recovered, SP 800-56B C.2).
fn private_from<'a>(get: impl Fn(CK_ATTRIBUTE_TYPE) -> Option<&'a [u8]>) -> Result<PrivateKey> {
    let n = attr(&get, CKA_MODULUS)?;
    modulus_in_range(n)?;
    let nbits = n.len() * 8;
    let n_u = uint(n, 0)?;
    let e_bytes = attr(&get, CKA_PUBLIC_EXPONENT)?;
    exponent_plausible(e_bytes)?;
    let e = uint(e_bytes, 0)?;
    let d_bytes = attr(&get, CKA_PRIVATE_EXPONENT)?;
    // 0 < d < n: the prime recovery of the `rsa` crate assumes it (and
    // panics on some values outside it). Compared as big-endian magnitudes.
    let trim = |v: &'a [u8]| &v[v.iter().position(|&x| x != 0).unwrap_or(v.len())..];
    let (dm, nm) = (trim(d_bytes), trim(n));
    if dm.is_empty() || (dm.len(), dm) >= (nm.len(), nm) {
        return Err(Error::AttributeValueInvalid);
    }
    let d = uint(d_bytes, nbits)?;
    let primes = match (get(CKA_PRIME_1), get(CKA_PRIME_2)) {
        (Some(p), Some(q)) => {
            if p.len() > n.len() || q.len() > n.len() {
                return Err(Error::AttributeValueInvalid);
            }
            vec![uint(p, 0)?, uint(q, 0)?]
        }
        (None, None) => Vec::new(),
        _ => return Err(Error::TemplateIncomplete),
    };
    // Belt and braces: a panic inside the crate's arithmetic on a hostile key
    // is a bad key, not CKR_GENERAL_ERROR.
    let key = std::panic::catch_unwind(|| PrivateKey::from_components(n_u, e, d, primes))
        .map_err(|_| Error::AttributeValueInvalid)?
        .map_err(|_| Error::AttributeValueInvalid)?;
    let bits = key.n().bit_width() as usize;
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(Error::KeySizeRange);
    }
    Ok(key)
}

/// No RSA modulus outside these sizes is a key anyone uses: refused as a bad
/// value before any arithmetic runs on it (a caller's 1 MB "modulus" must
/// cost nothing). Sizes inside it but outside `MIN_BITS..=MAX_BITS` are
/// real keys of a size the token does not take (`CKR_KEY_SIZE_RANGE`, after
/// parsing).
const PLAUSIBLE_BITS: std::ops::RangeInclusive<usize> = 512..=16384;

/// Refuses a modulus that is no plausible RSA key before any arithmetic.
fn modulus_in_range(n: &[u8]) -> Result<()> {
    let first = n.iter().position(|&x| x != 0).unwrap_or(n.len());
    let bits = (n.len() - first) * 8 - n.get(first).map_or(0, |b| b.leading_zeros() as usize);
    if PLAUSIBLE_BITS.contains(&bits) {
        Ok(())
    } else {
        Err(Error::AttributeValueInvalid)
    }
}

/// A public exponent the backend can use at all (at most 2^33 - 1, so at
/// most 8 significant bytes), checked before it sizes any arithmetic.
fn exponent_plausible(e: &[u8]) -> Result<()> {
    let first = e.iter().position(|&x| x != 0).unwrap_or(e.len());
    if e.len() - first > 8 {
        Err(Error::AttributeValueInvalid)
    } else {
        Ok(())
    }
}

fn public_from(n: &[u8], e: &[u8]) -> Result<PublicKey> {
    modulus_in_range(n)?;
    exponent_plausible(e)?;
    let key = PublicKey::new(uint(n, 0)?, uint(e, 0)?).map_err(|_| Error::AttributeValueInvalid)?;
    let bits = key.n().bit_width() as usize;
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(Error::KeySizeRange);
    }
    Ok(key)
}

/// The parsed private key of an object, built once and cached with it.
pub fn private_key(key: &Object) -> Result<Arc<PrivateKey>> {
    cached(key, || private_from(|ty| key.bytes(ty)))
}

/// The parsed public key of a public-key object, cached with it.
pub fn public_key(key: &Object) -> Result<Arc<PublicKey>> {
    cached(key, || {
        let n = key.bytes(CKA_MODULUS).ok_or(Error::KeyTypeInconsistent)?;
        let e = key
            .bytes(CKA_PUBLIC_EXPONENT)
            .ok_or(Error::KeyTypeInconsistent)?;
        public_from(n, e)
    })
}

fn spki(key: &PublicKey) -> Result<Vec<u8>> {
    Ok(key
        .to_public_key_der()
        .map_err(|_| Error::GeneralError)?
        .as_bytes()
        .to_vec())
}

fn bytes_of(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    match attrs.get(&ty) {
        Some(AttrValue::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// The private components PKCS#11 lists (§6.1.3), from a parsed key.
fn private_attrs(key: &PrivateKey) -> Result<Attrs> {
    let mut a = Attrs::new();
    let mut put = |ty, v: Vec<u8>| {
        a.insert(ty, AttrValue::Bytes(v));
    };
    put(CKA_MODULUS, be(key.n()));
    put(CKA_PUBLIC_EXPONENT, be(key.e()));
    put(CKA_PRIVATE_EXPONENT, be(key.d()));
    let primes = key.primes();
    if primes.len() == 2 {
        put(CKA_PRIME_1, be(&primes[0]));
        put(CKA_PRIME_2, be(&primes[1]));
    }
    if let (Some(dp), Some(dq), Some(qinv)) = (key.dp(), key.dq(), key.crt_coefficient()) {
        put(CKA_EXPONENT_1, be(dp));
        put(CKA_EXPONENT_2, be(dq));
        put(CKA_COEFFICIENT, be(&qinv));
    }
    put(CKA_PUBLIC_KEY_INFO, spki(key.as_public_key())?);
    Ok(a)
}

/// A fresh key pair of `CKA_MODULUS_BITS` (2048 to 4096) and
/// `CKA_PUBLIC_EXPONENT` (default 65537) from the public template: the
/// attributes the token adds to the public and the private key. The pair is
/// checked by a signature before it is returned.
pub fn generate(public: &Attrs) -> Result<(Attrs, Attrs)> {
    let bits = match public.get(&CKA_MODULUS_BITS) {
        Some(AttrValue::Ulong(b)) => *b as usize,
        _ => return Err(Error::TemplateIncomplete),
    };
    if !(MIN_BITS..=MAX_BITS).contains(&bits) {
        return Err(Error::KeySizeRange);
    }
    let e = match bytes_of(public, CKA_PUBLIC_EXPONENT) {
        Some(e) if !e.is_empty() => generation_exponent(e)?,
        _ => BoxedUint::from(DEFAULT_E),
    };
    let key =
        PrivateKey::new_with_exp(&mut SysRng, bits, e).map_err(|_| Error::TemplateInconsistent)?;
    // Pairwise consistency (FIPS 140-3 IG 10.3.A): sign and verify once.
    let h = digest_of(CKM_SHA256, b"ferrohsm pairwise check").ok_or(Error::GeneralError)?;
    let sig = key
        .sign(pkcs1(Some(CKM_SHA256))?, &h)
        .map_err(|_| Error::FunctionFailed)?;
    key.as_public_key()
        .verify(pkcs1(Some(CKM_SHA256))?, &h, &sig)
        .map_err(|_| Error::FunctionFailed)?;
    let private = private_attrs(&key)?;
    let mut public = Attrs::new();
    for ty in [CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PUBLIC_KEY_INFO] {
        if let Some(v) = private.get(&ty) {
            public.insert(ty, v.clone());
        }
    }
    public.insert(CKA_MODULUS_BITS, AttrValue::Ulong(bits as u64));
    Ok((public, private))
}

/// The public exponent of a key to generate, refused before any prime search
/// unless it is odd, at least 3 and at most the backend's largest exponent
/// (2^33 - 1). An even exponent has no inverse modulo (p-1)(q-1) for any
/// primes, so the search for primes coprime to it would never end.
fn generation_exponent(e: &[u8]) -> Result<BoxedUint> {
    let first = e.iter().position(|&x| x != 0).unwrap_or(e.len());
    let e = &e[first..];
    if e.is_empty() || e.len() > 8 {
        return Err(Error::AttributeValueInvalid);
    }
    let mut word = [0u8; 8];
    word[8 - e.len()..].copy_from_slice(e);
    let v = u64::from_be_bytes(word);
    if v < 3 || v % 2 == 0 || v > PublicKey::MAX_PUB_EXPONENT {
        return Err(Error::AttributeValueInvalid);
    }
    Ok(BoxedUint::from(v))
}

/// Checks an imported private key (all components consistent, or n/e/d
/// from which the primes are recovered) and records its CRT components and
/// `CKA_PUBLIC_KEY_INFO`.
pub fn check_private_import(attrs: &mut Attrs) -> Result<()> {
    let key = private_from(|ty| bytes_of(attrs, ty))?;
    let derived = private_attrs(&key)?;
    for ty in [CKA_EXPONENT_1, CKA_EXPONENT_2, CKA_COEFFICIENT] {
        let given = bytes_of(attrs, ty).map(|v| {
            let first = v.iter().position(|&x| x != 0).unwrap_or(v.len());
            v[first..].to_vec()
        });
        match (given, derived.get(&ty)) {
            (Some(g), Some(AttrValue::Bytes(d))) if g != *d => {
                return Err(Error::AttributeValueInvalid);
            }
            _ => {}
        }
    }
    for (ty, v) in derived {
        attrs.insert(ty, v);
    }
    Ok(())
}

/// Checks an imported public key and records `CKA_PUBLIC_KEY_INFO`.
pub fn check_public_import(attrs: &mut Attrs) -> Result<()> {
    let n = bytes_of(attrs, CKA_MODULUS).ok_or(Error::TemplateIncomplete)?;
    let e = bytes_of(attrs, CKA_PUBLIC_EXPONENT).ok_or(Error::TemplateIncomplete)?;
    let key = public_from(n, e)?;
    attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(spki(&key)?));
    Ok(())
}

/// A private key object as PKCS#8 `PrivateKeyInfo` DER, for `C_WrapKey`.
pub fn to_pkcs8(key: &Object) -> Result<Zeroizing<Vec<u8>>> {
    use rsa::pkcs8::EncodePrivateKey;
    let der = private_key(key)?
        .to_pkcs8_der()
        .map_err(|_| Error::KeyNotWrappable)?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}

/// The key attributes of a PKCS#8 RSA private key, for `C_UnwrapKey`.
pub fn from_pkcs8(der: &[u8]) -> Result<Attrs> {
    use rsa::pkcs8::DecodePrivateKey;
    let key = PrivateKey::from_pkcs8_der(der).map_err(|_| Error::WrappedKeyInvalid)?;
    if !(MIN_BITS..=MAX_BITS).contains(&(key.n().bit_width() as usize)) {
        return Err(Error::WrappedKeyInvalid);
    }
    private_attrs(&key)
}

/// The size of a key object's modulus in bytes.
fn modulus_len(key: &Object) -> Result<usize> {
    let n = key.bytes(CKA_MODULUS).ok_or(Error::KeyTypeInconsistent)?;
    let first = n.iter().position(|&x| x != 0).unwrap_or(n.len());
    Ok(n.len() - first)
}

// ---- signatures -------------------------------------------------------------------------

/// DigestInfo prefixes of RFC 8017 §9.2, note 1.
fn digest_info_prefix(hash: CK_MECHANISM_TYPE) -> Option<&'static [u8]> {
    Some(match hash {
        CKM_SHA_1 => &[
            0x30, 0x21, 0x30, 0x09, 0x06, 0x05, 0x2b, 0x0e, 0x03, 0x02, 0x1a, 0x05, 0x00, 0x04,
            0x14,
        ],
        CKM_SHA224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x04, 0x05, 0x00, 0x04, 0x1c,
        ],
        CKM_SHA256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x01, 0x05, 0x00, 0x04, 0x20,
        ],
        CKM_SHA384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x02, 0x05, 0x00, 0x04, 0x30,
        ],
        CKM_SHA512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x03, 0x05, 0x00, 0x04, 0x40,
        ],
        _ => return None,
    })
}

/// PKCS#1 v1.5 signature padding: with the DigestInfo of `hash`, or none
/// (`CKM_RSA_PKCS`, where the caller supplies the DigestInfo).
fn pkcs1(hash: Option<CK_MECHANISM_TYPE>) -> Result<Pkcs1v15Sign> {
    Ok(match hash {
        None => Pkcs1v15Sign::new_unprefixed(),
        Some(h) => Pkcs1v15Sign {
            hash_len: Some(
                for_mechanism(h)
                    .ok_or(Error::MechanismInvalid)?
                    .output_len(),
            ),
            prefix: digest_info_prefix(h).ok_or(Error::MechanismInvalid)?.into(),
        },
    })
}

/// Runs `$body` with `$d` bound to the digest type of hash mechanism `$h`.
macro_rules! with_digest {
    ($h:expr, $d:ident => $body:expr) => {
        match $h {
            CKM_SHA_1 => {
                type $d = sha1::Sha1;
                $body
            }
            CKM_SHA224 => {
                type $d = sha2::Sha224;
                $body
            }
            CKM_SHA256 => {
                type $d = sha2::Sha256;
                $body
            }
            CKM_SHA384 => {
                type $d = sha2::Sha384;
                $body
            }
            CKM_SHA512 => {
                type $d = sha2::Sha512;
                $body
            }
            _ => Err(Error::MechanismParamInvalid),
        }
    };
}

/// MGF1 (RFC 8017 B.2.1) with a hash mechanism.
fn mgf1(hash: CK_MECHANISM_TYPE, seed: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
    let mut counter: u32 = 0;
    while out.len() < len {
        let mut d = for_mechanism(hash).ok_or(Error::MechanismParamInvalid)?;
        d.update(seed);
        d.update(&counter.to_be_bytes());
        let mut block = vec![0u8; d.output_len()];
        d.finish(&mut block);
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

/// `H(0^64 || mHash || salt)`, the PSS message representative's hash.
fn pss_h(hash: CK_MECHANISM_TYPE, mhash: &[u8], salt: &[u8]) -> Result<Vec<u8>> {
    let mut d = for_mechanism(hash).ok_or(Error::MechanismParamInvalid)?;
    d.update(&[0u8; 8]);
    d.update(mhash);
    d.update(salt);
    let mut h = vec![0u8; d.output_len()];
    d.finish(&mut h);
    Ok(h)
}

/// EMSA-PSS-ENCODE (RFC 8017 §9.1.1) with any message and MGF1 hashes (the
/// `rsa` crate ties MGF1 to the message hash; PKCS#11 does not).
fn pss_encode(
    mhash: &[u8],
    em_bits: usize,
    salt: &[u8],
    hash: CK_MECHANISM_TYPE,
    mgf: CK_MECHANISM_TYPE,
) -> Result<Vec<u8>> {
    let em_len = em_bits.div_ceil(8);
    let h_len = mhash.len();
    if em_len < h_len + salt.len() + 2 {
        return Err(Error::MechanismParamInvalid);
    }
    let h = pss_h(hash, mhash, salt)?;
    let db_len = em_len - h_len - 1;
    let mut db = Zeroizing::new(vec![0u8; db_len]);
    db[db_len - salt.len() - 1] = 0x01;
    db[db_len - salt.len()..].copy_from_slice(salt);
    let mask = mgf1(mgf, &h, db_len)?;
    for (b, m) in db.iter_mut().zip(mask.iter()) {
        *b ^= m;
    }
    db[0] &= 0xff >> (8 * em_len - em_bits);
    let mut em = db.to_vec();
    em.extend_from_slice(&h);
    em.push(0xbc);
    Ok(em)
}

/// EMSA-PSS-VERIFY (RFC 8017 §9.1.2); `m` is the big-endian integer s^e.
fn pss_verify(
    mhash: &[u8],
    m: &[u8],
    em_bits: usize,
    salt_len: usize,
    hash: CK_MECHANISM_TYPE,
    mgf: CK_MECHANISM_TYPE,
) -> bool {
    let em_len = em_bits.div_ceil(8);
    let h_len = mhash.len();
    // The integer fits in em_len bytes, or the signature is invalid.
    let first = m.len().saturating_sub(em_len);
    if m[..first].iter().any(|&b| b != 0) || em_len < h_len + salt_len + 2 {
        return false;
    }
    let em = left_pad(&m[first..], em_len);
    if em[em_len - 1] != 0xbc {
        return false;
    }
    let db_len = em_len - h_len - 1;
    let (masked, h) = (&em[..db_len], &em[db_len..em_len - 1]);
    if masked[0] & !(0xffu8 >> (8 * em_len - em_bits)) != 0 {
        return false;
    }
    let Ok(mask) = mgf1(mgf, h, db_len) else {
        return false;
    };
    let mut db: Vec<u8> = masked.iter().zip(mask.iter()).map(|(a, b)| a ^ b).collect();
    db[0] &= 0xff >> (8 * em_len - em_bits);
    let ps_len = db_len - salt_len - 1;
    if db[..ps_len].iter().any(|&b| b != 0) || db[ps_len] != 0x01 {
        return false;
    }
    pss_h(hash, mhash, &db[ps_len + 1..]).is_ok_and(|h2| h2 == h)
}

/// `CKG_MGF1_*` → the hash mechanism it uses.
fn mgf_hash(mgf: CK_ULONG) -> Result<CK_MECHANISM_TYPE> {
    Ok(match mgf {
        CKG_MGF1_SHA1 => CKM_SHA_1,
        CKG_MGF1_SHA224 => CKM_SHA224,
        CKG_MGF1_SHA256 => CKM_SHA256,
        CKG_MGF1_SHA384 => CKM_SHA384,
        CKG_MGF1_SHA512 => CKM_SHA512,
        _ => return Err(Error::MechanismParamInvalid),
    })
}

#[derive(Clone, Copy)]
enum Scheme {
    /// PKCS#1 v1.5; `None`: the input is a DigestInfo (`CKM_RSA_PKCS`).
    Pkcs1(Option<CK_MECHANISM_TYPE>),
    /// PSS with this message hash, MGF1 hash and salt length.
    Pss {
        hash: CK_MECHANISM_TYPE,
        mgf: CK_MECHANISM_TYPE,
        salt: usize,
    },
    /// Raw RSA (`CKM_RSA_X_509`).
    Raw,
}

enum RsaKey {
    Sign(Arc<PrivateKey>),
    Verify(Arc<PublicKey>),
}

struct RsaSign {
    key: RsaKey,
    k: usize,
    scheme: Scheme,
    /// The running hash of the hash-and-sign mechanisms.
    hasher: Option<Box<dyn DigestOp>>,
    /// The input of the single-part mechanisms.
    data: Zeroizing<Vec<u8>>,
}

impl RsaSign {
    /// The hashed (or given) value the scheme signs.
    fn input(&mut self) -> Result<Zeroizing<Vec<u8>>> {
        let v = match self.hasher.as_mut() {
            Some(d) => {
                let mut out = vec![0; d.output_len()];
                d.finish(&mut out);
                out
            }
            None => self.data.to_vec(),
        };
        let ok = match self.scheme {
            Scheme::Pkcs1(None) => v.len() + 11 <= self.k,
            Scheme::Pss { hash, .. } => {
                Some(v.len()) == for_mechanism(hash).map(|d| d.output_len())
            }
            Scheme::Raw => v.len() <= self.k,
            Scheme::Pkcs1(Some(_)) => true,
        };
        if ok {
            Ok(Zeroizing::new(v))
        } else {
            Err(Error::DataLenRange)
        }
    }

    fn raw_integer(&self, v: &[u8], n: &BoxedUint) -> Result<BoxedUint> {
        let m = BoxedUint::from_be_slice(v, n.bits_precision()).map_err(|_| Error::DataLenRange)?;
        if bool::from(m.ct_lt(n)) {
            Ok(m)
        } else {
            Err(Error::DataLenRange)
        }
    }
}

fn left_pad(v: &[u8], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; k.saturating_sub(v.len())];
    out.extend_from_slice(&v[v.len().saturating_sub(k)..]);
    out
}

impl SignOp for RsaSign {
    fn sig_len(&self) -> usize {
        self.k
    }

    fn multi_part(&self) -> bool {
        self.hasher.is_some()
    }

    fn update(&mut self, data: &[u8]) -> Result<()> {
        match self.hasher.as_mut() {
            Some(d) => d.update(data),
            None => {
                if self.data.len() + data.len() > self.k {
                    return Err(Error::DataLenRange);
                }
                self.data.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn sign(&mut self, out: &mut [u8]) -> Result<()> {
        let input = self.input()?;
        let RsaKey::Sign(key) = &self.key else {
            return Err(Error::OperationNotInitialized);
        };
        // Private-key arithmetic (blinding, CRT) leaves temporaries on the heap
        // and the stack: run in the key region, stack scrubbed after.
        let sig: Vec<u8> = crate::secret::scope(|| -> Result<Vec<u8>> {
            Ok(match self.scheme {
                Scheme::Pkcs1(h) => key
                    .sign(pkcs1(h)?, &input)
                    .map_err(|_| Error::FunctionFailed)?,
                Scheme::Pss { hash, mgf, salt } => {
                    let mut s = Zeroizing::new(vec![0u8; salt]);
                    getrandom::fill(&mut s).map_err(|_| Error::DeviceError)?;
                    let bits = key.n().bit_width() as usize;
                    let em = pss_encode(&input, bits - 1, &s, hash, mgf)?;
                    let m = self.raw_integer(&left_pad(&em, self.k), key.n())?;
                    let s = rsa::hazmat::rsa_decrypt_and_check(&**key, Some(&mut SysRng), &m)
                        .map_err(|_| Error::FunctionFailed)?;
                    s.to_be_bytes().to_vec()
                }
                Scheme::Raw => {
                    let m = self.raw_integer(&input, key.n())?;
                    let s = rsa::hazmat::rsa_decrypt_and_check(&**key, Some(&mut SysRng), &m)
                        .map_err(|_| Error::FunctionFailed)?;
                    s.to_be_bytes().to_vec()
                }
            })
        })?;
        out.copy_from_slice(&left_pad(&sig, self.k));
        Ok(())
    }

    fn verify(&mut self, signature: &[u8]) -> Result<()> {
        if signature.len() != self.k {
            return Err(Error::SignatureLenRange);
        }
        let input = self.input()?;
        let RsaKey::Verify(key) = &self.key else {
            return Err(Error::OperationNotInitialized);
        };
        let ok = match self.scheme {
            Scheme::Pkcs1(h) => key.verify(pkcs1(h)?, &input, signature).is_ok(),
            Scheme::Pss { hash, mgf, salt } => {
                let s = BoxedUint::from_be_slice(signature, key.n().bits_precision())
                    .map_err(|_| Error::SignatureInvalid)?;
                if !bool::from(s.ct_lt(key.n())) {
                    return Err(Error::SignatureInvalid);
                }
                let m =
                    rsa::hazmat::rsa_encrypt(&**key, &s).map_err(|_| Error::SignatureInvalid)?;
                let bits = key.n().bit_width() as usize;
                pss_verify(&input, &m.to_be_bytes(), bits - 1, salt, hash, mgf)
            }
            Scheme::Raw => {
                let s = BoxedUint::from_be_slice(signature, key.n().bits_precision())
                    .map_err(|_| Error::SignatureInvalid)?;
                if !bool::from(s.ct_lt(key.n())) {
                    return Err(Error::SignatureInvalid);
                }
                let m =
                    rsa::hazmat::rsa_encrypt(&**key, &s).map_err(|_| Error::SignatureInvalid)?;
                bool::from(left_pad(&m.to_be_bytes(), self.k).ct_eq(&left_pad(&input, self.k)))
            }
        };
        if ok {
            Ok(())
        } else {
            Err(Error::SignatureInvalid)
        }
    }
}

/// `CK_RSA_PKCS_PSS_PARAMS` (hashAlg, mgf, sLen), checked against the hash
/// of the mechanism when it has one.
fn pss_params(
    param: &Param,
    mech_hash: Option<CK_MECHANISM_TYPE>,
) -> Result<(CK_MECHANISM_TYPE, CK_MECHANISM_TYPE, usize)> {
    const UL: usize = std::mem::size_of::<CK_ULONG>();
    let Param::Raw(p) = param else {
        return Err(Error::MechanismParamInvalid);
    };
    if p.len() != 3 * UL {
        return Err(Error::MechanismParamInvalid);
    }
    let word = |i: usize| {
        let mut b = [0u8; UL];
        b.copy_from_slice(&p[i * UL..(i + 1) * UL]);
        CK_ULONG::from_ne_bytes(b)
    };
    let (hash, mgf, salt) = (word(0), word(1), word(2) as usize);
    for_mechanism(hash).ok_or(Error::MechanismParamInvalid)?;
    let mgf = mgf_hash(mgf)?;
    if mech_hash.is_some_and(|h| h != hash) {
        return Err(Error::MechanismParamInvalid);
    }
    Ok((hash, mgf, salt))
}

/// Whether a hash-and-sign mechanism is a PSS one (its parameter is
/// `CK_RSA_PKCS_PSS_PARAMS`, mandatory: PKCS#11 v3.0 §2.1.14).
fn is_hashed_pss(mech: CK_MECHANISM_TYPE) -> bool {
    matches!(
        mech,
        CKM_SHA1_RSA_PKCS_PSS
            | CKM_SHA224_RSA_PKCS_PSS
            | CKM_SHA256_RSA_PKCS_PSS
            | CKM_SHA384_RSA_PKCS_PSS
            | CKM_SHA512_RSA_PKCS_PSS
    )
}

/// RSA sign (private key) or verify (public key). `mech` is the mechanism;
/// `hash` the digest of the hash-and-sign mechanisms.
pub fn sign_op(
    param: &Param,
    key: &Object,
    verify: bool,
    mech: CK_MECHANISM_TYPE,
    hash: Option<CK_MECHANISM_TYPE>,
) -> Result<Box<dyn SignOp>> {
    let scheme = match mech {
        CKM_RSA_PKCS_PSS => {
            let (hash, mgf, salt) = pss_params(param, None)?;
            Scheme::Pss { hash, mgf, salt }
        }
        CKM_RSA_X_509 | CKM_RSA_PKCS if *param != Param::None => {
            return Err(Error::MechanismParamInvalid);
        }
        CKM_RSA_X_509 => Scheme::Raw,
        CKM_RSA_PKCS => Scheme::Pkcs1(None),
        _ => match (hash, is_hashed_pss(mech)) {
            (Some(h), true) => {
                let (hash, mgf, salt) = pss_params(param, Some(h))?;
                Scheme::Pss { hash, mgf, salt }
            }
            (Some(h), false) if *param == Param::None => Scheme::Pkcs1(Some(h)),
            _ => return Err(Error::MechanismParamInvalid),
        },
    };
    let k = modulus_len(key)?;
    let key = if verify {
        RsaKey::Verify(public_key(key)?)
    } else {
        RsaKey::Sign(private_key(key)?)
    };
    if let Scheme::Pss { hash, salt, .. } = scheme {
        // RFC 8017 §9.1.1: emLen >= hLen + sLen + 2, emLen = ceil((modBits - 1) / 8).
        // Checked here, before sLen sizes anything: a caller's sLen of 2^40
        // must be a parameter error at C_SignInit, not an allocation.
        let bits = match &key {
            RsaKey::Verify(k) => k.n().bit_width(),
            RsaKey::Sign(k) => k.n().bit_width(),
        } as usize;
        let h_len = for_mechanism(hash)
            .ok_or(Error::MechanismParamInvalid)?
            .output_len();
        let em_len = (bits - 1).div_ceil(8);
        if salt > em_len.saturating_sub(h_len + 2) {
            return Err(Error::MechanismParamInvalid);
        }
    }
    let hasher = match hash {
        Some(h) => Some(for_mechanism(h).ok_or(Error::MechanismInvalid)?),
        None => None,
    };
    Ok(Box::new(RsaSign {
        key,
        k,
        scheme,
        hasher,
        data: Zeroizing::new(Vec::new()),
    }))
}

// ---- encryption -------------------------------------------------------------------------

enum Padding {
    Pkcs1,
    Oaep {
        hash: CK_MECHANISM_TYPE,
        mgf: CK_MECHANISM_TYPE,
        label: Vec<u8>,
    },
    Raw,
}

struct RsaCipher {
    key: RsaKey,
    k: usize,
    padding: Padding,
}

/// Runs OAEP encryption or decryption with `hash` for the label hash and
/// `mgf` for MGF1 (any combination of SHA-1 and SHA-2).
fn oaep_run(
    key: &RsaKey,
    hash: CK_MECHANISM_TYPE,
    mgf: CK_MECHANISM_TYPE,
    label: &[u8],
    input: &[u8],
) -> Result<Vec<u8>> {
    with_digest!(hash, D => {
        with_digest!(mgf, M => {
            let padding = Oaep::<D, M>::new_with_mgf_hash_and_label(label.to_vec());
            match key {
                RsaKey::Verify(k) => k
                    .encrypt(&mut SysRng, padding, input)
                    .map_err(|_| Error::DataLenRange),
                RsaKey::Sign(k) => k
                    .decrypt_blinded(&mut SysRng, padding, input)
                    .map_err(|_| Error::EncryptedDataInvalid),
            }
        })
    })
}

/// Implicit rejection for PKCS#1 v1.5 decryption (see the module docs):
/// returns the message of a well-formed `em`, else a synthetic one, choosing
/// in constant time.
fn pkcs1_unpad_implicit(key: &PrivateKey, ciphertext: &[u8], em: &[u8]) -> Zeroizing<Vec<u8>> {
    let k = em.len();
    // Key-derivation key: HMAC-SHA256 keyed with the private exponent.
    let d = Zeroizing::new(left_pad(&key.d().to_be_bytes(), k));
    let prf = |label: &[u8], len: usize| {
        let mut out = Zeroizing::new(Vec::with_capacity(len + 32));
        let mut i: u16 = 0;
        while out.len() < len {
            let mut m = <hmac::Hmac<sha2::Sha256> as KeyInit>::new_from_slice(&d)
                .expect("HMAC takes any key length");
            m.update(&i.to_be_bytes());
            m.update(label);
            m.update(ciphertext);
            out.extend_from_slice(&m.finalize().into_bytes());
            i += 1;
        }
        out.truncate(len);
        out
    };
    let synthetic = prf(b"message", k);
    let len_bytes = prf(b"length", 2);
    // Synthetic length in [0, k - 11), derived from the key and ciphertext.
    let max = (k - 11) as u16;
    let syn_len = u16::from_be_bytes([len_bytes[0], len_bytes[1]]) % max;

    // Parse em = 0x00 || 0x02 || PS (>= 8 non-zero) || 0x00 || M, constant time.
    let mut good = em[0].ct_eq(&0) & em[1].ct_eq(&2);
    let mut found = subtle::Choice::from(0);
    let mut zero_at: u16 = 0;
    for (i, &b) in em.iter().enumerate().skip(2) {
        let is_zero = b.ct_eq(&0);
        let first = is_zero & !found;
        zero_at = u16::conditional_select(&zero_at, &(i as u16), first);
        found |= is_zero;
    }
    good &= found;
    // At least 8 bytes of padding string: the separator is at index >= 10.
    good &= !zero_at.ct_lt(&10);
    let msg_len = (k as u16).wrapping_sub(zero_at).wrapping_sub(1);
    let out_len = u16::conditional_select(&syn_len, &msg_len, good) as usize;
    // Select byte by byte from the tail of em or of the synthetic message.
    let mut out = Zeroizing::new(vec![0u8; k]);
    for i in 0..k {
        out[i] = u8::conditional_select(&synthetic[i], &em[i], good);
    }
    Zeroizing::new(out[k - out_len..].to_vec())
}

impl OneShot for RsaCipher {
    fn out_len(&self, _len: usize) -> usize {
        self.k
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        let result: Zeroizing<Vec<u8>> = match (&self.key, &self.padding) {
            (RsaKey::Verify(k), Padding::Pkcs1) => {
                if input.len() + 11 > self.k {
                    return Err(Error::DataLenRange);
                }
                Zeroizing::new(
                    k.encrypt(&mut SysRng, Pkcs1v15Encrypt, input)
                        .map_err(|_| Error::DataLenRange)?,
                )
            }
            (RsaKey::Verify(k), Padding::Raw) => {
                if input.len() > self.k {
                    return Err(Error::DataLenRange);
                }
                let m = BoxedUint::from_be_slice(input, k.n().bits_precision())
                    .map_err(|_| Error::DataLenRange)?;
                if !bool::from(m.ct_lt(k.n())) {
                    return Err(Error::DataLenRange);
                }
                let c = rsa::hazmat::rsa_encrypt(&**k, &m).map_err(|_| Error::DataLenRange)?;
                Zeroizing::new(left_pad(&c.to_be_bytes(), self.k))
            }
            (key @ RsaKey::Verify(_), Padding::Oaep { hash, mgf, label }) => {
                let h = for_mechanism(*hash).ok_or(Error::MechanismParamInvalid)?;
                if input.len() + 2 * h.output_len() + 2 > self.k {
                    return Err(Error::DataLenRange);
                }
                Zeroizing::new(oaep_run(key, *hash, *mgf, label, input)?)
            }
            (RsaKey::Sign(k), padding) => {
                // Private-key arithmetic: in the key region, stack scrubbed after.
                crate::secret::scope(|| -> Result<Zeroizing<Vec<u8>>> {
                    if input.len() != self.k {
                        return Err(Error::EncryptedDataLenRange);
                    }
                    Ok(match padding {
                        Padding::Oaep { hash, mgf, label } => {
                            Zeroizing::new(oaep_run(&self.key, *hash, *mgf, label, input)?)
                        }
                        Padding::Pkcs1 | Padding::Raw => {
                            let c = BoxedUint::from_be_slice(input, k.n().bits_precision())
                                .map_err(|_| Error::EncryptedDataInvalid)?;
                            if !bool::from(c.ct_lt(k.n())) {
                                return Err(Error::EncryptedDataInvalid);
                            }
                            let m = rsa::hazmat::rsa_decrypt_and_check(&**k, Some(&mut SysRng), &c)
                                .map_err(|_| Error::EncryptedDataInvalid)?;
                            let em = Zeroizing::new(left_pad(&m.to_be_bytes(), self.k));
                            match padding {
                                Padding::Raw => em,
                                _ => pkcs1_unpad_implicit(k, input, &em),
                            }
                        }
                    })
                })?
            }
        };
        let n = result.len();
        if out.len() < n {
            return Err(Error::BufferTooSmall);
        }
        out[..n].copy_from_slice(&result);
        Ok(n)
    }
}

/// RSA encryption (public key) or decryption (private key) with
/// `CKM_RSA_PKCS`, `CKM_RSA_PKCS_OAEP` or `CKM_RSA_X_509`. Single-part in
/// spirit: multi-part calls buffer, the final call does the work.
pub fn cipher(
    param: &Param,
    key: &Object,
    dir: Dir,
    mech: CK_MECHANISM_TYPE,
) -> Result<Box<dyn CipherOp>> {
    let padding = match (mech, param) {
        (CKM_RSA_PKCS, Param::None) => Padding::Pkcs1,
        (CKM_RSA_X_509, Param::None) => Padding::Raw,
        (
            CKM_RSA_PKCS_OAEP,
            Param::Oaep {
                hash,
                mgf,
                source,
                label,
            },
        ) => {
            for_mechanism(*hash).ok_or(Error::MechanismParamInvalid)?;
            let mgf = mgf_hash(*mgf)?;
            if *source != CKZ_DATA_SPECIFIED && !(*source == 0 && label.is_empty()) {
                return Err(Error::MechanismParamInvalid);
            }
            Padding::Oaep {
                hash: *hash,
                mgf,
                label: label.clone(),
            }
        }
        _ => return Err(Error::MechanismParamInvalid),
    };
    let k = modulus_len(key)?;
    let key = match dir {
        Dir::Encrypt => RsaKey::Verify(public_key(key)?),
        Dir::Decrypt => RsaKey::Sign(private_key(key)?),
    };
    Ok(buffered(RsaCipher { key, k, padding }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_key() -> PrivateKey {
        PrivateKey::new(&mut SysRng, 2048).unwrap()
    }

    #[test]
    fn implicit_rejection_hides_bad_padding() {
        let key = test_key();
        let k = 256;
        let msg = b"premaster secret!";
        let mut em = vec![0u8, 2];
        em.extend(std::iter::repeat_n(0x11u8, k - 3 - msg.len()));
        em.push(0);
        em.extend_from_slice(msg);
        assert_eq!(&pkcs1_unpad_implicit(&key, b"c1", &em)[..], msg);
        // Wrong block type: a synthetic message, the same every time for the
        // same ciphertext, different for another one.
        let mut bad = em.clone();
        bad[1] = 1;
        let a = pkcs1_unpad_implicit(&key, b"c1", &bad);
        assert_ne!(&a[..], msg);
        assert_eq!(a, pkcs1_unpad_implicit(&key, b"c1", &bad));
        assert_ne!(a, pkcs1_unpad_implicit(&key, b"c2", &bad));
        assert!(a.len() < k - 11);
        // Padding string shorter than 8 bytes.
        let mut short = vec![0u8, 2, 1, 1, 1, 0];
        short.extend(std::iter::repeat_n(7u8, k - 6));
        assert_ne!(
            pkcs1_unpad_implicit(&key, b"c3", &short).len(),
            k - 6,
            "a 3-byte padding string is not accepted"
        );
    }

    #[test]
    fn digest_info_prefixes_match_the_rsa_crate() {
        // The rsa crate builds the same prefix from the OID for SHA-256.
        let ours = pkcs1(Some(CKM_SHA256)).unwrap();
        let theirs = Pkcs1v15Sign::new::<rsa::sha2::Sha256>();
        assert_eq!(ours, theirs);
    }
}
