//! AES: ECB, CBC, CBC-PAD, CTR (PKCS#11 counter semantics), GCM (any IV length,
//! SP 800-38D), and RFC 3394 / RFC 5649 key wrap used as encrypt/decrypt.
//!
//! The block cipher comes from RustCrypto `aes` (AES-NI where available); GHASH
//! from `ghash`; key wrap from `aes-kw`. The modes are written here because
//! PKCS#11 fixes details (CTR counter width and no wrap-around, GCM IVs of 1–256
//! bytes, multi-part buffering) that the mode crates do not expose.
#![forbid(unsafe_code)]

use std::sync::Arc;

use aes::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use aes::{Aes128, Aes192, Aes256, Block};
use ghash::GHash;
use ghash::universal_hash::UniversalHash;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::{CipherOp, Dir, OneShot, Param, buffered};
use crate::error::{Error, Result};

/// An expanded AES key of any of the three sizes.
#[derive(Clone)]
pub enum AesKey {
    /// AES-128.
    K128(Aes128),
    /// AES-192.
    K192(Aes192),
    /// AES-256.
    K256(Aes256),
}

impl AesKey {
    /// Expands a 16, 24 or 32-byte key.
    pub fn new(key: &[u8]) -> Result<AesKey> {
        Ok(match key.len() {
            16 => AesKey::K128(Aes128::new_from_slice(key).map_err(|_| Error::KeySizeRange)?),
            24 => AesKey::K192(Aes192::new_from_slice(key).map_err(|_| Error::KeySizeRange)?),
            32 => AesKey::K256(Aes256::new_from_slice(key).map_err(|_| Error::KeySizeRange)?),
            _ => return Err(Error::KeySizeRange),
        })
    }

    /// Encrypts whole blocks in place (the cipher's parallel path).
    pub fn encrypt_blocks(&self, blocks: &mut [Block]) {
        match self {
            AesKey::K128(c) => c.encrypt_blocks(blocks),
            AesKey::K192(c) => c.encrypt_blocks(blocks),
            AesKey::K256(c) => c.encrypt_blocks(blocks),
        }
    }

    /// Decrypts whole blocks in place.
    pub fn decrypt_blocks(&self, blocks: &mut [Block]) {
        match self {
            AesKey::K128(c) => c.decrypt_blocks(blocks),
            AesKey::K192(c) => c.decrypt_blocks(blocks),
            AesKey::K256(c) => c.decrypt_blocks(blocks),
        }
    }

    fn encrypt_block(&self, b: &mut Block) {
        self.encrypt_blocks(std::slice::from_mut(b));
    }
}

/// `CKA_CHECK_VALUE` of an AES key: the first three bytes of E_K(0^128).
pub fn check_value(key: &[u8]) -> Result<[u8; 3]> {
    let mut b = Block::default();
    AesKey::new(key)?.encrypt_block(&mut b);
    Ok([b[0], b[1], b[2]])
}

/// `data ^= keystream`, a block at a time (16-byte chunks vectorise; a
/// byte-wise iterator chain was the bottleneck of GCM).
fn xor_blocks(data: &mut [u8], keystream: &[Block]) {
    for (d, k) in data.chunks_mut(16).zip(keystream) {
        for (x, y) in d.iter_mut().zip(k.iter()) {
            *x ^= y;
        }
    }
}

fn blocks_mut(buf: &mut [u8]) -> &mut [Block] {
    Block::slice_as_chunks_mut(buf).0
}

fn iv16(param: &Param) -> Result<[u8; 16]> {
    match param {
        Param::Raw(b) if b.len() == 16 => Ok(b
            .as_slice()
            .try_into()
            .map_err(|_| Error::MechanismParamInvalid)?),
        _ => Err(Error::MechanismParamInvalid),
    }
}

// ---- ECB, CBC, CBC-PAD ----------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chain {
    Ecb,
    Cbc,
    CbcPad,
}

/// ECB/CBC/CBC-PAD with the multi-part buffering PKCS#11 requires.
struct BlockMode {
    key: Arc<AesKey>,
    dir: Dir,
    chain: Chain,
    iv: [u8; 16],
    /// Input not yet processed (less than a block, or the block a CBC-PAD
    /// decryption must hold back until it knows it is the last).
    pending: Zeroizing<Vec<u8>>,
}

impl BlockMode {
    fn len_error(&self) -> Error {
        match self.dir {
            Dir::Encrypt => Error::DataLenRange,
            Dir::Decrypt => Error::EncryptedDataLenRange,
        }
    }

    /// How many pending+input bytes an update processes now.
    fn ready(&self, input_len: usize) -> usize {
        let total = self.pending.len() + input_len;
        let whole = total - total % 16;
        if self.chain == Chain::CbcPad && self.dir == Dir::Decrypt && whole == total && whole > 0 {
            whole - 16
        } else {
            whole
        }
    }

    /// Transforms `data` (whole blocks) into `out`, chaining through `self.iv`.
    fn run(&mut self, data: &[u8], out: &mut [u8]) {
        out[..data.len()].copy_from_slice(data);
        let blocks = blocks_mut(&mut out[..data.len()]);
        match (self.chain, self.dir) {
            (Chain::Ecb, Dir::Encrypt) => self.key.encrypt_blocks(blocks),
            (Chain::Ecb, Dir::Decrypt) => self.key.decrypt_blocks(blocks),
            (_, Dir::Encrypt) => {
                // CBC encryption is one long chain: the `cbc` crate runs it
                // without a dispatch per block.
                use aes::cipher::{BlockModeEncrypt, InnerIvInit};
                let iv = Block::from(self.iv);
                macro_rules! chain {
                    ($k:expr) => {
                        // By reference: no copy of the key schedule on the stack.
                        cbc::Encryptor::inner_iv_init($k, &iv).encrypt_blocks(blocks)
                    };
                }
                match &*self.key {
                    AesKey::K128(k) => chain!(k),
                    AesKey::K192(k) => chain!(k),
                    AesKey::K256(k) => chain!(k),
                }
                if let Some(last) = blocks.last() {
                    self.iv.copy_from_slice(last);
                }
            }
            (_, Dir::Decrypt) => {
                self.key.decrypt_blocks(blocks);
                for (b, c) in blocks.iter_mut().zip(data.chunks_exact(16)) {
                    for (x, v) in b.iter_mut().zip(self.iv) {
                        *x ^= v;
                    }
                    self.iv.copy_from_slice(c);
                }
            }
        }
    }

    fn update_into(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        let n = self.ready(input.len());
        let mut all = Zeroizing::new(Vec::with_capacity(self.pending.len() + input.len()));
        all.extend_from_slice(&self.pending);
        all.extend_from_slice(input);
        // Round keys spilled to the stack by the cipher: wiped after.
        crate::secret::scrubbed(|| self.run(&all[..n], out));
        self.pending = Zeroizing::new(all[n..].to_vec());
        n
    }

    fn final_len(&self) -> usize {
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => 16,
            (Chain::CbcPad, Dir::Decrypt) => 15,
            _ => 0,
        }
    }

    fn finish_into(&mut self, out: &mut [u8]) -> Result<usize> {
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => {
                let pad = 16 - self.pending.len();
                let mut last = Zeroizing::new(self.pending.to_vec());
                last.resize(16, pad as u8);
                crate::secret::scrubbed(|| self.run(&last, out));
                Ok(16)
            }
            (Chain::CbcPad, Dir::Decrypt) => {
                if self.pending.len() != 16 {
                    return Err(self.len_error());
                }
                let last = Zeroizing::new(self.pending.to_vec());
                let mut plain = Zeroizing::new([0u8; 16]);
                crate::secret::scrubbed(|| self.run(&last, plain.as_mut()));
                let pad = plain[15] as usize;
                let ok =
                    (1..=16).contains(&pad) && plain[16 - pad..].iter().all(|&b| b as usize == pad);
                if !ok {
                    return Err(Error::EncryptedDataInvalid);
                }
                out[..16 - pad].copy_from_slice(&plain[..16 - pad]);
                Ok(16 - pad)
            }
            _ if !self.pending.is_empty() => Err(self.len_error()),
            _ => Ok(0),
        }
    }
}

impl CipherOp for BlockMode {
    fn single_len(&self, len: usize) -> usize {
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => len / 16 * 16 + 16,
            _ => len,
        }
    }

    fn single(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        let whole = input.len().is_multiple_of(16);
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => {}
            (Chain::CbcPad, Dir::Decrypt) if whole && !input.is_empty() => {}
            _ if whole => {}
            _ => return Err(self.len_error()),
        }
        let n = self.update_into(input, out);
        Ok(n + self.finish_into(&mut out[n..])?)
    }

    fn update_len(&self, len: usize) -> usize {
        self.ready(len)
    }

    fn update(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        Ok(self.update_into(input, out))
    }

    fn final_len(&self) -> usize {
        self.final_len()
    }

    fn finish(&mut self, out: &mut [u8]) -> Result<usize> {
        self.finish_into(out)
    }
}

/// Builds `CKM_AES_ECB`.
pub fn ecb(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    if *param != Param::None {
        return Err(Error::MechanismParamInvalid);
    }
    block_mode(key, dir, Chain::Ecb, [0; 16])
}

/// Builds `CKM_AES_CBC` (parameter: the 16-byte IV).
pub fn cbc(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    block_mode(key, dir, Chain::Cbc, iv16(param)?)
}

/// Builds `CKM_AES_CBC_PAD` (PKCS#7 padding; parameter: the 16-byte IV).
pub fn cbc_pad(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    block_mode(key, dir, Chain::CbcPad, iv16(param)?)
}

fn block_mode(key: Arc<AesKey>, dir: Dir, chain: Chain, iv: [u8; 16]) -> Result<Box<dyn CipherOp>> {
    Ok(Box::new(BlockMode {
        key,
        dir,
        chain,
        iv,
        pending: Zeroizing::new(Vec::new()),
    }))
}

// ---- CTR ------------------------------------------------------------------------------

/// CTR with `CK_AES_CTR_PARAMS`: only the low `ulCounterBits` bits of the
/// counter block count, and they must not wrap around.
struct Ctr {
    key: Arc<AesKey>,
    /// The bits of the counter block that never change.
    fixed: u128,
    mask: u128,
    /// Counter value of the next keystream block.
    next: u128,
    /// Keystream blocks still available before the counter would wrap.
    remaining: u128,
    /// Unused keystream bytes of the last block.
    spare: Zeroizing<Vec<u8>>,
    /// Which length error a too-long input is (the spec names a different
    /// one for ciphertext).
    dir: Dir,
}

impl Ctr {
    fn apply(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        let from_spare = self.spare.len().min(input.len());
        let needed = (input.len() - from_spare).div_ceil(16) as u128;
        if needed > self.remaining {
            return Err(match self.dir {
                Dir::Encrypt => Error::DataLenRange,
                Dir::Decrypt => Error::EncryptedDataLenRange,
            });
        }
        for i in 0..from_spare {
            out[i] = input[i] ^ self.spare[i];
        }
        self.spare.drain(..from_spare);
        let rest = &input[from_spare..];
        let mut stream = Zeroizing::new(vec![0u8; rest.len().div_ceil(16) * 16]);
        for b in blocks_mut(&mut stream) {
            b.copy_from_slice(&(self.fixed | (self.next & self.mask)).to_be_bytes());
            self.next = self.next.wrapping_add(1);
        }
        self.remaining -= needed;
        crate::secret::scrubbed(|| self.key.encrypt_blocks(blocks_mut(&mut stream)));
        let dst = &mut out[from_spare..input.len()];
        dst.copy_from_slice(rest);
        xor_blocks(dst, Block::slice_as_chunks_mut(&mut stream).0);
        // Keystream left over from a partial block serves the next update;
        // an update served wholly from the old leftover keeps the rest of it.
        if !rest.is_empty() {
            self.spare = Zeroizing::new(stream[rest.len()..].to_vec());
        }
        Ok(input.len())
    }
}

impl CipherOp for Ctr {
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

/// Builds `CKM_AES_CTR` from `CK_AES_CTR_PARAMS` (`ulCounterBits`, `cb[16]`).
pub fn ctr(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    const UL: usize = std::mem::size_of::<cryptoki_sys::CK_ULONG>();
    let Param::Raw(p) = param else {
        return Err(Error::MechanismParamInvalid);
    };
    if p.len() != UL + 16 {
        return Err(Error::MechanismParamInvalid);
    }
    let bits = u64::from_ne_bytes(
        p[..UL]
            .try_into()
            .map_err(|_| Error::MechanismParamInvalid)?,
    );
    if !(1..=128).contains(&bits) {
        return Err(Error::MechanismParamInvalid);
    }
    let cb = u128::from_be_bytes(
        p[UL..]
            .try_into()
            .map_err(|_| Error::MechanismParamInvalid)?,
    );
    let mask = if bits == 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    };
    let start = cb & mask;
    Ok(Box::new(Ctr {
        key,
        fixed: cb & !mask,
        mask,
        next: start,
        // Blocks from `start` up to and including `mask`; saturates for 128 bits.
        remaining: (mask - start).saturating_add(1),
        spare: Zeroizing::new(Vec::new()),
        dir,
    }))
}

// ---- one-shot modes -------------------------------------------------------------------

// ---- GCM ------------------------------------------------------------------------------

/// GCM per SP 800-38D for IVs of any length. Multi-part calls buffer: nothing
/// is output before `C_*Final`, so no plaintext leaves before the tag is checked.
struct Gcm {
    key: Arc<AesKey>,
    dir: Dir,
    iv: Vec<u8>,
    aad: Vec<u8>,
    tag_len: usize,
    /// The object's cached forms, whose backend GCM key (AWS-LC) runs
    /// 12-byte IVs (and, decrypting, 16-byte tags) when it is there.
    fast: Option<Arc<super::AesCached>>,
}

impl Gcm {
    fn h_and_j0(&self) -> (GHash, Block) {
        let mut h = Block::default();
        self.key.encrypt_block(&mut h);
        let mut j0 = Block::default();
        if self.iv.len() == 12 {
            j0[..12].copy_from_slice(&self.iv);
            j0[15] = 1;
        } else {
            let mut g = GHash::new(&h);
            g.update_padded(&self.iv);
            let mut lens = Block::default();
            lens[8..].copy_from_slice(&((self.iv.len() as u64) * 8).to_be_bytes());
            g.update(&[lens]);
            j0 = g.finalize();
        }
        (GHash::new(&h), j0)
    }

    /// GCTR from inc32(J0) over `data`, in place: exactly CTR with a 32-bit
    /// big-endian counter, which the `ctr` crate runs on the cipher's parallel
    /// blocks.
    fn gctr(&self, j0: &Block, data: &mut [u8]) {
        use ctr::cipher::{InnerIvInit, StreamCipher, StreamCipherCoreWrapper};
        let mut icb = *j0;
        let c = u32::from_be_bytes([icb[12], icb[13], icb[14], icb[15]]).wrapping_add(1);
        icb[12..].copy_from_slice(&c.to_be_bytes());
        macro_rules! run {
            ($k:expr) => {
                StreamCipherCoreWrapper::from_core(
                    // By reference: no copy of the key schedule on the stack.
                    ctr::CtrCore::<_, ctr::flavors::Ctr32BE>::inner_iv_init($k, &icb),
                )
                .apply_keystream(data)
            };
        }
        match &*self.key {
            AesKey::K128(k) => run!(k),
            AesKey::K192(k) => run!(k),
            AesKey::K256(k) => run!(k),
        }
    }

    fn tag(&self, mut g: GHash, j0: &Block, ciphertext: &[u8]) -> Block {
        g.update_padded(&self.aad);
        g.update_padded(ciphertext);
        let mut lens = Block::default();
        lens[..8].copy_from_slice(&((self.aad.len() as u64) * 8).to_be_bytes());
        lens[8..].copy_from_slice(&((ciphertext.len() as u64) * 8).to_be_bytes());
        g.update(&[lens]);
        let mut tag = g.finalize();
        let mut ek = *j0;
        self.key.encrypt_block(&mut ek);
        for (t, e) in tag.iter_mut().zip(ek.iter()) {
            *t ^= e;
        }
        tag
    }
}

impl OneShot for Gcm {
    fn out_len(&self, len: usize) -> usize {
        match self.dir {
            Dir::Encrypt => len + self.tag_len,
            Dir::Decrypt => len.saturating_sub(self.tag_len),
        }
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        if let Some(f) = &self.fast {
            match self.dir {
                Dir::Encrypt => {
                    let (body, tag_out) =
                        out[..input.len() + self.tag_len].split_at_mut(input.len());
                    body.copy_from_slice(input);
                    if let Some(tag) = f.gcm.seal(&self.iv, &self.aad, body) {
                        // A shorter tag is the full tag's leftmost bytes.
                        tag_out.copy_from_slice(&tag?[..self.tag_len]);
                        return Ok(input.len() + self.tag_len);
                    }
                }
                Dir::Decrypt if input.len() >= self.tag_len => {
                    let (ct, tag) = input.split_at(input.len() - self.tag_len);
                    // AWS-LC writes the plaintext before it checks the tag:
                    // decrypt aside, so the caller's buffer sees nothing of a
                    // forged message.
                    let mut pt = Zeroizing::new(vec![0u8; ct.len()]);
                    if let Some(r) = f.gcm.open(&self.iv, &self.aad, ct, tag, &mut pt) {
                        r?;
                        out[..ct.len()].copy_from_slice(&pt);
                        return Ok(ct.len());
                    }
                }
                Dir::Decrypt => {}
            }
        }
        let (g, j0) = self.h_and_j0();
        match self.dir {
            Dir::Encrypt => {
                let (body, tag_out) = out[..input.len() + self.tag_len].split_at_mut(input.len());
                body.copy_from_slice(input);
                self.gctr(&j0, body);
                tag_out.copy_from_slice(&self.tag(g, &j0, body)[..self.tag_len]);
                Ok(input.len() + self.tag_len)
            }
            Dir::Decrypt => {
                if input.len() < self.tag_len {
                    return Err(Error::EncryptedDataLenRange);
                }
                let (ct, tag) = input.split_at(input.len() - self.tag_len);
                let expected = self.tag(g, &j0, ct);
                if !bool::from(expected[..self.tag_len].ct_eq(tag)) {
                    return Err(Error::EncryptedDataInvalid);
                }
                let body = &mut out[..ct.len()];
                body.copy_from_slice(ct);
                self.gctr(&j0, body);
                Ok(ct.len())
            }
        }
    }
}

/// Builds `CKM_AES_GCM` from a parsed `CK_GCM_PARAMS`: IV 1–256 bytes, tag
/// 32–128 bits in whole bytes, AAD of any size.
pub fn gcm(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let Param::Gcm { iv, aad, tag_bits } = param else {
        return Err(Error::MechanismParamInvalid);
    };
    if iv.is_empty() || iv.len() > 256 || !(32..=128).contains(tag_bits) || tag_bits % 8 != 0 {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(buffered(Gcm {
        key,
        dir,
        iv: iv.clone(),
        aad: aad.clone(),
        tag_len: (*tag_bits / 8) as usize,
        fast: None,
    }))
}

/// `CKM_AES_GCM` on an object's cached forms: AWS-LC's GCM (default build)
/// for 12-byte IVs, the code above for the rest; same checks as [`gcm`].
pub fn gcm_cached(
    param: &Param,
    cached: Arc<super::AesCached>,
    dir: Dir,
) -> Result<Box<dyn CipherOp>> {
    let Param::Gcm { iv, aad, tag_bits } = param else {
        return Err(Error::MechanismParamInvalid);
    };
    if iv.is_empty() || iv.len() > 256 || !(32..=128).contains(tag_bits) || tag_bits % 8 != 0 {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(buffered(Gcm {
        key: cached.key.clone(),
        dir,
        iv: iv.clone(),
        aad: aad.clone(),
        tag_len: (*tag_bits / 8) as usize,
        fast: Some(cached),
    }))
}

// ---- key wrap (RFC 3394, RFC 5649) as encrypt/decrypt -----------------------------------

/// Key wrap takes the whole input at once: updates buffer, final wraps.
struct KeyWrap {
    key: Zeroizing<Vec<u8>>,
    dir: Dir,
    /// RFC 5649 (KWP) rather than RFC 3394 (KW).
    padded: bool,
    /// KW for `C_WrapKey`: zeros pad the input to whole 8-byte semiblocks.
    zero_pad: bool,
}

impl OneShot for KeyWrap {
    fn out_len(&self, len: usize) -> usize {
        match (self.dir, self.padded) {
            (Dir::Encrypt, false) if self.zero_pad => len.next_multiple_of(8) + 8,
            (Dir::Encrypt, false) => len + 8,
            (Dir::Encrypt, true) => len.div_ceil(8) * 8 + 8,
            (Dir::Decrypt, _) => len.saturating_sub(8),
        }
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        if self.zero_pad && self.dir == Dir::Encrypt && !input.len().is_multiple_of(8) {
            // Sized once, so no reallocation leaves a copy of the key behind.
            let len = input.len().next_multiple_of(8);
            let mut padded = Zeroizing::new(Vec::with_capacity(len));
            padded.extend_from_slice(input);
            padded.resize(len, 0);
            return self.wrap_or_unwrap(&padded, out);
        }
        self.wrap_or_unwrap(input, out)
    }
}

impl KeyWrap {
    fn wrap_or_unwrap(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        match self.dir {
            Dir::Encrypt
                if input.is_empty()
                    || (!self.padded && (input.len() < 16 || !input.len().is_multiple_of(8))) =>
            {
                return Err(Error::DataLenRange);
            }
            Dir::Decrypt
                if input.len() < 16
                    || !input.len().is_multiple_of(8)
                    || (!self.padded && input.len() < 24) =>
            {
                return Err(Error::EncryptedDataLenRange);
            }
            _ => {}
        }
        let k = self.key.as_slice();
        let encrypt = self.dir == Dir::Encrypt;
        macro_rules! go {
            ($t:ty) => {
                apply(
                    <$t>::new_from_slice(k).map_err(|_| Error::KeySizeRange)?,
                    encrypt,
                    input,
                    out,
                )
            };
        }
        // The key schedule is built per call, on the stack: scrubbed after.
        crate::secret::scope(|| match (self.padded, k.len()) {
            (false, 16) => go!(aes_kw::KwAes128),
            (false, 24) => go!(aes_kw::KwAes192),
            (false, 32) => go!(aes_kw::KwAes256),
            (true, 16) => go!(aes_kw::KwpAes128),
            (true, 24) => go!(aes_kw::KwpAes192),
            (true, 32) => go!(aes_kw::KwpAes256),
            _ => Err(Error::KeySizeRange),
        })
    }
}

/// Adapts the two `aes-kw` wrappers (KW and KWP have the same method names).
trait Wrapper {
    fn wrap(&self, input: &[u8], out: &mut [u8]) -> std::result::Result<usize, ()>;
    fn unwrap(&self, input: &[u8], out: &mut [u8]) -> std::result::Result<usize, ()>;
}

macro_rules! wrapper {
    ($t:ty) => {
        impl<C> Wrapper for $t
        where
            C: BlockCipherEncrypt<BlockSize = aes::cipher::consts::U16>
                + BlockCipherDecrypt<BlockSize = aes::cipher::consts::U16>,
        {
            fn wrap(&self, input: &[u8], out: &mut [u8]) -> std::result::Result<usize, ()> {
                self.wrap_key(input, out).map(|w| w.len()).map_err(|_| ())
            }
            fn unwrap(&self, input: &[u8], out: &mut [u8]) -> std::result::Result<usize, ()> {
                self.unwrap_key(input, out).map(|w| w.len()).map_err(|_| ())
            }
        }
    };
}
wrapper!(aes_kw::AesKw<C>);
wrapper!(aes_kw::AesKwp<C>);

/// Wraps or unwraps with one of the `aes-kw` wrappers.
fn apply<W: Wrapper>(w: W, encrypt: bool, input: &[u8], out: &mut [u8]) -> Result<usize> {
    if encrypt {
        return w.wrap(input, out).map_err(|_| Error::DataLenRange);
    }
    // Unwrap into scratch space: nothing reaches the caller unless the
    // integrity check passed.
    let mut tmp = Zeroizing::new(vec![0u8; input.len()]);
    let n = w
        .unwrap(input, &mut tmp)
        .map_err(|_| Error::EncryptedDataInvalid)?;
    out[..n].copy_from_slice(&tmp[..n]);
    Ok(n)
}

fn key_wrap(
    param: &Param,
    raw_key: &[u8],
    dir: Dir,
    padded: bool,
    zero_pad: bool,
) -> Result<Box<dyn CipherOp>> {
    // Only the default initial values of RFC 3394 / RFC 5649 are supported.
    let default_iv: &[u8] = if padded {
        &[0xA6, 0x59, 0x59, 0xA6]
    } else {
        &[0xA6; 8]
    };
    match param {
        Param::None => {}
        Param::Raw(iv) if iv.as_slice() == default_iv => {}
        _ => return Err(Error::MechanismParamInvalid),
    }
    // The operation keeps a copy of the raw key: in the key region.
    Ok(crate::secret::scope(|| {
        buffered(KeyWrap {
            key: Zeroizing::new(raw_key.to_vec()),
            dir,
            padded,
            zero_pad,
        })
    }))
}

/// Builds `CKM_AES_KEY_WRAP` (RFC 3394) for encrypt/decrypt.
pub fn kw(param: &Param, raw_key: &[u8], dir: Dir) -> Result<Box<dyn CipherOp>> {
    key_wrap(param, raw_key, dir, false, false)
}

/// Builds `CKM_AES_KEY_WRAP` (RFC 3394) for `C_WrapKey`: a key whose length
/// is not a multiple of the semiblock size (8 bytes) is zero padded to fit
/// (PKCS#11 v3.0 §2.14.3). Unwrapping is plain `kw`; the module strips the
/// zeros to the unwrapped key's length.
pub fn kw_zero_padded(param: &Param, raw_key: &[u8], dir: Dir) -> Result<Box<dyn CipherOp>> {
    key_wrap(param, raw_key, dir, false, dir == Dir::Encrypt)
}

/// Builds `CKM_AES_KEY_WRAP_KWP` (RFC 5649) for encrypt/decrypt.
pub fn kwp(param: &Param, raw_key: &[u8], dir: Dir) -> Result<Box<dyn CipherOp>> {
    key_wrap(param, raw_key, dir, true, false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn key(k: &[u8]) -> Arc<AesKey> {
        Arc::new(AesKey::new(k).unwrap())
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

    const K: [u8; 16] = hex!("2b7e151628aed2a6abf7158809cf4f3c");
    const P: [u8; 32] = hex!("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");

    #[test]
    fn fips197_and_sp800_38a_ecb() {
        let k = key(&hex!("000102030405060708090a0b0c0d0e0f"));
        let ct = run_single(
            ecb(&Param::None, k.clone(), Dir::Encrypt).unwrap(),
            &hex!("00112233445566778899aabbccddeeff"),
        )
        .unwrap();
        assert_eq!(ct, hex!("69c4e0d86a7b0430d8cdb78070b4c55a"));
        let pt = run_single(ecb(&Param::None, k, Dir::Decrypt).unwrap(), &ct).unwrap();
        assert_eq!(pt, hex!("00112233445566778899aabbccddeeff"));
        let ct = run_single(ecb(&Param::None, key(&K), Dir::Encrypt).unwrap(), &P).unwrap();
        assert_eq!(
            ct,
            hex!("3ad77bb40d7a3660a89ecaf32466ef97f5d3d58503b9699de785895a96fdbaaf")
        );
    }

    #[test]
    fn sp800_38a_cbc_single_and_multipart() {
        let iv = Param::Raw(hex!("000102030405060708090a0b0c0d0e0f").to_vec());
        let want = hex!("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2");
        assert_eq!(
            run_single(cbc(&iv, key(&K), Dir::Encrypt).unwrap(), &P).unwrap(),
            want
        );
        assert_eq!(
            run_parts(
                cbc(&iv, key(&K), Dir::Encrypt).unwrap(),
                &[&P[..5], &P[5..21], &P[21..]]
            )
            .unwrap(),
            want
        );
        assert_eq!(
            run_parts(
                cbc(&iv, key(&K), Dir::Decrypt).unwrap(),
                &[&want[..7], &want[7..]]
            )
            .unwrap(),
            P
        );
        assert_eq!(
            run_single(cbc(&iv, key(&K), Dir::Encrypt).unwrap(), &P[..20]).err(),
            Some(Error::DataLenRange)
        );
        assert_eq!(
            run_single(cbc(&iv, key(&K), Dir::Decrypt).unwrap(), &want[..20]).err(),
            Some(Error::EncryptedDataLenRange)
        );
        assert_eq!(
            cbc(&Param::Raw(vec![0; 8]), key(&K), Dir::Encrypt).err(),
            Some(Error::MechanismParamInvalid)
        );
    }

    #[test]
    fn cbc_pad_round_trips_every_length_and_rejects_bad_padding() {
        let iv = Param::Raw(vec![7; 16]);
        for len in 0..50 {
            let data: Vec<u8> = (0..len as u8).collect();
            let ct = run_single(cbc_pad(&iv, key(&K), Dir::Encrypt).unwrap(), &data).unwrap();
            assert_eq!(ct.len(), len / 16 * 16 + 16);
            let parts: Vec<&[u8]> = ct.chunks(7).collect();
            assert_eq!(
                run_parts(cbc_pad(&iv, key(&K), Dir::Decrypt).unwrap(), &parts).unwrap(),
                data
            );
            assert_eq!(
                run_single(cbc_pad(&iv, key(&K), Dir::Decrypt).unwrap(), &ct).unwrap(),
                data
            );
        }
        // Under an IV whose last byte differs by 0x40, the pad byte of a
        // one-block message reads 0x4d: not valid padding.
        let ct = run_single(cbc_pad(&iv, key(&K), Dir::Encrypt).unwrap(), b"abc").unwrap();
        let mut wrong = vec![7; 16];
        wrong[15] ^= 0x40;
        let wrong = Param::Raw(wrong);
        assert_eq!(
            run_single(cbc_pad(&wrong, key(&K), Dir::Decrypt).unwrap(), &ct).err(),
            Some(Error::EncryptedDataInvalid)
        );
        assert_eq!(
            run_single(cbc_pad(&iv, key(&K), Dir::Decrypt).unwrap(), &ct[..15]).err(),
            Some(Error::EncryptedDataLenRange)
        );
    }

    fn ctr_param(bits: u64, cb: [u8; 16]) -> Param {
        let mut p = bits.to_ne_bytes().to_vec();
        p.extend_from_slice(&cb);
        Param::Raw(p)
    }

    #[test]
    fn sp800_38a_ctr_and_counter_width() {
        let p = ctr_param(128, hex!("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff"));
        let want = hex!("874d6191b620e3261bef6864990db6ce9806f66b7970fdff8617187bb9fffdff");
        assert_eq!(
            run_single(ctr(&p, key(&K), Dir::Encrypt).unwrap(), &P).unwrap(),
            want
        );
        assert_eq!(
            run_parts(
                ctr(&p, key(&K), Dir::Decrypt).unwrap(),
                &[&want[..3], &want[3..17], &want[17..]]
            )
            .unwrap(),
            P
        );
        // Updates smaller than the leftover keystream of a partial block.
        let ones: Vec<&[u8]> = want.chunks(1).collect();
        assert_eq!(
            run_parts(ctr(&p, key(&K), Dir::Decrypt).unwrap(), &ones).unwrap(),
            P
        );
        let cuts: [&[u8]; 5] = [
            &want[..3],
            &want[3..3],
            &want[3..5],
            &want[5..7],
            &want[7..],
        ];
        assert_eq!(
            run_parts(ctr(&p, key(&K), Dir::Decrypt).unwrap(), &cuts).unwrap(),
            P
        );
        // An 8-bit counter at 0xfe has two blocks left: a third would wrap.
        let mut cb = [0u8; 16];
        cb[15] = 0xfe;
        let p = ctr_param(8, cb);
        assert!(run_single(ctr(&p, key(&K), Dir::Encrypt).unwrap(), &[0; 32]).is_ok());
        assert_eq!(
            run_single(ctr(&p, key(&K), Dir::Encrypt).unwrap(), &[0; 33]).err(),
            Some(Error::DataLenRange)
        );
        assert!(ctr(&ctr_param(0, cb), key(&K), Dir::Encrypt).is_err());
        assert!(ctr(&ctr_param(129, cb), key(&K), Dir::Encrypt).is_err());
    }

    fn gcm_param(iv: &[u8], aad: &[u8], tag_bits: u64) -> Param {
        Param::Gcm {
            iv: iv.to_vec(),
            aad: aad.to_vec(),
            tag_bits,
        }
    }

    #[test]
    fn gcm_test_case_2() {
        let p = gcm_param(&[0; 12], &[], 128);
        let ct = run_single(gcm(&p, key(&[0; 16]), Dir::Encrypt).unwrap(), &[0; 16]).unwrap();
        assert_eq!(
            ct,
            hex!("0388dace60b6a392f328c2b971b2fe78ab6e47d42cec13bdf53a67b21257bddf")
        );
    }

    /// Independent check: the `aes-gcm` crate, for a 12-byte and two other IV sizes.
    #[test]
    fn gcm_agrees_with_aes_gcm_crate() {
        use aes_gcm::aead::consts::{U8, U12, U60};
        use aes_gcm::aead::{Aead, KeyInit as _, Payload};
        fn theirs<N: aes_gcm::aead::array::ArraySize>(
            k: &[u8],
            iv: &[u8],
            aad: &[u8],
            msg: &[u8],
        ) -> Vec<u8> {
            let c = aes_gcm::AesGcm::<Aes256, N>::new_from_slice(k).unwrap();
            c.encrypt(iv.try_into().unwrap(), Payload { msg, aad })
                .unwrap()
        }
        let k: Vec<u8> = (0..32).collect();
        let aad = b"header bytes";
        for len in [0usize, 1, 15, 16, 17, 100, 4300] {
            let msg: Vec<u8> = (0..len).map(|i| i as u8).collect();
            for iv_len in [8usize, 12, 60] {
                let iv: Vec<u8> = (0..iv_len as u8).map(|i| i.wrapping_mul(7)).collect();
                let want = match iv_len {
                    8 => theirs::<U8>(&k, &iv, aad, &msg),
                    12 => theirs::<U12>(&k, &iv, aad, &msg),
                    _ => theirs::<U60>(&k, &iv, aad, &msg),
                };
                let p = gcm_param(&iv, aad, 128);
                let ours = run_single(gcm(&p, key(&k), Dir::Encrypt).unwrap(), &msg).unwrap();
                assert_eq!(ours, want, "len {len} iv {iv_len}");
                let parts: Vec<&[u8]> = ours.chunks(33).collect();
                assert_eq!(
                    run_parts(gcm(&p, key(&k), Dir::Decrypt).unwrap(), &parts).unwrap(),
                    msg
                );
            }
        }
    }

    #[test]
    fn gcm_rejects_tampering_and_bad_parameters() {
        let p = gcm_param(&[1; 12], b"aad", 128);
        let ct = run_single(gcm(&p, key(&K), Dir::Encrypt).unwrap(), b"secret").unwrap();
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 0x80;
            assert_eq!(
                run_single(gcm(&p, key(&K), Dir::Decrypt).unwrap(), &bad).err(),
                Some(Error::EncryptedDataInvalid)
            );
        }
        let other_aad = gcm_param(&[1; 12], b"aae", 128);
        assert_eq!(
            run_single(gcm(&other_aad, key(&K), Dir::Decrypt).unwrap(), &ct).err(),
            Some(Error::EncryptedDataInvalid)
        );
        assert_eq!(
            run_single(gcm(&p, key(&K), Dir::Decrypt).unwrap(), &ct[..15]).err(),
            Some(Error::EncryptedDataLenRange)
        );
        // Truncated tags.
        let p96 = gcm_param(&[1; 12], b"", 96);
        let ct = run_single(gcm(&p96, key(&K), Dir::Encrypt).unwrap(), b"x").unwrap();
        assert_eq!(ct.len(), 1 + 12);
        assert_eq!(
            run_single(gcm(&p96, key(&K), Dir::Decrypt).unwrap(), &ct).unwrap(),
            b"x"
        );
        for bad in [
            gcm_param(&[], b"", 128),
            gcm_param(&[0; 257], b"", 128),
            gcm_param(&[0; 12], b"", 24),
            gcm_param(&[0; 12], b"", 100),
            gcm_param(&[0; 12], b"", 136),
        ] {
            assert_eq!(
                gcm(&bad, key(&K), Dir::Encrypt).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
    }

    #[test]
    fn rfc3394_and_rfc5649() {
        let kek = hex!("000102030405060708090A0B0C0D0E0F");
        let ct = run_single(
            kw(&Param::None, &kek, Dir::Encrypt).unwrap(),
            &hex!("00112233445566778899AABBCCDDEEFF"),
        )
        .unwrap();
        assert_eq!(ct, hex!("1FA68B0A8112B447AEF34BD8FB5A7B829D3E862371D2CFE5"));
        assert_eq!(
            run_single(kw(&Param::None, &kek, Dir::Decrypt).unwrap(), &ct).unwrap(),
            hex!("00112233445566778899AABBCCDDEEFF")
        );
        let mut bad = ct.clone();
        bad[0] ^= 1;
        assert_eq!(
            run_single(kw(&Param::None, &kek, Dir::Decrypt).unwrap(), &bad).err(),
            Some(Error::EncryptedDataInvalid)
        );
        assert_eq!(
            run_single(kw(&Param::None, &kek, Dir::Encrypt).unwrap(), &[0; 12]).err(),
            Some(Error::DataLenRange)
        );
        let kek = hex!("5840df6e29b02af1ab493b705bf16ea1ae8338f4dcc176a8");
        let ct = run_single(
            kwp(&Param::None, &kek, Dir::Encrypt).unwrap(),
            &hex!("c37b7e6492584340bed12207808941155068f738"),
        )
        .unwrap();
        assert_eq!(
            ct,
            hex!("138bdeaa9b8fa7fc61f97742e72248ee5ae6ae5360d1ae6a5f54f373fa543b6a")
        );
        let ct7 = run_single(
            kwp(&Param::None, &kek, Dir::Encrypt).unwrap(),
            &hex!("466f7250617369"),
        )
        .unwrap();
        assert_eq!(ct7, hex!("afbeb0f07dfbf5419200f2ccb50bb24f"));
        assert_eq!(
            run_single(kwp(&Param::None, &kek, Dir::Decrypt).unwrap(), &ct7).unwrap(),
            hex!("466f7250617369")
        );
    }

    #[test]
    fn kw_for_wrapping_zero_pads_to_semiblocks() {
        let kek = hex!("000102030405060708090A0B0C0D0E0F");
        let key = [0x5a; 20];
        let op = kw_zero_padded(&Param::None, &kek, Dir::Encrypt).unwrap();
        assert_eq!(op.single_len(20), 24 + 8);
        let ct = run_single(op, &key).unwrap();
        let padded = [&key[..], &[0; 4]].concat();
        // The same as plain KW of the padded key; unwrapping gives it back.
        assert_eq!(
            ct,
            run_single(kw(&Param::None, &kek, Dir::Encrypt).unwrap(), &padded).unwrap()
        );
        assert_eq!(
            run_single(
                kw_zero_padded(&Param::None, &kek, Dir::Decrypt).unwrap(),
                &ct
            )
            .unwrap(),
            padded
        );
        // Whole semiblocks are not padded; too short stays too short.
        let op = kw_zero_padded(&Param::None, &kek, Dir::Encrypt).unwrap();
        assert_eq!(op.single_len(16), 24);
        assert_eq!(
            run_single(
                kw_zero_padded(&Param::None, &kek, Dir::Encrypt).unwrap(),
                &[1; 7]
            )
            .err(),
            Some(Error::DataLenRange)
        );
    }

    #[test]
    fn check_value_is_first_three_bytes_of_e_k_zero() {
        assert_eq!(check_value(&[0; 16]).unwrap(), hex!("66e94b"));
    }
}
