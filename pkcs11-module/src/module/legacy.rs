//! Legacy algorithms and the token's key policy: the one place that decides
//! whether a token offers a mechanism's capability or stores a key type.
//! `spec` tokens offer what SoftHSMv2 offers and clients still ask for (DES
//! and triple-DES, MD5, RSA PKCS#1 v1.5 key transport); `hsm` tokens refuse
//! them as a FIPS-mode HSM does — `CKR_MECHANISM_INVALID` at `*Init`,
//! `C_GenerateKey`, `C_WrapKey`/`C_UnwrapKey`, not in `C_GetMechanismList` —
//! and the log names the policy. Which rows and key types are legacy is a
//! column of the tables (`Mechanism::legacy`, `KeyType::legacy`).
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, KeyPolicy};

use super::slot::{Session, Slot};
use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::mechanism::{self, Mechanism, key_types};
use crate::object::attrs::Attrs;

/// Whether tokens of a policy offer the legacy algorithms.
pub(super) fn offers_legacy(policy: KeyPolicy) -> bool {
    policy == KeyPolicy::Spec
}

impl Module {
    /// The key policy of the token in `slot`; for the spare, uninitialised
    /// token, the one `C_InitToken` will give it.
    pub(super) fn slot_policy(&self, slot: &Slot) -> KeyPolicy {
        slot.token
            .read()
            .record
            .as_ref()
            .map_or(self.config.default_policy, |r| r.policy)
    }

    /// The table row of mechanism `ty` for `func`, which uses its capability
    /// `flag` (`CKF_ENCRYPT`, `CKF_WRAP`, …) on the session's token:
    /// `CKR_MECHANISM_INVALID` for an unknown mechanism, and for a legacy
    /// capability on a token whose policy does not offer legacy algorithms.
    /// Call with no token lock held.
    pub(super) fn mechanism_row(
        &self,
        s: &Session,
        ty: CK_MECHANISM_TYPE,
        flag: CK_FLAGS,
        func: &str,
    ) -> Result<&'static Mechanism> {
        let row = mechanism::lookup(ty)?;
        if row.legacy & flag != 0 {
            let policy = self.slot_policy(&s.slot);
            if !offers_legacy(policy) {
                log!(
                    self.log,
                    Level::Info,
                    "session {}: {func} with {} refused: a legacy algorithm, which this token's key policy '{}' does not offer (tokens initialised with policy 'spec' do)",
                    s.handle,
                    row.name,
                    policy.name()
                );
                return Err(Error::MechanismInvalid);
            }
        }
        Ok(row)
    }

    /// Whether a new object (`attrs`, made by `func`) may be stored on a token
    /// of `policy`: a key of a legacy key type (DES) only on tokens that offer
    /// legacy algorithms, else `CKR_ATTRIBUTE_VALUE_INVALID` (the token does
    /// not support that `CKA_KEY_TYPE`). Called where every new object is
    /// stored (`insert_object`), with the token locked.
    pub(super) fn key_type_offered(
        &self,
        s: &Session,
        policy: KeyPolicy,
        attrs: &Attrs,
        func: &str,
    ) -> Result<()> {
        let Some(AttrValue::Ulong(kt)) = attrs.get(&CKA_KEY_TYPE) else {
            return Ok(());
        };
        match key_types::lookup(*kt as CK_KEY_TYPE) {
            Some(k) if k.legacy && !offers_legacy(policy) => {
                log!(
                    self.log,
                    Level::Info,
                    "session {}: {func} refused: {} is a legacy key type, which this token's key policy '{}' does not offer (tokens initialised with policy 'spec' do)",
                    s.handle,
                    k.name,
                    policy.name()
                );
                Err(Error::AttributeValueInvalid)
            }
            _ => Ok(()),
        }
    }
}
