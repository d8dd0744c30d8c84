//! Message digests: SHA-1 and the SHA-2 family, through RustCrypto `sha1`/`sha2`.
#![forbid(unsafe_code)]

use digest::common::hazmat::{SerializableState, SerializedState};
use digest::{Digest, FixedOutputReset};
use zeroize::Zeroizing;

/// A running digest operation.
pub trait DigestOp: Send {
    /// Absorbs more input.
    fn update(&mut self, data: &[u8]);
    /// Length of the final digest in bytes.
    fn output_len(&self) -> usize;
    /// Writes the digest into `out` (exactly `output_len()` bytes long).
    fn finish(&mut self, out: &mut [u8]);
    /// The running state as bytes, for `C_GetOperationState` (the hash
    /// crate's own serialization: chaining value, block count and the
    /// buffered tail of the input); `None` when it cannot be saved.
    fn save(&self) -> Option<Zeroizing<Vec<u8>>> {
        None
    }
    /// Takes over a state `save` made, for `C_SetOperationState`; false when
    /// `state` is not one (wrong length or contents).
    fn restore(&mut self, _state: &[u8]) -> bool {
        false
    }
}

struct Hash<D>(D);

impl<D: Digest + FixedOutputReset + SerializableState + Send> DigestOp for Hash<D> {
    fn update(&mut self, data: &[u8]) {
        Digest::update(&mut self.0, data);
    }

    fn output_len(&self) -> usize {
        <D as Digest>::output_size()
    }

    fn finish(&mut self, out: &mut [u8]) {
        out.copy_from_slice(&Digest::finalize_reset(&mut self.0));
    }

    fn save(&self) -> Option<Zeroizing<Vec<u8>>> {
        Some(Zeroizing::new(self.0.serialize().to_vec()))
    }

    fn restore(&mut self, state: &[u8]) -> bool {
        let Ok(s) = SerializedState::<D>::try_from(state) else {
            return false;
        };
        match D::deserialize(&s) {
            Ok(d) => {
                self.0 = d;
                true
            }
            Err(_) => false,
        }
    }
}

/// A new digest operation of type `D`.
pub fn new<D: Digest + FixedOutputReset + SerializableState + Send + 'static>() -> Box<dyn DigestOp>
{
    Box::new(Hash(D::new()))
}

/// The digest of a hash mechanism (`CKM_SHA_1`, `CKM_SHA224` … `CKM_SHA512`),
/// as used inside signature, OAEP and KDF parameters.
pub fn for_mechanism(hash: cryptoki_sys::CK_MECHANISM_TYPE) -> Option<Box<dyn DigestOp>> {
    use cryptoki_sys::*;
    Some(match hash {
        CKM_SHA_1 => new::<sha1::Sha1>(),
        CKM_SHA224 => new::<sha2::Sha224>(),
        CKM_SHA256 => new::<sha2::Sha256>(),
        CKM_SHA384 => new::<sha2::Sha384>(),
        CKM_SHA512 => new::<sha2::Sha512>(),
        _ => return None,
    })
}

/// One-shot digest of `data` with a hash mechanism.
pub fn digest_of(hash: cryptoki_sys::CK_MECHANISM_TYPE, data: &[u8]) -> Option<Vec<u8>> {
    let mut d = for_mechanism(hash)?;
    d.update(data);
    let mut out = vec![0; d.output_len()];
    d.finish(&mut out);
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use hex_literal::hex;

    fn run(mut d: Box<dyn DigestOp>, parts: &[&[u8]]) -> Vec<u8> {
        for p in parts {
            d.update(p);
        }
        let mut out = vec![0; d.output_len()];
        d.finish(&mut out);
        out
    }

    /// FIPS 180-4 example vectors ("abc" and the 448-bit two-block message).
    #[test]
    fn fips_180_vectors() {
        let two = b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq";
        assert_eq!(
            run(new::<sha1::Sha1>(), &[b"abc"]),
            hex!("a9993e364706816aba3e25717850c26c9cd0d89d")
        );
        assert_eq!(
            run(new::<sha1::Sha1>(), &[two]),
            hex!("84983e441c3bd26ebaae4aa1f95129e5e54670f1")
        );
        assert_eq!(
            run(new::<sha2::Sha224>(), &[b"abc"]),
            hex!("23097d223405d8228642a477bda255b32aadbce4bda0b3f7e36c9da7")
        );
        assert_eq!(
            run(new::<sha2::Sha256>(), &[b"a", b"bc"]),
            hex!("ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")
        );
        assert_eq!(
            run(new::<sha2::Sha256>(), &[two]),
            hex!("248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1")
        );
        assert_eq!(
            run(new::<sha2::Sha384>(), &[b"abc"]),
            hex!(
                "cb00753f45a35e8bb5a03d699ac65007272c32ab0eded1631a8b605a43ff5bed8086072ba1e7cc2358baeca134c825a7"
            )
        );
        assert_eq!(
            run(new::<sha2::Sha512>(), &[b"abc"]),
            hex!(
                "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f"
            )
        );
        assert_eq!(
            run(new::<sha2::Sha256>(), &[]),
            hex!("e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855")
        );
    }
}
