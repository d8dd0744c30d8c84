//! The exported v3.0 message-based functions (`C_MessageEncryptInit` …
//! `C_MessageVerifyFinal`): thin forwarders onto `Module`, plus the one
//! thing only `ffi` can do for them: read each message's parameter by the
//! layout the operation names and write back what the token fills in (a
//! generated IV into `pIv`, the tag into `pTag`).
#![allow(non_snake_case, clippy::missing_safety_doc)]

use std::ffi::c_void;

use cryptoki_sys::*;

use super::params::{flat_mechanism, mechanism};
use super::{entry, input, len_of, module, with_outbuf};
use crate::error::{Error, Result};
use crate::mechanism::Dir;
use crate::mechanism::message::{GcmMessage, MessageParam, MessageShape};
use crate::module::Module;

/// Longest IV read from a `CK_GCM_MESSAGE_PARAMS` (GCM takes 1–256 bytes).
const MAX_IV: usize = 256;
/// Largest tag, in bits.
const MAX_TAG_BITS: CK_ULONG = 128;

/// A message parameter made safe, and where to write back into it.
struct MsgParam {
    param: MessageParam,
    /// The caller's `CK_GCM_MESSAGE_PARAMS` as read (its `pIv`/`pTag` are
    /// the caller's buffers), for `CK_GCM_MESSAGE_PARAMS`.
    gcm: Option<CK_GCM_MESSAGE_PARAMS>,
}

/// Reads the parameter of a message of the session's message encryption or
/// decryption, in the layout its mechanism takes.
///
/// # Safety
/// `p` must be NULL or valid for `len` bytes holding the parameter of the
/// operation's mechanism, whose pointers are valid for their lengths.
unsafe fn cipher_param(
    m: &Module,
    h: CK_SESSION_HANDLE,
    dir: Dir,
    p: *mut c_void,
    len: CK_ULONG,
) -> Result<MsgParam> {
    match m.message_shape(h, dir)? {
        MessageShape::None => {
            if len != 0 {
                return Err(Error::ArgumentsBad);
            }
            Ok(MsgParam {
                param: MessageParam::None,
                gcm: None,
            })
        }
        MessageShape::Gcm => {
            if p.is_null() || len_of(len)? != std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>() {
                return Err(Error::ArgumentsBad);
            }
            // SAFETY: `p` is valid for the structure's size (checked above,
            // and the caller's promise); any bit pattern is a value of it.
            let g = unsafe { std::ptr::read_unaligned(p as *const CK_GCM_MESSAGE_PARAMS) };
            if len_of(g.ulIvLen)? > MAX_IV || g.ulTagBits > MAX_TAG_BITS {
                return Err(Error::ArgumentsBad);
            }
            let tag_len = len_of(g.ulTagBits.div_ceil(8))?;
            if g.pTag.is_null() && tag_len != 0 {
                return Err(Error::ArgumentsBad);
            }
            // SAFETY: the caller promises pIv valid for ulIvLen bytes.
            let iv = unsafe { input(g.pIv, g.ulIvLen) }?.to_vec();
            let tag = match dir {
                // SAFETY: the caller promises pTag valid for ulTagBits / 8 bytes.
                Dir::Decrypt => unsafe { input(g.pTag, tag_len as CK_ULONG) }?.to_vec(),
                Dir::Encrypt => Vec::new(),
            };
            Ok(MsgParam {
                param: MessageParam::Gcm(GcmMessage {
                    iv,
                    fixed_bits: g.ulIvFixedBits,
                    generator: g.ivGenerator,
                    tag_bits: g.ulTagBits,
                    tag,
                    iv_out: false,
                    tag_out: false,
                }),
                gcm: Some(g),
            })
        }
    }
}

/// Writes what the token filled in back through the caller's parameter.
///
/// # Safety
/// The pointers in `mp.gcm` must be valid for writes of their lengths.
unsafe fn write_back(mp: &MsgParam) -> Result<()> {
    let (MessageParam::Gcm(g), Some(raw)) = (&mp.param, &mp.gcm) else {
        return Ok(());
    };
    if g.iv_out {
        if raw.pIv.is_null() || len_of(raw.ulIvLen)? != g.iv.len() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: pIv is valid for ulIvLen == iv.len() bytes (caller promise).
        unsafe { std::ptr::copy_nonoverlapping(g.iv.as_ptr(), raw.pIv, g.iv.len()) };
    }
    if g.tag_out && !g.tag.is_empty() {
        if raw.pTag.is_null() || len_of(raw.ulTagBits.div_ceil(8))? < g.tag.len() {
            return Err(Error::ArgumentsBad);
        }
        // SAFETY: pTag is valid for ulTagBits / 8 >= tag.len() bytes.
        unsafe { std::ptr::copy_nonoverlapping(g.tag.as_ptr(), raw.pTag, g.tag.len()) };
    }
    Ok(())
}

/// The parameter of a sign or verify message: none (the mechanism's
/// parameter was given to `Init`).
fn no_param(len: CK_ULONG) -> Result<()> {
    if len != 0 {
        return Err(Error::ArgumentsBad);
    }
    Ok(())
}

macro_rules! message_cipher_functions {
    ($init:ident, $one:ident, $begin:ident, $next:ident, $final:ident, $dir:expr) => {
        entry!($init(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
            let m = module()?;
            // SAFETY: caller promise for pMechanism.
            let mech = unsafe { flat_mechanism(p_mech) }?;
            m.message_cipher_init(h, &mech, key, $dir)
        });

        entry!($one(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_aad: *mut CK_BYTE, aad_len: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
            let m = module()?;
            // SAFETY: caller promise for pParameter and what it points to.
            let mut mp = unsafe { cipher_param(&m, h, $dir, p_param, param_len) }?;
            // SAFETY: caller promise for the AAD and the input.
            let (aad, data) = unsafe { (input(p_aad, aad_len)?, input(p_in, in_len)?) };
            // SAFETY: caller promise for the output buffer and its length.
            unsafe { with_outbuf(p_out, p_out_len, |o| m.cipher_message(h, $dir, &mut mp.param, aad, data, o)) }?;
            // SAFETY: caller promise for pIv/pTag.
            unsafe { write_back(&mp) }
        });

        entry!($begin(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_aad: *mut CK_BYTE, aad_len: CK_ULONG) {
            let m = module()?;
            // SAFETY: caller promise for pParameter and what it points to.
            let mut mp = unsafe { cipher_param(&m, h, $dir, p_param, param_len) }?;
            // SAFETY: caller promise for the AAD.
            let aad = unsafe { input(p_aad, aad_len) }?;
            m.cipher_message_begin(h, $dir, &mut mp.param, aad)?;
            // SAFETY: caller promise for pIv.
            unsafe { write_back(&mp) }
        });

        entry!($next(h: CK_SESSION_HANDLE, p_param: *mut c_void, param_len: CK_ULONG, p_in: *mut CK_BYTE, in_len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG, flags: CK_FLAGS) {
            let m = module()?;
            let last = match flags {
                0 => false,
                CKF_END_OF_MESSAGE => true,
                _ => return Err(Error::ArgumentsBad),
            };
            // SAFETY: caller promise for pParameter and what it points to.
            let mut mp = unsafe { cipher_param(&m, h, $dir, p_param, param_len) }?;
            // SAFETY: caller promise for the input.
            let data = unsafe { input(p_in, in_len) }?;
            // SAFETY: caller promise for the output buffer and its length.
            unsafe { with_outbuf(p_out, p_out_len, |o| m.cipher_message_next(h, $dir, &mut mp.param, data, o, last)) }?;
            // SAFETY: caller promise for pTag.
            unsafe { write_back(&mp) }
        });

        entry!($final(h: CK_SESSION_HANDLE) {
            module()?.message_cipher_final(h, $dir)
        });
    };
}

message_cipher_functions!(
    C_MessageEncryptInit,
    C_EncryptMessage,
    C_EncryptMessageBegin,
    C_EncryptMessageNext,
    C_MessageEncryptFinal,
    Dir::Encrypt
);
message_cipher_functions!(
    C_MessageDecryptInit,
    C_DecryptMessage,
    C_DecryptMessageBegin,
    C_DecryptMessageNext,
    C_MessageDecryptFinal,
    Dir::Decrypt
);

// ---- sign and verify ----------------------------------------------------------------

entry!(C_MessageSignInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.message_sign_init(h, &mech, key, false)
});

entry!(C_SignMessage(h: CK_SESSION_HANDLE, _p_param: *mut c_void, param_len: CK_ULONG, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    let m = module()?;
    no_param(param_len)?;
    // SAFETY: caller promise for pData.
    let data = unsafe { input(p_data, len) }?;
    // SAFETY: caller promise for pSignature/pulSignatureLen.
    unsafe { with_outbuf(p_sig, p_sig_len, |o| m.sign_message(h, data, o)) }
});

entry!(C_SignMessageBegin(h: CK_SESSION_HANDLE, _p_param: *mut c_void, param_len: CK_ULONG) {
    let m = module()?;
    no_param(param_len)?;
    m.sign_message_begin(h, false)
});

entry!(C_SignMessageNext(h: CK_SESSION_HANDLE, _p_param: *mut c_void, param_len: CK_ULONG, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    let m = module()?;
    no_param(param_len)?;
    // SAFETY: caller promise for pData.
    let data = unsafe { input(p_data, len) }?;
    if p_sig_len.is_null() {
        // Not the last part (v3.0: a NULL pulSignatureLen says so).
        return m.sign_message_next(h, data, None);
    }
    // SAFETY: caller promise for pSignature/pulSignatureLen.
    unsafe { with_outbuf(p_sig, p_sig_len, |o| m.sign_message_next(h, data, Some(o))) }
});

entry!(C_MessageSignFinal(h: CK_SESSION_HANDLE) {
    module()?.message_sign_final(h, false)
});

entry!(C_MessageVerifyInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.message_sign_init(h, &mech, key, true)
});

entry!(C_VerifyMessage(h: CK_SESSION_HANDLE, _p_param: *mut c_void, param_len: CK_ULONG, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    let m = module()?;
    no_param(param_len)?;
    // SAFETY: caller promise for pData and pSignature.
    let (data, sig) = unsafe { (input(p_data, len)?, input(p_sig, sig_len)?) };
    m.verify_message(h, data, sig)
});

entry!(C_VerifyMessageBegin(h: CK_SESSION_HANDLE, _p_param: *mut c_void, param_len: CK_ULONG) {
    let m = module()?;
    no_param(param_len)?;
    m.sign_message_begin(h, true)
});

entry!(C_VerifyMessageNext(h: CK_SESSION_HANDLE, _p_param: *mut c_void, param_len: CK_ULONG, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    let m = module()?;
    no_param(param_len)?;
    // SAFETY: caller promise for pData.
    let data = unsafe { input(p_data, len) }?;
    let sig = if p_sig.is_null() {
        // Not the last part (v3.0: a NULL pSignature says so).
        None
    } else {
        // SAFETY: caller promise for pSignature.
        Some(unsafe { input(p_sig, sig_len) }?)
    };
    m.verify_message_next(h, data, sig)
});

entry!(C_MessageVerifyFinal(h: CK_SESSION_HANDLE) {
    module()?.message_sign_final(h, true)
});
