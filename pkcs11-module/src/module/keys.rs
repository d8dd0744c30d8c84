//! Making keys: `C_GenerateKey`, `C_GenerateKeyPair` (`C_DeriveKey` is in
//! `derive`).
#![forbid(unsafe_code)]

use cryptoki_sys::*;

use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::mechanism::{self, MechanismArg, key_types};
use crate::object::policy::RawAttr;
use crate::object::policy::{self, Origin};
use crate::object::unique_id;
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
        self.may_create(&s, &[(template, true)])?;
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
        // A type of one size (DES, ChaCha20) needs no CKA_VALUE_LEN.
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
        self.may_create(&s, &[(public_template, false), (private_template, true)])?;
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
}
