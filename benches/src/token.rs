//! Loading a PKCS#11 module by path and giving it a fresh, logged-in token,
//! the way a user would: `C_Initialize`, `C_InitToken`, SO login,
//! `C_InitPIN`, user login. Also the error type every benchmark row returns.

use std::fmt;
use std::path::{Path, PathBuf};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as P11Error, RvError};
use cryptoki::mechanism::MechanismType;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

/// The user PIN of every benchmark token.
pub const USER_PIN: &str = "bench-user-1234";
/// The security officer PIN of every benchmark token.
pub const SO_PIN: &str = "bench-so-5678";
/// The label given to every benchmark token.
pub const TOKEN_LABEL: &str = "ferrohsm-bench";

/// Why a row produced no number.
#[derive(Clone, Debug, PartialEq)]
pub enum BenchError {
    /// The module lacks what the row needs; the text completes
    /// "skipped: <module> …", e.g. "lacks CKM_AES_GCM".
    Skip(String),
    /// A wrong answer or an unexpected error: the run fails.
    Fail(String),
}

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BenchError::Skip(r) => write!(f, "skipped: {r}"),
            BenchError::Fail(r) => write!(f, "FAILED: {r}"),
        }
    }
}

/// Shorthand for results of benchmark code.
pub type BResult<T> = Result<T, BenchError>;

/// Turns a PKCS#11 error into a skip (the module does not support the
/// function or mechanism) or a failure (anything else).
impl From<P11Error> for BenchError {
    fn from(e: P11Error) -> BenchError {
        match &e {
            P11Error::Pkcs11(rv, func) => {
                let text = format!("returned {} from C_{func:?}", ckr_name(*rv));
                if matches!(
                    rv,
                    RvError::FunctionNotSupported | RvError::MechanismInvalid
                ) {
                    BenchError::Skip(text)
                } else {
                    BenchError::Fail(text)
                }
            }
            other => BenchError::Fail(format!("cryptoki error: {other}")),
        }
    }
}

/// The `CKR_*` name of a return value (`MechanismInvalid` → `CKR_MECHANISM_INVALID`).
pub fn ckr_name(rv: RvError) -> String {
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

/// Adds context to a failure (skips keep their text).
pub fn context<T>(r: BResult<T>, what: &str) -> BResult<T> {
    r.map_err(|e| match e {
        BenchError::Fail(m) => BenchError::Fail(format!("{what}: {m}")),
        skip => skip,
    })
}

/// Fails with `msg` unless `cond` holds: the check every round trip uses.
pub fn ensure(cond: bool, msg: impl FnOnce() -> String) -> BResult<()> {
    if cond {
        Ok(())
    } else {
        Err(BenchError::Fail(format!("wrong answer: {}", msg())))
    }
}

/// One loaded module with its fresh token, ready for benchmarks.
pub struct Target {
    /// Display name, "FerroHSM" or "SoftHSMv2".
    pub name: &'static str,
    /// Short key used in JSON, "ferrohsm" or "softhsm".
    pub key: &'static str,
    /// The shared library that was loaded.
    pub path: PathBuf,
    /// The loaded, initialised library.
    pub ctx: Pkcs11,
    /// The slot holding the benchmark token.
    pub slot: Slot,
    /// What `C_GetMechanismList` reported for that slot.
    pub mechanisms: Vec<MechanismType>,
    /// Library description and version from `C_GetInfo`.
    pub description: String,
}

impl Target {
    /// Loads `path`, initialises a fresh token on its first slot and returns
    /// the module with a read-write session logged in as the user. The
    /// environment (`FERROHSM_*`, `SOFTHSM2_CONF`) must already point at
    /// a scratch directory.
    pub fn open(name: &'static str, key: &'static str, path: &Path) -> BResult<(Target, Session)> {
        let ctx = Pkcs11::new(path)
            .map_err(|e| BenchError::Fail(format!("cannot load {}: {e}", path.display())))?;
        context(
            ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
                .map_err(Into::into),
            "C_Initialize",
        )?;
        let info = ctx.get_library_info().map_err(BenchError::from)?;
        let description = format!(
            "{} {} ({})",
            info.library_description().trim(),
            info.library_version(),
            info.manufacturer_id().trim()
        );
        let first = *context(
            ctx.get_slots_with_token().map_err(Into::into),
            "C_GetSlotList",
        )?
        .first()
        .ok_or_else(|| BenchError::Fail("no slot with a token".into()))?;
        let so_pin = AuthPin::new(SO_PIN.into());
        let user_pin = AuthPin::new(USER_PIN.into());
        context(
            ctx.init_token(first, &so_pin, TOKEN_LABEL)
                .map_err(Into::into),
            "C_InitToken",
        )?;
        // SoftHSMv2 moves a freshly initialised token to a new slot ID;
        // FerroHSM keeps it. Find it again by label either way.
        let slot = find_token(&ctx, first)?;
        let session = context(
            ctx.open_rw_session(slot).map_err(Into::into),
            "C_OpenSession",
        )?;
        context(
            session
                .login(UserType::So, Some(&so_pin))
                .map_err(Into::into),
            "SO C_Login",
        )?;
        context(session.init_pin(&user_pin).map_err(Into::into), "C_InitPIN")?;
        context(session.logout().map_err(Into::into), "SO C_Logout")?;
        context(
            session
                .login(UserType::User, Some(&user_pin))
                .map_err(Into::into),
            "user C_Login",
        )?;
        let mechanisms = context(
            ctx.get_mechanism_list(slot).map_err(Into::into),
            "C_GetMechanismList",
        )?;
        Ok((
            Target {
                name,
                key,
                path: path.to_path_buf(),
                ctx,
                slot,
                mechanisms,
                description,
            },
            session,
        ))
    }

    /// The first mechanism of `needed` the token does not list, as a skip.
    pub fn require(&self, needed: &[MechanismType]) -> BResult<()> {
        match needed.iter().find(|m| !self.mechanisms.contains(m)) {
            Some(m) => Err(BenchError::Skip(format!("lacks {m}"))),
            None => Ok(()),
        }
    }

    /// A new read-write session on the benchmark token (logged in, since
    /// login state is per application).
    pub fn session(&self) -> BResult<Session> {
        Ok(self.ctx.open_rw_session(self.slot)?)
    }
}

/// The slot whose token carries the benchmark label, preferring `hint`.
fn find_token(ctx: &Pkcs11, hint: Slot) -> BResult<Slot> {
    let slots = context(
        ctx.get_slots_with_initialized_token().map_err(Into::into),
        "C_GetSlotList",
    )?;
    let labelled: Vec<Slot> = slots
        .into_iter()
        .filter(|s| {
            ctx.get_token_info(*s)
                .is_ok_and(|t| t.label().trim() == TOKEN_LABEL)
        })
        .collect();
    if labelled.contains(&hint) {
        return Ok(hint);
    }
    labelled.first().copied().ok_or_else(|| {
        BenchError::Fail(format!(
            "after C_InitToken no initialised token is labelled {TOKEN_LABEL:?}"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ckr_names() {
        assert_eq!(ckr_name(RvError::MechanismInvalid), "CKR_MECHANISM_INVALID");
        assert_eq!(
            ckr_name(RvError::FunctionNotSupported),
            "CKR_FUNCTION_NOT_SUPPORTED"
        );
        assert_eq!(ckr_name(RvError::SignatureInvalid), "CKR_SIGNATURE_INVALID");
    }

    #[test]
    fn classification() {
        use cryptoki::context::Function;
        let skip: BenchError =
            P11Error::Pkcs11(RvError::MechanismInvalid, Function::EncryptInit).into();
        assert_eq!(
            skip,
            BenchError::Skip("returned CKR_MECHANISM_INVALID from C_EncryptInit".into())
        );
        let fail: BenchError = P11Error::Pkcs11(RvError::GeneralError, Function::Sign).into();
        assert!(matches!(fail, BenchError::Fail(_)));
    }
}
