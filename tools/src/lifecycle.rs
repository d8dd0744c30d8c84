//! Key lifecycle commands that need the token's storage key and therefore
//! work on the store directly (as `backup` does): `audit verify`/`show`,
//! `pending`, `cancel-deletion`, `rotate-storage-key`. Every PIN check is
//! counted as a login would be, and every change is recorded in the token's
//! audit log.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ferrohsm_pkcs11::config::Config;
use ferrohsm_store::access;
use ferrohsm_store::attr::{
    CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_LABEL, CKO_PRIVATE_KEY, CKO_PUBLIC_KEY,
};
use ferrohsm_store::audit::{AuditLine, parse_time, rfc3339};
use ferrohsm_store::backup::{self, BackupError, PinRole};
use ferrohsm_store::{
    AttrValue, AuditEvent, AuditKey, AuditObject, CKA_FERROHSM_DELETE_AT, ObjectRecord, SledStore,
    StorageKey, Store, TokenRecord,
};
use serde::Serialize;

use crate::archive::{explain, find_token, open_store};
use crate::out::{self, hex};
use crate::p11::{Fail, Result};
use crate::pin::{self, Source};
use crate::select::TokenArgs;
use crate::tokens::{class_word, key_type_word};
use crate::{
    AuditShowArgs, AuditVerifyArgs, CancelDeletionArgs, PendingArgs, PinArgs, RotateArgs, SoPinArgs,
};

/// The storage key, opened with the SO PIN when an `--so-pin-*` flag is
/// given, else with the user PIN (from its flags or a prompt).
fn open_key(
    config: &Config,
    store: &SledStore,
    token: &TokenRecord,
    label: &TokenArgs,
    user: &PinArgs,
    so: &SoPinArgs,
) -> Result<(TokenRecord, StorageKey)> {
    let (role, pin) = if so.so_pin_env.is_some() || so.so_pin_file.is_some() {
        let p = pin::existing(&format!("SO PIN for token {label:?}"), Source::from_so(so))?;
        (PinRole::So, p)
    } else {
        let p = pin::existing(
            &format!("user PIN for token {label:?}"),
            Source::from_user(user),
        )?;
        (PinRole::User, p)
    };
    backup::open_with_pin(
        store,
        token.slot_id,
        role,
        pin.as_bytes(),
        config.max_login_failures,
    )
    .map_err(|e| {
        let why = explain(&e);
        let why = match role {
            PinRole::User => why.replace("SO PIN", "user PIN"),
            PinRole::So => why,
        };
        Fail::Msg(format!("token {label:?}: {why}"))
    })
}

/// The token's audit root, opened with its storage key.
fn audit_root(
    token: &TokenRecord,
    key: &StorageKey,
    label: &dyn std::fmt::Debug,
) -> Result<AuditKey> {
    let sealed = token.audit_root.as_ref().ok_or_else(|| {
        Fail::Msg(format!(
            "token {label:?} has no audit log yet (made before audit logs existed; \
             the first login through the module starts one)"
        ))
    })?;
    AuditKey::open(sealed, key, &token.token_id).map_err(|_| {
        Fail::Msg(format!(
            "token {label:?}: the audit root does not open with the storage key (damaged)"
        ))
    })
}

/// Appends one event made by this tool to the token's audit log.
fn record(store: &SledStore, slot: u64, event: AuditEvent) -> Result<()> {
    store
        .audit(slot, &[event])
        .map_err(|e| Fail::Msg(format!("writing the audit log: {e}")))
}

/// `ferrohsm audit verify`.
pub fn audit_verify(a: &AuditVerifyArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    let (token, key) = open_key(&config, &store, &token, &a.token, &a.pin, &a.so)?;
    let root = audit_root(&token, &key, &a.token)?;
    let report = store
        .audit_log(token.slot_id)
        .verify(&root)
        .map_err(|e| Fail::Msg(format!("audit log of token {:?}: {e}", a.token)))?;
    if a.json {
        #[derive(Serialize)]
        struct Bad<'a> {
            file: &'a str,
            line: u64,
            seq: Option<u64>,
            reason: &'a str,
        }
        #[derive(Serialize)]
        struct Report<'a> {
            token: &'a str,
            lines: u64,
            files: usize,
            intact: bool,
            first_bad: Option<Bad<'a>>,
        }
        out::json(&Report {
            token: &out::padded(&token.label),
            lines: report.lines,
            files: report.files,
            intact: report.first_bad.is_none(),
            first_bad: report.first_bad.as_ref().map(|b| Bad {
                file: &b.file,
                line: b.line,
                seq: b.seq,
                reason: &b.reason,
            }),
        })?;
    }
    match report.first_bad {
        None => {
            if !a.json {
                out::stdout(&format!(
                    "audit log of token {:?}: {} lines in {} file(s), chain intact\n",
                    a.token, report.lines, report.files
                ))?;
            }
            Ok(())
        }
        Some(b) => Err(Fail::Msg(format!(
            "audit log of token {:?} fails verification at {} line {}{}: {}",
            a.token,
            b.file,
            b.line,
            b.seq.map(|s| format!(" (seq {s})")).unwrap_or_default(),
            b.reason
        ))),
    }
}

/// For the demo: verifies a token's audit chain with the user PIN and
/// returns the number of lines and the last `n` events as short text.
pub fn verify_summary(label: &str, user_pin: &str, n: usize) -> Result<(u64, Vec<String>)> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &TokenArgs::labelled(label))?;
    let (token, key) = backup::open_with_pin(
        &store,
        token.slot_id,
        PinRole::User,
        user_pin.as_bytes(),
        config.max_login_failures,
    )
    .map_err(|e| Fail::Msg(explain(&e)))?;
    let root = audit_root(&token, &key, &label)?;
    let log = store.audit_log(token.slot_id);
    let report = log.verify(&root).map_err(|e| Fail::Msg(e.to_string()))?;
    if let Some(b) = report.first_bad {
        return Err(Fail::Msg(format!(
            "audit log fails verification at {} line {}: {}",
            b.file, b.line, b.reason
        )));
    }
    let lines = log.read().map_err(|e| Fail::Msg(e.to_string()))?;
    let last = lines
        .iter()
        .rev()
        .take(n)
        .rev()
        .map(|l| {
            let e = &l.event;
            let what = e.object.as_ref().map(object_text).unwrap_or_default();
            let count = e.count.map(|c| format!(" ×{c}")).unwrap_or_default();
            format!("#{} {} {what}{count} -> {}", l.seq, e.function, e.result)
        })
        .collect();
    Ok((report.lines, last))
}

/// `ferrohsm audit show`: reads the log (no PIN: the lines hold no secret;
/// `audit verify` authenticates them).
pub fn audit_show(a: &AuditShowArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    let since = match &a.since {
        Some(t) => Some(parse_time(t).ok_or_else(|| {
            Fail::Msg(format!(
                "--since {t:?}: use a date (2026-12-03) or an RFC 3339 time (2026-12-03T17:00:00Z)"
            ))
        })?),
        None => None,
    };
    let lines = store
        .audit_log(token.slot_id)
        .read()
        .map_err(|e| Fail::Msg(format!("audit log of token {:?}: {e}", a.token)))?;
    // Events about the key: those naming its label, and those naming only
    // the unique id of an object that had that label (a purge made without
    // the storage key knows no label).
    let label_of = |l: &AuditLine| l.event.object.as_ref().and_then(|o| o.label.clone());
    let uid_of = |l: &AuditLine| l.event.object.as_ref().and_then(|o| o.unique_id.clone());
    let linked: std::collections::BTreeSet<String> = match &a.key {
        Some(k) => lines
            .iter()
            .filter(|l| label_of(l).as_ref() == Some(k))
            .filter_map(uid_of)
            .collect(),
        None => Default::default(),
    };
    let wanted = |l: &&AuditLine| {
        let key_ok = a.key.as_ref().is_none_or(|k| {
            label_of(l).as_ref() == Some(k)
                || (label_of(l).is_none() && uid_of(l).is_some_and(|u| linked.contains(&u)))
        });
        let time_ok = since.is_none_or(|s| {
            // A summary counts from its last use.
            let t = l.event.last.as_deref().unwrap_or(&l.event.time);
            parse_time(t).is_some_and(|t| t >= s)
        });
        key_ok && time_ok
    };
    let shown: Vec<&AuditLine> = lines.iter().filter(wanted).collect();
    if a.json {
        #[derive(Serialize)]
        struct Line<'a> {
            seq: u64,
            #[serde(flatten)]
            event: &'a AuditEvent,
        }
        let v: Vec<Line<'_>> = shown
            .iter()
            .map(|l| Line {
                seq: l.seq,
                event: &l.event,
            })
            .collect();
        return out::json(&v);
    }
    let mut rows = vec![vec![
        "SEQ".into(),
        "TIME".into(),
        "PROCESS".into(),
        "USER".into(),
        "FUNCTION".into(),
        "OBJECT".into(),
        "MECHANISM".into(),
        "RESULT".into(),
        "DETAIL".into(),
    ]];
    for l in &shown {
        let e = &l.event;
        let object = e.object.as_ref().map(object_text).unwrap_or_default();
        let mut detail = e.detail.clone().unwrap_or_default();
        if let Some(n) = e.count {
            detail = format!(
                "{n} call(s) {}..{}; {detail}",
                short(&e.first),
                short(&e.last)
            );
        }
        rows.push(vec![
            l.seq.to_string(),
            e.time.clone(),
            format!("{}[{}]", e.process, e.pid),
            e.user.clone().unwrap_or_default(),
            e.function.clone(),
            object,
            e.mechanism.clone().unwrap_or_default(),
            e.result.clone(),
            detail,
        ]);
    }
    out::stdout(&out::table(&rows))
}

fn short(t: &Option<String>) -> String {
    t.as_deref()
        .and_then(|t| t.split('T').nth(1))
        .unwrap_or("")
        .to_string()
}

fn object_text(o: &AuditObject) -> String {
    let mut parts = Vec::new();
    if let Some(l) = &o.label {
        parts.push(format!("{l:?}"));
    } else if let Some(u) = &o.unique_id {
        parts.push(format!("unique id {u}"));
    }
    if let Some(h) = o.handle {
        parts.push(format!("#{h}"));
    }
    if let Some(k) = &o.key_type {
        parts.push(k.clone());
    }
    parts.join(" ")
}

/// A byte-string attribute of a stored record.
fn bytes(rec: &ObjectRecord, ty: u64) -> Option<&[u8]> {
    match rec.get(ty) {
        Some(AttrValue::Bytes(b)) => Some(b),
        _ => None,
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A Unix time as RFC 3339 UTC.
pub(crate) fn time_of(secs: u64) -> String {
    rfc3339(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Purges the keys whose waiting period is over (as the module does at the
/// next load) and returns the ones still waiting, with their purge time.
fn pending_keys(
    store: &SledStore,
    token: &TokenRecord,
    key: &StorageKey,
) -> Result<Vec<(ObjectRecord, u64)>> {
    let objects = store
        .objects(token.slot_id, Some(key))
        .map_err(|e| Fail::Msg(e.to_string()))?;
    let now = unix_now();
    let mut waiting = Vec::new();
    for o in objects {
        let Some(at) = o.delete_at() else {
            continue;
        };
        if at <= now {
            let r = store.delete_object(token.slot_id, o.id);
            let mut e = AuditEvent::now(
                "purge",
                if r.is_ok() {
                    "CKR_OK"
                } else {
                    "CKR_DEVICE_ERROR"
                },
            );
            e.object = Some(AuditObject::of_record(&o));
            e.detail = Some("deletion waiting period over: key deleted for good".into());
            record(store, token.slot_id, e)?;
            r.map_err(|e| Fail::Msg(format!("purging a key: {e}")))?;
        } else {
            waiting.push((o, at));
        }
    }
    Ok(waiting)
}

/// A stored `CKA_CLASS` or `CKA_KEY_TYPE`.
fn ulong(rec: &ObjectRecord, ty: u64) -> Option<u64> {
    match rec.get(ty) {
        Some(AttrValue::Ulong(v)) => Some(*v),
        _ => None,
    }
}

/// `pending`'s view of a scheduled object, in the words `objects` uses.
#[derive(Serialize)]
struct Pending {
    label: Option<String>,
    id: Option<String>,
    class: Option<String>,
    key_type: Option<String>,
    delete_at: String,
}

impl Pending {
    fn of(o: &ObjectRecord, at: u64) -> Pending {
        Pending {
            label: bytes(o, CKA_LABEL).map(|l| String::from_utf8_lossy(l).into_owned()),
            id: bytes(o, CKA_ID).map(hex),
            class: ulong(o, CKA_CLASS).map(class_word),
            key_type: ulong(o, CKA_KEY_TYPE).map(key_type_word),
            delete_at: time_of(at),
        }
    }
}

/// `ferrohsm pending`.
pub fn pending(a: &PendingArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    let (token, key) = open_key(&config, &store, &token, &a.token, &a.pin, &a.so)?;
    let waiting = pending_keys(&store, &token, &key)?;
    let mut views: Vec<Pending> = waiting.iter().map(|(o, at)| Pending::of(o, *at)).collect();
    // A pair's halves together, the private key first.
    views.sort_by(|x, y| (&x.label, &x.id, &x.class).cmp(&(&y.label, &y.id, &y.class)));
    if a.json {
        return out::json(&views);
    }
    if views.is_empty() {
        return out::stdout(&format!(
            "token {:?}: no key is scheduled for deletion\n",
            a.token
        ));
    }
    let mut rows = vec![vec![
        "LABEL".into(),
        "ID".into(),
        "CLASS".into(),
        "KEY TYPE".into(),
        "DELETION DUE".into(),
    ]];
    for p in views {
        rows.push(vec![
            p.label.unwrap_or_default(),
            p.id.unwrap_or_default(),
            p.class.unwrap_or_default(),
            p.key_type.unwrap_or_default(),
            p.delete_at,
        ]);
    }
    let mut text = out::table(&rows);
    text.push_str(&format!(
        "each is invisible and unusable until then, and deleted for good after; \
         `ferrohsm cancel-deletion {} --label LABEL` restores one (a key pair together)\n",
        a.token.flag()
    ));
    out::stdout(&text)
}

/// Whether `public` is the public half of the pair of `private` (same
/// `CKA_ID` and key type), as the module schedules them together.
fn same_pair(private: &ObjectRecord, public: &ObjectRecord) -> bool {
    ulong(private, CKA_CLASS) == Some(CKO_PRIVATE_KEY)
        && ulong(public, CKA_CLASS) == Some(CKO_PUBLIC_KEY)
        && bytes(private, CKA_ID).is_some_and(|i| !i.is_empty())
        && bytes(private, CKA_ID) == bytes(public, CKA_ID)
        && ulong(private, CKA_KEY_TYPE) == ulong(public, CKA_KEY_TYPE)
}

/// `ferrohsm cancel-deletion`: the key becomes usable and visible again. A
/// key pair is one unit: restoring its private key restores its scheduled
/// public key too (and the other way round).
pub fn cancel_deletion(a: &CancelDeletionArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    let (token, key) = open_key(&config, &store, &token, &a.token, &a.pin, &a.so)?;
    let waiting: Vec<ObjectRecord> = pending_keys(&store, &token, &key)?
        .into_iter()
        .map(|(o, _)| o)
        .collect();
    let id = a.id.as_ref().map(|h| h.0.as_slice());
    let matching: Vec<&ObjectRecord> = waiting
        .iter()
        .filter(|o| bytes(o, CKA_LABEL) == Some(a.label.as_bytes()))
        .filter(|o| id.is_none_or(|i| bytes(o, CKA_ID) == Some(i)))
        .collect();
    // Units: each matching key with the other half of its pair, if that
    // half is scheduled too; a pair matched by both halves counts once.
    let mut units: Vec<Vec<&ObjectRecord>> = Vec::new();
    for o in &matching {
        if units.iter().any(|u| u.iter().any(|r| r.id == o.id)) {
            continue;
        }
        let mut unit = vec![*o];
        unit.extend(
            waiting
                .iter()
                .filter(|r| r.id != o.id && (same_pair(o, r) || same_pair(r, o))),
        );
        units.push(unit);
    }
    let unit = match units.len() {
        0 => {
            return Err(Fail::Msg(format!(
                "token {:?}: no key labelled {:?} is scheduled for deletion \
                 (`ferrohsm pending` lists them; one whose period is over is gone for good)",
                a.token, a.label
            )));
        }
        1 => units.remove(0),
        n => {
            return Err(Fail::Msg(format!(
                "token {:?}: {n} keys labelled {:?} are scheduled for deletion; \
                 name one with --id (ids: {})",
                a.token,
                a.label,
                units
                    .iter()
                    .map(|u| bytes(u[0], CKA_ID).map(hex).unwrap_or_else(|| "-".into()))
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    let mut unit = unit;
    // The private key first, as `delete` lists them.
    unit.sort_by_key(|r| ulong(r, CKA_CLASS) == Some(CKO_PUBLIC_KEY));
    let restored: Vec<ObjectRecord> = unit
        .iter()
        .map(|r| {
            let mut r = (*r).clone();
            r.attrs.retain(|(t, _)| *t != CKA_FERROHSM_DELETE_AT);
            r
        })
        .collect();
    // Both halves in one atomic write: never half a pair back.
    let r = store.put_objects(token.slot_id, &restored, Some(&key));
    for rec in &restored {
        let mut e = AuditEvent::now(
            "ferrohsm cancel-deletion",
            if r.is_ok() {
                "CKR_OK"
            } else {
                "CKR_DEVICE_ERROR"
            },
        );
        e.object = Some(AuditObject::of_record(rec));
        e.detail = Some("deletion cancelled: the key is usable again".into());
        record(&store, token.slot_id, e)?;
    }
    r.map_err(|e| Fail::Msg(format!("restoring the key: {e}")))?;
    let what: Vec<String> = restored
        .iter()
        .map(|r| ulong(r, CKA_CLASS).map_or_else(|| "object".into(), class_word))
        .collect();
    out::stdout(&format!(
        "token {:?}: {} {:?} restored; usable and visible again\n",
        a.token,
        what.join(" and "),
        a.label
    ))
}

/// `ferrohsm rotate-storage-key`: a new storage key, every record re-sealed
/// under it in one atomic store step, new PIN wraps for both PINs (the work
/// itself is `ferrohsm_store::access::rotate_storage_key`).
pub fn rotate(a: &RotateArgs) -> Result<()> {
    let (config, store) = open_store()?;
    let token = find_token(&config, &store, &a.token)?;
    let so_pin = pin::existing(
        &format!("SO PIN for token {:?}", a.token),
        Source::from_so(&a.so),
    )?;
    // Both PINs must wrap the new key, so the user PIN is needed too.
    let user_pin = match &token.user_pin {
        None => None,
        Some(_) => Some(pin::existing(
            &format!("user PIN for token {:?}", a.token),
            Source::from_user(&a.pin),
        )?),
    };
    let rotated = access::rotate_storage_key(
        &store,
        token.slot_id,
        so_pin.as_bytes(),
        user_pin.as_ref().map(|p| p.as_bytes()),
        config.kdf,
        config.max_login_failures,
        &mut |step| crate::keys::with_progress("re-sealing every record", step),
    )
    .map_err(|e| match e {
        access::RotateError::Access(_, access::AccessError::TokenChanged) => Fail::Msg(format!(
            "token {:?} was re-initialised meanwhile; nothing rotated",
            a.token
        )),
        access::RotateError::Access(role, e) => {
            let why = explain(&BackupError::from(e));
            let why = match role {
                PinRole::User => why.replace("SO PIN", "user PIN"),
                PinRole::So => why,
            };
            Fail::Msg(format!("token {:?}: {why}", a.token))
        }
        e => Fail::Msg(format!("token {:?}: {e}", a.token)),
    })?;
    out::stdout(&format!(
        "token {:?}: storage key rotated; {} record(s) re-sealed under the new key\n",
        a.token, rotated.records
    ))
}
