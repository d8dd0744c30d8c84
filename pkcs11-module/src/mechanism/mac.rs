//! MACs for `C_Sign`/`C_Verify`: HMAC with SHA-1, SHA-2, SHA-3 and (legacy)
//! MD5 (RFC 2104, `hmac`)
//! and AES-CMAC (SP 800-38B, `cmac`), each in full and `_GENERAL` (truncated)
//! forms. Verification compares in constant time.
#![forbid(unsafe_code)]

use digest::{KeyInit, Mac};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{Param, SignOp};
use crate::error::{Error, Result};

/// A keyed MAC truncated to `len` bytes.
struct Keyed<M> {
    mac: M,
    len: usize,
}

impl<M: Mac + Clone + Send> SignOp for Keyed<M> {
    fn sig_len(&self) -> usize {
        self.len
    }

    fn update(&mut self, data: &[u8]) -> Result<()> {
        // The keyed state is copied to the stack (and CMAC's round keys to
        // registers) on the way: wiped after.
        crate::secret::scrubbed(|| Mac::update(&mut self.mac, data));
        Ok(())
    }

    fn sign(&mut self, out: &mut [u8]) -> Result<()> {
        let full = crate::secret::scrubbed(|| {
            Zeroizing::new(self.mac.clone().finalize().into_bytes().to_vec())
        });
        out.copy_from_slice(&full[..self.len]);
        Ok(())
    }

    fn verify(&mut self, signature: &[u8]) -> Result<()> {
        if signature.len() != self.len {
            return Err(Error::SignatureLenRange);
        }
        let full = crate::secret::scrubbed(|| {
            Zeroizing::new(self.mac.clone().finalize().into_bytes().to_vec())
        });
        if bool::from(full[..self.len].ct_eq(signature)) {
            Ok(())
        } else {
            Err(Error::SignatureInvalid)
        }
    }
}

/// The output length asked for by a `_GENERAL` parameter (`CK_MAC_GENERAL_PARAMS`,
/// one `CK_ULONG`), between `min` and `full` bytes; `None` for the full forms.
pub(super) fn out_len(param: &Param, general: bool, min: usize, full: usize) -> Result<usize> {
    const UL: usize = std::mem::size_of::<cryptoki_sys::CK_ULONG>();
    match (general, param) {
        (false, Param::None) => Ok(full),
        (true, Param::Raw(p)) if p.len() == UL => {
            let n = u64::from_ne_bytes(
                p.as_slice()
                    .try_into()
                    .map_err(|_| Error::MechanismParamInvalid)?,
            ) as usize;
            if (min..=full).contains(&n) {
                Ok(n)
            } else {
                Err(Error::MechanismParamInvalid)
            }
        }
        _ => Err(Error::MechanismParamInvalid),
    }
}

pub(super) fn keyed<M: Mac + KeyInit + Clone + Send + 'static>(
    key: &[u8],
    len: usize,
) -> Result<Box<dyn SignOp>> {
    // The keyed state (HMAC's inner and outer hashes, CMAC's subkeys) is as
    // good as the key: built in the key region, the stack scrubbed after.
    crate::secret::scope(|| {
        let mac = <M as KeyInit>::new_from_slice(key).map_err(|_| Error::KeySizeRange)?;
        Ok(Box::new(Keyed { mac, len }) as Box<dyn SignOp>)
    })
}

/// Builds an HMAC with digest `D`; `general` selects the `_GENERAL` form.
pub fn hmac<D>(param: &Param, key: &[u8], general: bool) -> Result<Box<dyn SignOp>>
where
    D: digest::Digest + digest::block_api::BlockSizeUser + Clone + Send + 'static,
    hmac::SimpleHmac<D>: Mac + KeyInit + Clone + Send,
{
    let full = <D as digest::Digest>::output_size();
    // RFC 2104 advises against tags shorter than half the hash (and 80 bits);
    // PKCS#11 allows any length from 1: follow PKCS#11, as other tokens do.
    let len = out_len(param, general, 1, full)?;
    keyed::<hmac::SimpleHmac<D>>(key, len)
}

/// Builds AES-CMAC; `general` selects `CKM_AES_CMAC_GENERAL`.
pub fn cmac(param: &Param, key: &[u8], general: bool) -> Result<Box<dyn SignOp>> {
    let len = out_len(param, general, 1, 16)?;
    match key.len() {
        16 => keyed::<cmac::Cmac<aes::Aes128>>(key, len),
        24 => keyed::<cmac::Cmac<aes::Aes192>>(key, len),
        32 => keyed::<cmac::Cmac<aes::Aes256>>(key, len),
        _ => Err(Error::KeySizeRange),
    }
}

/// `CKA_CHECK_VALUE` of a generic secret (the HMAC key type): the first three
/// bytes of SHA-1(value).
pub fn check_value(value: &[u8]) -> Result<[u8; 3]> {
    use sha1::Digest as _;
    let h = sha1::Sha1::digest(value);
    Ok([h[0], h[1], h[2]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn mac(mut m: Box<dyn SignOp>, data: &[u8]) -> Vec<u8> {
        m.update(data).unwrap();
        let mut out = vec![0; m.sig_len()];
        m.sign(&mut out).unwrap();
        out
    }

    #[test]
    fn rfc4493_cmac() {
        let k = hex!("2b7e151628aed2a6abf7158809cf4f3c");
        assert_eq!(
            mac(cmac(&Param::None, &k, false).unwrap(), b""),
            hex!("bb1d6929e95937287fa37d129b756746")
        );
        let m = hex!("6bc1bee22e409f96e93d7e117393172a");
        assert_eq!(
            mac(cmac(&Param::None, &k, false).unwrap(), &m),
            hex!("070a16b46b4d4144f79bdd9dd04a287c")
        );
        let four = 4u64.to_ne_bytes().to_vec();
        assert_eq!(
            mac(cmac(&Param::Raw(four), &k, true).unwrap(), &m),
            hex!("070a16b4")
        );
        assert!(cmac(&Param::Raw(17u64.to_ne_bytes().to_vec()), &k, true).is_err());
    }

    /// RFC 2202 §2 (HMAC-MD5) and the NIST CSRC HMAC-SHA3-256 example.
    #[test]
    fn rfc2202_hmac_md5_and_hmac_sha3() {
        let cases: [(&[u8], &[u8], [u8; 16]); 3] = [
            (
                &[0x0b; 16],
                b"Hi There",
                hex!("9294727a3638bb1c13f48ef8158bfc9d"),
            ),
            (
                b"Jefe",
                b"what do ya want for nothing?",
                hex!("750c783e6ab0b503eaa86e310a5db738"),
            ),
            (
                &[0xaa; 16],
                &[0xdd; 50],
                hex!("56be34521d144c88dbb8c733f0e8b3f6"),
            ),
        ];
        for (k, data, want) in cases {
            assert_eq!(
                mac(hmac::<md5::Md5>(&Param::None, k, false).unwrap(), data),
                want
            );
        }
        let k: Vec<u8> = (0u8..32).collect();
        assert_eq!(
            mac(
                hmac::<sha3::Sha3_256>(&Param::None, &k, false).unwrap(),
                b"Sample message for keylen<blocklen"
            ),
            hex!("4fe8e202c4f058e8dddc23d8c34e467343e23555e24fc2f025d598f558f67205")
        );
    }

    #[test]
    fn rfc4231_hmac_and_verify() {
        let k = [0x0b; 20];
        assert_eq!(
            mac(
                hmac::<sha2::Sha256>(&Param::None, &k, false).unwrap(),
                b"Hi There"
            ),
            hex!("b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7")
        );
        assert_eq!(
            mac(
                hmac::<sha2::Sha512>(&Param::None, &k, false).unwrap(),
                b"Hi There"
            ),
            hex!(
                "87aa7cdea5ef619d4ff0b4241a1d6cb02379f4e2ce4ec2787ad0b30545e17cdedaa833b7d6b8a702038b274eaea3f4e4be9d914eeb61f1702e696c203a126854"
            )
        );
        let mut v = hmac::<sha2::Sha256>(&Param::None, &k, false).unwrap();
        v.update(b"Hi There").unwrap();
        assert_eq!(
            v.verify(&hex!(
                "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7"
            )),
            Ok(())
        );
        let mut v = hmac::<sha2::Sha256>(&Param::None, &k, false).unwrap();
        v.update(b"Hi There").unwrap();
        assert_eq!(v.verify(&[0; 32]), Err(Error::SignatureInvalid));
        let mut v = hmac::<sha2::Sha256>(&Param::None, &k, false).unwrap();
        assert_eq!(v.verify(&[0; 31]), Err(Error::SignatureLenRange));
        // _GENERAL: truncated output.
        let p = Param::Raw(16u64.to_ne_bytes().to_vec());
        assert_eq!(
            mac(hmac::<sha2::Sha256>(&p, &k, true).unwrap(), b"Hi There"),
            hex!("b0344c61d8db38535ca8afceaf0bf12b")
        );
        assert!(hmac::<sha2::Sha256>(&Param::Raw(33u64.to_ne_bytes().to_vec()), &k, true).is_err());
        assert!(hmac::<sha2::Sha256>(&Param::Raw(vec![1]), &k, false).is_err());
    }
}
