//! The per-family backend seam (as rustls has `CryptoProvider`): the family
//! files (`rsa/`, `ec.rs`) ask this module first for the operations a faster
//! backend does, and run their own RustCrypto code when it declines (`None`).
//! The mechanism table does not change.
//!
//! - `awslc.rs` (feature `aws-lc`, on by default): AWS-LC through `aws-lc-rs`,
//!   linked statically with prefixed symbols (the `.so` exports only `C_*`).
//!   It takes RSA PKCS#1 v1.5 and PSS signatures with SHA-256/384/512 (PSS
//!   with MGF1 of the same hash and salt = hash length), OAEP with
//!   SHA-1/SHA-256/384/512 (MGF1 of the same hash, any label), ECDSA over a
//!   field-width digest on P-256/P-384/P-521, ECDH on the same curves,
//!   pure Ed25519 verification, and AES-128/256-GCM with 12-byte IVs
//!   (`aes.rs` asks it through `mechanism::AesCached`; 16-byte tags to open).
//! - `rustcrypto.rs` (the pure-Rust build): declines everything.
//!
//! Everything else stays RustCrypto: raw RSA, PKCS#1 v1.5 decryption (its
//! implicit-rejection path), PKCS#1 signatures with SHA-1/SHA-224, SHA-3
//! or MD5, PSS and OAEP with SHA-224 or SHA-3, mixed hashes or other salt
//! lengths, `CKM_ECDSA` over input of another length, Ed25519 signing and
//! Ed25519ph, X25519, key generation, import checks and PKCS#8.
//! (Private-key operations go to AWS-LC where its heap is routed into the
//! key region, x86-64 and AArch64: see `PRIVATE_KEY_OPS` in `awslc.rs`.)
//!
//! The backend's parsed keys live in the family's cached key (built once per
//! object version, `mechanism::cached`), filled at first use inside
//! `secret::scope`. AWS-LC allocates through Rust's global allocator
//! (`secret::awslc` defines its `OPENSSL_memory_*` hooks), so its key
//! structures (`EVP_PKEY`, big numbers) are in the locked, non-dumpable key
//! region, like the Rust-side copies made to build them.

use cryptoki_sys::CK_MECHANISM_TYPE;

#[cfg(feature = "aws-lc")]
mod awslc;
#[cfg(feature = "aws-lc")]
pub use awslc::*;

#[cfg(not(feature = "aws-lc"))]
mod rustcrypto;
#[cfg(not(feature = "aws-lc"))]
pub use rustcrypto::*;

/// An RSA signature scheme over a digest.
#[derive(Clone, Copy, Debug)]
pub enum RsaSig {
    /// PKCS#1 v1.5 with this hash (the DigestInfo is the backend's to add).
    Pkcs1(CK_MECHANISM_TYPE),
    /// PSS with this message hash, MGF1 hash and salt length.
    Pss {
        /// Message hash.
        hash: CK_MECHANISM_TYPE,
        /// MGF1 hash.
        mgf: CK_MECHANISM_TYPE,
        /// Salt length in bytes.
        salt: usize,
    },
}
