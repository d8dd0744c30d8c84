//! The key layout of a token database (the table in the `sled_store`
//! documentation) and the encoding of its values: format byte + postcard,
//! object envelopes, the token record (current and from before audit logs),
//! loading them, and the sled helpers every call uses (errors, sequence
//! number, commit).
#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

use crate::record::{StoreError, TokenRecord};

const FORMAT: u8 = 1;
pub(super) const K_TOKEN: &[u8] = b"t";
pub(super) const K_SEQ: &[u8] = b"s";
pub(super) const K_MANIFEST: &[u8] = b"m";
pub(super) const P_OBJECT: u8 = b'o';
pub(super) const P_PENDING: u8 = b'p';
pub(super) const P_INDEX: u8 = b'i';
pub(super) const P_REVERSE: u8 = b'r';
pub(super) const P_DUE: u8 = b'd';
pub(super) const P_ENTRY: u8 = b'e';

/// One stored object record (value of an `o` key, after the format byte).
#[derive(Serialize, Deserialize)]
pub(super) struct Envelope {
    pub(super) version: u64,
    pub(super) private: bool,
    pub(super) body: Vec<u8>,
}

pub(super) fn corrupt(m: impl Into<String>) -> StoreError {
    StoreError::Corrupt(m.into())
}

/// A token database without its token record: damaged, or its first
/// initialisation was interrupted. Reported as corrupt (the directory exists),
/// never as "no such token".
pub(super) fn no_record(slot_id: u64) -> StoreError {
    corrupt(format!(
        "token {slot_id}: database holds no token record \
         (first initialisation interrupted, or damaged)"
    ))
}

pub(super) fn io(e: impl std::fmt::Display) -> StoreError {
    StoreError::Io(e.to_string())
}

pub(super) fn id_key(prefix: u8, id: u64) -> [u8; 9] {
    let mut k = [0u8; 9];
    k[0] = prefix;
    k[1..].copy_from_slice(&id.to_be_bytes());
    k
}

pub(super) fn key_id(k: &[u8]) -> Result<u64, StoreError> {
    if k.len() < 9 {
        return Err(corrupt("malformed key"));
    }
    let mut b = [0u8; 8];
    b.copy_from_slice(&k[k.len() - 8..]);
    Ok(u64::from_be_bytes(b))
}

/// Associated data of a sealed object record.
pub(super) fn record_aad(token_id: &[u8; 16], id: u64, version: u64) -> [u8; 32] {
    let mut a = [0u8; 32];
    a[..16].copy_from_slice(token_id);
    a[16..24].copy_from_slice(&id.to_be_bytes());
    a[24..].copy_from_slice(&version.to_be_bytes());
    a
}

pub(super) fn encode<T: Serialize>(v: &T) -> Result<Vec<u8>, StoreError> {
    let mut out = vec![FORMAT];
    out.extend(postcard::to_allocvec(v).map_err(|_| io("cannot encode record"))?);
    Ok(out)
}

pub(super) fn decode<'a, T: Deserialize<'a>>(bytes: &'a [u8], what: &str) -> Result<T, StoreError> {
    match bytes.split_first() {
        Some((&FORMAT, rest)) => match postcard::take_from_bytes::<T>(rest) {
            Ok((v, [])) => Ok(v),
            _ => Err(corrupt(format!("{what} cannot be decoded"))),
        },
        _ => Err(corrupt(format!("{what} has an unknown format"))),
    }
}

pub(super) fn map_sled(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Io(e) => StoreError::Io(e.to_string()),
        sled::Error::Corruption { .. } => corrupt("database corrupt (sled)"),
        sled::Error::ReportableBug(_) => corrupt("database unreadable (sled internal error)"),
        other => StoreError::Io(other.to_string()),
    }
}

pub(super) fn read_u64(db: &sled::Db, key: &[u8]) -> Result<u64, StoreError> {
    match db.get(key).map_err(map_sled)? {
        None => Ok(0),
        Some(v) => {
            let b: [u8; 8] = v
                .as_ref()
                .try_into()
                .map_err(|_| corrupt("sequence number malformed"))?;
            Ok(u64::from_be_bytes(b))
        }
    }
}

/// Applies and flushes a batch.
pub(super) fn commit(db: &sled::Db, batch: sled::Batch) -> Result<(), StoreError> {
    db.apply_batch(batch).map_err(map_sled)?;
    db.flush().map_err(map_sled)?;
    Ok(())
}

/// The token record as written before audit logs existed (no `audit_root`).
#[derive(Deserialize)]
pub(crate) struct TokenRecordV1 {
    slot_id: u64,
    token_id: [u8; 16],
    label: [u8; 32],
    serial: [u8; 16],
    policy: crate::record::KeyPolicy,
    so_pin: crate::seal::PinWrap,
    user_pin: Option<crate::seal::PinWrap>,
    so_failures: u32,
    user_failures: u32,
}

/// Decodes a token record, current or from before audit logs existed.
pub(crate) fn decode_token(bytes: &[u8]) -> Result<TokenRecord, StoreError> {
    decode::<TokenRecord>(bytes, "token record").or_else(|e| {
        decode::<TokenRecordV1>(bytes, "token record")
            .map(TokenRecord::from)
            .map_err(|_| e)
    })
}

impl From<TokenRecordV1> for TokenRecord {
    fn from(v1: TokenRecordV1) -> TokenRecord {
        TokenRecord {
            slot_id: v1.slot_id,
            token_id: v1.token_id,
            label: v1.label,
            serial: v1.serial,
            policy: v1.policy,
            so_pin: v1.so_pin,
            user_pin: v1.user_pin,
            so_failures: v1.so_failures,
            user_failures: v1.user_failures,
            audit_root: None,
        }
    }
}

pub(super) fn load_token(db: &sled::Db, slot_id: u64) -> Result<Option<TokenRecord>, StoreError> {
    match db.get(K_TOKEN).map_err(map_sled)? {
        None => Ok(None),
        Some(v) => {
            let t = decode_token(&v)?;
            if t.slot_id != slot_id {
                return Err(corrupt(format!(
                    "token directory {slot_id} holds the record of slot {}",
                    t.slot_id
                )));
            }
            Ok(Some(t))
        }
    }
}

pub(super) fn load_envelope(db: &sled::Db, id: u64) -> Result<Option<Envelope>, StoreError> {
    match db.get(id_key(P_OBJECT, id)).map_err(map_sled)? {
        None => Ok(None),
        Some(v) => decode(&v, &format!("object {id}")).map(Some),
    }
}
