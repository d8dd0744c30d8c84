//! `C_InitToken`, `C_InitPIN`, `C_SetPIN` and the PIN checks behind `C_Login`:
//! every PIN goes through the store's one gate (`ferrohsm_store::access`).
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AuditEvent, AuditKey, PinWrap, StorageKey, TokenRecord};

use super::auditing::result_name;
use super::info::{MAX_PIN_LEN, MIN_PIN_LEN, pad};
use super::slot::{Login, Slot, Token};
use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::secret;

/// Associated data binding a PIN wrap to its token and role; the one
/// definition lives in the store crate, which the backup tool shares.
pub(super) fn wrap_aad(token_id: &[u8; 16], who: Login) -> Vec<u8> {
    let role = if who == Login::So {
        ferrohsm_store::PinRole::So
    } else {
        ferrohsm_store::PinRole::User
    };
    ferrohsm_store::pin_wrap_aad(token_id, role)
}

/// The store's name for a login role.
pub(super) fn pin_role(who: Login) -> ferrohsm_store::PinRole {
    if who == Login::So {
        ferrohsm_store::PinRole::So
    } else {
        ferrohsm_store::PinRole::User
    }
}

pub(super) fn check_pin_len(pin: &[u8]) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(Error::PinLenRange)
    }
}

pub(super) fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| Error::DeviceError)?;
    Ok(b)
}

pub(super) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

impl Module {
    /// `C_InitToken`: makes the spare token a new token, or wipes and
    /// re-initialises an initialised one given its SO PIN.
    pub fn init_token(&self, id: CK_SLOT_ID, so_pin: &[u8], label: &[u8; 32]) -> Result<()> {
        let r = secret::scope(|| self.init_token_inner(id, so_pin, label));
        let has_token = self.slot(id).is_ok_and(|s| s.token.read().record.is_some());
        if self.audit.enabled() && has_token {
            let mut e = AuditEvent::now("C_InitToken", &result_name(&r));
            e.user = Some("so".into());
            let shown = String::from_utf8_lossy(label)
                .trim_end_matches([' ', '\0'])
                .to_string();
            e.detail = Some(format!("token label {shown:?}"));
            self.audit.record(id, e, true);
        }
        r
    }

    pub(super) fn init_token_inner(
        &self,
        id: CK_SLOT_ID,
        so_pin: &[u8],
        label: &[u8; 32],
    ) -> Result<()> {
        check_pin_len(so_pin)?;
        let slot = self.slot(id)?;
        // A token another process created in this (spare) slot is not ours to
        // overwrite without its SO PIN.
        self.refresh(&slot)?;
        let old = {
            let t = slot.token.read();
            if t.sessions > 0 {
                return Err(Error::SessionExists);
            }
            t.record.clone()
        };
        if let Some(old) = &old {
            if old.so_failures >= self.config.max_login_failures {
                return Err(Error::PinLocked);
            }
            self.verify_pin(&slot, old, Login::So, so_pin)?;
        }
        let mut label = *label;
        if let Some(nul) = label.iter().position(|&b| b == 0) {
            label[nul..].fill(b' ');
        }
        let token_id = random_bytes::<16>()?;
        let serial = pad::<16>(hex(&random_bytes::<8>()?).as_bytes());
        let key = StorageKey::generate().map_err(|_| Error::DeviceError)?;
        let audit_root = AuditKey::generate().map_err(|_| Error::DeviceError)?;
        let policy = self.config.default_policy;
        let rec = TokenRecord {
            slot_id: id,
            token_id,
            label,
            serial,
            policy,
            so_pin: self.seal_pin(so_pin, &key, &token_id, Login::So)?,
            user_pin: None,
            so_failures: 0,
            user_failures: 0,
            audit_root: Some(
                audit_root
                    .seal(&key, &token_id)
                    .map_err(|_| Error::GeneralError)?,
            ),
        };
        {
            let mut t = slot.token.write();
            if t.sessions > 0 {
                return Err(Error::SessionExists);
            }
            if t.record.as_ref().map(|r| r.token_id) != old.as_ref().map(|r| r.token_id) {
                // Someone re-initialised it meanwhile; their SO PIN may differ.
                return Err(Error::PinIncorrect);
            }
            self.store
                .init_token(&rec)
                .map_err(|e| self.store_error("initialising token", e))?;
            // Started even with auditing off, so that turning it on later
            // continues a chain rather than finding none.
            if let Err(e) = self.store.start_audit(id, &audit_root) {
                log!(
                    self.log,
                    Level::Error,
                    "slot {id}: cannot start the audit log: {e}"
                );
            }
            let is_spare = t.record.is_none();
            *t = Token::spare();
            t.record = Some(rec);
            drop(t);
            if is_spare {
                self.add_spares(&mut self.slots.write(), &[id]);
            }
        }
        log!(
            self.log,
            Level::Info,
            "slot {id}: token {:?} initialised with key policy {}",
            String::from_utf8_lossy(&label).trim_end(),
            policy.name()
        );
        Ok(())
    }

    pub(super) fn seal_pin(
        &self,
        pin: &[u8],
        key: &StorageKey,
        token_id: &[u8; 16],
        who: Login,
    ) -> Result<PinWrap> {
        PinWrap::seal(pin, key, self.config.kdf, &wrap_aad(token_id, who)).map_err(|e| {
            log!(
                self.log,
                Level::Error,
                "sealing the storage key failed: {e}"
            );
            Error::GeneralError
        })
    }

    /// Checks a PIN through the store's one gate (`ferrohsm_store::access`:
    /// lockout, counting, unwrapping; the KDF and the counter write run with
    /// no token lock held), then adopts the stored outcome under the token
    /// lock, re-checking that the token was not re-initialised meanwhile.
    pub(super) fn verify_pin(
        &self,
        slot: &Slot,
        rec: &TokenRecord,
        who: Login,
        pin: &[u8],
    ) -> Result<StorageKey> {
        use ferrohsm_store::access::{self, AccessError};
        let role = pin_role(who);
        let max = self.config.max_login_failures;
        let r = access::check_pin(&*self.store, slot.id, Some(rec), role, pin, max);
        let mut t = slot.token.write();
        if t.record.as_ref().map(|c| c.token_id) != Some(rec.token_id) {
            return Err(Error::PinIncorrect);
        }
        let role_name = if who == Login::So { "SO" } else { "user" };
        match r {
            Ok(o) => {
                if o.wrote {
                    self.wrote(slot.id, &mut t);
                    t.record = Some(o.record);
                }
                Ok(o.key)
            }
            Err(e @ (AccessError::WrongPin { .. } | AccessError::PinLocked)) => {
                // The gate wrote the counter: take the record as stored.
                self.wrote(slot.id, &mut t);
                match self.store.token(slot.id) {
                    Ok(Some(stored)) if stored.token_id == rec.token_id => t.record = Some(stored),
                    _ => t.generation = None,
                }
                if let AccessError::WrongPin { failures } = e {
                    log!(
                        self.log,
                        Level::Info,
                        "slot {}: wrong {role_name} PIN ({failures} consecutive)",
                        slot.id
                    );
                    if failures >= max {
                        log!(
                            self.log,
                            Level::Warn,
                            "slot {}: {role_name} PIN locked after {failures} failed attempts",
                            slot.id
                        );
                    }
                    Err(Error::PinIncorrect)
                } else {
                    Err(Error::PinLocked)
                }
            }
            Err(AccessError::TokenChanged) => {
                // Re-initialised by another process while the KDF ran.
                t.generation = None;
                Err(Error::PinIncorrect)
            }
            Err(AccessError::UserPinNotSet) => Err(Error::UserPinNotInitialized),
            Err(AccessError::NoToken) => Err(Error::TokenNotRecognized),
            Err(AccessError::Store(e)) => Err(self.store_error("saving login counter", e)),
            Err(AccessError::Seal(e)) => {
                log!(
                    self.log,
                    Level::Error,
                    "slot {}: cannot open PIN wrap: {e}",
                    slot.id
                );
                Err(Error::GeneralError)
            }
        }
    }

    /// Re-wraps the storage key under a PIN with the configured KDF cost when
    /// the stored wrap is weaker (runs after a successful login, through the
    /// store's gate).
    pub(super) fn upgrade_kdf(&self, slot: &Slot, who: Login, pin: &[u8], key: &StorageKey) {
        let Some(rec) = slot.token.read().record.clone() else {
            return;
        };
        let r = ferrohsm_store::access::upgrade_kdf(
            &*self.store,
            slot.id,
            &rec,
            pin_role(who),
            pin,
            key,
            self.config.kdf,
        );
        match r {
            Ok(None) => {}
            Ok(Some(stored)) => {
                let mut t = slot.token.write();
                self.wrote(slot.id, &mut t);
                if t.record.as_ref().map(|c| c.token_id) == Some(stored.token_id) {
                    t.record = Some(stored);
                }
                log!(
                    self.log,
                    Level::Info,
                    "slot {}: PIN wrap upgraded to the configured KDF cost",
                    slot.id
                );
            }
            Err(e) => log!(
                self.log,
                Level::Warn,
                "slot {}: KDF upgrade not saved: {e}",
                slot.id
            ),
        }
    }

    /// `C_InitPIN`: the SO sets the user PIN (and unlocks it).
    pub fn init_pin(&self, h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
        let r = secret::scope(|| self.init_pin_inner(h, pin));
        self.audit_call(h, "C_InitPIN", &r, true, |_| {});
        r
    }

    pub(super) fn init_pin_inner(&self, h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        self.refresh(&s.slot)?;
        let (rec, key) = {
            let t = s.slot.token.read();
            if t.login != Login::So || !s.rw {
                return Err(Error::UserNotLoggedIn);
            }
            check_pin_len(pin)?;
            (
                t.record()?.clone(),
                t.key.clone().ok_or(Error::UserNotLoggedIn)?,
            )
        };
        let wrap = self.seal_pin(pin, &key, &rec.token_id, Login::User)?;
        let mut t = s.slot.token.write();
        let cur = t.record.as_mut().ok_or(Error::TokenNotRecognized)?;
        cur.user_pin = Some(wrap);
        cur.user_failures = 0;
        let snapshot = cur.clone();
        self.store
            .update_token(&snapshot)
            .map_err(|e| self.store_error("saving user PIN", e))?;
        self.wrote(s.slot.id, &mut t);
        log!(
            self.log,
            Level::Info,
            "slot {}: user PIN set by SO",
            s.slot.id
        );
        Ok(())
    }

    /// `C_SetPIN`: changes the PIN of whoever the session is (the user in a
    /// public or user session, the SO in an SO session).
    pub fn set_pin(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
        let r = secret::scope(|| self.set_pin_inner(h, old, new));
        self.audit_call(h, "C_SetPIN", &r, true, |_| {});
        r
    }

    pub(super) fn set_pin_inner(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        if !s.rw {
            return Err(Error::SessionReadOnly);
        }
        self.refresh(&s.slot)?;
        let (rec, who) = {
            let t = s.slot.token.read();
            let who = if t.login == Login::So {
                Login::So
            } else {
                Login::User
            };
            let rec = t.record()?.clone();
            let failures = if who == Login::So {
                rec.so_failures
            } else {
                rec.user_failures
            };
            if who == Login::User && rec.user_pin.is_none() {
                return Err(Error::UserPinNotInitialized);
            }
            if failures >= self.config.max_login_failures {
                return Err(Error::PinLocked);
            }
            (rec, who)
        };
        check_pin_len(new)?;
        let key = self.verify_pin(&s.slot, &rec, who, old)?;
        let wrap = self.seal_pin(new, &key, &rec.token_id, who)?;
        let mut t = s.slot.token.write();
        let cur = t.record.as_mut().ok_or(Error::TokenNotRecognized)?;
        if who == Login::So {
            cur.so_pin = wrap;
        } else {
            cur.user_pin = Some(wrap);
        }
        let snapshot = cur.clone();
        self.store
            .update_token(&snapshot)
            .map_err(|e| self.store_error("saving PIN", e))?;
        self.wrote(s.slot.id, &mut t);
        log!(
            self.log,
            Level::Info,
            "slot {}: {} PIN changed",
            s.slot.id,
            if who == Login::So { "SO" } else { "user" }
        );
        Ok(())
    }
}
