//! `Module`: the whole token world of one process as one plain value — slots,
//! tokens, sessions, login state and objects. No `unsafe`, no statics: unit tests
//! build as many modules as they like. `ffi` owns the one instance that C sees.
//!
//! One room per PKCS#11 function family, each an `impl Module` block:
//!
//! | room | what it answers |
//! |---|---|
//! | `state` | the `Module` value: what it holds, `new`, slot/session lookups |
//! | `info` | `C_GetInfo`, `C_GetSlotList`, `C_GetSlotInfo`, `C_GetTokenInfo`, `C_GetMechanism*` |
//! | `slot` | `Slot`, `Token` (login, storage key, object cache and index), `Login` |
//! | `coherence` | following the store and other processes: reloads, purges, rotated keys |
//! | `auditing` | one audit event per call that changes a token |
//! | `token` | `C_InitToken`, `C_InitPIN`, `C_SetPIN`, the PIN checks |
//! | `sessions` | `C_OpenSession` … `C_SessionCancel`, `C_Login`, `C_Logout`, `Session` |
//! | `objects` | `C_CreateObject`, `C_CopyObject`, `C_DestroyObject`, attributes, `C_FindObjects*` |
//! | `crypto` | `usable_key`, `C_Digest*`, `C_Encrypt*`/`C_Decrypt*`, `C_Sign*`/`C_Verify*`, `C_*Recover`, random |
//! | `message` | the v3.0 message-based functions: `C_MessageEncryptInit` … `C_MessageVerifyFinal` |
//! | `opstate` | `C_GetOperationState`, `C_SetOperationState` (digests) |
//! | `keys` | `C_GenerateKey`, `C_GenerateKeyPair` |
//! | `derive` | `C_DeriveKey`, with the additional keys of SP 800-108 |
//! | `wrap` | `C_WrapKey`, `C_UnwrapKey` |
//! | `legacy` | which mechanisms and key types a token's key policy offers (legacy algorithms) |
//!
//! Lock order (never the reverse): `slots` → one `Slot::token` → `sessions` →
//! one `Session::ops`. Slow work (PIN KDF, crypto, store writes that may wait
//! for another process) runs with no token lock held.
#![forbid(unsafe_code)]

mod auditing;
mod coherence;
mod crypto;
mod derive;
mod info;
mod keys;
mod legacy;
mod message;
mod objects;
mod opstate;
mod sessions;
mod slot;
mod state;
mod token;
mod wrap;

#[cfg(test)]
mod message_tests;
#[cfg(test)]
mod tests;

pub use info::{
    CRYPTOKI_VERSION, LIBRARY_DESCRIPTION, MANUFACTURER, MAX_PIN_LEN, MIN_PIN_LEN, MODEL,
    library_version, pad,
};
pub use slot::{Login, Session, Slot, Token, state};
pub use state::Module;
