//! SP 800-108 key-based KDFs (PKCS#11 v3.0 §2.42 "SP800-108 Key Derivation"):
//! `CKM_SP800_108_COUNTER_KDF`, `CKM_SP800_108_FEEDBACK_KDF` and
//! `CKM_SP800_108_DOUBLE_PIPELINE_KDF`. The PRF is any full-length MAC row of
//! the mechanism table that takes the base key (`CKM_SHA*_HMAC`,
//! `CKM_AES_CMAC`, ...); the PRF input is the caller's data parameters,
//! concatenated in order. One run can make several keys (additional derived
//! keys): each starts on a fresh PRF output segment, as the specification
//! says ("All keys must be created from disjoint segments").
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::{Param, lookup};
use crate::object::Object;
use crate::object::policy::RawAttr;

/// Most data parameters one call may pass (bounds the copy and the loop).
pub const MAX_DATA_PARAMS: usize = 64;
/// Most additional derived keys one call may ask for.
pub const MAX_EXTRA_KEYS: usize = 32;

/// The encoding of a counter or length (`CK_SP800_108_COUNTER_FORMAT`, and
/// the same two fields of `CK_SP800_108_DKM_LENGTH_FORMAT`), as given.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Format {
    /// `bLittleEndian` (`CK_TRUE` or `CK_FALSE`; anything else is refused).
    pub little_endian: CK_BBOOL,
    /// `ulWidthInBits`.
    pub bits: CK_ULONG,
}

/// One `CK_PRF_DATA_PARAM`, copied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PrfData {
    /// `CK_SP800_108_ITERATION_VARIABLE`: the counter's format in counter
    /// mode; `None` (NULL, 0) in the other modes, where it is K(i-1) or A(i).
    Iteration(Option<Format>),
    /// `CK_SP800_108_COUNTER` (feedback and double-pipeline modes).
    Counter(Format),
    /// `CK_SP800_108_DKM_LENGTH`: `dkmLengthMethod` and the encoding.
    DkmLength {
        /// `CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS` or `_SUM_OF_SEGMENTS`.
        method: CK_ULONG,
        /// The encoding of the length in bits.
        format: Format,
    },
    /// `CK_SP800_108_BYTE_ARRAY`.
    Bytes(Vec<u8>),
    /// A type this token does not take (`CK_SP800_108_KEY_HANDLE`, or
    /// unknown): `CKR_MECHANISM_PARAM_INVALID`.
    Other(CK_ULONG),
}

/// The three KDFs of SP 800-108 §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// §5.1: K(i) = PRF(KI, data with [i]).
    Counter,
    /// §5.2: K(i) = PRF(KI, data with K(i-1) {and [i]}), K(0) = IV.
    Feedback,
    /// §5.3: A(i) = PRF(KI, A(i-1)), A(0) = the fixed data; K(i) = PRF(KI,
    /// data with A(i) {and [i]}).
    DoublePipeline,
}

/// The templates of the additional derived keys.
pub fn extra_templates(param: &Param) -> &[Vec<RawAttr>] {
    match param {
        Param::Kbkdf { extra, .. } => &extra.0,
        _ => &[],
    }
}

/// `value` in `f`'s encoding; a value the width cannot hold, or a width or
/// flag outside `widths`, is `CKR_MECHANISM_PARAM_INVALID`.
fn encode(value: u64, f: Format, widths: &[CK_ULONG]) -> Result<Vec<u8>> {
    if !widths.contains(&f.bits) || f.little_endian > 1 {
        return Err(Error::MechanismParamInvalid);
    }
    let bytes = (f.bits / 8) as usize;
    if bytes < 8 && value >> (8 * bytes) != 0 {
        return Err(Error::MechanismParamInvalid);
    }
    let be = value.to_be_bytes();
    let mut v = be[8 - bytes..].to_vec();
    if f.little_endian == 1 {
        v.reverse();
    }
    Ok(v)
}

const COUNTER_WIDTHS: &[CK_ULONG] = &[8, 16, 24, 32];
const LENGTH_WIDTHS: &[CK_ULONG] = &[8, 16, 24, 32, 40, 48, 56, 64];

/// The data parameters, checked against the mode's rules (v3.0 tables
/// "Counter/Feedback/Double Pipeline Mode data field requirements"): one
/// iteration variable, at most one counter (not in counter mode) and one
/// DKM length, non-empty byte arrays.
fn check_data(data: &[PrfData], mode: Mode) -> Result<()> {
    let (mut iteration, mut counter, mut dkm) = (0, 0, 0);
    for d in data {
        match d {
            PrfData::Iteration(f) => {
                iteration += 1;
                if f.is_some() != (mode == Mode::Counter) {
                    return Err(Error::MechanismParamInvalid);
                }
            }
            PrfData::Counter(_) if mode == Mode::Counter => {
                return Err(Error::MechanismParamInvalid);
            }
            PrfData::Counter(_) => counter += 1,
            PrfData::DkmLength { method, .. } => {
                dkm += 1;
                if !matches!(
                    *method,
                    CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS | CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS
                ) {
                    return Err(Error::MechanismParamInvalid);
                }
            }
            PrfData::Bytes(b) if b.is_empty() => return Err(Error::MechanismParamInvalid),
            PrfData::Bytes(_) => {}
            PrfData::Other(_) => return Err(Error::MechanismParamInvalid),
        }
    }
    if iteration != 1 || counter > 1 || dkm > 1 || data.len() > MAX_DATA_PARAMS {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(())
}

/// The PRF input of iteration `i`: the data parameters in order, the
/// iteration variable being `chain` (K(i-1) or A(i)) or, in counter mode, `i`.
/// `fixed` leaves out the iteration variable and counter (A(0)).
fn input(data: &[PrfData], i: u64, chain: &[u8], dkm: [u64; 2], fixed: bool) -> Result<Vec<u8>> {
    let mut v = Vec::new();
    for d in data {
        match d {
            PrfData::Iteration(_) | PrfData::Counter(_) if fixed => {}
            PrfData::Iteration(Some(f)) | PrfData::Counter(f) => {
                v.extend(encode(i, *f, COUNTER_WIDTHS)?)
            }
            PrfData::Iteration(None) => v.extend_from_slice(chain),
            PrfData::DkmLength { method, format } => {
                let bits = if *method == CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS {
                    dkm[0]
                } else {
                    dkm[1]
                };
                v.extend(encode(bits, *format, LENGTH_WIDTHS)?)
            }
            PrfData::Bytes(b) => v.extend_from_slice(b),
            PrfData::Other(_) => return Err(Error::MechanismParamInvalid),
        }
    }
    Ok(v)
}

/// Runs the KDF of `mode` under `base` and cuts the values of keys of
/// `lens` bytes, each from its own segments.
pub fn derive(
    param: &Param,
    base: &Object,
    mode: Mode,
    lens: &[usize],
) -> Result<Vec<Zeroizing<Vec<u8>>>> {
    let Param::Kbkdf { prf, data, iv, .. } = param else {
        return Err(Error::MechanismParamInvalid);
    };
    if iv.is_some() != (mode == Mode::Feedback) {
        return Err(Error::MechanismParamInvalid);
    }
    check_data(data, mode)?;
    // The PRF: a full-length MAC row that takes the base key's type.
    let row = lookup(*prf).map_err(|_| Error::MechanismParamInvalid)?;
    let sign = match row.sign {
        Some(s) if row.param == crate::mechanism::ParamShape::None => s,
        _ => return Err(Error::MechanismParamInvalid),
    };
    let kt = base.ulong(CKA_KEY_TYPE).ok_or(Error::KeyTypeInconsistent)?;
    if !row.key_types.contains(&kt) || base.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
        return Err(Error::KeyTypeInconsistent);
    }
    let mac = |msg: &[u8]| -> Result<Zeroizing<Vec<u8>>> {
        let mut op = sign(&Param::None, base, false)?;
        op.update(msg)?;
        let mut out = Zeroizing::new(vec![0u8; op.sig_len()]);
        op.sign(&mut out)?;
        Ok(out)
    };
    let h = sign(&Param::None, base, false)?.sig_len();
    let segments: Vec<usize> = lens.iter().map(|l| l.div_ceil(h)).collect();
    let n: usize = segments.iter().sum();
    if lens.contains(&0) || n == 0 {
        return Err(Error::TemplateInconsistent);
    }
    let dkm = [8 * lens.iter().sum::<usize>() as u64, 8 * (n * h) as u64];
    let mut out = Zeroizing::new(Vec::with_capacity(n * h));
    let mut chain = Zeroizing::new(match mode {
        Mode::Feedback => iv.clone().unwrap_or_default(),
        Mode::DoublePipeline => input(data, 0, &[], dkm, true)?,
        Mode::Counter => Vec::new(),
    });
    for i in 1..=n as u64 {
        if mode == Mode::DoublePipeline {
            chain = mac(&chain)?;
        }
        let k = mac(&Zeroizing::new(input(data, i, &chain, dkm, false)?))?;
        out.extend_from_slice(&k);
        if mode == Mode::Feedback {
            chain = k;
        }
    }
    let mut keys = Vec::with_capacity(lens.len());
    let mut at = 0;
    for (len, segs) in lens.iter().zip(segments) {
        keys.push(Zeroizing::new(out[at..at + len].to_vec()));
        at += segs * h;
    }
    Ok(keys)
}

/// One key of `len` bytes (`Derive::derive`; the module derives through
/// `Derive::multi`, which also counts the additional keys).
pub fn derive_one(
    param: &Param,
    base: &Object,
    mode: Mode,
    len: usize,
) -> Result<Zeroizing<Vec<u8>>> {
    derive(param, base, mode, &[len]).map(|mut v| v.remove(0))
}

/// The default length of a derived generic secret: one PRF output.
pub fn default_len(param: &Param, base: &Object) -> Result<usize> {
    let Param::Kbkdf { prf, .. } = param else {
        return Err(Error::MechanismParamInvalid);
    };
    let row = lookup(*prf).map_err(|_| Error::MechanismParamInvalid)?;
    let sign = row.sign.ok_or(Error::MechanismParamInvalid)?;
    Ok(sign(&Param::None, base, false)?.sig_len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanism::Templates;
    use crate::object::attrs::Attrs;
    use ferrohsm_store::AttrValue;
    use hex_literal::hex;

    fn key(kt: CK_KEY_TYPE, value: &[u8]) -> Object {
        let mut attrs = Attrs::new();
        attrs.insert(CKA_CLASS, AttrValue::Ulong(CKO_SECRET_KEY as _));
        attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(kt as _));
        attrs.insert(CKA_VALUE, AttrValue::Bytes(value.to_vec()));
        Object {
            handle: 1,
            store_id: 1,
            owner: None,
            attrs,
            cache: Default::default(),
        }
    }

    fn be(bits: CK_ULONG) -> Format {
        Format {
            little_endian: 0,
            bits,
        }
    }

    fn counter(prf: CK_MECHANISM_TYPE, data: Vec<PrfData>) -> Param {
        Param::Kbkdf {
            prf,
            data,
            iv: None,
            extra: Templates::default(),
        }
    }

    /// NIST CAVP `KDFCTR_gen.rsp` (CAVS 14.4), counter mode: KI, the counter
    /// width and place, the fixed data before and after it, KO.
    #[test]
    fn cavp_counter_mode() {
        struct V {
            prf: CK_MECHANISM_TYPE,
            kt: CK_KEY_TYPE,
            ki: &'static [u8],
            r: CK_ULONG,
            before: &'static [u8],
            after: &'static [u8],
            ko: &'static [u8],
        }
        let vectors = [
            // [PRF=CMAC_AES128] [CTRLOCATION=BEFORE_FIXED] [RLEN=8_BITS] COUNT=0
            V {
                prf: CKM_AES_CMAC,
                kt: CKK_AES,
                ki: &hex!("dff1e50ac0b69dc40f1051d46c2b069c"),
                r: 8,
                before: &[],
                after: &hex!(
                    "c16e6e02c5a3dcc8d78b9ac1306877761310455b4e41469951d9e6c2245a064b33fd8c3b01203a7824485bf0a64060c4648b707d2607935699316ea5"
                ),
                ko: &hex!("8be8f0869b3c0ba97b71863d1b9f7813"),
            },
            // [PRF=CMAC_AES128] [CTRLOCATION=BEFORE_FIXED] [RLEN=32_BITS] COUNT=0
            V {
                prf: CKM_AES_CMAC,
                kt: CKK_AES,
                ki: &hex!("c10b152e8c97b77e18704e0f0bd38305"),
                r: 32,
                before: &[],
                after: &hex!(
                    "98cd4cbbbebe15d17dc86e6dbad800a2dcbd64f7c7ad0e78e9cf94ffdba89d03e97eadf6c4f7b806caf52aa38f09d0eb71d71f497bcc6906b48d36c4"
                ),
                ko: &hex!("26faf61908ad9ee881b8305c221db53f"),
            },
            // [PRF=CMAC_AES128] [CTRLOCATION=MIDDLE_FIXED] [RLEN=8_BITS] COUNT=0
            V {
                prf: CKM_AES_CMAC,
                kt: CKK_AES,
                ki: &hex!("b6e04abd1651f8794d4326f4c684e631"),
                r: 8,
                before: &hex!(
                    "93612f7256c46a3d856d3e951e32dbf15fe11159d0b389ad38d603850fee6d18d22031435ed36ee20da76745fbea4b10fe1e"
                ),
                after: &hex!("99322aae605a5f01e32b"),
                ko: &hex!("dcb1db87a68762c6b3354779fa590bef"),
            },
            // [PRF=HMAC_SHA256] [CTRLOCATION=AFTER_FIXED] [RLEN=8_BITS] COUNT=0
            V {
                prf: CKM_SHA256_HMAC,
                kt: CKK_GENERIC_SECRET,
                ki: &hex!("08d0a37d2e2fb84d44838efaeac28135d964b0daf154369783cfe007fa883966"),
                r: 8,
                before: &hex!(
                    "80866d761e34084b45ea668a25deabffdbca446aa0bf793bccdf3790d584d26056315a4c060ac7b1b01cace96ba97e8fed81953c8b82ba5132dd1713"
                ),
                after: &[],
                ko: &hex!("8f5b47d23d5d3ba632acdf6543509bd8"),
            },
            // [PRF=HMAC_SHA256] [CTRLOCATION=BEFORE_FIXED] [RLEN=32_BITS], L = 320
            // (two iterations)
            V {
                prf: CKM_SHA256_HMAC,
                kt: CKK_GENERIC_SECRET,
                ki: &hex!("c4bedbddb66493e7c7259a3bbbc25f8c7e0ca7fe284d92d431d9cd99a0d214ac"),
                r: 32,
                before: &[],
                after: &hex!(
                    "1c69c54766791e315c2cc5c47ecd3ffab87d0d273dd920e70955814c220eacace6a5946542da3dfe24ff626b4897898cafb7db83bdff3c14fa46fd4b"
                ),
                ko: &hex!(
                    "1da47638d6c9c4d04d74d4640bbd42ab814d9e8cc22f4326695239f96b0693f12d0dd1152cf44430"
                ),
            },
        ];
        for v in vectors {
            let mut data = Vec::new();
            if !v.before.is_empty() {
                data.push(PrfData::Bytes(v.before.to_vec()));
            }
            data.push(PrfData::Iteration(Some(be(v.r))));
            if !v.after.is_empty() {
                data.push(PrfData::Bytes(v.after.to_vec()));
            }
            let p = counter(v.prf, data);
            let k = key(v.kt, v.ki);
            let out = derive_one(&p, &k, Mode::Counter, v.ko.len()).unwrap();
            assert_eq!(*out, v.ko.to_vec(), "KI {:02x?}", &v.ki[..4]);
        }
    }

    /// The same KDF written out by hand with the `hmac` crate, for the
    /// feedback and double-pipeline forms, a counter, a DKM length and
    /// additional keys (which start on fresh segments).
    #[test]
    fn feedback_and_double_pipeline_by_hand() {
        use digest::{KeyInit, Mac};
        let ki = [0x0bu8; 32];
        let k = key(CKK_GENERIC_SECRET, &ki);
        let prf = |m: &[u8]| {
            let mut h = hmac::SimpleHmac::<sha2::Sha256>::new_from_slice(&ki).unwrap();
            h.update(m);
            h.finalize().into_bytes().to_vec()
        };
        let label = b"label".to_vec();
        let dkm = |bits: u16| bits.to_be_bytes().to_vec();
        let data = vec![
            PrfData::Iteration(None),
            PrfData::Counter(be(16)),
            PrfData::Bytes(label.clone()),
            PrfData::DkmLength {
                method: CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
                format: be(16),
            },
        ];
        // Two keys of 40 and 16 bytes: 2 + 1 segments, DKM 56 * 8 bits.
        let lens = [40, 16];
        let l = dkm(56 * 8);
        let iv = b"iv-bytes".to_vec();
        let fb = Param::Kbkdf {
            prf: CKM_SHA256_HMAC,
            data: data.clone(),
            iv: Some(iv.clone()),
            extra: Templates(vec![vec![]]),
        };
        let mut want = Vec::new();
        let mut prev = iv;
        for i in 1u16..=3 {
            let k = prf(&[
                prev.clone(),
                i.to_be_bytes().to_vec(),
                label.clone(),
                l.clone(),
            ]
            .concat());
            want.extend_from_slice(&k);
            prev = k;
        }
        let got = derive(&fb, &k, Mode::Feedback, &lens).unwrap();
        assert_eq!(*got[0], want[..40].to_vec());
        assert_eq!(*got[1], want[64..80].to_vec());

        let dp = Param::Kbkdf {
            prf: CKM_SHA256_HMAC,
            data,
            iv: None,
            extra: Templates(vec![vec![]]),
        };
        let mut want = Vec::new();
        let mut a = [label.clone(), l.clone()].concat();
        for i in 1u16..=3 {
            a = prf(&a);
            want.extend(prf(&[
                a.clone(),
                i.to_be_bytes().to_vec(),
                label.clone(),
                l.clone(),
            ]
            .concat()));
        }
        let got = derive(&dp, &k, Mode::DoublePipeline, &lens).unwrap();
        assert_eq!(*got[0], want[..40].to_vec());
        assert_eq!(*got[1], want[64..80].to_vec());
        // A little-endian 24-bit counter and the segment-sum DKM length.
        let p = counter(
            CKM_SHA256_HMAC,
            vec![
                PrfData::Iteration(Some(Format {
                    little_endian: 1,
                    bits: 24,
                })),
                PrfData::DkmLength {
                    method: CK_SP800_108_DKM_LENGTH_SUM_OF_SEGMENTS,
                    format: be(32),
                },
            ],
        );
        let got = derive_one(&p, &k, Mode::Counter, 20).unwrap();
        let want = prf(&[vec![1, 0, 0], 256u32.to_be_bytes().to_vec()].concat());
        assert_eq!(*got, want[..20].to_vec());
    }

    #[test]
    fn refusals() {
        let k = key(CKK_GENERIC_SECRET, &[7; 32]);
        let aes = key(CKK_AES, &[7; 16]);
        let it = PrfData::Iteration(Some(be(16)));
        let bad = |p: &Param, mode, key: &Object| derive_one(p, key, mode, 16).err();
        let pi = Some(Error::MechanismParamInvalid);
        // No iteration variable, two of them, a counter in counter mode.
        assert_eq!(
            bad(&counter(CKM_SHA256_HMAC, vec![]), Mode::Counter, &k),
            pi
        );
        assert_eq!(
            bad(
                &counter(CKM_SHA256_HMAC, vec![it.clone(), it.clone()]),
                Mode::Counter,
                &k
            ),
            pi
        );
        assert_eq!(
            bad(
                &counter(CKM_SHA256_HMAC, vec![it.clone(), PrfData::Counter(be(8))]),
                Mode::Counter,
                &k
            ),
            pi
        );
        // Widths and flags.
        for f in [
            be(12),
            be(40),
            Format {
                little_endian: 2,
                bits: 8,
            },
        ] {
            let p = counter(CKM_SHA256_HMAC, vec![PrfData::Iteration(Some(f))]);
            assert_eq!(bad(&p, Mode::Counter, &k), pi, "{f:?}");
        }
        // Empty byte arrays, key handles, unknown PRFs.
        for d in [
            PrfData::Bytes(vec![]),
            PrfData::Other(CK_SP800_108_KEY_HANDLE),
        ] {
            assert_eq!(
                bad(
                    &counter(CKM_SHA256_HMAC, vec![it.clone(), d]),
                    Mode::Counter,
                    &k
                ),
                pi
            );
        }
        assert_eq!(
            bad(&counter(CKM_SHA256, vec![it.clone()]), Mode::Counter, &k),
            pi
        );
        assert_eq!(
            bad(
                &counter(CKM_AES_CMAC_GENERAL, vec![it.clone()]),
                Mode::Counter,
                &k
            ),
            pi
        );
        // CMAC takes AES keys only.
        assert_eq!(
            bad(&counter(CKM_AES_CMAC, vec![it.clone()]), Mode::Counter, &k),
            Some(Error::KeyTypeInconsistent)
        );
        assert!(
            bad(
                &counter(CKM_AES_CMAC, vec![it.clone()]),
                Mode::Counter,
                &aes
            )
            .is_none()
        );
        // An 8-bit counter runs out after 255 segments; a DKM length must fit.
        let p = counter(CKM_SHA_1_HMAC, vec![PrfData::Iteration(Some(be(8)))]);
        assert!(derive(&p, &k, Mode::Counter, &[255 * 20]).is_ok());
        assert_eq!(derive(&p, &k, Mode::Counter, &[255 * 20 + 1]).err(), pi);
        let p = counter(
            CKM_SHA256_HMAC,
            vec![
                it.clone(),
                PrfData::DkmLength {
                    method: CK_SP800_108_DKM_LENGTH_SUM_OF_KEYS,
                    format: be(8),
                },
            ],
        );
        assert!(derive_one(&p, &k, Mode::Counter, 31).is_ok());
        assert_eq!(derive_one(&p, &k, Mode::Counter, 32).err(), pi);
        // The feedback form needs its IV field; the others must not have one.
        let fb = |iv| Param::Kbkdf {
            prf: CKM_SHA256_HMAC,
            data: vec![PrfData::Iteration(None)],
            iv,
            extra: Templates::default(),
        };
        assert!(bad(&fb(Some(vec![])), Mode::Feedback, &k).is_none());
        assert_eq!(bad(&fb(None), Mode::Feedback, &k), pi);
        assert_eq!(bad(&fb(Some(vec![])), Mode::DoublePipeline, &k), pi);
        // Feedback's iteration variable has no format.
        let p = Param::Kbkdf {
            prf: CKM_SHA256_HMAC,
            data: vec![it],
            iv: Some(vec![]),
            extra: Templates::default(),
        };
        assert_eq!(bad(&p, Mode::Feedback, &k), pi);
        assert_eq!(default_len(&fb(Some(vec![])), &k), Ok(32));
    }
}
