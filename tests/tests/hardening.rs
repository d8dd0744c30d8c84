//! Hardening: what a hostile or careless caller can do through the raw C ABI
//! without crashing, hanging or reading the module (issue "Hardening").
//!
//! Each test stands for a class, not one instance: caller-controlled numbers
//! checked before they size work (RSA exponents, PSS salt lengths, PIN
//! lengths), parameters and enumerated values the spec constrains, failed calls
//! that end their operation, and the `hsm` key policy's rule that a key leaves
//! only wrapped under a key no caller can know.

use std::ffi::c_void;
use std::mem::size_of;
use std::ptr;
use std::sync::mpsc;
use std::time::Duration;

use cryptoki_sys::*;
use ferrohsm_tests::raw::{RawModule, Tpl, V, check, check_any, rv_name};
use ferrohsm_tests::{TestEnv, USER_PIN, ck};

type H = CK_OBJECT_HANDLE;

fn u(t: CK_ATTRIBUTE_TYPE, v: CK_ULONG) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::U(v))
}
fn b(t: CK_ATTRIBUTE_TYPE, v: bool) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::B(v))
}
fn by(t: CK_ATTRIBUTE_TYPE, v: &[u8]) -> (CK_ATTRIBUTE_TYPE, V) {
    (t, V::Bytes(v.to_vec()))
}

/// A module with one token of the given key policy and a logged-in R/W user
/// session on it.
fn setup(policy: &str) -> (TestEnv, RawModule, CK_SLOT_ID, CK_SESSION_HANDLE) {
    let env = TestEnv::new();
    // SAFETY: first thing in the test, before any thread or the module exists;
    // nextest runs one test per process.
    unsafe { std::env::set_var("FERROHSM_POLICY", policy) };
    let m = RawModule::init();
    let slot = m.make_token("hardening");
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    (env, m, slot, s)
}

/// Runs `f` on its own thread and fails the test if it has not returned
/// within `secs` (a hang must fail the test, not stall the run).
fn within<T: Send + 'static>(secs: u64, what: &str, f: impl FnOnce() -> T + Send + 'static) -> T {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(f());
    });
    rx.recv_timeout(Duration::from_secs(secs))
        .unwrap_or_else(|_| panic!("{what}: no answer within {secs} s (the module hangs)"))
}

fn generate_pair(
    m: &RawModule,
    s: CK_SESSION_HANDLE,
    mech: CK_MECHANISM_TYPE,
    public: Vec<(CK_ATTRIBUTE_TYPE, V)>,
    private: Vec<(CK_ATTRIBUTE_TYPE, V)>,
) -> Result<(H, H), CK_RV> {
    let (mut pt, mut kt) = (Tpl::new(public), Tpl::new(private));
    let (mut ph, mut kh) = (CK_INVALID_HANDLE, CK_INVALID_HANDLE);
    let mut mm = CK_MECHANISM {
        mechanism: mech,
        pParameter: ptr::null_mut(),
        ulParameterLen: 0,
    };
    let rv = ck!(
        m,
        C_GenerateKeyPair(
            s,
            &mut mm,
            pt.ptr(),
            pt.len(),
            kt.ptr(),
            kt.len(),
            &mut ph,
            &mut kh
        )
    );
    if rv == CKR_OK { Ok((ph, kh)) } else { Err(rv) }
}

fn rsa_pair(m: &RawModule, s: CK_SESSION_HANDLE) -> (H, H) {
    generate_pair(
        m,
        s,
        CKM_RSA_PKCS_KEY_PAIR_GEN,
        vec![
            u(CKA_MODULUS_BITS, 2048),
            b(CKA_VERIFY, true),
            b(CKA_ENCRYPT, true),
            b(CKA_TOKEN, false),
        ],
        vec![b(CKA_SIGN, true), b(CKA_DECRYPT, true), b(CKA_TOKEN, false)],
    )
    .expect("RSA-2048 key pair")
}

fn mech_of<P>(ty: CK_MECHANISM_TYPE, p: &mut P) -> CK_MECHANISM {
    CK_MECHANISM {
        mechanism: ty,
        pParameter: p as *mut P as *mut c_void,
        ulParameterLen: size_of::<P>() as CK_ULONG,
    }
}

fn pss(hash: CK_MECHANISM_TYPE, mgf: CK_ULONG, salt: CK_ULONG) -> CK_RSA_PKCS_PSS_PARAMS {
    CK_RSA_PKCS_PSS_PARAMS {
        hashAlg: hash,
        mgf,
        sLen: salt,
    }
}

/// Finding 1: an even, too small or absurd public exponent is refused at once,
/// also from a public session making a public session key pair.
#[test]
fn rsa_key_generation_refuses_bad_exponents_at_once() {
    let (_env, m, slot, s) = setup("spec");
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout");
    let public = m.open(slot, false);
    let bad: &[&[u8]] = &[
        &[0x01, 0x00, 0x00], // 65536
        &[0x02],
        &[0x00],
        &[0x01],
        &[0x00, 0x00, 0x04],
        &[0x01, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x01], // 2^64 + 1
        &[0xff; 64],                                             // 512-bit odd
    ];
    for e in bad {
        let e = e.to_vec();
        let shown = e.iter().map(|x| format!("{x:02x}")).collect::<String>();
        let rv = within(60, &format!("C_GenerateKeyPair e={shown}"), move || {
            generate_pair(
                &m,
                public,
                CKM_RSA_PKCS_KEY_PAIR_GEN,
                vec![
                    u(CKA_MODULUS_BITS, 2048),
                    (CKA_PUBLIC_EXPONENT, V::Bytes(e)),
                    b(CKA_TOKEN, false),
                    b(CKA_PRIVATE, false),
                ],
                vec![b(CKA_TOKEN, false), b(CKA_PRIVATE, false)],
            )
        });
        check_any(
            rv.err().unwrap_or(CKR_OK),
            &[CKR_ATTRIBUTE_VALUE_INVALID, CKR_TEMPLATE_INCONSISTENT],
            &format!("C_GenerateKeyPair with public exponent {shown}"),
        );
    }
}

/// Finding 2: a PSS salt length that cannot fit the modulus is a parameter
/// error at `C_SignInit`/`C_VerifyInit`, before it sizes anything; the
/// largest one that fits works; no refused init leaves an operation behind.
#[test]
fn pss_salt_length_is_bounded_by_the_modulus() {
    let (_env, m, _slot, s) = setup("spec");
    let (public, private) = rsa_pair(&m, s);
    // 2048-bit modulus, SHA-256: emLen 256, so sLen <= 256 - 32 - 2 = 222.
    let huge: [CK_ULONG; 6] = [223, 256, 1 << 30, 1 << 40, (1 << 63) - 1, CK_ULONG::MAX];
    for mech in [CKM_SHA256_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS] {
        for salt in huge {
            let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, salt);
            let mut mm = mech_of(mech, &mut p);
            check(
                ck!(m, C_SignInit(s, &mut mm, private)),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("C_SignInit {mech:#x} sLen={salt}"),
            );
            check(
                ck!(m, C_VerifyInit(s, &mut mm, public)),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("C_VerifyInit {mech:#x} sLen={salt}"),
            );
        }
    }
    // The largest salt that fits signs and verifies, and no operation was
    // left active by the refusals.
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, 222);
    let mut mm = mech_of(CKM_SHA256_RSA_PKCS_PSS, &mut p);
    let mut data = b"salted to the brim".to_vec();
    check(
        ck!(m, C_SignInit(s, &mut mm, private)),
        CKR_OK,
        "C_SignInit sLen=222",
    );
    let mut sig = vec![0u8; 256];
    let mut n = sig.len() as CK_ULONG;
    check(
        ck!(
            m,
            C_Sign(
                s,
                data.as_mut_ptr(),
                data.len() as CK_ULONG,
                sig.as_mut_ptr(),
                &mut n
            )
        ),
        CKR_OK,
        "C_Sign sLen=222",
    );
    check(
        ck!(m, C_VerifyInit(s, &mut mm, public)),
        CKR_OK,
        "C_VerifyInit sLen=222",
    );
    check(
        ck!(
            m,
            C_Verify(
                s,
                data.as_mut_ptr(),
                data.len() as CK_ULONG,
                sig.as_mut_ptr(),
                n
            )
        ),
        CKR_OK,
        "C_Verify sLen=222",
    );
}

/// Finding 3: parameters and values the spec constrains are checked.
#[test]
fn parameters_and_enumerated_values_are_checked() {
    let (_env, m, _slot, s) = setup("spec");
    let (public, private) = rsa_pair(&m, s);

    // OAEP: a label with a source other than CKZ_DATA_SPECIFIED.
    let mut label = b"a label".to_vec();
    for source in [0, 2, CK_ULONG::MAX] {
        let mut p = CK_RSA_PKCS_OAEP_PARAMS {
            hashAlg: CKM_SHA256,
            mgf: CKG_MGF1_SHA256,
            source,
            pSourceData: label.as_mut_ptr() as *mut c_void,
            ulSourceDataLen: label.len() as CK_ULONG,
        };
        let mut mm = mech_of(CKM_RSA_PKCS_OAEP, &mut p);
        check(
            ck!(m, C_EncryptInit(s, &mut mm, public)),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("C_EncryptInit OAEP source={source} with a label"),
        );
        check(
            ck!(m, C_DecryptInit(s, &mut mm, private)),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("C_DecryptInit OAEP source={source} with a label"),
        );
    }

    // The hash-and-sign PSS mechanisms require their parameter.
    for mech in [
        CKM_SHA1_RSA_PKCS_PSS,
        CKM_SHA256_RSA_PKCS_PSS,
        CKM_SHA512_RSA_PKCS_PSS,
        CKM_RSA_PKCS_PSS,
    ] {
        let mut mm = CK_MECHANISM {
            mechanism: mech,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        check(
            ck!(m, C_SignInit(s, &mut mm, private)),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("C_SignInit {mech:#x} without parameter"),
        );
        check(
            ck!(m, C_VerifyInit(s, &mut mm, public)),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("C_VerifyInit {mech:#x} without parameter"),
        );
    }

    // Enumerated attribute values the spec does not define.
    for (what, extra) in [
        (
            "CKA_CERTIFICATE_TYPE 0x7FFF",
            vec![u(CKA_CERTIFICATE_TYPE, 0x7fff)],
        ),
        (
            "CKA_CERTIFICATE_TYPE vendor",
            vec![u(CKA_CERTIFICATE_TYPE, CKC_VENDOR_DEFINED | 5)],
        ),
        (
            "CKA_CERTIFICATE_CATEGORY 7",
            vec![
                u(CKA_CERTIFICATE_TYPE, CKC_X_509),
                u(CKA_CERTIFICATE_CATEGORY, 7),
            ],
        ),
        (
            "CKA_NAME_HASH_ALGORITHM not a digest",
            vec![
                u(CKA_CERTIFICATE_TYPE, CKC_X_509),
                u(CKA_NAME_HASH_ALGORITHM, CKM_AES_GCM),
            ],
        ),
    ] {
        let mut t = vec![
            u(CKA_CLASS, CKO_CERTIFICATE),
            b(CKA_TOKEN, false),
            by(CKA_VALUE, b"not parsed: the type is checked first"),
        ];
        t.extend(extra);
        let rv = m.create(s, t).err().unwrap_or(CKR_OK);
        check(
            rv,
            CKR_ATTRIBUTE_VALUE_INVALID,
            &format!("C_CreateObject certificate with {what}"),
        );
    }
}

/// Finding 3 (PINs): a PIN longer than `ulMaxPinLen` is refused without the
/// module reading it. The PIN passed claims 2^31 bytes but only its first page
/// is readable: any KDF or copy over it would fault and kill this process.
#[test]
fn overlong_pins_are_refused_unread() {
    let (_env, m, slot, s) = setup("spec");
    let page = 4096usize;
    // SAFETY: an anonymous private mapping of two pages; no other code uses it.
    let base = unsafe {
        libc::mmap(
            ptr::null_mut(),
            2 * page,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(base, libc::MAP_FAILED, "mmap");
    // SAFETY: the second page of the mapping made above.
    let rc = unsafe { libc::mprotect((base as *mut u8).add(page) as *mut c_void, page, 0) };
    assert_eq!(rc, 0, "mprotect");
    let pin = base as *mut CK_UTF8CHAR;
    let long: CK_ULONG = 1 << 31;

    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout");
    let ti = m.token_info(slot);
    assert_eq!(ti.ulMaxPinLen, 64);
    check(
        ck!(m, C_Login(s, CKU_USER, pin, long)),
        CKR_PIN_INCORRECT,
        "C_Login with a 2 GiB PIN",
    );
    check(
        ck!(m, C_Login(s, CKU_USER, pin, 65)),
        CKR_PIN_INCORRECT,
        "C_Login with a 65-byte PIN",
    );
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let mut good = USER_PIN.as_bytes().to_vec();
    check(
        ck!(
            m,
            C_SetPIN(s, good.as_mut_ptr(), good.len() as CK_ULONG, pin, long)
        ),
        CKR_PIN_LEN_RANGE,
        "C_SetPIN to a 2 GiB PIN",
    );
    check_any(
        ck!(
            m,
            C_SetPIN(s, pin, long, good.as_mut_ptr(), good.len() as CK_ULONG)
        ),
        &[CKR_PIN_INCORRECT, CKR_PIN_LEN_RANGE],
        "C_SetPIN from a 2 GiB old PIN",
    );
    check(ck!(m, C_Logout(s)), CKR_OK, "C_Logout");
    check(
        ck!(m, C_Login(s, CKU_SO, pin, long)),
        CKR_PIN_INCORRECT,
        "C_Login SO with a 2 GiB PIN",
    );
    let mut label = ferrohsm_tests::raw::padded32("hardening");
    check(ck!(m, C_CloseSession(s)), CKR_OK, "C_CloseSession");
    check_any(
        ck!(m, C_InitToken(slot, pin, long, label.as_mut_ptr())),
        &[CKR_PIN_LEN_RANGE, CKR_PIN_INCORRECT],
        "C_InitToken with a 2 GiB SO PIN",
    );
    // SAFETY: unmapping the mapping made above; the module kept no pointer to it.
    unsafe { libc::munmap(base, 2 * page) };
}

/// Finding 4: on an `hsm` token an extractable key leaves only under a
/// wrapping key no caller can know: generated here, never extractable, not
/// able to decrypt (or marked `CKA_TRUSTED` by the SO). A `spec` token keeps
/// the spec's behaviour.
#[test]
fn hsm_wraps_only_under_keys_no_caller_knows() {
    for policy in ["hsm", "spec"] {
        wrap_policy_case(policy);
    }
}

fn wrap_policy_case(policy: &str) {
    let env = TestEnv::new();
    // SAFETY: before the module is loaded in this process (see `setup`); each
    // iteration loads, initialises and finalises the module on this thread.
    unsafe { std::env::set_var("FERROHSM_POLICY", policy) };
    let m = RawModule::load();
    m.initialize();
    let slot = m.make_token(&format!("wrap-{policy}"));
    let s = m.open(slot, true);
    check(m.login(s, CKU_USER, USER_PIN), CKR_OK, "C_Login user");
    let hsm = policy == "hsm";

    let aes = |extra: Vec<(CK_ATTRIBUTE_TYPE, V)>| {
        let mut t = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            u(CKA_VALUE_LEN, 32),
            b(CKA_TOKEN, false),
            b(CKA_SENSITIVE, true),
        ];
        t.extend(extra);
        m.generate_key(s, CKM_AES_KEY_GEN, t)
    };
    // The key to get out: generated, sensitive, extractable.
    let target = aes(vec![b(CKA_EXTRACTABLE, true)]).expect("extractable target");
    // A wrapping key whose value the caller chose.
    let known = [0x42u8; 32];
    let imported = m
        .create(
            s,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                by(CKA_VALUE, &known),
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
                b(CKA_UNWRAP, true),
                b(CKA_ENCRYPT, true),
            ],
        )
        .expect("import a wrapping key");
    // Good: generated here, never extractable, wraps but cannot decrypt (the
    // token's default usages include CKA_DECRYPT, so say so).
    let good = aes(vec![
        b(CKA_EXTRACTABLE, false),
        b(CKA_WRAP, true),
        b(CKA_UNWRAP, true),
        b(CKA_DECRYPT, false),
    ])
    .expect("generated wrapping key");
    // Generated here, but it could decrypt its own wraps.
    let decrypting = aes(vec![
        b(CKA_EXTRACTABLE, false),
        b(CKA_WRAP, true),
        b(CKA_DECRYPT, true),
    ])
    .expect("generated wrap+decrypt key");
    // Generated, extractable: its value may leave (wrapped) and come back.
    let extractable_wk =
        aes(vec![b(CKA_EXTRACTABLE, true), b(CKA_WRAP, true)]).expect("extractable wrapping key");
    // Derived from the imported key (and so computable by the caller).
    let mut data = [7u8; 32];
    let mut sd = CK_KEY_DERIVATION_STRING_DATA {
        pData: data.as_mut_ptr(),
        ulLen: data.len() as CK_ULONG,
    };
    let mut dm = mech_of(CKM_AES_ECB_ENCRYPT_DATA, &mut sd);
    // The imported key lacks CKA_DERIVE: give it on a copy.
    let derive_base = {
        let mut t = Tpl::new(vec![b(CKA_DERIVE, true)]);
        let mut h = CK_INVALID_HANDLE;
        let rv = ck!(m, C_CopyObject(s, imported, t.ptr(), t.len(), &mut h));
        if hsm {
            // Usages only narrow on hsm tokens: import a derive-capable twin.
            check(
                rv,
                CKR_ATTRIBUTE_READ_ONLY,
                "C_CopyObject widening CKA_DERIVE",
            );
            m.create(
                s,
                vec![
                    u(CKA_CLASS, CKO_SECRET_KEY),
                    u(CKA_KEY_TYPE, CKK_AES),
                    by(CKA_VALUE, &known),
                    b(CKA_TOKEN, false),
                    b(CKA_DERIVE, true),
                ],
            )
            .expect("import a derive base")
        } else {
            check(rv, CKR_OK, "C_CopyObject with CKA_DERIVE");
            h
        }
    };
    let mut dt = Tpl::new(vec![
        u(CKA_CLASS, CKO_SECRET_KEY),
        u(CKA_KEY_TYPE, CKK_AES),
        u(CKA_VALUE_LEN, 32),
        b(CKA_TOKEN, false),
        b(CKA_WRAP, true),
    ]);
    let mut derived = CK_INVALID_HANDLE;
    check(
        ck!(
            m,
            C_DeriveKey(s, &mut dm, derive_base, dt.ptr(), dt.len(), &mut derived)
        ),
        CKR_OK,
        "C_DeriveKey from the imported key",
    );

    let wrap = |wk: H| -> CK_RV {
        let mut mm = CK_MECHANISM {
            mechanism: CKM_AES_KEY_WRAP_KWP,
            pParameter: ptr::null_mut(),
            ulParameterLen: 0,
        };
        let mut n: CK_ULONG = 0;
        let rv = ck!(
            m,
            C_WrapKey(s, &mut mm, wk, target, ptr::null_mut(), &mut n)
        );
        if rv != CKR_OK {
            return rv;
        }
        let mut out = vec![0u8; n as usize];
        ck!(
            m,
            C_WrapKey(s, &mut mm, wk, target, out.as_mut_ptr(), &mut n)
        )
    };
    let refused = if hsm { CKR_KEY_NOT_WRAPPABLE } else { CKR_OK };
    for (what, wk, want) in [
        ("imported (caller-known) key", imported, refused),
        ("key derived from an imported key", derived, refused),
        ("generated key that can decrypt", decrypting, refused),
        ("generated extractable key", extractable_wk, refused),
        ("generated never-extractable wrap-only key", good, CKR_OK),
    ] {
        let rv = wrap(wk);
        assert_eq!(
            rv,
            want,
            "{policy}: C_WrapKey under the {what}: got {}\nmodule log (tail):\n{}",
            rv_name(rv),
            env.log_tail(5)
        );
    }
    if hsm {
        let log = env.log();
        assert!(
            log.contains("refused by the token's hsm key policy"),
            "the refusal is explained in the log"
        );
        // The good key cannot gain CKA_DECRYPT afterwards, by set or by copy.
        let mut t = Tpl::new(vec![b(CKA_DECRYPT, true)]);
        check(
            ck!(m, C_SetAttributeValue(s, good, t.ptr(), t.len())),
            CKR_ATTRIBUTE_READ_ONLY,
            "hsm: C_SetAttributeValue CKA_DECRYPT=TRUE on a wrapping key",
        );
        let mut h = CK_INVALID_HANDLE;
        check(
            ck!(m, C_CopyObject(s, good, t.ptr(), t.len(), &mut h)),
            CKR_ATTRIBUTE_READ_ONLY,
            "hsm: C_CopyObject with CKA_DECRYPT=TRUE of a wrapping key",
        );
        // Narrowing stays allowed.
        let mut t = Tpl::new(vec![b(CKA_UNWRAP, false)]);
        check(
            ck!(m, C_SetAttributeValue(s, good, t.ptr(), t.len())),
            CKR_OK,
            "hsm: C_SetAttributeValue CKA_UNWRAP=FALSE",
        );
    }
    check(ck!(m, C_Finalize(ptr::null_mut())), CKR_OK, "C_Finalize");
    eprintln!("{policy}: wrap policy as expected ({})", rv_name(refused));
}
