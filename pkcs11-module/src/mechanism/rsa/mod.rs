//! RSA keys (RustCrypto `rsa` 0.10): key pairs, import checks, PKCS#1 v1.5
//! and PSS signatures, PKCS#1 v1.5 and OAEP encryption, raw RSA (X.509).
//!
//! # PKCS#1 v1.5 decryption and padding oracles
//!
//! RUSTSEC-2023-0071 ("Marvin"): `rsa` before 0.10 leaked timing through
//! variable-time big-integer arithmetic, enough to recover plaintexts (and
//! forge signatures) over the network. 0.10 moved to `crypto-bigint`'s
//! constant-time `BoxedUint`; its authors still warn that PKCS#1 v1.5
//! decryption is a long-running source of Bleichenbacher-style oracles. A
//! PKCS#11 token adds one of its own: the return code of `C_Decrypt`.
//!
//! So `CKM_RSA_PKCS` decryption here never reports bad padding. It runs the
//! raw RSA operation (`rsa::hazmat`, blinded, with the CRT fault check), then
//! checks the padding in constant time (`subtle`) and, when the padding is
//! wrong, returns a synthetic message derived from the private exponent and
//! the ciphertext with `CKR_OK` — "implicit rejection", as OpenSSL 3.2+ and
//! draft-irtf-cfrg-rsa-guidance do (same idea, not byte-compatible output).
//! The caller cannot tell a wrong ciphertext from a right one by the answer,
//! its length or its timing; protocols (TLS 1.2 RSA key exchange) already
//! treat a wrong premaster secret that way. OAEP decryption reports
//! `CKR_ENCRYPTED_DATA_INVALID`, as the OAEP check happens after the
//! constant-time RSA operation and Manger's attack needs a distinguishable
//! integer-too-large failure, which this code never gives separately. For
//! the same reason the `rsa` crate ignores the leading octet of the OAEP
//! encoding instead of branching on it (draft-irtf-cfrg-rsa-guidance §7):
//! Wycheproof's "first byte is 1" vectors (tcId 23) decrypt, which
//! `tests/wycheproof.rs` counts and reports rather than fails.

#![forbid(unsafe_code)]

mod cipher;
mod keys;
mod pad;
mod recover;
mod sign;

pub use cipher::cipher;
pub use keys::{
    HSM_MIN_BITS, MAX_BITS, MAX_GEN_BITS, MIN_BITS, MIN_PUBLIC_BITS, bits_of, check_private_import,
    check_public_import, from_pkcs8, generate, private_key, public_key, to_pkcs8,
};
pub use recover::recover_op;
pub use sign::sign_op;

#[cfg(test)]
mod tests {
    use super::pad::*;
    use cryptoki_sys::CKM_SHA256;
    use getrandom::SysRng;
    use rsa::{Pkcs1v15Sign, PrivateKey};

    fn test_key() -> PrivateKey {
        PrivateKey::new(&mut SysRng, 2048).unwrap()
    }

    #[test]
    fn implicit_rejection_hides_bad_padding() {
        let key = test_key();
        let k = 256;
        let msg = b"premaster secret!";
        let mut em = vec![0u8, 2];
        em.extend(std::iter::repeat_n(0x11u8, k - 3 - msg.len()));
        em.push(0);
        em.extend_from_slice(msg);
        assert_eq!(&pkcs1_unpad_implicit(&key, b"c1", &em)[..], msg);
        // Wrong block type: a synthetic message, the same every time for the
        // same ciphertext, different for another one.
        let mut bad = em.clone();
        bad[1] = 1;
        let a = pkcs1_unpad_implicit(&key, b"c1", &bad);
        assert_ne!(&a[..], msg);
        assert_eq!(a, pkcs1_unpad_implicit(&key, b"c1", &bad));
        assert_ne!(a, pkcs1_unpad_implicit(&key, b"c2", &bad));
        assert!(a.len() < k - 11);
        // Padding string shorter than 8 bytes.
        let mut short = vec![0u8, 2, 1, 1, 1, 0];
        short.extend(std::iter::repeat_n(7u8, k - 6));
        assert_ne!(
            pkcs1_unpad_implicit(&key, b"c3", &short).len(),
            k - 6,
            "a 3-byte padding string is not accepted"
        );
    }

    #[test]
    fn digest_info_prefixes_match_the_rsa_crate() {
        // The rsa crate builds the same prefix from the OID for SHA-256.
        let ours = pkcs1(Some(CKM_SHA256)).unwrap();
        let theirs = Pkcs1v15Sign::new::<rsa::sha2::Sha256>();
        assert_eq!(ours, theirs);
    }
}
