//! Raw C ABI checks of FerroHSM through `cryptoki-sys` function pointers obtained
//! with `C_GetFunctionList` (and `C_GetInterface` for the 3.0 functions): NULL
//! pointers, wrong lengths, bad handles, wrong session states, size queries,
//! `C_GetAttributeValue` per-attribute results and return-code precedence, and the
//! padding of the text fields of the info structures.

use std::ffi::c_void;
use std::ptr;

use cryptoki_sys::*;
use ferrohsm_tests::raw::{
    RawModule as Module, attr_bytes, attr_query, attr_ref, check, check_any, plain_mechanism,
    rv_name,
};
use ferrohsm_tests::tok::Tok;
use ferrohsm_tests::{SO_PIN, TestEnv, USER_PIN, ck, ck3};
use sha2::Digest;

// ---------------------------------------------------------------------------
// helpers
// ---------------------------------------------------------------------------

/// C_Initialize, initialise the spare token with SO and user PINs; returns the slot.
fn ready(m: &Module) -> CK_SLOT_ID {
    m.initialize();
    m.make_token("raw-abi")
}

/// A fresh process (its `TestEnv`, with `config` lines) and module with the
/// token ready (see `ready`).
fn ready_env(config: &str) -> (TestEnv, Module, CK_SLOT_ID) {
    let env = TestEnv::with_config(config);
    let m = Module::load();
    let slot = ready(&m);
    (env, m, slot)
}

/// `ready_env("")` and a R/W user session on the token.
fn user_session() -> (TestEnv, Module, CK_SLOT_ID, CK_SESSION_HANDLE) {
    let (env, m, slot) = ready_env("");
    let t = Tok::login(m, slot);
    (env, t.m, t.slot, t.s)
}

/// Creates a token AES key (default policy: sensitive) with the given value and ID.
fn create_aes(
    m: &Module,
    s: CK_SESSION_HANDLE,
    value: &mut [u8],
    id: &mut [u8],
) -> CK_OBJECT_HANDLE {
    let mut class = CKO_SECRET_KEY;
    let mut kt = CKK_AES;
    let mut tok: CK_BBOOL = CK_TRUE;
    let mut label = *b"raw-aes";
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        attr_ref(CKA_KEY_TYPE, &mut kt),
        attr_ref(CKA_TOKEN, &mut tok),
        attr_bytes(CKA_LABEL, &mut label),
        attr_bytes(CKA_VALUE, value),
        attr_bytes(CKA_ID, id),
    ];
    let mut h = CK_INVALID_HANDLE;
    check(
        ck!(
            m,
            C_CreateObject(s, t.as_mut_ptr(), t.len() as CK_ULONG, &mut h)
        ),
        CKR_OK,
        "C_CreateObject AES",
    );
    h
}

fn create_data(m: &Module, s: CK_SESSION_HANDLE, token: bool) -> CK_OBJECT_HANDLE {
    let mut class = CKO_DATA;
    let mut tok: CK_BBOOL = if token { CK_TRUE } else { CK_FALSE };
    let mut private: CK_BBOOL = CK_FALSE;
    let mut value = *b"raw data value";
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        attr_ref(CKA_TOKEN, &mut tok),
        attr_ref(CKA_PRIVATE, &mut private),
        attr_bytes(CKA_VALUE, &mut value),
    ];
    let mut h = CK_INVALID_HANDLE;
    check(
        ck!(
            m,
            C_CreateObject(s, t.as_mut_ptr(), t.len() as CK_ULONG, &mut h)
        ),
        CKR_OK,
        "C_CreateObject data",
    );
    h
}

fn sha256_mech() -> CK_MECHANISM {
    plain_mechanism(CKM_SHA256)
}

fn assert_padded(field: &[u8], what: &str) {
    assert!(
        !field.contains(&0),
        "{what}: text field contains NUL bytes: {field:?}"
    );
    assert!(
        std::str::from_utf8(field).is_ok(),
        "{what}: not UTF-8: {field:?}"
    );
}

fn padded_eq(field: &[u8], want: &str, what: &str) {
    assert_padded(field, what);
    let mut expect = vec![b' '; field.len()];
    expect[..want.len()].copy_from_slice(want.as_bytes());
    assert_eq!(
        String::from_utf8_lossy(field),
        String::from_utf8_lossy(&expect),
        "{what}: must be {want:?} padded with spaces"
    );
}

// ---------------------------------------------------------------------------
// C_Initialize / C_Finalize / info
// ---------------------------------------------------------------------------

unsafe extern "C" fn fake_create_mutex(_m: *mut *mut c_void) -> CK_RV {
    CKR_OK
}

#[test]
fn initialize_and_finalize_arguments() {
    let _env = TestEnv::new();
    let m = Module::load();
    let mut info = CK_INFO::default();
    check(
        ck!(m, C_GetInfo(&mut info)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_GetInfo before C_Initialize",
    );
    let mut n: CK_ULONG = 0;
    check(
        ck!(m, C_GetSlotList(CK_FALSE, ptr::null_mut(), &mut n)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_GetSlotList before C_Initialize",
    );

    let mut reserved = 0u8;
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: &mut reserved as *mut u8 as *mut c_void,
    };
    check(
        ck!(m, C_Initialize(&mut args as *mut _ as *mut c_void)),
        CKR_ARGUMENTS_BAD,
        "C_Initialize with pReserved non-NULL",
    );
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: Some(fake_create_mutex),
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: 0,
        pReserved: ptr::null_mut(),
    };
    check(
        ck!(m, C_Initialize(&mut args as *mut _ as *mut c_void)),
        CKR_ARGUMENTS_BAD,
        "C_Initialize with only CreateMutex supplied",
    );
    check(
        ck!(m, C_GetInfo(&mut info)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "refused C_Initialize must not initialise",
    );

    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: None,
        DestroyMutex: None,
        LockMutex: None,
        UnlockMutex: None,
        flags: CKF_OS_LOCKING_OK,
        pReserved: ptr::null_mut(),
    };
    check(
        ck!(m, C_Initialize(&mut args as *mut _ as *mut c_void)),
        CKR_OK,
        "C_Initialize(CKF_OS_LOCKING_OK)",
    );
    check(
        ck!(m, C_Initialize(ptr::null_mut())),
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
        "second C_Initialize",
    );
    let mut dummy = 0u8;
    check(
        ck!(m, C_Finalize(&mut dummy as *mut u8 as *mut c_void)),
        CKR_ARGUMENTS_BAD,
        "C_Finalize(non-NULL)",
    );
    check(
        ck!(m, C_GetInfo(&mut info)),
        CKR_OK,
        "still initialised after a refused C_Finalize",
    );
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    check(
        ck!(m, C_Finalize(ptr::null_mut())),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "second C_Finalize",
    );
    m.initialize();
    check(
        ck!(m, C_GetInfo(&mut info)),
        CKR_OK,
        "C_GetInfo after re-init",
    );
}

#[test]
fn info_structures_are_space_padded() {
    let _env = TestEnv::new();
    let m = Module::load();
    m.initialize();
    check(
        ck!(m, C_GetInfo(ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetInfo(NULL)",
    );
    let mut info = CK_INFO::default();
    check(ck!(m, C_GetInfo(&mut info)), CKR_OK, "C_GetInfo");
    assert_padded(&info.manufacturerID, "CK_INFO.manufacturerID");
    assert_padded(&info.libraryDescription, "CK_INFO.libraryDescription");
    assert!(
        info.cryptokiVersion.major >= 2,
        "cryptokiVersion {}.{}",
        info.cryptokiVersion.major,
        info.cryptokiVersion.minor
    );
    assert_eq!(info.flags, 0, "CK_INFO.flags must be 0");

    let slot = m.slot_list()[0];
    let mut si = CK_SLOT_INFO::default();
    check(
        ck!(m, C_GetSlotInfo(slot, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetSlotInfo(NULL)",
    );
    check(
        ck!(m, C_GetSlotInfo(0xdead, &mut si)),
        CKR_SLOT_ID_INVALID,
        "C_GetSlotInfo(bad slot)",
    );
    check(
        ck!(m, C_GetSlotInfo(slot, &mut si)),
        CKR_OK,
        "C_GetSlotInfo",
    );
    assert_padded(&si.slotDescription, "CK_SLOT_INFO.slotDescription");
    assert_padded(&si.manufacturerID, "CK_SLOT_INFO.manufacturerID");
    assert!(si.flags & CKF_TOKEN_PRESENT != 0, "CKF_TOKEN_PRESENT");

    let mut ti = CK_TOKEN_INFO::default();
    check(
        ck!(m, C_GetTokenInfo(slot, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetTokenInfo(NULL)",
    );
    check(
        ck!(m, C_GetTokenInfo(0xdead, &mut ti)),
        CKR_SLOT_ID_INVALID,
        "C_GetTokenInfo(bad slot)",
    );
    // uninitialised spare token
    check(
        ck!(m, C_GetTokenInfo(slot, &mut ti)),
        CKR_OK,
        "C_GetTokenInfo spare",
    );
    assert_padded(&ti.label, "spare CK_TOKEN_INFO.label");
    assert_eq!(
        ti.flags & CKF_TOKEN_INITIALIZED,
        0,
        "spare: not initialised"
    );

    // initialised token
    let so = Some(SO_PIN.as_bytes());
    check(
        m.init_token(slot, so, Some("padded label")),
        CKR_OK,
        "C_InitToken",
    );
    check(
        ck!(m, C_GetTokenInfo(slot, &mut ti)),
        CKR_OK,
        "C_GetTokenInfo",
    );
    padded_eq(&ti.label, "padded label", "CK_TOKEN_INFO.label");
    padded_eq(
        &ti.manufacturerID,
        "FerroHSM project",
        "CK_TOKEN_INFO.manufacturerID",
    );
    padded_eq(&ti.model, "FerroHSM", "CK_TOKEN_INFO.model");
    assert_padded(&ti.serialNumber, "CK_TOKEN_INFO.serialNumber");
    assert!(
        ti.serialNumber.iter().any(|&c| c != b' '),
        "serialNumber must not be blank"
    );
    assert_padded(&ti.utcTime, "CK_TOKEN_INFO.utcTime");
    assert!(
        ti.utcTime[..14].iter().all(u8::is_ascii_digit),
        "utcTime must be YYYYMMDDhhmmss..: {:?}",
        String::from_utf8_lossy(&ti.utcTime)
    );
    let want_flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_CLOCK_ON_TOKEN | CKF_TOKEN_INITIALIZED;
    assert_eq!(
        ti.flags, want_flags,
        "token flags: expected RNG|LOGIN_REQUIRED|CLOCK_ON_TOKEN|TOKEN_INITIALIZED, got {:#x}",
        ti.flags
    );
    assert_eq!(ti.ulMinPinLen, 4);
    assert_eq!(ti.ulMaxPinLen, 64);
    assert_eq!(ti.ulMaxSessionCount, 4096);
    assert_eq!(ti.ulSessionCount, 0);
    assert_eq!(ti.ulRwSessionCount, 0);
    for (v, n) in [
        (ti.ulTotalPublicMemory, "ulTotalPublicMemory"),
        (ti.ulFreePublicMemory, "ulFreePublicMemory"),
        (ti.ulTotalPrivateMemory, "ulTotalPrivateMemory"),
        (ti.ulFreePrivateMemory, "ulFreePrivateMemory"),
    ] {
        assert_eq!(
            v, CK_UNAVAILABLE_INFORMATION,
            "{n} must be CK_UNAVAILABLE_INFORMATION"
        );
    }
    let s = m.open(slot, true);
    let _r = m.open(slot, false);
    check(
        ck!(m, C_GetTokenInfo(slot, &mut ti)),
        CKR_OK,
        "C_GetTokenInfo",
    );
    assert_eq!(ti.ulSessionCount, 2, "ulSessionCount");
    assert_eq!(ti.ulRwSessionCount, 1, "ulRwSessionCount");
    check(
        m.login(s, CKU_SO, SO_PIN),
        CKR_SESSION_READ_ONLY_EXISTS,
        "SO login with RO open",
    );
}

// ---------------------------------------------------------------------------
// size queries
// ---------------------------------------------------------------------------

#[test]
fn slot_list_size_queries() {
    let _env = TestEnv::new();
    let m = Module::load();
    m.initialize();
    check(
        ck!(m, C_GetSlotList(CK_FALSE, ptr::null_mut(), ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetSlotList(_, NULL, NULL)",
    );
    let mut buf = [0 as CK_SLOT_ID; 4];
    check(
        ck!(
            m,
            C_GetSlotList(CK_FALSE, buf.as_mut_ptr(), ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD,
        "C_GetSlotList(_, list, NULL)",
    );
    let mut n: CK_ULONG = 77;
    check(
        ck!(m, C_GetSlotList(CK_FALSE, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_GetSlotList count",
    );
    assert_eq!(n, 1, "fresh process: one slot");
    let mut n0: CK_ULONG = 0;
    check(
        ck!(m, C_GetSlotList(CK_FALSE, buf.as_mut_ptr(), &mut n0)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetSlotList with a 0-entry buffer",
    );
    assert_eq!(n0, 1, "count must be set on CKR_BUFFER_TOO_SMALL");
    let mut n: CK_ULONG = 1;
    check(
        ck!(m, C_GetSlotList(CK_FALSE, buf.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_GetSlotList",
    );
    let slot = buf[0];
    let so = Some(SO_PIN.as_bytes());
    check(m.init_token(slot, so, Some("slots")), CKR_OK, "C_InitToken");
    let mut n: CK_ULONG = 1;
    check(
        ck!(m, C_GetSlotList(CK_FALSE, buf.as_mut_ptr(), &mut n)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetSlotList with a 1-entry buffer and 2 slots",
    );
    assert_eq!(n, 2, "count must be 2 after CKR_BUFFER_TOO_SMALL");
    let mut n: CK_ULONG = 4;
    check(
        ck!(m, C_GetSlotList(CK_TRUE, buf.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_GetSlotList(tokenPresent)",
    );
    assert_eq!(n, 2);
    assert_eq!(buf[0], slot, "initialised token keeps its slot ID");
    assert_ne!(buf[1], slot);
}

#[test]
fn mechanism_list_and_info() {
    let (_env, m, slot) = ready_env("");
    check(
        ck!(
            m,
            C_GetMechanismList(slot, ptr::null_mut(), ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD,
        "C_GetMechanismList(NULL count)",
    );
    let mut n: CK_ULONG = 0;
    check(
        ck!(m, C_GetMechanismList(0xdead, ptr::null_mut(), &mut n)),
        CKR_SLOT_ID_INVALID,
        "C_GetMechanismList(bad slot)",
    );
    check(
        ck!(m, C_GetMechanismList(slot, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_GetMechanismList count",
    );
    assert!(n >= 5, "at least the five SHA mechanisms, got {n}");
    let mut list = vec![0 as CK_MECHANISM_TYPE; n as usize];
    let mut small: CK_ULONG = n - 1;
    check(
        ck!(m, C_GetMechanismList(slot, list.as_mut_ptr(), &mut small)),
        CKR_BUFFER_TOO_SMALL,
        "C_GetMechanismList too small",
    );
    assert_eq!(small, n, "count must be set on CKR_BUFFER_TOO_SMALL");
    let mut full = n;
    check(
        ck!(m, C_GetMechanismList(slot, list.as_mut_ptr(), &mut full)),
        CKR_OK,
        "C_GetMechanismList",
    );
    assert_eq!(full, n);
    for mech in [CKM_SHA_1, CKM_SHA224, CKM_SHA256, CKM_SHA384, CKM_SHA512] {
        assert!(
            list.contains(&mech),
            "mechanism {mech:#x} missing from the list"
        );
        let mut mi = CK_MECHANISM_INFO::default();
        check(
            ck!(m, C_GetMechanismInfo(slot, mech, &mut mi)),
            CKR_OK,
            "C_GetMechanismInfo",
        );
        assert!(
            mi.flags & CKF_DIGEST != 0 && mi.flags & CKF_HW != 0,
            "mechanism {mech:#x}: CKF_DIGEST|CKF_HW expected, got {:#x}",
            mi.flags
        );
    }
    let mut mi = CK_MECHANISM_INFO::default();
    check(
        ck!(m, C_GetMechanismInfo(slot, CKM_SHA256, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetMechanismInfo(NULL)",
    );
    check(
        ck!(m, C_GetMechanismInfo(0xdead, CKM_SHA256, &mut mi)),
        CKR_SLOT_ID_INVALID,
        "C_GetMechanismInfo(bad slot)",
    );
    check(
        ck!(
            m,
            C_GetMechanismInfo(slot, CKM_VENDOR_DEFINED | 0x77, &mut mi)
        ),
        CKR_MECHANISM_INVALID,
        "C_GetMechanismInfo(unknown mechanism)",
    );
}

// ---------------------------------------------------------------------------
// sessions and login
// ---------------------------------------------------------------------------

#[test]
fn open_session_and_bad_handles() {
    let _env = TestEnv::new();
    let m = Module::load();
    m.initialize();
    let spare = m.slot_list()[0];
    let mut h: CK_SESSION_HANDLE = CK_INVALID_HANDLE;
    check(
        ck!(
            m,
            C_OpenSession(spare, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h)
        ),
        CKR_TOKEN_NOT_RECOGNIZED,
        "C_OpenSession on the uninitialised token",
    );
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    let slot = ready(&m);
    check(
        ck!(
            m,
            C_OpenSession(slot, CKF_RW_SESSION, ptr::null_mut(), None, &mut h)
        ),
        CKR_SESSION_PARALLEL_NOT_SUPPORTED,
        "C_OpenSession without CKF_SERIAL_SESSION",
    );
    check(
        ck!(
            m,
            C_OpenSession(
                slot,
                CKF_SERIAL_SESSION,
                ptr::null_mut(),
                None,
                ptr::null_mut()
            )
        ),
        CKR_ARGUMENTS_BAD,
        "C_OpenSession(..., NULL)",
    );
    check(
        ck!(
            m,
            C_OpenSession(0xdead, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h)
        ),
        CKR_SLOT_ID_INVALID,
        "C_OpenSession(bad slot)",
    );
    let s = m.open(slot, true);
    let mut info = CK_SESSION_INFO::default();
    check(
        ck!(m, C_GetSessionInfo(s, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetSessionInfo(NULL)",
    );
    check(
        ck!(m, C_GetSessionInfo(s, &mut info)),
        CKR_OK,
        "C_GetSessionInfo",
    );
    assert_eq!(info.slotID, slot);
    assert_eq!(info.state, CKS_RW_PUBLIC_SESSION);
    assert_eq!(info.flags, CKF_SERIAL_SESSION | CKF_RW_SESSION);

    // every session function with bad handles
    for bad in [CK_INVALID_HANDLE, s + 1000, 0xdead_beef] {
        let mut buf = [0u8; 64];
        let mut len: CK_ULONG = 64;
        let mut mech = sha256_mech();
        let mut obj: CK_OBJECT_HANDLE = 0;
        let mut count: CK_ULONG = 0;
        let mut pin = USER_PIN.as_bytes().to_vec();
        let what = |f: &str| format!("{f}(session {bad:#x})");
        check(
            ck!(m, C_GetSessionInfo(bad, &mut info)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_GetSessionInfo"),
        );
        check(
            ck!(m, C_CloseSession(bad)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_CloseSession"),
        );
        check(
            ck!(
                m,
                C_Login(bad, CKU_USER, pin.as_mut_ptr(), pin.len() as CK_ULONG)
            ),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_Login"),
        );
        check(
            ck!(m, C_Logout(bad)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_Logout"),
        );
        check(
            ck!(m, C_GenerateRandom(bad, buf.as_mut_ptr(), 16)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_GenerateRandom"),
        );
        check(
            ck!(m, C_DigestInit(bad, &mut mech)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_DigestInit"),
        );
        check(
            ck!(
                m,
                C_Digest(bad, buf.as_mut_ptr(), 3, buf.as_mut_ptr(), &mut len)
            ),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_Digest"),
        );
        check(
            ck!(m, C_FindObjectsInit(bad, ptr::null_mut(), 0)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_FindObjectsInit"),
        );
        check(
            ck!(m, C_FindObjects(bad, &mut obj, 1, &mut count)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_FindObjects"),
        );
        check(
            ck!(m, C_FindObjectsFinal(bad)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_FindObjectsFinal"),
        );
        check(
            ck!(m, C_CreateObject(bad, ptr::null_mut(), 0, &mut obj)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_CreateObject"),
        );
        check(
            ck!(m, C_DestroyObject(bad, 1)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_DestroyObject"),
        );
        check(
            ck!(m, C_GetAttributeValue(bad, 1, ptr::null_mut(), 0)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_GetAttributeValue"),
        );
        check(
            ck!(
                m,
                C_SetPIN(
                    bad,
                    pin.as_mut_ptr(),
                    pin.len() as CK_ULONG,
                    pin.as_mut_ptr(),
                    pin.len() as CK_ULONG
                )
            ),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_SetPIN"),
        );
        check(
            ck3!(m, C_SessionCancel(bad, CKF_DIGEST)),
            CKR_SESSION_HANDLE_INVALID,
            &what("C_SessionCancel"),
        );
    }

    // closed handles are invalid
    check(ck!(m, C_CloseSession(s)), CKR_OK, "C_CloseSession");
    check(
        ck!(m, C_GetSessionInfo(s, &mut info)),
        CKR_SESSION_HANDLE_INVALID,
        "C_GetSessionInfo on a closed session",
    );
    check(
        ck!(m, C_CloseSession(s)),
        CKR_SESSION_HANDLE_INVALID,
        "second C_CloseSession",
    );
    // C_CloseAllSessions
    check(
        ck!(m, C_CloseAllSessions(0xdead)),
        CKR_SLOT_ID_INVALID,
        "C_CloseAllSessions(bad slot)",
    );
    let a = m.open(slot, true);
    let b = m.open(slot, false);
    check(m.login(a, CKU_USER, USER_PIN), CKR_OK, "C_Login");
    check(
        ck!(m, C_CloseAllSessions(slot)),
        CKR_OK,
        "C_CloseAllSessions",
    );
    for h in [a, b] {
        check(
            ck!(m, C_GetSessionInfo(h, &mut info)),
            CKR_SESSION_HANDLE_INVALID,
            "session after C_CloseAllSessions",
        );
    }
    let c = m.open(slot, false);
    check(
        ck!(m, C_GetSessionInfo(c, &mut info)),
        CKR_OK,
        "C_GetSessionInfo",
    );
    assert_eq!(
        info.state, CKS_RO_PUBLIC_SESSION,
        "C_CloseAllSessions logs out"
    );
}

#[test]
fn login_arguments_and_states() {
    let (_env, m, slot) = ready_env("");
    let ro = m.open(slot, false);
    let rw = m.open(slot, true);
    check(
        ck!(m, C_Login(rw, CKU_USER, ptr::null_mut(), 8)),
        CKR_ARGUMENTS_BAD,
        "C_Login with NULL PIN",
    );
    let mut p = USER_PIN.as_bytes().to_vec();
    check(
        ck!(m, C_Login(rw, 7, p.as_mut_ptr(), p.len() as CK_ULONG)),
        CKR_USER_TYPE_INVALID,
        "C_Login with user type 7",
    );
    check(
        ck!(m, C_Logout(rw)),
        CKR_USER_NOT_LOGGED_IN,
        "C_Logout when not logged in",
    );
    check(
        m.login(rw, CKU_SO, SO_PIN),
        CKR_SESSION_READ_ONLY_EXISTS,
        "SO login with a RO session",
    );
    check(
        m.login(rw, CKU_USER, "wrong-pin"),
        CKR_PIN_INCORRECT,
        "wrong user PIN",
    );
    check(m.login(rw, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    check(
        m.login(ro, CKU_USER, USER_PIN),
        CKR_USER_ALREADY_LOGGED_IN,
        "second user login",
    );
    check(
        m.login(ro, CKU_SO, SO_PIN),
        CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
        "SO while user",
    );
    let mut info = CK_SESSION_INFO::default();
    check(
        ck!(m, C_GetSessionInfo(ro, &mut info)),
        CKR_OK,
        "C_GetSessionInfo",
    );
    assert_eq!(info.state, CKS_RO_USER_FUNCTIONS);
    check(ck!(m, C_Logout(ro)), CKR_OK, "C_Logout");
    check(ck!(m, C_CloseSession(ro)), CKR_OK, "C_CloseSession");

    check(m.login(rw, CKU_SO, SO_PIN), CKR_OK, "C_Login SO");
    let mut h = CK_INVALID_HANDLE;
    check(
        ck!(
            m,
            C_OpenSession(slot, CKF_SERIAL_SESSION, ptr::null_mut(), None, &mut h)
        ),
        CKR_SESSION_READ_WRITE_SO_EXISTS,
        "RO C_OpenSession while SO logged in",
    );
    check(
        m.login(rw, CKU_USER, USER_PIN),
        CKR_USER_ANOTHER_ALREADY_LOGGED_IN,
        "user while SO",
    );
    check(
        ck!(m, C_InitPIN(rw, ptr::null_mut(), 8)),
        CKR_ARGUMENTS_BAD,
        "C_InitPIN(NULL PIN)",
    );
    let mut short = *b"abc";
    check(
        ck!(m, C_InitPIN(rw, short.as_mut_ptr(), 3)),
        CKR_PIN_LEN_RANGE,
        "C_InitPIN with a 3-byte PIN",
    );
    check(
        ck!(
            m,
            C_SetPIN(rw, ptr::null_mut(), 8, p.as_mut_ptr(), p.len() as CK_ULONG)
        ),
        CKR_ARGUMENTS_BAD,
        "C_SetPIN(NULL old PIN)",
    );
    check(
        ck!(
            m,
            C_SetPIN(rw, p.as_mut_ptr(), p.len() as CK_ULONG, ptr::null_mut(), 8)
        ),
        CKR_ARGUMENTS_BAD,
        "C_SetPIN(NULL new PIN)",
    );
    check(ck!(m, C_Logout(rw)), CKR_OK, "C_Logout SO");
    check(
        ck!(m, C_InitPIN(rw, p.as_mut_ptr(), p.len() as CK_ULONG)),
        CKR_USER_NOT_LOGGED_IN,
        "C_InitPIN in a public session",
    );
    let ro = m.open(slot, false);
    let mut newp = *b"new-user-pin";
    check(
        ck!(
            m,
            C_SetPIN(
                ro,
                p.as_mut_ptr(),
                p.len() as CK_ULONG,
                newp.as_mut_ptr(),
                newp.len() as CK_ULONG
            )
        ),
        CKR_SESSION_READ_ONLY,
        "C_SetPIN in a RO session",
    );

    // C_InitToken arguments
    let so = Some(SO_PIN.as_bytes());
    check(
        m.init_token(slot, so, Some("x")),
        CKR_SESSION_EXISTS,
        "C_InitToken with sessions open",
    );
    check(
        ck!(m, C_CloseAllSessions(slot)),
        CKR_OK,
        "C_CloseAllSessions",
    );
    let x = Some("x");
    for (slot, pin, label, want, what) in [
        (slot, None, x, CKR_ARGUMENTS_BAD, "C_InitToken(NULL PIN)"),
        (slot, so, None, CKR_ARGUMENTS_BAD, "C_InitToken(NULL label)"),
        (0xdead, so, x, CKR_SLOT_ID_INVALID, "C_InitToken(bad slot)"),
        (
            slot,
            Some(&b"wrong-so-pin"[..]),
            x,
            CKR_PIN_INCORRECT,
            "C_InitToken with a wrong SO PIN",
        ),
    ] {
        check(m.init_token(slot, pin, label), want, what);
    }
}

#[test]
fn login_user_30_behaves_like_login() {
    let (_env, m, slot) = ready_env("");
    let s = m.open(slot, true);
    // C_LoginUser as CKU_USER named "someone"; `None` passes a NULL PIN.
    let login_user = |pin: Option<&[u8]>| {
        let mut name = *b"someone";
        let mut p = pin.map(<[u8]>::to_vec);
        let (pp, pl) = match &mut p {
            Some(v) => (v.as_mut_ptr(), v.len() as CK_ULONG),
            None => (ptr::null_mut(), 8),
        };
        let (np, nl) = (name.as_mut_ptr(), name.len() as CK_ULONG);
        ck3!(m, C_LoginUser(s, CKU_USER, pp, pl, np, nl))
    };
    let user = Some(USER_PIN.as_bytes());
    check(
        login_user(Some(b"wrong-pin")),
        CKR_PIN_INCORRECT,
        "C_LoginUser wrong PIN",
    );
    check(login_user(None), CKR_ARGUMENTS_BAD, "C_LoginUser NULL PIN");
    check(login_user(user), CKR_OK, "C_LoginUser");
    let mut info = CK_SESSION_INFO::default();
    check(
        ck!(m, C_GetSessionInfo(s, &mut info)),
        CKR_OK,
        "C_GetSessionInfo",
    );
    assert_eq!(info.state, CKS_RW_USER_FUNCTIONS, "state after C_LoginUser");
    check(
        login_user(user),
        CKR_USER_ALREADY_LOGGED_IN,
        "second C_LoginUser",
    );
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout");
}

#[test]
fn user_pin_lockout_raw_flags() {
    let (_env, m, slot) = ready_env("max_login_failures = 3");
    let s = m.open(slot, true);
    let flags = || {
        let mut ti = CK_TOKEN_INFO::default();
        check(
            ck!(m, C_GetTokenInfo(slot, &mut ti)),
            CKR_OK,
            "C_GetTokenInfo",
        );
        ti.flags & (CKF_USER_PIN_COUNT_LOW | CKF_USER_PIN_FINAL_TRY | CKF_USER_PIN_LOCKED)
    };
    assert_eq!(flags(), 0);
    check(
        m.login(s, CKU_USER, "bad-1"),
        CKR_PIN_INCORRECT,
        "wrong PIN #1",
    );
    assert_eq!(flags(), CKF_USER_PIN_COUNT_LOW, "after 1 of 3 failures");
    check(
        m.login(s, CKU_USER, "bad-2"),
        CKR_PIN_INCORRECT,
        "wrong PIN #2",
    );
    assert!(
        flags() & CKF_USER_PIN_FINAL_TRY != 0,
        "after 2 of 3: FINAL_TRY, got {:#x}",
        flags()
    );
    check_any(
        m.login(s, CKU_USER, "bad-3"),
        &[CKR_PIN_INCORRECT, CKR_PIN_LOCKED],
        "wrong PIN #3",
    );
    assert!(
        flags() & CKF_USER_PIN_LOCKED != 0,
        "after 3 failures: LOCKED, got {:#x}",
        flags()
    );
    check(
        m.login(s, CKU_USER, USER_PIN),
        CKR_PIN_LOCKED,
        "right PIN when locked",
    );
    check(m.login(s, CKU_SO, SO_PIN), CKR_OK, "C_Login SO");
    let mut p = USER_PIN.as_bytes().to_vec();
    check(
        ck!(m, C_InitPIN(s, p.as_mut_ptr(), p.len() as CK_ULONG)),
        CKR_OK,
        "C_InitPIN unlock",
    );
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout");
    assert_eq!(flags(), 0, "flags cleared by C_InitPIN");
    check(
        m.login(s, CKU_USER, USER_PIN),
        CKR_OK,
        "C_Login after unlock",
    );
}

// ---------------------------------------------------------------------------
// objects
// ---------------------------------------------------------------------------

#[test]
fn object_function_arguments() {
    let (_env, m, slot, s) = user_session();
    let mut h = CK_INVALID_HANDLE;
    check(
        ck!(m, C_CreateObject(s, ptr::null_mut(), 2, &mut h)),
        CKR_ARGUMENTS_BAD,
        "C_CreateObject(NULL template, count 2)",
    );
    let mut class = CKO_DATA;
    let mut t = [attr_ref(CKA_CLASS, &mut class)];
    check(
        ck!(m, C_CreateObject(s, t.as_mut_ptr(), 1, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_CreateObject(NULL phObject)",
    );
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        CK_ATTRIBUTE {
            type_: CKA_VALUE,
            pValue: ptr::null_mut(),
            ulValueLen: 5,
        },
    ];
    check(
        ck!(m, C_CreateObject(s, t.as_mut_ptr(), 2, &mut h)),
        CKR_ARGUMENTS_BAD,
        "C_CreateObject with pValue NULL and ulValueLen 5",
    );
    let mut wide_bool: CK_ULONG = 1;
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        attr_ref(CKA_TOKEN, &mut wide_bool),
    ];
    check(
        ck!(m, C_CreateObject(s, t.as_mut_ptr(), 2, &mut h)),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject with an 8-byte CK_BBOOL",
    );
    let mut short_class = [0u8; 2];
    let mut t = [attr_bytes(CKA_CLASS, &mut short_class)];
    check(
        ck!(m, C_CreateObject(s, t.as_mut_ptr(), 1, &mut h)),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject with a 2-byte CKA_CLASS",
    );
    let mut empty_tpl: [CK_ATTRIBUTE; 0] = [];
    check(
        ck!(m, C_CreateObject(s, empty_tpl.as_mut_ptr(), 0, &mut h)),
        CKR_TEMPLATE_INCOMPLETE,
        "C_CreateObject with an empty template",
    );

    let o = create_data(&m, s, true);
    // C_GetObjectSize
    let mut size: CK_ULONG = 0;
    check(
        ck!(m, C_GetObjectSize(s, o, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_GetObjectSize(NULL)",
    );
    check(
        ck!(m, C_GetObjectSize(s, 0xdead_beef, &mut size)),
        CKR_OBJECT_HANDLE_INVALID,
        "C_GetObjectSize(bad object)",
    );
    check(
        ck!(m, C_GetObjectSize(s, o, &mut size)),
        CKR_OK,
        "C_GetObjectSize",
    );
    assert!(
        size > 0,
        "C_GetObjectSize must report a size (or CK_UNAVAILABLE_INFORMATION)"
    );
    // C_GetAttributeValue / C_SetAttributeValue / C_CopyObject / C_DestroyObject
    check(
        ck!(m, C_GetAttributeValue(s, o, ptr::null_mut(), 1)),
        CKR_ARGUMENTS_BAD,
        "C_GetAttributeValue(NULL template)",
    );
    let mut cls: CK_OBJECT_CLASS = 0;
    let mut t = [attr_ref(CKA_CLASS, &mut cls)];
    check(
        ck!(m, C_GetAttributeValue(s, 0xdead_beef, t.as_mut_ptr(), 1)),
        CKR_OBJECT_HANDLE_INVALID,
        "C_GetAttributeValue(bad object)",
    );
    check(
        ck!(
            m,
            C_GetAttributeValue(s, CK_INVALID_HANDLE, t.as_mut_ptr(), 1)
        ),
        CKR_OBJECT_HANDLE_INVALID,
        "C_GetAttributeValue(CK_INVALID_HANDLE)",
    );
    check(
        ck!(m, C_SetAttributeValue(s, o, ptr::null_mut(), 1)),
        CKR_ARGUMENTS_BAD,
        "C_SetAttributeValue(NULL template)",
    );
    let mut label = *b"new-label";
    let mut t = [attr_bytes(CKA_LABEL, &mut label)];
    check(
        ck!(m, C_SetAttributeValue(s, 0xdead_beef, t.as_mut_ptr(), 1)),
        CKR_OBJECT_HANDLE_INVALID,
        "C_SetAttributeValue(bad object)",
    );
    let mut wide_bool: CK_ULONG = 1;
    let mut tb = [attr_ref(CKA_PRIVATE, &mut wide_bool)];
    check(
        ck!(m, C_SetAttributeValue(s, o, tb.as_mut_ptr(), 1)),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_SetAttributeValue with an 8-byte CK_BBOOL",
    );
    check(
        ck!(m, C_CopyObject(s, o, t.as_mut_ptr(), 1, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_CopyObject(NULL phNewObject)",
    );
    check(
        ck!(m, C_CopyObject(s, o, ptr::null_mut(), 1, &mut h)),
        CKR_ARGUMENTS_BAD,
        "C_CopyObject(NULL template, count 1)",
    );
    check(
        ck!(m, C_CopyObject(s, 0xdead_beef, t.as_mut_ptr(), 1, &mut h)),
        CKR_OBJECT_HANDLE_INVALID,
        "C_CopyObject(bad object)",
    );
    check(
        ck!(m, C_DestroyObject(s, 0xdead_beef)),
        CKR_OBJECT_HANDLE_INVALID,
        "C_DestroyObject(bad object)",
    );

    // read-only session and token objects
    let ro = m.open(slot, false);
    let mut tok: CK_BBOOL = CK_TRUE;
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        attr_ref(CKA_TOKEN, &mut tok),
    ];
    check(
        ck!(m, C_CreateObject(ro, t.as_mut_ptr(), 2, &mut h)),
        CKR_SESSION_READ_ONLY,
        "C_CreateObject token object in a RO session",
    );
    check(
        ck!(m, C_DestroyObject(ro, o)),
        CKR_SESSION_READ_ONLY,
        "C_DestroyObject token object in a RO session",
    );
    let mut t = [attr_bytes(CKA_LABEL, &mut label)];
    check(
        ck!(m, C_SetAttributeValue(ro, o, t.as_mut_ptr(), 1)),
        CKR_SESSION_READ_ONLY,
        "C_SetAttributeValue token object in a RO session",
    );
    check(ck!(m, C_DestroyObject(s, o)), CKR_OK, "C_DestroyObject");
    check(
        ck!(m, C_GetObjectSize(s, o, &mut size)),
        CKR_OBJECT_HANDLE_INVALID,
        "C_GetObjectSize on a destroyed object",
    );
}

#[test]
fn imported_key_attribute_values() {
    let (_env, m, _slot, s) = user_session();
    let mut value = [0x61u8; 16];
    let mut id = *b"id";
    let k = create_aes(&m, s, &mut value, &mut id);
    let mut kgm: CK_MECHANISM_TYPE = 0;
    let mut local: CK_BBOOL = 9;
    let mut asens: CK_BBOOL = 9;
    let mut nex: CK_BBOOL = 9;
    let mut sens: CK_BBOOL = 9;
    let mut ext: CK_BBOOL = 9;
    let mut vlen: CK_ULONG = 0;
    let mut t = [
        attr_ref(CKA_KEY_GEN_MECHANISM, &mut kgm),
        attr_ref(CKA_LOCAL, &mut local),
        attr_ref(CKA_ALWAYS_SENSITIVE, &mut asens),
        attr_ref(CKA_NEVER_EXTRACTABLE, &mut nex),
        attr_ref(CKA_SENSITIVE, &mut sens),
        attr_ref(CKA_EXTRACTABLE, &mut ext),
        attr_ref(CKA_VALUE_LEN, &mut vlen),
    ];
    check(
        ck!(
            m,
            C_GetAttributeValue(s, k, t.as_mut_ptr(), t.len() as CK_ULONG)
        ),
        CKR_OK,
        "C_GetAttributeValue",
    );
    assert_eq!(
        kgm, CK_UNAVAILABLE_INFORMATION,
        "imported CKA_KEY_GEN_MECHANISM"
    );
    assert_eq!(local, CK_FALSE, "imported CKA_LOCAL");
    assert_eq!(asens, CK_FALSE, "imported CKA_ALWAYS_SENSITIVE");
    assert_eq!(nex, CK_FALSE, "imported CKA_NEVER_EXTRACTABLE");
    assert_eq!(sens, CK_TRUE, "hsm: CKA_SENSITIVE");
    assert_eq!(ext, CK_FALSE, "hsm: CKA_EXTRACTABLE default");
    assert_eq!(vlen, 16, "CKA_VALUE_LEN");
    // unique id: present, non-empty, different per object
    let uid = |h: CK_OBJECT_HANDLE| {
        let mut t = [attr_query(CKA_UNIQUE_ID)];
        check(
            ck!(m, C_GetAttributeValue(s, h, t.as_mut_ptr(), 1)),
            CKR_OK,
            "C_GetAttributeValue CKA_UNIQUE_ID length",
        );
        assert!(
            t[0].ulValueLen != CK_UNAVAILABLE_INFORMATION && t[0].ulValueLen > 0,
            "CKA_UNIQUE_ID must exist"
        );
        let mut buf = vec![0u8; t[0].ulValueLen as usize];
        let mut t = [attr_bytes(CKA_UNIQUE_ID, &mut buf)];
        check(
            ck!(m, C_GetAttributeValue(s, h, t.as_mut_ptr(), 1)),
            CKR_OK,
            "C_GetAttributeValue CKA_UNIQUE_ID",
        );
        buf
    };
    let d = create_data(&m, s, false);
    let u1 = uid(k);
    let u2 = uid(d);
    assert_ne!(u1, u2, "CKA_UNIQUE_ID must differ between objects");
}

#[test]
fn get_attribute_value_per_attribute_results_and_precedence() {
    let (_env, m, _slot, s) = user_session();
    let mut value = [0x7fu8; 32];
    let mut id = *b"eight-id";
    let k = create_aes(&m, s, &mut value, &mut id);

    const SENS: usize = 1;
    const INVALID: usize = 2;
    const SMALL: usize = 3;
    // one call mixing good, sensitive, invalid, too-small and length-query entries
    let mut label = [0u8; 32];
    let mut val = [0xeeu8; 32];
    let mut unknown = [0xeeu8; 8];
    let mut small_id = [0xeeu8; 2];
    let mut class: CK_OBJECT_CLASS = 0;
    let mk = |label: &mut [u8; 32],
              val: &mut [u8; 32],
              unknown: &mut [u8; 8],
              small_id: &mut [u8; 2],
              class: &mut CK_OBJECT_CLASS| {
        [
            attr_bytes(CKA_LABEL, label),
            attr_bytes(CKA_VALUE, val),
            attr_bytes(CKA_VENDOR_DEFINED | 0x5151, unknown),
            attr_bytes(CKA_ID, small_id),
            attr_ref(CKA_CLASS, class),
            attr_query(CKA_VALUE_LEN),
        ]
    };
    let check_good = |t: &[CK_ATTRIBUTE], label: &[u8; 32], class: CK_OBJECT_CLASS, what: &str| {
        assert_eq!(t[0].ulValueLen, 7, "{what}: CKA_LABEL length");
        assert_eq!(&label[..7], b"raw-aes", "{what}: CKA_LABEL value filled");
        assert_eq!(class, CKO_SECRET_KEY, "{what}: CKA_CLASS filled");
        assert_eq!(t[4].ulValueLen, std::mem::size_of::<CK_ULONG>() as CK_ULONG);
        assert_eq!(
            t[5].ulValueLen,
            std::mem::size_of::<CK_ULONG>() as CK_ULONG,
            "{what}: NULL pValue must return CKA_VALUE_LEN's length"
        );
    };

    let mut t = mk(
        &mut label,
        &mut val,
        &mut unknown,
        &mut small_id,
        &mut class,
    );
    let rv = ck!(
        m,
        C_GetAttributeValue(s, k, t.as_mut_ptr(), t.len() as CK_ULONG)
    );
    check(
        rv,
        CKR_ATTRIBUTE_SENSITIVE,
        "mixed template (sensitive+invalid+too small): precedence",
    );
    assert_eq!(
        t[SENS].ulValueLen, CK_UNAVAILABLE_INFORMATION,
        "sensitive CKA_VALUE length"
    );
    assert_eq!(
        t[INVALID].ulValueLen, CK_UNAVAILABLE_INFORMATION,
        "unknown attribute length"
    );
    assert_eq!(
        t[SMALL].ulValueLen, CK_UNAVAILABLE_INFORMATION,
        "too-small CKA_ID length"
    );
    check_good(&t, &label, class, "mixed");
    assert_eq!(val, [0xee; 32], "sensitive value must not be written");
    assert!(!val.contains(&0x7f));

    // without the sensitive entry: CKR_ATTRIBUTE_TYPE_INVALID wins
    label = [0; 32];
    class = 0;
    let mut t = mk(
        &mut label,
        &mut val,
        &mut unknown,
        &mut small_id,
        &mut class,
    );
    t[SENS].type_ = CKA_KEY_TYPE; // readable, 8 bytes into a 32-byte buffer
    let rv = ck!(
        m,
        C_GetAttributeValue(s, k, t.as_mut_ptr(), t.len() as CK_ULONG)
    );
    check(
        rv,
        CKR_ATTRIBUTE_TYPE_INVALID,
        "invalid + too small: precedence",
    );
    assert_eq!(
        t[SENS].ulValueLen,
        std::mem::size_of::<CK_ULONG>() as CK_ULONG
    );
    assert_eq!(t[INVALID].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(t[SMALL].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    check_good(&t, &label, class, "invalid+small");

    // only too small: CKR_BUFFER_TOO_SMALL
    label = [0; 32];
    class = 0;
    let mut t = mk(
        &mut label,
        &mut val,
        &mut unknown,
        &mut small_id,
        &mut class,
    );
    t[SENS].type_ = CKA_KEY_TYPE;
    t[INVALID].type_ = CKA_TOKEN;
    t[INVALID].ulValueLen = 1;
    let rv = ck!(
        m,
        C_GetAttributeValue(s, k, t.as_mut_ptr(), t.len() as CK_ULONG)
    );
    check(rv, CKR_BUFFER_TOO_SMALL, "too small only");
    assert_eq!(t[SMALL].ulValueLen, CK_UNAVAILABLE_INFORMATION);
    assert_eq!(t[INVALID].ulValueLen, 1);
    assert_eq!(unknown[0], CK_TRUE, "CKA_TOKEN filled");
    check_good(&t, &label, class, "small only");
    assert_eq!(small_id, [0xee; 2], "too-small buffer must not be written");

    // a length query alone: of the sensitive value, and of an attribute not
    // on this class (CKA_MODULUS on a secret key)
    for (type_, want, what) in [
        (
            CKA_VALUE,
            CKR_ATTRIBUTE_SENSITIVE,
            "length query of a sensitive CKA_VALUE",
        ),
        (
            CKA_MODULUS,
            CKR_ATTRIBUTE_TYPE_INVALID,
            "CKA_MODULUS of a secret key",
        ),
    ] {
        let mut t = [attr_query(type_)];
        check(
            ck!(m, C_GetAttributeValue(s, k, t.as_mut_ptr(), 1)),
            want,
            what,
        );
        assert_eq!(t[0].ulValueLen, CK_UNAVAILABLE_INFORMATION, "{what}");
    }
    // exact-size query then fetch
    let mut id_buf = vec![0u8; 8];
    let mut t = [attr_bytes(CKA_ID, &mut id_buf)];
    check(
        ck!(m, C_GetAttributeValue(s, k, t.as_mut_ptr(), 1)),
        CKR_OK,
        "CKA_ID",
    );
    assert_eq!(id_buf, b"eight-id");
}

#[test]
fn find_objects_arguments_and_cancel() {
    let (_env, m, _slot, s) = user_session();
    let _a = create_data(&m, s, true);
    let _b = create_data(&m, s, false);
    let mut objs = [0 as CK_OBJECT_HANDLE; 8];
    let mut n: CK_ULONG = 0;
    check(
        ck!(m, C_FindObjects(s, objs.as_mut_ptr(), 8, &mut n)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_FindObjects without init",
    );
    check(
        ck!(m, C_FindObjectsFinal(s)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_FindObjectsFinal without init",
    );
    check(
        ck!(m, C_FindObjectsInit(s, ptr::null_mut(), 1)),
        CKR_ARGUMENTS_BAD,
        "C_FindObjectsInit(NULL template, count 1)",
    );
    check(
        ck!(m, C_FindObjectsInit(s, ptr::null_mut(), 0)),
        CKR_OK,
        "C_FindObjectsInit(all)",
    );
    check(
        ck!(m, C_FindObjectsInit(s, ptr::null_mut(), 0)),
        CKR_OPERATION_ACTIVE,
        "second C_FindObjectsInit",
    );
    check(
        ck!(m, C_FindObjects(s, objs.as_mut_ptr(), 8, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_FindObjects(NULL count)",
    );
    check(
        ck!(m, C_FindObjects(s, ptr::null_mut(), 8, &mut n)),
        CKR_ARGUMENTS_BAD,
        "C_FindObjects(NULL array, max 8)",
    );
    check(
        ck!(m, C_FindObjects(s, objs.as_mut_ptr(), 1, &mut n)),
        CKR_OK,
        "C_FindObjects max 1",
    );
    assert_eq!(n, 1);
    check(
        ck!(m, C_FindObjects(s, objs.as_mut_ptr(), 8, &mut n)),
        CKR_OK,
        "C_FindObjects",
    );
    assert_eq!(n, 1, "two objects in total");
    check(
        ck!(m, C_FindObjects(s, objs.as_mut_ptr(), 8, &mut n)),
        CKR_OK,
        "C_FindObjects at end",
    );
    assert_eq!(n, 0);
    check(ck!(m, C_FindObjectsFinal(s)), CKR_OK, "C_FindObjectsFinal");

    // C_SessionCancel(CKF_FIND_OBJECTS) ends the search
    check(
        ck!(m, C_FindObjectsInit(s, ptr::null_mut(), 0)),
        CKR_OK,
        "C_FindObjectsInit",
    );
    check(
        ck3!(m, C_SessionCancel(s, CKF_FIND_OBJECTS)),
        CKR_OK,
        "C_SessionCancel(FIND)",
    );
    check(
        ck!(m, C_FindObjects(s, objs.as_mut_ptr(), 8, &mut n)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_FindObjects after C_SessionCancel",
    );
    check(
        ck!(m, C_FindObjectsInit(s, ptr::null_mut(), 0)),
        CKR_OK,
        "C_FindObjectsInit again",
    );
    check(ck!(m, C_FindObjectsFinal(s)), CKR_OK, "C_FindObjectsFinal");
}

// ---------------------------------------------------------------------------
// digest
// ---------------------------------------------------------------------------

#[test]
fn digest_size_queries_keep_operation_alive() {
    let (_env, m, slot) = ready_env("");
    let s = m.open(slot, false);
    let want = sha2::Sha256::digest(b"abc").to_vec();
    let mut data = *b"abc";
    let mut mech = sha256_mech();

    check(ck!(m, C_DigestInit(s, &mut mech)), CKR_OK, "C_DigestInit");
    let mut len: CK_ULONG = 0;
    check(
        ck!(
            m,
            C_Digest(s, data.as_mut_ptr(), 3, ptr::null_mut(), &mut len)
        ),
        CKR_OK,
        "C_Digest size query (NULL pDigest)",
    );
    assert_eq!(len, 32, "C_Digest size query length");
    let mut out = [0u8; 64];
    let mut len: CK_ULONG = 10;
    check(
        ck!(
            m,
            C_Digest(s, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut len)
        ),
        CKR_BUFFER_TOO_SMALL,
        "C_Digest with a 10-byte buffer",
    );
    assert_eq!(len, 32, "length set on CKR_BUFFER_TOO_SMALL");
    let mut len: CK_ULONG = 64;
    check(
        ck!(
            m,
            C_Digest(s, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut len)
        ),
        CKR_OK,
        "C_Digest after a size query and CKR_BUFFER_TOO_SMALL (operation must still be active)",
    );
    assert_eq!(len, 32);
    assert_eq!(&out[..32], &want[..], "SHA-256(\"abc\")");
    check(
        ck!(
            m,
            C_Digest(s, data.as_mut_ptr(), 3, out.as_mut_ptr(), &mut len)
        ),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_Digest after a successful C_Digest",
    );

    // C_DigestFinal size query
    check(ck!(m, C_DigestInit(s, &mut mech)), CKR_OK, "C_DigestInit");
    check(
        ck!(m, C_DigestUpdate(s, data.as_mut_ptr(), 3)),
        CKR_OK,
        "C_DigestUpdate",
    );
    let mut len: CK_ULONG = 0;
    check(
        ck!(m, C_DigestFinal(s, ptr::null_mut(), &mut len)),
        CKR_OK,
        "C_DigestFinal size query",
    );
    assert_eq!(len, 32);
    let mut len: CK_ULONG = 31;
    check(
        ck!(m, C_DigestFinal(s, out.as_mut_ptr(), &mut len)),
        CKR_BUFFER_TOO_SMALL,
        "C_DigestFinal with a 31-byte buffer",
    );
    assert_eq!(len, 32);
    let mut len: CK_ULONG = 32;
    check(
        ck!(m, C_DigestFinal(s, out.as_mut_ptr(), &mut len)),
        CKR_OK,
        "C_DigestFinal",
    );
    assert_eq!(&out[..32], &want[..]);

    // NULL arguments
    check(
        ck!(m, C_DigestInit(s, ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_DigestInit(NULL)",
    );
    // mechanism checks
    let mut with_param = CK_MECHANISM {
        mechanism: CKM_SHA256,
        pParameter: data.as_mut_ptr() as *mut c_void,
        ulParameterLen: 3,
    };
    check(
        ck!(m, C_DigestInit(s, &mut with_param)),
        CKR_MECHANISM_PARAM_INVALID,
        "C_DigestInit(CKM_SHA256 with a parameter)",
    );
    for (mech, what) in [
        (CKM_VENDOR_DEFINED | 0x99, "C_DigestInit(unknown mechanism)"),
        (CKM_MD5, "C_DigestInit(CKM_MD5, not offered)"),
    ] {
        check(
            ck!(m, C_DigestInit(s, &mut plain_mechanism(mech))),
            CKR_MECHANISM_INVALID,
            what,
        );
    }

    // C_SessionCancel(CKF_DIGEST)
    check(ck!(m, C_DigestInit(s, &mut mech)), CKR_OK, "C_DigestInit");
    check(
        ck3!(m, C_SessionCancel(s, CKF_DIGEST)),
        CKR_OK,
        "C_SessionCancel(DIGEST)",
    );
    let mut len: CK_ULONG = 64;
    check(
        ck!(m, C_DigestFinal(s, out.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_DigestFinal after C_SessionCancel",
    );
    check(
        ck!(m, C_DigestInit(s, &mut mech)),
        CKR_OK,
        "C_DigestInit after cancel",
    );
}

#[test]
fn digest_key_raw() {
    let (_env, m, _slot, s) = user_session();
    let mut value = [0x33u8; 16];
    let mut id = *b"k";
    let k = create_aes(&m, s, &mut value, &mut id);
    let mut mech = sha256_mech();
    check(
        ck!(m, C_DigestKey(s, k)),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_DigestKey without C_DigestInit",
    );
    check(ck!(m, C_DigestInit(s, &mut mech)), CKR_OK, "C_DigestInit");
    check(
        ck!(m, C_DigestKey(s, 0xdead_beef)),
        CKR_KEY_HANDLE_INVALID,
        "C_DigestKey(bad key)",
    );
    // whether this error ends the operation is not spelled out; end it either way
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    check_any(
        ck!(m, C_DigestFinal(s, out.as_mut_ptr(), &mut len)),
        &[CKR_OK, CKR_OPERATION_NOT_INITIALIZED],
        "C_DigestFinal after C_DigestKey(bad key)",
    );
    check(ck!(m, C_DigestInit(s, &mut mech)), CKR_OK, "C_DigestInit");
    check(
        ck!(m, C_DigestKey(s, k)),
        CKR_KEY_INDIGESTIBLE,
        "C_DigestKey(sensitive key)",
    );
    let mut out = [0u8; 32];
    let mut len: CK_ULONG = 32;
    check(
        ck!(m, C_DigestFinal(s, out.as_mut_ptr(), &mut len)),
        CKR_OPERATION_NOT_INITIALIZED,
        "CKR_KEY_INDIGESTIBLE must end the operation",
    );
}

// ---------------------------------------------------------------------------
// random, events, unsupported and non-parallel functions
// ---------------------------------------------------------------------------

#[test]
fn random_events_and_unsupported_functions() {
    let (_env, m, slot, s) = user_session();
    check(
        ck!(m, C_GenerateRandom(s, ptr::null_mut(), 16)),
        CKR_ARGUMENTS_BAD,
        "C_GenerateRandom(NULL, 16)",
    );
    let mut a = [0u8; 32];
    let mut b = [0u8; 32];
    check(
        ck!(m, C_GenerateRandom(s, a.as_mut_ptr(), 32)),
        CKR_OK,
        "C_GenerateRandom",
    );
    check(
        ck!(m, C_GenerateRandom(s, b.as_mut_ptr(), 32)),
        CKR_OK,
        "C_GenerateRandom",
    );
    assert_ne!(a, b);
    let mut seed = *b"seed";
    check(
        ck!(m, C_SeedRandom(s, seed.as_mut_ptr(), 4)),
        CKR_OK,
        "C_SeedRandom (accepted, ignored)",
    );
    let mut ev: CK_SLOT_ID = 0;
    check(
        ck!(
            m,
            C_WaitForSlotEvent(CKF_DONT_BLOCK, &mut ev, ptr::null_mut())
        ),
        CKR_NO_EVENT,
        "C_WaitForSlotEvent(CKF_DONT_BLOCK)",
    );
    check(
        ck!(m, C_GetFunctionStatus(s)),
        CKR_FUNCTION_NOT_PARALLEL,
        "C_GetFunctionStatus",
    );
    check(
        ck!(m, C_CancelFunction(s)),
        CKR_FUNCTION_NOT_PARALLEL,
        "C_CancelFunction",
    );

    let mut value = [0x44u8; 16];
    let mut id = *b"u";
    let k = create_aes(&m, s, &mut value, &mut id);
    let mut ecb = plain_mechanism(CKM_AES_ECB);
    let mut hmac = plain_mechanism(CKM_SHA256_HMAC);
    let mut kg = plain_mechanism(CKM_AES_KEY_GEN);
    let mut h: CK_OBJECT_HANDLE = 0;
    let mut h2: CK_OBJECT_HANDLE = 0;
    let mut buf = [0u8; 64];
    let mut len: CK_ULONG = 64;
    // Functions no mechanism advertises must be CKR_FUNCTION_NOT_SUPPORTED; once a
    // mechanism advertises them they must not be.
    let mut n: CK_ULONG = 0;
    check(
        ck!(m, C_GetMechanismList(slot, ptr::null_mut(), &mut n)),
        CKR_OK,
        "C_GetMechanismList",
    );
    let mut list = vec![0 as CK_MECHANISM_TYPE; n as usize];
    check(
        ck!(m, C_GetMechanismList(slot, list.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_GetMechanismList",
    );
    let mut all_flags: CK_FLAGS = 0;
    for mech in list {
        let mut mi = CK_MECHANISM_INFO::default();
        check(
            ck!(m, C_GetMechanismInfo(slot, mech, &mut mi)),
            CKR_OK,
            "C_GetMechanismInfo",
        );
        all_flags |= mi.flags;
    }
    let null = ptr::null_mut();
    // (the flag advertising the function, its answer, what), called in row order
    for (flag, rv, what) in [
        (
            CKF_ENCRYPT,
            ck!(m, C_EncryptInit(s, &mut ecb, k)),
            "C_EncryptInit",
        ),
        (
            CKF_DECRYPT,
            ck!(m, C_DecryptInit(s, &mut ecb, k)),
            "C_DecryptInit",
        ),
        (CKF_SIGN, ck!(m, C_SignInit(s, &mut hmac, k)), "C_SignInit"),
        (
            CKF_VERIFY,
            ck!(m, C_VerifyInit(s, &mut hmac, k)),
            "C_VerifyInit",
        ),
        (
            CKF_GENERATE,
            ck!(m, C_GenerateKey(s, &mut kg, null, 0, &mut h)),
            "C_GenerateKey",
        ),
        (
            CKF_GENERATE_KEY_PAIR,
            ck!(
                m,
                C_GenerateKeyPair(s, &mut kg, null, 0, null, 0, &mut h, &mut h2)
            ),
            "C_GenerateKeyPair",
        ),
        (
            CKF_WRAP,
            ck!(m, C_WrapKey(s, &mut ecb, k, k, buf.as_mut_ptr(), &mut len)),
            "C_WrapKey",
        ),
        (
            CKF_UNWRAP,
            ck!(
                m,
                C_UnwrapKey(s, &mut ecb, k, buf.as_mut_ptr(), 16, null, 0, &mut h)
            ),
            "C_UnwrapKey",
        ),
        (
            CKF_DERIVE,
            ck!(m, C_DeriveKey(s, &mut ecb, k, null, 0, &mut h)),
            "C_DeriveKey",
        ),
        (
            CKF_MESSAGE_ENCRYPT,
            ck3!(m, C_MessageEncryptInit(s, &mut ecb, k)),
            "C_MessageEncryptInit",
        ),
        (
            CKF_MESSAGE_DECRYPT,
            ck3!(m, C_MessageDecryptInit(s, &mut ecb, k)),
            "C_MessageDecryptInit",
        ),
        (
            CKF_MESSAGE_SIGN,
            ck3!(m, C_MessageSignInit(s, &mut hmac, k)),
            "C_MessageSignInit",
        ),
        (
            CKF_MESSAGE_VERIFY,
            ck3!(m, C_MessageVerifyInit(s, &mut hmac, k)),
            "C_MessageVerifyInit",
        ),
    ] {
        if all_flags & flag != 0 {
            assert!(
                rv != CKR_FUNCTION_NOT_SUPPORTED,
                "{what}: a mechanism advertises flag {flag:#x}, yet CKR_FUNCTION_NOT_SUPPORTED"
            );
        } else {
            check(rv, CKR_FUNCTION_NOT_SUPPORTED, what);
        }
    }
}

/// PKCS#11 §5.10: "A call to C_DigestUpdate which results in an error terminates
/// the current digest operation"; C_Digest and C_DigestFinal always terminate it
/// unless they return CKR_OK for a length query or CKR_BUFFER_TOO_SMALL.
#[test]
fn digest_errors_end_the_operation() {
    let (_env, m, slot) = ready_env("");
    let mut data = *b"abc";
    let mut out = [0u8; 64];
    let mut mech = sha256_mech();
    let mut failures = Vec::new();
    let mut after = |s: CK_SESSION_HANDLE, what: &str| {
        let mut len: CK_ULONG = 64;
        let rv = ck!(m, C_DigestFinal(s, out.as_mut_ptr(), &mut len));
        if rv != CKR_OPERATION_NOT_INITIALIZED {
            failures.push(format!(
                "{what}: operation still active afterwards (C_DigestFinal returned {}, expected CKR_OPERATION_NOT_INITIALIZED)",
                rv_name(rv)
            ));
        }
    };

    let s1 = m.open(slot, false);
    check(ck!(m, C_DigestInit(s1, &mut mech)), CKR_OK, "C_DigestInit");
    check(
        ck!(m, C_DigestUpdate(s1, ptr::null_mut(), 5)),
        CKR_ARGUMENTS_BAD,
        "C_DigestUpdate(NULL, 5)",
    );
    after(s1, "C_DigestUpdate failing with CKR_ARGUMENTS_BAD");

    let s2 = m.open(slot, false);
    check(ck!(m, C_DigestInit(s2, &mut mech)), CKR_OK, "C_DigestInit");
    let mut tmp = [0u8; 64];
    check(
        ck!(
            m,
            C_Digest(s2, data.as_mut_ptr(), 3, tmp.as_mut_ptr(), ptr::null_mut())
        ),
        CKR_ARGUMENTS_BAD,
        "C_Digest(NULL pulDigestLen)",
    );
    after(s2, "C_Digest failing with CKR_ARGUMENTS_BAD");

    let s3 = m.open(slot, false);
    check(ck!(m, C_DigestInit(s3, &mut mech)), CKR_OK, "C_DigestInit");
    let mut len: CK_ULONG = 64;
    check(
        ck!(
            m,
            C_Digest(s3, ptr::null_mut(), 3, tmp.as_mut_ptr(), &mut len)
        ),
        CKR_ARGUMENTS_BAD,
        "C_Digest(NULL pData, 3)",
    );
    after(s3, "C_Digest(NULL pData) failing with CKR_ARGUMENTS_BAD");

    let s4 = m.open(slot, false);
    check(ck!(m, C_DigestInit(s4, &mut mech)), CKR_OK, "C_DigestInit");
    check(
        ck!(m, C_DigestFinal(s4, tmp.as_mut_ptr(), ptr::null_mut())),
        CKR_ARGUMENTS_BAD,
        "C_DigestFinal(NULL pulDigestLen)",
    );
    after(s4, "C_DigestFinal failing with CKR_ARGUMENTS_BAD");

    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
