//! How an installed `ferrohsm` finds its module (README "Install"): copies of
//! the built CLI and module laid out as the package and `make install` lay
//! them out, run with no `FERROHSM_MODULE`; `--version` names the module, how
//! it was found and the module's version; one message when nothing is found.
//! The package and `make install` themselves are checked end to end by
//! scripts/test-install (release build, cargo-deb).

use std::path::{Path, PathBuf};
use std::process::Command;

use ferrohsm_tests::TestEnv;
use ferrohsm_tests::child::{Run, run_captured};
use ferrohsm_tests::tool::{TIMEOUT, binary, module};

const LIB: &str = "libferrohsm_pkcs11.so";

/// Copies `from` to `to` (parents created), keeping its mode.
fn copy(from: &Path, to: &Path) {
    std::fs::create_dir_all(to.parent().unwrap()).unwrap();
    std::fs::copy(from, to)
        .unwrap_or_else(|e| panic!("copy {} -> {}: {e}", from.display(), to.display()));
}

/// `cli args` with only PATH, a HOME and XDG_CONFIG_HOME of `env`'s own (no
/// p11-kit registration unless a test writes one), and `env`'s data
/// directory and config: never FERROHSM_MODULE.
fn run(env: &TestEnv, cli: &Path, args: &[&str]) -> Run {
    let home = env.dir.path().join("home");
    std::fs::create_dir_all(&home).unwrap();
    let mut cmd = Command::new(cli);
    cmd.args(args)
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .envs(env.env_vars())
        .env("T_SO", ferrohsm_tests::SO_PIN)
        .env("T_PIN", ferrohsm_tests::USER_PIN);
    run_captured(
        env,
        cmd,
        b"",
        TIMEOUT,
        &format!("{} {args:?}", cli.display()),
    )
}

/// A system-wide registration of this module, if this machine has one (the
/// package installed): it would be found where the tests expect nothing.
fn system_registration() -> Option<PathBuf> {
    ["/etc/pkcs11/modules", "/usr/share/p11-kit/modules"]
        .iter()
        .filter_map(|d| std::fs::read_dir(d).ok())
        .flat_map(|rd| rd.flatten())
        .map(|e| e.path())
        .find(|p| {
            std::fs::read_to_string(p)
                .ok()
                .and_then(|t| ferrohsm_pkcs11::locate::module_of(&t))
                .is_some_and(|m| m.is_file())
        })
}

#[test]
fn installed_layouts_find_their_module() {
    let env = TestEnv::new();
    let version = env!("CARGO_PKG_VERSION");
    let major_minor = version.rsplit_once('.').unwrap().0;
    let tuple = ferrohsm_pkcs11::locate::multiarch_tuple();
    let layouts = [
        ("make-install", "usr/local", "lib/pkcs11".to_string()),
        ("package", "usr", format!("lib/{tuple}/pkcs11")),
    ];
    for (name, prefix, libdir) in layouts {
        let root = env.dir.path().join(name).join(prefix);
        let cli = root.join("bin/ferrohsm");
        let so = root.join(&libdir).join(LIB);
        copy(&binary(), &cli);
        copy(module(), &so);
        let r = run(&env, &cli, &["--version"]);
        r.assert_success(&env);
        let want = format!(
            "ferrohsm {version}\nmodule: {} (installation prefix of the program)\nmodule version: {major_minor} (",
            so.display()
        );
        assert!(
            r.stdout.starts_with(&want),
            "{name}: want {want:?}\n{}",
            r.show()
        );
        // And a command that works through the module.
        let r = run(&env, &cli, &["tokens", "--json"]);
        r.assert_success(&env);
        assert!(r.stdout.contains("\"slots\""), "{}", r.show());
    }

    // Beside the program wins over the prefix.
    let root = env.dir.path().join("package/usr");
    let beside = root.join("bin").join(LIB);
    copy(module(), &beside);
    let r = run(&env, &root.join("bin/ferrohsm"), &["--version"]);
    r.assert_success(&env);
    assert!(
        r.stdout.contains(&format!(
            "module: {} (beside the program)",
            beside.display()
        )),
        "{}",
        r.show()
    );
}

#[test]
fn a_p11_kit_registration_is_the_last_resort() {
    let env = TestEnv::new();
    let cli = env.dir.path().join("opt/bin/ferrohsm");
    copy(&binary(), &cli);
    let so = env.dir.path().join("elsewhere").join(LIB);
    copy(module(), &so);

    let r = run(&env, &cli, &["tokens"]);
    match system_registration() {
        Some(file) => {
            eprintln!(
                "this machine registers the module in {}: checking only that it is used",
                file.display()
            );
            r.assert_success(&env);
        }
        None => {
            assert_eq!(r.status.code(), Some(1), "{}", r.show());
            let line = r.stderr.trim();
            assert!(
                line.starts_with("ferrohsm: libferrohsm_pkcs11.so not found: looked at FERROHSM_MODULE (unset), beside this program")
                    && line.contains("/lib/pkcs11/")
                    && line.contains("/etc/pkcs11/modules")
                    && line.contains("install the package")
                    && !line.contains('\n'),
                "{}",
                r.show()
            );
            let r = run(&env, &cli, &["--version"]);
            assert_eq!(r.status.code(), Some(1), "{}", r.show());
            assert!(r.stdout.contains("module: none"), "{}", r.show());
        }
    }

    // A user registration (what `ferrohsm register` writes) names it.
    let conf = env.dir.path().join("home/.config/pkcs11/modules");
    std::fs::create_dir_all(&conf).unwrap();
    std::fs::write(
        conf.join("ferrohsm.module"),
        format!("module: {}\n", so.display()),
    )
    .unwrap();
    let r = run(&env, &cli, &["--version"]);
    r.assert_success(&env);
    assert!(
        r.stdout.contains(&format!(
            "module: {} (p11-kit config {})",
            so.display(),
            conf.join("ferrohsm.module").display()
        )),
        "{}",
        r.show()
    );
}

#[test]
fn version_says_when_the_module_cannot_be_loaded() {
    let env = TestEnv::new();
    let mut cmd = Command::new(binary());
    cmd.arg("--version")
        .envs(env.env_vars())
        .env("FERROHSM_MODULE", env.dir.path().join("missing.so"));
    let r = run_captured(&env, cmd, b"", TIMEOUT, "ferrohsm --version");
    assert_eq!(r.status.code(), Some(1), "{}", r.show());
    assert!(r.stdout.contains("(FERROHSM_MODULE)"), "{}", r.show());
    assert!(r.stdout.contains("module version: unknown"), "{}", r.show());
    assert!(r.stderr.contains("cannot load"), "{}", r.show());
    // A module that loads but cannot start (its data directory is a file):
    // the module's own error line says why, the CLI's which call failed.
    let file = env.dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let mut cmd = Command::new(binary());
    cmd.arg("--version")
        .envs(env.env_vars())
        .env("FERROHSM_DIR", &file)
        .env("FERROHSM_LOG", "off")
        .env("FERROHSM_MODULE", module());
    let r = run_captured(&env, cmd, b"", TIMEOUT, "ferrohsm --version");
    assert_eq!(r.status.code(), Some(1), "{}", r.show());
    assert!(r.stderr.contains("is not a directory"), "{}", r.show());
    let last = r.stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with("ferrohsm: C_Initialize of ") && last.ends_with("(CKR_DEVICE_ERROR)"),
        "{}",
        r.show()
    );
}
