//! RSA encodings done here rather than in the `rsa` crate: DigestInfo
//! prefixes, MGF1 and EMSA-PSS with any pair of hashes, and PKCS#1 v1.5
//! decryption's implicit rejection.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use hmac::{KeyInit, Mac};
use rsa::traits::PrivateKeyParts;
use rsa::{Pkcs1v15Sign, PrivateKey};
use subtle::{ConditionallySelectable, ConstantTimeEq, ConstantTimeLess};
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::digest::{for_mechanism, for_signing};

/// DigestInfo prefixes of RFC 8017 §9.2, note 1.
pub(super) fn digest_info_prefix(hash: CK_MECHANISM_TYPE) -> Option<&'static [u8]> {
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
        // SHA-3: id-sha3-224 … id-sha3-512 (2.16.840.1.101.3.4.2.7 … 10).
        CKM_SHA3_224 => &[
            0x30, 0x2d, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x07, 0x05, 0x00, 0x04, 0x1c,
        ],
        CKM_SHA3_256 => &[
            0x30, 0x31, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x08, 0x05, 0x00, 0x04, 0x20,
        ],
        CKM_SHA3_384 => &[
            0x30, 0x41, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x09, 0x05, 0x00, 0x04, 0x30,
        ],
        CKM_SHA3_512 => &[
            0x30, 0x51, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02,
            0x0a, 0x05, 0x00, 0x04, 0x40,
        ],
        // MD5 (1.2.840.113549.2.5), for the legacy CKM_MD5_RSA_PKCS.
        CKM_MD5 => &[
            0x30, 0x20, 0x30, 0x0c, 0x06, 0x08, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x02, 0x05,
            0x05, 0x00, 0x04, 0x10,
        ],
        _ => return None,
    })
}

/// PKCS#1 v1.5 signature padding: with the DigestInfo of `hash`, or none
/// (`CKM_RSA_PKCS`, where the caller supplies the DigestInfo).
pub(super) fn pkcs1(hash: Option<CK_MECHANISM_TYPE>) -> Result<Pkcs1v15Sign> {
    Ok(match hash {
        None => Pkcs1v15Sign::new_unprefixed(),
        Some(h) => Pkcs1v15Sign {
            hash_len: Some(for_signing(h).ok_or(Error::MechanismInvalid)?.output_len()),
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
            CKM_SHA3_224 => {
                type $d = sha3::Sha3_224;
                $body
            }
            CKM_SHA3_256 => {
                type $d = sha3::Sha3_256;
                $body
            }
            CKM_SHA3_384 => {
                type $d = sha3::Sha3_384;
                $body
            }
            CKM_SHA3_512 => {
                type $d = sha3::Sha3_512;
                $body
            }
            _ => Err(Error::MechanismParamInvalid),
        }
    };
}

/// MGF1 (RFC 8017 B.2.1) with a hash mechanism.
pub(super) fn mgf1(hash: CK_MECHANISM_TYPE, seed: &[u8], len: usize) -> Result<Zeroizing<Vec<u8>>> {
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
pub(super) fn pss_h(hash: CK_MECHANISM_TYPE, mhash: &[u8], salt: &[u8]) -> Result<Vec<u8>> {
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
pub(super) fn pss_encode(
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
pub(super) fn pss_verify(
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
pub(super) fn mgf_hash(mgf: CK_ULONG) -> Result<CK_MECHANISM_TYPE> {
    Ok(match mgf {
        CKG_MGF1_SHA1 => CKM_SHA_1,
        CKG_MGF1_SHA224 => CKM_SHA224,
        CKG_MGF1_SHA256 => CKM_SHA256,
        CKG_MGF1_SHA384 => CKM_SHA384,
        CKG_MGF1_SHA512 => CKM_SHA512,
        CKG_MGF1_SHA3_224 => CKM_SHA3_224,
        CKG_MGF1_SHA3_256 => CKM_SHA3_256,
        CKG_MGF1_SHA3_384 => CKM_SHA3_384,
        CKG_MGF1_SHA3_512 => CKM_SHA3_512,
        _ => return Err(Error::MechanismParamInvalid),
    })
}

pub(super) use with_digest;

/// Implicit rejection for PKCS#1 v1.5 decryption (see the module docs):
/// returns the message of a well-formed `em`, else a synthetic one, choosing
/// in constant time.
pub(super) fn pkcs1_unpad_implicit(
    key: &PrivateKey,
    ciphertext: &[u8],
    em: &[u8],
) -> Zeroizing<Vec<u8>> {
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

/// `v` as `k` bytes, left-padded with zeros (or its last `k` bytes).
pub(super) fn left_pad(v: &[u8], k: usize) -> Vec<u8> {
    let mut out = vec![0u8; k.saturating_sub(v.len())];
    out.extend_from_slice(&v[v.len().saturating_sub(k)..]);
    out
}
