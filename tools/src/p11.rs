//! The module as the tool uses it: loading, finding a token by label, logging
//! in, and turning PKCS#11 errors into one line a person can act on.

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::{Slot, TokenInfo};
use cryptoki::types::AuthPin;

use crate::PinArgs;
use crate::pin;
use crate::select::{Candidate, TokenArgs};

/// Why a command failed.
#[derive(Debug)]
pub enum Fail {
    /// A one-line reason, printed as `ferrohsm: <reason>`; exit status 1.
    Msg(String),
    /// Exit with this status, printing nothing more (a child said it already).
    Exit(u8),
}

impl From<String> for Fail {
    fn from(m: String) -> Self {
        Fail::Msg(m)
    }
}

impl From<&str> for Fail {
    fn from(m: &str) -> Self {
        Fail::Msg(m.to_string())
    }
}

/// Result of a command.
pub type Result<T> = std::result::Result<T, Fail>;

/// `CKR_PIN_INCORRECT` from `PinIncorrect`: the spec's name of a return value.
pub fn ckr_name(rv: &RvError) -> String {
    match rv {
        RvError::VendorDefined(c) => return format!("CKR_VENDOR_DEFINED+{c:#x}"),
        RvError::UnknownErrorCode(c) => return format!("CKR {c:#x}"),
        _ => {}
    }
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for ch in camel.chars() {
        if ch.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(ch.to_ascii_uppercase());
    }
    out
}

/// What a return value means for someone using the tool.
fn reason(rv: &RvError) -> &'static str {
    use RvError::*;
    match rv {
        PinIncorrect => "wrong PIN",
        PinLocked => "PIN locked after too many wrong PINs",
        PinLenRange => "a PIN must be 4 to 64 bytes long",
        PinInvalid => "the PIN contains characters the token does not accept",
        UserPinNotInitialized => "the user PIN is not set",
        UserNotLoggedIn => "not logged in",
        TokenNotRecognized => "the token is not initialised",
        TokenNotPresent => "no token in the slot",
        SlotIdInvalid => "no such slot",
        SessionExists => "the token has open sessions (in this or another program)",
        DeviceError => "the token store failed (see the module log, FERROHSM_LOG)",
        DeviceMemory | HostMemory => "out of memory",
        AttributeValueInvalid => "the token refused an attribute value",
        AttributeReadOnly => "the token refused to set an attribute",
        AttributeSensitive => "the value is sensitive and never leaves the token",
        TemplateIncomplete | TemplateInconsistent => "the token refused the object template",
        KeySizeRange => "key size not supported",
        CurveNotSupported => "curve not supported",
        MechanismInvalid => "mechanism not supported",
        ActionProhibited => "the token does not allow this on that object",
        FunctionFailed => "the operation failed",
        FunctionNotSupported => "not supported by the module",
        GeneralError => "internal error in the module (see its log)",
        _ => "PKCS#11 call failed",
    }
}

/// Maps a `cryptoki` error to a one-line failure: `context: reason (CKR_...)`.
pub fn ck(context: impl std::fmt::Display) -> impl FnOnce(CkError) -> Fail {
    move |e| {
        Fail::Msg(match e {
            CkError::Pkcs11(rv, _) => format!("{context}: {} ({})", reason(&rv), ckr_name(&rv)),
            CkError::LibraryLoading(e) => format!("{context}: cannot load the module: {e}"),
            other => format!("{context}: {other}"),
        })
    }
}

/// The loaded and initialised module.
pub struct Hsm {
    /// The `cryptoki` context (finalised when dropped).
    pub p11: Pkcs11,
    /// Which file was loaded.
    pub module: PathBuf,
}

/// One slot as listed by the module.
pub struct SlotEntry {
    /// The slot.
    pub slot: Slot,
    /// Its token's information.
    pub info: TokenInfo,
}

impl Hsm {
    /// Finds (`ferrohsm_pkcs11::locate`), loads and initialises the module.
    pub fn load() -> Result<Hsm> {
        let module = ferrohsm_pkcs11::locate::module_path()
            .ok_or_else(ferrohsm_pkcs11::locate::not_found_message)?;
        let p11 = Pkcs11::new(&module).map_err(ck(format!("loading {}", module.display())))?;
        p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(ck(
                "C_Initialize (check FERROHSM_CONF / FERROHSM_DIR; FERROHSM_LOG=info:FILE says more)",
            ))?;
        Ok(Hsm { p11, module })
    }

    /// Every slot with its token information, in the module's order.
    pub fn slots(&self) -> Result<Vec<SlotEntry>> {
        let slots = self.p11.get_all_slots().map_err(ck("listing slots"))?;
        slots
            .into_iter()
            .map(|slot| {
                let info = self
                    .p11
                    .get_token_info(slot)
                    .map_err(ck(format!("reading token info of slot {}", slot.id())))?;
                Ok(SlotEntry { slot, info })
            })
            .collect()
    }

    /// The initialised token named by `sel` (label, slot, serial or URI).
    pub fn find_token(&self, sel: &TokenArgs) -> Result<SlotEntry> {
        let slots: Vec<SlotEntry> = self
            .slots()?
            .into_iter()
            .filter(|s| s.info.token_initialized())
            .collect();
        let candidates = slots.iter().map(|s| {
            (
                Candidate {
                    slot: s.slot.id(),
                    label: s.info.label(),
                    serial: s.info.serial_number(),
                    manufacturer: Some(s.info.manufacturer_id()),
                    model: Some(s.info.model()),
                },
                s.slot,
            )
        });
        let (_, slot) = sel.choose(candidates)?;
        slots
            .into_iter()
            .find(|s| s.slot == slot)
            .ok_or_else(|| Fail::Msg("the token vanished".into()))
    }

    /// Opens a session on the token `sel` names (read-write if `rw`).
    pub fn session(&self, sel: &TokenArgs, rw: bool) -> Result<Session> {
        let entry = self.find_token(sel)?;
        let open = if rw {
            self.p11.open_rw_session(entry.slot)
        } else {
            self.p11.open_ro_session(entry.slot)
        };
        open.map_err(ck(format!("opening a session on token {sel:?}")))
    }

    /// Opens a session on the token `sel` names and logs the user in, with
    /// the PIN from `pins` (or a prompt).
    pub fn user_session(&self, sel: &TokenArgs, rw: bool, pins: &PinArgs) -> Result<Session> {
        let session = self.session(sel, rw)?;
        let pin = pin::existing(
            &format!("user PIN for token {sel:?}"),
            pin::Source::from_user(pins),
        )?;
        session
            .login(UserType::User, Some(&auth(&pin)))
            .map_err(ck(format!("user login to token {sel:?}")))?;
        Ok(session)
    }
}

/// A `cryptoki` PIN from a PIN string.
pub fn auth(pin: &str) -> AuthPin {
    AuthPin::new(pin.into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn return_value_names() {
        assert_eq!(ckr_name(&RvError::PinIncorrect), "CKR_PIN_INCORRECT");
        assert_eq!(
            ckr_name(&RvError::CryptokiNotInitialized),
            "CKR_CRYPTOKI_NOT_INITIALIZED"
        );
        assert_eq!(ckr_name(&RvError::DeviceError), "CKR_DEVICE_ERROR");
        let f = ck("login")(CkError::Pkcs11(
            RvError::PinIncorrect,
            cryptoki::context::Function::Login,
        ));
        match f {
            Fail::Msg(m) => assert_eq!(m, "login: wrong PIN (CKR_PIN_INCORRECT)"),
            Fail::Exit(_) => panic!("wrong variant"),
        }
    }
}
