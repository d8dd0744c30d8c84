//! A session's active operations, and the one rule for output buffers
//! (`OutBuf`, `drive`). (`Session` itself and `Login` live with the slots, in
//! `module`.)
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;
use zeroize::Zeroizing;

use crate::error::{Error, Result};
use crate::mechanism::digest::DigestOp;
use crate::mechanism::message::{IvCounter, MessageAead, MessageParam, SealStream};
use crate::mechanism::{CipherOp, Dir, Mechanism, Param, RecoverOp, SignOp};
use crate::object::Object;

/// A find operation: the matching handles, taken at `C_FindObjectsInit`.
#[derive(Debug, Default)]
pub struct FindOp {
    /// Handles not yet returned.
    pub pending: std::collections::VecDeque<CK_OBJECT_HANDLE>,
}

/// A digest operation and whether it went multi-part.
pub struct DigestState {
    /// The running hash.
    pub op: Box<dyn DigestOp>,
    /// `C_DigestUpdate`/`C_DigestKey` was called: only `C_DigestFinal` may end it.
    pub multipart: bool,
    /// The digest mechanism (`CKM_*`), named in a saved state.
    pub mech: CK_MECHANISM_TYPE,
    /// `C_DigestKey` fed a key's value in: the state is not handed out.
    pub keyed: bool,
}

/// An encryption or decryption and whether it went multi-part.
pub struct CipherState {
    /// The running cipher.
    pub op: Box<dyn CipherOp>,
    /// An update was made: only the final call may end it.
    pub multipart: bool,
}

/// A signature or MAC operation (sign or verify) and whether it went multi-part.
pub struct SignState {
    /// The running signature or MAC.
    pub op: Box<dyn SignOp>,
    /// An update was made: only the final call may end it.
    pub multipart: bool,
}

/// A sign-recover or verify-recover operation (single-part only).
pub struct RecoverState {
    /// The running operation.
    pub op: Box<dyn RecoverOp>,
}

/// A v3.0 message-based encryption or decryption: the key's AEAD, the IV
/// counter of `CKG_GENERATE_COUNTER`, and the message begun with
/// `C_*MessageBegin`, if any.
pub struct MessageCipherState {
    /// The AEAD bound to the key.
    pub aead: Box<dyn MessageAead>,
    /// The counting IV generators' state (random start).
    pub counter: IvCounter,
    /// The message in progress (`C_*MessageBegin` … `Next`).
    pub pending: Option<PendingMessage>,
}

/// A message in progress: its parameter (IV) and AAD from `Begin`; for an
/// encryption the running cipher (each part out at once), for a decryption
/// the parts so far (output at `CKF_END_OF_MESSAGE`, once the tag is checked).
pub struct PendingMessage {
    /// The parameter given to `Begin` (with a generated IV filled in).
    pub param: MessageParam,
    /// The associated data given to `Begin`.
    pub aad: Vec<u8>,
    /// The ciphertext parts so far (decryption).
    pub data: Zeroizing<Vec<u8>>,
    /// The running encryption.
    pub stream: Option<Box<dyn SealStream>>,
}

/// A v3.0 message-based signature or verification: the row and key it was
/// initialised with (each message runs a fresh operation of the row's sign
/// builder), and the message begun with `C_*MessageBegin`, if any.
pub struct MessageSignState {
    /// The mechanism row.
    pub row: &'static Mechanism,
    /// The mechanism parameter given to `Init`.
    pub param: Param,
    /// The key.
    pub key: Arc<Object>,
    /// The message in progress.
    pub pending: Option<Box<dyn SignOp>>,
}

/// An operation that may have gone multi-part (an update was made), after
/// which only the final call may end it.
pub trait MultiPart {
    /// An update was made.
    fn went_multi_part(&self) -> bool;
}

impl MultiPart for DigestState {
    fn went_multi_part(&self) -> bool {
        self.multipart
    }
}

impl MultiPart for CipherState {
    fn went_multi_part(&self) -> bool {
        self.multipart
    }
}

impl MultiPart for SignState {
    fn went_multi_part(&self) -> bool {
        self.multipart
    }
}

/// One single-part call (`C_Digest`, `C_Encrypt`/`C_Decrypt`, `C_Sign`), the
/// same shape for all: refused with `CKR_OPERATION_ACTIVE` once the operation
/// went multi-part; `need` bytes offered to the caller (a size query or a
/// too-small buffer keeps the operation); `run` writes the output and says
/// how much it wrote; the operation then ends (and on any error, by `drive`).
pub fn single_part<T: MultiPart>(
    slot: &mut Option<T>,
    out: &mut OutBuf<'_>,
    need: impl FnOnce(&T) -> usize,
    run: impl FnOnce(&mut T, &mut [u8]) -> Result<usize>,
) -> Result<()> {
    drive(slot, |op| {
        if op.went_multi_part() {
            return Err(Error::OperationActive);
        }
        let Some(buf) = out.offer(need(op))? else {
            return Ok(((), After::Keep));
        };
        let n = run(op, buf)?;
        out.truncate(n);
        Ok(((), After::End))
    })
}

/// The active operations of a session, at most one of each kind.
#[derive(Default)]
pub struct Ops {
    /// `C_FindObjects*`.
    pub find: Option<FindOp>,
    /// `C_Digest*`.
    pub digest: Option<DigestState>,
    /// `C_Encrypt*`.
    pub encrypt: Option<CipherState>,
    /// `C_Decrypt*`.
    pub decrypt: Option<CipherState>,
    /// `C_Sign*`.
    pub sign: Option<SignState>,
    /// `C_Verify*`.
    pub verify: Option<SignState>,
    /// `C_SignRecover*`.
    pub sign_recover: Option<RecoverState>,
    /// `C_VerifyRecover*`.
    pub verify_recover: Option<RecoverState>,
    /// `C_MessageEncrypt*` / `C_EncryptMessage*`.
    pub msg_encrypt: Option<MessageCipherState>,
    /// `C_MessageDecrypt*` / `C_DecryptMessage*`.
    pub msg_decrypt: Option<MessageCipherState>,
    /// `C_MessageSign*` / `C_SignMessage*`.
    pub msg_sign: Option<MessageSignState>,
    /// `C_MessageVerify*` / `C_VerifyMessage*`.
    pub msg_verify: Option<MessageSignState>,
}

impl Ops {
    /// The encrypt or decrypt slot.
    pub fn cipher(&mut self, dir: Dir) -> &mut Option<CipherState> {
        match dir {
            Dir::Encrypt => &mut self.encrypt,
            Dir::Decrypt => &mut self.decrypt,
        }
    }

    /// The message-encrypt or message-decrypt slot.
    pub fn msg_cipher(&mut self, dir: Dir) -> &mut Option<MessageCipherState> {
        match dir {
            Dir::Encrypt => &mut self.msg_encrypt,
            Dir::Decrypt => &mut self.msg_decrypt,
        }
    }

    /// The message-sign or message-verify slot.
    pub fn msg_sign(&mut self, verify: bool) -> &mut Option<MessageSignState> {
        if verify {
            &mut self.msg_verify
        } else {
            &mut self.msg_sign
        }
    }

    /// The sign-recover or verify-recover slot.
    pub fn recover(&mut self, verify: bool) -> &mut Option<RecoverState> {
        if verify {
            &mut self.verify_recover
        } else {
            &mut self.sign_recover
        }
    }

    /// Whether an operation other than a digest (or a find) is active: such
    /// a session's state cannot be saved (`CKR_STATE_UNSAVEABLE`).
    pub fn has_unsaveable(&self) -> bool {
        self.encrypt.is_some()
            || self.decrypt.is_some()
            || self.sign.is_some()
            || self.verify.is_some()
            || self.sign_recover.is_some()
            || self.verify_recover.is_some()
            || self.msg_encrypt.is_some()
            || self.msg_decrypt.is_some()
            || self.msg_sign.is_some()
            || self.msg_verify.is_some()
    }
}

/// The caller's output buffer: absent (a size query) or a slice. Holds the
/// length to report back in `*pulLen` whatever the outcome.
pub struct OutBuf<'a> {
    buf: Option<&'a mut [u8]>,
    len: usize,
}

impl<'a> OutBuf<'a> {
    /// Wraps the caller's buffer; `None` means a size query.
    pub fn new(buf: Option<&'a mut [u8]>) -> OutBuf<'a> {
        OutBuf { buf, len: 0 }
    }

    /// The length to report to the caller.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was or will be written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Offers `needed` bytes of output. Gives the space to write into when the
    /// caller's buffer is large enough; `None` for a size query (the length is
    /// reported, the operation stays alive); `CKR_BUFFER_TOO_SMALL` otherwise
    /// (the length is reported, the operation stays alive).
    pub fn offer(&mut self, needed: usize) -> Result<Option<&mut [u8]>> {
        self.len = needed;
        match self.buf.as_deref_mut() {
            None => Ok(None),
            Some(b) if b.len() < needed => Err(Error::BufferTooSmall),
            Some(b) => Ok(Some(&mut b[..needed])),
        }
    }

    /// Records that fewer bytes than offered were written.
    pub fn truncate(&mut self, written: usize) {
        self.len = written.min(self.len);
    }
}

/// What happens to an operation after a successful step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum After {
    /// It stays active (an update, a size query).
    Keep,
    /// It is finished.
    End,
}

/// Runs one step of an active operation with the spec's rules: no operation →
/// `CKR_OPERATION_NOT_INITIALIZED`; `CKR_BUFFER_TOO_SMALL` keeps it alive; any
/// other error ends it. The operation is taken out of its slot for the step
/// and put back only when it lives on, so a step that panics (caught at the
/// C boundary as `CKR_GENERAL_ERROR`) ends it too instead of leaving it
/// active.
pub fn drive<T, R>(
    slot: &mut Option<T>,
    step: impl FnOnce(&mut T) -> Result<(R, After)>,
) -> Result<R> {
    let mut op = slot.take().ok_or(Error::OperationNotInitialized)?;
    match step(&mut op) {
        Ok((r, After::Keep)) => {
            *slot = Some(op);
            Ok(r)
        }
        Ok((r, After::End)) => Ok(r),
        Err(Error::BufferTooSmall) => {
            *slot = Some(op);
            Err(Error::BufferTooSmall)
        }
        Err(e) => Err(e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn outbuf_query_small_and_fit() {
        let mut q = OutBuf::new(None);
        assert_eq!(q.offer(32).unwrap().map(|b| b.len()), None);
        assert_eq!(q.len(), 32);
        let mut small = [0u8; 8];
        let mut s = OutBuf::new(Some(&mut small));
        assert_eq!(s.offer(32).err(), Some(Error::BufferTooSmall));
        assert_eq!(s.len(), 32);
        let mut big = [0u8; 64];
        let mut b = OutBuf::new(Some(&mut big));
        assert_eq!(b.offer(32).unwrap().map(|b| b.len()), Some(32));
        b.truncate(20);
        assert_eq!(b.len(), 20);
    }

    #[test]
    fn drive_ends_on_errors_but_not_on_buffer_too_small() {
        let mut op = Some(1);
        assert_eq!(
            drive(&mut op, |_| Err::<((), After), _>(Error::BufferTooSmall)),
            Err(Error::BufferTooSmall)
        );
        assert!(op.is_some());
        assert_eq!(drive(&mut op, |_| Ok(((), After::Keep))), Ok(()));
        assert!(op.is_some());
        assert_eq!(
            drive(&mut op, |_| Err::<((), After), _>(Error::DataLenRange)),
            Err(Error::DataLenRange)
        );
        assert!(op.is_none());
        assert_eq!(
            drive(&mut op, |_| Ok(((), After::End))),
            Err(Error::OperationNotInitialized)
        );
        let mut op = Some(1);
        assert_eq!(drive(&mut op, |_| Ok((5, After::End))), Ok(5));
        assert!(op.is_none());
    }

    #[test]
    fn drive_ends_an_operation_whose_step_panics() {
        let mut op = Some(1);
        let caught = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            drive(&mut op, |_| -> Result<((), After)> {
                panic!("step failed")
            })
        }));
        assert!(caught.is_err());
        assert!(op.is_none(), "a panicking step must end the operation");
    }
}
