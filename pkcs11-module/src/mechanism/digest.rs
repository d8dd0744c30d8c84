//! Message digests: SHA-1, the SHA-2 and SHA-3 families and (legacy, `spec`
//! tokens only) MD5, through RustCrypto `sha1`/`sha2`/`sha3`/`md-5`.
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

/// The digest of a hash mechanism (`CKM_SHA_1`, `CKM_SHA224` … `CKM_SHA512`,
/// `CKM_SHA3_224` … `CKM_SHA3_512`), as used inside signature, OAEP and KDF
/// parameters. MD5 is not one: a parameter naming it is refused, so that the
/// legacy hash reaches no token through a parameter, only through the rows
/// the token policy checks (see `for_signing`).
pub fn for_mechanism(hash: cryptoki_sys::CK_MECHANISM_TYPE) -> Option<Box<dyn DigestOp>> {
    use cryptoki_sys::*;
    Some(match hash {
        CKM_SHA_1 => new::<sha1::Sha1>(),
        CKM_SHA224 => new::<sha2::Sha224>(),
        CKM_SHA256 => new::<sha2::Sha256>(),
        CKM_SHA384 => new::<sha2::Sha384>(),
        CKM_SHA512 => new::<sha2::Sha512>(),
        CKM_SHA3_224 => new::<sha3::Sha3_224>(),
        CKM_SHA3_256 => new::<sha3::Sha3_256>(),
        CKM_SHA3_384 => new::<sha3::Sha3_384>(),
        CKM_SHA3_512 => new::<sha3::Sha3_512>(),
        _ => return None,
    })
}

/// The digest of a hash-and-sign row's hash: `for_mechanism`, and MD5 for
/// `CKM_MD5_RSA_PKCS` (a legacy row, which the module has already checked
/// against the token's policy).
pub fn for_signing(hash: cryptoki_sys::CK_MECHANISM_TYPE) -> Option<Box<dyn DigestOp>> {
    match hash {
        cryptoki_sys::CKM_MD5 => Some(new::<md5::Md5>()),
        h => for_mechanism(h),
    }
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

    /// FIPS 202 / NIST CSRC example values for "abc" and the empty message.
    #[test]
    fn fips_202_vectors() {
        use cryptoki_sys::*;
        let cases: [(CK_MECHANISM_TYPE, &[u8], &[u8]); 5] = [
            (
                CKM_SHA3_224,
                b"abc",
                &hex!("e642824c3f8cf24ad09234ee7d3c766fc9a3a5168d0c94ad73b46fdf"),
            ),
            (
                CKM_SHA3_256,
                b"abc",
                &hex!("3a985da74fe225b2045c172d6bd390bd855f086e3e9d525b46bfe24511431532"),
            ),
            (
                CKM_SHA3_384,
                b"abc",
                &hex!(
                    "ec01498288516fc926459f58e2c6ad8df9b473cb0fc08c2596da7cf0e49be4b298d88cea927ac7f539f1edf228376d25"
                ),
            ),
            (
                CKM_SHA3_512,
                b"abc",
                &hex!(
                    "b751850b1a57168a5693cd924b6b096e08f621827444f70d884f5d0240d2712e10e116e9192af3c91a7ec57647e3934057340b4cf408d5a56592f8274eec53f0"
                ),
            ),
            (
                CKM_SHA3_256,
                b"",
                &hex!("a7ffc6f8bf1ed76651c14756a061d662f580ff4de43b49fa82d80a4b80f8434a"),
            ),
        ];
        for (m, msg, want) in cases {
            assert_eq!(digest_of(m, msg).unwrap(), want, "{m:#x}");
        }
    }

    /// RFC 1321 §A.5 test suite (MD5 only through `for_signing`).
    #[test]
    fn rfc_1321_md5() {
        use cryptoki_sys::CKM_MD5;
        assert!(for_mechanism(CKM_MD5).is_none());
        let md5 = |parts: &[&[u8]]| run(for_signing(CKM_MD5).unwrap(), parts);
        assert_eq!(md5(&[]), hex!("d41d8cd98f00b204e9800998ecf8427e"));
        assert_eq!(md5(&[b"a"]), hex!("0cc175b9c0f1b6a831c399e269772661"));
        assert_eq!(
            md5(&[b"ab", b"c"]),
            hex!("900150983cd24fb0d6963f7d28e17f72")
        );
        assert_eq!(
            md5(&[b"message digest"]),
            hex!("f96b697d7cb7938d525a2f31aaf161d0")
        );
        assert_eq!(
            md5(&[
                b"12345678901234567890123456789012345678901234567890123456789012345678901234567890"
            ]),
            hex!("57edf4a22be3c955ac49da2e2107b67a")
        );
    }
}
