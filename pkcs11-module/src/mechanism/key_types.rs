//! The key-type table, beside the mechanism table: ONE static list saying, for
//! each key type the token stores, whether it is a secret or half of a pair,
//! which key-specific attributes its objects carry, the lengths of a secret
//! value and its `CKA_CHECK_VALUE`, the checks of an imported public or
//! private key, and the PKCS#8 form in which a private key is wrapped. The
//! attribute policy (`object::policy`), key generation and derivation
//! (`module/keys.rs`) and wrapping (`module/wrap.rs`) look rows up here and
//! branch on no key type themselves. Adding a key type is one row here and
//! its family file.
#![forbid(unsafe_code)]

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;
use zeroize::Zeroizing;

use super::{MAX_SECRET_LEN, aes, aes_modes, chacha, des, ec, edwards, mac, rsa};
use crate::error::{Error, Result};
use crate::object::Object;
use crate::object::attrs::Attrs;

/// Whether a key type is a secret key or a public/private key pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KeyClass {
    /// `CKO_SECRET_KEY`: one value (`CKA_VALUE`).
    Secret,
    /// `CKO_PUBLIC_KEY` and `CKO_PRIVATE_KEY`.
    Pair,
}

/// The key-specific attributes (PKCS#11 v3.0 §6) a key type's objects carry:
/// rows of the attribute table (`object::rules::RULES`) name a set, and a key
/// type has those rows by naming the same set here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AttrSet {
    /// `CKA_VALUE`, `CKA_VALUE_LEN`, `CKA_CHECK_VALUE` (§4.10).
    Secret,
    /// `CKA_MODULUS`, `CKA_PUBLIC_EXPONENT`, the private exponent and CRT
    /// components (§6.1).
    Rsa,
    /// `CKA_EC_PARAMS`, `CKA_EC_POINT`, the private `CKA_VALUE` (§6.3; also
    /// the Edwards and Montgomery keys of §2.3.5/§2.3.7).
    Ec,
}

/// Checks an imported key's attributes and records what the token derives
/// from them (`CKA_PUBLIC_KEY_INFO`, RSA CRT components, …).
pub type ImportCheck = fn(&mut Attrs) -> Result<()>;

/// `CKA_CHECK_VALUE` of a secret value (v3.0 §4.10).
pub type CheckValue = fn(&[u8]) -> Result<[u8; 3]>;

/// A private key object as PKCS#8 `PrivateKeyInfo` DER.
pub type ToPkcs8 = fn(&Object) -> Result<Zeroizing<Vec<u8>>>;

/// The attributes of a private key from its PKCS#8 DER.
pub type FromPkcs8 = fn(&[u8]) -> Result<Attrs>;

/// One row of the key-type table.
#[derive(Clone, Copy)]
pub struct KeyType {
    /// `CKK_*`.
    pub ty: CK_KEY_TYPE,
    /// Its name, for logs and tests.
    pub name: &'static str,
    /// Secret key or key pair.
    pub class: KeyClass,
    /// The key-specific attributes of its objects.
    pub attrs: AttrSet,
    /// Secrets: the value lengths in bytes the token makes (`C_GenerateKey`,
    /// `C_DeriveKey`, `C_UnwrapKey`).
    pub value_len: Option<fn(usize) -> bool>,
    /// Secrets: the value lengths `C_CreateObject` accepts. A generic secret
    /// made elsewhere (a long HMAC key) may be longer than any the token makes.
    pub import_len: Option<fn(usize) -> bool>,
    /// Secrets: `C_DeriveKey` needs `CKA_VALUE_LEN` in the template, as the
    /// type has several sizes and the mechanism's natural length picks none
    /// (AES); otherwise a template without it gets the mechanism's length.
    pub needs_value_len: bool,
    /// Secrets: `CKA_CHECK_VALUE` of a value (v3.0 §4.10).
    pub check_value: Option<CheckValue>,
    /// Pairs: the checks of an imported (`C_CreateObject`) public key.
    pub import_public: Option<ImportCheck>,
    /// Pairs: the checks of an imported private key.
    pub import_private: Option<ImportCheck>,
    /// Pairs: a private key object as PKCS#8 `PrivateKeyInfo` DER (`C_WrapKey`).
    pub to_pkcs8: Option<ToPkcs8>,
    /// Pairs: the attributes of a PKCS#8 private key (`C_UnwrapKey`);
    /// `CKR_WRAPPED_KEY_INVALID` if it is not one of this type.
    pub from_pkcs8: Option<FromPkcs8>,
    /// The strength `hsm` tokens insist on (`spec` tokens take what the
    /// family takes, as SoftHSMv2 does).
    pub hsm_floor: Option<Floor>,
    /// A legacy algorithm's key type (DES): stored only on tokens whose key
    /// policy offers legacy algorithms (`module/legacy.rs`).
    pub legacy: bool,
    /// Secrets of one size (DES, ChaCha20): the value length `C_GenerateKey` and
    /// `C_DeriveKey` use when the template gives no `CKA_VALUE_LEN`.
    pub fixed_len: Option<usize>,
    /// Secrets: makes a freshly generated random value a proper key of the
    /// type (DES: odd parity in every byte).
    pub fix_generated: Option<fn(&mut [u8])>,
}

/// A key size below which `hsm` tokens refuse to generate or import a key.
#[derive(Clone, Copy)]
pub struct Floor {
    /// The key's size in bits from a template or imported attributes, if
    /// they say it.
    pub bits: fn(&Attrs) -> Option<usize>,
    /// The smallest size taken.
    pub min: usize,
    /// Why, for the log line of a refusal.
    pub why: &'static str,
}

const fn secret(
    ty: CK_KEY_TYPE,
    name: &'static str,
    value_len: fn(usize) -> bool,
    import_len: fn(usize) -> bool,
    check_value: CheckValue,
) -> KeyType {
    KeyType {
        ty,
        name,
        class: KeyClass::Secret,
        attrs: AttrSet::Secret,
        value_len: Some(value_len),
        import_len: Some(import_len),
        needs_value_len: false,
        check_value: Some(check_value),
        import_public: None,
        import_private: None,
        to_pkcs8: None,
        from_pkcs8: None,
        hsm_floor: None,
        legacy: false,
        fixed_len: None,
        fix_generated: None,
    }
}

/// An HMAC key type of v3.0 (`CKK_SHA256_HMAC`, ...): sized and checked
/// like a generic secret.
const fn hmac_key(ty: CK_KEY_TYPE, name: &'static str) -> KeyType {
    secret(
        ty,
        name,
        |n| (1..=MAX_SECRET_LEN).contains(&n),
        |n| n >= 1,
        mac::check_value,
    )
}

/// A DES key type: `len` bytes (8, 16 or 24), legacy, odd parity when made
/// here. Imports of any parity are accepted, as other tokens do (the parity
/// bits are ignored by the cipher).
const fn des_row(ty: CK_KEY_TYPE, name: &'static str, len: fn(usize) -> bool, n: usize) -> KeyType {
    KeyType {
        legacy: true,
        fixed_len: Some(n),
        fix_generated: Some(des::set_odd_parity),
        ..secret(ty, name, len, len, des::check_value)
    }
}

/// The parts of a key pair's row.
struct PairForms {
    import_public: ImportCheck,
    import_private: ImportCheck,
    to_pkcs8: ToPkcs8,
    from_pkcs8: FromPkcs8,
}

const fn pair(ty: CK_KEY_TYPE, name: &'static str, attrs: AttrSet, f: PairForms) -> KeyType {
    KeyType {
        ty,
        name,
        class: KeyClass::Pair,
        attrs,
        value_len: None,
        import_len: None,
        needs_value_len: false,
        check_value: None,
        import_public: Some(f.import_public),
        import_private: Some(f.import_private),
        to_pkcs8: Some(f.to_pkcs8),
        from_pkcs8: Some(f.from_pkcs8),
        hsm_floor: None,
        legacy: false,
        fixed_len: None,
        fix_generated: None,
    }
}

/// An imported RSA public key: records `CKA_MODULUS_BITS` from the modulus,
/// then the family's checks.
fn rsa_public_import(attrs: &mut Attrs) -> Result<()> {
    if !matches!(attrs.get(&CKA_MODULUS), Some(AttrValue::Bytes(_))) {
        return Err(Error::TemplateIncomplete);
    }
    let bits = rsa::bits_of(attrs).ok_or(Error::AttributeValueInvalid)?;
    attrs.insert(CKA_MODULUS_BITS, AttrValue::Ulong(bits as u64));
    rsa::check_public_import(attrs)
}

/// THE table.
pub static KEY_TYPES: &[KeyType] = &[
    KeyType {
        needs_value_len: true,
        ..secret(
            CKK_AES,
            "CKK_AES",
            |n| matches!(n, 16 | 24 | 32),
            |n| matches!(n, 16 | 24 | 32),
            aes::check_value,
        )
    },
    secret(
        CKK_GENERIC_SECRET,
        "CKK_GENERIC_SECRET",
        |n| (1..=MAX_SECRET_LEN).contains(&n),
        |n| n >= 1,
        mac::check_value,
    ),
    // The v3.0 HMAC key types (made by CKM_SHA*_KEY_GEN): generic secrets
    // named for their hash, as Kryoptic has them.
    hmac_key(CKK_SHA_1_HMAC, "CKK_SHA_1_HMAC"),
    hmac_key(CKK_SHA224_HMAC, "CKK_SHA224_HMAC"),
    hmac_key(CKK_SHA256_HMAC, "CKK_SHA256_HMAC"),
    hmac_key(CKK_SHA384_HMAC, "CKK_SHA384_HMAC"),
    hmac_key(CKK_SHA512_HMAC, "CKK_SHA512_HMAC"),
    hmac_key(CKK_SHA3_224_HMAC, "CKK_SHA3_224_HMAC"),
    hmac_key(CKK_SHA3_256_HMAC, "CKK_SHA3_256_HMAC"),
    hmac_key(CKK_SHA3_384_HMAC, "CKK_SHA3_384_HMAC"),
    hmac_key(CKK_SHA3_512_HMAC, "CKK_SHA3_512_HMAC"),
    des_row(CKK_DES, "CKK_DES", |n| n == 8, 8),
    des_row(CKK_DES2, "CKK_DES2", |n| n == 16, 16),
    des_row(CKK_DES3, "CKK_DES3", |n| n == 24, 24),
    KeyType {
        // Two AES-128 or two AES-256 keys, which must differ (aes_modes).
        needs_value_len: true,
        ..secret(
            CKK_AES_XTS,
            "CKK_AES_XTS",
            |n| matches!(n, 32 | 64),
            |n| matches!(n, 32 | 64),
            aes_modes::xts_check_value,
        )
    },
    KeyType {
        fixed_len: Some(chacha::KEY_LEN),
        ..secret(
            CKK_CHACHA20,
            "CKK_CHACHA20",
            |n| n == chacha::KEY_LEN,
            |n| n == chacha::KEY_LEN,
            chacha::check_value,
        )
    },
    KeyType {
        hsm_floor: Some(Floor {
            bits: rsa::bits_of,
            min: rsa::HSM_MIN_BITS,
            why: "RSA keys need at least 2048 bits (NIST SP 800-131A)",
        }),
        ..pair(
            CKK_RSA,
            "CKK_RSA",
            AttrSet::Rsa,
            PairForms {
                import_public: rsa_public_import,
                import_private: rsa::check_private_import,
                to_pkcs8: rsa::to_pkcs8,
                from_pkcs8: rsa::from_pkcs8,
            },
        )
    },
    pair(
        CKK_EC,
        "CKK_EC",
        AttrSet::Ec,
        PairForms {
            import_public: ec::check_public_import,
            import_private: ec::check_private_import,
            to_pkcs8: ec::to_pkcs8,
            from_pkcs8: ec::from_pkcs8,
        },
    ),
    pair(
        CKK_EC_EDWARDS,
        "CKK_EC_EDWARDS",
        AttrSet::Ec,
        PairForms {
            import_public: edwards::check_edwards_public,
            import_private: edwards::check_edwards_private,
            to_pkcs8: edwards::edwards_to_pkcs8,
            from_pkcs8: edwards::edwards_from_pkcs8,
        },
    ),
    pair(
        CKK_EC_MONTGOMERY,
        "CKK_EC_MONTGOMERY",
        AttrSet::Ec,
        PairForms {
            import_public: edwards::check_montgomery_public,
            import_private: edwards::check_montgomery_private,
            to_pkcs8: edwards::montgomery_to_pkcs8,
            from_pkcs8: edwards::montgomery_from_pkcs8,
        },
    ),
];

/// The row of a key type, or `None` for a type the token does not store.
pub fn lookup(ty: CK_KEY_TYPE) -> Option<&'static KeyType> {
    KEY_TYPES.iter().find(|k| k.ty == ty)
}

/// `CKA_CHECK_VALUE` of a secret key's value (v3.0 §4.10), by its type's
/// rule; `CKR_KEY_TYPE_INCONSISTENT` for a type that is no secret.
pub fn check_value(ty: CK_KEY_TYPE, value: &[u8]) -> Result<[u8; 3]> {
    let f = lookup(ty)
        .and_then(|k| k.check_value)
        .ok_or(Error::KeyTypeInconsistent)?;
    f(value)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_consistent() {
        for (i, k) in KEY_TYPES.iter().enumerate() {
            assert!(
                KEY_TYPES[i + 1..].iter().all(|o| o.ty != k.ty),
                "{} listed twice",
                k.name
            );
            let secret = k.class == KeyClass::Secret;
            assert_eq!(secret, k.attrs == AttrSet::Secret, "{} attributes", k.name);
            for (has, what) in [
                (k.value_len.is_some(), "value_len"),
                (k.import_len.is_some(), "import_len"),
                (k.check_value.is_some(), "check_value"),
            ] {
                assert_eq!(has, secret, "{}: {what} is for secrets only", k.name);
            }
            assert!(secret || !k.needs_value_len, "{}", k.name);
            assert!(secret || k.fixed_len.is_none() && k.fix_generated.is_none());
            // A one-size type's length is that size, and such a type needs
            // no CKA_VALUE_LEN.
            if let (Some(n), Some(made)) = (k.fixed_len, k.value_len) {
                assert!(made(n) && !k.needs_value_len, "{}", k.name);
                assert!(
                    (0..=MAX_SECRET_LEN).all(|m| m == n || !made(m)),
                    "{}",
                    k.name
                );
            }
            for (has, what) in [
                (k.import_public.is_some(), "import_public"),
                (k.import_private.is_some(), "import_private"),
                (k.to_pkcs8.is_some(), "to_pkcs8"),
                (k.from_pkcs8.is_some(), "from_pkcs8"),
            ] {
                assert_eq!(has, !secret, "{}: {what} is for key pairs only", k.name);
            }
            // Whatever the token makes, it also accepts as an import.
            if let (Some(made), Some(imported)) = (k.value_len, k.import_len) {
                for n in 0..=MAX_SECRET_LEN + 1 {
                    assert!(!made(n) || imported(n), "{}: {n} bytes", k.name);
                }
            }
        }
    }

    #[test]
    fn every_key_type_of_a_mechanism_has_a_row() {
        for m in super::super::MECHANISMS.iter() {
            for kt in m.key_types {
                assert!(lookup(*kt).is_some(), "{}: key type {kt:#x}", m.name);
            }
            let made = [m.keygen.map(|g| g.key_type), m.keypair.map(|p| p.key_type)];
            for kt in made.into_iter().flatten() {
                let row = lookup(kt).unwrap_or_else(|| panic!("{}: no row", m.name));
                let class = if m.keygen.is_some() {
                    KeyClass::Secret
                } else {
                    KeyClass::Pair
                };
                assert_eq!(row.class, class, "{}", m.name);
            }
        }
        assert!(lookup(0x7777_7777).is_none());
    }

    #[test]
    fn secret_lengths_through_the_table() {
        let aes = lookup(CKK_AES).unwrap();
        let made = aes.value_len.unwrap();
        assert!(made(16) && made(24) && made(32));
        assert!(!made(0) && !made(15) && !made(31) && !made(64));
        assert!(aes.needs_value_len);
        let generic = lookup(CKK_GENERIC_SECRET).unwrap();
        let (made, imported) = (generic.value_len.unwrap(), generic.import_len.unwrap());
        assert!(made(1) && made(MAX_SECRET_LEN));
        assert!(!made(0) && !made(MAX_SECRET_LEN + 1));
        assert!(imported(MAX_SECRET_LEN + 1) && !imported(0));
        assert!(!generic.needs_value_len);
    }

    #[test]
    fn check_values_through_the_table() {
        // AES: E_K(0); generic secret: SHA-1 of the value ("abc" → a9993e…).
        assert_eq!(check_value(CKK_AES, &[0; 16]).unwrap(), [0x66, 0xe9, 0x4b]);
        assert_eq!(
            check_value(CKK_GENERIC_SECRET, b"abc").unwrap(),
            [0xa9, 0x99, 0x3e]
        );
        // DES: E_K(0^64), NIST SP 800-67 / FIPS 81 known answer below.
        let k = [0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef];
        assert_eq!(check_value(CKK_DES, &k).unwrap(), [0xd5, 0xd4, 0x4f]);
        assert_eq!(
            check_value(CKK_DES3, &[k, k, k].concat()).unwrap(),
            [0xd5, 0xd4, 0x4f]
        );
        assert_eq!(
            check_value(CKK_AES, &[0; 15]).unwrap_err(),
            Error::KeySizeRange
        );
        assert_eq!(
            check_value(CKK_RSA, &[0; 16]).unwrap_err(),
            Error::KeyTypeInconsistent
        );
        // ChaCha20: its keystream under a zero nonce and counter (RFC 8439
        // A.1 #1 for the zero key); XTS: equal halves refused.
        assert_eq!(
            check_value(CKK_CHACHA20, &[0; 32]).unwrap(),
            [0x76, 0xb8, 0xe0]
        );
        assert!(check_value(CKK_AES_XTS, &[[1; 16], [2; 16]].concat()).is_ok());
        assert_eq!(
            check_value(CKK_AES_XTS, &[1; 32]).unwrap_err(),
            Error::AttributeValueInvalid
        );
        let xts = lookup(CKK_AES_XTS).unwrap();
        assert!(xts.needs_value_len && xts.fixed_len.is_none());
        let chacha = lookup(CKK_CHACHA20).unwrap();
        assert!(!chacha.needs_value_len && chacha.fixed_len == Some(32));
    }

    fn private_object(kt: CK_KEY_TYPE, mut attrs: Attrs) -> Object {
        attrs.insert(CKA_CLASS, AttrValue::Ulong(CKO_PRIVATE_KEY as _));
        attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(kt as _));
        Object {
            handle: 1,
            store_id: 1,
            owner: None,
            attrs,
            cache: Default::default(),
        }
    }

    /// PKCS#8 → attributes → object → PKCS#8 → the same attributes.
    fn round_trip(kt: CK_KEY_TYPE, der: &[u8]) {
        let row = lookup(kt).unwrap();
        let (from, to) = (row.from_pkcs8.unwrap(), row.to_pkcs8.unwrap());
        let attrs = from(der).unwrap();
        let again = to(&private_object(kt, attrs.clone())).unwrap();
        assert_eq!(from(&again).unwrap(), attrs, "{}", row.name);
        assert_eq!(
            from(b"\x30\x03\x02\x01\x00").unwrap_err(),
            Error::WrappedKeyInvalid
        );
    }

    #[test]
    fn rsa_pkcs8_round_trip_through_the_table() {
        let der = include_bytes!("../fuzzing/rsa2048.pk8");
        round_trip(CKK_RSA, der);
        // The import check takes what PKCS#8 gave.
        let mut attrs = (lookup(CKK_RSA).unwrap().from_pkcs8.unwrap())(der).unwrap();
        (lookup(CKK_RSA).unwrap().import_private.unwrap())(&mut attrs).unwrap();
        // A public key gets its modulus size recorded.
        let mut public = Attrs::new();
        for ty in [CKA_MODULUS, CKA_PUBLIC_EXPONENT] {
            public.insert(ty, attrs[&ty].clone());
        }
        (lookup(CKK_RSA).unwrap().import_public.unwrap())(&mut public).unwrap();
        assert_eq!(public.get(&CKA_MODULUS_BITS), Some(&AttrValue::Ulong(2048)));
        public.insert(CKA_MODULUS, AttrValue::Bytes(vec![0; 4]));
        assert_eq!(
            (lookup(CKK_RSA).unwrap().import_public.unwrap())(&mut public).unwrap_err(),
            Error::AttributeValueInvalid
        );
    }

    #[test]
    fn curve25519_and_p521_pkcs8_round_trip_through_the_table() {
        // `openssl genpkey -algorithm ed25519 | x25519` forms (RFC 8410).
        let ed = hex_literal::hex!(
            "302e020100300506032b657004220420"
            "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
        );
        round_trip(CKK_EC_EDWARDS, &ed);
        let x = hex_literal::hex!(
            "302e020100300506032b656e04220420"
            "77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a"
        );
        round_trip(CKK_EC_MONTGOMERY, &x);
        let row = lookup(CKK_EC).unwrap();
        let mut attrs = Attrs::new();
        attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(ec::P521_PARAMS.to_vec()));
        // A scalar below the order (0x01ff…).
        attrs.insert(
            CKA_VALUE,
            AttrValue::Bytes([&[1u8][..], &[0x42; 65]].concat()),
        );
        (row.import_private.unwrap())(&mut attrs).unwrap();
        let der = (row.to_pkcs8.unwrap())(&private_object(CKK_EC, attrs.clone())).unwrap();
        round_trip(CKK_EC, &der);
        assert_eq!(
            (row.from_pkcs8.unwrap())(&der).unwrap().get(&CKA_EC_PARAMS),
            Some(&AttrValue::Bytes(ec::P521_PARAMS.to_vec()))
        );
    }

    #[test]
    fn ec_pkcs8_round_trip_through_the_table() {
        let row = lookup(CKK_EC).unwrap();
        let mut attrs = Attrs::new();
        attrs.insert(CKA_EC_PARAMS, AttrValue::Bytes(ec::P256_PARAMS.to_vec()));
        attrs.insert(CKA_VALUE, AttrValue::Bytes(vec![0x42; 32]));
        (row.import_private.unwrap())(&mut attrs).unwrap();
        let der = (row.to_pkcs8.unwrap())(&private_object(CKK_EC, attrs.clone())).unwrap();
        round_trip(CKK_EC, &der);
        let back = (row.from_pkcs8.unwrap())(&der).unwrap();
        for ty in [CKA_EC_PARAMS, CKA_VALUE, CKA_PUBLIC_KEY_INFO] {
            assert_eq!(back.get(&ty), attrs.get(&ty));
        }
    }
}
