//! Raw calls through the module's function lists, for tests that need NULL
//! pointers, odd lengths and exact `CK_RV`s (which the `cryptoki` crate hides).
// `ck!`/`ck3!` evaluate their arguments inside the `unsafe` call on purpose: the
// tests write the raw pointers the call is made with, NULL and bad ones included.
#![allow(clippy::macro_metavars_in_unsafe)]

use std::ptr;

use cryptoki_sys::*;

use crate::{SO_PIN, USER_PIN, module_path};

/// The loaded module's 2.40 and 3.0 function lists. The library is leaked, so
/// the lists stay valid for the whole process.
#[derive(Clone, Copy)]
pub struct RawModule {
    /// The list from `C_GetFunctionList` (2.40).
    pub f: &'static CK_FUNCTION_LIST,
    /// The list of interface "PKCS 11" version 3.0.
    pub f3: &'static CK_FUNCTION_LIST_3_0,
}

impl RawModule {
    /// Loads the module (without calling `C_Initialize`), checking on the way
    /// that `C_GetFunctionList(NULL)` is refused and the 3.0 interface exists.
    pub fn load() -> RawModule {
        // SAFETY: loading the module runs its initialisers; it is the library under
        // test, built from this workspace, and has no unusual load-time requirements.
        let lib = unsafe { libloading::Library::new(module_path()) }.expect("dlopen module");
        let lib: &'static libloading::Library = Box::leak(Box::new(lib));
        // SAFETY: the symbol has the PKCS#11 C_GetFunctionList signature, which
        // `CK_C_GetFunctionList` describes.
        let gfl = unsafe { lib.get::<CK_C_GetFunctionList>(b"C_GetFunctionList\0") }
            .expect("C_GetFunctionList exported")
            .expect("C_GetFunctionList non-NULL");
        let mut list: *mut CK_FUNCTION_LIST = ptr::null_mut();
        // SAFETY: `list` is a valid out-pointer for one function-list pointer.
        let rv = unsafe { gfl(&mut list) };
        check(rv, CKR_OK, "C_GetFunctionList");
        assert!(!list.is_null(), "C_GetFunctionList returned a NULL list");
        // SAFETY: NULL is passed deliberately; the module must reject it without
        // writing through it.
        let rv = unsafe { gfl(ptr::null_mut()) };
        check(rv, CKR_ARGUMENTS_BAD, "C_GetFunctionList(NULL)");
        // SAFETY: the symbol has the PKCS#11 3.0 C_GetInterface signature.
        let gi = unsafe { lib.get::<CK_C_GetInterface>(b"C_GetInterface\0") }
            .expect("C_GetInterface exported")
            .expect("C_GetInterface non-NULL");
        let mut iface: *mut CK_INTERFACE = ptr::null_mut();
        let mut version = CK_VERSION { major: 3, minor: 0 };
        let mut name = *b"PKCS 11\0";
        // SAFETY: name is NUL-terminated, version and iface are valid for the call.
        let rv = unsafe { gi(name.as_mut_ptr(), &mut version, &mut iface, 0) };
        check(rv, CKR_OK, "C_GetInterface(\"PKCS 11\", 3.0)");
        assert!(!iface.is_null(), "C_GetInterface returned NULL");
        // SAFETY: on CKR_OK the module returned a pointer to a static CK_INTERFACE.
        let f3 = unsafe { &*iface }.pFunctionList as *const CK_FUNCTION_LIST_3_0;
        assert!(!f3.is_null());
        // SAFETY: both lists are static data of the module, which is never unloaded
        // (the library handle is leaked); the 3.0 interface's list is a
        // CK_FUNCTION_LIST_3_0.
        let (f, f3) = unsafe { (&*list, &*f3) };
        assert_eq!(f3.version.major, 3, "3.0 interface reports version 3.x");
        RawModule { f, f3 }
    }
}

impl RawModule {
    /// Opens a session on `slot` (read/write if `rw`), asserting success.
    pub fn open(&self, slot: CK_SLOT_ID, rw: bool) -> CK_SESSION_HANDLE {
        let flags = CKF_SERIAL_SESSION | if rw { CKF_RW_SESSION } else { 0 };
        let mut s = CK_INVALID_HANDLE;
        let rv = crate::ck!(
            self,
            C_OpenSession(slot, flags, ptr::null_mut(), None, &mut s)
        );
        check(rv, CKR_OK, "C_OpenSession");
        s
    }

    /// `C_Login` with a PIN; returns the answer.
    pub fn login(&self, s: CK_SESSION_HANDLE, user: CK_USER_TYPE, pin: &str) -> CK_RV {
        let mut p = pin.as_bytes().to_vec();
        crate::ck!(self, C_Login(s, user, p.as_mut_ptr(), p.len() as CK_ULONG))
    }

    /// On an initialised module, turns the spare token (the last slot) into a
    /// token labelled `label` with the test SO PIN and user PIN set, as an
    /// administrator would; returns its slot. No session is left open.
    pub fn make_token(&self, label: &str) -> CK_SLOT_ID {
        let mut n: CK_ULONG = 0;
        check(
            crate::ck!(self, C_GetSlotList(CK_FALSE, ptr::null_mut(), &mut n)),
            CKR_OK,
            "C_GetSlotList count",
        );
        let mut slots = vec![0; n as usize];
        check(
            crate::ck!(self, C_GetSlotList(CK_FALSE, slots.as_mut_ptr(), &mut n)),
            CKR_OK,
            "C_GetSlotList",
        );
        let slot = *slots[..n as usize].last().expect("a slot");
        let mut so = SO_PIN.as_bytes().to_vec();
        let mut padded = [b' '; 32];
        padded[..label.len()].copy_from_slice(label.as_bytes());
        let rv = crate::ck!(
            self,
            C_InitToken(
                slot,
                so.as_mut_ptr(),
                so.len() as CK_ULONG,
                padded.as_mut_ptr()
            )
        );
        check(rv, CKR_OK, "C_InitToken");
        let s = self.open(slot, true);
        check(self.login(s, CKU_SO, SO_PIN), CKR_OK, "C_Login SO");
        let mut up = USER_PIN.as_bytes().to_vec();
        check(
            crate::ck!(self, C_InitPIN(s, up.as_mut_ptr(), up.len() as CK_ULONG)),
            CKR_OK,
            "C_InitPIN",
        );
        check(
            crate::ck!(self, C_CloseSession(s)),
            CKR_OK,
            "C_CloseSession",
        );
        slot
    }
}

/// Calls a function of the 2.40 list: `ck!(m, C_Foo(args…))`.
#[macro_export]
macro_rules! ck {
    ($m:expr, $f:ident ( $($a:expr),* $(,)? )) => {{
        let func = $m.f.$f.expect(concat!(stringify!($f), " missing from CK_FUNCTION_LIST"));
        // SAFETY: the function comes from the module's own list; every pointer
        // argument is either NULL on purpose (the module must check) or points to a
        // live local buffer whose length is the one passed alongside it.
        unsafe { func($($a),*) }
    }};
}

/// Calls a function of the 3.0 list: `ck3!(m, C_Foo(args…))` (see `ck!`).
#[macro_export]
macro_rules! ck3 {
    ($m:expr, $f:ident ( $($a:expr),* $(,)? )) => {{
        let func = $m.f3.$f.expect(concat!(stringify!($f), " missing from CK_FUNCTION_LIST_3_0"));
        // SAFETY: as for `ck!`: the function comes from the module's 3.0 list and
        // every pointer is NULL on purpose or valid for the length passed.
        unsafe { func($($a),*) }
    }};
}

/// The `CKR_*` name of a return value, for messages.
pub fn rv_name(rv: CK_RV) -> String {
    ferrohsm_pkcs11::error::rv_name(rv)
}

/// Asserts one expected return value.
#[track_caller]
pub fn check(rv: CK_RV, want: CK_RV, what: &str) {
    assert!(
        rv == want,
        "{what}: expected {}, got {}",
        rv_name(want),
        rv_name(rv)
    );
}

/// Asserts one of several return values the spec allows.
#[track_caller]
pub fn check_any(rv: CK_RV, want: &[CK_RV], what: &str) {
    assert!(
        want.contains(&rv),
        "{what}: expected one of {:?}, got {}",
        want.iter().map(|r| rv_name(*r)).collect::<Vec<_>>(),
        rv_name(rv)
    );
}
