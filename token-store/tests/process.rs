//! Real second processes: a writer killed with SIGKILL at random moments (every
//! acknowledged change survives, the token always opens), and two processes
//! writing the same token at once.
//!
//! The child is this test binary run again with `FERROHSM_CHILD` set; it runs
//! only `child_entry`, which does nothing in a normal run.
mod common;

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::*;
use ferrohsm_store::{ObjectRecord, SledOptions, SledStore, StorageKey, Store};

const IDS: u64 = 24;

fn user_key(s: &SledStore) -> StorageKey {
    let t = s
        .tokens()
        .unwrap()
        .into_iter()
        .find(|t| t.slot_id == 1)
        .unwrap();
    t.user_pin.unwrap().open(USER_PIN, b"user").unwrap()
}

fn obj(id: u64, n: u64) -> ObjectRecord {
    object(id, !n.is_multiple_of(3), &format!("n{n}"))
}

/// The child side. Modes: `crash` (loop of writes and deletes, one line per
/// step), `writer` (a fixed run of writes, then `DONE`).
#[test]
fn child_entry() {
    let Ok(mode) = std::env::var("FERROHSM_CHILD") else {
        return;
    };
    let dir = std::env::var("FERROHSM_CHILD_DIR").unwrap();
    let start: u64 = std::env::var("FERROHSM_CHILD_START")
        .unwrap()
        .parse()
        .unwrap();
    let s = SledStore::open(Path::new(&dir), SledOptions::default()).unwrap();
    let key = user_key(&s);
    let mut out = std::io::stdout().lock();
    let mut rng = Rng(start | 1);
    match mode.as_str() {
        "crash" => {
            for n in start..start + 100_000 {
                let id = rng.below(IDS);
                if rng.below(4) == 0 {
                    writeln!(out, "BEGIN del {id} {n}").unwrap();
                    out.flush().unwrap();
                    s.delete_object(1, id).unwrap();
                } else {
                    writeln!(out, "BEGIN put {id} {n}").unwrap();
                    out.flush().unwrap();
                    let o = obj(id, n);
                    s.put_object(1, &o, o.private.then_some(&key)).unwrap();
                }
                writeln!(out, "ACK").unwrap();
                out.flush().unwrap();
            }
        }
        "writer" => {
            for i in 0..40 {
                let o = obj(start + i, start + i);
                s.put_object(1, &o, Some(&key)).unwrap();
            }
            writeln!(out, "DONE").unwrap();
        }
        _ => panic!("unknown mode"),
    }
}

fn child(mode: &str, dir: &Path, start: u64) -> std::process::Child {
    Command::new(std::env::current_exe().unwrap())
        .args(["child_entry", "--exact", "--nocapture", "--test-threads=1"])
        .env("FERROHSM_CHILD", mode)
        .env("FERROHSM_CHILD_DIR", dir)
        .env("FERROHSM_CHILD_START", start.to_string())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap()
}

fn setup() -> (tempfile::TempDir, StorageKey) {
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    let (t, k) = token(1, 0);
    s.init_token(&t).unwrap();
    (d, k)
}

#[test]
fn sigkill_at_random_moments_loses_no_acknowledged_change() {
    let (d, key) = setup();
    let mut model: Vec<Option<ObjectRecord>> = vec![None; IDS as usize];
    let mut rng = Rng(0xc0ffee);
    let t0 = Instant::now();
    let (mut acked_total, mut inflight_applied, mut inflight_lost) = (0, 0, 0);
    for round in 0..60u64 {
        let mut c = child("crash", d.path(), (round + 1) * 1_000_000);
        let stdout = c.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        // Kill after a random number of acknowledged steps or a random time.
        let target = rng.below(25);
        let deadline = Instant::now() + Duration::from_millis(50 + rng.below(400));
        let mut lines = Vec::new();
        let mut acks = 0;
        while Instant::now() < deadline && acks < target {
            if let Ok(l) = rx.recv_timeout(Duration::from_millis(5)) {
                acks += u64::from(l.ends_with("ACK"));
                lines.push(l);
            }
        }
        if rng.below(2) == 0 {
            std::thread::sleep(Duration::from_micros(rng.below(20_000)));
        }
        c.kill().unwrap();
        c.wait().unwrap();
        reader.join().unwrap();
        lines.extend(rx.try_iter());
        // Replay: every ACKed step must be there; the last BEGIN without ACK
        // may or may not be.
        let mut pending: Option<(u64, Option<ObjectRecord>)> = None;
        for l in &lines {
            // libtest's "test child_entry ... " may prefix the first line.
            let l = ["BEGIN", "ACK"]
                .iter()
                .filter_map(|m| l.find(m).map(|i| &l[i..]))
                .next()
                .unwrap_or("");
            let w: Vec<&str> = l.split_whitespace().collect();
            match w.as_slice() {
                ["BEGIN", op, id, n] => {
                    let (id, n): (u64, u64) = (id.parse().unwrap(), n.parse().unwrap());
                    let new = (*op == "put").then(|| obj(id, n));
                    pending = Some((id, new));
                }
                ["ACK"] => {
                    let (id, new) = pending.take().unwrap();
                    model[id as usize] = new;
                    acked_total += 1;
                }
                _ => {}
            }
        }
        let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
        let scan = s.scan_tokens().unwrap();
        assert!(scan.broken.is_empty(), "round {round}: {:?}", scan.broken);
        assert_eq!(scan.tokens.len(), 1, "round {round}: token opens");
        let objs = s
            .objects(1, Some(&key))
            .unwrap_or_else(|e| panic!("round {round}: {e:?}"));
        let mut actual: Vec<Option<ObjectRecord>> = vec![None; IDS as usize];
        for o in objs {
            let i = o.id as usize;
            actual[i] = Some(o);
        }
        for id in 0..IDS as usize {
            if actual[id] == model[id] {
                if matches!(&pending, Some((p, new)) if *p as usize == id && *new != model[id]) {
                    inflight_lost += 1;
                }
                continue;
            }
            match &pending {
                Some((p, new)) if *p as usize == id && actual[id] == *new => {
                    model[id] = new.clone();
                    inflight_applied += 1;
                }
                _ => panic!(
                    "round {round}: object {id} is {:?}, acknowledged {:?}",
                    actual[id].as_ref().map(|o| o.attrs.clone()),
                    model[id].as_ref().map(|o| o.attrs.clone())
                ),
            }
        }
        // Public-only reads and the index agree too.
        assert_eq!(
            s.objects(1, None).unwrap().len(),
            model.iter().flatten().filter(|o| !o.private).count()
        );
    }
    eprintln!(
        "60 rounds in {:?}: {acked_total} acknowledged steps, interrupted step applied {inflight_applied}, lost {inflight_lost}",
        t0.elapsed()
    );
    assert!(acked_total > 100);
}

#[test]
fn two_processes_write_the_same_token() {
    let (d, key) = setup();
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    let g0 = s.generation(1).unwrap();
    let mut a = child("writer", d.path(), 1000);
    let mut b = child("writer", d.path(), 2000);
    // This process writes and reads meanwhile.
    for i in 0..20 {
        s.put_object(1, &obj(3000 + i, i), Some(&key)).unwrap();
        s.objects(1, Some(&key)).unwrap();
    }
    for c in [&mut a, &mut b] {
        let mut out = String::new();
        std::io::Read::read_to_string(c.stdout.as_mut().unwrap(), &mut out).unwrap();
        assert!(c.wait().unwrap().success());
        assert!(out.contains("DONE"), "{out}");
    }
    assert!(
        s.generation(1).unwrap() >= g0 + 100,
        "other processes' writes are seen"
    );
    let objs = s.objects(1, Some(&key)).unwrap();
    assert_eq!(objs.len(), 100);
    assert!(objs.contains(&obj(1039, 1039)) && objs.contains(&obj(2000, 2000)));
}
