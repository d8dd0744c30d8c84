//! `C_OpenSession`, `C_CloseSession`, `C_CloseAllSessions`,
//! `C_GetSessionInfo`, `C_Login`, `C_Logout`, `C_SessionCancel`, and `Session`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use cryptoki_sys::*;

use super::slot::{Login, Session, Slot, Token, state};
use super::state::Module;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::secret;

impl Module {
    /// `C_OpenSession`.
    pub fn open_session(&self, id: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::SessionParallelNotSupported);
        }
        let slot = self.slot(id)?;
        // No store access here (issue 18: open+close is a hot path for
        // clients that open a session per request). Other processes' writes
        // are followed where they matter: login, find, token info. Only a
        // slot whose cache holds no token asks the store, since another
        // process may have initialised one there since.
        if slot.token.read().record.is_none() {
            self.refresh(&slot)?;
        }
        let rw = flags & CKF_RW_SESSION != 0;
        let handle = self.new_handle();
        {
            let mut t = slot.token.write();
            t.record()?;
            if t.login == Login::So && !rw {
                return Err(Error::SessionReadWriteSoExists);
            }
            if t.sessions >= self.config.max_sessions {
                return Err(Error::SessionCount);
            }
            t.sessions += 1;
            if rw {
                t.rw_sessions += 1;
            }
            self.sessions.write().insert(
                handle,
                Arc::new(Session {
                    handle,
                    slot: slot.clone(),
                    rw,
                    ops: Default::default(),
                }),
            );
        }
        Ok(handle)
    }

    /// `C_CloseSession`: destroys its session objects; closing the last session
    /// of a token logs the application out of it.
    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        if self.sessions.write().remove(&h).is_none() {
            // Closed by another thread meanwhile.
            return Err(Error::SessionHandleInvalid);
        }
        t.objects.remove_owned_by(h);
        t.sessions -= 1;
        if s.rw {
            t.rw_sessions -= 1;
        }
        if t.sessions == 0 && t.login != Login::Public {
            Self::logout_token(&s.slot, &mut t);
        }
        Ok(())
    }

    /// `C_CloseAllSessions`.
    pub fn close_all_sessions(&self, id: CK_SLOT_ID) -> Result<()> {
        let slot = self.slot(id)?;
        let handles: Vec<_> = self
            .sessions
            .read()
            .values()
            .filter(|s| s.slot.id == id)
            .map(|s| s.handle)
            .collect();
        for h in handles {
            match self.close_session(h) {
                Ok(()) | Err(Error::SessionHandleInvalid) => {}
                Err(e) => return Err(e),
            }
        }
        drop(slot);
        Ok(())
    }

    /// `CK_SESSION_INFO`.
    pub fn session_info(&self, h: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO> {
        let s = self.session(h)?;
        let login = s.slot.token.read().login;
        Ok(CK_SESSION_INFO {
            slotID: s.slot.id,
            state: state(login, s.rw),
            flags: CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 },
            ulDeviceError: 0,
        })
    }

    /// `C_Login` (and `C_LoginUser`, which has no user names to check here).
    pub fn login(&self, h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        let r = secret::scope(|| self.login_inner(h, user_type, pin));
        let who = match user_type {
            CKU_SO => "so",
            CKU_USER => "user",
            CKU_CONTEXT_SPECIFIC => "context-specific",
            _ => "unknown",
        };
        let failures = self.session(h).ok().and_then(|s| {
            let t = s.slot.token.read();
            let rec = t.record.as_ref()?;
            Some(if user_type == CKU_SO {
                rec.so_failures
            } else {
                rec.user_failures
            })
        });
        let max = self.config.max_login_failures;
        let detail = match (&r, failures) {
            (Err(Error::PinLocked), _) => Some("PIN locked: login refused".to_string()),
            (Err(Error::PinIncorrect), Some(n)) if n >= max => Some(format!(
                "wrong PIN; {n} consecutive failures: PIN now locked (lockout)"
            )),
            (Err(Error::PinIncorrect), Some(n)) => {
                Some(format!("wrong PIN; {n} consecutive failure(s) of {max}"))
            }
            _ => None,
        };
        self.audit_call(h, "C_Login", &r, true, |e| {
            e.user = Some(who.into());
            e.detail = detail;
        });
        r
    }

    pub(super) fn login_inner(
        &self,
        h: CK_SESSION_HANDLE,
        user_type: CK_USER_TYPE,
        pin: &[u8],
    ) -> Result<()> {
        let s = self.session(h)?;
        // Held across the KDF; taken before the token lock (lock order).
        let _gate = s.slot.login_gate.lock();
        let who = match user_type {
            CKU_SO => Login::So,
            CKU_USER => Login::User,
            // No key here needs CKA_ALWAYS_AUTHENTICATE re-login yet.
            CKU_CONTEXT_SPECIFIC => return Err(Error::OperationNotInitialized),
            _ => return Err(Error::UserTypeInvalid),
        };
        // Counters and PINs as other processes left them.
        self.refresh(&s.slot)?;
        let rec = {
            let t = s.slot.token.read();
            let rec = t.record()?.clone();
            match t.login {
                Login::Public => {}
                l if l == who => return Err(Error::UserAlreadyLoggedIn),
                _ => return Err(Error::UserAnotherAlreadyLoggedIn),
            }
            if who == Login::So && t.sessions > t.rw_sessions {
                return Err(Error::SessionReadOnlyExists);
            }
            if who == Login::User && rec.user_pin.is_none() {
                return Err(Error::UserPinNotInitialized);
            }
            let failures = if who == Login::So {
                rec.so_failures
            } else {
                rec.user_failures
            };
            if failures >= self.config.max_login_failures {
                return Err(Error::PinLocked);
            }
            rec
        };
        let key = self.verify_pin(&s.slot, &rec, who, pin)?;
        {
            let mut t = s.slot.token.write();
            match t.login {
                Login::Public => {}
                l if l == who => return Err(Error::UserAlreadyLoggedIn),
                _ => return Err(Error::UserAnotherAlreadyLoggedIn),
            }
            if who == Login::User {
                self.load_objects(s.slot.id, &mut t, Some(&key))?;
            }
            s.slot.set_login(&mut t, who);
            t.key = Some(key.clone());
        }
        log!(
            self.log,
            Level::Info,
            "slot {}: {} logged in",
            s.slot.id,
            if who == Login::So { "SO" } else { "user" }
        );
        self.upgrade_kdf(&s.slot, who, pin, &key);
        self.ensure_audit(&s.slot, &key);
        Ok(())
    }

    /// Forgets the login: storage key, and the objects only a user may see
    /// (private ones, sealed token keys; handles to them become invalid for
    /// good).
    pub(super) fn logout_token(slot: &Slot, t: &mut Token) {
        slot.set_login(t, Login::Public);
        t.key = None;
        t.objects.retain(|_, o| !o.needs_user());
    }

    /// `C_Logout`.
    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        if t.login == Login::Public {
            return Err(Error::UserNotLoggedIn);
        }
        Self::logout_token(&s.slot, &mut t);
        Ok(())
    }

    /// `C_SessionCancel`: ends the active operations named by `flags`.
    pub fn session_cancel(&self, h: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        if flags & CKF_DIGEST != 0 {
            ops.digest = None;
        }
        if flags & CKF_FIND_OBJECTS != 0 {
            ops.find = None;
        }
        if flags & CKF_ENCRYPT != 0 {
            ops.encrypt = None;
        }
        if flags & CKF_DECRYPT != 0 {
            ops.decrypt = None;
        }
        if flags & CKF_SIGN != 0 {
            ops.sign = None;
        }
        if flags & CKF_VERIFY != 0 {
            ops.verify = None;
        }
        if flags & CKF_SIGN_RECOVER != 0 {
            ops.sign_recover = None;
        }
        if flags & CKF_VERIFY_RECOVER != 0 {
            ops.verify_recover = None;
        }
        if flags & CKF_MESSAGE_ENCRYPT != 0 {
            ops.msg_encrypt = None;
        }
        if flags & CKF_MESSAGE_DECRYPT != 0 {
            ops.msg_decrypt = None;
        }
        if flags & CKF_MESSAGE_SIGN != 0 {
            ops.msg_sign = None;
        }
        if flags & CKF_MESSAGE_VERIFY != 0 {
            ops.msg_verify = None;
        }
        Ok(())
    }
}
