//! Which threads the store leaves behind (see the `sled_store` module docs).
//!
//! Upstream sled 0.34 starts a process-global pool of 7 immortal `sled-io-N`
//! threads on first use; FerroHSM builds it with the inline pool
//! (vendor/sled/FERROHSM-PATCH.md), and opens it with `flush_every_ms(None)`.
//! The only thread is the store's own `ferrohsm-store` closer, which lives
//! while a database is kept open between calls and ends with it. This test
//! fails if sled's threads come back (e.g. after a sled update that drops the
//! patch) or if the closer outlives its database.
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
fn store_calls_start_no_thread() {
    let before = threads();
    let d = tempfile::tempdir().unwrap();
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    let (t, k) = token(1, 0);
    s.init_token(&t).unwrap();
    // Enough writes to seal several sled I/O buffers and a recovery at each open.
    for i in 1..60 {
        s.put_object(1, &object(i, i % 2 == 0, "y"), Some(&k))
            .unwrap();
        s.objects(1, None).unwrap();
        if i % 10 == 0 {
            s.delete_object(1, i - 1).unwrap();
        }
    }
    // 59 written, the odd ids 9, 19, .., 49 deleted; 25 of the rest public.
    assert_eq!(s.objects(1, Some(&k)).unwrap().len(), 59 - 5);
    assert_eq!(s.objects(1, None).unwrap().len(), 30 - 5);
    let during = threads();
    let new = |now: &BTreeMap<String, String>| -> Vec<String> {
        now.iter()
            .filter(|(tid, _)| !before.contains_key(*tid))
            .map(|(_, name)| name.clone())
            .collect()
    };
    assert!(
        new(&during).iter().all(|n| n == "ferrohsm-store"),
        "threads other than the store's closer: {:?} (sled's thread pool is back?)",
        new(&during)
    );
    // Idle past the linger time: the database is closed and the closer ends.
    std::thread::sleep(SledOptions::default().linger * 4);
    let idle = threads();
    assert!(
        new(&idle).is_empty(),
        "closer still running: {:?}",
        new(&idle)
    );
    s.objects(1, None).unwrap();
    drop(s);
    let after = threads();
    assert!(
        new(&after).is_empty(),
        "dropping the store left threads behind: {:?}",
        new(&after)
    );
}
