//! The attribute table: ONE list saying, for every attribute the module knows,
//! its C type, which object classes (and key types) have it, whether a caller may
//! give it on create / generate / copy / `C_SetAttributeValue`, whether it is key
//! material, its default, and where the spec defines it. `object::policy` builds,
//! changes and reveals attributes by reading nothing but this table, the
//! key-type table and the token's key policy.
#![forbid(unsafe_code)]

use cryptoki_sys::*;

use crate::mechanism::key_types::{self, AttrSet};

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
    /// The key-specific attribute set it belongs to: key types whose row in
    /// `key_types::KEY_TYPES` names that set have it (`None`: every key type,
    /// or not a key).
    pub key_attrs: Option<AttrSet>,
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
        key_attrs: None,
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
    const fn keys(mut self, k: AttrSet) -> Self {
        self.key_attrs = Some(k);
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

const RSA: AttrSet = AttrSet::Rsa;
const EC: AttrSet = AttrSet::Ec;
const SYM: AttrSet = AttrSet::Secret;

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
            && r.key_attrs.is_none_or(|set| {
                kt.and_then(key_types::lookup)
                    .is_some_and(|k| k.attrs == set)
            })
    })
}

/// The name of an attribute type, for logs.
pub fn attr_name(ty: CK_ATTRIBUTE_TYPE) -> String {
    RULES
        .iter()
        .find(|r| r.ty == ty)
        .map_or_else(|| format!("CKA_{ty:#x}"), |r| r.name.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_rule_row_is_unique_per_class_and_key_type() {
        for (i, a) in RULES.iter().enumerate() {
            for b in &RULES[i + 1..] {
                if a.ty != b.ty || a.classes & b.classes == 0 {
                    continue;
                }
                let overlap =
                    a.key_attrs.is_none() || b.key_attrs.is_none() || a.key_attrs == b.key_attrs;
                assert!(
                    !overlap,
                    "{} has two rows for the same class/key type",
                    a.name
                );
            }
        }
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
    fn every_stored_key_type_has_its_attributes() {
        // The key-type table says which key-specific rows apply: every row
        // names a set some key type has, and every key type has such rows.
        for r in RULES.iter().filter(|r| r.key_attrs.is_some()) {
            assert!(
                key_types::KEY_TYPES
                    .iter()
                    .any(|k| Some(k.attrs) == r.key_attrs),
                "{} belongs to no key type",
                r.name
            );
        }
        for k in key_types::KEY_TYPES {
            let own: Vec<&Rule> = RULES
                .iter()
                .filter(|r| r.key_attrs == Some(k.attrs))
                .collect();
            assert!(!own.is_empty(), "{} has no attributes of its own", k.name);
            for r in own {
                assert!(
                    rule_for(r.ty, r.classes, Some(k.ty)).is_some(),
                    "{}",
                    k.name
                );
            }
        }
        assert!(rule_for(CKA_VALUE, class::SECRET, Some(0x7777_7777)).is_none());
    }
}
