//! `C_GetInfo`, `C_GetSlotList`, `C_GetSlotInfo`, `C_GetTokenInfo`,
//! `C_GetMechanismList`/`Info`: what the library, slots and tokens report.
#![forbid(unsafe_code)]

use cryptoki_sys::*;

use super::state::Module;
use crate::error::Result;
use crate::mechanism::{self};

/// `manufacturerID` of the library, slots and tokens.
pub const MANUFACTURER: &str = "FerroHSM project";

/// `libraryDescription`.
pub const LIBRARY_DESCRIPTION: &str = "FerroHSM software HSM";

/// `model` of tokens.
pub const MODEL: &str = "FerroHSM";

/// Shortest PIN accepted (the store's bound, which every PIN check shares).
pub const MIN_PIN_LEN: usize = ferrohsm_store::MIN_PIN_LEN;

/// Longest PIN accepted.
pub const MAX_PIN_LEN: usize = ferrohsm_store::MAX_PIN_LEN;

/// The Cryptoki version the module implements.
pub const CRYPTOKI_VERSION: CK_VERSION = CK_VERSION { major: 3, minor: 0 };

/// This library's version, from Cargo.
pub fn library_version() -> CK_VERSION {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u8>().unwrap_or(0));
    CK_VERSION {
        major: parts.next().unwrap_or(0),
        minor: parts.next().unwrap_or(0),
    }
}

/// Space-pads (or truncates) text to a fixed-width PKCS#11 field.
pub fn pad<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    let n = text.len().min(N);
    out[..n].copy_from_slice(&text[..n]);
    out
}

/// Current UTC time as `YYYYMMDDhhmmss00` for `CK_TOKEN_INFO.utcTime`.
pub(super) fn utc_time() -> [u8; 16] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = ferrohsm_store::time::civil_from_days(days);
    let text = format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    pad::<16>(text.as_bytes())
}

pub(super) fn pin_flags(
    failures: u32,
    max: u32,
    [low, final_try, locked]: [CK_FLAGS; 3],
) -> CK_FLAGS {
    if failures >= max {
        locked
    } else if failures + 1 == max {
        low | final_try
    } else if failures > 0 {
        low
    } else {
        0
    }
}

impl Module {
    /// `CK_INFO`.
    pub fn info(&self) -> CK_INFO {
        CK_INFO {
            cryptokiVersion: CRYPTOKI_VERSION,
            manufacturerID: pad(MANUFACTURER.as_bytes()),
            flags: 0,
            libraryDescription: pad(LIBRARY_DESCRIPTION.as_bytes()),
            libraryVersion: library_version(),
        }
    }

    /// All slot IDs: initialised tokens first, the spare last. Every slot has a
    /// token present, so the `tokenPresent` filter changes nothing. Tokens
    /// created by other processes since the last call appear here.
    pub fn slot_list(&self) -> Result<Vec<CK_SLOT_ID>> {
        self.adopt_tokens()?;
        Ok(self.slots.read().iter().map(|s| s.id).collect())
    }

    /// `CK_SLOT_INFO`.
    pub fn slot_info(&self, id: CK_SLOT_ID) -> Result<CK_SLOT_INFO> {
        self.slot(id)?;
        Ok(CK_SLOT_INFO {
            slotDescription: pad(format!("FerroHSM slot {id}").as_bytes()),
            manufacturerID: pad(MANUFACTURER.as_bytes()),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
        })
    }

    /// `CK_TOKEN_INFO`, with truthful flags and counters.
    pub fn token_info(&self, id: CK_SLOT_ID) -> Result<CK_TOKEN_INFO> {
        let slot = self.slot(id)?;
        self.refresh(&slot)?;
        let t = slot.token.read();
        let max = self.config.max_login_failures;
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_CLOCK_ON_TOKEN;
        let (label, serial) = match &t.record {
            Some(rec) => {
                flags |= CKF_TOKEN_INITIALIZED;
                if rec.user_pin.is_some() {
                    flags |= CKF_USER_PIN_INITIALIZED;
                }
                flags |= pin_flags(
                    rec.user_failures,
                    max,
                    [
                        CKF_USER_PIN_COUNT_LOW,
                        CKF_USER_PIN_FINAL_TRY,
                        CKF_USER_PIN_LOCKED,
                    ],
                );
                flags |= pin_flags(
                    rec.so_failures,
                    max,
                    [
                        CKF_SO_PIN_COUNT_LOW,
                        CKF_SO_PIN_FINAL_TRY,
                        CKF_SO_PIN_LOCKED,
                    ],
                );
                (rec.label, rec.serial)
            }
            None => (pad(b""), pad(b"")),
        };
        let max_sessions = self.config.max_sessions as CK_ULONG;
        Ok(CK_TOKEN_INFO {
            label,
            manufacturerID: pad(MANUFACTURER.as_bytes()),
            model: pad(MODEL.as_bytes()),
            serialNumber: serial,
            flags,
            ulMaxSessionCount: max_sessions,
            ulSessionCount: t.sessions as CK_ULONG,
            ulMaxRwSessionCount: max_sessions,
            ulRwSessionCount: t.rw_sessions as CK_ULONG,
            ulMaxPinLen: MAX_PIN_LEN as CK_ULONG,
            ulMinPinLen: MIN_PIN_LEN as CK_ULONG,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
            utcTime: utc_time(),
        })
    }

    /// Mechanisms of a slot: the whole table, less the legacy rows on a
    /// token whose key policy does not offer them (`legacy`).
    pub fn mechanism_list(&self, id: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
        let slot = self.slot(id)?;
        let legacy_too = super::legacy::offers_legacy(self.slot_policy(&slot));
        Ok(mechanism::MECHANISMS
            .iter()
            .filter(|m| legacy_too || !m.is_legacy())
            .map(|m| m.ty)
            .collect())
    }

    /// `CK_MECHANISM_INFO` of one mechanism.
    pub fn mechanism_info(
        &self,
        id: CK_SLOT_ID,
        ty: CK_MECHANISM_TYPE,
    ) -> Result<CK_MECHANISM_INFO> {
        let slot = self.slot(id)?;
        let legacy_too = super::legacy::offers_legacy(self.slot_policy(&slot));
        let row = mechanism::lookup(ty)?;
        if row.is_legacy() && !legacy_too {
            return Err(crate::error::Error::MechanismInvalid);
        }
        Ok(row.info(legacy_too))
    }
}
