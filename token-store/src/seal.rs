//! Storage keys and their wrapping under PINs.
//!
//! Each token has a random 256-bit storage key. It exists on disk only sealed
//! (AES-256-GCM) under a key derived from a PIN with Argon2id. A PIN is checked
//! by opening that seal: the AEAD tag decides, so there is no PIN hash to compare
//! and nothing to compare in variable time.

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use serde::{Deserialize, Serialize};
use zeroize::Zeroizing;

/// Argon2id cost parameters, stored beside each wrap so they can be raised later.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct KdfParams {
    /// Memory cost in KiB.
    pub memory_kib: u32,
    /// Number of passes (time cost).
    pub passes: u32,
    /// Degree of parallelism.
    pub lanes: u32,
}

impl KdfParams {
    /// OWASP's minimum recommendation for Argon2id (19 MiB, 2 passes, 1 lane).
    pub const PRODUCTION: KdfParams = KdfParams {
        memory_kib: 19 * 1024,
        passes: 2,
        lanes: 1,
    };

    /// True when `self` is weaker than `other` in any dimension.
    pub fn weaker_than(&self, other: &KdfParams) -> bool {
        self.memory_kib < other.memory_kib || self.passes < other.passes
    }
}

/// Why sealing or unsealing failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SealError {
    /// The PIN did not open the wrap (or the wrap was altered: indistinguishable).
    BadPin,
    /// The KDF parameters are out of range.
    BadParams,
    /// The OS random generator failed.
    Rng,
    /// A sealed record failed authentication: altered, moved, or opened with
    /// the wrong key or associated data (indistinguishable on purpose).
    Tampered,
}

impl std::fmt::Display for SealError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SealError::BadPin => write!(f, "PIN does not open the key wrap"),
            SealError::BadParams => write!(f, "invalid KDF parameters"),
            SealError::Rng => write!(f, "random generator failure"),
            SealError::Tampered => write!(f, "sealed record failed authentication"),
        }
    }
}

impl std::error::Error for SealError {}

/// A token's 256-bit storage key. Zeroized on drop; never printed. Boxed
/// and written in place, so that where it is made or cloned decides where
/// its bytes live (the module makes it inside its key region), not the
/// struct that holds it.
#[derive(Clone)]
pub struct StorageKey(Box<Zeroizing<[u8; 32]>>);

impl std::fmt::Debug for StorageKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StorageKey(<redacted>)")
    }
}

impl StorageKey {
    /// A fresh random storage key from the OS CSPRNG.
    pub fn generate() -> Result<StorageKey, SealError> {
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        getrandom::fill(k.as_mut().as_mut()).map_err(|_| SealError::Rng)?;
        Ok(StorageKey(k))
    }

    /// The raw key bytes, for the AEAD of records.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

/// The storage key sealed under a PIN-derived key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PinWrap {
    /// Argon2id parameters used for this wrap.
    pub kdf: KdfParams,
    /// Argon2id salt.
    pub salt: [u8; 16],
    /// AES-GCM nonce.
    pub nonce: [u8; 12],
    /// Sealed storage key (32 bytes + 16-byte tag).
    pub sealed: Vec<u8>,
}

/// Shortest PIN a token accepts.
pub const MIN_PIN_LEN: usize = 4;
/// Longest PIN a token accepts. A longer one can never be right, so it is
/// refused before any KDF work (a 2 GiB "PIN" must not cost seconds).
pub const MAX_PIN_LEN: usize = 64;
impl KdfParams {
    /// Most memory a PIN KDF may ask for (1 GiB).
    pub const MAX_MEMORY_KIB: u32 = 1 << 20;
    /// Most passes a PIN KDF may ask for.
    pub const MAX_PASSES: u32 = 16;
    /// Most lanes a PIN KDF may ask for.
    pub const MAX_LANES: u32 = 16;

    /// Whether the parameters are within the bounds every KDF run checks: a
    /// damaged or hostile store record, backup header or config must not make
    /// a login or a restore allocate gigabytes or run for hours.
    pub fn plausible(&self) -> bool {
        self.memory_kib <= Self::MAX_MEMORY_KIB
            && self.passes <= Self::MAX_PASSES
            && self.lanes <= Self::MAX_LANES
    }
}

fn derive(pin: &[u8], salt: &[u8; 16], kdf: &KdfParams) -> Result<Zeroizing<[u8; 32]>, SealError> {
    if !kdf.plausible() {
        return Err(SealError::BadParams);
    }
    let params = argon2::Params::new(kdf.memory_kib, kdf.passes, kdf.lanes, Some(32))
        .map_err(|_| SealError::BadParams)?;
    let argon = argon2::Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, params);
    let mut out = Zeroizing::new([0u8; 32]);
    argon
        .hash_password_into(pin, salt, out.as_mut())
        .map_err(|_| SealError::BadParams)?;
    Ok(out)
}

impl PinWrap {
    /// Seals `key` under `pin`; `aad` binds the wrap to its token and role.
    pub fn seal(
        pin: &[u8],
        key: &StorageKey,
        kdf: KdfParams,
        aad: &[u8],
    ) -> Result<PinWrap, SealError> {
        let mut salt = [0u8; 16];
        let mut nonce = [0u8; 12];
        getrandom::fill(&mut salt).map_err(|_| SealError::Rng)?;
        getrandom::fill(&mut nonce).map_err(|_| SealError::Rng)?;
        let kek = derive(pin, &salt, &kdf)?;
        let cipher = Aes256Gcm::new_from_slice(kek.as_ref()).map_err(|_| SealError::BadParams)?;
        let sealed = cipher
            .encrypt(
                &Nonce::from(nonce),
                Payload {
                    msg: key.bytes(),
                    aad,
                },
            )
            .map_err(|_| SealError::BadParams)?;
        Ok(PinWrap {
            kdf,
            salt,
            nonce,
            sealed,
        })
    }

    /// Opens the wrap with `pin`; `SealError::BadPin` when the PIN is wrong.
    pub fn open(&self, pin: &[u8], aad: &[u8]) -> Result<StorageKey, SealError> {
        if !(MIN_PIN_LEN..=MAX_PIN_LEN).contains(&pin.len()) {
            // No PIN of this length can have been set: wrong, at no KDF cost.
            return Err(SealError::BadPin);
        }
        let kek = derive(pin, &self.salt, &self.kdf)?;
        let cipher = Aes256Gcm::new_from_slice(kek.as_ref()).map_err(|_| SealError::BadParams)?;
        let plain = Zeroizing::new(
            cipher
                .decrypt(
                    &Nonce::from(self.nonce),
                    Payload {
                        msg: &self.sealed,
                        aad,
                    },
                )
                .map_err(|_| SealError::BadPin)?,
        );
        if plain.len() != 32 {
            return Err(SealError::BadPin);
        }
        let mut k = Box::new(Zeroizing::new([0u8; 32]));
        k.copy_from_slice(&plain);
        Ok(StorageKey(k))
    }
}

/// Length of the random nonce that starts every sealed record.
pub const RECORD_NONCE_LEN: usize = 12;
/// Bytes a sealed record adds to its plaintext (nonce + GCM tag).
pub const RECORD_OVERHEAD: usize = RECORD_NONCE_LEN + 16;

/// Seals `plaintext` under the storage key with AES-256-GCM.
///
/// Output: a fresh random 96-bit nonce, then ciphertext and tag. `aad` is
/// authenticated but not stored: the reader must supply the same bytes (for
/// object records: token id, object id, record version), so a record opened
/// in any other place or version fails with [`SealError::Tampered`].
pub fn seal_record(key: &StorageKey, aad: &[u8], plaintext: &[u8]) -> Result<Vec<u8>, SealError> {
    let mut nonce = [0u8; RECORD_NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(|_| SealError::Rng)?;
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).map_err(|_| SealError::BadParams)?;
    let ct = cipher
        .encrypt(
            &Nonce::from(nonce),
            Payload {
                msg: plaintext,
                aad,
            },
        )
        .map_err(|_| SealError::BadParams)?;
    let mut out = Vec::with_capacity(RECORD_NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens a record made by [`seal_record`] with the same key and `aad`.
///
/// The plaintext is returned in a zeroizing buffer. Any alteration of the
/// sealed bytes, a wrong key or different `aad` gives [`SealError::Tampered`].
pub fn open_record(
    key: &StorageKey,
    aad: &[u8],
    sealed: &[u8],
) -> Result<Zeroizing<Vec<u8>>, SealError> {
    if sealed.len() < RECORD_OVERHEAD {
        return Err(SealError::Tampered);
    }
    let (nonce, ct) = sealed.split_at(RECORD_NONCE_LEN);
    let mut n = [0u8; RECORD_NONCE_LEN];
    n.copy_from_slice(nonce);
    let cipher = Aes256Gcm::new_from_slice(key.bytes()).map_err(|_| SealError::BadParams)?;
    cipher
        .decrypt(&Nonce::from(n), Payload { msg: ct, aad })
        .map(Zeroizing::new)
        .map_err(|_| SealError::Tampered)
}

/// The root key of a token's audit chain: random, made at `C_InitToken`,
/// stored only sealed under the storage key (`TokenRecord::audit_root`), so
/// whoever can open the storage key with a PIN can verify the audit log, and
/// a storage-key rotation re-seals it without breaking the chain.
#[derive(Clone)]
pub struct AuditKey(Zeroizing<[u8; 32]>);

impl std::fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuditKey(<redacted>)")
    }
}

/// Associated data of the sealed audit root: binds it to its token.
const AUDIT_ROOT_AAD: &[u8] = b"ferrohsm/audit-root/v1/";

impl AuditKey {
    /// A fresh random audit root from the OS CSPRNG.
    pub fn generate() -> Result<AuditKey, SealError> {
        let mut k = Zeroizing::new([0u8; 32]);
        getrandom::fill(k.as_mut()).map_err(|_| SealError::Rng)?;
        Ok(AuditKey(k))
    }

    /// Wraps raw bytes (tests, and keys unsealed from a record).
    pub fn from_bytes(bytes: [u8; 32]) -> AuditKey {
        AuditKey(Zeroizing::new(bytes))
    }

    /// The raw key bytes.
    pub fn bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Seals this root under the storage key for `TokenRecord::audit_root`.
    pub fn seal(&self, key: &StorageKey, token_id: &[u8; 16]) -> Result<Vec<u8>, SealError> {
        seal_record(key, &[AUDIT_ROOT_AAD, token_id].concat(), self.bytes())
    }

    /// Opens a root sealed by [`AuditKey::seal`]. Fails with
    /// [`SealError::Tampered`] under any other storage key, which also makes
    /// it a check that a storage key is the token's current one.
    pub fn open(
        sealed: &[u8],
        key: &StorageKey,
        token_id: &[u8; 16],
    ) -> Result<AuditKey, SealError> {
        let plain = open_record(key, &[AUDIT_ROOT_AAD, token_id].concat(), sealed)?;
        let bytes: [u8; 32] = plain
            .as_slice()
            .try_into()
            .map_err(|_| SealError::Tampered)?;
        Ok(AuditKey::from_bytes(bytes))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHEAP: KdfParams = KdfParams {
        memory_kib: 64,
        passes: 1,
        lanes: 1,
    };

    #[test]
    fn right_pin_opens_wrong_pin_does_not() {
        let key = StorageKey::generate().unwrap();
        let wrap = PinWrap::seal(b"1234", &key, CHEAP, b"tok/user").unwrap();
        assert_eq!(
            wrap.open(b"1234", b"tok/user").unwrap().bytes(),
            key.bytes()
        );
        assert_eq!(
            wrap.open(b"1235", b"tok/user").unwrap_err(),
            SealError::BadPin
        );
        // The same PIN in another role or token does not open it either.
        assert_eq!(
            wrap.open(b"1234", b"tok/so").unwrap_err(),
            SealError::BadPin
        );
    }

    #[test]
    fn tampered_wrap_is_rejected() {
        let key = StorageKey::generate().unwrap();
        let mut wrap = PinWrap::seal(b"pin!", &key, CHEAP, b"a").unwrap();
        wrap.sealed[3] ^= 1;
        assert_eq!(wrap.open(b"pin!", b"a").unwrap_err(), SealError::BadPin);
    }

    #[test]
    fn debug_never_shows_key() {
        let key = StorageKey::generate().unwrap();
        let dbg = format!("{key:?}");
        assert!(!dbg.contains(&format!("{}", key.bytes()[0])) || dbg == "StorageKey(<redacted>)");
        assert_eq!(dbg, "StorageKey(<redacted>)");
    }

    #[test]
    fn weaker_than_compares_costs() {
        assert!(CHEAP.weaker_than(&KdfParams::PRODUCTION));
        assert!(!KdfParams::PRODUCTION.weaker_than(&CHEAP));
    }

    #[test]
    fn record_round_trip_and_tamper() {
        let key = StorageKey::generate().unwrap();
        let sealed = seal_record(&key, b"tok|id|v1", b"secret record").unwrap();
        assert_eq!(sealed.len(), 13 + RECORD_OVERHEAD);
        assert_eq!(
            &open_record(&key, b"tok|id|v1", &sealed).unwrap()[..],
            b"secret record"
        );
        // Plaintext does not appear in the sealed bytes.
        assert!(!sealed.windows(6).any(|w| w == b"secret"));
        // Fresh nonce each time.
        assert_ne!(
            sealed,
            seal_record(&key, b"tok|id|v1", b"secret record").unwrap()
        );
        // Every single flipped byte is caught.
        for i in 0..sealed.len() {
            let mut bad = sealed.clone();
            bad[i] ^= 0x40;
            assert_eq!(
                open_record(&key, b"tok|id|v1", &bad).unwrap_err(),
                SealError::Tampered
            );
        }
        // Other associated data (another token, object or version), other key,
        // truncation: all rejected.
        assert_eq!(
            open_record(&key, b"tok|id|v2", &sealed).unwrap_err(),
            SealError::Tampered
        );
        let other = StorageKey::generate().unwrap();
        assert_eq!(
            open_record(&other, b"tok|id|v1", &sealed).unwrap_err(),
            SealError::Tampered
        );
        for len in 0..sealed.len() {
            assert_eq!(
                open_record(&key, b"tok|id|v1", &sealed[..len]).unwrap_err(),
                SealError::Tampered
            );
        }
    }

    #[test]
    fn empty_record_seals() {
        let key = StorageKey::generate().unwrap();
        let sealed = seal_record(&key, b"", b"").unwrap();
        assert_eq!(sealed.len(), RECORD_OVERHEAD);
        assert!(open_record(&key, b"", &sealed).unwrap().is_empty());
    }
}
