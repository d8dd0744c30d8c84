//! The AWS-LC backend (`aws-lc-rs`, non-FIPS build, linked statically with
//! prefixed symbols). Each key's AWS-LC form is parsed at its first use by an
//! operation this backend takes and kept with the family's cached key (RSA
//! key parsing in AWS-LC is slow: once per object version). A key AWS-LC
//! refuses is remembered as refused and the family's RustCrypto code runs.
//!
//! Secrets: the PKCS#8 document and scalars handed to AWS-LC are made inside
//! `secret::scope`, and so are AWS-LC's own copies of them: its allocator is
//! routed into the global allocator (`secret::awslc`), so its key structures
//! land in the key region (locked, not in core dumps, wiped on free). Every
//! private-key operation runs inside a scope too (the callers in `rsa/` and
//! `ec.rs` open it; `ecdh` opens its own), for the blinding values and
//! big-number temporaries AWS-LC allocates while it works.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use aws_lc_rs::digest::{self, Digest};
use aws_lc_rs::rsa::{
    OAEP_SHA1_MGF1SHA1, OAEP_SHA256_MGF1SHA256, OAEP_SHA384_MGF1SHA384, OAEP_SHA512_MGF1SHA512,
    OaepAlgorithm, OaepPrivateDecryptingKey, OaepPublicEncryptingKey, PrivateDecryptingKey,
    PublicEncryptingKey,
};
use aws_lc_rs::signature::{self, EcdsaKeyPair, ParsedPublicKey, RsaKeyPair};
use aws_lc_rs::{aead, agreement};
use cryptoki_sys::*;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use zeroize::Zeroizing;

use super::RsaSig;
use crate::error::{Error, Result};

/// Which backend this build asks first.
pub const NAME: &str = "aws-lc-rs";

/// Private-key operations (RSA signing and OAEP decryption, ECDSA signing,
/// ECDH) run here when AWS-LC's heap is routed into the global allocator
/// (`secret::awslc`): AWS-LC's copies of a private key and the temporaries
/// of an operation are then made inside `secret::scope` and land in the key
/// region (locked, not in core dumps, wiped on free), which
/// `tests/memory_hygiene.rs` checks against gcore and kernel core dumps.
/// On targets without the hooks they stay on RustCrypto (unit tests still
/// run them to cross-check AWS-LC against RustCrypto).
const PRIVATE_KEY_OPS: bool = crate::secret::awslc::HOOKED;

/// Which backend runs private-key operations (signing, decryption, ECDH)
/// in this build, for reports such as the benchmarks' raw column.
pub const PRIVATE_NAME: &str = if PRIVATE_KEY_OPS { NAME } else { "RustCrypto" };

fn private_key_ops() -> bool {
    PRIVATE_KEY_OPS || cfg!(test)
}

fn digest_alg(hash: CK_MECHANISM_TYPE) -> Option<&'static digest::Algorithm> {
    Some(match hash {
        CKM_SHA_1 => &digest::SHA1_FOR_LEGACY_USE_ONLY,
        CKM_SHA256 => &digest::SHA256,
        CKM_SHA384 => &digest::SHA384,
        CKM_SHA512 => &digest::SHA512,
        _ => return None,
    })
}

/// The digest value as AWS-LC takes it (the length must be the hash's).
fn import(hash: CK_MECHANISM_TYPE, value: &[u8]) -> Option<Digest> {
    Digest::import_less_safe(value, digest_alg(hash)?).ok()
}

/// The slot of a signature scheme AWS-LC does (0..6), `None` for the rest.
/// Whether AWS-LC takes an RSA key of this size (its algorithms are
/// 2048 to 8192 bits; it parses smaller keys but then fails every
/// signature, so other sizes must go to RustCrypto rather than be "invalid").
fn aws_lc_size(key: &impl rsa::traits::PublicKeyParts) -> bool {
    (2048..=8192).contains(&key.n().bit_width())
}

fn rsa_slot(s: RsaSig) -> Option<usize> {
    let h = |hash| match hash {
        CKM_SHA256 => Some(0),
        CKM_SHA384 => Some(1),
        CKM_SHA512 => Some(2),
        _ => None,
    };
    match s {
        RsaSig::Pkcs1(hash) => h(hash),
        RsaSig::Pss { hash, mgf, salt } => {
            let slot = h(hash)?;
            (mgf == hash && salt == digest_alg(hash)?.output_len()).then_some(3 + slot)
        }
    }
}

fn oaep_alg(hash: CK_MECHANISM_TYPE, mgf: CK_MECHANISM_TYPE) -> Option<&'static OaepAlgorithm> {
    if hash != mgf {
        return None;
    }
    Some(match hash {
        CKM_SHA_1 => &OAEP_SHA1_MGF1SHA1,
        CKM_SHA256 => &OAEP_SHA256_MGF1SHA256,
        CKM_SHA384 => &OAEP_SHA384_MGF1SHA384,
        CKM_SHA512 => &OAEP_SHA512_MGF1SHA512,
        _ => return None,
    })
}

/// The PKCS#8 document of a key, in the key region.
fn pkcs8(key: &rsa::PrivateKey) -> Option<rsa::pkcs8::SecretDocument> {
    key.to_pkcs8_der().ok()
}

/// Builds a backend key once (inside `secret::scope`); `None` when AWS-LC
/// refused it.
fn once<T>(cell: &OnceLock<Option<T>>, make: impl FnOnce() -> Option<T>) -> Option<&T> {
    cell.get_or_init(|| crate::secret::scope(make)).as_ref()
}

/// AWS-LC forms of an RSA private key, built at first use.
#[derive(Default)]
pub struct RsaPrivate {
    signer: OnceLock<Option<RsaKeyPair>>,
    decrypter: OnceLock<Option<OaepPrivateDecryptingKey>>,
}

impl RsaPrivate {
    /// Signs `digest` (the hash's length, checked by the caller) into `out`
    /// (the modulus length), or declines.
    pub fn sign(
        &self,
        key: &rsa::PrivateKey,
        scheme: RsaSig,
        digest: &[u8],
        out: &mut [u8],
    ) -> Option<Result<()>> {
        if !private_key_ops() || !aws_lc_size(key) {
            return None;
        }
        let slot = rsa_slot(scheme)?;
        let (hash, pss) = match scheme {
            RsaSig::Pkcs1(h) => (h, false),
            RsaSig::Pss { hash, .. } => (hash, true),
        };
        let encoding: &'static dyn signature::RsaEncoding = match (slot % 3, pss) {
            (0, false) => &signature::RSA_PKCS1_SHA256,
            (1, false) => &signature::RSA_PKCS1_SHA384,
            (2, false) => &signature::RSA_PKCS1_SHA512,
            (0, true) => &signature::RSA_PSS_SHA256,
            (1, true) => &signature::RSA_PSS_SHA384,
            _ => &signature::RSA_PSS_SHA512,
        };
        let d = import(hash, digest)?;
        let kp = once(&self.signer, || {
            RsaKeyPair::from_pkcs8(pkcs8(key)?.as_bytes()).ok()
        })?;
        if kp.public_modulus_len() != out.len() {
            return None;
        }
        Some(
            kp.sign_digest(encoding, &d, out)
                .map_err(|_| Error::FunctionFailed),
        )
    }

    /// OAEP decryption, or declines.
    pub fn oaep_decrypt(
        &self,
        key: &rsa::PrivateKey,
        hash: CK_MECHANISM_TYPE,
        mgf: CK_MECHANISM_TYPE,
        label: &[u8],
        input: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        if !private_key_ops() || !aws_lc_size(key) {
            return None;
        }
        let alg = oaep_alg(hash, mgf)?;
        let k = once(&self.decrypter, || {
            let pk = PrivateDecryptingKey::from_pkcs8(pkcs8(key)?.as_bytes()).ok()?;
            OaepPrivateDecryptingKey::new(pk).ok()
        })?;
        let mut out = Zeroizing::new(vec![0u8; k.min_output_size()]);
        let label = (!label.is_empty()).then_some(label);
        Some(match k.decrypt(alg, input, &mut out, label) {
            Ok(m) => {
                let n = m.len();
                out.truncate(n);
                Ok(out)
            }
            Err(_) => Err(Error::EncryptedDataInvalid),
        })
    }
}

/// AWS-LC forms of an RSA public key, built at first use: one parsed key
/// per verification scheme (AWS-LC ties a parsed key to its algorithm).
#[derive(Default)]
pub struct RsaPublic {
    verifiers: [OnceLock<Option<ParsedPublicKey>>; 6],
    encrypter: OnceLock<Option<OaepPublicEncryptingKey>>,
}

impl RsaPublic {
    /// Whether `signature` (the modulus length, checked by the caller) signs
    /// `digest`, or declines.
    pub fn verify(
        &self,
        key: &rsa::PublicKey,
        scheme: RsaSig,
        digest: &[u8],
        signature: &[u8],
    ) -> Option<bool> {
        if !aws_lc_size(key) {
            return None;
        }
        let slot = rsa_slot(scheme)?;
        let hash = match scheme {
            RsaSig::Pkcs1(h) | RsaSig::Pss { hash: h, .. } => h,
        };
        let d = import(hash, digest)?;
        let alg: &'static dyn signature::VerificationAlgorithm = match slot {
            0 => &signature::RSA_PKCS1_2048_8192_SHA256,
            1 => &signature::RSA_PKCS1_2048_8192_SHA384,
            2 => &signature::RSA_PKCS1_2048_8192_SHA512,
            3 => &signature::RSA_PSS_2048_8192_SHA256,
            4 => &signature::RSA_PSS_2048_8192_SHA384,
            _ => &signature::RSA_PSS_2048_8192_SHA512,
        };
        let p = once(&self.verifiers[slot], || {
            ParsedPublicKey::new(alg, key.to_public_key_der().ok()?.as_bytes()).ok()
        })?;
        Some(p.verify_digest_sig(&d, signature).is_ok())
    }

    /// OAEP encryption (the input length checked by the caller), or declines.
    pub fn oaep_encrypt(
        &self,
        key: &rsa::PublicKey,
        hash: CK_MECHANISM_TYPE,
        mgf: CK_MECHANISM_TYPE,
        label: &[u8],
        input: &[u8],
    ) -> Option<Result<Vec<u8>>> {
        if !aws_lc_size(key) {
            return None;
        }
        let alg = oaep_alg(hash, mgf)?;
        let k = once(&self.encrypter, || {
            let pk =
                PublicEncryptingKey::from_der(key.to_public_key_der().ok()?.as_bytes()).ok()?;
            OaepPublicEncryptingKey::new(pk).ok()
        })?;
        let mut out = vec![0u8; k.ciphertext_size()];
        let label = (!label.is_empty()).then_some(label);
        Some(match k.encrypt(alg, input, &mut out, label) {
            Ok(c) => {
                let n = c.len();
                out.truncate(n);
                Ok(out)
            }
            Err(_) => Err(Error::DataLenRange),
        })
    }
}

fn curve_algs(
    field: usize,
) -> Option<(
    &'static signature::EcdsaSigningAlgorithm,
    &'static signature::EcdsaVerificationAlgorithm,
    &'static agreement::Algorithm,
    CK_MECHANISM_TYPE,
)> {
    match field {
        32 => Some((
            &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
            &signature::ECDSA_P256_SHA256_FIXED,
            &agreement::ECDH_P256,
            CKM_SHA256,
        )),
        48 => Some((
            &signature::ECDSA_P384_SHA384_FIXED_SIGNING,
            &signature::ECDSA_P384_SHA384_FIXED,
            &agreement::ECDH_P384,
            CKM_SHA384,
        )),
        66 => Some((
            &signature::ECDSA_P521_SHA512_FIXED_SIGNING,
            &signature::ECDSA_P521_SHA512_FIXED,
            &agreement::ECDH_P521,
            CKM_SHA512,
        )),
        _ => None,
    }
}

/// The field-width ECDSA input `z` as the digest AWS-LC takes. P-521's
/// field is 66 bytes and SHA-512's output 64: a `z` whose two leading bytes
/// are zero is the same integer as its last 64 bytes (no truncation below
/// 521 bits); any other is declined.
fn field_digest(hash: CK_MECHANISM_TYPE, z: &[u8]) -> Option<Digest> {
    let extra = z.len().checked_sub(digest_alg(hash)?.output_len())?;
    if z[..extra].iter().any(|&b| b != 0) {
        return None;
    }
    import(hash, &z[extra..])
}

/// AWS-LC forms of an EC private key, built at first use.
#[derive(Default)]
pub struct EcPrivate {
    signer: OnceLock<Option<EcdsaKeyPair>>,
    agreement: OnceLock<Option<agreement::PrivateKey>>,
}

impl EcPrivate {
    /// ECDSA over `z`, a value of the field's width (`field` bytes: 32 for
    /// P-256, 48 for P-384, 66 for P-521); `parts` gives the scalar and the uncompressed
    /// public point at first use. Declines other sizes.
    pub fn sign(
        &self,
        field: usize,
        parts: impl FnOnce() -> (Zeroizing<Vec<u8>>, Vec<u8>),
        z: &[u8],
    ) -> Option<Result<Vec<u8>>> {
        if !private_key_ops() {
            return None;
        }
        let (alg, _, _, hash) = curve_algs(field)?;
        let d = field_digest(hash, z)?;
        let kp = once(&self.signer, || {
            let (s, p) = parts();
            EcdsaKeyPair::from_private_key_and_public_key(alg, &s, &p).ok()
        })?;
        Some(
            kp.sign_digest(&d)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| Error::FunctionFailed),
        )
    }

    /// The ECDH shared secret (the x coordinate) with `peer`, a SEC 1 point;
    /// `MechanismParamInvalid` for a point not on the curve.
    pub fn ecdh(
        &self,
        field: usize,
        scalar: impl FnOnce() -> Zeroizing<Vec<u8>>,
        peer: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        if !private_key_ops() {
            return None;
        }
        let (_, _, alg, _) = curve_algs(field)?;
        let k = once(&self.agreement, || {
            agreement::PrivateKey::from_private_key(alg, &scalar()).ok()
        })?;
        Some(crate::secret::scope(|| {
            agreement::agree(
                k,
                agreement::UnparsedPublicKey::new(alg, peer),
                Error::MechanismParamInvalid,
                |s| Ok(Zeroizing::new(s.to_vec())),
            )
        }))
    }
}

/// AWS-LC form of an EC public key, built at first use.
#[derive(Default)]
pub struct EcPublic {
    verifier: OnceLock<Option<ParsedPublicKey>>,
}

impl EcPublic {
    /// Whether `sig` (`r || s`) signs `z` (the field's width); `point` gives
    /// the SEC 1 point at first use. Declines other sizes.
    pub fn verify(
        &self,
        field: usize,
        point: impl FnOnce() -> Vec<u8>,
        z: &[u8],
        sig: &[u8],
    ) -> Option<bool> {
        let (_, alg, _, hash) = curve_algs(field)?;
        let d = field_digest(hash, z)?;
        let p = once(&self.verifier, || ParsedPublicKey::new(alg, point()).ok())?;
        Some(p.verify_digest_sig(&d, sig).is_ok())
    }
}

/// AWS-LC form of an Ed25519 public key, built at first use.
#[derive(Default)]
pub struct EdPublic {
    verifier: OnceLock<Option<ParsedPublicKey>>,
}

impl EdPublic {
    /// Whether `sig` is a pure Ed25519 (RFC 8032) signature of `msg` under
    /// the 32-byte public key `point` gives at first use.
    pub fn verify(&self, point: impl FnOnce() -> [u8; 32], msg: &[u8], sig: &[u8]) -> Option<bool> {
        let p = once(&self.verifier, || {
            ParsedPublicKey::new(&signature::ED25519, point()).ok()
        })?;
        Some(p.verify_sig(msg, sig).is_ok())
    }
}

/// AWS-LC's AES-GCM key for an AES key object, built at first GCM use
/// (AES-128 and AES-256: aws-lc-rs has no AES-192 GCM). About 1.5-2x the
/// RustCrypto GCM at 4 KiB (BENCHMARKS.md, 2026-12-06).
#[derive(Default)]
pub struct AesGcm {
    key: OnceLock<Option<aead::LessSafeKey>>,
}

impl AesGcm {
    /// Builds the AWS-LC key from the key value once (in the key region).
    pub fn prepare(&self, key: impl FnOnce() -> Option<Zeroizing<Vec<u8>>>) {
        once(&self.key, || {
            let key = key()?;
            let alg = match key.len() {
                16 => &aead::AES_128_GCM,
                32 => &aead::AES_256_GCM,
                _ => return None,
            };
            Some(aead::LessSafeKey::new(
                aead::UnboundKey::new(alg, &key).ok()?,
            ))
        });
    }

    fn ready(&self, iv: &[u8]) -> Option<(&aead::LessSafeKey, aead::Nonce)> {
        let k = self.key.get()?.as_ref()?;
        Some((k, aead::Nonce::try_assume_unique_for_key(iv).ok()?))
    }

    /// Encrypts `data` in place and returns the 16-byte tag, or declines
    /// (IV other than 12 bytes, key not prepared or not AES-128/256).
    pub fn seal(&self, iv: &[u8], aad: &[u8], data: &mut [u8]) -> Option<Result<[u8; 16]>> {
        let (k, nonce) = self.ready(iv)?;
        Some(
            k.seal_in_place_separate_tag(nonce, aead::Aad::from(aad), data)
                .map_err(|_| Error::DataLenRange)
                .and_then(|t| t.as_ref().try_into().map_err(|_| Error::FunctionFailed)),
        )
    }

    /// Decrypts `ct` into `out` (its length) if the 16-byte `tag` is right
    /// (`out` is zeroed otherwise), or declines as [`Self::seal`] does.
    pub fn open(
        &self,
        iv: &[u8],
        aad: &[u8],
        ct: &[u8],
        tag: &[u8],
        out: &mut [u8],
    ) -> Option<Result<()>> {
        if tag.len() != 16 {
            return None;
        }
        let (k, nonce) = self.ready(iv)?;
        Some(
            match k.open_separate_gather(nonce, aead::Aad::from(aad), ct, tag, out) {
                Ok(()) => Ok(()),
                Err(_) => {
                    zeroize::Zeroize::zeroize(out);
                    Err(Error::EncryptedDataInvalid)
                }
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use getrandom::SysRng;
    use p256::elliptic_curve::Generate;
    use sha2::Digest as _;

    /// AWS-LC allocates through `secret::awslc`'s hooks: a key it parses
    /// inside a scope is built from blocks the hooks hand out, and signing
    /// with it works (AWS-LC frees and reallocates through them too).
    #[test]
    fn aws_lc_allocates_through_the_hooks() {
        use std::sync::atomic::Ordering;
        let k = p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).unwrap();
        let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let before = crate::secret::awslc::CALLS.load(Ordering::Relaxed);
        let kp = crate::secret::scope(|| {
            EcdsaKeyPair::from_private_key_and_public_key(
                &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
                &k.to_bytes(),
                &point,
            )
            .unwrap()
        });
        assert!(crate::secret::awslc::CALLS.load(Ordering::Relaxed) > before);
        let sig = crate::secret::scope(|| kp.sign_digest(&import(CKM_SHA256, &[5u8; 32]).unwrap()));
        assert_eq!(sig.unwrap().as_ref().len(), 64);
        drop(kp);
    }

    /// AWS-LC's GCM against the `aes-gcm` crate, tampering refused and
    /// wiped, and what it declines (IVs other than 12 bytes, short tags,
    /// AES-192).
    #[test]
    fn gcm_agrees_with_rustcrypto() {
        use aes_gcm::aead::{Aead, KeyInit, Payload};
        for len in [16usize, 32] {
            let key = vec![0x5au8; len];
            let g = AesGcm::default();
            assert!(g.seal(&[1u8; 12], b"", &mut []).is_none(), "not prepared");
            g.prepare(|| Some(Zeroizing::new(key.clone())));
            let (iv, aad, msg) = ([3u8; 12], b"header", vec![7u8; 100]);
            let mut body = msg.clone();
            let tag = g.seal(&iv, aad, &mut body).unwrap().unwrap();
            let want = if len == 16 {
                aes_gcm::Aes128Gcm::new_from_slice(&key)
                    .unwrap()
                    .encrypt(&iv.into(), Payload { msg: &msg, aad })
            } else {
                aes_gcm::Aes256Gcm::new_from_slice(&key)
                    .unwrap()
                    .encrypt(&iv.into(), Payload { msg: &msg, aad })
            }
            .unwrap();
            assert_eq!([&body[..], &tag[..]].concat(), want);
            let mut out = vec![0u8; 100];
            g.open(&iv, aad, &body, &tag, &mut out).unwrap().unwrap();
            assert_eq!(out, msg);
            let mut bad = tag;
            bad[0] ^= 1;
            assert_eq!(
                g.open(&iv, aad, &body, &bad, &mut out).unwrap().err(),
                Some(Error::EncryptedDataInvalid)
            );
            assert!(out.iter().all(|&b| b == 0), "wiped after a bad tag");
            assert!(g.open(&iv, aad, &body, &tag[..12], &mut out).is_none());
            assert!(g.seal(&[1u8; 16], aad, &mut body).is_none());
        }
        let g = AesGcm::default();
        g.prepare(|| Some(Zeroizing::new(vec![1u8; 24])));
        assert!(g.seal(&[1u8; 12], b"", &mut [0u8; 4]).is_none());
    }

    #[test]
    fn rsa_agrees_with_rustcrypto() {
        let key = rsa::PrivateKey::new(&mut SysRng, 2048).unwrap();
        let public = key.as_public_key();
        let (fp, fq) = (RsaPrivate::default(), RsaPublic::default());
        let h = sha2::Sha256::digest(b"message").to_vec();
        let mut sig = vec![0u8; 256];
        let pkcs1 = RsaSig::Pkcs1(CKM_SHA256);
        fp.sign(&key, pkcs1, &h, &mut sig).unwrap().unwrap();
        public
            .verify(rsa::Pkcs1v15Sign::new::<sha2::Sha256>(), &h, &sig)
            .unwrap();
        assert_eq!(fq.verify(public, pkcs1, &h, &sig), Some(true));
        sig[7] ^= 1;
        assert_eq!(fq.verify(public, pkcs1, &h, &sig), Some(false));
        let pss = RsaSig::Pss {
            hash: CKM_SHA256,
            mgf: CKM_SHA256,
            salt: 32,
        };
        fp.sign(&key, pss, &h, &mut sig).unwrap().unwrap();
        assert_eq!(fq.verify(public, pss, &h, &sig), Some(true));
        assert_eq!(fq.verify(public, pkcs1, &h, &sig), Some(false));
        // Declined: other salt lengths, mixed hashes, SHA-1 PKCS#1.
        for s in [
            RsaSig::Pss {
                hash: CKM_SHA256,
                mgf: CKM_SHA256,
                salt: 20,
            },
            RsaSig::Pss {
                hash: CKM_SHA256,
                mgf: CKM_SHA_1,
                salt: 32,
            },
            RsaSig::Pkcs1(CKM_SHA_1),
        ] {
            assert!(fp.sign(&key, s, &h, &mut sig).is_none());
        }
        // OAEP both ways, with a label.
        let oaep =
            || rsa::Oaep::<sha2::Sha256, sha2::Sha256>::new_with_mgf_hash_and_label(b"L".to_vec());
        let c = public.encrypt(&mut SysRng, oaep(), b"secret").unwrap();
        let m = fp
            .oaep_decrypt(&key, CKM_SHA256, CKM_SHA256, b"L", &c)
            .unwrap()
            .unwrap();
        assert_eq!(&m[..], b"secret");
        assert!(
            fp.oaep_decrypt(&key, CKM_SHA256, CKM_SHA256, b"M", &c)
                .unwrap()
                .is_err()
        );
        let c = fq
            .oaep_encrypt(public, CKM_SHA256, CKM_SHA256, b"L", b"secret")
            .unwrap()
            .unwrap();
        assert_eq!(key.decrypt(oaep(), &c).unwrap(), b"secret");
        assert!(
            fq.oaep_encrypt(public, CKM_SHA256, CKM_SHA_1, b"", b"x")
                .is_none()
        );
    }

    /// SHA-224, SHA-3 and MD5 are not AWS-LC's here: RSA signatures and OAEP
    /// with them decline, so RustCrypto runs them (ECDSA takes the digest
    /// already reduced to the field, whatever the hash).
    #[test]
    fn other_hashes_are_left_to_rustcrypto() {
        let key = rsa::PrivateKey::new(&mut SysRng, 2048).unwrap();
        let public = key.as_public_key();
        let (fp, fq) = (RsaPrivate::default(), RsaPublic::default());
        for (hash, len) in [
            (CKM_SHA224, 28),
            (CKM_SHA3_224, 28),
            (CKM_SHA3_256, 32),
            (CKM_SHA3_384, 48),
            (CKM_SHA3_512, 64),
            (CKM_MD5, 16),
        ] {
            let h = vec![7u8; len];
            let mut sig = vec![0u8; 256];
            let pss = RsaSig::Pss {
                hash,
                mgf: hash,
                salt: len,
            };
            for s in [RsaSig::Pkcs1(hash), pss] {
                assert!(fp.sign(&key, s, &h, &mut sig).is_none(), "{hash:#x}");
                assert!(fq.verify(public, s, &h, &sig).is_none(), "{hash:#x}");
            }
            assert!(fq.oaep_encrypt(public, hash, hash, b"", b"x").is_none());
            assert!(fp.oaep_decrypt(&key, hash, hash, b"", &sig).is_none());
        }
    }

    #[test]
    fn ec_agrees_with_rustcrypto() {
        use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
        let k = p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).unwrap();
        let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let parts = || (Zeroizing::new(k.to_bytes().to_vec()), point.clone());
        let (fp, fq) = (EcPrivate::default(), EcPublic::default());
        let z = sha2::Sha256::digest(b"message").to_vec();
        let sig = fp.sign(32, parts, &z).unwrap().unwrap();
        let s = p256::ecdsa::Signature::from_slice(&sig).unwrap();
        k.verifying_key().verify_prehash(&z, &s).unwrap();
        let theirs: p256::ecdsa::Signature = k.sign_prehash(&z).unwrap();
        assert_eq!(
            fq.verify(32, || point.clone(), &z, &theirs.to_bytes()),
            Some(true)
        );
        assert_eq!(
            fq.verify(32, || point.clone(), &z[..], &[0u8; 64]),
            Some(false)
        );
        assert!(fp.sign(48, parts, &z).is_none());
        // ECDH against RustCrypto's, with the other party's point compressed too.
        let other = p256::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).unwrap();
        let other = other.verifying_key();
        let mine = p256::SecretKey::from(k.as_nonzero_scalar());
        let want = mine
            .diffie_hellman(&p256::PublicKey::from(other))
            .raw_secret_bytes()
            .to_vec();
        for compress in [false, true] {
            let peer = other.to_sec1_point(compress).as_bytes().to_vec();
            let got = fp
                .ecdh(32, || Zeroizing::new(k.to_bytes().to_vec()), &peer)
                .unwrap()
                .unwrap();
            assert_eq!(&got[..], &want[..]);
        }
        let mut bad = other.to_sec1_point(false).as_bytes().to_vec();
        bad[40] ^= 1;
        assert_eq!(
            fp.ecdh(32, || Zeroizing::new(k.to_bytes().to_vec()), &bad)
                .unwrap()
                .err(),
            Some(Error::MechanismParamInvalid)
        );
    }

    #[test]
    fn p521_and_ed25519_agree_with_rustcrypto() {
        use p256::ecdsa::signature::hazmat::{PrehashSigner, PrehashVerifier};
        let k = p521::ecdsa::SigningKey::try_generate_from_rng(&mut SysRng).unwrap();
        let point = k.verifying_key().to_sec1_point(false).as_bytes().to_vec();
        let parts = || (Zeroizing::new(k.to_bytes().to_vec()), point.clone());
        let (fp, fq) = (EcPrivate::default(), EcPublic::default());
        // The field-width value of a SHA-512 hash: two zero bytes, 64 bytes.
        let h = sha2::Sha512::digest(b"message");
        let z = [&[0u8, 0][..], &h].concat();
        let sig = fp.sign(66, parts, &z).unwrap().unwrap();
        let s = p521::ecdsa::Signature::from_slice(&sig).unwrap();
        k.verifying_key().verify_prehash(&h, &s).unwrap();
        let theirs: p521::ecdsa::Signature = k.sign_prehash(&h).unwrap();
        assert_eq!(
            fq.verify(66, || point.clone(), &z, &theirs.to_bytes()),
            Some(true)
        );
        assert_eq!(fq.verify(66, || point.clone(), &z, &sig[..]), Some(true));
        // A value of 521 bits is no SHA-512 digest: declined.
        let mut wide = z.clone();
        wide[0] = 1;
        assert_eq!(fq.verify(66, || point.clone(), &wide, &sig[..]), None);
        // Ed25519: AWS-LC verifies what ed25519-dalek signs.
        use ed25519_dalek::Signer;
        let ed = ed25519_dalek::SigningKey::from_bytes(&[7u8; 32]);
        let sig = ed.sign(b"message").to_bytes();
        let ep = EdPublic::default();
        let public = || ed.verifying_key().to_bytes();
        assert_eq!(ep.verify(public, b"message", &sig), Some(true));
        assert_eq!(ep.verify(public, b"messagf", &sig), Some(false));
    }
}
