//! Replays a fuzz target's checked-in corpus, then mutates it for a few
//! seconds, so that the targets run (and cannot rot) in every `cargo nextest
//! run --workspace`, without libFuzzer or a nightly compiler.
//!
//! Included with `#[path]` by the replay tests (`pkcs11-module/tests/
//! fuzz_replay.rs`, `token-store/tests/fuzz_replay.rs`, `tools/src/
//! fuzz_replay.rs`); the same target functions are what the libFuzzer
//! targets in `fuzz/fuzz_targets/` call.
//!
//! Environment:
//! - `FERROHSM_FUZZ_SECONDS` (default 2): mutation time per target; 0 replays
//!   the corpus only.
//! - `FERROHSM_FUZZ_SEED`: the mutation seed (printed by every run), to
//!   repeat a failing run exactly.
//!
//! A failing input is written to `<temp dir>/ferrohsm-fuzz-<target>-failure`
//! and printed in hex; an input that aborts the process (an allocation
//! failure) or hangs it is in `<temp dir>/ferrohsm-fuzz-<target>-current`
//! (a watchdog aborts after `HANG_SECONDS` on one input). Put a fixed
//! failure into `fuzz/corpus/<target>/` so it stays fixed.
#![allow(dead_code)]

use std::fs::{self, File};
use std::io::Write as _;
use std::os::unix::fs::FileExt as _;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// One input running longer than this is a hang.
pub const HANG_SECONDS: u64 = 20;

/// The corpus directory of `target`, beside the including crate.
pub fn corpus_dir(manifest_dir: &str, target: &str) -> PathBuf {
    Path::new(manifest_dir).join("../fuzz/corpus").join(target)
}

/// The corpus files of a target, sorted by name.
pub fn corpus(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = fs::read_dir(dir)
        .unwrap_or_else(|e| panic!("corpus {}: {e}", dir.display()))
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_ok_and(|t| t.is_file()))
        .map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            (name, fs::read(e.path()).expect("a corpus file"))
        })
        .collect();
    out.sort();
    out
}

/// xorshift64*: small, deterministic, good enough to pick mutations.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            0
        } else {
            (self.next() % n as u64) as usize
        }
    }
}

const INTERESTING: &[u64] = &[
    0,
    1,
    2,
    7,
    8,
    15,
    16,
    17,
    31,
    32,
    33,
    63,
    64,
    127,
    128,
    255,
    256,
    4096,
    65535,
    65536,
    0x7fff_ffff,
    0x8000_0000,
    0xffff_ffff,
    0x1_0000_0000,
    u64::MAX / 2,
    u64::MAX - 1,
    u64::MAX,
];

/// One random mutation of `input` (`others`: the corpus, for splicing).
pub fn mutate(rng: &mut Rng, input: &[u8], others: &[(String, Vec<u8>)]) -> Vec<u8> {
    let mut v = input.to_vec();
    for _ in 0..1 + rng.below(4) {
        let len = v.len();
        match rng.below(10) {
            0 if len > 0 => {
                let i = rng.below(len);
                v[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                v[i] = [0, 0xff, 0x7f, 0x80, 0x30, 0x04, 0x02][rng.below(7)];
            }
            2 => {
                let i = rng.below(len + 1);
                let n = 1 + rng.below(16);
                let bytes: Vec<u8> = (0..n).map(|_| rng.next() as u8).collect();
                v.splice(i..i, bytes);
            }
            3 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(32));
                v.drain(i..i + n);
            }
            4 if len > 0 => v.truncate(rng.below(len)),
            5 if len > 0 => {
                let i = rng.below(len);
                let n = 1 + rng.below((len - i).min(64));
                let copy = v[i..i + n].to_vec();
                let at = rng.below(len + 1);
                v.splice(at..at, copy);
            }
            6 if len >= 8 => {
                let i = rng.below(len - 7);
                let x = INTERESTING[rng.below(INTERESTING.len())];
                let b = if rng.below(2) == 0 {
                    x.to_le_bytes()
                } else {
                    x.to_be_bytes()
                };
                let w = [1, 2, 4, 8][rng.below(4)];
                let src = if rng.below(2) == 0 {
                    &b[..w]
                } else {
                    &b[8 - w..]
                };
                v[i..i + w].copy_from_slice(src);
            }
            7 if !others.is_empty() => {
                let (_, other) = &others[rng.below(others.len())];
                let cut = rng.below(len + 1);
                let from = rng.below(other.len() + 1);
                v.truncate(cut);
                v.extend_from_slice(&other[from..]);
            }
            8 if len > 0 => {
                // A DER-ish length byte: short, long form, or indefinite.
                let i = rng.below(len);
                v[i] = [0x00, 0x01, 0x7f, 0x80, 0x81, 0x82, 0x84, 0x88, 0xff][rng.below(9)];
            }
            _ => v.push(rng.next() as u8),
        }
    }
    v
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn seed() -> u64 {
    match std::env::var("FERROHSM_FUZZ_SEED") {
        Ok(s) => s.trim().parse().expect("FERROHSM_FUZZ_SEED is a number"),
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64),
    }
}

/// Mutation time per target: `FERROHSM_FUZZ_SECONDS`, default 2.
pub fn budget() -> Duration {
    let s: f64 = std::env::var("FERROHSM_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(2.0);
    Duration::from_secs_f64(s.max(0.0))
}

/// Where the input being run is kept, so an abort or a hang leaves it behind.
struct Current {
    file: File,
    path: PathBuf,
}

impl Current {
    fn new(target: &str) -> Current {
        let path = std::env::temp_dir().join(format!("ferrohsm-fuzz-{target}-current"));
        let file = File::create(&path).expect("a scratch file");
        Current { file, path }
    }

    fn set(&self, input: &[u8]) {
        let _ = self.file.set_len(0);
        let _ = self.file.write_all_at(input, 0);
    }
}

/// Aborts the process when one input runs longer than [`HANG_SECONDS`]:
/// `started` holds when the running input started (ms after `epoch`), or
/// `u64::MAX` when the run is over.
fn watchdog(target: &'static str, started: Arc<AtomicU64>, epoch: Instant, path: PathBuf) {
    std::thread::spawn(move || {
        loop {
            std::thread::sleep(Duration::from_millis(250));
            let at = started.load(Ordering::Relaxed);
            if at == u64::MAX {
                return;
            }
            let running = (epoch.elapsed().as_millis() as u64).saturating_sub(at);
            if running > HANG_SECONDS * 1000 {
                eprintln!(
                    "fuzz target {target}: one input has run for {running} ms (a hang); it is in {}",
                    path.display()
                );
                let _ = std::io::stderr().flush();
                std::process::abort();
            }
        }
    });
}

/// Runs `f` on every corpus file of `target`, then on mutations of them for
/// [`budget`]; panics (failing the test) with the input and how to repeat it
/// when `f` panics. Returns the number of inputs run.
pub fn run(manifest_dir: &str, target: &'static str, f: fn(&[u8])) -> u64 {
    let dir = corpus_dir(manifest_dir, target);
    let corpus = corpus(&dir);
    assert!(!corpus.is_empty(), "no corpus in {}", dir.display());
    let seed = seed();
    eprintln!(
        "fuzz target {target}: {} corpus files, seed {seed} (FERROHSM_FUZZ_SEED={seed} repeats this run)",
        corpus.len()
    );
    let current = Current::new(target);
    let started = Arc::new(AtomicU64::new(0));
    let epoch = Instant::now();
    let mark =
        |started: &AtomicU64| started.store(epoch.elapsed().as_millis() as u64, Ordering::Relaxed);
    watchdog(target, started.clone(), epoch, current.path.clone());
    let fail = |what: &str, input: &[u8], e: Box<dyn std::any::Any + Send>| -> ! {
        let path = std::env::temp_dir().join(format!("ferrohsm-fuzz-{target}-failure"));
        let _ = fs::write(&path, input);
        let msg = e
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_default();
        let shown = if input.len() <= 512 {
            hex(input)
        } else {
            format!("{}… ({} bytes)", hex(&input[..512]), input.len())
        };
        started.store(u64::MAX, Ordering::Relaxed);
        panic!(
            "fuzz target {target}: {what} panicked: {msg}\n  input: {shown}\n  saved: {}\n  \
             repeat: FERROHSM_FUZZ_SEED={seed}",
            path.display()
        );
    };
    let mut n = 0u64;
    for (name, input) in &corpus {
        current.set(input);
        mark(&started);
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(input))) {
            fail(&format!("corpus file {name}"), input, e);
        }
        n += 1;
    }
    let budget = budget();
    let t0 = Instant::now();
    let mut rng = Rng::new(seed);
    let mut i = 0u64;
    while t0.elapsed() < budget {
        let (_, base) = &corpus[rng.below(corpus.len())];
        let input = mutate(&mut rng, base, &corpus);
        current.set(&input);
        mark(&started);
        if let Err(e) = catch_unwind(AssertUnwindSafe(|| f(&input))) {
            fail(&format!("mutation {i}"), &input, e);
        }
        i += 1;
    }
    started.store(u64::MAX, Ordering::Relaxed);
    let _ = fs::remove_file(&current.path);
    eprintln!(
        "fuzz target {target}: {n} corpus inputs and {i} mutations in {:.1} s",
        t0.elapsed().as_secs_f64()
    );
    n + i
}

/// Writes `seeds` into the corpus directory of `target` (run with
/// `FERROHSM_WRITE_SEEDS=1` to refresh generated seeds).
pub fn write_seeds(manifest_dir: &str, target: &str, seeds: &[(String, Vec<u8>)]) {
    let dir = corpus_dir(manifest_dir, target);
    fs::create_dir_all(&dir).expect("a corpus directory");
    for (name, bytes) in seeds {
        fs::write(dir.join(name), bytes).expect("a seed file");
    }
}
