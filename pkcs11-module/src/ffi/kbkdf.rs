//! SP 800-108 mechanism parameters (`CK_SP800_108_KDF_PARAMS`,
//! `CK_SP800_108_FEEDBACK_KDF_PARAMS`): their data parameters and the
//! templates of their additional keys copied into `Param::Kbkdf`, and where
//! `C_DeriveKey` writes the additional keys' handles.

use cryptoki_sys::*;

use super::{copied, read};
use crate::error::{Error, Result};
use crate::mechanism::kdf::kbkdf::{self, Format, PrfData};
use crate::mechanism::{self, Param, ParamShape, Templates};

/// The `count` elements at `p` (NULL only with 0), at most `max` of them.
///
/// # Safety
/// `p` must be NULL or valid for `count` elements.
unsafe fn array<'a, T>(p: *const T, count: CK_ULONG, max: usize) -> Result<&'a [T]> {
    let n = usize::try_from(count).map_err(|_| Error::MechanismParamInvalid)?;
    if n > max || (p.is_null() && n != 0) {
        return Err(Error::MechanismParamInvalid);
    }
    if n == 0 {
        return Ok(&[]);
    }
    // SAFETY: non-NULL and valid for `n` elements by the caller's promise;
    // the C structures read here are plain integers and pointers.
    Ok(unsafe { std::slice::from_raw_parts(p, n) })
}

/// A counter or length format at `pValue`, which must be exactly `T`.
///
/// # Safety
/// `p.pValue` must be valid for `p.ulValueLen` bytes.
unsafe fn format_of<T: Copy>(p: &CK_PRF_DATA_PARAM) -> Result<T> {
    // SAFETY: forwarded caller promise; `read` checks the size.
    unsafe { read::<T>(p.pValue as *const u8, p.ulValueLen) }
}

/// The `CK_PRF_DATA_PARAM` array of an SP 800-108 parameter, copied.
///
/// # Safety
/// `p` must be valid for `n` elements whose `pValue` are valid as their
/// types say.
unsafe fn prf_data(p: *const CK_PRF_DATA_PARAM, n: CK_ULONG) -> Result<Vec<PrfData>> {
    // SAFETY: forwarded caller promise.
    let params = unsafe { array(p, n, kbkdf::MAX_DATA_PARAMS) }?;
    params
        .iter()
        .map(|d| {
            let counter = |f: CK_SP800_108_COUNTER_FORMAT| Format {
                little_endian: f.bLittleEndian,
                bits: f.ulWidthInBits,
            };
            Ok(match d.type_ {
                CK_SP800_108_ITERATION_VARIABLE if d.pValue.is_null() && d.ulValueLen == 0 => {
                    PrfData::Iteration(None)
                }
                CK_SP800_108_ITERATION_VARIABLE => {
                    // SAFETY: the caller promises pValue valid for ulValueLen.
                    PrfData::Iteration(Some(counter(unsafe { format_of(d) }?)))
                }
                // SAFETY: as above.
                CK_SP800_108_COUNTER => PrfData::Counter(counter(unsafe { format_of(d) }?)),
                CK_SP800_108_DKM_LENGTH => {
                    // SAFETY: as above.
                    let f: CK_SP800_108_DKM_LENGTH_FORMAT = unsafe { format_of(d) }?;
                    PrfData::DkmLength {
                        method: f.dkmLengthMethod,
                        format: Format {
                            little_endian: f.bLittleEndian,
                            bits: f.ulWidthInBits,
                        },
                    }
                }
                CK_SP800_108_BYTE_ARRAY => {
                    // SAFETY: the caller promises pValue valid for ulValueLen.
                    PrfData::Bytes(unsafe { copied(d.pValue as *const u8, d.ulValueLen) }?)
                }
                other => PrfData::Other(other),
            })
        })
        .collect()
}

/// The templates of `pAdditionalDerivedKeys`, copied; every `phKey` must be
/// writable (NULL is the parameter's fault).
///
/// # Safety
/// `p` must be valid for `n` elements whose templates are valid.
unsafe fn extra_keys(p: *const CK_DERIVED_KEY, n: CK_ULONG) -> Result<Templates> {
    // SAFETY: forwarded caller promise.
    let keys = unsafe { array(p, n, kbkdf::MAX_EXTRA_KEYS) }?;
    let mut out = Vec::with_capacity(keys.len());
    for k in keys {
        if k.phKey.is_null() {
            return Err(Error::MechanismParamInvalid);
        }
        // SAFETY: the caller promises pTemplate valid for ulAttributeCount.
        out.push(unsafe { super::template(k.pTemplate, k.ulAttributeCount) }?);
    }
    Ok(Templates(out))
}

/// `CK_SP800_108_KDF_PARAMS` (counter and double-pipeline modes).
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
pub(super) unsafe fn kbkdf_counter(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let k = unsafe { read::<CK_SP800_108_KDF_PARAMS>(p, len) }?;
    // SAFETY: the caller promises both arrays valid for their counts.
    let (data, extra) = unsafe {
        (
            prf_data(k.pDataParams, k.ulNumberOfDataParams)?,
            extra_keys(k.pAdditionalDerivedKeys, k.ulAdditionalDerivedKeys)?,
        )
    };
    Ok(Param::Kbkdf {
        prf: k.prfType,
        data,
        iv: None,
        extra,
    })
}

/// `CK_SP800_108_FEEDBACK_KDF_PARAMS`.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
pub(super) unsafe fn kbkdf_feedback(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let k = unsafe { read::<CK_SP800_108_FEEDBACK_KDF_PARAMS>(p, len) }?;
    // SAFETY: the caller promises the arrays and the IV valid for their lengths.
    let (data, extra, iv) = unsafe {
        (
            prf_data(k.pDataParams, k.ulNumberOfDataParams)?,
            extra_keys(k.pAdditionalDerivedKeys, k.ulAdditionalDerivedKeys)?,
            copied(k.pIV, k.ulIVLen)?,
        )
    };
    Ok(Param::Kbkdf {
        prf: k.prfType,
        data,
        iv: Some(iv),
        extra,
    })
}

/// Where `C_DeriveKey` writes the handles of the additional keys of an SP
/// 800-108 parameter (`phKey` of each `CK_DERIVED_KEY`, in order); empty for
/// other mechanisms. Call after `mechanism` accepted the parameter.
///
/// # Safety
/// As for `mechanism`.
pub(super) unsafe fn extra_key_outputs(
    p: *const CK_MECHANISM,
) -> Result<Vec<*mut CK_OBJECT_HANDLE>> {
    // SAFETY: `as_ref` checks for NULL; validity is the caller's promise.
    let m = unsafe { p.as_ref() }.ok_or(Error::ArgumentsBad)?;
    let shape = mechanism::lookup(m.mechanism).map_or(ParamShape::Bytes, |row| row.param);
    let (ptr, len) = (m.pParameter as *const u8, m.ulParameterLen);
    // SAFETY: forwarded caller promise (the structure the row names).
    let (keys, n) = unsafe {
        match shape {
            ParamShape::Kbkdf => {
                let k = read::<CK_SP800_108_KDF_PARAMS>(ptr, len)?;
                (k.pAdditionalDerivedKeys, k.ulAdditionalDerivedKeys)
            }
            ParamShape::KbkdfFeedback => {
                let k = read::<CK_SP800_108_FEEDBACK_KDF_PARAMS>(ptr, len)?;
                (k.pAdditionalDerivedKeys, k.ulAdditionalDerivedKeys)
            }
            _ => return Ok(Vec::new()),
        }
    };
    // SAFETY: forwarded caller promise.
    let keys = unsafe { array(keys, n, kbkdf::MAX_EXTRA_KEYS) }?;
    Ok(keys.iter().map(|k| k.phKey).collect())
}

#[cfg(test)]
mod tests {
    use std::ffi::c_void;
    use std::mem::size_of;

    use super::*;
    use crate::ffi::params::tests::{bytes_of, decode, refuses_other_lengths};

    #[test]
    fn sp800_108_both_layouts_and_outputs() {
        let mut counter = CK_SP800_108_COUNTER_FORMAT {
            bLittleEndian: 1,
            ulWidthInBits: 16,
        };
        let mut dkm = CK_SP800_108_DKM_LENGTH_FORMAT {
            dkmLengthMethod: CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
            bLittleEndian: 0,
            ulWidthInBits: 32,
        };
        let mut label = *b"label";
        let ptr = |p: *mut u8| p as *mut c_void;
        let mut data = [
            CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_ITERATION_VARIABLE,
                pValue: ptr(&mut counter as *mut _ as *mut u8),
                ulValueLen: size_of::<CK_SP800_108_COUNTER_FORMAT>() as CK_ULONG,
            },
            CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_BYTE_ARRAY,
                pValue: ptr(label.as_mut_ptr()),
                ulValueLen: 5,
            },
            CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_DKM_LENGTH,
                pValue: ptr(&mut dkm as *mut _ as *mut u8),
                ulValueLen: size_of::<CK_SP800_108_DKM_LENGTH_FORMAT>() as CK_ULONG,
            },
            CK_PRF_DATA_PARAM {
                type_: CK_SP800_108_KEY_HANDLE,
                pValue: std::ptr::null_mut(),
                ulValueLen: 0,
            },
        ];
        let mut len: CK_ULONG = 16;
        let mut tpl = [CK_ATTRIBUTE {
            type_: CKA_VALUE_LEN,
            pValue: ptr(&mut len as *mut _ as *mut u8),
            ulValueLen: size_of::<CK_ULONG>() as CK_ULONG,
        }];
        let mut handle: CK_OBJECT_HANDLE = 0;
        let mut extra = [CK_DERIVED_KEY {
            pTemplate: tpl.as_mut_ptr(),
            ulAttributeCount: 1,
            phKey: &mut handle,
        }];
        let k = CK_SP800_108_KDF_PARAMS {
            prfType: CKM_SHA256_HMAC,
            ulNumberOfDataParams: 4,
            pDataParams: data.as_mut_ptr(),
            ulAdditionalDerivedKeys: 1,
            pAdditionalDerivedKeys: extra.as_mut_ptr(),
        };
        let want_data = vec![
            PrfData::Iteration(Some(Format {
                little_endian: 1,
                bits: 16,
            })),
            PrfData::Bytes(label.to_vec()),
            PrfData::DkmLength {
                method: CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
                format: Format {
                    little_endian: 0,
                    bits: 32,
                },
            },
            PrfData::Other(CK_SP800_108_KEY_HANDLE),
        ];
        let want_extra = Templates(vec![vec![crate::object::policy::RawAttr::new(
            CKA_VALUE_LEN,
            &len.to_ne_bytes(),
        )]]);
        assert_eq!(
            decode(CKM_SP800_108_COUNTER_KDF, &k),
            Ok(Param::Kbkdf {
                prf: CKM_SHA256_HMAC,
                data: want_data.clone(),
                iv: None,
                extra: want_extra.clone(),
            })
        );
        refuses_other_lengths(CKM_SP800_108_COUNTER_KDF, &k, &[]);
        let mut iv = [7u8; 4];
        let f = CK_SP800_108_FEEDBACK_KDF_PARAMS {
            prfType: CKM_AES_CMAC,
            ulNumberOfDataParams: 4,
            pDataParams: data.as_mut_ptr(),
            ulIVLen: 4,
            pIV: iv.as_mut_ptr(),
            ulAdditionalDerivedKeys: 1,
            pAdditionalDerivedKeys: extra.as_mut_ptr(),
        };
        assert_eq!(
            decode(CKM_SP800_108_FEEDBACK_KDF, &f),
            Ok(Param::Kbkdf {
                prf: CKM_AES_CMAC,
                data: want_data,
                iv: Some(iv.to_vec()),
                extra: want_extra,
            })
        );
        // Where C_DeriveKey writes the additional handles.
        let mut kb = bytes_of(&k);
        let m = CK_MECHANISM {
            mechanism: CKM_SP800_108_COUNTER_KDF,
            pParameter: kb.as_mut_ptr() as *mut c_void,
            ulParameterLen: kb.len() as CK_ULONG,
        };
        // SAFETY: the structure and everything it points to are alive.
        let outs = unsafe { extra_key_outputs(&m) }.unwrap();
        assert_eq!(outs, vec![&mut handle as *mut CK_OBJECT_HANDLE]);
        // A wrong-sized counter format, a NULL phKey, too many parameters.
        let mut short = [CK_PRF_DATA_PARAM {
            ulValueLen: 8,
            ..data[0]
        }];
        let bad = CK_SP800_108_KDF_PARAMS {
            ulNumberOfDataParams: 1,
            pDataParams: short.as_mut_ptr(),
            ..k
        };
        assert_eq!(
            decode(CKM_SP800_108_COUNTER_KDF, &bad),
            Err(Error::MechanismParamInvalid)
        );
        let mut no_out = [CK_DERIVED_KEY {
            phKey: std::ptr::null_mut(),
            ..extra[0]
        }];
        let bad = CK_SP800_108_KDF_PARAMS {
            pAdditionalDerivedKeys: no_out.as_mut_ptr(),
            ..k
        };
        assert_eq!(
            decode(CKM_SP800_108_COUNTER_KDF, &bad),
            Err(Error::MechanismParamInvalid)
        );
        let many = CK_SP800_108_KDF_PARAMS {
            ulNumberOfDataParams: kbkdf::MAX_DATA_PARAMS as CK_ULONG + 1,
            ulAdditionalDerivedKeys: 0,
            pAdditionalDerivedKeys: std::ptr::null_mut(),
            ..k
        };
        assert_eq!(
            decode(CKM_SP800_108_COUNTER_KDF, &many),
            Err(Error::MechanismParamInvalid)
        );
        // CK_EXTRACT_PARAMS is flat.
        let bit: CK_EXTRACT_PARAMS = 21;
        assert_eq!(
            decode(CKM_EXTRACT_KEY_FROM_KEY, &bit),
            Ok(Param::Raw(bit.to_ne_bytes().to_vec()))
        );
    }
}
