//! Mechanism parameters: `CK_MECHANISM` in, a safe `MechanismArg` out. The
//! mechanism table names each row's parameter layout (`ParamShape`); this
//! file only reads that layout. Structures that hold pointers are read as
//! their `cryptoki-sys` type (`read_unaligned`, after checking the length is
//! exactly the structure's size) and the data they point to is copied.

use std::mem::size_of;

use cryptoki_sys::*;

use super::kbkdf::{kbkdf_counter, kbkdf_feedback};
use super::{copied, read};
use crate::error::{Error, Result};
use crate::mechanism::{self, MechanismArg, Param, ParamShape};

/// `CK_GCM_PARAMS` as PKCS#11 v2.40 headers declare it (no `ulIvBits`), still
/// sent by callers built against them.
#[repr(C)]
#[derive(Clone, Copy)]
struct GcmParamsV240 {
    iv: *mut CK_BYTE,
    iv_len: CK_ULONG,
    aad: *mut CK_BYTE,
    aad_len: CK_ULONG,
    tag_bits: CK_ULONG,
}

/// A mechanism and its parameter, read in the layout the mechanism table
/// gives the mechanism's row. Flat layouts, and the parameter of a mechanism
/// the table does not know (whose `C_*Init` then answers
/// `CKR_MECHANISM_INVALID`), are copied as bytes.
///
/// # Safety
/// `p` must be NULL or point to a `CK_MECHANISM` whose `pParameter` is NULL or
/// valid for `ulParameterLen` bytes, and whose embedded pointers are valid as
/// the parameter's type says.
pub(super) unsafe fn mechanism(p: *const CK_MECHANISM) -> Result<MechanismArg> {
    // SAFETY: `as_ref` checks for NULL; validity is the caller's promise.
    let m = unsafe { p.as_ref() }.ok_or(Error::ArgumentsBad)?;
    let shape = mechanism::lookup(m.mechanism).map_or(ParamShape::Bytes, |row| row.param);
    let (ptr, len) = (m.pParameter as *const u8, m.ulParameterLen);
    let param = if ptr.is_null() && len == 0 {
        Param::None
    } else {
        let read: unsafe fn(*const u8, CK_ULONG) -> Result<Param> = match shape {
            ParamShape::Gcm => gcm,
            ParamShape::Oaep => oaep,
            ParamShape::Ecdh => ecdh,
            ParamShape::Hkdf => hkdf,
            ParamShape::StringData => string_data,
            ParamShape::AesCbcData => cbc_data,
            ParamShape::Kbkdf => kbkdf_counter,
            ParamShape::KbkdfFeedback => kbkdf_feedback,
            ParamShape::Ccm => ccm,
            ParamShape::ChaChaPoly => chacha_poly,
            ParamShape::ChaCha20 => chacha20,
            ParamShape::Eddsa => eddsa,
            ParamShape::None
            | ParamShape::Bytes
            | ParamShape::Ctr
            | ParamShape::Pss
            | ParamShape::MacGeneral
            | ParamShape::KeyHandle
            | ParamShape::Extract => flat,
        };
        // SAFETY: forwarded caller promise: `pParameter` is valid for
        // `ulParameterLen` bytes holding the parameter of this mechanism, the
        // structure its table row names, whose pointers are valid.
        unsafe { read(ptr, len) }?
    };
    Ok(MechanismArg {
        ty: m.mechanism,
        param,
    })
}

/// A mechanism whose parameter is copied as flat bytes whatever the row's
/// layout, no pointer in it followed: for `C_MessageEncryptInit` and
/// `C_MessageDecryptInit`, where callers (the `cryptoki` crate among them)
/// pass the first message's parameter (`CK_GCM_MESSAGE_PARAMS`), which must
/// not be read as the row's `CK_GCM_PARAMS` (same size, other fields).
///
/// # Safety
/// `p` must be NULL or point to a `CK_MECHANISM` whose `pParameter` is NULL or
/// valid for `ulParameterLen` bytes.
pub(super) unsafe fn flat_mechanism(p: *const CK_MECHANISM) -> Result<MechanismArg> {
    // SAFETY: `as_ref` checks for NULL; validity is the caller's promise.
    let m = unsafe { p.as_ref() }.ok_or(Error::ArgumentsBad)?;
    Ok(MechanismArg {
        ty: m.mechanism,
        // SAFETY: forwarded caller promise for pParameter.
        param: unsafe { flat(m.pParameter as *const u8, m.ulParameterLen) }?,
    })
}

/// A flat parameter: its bytes, checked by the family's builder; an empty
/// one is no parameter.
///
/// # Safety
/// `p` must be NULL or valid for `len` bytes.
unsafe fn flat(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let bytes = unsafe { copied(p, len) }?;
    Ok(if bytes.is_empty() {
        Param::None
    } else {
        Param::Raw(bytes)
    })
}

/// `CK_GCM_PARAMS` in either layout, told apart by size: v3.0 (pIv, ulIvLen,
/// ulIvBits, pAAD, ulAADLen, ulTagBits) or the v2.40 one without ulIvBits.
/// `ulIvBits` is informative only and ignored.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
unsafe fn gcm(p: *const u8, len: CK_ULONG) -> Result<Param> {
    let g = if usize::try_from(len).ok() == Some(size_of::<GcmParamsV240>()) {
        // SAFETY: forwarded caller promise; the length is the v2.40 size.
        unsafe { read::<GcmParamsV240>(p, len) }?
    } else {
        // SAFETY: forwarded caller promise; `read` checks the v3.0 size.
        let g = unsafe { read::<CK_GCM_PARAMS>(p, len) }?;
        GcmParamsV240 {
            iv: g.pIv,
            iv_len: g.ulIvLen,
            aad: g.pAAD,
            aad_len: g.ulAADLen,
            tag_bits: g.ulTagBits,
        }
    };
    // SAFETY: the caller promises pIv/pAAD valid for ulIvLen/ulAADLen bytes.
    let (iv, aad) = unsafe { (copied(g.iv, g.iv_len)?, copied(g.aad, g.aad_len)?) };
    Ok(Param::Gcm {
        iv,
        aad,
        tag_bits: g.tag_bits as u64,
    })
}

/// `CK_RSA_PKCS_OAEP_PARAMS`, with the label (`pSourceData`) copied.
///
/// # Safety
/// `p` must be valid for `len` bytes and pSourceData for its length.
unsafe fn oaep(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let o = unsafe { read::<CK_RSA_PKCS_OAEP_PARAMS>(p, len) }?;
    // SAFETY: the caller promises pSourceData valid for ulSourceDataLen.
    let label = unsafe { copied(o.pSourceData as *const CK_BYTE, o.ulSourceDataLen) }?;
    Ok(Param::Oaep {
        hash: o.hashAlg,
        mgf: o.mgf,
        source: o.source,
        label,
    })
}

/// `CK_ECDH1_DERIVE_PARAMS`, with the shared data and public point copied.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
unsafe fn ecdh(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let e = unsafe { read::<CK_ECDH1_DERIVE_PARAMS>(p, len) }?;
    // SAFETY: the caller promises each pointer valid for its length.
    let (shared, public) = unsafe {
        (
            copied(e.pSharedData, e.ulSharedDataLen)?,
            copied(e.pPublicData, e.ulPublicDataLen)?,
        )
    };
    Ok(Param::Ecdh {
        kdf: e.kdf,
        shared,
        public,
    })
}

/// `CK_HKDF_PARAMS`, with the salt and info copied.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
unsafe fn hkdf(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let h = unsafe { read::<CK_HKDF_PARAMS>(p, len) }?;
    // SAFETY: the caller promises pSalt and pInfo valid for their lengths.
    let (salt, info) = unsafe { (copied(h.pSalt, h.ulSaltLen)?, copied(h.pInfo, h.ulInfoLen)?) };
    Ok(Param::Hkdf {
        extract: h.bExtract != 0,
        expand: h.bExpand != 0,
        prf: h.prfHashMechanism,
        salt_type: h.ulSaltType,
        salt,
        salt_key: h.hSaltKey,
        info,
    })
}

/// `CK_KEY_DERIVATION_STRING_DATA`: the data it points to, as `Param::Raw`.
///
/// # Safety
/// `p` must be valid for `len` bytes and pData for ulLen bytes.
unsafe fn string_data(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let s = unsafe { read::<CK_KEY_DERIVATION_STRING_DATA>(p, len) }?;
    // SAFETY: the caller promises pData valid for ulLen bytes.
    Ok(Param::Raw(unsafe { copied(s.pData, s.ulLen) }?))
}

/// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`: the IV and the data it points to.
///
/// # Safety
/// `p` must be valid for `len` bytes and pData for its length.
unsafe fn cbc_data(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let c = unsafe { read::<CK_AES_CBC_ENCRYPT_DATA_PARAMS>(p, len) }?;
    // SAFETY: the caller promises pData valid for `length` bytes.
    let data = unsafe { copied(c.pData, c.length) }?;
    Ok(Param::AesCbcData { iv: c.iv, data })
}

/// `CK_CCM_PARAMS` (v3.0; v2.40's `CK_AES_CCM_PARAMS` has the same layout),
/// with the nonce and AAD copied.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
unsafe fn ccm(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let c = unsafe { read::<CK_CCM_PARAMS>(p, len) }?;
    // SAFETY: the caller promises pNonce and pAAD valid for their lengths.
    let (nonce, aad) = unsafe { (copied(c.pNonce, c.ulNonceLen)?, copied(c.pAAD, c.ulAADLen)?) };
    Ok(Param::Ccm {
        data_len: c.ulDataLen as u64,
        nonce,
        aad,
        mac_len: c.ulMACLen as u64,
    })
}

/// `CK_SALSA20_CHACHA20_POLY1305_PARAMS`, with the nonce and AAD copied.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for their lengths.
unsafe fn chacha_poly(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let c = unsafe { read::<CK_SALSA20_CHACHA20_POLY1305_PARAMS>(p, len) }?;
    // SAFETY: the caller promises pNonce and pAAD valid for their lengths.
    let (nonce, aad) = unsafe { (copied(c.pNonce, c.ulNonceLen)?, copied(c.pAAD, c.ulAADLen)?) };
    Ok(Param::ChaChaPoly { nonce, aad })
}

/// `CK_CHACHA20_PARAMS`: the block counter and nonce, whose lengths are
/// given in bits; a length that is no whole number of bytes (or absurdly
/// long) is the parameter's fault.
///
/// # Safety
/// `p` must be valid for `len` bytes and its pointers valid for the byte
/// lengths of their bit counts.
unsafe fn chacha20(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let c = unsafe { read::<CK_CHACHA20_PARAMS>(p, len) }?;
    let bytes = |bits: CK_ULONG| {
        if !bits.is_multiple_of(8) || bits > 256 {
            return Err(Error::MechanismParamInvalid);
        }
        Ok(bits / 8)
    };
    let (counter_len, nonce_len) = (bytes(c.blockCounterBits)?, bytes(c.ulNonceBits)?);
    // SAFETY: the caller promises both pointers valid for their lengths.
    let (counter, nonce) = unsafe {
        (
            copied(c.pBlockCounter, counter_len)?,
            copied(c.pNonce, nonce_len)?,
        )
    };
    Ok(Param::ChaCha20 {
        counter,
        counter_bits: c.blockCounterBits as u64,
        nonce,
        nonce_bits: c.ulNonceBits as u64,
    })
}

/// `CK_EDDSA_PARAMS`: `phFlag` and the context data, copied.
///
/// # Safety
/// `p` must be valid for `len` bytes and pContextData for its length.
unsafe fn eddsa(p: *const u8, len: CK_ULONG) -> Result<Param> {
    // SAFETY: forwarded caller promise.
    let e = unsafe { read::<CK_EDDSA_PARAMS>(p, len) }?;
    // SAFETY: the caller promises pContextData valid for ulContextDataLen.
    let context = unsafe { copied(e.pContextData, e.ulContextDataLen) }?;
    Ok(Param::Eddsa {
        prehash: e.phFlag != 0,
        context,
    })
}

#[cfg(test)]
pub(super) mod tests {
    use std::ffi::c_void;

    use super::*;

    /// Decodes `param` (its bytes, exactly as a C caller lays it out) as the
    /// parameter of `ty`.
    pub(in crate::ffi) fn decode<T>(ty: CK_MECHANISM_TYPE, param: &T) -> Result<Param> {
        decode_len(ty, param, size_of::<T>())
    }

    /// The same with `ulParameterLen` given: the bytes of `param`, cut or
    /// zero-extended to `len`, in a buffer of their own (the pointers inside
    /// still point to the test's data).
    fn decode_len<T>(ty: CK_MECHANISM_TYPE, param: &T, len: usize) -> Result<Param> {
        let mut buf = bytes_of(param);
        buf.resize(len, 0);
        let m = CK_MECHANISM {
            mechanism: ty,
            pParameter: buf.as_mut_ptr() as *mut c_void,
            ulParameterLen: len as CK_ULONG,
        };
        // SAFETY: `pParameter` holds `len` bytes; the pointers in them point
        // into data the test keeps alive for the call.
        unsafe { mechanism(&m) }.map(|a| {
            assert_eq!(a.ty, ty);
            a.param
        })
    }

    pub(in crate::ffi) fn bytes_of<T>(v: &T) -> Vec<u8> {
        // SAFETY: a `T` is valid for `size_of::<T>()` bytes, all initialised:
        // the test structures have no padding, except CK_HKDF_PARAMS, which
        // the test zeroes before it sets the fields.
        unsafe { std::slice::from_raw_parts(v as *const T as *const u8, size_of::<T>()) }.to_vec()
    }

    /// Every wrong length of a structure with pointers is refused.
    pub(in crate::ffi) fn refuses_other_lengths<T>(
        ty: CK_MECHANISM_TYPE,
        param: &T,
        also_ok: &[usize],
    ) {
        for len in [
            1,
            size_of::<T>() - 8,
            size_of::<T>() - 1,
            size_of::<T>() + 1,
            size_of::<T>() + 8,
        ] {
            if also_ok.contains(&len) {
                continue;
            }
            assert_eq!(
                decode_len(ty, param, len).err(),
                Some(Error::MechanismParamInvalid),
                "{ty:#x} with {len} bytes"
            );
        }
    }

    #[test]
    fn gcm_both_layouts() {
        let (mut iv, mut aad) = ([9u8; 12], *b"header");
        let want = Param::Gcm {
            iv: iv.to_vec(),
            aad: aad.to_vec(),
            tag_bits: 96,
        };
        let v3 = CK_GCM_PARAMS {
            pIv: iv.as_mut_ptr(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: aad.as_mut_ptr(),
            ulAADLen: 6,
            ulTagBits: 96,
        };
        assert_eq!(decode(CKM_AES_GCM, &v3), Ok(want.clone()));
        let v240 = GcmParamsV240 {
            iv: iv.as_mut_ptr(),
            iv_len: 12,
            aad: aad.as_mut_ptr(),
            aad_len: 6,
            tag_bits: 96,
        };
        assert_eq!(decode(CKM_AES_GCM, &v240), Ok(want));
        refuses_other_lengths(CKM_AES_GCM, &v3, &[size_of::<GcmParamsV240>()]);
        // A NULL IV with a length is the parameter's fault.
        let null_iv = CK_GCM_PARAMS {
            pIv: std::ptr::null_mut(),
            ..v3
        };
        assert_eq!(
            decode(CKM_AES_GCM, &null_iv),
            Err(Error::MechanismParamInvalid)
        );
    }

    #[test]
    fn oaep() {
        let mut label = *b"label";
        let o = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source: CKZ_DATA_SPECIFIED,
            pSourceData: label.as_mut_ptr() as *mut c_void,
            ulSourceDataLen: 5,
        };
        assert_eq!(
            decode(CKM_RSA_PKCS_OAEP, &o),
            Ok(Param::Oaep {
                hash: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                source: CKZ_DATA_SPECIFIED,
                label: label.to_vec(),
            })
        );
        refuses_other_lengths(CKM_RSA_PKCS_OAEP, &o, &[]);
        let null = CK_RSA_PKCS_OAEP_PARAMS {
            pSourceData: std::ptr::null_mut(),
            ..o
        };
        assert_eq!(
            decode(CKM_RSA_PKCS_OAEP, &null),
            Err(Error::MechanismParamInvalid)
        );
        let empty = CK_RSA_PKCS_OAEP_PARAMS {
            pSourceData: std::ptr::null_mut(),
            ulSourceDataLen: 0,
            ..o
        };
        assert!(matches!(
            decode(CKM_RSA_PKCS_OAEP, &empty),
            Ok(Param::Oaep { label, .. }) if label.is_empty()
        ));
    }

    #[test]
    fn ecdh() {
        let (mut shared, mut public) = (*b"info", [4u8; 65]);
        let e = CK_ECDH1_DERIVE_PARAMS {
            kdf: CKD_SHA256_KDF,
            ulSharedDataLen: 4,
            pSharedData: shared.as_mut_ptr(),
            ulPublicDataLen: 65,
            pPublicData: public.as_mut_ptr(),
        };
        assert_eq!(
            decode(CKM_ECDH1_DERIVE, &e),
            Ok(Param::Ecdh {
                kdf: CKD_SHA256_KDF,
                shared: shared.to_vec(),
                public: public.to_vec(),
            })
        );
        refuses_other_lengths(CKM_ECDH1_DERIVE, &e, &[]);
    }

    #[test]
    fn eddsa() {
        let mut ctx = *b"context";
        // Zeroed first: the padding after phFlag is initialised when the
        // test copies the structure's bytes.
        // SAFETY: all-zero bytes are a CK_EDDSA_PARAMS (integers, NULL pointer).
        let mut e: CK_EDDSA_PARAMS = unsafe { std::mem::zeroed() };
        e.phFlag = CK_TRUE;
        e.ulContextDataLen = 7;
        e.pContextData = ctx.as_mut_ptr();
        assert_eq!(
            decode(CKM_EDDSA, &e),
            Ok(Param::Eddsa {
                prehash: true,
                context: ctx.to_vec(),
            })
        );
        e.phFlag = CK_FALSE;
        e.ulContextDataLen = 0;
        e.pContextData = std::ptr::null_mut();
        assert_eq!(
            decode(CKM_EDDSA, &e),
            Ok(Param::Eddsa {
                prehash: false,
                context: Vec::new(),
            })
        );
        refuses_other_lengths(CKM_EDDSA, &e, &[]);
    }

    #[test]
    fn hkdf_both_mechanisms() {
        let (mut salt, mut info) = (*b"salt", *b"context");
        // Zeroed first, so the padding after the two flags is initialised
        // when the test copies the structure's bytes.
        // SAFETY: all-zero bytes are a CK_HKDF_PARAMS (integers, NULL pointers).
        let mut h: CK_HKDF_PARAMS = unsafe { std::mem::zeroed() };
        h.bExtract = CK_TRUE;
        h.bExpand = CK_FALSE;
        h.prfHashMechanism = CKM_SHA384;
        h.ulSaltType = CKF_HKDF_SALT_DATA;
        h.pSalt = salt.as_mut_ptr();
        h.ulSaltLen = 4;
        h.hSaltKey = 77;
        h.pInfo = info.as_mut_ptr();
        h.ulInfoLen = 7;
        for ty in [CKM_HKDF_DERIVE, CKM_HKDF_DATA] {
            assert_eq!(
                decode(ty, &h),
                Ok(Param::Hkdf {
                    extract: true,
                    expand: false,
                    prf: CKM_SHA384,
                    salt_type: CKF_HKDF_SALT_DATA,
                    salt: salt.to_vec(),
                    salt_key: 77,
                    info: info.to_vec(),
                })
            );
            refuses_other_lengths(ty, &h, &[]);
        }
    }

    #[test]
    fn string_data_and_cbc_data() {
        let mut data = [0x33u8; 32];
        let s = CK_KEY_DERIVATION_STRING_DATA {
            pData: data.as_mut_ptr(),
            ulLen: 32,
        };
        assert_eq!(
            decode(CKM_AES_ECB_ENCRYPT_DATA, &s),
            Ok(Param::Raw(data.to_vec()))
        );
        refuses_other_lengths(CKM_AES_ECB_ENCRYPT_DATA, &s, &[]);
        let c = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
            iv: [0x44; 16],
            pData: data.as_mut_ptr(),
            length: 32,
        };
        assert_eq!(
            decode(CKM_AES_CBC_ENCRYPT_DATA, &c),
            Ok(Param::AesCbcData {
                iv: [0x44; 16],
                data: data.to_vec(),
            })
        );
        refuses_other_lengths(CKM_AES_CBC_ENCRYPT_DATA, &c, &[]);
    }

    #[test]
    fn flat_shapes_are_their_bytes() {
        let ctr = CK_AES_CTR_PARAMS {
            ulCounterBits: 32,
            cb: [7; 16],
        };
        assert_eq!(decode(CKM_AES_CTR, &ctr), Ok(Param::Raw(bytes_of(&ctr))));
        let pss = CK_RSA_PKCS_PSS_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            sLen: 32,
        };
        for ty in [CKM_RSA_PKCS_PSS, CKM_SHA256_RSA_PKCS_PSS] {
            assert_eq!(decode(ty, &pss), Ok(Param::Raw(bytes_of(&pss))));
        }
        let n: CK_MAC_GENERAL_PARAMS = 12;
        assert_eq!(
            decode(CKM_SHA256_HMAC_GENERAL, &n),
            Ok(Param::Raw(n.to_ne_bytes().to_vec()))
        );
        let h: CK_OBJECT_HANDLE = 5;
        assert_eq!(
            decode(CKM_CONCATENATE_BASE_AND_KEY, &h),
            Ok(Param::Raw(h.to_ne_bytes().to_vec()))
        );
        let iv = [1u8; 16];
        assert_eq!(decode(CKM_AES_CBC, &iv), Ok(Param::Raw(iv.to_vec())));
        // Flat parameters of any length reach the builder, which judges them.
        assert_eq!(
            decode_len(CKM_AES_CBC, &iv, 8),
            Ok(Param::Raw(iv[..8].to_vec()))
        );
        // A digest's (refused) parameter is still copied for the builder.
        assert_eq!(decode(CKM_SHA256, &[5u8]), Ok(Param::Raw(vec![5])));
    }

    #[test]
    fn none_null_and_unknown() {
        // NULL/0 is no parameter, whatever the shape.
        for ty in [CKM_SHA256, CKM_AES_GCM, CKM_AES_CBC] {
            let m = CK_MECHANISM {
                mechanism: ty,
                pParameter: std::ptr::null_mut(),
                ulParameterLen: 0,
            };
            // SAFETY: NULL parameter with length 0.
            let r = unsafe { mechanism(&m) };
            assert_eq!(r.map(|a| a.param), Ok(Param::None));
        }
        // NULL with a length: the parameter is invalid.
        let m = CK_MECHANISM {
            mechanism: CKM_AES_CBC,
            pParameter: std::ptr::null_mut(),
            ulParameterLen: 16,
        };
        // SAFETY: a NULL pParameter is never read.
        let r = unsafe { mechanism(&m) };
        assert_eq!(r.err(), Some(Error::MechanismParamInvalid));
        // SAFETY: NULL is refused before it is read.
        let r = unsafe { mechanism(std::ptr::null()) };
        assert_eq!(r.err(), Some(Error::ArgumentsBad));
        // A mechanism the table does not know: its bytes, untouched, for
        // C_*Init to answer CKR_MECHANISM_INVALID.
        let (mut iv, mut aad) = ([9u8; 12], [0u8; 0]);
        let g = CK_GCM_PARAMS {
            pIv: iv.as_mut_ptr(),
            ulIvLen: 12,
            ulIvBits: 96,
            pAAD: aad.as_mut_ptr(),
            ulAADLen: 0,
            ulTagBits: 128,
        };
        assert_eq!(decode(CKM_AES_OFB, &g), Ok(Param::Raw(bytes_of(&g))));
    }

    #[test]
    fn ccm_chacha_poly_and_chacha20() {
        let (mut nonce, mut aad) = ([7u8; 13], *b"header");
        let c = CK_CCM_PARAMS {
            ulDataLen: 40,
            pNonce: nonce.as_mut_ptr(),
            ulNonceLen: 13,
            pAAD: aad.as_mut_ptr(),
            ulAADLen: 6,
            ulMACLen: 12,
        };
        assert_eq!(
            decode(CKM_AES_CCM, &c),
            Ok(Param::Ccm {
                data_len: 40,
                nonce: nonce.to_vec(),
                aad: aad.to_vec(),
                mac_len: 12,
            })
        );
        refuses_other_lengths(CKM_AES_CCM, &c, &[]);
        let null_aad = CK_CCM_PARAMS {
            pAAD: std::ptr::null_mut(),
            ..c
        };
        assert_eq!(
            decode(CKM_AES_CCM, &null_aad),
            Err(Error::MechanismParamInvalid)
        );
        let p = CK_SALSA20_CHACHA20_POLY1305_PARAMS {
            pNonce: nonce.as_mut_ptr(),
            ulNonceLen: 12,
            pAAD: aad.as_mut_ptr(),
            ulAADLen: 6,
        };
        assert_eq!(
            decode(CKM_CHACHA20_POLY1305, &p),
            Ok(Param::ChaChaPoly {
                nonce: nonce[..12].to_vec(),
                aad: aad.to_vec(),
            })
        );
        refuses_other_lengths(CKM_CHACHA20_POLY1305, &p, &[]);
        let mut counter = [1u8, 0, 0, 0];
        let c20 = CK_CHACHA20_PARAMS {
            pBlockCounter: counter.as_mut_ptr(),
            blockCounterBits: 32,
            pNonce: nonce.as_mut_ptr(),
            ulNonceBits: 96,
        };
        assert_eq!(
            decode(CKM_CHACHA20, &c20),
            Ok(Param::ChaCha20 {
                counter: counter.to_vec(),
                counter_bits: 32,
                nonce: nonce[..12].to_vec(),
                nonce_bits: 96,
            })
        );
        refuses_other_lengths(CKM_CHACHA20, &c20, &[]);
        for bad_bits in [31, 1 << 40] {
            let bad = CK_CHACHA20_PARAMS {
                blockCounterBits: bad_bits,
                ..c20
            };
            assert_eq!(
                decode(CKM_CHACHA20, &bad),
                Err(Error::MechanismParamInvalid)
            );
        }
    }
}
