//! `C_CreateObject`, `C_CopyObject`, `C_DestroyObject`, `C_GetObjectSize`,
//! `C_GetAttributeValue`, `C_SetAttributeValue` and `C_FindObjects*`.
#![forbid(unsafe_code)]

use std::sync::Arc;

use parking_lot::RwLockWriteGuard;

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, CKA_FERROHSM_DELETE_AT, KeyPolicy};

use super::auditing::unix_now;
use super::slot::{INDEXED, Login, Session, Token};
use super::state::Module;
use super::token::random_bytes;
use crate::audit::{self};
use crate::error::{Error, Result};
use crate::log;
use crate::logging::Level;
use crate::object::policy::{self, Actor, Edit, Origin};
use crate::object::policy::{RawAttr, Reading};
use crate::object::{Object, unique_id};
use crate::secret;
use crate::session::FindOp;

/// How many of its own writes a token cache may hold back while an earlier
/// one is still in flight before it gives up and reloads.
const MAX_OWN_WRITES: usize = 1024;

/// A refusal by a rule of the `hsm` key policy (logged at `warn` once).
pub(super) struct PolicyRefusal {
    /// One name per rule: refusals of the same kind warn once.
    pub(super) kind: &'static str,
    /// The rule that refused.
    pub(super) why: String,
    /// What the client can do instead.
    pub(super) fix: &'static str,
}

impl Module {
    pub(super) fn actor(t: &Token) -> Result<Actor> {
        Ok(Actor {
            policy: t.record()?.policy,
            so: t.login == Login::So,
        })
    }

    /// The session checks of a call that creates objects from `templates`
    /// (each with whether it makes key material), before any template or
    /// mechanism check: clients test `CKR_SESSION_READ_ONLY` and
    /// `CKR_USER_NOT_LOGGED_IN` first (ARCHITECTURE.md, "Error precedence").
    /// `insert_object` checks the complete attributes again.
    pub(super) fn may_create(&self, s: &Session, templates: &[(&[RawAttr], bool)]) -> Result<()> {
        let flag = |tpl: &[RawAttr], ty| {
            tpl.iter()
                .rev()
                .find(|a| a.ty == ty)
                .map(|a| a.value.iter().any(|&b| b != 0))
        };
        let token = |tpl: &[RawAttr]| flag(tpl, CKA_TOKEN).unwrap_or(false);
        if !s.rw && templates.iter().any(|(tpl, _)| token(tpl)) {
            return Err(Error::SessionReadOnly);
        }
        let needs_user = templates.iter().any(|&(tpl, key_material)| {
            flag(tpl, CKA_PRIVATE).unwrap_or(key_material) || (key_material && token(tpl))
        });
        if needs_user && s.slot.token.read().login != Login::User {
            return Err(Error::UserNotLoggedIn);
        }
        Ok(())
    }

    /// Whether a `C_CreateObject` template makes key material (its class).
    pub(super) fn makes_key_material(template: &[RawAttr]) -> bool {
        template
            .iter()
            .rev()
            .find(|a| a.ty == CKA_CLASS)
            .is_some_and(|a| {
                let class = a
                    .value
                    .as_slice()
                    .try_into()
                    .map(CK_ULONG::from_ne_bytes)
                    .ok();
                matches!(class, Some(CKO_PRIVATE_KEY | CKO_SECRET_KEY))
            })
    }

    /// Inserts a new object, writing token objects to the store first, and
    /// records its creation by `func` (with `mech`) in the audit log.
    ///
    /// The durable write (store and audit log) runs with the token lock let
    /// go, so that the writes of several threads share the store's group
    /// commit and other sessions' calls do not wait for a disk flush. After
    /// it, the lock is taken again and what may have changed meanwhile is
    /// checked (`Self::settle_write`).
    pub(super) fn insert_object(
        &self,
        s: &Session,
        t: &mut RwLockWriteGuard<'_, Token>,
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
        let audit = |r: &Result<CK_OBJECT_HANDLE>| {
            if self.audit.enabled() {
                let mut e = self.event(s, func, r);
                e.mechanism = mech.map(audit::mechanism_name);
                e.object = Some(audit::describe_attrs(r.as_ref().ok().copied(), &obj.attrs));
                if !token_obj {
                    e.detail = Some("session object".into());
                }
                self.audit.record(s.slot.id, e, token_obj && r.is_ok());
            }
        };
        let checked = (|| {
            if token_obj && !s.rw {
                return Err(Error::SessionReadOnly);
            }
            self.key_type_offered(s, t.record()?.policy, &obj.attrs, func)?;
            if obj.needs_user() && t.login != Login::User {
                return Err(Error::UserNotLoggedIn);
            }
            Ok(handle)
        })();
        if checked.is_err() || !token_obj {
            audit(&checked);
            checked?;
            t.objects.insert(handle, Arc::new(obj));
            return Ok(handle);
        }
        // The key is copied for the write; copies of it live in the key region.
        let key = secret::scope(|| t.key.clone());
        let record = obj.to_record();
        let token_id = t.record()?.token_id;
        let loads = t.loads;
        let put = RwLockWriteGuard::unlocked(t, || {
            let put = self
                .store
                .put_object_numbered(s.slot.id, &token_id, &record, key.as_ref());
            if put.is_ok() {
                audit(&Ok(handle));
            }
            put
        });
        drop(key);
        let seq = match put {
            Ok(seq) => seq,
            Err(e) => {
                let e = self.write_failed(&s.slot, t, "writing object", e);
                audit(&Err(e));
                return Err(e);
            }
        };
        self.settle_write(t, obj, token_id, loads, seq)
    }

    /// Brings a token object this thread has just written into the cache,
    /// once the token lock is held again. Meanwhile a reload may have
    /// brought it in already (same store id: its handle is the answer), the
    /// token may have been re-initialised (not inserted), or the user may
    /// have logged out (a private object is stored but not shown, as after
    /// any logout). `seq` is the generation the write made, if known.
    fn settle_write(
        &self,
        t: &mut Token,
        obj: Object,
        token_id: [u8; 16],
        loads: u64,
        seq: Option<u64>,
    ) -> Result<CK_OBJECT_HANDLE> {
        Self::adopt_own_write(t, seq);
        if t.record.as_ref().map(|r| r.token_id) != Some(token_id) {
            return Err(Error::TokenNotRecognized);
        }
        if t.loads != loads
            && let Some(o) = t.objects.map.values().find(|o| o.store_id == obj.store_id)
        {
            return Ok(o.handle);
        }
        let handle = obj.handle;
        if obj.needs_user() && t.login != Login::User {
            return Ok(handle);
        }
        if !obj.needs_user() {
            t.handles.insert(obj.store_id, handle);
        }
        t.objects.insert(handle, Arc::new(obj));
        Ok(handle)
    }

    /// Counts one of this process's writes, which made generation `seq`,
    /// into the cache's generation: the cache stays valid while the
    /// generations it has not seen are all its own. Writes of several
    /// threads may come back out of order; one from another process leaves
    /// a gap, so the next `refresh` reloads.
    fn adopt_own_write(t: &mut Token, seq: Option<u64>) {
        let (Some(mut g), Some(seq)) = (t.generation, seq) else {
            t.generation = None;
            return;
        };
        if seq <= g {
            return;
        }
        t.own_writes.insert(seq);
        while t.own_writes.remove(&(g + 1)) {
            g += 1;
        }
        t.generation = Some(g);
        if t.own_writes.len() > MAX_OWN_WRITES {
            // Too far behind to catch up: reload at the next refresh.
            t.own_writes.clear();
            t.generation = None;
        }
    }

    pub(super) fn new_store_id() -> Result<u64> {
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

    pub(super) fn create_object_inner(
        &self,
        h: CK_SESSION_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        self.may_create(&s, &[(template, Self::makes_key_material(template))])?;
        let id = Self::new_store_id()?;
        // The template is checked and imported keys parsed (RSA arithmetic)
        // with no token lock held, so other sessions' *Init calls do not wait.
        let actor = Self::actor(&s.slot.token.read())?;
        let build = |actor: Actor| {
            policy::build(template, &[], Origin::Create, actor, &unique_id(id)).inspect_err(|e| {
                self.refused(&s, actor.policy, "C_CreateObject", *e, template);
            })
        };
        let mut attrs = build(actor)?;
        let mut t = s.slot.token.write();
        let now = Self::actor(&t)?;
        if now != actor {
            // The login or the token changed meanwhile (rare): check again.
            attrs = build(now)?;
        }
        let handle = self.insert_object(&s, &mut t, attrs, id, "C_CreateObject", None)?;
        log!(
            self.log,
            Level::Debug,
            "session {h}: created object {handle}"
        );
        Ok(handle)
    }

    /// Logs why a template was refused, naming attributes but never values.
    /// A refusal by the token's key policy (see [`Self::policy_refusal`]) is
    /// logged at `warn` the first time of its kind, with the client setting
    /// that avoids it; every other refusal at `info`.
    /// Called with the token locked, so it is handed the policy, never locks.
    pub(super) fn refused(
        &self,
        s: &Session,
        policy: KeyPolicy,
        func: &str,
        e: Error,
        template: &[RawAttr],
    ) {
        match Self::policy_refusal(policy, func, e, template) {
            Some(r) => self.log.warn_once(
                r.kind,
                format_args!(
                    "session {}: {func} refused ({}): this token's key policy is 'hsm': {}; {}",
                    s.handle,
                    e.name(),
                    r.why,
                    r.fix
                ),
            ),
            None => log!(
                self.log,
                Level::Info,
                "session {}: {func} refused: {e}; template {:?}",
                s.handle,
                template
            ),
        }
        if self.audit.enabled() {
            let mut ev = self.event::<()>(s, func, &Err(e));
            let names: Vec<String> = template.iter().map(|a| policy::attr_name(a.ty)).collect();
            ev.detail = Some(format!("policy refusal; template {}", names.join(" ")));
            self.audit.record(s.slot.id, ev, false);
        }
    }

    /// Which rule of the `hsm` key policy refused a template, if one did:
    /// the kind (for [`crate::logging::Logger::warn_once`]), the rule, and
    /// what the client can do about it (README, "Key policies").
    pub(super) fn policy_refusal(
        policy: KeyPolicy,
        func: &str,
        e: Error,
        template: &[RawAttr],
    ) -> Option<PolicyRefusal> {
        if policy != KeyPolicy::Hsm {
            return None;
        }
        let asks = |ty: CK_ATTRIBUTE_TYPE, on: bool| {
            template
                .iter()
                .any(|a| a.ty == ty && a.value.iter().any(|&b| b != 0) == on)
        };
        match e {
            Error::AttributeValueInvalid if asks(CKA_SENSITIVE, false) => Some(PolicyRefusal {
                kind: "hsm-sensitive",
                why: "private and secret keys must be sensitive (CKA_SENSITIVE=FALSE asked)".into(),
                fix: "ask for a sensitive key (pkcs11-tool --sensitive; CKA_SENSITIVE=TRUE), \
                      or use a token made with `ferrohsm init --policy spec`",
            }),
            Error::KeySizeRange => {
                let floors: Vec<&str> = crate::mechanism::key_types::KEY_TYPES
                    .iter()
                    .filter_map(|k| k.hsm_floor.map(|f| f.why))
                    .collect();
                Some(PolicyRefusal {
                    kind: "hsm-key-size",
                    why: floors.join("; "),
                    fix: "ask for a larger key (pkcs11-tool --key-type rsa:2048), \
                          or use a token made with `ferrohsm init --policy spec`",
                })
            }
            Error::AttributeReadOnly
                if matches!(func, "C_SetAttributeValue" | "C_CopyObject")
                    && policy::USAGE.iter().any(|&u| asks(u, true)) =>
            {
                Some(PolicyRefusal {
                    kind: "hsm-usage",
                    why: "a key's usages (CKA_ENCRYPT, CKA_DECRYPT, CKA_SIGN, CKA_WRAP, \
                          CKA_DERIVE, ...) are fixed when it is made and may only be turned off"
                        .into(),
                    fix: "generate a new key with the usages it needs \
                          (pkcs11-tool --usage-sign/--usage-decrypt/--usage-wrap/--usage-derive)",
                })
            }
            _ => None,
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

    pub(super) fn copy_object_inner(
        &self,
        h: CK_SESSION_HANDLE,
        obj: CK_OBJECT_HANDLE,
        template: &[RawAttr],
    ) -> Result<CK_OBJECT_HANDLE> {
        let s = self.session(h)?;
        let mut t = s.slot.token.write();
        let src = t.object(obj)?;
        let to_token = template
            .iter()
            .rev()
            .find(|a| a.ty == CKA_TOKEN)
            .map_or(src.is_token(), |a| a.value.iter().any(|&b| b != 0));
        if to_token && !s.rw {
            return Err(Error::SessionReadOnly);
        }
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
    /// `ferrohsm pending`). The public key of a pair waits with its private
    /// key (`pair_deletion`).
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
                let waits = wait > 0 && t.record()?.policy == KeyPolicy::Hsm;
                let keyish = matches!(o.ulong(CKA_CLASS), Some(CKO_PRIVATE_KEY | CKO_SECRET_KEY));
                let default_at = unix_now().saturating_add(wait);
                let pair_at = if waits && o.ulong(CKA_CLASS) == Some(CKO_PUBLIC_KEY) {
                    self.pair_deletion(s.slot.id, &t, &o, default_at)?
                } else {
                    None
                };
                if (keyish && waits) || pair_at.is_some() {
                    let at = pair_at.unwrap_or(default_at);
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

    /// When the public key `public`, being destroyed on an `hsm` token, is
    /// to be purged with its private key, or `None` if it is not half of a
    /// pair and goes at once. A key pair is one unit in the deletion waiting
    /// period: `cancel-deletion` restores both halves, so the public key of
    /// a private key that is present or scheduled (same `CKA_ID` and key
    /// type, same `CKA_PUBLIC_KEY_INFO` when both have one) is scheduled
    /// too — invisible at once, as `C_DestroyObject` requires, but kept
    /// (with the private key's purge time when that one is scheduled). When
    /// the user is not logged in the private keys cannot be seen: a public
    /// key with a `CKA_ID` is then scheduled, which keeps it recoverable.
    fn pair_deletion(
        &self,
        slot_id: CK_SLOT_ID,
        t: &Token,
        public: &Object,
        default_at: u64,
    ) -> Result<Option<u64>> {
        let Some(id) = public.bytes(CKA_ID).filter(|i| !i.is_empty()) else {
            return Ok(None);
        };
        if t.login != Login::User || t.key.is_none() {
            return Ok(Some(default_at));
        }
        let halves = |o: &Object| {
            o.ulong(CKA_CLASS) == Some(CKO_PRIVATE_KEY)
                && o.bytes(CKA_ID) == Some(id)
                && o.ulong(CKA_KEY_TYPE) == public.ulong(CKA_KEY_TYPE)
                && match (
                    o.bytes(CKA_PUBLIC_KEY_INFO).filter(|i| !i.is_empty()),
                    public.bytes(CKA_PUBLIC_KEY_INFO).filter(|i| !i.is_empty()),
                ) {
                    (Some(a), Some(b)) => a == b,
                    _ => true,
                }
        };
        if t.objects.values().any(|o| o.is_token() && halves(o)) {
            return Ok(Some(default_at));
        }
        let records = self
            .store
            .objects(slot_id, t.key.as_ref())
            .map_err(|e| self.store_error("reading scheduled keys", e))?;
        Ok(records
            .iter()
            .filter_map(|r| Some((r.delete_at()?, r)))
            .filter(|(_, r)| halves(&Object::from_record(0, r)))
            .map(|(at, _)| at)
            .max())
    }

    /// Whether session `s` may change `o`: a token object needs a R/W
    /// session, and the object must allow it (`flag`: `CKA_DESTROYABLE`,
    /// `CKA_MODIFIABLE`).
    pub(super) fn may_change(s: &Session, o: &Object, flag: CK_ATTRIBUTE_TYPE) -> Result<()> {
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
        Ok(policy::revealed_size(&o.attrs))
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

    pub(super) fn get_attributes_inner(
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
}
