//! The attribute policy: ONE table saying, for every attribute the module knows,
//! its C type, which object classes (and key types) have it, whether a caller may
//! give it on create / generate / copy / `C_SetAttributeValue`, whether it is key
//! material, its default, and where the spec defines it. Everything that builds,
//! changes or reveals attributes goes through the functions below, which read
//! nothing but this table and the token's key policy.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::{AttrValue, KeyPolicy};

use crate::error::{Error, Result};

use super::attrs::get_ulong;
pub use super::attrs::{Attrs, get_bool};

/// How an attribute's value is encoded in C.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// `CK_BBOOL`, one byte.
    Bool,
    /// `CK_ULONG`.
    Ulong,
    /// A byte string of any length.
    Bytes,
    /// `CK_DATE`: empty or eight ASCII digits.
    Date,
    /// An array of `CK_MECHANISM_TYPE`.
    Mechanisms,
    /// An array of `CK_ATTRIBUTE` (`CKF_ARRAY_ATTRIBUTE`), held in the
    /// `ffi`-neutral form of [`encode_template`].
    Template,
}

/// Whether a caller may supply the attribute when an object comes into being.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Give {
    /// Must be in the template.
    Required,
    /// May be in the template.
    Optional,
    /// Set by the token only; in a template → `CKR_ATTRIBUTE_READ_ONLY`.
    Never,
}

/// Whether an existing value may be changed (by copy or by set).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Change {
    /// Never: `CKR_ATTRIBUTE_READ_ONLY`.
    Never,
    /// To any value.
    Any,
    /// Only from FALSE to TRUE (e.g. `CKA_SENSITIVE`).
    ToTrue,
    /// Only from TRUE to FALSE (e.g. `CKA_EXTRACTABLE`).
    ToFalse,
}

/// The value an attribute takes when the template does not give it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Default {
    /// No default: absent unless given (or computed by the token).
    None,
    /// A fixed boolean.
    Bool(bool),
    /// A fixed `CK_ULONG`.
    Ulong(CK_ULONG),
    /// The empty byte string.
    Empty,
    /// `CKA_PRIVATE`: TRUE for private and secret keys, FALSE otherwise.
    PrivateIfKeyMaterial,
    /// `CKA_SENSITIVE`: TRUE on `hsm` tokens, FALSE on `spec` tokens.
    SensitiveByPolicy,
    /// `CKA_EXTRACTABLE`: FALSE on `hsm` tokens, TRUE on `spec` tokens.
    ExtractableByPolicy,
}

/// Object classes as a bit set, for the table.
pub mod class {
    /// `CKO_DATA`.
    pub const DATA: u8 = 1;
    /// `CKO_CERTIFICATE`.
    pub const CERT: u8 = 2;
    /// `CKO_PUBLIC_KEY`.
    pub const PUB: u8 = 4;
    /// `CKO_PRIVATE_KEY`.
    pub const PRIV: u8 = 8;
    /// `CKO_SECRET_KEY`.
    pub const SECRET: u8 = 16;
    /// All key classes.
    pub const KEYS: u8 = PUB | PRIV | SECRET;
    /// Every class.
    pub const ALL: u8 = DATA | CERT | KEYS;
}

/// The class bit of a `CKO_*` value, if the module supports that class.
pub fn class_bit(class: CK_OBJECT_CLASS) -> Option<u8> {
    Some(match class {
        CKO_DATA => class::DATA,
        CKO_CERTIFICATE => class::CERT,
        CKO_PUBLIC_KEY => class::PUB,
        CKO_PRIVATE_KEY => class::PRIV,
        CKO_SECRET_KEY => class::SECRET,
        _ => return None,
    })
}

/// Key types the module stores.
pub const KEY_TYPES: &[CK_KEY_TYPE] = &[CKK_AES, CKK_GENERIC_SECRET, CKK_RSA, CKK_EC];

/// One row of the policy table.
#[derive(Clone, Copy, Debug)]
pub struct Rule {
    /// `CKA_*`.
    pub ty: CK_ATTRIBUTE_TYPE,
    /// Its name, for logs.
    pub name: &'static str,
    /// C encoding.
    pub kind: Kind,
    /// Classes that have it.
    pub classes: u8,
    /// Key types that have it (empty: every key type, or not a key).
    pub key_types: &'static [CK_KEY_TYPE],
    /// In a `C_CreateObject` template.
    pub create: Give,
    /// In a `C_GenerateKey(Pair)` / derive / unwrap template.
    pub generate: Give,
    /// In a `C_CopyObject` template.
    pub copy: Change,
    /// In `C_SetAttributeValue`.
    pub set: Change,
    /// Key material: unreadable while the key is sensitive or unextractable.
    pub secret: bool,
    /// Default when absent.
    pub default: Default,
    /// Where PKCS#11 v3.0 defines it.
    pub spec: &'static str,
    /// For enumerated `CK_ULONG` attributes, the values the spec defines (and
    /// this token understands); any other is `CKR_ATTRIBUTE_VALUE_INVALID`.
    pub values: Option<fn(CK_ULONG) -> bool>,
}

const fn rule(
    ty: CK_ATTRIBUTE_TYPE,
    name: &'static str,
    kind: Kind,
    classes: u8,
    spec: &'static str,
) -> Rule {
    Rule {
        ty,
        name,
        kind,
        classes,
        key_types: &[],
        create: Give::Optional,
        generate: Give::Optional,
        copy: Change::Never,
        set: Change::Never,
        secret: false,
        default: Default::None,
        spec,
        values: None,
    }
}

impl Rule {
    const fn keys(mut self, k: &'static [CK_KEY_TYPE]) -> Self {
        self.key_types = k;
        self
    }
    const fn create(mut self, g: Give) -> Self {
        self.create = g;
        self
    }
    const fn generate(mut self, g: Give) -> Self {
        self.generate = g;
        self
    }
    /// Token-computed: never given by the caller.
    const fn computed(self) -> Self {
        self.create(Give::Never).generate(Give::Never)
    }
    const fn copy(mut self, c: Change) -> Self {
        self.copy = c;
        self
    }
    const fn set(mut self, c: Change) -> Self {
        self.set = c;
        self
    }
    /// Modifiable by copy and by set.
    const fn editable(self) -> Self {
        self.copy(Change::Any).set(Change::Any)
    }
    const fn secret(mut self) -> Self {
        self.secret = true;
        self
    }
    const fn default(mut self, d: Default) -> Self {
        self.default = d;
        self
    }
    const fn values(mut self, f: fn(CK_ULONG) -> bool) -> Self {
        self.values = Some(f);
        self
    }
}

use Kind::{Bool, Bytes, Date, Mechanisms, Template, Ulong};
use class::{ALL, CERT, DATA, KEYS, PRIV, PUB, SECRET};

const RSA: &[CK_KEY_TYPE] = &[CKK_RSA];
const EC: &[CK_KEY_TYPE] = &[CKK_EC];
const SYM: &[CK_KEY_TYPE] = &[CKK_AES, CKK_GENERIC_SECRET];

/// THE table. Several rows may share a type when classes differ (e.g. `CKA_VALUE`).
pub static RULES: &[Rule] = &[
    // Common object attributes (§4.2, §4.4).
    rule(CKA_CLASS, "CKA_CLASS", Ulong, ALL, "§4.2").create(Give::Required),
    rule(CKA_TOKEN, "CKA_TOKEN", Bool, ALL, "§4.4")
        .copy(Change::Any)
        .default(Default::Bool(false)),
    rule(CKA_PRIVATE, "CKA_PRIVATE", Bool, ALL, "§4.4")
        .copy(Change::Any)
        .default(Default::PrivateIfKeyMaterial),
    rule(CKA_MODIFIABLE, "CKA_MODIFIABLE", Bool, ALL, "§4.4")
        .copy(Change::ToFalse)
        .default(Default::Bool(true)),
    rule(CKA_COPYABLE, "CKA_COPYABLE", Bool, ALL, "§4.4")
        .copy(Change::ToFalse)
        .set(Change::ToFalse)
        .default(Default::Bool(true)),
    rule(CKA_DESTROYABLE, "CKA_DESTROYABLE", Bool, ALL, "§4.4")
        .copy(Change::ToFalse)
        .set(Change::ToFalse)
        .default(Default::Bool(true)),
    rule(CKA_LABEL, "CKA_LABEL", Bytes, ALL, "§4.4")
        .editable()
        .default(Default::Empty),
    rule(CKA_UNIQUE_ID, "CKA_UNIQUE_ID", Bytes, ALL, "§4.4").computed(),
    // Data objects (§4.5).
    rule(CKA_APPLICATION, "CKA_APPLICATION", Bytes, DATA, "§4.5")
        .editable()
        .default(Default::Empty),
    rule(CKA_OBJECT_ID, "CKA_OBJECT_ID", Bytes, DATA, "§4.5")
        .editable()
        .default(Default::Empty),
    rule(CKA_VALUE, "CKA_VALUE", Bytes, DATA, "§4.5")
        .editable()
        .default(Default::Empty),
    // Certificates (§4.6) and X.509 public key certificates (§4.6.3).
    rule(
        CKA_CERTIFICATE_TYPE,
        "CKA_CERTIFICATE_TYPE",
        Ulong,
        CERT,
        "§4.6",
    )
    .create(Give::Required)
    .values(|v| matches!(v, CKC_X_509 | CKC_X_509_ATTR_CERT | CKC_WTLS)),
    rule(
        CKA_TRUSTED,
        "CKA_TRUSTED",
        Bool,
        CERT | PUB | SECRET,
        "§4.6, §4.8, §4.10",
    )
    .set(Change::Any)
    .default(Default::Bool(false)),
    rule(
        CKA_CERTIFICATE_CATEGORY,
        "CKA_CERTIFICATE_CATEGORY",
        Ulong,
        CERT,
        "§4.6",
    )
    .default(Default::Ulong(CK_CERTIFICATE_CATEGORY_UNSPECIFIED))
    // Unspecified, token user, authority, other entity (§4.6).
    .values(|v| v <= 3),
    rule(
        CKA_START_DATE,
        "CKA_START_DATE",
        Date,
        CERT | KEYS,
        "§4.6, §4.7",
    )
    .editable()
    .default(Default::Empty),
    rule(
        CKA_END_DATE,
        "CKA_END_DATE",
        Date,
        CERT | KEYS,
        "§4.6, §4.7",
    )
    .editable()
    .default(Default::Empty),
    // Filled from the certificate itself when absent (object::cert).
    rule(CKA_SUBJECT, "CKA_SUBJECT", Bytes, CERT, "§4.6.3"),
    rule(
        CKA_PUBLIC_KEY_INFO,
        "CKA_PUBLIC_KEY_INFO",
        Bytes,
        CERT,
        "§4.6.3",
    )
    .computed(),
    rule(CKA_SUBJECT, "CKA_SUBJECT", Bytes, PUB | PRIV, "§4.8, §4.9")
        .editable()
        .default(Default::Empty),
    rule(CKA_ID, "CKA_ID", Bytes, CERT | KEYS, "§4.6.3, §4.7")
        .editable()
        .default(Default::Empty),
    rule(CKA_ISSUER, "CKA_ISSUER", Bytes, CERT, "§4.6.3")
        .editable()
        .default(Default::Empty),
    rule(
        CKA_SERIAL_NUMBER,
        "CKA_SERIAL_NUMBER",
        Bytes,
        CERT,
        "§4.6.3",
    )
    .editable()
    .default(Default::Empty),
    rule(CKA_VALUE, "CKA_VALUE", Bytes, CERT, "§4.6.3").create(Give::Required),
    rule(CKA_URL, "CKA_URL", Bytes, CERT, "§4.6.3").default(Default::Empty),
    rule(
        CKA_HASH_OF_SUBJECT_PUBLIC_KEY,
        "CKA_HASH_OF_SUBJECT_PUBLIC_KEY",
        Bytes,
        CERT,
        "§4.6.3",
    )
    .default(Default::Empty),
    rule(
        CKA_HASH_OF_ISSUER_PUBLIC_KEY,
        "CKA_HASH_OF_ISSUER_PUBLIC_KEY",
        Bytes,
        CERT,
        "§4.6.3",
    )
    .default(Default::Empty),
    rule(
        CKA_JAVA_MIDP_SECURITY_DOMAIN,
        "CKA_JAVA_MIDP_SECURITY_DOMAIN",
        Ulong,
        CERT,
        "§4.6.3",
    )
    .default(Default::Ulong(0))
    // Unspecified, manufacturer, operator, third party (§4.6.3).
    .values(|v| v <= 3),
    rule(
        CKA_NAME_HASH_ALGORITHM,
        "CKA_NAME_HASH_ALGORITHM",
        Ulong,
        CERT,
        "§4.6.3",
    )
    .default(Default::Ulong(CKM_SHA_1))
    .values(|v| crate::mechanism::digest::for_mechanism(v).is_some()),
    // Common key attributes (§4.7).
    rule(CKA_KEY_TYPE, "CKA_KEY_TYPE", Ulong, KEYS, "§4.7").create(Give::Required),
    rule(CKA_DERIVE, "CKA_DERIVE", Bool, KEYS, "§4.7")
        .editable()
        .default(Default::Bool(false)),
    rule(CKA_LOCAL, "CKA_LOCAL", Bool, KEYS, "§4.7").computed(),
    rule(
        CKA_KEY_GEN_MECHANISM,
        "CKA_KEY_GEN_MECHANISM",
        Ulong,
        KEYS,
        "§4.7",
    )
    .computed(),
    rule(
        CKA_ALLOWED_MECHANISMS,
        "CKA_ALLOWED_MECHANISMS",
        Mechanisms,
        KEYS,
        "§4.7",
    )
    .default(Default::Empty),
    // Usage flags of public (§4.8), private (§4.9) and secret (§4.10) keys.
    rule(
        CKA_ENCRYPT,
        "CKA_ENCRYPT",
        Bool,
        PUB | SECRET,
        "§4.8, §4.10",
    )
    .editable()
    .default(Default::Bool(true)),
    rule(CKA_VERIFY, "CKA_VERIFY", Bool, PUB | SECRET, "§4.8, §4.10")
        .editable()
        .default(Default::Bool(true)),
    rule(CKA_VERIFY_RECOVER, "CKA_VERIFY_RECOVER", Bool, PUB, "§4.8")
        .editable()
        .default(Default::Bool(true)),
    rule(CKA_WRAP, "CKA_WRAP", Bool, PUB | SECRET, "§4.8, §4.10")
        .editable()
        .default(Default::Bool(true)),
    rule(
        CKA_DECRYPT,
        "CKA_DECRYPT",
        Bool,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .editable()
    .default(Default::Bool(true)),
    rule(CKA_SIGN, "CKA_SIGN", Bool, PRIV | SECRET, "§4.9, §4.10")
        .editable()
        .default(Default::Bool(true)),
    rule(CKA_SIGN_RECOVER, "CKA_SIGN_RECOVER", Bool, PRIV, "§4.9")
        .editable()
        .default(Default::Bool(true)),
    rule(
        CKA_WRAP_TEMPLATE,
        "CKA_WRAP_TEMPLATE",
        Template,
        PUB | SECRET,
        "§4.8, §4.10",
    )
    .default(Default::Empty),
    rule(
        CKA_UNWRAP_TEMPLATE,
        "CKA_UNWRAP_TEMPLATE",
        Template,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .default(Default::Empty),
    rule(
        CKA_DERIVE_TEMPLATE,
        "CKA_DERIVE_TEMPLATE",
        Template,
        KEYS,
        "§4.7",
    )
    .default(Default::Empty),
    rule(CKA_UNWRAP, "CKA_UNWRAP", Bool, PRIV | SECRET, "§4.9, §4.10")
        .editable()
        .default(Default::Bool(true)),
    rule(
        CKA_PUBLIC_KEY_INFO,
        "CKA_PUBLIC_KEY_INFO",
        Bytes,
        PUB | PRIV,
        "§4.8, §4.9",
    )
    .default(Default::Empty),
    // Protection of private and secret keys (§4.9, §4.10).
    rule(
        CKA_SENSITIVE,
        "CKA_SENSITIVE",
        Bool,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .copy(Change::ToTrue)
    .set(Change::ToTrue)
    .default(Default::SensitiveByPolicy),
    rule(
        CKA_EXTRACTABLE,
        "CKA_EXTRACTABLE",
        Bool,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .copy(Change::ToFalse)
    .set(Change::ToFalse)
    .default(Default::ExtractableByPolicy),
    rule(
        CKA_ALWAYS_SENSITIVE,
        "CKA_ALWAYS_SENSITIVE",
        Bool,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .computed(),
    rule(
        CKA_NEVER_EXTRACTABLE,
        "CKA_NEVER_EXTRACTABLE",
        Bool,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .computed(),
    rule(
        CKA_WRAP_WITH_TRUSTED,
        "CKA_WRAP_WITH_TRUSTED",
        Bool,
        PRIV | SECRET,
        "§4.9, §4.10",
    )
    .copy(Change::ToTrue)
    .set(Change::ToTrue)
    .default(Default::Bool(false)),
    rule(
        CKA_ALWAYS_AUTHENTICATE,
        "CKA_ALWAYS_AUTHENTICATE",
        Bool,
        PRIV,
        "§4.9",
    )
    .default(Default::Bool(false)),
    // Secret key values (§6.7 AES, §6.43 generic secret).
    rule(CKA_VALUE, "CKA_VALUE", Bytes, SECRET, "§4.10")
        .keys(SYM)
        .create(Give::Required)
        .generate(Give::Never)
        .secret(),
    rule(CKA_VALUE_LEN, "CKA_VALUE_LEN", Ulong, SECRET, "§4.10").keys(SYM),
    rule(CKA_CHECK_VALUE, "CKA_CHECK_VALUE", Bytes, SECRET, "§4.10")
        .keys(SYM)
        .generate(Give::Never),
    // RSA (§6.1.2, §6.1.3).
    rule(CKA_MODULUS, "CKA_MODULUS", Bytes, PUB | PRIV, "§6.1")
        .keys(RSA)
        .create(Give::Required)
        .generate(Give::Never),
    rule(CKA_MODULUS_BITS, "CKA_MODULUS_BITS", Ulong, PUB, "§6.1.2")
        .keys(RSA)
        .create(Give::Never),
    rule(
        CKA_PUBLIC_EXPONENT,
        "CKA_PUBLIC_EXPONENT",
        Bytes,
        PUB,
        "§6.1.2",
    )
    .keys(RSA)
    .create(Give::Required),
    rule(
        CKA_PUBLIC_EXPONENT,
        "CKA_PUBLIC_EXPONENT",
        Bytes,
        PRIV,
        "§6.1.3",
    )
    .keys(RSA)
    .generate(Give::Never),
    rule(
        CKA_PRIVATE_EXPONENT,
        "CKA_PRIVATE_EXPONENT",
        Bytes,
        PRIV,
        "§6.1.3",
    )
    .keys(RSA)
    .create(Give::Required)
    .generate(Give::Never)
    .secret(),
    rule(CKA_PRIME_1, "CKA_PRIME_1", Bytes, PRIV, "§6.1.3")
        .keys(RSA)
        .generate(Give::Never)
        .secret(),
    rule(CKA_PRIME_2, "CKA_PRIME_2", Bytes, PRIV, "§6.1.3")
        .keys(RSA)
        .generate(Give::Never)
        .secret(),
    rule(CKA_EXPONENT_1, "CKA_EXPONENT_1", Bytes, PRIV, "§6.1.3")
        .keys(RSA)
        .generate(Give::Never)
        .secret(),
    rule(CKA_EXPONENT_2, "CKA_EXPONENT_2", Bytes, PRIV, "§6.1.3")
        .keys(RSA)
        .generate(Give::Never)
        .secret(),
    rule(CKA_COEFFICIENT, "CKA_COEFFICIENT", Bytes, PRIV, "§6.1.3")
        .keys(RSA)
        .generate(Give::Never)
        .secret(),
    // Elliptic curves (§6.3.3, §6.3.4).
    rule(CKA_EC_PARAMS, "CKA_EC_PARAMS", Bytes, PUB | PRIV, "§6.3")
        .keys(EC)
        .create(Give::Required),
    rule(CKA_EC_POINT, "CKA_EC_POINT", Bytes, PUB, "§6.3.3")
        .keys(EC)
        .create(Give::Required)
        .generate(Give::Never),
    rule(CKA_VALUE, "CKA_VALUE", Bytes, PRIV, "§6.3.4")
        .keys(EC)
        .create(Give::Required)
        .generate(Give::Never)
        .secret(),
];

/// The row for `ty` on an object of class bit `cls` and key type `kt`.
pub fn rule_for(ty: CK_ATTRIBUTE_TYPE, cls: u8, kt: Option<CK_KEY_TYPE>) -> Option<&'static Rule> {
    RULES.iter().find(|r| {
        r.ty == ty
            && r.classes & cls != 0
            && (r.key_types.is_empty() || kt.is_some_and(|k| r.key_types.contains(&k)))
    })
}

/// The name of an attribute type, for logs.
pub fn attr_name(ty: CK_ATTRIBUTE_TYPE) -> String {
    RULES
        .iter()
        .find(|r| r.ty == ty)
        .map_or_else(|| format!("CKA_{ty:#x}"), |r| r.name.to_string())
}

/// Decodes C bytes as the attribute's kind.
pub fn decode(kind: Kind, raw: &[u8]) -> Result<AttrValue> {
    const UL: usize = std::mem::size_of::<CK_ULONG>();
    match kind {
        Kind::Bool if raw.len() == 1 => Ok(AttrValue::Bool(raw[0] != 0)),
        Kind::Ulong if raw.len() == UL => {
            let mut b = [0u8; UL];
            b.copy_from_slice(raw);
            Ok(AttrValue::Ulong(CK_ULONG::from_ne_bytes(b)))
        }
        Kind::Bytes => Ok(AttrValue::Bytes(raw.to_vec())),
        Kind::Date if raw.is_empty() || (raw.len() == 8 && raw.iter().all(u8::is_ascii_digit)) => {
            Ok(AttrValue::Bytes(raw.to_vec()))
        }
        Kind::Template if decode_template_value(raw).is_some() => {
            Ok(AttrValue::Bytes(raw.to_vec()))
        }
        Kind::Mechanisms if raw.len().is_multiple_of(UL) => Ok(AttrValue::Mechanisms(
            raw.chunks_exact(UL)
                .map(|c| {
                    let mut b = [0u8; UL];
                    b.copy_from_slice(c);
                    CK_ULONG::from_ne_bytes(b)
                })
                .collect(),
        )),
        _ => Err(Error::AttributeValueInvalid),
    }
}

/// The form in which an attribute-array value (`CKA_WRAP_TEMPLATE`, …) is
/// passed between `ffi` and the policy and stored: for each attribute its
/// type and length (u64, little-endian) and its C bytes.
pub fn encode_template(attrs: &[RawAttr]) -> Vec<u8> {
    let mut out = Vec::new();
    for a in attrs {
        out.extend_from_slice(&a.ty.to_le_bytes());
        out.extend_from_slice(&(a.value.len() as u64).to_le_bytes());
        out.extend_from_slice(&a.value);
    }
    out
}

/// Parses the form of [`encode_template`]; `None` if malformed.
pub fn decode_template_value(mut raw: &[u8]) -> Option<Vec<RawAttr>> {
    let mut out = Vec::new();
    while !raw.is_empty() {
        let ty = u64::from_le_bytes(raw.get(..8)?.try_into().ok()?);
        let len = u64::from_le_bytes(raw.get(8..16)?.try_into().ok()?) as usize;
        let value = raw.get(16..16usize.checked_add(len)?)?;
        out.push(RawAttr::new(ty as CK_ATTRIBUTE_TYPE, value));
        raw = &raw[16 + len..];
    }
    Some(out)
}

/// Whether the attributes of an object match an attribute-array value
/// (`CKA_WRAP_TEMPLATE`): each listed attribute has exactly that C encoding.
pub fn matches_template(attrs: &Attrs, template: &[RawAttr]) -> bool {
    template
        .iter()
        .all(|t| attrs.get(&t.ty).is_some_and(|v| encode(v) == *t.value))
}

/// Encodes a value as the C caller expects it.
pub fn encode(v: &AttrValue) -> Vec<u8> {
    match v {
        AttrValue::Bool(b) => vec![u8::from(*b)],
        AttrValue::Ulong(u) => (*u as CK_ULONG).to_ne_bytes().to_vec(),
        AttrValue::Bytes(b) => b.clone(),
        AttrValue::Mechanisms(m) => m
            .iter()
            .flat_map(|x| (*x as CK_ULONG).to_ne_bytes())
            .collect(),
    }
}

/// One attribute of a caller's template, as raw C bytes.
#[derive(Clone)]
pub struct RawAttr {
    /// `CKA_*`.
    pub ty: CK_ATTRIBUTE_TYPE,
    /// The bytes at `pValue` (may be key material: zeroized on drop).
    pub value: zeroize::Zeroizing<Vec<u8>>,
}

impl RawAttr {
    /// A template entry from a type and bytes.
    pub fn new(ty: CK_ATTRIBUTE_TYPE, value: &[u8]) -> RawAttr {
        RawAttr {
            ty,
            value: zeroize::Zeroizing::new(value.to_vec()),
        }
    }

    /// A `CK_BBOOL` entry.
    pub fn bool(ty: CK_ATTRIBUTE_TYPE, v: bool) -> RawAttr {
        RawAttr::new(ty, &[u8::from(v)])
    }

    /// A `CK_ULONG` entry.
    pub fn ulong(ty: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> RawAttr {
        RawAttr::new(ty, &v.to_ne_bytes())
    }

    /// The value as a `CK_ULONG`, if it has that size.
    pub fn as_ulong(&self) -> Option<CK_ULONG> {
        let b: [u8; std::mem::size_of::<CK_ULONG>()] = self.value.as_slice().try_into().ok()?;
        Some(CK_ULONG::from_ne_bytes(b))
    }
}

impl std::fmt::Debug for RawAttr {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}(<{} bytes>)", attr_name(self.ty), self.value.len())
    }
}

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
        if !KEY_TYPES.contains(&kt) {
            return Err(Error::AttributeValueInvalid);
        }
        Some(kt)
    } else {
        None
    };
    Ok((cls, kt))
}

/// Decodes a template into typed values for an object of the given identity;
/// the same type twice with different values is `CKR_TEMPLATE_INCONSISTENT`.
fn decode_template(
    template: &[RawAttr],
    cls: u8,
    kt: Option<CK_KEY_TYPE>,
) -> Result<Vec<(&'static Rule, AttrValue)>> {
    let mut out: Vec<(&'static Rule, AttrValue)> = Vec::with_capacity(template.len());
    for a in template {
        let r = rule_for(a.ty, cls, kt).ok_or(Error::AttributeTypeInvalid)?;
        let v = decode(r.kind, &a.value)?;
        if let (Some(ok), AttrValue::Ulong(u)) = (r.values, &v)
            && !ok(*u as CK_ULONG)
        {
            return Err(Error::AttributeValueInvalid);
        }
        if let Some((_, prev)) = out.iter().find(|(p, _)| p.ty == a.ty) {
            if *prev != v {
                return Err(Error::TemplateInconsistent);
            }
            continue;
        }
        out.push((r, v));
    }
    Ok(out)
}

/// Reads the class and key type from a template (and the mechanism's implied
/// ones, for generation), before anything else is checked.
fn template_identity(
    template: &[RawAttr],
    implied: &[(CK_ATTRIBUTE_TYPE, CK_ULONG)],
) -> Result<Attrs> {
    let mut id = Attrs::new();
    for (ty, v) in implied {
        id.insert(*ty, AttrValue::Ulong(*v));
    }
    for a in template
        .iter()
        .filter(|a| a.ty == CKA_CLASS || a.ty == CKA_KEY_TYPE)
    {
        let v = decode(Kind::Ulong, &a.value)?;
        match id.get(&a.ty) {
            Some(prev) if *prev != v => return Err(Error::TemplateInconsistent),
            _ => {
                id.insert(a.ty, v);
            }
        }
    }
    Ok(id)
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
/// them (`CKA_VALUE_LEN`, `CKA_MODULUS_BITS`, `CKA_PUBLIC_KEY_INFO`, RSA CRT
/// components). RSA and EC keys are parsed and checked by their mechanism
/// families (`mechanism::rsa`, `mechanism::ec`).
fn check_imported_key(attrs: &mut Attrs, cls: u8, kt: Option<CK_KEY_TYPE>) -> Result<()> {
    match (cls, kt) {
        (SECRET, Some(kt)) => {
            let len = bytes_len(attrs, CKA_VALUE).ok_or(Error::TemplateIncomplete)?;
            let ok = match kt {
                CKK_AES => matches!(len, 16 | 24 | 32),
                _ => len >= 1,
            };
            if !ok {
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
            set_secret_value(attrs, kt, &value)?;
            // A caller-supplied check value must match the key (v3.0 §4.10).
            if given.is_some_and(|g| Some(&g) != attrs.get(&CKA_CHECK_VALUE)) {
                return Err(Error::AttributeValueInvalid);
            }
        }
        (PUB, Some(CKK_RSA)) => {
            let n = match attrs.get(&CKA_MODULUS) {
                Some(AttrValue::Bytes(n)) => n.as_slice(),
                _ => return Err(Error::TemplateIncomplete),
            };
            let first = n
                .iter()
                .position(|&b| b != 0)
                .ok_or(Error::AttributeValueInvalid)?;
            let bits = (n.len() - first) * 8 - n[first].leading_zeros() as usize;
            attrs.insert(CKA_MODULUS_BITS, AttrValue::Ulong(bits as u64));
            crate::mechanism::rsa::check_public_import(attrs)?;
        }
        (PRIV, Some(CKK_RSA)) => crate::mechanism::rsa::check_private_import(attrs)?,
        (PUB, Some(CKK_EC)) => crate::mechanism::ec::check_public_import(attrs)?,
        (PRIV, Some(CKK_EC)) => crate::mechanism::ec::check_private_import(attrs)?,
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
/// the attribute is raised silently.
pub fn protect_like_bases(
    attrs: &mut Attrs,
    template: &[RawAttr],
    bases: &[&crate::object::Object],
) -> Result<()> {
    let asked = |ty: CK_ATTRIBUTE_TYPE| {
        template
            .iter()
            .find(|a| a.ty == ty)
            .map(|a| a.value.first() == Some(&1))
    };
    if bases.iter().any(|b| get_bool(&b.attrs, CKA_SENSITIVE)) {
        if asked(CKA_SENSITIVE) == Some(false) {
            return Err(Error::TemplateInconsistent);
        }
        attrs.insert(CKA_SENSITIVE, AttrValue::Bool(true));
    }
    let unextractable =
        |a: &Attrs| a.contains_key(&CKA_EXTRACTABLE) && !get_bool(a, CKA_EXTRACTABLE);
    if bases.iter().any(|b| unextractable(&b.attrs)) {
        if asked(CKA_EXTRACTABLE) == Some(true) {
            return Err(Error::TemplateInconsistent);
        }
        attrs.insert(CKA_EXTRACTABLE, AttrValue::Bool(false));
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
/// (`CKA_VALUE_LEN`, `CKA_CHECK_VALUE`).
pub fn set_secret_value(attrs: &mut Attrs, kt: CK_KEY_TYPE, value: &[u8]) -> Result<()> {
    let kcv = crate::mechanism::check_value(kt, value)?;
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
    if get_bool(attrs, CKA_TRUSTED) && !actor.so {
        return Err(Error::AttributeReadOnly);
    }
    Ok(())
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
    fn every_rule_row_is_unique_per_class_and_key_type() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                if a.ty != b.ty || a.classes & b.classes == 0 {
                    continue;
                }
                let overlap = a.key_types.is_empty()
                    || b.key_types.is_empty()
                    || a.key_types.iter().any(|k| b.key_types.contains(k));
                assert!(
                    !overlap,
                    "{} has two rows for the same class/key type",
                    a.name
                );
            }
        }
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
    fn every_type_has_one_encoding() {
        for a in RULES {
            for b in RULES.iter().filter(|b| b.ty == a.ty) {
                assert_eq!(a.kind, b.kind, "{} has two encodings", a.name);
            }
        }
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
