//! RSA keys: parsing and checking a key's components (sizes and values bounded
//! before any arithmetic), generation, PKCS#8, and the parsed keys cached
//! with their objects.
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;
use getrandom::SysRng;
use rsa::pkcs8::EncodePublicKey;
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use rsa::{BoxedUint, PrivateKey, PublicKey};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::digest::digest_of;
use crate::mechanism::{backend, cached};
use crate::object::Object;
use crate::object::attrs::Attrs;

use super::pad::pkcs1;

/// Smallest modulus generated, or accepted in a private key, in bits: what
/// SoftHSMv2 takes, as test suites make 1024-bit keys everywhere. Key policy
/// raises it: `hsm` tokens keep `HSM_MIN_BITS` (`key_types` row of CKK_RSA).
pub const MIN_BITS: usize = 1024;
/// Smallest modulus of an imported public key, in bits (verifying old
/// signatures needs old keys; SoftHSMv2 takes them too).
pub const MIN_PUBLIC_BITS: usize = 512;
/// Smallest modulus on `hsm` tokens (NIST SP 800-131A: below 2048 bits RSA
/// is disallowed), for generation and import alike.
pub const HSM_MIN_BITS: usize = 2048;
/// Largest modulus generated, in bits (8192-bit primes take minutes).
pub const MAX_GEN_BITS: usize = 8192;
/// Largest modulus accepted, in bits.
pub const MAX_BITS: usize = 16384;
/// Public exponent when the template gives none.
pub(super) const DEFAULT_E: u64 = 65537;

/// A big-endian integer without leading zero bytes, as PKCS#11 stores them.
pub(super) fn be(u: &BoxedUint) -> Vec<u8> {
    let b = u.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// A `BoxedUint` of at least `bits` precision from big-endian bytes.
pub(super) fn uint(bytes: &[u8], bits: usize) -> Result<BoxedUint> {
    let first = bytes.iter().position(|&x| x != 0).unwrap_or(bytes.len());
    let b = &bytes[first..];
    let prec = (b.len() * 8).max(bits).max(64).div_ceil(64) * 64;
    BoxedUint::from_be_slice(b, prec as u32).map_err(|_| Error::AttributeValueInvalid)
}

pub(super) fn attr<'a>(
    get: &impl Fn(CK_ATTRIBUTE_TYPE) -> Option<&'a [u8]>,
    ty: CK_ATTRIBUTE_TYPE,
) -> Result<&'a [u8]> {
    get(ty).ok_or(Error::TemplateIncomplete)
}

/// Builds and validates a private key from its PKCS#11 components: all of
/// them, or n, e and d only (the primes are then recovered, SP 800-56B C.2).
pub(super) fn private_from<'a>(
    get: impl Fn(CK_ATTRIBUTE_TYPE) -> Option<&'a [u8]>,
) -> Result<PrivateKey> {
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

/// The modulus size of a key's attributes in bits: the width of
/// `CKA_MODULUS`, else `CKA_MODULUS_BITS` of a generation template (key
/// policy checks it before anything is generated or parsed).
pub fn bits_of(attrs: &Attrs) -> Option<usize> {
    match (attrs.get(&CKA_MODULUS), attrs.get(&CKA_MODULUS_BITS)) {
        (Some(AttrValue::Bytes(n)), _) => {
            let first = n.iter().position(|&x| x != 0)?;
            Some((n.len() - first) * 8 - n[first].leading_zeros() as usize)
        }
        (_, Some(AttrValue::Ulong(b))) => Some(*b as usize),
        _ => None,
    }
}

/// No RSA modulus outside these sizes is a key anyone uses: refused as a bad
/// value before any arithmetic runs on it (a caller's 1 MB "modulus" must
/// cost nothing). Sizes inside it but outside `MIN_BITS..=MAX_BITS` are
/// real keys of a size the token does not take (`CKR_KEY_SIZE_RANGE`, after
/// parsing).
pub(super) const PLAUSIBLE_BITS: std::ops::RangeInclusive<usize> = 512..=16384;

/// Refuses a modulus that is no plausible RSA key before any arithmetic.
pub(super) fn modulus_in_range(n: &[u8]) -> Result<()> {
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
pub(super) fn exponent_plausible(e: &[u8]) -> Result<()> {
    let first = e.iter().position(|&x| x != 0).unwrap_or(e.len());
    if e.len() - first > 8 {
        Err(Error::AttributeValueInvalid)
    } else {
        Ok(())
    }
}

pub(super) fn public_from(n: &[u8], e: &[u8]) -> Result<PublicKey> {
    modulus_in_range(n)?;
    exponent_plausible(e)?;
    let (n, e) = (uint(n, 0)?, uint(e, 0)?);
    if !(MIN_PUBLIC_BITS..=MAX_BITS).contains(&(n.bit_width() as usize)) {
        return Err(Error::KeySizeRange);
    }
    PublicKey::new_with_size_limits(n, e, MIN_PUBLIC_BITS..=MAX_BITS)
        .map_err(|_| Error::AttributeValueInvalid)
}

/// A parsed private key as cached with its object: the RustCrypto key and
/// the backend's forms of it (`mechanism::backend`, built at first use).
pub struct RsaPrivate {
    /// The RustCrypto key.
    pub rc: PrivateKey,
    /// The backend's forms.
    pub fast: backend::RsaPrivate,
}

impl std::ops::Deref for RsaPrivate {
    type Target = PrivateKey;
    fn deref(&self) -> &PrivateKey {
        &self.rc
    }
}

/// A parsed public key as cached with its object (see `RsaPrivate`).
pub struct RsaPublic {
    /// The RustCrypto key.
    pub rc: PublicKey,
    /// The backend's forms.
    pub fast: backend::RsaPublic,
}

impl std::ops::Deref for RsaPublic {
    type Target = PublicKey;
    fn deref(&self) -> &PublicKey {
        &self.rc
    }
}

/// The parsed private key of an object, built once and cached with it.
pub fn private_key(key: &Object) -> Result<Arc<RsaPrivate>> {
    cached(key, || {
        Ok(RsaPrivate {
            rc: private_from(|ty| key.bytes(ty))?,
            fast: backend::RsaPrivate::default(),
        })
    })
}

/// The parsed public key of a public-key object, cached with it.
pub fn public_key(key: &Object) -> Result<Arc<RsaPublic>> {
    cached(key, || {
        let n = key.bytes(CKA_MODULUS).ok_or(Error::KeyTypeInconsistent)?;
        let e = key
            .bytes(CKA_PUBLIC_EXPONENT)
            .ok_or(Error::KeyTypeInconsistent)?;
        Ok(RsaPublic {
            rc: public_from(n, e)?,
            fast: backend::RsaPublic::default(),
        })
    })
}

pub(super) fn spki(key: &PublicKey) -> Result<Vec<u8>> {
    Ok(key
        .to_public_key_der()
        .map_err(|_| Error::GeneralError)?
        .as_bytes()
        .to_vec())
}

pub(super) fn bytes_of(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
    match attrs.get(&ty) {
        Some(AttrValue::Bytes(b)) => Some(b),
        _ => None,
    }
}

/// The private components PKCS#11 lists (§6.1.3), from a parsed key.
pub(super) fn private_attrs(key: &PrivateKey) -> Result<Attrs> {
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

/// A fresh key pair of `CKA_MODULUS_BITS` (`MIN_BITS` to `MAX_GEN_BITS`) and
/// `CKA_PUBLIC_EXPONENT` (default 65537) from the public template: the
/// attributes the token adds to the public and the private key. The pair is
/// checked by a signature before it is returned.
pub fn generate(public: &Attrs) -> Result<(Attrs, Attrs)> {
    let bits = match public.get(&CKA_MODULUS_BITS) {
        Some(AttrValue::Ulong(b)) => *b as usize,
        _ => return Err(Error::TemplateIncomplete),
    };
    if !(MIN_BITS..=MAX_GEN_BITS).contains(&bits) {
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
pub(super) fn generation_exponent(e: &[u8]) -> Result<BoxedUint> {
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
pub(super) fn modulus_len(key: &Object) -> Result<usize> {
    let n = key.bytes(CKA_MODULUS).ok_or(Error::KeyTypeInconsistent)?;
    let first = n.iter().position(|&x| x != 0).unwrap_or(n.len());
    Ok(n.len() - first)
}

pub(super) enum RsaKey {
    Sign(Arc<RsaPrivate>),
    Verify(Arc<RsaPublic>),
}
