//! FerroHSM benchmark suite: measures FerroHSM as its users see it — through
//! the real `libferrohsm_pkcs11.so`, loaded by path — next to SoftHSMv2 loaded
//! the same way in the same run, and next to the RustCrypto crates doing the
//! same work directly.
//!
//! Run: `cargo build --release -p ferrohsm-pkcs11 && cargo run --release -p
//! ferrohsm-benches -- [--ops a,b] [--seconds N] [--threads 1,2] [--json FILE]
//! [--module PATH] [--softhsm PATH]`. See BENCHMARKS.md.
//!
//! The modules read their configuration from the environment when loaded,
//! and setting environment variables of a running process is `unsafe` in
//! Rust 2024; so the program prepares a scratch directory and re-executes
//! itself once with the variables set (`FERROHSM_DIR`, `FERROHSM_CONF`,
//! `SOFTHSM2_CONF`). The child does all the work; the parent deletes the
//! directory afterwards and passes on the exit code.
#![forbid(unsafe_code)]

mod fixed_keys;
mod measure;
mod rawlc;
mod report;
mod rows;
mod stats;
mod token;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;

use crate::measure::measure;
use crate::report::{Cell, Machine, ModuleInfo, Report, RowResult};
use crate::rows::{FindBudget, Keys, Op};
use crate::token::{BResult, BenchError, Target, USER_PIN};

/// Set in the re-executed child: the scratch directory the parent made.
const WORKDIR_ENV: &str = "FERROHSM_BENCH_WORKDIR";
/// Where Debian and other distributions put SoftHSMv2.
const SOFTHSM_PATHS: [&str; 4] = [
    "/usr/lib/softhsm/libsofthsm2.so",
    "/usr/lib/x86_64-linux-gnu/softhsm/libsofthsm2.so",
    "/usr/local/lib/softhsm/libsofthsm2.so",
    "/usr/lib64/pkcs11/libsofthsm2.so",
];
/// Default seconds per row per column.
const DEFAULT_SECONDS: f64 = 1.0;
/// The object-finding setup may take this many times `--seconds`…
const FIND_SETUP_FACTOR: f64 = 60.0;
/// …but at least this many seconds.
const FIND_SETUP_MIN_S: f64 = 30.0;

const USAGE: &str = "\
usage: cargo run --release -p ferrohsm-benches -- [options]

  --ops a,b,...     rows to run (ids or id prefixes; default: all)
  --seconds N       seconds per row per column (default 1; CI: 0.2)
  --threads 1,2     thread counts; rows marked scaling run at each (default 1,2)
  --json FILE       also write the results as JSON
  --module PATH     FerroHSM module (default: libferrohsm_pkcs11.so next to this binary)
  --softhsm PATH    SoftHSMv2 module (default: searched in the usual places)
  --audit on|off    FerroHSM's audit log (default on; off only to measure its cost)
  --list            list the row ids and exit

Build the module first: cargo build --release -p ferrohsm-pkcs11";

/// Command-line options.
#[derive(Clone, Debug, PartialEq)]
struct Options {
    ops: Option<Vec<String>>,
    seconds: f64,
    threads: Vec<usize>,
    json: Option<PathBuf>,
    module: Option<PathBuf>,
    softhsm: Option<PathBuf>,
    audit: bool,
    list: bool,
}

impl Options {
    fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            ops: None,
            seconds: DEFAULT_SECONDS,
            threads: vec![1, 2],
            json: None,
            module: None,
            softhsm: None,
            audit: true,
            list: false,
        };
        let mut it = args.iter();
        while let Some(a) = it.next() {
            let (flag, inline) = match a.split_once('=') {
                Some((f, v)) if f.starts_with("--") => (f, Some(v.to_string())),
                _ => (a.as_str(), None),
            };
            let mut value = || {
                inline
                    .clone()
                    .or_else(|| it.next().cloned())
                    .ok_or(format!("{flag} needs a value"))
            };
            match flag {
                "--ops" => {
                    let v: Vec<String> = value()?
                        .split(',')
                        .map(|s| s.trim().to_string())
                        .filter(|s| !s.is_empty())
                        .collect();
                    for id in &v {
                        if !Op::ALL.iter().any(|op| op.id().starts_with(id.as_str())) {
                            let all: Vec<_> = Op::ALL.iter().map(|o| o.id()).collect();
                            return Err(format!("unknown op {id:?}; known: {}", all.join(", ")));
                        }
                    }
                    o.ops = Some(v);
                }
                "--seconds" => {
                    let v = value()?;
                    o.seconds = v
                        .parse()
                        .map_err(|_| format!("--seconds: not a number: {v}"))?;
                    if !(o.seconds > 0.0 && o.seconds <= 3600.0) {
                        return Err("--seconds must be in (0, 3600]".into());
                    }
                }
                "--threads" => {
                    let v = value()?;
                    let mut t = Vec::new();
                    for n in v.split(',') {
                        match n.trim().parse::<usize>() {
                            Ok(n) if (1..=256).contains(&n) => t.push(n),
                            _ => return Err(format!("--threads: bad count {n:?}")),
                        }
                    }
                    t.sort_unstable();
                    t.dedup();
                    o.threads = t;
                }
                "--json" => o.json = Some(PathBuf::from(value()?)),
                "--module" => o.module = Some(PathBuf::from(value()?)),
                "--softhsm" => o.softhsm = Some(PathBuf::from(value()?)),
                "--audit" => {
                    o.audit = match value()?.as_str() {
                        "on" => true,
                        "off" => false,
                        v => return Err(format!("--audit: use on or off, not {v:?}")),
                    }
                }
                "--list" => o.list = true,
                "-h" | "--help" => return Err(String::new()),
                other => return Err(format!("unknown argument {other:?}")),
            }
        }
        Ok(o)
    }

    /// The rows to run: (op, threads), in report order.
    fn rows(&self) -> Vec<(Op, usize)> {
        let wanted = |op: Op| {
            self.ops
                .as_ref()
                .is_none_or(|v| v.iter().any(|p| op.id().starts_with(p.as_str())))
        };
        let mut out = Vec::new();
        for op in Op::ALL.into_iter().filter(|o| wanted(*o)) {
            for &t in &self.threads {
                if t == 1 || op.scales() {
                    out.push((op, t));
                }
            }
        }
        out
    }
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opts = match Options::parse(&args) {
        Ok(o) => o,
        Err(e) if e.is_empty() => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        Err(e) => {
            eprintln!("error: {e}\n\n{USAGE}");
            return ExitCode::from(2);
        }
    };
    if opts.list {
        for op in Op::ALL {
            println!(
                "{:<20} {}{}",
                op.id(),
                op.title(),
                if op.scales() { " (scaling)" } else { "" }
            );
        }
        return ExitCode::SUCCESS;
    }
    match std::env::var_os(WORKDIR_ENV) {
        Some(dir) => run(&opts, Path::new(&dir)),
        None => reexec(&args, opts.audit),
    }
}

/// Parent side: make the scratch directory and configuration files, run
/// this program again with the modules' environment set, clean up.
fn reexec(args: &[String], audit: bool) -> ExitCode {
    let result = (|| -> Result<ExitCode, String> {
        let tmp = tempfile::Builder::new()
            .prefix("ferrohsm-bench-")
            .tempdir()
            .map_err(|e| format!("cannot create a temporary directory: {e}"))?;
        let dir = tmp.path();
        let data = dir.join("data");
        let tokens = dir.join("softhsm-tokens");
        for d in [&data, &tokens] {
            std::fs::create_dir_all(d).map_err(|e| format!("{}: {e}", d.display()))?;
        }
        let ferro_conf = dir.join("ferrohsm.toml");
        // The production Argon2id cost, written out so the login row's cost is explicit.
        let toml = format!(
            "data_dir = \"{}\"\n\n[kdf]\nmemory_kib = 19456\npasses = 2\nlanes = 1\n\n\
             [audit]\nenabled = {audit}\n",
            toml_escape(&data.to_string_lossy())
        );
        let soft_conf = dir.join("softhsm2.conf");
        let soft = format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\nslots.removable = false\n",
            tokens.display()
        );
        for (path, text) in [(&ferro_conf, toml), (&soft_conf, soft)] {
            std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))?;
        }
        let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
        let status = Command::new(exe)
            .args(args)
            .env(WORKDIR_ENV, dir)
            .env("FERROHSM_DIR", &data)
            .env("FERROHSM_CONF", &ferro_conf)
            .env("SOFTHSM2_CONF", &soft_conf)
            .status()
            .map_err(|e| format!("cannot run the benchmark process: {e}"))?;
        Ok(ExitCode::from(
            status.code().map_or(1, |c| c.clamp(0, 255) as u8),
        ))
    })();
    result.unwrap_or_else(|e| {
        eprintln!("error: {e}");
        ExitCode::from(2)
    })
}

fn toml_escape(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

/// The FerroHSM module: `--module`, else next to this binary (which cargo
/// puts in target/<profile>/, where the module is built too).
fn ferrohsm_path(opts: &Options) -> Result<PathBuf, String> {
    let p = match &opts.module {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("cannot find this program: {e}"))?
            .parent()
            .map(|d| d.join("libferrohsm_pkcs11.so"))
            .ok_or("this program has no directory")?,
    };
    if p.is_file() {
        Ok(p)
    } else {
        Err(format!(
            "FerroHSM module not found at {}\n       build it first:  cargo build --release -p ferrohsm-pkcs11\n       \
             (or name it with --module PATH)",
            p.display()
        ))
    }
}

fn softhsm_path(opts: &Options) -> Option<PathBuf> {
    match &opts.softhsm {
        Some(p) => Some(p.clone()),
        None => SOFTHSM_PATHS
            .iter()
            .map(PathBuf::from)
            .find(|p| p.is_file()),
    }
}

/// One module under test, with its logged-in main session and keys.
struct Under {
    target: Target,
    session: Session,
    keys: Keys,
}

/// Child side: the benchmark itself.
fn run(opts: &Options, workdir: &Path) -> ExitCode {
    let started = Instant::now();
    let mut notes = Vec::new();
    let ferro_path = match ferrohsm_path(opts) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    eprintln!("scratch directory: {}", workdir.display());
    let mut under: Vec<Under> = Vec::new();
    match Target::open("FerroHSM", "ferrohsm", &ferro_path) {
        Ok((target, session)) => under.push(Under {
            target,
            session,
            keys: Keys::default(),
        }),
        Err(e) => {
            eprintln!("error: FerroHSM ({}): {e}", ferro_path.display());
            return ExitCode::from(1);
        }
    }
    let mut softhsm_missing = None;
    match softhsm_path(opts) {
        Some(p) => match Target::open("SoftHSMv2", "softhsm", &p) {
            Ok((target, session)) => under.push(Under {
                target,
                session,
                keys: Keys::default(),
            }),
            Err(e) => {
                let msg = format!(
                    "SoftHSMv2 at {} could not be used ({e}); measuring FerroHSM alone",
                    p.display()
                );
                eprintln!("warning: {msg}");
                notes.push(msg);
                softhsm_missing = Some("could not be loaded (see the note below)".into());
            }
        },
        None => {
            let msg =
                "SoftHSMv2 is not installed; measuring FerroHSM alone. To compare, install it \
                       (Debian/Ubuntu: apt-get install softhsm2) and run again"
                    .to_string();
            eprintln!("note: {msg}");
            notes.push(msg);
            softhsm_missing = Some("not installed (apt-get install softhsm2)".into());
        }
    }
    for u in &under {
        eprintln!(
            "{}: {} — {}",
            u.target.name,
            u.target.path.display(),
            u.target.description
        );
    }

    let budget = FindBudget {
        setup_cap_s: (opts.seconds * FIND_SETUP_FACTOR).max(FIND_SETUP_MIN_S),
    };
    let mut rows = Vec::new();
    for (op, threads) in opts.rows() {
        let mut cells = Vec::new();
        for u in &mut under {
            let t0 = Instant::now();
            let cell = to_cell(measure_module(op, threads, opts.seconds, u, budget));
            eprintln!(
                "  {:<18} x{threads} {:<9} {} ({:.1} s)",
                op.id(),
                u.target.name,
                brief(&cell),
                t0.elapsed().as_secs_f64()
            );
            cells.push(cell);
        }
        let softhsm = if under.len() > 1 {
            cells.pop().unwrap_or(Cell::Skipped {
                reason: "not run".into(),
            })
        } else {
            Cell::Skipped {
                reason: softhsm_missing.clone().unwrap_or_default(),
            }
        };
        let ferrohsm = cells.pop().unwrap_or(Cell::Skipped {
            reason: "not run".into(),
        });
        let t0 = Instant::now();
        let raw = if rows::has_raw(op) {
            to_cell(
                rows::raw_prepare(op)
                    .and_then(|p| measure(threads, opts.seconds, || rows::raw_op(op, &p))),
            )
        } else {
            Cell::NotApplicable
        };
        eprintln!(
            "  {:<18} x{threads} {:<9} {} ({:.1} s)",
            op.id(),
            "raw",
            brief(&raw),
            t0.elapsed().as_secs_f64()
        );
        let mut row = RowResult::new(
            op.id().into(),
            op.title().into(),
            threads,
            ferrohsm,
            softhsm,
            raw,
        );
        row.raw_backend = rows::has_raw(op).then(|| rawlc::backend(op).to_string());
        rows.push(row);
    }

    notes.push(
        "FerroHSM logins use the production Argon2id cost (19 MiB, 2 passes, 1 lane), written explicitly in \
         ferrohsm.toml; SoftHSMv2 derives its PIN key with its own, cheaper KDF"
            .into(),
    );
    notes.push(if opts.audit {
        "FerroHSM audit log on (key use counted per key and written as summaries, the default)"
            .into()
    } else {
        "FerroHSM audit log OFF (--audit off): only for measuring what auditing costs".into()
    });
    notes.push(format!(
        "total run time {:.0} s",
        started.elapsed().as_secs_f64()
    ));
    let report = Report {
        date: report::now_utc(),
        machine: Machine::current(),
        seconds_per_row: opts.seconds,
        modules: under
            .iter()
            .map(|u| ModuleInfo {
                key: u.target.key.into(),
                path: u.target.path.display().to_string(),
                description: u.target.description.clone(),
            })
            .collect(),
        rows,
        notes,
    };
    println!(
        "\nFerroHSM benchmarks — {} — {} × {} — {} s per row per column\n",
        report.date, report.machine.nproc, report.machine.cpu, report.seconds_per_row
    );
    for m in &report.modules {
        println!("- {}: {} ({})", m.key, m.description, m.path);
    }
    println!("\n{}", report.table());
    println!("F/SoftHSM = FerroHSM ops/s ÷ SoftHSMv2 ops/s (above 1: FerroHSM faster).");
    println!(
        "F/raw     = FerroHSM ops/s ÷ raw backend ops/s (the crates named in \"raw by\", called directly: the floor)."
    );
    println!("n/a       = the raw crates have no equivalent (sessions, login, token objects).\n");
    for r in report.reasons() {
        println!("- {r}");
    }
    for n in &report.notes {
        println!("- note: {n}");
    }
    let mut code = ExitCode::SUCCESS;
    if let Some(path) = &opts.json {
        let written = serde_json::to_string_pretty(&report)
            .map_err(|e| e.to_string())
            .and_then(|j| std::fs::write(path, j + "\n").map_err(|e| e.to_string()));
        match written {
            Ok(()) => eprintln!("wrote {}", path.display()),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                code = ExitCode::from(2);
            }
        }
    }
    if report.failed() {
        eprintln!(
            "\nFAILED: at least one row gave a wrong answer or an unexpected error (see above)"
        );
        code = ExitCode::from(1);
    }
    code
}

/// Prepares (checks the round trip) and measures one row on one module.
fn measure_module(
    op: Op,
    threads: usize,
    seconds: f64,
    u: &mut Under,
    budget: FindBudget,
) -> BResult<crate::stats::Summary> {
    let prepared = rows::prepare(op, &u.target, &u.session, &mut u.keys, budget);
    let result = prepared.and_then(|p| {
        if op.writes_durably() {
            rows::settle_disk();
        }
        let target = &u.target;
        measure(threads, seconds, || rows::p11_op(op, target, &p))
    });
    if op.is_login() {
        // The row leaves the application logged out (or mid-way on error).
        let pin = AuthPin::new(USER_PIN.into());
        if let Err(e) = u.session.login(UserType::User, Some(&pin)) {
            let already = matches!(
                e,
                cryptoki::error::Error::Pkcs11(cryptoki::error::RvError::UserAlreadyLoggedIn, _)
            );
            if !already {
                return Err(BenchError::Fail(format!(
                    "logging in again after the login row: {e}"
                )));
            }
        }
    }
    result
}

fn to_cell(r: BResult<crate::stats::Summary>) -> Cell {
    match r {
        Ok(s) => Cell::Ok(s),
        Err(BenchError::Skip(reason)) => Cell::Skipped { reason },
        Err(BenchError::Fail(reason)) => Cell::Failed { reason },
    }
}

fn brief(c: &Cell) -> String {
    match c {
        Cell::Ok(s) => format!(
            "{} ops/s, p50 {}, p99 {} ({} ops)",
            stats::fmt_rate(s.ops_per_sec),
            stats::fmt_latency(s.p50_ns),
            stats::fmt_latency(s.p99_ns),
            s.ops
        ),
        Cell::Skipped { reason } => format!("skipped: {reason}"),
        Cell::NotApplicable => "n/a".into(),
        Cell::Failed { reason } => format!("FAILED: {reason}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &str) -> Vec<String> {
        s.split_whitespace().map(String::from).collect()
    }

    #[test]
    fn defaults() {
        let o = Options::parse(&[]).unwrap();
        assert_eq!(o.seconds, 1.0);
        assert_eq!(o.threads, [1, 2]);
        let rows = o.rows();
        let scaling = Op::ALL.iter().filter(|o| o.scales()).count();
        assert_eq!(
            rows.len(),
            Op::ALL.len() + scaling,
            "every row once plus the scaling rows at 2 threads"
        );
        for op in [Op::EcdsaSign, Op::GcmEnc64, Op::CreateData] {
            assert!(rows.contains(&(op, 2)), "{} at 2 threads", op.id());
        }
    }

    #[test]
    fn selection() {
        let o = Options::parse(&args(
            "--ops gcm_enc,sha256_1k --threads 2,1 --seconds 0.2 --json=o.json",
        ))
        .unwrap();
        assert_eq!(o.seconds, 0.2);
        assert_eq!(o.json, Some(PathBuf::from("o.json")));
        assert_eq!(
            o.rows(),
            [
                (Op::Sha256, 1),
                (Op::GcmEnc64, 1),
                (Op::GcmEnc64, 2),
                (Op::GcmEnc4k, 1)
            ]
        );
        let o = Options::parse(&args("--ops ecdsa_p256_sign --threads 2")).unwrap();
        assert_eq!(o.rows(), [(Op::EcdsaSign, 2)]);
    }

    #[test]
    fn bad_arguments() {
        assert!(Options::parse(&args("--ops nope")).is_err());
        assert!(Options::parse(&args("--seconds 0")).is_err());
        assert!(Options::parse(&args("--seconds x")).is_err());
        assert!(Options::parse(&args("--threads 0")).is_err());
        assert!(Options::parse(&args("--json")).is_err());
        assert!(Options::parse(&args("--frobnicate")).is_err());
        assert!(Options::parse(&args("--audit maybe")).is_err());
        assert!(!Options::parse(&args("--audit off")).unwrap().audit);
        assert!(Options::parse(&[]).unwrap().audit);
        assert_eq!(Options::parse(&args("--help")), Err(String::new()));
    }
}
