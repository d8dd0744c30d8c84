//! What a line of the audit log records: [`AuditEvent`], and how an object
//! is named in it ([`AuditObject`]: handle, label, id, class, key type,
//! unique id; never a value).
#![forbid(unsafe_code)]

use std::fs;
use std::sync::OnceLock;
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::attr::{CKA_CLASS, CKA_ID, CKA_KEY_TYPE, CKA_LABEL, CKA_UNIQUE_ID};
use crate::record::{AttrValue, ObjectRecord};
use crate::time::rfc3339;

/// One audited event. Fields are written in this order; `None` fields are left out.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditEvent {
    /// When it happened: RFC 3339 UTC with milliseconds.
    pub time: String,
    /// Process ID of the caller.
    pub pid: u32,
    /// Name of the calling process.
    pub process: String,
    /// PKCS#11 session handle, if the call had one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub session: Option<u64>,
    /// Who was logged in: `so`, `user` or `public`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    /// What was done: a PKCS#11 function name or an administrative action.
    pub function: String,
    /// Mechanism name, for calls that take one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mechanism: Option<String>,
    /// The object acted upon.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub object: Option<AuditObject>,
    /// Outcome, as a `CKR_*` name.
    pub result: String,
    /// Key-use summaries: how many calls this line stands for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub count: Option<u64>,
    /// Key-use summaries: time of the first call summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub first: Option<String>,
    /// Key-use summaries: time of the last call summarised.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last: Option<String>,
    /// Free text; never secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
}

/// How an object is named in the audit log; never any value of it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditObject {
    /// Object handle in the session that used it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub handle: Option<u64>,
    /// `CKA_LABEL`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    /// `CKA_ID`, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
    /// `CKO_*` name of the class.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub class: Option<String>,
    /// `CKK_*` name of the key type.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key_type: Option<String>,
    /// `CKA_UNIQUE_ID`: links the events of one object (a purge made without
    /// the storage key can name the object by this alone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub unique_id: Option<String>,
}

impl AuditObject {
    /// What the audit log says about an object with attributes `get`
    /// (handle, label, `CKA_ID` in hex, class, key type, `CKA_UNIQUE_ID`):
    /// never a value. The one description the module and the tool share.
    pub fn describe<'a>(
        handle: Option<u64>,
        get: impl Fn(u64) -> Option<&'a AttrValue>,
    ) -> AuditObject {
        let bytes = |ty| match get(ty) {
            Some(AttrValue::Bytes(b)) => Some(b.as_slice()),
            _ => None,
        };
        let ulong = |ty| match get(ty) {
            Some(AttrValue::Ulong(v)) => Some(*v),
            _ => None,
        };
        let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
        AuditObject {
            handle,
            label: bytes(CKA_LABEL).map(text),
            id: bytes(CKA_ID).map(|b| b.iter().map(|x| format!("{x:02x}")).collect()),
            class: ulong(CKA_CLASS).map(class_name),
            key_type: ulong(CKA_KEY_TYPE).map(key_type_name),
            unique_id: bytes(CKA_UNIQUE_ID).map(text),
        }
    }

    /// [`AuditObject::describe`] of a stored record (no handle: not loaded).
    pub fn of_record(rec: &ObjectRecord) -> AuditObject {
        AuditObject::describe(None, |ty| rec.get(ty))
    }
}

/// `CKO_*` name of an object class.
fn class_name(c: u64) -> String {
    match c {
        0 => "CKO_DATA".into(),
        1 => "CKO_CERTIFICATE".into(),
        2 => "CKO_PUBLIC_KEY".into(),
        3 => "CKO_PRIVATE_KEY".into(),
        4 => "CKO_SECRET_KEY".into(),
        other => format!("CKO_{other:#x}"),
    }
}

/// `CKK_*` name of a key type.
fn key_type_name(k: u64) -> String {
    match k {
        0 => "CKK_RSA".into(),
        3 => "CKK_EC".into(),
        0x10 => "CKK_GENERIC_SECRET".into(),
        0x1f => "CKK_AES".into(),
        other => format!("CKK_{other:#x}"),
    }
}

impl AuditEvent {
    /// An event stamped now with this process's pid and name.
    pub fn now(function: &str, result: &str) -> AuditEvent {
        AuditEvent {
            time: rfc3339(SystemTime::now()),
            pid: std::process::id(),
            process: process_name().to_string(),
            function: function.to_string(),
            result: result.to_string(),
            ..AuditEvent::default()
        }
    }
}

fn process_name() -> &'static str {
    static NAME: OnceLock<String> = OnceLock::new();
    NAME.get_or_init(|| {
        fs::read_to_string("/proc/self/comm")
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .or_else(|| {
                std::env::current_exe()
                    .ok()
                    .and_then(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            })
            .unwrap_or_else(|| "unknown".to_string())
    })
}
