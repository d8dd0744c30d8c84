//! The ONE gate to a token's storage key. Checking a PIN, counting and
//! persisting failures (lockout), unwrapping the storage key, upgrading the
//! PIN KDF and rotating the storage key are written here once; the module's
//! `C_Login`/`C_SetPIN`/`C_InitToken`, backups and the `ferrohsm` tool all
//! come through it, so a lockout rule cannot drift between copies.
#![forbid(unsafe_code)]

use crate::audit::AuditEvent;
use crate::record::{StoreError, TokenRecord};
use crate::seal::{AuditKey, KdfParams, PinWrap, SealError, StorageKey};
use crate::store::Store;

/// Whose PIN a token's storage-key wrap is under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PinRole {
    /// The security officer (`TokenRecord::so_pin`).
    So,
    /// The normal user (`TokenRecord::user_pin`).
    User,
}

/// Associated data binding a storage-key [`PinWrap`] to its token and role:
/// `"ferrohsm pin wrap v1/" || token_id || "/so"` (or `"/user"`). The one
/// definition: the module seals PIN wraps with it, and this gate opens them.
pub fn pin_wrap_aad(token_id: &[u8; 16], role: PinRole) -> Vec<u8> {
    let mut aad = b"ferrohsm pin wrap v1/".to_vec();
    aad.extend_from_slice(token_id);
    aad.extend_from_slice(match role {
        PinRole::So => b"/so",
        PinRole::User => b"/user",
    });
    aad
}

/// Why the gate did not open.
#[derive(Debug)]
pub enum AccessError {
    /// There is no token in the slot.
    NoToken,
    /// The user PIN was asked for, but the token has none yet (`C_InitPIN`).
    UserPinNotSet,
    /// The PIN was wrong; `failures` consecutive failures are now recorded.
    WrongPin {
        /// The role's failure count after this attempt.
        failures: u32,
    },
    /// The PIN is locked (before this attempt, or by it).
    PinLocked,
    /// The token was re-initialised by another process meanwhile.
    TokenChanged,
    /// The store failed.
    Store(StoreError),
    /// Opening or sealing failed for another reason (KDF parameters, RNG).
    Seal(SealError),
}

impl std::fmt::Display for AccessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AccessError::NoToken => write!(f, "no such token"),
            AccessError::UserPinNotSet => write!(f, "the token has no user PIN yet"),
            AccessError::WrongPin { failures } => {
                write!(f, "wrong PIN ({failures} consecutive)")
            }
            AccessError::PinLocked => write!(f, "the PIN is locked"),
            AccessError::TokenChanged => write!(f, "the token was re-initialised meanwhile"),
            AccessError::Store(e) => write!(f, "{e}"),
            AccessError::Seal(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for AccessError {}

impl From<StoreError> for AccessError {
    fn from(e: StoreError) -> Self {
        AccessError::Store(e)
    }
}

/// A PIN that opened the storage key.
pub struct Opened {
    /// The token record as stored after the check (counters updated).
    pub record: TokenRecord,
    /// Whether the check wrote the record (a failure counted or cleared), so a
    /// cache of it is stale.
    pub wrote: bool,
    /// The storage key.
    pub key: StorageKey,
}

/// The failure count of `role` in `r`.
pub fn failures(r: &TokenRecord, role: PinRole) -> u32 {
    match role {
        PinRole::So => r.so_failures,
        PinRole::User => r.user_failures,
    }
}

/// Checks `pin` for `role` on the token in `slot_id`, the way every PIN check
/// of FerroHSM works: refused at once when the role is locked; otherwise the
/// KDF runs (with no lock of the caller's held), then a wrong PIN adds one
/// failure and a right one clears them, durably, by a read-modify-write in the
/// store so that failures counted by other processes add up. A right PIN that
/// arrives after another process locked the role does not unlock it (only the
/// SO's `C_InitPIN` does). `seen` is the record the caller checked its own
/// preconditions against (read from the store when `None`); a
/// re-initialisation since is `TokenChanged`.
pub fn check_pin(
    store: &dyn Store,
    slot_id: u64,
    seen: Option<&TokenRecord>,
    role: PinRole,
    pin: &[u8],
    max_failures: u32,
) -> Result<Opened, AccessError> {
    let rec = match seen {
        Some(r) => r.clone(),
        None => store.token(slot_id)?.ok_or(AccessError::NoToken)?,
    };
    if failures(&rec, role) >= max_failures {
        return Err(AccessError::PinLocked);
    }
    let wrap = match role {
        PinRole::So => &rec.so_pin,
        PinRole::User => rec.user_pin.as_ref().ok_or(AccessError::UserPinNotSet)?,
    };
    let opened = wrap.open(pin, &pin_wrap_aad(&rec.token_id, role));
    let good = match &opened {
        Ok(_) => true,
        Err(SealError::BadPin) => false,
        Err(e) => return Err(AccessError::Seal(*e)),
    };
    let mut stored = rec.clone();
    let wrote = !good || failures(&rec, role) != 0;
    if wrote {
        let token_id = rec.token_id;
        stored = store.modify_token(slot_id, &mut |r: &mut TokenRecord| {
            if r.token_id != token_id {
                return;
            }
            let c = match role {
                PinRole::So => &mut r.so_failures,
                PinRole::User => &mut r.user_failures,
            };
            if *c < max_failures || !good {
                *c = if good { 0 } else { c.saturating_add(1) };
            }
        })?;
        if stored.token_id != token_id {
            return Err(AccessError::TokenChanged);
        }
    }
    let now = failures(&stored, role);
    match opened {
        Ok(_) if now >= max_failures => Err(AccessError::PinLocked),
        Ok(key) => Ok(Opened {
            record: stored,
            wrote,
            key,
        }),
        Err(_) => Err(AccessError::WrongPin { failures: now }),
    }
}

/// [`check_pin`] for the `ferrohsm` tool and backups, whose PIN checks are
/// logins too: records a "ferrohsm login" event in the token's audit log
/// (the module records its own `C_Login` events).
pub fn tool_login(
    store: &dyn Store,
    slot_id: u64,
    role: PinRole,
    pin: &[u8],
    max_failures: u32,
) -> Result<(TokenRecord, StorageKey), AccessError> {
    let r = check_pin(store, slot_id, None, role, pin, max_failures);
    let outcome = match &r {
        Ok(_) => "CKR_OK",
        Err(AccessError::WrongPin { .. }) => "CKR_PIN_INCORRECT",
        Err(AccessError::PinLocked) => "CKR_PIN_LOCKED",
        Err(_) => "CKR_GENERAL_ERROR",
    };
    if !matches!(r, Err(AccessError::NoToken)) {
        let mut e = AuditEvent::now("ferrohsm login", outcome);
        e.user = Some(
            match role {
                PinRole::So => "so",
                PinRole::User => "user",
            }
            .into(),
        );
        // A failure to record is not a reason to refuse the PIN: the counter
        // above is what locks.
        let _ = store.audit(slot_id, &[e]);
    }
    r.map(|o| (o.record, o.key))
}

/// Re-wraps the storage key under `pin` with the `kdf` cost when the stored
/// wrap of `role` is weaker (after a successful check). Returns the record as
/// stored when it changed, `None` when nothing needed doing.
pub fn upgrade_kdf(
    store: &dyn Store,
    slot_id: u64,
    seen: &TokenRecord,
    role: PinRole,
    pin: &[u8],
    key: &StorageKey,
    kdf: KdfParams,
) -> Result<Option<TokenRecord>, AccessError> {
    let weaker = match role {
        PinRole::So => Some(&seen.so_pin),
        PinRole::User => seen.user_pin.as_ref(),
    }
    .is_some_and(|w| w.kdf.weaker_than(&kdf));
    if !weaker {
        return Ok(None);
    }
    let new = PinWrap::seal(pin, key, kdf, &pin_wrap_aad(&seen.token_id, role))
        .map_err(AccessError::Seal)?;
    let token_id = seen.token_id;
    let stored = store.modify_token(slot_id, &mut |r: &mut TokenRecord| {
        if r.token_id != token_id {
            return;
        }
        match role {
            PinRole::So => r.so_pin = new.clone(),
            PinRole::User => r.user_pin = Some(new.clone()),
        }
    })?;
    if stored.token_id != token_id {
        return Err(AccessError::TokenChanged);
    }
    Ok(Some(stored))
}

/// The slow re-sealing step of a rotation, handed to its runner.
pub type ReSeal<'a> = &'a mut dyn FnMut() -> Result<TokenRecord, StoreError>;

/// What a storage-key rotation did.
#[derive(Debug)]
pub struct Rotation {
    /// Records re-sealed under the new key.
    pub records: usize,
}

/// Why a rotation failed.
#[derive(Debug)]
pub enum RotateError {
    /// A PIN check failed (`role` says which PIN).
    Access(PinRole, AccessError),
    /// The user and SO PINs open different keys: the token is damaged.
    KeysDiffer,
    /// The token record has an audit root that the storage key does not open.
    AuditRootDamaged,
    /// The store failed during the rotation; the old key stays in force.
    Store(StoreError),
    /// Sealing under the new key failed.
    Seal(SealError),
}

impl std::fmt::Display for RotateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RotateError::Access(PinRole::So, e) => write!(f, "SO PIN: {e}"),
            RotateError::Access(PinRole::User, e) => write!(f, "user PIN: {e}"),
            RotateError::KeysDiffer => {
                write!(
                    f,
                    "the user and SO PINs open different keys (damaged token)"
                )
            }
            RotateError::AuditRootDamaged => {
                write!(
                    f,
                    "the audit root does not open with the storage key (damaged)"
                )
            }
            RotateError::Store(e) => write!(f, "rotation failed: {e}"),
            RotateError::Seal(e) => write!(f, "sealing under the new key: {e}"),
        }
    }
}

impl std::error::Error for RotateError {}

/// Rotates the storage key of the token in `slot_id`: both PINs checked
/// (counted, through [`tool_login`]; the user PIN only when one is set), a
/// new random key, every record, the audit root and both PIN wraps re-sealed
/// in one atomic store step (`Store::rekey`), with audit events before the
/// commit and after it. `run` runs the slow re-sealing step (the tool shows a
/// progress spinner around it).
pub fn rotate_storage_key(
    store: &dyn Store,
    slot_id: u64,
    so_pin: &[u8],
    user_pin: Option<&[u8]>,
    kdf: KdfParams,
    max_failures: u32,
    run: &mut dyn FnMut(ReSeal<'_>) -> Result<TokenRecord, StoreError>,
) -> Result<Rotation, RotateError> {
    let (token, old) = tool_login(store, slot_id, PinRole::So, so_pin, max_failures)
        .map_err(|e| RotateError::Access(PinRole::So, e))?;
    let user_pin = match (&token.user_pin, user_pin) {
        (None, _) => None,
        (Some(_), None) => {
            return Err(RotateError::Access(
                PinRole::User,
                AccessError::WrongPin {
                    failures: token.user_failures,
                },
            ));
        }
        (Some(_), Some(p)) => {
            let (_, k) = tool_login(store, slot_id, PinRole::User, p, max_failures)
                .map_err(|e| RotateError::Access(PinRole::User, e))?;
            if !same_key(&k, &old) {
                return Err(RotateError::KeysDiffer);
            }
            Some(p)
        }
    };
    let root = match &token.audit_root {
        Some(sealed) => Some(
            AuditKey::open(sealed, &old, &token.token_id)
                .map_err(|_| RotateError::AuditRootDamaged)?,
        ),
        None => None,
    };
    let new = StorageKey::generate().map_err(RotateError::Seal)?;
    let wrap = |pin: &[u8], role| {
        PinWrap::seal(pin, &new, kdf, &pin_wrap_aad(&token.token_id, role))
            .map_err(RotateError::Seal)
    };
    let so_wrap = wrap(so_pin, PinRole::So)?;
    let user_wrap = user_pin.map(|p| wrap(p, PinRole::User)).transpose()?;
    let sealed_root = root
        .as_ref()
        .map(|r| r.seal(&new, &token.token_id))
        .transpose()
        .map_err(RotateError::Seal)?;
    // Recorded before the commit too, so a rotation killed between its
    // commit and its outcome line still left a trace.
    let event = |result: &str, detail: String| {
        let mut e = AuditEvent::now("ferrohsm rotate-storage-key", result);
        e.user = Some("so".into());
        e.detail = Some(detail);
        let _ = store.audit(slot_id, &[e]);
    };
    event("CKR_OK", "storage key rotation starting".into());
    let token_id = token.token_id;
    let mut changed = false;
    let rotated = run(&mut || {
        store.rekey(slot_id, &old, &new, &mut |r: &mut TokenRecord| {
            if r.token_id != token_id {
                return false;
            }
            r.so_pin = so_wrap.clone();
            if let Some(w) = &user_wrap {
                r.user_pin = Some(w.clone());
            }
            if sealed_root.is_some() {
                r.audit_root = sealed_root.clone();
            }
            changed = true;
            true
        })
    });
    let records = store.objects(slot_id, Some(&new)).map(|o| o.len());
    match (&rotated, changed, &records) {
        (Ok(_), true, Ok(n)) => {
            event(
                "CKR_OK",
                format!("storage key rotated; {n} record(s) re-sealed"),
            );
            Ok(Rotation { records: *n })
        }
        _ => {
            event(
                "CKR_DEVICE_ERROR",
                "storage key rotation failed; the old key stays in force".into(),
            );
            match rotated {
                Err(e) => Err(RotateError::Store(e)),
                Ok(_) if !changed => {
                    Err(RotateError::Access(PinRole::So, AccessError::TokenChanged))
                }
                Ok(_) => {
                    Err(RotateError::Store(records.err().unwrap_or(StoreError::Io(
                        "re-sealed records unreadable".into(),
                    ))))
                }
            }
        }
    }
}

/// True when two storage keys are the same, compared without an early exit.
fn same_key(a: &StorageKey, b: &StorageKey) -> bool {
    use subtle::ConstantTimeEq;
    a.bytes().ct_eq(b.bytes()).into()
}
