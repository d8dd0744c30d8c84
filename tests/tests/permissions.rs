//! File modes through the real module and tool, with the umask most systems
//! have (022): a data directory made beforehand with mode 0755 is tightened to
//! 0700, and after `C_InitToken`, objects, logins, a backup and a restore every
//! directory under it is 0700 and every file 0600, so no other local user can
//! read token databases (ciphertext and public objects) or audit logs. The
//! backup file and the module's log file are owner-only too.
//!
//! The umask is process-wide: nextest runs this test in its own process, and
//! the children (the tool) inherit it.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use ferrohsm_tests::child::Run;
use ferrohsm_tests::p11::{ready_token, user_session};
use ferrohsm_tests::tool::{command, ok_cmd};
use ferrohsm_tests::{TestEnv, USER_PIN};

fn mode(p: &Path) -> u32 {
    std::fs::symlink_metadata(p)
        .unwrap_or_else(|e| panic!("{}: {e}", p.display()))
        .permissions()
        .mode()
        & 0o7777
}

/// Every path under `root` (itself included) that is not a 0700 directory or
/// a 0600 regular file; and how many files there are.
fn loose(root: &Path) -> (Vec<String>, usize) {
    let mut bad = Vec::new();
    let mut files = 0;
    let mut todo = vec![root.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p).unwrap();
        let m = md.permissions().mode() & 0o7777;
        if md.is_dir() {
            if m != 0o700 {
                bad.push(format!("{} (dir {m:04o})", p.display()));
            }
            for e in std::fs::read_dir(&p).unwrap() {
                todo.push(e.unwrap().path());
            }
        } else if md.is_file() {
            files += 1;
            if m != 0o600 {
                bad.push(format!("{} (file {m:04o})", p.display()));
            }
        } else {
            bad.push(format!("{} (neither file nor directory)", p.display()));
        }
    }
    (bad, files)
}

#[track_caller]
fn assert_private(root: &Path) {
    let (bad, files) = loose(root);
    assert!(files > 0, "nothing written under {}", root.display());
    assert!(
        bad.is_empty(),
        "not owner-only under {}:\n{}",
        root.display(),
        bad.join("\n")
    );
}

fn tool(env: &TestEnv, data_dir: &Path, args: &[&str]) -> Run {
    let mut c = command(env, args);
    c.env("FERROHSM_DIR", data_dir);
    ok_cmd(env, c, args)
}

#[test]
fn the_data_directory_and_everything_in_it_is_owner_only_under_umask_022() {
    // SAFETY: umask(2) only sets this process's file mode creation mask; it
    // cannot fail. This test is alone in its process (nextest).
    unsafe { libc::umask(0o022) };
    let env = TestEnv::new();
    let data = env.data_dir();
    std::fs::set_permissions(&data, std::fs::Permissions::from_mode(0o755)).unwrap();

    let p = env.load();
    assert_eq!(
        mode(&data),
        0o700,
        "C_Initialize tightens the data directory"
    );
    assert!(
        env.log().contains("INFO") && env.log().contains("was accessible to other users"),
        "the module logs what it tightened:\n{}",
        env.log_tail(10)
    );
    let slot = ready_token(&p, "perm");
    let s = user_session(&p, slot);
    s.generate_key(
        &Mechanism::AesKeyGen,
        &[
            Attribute::Token(true),
            Attribute::Label(b"perm-aes".to_vec()),
            Attribute::ValueLen(32.into()),
        ],
    )
    .expect("C_GenerateKey");
    s.create_object(&[
        Attribute::Class(ObjectClass::DATA),
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(b"perm-data".to_vec()),
        Attribute::Value(b"public data".to_vec()),
    ])
    .expect("C_CreateObject");
    s.logout().expect("C_Logout");
    s.login(
        cryptoki::session::UserType::User,
        Some(&ferrohsm_tests::p11::pin(USER_PIN)),
    )
    .expect("C_Login again");
    drop(s);
    p.finalize().expect("C_Finalize");

    // A backup (written by the tool) and its restore into another data
    // directory, also made beforehand with 0755.
    let bak = env.dir.path().join("perm.ferrohsm-backup");
    let b = bak.to_str().unwrap();
    let args = [
        "backup",
        "--token",
        "perm",
        "--out",
        b,
        "--so-pin-env",
        "T_SO",
    ];
    tool(&env, &data, &args);
    assert_eq!(mode(&bak), 0o600, "the backup file");
    let other = env.dir.path().join("other-data");
    std::fs::create_dir(&other).unwrap();
    std::fs::set_permissions(&other, std::fs::Permissions::from_mode(0o755)).unwrap();
    tool(&env, &other, &["restore", b, "--so-pin-env", "T_SO"]);
    tool(
        &env,
        &other,
        &["objects", "--token", "perm", "--pin-env", "T_PIN"],
    );

    assert!(data.join("token-0").join("audit").join("state").is_file());
    assert_private(&data);
    assert_private(&other);
    assert_eq!(mode(&env.log_path()), 0o600, "the module's log file");
}
