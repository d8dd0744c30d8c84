//! The raw column's aws-lc-rs rows: when the module runs a row's operation
//! on AWS-LC (`ferrohsm_pkcs11::mechanism::backend`), its floor is aws-lc-rs
//! called directly, on the same keys as the RustCrypto rows, so F/raw stays
//! the share of the backend's own speed that the module reaches. Answers
//! are cross-checked against RustCrypto before timing.

use std::sync::OnceLock;

use aws_lc_rs::aead::{AES_256_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use aws_lc_rs::digest::{Digest as LcDigest, SHA256 as LC_SHA256};
use aws_lc_rs::rsa::{OAEP_SHA256_MGF1SHA256, OaepPrivateDecryptingKey, PrivateDecryptingKey};
use aws_lc_rs::signature::{self, EcdsaKeyPair, ParsedPublicKey, RsaKeyPair};
use p256::ecdsa::signature::hazmat::PrehashVerifier;
use rsa::Pkcs1v15Sign;
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey};
use sha2::{Digest, Sha256};

use crate::measure::OpFn;
use crate::rows::{GCM_IV_COUNTER, Op, RawPrepared, XKS_AAD_LEN, counter_iv, pattern, raw_keys};
use crate::token::{BResult, BenchError};

/// The backend that runs `op` in the module (and so in the raw column).
pub fn backend(op: Op) -> &'static str {
    use ferrohsm_pkcs11::mechanism::backend::{NAME, PRIVATE_NAME};
    match op {
        Op::EcdsaSign | Op::RsaSign | Op::RsaOaepDec => PRIVATE_NAME,
        // GCM with 12-byte IVs (as these rows use) runs on the backend too.
        Op::EcdsaVerify
        | Op::RsaVerify
        | Op::GcmEnc64
        | Op::GcmDec64
        | Op::GcmEnc4k
        | Op::GcmDec4k
        | Op::Xks => NAME,
        _ => "RustCrypto",
    }
}

/// Whether the raw row runs on aws-lc-rs.
pub fn takes(op: Op) -> bool {
    backend(op) == "aws-lc-rs"
}

struct Keys {
    gcm: LessSafeKey,
    ec: EcdsaKeyPair,
    ec_pub: ParsedPublicKey,
    rsa: RsaKeyPair,
    rsa_pub: ParsedPublicKey,
    oaep: OaepPrivateDecryptingKey,
}

fn fail<E: std::fmt::Debug>(what: &'static str) -> impl Fn(E) -> BenchError {
    move |e| BenchError::Fail(format!("aws-lc-rs {what}: {e:?}"))
}

fn keys() -> BResult<&'static Keys> {
    static KEYS: OnceLock<Keys> = OnceLock::new();
    if let Some(k) = KEYS.get() {
        return Ok(k);
    }
    let rk = raw_keys()?;
    let point = rk
        .ec
        .verifying_key()
        .to_sec1_point(false)
        .as_bytes()
        .to_vec();
    let ec = EcdsaKeyPair::from_private_key_and_public_key(
        &signature::ECDSA_P256_SHA256_FIXED_SIGNING,
        &rk.ec.to_bytes(),
        &point,
    )
    .map_err(fail("p256 key"))?;
    let ec_pub = ParsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, &point)
        .map_err(fail("p256 public key"))?;
    let der = rk.rsa.to_pkcs8_der().map_err(fail("pkcs8"))?;
    let rsa = RsaKeyPair::from_pkcs8(der.as_bytes()).map_err(fail("rsa key"))?;
    let spki = rk
        .rsa
        .to_public_key()
        .to_public_key_der()
        .map_err(fail("spki"))?;
    let rsa_pub = ParsedPublicKey::new(&signature::RSA_PKCS1_2048_8192_SHA256, spki.as_bytes())
        .map_err(fail("rsa public key"))?;
    let oaep = OaepPrivateDecryptingKey::new(
        PrivateDecryptingKey::from_pkcs8(der.as_bytes()).map_err(fail("rsa key"))?,
    )
    .map_err(fail("oaep key"))?;
    let gcm = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &rk.aes).map_err(fail("gcm key"))?);
    Ok(KEYS.get_or_init(|| Keys {
        gcm,
        ec,
        ec_pub,
        rsa,
        rsa_pub,
        oaep,
    }))
}

fn digest(d: &[u8]) -> BResult<LcDigest> {
    LcDigest::import_less_safe(d, &LC_SHA256).map_err(fail("digest"))
}

fn ensure(ok: bool, what: &str) -> BResult<()> {
    if ok {
        Ok(())
    } else {
        Err(BenchError::Fail(format!("aws-lc-rs: {what}")))
    }
}

/// Checks aws-lc-rs against RustCrypto on the prepared row (made by
/// `rows::raw_prepare`: the digest or message in `input`, RustCrypto's
/// signature or ciphertext in `aux`).
pub fn check(op: Op, p: &RawPrepared) -> BResult<()> {
    let k = keys()?;
    let rk = raw_keys()?;
    match op {
        Op::GcmEnc64 | Op::GcmDec64 | Op::GcmEnc4k | Op::GcmDec4k | Op::Xks => {
            let aad = if op == Op::Xks {
                pattern(XKS_AAD_LEN)
            } else {
                Vec::new()
            };
            let mut ct = p.input.clone();
            k.gcm
                .seal_in_place_append_tag(
                    Nonce::assume_unique_for_key(p.iv),
                    Aad::from(&aad),
                    &mut ct,
                )
                .map_err(fail("seal"))?;
            ensure(ct == p.aux, "GCM differs from RustCrypto's")
        }
        Op::EcdsaSign | Op::EcdsaVerify => {
            let sig = k.ec.sign_digest(&digest(&p.input)?).map_err(fail("sign"))?;
            let sig = p256::ecdsa::Signature::from_slice(sig.as_ref()).map_err(fail("sig"))?;
            rk.ec
                .verifying_key()
                .verify_prehash(&p.input, &sig)
                .map_err(fail("RustCrypto verify of aws-lc-rs's signature"))?;
            ensure(
                k.ec_pub
                    .verify_digest_sig(&digest(&p.input)?, &p.aux)
                    .is_ok(),
                "verify of RustCrypto's ECDSA signature",
            )
        }
        Op::RsaSign | Op::RsaVerify => {
            let d = Sha256::digest(&p.input);
            let mut sig = vec![0u8; k.rsa.public_modulus_len()];
            k.rsa
                .sign_digest(&signature::RSA_PKCS1_SHA256, &digest(&d)?, &mut sig)
                .map_err(fail("sign"))?;
            ensure(sig == p.aux, "PKCS#1 v1.5 signatures differ")?;
            rk.rsa
                .to_public_key()
                .verify(Pkcs1v15Sign::new::<Sha256>(), &d, &sig)
                .map_err(fail("RustCrypto verify"))?;
            ensure(
                k.rsa_pub.verify_digest_sig(&digest(&d)?, &p.aux).is_ok(),
                "verify of RustCrypto's RSA signature",
            )
        }
        Op::RsaOaepDec => {
            let mut out = vec![0u8; k.oaep.min_output_size()];
            let m = k
                .oaep
                .decrypt(&OAEP_SHA256_MGF1SHA256, &p.aux, &mut out, None)
                .map_err(fail("decrypt"))?;
            ensure(m == p.input.as_slice(), "OAEP round trip")?;
            Ok(())
        }
        _ => Ok(()),
    }
}

/// The aws-lc-rs version of the row's timed operation.
pub fn op<'a>(op: Op, p: &'a RawPrepared) -> BResult<OpFn<'a>> {
    let k = keys()?;
    Ok(match op {
        Op::GcmEnc64 | Op::GcmEnc4k => Box::new(move || {
            let mut b = p.input.clone();
            let iv = counter_iv(&GCM_IV_COUNTER);
            k.gcm
                .seal_in_place_append_tag(Nonce::assume_unique_for_key(iv), Aad::empty(), &mut b)
                .map_err(fail("seal"))?;
            std::hint::black_box(b);
            Ok(())
        }),
        Op::GcmDec64 | Op::GcmDec4k => Box::new(move || {
            let mut b = p.aux.clone();
            let n = k
                .gcm
                .open_in_place(Nonce::assume_unique_for_key(p.iv), Aad::empty(), &mut b)
                .map_err(fail("open"))?
                .len();
            std::hint::black_box(n);
            Ok(())
        }),
        Op::Xks => {
            let aad = pattern(XKS_AAD_LEN);
            Box::new(move || {
                let mut iv = [0u8; 12];
                getrandom::fill(&mut iv)
                    .map_err(|e| BenchError::Fail(format!("getrandom: {e}")))?;
                let mut b = p.input.clone();
                k.gcm
                    .seal_in_place_append_tag(
                        Nonce::assume_unique_for_key(iv),
                        Aad::from(&aad),
                        &mut b,
                    )
                    .map_err(fail("seal"))?;
                std::hint::black_box(b);
                Ok(())
            })
        }
        Op::EcdsaSign => Box::new(move || {
            std::hint::black_box(k.ec.sign_digest(&digest(&p.input)?).map_err(fail("sign"))?);
            Ok(())
        }),
        Op::EcdsaVerify => Box::new(move || {
            k.ec_pub
                .verify_digest_sig(&digest(&p.input)?, &p.aux)
                .map_err(fail("verify"))
        }),
        Op::RsaSign => Box::new(move || {
            let d = Sha256::digest(&p.input);
            let mut sig = [0u8; 256];
            k.rsa
                .sign_digest(&signature::RSA_PKCS1_SHA256, &digest(&d)?, &mut sig)
                .map_err(fail("sign"))?;
            std::hint::black_box(sig);
            Ok(())
        }),
        Op::RsaVerify => Box::new(move || {
            let d = Sha256::digest(&p.input);
            k.rsa_pub
                .verify_digest_sig(&digest(&d)?, &p.aux)
                .map_err(fail("verify"))
        }),
        Op::RsaOaepDec => Box::new(move || {
            let mut out = [0u8; 256];
            let m = k
                .oaep
                .decrypt(&OAEP_SHA256_MGF1SHA256, &p.aux, &mut out, None)
                .map_err(fail("decrypt"))?;
            std::hint::black_box(m);
            Ok(())
        }),
        _ => return Err(BenchError::Skip("no aws-lc-rs row".into())),
    })
}
