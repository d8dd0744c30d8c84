//! The module's side of the audit log: what each PKCS#11 call records, and
//! the counters that keep key use off the disk on the hot path.
//!
//! Events that change a token (login outcomes, PIN changes, token objects
//! created, changed or destroyed) are appended durably before the call
//! returns, after everything queued for that token, so the file stays in
//! call order. Other events (refusals, session objects) are queued, and key
//! use is counted per key, function, mechanism and login state; a
//! `ferrohsm-audit` thread writes both every `flush_every` and exits when
//! idle, and dropping the `Auditor` (at `C_Finalize`) writes the rest.
//!
//! A failed append never fails the PKCS#11 call (the work is already done);
//! it is logged at error level.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use cryptoki_sys::*;
use ferrohsm_store::audit::rfc3339;
use ferrohsm_store::{AuditEvent, AuditObject, Store};
use parking_lot::{Condvar, Mutex};

use crate::config::{AuditConfig, KeyUseAudit};
use crate::log;
use crate::logging::{Level, Logger};
use crate::object::Object;

/// Records audit events for every token of one `Module`.
pub struct Auditor {
    shared: Arc<Shared>,
    flusher: Mutex<Option<std::thread::JoinHandle<()>>>,
}

struct Shared {
    store: Arc<dyn Store>,
    log: Arc<Logger>,
    config: AuditConfig,
    pending: Mutex<Pending>,
    wake: Condvar,
}

#[derive(Default)]
struct Pending {
    queued: Vec<(u64, AuditEvent)>,
    uses: HashMap<UseKey, Use, BuildHasherDefault<FastHash>>,
    flusher_running: bool,
    stop: bool,
    /// Without a flusher thread: when queued work was last written inline.
    last_inline: Option<std::time::Instant>,
}

/// What key-use summaries are counted by.
#[derive(Clone, PartialEq, Eq)]
struct UseKey {
    slot: u64,
    handle: CK_OBJECT_HANDLE,
    function: &'static str,
    mechanism: CK_MECHANISM_TYPE,
    user: &'static str,
}

impl Hash for UseKey {
    // The names are static strings: hashing their addresses is enough (equal
    // keys have equal addresses in practice; `eq` still compares the text).
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.slot);
        h.write_u64(self.handle);
        h.write_u64(self.mechanism);
        h.write_usize(self.function.as_ptr() as usize);
        h.write_usize(self.user.as_ptr() as usize);
    }
}

/// A multiply-rotate hash for the key-use map, which sits on the hot path of
/// every key use: its keys are a handful of integers chosen by this module,
/// not by an attacker, so SipHash's flooding resistance buys nothing here.
#[derive(Default)]
struct FastHash(u64);

impl Hasher for FastHash {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.write_u64(u64::from(*b));
        }
    }

    fn write_u64(&mut self, v: u64) {
        self.0 = (self.0.rotate_left(5) ^ v).wrapping_mul(0x517c_c1b7_2722_0a95);
    }

    fn write_usize(&mut self, v: usize) {
        self.write_u64(v as u64);
    }

    fn finish(&self) -> u64 {
        self.0
    }
}

struct Use {
    object: AuditObject,
    count: u64,
    first: SystemTime,
    last: SystemTime,
}

impl Auditor {
    /// An auditor writing through `store`; errors go to `log`.
    pub fn new(store: Arc<dyn Store>, log: Arc<Logger>, config: AuditConfig) -> Auditor {
        Auditor {
            shared: Arc::new(Shared {
                store,
                log,
                config,
                pending: Mutex::new(Pending::default()),
                wake: Condvar::new(),
            }),
            flusher: Mutex::new(None),
        }
    }

    /// Whether anything is recorded at all.
    pub fn enabled(&self) -> bool {
        self.shared.config.enabled
    }

    /// Records `event` for the token in `slot`. A `durable` event is on disk
    /// (after everything queued before it) when this returns; the others are
    /// written within `flush_every`.
    pub fn record(&self, slot: u64, event: AuditEvent, durable: bool) {
        if !self.enabled() {
            return;
        }
        if !durable {
            let mut p = self.shared.pending.lock();
            p.queued.push((slot, event));
            let inline = self.ensure_flusher(&mut p);
            drop(p);
            if inline {
                self.shared.flush();
            }
            return;
        }
        let mut batch: Vec<AuditEvent> = {
            let mut p = self.shared.pending.lock();
            let (mine, others): (Vec<_>, Vec<_>) = std::mem::take(&mut p.queued)
                .into_iter()
                .partition(|(s, _)| *s == slot);
            p.queued = others;
            mine.into_iter().map(|(_, e)| e).collect()
        };
        batch.push(event);
        self.shared.append(slot, &batch);
    }

    /// Counts one use of key `obj` (`C_EncryptInit`, `C_SignInit`, …): a
    /// counter bump in summary mode, a durable line in per-call mode.
    pub fn key_use(
        &self,
        slot: u64,
        session: CK_SESSION_HANDLE,
        user: &'static str,
        function: &'static str,
        mechanism: CK_MECHANISM_TYPE,
        obj: &Object,
    ) {
        if !self.enabled() {
            return;
        }
        if self.shared.config.key_use == KeyUseAudit::PerCall {
            let mut e = AuditEvent::now(function, "CKR_OK");
            e.session = Some(session);
            e.user = Some(user.into());
            e.mechanism = Some(mechanism_name(mechanism));
            e.object = Some(describe(obj));
            // Through `record`, so that events queued before it go first.
            self.record(slot, e, true);
            return;
        }
        let now = SystemTime::now();
        let key = UseKey {
            slot,
            handle: obj.handle,
            function,
            mechanism,
            user,
        };
        let mut p = self.shared.pending.lock();
        match p.uses.get_mut(&key) {
            Some(u) => {
                u.count += 1;
                u.last = now;
            }
            None => {
                p.uses.insert(
                    key,
                    Use {
                        object: describe(obj),
                        count: 1,
                        first: now,
                        last: now,
                    },
                );
            }
        }
        let inline = self.ensure_flusher(&mut p);
        drop(p);
        if inline {
            self.shared.flush();
        }
    }

    /// Writes every queued event and key-use summary now.
    pub fn flush(&self) {
        self.shared.flush();
    }

    /// Makes sure queued work gets written: starts the flusher thread, or,
    /// where the application forbids threads, answers whether the caller
    /// should write it inline now (once per `flush_every`).
    fn ensure_flusher(&self, p: &mut Pending) -> bool {
        if !self.shared.config.threads {
            let now = std::time::Instant::now();
            let last = *p.last_inline.get_or_insert(now);
            if now.duration_since(last) >= self.shared.config.flush_every {
                p.last_inline = Some(now);
                return true;
            }
            return false;
        }
        if p.flusher_running || p.stop {
            return false;
        }
        p.flusher_running = true;
        let weak: Weak<Shared> = Arc::downgrade(&self.shared);
        let every = self.shared.config.flush_every;
        let spawned = std::thread::Builder::new()
            .name("ferrohsm-audit".into())
            .spawn(move || flusher(weak, every));
        match spawned {
            Ok(j) => {
                if let Some(old) = self.flusher.lock().replace(j) {
                    // It has exited: it cleared `flusher_running` first.
                    let _ = old.join();
                }
            }
            // No thread: the next durable event or C_Finalize writes them.
            Err(_) => p.flusher_running = false,
        }
        false
    }
}

fn flusher(weak: Weak<Shared>, every: Duration) {
    loop {
        let Some(shared) = weak.upgrade() else { return };
        {
            let mut p = shared.pending.lock();
            if !p.stop {
                shared.wake.wait_for(&mut p, every);
            }
            if p.stop || (p.queued.is_empty() && p.uses.is_empty()) {
                p.flusher_running = false;
                return;
            }
        }
        shared.flush();
    }
}

impl Shared {
    fn append(&self, slot: u64, events: &[AuditEvent]) {
        if let Err(e) = self.store.audit(slot, events) {
            log!(
                self.log,
                Level::Error,
                "slot {slot}: {} audit event(s) not written: {e}",
                events.len()
            );
        }
    }

    fn flush(&self) {
        let (queued, uses) = {
            let mut p = self.pending.lock();
            (std::mem::take(&mut p.queued), std::mem::take(&mut p.uses))
        };
        let mut by_slot: std::collections::BTreeMap<u64, Vec<AuditEvent>> = Default::default();
        for (slot, e) in queued {
            by_slot.entry(slot).or_default().push(e);
        }
        let mut uses: Vec<(UseKey, Use)> = uses.into_iter().collect();
        uses.sort_by_key(|(_, u)| u.first);
        for (k, u) in uses {
            let mut e = AuditEvent::now(k.function, "CKR_OK");
            e.user = Some(k.user.into());
            e.mechanism = Some(mechanism_name(k.mechanism));
            e.object = Some(u.object);
            e.count = Some(u.count);
            e.first = Some(rfc3339(u.first));
            e.last = Some(rfc3339(u.last));
            e.detail = Some("key use summary".into());
            by_slot.entry(k.slot).or_default().push(e);
        }
        for (slot, events) in by_slot {
            self.append(slot, &events);
        }
    }
}

impl Drop for Auditor {
    fn drop(&mut self) {
        self.shared.pending.lock().stop = true;
        self.shared.wake.notify_all();
        if let Some(j) = self.flusher.lock().take() {
            let _ = j.join();
        }
        self.shared.flush();
    }
}

/// What the audit log says about an object: handle, label, `CKA_ID` (hex),
/// class and key type; never a value.
pub fn describe(obj: &Object) -> AuditObject {
    describe_attrs(Some(obj.handle), &obj.attrs)
}

/// [`describe`] for attributes not (yet) in an object.
pub fn describe_attrs(
    handle: Option<CK_OBJECT_HANDLE>,
    attrs: &crate::object::attrs::Attrs,
) -> AuditObject {
    AuditObject::describe(handle, |ty| attrs.get(&(ty as CK_ATTRIBUTE_TYPE)))
}

/// `CKM_*` name of a mechanism (from the mechanism table), or its number.
pub fn mechanism_name(ty: CK_MECHANISM_TYPE) -> String {
    crate::mechanism::lookup(ty).map_or_else(|_| format!("CKM_{ty:#x}"), |m| m.name.to_string())
}
