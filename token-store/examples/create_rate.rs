//! Durable object creation and login-time read rates of the sled store at
//! growing object counts (issue 18, point 5). Not a test: it prints rates.
//!
//! `cargo run --release -p ferrohsm-store --example create_rate -- 1000 10000 100000 [threads]`
//! creates private objects through `Store::put_object` with the storage key
//! (as the module does after login), and at each count measures a burst of
//! creations, then a fresh store's `objects` (what login reads) and its
//! first call.
#![forbid(unsafe_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use ferrohsm_store::{
    AttrValue, KdfParams, KeyPolicy, ObjectRecord, PinWrap, SledOptions, SledStore, StorageKey,
    Store, TokenRecord,
};

const CHEAP: KdfParams = KdfParams {
    memory_kib: 64,
    passes: 1,
    lanes: 1,
};

fn object(id: u64) -> ObjectRecord {
    ObjectRecord {
        id,
        private: true,
        attrs: vec![
            (0x0, AttrValue::Ulong(0)),
            (0x1, AttrValue::Bool(true)),
            (0x2, AttrValue::Bool(true)),
            (0x3, AttrValue::Bytes(format!("bench-{id}").into_bytes())),
            (0x10, AttrValue::Bytes(b"ferrohsm-bench".to_vec())),
            (0x11, AttrValue::Bytes(vec![0x5a; 32])),
        ],
    }
}

fn main() {
    let mut args: Vec<u64> = std::env::args()
        .skip(1)
        .map(|a| a.parse().expect("counts are numbers"))
        .collect();
    let threads = if args.len() > 1 && *args.last().unwrap() <= 16 {
        args.pop().unwrap()
    } else {
        1
    };
    if args.is_empty() {
        args = vec![1000, 10_000];
    }
    let dir = tempfile::tempdir().unwrap();
    let key = StorageKey::generate().unwrap();
    let mut token_id = [0u8; 16];
    getrandom::fill(&mut token_id).unwrap();
    let token = TokenRecord {
        slot_id: 1,
        token_id,
        label: [b' '; 32],
        serial: [b' '; 16],
        policy: KeyPolicy::Hsm,
        so_pin: PinWrap::seal(b"so", &key, CHEAP, b"so").unwrap(),
        user_pin: None,
        so_failures: 0,
        user_failures: 0,
        audit_root: None,
    };
    let store = Arc::new(SledStore::open(dir.path(), SledOptions::default()).unwrap());
    store.init_token(&token).unwrap();
    let key = Arc::new(key);
    let next = Arc::new(AtomicU64::new(1));
    let mut have = 0u64;
    for &n in &args {
        // Fill up to n - burst in bulk (untimed), then time a burst of single puts.
        let burst = 500.min(n);
        let fill_to = n - burst;
        while have < fill_to {
            let chunk: Vec<_> = (0..(fill_to - have).min(5000))
                .map(|_| object(next.fetch_add(1, Ordering::Relaxed)))
                .collect();
            have += chunk.len() as u64;
            store.put_objects(1, &chunk, Some(&key)).unwrap();
        }
        let t0 = Instant::now();
        let per = burst / threads;
        let hs: Vec<_> = (0..threads)
            .map(|_| {
                let (store, key, next) = (store.clone(), key.clone(), next.clone());
                std::thread::spawn(move || {
                    for _ in 0..per {
                        let id = next.fetch_add(1, Ordering::Relaxed);
                        store.put_object(1, &object(id), Some(&key)).unwrap();
                    }
                })
            })
            .collect();
        for h in hs {
            h.join().unwrap();
        }
        let made = per * threads;
        have += made;
        let dt = t0.elapsed().as_secs_f64();
        store.release();
        // A new process: a fresh store, its first call, then login's read.
        let fresh = SledStore::open(dir.path(), SledOptions::default()).unwrap();
        let t1 = Instant::now();
        fresh.token(1).unwrap().unwrap();
        let first = t1.elapsed().as_secs_f64();
        let t2 = Instant::now();
        let objs = fresh.objects(1, Some(&key)).unwrap();
        let login = t2.elapsed().as_secs_f64();
        assert_eq!(objs.len() as u64, have);
        drop(fresh);
        println!(
            "{have:>7} objects: {:>7.0} creations/s ({threads} thread(s)), first call {:>7.1} ms, objects(key) {:>7.1} ms",
            made as f64 / dt,
            first * 1e3,
            login * 1e3
        );
    }
}
