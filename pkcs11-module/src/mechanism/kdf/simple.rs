//! The simple derivations of PKCS#11 v3.0 §2.42 ("Miscellaneous simple key
//! derivation mechanisms"): `CKM_CONCATENATE_BASE_AND_KEY`,
//! `CKM_CONCATENATE_BASE_AND_DATA`, `CKM_CONCATENATE_DATA_AND_BASE`,
//! `CKM_XOR_BASE_AND_DATA` and `CKM_EXTRACT_KEY_FROM_KEY`. Each copies base-key
//! bytes into the new key, so each row says how many (`Derive::copied`) and the
//! module keeps the result protected like its bases.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::{Param, key_value};
use crate::object::Object;

/// The key named by `CKM_CONCATENATE_BASE_AND_KEY`'s parameter.
pub fn concatenated_key(param: &Param) -> Option<CK_OBJECT_HANDLE> {
    ulong_param(param)
}

/// A flat `CK_ULONG` parameter (`CK_OBJECT_HANDLE`, `CK_EXTRACT_PARAMS`).
fn ulong_param(param: &Param) -> Option<CK_ULONG> {
    const UL: usize = std::mem::size_of::<CK_ULONG>();
    match param {
        Param::Raw(p) if p.len() == UL => {
            let mut b = [0u8; UL];
            b.copy_from_slice(p);
            Some(CK_ULONG::from_ne_bytes(b))
        }
        _ => None,
    }
}

/// The leftmost `len` bytes of `v`; more than it has is
/// `CKR_TEMPLATE_INCONSISTENT` (v3.0 §2.42: "If the requested type of key
/// requires more bytes than are available").
fn leftmost(mut v: Zeroizing<Vec<u8>>, len: usize) -> Result<Zeroizing<Vec<u8>>> {
    if len > v.len() {
        return Err(Error::TemplateInconsistent);
    }
    v.truncate(len);
    Ok(v)
}

/// The base key's value followed by the other key's, the leftmost `len` bytes.
pub fn concatenate(
    _: &Param,
    base: &Object,
    other: Option<&Object>,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    let other = other.ok_or(Error::MechanismParamInvalid)?;
    let mut v = Zeroizing::new(key_value(base)?.to_vec());
    v.extend_from_slice(key_value(other)?);
    leftmost(v, len)
}

/// The default length of a concatenation: both values.
pub fn concatenate_len(_: &Param, base: &Object, other: Option<&Object>) -> Result<usize> {
    let other = other.ok_or(Error::MechanismParamInvalid)?;
    Ok(key_value(base)?.len() + key_value(other)?.len())
}

/// Bytes of each key in the first `len` bytes of a key concatenation.
pub fn concatenate_copied(_: &Param, base: &Object, _: Option<&Object>, len: usize) -> [usize; 2] {
    let b = key_value(base).map_or(0, <[u8]>::len);
    [len.min(b), len.saturating_sub(b)]
}

/// The data of a `CK_KEY_DERIVATION_STRING_DATA`; empty is
/// `CKR_MECHANISM_PARAM_INVALID`, as in Kryoptic.
fn string_data(param: &Param) -> Result<&[u8]> {
    match param {
        Param::Raw(d) if !d.is_empty() => Ok(d),
        _ => Err(Error::MechanismParamInvalid),
    }
}

/// Where the caller's data goes beside the base key's value.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Join {
    /// `CKM_CONCATENATE_BASE_AND_DATA`: base || data.
    BaseFirst,
    /// `CKM_CONCATENATE_DATA_AND_BASE`: data || base.
    DataFirst,
    /// `CKM_XOR_BASE_AND_DATA`: base XOR data, as long as the shorter.
    Xor,
}

/// The base key's value joined with the parameter's data, the leftmost `len`
/// bytes.
pub fn join(param: &Param, base: &Object, how: Join, len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let data = string_data(param)?;
    let value = key_value(base)?;
    let v = match how {
        Join::BaseFirst => Zeroizing::new([value, data].concat()),
        Join::DataFirst => Zeroizing::new([data, value].concat()),
        Join::Xor => Zeroizing::new(value.iter().zip(data).map(|(a, b)| a ^ b).collect()),
    };
    leftmost(v, len)
}

/// The default length of a join: everything it makes (§2.42: "the sum of
/// the lengths of the values of the base key and the data"; for XOR, the
/// shorter of the two).
pub fn join_len(param: &Param, base: &Object, how: Join) -> Result<usize> {
    let (d, b) = (string_data(param)?.len(), key_value(base)?.len());
    Ok(match how {
        Join::BaseFirst | Join::DataFirst => d + b,
        Join::Xor => d.min(b),
    })
}

/// Base-key bytes among the first `len` bytes of a join (and none of a
/// second key: there is none).
pub fn join_copied(param: &Param, base: &Object, how: Join, len: usize) -> [usize; 2] {
    [join_base_bytes(param, base, how, len), 0]
}

fn join_base_bytes(param: &Param, base: &Object, how: Join, len: usize) -> usize {
    let d = string_data(param).map_or(0, <[u8]>::len);
    let b = key_value(base).map_or(0, <[u8]>::len);
    match how {
        Join::BaseFirst => len.min(b),
        Join::DataFirst => len.saturating_sub(d).min(b),
        // XOR with known data: every byte is a base byte in disguise.
        Join::Xor => len.min(b),
    }
}

/// `CKM_EXTRACT_KEY_FROM_KEY`: `len` bytes of the base key's bits from bit
/// index `b` of the parameter (bit 0 is the most significant bit of the
/// first byte), wrapping around to its start (v3.0 §2.42.6: from 0x329F84A9,
/// 16 bits at index 21 are 0x9526). An index outside the key is
/// `CKR_MECHANISM_PARAM_INVALID`; more bits than the key has,
/// `CKR_TEMPLATE_INCONSISTENT`.
pub fn extract(param: &Param, base: &Object, len: usize) -> Result<Zeroizing<Vec<u8>>> {
    let value = key_value(base)?;
    let bits = value.len() * 8;
    let start = ulong_param(param)
        .and_then(|b| usize::try_from(b).ok())
        .filter(|&b| b < bits)
        .ok_or(Error::MechanismParamInvalid)?;
    if len > value.len() {
        return Err(Error::TemplateInconsistent);
    }
    let bit = |i: usize| (value[i / 8] >> (7 - i % 8)) & 1;
    let mut out = Zeroizing::new(vec![0u8; len]);
    for (j, byte) in out.iter_mut().enumerate() {
        for k in 0..8 {
            *byte = (*byte << 1) | bit((start + j * 8 + k) % bits);
        }
    }
    Ok(out)
}

/// The default length of an extraction: the whole base key (rotated).
pub fn extract_len(param: &Param, base: &Object) -> Result<usize> {
    ulong_param(param).ok_or(Error::MechanismParamInvalid)?;
    Ok(key_value(base)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::attrs::Attrs;
    use ferrohsm_store::AttrValue;

    fn key(value: &[u8]) -> Object {
        let mut attrs = Attrs::new();
        attrs.insert(CKA_CLASS, AttrValue::Ulong(CKO_SECRET_KEY as _));
        attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(CKK_GENERIC_SECRET as _));
        attrs.insert(CKA_VALUE, AttrValue::Bytes(value.to_vec()));
        Object {
            handle: 1,
            store_id: 1,
            owner: None,
            attrs,
            cache: Default::default(),
        }
    }

    fn ul(v: CK_ULONG) -> Param {
        Param::Raw(v.to_ne_bytes().to_vec())
    }

    #[test]
    fn extract_follows_the_specification_example() {
        let k = key(&[0x32, 0x9F, 0x84, 0xA9]);
        assert_eq!(*extract(&ul(21), &k, 2).unwrap(), vec![0x95, 0x26]);
        // Index 0, whole key: the key itself; index 8: rotated by a byte.
        assert_eq!(
            *extract(&ul(0), &k, 4).unwrap(),
            vec![0x32, 0x9F, 0x84, 0xA9]
        );
        assert_eq!(
            *extract(&ul(8), &k, 4).unwrap(),
            vec![0x9F, 0x84, 0xA9, 0x32]
        );
        assert_eq!(extract_len(&ul(3), &k), Ok(4));
        assert_eq!(
            extract(&ul(32), &k, 1).err(),
            Some(Error::MechanismParamInvalid)
        );
        assert_eq!(
            extract(&Param::None, &k, 1).err(),
            Some(Error::MechanismParamInvalid)
        );
        assert_eq!(
            extract(&ul(0), &k, 5).err(),
            Some(Error::TemplateInconsistent)
        );
    }

    #[test]
    fn joins() {
        let k = key(&[1, 2, 3, 4]);
        let d = Param::Raw(vec![0xF0, 0x0F]);
        assert_eq!(
            *join(&d, &k, Join::BaseFirst, 6).unwrap(),
            vec![1, 2, 3, 4, 0xF0, 0x0F]
        );
        assert_eq!(
            *join(&d, &k, Join::DataFirst, 6).unwrap(),
            vec![0xF0, 0x0F, 1, 2, 3, 4]
        );
        assert_eq!(
            *join(&d, &k, Join::DataFirst, 3).unwrap(),
            vec![0xF0, 0x0F, 1]
        );
        assert_eq!(*join(&d, &k, Join::Xor, 2).unwrap(), vec![0xF1, 0x0D]);
        assert_eq!(join_len(&d, &k, Join::BaseFirst), Ok(6));
        assert_eq!(join_len(&d, &k, Join::Xor), Ok(2));
        assert_eq!(
            join(&d, &k, Join::Xor, 3).err(),
            Some(Error::TemplateInconsistent)
        );
        assert_eq!(
            join(&Param::Raw(vec![]), &k, Join::BaseFirst, 1).err(),
            Some(Error::MechanismParamInvalid)
        );
        assert_eq!(join_copied(&d, &k, Join::DataFirst, 3), [1, 0]);
        assert_eq!(join_copied(&d, &k, Join::DataFirst, 2), [0, 0]);
        assert_eq!(join_copied(&d, &k, Join::BaseFirst, 5), [4, 0]);
        assert_eq!(join_copied(&d, &k, Join::Xor, 2), [2, 0]);
    }
}
