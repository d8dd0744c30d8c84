//! The v3.0 message-based functions: `C_MessageEncryptInit` …
//! `C_MessageEncryptFinal`, the decrypt family, and the sign and verify
//! families. An `Init` binds a mechanism and a key for any number of
//! messages; each message is one call (`C_EncryptMessage`) or a
//! `Begin`/`Next`… sequence ending with `CKF_END_OF_MESSAGE` (sign/verify:
//! with a signature pointer); `Final` ends the whole operation.
//!
//! Rules (v3.0 §5.x; Kryoptic answers the same): a one-call message or a
//! `Begin` while a message is in progress is `CKR_OPERATION_ACTIVE`; `Next`
//! without `Begin` is `CKR_OPERATION_NOT_INITIALIZED`. An error in a message
//! ends that message only, never the operation (the next message may be
//! fine); a size query or `CKR_BUFFER_TOO_SMALL` changes nothing (no IV is
//! generated, no counter moves, no part is taken in).
//!
//! A multi-part encryption outputs each part's ciphertext at once (as long
//! as the part) and the tag at `CKF_END_OF_MESSAGE`. A multi-part decryption
//! takes the parts and outputs the whole plaintext at `CKF_END_OF_MESSAGE`,
//! earlier parts nothing: the rule of the house, no plaintext before the
//! tag is checked (as `C_DecryptUpdate` with `CKM_AES_GCM`).
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use zeroize::Zeroizing;

use super::state::Module;
use crate::error::{Error, Result};
use crate::mechanism::message::{IvCounter, MessageParam, MessageShape, generate_iv};
use crate::mechanism::{self, Dir, MechanismArg};
use crate::session::{MessageCipherState, MessageSignState, OutBuf, PendingMessage};

impl Module {
    /// `C_MessageEncryptInit` / `C_MessageDecryptInit`: a row with an
    /// `aead` column and a key allowed to encrypt / decrypt. Every message
    /// brings its own parameter, so `Init` takes none; a parameter of the
    /// size of the message parameter (`CK_GCM_MESSAGE_PARAMS`, which the
    /// `cryptoki` crate passes) is accepted and not used (`ffi` copied it as
    /// bytes without following its pointers); anything else is
    /// `CKR_MECHANISM_PARAM_INVALID`.
    pub fn message_cipher_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        dir: Dir,
    ) -> Result<()> {
        let s = self.session(h)?;
        if s.ops.lock().msg_cipher(dir).is_some() {
            return Err(Error::OperationActive);
        }
        let flag = match dir {
            Dir::Encrypt => CKF_MESSAGE_ENCRYPT,
            Dir::Decrypt => CKF_MESSAGE_DECRYPT,
        };
        let row = self.mechanism_row(&s, mech.ty, flag, "C_Message*Init")?;
        let build = row.aead.ok_or(Error::MechanismInvalid)?;
        let (usage, func) = match dir {
            Dir::Encrypt => (CKA_ENCRYPT, "C_MessageEncryptInit"),
            Dir::Decrypt => (CKA_DECRYPT, "C_MessageDecryptInit"),
        };
        let k = self.usable_key(&s, key, mech, row, usage, func)?;
        let aead = build(&k)?;
        match &mech.param {
            mechanism::Param::None => {}
            mechanism::Param::Raw(b) if b.len() == aead.shape().c_size() => {}
            _ => return Err(Error::MechanismParamInvalid),
        }
        let mut ops = s.ops.lock();
        let slot = ops.msg_cipher(dir);
        if slot.is_some() {
            return Err(Error::OperationActive);
        }
        *slot = Some(MessageCipherState {
            aead,
            counter: IvCounter::random()?,
            pending: None,
        });
        Ok(())
    }

    /// The layout of the per-message parameter of the session's message
    /// encryption or decryption, for `ffi` to read.
    pub fn message_shape(&self, h: CK_SESSION_HANDLE, dir: Dir) -> Result<MessageShape> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_cipher(dir)
            .as_ref()
            .ok_or(Error::OperationNotInitialized)?;
        Ok(st.aead.shape())
    }

    /// `C_EncryptMessage` / `C_DecryptMessage`: one whole message. The
    /// output is as long as the input (the tag travels in the parameter).
    pub fn cipher_message(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        param: &mut MessageParam,
        aad: &[u8],
        input: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_cipher(dir)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        if st.pending.is_some() {
            return Err(Error::OperationActive);
        }
        let Some(buf) = out.offer(input.len())? else {
            return Ok(());
        };
        match dir {
            Dir::Encrypt => {
                let mut counter = st.counter;
                generate_iv(param, &mut counter)?;
                st.counter = counter;
                st.aead.seal(param, aad, input, buf)
            }
            Dir::Decrypt => st.aead.open(param, aad, input, buf),
        }
    }

    /// `C_EncryptMessageBegin` / `C_DecryptMessageBegin`: starts a message
    /// (an encryption's IV is generated here and written back at once).
    pub fn cipher_message_begin(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        param: &mut MessageParam,
        aad: &[u8],
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_cipher(dir)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        if st.pending.is_some() {
            return Err(Error::OperationActive);
        }
        let stream = if dir == Dir::Encrypt {
            let mut counter = st.counter;
            generate_iv(param, &mut counter)?;
            let stream = st.aead.seal_stream(param, aad)?;
            st.counter = counter;
            Some(stream)
        } else {
            None
        };
        st.pending = Some(PendingMessage {
            param: param.clone(),
            aad: aad.to_vec(),
            data: Zeroizing::new(Vec::new()),
            stream,
        });
        Ok(())
    }

    /// `C_EncryptMessageNext` / `C_DecryptMessageNext`: another part; with
    /// `last` (`CKF_END_OF_MESSAGE`) the message ends. Encryption outputs
    /// the part's ciphertext, and at the end writes the tag into this call's
    /// parameter; decryption outputs nothing until the end, then the whole
    /// plaintext if the tag (from this call's parameter) is right. The IV is
    /// the one `Begin` took.
    pub fn cipher_message_next(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        param: &mut MessageParam,
        input: &[u8],
        out: &mut OutBuf<'_>,
        last: bool,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_cipher(dir)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        let p = st.pending.as_mut().ok_or(Error::OperationNotInitialized)?;
        let need = match dir {
            Dir::Encrypt => input.len(),
            Dir::Decrypt if last => p.data.len() + input.len(),
            Dir::Decrypt => 0,
        };
        let Some(buf) = out.offer(need)? else {
            return Ok(());
        };
        // The tag length is the one `Begin` named.
        let tag_bits = |m: &MessageParam| match m {
            MessageParam::Gcm(g) => Some(g.tag_bits),
            MessageParam::None => None,
        };
        if last && tag_bits(&p.param) != tag_bits(param) {
            st.pending = None;
            return Err(Error::ArgumentsBad);
        }
        let Some(mut p) = st.pending.take() else {
            return Err(Error::OperationNotInitialized);
        };
        if let Some(stream) = p.stream.as_mut() {
            stream.update(input, buf);
        } else {
            p.data.extend_from_slice(input);
        }
        if !last {
            st.pending = Some(p);
            return Ok(());
        }
        match (dir, p.stream.take()) {
            (Dir::Encrypt, Some(stream)) => {
                if let MessageParam::Gcm(now) = param {
                    now.tag = stream.finish();
                    now.tag_out = true;
                }
                Ok(())
            }
            (Dir::Decrypt, None) => {
                let mut whole = p.param;
                if let (MessageParam::Gcm(w), MessageParam::Gcm(now)) = (&mut whole, &*param) {
                    w.tag = now.tag.clone();
                }
                st.aead.open(&whole, &p.aad, &p.data, buf)
            }
            _ => Err(Error::GeneralError),
        }
    }

    /// `C_MessageEncryptFinal` / `C_MessageDecryptFinal` (and the sign and
    /// verify ones through `message_sign_final`): ends the operation, and a
    /// message still in progress with it.
    pub fn message_cipher_final(&self, h: CK_SESSION_HANDLE, dir: Dir) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        ops.msg_cipher(dir)
            .take()
            .map(drop)
            .ok_or(Error::OperationNotInitialized)
    }

    /// `C_MessageSignInit` / `C_MessageVerifyInit`: any row that signs; each
    /// message then runs a fresh operation of the row's sign builder with
    /// `Init`'s parameter (the per-message parameter is empty).
    pub fn message_sign_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<()> {
        let s = self.session(h)?;
        if s.ops.lock().msg_sign(verify).is_some() {
            return Err(Error::OperationActive);
        }
        let row = self.mechanism_row(
            &s,
            mech.ty,
            if verify {
                CKF_MESSAGE_VERIFY | CKF_VERIFY
            } else {
                CKF_MESSAGE_SIGN | CKF_SIGN
            },
            "C_MessageSign/VerifyInit",
        )?;
        let build = row.sign.ok_or(Error::MechanismInvalid)?;
        let (usage, flag, func) = if verify {
            (CKA_VERIFY, CKF_MESSAGE_VERIFY, "C_MessageVerifyInit")
        } else {
            (CKA_SIGN, CKF_MESSAGE_SIGN, "C_MessageSignInit")
        };
        if row.flags & flag == 0 {
            return Err(Error::MechanismInvalid);
        }
        let key = self.usable_key(&s, key, mech, row, usage, func)?;
        // Built once now so that a bad parameter or key fails here.
        build(&mech.param, &key, verify)?;
        let mut ops = s.ops.lock();
        let slot = ops.msg_sign(verify);
        if slot.is_some() {
            return Err(Error::OperationActive);
        }
        *slot = Some(MessageSignState {
            row,
            param: mech.param.clone(),
            key,
            pending: None,
        });
        Ok(())
    }

    fn new_sign_op(st: &MessageSignState, verify: bool) -> Result<Box<dyn mechanism::SignOp>> {
        let build = st.row.sign.ok_or(Error::MechanismInvalid)?;
        build(&st.param, &st.key, verify)
    }

    /// `C_SignMessage`: one whole message, with the size-query rules.
    pub fn sign_message(
        &self,
        h: CK_SESSION_HANDLE,
        data: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_sign(false)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        if st.pending.is_some() {
            return Err(Error::OperationActive);
        }
        let mut op = Self::new_sign_op(st, false)?;
        let Some(buf) = out.offer(op.sig_len())? else {
            return Ok(());
        };
        op.update(data)?;
        op.sign(buf)
    }

    /// `C_VerifyMessage`: one whole message; a wrong signature is
    /// `CKR_SIGNATURE_INVALID`.
    pub fn verify_message(&self, h: CK_SESSION_HANDLE, data: &[u8], sig: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_sign(true)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        if st.pending.is_some() {
            return Err(Error::OperationActive);
        }
        let mut op = Self::new_sign_op(st, true)?;
        op.update(data)?;
        op.verify(sig)
    }

    /// `C_SignMessageBegin` / `C_VerifyMessageBegin`.
    pub fn sign_message_begin(&self, h: CK_SESSION_HANDLE, verify: bool) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_sign(verify)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        if st.pending.is_some() {
            return Err(Error::OperationActive);
        }
        st.pending = Some(Self::new_sign_op(st, verify)?);
        Ok(())
    }

    /// `C_SignMessageNext`: another part; with an output (`pulSignatureLen`
    /// not NULL) the last one, and the signature with the size-query rules.
    pub fn sign_message_next(
        &self,
        h: CK_SESSION_HANDLE,
        data: &[u8],
        out: Option<&mut OutBuf<'_>>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_sign(false)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        let op = st.pending.as_mut().ok_or(Error::OperationNotInitialized)?;
        let buf = match out {
            None => None,
            Some(out) => match out.offer(op.sig_len())? {
                None => return Ok(()),
                Some(buf) => Some(buf),
            },
        };
        let Some(mut op) = st.pending.take() else {
            return Err(Error::OperationNotInitialized);
        };
        op.update(data)?;
        match buf {
            None => {
                st.pending = Some(op);
                Ok(())
            }
            Some(buf) => op.sign(buf),
        }
    }

    /// `C_VerifyMessageNext`: another part; with a signature, the last one.
    pub fn verify_message_next(
        &self,
        h: CK_SESSION_HANDLE,
        data: &[u8],
        sig: Option<&[u8]>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let st = ops
            .msg_sign(true)
            .as_mut()
            .ok_or(Error::OperationNotInitialized)?;
        let mut op = st.pending.take().ok_or(Error::OperationNotInitialized)?;
        op.update(data)?;
        match sig {
            None => {
                st.pending = Some(op);
                Ok(())
            }
            Some(sig) => op.verify(sig),
        }
    }

    /// `C_MessageSignFinal` / `C_MessageVerifyFinal`.
    pub fn message_sign_final(&self, h: CK_SESSION_HANDLE, verify: bool) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        ops.msg_sign(verify)
            .take()
            .map(drop)
            .ok_or(Error::OperationNotInitialized)
    }
}
