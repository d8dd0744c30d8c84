//! Key derivation: HKDF (RFC 5869, `CKM_HKDF_DERIVE`/`CKM_HKDF_DATA` with the
//! v3.0 `CK_HKDF_PARAMS`) and AES encryption of data (`CKM_AES_ECB_ENCRYPT_DATA`,
//! `CKM_AES_CBC_ENCRYPT_DATA`) here; the simple derivations of v3.0 §2.42
//! (concatenation, XOR, extraction) in `simple`; SP 800-108 (`CKM_SP800_108_*`)
//! in `kbkdf`.
//!
//! Each returns the new key's value; the module builds the key and protects
//! it as its row says (`Derive::one_way`, `Derive::copied`).
#![forbid(unsafe_code)]

pub mod kbkdf;
pub mod simple;

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::{Dir, Param, aes_key, key_value};
use crate::error::{Error, Result};
use crate::object::Object;

/// The salt key handle of HKDF parameters that name one.
pub fn hkdf_salt_key(param: &Param) -> Option<CK_OBJECT_HANDLE> {
    match param {
        Param::Hkdf {
            salt_type: CKF_HKDF_SALT_KEY,
            salt_key,
            ..
        } => Some(*salt_key),
        _ => None,
    }
}

fn hkdf_with<H>(
    extract: bool,
    expand: bool,
    salt: &[u8],
    ikm: &[u8],
    info: &[u8],
    len: usize,
) -> Result<Zeroizing<Vec<u8>>>
where
    H: hmac::digest::Digest
        + hmac::digest::block_api::BlockSizeUser
        + Clone
        + hmac::digest::FixedOutput
        + hmac::digest::Update
        + Default,
    hmac::SimpleHmac<H>: hmac::digest::KeyInit + hmac::digest::FixedOutput + hmac::Mac + Clone,
{
    let mut out = Zeroizing::new(vec![0u8; len]);
    match (extract, expand) {
        (true, true) => {
            hkdf::SimpleHkdf::<H>::new(Some(salt), ikm)
                .expand(info, &mut out)
                .map_err(|_| Error::TemplateInconsistent)?;
        }
        (true, false) => {
            let (prk, _) = hkdf::SimpleHkdf::<H>::extract(Some(salt), ikm);
            if len != prk.len() {
                return Err(Error::TemplateInconsistent);
            }
            out.copy_from_slice(&prk);
        }
        (false, true) => {
            hkdf::SimpleHkdf::<H>::from_prk(ikm)
                .map_err(|_| Error::KeySizeRange)?
                .expand(info, &mut out)
                .map_err(|_| Error::TemplateInconsistent)?;
        }
        (false, false) => return Err(Error::MechanismParamInvalid),
    }
    Ok(out)
}

/// HKDF from the base key's value; `salt_key` is the key named by
/// `CKF_HKDF_SALT_KEY`, already checked by the module.
pub fn hkdf(
    param: &Param,
    base: &Object,
    salt_key: Option<&Object>,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let Param::Hkdf {
        extract,
        expand,
        prf,
        salt_type,
        salt,
        info,
        ..
    } = param
    else {
        return Err(Error::MechanismParamInvalid);
    };
    let ikm = key_value(base)?;
    let salt: &[u8] = match *salt_type {
        CKF_HKDF_SALT_NULL => &[],
        CKF_HKDF_SALT_DATA if !salt.is_empty() => salt,
        CKF_HKDF_SALT_KEY => key_value(salt_key.ok_or(Error::MechanismParamInvalid)?)?,
        _ if !extract => &[],
        _ => return Err(Error::MechanismParamInvalid),
    };
    let (x, e) = (*extract, *expand);
    match *prf {
        CKM_SHA_1 => hkdf_with::<sha1::Sha1>(x, e, salt, ikm, info, len),
        CKM_SHA224 => hkdf_with::<sha2::Sha224>(x, e, salt, ikm, info, len),
        CKM_SHA256 => hkdf_with::<sha2::Sha256>(x, e, salt, ikm, info, len),
        CKM_SHA384 => hkdf_with::<sha2::Sha384>(x, e, salt, ikm, info, len),
        CKM_SHA512 => hkdf_with::<sha2::Sha512>(x, e, salt, ikm, info, len),
        CKM_SHA3_224 => hkdf_with::<sha3::Sha3_224>(x, e, salt, ikm, info, len),
        CKM_SHA3_256 => hkdf_with::<sha3::Sha3_256>(x, e, salt, ikm, info, len),
        CKM_SHA3_384 => hkdf_with::<sha3::Sha3_384>(x, e, salt, ikm, info, len),
        CKM_SHA3_512 => hkdf_with::<sha3::Sha3_512>(x, e, salt, ikm, info, len),
        _ => Err(Error::MechanismParamInvalid),
    }
}

/// The default output length of HKDF: the hash size (what extract gives).
pub fn hkdf_len(param: &Param, _base: &Object, _salt: Option<&Object>) -> Result<usize> {
    match param {
        Param::Hkdf { prf, .. } => super::digest::for_mechanism(*prf)
            .map(|d| d.output_len())
            .ok_or(Error::MechanismParamInvalid),
        _ => Err(Error::MechanismParamInvalid),
    }
}

/// The data of `CKM_AES_ECB_ENCRYPT_DATA` (`cbc` false: the data of a
/// `CK_KEY_DERIVATION_STRING_DATA`) or `CKM_AES_CBC_ENCRYPT_DATA` (`cbc`:
/// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`): whole blocks, and the IV of the CBC form.
fn encrypt_data_param(param: &Param, cbc: bool) -> Result<(&[u8], Option<&[u8; 16]>)> {
    let (data, iv) = match (param, cbc) {
        (Param::Raw(d), false) => (d.as_slice(), None),
        (Param::AesCbcData { iv, data }, true) => (data.as_slice(), Some(iv)),
        _ => return Err(Error::MechanismParamInvalid),
    };
    if data.is_empty() || data.len() % 16 != 0 {
        return Err(Error::MechanismParamInvalid);
    }
    Ok((data, iv))
}

/// AES-ECB (`cbc` false) or AES-CBC encryption of the parameter's data under
/// the base key: the leftmost `len` bytes.
pub fn encrypt_data(
    param: &Param,
    base: &Object,
    cbc: bool,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let (data, iv) = encrypt_data_param(param, cbc)?;
    if len > data.len() {
        return Err(Error::TemplateInconsistent);
    }
    let key = aes_key(base)?;
    let mut op = match iv {
        None => super::aes::ecb(&Param::None, key, Dir::Encrypt)?,
        Some(iv) => super::aes::cbc(&Param::Raw(iv.to_vec()), key, Dir::Encrypt)?,
    };
    let mut out = Zeroizing::new(vec![0u8; data.len()]);
    let n = op.single(data, &mut out)?;
    out.truncate(n.min(len));
    Ok(out)
}

/// The default length of an encrypt-data derivation: all of the data.
pub fn encrypt_data_len(param: &Param, cbc: bool) -> Result<usize> {
    Ok(encrypt_data_param(param, cbc)?.0.len())
}
