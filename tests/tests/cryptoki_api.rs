//! Black-box checks of FerroHSM through the `cryptoki` crate, as Rust users call it:
//! token and PIN set-up, the login state machine, PIN lockout, object lifecycle for
//! every supported class, the `hsm` and `spec` key policies, searching, digests,
//! random numbers, one session shared by many threads, and the module log.

use std::collections::HashSet;

use cryptoki::context::Pkcs11;
use cryptoki::error::{Error, RvError};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{
    Attribute, AttributeInfo, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::{Session, SessionState, UserType};
use cryptoki::slot::{Limit, Slot};
use ferrohsm_tests::p11::{pin, ready_token, spare_slot, user_session};
use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN, from_hex, to_hex};
use sha2::Digest;

const LABEL: &str = "ferrohsm-api-test";

/// 1024-bit RSA key (test material only).
const RSA_N: &str = "a194dc77c5d5e429f63132e6a1307f45261693558bfce90f3d8d6c96c20ac0f13a0533e02cb316747312f510852791cbd15bf14307aec0af29f86bed78adaa20555b649f87a0a3f00d4772c7c3b0d3dfd44b8807d7f6d8fb027edf8997c1ac8eb0768e9b85d4466f4fcb4d6966b28ca5d9ca33a71238a00e1061eeab7bacf285bb543f3685272c13d53a01fa7c2c98f508bc9ebbe941100323ad1be5d0a49a1b2a8e856c8cde71e2739ad4aca45f0f29c2d1603e6f9d84bbc061031e98b356a6b76da856708aa91801a73c6a5207a0277f305498eb611f62e4a1bb4ae60c595126453912cd50234e7e0b6edc49f2b3ac76b5a7c4dac7773d7f30b5d5e6ad3281";
const RSA_D: &str = "04d94558e4434800a0da46d96020a70f0d86aba6eb679c5c4857f2385f6c08706cb1eb85b87daac8b58bcdf61012d9078d59a596a1f842e0b6c1154707e2293ae568d3cf0c383c3727c4db3b46a26ba739b50708da38967808d20315fb4b74e8c6bf9605b1794660507c0caf83250c3ead57899f83b6d689b980e0d33d47ba32d01f4bba6fe9a09fa46d4ed4e3dcd7343d5e5759f421c02605153a26993a7263c6a0e11f437d840d75dd0c844056506a47b36eaaa10afd6ba8e3f665224887d2e5a87a8c4fbb4fcef792314ec1a2fd4df1ca54c46488a4718ff52c7ef940665a3691ed33628b155485d3cffe7debc140679aa257b8db2814c29bd06b79888f81";
/// P-256 (prime256v1) named-curve OID, DER.
const P256_PARAMS: &str = "06082a8648ce3d030107";
const EC_PRIV: &str = "0070cc01f21752109eada1724332c45958d53fcf287793346fda7b4deb151cdf";
const EC_PUB: &str = "0431e435e0d5bc7381fe4a674bdadf652c93699c9183aea59a253b99c7752c19e0abb16ea042b8e226174e4405f510a9830607bc0971789974656745d76b1c2f36";
/// Self-signed P-256 certificate for CN=ferrohsm-test, DER.
const CERT_DER: &str = "308201863082012ba00302010202143ff0253dcafe0f5141b5aa76f50e1664a4714f30300a06082a8648ce3d04030230183116301406035504030c0d666572726f68736d2d74657374301e170d3236313132333139343134325a170d3236313132343139343134325a30183116301406035504030c0d666572726f68736d2d746573743059301306072a8648ce3d020106082a8648ce3d0301070342000431e435e0d5bc7381fe4a674bdadf652c93699c9183aea59a253b99c7752c19e0abb16ea042b8e226174e4405f510a9830607bc0971789974656745d76b1c2f36a3533051301d0603551d0e04160414338b0719e351f59f452348faf046b4f290315881301f0603551d23041830168014338b0719e351f59f452348faf046b4f290315881300f0603551d130101ff040530030101ff300a06082a8648ce3d0403020349003046022100b713870b450582476f18343dc2df05dd1394d683745c033635dce3cc40bfb27f022100f941012f367816a12d157d656abc826cdc62189c4b05fb1f5d5bb61eacdfd429";
const CERT_SUBJECT: &str = "30183116301406035504030c0d666572726f68736d2d74657374";

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// Asserts that `res` failed with exactly `want`.
#[track_caller]
fn expect_rv<T: std::fmt::Debug>(res: cryptoki::error::Result<T>, want: RvError, what: &str) {
    match res {
        Err(Error::Pkcs11(rv, _)) if rv == want => {}
        other => panic!("{what}: expected CKR {want:?}, got {other:?}"),
    }
}

/// Asserts that `res` failed with one of `want`; returns the code.
#[track_caller]
fn expect_rv_any<T: std::fmt::Debug>(
    res: cryptoki::error::Result<T>,
    want: &[RvError],
    what: &str,
) -> RvError {
    match res {
        Err(Error::Pkcs11(rv, _)) if want.contains(&rv) => rv,
        other => panic!("{what}: expected one of CKR {want:?}, got {other:?}"),
    }
}

fn state(s: &Session) -> SessionState {
    s.get_session_info()
        .expect("C_GetSessionInfo")
        .session_state()
}

fn aes_template(label: &str, value: &[u8]) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Token(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Value(value.to_vec()),
    ]
}

fn data_template(label: &str, private: bool) -> Vec<Attribute> {
    vec![
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(private),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Application(b"ferrohsm tests".to_vec()),
        Attribute::Value(b"some data".to_vec()),
    ]
}

fn get_bool(s: &Session, o: ObjectHandle, t: AttributeType) -> bool {
    let attrs = s
        .get_attributes(o, &[t])
        .unwrap_or_else(|e| panic!("C_GetAttributeValue {t:?}: {e:?}"));
    match attrs.as_slice() {
        [Attribute::Token(b)]
        | [Attribute::Private(b)]
        | [Attribute::Sensitive(b)]
        | [Attribute::Extractable(b)]
        | [Attribute::Local(b)]
        | [Attribute::AlwaysSensitive(b)]
        | [Attribute::NeverExtractable(b)]
        | [Attribute::Modifiable(b)]
        | [Attribute::Copyable(b)]
        | [Attribute::Destroyable(b)] => *b,
        other => panic!("C_GetAttributeValue {t:?}: unexpected {other:?}"),
    }
}

fn get_bytes(s: &Session, o: ObjectHandle, t: AttributeType) -> Option<Vec<u8>> {
    let attrs = s
        .get_attributes(o, &[t])
        .unwrap_or_else(|e| panic!("C_GetAttributeValue {t:?}: {e:?}"));
    match attrs.into_iter().next() {
        None => None,
        Some(
            Attribute::Value(v)
            | Attribute::Label(v)
            | Attribute::Id(v)
            | Attribute::UniqueId(v)
            | Attribute::Modulus(v)
            | Attribute::PublicExponent(v)
            | Attribute::PrivateExponent(v)
            | Attribute::EcParams(v)
            | Attribute::EcPoint(v)
            | Attribute::Subject(v)
            | Attribute::Application(v),
        ) => Some(v),
        Some(other) => panic!("C_GetAttributeValue {t:?}: unexpected {other:?}"),
    }
}

fn attr_info(s: &Session, o: ObjectHandle, t: AttributeType) -> AttributeInfo {
    s.get_attribute_info(o, &[t])
        .unwrap_or_else(|e| panic!("C_GetAttributeValue (length) {t:?}: {e:?}"))
        .remove(0)
}

/// Asserts that attribute `t` of `o` is sensitive (`CKR_ATTRIBUTE_SENSITIVE`).
#[track_caller]
fn assert_sensitive(s: &Session, o: ObjectHandle, t: AttributeType, what: &str) {
    assert!(
        matches!(attr_info(s, o, t), AttributeInfo::Sensitive),
        "{what}: {t:?} must be CKR_ATTRIBUTE_SENSITIVE"
    );
}

/// Asserts boolean attributes of `o`, rows of (type, expected value); `what`
/// names the object in the messages.
#[track_caller]
fn assert_bools(s: &Session, o: ObjectHandle, what: &str, rows: &[(AttributeType, bool)]) {
    for (t, want) in rows {
        assert_eq!(get_bool(s, o, *t), *want, "{what}: {t:?} must be {want}");
    }
}

/// Each template of the rows (template, what) is refused with
/// `CKR_TEMPLATE_INCOMPLETE`.
#[track_caller]
fn incomplete(s: &Session, rows: Vec<(Vec<Attribute>, &str)>) {
    for (t, what) in rows {
        expect_rv(s.create_object(&t), RvError::TemplateIncomplete, what);
    }
}

/// `expect_rv` over rows of (result, code, what); the calls are made in row order.
#[track_caller]
fn expect_rvs(rows: Vec<(cryptoki::error::Result<()>, RvError, &str)>) {
    for (res, want, what) in rows {
        expect_rv(res, want, what);
    }
}

fn find_label(s: &Session, label: &str) -> Vec<ObjectHandle> {
    s.find_objects(&[Attribute::Label(label.as_bytes().to_vec())])
        .expect("C_FindObjects by label")
}

/// Small deterministic PRNG for random splits (the split choice need not be secret).
struct XorShift(u64);
impl XorShift {
    fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

fn reference_digest(m: MechanismType, data: &[u8]) -> Vec<u8> {
    match m {
        MechanismType::SHA1 => sha1::Sha1::digest(data).to_vec(),
        MechanismType::SHA224 => sha2::Sha224::digest(data).to_vec(),
        MechanismType::SHA256 => sha2::Sha256::digest(data).to_vec(),
        MechanismType::SHA384 => sha2::Sha384::digest(data).to_vec(),
        MechanismType::SHA512 => sha2::Sha512::digest(data).to_vec(),
        other => panic!("no reference for {other:?}"),
    }
}

fn digest_mechs() -> [(Mechanism<'static>, MechanismType); 5] {
    [
        (Mechanism::Sha1, MechanismType::SHA1),
        (Mechanism::Sha224, MechanismType::SHA224),
        (Mechanism::Sha256, MechanismType::SHA256),
        (Mechanism::Sha384, MechanismType::SHA384),
        (Mechanism::Sha512, MechanismType::SHA512),
    ]
}

/// A fresh test process (its `TestEnv`) with the token `LABEL` ready.
fn token() -> (TestEnv, Pkcs11, Slot) {
    let env = TestEnv::new();
    let p = env.load();
    let slot = ready_token(&p, LABEL);
    (env, p, slot)
}

/// `token()` and a R/W user session on it.
fn user_token() -> (TestEnv, Pkcs11, Slot, Session) {
    let (env, p, slot) = token();
    let s = user_session(&p, slot);
    (env, p, slot, s)
}

/// Sets `FERROHSM_POLICY=spec` before the module is loaded.
fn set_spec_policy_env() {
    // SAFETY: called right after `TestEnv::new()` at the start of a test, before
    // this test starts threads or loads the module; nextest runs one test per process.
    unsafe { std::env::set_var("FERROHSM_POLICY", "spec") };
}

// ---------------------------------------------------------------------------
// slots, tokens, token info
// ---------------------------------------------------------------------------

#[test]
fn fresh_process_has_one_uninitialised_spare_slot() {
    let env = TestEnv::new();
    let p = env.load();
    let slots = p.get_all_slots().expect("C_GetSlotList");
    assert_eq!(slots.len(), 1, "fresh process: exactly one slot expected");
    let slot = slots[0];
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        !ti.token_initialized(),
        "spare token must not be CKF_TOKEN_INITIALIZED"
    );
    assert!(
        !ti.user_pin_initialized(),
        "spare token: no CKF_USER_PIN_INITIALIZED"
    );
    expect_rv(
        p.open_ro_session(slot),
        RvError::TokenNotRecognized,
        "C_OpenSession on uninitialised token",
    );
    expect_rv(
        p.open_rw_session(slot),
        RvError::TokenNotRecognized,
        "C_OpenSession RW on uninitialised token",
    );
    let si = p.get_slot_info(slot).expect("C_GetSlotInfo");
    assert!(si.token_present(), "slot must report CKF_TOKEN_PRESENT");
}

#[test]
fn init_token_keeps_slot_id_and_adds_spare() {
    let env = TestEnv::new();
    let p = env.load();
    let slot = spare_slot(&p);
    p.init_token(slot, &pin(SO_PIN), LABEL)
        .expect("C_InitToken");
    let slots = p.get_all_slots().expect("C_GetSlotList");
    assert_eq!(
        slots.len(),
        2,
        "after C_InitToken: initialised + new spare slot"
    );
    assert_eq!(
        slots[0].id(),
        slot.id(),
        "initialised token keeps its slot ID"
    );
    assert!(slots[1].id() != slot.id());
    let spare = p.get_token_info(slots[1]).expect("C_GetTokenInfo spare");
    assert!(
        !spare.token_initialized(),
        "new spare slot must be uninitialised"
    );
    let init = p
        .get_slots_with_initialized_token()
        .expect("C_GetSlotList initialized");
    assert_eq!(init.len(), 1);
    assert_eq!(init[0].id(), slot.id());

    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(ti.label(), LABEL, "token label");
    assert_eq!(ti.manufacturer_id(), "FerroHSM project");
    assert_eq!(ti.model(), "FerroHSM");
    assert!(ti.rng(), "CKF_RNG");
    assert!(ti.login_required(), "CKF_LOGIN_REQUIRED");
    assert!(ti.clock_on_token(), "CKF_CLOCK_ON_TOKEN");
    assert!(ti.token_initialized(), "CKF_TOKEN_INITIALIZED");
    assert!(!ti.user_pin_initialized(), "no user PIN yet");
    assert!(!ti.user_pin_locked() && !ti.user_pin_count_low() && !ti.user_pin_final_try());
    assert_eq!(ti.min_pin_length(), 4, "ulMinPinLen");
    assert_eq!(ti.max_pin_length(), 64, "ulMaxPinLen");
    assert_eq!(
        ti.total_public_memory(),
        None,
        "memory: CK_UNAVAILABLE_INFORMATION"
    );
    assert_eq!(ti.free_public_memory(), None);
    assert_eq!(ti.total_private_memory(), None);
    assert_eq!(ti.free_private_memory(), None);
    assert!(
        matches!(ti.max_session_count(), Limit::Max(4096)),
        "ulMaxSessionCount: {:?}",
        ti.max_session_count()
    );
    assert_eq!(ti.session_count(), Some(0));
    assert_eq!(ti.rw_session_count(), Some(0));
    assert!(ti.utc_time().is_some(), "CKF_CLOCK_ON_TOKEN needs utcTime");

    // the user PIN
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    expect_rv(
        s.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::UserPinNotInitialized,
        "C_Login user before C_InitPIN",
    );
    s.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    s.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        ti.user_pin_initialized(),
        "CKF_USER_PIN_INITIALIZED after C_InitPIN"
    );
    s.logout().expect("C_Logout");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login user");
}

#[test]
fn init_token_so_pin_length_limits() {
    let env = TestEnv::new();
    let p = env.load();
    let slot = spare_slot(&p);
    let long = "x".repeat(65);
    for bad in ["abc", long.as_str()] {
        expect_rv_any(
            p.init_token(slot, &pin(bad), LABEL),
            &[
                RvError::PinLenRange,
                RvError::PinIncorrect,
                RvError::ArgumentsBad,
            ],
            &format!("C_InitToken with {}-byte SO PIN", bad.len()),
        );
        let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
        assert!(
            !ti.token_initialized(),
            "refused C_InitToken must not initialise"
        );
    }
    let max = "y".repeat(64);
    p.init_token(slot, &pin(&max), LABEL)
        .expect("C_InitToken with 64-byte SO PIN");
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    s.login(UserType::So, Some(&pin(&max)))
        .expect("C_Login SO 64-byte PIN");
}

#[test]
fn token_info_session_counts_and_max_sessions() {
    let env = TestEnv::with_config("max_sessions = 2");
    let p = env.load();
    let slot = ready_token(&p, LABEL);
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        matches!(ti.max_session_count(), Limit::Max(2)),
        "ulMaxSessionCount with max_sessions = 2: {:?}",
        ti.max_session_count()
    );
    let a = p.open_ro_session(slot).expect("C_OpenSession 1");
    let b = p.open_rw_session(slot).expect("C_OpenSession 2");
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(ti.session_count(), Some(2), "ulSessionCount");
    assert_eq!(ti.rw_session_count(), Some(1), "ulRwSessionCount");
    expect_rv(
        p.open_ro_session(slot),
        RvError::SessionCount,
        "third C_OpenSession with max_sessions = 2",
    );
    drop(a);
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(ti.session_count(), Some(1));
    assert_eq!(ti.rw_session_count(), Some(1));
    drop(b);
    let _c = p
        .open_ro_session(slot)
        .expect("C_OpenSession after closing");
}

#[test]
fn reinit_token_wipes_objects_and_user_pin() {
    let (_env, p, slot) = token();
    {
        let s = user_session(&p, slot);
        s.create_object(&data_template("public-data", false))
            .expect("C_CreateObject public data");
        s.create_object(&data_template("private-data", true))
            .expect("C_CreateObject private data");
        s.create_object(&aes_template("aes", &[7u8; 16]))
            .expect("C_CreateObject AES");
        assert_eq!(s.find_objects(&[]).expect("C_FindObjects").len(), 3);

        expect_rv(
            p.init_token(slot, &pin(SO_PIN), "again"),
            RvError::SessionExists,
            "C_InitToken with a session open",
        );
    }
    expect_rv(
        p.init_token(slot, &pin("wrong-so-pin"), "again"),
        RvError::PinIncorrect,
        "C_InitToken with wrong SO PIN",
    );
    p.init_token(slot, &pin(SO_PIN), "second label")
        .expect("C_InitToken (re-init)");
    assert_eq!(
        p.get_all_slots().expect("C_GetSlotList").len(),
        2,
        "re-init must not add another spare slot"
    );
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert_eq!(ti.label(), "second label");
    assert!(ti.token_initialized());
    assert!(
        !ti.user_pin_initialized(),
        "re-init must reset the user PIN"
    );

    let s = p.open_rw_session(slot).expect("C_OpenSession");
    assert!(
        s.find_objects(&[]).expect("C_FindObjects").is_empty(),
        "re-init must wipe public objects"
    );
    expect_rv(
        s.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::UserPinNotInitialized,
        "C_Login user after re-init",
    );
    s.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    s.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
    s.logout().expect("C_Logout");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login user");
    assert!(
        s.find_objects(&[]).expect("C_FindObjects").is_empty(),
        "re-init must wipe private objects and keys"
    );
}

// ---------------------------------------------------------------------------
// login state machine
// ---------------------------------------------------------------------------

#[test]
fn login_state_machine() {
    let (_env, p, slot) = token();

    let ro = p.open_ro_session(slot).expect("C_OpenSession RO");
    assert_eq!(state(&ro), SessionState::RoPublic);
    expect_rv(
        ro.logout(),
        RvError::UserNotLoggedIn,
        "C_Logout when not logged in",
    );
    expect_rv(
        ro.login(UserType::So, Some(&pin(SO_PIN))),
        RvError::SessionReadOnlyExists,
        "C_Login SO with a RO session open",
    );
    expect_rv(
        ro.login(UserType::User, Some(&pin("wrong-user-pin"))),
        RvError::PinIncorrect,
        "C_Login user wrong PIN",
    );
    ro.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login user");
    assert_eq!(state(&ro), SessionState::RoUser);
    expect_rv(
        ro.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::UserAlreadyLoggedIn,
        "second C_Login user",
    );
    expect_rv(
        ro.login(UserType::So, Some(&pin(SO_PIN))),
        RvError::UserAnotherAlreadyLoggedIn,
        "C_Login SO while user logged in",
    );

    // login state is per token: a new session is already logged in
    let rw = p.open_rw_session(slot).expect("C_OpenSession RW");
    assert_eq!(state(&rw), SessionState::RwUser);
    rw.logout().expect("C_Logout");
    assert_eq!(state(&ro), SessionState::RoPublic, "logout is token-wide");
    assert_eq!(state(&rw), SessionState::RwPublic);
    expect_rv(rw.logout(), RvError::UserNotLoggedIn, "second C_Logout");

    drop(ro);
    rw.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    assert_eq!(state(&rw), SessionState::RwSecurityOfficer);
    expect_rv(
        p.open_ro_session(slot),
        RvError::SessionReadWriteSoExists,
        "C_OpenSession RO while SO logged in",
    );
    let rw2 = p.open_rw_session(slot).expect("C_OpenSession RW while SO");
    assert_eq!(state(&rw2), SessionState::RwSecurityOfficer);
    expect_rv(
        rw2.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::UserAnotherAlreadyLoggedIn,
        "C_Login user while SO logged in",
    );
    expect_rv(
        rw2.login(UserType::So, Some(&pin(SO_PIN))),
        RvError::UserAlreadyLoggedIn,
        "second C_Login SO",
    );
    rw2.logout().expect("C_Logout SO");
    expect_rv(
        rw.login(UserType::So, Some(&pin("wrong-so-pin"))),
        RvError::PinIncorrect,
        "C_Login SO wrong PIN",
    );
    expect_rv(
        rw.login(UserType::ContextSpecific, Some(&pin(USER_PIN))),
        RvError::OperationNotInitialized,
        "C_Login CKU_CONTEXT_SPECIFIC without an operation",
    );
}

#[test]
fn closing_last_session_logs_out() {
    let (_env, p, slot, a) = user_token();
    let b = p.open_ro_session(slot).expect("C_OpenSession");
    assert_eq!(state(&b), SessionState::RoUser);
    a.close().expect("C_CloseSession");
    assert_eq!(
        state(&b),
        SessionState::RoUser,
        "closing one of two sessions keeps the login"
    );
    b.close().expect("C_CloseSession");
    let c = p.open_ro_session(slot).expect("C_OpenSession");
    assert_eq!(
        state(&c),
        SessionState::RoPublic,
        "closing the last session must log out"
    );
    c.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login after re-open");
}

#[test]
fn init_pin_needs_rw_so_session() {
    let (_env, p, slot) = token();
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    expect_rv(
        s.init_pin(&pin("another-pin")),
        RvError::UserNotLoggedIn,
        "C_InitPIN in a public R/W session",
    );
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login user");
    expect_rv(
        s.init_pin(&pin("another-pin")),
        RvError::UserNotLoggedIn,
        "C_InitPIN in a user session",
    );
    s.logout().expect("C_Logout");
    s.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    expect_rv(
        s.init_pin(&pin("abc")),
        RvError::PinLenRange,
        "C_InitPIN with a 3-byte PIN",
    );
    expect_rv(
        s.init_pin(&pin(&"z".repeat(65))),
        RvError::PinLenRange,
        "C_InitPIN with a 65-byte PIN",
    );
    s.init_pin(&pin("another-pin")).expect("C_InitPIN");
    s.logout().expect("C_Logout");
    expect_rv(
        s.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::PinIncorrect,
        "old user PIN after C_InitPIN",
    );
    s.login(UserType::User, Some(&pin("another-pin")))
        .expect("C_Login with the new user PIN");
}

#[test]
fn set_pin_user_and_so() {
    let (_env, p, slot) = token();

    {
        let ro = p.open_ro_session(slot).expect("C_OpenSession RO");
        expect_rv(
            ro.set_pin(&pin(USER_PIN), &pin("new-user-pin")),
            RvError::SessionReadOnly,
            "C_SetPIN in a RO session",
        );
        ro.login(UserType::User, Some(&pin(USER_PIN)))
            .expect("C_Login");
        expect_rv(
            ro.set_pin(&pin(USER_PIN), &pin("new-user-pin")),
            RvError::SessionReadOnly,
            "C_SetPIN in a RO user session",
        );
    }

    // public R/W session: changes the user PIN
    let s = p.open_rw_session(slot).expect("C_OpenSession RW");
    assert_eq!(state(&s), SessionState::RwPublic);
    expect_rv(
        s.set_pin(&pin("not-the-pin"), &pin("new-user-pin")),
        RvError::PinIncorrect,
        "C_SetPIN with a wrong old PIN",
    );
    expect_rv(
        s.set_pin(&pin(USER_PIN), &pin("abc")),
        RvError::PinLenRange,
        "C_SetPIN to a 3-byte PIN",
    );
    s.set_pin(&pin(USER_PIN), &pin("new-user-pin"))
        .expect("C_SetPIN (public session)");
    expect_rv(
        s.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::PinIncorrect,
        "old user PIN after C_SetPIN",
    );
    s.login(UserType::User, Some(&pin("new-user-pin")))
        .expect("C_Login with the new PIN");

    // user session: changes the user PIN
    s.set_pin(&pin("new-user-pin"), &pin("third-user-pin"))
        .expect("C_SetPIN (user session)");
    s.logout().expect("C_Logout");
    s.login(UserType::User, Some(&pin("third-user-pin")))
        .expect("C_Login with the third PIN");
    s.logout().expect("C_Logout");

    // SO session: changes the SO PIN, not the user PIN
    s.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    s.set_pin(&pin(SO_PIN), &pin("new-so-pin"))
        .expect("C_SetPIN (SO session)");
    s.logout().expect("C_Logout");
    expect_rv(
        s.login(UserType::So, Some(&pin(SO_PIN))),
        RvError::PinIncorrect,
        "old SO PIN after C_SetPIN",
    );
    s.login(UserType::So, Some(&pin("new-so-pin")))
        .expect("C_Login SO with the new PIN");
    s.logout().expect("C_Logout");
    s.login(UserType::User, Some(&pin("third-user-pin")))
        .expect("user PIN unchanged by the SO C_SetPIN");
    s.close().expect("C_CloseSession");
    expect_rv(
        p.init_token(slot, &pin(SO_PIN), LABEL),
        RvError::PinIncorrect,
        "C_InitToken with the old SO PIN",
    );
    p.init_token(slot, &pin("new-so-pin"), LABEL)
        .expect("C_InitToken with the new SO PIN");
}

#[test]
fn user_pin_lockout_with_flags() {
    let env = TestEnv::with_config("max_login_failures = 3");
    let p = env.load();
    let slot = ready_token(&p, LABEL);
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    let flags = |p: &Pkcs11| {
        let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
        (
            ti.user_pin_count_low(),
            ti.user_pin_final_try(),
            ti.user_pin_locked(),
        )
    };
    assert_eq!(flags(&p), (false, false, false), "fresh user PIN flags");

    // a success resets the counter
    expect_rv(
        s.login(UserType::User, Some(&pin("bad-pin-1"))),
        RvError::PinIncorrect,
        "wrong PIN",
    );
    assert!(flags(&p).0, "CKF_USER_PIN_COUNT_LOW after one failure");
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    assert_eq!(
        flags(&p),
        (false, false, false),
        "flags cleared after a successful login"
    );
    s.logout().expect("C_Logout");

    expect_rv(
        s.login(UserType::User, Some(&pin("bad-pin-1"))),
        RvError::PinIncorrect,
        "wrong PIN #1",
    );
    let f = flags(&p);
    assert!(
        f.0 && !f.1 && !f.2,
        "after 1 of 3 failures: COUNT_LOW only, got {f:?}"
    );
    expect_rv(
        s.login(UserType::User, Some(&pin("bad-pin-2"))),
        RvError::PinIncorrect,
        "wrong PIN #2",
    );
    let f = flags(&p);
    assert!(f.1 && !f.2, "after 2 of 3 failures: FINAL_TRY, got {f:?}");
    expect_rv_any(
        s.login(UserType::User, Some(&pin("bad-pin-3"))),
        &[RvError::PinIncorrect, RvError::PinLocked],
        "wrong PIN #3",
    );
    let f = flags(&p);
    assert!(f.2, "after 3 failures: CKF_USER_PIN_LOCKED, got {f:?}");
    expect_rv(
        s.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::PinLocked,
        "right PIN on a locked user PIN",
    );
    expect_rv(
        s.set_pin(&pin(USER_PIN), &pin("other-pin")),
        RvError::PinLocked,
        "C_SetPIN on a locked user PIN",
    );

    // the SO unlocks with C_InitPIN
    s.login(UserType::So, Some(&pin(SO_PIN)))
        .expect("C_Login SO");
    s.init_pin(&pin("fresh-user-pin")).expect("C_InitPIN");
    s.logout().expect("C_Logout");
    assert_eq!(
        flags(&p),
        (false, false, false),
        "C_InitPIN must clear the lock flags"
    );
    s.login(UserType::User, Some(&pin("fresh-user-pin")))
        .expect("C_Login after unlock");
}

#[test]
fn default_lockout_limit_is_ten() {
    let (_env, p, slot) = token();
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    for i in 0..9 {
        expect_rv(
            s.login(UserType::User, Some(&pin("wrong-pin"))),
            RvError::PinIncorrect,
            &format!("wrong PIN #{}", i + 1),
        );
    }
    let ti = p.get_token_info(slot).expect("C_GetTokenInfo");
    assert!(
        ti.user_pin_final_try() && !ti.user_pin_locked(),
        "9 of 10: final try"
    );
    s.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login after 9 failures (limit 10)");
    s.logout().expect("C_Logout");
    for _ in 0..10 {
        let _ = s.login(UserType::User, Some(&pin("wrong-pin")));
    }
    assert!(
        p.get_token_info(slot).unwrap().user_pin_locked(),
        "10 failures lock"
    );
    expect_rv(
        s.login(UserType::User, Some(&pin(USER_PIN))),
        RvError::PinLocked,
        "locked after 10 failures",
    );
}

// ---------------------------------------------------------------------------
// objects
// ---------------------------------------------------------------------------

#[test]
fn data_object_lifecycle() {
    let (_env, _p, _slot, s) = user_token();
    let o = s
        .create_object(&data_template("data-1", false))
        .expect("C_CreateObject data");
    assert_eq!(
        get_bytes(&s, o, AttributeType::Value).unwrap(),
        b"some data"
    );
    assert_eq!(get_bytes(&s, o, AttributeType::Label).unwrap(), b"data-1");
    assert_eq!(
        get_bytes(&s, o, AttributeType::Application).unwrap(),
        b"ferrohsm tests"
    );
    assert_bools(
        &s,
        o,
        "data object defaults",
        &[
            (AttributeType::Token, true),
            (AttributeType::Private, false),
            (AttributeType::Modifiable, true),
            (AttributeType::Copyable, true),
            (AttributeType::Destroyable, true),
        ],
    );

    s.update_attributes(o, &[Attribute::Label(b"data-renamed".to_vec())])
        .expect("C_SetAttributeValue label");
    assert_eq!(
        get_bytes(&s, o, AttributeType::Label).unwrap(),
        b"data-renamed"
    );
    expect_rv(
        s.update_attributes(o, &[Attribute::Class(ObjectClass::SECRET_KEY)]),
        RvError::AttributeReadOnly,
        "C_SetAttributeValue CKA_CLASS",
    );

    let c = s
        .copy_object(
            o,
            &[
                Attribute::Token(false),
                Attribute::Label(b"data-copy".to_vec()),
            ],
        )
        .expect("C_CopyObject");
    assert!(c != o);
    assert!(
        !get_bool(&s, c, AttributeType::Token),
        "copy is a session object"
    );
    assert_eq!(
        get_bytes(&s, c, AttributeType::Value).unwrap(),
        b"some data"
    );
    assert_eq!(
        get_bytes(&s, o, AttributeType::Label).unwrap(),
        b"data-renamed"
    );

    s.destroy_object(o).expect("C_DestroyObject");
    expect_rvs(vec![
        (
            s.get_attributes(o, &[AttributeType::Label]).map(drop),
            RvError::ObjectHandleInvalid,
            "C_GetAttributeValue on a destroyed object",
        ),
        (
            s.destroy_object(o),
            RvError::ObjectHandleInvalid,
            "second C_DestroyObject",
        ),
    ]);
    assert_eq!(find_label(&s, "data-copy"), vec![c]);
    s.destroy_object(c).expect("C_DestroyObject copy");
    assert!(s.find_objects(&[]).unwrap().is_empty());
}

#[test]
fn certificate_lifecycle() {
    let (_env, _p, _slot, s) = user_token();
    let mut t = vec![
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Token(true),
        Attribute::Label(b"cert".to_vec()),
        Attribute::Id(vec![0xc1]),
        Attribute::Value(from_hex(CERT_DER)),
    ];
    // Without CKA_SUBJECT: the module reads it from the certificate.
    let filled = s
        .create_object(&t)
        .expect("C_CreateObject X.509 without CKA_SUBJECT");
    assert_eq!(
        get_bytes(&s, filled, AttributeType::Subject).unwrap(),
        from_hex(CERT_SUBJECT)
    );
    s.destroy_object(filled).expect("C_DestroyObject");
    // A subject that is not the certificate's is refused.
    let mut wrong = t.clone();
    wrong.push(Attribute::Subject(vec![0x30, 0x00]));
    expect_rv(
        s.create_object(&wrong),
        RvError::AttributeValueInvalid,
        "C_CreateObject X.509 with a contradicting CKA_SUBJECT",
    );
    t.push(Attribute::Subject(from_hex(CERT_SUBJECT)));
    let o = s.create_object(&t).expect("C_CreateObject X.509");
    assert_eq!(
        get_bytes(&s, o, AttributeType::Value).unwrap(),
        from_hex(CERT_DER)
    );
    assert_eq!(
        get_bytes(&s, o, AttributeType::Subject).unwrap(),
        from_hex(CERT_SUBJECT)
    );
    let attrs = s
        .get_attributes(o, &[AttributeType::CertificateType, AttributeType::Class])
        .expect("C_GetAttributeValue");
    assert!(
        attrs.contains(&Attribute::CertificateType(CertificateType::X_509))
            && attrs.contains(&Attribute::Class(ObjectClass::CERTIFICATE)),
        "{attrs:?}"
    );
    for (missing, what) in [
        (
            AttributeType::CertificateType,
            "C_CreateObject certificate without CKA_CERTIFICATE_TYPE",
        ),
        (
            AttributeType::Value,
            "C_CreateObject X.509 without CKA_VALUE",
        ),
    ] {
        let without: Vec<Attribute> = t
            .iter()
            .filter(|a| a.attribute_type() != missing)
            .cloned()
            .collect();
        expect_rv(s.create_object(&without), RvError::TemplateIncomplete, what);
    }
    let found = s
        .find_objects(&[Attribute::Class(ObjectClass::CERTIFICATE)])
        .unwrap();
    assert_eq!(found, vec![o]);
    s.destroy_object(o).expect("C_DestroyObject");
}

#[test]
fn secret_key_lifecycle_and_imported_key_attributes() {
    let (_env, _p, _slot, s) = user_token();
    for len in [16usize, 24, 32] {
        let k = s
            .create_object(&aes_template(&format!("aes-{len}"), &vec![0x42; len]))
            .unwrap_or_else(|e| panic!("C_CreateObject AES-{}: {e:?}", len * 8));
        let attrs = s
            .get_attributes(k, &[AttributeType::ValueLen, AttributeType::KeyType])
            .expect("C_GetAttributeValue");
        assert!(
            attrs.contains(&Attribute::ValueLen((len as u64).into())),
            "CKA_VALUE_LEN of AES-{}: {attrs:?}",
            len * 8
        );
        assert!(attrs.contains(&Attribute::KeyType(KeyType::AES)));
        assert_bools(
            &s,
            k,
            &format!("imported AES-{}", len * 8),
            &[
                (AttributeType::Local, false),
                (AttributeType::AlwaysSensitive, false),
                (AttributeType::NeverExtractable, false),
                (AttributeType::Private, true),
            ],
        );
    }
    for bad_len in [0usize, 15, 17, 33] {
        expect_rv_any(
            s.create_object(&aes_template("aes-bad", &vec![1; bad_len])),
            &[
                RvError::AttributeValueInvalid,
                RvError::TemplateInconsistent,
            ],
            &format!("C_CreateObject AES with {bad_len}-byte CKA_VALUE"),
        );
    }
    let g = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(true),
            Attribute::Label(b"generic".to_vec()),
            Attribute::Value(vec![9; 20]),
        ])
        .expect("C_CreateObject generic secret");
    let attrs = s
        .get_attributes(g, &[AttributeType::ValueLen])
        .expect("C_GetAttributeValue");
    assert_eq!(
        attrs,
        vec![Attribute::ValueLen(20u64.into())],
        "CKA_VALUE_LEN"
    );
    incomplete(
        &s,
        vec![
            (
                vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::KeyType(KeyType::AES),
                    Attribute::Token(true),
                ],
                "C_CreateObject AES without CKA_VALUE",
            ),
            (
                vec![
                    Attribute::Class(ObjectClass::SECRET_KEY),
                    Attribute::Token(true),
                    Attribute::Value(vec![1; 16]),
                ],
                "C_CreateObject secret key without CKA_KEY_TYPE",
            ),
        ],
    );
    // unique IDs
    let all = s.find_objects(&[]).expect("C_FindObjects");
    assert_eq!(all.len(), 4);
    let ids: HashSet<Vec<u8>> = all
        .iter()
        .map(|o| get_bytes(&s, *o, AttributeType::UniqueId).expect("CKA_UNIQUE_ID present"))
        .collect();
    assert_eq!(ids.len(), 4, "CKA_UNIQUE_ID must be unique");
    assert!(
        ids.iter().all(|i| !i.is_empty()),
        "CKA_UNIQUE_ID must not be empty"
    );
    for o in all {
        s.destroy_object(o).expect("C_DestroyObject");
    }
}

#[test]
fn rsa_key_objects() {
    let (_env, _p, _slot, s) = user_token();
    let public = s
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Id(vec![0x01]),
            Attribute::Label(b"rsa-pub".to_vec()),
            Attribute::Modulus(from_hex(RSA_N)),
            Attribute::PublicExponent(vec![1, 0, 1]),
        ])
        .expect("C_CreateObject RSA public");
    assert_eq!(
        get_bytes(&s, public, AttributeType::Modulus).unwrap(),
        from_hex(RSA_N)
    );
    assert_eq!(
        get_bytes(&s, public, AttributeType::PublicExponent).unwrap(),
        vec![1, 0, 1]
    );
    let private = s
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Id(vec![0x01]),
            Attribute::Label(b"rsa-priv".to_vec()),
            Attribute::Modulus(from_hex(RSA_N)),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::PrivateExponent(from_hex(RSA_D)),
        ])
        .expect("C_CreateObject RSA private");
    assert_bools(
        &s,
        private,
        "hsm: RSA private key",
        &[
            (AttributeType::Sensitive, true),
            (AttributeType::Extractable, false),
            (AttributeType::Private, true),
        ],
    );
    assert_sensitive(
        &s,
        private,
        AttributeType::PrivateExponent,
        "CKA_PRIVATE_EXPONENT of a sensitive key",
    );
    assert_eq!(
        get_bytes(&s, private, AttributeType::Modulus).unwrap(),
        from_hex(RSA_N),
        "modulus of a private key stays readable"
    );
    incomplete(
        &s,
        vec![
            (
                vec![
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::RSA),
                    Attribute::Token(true),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                ],
                "C_CreateObject RSA public without CKA_MODULUS",
            ),
            (
                vec![
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(KeyType::RSA),
                    Attribute::Token(true),
                    Attribute::Modulus(from_hex(RSA_N)),
                    Attribute::PublicExponent(vec![1, 0, 1]),
                ],
                "C_CreateObject RSA private without CKA_PRIVATE_EXPONENT",
            ),
        ],
    );
    let by_id = s
        .find_objects(&[Attribute::Id(vec![0x01])])
        .expect("C_FindObjects");
    assert_eq!(by_id.len(), 2);
    assert_eq!(
        s.find_objects(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA)
        ])
        .unwrap(),
        vec![private]
    );
    s.destroy_object(private).expect("C_DestroyObject");
    s.destroy_object(public).expect("C_DestroyObject");
}

#[test]
fn ec_key_objects() {
    let (_env, _p, _slot, s) = user_token();
    let point = {
        let raw = from_hex(EC_PUB);
        let mut v = vec![0x04, raw.len() as u8];
        v.extend_from_slice(&raw);
        v
    };
    let public = s
        .create_object(&[
            Attribute::Class(ObjectClass::PUBLIC_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Label(b"ec-pub".to_vec()),
            Attribute::EcParams(from_hex(P256_PARAMS)),
            Attribute::EcPoint(point.clone()),
        ])
        .expect("C_CreateObject EC public");
    assert_eq!(
        get_bytes(&s, public, AttributeType::EcPoint).unwrap(),
        point
    );
    assert_eq!(
        get_bytes(&s, public, AttributeType::EcParams).unwrap(),
        from_hex(P256_PARAMS)
    );
    let private = s
        .create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::EC),
            Attribute::Token(true),
            Attribute::Label(b"ec-priv".to_vec()),
            Attribute::EcParams(from_hex(P256_PARAMS)),
            Attribute::Value(from_hex(EC_PRIV)),
        ])
        .expect("C_CreateObject EC private");
    assert_sensitive(
        &s,
        private,
        AttributeType::Value,
        "CKA_VALUE of a sensitive EC key",
    );
    incomplete(
        &s,
        vec![
            (
                vec![
                    Attribute::Class(ObjectClass::PRIVATE_KEY),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Token(true),
                    Attribute::Value(from_hex(EC_PRIV)),
                ],
                "C_CreateObject EC private without CKA_EC_PARAMS",
            ),
            (
                vec![
                    Attribute::Class(ObjectClass::PUBLIC_KEY),
                    Attribute::KeyType(KeyType::EC),
                    Attribute::Token(true),
                    Attribute::EcParams(from_hex(P256_PARAMS)),
                ],
                "C_CreateObject EC public without CKA_EC_POINT",
            ),
        ],
    );
    s.destroy_object(private).expect("C_DestroyObject");
    s.destroy_object(public).expect("C_DestroyObject");
}

#[test]
fn create_template_errors() {
    let (_env, _p, _slot, s) = user_token();
    let data = || data_template("bad", false);
    let aes = || aes_template("bad", &[1; 16]);
    let vendor = AttributeType::VendorDefined(cryptoki_sys::CKA_VENDOR_DEFINED | 0x7e57);
    for (mut t, extra, want, what) in [
        (
            data(),
            Some(Attribute::VendorDefined((vendor, vec![1, 2, 3]))),
            RvError::AttributeTypeInvalid,
            "C_CreateObject with an unknown attribute type",
        ),
        (
            aes(),
            Some(Attribute::Local(true)),
            RvError::AttributeReadOnly,
            "C_CreateObject with CKA_LOCAL",
        ),
        (
            data(),
            Some(Attribute::UniqueId(b"mine".to_vec())),
            RvError::AttributeReadOnly,
            "C_CreateObject with CKA_UNIQUE_ID",
        ),
        (
            aes(),
            Some(Attribute::AlwaysSensitive(true)),
            RvError::AttributeReadOnly,
            "C_CreateObject with CKA_ALWAYS_SENSITIVE",
        ),
        (
            vec![Attribute::Token(true), Attribute::Label(b"x".to_vec())],
            None,
            RvError::TemplateIncomplete,
            "C_CreateObject without CKA_CLASS",
        ),
    ] {
        t.extend(extra);
        expect_rv(s.create_object(&t), want, what);
    }
    assert!(
        s.find_objects(&[]).unwrap().is_empty(),
        "failed creates leave no objects"
    );
}

#[test]
fn modify_copy_destroy_prohibited() {
    let (_env, _p, _slot, s) = user_token();
    let locked = |label: &str, flag: Attribute| {
        let mut t = data_template(label, false);
        t.push(flag.clone());
        s.create_object(&t)
            .unwrap_or_else(|e| panic!("C_CreateObject {flag:?}: {e:?}"))
    };
    let m = locked("locked-mod", Attribute::Modifiable(false));
    let c = locked("locked-copy", Attribute::Copyable(false));
    let d = locked("locked-destroy", Attribute::Destroyable(false));
    expect_rvs(vec![
        (
            s.update_attributes(m, &[Attribute::Label(b"x".to_vec())]),
            RvError::ActionProhibited,
            "C_SetAttributeValue on CKA_MODIFIABLE FALSE",
        ),
        (
            s.copy_object(c, &[]).map(drop),
            RvError::ActionProhibited,
            "C_CopyObject on CKA_COPYABLE FALSE",
        ),
        (
            s.destroy_object(d),
            RvError::ActionProhibited,
            "C_DestroyObject on CKA_DESTROYABLE FALSE",
        ),
    ]);
    assert_eq!(
        find_label(&s, "locked-destroy"),
        vec![d],
        "object must survive"
    );
    // CKA_COPYABLE may not be set back to TRUE
    expect_rv(
        s.update_attributes(c, &[Attribute::Copyable(true)]),
        RvError::AttributeReadOnly,
        "C_SetAttributeValue CKA_COPYABLE FALSE→TRUE",
    );
}

#[test]
fn read_only_session_and_private_object_rules() {
    let (_env, p, slot, rw) = user_token();
    let private = rw
        .create_object(&data_template("private-data", true))
        .expect("C_CreateObject private data");
    let public = rw
        .create_object(&data_template("public-data", false))
        .expect("C_CreateObject public data");

    let ro = p.open_ro_session(slot).expect("C_OpenSession RO");
    assert_eq!(state(&ro), SessionState::RoUser);
    let x = [Attribute::Label(b"x".to_vec())];
    for (res, what) in [
        (
            ro.create_object(&data_template("ro-token", false))
                .map(drop),
            "C_CreateObject token object in RO session",
        ),
        (
            ro.destroy_object(public),
            "C_DestroyObject token object in RO session",
        ),
        (
            ro.update_attributes(public, &x),
            "C_SetAttributeValue token object in RO session",
        ),
        (
            ro.copy_object(public, &x).map(drop),
            "C_CopyObject to a token object in RO session",
        ),
    ] {
        expect_rv(res, RvError::SessionReadOnly, what);
    }
    let mut st = data_template("ro-session-object", false);
    st[1] = Attribute::Token(false);
    let so = ro
        .create_object(&st)
        .expect("C_CreateObject session object in RO session is allowed");
    ro.destroy_object(so)
        .expect("C_DestroyObject session object in RO session");

    // log out: private objects vanish
    rw.logout().expect("C_Logout");
    assert!(
        find_label(&rw, "private-data").is_empty(),
        "private object found when logged out"
    );
    assert_eq!(find_label(&rw, "public-data"), vec![public]);
    expect_rvs(vec![
        (
            rw.get_attributes(private, &[AttributeType::Label])
                .map(drop),
            RvError::ObjectHandleInvalid,
            "C_GetAttributeValue on a private object when logged out",
        ),
        (
            rw.destroy_object(private),
            RvError::ObjectHandleInvalid,
            "C_DestroyObject on a private object when logged out",
        ),
        (
            rw.create_object(&data_template("new-private", true))
                .map(drop),
            RvError::UserNotLoggedIn,
            "C_CreateObject CKA_PRIVATE TRUE when not logged in",
        ),
        (
            rw.create_object(&aes_template("aes-public-session", &[3; 16]))
                .map(drop),
            RvError::UserNotLoggedIn,
            "C_CreateObject key (private by default) when not logged in",
        ),
    ]);
    let pd = rw
        .create_object(&data_template("new-public", false))
        .expect("C_CreateObject public data in a public R/W session");
    rw.destroy_object(pd).expect("C_DestroyObject");
    rw.login(UserType::User, Some(&pin(USER_PIN)))
        .expect("C_Login");
    // §2.4: a handle need not survive a logout, but the object must be back
    let again = find_label(&rw, "private-data");
    assert_eq!(again.len(), 1, "private object visible again after C_Login");
    assert_eq!(
        get_bytes(&rw, again[0], AttributeType::Value).unwrap(),
        b"some data"
    );
    let _ = private;
}

// ---------------------------------------------------------------------------
// key policies
// ---------------------------------------------------------------------------

#[test]
fn hsm_policy_keeps_keys_sensitive() {
    let (env, _p, _slot, s) = user_token();
    let key = [0x5au8; 32];
    let k = s
        .create_object(&aes_template("aes", &key))
        .expect("C_CreateObject AES");
    let flags = [AttributeType::Sensitive, AttributeType::Extractable];
    assert_bools(
        &s,
        k,
        "hsm: an AES key",
        &[(flags[0], true), (flags[1], false)],
    );
    assert_sensitive(
        &s,
        k,
        AttributeType::Value,
        "hsm: CKA_VALUE must be CKR_ATTRIBUTE_SENSITIVE",
    );
    assert_eq!(
        get_bytes(&s, k, AttributeType::Value),
        None,
        "CKA_VALUE must not be returned"
    );

    let mut t = aes_template("weak", &key);
    t.push(Attribute::Sensitive(false));
    expect_rv(
        s.create_object(&t),
        RvError::AttributeValueInvalid,
        "hsm: C_CreateObject with CKA_SENSITIVE FALSE",
    );
    assert!(
        env.log().contains("key policy is 'hsm'"),
        "hsm refusal must be logged mentioning \"key policy is 'hsm'\""
    );
    let mut t = aes_template("extractable", &key);
    t.push(Attribute::Extractable(true));
    let e = s
        .create_object(&t)
        .expect("hsm: CKA_EXTRACTABLE TRUE on a sensitive key is allowed");
    assert!(get_bool(&s, e, AttributeType::Sensitive));
    assert_sensitive(
        &s,
        e,
        AttributeType::Value,
        "CKA_VALUE must be CKR_ATTRIBUTE_SENSITIVE",
    );

    let weaker = [Attribute::Sensitive(false), Attribute::Extractable(true)];
    for (a, what) in weaker
        .iter()
        .zip(["CKA_SENSITIVE TRUE→FALSE", "CKA_EXTRACTABLE FALSE→TRUE"])
    {
        expect_rv(
            s.update_attributes(k, std::slice::from_ref(a)),
            RvError::AttributeReadOnly,
            &format!("C_SetAttributeValue {what}"),
        );
    }
    for (a, what) in weaker
        .iter()
        .zip(["CKA_SENSITIVE FALSE", "CKA_EXTRACTABLE TRUE"])
    {
        expect_rv(
            s.copy_object(k, std::slice::from_ref(a)),
            RvError::AttributeReadOnly,
            &format!("C_CopyObject with {what}"),
        );
    }
    let c = s
        .copy_object(k, &[Attribute::Label(b"aes-copy".to_vec())])
        .expect("C_CopyObject");
    assert!(get_bool(&s, c, AttributeType::Sensitive));
    assert_sensitive(
        &s,
        c,
        AttributeType::Value,
        "CKA_VALUE must be CKR_ATTRIBUTE_SENSITIVE",
    );
    // a sensitive key's value never matches in a search
    assert!(
        s.find_objects(&[Attribute::Value(key.to_vec())])
            .unwrap()
            .is_empty(),
        "C_FindObjects must not match on a sensitive CKA_VALUE"
    );
    s.update_attributes(e, &[Attribute::Extractable(false)])
        .expect("CKA_EXTRACTABLE TRUE→FALSE");
    assert!(!get_bool(&s, e, AttributeType::Extractable));
}

fn check_spec_policy(p: &Pkcs11) {
    let slot = ready_token(p, LABEL);
    let s = user_session(p, slot);
    let key = [0x3cu8; 16];
    let k = s
        .create_object(&aes_template("aes", &key))
        .expect("C_CreateObject AES");
    let flags = [AttributeType::Sensitive, AttributeType::Extractable];
    assert_bools(
        &s,
        k,
        "spec: defaults",
        &[(flags[0], false), (flags[1], true)],
    );
    assert_eq!(
        get_bytes(&s, k, AttributeType::Value).as_deref(),
        Some(&key[..]),
        "spec: CKA_VALUE of a non-sensitive key is readable"
    );
    assert_eq!(
        s.find_objects(&[Attribute::Value(key.to_vec())]).unwrap(),
        vec![k],
        "a non-sensitive key matches on CKA_VALUE"
    );
    let mut t = aes_template("explicit-weak", &key);
    t.push(Attribute::Sensitive(false));
    s.create_object(&t)
        .expect("spec: CKA_SENSITIVE FALSE is allowed");

    // weakening a copy is refused
    let c = s
        .copy_object(k, &[Attribute::Sensitive(true)])
        .expect("C_CopyObject with CKA_SENSITIVE TRUE");
    assert!(get_bool(&s, c, AttributeType::Sensitive));
    assert_sensitive(
        &s,
        c,
        AttributeType::Value,
        "CKA_VALUE must be CKR_ATTRIBUTE_SENSITIVE",
    );
    expect_rv(
        s.copy_object(c, &[Attribute::Sensitive(false)]),
        RvError::AttributeReadOnly,
        "C_CopyObject of a sensitive key with CKA_SENSITIVE FALSE",
    );

    s.update_attributes(k, &[Attribute::Sensitive(true)])
        .expect("C_SetAttributeValue CKA_SENSITIVE FALSE→TRUE");
    assert_sensitive(
        &s,
        k,
        AttributeType::Value,
        "CKA_VALUE sensitive after CKA_SENSITIVE→TRUE",
    );
    assert!(
        !get_bool(&s, k, AttributeType::AlwaysSensitive),
        "CKA_ALWAYS_SENSITIVE stays FALSE"
    );
    expect_rv(
        s.update_attributes(k, &[Attribute::Sensitive(false)]),
        RvError::AttributeReadOnly,
        "C_SetAttributeValue CKA_SENSITIVE TRUE→FALSE",
    );
    s.update_attributes(k, &[Attribute::Extractable(false)])
        .expect("C_SetAttributeValue CKA_EXTRACTABLE TRUE→FALSE");
    expect_rv(
        s.update_attributes(k, &[Attribute::Extractable(true)]),
        RvError::AttributeReadOnly,
        "C_SetAttributeValue CKA_EXTRACTABLE FALSE→TRUE",
    );
    assert!(
        !get_bool(&s, k, AttributeType::NeverExtractable),
        "CKA_NEVER_EXTRACTABLE stays FALSE"
    );
}

#[test]
fn spec_policy_from_env() {
    let env = TestEnv::new();
    set_spec_policy_env();
    let p = env.load();
    check_spec_policy(&p);
}

#[test]
fn spec_policy_from_config() {
    let env = TestEnv::with_config("default_policy = \"spec\"");
    let p = env.load();
    check_spec_policy(&p);
}

// ---------------------------------------------------------------------------
// find
// ---------------------------------------------------------------------------

#[test]
fn find_by_label_id_class_and_snapshot() {
    let (_env, _p, _slot, s) = user_token();
    let mut made = Vec::new();
    for i in 0..5u8 {
        let t = data_template(&format!("obj-{}", i % 2), false);
        made.push(s.create_object(&t).expect("C_CreateObject"));
    }
    let mut t = aes_template("obj-0", &[1; 16]);
    t.push(Attribute::Id(vec![2]));
    let key = s.create_object(&t).expect("C_CreateObject AES");
    let cert = s
        .create_object(&[
            Attribute::Class(ObjectClass::CERTIFICATE),
            Attribute::CertificateType(CertificateType::X_509),
            Attribute::Token(true),
            Attribute::Label(b"cert".to_vec()),
            Attribute::Id(vec![2]),
            Attribute::Subject(from_hex(CERT_SUBJECT)),
            Attribute::Value(from_hex(CERT_DER)),
        ])
        .expect("C_CreateObject certificate");

    let mut by_label = find_label(&s, "obj-0");
    by_label.sort_by_key(|h| h.handle());
    let mut want = vec![made[0], made[2], made[4], key];
    want.sort_by_key(|h| h.handle());
    assert_eq!(by_label, want, "find by CKA_LABEL");
    let mut by_id = s.find_objects(&[Attribute::Id(vec![2])]).unwrap();
    by_id.sort_by_key(|h| h.handle());
    let mut want = vec![key, cert];
    want.sort_by_key(|h| h.handle());
    assert_eq!(by_id, want, "find by CKA_ID");
    assert!(
        s.find_objects(&[Attribute::Id(vec![3])])
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        s.find_objects(&[
            Attribute::Id(vec![2]),
            Attribute::Class(ObjectClass::CERTIFICATE)
        ])
        .unwrap(),
        vec![cert],
        "find by CKA_ID + CKA_CLASS"
    );
    assert_eq!(
        s.find_objects(&[Attribute::Class(ObjectClass::SECRET_KEY)])
            .unwrap(),
        vec![key],
        "find by CKA_CLASS"
    );
    assert_eq!(
        s.find_objects(&[Attribute::Class(ObjectClass::DATA)])
            .unwrap()
            .len(),
        5
    );
    assert!(find_label(&s, "nothing").is_empty());
    assert_eq!(
        s.find_objects(&[]).unwrap().len(),
        7,
        "empty template finds all"
    );
    assert_eq!(
        s.find_objects(&[Attribute::Sensitive(true)]).unwrap(),
        vec![key],
        "find by CKA_SENSITIVE"
    );

    // snapshot at C_FindObjectsInit, and CKR_OPERATION_ACTIVE on a second init
    let mut it = s
        .iter_objects_with_cache_size(
            &[Attribute::Class(ObjectClass::DATA)],
            1.try_into().unwrap(),
        )
        .expect("C_FindObjectsInit");
    let first = it.next().expect("one result").expect("C_FindObjects");
    expect_rv(
        s.find_objects(&[]),
        RvError::OperationActive,
        "second C_FindObjectsInit while a search is active",
    );
    let late = s
        .create_object(&data_template("late", false))
        .expect("C_CreateObject during a search");
    let mut rest: Vec<ObjectHandle> = it.map(|r| r.expect("C_FindObjects")).collect();
    rest.push(first);
    assert_eq!(rest.len(), 5, "search results are a snapshot taken at init");
    assert!(
        !rest.contains(&late),
        "object created after init must not appear"
    );
    assert_eq!(find_label(&s, "late"), vec![late]);
}

#[test]
fn session_objects_shared_and_die_with_session() {
    let (_env, p, slot, a) = user_token();
    let b = p.open_rw_session(slot).expect("C_OpenSession");
    let mut t = data_template("sess-obj", false);
    t[1] = Attribute::Token(false);
    let o = a.create_object(&t).expect("C_CreateObject session object");
    let mut kt = aes_template("sess-key", &[4; 16]);
    kt[2] = Attribute::Token(false);
    let k = a.create_object(&kt).expect("C_CreateObject session key");
    assert_eq!(
        find_label(&b, "sess-obj"),
        vec![o],
        "visible from another session"
    );
    assert_eq!(find_label(&b, "sess-key"), vec![k]);
    assert_eq!(
        get_bytes(&b, o, AttributeType::Value).unwrap(),
        b"some data"
    );
    a.close().expect("C_CloseSession");
    assert!(
        find_label(&b, "sess-obj").is_empty(),
        "session object dies with its session"
    );
    assert!(find_label(&b, "sess-key").is_empty());
    expect_rv(
        b.get_attributes(o, &[AttributeType::Label]),
        RvError::ObjectHandleInvalid,
        "handle of a dead session object",
    );
}

// ---------------------------------------------------------------------------
// digest, random, unsupported functions
// ---------------------------------------------------------------------------

#[test]
fn digest_known_answers_and_mechanism_info() {
    let (_env, p, slot) = token();
    let kats = [
        "a9993e364706816aba3e25717850c26c9cd0d89d",
        "23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7",
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
        "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7",
        "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
    ];
    let list = p.get_mechanism_list(slot).expect("C_GetMechanismList");
    let s = p.open_ro_session(slot).expect("C_OpenSession");
    for ((m, mt), kat) in digest_mechs().iter().zip(kats) {
        // cryptoki 0.12 drops CKM_SHA224 from get_mechanism_list (unknown to its
        // conversion); raw_abi.rs checks the raw list.
        if *mt != MechanismType::SHA224 {
            assert!(list.contains(mt), "{mt:?} missing from C_GetMechanismList");
        }
        let info = p.get_mechanism_info(slot, *mt).expect("C_GetMechanismInfo");
        assert!(
            info.digest() && info.hardware(),
            "{mt:?}: CKF_DIGEST|CKF_HW"
        );
        let d = s.digest(m, b"abc").expect("C_Digest");
        assert_eq!(to_hex(&d), kat, "{mt:?}(\"abc\") FIPS 180 known answer");
        s.digest_init(m).expect("C_DigestInit");
        s.digest_update(b"a").expect("C_DigestUpdate");
        s.digest_update(b"").expect("C_DigestUpdate empty");
        s.digest_update(b"bc").expect("C_DigestUpdate");
        assert_eq!(to_hex(&s.digest_final().expect("C_DigestFinal")), kat);
        assert_eq!(
            s.digest(m, b"").expect("C_Digest empty"),
            reference_digest(*mt, b""),
            "{mt:?} of the empty string"
        );
    }
    // public session works without login; not an operation in progress afterwards
    expect_rv(
        s.digest_final(),
        RvError::OperationNotInitialized,
        "C_DigestFinal with no operation",
    );
    expect_rv(
        s.digest_update(b"x"),
        RvError::OperationNotInitialized,
        "C_DigestUpdate with no operation",
    );
    s.digest_init(&Mechanism::Sha256).expect("C_DigestInit");
    expect_rv(
        s.digest_init(&Mechanism::Sha256),
        RvError::OperationActive,
        "second C_DigestInit",
    );
    s.digest_final().expect("C_DigestFinal");
    expect_rv(
        s.digest_init(&Mechanism::AesEcb),
        RvError::MechanismInvalid,
        "C_DigestInit with CKM_AES_ECB",
    );
    expect_rv(
        p.get_mechanism_info(
            slot,
            MechanismType::new_vendor_defined(cryptoki_sys::CKM_VENDOR_DEFINED | 0x77).unwrap(),
        ),
        RvError::MechanismInvalid,
        "C_GetMechanismInfo for an unsupported mechanism",
    );
}

#[test]
fn digest_random_split_multipart_equals_single_part() {
    let (_env, p, slot) = token();
    let s = p.open_ro_session(slot).expect("C_OpenSession");
    let seed_bytes = s.generate_random_vec(8).expect("C_GenerateRandom");
    let mut rng = XorShift(u64::from_le_bytes(seed_bytes.try_into().unwrap()) | 1);
    for (m, mt) in digest_mechs() {
        for _ in 0..20 {
            let len = rng.below(3000);
            let data: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
            let single = s.digest(&m, &data).expect("C_Digest");
            assert_eq!(
                single,
                reference_digest(mt, &data),
                "{mt:?} single-part, len {len}"
            );
            s.digest_init(&m).expect("C_DigestInit");
            let mut pos = 0;
            let mut splits = Vec::new();
            while pos < data.len() {
                let n = rng.below(data.len() - pos + 1).min(700);
                s.digest_update(&data[pos..pos + n])
                    .expect("C_DigestUpdate");
                splits.push(n);
                pos += n;
            }
            let multi = s.digest_final().expect("C_DigestFinal");
            assert_eq!(multi, single, "{mt:?} multi-part {splits:?} != single-part");
        }
    }
}

#[test]
fn digest_key_rules() {
    // hsm policy: a sensitive key is indigestible and ends the operation
    let (_env, _p, _slot, s) = user_token();
    let k = s
        .create_object(&aes_template("aes", &[0x11; 16]))
        .expect("C_CreateObject");
    s.digest_init(&Mechanism::Sha256).expect("C_DigestInit");
    s.digest_update(b"abc").expect("C_DigestUpdate");
    expect_rv(
        s.digest_key(k),
        RvError::KeyIndigestible,
        "C_DigestKey of a sensitive key",
    );
    expect_rv(
        s.digest_final(),
        RvError::OperationNotInitialized,
        "C_DigestKey failure must end the digest operation",
    );
    s.digest_init(&Mechanism::Sha256)
        .expect("C_DigestInit after failure");
    s.digest_update(b"abc").expect("C_DigestUpdate");
    assert_eq!(
        s.digest_final().expect("C_DigestFinal"),
        sha2::Sha256::digest(b"abc").to_vec()
    );
}

#[test]
fn digest_key_of_non_sensitive_secret() {
    let env = TestEnv::new();
    set_spec_policy_env();
    let p = env.load();
    let slot = ready_token(&p, LABEL);
    let s = user_session(&p, slot);
    let value = b"generic-secret-value".to_vec();
    let g = s
        .create_object(&[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::Token(false),
            Attribute::Value(value.clone()),
        ])
        .expect("C_CreateObject generic secret");
    assert!(!get_bool(&s, g, AttributeType::Sensitive));
    s.digest_init(&Mechanism::Sha256).expect("C_DigestInit");
    s.digest_update(b"abc").expect("C_DigestUpdate");
    s.digest_key(g).expect("C_DigestKey of a non-sensitive key");
    s.digest_update(b"xyz").expect("C_DigestUpdate");
    let d = s.digest_final().expect("C_DigestFinal");
    let mut all = b"abc".to_vec();
    all.extend_from_slice(&value);
    all.extend_from_slice(b"xyz");
    assert_eq!(
        d,
        sha2::Sha256::digest(&all).to_vec(),
        "C_DigestKey digests CKA_VALUE"
    );
}

#[test]
fn random_and_unsupported_functions() {
    let (_env, p, slot, s) = user_token();
    let a = s.generate_random_vec(64).expect("C_GenerateRandom");
    let b = s.generate_random_vec(64).expect("C_GenerateRandom");
    assert_eq!(a.len(), 64);
    assert_ne!(a, b, "two random outputs must differ");
    assert!(a.iter().any(|&x| x != 0), "random output all zero");
    let mut buf = [0u8; 0];
    s.generate_random_slice(&mut buf)
        .expect("C_GenerateRandom of 0 bytes");
    s.seed_random(b"seed")
        .expect("C_SeedRandom is accepted (and ignored)");
    assert!(
        matches!(p.get_slot_event(), Ok(None)),
        "C_WaitForSlotEvent(CKF_DONT_BLOCK) must be CKR_NO_EVENT"
    );

    let k = s
        .create_object(&aes_template("aes", &[0x22; 16]))
        .expect("C_CreateObject");
    // Functions with no mechanism advertising them must be CKR_FUNCTION_NOT_SUPPORTED;
    // once a mechanism advertises them, they must not be.
    let infos: Vec<_> = p
        .get_mechanism_list(slot)
        .expect("C_GetMechanismList")
        .into_iter()
        .map(|mt| p.get_mechanism_info(slot, mt).expect("C_GetMechanismInfo"))
        .collect();
    let adv = |f: fn(&cryptoki::mechanism::MechanismInfo) -> bool| infos.iter().any(f);
    let aes_ecb = Mechanism::AesEcb;
    let (hmac, kw) = (Mechanism::Sha256Hmac, Mechanism::AesKeyWrap);
    let rsa_bits = [Attribute::ModulusBits(2048u64.into())];
    for (advertised, res, what) in [
        (
            adv(|i| i.encrypt()),
            s.encrypt_init(&aes_ecb, k),
            "C_EncryptInit",
        ),
        (
            adv(|i| i.decrypt()),
            s.decrypt_init(&aes_ecb, k),
            "C_DecryptInit",
        ),
        (adv(|i| i.sign()), s.sign_init(&hmac, k), "C_SignInit"),
        (adv(|i| i.verify()), s.verify_init(&hmac, k), "C_VerifyInit"),
        (
            adv(|i| i.generate()),
            s.generate_key(&Mechanism::AesKeyGen, &[Attribute::ValueLen(16u64.into())])
                .map(drop),
            "C_GenerateKey",
        ),
        (
            adv(|i| i.generate_key_pair()),
            s.generate_key_pair(&Mechanism::RsaPkcsKeyPairGen, &rsa_bits, &[])
                .map(drop),
            "C_GenerateKeyPair",
        ),
        (
            adv(|i| i.wrap()),
            s.wrap_key(&kw, k, k).map(drop),
            "C_WrapKey",
        ),
        (
            adv(|i| i.unwrap()),
            s.unwrap_key(&kw, k, &[0; 24], &[]).map(drop),
            "C_UnwrapKey",
        ),
        (
            adv(|i| i.message_encrypt()),
            s.message_encrypt_init(&aes_ecb, k),
            "C_MessageEncryptInit",
        ),
    ] {
        check_unsupported(advertised, res, what);
    }
}

/// No mechanism advertises the function: it must return CKR_FUNCTION_NOT_SUPPORTED;
/// some mechanism does: it must not.
#[track_caller]
fn check_unsupported<T: std::fmt::Debug>(
    advertised: bool,
    res: cryptoki::error::Result<T>,
    what: &str,
) {
    if advertised {
        assert!(
            !matches!(res, Err(Error::Pkcs11(RvError::FunctionNotSupported, _))),
            "{what}: a mechanism advertises it, yet CKR_FUNCTION_NOT_SUPPORTED"
        );
    } else {
        expect_rv(res, RvError::FunctionNotSupported, what);
    }
}

// ---------------------------------------------------------------------------
// concurrency
// ---------------------------------------------------------------------------

/// One session used by many threads at once, which PKCS#11 allows with OS locking.
struct SharedSession(Session);

// SAFETY: `Session` is !Sync only to discourage sharing; its methods take `&self`,
// only read the handle and the function list, and the module was initialised with
// CKF_OS_LOCKING_OK, so concurrent calls on one session handle are allowed by
// PKCS#11 (§5.1: an application may share a session among threads). The
// `closed` cell is only touched by `close`/drop, which happen after all threads join.
unsafe impl Sync for SharedSession {}

#[test]
fn ten_threads_share_one_session() {
    let (_env, p, slot) = token();
    let shared = SharedSession(user_session(&p, slot));
    let ok = std::sync::atomic::AtomicUsize::new(0);
    let busy = std::sync::atomic::AtomicUsize::new(0);
    std::thread::scope(|sc| {
        for t in 0..10u8 {
            let shared = &shared;
            let ok = &ok;
            let busy = &busy;
            sc.spawn(move || {
                for i in 0..60u32 {
                    let r = shared
                        .0
                        .generate_random_vec(32)
                        .unwrap_or_else(|e| panic!("thread {t}: C_GenerateRandom failed: {e:?}"));
                    assert_eq!(r.len(), 32);
                    let mut data = vec![t; 1 + (i as usize * 37) % 500];
                    data.extend_from_slice(&r);
                    match shared.0.digest(&Mechanism::Sha256, &data) {
                        Ok(d) => {
                            assert_eq!(
                                d,
                                sha2::Sha256::digest(&data).to_vec(),
                                "thread {t} iteration {i}: wrong digest from a shared session"
                            );
                            ok.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(Error::Pkcs11(RvError::OperationActive, _)) => {
                            busy.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        }
                        Err(e) => panic!(
                            "thread {t} iteration {i}: C_DigestInit/C_Digest failed with {e:?} \
                             (only CKR_OPERATION_ACTIVE is acceptable while another thread digests)"
                        ),
                    }
                }
            });
        }
    });
    let ok = ok.into_inner();
    assert!(ok > 0, "no digest succeeded ({} busy)", busy.into_inner());
    let s = shared.0;
    assert_eq!(
        s.digest(&Mechanism::Sha1, b"abc")
            .expect("C_Digest after the threads"),
        from_hex("a9993e364706816aba3e25717850c26c9cd0d89d"),
        "session still usable afterwards"
    );
}

// ---------------------------------------------------------------------------
// the log
// ---------------------------------------------------------------------------

#[test]
fn log_never_contains_pins_or_key_bytes() {
    let (env, p, slot) = token();
    let new_user = "Changed-User-PIN-77";
    let new_so = "Changed-SO-PIN-88";
    let printable_key = b"PrintableAESKeyMaterial-0123456Z";
    let binary_key: [u8; 16] = [
        0xd3, 0x9a, 0x4f, 0x71, 0x08, 0xe2, 0x5c, 0xb6, 0x1d, 0x83, 0xfa, 0x2e, 0x97, 0x40, 0x6b,
        0xc5,
    ];
    let rsa_d = from_hex(RSA_D);
    {
        let s = user_session(&p, slot);
        let _ = s.login(UserType::User, Some(&pin("Wrong-User-PIN-99")));
        s.create_object(&aes_template("k1", printable_key))
            .expect("C_CreateObject");
        s.create_object(&aes_template("k2", &binary_key))
            .expect("C_CreateObject");
        let mut weak = aes_template("k3", &binary_key);
        weak.push(Attribute::Sensitive(false));
        let _ = s.create_object(&weak);
        s.create_object(&[
            Attribute::Class(ObjectClass::PRIVATE_KEY),
            Attribute::KeyType(KeyType::RSA),
            Attribute::Token(true),
            Attribute::Modulus(from_hex(RSA_N)),
            Attribute::PublicExponent(vec![1, 0, 1]),
            Attribute::PrivateExponent(rsa_d.clone()),
        ])
        .expect("C_CreateObject RSA private");
        s.set_pin(&pin(USER_PIN), &pin(new_user))
            .expect("C_SetPIN user");
        s.logout().expect("C_Logout");
        s.login(UserType::So, Some(&pin(SO_PIN)))
            .expect("C_Login SO");
        s.set_pin(&pin(SO_PIN), &pin(new_so)).expect("C_SetPIN SO");
        s.init_pin(&pin(USER_PIN)).expect("C_InitPIN");
        let _ = s.login(UserType::So, Some(&pin("Wrong-SO-PIN-66")));
    }
    let log = env.log();
    assert!(
        !log.trim().is_empty(),
        "FERROHSM_LOG=debug:<file> produced no log at {}",
        env.log_path().display()
    );
    let lower = log.to_lowercase();
    let mut secrets: Vec<(String, String)> = vec![
        ("SO PIN".into(), SO_PIN.into()),
        ("user PIN".into(), USER_PIN.into()),
        ("new user PIN".into(), new_user.into()),
        ("new SO PIN".into(), new_so.into()),
        ("wrong user PIN".into(), "Wrong-User-PIN-99".into()),
        ("wrong SO PIN".into(), "Wrong-SO-PIN-66".into()),
        (
            "printable AES key".into(),
            String::from_utf8(printable_key.to_vec()).unwrap(),
        ),
    ];
    for (name, bytes) in [
        ("printable AES key", &printable_key[..]),
        ("binary AES key", &binary_key[..]),
        ("RSA private exponent", &rsa_d[..32]),
    ] {
        secrets.push((format!("{name} (hex)"), to_hex(bytes)));
        let dec: Vec<String> = bytes.iter().map(|b| b.to_string()).collect();
        secrets.push((format!("{name} (decimal list)"), dec.join(", ")));
        let hex_list: Vec<String> = bytes.iter().map(|b| format!("{b:#x}")).collect();
        secrets.push((format!("{name} (hex list)"), hex_list.join(", ")));
    }
    for pin_text in [SO_PIN, USER_PIN, new_user, new_so] {
        let dec: Vec<String> = pin_text.bytes().map(|b| b.to_string()).collect();
        secrets.push(("PIN bytes (decimal list)".into(), dec.join(", ")));
        secrets.push(("PIN (hex)".into(), to_hex(pin_text.as_bytes())));
    }
    for (name, needle) in secrets {
        assert!(
            !lower.contains(&needle.to_lowercase()),
            "the module log contains the {name} ({needle})"
        );
    }
}
