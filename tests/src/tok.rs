//! A token with a logged-in R/W user session, through the raw C ABI: the set-up
//! the key tests share (one token, or several under different key policies in
//! one data directory) and the calls they make on it, each answering the exact
//! `CK_RV` (`Result<_, CK_RV>`, or the code itself where a test checks it).
//!
//! Objects (create, generate, attributes, copy), key management (wrap, unwrap,
//! derive), and the single- and multi-part cipher and sign/verify operations.
//! A mechanism argument is a [`MechArg`]: a mechanism type (no parameter), a
//! [`Mech`] (laid out by `with_mech`) or a `CK_MECHANISM` the caller built.
// `ck!` evaluates its arguments inside the `unsafe` call on purpose (see raw.rs).
#![allow(clippy::macro_metavars_in_unsafe)]

use std::ptr;

use cryptoki_sys::*;

use crate::USER_PIN;
use crate::mech::{Mech, opt_ptr, with_mech};
use crate::raw::{RawModule, Tpl, V, check, ok, rv_result};

/// An object handle.
pub type H = CK_OBJECT_HANDLE;
/// A template as a list of (type, value).
pub type Template = Vec<(CK_ATTRIBUTE_TYPE, V)>;

/// Sets `FERROHSM_POLICY`, the key policy of the tokens the module initialises
/// after its next `C_Initialize`.
pub fn set_policy(policy: &str) {
    // SAFETY: tests call this on their only thread, before the module is loaded
    // or between C_Finalize and C_Initialize; the module reads the environment
    // only inside C_Initialize, and nextest runs one test per process.
    unsafe { std::env::set_var("FERROHSM_POLICY", policy) };
}

/// What a mechanism argument can be: see the module documentation.
pub trait MechArg {
    /// Passes the `CK_MECHANISM` to `f`.
    fn with<R>(self, f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R;
}

impl MechArg for CK_MECHANISM_TYPE {
    fn with<R>(self, f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R {
        with_mech(&Mech::Plain(self), f)
    }
}

impl MechArg for &Mech {
    fn with<R>(self, f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R {
        with_mech(self, f)
    }
}

impl MechArg for &mut CK_MECHANISM {
    fn with<R>(self, f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R {
        f(self)
    }
}

/// The direction of a cipher operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dir {
    /// `C_Encrypt*`.
    Enc,
    /// `C_Decrypt*`.
    Dec,
}

/// An output buffer for a C call: pointer and length; `None` passes NULL (a
/// size query).
pub fn out_buf(out: Option<&mut [u8]>) -> (*mut u8, CK_ULONG) {
    match out {
        Some(b) => (b.as_mut_ptr(), b.len() as CK_ULONG),
        None => (ptr::null_mut(), 0),
    }
}

/// The two-call convention: `call(None)` asks the length, `call(Some(buf))`
/// fills a buffer of exactly that length; the first failing code, else the
/// bytes written. More bytes than announced fail the test (with `exact`, any
/// other number), naming `what`.
#[track_caller]
pub fn size_queried(
    what: &str,
    exact: bool,
    mut call: impl FnMut(Option<&mut [u8]>) -> (CK_RV, usize),
) -> Result<Vec<u8>, CK_RV> {
    let (rv, n) = call(None);
    rv_result(rv)?;
    let mut out = vec![0u8; n];
    let (rv, m) = call(Some(&mut out));
    rv_result(rv)?;
    if exact {
        assert_eq!(m, n, "{what}: length differs from the size query");
    } else {
        assert!(m <= n, "{what}: wrote {m} bytes after a size query of {n}");
    }
    out.truncate(m);
    Ok(out)
}

/// The pieces of `data` between the sorted cut offsets (for multi-part calls).
pub fn pieces<'a>(data: &'a [u8], cuts: &[usize]) -> Vec<&'a [u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    for &c in cuts {
        let c = c.min(data.len()).max(start);
        out.push(&data[start..c]);
        start = c;
    }
    out.push(&data[start..]);
    out
}

/// A token and a R/W session on it, logged in as the user.
#[derive(Clone, Copy)]
pub struct Tok {
    /// The module.
    pub m: RawModule,
    /// The token's slot.
    pub slot: CK_SLOT_ID,
    /// The session.
    pub s: CK_SESSION_HANDLE,
}

/// Loads the module and makes one token per `(label, policy)`, each with its
/// key policy (set before a `C_Initialize` of its own; the module is finalised
/// between two), then opens a logged-in user session on each.
pub fn tokens(specs: &[(&str, &str)]) -> Vec<Tok> {
    let m = RawModule::load();
    let mut slots = Vec::new();
    for (i, (label, policy)) in specs.iter().enumerate() {
        set_policy(policy);
        check(
            crate::ck!(m, C_Initialize(ptr::null_mut())),
            CKR_OK,
            &format!("C_Initialize ({policy})"),
        );
        slots.push(m.make_token(label));
        if i + 1 < specs.len() {
            check(
                crate::ck!(m, C_Finalize(ptr::null_mut())),
                CKR_OK,
                "C_Finalize",
            );
        }
    }
    slots.into_iter().map(|slot| Tok::login(m, slot)).collect()
}

impl Tok {
    /// A R/W session on `slot` of an initialised module, logged in as the user.
    pub fn login(m: RawModule, slot: CK_SLOT_ID) -> Tok {
        let s = m.open(slot, true);
        check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
        Tok { m, slot, s }
    }

    /// On an initialised module, the spare token made into `label` (see
    /// `RawModule::make_token`) with a user session.
    pub fn make(m: RawModule, label: &str) -> Tok {
        let slot = m.make_token(label);
        Tok::login(m, slot)
    }

    /// Loads and initialises the module, then `make`s the token `label`.
    pub fn ready(label: &str) -> Tok {
        Tok::make(RawModule::init(), label)
    }

    /// The same token through session `s`.
    pub fn on(&self, s: CK_SESSION_HANDLE) -> Tok {
        Tok { s, ..*self }
    }

    /// `C_Logout`, asserting `CKR_OK`.
    pub fn logout(&self) {
        check(crate::ck!(self.m, C_Logout(self.s)), CKR_OK, "C_Logout");
    }

    /// `C_Login` as the user, asserting `CKR_OK`.
    pub fn login_user(&self) {
        check(
            self.m.login(self.s, CKU_USER, USER_PIN),
            CKR_OK,
            "C_Login user",
        );
    }
}

// ---------------------------------------------------------------------------
// objects
// ---------------------------------------------------------------------------

impl Tok {
    /// `C_CreateObject`.
    pub fn create(&self, list: Template) -> Result<H, CK_RV> {
        self.m.create(self.s, list)
    }

    /// `C_GenerateKey` with `mech`.
    pub fn generate(&self, mech: impl MechArg, list: Template) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        rv_result(
            mech.with(|mm| crate::ck!(self.m, C_GenerateKey(self.s, mm, t.ptr(), t.len(), &mut h))),
        )?;
        Ok(h)
    }

    /// `C_GenerateKeyPair` with `mech`: (public, private).
    pub fn generate_pair(
        &self,
        mech: impl MechArg,
        public: Template,
        private: Template,
    ) -> Result<(H, H), CK_RV> {
        let (mut pt, mut kt) = (Tpl::new(public), Tpl::new(private));
        let (mut ph, mut kh) = (CK_INVALID_HANDLE, CK_INVALID_HANDLE);
        rv_result(mech.with(|mm| {
            crate::ck!(
                self.m,
                C_GenerateKeyPair(
                    self.s,
                    mm,
                    pt.ptr(),
                    pt.len(),
                    kt.ptr(),
                    kt.len(),
                    &mut ph,
                    &mut kh
                )
            )
        }))?;
        Ok((ph, kh))
    }

    /// `C_DestroyObject`, asserting `CKR_OK`.
    pub fn destroy(&self, o: H) {
        check(
            crate::ck!(self.m, C_DestroyObject(self.s, o)),
            CKR_OK,
            "C_DestroyObject",
        );
    }

    /// One attribute into a buffer of `cap` bytes filled with 0xa5 (`None`: a
    /// NULL `pValue`): (rv, `ulValueLen`, the buffer).
    pub fn get_raw(
        &self,
        o: H,
        ty: CK_ATTRIBUTE_TYPE,
        cap: Option<usize>,
    ) -> (CK_RV, CK_ULONG, Vec<u8>) {
        let mut buf = vec![0xa5u8; cap.unwrap_or(0)];
        let mut a = CK_ATTRIBUTE {
            type_: ty,
            pValue: match cap {
                Some(_) => buf.as_mut_ptr() as *mut std::ffi::c_void,
                None => ptr::null_mut(),
            },
            ulValueLen: buf.len() as CK_ULONG,
        };
        let rv = crate::ck!(self.m, C_GetAttributeValue(self.s, o, &mut a, 1));
        (rv, a.ulValueLen, buf)
    }

    /// One attribute's value (the length first, then the value).
    pub fn get(&self, o: H, ty: CK_ATTRIBUTE_TYPE) -> Result<Vec<u8>, CK_RV> {
        let (rv, n, _) = self.get_raw(o, ty, None);
        rv_result(rv)?;
        let (rv, n, mut buf) = self.get_raw(o, ty, Some(n as usize));
        rv_result(rv)?;
        buf.truncate(n as usize);
        Ok(buf)
    }

    /// `CKA_VALUE`, which must be readable.
    #[track_caller]
    pub fn value(&self, o: H) -> Vec<u8> {
        ok(self.get(o, CKA_VALUE), "C_GetAttributeValue CKA_VALUE")
    }

    /// A `CK_BBOOL` attribute, `None` when it cannot be read.
    pub fn flag(&self, o: H, ty: CK_ATTRIBUTE_TYPE) -> Option<bool> {
        self.get(o, ty)
            .ok()
            .map(|v| v.first().is_some_and(|x| *x != 0))
    }

    /// A `CK_BBOOL` attribute, which must be readable and one byte long.
    #[track_caller]
    pub fn get_bool(&self, o: H, ty: CK_ATTRIBUTE_TYPE) -> bool {
        let v = ok(self.get(o, ty), &format!("C_GetAttributeValue {ty:#x}"));
        assert_eq!(v.len(), 1, "attribute {ty:#x}: CK_BBOOL must be 1 byte");
        v[0] != 0
    }

    /// A `CK_ULONG` attribute, which must be readable and 8 bytes long.
    #[track_caller]
    pub fn get_ulong(&self, o: H, ty: CK_ATTRIBUTE_TYPE) -> CK_ULONG {
        let v = ok(self.get(o, ty), &format!("C_GetAttributeValue {ty:#x}"));
        assert_eq!(v.len(), 8, "attribute {ty:#x}: CK_ULONG must be 8 bytes");
        CK_ULONG::from_ne_bytes(v.try_into().unwrap())
    }

    /// `C_SetAttributeValue`.
    pub fn set(&self, o: H, list: Template) -> CK_RV {
        let mut t = Tpl::new(list);
        crate::ck!(self.m, C_SetAttributeValue(self.s, o, t.ptr(), t.len()))
    }

    /// `C_CopyObject`.
    pub fn copy(&self, o: H, list: Template) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        rv_result(crate::ck!(
            self.m,
            C_CopyObject(self.s, o, t.ptr(), t.len(), &mut h)
        ))?;
        Ok(h)
    }

    /// The objects matching `list` (see `RawModule::find`).
    pub fn find(&self, list: Template) -> Result<Vec<H>, CK_RV> {
        self.m.find(self.s, list)
    }
}

// ---------------------------------------------------------------------------
// wrapping and derivation
// ---------------------------------------------------------------------------

impl Tok {
    /// `C_WrapKey` into `buf` (`None`: NULL, a size query): (rv, `*pulWrappedKeyLen`).
    pub fn wrap_raw(
        &self,
        mech: impl MechArg,
        wrapping: H,
        key: H,
        buf: Option<&mut [u8]>,
    ) -> (CK_RV, usize) {
        let (p, mut n) = out_buf(buf);
        let rv =
            mech.with(|mm| crate::ck!(self.m, C_WrapKey(self.s, mm, wrapping, key, p, &mut n)));
        (rv, n as usize)
    }

    /// A size query, then the wrap into a buffer of exactly that size.
    pub fn wrap(&self, mech: &Mech, wrapping: H, key: H) -> Result<Vec<u8>, CK_RV> {
        size_queried("C_WrapKey", false, |buf| {
            self.wrap_raw(mech, wrapping, key, buf)
        })
    }

    /// `C_UnwrapKey` of `blob` with template `list`.
    pub fn unwrap(
        &self,
        mech: impl MechArg,
        unwrapping: H,
        blob: &[u8],
        list: Template,
    ) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut blob = blob.to_vec();
        let mut h = CK_INVALID_HANDLE;
        rv_result(mech.with(|mm| {
            crate::ck!(
                self.m,
                C_UnwrapKey(
                    self.s,
                    mm,
                    unwrapping,
                    blob.as_mut_ptr(),
                    blob.len() as CK_ULONG,
                    t.ptr(),
                    t.len(),
                    &mut h
                )
            )
        }))?;
        Ok(h)
    }

    /// `C_DeriveKey` from `base` with template `list`.
    pub fn derive(&self, mech: impl MechArg, base: H, list: Template) -> Result<H, CK_RV> {
        let mut t = Tpl::new(list);
        let mut h = CK_INVALID_HANDLE;
        rv_result(mech.with(|mm| {
            crate::ck!(
                self.m,
                C_DeriveKey(self.s, mm, base, t.ptr(), t.len(), &mut h)
            )
        }))?;
        Ok(h)
    }
}

// ---------------------------------------------------------------------------
// encryption and decryption
// ---------------------------------------------------------------------------

type CryptFn = unsafe extern "C" fn(
    CK_SESSION_HANDLE,
    CK_BYTE_PTR,
    CK_ULONG,
    CK_BYTE_PTR,
    CK_ULONG_PTR,
) -> CK_RV;
type FinalFn = unsafe extern "C" fn(CK_SESSION_HANDLE, CK_BYTE_PTR, CK_ULONG_PTR) -> CK_RV;

impl Tok {
    /// The single-part, update and final functions of `dir`.
    fn crypt_fns(&self, dir: Dir) -> (CryptFn, CryptFn, FinalFn) {
        let f = self.m.f;
        match dir {
            Dir::Enc => (
                f.C_Encrypt.unwrap(),
                f.C_EncryptUpdate.unwrap(),
                f.C_EncryptFinal.unwrap(),
            ),
            Dir::Dec => (
                f.C_Decrypt.unwrap(),
                f.C_DecryptUpdate.unwrap(),
                f.C_DecryptFinal.unwrap(),
            ),
        }
    }

    /// `C_EncryptInit` or `C_DecryptInit`.
    pub fn crypt_init(&self, dir: Dir, mech: impl MechArg, key: H) -> CK_RV {
        mech.with(|mm| match dir {
            Dir::Enc => crate::ck!(self.m, C_EncryptInit(self.s, mm, key)),
            Dir::Dec => crate::ck!(self.m, C_DecryptInit(self.s, mm, key)),
        })
    }

    /// `C_Encrypt`/`C_Decrypt` (empty `data` passes NULL) into `out` (`None`:
    /// NULL): (rv, `*pulLen`).
    pub fn once_raw(&self, dir: Dir, data: &[u8], out: Option<&mut [u8]>) -> (CK_RV, usize) {
        let f = self.crypt_fns(dir).0;
        let mut d = data.to_vec();
        let (p, mut n) = out_buf(out);
        // SAFETY: `d` (NULL when empty) and `p` (NULL or a live buffer of `n`
        // bytes) are valid for the call; `f` comes from the module's list.
        let rv = unsafe { f(self.s, opt_ptr(&mut d), d.len() as CK_ULONG, p, &mut n) };
        (rv, n as usize)
    }

    /// Single-part `C_Encrypt`/`C_Decrypt` with the NULL-buffer size query first.
    pub fn once(&self, dir: Dir, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        size_queried(&format!("{dir:?}"), false, |out| {
            self.once_raw(dir, data, out)
        })
    }

    /// `C_EncryptUpdate`/`C_DecryptUpdate` into `out` (`None`: NULL): (rv, `*pulLen`).
    pub fn update_raw(&self, dir: Dir, data: &[u8], out: Option<&mut [u8]>) -> (CK_RV, usize) {
        let f = self.crypt_fns(dir).1;
        let mut d = data.to_vec();
        let (p, mut n) = out_buf(out);
        // SAFETY: as in `once_raw`.
        let rv = unsafe { f(self.s, opt_ptr(&mut d), d.len() as CK_ULONG, p, &mut n) };
        (rv, n as usize)
    }

    /// `C_EncryptUpdate`/`C_DecryptUpdate` with a buffer 64 bytes longer than `data`.
    pub fn update(&self, dir: Dir, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        let mut out = vec![0u8; data.len() + 64];
        let (rv, n) = self.update_raw(dir, data, Some(&mut out));
        rv_result(rv)?;
        assert!(n <= out.len());
        out.truncate(n);
        Ok(out)
    }

    /// `C_EncryptFinal`/`C_DecryptFinal` into `out` (`None`: NULL): (rv, `*pulLen`).
    pub fn final_raw(&self, dir: Dir, out: Option<&mut [u8]>) -> (CK_RV, usize) {
        let f = self.crypt_fns(dir).2;
        let (p, mut n) = out_buf(out);
        // SAFETY: `p` is NULL or a live buffer of `n` bytes.
        let rv = unsafe { f(self.s, p, &mut n) };
        (rv, n as usize)
    }

    /// `C_EncryptFinal`/`C_DecryptFinal` with the NULL-buffer size query first.
    pub fn finish(&self, dir: Dir) -> Result<Vec<u8>, CK_RV> {
        size_queried(&format!("{dir:?}Final"), false, |out| {
            self.final_raw(dir, out)
        })
    }

    /// Init, then single-part with a size query.
    pub fn crypt(
        &self,
        dir: Dir,
        mech: impl MechArg,
        key: H,
        data: &[u8],
    ) -> Result<Vec<u8>, CK_RV> {
        rv_result(self.crypt_init(dir, mech, key))?;
        self.once(dir, data)
    }

    /// Init, updates on the pieces cut at `cuts` (sorted offsets), final.
    pub fn crypt_multi(
        &self,
        dir: Dir,
        mech: impl MechArg,
        key: H,
        data: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<u8>, CK_RV> {
        rv_result(self.crypt_init(dir, mech, key))?;
        let mut out = Vec::new();
        for piece in pieces(data, cuts) {
            out.extend(self.update(dir, piece)?);
        }
        out.extend(self.finish(dir)?);
        Ok(out)
    }

    /// `crypt` in the `Enc` direction.
    pub fn encrypt(&self, mech: impl MechArg, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        self.crypt(Dir::Enc, mech, key, data)
    }

    /// `crypt` in the `Dec` direction.
    pub fn decrypt(&self, mech: impl MechArg, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        self.crypt(Dir::Dec, mech, key, data)
    }
}

// ---------------------------------------------------------------------------
// signing and verification
// ---------------------------------------------------------------------------

impl Tok {
    /// `C_SignInit`.
    pub fn sign_init(&self, mech: impl MechArg, key: H) -> CK_RV {
        mech.with(|mm| crate::ck!(self.m, C_SignInit(self.s, mm, key)))
    }

    /// `C_VerifyInit`.
    pub fn verify_init(&self, mech: impl MechArg, key: H) -> CK_RV {
        mech.with(|mm| crate::ck!(self.m, C_VerifyInit(self.s, mm, key)))
    }

    /// `C_Sign` (empty `data` passes NULL) into `out` (`None`: NULL): (rv, `*pulSignatureLen`).
    pub fn sign_raw(&self, data: &[u8], out: Option<&mut [u8]>) -> (CK_RV, usize) {
        let mut d = data.to_vec();
        let (p, mut n) = out_buf(out);
        let rv = crate::ck!(
            self.m,
            C_Sign(self.s, opt_ptr(&mut d), d.len() as CK_ULONG, p, &mut n)
        );
        (rv, n as usize)
    }

    /// `C_SignUpdate`.
    pub fn sign_update(&self, data: &[u8]) -> CK_RV {
        let mut d = data.to_vec();
        crate::ck!(
            self.m,
            C_SignUpdate(self.s, opt_ptr(&mut d), d.len() as CK_ULONG)
        )
    }

    /// `C_SignFinal` into `out` (`None`: NULL): (rv, `*pulSignatureLen`).
    pub fn sign_final_raw(&self, out: Option<&mut [u8]>) -> (CK_RV, usize) {
        let (p, mut n) = out_buf(out);
        let rv = crate::ck!(self.m, C_SignFinal(self.s, p, &mut n));
        (rv, n as usize)
    }

    /// Init, then `C_Sign` with the size query first (which must give the
    /// signature's exact length).
    pub fn sign(&self, mech: impl MechArg, key: H, data: &[u8]) -> Result<Vec<u8>, CK_RV> {
        rv_result(self.sign_init(mech, key))?;
        size_queried("C_Sign", true, |out| self.sign_raw(data, out))
    }

    /// Init, `C_SignUpdate` on the pieces cut at `cuts`, `C_SignFinal` with the
    /// size query first.
    pub fn sign_multi(
        &self,
        mech: impl MechArg,
        key: H,
        data: &[u8],
        cuts: &[usize],
    ) -> Result<Vec<u8>, CK_RV> {
        rv_result(self.sign_init(mech, key))?;
        for piece in pieces(data, cuts) {
            rv_result(self.sign_update(piece))?;
        }
        size_queried("C_SignFinal", true, |out| self.sign_final_raw(out))
    }

    /// `C_Verify` (empty buffers pass NULL).
    pub fn verify_once(&self, data: &[u8], sig: &[u8]) -> CK_RV {
        let (mut d, mut s) = (data.to_vec(), sig.to_vec());
        crate::ck!(
            self.m,
            C_Verify(
                self.s,
                opt_ptr(&mut d),
                d.len() as CK_ULONG,
                opt_ptr(&mut s),
                s.len() as CK_ULONG
            )
        )
    }

    /// Init, then `C_Verify`: the first code other than `CKR_OK`, else `C_Verify`'s.
    pub fn verify(&self, mech: impl MechArg, key: H, data: &[u8], sig: &[u8]) -> CK_RV {
        match self.verify_init(mech, key) {
            CKR_OK => self.verify_once(data, sig),
            rv => rv,
        }
    }

    /// Init, `C_VerifyUpdate` on the pieces cut at `cuts`, `C_VerifyFinal`.
    pub fn verify_multi(
        &self,
        mech: impl MechArg,
        key: H,
        data: &[u8],
        cuts: &[usize],
        sig: &[u8],
    ) -> CK_RV {
        let rv = self.verify_init(mech, key);
        if rv != CKR_OK {
            return rv;
        }
        for piece in pieces(data, cuts) {
            let mut d = piece.to_vec();
            let rv = crate::ck!(
                self.m,
                C_VerifyUpdate(self.s, opt_ptr(&mut d), d.len() as CK_ULONG)
            );
            if rv != CKR_OK {
                return rv;
            }
        }
        let mut s = sig.to_vec();
        crate::ck!(
            self.m,
            C_VerifyFinal(self.s, opt_ptr(&mut s), s.len() as CK_ULONG)
        )
    }
}
