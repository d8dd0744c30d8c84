//! The `key_files` fuzz target's body: `ferrohsm import`'s file parser
//! (`tools/src/import.rs`: PEM or DER PKCS#8 (RSA, EC, Ed25519), PKCS#1 and SEC1 private keys,
//! X.509 certificates, raw AES keys) and its SubjectPublicKeyInfo reader.
//! Included with `#[path]` next to `mod import` by the libFuzzer target and
//! by the tool's replay test (`tools/src/fuzz_replay.rs`).

use crate::import::{self, Material};

/// Whatever parses gives material the token can take: a supported curve
/// with a scalar and point of its size, an SPKI that parses again, RSA
/// components without leading zeros.
pub fn key_files(data: &[u8]) {
    let _ = import::key_id(data);
    for aes in [false, true] {
        // Every key or certificate of the file (the tool's own reader: a
        // bundle gives several, which `import` then refuses or takes as a chain).
        let Ok(all) = import::parse_all(data, aes) else {
            continue;
        };
        for m in &all {
            check(m, aes);
        }
    }
}

/// The checks on one parsed key or certificate.
fn check(m: &Material, aes: bool) {
    let _ = m.kind();
    match m {
        Material::Rsa {
            n,
            e,
            private,
            spki,
        } => {
            assert!(
                n.first().is_some_and(|&b| b != 0),
                "RSA modulus with a leading zero"
            );
            assert!(
                e.first().is_some_and(|&b| b != 0),
                "RSA exponent with a leading zero"
            );
            assert!(
                private.iter().all(|p| !p.is_empty()),
                "an empty RSA component"
            );
            assert!(
                import::key_id(spki).is_some(),
                "RSA SPKI does not parse back"
            );
        }
        Material::Ed25519 { seed, point, spki } => {
            assert_eq!(seed.len(), 32, "Ed25519 seed of the wrong size");
            assert_eq!(point.len(), 34, "Ed25519 point of the wrong size");
            assert!(
                import::key_id(spki).is_some(),
                "Ed25519 SPKI does not parse back"
            );
        }
        Material::Ec {
            params,
            scalar,
            point,
            spki,
        } => {
            let size = match *params {
                p if p == import::P256_OID => 32,
                p if p == import::P384_OID => 48,
                p => {
                    assert_eq!(p, import::P521_OID, "EC key on another curve");
                    66
                }
            };
            assert_eq!(scalar.len(), size, "EC scalar of the wrong size");
            // DER OCTET STRING: a long-form length for P-521's 133 bytes.
            let header = if size == 66 { 3 } else { 2 };
            assert_eq!(
                point.len(),
                header + 1 + 2 * size,
                "EC point of the wrong size"
            );
            assert!(
                import::key_id(spki).is_some(),
                "EC SPKI does not parse back"
            );
        }
        Material::Cert { der, spki } => {
            assert!(!der.is_empty());
            assert!(
                import::key_id(spki).is_some(),
                "certificate SPKI does not parse back"
            );
        }
        Material::Aes(k) => {
            assert!(
                aes && matches!(k.len(), 16 | 24 | 32),
                "AES key of the wrong size"
            )
        }
    }
    assert!(m.default_id().is_some() || matches!(m, Material::Aes(_)));
}
