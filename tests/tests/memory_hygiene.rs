//! Key material in memory (issue 15, finding 5): keys the module holds live in
//! a region that is excluded from core dumps and locked in RAM, and no copy of
//! them is left on the ordinary heap or stack for a core to catch.
//!
//! A child process (this binary in a role) loads the module, makes keys on a
//! `spec` token (so the parent can read their values back afterwards) and uses
//! them on a worker thread: an RSA-2048 key pair, an EC P-256 key pair and an
//! Ed25519 key pair for signatures, an X25519 key pair for one ECDH, then an AES-256 key generated in the token and an AES-128 key
//! imported with a random value (the child wipes its own copy), both used for
//! AES-GCM. The worker then waits, blocked right after its last key operation
//! (the AES keys' first use, which builds their schedules), so its stack and
//! registers still hold whatever the module left there. Then, with every key
//! still loaded and cached:
//!
//! - `region_is_locked_and_not_dumpable`: the child reads `/proc/self/smaps`;
//!   the region must be one 64 MiB span with `dd` (excluded from dumps) and,
//!   where `RLIMIT_MEMLOCK` allows, `lo` (locked) on its used part;
//! - `gcore_holds_no_key_material`: the child dumps itself with `gdb`'s
//!   `gcore`;
//! - `kernel_core_holds_no_key_material`: the child aborts and the kernel
//!   writes the core.
//!
//! Only after the dump does the parent learn the values (from the token, and
//! the storage key from the store with the user PIN), and it searches the core
//! for each key, for every round key of each AES key schedule and its GCM hash
//! key H, for the RSA private exponent and CRT components and the EC private
//! scalar (in both byte orders: big-endian as stored, little-endian as
//! big-integer limbs hold them), for the Ed25519 seed and the nonce prefix
//! its SHA-512 expands to, for the X25519 scalar as stored and as clamped for
//! use, and for the storage key. A test prints why it
//! skips when `gdb` is missing or the kernel writes no core here.
//!
//! Without the stack scrubbing of `secret::scope`/`secret::scrubbed` the
//! cores hold the AES schedules (spilled to the worker's stack, and in its
//! XMM registers); without the region, every key.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use aes::cipher::{BlockCipherEncrypt, KeyInit};
use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::aead::GcmParams;
use cryptoki::mechanism::rsa::{PkcsMgfType, PkcsOaepParams, PkcsOaepSource};
use cryptoki::mechanism::{Mechanism, MechanismType};
use cryptoki::object::{Attribute, AttributeType, KeyType, ObjectClass, ObjectHandle};
use cryptoki::session::Session;

use ferrohsm_tests::child::{Run, child_command, emit, find_in_path, role, run_captured};
use ferrohsm_tests::{TestEnv, module_path, p11, to_hex};

const LABEL: &str = "hygiene";
/// DER of the P-256 curve OID.
const P256_OID: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// Labels of the keys the child makes.
const GENERATED: &[u8] = b"aes256-generated";
const IMPORTED: &[u8] = b"aes128-imported";
const EC: &[u8] = b"p256";
const RSA: &[u8] = b"rsa2048";
const ED25519: &[u8] = b"ed25519";
const X25519: &[u8] = b"x25519";
/// `CKA_EC_PARAMS` of Ed25519 and X25519 (RFC 8410 OIDs).
const ED25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x70];
const X25519_OID: [u8; 5] = [0x06, 0x03, 0x2b, 0x65, 0x6e];
/// `gcore` of a debug test binary loads its symbols first: allow for it.
const DUMP_TIMEOUT: Duration = Duration::from_secs(300);
const CHILD_TIMEOUT: Duration = Duration::from_secs(600);

/// Tokens made by `C_InitToken` follow the spec's defaults (sensitive FALSE
/// allowed), so the parent can read the values back.
fn env() -> TestEnv {
    TestEnv::with_config("default_policy = \"spec\"")
}

// ---- the child ----------------------------------------------------------------------------

/// What stays alive while the dump is taken: the worker thread that made
/// and used the keys, blocked right after its last key operation (so its
/// stack still holds whatever those operations left below it), and the
/// loaded module with its cached keys.
struct Keep {
    done: std::sync::mpsc::Sender<()>,
    worker: std::thread::JoinHandle<()>,
}

impl Keep {
    fn finish(self) {
        let _ = self.done.send(());
        self.worker.join().expect("worker");
    }
}

/// Makes and uses the keys on a worker thread, which then waits, module
/// loaded and keys cached, until `Keep::finish`.
fn make_and_use_keys() -> Keep {
    let (ready_tx, ready_rx) = std::sync::mpsc::channel();
    let (done, done_rx) = std::sync::mpsc::channel::<()>();
    let worker = std::thread::spawn(move || {
        let (p, s) = work();
        ready_tx.send(()).expect("ready");
        let _ = done_rx.recv();
        drop(s);
        let _ = p.finalize();
    });
    ready_rx.recv().expect("the worker failed");
    Keep { done, worker }
}

/// Loads the module and makes and uses the keys (see the file's doc).
fn work() -> (Pkcs11, Session) {
    let p = Pkcs11::new(module_path()).expect("load module");
    p.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .expect("C_Initialize");
    let slot = p11::ready_token(&p, LABEL);
    emit("slot", slot.id());
    let s = p11::user_session(&p, slot);
    let readable = |label: &[u8]| {
        vec![
            Attribute::Token(true),
            Attribute::Private(true),
            Attribute::Label(label.to_vec()),
            Attribute::Sensitive(false),
            Attribute::Extractable(true),
        ]
    };
    // RSA and ECDSA first (signing, OAEP decryption and P-256 ECDH: the
    // private-key operations AWS-LC runs in the default build).
    let mut private = readable(RSA);
    private.extend([Attribute::Sign(true), Attribute::Decrypt(true)]);
    let (rsa_public, rsa) = s
        .generate_key_pair(
            &Mechanism::RsaPkcsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::ModulusBits(2048.into()),
                Attribute::Verify(true),
                Attribute::Encrypt(true),
            ],
            &private,
        )
        .expect("C_GenerateKeyPair RSA");
    for i in 0..3u8 {
        s.sign(&Mechanism::Sha256RsaPkcs, rsa, &[i; 100])
            .expect("C_Sign RSA");
    }
    let oaep = Mechanism::RsaPkcsOaep(PkcsOaepParams::new(
        MechanismType::SHA256,
        PkcsMgfType::MGF1_SHA256,
        PkcsOaepSource::empty(),
    ));
    for i in 0..3u8 {
        let c = s
            .encrypt(&oaep, rsa_public, &[i; 40])
            .expect("C_Encrypt RSA-OAEP");
        assert_eq!(
            s.decrypt(&oaep, rsa, &c).expect("C_Decrypt RSA-OAEP"),
            [i; 40]
        );
    }
    let mut private = readable(EC);
    private.extend([Attribute::Sign(true), Attribute::Derive(true)]);
    let (ec_public, ec) = s
        .generate_key_pair(
            &Mechanism::EccKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(P256_OID.to_vec()),
                Attribute::Verify(true),
            ],
            &private,
        )
        .expect("C_GenerateKeyPair");
    for i in 0..5u8 {
        s.sign(&Mechanism::EcdsaSha256, ec, &[i; 100])
            .expect("C_Sign ECDSA-SHA256");
        s.sign(&Mechanism::Ecdsa, ec, &[i; 32])
            .expect("C_Sign ECDSA");
    }
    // ECDH with the key's own public point (a valid P-256 point).
    let point = match s
        .get_attributes(ec_public, &[AttributeType::EcPoint])
        .expect("CKA_EC_POINT")
        .pop()
    {
        Some(Attribute::EcPoint(p)) => p,
        other => panic!("CKA_EC_POINT: {other:?}"),
    };
    let sec1 = point[2..].to_vec(); // the DER OCTET STRING's content (65 bytes)
    s.derive_key(
        &Mechanism::Ecdh1Derive(cryptoki::mechanism::elliptic_curve::Ecdh1DeriveParams::new(
            cryptoki::mechanism::elliptic_curve::EcKdf::null(),
            &sec1,
        )),
        ec,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
        ],
    )
    .expect("C_DeriveKey ECDH P-256");
    // Ed25519 signatures and one X25519 agreement.
    let mut private = readable(ED25519);
    private.push(Attribute::Sign(true));
    let (_, ed) = s
        .generate_key_pair(
            &Mechanism::EccEdwardsKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(ED25519_OID.to_vec()),
                Attribute::Verify(true),
            ],
            &private,
        )
        .expect("C_GenerateKeyPair Ed25519");
    let eddsa = Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
        cryptoki::mechanism::eddsa::EddsaSignatureScheme::Ed25519,
    ));
    // Ed25519ctx is signed by the module's own code on the expanded key.
    let eddsa_ctx = Mechanism::Eddsa(cryptoki::mechanism::eddsa::EddsaParams::new(
        cryptoki::mechanism::eddsa::EddsaSignatureScheme::Ed25519ctx(b"context"),
    ));
    for i in 0..5u8 {
        s.sign(&eddsa, ed, &[i; 100]).expect("C_Sign EdDSA");
        s.sign(&eddsa_ctx, ed, &[i; 100])
            .expect("C_Sign Ed25519ctx");
    }
    let mut private = readable(X25519);
    private.push(Attribute::Derive(true));
    let (_, x) = s
        .generate_key_pair(
            &Mechanism::EccMontgomeryKeyPairGen,
            &[
                Attribute::Token(true),
                Attribute::EcParams(X25519_OID.to_vec()),
            ],
            &private,
        )
        .expect("C_GenerateKeyPair X25519");
    let peer = [9u8; 32];
    let ecdh = Mechanism::Ecdh1Derive(cryptoki::mechanism::elliptic_curve::Ecdh1DeriveParams::new(
        cryptoki::mechanism::elliptic_curve::EcKdf::null(),
        &peer,
    ));
    s.derive_key(
        &ecdh,
        x,
        &[
            Attribute::Class(ObjectClass::SECRET_KEY),
            Attribute::KeyType(KeyType::GENERIC_SECRET),
            Attribute::ValueLen(32.into()),
        ],
    )
    .expect("C_DeriveKey X25519");
    let mut t = readable(GENERATED);
    t.extend([
        Attribute::ValueLen(32.into()),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]);
    let generated = s
        .generate_key(&Mechanism::AesKeyGen, &t)
        .expect("C_GenerateKey");

    // An imported key: the value passes through this process once and is
    // wiped here as soon as the token has it (cryptoki passes a pointer into
    // this very buffer; read_exact fills it in place).
    let mut value = vec![0u8; 16];
    File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut value))
        .expect("read /dev/urandom");
    let mut t = readable(IMPORTED);
    t.extend([
        Attribute::Class(ObjectClass::SECRET_KEY),
        Attribute::KeyType(KeyType::AES),
        Attribute::Value(value),
        Attribute::Encrypt(true),
        Attribute::Decrypt(true),
    ]);
    let imported = s.create_object(&t).expect("C_CreateObject");
    for a in &mut t {
        if let Attribute::Value(v) = a {
            v.fill(0);
            std::hint::black_box(&v);
        }
    }
    drop(t);

    // The keys' first use (which builds their schedules) comes last, so the
    // worker's stack still holds whatever it left.
    for key in [generated, imported] {
        for len in [64usize, 4096] {
            let data = vec![0x42u8; len];
            let mut iv = [7u8; 12];
            let gcm =
                Mechanism::AesGcm(GcmParams::new(&mut iv, b"aad", 128.into()).expect("GCM params"));
            let ct = s.encrypt(&gcm, key, &data).expect("C_Encrypt GCM");
            let pt = s.decrypt(&gcm, key, &ct).expect("C_Decrypt GCM");
            assert_eq!(pt, data, "GCM round trip");
        }
    }

    (p, s)
}

/// One mapping of `/proc/self/smaps`.
#[derive(Debug)]
struct Vma {
    start: usize,
    end: usize,
    name: String,
    flags: Vec<String>,
    locked_kb: usize,
}

fn parse_smaps(text: &str) -> Vec<Vma> {
    let mut out: Vec<Vma> = Vec::new();
    for line in text.lines() {
        let mut words = line.split_whitespace();
        let first = words.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) =
                (usize::from_str_radix(a, 16), usize::from_str_radix(b, 16))
        {
            out.push(Vma {
                start,
                end,
                name: words.nth(4).unwrap_or("").to_string(),
                flags: Vec::new(),
                locked_kb: 0,
            });
        } else if let Some(v) = out.last_mut() {
            match first {
                "VmFlags:" => v.flags = words.map(str::to_string).collect(),
                "Locked:" => v.locked_kb = words.next().and_then(|n| n.parse().ok()).unwrap_or(0),
                _ => {}
            }
        }
    }
    out
}

/// The key region in `smaps`: contiguous anonymous mappings marked `dd`
/// spanning exactly `REGION_BYTES` (mlock splits the region into several
/// mappings). Returns the span and its locked kB, if found.
fn find_region(smaps: &str) -> Option<(usize, usize, usize)> {
    let size = ferrohsm_pkcs11::secret::REGION_BYTES;
    let vmas = parse_smaps(smaps);
    let anon_dd = |v: &Vma| {
        v.flags.iter().any(|f| f == "dd") && (v.name.is_empty() || v.name == "[anon:ferrohsm-keys]")
    };
    let mut i = 0;
    while i < vmas.len() {
        if !anon_dd(&vmas[i]) {
            i += 1;
            continue;
        }
        let (start, mut end, mut locked) = (vmas[i].start, vmas[i].end, vmas[i].locked_kb);
        let mut j = i + 1;
        while j < vmas.len() && vmas[j].start == end && anon_dd(&vmas[j]) {
            end = vmas[j].end;
            locked += vmas[j].locked_kb;
            j += 1;
        }
        if end - start == size {
            return Some((start, end, locked));
        }
        i = j;
    }
    None
}

fn memlock_limit() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes the struct it is given.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut r) };
    assert_eq!(rc, 0, "getrlimit(RLIMIT_MEMLOCK)");
    r.rlim_cur
}

fn smaps_child() {
    let keep = make_and_use_keys();
    let smaps = std::fs::read_to_string("/proc/self/smaps").expect("read /proc/self/smaps");
    match find_region(&smaps) {
        Some((start, end, locked_kb)) => {
            emit("region", format!("{start:x}-{end:x}"));
            emit("locked_kb", locked_kb);
        }
        None => emit("region", "none"),
    }
    emit("memlock", memlock_limit());
    keep.finish();
}

/// Lets a debugger this process starts attach to it (Yama's ptrace_scope 1
/// allows only ancestors by default).
fn allow_ptrace() {
    // SAFETY: prctl with integer arguments; failure (no Yama) is harmless.
    unsafe { libc::prctl(libc::PR_SET_PTRACER, libc::PR_SET_PTRACER_ANY, 0, 0, 0) };
}

fn gcore_child() {
    let Some(gcore) = find_in_path("gcore") else {
        emit("skip", "gcore (gdb) is not installed: apt-get install gdb");
        return;
    };
    let keep = make_and_use_keys();
    allow_ptrace();
    let prefix = std::env::current_dir().unwrap().join("gcore");
    let mut cmd = Command::new(gcore);
    cmd.arg("-o")
        .arg(&prefix)
        .arg(std::process::id().to_string())
        .stdout(File::create("gcore.out").unwrap())
        .stderr(File::create("gcore.err").unwrap());
    let mut child = cmd.spawn().expect("start gcore");
    let status = ferrohsm_tests::child::wait_or_kill(&mut child, DUMP_TIMEOUT)
        .unwrap_or_else(|| panic!("gcore did not finish within {DUMP_TIMEOUT:?}"));
    let core = PathBuf::from(format!("{}.{}", prefix.display(), std::process::id()));
    if !status.success() || !core.exists() {
        let err = std::fs::read_to_string("gcore.err").unwrap_or_default();
        emit(
            "skip",
            format!(
                "gcore could not dump this process ({status}): {}",
                err.trim()
            )
            .replace('\n', " | "),
        );
        return keep.finish();
    }
    emit("core", core.display());
    keep.finish();
}

fn abort_child() {
    let keep = make_and_use_keys();
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read and write the struct they are given.
    unsafe {
        libc::getrlimit(libc::RLIMIT_CORE, &mut r);
        r.rlim_cur = r.rlim_max;
        libc::setrlimit(libc::RLIMIT_CORE, &r);
    }
    emit("core_limit", r.rlim_cur);
    emit("pid", std::process::id());
    std::hint::black_box(&keep);
    std::process::abort();
}

// ---- the parent ---------------------------------------------------------------------------

fn run_child(env: &TestEnv, test: &str, role: &str) -> Run {
    run_captured(
        env,
        child_command(env, test, role),
        b"",
        CHILD_TIMEOUT,
        &format!("child {test}/{role}"),
    )
}

/// The AES S-box, computed (FIPS-197 §5.1.1: inverse in GF(2^8), then the
/// affine map), so that no table of this file is mistaken for key material.
fn sbox() -> [u8; 256] {
    let mut s = [0u8; 256];
    let (mut p, mut q) = (1u8, 1u8);
    loop {
        p = p ^ (p << 1) ^ if p & 0x80 != 0 { 0x1b } else { 0 };
        q ^= q << 1;
        q ^= q << 2;
        q ^= q << 4;
        if q & 0x80 != 0 {
            q ^= 0x09;
        }
        s[p as usize] =
            q ^ q.rotate_left(1) ^ q.rotate_left(2) ^ q.rotate_left(3) ^ q.rotate_left(4) ^ 0x63;
        if p == 1 {
            break;
        }
    }
    s[0] = 0x63;
    s
}

/// The AES key schedule of `key` (FIPS-197 §5.2) as round keys, in the byte
/// order AES-NI implementations keep them in memory.
fn round_keys(key: &[u8]) -> Vec<[u8; 16]> {
    let s = sbox();
    let nk = key.len() / 4;
    let words = 4 * (nk + 7);
    let mut w: Vec<[u8; 4]> = key.chunks(4).map(|c| c.try_into().unwrap()).collect();
    let mut rcon = 1u8;
    for i in nk..words {
        let mut t = w[i - 1];
        if i % nk == 0 {
            t = [
                s[t[1] as usize] ^ rcon,
                s[t[2] as usize],
                s[t[3] as usize],
                s[t[0] as usize],
            ];
            rcon = (rcon << 1) ^ if rcon & 0x80 != 0 { 0x1b } else { 0 };
        } else if nk > 6 && i % nk == 4 {
            t = t.map(|b| s[b as usize]);
        }
        let prev = w[i - nk];
        w.push([
            prev[0] ^ t[0],
            prev[1] ^ t[1],
            prev[2] ^ t[2],
            prev[3] ^ t[3],
        ]);
    }
    w.chunks(4)
        .map(|r| r.concat().try_into().unwrap())
        .collect()
}

#[test]
fn aes_key_schedule_matches_fips_197() {
    let k128 = ferrohsm_tests::from_hex("2b7e151628aed2a6abf7158809cf4f3c");
    let rk = round_keys(&k128);
    assert_eq!(rk.len(), 11);
    assert_eq!(to_hex(&rk[1]), "a0fafe1788542cb123a339392a6c7605");
    assert_eq!(to_hex(&rk[10]), "d014f9a8c9ee2589e13f0cc8b6630ca6");
    let k256 = ferrohsm_tests::from_hex(
        "603deb1015ca71be2b73aef0857d77811f352c073b6108d72d9810a30914dff4",
    );
    let rk = round_keys(&k256);
    assert_eq!(rk.len(), 15);
    assert_eq!(to_hex(&rk[2]), "9ba354118e6925afa51a8b5f2067fcde");
}

/// What must not be in a core: (description, bytes).
fn needles(env: &TestEnv, slot: u64) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    // The storage key, from the store with the user PIN (no module loaded:
    // the store's file lock is free).
    {
        let (_store, _token, key) = ferrohsm_tests::open_token_store(env, slot);
        out.push(("the storage key".to_string(), key.bytes().to_vec()));
    }
    let p = env.load();
    let found = p11::slot_of(&p, LABEL);
    assert_eq!(found.id(), slot, "the token moved to another slot");
    let s = p11::user_session(&p, found);
    let attribute = |label: &[u8], ty: AttributeType| -> Vec<u8> {
        let found: Vec<ObjectHandle> = s
            .find_objects(&[Attribute::Label(label.to_vec()), Attribute::Sign(true)])
            .ok()
            .filter(|v| !v.is_empty())
            .or_else(|| s.find_objects(&[Attribute::Label(label.to_vec())]).ok())
            .unwrap_or_default();
        let h = *found
            .first()
            .unwrap_or_else(|| panic!("no key {:?}", String::from_utf8_lossy(label)));
        match s
            .get_attributes(h, &[ty])
            .expect("C_GetAttributeValue")
            .pop()
        {
            Some(
                Attribute::Value(v)
                | Attribute::PrivateExponent(v)
                | Attribute::Prime1(v)
                | Attribute::Prime2(v)
                | Attribute::Exponent1(v)
                | Attribute::Exponent2(v)
                | Attribute::Coefficient(v),
            ) => v,
            other => panic!("{ty:?} of {:?}: {other:?}", String::from_utf8_lossy(label)),
        }
    };
    let value = |label: &[u8]| attribute(label, AttributeType::Value);
    for (label, bits) in [(GENERATED, 256), (IMPORTED, 128)] {
        let key = value(label);
        assert_eq!(key.len() * 8, bits);
        out.push((format!("the AES-{bits} key"), key.clone()));
        let nk_rounds = key.len() / 16; // round keys that are the key itself
        for (r, rk) in round_keys(&key).iter().enumerate().skip(nk_rounds) {
            out.push((format!("AES-{bits} round key {r}"), rk.to_vec()));
        }
        // GCM's hash key H = E_K(0^128), which every GCM call computes.
        let mut h = aes::Block::default();
        match bits {
            256 => aes::Aes256::new_from_slice(&key)
                .unwrap()
                .encrypt_block(&mut h),
            _ => aes::Aes128::new_from_slice(&key)
                .unwrap()
                .encrypt_block(&mut h),
        }
        out.push((format!("the GHASH key H of AES-{bits}"), h.to_vec()));
    }
    for (what, ty) in [
        ("private exponent", AttributeType::PrivateExponent),
        ("prime 1", AttributeType::Prime1),
        ("prime 2", AttributeType::Prime2),
        ("exponent 1", AttributeType::Exponent1),
        ("exponent 2", AttributeType::Exponent2),
        ("CRT coefficient", AttributeType::Coefficient),
    ] {
        let mut be = attribute(RSA, ty);
        while be.first() == Some(&0) {
            be.remove(0);
        }
        let mut le = be.clone();
        le.reverse();
        out.push((format!("the RSA {what} (big-endian)"), be[..32].to_vec()));
        out.push((
            format!("the RSA {what} (little-endian limbs)"),
            le[..32].to_vec(),
        ));
    }
    let scalar = value(EC);
    assert_eq!(scalar.len(), 32);
    let mut le = scalar.clone();
    le.reverse();
    out.push(("the EC private scalar (big-endian)".into(), scalar));
    out.push(("the EC private scalar (little-endian limbs)".into(), le));
    let seed = value(ED25519);
    assert_eq!(seed.len(), 32);
    let expanded = <sha2::Sha512 as sha2::Digest>::digest(&seed);
    out.push(("the Ed25519 seed".into(), seed));
    out.push((
        "the Ed25519 nonce prefix (SHA-512 of the seed, upper half)".into(),
        expanded[32..].to_vec(),
    ));
    let scalar = value(X25519);
    assert_eq!(scalar.len(), 32);
    let mut clamped = scalar.clone();
    clamped[0] &= 248;
    clamped[31] = (clamped[31] & 127) | 64;
    out.push(("the X25519 scalar".into(), scalar));
    out.push(("the X25519 scalar, clamped".into(), clamped));
    drop(s);
    p.finalize().expect("C_Finalize");
    out
}

/// The needles found in `core`.
fn search(core: &Path, needles: &[(String, Vec<u8>)]) -> Vec<String> {
    let data = std::fs::read(core).expect("read core");
    println!("core {} ({} MiB)", core.display(), data.len() >> 20);
    // One pass: a table of the needles' first two bytes picks candidates.
    let mut first = vec![false; 1 << 16];
    for (_, n) in needles {
        first[u16::from_le_bytes([n[0], n[1]]) as usize] = true;
    }
    let mut found = vec![false; needles.len()];
    for i in 0..data.len().saturating_sub(1) {
        if !first[u16::from_le_bytes([data[i], data[i + 1]]) as usize] {
            continue;
        }
        for (k, (_, n)) in needles.iter().enumerate() {
            if data[i..].starts_with(n) {
                found[k] = true;
            }
        }
    }
    needles
        .iter()
        .zip(found)
        .filter(|(_, f)| *f)
        .map(|((what, _), _)| what.clone())
        .collect()
}

fn check_core(env: &TestEnv, slot: u64, core: &Path) {
    let needles = needles(env, slot);
    let found = search(core, &needles);
    assert!(
        found.is_empty(),
        "key material in the core dump {}: {}",
        core.display(),
        found.join(", ")
    );
    println!("none of {} needles in the core", needles.len());
}

#[test]
fn region_is_locked_and_not_dumpable() {
    if role().is_some() {
        return smaps_child();
    }
    let env = env();
    let run = run_child(&env, "region_is_locked_and_not_dumpable", "smaps");
    run.assert_success(&env);
    let region = run.value("region");
    assert_ne!(
        region,
        "none",
        "no anonymous {} MiB mapping marked dd (MADV_DONTDUMP) in /proc/self/smaps: key \
         material is dumpable",
        ferrohsm_pkcs11::secret::REGION_BYTES >> 20
    );
    assert!(
        env.log()
            .contains("key memory: 64 MiB region, excluded from core dumps"),
        "the module does not log its key memory at debug level:\n{}",
        env.log_tail(20)
    );
    for line in env.log().lines().filter(|l| l.contains("key memory")) {
        println!("module log: {line}");
    }
    let memlock: u64 = run.value("memlock").parse().unwrap();
    let locked_kb: u64 = run.value("locked_kb").parse().unwrap();
    if memlock < 64 << 10 {
        println!(
            "SKIP the lock check: RLIMIT_MEMLOCK is {memlock} bytes here, less than one 64 KiB \
             chunk, so the module cannot lock keys (it says so in its log)"
        );
    } else {
        assert!(
            locked_kb >= 64,
            "region {region}: {locked_kb} kB locked (no `lo` mapping) although RLIMIT_MEMLOCK is \
             {memlock} bytes"
        );
        println!("region {region}: dd, {locked_kb} kB locked");
    }
}

#[test]
fn gcore_holds_no_key_material() {
    if role().is_some() {
        return gcore_child();
    }
    let env = env();
    let run = run_child(&env, "gcore_holds_no_key_material", "gcore");
    run.assert_success(&env);
    if let Some(why) = run.values("skip").first() {
        println!("SKIP: {why}");
        return;
    }
    let slot = run.value("slot").parse().unwrap();
    check_core(&env, slot, Path::new(run.value("core")));
}

#[test]
fn kernel_core_holds_no_key_material() {
    if role().is_some() {
        return abort_child();
    }
    let env = env();
    let pattern = std::fs::read_to_string("/proc/sys/kernel/core_pattern").unwrap_or_default();
    let pattern = pattern.trim();
    if pattern.starts_with('|') || pattern.contains('/') {
        println!(
            "SKIP: the kernel writes cores elsewhere here (core_pattern {pattern:?}); gcore_holds_no_key_material covers the dump"
        );
        return;
    }
    let run = run_child(&env, "kernel_core_holds_no_key_material", "abort");
    assert!(
        !run.status.success(),
        "the child should have aborted\n{}",
        run.show()
    );
    let limit: u64 = run.value("core_limit").parse().unwrap();
    let pid = run.value("pid");
    let dir = env.dir.path();
    let expanded = pattern
        .replace("%p", pid)
        .replace("%e", "")
        .replace("%%", "%");
    let core = [
        dir.join(&expanded),
        dir.join(format!("core.{pid}")),
        dir.join("core"),
    ]
    .into_iter()
    .find(|p| p.is_file());
    let Some(core) = core else {
        println!(
            "SKIP: no core file from the aborted child (RLIMIT_CORE hard limit {limit}, \
             core_pattern {pattern:?})"
        );
        return;
    };
    let slot = run.value("slot").parse().unwrap();
    check_core(&env, slot, &core);
}
