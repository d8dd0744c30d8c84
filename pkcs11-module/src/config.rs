//! Module configuration: the optional TOML file named by `FERROHSM_CONF`,
//! overridden by environment variables, so programs with an unusual `$HOME` can
//! configure everything from their environment.
#![forbid(unsafe_code)]

use std::path::PathBuf;

use ferrohsm_store::{KdfParams, KeyPolicy};
use serde::Deserialize;

use crate::logging::{Level, LogTarget};

/// The settings the module runs with.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where tokens live (`FERROHSM_DIR`, `data_dir`).
    pub data_dir: PathBuf,
    /// Key policy of tokens made by `C_InitToken` (`FERROHSM_POLICY`, `default_policy`).
    pub default_policy: KeyPolicy,
    /// Consecutive failed logins that lock a PIN.
    pub max_login_failures: u32,
    /// Argon2id cost for new PIN wraps; older, weaker wraps are upgraded at login.
    pub kdf: KdfParams,
    /// Maximum sessions per token (`ulMaxSessionCount`).
    pub max_sessions: u64,
    /// Slots presented at least (`slots`): the initialised tokens, then
    /// uninitialised ones for `C_InitToken` up to this count; there is always
    /// at least one uninitialised slot.
    pub slots: u64,
    /// How long a store call waits for a token database another process holds
    /// (`store_lock_timeout_ms`) before `CKR_DEVICE_ERROR`.
    pub store_lock_timeout: std::time::Duration,
    /// The audit log settings (`[audit]`).
    pub audit: AuditConfig,
    /// How long a private or secret token key destroyed on an `hsm` token
    /// waits before it is purged (`deletion_wait_seconds`, 0 to 30 days;
    /// default 7 days, as a cloud KMS does). 0 deletes at once.
    pub deletion_wait: std::time::Duration,
    /// Log threshold.
    pub log_level: Level,
    /// Where log lines go.
    pub log_target: LogTarget,
    /// Why a log setting was ignored (an unknown level in `FERROHSM_LOG` or
    /// `[log] level`): logged at `warn` once the module is up. A typo in a
    /// log setting must not make `C_Initialize` fail in every program.
    pub log_warning: Option<String>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    default_policy: Option<String>,
    max_login_failures: Option<u32>,
    max_sessions: Option<u64>,
    slots: Option<u64>,
    store_lock_timeout_ms: Option<u64>,
    kdf: Option<FileKdf>,
    log: Option<FileLog>,
    deletion_wait_seconds: Option<u64>,
    audit: Option<FileAudit>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileAudit {
    enabled: Option<bool>,
    key_use: Option<String>,
    flush_seconds: Option<u64>,
    max_file_bytes: Option<u64>,
}

/// How uses of keys (encrypt, sign, …) reach the audit log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyUseAudit {
    /// Counted per key, function and mechanism, and written as summaries every
    /// `flush_seconds` and at `C_Finalize`: the hot path only bumps a counter.
    Summary,
    /// One durable line per call (`key_use = "per-call"`): complete, slower.
    PerCall,
}

/// The `[audit]` section.
#[derive(Clone, Debug)]
pub struct AuditConfig {
    /// Whether audit logs are written at all (`enabled`, default true). Off
    /// only for measurements: a KMS-like token always keeps one.
    pub enabled: bool,
    /// Summaries or one line per call for key use.
    pub key_use: KeyUseAudit,
    /// How often summaries and queued events are written (`flush_seconds`, 1–60).
    pub flush_every: std::time::Duration,
    /// Size at which a log file is rotated (`max_file_bytes`, at least 64 KiB).
    pub max_file_bytes: u64,
    /// Whether a `ferrohsm-audit` thread may write queued events and
    /// summaries (not a config key: FALSE when the application passes
    /// `CKF_LIBRARY_CANT_CREATE_OS_THREADS`; they are then written inline,
    /// at the first call after `flush_every` has passed, and at `C_Finalize`).
    pub threads: bool,
}

impl Default for AuditConfig {
    fn default() -> Self {
        AuditConfig {
            enabled: true,
            key_use: KeyUseAudit::Summary,
            flush_every: std::time::Duration::from_secs(DEFAULT_AUDIT_FLUSH_SECONDS),
            max_file_bytes: DEFAULT_AUDIT_MAX_FILE_BYTES,
            threads: true,
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileKdf {
    memory_kib: u32,
    passes: u32,
    #[serde(default = "one")]
    lanes: u32,
}

fn one() -> u32 {
    1
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FileLog {
    level: Option<String>,
    file: Option<PathBuf>,
}

/// Default number of failed logins before a PIN locks.
pub const DEFAULT_MAX_LOGIN_FAILURES: u32 = 10;
/// Default session limit per token.
pub const DEFAULT_MAX_SESSIONS: u64 = 4096;
/// Default of `store_lock_timeout_ms`: long enough for another process's
/// write (a few ms) under load, short enough that a stuck holder is reported.
pub const DEFAULT_STORE_LOCK_TIMEOUT_MS: u64 = 10_000;
/// Default waiting period before a destroyed key is purged: 7 days.
pub const DEFAULT_DELETION_WAIT_SECONDS: u64 = 7 * 86_400;
/// Longest waiting period allowed: 30 days.
pub const MAX_DELETION_WAIT_SECONDS: u64 = 30 * 86_400;
/// Default interval of audit summary flushes.
pub const DEFAULT_AUDIT_FLUSH_SECONDS: u64 = 2;
/// Default size at which an audit log file is rotated: 16 MiB.
pub const DEFAULT_AUDIT_MAX_FILE_BYTES: u64 = 16 << 20;
/// Upper bound of `slots`, so a typo cannot make slot lists huge.
pub const MAX_SLOTS: u64 = 256;

impl Config {
    /// Reads the configuration from the process environment and, if named,
    /// the config file.
    pub fn from_env() -> Result<Config, String> {
        let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        let text = match get("FERROHSM_CONF") {
            Some(path) => Some(
                std::fs::read_to_string(&path)
                    .map_err(|e| format!("cannot read FERROHSM_CONF {path}: {e}"))?,
            ),
            None => None,
        };
        Config::build(text.as_deref(), &get)
    }

    /// Builds a configuration from config-file text and an environment lookup.
    pub fn build(
        text: Option<&str>,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, String> {
        let file: FileConfig = match text {
            Some(t) => toml::from_str(t).map_err(|e| format!("bad config file: {e}"))?,
            None => FileConfig::default(),
        };
        let data_dir = env("FERROHSM_DIR")
            .map(PathBuf::from)
            .or(file.data_dir)
            // The XDG Base Directory specification: a relative path is invalid
            // and must be ignored.
            .or_else(|| {
                env("XDG_DATA_HOME")
                    .filter(|d| std::path::Path::new(d).is_absolute())
                    .map(|d| PathBuf::from(d).join("ferrohsm"))
            })
            .or_else(|| env("HOME").map(|h| PathBuf::from(h).join(".local/share/ferrohsm")))
            .ok_or("no data directory: set FERROHSM_DIR (no HOME or XDG_DATA_HOME either)")?;
        let policy_name = env("FERROHSM_POLICY").or(file.default_policy);
        let default_policy = match policy_name {
            Some(p) => KeyPolicy::parse(&p)
                .ok_or_else(|| format!("unknown key policy {p:?}: use \"hsm\" or \"spec\""))?,
            None => KeyPolicy::Hsm,
        };
        let kdf = match file.kdf {
            Some(k) => {
                if k.memory_kib < 8 * k.lanes || k.passes < 1 || k.lanes < 1 {
                    return Err("kdf: need passes >= 1, lanes >= 1, memory_kib >= 8 * lanes".into());
                }
                let bounded = KdfParams {
                    memory_kib: k.memory_kib,
                    passes: k.passes,
                    lanes: k.lanes,
                };
                if !bounded.plausible() {
                    return Err(format!(
                        "kdf: at most memory_kib = {}, passes = {}, lanes = {}",
                        KdfParams::MAX_MEMORY_KIB,
                        KdfParams::MAX_PASSES,
                        KdfParams::MAX_LANES
                    ));
                }
                KdfParams {
                    memory_kib: k.memory_kib,
                    passes: k.passes,
                    lanes: k.lanes,
                }
            }
            None => KdfParams::PRODUCTION,
        };
        let max_login_failures = file
            .max_login_failures
            .unwrap_or(DEFAULT_MAX_LOGIN_FAILURES);
        if max_login_failures == 0 {
            return Err("max_login_failures must be at least 1".into());
        }
        let (mut log_level, mut log_target) = (Level::Warn, LogTarget::Stderr);
        let mut log_warning = None;
        if let Some(l) = file.log {
            if let Some(level) = l.level {
                match Level::parse(&level) {
                    Some(parsed) => log_level = parsed,
                    None => {
                        log_warning = Some(format!(
                            "config file: unknown log level {level:?} (use off, error, warn, \
                             info or debug); logging at warn"
                        ));
                    }
                }
            }
            if let Some(f) = l.file {
                log_target = LogTarget::File(f);
            }
        }
        if let Some(spec) = env("FERROHSM_LOG") {
            match crate::logging::parse_spec(&spec) {
                Ok(parsed) => (log_level, log_target) = parsed,
                Err(e) => {
                    log_warning = Some(format!(
                        "{e} (use LEVEL or LEVEL:FILE, LEVEL one of off, error, warn, info, \
                         debug); ignored, logging at {} to {}",
                        log_level.name(),
                        match &log_target {
                            LogTarget::File(p) => p.display().to_string(),
                            _ => "stderr".into(),
                        }
                    ));
                }
            }
        }
        let wait = file
            .deletion_wait_seconds
            .unwrap_or(DEFAULT_DELETION_WAIT_SECONDS);
        if wait > MAX_DELETION_WAIT_SECONDS {
            return Err(format!(
                "deletion_wait_seconds must be at most {MAX_DELETION_WAIT_SECONDS} (30 days)"
            ));
        }
        let mut audit = AuditConfig::default();
        if let Some(a) = file.audit {
            audit.enabled = a.enabled.unwrap_or(true);
            audit.key_use = match a.key_use.as_deref() {
                None | Some("summary") => KeyUseAudit::Summary,
                Some("per-call") => KeyUseAudit::PerCall,
                Some(other) => {
                    return Err(format!(
                        "audit.key_use {other:?}: use \"summary\" or \"per-call\""
                    ));
                }
            };
            if let Some(f) = a.flush_seconds {
                if !(1..=60).contains(&f) {
                    return Err("audit.flush_seconds must be between 1 and 60".into());
                }
                audit.flush_every = std::time::Duration::from_secs(f);
            }
            if let Some(m) = a.max_file_bytes {
                if m < 64 << 10 {
                    return Err("audit.max_file_bytes must be at least 65536".into());
                }
                audit.max_file_bytes = m;
            }
        }
        Ok(Config {
            data_dir,
            default_policy,
            max_login_failures,
            kdf,
            max_sessions: file.max_sessions.unwrap_or(DEFAULT_MAX_SESSIONS).max(1),
            slots: file.slots.unwrap_or(1).clamp(1, MAX_SLOTS),
            store_lock_timeout: std::time::Duration::from_millis(
                file.store_lock_timeout_ms
                    .unwrap_or(DEFAULT_STORE_LOCK_TIMEOUT_MS),
            ),
            audit,
            deletion_wait: std::time::Duration::from_secs(wait),
            log_level,
            log_target,
            log_warning,
        })
    }

    /// A configuration for unit tests: cheap KDF, in-memory use only.
    pub fn for_tests() -> Config {
        Config {
            data_dir: PathBuf::from("/nonexistent"),
            default_policy: KeyPolicy::Hsm,
            max_login_failures: 3,
            kdf: KdfParams {
                memory_kib: 64,
                passes: 1,
                lanes: 1,
            },
            max_sessions: 16,
            slots: 1,
            store_lock_timeout: std::time::Duration::from_millis(DEFAULT_STORE_LOCK_TIMEOUT_MS),
            audit: AuditConfig::default(),
            deletion_wait: std::time::Duration::from_secs(DEFAULT_DELETION_WAIT_SECONDS),
            log_level: Level::Debug,
            log_target: LogTarget::Memory,
            log_warning: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn defaults_follow_xdg_then_home() {
        let c = Config::build(None, &env_of(&[("HOME", "/home/a")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/home/a/.local/share/ferrohsm"));
        assert_eq!(c.default_policy, KeyPolicy::Hsm);
        assert_eq!(c.kdf, KdfParams::PRODUCTION);
        let c = Config::build(None, &env_of(&[("HOME", "/h"), ("XDG_DATA_HOME", "/x")])).unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/x/ferrohsm"));
    }

    #[test]
    fn relative_xdg_data_home_is_ignored() {
        for rel in ["x", "./x", "data/share", "~/share"] {
            let env = |k: &str| match k {
                "HOME" => Some("/home/a".to_string()),
                "XDG_DATA_HOME" => Some(rel.to_string()),
                _ => None,
            };
            let c = Config::build(None, &env).unwrap();
            assert_eq!(
                c.data_dir,
                PathBuf::from("/home/a/.local/share/ferrohsm"),
                "XDG_DATA_HOME={rel}"
            );
        }
        // With no HOME to fall back on, a relative one is still not used.
        let env = |k: &str| (k == "XDG_DATA_HOME").then(|| "rel".to_string());
        assert!(Config::build(None, &env).is_err());
    }

    #[test]
    fn environment_overrides_file() {
        let text = "data_dir = \"/from/file\"\ndefault_policy = \"hsm\"\n";
        let c = Config::build(
            Some(text),
            &env_of(&[("FERROHSM_DIR", "/from/env"), ("FERROHSM_POLICY", "spec")]),
        )
        .unwrap();
        assert_eq!(c.data_dir, PathBuf::from("/from/env"));
        assert_eq!(c.default_policy, KeyPolicy::Spec);
    }

    #[test]
    fn bad_values_are_errors_not_defaults() {
        let env = env_of(&[("HOME", "/h")]);
        assert!(Config::build(Some("default_policy = \"lax\""), &env).is_err());
        assert!(Config::build(Some("no_such_key = 1"), &env).is_err());
        assert!(Config::build(Some("[kdf]\nmemory_kib = 1\npasses = 1"), &env).is_err());
        assert!(Config::build(Some("max_login_failures = 0"), &env).is_err());
        assert!(Config::build(Some("deletion_wait_seconds = 2592001"), &env).is_err());
        assert!(Config::build(Some("[audit]\nkey_use = \"sometimes\""), &env).is_err());
        assert!(Config::build(Some("[audit]\nflush_seconds = 0"), &env).is_err());
        assert!(
            Config::build(None, &env_of(&[])).is_err(),
            "no HOME and no FERROHSM_DIR"
        );
    }

    #[test]
    fn a_bad_log_setting_warns_instead_of_failing() {
        let c = Config::build(None, &env_of(&[("HOME", "/h"), ("FERROHSM_LOG", "loud")])).unwrap();
        assert_eq!(
            (c.log_level, &c.log_target),
            (Level::Warn, &LogTarget::Stderr)
        );
        let w = c.log_warning.unwrap();
        assert!(
            w.contains("\"loud\"") && w.contains("logging at warn to stderr"),
            "{w}"
        );
        let c = Config::build(
            Some("[log]\nlevel = \"chatty\""),
            &env_of(&[("HOME", "/h")]),
        )
        .unwrap();
        assert_eq!(c.log_level, Level::Warn);
        assert!(c.log_warning.unwrap().contains("\"chatty\""));
        let c = Config::build(None, &env_of(&[("HOME", "/h"), ("FERROHSM_LOG", "info")])).unwrap();
        assert_eq!(c.log_level, Level::Info);
        assert!(c.log_warning.is_none());
    }

    #[test]
    fn kdf_and_log_from_file() {
        let text =
            "[kdf]\nmemory_kib = 64\npasses = 1\n[log]\nlevel = \"debug\"\nfile = \"/tmp/x.log\"\n";
        let c = Config::build(Some(text), &env_of(&[("HOME", "/h")])).unwrap();
        assert_eq!(c.kdf.memory_kib, 64);
        assert_eq!(c.log_level, Level::Debug);
        assert_eq!(c.log_target, LogTarget::File(PathBuf::from("/tmp/x.log")));
    }

    #[test]
    fn audit_and_deletion_wait_from_file() {
        let env = env_of(&[("HOME", "/h")]);
        let c = Config::build(None, &env).unwrap();
        assert_eq!(c.deletion_wait, std::time::Duration::from_secs(7 * 86_400));
        assert!(c.audit.enabled);
        assert_eq!(c.audit.key_use, KeyUseAudit::Summary);
        let text = "deletion_wait_seconds = 0\n[audit]\nkey_use = \"per-call\"\n\
                    flush_seconds = 5\nmax_file_bytes = 100000\nenabled = false\n";
        let c = Config::build(Some(text), &env).unwrap();
        assert_eq!(c.deletion_wait, std::time::Duration::ZERO);
        assert_eq!(c.audit.key_use, KeyUseAudit::PerCall);
        assert_eq!(c.audit.flush_every, std::time::Duration::from_secs(5));
        assert_eq!(c.audit.max_file_bytes, 100_000);
        assert!(!c.audit.enabled);
    }

    #[test]
    fn slots_and_store_lock_timeout_from_file() {
        let env = env_of(&[("HOME", "/h")]);
        let c = Config::build(Some("slots = 4\nstore_lock_timeout_ms = 250\n"), &env).unwrap();
        assert_eq!(c.slots, 4);
        assert_eq!(c.store_lock_timeout, std::time::Duration::from_millis(250));
        let c = Config::build(None, &env).unwrap();
        assert_eq!(c.slots, 1);
        assert_eq!(
            c.store_lock_timeout,
            std::time::Duration::from_millis(DEFAULT_STORE_LOCK_TIMEOUT_MS)
        );
        assert_eq!(Config::build(Some("slots = 0"), &env).unwrap().slots, 1);
    }
}
