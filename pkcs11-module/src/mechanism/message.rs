//! The mechanism side of the v3.0 message-based encryption functions
//! (`C_MessageEncryptInit` … `C_MessageDecryptFinal`): one key, many
//! messages, each with its own parameter (IV, tag) and associated data. A
//! row offers them through its `aead` column; `CKM_AES_GCM` does, with
//! `CK_GCM_MESSAGE_PARAMS` and its IV generators.
//!
//! # IV generators (`ivGenerator`)
//!
//! With `CKG_NO_GENERATE` the caller's IV is used as given (as `C_Encrypt`
//! with `CKM_AES_GCM` does); avoiding reuse is then the caller's business.
//! With a generator the token makes the IV and writes it back into `pIv`:
//! the first `ulIvFixedBits` bits stay as the caller gave them, the rest are
//! a counter (`CKG_GENERATE`, `CKG_GENERATE_COUNTER`) that lives as long as
//! the message operation and never repeats in it (the operation refuses a
//! message once every value of the counter field was used), or fresh random
//! bits (`CKG_GENERATE_RANDOM`, at least 64 of them: SP 800-38D §8.2.2 would
//! want 96).
//!
//! The counter starts at a random value for each `C_MessageEncryptInit`
//! (`IvCounter`). SP 800-38D §8.2.1 wants the invocation field unique for
//! the key across all its uses; a soft token that forgets its counters when
//! the process ends cannot promise that, but a random start keeps two
//! operations under one key (two sessions, two processes, a restart) from
//! walking the same IVs from zero, as they would with a counter that always
//! starts at 0. Decryption always takes the IV as given.
#![forbid(unsafe_code)]

use std::sync::Arc;

use ::aes::Block;
use cryptoki_sys::*;
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use zeroize::Zeroize;

use crate::error::{Error, Result};
use crate::mechanism::aes::{self, AesKey};
use crate::mechanism::{Dir, Param};

/// The C layout of a message's parameter (`pParameter` of
/// `C_EncryptMessage` & co.), which `ffi` reads.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageShape {
    /// No parameter (the sign and verify families).
    None,
    /// `CK_GCM_MESSAGE_PARAMS`: `MessageParam::Gcm`.
    Gcm,
}

/// A message's parameter as the C caller gave it, made safe by `ffi`; what
/// the token writes back (a generated IV, the tag) is written into it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MessageParam {
    /// No parameter.
    None,
    /// `CK_GCM_MESSAGE_PARAMS`.
    Gcm(GcmMessage),
}

/// `CK_GCM_MESSAGE_PARAMS` with the pointed-to IV (and, for decryption, tag)
/// copied.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GcmMessage {
    /// `pIv`: the IV, or its fixed part when a generator is asked for.
    pub iv: Vec<u8>,
    /// `ulIvFixedBits`.
    pub fixed_bits: CK_ULONG,
    /// `ivGenerator` (`CKG_*`).
    pub generator: CK_ULONG,
    /// `ulTagBits`.
    pub tag_bits: CK_ULONG,
    /// `pTag`: read for decryption; written by encryption.
    pub tag: Vec<u8>,
    /// The token generated the IV: `ffi` writes `iv` back into `pIv`.
    pub iv_out: bool,
    /// Encryption produced `tag`: `ffi` writes it into `pTag`.
    pub tag_out: bool,
}

impl MessageShape {
    /// The size of the C structure (0 for none): a mechanism parameter of
    /// `C_Message*Init` of this size is a first message's parameter, which
    /// callers such as the `cryptoki` crate pass there; it is not used.
    pub fn c_size(self) -> usize {
        match self {
            MessageShape::None => 0,
            MessageShape::Gcm => std::mem::size_of::<CK_GCM_MESSAGE_PARAMS>(),
        }
    }
}

impl MessageParam {
    /// The tag length in bytes the parameter names (0 for none).
    pub fn tag_len(&self) -> usize {
        match self {
            MessageParam::None => 0,
            MessageParam::Gcm(g) => usize::try_from(g.tag_bits.div_ceil(8)).unwrap_or(usize::MAX),
        }
    }
}

/// An AEAD bound to one key for the message-based functions.
pub trait MessageAead: Send + Sync {
    /// The layout of its per-message parameter.
    fn shape(&self) -> MessageShape;
    /// Encrypts one whole message: ciphertext of the input's length into
    /// `out`, the tag into the parameter.
    fn seal(&self, p: &mut MessageParam, aad: &[u8], input: &[u8], out: &mut [u8]) -> Result<()>;
    /// Checks the parameter's tag and decrypts one whole message (plaintext
    /// of the input's length into `out`); a wrong tag is
    /// `CKR_ENCRYPTED_DATA_INVALID` and writes nothing.
    fn open(&self, p: &MessageParam, aad: &[u8], input: &[u8], out: &mut [u8]) -> Result<()>;
    /// Starts a message encrypted part by part (`C_EncryptMessageBegin`)
    /// with the parameter's IV and tag length and this AAD.
    fn seal_stream(&self, p: &MessageParam, aad: &[u8]) -> Result<Box<dyn SealStream>>;
}

/// A message encrypted part by part: each part's ciphertext at once (as
/// long as the part), the tag at the end. (Decryption has no such form: no
/// plaintext leaves before the tag is checked.)
pub trait SealStream: Send {
    /// Encrypts the next part into `out` (`out.len() == input.len()`).
    fn update(&mut self, input: &[u8], out: &mut [u8]);
    /// The tag of the whole message.
    fn finish(self: Box<Self>) -> Vec<u8>;
}

/// AES-GCM for messages: each message runs `aes::gcm` (any IV of 1–256
/// bytes, tags of 4–16 bytes) with the message's IV, AAD and tag length.
struct GcmAead {
    key: Arc<AesKey>,
}

/// `CKM_AES_GCM`'s `aead` column.
pub fn gcm(key: Arc<AesKey>) -> Box<dyn MessageAead> {
    Box::new(GcmAead { key })
}

impl GcmAead {
    fn param(p: &MessageParam, aad: &[u8]) -> Result<(Param, usize)> {
        let MessageParam::Gcm(g) = p else {
            return Err(Error::ArgumentsBad);
        };
        let tag_len = p.tag_len();
        Ok((
            Param::Gcm {
                iv: g.iv.clone(),
                aad: aad.to_vec(),
                tag_bits: g.tag_bits,
            },
            tag_len,
        ))
    }

    /// `aes::gcm` for the message; a parameter it refuses is a bad argument
    /// of this call (`CKR_MECHANISM_PARAM_INVALID` is for `*Init`).
    fn op(&self, p: &Param, dir: Dir) -> Result<Box<dyn crate::mechanism::CipherOp>> {
        aes::gcm(p, self.key.clone(), dir).map_err(|e| match e {
            Error::MechanismParamInvalid => Error::ArgumentsBad,
            e => e,
        })
    }
}

impl MessageAead for GcmAead {
    fn shape(&self) -> MessageShape {
        MessageShape::Gcm
    }

    fn seal_stream(&self, p: &MessageParam, aad: &[u8]) -> Result<Box<dyn SealStream>> {
        let MessageParam::Gcm(g) = p else {
            return Err(Error::ArgumentsBad);
        };
        // The limits of `aes::gcm`.
        let tag_bits = g.tag_bits;
        if g.iv.is_empty()
            || g.iv.len() > 256
            || !(32..=128).contains(&tag_bits)
            || tag_bits % 8 != 0
        {
            return Err(Error::ArgumentsBad);
        }
        Ok(Box::new(GcmStream::new(
            self.key.clone(),
            &g.iv,
            aad,
            (tag_bits / 8) as usize,
        )))
    }

    fn seal(&self, p: &mut MessageParam, aad: &[u8], input: &[u8], out: &mut [u8]) -> Result<()> {
        let (param, tag_len) = Self::param(p, aad)?;
        let mut op = self.op(&param, Dir::Encrypt)?;
        let mut sealed = zeroize::Zeroizing::new(vec![0u8; input.len() + tag_len]);
        let n = op.single(input, &mut sealed)?;
        if n != input.len() + tag_len || out.len() < input.len() {
            return Err(Error::GeneralError);
        }
        out[..input.len()].copy_from_slice(&sealed[..input.len()]);
        if let MessageParam::Gcm(g) = p {
            g.tag = sealed[input.len()..].to_vec();
            g.tag_out = true;
        }
        Ok(())
    }

    fn open(&self, p: &MessageParam, aad: &[u8], input: &[u8], out: &mut [u8]) -> Result<()> {
        let (param, tag_len) = Self::param(p, aad)?;
        let MessageParam::Gcm(g) = p else {
            return Err(Error::ArgumentsBad);
        };
        if g.tag.len() != tag_len {
            return Err(Error::ArgumentsBad);
        }
        let mut op = self.op(&param, Dir::Decrypt)?;
        let sealed = [input, &g.tag].concat();
        let mut plain = zeroize::Zeroizing::new(vec![0u8; input.len()]);
        let n = op.single(&sealed, &mut plain)?;
        if n != input.len() || out.len() < n {
            return Err(Error::GeneralError);
        }
        out[..n].copy_from_slice(&plain);
        Ok(())
    }
}

/// GCM (SP 800-38D) a part at a time: GCTR from inc32(J0) over the parts
/// as they come, GHASH over the AAD and the ciphertext so far.
struct GcmStream {
    key: Arc<AesKey>,
    ghash: GHash,
    /// E_K(J0), which masks the tag.
    ek_j0: Block,
    /// The next counter block.
    ctr: Block,
    /// The current keystream block and how much of it is used.
    ks: Block,
    ks_used: usize,
    /// Ciphertext not yet hashed (less than a block).
    pending: Block,
    pending_len: usize,
    aad_len: u64,
    ct_len: u64,
    tag_len: usize,
}

impl GcmStream {
    fn new(key: Arc<AesKey>, iv: &[u8], aad: &[u8], tag_len: usize) -> GcmStream {
        let mut h = Block::default();
        key.encrypt_blocks(std::slice::from_mut(&mut h));
        let mut j0 = Block::default();
        if iv.len() == 12 {
            j0[..12].copy_from_slice(iv);
            j0[15] = 1;
        } else {
            let mut g = GHash::new(&h);
            g.update_padded(iv);
            let mut lens = Block::default();
            lens[8..].copy_from_slice(&((iv.len() as u64) * 8).to_be_bytes());
            g.update(&[lens]);
            j0 = g.finalize();
        }
        let mut ghash = GHash::new(&h);
        ghash.update_padded(aad);
        h.as_mut_slice().zeroize();
        let mut ek_j0 = j0;
        key.encrypt_blocks(std::slice::from_mut(&mut ek_j0));
        let mut ctr = j0;
        inc32(&mut ctr);
        GcmStream {
            key,
            ghash,
            ek_j0,
            ctr,
            ks: Block::default(),
            ks_used: 16,
            pending: Block::default(),
            pending_len: 0,
            aad_len: aad.len() as u64,
            ct_len: 0,
            tag_len,
        }
    }
}

/// Adds one to the last 32 bits of a counter block (SP 800-38D inc32).
fn inc32(b: &mut Block) {
    let c = u32::from_be_bytes([b[12], b[13], b[14], b[15]]).wrapping_add(1);
    b[12..].copy_from_slice(&c.to_be_bytes());
}

impl SealStream for GcmStream {
    fn update(&mut self, input: &[u8], out: &mut [u8]) {
        for (i, o) in input.iter().zip(out.iter_mut()) {
            if self.ks_used == 16 {
                self.ks = self.ctr;
                self.key.encrypt_blocks(std::slice::from_mut(&mut self.ks));
                inc32(&mut self.ctr);
                self.ks_used = 0;
            }
            *o = i ^ self.ks[self.ks_used];
            self.ks_used += 1;
            self.pending[self.pending_len] = *o;
            self.pending_len += 1;
            if self.pending_len == 16 {
                self.ghash.update(&[self.pending]);
                self.pending_len = 0;
            }
        }
        self.ct_len += input.len() as u64;
    }

    fn finish(mut self: Box<Self>) -> Vec<u8> {
        let mut g = self.ghash.clone();
        g.update_padded(&self.pending[..self.pending_len]);
        let mut lens = Block::default();
        lens[..8].copy_from_slice(&(self.aad_len * 8).to_be_bytes());
        lens[8..].copy_from_slice(&(self.ct_len * 8).to_be_bytes());
        g.update(&[lens]);
        let mut tag = g.finalize();
        for (t, e) in tag.iter_mut().zip(self.ek_j0.iter()) {
            *t ^= e;
        }
        self.ks.as_mut_slice().zeroize();
        self.ek_j0.as_mut_slice().zeroize();
        tag[..self.tag_len].to_vec()
    }
}

impl Drop for GcmStream {
    fn drop(&mut self) {
        self.ks.as_mut_slice().zeroize();
        self.ek_j0.as_mut_slice().zeroize();
    }
}

/// Fewest random bits `CKG_GENERATE_RANDOM` may make (see the module doc).
pub const MIN_RANDOM_IV_BITS: u64 = 64;

/// The state of the counting IV generators of one message-encryption
/// operation: the next value, and how many were used (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IvCounter {
    /// The next value; its low bits fill the counter field (wrapping).
    pub next: u64,
    /// How many values were handed out.
    pub used: u64,
}

impl IvCounter {
    /// A counter starting at a random value.
    pub fn random() -> Result<IvCounter> {
        let mut b = [0u8; 8];
        getrandom::fill(&mut b).map_err(|_| Error::DeviceError)?;
        Ok(IvCounter::at(u64::from_ne_bytes(b)))
    }

    /// A counter starting at `next`.
    pub fn at(next: u64) -> IvCounter {
        IvCounter { next, used: 0 }
    }
}

/// Makes the IV of an encryption whose parameter asks for a generator
/// (`CKG_NO_GENERATE`: nothing to do): keeps the fixed leading bits the
/// caller gave, fills the rest from the counter (which then moves on) or the
/// OS generator, and marks the IV for writing back.
pub fn generate_iv(p: &mut MessageParam, counter: &mut IvCounter) -> Result<()> {
    let MessageParam::Gcm(g) = p else {
        return Ok(());
    };
    if g.generator == CKG_NO_GENERATE {
        return Ok(());
    }
    let total = g.iv.len() as u64 * 8;
    let fixed = g.fixed_bits;
    if fixed >= total {
        // Nothing left to generate (or more fixed bits than the IV has).
        return Err(Error::ArgumentsBad);
    }
    let gen_bits = total - fixed;
    let mut fill = vec![0u8; g.iv.len()];
    match g.generator {
        CKG_GENERATE | CKG_GENERATE_COUNTER => {
            if gen_bits < 64 && counter.used >= 1u64 << gen_bits {
                // Every value of the counter field was used under this
                // operation: another would repeat an IV.
                return Err(Error::DataLenRange);
            }
            let c = counter.next.to_be_bytes();
            let n = c.len().min(fill.len());
            let at = fill.len() - n;
            fill[at..].copy_from_slice(&c[c.len() - n..]);
            counter.next = counter.next.wrapping_add(1);
            counter.used = counter.used.checked_add(1).ok_or(Error::DataLenRange)?;
        }
        CKG_GENERATE_RANDOM => {
            if gen_bits < MIN_RANDOM_IV_BITS {
                return Err(Error::ArgumentsBad);
            }
            getrandom::fill(&mut fill).map_err(|_| Error::DeviceError)?;
        }
        _ => return Err(Error::ArgumentsBad),
    }
    for (j, (b, f)) in g.iv.iter_mut().zip(&fill).enumerate() {
        let start = j as u64 * 8;
        let mask: u8 = if start >= fixed {
            0xff
        } else if start + 8 <= fixed {
            0
        } else {
            0xff >> (fixed - start)
        };
        *b = (*b & !mask) | (f & mask);
    }
    g.iv_out = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn param(iv: &[u8], fixed: CK_ULONG, generator: CK_ULONG) -> MessageParam {
        MessageParam::Gcm(GcmMessage {
            iv: iv.to_vec(),
            fixed_bits: fixed,
            generator,
            tag_bits: 128,
            ..GcmMessage::default()
        })
    }

    fn iv_of(p: &MessageParam) -> Vec<u8> {
        match p {
            MessageParam::Gcm(g) => g.iv.clone(),
            MessageParam::None => vec![],
        }
    }

    #[test]
    fn counter_keeps_the_fixed_part_and_counts() {
        let mut c = IvCounter::at(0);
        let mut p = param(&[0xAB; 12], 36, CKG_GENERATE_COUNTER);
        generate_iv(&mut p, &mut c).unwrap();
        assert_eq!(
            iv_of(&p),
            [0xAB, 0xAB, 0xAB, 0xAB, 0xA0, 0, 0, 0, 0, 0, 0, 0]
        );
        let mut p = param(&[0xAB; 12], 36, CKG_GENERATE_COUNTER);
        generate_iv(&mut p, &mut c).unwrap();
        assert_eq!(iv_of(&p)[11], 1);
        assert_eq!((c.next, c.used), (2, 2));
        // A 4-bit counter field starting at 9: 16 IVs (wrapping), then refused.
        let mut c = IvCounter::at(9);
        for i in 0..16u8 {
            let mut p = param(&[0xFF; 2], 12, CKG_GENERATE);
            generate_iv(&mut p, &mut c).unwrap();
            assert_eq!(iv_of(&p), [0xFF, 0xF0 | ((9 + i) % 16)]);
        }
        let mut p = param(&[0xFF; 2], 12, CKG_GENERATE);
        assert_eq!(generate_iv(&mut p, &mut c), Err(Error::DataLenRange));
    }

    #[test]
    fn counters_start_at_random_values() {
        let (a, b) = (IvCounter::random().unwrap(), IvCounter::random().unwrap());
        assert_ne!(a.next, b.next);
        assert_eq!((a.used, b.used), (0, 0));
    }

    #[test]
    fn random_needs_64_bits_and_keeps_the_fixed_part() {
        let mut c = IvCounter::at(0);
        let mut p = param(&[0x11; 12], 32, CKG_GENERATE_RANDOM);
        generate_iv(&mut p, &mut c).unwrap();
        let a = iv_of(&p);
        assert_eq!(a[..4], [0x11; 4]);
        let mut p = param(&[0x11; 12], 32, CKG_GENERATE_RANDOM);
        generate_iv(&mut p, &mut c).unwrap();
        assert_ne!(iv_of(&p), a);
        let mut p = param(&[0x11; 12], 33, CKG_GENERATE_RANDOM);
        assert_eq!(generate_iv(&mut p, &mut c), Err(Error::ArgumentsBad));
        let mut p = param(&[0x11; 12], 96, CKG_GENERATE_COUNTER);
        assert_eq!(generate_iv(&mut p, &mut c), Err(Error::ArgumentsBad));
        let mut p = param(&[0x11; 12], 0, 77);
        assert_eq!(generate_iv(&mut p, &mut c), Err(Error::ArgumentsBad));
        let mut p = param(&[0x11; 12], 0, CKG_NO_GENERATE);
        generate_iv(&mut p, &mut c).unwrap();
        assert_eq!(iv_of(&p), [0x11; 12]);
    }

    /// Part by part, at any cuts and with any IV and tag length, the same
    /// ciphertext and tag as the whole message at once.
    #[test]
    fn streamed_parts_equal_the_whole_message() {
        let key = Arc::new(AesKey::new(&[0x5c; 24]).unwrap());
        let a = gcm(key);
        let data: Vec<u8> = (0..=255u8).cycle().take(300).collect();
        for (iv_len, tag_bits, aad_len, cuts) in [
            (12usize, 128, 0usize, vec![0usize, 1, 17, 32, 299]),
            (12, 96, 20, vec![16, 16, 48, 100]),
            (1, 32, 1, vec![5]),
            (60, 120, 33, vec![1, 2, 3, 4, 200]),
            (12, 128, 5, vec![]),
        ] {
            let aad = vec![0xAA; aad_len];
            let mut p = param(&vec![7; iv_len], 0, CKG_NO_GENERATE);
            if let MessageParam::Gcm(g) = &mut p {
                g.tag_bits = tag_bits;
            }
            let mut whole = vec![0; data.len()];
            a.seal(&mut p, &aad, &data, &mut whole).unwrap();
            let mut st = a.seal_stream(&p, &aad).unwrap();
            let mut streamed = vec![0; data.len()];
            let mut at = 0;
            for c in cuts.iter().copied().chain([data.len()]) {
                let c = c.max(at);
                st.update(&data[at..c], &mut streamed[at..c]);
                at = c;
            }
            assert_eq!(streamed, whole, "iv {iv_len}, cuts {cuts:?}");
            let MessageParam::Gcm(g) = &p else { panic!() };
            assert_eq!(st.finish(), g.tag, "iv {iv_len}, tag {tag_bits}");
        }
    }

    /// NIST GCM test case 4 (AES-128, 60-byte plaintext, 20-byte AAD),
    /// through the message interface.
    #[test]
    fn gcm_message_vector() {
        use hex_literal::hex;
        let key = Arc::new(AesKey::new(&hex!("feffe9928665731c6d6a8f9467308308")).unwrap());
        let a = gcm(key);
        let pt = hex!(
            "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a721c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b39"
        );
        let aad = hex!("feedfacedeadbeeffeedfacedeadbeefabaddad2");
        let mut p = param(&hex!("cafebabefacedbaddecaf888"), 0, CKG_NO_GENERATE);
        let mut ct = vec![0; pt.len()];
        a.seal(&mut p, &aad, &pt, &mut ct).unwrap();
        assert_eq!(
            ct,
            hex!(
                "42831ec2217774244b7221b784d0d49ce3aa212f2c02a4e035c17e2329aca12e21d514b25466931c7d8f6a5aac84aa051ba30b396a0aac973d58e091"
            )
        );
        let MessageParam::Gcm(g) = &p else { panic!() };
        assert_eq!(g.tag, hex!("5bc94fbc3221a5db94fae95ae7121a47"));
        let mut back = vec![0; pt.len()];
        a.open(&p, &aad, &ct, &mut back).unwrap();
        assert_eq!(back, pt);
        let mut bad = p.clone();
        if let MessageParam::Gcm(g) = &mut bad {
            g.tag[0] ^= 1;
        }
        assert_eq!(
            a.open(&bad, &aad, &ct, &mut back),
            Err(Error::EncryptedDataInvalid)
        );
    }
}
