//! Persistent [`Store`](crate::store::Store) on sled 0.34, one sled database per token.
//!
//! # Layout
//!
//! ```text
//! <data_dir>/token-<slot_id>/db/          sled database of that token
//! <data_dir>/token-<slot_id>/generation   decimal change counter (see `generation`)
//! ```
//!
//! The data directory and every directory under it are 0700, every file 0600,
//! whatever the umask; [`SledStore::open`] tightens what an older version left
//! looser (see `private_fs`).
//!
//! Keys in the database's default tree (all integers big-endian):
//!
//! | key                                   | value                                                       |
//! |---------------------------------------|-------------------------------------------------------------|
//! | `t`                                   | format byte `1` + postcard(`TokenRecord`) — no secret in it |
//! | `s`                                   | u64 change sequence (the generation)                        |
//! | `m`                                   | sealed manifest head (only after a write with the key)      |
//! | `e` id                                | format byte `1` + postcard(manifest entry of that object)   |
//! | `o` id                                | format byte `1` + postcard(`Envelope{version,private,body}`)|
//! | `p` id                                | empty: "changed without the key" marker (see below)         |
//! | `i` attr_type len(u32) value id       | empty: public-attribute index entry                         |
//! | `r` id                                | postcard(list of that object's `i` keys)                    |
//! | `d` id                                | u64 Unix time: the object is scheduled for deletion then    |
//!
//! # Sealing
//!
//! A private record's `body` is `seal_record(key, aad, postcard(ObjectRecord))`
//! with `aad = token_id (16) || object id (8, BE) || version (8, BE)`: the whole
//! record, attributes and all, is AES-256-GCM sealed, and cannot be moved to
//! another token, slot, object or version. A public record's `body` is
//! postcard(`ObjectRecord`) in the clear; a public record carrying `CKA_VALUE`
//! with class `CKO_SECRET_KEY`/`CKO_PRIVATE_KEY` is refused (`KeyRequired`).
//!
//! `version` is the token's change sequence at the time of the write, so it
//! grows with every write of every record and is never reused.
//!
//! # Rollback and tamper detection
//!
//! The manifest maps each object id to `(version, private, hash)`, where
//! `hash` is the first 16 bytes of
//! SHA-256(`token_id || id || version || private || body`). Each entry is
//! kept under its own `e` key, and `m` holds the head, sealed under the
//! storage key with `aad = "ferrohsm/manifest/v2" || token_id`: the highest
//! sequence written with the key, the number of entries and the XOR of
//! HMAC-SHA256(`k_m`, `id || version || private || hash`) over all of them
//! (a keyed incremental multiset hash, MSet-XOR-Hash of Clarke et al. 2003;
//! `k_m` = HMAC-SHA256(storage key, label || token_id)). A keyed write thus
//! reads and writes O(1) of the manifest, whatever the number of objects,
//! while reading the entries back still requires all of them, exactly, to
//! add up to the sealed head. Tokens written before (format 1: `m` was the
//! whole list, sealed with `aad = "ferrohsm/manifest/v1" || token_id`, and
//! no `e` keys) are read as they are and converted by their first keyed
//! write, in that write's batch. With the key,
//! [`Store::objects`](crate::store::Store::objects) requires every record to match its manifest entry and
//! every private entry to have its record, so a flipped byte, a record copied
//! from another token, two records swapped and an older copy put back are all
//! reported as [`StoreError::Corrupt`](crate::record::StoreError::Corrupt); private records are in addition
//! authenticated by their own AEAD tag.
//!
//! Limits, by construction:
//! * Without the key (no login) public records cannot be authenticated: a
//!   public-only read detects only undecodable records and records whose
//!   embedded id does not match their key (a swap). Tampering with a public
//!   record's attributes is detected only by a read with the key.
//! * Writes of public records without the key and `delete_object` (which gets
//!   no key) cannot update the sealed manifest. They leave a `p` marker; a
//!   public record with a marker is accepted unverified until the next write
//!   with the key folds it into the manifest. A private record must always
//!   match its entry, whatever the markers say; but a marked object may be
//!   absent (deleted without the key) or public (replaced by a public record
//!   without the key, which the `Store` contract allows). Someone who can
//!   write the files can therefore delete objects, or replace them with
//!   public ones, by also adding a marker; they cannot alter, move, swap or
//!   roll back private records, nor read them.
//! * Rolling back the *whole* database (manifest and records together) to an
//!   older consistent state is not detectable without a monotonic counter
//!   outside the files.
//!
//! # Atomicity and durability
//!
//! Every mutation is one sled batch on one tree (applied atomically, also
//! across a crash), followed by `flush()` before `Ok` is returned; then the
//! `generation` file is rewritten from `s` (in place, one fixed-size write;
//! no fsync: it is a hint derived from `s`) while the database lock is still held. A
//! crash between the two, or a power loss after, leaves a stale (or empty)
//! `generation`, which the next call that opens the database repairs.
//!
//! # Processes and threads
//!
//! sled takes an exclusive `flock` on its database. Calls of one `SledStore`
//! are serialized by a mutex. After a call the database stays open for
//! [`SledOptions::linger`] (20 ms), so that a burst of calls pays sled's open
//! cost (which grows with the number of records) once; a `ferrohsm-store`
//! thread closes it when it has been idle that long, and exits. Another
//! process that finds the database locked retries with backoff until
//! [`SledOptions::lock_deadline`], then gets
//! `StoreError::Io("… locked by another process …")`. [`SledStore::release`]
//! closes it at once (the module calls it before `fork()`, so a child never
//! inherits the lock); dropping the store closes it and joins the thread.
//!
//! sled 0.34 is opened with `flush_every_ms(None)`, so it starts no flusher
//! thread, and FerroHSM builds it with the inline I/O "pool" (upstream's miri
//! mode, see `vendor/sled/FERROHSM-PATCH.md`), so it starts no thread at all.
//! `tests/threads.rs` checks both.
#![forbid(unsafe_code)]

/// `SledStore` and its options: data directory, opening a database, `generation`.
mod db;
/// The public-attribute index (`i` and `r` keys).
mod index;
/// The key layout and value encoding; token record; sled helpers (a leaf).
mod layout;
/// The sealed manifest and the "changed without the key" markers.
mod manifest;
#[cfg(test)]
mod manifest_tests;
/// The `Store` calls, `find_public` and `put_objects`.
mod ops;
/// Staging object writes and reading records back against the manifest.
mod records;

pub use db::{BrokenToken, SledOptions, SledStore, TokenScan};
pub use index::INDEXED_ATTRS;
pub(crate) use layout::TokenRecordV1;

/// Fuzz entry point (`crate::fuzzing`, `fuzz/`).
pub(crate) mod fuzzing;
