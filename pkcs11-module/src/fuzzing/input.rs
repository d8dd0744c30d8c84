//! What the fuzz targets and their seeds share: the input reader, value
//! lists, and a fixed set of key objects of every type.
#![forbid(unsafe_code)]

use std::sync::OnceLock;

use cryptoki_sys::*;
use ferrohsm_store::AttrValue;

use crate::mechanism::{self, ec, edwards, rsa};
use crate::object::Object;
use crate::object::policy::{self, Attrs};

/// A fixed RSA-2048 test key (PKCS#8, made with `openssl genpkey`): generating
/// one per run would cost seconds in a debug build. Not secret, never a token key.
pub(super) const RSA_TEST_KEY: &[u8] = include_bytes!("rsa2048.pk8");

/// Reads fuzz input front to back; past the end every read gives zeros, so
/// any input, even empty, decodes to something.
pub(super) struct Input<'a>(pub(super) &'a [u8]);

impl<'a> Input<'a> {
    pub(super) fn byte(&mut self) -> u8 {
        match self.0.split_first() {
            Some((b, rest)) => {
                self.0 = rest;
                *b
            }
            None => 0,
        }
    }

    pub(super) fn ulong(&mut self) -> CK_ULONG {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.byte();
        }
        u64::from_le_bytes(b) as CK_ULONG
    }

    /// A length: mostly small, sometimes up to 64 KiB.
    pub(super) fn len(&mut self) -> usize {
        match self.byte() {
            b @ 0..=0xef => b as usize,
            _ => u16::from_le_bytes([self.byte(), self.byte()]) as usize,
        }
    }

    pub(super) fn bytes(&mut self) -> &'a [u8] {
        let n = self.len().min(self.0.len());
        let (b, rest) = self.0.split_at(n);
        self.0 = rest;
        b
    }

    pub(super) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }

    /// Mostly one of `valid`, sometimes any value.
    pub(super) fn pick(&mut self, valid: &[CK_ULONG]) -> CK_ULONG {
        match self.byte() {
            b @ 0..=0xdf => valid[b as usize % valid.len()],
            _ => self.ulong(),
        }
    }
}

pub(super) const HASHES: &[CK_ULONG] = &[
    CKM_SHA_1,
    CKM_SHA224,
    CKM_SHA256,
    CKM_SHA384,
    CKM_SHA512,
    CKM_SHA3_224,
    CKM_SHA3_256,
    CKM_SHA3_384,
    CKM_SHA3_512,
    CKM_MD5,
];
pub(super) const MGFS: &[CK_ULONG] = &[
    CKG_MGF1_SHA1,
    CKG_MGF1_SHA224,
    CKG_MGF1_SHA256,
    CKG_MGF1_SHA384,
    CKG_MGF1_SHA512,
    CKG_MGF1_SHA3_224,
    CKG_MGF1_SHA3_256,
    CKG_MGF1_SHA3_384,
    CKG_MGF1_SHA3_512,
];

/// Sizes a caller may sensibly name (tags, salts, counters, lengths).
pub(super) const SIZES: &[CK_ULONG] = &[0, 1, 4, 8, 12, 16, 20, 32, 48, 64, 96, 128, 256, 512];

/// Test keys, one object per kind: handles 1.. in this order.
pub(super) struct Keys(pub(super) Vec<Object>);

pub(super) fn object(handle: CK_OBJECT_HANDLE, attrs: Attrs) -> Object {
    Object {
        handle,
        store_id: handle,
        owner: None,
        attrs,
        cache: Default::default(),
    }
}

pub(super) fn with_identity(mut attrs: Attrs, class: CK_ULONG, kt: CK_ULONG) -> Attrs {
    attrs.insert(CKA_CLASS, AttrValue::Ulong(class));
    attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(kt));
    attrs
}

pub(super) fn keys() -> &'static Keys {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    KEYS.get_or_init(|| {
        let secret = |kt, value: &[u8]| {
            let mut a = with_identity(Attrs::new(), CKO_SECRET_KEY, kt);
            policy::set_secret_value(&mut a, kt, value).expect("test secret");
            a
        };
        let mut all = vec![
            secret(CKK_GENERIC_SECRET, &[0x5a; 32]),
            secret(CKK_AES, &[0x11; 16]),
            secret(CKK_AES, &[0x22; 32]),
            secret(CKK_GENERIC_SECRET, &[0x01]),
            secret(CKK_AES_XTS, &[[0x33; 16], [0x34; 16]].concat()),
            secret(CKK_AES_XTS, &[[0x44; 32], [0x45; 32]].concat()),
            secret(CKK_CHACHA20, &[0x55; 32]),
        ];
        let rsa_priv = rsa::from_pkcs8(RSA_TEST_KEY).expect("the RSA test key parses");
        let mut rsa_pub = Attrs::new();
        for ty in [CKA_MODULUS, CKA_PUBLIC_EXPONENT, CKA_PUBLIC_KEY_INFO] {
            rsa_pub.insert(ty, rsa_priv[&ty].clone());
        }
        all.push(with_identity(rsa_priv, CKO_PRIVATE_KEY, CKK_RSA));
        all.push(with_identity(rsa_pub, CKO_PUBLIC_KEY, CKK_RSA));
        for params in [ec::P256_PARAMS, ec::P384_PARAMS, ec::P521_PARAMS] {
            let mut t = Attrs::new();
            t.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
            let (mut public, mut private) = ec::generate(&t).expect("EC test key");
            for a in [&mut public, &mut private] {
                a.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
            }
            all.push(with_identity(private, CKO_PRIVATE_KEY, CKK_EC));
            all.push(with_identity(public, CKO_PUBLIC_KEY, CKK_EC));
        }
        // Legacy DES keys last, so that the handles above stay as they were.
        all.push(secret(CKK_DES, &[0x01; 8]));
        all.push(secret(CKK_DES2, &[0x23; 16]));
        all.push(secret(CKK_DES3, &[0x45; 24]));
        // Ed25519 and X25519 pairs (curve by OID and by name).
        for (kt, params, generate) in [
            (
                CKK_EC_EDWARDS,
                edwards::ED25519_OID,
                edwards::generate_edwards as fn(&Attrs) -> _,
            ),
            (
                CKK_EC_MONTGOMERY,
                edwards::X25519_NAME,
                edwards::generate_montgomery,
            ),
        ] {
            let mut t = Attrs::new();
            t.insert(CKA_EC_PARAMS, AttrValue::Bytes(params.to_vec()));
            let (public, private) = generate(&t).expect("curve25519 test key");
            all.push(with_identity(private, CKO_PRIVATE_KEY, kt));
            all.push(with_identity(public, CKO_PUBLIC_KEY, kt));
        }
        Keys(
            all.into_iter()
                .enumerate()
                .map(|(i, a)| object(i as CK_OBJECT_HANDLE + 1, a))
                .collect(),
        )
    })
}

impl Keys {
    pub(super) fn by_handle(&self, h: CK_OBJECT_HANDLE) -> Option<&Object> {
        self.0.iter().find(|o| o.handle == h)
    }

    /// A key the mechanism takes (mostly), or any key.
    pub(super) fn choose(&self, m: &mechanism::Mechanism, u: &mut Input<'_>) -> &Object {
        let b = u.byte();
        let fitting: Vec<&Object> = self
            .0
            .iter()
            .filter(|o| {
                o.ulong(CKA_KEY_TYPE)
                    .is_some_and(|kt| m.key_types.contains(&kt))
            })
            .collect();
        if b < 0xe0 && !fitting.is_empty() {
            fitting[b as usize % fitting.len()]
        } else {
            &self.0[b as usize % self.0.len()]
        }
    }

    /// The half of `key`'s pair of class `other` (the key itself when it
    /// is of that class, or a secret key).
    pub(super) fn holding<'k>(&'k self, key: &'k Object, other: CK_OBJECT_CLASS) -> &'k Object {
        if !matches!(key.ulong(CKA_CLASS), Some(CKO_PRIVATE_KEY | CKO_PUBLIC_KEY))
            || key.ulong(CKA_CLASS) == Some(other)
        {
            return key;
        }
        let same = |o: &&Object| {
            o.ulong(CKA_CLASS) == Some(other)
                && o.ulong(CKA_KEY_TYPE) == key.ulong(CKA_KEY_TYPE)
                && o.bytes(CKA_EC_PARAMS) == key.bytes(CKA_EC_PARAMS)
        };
        self.0.iter().find(same).unwrap_or(key)
    }
}
