//! Signatures with message recovery (`C_SignRecover`, `C_VerifyRecover`)
//! for `CKM_RSA_PKCS` and `CKM_RSA_X_509` (PKCS#11 v3.0 §2.1.6–2.1.7): the
//! signature is the one `C_Sign` makes with the same mechanism; verifying
//! gives back the data instead of comparing it.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use rsa::BoxedUint;
use rsa::traits::PublicKeyParts;
use subtle::ConstantTimeLess;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::{Param, RecoverOp, SignOp};
use crate::object::Object;

use super::keys::*;
use super::pad::left_pad;
use super::sign::sign_op;

/// `C_SignRecover`: the signature `C_Sign` makes (EMSA-PKCS1-v1_5 block type
/// 1 around the data for `CKM_RSA_PKCS`, RFC 8017 §8.2 / §9.2 without the
/// DigestInfo; the bare integer for `CKM_RSA_X_509`), modulus-length output.
struct SignRecover {
    op: Box<dyn SignOp>,
}

impl RecoverOp for SignRecover {
    fn known_len(&self, _len: usize) -> Option<usize> {
        Some(self.op.sig_len())
    }

    fn run(&mut self, input: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        let mut out = Zeroizing::new(vec![0; self.op.sig_len()]);
        self.op.update(input)?;
        self.op.sign(&mut out)?;
        Ok(out)
    }
}

/// `C_VerifyRecover`: the public-key operation on the signature, then the
/// block type 1 padding checked and removed (`CKM_RSA_PKCS`), or the whole
/// modulus-length block returned (`CKM_RSA_X_509`, as SoftHSMv2 and
/// `openssl pkeyutl -verifyrecover -pkeyopt rsa_padding_mode:none` do).
struct VerifyRecover {
    key: std::sync::Arc<RsaPublic>,
    k: usize,
    pkcs1: bool,
}

impl RecoverOp for VerifyRecover {
    fn known_len(&self, _len: usize) -> Option<usize> {
        None
    }

    fn run(&mut self, signature: &[u8]) -> Result<Zeroizing<Vec<u8>>> {
        if signature.len() != self.k {
            return Err(Error::SignatureLenRange);
        }
        let n = self.key.n();
        let s = BoxedUint::from_be_slice(signature, n.bits_precision())
            .map_err(|_| Error::SignatureInvalid)?;
        if !bool::from(s.ct_lt(n)) {
            return Err(Error::SignatureInvalid);
        }
        let m = rsa::hazmat::rsa_encrypt(&self.key.rc, &s).map_err(|_| Error::SignatureInvalid)?;
        let em = left_pad(&m.to_be_bytes(), self.k);
        if !self.pkcs1 {
            return Ok(Zeroizing::new(em));
        }
        unpad_type1(&em)
            .map(|d| Zeroizing::new(d.to_vec()))
            .ok_or(Error::SignatureInvalid)
    }
}

/// The data inside an EMSA-PKCS1-v1_5 block of type 1: `00 01 FF..FF 00 D`
/// with at least eight `FF` bytes (RFC 8017 §9.2 step 5; PKCS #1 v1.5 §8.1).
/// Public data only, so no constant-time care is needed.
fn unpad_type1(em: &[u8]) -> Option<&[u8]> {
    let rest = em.strip_prefix(&[0x00, 0x01])?;
    let ff = rest.iter().take_while(|&&b| b == 0xff).count();
    if ff < 8 {
        return None;
    }
    rest[ff..].strip_prefix(&[0x00])
}

/// Builds `C_SignRecoverInit`'s (private key) or `C_VerifyRecoverInit`'s
/// (public key) operation for `CKM_RSA_PKCS` or `CKM_RSA_X_509`; neither
/// takes a parameter.
pub fn recover_op(
    param: &Param,
    key: &Object,
    verify: bool,
    mech: CK_MECHANISM_TYPE,
) -> Result<Box<dyn RecoverOp>> {
    if *param != Param::None || !matches!(mech, CKM_RSA_PKCS | CKM_RSA_X_509) {
        return Err(Error::MechanismParamInvalid);
    }
    if !verify {
        return Ok(Box::new(SignRecover {
            op: sign_op(param, key, false, mech, None)?,
        }));
    }
    Ok(Box::new(VerifyRecover {
        k: modulus_len(key)?,
        key: public_key(key)?,
        pkcs1: mech == CKM_RSA_PKCS,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type1_padding() {
        let mut em = vec![0, 1];
        em.extend([0xff; 8]);
        em.push(0);
        em.extend(b"data");
        assert_eq!(unpad_type1(&em), Some(&b"data"[..]));
        let mut empty = vec![0, 1];
        empty.extend([0xff; 9]);
        empty.push(0);
        assert_eq!(unpad_type1(&empty), Some(&b""[..]));
        let mut short = vec![0, 1];
        short.extend([0xff; 7]);
        short.push(0);
        short.extend(b"data");
        assert_eq!(unpad_type1(&short), None, "fewer than 8 FF bytes");
        let mut type2 = em.clone();
        type2[1] = 2;
        assert_eq!(unpad_type1(&type2), None);
        let mut no_zero = vec![0, 1];
        no_zero.extend([0xff; 20]);
        assert_eq!(unpad_type1(&no_zero), None);
        let mut bad_sep = vec![0, 1];
        bad_sep.extend([0xff; 8]);
        bad_sep.push(1);
        assert_eq!(unpad_type1(&bad_sep), None);
    }
}
