//! Raw calls through the module's function lists, for tests that need NULL
//! pointers, odd lengths and exact `CK_RV`s (which the `cryptoki` crate hides).

use std::ptr;

use cryptoki_sys::*;

use crate::module_path;

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

/// Calls a function of the 3.0 list: `ck3!(m, C_Foo(args…))`.
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
