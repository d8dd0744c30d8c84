//! `C_GetOperationState` / `C_SetOperationState`: a running digest saved as
//! bytes and taken up again, in the same session or another one of this
//! process. Other operations cannot be saved (`CKR_STATE_UNSAVEABLE`): their
//! state holds keys or key schedules, which must not leave the token.
//!
//! The saved state is `FHOS` | version | mechanism | multi-part flag |
//! the hash crate's serialized state (chaining value, block count, buffered
//! tail of the input) | HMAC-SHA256 of all of it under a key drawn at random
//! when the module starts. A blob that was changed, cut, made by another
//! process or by another version is `CKR_SAVED_STATE_INVALID` before any of
//! it is parsed, so a forged hash state (or a forged length) never reaches
//! the hash code.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use hmac::{KeyInit, Mac};
use zeroize::Zeroizing;

use super::state::Module;
use crate::error::{Error, Result};
use crate::mechanism;
use crate::session::{DigestState, OutBuf};

/// The first bytes of a saved state.
const MAGIC: &[u8; 4] = b"FHOS";
/// The layout version of a saved state.
const VERSION: u8 = 1;
/// What the state holds: a digest (the only kind so far).
const KIND_DIGEST: u8 = 1;
/// Length of the HMAC-SHA256 tag.
const TAG_LEN: usize = 32;
/// Header: magic, version, kind, mechanism (u64), multi-part flag.
const HEADER_LEN: usize = 4 + 1 + 1 + 8 + 1;

type StateMac = hmac::Hmac<sha2::Sha256>;

impl Module {
    fn state_mac(&self) -> StateMac {
        <StateMac as KeyInit>::new_from_slice(&self.state_key[..])
            .expect("HMAC takes keys of any length")
    }

    /// `C_GetOperationState`: the session's running digest as bytes, with the
    /// size-query rules. `CKR_OPERATION_NOT_INITIALIZED` with no operation;
    /// `CKR_STATE_UNSAVEABLE` when another kind of operation is active or
    /// the digest has taken in a key (`C_DigestKey`: its state would hold
    /// part of the key's value in the clear).
    pub fn get_operation_state(&self, h: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let ops = s.ops.lock();
        if ops.has_unsaveable() {
            return Err(Error::StateUnsaveable);
        }
        let d = ops.digest.as_ref().ok_or(Error::OperationNotInitialized)?;
        if d.keyed {
            return Err(Error::StateUnsaveable);
        }
        let state = d.op.save().ok_or(Error::StateUnsaveable)?;
        let mut blob = Zeroizing::new(Vec::with_capacity(HEADER_LEN + state.len() + TAG_LEN));
        blob.extend_from_slice(MAGIC);
        blob.push(VERSION);
        blob.push(KIND_DIGEST);
        blob.extend_from_slice(&d.mech.to_le_bytes());
        blob.push(d.multipart as u8);
        blob.extend_from_slice(&state);
        let mut mac = self.state_mac();
        mac.update(&blob);
        blob.extend_from_slice(&mac.finalize().into_bytes());
        if let Some(buf) = out.offer(blob.len())? {
            buf.copy_from_slice(&blob);
        }
        Ok(())
    }

    /// `C_SetOperationState`: takes up a digest saved by
    /// `get_operation_state` in this process, replacing the session's
    /// digest (if any). A digest needs no key: a key handle is
    /// `CKR_KEY_NOT_NEEDED`.
    pub fn set_operation_state(
        &self,
        h: CK_SESSION_HANDLE,
        blob: &[u8],
        enc_key: CK_OBJECT_HANDLE,
        auth_key: CK_OBJECT_HANDLE,
    ) -> Result<()> {
        let s = self.session(h)?;
        if blob.len() < HEADER_LEN + TAG_LEN {
            return Err(Error::SavedStateInvalid);
        }
        let (body, tag) = blob.split_at(blob.len() - TAG_LEN);
        let mut mac = self.state_mac();
        mac.update(body);
        mac.verify_slice(tag)
            .map_err(|_| Error::SavedStateInvalid)?;
        // Authentic from here on: made by this module, in this layout.
        if &body[..4] != MAGIC || body[4] != VERSION || body[5] != KIND_DIGEST {
            return Err(Error::SavedStateInvalid);
        }
        let mut ty = [0u8; 8];
        ty.copy_from_slice(&body[6..14]);
        let mech = CK_MECHANISM_TYPE::from_le_bytes(ty);
        let multipart = body[14] != 0;
        let build = mechanism::lookup(mech)
            .ok()
            .and_then(|row| row.digest)
            .ok_or(Error::SavedStateInvalid)?;
        let mut op = build();
        if !op.restore(&body[HEADER_LEN..]) {
            return Err(Error::SavedStateInvalid);
        }
        if enc_key != CK_INVALID_HANDLE || auth_key != CK_INVALID_HANDLE {
            return Err(Error::KeyNotNeeded);
        }
        s.ops.lock().digest = Some(DigestState {
            op,
            multipart,
            mech,
            keyed: false,
        });
        Ok(())
    }
}
