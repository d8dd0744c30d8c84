//! Owned PKCS#11 mechanisms with pointer parameters (GCM, OAEP, HKDF, ECDH,
//! encrypt-data, concatenation, extraction, SP 800-108) for the raw-ABI tests of wrapping and
//! derivation: `with_mech` lays the C structures out for one call.

use std::ffi::c_void;
use std::mem::size_of;
use std::ptr;

use cryptoki_sys::*;

/// HKDF salt choice.
#[derive(Clone, Debug)]
pub enum Salt {
    /// `CKF_HKDF_SALT_NULL`.
    Null,
    /// `CKF_HKDF_SALT_DATA`.
    Data(Vec<u8>),
    /// `CKF_HKDF_SALT_KEY`.
    Key(CK_OBJECT_HANDLE),
}

/// A mechanism with its parameter, owned.
#[derive(Clone, Debug)]
pub enum Mech {
    /// No parameter.
    Plain(CK_MECHANISM_TYPE),
    /// A flat byte-string parameter (an IV).
    Bytes(CK_MECHANISM_TYPE, Vec<u8>),
    /// v3.0 `CK_GCM_PARAMS` with this IV, 128-bit tag, no AAD.
    Gcm(Vec<u8>),
    /// `CK_RSA_PKCS_OAEP_PARAMS`: SHA-256, MGF1-SHA-256, empty label.
    Oaep,
    /// `CK_HKDF_PARAMS` with SHA-256 (`data`: `CKM_HKDF_DATA`).
    Hkdf {
        /// `CKM_HKDF_DATA` rather than `CKM_HKDF_DERIVE`.
        data: bool,
        /// `bExtract`.
        extract: bool,
        /// `bExpand`.
        expand: bool,
        /// The salt.
        salt: Salt,
        /// `pInfo`.
        info: Vec<u8>,
    },
    /// `CK_KEY_DERIVATION_STRING_DATA` (`CKM_AES_ECB_ENCRYPT_DATA`).
    StrData(CK_MECHANISM_TYPE, Vec<u8>),
    /// `CK_AES_CBC_ENCRYPT_DATA_PARAMS`.
    CbcData([u8; 16], Vec<u8>),
    /// `CKM_CONCATENATE_BASE_AND_KEY` with the other key's handle.
    Concat(CK_OBJECT_HANDLE),
    /// `CK_ECDH1_DERIVE_PARAMS`, `CKD_NULL`.
    Ecdh(Vec<u8>),
    /// `CK_AES_CTR_PARAMS`: counter bits and counter block.
    Ctr(CK_ULONG, [u8; 16]),
    /// v3.0 `CK_GCM_PARAMS` (48 bytes) with every field chosen.
    GcmFull {
        /// The IV.
        iv: Vec<u8>,
        /// Additional authenticated data.
        aad: Vec<u8>,
        /// `ulTagBits`.
        tag_bits: CK_ULONG,
    },
    /// The pre-v3.0 `CK_GCM_PARAMS` layout (no `ulIvBits`; 40 bytes).
    Gcm40 {
        /// The IV.
        iv: Vec<u8>,
        /// Additional authenticated data.
        aad: Vec<u8>,
        /// `ulTagBits`.
        tag_bits: CK_ULONG,
    },
    /// `CK_MAC_GENERAL_PARAMS` (one `CK_ULONG`) for a `*_GENERAL` mechanism.
    General(CK_MECHANISM_TYPE, CK_ULONG),
    /// `CKM_EXTRACT_KEY_FROM_KEY` with this bit index (`CK_EXTRACT_PARAMS`).
    Extract(CK_ULONG),
    /// `CKM_SP800_108_COUNTER_KDF` with this PRF: a 32-bit big-endian counter,
    /// then this label; no additional keys.
    Kbkdf(CK_MECHANISM_TYPE, Vec<u8>),
}

/// The pre-v3.0 `CK_GCM_PARAMS` (no `ulIvBits`): 40 bytes on 64-bit Linux.
#[repr(C)]
struct GcmParams40 {
    p_iv: *mut u8,
    iv_len: CK_ULONG,
    p_aad: *mut u8,
    aad_len: CK_ULONG,
    tag_bits: CK_ULONG,
}

impl Mech {
    /// The `CKM_*` this builds.
    pub fn ty(&self) -> CK_MECHANISM_TYPE {
        match self {
            Mech::Plain(t) | Mech::Bytes(t, _) | Mech::StrData(t, _) | Mech::General(t, _) => *t,
            Mech::Gcm(_) | Mech::GcmFull { .. } | Mech::Gcm40 { .. } => CKM_AES_GCM,
            Mech::Oaep => CKM_RSA_PKCS_OAEP,
            Mech::Hkdf { data: true, .. } => CKM_HKDF_DATA,
            Mech::Hkdf { .. } => CKM_HKDF_DERIVE,
            Mech::CbcData(..) => CKM_AES_CBC_ENCRYPT_DATA,
            Mech::Concat(_) => CKM_CONCATENATE_BASE_AND_KEY,
            Mech::Ecdh(_) => CKM_ECDH1_DERIVE,
            Mech::Ctr(..) => CKM_AES_CTR,
            Mech::Extract(_) => CKM_EXTRACT_KEY_FROM_KEY,
            Mech::Kbkdf(..) => CKM_SP800_108_COUNTER_KDF,
        }
    }
}

/// A buffer as a C pointer: NULL when empty (as clients pass "no data").
pub fn opt_ptr(v: &mut [u8]) -> *mut u8 {
    if v.is_empty() {
        ptr::null_mut()
    } else {
        v.as_mut_ptr()
    }
}

/// `CKM_AES_KEY_WRAP_KWP`.
pub fn kwp() -> Mech {
    Mech::Plain(CKM_AES_KEY_WRAP_KWP)
}

/// A mechanism whose parameter is `*p` (its size as the length); the caller
/// keeps `p` alive, and unmoved, while the mechanism is used.
pub fn mech_of<P>(ty: CK_MECHANISM_TYPE, p: &mut P) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: ty,
        pParameter: p as *mut P as *mut c_void,
        ulParameterLen: size_of::<P>() as CK_ULONG,
    }
}

/// Builds the `CK_MECHANISM` for `mech` on the stack and passes it to `f`.
pub fn with_mech<R>(mech: &Mech, f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R {
    let opt = opt_ptr;
    match mech {
        Mech::Plain(t) => f(&mut CK_MECHANISM {
            mechanism: *t,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        }),
        Mech::Bytes(t, p) => {
            let mut p = p.clone();
            f(&mut CK_MECHANISM {
                mechanism: *t,
                pParameter: opt(&mut p) as *mut c_void,
                ulParameterLen: p.len() as CK_ULONG,
            })
        }
        Mech::Gcm(iv) => {
            let mut iv = iv.clone();
            let mut prm = CK_GCM_PARAMS {
                pIv: iv.as_mut_ptr(),
                ulIvLen: iv.len() as CK_ULONG,
                ulIvBits: (iv.len() * 8) as CK_ULONG,
                pAAD: ptr::null_mut(),
                ulAADLen: 0,
                ulTagBits: 128,
            };
            f(&mut mech_of(CKM_AES_GCM, &mut prm))
        }
        Mech::Oaep => {
            let mut prm = CK_RSA_PKCS_OAEP_PARAMS {
                hashAlg: CKM_SHA256,
                mgf: CKG_MGF1_SHA256,
                source: CKZ_DATA_SPECIFIED,
                pSourceData: ptr::null_mut(),
                ulSourceDataLen: 0,
            };
            f(&mut mech_of(CKM_RSA_PKCS_OAEP, &mut prm))
        }
        Mech::Hkdf {
            data,
            extract,
            expand,
            salt,
            info,
        } => {
            let mut info = info.clone();
            let (ty, mut sbytes, skey) = match salt {
                Salt::Null => (CKF_HKDF_SALT_NULL, Vec::new(), CK_INVALID_HANDLE),
                Salt::Data(s) => (CKF_HKDF_SALT_DATA, s.clone(), CK_INVALID_HANDLE),
                Salt::Key(h) => (CKF_HKDF_SALT_KEY, Vec::new(), *h),
            };
            let mut prm = CK_HKDF_PARAMS {
                bExtract: if *extract { CK_TRUE } else { CK_FALSE },
                bExpand: if *expand { CK_TRUE } else { CK_FALSE },
                prfHashMechanism: CKM_SHA256,
                ulSaltType: ty,
                pSalt: opt(&mut sbytes),
                ulSaltLen: sbytes.len() as CK_ULONG,
                hSaltKey: skey,
                pInfo: opt(&mut info),
                ulInfoLen: info.len() as CK_ULONG,
            };
            let t = if *data {
                CKM_HKDF_DATA
            } else {
                CKM_HKDF_DERIVE
            };
            f(&mut mech_of(t, &mut prm))
        }
        Mech::StrData(t, d) => {
            let mut d = d.clone();
            let mut prm = CK_KEY_DERIVATION_STRING_DATA {
                pData: opt(&mut d),
                ulLen: d.len() as CK_ULONG,
            };
            f(&mut mech_of(*t, &mut prm))
        }
        Mech::CbcData(iv, d) => {
            let mut d = d.clone();
            let mut prm = CK_AES_CBC_ENCRYPT_DATA_PARAMS {
                iv: *iv,
                pData: opt(&mut d),
                length: d.len() as CK_ULONG,
            };
            f(&mut mech_of(CKM_AES_CBC_ENCRYPT_DATA, &mut prm))
        }
        Mech::Concat(h) => {
            let mut h: CK_OBJECT_HANDLE = *h;
            f(&mut mech_of(CKM_CONCATENATE_BASE_AND_KEY, &mut h))
        }
        Mech::Ecdh(point) => {
            let mut point = point.clone();
            let mut prm = CK_ECDH1_DERIVE_PARAMS {
                kdf: CKD_NULL,
                ulSharedDataLen: 0,
                pSharedData: ptr::null_mut(),
                ulPublicDataLen: point.len() as CK_ULONG,
                pPublicData: point.as_mut_ptr(),
            };
            f(&mut mech_of(CKM_ECDH1_DERIVE, &mut prm))
        }
        Mech::Ctr(bits, cb) => {
            let mut prm = CK_AES_CTR_PARAMS {
                ulCounterBits: *bits,
                cb: *cb,
            };
            f(&mut mech_of(CKM_AES_CTR, &mut prm))
        }
        Mech::GcmFull { iv, aad, tag_bits } => {
            let (mut iv, mut aad) = (iv.clone(), aad.clone());
            let mut prm = CK_GCM_PARAMS {
                pIv: opt(&mut iv),
                ulIvLen: iv.len() as CK_ULONG,
                ulIvBits: (iv.len() * 8) as CK_ULONG,
                pAAD: opt(&mut aad),
                ulAADLen: aad.len() as CK_ULONG,
                ulTagBits: *tag_bits,
            };
            f(&mut mech_of(CKM_AES_GCM, &mut prm))
        }
        Mech::Gcm40 { iv, aad, tag_bits } => {
            let (mut iv, mut aad) = (iv.clone(), aad.clone());
            let mut prm = GcmParams40 {
                p_iv: opt(&mut iv),
                iv_len: iv.len() as CK_ULONG,
                p_aad: opt(&mut aad),
                aad_len: aad.len() as CK_ULONG,
                tag_bits: *tag_bits,
            };
            f(&mut mech_of(CKM_AES_GCM, &mut prm))
        }
        Mech::General(t, n) => {
            let mut n: CK_MAC_GENERAL_PARAMS = *n;
            f(&mut mech_of(*t, &mut n))
        }
        Mech::Extract(bit) => {
            let mut p: CK_EXTRACT_PARAMS = *bit;
            f(&mut mech_of(CKM_EXTRACT_KEY_FROM_KEY, &mut p))
        }
        Mech::Kbkdf(prf, label) => {
            let mut label = label.clone();
            let mut counter = CK_SP800_108_COUNTER_FORMAT {
                bLittleEndian: CK_FALSE,
                ulWidthInBits: 32,
            };
            let mut data = [
                CK_PRF_DATA_PARAM {
                    type_: CK_SP800_108_ITERATION_VARIABLE,
                    pValue: &mut counter as *mut _ as *mut c_void,
                    ulValueLen: size_of::<CK_SP800_108_COUNTER_FORMAT>() as CK_ULONG,
                },
                CK_PRF_DATA_PARAM {
                    type_: CK_SP800_108_BYTE_ARRAY,
                    pValue: opt_ptr(&mut label) as *mut c_void,
                    ulValueLen: label.len() as CK_ULONG,
                },
            ];
            let mut prm = CK_SP800_108_KDF_PARAMS {
                prfType: *prf,
                ulNumberOfDataParams: data.len() as CK_ULONG,
                pDataParams: data.as_mut_ptr(),
                ulAdditionalDerivedKeys: 0,
                pAdditionalDerivedKeys: ptr::null_mut(),
            };
            f(&mut mech_of(CKM_SP800_108_COUNTER_KDF, &mut prm))
        }
    }
}
