//! Which threads the store leaves behind (see the `sled_store` module docs).
//!
//! Finding, asserted here: the store itself starts no thread and sled is
//! opened with `flush_every_ms(None)`, so there is no flusher thread; but sled
//! 0.34 starts a process-global I/O pool of 7 `sled-io-N` threads on first use
//! which never exit, even when every `Db` is dropped. The pool does not grow
//! per call.
use std::collections::BTreeMap;

mod common;

use common::*;
use ferrohsm_store::{SledOptions, SledStore, Store};

fn threads() -> BTreeMap<String, String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
            (
                e.file_name().to_string_lossy().into_owned(),
                comm.trim().to_owned(),
            )
        })
        .collect()
}

#[test]
fn threads_left_after_store_calls() {
    let before = threads();
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    assert_eq!(threads(), before, "SledStore::open starts no thread");
    let (t, k) = token(1, 0);
    s.init_token(&t).unwrap();
    s.put_object(1, &object(1, true, "x"), Some(&k)).unwrap();
    assert_eq!(s.objects(1, Some(&k)).unwrap().len(), 1);
    let after_first = threads();
    let new: Vec<&String> = after_first
        .iter()
        .filter(|(tid, _)| !before.contains_key(*tid))
        .map(|(_, name)| name)
        .collect();
    eprintln!(
        "threads before: {}, after the first calls: {} (new: {new:?})",
        before.len(),
        after_first.len()
    );
    assert!(
        new.iter().all(|n| n.starts_with("sled-io-")),
        "only sled's I/O pool: {new:?}"
    );
    assert!(new.len() <= 7 + 2, "{new:?}");
    // Many more calls, and dropping the store: the pool neither grows nor ends.
    for i in 2..40 {
        s.put_object(1, &object(i, i % 2 == 0, "y"), Some(&k))
            .unwrap();
        s.objects(1, None).unwrap();
    }
    drop(s);
    std::thread::sleep(std::time::Duration::from_secs(7));
    let end = threads();
    let sled_io = end.values().filter(|n| n.starts_with("sled-io-")).count();
    eprintln!(
        "after 80 more calls, drop and 7 s idle: {} threads, {sled_io} sled-io",
        end.len()
    );
    assert_eq!(
        sled_io, 7,
        "sled 0.34 keeps exactly its 7 immortal I/O threads"
    );
    assert_eq!(end.len(), before.len() + 7);
    assert!(
        !end.values().any(|n| n.contains("flush")),
        "no flusher thread"
    );
}
