//! Glue between calls and the token's audit log: one event per call that
//! changes a token, and the first event of a token's chain.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AuditEvent, AuditKey, StorageKey, TokenRecord};

use super::slot::{Session, Slot};
use super::state::Module;
use crate::error::Result;
use crate::log;
use crate::logging::Level;

/// The `CKR_*` name of a call's outcome, for audit events.
pub(super) fn result_name<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "CKR_OK".into(),
        Err(e) => e.name().into(),
    }
}

/// Seconds since the Unix epoch.
pub(super) fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Module {
    /// An audit event of session `s` for `function` with the outcome `r`.
    pub(super) fn event<T>(&self, s: &Session, function: &str, r: &Result<T>) -> AuditEvent {
        let mut e = AuditEvent::now(function, &result_name(r));
        e.session = Some(s.handle);
        e.user = Some(s.slot.user_name().into());
        e
    }

    /// Records the outcome of a call of session `h` (nothing if the session
    /// is unknown: there is no token to file it under). `durable`: on disk
    /// before the call returns.
    pub(super) fn audit_call<T>(
        &self,
        h: CK_SESSION_HANDLE,
        function: &str,
        r: &Result<T>,
        durable: bool,
        fill: impl FnOnce(&mut AuditEvent),
    ) {
        if !self.audit.enabled() {
            return;
        }
        let Ok(s) = self.session(h) else { return };
        let mut e = self.event(&s, function, r);
        fill(&mut e);
        self.audit.record(s.slot.id, e, durable);
    }

    /// Gives a token made before audit logs existed its audit root (sealed
    /// under `key`) and starts its chain. A token whose root exists but whose
    /// log is missing is NOT restarted: that is evidence, reported instead.
    pub(super) fn ensure_audit(&self, slot: &Slot, key: &StorageKey) {
        if !self.audit.enabled() {
            return;
        }
        let Some(rec) = slot.token.read().record.clone() else {
            return;
        };
        if rec.audit_root.is_some() {
            if !self.store.audit_started(slot.id) {
                log!(
                    self.log,
                    Level::Error,
                    "slot {}: the token's audit log is missing (removed?); events are not \
                     recorded. `ferrohsm audit verify` reports it",
                    slot.id
                );
            }
            return;
        }
        let started = (|| -> std::result::Result<(), String> {
            let root = AuditKey::generate().map_err(|e| e.to_string())?;
            let sealed = root.seal(key, &rec.token_id).map_err(|e| e.to_string())?;
            let token_id = rec.token_id;
            let stored = self
                .store
                .modify_token(slot.id, &mut |r: &mut TokenRecord| {
                    if r.token_id == token_id && r.audit_root.is_none() {
                        r.audit_root = Some(sealed.clone());
                    }
                })
                .map_err(|e| e.to_string())?;
            if stored.audit_root.as_ref() != Some(&sealed) {
                return Ok(()); // another process did it meanwhile
            }
            self.store
                .start_audit(slot.id, &root)
                .map_err(|e| e.to_string())?;
            let mut t = slot.token.write();
            self.wrote(slot.id, &mut t);
            if t.record.as_ref().is_some_and(|r| r.token_id == token_id) {
                t.record = Some(stored);
            }
            Ok(())
        })();
        match started {
            Ok(()) => log!(
                self.log,
                Level::Info,
                "slot {}: audit log started for a token made before audit logs existed",
                slot.id
            ),
            Err(e) => log!(
                self.log,
                Level::Error,
                "slot {}: cannot start the audit log: {e}",
                slot.id
            ),
        }
    }
}
