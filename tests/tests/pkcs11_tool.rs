//! Interoperability with OpenSC's `pkcs11-tool`, a stock PKCS#11 client.
//!
//! Each check here initialises its token in the same invocation as the action,
//! so the checks stay independent of each other; `persistence.rs` runs
//! `pkcs11-tool` in separate invocations against one data directory.
//! `pkcs11-tool` must be installed (Debian package `opensc`); the tests fail,
//! not skip, without it.

use std::time::Duration;

use ferrohsm_tests::child::{Run, find_in_path, init_token_args, pkcs11_tool, run_captured};
use ferrohsm_tests::{TestEnv, USER_PIN, to_hex};
use sha2::Digest;

const TIMEOUT: Duration = Duration::from_secs(60);

/// Runs `pkcs11-tool --module <ferrohsm> <args>` with this test's environment,
/// with a timeout; panics with install instructions if it is missing.
fn tool(env: &TestEnv, args: &[&str]) -> Run {
    if find_in_path("pkcs11-tool").is_none() {
        panic!(
            "pkcs11-tool not found in PATH: install OpenSC (`apt-get install -y opensc`); \
             CI installs it, so this test does not skip"
        );
    }
    run_captured(
        env,
        pkcs11_tool(env, args),
        b"",
        TIMEOUT,
        &format!("pkcs11-tool {args:?}"),
    )
}

/// Runs and asserts exit 0.
fn tool_ok(env: &TestEnv, args: &[&str]) -> Run {
    let run = tool(env, args);
    assert!(
        run.status.success(),
        "pkcs11-tool {args:?} failed:\n{}\nmodule log:\n{}",
        run.show(),
        env.log()
    );
    run
}

/// The value after `key` on the first line starting with it (trimmed).
fn field<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines()
        .find_map(|l| l.trim_start().strip_prefix(key))
        .map(|v| v.trim().trim_start_matches(':').trim())
}

/// Lines `Slot N (0x..): ...` of `-L`/`-T` output.
fn slot_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| l.starts_with("Slot ")).collect()
}

#[test]
fn show_info_reports_cryptoki_version_and_manufacturer() {
    let env = TestEnv::new();
    for extra in [&[][..], &["--use-locking"][..]] {
        let mut args = vec!["-I"];
        args.extend_from_slice(extra);
        let run = tool_ok(&env, &args);
        let version = field(&run.stdout, "Cryptoki version")
            .unwrap_or_else(|| panic!("no 'Cryptoki version' line:\n{}", run.show()));
        assert!(
            version == "2.40" || version == "3.0",
            "Cryptoki version {version:?}, expected 2.40 or 3.0:\n{}",
            run.show()
        );
        let manufacturer = field(&run.stdout, "Manufacturer")
            .unwrap_or_else(|| panic!("no 'Manufacturer' line:\n{}", run.show()));
        assert!(
            !manufacturer.is_empty(),
            "empty manufacturerID:\n{}",
            run.show()
        );
        let library = field(&run.stdout, "Library")
            .unwrap_or_else(|| panic!("no 'Library' line:\n{}", run.show()));
        assert!(
            library.contains("(ver "),
            "no library version in {library:?}:\n{}",
            run.show()
        );
    }
}

#[test]
fn list_slots_shows_only_the_uninitialised_spare() {
    let env = TestEnv::new();
    let run = tool_ok(&env, &["-L"]);
    assert!(
        run.stdout.contains("Available slots:"),
        "no slot list:\n{}",
        run.show()
    );
    let slots = slot_lines(&run.stdout);
    assert_eq!(
        slots.len(),
        1,
        "a fresh process must list exactly one (spare) slot:\n{}",
        run.show()
    );
    assert!(
        slots[0].starts_with("Slot 0 (0x"),
        "unexpected slot line {:?}",
        slots[0]
    );
    assert_eq!(
        field(&run.stdout, "token state"),
        Some("uninitialized"),
        "the spare slot's token must show as uninitialized (CKF_TOKEN_INITIALIZED clear):\n{}",
        run.show()
    );

    // Verbose: slot flags and token flags are printed.
    let run = tool_ok(&env, &["-v", "-L"]);
    let slot_flags = field(&run.stdout, "flags:")
        .unwrap_or_else(|| panic!("no slot 'flags:' line:\n{}", run.show()));
    assert!(
        slot_flags.contains("token present"),
        "spare slot flags {slot_flags:?} lack 'token present':\n{}",
        run.show()
    );
    let token_flags = field(&run.stdout, "token flags")
        .unwrap_or_else(|| panic!("no 'token flags' line:\n{}", run.show()));
    assert!(
        !token_flags.contains("token initialized"),
        "spare token flags {token_flags:?} claim 'token initialized':\n{}",
        run.show()
    );

    // -T lists slots with a token present: the spare has one.
    let run = tool_ok(&env, &["-T"]);
    assert_eq!(
        slot_lines(&run.stdout).len(),
        1,
        "-T must list the spare slot (its token is present):\n{}",
        run.show()
    );
}

#[test]
fn list_mechanisms_shows_the_sha_digests() {
    let env = TestEnv::new();
    let run = tool_ok(&env, &["--slot-index", "0", "-M"]);
    assert!(
        run.stdout.contains("Supported mechanisms:"),
        "no mechanism list:\n{}",
        run.show()
    );
    for name in ["SHA-1", "SHA224", "SHA256", "SHA384", "SHA512"] {
        let line = run
            .stdout
            .lines()
            .map(str::trim)
            .find(|l| l.split(',').next() == Some(name))
            .unwrap_or_else(|| panic!("mechanism {name} not listed by -M:\n{}", run.show()));
        let flags: Vec<&str> = line.split(',').skip(1).map(str::trim).collect();
        assert!(
            flags.contains(&"digest"),
            "{name} listed without the digest flag (CKF_DIGEST): {line:?}"
        );
    }
}

#[test]
fn init_token_and_init_pin_in_one_invocation() {
    let env = TestEnv::new();
    let run = tool_ok(
        &env,
        &init_token_args("pkcs11-tool token", &["--init-pin", "--pin", USER_PIN]),
    );
    assert!(
        run.stdout.contains("Token successfully initialized"),
        "C_InitToken not reported as successful:\n{}",
        run.show()
    );
    assert!(
        run.stdout.contains("User PIN successfully initialized"),
        "C_InitPIN (after SO login) not reported as successful:\n{}",
        run.show()
    );
}

#[test]
fn init_token_then_so_login_in_one_invocation() {
    let env = TestEnv::new();
    // --login --login-type so logs in with --so-pin on the freshly initialised
    // token (in a R/W session: SO login is refused while R/O sessions exist),
    // then draws random bytes in that logged-in session.
    let output = env.dir.path().join("so-random.bin");
    let outp = output.to_str().expect("utf-8 path");
    let args = [
        "--session-rw",
        "--login",
        "--login-type",
        "so",
        "--generate-random",
        "16",
        "-o",
        outp,
    ];
    let run = tool_ok(&env, &init_token_args("so login", &args));
    assert!(
        run.stdout.contains("Token successfully initialized"),
        "{}",
        run.show()
    );
    let got = std::fs::read(&output).unwrap_or_default();
    assert_eq!(
        got.len(),
        16,
        "random bytes after SO login:\n{}",
        run.show()
    );
}

#[test]
fn init_token_rejects_out_of_range_so_pins() {
    let env = TestEnv::new();
    let too_long = "x".repeat(65);
    for pin in ["abc", too_long.as_str()] {
        let run = tool(
            &env,
            &[
                "--slot-index",
                "0",
                "--init-token",
                "--so-pin",
                pin,
                "--label",
                "bad pin",
            ],
        );
        assert!(
            !run.status.success() && run.stderr.contains("C_InitToken"),
            "C_InitToken with a {}-byte SO PIN (allowed 4..64) must fail:\n{}",
            pin.len(),
            run.show()
        );
    }
}

/// Deterministic test data of `n` bytes.
fn test_data(n: usize) -> Vec<u8> {
    let mut x: u32 = 0x1234_5678;
    (0..n)
        .map(|_| {
            x = x.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
            (x >> 24) as u8
        })
        .collect()
}

#[test]
fn hash_matches_rust_sha_implementations() {
    let env = TestEnv::new();
    let data = test_data(5000);
    let input = env.dir.path().join("hash-input.bin");
    std::fs::write(&input, &data).expect("write input");
    let expected: [(&str, Vec<u8>); 5] = [
        ("SHA-1", sha1::Sha1::digest(&data).to_vec()),
        ("SHA224", sha2::Sha224::digest(&data).to_vec()),
        ("SHA256", sha2::Sha256::digest(&data).to_vec()),
        ("SHA384", sha2::Sha384::digest(&data).to_vec()),
        ("SHA512", sha2::Sha512::digest(&data).to_vec()),
    ];
    for (mech, want) in expected {
        let output = env.dir.path().join(format!("hash-{mech}.bin"));
        let (inp, outp) = (
            input.to_str().expect("utf-8 path"),
            output.to_str().expect("utf-8 path"),
        );
        let run = tool_ok(
            &env,
            &init_token_args("hash", &["--hash", "-m", mech, "-i", inp, "-o", outp]),
        );
        let got = std::fs::read(&output).unwrap_or_default();
        assert_eq!(
            to_hex(&got),
            to_hex(&want),
            "pkcs11-tool --hash -m {mech} over 5000 bytes differs from the Rust {mech}:\n{}",
            run.show()
        );
    }
}

#[test]
fn generate_random_gives_the_requested_length() {
    let env = TestEnv::new();
    let mut outputs = Vec::new();
    for (i, len) in [32usize, 32, 100].into_iter().enumerate() {
        let output = env.dir.path().join(format!("random-{i}.bin"));
        let outp = output.to_str().expect("utf-8 path");
        let n = len.to_string();
        let run = tool_ok(
            &env,
            &init_token_args("random", &["--generate-random", &n, "-o", outp]),
        );
        let got = std::fs::read(&output).unwrap_or_default();
        assert_eq!(
            got.len(),
            len,
            "--generate-random {len} wrote {} bytes:\n{}",
            got.len(),
            run.show()
        );
        assert!(
            got.iter().any(|&b| b != 0),
            "--generate-random {len} gave all zero bytes"
        );
        outputs.push(got);
    }
    assert_ne!(
        outputs[0], outputs[1],
        "two processes got the same 32 random bytes"
    );
}

#[test]
fn pkcs11_tool_fork_test_reinitializes_in_child() {
    let env = TestEnv::new();
    // --test-fork: fork after C_Initialize; the child calls C_Initialize,
    // which must succeed (the child starts uninitialised), and exits 0.
    let run = tool_ok(&env, &["--test-fork", "-I"]);
    assert!(
        run.stdout
            .contains("Calling C_Initialize in forked child process"),
        "fork test did not run:\n{}",
        run.show()
    );
    assert!(
        field(&run.stdout, "Cryptoki version").is_some(),
        "parent did not continue after the fork test:\n{}",
        run.show()
    );
}
