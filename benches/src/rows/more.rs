//! Rows for issue 18 point 6: ECDSA P-384, RSA-PSS, RSA-3072/4096,
//! Ed25519 (`CKM_EDDSA`) and OAEP with SHA-1 (the only OAEP SoftHSMv2 2.6
//! decrypts, so the one OAEP row with a SoftHSMv2 column). Kept apart from the first rows so that each family
//! reads in one place; `rows.rs` dispatches to these functions.
//!
//! No raw-crate column: the module runs these on its backend (aws-lc-rs for
//! RSA and EC in the default build), so a RustCrypto column would not be the
//! floor it is for the first rows.

use cryptoki::mechanism::eddsa::{EddsaParams, EddsaSignatureScheme};
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource, PkcsPssParams};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;
use cryptoki::types::Ulong;
use rsa::{BoxedUint, Oaep, Pkcs1v15Sign, Pss, PublicKey as RsaPublicKey};
use sha1::Sha1;
use sha2::{Digest, Sha256, Sha384};

use super::{Op, Prepared, pattern, rsa_public};
use crate::fixed_keys::{FixedRsa, RSA_3072, RSA_4096};
use crate::measure::OpFn;
use crate::token::{BResult, BenchError, context, ensure};

/// DER of the P-384 curve OID (secp384r1), the `CKA_EC_PARAMS` value.
const P384_OID_DER: [u8; 7] = [0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x22];
/// DER of the Ed25519 OID (RFC 8410), the `CKA_EC_PARAMS` value.
const ED25519_OID_DER: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
/// Message length of the RSA and EdDSA rows (as the RSA-2048 rows).
const MSG_LEN: usize = 64;

/// The keys of these rows, made once per module.
#[derive(Default)]
pub struct MoreKeys {
    p384: Option<(ObjectHandle, ObjectHandle)>,
    ed25519: Option<(ObjectHandle, ObjectHandle)>,
    rsa3072: Option<ObjectHandle>,
    rsa4096: Option<ObjectHandle>,
}

/// `(id, title, mechanisms)` of a row of this file.
pub fn describe(op: Op) -> Option<(&'static str, &'static str, &'static [MechanismType])> {
    Some(match op {
        Op::EcdsaP384Sign => (
            "ecdsa_p384_sign",
            "ECDSA P-384 sign",
            &[MechanismType::ECDSA, MechanismType::ECC_KEY_PAIR_GEN],
        ),
        Op::EcdsaP384Verify => (
            "ecdsa_p384_verify",
            "ECDSA P-384 verify",
            &[MechanismType::ECDSA, MechanismType::ECC_KEY_PAIR_GEN],
        ),
        Op::RsaPssSign => (
            "rsa2048_pss_sign",
            "RSA-2048 PSS sign",
            &[
                MechanismType::SHA256_RSA_PKCS_PSS,
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            ],
        ),
        Op::Rsa3072Sign => (
            "rsa3072_sign",
            "RSA-3072 PKCS#1 sign",
            &[MechanismType::SHA256_RSA_PKCS],
        ),
        Op::Rsa4096Sign => (
            "rsa4096_sign",
            "RSA-4096 PKCS#1 sign",
            &[MechanismType::SHA256_RSA_PKCS],
        ),
        Op::EddsaSign => (
            "eddsa_ed25519_sign",
            "EdDSA Ed25519 sign",
            &[
                MechanismType::EDDSA,
                MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
            ],
        ),
        Op::EddsaVerify => (
            "eddsa_ed25519_verify",
            "EdDSA Ed25519 verify",
            &[
                MechanismType::EDDSA,
                MechanismType::ECC_EDWARDS_KEY_PAIR_GEN,
            ],
        ),
        Op::RsaOaepSha1Dec => (
            "rsa2048_oaep_sha1_dec",
            "RSA-2048 OAEP-SHA1 dec",
            &[
                MechanismType::RSA_PKCS_OAEP,
                MechanismType::RSA_PKCS_KEY_PAIR_GEN,
            ],
        ),
        _ => return None,
    })
}

fn oaep_sha1() -> Mechanism<'static> {
    Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA1,
        PkcsMgfType::MGF1_SHA1,
        PkcsOaepSource::empty(),
    ))
}

fn pss() -> Mechanism<'static> {
    Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: Ulong::from(32),
    })
}

fn eddsa() -> Mechanism<'static> {
    Mechanism::Eddsa(EddsaParams::new(EddsaSignatureScheme::Pure))
}

/// A signing key pair on curve `params` (`mech`: its generation mechanism).
fn curve_pair(
    s: &Session,
    mech: &Mechanism,
    params: &[u8],
    label: &str,
) -> BResult<(ObjectHandle, ObjectHandle)> {
    let l = label.as_bytes().to_vec();
    let public = [
        Attribute::Token(true),
        Attribute::EcParams(params.to_vec()),
        Attribute::Verify(true),
        Attribute::Label(l.clone()),
    ];
    let private = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(l),
    ];
    Ok(s.generate_key_pair(mech, &public, &private)?)
}

fn unhex(h: &str) -> Vec<u8> {
    (0..h.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&h[i..i + 2], 16).unwrap_or(0))
        .collect()
}

/// Imports a fixed RSA private key as a sensitive, non-extractable token key.
fn import_rsa(s: &Session, k: &FixedRsa, label: &str) -> BResult<ObjectHandle> {
    let t = [
        Attribute::Class(ObjectClass::PRIVATE_KEY),
        Attribute::KeyType(KeyType::RSA),
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Modulus(unhex(k.n)),
        Attribute::PublicExponent(vec![1, 0, 1]),
        Attribute::PrivateExponent(unhex(k.d)),
        Attribute::Prime1(unhex(k.p)),
        Attribute::Prime2(unhex(k.q)),
        Attribute::Exponent1(unhex(k.dp)),
        Attribute::Exponent2(unhex(k.dq)),
        Attribute::Coefficient(unhex(k.qinv)),
    ];
    Ok(s.create_object(&t)?)
}

fn fixed_public(k: &FixedRsa) -> BResult<RsaPublicKey> {
    let n = unhex(k.n);
    let bad = |e: String| BenchError::Fail(format!("fixed RSA key: {e}"));
    let n = BoxedUint::from_be_slice(&n, (n.len() * 8) as u32).map_err(|e| bad(e.to_string()))?;
    let e = BoxedUint::from_be_slice(&[1, 0, 1], 64).map_err(|e| bad(e.to_string()))?;
    RsaPublicKey::new(n, e).map_err(|e| bad(e.to_string()))
}

/// Checks a curve row's sign/verify round trip (and that a tampered
/// signature fails) and fills `p`.
fn check_curve(
    s: &Session,
    mech: &Mechanism,
    pair: (ObjectHandle, ObjectHandle),
    sig_len: usize,
    p: &mut Prepared,
) -> BResult<()> {
    let (public, private) = pair;
    let sig = s.sign(mech, private, &p.input)?;
    ensure(sig.len() == sig_len, || {
        format!("signature of {} bytes, want {sig_len}", sig.len())
    })?;
    context(
        s.verify(mech, public, &p.input, &sig).map_err(Into::into),
        "verify(sign(x))",
    )?;
    let mut bad = sig.clone();
    bad[sig_len / 2 + 3] ^= 0x01;
    ensure(s.verify(mech, public, &p.input, &bad).is_err(), || {
        "verify accepted a wrong signature".into()
    })?;
    (p.key, p.public, p.aux) = (Some(private), Some(public), sig);
    Ok(())
}

/// Checks a row's answer and returns what its timed operation needs.
pub fn prepare(
    op: Op,
    s: &Session,
    keys: &mut MoreKeys,
    rsa2048: Option<(ObjectHandle, ObjectHandle)>,
    p: &mut Prepared,
) -> BResult<()> {
    match op {
        Op::EcdsaP384Sign | Op::EcdsaP384Verify => {
            if keys.p384.is_none() {
                keys.p384 = Some(curve_pair(
                    s,
                    &Mechanism::EccKeyPairGen,
                    &P384_OID_DER,
                    "bench-p384",
                )?);
            }
            let pair = keys
                .p384
                .ok_or_else(|| BenchError::Fail("no P-384 key".into()))?;
            p.input = Sha384::digest(pattern(MSG_LEN)).to_vec();
            check_curve(s, &Mechanism::Ecdsa, pair, 96, p)
        }
        Op::EddsaSign | Op::EddsaVerify => {
            if keys.ed25519.is_none() {
                keys.ed25519 = Some(curve_pair(
                    s,
                    &Mechanism::EccEdwardsKeyPairGen,
                    &ED25519_OID_DER,
                    "bench-ed25519",
                )?);
            }
            let pair = keys
                .ed25519
                .ok_or_else(|| BenchError::Fail("no Ed25519 key".into()))?;
            p.input = pattern(MSG_LEN);
            check_curve(s, &eddsa(), pair, 64, p)
        }
        Op::RsaPssSign => {
            let (public, private) =
                rsa2048.ok_or_else(|| BenchError::Fail("no RSA-2048 key".into()))?;
            p.input = pattern(MSG_LEN);
            let sig = s.sign(&pss(), private, &p.input)?;
            ensure(sig.len() == 256, || {
                format!("RSA-2048 PSS signature of {} bytes", sig.len())
            })?;
            context(
                s.verify(&pss(), public, &p.input, &sig).map_err(Into::into),
                "verify(sign(x))",
            )?;
            let pk = rsa_public(s, public)?;
            let digest = Sha256::digest(&p.input);
            ensure(
                pk.verify(Pss::<Sha256>::new(), &digest, &sig).is_ok(),
                || "the rsa crate rejects the token's PSS signature".into(),
            )?;
            p.key = Some(private);
            Ok(())
        }
        Op::RsaOaepSha1Dec => {
            let (public, private) =
                rsa2048.ok_or_else(|| BenchError::Fail("no RSA-2048 key".into()))?;
            p.input = pattern(32);
            let ct = s.encrypt(&oaep_sha1(), public, &p.input)?;
            ensure(ct.len() == 256, || {
                format!("OAEP ciphertext of {} bytes", ct.len())
            })?;
            let pt = s.decrypt(&oaep_sha1(), private, &ct)?;
            ensure(pt == p.input, || "RSA-OAEP decrypt(encrypt(x)) != x".into())?;
            // The rsa crate's ciphertext decrypts on the token too.
            let ct2 = rsa_public(s, public)?
                .encrypt(&mut getrandom::SysRng, Oaep::<Sha1>::new(), &p.input)
                .map_err(|e| BenchError::Fail(format!("rsa crate OAEP encrypt: {e}")))?;
            let pt2 = s.decrypt(&oaep_sha1(), private, &ct2)?;
            ensure(pt2 == p.input, || {
                "token OAEP-decrypts the rsa crate's ciphertext wrongly".into()
            })?;
            (p.key, p.aux) = (Some(private), ct);
            Ok(())
        }
        Op::Rsa3072Sign | Op::Rsa4096Sign => {
            let (fixed, slot, label, len) = if op == Op::Rsa3072Sign {
                (&RSA_3072, &mut keys.rsa3072, "bench-rsa3072", 384)
            } else {
                (&RSA_4096, &mut keys.rsa4096, "bench-rsa4096", 512)
            };
            let key = match *slot {
                Some(k) => k,
                None => *slot.insert(import_rsa(s, fixed, label)?),
            };
            p.input = pattern(MSG_LEN);
            let sig = s.sign(&Mechanism::Sha256RsaPkcs, key, &p.input)?;
            ensure(sig.len() == len, || {
                format!("RSA signature of {} bytes, want {len}", sig.len())
            })?;
            let digest = Sha256::digest(&p.input);
            ensure(
                fixed_public(fixed)?
                    .verify(Pkcs1v15Sign::new::<Sha256>(), &digest, &sig)
                    .is_ok(),
                || "the rsa crate rejects the token's PKCS#1 signature".into(),
            )?;
            p.key = Some(key);
            Ok(())
        }
        _ => Err(BenchError::Fail(format!(
            "internal: {op:?} is not a row of rows/more.rs"
        ))),
    }
}

/// The timed operation of a row of this file, in session `s`.
pub fn p11_op<'a>(op: Op, s: Session, p: &'a Prepared) -> BResult<OpFn<'a>> {
    let missing = || BenchError::Fail("internal: row prepared without its key".into());
    Ok(match op {
        Op::EcdsaP384Sign | Op::EddsaSign | Op::RsaPssSign | Op::Rsa3072Sign | Op::Rsa4096Sign => {
            let key = p.key.ok_or_else(missing)?;
            let mech = match op {
                Op::EcdsaP384Sign => Mechanism::Ecdsa,
                Op::EddsaSign => eddsa(),
                Op::RsaPssSign => pss(),
                _ => Mechanism::Sha256RsaPkcs,
            };
            Box::new(move || {
                s.sign(&mech, key, &p.input)?;
                Ok(())
            })
        }
        Op::RsaOaepSha1Dec => {
            let key = p.key.ok_or_else(missing)?;
            Box::new(move || {
                s.decrypt(&oaep_sha1(), key, &p.aux)?;
                Ok(())
            })
        }
        Op::EcdsaP384Verify | Op::EddsaVerify => {
            let public = p.public.ok_or_else(missing)?;
            let mech = if op == Op::EddsaVerify {
                eddsa()
            } else {
                Mechanism::Ecdsa
            };
            Box::new(move || Ok(s.verify(&mech, public, &p.input, &p.aux)?))
        }
        _ => return Err(missing()),
    })
}
