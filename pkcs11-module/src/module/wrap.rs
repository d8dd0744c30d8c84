//! `C_WrapKey` and `C_UnwrapKey`, with the `hsm` policy's rule on wrapping keys.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::KeyPolicy;

use std::sync::Arc;

use super::slot::Session;
use super::state::Module;
use crate::audit::{self};
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::mechanism::{self, CipherBuilder, Dir, Mechanism, MechanismArg, key_types};
use crate::object::policy::RawAttr;
use crate::object::policy::{self, Origin};
use crate::object::{Object, unique_id};
use crate::secret;
use crate::session::OutBuf;

/// The total length of the DER SEQUENCE at the start of `b`, if it is one.
pub(super) fn der_len(b: &[u8]) -> Option<usize> {
    match b {
        [0x30, l, ..] if *l < 0x80 => Some(2 + *l as usize),
        [0x30, 0x81, l, ..] => Some(3 + *l as usize),
        [0x30, 0x82, h, l, ..] => Some(4 + (usize::from(*h) << 8 | usize::from(*l))),
        _ => None,
    }
}

impl Module {
    /// The attribute-array value `ty` (`CKA_WRAP_TEMPLATE`, …) of a key.
    pub(super) fn key_template(key: &Object, ty: CK_ATTRIBUTE_TYPE) -> Vec<RawAttr> {
        match key.attrs.get(&ty) {
            Some(ferrohsm_store::AttrValue::Bytes(b)) => {
                policy::decode_template_value(b).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// A caller's template with the key's `CKA_UNWRAP_TEMPLATE` or
    /// `CKA_DERIVE_TEMPLATE` added; a conflicting value is
    /// `CKR_TEMPLATE_INCONSISTENT`.
    pub(super) fn with_key_template(
        template: &[RawAttr],
        key: &Object,
        ty: CK_ATTRIBUTE_TYPE,
    ) -> Result<Vec<RawAttr>> {
        let mut out = template.to_vec();
        for forced in Self::key_template(key, ty) {
            match template.iter().find(|a| a.ty == forced.ty) {
                Some(a) if a.value != forced.value => return Err(Error::TemplateInconsistent),
                Some(_) => {}
                None => out.push(forced),
            }
        }
        Ok(out)
    }

    /// The key material `C_WrapKey` encrypts: a secret key's value, or a
    /// private key as PKCS#8 `PrivateKeyInfo` (its key-type row's form).
    pub(super) fn wrappable_material(key: &Object) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        match key.ulong(CKA_CLASS) {
            Some(CKO_SECRET_KEY) => {
                Ok(zeroize::Zeroizing::new(mechanism::key_value(key)?.to_vec()))
            }
            Some(CKO_PRIVATE_KEY) => {
                let to_pkcs8 = key
                    .ulong(CKA_KEY_TYPE)
                    .and_then(key_types::lookup)
                    .and_then(|k| k.to_pkcs8)
                    .ok_or(Error::KeyNotWrappable)?;
                to_pkcs8(key)
            }
            _ => Err(Error::KeyNotWrappable),
        }
    }

    /// `C_WrapKey`: a key encrypted under a wrapping key, never in the clear.
    /// The wrapped key must be `CKA_EXTRACTABLE`; one marked
    /// `CKA_WRAP_WITH_TRUSTED` only under a `CKA_TRUSTED` wrapping key.
    pub fn wrap_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let r = secret::scope(|| self.wrap_key_inner(h, mech, wrapping, key, out));
        if self.audit.enabled() {
            let look = |handle| {
                let s = self.session(h).ok()?;
                let o = s.slot.token.read().object(handle).ok()?;
                Some(audit::describe(&o))
            };
            let (target, under) = (look(key), look(wrapping));
            self.audit_call(h, "C_WrapKey", &r, r.is_ok(), |e| {
                e.mechanism = Some(audit::mechanism_name(mech.ty));
                e.object = target;
                e.detail = Some(match under.and_then(|u| u.label) {
                    Some(l) => format!("wrapped under key {wrapping} ({l:?})"),
                    None => format!("wrapped under key {wrapping}"),
                });
            });
        }
        r
    }

    /// Under the `hsm` key policy a key leaves the token only wrapped, and the
    /// wrap must be one no caller can open: why `wk` may not wrap, or `None`.
    /// The SO's `CKA_TRUSTED` vouches for any wrapping key (a public key whose
    /// private half is in another HSM). Otherwise the wrapping key must be a
    /// secret key generated here and never extractable (`CKA_LOCAL` and
    /// `CKA_NEVER_EXTRACTABLE`): an imported, unwrapped or derived key
    /// (imports, unwrap-then-wrap, derivation from a caller-known base,
    /// concatenation with an imported key, ECDH with a caller's key) may have a
    /// value the caller knows. And it must not decrypt, or `C_Decrypt` of the
    /// wrapped bytes would reveal the key; usages only narrow on `hsm` tokens
    /// (`policy::modify`), so this cannot be turned on afterwards.
    pub(super) fn untrusted_wrapping_key(wk: &Object) -> Option<&'static str> {
        if wk.flag(CKA_TRUSTED) {
            return None;
        }
        if wk.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Some(
                "a public wrapping key needs CKA_TRUSTED, set by the SO: the token cannot know who holds its private key",
            );
        }
        if !(wk.flag(CKA_LOCAL) && wk.flag(CKA_NEVER_EXTRACTABLE)) {
            return Some(
                "the wrapping key was not generated in this token as never extractable, so its value may be known outside (the SO may mark it CKA_TRUSTED)",
            );
        }
        if wk.flag(CKA_DECRYPT) {
            return Some(
                "the wrapping key can also decrypt, so C_Decrypt of the wrapped bytes would reveal the key",
            );
        }
        None
    }

    /// The table row, cipher builder and checked key of `C_WrapKey`
    /// (`usage` `CKA_WRAP`) or `C_UnwrapKey` (`CKA_UNWRAP`), with the key
    /// errors renamed to the wrapping/unwrapping-key codes the spec gives.
    fn wrap_row_and_key(
        &self,
        s: &Session,
        mech: &MechanismArg,
        handle: CK_OBJECT_HANDLE,
        usage: CK_ATTRIBUTE_TYPE,
    ) -> Result<(&'static Mechanism, CipherBuilder, Arc<Object>)> {
        let (flag, func, bad_handle, bad_type) = if usage == CKA_WRAP {
            (
                CKF_WRAP,
                "C_WrapKey",
                Error::WrappingKeyHandleInvalid,
                Error::WrappingKeyTypeInconsistent,
            )
        } else {
            (
                CKF_UNWRAP,
                "C_UnwrapKey",
                Error::UnwrappingKeyHandleInvalid,
                Error::UnwrappingKeyTypeInconsistent,
            )
        };
        let row = self.mechanism_row(s, mech.ty, flag, func)?;
        let build = row
            .cipher
            .filter(|_| row.flags & flag != 0)
            .ok_or(Error::MechanismInvalid)?;
        let key = self
            .usable_key(s, handle, mech, row, usage, func)
            .map_err(|e| match e {
                Error::KeyHandleInvalid => bad_handle,
                Error::KeyTypeInconsistent => bad_type,
                e => e,
            })?;
        Ok((row, build, key))
    }

    pub(super) fn wrap_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let (row, build, wk) = self.wrap_row_and_key(&s, mech, wrapping, CKA_WRAP)?;
        let (target, policy) = {
            let t = s.slot.token.read();
            let target = t.object(key).map_err(|_| Error::KeyHandleInvalid)?;
            (target, t.record()?.policy)
        };
        let refuse = |e: Error, why: &str| {
            log!(
                self.log,
                Level::Info,
                "session {h}: C_WrapKey of {} under {} refused: {why}",
                target.describe(),
                wk.describe()
            );
            e
        };
        if !matches!(
            target.ulong(CKA_CLASS),
            Some(CKO_SECRET_KEY) | Some(CKO_PRIVATE_KEY)
        ) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "not a secret or private key",
            ));
        }
        if !target.flag(CKA_EXTRACTABLE) {
            return Err(refuse(
                Error::KeyUnextractable,
                "the key is not extractable",
            ));
        }
        if target.flag(CKA_WRAP_WITH_TRUSTED) && !wk.flag(CKA_TRUSTED) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "the key may only be wrapped by a trusted key",
            ));
        }
        if policy == KeyPolicy::Hsm
            && let Some(why) = Self::untrusted_wrapping_key(&wk)
        {
            self.log.warn_once(
                "hsm-wrapping-key",
                format_args!(
                    "session {h}: C_WrapKey of {} under {} refused by the token's hsm key policy \
                     (CKR_KEY_NOT_WRAPPABLE): {why}; wrap under a secret key generated in the \
                     token with CKA_EXTRACTABLE=FALSE and CKA_DECRYPT=FALSE, or have the SO \
                     set CKA_TRUSTED on the wrapping key",
                    target.describe(),
                    wk.describe()
                ),
            );
            return Err(Error::KeyNotWrappable);
        }
        if !policy::matches_template(&target.attrs, &Self::key_template(&wk, CKA_WRAP_TEMPLATE)) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "the key does not match the wrapping key's CKA_WRAP_TEMPLATE",
            ));
        }
        if !row.wraps_private_keys && target.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            let why = format!("{} wraps secret keys only", row.name);
            return Err(refuse(Error::KeyNotWrappable, &why));
        }
        let material = Self::wrappable_material(&target)?;
        // Key wrap zero-pads keys to whole semiblocks (the row's wrapping builder).
        let mut op = row.pad_wrap.unwrap_or(build)(&mech.param, &wk, Dir::Encrypt)?;
        let Some(buf) = out.offer(op.single_len(material.len()))? else {
            return Ok(());
        };
        let n = op.single(&material, buf).map_err(|e| match e {
            Error::DataLenRange => refuse(
                Error::KeyNotWrappable,
                "the mechanism cannot take a key of this length",
            ),
            e => e,
        })?;
        out.truncate(n);
        log!(
            self.log,
            Level::Info,
            "session {h}: wrapped {} under {} with {}",
            target.describe(),
            wk.describe(),
            row.name
        );
        Ok(())
    }

    /// `C_UnwrapKey`: decrypts a wrapped secret key or PKCS#8 private key
    /// into a new key object described by the template. Unwrapped keys are
    /// never local nor "always sensitive", and unextractable unless the
    /// template asks otherwise.
    pub fn unwrap_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // The unwrapped key, its parsed form and copies: key region.
        secret::scope(|| self.unwrap_key_inner(h, mech, unwrapping, wrapped, template))
    }

    pub(super) fn unwrap_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let (row, build, uk) = self.wrap_row_and_key(&s, mech, unwrapping, CKA_UNWRAP)?;
        self.may_create(&s, &[(template, true)])?;
        let (actor, id) = {
            let t = s.slot.token.read();
            (Self::actor(&t)?, Self::new_store_id()?)
        };
        let template = Self::with_key_template(template, &uk, CKA_UNWRAP_TEMPLATE)?;
        let template = &template[..];
        let mut attrs = policy::build(template, &[], Origin::Unwrap, actor, &unique_id(id))
            .inspect_err(|e| self.refused(&s, actor.policy, "C_UnwrapKey", *e, template))?;
        let mut op = build(&mech.param, &uk, Dir::Decrypt)?;
        let mut plain = zeroize::Zeroizing::new(vec![0u8; op.single_len(wrapped.len())]);
        let n = op.single(wrapped, &mut plain).map_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: C_UnwrapKey with {} under {} failed: {e}",
                row.name,
                uk.describe()
            );
            match e {
                Error::EncryptedDataLenRange | Error::DataLenRange => Error::WrappedKeyLenRange,
                Error::EncryptedDataInvalid => Error::WrappedKeyInvalid,
                e => e,
            }
        })?;
        plain.truncate(n);
        if row.pad_wrap.is_some() {
            // Undo C_WrapKey's zero padding: to CKA_VALUE_LEN for a secret
            // key, to the DER length for a PKCS#8 private key.
            let private = matches!(
                attrs.get(&CKA_CLASS),
                Some(ferrohsm_store::AttrValue::Ulong(c)) if *c as CK_ULONG == CKO_PRIVATE_KEY
            );
            let keep = match attrs.get(&CKA_VALUE_LEN) {
                _ if private => der_len(&plain),
                Some(ferrohsm_store::AttrValue::Ulong(l)) => Some(*l as usize),
                _ => None,
            };
            if let Some(keep) = keep.filter(|&k| k <= plain.len()) {
                if plain[keep..].iter().any(|&b| b != 0) {
                    return Err(Error::WrappedKeyInvalid);
                }
                plain.truncate(keep);
            }
        }
        let class = attrs.get(&CKA_CLASS).cloned();
        let kt = attrs.get(&CKA_KEY_TYPE).cloned();
        use ferrohsm_store::AttrValue as V;
        let key_type = match kt {
            Some(V::Ulong(kt)) => key_types::lookup(kt as CK_KEY_TYPE),
            _ => None,
        };
        match (class, key_type) {
            (Some(V::Ulong(c)), Some(k)) if c as CK_ULONG == CKO_SECRET_KEY => {
                let value_len = k.value_len.ok_or(Error::TemplateInconsistent)?;
                if !value_len(plain.len()) {
                    return Err(Error::WrappedKeyInvalid);
                }
                if matches!(attrs.get(&CKA_VALUE_LEN), Some(V::Ulong(l)) if *l as usize != plain.len())
                {
                    return Err(Error::TemplateInconsistent);
                }
                policy::set_secret_value(&mut attrs, k.ty, &plain)?;
            }
            (Some(V::Ulong(c)), Some(k)) if c as CK_ULONG == CKO_PRIVATE_KEY => {
                let from_pkcs8 = k.from_pkcs8.ok_or(Error::TemplateInconsistent)?;
                let parsed = from_pkcs8(&plain)?;
                for (ty, v) in parsed {
                    if ty == CKA_EC_PARAMS && attrs.get(&ty).is_some_and(|given| *given != v) {
                        return Err(Error::TemplateInconsistent);
                    }
                    attrs.insert(ty, v);
                }
            }
            _ => return Err(Error::TemplateInconsistent),
        }
        let mut t = s.slot.token.write();
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_UnwrapKey", Some(mech.ty))?;
        log!(
            self.log,
            Level::Info,
            "session {h}: unwrapped key {handle} with {} under {}",
            row.name,
            uk.describe()
        );
        Ok(handle)
    }
}
