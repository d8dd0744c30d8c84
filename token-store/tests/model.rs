//! Model test: a seeded random sequence of operations against `SledStore` and
//! `MemoryStore` (the model) gives the same answers.
mod common;

use std::collections::BTreeMap;

use common::*;
use ferrohsm_store::{
    AttrValue, MemoryStore, ObjectRecord, SledOptions, SledStore, StorageKey, Store, TokenRecord,
};

fn random_object(rng: &mut Rng, id: u64, private: bool) -> ObjectRecord {
    let mut attrs = vec![(0x0, AttrValue::Ulong(rng.below(3)))];
    for t in 1..=rng.below(6) {
        let v = match rng.below(4) {
            0 => AttrValue::Bool(rng.below(2) == 0),
            1 => AttrValue::Ulong(rng.next()),
            2 => AttrValue::Bytes((0..rng.below(40)).map(|_| rng.next() as u8).collect()),
            _ => AttrValue::Mechanisms((0..rng.below(4)).map(|_| rng.next()).collect()),
        };
        attrs.push((t * 0x100 + rng.below(3), v));
    }
    attrs.sort_by_key(|(t, _)| *t);
    attrs.dedup_by_key(|(t, _)| *t);
    ObjectRecord { id, private, attrs }
}

#[test]
fn sled_store_behaves_like_memory_store() {
    let seed = std::env::var("MODEL_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x5eed_1234_u64);
    let ops: usize = std::env::var("MODEL_OPS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(2000);
    let mut rng = Rng(seed);
    let d = tempfile::tempdir().unwrap();
    let sled = SledStore::open(d.path(), SledOptions::default()).unwrap();
    let model = MemoryStore::new();
    let mut tokens: BTreeMap<u64, (TokenRecord, StorageKey)> = BTreeMap::new();
    let mut reopen_every = 0;
    let mut sled = Some(sled);
    let mut count = [0usize; 9];
    for step in 0..ops {
        reopen_every += 1;
        if reopen_every == 250 {
            // Also across a reopen.
            drop(sled.take());
            sled = Some(SledStore::open(d.path(), SledOptions::default()).unwrap());
            reopen_every = 0;
        }
        let s = sled.as_ref().unwrap();
        let slot = 1 + rng.below(3);
        let gens = |slot| (s.generation(slot).unwrap(), model.generation(slot).unwrap());
        let before = gens(slot);
        let op = match rng.below(100) {
            0..3 => 0,
            3..8 => 1,
            8..45 => 2,
            45..60 => 3,
            60..75 => 4,
            75..90 => 5,
            90..97 => 6,
            _ => 7,
        };
        count[op] += 1;
        let ctx = format!("step {step} op {op} slot {slot}");
        match op {
            0 => {
                let (t, k) = token(slot, step as u8);
                assert_eq!(s.init_token(&t), model.init_token(&t), "{ctx}");
                tokens.insert(slot, (t, k));
            }
            1 => {
                let t = match tokens.get_mut(&slot) {
                    Some((t, _)) => {
                        t.user_failures = rng.below(10) as u32;
                        t.so_failures += 1;
                        t.clone()
                    }
                    None => token(slot, 0).0,
                };
                assert_eq!(s.update_token(&t), model.update_token(&t), "{ctx}");
            }
            2 | 3 => {
                let id = rng.below(40);
                let private = rng.below(2) == 0;
                let obj = random_object(&mut rng, id, private);
                let spare = StorageKey::generate().unwrap();
                let key = match (tokens.get(&slot), rng.below(4)) {
                    (_, 0) => None,
                    (Some((_, k)), _) => Some(k),
                    (None, _) => Some(&spare),
                };
                assert_eq!(
                    s.put_object(slot, &obj, key),
                    model.put_object(slot, &obj, key),
                    "{ctx}"
                );
            }
            4 => {
                let id = rng.below(45);
                assert_eq!(
                    s.delete_object(slot, id),
                    model.delete_object(slot, id),
                    "{ctx}"
                );
            }
            5 => assert_eq!(s.objects(slot, None), model.objects(slot, None), "{ctx}"),
            6 => {
                let key = tokens.get(&slot).map(|(_, k)| k);
                assert_eq!(s.objects(slot, key), model.objects(slot, key), "{ctx}");
            }
            _ => {
                let a: Vec<String> = s
                    .tokens()
                    .unwrap()
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect();
                let b: Vec<String> = model
                    .tokens()
                    .unwrap()
                    .iter()
                    .map(|t| format!("{t:?}"))
                    .collect();
                assert_eq!(a, b, "{ctx}");
                count[8] += 1;
            }
        }
        let after = gens(slot);
        assert_eq!(
            after.0 > before.0,
            after.1 > before.1,
            "{ctx}: generation change differs"
        );
        assert!(after.0 >= before.0, "{ctx}: generation went back");
    }
    // Final full comparison, through a fresh store.
    drop(sled);
    let s = SledStore::open(d.path(), SledOptions::default()).unwrap();
    for (slot, (_, k)) in &tokens {
        assert_eq!(s.objects(*slot, Some(k)), model.objects(*slot, Some(k)));
    }
    eprintln!("ops per kind: {count:?}");
}
