//! Reading key and certificate files for `ferrohsm import`: PKCS#8, PKCS#1
//! and SEC1 private keys and X.509 certificates, PEM or DER, and raw AES
//! keys. Parsing only; the objects are made in `keys`.

use der::{Decode, Encode};
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::spki::SubjectPublicKeyInfoRef;
use rsa::pkcs8::{DecodePrivateKey, EncodePublicKey};
use rsa::traits::{PrivateKeyParts, PublicKeyParts};
use sha1::{Digest, Sha1};
use zeroize::Zeroizing;

/// DER of the namedCurve OID prime256v1 (1.2.840.10045.3.1.7): `CKA_EC_PARAMS`.
pub const P256_OID: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// DER of the namedCurve OID secp384r1 (1.3.132.0.34): `CKA_EC_PARAMS`.
pub const P384_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the namedCurve OID secp521r1 (1.3.132.0.35): `CKA_EC_PARAMS`.
pub const P521_OID: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x23];
/// DER of the OID id-Ed25519 (1.3.101.112, RFC 8410): `CKA_EC_PARAMS`.
pub const ED25519_OID: &[u8] = &[0x06, 0x03, 0x2b, 0x65, 0x70];

/// What a file held, in PKCS#11 terms.
pub enum Material {
    /// An RSA private key: big-endian components as PKCS#11 stores them.
    Rsa {
        /// `CKA_MODULUS`.
        n: Vec<u8>,
        /// `CKA_PUBLIC_EXPONENT`.
        e: Vec<u8>,
        /// `CKA_PRIVATE_EXPONENT`, `CKA_PRIME_1`, `CKA_PRIME_2`,
        /// `CKA_EXPONENT_1`, `CKA_EXPONENT_2`, `CKA_COEFFICIENT`.
        private: [Zeroizing<Vec<u8>>; 6],
        /// The public key as SubjectPublicKeyInfo DER.
        spki: Vec<u8>,
    },
    /// An EC private key on P-256 or P-384.
    Ec {
        /// `CKA_EC_PARAMS`: the DER curve OID.
        params: &'static [u8],
        /// `CKA_VALUE`: the private scalar.
        scalar: Zeroizing<Vec<u8>>,
        /// `CKA_EC_POINT`: the public point as a DER OCTET STRING.
        point: Vec<u8>,
        /// The public key as SubjectPublicKeyInfo DER.
        spki: Vec<u8>,
    },
    /// An Ed25519 private key (`CKK_EC_EDWARDS`).
    Ed25519 {
        /// `CKA_VALUE`: the 32-byte RFC 8032 seed.
        seed: Zeroizing<Vec<u8>>,
        /// `CKA_EC_POINT`: the public key as a DER OCTET STRING.
        point: Vec<u8>,
        /// The public key as SubjectPublicKeyInfo DER.
        spki: Vec<u8>,
    },
    /// An X.509 certificate (DER).
    Cert {
        /// `CKA_VALUE`.
        der: Vec<u8>,
        /// Its subject public key as SubjectPublicKeyInfo DER.
        spki: Vec<u8>,
    },
    /// A raw AES key.
    Aes(Zeroizing<Vec<u8>>),
}

impl Material {
    /// What it is, for messages.
    pub fn kind(&self) -> &'static str {
        match self {
            Material::Rsa { .. } => "RSA private key",
            Material::Ec { params, .. } if *params == P256_OID => "EC P-256 private key",
            Material::Ec { params, .. } if *params == P384_OID => "EC P-384 private key",
            Material::Ec { .. } => "EC P-521 private key",
            Material::Ed25519 { .. } => "Ed25519 private key",
            Material::Cert { .. } => "X.509 certificate",
            Material::Aes(_) => "AES key",
        }
    }

    /// The SubjectPublicKeyInfo DER of a key pair or certificate.
    pub fn spki(&self) -> Option<&[u8]> {
        match self {
            Material::Rsa { spki, .. }
            | Material::Ec { spki, .. }
            | Material::Ed25519 { spki, .. }
            | Material::Cert { spki, .. } => Some(spki),
            Material::Aes(_) => None,
        }
    }

    /// The default `CKA_ID`: SHA-1 of the subjectPublicKey bits (the RFC 5280
    /// §4.2.1.2 key identifier), so a key and its certificate match.
    pub fn default_id(&self) -> Option<Vec<u8>> {
        match self {
            Material::Rsa { spki, .. }
            | Material::Ec { spki, .. }
            | Material::Ed25519 { spki, .. }
            | Material::Cert { spki, .. } => key_id(spki),
            Material::Aes(_) => None,
        }
    }
}

/// SHA-1 of the subjectPublicKey BIT STRING of a SubjectPublicKeyInfo.
pub fn key_id(spki: &[u8]) -> Option<Vec<u8>> {
    let info = SubjectPublicKeyInfoRef::from_der(spki).ok()?;
    Some(Sha1::digest(info.subject_public_key.raw_bytes()).to_vec())
}

/// A big-endian integer without leading zero bytes.
fn be(u: &rsa::BoxedUint) -> Vec<u8> {
    let b = u.to_be_bytes();
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

fn rsa_material(key: &rsa::PrivateKey) -> Result<Material, String> {
    let primes = key.primes();
    if primes.len() != 2 {
        return Err(format!(
            "RSA keys with {} primes are not supported (two only)",
            primes.len()
        ));
    }
    let (Some(dp), Some(dq), Some(qinv)) = (key.dp(), key.dq(), key.crt_coefficient()) else {
        return Err("the RSA key lacks its CRT components".into());
    };
    let spki = key
        .to_public_key()
        .to_public_key_der()
        .map_err(|e| format!("cannot encode the RSA public key: {e}"))?
        .as_bytes()
        .to_vec();
    Ok(Material::Rsa {
        n: be(key.n()),
        e: be(key.e()),
        private: [
            Zeroizing::new(be(key.d())),
            Zeroizing::new(be(&primes[0])),
            Zeroizing::new(be(&primes[1])),
            Zeroizing::new(be(dp)),
            Zeroizing::new(be(dq)),
            Zeroizing::new(be(&qinv)),
        ],
        spki,
    })
}

/// The public point of a SubjectPublicKeyInfo as a DER OCTET STRING.
fn ec_point(spki: &[u8]) -> Result<Vec<u8>, String> {
    let info = SubjectPublicKeyInfoRef::from_der(spki).map_err(|e| e.to_string())?;
    der::asn1::OctetString::new(info.subject_public_key.raw_bytes())
        .and_then(|o| o.to_der())
        .map_err(|e| e.to_string())
}

fn ec_material(
    params: &'static [u8],
    scalar: Vec<u8>,
    spki: Result<der::Document, rsa::pkcs8::spki::Error>,
) -> Result<Material, String> {
    let spki = spki
        .map_err(|e| format!("cannot encode the EC public key: {e}"))?
        .as_bytes()
        .to_vec();
    Ok(Material::Ec {
        params,
        scalar: Zeroizing::new(scalar),
        point: ec_point(&spki)?,
        spki,
    })
}

fn p256_material(k: &p256::SecretKey) -> Result<Material, String> {
    ec_material(
        P256_OID,
        k.to_bytes().to_vec(),
        k.public_key().to_public_key_der(),
    )
}

fn p384_material(k: &p384::SecretKey) -> Result<Material, String> {
    ec_material(
        P384_OID,
        k.to_bytes().to_vec(),
        k.public_key().to_public_key_der(),
    )
}

fn cert_material(der: &[u8]) -> Result<Material, String> {
    let cert =
        x509_cert::Certificate::from_der(der).map_err(|e| format!("bad certificate: {e}"))?;
    let spki = cert
        .tbs_certificate()
        .subject_public_key_info()
        .to_der()
        .map_err(|e| format!("bad certificate: {e}"))?;
    Ok(Material::Cert {
        der: der.to_vec(),
        spki,
    })
}

fn p521_material(k: &p521::SecretKey) -> Result<Material, String> {
    ec_material(
        P521_OID,
        k.to_bytes().to_vec(),
        k.public_key().to_public_key_der(),
    )
}

/// An RFC 8410 Ed25519 PKCS#8 key: the seed inside its OCTET STRING, the
/// public key computed from it (and checked against a v2 key's own).
fn ed25519_material(info: &rsa::pkcs8::PrivateKeyInfoRef<'_>) -> Result<Material, String> {
    let inner = info.private_key.as_bytes();
    let seed: [u8; 32] = match inner {
        [0x04, 0x20, rest @ ..] => rest.try_into().ok(),
        _ => None,
    }
    .ok_or("bad Ed25519 private key: not a 32-byte CurvePrivateKey")?;
    let seed = Zeroizing::new(seed);
    let public = ed25519_dalek::SigningKey::from_bytes(&seed)
        .verifying_key()
        .to_bytes();
    if info
        .public_key
        .is_some_and(|p| p.raw_bytes() != public.as_slice())
    {
        return Err("bad Ed25519 private key: its public key does not match".into());
    }
    let spki = [
        &[0x30, 0x2a, 0x30, 0x05][..],
        ED25519_OID,
        &[0x03, 0x21, 0x00],
        &public,
    ]
    .concat();
    Ok(Material::Ed25519 {
        seed: Zeroizing::new(seed.to_vec()),
        point: [&[0x04, 0x20][..], &public].concat(),
        spki,
    })
}

/// A PKCS#8 `PrivateKeyInfo`.
fn pkcs8(der: &[u8]) -> Result<Material, String> {
    if let Ok(k) = rsa::PrivateKey::from_pkcs8_der(der) {
        return rsa_material(&k);
    }
    if let Ok(k) = p256::SecretKey::from_pkcs8_der(der) {
        return p256_material(&k);
    }
    if let Ok(k) = p384::SecretKey::from_pkcs8_der(der) {
        return p384_material(&k);
    }
    if let Ok(k) = p521::SecretKey::from_pkcs8_der(der) {
        return p521_material(&k);
    }
    match rsa::pkcs8::PrivateKeyInfoRef::from_der(der) {
        Ok(info) if info.algorithm.oid.as_bytes() == &ED25519_OID[2..] => ed25519_material(&info),
        Ok(info) => {
            let params = info
                .algorithm
                .parameters
                .as_ref()
                .and_then(|p| p.to_der().ok());
            Err(unsupported(
                &info.algorithm.oid.to_string(),
                params.as_deref(),
            ))
        }
        Err(e) => Err(format!("bad PKCS#8 private key: {e}")),
    }
}

/// Names of algorithms and curves FerroHSM cannot import yet, by OID.
const NAMED: &[(&str, &str)] = &[
    ("1.3.132.0.33", "P-224"),
    ("1.2.840.10045.3.1.1", "P-192"),
    ("1.3.132.0.10", "secp256k1"),
    ("1.3.36.3.3.2.8.1.1.7", "brainpoolP256r1"),
    ("1.3.36.3.3.2.8.1.1.11", "brainpoolP384r1"),
    ("1.3.36.3.3.2.8.1.1.13", "brainpoolP512r1"),
    ("1.2.156.10197.1.301", "SM2"),
    ("1.3.101.110", "X25519"),
    ("1.3.101.111", "X448"),
    ("1.3.101.113", "Ed448"),
    ("1.2.840.10040.4.1", "DSA"),
    ("1.2.840.113549.1.3.1", "Diffie-Hellman"),
    ("1.2.840.10046.2.1", "X9.42 Diffie-Hellman"),
    ("1.2.840.113549.1.1.10", "RSASSA-PSS"),
];

/// `id-ecPublicKey`: the curve is in the parameters.
const EC_PUBLIC_KEY: &str = "1.2.840.10045.2.1";

/// Why a key of algorithm `oid` (with DER `params`) is refused, naming the
/// algorithm or curve when it is a known one.
fn unsupported(oid: &str, params: Option<&[u8]>) -> String {
    // A supported algorithm that did not parse is a damaged key.
    if oid == EC_PUBLIC_KEY && params == Some(P256_OID) {
        return "bad EC P-256 private key".into();
    }
    if oid == EC_PUBLIC_KEY && params == Some(P384_OID) {
        return "bad EC P-384 private key".into();
    }
    if oid == EC_PUBLIC_KEY && params == Some(P521_OID) {
        return "bad EC P-521 private key".into();
    }
    if oid == "1.2.840.113549.1.1.1" {
        return "bad RSA private key".into();
    }
    let what = if oid == EC_PUBLIC_KEY {
        let curve = params.and_then(|p| {
            let oid: der::asn1::ObjectIdentifier = der::asn1::ObjectIdentifier::from_der(p).ok()?;
            Some(oid.to_string())
        });
        match curve {
            Some(c) => NAMED
                .iter()
                .find(|(o, _)| *o == c)
                .map_or_else(|| format!("EC curve {c}"), |(_, n)| format!("EC {n}")),
            None => "this EC curve encoding (explicit parameters)".to_string(),
        }
    } else {
        NAMED.iter().find(|(o, _)| *o == oid).map_or_else(
            || format!("private key algorithm {oid}"),
            |(_, n)| n.to_string(),
        )
    };
    format!("{what} is not supported yet (RSA, EC P-256/P-384/P-521 and Ed25519 keys are)")
}

/// A SEC1 `ECPrivateKey`.
fn sec1(der: &[u8]) -> Result<Material, String> {
    if let Ok(k) = p256::SecretKey::from_sec1_der(der) {
        return p256_material(&k);
    }
    if let Ok(k) = p384::SecretKey::from_sec1_der(der) {
        return p384_material(&k);
    }
    if let Ok(k) = p521::SecretKey::from_sec1_der(der) {
        return p521_material(&k);
    }
    match sec1_curve(der) {
        Some(curve) => Err(unsupported(EC_PUBLIC_KEY, Some(curve))),
        None => Err("bad or unsupported SEC1 EC private key (P-256, P-384 and P-521 only)".into()),
    }
}

/// One DER TLV at `pos`: (tag, start of contents, end). Definite lengths only.
fn tlv(b: &[u8], pos: usize) -> Option<(u8, usize, usize)> {
    let tag = *b.get(pos)?;
    let first = *b.get(pos + 1)?;
    let (len, start) = if first < 0x80 {
        (usize::from(first), pos + 2)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let len = b
            .get(pos + 2..pos + 2 + n)?
            .iter()
            .fold(0usize, |acc, &x| (acc << 8) | usize::from(x));
        (len, pos + 2 + n)
    };
    let end = start.checked_add(len)?;
    (end <= b.len()).then_some((tag, start, end))
}

/// The DER curve OID in the `[0]` parameters of a SEC1 `ECPrivateKey`
/// (`SEQUENCE { version, privateKey OCTET STRING, [0] curve, [1] point }`).
fn sec1_curve(der: &[u8]) -> Option<&[u8]> {
    let (0x30, body, _) = tlv(der, 0)? else {
        return None;
    };
    let (0x02, _, after_version) = tlv(der, body)? else {
        return None;
    };
    let (0x04, _, after_key) = tlv(der, after_version)? else {
        return None;
    };
    let (0xa0, curve, _) = tlv(der, after_key)? else {
        return None;
    };
    let (0x06, _, end) = tlv(der, curve)? else {
        return None;
    };
    der.get(curve..end)
}

/// A PKCS#1 `RSAPrivateKey`.
fn pkcs1(der: &[u8]) -> Result<Material, String> {
    let k = rsa::PrivateKey::from_pkcs1_der(der)
        .map_err(|e| format!("bad PKCS#1 RSA private key: {e}"))?;
    rsa_material(&k)
}

/// One PEM block: its label and contents.
type PemBlock = (String, Zeroizing<Vec<u8>>);

/// The PEM blocks of a text.
fn pem_blocks(text: &str) -> Result<Vec<PemBlock>, String> {
    let mut out = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let block = &rest[start..];
        let end_marker = block
            .find("-----END ")
            .ok_or("a PEM block has no END line")?;
        let after = &block[end_marker + 9..];
        let close = after.find("-----").ok_or("a PEM END line is malformed")?;
        let len = end_marker + 9 + close + 5;
        let pem = &block[..len];
        if pem.contains("Proc-Type:") {
            return Err(
                "encrypted PEM keys are not supported: decrypt first (openssl pkey -in FILE -out plain.pem)"
                    .into(),
            );
        }
        let (label, der) =
            der::pem::decode_vec(pem.as_bytes()).map_err(|e| format!("bad PEM block: {e}"))?;
        out.push((label.to_string(), Zeroizing::new(der)));
        rest = &block[len..];
    }
    Ok(out)
}

/// Reads a key or certificate file's contents: one key or certificate.
/// `aes`: the bytes are a raw AES key.
#[cfg(test)]
pub fn parse(bytes: &[u8], aes: bool) -> Result<Material, String> {
    let mut all = parse_all(bytes, aes)?;
    match all.len() {
        1 => Ok(all.remove(0)),
        n => Err(format!("{n} keys or certificates in one file")),
    }
}

/// Reads a key or certificate file's contents: every key and certificate
/// in it, in file order (a PEM file may hold a key and its chain).
/// `aes`: the bytes are a raw AES key.
pub fn parse_all(bytes: &[u8], aes: bool) -> Result<Vec<Material>, String> {
    if aes {
        return match bytes.len() {
            16 | 24 | 32 => Ok(vec![Material::Aes(Zeroizing::new(bytes.to_vec()))]),
            n => Err(format!(
                "an AES key file must hold exactly 16, 24 or 32 bytes (this one has {n})"
            )),
        };
    }
    let text = std::str::from_utf8(bytes).ok();
    if let Some(text) = text.filter(|t| t.contains("-----BEGIN ")) {
        let blocks = pem_blocks(text)?;
        let mut out = Vec::new();
        for (i, (label, der)) in blocks.iter().enumerate() {
            let m = match label.as_str() {
                "PRIVATE KEY" => pkcs8(der),
                "RSA PRIVATE KEY" => pkcs1(der),
                "EC PRIVATE KEY" => sec1(der),
                "CERTIFICATE" | "X509 CERTIFICATE" | "TRUSTED CERTIFICATE" => cert_material(der),
                "ENCRYPTED PRIVATE KEY" => Err(
                    "encrypted PKCS#8 keys are not supported: decrypt first (openssl pkey -in FILE -out plain.pem)"
                        .into(),
                ),
                // `openssl ecparam -genkey` writes the curve first.
                "EC PARAMETERS" => continue,
                other => Err(format!(
                    "unsupported PEM block {other:?} (PRIVATE KEY, RSA PRIVATE KEY, EC PRIVATE KEY or CERTIFICATE)"
                )),
            };
            let m = if blocks.len() > 1 {
                m.map_err(|e| format!("PEM block {} ({label}): {e}", i + 1))?
            } else {
                m?
            };
            out.push(m);
        }
        if out.is_empty() {
            return Err("no key or certificate in the PEM file".into());
        }
        return Ok(out);
    }
    // DER: the first format that parses.
    if bytes.first() != Some(&0x30) {
        return Err("not a PEM or DER key or certificate (use --aes for a raw AES key)".into());
    }
    if rsa::pkcs8::PrivateKeyInfoRef::from_der(bytes).is_ok() {
        return pkcs8(bytes).map(|m| vec![m]);
    }
    if x509_cert::Certificate::from_der(bytes).is_ok() {
        return cert_material(bytes).map(|m| vec![m]);
    }
    if let Ok(m) = pkcs1(bytes) {
        return Ok(vec![m]);
    }
    let sec1_result = sec1(bytes);
    if let Ok(m) = sec1_result {
        return Ok(vec![m]);
    }
    if let Err(e) = sec1_result
        && e.contains("not supported yet")
    {
        return Err(e);
    }
    Err(
        "not a supported key or certificate (PKCS#8, PKCS#1, SEC1 private keys or X.509 certificates, PEM or DER)"
            .into(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::pkcs1::EncodeRsaPrivateKey;
    use rsa::pkcs8::EncodePrivateKey;

    fn p256_key() -> p256::SecretKey {
        p256::SecretKey::from_bytes(&[7u8; 32].into()).unwrap()
    }

    #[test]
    fn ec_pkcs8_and_sec1_in_pem_and_der() {
        let k = p256_key();
        let pk8 = k.to_pkcs8_der().unwrap();
        let sec1 = k.to_sec1_der().unwrap();
        for bytes in [pk8.as_bytes().to_vec(), sec1.to_vec()] {
            match parse(&bytes, false).unwrap() {
                Material::Ec {
                    params,
                    scalar,
                    point,
                    spki,
                } => {
                    assert_eq!(params, P256_OID);
                    assert_eq!(&scalar[..], &[7u8; 32]);
                    assert_eq!(point.len(), 2 + 65);
                    assert_eq!(&point[..3], &[0x04, 65, 0x04]);
                    assert!(key_id(&spki).is_some());
                }
                _ => panic!("not EC"),
            }
        }
        let pem =
            der::pem::encode_string("EC PRIVATE KEY", der::pem::LineEnding::LF, &sec1).unwrap();
        let with_params = format!(
            "-----BEGIN EC PARAMETERS-----\nBggqhkjOPQMBBw==\n-----END EC PARAMETERS-----\n{pem}"
        );
        assert_eq!(
            parse(with_params.as_bytes(), false).unwrap().kind(),
            "EC P-256 private key"
        );
    }

    #[test]
    fn rsa_pkcs1_and_pkcs8() {
        let k = rsa::PrivateKey::new(&mut getrandom::SysRng, 1024).unwrap();
        let p1 = k.to_pkcs1_der().unwrap();
        let p8 = k.to_pkcs8_der().unwrap();
        for bytes in [p1.as_bytes(), p8.as_bytes()] {
            match parse(bytes, false).unwrap() {
                Material::Rsa { n, e, private, .. } => {
                    assert_eq!(e, vec![1, 0, 1]);
                    assert_eq!(n.len(), 128);
                    assert!(private.iter().all(|c| !c.is_empty()));
                }
                _ => panic!("not RSA"),
            }
        }
    }

    #[test]
    fn truncated_and_altered_files_are_errors_not_panics() {
        let k = p256_key();
        let der = k.to_pkcs8_der().unwrap().as_bytes().to_vec();
        let pem = der::pem::encode_string("PRIVATE KEY", der::pem::LineEnding::LF, &der).unwrap();
        for len in 0..der.len() {
            assert!(parse(&der[..len], false).is_err(), "DER cut at {len}");
        }
        for len in 0..pem.len() {
            let _ = parse(&pem.as_bytes()[..len], false);
        }
        for i in 0..der.len() {
            let mut bad = der.clone();
            bad[i] ^= 0xff;
            let _ = parse(&bad, false);
        }
    }

    #[test]
    fn raw_aes_and_garbage() {
        assert!(matches!(parse(&[1; 32], true), Ok(Material::Aes(_))));
        assert!(parse(&[1; 31], true).is_err());
        assert!(parse(b"hello", false).is_err());
        assert!(parse(&[0x30, 0x03, 0x02, 0x01, 0x01], false).is_err());
        assert!(parse(b"-----BEGIN PRIVATE KEY-----\nxx\n", false).is_err());
        assert!(parse(b"-----BEGIN FOO-----\nAAAA\n-----END FOO-----\n", false).is_err());
        assert!(parse(b"", false).is_err());
    }
}
