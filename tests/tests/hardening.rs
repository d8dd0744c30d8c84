//! Hardening: what a hostile or careless caller can do through the raw C ABI
//! without crashing, hanging or reading the module (issue "Hardening").
//!
//! Each test stands for a class, not one instance: caller-controlled numbers
//! checked before they size work (RSA exponents, PSS salt lengths, PIN
//! lengths), parameters and enumerated values the spec constrains, failed calls
//! that end their operation, and the `hsm` key policy's rule that a key leaves
//! only wrapped under a key no caller can know.

use std::ffi::c_void;
use std::ptr;
use std::sync::mpsc;
use std::time::Duration;

use cryptoki_sys::*;
use ferrohsm_tests::mech::{Mech, kwp, mech_of};
use ferrohsm_tests::raw::{V, b, by, check, check_any, err, ok, plain_mechanism, rv_name, u};
use ferrohsm_tests::tok::{Dir, H, Tok, set_policy};
use ferrohsm_tests::{TestEnv, USER_PIN, ck};

/// A module with one token of the given key policy and a logged-in R/W user
/// session on it.
fn setup(policy: &str) -> (TestEnv, Tok) {
    let env = TestEnv::new();
    set_policy(policy);
    (env, Tok::ready("hardening"))
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

fn rsa_pair(t: &Tok) -> (H, H) {
    t.generate_pair(
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

/// Asserts that both inits of `pair` (public, private) refuse `mm` with
/// `CKR_MECHANISM_PARAM_INVALID`: sign and verify (`sign`) or encrypt and
/// decrypt; `what` names the mechanism in the messages.
fn inits_refuse(tok: &Tok, mm: &mut CK_MECHANISM, pair: (H, H), sign: bool, what: &str) {
    let (public, private) = pair;
    let inits = if sign {
        [
            ("C_SignInit", tok.sign_init(&mut *mm, private)),
            ("C_VerifyInit", tok.verify_init(&mut *mm, public)),
        ]
    } else {
        [
            ("C_EncryptInit", tok.crypt_init(Dir::Enc, &mut *mm, public)),
            ("C_DecryptInit", tok.crypt_init(Dir::Dec, &mut *mm, private)),
        ]
    };
    for (init, rv) in inits {
        check(rv, CKR_MECHANISM_PARAM_INVALID, &format!("{init} {what}"));
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
    let (_env, tok) = setup("spec");
    tok.logout();
    let public = tok.on(tok.m.open(tok.slot, false));
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
            public.generate_pair(
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
    let (_env, tok) = setup("spec");
    let pair = rsa_pair(&tok);
    // 2048-bit modulus, SHA-256: emLen 256, so sLen <= 256 - 32 - 2 = 222.
    let huge: [CK_ULONG; 6] = [223, 256, 1 << 30, 1 << 40, (1 << 63) - 1, CK_ULONG::MAX];
    for mech in [CKM_SHA256_RSA_PKCS_PSS, CKM_RSA_PKCS_PSS] {
        for salt in huge {
            let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, salt);
            let what = format!("{mech:#x} sLen={salt}");
            inits_refuse(&tok, &mut mech_of(mech, &mut p), pair, true, &what);
        }
    }
    // The largest salt that fits signs and verifies, and no operation was
    // left active by the refusals.
    let (public, private) = pair;
    let mut p = pss(CKM_SHA256, CKG_MGF1_SHA256, 222);
    let mut mm = mech_of(CKM_SHA256_RSA_PKCS_PSS, &mut p);
    let data = b"salted to the brim";
    check(
        tok.sign_init(&mut mm, private),
        CKR_OK,
        "C_SignInit sLen=222",
    );
    let mut sig = vec![0u8; 256];
    let (rv, n) = tok.sign_raw(data, Some(&mut sig));
    check(rv, CKR_OK, "C_Sign sLen=222");
    check(
        tok.verify_init(&mut mm, public),
        CKR_OK,
        "C_VerifyInit sLen=222",
    );
    check(
        tok.verify_once(data, &sig[..n]),
        CKR_OK,
        "C_Verify sLen=222",
    );
}

/// Finding 3: parameters and values the spec constrains are checked.
#[test]
fn parameters_and_enumerated_values_are_checked() {
    let (_env, tok) = setup("spec");
    let pair = rsa_pair(&tok);

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
        let what = format!("OAEP source={source} with a label");
        inits_refuse(
            &tok,
            &mut mech_of(CKM_RSA_PKCS_OAEP, &mut p),
            pair,
            false,
            &what,
        );
    }

    // The hash-and-sign PSS mechanisms require their parameter.
    for mech in [
        CKM_SHA1_RSA_PKCS_PSS,
        CKM_SHA256_RSA_PKCS_PSS,
        CKM_SHA512_RSA_PKCS_PSS,
        CKM_RSA_PKCS_PSS,
    ] {
        let what = format!("{mech:#x} without parameter");
        inits_refuse(&tok, &mut plain_mechanism(mech), pair, true, &what);
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
        let rv = tok.create(t).err().unwrap_or(CKR_OK);
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
    let (_env, tok) = setup("spec");
    let (m, slot, s) = (tok.m, tok.slot, tok.s);
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
    // Before the module is loaded (see `setup`); each iteration loads,
    // initialises and finalises the module on this thread.
    set_policy(policy);
    let tok = Tok::ready(&format!("wrap-{policy}"));
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
        tok.generate(CKM_AES_KEY_GEN, t)
    };
    // A key whose value the caller chose.
    let known = [0x42u8; 32];
    let import = |usages: &[CK_ATTRIBUTE_TYPE]| {
        let mut t = vec![
            u(CKA_CLASS, CKO_SECRET_KEY),
            u(CKA_KEY_TYPE, CKK_AES),
            by(CKA_VALUE, &known),
            b(CKA_TOKEN, false),
        ];
        t.extend(usages.iter().map(|&a| b(a, true)));
        tok.create(t)
    };
    // The key to get out: generated, sensitive, extractable.
    let target = aes(vec![b(CKA_EXTRACTABLE, true)]).expect("extractable target");
    // A wrapping key whose value the caller chose.
    let imported = import(&[CKA_WRAP, CKA_UNWRAP, CKA_ENCRYPT]).expect("import a wrapping key");
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
    // The imported key lacks CKA_DERIVE: give it on a copy.
    let copied = tok.copy(imported, vec![b(CKA_DERIVE, true)]);
    let derive_base = if hsm {
        // Usages only narrow on hsm tokens: import a derive-capable twin.
        err(
            copied,
            CKR_ATTRIBUTE_READ_ONLY,
            "C_CopyObject widening CKA_DERIVE",
        );
        import(&[CKA_DERIVE]).expect("import a derive base")
    } else {
        ok(copied, "C_CopyObject with CKA_DERIVE")
    };
    let derived = ok(
        tok.derive(
            &Mech::StrData(CKM_AES_ECB_ENCRYPT_DATA, vec![7; 32]),
            derive_base,
            vec![
                u(CKA_CLASS, CKO_SECRET_KEY),
                u(CKA_KEY_TYPE, CKK_AES),
                u(CKA_VALUE_LEN, 32),
                b(CKA_TOKEN, false),
                b(CKA_WRAP, true),
            ],
        ),
        "C_DeriveKey from the imported key",
    );

    let refused = if hsm { CKR_KEY_NOT_WRAPPABLE } else { CKR_OK };
    for (what, wk, want) in [
        ("imported (caller-known) key", imported, refused),
        ("key derived from an imported key", derived, refused),
        ("generated key that can decrypt", decrypting, refused),
        ("generated extractable key", extractable_wk, refused),
        ("generated never-extractable wrap-only key", good, CKR_OK),
    ] {
        let rv = tok.wrap(&kwp(), wk, target).err().unwrap_or(CKR_OK);
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
        check(
            tok.set(good, vec![b(CKA_DECRYPT, true)]),
            CKR_ATTRIBUTE_READ_ONLY,
            "hsm: C_SetAttributeValue CKA_DECRYPT=TRUE on a wrapping key",
        );
        err(
            tok.copy(good, vec![b(CKA_DECRYPT, true)]),
            CKR_ATTRIBUTE_READ_ONLY,
            "hsm: C_CopyObject with CKA_DECRYPT=TRUE of a wrapping key",
        );
        // Narrowing stays allowed.
        check(
            tok.set(good, vec![b(CKA_UNWRAP, false)]),
            CKR_OK,
            "hsm: C_SetAttributeValue CKA_UNWRAP=FALSE",
        );
    }
    check(
        ck!(tok.m, C_Finalize(ptr::null_mut())),
        CKR_OK,
        "C_Finalize",
    );
    eprintln!("{policy}: wrap policy as expected ({})", rv_name(refused));
}
