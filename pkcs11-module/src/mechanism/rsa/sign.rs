//! RSA signatures: `CKM_RSA_PKCS`, `CKM_RSA_X_509`, PSS and the
//! hash-and-sign mechanisms, as `SignOp`s.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use getrandom::SysRng;
use rsa::BoxedUint;
use rsa::traits::PublicKeyParts;
use subtle::{ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::backend::RsaSig;
use crate::mechanism::digest::{DigestOp, for_mechanism, for_signing};
use crate::mechanism::{Param, SignOp};
use crate::object::Object;

use super::keys::*;
use super::pad::*;

#[derive(Clone, Copy)]
pub(super) enum Scheme {
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

pub(super) struct RsaSign {
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
        // The backend first (`mechanism::backend`): it declines what it does not do.
        if let Some(fast) = fast_scheme(self.scheme, &input)
            && let Some(done) =
                crate::secret::scope(|| key.fast.sign(&key.rc, fast.0, &fast.1, out))
        {
            return done;
        }
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
                    let s = rsa::hazmat::rsa_decrypt_and_check(&key.rc, Some(&mut SysRng), &m)
                        .map_err(|_| Error::FunctionFailed)?;
                    s.to_be_bytes().to_vec()
                }
                Scheme::Raw => {
                    let m = self.raw_integer(&input, key.n())?;
                    let s = rsa::hazmat::rsa_decrypt_and_check(&key.rc, Some(&mut SysRng), &m)
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
        if let Some(fast) = fast_scheme(self.scheme, &input)
            && let Some(ok) = key.fast.verify(&key.rc, fast.0, &fast.1, signature)
        {
            return if ok {
                Ok(())
            } else {
                Err(Error::SignatureInvalid)
            };
        }
        let ok = match self.scheme {
            Scheme::Pkcs1(h) => key.verify(pkcs1(h)?, &input, signature).is_ok(),
            Scheme::Pss { hash, mgf, salt } => {
                let s = BoxedUint::from_be_slice(signature, key.n().bits_precision())
                    .map_err(|_| Error::SignatureInvalid)?;
                if !bool::from(s.ct_lt(key.n())) {
                    return Err(Error::SignatureInvalid);
                }
                let m =
                    rsa::hazmat::rsa_encrypt(&key.rc, &s).map_err(|_| Error::SignatureInvalid)?;
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
                    rsa::hazmat::rsa_encrypt(&key.rc, &s).map_err(|_| Error::SignatureInvalid)?;
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

/// The scheme and digest as the backend takes them: PKCS#1 v1.5 with a hash
/// (for `CKM_RSA_PKCS`, the hash named by the DigestInfo the caller gave)
/// and PSS. `None` for raw RSA and a `CKM_RSA_PKCS` input that is no
/// DigestInfo of SHA-256/384/512.
fn fast_scheme(scheme: Scheme, input: &[u8]) -> Option<(RsaSig, Vec<u8>)> {
    match scheme {
        Scheme::Pkcs1(Some(h)) => Some((RsaSig::Pkcs1(h), input.to_vec())),
        Scheme::Pkcs1(None) => [CKM_SHA256, CKM_SHA384, CKM_SHA512]
            .into_iter()
            .find_map(|h| {
                let prefix = digest_info_prefix(h)?;
                let len = for_mechanism(h)?.output_len();
                let rest = input.strip_prefix(prefix)?;
                (rest.len() == len).then(|| (RsaSig::Pkcs1(h), rest.to_vec()))
            }),
        Scheme::Pss { hash, mgf, salt } => Some((RsaSig::Pss { hash, mgf, salt }, input.to_vec())),
        Scheme::Raw => None,
    }
}

/// `CK_RSA_PKCS_PSS_PARAMS` (hashAlg, mgf, sLen), checked against the hash
/// of the mechanism when it has one.
pub(super) fn pss_params(
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
pub(super) fn is_hashed_pss(mech: CK_MECHANISM_TYPE) -> bool {
    matches!(
        mech,
        CKM_SHA1_RSA_PKCS_PSS
            | CKM_SHA224_RSA_PKCS_PSS
            | CKM_SHA256_RSA_PKCS_PSS
            | CKM_SHA384_RSA_PKCS_PSS
            | CKM_SHA512_RSA_PKCS_PSS
            | CKM_SHA3_224_RSA_PKCS_PSS
            | CKM_SHA3_256_RSA_PKCS_PSS
            | CKM_SHA3_384_RSA_PKCS_PSS
            | CKM_SHA3_512_RSA_PKCS_PSS
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
        Some(h) => Some(for_signing(h).ok_or(Error::MechanismInvalid)?),
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
