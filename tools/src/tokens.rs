//! Token commands through the module: `init`, `tokens`, `objects`, `delete`,
//! `set-pin`.

use std::collections::BTreeMap;

use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use ferrohsm_pkcs11::module::{MAX_PIN_LEN, MIN_PIN_LEN};
use serde::Serialize;

use crate::out::{self, hex};
use crate::p11::{Fail, Hsm, Result, auth, ck};
use crate::pin::{self, Source};
use crate::select;
use crate::{DeleteArgs, InitArgs, InitPinArgs, ObjectsArgs, Policy, SetPinArgs, TokensArgs};

/// Refuses a PIN the module would refuse, before anything is changed.
pub fn check_pin_len(what: &str, pin: &str) -> Result<()> {
    if (MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
        Ok(())
    } else {
        Err(Fail::Msg(format!(
            "the {what} must be {MIN_PIN_LEN} to {MAX_PIN_LEN} bytes long (CKR_PIN_LEN_RANGE)"
        )))
    }
}

/// Runs this same command again in a child whose environment names `policy`
/// in `FERROHSM_POLICY` (the module reads it at `C_Initialize`; this program
/// does not change its own environment).
fn rerun_with_policy(policy: &str) -> Result<()> {
    let exe = std::env::current_exe().map_err(|e| format!("cannot find this program: {e}"))?;
    let status = std::process::Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env("FERROHSM_POLICY", policy)
        .status()
        .map_err(|e| format!("cannot run this program again: {e}"))?;
    match status.code() {
        Some(0) => Ok(()),
        Some(c) => Err(Fail::Exit(u8::try_from(c).unwrap_or(1))),
        None => Err(Fail::Msg(format!("init was interrupted ({status})"))),
    }
}

/// The store's data directory and the key policies of its tokens, by slot
/// (best effort: `None` and empty if the store cannot be read).
fn store_view() -> (Option<String>, BTreeMap<u64, &'static str>) {
    use ferrohsm_store::Store;
    match crate::archive::open_store() {
        Ok((config, store)) => (
            Some(config.data_dir.display().to_string()),
            store
                .tokens()
                .map(|ts| ts.iter().map(|t| (t.slot_id, t.policy.name())).collect())
                .unwrap_or_default(),
        ),
        Err(_) => (None, BTreeMap::new()),
    }
}

/// `ferrohsm init`.
pub fn init(a: &InitArgs) -> Result<()> {
    out::token_label(&a.label)?;
    if let Some(p) = a.policy {
        let want = match p {
            Policy::Hsm => "hsm",
            Policy::Spec => "spec",
        };
        if std::env::var("FERROHSM_POLICY").ok().as_deref() != Some(want) {
            return rerun_with_policy(want);
        }
    }
    let hsm = Hsm::load()?;
    let slots = hsm.slots()?;
    if let Some(s) = slots
        .iter()
        .find(|s| s.info.token_initialized() && s.info.label() == a.label)
    {
        return Err(Fail::Msg(format!(
            "a token labelled {:?} already exists (slot {})",
            a.label,
            s.slot.id()
        )));
    }
    let spare = slots
        .iter()
        .rev()
        .find(|s| !s.info.token_initialized())
        .ok_or("the module offers no free slot")?
        .slot;
    let so = pin::new(
        &format!("new SO PIN for token {:?}", a.label),
        Source::from_so(&a.so),
    )?;
    check_pin_len("SO PIN", &so)?;
    let user = pin::new(
        &format!("new user PIN for token {:?}", a.label),
        Source::from_user(&a.pin),
    )?;
    check_pin_len("user PIN", &user)?;
    hsm.p11
        .init_token(spare, &auth(&so), &a.label)
        .map_err(ck(format!("initialising token {:?}", a.label)))?;
    let set_user = || -> Result<()> {
        let session = hsm
            .p11
            .open_rw_session(spare)
            .map_err(ck("opening a session"))?;
        session
            .login(UserType::So, Some(&auth(&so)))
            .map_err(ck("SO login"))?;
        session
            .init_pin(&auth(&user))
            .map_err(ck("setting the user PIN"))?;
        session.logout().map_err(ck("SO logout"))
    };
    set_user().map_err(|f| match f {
        Fail::Msg(m) => Fail::Msg(format!(
            "token {:?} was initialised in slot {}, but {m}",
            a.label,
            spare.id()
        )),
        other => other,
    })?;
    let info = hsm
        .p11
        .get_token_info(spare)
        .map_err(ck("reading token info"))?;
    let policy = store_view().1.get(&spare.id()).copied().unwrap_or("?");
    out::stdout(&format!(
        "initialised token {:?} in slot {}: serial {}, key policy {policy}\n",
        a.label,
        spare.id(),
        info.serial_number()
    ))
}

/// PIN and state flags of a token, as `tokens --json` reports them.
#[derive(Serialize)]
struct Flags {
    initialized: bool,
    user_pin_initialized: bool,
    user_pin_count_low: bool,
    user_pin_final_try: bool,
    user_pin_locked: bool,
    so_pin_count_low: bool,
    so_pin_final_try: bool,
    so_pin_locked: bool,
}

#[derive(Serialize)]
struct SlotView {
    slot: u64,
    initialized: bool,
    label: Option<String>,
    serial: Option<String>,
    policy: Option<&'static str>,
    flags: Flags,
    /// Objects visible without login (public objects only).
    public_objects: Option<usize>,
}

#[derive(Serialize)]
struct TokensView {
    module: String,
    data_dir: Option<String>,
    slots: Vec<SlotView>,
    note: &'static str,
}

const COUNT_NOTE: &str = "object counts are of public objects only (listed without login)";

/// `ferrohsm tokens`.
pub fn list(a: &TokensArgs) -> Result<()> {
    let hsm = Hsm::load()?;
    let (data_dir, policies) = store_view();
    let mut slots = Vec::new();
    for s in hsm.slots()? {
        let i = &s.info;
        let init = i.token_initialized();
        let public_objects = if init {
            hsm.p11
                .open_ro_session(s.slot)
                .and_then(|ses| ses.find_objects(&[]))
                .ok()
                .map(|v| v.len())
        } else {
            None
        };
        slots.push(SlotView {
            slot: s.slot.id(),
            initialized: init,
            label: init.then(|| i.label().to_string()),
            serial: init.then(|| i.serial_number().to_string()),
            policy: policies.get(&s.slot.id()).copied(),
            flags: Flags {
                initialized: init,
                user_pin_initialized: i.user_pin_initialized(),
                user_pin_count_low: i.user_pin_count_low(),
                user_pin_final_try: i.user_pin_final_try(),
                user_pin_locked: i.user_pin_locked(),
                so_pin_count_low: i.so_pin_count_low(),
                so_pin_final_try: i.so_pin_final_try(),
                so_pin_locked: i.so_pin_locked(),
            },
            public_objects,
        });
    }
    let view = TokensView {
        module: hsm.module.display().to_string(),
        data_dir,
        slots,
        note: COUNT_NOTE,
    };
    if a.json {
        return out::json(&view);
    }
    let mut rows = vec![vec![
        "SLOT".to_string(),
        "LABEL".into(),
        "SERIAL".into(),
        "POLICY".into(),
        "OBJECTS".into(),
        "FLAGS".into(),
    ]];
    for s in &view.slots {
        if !s.initialized {
            rows.push(vec![s.slot.to_string(), "(free: ferrohsm init)".into()]);
            continue;
        }
        let f = &s.flags;
        let names = [
            (f.user_pin_initialized, "user-pin-set"),
            (!f.user_pin_initialized, "NO-USER-PIN"),
            (f.user_pin_count_low, "user-pin-count-low"),
            (f.user_pin_final_try, "user-pin-final-try"),
            (f.user_pin_locked, "USER-PIN-LOCKED"),
            (f.so_pin_count_low, "so-pin-count-low"),
            (f.so_pin_final_try, "so-pin-final-try"),
            (f.so_pin_locked, "SO-PIN-LOCKED"),
        ];
        let flags: Vec<&str> = names
            .iter()
            .filter(|(on, _)| *on)
            .map(|(_, n)| *n)
            .collect();
        rows.push(vec![
            s.slot.to_string(),
            s.label.clone().unwrap_or_default(),
            s.serial.clone().unwrap_or_default(),
            s.policy.unwrap_or("?").to_string(),
            s.public_objects
                .map_or_else(|| "?".to_string(), |n| n.to_string()),
            flags.join(","),
        ]);
    }
    let mut text = format!("module: {}\n", view.module);
    if let Some(d) = &view.data_dir {
        text.push_str(&format!("data directory: {d}\n"));
    }
    text.push_str(&out::table(&rows));
    text.push_str(&format!("note: {COUNT_NOTE}\n"));
    out::stdout(&text)
}

/// One object as `objects` shows it. Never a value.
#[derive(Serialize)]
pub struct ObjectView {
    class: String,
    key_type: Option<String>,
    label: String,
    id: String,
    size: Option<String>,
    usage: Vec<&'static str>,
    private: Option<bool>,
    sensitive: Option<bool>,
    extractable: Option<bool>,
    local: Option<bool>,
    /// The object's RFC 7512 URI (token, id, label, type), for OpenSSL & co.
    uri: String,
    /// `CKA_UNIQUE_ID` (not shown; `delete` finds the stored record by it).
    #[serde(skip)]
    unique_id: Option<String>,
}

/// The name `objects` and `pending` give a class (`private-key`, ...).
pub fn class_name(c: ObjectClass) -> String {
    match c {
        ObjectClass::SECRET_KEY => "secret-key".into(),
        ObjectClass::PRIVATE_KEY => "private-key".into(),
        ObjectClass::PUBLIC_KEY => "public-key".into(),
        ObjectClass::CERTIFICATE => "certificate".into(),
        ObjectClass::DATA => "data".into(),
        other => other.to_string(),
    }
}

/// `class_name` of a stored `CKA_CLASS` value.
pub fn class_word(c: u64) -> String {
    ObjectClass::try_from(c).map_or_else(|_| format!("class {c:#x}"), class_name)
}

/// The name `objects` gives a stored `CKA_KEY_TYPE` value (`EC`, `RSA`, `AES`).
pub fn key_type_word(k: u64) -> String {
    cryptoki::object::KeyType::try_from(k).map_or_else(
        |_| format!("key type {k:#x}"),
        |t| t.to_string().trim_start_matches("CKK_").to_string(),
    )
}

/// The curve of DER `CKA_EC_PARAMS`, by name.
pub fn curve_name(params: &[u8]) -> String {
    match params {
        p if p == crate::import::P256_OID => "P-256".into(),
        p if p == crate::import::P384_OID => "P-384".into(),
        p if p == crate::import::P521_OID => "P-521".into(),
        // By OID or by PrintableString (as OpenSC names it).
        p if p == crate::import::ED25519_OID || p == b"\x13\x0cedwards25519" => "Ed25519".into(),
        [0x06, 0x03, 0x2b, 0x65, 0x6e] | b"\x13\x0acurve25519" => "X25519".into(),
        p => format!("curve {}", hex(p)),
    }
}

/// Reads the listing attributes of one object.
pub fn describe(session: &Session, h: ObjectHandle) -> Result<ObjectView> {
    use AttributeType as T;
    let attrs = session
        .get_attributes(
            h,
            &[
                T::Class,
                T::KeyType,
                T::Label,
                T::Id,
                T::ValueLen,
                T::Modulus,
                T::EcParams,
                T::Encrypt,
                T::Decrypt,
                T::Sign,
                T::Verify,
                T::Wrap,
                T::Unwrap,
                T::Derive,
                T::Private,
                T::Sensitive,
                T::Extractable,
                T::Local,
                T::UniqueId,
            ],
        )
        .map_err(ck("reading object attributes"))?;
    let mut v = ObjectView {
        class: "?".into(),
        key_type: None,
        label: String::new(),
        id: String::new(),
        size: None,
        usage: Vec::new(),
        private: None,
        sensitive: None,
        extractable: None,
        local: None,
        uri: String::new(),
        unique_id: None,
    };
    for a in attrs {
        match a {
            Attribute::Class(c) => v.class = class_name(c),
            Attribute::KeyType(k) => {
                v.key_type = Some(k.to_string().trim_start_matches("CKK_").to_string());
            }
            Attribute::Label(l) => v.label = String::from_utf8_lossy(&l).into_owned(),
            Attribute::Id(i) => v.id = hex(&i),
            Attribute::ValueLen(n) => v.size = Some(format!("{}-bit", u64::from(n) * 8)),
            Attribute::Modulus(m) => {
                let first = m.iter().position(|&b| b != 0).unwrap_or(m.len());
                let bits = (m.len() - first) * 8;
                v.size = Some(format!("{bits}-bit"));
            }
            Attribute::EcParams(p) => v.size = Some(curve_name(&p)),
            Attribute::Encrypt(true) => v.usage.push("encrypt"),
            Attribute::Decrypt(true) => v.usage.push("decrypt"),
            Attribute::Sign(true) => v.usage.push("sign"),
            Attribute::Verify(true) => v.usage.push("verify"),
            Attribute::Wrap(true) => v.usage.push("wrap"),
            Attribute::Unwrap(true) => v.usage.push("unwrap"),
            Attribute::Derive(true) => v.usage.push("derive"),
            Attribute::Private(b) => v.private = Some(b),
            Attribute::Sensitive(b) => v.sensitive = Some(b),
            Attribute::Extractable(b) => v.extractable = Some(b),
            Attribute::Local(b) => v.local = Some(b),
            Attribute::UniqueId(u) => v.unique_id = Some(String::from_utf8_lossy(&u).into_owned()),
            _ => {}
        }
    }
    Ok(v)
}

/// `ferrohsm objects`.
pub fn objects(a: &ObjectsArgs) -> Result<()> {
    let hsm = Hsm::load()?;
    let entry = hsm.find_token(&a.token)?;
    let session = hsm.user_session(&a.token, false, &a.pin)?;
    let handles = session.find_objects(&[]).map_err(ck("listing objects"))?;
    let mut views = handles
        .into_iter()
        .map(|h| describe(&session, h))
        .collect::<Result<Vec<_>>>()?;
    for v in &mut views {
        let id = crate::hex_bytes(&v.id).unwrap_or_default();
        v.uri = select::object_uri(
            entry.info.label(),
            entry.info.serial_number(),
            &id,
            &v.label,
            &v.class,
        );
    }
    views.sort_by(|x, y| (&x.label, &x.class, &x.id).cmp(&(&y.label, &y.class, &y.id)));
    if a.json {
        return out::json(&views);
    }
    let mut rows = vec![vec![
        "CLASS".to_string(),
        "TYPE".into(),
        "SIZE".into(),
        "LABEL".into(),
        "ID".into(),
        "USAGE".into(),
        "FLAGS".into(),
    ]];
    for v in &views {
        let flags: Vec<&str> = [
            (v.private == Some(true), "private"),
            (v.sensitive == Some(true), "sensitive"),
            (v.extractable == Some(true), "extractable"),
            (v.extractable == Some(false), "non-extractable"),
            (v.local == Some(true), "local"),
        ]
        .iter()
        .filter(|(on, _)| *on)
        .map(|(_, n)| *n)
        .collect();
        rows.push(vec![
            v.class.clone(),
            v.key_type.clone().unwrap_or_else(|| "-".into()),
            v.size.clone().unwrap_or_else(|| "-".into()),
            v.label.clone(),
            if v.id.is_empty() {
                "-".into()
            } else {
                v.id.clone()
            },
            if v.usage.is_empty() {
                "-".into()
            } else {
                v.usage.join(",")
            },
            flags.join(","),
        ]);
    }
    // Each object's URI on a line of its own under it, to copy whole (it is
    // long, and would widen the table).
    let table = out::table(&rows);
    let mut lines = table.lines();
    let mut text = lines.next().map(|h| format!("{h}\n")).unwrap_or_default();
    for (line, v) in lines.zip(&views) {
        text.push_str(&format!("{line}\n  {}\n", v.uri));
    }
    text.push_str(&format!(
        "{} object(s) on token {:?}; each URI names it for OpenSSL and p11tool\n",
        views.len(),
        a.token
    ));
    out::stdout(&text)
}

/// The objects with `label` (and `id`, if given) visible in `session`.
pub fn find_labelled(
    session: &Session,
    label: &str,
    id: Option<&[u8]>,
    class: Option<ObjectClass>,
) -> Result<Vec<ObjectHandle>> {
    let mut template = vec![Attribute::Label(label.as_bytes().to_vec())];
    if let Some(id) = id {
        template.push(Attribute::Id(id.to_vec()));
    }
    if let Some(c) = class {
        template.push(Attribute::Class(c));
    }
    session
        .find_objects(&template)
        .map_err(ck("searching objects"))
}

/// `ferrohsm delete`. On an `hsm` token with a deletion waiting period the
/// module schedules private and secret keys (and the public key of a pair)
/// for deletion instead of deleting them: say so, with the date and how to
/// cancel.
pub fn delete(a: &DeleteArgs) -> Result<()> {
    let hsm = Hsm::load()?;
    let entry = hsm.find_token(&a.token)?;
    let session = hsm.user_session(&a.token, true, &a.pin)?;
    let found = find_labelled(
        &session,
        &a.label,
        a.id.as_ref().map(|h| h.0.as_slice()),
        None,
    )?;
    if found.is_empty() {
        return Err(Fail::Msg(format!(
            "no object labelled {:?}{} on token {:?}",
            a.label,
            a.id.as_ref()
                .map_or_else(String::new, |i| format!(" with id {}", hex(&i.0))),
            a.token
        )));
    }
    use ferrohsm_store::Store;
    let (config, store) = crate::archive::open_store()?;
    let slot = entry.slot.id();
    let waits = !config.deletion_wait.is_zero()
        && store
            .token(slot)
            .ok()
            .flatten()
            .is_some_and(|t| t.policy == ferrohsm_store::KeyPolicy::Hsm);
    // Private and secret keys first: the public key of a pair then sees its
    // private key scheduled, whatever the order of the handles.
    let mut views = found
        .iter()
        .map(|h| Ok((*h, describe(&session, *h)?)))
        .collect::<Result<Vec<_>>>()?;
    views.sort_by_key(|(_, v)| v.class == "public-key" || v.class == "certificate");
    let mut text = String::new();
    let mut scheduled = false;
    for (h, v) in views {
        let due = unix_now() + config.deletion_wait.as_secs();
        session
            .destroy_object(h)
            .map_err(ck(format!("deleting {} {:?}", v.class, a.label)))?;
        let what = format!(
            "{}{} {:?}",
            v.class,
            v.key_type
                .as_deref()
                .map_or_else(String::new, |k| format!(" ({k})")),
            v.label
        );
        let at = match v.class.as_str() {
            "private-key" | "secret-key" if waits => Some(due),
            // A public key is scheduled with its private key: its record
            // (readable without the storage key) says whether it was.
            "public-key" if waits => scheduled_at(&store, slot, v.unique_id.as_deref()),
            _ => None,
        };
        match at {
            Some(at) => {
                scheduled = true;
                text.push_str(&format!(
                    "scheduled {what} for deletion on {}\n",
                    crate::lifecycle::time_of(at)
                ));
            }
            None => text.push_str(&format!("deleted {what}\n")),
        }
    }
    if scheduled {
        text.push_str(&format!(
            "until then the key is invisible and unusable; cancel with \
             `ferrohsm cancel-deletion {} --label {}`\n",
            a.token.flag(),
            select::shell_word(&a.label)
        ));
    }
    out::stdout(&text)
}

/// When the stored public object with `CKA_UNIQUE_ID` `unique_id` is to be
/// purged, if it is scheduled for deletion.
fn scheduled_at(
    store: &ferrohsm_store::SledStore,
    slot: u64,
    unique_id: Option<&str>,
) -> Option<u64> {
    use ferrohsm_store::Store;
    // The module's CKA_UNIQUE_ID is the record's store id in hex.
    let id = u64::from_str_radix(unique_id?, 16).ok()?;
    store
        .objects(slot, None)
        .ok()?
        .into_iter()
        .find(|r| r.id == id)?
        .delete_at()
}

/// Unix seconds now.
fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `ferrohsm set-pin`.
pub fn set_pin(a: &SetPinArgs) -> Result<()> {
    if !a.so && (a.so_pin.so_pin_env.is_some() || a.so_pin.so_pin_file.is_some()) {
        crate::usage_error(
            "set-pin",
            "--so-pin-env/--so-pin-file name the old SO PIN: add --so",
        );
    }
    let hsm = Hsm::load()?;
    let session = hsm.session(&a.token, true)?;
    let role = if a.so { "SO" } else { "user" };
    let old = if a.so {
        pin::existing(
            &format!("current SO PIN for token {:?}", a.token),
            Source::from_so(&a.so_pin),
        )?
    } else {
        pin::existing(
            &format!("current user PIN for token {:?}", a.token),
            Source::from_user(&a.pin),
        )?
    };
    let new = pin::new(
        &format!("new {role} PIN for token {:?}", a.token),
        Source::from_new(&a.new_pin),
    )?;
    check_pin_len(&format!("new {role} PIN"), &new)?;
    if a.so {
        session
            .login(UserType::So, Some(&auth(&old)))
            .map_err(ck(format!("SO login to token {:?}", a.token)))?;
    }
    session
        .set_pin(&auth(&old), &auth(&new))
        .map_err(ck(format!(
            "changing the {role} PIN of token {:?}",
            a.token
        )))?;
    if a.so {
        let _ = session.logout();
    }
    out::stdout(&format!("{role} PIN of token {:?} changed\n", a.token))
}

/// `ferrohsm init-pin`: the SO sets a new user PIN (`C_InitPIN`), which also
/// clears the user PIN's failure count: the way out of a user lockout.
pub fn init_pin(a: &InitPinArgs) -> Result<()> {
    let hsm = Hsm::load()?;
    let session = hsm.session(&a.token, true)?;
    let so = pin::existing(
        &format!("SO PIN for token {:?}", a.token),
        Source::from_so(&a.so_pin),
    )?;
    let new = pin::new(
        &format!("new user PIN for token {:?}", a.token),
        Source::from_new(&a.new_pin),
    )?;
    check_pin_len("new user PIN", &new)?;
    session
        .login(UserType::So, Some(&auth(&so)))
        .map_err(ck(format!("SO login to token {:?}", a.token)))?;
    session
        .init_pin(&auth(&new))
        .map_err(ck(format!("setting the user PIN of token {:?}", a.token)))?;
    let _ = session.logout();
    out::stdout(&format!(
        "user PIN of token {:?} set by the SO (a locked PIN is unlocked)\n",
        a.token
    ))
}
