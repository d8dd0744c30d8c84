//! The module's log: one line per event, to stderr, a file, or memory (tests).
//!
//! The `Logger` is owned by the `Module` and passed in, not a global. Nothing
//! secret is ever formatted into a line: callers log handles, labels and
//! `CKR_*` names, never attribute values or PINs.
//!
//! The default (`warn` to stderr) keeps a host program's stderr quiet except
//! for what its user must act on: a PIN locked, a store problem, and the key
//! policy's refusals ([`Logger::warn_once`]: the first of each kind, since a
//! client gets only a `CKR_*` code and cannot guess the rule behind it).
//! Lines written to a file start with an RFC 3339 UTC timestamp.
#![forbid(unsafe_code)]

use std::collections::HashSet;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use parking_lot::Mutex;

/// Severity of a log line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Level {
    /// Logging disabled.
    Off,
    /// The module could not do what it must (device errors, corruption, panics).
    Error,
    /// A caller did something the module refused for a reason worth reading.
    Warn,
    /// Lifecycle events: initialise, token init, login.
    Info,
    /// Every refused call and its `CKR_*`.
    Debug,
}

impl Level {
    /// Parses `off|error|warn|info|debug`.
    pub fn parse(s: &str) -> Option<Level> {
        Some(match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Level::Off,
            "error" => Level::Error,
            "warn" | "warning" => Level::Warn,
            "info" => Level::Info,
            "debug" | "trace" => Level::Debug,
            _ => return None,
        })
    }

    /// The level's name as `FERROHSM_LOG` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Level::Off => "off",
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
        }
    }

    fn tag(self) -> &'static str {
        match self {
            Level::Off => "OFF",
            Level::Error => "ERROR",
            Level::Warn => "WARN",
            Level::Info => "INFO",
            Level::Debug => "DEBUG",
        }
    }
}

/// Where log lines go.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LogTarget {
    /// Standard error of the host process.
    Stderr,
    /// Appended to a file.
    File(PathBuf),
    /// Kept in memory (unit tests read it back).
    Memory,
}

/// Parses `FERROHSM_LOG`: `LEVEL` or `LEVEL:TARGET` (`stderr` or a file path).
pub fn parse_spec(spec: &str) -> Result<(Level, LogTarget), String> {
    let (level, target) = match spec.split_once(':') {
        Some((l, t)) => (l, Some(t)),
        None => (spec, None),
    };
    let level =
        Level::parse(level).ok_or_else(|| format!("FERROHSM_LOG: unknown level {level:?}"))?;
    let target = match target {
        None | Some("") | Some("stderr") => LogTarget::Stderr,
        Some(path) => LogTarget::File(PathBuf::from(path)),
    };
    Ok((level, target))
}

enum Sink {
    Stderr,
    File(std::fs::File),
    Memory(Vec<String>),
}

/// A log sink with a threshold.
pub struct Logger {
    level: Level,
    sink: Mutex<Sink>,
    /// Kinds already reported by [`Logger::warn_once`].
    warned: Mutex<HashSet<&'static str>>,
}

impl Logger {
    /// Opens the target; a file that cannot be opened falls back to stderr
    /// (and says so there) rather than failing `C_Initialize`.
    pub fn new(level: Level, target: &LogTarget) -> Logger {
        let sink = match target {
            LogTarget::Stderr => Sink::Stderr,
            LogTarget::Memory => Sink::Memory(Vec::new()),
            // A new log file is owner-only (0600) whatever the umask: its lines
            // name tokens, labels and processes. An existing one keeps its mode.
            LogTarget::File(p) => match std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .mode(0o600)
                .open(p)
            {
                Ok(f) => Sink::File(f),
                Err(e) => {
                    eprintln!(
                        "ferrohsm: cannot open log file {}: {e}; logging to stderr",
                        p.display()
                    );
                    Sink::Stderr
                }
            },
        };
        Logger {
            level,
            sink: Mutex::new(sink),
            warned: Mutex::new(HashSet::new()),
        }
    }

    /// Writes one line at `warn` the first time `kind` happens in this
    /// module instance (from `C_Initialize` to `C_Finalize`: once per process
    /// for most programs), and at `info` afterwards, so a program refused in
    /// a loop does not flood its stderr.
    pub fn warn_once(&self, kind: &'static str, args: std::fmt::Arguments<'_>) {
        let first = self.warned.lock().insert(kind);
        let level = if first { Level::Warn } else { Level::Info };
        if self.enabled(level) {
            self.log(level, args);
        }
    }

    /// True if lines at `level` are written (lets callers skip formatting).
    pub fn enabled(&self, level: Level) -> bool {
        level != Level::Off && level <= self.level
    }

    /// Writes one line at `level`.
    pub fn log(&self, level: Level, args: std::fmt::Arguments<'_>) {
        if !self.enabled(level) {
            return;
        }
        let line = format!("ferrohsm[{}] {}: {}", std::process::id(), level.tag(), args);
        match &mut *self.sink.lock() {
            Sink::Stderr => {
                let _ = writeln!(std::io::stderr(), "{line}");
            }
            Sink::File(f) => {
                let now = ferrohsm_store::audit::rfc3339(std::time::SystemTime::now());
                let _ = writeln!(f, "{now} {line}");
            }
            Sink::Memory(v) => v.push(line),
        }
    }

    /// Lines kept by a memory logger (empty for other sinks).
    pub fn lines(&self) -> Vec<String> {
        match &*self.sink.lock() {
            Sink::Memory(v) => v.clone(),
            _ => Vec::new(),
        }
    }
}

/// `log!(logger, Level::Warn, "fmt", args…)`: formats only when enabled.
#[macro_export]
macro_rules! log {
    ($logger:expr, $level:expr, $($arg:tt)*) => {{
        let l: &$crate::logging::Logger = &$logger;
        if l.enabled($level) {
            l.log($level, format_args!($($arg)*));
        }
    }};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_parsing() {
        assert_eq!(
            parse_spec("debug").unwrap(),
            (Level::Debug, LogTarget::Stderr)
        );
        assert_eq!(
            parse_spec("info:/tmp/f.log").unwrap(),
            (Level::Info, LogTarget::File("/tmp/f.log".into()))
        );
        assert!(parse_spec("loud").is_err());
    }

    #[test]
    fn warn_once_per_kind() {
        let l = Logger::new(Level::Warn, &LogTarget::Memory);
        l.warn_once("a", format_args!("first a"));
        l.warn_once("a", format_args!("second a"));
        l.warn_once("b", format_args!("first b"));
        assert_eq!(l.lines().len(), 2);
        assert!(l.lines()[0].ends_with("WARN: first a"));
        assert!(l.lines()[1].ends_with("WARN: first b"));
        let verbose = Logger::new(Level::Info, &LogTarget::Memory);
        verbose.warn_once("a", format_args!("1"));
        verbose.warn_once("a", format_args!("2"));
        assert!(verbose.lines()[1].ends_with("INFO: 2"));
    }

    #[test]
    fn file_lines_carry_a_timestamp() {
        let dir = std::env::temp_dir().join(format!("ferrohsm-log-{}", std::process::id()));
        let _ = std::fs::create_dir_all(&dir);
        let path = dir.join("m.log");
        let l = Logger::new(Level::Warn, &LogTarget::File(path.clone()));
        crate::log!(l, Level::Warn, "stamped");
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_dir_all(&dir);
        let (stamp, rest) = text.trim_end().split_once(' ').unwrap();
        assert!(ferrohsm_store::audit::parse_time(stamp).is_some(), "{text}");
        assert!(rest.ends_with("WARN: stamped"), "{text}");
    }

    #[test]
    fn threshold_filters() {
        let l = Logger::new(Level::Warn, &LogTarget::Memory);
        crate::log!(l, Level::Info, "hidden {}", 1);
        crate::log!(l, Level::Warn, "shown {}", 2);
        let lines = l.lines();
        assert_eq!(lines.len(), 1);
        assert!(lines[0].contains("WARN: shown 2"));
    }
}
