//! Making keys: `C_GenerateKey`, `C_GenerateKeyPair`, `C_DeriveKey`.
#![forbid(unsafe_code)]

use cryptoki_sys::*;

use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::mechanism::{self, MechanismArg, key_types};
use crate::object::policy::RawAttr;
use crate::object::policy::{self, Origin};
use crate::object::{Object, unique_id};
use crate::secret;

impl Module {
    /// `C_GenerateKey`: a secret key born in the token.
    pub fn generate_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // The new key value and every copy of it: key region.
        secret::scope(|| self.generate_key_inner(h, mech, template))
    }

    pub(super) fn generate_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let row = self.mechanism_row(&s, mech.ty, CKF_GENERATE, "C_GenerateKey")?;
        let kg = row.keygen.ok_or(Error::MechanismInvalid)?;
        if mech.param != mechanism::Param::None {
            return Err(Error::MechanismParamInvalid);
        }
        let mut t = s.slot.token.write();
        let actor = Self::actor(&t)?;
        let id = Self::new_store_id()?;
        let implied = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, kg.key_type)];
        let key_type = key_types::lookup(kg.key_type).ok_or(Error::MechanismInvalid)?;
        let value_len = key_type.value_len;
        // A type of one size (DES) needs no CKA_VALUE_LEN.
        let fixed_len = key_type.fixed_len;
        let mut attrs = policy::build(
            template,
            &implied,
            Origin::Generate(mech.ty),
            actor,
            &unique_id(id),
        )
        .and_then(|a| match a.get(&CKA_VALUE_LEN) {
            Some(ferrohsm_store::AttrValue::Ulong(n))
                if value_len.is_some_and(|ok| ok(*n as usize)) =>
            {
                Ok(a)
            }
            Some(_) => Err(Error::AttributeValueInvalid),
            None if fixed_len.is_some() => Ok(a),
            None => Err(Error::TemplateIncomplete),
        })
        .inspect_err(|e| self.refused(&s, actor.policy, "C_GenerateKey", *e, template))?;
        let len = match (attrs.get(&CKA_VALUE_LEN), fixed_len) {
            (Some(ferrohsm_store::AttrValue::Ulong(n)), _) => *n as usize,
            (None, Some(n)) => n,
            _ => return Err(Error::TemplateIncomplete),
        };
        let mut value = zeroize::Zeroizing::new(vec![0u8; len]);
        getrandom::fill(&mut value).map_err(|_| Error::DeviceError)?;
        if let Some(fix) = key_type.fix_generated {
            fix(&mut value);
        }
        policy::set_secret_value(&mut attrs, kg.key_type, &value)?;
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_GenerateKey", Some(mech.ty))?;
        log!(
            self.log,
            Level::Debug,
            "session {h}: generated {} key {handle}",
            row.name
        );
        Ok(handle)
    }

    /// `C_GenerateKeyPair`: a public/private key pair born in the token. Both
    /// templates go through the attribute policy; the mechanism family makes
    /// the pair (with a pairwise consistency check) outside the token lock.
    pub fn generate_key_pair(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        public_template: &[RawAttr],
        private_template: &[RawAttr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        // The private key and the generator's temporaries: key region.
        secret::scope(|| self.generate_key_pair_inner(h, mech, public_template, private_template))
    }

    pub(super) fn generate_key_pair_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        public_template: &[RawAttr],
        private_template: &[RawAttr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        let s = self.session(h)?;
        let row = self.mechanism_row(&s, mech.ty, CKF_GENERATE_KEY_PAIR, "C_GenerateKeyPair")?;
        let kp = row.keypair.ok_or(Error::MechanismInvalid)?;
        if mech.param != mechanism::Param::None {
            return Err(Error::MechanismParamInvalid);
        }
        let (actor, pub_id, priv_id) = {
            let t = s.slot.token.read();
            (
                Self::actor(&t)?,
                Self::new_store_id()?,
                Self::new_store_id()?,
            )
        };
        let origin = Origin::Generate(mech.ty);
        let mut public = policy::build(
            public_template,
            &[(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, kp.key_type)],
            origin,
            actor,
            &unique_id(pub_id),
        )
        .inspect_err(|e| {
            self.refused(&s, actor.policy, "C_GenerateKeyPair", *e, public_template)
        })?;
        let mut private = policy::build(
            private_template,
            &[(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_KEY_TYPE, kp.key_type)],
            origin,
            actor,
            &unique_id(priv_id),
        )
        .inspect_err(|e| {
            self.refused(&s, actor.policy, "C_GenerateKeyPair", *e, private_template)
        })?;
        // Key generation (RSA-4096 takes seconds) runs with no lock held.
        let (pub_extra, priv_extra) = (kp.generate)(&public).inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: {} refused: {e}",
                row.name
            );
        })?;
        public.extend(pub_extra);
        private.extend(priv_extra);
        let mut t = s.slot.token.write();
        // Check both can be stored before storing either.
        for obj in [&public, &private] {
            let token_obj = policy::get_bool(obj, CKA_TOKEN);
            if token_obj && !s.rw {
                return Err(Error::SessionReadOnly);
            }
        }
        let f = "C_GenerateKeyPair";
        let ph = self.insert_object(&s, &mut t, public, pub_id, f, Some(mech.ty))?;
        let kh = match self.insert_object(&s, &mut t, private, priv_id, f, Some(mech.ty)) {
            Ok(kh) => kh,
            Err(e) => {
                // Do not leave half a pair behind.
                if let Some(o) = t.objects.remove(&ph)
                    && o.is_token()
                {
                    let _ = self.store.delete_object(s.slot.id, o.store_id);
                    t.handles.remove(&o.store_id);
                    self.wrote(s.slot.id, &mut t);
                }
                return Err(e);
            }
        };
        log!(
            self.log,
            Level::Debug,
            "session {h}: generated {} key pair {ph}/{kh}",
            row.name
        );
        Ok((ph, kh))
    }

    /// `C_DeriveKey`: a secret key (or, for `CKM_HKDF_DATA`, a data object)
    /// from a base key, and a second key when the parameter names one. The
    /// new key is at least as protected as its bases: sensitive if any base
    /// is, unextractable if any base is (a template asking otherwise is
    /// `CKR_TEMPLATE_INCONSISTENT`), and `CKA_ALWAYS_SENSITIVE`/
    /// `CKA_NEVER_EXTRACTABLE` only if they held for every base.
    pub fn derive_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // Shared secrets, derived values and their copies: key region.
        secret::scope(|| self.derive_key_inner(h, mech, base, template))
    }

    pub(super) fn derive_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let row = self.mechanism_row(&s, mech.ty, CKF_DERIVE, "C_DeriveKey")?;
        let derive = row.derive.ok_or(Error::MechanismInvalid)?;
        let k = self.usable_key(&s, base, mech, row, CKA_DERIVE, "C_DeriveKey")?;
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
        let bases: Vec<&Object> = std::iter::once(&*k).chain(second.as_deref()).collect();
        let (actor, id) = {
            let t = s.slot.token.read();
            (Self::actor(&t)?, Self::new_store_id()?)
        };
        // CKM_HKDF_DATA: the length comes as CKA_VALUE_LEN, which a data
        // object does not have; take it out of the template.
        let mut asked_len = None;
        let template: Vec<RawAttr> = if derive.data {
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
        let template = Self::with_key_template(&template, &k, CKA_DERIVE_TEMPLATE)?;
        let class = if derive.data {
            CKO_DATA
        } else {
            CKO_SECRET_KEY
        };
        // Without CKA_KEY_TYPE a derived key is a generic secret.
        let mut implied = vec![(CKA_CLASS, class)];
        if !derive.data && !template.iter().any(|a| a.ty == CKA_KEY_TYPE) {
            implied.push((CKA_KEY_TYPE, CKK_GENERIC_SECRET));
        }
        let mut attrs = policy::build(
            &template,
            &implied,
            Origin::Derive(mech.ty),
            actor,
            &unique_id(id),
        )
        .inspect_err(|e| self.refused(&s, actor.policy, "C_DeriveKey", *e, &template))?;
        let kt = match attrs.get(&CKA_KEY_TYPE) {
            Some(ferrohsm_store::AttrValue::Ulong(kt)) => Some(*kt as CK_KEY_TYPE),
            _ if derive.data => None,
            _ => return Err(Error::TemplateIncomplete),
        };
        // A data object's value is sized like a generic secret's.
        let key_type = key_types::lookup(kt.unwrap_or(CKK_GENERIC_SECRET))
            .ok_or(Error::TemplateInconsistent)?;
        let len = match (attrs.get(&CKA_VALUE_LEN), asked_len) {
            (Some(ferrohsm_store::AttrValue::Ulong(n)), _) => *n as usize,
            (Some(_), _) => return Err(Error::AttributeValueInvalid),
            (None, Some(n)) => n as usize,
            (None, None) if key_type.needs_value_len => return Err(Error::TemplateIncomplete),
            (None, None) if let Some(n) = key_type.fixed_len => n,
            (None, None) => (derive.default_len)(&mech.param, &k, second.as_deref())?,
        };
        // Only secrets have a value length (a key-pair type is inconsistent
        // with a derived secret key).
        let value_len = key_type.value_len.ok_or(Error::TemplateInconsistent)?;
        if !value_len(len) {
            return Err(Error::TemplateInconsistent);
        }
        if !derive.data {
            policy::protect_like_bases(&mut attrs, &template, &bases)
                .inspect_err(|e| self.refused(&s, actor.policy, "C_DeriveKey", *e, &template))?;
        } else if bases.iter().any(|b| policy::is_protected(&b.attrs)) {
            // A data object's value is readable by anyone: never from a
            // protected key.
            log!(
                self.log,
                Level::Info,
                "session {h}: {} refused: a data object cannot hold what a sensitive key derives",
                row.name
            );
            return Err(Error::KeyFunctionNotPermitted);
        }
        let value = (derive.derive)(&mech.param, &k, second.as_deref(), len).inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: {} from {} refused: {e}",
                row.name,
                k.describe()
            );
        })?;
        match kt {
            Some(kt) => {
                policy::set_secret_value(&mut attrs, kt, &value)?;
                for b in &bases {
                    policy::inherit_sensitivity(&mut attrs, &b.attrs);
                }
            }
            None => {
                attrs.insert(CKA_VALUE, ferrohsm_store::AttrValue::Bytes(value.to_vec()));
            }
        }
        let mut t = s.slot.token.write();
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_DeriveKey", Some(mech.ty))?;
        log!(
            self.log,
            Level::Info,
            "session {h}: derived object {handle} with {} from {}",
            row.name,
            k.describe()
        );
        Ok(handle)
    }
}
