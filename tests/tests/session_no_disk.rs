//! `C_OpenSession` and `C_CloseSession` never touch the store (issue 18:
//! clients that open a session per request pay for it on every request).
//! Shown by making the token's generation stamp unreadable: calls that follow
//! other processes' writes (`C_GetTokenInfo`, `C_FindObjectsInit`) answer
//! `CKR_DEVICE_ERROR`, while sessions still open and close, with their
//! session objects destroyed, and the login state stays the application's.

use cryptoki_sys::*;
use ferrohsm_tests::raw::{RawModule, b, by, check, u};
use ferrohsm_tests::{TestEnv, USER_PIN, ck};

#[test]
fn open_and_close_work_while_the_store_is_unreadable() {
    let env = TestEnv::new();
    let m = RawModule::init();
    let slot = m.make_token("no-disk");
    let keep = m.open(slot, true);
    check(m.login(keep, CKU_USER, USER_PIN), CKR_OK, "C_Login user");

    let stamp = env
        .data_dir()
        .join(format!("token-{slot}"))
        .join("generation");
    let good = std::fs::read(&stamp).expect("the token's generation file");
    std::fs::write(&stamp, b"not a number\n").expect("overwrite the generation file");

    let mut ti = CK_TOKEN_INFO::default();
    check(
        ck!(m, C_GetTokenInfo(slot, &mut ti)),
        CKR_DEVICE_ERROR,
        "C_GetTokenInfo reads the generation stamp (unreadable here)",
    );

    for rw in [false, true, false] {
        let s = m.open(slot, rw);
        let mut info = CK_SESSION_INFO::default();
        check(
            ck!(m, C_GetSessionInfo(s, &mut info)),
            CKR_OK,
            "C_GetSessionInfo",
        );
        let want = if rw {
            CKS_RW_USER_FUNCTIONS
        } else {
            CKS_RO_USER_FUNCTIONS
        };
        assert_eq!(info.state, want, "the new session shares the user login");
        // A session object, destroyed at close without the store.
        let obj = m
            .create(
                s,
                vec![
                    u(CKA_CLASS, CKO_DATA),
                    b(CKA_TOKEN, false),
                    by(CKA_LABEL, b"session-object"),
                ],
            )
            .expect("C_CreateObject of a session object");
        check(ck!(m, C_CloseSession(s)), CKR_OK, "C_CloseSession");
        assert_eq!(
            m.attribute(keep, obj, CKA_LABEL),
            Err(CKR_OBJECT_HANDLE_INVALID),
            "the closed session's object is gone"
        );
    }

    // The store is read again once the stamp is sound.
    std::fs::write(&stamp, good).expect("restore the generation file");
    assert_ne!(m.token_info(slot).flags & CKF_TOKEN_INITIALIZED, 0);
    check(ck!(m, C_CloseSession(keep)), CKR_OK, "C_CloseSession");
    check(
        ck!(m, C_Finalize(std::ptr::null_mut())),
        CKR_OK,
        "C_Finalize",
    );
}
