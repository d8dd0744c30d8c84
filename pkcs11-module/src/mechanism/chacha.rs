//! ChaCha20 (`CKK_CHACHA20` keys): the AEAD `CKM_CHACHA20_POLY1305` (RFC
//! 8439 with a 12-byte nonce, XChaCha20-Poly1305 with a 24-byte one) and the
//! plain stream cipher `CKM_CHACHA20`, both from RustCrypto (`chacha20poly1305`,
//! `chacha20`).
#![forbid(unsafe_code)]

use std::sync::Arc;

use aes::cipher::{KeyIvInit, StreamCipher, StreamCipherSeek};
use chacha20::{ChaCha20, ChaCha20Legacy, XChaCha20};
use chacha20poly1305::aead::AeadInOut;
use chacha20poly1305::{ChaCha20Poly1305, KeyInit, XChaCha20Poly1305};
use zeroize::Zeroizing;

use super::{CipherOp, Dir, OneShot, Param, buffered, cached, key_value};
use crate::error::{Error, Result};
use crate::object::Object;

/// Length of a ChaCha20 key (v3.0: "fixed at 256 bits").
pub const KEY_LEN: usize = 32;

/// Length of a Poly1305 tag.
const TAG_LEN: usize = 16;

/// A ChaCha20 key's value, copied once into the key region and cached with
/// the object.
pub struct ChaChaKey(Zeroizing<[u8; KEY_LEN]>);

impl ChaChaKey {
    fn new(value: &[u8]) -> Result<ChaChaKey> {
        let k: [u8; KEY_LEN] = value.try_into().map_err(|_| Error::KeySizeRange)?;
        Ok(ChaChaKey(Zeroizing::new(k)))
    }
}

/// The cached key of an object.
pub fn chacha_key(key: &Object) -> Result<Arc<ChaChaKey>> {
    cached(key, || ChaChaKey::new(key_value(key)?))
}

/// `CKA_CHECK_VALUE` of a `CKK_CHACHA20` key. PKCS#11 v3.0 §4.10 takes the
/// first three bytes of zeros encrypted with the key type's cipher: here the
/// ChaCha20 keystream under an all-zero nonce and counter.
pub fn check_value(value: &[u8]) -> Result<[u8; 3]> {
    let k = ChaChaKey::new(value)?;
    let mut b = [0u8; 3];
    let kb: &[u8; KEY_LEN] = &k.0;
    ChaCha20::new(kb.into(), &[0u8; 12].into()).apply_keystream(&mut b);
    Ok(b)
}

// ---- ChaCha20-Poly1305 ----------------------------------------------------------------

/// The AEAD over the whole input; the tag follows the ciphertext.
struct ChaChaPoly {
    key: Arc<ChaChaKey>,
    dir: Dir,
    nonce: Vec<u8>,
    aad: Vec<u8>,
}

impl ChaChaPoly {
    /// Encrypts `buf` in place and returns the tag, or decrypts it in place
    /// if `tag` matches.
    fn seal_or_open(&self, buf: &mut [u8], tag: Option<&[u8]>) -> Result<[u8; TAG_LEN]> {
        let kb: &[u8; KEY_LEN] = &self.key.0;
        let k = kb.into();
        macro_rules! go {
            ($aead:expr) => {{
                let aead = $aead;
                let nonce = self
                    .nonce
                    .as_slice()
                    .try_into()
                    .map_err(|_| Error::MechanismParamInvalid)?;
                match tag {
                    None => aead
                        .encrypt_inout_detached(nonce, &self.aad, buf.into())
                        .map(|t| t.into())
                        .map_err(|_| Error::DataLenRange),
                    Some(t) => {
                        let t = t.try_into().map_err(|_| Error::EncryptedDataInvalid)?;
                        aead.decrypt_inout_detached(nonce, &self.aad, buf.into(), t)
                            .map(|()| [0; TAG_LEN])
                            .map_err(|_| Error::EncryptedDataInvalid)
                    }
                }
            }};
        }
        match self.nonce.len() {
            12 => go!(ChaCha20Poly1305::new(k)),
            24 => go!(XChaCha20Poly1305::new(k)),
            _ => Err(Error::MechanismParamInvalid),
        }
    }
}

impl OneShot for ChaChaPoly {
    fn out_len(&self, len: usize) -> usize {
        match self.dir {
            Dir::Encrypt => len + TAG_LEN,
            Dir::Decrypt => len.saturating_sub(TAG_LEN),
        }
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        match self.dir {
            Dir::Encrypt => {
                let (body, tag_out) = out[..input.len() + TAG_LEN].split_at_mut(input.len());
                body.copy_from_slice(input);
                tag_out.copy_from_slice(&self.seal_or_open(body, None)?);
                Ok(input.len() + TAG_LEN)
            }
            Dir::Decrypt => {
                if input.len() < TAG_LEN {
                    return Err(Error::EncryptedDataLenRange);
                }
                let (ct, tag) = input.split_at(input.len() - TAG_LEN);
                // Into scratch space: nothing reaches the caller unless the
                // tag matched.
                let mut plain = Zeroizing::new(ct.to_vec());
                self.seal_or_open(&mut plain, Some(tag))?;
                out[..plain.len()].copy_from_slice(&plain);
                Ok(plain.len())
            }
        }
    }
}

/// Builds `CKM_CHACHA20_POLY1305` from `CK_SALSA20_CHACHA20_POLY1305_PARAMS`:
/// a 12-byte nonce (RFC 8439), a 24-byte one (XChaCha20-Poly1305) or an
/// 8-byte one: the original ChaCha20's 64-bit nonce under RFC 8439's AEAD
/// construction, whose state is the 12-byte nonce with four zero bytes in
/// front (as OpenSSL pads a short ChaCha20-Poly1305 IV, on the left).
pub fn chacha20_poly1305(
    param: &Param,
    key: Arc<ChaChaKey>,
    dir: Dir,
) -> Result<Box<dyn CipherOp>> {
    let Param::ChaChaPoly { nonce, aad } = param else {
        return Err(Error::MechanismParamInvalid);
    };
    let nonce = match nonce.len() {
        12 | 24 => nonce.clone(),
        8 => [&[0u8; 4][..], nonce].concat(),
        _ => return Err(Error::MechanismParamInvalid),
    };
    Ok(buffered(ChaChaPoly {
        key,
        dir,
        nonce,
        aad: aad.clone(),
    }))
}

// ---- ChaCha20 -------------------------------------------------------------------------

/// The two counter/nonce splits of `CK_CHACHA20_PARAMS`.
enum Stream {
    /// RFC 8439: 32-bit counter, 96-bit nonce.
    Ietf(ChaCha20),
    /// The original: 64-bit counter, 64-bit nonce.
    Legacy(ChaCha20Legacy),
    /// XChaCha20: 192-bit nonce (HChaCha20 subkey), 32-bit counter.
    X(XChaCha20),
}

/// The plain stream cipher, multi-part: every update is output at once.
struct ChaChaStream {
    stream: Stream,
    dir: Dir,
}

impl ChaChaStream {
    fn apply(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        let buf = &mut out[..input.len()];
        buf.copy_from_slice(input);
        // The crate refuses (and leaves `buf` alone) rather than let the
        // block counter wrap. The key's words pass through the stack and
        // vector registers: wiped after.
        let stream = &mut self.stream;
        crate::secret::scrubbed(|| match stream {
            Stream::Ietf(c) => c.try_apply_keystream(buf),
            Stream::Legacy(c) => c.try_apply_keystream(buf),
            Stream::X(c) => c.try_apply_keystream(buf),
        })
        .map_err(|_| {
            buf.fill(0);
            match self.dir {
                Dir::Encrypt => Error::DataLenRange,
                Dir::Decrypt => Error::EncryptedDataLenRange,
            }
        })?;
        Ok(input.len())
    }
}

impl CipherOp for ChaChaStream {
    fn single_len(&self, len: usize) -> usize {
        len
    }
    fn single(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        self.apply(input, out)
    }
    fn update_len(&self, len: usize) -> usize {
        len
    }
    fn update(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        self.apply(input, out)
    }
    fn final_len(&self) -> usize {
        0
    }
    fn finish(&mut self, _out: &mut [u8]) -> Result<usize> {
        Ok(0)
    }
}

/// Builds `CKM_CHACHA20` from `CK_CHACHA20_PARAMS`: a 32-bit block counter
/// with a 96-bit nonce (RFC 8439), a 64-bit counter with a 64-bit nonce
/// (the original ChaCha20), or a 192-bit nonce (XChaCha20) with a 32- or
/// 64-bit counter below 2^32 (the variant the nonce length picks, as the
/// v3.0 text has it). The counter is read as the state holds it:
/// little-endian, as OpenSSL's `chacha20` IV carries it.
pub fn chacha20(param: &Param, key: Arc<ChaChaKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let Param::ChaCha20 {
        counter,
        counter_bits,
        nonce,
        nonce_bits,
    } = param
    else {
        return Err(Error::MechanismParamInvalid);
    };
    // The cipher state holds the key: built in the key region, with the
    // stack it passed through wiped.
    crate::secret::scope(|| {
        let kb: &[u8; KEY_LEN] = &key.0;
        stream_op(kb.into(), counter, *counter_bits, nonce, *nonce_bits, dir)
    })
}

/// The stream operation for one counter/nonce split (see `chacha20`).
fn stream_op(
    k: &chacha20::Key,
    counter: &[u8],
    counter_bits: u64,
    nonce: &[u8],
    nonce_bits: u64,
    dir: Dir,
) -> Result<Box<dyn CipherOp>> {
    let stream = match (counter_bits, nonce_bits) {
        (32, 96) => {
            let ctr = u32::from_le_bytes(
                counter
                    .try_into()
                    .map_err(|_| Error::MechanismParamInvalid)?,
            );
            let n: [u8; 12] = nonce.try_into().map_err(|_| Error::MechanismParamInvalid)?;
            let mut c = ChaCha20::new(k, &n.into());
            c.seek(u64::from(ctr) * 64);
            Stream::Ietf(c)
        }
        (64, 64) => {
            let ctr = u64::from_le_bytes(
                counter
                    .try_into()
                    .map_err(|_| Error::MechanismParamInvalid)?,
            );
            let n: [u8; 8] = nonce.try_into().map_err(|_| Error::MechanismParamInvalid)?;
            let mut c = ChaCha20Legacy::new(k, &n.into());
            c.seek(u128::from(ctr) * 64);
            Stream::Legacy(c)
        }
        (32 | 64, 192) => {
            let mut b = [0u8; 8];
            b.get_mut(..counter.len())
                .ok_or(Error::MechanismParamInvalid)?
                .copy_from_slice(counter);
            let ctr =
                u32::try_from(u64::from_le_bytes(b)).map_err(|_| Error::MechanismParamInvalid)?;
            let n: [u8; 24] = nonce.try_into().map_err(|_| Error::MechanismParamInvalid)?;
            let mut c = XChaCha20::new(k, &n.into());
            c.seek(u64::from(ctr) * 64);
            Stream::X(c)
        }
        _ => return Err(Error::MechanismParamInvalid),
    };
    Ok(Box::new(ChaChaStream { stream, dir }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn key(k: &[u8]) -> Arc<ChaChaKey> {
        Arc::new(ChaChaKey::new(k).unwrap())
    }

    fn run_single(mut op: Box<dyn CipherOp>, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0u8; op.single_len(input.len())];
        let n = op.single(input, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    fn run_parts(mut op: Box<dyn CipherOp>, parts: &[&[u8]]) -> Result<Vec<u8>> {
        let mut all = Vec::new();
        for p in parts {
            let mut out = vec![0u8; op.update_len(p.len())];
            let n = op.update(p, &mut out)?;
            all.extend_from_slice(&out[..n]);
        }
        let mut out = vec![0u8; op.final_len()];
        let n = op.finish(&mut out)?;
        all.extend_from_slice(&out[..n]);
        Ok(all)
    }

    const RFC_KEY: [u8; 32] =
        hex!("808182838485868788898a8b8c8d8e8f909192939495969798999a9b9c9d9e9f");
    const SUNSCREEN: &[u8] = b"Ladies and Gentlemen of the class of '99: If I could offer you \
only one tip for the future, sunscreen would be it.";

    /// RFC 8439 §2.8.2.
    #[test]
    fn rfc8439_aead_vector() {
        let p = Param::ChaChaPoly {
            nonce: hex!("070000004041424344454647").to_vec(),
            aad: hex!("50515253c0c1c2c3c4c5c6c7").to_vec(),
        };
        let want = [
            &hex!(
                "d31a8d34648e60db7b86afbc53ef7ec2a4aded51296e08fea9e2b5a736ee62d6"
                "3dbea45e8ca9671282fafb69da92728b1a71de0a9e060b2905d6a5b67ecd3b36"
                "92ddbd7f2d778b8c9803aee328091b58fab324e4fad675945585808b4831d7bc"
                "3ff4def08e4b7a9de576d26586cec64b6116"
            )[..],
            &hex!("1ae10b594f09e26a7e902ecbd0600691"),
        ]
        .concat();
        let ct = run_single(
            chacha20_poly1305(&p, key(&RFC_KEY), Dir::Encrypt).unwrap(),
            SUNSCREEN,
        )
        .unwrap();
        assert_eq!(ct, want);
        let parts: Vec<&[u8]> = ct.chunks(7).collect();
        assert_eq!(
            run_parts(
                chacha20_poly1305(&p, key(&RFC_KEY), Dir::Decrypt).unwrap(),
                &parts
            )
            .unwrap(),
            SUNSCREEN
        );
        for i in [0, 50, ct.len() - 1] {
            let mut bad = ct.clone();
            bad[i] ^= 4;
            assert_eq!(
                run_single(
                    chacha20_poly1305(&p, key(&RFC_KEY), Dir::Decrypt).unwrap(),
                    &bad
                )
                .err(),
                Some(Error::EncryptedDataInvalid)
            );
        }
        assert_eq!(
            run_single(
                chacha20_poly1305(&p, key(&RFC_KEY), Dir::Decrypt).unwrap(),
                &ct[..15]
            )
            .err(),
            Some(Error::EncryptedDataLenRange)
        );
    }

    /// draft-irtf-cfrg-xchacha-03 §A.3.1.
    #[test]
    fn xchacha20_poly1305_vector() {
        let p = Param::ChaChaPoly {
            nonce: hex!("404142434445464748494a4b4c4d4e4f5051525354555657").to_vec(),
            aad: hex!("50515253c0c1c2c3c4c5c6c7").to_vec(),
        };
        let ct = run_single(
            chacha20_poly1305(&p, key(&RFC_KEY), Dir::Encrypt).unwrap(),
            SUNSCREEN,
        )
        .unwrap();
        assert_eq!(&ct[..16], hex!("bd6d179d3e83d43b9576579493c0e939"));
        assert_eq!(
            &ct[ct.len() - 16..],
            hex!("c0875924c1c7987947deafd8780acf49")
        );
    }

    #[test]
    fn aead_refuses_bad_parameters() {
        for bad in [
            Param::ChaChaPoly {
                nonce: vec![0; 7],
                aad: vec![],
            },
            Param::ChaChaPoly {
                nonce: vec![0; 16],
                aad: vec![],
            },
            Param::Raw(vec![0; 12]),
            Param::None,
        ] {
            assert_eq!(
                chacha20_poly1305(&bad, key(&RFC_KEY), Dir::Encrypt).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
    }

    /// An 8-byte nonce is the 12-byte one with four zero bytes in front.
    #[test]
    fn aead_short_nonce_is_left_padded() {
        let short = Param::ChaChaPoly {
            nonce: vec![7; 8],
            aad: b"a".to_vec(),
        };
        let long = Param::ChaChaPoly {
            nonce: [&[0u8; 4][..], &[7; 8]].concat(),
            aad: b"a".to_vec(),
        };
        let a = run_single(
            chacha20_poly1305(&short, key(&RFC_KEY), Dir::Encrypt).unwrap(),
            SUNSCREEN,
        )
        .unwrap();
        let b = run_single(
            chacha20_poly1305(&long, key(&RFC_KEY), Dir::Encrypt).unwrap(),
            SUNSCREEN,
        )
        .unwrap();
        assert_eq!(a, b);
        assert_eq!(
            run_single(
                chacha20_poly1305(&short, key(&RFC_KEY), Dir::Decrypt).unwrap(),
                &a
            )
            .unwrap(),
            SUNSCREEN
        );
    }

    /// XChaCha20: the AEAD of draft-irtf-cfrg-xchacha-03 §A.3.1 encrypts
    /// with the stream from block 1, so the stream with counter 1 over its
    /// plaintext gives its ciphertext (either counter width).
    #[test]
    fn xchacha20_stream() {
        let nonce = hex!("404142434445464748494a4b4c4d4e4f5051525354555657");
        for counter in [&1u32.to_le_bytes()[..], &1u64.to_le_bytes()] {
            let p = stream_param(counter, &nonce);
            let ct = run_single(
                chacha20(&p, key(&RFC_KEY), Dir::Encrypt).unwrap(),
                SUNSCREEN,
            )
            .unwrap();
            assert_eq!(&ct[..16], hex!("bd6d179d3e83d43b9576579493c0e939"));
        }
        // A 64-bit counter past 32 bits is refused, not wrapped.
        let p = stream_param(&(1u64 << 32).to_le_bytes(), &nonce);
        assert_eq!(
            chacha20(&p, key(&RFC_KEY), Dir::Encrypt).err(),
            Some(Error::MechanismParamInvalid)
        );
    }

    fn stream_param(counter: &[u8], nonce: &[u8]) -> Param {
        Param::ChaCha20 {
            counter: counter.to_vec(),
            counter_bits: counter.len() as u64 * 8,
            nonce: nonce.to_vec(),
            nonce_bits: nonce.len() as u64 * 8,
        }
    }

    /// RFC 8439 §2.4.2 (counter 1), single and in parts; the legacy split
    /// with the nonce's first four bytes zero gives the same stream.
    #[test]
    fn rfc8439_stream_vector() {
        let k: Vec<u8> = (0..32).collect();
        let p = stream_param(&1u32.to_le_bytes(), &hex!("000000000000004a00000000"));
        let want_head = hex!("6e2e359a2568f98041ba0728dd0d6981");
        let ct = run_single(chacha20(&p, key(&k), Dir::Encrypt).unwrap(), SUNSCREEN).unwrap();
        assert_eq!(&ct[..16], want_head);
        assert_eq!(&ct[ct.len() - 2..], hex!("874d"));
        let parts: Vec<&[u8]> = ct.chunks(13).collect();
        assert_eq!(
            run_parts(chacha20(&p, key(&k), Dir::Decrypt).unwrap(), &parts).unwrap(),
            SUNSCREEN
        );
        // The original split (64-bit counter, 64-bit nonce) with a zero
        // counter and nonce gives the same stream as RFC 8439's.
        let ietf = stream_param(&[0; 4], &[0; 12]);
        let legacy = stream_param(&[0; 8], &[0; 8]);
        let a = run_single(chacha20(&ietf, key(&k), Dir::Encrypt).unwrap(), &[0; 100]).unwrap();
        let b = run_single(chacha20(&legacy, key(&k), Dir::Encrypt).unwrap(), &[0; 100]).unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn stream_counter_end_and_bad_parameters() {
        let k = [1u8; 32];
        // Near the end of the 32-bit counter: refused, never wrapped.
        let p = stream_param(&(u32::MAX - 1).to_le_bytes(), &[0; 12]);
        assert!(run_single(chacha20(&p, key(&k), Dir::Encrypt).unwrap(), &[0; 64]).is_ok());
        assert_eq!(
            run_single(chacha20(&p, key(&k), Dir::Encrypt).unwrap(), &[0; 129]).err(),
            Some(Error::DataLenRange)
        );
        let mut op = chacha20(&p, key(&k), Dir::Decrypt).unwrap();
        let mut out = [0u8; 200];
        assert_eq!(
            op.update(&[0; 200], &mut out).err(),
            Some(Error::EncryptedDataLenRange)
        );
        for bad in [
            stream_param(&[0; 4], &[0; 8]),
            stream_param(&[0; 8], &[0; 12]),
            stream_param(&[0; 2], &[0; 12]),
            Param::Raw(vec![0; 16]),
        ] {
            assert_eq!(
                chacha20(&bad, key(&k), Dir::Encrypt).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
    }

    #[test]
    fn check_value_is_keystream_head() {
        // RFC 8439 §2.3.2's block function test is with counter 1; with an
        // all-zero key, nonce and counter the stream starts 76b8e0 (RFC 8439
        // A.1 test vector 1).
        assert_eq!(check_value(&[0; 32]).unwrap(), hex!("76b8e0"));
        assert_eq!(check_value(&[0; 16]).err(), Some(Error::KeySizeRange));
    }
}
