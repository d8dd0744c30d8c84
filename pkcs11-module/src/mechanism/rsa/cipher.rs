//! RSA encryption: `CKM_RSA_PKCS` (with implicit rejection on decryption),
//! OAEP and raw RSA, as one-shot `CipherOp`s.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use getrandom::SysRng;
use rsa::traits::PublicKeyParts;
use rsa::{BoxedUint, Oaep, Pkcs1v15Encrypt};
use subtle::ConstantTimeLess;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::digest::for_mechanism;
use crate::mechanism::{CipherOp, Dir, OneShot, Param, buffered};
use crate::object::Object;

use super::keys::*;
use super::pad::*;

pub(super) enum Padding {
    Pkcs1,
    Oaep {
        hash: CK_MECHANISM_TYPE,
        mgf: CK_MECHANISM_TYPE,
        label: Vec<u8>,
    },
    Raw,
}

pub(super) struct RsaCipher {
    key: RsaKey,
    k: usize,
    padding: Padding,
}

/// Runs OAEP encryption or decryption with `hash` for the label hash and
/// `mgf` for MGF1 (any combination of SHA-1 and SHA-2).
pub(super) fn oaep_run(
    key: &RsaKey,
    hash: CK_MECHANISM_TYPE,
    mgf: CK_MECHANISM_TYPE,
    label: &[u8],
    input: &[u8],
) -> Result<Vec<u8>> {
    // The backend first (`mechanism::backend`): it declines what it does not do.
    let fast = match key {
        RsaKey::Verify(k) => k.fast.oaep_encrypt(&k.rc, hash, mgf, label, input),
        RsaKey::Sign(k) => k
            .fast
            .oaep_decrypt(&k.rc, hash, mgf, label, input)
            .map(|r| r.map(|m| m.to_vec())),
    };
    if let Some(done) = fast {
        return done;
    }
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
                let c = rsa::hazmat::rsa_encrypt(&k.rc, &m).map_err(|_| Error::DataLenRange)?;
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
                            let m =
                                rsa::hazmat::rsa_decrypt_and_check(&k.rc, Some(&mut SysRng), &c)
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
