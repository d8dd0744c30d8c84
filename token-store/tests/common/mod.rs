//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::path::Path;

use ferrohsm_store::{
    AttrValue, KdfParams, KeyPolicy, ObjectRecord, PinWrap, StorageKey, TokenRecord,
};

/// A cheap KDF: tests only.
pub const CHEAP: KdfParams = KdfParams {
    memory_kib: 64,
    passes: 1,
    lanes: 1,
};

pub const SO_PIN: &[u8] = b"so-pin-4321";
pub const USER_PIN: &[u8] = b"user-pin-1234";

/// A fresh token for `slot` and its storage key.
pub fn token(slot: u64, seed: u8) -> (TokenRecord, StorageKey) {
    let key = StorageKey::generate().unwrap();
    let mut token_id = [seed; 16];
    getrandom::fill(&mut token_id).unwrap();
    let t = TokenRecord {
        slot_id: slot,
        token_id,
        label: *b"test token                      ",
        serial: *b"0123456789abcdef",
        policy: KeyPolicy::Hsm,
        so_pin: PinWrap::seal(SO_PIN, &key, CHEAP, b"so").unwrap(),
        user_pin: Some(PinWrap::seal(USER_PIN, &key, CHEAP, b"user").unwrap()),
        so_failures: 0,
        user_failures: u32::from(seed),
        audit_root: None,
    };
    (t, key)
}

/// An object carrying every kind of attribute value.
pub fn object(id: u64, private: bool, label: &str) -> ObjectRecord {
    let class = if private { 4 } else { 2 };
    let mut attrs = vec![
        (0x0, AttrValue::Ulong(class)),
        (0x1, AttrValue::Bool(true)),
        (0x2, AttrValue::Bool(private)),
        (0x3, AttrValue::Bytes(label.as_bytes().to_vec())),
        (0x102, AttrValue::Bytes(id.to_be_bytes().to_vec())),
        (0x600, AttrValue::Mechanisms(vec![0x1082, 0x1087, u64::MAX])),
    ];
    if private {
        attrs.push((0x11, AttrValue::Bytes(vec![0x5a; 32])));
    }
    attrs.sort_by_key(|(t, _)| *t);
    ObjectRecord { id, private, attrs }
}

/// Opens a token's sled database directly, bypassing the store; waits (up to
/// 2 s) for a store that still keeps it open after its last call.
pub fn raw_db(data_dir: &Path, slot: u64) -> sled::Db {
    let config = sled::Config::new()
        .path(data_dir.join(format!("token-{slot}")).join("db"))
        .flush_every_ms(None);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    loop {
        match config.open() {
            Ok(db) => return db,
            Err(e) if std::time::Instant::now() < deadline => {
                assert!(e.to_string().contains("lock"), "{e}");
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
            Err(e) => panic!("{e}"),
        }
    }
}

/// The sled key of object `id`.
pub fn obj_key(id: u64) -> Vec<u8> {
    let mut k = vec![b'o'];
    k.extend_from_slice(&id.to_be_bytes());
    k
}

/// xorshift64*: deterministic, seeded.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}
