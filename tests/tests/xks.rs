//! Replays the AWS KMS External Key Store (XKS) proxy's use of the module, as
//! `/work/shared/CLIENTS.md` describes it: `C_Initialize` with `CKF_OS_LOCKING_OK`
//! and mutex callbacks, the first slot, a pool of logged-in R/W sessions, key lookup
//! by label with one 9-attribute `C_GetAttributeValue`, AES-GCM with 12-byte random
//! IVs and the proxy's AAD encoding, the error codes it maps, sessions closed with an
//! active find, many threads, and `C_Finalize`/`C_Initialize` resets.

use std::ffi::c_void;
use std::ptr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex};

use cryptoki_sys::*;
use ferrohsm_tests::raw::{RawModule as Module, attr_bytes, attr_ref, check, rv_name};
use ferrohsm_tests::{Rng, TestEnv, USER_PIN, ck};
use sha2::Digest;

// ---------------------------------------------------------------------------
// mutex callbacks (a lock built from std's Mutex + Condvar, boxed)
// ---------------------------------------------------------------------------

/// A lockable flag: `LockMutex` waits until it is clear and sets it.
struct CbMutex {
    locked: Mutex<bool>,
    cv: Condvar,
}

static MUTEX_CREATED: AtomicUsize = AtomicUsize::new(0);
static MUTEX_DESTROYED: AtomicUsize = AtomicUsize::new(0);
static MUTEX_LOCKS: AtomicUsize = AtomicUsize::new(0);

unsafe extern "C" fn create_mutex(pp: *mut *mut c_void) -> CK_RV {
    if pp.is_null() {
        return CKR_ARGUMENTS_BAD;
    }
    let m = Box::new(CbMutex {
        locked: Mutex::new(false),
        cv: Condvar::new(),
    });
    // SAFETY: the caller passes a valid out-pointer for one mutex pointer.
    unsafe { *pp = Box::into_raw(m) as *mut c_void };
    MUTEX_CREATED.fetch_add(1, Ordering::Relaxed);
    CKR_OK
}

unsafe extern "C" fn destroy_mutex(p: *mut c_void) -> CK_RV {
    if p.is_null() {
        return CKR_MUTEX_BAD;
    }
    // SAFETY: `p` came from `create_mutex` (Box::into_raw) and is destroyed once.
    drop(unsafe { Box::from_raw(p as *mut CbMutex) });
    MUTEX_DESTROYED.fetch_add(1, Ordering::Relaxed);
    CKR_OK
}

unsafe extern "C" fn lock_mutex(p: *mut c_void) -> CK_RV {
    if p.is_null() {
        return CKR_MUTEX_BAD;
    }
    // SAFETY: `p` came from `create_mutex` and is not destroyed while in use.
    let m = unsafe { &*(p as *const CbMutex) };
    let mut g = m.locked.lock().unwrap();
    while *g {
        g = m.cv.wait(g).unwrap();
    }
    *g = true;
    MUTEX_LOCKS.fetch_add(1, Ordering::Relaxed);
    CKR_OK
}

unsafe extern "C" fn unlock_mutex(p: *mut c_void) -> CK_RV {
    if p.is_null() {
        return CKR_MUTEX_BAD;
    }
    // SAFETY: as in `lock_mutex`.
    let m = unsafe { &*(p as *const CbMutex) };
    let mut g = m.locked.lock().unwrap();
    if !*g {
        return CKR_MUTEX_NOT_LOCKED;
    }
    *g = false;
    m.cv.notify_one();
    CKR_OK
}

/// `C_Initialize` as the proxy calls it: OS locking allowed AND mutex callbacks.
fn proxy_initialize(m: Module) -> CK_RV {
    let mut args = CK_C_INITIALIZE_ARGS {
        CreateMutex: Some(create_mutex),
        DestroyMutex: Some(destroy_mutex),
        LockMutex: Some(lock_mutex),
        UnlockMutex: Some(unlock_mutex),
        flags: CKF_OS_LOCKING_OK,
        pReserved: ptr::null_mut(),
    };
    ck!(m, C_Initialize(&mut args as *mut _ as *mut c_void))
}

// ---------------------------------------------------------------------------
// the proxy's calls
// ---------------------------------------------------------------------------

const KEY: &str = "xks-key-aes256";
const KEY2: &str = "xks-key-aes256-b";
const ENC_ONLY: &str = "xks-encrypt-only";
const DEC_ONLY: &str = "xks-decrypt-only";
const NO_USE: &str = "xks-no-usage";

/// The first slot of `C_GetSlotList(FALSE)`.
fn first_slot(m: Module) -> CK_SLOT_ID {
    let v = m.slot_list();
    assert!(!v.is_empty(), "no slot");
    v[0]
}

/// Opens a pool session and logs it in, accepting CKR_USER_ALREADY_LOGGED_IN.
fn pool_session(m: Module, slot: CK_SLOT_ID) -> CK_SESSION_HANDLE {
    let s = m.open(slot, true);
    let rv = m.login(s, CKU_USER, USER_PIN);
    assert!(
        rv == CKR_OK || rv == CKR_USER_ALREADY_LOGGED_IN,
        "C_Login(CKU_USER) on a pool session: expected CKR_OK or CKR_USER_ALREADY_LOGGED_IN, got {}",
        rv_name(rv)
    );
    s
}

/// The proxy's health check.
fn health(m: Module, slot: CK_SLOT_ID) {
    let info = m.token_info(slot);
    let need = CKF_TOKEN_INITIALIZED | CKF_USER_PIN_INITIALIZED | CKF_RNG | CKF_LOGIN_REQUIRED;
    assert_eq!(
        info.flags & need,
        need,
        "token flags {:#x} lack TOKEN_INITIALIZED|USER_PIN_INITIALIZED|RNG|LOGIN_REQUIRED",
        info.flags
    );
}

/// Starts the proxy's find for `label`; returns up to `max` handles, without Final.
fn find_start(m: Module, s: CK_SESSION_HANDLE, label: &str, max: usize) -> Vec<CK_OBJECT_HANDLE> {
    let mut class = CKO_SECRET_KEY;
    let mut lab = label.as_bytes().to_vec();
    let mut tok: CK_BBOOL = CK_TRUE;
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        attr_bytes(CKA_LABEL, &mut lab),
        attr_ref(CKA_TOKEN, &mut tok),
    ];
    check(
        ck!(m, C_FindObjectsInit(s, t.as_mut_ptr(), t.len() as CK_ULONG)),
        CKR_OK,
        &format!("C_FindObjectsInit label {label:?}"),
    );
    let mut hs = vec![CK_INVALID_HANDLE; max];
    let mut n: CK_ULONG = 0;
    check(
        ck!(
            m,
            C_FindObjects(s, hs.as_mut_ptr(), max as CK_ULONG, &mut n)
        ),
        CKR_OK,
        &format!("C_FindObjects label {label:?}"),
    );
    hs.truncate(n as usize);
    hs
}

/// Finds the key with `label` (exactly one), as the proxy does.
fn find_key(m: Module, s: CK_SESSION_HANDLE, label: &str) -> CK_OBJECT_HANDLE {
    let hs = find_start(m, s, label, 2);
    check(ck!(m, C_FindObjectsFinal(s)), CKR_OK, "C_FindObjectsFinal");
    assert_eq!(
        hs.len(),
        1,
        "find {label:?}: expected exactly one key, got {}",
        hs.len()
    );
    hs[0]
}

/// What the proxy reads of a key.
#[derive(Debug, PartialEq)]
struct KeyInfo {
    class: CK_ULONG,
    key_type: CK_ULONG,
    value_len: CK_ULONG,
    usage: [bool; 6], // encrypt, decrypt, sign, verify, wrap, unwrap
}

/// ONE C_GetAttributeValue of the 9 attributes; every one must come back.
fn key_info(m: Module, s: CK_SESSION_HANDLE, key: CK_OBJECT_HANDLE) -> KeyInfo {
    let (mut class, mut kt, mut len): (CK_ULONG, CK_ULONG, CK_ULONG) = (!0, !0, !0);
    let mut b = [0xaau8; 6];
    let [e, d, sg, v, w, u] = &mut b;
    let mut t = [
        attr_ref(CKA_CLASS, &mut class),
        attr_ref(CKA_KEY_TYPE, &mut kt),
        attr_ref(CKA_VALUE_LEN, &mut len),
        attr_ref(CKA_ENCRYPT, e),
        attr_ref(CKA_DECRYPT, d),
        attr_ref(CKA_SIGN, sg),
        attr_ref(CKA_VERIFY, v),
        attr_ref(CKA_WRAP, w),
        attr_ref(CKA_UNWRAP, u),
    ];
    let rv = ck!(
        m,
        C_GetAttributeValue(s, key, t.as_mut_ptr(), t.len() as CK_ULONG)
    );
    let lens: Vec<CK_ULONG> = t.iter().map(|a| a.ulValueLen).collect();
    check(
        rv,
        CKR_OK,
        &format!("C_GetAttributeValue of the 9 XKS attributes (lengths {lens:?})"),
    );
    assert_eq!(
        lens,
        vec![8, 8, 8, 1, 1, 1, 1, 1, 1],
        "9-attribute read: every attribute must come back with its length"
    );
    for (i, x) in b.iter().enumerate() {
        assert!(*x <= 1, "boolean attribute #{i} has value {x:#x}");
    }
    KeyInfo {
        class,
        key_type: kt,
        value_len: len,
        usage: b.map(|x| x == CK_TRUE),
    }
}

/// The proxy's AAD: 2-byte length, SHA-256 of the request AAD if any, 1-byte
/// metadata length and the metadata (3..=55 bytes in all).
fn proxy_aad(request_aad: Option<&[u8]>, metadata: &[u8]) -> Vec<u8> {
    assert!(metadata.len() <= 20);
    let mut v = Vec::new();
    let len = request_aad.map(|a| a.len()).unwrap_or(0) as u16;
    v.extend(len.to_be_bytes());
    if let Some(a) = request_aad {
        v.extend(sha2::Sha256::digest(a));
    }
    v.push(metadata.len() as u8);
    v.extend(metadata);
    assert!((3..=55).contains(&v.len()));
    v
}

fn random12(m: Module, s: CK_SESSION_HANDLE) -> [u8; 12] {
    let mut iv = [0u8; 12];
    check(
        ck!(m, C_GenerateRandom(s, iv.as_mut_ptr(), 12)),
        CKR_OK,
        "C_GenerateRandom(12)",
    );
    iv
}

/// Builds the 48-byte CK_GCM_PARAMS and runs `f` with the mechanism.
fn with_gcm<R>(iv: &[u8], aad: &[u8], f: impl FnOnce(&mut CK_MECHANISM) -> R) -> R {
    let (mut iv, mut aad) = (iv.to_vec(), aad.to_vec());
    let mut p = CK_GCM_PARAMS {
        pIv: iv.as_mut_ptr(),
        ulIvLen: iv.len() as CK_ULONG,
        ulIvBits: (iv.len() * 8) as CK_ULONG,
        pAAD: if aad.is_empty() {
            ptr::null_mut()
        } else {
            aad.as_mut_ptr()
        },
        ulAADLen: aad.len() as CK_ULONG,
        ulTagBits: 128,
    };
    assert_eq!(std::mem::size_of::<CK_GCM_PARAMS>(), 48);
    let mut mech = CK_MECHANISM {
        mechanism: CKM_AES_GCM,
        pParameter: &mut p as *mut _ as *mut c_void,
        ulParameterLen: 48,
    };
    f(&mut mech)
}

/// The proxy's encrypt: EncryptInit, NULL length query, C_Encrypt.
fn xks_encrypt(
    m: Module,
    s: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    iv: &[u8],
    aad: &[u8],
    data: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = with_gcm(iv, aad, |mech| ck!(m, C_EncryptInit(s, mech, key)));
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut d = data.to_vec();
    let dp = if d.is_empty() {
        ptr::null_mut()
    } else {
        d.as_mut_ptr()
    };
    let mut n: CK_ULONG = 0;
    let rv = ck!(
        m,
        C_Encrypt(s, dp, d.len() as CK_ULONG, ptr::null_mut(), &mut n)
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    assert!(
        n as usize >= data.len() + 16,
        "C_Encrypt size query {n} < data {} + 16-byte tag",
        data.len()
    );
    let mut out = vec![0u8; n as usize];
    let rv = ck!(
        m,
        C_Encrypt(s, dp, d.len() as CK_ULONG, out.as_mut_ptr(), &mut n)
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    assert_eq!(
        n as usize,
        data.len() + 16,
        "C_Encrypt output must be exactly ciphertext || 16-byte tag"
    );
    out.truncate(n as usize);
    Ok(out)
}

/// The proxy's decrypt: DecryptInit, NULL length query, C_Decrypt.
fn xks_decrypt(
    m: Module,
    s: CK_SESSION_HANDLE,
    key: CK_OBJECT_HANDLE,
    iv: &[u8],
    aad: &[u8],
    ct: &[u8],
) -> Result<Vec<u8>, CK_RV> {
    let rv = with_gcm(iv, aad, |mech| ck!(m, C_DecryptInit(s, mech, key)));
    if rv != CKR_OK {
        return Err(rv);
    }
    let mut c = ct.to_vec();
    let mut n: CK_ULONG = 0;
    let rv = ck!(
        m,
        C_Decrypt(
            s,
            c.as_mut_ptr(),
            c.len() as CK_ULONG,
            ptr::null_mut(),
            &mut n
        )
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    assert!(
        n as usize >= ct.len().saturating_sub(16),
        "C_Decrypt size query {n} < plaintext length {}",
        ct.len().saturating_sub(16)
    );
    let mut out = vec![0u8; n as usize];
    let rv = ck!(
        m,
        C_Decrypt(
            s,
            c.as_mut_ptr(),
            c.len() as CK_ULONG,
            out.as_mut_ptr(),
            &mut n
        )
    );
    if rv != CKR_OK {
        return Err(rv);
    }
    assert_eq!(
        n as usize,
        ct.len() - 16,
        "C_Decrypt must set the exact plaintext length"
    );
    out.truncate(n as usize);
    Ok(out)
}

/// Asserts a decrypt was refused with CKR_ENCRYPTED_DATA_INVALID (whether at the
/// size query or the real call).
#[track_caller]
fn expect_data_invalid(r: Result<Vec<u8>, CK_RV>, what: &str) {
    match r {
        Err(CKR_ENCRYPTED_DATA_INVALID) => {}
        Err(rv) => panic!(
            "{what}: expected CKR_ENCRYPTED_DATA_INVALID, got {} (the proxy turns it into an internal error{})",
            rv_name(rv),
            if rv == CKR_GENERAL_ERROR {
                " and resets its session pool"
            } else {
                ""
            }
        ),
        Ok(_) => panic!("{what}: expected CKR_ENCRYPTED_DATA_INVALID, got CKR_OK"),
    }
}

// ---------------------------------------------------------------------------
// set-up: token and keys (as an administrator would create them)
// ---------------------------------------------------------------------------

/// Initialises the spare token (SO PIN, user PIN) and generates the XKS keys as
/// sensitive, non-extractable token objects. Returns the token's slot.
fn setup_token(m: Module) -> CK_SLOT_ID {
    let slot = m.make_token("xks");
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    // (label, encrypt, decrypt, explicit FALSE for sign/verify/wrap/unwrap)
    for (lab, enc, dec, explicit) in [
        (KEY, true, true, true),
        (KEY2, true, true, false),
        (ENC_ONLY, true, false, true),
        (DEC_ONLY, false, true, true),
        (NO_USE, false, false, true),
    ] {
        let mut l = lab.as_bytes().to_vec();
        let (mut t, mut f) = (CK_TRUE, CK_FALSE);
        let (mut e, mut d) = (
            if enc { CK_TRUE } else { CK_FALSE },
            if dec { CK_TRUE } else { CK_FALSE },
        );
        let (mut f2, mut f3, mut f4, mut f5) = (CK_FALSE, CK_FALSE, CK_FALSE, CK_FALSE);
        let mut len: CK_ULONG = 32;
        let mut tpl = vec![
            attr_ref(CKA_TOKEN, &mut t),
            attr_bytes(CKA_LABEL, &mut l),
            attr_ref(CKA_VALUE_LEN, &mut len),
            attr_ref(CKA_EXTRACTABLE, &mut f),
            attr_ref(CKA_ENCRYPT, &mut e),
            attr_ref(CKA_DECRYPT, &mut d),
        ];
        if explicit {
            tpl.push(attr_ref(CKA_SIGN, &mut f2));
            tpl.push(attr_ref(CKA_VERIFY, &mut f3));
            tpl.push(attr_ref(CKA_WRAP, &mut f4));
            tpl.push(attr_ref(CKA_UNWRAP, &mut f5));
        }
        let mut sens = CK_TRUE;
        tpl.push(attr_ref(CKA_SENSITIVE, &mut sens));
        let mut mech = CK_MECHANISM {
            mechanism: CKM_AES_KEY_GEN,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        let mut h = CK_INVALID_HANDLE;
        check(
            ck!(
                m,
                C_GenerateKey(
                    s,
                    &mut mech,
                    tpl.as_mut_ptr(),
                    tpl.len() as CK_ULONG,
                    &mut h
                )
            ),
            CKR_OK,
            &format!("C_GenerateKey AES-256 token key {lab:?}"),
        );
    }
    check(ck!(m, C_CloseSession(s)), CKR_OK, "C_CloseSession");
    slot
}

/// Loads the module, initialises it as the proxy does, and sets up the token.
fn start() -> (Module, CK_SLOT_ID) {
    let m = Module::load();
    check(
        proxy_initialize(m),
        CKR_OK,
        "C_Initialize(CKF_OS_LOCKING_OK + mutex callbacks)",
    );
    let token_slot = setup_token(m);
    let slot = first_slot(m);
    assert_eq!(
        slot, token_slot,
        "the FIRST slot of C_GetSlotList(FALSE) must be the initialised token"
    );
    health(m, slot);
    (m, slot)
}

/// A random AAD as the proxy builds it.
fn random_aad(rng: &mut Rng) -> Vec<u8> {
    let req = if rng.below(2) == 0 {
        None
    } else {
        let n = rng.below(300);
        Some(rng.bytes(n))
    };
    let meta_len = rng.below(21);
    let meta = rng.bytes(meta_len);
    proxy_aad(req.as_deref(), &meta)
}

// ---------------------------------------------------------------------------
// tests
// ---------------------------------------------------------------------------

#[test]
fn xks_key_lookup_and_nine_attributes() {
    let _env = TestEnv::new();
    let (m, slot) = start();
    let s = pool_session(m, slot);
    let s2 = pool_session(m, slot);
    for (lab, e, d) in [
        (KEY, true, true),
        (ENC_ONLY, true, false),
        (DEC_ONLY, false, true),
        (NO_USE, false, false),
    ] {
        let k = find_key(m, s, lab);
        let info = key_info(m, s2, k);
        assert_eq!(
            info,
            KeyInfo {
                class: CKO_SECRET_KEY,
                key_type: CKK_AES,
                value_len: 32,
                usage: [e, d, false, false, false, false],
            },
            "key {lab:?}: the proxy's 9 attributes"
        );
    }
    // Key created without explicit sign/verify/wrap/unwrap: still all 9 come back.
    let k = find_key(m, s, KEY2);
    let info = key_info(m, s, k);
    assert_eq!(
        (info.class, info.key_type, info.value_len),
        (CKO_SECRET_KEY, CKK_AES, 32)
    );
    assert!(
        info.usage[0] && info.usage[1],
        "{KEY2}: encrypt and decrypt"
    );
    // An unknown label finds nothing.
    let hs = find_start(m, s, "no-such-key", 1);
    assert!(hs.is_empty(), "unknown label found {hs:?}");
    check(ck!(m, C_FindObjectsFinal(s)), CKR_OK, "C_FindObjectsFinal");
    // Key material is never readable.
    let mut buf = [0u8; 32];
    let mut a = [attr_bytes(CKA_VALUE, &mut buf)];
    let k = find_key(m, s, KEY);
    check(
        ck!(m, C_GetAttributeValue(s, k, a.as_mut_ptr(), 1)),
        CKR_ATTRIBUTE_SENSITIVE,
        "CKA_VALUE of an XKS key",
    );
}

#[test]
fn xks_gcm_encrypt_decrypt_sizes() {
    let _env = TestEnv::new();
    let (m, slot) = start();
    let s = pool_session(m, slot);
    let mut rng = Rng::seeded("xks_gcm_encrypt_decrypt_sizes");
    let key = find_key(m, s, KEY);
    let mut n = 0;
    let sizes = [
        0usize, 1, 15, 16, 17, 100, 1024, 4300, 4301, 4400, 8192, 65536, 65537,
    ];
    for &len in &sizes {
        for aad in [
            proxy_aad(None, b""),
            proxy_aad(Some(b"request aad"), b""),
            proxy_aad(Some(b"request aad"), &[7u8; 20]),
            random_aad(&mut rng),
            rng.bytes(6000),
        ] {
            let data = rng.bytes(len);
            let iv = random12(m, s);
            let ct = xks_encrypt(m, s, key, &iv, &aad, &data).unwrap_or_else(|rv| {
                panic!(
                    "encrypt {len} bytes, AAD {}: got {}",
                    aad.len(),
                    rv_name(rv)
                )
            });
            if len >= 16 {
                assert_ne!(&ct[..16], &data[..16], "ciphertext equals plaintext");
            }
            let pt = xks_decrypt(m, s, key, &iv, &aad, &ct).unwrap_or_else(|rv| {
                panic!(
                    "decrypt {len} bytes, AAD {}: got {}",
                    aad.len(),
                    rv_name(rv)
                )
            });
            assert_eq!(
                pt,
                data,
                "round trip of {len} bytes, AAD {} bytes",
                aad.len()
            );
            n += 1;
        }
    }
    // Random IVs differ.
    let a = random12(m, s);
    let b = random12(m, s);
    assert_ne!(a, b, "C_GenerateRandom(12) returned the same IV twice");
    // Another session of the pool decrypts what this one encrypted.
    let s2 = pool_session(m, slot);
    let iv = random12(m, s);
    let aad = proxy_aad(Some(b"ctx"), b"m");
    let ct = xks_encrypt(m, s, key, &iv, &aad, b"cross-session").expect("encrypt");
    let key2 = find_key(m, s2, KEY);
    assert_eq!(
        xks_decrypt(m, s2, key2, &iv, &aad, &ct).expect("decrypt in another session"),
        b"cross-session"
    );
    println!("XKS GCM round trips: {n} (data up to 64 KiB + 1, AAD 3..55 bytes and 6000 bytes)");
}

#[test]
fn xks_error_mapping() {
    let _env = TestEnv::new();
    let (m, slot) = start();
    let s = pool_session(m, slot);
    let key = find_key(m, s, KEY);
    let iv = random12(m, s);
    let aad = proxy_aad(Some(b"encryption context"), b"meta");
    let data = vec![0x42u8; 4300];
    let ct = xks_encrypt(m, s, key, &iv, &aad, &data).expect("encrypt");

    // Usage not allowed: CKR_KEY_FUNCTION_NOT_PERMITTED at the Init.
    let nfp = CKR_KEY_FUNCTION_NOT_PERMITTED;
    let enc_only = find_key(m, s, ENC_ONLY);
    let dec_only = find_key(m, s, DEC_ONLY);
    let none = find_key(m, s, NO_USE);
    let init = |dir: u8, k: CK_OBJECT_HANDLE| {
        with_gcm(&iv, &aad, |mech| {
            if dir == 0 {
                ck!(m, C_EncryptInit(s, mech, k))
            } else {
                ck!(m, C_DecryptInit(s, mech, k))
            }
        })
    };
    check(
        init(1, enc_only),
        nfp,
        "C_DecryptInit with an encrypt-only key",
    );
    check(
        init(0, dec_only),
        nfp,
        "C_EncryptInit with a decrypt-only key",
    );
    check(
        init(0, none),
        nfp,
        "C_EncryptInit with a key with neither usage",
    );
    check(
        init(1, none),
        nfp,
        "C_DecryptInit with a key with neither usage",
    );
    let ct2 =
        xks_encrypt(m, s, enc_only, &iv, &aad, b"enc-only").expect("encrypt-only key encrypts");
    // The decrypt-only key is a different key, so this must fail authentication.
    expect_data_invalid(
        xks_decrypt(m, s, dec_only, &iv, &aad, &ct2),
        "decrypt-only key on another key's ciphertext",
    );

    // Authentication failures: CKR_ENCRYPTED_DATA_INVALID, session stays healthy.
    let mut bad_tag = ct.clone();
    *bad_tag.last_mut().unwrap() ^= 1;
    let mut bad_data = ct.clone();
    bad_data[100] ^= 0x10;
    let mut other_aad = aad.clone();
    other_aad[2] ^= 1;
    /// (case, ciphertext, AAD, IV)
    type Case<'a> = (&'a str, Vec<u8>, Vec<u8>, [u8; 12]);
    let cases: Vec<Case> = vec![
        ("wrong tag", bad_tag, aad.clone(), iv),
        ("corrupted data", bad_data, aad.clone(), iv),
        ("wrong AAD", ct.clone(), other_aad, iv),
        ("empty AAD", ct.clone(), Vec::new(), iv),
        ("wrong IV", ct.clone(), aad.clone(), random12(m, s)),
        ("tag only", ct[ct.len() - 16..].to_vec(), aad.clone(), iv),
    ];
    for (name, c, a, v) in &cases {
        expect_data_invalid(
            xks_decrypt(m, s, key, v, a, c),
            &format!("XKS decrypt, {name}"),
        );
        // The next request on the same session works.
        let iv2 = random12(m, s);
        let c2 = xks_encrypt(m, s, key, &iv2, &aad, b"next request")
            .unwrap_or_else(|rv| panic!("encrypt after {name}: got {}", rv_name(rv)));
        assert_eq!(
            xks_decrypt(m, s, key, &iv2, &aad, &c2)
                .unwrap_or_else(|rv| panic!("decrypt after {name}: got {}", rv_name(rv))),
            b"next request"
        );
        health(m, slot);
    }
    assert_eq!(
        xks_decrypt(m, s, key, &iv, &aad, &ct).expect("good decrypt"),
        data
    );
}

#[test]
fn xks_close_session_with_active_find() {
    let _env = TestEnv::new();
    let (m, slot) = start();
    let keep = pool_session(m, slot);
    for round in 0..5 {
        let s = pool_session(m, slot);
        let hs = find_start(m, s, "missing-key-id", 1);
        assert!(hs.is_empty());
        // Nothing found: the proxy skips C_FindObjectsFinal and closes the session.
        check(
            ck!(m, C_CloseSession(s)),
            CKR_OK,
            &format!("C_CloseSession with an active find (round {round})"),
        );
        let mut info = CK_SESSION_INFO::default();
        check(
            ck!(m, C_GetSessionInfo(s, &mut info)),
            CKR_SESSION_HANDLE_INVALID,
            "C_GetSessionInfo on the closed session",
        );
        // Also with a find that found something and was not finished.
        let s = pool_session(m, slot);
        let hs = find_start(m, s, KEY, 1);
        assert_eq!(hs.len(), 1);
        check(
            ck!(m, C_CloseSession(s)),
            CKR_OK,
            "C_CloseSession with an unfinished find that found a key",
        );
    }
    // The rest of the pool is unaffected and still logged in.
    let key = find_key(m, keep, KEY);
    let iv = random12(m, keep);
    let ct = xks_encrypt(m, keep, key, &iv, b"\0\0\0", b"still works").expect("encrypt");
    assert_eq!(
        xks_decrypt(m, keep, key, &iv, b"\0\0\0", &ct).expect("decrypt"),
        b"still works"
    );
    health(m, slot);
}

/// One proxy worker: its own pool, `iters` requests.
fn worker(m: Module, slot: CK_SLOT_ID, id: usize, iters: usize, seed: u64) -> usize {
    let mut rng = Rng::new(seed ^ (id as u64).wrapping_mul(0x1234_5678_9abc_def1));
    let mut pool: Vec<CK_SESSION_HANDLE> = (0..3).map(|_| pool_session(m, slot)).collect();
    let mut requests = 0;
    for i in 0..iters {
        let which = i % pool.len();
        let s = pool[which];
        let label = if (i + id).is_multiple_of(2) {
            KEY
        } else {
            KEY2
        };
        let key = find_key(m, s, label);
        let info = key_info(m, s, key);
        assert_eq!(
            (
                info.class,
                info.key_type,
                info.value_len,
                info.usage[0],
                info.usage[1]
            ),
            (CKO_SECRET_KEY, CKK_AES, 32, true, true),
            "thread {id} iteration {i}: key attributes"
        );
        let len = match rng.below(40) {
            0 => 65536,
            1 => 4300,
            _ => rng.below(4400),
        };
        let data = rng.bytes(len);
        let aad = if rng.below(25) == 0 {
            let n = 3000 + rng.below(3000);
            rng.bytes(n)
        } else {
            random_aad(&mut rng)
        };
        let iv = random12(m, s);
        let ct = xks_encrypt(m, s, key, &iv, &aad, &data).unwrap_or_else(|rv| {
            panic!(
                "thread {id} iteration {i}: encrypt {len} bytes: {}",
                rv_name(rv)
            )
        });
        let pt = xks_decrypt(m, s, key, &iv, &aad, &ct).unwrap_or_else(|rv| {
            panic!(
                "thread {id} iteration {i}: decrypt {len} bytes: {}",
                rv_name(rv)
            )
        });
        assert_eq!(pt, data, "thread {id} iteration {i}: round trip");
        requests += 2;
        match i % 10 {
            3 => {
                let mut bad = ct.clone();
                let j = rng.below(bad.len());
                bad[j] ^= 1 << rng.below(8);
                expect_data_invalid(
                    xks_decrypt(m, s, key, &iv, &aad, &bad),
                    &format!("thread {id} iteration {i}: flipped bit at {j}"),
                );
                requests += 1;
            }
            5 => {
                let mut a2 = aad.clone();
                a2[0] ^= 0x80;
                expect_data_invalid(
                    xks_decrypt(m, s, key, &iv, &a2, &ct),
                    &format!("thread {id} iteration {i}: wrong AAD"),
                );
                requests += 1;
            }
            7 => {
                let k = find_key(m, s, ENC_ONLY);
                let rv = with_gcm(&iv, &aad, |mech| ck!(m, C_DecryptInit(s, mech, k)));
                check(
                    rv,
                    CKR_KEY_FUNCTION_NOT_PERMITTED,
                    &format!("thread {id} iteration {i}: C_DecryptInit, encrypt-only key"),
                );
                requests += 1;
            }
            9 => health(m, slot),
            _ => {}
        }
        if i % 50 == 17 {
            // Replace a pool session: close it while a find is active.
            let hs = find_start(m, s, &format!("absent-{id}-{i}"), 1);
            assert!(hs.is_empty());
            check(
                ck!(m, C_CloseSession(s)),
                CKR_OK,
                &format!("thread {id}: C_CloseSession with an active find"),
            );
            pool[which] = pool_session(m, slot);
        }
    }
    for s in pool {
        check(ck!(m, C_CloseSession(s)), CKR_OK, "C_CloseSession (pool)");
    }
    requests
}

fn run_threads(m: Module, slot: CK_SLOT_ID, threads: usize, iters: usize, seed: u64) -> usize {
    let t0 = std::time::Instant::now();
    let total: usize = std::thread::scope(|sc| {
        let hs: Vec<_> = (0..threads)
            .map(|id| sc.spawn(move || worker(m, slot, id, iters, seed)))
            .collect();
        hs.into_iter()
            .map(|h| h.join().expect("proxy worker thread panicked"))
            .sum()
    });
    println!(
        "{threads} threads x {iters} iterations: {total} requests in {:?}",
        t0.elapsed()
    );
    total
}

#[test]
fn xks_concurrent_proxy() {
    let _env = TestEnv::new();
    let (m, slot) = start();
    let seed = Rng::seed("xks_concurrent_proxy");
    let total = run_threads(m, slot, 8, 300, seed);
    health(m, slot);
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    println!(
        "XKS replay: {total} requests; mutex callbacks: {} created, {} destroyed, {} locks",
        MUTEX_CREATED.load(Ordering::Relaxed),
        MUTEX_DESTROYED.load(Ordering::Relaxed),
        MUTEX_LOCKS.load(Ordering::Relaxed)
    );
}

#[test]
fn xks_finalize_initialize_reset_keeps_going() {
    let _env = TestEnv::new();
    let (m, slot) = start();
    let seed = Rng::seed("xks_finalize_initialize_reset_keeps_going");

    // Something encrypted before the reset must decrypt after it.
    let s = pool_session(m, slot);
    let key = find_key(m, s, KEY);
    let iv = random12(m, s);
    let aad = proxy_aad(Some(b"before reset"), b"");
    let before = xks_encrypt(m, s, key, &iv, &aad, b"survives the reset").expect("encrypt");

    let mut total = run_threads(m, slot, 8, 30, seed);

    // On trouble the proxy finalizes and initializes again, then goes on.
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    let mut info = CK_TOKEN_INFO::default();
    check(
        ck!(m, C_GetTokenInfo(slot, &mut info)),
        CKR_CRYPTOKI_NOT_INITIALIZED,
        "C_GetTokenInfo after C_Finalize",
    );
    check(
        proxy_initialize(m),
        CKR_OK,
        "C_Initialize again after C_Finalize",
    );
    check(
        proxy_initialize(m),
        CKR_CRYPTOKI_ALREADY_INITIALIZED,
        "second C_Initialize",
    );
    let slot2 = first_slot(m);
    assert_eq!(slot2, slot, "first slot after re-initialisation");
    // The token, its PINs and its token keys must survive C_Finalize/C_Initialize.
    health(m, slot2);
    let s = pool_session(m, slot2);
    let key = find_key(m, s, KEY);
    assert_eq!(
        xks_decrypt(m, s, key, &iv, &aad, &before).expect("decrypt after C_Finalize/C_Initialize"),
        b"survives the reset"
    );
    check(ck!(m, C_CloseSession(s)), CKR_OK, "C_CloseSession");
    total += run_threads(m, slot2, 8, 100, seed.wrapping_add(1));

    // A few more reset cycles with a short burst each.
    for cycle in 0..3 {
        check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
        check(
            proxy_initialize(m),
            CKR_OK,
            &format!("C_Initialize cycle {cycle}"),
        );
        total += run_threads(m, first_slot(m), 8, 10, seed.wrapping_add(2 + cycle));
    }
    check(
        ck!(m, C_Finalize(ptr::null_mut())),
        CKR_OK,
        "final C_Finalize",
    );
    println!("XKS replay with resets: {total} requests");
}
