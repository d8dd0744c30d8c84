//! The mechanism table: ONE static list saying, for each mechanism, its key size
//! range, its flags and the builders of its operations. `C_GetMechanismList` and
//! `C_GetMechanismInfo` read it, every `*Init` looks its row up, and nothing else
//! lists mechanisms. Each family lives in its own file.
#![forbid(unsafe_code)]

pub mod digest;

use cryptoki_sys::*;

use crate::error::{Error, Result};
use digest::DigestOp;

/// A mechanism parameter as the C caller gave it, made safe by `ffi`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Param {
    /// No parameter (`pParameter` NULL and `ulParameterLen` 0).
    None,
    /// A flat parameter: the bytes at `pParameter`.
    Raw(Vec<u8>),
}

/// A mechanism request: type and parameter.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MechanismArg {
    /// `CKM_*`.
    pub ty: CK_MECHANISM_TYPE,
    /// Its parameter.
    pub param: Param,
}

/// One row of the table.
pub struct Mechanism {
    /// `CKM_*`.
    pub ty: CK_MECHANISM_TYPE,
    /// Its name, for logs.
    pub name: &'static str,
    /// Minimum key size (bits or bytes, as the spec says for the mechanism).
    pub min_key: CK_ULONG,
    /// Maximum key size.
    pub max_key: CK_ULONG,
    /// `CKF_*` capabilities; always includes `CKF_HW` (this token is the hardware).
    pub flags: CK_FLAGS,
    /// Builds a digest operation (mechanisms with `CKF_DIGEST`).
    pub digest: Option<fn() -> Box<dyn DigestOp>>,
}

impl Mechanism {
    /// `CK_MECHANISM_INFO` for `C_GetMechanismInfo`.
    pub fn info(&self) -> CK_MECHANISM_INFO {
        CK_MECHANISM_INFO {
            ulMinKeySize: self.min_key,
            ulMaxKeySize: self.max_key,
            flags: self.flags,
        }
    }
}

const fn digest_row(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    build: fn() -> Box<dyn DigestOp>,
) -> Mechanism {
    Mechanism {
        ty,
        name,
        min_key: 0,
        max_key: 0,
        flags: CKF_HW | CKF_DIGEST,
        digest: Some(build),
    }
}

/// THE table.
pub static MECHANISMS: &[Mechanism] = &[
    digest_row(CKM_SHA_1, "CKM_SHA_1", digest::new::<sha1::Sha1>),
    digest_row(CKM_SHA224, "CKM_SHA224", digest::new::<sha2::Sha224>),
    digest_row(CKM_SHA256, "CKM_SHA256", digest::new::<sha2::Sha256>),
    digest_row(CKM_SHA384, "CKM_SHA384", digest::new::<sha2::Sha384>),
    digest_row(CKM_SHA512, "CKM_SHA512", digest::new::<sha2::Sha512>),
];

/// The row of a mechanism, or `CKR_MECHANISM_INVALID`.
pub fn lookup(ty: CK_MECHANISM_TYPE) -> Result<&'static Mechanism> {
    MECHANISMS
        .iter()
        .find(|m| m.ty == ty)
        .ok_or(Error::MechanismInvalid)
}

/// Builds a digest operation, checking the mechanism supports digesting and
/// takes no parameter.
pub fn digest_op(arg: &MechanismArg) -> Result<Box<dyn DigestOp>> {
    let m = lookup(arg.ty)?;
    let build = m.digest.ok_or(Error::MechanismInvalid)?;
    if arg.param != Param::None {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(build())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, m) in MECHANISMS.iter().enumerate() {
            assert!(m.flags & CKF_HW != 0, "{} lacks CKF_HW", m.name);
            assert!(m.min_key <= m.max_key, "{} key range", m.name);
            assert_eq!(
                m.digest.is_some(),
                m.flags & CKF_DIGEST != 0,
                "{} digest flag",
                m.name
            );
            assert!(
                MECHANISMS[i + 1..].iter().all(|o| o.ty != m.ty),
                "{} listed twice",
                m.name
            );
        }
    }

    #[test]
    fn digest_lookup_errors() {
        let arg = |ty, param| MechanismArg { ty, param };
        assert!(digest_op(&arg(CKM_SHA256, Param::None)).is_ok());
        assert_eq!(
            digest_op(&arg(CKM_SHA256, Param::Raw(vec![1]))).err(),
            Some(Error::MechanismParamInvalid)
        );
        assert_eq!(
            digest_op(&arg(0xdead_beef, Param::None)).err(),
            Some(Error::MechanismInvalid)
        );
    }
}
