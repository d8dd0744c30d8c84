//! `ferrohsm demo`: the module as a client sees it, step by step, with timings.
//! Loads the real `libferrohsm_pkcs11.so` through the `cryptoki` crate.

use std::time::Instant;

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, ObjectClass};
use cryptoki::session::UserType;
use cryptoki::types::AuthPin;

/// Label of the token the demo creates and reuses.
const DEMO_LABEL: &str = "ferrohsm-demo";
/// The demo token's PINs. A demo token only: never keep real keys in it.
const DEMO_SO_PIN: &str = "demo-so-pin";
const DEMO_USER_PIN: &str = "demo-user-pin";

fn step<T>(what: &str, f: impl FnOnce() -> Result<T, String>) -> Result<T, String> {
    let t = Instant::now();
    let r = f();
    let us = t.elapsed().as_secs_f64() * 1e6;
    match &r {
        Ok(_) => println!("  ok  {what:<58} {us:>10.0} us"),
        Err(e) => println!("  ERR {what:<58} {e}"),
    }
    r
}

fn e<E: std::fmt::Display>(x: E) -> String {
    x.to_string()
}

/// Runs the demo; `temp` uses a throw-away data directory (in a child run
/// with `in_temp`, which then says only what stays true once the directory
/// is removed).
pub fn run(temp: bool, in_temp: bool) -> Result<(), String> {
    if temp && !in_temp {
        // The module reads FERROHSM_DIR at C_Initialize; run the demo again in a
        // child whose environment names a throw-away directory, removed after.
        let dir = tempfile::tempdir().map_err(e)?;
        let exe = std::env::current_exe().map_err(e)?;
        let status = std::process::Command::new(exe)
            .args(["demo", "--temp", "--in-temp-dir"])
            .env("FERROHSM_DIR", dir.path())
            .status()
            .map_err(e)?;
        return if status.success() {
            Ok(())
        } else {
            Err(format!("demo failed ({status})"))
        };
    }
    let module = ferrohsm_pkcs11::locate::module_path()
        .ok_or_else(ferrohsm_pkcs11::locate::not_found_message)?;
    println!("FerroHSM demo");
    println!("  module: {}", module.display());
    match std::env::var("FERROHSM_DIR") {
        Ok(d) => println!("  data directory: {d}"),
        Err(_) => println!(
            "  data directory: default ($XDG_DATA_HOME/ferrohsm or ~/.local/share/ferrohsm)"
        ),
    }
    println!();

    let p11 = step("load the module (dlopen)", || {
        Pkcs11::new(&module).map_err(e)
    })?;
    step("C_Initialize (OS locking)", || {
        p11.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
            .map_err(e)
    })?;
    let info = step("C_GetInfo", || p11.get_library_info().map_err(e))?;
    println!(
        "      {} {} — Cryptoki {}",
        info.manufacturer_id(),
        info.library_description(),
        info.cryptoki_version()
    );
    let slots = step("C_GetSlotList", || p11.get_all_slots().map_err(e))?;
    let mut slot = None;
    for s in &slots {
        let ti = p11.get_token_info(*s).map_err(e)?;
        if ti.token_initialized() && ti.label() == DEMO_LABEL {
            slot = Some(*s);
        }
    }
    let slot = match slot {
        Some(s) => {
            println!("      reusing token {DEMO_LABEL:?} in slot {}", s.id());
            s
        }
        None => {
            // The last slot holds the spare, uninitialised token.
            let spare = *slots.last().ok_or("the module offers no slot")?;
            let so = AuthPin::new(DEMO_SO_PIN.into());
            step(
                &format!("C_InitToken {DEMO_LABEL:?} in slot {}", spare.id()),
                || p11.init_token(spare, &so, DEMO_LABEL).map_err(e),
            )?;
            let s = p11.open_rw_session(spare).map_err(e)?;
            step("C_Login (SO) + C_InitPIN", || {
                s.login(UserType::So, Some(&so)).map_err(e)?;
                s.init_pin(&AuthPin::new(DEMO_USER_PIN.into())).map_err(e)?;
                s.logout().map_err(e)
            })?;
            spare
        }
    };
    let session = step("C_OpenSession (read/write)", || {
        p11.open_rw_session(slot).map_err(e)
    })?;
    step("C_Login (user)", || {
        session
            .login(UserType::User, Some(&AuthPin::new(DEMO_USER_PIN.into())))
            .map_err(e)
    })?;
    let ti = p11.get_token_info(slot).map_err(e)?;
    println!(
        "      token {:?}, serial {}, {} session(s) open",
        ti.label(),
        ti.serial_number(),
        ti.session_count().map_or(0, |n| n)
    );

    let mut random = [0u8; 16];
    step("C_GenerateRandom (16 bytes)", || {
        session.generate_random_slice(&mut random).map_err(e)
    })?;
    println!("      {}", hex(&random));
    let message = b"FerroHSM keeps keys inside";
    let digest = step("C_Digest SHA-256", || {
        session.digest(&Mechanism::Sha256, message).map_err(e)
    })?;
    println!(
        "      sha256({:?}) = {}",
        String::from_utf8_lossy(message),
        hex(&digest)
    );

    let key_label = format!("demo aes {}", hex(&random[..4]));
    let aes = step("C_GenerateKey AES-256 (sensitive, non-extractable)", || {
        session
            .generate_key(
                &Mechanism::AesKeyGen,
                &[
                    Attribute::Token(true),
                    Attribute::Label(key_label.clone().into_bytes()),
                    Attribute::ValueLen(32.into()),
                    Attribute::Encrypt(true),
                    Attribute::Decrypt(true),
                ],
            )
            .map_err(e)
    })?;
    let mut iv = [0u8; 12];
    session.generate_random_slice(&mut iv).map_err(e)?;
    let aad = b"demo header";
    let plaintext = b"attack at dawn";
    let sealed = step(
        "C_Encrypt AES-256-GCM (12-byte IV, AAD, 128-bit tag)",
        || gcm(&session, aes, &mut iv, aad, plaintext, true),
    )?;
    println!("      ciphertext||tag = {}", hex(&sealed));
    let opened = step("C_Decrypt AES-256-GCM", || {
        gcm(&session, aes, &mut iv, aad, &sealed, false)
    })?;
    if opened != plaintext {
        return Err("GCM round trip returned different bytes".into());
    }
    println!("      {:?}", String::from_utf8_lossy(&opened));
    let mut tampered = sealed.clone();
    tampered[0] ^= 1;
    step("C_Decrypt of tampered data is refused", || {
        match gcm(&session, aes, &mut iv, aad, &tampered, false) {
            Err(m) if m.contains("EncryptedDataInvalid") => Ok(()),
            other => Err(format!(
                "expected CKR_ENCRYPTED_DATA_INVALID, got {other:?}"
            )),
        }
    })?;
    let value = step(
        "C_GetAttributeValue CKA_VALUE of the key is refused",
        || match session.get_attributes(aes, &[cryptoki::object::AttributeType::Value]) {
            Ok(attrs) if attrs.is_empty() => Ok("not revealed"),
            Ok(_) => Err("the key value was revealed".to_string()),
            Err(_) => Ok("not revealed"),
        },
    )?;
    println!("      {value}");

    let pems = public_key_steps(&session, &random)?;

    let label = format!("demo note {}", hex(&random[..4]));
    step(
        "C_CreateObject (a private data object on the token)",
        || {
            session
                .create_object(&[
                    Attribute::Class(ObjectClass::DATA),
                    Attribute::Token(true),
                    Attribute::Private(true),
                    Attribute::Label(label.clone().into_bytes()),
                    Attribute::Value(b"hello from the demo".to_vec()),
                ])
                .map_err(e)
        },
    )?;
    let found = step("C_FindObjects (all objects visible to the user)", || {
        session.find_objects(&[]).map_err(e)
    })?;
    for h in &found {
        let attrs = session
            .get_attributes(
                *h,
                &[
                    cryptoki::object::AttributeType::Class,
                    cryptoki::object::AttributeType::Label,
                ],
            )
            .map_err(e)?;
        let mut class = String::new();
        let mut lab = String::new();
        for a in attrs {
            match a {
                Attribute::Class(c) => class = c.to_string(),
                Attribute::Label(l) => lab = String::from_utf8_lossy(&l).into_owned(),
                _ => {}
            }
        }
        println!("      {class:<16} {lab:?}");
    }
    let mechs = step("C_GetMechanismList", || {
        p11.get_mechanism_list(slot).map_err(e)
    })?;
    println!(
        "      {}",
        mechs
            .iter()
            .map(|m| m.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    );
    step("C_Logout + C_CloseSession + C_Finalize", || {
        session.logout().map_err(e)?;
        drop(session);
        p11.finalize().map_err(e)
    })?;
    // C_Finalize wrote the key-use summaries; the chain is checked from the
    // audit root, which the user PIN unseals.
    let (lines, last) = step("audit log: verify the hash chain (user PIN)", || {
        crate::lifecycle::verify_summary(DEMO_LABEL, DEMO_USER_PIN, 4).map_err(|f| match f {
            crate::p11::Fail::Msg(m) => m,
            crate::p11::Fail::Exit(c) => format!("exit {c}"),
        })
    })?;
    println!("      {lines} events, chain intact; the last ones:");
    for l in &last {
        println!("      {l}");
    }

    println!();
    if in_temp {
        for (name, pem) in &pems {
            let file = std::env::temp_dir().join(format!("ferrohsm-demo-{name}.pem"));
            if std::fs::write(&file, pem).is_ok() {
                println!(
                    "Public {name} key written to {}; inspect it with:\n  openssl pkey -pubin -in {} -text -noout",
                    file.display(),
                    file.display()
                );
            }
        }
        println!(
            "The temporary data directory is removed now, with the demo token, its keys and \
             its audit log."
        );
        println!(
            "To keep a token to try things on (ferrohsm audit show, pkcs11-tool -O, OpenSSL), \
             run `ferrohsm demo` without --temp: it uses the default data directory."
        );
        println!(
            "The module itself stays: pkcs11-tool --module {} -M",
            module.display()
        );
        return Ok(());
    }
    println!();
    println!("Read the token's audit log: ferrohsm audit show --token {DEMO_LABEL}");
    println!("Next, try the module with OpenSC's pkcs11-tool (apt-get install opensc):");
    println!("  pkcs11-tool --module {} -L", module.display());
    println!("  pkcs11-tool --module {} -M", module.display());
    println!(
        "  echo hello | pkcs11-tool --module {} --hash -m SHA256 | xxd",
        module.display()
    );
    println!(
        "  pkcs11-tool --module {} --login --pin {DEMO_USER_PIN} -O",
        module.display()
    );
    let tag = hex(&random[..4]);
    println!(
        "Sign with the token's EC key from OpenSSL (apt-get install libengine-pkcs11-openssl; \
         the engine finds the module through p11-kit after `ferrohsm register`, as root \
         `ferrohsm register --config-dir /etc/pkcs11/modules`):"
    );
    println!(
        "  echo hi > msg; openssl dgst -engine pkcs11 -keyform engine -sha256 -sign \
         'pkcs11:token={DEMO_LABEL};object=demo%20ec%20{tag};type=private;pin-value={DEMO_USER_PIN}' \
         -out msg.sig msg"
    );
    println!("The AWS KMS XKS proxy uses the module with, in its settings.toml:");
    println!(
        "  [pkcs11]\n  PKCS11_HSM_MODULE = \"{}\"\n  user_pin = \"{DEMO_USER_PIN}\"",
        module.display()
    );
    for (name, pem) in &pems {
        let file = std::env::temp_dir().join(format!("ferrohsm-demo-{name}.pem"));
        if std::fs::write(&file, pem).is_ok() {
            println!(
                "Public {name} key written to {}; inspect it with:\n  openssl pkey -pubin -in {} -text -noout",
                file.display(),
                file.display()
            );
        }
    }
    println!(
        "The token stays in the data directory: the demo reuses it, and each run adds a fresh set of demo keys."
    );
    Ok(())
}

/// Key pairs born in the token: P-256 and RSA-2048, private halves sensitive and
/// non-extractable; ECDSA and RSA-PSS signatures made and verified; public keys
/// exported as PEM (SubjectPublicKeyInfo). Returns the PEMs by name.
fn public_key_steps(
    session: &cryptoki::session::Session,
    random: &[u8],
) -> Result<Vec<(&'static str, String)>, String> {
    use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsPssParams};
    use cryptoki::object::AttributeType;
    let tag = hex(&random[..4]);
    let private = |label: String| {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Sensitive(true),
            Attribute::Extractable(false),
            Attribute::Sign(true),
            Attribute::Label(label.into_bytes()),
        ]
    };
    let public = |label: String, extra: Attribute| {
        vec![
            Attribute::Token(true),
            Attribute::Verify(true),
            Attribute::Label(label.into_bytes()),
            extra,
        ]
    };
    // DER of the namedCurve OID prime256v1.
    let p256 = vec![0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
    let (ec_pub, ec_priv) = step("C_GenerateKeyPair EC P-256 (non-extractable)", || {
        session
            .generate_key_pair(
                &Mechanism::EccKeyPairGen,
                &public(format!("demo ec {tag}"), Attribute::EcParams(p256)),
                &private(format!("demo ec {tag}")),
            )
            .map_err(e)
    })?;
    let message = b"FerroHSM signs inside";
    let sig = step("C_Sign ECDSA with SHA-256 (r||s)", || {
        session
            .sign(&Mechanism::EcdsaSha256, ec_priv, message)
            .map_err(e)
    })?;
    println!("      signature = {}", hex(&sig));
    step("C_Verify ECDSA with SHA-256", || {
        session
            .verify(&Mechanism::EcdsaSha256, ec_pub, message, &sig)
            .map_err(e)
    })?;
    let (rsa_pub, rsa_priv) = step("C_GenerateKeyPair RSA-2048 (non-extractable)", || {
        session
            .generate_key_pair(
                &Mechanism::RsaPkcsKeyPairGen,
                &public(
                    format!("demo rsa {tag}"),
                    Attribute::ModulusBits(2048.into()),
                ),
                &private(format!("demo rsa {tag}")),
            )
            .map_err(e)
    })?;
    let pss = Mechanism::Sha256RsaPkcsPss(PkcsPssParams {
        hash_alg: cryptoki::mechanism::MechanismType::SHA256,
        mgf: PkcsMgfType::MGF1_SHA256,
        s_len: 32.into(),
    });
    let sig = step("C_Sign RSA-PSS with SHA-256", || {
        session.sign(&pss, rsa_priv, message).map_err(e)
    })?;
    println!("      signature = {}…", hex(&sig[..32]));
    step("C_Verify RSA-PSS with SHA-256", || {
        session.verify(&pss, rsa_pub, message, &sig).map_err(e)
    })?;
    let mut pems = Vec::new();
    for (name, key) in [("ec", ec_pub), ("rsa", rsa_pub)] {
        let spki = step(
            &format!("C_GetAttributeValue CKA_PUBLIC_KEY_INFO ({name})"),
            || match session.get_attributes(key, &[AttributeType::PublicKeyInfo]) {
                Ok(a) => match a.into_iter().next() {
                    Some(Attribute::PublicKeyInfo(der)) if !der.is_empty() => Ok(der),
                    _ => Err("no public key info".to_string()),
                },
                Err(x) => Err(e(x)),
            },
        )?;
        pems.push((name, pem("PUBLIC KEY", &spki)));
    }
    print!("{}", pems[0].1);
    Ok(pems)
}

/// PEM armour (RFC 7468) around DER.
fn pem(label: &str, der: &[u8]) -> String {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut b64 = String::new();
    for chunk in der.chunks(3) {
        let n =
            chunk.iter().fold(0u32, |acc, &b| acc << 8 | u32::from(b)) << (8 * (3 - chunk.len()));
        for i in 0..4 {
            if i <= chunk.len() {
                b64.push(B64[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                b64.push('=');
            }
        }
    }
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// One AES-GCM encryption or decryption with a 128-bit tag.
fn gcm(
    session: &cryptoki::session::Session,
    key: cryptoki::object::ObjectHandle,
    iv: &mut [u8],
    aad: &[u8],
    data: &[u8],
    encrypt: bool,
) -> Result<Vec<u8>, String> {
    let params = cryptoki::mechanism::aead::GcmParams::new(iv, aad, 128.into()).map_err(e)?;
    let mech = Mechanism::AesGcm(params);
    if encrypt {
        session
            .encrypt(&mech, key, data)
            .map_err(|x| format!("{x:?}"))
    } else {
        session
            .decrypt(&mech, key, data)
            .map_err(|x| format!("{x:?}"))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
