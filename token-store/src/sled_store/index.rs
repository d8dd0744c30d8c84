//! The public-attribute index: the `i` keys that find public objects by
//! class, label, key type or id without reading a record, and the `r` list
//! per object that removes them.
#![forbid(unsafe_code)]

use crate::attr::{CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_LABEL};
use crate::record::{AttrValue, ObjectRecord, StoreError};

use super::layout::{P_INDEX, P_REVERSE, decode, id_key, io, map_sled};

/// Attribute types of public records that [`SledStore::find_public`](super::SledStore::find_public) can
/// look up: class, label, key type, id. None of them is secret.
pub const INDEXED_ATTRS: [u64; 4] = [CKA_CLASS, CKA_LABEL, CKA_KEY_TYPE, CKA_ID];

/// The index keys of a public record.
pub(super) fn index_keys(obj: &ObjectRecord) -> Result<Vec<Vec<u8>>, StoreError> {
    let mut keys = Vec::new();
    for (t, v) in &obj.attrs {
        if INDEXED_ATTRS.contains(t) {
            keys.push(index_key(*t, v, Some(obj.id))?);
        }
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// `i || type || len || value` (the prefix), then `|| id` when `id` is given.
pub(super) fn index_key(
    attr_type: u64,
    value: &AttrValue,
    id: Option<u64>,
) -> Result<Vec<u8>, StoreError> {
    let enc = postcard::to_allocvec(value).map_err(|_| io("cannot encode attribute"))?;
    let len = u32::try_from(enc.len()).map_err(|_| io("attribute too long to index"))?;
    let mut k = Vec::with_capacity(1 + 8 + 4 + enc.len() + 8);
    k.push(P_INDEX);
    k.extend_from_slice(&attr_type.to_be_bytes());
    k.extend_from_slice(&len.to_be_bytes());
    k.extend_from_slice(&enc);
    if let Some(id) = id {
        k.extend_from_slice(&id.to_be_bytes());
    }
    Ok(k)
}

pub(super) fn remove_index(
    db: &sled::Db,
    id: u64,
    batch: &mut sled::Batch,
) -> Result<(), StoreError> {
    let rk = id_key(P_REVERSE, id);
    if let Some(v) = db.get(rk).map_err(map_sled)? {
        let keys: Vec<Vec<u8>> = decode(&v, "index")?;
        for k in keys {
            batch.remove(k);
        }
        batch.remove(&rk[..]);
    }
    Ok(())
}
