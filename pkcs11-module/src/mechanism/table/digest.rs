//! Digest rows.
use cryptoki_sys::*;

use super::row;
use crate::mechanism::{Mechanism, digest, digest::DigestOp};

pub(super) const fn digest_row(
    ty: CK_MECHANISM_TYPE,
    name: &'static str,
    build: fn() -> Box<dyn DigestOp>,
) -> Mechanism {
    Mechanism {
        digest: Some(build),
        ..row(ty, name, CKF_DIGEST)
    }
}

pub(super) static ROWS: &[Mechanism] = &[
    digest_row(CKM_SHA_1, "CKM_SHA_1", digest::new::<sha1::Sha1>),
    digest_row(CKM_SHA224, "CKM_SHA224", digest::new::<sha2::Sha224>),
    digest_row(CKM_SHA256, "CKM_SHA256", digest::new::<sha2::Sha256>),
    digest_row(CKM_SHA384, "CKM_SHA384", digest::new::<sha2::Sha384>),
    digest_row(CKM_SHA512, "CKM_SHA512", digest::new::<sha2::Sha512>),
    digest_row(CKM_SHA3_224, "CKM_SHA3_224", digest::new::<sha3::Sha3_224>),
    digest_row(CKM_SHA3_256, "CKM_SHA3_256", digest::new::<sha3::Sha3_256>),
    digest_row(CKM_SHA3_384, "CKM_SHA3_384", digest::new::<sha3::Sha3_384>),
    digest_row(CKM_SHA3_512, "CKM_SHA3_512", digest::new::<sha3::Sha3_512>),
];
