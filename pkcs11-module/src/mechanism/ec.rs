//! Elliptic-curve keys on P-256, P-384 and P-521 (RustCrypto
//! `p256`/`p384`/`p521`): key pairs, import checks, ECDSA (`CKM_ECDSA`, `CKM_ECDSA_SHA*`, signatures as
//! fixed-width `r || s`) and ECDH (`CKM_ECDH1_DERIVE`, `CKD_NULL` and the
//! ANSI X9.63 KDFs over SHA-1, SHA-2 and SHA-3).
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;
use p256::elliptic_curve::Generate;
use p256::pkcs8::EncodePublicKey;
use zeroize::Zeroizing;

use super::digest::{DigestOp, for_mechanism};
use super::{Param, SignOp, backend, cached};
use crate::error::{Error, Result};
use crate::object::Object;
use crate::object::attrs::Attrs;

/// DER of the namedCurve OID prime256v1 (1.2.840.10045.3.1.7).
pub const P256_PARAMS: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the namedCurve OID secp384r1 (1.3.132.0.34).
pub const P384_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the namedCurve OID secp521r1 (1.3.132.0.35).
pub const P521_PARAMS: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];

/// A supported curve.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Curve {
    /// NIST P-256.
    P256,
    /// NIST P-384.
    P384,
    /// NIST P-521.
    P521,
}

impl Curve {
    /// The curve named by `CKA_EC_PARAMS`: `CKR_CURVE_NOT_SUPPORTED` for
    /// another named curve, `CKR_DOMAIN_PARAMS_INVALID` for anything else
    /// (explicit parameters, garbage).
    pub fn from_params(der: &[u8]) -> Result<Curve> {
        match der {
            P256_PARAMS => Ok(Curve::P256),
            P384_PARAMS => Ok(Curve::P384),
            P521_PARAMS => Ok(Curve::P521),
            // Another named curve: by OID, or by PrintableString (v3.0's
            // curveName, as Edwards curves are named).
            [0x06 | 0x13, len, rest @ ..] if *len as usize == rest.len() => {
                Err(Error::CurveNotSupported)
            }
            _ => Err(Error::DomainParamsInvalid),
        }
    }

    /// The curve of a key object.
    pub fn of(key: &Object) -> Result<Curve> {
        Curve::from_params(key.bytes(CKA_EC_PARAMS).ok_or(Error::KeyTypeInconsistent)?)
    }

    /// `CKA_EC_PARAMS` of the curve.
    pub fn params(self) -> &'static [u8] {
        match self {
            Curve::P256 => P256_PARAMS,
            Curve::P384 => P384_PARAMS,
            Curve::P521 => P521_PARAMS,
        }
    }

    /// Field (and scalar) size in bytes.
    pub fn size(self) -> usize {
        self.bits().div_ceil(8)
    }

    /// Field (and order) size in bits, for `CK_MECHANISM_INFO` and the
    /// truncation of ECDSA input.
    pub fn bits(self) -> usize {
        match self {
            Curve::P256 => 256,
            Curve::P384 => 384,
            Curve::P521 => 521,
        }
    }
}

/// A parsed private key, cached with its object.
pub enum EcPrivate {
    /// P-256.
    P256(p256::ecdsa::SigningKey),
    /// P-384.
    P384(p384::ecdsa::SigningKey),
    /// P-521.
    P521(p521::ecdsa::SigningKey),
}

/// A parsed public key, cached with its object.
pub enum EcPublic {
    /// P-256.
    P256(p256::ecdsa::VerifyingKey),
    /// P-384.
    P384(p384::ecdsa::VerifyingKey),
    /// P-521.
    P521(p521::ecdsa::VerifyingKey),
}

/// The uncompressed or compressed SEC1 point inside `CKA_EC_POINT` or ECDH
/// public data: a DER OCTET STRING (the spec's form) or the bare point (what
/// many applications pass), told apart by length.
pub fn sec1_point(v: &[u8], curve: Curve) -> Option<&[u8]> {
    let l = curve.size();
    let bare = |p: &[u8]| match p.first() {
        Some(0x04) => p.len() == 1 + 2 * l,
        Some(0x02 | 0x03) => p.len() == 1 + l,
        _ => false,
    };
    match v {
        [0x04, n, rest @ ..] if *n as usize == rest.len() && *n < 0x80 && bare(rest) => Some(rest),
        // P-521's 133-byte point takes the long form of the DER length.
        [0x04, 0x81, n, rest @ ..] if *n as usize == rest.len() && *n >= 0x80 && bare(rest) => {
            Some(rest)
        }
        _ if bare(v) => Some(v),
        _ => None,
    }
}

/// `CKA_EC_POINT` as the spec wants it: DER OCTET STRING of the uncompressed point.
fn der_point(uncompressed: &[u8]) -> Vec<u8> {
    let mut v = match uncompressed.len() {
        n if n < 0x80 => vec![0x04, n as u8],
        n => vec![0x04, 0x81, n as u8],
    };
    v.extend_from_slice(uncompressed);
    v
}

/// A private scalar from `CKA_VALUE`: big-endian, shorter values left-padded,
/// longer ones accepted only with leading zeros.
fn scalar(value: &[u8], curve: Curve) -> Result<Zeroizing<Vec<u8>>> {
    let l = curve.size();
    let start = value.len().saturating_sub(l);
    if value[..start].iter().any(|&b| b != 0) {
        return Err(Error::AttributeValueInvalid);
    }
    let mut s = Zeroizing::new(vec![0u8; l]);
    s[l - (value.len() - start)..].copy_from_slice(&value[start..]);
    Ok(s)
}

macro_rules! per_curve {
    ($curve:expr, $c:ident => $body:expr) => {
        match $curve {
            Curve::P256 => {
                use p256 as $c;
                $body
            }
            Curve::P384 => {
                use p384 as $c;
                $body
            }
            Curve::P521 => {
                use p521 as $c;
                $body
            }
        }
    };
}

impl EcPrivate {
    fn from_scalar(curve: Curve, s: &[u8]) -> Result<EcPrivate> {
        let bad = |_| Error::AttributeValueInvalid;
        Ok(match curve {
            Curve::P256 => EcPrivate::P256(p256::ecdsa::SigningKey::from_slice(s).map_err(bad)?),
            Curve::P384 => EcPrivate::P384(p384::ecdsa::SigningKey::from_slice(s).map_err(bad)?),
            Curve::P521 => EcPrivate::P521(p521::ecdsa::SigningKey::from_slice(s).map_err(bad)?),
        })
    }

    fn public(&self) -> EcPublic {
        match self {
            EcPrivate::P256(k) => EcPublic::P256(*k.verifying_key()),
            EcPrivate::P384(k) => EcPublic::P384(*k.verifying_key()),
            EcPrivate::P521(k) => EcPublic::P521(*k.verifying_key()),
        }
    }

    fn scalar_bytes(&self) -> Zeroizing<Vec<u8>> {
        match self {
            EcPrivate::P256(k) => Zeroizing::new(k.to_bytes().to_vec()),
            EcPrivate::P384(k) => Zeroizing::new(k.to_bytes().to_vec()),
            EcPrivate::P521(k) => Zeroizing::new(k.to_bytes().to_vec()),
        }
    }

    /// ECDSA over a hash already reduced to the field width.
    fn sign_field(&self, z: &[u8]) -> Result<Vec<u8>> {
        use p256::ecdsa::signature::hazmat::PrehashSigner;
        match self {
            EcPrivate::P256(k) => {
                let s: p256::ecdsa::Signature =
                    k.sign_prehash(z).map_err(|_| Error::FunctionFailed)?;
                Ok(s.to_bytes().to_vec())
            }
            EcPrivate::P384(k) => {
                let s: p384::ecdsa::Signature =
                    k.sign_prehash(z).map_err(|_| Error::FunctionFailed)?;
                Ok(s.to_bytes().to_vec())
            }
            EcPrivate::P521(k) => {
                // The RFC 6979 nonce reads its input as a bit string: a value
                // below 2^512 goes in as 64 bytes (66 would be 528 bits,
                // shifted), so SHA-512 gives the RFC's A.2.7 signatures.
                let z = match z {
                    [0, 0, rest @ ..] => rest,
                    _ => z,
                };
                let s: p521::ecdsa::Signature =
                    k.sign_prehash(z).map_err(|_| Error::FunctionFailed)?;
                Ok(s.to_bytes().to_vec())
            }
        }
    }
}

impl EcPublic {
    fn from_point(curve: Curve, point: &[u8]) -> Result<EcPublic> {
        let bad = |_| Error::AttributeValueInvalid;
        Ok(match curve {
            Curve::P256 => {
                EcPublic::P256(p256::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad)?)
            }
            Curve::P384 => {
                EcPublic::P384(p384::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad)?)
            }
            Curve::P521 => {
                EcPublic::P521(p521::ecdsa::VerifyingKey::from_sec1_bytes(point).map_err(bad)?)
            }
        })
    }

    fn uncompressed(&self) -> Vec<u8> {
        match self {
            EcPublic::P256(k) => k.to_sec1_point(false).as_bytes().to_vec(),
            EcPublic::P384(k) => k.to_sec1_point(false).as_bytes().to_vec(),
            EcPublic::P521(k) => k.to_sec1_point(false).as_bytes().to_vec(),
        }
    }

    fn spki(&self) -> Result<Vec<u8>> {
        let der = match self {
            EcPublic::P256(k) => p256::PublicKey::from(k).to_public_key_der(),
            EcPublic::P384(k) => p384::PublicKey::from(k).to_public_key_der(),
            EcPublic::P521(k) => p521::PublicKey::from(k).to_public_key_der(),
        };
        Ok(der.map_err(|_| Error::GeneralError)?.as_bytes().to_vec())
    }

    fn verify_field(&self, z: &[u8], sig: &[u8]) -> Result<()> {
        use p256::ecdsa::signature::hazmat::PrehashVerifier;
        let ok = match self {
            EcPublic::P256(k) => p256::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_prehash(z, &s).is_ok()),
            EcPublic::P384(k) => p384::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_prehash(z, &s).is_ok()),
            EcPublic::P521(k) => p521::ecdsa::Signature::from_slice(sig)
                .is_ok_and(|s| k.verify_prehash(z, &s).is_ok()),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::SignatureInvalid)
        }
    }
}

/// A parsed private key as cached with its object: the RustCrypto key and
/// the backend's forms of it (`mechanism::backend`, built at first use).
pub struct CachedPrivate {
    rc: EcPrivate,
    fast: backend::EcPrivate,
}

impl std::ops::Deref for CachedPrivate {
    type Target = EcPrivate;
    fn deref(&self) -> &EcPrivate {
        &self.rc
    }
}

/// A parsed public key as cached with its object (see `CachedPrivate`).
pub struct CachedPublic {
    rc: EcPublic,
    fast: backend::EcPublic,
}

impl std::ops::Deref for CachedPublic {
    type Target = EcPublic;
    fn deref(&self) -> &EcPublic {
        &self.rc
    }
}

/// The parsed private key of an object, built once and cached with it.
pub fn private_key(key: &Object) -> Result<Arc<CachedPrivate>> {
    cached(key, || {
        let curve = Curve::of(key)?;
        let value = key.bytes(CKA_VALUE).ok_or(Error::KeyTypeInconsistent)?;
        Ok(CachedPrivate {
            rc: EcPrivate::from_scalar(curve, &scalar(value, curve)?)?,
            fast: backend::EcPrivate::default(),
        })
    })
}

/// The parsed public key of an object, built once and cached with it.
pub fn public_key(key: &Object) -> Result<Arc<CachedPublic>> {
    cached(key, || {
        let curve = Curve::of(key)?;
        let v = key.bytes(CKA_EC_POINT).ok_or(Error::KeyTypeInconsistent)?;
        Ok(CachedPublic {
            rc: EcPublic::from_point(
                curve,
                sec1_point(v, curve).ok_or(Error::AttributeValueInvalid)?,
            )?,
            fast: backend::EcPublic::default(),
        })
    })
}

/// A fresh key pair on the curve named in the public template's
/// `CKA_EC_PARAMS`: the attributes the token adds to the public and the
/// private key. The pair is checked by a signature before it is returned.
pub fn generate(public: &Attrs) -> Result<(Attrs, Attrs)> {
    let params = match public.get(&CKA_EC_PARAMS) {
        Some(AttrValue::Bytes(p)) => p.clone(),
        _ => return Err(Error::TemplateIncomplete),
    };
    let curve = Curve::from_params(&params)?;
    let private = per_curve!(curve, c => {
        let k = c::ecdsa::SigningKey::try_generate_from_rng(&mut getrandom::SysRng)
            .map_err(|_| Error::DeviceError)?;
        EcPrivate::from_scalar(curve, &k.to_bytes())?
    });
    let public_key = private.public();
    // Pairwise consistency (FIPS 140-3 IG 10.3.A): sign and verify once.
    let z = vec![0x5a; curve.size()];
    let sig = private.sign_field(&z)?;
    public_key
        .verify_field(&z, &sig)
        .map_err(|_| Error::FunctionFailed)?;
    let spki = public_key.spki()?;
    let mut pub_attrs = Attrs::new();
    pub_attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.clone()));
    pub_attrs.insert(
        CKA_EC_POINT,
        AttrValue::Bytes(der_point(&public_key.uncompressed())),
    );
    pub_attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(spki.clone()));
    let mut priv_attrs = Attrs::new();
    priv_attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(params));
    priv_attrs.insert(CKA_VALUE, AttrValue::Bytes(private.scalar_bytes().to_vec()));
    priv_attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(spki));
    Ok((pub_attrs, priv_attrs))
}

fn attr_bytes(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Result<&[u8]> {
    match attrs.get(&ty) {
        Some(AttrValue::Bytes(b)) => Ok(b),
        _ => Err(Error::TemplateIncomplete),
    }
}

/// Checks an imported private key (curve, scalar in range) and records its
/// `CKA_PUBLIC_KEY_INFO`.
pub fn check_private_import(attrs: &mut Attrs) -> Result<()> {
    let curve = Curve::from_params(attr_bytes(attrs, CKA_EC_PARAMS)?)?;
    let s = scalar(attr_bytes(attrs, CKA_VALUE)?, curve)?;
    let key = EcPrivate::from_scalar(curve, &s)?;
    let spki = key.public().spki()?;
    attrs.insert(CKA_VALUE, AttrValue::Bytes(s.to_vec()));
    attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(spki));
    Ok(())
}

/// Checks an imported public key (a point on the named curve, bare or DER),
/// stores the point in the spec's DER form and records `CKA_PUBLIC_KEY_INFO`.
pub fn check_public_import(attrs: &mut Attrs) -> Result<()> {
    let curve = Curve::from_params(attr_bytes(attrs, CKA_EC_PARAMS)?)?;
    let point = attr_bytes(attrs, CKA_EC_POINT)?;
    let point = sec1_point(point, curve).ok_or(Error::AttributeValueInvalid)?;
    let key = EcPublic::from_point(curve, point)?;
    attrs.insert(
        CKA_EC_POINT,
        AttrValue::Bytes(der_point(&key.uncompressed())),
    );
    attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(key.spki()?));
    Ok(())
}

/// The hash input of ECDSA reduced to the field width as SEC 1 §4.1.3 and
/// PKCS#11 v3.0 §2.3.1 say: the leftmost `bits` bits of a longer value (for
/// P-521 the leftmost 66 bytes shifted right by 7 bits, which RustCrypto's
/// `p521` would instead cut to the rightmost bits), a shorter one
/// left-padded (`CKM_ECDSA` takes input of any length).
fn to_field(h: &[u8], curve: Curve) -> Vec<u8> {
    let l = curve.size();
    if h.len() * 8 <= curve.bits() {
        let mut z = vec![0u8; l - h.len()];
        z.extend_from_slice(h);
        return z;
    }
    let mut z = h[..l].to_vec();
    let shift = l * 8 - curve.bits();
    if shift > 0 {
        for i in (0..l).rev() {
            let carry = if i > 0 { z[i - 1] << (8 - shift) } else { 0 };
            z[i] = (z[i] >> shift) | carry;
        }
    }
    z
}

enum EcKey {
    Sign(Arc<CachedPrivate>),
    Verify(Arc<CachedPublic>),
}

struct Ecdsa {
    key: EcKey,
    curve: Curve,
    /// `None` for `CKM_ECDSA` (the input is the hash).
    hash: Option<Box<dyn DigestOp>>,
    data: Vec<u8>,
}

impl Ecdsa {
    /// The input reduced to the field width, and whether the backend takes
    /// it: a hash-and-sign mechanism, or `CKM_ECDSA` over input of the
    /// field's width (other lengths stay on RustCrypto).
    fn field_input(&mut self) -> Result<(Vec<u8>, bool)> {
        match self.hash.as_mut() {
            Some(d) => {
                let mut out = vec![0; d.output_len()];
                d.finish(&mut out);
                Ok((to_field(&out, self.curve), true))
            }
            None if self.data.is_empty() => Err(Error::DataLenRange),
            None => Ok((
                to_field(&self.data, self.curve),
                self.data.len() == self.curve.size(),
            )),
        }
    }
}

impl SignOp for Ecdsa {
    fn sig_len(&self) -> usize {
        2 * self.curve.size()
    }

    fn multi_part(&self) -> bool {
        self.hash.is_some()
    }

    fn update(&mut self, data: &[u8]) -> Result<()> {
        match self.hash.as_mut() {
            Some(d) => d.update(data),
            None => {
                // Raw ECDSA takes a hash; anything near this size is not one.
                if self.data.len() + data.len() > 1024 {
                    return Err(Error::DataLenRange);
                }
                self.data.extend_from_slice(data);
            }
        }
        Ok(())
    }

    fn sign(&mut self, out: &mut [u8]) -> Result<()> {
        let (z, fast) = self.field_input()?;
        let EcKey::Sign(k) = &self.key else {
            return Err(Error::OperationNotInitialized);
        };
        // The nonce and the scalar arithmetic leave copies on the stack and
        // the heap: run in the key region, stack scrubbed after. The backend
        // first (`mechanism::backend`): it declines what it does not do.
        let sig = crate::secret::scope(|| {
            let parts = || (k.scalar_bytes(), k.public().uncompressed());
            match fast
                .then(|| k.fast.sign(self.curve.size(), parts, &z))
                .flatten()
            {
                Some(done) => done,
                None => k.sign_field(&z),
            }
        })?;
        out.copy_from_slice(&sig);
        Ok(())
    }

    fn verify(&mut self, signature: &[u8]) -> Result<()> {
        if signature.len() != self.sig_len() {
            return Err(Error::SignatureLenRange);
        }
        let (z, fast) = self.field_input()?;
        let EcKey::Verify(k) = &self.key else {
            return Err(Error::OperationNotInitialized);
        };
        let point = || k.uncompressed();
        match fast
            .then(|| k.fast.verify(self.curve.size(), point, &z, signature))
            .flatten()
        {
            Some(true) => Ok(()),
            Some(false) => Err(Error::SignatureInvalid),
            None => k.verify_field(&z, signature),
        }
    }
}

/// ECDSA sign (`verify == false`, private key) or verify (public key);
/// `hash` is the digest of `CKM_ECDSA_SHA*`, `None` for `CKM_ECDSA`.
pub fn ecdsa(
    param: &Param,
    key: &Object,
    verify: bool,
    hash: Option<CK_MECHANISM_TYPE>,
) -> Result<Box<dyn SignOp>> {
    if *param != Param::None {
        return Err(Error::MechanismParamInvalid);
    }
    let curve = Curve::of(key)?;
    let key = if verify {
        EcKey::Verify(public_key(key)?)
    } else {
        EcKey::Sign(private_key(key)?)
    };
    let hash = match hash {
        Some(h) => Some(for_mechanism(h).ok_or(Error::MechanismInvalid)?),
        None => None,
    };
    Ok(Box::new(Ecdsa {
        key,
        curve,
        hash,
        data: Vec::new(),
    }))
}

/// `CKM_ECDH1_DERIVE`: the shared secret with the other party's point, run
/// through the KDF of the parameters, `len` bytes long.
pub fn ecdh(
    param: &Param,
    base: &Object,
    _: Option<&Object>,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let Param::Ecdh {
        kdf,
        shared,
        public,
    } = param
    else {
        return Err(Error::MechanismParamInvalid);
    };
    let secret = shared_secret(base, public)?;
    let hash = match *kdf {
        CKD_NULL => {
            if !shared.is_empty() {
                return Err(Error::MechanismParamInvalid);
            }
            if len > secret.len() {
                return Err(Error::TemplateInconsistent);
            }
            // A shorter key keeps the rightmost bytes, as SoftHSMv2 and
            // Kryoptic cut it.
            return Ok(Zeroizing::new(secret[secret.len() - len..].to_vec()));
        }
        CKD_SHA1_KDF => CKM_SHA_1,
        CKD_SHA224_KDF => CKM_SHA224,
        CKD_SHA256_KDF => CKM_SHA256,
        CKD_SHA384_KDF => CKM_SHA384,
        CKD_SHA512_KDF => CKM_SHA512,
        CKD_SHA3_224_KDF => CKM_SHA3_224,
        CKD_SHA3_256_KDF => CKM_SHA3_256,
        CKD_SHA3_384_KDF => CKM_SHA3_384,
        CKD_SHA3_512_KDF => CKM_SHA3_512,
        CKD_SHA1_KDF_SP800 => CKM_SHA_1,
        CKD_SHA224_KDF_SP800 => CKM_SHA224,
        CKD_SHA256_KDF_SP800 => CKM_SHA256,
        CKD_SHA384_KDF_SP800 => CKM_SHA384,
        CKD_SHA512_KDF_SP800 => CKM_SHA512,
        CKD_SHA3_224_KDF_SP800 => CKM_SHA3_224,
        CKD_SHA3_256_KDF_SP800 => CKM_SHA3_256,
        CKD_SHA3_384_KDF_SP800 => CKM_SHA3_384,
        CKD_SHA3_512_KDF_SP800 => CKM_SHA3_512,
        _ => return Err(Error::MechanismParamInvalid),
    };
    // ANSI X9.63 KDF: Hash(Z || counter32 || SharedInfo); the `_SP800` ones
    // are NIST SP 800-56A's one-step (concatenation) KDF: Hash(counter32 ||
    // Z || OtherInfo); counter = 1, 2, … either way.
    let sp800 = (CKD_SHA1_KDF_SP800..=CKD_SHA3_512_KDF_SP800).contains(kdf);
    let mut out = Zeroizing::new(Vec::with_capacity(len + 64));
    let mut counter: u32 = 1;
    while out.len() < len {
        let mut d = for_mechanism(hash).ok_or(Error::MechanismParamInvalid)?;
        if sp800 {
            d.update(&counter.to_be_bytes());
            d.update(&secret);
        } else {
            d.update(&secret);
            d.update(&counter.to_be_bytes());
        }
        d.update(shared);
        let mut block = Zeroizing::new(vec![0; d.output_len()]);
        d.finish(&mut block);
        out.extend_from_slice(&block);
        counter += 1;
    }
    out.truncate(len);
    Ok(out)
}

/// The raw ECDH secret of `base` with the other party's public value: the x
/// coordinate on the NIST curves, the RFC 7748 output for an X25519 key
/// (`CKK_EC_MONTGOMERY`, which shares `CKM_ECDH1_DERIVE` and its KDFs).
fn shared_secret(base: &Object, public: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    if base.ulong(CKA_KEY_TYPE) == Some(CKK_EC_MONTGOMERY) {
        return super::edwards::x25519(base, public);
    }
    let curve = Curve::of(base)?;
    let point = sec1_point(public, curve).ok_or(Error::MechanismParamInvalid)?;
    let private = private_key(base)?;
    // The backend first (`mechanism::backend`): it declines what it does not do.
    let fast = private
        .fast
        .ecdh(curve.size(), || private.scalar_bytes(), point)
        .transpose()?;
    let bad = |_| Error::MechanismParamInvalid;
    Ok(match (fast, &private.rc) {
        (Some(s), _) => s,
        (None, rc) => match rc {
            EcPrivate::P256(k) => {
                let peer = p256::PublicKey::from_sec1_bytes(point).map_err(bad)?;
                let sk = p256::SecretKey::from(k.as_nonzero_scalar());
                Zeroizing::new(sk.diffie_hellman(&peer).raw_secret_bytes().to_vec())
            }
            EcPrivate::P384(k) => {
                let peer = p384::PublicKey::from_sec1_bytes(point).map_err(bad)?;
                let sk = p384::SecretKey::from(k.as_nonzero_scalar());
                Zeroizing::new(sk.diffie_hellman(&peer).raw_secret_bytes().to_vec())
            }
            EcPrivate::P521(k) => {
                let peer = p521::PublicKey::from_sec1_bytes(point).map_err(bad)?;
                let sk = p521::SecretKey::from(k.as_nonzero_scalar());
                Zeroizing::new(sk.diffie_hellman(&peer).raw_secret_bytes().to_vec())
            }
        },
    })
}

/// A private key object as PKCS#8 `PrivateKeyInfo` DER, for `C_WrapKey`.
pub fn to_pkcs8(key: &Object) -> Result<Zeroizing<Vec<u8>>> {
    use p256::pkcs8::EncodePrivateKey;
    let der = match &private_key(key)?.rc {
        EcPrivate::P256(k) => p256::SecretKey::from(k.as_nonzero_scalar()).to_pkcs8_der(),
        EcPrivate::P384(k) => p384::SecretKey::from(k.as_nonzero_scalar()).to_pkcs8_der(),
        EcPrivate::P521(k) => p521::SecretKey::from(k.as_nonzero_scalar()).to_pkcs8_der(),
    }
    .map_err(|_| Error::KeyNotWrappable)?;
    Ok(Zeroizing::new(der.as_bytes().to_vec()))
}

/// The key attributes of a PKCS#8 P-256, P-384 or P-521 private key, for
/// `C_UnwrapKey`.
pub fn from_pkcs8(der: &[u8]) -> Result<Attrs> {
    use p256::pkcs8::DecodePrivateKey;
    let (curve, scalar) = if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        (Curve::P256, Zeroizing::new(k.to_bytes().to_vec()))
    } else if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        (Curve::P384, Zeroizing::new(k.to_bytes().to_vec()))
    } else if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        (Curve::P521, Zeroizing::new(k.to_bytes().to_vec()))
    } else {
        return Err(Error::WrappedKeyInvalid);
    };
    let mut attrs = Attrs::new();
    attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(curve.params().to_vec()));
    attrs.insert(CKA_VALUE, AttrValue::Bytes(scalar.to_vec()));
    check_private_import(&mut attrs)?;
    Ok(attrs)
}

/// The field size in bytes of an EC key (the default `CKA_VALUE_LEN` of an
/// ECDH-derived generic secret); 32 for an X25519 key.
pub fn field_len(_: &Param, key: &Object, _: Option<&Object>) -> Result<usize> {
    if key.ulong(CKA_KEY_TYPE) == Some(CKK_EC_MONTGOMERY) {
        return Ok(super::edwards::X25519_LEN);
    }
    Ok(Curve::of(key)?.size())
}

/// P-521 vectors and truncation (CAVP, RFC 6979), beside the file.
#[cfg(test)]
mod p521_tests;

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    #[test]
    fn params_and_points() {
        assert_eq!(Curve::from_params(P256_PARAMS), Ok(Curve::P256));
        assert_eq!(Curve::from_params(P384_PARAMS), Ok(Curve::P384));
        // secp256k1: a named curve this token does not do.
        assert_eq!(
            Curve::from_params(&hex!("06052b8104000a")),
            Err(Error::CurveNotSupported)
        );
        assert_eq!(
            Curve::from_params(b"garbage"),
            Err(Error::DomainParamsInvalid)
        );
        let bare = [4u8; 65];
        assert_eq!(sec1_point(&bare, Curve::P256), Some(&bare[..]));
        let der = der_point(&bare);
        assert_eq!(sec1_point(&der, Curve::P256), Some(&bare[..]));
        assert_eq!(sec1_point(&der, Curve::P384), None);
        assert_eq!(sec1_point(&bare[..64], Curve::P256), None);
    }

    #[test]
    fn short_and_long_hashes_fit_the_field() {
        assert_eq!(to_field(&[1, 2], Curve::P256).len(), 32);
        assert_eq!(to_field(&[1, 2], Curve::P256)[30..], [1, 2]);
        let long: Vec<u8> = (0..64).collect();
        assert_eq!(to_field(&long, Curve::P256), long[..32].to_vec());
    }

    #[test]
    fn scalar_padding() {
        assert_eq!(scalar(&[7], Curve::P256).unwrap()[31], 7);
        let mut long = vec![0u8; 33];
        long[32] = 9;
        assert_eq!(scalar(&long, Curve::P256).unwrap()[31], 9);
        long[0] = 1;
        assert_eq!(
            scalar(&long, Curve::P256).err(),
            Some(Error::AttributeValueInvalid)
        );
    }
}
