//! One PIN gate: `C_Login` in the module, `ferrohsm backup` (the backup
//! path) and `ferrohsm rotate-storage-key` (the tool's own PIN checks) count
//! failures in the same counter, so four wrong SO PINs spread over the three
//! lock the SO PIN for all of them (`max_login_failures = 4`).

use cryptoki::error::{Error as CkError, RvError};
use cryptoki::session::UserType;
use ferrohsm_tests::TestEnv;
use ferrohsm_tests::p11::{pin, ready_token};
use ferrohsm_tests::tool::{command, load};

const BAD: &str = "not-the-so-pin";

fn tool(env: &TestEnv, args: &[&str]) -> (bool, String) {
    let out = command(env, args)
        .env("T_BAD", BAD)
        .output()
        .expect("run ferrohsm");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[test]
fn module_backup_and_tool_share_one_lockout_counter() {
    let env = TestEnv::with_config("max_login_failures = 4\n");
    let p = load();
    let slot = ready_token(&p, "gate");
    let flags = || {
        let i = p.get_token_info(slot).expect("C_GetTokenInfo");
        (
            i.so_pin_count_low(),
            i.so_pin_final_try(),
            i.so_pin_locked(),
        )
    };
    assert_eq!(flags(), (false, false, false));
    let bak = env.dir.path().join("gate.bak");
    let bak = bak.to_str().unwrap();

    // 1. The module.
    let s = p.open_rw_session(slot).expect("C_OpenSession");
    assert!(matches!(
        s.login(UserType::So, Some(&pin(BAD))),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _))
    ));
    assert_eq!(flags(), (true, false, false), "after C_Login");
    // `ferrohsm backup` with the SO PIN in `pin_env`.
    let backup = |pin_env: &str| {
        let args = ["backup", "--token", "gate", "--out", bak];
        tool(&env, &[&args[..], &["--so-pin-env", pin_env]].concat())
    };
    // 2. The backup path.
    let (ok, text) = backup("T_BAD");
    assert!(!ok && text.contains("wrong SO PIN"), "backup: {text}");
    assert_eq!(flags(), (true, false, false), "after ferrohsm backup");
    // 3. The tool's own check.
    let (ok, text) = tool(
        &env,
        &[
            "rotate-storage-key",
            "--token",
            "gate",
            "--so-pin-env",
            "T_BAD",
            "--pin-env",
            "T_PIN",
        ],
    );
    assert!(!ok && text.contains("wrong SO PIN"), "rotate: {text}");
    assert_eq!(
        flags(),
        (true, true, false),
        "three failures of four: final try"
    );
    // The fourth, through the module again, locks it for every path.
    assert!(matches!(
        s.login(UserType::So, Some(&pin(BAD))),
        Err(CkError::Pkcs11(RvError::PinIncorrect, _))
    ));
    assert!(flags().2, "locked: {:?}", flags());
    assert!(matches!(
        s.login(UserType::So, Some(&pin(ferrohsm_tests::SO_PIN))),
        Err(CkError::Pkcs11(RvError::PinLocked, _))
    ));
    let (ok, text) = backup("T_SO");
    assert!(!ok && text.contains("locked"), "backup when locked: {text}");
    assert!(!std::path::Path::new(bak).exists(), "no backup written");
}
