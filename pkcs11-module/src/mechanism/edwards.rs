//! Curve25519 in its two shapes: Ed25519 signatures (`CKK_EC_EDWARDS`,
//! `CKM_EC_EDWARDS_KEY_PAIR_GEN`, `CKM_EDDSA`; RFC 8032, `ed25519-dalek`) and
//! X25519 key agreement (`CKK_EC_MONTGOMERY`, `CKM_EC_MONTGOMERY_KEY_PAIR_GEN`,
//! `CKM_ECDH1_DERIVE`; RFC 7748, `x25519-dalek`).
//!
//! Key attributes as SoftHSMv2 and OpenSC keep them: `CKA_EC_PARAMS` names
//! the curve by OID (RFC 8410: 1.3.101.112 Ed25519, 1.3.101.110 X25519) or
//! by PrintableString (`"edwards25519"`, `"curve25519"`, PKCS#11 v3.0
//! §2.3.5), and GnuPG's older OIDs are taken too; `CKA_EC_POINT` is the DER
//! OCTET STRING of the 32-byte public key (the bare 32 bytes are accepted on
//! import); the private `CKA_VALUE` is the 32-byte RFC 8032 seed or RFC 7748
//! scalar. PKCS#8 and SubjectPublicKeyInfo follow RFC 8410.
//!
//! `CKM_EDDSA` without a parameter, or with `CK_EDDSA_PARAMS` whose `phFlag`
//! is FALSE and context empty, is Ed25519; `phFlag` FALSE with a context is
//! Ed25519ctx; `phFlag` TRUE is Ed25519ph (SHA-512 of the message, with the
//! context). `ed25519-dalek` offers `dom2` only for the prehashed variant:
//! Ed25519ctx is RFC 8032 §5.1 written here on its expanded key and
//! `curve25519-dalek`'s scalar and point arithmetic (`ctx_sign`,
//! `ctx_verify`), checked against the RFC's §7.2 vectors.
//!
//! Private-key operations (signing, X25519, key generation) run here on the
//! pure-Rust crates in every build; AWS-LC (`mechanism::backend`) verifies
//! pure Ed25519 signatures in the default build.
//!
//! Ed448 and X448 are not offered: the only Rust implementations are
//! RustCrypto's `ed448-goldilocks` 0.14.0-pre.15 and `x448` 0.14.0-pre.12,
//! prereleases with no stable release to pin (they do fit the tree without
//! duplicate crates, and cover Ed448, Ed448ph and X448), and aws-lc-rs
//! exposes neither curve. A key naming curve448 (`edwards448`, `curve448`,
//! 1.3.101.113, 1.3.101.111) gets `CKR_CURVE_NOT_SUPPORTED`. Adding them
//! later is a `Family`-sized change here: 57/56-byte keys, `dom4` contexts.
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;
use ed25519_dalek::Signer;
use ferrohsm_store::AttrValue;
use sha2::Digest;
use zeroize::Zeroizing;

use super::{Param, SignOp, backend, cached};
use crate::error::{Error, Result};
use crate::object::Object;
use crate::object::attrs::Attrs;

/// Bytes of an X25519 key and shared secret (the default `CKA_VALUE_LEN`
/// of a secret derived with one).
pub const X25519_LEN: usize = 32;
/// Bytes of an Ed25519 key (seed or public key).
const KEY_LEN: usize = 32;
/// Bytes of an Ed25519 signature.
const SIG_LEN: usize = 64;

/// DER of the OID id-Ed25519 (1.3.101.112, RFC 8410).
pub const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];
/// DER of the OID id-X25519 (1.3.101.110, RFC 8410).
pub const X25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x6e];
/// DER PrintableString "edwards25519" (PKCS#11 v3.0 §2.3.5; OpenSC sends it).
pub const ED25519_NAME: &[u8] = b"\x13\x0cedwards25519";
/// DER PrintableString "curve25519".
pub const X25519_NAME: &[u8] = b"\x13\x0acurve25519";
/// GnuPG's OID for Ed25519 (1.3.6.1.4.1.11591.15.1), which older OpenSC sends.
const ED25519_GNU_OID: &[u8] = &[
    0x06, 0x09, 0x2b, 0x06, 0x01, 0x04, 0x01, 0xda, 0x47, 0x0f, 0x01,
];
/// GnuPG's OID for Curve25519 (1.3.6.1.4.1.3029.1.5.1).
const X25519_GNU_OID: &[u8] = &[
    0x06, 0x0a, 0x2b, 0x06, 0x01, 0x04, 0x01, 0x97, 0x55, 0x01, 0x05, 0x01,
];

/// Which shape of curve25519 a key has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// Ed25519 (`CKK_EC_EDWARDS`).
    Edwards,
    /// X25519 (`CKK_EC_MONTGOMERY`).
    Montgomery,
}

impl Family {
    /// Checks that `CKA_EC_PARAMS` names this family's curve:
    /// `CKR_CURVE_NOT_SUPPORTED` for another curve named by OID or string
    /// (curve448, the other family, a NIST curve), `CKR_DOMAIN_PARAMS_INVALID`
    /// for anything else.
    pub fn check_params(self, der: &[u8]) -> Result<()> {
        let named = match der {
            ED25519_OID | ED25519_NAME | ED25519_GNU_OID => Family::Edwards,
            X25519_OID | X25519_NAME | X25519_GNU_OID => Family::Montgomery,
            // An OID or a PrintableString of the right length: a curve.
            [0x06 | 0x13, len, rest @ ..] if *len as usize == rest.len() && !rest.is_empty() => {
                return Err(Error::CurveNotSupported);
            }
            _ => return Err(Error::DomainParamsInvalid),
        };
        if named == self {
            Ok(())
        } else {
            Err(Error::CurveNotSupported)
        }
    }

    /// The DER OID of the curve (SubjectPublicKeyInfo, PKCS#8).
    fn oid(self) -> &'static [u8] {
        match self {
            Family::Edwards => ED25519_OID,
            Family::Montgomery => X25519_OID,
        }
    }

    /// Checks the `CKA_EC_PARAMS` of a key object.
    fn of(self, key: &Object) -> Result<()> {
        self.check_params(key.bytes(CKA_EC_PARAMS).ok_or(Error::KeyTypeInconsistent)?)
    }
}

/// The 32 key bytes in a `CKA_EC_POINT` (DER OCTET STRING, or bare), a
/// private `CKA_VALUE` or ECDH public data.
pub fn key_bytes(v: &[u8]) -> Option<[u8; 32]> {
    match v {
        [0x04, 0x20, rest @ ..] if rest.len() == KEY_LEN => rest.try_into().ok(),
        _ => v.try_into().ok(),
    }
}

/// `CKA_EC_POINT`: DER OCTET STRING of the public key.
fn der_point(public: &[u8; 32]) -> Vec<u8> {
    [&[0x04, 0x20][..], public].concat()
}

/// RFC 8410 SubjectPublicKeyInfo (`CKA_PUBLIC_KEY_INFO`).
fn spki(family: Family, public: &[u8; 32]) -> Vec<u8> {
    [
        &[0x30, 0x2a, 0x30, 0x05][..],
        family.oid(),
        &[0x03, 0x21, 0x00],
        public,
    ]
    .concat()
}

/// RFC 8410 PKCS#8 v1 `PrivateKeyInfo` (as `openssl genpkey` writes it).
fn pkcs8(family: Family, private: &[u8; 32]) -> Zeroizing<Vec<u8>> {
    let mut v = Zeroizing::new(Vec::with_capacity(48));
    v.extend_from_slice(&[0x30, 0x2e, 0x02, 0x01, 0x00, 0x30, 0x05]);
    v.extend_from_slice(family.oid());
    v.extend_from_slice(&[0x04, 0x22, 0x04, 0x20]);
    v.extend_from_slice(private);
    v
}

/// The public key of a 32-byte private value.
fn public_of(family: Family, private: &[u8; 32]) -> [u8; 32] {
    match family {
        Family::Edwards => ed25519_dalek::SigningKey::from_bytes(private)
            .verifying_key()
            .to_bytes(),
        Family::Montgomery => {
            x25519_dalek::PublicKey::from(&x25519_dalek::StaticSecret::from(*private)).to_bytes()
        }
    }
}

/// A parsed Ed25519 private key, cached with its object.
pub struct EdPrivate(ed25519_dalek::SigningKey);

/// A parsed Ed25519 public key and its backend form, cached with its object.
pub struct EdPublic {
    key: ed25519_dalek::VerifyingKey,
    fast: backend::EdPublic,
}

/// A parsed X25519 private key, cached with its object.
pub struct XPrivate(x25519_dalek::StaticSecret);

fn private_value(key: &Object) -> Result<Zeroizing<[u8; 32]>> {
    let v = key.bytes(CKA_VALUE).ok_or(Error::KeyTypeInconsistent)?;
    Ok(Zeroizing::new(
        key_bytes(v).ok_or(Error::KeyTypeInconsistent)?,
    ))
}

fn ed_private(key: &Object) -> Result<Arc<EdPrivate>> {
    cached(key, || {
        Family::Edwards.of(key)?;
        Ok(EdPrivate(ed25519_dalek::SigningKey::from_bytes(
            &*private_value(key)?,
        )))
    })
}

fn ed_public(key: &Object) -> Result<Arc<EdPublic>> {
    cached(key, || {
        Family::Edwards.of(key)?;
        let v = key.bytes(CKA_EC_POINT).ok_or(Error::KeyTypeInconsistent)?;
        let p = key_bytes(v).ok_or(Error::KeyTypeInconsistent)?;
        Ok(EdPublic {
            key: ed25519_dalek::VerifyingKey::from_bytes(&p)
                .map_err(|_| Error::KeyTypeInconsistent)?,
            fast: backend::EdPublic::default(),
        })
    })
}

fn x_private(key: &Object) -> Result<Arc<XPrivate>> {
    cached(key, || {
        Family::Montgomery.of(key)?;
        Ok(XPrivate(x25519_dalek::StaticSecret::from(*private_value(
            key,
        )?)))
    })
}

fn template_params(public: &Attrs) -> Result<Vec<u8>> {
    match public.get(&CKA_EC_PARAMS) {
        Some(AttrValue::Bytes(p)) => Ok(p.clone()),
        _ => Err(Error::TemplateIncomplete),
    }
}

/// A fresh pair of `family` on the curve the public template's
/// `CKA_EC_PARAMS` names (kept as given, OID or string): the attributes the
/// token adds to the public and the private key.
fn generate(family: Family, public: &Attrs) -> Result<(Attrs, Attrs)> {
    let params = template_params(public)?;
    family.check_params(&params)?;
    let mut seed = Zeroizing::new([0u8; 32]);
    getrandom::fill(&mut seed[..]).map_err(|_| Error::DeviceError)?;
    let point = public_of(family, &seed);
    if family == Family::Edwards {
        // Pairwise consistency (FIPS 140-3 IG 10.3.A): sign and verify once.
        let k = ed25519_dalek::SigningKey::from_bytes(&seed);
        let sig = k.sign(b"pairwise consistency");
        ed25519_dalek::VerifyingKey::from_bytes(&point)
            .and_then(|p| p.verify_strict(b"pairwise consistency", &sig))
            .map_err(|_| Error::FunctionFailed)?;
    }
    let info = spki(family, &point);
    let mut pub_attrs = Attrs::new();
    pub_attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.clone()));
    pub_attrs.insert(CKA_EC_POINT, AttrValue::Bytes(der_point(&point)));
    pub_attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(info.clone()));
    let mut priv_attrs = Attrs::new();
    priv_attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(params));
    priv_attrs.insert(CKA_VALUE, AttrValue::Bytes(seed.to_vec()));
    priv_attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(info));
    Ok((pub_attrs, priv_attrs))
}

/// `CKM_EC_EDWARDS_KEY_PAIR_GEN`: an Ed25519 pair.
pub fn generate_edwards(public: &Attrs) -> Result<(Attrs, Attrs)> {
    generate(Family::Edwards, public)
}

/// `CKM_EC_MONTGOMERY_KEY_PAIR_GEN`: an X25519 pair.
pub fn generate_montgomery(public: &Attrs) -> Result<(Attrs, Attrs)> {
    generate(Family::Montgomery, public)
}

fn attr_bytes(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Result<&[u8]> {
    match attrs.get(&ty) {
        Some(AttrValue::Bytes(b)) => Ok(b),
        _ => Err(Error::TemplateIncomplete),
    }
}

/// An imported public key: the curve, 32 key bytes (an Ed25519 key must be
/// a point on the curve), stored as DER OCTET STRING, with its SPKI.
fn check_public(family: Family, attrs: &mut Attrs) -> Result<()> {
    family.check_params(attr_bytes(attrs, CKA_EC_PARAMS)?)?;
    let p = key_bytes(attr_bytes(attrs, CKA_EC_POINT)?).ok_or(Error::AttributeValueInvalid)?;
    if family == Family::Edwards {
        ed25519_dalek::VerifyingKey::from_bytes(&p).map_err(|_| Error::AttributeValueInvalid)?;
    }
    attrs.insert(CKA_EC_POINT, AttrValue::Bytes(der_point(&p)));
    attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(spki(family, &p)));
    Ok(())
}

/// An imported private key: the curve, a 32-byte value (bare, or as the
/// DER OCTET STRING RFC 8410 wraps it in), stored bare, with the SPKI of
/// its public key.
fn check_private(family: Family, attrs: &mut Attrs) -> Result<()> {
    family.check_params(attr_bytes(attrs, CKA_EC_PARAMS)?)?;
    let v = Zeroizing::new(
        key_bytes(attr_bytes(attrs, CKA_VALUE)?).ok_or(Error::AttributeValueInvalid)?,
    );
    let info = spki(family, &public_of(family, &v));
    attrs.insert(CKA_VALUE, AttrValue::Bytes(v.to_vec()));
    attrs.insert(CKA_PUBLIC_KEY_INFO, AttrValue::Bytes(info));
    Ok(())
}

/// `CKK_EC_EDWARDS` public-key import check.
pub fn check_edwards_public(attrs: &mut Attrs) -> Result<()> {
    check_public(Family::Edwards, attrs)
}

/// `CKK_EC_EDWARDS` private-key import check.
pub fn check_edwards_private(attrs: &mut Attrs) -> Result<()> {
    check_private(Family::Edwards, attrs)
}

/// `CKK_EC_MONTGOMERY` public-key import check.
pub fn check_montgomery_public(attrs: &mut Attrs) -> Result<()> {
    check_public(Family::Montgomery, attrs)
}

/// `CKK_EC_MONTGOMERY` private-key import check.
pub fn check_montgomery_private(attrs: &mut Attrs) -> Result<()> {
    check_private(Family::Montgomery, attrs)
}

fn to_pkcs8(family: Family, key: &Object) -> Result<Zeroizing<Vec<u8>>> {
    family.of(key).map_err(|_| Error::KeyNotWrappable)?;
    Ok(pkcs8(family, &*private_value(key)?))
}

/// The attributes of an RFC 8410 PKCS#8 key of `family` (v1, or v2 with a
/// public key, which must match); `CKR_WRAPPED_KEY_INVALID` otherwise.
fn from_pkcs8(family: Family, der: &[u8]) -> Result<Attrs> {
    use der::Decode;
    let bad = |_| Error::WrappedKeyInvalid;
    let info = p256::pkcs8::PrivateKeyInfoRef::from_der(der).map_err(bad)?;
    if info.algorithm.oid.as_bytes() != &family.oid()[2..] || info.algorithm.parameters.is_some() {
        return Err(Error::WrappedKeyInvalid);
    }
    let value = Zeroizing::new(
        key_bytes(info.private_key.as_bytes())
            .filter(|_| info.private_key.as_bytes().len() == 2 + KEY_LEN)
            .ok_or(Error::WrappedKeyInvalid)?,
    );
    if let Some(p) = info.public_key
        && p.raw_bytes() != public_of(family, &value)
    {
        return Err(Error::WrappedKeyInvalid);
    }
    let mut attrs = Attrs::new();
    attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(family.oid().to_vec()));
    attrs.insert(CKA_VALUE, AttrValue::Bytes(value.to_vec()));
    check_private(family, &mut attrs)?;
    Ok(attrs)
}

/// A `CKK_EC_EDWARDS` private key as PKCS#8 (`C_WrapKey`).
pub fn edwards_to_pkcs8(key: &Object) -> Result<Zeroizing<Vec<u8>>> {
    to_pkcs8(Family::Edwards, key)
}

/// A `CKK_EC_EDWARDS` private key from PKCS#8 (`C_UnwrapKey`).
pub fn edwards_from_pkcs8(der: &[u8]) -> Result<Attrs> {
    from_pkcs8(Family::Edwards, der)
}

/// A `CKK_EC_MONTGOMERY` private key as PKCS#8 (`C_WrapKey`).
pub fn montgomery_to_pkcs8(key: &Object) -> Result<Zeroizing<Vec<u8>>> {
    to_pkcs8(Family::Montgomery, key)
}

/// A `CKK_EC_MONTGOMERY` private key from PKCS#8 (`C_UnwrapKey`).
pub fn montgomery_from_pkcs8(der: &[u8]) -> Result<Attrs> {
    from_pkcs8(Family::Montgomery, der)
}

/// The X25519 shared secret of a `CKK_EC_MONTGOMERY` key with the other
/// party's 32-byte public value (bare or DER OCTET STRING), for
/// `CKM_ECDH1_DERIVE`. An all-zero result (a small-order public value, RFC
/// 7748 §6.1) is refused as OpenSSL refuses it.
pub fn x25519(base: &Object, public: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
    let peer = key_bytes(public).ok_or(Error::MechanismParamInvalid)?;
    let k = x_private(base)?;
    let shared = crate::secret::scope(|| k.0.diffie_hellman(&peer.into()));
    if !shared.was_contributory() {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(Zeroizing::new(shared.as_bytes().to_vec()))
}

enum EdKey {
    Sign(Arc<EdPrivate>),
    Verify(Arc<EdPublic>),
}

/// What `CKM_EDDSA` signs: the message (Ed25519), the message with a
/// context (Ed25519ctx), or its SHA-512 with a context (Ed25519ph).
enum Input {
    Pure(Vec<u8>),
    Context(Vec<u8>, Vec<u8>),
    Prehash(Box<sha2::Sha512>, Vec<u8>),
}

/// RFC 8032's `dom2(0, context)` prefix of Ed25519ctx's hashes.
fn dom2(context: &[u8]) -> sha2::Sha512 {
    let mut h = sha2::Sha512::new();
    h.update(b"SigEd25519 no Ed25519 collisions");
    h.update([0, context.len() as u8]);
    h.update(context);
    h
}

/// `SHA-512(dom2 || parts…)` as a scalar.
fn ctx_scalar(context: &[u8], parts: &[&[u8]]) -> curve25519_dalek::Scalar {
    let mut h = dom2(context);
    parts.iter().for_each(|p| h.update(p));
    let wide = Zeroizing::new(<[u8; 64]>::from(h.finalize()));
    curve25519_dalek::Scalar::from_bytes_mod_order_wide(&wide)
}

/// Ed25519ctx signature (RFC 8032 §5.1.6 with `dom2(0, context)`; the
/// context is 1 to 255 bytes): `r = H(dom2 || prefix || M)`, `R = rB`,
/// `k = H(dom2 || R || A || M)`, `S = r + k·s`.
fn ctx_sign(key: &ed25519_dalek::SigningKey, context: &[u8], msg: &[u8]) -> [u8; SIG_LEN] {
    use zeroize::Zeroize;
    let esk = ed25519_dalek::hazmat::ExpandedSecretKey::from(key.as_bytes());
    let mut r = ctx_scalar(context, &[&esk.hash_prefix, msg]);
    let big_r = curve25519_dalek::EdwardsPoint::mul_base(&r).compress();
    let a = key.verifying_key();
    let k = ctx_scalar(context, &[big_r.as_bytes(), a.as_bytes(), msg]);
    let s = k * esk.scalar + r;
    r.zeroize();
    let mut sig = [0u8; SIG_LEN];
    sig[..32].copy_from_slice(big_r.as_bytes());
    sig[32..].copy_from_slice(s.as_bytes());
    sig
}

/// Ed25519ctx verification as `ed25519-dalek` verifies Ed25519: `S`
/// canonical, `R == [S]B - [k]A` compared as encodings (cofactorless).
fn ctx_verify(key: &ed25519_dalek::VerifyingKey, context: &[u8], msg: &[u8], sig: &[u8]) -> bool {
    let (Ok(big_r), Ok(s)) = (
        <[u8; 32]>::try_from(&sig[..32]),
        <[u8; 32]>::try_from(&sig[32..]),
    ) else {
        return false;
    };
    let Some(s) = Option::from(curve25519_dalek::Scalar::from_canonical_bytes(s)) else {
        return false;
    };
    let k = ctx_scalar(context, &[&big_r, key.as_bytes(), msg]);
    let minus_a = -key.to_edwards();
    curve25519_dalek::EdwardsPoint::vartime_double_scalar_mul_basepoint(&k, &minus_a, &s)
        .compress()
        .to_bytes()
        == big_r
}

struct Eddsa {
    key: EdKey,
    input: Input,
}

impl SignOp for Eddsa {
    fn sig_len(&self) -> usize {
        SIG_LEN
    }

    fn update(&mut self, data: &[u8]) -> Result<()> {
        match &mut self.input {
            Input::Pure(m) | Input::Context(m, _) => m.extend_from_slice(data),
            Input::Prehash(h, _) => h.update(data),
        }
        Ok(())
    }

    fn sign(&mut self, out: &mut [u8]) -> Result<()> {
        let EdKey::Sign(k) = &self.key else {
            return Err(Error::OperationNotInitialized);
        };
        // The expanded secret and nonce: key region, stack scrubbed after.
        let sig = crate::secret::scope(|| match &self.input {
            Input::Pure(m) => Ok(k.0.sign(m)),
            Input::Context(m, ctx) => Ok(ed25519_dalek::Signature::from_bytes(&ctx_sign(
                &k.0, ctx, m,
            ))),
            Input::Prehash(h, ctx) => {
                k.0.sign_prehashed(*h.clone(), Some(ctx))
                    .map_err(|_| Error::FunctionFailed)
            }
        })?;
        out.copy_from_slice(&sig.to_bytes());
        Ok(())
    }

    fn verify(&mut self, signature: &[u8]) -> Result<()> {
        if signature.len() != SIG_LEN {
            return Err(Error::SignatureLenRange);
        }
        let EdKey::Verify(k) = &self.key else {
            return Err(Error::OperationNotInitialized);
        };
        let sig =
            ed25519_dalek::Signature::from_slice(signature).map_err(|_| Error::SignatureInvalid)?;
        let ok = match &self.input {
            // The backend first (`mechanism::backend`): it declines what it does not do.
            Input::Pure(m) => match k.fast.verify(|| k.key.to_bytes(), m, signature) {
                Some(ok) => ok,
                None => {
                    use ed25519_dalek::Verifier;
                    k.key.verify(m, &sig).is_ok()
                }
            },
            Input::Context(m, ctx) => ctx_verify(&k.key, ctx, m, signature),
            Input::Prehash(h, ctx) => k.key.verify_prehashed(*h.clone(), Some(ctx), &sig).is_ok(),
        };
        if ok {
            Ok(())
        } else {
            Err(Error::SignatureInvalid)
        }
    }
}

/// `CKM_EDDSA` sign (`verify == false`, private key) or verify (public
/// key), with the variant its parameter picks (see the module doc).
pub fn eddsa(param: &Param, key: &Object, verify: bool) -> Result<Box<dyn SignOp>> {
    let input = match param {
        Param::None => Input::Pure(Vec::new()),
        Param::Eddsa {
            prehash: false,
            context,
        } if context.is_empty() => Input::Pure(Vec::new()),
        Param::Eddsa {
            prehash: false,
            context,
        } if context.len() <= 255 => Input::Context(Vec::new(), context.clone()),
        Param::Eddsa {
            prehash: true,
            context,
        } if context.len() <= 255 => Input::Prehash(Box::new(sha2::Sha512::new()), context.clone()),
        _ => return Err(Error::MechanismParamInvalid),
    };
    let key = if verify {
        EdKey::Verify(ed_public(key)?)
    } else {
        EdKey::Sign(ed_private(key)?)
    };
    Ok(Box::new(Eddsa { key, input }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn object(class: CK_ULONG, kt: CK_KEY_TYPE, mut attrs: Attrs) -> Object {
        attrs.insert(CKA_CLASS, AttrValue::Ulong(class as _));
        attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(kt as _));
        Object {
            handle: 1,
            store_id: 1,
            owner: None,
            attrs,
            cache: Default::default(),
        }
    }

    fn ed_pair(seed: &[u8], point: &[u8], params: &[u8]) -> (Object, Object) {
        let mut private = Attrs::new();
        private.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
        private.insert(CKA_VALUE, AttrValue::Bytes(seed.to_vec()));
        check_edwards_private(&mut private).unwrap();
        let mut public = Attrs::new();
        public.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
        public.insert(CKA_EC_POINT, AttrValue::Bytes(point.to_vec()));
        check_edwards_public(&mut public).unwrap();
        assert_eq!(
            public.get(&CKA_PUBLIC_KEY_INFO),
            private.get(&CKA_PUBLIC_KEY_INFO)
        );
        (
            object(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, private),
            object(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, public),
        )
    }

    fn sign(param: &Param, key: &Object, msg: &[u8]) -> Vec<u8> {
        let mut op = eddsa(param, key, false).unwrap();
        op.update(msg).unwrap();
        let mut sig = vec![0; op.sig_len()];
        op.sign(&mut sig).unwrap();
        sig
    }

    fn verify(param: &Param, key: &Object, msg: &[u8], sig: &[u8]) -> Result<()> {
        let mut op = eddsa(param, key, true).unwrap();
        op.update(msg)?;
        op.verify(sig)
    }

    /// Seed, public key, message, signature.
    type Rfc8032Case = (&'static [u8], &'static [u8], &'static [u8], &'static [u8]);

    /// RFC 8032 §7.1 TEST 1, 2 and 3 (Ed25519) and §7.3 (Ed25519ph "abc").
    #[test]
    fn rfc8032_vectors() {
        let cases: [Rfc8032Case; 3] = [
            (
                &hex!("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"),
                &hex!("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"),
                b"",
                &hex!(
                    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e06522490155"
                    "5fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
                ),
            ),
            (
                &hex!("4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb"),
                &hex!("3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c"),
                &hex!("72"),
                &hex!(
                    "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da"
                    "085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00"
                ),
            ),
            (
                &hex!("c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7"),
                &hex!("fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025"),
                &hex!("af82"),
                &hex!(
                    "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac"
                    "18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a"
                ),
            ),
        ];
        for (i, (seed, point, msg, want)) in cases.into_iter().enumerate() {
            let params = [ED25519_OID, ED25519_NAME][i % 2];
            // The point bare on import; stored as DER OCTET STRING.
            let (private, public) = ed_pair(seed, point, params);
            assert_eq!(
                public.bytes(CKA_EC_POINT).unwrap(),
                der_point(&point.try_into().unwrap())
            );
            assert_eq!(sign(&Param::None, &private, msg), want, "TEST {}", i + 1);
            verify(&Param::None, &public, msg, want).unwrap();
            let mut bad = want.to_vec();
            bad[5] ^= 1;
            assert_eq!(
                verify(&Param::None, &public, msg, &bad),
                Err(Error::SignatureInvalid)
            );
            assert_eq!(
                verify(&Param::None, &public, msg, &want[..63]),
                Err(Error::SignatureLenRange)
            );
        }
        // Ed25519ph, RFC 8032 §7.3, message "abc", no context.
        let (private, public) = ed_pair(
            &hex!("833fe62409237b9d62ec77587520911e9a759cec1d19755b7da901b96dca3d42"),
            &hex!("ec172b93ad5e563bf4932c70e1245034c35467ef2efd4d64ebf819683467e2bf"),
            ED25519_OID,
        );
        let ph = Param::Eddsa {
            prehash: true,
            context: Vec::new(),
        };
        let want = hex!(
            "98a70222f0b8121aa9d30f813d683f809e462b469c7ff87639499bb94e6dae41"
            "31f85042463c2a355a2003d062adf5aaa10b8c61e636062aaad11c2a26083406"
        );
        assert_eq!(sign(&ph, &private, b"abc"), want);
        verify(&ph, &public, b"abc", &want).unwrap();
        // The same signature is no pure Ed25519 one, and a context changes it.
        assert_eq!(
            verify(&Param::None, &public, b"abc", &want),
            Err(Error::SignatureInvalid)
        );
        let ctx = Param::Eddsa {
            prehash: true,
            context: b"foo".to_vec(),
        };
        let with_ctx = sign(&ctx, &private, b"abc");
        assert_ne!(with_ctx, want);
        verify(&ctx, &public, b"abc", &with_ctx).unwrap();
        // Overlong contexts are refused.
        for p in [
            Param::Eddsa {
                prehash: false,
                context: vec![0; 256],
            },
            Param::Eddsa {
                prehash: true,
                context: vec![0; 256],
            },
            Param::Raw(vec![1]),
        ] {
            assert_eq!(
                eddsa(&p, &private, false).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
        // phFlag FALSE without a context is plain Ed25519.
        let plain = Param::Eddsa {
            prehash: false,
            context: Vec::new(),
        };
        let sig = sign(&plain, &private, b"abc");
        verify(&Param::None, &public, b"abc", &sig).unwrap();
    }

    /// RFC 8032 §7.2: Ed25519ctx with the contexts "foo" and "bar".
    #[test]
    fn rfc8032_ed25519ctx_vectors() {
        let (private, public) = ed_pair(
            &hex!("0305334e381af78f141cb666f6199f57bc3495335a256a95bd2a55bf546663f6"),
            &hex!("dfc9425e4f968f7f0c29f0259cf5f9aed6851c2bb4ad8bfb860cfee0ab248292"),
            ED25519_OID,
        );
        let msg = hex!("f726936d19c800494e3fdaff20b276a8");
        let ctx = |c: &[u8]| Param::Eddsa {
            prehash: false,
            context: c.to_vec(),
        };
        for (c, want) in [
            (
                &b"foo"[..],
                hex!(
                    "55a4cc2f70a54e04288c5f4cd1e45a7bb520b36292911876cada7323198dd87a"
                    "8b36950b95130022907a7fb7c4e9b2d5f6cca685a587b4b21f4b888e4e7edb0d"
                ),
            ),
            (
                b"bar",
                hex!(
                    "fc60d5872fc46b3aa69f8b5b4351d5808f92bcc044606db097abab6dbcb1aee3"
                    "216c48e8b3b66431b5b186d1d28f8ee15a5ca2df6668346291c2043d4eb3e90d"
                ),
            ),
        ] {
            assert_eq!(sign(&ctx(c), &private, &msg), want);
            verify(&ctx(c), &public, &msg, &want).unwrap();
            // Another context, the plain scheme, a changed message or S >= l: no.
            assert_eq!(
                verify(&ctx(b"baz"), &public, &msg, &want),
                Err(Error::SignatureInvalid)
            );
            assert_eq!(
                verify(&Param::None, &public, &msg, &want),
                Err(Error::SignatureInvalid)
            );
            assert_eq!(
                verify(&ctx(c), &public, &msg[1..], &want),
                Err(Error::SignatureInvalid)
            );
            let mut high = want;
            high[63] |= 0xf0;
            assert_eq!(
                verify(&ctx(c), &public, &msg, &high),
                Err(Error::SignatureInvalid)
            );
        }
        // A 255-byte context works; multi-part input is the same message.
        let long = ctx(&[7; 255]);
        let sig = sign(&long, &private, b"message");
        let mut op = eddsa(&long, &public, true).unwrap();
        op.update(b"mess").unwrap();
        op.update(b"age").unwrap();
        op.verify(&sig).unwrap();
    }

    /// RFC 7748 §6.1: Alice's and Bob's keys and their shared secret.
    #[test]
    fn rfc7748_vectors() {
        let alice = hex!("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a");
        let alice_pub = hex!("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a");
        let bob = hex!("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb");
        let bob_pub = hex!("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f");
        let shared = hex!("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742");
        let key = |value: &[u8], params: &[u8]| {
            let mut a = Attrs::new();
            a.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
            a.insert(CKA_VALUE, AttrValue::Bytes(value.to_vec()));
            check_montgomery_private(&mut a).unwrap();
            a
        };
        let a = key(&alice, X25519_OID);
        assert_eq!(
            a.get(&CKA_PUBLIC_KEY_INFO),
            Some(&AttrValue::Bytes(spki(Family::Montgomery, &alice_pub)))
        );
        let a = object(CKO_PRIVATE_KEY, CKK_EC_MONTGOMERY, a);
        let b = object(CKO_PRIVATE_KEY, CKK_EC_MONTGOMERY, key(&bob, X25519_NAME));
        assert_eq!(&x25519(&a, &bob_pub).unwrap()[..], shared);
        assert_eq!(&x25519(&b, &der_point(&alice_pub)).unwrap()[..], shared);
        // A small-order public value gives all zeros: refused.
        assert_eq!(
            x25519(&a, &[0u8; 32]).err(),
            Some(Error::MechanismParamInvalid)
        );
        assert_eq!(
            x25519(&a, &bob_pub[..31]).err(),
            Some(Error::MechanismParamInvalid)
        );
    }

    #[test]
    fn params_by_oid_or_name() {
        for p in [ED25519_OID, ED25519_NAME, ED25519_GNU_OID] {
            assert_eq!(Family::Edwards.check_params(p), Ok(()));
            assert_eq!(
                Family::Montgomery.check_params(p),
                Err(Error::CurveNotSupported)
            );
        }
        for p in [X25519_OID, X25519_NAME, X25519_GNU_OID] {
            assert_eq!(Family::Montgomery.check_params(p), Ok(()));
        }
        // Ed448 by OID and by name, P-256: other curves.
        for p in [
            &hex!("06032b6571")[..],
            b"\x13\x0aedwards448",
            super::super::ec::P256_PARAMS,
        ] {
            assert_eq!(
                Family::Edwards.check_params(p),
                Err(Error::CurveNotSupported)
            );
        }
        for p in [&b"garbage"[..], b"", b"\x13\x05abc", b"\x06\x00"] {
            assert_eq!(
                Family::Edwards.check_params(p),
                Err(Error::DomainParamsInvalid)
            );
        }
    }

    #[test]
    fn generated_pairs_sign_and_agree() {
        let mut t = Attrs::new();
        t.insert(CKA_EC_PARAMS, AttrValue::Bytes(ED25519_NAME.to_vec()));
        let (public, private) = generate_edwards(&t).unwrap();
        assert_eq!(
            public.get(&CKA_EC_PARAMS),
            Some(&AttrValue::Bytes(ED25519_NAME.to_vec()))
        );
        let (public, private) = (
            object(CKO_PUBLIC_KEY, CKK_EC_EDWARDS, public),
            object(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, private),
        );
        assert_eq!(public.bytes(CKA_EC_POINT).unwrap().len(), 34);
        let sig = sign(&Param::None, &private, b"message");
        verify(&Param::None, &public, b"message", &sig).unwrap();
        assert_eq!(
            generate_montgomery(&t).err(),
            Some(Error::CurveNotSupported)
        );
        t.insert(CKA_EC_PARAMS, AttrValue::Bytes(X25519_OID.to_vec()));
        let (pa, ka) = generate_montgomery(&t).unwrap();
        let (pb, kb) = generate_montgomery(&t).unwrap();
        let obj = |a| object(CKO_PRIVATE_KEY, CKK_EC_MONTGOMERY, a);
        let (ka, kb) = (obj(ka), obj(kb));
        let point = |a: &Attrs| match a.get(&CKA_EC_POINT) {
            Some(AttrValue::Bytes(b)) => b.clone(),
            _ => panic!("no CKA_EC_POINT"),
        };
        assert_eq!(
            x25519(&ka, &point(&pb)).unwrap(),
            x25519(&kb, &point(&pa)).unwrap()
        );
    }

    #[test]
    fn pkcs8_forms() {
        // `openssl genpkey -algorithm ed25519` output for RFC 8032 TEST 1.
        let der = hex!(
            "302e020100300506032b657004220420"
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        );
        let attrs = edwards_from_pkcs8(&der).unwrap();
        let obj = object(CKO_PRIVATE_KEY, CKK_EC_EDWARDS, attrs.clone());
        assert_eq!(&edwards_to_pkcs8(&obj).unwrap()[..], der);
        assert_eq!(
            attrs.get(&CKA_PUBLIC_KEY_INFO),
            Some(&AttrValue::Bytes(
                hex!(
                    "302a300506032b6570032100"
                    "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
                )
                .to_vec()
            ))
        );
        // The same key is no X25519 key, and a P-256 key is no Ed25519 key.
        assert_eq!(
            montgomery_from_pkcs8(&der).err(),
            Some(Error::WrappedKeyInvalid)
        );
        let mut t = Attrs::new();
        t.insert(
            CKA_EC_PARAMS,
            AttrValue::Bytes(super::super::ec::P256_PARAMS.to_vec()),
        );
        t.insert(CKA_VALUE, AttrValue::Bytes(vec![0x42; 32]));
        super::super::ec::check_private_import(&mut t).unwrap();
        let p256 = super::super::ec::to_pkcs8(&object(CKO_PRIVATE_KEY, CKK_EC, t)).unwrap();
        assert_eq!(
            edwards_from_pkcs8(&p256).err(),
            Some(Error::WrappedKeyInvalid)
        );
        // v2 (RFC 8410 §10.3's example form) with a public key that matches.
        let mut v2 = hex!("3051020101300506032b657004220420").to_vec();
        v2.extend_from_slice(&der[16..]);
        v2.extend_from_slice(&hex!("8121"));
        v2.push(0);
        v2.extend_from_slice(&hex!(
            "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
        ));
        assert_eq!(edwards_from_pkcs8(&v2).unwrap(), attrs);
        let n = v2.len();
        v2[n - 1] ^= 1;
        assert_eq!(
            edwards_from_pkcs8(&v2).err(),
            Some(Error::WrappedKeyInvalid)
        );
    }
}
