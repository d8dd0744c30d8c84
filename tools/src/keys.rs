//! Key commands through the module: `keygen`, `import`, `export-public`.

use std::io::IsTerminal;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use cryptoki::mechanism::Mechanism;
use cryptoki::object::{
    Attribute, AttributeType, CertificateType, KeyType, ObjectClass, ObjectHandle,
};
use cryptoki::session::Session;
use zeroize::{Zeroize, Zeroizing};

use crate::import::{self, Material, P256_OID, P384_OID};
use crate::out::{self, hex};
use crate::p11::{Fail, Hsm, Result, ck};
use crate::select::TokenArgs;
use crate::tokens::find_labelled;
use crate::{ExportArgs, ImportArgs, KeyKind, KeygenArgs, Usage};

/// Key families, for usage defaults and checks.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    Aes,
    Ec,
    Ed25519,
    Rsa,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::Aes => "AES",
            Family::Ec => "EC",
            Family::Ed25519 => "Ed25519",
            Family::Rsa => "RSA",
        }
    }
}

/// The usage flags of a new key: the defaults of its family, or `given`
/// (checked against what the family can do).
fn usage_for(command: &str, family: Family, given: &[Usage]) -> Vec<Usage> {
    use Usage::*;
    let allowed: &[Usage] = match family {
        Family::Aes => &[Encrypt, Decrypt, Sign, Verify, Wrap, Unwrap, Derive],
        Family::Ec => &[Sign, Verify, Derive],
        Family::Ed25519 => &[Sign, Verify],
        Family::Rsa => &[Encrypt, Decrypt, Sign, Verify, Wrap, Unwrap],
    };
    if given.is_empty() {
        return match family {
            Family::Aes => vec![Encrypt, Decrypt, Wrap, Unwrap],
            Family::Ec | Family::Ed25519 => vec![Sign, Verify],
            Family::Rsa => vec![Sign, Verify, Encrypt, Decrypt],
        };
    }
    if let Some(bad) = given.iter().find(|u| !allowed.contains(u)) {
        crate::usage_error(
            command,
            &format!(
                "--usage {}: not a use of {} keys",
                name(*bad),
                family.name()
            ),
        );
    }
    let mut out: Vec<Usage> = Vec::new();
    for u in given {
        if !out.contains(u) {
            out.push(*u);
        }
    }
    out
}

/// The command-line name of a value (`ec-p256`, `sign`).
fn name(v: impl clap::ValueEnum) -> String {
    v.to_possible_value()
        .map_or_else(|| "?".to_string(), |p| p.get_name().to_string())
}

/// Usage flags as `sign,verify`.
fn usage_list(u: &[Usage]) -> String {
    u.iter().map(|x| name(*x)).collect::<Vec<_>>().join(",")
}

/// Usage flags of a secret key.
fn secret_usage(u: &[Usage]) -> Vec<Attribute> {
    vec![
        Attribute::Encrypt(u.contains(&Usage::Encrypt)),
        Attribute::Decrypt(u.contains(&Usage::Decrypt)),
        Attribute::Sign(u.contains(&Usage::Sign)),
        Attribute::Verify(u.contains(&Usage::Verify)),
        Attribute::Wrap(u.contains(&Usage::Wrap)),
        Attribute::Unwrap(u.contains(&Usage::Unwrap)),
        Attribute::Derive(u.contains(&Usage::Derive)),
    ]
}

/// Usage flags of the private half of a pair.
fn private_usage(u: &[Usage]) -> Vec<Attribute> {
    vec![
        Attribute::Decrypt(u.contains(&Usage::Decrypt)),
        Attribute::Sign(u.contains(&Usage::Sign)),
        Attribute::SignRecover(false),
        Attribute::Unwrap(u.contains(&Usage::Unwrap)),
        Attribute::Derive(u.contains(&Usage::Derive)),
    ]
}

/// Usage flags of the public half of a pair.
fn public_usage(u: &[Usage]) -> Vec<Attribute> {
    vec![
        Attribute::Encrypt(u.contains(&Usage::Encrypt)),
        Attribute::Verify(u.contains(&Usage::Verify)),
        Attribute::VerifyRecover(false),
        Attribute::Wrap(u.contains(&Usage::Wrap)),
        Attribute::Derive(false),
    ]
}

/// Attributes of every secret or private token key made here: sensitive,
/// never extractable.
fn protected(label: &str, id: Option<&[u8]>) -> Vec<Attribute> {
    let mut v = vec![
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        v.push(Attribute::Id(id.to_vec()));
    }
    v
}

/// Attributes of every public token object made here.
fn public(label: &str, id: Option<&[u8]>) -> Vec<Attribute> {
    let mut v = vec![
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Label(label.as_bytes().to_vec()),
    ];
    if let Some(id) = id {
        v.push(Attribute::Id(id.to_vec()));
    }
    v
}

/// Overwrites key material held in a template once it has been used.
fn wipe(template: &mut [Attribute]) {
    for a in template {
        match a {
            Attribute::Value(v)
            | Attribute::PrivateExponent(v)
            | Attribute::Prime1(v)
            | Attribute::Prime2(v)
            | Attribute::Exponent1(v)
            | Attribute::Exponent2(v)
            | Attribute::Coefficient(v) => v.zeroize(),
            _ => {}
        }
    }
}

/// Refuses a label already used by a key (or, for `cert`, a certificate) on
/// the token: the tool addresses objects by label.
fn refuse_taken(session: &Session, label: &str, token: &TokenArgs, cert: bool) -> Result<()> {
    for h in find_labelled(session, label, None, None)? {
        let class = session
            .get_attributes(h, &[AttributeType::Class])
            .map_err(ck("reading object class"))?;
        let taken = class.iter().any(|a| match a {
            Attribute::Class(c) if cert => *c == ObjectClass::CERTIFICATE,
            Attribute::Class(c) => [
                ObjectClass::SECRET_KEY,
                ObjectClass::PRIVATE_KEY,
                ObjectClass::PUBLIC_KEY,
            ]
            .contains(c),
            _ => false,
        });
        if taken {
            let what = if cert { "a certificate" } else { "a key" };
            return Err(Fail::Msg(format!(
                "token {token:?} already has {what} labelled {label:?} \
                 (delete it with `ferrohsm delete`, or choose another label)"
            )));
        }
    }
    Ok(())
}

/// Runs `f`, showing a spinner on stderr meanwhile when stderr is a terminal
/// (RSA key generation, backup and restore of large tokens).
pub(crate) fn with_progress<T>(what: &str, f: impl FnOnce() -> T) -> T {
    if !std::io::stderr().is_terminal() {
        return f();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let flag = Arc::clone(&stop);
    let text = what.to_string();
    let spinner = std::thread::spawn(move || {
        let frames = ['|', '/', '-', '\\'];
        let mut i = 0;
        while !flag.load(Ordering::Relaxed) {
            eprint!("\r{text} {}", frames[i % frames.len()]);
            i += 1;
            std::thread::sleep(Duration::from_millis(120));
        }
        eprint!("\r{}\r", " ".repeat(text.chars().count() + 2));
    });
    let r = f();
    stop.store(true, Ordering::Relaxed);
    let _ = spinner.join();
    r
}

/// Reads `CKA_PUBLIC_KEY_INFO` (SubjectPublicKeyInfo DER) of an object.
fn spki_of(session: &Session, h: ObjectHandle) -> Result<Option<Vec<u8>>> {
    let attrs = session
        .get_attributes(h, &[AttributeType::PublicKeyInfo])
        .map_err(ck("reading CKA_PUBLIC_KEY_INFO"))?;
    Ok(attrs.into_iter().find_map(|a| match a {
        Attribute::PublicKeyInfo(d) if !d.is_empty() => Some(d),
        _ => None,
    }))
}

/// Gives both halves of a new pair the key identifier of the public key
/// (unless an id was given); on failure removes the pair.
fn set_pair_id(session: &Session, public: ObjectHandle, private: ObjectHandle) -> Result<Vec<u8>> {
    let result = (|| {
        let spki =
            spki_of(session, public)?.ok_or("the new public key has no CKA_PUBLIC_KEY_INFO")?;
        let id =
            import::key_id(&spki).ok_or("the new public key's CKA_PUBLIC_KEY_INFO is malformed")?;
        for h in [public, private] {
            session
                .update_attributes(h, &[Attribute::Id(id.clone())])
                .map_err(ck("setting CKA_ID"))?;
        }
        Ok(id)
    })();
    if result.is_err() {
        let _ = session.destroy_object(private);
        let _ = session.destroy_object(public);
    }
    result
}

/// `ferrohsm keygen`.
pub fn keygen(a: &KeygenArgs) -> Result<()> {
    let family = match a.kind {
        KeyKind::Aes128 | KeyKind::Aes192 | KeyKind::Aes256 => Family::Aes,
        KeyKind::EcP256 | KeyKind::EcP384 => Family::Ec,
        KeyKind::Rsa2048 | KeyKind::Rsa3072 | KeyKind::Rsa4096 => Family::Rsa,
    };
    let usage = usage_for("keygen", family, &a.usage);
    let kind = name(a.kind);
    let hsm = Hsm::load()?;
    let session = hsm.user_session(&a.token, true, &a.pin)?;
    refuse_taken(&session, &a.label, &a.token, false)?;
    let id = a.id.as_ref().map(|h| h.0.as_slice());
    let failed = format!("generating {kind} key {:?}", a.label);
    let id_shown = match a.kind {
        KeyKind::Aes128 | KeyKind::Aes192 | KeyKind::Aes256 => {
            let bytes: u64 = match a.kind {
                KeyKind::Aes128 => 16,
                KeyKind::Aes192 => 24,
                _ => 32,
            };
            let mut t = protected(&a.label, id);
            t.push(Attribute::Class(ObjectClass::SECRET_KEY));
            t.push(Attribute::KeyType(KeyType::AES));
            t.push(Attribute::ValueLen(bytes.into()));
            t.extend(secret_usage(&usage));
            session
                .generate_key(&Mechanism::AesKeyGen, &t)
                .map_err(ck(&failed))?;
            id.map(hex)
        }
        _ => {
            let mut pubt = public(&a.label, id);
            let mut privt = protected(&a.label, id);
            pubt.extend(public_usage(&usage));
            privt.extend(private_usage(&usage));
            let (mech, what) = match a.kind {
                KeyKind::EcP256 => {
                    pubt.push(Attribute::EcParams(P256_OID.to_vec()));
                    (Mechanism::EccKeyPairGen, None)
                }
                KeyKind::EcP384 => {
                    pubt.push(Attribute::EcParams(P384_OID.to_vec()));
                    (Mechanism::EccKeyPairGen, None)
                }
                _ => {
                    let bits: u64 = match a.kind {
                        KeyKind::Rsa2048 => 2048,
                        KeyKind::Rsa3072 => 3072,
                        _ => 4096,
                    };
                    pubt.push(Attribute::ModulusBits(bits.into()));
                    pubt.push(Attribute::PublicExponent(vec![1, 0, 1]));
                    (
                        Mechanism::RsaPkcsKeyPairGen,
                        Some(format!("generating an RSA-{bits} key pair")),
                    )
                }
            };
            let generate = || session.generate_key_pair(&mech, &pubt, &privt);
            let (pub_h, priv_h) = match what {
                Some(w) => with_progress(&w, generate),
                None => generate(),
            }
            .map_err(ck(&failed))?;
            match id {
                Some(id) => Some(hex(id)),
                None => Some(hex(&set_pair_id(&session, pub_h, priv_h)?)),
            }
        }
    };
    out::stdout(&format!(
        "generated {kind} key {:?} on token {:?}{} (sensitive, non-extractable; usage {})\n",
        a.label,
        a.token,
        id_shown.map_or_else(String::new, |i| format!(", id {i}")),
        usage_list(&usage)
    ))
}

/// `CKA_CERTIFICATE_CATEGORY` (cryptoki 0.12 has no variant for it; a raw
/// attribute carries it, a native-endian `CK_ULONG`).
fn certificate_category(category: u64) -> Attribute {
    const CKA_CERTIFICATE_CATEGORY: u64 = 0x87;
    Attribute::VendorDefined((
        AttributeType::VendorDefined(CKA_CERTIFICATE_CATEGORY),
        category.to_ne_bytes().to_vec(),
    ))
}

/// `CK_CERTIFICATE_CATEGORY_TOKEN_USER`: the certificate of a key in the token.
const CATEGORY_TOKEN_USER: u64 = 1;
/// `CK_CERTIFICATE_CATEGORY_AUTHORITY`: a CA certificate.
const CATEGORY_AUTHORITY: u64 = 2;

/// One object `import` makes: what it is (for the report), its label and
/// its template.
struct Made {
    what: String,
    label: String,
    id: Option<Vec<u8>>,
    template: Vec<Attribute>,
}

/// The template of a certificate object; `category` when known (a lone
/// certificate's is not: it stays unspecified).
fn cert_template(
    label: &str,
    id: Option<&[u8]>,
    der: &[u8],
    category: Option<u64>,
) -> Vec<Attribute> {
    let mut t = public(label, id);
    t.extend([
        Attribute::Class(ObjectClass::CERTIFICATE),
        Attribute::CertificateType(CertificateType::X_509),
        Attribute::Value(der.to_vec()),
    ]);
    t.extend(category.map(certificate_category));
    t
}

/// The objects of one key (`Material` other than a certificate): the
/// private or secret key first, then the public key.
fn key_objects(material: &Material, label: &str, id: Option<&[u8]>, usage: &[Usage]) -> Vec<Made> {
    let made = |what: &str, template| Made {
        what: what.to_string(),
        label: label.to_string(),
        id: id.map(<[u8]>::to_vec),
        template,
    };
    match material {
        Material::Aes(v) => {
            let mut t = protected(label, id);
            t.push(Attribute::Class(ObjectClass::SECRET_KEY));
            t.push(Attribute::KeyType(KeyType::AES));
            t.push(Attribute::Value(v.to_vec()));
            t.extend(secret_usage(usage));
            vec![made(material.kind(), t)]
        }
        Material::Rsa {
            n,
            e,
            private: [d, p, q, dp, dq, qinv],
            ..
        } => {
            let mut t = protected(label, id);
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
                Attribute::PrivateExponent(d.to_vec()),
                Attribute::Prime1(p.to_vec()),
                Attribute::Prime2(q.to_vec()),
                Attribute::Exponent1(dp.to_vec()),
                Attribute::Exponent2(dq.to_vec()),
                Attribute::Coefficient(qinv.to_vec()),
            ]);
            t.extend(private_usage(usage));
            let mut pt = public(label, id);
            pt.extend([
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::RSA),
                Attribute::Modulus(n.clone()),
                Attribute::PublicExponent(e.clone()),
            ]);
            pt.extend(public_usage(usage));
            vec![made(material.kind(), t), made("public key", pt)]
        }
        Material::Ec {
            params,
            scalar,
            point,
            ..
        } => {
            let mut t = protected(label, id);
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(params.to_vec()),
                Attribute::Value(scalar.to_vec()),
            ]);
            t.extend(private_usage(usage));
            let mut pt = public(label, id);
            pt.extend([
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC),
                Attribute::EcParams(params.to_vec()),
                Attribute::EcPoint(point.clone()),
            ]);
            pt.extend(public_usage(usage));
            vec![made(material.kind(), t), made("public key", pt)]
        }
        Material::Ed25519 { seed, point, .. } => {
            let mut t = protected(label, id);
            t.extend([
                Attribute::Class(ObjectClass::PRIVATE_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::EcParams(import::ED25519_OID.to_vec()),
                Attribute::Value(seed.to_vec()),
            ]);
            t.extend(private_usage(usage));
            let mut pt = public(label, id);
            pt.extend([
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(KeyType::EC_EDWARDS),
                Attribute::EcParams(import::ED25519_OID.to_vec()),
                Attribute::EcPoint(point.clone()),
            ]);
            pt.extend(public_usage(usage));
            vec![made(material.kind(), t), made("public key", pt)]
        }
        Material::Cert { der, .. } => {
            vec![made(material.kind(), cert_template(label, id, der, None))]
        }
    }
}

/// `ferrohsm import`. A PEM file with one private key and certificates is
/// a key with its chain: the certificate of the key gets the key's label
/// and `CKA_ID`; the others are CA certificates (`CKA_CERTIFICATE_CATEGORY`
/// authority) labelled `LABEL-ca1`, `LABEL-ca2`, ... in file order, each
/// with its own key identifier as `CKA_ID`. Anything else with several
/// blocks is refused, with the count. All or nothing: a failure removes
/// what this run made.
pub fn import(a: &ImportArgs) -> Result<()> {
    let bytes = Zeroizing::new(
        std::fs::read(&a.file).map_err(|e| format!("cannot read {}: {e}", a.file.display()))?,
    );
    let file = a.file.display();
    let materials = import::parse_all(&bytes, a.aes).map_err(|m| format!("{file}: {m}"))?;
    let certs = materials
        .iter()
        .filter(|m| matches!(m, Material::Cert { .. }))
        .count();
    let keys = materials.len() - certs;
    if materials.len() > 1 && keys != 1 {
        return Err(Fail::Msg(format!(
            "{file} holds {keys} private key(s) and {certs} certificate(s): import takes one key, \
             one certificate, or one private key with its certificate chain \
             (split the file, e.g. with `openssl x509` / `openssl pkey`)"
        )));
    }
    // The key (or the lone certificate) comes first.
    let (main, chain): (Vec<&Material>, Vec<&Material>) = materials
        .iter()
        .partition(|m| materials.len() == 1 || !matches!(m, Material::Cert { .. }));
    let main = main[0];
    let family = match main {
        Material::Rsa { .. } => Some(Family::Rsa),
        Material::Ec { .. } => Some(Family::Ec),
        Material::Ed25519 { .. } => Some(Family::Ed25519),
        Material::Aes(_) => Some(Family::Aes),
        Material::Cert { .. } => None,
    };
    let usage = match family {
        Some(f) => usage_for("import", f, &a.usage),
        None if a.usage.is_empty() => Vec::new(),
        None => crate::usage_error("import", "--usage does not apply to certificates"),
    };
    let id = a.id.clone().map(|h| h.0).or_else(|| main.default_id());
    let id = id.as_deref();
    let mut objects = key_objects(main, &a.label, id, &usage);
    // The certificate of the key: same public key.
    let leaf = chain.iter().position(|c| c.spki() == main.spki());
    if !chain.is_empty() && leaf.is_none() {
        return Err(Fail::Msg(format!(
            "{file}: none of its {certs} certificate(s) is for its private key \
             (a chain starts with the key's own certificate)"
        )));
    }
    let mut ca_number = 0;
    for (i, c) in chain.iter().enumerate() {
        let Material::Cert { der, .. } = c else {
            continue;
        };
        if Some(i) == leaf {
            objects.push(Made {
                what: "certificate".into(),
                label: a.label.clone(),
                id: id.map(<[u8]>::to_vec),
                template: cert_template(&a.label, id, der, Some(CATEGORY_TOKEN_USER)),
            });
        } else {
            ca_number += 1;
            let label = format!("{}-ca{ca_number}", a.label);
            let ca_id = c.default_id();
            objects.push(Made {
                what: "CA certificate".into(),
                template: cert_template(&label, ca_id.as_deref(), der, Some(CATEGORY_AUTHORITY)),
                label,
                id: ca_id,
            });
        }
    }
    let hsm = Hsm::load()?;
    let session = hsm.user_session(&a.token, true, &a.pin)?;
    let is_cert = matches!(main, Material::Cert { .. });
    refuse_taken(&session, &a.label, &a.token, is_cert)?;
    if !chain.is_empty() {
        refuse_taken(&session, &a.label, &a.token, true)?;
    }
    for o in objects.iter().filter(|o| o.label != a.label) {
        refuse_taken(&session, &o.label, &a.token, true)?;
    }
    let mut made: Vec<ObjectHandle> = Vec::new();
    let mut failure = None;
    for o in &mut objects {
        let r = session.create_object(&o.template);
        wipe(&mut o.template);
        match r {
            Ok(h) => made.push(h),
            Err(e) => {
                failure = Some(ck(format!("importing {} as {:?}", o.what, o.label))(e));
                break;
            }
        }
    }
    if let Some(f) = failure {
        for h in made.into_iter().rev() {
            let _ = session.destroy_object(h);
        }
        for o in &mut objects {
            wipe(&mut o.template);
        }
        return Err(f);
    }
    let protection = if is_cert {
        "public".to_string()
    } else {
        format!("sensitive, non-extractable; usage {}", usage_list(&usage))
    };
    let mut text = String::new();
    for o in &objects {
        text.push_str(&format!(
            "imported {} {:?} into token {:?}{}{}\n",
            o.what,
            o.label,
            a.token,
            o.id.as_deref()
                .map_or_else(String::new, |i| format!(", id {}", hex(i))),
            if o.what == main.kind() {
                format!(" ({protection})")
            } else {
                String::new()
            }
        ));
    }
    out::stdout(&text)
}

/// Writes `pem` to `--out` (refusing an existing file unless `--force`,
/// as `backup` does) or to standard output.
fn write_pem(a: &ExportArgs, pem: &str) -> Result<()> {
    use std::io::Write;
    let Some(path) = &a.out else {
        return out::stdout(pem);
    };
    let mut options = std::fs::OpenOptions::new();
    options.write(true);
    if a.force {
        options.create(true).truncate(true);
    } else {
        options.create_new(true);
    }
    let mut f = options.open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::AlreadyExists => Fail::Msg(format!(
            "{} already exists: not overwriting it (add --force to replace it)",
            path.display()
        )),
        _ => Fail::Msg(format!("cannot write {}: {e}", path.display())),
    })?;
    f.write_all(pem.as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(|e| Fail::Msg(format!("cannot write {}: {e}", path.display())))
}

/// `ferrohsm export-public`: the public key (or the certificate's key)
/// labelled so, as SubjectPublicKeyInfo PEM. Needs no login.
pub fn export_public(a: &ExportArgs) -> Result<()> {
    let hsm = Hsm::load()?;
    let session = hsm.session(&a.token, false)?;
    let id = a.id.as_ref().map(|h| h.0.as_slice());
    let mut found = find_labelled(&session, &a.label, id, Some(ObjectClass::PUBLIC_KEY))?;
    if found.is_empty() {
        found = find_labelled(&session, &a.label, id, Some(ObjectClass::CERTIFICATE))?;
    }
    let mut spkis: Vec<Vec<u8>> = Vec::new();
    for h in found {
        if let Some(s) = spki_of(&session, h)?
            && !spkis.contains(&s)
        {
            spkis.push(s);
        }
    }
    let spki = match spkis.len() {
        0 => {
            return Err(Fail::Msg(format!(
                "no public key or certificate labelled {:?}{} on token {:?}",
                a.label,
                id.map_or_else(String::new, |i| format!(" with id {}", hex(i))),
                a.token
            )));
        }
        1 => spkis.remove(0),
        n => {
            return Err(Fail::Msg(format!(
                "{n} different public keys are labelled {:?} on token {:?}: choose one with --id",
                a.label, a.token
            )));
        }
    };
    let pem = der::pem::encode_string("PUBLIC KEY", der::pem::LineEnding::LF, &spki)
        .map_err(|e| format!("encoding PEM: {e}"))?;
    write_pem(a, &pem)
}

/// `ferrohsm export-cert`: the certificate labelled so, as PEM. Needs no
/// login (certificates are public objects).
pub fn export_cert(a: &ExportArgs) -> Result<()> {
    let hsm = Hsm::load()?;
    let session = hsm.session(&a.token, false)?;
    let id = a.id.as_ref().map(|h| h.0.as_slice());
    let found = find_labelled(&session, &a.label, id, Some(ObjectClass::CERTIFICATE))?;
    let mut certs: Vec<Vec<u8>> = Vec::new();
    for h in found {
        let value = session
            .get_attributes(h, &[AttributeType::Value])
            .map_err(ck("reading the certificate"))?
            .into_iter()
            .find_map(|a| match a {
                Attribute::Value(v) if !v.is_empty() => Some(v),
                _ => None,
            });
        if let Some(v) = value
            && !certs.contains(&v)
        {
            certs.push(v);
        }
    }
    let cert = match certs.len() {
        0 => {
            return Err(Fail::Msg(format!(
                "no certificate labelled {:?}{} on token {:?} (`ferrohsm objects` lists them)",
                a.label,
                id.map_or_else(String::new, |i| format!(" with id {}", hex(i))),
                a.token
            )));
        }
        1 => certs.remove(0),
        n => {
            return Err(Fail::Msg(format!(
                "{n} different certificates are labelled {:?} on token {:?}: choose one with --id",
                a.label, a.token
            )));
        }
    };
    let pem = der::pem::encode_string("CERTIFICATE", der::pem::LineEnding::LF, &cert)
        .map_err(|e| format!("encoding PEM: {e}"))?;
    write_pem(a, &pem)
}
