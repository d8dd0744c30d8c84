//! Token set-up through the `cryptoki` crate, as Rust clients do it.

use cryptoki::context::Pkcs11;
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;

use crate::{SO_PIN, USER_PIN};

/// `s` as a `cryptoki` PIN.
pub fn pin(s: &str) -> AuthPin {
    AuthPin::new(s.into())
}

/// The spare slot (the last one; in a fresh process, the only one).
#[track_caller]
pub fn spare_slot(p: &Pkcs11) -> Slot {
    let slots = p.get_all_slots().expect("C_GetSlotList");
    assert!(!slots.is_empty(), "C_GetSlotList: no slot at all");
    *slots.last().unwrap()
}

/// Initialises the spare token as `label` with the test SO PIN and user PIN;
/// returns its slot. No session stays open.
pub fn ready_token(p: &Pkcs11, label: &str) -> Slot {
    let slot = spare_slot(p);
    p.init_token(slot, &pin(SO_PIN), label)
        .expect("C_InitToken");
    let s = p.open_rw_session(slot).expect("C_OpenSession RW");
    s.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    s.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    s.close().expect("C_CloseSession");
    slot
}

/// A R/W session on `slot` logged in as the user.
pub fn user_session(p: &Pkcs11, slot: Slot) -> Session {
    let s = p.open_rw_session(slot).expect("C_OpenSession RW");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login user");
    s
}

/// The slot of the token labelled `label`, as this process's module sees it.
#[track_caller]
pub fn slot_of(p: &Pkcs11, label: &str) -> Slot {
    p.get_all_slots()
        .expect("C_GetSlotList")
        .into_iter()
        .find(|s| p.get_token_info(*s).is_ok_and(|i| i.label() == label))
        .unwrap_or_else(|| panic!("no token {label:?}"))
}

/// A R/W session on the token labelled `label`, logged in as the user with
/// `user_pin`.
#[track_caller]
pub fn user(p: &Pkcs11, label: &str, user_pin: &str) -> Session {
    let s = p.open_rw_session(slot_of(p, label)).expect("C_OpenSession");
    s.login(UserType::User, Some(&pin(user_pin)))
        .expect("C_Login");
    s
}
