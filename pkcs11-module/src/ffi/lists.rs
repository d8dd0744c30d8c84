//! The function lists and the `CK_INTERFACE` table, in writable memory
//! (pkcs11-spy and similar tools write to them), each labelled with the version
//! whose layout it has.
#![allow(non_snake_case)]

use std::cell::UnsafeCell;
use std::ffi::c_void;

use cryptoki_sys::*;

use super::{entry, out};
use super::{functions, message};
use crate::error::Error;

/// A static the C side may write to: placed in writable memory, shared by
/// pointer only.
#[repr(transparent)]
pub(super) struct Writable<T>(UnsafeCell<T>);

// SAFETY: Rust code never reads or writes through these cells after
// initialisation; it only hands out their address to C callers.
unsafe impl<T> Sync for Writable<T> {}

impl<T> Writable<T> {
    /// The address handed to C.
    pub(super) const fn get(&self) -> *mut T {
        self.0.get()
    }
}

/// The PKCS#11 2.40 function list (`C_GetFunctionList`).
pub(super) static FUNCTIONS_240: Writable<CK_FUNCTION_LIST> =
    Writable(UnsafeCell::new(CK_FUNCTION_LIST {
        version: CK_VERSION {
            major: 2,
            minor: 40,
        },
        C_Initialize: Some(functions::C_Initialize),
        C_Finalize: Some(functions::C_Finalize),
        C_GetInfo: Some(functions::C_GetInfo),
        C_GetFunctionList: Some(C_GetFunctionList),
        C_GetSlotList: Some(functions::C_GetSlotList),
        C_GetSlotInfo: Some(functions::C_GetSlotInfo),
        C_GetTokenInfo: Some(functions::C_GetTokenInfo),
        C_GetMechanismList: Some(functions::C_GetMechanismList),
        C_GetMechanismInfo: Some(functions::C_GetMechanismInfo),
        C_InitToken: Some(functions::C_InitToken),
        C_InitPIN: Some(functions::C_InitPIN),
        C_SetPIN: Some(functions::C_SetPIN),
        C_OpenSession: Some(functions::C_OpenSession),
        C_CloseSession: Some(functions::C_CloseSession),
        C_CloseAllSessions: Some(functions::C_CloseAllSessions),
        C_GetSessionInfo: Some(functions::C_GetSessionInfo),
        C_GetOperationState: Some(functions::C_GetOperationState),
        C_SetOperationState: Some(functions::C_SetOperationState),
        C_Login: Some(functions::C_Login),
        C_Logout: Some(functions::C_Logout),
        C_CreateObject: Some(functions::C_CreateObject),
        C_CopyObject: Some(functions::C_CopyObject),
        C_DestroyObject: Some(functions::C_DestroyObject),
        C_GetObjectSize: Some(functions::C_GetObjectSize),
        C_GetAttributeValue: Some(functions::C_GetAttributeValue),
        C_SetAttributeValue: Some(functions::C_SetAttributeValue),
        C_FindObjectsInit: Some(functions::C_FindObjectsInit),
        C_FindObjects: Some(functions::C_FindObjects),
        C_FindObjectsFinal: Some(functions::C_FindObjectsFinal),
        C_EncryptInit: Some(functions::C_EncryptInit),
        C_Encrypt: Some(functions::C_Encrypt),
        C_EncryptUpdate: Some(functions::C_EncryptUpdate),
        C_EncryptFinal: Some(functions::C_EncryptFinal),
        C_DecryptInit: Some(functions::C_DecryptInit),
        C_Decrypt: Some(functions::C_Decrypt),
        C_DecryptUpdate: Some(functions::C_DecryptUpdate),
        C_DecryptFinal: Some(functions::C_DecryptFinal),
        C_DigestInit: Some(functions::C_DigestInit),
        C_Digest: Some(functions::C_Digest),
        C_DigestUpdate: Some(functions::C_DigestUpdate),
        C_DigestKey: Some(functions::C_DigestKey),
        C_DigestFinal: Some(functions::C_DigestFinal),
        C_SignInit: Some(functions::C_SignInit),
        C_Sign: Some(functions::C_Sign),
        C_SignUpdate: Some(functions::C_SignUpdate),
        C_SignFinal: Some(functions::C_SignFinal),
        C_SignRecoverInit: Some(functions::C_SignRecoverInit),
        C_SignRecover: Some(functions::C_SignRecover),
        C_VerifyInit: Some(functions::C_VerifyInit),
        C_Verify: Some(functions::C_Verify),
        C_VerifyUpdate: Some(functions::C_VerifyUpdate),
        C_VerifyFinal: Some(functions::C_VerifyFinal),
        C_VerifyRecoverInit: Some(functions::C_VerifyRecoverInit),
        C_VerifyRecover: Some(functions::C_VerifyRecover),
        C_DigestEncryptUpdate: Some(functions::C_DigestEncryptUpdate),
        C_DecryptDigestUpdate: Some(functions::C_DecryptDigestUpdate),
        C_SignEncryptUpdate: Some(functions::C_SignEncryptUpdate),
        C_DecryptVerifyUpdate: Some(functions::C_DecryptVerifyUpdate),
        C_GenerateKey: Some(functions::C_GenerateKey),
        C_GenerateKeyPair: Some(functions::C_GenerateKeyPair),
        C_WrapKey: Some(functions::C_WrapKey),
        C_UnwrapKey: Some(functions::C_UnwrapKey),
        C_DeriveKey: Some(functions::C_DeriveKey),
        C_SeedRandom: Some(functions::C_SeedRandom),
        C_GenerateRandom: Some(functions::C_GenerateRandom),
        C_GetFunctionStatus: Some(functions::C_GetFunctionStatus),
        C_CancelFunction: Some(functions::C_CancelFunction),
        C_WaitForSlotEvent: Some(functions::C_WaitForSlotEvent),
    }));

/// The PKCS#11 3.0 function list (interface "PKCS 11" version 3.0).
pub(super) static FUNCTIONS_300: Writable<CK_FUNCTION_LIST_3_0> =
    Writable(UnsafeCell::new(CK_FUNCTION_LIST_3_0 {
        version: CK_VERSION { major: 3, minor: 0 },
        C_Initialize: Some(functions::C_Initialize),
        C_Finalize: Some(functions::C_Finalize),
        C_GetInfo: Some(functions::C_GetInfo),
        C_GetFunctionList: Some(C_GetFunctionList),
        C_GetSlotList: Some(functions::C_GetSlotList),
        C_GetSlotInfo: Some(functions::C_GetSlotInfo),
        C_GetTokenInfo: Some(functions::C_GetTokenInfo),
        C_GetMechanismList: Some(functions::C_GetMechanismList),
        C_GetMechanismInfo: Some(functions::C_GetMechanismInfo),
        C_InitToken: Some(functions::C_InitToken),
        C_InitPIN: Some(functions::C_InitPIN),
        C_SetPIN: Some(functions::C_SetPIN),
        C_OpenSession: Some(functions::C_OpenSession),
        C_CloseSession: Some(functions::C_CloseSession),
        C_CloseAllSessions: Some(functions::C_CloseAllSessions),
        C_GetSessionInfo: Some(functions::C_GetSessionInfo),
        C_GetOperationState: Some(functions::C_GetOperationState),
        C_SetOperationState: Some(functions::C_SetOperationState),
        C_Login: Some(functions::C_Login),
        C_Logout: Some(functions::C_Logout),
        C_CreateObject: Some(functions::C_CreateObject),
        C_CopyObject: Some(functions::C_CopyObject),
        C_DestroyObject: Some(functions::C_DestroyObject),
        C_GetObjectSize: Some(functions::C_GetObjectSize),
        C_GetAttributeValue: Some(functions::C_GetAttributeValue),
        C_SetAttributeValue: Some(functions::C_SetAttributeValue),
        C_FindObjectsInit: Some(functions::C_FindObjectsInit),
        C_FindObjects: Some(functions::C_FindObjects),
        C_FindObjectsFinal: Some(functions::C_FindObjectsFinal),
        C_EncryptInit: Some(functions::C_EncryptInit),
        C_Encrypt: Some(functions::C_Encrypt),
        C_EncryptUpdate: Some(functions::C_EncryptUpdate),
        C_EncryptFinal: Some(functions::C_EncryptFinal),
        C_DecryptInit: Some(functions::C_DecryptInit),
        C_Decrypt: Some(functions::C_Decrypt),
        C_DecryptUpdate: Some(functions::C_DecryptUpdate),
        C_DecryptFinal: Some(functions::C_DecryptFinal),
        C_DigestInit: Some(functions::C_DigestInit),
        C_Digest: Some(functions::C_Digest),
        C_DigestUpdate: Some(functions::C_DigestUpdate),
        C_DigestKey: Some(functions::C_DigestKey),
        C_DigestFinal: Some(functions::C_DigestFinal),
        C_SignInit: Some(functions::C_SignInit),
        C_Sign: Some(functions::C_Sign),
        C_SignUpdate: Some(functions::C_SignUpdate),
        C_SignFinal: Some(functions::C_SignFinal),
        C_SignRecoverInit: Some(functions::C_SignRecoverInit),
        C_SignRecover: Some(functions::C_SignRecover),
        C_VerifyInit: Some(functions::C_VerifyInit),
        C_Verify: Some(functions::C_Verify),
        C_VerifyUpdate: Some(functions::C_VerifyUpdate),
        C_VerifyFinal: Some(functions::C_VerifyFinal),
        C_VerifyRecoverInit: Some(functions::C_VerifyRecoverInit),
        C_VerifyRecover: Some(functions::C_VerifyRecover),
        C_DigestEncryptUpdate: Some(functions::C_DigestEncryptUpdate),
        C_DecryptDigestUpdate: Some(functions::C_DecryptDigestUpdate),
        C_SignEncryptUpdate: Some(functions::C_SignEncryptUpdate),
        C_DecryptVerifyUpdate: Some(functions::C_DecryptVerifyUpdate),
        C_GenerateKey: Some(functions::C_GenerateKey),
        C_GenerateKeyPair: Some(functions::C_GenerateKeyPair),
        C_WrapKey: Some(functions::C_WrapKey),
        C_UnwrapKey: Some(functions::C_UnwrapKey),
        C_DeriveKey: Some(functions::C_DeriveKey),
        C_SeedRandom: Some(functions::C_SeedRandom),
        C_GenerateRandom: Some(functions::C_GenerateRandom),
        C_GetFunctionStatus: Some(functions::C_GetFunctionStatus),
        C_CancelFunction: Some(functions::C_CancelFunction),
        C_WaitForSlotEvent: Some(functions::C_WaitForSlotEvent),
        C_GetInterfaceList: Some(C_GetInterfaceList),
        C_GetInterface: Some(C_GetInterface),
        C_LoginUser: Some(functions::C_LoginUser),
        C_SessionCancel: Some(functions::C_SessionCancel),
        C_MessageEncryptInit: Some(message::C_MessageEncryptInit),
        C_EncryptMessage: Some(message::C_EncryptMessage),
        C_EncryptMessageBegin: Some(message::C_EncryptMessageBegin),
        C_EncryptMessageNext: Some(message::C_EncryptMessageNext),
        C_MessageEncryptFinal: Some(message::C_MessageEncryptFinal),
        C_MessageDecryptInit: Some(message::C_MessageDecryptInit),
        C_DecryptMessage: Some(message::C_DecryptMessage),
        C_DecryptMessageBegin: Some(message::C_DecryptMessageBegin),
        C_DecryptMessageNext: Some(message::C_DecryptMessageNext),
        C_MessageDecryptFinal: Some(message::C_MessageDecryptFinal),
        C_MessageSignInit: Some(message::C_MessageSignInit),
        C_SignMessage: Some(message::C_SignMessage),
        C_SignMessageBegin: Some(message::C_SignMessageBegin),
        C_SignMessageNext: Some(message::C_SignMessageNext),
        C_MessageSignFinal: Some(message::C_MessageSignFinal),
        C_MessageVerifyInit: Some(message::C_MessageVerifyInit),
        C_VerifyMessage: Some(message::C_VerifyMessage),
        C_VerifyMessageBegin: Some(message::C_VerifyMessageBegin),
        C_VerifyMessageNext: Some(message::C_VerifyMessageNext),
        C_MessageVerifyFinal: Some(message::C_MessageVerifyFinal),
    }));

static NAME: &[u8; 8] = b"PKCS 11\0";

/// The interfaces, newest first.
static INTERFACES: Writable<[CK_INTERFACE; 2]> = Writable(UnsafeCell::new([
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: FUNCTIONS_300.get() as *mut c_void,
        flags: 0,
    },
    CK_INTERFACE {
        pInterfaceName: NAME.as_ptr() as *mut CK_UTF8CHAR,
        pFunctionList: FUNCTIONS_240.get() as *mut c_void,
        flags: 0,
    },
]));

/// Copies of the interface entries, for `C_GetInterfaceList`.
pub(super) fn interfaces() -> [CK_INTERFACE; 2] {
    // SAFETY: the array is only ever read by Rust; a C writer owns any race.
    unsafe { *INTERFACES.get() }
}

/// The interface entry for a requested version (`None`: the newest) whose flags
/// include all of `flags`; its address stays valid for the library's lifetime.
pub(super) fn interface(version: Option<(u8, u8)>, flags: CK_FLAGS) -> Option<*mut CK_INTERFACE> {
    let wanted = match version {
        None | Some((3, 0)) => 0,
        Some((2, 40)) => 1,
        Some(_) => return None,
    };
    let base = INTERFACES.get() as *mut CK_INTERFACE;
    // SAFETY: `wanted` < 2, inside the static array.
    let entry = unsafe { base.add(wanted) };
    // SAFETY: points into the static array.
    let have = unsafe { (*entry).flags };
    (have & flags == flags).then_some(entry)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every slot of both lists is filled, and each list carries its version.
    #[test]
    fn lists_have_no_null_slots_and_honest_versions() {
        const PTR: usize = std::mem::size_of::<usize>();
        fn all_set<T>(list: *const T) -> bool {
            let n = (std::mem::size_of::<T>() - PTR) / PTR;
            // SAFETY: the lists are a CK_VERSION (padded to a pointer) then
            // `n` function pointers.
            let slots = unsafe {
                std::slice::from_raw_parts((list as *const u8).add(PTR) as *const usize, n)
            };
            slots.iter().all(|&p| p != 0)
        }
        assert!(all_set(FUNCTIONS_240.get()));
        assert!(all_set(FUNCTIONS_300.get()));
        // SAFETY: reading our own statics.
        let (v2, v3) = unsafe {
            (
                (*FUNCTIONS_240.get()).version,
                (*FUNCTIONS_300.get()).version,
            )
        };
        assert_eq!((v2.major, v2.minor), (2, 40));
        assert_eq!((v3.major, v3.minor), (3, 0));
        assert_eq!(std::mem::size_of::<CK_FUNCTION_LIST>(), PTR * 69);
        assert_eq!(std::mem::size_of::<CK_FUNCTION_LIST_3_0>(), PTR * 93);
    }
}

// ---- the entry points that hand the lists out ----------------------------------

entry!(C_GetFunctionList(pp: *mut *mut CK_FUNCTION_LIST) {
    // SAFETY: caller promise for ppFunctionList.
    *unsafe { out(pp) }? = FUNCTIONS_240.get();
    Ok(())
});

entry!(C_GetInterfaceList(p_list: *mut CK_INTERFACE, p_count: *mut CK_ULONG) {
    let all = interfaces();
    // SAFETY: caller promise for pulCount.
    let count = unsafe { out(p_count) }?;
    let have = *count as usize;
    *count = all.len() as CK_ULONG;
    if p_list.is_null() {
        return Ok(());
    }
    if have < all.len() {
        return Err(Error::BufferTooSmall);
    }
    // SAFETY: `p_list` is valid for `have >= all.len()` entries.
    unsafe { std::ptr::copy_nonoverlapping(all.as_ptr(), p_list, all.len()) };
    Ok(())
});

entry!(C_GetInterface(p_name: *mut CK_UTF8CHAR, p_version: *mut CK_VERSION, pp: *mut *mut CK_INTERFACE, flags: CK_FLAGS) {
    // SAFETY: caller promise for ppInterface.
    let pp = unsafe { out(pp) }?;
    if !p_name.is_null() {
        // SAFETY: a non-NULL name is a NUL-terminated string.
        let name = unsafe { std::ffi::CStr::from_ptr(p_name as *const std::ffi::c_char) };
        if name.to_bytes() != b"PKCS 11" {
            return Err(Error::ArgumentsBad);
        }
    }
    // SAFETY: a non-NULL version points to a CK_VERSION.
    let version = unsafe { p_version.as_ref() }.map(|v| (v.major, v.minor));
    *pp = interface(version, flags).ok_or(Error::ArgumentsBad)?;
    Ok(())
});
