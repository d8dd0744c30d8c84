//! Slots and the tokens in them: `Slot`, `Token` (login state, storage key,
//! object cache with its label/id index) and `Login`.
#![forbid(unsafe_code)]

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use cryptoki_sys::*;
use ferrohsm_store::{StorageKey, TokenRecord};
use parking_lot::{Mutex, RwLock};

use crate::session::Ops;

use crate::error::{Error, Result};
use crate::object::Object;

/// A token's in-memory state.
pub struct Token {
    /// The stored record; `None` for the spare, uninitialised token.
    pub record: Option<TokenRecord>,
    /// Who is logged in.
    pub login: Login,
    /// The storage key, present while someone is logged in.
    pub(super) key: Option<StorageKey>,
    /// Visible objects by handle (token objects and session objects).
    pub(super) objects: Objects,
    /// Handles already given to public token objects, by store id.
    pub(super) handles: HashMap<u64, CK_OBJECT_HANDLE>,
    /// The store's generation this cache reflects; `None` when unknown (then
    /// the next `refresh` reloads).
    pub(super) generation: Option<u64>,
    /// Generations made by this process's writes that came back before an
    /// earlier one of them (see `Module::adopt_own_write`).
    pub(super) own_writes: std::collections::BTreeSet<u64>,
    /// How many times the token objects were loaded from the store, so a
    /// writer that let the lock go can tell whether a load ran meanwhile.
    pub(super) loads: u64,
    /// Sessions open on this token.
    pub(super) sessions: u64,
    /// Of which read/write.
    pub(super) rw_sessions: u64,
}

impl Token {
    pub(super) fn spare() -> Token {
        Token {
            record: None,
            login: Login::Public,
            key: None,
            objects: Objects::default(),
            handles: HashMap::new(),
            generation: None,
            own_writes: Default::default(),
            loads: 0,
            sessions: 0,
            rw_sessions: 0,
        }
    }

    /// An object the current login may see, or `CKR_OBJECT_HANDLE_INVALID`.
    pub(super) fn object(&self, handle: CK_OBJECT_HANDLE) -> Result<Arc<Object>> {
        match self.objects.get(&handle) {
            Some(o) if !o.needs_user() || self.login == Login::User => Ok(o.clone()),
            _ => Err(Error::ObjectHandleInvalid),
        }
    }

    pub(super) fn record(&self) -> Result<&TokenRecord> {
        self.record.as_ref().ok_or(Error::TokenNotRecognized)
    }
}

/// The attributes `C_FindObjects` can look up without scanning every object:
/// what clients search by (v3.0 §5.7; OpenSSL, p11-kit and the XKS proxy find
/// keys by label or id).
pub(super) const INDEXED: [CK_ATTRIBUTE_TYPE; 2] = [CKA_LABEL, CKA_ID];

/// A token's objects by handle, with an index of their labels and ids so that
/// finding one object among many costs a hash lookup, not a scan.
#[derive(Default)]
pub(super) struct Objects {
    pub(super) map: HashMap<CK_OBJECT_HANDLE, Arc<Object>>,
    pub(super) index:
        HashMap<(CK_ATTRIBUTE_TYPE, Vec<u8>), std::collections::BTreeSet<CK_OBJECT_HANDLE>>,
    /// Session objects by owning session, so that `C_CloseSession` destroys
    /// its own without scanning every token object.
    pub(super) owned: HashMap<CK_SESSION_HANDLE, std::collections::BTreeSet<CK_OBJECT_HANDLE>>,
}

impl Objects {
    pub(super) fn keys(o: &Object) -> impl Iterator<Item = (CK_ATTRIBUTE_TYPE, Vec<u8>)> + '_ {
        INDEXED
            .iter()
            .filter_map(|ty| o.bytes(*ty).map(|v| (*ty, v.to_vec())))
    }

    pub(super) fn unindex(&mut self, o: &Object) {
        for k in Self::keys(o) {
            if let Some(set) = self.index.get_mut(&k) {
                set.remove(&o.handle);
                if set.is_empty() {
                    self.index.remove(&k);
                }
            }
        }
    }

    pub(super) fn get(&self, h: &CK_OBJECT_HANDLE) -> Option<&Arc<Object>> {
        self.map.get(h)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &Arc<Object>> {
        self.map.values()
    }

    pub(super) fn insert(&mut self, h: CK_OBJECT_HANDLE, o: Arc<Object>) {
        self.remove(&h);
        for k in Self::keys(&o) {
            self.index.entry(k).or_default().insert(h);
        }
        if let Some(s) = o.owner {
            self.owned.entry(s).or_default().insert(h);
        }
        self.map.insert(h, o);
    }

    pub(super) fn remove(&mut self, h: &CK_OBJECT_HANDLE) -> Option<Arc<Object>> {
        let o = self.map.remove(h)?;
        self.unindex(&o);
        if let Some(s) = o.owner
            && let Some(set) = self.owned.get_mut(&s)
        {
            set.remove(h);
            if set.is_empty() {
                self.owned.remove(&s);
            }
        }
        Some(o)
    }

    /// Destroys the session objects of session `s` (at its close); costs
    /// nothing when it made none.
    pub(super) fn remove_owned_by(&mut self, s: CK_SESSION_HANDLE) {
        for h in self.owned.remove(&s).unwrap_or_default() {
            if let Some(o) = self.map.remove(&h) {
                self.unindex(&o);
            }
        }
    }

    pub(super) fn retain(&mut self, mut keep: impl FnMut(&CK_OBJECT_HANDLE, &Arc<Object>) -> bool) {
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
    pub(super) fn with(&self, ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> Vec<&Arc<Object>> {
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
    pub(super) login_seen: AtomicU8,
    /// Serialises `C_Login` on this token, PIN KDF included: of many threads
    /// logging in at once one runs the KDF and the others then find the
    /// login done (`CKR_USER_ALREADY_LOGGED_IN`) instead of each running
    /// Argon2 (100 threads x 19 MiB); failure counting is exact as a bonus.
    pub(super) login_gate: parking_lot::Mutex<()>,
}

impl Slot {
    pub(super) fn new(id: CK_SLOT_ID) -> Slot {
        Slot {
            id,
            token: RwLock::new(Token::spare()),
            login_seen: AtomicU8::new(0),
            login_gate: parking_lot::Mutex::new(()),
        }
    }

    /// Sets who is logged in, in the token and in its mirror.
    pub(super) fn set_login(&self, t: &mut Token, who: Login) {
        t.login = who;
        self.login_seen.store(who as u8, Ordering::Relaxed);
    }

    /// Who is logged in, for audit events: "public", "user" or "so".
    pub(super) fn user_name(&self) -> &'static str {
        match self.login_seen.load(Ordering::Relaxed) {
            1 => "user",
            2 => "so",
            _ => "public",
        }
    }
}

/// Who is logged in to a token (login is per application, for all its sessions).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Login {
    /// Nobody.
    Public,
    /// The normal user.
    User,
    /// The security officer.
    So,
}

/// `CKS_*` for a login state and session kind.
pub fn state(login: Login, rw: bool) -> CK_STATE {
    match (login, rw) {
        (Login::Public, false) => CKS_RO_PUBLIC_SESSION,
        (Login::Public, true) => CKS_RW_PUBLIC_SESSION,
        (Login::User, false) => CKS_RO_USER_FUNCTIONS,
        (Login::User, true) => CKS_RW_USER_FUNCTIONS,
        // An SO is never logged in while read-only sessions exist.
        (Login::So, _) => CKS_RW_SO_FUNCTIONS,
    }
}

/// An open session.
pub struct Session {
    /// Its handle.
    pub handle: CK_SESSION_HANDLE,
    /// The slot (and token) it belongs to.
    pub slot: Arc<Slot>,
    /// Read/write session (`CKF_RW_SESSION`).
    pub rw: bool,
    /// Active operations; locked for the duration of one call on this session,
    /// which serialises threads sharing a session.
    pub ops: Mutex<Ops>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn states() {
        assert_eq!(state(Login::Public, false), CKS_RO_PUBLIC_SESSION);
        assert_eq!(state(Login::User, true), CKS_RW_USER_FUNCTIONS);
        assert_eq!(state(Login::So, true), CKS_RW_SO_FUNCTIONS);
    }

    fn obj(handle: CK_OBJECT_HANDLE, owner: Option<CK_SESSION_HANDLE>) -> Arc<Object> {
        Arc::new(Object {
            handle,
            store_id: handle,
            owner,
            attrs: [(
                CKA_LABEL,
                ferrohsm_store::AttrValue::Bytes(b"same".to_vec()),
            )]
            .into_iter()
            .collect(),
            cache: Default::default(),
        })
    }

    #[test]
    fn closing_a_session_removes_exactly_its_objects() {
        let mut objects = Objects::default();
        objects.insert(1, obj(1, None));
        objects.insert(2, obj(2, Some(10)));
        objects.insert(3, obj(3, Some(10)));
        objects.insert(4, obj(4, Some(11)));
        // Replacing an object (a new version) keeps the index right.
        objects.insert(3, obj(3, Some(10)));
        objects.remove(&2);
        objects.remove_owned_by(10);
        let mut left: Vec<_> = objects.map.keys().copied().collect();
        left.sort_unstable();
        assert_eq!(left, [1, 4]);
        let mut labelled: Vec<_> = objects
            .with(CKA_LABEL, b"same")
            .iter()
            .map(|o| o.handle)
            .collect();
        labelled.sort_unstable();
        assert_eq!(labelled, [1, 4], "the label index follows");
        assert!(!objects.owned.contains_key(&10));
        objects.remove_owned_by(11);
        objects.remove_owned_by(12);
        assert_eq!(objects.map.len(), 1);
        assert!(objects.owned.is_empty());
    }
}
