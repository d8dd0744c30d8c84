//! The pure-Rust build: no faster backend, every call declines (`None`) and
//! the family files run their RustCrypto code.
#![forbid(unsafe_code)]

use cryptoki_sys::CK_MECHANISM_TYPE;
use zeroize::Zeroizing;

use super::RsaSig;
use crate::error::Result;

/// Which backend this build asks first.
pub const NAME: &str = "RustCrypto";
/// Which backend runs private-key operations in this build.
pub const PRIVATE_NAME: &str = NAME;

/// Backend state of an RSA private key (none).
#[derive(Default)]
pub struct RsaPrivate(());

impl RsaPrivate {
    /// Declines.
    pub fn sign(
        &self,
        _: &rsa::PrivateKey,
        _: RsaSig,
        _: &[u8],
        _: &mut [u8],
    ) -> Option<Result<()>> {
        None
    }

    /// Declines.
    pub fn oaep_decrypt(
        &self,
        _: &rsa::PrivateKey,
        _: CK_MECHANISM_TYPE,
        _: CK_MECHANISM_TYPE,
        _: &[u8],
        _: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        None
    }
}

/// Backend state of an RSA public key (none).
#[derive(Default)]
pub struct RsaPublic(());

impl RsaPublic {
    /// Declines.
    pub fn verify(&self, _: &rsa::PublicKey, _: RsaSig, _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }

    /// Declines.
    pub fn oaep_encrypt(
        &self,
        _: &rsa::PublicKey,
        _: CK_MECHANISM_TYPE,
        _: CK_MECHANISM_TYPE,
        _: &[u8],
        _: &[u8],
    ) -> Option<Result<Vec<u8>>> {
        None
    }
}

/// Backend state of an EC private key (none).
#[derive(Default)]
pub struct EcPrivate(());

impl EcPrivate {
    /// Declines.
    pub fn sign(
        &self,
        _: usize,
        _: impl FnOnce() -> (Zeroizing<Vec<u8>>, Vec<u8>),
        _: &[u8],
    ) -> Option<Result<Vec<u8>>> {
        None
    }

    /// Declines.
    pub fn ecdh(
        &self,
        _: usize,
        _: impl FnOnce() -> Zeroizing<Vec<u8>>,
        _: &[u8],
    ) -> Option<Result<Zeroizing<Vec<u8>>>> {
        None
    }
}

/// Backend state of an EC public key (none).
#[derive(Default)]
pub struct EcPublic(());

impl EcPublic {
    /// Declines.
    pub fn verify(
        &self,
        _: usize,
        _: impl FnOnce() -> Vec<u8>,
        _: &[u8],
        _: &[u8],
    ) -> Option<bool> {
        None
    }
}

/// Backend state of an Ed25519 public key (none).
#[derive(Default)]
pub struct EdPublic(());

impl EdPublic {
    /// Declines.
    pub fn verify(&self, _: impl FnOnce() -> [u8; 32], _: &[u8], _: &[u8]) -> Option<bool> {
        None
    }
}

/// Backend state of an AES key's GCM (none).
#[derive(Default)]
pub struct AesGcm(());

impl AesGcm {
    /// Nothing to build.
    pub fn prepare(&self, _: impl FnOnce() -> Option<Zeroizing<Vec<u8>>>) {}

    /// Declines.
    pub fn seal(&self, _: &[u8], _: &[u8], _: &mut [u8]) -> Option<Result<[u8; 16]>> {
        None
    }

    /// Declines.
    pub fn open(&self, _: &[u8], _: &[u8], _: &[u8], _: &[u8], _: &mut [u8]) -> Option<Result<()>> {
        None
    }
}
