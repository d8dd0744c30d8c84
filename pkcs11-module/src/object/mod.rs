//! Objects: an attribute set with a handle, shared by `Arc` and replaced, never
//! mutated, so an operation holding a key keeps a consistent view of it without
//! holding any lock.
#![forbid(unsafe_code)]

pub mod attrs;
pub mod cert;
pub mod policy;
pub mod rules;
pub mod template;

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, ObjectRecord};

use attrs::{Attrs, get_bool};

/// One object of a token (token object) or of a session (session object).
#[derive(Debug)]
pub struct Object {
    /// The handle applications use.
    pub handle: CK_OBJECT_HANDLE,
    /// Identifier in the store (and in `CKA_UNIQUE_ID`), never reused.
    pub store_id: u64,
    /// The session that owns a session object; `None` for token objects.
    pub owner: Option<CK_SESSION_HANDLE>,
    /// All attributes, as the policy built them.
    pub attrs: Attrs,
    /// Cipher state derived from the key value (e.g. an AES key schedule),
    /// built at first use and kept with this version of the object.
    pub cache: KeyCache,
}

/// Per-object cache of derived key state; empty for a new object version.
#[derive(Default)]
pub struct KeyCache(std::sync::OnceLock<std::sync::Arc<dyn std::any::Any + Send + Sync>>);

impl KeyCache {
    /// The cached value, if built.
    pub fn get(&self) -> Option<&std::sync::Arc<dyn std::any::Any + Send + Sync>> {
        self.0.get()
    }

    /// Stores a value unless another thread stored one first.
    pub fn set(&self, v: std::sync::Arc<dyn std::any::Any + Send + Sync>) -> bool {
        self.0.set(v).is_ok()
    }
}

impl std::fmt::Debug for KeyCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.get().is_some() {
            "KeyCache(<built>)"
        } else {
            "KeyCache(<empty>)"
        })
    }
}

impl Object {
    /// `CKA_TOKEN`.
    pub fn is_token(&self) -> bool {
        get_bool(&self.attrs, CKA_TOKEN)
    }

    /// `CKA_PRIVATE`.
    pub fn is_private(&self) -> bool {
        get_bool(&self.attrs, CKA_PRIVATE)
    }

    /// Whether the stored record is sealed under the storage key: private
    /// objects, and secret and private keys whatever their `CKA_PRIVATE`, since
    /// no key material rests on disk in the clear.
    pub fn is_sealed(&self) -> bool {
        self.is_private()
            || matches!(
                self.ulong(CKA_CLASS),
                Some(CKO_SECRET_KEY) | Some(CKO_PRIVATE_KEY)
            )
    }

    /// Whether only a user session may see it: private objects, and sealed
    /// token objects, which exist in memory only while the storage key does
    /// (a public token secret key is visible, and usable, once the user has
    /// logged in; SoftHSMv2 likewise cannot use it before).
    pub fn needs_user(&self) -> bool {
        self.is_private() || (self.is_token() && self.is_sealed())
    }

    /// A boolean attribute (FALSE when absent).
    pub fn flag(&self, ty: CK_ATTRIBUTE_TYPE) -> bool {
        get_bool(&self.attrs, ty)
    }

    /// A `CK_ULONG` attribute.
    pub fn ulong(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<CK_ULONG> {
        match self.attrs.get(&ty) {
            Some(AttrValue::Ulong(v)) => Some(*v as CK_ULONG),
            _ => None,
        }
    }

    /// A byte-string attribute.
    pub fn bytes(&self, ty: CK_ATTRIBUTE_TYPE) -> Option<&[u8]> {
        match self.attrs.get(&ty) {
            Some(AttrValue::Bytes(b)) => Some(b),
            _ => None,
        }
    }

    /// A short description for log lines: handle, class and label; never values.
    pub fn describe(&self) -> String {
        let label = self
            .bytes(CKA_LABEL)
            .map(String::from_utf8_lossy)
            .unwrap_or_default();
        format!(
            "object {} (class {:#x}, label {:?})",
            self.handle,
            self.ulong(CKA_CLASS).unwrap_or(0),
            label
        )
    }

    /// The record the store keeps for a token object.
    pub fn to_record(&self) -> ObjectRecord {
        ObjectRecord {
            id: self.store_id,
            private: self.is_sealed(),
            attrs: self.attrs.iter().map(|(k, v)| ((*k), v.clone())).collect(),
        }
    }

    /// A token object loaded from the store under a (new or remembered) handle.
    pub fn from_record(handle: CK_OBJECT_HANDLE, rec: &ObjectRecord) -> Object {
        Object {
            handle,
            store_id: rec.id,
            owner: None,
            attrs: rec
                .attrs
                .iter()
                .map(|(k, v)| (*k as CK_ATTRIBUTE_TYPE, v.clone()))
                .collect(),
            cache: KeyCache::default(),
        }
    }
}

/// The `CKA_UNIQUE_ID` text of a store id.
pub fn unique_id(store_id: u64) -> String {
    format!("{store_id:016x}")
}
