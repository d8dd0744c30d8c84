//! DES and triple DES (legacy: `spec` tokens only, see `module/legacy.rs`):
//! `CKK_DES` (8 bytes), `CKK_DES2` (16, two-key EDE) and `CKK_DES3` (24,
//! three-key EDE) keys; ECB, CBC and CBC-PAD (PKCS#11 v3.0 §2.x, with the
//! multi-part buffering of the AES modes), triple-DES CMAC (SP 800-38B),
//! key generation with odd parity and `CKA_CHECK_VALUE`. SoftHSMv2 offers
//! these and clients (payment, older smart-card software) still ask for them.
//! The block cipher is RustCrypto `des`; the modes are written here, on
//! 8-byte blocks, as `aes.rs` writes them on 16-byte ones.
#![forbid(unsafe_code)]

use std::sync::Arc;

use des::cipher::{BlockCipherDecrypt, BlockCipherEncrypt, KeyInit};
use des::{Des, TdesEde2, TdesEde3};
use zeroize::Zeroizing;

use super::{CipherOp, Dir, Param, SignOp, cached, key_value, mac};
use crate::error::{Error, Result};
use crate::object::Object;

/// DES block length.
const BLOCK: usize = 8;

/// An expanded DES or triple-DES key.
#[derive(Clone)]
pub enum DesKey {
    /// Single DES (`CKK_DES`).
    Single(Des),
    /// Two-key triple DES (`CKK_DES2`: K1, K2, K1).
    Two(TdesEde2),
    /// Three-key triple DES (`CKK_DES3`).
    Three(TdesEde3),
}

impl DesKey {
    /// Expands an 8, 16 or 24-byte key (parity bits are ignored).
    pub fn new(key: &[u8]) -> Result<DesKey> {
        let bad = |_| Error::KeySizeRange;
        Ok(match key.len() {
            8 => DesKey::Single(Des::new_from_slice(key).map_err(bad)?),
            16 => DesKey::Two(TdesEde2::new_from_slice(key).map_err(bad)?),
            24 => DesKey::Three(TdesEde3::new_from_slice(key).map_err(bad)?),
            _ => return Err(Error::KeySizeRange),
        })
    }

    fn encrypt(&self, b: &mut [u8; BLOCK]) {
        let block: &mut des::cipher::Block<Des> = b.into();
        match self {
            DesKey::Single(c) => c.encrypt_block(block),
            DesKey::Two(c) => c.encrypt_block(block),
            DesKey::Three(c) => c.encrypt_block(block),
        }
    }

    fn decrypt(&self, b: &mut [u8; BLOCK]) {
        let block: &mut des::cipher::Block<Des> = b.into();
        match self {
            DesKey::Single(c) => c.decrypt_block(block),
            DesKey::Two(c) => c.decrypt_block(block),
            DesKey::Three(c) => c.decrypt_block(block),
        }
    }
}

/// The expanded key of a DES object, built once and cached with it.
pub fn des_key(key: &Object) -> Result<Arc<DesKey>> {
    cached(key, || DesKey::new(key_value(key)?))
}

/// Sets every byte's low bit so that the byte has odd parity (FIPS 46-3:
/// "bits 8, 16, …, 64 are for use in ensuring that each byte is of odd
/// parity"), as `CKM_DES*_KEY_GEN` must (PKCS#11 v3.0 §2.x).
pub fn set_odd_parity(key: &mut [u8]) {
    for b in key {
        *b = (*b & 0xfe) | u8::from((*b >> 1).count_ones() % 2 == 0);
    }
}

/// `CKA_CHECK_VALUE` of a DES key: the first three bytes of E_K(0^64).
pub fn check_value(key: &[u8]) -> Result<[u8; 3]> {
    let mut b = Zeroizing::new([0u8; BLOCK]);
    DesKey::new(key)?.encrypt(&mut b);
    Ok([b[0], b[1], b[2]])
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Chain {
    Ecb,
    Cbc,
    CbcPad,
}

/// ECB/CBC/CBC-PAD on 8-byte blocks, buffering partial blocks across
/// multi-part calls (and, for CBC-PAD decryption, the last whole block).
struct BlockMode {
    key: Arc<DesKey>,
    dir: Dir,
    chain: Chain,
    iv: [u8; BLOCK],
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
        let whole = total - total % BLOCK;
        if self.chain == Chain::CbcPad && self.dir == Dir::Decrypt && whole == total && whole > 0 {
            whole - BLOCK
        } else {
            whole
        }
    }

    /// Transforms whole blocks `data` into `out`, chaining through `self.iv`.
    fn run(&mut self, data: &[u8], out: &mut [u8]) {
        for (src, dst) in data.chunks_exact(BLOCK).zip(out.chunks_exact_mut(BLOCK)) {
            let mut b = Zeroizing::new([0u8; BLOCK]);
            b.copy_from_slice(src);
            match (self.chain, self.dir) {
                (Chain::Ecb, Dir::Encrypt) => self.key.encrypt(&mut b),
                (Chain::Ecb, Dir::Decrypt) => self.key.decrypt(&mut b),
                (_, Dir::Encrypt) => {
                    for (x, v) in b.iter_mut().zip(self.iv) {
                        *x ^= v;
                    }
                    self.key.encrypt(&mut b);
                    self.iv = *b;
                }
                (_, Dir::Decrypt) => {
                    self.key.decrypt(&mut b);
                    for (x, v) in b.iter_mut().zip(self.iv) {
                        *x ^= v;
                    }
                    self.iv.copy_from_slice(src);
                }
            }
            dst.copy_from_slice(&*b);
        }
    }

    fn update_into(&mut self, input: &[u8], out: &mut [u8]) -> usize {
        let n = self.ready(input.len());
        let mut all = Zeroizing::new(Vec::with_capacity(self.pending.len() + input.len()));
        all.extend_from_slice(&self.pending);
        all.extend_from_slice(input);
        crate::secret::scrubbed(|| self.run(&all[..n], out));
        self.pending = Zeroizing::new(all[n..].to_vec());
        n
    }

    fn finish_into(&mut self, out: &mut [u8]) -> Result<usize> {
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => {
                let pad = BLOCK - self.pending.len();
                let mut last = Zeroizing::new(self.pending.to_vec());
                last.resize(BLOCK, pad as u8);
                crate::secret::scrubbed(|| self.run(&last, out));
                Ok(BLOCK)
            }
            (Chain::CbcPad, Dir::Decrypt) => {
                if self.pending.len() != BLOCK {
                    return Err(self.len_error());
                }
                let last = Zeroizing::new(self.pending.to_vec());
                let mut plain = Zeroizing::new([0u8; BLOCK]);
                crate::secret::scrubbed(|| self.run(&last, plain.as_mut()));
                let pad = plain[BLOCK - 1] as usize;
                let ok = (1..=BLOCK).contains(&pad)
                    && plain[BLOCK - pad..].iter().all(|&b| b as usize == pad);
                if !ok {
                    return Err(Error::EncryptedDataInvalid);
                }
                out[..BLOCK - pad].copy_from_slice(&plain[..BLOCK - pad]);
                Ok(BLOCK - pad)
            }
            _ if !self.pending.is_empty() => Err(self.len_error()),
            _ => Ok(0),
        }
    }
}

impl CipherOp for BlockMode {
    fn single_len(&self, len: usize) -> usize {
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => len / BLOCK * BLOCK + BLOCK,
            _ => len,
        }
    }

    fn single(&mut self, input: &[u8], out: &mut [u8]) -> Result<usize> {
        let whole = input.len().is_multiple_of(BLOCK);
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
        match (self.chain, self.dir) {
            (Chain::CbcPad, Dir::Encrypt) => BLOCK,
            (Chain::CbcPad, Dir::Decrypt) => BLOCK - 1,
            _ => 0,
        }
    }

    fn finish(&mut self, out: &mut [u8]) -> Result<usize> {
        self.finish_into(out)
    }
}

fn iv8(param: &Param) -> Result<[u8; BLOCK]> {
    match param {
        Param::Raw(b) => b
            .as_slice()
            .try_into()
            .map_err(|_| Error::MechanismParamInvalid),
        _ => Err(Error::MechanismParamInvalid),
    }
}

fn block_mode(key: Arc<DesKey>, dir: Dir, chain: Chain, iv: [u8; BLOCK]) -> Box<dyn CipherOp> {
    Box::new(BlockMode {
        key,
        dir,
        chain,
        iv,
        pending: Zeroizing::new(Vec::new()),
    })
}

/// Builds `CKM_DES_ECB` / `CKM_DES3_ECB` (no parameter).
pub fn ecb(param: &Param, key: &Object, dir: Dir) -> Result<Box<dyn CipherOp>> {
    if *param != Param::None {
        return Err(Error::MechanismParamInvalid);
    }
    Ok(block_mode(des_key(key)?, dir, Chain::Ecb, [0; BLOCK]))
}

/// Builds `CKM_DES_CBC` / `CKM_DES3_CBC` (parameter: the 8-byte IV).
pub fn cbc(param: &Param, key: &Object, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let iv = iv8(param)?;
    Ok(block_mode(des_key(key)?, dir, Chain::Cbc, iv))
}

/// Builds `CKM_DES_CBC_PAD` / `CKM_DES3_CBC_PAD` (PKCS#7 padding to 8
/// bytes; parameter: the 8-byte IV).
pub fn cbc_pad(param: &Param, key: &Object, dir: Dir) -> Result<Box<dyn CipherOp>> {
    let iv = iv8(param)?;
    Ok(block_mode(des_key(key)?, dir, Chain::CbcPad, iv))
}

/// Builds `CKM_DES3_CMAC` (`general` FALSE: the full 8 bytes) or
/// `CKM_DES3_CMAC_GENERAL` (`CK_MAC_GENERAL_PARAMS`: 1 to 8 bytes), SP 800-38B
/// over two- or three-key triple DES.
pub fn cmac(param: &Param, key: &Object, general: bool) -> Result<Box<dyn SignOp>> {
    let len = mac::out_len(param, general, 1, BLOCK)?;
    let value = key_value(key)?;
    match value.len() {
        16 => mac::keyed::<cmac::Cmac<TdesEde2>>(value, len),
        24 => mac::keyed::<cmac::Cmac<TdesEde3>>(value, len),
        _ => Err(Error::KeySizeRange),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki_sys::*;
    use hex_literal::hex;

    fn key(kt: CK_KEY_TYPE, value: &[u8]) -> Object {
        let mut a = crate::object::attrs::Attrs::new();
        a.insert(
            CKA_CLASS,
            ferrohsm_store::AttrValue::Ulong(CKO_SECRET_KEY as _),
        );
        a.insert(CKA_KEY_TYPE, ferrohsm_store::AttrValue::Ulong(kt as _));
        crate::object::policy::set_secret_value(&mut a, kt, value).unwrap();
        Object {
            handle: 1,
            store_id: 1,
            owner: None,
            attrs: a,
            cache: Default::default(),
        }
    }

    fn run(mut op: Box<dyn CipherOp>, input: &[u8]) -> Result<Vec<u8>> {
        let mut out = vec![0; op.single_len(input.len())];
        let n = op.single(input, &mut out)?;
        out.truncate(n);
        Ok(out)
    }

    /// Multi-part in pieces of `step` bytes gives the single-part answer.
    fn run_parts(mut op: Box<dyn CipherOp>, input: &[u8], step: usize) -> Result<Vec<u8>> {
        let mut out = Vec::new();
        for part in input.chunks(step) {
            let mut buf = vec![0; op.update_len(part.len())];
            let n = op.update(part, &mut buf)?;
            out.extend_from_slice(&buf[..n]);
        }
        let mut buf = vec![0; op.final_len()];
        let n = op.finish(&mut buf)?;
        out.extend_from_slice(&buf[..n]);
        Ok(out)
    }

    #[test]
    fn parity() {
        let mut k = [0u8, 1, 2, 3, 0xfe, 0xff, 0x80, 0x7f];
        set_odd_parity(&mut k);
        assert_eq!(k, [0x01, 0x01, 0x02, 0x02, 0xfe, 0xfe, 0x80, 0x7f]);
        assert!(k.iter().all(|b| b.count_ones() % 2 == 1));
    }

    /// NIST SP 800-67 Rev. 2 / SP 800-20 style known answers: the classic
    /// FIPS 81 example (key 0123456789ABCDEF, "Now is the time for all ").
    #[test]
    fn fips_81_des_ecb_and_cbc() {
        let k = key(CKK_DES, &hex!("0123456789abcdef"));
        let plain = b"Now is the time for all ";
        let ecb_ct = hex!("3fa40e8a984d48156a271787ab8883f9893d51ec4b563b53");
        assert_eq!(
            run(ecb(&Param::None, &k, Dir::Encrypt).unwrap(), plain).unwrap(),
            ecb_ct
        );
        assert_eq!(
            run(ecb(&Param::None, &k, Dir::Decrypt).unwrap(), &ecb_ct).unwrap(),
            plain
        );
        let iv = Param::Raw(hex!("1234567890abcdef").to_vec());
        let cbc_ct = hex!("e5c7cdde872bf27c43e934008c389c0f683788499a7c05f6");
        assert_eq!(
            run(cbc(&iv, &k, Dir::Encrypt).unwrap(), plain).unwrap(),
            cbc_ct
        );
        for step in [1, 3, 8, 13] {
            assert_eq!(
                run_parts(cbc(&iv, &k, Dir::Decrypt).unwrap(), &cbc_ct, step).unwrap(),
                plain
            );
        }
        assert_eq!(
            run(cbc(&iv, &k, Dir::Encrypt).unwrap(), &plain[..7]).unwrap_err(),
            Error::DataLenRange
        );
        assert_eq!(
            cbc(&Param::Raw(vec![0; 16]), &k, Dir::Encrypt).err(),
            Some(Error::MechanismParamInvalid)
        );
    }

    /// SP 800-67 Rev. 2 Appendix B example (three-key TDEA, ECB).
    #[test]
    fn sp800_67_tdea_ecb() {
        let k = key(
            CKK_DES3,
            &hex!("0123456789ABCDEF23456789ABCDEF01456789ABCDEF0123"),
        );
        let plain = b"The qufck brown fox jump";
        let ct = hex!("A826FD8CE53B855FCCE21C8112256FE668D5C05DD9B6B900");
        assert_eq!(
            run(ecb(&Param::None, &k, Dir::Encrypt).unwrap(), plain).unwrap(),
            ct
        );
        assert_eq!(
            run_parts(ecb(&Param::None, &k, Dir::Decrypt).unwrap(), &ct, 5).unwrap(),
            plain
        );
    }

    #[test]
    fn cbc_pad_round_trip_and_errors() {
        let k = key(CKK_DES2, &hex!("0123456789abcdeffedcba9876543210"));
        let iv = Param::Raw(vec![7; 8]);
        for len in [0, 1, 7, 8, 9, 16, 31] {
            let data: Vec<u8> = (0..len as u8).collect();
            let ct = run(cbc_pad(&iv, &k, Dir::Encrypt).unwrap(), &data).unwrap();
            assert_eq!(ct.len(), len / 8 * 8 + 8);
            assert_eq!(
                run_parts(cbc_pad(&iv, &k, Dir::Encrypt).unwrap(), &data, 3).unwrap(),
                ct
            );
            assert_eq!(
                run(cbc_pad(&iv, &k, Dir::Decrypt).unwrap(), &ct).unwrap(),
                data
            );
            assert_eq!(
                run_parts(cbc_pad(&iv, &k, Dir::Decrypt).unwrap(), &ct, 5).unwrap(),
                data
            );
        }
        assert_eq!(
            run(cbc_pad(&iv, &k, Dir::Decrypt).unwrap(), &[0; 7]).unwrap_err(),
            Error::EncryptedDataLenRange
        );
    }

    fn mac_of(mut m: Box<dyn SignOp>, data: &[u8]) -> Vec<u8> {
        m.update(data).unwrap();
        let mut out = vec![0; m.sig_len()];
        m.sign(&mut out).unwrap();
        out
    }

    /// NIST SP 800-38B Appendix D examples 9-11 (three-key TDEA) and 13-15
    /// (two-key TDEA); `openssl mac CMAC` gives the same.
    #[test]
    fn sp800_38b_tdes_cmac() {
        let msg = hex!("6bc1bee22e409f96e93d7e117393172aae2d8a57");
        let k3 = key(
            CKK_DES3,
            &hex!("8aa83bf8cbda10620bc1bf19fbb6cd58bc313d4a371ca8b5"),
        );
        assert_eq!(
            mac_of(cmac(&Param::None, &k3, false).unwrap(), b""),
            hex!("b7a688e122ffaf95")
        );
        assert_eq!(
            mac_of(cmac(&Param::None, &k3, false).unwrap(), &msg[..8]),
            hex!("8e8f293136283797")
        );
        assert_eq!(
            mac_of(cmac(&Param::None, &k3, false).unwrap(), &msg),
            hex!("743ddbe0ce2dc2ed")
        );
        let k2 = key(CKK_DES2, &hex!("4cf15134a2850dd58a3d10ba80570d38"));
        assert_eq!(
            mac_of(cmac(&Param::None, &k2, false).unwrap(), b""),
            hex!("bd2ebf9a3ba00361")
        );
        assert_eq!(
            mac_of(cmac(&Param::None, &k2, false).unwrap(), &msg[..8]),
            hex!("4ff2ab813c53ce83")
        );
        assert_eq!(
            mac_of(cmac(&Param::None, &k2, false).unwrap(), &msg),
            hex!("62dd1b471902bd4e")
        );
        let four = Param::Raw(4u64.to_ne_bytes().to_vec());
        assert_eq!(
            mac_of(cmac(&four, &k2, true).unwrap(), &msg),
            hex!("62dd1b47")
        );
        let nine = Param::Raw(9u64.to_ne_bytes().to_vec());
        assert_eq!(
            cmac(&nine, &k2, true).err(),
            Some(Error::MechanismParamInvalid)
        );
        let single = key(CKK_DES, &[1; 8]);
        assert_eq!(
            cmac(&Param::None, &single, false).err(),
            Some(Error::KeySizeRange)
        );
    }
}
