//! `Module`: the whole token world of one process as one plain value — slots,
//! tokens, sessions, login state and objects. No `unsafe`, no statics: unit tests
//! build as many modules as they like. `ffi` owns the one instance that C sees.
//!
//! Lock order (never the reverse): `slots` → one `Slot::token` → `sessions` →
//! one `Session::ops`. Slow work (PIN KDF, crypto) runs with no token lock held.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};

use cryptoki_sys::*;
use ferrohsm_store::{
    AttrValue, AuditEvent, AuditKey, AuditObject, CKA_FERROHSM_DELETE_AT, KeyPolicy, ObjectRecord,
    PinWrap, StorageKey, Store, StoreError, TokenRecord,
};
use parking_lot::RwLock;

use crate::audit::{self, Auditor};
use crate::config::Config;
use crate::error::{Error, Result};
use crate::log;
use crate::logging::{Level, Logger};
use crate::mechanism::{self, Dir, Mechanism, MechanismArg};
use crate::object::policy::{self, Actor, Edit, Origin};
use crate::object::{Object, RawAttr, Reading, unique_id};
use crate::secret;
use crate::session::{
    self, After, CipherState, DigestState, FindOp, Login, MacState, OutBuf, Session, drive,
};

/// `manufacturerID` of the library, slots and tokens.
pub const MANUFACTURER: &str = "FerroHSM project";
/// `libraryDescription`.
pub const LIBRARY_DESCRIPTION: &str = "FerroHSM software HSM";
/// `model` of tokens.
pub const MODEL: &str = "FerroHSM";
/// Shortest PIN accepted (the store's bound, which every PIN check shares).
pub const MIN_PIN_LEN: usize = ferrohsm_store::MIN_PIN_LEN;
/// Longest PIN accepted.
pub const MAX_PIN_LEN: usize = ferrohsm_store::MAX_PIN_LEN;

/// The Cryptoki version the module implements.
pub const CRYPTOKI_VERSION: CK_VERSION = CK_VERSION { major: 3, minor: 0 };

/// This library's version, from Cargo.
pub fn library_version() -> CK_VERSION {
    let mut parts = env!("CARGO_PKG_VERSION")
        .split('.')
        .map(|p| p.parse::<u8>().unwrap_or(0));
    CK_VERSION {
        major: parts.next().unwrap_or(0),
        minor: parts.next().unwrap_or(0),
    }
}

/// Space-pads (or truncates) text to a fixed-width PKCS#11 field.
pub fn pad<const N: usize>(text: &[u8]) -> [u8; N] {
    let mut out = [b' '; N];
    let n = text.len().min(N);
    out[..n].copy_from_slice(&text[..n]);
    out
}

/// A token's in-memory state.
pub struct Token {
    /// The stored record; `None` for the spare, uninitialised token.
    pub record: Option<TokenRecord>,
    /// Who is logged in.
    pub login: Login,
    /// The storage key, present while someone is logged in.
    key: Option<StorageKey>,
    /// Visible objects by handle (token objects and session objects).
    objects: Objects,
    /// Handles already given to public token objects, by store id.
    handles: HashMap<u64, CK_OBJECT_HANDLE>,
    /// The store's generation this cache reflects; `None` when unknown (then
    /// the next `refresh` reloads).
    generation: Option<u64>,
    /// Sessions open on this token.
    sessions: u64,
    /// Of which read/write.
    rw_sessions: u64,
}

impl Token {
    fn spare() -> Token {
        Token {
            record: None,
            login: Login::Public,
            key: None,
            objects: Objects::default(),
            handles: HashMap::new(),
            generation: None,
            sessions: 0,
            rw_sessions: 0,
        }
    }

    /// An object the current login may see, or `CKR_OBJECT_HANDLE_INVALID`.
    fn object(&self, handle: CK_OBJECT_HANDLE) -> Result<Arc<Object>> {
        match self.objects.get(&handle) {
            Some(o) if !o.needs_user() || self.login == Login::User => Ok(o.clone()),
            _ => Err(Error::ObjectHandleInvalid),
        }
    }

    fn record(&self) -> Result<&TokenRecord> {
        self.record.as_ref().ok_or(Error::TokenNotRecognized)
    }
}

/// The attributes `C_FindObjects` can look up without scanning every object:
/// what clients search by (v3.0 §5.7; OpenSSL, p11-kit and the XKS proxy find
/// keys by label or id).
const INDEXED: [CK_ATTRIBUTE_TYPE; 2] = [CKA_LABEL, CKA_ID];

/// A token's objects by handle, with an index of their labels and ids so that
/// finding one object among many costs a hash lookup, not a scan.
#[derive(Default)]
struct Objects {
    map: HashMap<CK_OBJECT_HANDLE, Arc<Object>>,
    index: HashMap<(CK_ATTRIBUTE_TYPE, Vec<u8>), std::collections::BTreeSet<CK_OBJECT_HANDLE>>,
}

impl Objects {
    fn keys(o: &Object) -> impl Iterator<Item = (CK_ATTRIBUTE_TYPE, Vec<u8>)> + '_ {
        INDEXED
            .iter()
            .filter_map(|ty| o.bytes(*ty).map(|v| (*ty, v.to_vec())))
    }

    fn unindex(&mut self, o: &Object) {
        for k in Self::keys(o) {
            if let Some(set) = self.index.get_mut(&k) {
                set.remove(&o.handle);
                if set.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
    }

    fn get(&self, h: &CK_OBJECT_HANDLE) -> Option<&Arc<Object>> {
        self.map.get(h)
    }

    fn values(&self) -> impl Iterator<Item = &Arc<Object>> {
        self.map.values()
    }

    fn insert(&mut self, h: CK_OBJECT_HANDLE, o: Arc<Object>) {
        if let Some(old) = self.map.remove(&h) {
            self.unindex(&old);
        }
        for k in Self::keys(&o) {
            self.index.entry(k).or_default().insert(h);
        }
        self.map.insert(h, o);
    }

    fn remove(&mut self, h: &CK_OBJECT_HANDLE) -> Option<Arc<Object>> {
        let o = self.map.remove(h)?;
        self.unindex(&o);
        Some(o)
    }

    fn retain(&mut self, mut keep: impl FnMut(&CK_OBJECT_HANDLE, &Arc<Object>) -> bool) {
        let gone: Vec<CK_OBJECT_HANDLE> = self
            .map
            .iter()
            .filter(|(h, o)| !keep(h, o))
            .map(|(h, _)| *h)
            .collect();
        for h in gone {
            self.remove(&h);
        }
    }

    /// The objects whose `ty` (one of `INDEXED`) is exactly `value`.
    fn with(&self, ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> Vec<&Arc<Object>> {
        self.index
            .get(&(ty, value.to_vec()))
            .map(|set| set.iter().filter_map(|h| self.map.get(h)).collect())
            .unwrap_or_default()
    }
}

/// A slot, which always holds a token (initialised or spare).
pub struct Slot {
    /// `CK_SLOT_ID`, stable across restarts for initialised tokens.
    pub id: CK_SLOT_ID,
    /// The token in it.
    pub token: RwLock<Token>,
    /// Who is logged in, mirrored from `Token::login` (0 public, 1 user,
    /// 2 SO) so that audit events can name it without taking the token lock.
    login_seen: AtomicU8,
}

impl Slot {
    fn new(id: CK_SLOT_ID) -> Slot {
        Slot {
            id,
            token: RwLock::new(Token::spare()),
            login_seen: AtomicU8::new(0),
        }
    }

    /// Sets who is logged in, in the token and in its mirror.
    fn set_login(&self, t: &mut Token, who: Login) {
        t.login = who;
        self.login_seen.store(who as u8, Ordering::Relaxed);
    }

    /// Who is logged in, for audit events: "public", "user" or "so".
    fn user_name(&self) -> &'static str {
        match self.login_seen.load(Ordering::Relaxed) {
            1 => "user",
            2 => "so",
            _ => "public",
        }
    }
}

/// Associated data binding a PIN wrap to its token and role; the one
/// definition lives in the store crate, which the backup tool shares.
fn wrap_aad(token_id: &[u8; 16], who: Login) -> Vec<u8> {
    let role = if who == Login::So {
        ferrohsm_store::PinRole::So
    } else {
        ferrohsm_store::PinRole::User
    };
    ferrohsm_store::pin_wrap_aad(token_id, role)
}

/// The store's name for a login role.
fn pin_role(who: Login) -> ferrohsm_store::PinRole {
    if who == Login::So {
        ferrohsm_store::PinRole::So
    } else {
        ferrohsm_store::PinRole::User
    }
}

fn check_pin_len(pin: &[u8]) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(Error::PinLenRange)
    }
}

fn random_bytes<const N: usize>() -> Result<[u8; N]> {
    let mut b = [0u8; N];
    getrandom::fill(&mut b).map_err(|_| Error::DeviceError)?;
    Ok(b)
}

/// Current UTC time as `YYYYMMDDhhmmss00` for `CK_TOKEN_INFO.utcTime`.
fn utc_time() -> [u8; 16] {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs()) as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = ferrohsm_store::time::civil_from_days(days);
    let text = format!(
        "{y:04}{m:02}{d:02}{:02}{:02}{:02}00",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    );
    pad::<16>(text.as_bytes())
}

/// The token world of one process.
pub struct Module {
    config: Config,
    /// The module's log.
    pub log: Arc<Logger>,
    store: Arc<dyn Store>,
    /// The tokens' audit logs.
    audit: Auditor,
    slots: RwLock<Vec<Arc<Slot>>>,
    sessions: RwLock<HashMap<CK_SESSION_HANDLE, Arc<Session>>>,
    next_handle: AtomicU64,
}

impl Module {
    /// Opens the token world held by `store`: one slot per initialised token in
    /// slot-ID order, then a spare slot for `C_InitToken`.
    pub fn new(config: Config, store: Arc<dyn Store>) -> Result<Module> {
        let log = Arc::new(Logger::new(config.log_level, &config.log_target));
        let audit = Auditor::new(store.clone(), log.clone(), config.audit.clone());
        let module = Module {
            config,
            log,
            audit,
            store,
            slots: RwLock::new(Vec::new()),
            sessions: RwLock::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
        };
        // Reserve the key region now, so the log says at once whether keys
        // can be locked in RAM here.
        secret::init();
        log!(module.log, Level::Debug, "{}", secret::status());
        module.adopt_tokens()?;
        module.purge_due();
        log!(
            module.log,
            Level::Info,
            "initialised with data directory {}",
            module.config.data_dir.display()
        );
        Ok(module)
    }

    /// Closes any token database the store keeps open between calls; the
    /// fork handler calls it so that a child inherits no database lock.
    pub fn release_store(&self) {
        self.store.release();
    }

    /// The configuration in force.
    pub fn config(&self) -> &Config {
        &self.config
    }

    fn new_handle(&self) -> u64 {
        self.next_handle.fetch_add(1, Ordering::Relaxed)
    }

    fn store_error(&self, what: &str, e: StoreError) -> Error {
        log!(self.log, Level::Error, "{what}: {e}");
        match e {
            StoreError::NotFound => Error::TokenNotRecognized,
            _ => Error::DeviceError,
        }
    }

    /// The error of a failed write with the storage key. When another process
    /// rotated the storage key meanwhile (ours no longer opens the token's
    /// audit root), that is not corruption: this login is over, as the next
    /// `refresh` would find, so log out and say `CKR_USER_NOT_LOGGED_IN`.
    fn write_failed(&self, slot: &Slot, t: &mut Token, what: &str, e: StoreError) -> Error {
        if matches!(e, StoreError::Corrupt(_))
            && let Ok(Some(rec)) = self.store.token(slot.id)
            && self.logout_if_rotated(slot, t, &rec)
        {
            t.generation = None;
            return Error::UserNotLoggedIn;
        }
        self.store_error(what, e)
    }

    /// An audit event of session `s` for `function` with the outcome `r`.
    fn event<T>(&self, s: &Session, function: &str, r: &Result<T>) -> AuditEvent {
        let mut e = AuditEvent::now(function, &result_name(r));
        e.session = Some(s.handle);
        e.user = Some(s.slot.user_name().into());
        e
    }

    /// Records the outcome of a call of session `h` (nothing if the session
    /// is unknown: there is no token to file it under). `durable`: on disk
    /// before the call returns.
    fn audit_call<T>(
        &self,
        h: CK_SESSION_HANDLE,
        function: &str,
        r: &Result<T>,
        durable: bool,
        fill: impl FnOnce(&mut AuditEvent),
    ) {
        if !self.audit.enabled() {
            return;
        }
        let Ok(s) = self.session(h) else { return };
        let mut e = self.event(&s, function, r);
        fill(&mut e);
        self.audit.record(s.slot.id, e, durable);
    }

    /// Gives a token made before audit logs existed its audit root (sealed
    /// under `key`) and starts its chain. A token whose root exists but whose
    /// log is missing is NOT restarted: that is evidence, reported instead.
    fn ensure_audit(&self, slot: &Slot, key: &StorageKey) {
        if !self.audit.enabled() {
            return;
        }
        let Some(rec) = slot.token.read().record.clone() else {
            return;
        };
        if rec.audit_root.is_some() {
            if !self.store.audit_started(slot.id) {
                log!(
                    self.log,
                    Level::Error,
                    "slot {}: the token's audit log is missing (removed?); events are not \
                     recorded. `ferrohsm audit verify` reports it",
                    slot.id
                );
            }
            return;
        }
        let started = (|| -> std::result::Result<(), String> {
            let root = AuditKey::generate().map_err(|e| e.to_string())?;
            let sealed = root.seal(key, &rec.token_id).map_err(|e| e.to_string())?;
            let token_id = rec.token_id;
            let stored = self
                .store
                .modify_token(slot.id, &mut |r: &mut TokenRecord| {
                    if r.token_id == token_id && r.audit_root.is_none() {
                        r.audit_root = Some(sealed.clone());
                    }
                })
                .map_err(|e| e.to_string())?;
            if stored.audit_root.as_ref() != Some(&sealed) {
                return Ok(()); // another process did it meanwhile
            }
            self.store
                .start_audit(slot.id, &root)
                .map_err(|e| e.to_string())?;
            let mut t = slot.token.write();
            self.wrote(slot.id, &mut t);
            if t.record.as_ref().is_some_and(|r| r.token_id == token_id) {
                t.record = Some(stored);
            }
            Ok(())
        })();
        match started {
            Ok(()) => log!(
                self.log,
                Level::Info,
                "slot {}: audit log started for a token made before audit logs existed",
                slot.id
            ),
            Err(e) => log!(
                self.log,
                Level::Error,
                "slot {}: cannot start the audit log: {e}",
                slot.id
            ),
        }
    }

    /// Makes the token cache equal to the store: public objects, and private
    /// ones too when `key` is given. Unchanged objects keep their handle and
    /// their cached key schedule; changed ones keep their handle; objects gone
    /// from the store vanish; session objects are untouched.
    fn load_objects(
        &self,
        slot_id: CK_SLOT_ID,
        token: &mut Token,
        key: Option<&StorageKey>,
    ) -> Result<()> {
        let records: Vec<ObjectRecord> = self
            .store
            .objects(slot_id, key)
            .map_err(|e| self.store_error("loading objects", e))?;
        let mut old: HashMap<u64, Arc<Object>> = HashMap::new();
        token.objects.retain(|_, o| {
            if o.owner.is_none() {
                old.insert(o.store_id, o.clone());
                false
            } else {
                true
            }
        });
        token.handles.clear();
        let now = unix_now();
        for rec in &records {
            if let Some(at) = rec.delete_at() {
                // Scheduled for deletion: invisible; purged once its time came.
                if at <= now {
                    self.purge(slot_id, rec);
                }
                continue;
            }
            let obj = match old.remove(&rec.id) {
                Some(o) if o.to_record() == *rec => o,
                Some(o) => Arc::new(Object::from_record(o.handle, rec)),
                None => Arc::new(Object::from_record(self.new_handle(), rec)),
            };
            if !rec.private {
                token.handles.insert(rec.id, obj.handle);
            }
            token.objects.insert(obj.handle, obj);
        }
        Ok(())
    }

    /// Deletes for good a key whose deletion waiting period has passed, and
    /// records it. A failure is logged; the key stays invisible and the next
    /// load tries again.
    fn purge(&self, slot_id: CK_SLOT_ID, rec: &ObjectRecord) {
        let r = self
            .store
            .delete_object(slot_id, rec.id)
            .map_err(|e| self.store_error("purging a key after its waiting period", e));
        self.purged(slot_id, rec.id, AuditObject::of_record(rec), &r);
    }

    /// Purges, in every token and without the storage key, the keys whose
    /// deletion waiting period is over (at `C_Initialize`, the "next open";
    /// a login purges too, from the sealed records themselves).
    fn purge_due(&self) {
        let now = unix_now();
        let slots: Vec<CK_SLOT_ID> = self
            .slots
            .read()
            .iter()
            .filter(|s| s.token.read().record.is_some())
            .map(|s| s.id)
            .collect();
        for slot_id in slots {
            let purged = match self.store.purge_due(slot_id, now) {
                Ok(p) => p,
                Err(e) => {
                    log!(
                        self.log,
                        Level::Error,
                        "slot {slot_id}: purging keys after their waiting period: {e}"
                    );
                    continue;
                }
            };
            for id in purged {
                // Without the key, the object is named by its unique id only;
                // its earlier events carry the same id with its label.
                let object = AuditObject {
                    unique_id: Some(unique_id(id)),
                    ..Default::default()
                };
                self.purged(slot_id, id, object, &Ok(()));
            }
        }
    }

    /// Records the purge of object `id` (`r`: its outcome).
    fn purged(&self, slot_id: CK_SLOT_ID, id: u64, object: AuditObject, r: &Result<()>) {
        let mut e = AuditEvent::now("purge", &result_name(r));
        e.object = Some(object);
        e.detail = Some("deletion waiting period over: key deleted for good".into());
        self.audit.record(slot_id, e, true);
        if r.is_ok() {
            log!(
                self.log,
                Level::Info,
                "slot {slot_id}: purged object {} after its deletion waiting period",
                unique_id(id)
            );
        }
    }

    /// Logs out when the storage key held in `t` no longer opens the audit
    /// root of `rec` (the token's current record): another process rotated
    /// the storage key, so this login is over. Returns whether it did.
    fn logout_if_rotated(&self, slot: &Slot, t: &mut Token, rec: &TokenRecord) -> bool {
        let rotated = match (&t.key, &rec.audit_root) {
            (Some(key), Some(sealed)) => AuditKey::open(sealed, key, &rec.token_id).is_err(),
            _ => false,
        };
        if rotated {
            log!(
                self.log,
                Level::Warn,
                "slot {}: the storage key was rotated by another process; logged out",
                slot.id
            );
            Self::logout_token(slot, t);
        }
        rotated
    }

    /// Brings a slot's cache up to date when the store changed behind it
    /// (another process wrote, or created a token in this slot). Costs one
    /// small file read when nothing changed.
    fn refresh(&self, slot: &Slot) -> Result<()> {
        let stamp = slot.token.read().generation;
        let now = self
            .store
            .generation(slot.id)
            .map_err(|e| self.store_error("reading the token generation", e))?;
        if stamp == Some(now) {
            return Ok(());
        }
        let mut t = slot.token.write();
        if t.generation == Some(now) {
            return Ok(());
        }
        let rec = self
            .store
            .token(slot.id)
            .map_err(|e| self.store_error(&format!("slot {}: reading the token", slot.id), e))?;
        let same = matches!((&t.record, &rec), (Some(a), Some(b)) if a.token_id == b.token_id);
        if !same {
            if t.record.is_some() {
                log!(
                    self.log,
                    Level::Info,
                    "slot {}: token re-initialised or removed by another process",
                    slot.id
                );
            }
            Self::logout_token(slot, &mut t);
            t.objects.retain(|_, o| o.owner.is_some());
            t.handles.clear();
        }
        if let Some(r) = &rec {
            self.logout_if_rotated(slot, &mut t, r);
        }
        t.record = rec;
        if t.record.is_some() {
            // Sealed records are opened, and their objects built, in the key region.
            secret::scope(|| {
                let key = if t.login == Login::User {
                    t.key.clone()
                } else {
                    None
                };
                self.load_objects(slot.id, &mut t, key.as_ref())
            })?;
        }
        t.generation = Some(now);
        Ok(())
    }

    /// Records that this process just wrote the token: the cache stays valid
    /// if the store's generation moved by exactly our one write.
    fn wrote(&self, slot_id: CK_SLOT_ID, t: &mut Token) {
        let before = t.generation.take();
        if let (Some(g), Ok(now)) = (before, self.store.generation(slot_id))
            && now == g + 1
        {
            t.generation = Some(now);
        }
    }

    /// Gives every token in the store a slot (tokens created by other
    /// processes appear here), refreshes slots whose token changed, and keeps
    /// one spare slot, above every used ID, for `C_InitToken`. A token that
    /// cannot be read keeps its slot (its calls fail with `CKR_DEVICE_ERROR`)
    /// and never hides the others.
    fn adopt_tokens(&self) -> Result<()> {
        let ids = self
            .store
            .slot_ids()
            .map_err(|e| self.store_error("listing tokens", e))?;
        {
            let mut slots = self.slots.write();
            for id in &ids {
                let id = *id;
                if !slots.iter().any(|s| s.id == id) {
                    slots.push(Arc::new(Slot::new(id)));
                }
            }
            slots.sort_by_key(|s| s.id);
        }
        let all: Vec<Arc<Slot>> = self.slots.read().clone();
        for slot in &all {
            if ids.contains(&slot.id) {
                // A damaged token was logged by `refresh`; the others go on.
                let _ = self.refresh(slot);
            }
        }
        self.add_spares(&mut self.slots.write(), &ids);
        Ok(())
    }

    /// Appends uninitialised slots until the top one is a spare above every
    /// slot ID the store uses and the configured slot count is reached.
    fn add_spares(&self, slots: &mut Vec<Arc<Slot>>, used: &[u64]) {
        loop {
            let top_is_spare = slots
                .last()
                .is_some_and(|s| !used.contains(&s.id) && s.token.read().record.is_none());
            if top_is_spare && slots.len() as u64 >= self.config.slots {
                return;
            }
            let next = slots.last().map_or(0, |s| s.id + 1);
            slots.push(Arc::new(Slot::new(next)));
        }
    }

    fn slot(&self, id: CK_SLOT_ID) -> Result<Arc<Slot>> {
        self.slots
            .read()
            .iter()
            .find(|s| s.id == id)
            .cloned()
            .ok_or(Error::SlotIdInvalid)
    }

    fn session(&self, h: CK_SESSION_HANDLE) -> Result<Arc<Session>> {
        self.sessions
            .read()
            .get(&h)
            .cloned()
            .ok_or(Error::SessionHandleInvalid)
    }

    // ---- General and slot/token information ------------------------------------

    /// `CK_INFO`.
    pub fn info(&self) -> CK_INFO {
        CK_INFO {
            cryptokiVersion: CRYPTOKI_VERSION,
            manufacturerID: pad(MANUFACTURER.as_bytes()),
            flags: 0,
            libraryDescription: pad(LIBRARY_DESCRIPTION.as_bytes()),
            libraryVersion: library_version(),
        }
    }

    /// All slot IDs: initialised tokens first, the spare last. Every slot has a
    /// token present, so the `tokenPresent` filter changes nothing. Tokens
    /// created by other processes since the last call appear here.
    pub fn slot_list(&self) -> Result<Vec<CK_SLOT_ID>> {
        self.adopt_tokens()?;
        Ok(self.slots.read().iter().map(|s| s.id).collect())
    }

    /// `CK_SLOT_INFO`.
    pub fn slot_info(&self, id: CK_SLOT_ID) -> Result<CK_SLOT_INFO> {
        self.slot(id)?;
        Ok(CK_SLOT_INFO {
            slotDescription: pad(format!("FerroHSM slot {id}").as_bytes()),
            manufacturerID: pad(MANUFACTURER.as_bytes()),
            flags: CKF_TOKEN_PRESENT,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
        })
    }

    /// `CK_TOKEN_INFO`, with truthful flags and counters.
    pub fn token_info(&self, id: CK_SLOT_ID) -> Result<CK_TOKEN_INFO> {
        let slot = self.slot(id)?;
        self.refresh(&slot)?;
        let t = slot.token.read();
        let max = self.config.max_login_failures;
        let mut flags = CKF_RNG | CKF_LOGIN_REQUIRED | CKF_CLOCK_ON_TOKEN;
        let (label, serial) = match &t.record {
            Some(rec) => {
                flags |= CKF_TOKEN_INITIALIZED;
                if rec.user_pin.is_some() {
                    flags |= CKF_USER_PIN_INITIALIZED;
                }
                flags |= pin_flags(
                    rec.user_failures,
                    max,
                    [
                        CKF_USER_PIN_COUNT_LOW,
                        CKF_USER_PIN_FINAL_TRY,
                        CKF_USER_PIN_LOCKED,
                    ],
                );
                flags |= pin_flags(
                    rec.so_failures,
                    max,
                    [
                        CKF_SO_PIN_COUNT_LOW,
                        CKF_SO_PIN_FINAL_TRY,
                        CKF_SO_PIN_LOCKED,
                    ],
                );
                (rec.label, rec.serial)
            }
            None => (pad(b""), pad(b"")),
        };
        let max_sessions = self.config.max_sessions as CK_ULONG;
        Ok(CK_TOKEN_INFO {
            label,
            manufacturerID: pad(MANUFACTURER.as_bytes()),
            model: pad(MODEL.as_bytes()),
            serialNumber: serial,
            flags,
            ulMaxSessionCount: max_sessions,
            ulSessionCount: t.sessions as CK_ULONG,
            ulMaxRwSessionCount: max_sessions,
            ulRwSessionCount: t.rw_sessions as CK_ULONG,
            ulMaxPinLen: MAX_PIN_LEN as CK_ULONG,
            ulMinPinLen: MIN_PIN_LEN as CK_ULONG,
            ulTotalPublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePublicMemory: CK_UNAVAILABLE_INFORMATION,
            ulTotalPrivateMemory: CK_UNAVAILABLE_INFORMATION,
            ulFreePrivateMemory: CK_UNAVAILABLE_INFORMATION,
            hardwareVersion: library_version(),
            firmwareVersion: library_version(),
            utcTime: utc_time(),
        })
    }

    /// Mechanisms of a slot (every slot offers the whole table).
    pub fn mechanism_list(&self, id: CK_SLOT_ID) -> Result<Vec<CK_MECHANISM_TYPE>> {
        self.slot(id)?;
        Ok(mechanism::MECHANISMS.iter().map(|m| m.ty).collect())
    }

    /// `CK_MECHANISM_INFO` of one mechanism.
    pub fn mechanism_info(
        &self,
        id: CK_SLOT_ID,
        ty: CK_MECHANISM_TYPE,
    ) -> Result<CK_MECHANISM_INFO> {
        self.slot(id)?;
        Ok(mechanism::lookup(ty)?.info())
    }

    // ---- Token and PIN management ----------------------------------------------

    /// `C_InitToken`: makes the spare token a new token, or wipes and
    /// re-initialises an initialised one given its SO PIN.
    pub fn init_token(&self, id: CK_SLOT_ID, so_pin: &[u8], label: &[u8; 32]) -> Result<()> {
        let r = secret::scope(|| self.init_token_inner(id, so_pin, label));
        let has_token = self.slot(id).is_ok_and(|s| s.token.read().record.is_some());
        if self.audit.enabled() && has_token {
            let mut e = AuditEvent::now("C_InitToken", &result_name(&r));
            e.user = Some("so".into());
            let shown = String::from_utf8_lossy(label)
                .trim_end_matches([' ', '\0'])
                .to_string();
            e.detail = Some(format!("token label {shown:?}"));
            self.audit.record(id, e, true);
        }
        r
    }

    fn init_token_inner(&self, id: CK_SLOT_ID, so_pin: &[u8], label: &[u8; 32]) -> Result<()> {
        check_pin_len(so_pin)?;
        let slot = self.slot(id)?;
        // A token another process created in this (spare) slot is not ours to
        // overwrite without its SO PIN.
        self.refresh(&slot)?;
        let old = {
            let t = slot.token.read();
            if t.sessions > 0 {
                return Err(Error::SessionExists);
            }
            t.record.clone()
        };
        if let Some(old) = &old {
            if old.so_failures >= self.config.max_login_failures {
                return Err(Error::PinLocked);
            }
            self.verify_pin(&slot, old, Login::So, so_pin)?;
        }
        let mut label = *label;
        if let Some(nul) = label.iter().position(|&b| b == 0) {
            label[nul..].fill(b' ');
        }
        let token_id = random_bytes::<16>()?;
        let serial = pad::<16>(hex(&random_bytes::<8>()?).as_bytes());
        let key = StorageKey::generate().map_err(|_| Error::DeviceError)?;
        let audit_root = AuditKey::generate().map_err(|_| Error::DeviceError)?;
        let policy = self.config.default_policy;
        let rec = TokenRecord {
            slot_id: id,
            token_id,
            label,
            serial,
            policy,
            so_pin: self.seal_pin(so_pin, &key, &token_id, Login::So)?,
            user_pin: None,
            so_failures: 0,
            user_failures: 0,
            audit_root: Some(
                audit_root
                    .seal(&key, &token_id)
                    .map_err(|_| Error::GeneralError)?,
            ),
        };
        {
            let mut t = slot.token.write();
            if t.sessions > 0 {
                return Err(Error::SessionExists);
            }
            if t.record.as_ref().map(|r| r.token_id) != old.as_ref().map(|r| r.token_id) {
                // Someone re-initialised it meanwhile; their SO PIN may differ.
                return Err(Error::PinIncorrect);
            }
            self.store
                .init_token(&rec)
                .map_err(|e| self.store_error("initialising token", e))?;
            // Started even with auditing off, so that turning it on later
            // continues a chain rather than finding none.
            if let Err(e) = self.store.start_audit(id, &audit_root) {
                log!(
                    self.log,
                    Level::Error,
                    "slot {id}: cannot start the audit log: {e}"
                );
            }
            let is_spare = t.record.is_none();
            *t = Token::spare();
            t.record = Some(rec);
            drop(t);
            if is_spare {
                self.add_spares(&mut self.slots.write(), &[id]);
            }
        }
        log!(
            self.log,
            Level::Info,
            "slot {id}: token {:?} initialised with key policy {}",
            String::from_utf8_lossy(&label).trim_end(),
            policy.name()
        );
        Ok(())
    }

    fn seal_pin(
        &self,
        pin: &[u8],
        key: &StorageKey,
        token_id: &[u8; 16],
        who: Login,
    ) -> Result<PinWrap> {
        PinWrap::seal(pin, key, self.config.kdf, &wrap_aad(token_id, who)).map_err(|e| {
            log!(
                self.log,
                Level::Error,
                "sealing the storage key failed: {e}"
            );
            Error::GeneralError
        })
    }

    /// Checks a PIN through the store's one gate (`ferrohsm_store::access`:
    /// lockout, counting, unwrapping; the KDF and the counter write run with
    /// no token lock held), then adopts the stored outcome under the token
    /// lock, re-checking that the token was not re-initialised meanwhile.
    fn verify_pin(
        &self,
        slot: &Slot,
        rec: &TokenRecord,
        who: Login,
        pin: &[u8],
    ) -> Result<StorageKey> {
        use ferrohsm_store::access::{self, AccessError};
        let role = pin_role(who);
        let max = self.config.max_login_failures;
        let r = access::check_pin(&*self.store, slot.id, Some(rec), role, pin, max);
        let mut t = slot.token.write();
        if t.record.as_ref().map(|c| c.token_id) != Some(rec.token_id) {
            return Err(Error::PinIncorrect);
        }
        let role_name = if who == Login::So { "SO" } else { "user" };
        match r {
            Ok(o) => {
                if o.wrote {
                    self.wrote(slot.id, &mut t);
                    t.record = Some(o.record);
                }
                Ok(o.key)
            }
            Err(e @ (AccessError::WrongPin { .. } | AccessError::PinLocked)) => {
                // The gate wrote the counter: take the record as stored.
                self.wrote(slot.id, &mut t);
                match self.store.token(slot.id) {
                    Ok(Some(stored)) if stored.token_id == rec.token_id => t.record = Some(stored),
                    _ => t.generation = None,
                }
                if let AccessError::WrongPin { failures } = e {
                    log!(
                        self.log,
                        Level::Info,
                        "slot {}: wrong {role_name} PIN ({failures} consecutive)",
                        slot.id
                    );
                    if failures >= max {
                        log!(
                            self.log,
                            Level::Warn,
                            "slot {}: {role_name} PIN locked after {failures} failed attempts",
                            slot.id
                        );
                    }
                    Err(Error::PinIncorrect)
                } else {
                    Err(Error::PinLocked)
                }
            }
            Err(AccessError::TokenChanged) => {
                // Re-initialised by another process while the KDF ran.
                t.generation = None;
                Err(Error::PinIncorrect)
            }
            Err(AccessError::UserPinNotSet) => Err(Error::UserPinNotInitialized),
            Err(AccessError::NoToken) => Err(Error::TokenNotRecognized),
            Err(AccessError::Store(e)) => Err(self.store_error("saving login counter", e)),
            Err(AccessError::Seal(e)) => {
                log!(
                    self.log,
                    Level::Error,
                    "slot {}: cannot open PIN wrap: {e}",
                    slot.id
                );
                Err(Error::GeneralError)
            }
        }
    }

    /// Re-wraps the storage key under a PIN with the configured KDF cost when
    /// the stored wrap is weaker (runs after a successful login, through the
    /// store's gate).
    fn upgrade_kdf(&self, slot: &Slot, who: Login, pin: &[u8], key: &StorageKey) {
        let Some(rec) = slot.token.read().record.clone() else {
            return;
        };
        let r = ferrohsm_store::access::upgrade_kdf(
            &*self.store,
            slot.id,
            &rec,
            pin_role(who),
            pin,
            key,
            self.config.kdf,
        );
        match r {
            Ok(None) => {}
            Ok(Some(stored)) => {
                let mut t = slot.token.write();
                self.wrote(slot.id, &mut t);
                if t.record.as_ref().map(|c| c.token_id) == Some(stored.token_id) {
                    t.record = Some(stored);
                }
                log!(
                    self.log,
                    Level::Info,
                    "slot {}: PIN wrap upgraded to the configured KDF cost",
                    slot.id
                );
            }
            Err(e) => log!(
                self.log,
                Level::Warn,
                "slot {}: KDF upgrade not saved: {e}",
                slot.id
            ),
        }
    }

    /// `C_InitPIN`: the SO sets the user PIN (and unlocks it).
    pub fn init_pin(&self, h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
        let r = secret::scope(|| self.init_pin_inner(h, pin));
        self.audit_call(h, "C_InitPIN", &r, true, |_| {});
        r
    }

    fn init_pin_inner(&self, h: CK_SESSION_HANDLE, pin: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        self.refresh(&s.slot)?;
        let (rec, key) = {
            let t = s.slot.token.read();
            if t.login != Login::So || !s.rw {
                return Err(Error::UserNotLoggedIn);
            }
            check_pin_len(pin)?;
            (
                t.record()?.clone(),
                t.key.clone().ok_or(Error::UserNotLoggedIn)?,
            )
        };
        let wrap = self.seal_pin(pin, &key, &rec.token_id, Login::User)?;
        let mut t = s.slot.token.write();
        let cur = t.record.as_mut().ok_or(Error::TokenNotRecognized)?;
        cur.user_pin = Some(wrap);
        cur.user_failures = 0;
        let snapshot = cur.clone();
        self.store
            .update_token(&snapshot)
            .map_err(|e| self.store_error("saving user PIN", e))?;
        self.wrote(s.slot.id, &mut t);
        log!(
            self.log,
            Level::Info,
            "slot {}: user PIN set by SO",
            s.slot.id
        );
        Ok(())
    }

    /// `C_SetPIN`: changes the PIN of whoever the session is (the user in a
    /// public or user session, the SO in an SO session).
    pub fn set_pin(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
        let r = secret::scope(|| self.set_pin_inner(h, old, new));
        self.audit_call(h, "C_SetPIN", &r, true, |_| {});
        r
    }

    fn set_pin_inner(&self, h: CK_SESSION_HANDLE, old: &[u8], new: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        if !s.rw {
            return Err(Error::SessionReadOnly);
        }
        self.refresh(&s.slot)?;
        let (rec, who) = {
            let t = s.slot.token.read();
            let who = if t.login == Login::So {
                Login::So
            } else {
                Login::User
            };
            let rec = t.record()?.clone();
            let failures = if who == Login::So {
                rec.so_failures
            } else {
                rec.user_failures
            };
            if who == Login::User && rec.user_pin.is_none() {
                return Err(Error::UserPinNotInitialized);
            }
            if failures >= self.config.max_login_failures {
                return Err(Error::PinLocked);
            }
            (rec, who)
        };
        check_pin_len(new)?;
        let key = self.verify_pin(&s.slot, &rec, who, old)?;
        let wrap = self.seal_pin(new, &key, &rec.token_id, who)?;
        let mut t = s.slot.token.write();
        let cur = t.record.as_mut().ok_or(Error::TokenNotRecognized)?;
        if who == Login::So {
            cur.so_pin = wrap;
        } else {
            cur.user_pin = Some(wrap);
        }
        let snapshot = cur.clone();
        self.store
            .update_token(&snapshot)
            .map_err(|e| self.store_error("saving PIN", e))?;
        self.wrote(s.slot.id, &mut t);
        log!(
            self.log,
            Level::Info,
            "slot {}: {} PIN changed",
            s.slot.id,
            if who == Login::So { "SO" } else { "user" }
        );
        Ok(())
    }

    // ---- Sessions and login ------------------------------------------------------

    /// `C_OpenSession`.
    pub fn open_session(&self, id: CK_SLOT_ID, flags: CK_FLAGS) -> Result<CK_SESSION_HANDLE> {
        if flags & CKF_SERIAL_SESSION == 0 {
            return Err(Error::SessionParallelNotSupported);
        }
        let slot = self.slot(id)?;
        self.refresh(&slot)?;
        let rw = flags & CKF_RW_SESSION != 0;
        let handle = self.new_handle();
        {
            let mut t = slot.token.write();
            t.record()?;
            if t.login == Login::So && !rw {
                return Err(Error::SessionReadWriteSoExists);
            }
            if t.sessions >= self.config.max_sessions {
                return Err(Error::SessionCount);
            }
            t.sessions += 1;
            if rw {
                t.rw_sessions += 1;
            }
            self.sessions.write().insert(
                handle,
                Arc::new(Session {
                    handle,
                    slot: slot.clone(),
                    rw,
                    ops: Default::default(),
                }),
            );
        }
        Ok(handle)
    }

    /// `C_CloseSession`: destroys its session objects; closing the last session
    /// of a token logs the application out of it.
    pub fn close_session(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        if self.sessions.write().remove(&h).is_none() {
            // Closed by another thread meanwhile.
            return Err(Error::SessionHandleInvalid);
        }
        t.objects.retain(|_, o| o.owner != Some(h));
        t.sessions -= 1;
        if s.rw {
            t.rw_sessions -= 1;
        }
        if t.sessions == 0 && t.login != Login::Public {
            Self::logout_token(&s.slot, &mut t);
        }
        Ok(())
    }

    /// `C_CloseAllSessions`.
    pub fn close_all_sessions(&self, id: CK_SLOT_ID) -> Result<()> {
        let slot = self.slot(id)?;
        let handles: Vec<_> = self
            .sessions
            .read()
            .values()
            .filter(|s| s.slot.id == id)
            .map(|s| s.handle)
            .collect();
        for h in handles {
            match self.close_session(h) {
                Ok(()) | Err(Error::SessionHandleInvalid) => {}
                Err(e) => return Err(e),
            }
        }
        drop(slot);
        Ok(())
    }

    /// `CK_SESSION_INFO`.
    pub fn session_info(&self, h: CK_SESSION_HANDLE) -> Result<CK_SESSION_INFO> {
        let s = self.session(h)?;
        let login = s.slot.token.read().login;
        Ok(CK_SESSION_INFO {
            slotID: s.slot.id,
            state: session::state(login, s.rw),
            flags: CKF_SERIAL_SESSION | if s.rw { CKF_RW_SESSION } else { 0 },
            ulDeviceError: 0,
        })
    }

    /// `C_Login` (and `C_LoginUser`, which has no user names to check here).
    pub fn login(&self, h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        let r = secret::scope(|| self.login_inner(h, user_type, pin));
        let who = match user_type {
            CKU_SO => "so",
            CKU_USER => "user",
            CKU_CONTEXT_SPECIFIC => "context-specific",
            _ => "unknown",
        };
        let failures = self.session(h).ok().and_then(|s| {
            let t = s.slot.token.read();
            let rec = t.record.as_ref()?;
            Some(if user_type == CKU_SO {
                rec.so_failures
            } else {
                rec.user_failures
            })
        });
        let max = self.config.max_login_failures;
        let detail = match (&r, failures) {
            (Err(Error::PinLocked), _) => Some("PIN locked: login refused".to_string()),
            (Err(Error::PinIncorrect), Some(n)) if n >= max => Some(format!(
                "wrong PIN; {n} consecutive failures: PIN now locked (lockout)"
            )),
            (Err(Error::PinIncorrect), Some(n)) => {
                Some(format!("wrong PIN; {n} consecutive failure(s) of {max}"))
            }
            _ => None,
        };
        self.audit_call(h, "C_Login", &r, true, |e| {
            e.user = Some(who.into());
            e.detail = detail;
        });
        r
    }

    fn login_inner(&self, h: CK_SESSION_HANDLE, user_type: CK_USER_TYPE, pin: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let who = match user_type {
            CKU_SO => Login::So,
            CKU_USER => Login::User,
            // No key here needs CKA_ALWAYS_AUTHENTICATE re-login yet.
            CKU_CONTEXT_SPECIFIC => return Err(Error::OperationNotInitialized),
            _ => return Err(Error::UserTypeInvalid),
        };
        // Counters and PINs as other processes left them.
        self.refresh(&s.slot)?;
        let rec = {
            let t = s.slot.token.read();
            let rec = t.record()?.clone();
            match t.login {
                Login::Public => {}
                l if l == who => return Err(Error::UserAlreadyLoggedIn),
                _ => return Err(Error::UserAnotherAlreadyLoggedIn),
            }
            if who == Login::So && t.sessions > t.rw_sessions {
                return Err(Error::SessionReadOnlyExists);
            }
            if who == Login::User && rec.user_pin.is_none() {
                return Err(Error::UserPinNotInitialized);
            }
            let failures = if who == Login::So {
                rec.so_failures
            } else {
                rec.user_failures
            };
            if failures >= self.config.max_login_failures {
                return Err(Error::PinLocked);
            }
            rec
        };
        let key = self.verify_pin(&s.slot, &rec, who, pin)?;
        {
            let mut t = s.slot.token.write();
            match t.login {
                Login::Public => {}
                l if l == who => return Err(Error::UserAlreadyLoggedIn),
                _ => return Err(Error::UserAnotherAlreadyLoggedIn),
            }
            if who == Login::User {
                self.load_objects(s.slot.id, &mut t, Some(&key))?;
            }
            s.slot.set_login(&mut t, who);
            t.key = Some(key.clone());
        }
        log!(
            self.log,
            Level::Info,
            "slot {}: {} logged in",
            s.slot.id,
            if who == Login::So { "SO" } else { "user" }
        );
        self.upgrade_kdf(&s.slot, who, pin, &key);
        self.ensure_audit(&s.slot, &key);
        Ok(())
    }

    /// Forgets the login: storage key, and the objects only a user may see
    /// (private ones, sealed token keys; handles to them become invalid for
    /// good).
    fn logout_token(slot: &Slot, t: &mut Token) {
        slot.set_login(t, Login::Public);
        t.key = None;
        t.objects.retain(|_, o| !o.needs_user());
    }

    /// `C_Logout`.
    pub fn logout(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        if t.login == Login::Public {
            return Err(Error::UserNotLoggedIn);
        }
        Self::logout_token(&s.slot, &mut t);
        Ok(())
    }

    /// `C_SessionCancel`: ends the active operations named by `flags`.
    pub fn session_cancel(&self, h: CK_SESSION_HANDLE, flags: CK_FLAGS) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        if flags & CKF_DIGEST != 0 {
            ops.digest = None;
        }
        if flags & CKF_FIND_OBJECTS != 0 {
            ops.find = None;
        }
        if flags & CKF_ENCRYPT != 0 {
            ops.encrypt = None;
        }
        if flags & CKF_DECRYPT != 0 {
            ops.decrypt = None;
        }
        if flags & CKF_SIGN != 0 {
            ops.sign = None;
        }
        if flags & CKF_VERIFY != 0 {
            ops.verify = None;
        }
        Ok(())
    }

    // ---- Objects -------------------------------------------------------------------

    fn actor(t: &Token) -> Result<Actor> {
        Ok(Actor {
            policy: t.record()?.policy,
            so: t.login == Login::So,
        })
    }

    /// Inserts a new object, writing token objects to the store first, and
    /// records its creation by `func` (with `mech`) in the audit log.
    fn insert_object(
        &self,
        s: &Session,
        t: &mut Token,
        attrs: policy::Attrs,
        store_id: u64,
        func: &str,
        mech: Option<CK_MECHANISM_TYPE>,
    ) -> Result<CK_OBJECT_HANDLE> {
        let handle = self.new_handle();
        let token_obj = policy::get_bool(&attrs, CKA_TOKEN);
        let obj = Object {
            handle,
            store_id,
            owner: if token_obj { None } else { Some(s.handle) },
            attrs,
            cache: Default::default(),
        };
        let r = (|| {
            if token_obj && !s.rw {
                return Err(Error::SessionReadOnly);
            }
            if obj.needs_user() && t.login != Login::User {
                return Err(Error::UserNotLoggedIn);
            }
            if token_obj {
                let put = self
                    .store
                    .put_object(s.slot.id, &obj.to_record(), t.key.as_ref());
                if let Err(e) = put {
                    return Err(self.write_failed(&s.slot, t, "writing object", e));
                }
                self.wrote(s.slot.id, t);
                if !obj.needs_user() {
                    t.handles.insert(store_id, handle);
                }
            }
            Ok(handle)
        })();
        if self.audit.enabled() {
            let mut e = self.event(s, func, &r);
            e.mechanism = mech.map(audit::mechanism_name);
            e.object = Some(audit::describe_attrs(r.as_ref().ok().copied(), &obj.attrs));
            if !token_obj {
                e.detail = Some("session object".into());
            }
            self.audit.record(s.slot.id, e, token_obj && r.is_ok());
        }
        r?;
        t.objects.insert(handle, Arc::new(obj));
        Ok(handle)
    }

    fn new_store_id() -> Result<u64> {
        Ok(u64::from_ne_bytes(random_bytes::<8>()?) | 1)
    }

    /// `C_CreateObject`.
    pub fn create_object(
        &self,
        h: CK_SESSION_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // Key values from the template are copied into the new object: key region.
        secret::scope(|| self.create_object_inner(h, template))
    }

    fn create_object_inner(
        &self,
        h: CK_SESSION_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        let actor = Self::actor(&t)?;
        let id = Self::new_store_id()?;
        let attrs = policy::build(template, &[], Origin::Create, actor, &unique_id(id))
            .inspect_err(|e| {
                self.refused(&s, actor.policy, "C_CreateObject", *e, template);
            })?;
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_CreateObject", None)?;
        log!(
            self.log,
            Level::Debug,
            "session {h}: created object {handle}"
        );
        Ok(handle)
    }

    /// Logs why a template was refused, naming attributes but never values.
    /// Called with the token locked, so it is handed the policy, never locks.
    fn refused(&self, s: &Session, policy: KeyPolicy, func: &str, e: Error, template: &[RawAttr]) {
        let why = if e == Error::AttributeValueInvalid
            && policy == KeyPolicy::Hsm
            && template
                .iter()
                .any(|a| a.ty == CKA_SENSITIVE && a.value.first() == Some(&0))
        {
            " (this token's key policy is 'hsm': private and secret keys must be sensitive)"
        } else {
            ""
        };
        log!(
            self.log,
            Level::Info,
            "session {}: {func} refused: {e}{why}; template {:?}",
            s.handle,
            template
        );
        if self.audit.enabled() {
            let mut ev = self.event::<()>(s, func, &Err(e));
            let names: Vec<String> = template.iter().map(|a| policy::attr_name(a.ty)).collect();
            ev.detail = Some(format!("policy refusal; template {}", names.join(" ")));
            self.audit.record(s.slot.id, ev, false);
        }
    }

    /// `C_CopyObject`.
    pub fn copy_object(
        &self,
        h: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // The copy carries the key value: key region.
        secret::scope(|| self.copy_object_inner(h, obj, template))
    }

    fn copy_object_inner(
        &self,
        h: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        let src = t.object(obj)?;
        if !src.flag(CKA_COPYABLE) {
            return Err(Error::ActionProhibited);
        }
        let actor = Self::actor(&t)?;
        let id = Self::new_store_id()?;
        let attrs = policy::modify(
            &src.attrs,
            template,
            Edit::Copy,
            actor,
            Some(&unique_id(id)),
        )
        .inspect_err(|e| self.refused(&s, actor.policy, "C_CopyObject", *e, template))?;
        self.insert_object(&s, &mut t, attrs, id, "C_CopyObject", None)
    }

    /// `C_DestroyObject`. On an `hsm` token a private or secret token key is
    /// not deleted at once: it is scheduled for deletion after the waiting
    /// period (`deletion_wait_seconds`), unusable and invisible meanwhile,
    /// and can be restored with `ferrohsm cancel-deletion`; it is purged at
    /// the next open after the period (`C_Initialize`, a login, or
    /// `ferrohsm pending`).
    pub fn destroy_object(&self, h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> Result<()> {
        let mut described = None;
        let mut detail = None;
        let mut durable = false;
        // The attributes are copied (key value included) to reschedule the key.
        let r = secret::scope(|| {
            let s = self.session(h)?;
            let mut t = s.slot.token.write();
            let o = t.object(obj)?;
            described = Some(audit::describe(&o));
            durable = o.is_token();
            Self::may_change(&s, &o, CKA_DESTROYABLE)?;
            if o.is_token() {
                let wait = self.config.deletion_wait.as_secs();
                let keyish = matches!(o.ulong(CKA_CLASS), Some(CKO_PRIVATE_KEY | CKO_SECRET_KEY));
                if keyish && wait > 0 && t.record()?.policy == KeyPolicy::Hsm {
                    let at = unix_now().saturating_add(wait);
                    let mut attrs = o.attrs.clone();
                    attrs.insert(CKA_FERROHSM_DELETE_AT, AttrValue::Ulong(at as _));
                    let scheduled = Object {
                        handle: o.handle,
                        store_id: o.store_id,
                        owner: None,
                        attrs,
                        cache: Default::default(),
                    };
                    let put =
                        self.store
                            .put_object(s.slot.id, &scheduled.to_record(), t.key.as_ref());
                    if let Err(e) = put {
                        return Err(self.write_failed(&s.slot, &mut t, "scheduling deletion", e));
                    }
                    let when = ferrohsm_store::audit::rfc3339(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(at),
                    );
                    detail = Some(format!(
                        "deletion scheduled for {when}; `ferrohsm cancel-deletion` restores it"
                    ));
                } else {
                    self.store
                        .delete_object(s.slot.id, o.store_id)
                        .map_err(|e| self.store_error("deleting object", e))?;
                    detail = Some("deleted".into());
                }
                self.wrote(s.slot.id, &mut t);
                t.handles.remove(&o.store_id);
            }
            t.objects.remove(&obj);
            log!(
                self.log,
                Level::Debug,
                "session {h}: destroyed {}{}",
                o.describe(),
                detail
                    .as_deref()
                    .map(|d| format!(" ({d})"))
                    .unwrap_or_default()
            );
            Ok(())
        });
        self.audit_call(h, "C_DestroyObject", &r, durable && r.is_ok(), |e| {
            e.object = described;
            e.detail = detail;
        });
        r
    }

    /// Whether session `s` may change `o`: a token object needs a R/W
    /// session, and the object must allow it (`flag`: `CKA_DESTROYABLE`,
    /// `CKA_MODIFIABLE`).
    fn may_change(s: &Session, o: &Object, flag: CK_ATTRIBUTE_TYPE) -> Result<()> {
        if o.is_token() && !s.rw {
            return Err(Error::SessionReadOnly);
        }
        if !o.flag(flag) {
            return Err(Error::ActionProhibited);
        }
        Ok(())
    }

    /// `C_GetObjectSize`.
    pub fn object_size(&self, h: CK_SESSION_HANDLE, obj: CK_OBJECT_HANDLE) -> Result<usize> {
        let s = self.session(h)?;
        let o = s.slot.token.read().object(obj)?;
        Ok(o.size())
    }

    /// `C_GetAttributeValue`: what may be said of each requested attribute.
    pub fn get_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<Reading>> {
        // Readings may copy a (non-sensitive) key value: key region.
        secret::scope(|| self.get_attributes_inner(h, obj, types))
    }

    fn get_attributes_inner(
        &self,
        h: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        types: &[CK_ATTRIBUTE_TYPE],
    ) -> Result<Vec<Reading>> {
        let s = self.session(h)?;
        let o = s.slot.token.read().object(obj)?;
        let readings: Vec<Reading> = types.iter().map(|ty| policy::read(&o.attrs, *ty)).collect();
        if readings.contains(&Reading::Sensitive) {
            log!(
                self.log,
                Level::Info,
                "session {h}: refused to reveal key material of {}",
                o.describe()
            );
            if self.audit.enabled() {
                let refused: Vec<String> = types
                    .iter()
                    .zip(&readings)
                    .filter(|(_, r)| **r == Reading::Sensitive)
                    .map(|(ty, _)| policy::attr_name(*ty))
                    .collect();
                let mut e =
                    self.event::<()>(&s, "C_GetAttributeValue", &Err(Error::AttributeSensitive));
                e.object = Some(audit::describe(&o));
                e.detail = Some(format!("policy refusal: read of {}", refused.join(" ")));
                self.audit.record(s.slot.id, e, false);
            }
        }
        Ok(readings)
    }

    /// `C_SetAttributeValue`.
    pub fn set_attributes(
        &self,
        h: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<()> {
        let mut described = None;
        let mut durable = false;
        // The new version of the object copies the old one's key value.
        let r = secret::scope(|| {
            let s = self.session(h)?;
            let mut t = s.slot.token.write();
            let o = t.object(obj)?;
            described = Some(audit::describe(&o));
            durable = o.is_token();
            Self::may_change(&s, &o, CKA_MODIFIABLE)?;
            let actor = Self::actor(&t)?;
            let attrs =
                policy::modify(&o.attrs, template, Edit::Set, actor, None).inspect_err(|e| {
                    self.refused(&s, actor.policy, "C_SetAttributeValue", *e, template)
                })?;
            let new = Object {
                handle: o.handle,
                store_id: o.store_id,
                owner: o.owner,
                attrs,
                cache: Default::default(),
            };
            if new.is_token() {
                let put = self
                    .store
                    .put_object(s.slot.id, &new.to_record(), t.key.as_ref());
                if let Err(e) = put {
                    return Err(self.write_failed(&s.slot, &mut t, "updating object", e));
                }
                self.wrote(s.slot.id, &mut t);
            }
            t.objects.insert(obj, Arc::new(new));
            Ok(())
        });
        let names: Vec<String> = template.iter().map(|a| policy::attr_name(a.ty)).collect();
        self.audit_call(h, "C_SetAttributeValue", &r, durable && r.is_ok(), |e| {
            e.object = described;
            e.detail = Some(format!("attributes {}", names.join(" ")));
        });
        r
    }

    /// `C_FindObjectsInit`: snapshots the visible objects matching `template`.
    pub fn find_init(&self, h: CK_SESSION_HANDLE, template: &[RawAttr]) -> Result<()> {
        let s = self.session(h)?;
        self.refresh(&s.slot)?;
        let query = policy::Query::new(template);
        let mut found: Vec<CK_OBJECT_HANDLE> = {
            let t = s.slot.token.read();
            // A label or id in the template narrows the search through the
            // index; the query still checks every attribute of each candidate.
            let candidates: Vec<&Arc<Object>> =
                match template.iter().find(|a| INDEXED.contains(&a.ty)) {
                    Some(a) => t.objects.with(a.ty, &a.value),
                    None => t.objects.values().collect(),
                };
            candidates
                .into_iter()
                .filter(|o| !o.needs_user() || t.login == Login::User)
                .filter(|o| query.matches(&o.attrs))
                .map(|o| o.handle)
                .collect()
        };
        found.sort_unstable();
        let mut ops = s.ops.lock();
        if ops.find.is_some() {
            return Err(Error::OperationActive);
        }
        ops.find = Some(FindOp {
            pending: found.into(),
        });
        Ok(())
    }

    /// `C_FindObjects`: up to `max` more handles.
    pub fn find(&self, h: CK_SESSION_HANDLE, max: usize) -> Result<Vec<CK_OBJECT_HANDLE>> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let f = ops.find.as_mut().ok_or(Error::OperationNotInitialized)?;
        let n = max.min(f.pending.len());
        Ok(f.pending.drain(..n).collect())
    }

    /// `C_FindObjectsFinal`.
    pub fn find_final(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        ops.find
            .take()
            .map(|_| ())
            .ok_or(Error::OperationNotInitialized)
    }

    // ---- Digests and random ----------------------------------------------------------

    /// `C_DigestInit`.
    pub fn digest_init(&self, h: CK_SESSION_HANDLE, mech: &MechanismArg) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        if ops.digest.is_some() {
            return Err(Error::OperationActive);
        }
        let op = mechanism::digest_op(mech)?;
        ops.digest = Some(DigestState {
            op,
            multipart: false,
        });
        Ok(())
    }

    /// `C_Digest`: single-part; the NULL-buffer size query keeps it alive.
    pub fn digest(&self, h: CK_SESSION_HANDLE, input: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            if d.multipart {
                return Err(Error::OperationActive);
            }
            let Some(buf) = out.offer(d.op.output_len())? else {
                return Ok(((), After::Keep));
            };
            d.op.update(input);
            d.op.finish(buf);
            Ok(((), After::End))
        })
    }

    /// `C_DigestUpdate`.
    pub fn digest_update(&self, h: CK_SESSION_HANDLE, input: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            d.multipart = true;
            d.op.update(input);
            Ok(((), After::Keep))
        })
    }

    /// `C_DigestKey`: digests the value of a secret key that may be revealed;
    /// a sensitive or unextractable key is `CKR_KEY_INDIGESTIBLE`.
    pub fn digest_key(&self, h: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> Result<()> {
        let s = self.session(h)?;
        let k = s
            .slot
            .token
            .read()
            .object(key)
            .map_err(|_| Error::KeyHandleInvalid)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            if k.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
                return Err(Error::KeyIndigestible);
            }
            match secret::scope(|| policy::read(&k.attrs, CKA_VALUE)) {
                Reading::Value(v) => {
                    d.multipart = true;
                    d.op.update(&v);
                    Ok(((), After::Keep))
                }
                _ => {
                    log!(
                        self.log,
                        Level::Info,
                        "session {h}: C_DigestKey refused for protected {}",
                        k.describe()
                    );
                    Err(Error::KeyIndigestible)
                }
            }
        })
    }

    /// `C_DigestFinal`.
    pub fn digest_final(&self, h: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.digest, |d| {
            let Some(buf) = out.offer(d.op.output_len())? else {
                return Ok(((), After::Keep));
            };
            d.op.finish(buf);
            Ok(((), After::End))
        })
    }

    // ---- Keys and their use ------------------------------------------------------------

    /// The key named by an `*Init` call, checked against the mechanism row and
    /// the key's own rules: handle, key type, usage flag, allowed mechanisms.
    fn usable_key(
        &self,
        s: &Session,
        key: CK_OBJECT_HANDLE,
        mech: &MechanismArg,
        row: &Mechanism,
        usage: CK_ATTRIBUTE_TYPE,
        func: &'static str,
    ) -> Result<Arc<Object>> {
        let k = s
            .slot
            .token
            .read()
            .object(key)
            .map_err(|_| Error::KeyHandleInvalid)?;
        let check = || -> Result<()> {
            let kt = k.ulong(CKA_KEY_TYPE).ok_or(Error::KeyTypeInconsistent)?;
            if !row.key_types.contains(&kt) {
                return Err(Error::KeyTypeInconsistent);
            }
            if !k.flag(usage) {
                return Err(Error::KeyFunctionNotPermitted);
            }
            if let Some(ferrohsm_store::AttrValue::Mechanisms(allowed)) =
                k.attrs.get(&CKA_ALLOWED_MECHANISMS)
                && !allowed.is_empty()
                && !allowed.contains(&mech.ty)
            {
                return Err(Error::MechanismInvalid);
            }
            Ok(())
        };
        check().inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {}: {func} with {} refused for {}: {e}",
                s.handle,
                row.name,
                k.describe()
            );
            if self.audit.enabled() {
                let mut ev = self.event::<()>(s, func, &Err(*e));
                ev.mechanism = Some(row.name.into());
                ev.object = Some(audit::describe(&k));
                ev.detail = Some("policy refusal: key not usable for this".into());
                self.audit.record(s.slot.id, ev, false);
            }
        })?;
        self.audit
            .key_use(s.slot.id, s.handle, s.slot.user_name(), func, mech.ty, &k);
        Ok(k)
    }

    /// `C_EncryptInit` / `C_DecryptInit`.
    pub fn cipher_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        dir: Dir,
    ) -> Result<()> {
        let s = self.session(h)?;
        if s.ops.lock().cipher(dir).is_some() {
            return Err(Error::OperationActive);
        }
        let row = mechanism::lookup(mech.ty)?;
        let build = row.cipher.ok_or(Error::MechanismInvalid)?;
        let (usage, func) = match dir {
            Dir::Encrypt => (CKA_ENCRYPT, "C_EncryptInit"),
            Dir::Decrypt => (CKA_DECRYPT, "C_DecryptInit"),
        };
        let k = self.usable_key(&s, key, mech, row, usage, func)?;
        let op = build(&mech.param, &k, dir)?;
        let mut ops = s.ops.lock();
        let slot = ops.cipher(dir);
        if slot.is_some() {
            return Err(Error::OperationActive);
        }
        *slot = Some(CipherState {
            op,
            multipart: false,
        });
        Ok(())
    }

    /// `C_Encrypt` / `C_Decrypt`: single-part.
    pub fn cipher(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        input: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(ops.cipher(dir), |c| {
            if c.multipart {
                return Err(Error::OperationActive);
            }
            let n = match out.offer(c.op.single_len(input.len()))? {
                Some(buf) => c.op.single(input, buf)?,
                None => return Ok(((), After::Keep)),
            };
            out.truncate(n);
            Ok(((), After::End))
        })
    }

    /// `C_EncryptUpdate` / `C_DecryptUpdate`.
    pub fn cipher_update(
        &self,
        h: CK_SESSION_HANDLE,
        dir: Dir,
        input: &[u8],
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(ops.cipher(dir), |c| {
            c.multipart = true;
            let n = match out.offer(c.op.update_len(input.len()))? {
                Some(buf) => c.op.update(input, buf)?,
                None => return Ok(((), After::Keep)),
            };
            out.truncate(n);
            Ok(((), After::Keep))
        })
    }

    /// `C_EncryptFinal` / `C_DecryptFinal`.
    pub fn cipher_final(&self, h: CK_SESSION_HANDLE, dir: Dir, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(ops.cipher(dir), |c| {
            let n = match out.offer(c.op.final_len())? {
                Some(buf) => c.op.finish(buf)?,
                None => return Ok(((), After::Keep)),
            };
            out.truncate(n);
            Ok(((), After::End))
        })
    }

    /// `C_SignInit` / `C_VerifyInit` for MAC mechanisms.
    pub fn mac_init(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        key: CK_OBJECT_HANDLE,
        verify: bool,
    ) -> Result<()> {
        let s = self.session(h)?;
        let busy = |ops: &mut session::Ops| {
            if verify {
                ops.verify.is_some()
            } else {
                ops.sign.is_some()
            }
        };
        if busy(&mut s.ops.lock()) {
            return Err(Error::OperationActive);
        }
        let row = mechanism::lookup(mech.ty)?;
        let build = row.sign.ok_or(Error::MechanismInvalid)?;
        let (usage, func) = if verify {
            (CKA_VERIFY, "C_VerifyInit")
        } else {
            (CKA_SIGN, "C_SignInit")
        };
        let k = self.usable_key(&s, key, mech, row, usage, func)?;
        let op = build(&mech.param, &k, verify)?;
        let mut ops = s.ops.lock();
        if busy(&mut ops) {
            return Err(Error::OperationActive);
        }
        let state = Some(MacState {
            op,
            multipart: false,
        });
        if verify {
            ops.verify = state;
        } else {
            ops.sign = state;
        }
        Ok(())
    }

    /// `C_Sign`: single-part MAC.
    pub fn sign(&self, h: CK_SESSION_HANDLE, data: &[u8], out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.sign, |m| {
            if m.multipart {
                return Err(Error::OperationActive);
            }
            let Some(buf) = out.offer(m.op.sig_len())? else {
                return Ok(((), After::Keep));
            };
            m.op.update(data)?;
            m.op.sign(buf)?;
            Ok(((), After::End))
        })
    }

    /// `C_SignUpdate` / `C_VerifyUpdate`.
    pub fn mac_update(&self, h: CK_SESSION_HANDLE, verify: bool, data: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        let slot = if verify {
            &mut ops.verify
        } else {
            &mut ops.sign
        };
        drive(slot, |m| {
            if !m.op.multi_part() {
                return Err(Error::FunctionNotSupported);
            }
            m.multipart = true;
            m.op.update(data)?;
            Ok(((), After::Keep))
        })
    }

    /// `C_SignFinal`.
    pub fn sign_final(&self, h: CK_SESSION_HANDLE, out: &mut OutBuf<'_>) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.sign, |m| {
            if !m.op.multi_part() {
                return Err(Error::FunctionNotSupported);
            }
            let Some(buf) = out.offer(m.op.sig_len())? else {
                return Ok(((), After::Keep));
            };
            m.op.sign(buf)?;
            Ok(((), After::End))
        })
    }

    /// `C_Verify`: single-part; a wrong MAC is `CKR_SIGNATURE_INVALID`.
    pub fn verify(&self, h: CK_SESSION_HANDLE, data: &[u8], signature: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.verify, |m| {
            if m.multipart {
                return Err(Error::OperationActive);
            }
            m.op.update(data)?;
            m.op.verify(signature)?;
            Ok(((), After::End))
        })
    }

    /// `C_VerifyFinal`.
    pub fn verify_final(&self, h: CK_SESSION_HANDLE, signature: &[u8]) -> Result<()> {
        let s = self.session(h)?;
        let mut ops = s.ops.lock();
        drive(&mut ops.verify, |m| {
            if !m.op.multi_part() {
                return Err(Error::FunctionNotSupported);
            }
            m.op.verify(signature)?;
            Ok(((), After::End))
        })
    }

    /// `C_GenerateKey`: a secret key born in the token.
    pub fn generate_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // The new key value and every copy of it: key region.
        secret::scope(|| self.generate_key_inner(h, mech, template))
    }

    fn generate_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let row = mechanism::lookup(mech.ty)?;
        let kg = row.keygen.ok_or(Error::MechanismInvalid)?;
        if mech.param != mechanism::Param::None {
            return Err(Error::MechanismParamInvalid);
        }
        let mut t = s.slot.token.write();
        let actor = Self::actor(&t)?;
        let id = Self::new_store_id()?;
        let implied = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, kg.key_type)];
        let mut attrs = policy::build(
            template,
            &implied,
            Origin::Generate(mech.ty),
            actor,
            &unique_id(id),
        )
        .and_then(|a| match a.get(&CKA_VALUE_LEN) {
            Some(ferrohsm_store::AttrValue::Ulong(n)) if (kg.value_len)(*n as usize) => Ok(a),
            Some(_) => Err(Error::AttributeValueInvalid),
            None => Err(Error::TemplateIncomplete),
        })
        .inspect_err(|e| self.refused(&s, actor.policy, "C_GenerateKey", *e, template))?;
        let len = match attrs.get(&CKA_VALUE_LEN) {
            Some(ferrohsm_store::AttrValue::Ulong(n)) => *n as usize,
            _ => return Err(Error::TemplateIncomplete),
        };
        let mut value = zeroize::Zeroizing::new(vec![0u8; len]);
        getrandom::fill(&mut value).map_err(|_| Error::DeviceError)?;
        policy::set_secret_value(&mut attrs, kg.key_type, &value)?;
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_GenerateKey", Some(mech.ty))?;
        log!(
            self.log,
            Level::Debug,
            "session {h}: generated {} key {handle}",
            row.name
        );
        Ok(handle)
    }

    /// `C_GenerateKeyPair`: a public/private key pair born in the token. Both
    /// templates go through the attribute policy; the mechanism family makes
    /// the pair (with a pairwise consistency check) outside the token lock.
    pub fn generate_key_pair(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        public_template: &[RawAttr],
        private_template: &[RawAttr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        // The private key and the generator's temporaries: key region.
        secret::scope(|| self.generate_key_pair_inner(h, mech, public_template, private_template))
    }

    fn generate_key_pair_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        public_template: &[RawAttr],
        private_template: &[RawAttr],
    ) -> Result<(CK_OBJECT_HANDLE, CK_OBJECT_HANDLE)> {
        let s = self.session(h)?;
        let row = mechanism::lookup(mech.ty)?;
        let kp = row.keypair.ok_or(Error::MechanismInvalid)?;
        if mech.param != mechanism::Param::None {
            return Err(Error::MechanismParamInvalid);
        }
        let (actor, pub_id, priv_id) = {
            let t = s.slot.token.read();
            (
                Self::actor(&t)?,
                Self::new_store_id()?,
                Self::new_store_id()?,
            )
        };
        let origin = Origin::Generate(mech.ty);
        let mut public = policy::build(
            public_template,
            &[(CKA_CLASS, CKO_PUBLIC_KEY), (CKA_KEY_TYPE, kp.key_type)],
            origin,
            actor,
            &unique_id(pub_id),
        )
        .inspect_err(|e| {
            self.refused(&s, actor.policy, "C_GenerateKeyPair", *e, public_template)
        })?;
        let mut private = policy::build(
            private_template,
            &[(CKA_CLASS, CKO_PRIVATE_KEY), (CKA_KEY_TYPE, kp.key_type)],
            origin,
            actor,
            &unique_id(priv_id),
        )
        .inspect_err(|e| {
            self.refused(&s, actor.policy, "C_GenerateKeyPair", *e, private_template)
        })?;
        // Key generation (RSA-4096 takes seconds) runs with no lock held.
        let (pub_extra, priv_extra) = (kp.generate)(&public).inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: {} refused: {e}",
                row.name
            );
        })?;
        public.extend(pub_extra);
        private.extend(priv_extra);
        let mut t = s.slot.token.write();
        // Check both can be stored before storing either.
        for obj in [&public, &private] {
            let token_obj = policy::get_bool(obj, CKA_TOKEN);
            if token_obj && !s.rw {
                return Err(Error::SessionReadOnly);
            }
        }
        let f = "C_GenerateKeyPair";
        let ph = self.insert_object(&s, &mut t, public, pub_id, f, Some(mech.ty))?;
        let kh = match self.insert_object(&s, &mut t, private, priv_id, f, Some(mech.ty)) {
            Ok(kh) => kh,
            Err(e) => {
                // Do not leave half a pair behind.
                if let Some(o) = t.objects.remove(&ph)
                    && o.is_token()
                {
                    let _ = self.store.delete_object(s.slot.id, o.store_id);
                    t.handles.remove(&o.store_id);
                    self.wrote(s.slot.id, &mut t);
                }
                return Err(e);
            }
        };
        log!(
            self.log,
            Level::Debug,
            "session {h}: generated {} key pair {ph}/{kh}",
            row.name
        );
        Ok((ph, kh))
    }

    /// `C_DeriveKey`: a secret key (or, for `CKM_HKDF_DATA`, a data object)
    /// from a base key, and a second key when the parameter names one. The
    /// new key is at least as protected as its bases: sensitive if any base
    /// is, unextractable if any base is (a template asking otherwise is
    /// `CKR_TEMPLATE_INCONSISTENT`), and `CKA_ALWAYS_SENSITIVE`/
    /// `CKA_NEVER_EXTRACTABLE` only if they held for every base.
    pub fn derive_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // Shared secrets, derived values and their copies: key region.
        secret::scope(|| self.derive_key_inner(h, mech, base, template))
    }

    fn derive_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        base: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let row = mechanism::lookup(mech.ty)?;
        let derive = row.derive.ok_or(Error::MechanismInvalid)?;
        let k = self.usable_key(&s, base, mech, row, CKA_DERIVE, "C_DeriveKey")?;
        let second = match (derive.second_key)(&mech.param) {
            Some(h2) => Some(
                self.usable_key(&s, h2, mech, row, CKA_DERIVE, "C_DeriveKey")
                    .map_err(|e| match e {
                        Error::KeyHandleInvalid => Error::MechanismParamInvalid,
                        e => e,
                    })?,
            ),
            None => None,
        };
        let bases: Vec<&Object> = std::iter::once(&*k).chain(second.as_deref()).collect();
        let (actor, id) = {
            let t = s.slot.token.read();
            (Self::actor(&t)?, Self::new_store_id()?)
        };
        // CKM_HKDF_DATA: the length comes as CKA_VALUE_LEN, which a data
        // object does not have; take it out of the template.
        let mut asked_len = None;
        let template: Vec<RawAttr> = if derive.data {
            let mut rest = Vec::new();
            for a in template {
                if a.ty == CKA_VALUE_LEN {
                    asked_len = Some(a.as_ulong().ok_or(Error::AttributeValueInvalid)?);
                } else {
                    rest.push(a.clone());
                }
            }
            rest
        } else {
            template.to_vec()
        };
        let template = Self::with_key_template(&template, &k, CKA_DERIVE_TEMPLATE)?;
        let class = if derive.data {
            CKO_DATA
        } else {
            CKO_SECRET_KEY
        };
        // Without CKA_KEY_TYPE a derived key is a generic secret.
        let mut implied = vec![(CKA_CLASS, class)];
        if !derive.data && !template.iter().any(|a| a.ty == CKA_KEY_TYPE) {
            implied.push((CKA_KEY_TYPE, CKK_GENERIC_SECRET));
        }
        let mut attrs = policy::build(
            &template,
            &implied,
            Origin::Derive(mech.ty),
            actor,
            &unique_id(id),
        )
        .inspect_err(|e| self.refused(&s, actor.policy, "C_DeriveKey", *e, &template))?;
        let kt = match attrs.get(&CKA_KEY_TYPE) {
            Some(ferrohsm_store::AttrValue::Ulong(kt)) => Some(*kt as CK_KEY_TYPE),
            _ if derive.data => None,
            _ => return Err(Error::TemplateIncomplete),
        };
        let len = match (attrs.get(&CKA_VALUE_LEN), asked_len, kt) {
            (Some(ferrohsm_store::AttrValue::Ulong(n)), _, _) => *n as usize,
            (Some(_), _, _) => return Err(Error::AttributeValueInvalid),
            (None, Some(n), _) => n as usize,
            (None, None, Some(CKK_AES)) => return Err(Error::TemplateIncomplete),
            (None, None, _) => (derive.default_len)(&mech.param, &k, second.as_deref())?,
        };
        let valid = match kt {
            Some(CKK_AES) => matches!(len, 16 | 24 | 32),
            Some(CKK_GENERIC_SECRET) | None => (1..=mechanism::MAX_SECRET_LEN).contains(&len),
            Some(_) => return Err(Error::TemplateInconsistent),
        };
        if !valid {
            return Err(Error::TemplateInconsistent);
        }
        if !derive.data {
            policy::protect_like_bases(&mut attrs, &template, &bases)
                .inspect_err(|e| self.refused(&s, actor.policy, "C_DeriveKey", *e, &template))?;
        } else if bases.iter().any(|b| policy::is_protected(&b.attrs)) {
            // A data object's value is readable by anyone: never from a
            // protected key.
            log!(
                self.log,
                Level::Info,
                "session {h}: {} refused: a data object cannot hold what a sensitive key derives",
                row.name
            );
            return Err(Error::KeyFunctionNotPermitted);
        }
        let value = (derive.derive)(&mech.param, &k, second.as_deref(), len).inspect_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: {} from {} refused: {e}",
                row.name,
                k.describe()
            );
        })?;
        match kt {
            Some(kt) => {
                policy::set_secret_value(&mut attrs, kt, &value)?;
                for b in &bases {
                    policy::inherit_sensitivity(&mut attrs, &b.attrs);
                }
            }
            None => {
                attrs.insert(CKA_VALUE, ferrohsm_store::AttrValue::Bytes(value.to_vec()));
            }
        }
        let mut t = s.slot.token.write();
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_DeriveKey", Some(mech.ty))?;
        log!(
            self.log,
            Level::Info,
            "session {h}: derived object {handle} with {} from {}",
            row.name,
            k.describe()
        );
        Ok(handle)
    }

    /// The attribute-array value `ty` (`CKA_WRAP_TEMPLATE`, …) of a key.
    fn key_template(key: &Object, ty: CK_ATTRIBUTE_TYPE) -> Vec<RawAttr> {
        match key.attrs.get(&ty) {
            Some(ferrohsm_store::AttrValue::Bytes(b)) => {
                policy::decode_template_value(b).unwrap_or_default()
            }
            _ => Vec::new(),
        }
    }

    /// A caller's template with the key's `CKA_UNWRAP_TEMPLATE` or
    /// `CKA_DERIVE_TEMPLATE` added; a conflicting value is
    /// `CKR_TEMPLATE_INCONSISTENT`.
    fn with_key_template(
        template: &[RawAttr],
        key: &Object,
        ty: CK_ATTRIBUTE_TYPE,
    ) -> Result<Vec<RawAttr>> {
        let mut out = template.to_vec();
        for forced in Self::key_template(key, ty) {
            match template.iter().find(|a| a.ty == forced.ty) {
                Some(a) if a.value != forced.value => return Err(Error::TemplateInconsistent),
                Some(_) => {}
                None => out.push(forced),
            }
        }
        Ok(out)
    }

    /// The key material `C_WrapKey` encrypts: a secret key's value, or a
    /// private key as PKCS#8 `PrivateKeyInfo`.
    fn wrappable_material(key: &Object) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        match (key.ulong(CKA_CLASS), key.ulong(CKA_KEY_TYPE)) {
            (Some(CKO_SECRET_KEY), _) => {
                Ok(zeroize::Zeroizing::new(mechanism::key_value(key)?.to_vec()))
            }
            (Some(CKO_PRIVATE_KEY), Some(CKK_RSA)) => mechanism::rsa::to_pkcs8(key),
            (Some(CKO_PRIVATE_KEY), Some(CKK_EC)) => mechanism::ec::to_pkcs8(key),
            _ => Err(Error::KeyNotWrappable),
        }
    }

    /// `C_WrapKey`: a key encrypted under a wrapping key, never in the clear.
    /// The wrapped key must be `CKA_EXTRACTABLE`; one marked
    /// `CKA_WRAP_WITH_TRUSTED` only under a `CKA_TRUSTED` wrapping key.
    pub fn wrap_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let r = secret::scope(|| self.wrap_key_inner(h, mech, wrapping, key, out));
        if self.audit.enabled() {
            let look = |handle| {
                let s = self.session(h).ok()?;
                let o = s.slot.token.read().object(handle).ok()?;
                Some(audit::describe(&o))
            };
            let (target, under) = (look(key), look(wrapping));
            self.audit_call(h, "C_WrapKey", &r, r.is_ok(), |e| {
                e.mechanism = Some(audit::mechanism_name(mech.ty));
                e.object = target;
                e.detail = Some(match under.and_then(|u| u.label) {
                    Some(l) => format!("wrapped under key {wrapping} ({l:?})"),
                    None => format!("wrapped under key {wrapping}"),
                });
            });
        }
        r
    }

    /// Under the `hsm` key policy a key leaves the token only wrapped, and the
    /// wrap must be one no caller can open: why `wk` may not wrap, or `None`.
    /// The SO's `CKA_TRUSTED` vouches for any wrapping key (a public key whose
    /// private half is in another HSM). Otherwise the wrapping key must be a
    /// secret key generated here and never extractable (`CKA_LOCAL` and
    /// `CKA_NEVER_EXTRACTABLE`): an imported, unwrapped or derived key
    /// (imports, unwrap-then-wrap, derivation from a caller-known base,
    /// concatenation with an imported key, ECDH with a caller's key) may have a
    /// value the caller knows. And it must not decrypt, or `C_Decrypt` of the
    /// wrapped bytes would reveal the key; usages only narrow on `hsm` tokens
    /// (`policy::modify`), so this cannot be turned on afterwards.
    fn untrusted_wrapping_key(wk: &Object) -> Option<&'static str> {
        if wk.flag(CKA_TRUSTED) {
            return None;
        }
        if wk.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Some(
                "a public wrapping key needs CKA_TRUSTED, set by the SO: the token cannot know who holds its private key",
            );
        }
        if !(wk.flag(CKA_LOCAL) && wk.flag(CKA_NEVER_EXTRACTABLE)) {
            return Some(
                "the wrapping key was not generated in this token as never extractable, so its value may be known outside (the SO may mark it CKA_TRUSTED)",
            );
        }
        if wk.flag(CKA_DECRYPT) {
            return Some(
                "the wrapping key can also decrypt, so C_Decrypt of the wrapped bytes would reveal the key",
            );
        }
        None
    }

    fn wrap_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        wrapping: CK_OBJECT_HANDLE,
        key: CK_OBJECT_HANDLE,
        out: &mut OutBuf<'_>,
    ) -> Result<()> {
        let s = self.session(h)?;
        let row = mechanism::lookup(mech.ty)?;
        let build = row
            .cipher
            .filter(|_| row.flags & CKF_WRAP != 0)
            .ok_or(Error::MechanismInvalid)?;
        let wk = self
            .usable_key(&s, wrapping, mech, row, CKA_WRAP, "C_WrapKey")
            .map_err(|e| match e {
                Error::KeyHandleInvalid => Error::WrappingKeyHandleInvalid,
                Error::KeyTypeInconsistent => Error::WrappingKeyTypeInconsistent,
                e => e,
            })?;
        let (target, policy) = {
            let t = s.slot.token.read();
            let target = t.object(key).map_err(|_| Error::KeyHandleInvalid)?;
            (target, t.record()?.policy)
        };
        let refuse = |e: Error, why: &str| {
            log!(
                self.log,
                Level::Info,
                "session {h}: C_WrapKey of {} under {} refused: {why}",
                target.describe(),
                wk.describe()
            );
            e
        };
        if !matches!(
            target.ulong(CKA_CLASS),
            Some(CKO_SECRET_KEY) | Some(CKO_PRIVATE_KEY)
        ) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "not a secret or private key",
            ));
        }
        if !target.flag(CKA_EXTRACTABLE) {
            return Err(refuse(
                Error::KeyUnextractable,
                "the key is not extractable",
            ));
        }
        if target.flag(CKA_WRAP_WITH_TRUSTED) && !wk.flag(CKA_TRUSTED) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "the key may only be wrapped by a trusted key",
            ));
        }
        if policy == KeyPolicy::Hsm
            && let Some(why) = Self::untrusted_wrapping_key(&wk)
        {
            log!(
                self.log,
                Level::Warn,
                "session {h}: C_WrapKey of {} under {} refused by the token's hsm key policy: {why}",
                target.describe(),
                wk.describe()
            );
            return Err(Error::KeyNotWrappable);
        }
        if !policy::matches_template(&target.attrs, &Self::key_template(&wk, CKA_WRAP_TEMPLATE)) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "the key does not match the wrapping key's CKA_WRAP_TEMPLATE",
            ));
        }
        if mech.ty == CKM_RSA_PKCS_OAEP && target.ulong(CKA_CLASS) != Some(CKO_SECRET_KEY) {
            return Err(refuse(
                Error::KeyNotWrappable,
                "RSA-OAEP wraps secret keys only",
            ));
        }
        let mut material = Self::wrappable_material(&target)?;
        if mech.ty == CKM_AES_KEY_WRAP {
            // "A key whose length is not a multiple of the AES Key Wrap
            // semiblock size (8 bytes) will be zero padded to fit."
            let padded = material.len().next_multiple_of(8);
            material.resize(padded, 0);
        }
        let mut op = build(&mech.param, &wk, Dir::Encrypt)?;
        let Some(buf) = out.offer(op.single_len(material.len()))? else {
            return Ok(());
        };
        let n = op.single(&material, buf).map_err(|e| match e {
            Error::DataLenRange => refuse(
                Error::KeyNotWrappable,
                "the mechanism cannot take a key of this length",
            ),
            e => e,
        })?;
        out.truncate(n);
        log!(
            self.log,
            Level::Info,
            "session {h}: wrapped {} under {} with {}",
            target.describe(),
            wk.describe(),
            row.name
        );
        Ok(())
    }

    /// `C_UnwrapKey`: decrypts a wrapped secret key or PKCS#8 private key
    /// into a new key object described by the template. Unwrapped keys are
    /// never local nor "always sensitive", and unextractable unless the
    /// template asks otherwise.
    pub fn unwrap_key(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        // The unwrapped key, its parsed form and copies: key region.
        secret::scope(|| self.unwrap_key_inner(h, mech, unwrapping, wrapped, template))
    }

    fn unwrap_key_inner(
        &self,
        h: CK_SESSION_HANDLE,
        mech: &MechanismArg,
        unwrapping: CK_OBJECT_HANDLE,
        wrapped: &[u8],
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let row = mechanism::lookup(mech.ty)?;
        let build = row
            .cipher
            .filter(|_| row.flags & CKF_UNWRAP != 0)
            .ok_or(Error::MechanismInvalid)?;
        let uk = self
            .usable_key(&s, unwrapping, mech, row, CKA_UNWRAP, "C_UnwrapKey")
            .map_err(|e| match e {
                Error::KeyHandleInvalid => Error::UnwrappingKeyHandleInvalid,
                Error::KeyTypeInconsistent => Error::UnwrappingKeyTypeInconsistent,
                e => e,
            })?;
        let (actor, id) = {
            let t = s.slot.token.read();
            (Self::actor(&t)?, Self::new_store_id()?)
        };
        let template = Self::with_key_template(template, &uk, CKA_UNWRAP_TEMPLATE)?;
        let template = &template[..];
        let mut attrs = policy::build(template, &[], Origin::Unwrap, actor, &unique_id(id))
            .inspect_err(|e| self.refused(&s, actor.policy, "C_UnwrapKey", *e, template))?;
        let mut op = build(&mech.param, &uk, Dir::Decrypt)?;
        let mut plain = zeroize::Zeroizing::new(vec![0u8; op.single_len(wrapped.len())]);
        let n = op.single(wrapped, &mut plain).map_err(|e| {
            log!(
                self.log,
                Level::Info,
                "session {h}: C_UnwrapKey with {} under {} failed: {e}",
                row.name,
                uk.describe()
            );
            match e {
                Error::EncryptedDataLenRange | Error::DataLenRange => Error::WrappedKeyLenRange,
                Error::EncryptedDataInvalid => Error::WrappedKeyInvalid,
                e => e,
            }
        })?;
        plain.truncate(n);
        if mech.ty == CKM_AES_KEY_WRAP {
            // Undo C_WrapKey's zero padding: to CKA_VALUE_LEN for a secret
            // key, to the DER length for a PKCS#8 private key.
            let private = matches!(
                attrs.get(&CKA_CLASS),
                Some(ferrohsm_store::AttrValue::Ulong(c)) if *c as CK_ULONG == CKO_PRIVATE_KEY
            );
            let keep = match attrs.get(&CKA_VALUE_LEN) {
                _ if private => der_len(&plain),
                Some(ferrohsm_store::AttrValue::Ulong(l)) => Some(*l as usize),
                _ => None,
            };
            if let Some(keep) = keep.filter(|&k| k <= plain.len()) {
                if plain[keep..].iter().any(|&b| b != 0) {
                    return Err(Error::WrappedKeyInvalid);
                }
                plain.truncate(keep);
            }
        }
        let class = attrs.get(&CKA_CLASS).cloned();
        let kt = attrs.get(&CKA_KEY_TYPE).cloned();
        use ferrohsm_store::AttrValue as V;
        match (class, kt) {
            (Some(V::Ulong(c)), Some(V::Ulong(kt))) if c as CK_ULONG == CKO_SECRET_KEY => {
                let kt = kt as CK_KEY_TYPE;
                let ok = match kt {
                    CKK_AES => matches!(plain.len(), 16 | 24 | 32),
                    _ => (1..=mechanism::MAX_SECRET_LEN).contains(&plain.len()),
                };
                if !ok {
                    return Err(Error::WrappedKeyInvalid);
                }
                if matches!(attrs.get(&CKA_VALUE_LEN), Some(V::Ulong(l)) if *l as usize != plain.len())
                {
                    return Err(Error::TemplateInconsistent);
                }
                policy::set_secret_value(&mut attrs, kt, &plain)?;
            }
            (Some(V::Ulong(c)), Some(V::Ulong(kt))) if c as CK_ULONG == CKO_PRIVATE_KEY => {
                let parsed = match kt as CK_KEY_TYPE {
                    CKK_RSA => mechanism::rsa::from_pkcs8(&plain)?,
                    CKK_EC => mechanism::ec::from_pkcs8(&plain)?,
                    _ => return Err(Error::TemplateInconsistent),
                };
                for (ty, v) in parsed {
                    if ty == CKA_EC_PARAMS && attrs.get(&ty).is_some_and(|given| *given != v) {
                        return Err(Error::TemplateInconsistent);
                    }
                    attrs.insert(ty, v);
                }
            }
            _ => return Err(Error::TemplateInconsistent),
        }
        let mut t = s.slot.token.write();
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_UnwrapKey", Some(mech.ty))?;
        log!(
            self.log,
            Level::Info,
            "session {h}: unwrapped key {handle} with {} under {}",
            row.name,
            uk.describe()
        );
        Ok(handle)
    }

    /// `C_GenerateRandom`: bytes from the OS CSPRNG.
    pub fn generate_random(&self, h: CK_SESSION_HANDLE, out: &mut [u8]) -> Result<()> {
        self.session(h)?;
        getrandom::fill(out).map_err(|e| {
            log!(self.log, Level::Error, "OS random generator failed: {e}");
            Error::DeviceError
        })
    }

    /// `C_SeedRandom`: the OS CSPRNG takes no seed from applications, so the
    /// answer is `CKR_RANDOM_SEED_NOT_SUPPORTED` (on a valid session).
    pub fn seed_random(&self, h: CK_SESSION_HANDLE) -> Result<()> {
        self.session(h)?;
        Err(Error::RandomSeedNotSupported)
    }
}

fn pin_flags(failures: u32, max: u32, [low, final_try, locked]: [CK_FLAGS; 3]) -> CK_FLAGS {
    if failures >= max {
        locked
    } else if failures + 1 == max {
        low | final_try
    } else if failures > 0 {
        low
    } else {
        0
    }
}

/// The total length of the DER SEQUENCE at the start of `b`, if it is one.
fn der_len(b: &[u8]) -> Option<usize> {
    match b {
        [0x30, l, ..] if *l < 0x80 => Some(2 + *l as usize),
        [0x30, 0x81, l, ..] => Some(3 + *l as usize),
        [0x30, 0x82, h, l, ..] => Some(4 + (usize::from(*h) << 8 | usize::from(*l))),
        _ => None,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests;

/// The `CKR_*` name of a call's outcome, for audit events.
fn result_name<T>(r: &Result<T>) -> String {
    match r {
        Ok(_) => "CKR_OK".into(),
        Err(e) => e.name().into(),
    }
}

/// Seconds since the Unix epoch.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
