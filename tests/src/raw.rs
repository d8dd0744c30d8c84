//! Raw calls through the module's function lists, for tests that need NULL
//! pointers, odd lengths and exact `CK_RV`s (which the `cryptoki` crate hides).
// `ck!`/`ck3!` evaluate their arguments inside the `unsafe` call on purpose: the
// tests write the raw pointers the call is made with, NULL and bad ones included.
#![allow(clippy::macro_metavars_in_unsafe)]

use std::ffi::c_void;
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
    /// Loads the module (see `load`) and calls `C_Initialize(NULL)`.
    pub fn init() -> RawModule {
        let m = RawModule::load();
        m.initialize();
        m
    }

    /// `C_Initialize(NULL)`, asserting `CKR_OK`.
    pub fn initialize(&self) {
        check(
            crate::ck!(self, C_Initialize(ptr::null_mut())),
            CKR_OK,
            "C_Initialize(NULL)",
        );
    }

    /// Every slot (`C_GetSlotList(CK_FALSE, …)`, count first).
    pub fn slot_list(&self) -> Vec<CK_SLOT_ID> {
        let mut n: CK_ULONG = 0;
        check(
            crate::ck!(self, C_GetSlotList(CK_FALSE, ptr::null_mut(), &mut n)),
            CKR_OK,
            "C_GetSlotList(NULL) count",
        );
        let mut v = vec![0; n as usize];
        check(
            crate::ck!(self, C_GetSlotList(CK_FALSE, v.as_mut_ptr(), &mut n)),
            CKR_OK,
            "C_GetSlotList",
        );
        v.truncate(n as usize);
        v
    }

    /// `C_GetTokenInfo`, asserting `CKR_OK`.
    pub fn token_info(&self, slot: CK_SLOT_ID) -> CK_TOKEN_INFO {
        let mut ti = CK_TOKEN_INFO::default();
        check(
            crate::ck!(self, C_GetTokenInfo(slot, &mut ti)),
            CKR_OK,
            "C_GetTokenInfo",
        );
        ti
    }

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

    /// `C_InitToken` on `slot` with SO PIN `so_pin` and the label `label`
    /// (blank-padded); `None` passes NULL (with a PIN length of 8).
    pub fn init_token(
        &self,
        slot: CK_SLOT_ID,
        so_pin: Option<&[u8]>,
        label: Option<&str>,
    ) -> CK_RV {
        let mut so = so_pin.map(<[u8]>::to_vec);
        let (p, n) = match &mut so {
            Some(v) => (v.as_mut_ptr(), v.len() as CK_ULONG),
            None => (ptr::null_mut(), 8),
        };
        let mut padded = label.map(padded32);
        let l = padded.as_mut().map_or(ptr::null_mut(), |l| l.as_mut_ptr());
        crate::ck!(self, C_InitToken(slot, p, n, l))
    }

    /// On an initialised module, turns the spare token (the last slot) into a
    /// token labelled `label` with the test SO PIN and user PIN set, as an
    /// administrator would; returns its slot. No session is left open.
    pub fn make_token(&self, label: &str) -> CK_SLOT_ID {
        let slot = *self.slot_list().last().expect("a slot");
        check(
            self.init_token(slot, Some(SO_PIN.as_bytes()), Some(label)),
            CKR_OK,
            "C_InitToken",
        );
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

// ---------------------------------------------------------------------------
// objects and single-part operations, answering `Result<_, CK_RV>`
// ---------------------------------------------------------------------------

impl RawModule {
    /// `C_CreateObject` from `list`.
    pub fn create(
        &self,
        s: CK_SESSION_HANDLE,
        list: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        rv_result(crate::ck!(
            self,
            C_CreateObject(s, t.ptr(), t.len(), &mut h)
        ))?;
        Ok(h)
    }

    /// `C_GenerateKey` with `mech` (no parameter) from `list`.
    pub fn generate_key(
        &self,
        s: CK_SESSION_HANDLE,
        mech: CK_MECHANISM_TYPE,
        list: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    ) -> Result<CK_OBJECT_HANDLE, CK_RV> {
        let mut t = Tpl::new(list);
        let mut mech = plain_mechanism(mech);
        let mut h = CK_INVALID_HANDLE;
        rv_result(crate::ck!(
            self,
            C_GenerateKey(s, &mut mech, t.ptr(), t.len(), &mut h)
        ))?;
        Ok(h)
    }

    /// One attribute's value (`C_GetAttributeValue` for the length, then the value).
    pub fn attribute(
        &self,
        s: CK_SESSION_HANDLE,
        o: CK_OBJECT_HANDLE,
        t: CK_ATTRIBUTE_TYPE,
    ) -> Result<Vec<u8>, CK_RV> {
        let mut a = attr_query(t);
        rv_result(crate::ck!(self, C_GetAttributeValue(s, o, &mut a, 1)))?;
        let mut buf = vec![0u8; a.ulValueLen as usize];
        a.pValue = buf.as_mut_ptr() as *mut c_void;
        rv_result(crate::ck!(self, C_GetAttributeValue(s, o, &mut a, 1)))?;
        buf.truncate(a.ulValueLen as usize);
        Ok(buf)
    }

    /// All objects matching `list` (`C_FindObjectsInit` … `C_FindObjectsFinal`;
    /// an empty list finds every object the session sees).
    pub fn find(
        &self,
        s: CK_SESSION_HANDLE,
        list: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    ) -> Result<Vec<CK_OBJECT_HANDLE>, CK_RV> {
        let mut t = Tpl::new(list);
        rv_result(crate::ck!(self, C_FindObjectsInit(s, t.ptr(), t.len())))?;
        let mut found = Vec::new();
        loop {
            let mut buf = [CK_INVALID_HANDLE; 16];
            let mut n: CK_ULONG = 0;
            let rv = crate::ck!(
                self,
                C_FindObjects(s, buf.as_mut_ptr(), buf.len() as CK_ULONG, &mut n)
            );
            if rv != CKR_OK {
                let _ = crate::ck!(self, C_FindObjectsFinal(s));
                return Err(rv);
            }
            if n == 0 {
                break;
            }
            found.extend_from_slice(&buf[..n as usize]);
        }
        rv_result(crate::ck!(self, C_FindObjectsFinal(s)))?;
        Ok(found)
    }

    /// Single-part encryption (or decryption) of non-empty `data` with `mech`,
    /// into a buffer 64 bytes longer than `data`.
    pub fn crypt(
        &self,
        s: CK_SESSION_HANDLE,
        mech: &mut CK_MECHANISM,
        key: CK_OBJECT_HANDLE,
        data: &[u8],
        encrypt: bool,
    ) -> Result<Vec<u8>, CK_RV> {
        let mut input = data.to_vec();
        let mut out = vec![0u8; data.len() + 64];
        let mut n = out.len() as CK_ULONG;
        let (inp, inl, outp) = (
            input.as_mut_ptr(),
            input.len() as CK_ULONG,
            out.as_mut_ptr(),
        );
        if encrypt {
            rv_result(crate::ck!(self, C_EncryptInit(s, mech, key)))?;
            rv_result(crate::ck!(self, C_Encrypt(s, inp, inl, outp, &mut n)))?;
        } else {
            rv_result(crate::ck!(self, C_DecryptInit(s, mech, key)))?;
            rv_result(crate::ck!(self, C_Decrypt(s, inp, inl, outp, &mut n)))?;
        }
        out.truncate(n as usize);
        Ok(out)
    }
}

// ---------------------------------------------------------------------------
// templates
// ---------------------------------------------------------------------------

/// An attribute value for an owned template (`Tpl`).
#[derive(Clone)]
pub enum V {
    /// A `CK_ULONG` (class, key type, length…).
    U(CK_ULONG),
    /// A `CK_BBOOL`.
    B(bool),
    /// A byte string; empty is passed as a NULL pointer of length 0.
    Bytes(Vec<u8>),
    /// An attribute array (`CKA_WRAP_TEMPLATE`, `CKA_UNWRAP_TEMPLATE`, …).
    Attrs(Vec<(CK_ATTRIBUTE_TYPE, V)>),
}

/// A `CK_ULONG` attribute, for template lists.
pub fn u(t: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::U(v))
}

/// A `CK_BBOOL` attribute, for template lists.
pub fn b(t: CK_ATTRIBUTE_TYPE, v: bool) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::B(v))
}

/// A byte-string attribute, for template lists.
pub fn by(t: CK_ATTRIBUTE_TYPE, v: &[u8]) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::Bytes(v.to_vec()))
}

/// A text attribute value (the bytes of `s`, no terminator).
pub fn text(s: &str) -> V {
    V::Bytes(s.as_bytes().to_vec())
}

/// A secret key of type `kt` holding `value`, allowed to encrypt, decrypt,
/// sign and verify; `extra` comes right after the class and key type.
pub fn secret_key_template(
    kt: CK_KEY_TYPE,
    value: &[u8],
    extra: Vec<(CK_ATTRIBUTE_TYPE, V)>,
) -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    let mut t = vec![(CKA_CLASS, V::U(CKO_SECRET_KEY)), (CKA_KEY_TYPE, V::U(kt))];
    t.extend(extra);
    t.extend([
        (CKA_ENCRYPT, V::B(true)),
        (CKA_DECRYPT, V::B(true)),
        (CKA_SIGN, V::B(true)),
        (CKA_VERIFY, V::B(true)),
        (CKA_VALUE, V::Bytes(value.to_vec())),
    ]);
    t
}

/// A template for `C_GenerateKey` with `CKM_AES_KEY_GEN`: a sensitive AES
/// key of `len` bytes labelled `label` (a token object if `token`) that may
/// encrypt.
pub fn aes_keygen_template(label: &str, token: bool, len: CK_ULONG) -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    vec![
        (CKA_CLASS, V::U(CKO_SECRET_KEY)),
        (CKA_KEY_TYPE, V::U(CKK_AES)),
        (CKA_TOKEN, V::B(token)),
        (CKA_LABEL, text(label)),
        (CKA_VALUE_LEN, V::U(len)),
        (CKA_SENSITIVE, V::B(true)),
        (CKA_ENCRYPT, V::B(true)),
    ]
}

/// A mechanism without parameter (NULL pointer, length 0).
pub fn plain_mechanism(mechanism: CK_MECHANISM_TYPE) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    }
}

/// An owned attribute template: the values (and nested attribute arrays) live
/// in their own heap buffers, which do not move, so the `CK_ATTRIBUTE`
/// pointers stay valid while the template lives.
pub struct Tpl {
    _vals: Vec<Vec<u8>>,
    _nested: Vec<Tpl>,
    attrs: Vec<CK_ATTRIBUTE>,
}

impl Tpl {
    /// The template of `list`, in its order.
    pub fn new(list: Vec<(CK_ATTRIBUTE_TYPE, V)>) -> Tpl {
        let mut vals = Vec::new();
        let mut nested: Vec<Tpl> = Vec::new();
        let mut attrs = Vec::new();
        for (t, v) in list {
            let (p, n) = match v {
                V::Attrs(inner) => {
                    let mut inner = Tpl::new(inner);
                    let p = inner.ptr() as *mut c_void;
                    let n = inner.attrs.len() * std::mem::size_of::<CK_ATTRIBUTE>();
                    nested.push(inner);
                    (p, n)
                }
                V::U(u) => Self::keep(&mut vals, u.to_ne_bytes().to_vec()),
                V::B(b) => Self::keep(&mut vals, vec![if b { CK_TRUE } else { CK_FALSE }]),
                V::Bytes(b) => Self::keep(&mut vals, b),
            };
            attrs.push(CK_ATTRIBUTE {
                type_: t,
                pValue: p,
                ulValueLen: n as CK_ULONG,
            });
        }
        Tpl {
            _vals: vals,
            _nested: nested,
            attrs,
        }
    }

    /// Stores a value buffer; its pointer (NULL when empty) and length.
    fn keep(vals: &mut Vec<Vec<u8>>, mut bytes: Vec<u8>) -> (*mut c_void, usize) {
        let p = if bytes.is_empty() {
            ptr::null_mut()
        } else {
            bytes.as_mut_ptr() as *mut c_void
        };
        let n = bytes.len();
        vals.push(bytes);
        (p, n)
    }

    /// The attributes for a call (NULL for an empty template).
    pub fn ptr(&mut self) -> *mut CK_ATTRIBUTE {
        if self.attrs.is_empty() {
            ptr::null_mut()
        } else {
            self.attrs.as_mut_ptr()
        }
    }

    /// The number of attributes.
    pub fn len(&self) -> CK_ULONG {
        self.attrs.len() as CK_ULONG
    }

    /// Whether the template has no attribute.
    pub fn is_empty(&self) -> bool {
        self.attrs.is_empty()
    }
}

/// A `CK_ATTRIBUTE` pointing at `v` (its size as the length), for templates
/// written out by hand.
pub fn attr_ref<T>(t: CK_ATTRIBUTE_TYPE, v: &mut T) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: v as *mut T as *mut c_void,
        ulValueLen: std::mem::size_of::<T>() as CK_ULONG,
    }
}

/// A `CK_ATTRIBUTE` with a NULL `pValue` and length 0 (a length query).
pub fn attr_query(t: CK_ATTRIBUTE_TYPE) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: ptr::null_mut(),
        ulValueLen: 0,
    }
}

/// A `CK_ATTRIBUTE` pointing at the bytes of `v`.
pub fn attr_bytes(t: CK_ATTRIBUTE_TYPE, v: &mut [u8]) -> CK_ATTRIBUTE {
    CK_ATTRIBUTE {
        type_: t,
        pValue: v.as_mut_ptr() as *mut c_void,
        ulValueLen: v.len() as CK_ULONG,
    }
}

/// `s` padded with blanks to a 32-byte token label field.
pub fn padded32(s: &str) -> [u8; 32] {
    let mut l = [b' '; 32];
    l[..s.len()].copy_from_slice(s.as_bytes());
    l
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

/// `Ok(())` for `CKR_OK`, else the code as the error.
pub fn rv_result(rv: CK_RV) -> Result<(), CK_RV> {
    if rv == CKR_OK { Ok(()) } else { Err(rv) }
}

/// The tail of this process's module log (`FERROHSM_LOG`, which `TestEnv`
/// sets), for failure messages; empty without a log.
fn log_note() -> String {
    let tail = crate::module_log_tail(6);
    if tail.is_empty() {
        tail
    } else {
        format!("\nmodule log (tail):\n{tail}")
    }
}

/// The code of a result: `CKR_OK` for `Ok`.
pub fn rv_of<T>(r: &Result<T, CK_RV>) -> CK_RV {
    r.as_ref().err().copied().unwrap_or(CKR_OK)
}

/// Unwraps a result, naming the CKR on failure (with the module log's tail).
#[track_caller]
pub fn ok<T>(r: Result<T, CK_RV>, what: &str) -> T {
    match r {
        Ok(v) => v,
        Err(rv) => panic!("{what}: expected CKR_OK, got {}{}", rv_name(rv), log_note()),
    }
}

/// Asserts a result failed with `want`.
#[track_caller]
pub fn err<T: std::fmt::Debug>(r: Result<T, CK_RV>, want: CK_RV, what: &str) {
    match r {
        Err(rv) if rv == want => {}
        Err(rv) => panic!(
            "{what}: expected {}, got {}{}",
            rv_name(want),
            rv_name(rv),
            log_note()
        ),
        Ok(v) => panic!(
            "{what}: expected {}, got CKR_OK ({v:?}){}",
            rv_name(want),
            log_note()
        ),
    }
}

/// Asserts one expected return value.
#[track_caller]
pub fn check(rv: CK_RV, want: CK_RV, what: &str) {
    assert!(
        rv == want,
        "{what}: expected {}, got {}{}",
        rv_name(want),
        rv_name(rv),
        log_note()
    );
}

/// Asserts one of several return values the spec allows.
#[track_caller]
pub fn check_any(rv: CK_RV, want: &[CK_RV], what: &str) {
    assert!(
        want.contains(&rv),
        "{what}: expected one of {:?}, got {}{}",
        want.iter().map(|r| rv_name(*r)).collect::<Vec<_>>(),
        rv_name(rv),
        log_note()
    );
}
