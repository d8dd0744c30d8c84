//! FerroHSM: a software HSM that PKCS#11 applications load as
//! `libferrohsm_pkcs11.so`. Keys are born, used and kept inside it.
//!
//! Layers (see ARCHITECTURE.md): `ffi` turns C calls into safe calls on one
//! `Module`; `module`, `session`, `object` and `mechanism` are safe Rust over the
//! `ferrohsm_store::Store` seam.
#![deny(unsafe_code)]

pub mod audit;
pub mod config;
pub mod error;
#[doc(hidden)]
pub mod fuzzing;
pub mod locate;
pub mod logging;
pub mod mechanism;
pub mod module;
pub mod object;
pub mod session;

#[allow(unsafe_code)]
mod ffi;
/// Key memory: the locked, non-dumpable, zeroized region (the other home of `unsafe`).
#[allow(unsafe_code)]
pub mod secret;

pub use error::{Error, Result};
pub use module::Module;
