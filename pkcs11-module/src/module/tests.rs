//! State-machine tests with `Module` as a plain value over a memory store.

use super::*;
use std::sync::Arc;

use cryptoki_sys::*;
use ferrohsm_store::{KeyPolicy, StorageKey, Store};

use super::info::utc_time;
use crate::config::Config;
use crate::error::Error;
use crate::mechanism::{Dir, MechanismArg};
use crate::object::policy::{self};
use crate::object::policy::{RawAttr, Reading};
use crate::session::OutBuf;
use ferrohsm_store::MemoryStore;

const SO: &[u8] = b"so-secret";
const USER: &[u8] = b"user-secret";

fn module() -> Module {
    Module::new(Config::for_tests(), Arc::new(MemoryStore::new())).unwrap()
}

fn label(s: &str) -> [u8; 32] {
    pad(s.as_bytes())
}

/// A module with one initialised token (slot 0) whose user PIN is set.
fn ready() -> Module {
    let m = module();
    m.init_token(0, SO, &label("t")).unwrap();
    let h = m
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    m.login(h, CKU_SO, SO).unwrap();
    m.init_pin(h, USER).unwrap();
    m.close_session(h).unwrap();
    m
}

fn rw(m: &Module) -> CK_SESSION_HANDLE {
    m.open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap()
}

fn ro(m: &Module) -> CK_SESSION_HANDLE {
    m.open_session(0, CKF_SERIAL_SESSION).unwrap()
}

fn data_object(token: bool, private: bool, label: &[u8]) -> Vec<RawAttr> {
    vec![
        RawAttr::ulong(CKA_CLASS, CKO_DATA),
        RawAttr::bool(CKA_TOKEN, token),
        RawAttr::bool(CKA_PRIVATE, private),
        RawAttr::new(CKA_LABEL, label),
        RawAttr::new(CKA_VALUE, b"payload"),
    ]
}

#[test]
fn fresh_module_has_only_the_spare_slot() {
    let m = module();
    assert_eq!(m.slot_list().unwrap(), vec![0]);
    let info = m.token_info(0).unwrap();
    assert_eq!(info.flags & CKF_TOKEN_INITIALIZED, 0);
    assert_eq!(info.label, [b' '; 32]);
    assert_eq!(
        m.open_session(0, CKF_SERIAL_SESSION),
        Err(Error::TokenNotRecognized)
    );
    assert_eq!(m.slot_info(7).err(), Some(Error::SlotIdInvalid));
}

#[test]
fn init_token_makes_a_new_spare_and_keeps_the_slot_id() {
    let m = module();
    m.init_token(0, SO, &label("first")).unwrap();
    assert_eq!(m.slot_list().unwrap(), vec![0, 1]);
    let info = m.token_info(0).unwrap();
    assert_ne!(info.flags & CKF_TOKEN_INITIALIZED, 0);
    assert_eq!(info.flags & CKF_USER_PIN_INITIALIZED, 0);
    assert_eq!(&info.label[..5], b"first");
    assert!(info.label[5..].iter().all(|&b| b == b' '));
    assert!(info.serialNumber.iter().all(|b| b.is_ascii_hexdigit()));
    assert_eq!(info.ulMinPinLen, 4);
    assert_eq!(info.ulMaxPinLen, 64);
    assert_eq!(info.ulTotalPublicMemory, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(
        m.init_token(1, b"abc", &label("short")),
        Err(Error::PinLenRange)
    );
    assert_eq!(
        m.init_token(1, &[b'x'; 65], &label("long")),
        Err(Error::PinLenRange)
    );
}

#[test]
fn reinit_needs_the_so_pin_wipes_objects_and_refuses_with_sessions_open() {
    let m = ready();
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    m.create_object(h, &data_object(true, true, b"keep?"))
        .unwrap();
    assert_eq!(
        m.init_token(0, SO, &label("again")),
        Err(Error::SessionExists)
    );
    m.close_session(h).unwrap();
    assert_eq!(
        m.init_token(0, b"wrong-so", &label("again")),
        Err(Error::PinIncorrect)
    );
    m.init_token(0, SO, &label("again")).unwrap();
    assert_eq!(
        m.slot_list().unwrap(),
        vec![0, 1],
        "re-init does not add a spare"
    );
    let info = m.token_info(0).unwrap();
    assert_eq!(&info.label[..5], b"again");
    assert_eq!(
        info.flags & CKF_USER_PIN_INITIALIZED,
        0,
        "user PIN is reset"
    );
    let h = ro(&m);
    m.find_init(h, &[]).unwrap();
    assert!(m.find(h, 10).unwrap().is_empty(), "objects are wiped");
}

#[test]
fn login_state_machine() {
    let m = ready();
    let a = rw(&m);
    let b = ro(&m);
    assert_eq!(m.session_info(a).unwrap().state, CKS_RW_PUBLIC_SESSION);
    assert_eq!(m.session_info(b).unwrap().state, CKS_RO_PUBLIC_SESSION);
    assert_eq!(m.login(a, CKU_SO, SO), Err(Error::SessionReadOnlyExists));
    assert_eq!(m.login(a, 99, USER), Err(Error::UserTypeInvalid));
    m.login(a, CKU_USER, USER).unwrap();
    // Login is per application: both sessions are now user sessions.
    assert_eq!(m.session_info(a).unwrap().state, CKS_RW_USER_FUNCTIONS);
    assert_eq!(m.session_info(b).unwrap().state, CKS_RO_USER_FUNCTIONS);
    assert_eq!(m.login(b, CKU_USER, USER), Err(Error::UserAlreadyLoggedIn));
    assert_eq!(
        m.login(b, CKU_SO, SO),
        Err(Error::UserAnotherAlreadyLoggedIn)
    );
    m.logout(b).unwrap();
    assert_eq!(m.logout(b), Err(Error::UserNotLoggedIn));
    assert_eq!(m.session_info(a).unwrap().state, CKS_RW_PUBLIC_SESSION);
    m.close_session(b).unwrap();
    m.login(a, CKU_SO, SO).unwrap();
    assert_eq!(m.session_info(a).unwrap().state, CKS_RW_SO_FUNCTIONS);
    assert_eq!(
        m.open_session(0, CKF_SERIAL_SESSION),
        Err(Error::SessionReadWriteSoExists)
    );
    // Closing the last session logs out.
    m.close_session(a).unwrap();
    let c = ro(&m);
    assert_eq!(m.session_info(c).unwrap().state, CKS_RO_PUBLIC_SESSION);
}

#[test]
fn user_pin_not_initialized_and_session_flags() {
    let m = module();
    m.init_token(0, SO, &label("t")).unwrap();
    let h = rw(&m);
    assert_eq!(
        m.login(h, CKU_USER, USER),
        Err(Error::UserPinNotInitialized)
    );
    assert_eq!(
        m.open_session(0, CKF_RW_SESSION),
        Err(Error::SessionParallelNotSupported)
    );
    assert_eq!(
        m.init_pin(h, USER),
        Err(Error::UserNotLoggedIn),
        "InitPIN needs the SO"
    );
    let info = m.session_info(h).unwrap();
    assert_eq!(info.flags, CKF_SERIAL_SESSION | CKF_RW_SESSION);
    assert_eq!(
        m.session_info(12345).err(),
        Some(Error::SessionHandleInvalid)
    );
}

#[test]
fn failed_logins_lock_the_pin_with_flags_on_the_way() {
    let m = ready(); // max_login_failures = 3 in the test config
    let h = rw(&m);
    let flags = |m: &Module| m.token_info(0).unwrap().flags;
    assert_eq!(m.login(h, CKU_USER, b"nope1"), Err(Error::PinIncorrect));
    assert_ne!(flags(&m) & CKF_USER_PIN_COUNT_LOW, 0);
    assert_eq!(flags(&m) & CKF_USER_PIN_FINAL_TRY, 0);
    assert_eq!(m.login(h, CKU_USER, b"nope2"), Err(Error::PinIncorrect));
    assert_ne!(flags(&m) & CKF_USER_PIN_FINAL_TRY, 0);
    assert_eq!(m.login(h, CKU_USER, b"nope3"), Err(Error::PinIncorrect));
    assert_ne!(flags(&m) & CKF_USER_PIN_LOCKED, 0);
    // Locked: even the right PIN is refused, without running the KDF.
    assert_eq!(m.login(h, CKU_USER, USER), Err(Error::PinLocked));
    // The SO unlocks by setting a new user PIN.
    m.login(h, CKU_SO, SO).unwrap();
    m.init_pin(h, b"fresh-pin").unwrap();
    m.logout(h).unwrap();
    assert_eq!(
        flags(&m) & (CKF_USER_PIN_LOCKED | CKF_USER_PIN_COUNT_LOW),
        0
    );
    m.login(h, CKU_USER, b"fresh-pin").unwrap();
}

#[test]
fn a_success_resets_the_failure_count() {
    let m = ready();
    let h = rw(&m);
    assert_eq!(m.login(h, CKU_USER, b"bad-pin"), Err(Error::PinIncorrect));
    m.login(h, CKU_USER, USER).unwrap();
    assert_eq!(m.token_info(0).unwrap().flags & CKF_USER_PIN_COUNT_LOW, 0);
}

#[test]
fn set_pin_changes_the_right_pin() {
    let m = ready();
    let r = ro(&m);
    assert_eq!(m.set_pin(r, USER, b"new-user"), Err(Error::SessionReadOnly));
    m.close_session(r).unwrap();
    let h = rw(&m);
    // Public R/W session: changes the user PIN.
    assert_eq!(
        m.set_pin(h, b"wrong", b"new-user"),
        Err(Error::PinIncorrect)
    );
    assert_eq!(m.set_pin(h, USER, b"abc"), Err(Error::PinLenRange));
    m.set_pin(h, USER, b"new-user").unwrap();
    assert_eq!(m.login(h, CKU_USER, USER), Err(Error::PinIncorrect));
    m.login(h, CKU_USER, b"new-user").unwrap();
    m.logout(h).unwrap();
    m.login(h, CKU_SO, SO).unwrap();
    m.set_pin(h, SO, b"new-so-pin").unwrap();
    m.logout(h).unwrap();
    m.login(h, CKU_SO, b"new-so-pin").unwrap();
}

#[test]
fn weaker_kdf_wraps_are_upgraded_at_login() {
    let store = Arc::new(MemoryStore::new());
    let m = Module::new(Config::for_tests(), store.clone()).unwrap();
    m.init_token(0, SO, &label("t")).unwrap();
    drop(m);
    let mut stronger = Config::for_tests();
    stronger.kdf.memory_kib = 128;
    let m = Module::new(stronger, store.clone()).unwrap();
    let h = rw(&m);
    m.login(h, CKU_SO, SO).unwrap();
    let rec = &store.tokens().unwrap()[0];
    assert_eq!(rec.so_pin.kdf.memory_kib, 128);
    m.logout(h).unwrap();
    m.login(h, CKU_SO, SO).unwrap();
}

#[test]
fn private_objects_need_the_user_and_vanish_at_logout() {
    let m = ready();
    let h = rw(&m);
    assert_eq!(
        m.create_object(h, &data_object(false, true, b"p")),
        Err(Error::UserNotLoggedIn)
    );
    let public = m
        .create_object(h, &data_object(true, false, b"pub"))
        .unwrap();
    m.login(h, CKU_USER, USER).unwrap();
    let private_tok = m
        .create_object(h, &data_object(true, true, b"priv"))
        .unwrap();
    let private_ses = m
        .create_object(h, &data_object(false, true, b"ses"))
        .unwrap();
    m.find_init(h, &[]).unwrap();
    assert_eq!(
        m.find(h, 10).unwrap(),
        vec![public, private_tok, private_ses]
    );
    m.find_final(h).unwrap();
    m.logout(h).unwrap();
    assert_eq!(
        m.get_attributes(h, private_tok, &[CKA_LABEL]).err(),
        Some(Error::ObjectHandleInvalid)
    );
    m.find_init(h, &[]).unwrap();
    assert_eq!(m.find(h, 10).unwrap(), vec![public]);
    m.find_final(h).unwrap();
    // The private token object comes back at the next login (new handle); the
    // private session object was destroyed.
    m.login(h, CKU_USER, USER).unwrap();
    m.find_init(h, &[RawAttr::bool(CKA_PRIVATE, true)]).unwrap();
    let again = m.find(h, 10).unwrap();
    assert_eq!(again.len(), 1);
    assert_ne!(
        again[0], private_tok,
        "old handles to private objects stay invalid"
    );
    let r = m.get_attributes(h, again[0], &[CKA_LABEL]).unwrap();
    assert_eq!(
        r[0],
        Reading::Value(zeroize::Zeroizing::new(b"priv".to_vec()))
    );
}

#[test]
fn read_only_sessions_cannot_touch_token_objects() {
    let m = ready();
    let w = rw(&m);
    let tok = m.create_object(w, &data_object(true, false, b"t")).unwrap();
    let r = ro(&m);
    assert_eq!(
        m.create_object(r, &data_object(true, false, b"x")),
        Err(Error::SessionReadOnly)
    );
    m.create_object(r, &data_object(false, false, b"session object ok"))
        .unwrap();
    assert_eq!(m.destroy_object(r, tok), Err(Error::SessionReadOnly));
    assert_eq!(
        m.set_attributes(r, tok, &[RawAttr::new(CKA_LABEL, b"y")]),
        Err(Error::SessionReadOnly)
    );
    m.destroy_object(w, tok).unwrap();
    assert_eq!(m.destroy_object(w, tok), Err(Error::ObjectHandleInvalid));
}

#[test]
fn session_objects_die_with_their_session_but_are_shared_meanwhile() {
    let m = ready();
    let a = rw(&m);
    let b = rw(&m);
    let obj = m
        .create_object(a, &data_object(false, false, b"s"))
        .unwrap();
    assert!(
        m.get_attributes(b, obj, &[CKA_LABEL]).is_ok(),
        "visible to the application's other sessions"
    );
    m.close_session(a).unwrap();
    assert_eq!(
        m.get_attributes(b, obj, &[CKA_LABEL]).err(),
        Some(Error::ObjectHandleInvalid)
    );
}

#[test]
fn copy_set_and_policy_flags() {
    let m = ready();
    let h = rw(&m);
    let mut t = data_object(false, false, b"orig");
    t.push(RawAttr::bool(CKA_COPYABLE, false));
    let no_copy = m.create_object(h, &t).unwrap();
    assert_eq!(m.copy_object(h, no_copy, &[]), Err(Error::ActionProhibited));
    let mut t = data_object(false, false, b"fixed");
    t.push(RawAttr::bool(CKA_MODIFIABLE, false));
    let fixed = m.create_object(h, &t).unwrap();
    assert_eq!(
        m.set_attributes(h, fixed, &[RawAttr::new(CKA_LABEL, b"x")]),
        Err(Error::ActionProhibited)
    );
    let mut t = data_object(false, false, b"keep");
    t.push(RawAttr::bool(CKA_DESTROYABLE, false));
    let keep = m.create_object(h, &t).unwrap();
    assert_eq!(m.destroy_object(h, keep), Err(Error::ActionProhibited));
    let copy = m
        .copy_object(
            h,
            fixed,
            &[
                RawAttr::new(CKA_LABEL, b"copy"),
                RawAttr::bool(CKA_TOKEN, true),
            ],
        )
        .unwrap();
    let r = m
        .get_attributes(h, copy, &[CKA_LABEL, CKA_TOKEN, CKA_UNIQUE_ID])
        .unwrap();
    assert_eq!(
        r[0],
        Reading::Value(zeroize::Zeroizing::new(b"copy".to_vec()))
    );
    assert_eq!(r[1], Reading::Value(zeroize::Zeroizing::new(vec![1])));
    let orig_id = m.get_attributes(h, fixed, &[CKA_UNIQUE_ID]).unwrap();
    assert_ne!(r[2], orig_id[0], "a copy gets its own CKA_UNIQUE_ID");
}

#[test]
fn hsm_keys_never_reveal_their_value() {
    let m = ready();
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    let key = vec![
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, CKK_AES),
        RawAttr::new(CKA_VALUE, &[0x42; 32]),
        RawAttr::new(CKA_LABEL, b"aes"),
    ];
    let k = m.create_object(h, &key).unwrap();
    let r = m
        .get_attributes(
            h,
            k,
            &[CKA_VALUE, CKA_VALUE_LEN, CKA_SENSITIVE, CKA_MODULUS],
        )
        .unwrap();
    assert_eq!(r[0], Reading::Sensitive);
    assert_eq!(
        r[1],
        Reading::Value(zeroize::Zeroizing::new(32u64.to_ne_bytes().to_vec()))
    );
    assert_eq!(r[2], Reading::Value(zeroize::Zeroizing::new(vec![1])));
    assert_eq!(r[3], Reading::Invalid);
    assert_eq!(
        m.set_attributes(h, k, &[RawAttr::bool(CKA_SENSITIVE, false)]),
        Err(Error::AttributeReadOnly)
    );
    assert_eq!(
        m.copy_object(h, k, &[RawAttr::bool(CKA_EXTRACTABLE, true)]),
        Err(Error::AttributeReadOnly)
    );
    m.digest_init(
        h,
        &MechanismArg {
            ty: CKM_SHA256,
            param: crate::mechanism::Param::None,
        },
    )
    .unwrap();
    assert_eq!(m.digest_key(h, k), Err(Error::KeyIndigestible));
    let mut weak = key.clone();
    weak.push(RawAttr::bool(CKA_SENSITIVE, false));
    assert_eq!(m.create_object(h, &weak), Err(Error::AttributeValueInvalid));
    assert!(
        m.log
            .lines()
            .iter()
            .any(|l| l.contains("key policy is 'hsm'")),
        "the refusal says why"
    );
    assert!(
        !m.log
            .lines()
            .iter()
            .any(|l| l.contains("42, 42") || l.contains("4242")),
        "no key bytes in the log"
    );
}

fn sha256() -> MechanismArg {
    MechanismArg {
        ty: CKM_SHA256,
        param: crate::mechanism::Param::None,
    }
}

#[test]
fn digest_size_query_small_buffer_and_single_part() {
    let m = ready();
    let h = ro(&m);
    assert_eq!(
        m.digest(h, b"abc", &mut OutBuf::new(None)),
        Err(Error::OperationNotInitialized)
    );
    m.digest_init(h, &sha256()).unwrap();
    assert_eq!(m.digest_init(h, &sha256()), Err(Error::OperationActive));
    let mut q = OutBuf::new(None);
    m.digest(h, b"abc", &mut q).unwrap();
    assert_eq!(q.len(), 32);
    let mut small = [0u8; 16];
    let mut s = OutBuf::new(Some(&mut small));
    assert_eq!(m.digest(h, b"abc", &mut s), Err(Error::BufferTooSmall));
    assert_eq!(s.len(), 32);
    let mut buf = [0u8; 40];
    let mut o = OutBuf::new(Some(&mut buf));
    m.digest(h, b"abc", &mut o).unwrap();
    assert_eq!(o.len(), 32);
    assert_eq!(buf[..4], [0xba, 0x78, 0x16, 0xbf]);
    assert_eq!(
        m.digest(h, b"abc", &mut OutBuf::new(None)),
        Err(Error::OperationNotInitialized),
        "ended"
    );
}

#[test]
fn digest_multipart_and_key() {
    let m = ready();
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    // A non-sensitive secret key on a spec-policy token digests; hsm refuses.
    let t = vec![
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        RawAttr::new(CKA_VALUE, b"bc"),
        RawAttr::bool(CKA_SENSITIVE, true),
    ];
    let k = m.create_object(h, &t).unwrap();
    m.digest_init(h, &sha256()).unwrap();
    m.digest_update(h, b"a").unwrap();
    assert_eq!(m.digest_key(h, k), Err(Error::KeyIndigestible));
    // That error ended the operation.
    assert_eq!(
        m.digest_update(h, b"a"),
        Err(Error::OperationNotInitialized)
    );
    m.digest_init(h, &sha256()).unwrap();
    m.digest_update(h, b"a").unwrap();
    m.digest_update(h, b"bc").unwrap();
    let mut buf = [0u8; 32];
    let mut o = OutBuf::new(Some(&mut buf));
    m.digest_final(h, &mut o).unwrap();
    assert_eq!(buf[..4], [0xba, 0x78, 0x16, 0xbf]);
    // Cancelling.
    m.digest_init(h, &sha256()).unwrap();
    m.session_cancel(h, CKF_DIGEST).unwrap();
    assert_eq!(
        m.digest_update(h, b"a"),
        Err(Error::OperationNotInitialized)
    );
}

#[test]
fn spec_policy_key_digests() {
    let mut cfg = Config::for_tests();
    cfg.default_policy = KeyPolicy::Spec;
    let m = Module::new(cfg, Arc::new(MemoryStore::new())).unwrap();
    m.init_token(0, SO, &label("spec")).unwrap();
    let h = rw(&m);
    let t = vec![
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        RawAttr::bool(CKA_PRIVATE, false),
        RawAttr::new(CKA_VALUE, b"bc"),
    ];
    let k = m.create_object(h, &t).unwrap();
    m.digest_init(h, &sha256()).unwrap();
    m.digest_update(h, b"a").unwrap();
    m.digest_key(h, k).unwrap();
    let mut buf = [0u8; 32];
    m.digest_final(h, &mut OutBuf::new(Some(&mut buf))).unwrap();
    assert_eq!(
        buf[..4],
        [0xba, 0x78, 0x16, 0xbf],
        "sha256(\"a\" || key \"bc\")"
    );
}

#[test]
fn find_is_per_session_and_snapshots() {
    let m = ready();
    let a = rw(&m);
    let b = rw(&m);
    for i in 0..5u8 {
        m.create_object(a, &data_object(false, false, &[b'L', i]))
            .unwrap();
    }
    m.find_init(a, &[RawAttr::new(CKA_LABEL, &[b'L', 3])])
        .unwrap();
    m.find_init(b, &[RawAttr::ulong(CKA_CLASS, CKO_DATA)])
        .unwrap();
    assert_eq!(m.find_init(a, &[]), Err(Error::OperationActive));
    assert_eq!(m.find(a, 10).unwrap().len(), 1);
    assert_eq!(m.find(b, 2).unwrap().len(), 2);
    assert_eq!(m.find(b, 10).unwrap().len(), 3);
    assert!(m.find(b, 10).unwrap().is_empty());
    m.find_final(a).unwrap();
    assert_eq!(m.find_final(a), Err(Error::OperationNotInitialized));
    // Closing a session with a find still active is fine.
    m.close_session(b).unwrap();
}

#[test]
fn random_and_seed() {
    let m = ready();
    let h = ro(&m);
    let (mut x, mut y) = ([0u8; 32], [0u8; 32]);
    m.generate_random(h, &mut x).unwrap();
    m.generate_random(h, &mut y).unwrap();
    assert_ne!(x, y);
    assert_eq!(
        m.seed_random(h),
        Ok(()),
        "C_SeedRandom accepts and ignores a seed"
    );
    assert_eq!(m.seed_random(999), Err(Error::SessionHandleInvalid));
    assert_eq!(
        m.generate_random(999, &mut x),
        Err(Error::SessionHandleInvalid)
    );
}

#[test]
fn mechanisms_come_from_the_table() {
    let m = module();
    let list = m.mechanism_list(0).unwrap();
    // An hsm token (the test default) lists every row but the legacy ones.
    let modern = crate::mechanism::MECHANISMS
        .iter()
        .filter(|r| !r.is_legacy())
        .count();
    assert_eq!(list.len(), modern);
    let info = m.mechanism_info(0, CKM_SHA256).unwrap();
    assert_ne!(info.flags & CKF_DIGEST, 0);
    assert_ne!(info.flags & CKF_HW, 0);
    assert_eq!(
        m.mechanism_info(0, CKM_DSA).err(),
        Some(Error::MechanismInvalid)
    );
    let gcm = m.mechanism_info(0, CKM_AES_GCM).unwrap();
    assert_eq!((gcm.ulMinKeySize, gcm.ulMaxKeySize), (16, 32));
    assert_ne!(gcm.flags & CKF_ENCRYPT, 0);
}

#[test]
fn session_limit_and_close_all() {
    let m = ready(); // max 16 sessions in the test config
    let hs: Vec<_> = (0..16).map(|_| ro(&m)).collect();
    assert_eq!(
        m.open_session(0, CKF_SERIAL_SESSION),
        Err(Error::SessionCount)
    );
    assert_eq!(m.token_info(0).unwrap().ulSessionCount, 16);
    m.close_all_sessions(0).unwrap();
    assert_eq!(m.token_info(0).unwrap().ulSessionCount, 0);
    assert_eq!(
        m.session_info(hs[0]).err(),
        Some(Error::SessionHandleInvalid)
    );
}

#[test]
fn utc_time_is_well_formed() {
    let t = utc_time();
    assert!(t[..14].iter().all(u8::is_ascii_digit));
    assert_eq!(&t[14..], b"00");
    assert!(t.starts_with(b"20"));
}

#[test]
fn many_threads_share_one_session_safely() {
    let m = Arc::new(ready());
    let h = ro(&m);
    let threads: Vec<_> = (0..10)
        .map(|_| {
            let m = m.clone();
            std::thread::spawn(move || {
                for _ in 0..200 {
                    let mut buf = [0u8; 32];
                    m.generate_random(h, &mut buf).unwrap();
                    // Digest init may race with another thread's: either it
                    // starts or it reports the active operation; never corrupts.
                    match m.digest_init(h, &sha256()) {
                        Ok(()) => {
                            let mut out = [0u8; 32];
                            let _ = m.digest(h, b"abc", &mut OutBuf::new(Some(&mut out)));
                        }
                        Err(e) => assert_eq!(e, Error::OperationActive),
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
}

/// Handles of the objects `template` finds in session `h`.
fn find_all(m: &Module, h: CK_SESSION_HANDLE, template: &[RawAttr]) -> Vec<CK_OBJECT_HANDLE> {
    m.find_init(h, template).unwrap();
    let found = m.find(h, 1000).unwrap();
    m.find_final(h).unwrap();
    found
}

/// Two modules over one store behave as two processes over one data directory.
fn two_processes() -> (Module, Module) {
    let store: Arc<dyn Store> = Arc::new(MemoryStore::new());
    let a = Module::new(Config::for_tests(), store.clone()).unwrap();
    a.init_token(0, SO, &label("shared")).unwrap();
    let h = rw(&a);
    a.login(h, CKU_SO, SO).unwrap();
    a.init_pin(h, USER).unwrap();
    a.close_session(h).unwrap();
    let b = Module::new(Config::for_tests(), store).unwrap();
    (a, b)
}

#[test]
fn another_process_sees_created_changed_and_destroyed_objects() {
    let (a, b) = two_processes();
    let ha = rw(&a);
    let hb = rw(&b);
    a.login(ha, CKU_USER, USER).unwrap();
    b.login(hb, CKU_USER, USER).unwrap();
    let by_label = [RawAttr::new(CKA_LABEL, b"from-a")];
    assert!(find_all(&b, hb, &by_label).is_empty());
    let oa = a
        .create_object(ha, &data_object(true, true, b"from-a"))
        .unwrap();
    let found = find_all(&b, hb, &by_label);
    assert_eq!(found.len(), 1, "b sees a's new private token object");
    let ob = found[0];
    // A's own cache stayed valid across its write: same handle, no reload.
    assert_eq!(find_all(&a, ha, &by_label), vec![oa]);
    a.set_attributes(ha, oa, &[RawAttr::new(CKA_LABEL, b"renamed")])
        .unwrap();
    assert!(find_all(&b, hb, &by_label).is_empty());
    assert_eq!(
        find_all(&b, hb, &[RawAttr::new(CKA_LABEL, b"renamed")]),
        vec![ob],
        "a changed object keeps its handle"
    );
    b.destroy_object(hb, ob).unwrap();
    assert!(find_all(&a, ha, &[RawAttr::new(CKA_LABEL, b"renamed")]).is_empty());
    assert_eq!(
        a.get_attributes(ha, oa, &[CKA_LABEL]).err(),
        Some(Error::ObjectHandleInvalid)
    );
}

#[test]
fn failed_logins_of_two_processes_add_up() {
    let (a, b) = two_processes();
    let max = Config::for_tests().max_login_failures;
    let ha = ro(&a);
    let hb = ro(&b);
    for i in 0..max {
        let (m, h) = if i % 2 == 0 { (&a, ha) } else { (&b, hb) };
        assert_eq!(m.login(h, CKU_USER, b"wrong-pin"), Err(Error::PinIncorrect));
    }
    for (m, h) in [(&a, ha), (&b, hb)] {
        assert_ne!(m.token_info(0).unwrap().flags & CKF_USER_PIN_LOCKED, 0);
        assert_eq!(m.login(h, CKU_USER, USER), Err(Error::PinLocked));
    }
}

#[test]
fn a_token_made_by_another_process_gets_a_slot_and_the_spare_moves_up() {
    let (a, b) = two_processes();
    assert_eq!(a.slot_list().unwrap(), vec![0, 1]);
    assert_eq!(b.slot_list().unwrap(), vec![0, 1]);
    a.init_token(1, SO, &label("second")).unwrap();
    assert_eq!(b.slot_list().unwrap(), vec![0, 1, 2]);
    let info = b.token_info(1).unwrap();
    assert_eq!(info.label, label("second"));
    // b's stale spare was slot 1: C_InitToken there now needs that token's SO PIN.
    assert_eq!(
        b.init_token(1, b"other-so-pin", &label("clobber")),
        Err(Error::PinIncorrect)
    );
    assert_eq!(b.token_info(1).unwrap().label, label("second"));
}

#[test]
fn configured_slot_count_is_kept_with_a_spare_on_top() {
    let config = Config {
        slots: 3,
        ..Config::for_tests()
    };
    let m = Module::new(config, Arc::new(MemoryStore::new())).unwrap();
    assert_eq!(m.slot_list().unwrap(), vec![0, 1, 2]);
    m.init_token(2, SO, &label("top")).unwrap();
    assert_eq!(m.slot_list().unwrap(), vec![0, 1, 2, 3]);
    m.init_token(0, SO, &label("bottom")).unwrap();
    assert_eq!(m.slot_list().unwrap(), vec![0, 1, 2, 3]);
    assert_eq!(m.token_info(1).unwrap().flags & CKF_TOKEN_INITIALIZED, 0);
}

fn mech(ty: CK_MECHANISM_TYPE) -> MechanismArg {
    MechanismArg {
        ty,
        param: crate::mechanism::Param::None,
    }
}

fn sign_verify(
    m: &Module,
    h: CK_SESSION_HANDLE,
    ty: CK_MECHANISM_TYPE,
    private: CK_OBJECT_HANDLE,
    public: CK_OBJECT_HANDLE,
    data: &[u8],
) -> Vec<u8> {
    m.sign_init(h, &mech(ty), private, false).unwrap();
    let mut sig = vec![0u8; 1024];
    let mut out = OutBuf::new(Some(&mut sig[..]));
    m.sign(h, data, &mut out).unwrap();
    let n = out.len();
    sig.truncate(n);
    m.sign_init(h, &mech(ty), public, true).unwrap();
    m.verify(h, data, &sig).unwrap();
    let mut bad = sig.clone();
    bad[n / 2] ^= 1;
    m.sign_init(h, &mech(ty), public, true).unwrap();
    assert_eq!(m.verify(h, data, &bad), Err(Error::SignatureInvalid));
    sig
}

#[test]
fn ec_key_pairs_sign_verify_and_derive() {
    let m = ready();
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    let public = [RawAttr::new(
        CKA_EC_PARAMS,
        crate::mechanism::ec::P256_PARAMS,
    )];
    let private = [RawAttr::bool(CKA_DERIVE, true)];
    let (pk, sk) = m
        .generate_key_pair(h, &mech(CKM_EC_KEY_PAIR_GEN), &public, &private)
        .unwrap();
    let sig = sign_verify(&m, h, CKM_ECDSA_SHA256, sk, pk, b"message");
    assert_eq!(sig.len(), 64);
    sign_verify(&m, h, CKM_ECDSA, sk, pk, &[7; 32]);
    // The private value never comes out; the public point does, as DER.
    let r = m.get_attributes(h, sk, &[CKA_VALUE, CKA_EC_POINT]).unwrap();
    assert_eq!(r[0], Reading::Sensitive);
    let r = m.get_attributes(h, pk, &[CKA_EC_POINT]).unwrap();
    let Reading::Value(point) = &r[0] else {
        panic!("no point: {r:?}")
    };
    assert_eq!(&point[..3], &[0x04, 65, 0x04]);
    // Unknown curve.
    let k1 = [RawAttr::new(
        CKA_EC_PARAMS,
        &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a],
    )];
    assert_eq!(
        m.generate_key_pair(h, &mech(CKM_EC_KEY_PAIR_GEN), &k1, &private)
            .err(),
        Some(Error::CurveNotSupported)
    );
    // ECDH with our own public point: a generic secret, sensitive under hsm.
    let param = crate::mechanism::Param::Ecdh {
        kdf: CKD_NULL,
        shared: vec![],
        public: point.to_vec(),
    };
    let t = [
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        RawAttr::bool(CKA_TOKEN, false),
    ];
    let d = m
        .derive_key(
            h,
            &MechanismArg {
                ty: CKM_ECDH1_DERIVE,
                param,
            },
            sk,
            &t,
        )
        .unwrap();
    let r = m
        .get_attributes(h, d, &[CKA_VALUE_LEN, CKA_ALWAYS_SENSITIVE, CKA_LOCAL])
        .unwrap();
    assert_eq!(
        r[0],
        Reading::Value(zeroize::Zeroizing::new(32u64.to_ne_bytes().to_vec()))
    );
    assert_eq!(
        r[1],
        Reading::Value(zeroize::Zeroizing::new(vec![1])),
        "the base key was always sensitive"
    );
    assert_eq!(
        r[2],
        Reading::Value(zeroize::Zeroizing::new(vec![0])),
        "derived keys are not local"
    );
}

#[test]
fn rsa_key_pair_sign_and_encrypt() {
    let m = ready();
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    let public = [RawAttr::ulong(CKA_MODULUS_BITS, 2048)];
    let (pk, sk) = m
        .generate_key_pair(h, &mech(CKM_RSA_PKCS_KEY_PAIR_GEN), &public, &[])
        .unwrap();
    let sig = sign_verify(&m, h, CKM_SHA256_RSA_PKCS, sk, pk, b"message");
    assert_eq!(sig.len(), 256);
    let r = m
        .get_attributes(h, pk, &[CKA_PUBLIC_EXPONENT, CKA_MODULUS_BITS])
        .unwrap();
    assert_eq!(r[0], Reading::Value(zeroize::Zeroizing::new(vec![1, 0, 1])));
    let r = m
        .get_attributes(h, sk, &[CKA_PRIVATE_EXPONENT, CKA_PRIME_1])
        .unwrap();
    assert_eq!(r, vec![Reading::Sensitive, Reading::Sensitive]);
    // PKCS#1 v1.5 encryption round trip; a wrong ciphertext decrypts to a
    // synthetic message with CKR_OK (implicit rejection), never an error.
    m.cipher_init(h, &mech(CKM_RSA_PKCS), pk, Dir::Encrypt)
        .unwrap();
    let mut ct = vec![0u8; 256];
    let mut out = OutBuf::new(Some(&mut ct[..]));
    m.cipher(h, Dir::Encrypt, b"secret", &mut out).unwrap();
    let decrypt = |c: &[u8]| {
        m.cipher_init(h, &mech(CKM_RSA_PKCS), sk, Dir::Decrypt)
            .unwrap();
        let mut pt = vec![0u8; 256];
        let mut out = OutBuf::new(Some(&mut pt[..]));
        m.cipher(h, Dir::Decrypt, c, &mut out).unwrap();
        let n = out.len();
        pt.truncate(n);
        pt
    };
    assert_eq!(decrypt(&ct), b"secret");
    let mut bad = ct.clone();
    bad[100] ^= 0x40;
    assert_ne!(decrypt(&bad), b"secret");
    // Size limits.
    assert_eq!(
        m.generate_key_pair(
            h,
            &mech(CKM_RSA_PKCS_KEY_PAIR_GEN),
            &[RawAttr::ulong(CKA_MODULUS_BITS, 1024)],
            &[]
        )
        .err(),
        Some(Error::KeySizeRange)
    );
}

/// A ready module whose token uses the `spec` key policy.
fn ready_spec() -> (Module, CK_SESSION_HANDLE) {
    let config = Config {
        default_policy: KeyPolicy::Spec,
        ..Config::for_tests()
    };
    let m = Module::new(config, Arc::new(MemoryStore::new())).unwrap();
    m.init_token(0, SO, &label("spec")).unwrap();
    let h = rw(&m);
    m.login(h, CKU_SO, SO).unwrap();
    m.init_pin(h, USER).unwrap();
    m.logout(h).unwrap();
    m.login(h, CKU_USER, USER).unwrap();
    (m, h)
}

fn secret(kt: CK_KEY_TYPE, value: &[u8], extra: &[RawAttr]) -> Vec<RawAttr> {
    let mut t = vec![
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, kt),
        RawAttr::new(CKA_VALUE, value),
        RawAttr::bool(CKA_DERIVE, true),
    ];
    t.extend_from_slice(extra);
    t
}

fn value_of(m: &Module, h: CK_SESSION_HANDLE, o: CK_OBJECT_HANDLE) -> Reading {
    m.get_attributes(h, o, &[CKA_VALUE]).unwrap().remove(0)
}

fn bytes(v: &[u8]) -> Reading {
    Reading::Value(zeroize::Zeroizing::new(v.to_vec()))
}

#[test]
fn hkdf_rfc5869_case_1() {
    use hex_literal::hex;
    let (m, h) = ready_spec();
    let ikm = m
        .create_object(h, &secret(CKK_GENERIC_SECRET, &[0x0b; 22], &[]))
        .unwrap();
    let param = crate::mechanism::Param::Hkdf {
        extract: true,
        expand: true,
        prf: CKM_SHA256,
        salt_type: CKF_HKDF_SALT_DATA,
        salt: hex!("000102030405060708090a0b0c").to_vec(),
        salt_key: 0,
        info: hex!("f0f1f2f3f4f5f6f7f8f9").to_vec(),
    };
    let t = [
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        RawAttr::ulong(CKA_VALUE_LEN, 42),
    ];
    let arg = MechanismArg {
        ty: CKM_HKDF_DERIVE,
        param,
    };
    let okm = m.derive_key(h, &arg, ikm, &t).unwrap();
    assert_eq!(
        value_of(&m, h, okm),
        bytes(&hex!(
            "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
        ))
    );
    // The same as a data object.
    let arg = MechanismArg {
        ty: CKM_HKDF_DATA,
        param: arg.param,
    };
    let d = m
        .derive_key(
            h,
            &arg,
            ikm,
            &[
                RawAttr::ulong(CKA_CLASS, CKO_DATA),
                RawAttr::ulong(CKA_VALUE_LEN, 42),
            ],
        )
        .unwrap();
    assert_eq!(value_of(&m, h, d), value_of(&m, h, okm));
}

#[test]
fn derived_keys_stay_as_protected_as_their_bases() {
    let (m, h) = ready_spec();
    let sensitive = m
        .create_object(
            h,
            &secret(
                CKK_GENERIC_SECRET,
                &[1; 16],
                &[RawAttr::bool(CKA_SENSITIVE, true)],
            ),
        )
        .unwrap();
    let mine = m
        .create_object(h, &secret(CKK_GENERIC_SECRET, &[2; 16], &[]))
        .unwrap();
    let concat = |extra: &[RawAttr]| {
        let mut t = vec![
            RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
            RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
        ];
        t.extend_from_slice(extra);
        m.derive_key(
            h,
            &MechanismArg {
                ty: CKM_CONCATENATE_BASE_AND_KEY,
                param: crate::mechanism::Param::Raw(sensitive.to_ne_bytes().to_vec()),
            },
            mine,
            &t,
        )
    };
    // Asking for a readable copy of a sensitive key's bytes is refused...
    assert_eq!(
        concat(&[RawAttr::bool(CKA_SENSITIVE, false)]),
        Err(Error::TemplateInconsistent)
    );
    // ...and by default the result is sensitive.
    let d = concat(&[]).unwrap();
    assert_eq!(value_of(&m, h, d), Reading::Sensitive);
    let plain = m
        .derive_key(
            h,
            &MechanismArg {
                ty: CKM_CONCATENATE_BASE_AND_KEY,
                param: crate::mechanism::Param::Raw(mine.to_ne_bytes().to_vec()),
            },
            mine,
            &[
                RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
                RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
            ],
        )
        .unwrap();
    let mut both = vec![2u8; 16];
    both.extend([2u8; 16]);
    assert_eq!(value_of(&m, h, plain), bytes(&both));
}

#[test]
fn wrap_and_unwrap_secret_and_private_keys() {
    let (m, h) = ready_spec();
    let kek = m.create_object(h, &secret(CKK_AES, &[9; 32], &[])).unwrap();
    let aes = m.create_object(h, &secret(CKK_AES, &[5; 16], &[])).unwrap();
    let kwp = mech(CKM_AES_KEY_WRAP_KWP);
    let wrap = |key| {
        let mut q = OutBuf::new(None);
        m.wrap_key(h, &kwp, kek, key, &mut q).unwrap();
        let mut buf = vec![0u8; q.len()];
        let mut out = OutBuf::new(Some(&mut buf[..]));
        m.wrap_key(h, &kwp, kek, key, &mut out).unwrap();
        let n = out.len();
        buf.truncate(n);
        buf
    };
    let w = wrap(aes);
    assert_eq!(w.len(), 24);
    let u = m
        .unwrap_key(
            h,
            &kwp,
            kek,
            &w,
            &[
                RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
                RawAttr::ulong(CKA_KEY_TYPE, CKK_AES),
                RawAttr::bool(CKA_EXTRACTABLE, true),
            ],
        )
        .unwrap();
    assert_eq!(value_of(&m, h, u), bytes(&[5; 16]));
    let r = m.get_attributes(h, u, &[CKA_LOCAL]).unwrap();
    assert_eq!(r[0], bytes(&[0]), "unwrapped keys are not local");
    // A tampered blob.
    let mut bad = w.clone();
    bad[3] ^= 1;
    assert_eq!(
        m.unwrap_key(
            h,
            &kwp,
            kek,
            &bad,
            &[
                RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
                RawAttr::ulong(CKA_KEY_TYPE, CKK_AES)
            ]
        ),
        Err(Error::WrappedKeyInvalid)
    );
    // An EC private key travels as PKCS#8 and still signs.
    let (pk, sk) = m
        .generate_key_pair(
            h,
            &mech(CKM_EC_KEY_PAIR_GEN),
            &[RawAttr::new(
                CKA_EC_PARAMS,
                crate::mechanism::ec::P384_PARAMS,
            )],
            &[RawAttr::bool(CKA_EXTRACTABLE, true)],
        )
        .unwrap();
    let w = wrap(sk);
    let sk2 = m
        .unwrap_key(
            h,
            &kwp,
            kek,
            &w,
            &[
                RawAttr::ulong(CKA_CLASS, CKO_PRIVATE_KEY),
                RawAttr::ulong(CKA_KEY_TYPE, CKK_EC),
            ],
        )
        .unwrap();
    sign_verify(&m, h, CKM_ECDSA_SHA384, sk2, pk, b"moved");
    // The unwrapped key is unextractable by default: it cannot be wrapped again.
    let mut q = OutBuf::new(None);
    assert_eq!(
        m.wrap_key(h, &kwp, kek, sk2, &mut q),
        Err(Error::KeyUnextractable)
    );
}

#[test]
fn wrap_and_unwrap_templates_are_honoured() {
    let (m, h) = ready_spec();
    let only_aes = policy::encode_template(&[RawAttr::ulong(CKA_KEY_TYPE, CKK_AES)]);
    let force_sensitive = policy::encode_template(&[RawAttr::bool(CKA_SENSITIVE, true)]);
    let kek = m
        .create_object(
            h,
            &secret(
                CKK_AES,
                &[9; 32],
                &[
                    RawAttr::new(CKA_WRAP_TEMPLATE, &only_aes),
                    RawAttr::new(CKA_UNWRAP_TEMPLATE, &force_sensitive),
                ],
            ),
        )
        .unwrap();
    // Read back as the same list.
    let r = m.get_attributes(h, kek, &[CKA_WRAP_TEMPLATE]).unwrap();
    assert_eq!(r[0], bytes(&only_aes));
    let aes = m.create_object(h, &secret(CKK_AES, &[5; 16], &[])).unwrap();
    let generic = m
        .create_object(h, &secret(CKK_GENERIC_SECRET, &[5; 16], &[]))
        .unwrap();
    let kwp = mech(CKM_AES_KEY_WRAP_KWP);
    let mut buf = [0u8; 64];
    let mut out = OutBuf::new(Some(&mut buf[..]));
    assert_eq!(
        m.wrap_key(h, &kwp, kek, generic, &mut out),
        Err(Error::KeyNotWrappable)
    );
    let mut out = OutBuf::new(Some(&mut buf[..]));
    m.wrap_key(h, &kwp, kek, aes, &mut out).unwrap();
    let n = out.len();
    let wrapped = buf[..n].to_vec();
    let base = [
        RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
        RawAttr::ulong(CKA_KEY_TYPE, CKK_AES),
    ];
    let u = m.unwrap_key(h, &kwp, kek, &wrapped, &base).unwrap();
    assert_eq!(
        value_of(&m, h, u),
        Reading::Sensitive,
        "UNWRAP_TEMPLATE applied"
    );
    let mut readable = base.to_vec();
    readable.push(RawAttr::bool(CKA_SENSITIVE, false));
    assert_eq!(
        m.unwrap_key(h, &kwp, kek, &wrapped, &readable),
        Err(Error::TemplateInconsistent)
    );
}

#[test]
fn find_by_label_and_id_follows_renames_and_destroys() {
    let m = ready();
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    let mut handles = Vec::new();
    for i in 0..50u8 {
        let t = data_object(true, i % 2 == 0, &[b'n', i]);
        handles.push(m.create_object(h, &t).unwrap());
    }
    for i in 0..10u8 {
        let t = secret(
            CKK_AES,
            &[i; 16],
            &[
                RawAttr::new(CKA_ID, &[i % 5]),
                RawAttr::bool(CKA_TOKEN, false),
            ],
        );
        m.create_object(h, &t).unwrap();
    }
    let label = |l: &[u8]| vec![RawAttr::new(CKA_LABEL, l)];
    assert_eq!(find_all(&m, h, &label(&[b'n', 7])), vec![handles[7]]);
    assert_eq!(find_all(&m, h, &[RawAttr::new(CKA_ID, &[3])]).len(), 2);
    // Label plus another attribute: the index narrows, the query decides.
    let mut both = label(&[b'n', 8]);
    both.push(RawAttr::bool(CKA_PRIVATE, false));
    assert!(find_all(&m, h, &both).is_empty(), "object 8 is private");
    m.set_attributes(h, handles[7], &label(b"renamed")).unwrap();
    assert!(find_all(&m, h, &label(&[b'n', 7])).is_empty());
    assert_eq!(find_all(&m, h, &label(b"renamed")), vec![handles[7]]);
    m.destroy_object(h, handles[7]).unwrap();
    assert!(find_all(&m, h, &label(b"renamed")).is_empty());
    // Private objects leave the results at logout.
    assert_eq!(find_all(&m, h, &label(&[b'n', 8])).len(), 1);
    m.logout(h).unwrap();
    assert!(find_all(&m, h, &label(&[b'n', 8])).is_empty());
    assert_eq!(find_all(&m, h, &label(&[b'n', 9])).len(), 1);
}

/// A module over a memory store whose audit events the test can read.
fn audited(config: Config) -> (Module, Arc<MemoryStore>) {
    let store = Arc::new(MemoryStore::new());
    let m = Module::new(config, store.clone()).unwrap();
    m.init_token(0, SO, &label("t")).unwrap();
    let h = rw(&m);
    m.login(h, CKU_SO, SO).unwrap();
    m.init_pin(h, USER).unwrap();
    m.close_session(h).unwrap();
    (m, store)
}

fn aes_token_key(m: &Module, h: CK_SESSION_HANDLE, name: &[u8]) -> CK_OBJECT_HANDLE {
    m.generate_key(
        h,
        &mech(CKM_AES_KEY_GEN),
        &[
            RawAttr::bool(CKA_TOKEN, true),
            RawAttr::ulong(CKA_VALUE_LEN, 32),
            RawAttr::new(CKA_LABEL, name),
            RawAttr::new(CKA_ID, b"\x01\x02"),
        ],
    )
    .unwrap()
}

#[test]
fn audit_events_name_the_call_the_object_and_the_outcome() {
    let (m, store) = audited(Config::for_tests());
    let h = rw(&m);
    assert_eq!(m.login(h, CKU_USER, b"wrong-pin"), Err(Error::PinIncorrect));
    m.login(h, CKU_USER, USER).unwrap();
    let k = aes_token_key(&m, h, b"audited key");
    // Key use is counted, not written per call.
    for _ in 0..3 {
        m.cipher_init(h, &mech(CKM_AES_ECB), k, Dir::Encrypt)
            .unwrap();
        let mut out = [0u8; 16];
        m.cipher(
            h,
            Dir::Encrypt,
            &[0u8; 16],
            &mut OutBuf::new(Some(&mut out)),
        )
        .unwrap();
    }
    assert_eq!(
        m.get_attributes(h, k, &[CKA_VALUE]).unwrap(),
        vec![Reading::Sensitive]
    );
    m.audit.flush();
    let events = store.audit_events(0);
    let by = |f: &str| {
        events
            .iter()
            .filter(|e| e.function == f)
            .collect::<Vec<_>>()
    };
    let init = by("C_InitToken");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].result, "CKR_OK");
    let logins = by("C_Login");
    let user_logins: Vec<_> = logins
        .iter()
        .filter(|e| e.user.as_deref() == Some("user"))
        .collect();
    assert_eq!(user_logins.len(), 2);
    assert_eq!(user_logins[0].result, "CKR_PIN_INCORRECT");
    assert!(
        user_logins[0]
            .detail
            .as_deref()
            .unwrap()
            .contains("1 consecutive")
    );
    assert_eq!(user_logins[1].result, "CKR_OK");
    assert_eq!(user_logins[1].session, Some(h));
    assert_eq!(by("C_InitPIN")[0].result, "CKR_OK");
    let generated = by("C_GenerateKey");
    assert_eq!(generated.len(), 1);
    let o = generated[0].object.as_ref().unwrap();
    assert_eq!(o.handle, Some(k));
    assert_eq!(o.label.as_deref(), Some("audited key"));
    assert_eq!(o.id.as_deref(), Some("0102"));
    assert_eq!(o.key_type.as_deref(), Some("CKK_AES"));
    assert_eq!(generated[0].mechanism.as_deref(), Some("CKM_AES_KEY_GEN"));
    assert_eq!(generated[0].user.as_deref(), Some("user"));
    let uses = by("C_EncryptInit");
    assert_eq!(uses.len(), 1, "one summary for three uses: {uses:?}");
    assert_eq!(uses[0].count, Some(3));
    assert_eq!(uses[0].mechanism.as_deref(), Some("CKM_AES_ECB"));
    let refused = by("C_GetAttributeValue");
    assert_eq!(refused[0].result, "CKR_ATTRIBUTE_SENSITIVE");
    assert!(refused[0].detail.as_deref().unwrap().contains("CKA_VALUE"));
}

#[test]
fn lockout_is_recorded() {
    let (m, store) = audited(Config::for_tests());
    let h = rw(&m);
    for _ in 0..3 {
        let _ = m.login(h, CKU_USER, b"wrong-pin");
    }
    assert_eq!(m.login(h, CKU_USER, USER), Err(Error::PinLocked));
    let events = store.audit_events(0);
    let logins: Vec<_> = events.iter().filter(|e| e.function == "C_Login").collect();
    let last_wrong = logins[logins.len() - 2];
    assert!(last_wrong.detail.as_deref().unwrap().contains("lockout"));
    assert_eq!(logins[logins.len() - 1].result, "CKR_PIN_LOCKED");
}

#[test]
fn destroyed_keys_wait_hidden_then_are_purged() {
    let mut config = Config::for_tests();
    config.deletion_wait = std::time::Duration::from_secs(1);
    let (m, store) = audited(config);
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    let k = aes_token_key(&m, h, b"doomed");
    let records = || {
        store
            .objects(0, Some(&StorageKey::generate().unwrap()))
            .unwrap()
    };
    assert_eq!(records().len(), 1);
    m.destroy_object(h, k).unwrap();
    // Unusable, unreadable, unfindable at once; the label is free again.
    assert_eq!(
        m.cipher_init(h, &mech(CKM_AES_ECB), k, Dir::Encrypt),
        Err(Error::KeyHandleInvalid)
    );
    assert_eq!(
        m.get_attributes(h, k, &[CKA_LABEL]),
        Err(Error::ObjectHandleInvalid)
    );
    assert!(find_all(&m, h, &[RawAttr::new(CKA_LABEL, b"doomed")]).is_empty());
    let again = aes_token_key(&m, h, b"doomed");
    assert_eq!(
        find_all(&m, h, &[RawAttr::new(CKA_LABEL, b"doomed")]),
        vec![again]
    );
    // Still in the store, scheduled; a new login does not bring it back.
    assert_eq!(records().len(), 2);
    m.logout(h).unwrap();
    m.login(h, CKU_USER, USER).unwrap();
    assert_eq!(
        find_all(&m, h, &[RawAttr::new(CKA_LABEL, b"doomed")]).len(),
        1
    );
    assert_eq!(records().len(), 2);
    let destroyed = store
        .audit_events(0)
        .into_iter()
        .find(|e| e.function == "C_DestroyObject")
        .unwrap();
    assert!(destroyed.detail.unwrap().contains("deletion scheduled for"));
    // After the period, the next load purges it for good.
    std::thread::sleep(std::time::Duration::from_millis(2100));
    m.logout(h).unwrap();
    m.login(h, CKU_USER, USER).unwrap();
    assert_eq!(records().len(), 1);
    assert!(store.audit_events(0).iter().any(|e| e.function == "purge"));
}

#[test]
fn the_next_open_purges_without_a_login() {
    let mut config = Config::for_tests();
    config.deletion_wait = std::time::Duration::from_secs(1);
    let (m, store) = audited(config.clone());
    let h = rw(&m);
    m.login(h, CKU_USER, USER).unwrap();
    let k = aes_token_key(&m, h, b"doomed");
    m.destroy_object(h, k).unwrap();
    drop(m);
    let records = || {
        store
            .objects(0, Some(&StorageKey::generate().unwrap()))
            .unwrap()
    };
    // Still within the period: a new process keeps it.
    let again = Module::new(config.clone(), store.clone()).unwrap();
    assert_eq!(records().len(), 1);
    drop(again);
    std::thread::sleep(std::time::Duration::from_millis(2100));
    let _later = Module::new(config, store.clone()).unwrap();
    assert!(
        records().is_empty(),
        "purged at C_Initialize, nobody logged in"
    );
    // Named by its unique id, which its destroy event carries beside the label.
    let events = store.audit_events(0);
    let find = |f: &str| events.iter().find(|e| e.function == f).unwrap();
    let destroyed = find("C_DestroyObject").object.clone().unwrap();
    assert_eq!(destroyed.label.as_deref(), Some("doomed"));
    let purged = find("purge").object.clone().unwrap();
    assert_eq!(purged.label, None, "no key: no label");
    assert!(purged.unique_id.is_some());
    assert_eq!(purged.unique_id, destroyed.unique_id);
}

#[test]
fn spec_tokens_and_a_zero_wait_delete_at_once() {
    for (policy, wait) in [(KeyPolicy::Spec, 3600), (KeyPolicy::Hsm, 0)] {
        let mut config = Config::for_tests();
        config.default_policy = policy;
        config.deletion_wait = std::time::Duration::from_secs(wait);
        let (m, store) = audited(config);
        let h = rw(&m);
        m.login(h, CKU_USER, USER).unwrap();
        let k = aes_token_key(&m, h, b"gone");
        m.destroy_object(h, k).unwrap();
        assert!(
            store
                .objects(0, Some(&StorageKey::generate().unwrap()))
                .unwrap()
                .is_empty()
        );
    }
}

/// A module whose token (slot 0) has `policy`, with a logged-in R/W user
/// session.
fn policy_token(policy: KeyPolicy) -> (Module, CK_SESSION_HANDLE) {
    let mut cfg = Config::for_tests();
    cfg.default_policy = policy;
    let m = Module::new(cfg, Arc::new(MemoryStore::new())).unwrap();
    m.init_token(0, SO, &label("legacy")).unwrap();
    let h = rw(&m);
    m.login(h, CKU_SO, SO).unwrap();
    m.init_pin(h, USER).unwrap();
    m.logout(h).unwrap();
    m.login(h, CKU_USER, USER).unwrap();
    (m, h)
}

#[test]
fn legacy_algorithms_follow_the_token_policy() {
    let des3 = |extra: Vec<RawAttr>| {
        let mut t = vec![
            RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
            RawAttr::ulong(CKA_KEY_TYPE, CKK_DES3),
            RawAttr::new(CKA_VALUE, &[0x23; 24]),
            RawAttr::bool(CKA_SENSITIVE, true),
        ];
        t.extend(extra);
        t
    };
    // hsm: not listed, no info, refused at every entry point.
    let (m, h) = policy_token(KeyPolicy::Hsm);
    let list = m.mechanism_list(0).unwrap();
    for ty in [
        CKM_DES3_CBC,
        CKM_DES3_KEY_GEN,
        CKM_MD5,
        CKM_MD5_HMAC,
        CKM_MD5_RSA_PKCS,
    ] {
        assert!(!list.contains(&ty), "{ty:#x} listed on an hsm token");
        assert_eq!(m.mechanism_info(0, ty).err(), Some(Error::MechanismInvalid));
    }
    // CKM_RSA_PKCS is listed, but without its (legacy) key transport.
    let info = m.mechanism_info(0, CKM_RSA_PKCS).unwrap();
    assert_eq!(info.flags & (CKF_WRAP | CKF_UNWRAP), 0);
    assert_ne!(info.flags & CKF_ENCRYPT, 0);
    assert!(list.contains(&CKM_SHA3_256) && list.contains(&CKM_ECDSA_SHA3_384));
    assert_eq!(
        m.digest_init(h, &mech(CKM_MD5)),
        Err(Error::MechanismInvalid)
    );
    assert_eq!(
        m.generate_key(h, &mech(CKM_DES3_KEY_GEN), &[]),
        Err(Error::MechanismInvalid)
    );
    assert_eq!(
        m.create_object(h, &des3(vec![])),
        Err(Error::AttributeValueInvalid)
    );
    // SHA-3 is no legacy algorithm.
    m.digest_init(h, &mech(CKM_SHA3_256)).unwrap();
    let mut out = [0u8; 32];
    m.digest(h, b"abc", &mut OutBuf::new(Some(&mut out)))
        .unwrap();
    assert_eq!(out[..4], [0x3a, 0x98, 0x5d, 0xa7]);

    // spec: listed with every flag, usable.
    let (m, h) = policy_token(KeyPolicy::Spec);
    let list = m.mechanism_list(0).unwrap();
    assert_eq!(list.len(), crate::mechanism::MECHANISMS.len());
    let info = m.mechanism_info(0, CKM_RSA_PKCS).unwrap();
    assert_eq!(info.flags & (CKF_WRAP | CKF_UNWRAP), CKF_WRAP | CKF_UNWRAP);
    m.digest_init(h, &mech(CKM_MD5)).unwrap();
    let mut out = [0u8; 16];
    m.digest(h, b"abc", &mut OutBuf::new(Some(&mut out)))
        .unwrap();
    assert_eq!(out[..4], [0x90, 0x01, 0x50, 0x98]);
    // DES keys are made with odd parity and no CKA_VALUE_LEN.
    for (keygen, len) in [
        (CKM_DES_KEY_GEN, 8),
        (CKM_DES2_KEY_GEN, 16),
        (CKM_DES3_KEY_GEN, 24),
    ] {
        let k = m
            .generate_key(h, &mech(keygen), &[RawAttr::bool(CKA_SENSITIVE, false)])
            .unwrap();
        let r = m.get_attributes(h, k, &[CKA_VALUE, CKA_VALUE_LEN]).unwrap();
        let Reading::Value(v) = &r[0] else {
            panic!("value of a non-sensitive key")
        };
        assert_eq!(v.len(), len);
        assert!(v.iter().all(|b| b.count_ones() % 2 == 1), "odd parity");
    }
    assert_eq!(
        m.generate_key(
            h,
            &mech(CKM_DES3_KEY_GEN),
            &[RawAttr::ulong(CKA_VALUE_LEN, 16)]
        ),
        Err(Error::AttributeValueInvalid)
    );
    let k = m.create_object(h, &des3(vec![])).unwrap();
    let enc = MechanismArg {
        ty: CKM_DES3_CBC_PAD,
        param: crate::mechanism::Param::Raw(vec![0; 8]),
    };
    m.cipher_init(h, &enc, k, Dir::Encrypt).unwrap();
}

#[test]
fn operation_state_of_a_digest() {
    let m = ready();
    let (a, b) = (ro(&m), ro(&m));
    let mut q = OutBuf::new(None);
    assert_eq!(
        m.get_operation_state(a, &mut q),
        Err(Error::OperationNotInitialized)
    );
    m.digest_init(a, &sha256()).unwrap();
    m.digest_update(a, b"a").unwrap();
    m.get_operation_state(a, &mut q).unwrap();
    let mut blob = vec![0u8; q.len()];
    m.get_operation_state(a, &mut OutBuf::new(Some(&mut blob)))
        .unwrap();
    m.set_operation_state(b, &blob, 0, 0).unwrap();
    m.digest_update(b, b"bc").unwrap();
    let mut buf = [0u8; 32];
    m.digest_final(b, &mut OutBuf::new(Some(&mut buf))).unwrap();
    assert_eq!(buf[..4], [0xba, 0x78, 0x16, 0xbf], "sha256(\"abc\")");
    for i in [0, 5, 10, 20, blob.len() - 1] {
        let mut bad = blob.clone();
        bad[i] ^= 1;
        assert_eq!(
            m.set_operation_state(b, &bad, 0, 0),
            Err(Error::SavedStateInvalid),
            "byte {i} changed"
        );
    }
    assert_eq!(
        m.set_operation_state(b, &blob, 7, 0),
        Err(Error::KeyNotNeeded)
    );
    // Another module (another process) has another key.
    let other = ready();
    let c = ro(&other);
    assert_eq!(
        other.set_operation_state(c, &blob, 0, 0),
        Err(Error::SavedStateInvalid)
    );
    // Another operation alongside the digest makes the state unsaveable.
    m.digest_init(b, &sha256()).unwrap();
    m.sign_init(
        b,
        &MechanismArg {
            ty: CKM_SHA256_HMAC,
            param: crate::mechanism::Param::None,
        },
        0xdead,
        false,
    )
    .unwrap_err();
    m.get_operation_state(b, &mut OutBuf::new(None)).unwrap();
}
