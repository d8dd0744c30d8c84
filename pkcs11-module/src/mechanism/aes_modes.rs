//! The AES modes past the classic ones of `aes.rs`: CBC with ciphertext
//! stealing (`CKM_AES_CTS`), CCM (`CKM_AES_CCM`, SP 800-38C) and XTS
//! (`CKM_AES_XTS`, IEEE 1619, on `CKK_AES_XTS` keys).
//!
//! CTS is CBC-CS1 of the SP 800-38A addendum, the variant Kryoptic (through
//! OpenSSL's default) gives `CKM_AES_CTS`; it comes from the `cts` crate and
//! XTS from `xts-mode`. CCM is written here over `aes` and `ctr`: PKCS#11
//! picks the nonce (7–13 bytes) and MAC (4–16 bytes) lengths at run time,
//! which the `ccm` crate fixes as type parameters (49 instances per key
//! size); the unit tests check ours against that crate and SP 800-38C.
//! All three see their whole input at once (`Buffered`): CTS and XTS treat
//! the last block specially, CCM authenticates before it releases plaintext.
#![forbid(unsafe_code)]

use std::sync::Arc;

use aes::cipher::{BlockModeEncrypt, InnerIvInit, StreamCipher, StreamCipherCoreWrapper};
use aes::{Aes128, Aes256, Block};
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use super::aes::AesKey;
use super::{CipherOp, Dir, OneShot, Param, buffered, cached, key_value};
use crate::error::{Error, Result};
use crate::object::Object;

/// The length error of a direction: the spec names a different code for
/// ciphertext.
fn len_error(dir: Dir) -> Error {
    match dir {
        Dir::Encrypt => Error::DataLenRange,
        Dir::Decrypt => Error::EncryptedDataLenRange,
    }
}

fn iv16(param: &Param) -> Result<[u8; 16]> {
    match param {
        Param::Raw(b) => b
            .as_slice()
            .try_into()
            .map_err(|_| Error::MechanismParamInvalid),
        _ => Err(Error::MechanismParamInvalid),
    }
}

// ---- CTS (CBC-CS1) --------------------------------------------------------------------

/// CBC-CS1: at least one block; ciphertext as long as the plaintext; whole
/// blocks give exactly CBC.
struct Cts {
    key: Arc<AesKey>,
    dir: Dir,
    iv: [u8; 16],
}

impl OneShot for Cts {
    fn out_len(&self, len: usize) -> usize {
        len
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        use cts::{Decrypt, Encrypt};
        if input.len() < 16 {
            return Err(len_error(self.dir));
        }
        let buf = &mut out[..input.len()];
        buf.copy_from_slice(input);
        let iv = Block::from(self.iv);
        macro_rules! run {
            ($k:expr) => {{
                // By reference: no copy of the key schedule on the stack.
                let mode = cts::CbcCs1::inner_iv_init($k, &iv);
                match self.dir {
                    Dir::Encrypt => mode.encrypt(buf),
                    Dir::Decrypt => mode.decrypt(buf),
                }
            }};
        }
        match &*self.key {
            AesKey::K128(k) => run!(k),
            AesKey::K192(k) => run!(k),
            AesKey::K256(k) => run!(k),
        }
        .map_err(|_| len_error(self.dir))?;
        Ok(input.len())
    }
}

/// Builds `CKM_AES_CTS` (parameter: the 16-byte IV).
pub fn cts(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let iv = iv16(param)?;
    Ok(buffered(Cts { key, dir, iv }))
}

// ---- CCM ------------------------------------------------------------------------------

/// CCM per SP 800-38C with the lengths of `CK_CCM_PARAMS`. `data_len` is the
/// plaintext length in both directions (as Kryoptic reads `ulDataLen`), and
/// the input must match it.
struct Ccm {
    key: Arc<AesKey>,
    dir: Dir,
    nonce: Vec<u8>,
    aad: Vec<u8>,
    data_len: usize,
    mac_len: usize,
}

impl Ccm {
    /// The counter block A_i (flags, nonce, counter i in the last q bytes).
    fn counter_block(&self, i: u8) -> Block {
        let q = 15 - self.nonce.len();
        let mut a = Block::default();
        a[0] = (q - 1) as u8;
        a[1..1 + self.nonce.len()].copy_from_slice(&self.nonce);
        a[15] = i;
        a
    }

    /// CBC-MAC over B_0, the encoded AAD and the payload (SP 800-38C A.2).
    fn cbc_mac(&self, payload: &[u8]) -> Block {
        let q = 15 - self.nonce.len();
        let mut b0 = Block::default();
        b0[0] = (u8::from(!self.aad.is_empty()) << 6)
            | ((((self.mac_len - 2) / 2) as u8) << 3)
            | (q - 1) as u8;
        b0[1..1 + self.nonce.len()].copy_from_slice(&self.nonce);
        b0[1 + self.nonce.len()..].copy_from_slice(&(payload.len() as u64).to_be_bytes()[8 - q..]);
        let mut msg = Zeroizing::new(Vec::with_capacity(
            16 + self.aad.len() + 10 + payload.len() + 32,
        ));
        msg.extend_from_slice(&b0);
        if !self.aad.is_empty() {
            let a = self.aad.len() as u64;
            if a < 0xFF00 {
                msg.extend_from_slice(&(a as u16).to_be_bytes());
            } else if a <= u64::from(u32::MAX) {
                msg.extend_from_slice(&[0xFF, 0xFE]);
                msg.extend_from_slice(&(a as u32).to_be_bytes());
            } else {
                msg.extend_from_slice(&[0xFF, 0xFF]);
                msg.extend_from_slice(&a.to_be_bytes());
            }
            msg.extend_from_slice(&self.aad);
            let padded = msg.len().next_multiple_of(16);
            msg.resize(padded, 0);
        }
        msg.extend_from_slice(payload);
        let padded = msg.len().next_multiple_of(16);
        msg.resize(padded, 0);
        // CBC with a zero IV; the MAC is the last block.
        let blocks = Block::slice_as_chunks_mut(&mut msg).0;
        let zero = Block::default();
        macro_rules! chain {
            ($k:expr) => {
                cbc::Encryptor::inner_iv_init($k, &zero).encrypt_blocks(blocks)
            };
        }
        match &*self.key {
            AesKey::K128(k) => chain!(k),
            AesKey::K192(k) => chain!(k),
            AesKey::K256(k) => chain!(k),
        }
        blocks[blocks.len() - 1]
    }

    /// CTR from A_1 over `data`, in place. The counter is the last q bytes;
    /// the length limit keeps it from carrying further, so a 64-bit
    /// big-endian counter computes the same.
    fn ctr(&self, data: &mut [u8]) {
        let a1 = self.counter_block(1);
        macro_rules! run {
            ($k:expr) => {
                StreamCipherCoreWrapper::from_core(
                    ctr::CtrCore::<_, ctr::flavors::Ctr64BE>::inner_iv_init($k, &a1),
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

    /// The tag: the CBC-MAC encrypted with A_0, cut to `mac_len`.
    fn tag(&self, payload: &[u8]) -> Block {
        let mut t = self.cbc_mac(payload);
        let mut s0 = self.counter_block(0);
        self.key.encrypt_blocks(std::slice::from_mut(&mut s0));
        for (x, s) in t.iter_mut().zip(s0.iter()) {
            *x ^= s;
        }
        t
    }
}

impl OneShot for Ccm {
    fn out_len(&self, len: usize) -> usize {
        // From the input actually given (bounded by it, whatever ulDataLen
        // says): `process` refuses any other length than ulDataLen's.
        match self.dir {
            Dir::Encrypt => len + self.mac_len,
            Dir::Decrypt => len.saturating_sub(self.mac_len),
        }
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        match self.dir {
            Dir::Encrypt => {
                if input.len() != self.data_len {
                    return Err(Error::DataLenRange);
                }
                let tag = self.tag(input);
                let (body, tag_out) = out[..input.len() + self.mac_len].split_at_mut(input.len());
                body.copy_from_slice(input);
                self.ctr(body);
                tag_out.copy_from_slice(&tag[..self.mac_len]);
                Ok(input.len() + self.mac_len)
            }
            Dir::Decrypt => {
                if input.len() != self.data_len + self.mac_len {
                    return Err(Error::EncryptedDataLenRange);
                }
                let (ct, tag) = input.split_at(self.data_len);
                // Decrypted into scratch space: nothing reaches the caller
                // unless the tag matched.
                let mut plain = Zeroizing::new(ct.to_vec());
                self.ctr(&mut plain);
                let want = self.tag(&plain);
                if !bool::from(want[..self.mac_len].ct_eq(tag)) {
                    return Err(Error::EncryptedDataInvalid);
                }
                out[..plain.len()].copy_from_slice(&plain);
                Ok(plain.len())
            }
        }
    }
}

/// Builds `CKM_AES_CCM` from a parsed `CK_CCM_PARAMS`: nonce 7–13 bytes, MAC
/// 4–16 bytes and even, `ulDataLen` below 2^(8q) for q = 15 − nonce length.
pub fn ccm(param: &Param, key: Arc<AesKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let Param::Ccm {
        data_len,
        nonce,
        aad,
        mac_len,
    } = param
    else {
        return Err(Error::MechanismParamInvalid);
    };
    let q = 15usize.saturating_sub(nonce.len());
    let too_long = q < 8 && *data_len >> (8 * q) != 0;
    let data_len = usize::try_from(*data_len).map_err(|_| Error::MechanismParamInvalid)?;
    if !(7..=13).contains(&nonce.len())
        || !(4..=16).contains(mac_len)
        || mac_len % 2 != 0
        || too_long
        || data_len > isize::MAX as usize - 16
    {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(buffered(Ccm {
        key,
        dir,
        nonce: nonce.clone(),
        aad: aad.clone(),
        data_len,
        mac_len: *mac_len as usize,
    }))
}

// ---- XTS ------------------------------------------------------------------------------

/// The two halves of a `CKK_AES_XTS` key (data key, tweak key), expanded.
/// Always behind the `Arc` of the object's cache, so its size is moot.
#[allow(clippy::large_enum_variant)]
pub enum XtsKey {
    /// A 32-byte key: two AES-128 keys.
    K128(Aes128, Aes128),
    /// A 64-byte key: two AES-256 keys.
    K256(Aes256, Aes256),
}

impl XtsKey {
    /// Splits and expands a 32- or 64-byte key.
    pub fn new(key: &[u8]) -> Result<XtsKey> {
        use aes::cipher::KeyInit;
        let half = key.len() / 2;
        let (k1, k2) = key.split_at(half);
        let bad = |_| Error::KeySizeRange;
        Ok(match key.len() {
            32 => XtsKey::K128(
                Aes128::new_from_slice(k1).map_err(bad)?,
                Aes128::new_from_slice(k2).map_err(bad)?,
            ),
            64 => XtsKey::K256(
                Aes256::new_from_slice(k1).map_err(bad)?,
                Aes256::new_from_slice(k2).map_err(bad)?,
            ),
            _ => return Err(Error::KeySizeRange),
        })
    }

    /// Encrypts or decrypts one data unit (at least a block) in place.
    fn run(&self, dir: Dir, data: &mut [u8], tweak: [u8; 16]) {
        let tweak = Block::from(tweak);
        macro_rules! go {
            ($k1:expr, $k2:expr) => {{
                // By reference: no copies of the key schedules.
                let x = xts_mode::Xts128::new($k1, $k2);
                match dir {
                    Dir::Encrypt => x.encrypt_sector(data, tweak),
                    Dir::Decrypt => x.decrypt_sector(data, tweak),
                }
            }};
        }
        match self {
            XtsKey::K128(k1, k2) => go!(k1, k2),
            XtsKey::K256(k1, k2) => go!(k1, k2),
        }
    }
}

/// The expanded XTS key of an object, built once and cached with it.
pub fn xts_key(key: &Object) -> Result<Arc<XtsKey>> {
    cached(key, || XtsKey::new(key_value(key)?))
}

/// `CKA_CHECK_VALUE` of a `CKK_AES_XTS` key. PKCS#11 v3.0 §4.10 takes the
/// first three bytes of a block of zeros encrypted with the key type's
/// cipher and mode: here XTS, with a zero tweak. Every key value the token
/// stores passes here, so here the token refuses a key whose two halves are
/// equal (`CKR_ATTRIBUTE_VALUE_INVALID`): SP 800-38E and IEEE 1619-2018 require
/// them to differ, as OpenSSL 3 does.
pub fn xts_check_value(key: &[u8]) -> Result<[u8; 3]> {
    let (k1, k2) = key.split_at(key.len() / 2);
    if bool::from(k1.ct_eq(k2)) {
        return Err(Error::AttributeValueInvalid);
    }
    let mut b = [0u8; 16];
    XtsKey::new(key)?.run(Dir::Encrypt, &mut b, [0; 16]);
    Ok([b[0], b[1], b[2]])
}

/// XTS over the whole input as one data unit, with the caller's tweak.
struct Xts {
    key: Arc<XtsKey>,
    dir: Dir,
    tweak: [u8; 16],
}

impl OneShot for Xts {
    fn out_len(&self, len: usize) -> usize {
        len
    }

    fn process(&self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        // `xts-mode` asserts a whole block: checked first, never a panic.
        if input.len() < 16 {
            return Err(len_error(self.dir));
        }
        let buf = &mut out[..input.len()];
        buf.copy_from_slice(input);
        self.key.run(self.dir, buf, self.tweak);
        Ok(input.len())
    }
}

/// Builds `CKM_AES_XTS` (parameter: the 16-byte tweak).
pub fn xts(param: &Param, key: Arc<XtsKey>, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let tweak = iv16(param)?;
    Ok(buffered(Xts { key, dir, tweak }))
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

    /// RFC 3962 Appendix B (AES-128, IV 0) gives CBC-CS3 (the last two
    /// blocks swapped); CS1 is the same blocks in CBC order, the partial one
    /// before the last. `cs3_to_cs1` undoes the swap.
    fn cs3_to_cs1(cs3: &[u8]) -> Vec<u8> {
        let n = cs3.len();
        let tail = if n.is_multiple_of(16) { 16 } else { n % 16 };
        let head = n - tail - 16;
        let (first, rest) = cs3.split_at(head);
        let (last_full, partial) = rest.split_at(16);
        [first, partial, last_full].concat()
    }

    #[test]
    fn rfc3962_vectors_as_cbc_cs1() {
        let k = hex!("636869636b656e207465726979616b69");
        let pt = hex!(
            "4920776f756c64206c696b652074686520"
            "47656e6572616c20476175277320436869636b656e2c20706c656173652c"
            "20616e6420776f6e746f6e20736f75702e"
        );
        let cases: [(usize, &[u8]); 6] = [
            (17, &hex!("c6353568f2bf8cb4d8a580362da7ff7f97")),
            (
                31,
                &hex!("fc00783e0efdb2c1d445d4c8eff7ed2297687268d6ecccc0c07b25e25ecfe5"),
            ),
            (
                32,
                &hex!("39312523a78662d5be7fcbcc98ebf5a897687268d6ecccc0c07b25e25ecfe584"),
            ),
            (
                47,
                &hex!(
                    "97687268d6ecccc0c07b25e25ecfe584b3fffd940c16a18c1b5549d2f838029e"
                    "39312523a78662d5be7fcbcc98ebf5"
                ),
            ),
            (
                48,
                &hex!(
                    "97687268d6ecccc0c07b25e25ecfe5849dad8bbb96c4cdc03bc103e1a194bbd8"
                    "39312523a78662d5be7fcbcc98ebf5a8"
                ),
            ),
            (
                64,
                &hex!(
                    "97687268d6ecccc0c07b25e25ecfe58439312523a78662d5be7fcbcc98ebf5a8"
                    "4807efe836ee89a526730dbc2f7bc8409dad8bbb96c4cdc03bc103e1a194bbd8"
                ),
            ),
        ];
        let iv = Param::Raw(vec![0; 16]);
        for (len, cs3) in cases {
            let want = cs3_to_cs1(cs3);
            let ct = run_single(cts(&iv, key(&k), Dir::Encrypt).unwrap(), &pt[..len]).unwrap();
            assert_eq!(ct, want, "{len} bytes");
            let parts: Vec<&[u8]> = ct.chunks(5).collect();
            assert_eq!(
                run_parts(cts(&iv, key(&k), Dir::Decrypt).unwrap(), &parts).unwrap(),
                &pt[..len]
            );
        }
        // Whole blocks: exactly CBC (SP 800-38A F.2.1).
        let k = hex!("2b7e151628aed2a6abf7158809cf4f3c");
        let iv = Param::Raw(hex!("000102030405060708090a0b0c0d0e0f").to_vec());
        let p = hex!("6bc1bee22e409f96e93d7e117393172aae2d8a571e03ac9c9eb76fac45af8e51");
        assert_eq!(
            run_single(cts(&iv, key(&k), Dir::Encrypt).unwrap(), &p).unwrap(),
            hex!("7649abac8119b246cee98e9b12e9197d5086cb9b507219ee95db113a917678b2")
        );
    }

    #[test]
    fn cts_refuses_short_input_and_bad_iv() {
        let iv = Param::Raw(vec![1; 16]);
        assert_eq!(
            run_single(cts(&iv, key(&[2; 16]), Dir::Encrypt).unwrap(), &[0; 15]).err(),
            Some(Error::DataLenRange)
        );
        assert_eq!(
            run_single(cts(&iv, key(&[2; 16]), Dir::Decrypt).unwrap(), &[0; 3]).err(),
            Some(Error::EncryptedDataLenRange)
        );
        for bad in [
            Param::None,
            Param::Raw(vec![0; 15]),
            Param::Raw(vec![0; 17]),
        ] {
            assert_eq!(
                cts(&bad, key(&[2; 16]), Dir::Encrypt).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
        // Every length from one block up round-trips, under each key size.
        for k in [&[3u8; 16][..], &[4; 24], &[5; 32]] {
            for len in 16..80 {
                let data: Vec<u8> = (0..len as u8).collect();
                let ct = run_single(cts(&iv, key(k), Dir::Encrypt).unwrap(), &data).unwrap();
                assert_eq!(ct.len(), len);
                assert_eq!(
                    run_single(cts(&iv, key(k), Dir::Decrypt).unwrap(), &ct).unwrap(),
                    data
                );
            }
        }
    }

    fn ccm_param(data_len: u64, nonce: &[u8], aad: &[u8], mac_len: u64) -> Param {
        Param::Ccm {
            data_len,
            nonce: nonce.to_vec(),
            aad: aad.to_vec(),
            mac_len,
        }
    }

    /// SP 800-38C Appendix C, examples 1–4 (key 40..4f).
    #[test]
    fn sp800_38c_examples() {
        let k = hex!("404142434445464748494a4b4c4d4e4f");
        let nonce = hex!("101112131415161718191a1b1c");
        let aad: Vec<u8> = (0..=0x13).collect();
        let pt = hex!("202122232425262728292a2b2c2d2e2f3031323334353637");
        let mut big_aad = Vec::with_capacity(65536);
        for i in 0..65536u32 {
            big_aad.push(i as u8);
        }
        type Case<'a> = (&'a [u8], &'a [u8], &'a [u8], u64, &'a [u8]);
        let cases: [Case; 4] = [
            (
                &nonce[..7],
                &aad[..8],
                &pt[..4],
                4,
                &hex!("7162015b4dac255d"),
            ),
            (
                &nonce[..8],
                &aad[..16],
                &pt[..16],
                6,
                &hex!("d2a1f0e051ea5f62081a7792073d593d1fc64fbfaccd"),
            ),
            (
                &nonce[..12],
                &aad[..20],
                &pt[..24],
                8,
                &hex!("e3b201a9f5b71a7a9b1ceaeccd97e70b6176aad9a4428aa5484392fbc1b09951"),
            ),
            (
                &nonce[..13],
                &big_aad,
                &hex!("202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f"),
                14,
                &hex!(
                    "69915dad1e84c6376a68c2967e4dab615ae0fd1faec44cc484828529463ccf72"
                    "b4ac6bec93e8598e7f0dadbcea5b"
                ),
            ),
        ];
        for (nonce, aad, pt, mac, want) in cases {
            let p = ccm_param(pt.len() as u64, nonce, aad, mac);
            assert_eq!(
                run_single(ccm(&p, key(&k), Dir::Encrypt).unwrap(), pt).unwrap(),
                want
            );
            let parts: Vec<&[u8]> = want.chunks(3).collect();
            assert_eq!(
                run_parts(ccm(&p, key(&k), Dir::Decrypt).unwrap(), &parts).unwrap(),
                pt
            );
        }
    }

    /// Independent check: the `ccm` crate, over a spread of nonce and MAC
    /// lengths, key sizes and data lengths.
    #[test]
    fn ccm_agrees_with_ccm_crate() {
        use ccm::aead::AeadInOut;
        use ccm::consts::{U4, U7, U10, U12, U13, U16};
        fn theirs<
            M: ccm::aead::array::ArraySize + ccm::TagSize,
            N: ccm::aead::array::ArraySize + ccm::NonceSize,
        >(
            k: &[u8],
            nonce: &[u8],
            aad: &[u8],
            msg: &[u8],
        ) -> Vec<u8> {
            use aes::cipher::KeyInit;
            let mut buf = msg.to_vec();
            let tag = match k.len() {
                16 => ccm::Ccm::<Aes128, M, N>::from(Aes128::new_from_slice(k).unwrap())
                    .encrypt_inout_detached(
                        nonce.try_into().unwrap(),
                        aad,
                        buf.as_mut_slice().into(),
                    ),
                _ => ccm::Ccm::<Aes256, M, N>::from(Aes256::new_from_slice(k).unwrap())
                    .encrypt_inout_detached(
                        nonce.try_into().unwrap(),
                        aad,
                        buf.as_mut_slice().into(),
                    ),
            }
            .unwrap();
            buf.extend_from_slice(&tag);
            buf
        }
        for k in [&[9u8; 16][..], &[8; 32]] {
            for len in [0usize, 1, 15, 16, 17, 100, 1000] {
                let msg: Vec<u8> = (0..len).map(|i| (i * 7) as u8).collect();
                for aad_len in [0usize, 1, 30] {
                    let aad = vec![0x61; aad_len];
                    let check = |nonce: &[u8], mac: u64, want: Vec<u8>| {
                        let p = ccm_param(len as u64, nonce, &aad, mac);
                        let ct = run_single(ccm(&p, key(k), Dir::Encrypt).unwrap(), &msg).unwrap();
                        assert_eq!(ct, want, "len {len} nonce {} mac {mac}", nonce.len());
                        let back = run_single(ccm(&p, key(k), Dir::Decrypt).unwrap(), &ct).unwrap();
                        assert_eq!(back, msg);
                    };
                    check(&[1; 7], 4, theirs::<U4, U7>(k, &[1; 7], &aad, &msg));
                    check(&[2; 10], 12, theirs::<U12, U10>(k, &[2; 10], &aad, &msg));
                    check(&[3; 13], 16, theirs::<U16, U13>(k, &[3; 13], &aad, &msg));
                }
            }
        }
    }

    #[test]
    fn ccm_rejects_tampering_lengths_and_bad_parameters() {
        let k = [0x42; 16];
        let p = ccm_param(6, &[1; 12], b"aad", 8);
        let ct = run_single(ccm(&p, key(&k), Dir::Encrypt).unwrap(), b"secret").unwrap();
        assert_eq!(ct.len(), 14);
        for i in 0..ct.len() {
            let mut bad = ct.clone();
            bad[i] ^= 1;
            assert_eq!(
                run_single(ccm(&p, key(&k), Dir::Decrypt).unwrap(), &bad).err(),
                Some(Error::EncryptedDataInvalid)
            );
        }
        // The input must have the length the parameter announced.
        assert_eq!(
            run_single(ccm(&p, key(&k), Dir::Encrypt).unwrap(), b"secrets").err(),
            Some(Error::DataLenRange)
        );
        assert_eq!(
            run_single(ccm(&p, key(&k), Dir::Decrypt).unwrap(), &ct[..13]).err(),
            Some(Error::EncryptedDataLenRange)
        );
        for bad in [
            ccm_param(6, &[1; 6], b"", 8),
            ccm_param(6, &[1; 14], b"", 8),
            ccm_param(6, &[1; 12], b"", 2),
            ccm_param(6, &[1; 12], b"", 7),
            ccm_param(6, &[1; 12], b"", 18),
            // Nonce 13: q = 2, so at most 65535 bytes.
            ccm_param(65536, &[1; 13], b"", 8),
            Param::Raw(vec![0; 16]),
        ] {
            assert_eq!(
                ccm(&bad, key(&k), Dir::Encrypt).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
        assert!(ccm(&ccm_param(65535, &[1; 13], b"", 8), key(&k), Dir::Encrypt).is_ok());
    }

    fn xts_run(k: &[u8], tweak: [u8; 16], dir: Dir, data: &[u8]) -> Result<Vec<u8>> {
        let op = xts(
            &Param::Raw(tweak.to_vec()),
            Arc::new(XtsKey::new(k).unwrap()),
            dir,
        )?;
        run_single(op, data)
    }

    /// IEEE 1619-2007 Annex B: vectors 1, 4 (AES-128, 512 bytes; its first
    /// block), 10 (AES-256; first block) and 15 (17 bytes: ciphertext
    /// stealing). Wycheproof's XTS file runs in full through the .so
    /// (tests/tests/aes_modes.rs).
    #[test]
    fn ieee1619_vectors() {
        let v1 = xts_run(&[0; 32], [0; 16], Dir::Encrypt, &[0; 32]).unwrap();
        assert_eq!(
            v1,
            hex!("917cf69ebd68b2ec9b9fe9a3eadda692cd43d2f59598ed858c02c2652fbf922e")
        );
        let seq: Vec<u8> = (0..512).map(|i| i as u8).collect();
        let k4 = hex!("2718281828459045235360287471352631415926535897932384626433832795");
        let ct = xts_run(&k4, [0; 16], Dir::Encrypt, &seq).unwrap();
        assert_eq!(&ct[..16], hex!("27a7479befa1d476489f308cd4cfa6e2"));
        assert_eq!(xts_run(&k4, [0; 16], Dir::Decrypt, &ct).unwrap(), seq);
        let k10 = hex!(
            "2718281828459045235360287471352662497757247093699959574966967627"
            "3141592653589793238462643383279502884197169399375105820974944592"
        );
        let mut tweak = [0u8; 16];
        tweak[0] = 0xff;
        let ct = xts_run(&k10, tweak, Dir::Encrypt, &seq).unwrap();
        assert_eq!(&ct[..16], hex!("1c3b3a102f770386e4836c99e370cf9b"));
        assert_eq!(xts_run(&k10, tweak, Dir::Decrypt, &ct).unwrap(), seq);
        let k15 = hex!("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0");
        let tweak15 = hex!("9a785634120000000000000000000000");
        let pt15 = hex!("000102030405060708090a0b0c0d0e0f10");
        let ct15 = xts_run(&k15, tweak15, Dir::Encrypt, &pt15).unwrap();
        assert_eq!(ct15, hex!("6c1625db4671522d3d7599601de7ca09ed"));
        assert_eq!(xts_run(&k15, tweak15, Dir::Decrypt, &ct15).unwrap(), pt15);
    }

    #[test]
    fn xts_refuses_short_input_bad_tweak_and_key_sizes() {
        let k = [7u8; 32];
        assert_eq!(
            xts_run(&k, [0; 16], Dir::Encrypt, &[0; 15]).err(),
            Some(Error::DataLenRange)
        );
        assert_eq!(
            xts_run(&k, [0; 16], Dir::Decrypt, &[]).err(),
            Some(Error::EncryptedDataLenRange)
        );
        let xk = Arc::new(XtsKey::new(&k).unwrap());
        for bad in [Param::None, Param::Raw(vec![0; 8])] {
            assert_eq!(
                xts(&bad, xk.clone(), Dir::Encrypt).err(),
                Some(Error::MechanismParamInvalid)
            );
        }
        for len in [16, 24, 48, 33] {
            assert_eq!(XtsKey::new(&vec![1; len]).err(), Some(Error::KeySizeRange));
        }
        // The check value is XTS of a zero block under a zero tweak (vector
        // 15's key: its first block, data 0..15, is no help; compare with
        // the mode itself); a key with equal halves is refused.
        let k15 = hex!("fffefdfcfbfaf9f8f7f6f5f4f3f2f1f0bfbebdbcbbbab9b8b7b6b5b4b3b2b1b0");
        let zero = xts_run(&k15, [0; 16], Dir::Encrypt, &[0; 16]).unwrap();
        assert_eq!(xts_check_value(&k15).unwrap(), zero[..3]);
        assert_eq!(
            xts_check_value(&[0; 32]).err(),
            Some(Error::AttributeValueInvalid)
        );
        assert_eq!(
            xts_check_value(&[9; 64]).err(),
            Some(Error::AttributeValueInvalid)
        );
    }
}
