//! `ferrohsm delete-token`: removes a token and every object in it for good,
//! with its SO PIN. `C_InitToken` cannot do this (it re-initialises a token
//! in place), so the tool works on the token store directly, under its lock.

use ferrohsm_store::backup::{self, PinRole};
use ferrohsm_store::{AuditEvent, Store};

use crate::DeleteTokenArgs;
use crate::archive::{explain, find_token, open_store};
use crate::out::{self, padded};
use crate::p11::{Fail, Result};
use crate::pin::{self, Source};

/// `ferrohsm delete-token`. The SO PIN check counts as an SO login (a wrong
/// PIN moves the token towards its lockout). The token's audit log stays in
/// its directory as evidence, with a last line saying it was deleted; the
/// next token initialised in the slot sets it aside.
pub fn delete_token(a: &DeleteTokenArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    let label = padded(&token.label);
    let so = pin::existing(
        &format!("SO PIN for token {label:?} (slot {})", token.slot_id),
        Source::from_so(&a.so),
    )?;
    let (token, _key) = backup::open_with_pin(
        &store,
        token.slot_id,
        PinRole::So,
        so.as_bytes(),
        config.max_login_failures,
    )
    .map_err(|e| Fail::Msg(format!("token {label:?}: {}", explain(&e))))?;
    let r = store.delete_token(token.slot_id, &token.token_id);
    if store.audit_started(token.slot_id) {
        let mut e = AuditEvent::now(
            "ferrohsm delete-token",
            if r.is_ok() {
                "CKR_OK"
            } else {
                "CKR_DEVICE_ERROR"
            },
        );
        e.detail = Some(format!(
            "token {label:?} (serial {}) deleted with every object in it",
            padded(&token.serial)
        ));
        store
            .audit(token.slot_id, &[e])
            .map_err(|e| Fail::Msg(format!("writing the audit log: {e}")))?;
    }
    r.map_err(|e| Fail::Msg(format!("deleting token {label:?}: {e}")))?;
    out::stdout(&format!(
        "deleted token {label:?} (slot {}, serial {}) and every object in it; \
         its audit log stays in {}\n",
        token.slot_id,
        padded(&token.serial),
        store.audit_log(token.slot_id).dir().display()
    ))
}
