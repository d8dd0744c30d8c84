//! The exported `C_*` functions: each is a thin forwarder onto `Module`.
#![allow(non_snake_case, clippy::missing_safety_doc)]

use std::ffi::c_void;
use std::sync::Arc;

use cryptoki_sys::*;

use super::params::mechanism;
use super::{
    STATE, ending, entry, input, module, out, register_fork_handlers, template, unsupported,
    with_outbuf, write_list,
};
use crate::error::Error;
use crate::mechanism::Dir;
use crate::module::Module;
use crate::object::policy::Reading;

// ---- general purpose ---------------------------------------------------------------------

entry!(C_Initialize(p_init_args: *mut c_void) {
    let mut threads = true;
    // SAFETY: a non-NULL argument points to CK_C_INITIALIZE_ARGS (spec §5.4).
    if let Some(args) = unsafe { (p_init_args as *const CK_C_INITIALIZE_ARGS).as_ref() } {
        if !args.pReserved.is_null() {
            return Err(Error::ArgumentsBad);
        }
        let given = [
            args.CreateMutex.is_some(),
            args.DestroyMutex.is_some(),
            args.LockMutex.is_some(),
            args.UnlockMutex.is_some(),
        ];
        if given.contains(&true) && given.contains(&false) {
            return Err(Error::ArgumentsBad);
        }
        // Mutex callbacks, with or without CKF_OS_LOCKING_OK, are accepted: the
        // module's own native locks give the same guarantees. Its threads (the
        // store's database closer, the audit flusher) are not started when the
        // application forbids them.
        threads = args.flags & CKF_LIBRARY_CANT_CREATE_OS_THREADS == 0;
    }
    let mut state = STATE.write();
    if state.module.is_some() {
        return Err(Error::CryptokiAlreadyInitialized);
    }
    let module = Module::initialize(threads)?;
    register_fork_handlers();
    state.module = Some(Arc::new(module));
    Ok(())
});

entry!(C_Finalize(p_reserved: *mut c_void) {
    if !p_reserved.is_null() {
        return Err(Error::ArgumentsBad);
    }
    let old = STATE.write().module.take().ok_or(Error::CryptokiNotInitialized)?;
    // How the key memory fared (fallbacks to the ordinary heap, locking).
    crate::log!(old.log, crate::logging::Level::Debug, "{}", crate::secret::status());
    // Dropped outside the global lock; calls still running keep their own Arc.
    drop(old);
    Ok(())
});

entry!(C_GetInfo(p_info: *mut CK_INFO) {
    let m = module()?;
    // SAFETY: caller promise for pInfo.
    *unsafe { out(p_info) }? = m.info();
    Ok(())
});

// ---- slots and tokens ------------------------------------------------------------------------

entry!(C_GetSlotList(_token_present: CK_BBOOL, p_list: *mut CK_SLOT_ID, p_count: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pSlotList/pulCount.
    unsafe { write_list(p_list, p_count, &m.slot_list()?) }
});

entry!(C_GetSlotInfo(slot: CK_SLOT_ID, p_info: *mut CK_SLOT_INFO) {
    let m = module()?;
    // SAFETY: caller promise for pInfo.
    let p = unsafe { out(p_info) }?;
    *p = m.slot_info(slot)?;
    Ok(())
});

entry!(C_GetTokenInfo(slot: CK_SLOT_ID, p_info: *mut CK_TOKEN_INFO) {
    let m = module()?;
    // SAFETY: caller promise for pInfo.
    let p = unsafe { out(p_info) }?;
    *p = m.token_info(slot)?;
    Ok(())
});

entry!(C_GetMechanismList(slot: CK_SLOT_ID, p_list: *mut CK_MECHANISM_TYPE, p_count: *mut CK_ULONG) {
    let m = module()?;
    let list = m.mechanism_list(slot)?;
    // SAFETY: caller promise for pMechanismList/pulCount.
    unsafe { write_list(p_list, p_count, &list) }
});

entry!(C_GetMechanismInfo(slot: CK_SLOT_ID, ty: CK_MECHANISM_TYPE, p_info: *mut CK_MECHANISM_INFO) {
    let m = module()?;
    // SAFETY: caller promise for pInfo.
    let p = unsafe { out(p_info) }?;
    *p = m.mechanism_info(slot, ty)?;
    Ok(())
});

entry!(C_InitToken(slot: CK_SLOT_ID, p_pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG, p_label: *mut CK_UTF8CHAR) {
    let m = module()?;
    if p_pin.is_null() || p_label.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: caller promise: pPin has ulPinLen bytes, pLabel has 32 bytes.
    let (pin, label) = unsafe { (input(p_pin, pin_len)?, &*(p_label as *const [u8; 32])) };
    m.init_token(slot, pin, label)
});

entry!(C_InitPIN(h: CK_SESSION_HANDLE, p_pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG) {
    let m = module()?;
    if p_pin.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: caller promise for pPin.
    m.init_pin(h, unsafe { input(p_pin, pin_len) }?)
});

entry!(C_SetPIN(h: CK_SESSION_HANDLE, p_old: *mut CK_UTF8CHAR, old_len: CK_ULONG, p_new: *mut CK_UTF8CHAR, new_len: CK_ULONG) {
    let m = module()?;
    if p_old.is_null() || p_new.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: caller promise for pOldPin/pNewPin.
    let (old, new) = unsafe { (input(p_old, old_len)?, input(p_new, new_len)?) };
    m.set_pin(h, old, new)
});

entry!(C_WaitForSlotEvent(flags: CK_FLAGS, _p_slot: *mut CK_SLOT_ID, p_reserved: *mut c_void) {
    module()?;
    if !p_reserved.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // Slots never change on their own: there is never an event to report, and
    // a blocking wait would never return.
    if flags & CKF_DONT_BLOCK != 0 { Err(Error::NoEvent) } else { Err(Error::FunctionNotSupported) }
});

// ---- sessions and login ------------------------------------------------------------------------

entry!(C_OpenSession(slot: CK_SLOT_ID, flags: CK_FLAGS, _app: *mut c_void, _notify: CK_NOTIFY, ph: *mut CK_SESSION_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for phSession.
    let ph = unsafe { out(ph) }?;
    *ph = m.open_session(slot, flags)?;
    Ok(())
});

entry!(C_CloseSession(h: CK_SESSION_HANDLE) {
    module()?.close_session(h)
});

entry!(C_CloseAllSessions(slot: CK_SLOT_ID) {
    module()?.close_all_sessions(slot)
});

entry!(C_GetSessionInfo(h: CK_SESSION_HANDLE, p_info: *mut CK_SESSION_INFO) {
    let m = module()?;
    // SAFETY: caller promise for pInfo.
    let p = unsafe { out(p_info) }?;
    *p = m.session_info(h)?;
    Ok(())
});

entry!(C_SessionCancel(h: CK_SESSION_HANDLE, flags: CK_FLAGS) {
    module()?.session_cancel(h, flags)
});

entry!(C_Login(h: CK_SESSION_HANDLE, user: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG) {
    let m = module()?;
    // A NULL PIN asks for a protected authentication path, which there is not.
    if p_pin.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: caller promise for pPin.
    m.login(h, user, unsafe { input(p_pin, pin_len) }?)
});

entry!(C_LoginUser(h: CK_SESSION_HANDLE, user: CK_USER_TYPE, p_pin: *mut CK_UTF8CHAR, pin_len: CK_ULONG, p_name: *mut CK_UTF8CHAR, name_len: CK_ULONG) {
    let m = module()?;
    if p_pin.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // Tokens here have one user; the name is checked for validity only.
    // SAFETY: caller promise for pUsername/pPin.
    let (_name, pin) = unsafe { (input(p_name, name_len)?, input(p_pin, pin_len)?) };
    m.login(h, user, pin)
});

entry!(C_Logout(h: CK_SESSION_HANDLE) {
    module()?.logout(h)
});

entry!(C_GetOperationState(h: CK_SESSION_HANDLE, p_state: *mut CK_BYTE, p_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pOperationState/pulOperationStateLen.
    unsafe { with_outbuf(p_state, p_len, |o| m.get_operation_state(h, o)) }
});

entry!(C_SetOperationState(h: CK_SESSION_HANDLE, p_state: *mut CK_BYTE, len: CK_ULONG, enc_key: CK_OBJECT_HANDLE, auth_key: CK_OBJECT_HANDLE) {
    let m = module()?;
    if p_state.is_null() {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: caller promise for pOperationState.
    let state = unsafe { input(p_state, len) }?;
    m.set_operation_state(h, state, enc_key, auth_key)
});

// ---- objects ---------------------------------------------------------------------------------

entry!(C_CreateObject(h: CK_SESSION_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pTemplate/phObject.
    let (t, ph) = unsafe { (template(p_template, count)?, out(ph)?) };
    *ph = m.create_object(h, &t)?;
    Ok(())
});

entry!(C_CopyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pTemplate/phNewObject.
    let (t, ph) = unsafe { (template(p_template, count)?, out(ph)?) };
    *ph = m.copy_object(h, obj, &t)?;
    Ok(())
});

entry!(C_DestroyObject(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) {
    module()?.destroy_object(h, obj)
});

entry!(C_GetObjectSize(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_size: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pulSize.
    let p = unsafe { out(p_size) }?;
    *p = m.object_size(h, obj)? as CK_ULONG;
    Ok(())
});

entry!(C_GetAttributeValue(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) {
    let m = module()?;
    let n = super::len_of(count)?;
    let attrs: &mut [CK_ATTRIBUTE] = if p_template.is_null() {
        if n != 0 {
            return Err(Error::ArgumentsBad);
        }
        &mut []
    } else {
        // SAFETY: caller promise: pTemplate has ulCount attributes.
        unsafe { std::slice::from_raw_parts_mut(p_template, n) }
    };
    let types: Vec<CK_ATTRIBUTE_TYPE> = attrs.iter().map(|a| a.type_).collect();
    let readings = m.get_attributes(h, obj, &types)?;
    let (mut sensitive, mut invalid, mut small) = (false, false, false);
    for (a, r) in attrs.iter_mut().zip(readings) {
        match r {
            Reading::Sensitive => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                sensitive = true;
            }
            Reading::Invalid => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                invalid = true;
            }
            Reading::Value(v) if super::is_template_attribute(a.type_) => {
                // SAFETY: caller promise: pValue NULL or an array of CK_ATTRIBUTE.
                small |= !unsafe { super::write_array_attribute(a, &v) };
            }
            Reading::Value(v) if a.pValue.is_null() => a.ulValueLen = v.len() as CK_ULONG,
            Reading::Value(v) if (a.ulValueLen as usize) < v.len() => {
                a.ulValueLen = CK_UNAVAILABLE_INFORMATION;
                small = true;
            }
            Reading::Value(v) => {
                // SAFETY: pValue is valid for ulValueLen >= v.len() bytes.
                unsafe { std::ptr::copy_nonoverlapping(v.as_ptr(), a.pValue as *mut u8, v.len()) };
                a.ulValueLen = v.len() as CK_ULONG;
            }
        }
    }
    // Spec §5.7: every attribute is processed; then this precedence.
    match (sensitive, invalid, small) {
        (true, _, _) => Err(Error::AttributeSensitive),
        (_, true, _) => Err(Error::AttributeTypeInvalid),
        (_, _, true) => Err(Error::BufferTooSmall),
        _ => Ok(()),
    }
});

entry!(C_SetAttributeValue(h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pTemplate.
    let t = unsafe { template(p_template, count) }?;
    m.set_attributes(h, obj, &t)
});

entry!(C_FindObjectsInit(h: CK_SESSION_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pTemplate.
    let t = unsafe { template(p_template, count) }?;
    m.find_init(h, &t)
});

entry!(C_FindObjects(h: CK_SESSION_HANDLE, p_objects: *mut CK_OBJECT_HANDLE, max: CK_ULONG, p_count: *mut CK_ULONG) {
    let m = module()?;
    if p_objects.is_null() && max > 0 {
        return Err(Error::ArgumentsBad);
    }
    // SAFETY: caller promise for pulObjectCount.
    let count = unsafe { out(p_count) }?;
    let found = m.find(h, super::len_of(max)?)?;
    if !found.is_empty() {
        // SAFETY: phObject is valid for `max >= found.len()` handles.
        unsafe { std::ptr::copy_nonoverlapping(found.as_ptr(), p_objects, found.len()) };
    }
    *count = found.len() as CK_ULONG;
    Ok(())
});

entry!(C_FindObjectsFinal(h: CK_SESSION_HANDLE) {
    module()?.find_final(h)
});

// ---- digests ------------------------------------------------------------------------------------

entry!(C_DigestInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.digest_init(h, &mech)
});

entry!(C_Digest(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pData.
    let data = ending(&m, h, CKF_DIGEST, unsafe { input(p_data, len) })?;
    // SAFETY: caller promise for pDigest/pulDigestLen.
    ending(&m, h, CKF_DIGEST, unsafe { with_outbuf(p_out, p_out_len, |o| m.digest(h, data, o)) })
});

entry!(C_DigestUpdate(h: CK_SESSION_HANDLE, p_part: *mut CK_BYTE, len: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pPart.
    let data = ending(&m, h, CKF_DIGEST, unsafe { input(p_part, len) })?;
    m.digest_update(h, data)
});

entry!(C_DigestKey(h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) {
    module()?.digest_key(h, key)
});

entry!(C_DigestFinal(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pDigest/pulDigestLen.
    ending(&m, h, CKF_DIGEST, unsafe { with_outbuf(p_out, p_out_len, |o| m.digest_final(h, o)) })
});

// ---- encryption and decryption --------------------------------------------------------------

macro_rules! cipher_functions {
    ($init:ident, $single:ident, $update:ident, $final:ident, $dir:expr, $flag:expr) => {
        entry!($init(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
            let m = module()?;
            // SAFETY: caller promise for pMechanism.
            let mech = unsafe { mechanism(p_mech) }?;
            m.cipher_init(h, &mech, key, $dir)
        });

        entry!($single(h: CK_SESSION_HANDLE, p_in: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
            let m = module()?;
            // SAFETY: caller promise for the input.
            let data = ending(&m, h, $flag, unsafe { input(p_in, len) })?;
            // SAFETY: caller promise for the output buffer and its length.
            ending(&m, h, $flag, unsafe { with_outbuf(p_out, p_out_len, |o| m.cipher(h, $dir, data, o)) })
        });

        entry!($update(h: CK_SESSION_HANDLE, p_in: *mut CK_BYTE, len: CK_ULONG, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
            let m = module()?;
            // SAFETY: caller promise for the input.
            let data = ending(&m, h, $flag, unsafe { input(p_in, len) })?;
            // SAFETY: caller promise for the output buffer and its length.
            ending(&m, h, $flag, unsafe { with_outbuf(p_out, p_out_len, |o| m.cipher_update(h, $dir, data, o)) })
        });

        entry!($final(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
            let m = module()?;
            // SAFETY: caller promise for the output buffer and its length.
            ending(&m, h, $flag, unsafe { with_outbuf(p_out, p_out_len, |o| m.cipher_final(h, $dir, o)) })
        });
    };
}

cipher_functions!(
    C_EncryptInit,
    C_Encrypt,
    C_EncryptUpdate,
    C_EncryptFinal,
    Dir::Encrypt,
    CKF_ENCRYPT
);
cipher_functions!(
    C_DecryptInit,
    C_Decrypt,
    C_DecryptUpdate,
    C_DecryptFinal,
    Dir::Decrypt,
    CKF_DECRYPT
);

// ---- signatures (MACs) -----------------------------------------------------------------------------

entry!(C_SignInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.sign_init(h, &mech, key, false)
});

entry!(C_Sign(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pData.
    let data = ending(&m, h, CKF_SIGN, unsafe { input(p_data, len) })?;
    // SAFETY: caller promise for pSignature/pulSignatureLen.
    ending(&m, h, CKF_SIGN, unsafe { with_outbuf(p_sig, p_sig_len, |o| m.sign(h, data, o)) })
});

entry!(C_SignUpdate(h: CK_SESSION_HANDLE, p_part: *mut CK_BYTE, len: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pPart.
    let data = ending(&m, h, CKF_SIGN, unsafe { input(p_part, len) })?;
    m.sign_update(h, false, data)
});

entry!(C_SignFinal(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pSignature/pulSignatureLen.
    ending(&m, h, CKF_SIGN, unsafe { with_outbuf(p_sig, p_sig_len, |o| m.sign_final(h, o)) })
});

entry!(C_VerifyInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.sign_init(h, &mech, key, true)
});

entry!(C_Verify(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pData and pSignature.
    let (data, sig) = ending(&m, h, CKF_VERIFY, unsafe { input(p_data, len).and_then(|d| Ok((d, input(p_sig, sig_len)?))) })?;
    m.verify(h, data, sig)
});

entry!(C_VerifyUpdate(h: CK_SESSION_HANDLE, p_part: *mut CK_BYTE, len: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pPart.
    let data = ending(&m, h, CKF_VERIFY, unsafe { input(p_part, len) })?;
    m.sign_update(h, true, data)
});

entry!(C_VerifyFinal(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, sig_len: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pSignature.
    let sig = ending(&m, h, CKF_VERIFY, unsafe { input(p_sig, sig_len) })?;
    m.verify_final(h, sig)
});

entry!(C_SignRecoverInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.recover_init(h, &mech, key, false)
});

entry!(C_SignRecover(h: CK_SESSION_HANDLE, p_data: *mut CK_BYTE, len: CK_ULONG, p_sig: *mut CK_BYTE, p_sig_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pData.
    let data = ending(&m, h, CKF_SIGN_RECOVER, unsafe { input(p_data, len) })?;
    // SAFETY: caller promise for pSignature/pulSignatureLen.
    ending(&m, h, CKF_SIGN_RECOVER, unsafe { with_outbuf(p_sig, p_sig_len, |o| m.recover(h, false, data, o)) })
});

entry!(C_VerifyRecoverInit(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, key: CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    m.recover_init(h, &mech, key, true)
});

entry!(C_VerifyRecover(h: CK_SESSION_HANDLE, p_sig: *mut CK_BYTE, sig_len: CK_ULONG, p_data: *mut CK_BYTE, p_data_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pSignature.
    let sig = ending(&m, h, CKF_VERIFY_RECOVER, unsafe { input(p_sig, sig_len) })?;
    // SAFETY: caller promise for pData/pulDataLen.
    ending(&m, h, CKF_VERIFY_RECOVER, unsafe { with_outbuf(p_data, p_data_len, |o| m.recover(h, true, sig, o)) })
});

// ---- key generation ------------------------------------------------------------------------------

entry!(C_GenerateKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism, pTemplate and phKey.
    let (mech, t, ph) = unsafe { (mechanism(p_mech)?, template(p_template, count)?, out(ph)?) };
    *ph = m.generate_key(h, &mech, &t)?;
    Ok(())
});

entry!(C_GenerateKeyPair(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, p_pub: *mut CK_ATTRIBUTE, pub_count: CK_ULONG, p_priv: *mut CK_ATTRIBUTE, priv_count: CK_ULONG, ph_pub: *mut CK_OBJECT_HANDLE, ph_priv: *mut CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism, both templates and both handles.
    let (mech, tp, tk, ph_pub, ph_priv) = unsafe {
        (
            mechanism(p_mech)?,
            template(p_pub, pub_count)?,
            template(p_priv, priv_count)?,
            out(ph_pub)?,
            out(ph_priv)?,
        )
    };
    let (p, k) = m.generate_key_pair(h, &mech, &tp, &tk)?;
    *ph_pub = p;
    *ph_priv = k;
    Ok(())
});

entry!(C_WrapKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, wrapping: CK_OBJECT_HANDLE, key: CK_OBJECT_HANDLE, p_out: *mut CK_BYTE, p_out_len: *mut CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism.
    let mech = unsafe { mechanism(p_mech) }?;
    // SAFETY: caller promise for pWrappedKey/pulWrappedKeyLen.
    unsafe { with_outbuf(p_out, p_out_len, |o| m.wrap_key(h, &mech, wrapping, key, o)) }
});

entry!(C_UnwrapKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, unwrapping: CK_OBJECT_HANDLE, p_wrapped: *mut CK_BYTE, wrapped_len: CK_ULONG, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism, pWrappedKey, pTemplate and phKey.
    let (mech, wrapped, t, ph) = unsafe {
        (
            mechanism(p_mech)?,
            input(p_wrapped, wrapped_len)?,
            template(p_template, count)?,
            out(ph)?,
        )
    };
    *ph = m.unwrap_key(h, &mech, unwrapping, wrapped, &t)?;
    Ok(())
});

entry!(C_DeriveKey(h: CK_SESSION_HANDLE, p_mech: *mut CK_MECHANISM, base: CK_OBJECT_HANDLE, p_template: *mut CK_ATTRIBUTE, count: CK_ULONG, ph: *mut CK_OBJECT_HANDLE) {
    let m = module()?;
    // SAFETY: caller promise for pMechanism, pTemplate and phKey.
    let (mech, t, ph) = unsafe { (mechanism(p_mech)?, template(p_template, count)?, out(ph)?) };
    // SP 800-108 additional keys: each phKey holds CK_INVALID_HANDLE until
    // all the keys are made (v3.0: a failed call leaves no key behind).
    // SAFETY: caller promise for pMechanism; `mechanism` read it already.
    let extra_out = unsafe { super::kbkdf::extra_key_outputs(p_mech) }?;
    for p in &extra_out {
        // SAFETY: each phKey is non-NULL (checked by `mechanism`) and
        // writable by the caller's promise.
        unsafe { p.write_unaligned(CK_INVALID_HANDLE) };
    }
    let (first, extra) = m.derive_keys(h, &mech, base, &t)?;
    *ph = first;
    for (p, handle) in extra_out.iter().zip(extra) {
        // SAFETY: as above.
        unsafe { p.write_unaligned(handle) };
    }
    Ok(())
});

// ---- random --------------------------------------------------------------------------------------

entry!(C_SeedRandom(h: CK_SESSION_HANDLE, p_seed: *mut CK_BYTE, len: CK_ULONG) {
    let m = module()?;
    // SAFETY: caller promise for pSeed.
    unsafe { input(p_seed, len) }?;
    m.seed_random(h)
});

entry!(C_GenerateRandom(h: CK_SESSION_HANDLE, p_out: *mut CK_BYTE, len: CK_ULONG) {
    let m = module()?;
    let n = super::len_of(len)?;
    let buf: &mut [u8] = if p_out.is_null() {
        if n != 0 {
            return Err(Error::ArgumentsBad);
        }
        &mut []
    } else {
        // SAFETY: caller promise: pRandomData has ulRandomLen writable bytes.
        unsafe { std::slice::from_raw_parts_mut(p_out, n) }
    };
    m.generate_random(h, buf)
});

// ---- legacy parallel functions --------------------------------------------------------------------

entry!(C_GetFunctionStatus(_h: CK_SESSION_HANDLE) {
    module()?;
    Err(Error::FunctionNotParallel)
});

entry!(C_CancelFunction(_h: CK_SESSION_HANDLE) {
    module()?;
    Err(Error::FunctionNotParallel)
});

// ---- dual-function updates: not offered (no mechanism pairs them here) ------------------------------
unsupported!(
    C_DigestEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG)
);
unsupported!(
    C_DecryptDigestUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG)
);
unsupported!(
    C_SignEncryptUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG)
);
unsupported!(
    C_DecryptVerifyUpdate(CK_SESSION_HANDLE, *mut CK_BYTE, CK_ULONG, *mut CK_BYTE, *mut CK_ULONG)
);
