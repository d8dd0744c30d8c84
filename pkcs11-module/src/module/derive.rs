//! `C_DeriveKey`: keys (or, for `CKM_HKDF_DATA`, a data object) from a base
//! key, a second key when the parameter names one, and the additional keys a
//! parameter may ask for (SP 800-108 `pAdditionalDerivedKeys`), all made or
//! none.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, KeyPolicy};
use zeroize::Zeroizing;

use super::slot::Session;
use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::mechanism::{self, Derive, Mechanism, MechanismArg, key_types};
use crate::object::policy::RawAttr;
use crate::object::policy::{self, Actor, Attrs, Origin};
use crate::object::{Object, unique_id};
use crate::secret;

/// One key to make: its attributes so far, key type (`None`: a data
/// object), length and store id.
struct Planned {
    attrs: Attrs,
    kt: Option<CK_KEY_TYPE>,
    len: usize,
    id: u64,
}

/// What every key of one `C_DeriveKey` call shares.
struct Call<'a> {
    s: &'a Session,
    mech: &'a MechanismArg,
    row: &'static Mechanism,
    derive: Derive,
    base: &'a Object,
    second: Option<&'a Object>,
    actor: Actor,
}

impl Module {
    /// `C_DeriveKey`: the key of the template (see `derive_keys`).
    pub fn derive_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        self.derive_keys(h, mech, base, template).map(|(k, _)| k)
    }

    /// `C_DeriveKey`: the key of the template, and the handles of the
    /// additional keys the parameter asks for, in its order. Each new key is
    /// protected as its row says: at least as much as its bases (sensitive if
    /// any base is, unextractable if any base is; a template asking otherwise
    /// is `CKR_TEMPLATE_INCONSISTENT`), except that on `spec` tokens a
    /// one-way KDF (`Derive::one_way`) lets the template choose, as v3.0
    /// says for it. `CKA_ALWAYS_SENSITIVE`/`CKA_NEVER_EXTRACTABLE` hold only
    /// if they held for every base and hold for the new key (v3.0 §4.10).
    pub fn derive_keys(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<(CK_OBJECT_HANDLE, Vec<CK_OBJECT_HANDLE>)> {
        // Shared secrets, derived values and their copies: key region.
        secret::scope(|| self.derive_keys_inner(h, mech, base, template))
    }

    fn derive_keys_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<(CK_OBJECT_HANDLE, Vec<CK_OBJECT_HANDLE>)> {
        let s = self.session(h)?;
        let row = self.mechanism_row(&s, mech.ty, CKF_DERIVE, "C_DeriveKey")?;
        let derive = row.derive.ok_or(Error::MechanismInvalid)?;
        let k = self.usable_key(&s, base, mech, row, CKA_DERIVE, "C_DeriveKey")?;
        self.may_create(&s, &[(template, true)])?;
        let second = match (derive.second_key)(&mech.param) {
            Some(h2) => Some(
                self.usable_key(&s, h2, mech, row, CKA_DERIVE, "C_DeriveKey")
                    .map_err(|e| match e {
                        Error::KeyHandleInvalid => Error::MechanismParamInvalid,
                        e => e,
                    })?,
            ),
            None => None,
        };
        let extra: &[Vec<RawAttr>] = derive.multi.map_or(&[], |m| (m.templates)(&mech.param));
        let actor = Self::actor(&s.slot.token.read())?;
        let call = Call {
            s: &s,
            mech,
            row,
            derive,
            base: &k,
            second: second.as_deref(),
            actor,
        };
        let mut planned = Vec::with_capacity(1 + extra.len());
        for t in std::iter::once(template).chain(extra.iter().map(Vec::as_slice)) {
            planned.push(self.plan(&call, t)?);
        }
        let lens: Vec<usize> = planned.iter().map(|p| p.len).collect();
        let values = match derive.multi {
            Some(m) => (m.derive)(&mech.param, &k, &lens),
            None => (derive.derive)(&mech.param, &k, second.as_deref(), lens[0]).map(|v| vec![v]),
        }
        .inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: {} from {} refused: {e}",
                row.name,
                k.describe()
            );
        })?;
        if values.len() != planned.len() {
            return Err(Error::GeneralError);
        }
        let bases: Vec<&Object> = std::iter::once(&*k).chain(second.as_deref()).collect();
        for (p, value) in planned.iter_mut().zip(&values) {
            Self::set_value(p, value, &bases)?;
        }
        let mut t = s.slot.token.write();
        let mut handles = Vec::with_capacity(planned.len());
        for p in planned {
            match self.insert_object(&s, &mut t, p.attrs, p.id, "C_DeriveKey", Some(mech.ty)) {
                Ok(handle) => handles.push(handle),
                Err(e) => {
                    // All keys or none: take back the ones already made.
                    for made in handles {
                        if let Some(o) = t.objects.remove(&made)
                            && o.is_token()
                        {
                            let _ = self.store.delete_object(s.slot.id, o.store_id);
                            t.handles.remove(&o.store_id);
                            self.wrote(s.slot.id, &mut t);
                        }
                    }
                    return Err(e);
                }
            }
        }
        log!(
            self.log,
            Level::Info,
            "session {h}: derived object {} with {} from {}",
            handles
                .iter()
                .map(|h| h.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            row.name,
            k.describe()
        );
        let first = handles.remove(0);
        Ok((first, handles))
    }

    /// The attributes and length of one key to derive from `template`, its
    /// protection settled (not its value yet).
    fn plan(&self, c: &Call, template: &[RawAttr]) -> Result<Planned> {
        let refused = |e: Error, t: &[RawAttr]| {
            self.refused(c.s, c.actor.policy, "C_DeriveKey", e, t);
            e
        };
        // CKM_HKDF_DATA: the length comes as CKA_VALUE_LEN, which a data
        // object does not have; take it out of the template.
        let mut asked_len = None;
        let template: Vec<RawAttr> = if c.derive.data {
            let mut rest = Vec::new();
            for a in template {
                if a.ty == CKA_VALUE_LEN {
                    asked_len = Some(a.as_ulong().ok_or(Error::AttributeValueInvalid)?);
                } else {
                    rest.push(a.clone());
                }
            }
            rest
        } else {
            template.to_vec()
        };
        let template = Self::with_key_template(&template, c.base, CKA_DERIVE_TEMPLATE)?;
        let class = if c.derive.data {
            CKO_DATA
        } else {
            CKO_SECRET_KEY
        };
        // Without CKA_KEY_TYPE a derived key is a generic secret.
        let mut implied = vec![(CKA_CLASS, class)];
        if !c.derive.data && !template.iter().any(|a| a.ty == CKA_KEY_TYPE) {
            implied.push((CKA_KEY_TYPE, CKK_GENERIC_SECRET));
        }
        let id = Self::new_store_id()?;
        let mut attrs = policy::build(
            &template,
            &implied,
            Origin::Derive(c.mech.ty),
            c.actor,
            &unique_id(id),
        )
        .map_err(|e| refused(e, &template))?;
        let kt = match attrs.get(&CKA_KEY_TYPE) {
            Some(AttrValue::Ulong(kt)) => Some(*kt as CK_KEY_TYPE),
            _ if c.derive.data => None,
            _ => return Err(Error::TemplateIncomplete),
        };
        // A data object's value is sized like a generic secret's.
        let key_type = key_types::lookup(kt.unwrap_or(CKK_GENERIC_SECRET))
            .ok_or(Error::TemplateInconsistent)?;
        let len = match (attrs.get(&CKA_VALUE_LEN), asked_len) {
            (Some(AttrValue::Ulong(n)), _) => *n as usize,
            (Some(_), _) => return Err(Error::AttributeValueInvalid),
            (None, Some(n)) => n as usize,
            (None, None) if key_type.needs_value_len => return Err(Error::TemplateIncomplete),
            // A key type of one size (DES, ChaCha20) has that length.
            (None, None) if let Some(n) = key_type.fixed_len => n,
            (None, None) => (c.derive.default_len)(&c.mech.param, c.base, c.second)?,
        };
        // Only secrets have a value length (a key-pair type is inconsistent
        // with a derived secret key).
        let value_len = key_type.value_len.ok_or(Error::TemplateInconsistent)?;
        if !value_len(len) {
            return Err(Error::TemplateInconsistent);
        }
        let bases: Vec<&Object> = std::iter::once(c.base).chain(c.second).collect();
        if !c.derive.data {
            let decides = c.derive.one_way && c.actor.policy == KeyPolicy::Spec;
            policy::protect_like_bases(&mut attrs, &template, &bases, decides)
                .map_err(|e| refused(e, &template))?;
        } else if bases.iter().any(|b| policy::is_protected(&b.attrs)) {
            // A data object's value is readable by anyone: never from a
            // protected key.
            log!(
                self.log,
                Level::Info,
                "session {}: {} refused: a data object cannot hold what a sensitive key derives",
                c.s.handle,
                c.row.name
            );
            return Err(Error::KeyFunctionNotPermitted);
        }
        if let Some(copied) = c.derive.copied
            && c.actor.policy == KeyPolicy::Hsm
        {
            self.check_copied(c, copied(&c.mech.param, c.base, c.second, len))?;
        }
        Ok(Planned { attrs, kt, len, id })
    }

    /// The `hsm` rule of `Derive::copied`: each base key that appears in the
    /// new key appears with at least `MIN_COPIED` bytes (or all of it), and
    /// the base key does appear.
    fn check_copied(&self, c: &Call, copied: [usize; 2]) -> Result<()> {
        let lens = [
            mechanism::key_value(c.base).map_or(0, <[u8]>::len),
            c.second
                .map_or(Ok(0), |k| mechanism::key_value(k).map(<[u8]>::len))
                .unwrap_or(0),
        ];
        for (i, (n, of)) in copied.into_iter().zip(lens).enumerate() {
            if (n == 0 && i > 0) || n >= of.min(mechanism::MIN_COPIED) {
                continue;
            }
            log!(
                self.log,
                Level::Warn,
                "session {}: {} from {} refused by the token's hsm key policy: the new key would hold {n} byte(s) of a {of}-byte key, few enough to find by trying every value (at least {} asked)",
                c.s.handle,
                c.row.name,
                c.base.describe(),
                of.min(mechanism::MIN_COPIED)
            );
            return Err(Error::TemplateInconsistent);
        }
        Ok(())
    }

    /// Stores a derived value in its planned object: a secret key's value
    /// (with its length and check value) and the bases' history, or a data
    /// object's value.
    fn set_value(p: &mut Planned, value: &Zeroizing<Vec<u8>>, bases: &[&Object]) -> Result<()> {
        match p.kt {
            Some(kt) => {
                policy::set_secret_value(&mut p.attrs, kt, value)?;
                for b in bases {
                    policy::inherit_sensitivity(&mut p.attrs, &b.attrs);
                }
            }
            None => {
                p.attrs.insert(CKA_VALUE, AttrValue::Bytes(value.to_vec()));
            }
        }
        Ok(())
    }
}
