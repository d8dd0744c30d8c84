//! Support for tests that load the real `libferrohsm_pkcs11.so`, as clients do.
//!
//! Each test process gets its own temporary data directory and config (cheap PIN
//! KDF so logins are fast), set through the same environment variables a user
//! would set. Run the tests with `cargo nextest` so each test is its own process:
//! a loaded module is per process.
//!
//! Helpers shared by the test files: [`raw`] calls the C ABI through the
//! function lists (templates, objects, single-part operations), [`p11`] sets
//! tokens up through the `cryptoki` crate, and [`child`] runs other programs
//! (the C test programs, `pkcs11-tool`, `openssl`, this test binary in a role)
//! with captured output and a timeout.
//!
//! This crate may use `unsafe`: its job includes calling the C ABI with raw
//! (and deliberately bad) pointers. Every block says why it is sound.

pub mod child;
pub mod mech;
pub mod p11;
pub mod raw;
pub mod tok;
pub mod tool;

use std::path::PathBuf;

use cryptoki::context::{CInitializeArgs, Pkcs11};

/// SO PIN used by the test tokens.
pub const SO_PIN: &str = "so-pin-1234";
/// User PIN used by the test tokens.
pub const USER_PIN: &str = "user-pin-1234";

/// Path of the built module: `FERROHSM_MODULE` if set, else the newest
/// `libferrohsm_pkcs11.so` in this test binary's target directory (this crate
/// depends on `ferrohsm-pkcs11`, so Cargo builds the library with the tests).
pub fn module_path() -> PathBuf {
    ferrohsm_pkcs11::locate::module_path().expect(
        "libferrohsm_pkcs11.so not built: run `cargo build -p ferrohsm-pkcs11` (scripts/test does)",
    )
}

/// A private data directory and config for one test process.
pub struct TestEnv {
    /// The temporary directory holding data, config and log.
    pub dir: tempfile::TempDir,
}

impl TestEnv {
    /// Creates the directory and config and points `FERROHSM_DIR`/`FERROHSM_CONF`
    /// (and `FERROHSM_LOG`, to a file in the directory) at them, in this process's
    /// environment. Call it first thing in a test.
    pub fn new() -> TestEnv {
        Self::with_config("")
    }

    /// As `new`, with extra TOML lines appended to the config.
    pub fn with_config(extra: &str) -> TestEnv {
        let dir = tempfile::tempdir().expect("tempdir");
        let data = dir.path().join("data");
        std::fs::create_dir_all(&data).expect("data dir");
        let conf = dir.path().join("ferrohsm.toml");
        std::fs::write(
            &conf,
            format!(
                "data_dir = {data:?}\n{extra}\n[kdf]\nmemory_kib = 64\npasses = 1\nlanes = 1\n"
            ),
        )
        .expect("write config");
        let env = TestEnv { dir };
        for (k, v) in env.env_vars() {
            // SAFETY: called at the start of a test, before this test starts any
            // thread or loads the module; nextest runs one test per process.
            unsafe { std::env::set_var(k, v) };
        }
        env
    }

    /// The environment a process needs to use this test's data directory.
    pub fn env_vars(&self) -> Vec<(&'static str, String)> {
        vec![
            ("FERROHSM_DIR", self.data_dir().display().to_string()),
            ("FERROHSM_CONF", self.conf_path().display().to_string()),
            (
                "FERROHSM_LOG",
                format!("debug:{}", self.log_path().display()),
            ),
        ]
    }

    /// The data directory.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// The config file.
    pub fn conf_path(&self) -> PathBuf {
        self.dir.path().join("ferrohsm.toml")
    }

    /// The module's log file.
    pub fn log_path(&self) -> PathBuf {
        self.dir.path().join("ferrohsm.log")
    }

    /// The log written so far (empty if none).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The last `n` lines of the module log, for failure messages.
    pub fn log_tail(&self, n: usize) -> String {
        let log = self.log();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(n)..].join("\n")
    }

    /// Loads and initialises the module (OS locking) in this process.
    pub fn load(&self) -> Pkcs11 {
        let p = Pkcs11::new(module_path()).expect("load module");
        p.initialize(CInitializeArgs::new(
            cryptoki::context::CInitializeFlags::OS_LOCKING_OK,
        ))
        .expect("C_Initialize");
        p
    }
}

impl Default for TestEnv {
    fn default() -> Self {
        Self::new()
    }
}

/// The store of `env`'s data directory opened directly (no module may hold
/// it), the record of the token in `slot`, and that token's storage key,
/// opened with the test user PIN as the module does at `C_Login`.
pub fn open_token_store(
    env: &TestEnv,
    slot: u64,
) -> (
    ferrohsm_store::SledStore,
    ferrohsm_store::TokenRecord,
    ferrohsm_store::StorageKey,
) {
    use ferrohsm_store::{PinRole, SledOptions, SledStore, Store, pin_wrap_aad};
    let store = SledStore::open(&env.data_dir(), SledOptions::default()).expect("open store");
    let token = store.token(slot).expect("read token").expect("token");
    let key = token
        .user_pin
        .as_ref()
        .expect("user PIN set")
        .open(
            USER_PIN.as_bytes(),
            &pin_wrap_aad(&token.token_id, PinRole::User),
        )
        .expect("user PIN opens the storage key");
    (store, token, key)
}

/// The last `n` lines of the module log named by `FERROHSM_LOG` (`level:path`,
/// as `TestEnv` sets it) in this process; empty if there is none.
pub fn module_log_tail(n: usize) -> String {
    let var = std::env::var("FERROHSM_LOG").unwrap_or_default();
    let Some((_, path)) = var.split_once(':') else {
        return String::new();
    };
    let log = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Lower-case hex of `b`.
pub fn to_hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// The bytes of hex text `s` (white space is ignored); panics on bad hex.
pub fn from_hex(s: &str) -> Vec<u8> {
    let s: String = s.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(s.len().is_multiple_of(2), "odd hex length in {s:?}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex digit"))
        .collect()
}

/// A small seeded generator (SplitMix64) for property tests; a failing run is
/// replayed by setting `FERROHSM_SEED` to the seed it printed.
pub struct Rng(u64);

impl Rng {
    /// A generator with a fixed seed.
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    /// Seeded from `FERROHSM_SEED`, else the clock; prints the seed under `what`.
    pub fn seeded(what: &str) -> Rng {
        Rng(Self::seed(what))
    }

    /// The seed of a seeded run (`FERROHSM_SEED`, else the clock), printed under
    /// `what` so that a failing run can be replayed.
    pub fn seed(what: &str) -> u64 {
        let seed = std::env::var("FERROHSM_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .unwrap()
                    .as_nanos() as u64
            });
        println!("{what}: seed {seed} (set FERROHSM_SEED={seed} to replay)");
        seed
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number below `n`.
    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }

    /// `n` random bytes.
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next_u64() as u8).collect()
    }

    /// Sorted random cut points in `0..=len` (0 to 5 of them, duplicates allowed).
    pub fn cuts(&mut self, len: usize) -> Vec<usize> {
        let k = self.below(6);
        let mut v: Vec<usize> = (0..k).map(|_| self.below(len + 1)).collect();
        v.sort_unstable();
        v
    }
}
