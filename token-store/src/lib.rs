//! FerroHSM token store: what a token is on disk (or in memory), and the seam
//! (`Store`) through which the PKCS#11 module reads and writes it.
//!
//! The module never touches files itself. It hands records to a `Store` and gets
//! records back; sealing of secret material happens on this side of the seam
//! (see `seal`), so no backend can forget it.
#![forbid(unsafe_code)]

pub mod access;
pub mod attr;
pub mod audit;
pub mod backup;
#[doc(hidden)]
pub mod fuzzing;
pub mod memory;
mod private_fs;
pub mod record;
pub mod seal;
pub mod sled_store;
pub mod store;
pub mod time;

pub use access::{PinRole, pin_wrap_aad};
pub use audit::{AuditEvent, AuditLog, AuditObject, AuditOptions};
pub use backup::{BackupError, BackupOptions, BackupSummary};
pub use memory::MemoryStore;
pub use record::{
    AttrValue, CKA_FERROHSM_DELETE_AT, KeyPolicy, ObjectRecord, StoreError, TokenRecord,
};
pub use seal::{
    AuditKey, KdfParams, MAX_PIN_LEN, MIN_PIN_LEN, PinWrap, SealError, StorageKey, open_record,
    seal_record,
};
pub use sled_store::{BrokenToken, SledOptions, SledStore, TokenScan};
pub use store::Store;
