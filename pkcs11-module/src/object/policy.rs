//! The attribute policy: what building, changing, reading and finding
//! objects may do with their attributes (`build`, `modify`, `read`,
//! `Query`), reading nothing but the attribute table (`object::rules`), the
//! key-type table (`mechanism::key_types`) and the token's key policy.
//! Template encoding lives in `object::template`; both are re-exported here.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, KeyPolicy};

use crate::error::{Error, Result};
use crate::mechanism::key_types;

use super::attrs::get_ulong;
pub use super::attrs::{Attrs, get_bool};
pub use super::rules::{
    Change, Default, Give, Kind, RULES, Rule, attr_name, class, class_bit, rule_for,
};
pub use super::template::{
    RawAttr, decode, decode_template_value, encode, encode_template, matches_template,
};
use super::template::{decode_template, template_identity};
use class::{CERT, KEYS, PRIV, PUB, SECRET};

/// How an object comes into being; decides which template permission applies
/// and what the token records in `CKA_LOCAL` and friends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Origin {
    /// `C_CreateObject`: the caller supplied the value (an import).
    Create,
    /// Generated inside the token by this mechanism.
    Generate(CK_MECHANISM_TYPE),
    /// Derived inside the token from another key by this mechanism.
    Derive(CK_MECHANISM_TYPE),
    /// `C_UnwrapKey`: the value came in wrapped. Never local, never "always
    /// sensitive", and unextractable unless the template says otherwise.
    Unwrap,
}

/// Who is asking, and under which token policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Actor {
    /// The token's key policy.
    pub policy: KeyPolicy,
    /// The SO is logged in (only the SO may set `CKA_TRUSTED`).
    pub so: bool,
}

/// Class bit and key type of an attribute set (given or stored).
fn identity(attrs: &Attrs) -> Result<(u8, Option<CK_KEY_TYPE>)> {
    let class = get_ulong(attrs, CKA_CLASS).ok_or(Error::TemplateIncomplete)?;
    let cls = class_bit(class).ok_or(Error::AttributeValueInvalid)?;
    let kt = if cls & KEYS != 0 {
        let kt = get_ulong(attrs, CKA_KEY_TYPE).ok_or(Error::TemplateIncomplete)?;
        if key_types::lookup(kt).is_none() {
            return Err(Error::AttributeValueInvalid);
        }
        Some(kt)
    } else {
        None
    };
    Ok((cls, kt))
}

/// Builds the full attribute set of a new object from a caller's template:
/// checks every attribute against the table, applies defaults and the token's
/// key policy, and records the token-computed attributes truthfully.
/// `implied` carries class/key type fixed by a generation mechanism.
pub fn build(
    template: &[RawAttr],
    implied: &[(CK_ATTRIBUTE_TYPE, CK_ULONG)],
    origin: Origin,
    actor: Actor,
    unique_id: &str,
) -> Result<Attrs> {
    let mut attrs = template_identity(template, implied)?;
    let (cls, kt) = identity(&attrs)?;
    for (r, v) in decode_template(template, cls, kt)? {
        let give = match origin {
            Origin::Create => r.create,
            Origin::Generate(_) | Origin::Derive(_) | Origin::Unwrap => r.generate,
        };
        if give == Give::Never && !(r.ty == CKA_CLASS || r.ty == CKA_KEY_TYPE) {
            return Err(Error::AttributeReadOnly);
        }
        attrs.insert(r.ty, v);
    }
    for r in RULES
        .iter()
        .filter(|r| rule_for(r.ty, cls, kt).is_some_and(|x| std::ptr::eq(x, *r)))
    {
        if attrs.contains_key(&r.ty) {
            continue;
        }
        let give = match origin {
            Origin::Create => r.create,
            Origin::Generate(_) | Origin::Derive(_) | Origin::Unwrap => r.generate,
        };
        if give == Give::Required {
            return Err(Error::TemplateIncomplete);
        }
        let key_material = cls & (PRIV | SECRET) != 0;
        let d = match r.default {
            Default::None => None,
            Default::Bool(b) => Some(AttrValue::Bool(b)),
            Default::Ulong(u) => Some(AttrValue::Ulong(u)),
            Default::Empty => Some(match r.kind {
                Kind::Mechanisms => AttrValue::Mechanisms(Vec::new()),
                _ => AttrValue::Bytes(Vec::new()),
            }),
            Default::PrivateIfKeyMaterial => Some(AttrValue::Bool(key_material)),
            Default::SensitiveByPolicy => Some(AttrValue::Bool(actor.policy == KeyPolicy::Hsm)),
            Default::ExtractableByPolicy => Some(AttrValue::Bool(
                actor.policy == KeyPolicy::Spec && origin != Origin::Unwrap,
            )),
        };
        if let Some(d) = d {
            attrs.insert(r.ty, d);
        }
    }
    check_policy(&attrs, cls, actor)?;
    if origin == Origin::Create {
        check_imported_key(&mut attrs, cls, kt)?;
    }
    // Token-computed attributes: what the token knows to be true.
    attrs.insert(
        CKA_UNIQUE_ID,
        AttrValue::Bytes(unique_id.as_bytes().to_vec()),
    );
    if cls & KEYS != 0 {
        let local = matches!(origin, Origin::Generate(_));
        attrs.insert(CKA_LOCAL, AttrValue::Bool(local));
        let mech = match origin {
            Origin::Generate(m) => m,
            Origin::Create | Origin::Derive(_) | Origin::Unwrap => CK_UNAVAILABLE_INFORMATION,
        };
        attrs.insert(CKA_KEY_GEN_MECHANISM, AttrValue::Ulong(mech));
    }
    if cls & (PRIV | SECRET) != 0 {
        // An imported key was outside the token in the clear: it was never
        // "always sensitive", and it has been "extracted" already.
        // Derived keys start like generated ones; `inherit_sensitivity` then
        // takes the base key's history into account.
        let generated = matches!(origin, Origin::Generate(_) | Origin::Derive(_));
        let always_sensitive = generated && get_bool(&attrs, CKA_SENSITIVE);
        let never_extractable = generated && !get_bool(&attrs, CKA_EXTRACTABLE);
        attrs.insert(CKA_ALWAYS_SENSITIVE, AttrValue::Bool(always_sensitive));
        attrs.insert(CKA_NEVER_EXTRACTABLE, AttrValue::Bool(never_extractable));
    }
    Ok(attrs)
}

fn bytes_len(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Option<usize> {
    match attrs.get(&ty) {
        Some(AttrValue::Bytes(b)) => Some(b.len()),
        _ => None,
    }
}

/// Consistency of imported key values, and the lengths the token derives from
/// them (`CKA_VALUE_LEN`, `CKA_CHECK_VALUE`, `CKA_MODULUS_BITS`,
/// `CKA_PUBLIC_KEY_INFO`, RSA CRT components): secret values by their
/// key-type row's lengths and check value, public and private keys by the
/// row's import checks (the mechanism families parse them).
fn check_imported_key(attrs: &mut Attrs, cls: u8, kt: Option<CK_KEY_TYPE>) -> Result<()> {
    match (cls, kt.and_then(key_types::lookup)) {
        (SECRET, Some(row)) => {
            let len = bytes_len(attrs, CKA_VALUE).ok_or(Error::TemplateIncomplete)?;
            if !row.import_len.is_some_and(|ok| ok(len)) {
                return Err(Error::AttributeValueInvalid);
            }
            if get_ulong(attrs, CKA_VALUE_LEN).is_some_and(|v| v as usize != len) {
                return Err(Error::TemplateInconsistent);
            }
            let given = bytes_len(attrs, CKA_CHECK_VALUE)
                .filter(|&n| n > 0)
                .map(|_| attrs[&CKA_CHECK_VALUE].clone());
            let value = match attrs.get(&CKA_VALUE) {
                Some(AttrValue::Bytes(v)) => zeroize::Zeroizing::new(v.clone()),
                _ => return Err(Error::TemplateIncomplete),
            };
            set_secret_value(attrs, row.ty, &value)?;
            // A caller-supplied check value must match the key (v3.0 §4.10).
            if given.is_some_and(|g| Some(&g) != attrs.get(&CKA_CHECK_VALUE)) {
                return Err(Error::AttributeValueInvalid);
            }
        }
        (PUB, Some(row)) => {
            if let Some(check) = row.import_public {
                check(attrs)?;
            }
        }
        (PRIV, Some(row)) => {
            if let Some(check) = row.import_private {
                check(attrs)?;
            }
        }
        (CERT, _) if get_ulong(attrs, CKA_CERTIFICATE_TYPE) == Some(CKC_X_509) => {
            super::cert::check_x509(attrs)?
        }
        _ => {}
    }
    Ok(())
}

/// A derived key was always sensitive / never extractable only if its base
/// key was (PKCS#11 v3.0 §4.10): ANDs the base key's history into `attrs`.
pub fn inherit_sensitivity(attrs: &mut Attrs, base: &Attrs) {
    for ty in [CKA_ALWAYS_SENSITIVE, CKA_NEVER_EXTRACTABLE] {
        let v = get_bool(attrs, ty) && get_bool(base, ty);
        attrs.insert(ty, AttrValue::Bool(v));
    }
}

/// Makes a derived key at least as protected as its bases: sensitive if any
/// base is sensitive, unextractable if any base is unextractable. A template
/// that explicitly asks otherwise is `CKR_TEMPLATE_INCONSISTENT`; otherwise
/// the attribute is raised silently. With `template_decides` (a one-way KDF
/// on a `spec` token: ECDH, HKDF, SP 800-108, whose v3.0 rules let the
/// template set both "to either CK_TRUE or CK_FALSE"), what the template
/// says stands, and only omitted attributes follow the bases.
pub fn protect_like_bases(
    attrs: &mut Attrs,
    template: &[RawAttr],
    bases: &[&crate::object::Object],
    template_decides: bool,
) -> Result<()> {
    let asked = |ty: CK_ATTRIBUTE_TYPE| {
        template
            .iter()
            .find(|a| a.ty == ty)
            .map(|a| a.value.first() == Some(&1))
    };
    if bases.iter().any(|b| get_bool(&b.attrs, CKA_SENSITIVE)) {
        match asked(CKA_SENSITIVE) {
            Some(false) if template_decides => {}
            Some(false) => return Err(Error::TemplateInconsistent),
            _ => {
                attrs.insert(CKA_SENSITIVE, AttrValue::Bool(true));
            }
        }
    }
    let unextractable =
        |a: &Attrs| a.contains_key(&CKA_EXTRACTABLE) && !get_bool(a, CKA_EXTRACTABLE);
    if bases.iter().any(|b| unextractable(&b.attrs)) {
        match asked(CKA_EXTRACTABLE) {
            Some(true) if template_decides => {}
            Some(true) => return Err(Error::TemplateInconsistent),
            _ => {
                attrs.insert(CKA_EXTRACTABLE, AttrValue::Bool(false));
            }
        }
    }
    // As for a generated key, from the final values; `inherit_sensitivity`
    // then takes the bases' history into account.
    let sensitive = get_bool(attrs, CKA_SENSITIVE);
    let never_extractable = !get_bool(attrs, CKA_EXTRACTABLE);
    attrs.insert(CKA_ALWAYS_SENSITIVE, AttrValue::Bool(sensitive));
    attrs.insert(CKA_NEVER_EXTRACTABLE, AttrValue::Bool(never_extractable));
    Ok(())
}

/// Stores a secret key's value with the attributes derived from it
/// (`CKA_VALUE_LEN`, and `CKA_CHECK_VALUE` by the key type's row).
pub fn set_secret_value(attrs: &mut Attrs, kt: CK_KEY_TYPE, value: &[u8]) -> Result<()> {
    let kcv = key_types::check_value(kt, value)?;
    attrs.insert(CKA_VALUE, AttrValue::Bytes(value.to_vec()));
    attrs.insert(CKA_VALUE_LEN, AttrValue::Ulong(value.len() as u64));
    attrs.insert(CKA_CHECK_VALUE, AttrValue::Bytes(kcv.to_vec()));
    Ok(())
}

/// The key policy and the SO-only attributes, on a complete attribute set.
fn check_policy(attrs: &Attrs, cls: u8, actor: Actor) -> Result<()> {
    if cls & (PRIV | SECRET) != 0
        && actor.policy == KeyPolicy::Hsm
        && !get_bool(attrs, CKA_SENSITIVE)
    {
        return Err(Error::AttributeValueInvalid);
    }
    if actor.policy == KeyPolicy::Hsm && below_hsm_floor(attrs).is_some() {
        return Err(Error::KeySizeRange);
    }
    if get_bool(attrs, CKA_TRUSTED) && !actor.so {
        return Err(Error::AttributeReadOnly);
    }
    Ok(())
}

/// Why `hsm` tokens refuse a key this small (the key-type row's floor), or
/// `None` if its size is allowed or not said.
fn below_hsm_floor(attrs: &Attrs) -> Option<&'static str> {
    let kt = get_ulong(attrs, CKA_KEY_TYPE)?;
    let floor = key_types::lookup(kt)?.hsm_floor?;
    ((floor.bits)(attrs)? < floor.min).then_some(floor.why)
}

/// Whether a change from `old` to `new` is allowed by `change`.
fn change_allowed(change: Change, old: Option<&AttrValue>, new: &AttrValue) -> bool {
    if old == Some(new) {
        return true;
    }
    match change {
        Change::Never => false,
        Change::Any => true,
        Change::ToTrue => matches!(new, AttrValue::Bool(true)),
        Change::ToFalse => matches!(new, AttrValue::Bool(false)),
    }
}

/// Which modification is being made.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edit {
    /// `C_CopyObject`: the template applies to the copy.
    Copy,
    /// `C_SetAttributeValue`.
    Set,
}

/// The usage attributes of keys (§4.8–§4.10).
pub const USAGE: &[CK_ATTRIBUTE_TYPE] = &[
    CKA_ENCRYPT,
    CKA_DECRYPT,
    CKA_SIGN,
    CKA_VERIFY,
    CKA_SIGN_RECOVER,
    CKA_VERIFY_RECOVER,
    CKA_WRAP,
    CKA_UNWRAP,
    CKA_DERIVE,
];

/// On `hsm` tokens the usages of a secret or private key are fixed when the
/// key is made and may only be narrowed afterwards (as a cloud KMS fixes a
/// key's usage): turning `CKA_DECRYPT` on for a wrapping key (by
/// `C_SetAttributeValue`, or in a `C_CopyObject` copy with the same value)
/// would let the caller decrypt what the key wrapped.
fn widens_usage(
    actor: Actor,
    cls: u8,
    old: Option<&AttrValue>,
    new: &AttrValue,
    ty: CK_ATTRIBUTE_TYPE,
) -> bool {
    actor.policy == KeyPolicy::Hsm
        && cls & (SECRET | PRIV) != 0
        && USAGE.contains(&ty)
        && matches!(new, AttrValue::Bool(true))
        && old != Some(&AttrValue::Bool(true))
}

/// Applies a copy or set template to existing attributes, as the table allows.
/// `CKA_SENSITIVE` and `CKA_EXTRACTABLE` move only in the safe direction, and
/// the token-computed attributes never move.
pub fn modify(
    existing: &Attrs,
    template: &[RawAttr],
    edit: Edit,
    actor: Actor,
    unique_id: Option<&str>,
) -> Result<Attrs> {
    let (cls, kt) = identity(existing)?;
    let mut attrs = existing.clone();
    for (r, v) in decode_template(template, cls, kt)? {
        let change = match edit {
            Edit::Copy => r.copy,
            Edit::Set => r.set,
        };
        if !change_allowed(change, existing.get(&r.ty), &v) {
            return Err(Error::AttributeReadOnly);
        }
        if r.ty == CKA_TRUSTED && matches!(v, AttrValue::Bool(true)) && !actor.so {
            return Err(Error::AttributeReadOnly);
        }
        if widens_usage(actor, cls, existing.get(&r.ty), &v, r.ty) {
            return Err(Error::AttributeReadOnly);
        }
        attrs.insert(r.ty, v);
    }
    if let Some(id) = unique_id {
        attrs.insert(CKA_UNIQUE_ID, AttrValue::Bytes(id.as_bytes().to_vec()));
    }
    Ok(attrs)
}

/// What `C_GetAttributeValue` may say about one attribute of an object.
#[derive(Debug, PartialEq, Eq)]
pub enum Reading {
    /// The C encoding of the value.
    Value(zeroize::Zeroizing<Vec<u8>>),
    /// Key material of a sensitive or unextractable key.
    Sensitive,
    /// The object has no such attribute.
    Invalid,
}

/// True when the object's key material must not leave the token in the clear.
pub fn is_protected(attrs: &Attrs) -> bool {
    get_bool(attrs, CKA_SENSITIVE)
        || (attrs.contains_key(&CKA_EXTRACTABLE) && !get_bool(attrs, CKA_EXTRACTABLE))
}

/// An approximate size in bytes of an object's attributes, counting only what
/// may be revealed (so the size of key material does not leak through
/// `C_GetObjectSize`).
pub fn revealed_size(attrs: &Attrs) -> usize {
    attrs
        .keys()
        .map(|ty| match read(attrs, *ty) {
            Reading::Value(v) => v.len() + 16,
            _ => 16,
        })
        .sum()
}

/// Reads one attribute as `C_GetAttributeValue` may reveal it.
pub fn read(attrs: &Attrs, ty: CK_ATTRIBUTE_TYPE) -> Reading {
    let Ok((cls, kt)) = identity(attrs) else {
        return Reading::Invalid;
    };
    let Some(v) = attrs.get(&ty) else {
        return Reading::Invalid;
    };
    if rule_for(ty, cls, kt).is_some_and(|r| r.secret) && is_protected(attrs) {
        return Reading::Sensitive;
    }
    Reading::Value(zeroize::Zeroizing::new(encode(v)))
}

/// A find template decoded once, so objects are compared by typed value in
/// place rather than by encoding each of their attributes.
pub struct Query(Vec<(CK_ATTRIBUTE_TYPE, Option<AttrValue>, bool)>);

impl Query {
    /// Decodes a template. An attribute the module does not know, or a value
    /// not of its type, can match no object.
    pub fn new(template: &[RawAttr]) -> Query {
        Query(
            template
                .iter()
                .map(|t| {
                    let rule = RULES.iter().find(|r| r.ty == t.ty);
                    let value = rule.and_then(|r| decode(r.kind, &t.value).ok());
                    let secret = RULES.iter().any(|r| r.ty == t.ty && r.secret);
                    (t.ty, value, secret)
                })
                .collect(),
        )
    }

    /// True when every template attribute equals the object's. Key material of
    /// a protected key never matches: a find must not be an oracle for it.
    pub fn matches(&self, attrs: &Attrs) -> bool {
        self.0.iter().all(|(ty, want, secret)| {
            let Some(want) = want else { return false };
            if attrs.get(ty) != Some(want) {
                return false;
            }
            !*secret || read(attrs, *ty) != Reading::Sensitive
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    /// A self-signed P-256 certificate for CN=ferrohsm-test (openssl req -x509).
    const CERT_DER: &[u8] = &[
        0x30, 0x82, 0x01, 0x84, 0x30, 0x82, 0x01, 0x2b, 0xa0, 0x03, 0x02, 0x01, 0x02, 0x02, 0x14,
        0x14, 0xf9, 0x00, 0x94, 0xae, 0x56, 0x3b, 0xe5, 0x27, 0x95, 0xfc, 0x14, 0x5d, 0x39, 0x98,
        0xff, 0x4f, 0xe3, 0x33, 0x16, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04,
        0x03, 0x02, 0x30, 0x18, 0x31, 0x16, 0x30, 0x14, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x0d,
        0x66, 0x65, 0x72, 0x72, 0x6f, 0x68, 0x73, 0x6d, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x30, 0x1e,
        0x17, 0x0d, 0x32, 0x36, 0x31, 0x32, 0x30, 0x33, 0x31, 0x35, 0x30, 0x37, 0x31, 0x36, 0x5a,
        0x17, 0x0d, 0x33, 0x36, 0x31, 0x31, 0x33, 0x30, 0x31, 0x35, 0x30, 0x37, 0x31, 0x36, 0x5a,
        0x30, 0x18, 0x31, 0x16, 0x30, 0x14, 0x06, 0x03, 0x55, 0x04, 0x03, 0x0c, 0x0d, 0x66, 0x65,
        0x72, 0x72, 0x6f, 0x68, 0x73, 0x6d, 0x2d, 0x74, 0x65, 0x73, 0x74, 0x30, 0x59, 0x30, 0x13,
        0x06, 0x07, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x03, 0x01, 0x07, 0x03, 0x42, 0x00, 0x04, 0x8f, 0x53, 0xf8, 0x85, 0x98, 0x25, 0xf4,
        0xb4, 0x21, 0xc3, 0x44, 0x59, 0x69, 0x2b, 0xeb, 0x87, 0xdf, 0x4d, 0xa8, 0xb4, 0x32, 0xcc,
        0x38, 0xb1, 0x00, 0xc2, 0x4f, 0x49, 0xde, 0xae, 0x64, 0xd9, 0x37, 0x8c, 0x3d, 0xdf, 0x76,
        0xc0, 0xa4, 0x15, 0xb6, 0x7a, 0x72, 0xfc, 0xe1, 0xb2, 0xf3, 0x98, 0xc4, 0xc0, 0xd8, 0x53,
        0xbc, 0xa9, 0x41, 0x1e, 0xdd, 0xfa, 0x55, 0x8d, 0x51, 0xa5, 0x90, 0xe8, 0xa3, 0x53, 0x30,
        0x51, 0x30, 0x1d, 0x06, 0x03, 0x55, 0x1d, 0x0e, 0x04, 0x16, 0x04, 0x14, 0xe3, 0xc3, 0x44,
        0x73, 0xeb, 0x40, 0xdc, 0x5c, 0x23, 0xff, 0x30, 0x5a, 0x25, 0xa5, 0x56, 0xd5, 0x91, 0x60,
        0x5a, 0x68, 0x30, 0x1f, 0x06, 0x03, 0x55, 0x1d, 0x23, 0x04, 0x18, 0x30, 0x16, 0x80, 0x14,
        0xe3, 0xc3, 0x44, 0x73, 0xeb, 0x40, 0xdc, 0x5c, 0x23, 0xff, 0x30, 0x5a, 0x25, 0xa5, 0x56,
        0xd5, 0x91, 0x60, 0x5a, 0x68, 0x30, 0x0f, 0x06, 0x03, 0x55, 0x1d, 0x13, 0x01, 0x01, 0xff,
        0x04, 0x05, 0x30, 0x03, 0x01, 0x01, 0xff, 0x30, 0x0a, 0x06, 0x08, 0x2a, 0x86, 0x48, 0xce,
        0x3d, 0x04, 0x03, 0x02, 0x03, 0x47, 0x00, 0x30, 0x44, 0x02, 0x20, 0x3b, 0x2e, 0xab, 0xcd,
        0x82, 0x43, 0x17, 0xff, 0x15, 0xca, 0x39, 0xe3, 0x23, 0x47, 0x37, 0x85, 0xb0, 0x7d, 0x30,
        0xcc, 0xa3, 0xfe, 0xd3, 0x03, 0x71, 0x79, 0x33, 0x0b, 0xe7, 0x8f, 0xd5, 0x00, 0x02, 0x20,
        0x5c, 0x67, 0x71, 0x12, 0x36, 0x42, 0xcd, 0x0d, 0xbb, 0x6a, 0xf0, 0x82, 0xdd, 0x06, 0x4e,
        0x60, 0xb5, 0xb4, 0x13, 0x65, 0x8d, 0x17, 0xd0, 0xc1, 0x60, 0x67, 0x2d, 0x80, 0xd6, 0xe1,
        0x77, 0x6c,
    ];

    const HSM: Actor = Actor {
        policy: KeyPolicy::Hsm,
        so: false,
    };
    const SPEC: Actor = Actor {
        policy: KeyPolicy::Spec,
        so: false,
    };

    fn aes_template(extra: &[RawAttr]) -> Vec<RawAttr> {
        let mut t = vec![
            RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
            RawAttr::ulong(CKA_KEY_TYPE, CKK_AES),
            RawAttr::new(CKA_VALUE, &[7u8; 32]),
        ];
        t.extend_from_slice(extra);
        t
    }

    #[test]
    fn hsm_policy_makes_keys_sensitive_and_unextractable() {
        let a = build(&aes_template(&[]), &[], Origin::Create, HSM, "u1").unwrap();
        assert!(get_bool(&a, CKA_SENSITIVE));
        assert!(!get_bool(&a, CKA_EXTRACTABLE));
        assert!(get_bool(&a, CKA_PRIVATE));
        assert_eq!(read(&a, CKA_VALUE), Reading::Sensitive);
        // Imported: not local, not always sensitive, not never-extractable.
        assert!(!get_bool(&a, CKA_LOCAL));
        assert!(!get_bool(&a, CKA_ALWAYS_SENSITIVE));
        assert!(!get_bool(&a, CKA_NEVER_EXTRACTABLE));
        let e = build(
            &aes_template(&[RawAttr::bool(CKA_SENSITIVE, false)]),
            &[],
            Origin::Create,
            HSM,
            "u",
        )
        .unwrap_err();
        assert_eq!(e, Error::AttributeValueInvalid);
    }

    #[test]
    fn spec_policy_uses_spec_defaults() {
        let a = build(&aes_template(&[]), &[], Origin::Create, SPEC, "u1").unwrap();
        assert!(!get_bool(&a, CKA_SENSITIVE));
        assert!(get_bool(&a, CKA_EXTRACTABLE));
        assert_eq!(
            read(&a, CKA_VALUE),
            Reading::Value(zeroize::Zeroizing::new(vec![7u8; 32]))
        );
    }

    #[test]
    fn generated_keys_record_their_history() {
        let t = vec![RawAttr::new(CKA_LABEL, b"k")];
        let implied = [(CKA_CLASS, CKO_SECRET_KEY), (CKA_KEY_TYPE, CKK_AES)];
        let a = build(&t, &implied, Origin::Generate(CKM_AES_KEY_GEN), HSM, "u").unwrap();
        assert!(get_bool(&a, CKA_LOCAL));
        assert!(get_bool(&a, CKA_ALWAYS_SENSITIVE));
        assert!(get_bool(&a, CKA_NEVER_EXTRACTABLE));
        assert_eq!(
            a.get(&CKA_KEY_GEN_MECHANISM),
            Some(&AttrValue::Ulong(CKM_AES_KEY_GEN))
        );
        // The caller may not supply the value of a key the token generates.
        let t = vec![RawAttr::new(CKA_VALUE, &[1; 16])];
        assert_eq!(
            build(&t, &implied, Origin::Generate(CKM_AES_KEY_GEN), HSM, "u").unwrap_err(),
            Error::AttributeReadOnly
        );
    }

    #[test]
    fn template_errors() {
        // Missing class.
        assert_eq!(
            build(
                &[RawAttr::new(CKA_LABEL, b"x")],
                &[],
                Origin::Create,
                SPEC,
                "u"
            )
            .unwrap_err(),
            Error::TemplateIncomplete
        );
        // Missing value of a secret key.
        let t = vec![
            RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
            RawAttr::ulong(CKA_KEY_TYPE, CKK_AES),
        ];
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::TemplateIncomplete
        );
        // An attribute the class does not have.
        let t = aes_template(&[RawAttr::new(CKA_MODULUS, b"n")]);
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeTypeInvalid
        );
        // A wrongly sized boolean.
        let t = aes_template(&[RawAttr::new(CKA_TOKEN, &[1, 0])]);
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeValueInvalid
        );
        // Read-only attribute in a create template.
        let t = aes_template(&[RawAttr::bool(CKA_LOCAL, true)]);
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeReadOnly
        );
        // Contradiction.
        let t = aes_template(&[
            RawAttr::bool(CKA_TOKEN, true),
            RawAttr::bool(CKA_TOKEN, false),
        ]);
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::TemplateInconsistent
        );
        // Unknown class and key type.
        let t = vec![RawAttr::ulong(CKA_CLASS, 0x7777)];
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeValueInvalid
        );
        // Only the SO may mark a key trusted.
        let t = aes_template(&[RawAttr::bool(CKA_TRUSTED, true)]);
        assert_eq!(
            build(&t, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeReadOnly
        );
        assert!(
            build(
                &t,
                &[],
                Origin::Create,
                Actor {
                    policy: KeyPolicy::Spec,
                    so: true
                },
                "u"
            )
            .is_ok()
        );
    }

    #[test]
    fn sensitivity_moves_only_the_safe_way() {
        let a = build(&aes_template(&[]), &[], Origin::Create, SPEC, "u").unwrap();
        let up = modify(
            &a,
            &[RawAttr::bool(CKA_SENSITIVE, true)],
            Edit::Set,
            SPEC,
            None,
        )
        .unwrap();
        assert!(get_bool(&up, CKA_SENSITIVE));
        assert_eq!(
            modify(
                &up,
                &[RawAttr::bool(CKA_SENSITIVE, false)],
                Edit::Set,
                SPEC,
                None
            )
            .unwrap_err(),
            Error::AttributeReadOnly
        );
        let down = modify(
            &a,
            &[RawAttr::bool(CKA_EXTRACTABLE, false)],
            Edit::Copy,
            SPEC,
            Some("u2"),
        )
        .unwrap();
        assert_eq!(
            modify(
                &down,
                &[RawAttr::bool(CKA_EXTRACTABLE, true)],
                Edit::Copy,
                SPEC,
                None
            )
            .unwrap_err(),
            Error::AttributeReadOnly
        );
        // Token-computed and structural attributes never change.
        assert_eq!(
            modify(&a, &[RawAttr::bool(CKA_LOCAL, true)], Edit::Set, SPEC, None).unwrap_err(),
            Error::AttributeReadOnly
        );
        assert_eq!(
            modify(
                &a,
                &[RawAttr::ulong(CKA_CLASS, CKO_DATA)],
                Edit::Set,
                SPEC,
                None
            )
            .unwrap_err(),
            Error::AttributeReadOnly
        );
        assert_eq!(
            modify(
                &a,
                &[RawAttr::new(CKA_VALUE, &[0; 32])],
                Edit::Set,
                SPEC,
                None
            )
            .unwrap_err(),
            Error::AttributeReadOnly
        );
        // Labels are free to change.
        let l = modify(
            &a,
            &[RawAttr::new(CKA_LABEL, b"new")],
            Edit::Set,
            SPEC,
            None,
        )
        .unwrap();
        assert_eq!(l.get(&CKA_LABEL), Some(&AttrValue::Bytes(b"new".to_vec())));
    }

    fn matches(attrs: &Attrs, template: &[RawAttr]) -> bool {
        Query::new(template).matches(attrs)
    }

    #[test]
    fn find_never_matches_on_protected_key_material() {
        let a = build(
            &aes_template(&[RawAttr::new(CKA_LABEL, b"k1")]),
            &[],
            Origin::Create,
            HSM,
            "u",
        )
        .unwrap();
        assert!(matches(&a, &[RawAttr::new(CKA_LABEL, b"k1")]));
        assert!(matches(
            &a,
            &[
                RawAttr::bool(CKA_SENSITIVE, true),
                RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY)
            ]
        ));
        assert!(!matches(&a, &[RawAttr::new(CKA_LABEL, b"k2")]));
        assert!(
            !matches(&a, &[RawAttr::new(CKA_VALUE, &[7u8; 32])]),
            "value of a sensitive key must not match"
        );
        assert!(matches(&a, &[]));
        assert!(!matches(&a, &[RawAttr::new(0x7fff_0001, b"unknown type")]));
        assert!(
            !matches(&a, &[RawAttr::new(CKA_TOKEN, &[1, 0])]),
            "a badly sized boolean matches nothing"
        );
        let spec = build(&aes_template(&[]), &[], Origin::Create, SPEC, "u").unwrap();
        assert!(
            matches(&spec, &[RawAttr::new(CKA_VALUE, &[7u8; 32])]),
            "readable values do match"
        );
    }

    #[test]
    fn imported_key_values_are_checked() {
        let t = |v: &[u8]| {
            vec![
                RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
                RawAttr::ulong(CKA_KEY_TYPE, CKK_AES),
                RawAttr::new(CKA_VALUE, v),
            ]
        };
        assert_eq!(
            build(&t(&[1; 15]), &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeValueInvalid
        );
        let a = build(&t(&[1; 24]), &[], Origin::Create, SPEC, "u").unwrap();
        assert_eq!(a.get(&CKA_VALUE_LEN), Some(&AttrValue::Ulong(24)));
        // A generic secret made elsewhere may be longer than any the token
        // makes (the key-type row's import lengths), but not empty.
        let generic = |v: &[u8]| {
            vec![
                RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
                RawAttr::ulong(CKA_KEY_TYPE, CKK_GENERIC_SECRET),
                RawAttr::new(CKA_VALUE, v),
            ]
        };
        let long = build(&generic(&[1; 600]), &[], Origin::Create, SPEC, "u").unwrap();
        assert_eq!(long.get(&CKA_VALUE_LEN), Some(&AttrValue::Ulong(600)));
        assert_eq!(
            build(&generic(&[]), &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeValueInvalid
        );
        let mut bad = t(&[1; 16]);
        bad.push(RawAttr::ulong(CKA_VALUE_LEN, 32));
        assert_eq!(
            build(&bad, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::TemplateInconsistent
        );
        let rsa = vec![
            RawAttr::ulong(CKA_CLASS, CKO_PUBLIC_KEY),
            RawAttr::ulong(CKA_KEY_TYPE, CKK_RSA),
            RawAttr::new(CKA_MODULUS, &[0x00, 0x01, 0xff, 0xff]),
            RawAttr::new(CKA_PUBLIC_EXPONENT, &[1, 0, 1]),
        ];
        // A 17-bit modulus is no RSA key the rsa crate accepts.
        assert_eq!(
            build(&rsa, &[], Origin::Create, SPEC, "u").unwrap_err(),
            Error::AttributeValueInvalid
        );
    }

    #[test]
    fn data_objects_and_certificates() {
        let t = vec![
            RawAttr::ulong(CKA_CLASS, CKO_DATA),
            RawAttr::new(CKA_VALUE, b"hello"),
            RawAttr::new(CKA_APPLICATION, b"app"),
        ];
        let a = build(&t, &[], Origin::Create, HSM, "u").unwrap();
        assert!(!get_bool(&a, CKA_PRIVATE), "data objects default to public");
        assert_eq!(
            read(&a, CKA_VALUE),
            Reading::Value(zeroize::Zeroizing::new(b"hello".to_vec()))
        );
        assert_eq!(read(&a, CKA_SENSITIVE), Reading::Invalid);
        let c = vec![
            RawAttr::ulong(CKA_CLASS, CKO_CERTIFICATE),
            RawAttr::ulong(CKA_CERTIFICATE_TYPE, CKC_X_509),
            RawAttr::new(CKA_VALUE, b"der"),
        ];
        assert_eq!(
            build(&c, &[], Origin::Create, HSM, "u").unwrap_err(),
            Error::AttributeValueInvalid,
            "CKA_VALUE must be a certificate"
        );
        // A self-signed P-256 certificate (CN=ferrohsm-test), made by OpenSSL.
        let der = CERT_DER;
        let mut c = vec![
            RawAttr::ulong(CKA_CLASS, CKO_CERTIFICATE),
            RawAttr::ulong(CKA_CERTIFICATE_TYPE, CKC_X_509),
            RawAttr::new(CKA_VALUE, der),
        ];
        let a = build(&c, &[], Origin::Create, HSM, "u").unwrap();
        assert_eq!(
            a.get(&CKA_NAME_HASH_ALGORITHM),
            Some(&AttrValue::Ulong(CKM_SHA_1))
        );
        let Some(AttrValue::Bytes(subject)) = a.get(&CKA_SUBJECT) else {
            panic!("subject not filled in")
        };
        assert!(subject.windows(13).any(|w| w == b"ferrohsm-test"));
        assert_eq!(a.get(&CKA_SUBJECT), a.get(&CKA_ISSUER), "self-signed");
        assert!(matches!(a.get(&CKA_PUBLIC_KEY_INFO), Some(AttrValue::Bytes(b)) if b.len() == 91));
        // A subject that contradicts the certificate is refused.
        c.push(RawAttr::new(CKA_SUBJECT, b"\x30\x00"));
        assert_eq!(
            build(&c, &[], Origin::Create, HSM, "u").unwrap_err(),
            Error::AttributeValueInvalid
        );
    }
}
