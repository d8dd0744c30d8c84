//! Black-box checks of FerroHSM's symmetric mechanisms through the raw C ABI of the
//! real shared library: known-answer vectors (NIST SP 800-38A/B/D, McGrew–Viega GCM,
//! RFC 3394, RFC 5649, RFC 4493, RFC 4231, RFC 2202) kept under `tests/vectors/`,
//! cross-checks against the `openssl` CLI, a seeded multi-part == single-part
//! property test, size queries, the error codes of PKCS#11 v3.0, and key generation.

use std::collections::HashMap;
use std::path::Path;
use std::process::Command;
use std::ptr;

use cryptoki_sys::*;
use ferrohsm_tests::mech::Mech;
use ferrohsm_tests::raw::{V, b, check, err, ok, rv_name, secret_key_template};
use ferrohsm_tests::tok::{Dir, Tok};
use ferrohsm_tests::{Rng, TestEnv, ck, from_hex, to_hex};
use sha1::Digest;

// ---------------------------------------------------------------------------
// templates and mechanisms
// ---------------------------------------------------------------------------

fn mechs_bytes(list: &[CK_MECHANISM_TYPE]) -> Vec<u8> {
    list.iter().flat_map(|m| m.to_ne_bytes()).collect()
}

fn plain(t: CK_MECHANISM_TYPE) -> Mech {
    Mech::Bytes(t, Vec::new())
}
fn cbc(iv: &[u8]) -> Mech {
    Mech::Bytes(CKM_AES_CBC, iv.to_vec())
}
fn cbc_pad(iv: &[u8]) -> Mech {
    Mech::Bytes(CKM_AES_CBC_PAD, iv.to_vec())
}
fn gcm(iv: &[u8], aad: &[u8], tag_bits: CK_ULONG) -> Mech {
    Mech::GcmFull {
        iv: iv.to_vec(),
        aad: aad.to_vec(),
        tag_bits,
    }
}

// ---------------------------------------------------------------------------
// a logged-in session and operations on it
// ---------------------------------------------------------------------------

/// The token of these tests.
type Hsm = Tok;

/// A fresh test process with the token of these tests and a user session.
fn hsm() -> (TestEnv, Hsm) {
    let env = TestEnv::new();
    (env, Tok::ready("symmetric"))
}

/// The four `C_*Init` of a key operation.
#[derive(Clone, Copy, Debug)]
enum Init {
    Encrypt,
    Decrypt,
    Sign,
    Verify,
}

impl Init {
    /// `C_{self}Init` with `mech` and `key`.
    fn call(self, h: &Hsm, mech: &Mech, key: CK_OBJECT_HANDLE) -> CK_RV {
        match self {
            Init::Encrypt => h.crypt_init(Dir::Enc, mech, key),
            Init::Decrypt => h.crypt_init(Dir::Dec, mech, key),
            Init::Sign => h.sign_init(mech, key),
            Init::Verify => h.verify_init(mech, key),
        }
    }
}

/// The session secret keys these tests import, and the AES check block.
trait Keys {
    /// Imports a session secret key usable for every operation.
    fn import(&self, kt: CK_KEY_TYPE, value: &[u8]) -> CK_OBJECT_HANDLE;
    /// `import` of an AES key.
    fn aes(&self, value: &[u8]) -> CK_OBJECT_HANDLE {
        self.import(CKK_AES, value)
    }
    /// `import` of a generic secret.
    fn generic(&self, value: &[u8]) -> CK_OBJECT_HANDLE {
        self.import(CKK_GENERIC_SECRET, value)
    }
    /// Encrypts the zero block with CKM_AES_ECB (first 3 bytes = AES check value).
    fn zero_block(&self, key: CK_OBJECT_HANDLE) -> Vec<u8>;
}

impl Keys for Tok {
    fn import(&self, kt: CK_KEY_TYPE, value: &[u8]) -> CK_OBJECT_HANDLE {
        ok(
            self.create(secret_key_template(kt, value, vec![b(CKA_TOKEN, false)])),
            &format!(
                "C_CreateObject secret key type {kt:#x} of {} bytes",
                value.len()
            ),
        )
    }
    fn zero_block(&self, key: CK_OBJECT_HANDLE) -> Vec<u8> {
        ok(
            self.crypt(Dir::Enc, &plain(CKM_AES_ECB), key, &[0u8; 16]),
            "AES_ECB of the zero block",
        )
    }
}

// ---------------------------------------------------------------------------
// vector files, PRNG, openssl
// ---------------------------------------------------------------------------

/// One record of a vector file: `name = value` lines, records separated by blank
/// lines, `#` comments.
struct Rec(HashMap<String, String>);

impl Rec {
    fn name(&self) -> &str {
        self.0.get("name").map(|s| s.as_str()).unwrap_or("?")
    }
    fn hex(&self, k: &str) -> Vec<u8> {
        from_hex(
            self.0
                .get(k)
                .unwrap_or_else(|| panic!("vector {:?} lacks field {k}", self.name())),
        )
    }
    fn get(&self, k: &str) -> &str {
        self.0
            .get(k)
            .unwrap_or_else(|| panic!("vector {:?} lacks field {k}", self.name()))
    }
}

fn vectors(file: &str) -> Vec<Rec> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("vectors")
        .join(file);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    let mut recs = Vec::new();
    let mut cur = HashMap::new();
    for line in text.lines().map(str::trim).chain(std::iter::once("")) {
        if line.starts_with('#') {
            continue;
        }
        if line.is_empty() {
            if !cur.is_empty() {
                recs.push(Rec(std::mem::take(&mut cur)));
            }
            continue;
        }
        let (k, v) = line
            .split_once('=')
            .unwrap_or_else(|| panic!("{file}: bad line {line:?}"));
        cur.insert(k.trim().to_string(), v.trim().to_string());
    }
    assert!(!recs.is_empty(), "{file}: no vectors");
    recs
}

/// Runs `openssl` with `input` in a file given as `-in`; returns stdout.
fn openssl(env: &TestEnv, args: &[&str], input: &[u8]) -> Vec<u8> {
    let inp = env.dir.path().join("openssl-in.bin");
    std::fs::write(&inp, input).expect("write openssl input");
    let out = Command::new("openssl")
        .arg(args[0])
        .arg("-in")
        .arg(&inp)
        .args(&args[1..])
        .output()
        .expect("run openssl (install the openssl CLI)");
    assert!(
        out.status.success(),
        "openssl {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// `openssl enc` AES-ECB of one zero block under `key` (its first three
/// bytes are the key's `CKA_CHECK_VALUE`).
fn openssl_aes_zero_block(env: &TestEnv, key: &[u8]) -> Vec<u8> {
    openssl(
        env,
        &[
            "enc",
            &format!("-aes-{}-ecb", key.len() * 8),
            "-nopad",
            "-K",
            &to_hex(key),
        ],
        &[0u8; 16],
    )
}

/// Parses the hex line `openssl mac` prints.
/// `openssl mac {alg} -{param} {value} -macopt hexkey:{key}` of `input`.
fn openssl_mac(
    env: &TestEnv,
    alg: &str,
    (param, value): (&str, &str),
    key: &[u8],
    input: &[u8],
) -> Vec<u8> {
    let hexkey = format!("hexkey:{}", to_hex(key));
    let args = ["mac", param, value, "-macopt", &hexkey, alg];
    let out = openssl(env, &args, input);
    from_hex(
        String::from_utf8(out)
            .expect("openssl mac output is text")
            .trim()
            .to_lowercase()
            .as_str(),
    )
}

const HASHES: &[(&str, CK_MECHANISM_TYPE, CK_MECHANISM_TYPE, usize)] = &[
    ("1", CKM_SHA_1_HMAC, CKM_SHA_1_HMAC_GENERAL, 20),
    ("224", CKM_SHA224_HMAC, CKM_SHA224_HMAC_GENERAL, 28),
    ("256", CKM_SHA256_HMAC, CKM_SHA256_HMAC_GENERAL, 32),
    ("384", CKM_SHA384_HMAC, CKM_SHA384_HMAC_GENERAL, 48),
    ("512", CKM_SHA512_HMAC, CKM_SHA512_HMAC_GENERAL, 64),
];

// ---------------------------------------------------------------------------
// known-answer tests
// ---------------------------------------------------------------------------

/// Checks one cipher vector: single-part and split multi-part, both directions.
fn cipher_kat(h: &Hsm, name: &str, mech: &Mech, key: CK_OBJECT_HANDLE, pt: &[u8], ct: &[u8]) {
    let got = ok(
        h.crypt(Dir::Enc, mech, key, pt),
        &format!("{name}: C_Encrypt"),
    );
    assert_eq!(to_hex(&got), to_hex(ct), "{name}: C_Encrypt output");
    let got = ok(
        h.crypt(Dir::Dec, mech, key, ct),
        &format!("{name}: C_Decrypt"),
    );
    assert_eq!(to_hex(&got), to_hex(pt), "{name}: C_Decrypt output");
    let cuts = [1, pt.len() / 2 + 3, pt.len().saturating_sub(1)];
    let got = ok(
        h.crypt_multi(Dir::Enc, mech, key, pt, &cuts),
        &format!("{name}: multi-part encrypt"),
    );
    assert_eq!(
        to_hex(&got),
        to_hex(ct),
        "{name}: multi-part encrypt output"
    );
    let cuts = [5, ct.len() / 2, ct.len().saturating_sub(2)];
    let got = ok(
        h.crypt_multi(Dir::Dec, mech, key, ct, &cuts),
        &format!("{name}: multi-part decrypt"),
    );
    assert_eq!(
        to_hex(&got),
        to_hex(pt),
        "{name}: multi-part decrypt output"
    );
}

#[test]
fn kat_sp800_38a_ecb_cbc_ctr() {
    let (_env, h) = hsm();
    let mut count = 0;
    let ecb: fn(&Rec) -> Mech = |_| plain(CKM_AES_ECB);
    let cbc_iv: fn(&Rec) -> Mech = |r| cbc(&r.hex("iv"));
    for (file, mech) in [("aes_ecb.txt", ecb), ("aes_cbc.txt", cbc_iv)] {
        for r in vectors(file) {
            let key = h.aes(&r.hex("key"));
            let (pt, ct) = (r.hex("pt"), r.hex("ct"));
            cipher_kat(&h, r.name(), &mech(&r), key, &pt, &ct);
            count += 1;
        }
    }
    for r in vectors("aes_ctr.txt") {
        let key = h.aes(&r.hex("key"));
        let cb: [u8; 16] = r.hex("counter").try_into().expect("16-byte counter");
        let (pt, ct) = (r.hex("pt"), r.hex("ct"));
        cipher_kat(&h, r.name(), &Mech::Ctr(128, cb), key, &pt, &ct);
        // CTR is a stream mode: a prefix of any length must match.
        let got = ok(
            h.crypt(Dir::Enc, &Mech::Ctr(128, cb), key, &pt[..37]),
            "CTR 37-byte prefix",
        );
        assert_eq!(got, ct[..37], "{}: CTR 37-byte prefix", r.name());
        // A 64-bit counter field gives the same result when it does not wrap.
        cipher_kat(&h, r.name(), &Mech::Ctr(64, cb), key, &pt, &ct);
        count += 1;
    }
    println!("SP 800-38A vectors run: {count} (each encrypt+decrypt, single- and multi-part)");
    assert_eq!(count, 6);
}

#[test]
fn kat_gcm_mcgrew_viega() {
    let (_env, h) = hsm();
    let mut count = 0;
    for r in vectors("gcm.txt") {
        let name = r.name();
        let key = h.aes(&r.hex("key"));
        let (iv, aad, pt) = (r.hex("iv"), r.hex("aad"), r.hex("pt"));
        let mut ct = r.hex("ct");
        let tag = r.hex("tag");
        ct.extend(&tag);
        let m48 = gcm(&iv, &aad, 128);
        let m40 = Mech::Gcm40 {
            iv: iv.clone(),
            aad: aad.clone(),
            tag_bits: 128,
        };
        cipher_kat(&h, &format!("{name} (48-byte params)"), &m48, key, &pt, &ct);
        cipher_kat(&h, &format!("{name} (40-byte params)"), &m40, key, &pt, &ct);
        // Truncated tags: 96 and 32 bits are prefixes of the full tag.
        for bits in [96usize, 32] {
            let mut want = r.hex("ct");
            want.extend(&tag[..bits / 8]);
            let m = gcm(&iv, &aad, bits as CK_ULONG);
            let got = ok(
                h.crypt(Dir::Enc, &m, key, &pt),
                &format!("{name}: {bits}-bit tag encrypt"),
            );
            assert_eq!(to_hex(&got), to_hex(&want), "{name}: {bits}-bit tag");
            let got = ok(
                h.crypt(Dir::Dec, &m, key, &want),
                &format!("{name}: {bits}-bit tag decrypt"),
            );
            assert_eq!(got, pt, "{name}: {bits}-bit tag decrypt");
        }
        // The decrypt size query is exact.
        check(
            h.crypt_init(Dir::Dec, &m48, key),
            CKR_OK,
            "C_DecryptInit GCM",
        );
        let (rv, n) = h.once_raw(Dir::Dec, &ct, None);
        check(rv, CKR_OK, "C_Decrypt GCM size query");
        assert_eq!(n, pt.len(), "{name}: GCM decrypt size query must be exact");
        let got = ok(h.once(Dir::Dec, &ct), "C_Decrypt GCM after query");
        assert_eq!(got, pt);
        count += 1;
    }
    println!(
        "GCM vectors run: {count} (48- and 40-byte CK_GCM_PARAMS, tags 128/96/32, single/multi-part)"
    );
    assert_eq!(count, 12);
}

#[test]
fn kat_rfc3394_rfc5649_key_wrap() {
    let (_env, h) = hsm();
    let mut count = 0;
    for (file, mech) in [
        ("aes_kw.txt", CKM_AES_KEY_WRAP),
        ("aes_kwp.txt", CKM_AES_KEY_WRAP_KWP),
    ] {
        for r in vectors(file) {
            let key = h.aes(&r.hex("kek"));
            let (pt, ct) = (r.hex("pt"), r.hex("ct"));
            let m = plain(mech);
            let got = ok(
                h.crypt(Dir::Enc, &m, key, &pt),
                &format!("{}: C_Encrypt", r.name()),
            );
            assert_eq!(to_hex(&got), to_hex(&ct), "{}: wrap", r.name());
            let got = ok(
                h.crypt(Dir::Dec, &m, key, &ct),
                &format!("{}: C_Decrypt", r.name()),
            );
            assert_eq!(to_hex(&got), to_hex(&pt), "{}: unwrap", r.name());
            let got = ok(
                h.crypt_multi(Dir::Enc, &m, key, &pt, &[3, 9]),
                &format!("{}: multi-part wrap", r.name()),
            );
            assert_eq!(to_hex(&got), to_hex(&ct), "{}: multi-part wrap", r.name());
            let got = ok(
                h.crypt_multi(Dir::Dec, &m, key, &ct, &[8, 13]),
                &format!("{}: multi-part unwrap", r.name()),
            );
            assert_eq!(to_hex(&got), to_hex(&pt), "{}: multi-part unwrap", r.name());
            // Integrity check: a flipped bit must be detected.
            let mut bad = ct.clone();
            bad[ct.len() - 1] ^= 1;
            err(
                h.crypt(Dir::Dec, &m, key, &bad),
                CKR_ENCRYPTED_DATA_INVALID,
                &format!("{}: unwrap of corrupted data", r.name()),
            );
            count += 1;
        }
    }
    println!("key wrap vectors run: {count} (RFC 3394: 6, RFC 5649: 2)");
    assert_eq!(count, 8);
}

#[test]
fn kat_cmac_rfc4493_sp800_38b() {
    let (_env, h) = hsm();
    let mut count = 0;
    for r in vectors("cmac.txt") {
        let name = r.name();
        let key = h.aes(&r.hex("key"));
        let (msg, mac) = (r.hex("msg"), r.hex("mac"));
        let m = plain(CKM_AES_CMAC);
        let got = ok(h.sign(&m, key, &msg), &format!("{name}: C_Sign"));
        assert_eq!(to_hex(&got), to_hex(&mac), "{name}: CMAC");
        let got = ok(
            h.sign_multi(&m, key, &msg, &[7, 16, 17]),
            &format!("{name}: multi-part sign"),
        );
        assert_eq!(to_hex(&got), to_hex(&mac), "{name}: multi-part CMAC");
        check(
            h.verify(&m, key, &msg, &mac),
            CKR_OK,
            &format!("{name}: C_Verify"),
        );
        check(
            h.verify_multi(&m, key, &msg, &[16, 32], &mac),
            CKR_OK,
            &format!("{name}: C_VerifyFinal"),
        );
        for len in [16usize, 8, 4] {
            let g = Mech::General(CKM_AES_CMAC_GENERAL, len as CK_ULONG);
            let got = ok(
                h.sign(&g, key, &msg),
                &format!("{name}: CMAC_GENERAL {len}"),
            );
            assert_eq!(
                to_hex(&got),
                to_hex(&mac[..len]),
                "{name}: CMAC_GENERAL {len}"
            );
            check(
                h.verify(&g, key, &msg, &mac[..len]),
                CKR_OK,
                &format!("{name}: CMAC_GENERAL {len} verify"),
            );
        }
        count += 1;
    }
    println!("CMAC vectors run: {count} (CMAC and CMAC_GENERAL 16/8/4, sign and verify)");
    assert_eq!(count, 12);
}

#[test]
fn kat_hmac_rfc4231_rfc2202() {
    let (_env, h) = hsm();
    let mut count = 0;
    for r in vectors("hmac.txt") {
        let name = r.name();
        let (_, full, general, hlen) = *HASHES.iter().find(|x| x.0 == r.get("hash")).expect("hash");
        let key = h.generic(&r.hex("key"));
        let (data, mac) = (r.hex("data"), r.hex("mac"));
        if mac.len() == hlen {
            let m = plain(full);
            let got = ok(h.sign(&m, key, &data), &format!("{name}: C_Sign"));
            assert_eq!(to_hex(&got), to_hex(&mac), "{name}");
            let got = ok(
                h.sign_multi(&m, key, &data, &[1, 20, 21]),
                &format!("{name}: multi-part"),
            );
            assert_eq!(to_hex(&got), to_hex(&mac), "{name}: multi-part");
            check(
                h.verify(&m, key, &data, &mac),
                CKR_OK,
                &format!("{name}: verify"),
            );
        }
        // _GENERAL with the vector's length (16 bytes for the truncated case 5).
        let g = Mech::General(general, mac.len() as CK_ULONG);
        let got = ok(h.sign(&g, key, &data), &format!("{name}: _GENERAL sign"));
        assert_eq!(to_hex(&got), to_hex(&mac), "{name}: _GENERAL");
        check(
            h.verify(&g, key, &data, &mac),
            CKR_OK,
            &format!("{name}: _GENERAL verify"),
        );
        check(
            h.verify_multi(&g, key, &data, &[2, 3], &mac),
            CKR_OK,
            &format!("{name}: _GENERAL multi-part verify"),
        );
        count += 1;
    }
    println!("HMAC vectors run: {count} (RFC 4231: 28 incl. truncated case 5, RFC 2202: 4)");
    assert_eq!(count, 32);
}

// ---------------------------------------------------------------------------
// openssl cross-checks
// ---------------------------------------------------------------------------

#[test]
fn openssl_cross_check_cbc_pad_and_ctr() {
    let (env, h) = hsm();
    let mut rng = Rng::seeded("openssl_cross_check_cbc_pad_and_ctr");
    let lens = [0usize, 1, 15, 16, 17, 31, 32, 100, 1000, 4096 + 7];
    // `openssl enc {cipher}` (key `k`, IV `iv`) and the module with `mech`
    // encrypt `data` alike, and the module decrypts openssl's output; the
    // module's ciphertext is returned.
    let cross = |what: &str, cipher: &str, k: &[u8], iv: &[u8], mech: &Mech, data: &[u8]| {
        let key = h.aes(k);
        let (k, iv) = (to_hex(k), to_hex(iv));
        let args = ["enc", cipher, "-K", &k, "-iv", &iv];
        let want = openssl(&env, &args, data);
        let got = ok(
            h.crypt(Dir::Enc, mech, key, data),
            &format!("{what} encrypt"),
        );
        assert_eq!(to_hex(&got), to_hex(&want), "{what} vs openssl");
        let back = ok(
            h.crypt(Dir::Dec, mech, key, &want),
            &format!("{what} decrypt"),
        );
        assert_eq!(back, data, "{what}: decrypt of openssl output");
        got
    };
    for (i, &len) in lens.iter().enumerate() {
        let (k, iv, data) = (rng.bytes(32), rng.bytes(16), rng.bytes(len));
        let what = format!("CBC_PAD, len {len}");
        let got = cross(&what, "-aes-256-cbc", &k, &iv, &cbc_pad(&iv), &data);
        let args = [
            "enc",
            "-d",
            "-aes-256-cbc",
            "-K",
            &to_hex(&k),
            "-iv",
            &to_hex(&iv),
        ];
        let back = openssl(&env, &args, &got);
        assert_eq!(back, data, "openssl decrypt of CBC_PAD output, len {len}");

        // CTR with a full 128-bit counter; every other case starts with the low
        // 64 bits all ones so the increment carries into the high half.
        let k = rng.bytes(16);
        let mut cb: [u8; 16] = rng.bytes(16).try_into().unwrap();
        if i % 2 == 1 {
            cb[8..].fill(0xff);
            cb[0] = 0x7f;
        }
        let what = format!("CTR, len {len}, cb {}", to_hex(&cb));
        cross(&what, "-aes-128-ctr", &k, &cb, &Mech::Ctr(128, cb), &data);
    }
    println!(
        "openssl cross-checks: {} CBC_PAD + {} CTR",
        lens.len(),
        lens.len()
    );
}

#[test]
fn openssl_cross_check_hmac_and_cmac() {
    let (env, h) = hsm();
    let mut rng = Rng::seeded("openssl_cross_check_hmac_and_cmac");
    let mut n = 0;
    for round in 0..4 {
        let dlen = rng.below(3000);
        let data = rng.bytes(dlen);
        for &(name, mech, _, _) in HASHES {
            let klen = [1usize, 20, 64, 150][round];
            let k = rng.bytes(klen);
            let key = h.generic(&k);
            let digest = format!("SHA{}", if name == "1" { "1" } else { name });
            let want = openssl_mac(&env, "HMAC", ("-digest", &digest), &k, &data);
            let got = ok(h.sign(&plain(mech), key, &data), &format!("HMAC-SHA{name}"));
            assert_eq!(
                to_hex(&got),
                to_hex(&want),
                "HMAC-SHA{name} vs openssl, key {klen} bytes, data {} bytes",
                data.len()
            );
            n += 1;
        }
        for (klen, cipher) in [
            (16usize, "AES-128-CBC"),
            (24, "AES-192-CBC"),
            (32, "AES-256-CBC"),
        ] {
            let k = rng.bytes(klen);
            let key = h.aes(&k);
            let want = openssl_mac(&env, "CMAC", ("-cipher", cipher), &k, &data);
            let got = ok(h.sign(&plain(CKM_AES_CMAC), key, &data), "CMAC");
            assert_eq!(
                to_hex(&got),
                to_hex(&want),
                "CMAC {cipher} vs openssl, data {} bytes",
                data.len()
            );
            n += 1;
        }
    }
    // HMAC keyed with an AES key object.
    let k = rng.bytes(32);
    let key = h.aes(&k);
    let want = openssl_mac(
        &env,
        "HMAC",
        ("-digest", "SHA256"),
        &k,
        b"hmac with an aes key",
    );
    let got = ok(
        h.sign(&plain(CKM_SHA256_HMAC), key, b"hmac with an aes key"),
        "HMAC-SHA256 with a CKK_AES key",
    );
    assert_eq!(
        to_hex(&got),
        to_hex(&want),
        "HMAC-SHA256 keyed by an AES key"
    );
    println!("openssl MAC cross-checks: {}", n + 1);
}

// ---------------------------------------------------------------------------
// property: multi-part == single-part
// ---------------------------------------------------------------------------

#[test]
fn multipart_equals_single_part() {
    let (_env, h) = hsm();
    let mut rng = Rng::seeded("multipart_equals_single_part");
    let mut checks = 0;
    let mut fails: Vec<String> = Vec::new();
    for case in 0..50 {
        let klen = [16, 24, 32][rng.below(3)];
        let key = h.aes(&rng.bytes(klen));
        let hk_len = 1 + rng.below(130);
        let hkey = h.generic(&rng.bytes(hk_len));
        let len = rng.below(700);
        let data = rng.bytes(len);
        let blocks = &data[..len / 16 * 16];
        let iv = rng.bytes(16);
        let cb: [u8; 16] = rng.bytes(16).try_into().unwrap();
        let giv_len = if rng.below(4) == 0 {
            1 + rng.below(64)
        } else {
            12
        };
        let giv = rng.bytes(giv_len);
        let aad_len = rng.below(80);
        let aad = rng.bytes(aad_len);
        let ciphers: Vec<(&str, Mech, &[u8])> = vec![
            ("AES_ECB", plain(CKM_AES_ECB), blocks),
            ("AES_CBC", cbc(&iv), blocks),
            ("AES_CBC_PAD", cbc_pad(&iv), &data),
            ("AES_CTR", Mech::Ctr(128, cb), &data),
            (
                "AES_GCM",
                gcm(&giv, &aad, [128, 120, 96, 64][rng.below(4)]),
                &data,
            ),
        ];
        for (name, mech, input) in ciphers {
            let what = format!("case {case} {name} len {}", input.len());
            let single = ok(h.crypt(Dir::Enc, &mech, key, input), &what);
            let back = ok(
                h.crypt(Dir::Dec, &mech, key, &single),
                &format!("{what} decrypt"),
            );
            assert_eq!(back, input, "{what}: decrypt(encrypt(x)) != x");
            let cuts = rng.cuts(input.len());
            match h.crypt_multi(Dir::Enc, &mech, key, input, &cuts) {
                Ok(multi) if multi == single => {}
                Ok(_) => fails.push(format!(
                    "{what}: multi-part encrypt (cuts {cuts:?}) != single-part"
                )),
                Err(rv) => fails.push(format!(
                    "{what}: multi-part encrypt (cuts {cuts:?}) failed with {}",
                    rv_name(rv)
                )),
            }
            let cuts = rng.cuts(single.len());
            match h.crypt_multi(Dir::Dec, &mech, key, &single, &cuts) {
                Ok(back) if back == input => {}
                Ok(_) => fails.push(format!(
                    "{what}: multi-part decrypt (cuts {cuts:?}) != plaintext"
                )),
                Err(rv) => fails.push(format!(
                    "{what}: multi-part decrypt (cuts {cuts:?}) failed with {}",
                    rv_name(rv)
                )),
            }
            checks += 2;
        }
        let mut macs: Vec<(String, Mech, CK_OBJECT_HANDLE)> = vec![
            ("AES_CMAC".into(), plain(CKM_AES_CMAC), key),
            (
                "AES_CMAC_GENERAL".into(),
                Mech::General(CKM_AES_CMAC_GENERAL, 1 + rng.below(16) as CK_ULONG),
                key,
            ),
        ];
        for &(n, full, general, hlen) in HASHES {
            macs.push((format!("SHA{n}_HMAC"), plain(full), hkey));
            macs.push((
                format!("SHA{n}_HMAC_GENERAL"),
                Mech::General(general, 1 + rng.below(hlen) as CK_ULONG),
                hkey,
            ));
        }
        for (name, mech, k) in macs {
            let what = format!("case {case} {name} len {len}");
            let single = ok(h.sign(&mech, k, &data), &what);
            check(
                h.verify(&mech, k, &data, &single),
                CKR_OK,
                &format!("{what}: verify"),
            );
            let cuts = rng.cuts(len);
            match h.sign_multi(&mech, k, &data, &cuts) {
                Ok(multi) if multi == single => {}
                Ok(_) => fails.push(format!(
                    "{what}: multi-part MAC (cuts {cuts:?}) != single-part"
                )),
                Err(rv) => fails.push(format!(
                    "{what}: multi-part sign (cuts {cuts:?}) failed with {}",
                    rv_name(rv)
                )),
            }
            let rv = h.verify_multi(&mech, k, &data, &cuts, &single);
            if rv != CKR_OK {
                fails.push(format!(
                    "{what}: multi-part verify (cuts {cuts:?}): expected CKR_OK, got {}",
                    rv_name(rv)
                ));
            }
            checks += 2;
        }
    }
    println!(
        "multi-part == single-part: 50 random inputs, {checks} comparisons, {} mismatches",
        fails.len()
    );
    assert!(
        fails.is_empty(),
        "{} of {checks} multi-part comparisons failed:\n{}",
        fails.len(),
        fails.join("\n")
    );
}

// ---------------------------------------------------------------------------
// size queries
// ---------------------------------------------------------------------------

#[test]
fn size_queries_and_buffer_too_small_keep_operation_alive() {
    let (_env, h) = hsm();
    let key = h.aes(&[7u8; 16]);
    let iv = [3u8; 16];
    let data: Vec<u8> = (0..20u8).collect();
    let want = ok(
        h.crypt(Dir::Enc, &cbc_pad(&iv), key, &data),
        "CBC_PAD reference",
    );
    assert_eq!(want.len(), 32);

    // C_Encrypt: NULL query, then too small, then right.
    check(
        h.crypt_init(Dir::Enc, &cbc_pad(&iv), key),
        CKR_OK,
        "C_EncryptInit",
    );
    let (rv, n) = h.once_raw(Dir::Enc, &data, None);
    check(rv, CKR_OK, "C_Encrypt(NULL) size query");
    assert!(n >= 32, "C_Encrypt size query gave {n}, need >= 32");
    let mut small = [0u8; 8];
    let (rv, n2) = h.once_raw(Dir::Enc, &data, Some(&mut small));
    check(rv, CKR_BUFFER_TOO_SMALL, "C_Encrypt with an 8-byte buffer");
    assert!(
        n2 >= 32,
        "CKR_BUFFER_TOO_SMALL must report the needed length, got {n2}"
    );
    let mut out = vec![0u8; 32];
    let (rv, m) = h.once_raw(Dir::Enc, &data, Some(&mut out));
    check(
        rv,
        CKR_OK,
        "C_Encrypt after CKR_BUFFER_TOO_SMALL (operation must stay active)",
    );
    assert_eq!(&out[..m], &want[..], "C_Encrypt result after size queries");
    let (rv, _) = h.once_raw(Dir::Enc, &data, Some(&mut out));
    check(
        rv,
        CKR_OPERATION_NOT_INITIALIZED,
        "C_Encrypt after the operation completed",
    );

    // C_Decrypt.
    check(
        h.crypt_init(Dir::Dec, &cbc_pad(&iv), key),
        CKR_OK,
        "C_DecryptInit",
    );
    let (rv, n) = h.once_raw(Dir::Dec, &want, None);
    check(rv, CKR_OK, "C_Decrypt(NULL)");
    assert!(n >= 20);
    let (rv, _) = h.once_raw(Dir::Dec, &want, Some(&mut small));
    check(rv, CKR_BUFFER_TOO_SMALL, "C_Decrypt with an 8-byte buffer");
    let mut out = vec![0u8; 32];
    let (rv, m) = h.once_raw(Dir::Dec, &want, Some(&mut out));
    check(rv, CKR_OK, "C_Decrypt after CKR_BUFFER_TOO_SMALL");
    assert_eq!(&out[..m], &data[..]);

    // GCM decrypt: exact query, too small by one, exact buffer.
    let gm = gcm(&[9u8; 12], b"aad", 128);
    let ct = ok(h.crypt(Dir::Enc, &gm, key, &data), "GCM encrypt");
    assert_eq!(
        ct.len(),
        data.len() + 16,
        "GCM output = ciphertext || 16-byte tag"
    );
    check(
        h.crypt_init(Dir::Dec, &gm, key),
        CKR_OK,
        "C_DecryptInit GCM",
    );
    let (rv, n) = h.once_raw(Dir::Dec, &ct, None);
    check(rv, CKR_OK, "C_Decrypt GCM size query");
    assert_eq!(n, data.len(), "GCM decrypt size query must be exact");
    let mut out = vec![0u8; data.len() - 1];
    let (rv, n) = h.once_raw(Dir::Dec, &ct, Some(&mut out));
    check(
        rv,
        CKR_BUFFER_TOO_SMALL,
        "C_Decrypt GCM buffer one byte short",
    );
    assert_eq!(n, data.len());
    let mut out = vec![0u8; data.len()];
    let (rv, m) = h.once_raw(Dir::Dec, &ct, Some(&mut out));
    check(rv, CKR_OK, "C_Decrypt GCM exact buffer");
    assert_eq!(&out[..m], &data[..]);

    // C_EncryptUpdate too small, then C_EncryptFinal query/too small.
    check(
        h.crypt_init(Dir::Enc, &cbc_pad(&iv), key),
        CKR_OK,
        "C_EncryptInit",
    );
    let mut tiny = [0u8; 4];
    let (rv, n) = h.update_raw(Dir::Enc, &data, Some(&mut tiny));
    check(
        rv,
        CKR_BUFFER_TOO_SMALL,
        "C_EncryptUpdate with a 4-byte buffer",
    );
    assert!(n >= 16, "C_EncryptUpdate must report >= 16, got {n}");
    let (rv, n) = h.update_raw(Dir::Enc, &data, None);
    check(rv, CKR_OK, "C_EncryptUpdate(NULL)");
    assert!(n >= 16);
    let mut first = vec![0u8; n];
    let (rv, m) = h.update_raw(Dir::Enc, &data, Some(&mut first));
    check(rv, CKR_OK, "C_EncryptUpdate after CKR_BUFFER_TOO_SMALL");
    first.truncate(m);
    let (rv, n) = h.final_raw(Dir::Enc, None);
    check(rv, CKR_OK, "C_EncryptFinal(NULL)");
    assert!(n >= 32 - m, "C_EncryptFinal size query {n}");
    let (rv, _) = h.final_raw(Dir::Enc, Some(&mut []));
    check(
        rv,
        CKR_BUFFER_TOO_SMALL,
        "C_EncryptFinal with a 0-byte buffer",
    );
    let mut rest = vec![0u8; n];
    let (rv, r) = h.final_raw(Dir::Enc, Some(&mut rest));
    check(rv, CKR_OK, "C_EncryptFinal after CKR_BUFFER_TOO_SMALL");
    first.extend(&rest[..r]);
    assert_eq!(first, want, "multi-part with size queries");

    // GCM multi-part decrypt: nothing before Final, Final query.
    check(
        h.crypt_init(Dir::Dec, &gm, key),
        CKR_OK,
        "C_DecryptInit GCM",
    );
    let part = ok(h.update(Dir::Dec, &ct[..30]), "C_DecryptUpdate GCM");
    assert!(
        part.is_empty(),
        "GCM C_DecryptUpdate released {} bytes before the tag was checked",
        part.len()
    );
    let part = ok(h.update(Dir::Dec, &ct[30..]), "C_DecryptUpdate GCM");
    assert!(
        part.is_empty(),
        "GCM C_DecryptUpdate released plaintext before Final"
    );
    let (rv, n) = h.final_raw(Dir::Dec, None);
    check(rv, CKR_OK, "C_DecryptFinal GCM size query");
    assert!(n >= data.len());
    let (rv, _) = h.final_raw(Dir::Dec, Some(&mut tiny));
    check(rv, CKR_BUFFER_TOO_SMALL, "C_DecryptFinal GCM 4-byte buffer");
    let mut out = vec![0u8; n];
    let (rv, m) = h.final_raw(Dir::Dec, Some(&mut out));
    check(rv, CKR_OK, "C_DecryptFinal GCM after CKR_BUFFER_TOO_SMALL");
    assert_eq!(&out[..m], &data[..]);

    // C_Sign and C_SignFinal.
    let hk = h.generic(b"0123456789abcdef0123456789abcdef");
    let mac = ok(h.sign(&plain(CKM_SHA256_HMAC), hk, &data), "HMAC reference");
    check(
        h.sign_init(&plain(CKM_SHA256_HMAC), hk),
        CKR_OK,
        "C_SignInit",
    );
    let (rv, n) = h.sign_raw(&data, None);
    check(rv, CKR_OK, "C_Sign(NULL)");
    assert_eq!(n, 32, "HMAC-SHA256 size query");
    let mut s16 = [0u8; 16];
    let (rv, n) = h.sign_raw(&data, Some(&mut s16));
    check(rv, CKR_BUFFER_TOO_SMALL, "C_Sign with a 16-byte buffer");
    assert_eq!(n, 32);
    let mut s = [0u8; 32];
    let (rv, _) = h.sign_raw(&data, Some(&mut s));
    check(rv, CKR_OK, "C_Sign after CKR_BUFFER_TOO_SMALL");
    assert_eq!(s.to_vec(), mac);
    check(
        h.sign_init(&plain(CKM_SHA256_HMAC), hk),
        CKR_OK,
        "C_SignInit",
    );
    check(h.sign_update(&data), CKR_OK, "C_SignUpdate");
    let (rv, n) = h.sign_final_raw(Some(&mut s16));
    check(
        rv,
        CKR_BUFFER_TOO_SMALL,
        "C_SignFinal with a 16-byte buffer",
    );
    assert_eq!(n, 32);
    let (rv, n) = h.sign_final_raw(None);
    check(rv, CKR_OK, "C_SignFinal(NULL)");
    assert_eq!(n, 32);
    let (rv, _) = h.sign_final_raw(Some(&mut s));
    check(rv, CKR_OK, "C_SignFinal after size queries");
    assert_eq!(s.to_vec(), mac);
    let (rv, _) = h.sign_final_raw(Some(&mut s));
    check(
        rv,
        CKR_OPERATION_NOT_INITIALIZED,
        "C_SignFinal after completion",
    );
}

// ---------------------------------------------------------------------------
// error cases
// ---------------------------------------------------------------------------

#[test]
fn length_errors_end_the_operation() {
    let (_env, h) = hsm();
    let key = h.aes(&[1u8; 32]);
    let iv = [0u8; 16];
    let cases: Vec<(&str, Dir, Mech, usize, CK_RV)> = vec![
        (
            "AES_ECB encrypt 15",
            Dir::Enc,
            plain(CKM_AES_ECB),
            15,
            CKR_DATA_LEN_RANGE,
        ),
        (
            "AES_ECB decrypt 17",
            Dir::Dec,
            plain(CKM_AES_ECB),
            17,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_CBC encrypt 33",
            Dir::Enc,
            cbc(&iv),
            33,
            CKR_DATA_LEN_RANGE,
        ),
        (
            "AES_CBC decrypt 31",
            Dir::Dec,
            cbc(&iv),
            31,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_CBC_PAD decrypt 15",
            Dir::Dec,
            cbc_pad(&iv),
            15,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_CBC_PAD decrypt 0",
            Dir::Dec,
            cbc_pad(&iv),
            0,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP encrypt 12",
            Dir::Enc,
            plain(CKM_AES_KEY_WRAP),
            12,
            CKR_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP encrypt 8",
            Dir::Enc,
            plain(CKM_AES_KEY_WRAP),
            8,
            CKR_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP decrypt 16",
            Dir::Dec,
            plain(CKM_AES_KEY_WRAP),
            16,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP decrypt 28",
            Dir::Dec,
            plain(CKM_AES_KEY_WRAP),
            28,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP_KWP encrypt 0",
            Dir::Enc,
            plain(CKM_AES_KEY_WRAP_KWP),
            0,
            CKR_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP_KWP decrypt 8",
            Dir::Dec,
            plain(CKM_AES_KEY_WRAP_KWP),
            8,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_KEY_WRAP_KWP decrypt 20",
            Dir::Dec,
            plain(CKM_AES_KEY_WRAP_KWP),
            20,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "AES_GCM decrypt 15 (< tag)",
            Dir::Dec,
            gcm(&[0u8; 12], b"", 128),
            15,
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
    ];
    for (name, dir, mech, len, want) in &cases {
        check(
            h.crypt_init(*dir, mech, key),
            CKR_OK,
            &format!("{name}: init"),
        );
        let (rv, _) = h.once_raw(*dir, &vec![0x5a; *len], Some(&mut [0u8; 128]));
        check(rv, *want, name);
        let (rv, _) = h.once_raw(*dir, &[0u8; 16], Some(&mut [0u8; 128]));
        check(
            rv,
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{name}: the failed call must end the operation"),
        );
    }
    // The same through the size query (NULL output) too.
    check(
        h.crypt_init(Dir::Enc, &plain(CKM_AES_ECB), key),
        CKR_OK,
        "init",
    );
    // The size query may refuse the length at once, or give a length and leave the
    // refusal to the real call; either way the real call must fail.
    let (rv, _) = h.once_raw(Dir::Enc, &[0u8; 15], None);
    if rv == CKR_OK {
        let (rv, _) = h.once_raw(Dir::Enc, &[0u8; 15], Some(&mut [0u8; 32]));
        check(
            rv,
            CKR_DATA_LEN_RANGE,
            "AES_ECB with 15 bytes after a size query",
        );
    } else {
        check(rv, CKR_DATA_LEN_RANGE, "AES_ECB size query with 15 bytes");
    }
    // Multi-part: partial block left at Final.
    for (name, dir, mech, want) in [
        ("ECB", Dir::Enc, plain(CKM_AES_ECB), CKR_DATA_LEN_RANGE),
        ("CBC", Dir::Enc, cbc(&iv), CKR_DATA_LEN_RANGE),
        (
            "ECB decrypt",
            Dir::Dec,
            plain(CKM_AES_ECB),
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
        (
            "CBC_PAD decrypt",
            Dir::Dec,
            cbc_pad(&iv),
            CKR_ENCRYPTED_DATA_LEN_RANGE,
        ),
    ] {
        check(h.crypt_init(dir, &mech, key), CKR_OK, name);
        ok(
            h.update(dir, &[0u8; 21]),
            &format!("{name}: update with 21 bytes"),
        );
        err(
            h.finish(dir),
            want,
            &format!("{name}: final with a partial block"),
        );
        err(
            h.finish(dir),
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{name}: final after failure"),
        );
    }
    // The session keeps working.
    ok(
        h.crypt(Dir::Enc, &plain(CKM_AES_ECB), key, &[0u8; 32]),
        "ECB after errors",
    );
    println!("length error cases: {}", cases.len() + 5);
}

#[test]
fn cbc_pad_bad_padding() {
    let (_env, h) = hsm();
    let key = h.aes(&[2u8; 16]);
    let iv = [4u8; 16];
    let mut bad_blocks: Vec<Vec<u8>> = Vec::new();
    let mut b = vec![0x41u8; 16];
    b[15] = 0; // pad byte 0
    bad_blocks.push(b.clone());
    b[15] = 17; // pad byte > block size
    bad_blocks.push(b.clone());
    b[14] = 1;
    b[15] = 2; // inconsistent pad bytes
    bad_blocks.push(b.clone());
    let mut b2 = vec![0x03u8; 32];
    b2[29] = 0x04; // 3 bytes claimed, one wrong
    b2[30] = 0x03;
    b2[31] = 0x03;
    b2[28] = 0x00;
    b2[29] = 0x02;
    bad_blocks.push(b2);
    for (i, plain_blocks) in bad_blocks.iter().enumerate() {
        // Encrypt the raw blocks with CKM_AES_CBC, then unpad-decrypt them.
        let ct = ok(h.crypt(Dir::Enc, &cbc(&iv), key, plain_blocks), "CBC");
        err(
            h.crypt(Dir::Dec, &cbc_pad(&iv), key, &ct),
            CKR_ENCRYPTED_DATA_INVALID,
            &format!("CBC_PAD decrypt with bad padding #{i}"),
        );
        err(
            h.crypt_multi(Dir::Dec, &cbc_pad(&iv), key, &ct, &[5]),
            CKR_ENCRYPTED_DATA_INVALID,
            &format!("multi-part CBC_PAD decrypt with bad padding #{i}"),
        );
    }
    // Good padding of a full block.
    let mut good = vec![0x41u8; 16];
    good.extend([16u8; 16]);
    let ct = ok(h.crypt(Dir::Enc, &cbc(&iv), key, &good), "CBC");
    let pt = ok(
        h.crypt(Dir::Dec, &cbc_pad(&iv), key, &ct),
        "CBC_PAD full pad block",
    );
    assert_eq!(pt, vec![0x41u8; 16]);
}

#[test]
fn ctr_counter_wrap_and_params() {
    let (_env, h) = hsm();
    let key = h.aes(&[9u8; 16]);
    let mut cb = [0xabu8; 16];
    cb[15] = 0;
    // An 8-bit counter from 0 covers exactly 256 blocks.
    let data = vec![0u8; 256 * 16];
    let got = ok(
        h.crypt(Dir::Enc, &Mech::Ctr(8, cb), key, &data),
        "CTR 8-bit counter, 256 blocks",
    );
    let want = ok(
        h.crypt(Dir::Enc, &Mech::Ctr(128, cb), key, &data),
        "CTR 128-bit counter, 256 blocks",
    );
    assert_eq!(got, want, "no carry happens within 256 blocks from 0");
    err(
        h.crypt(Dir::Enc, &Mech::Ctr(8, cb), key, &[0u8; 256 * 16 + 1]),
        CKR_DATA_LEN_RANGE,
        "CTR 8-bit counter, 257 blocks (counter wraps)",
    );
    // Starting at the top of the counter: one block fits, a second wraps.
    cb[15] = 0xff;
    ok(
        h.crypt(Dir::Enc, &Mech::Ctr(8, cb), key, &[0u8; 16]),
        "CTR 8-bit counter at 0xff, one block",
    );
    err(
        h.crypt(Dir::Enc, &Mech::Ctr(8, cb), key, &[0u8; 17]),
        CKR_DATA_LEN_RANGE,
        "CTR 8-bit counter at 0xff, 17 bytes (counter wraps)",
    );
    check(
        h.crypt_init(Dir::Enc, &Mech::Ctr(8, cb), key),
        CKR_OK,
        "C_EncryptInit CTR",
    );
    ok(h.update(Dir::Enc, &[0u8; 16]), "CTR update, first block");
    err(
        h.update(Dir::Enc, &[0u8; 1]),
        CKR_DATA_LEN_RANGE,
        "CTR multi-part update past the counter wrap",
    );
    err(
        h.finish(Dir::Enc),
        CKR_OPERATION_NOT_INITIALIZED,
        "CTR: the wrap error ends the operation",
    );
    // 16-bit counter at ff ff with 128-bit arithmetic in the other bytes unchanged.
    let mut cb2 = [0u8; 16];
    cb2[14] = 0xff;
    cb2[15] = 0xfe;
    ok(
        h.crypt(Dir::Enc, &Mech::Ctr(16, cb2), key, &[0u8; 32]),
        "CTR 16-bit counter at fffe, two blocks",
    );
    err(
        h.crypt(Dir::Enc, &Mech::Ctr(16, cb2), key, &[0u8; 33]),
        CKR_DATA_LEN_RANGE,
        "CTR 16-bit counter at fffe, three blocks",
    );
    // Parameters.
    for bits in [0 as CK_ULONG, 129, 1 << 20] {
        check(
            h.crypt_init(Dir::Enc, &Mech::Ctr(bits, cb), key),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("CTR ulCounterBits = {bits}"),
        );
    }
    for p in [vec![], vec![0u8; 16], vec![0u8; 23]] {
        check(
            h.crypt_init(Dir::Enc, &Mech::Bytes(CKM_AES_CTR, p.clone()), key),
            CKR_MECHANISM_PARAM_INVALID,
            &format!("CTR with a {}-byte parameter", p.len()),
        );
    }
}

#[test]
fn parameter_errors() {
    let (_env, h) = hsm();
    let key = h.aes(&[5u8; 16]);
    let hk = h.generic(&[6u8; 32]);
    let iv = vec![0u8; 12];
    let mut cases: Vec<(String, Mech)> = vec![
        ("CBC without IV".into(), Mech::Bytes(CKM_AES_CBC, vec![])),
        ("CBC with 8-byte IV".into(), cbc(&[0u8; 8])),
        ("CBC with 17-byte IV".into(), cbc(&[0u8; 17])),
        ("CBC_PAD with 15-byte IV".into(), cbc_pad(&[0u8; 15])),
        (
            "GCM without params".into(),
            Mech::Bytes(CKM_AES_GCM, vec![]),
        ),
        (
            "GCM with 24-byte params".into(),
            Mech::Bytes(CKM_AES_GCM, vec![0u8; 24]),
        ),
        ("GCM with empty IV".into(), gcm(&[], b"", 128)),
        ("GCM with 257-byte IV".into(), gcm(&[1u8; 257], b"", 128)),
        ("GCM tag 0 bits".into(), gcm(&iv, b"", 0)),
        ("GCM tag 24 bits".into(), gcm(&iv, b"", 24)),
        ("GCM tag 100 bits".into(), gcm(&iv, b"", 100)),
        ("GCM tag 129 bits".into(), gcm(&iv, b"", 129)),
        ("GCM tag 136 bits".into(), gcm(&iv, b"", 136)),
        (
            "GCM 40-byte layout, tag 24 bits".into(),
            Mech::Gcm40 {
                iv: iv.clone(),
                aad: vec![],
                tag_bits: 24,
            },
        ),
        (
            "GCM 40-byte layout, empty IV".into(),
            Mech::Gcm40 {
                iv: vec![],
                aad: vec![],
                tag_bits: 128,
            },
        ),
        (
            "CMAC_GENERAL length 17".into(),
            Mech::General(CKM_AES_CMAC_GENERAL, 17),
        ),
        (
            "CMAC_GENERAL 4-byte param".into(),
            Mech::Bytes(CKM_AES_CMAC_GENERAL, vec![8, 0, 0, 0]),
        ),
        (
            "CMAC_GENERAL no param".into(),
            Mech::Bytes(CKM_AES_CMAC_GENERAL, vec![]),
        ),
    ];
    // Accepted GCM edges (must not fail).
    for (name, m) in [
        ("GCM 1-byte IV", gcm(&[1], b"", 128)),
        ("GCM 256-byte IV", gcm(&[1u8; 256], b"", 128)),
        ("GCM tag 32 bits", gcm(&iv, b"", 32)),
        ("GCM tag 104 bits", gcm(&iv, b"", 104)),
        ("GCM 4 KiB AAD", gcm(&iv, &[7u8; 4096], 128)),
    ] {
        let ct = ok(h.crypt(Dir::Enc, &m, key, b"edge"), name);
        let tag_bits = match &m {
            Mech::GcmFull { tag_bits, .. } => *tag_bits as usize,
            _ => unreachable!(),
        };
        assert_eq!(ct.len(), 4 + tag_bits / 8, "{name}: output length");
        assert_eq!(ok(h.crypt(Dir::Dec, &m, key, &ct), name), b"edge");
    }
    for (n, general, _, hlen) in HASHES {
        cases.push((
            format!("SHA{n}_HMAC_GENERAL length {}", hlen + 1),
            Mech::General(*general, (*hlen + 1) as CK_ULONG),
        ));
    }
    for (name, mech) in &cases {
        let mac = name.contains("HMAC") || name.contains("CMAC");
        let k = if name.contains("HMAC") { hk } else { key };
        if mac {
            check(
                h.sign_init(mech, k),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("C_SignInit {name}"),
            );
            check(
                h.verify_init(mech, k),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("C_VerifyInit {name}"),
            );
        } else {
            check(
                h.crypt_init(Dir::Enc, mech, k),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("C_EncryptInit {name}"),
            );
            check(
                h.crypt_init(Dir::Dec, mech, k),
                CKR_MECHANISM_PARAM_INVALID,
                &format!("C_DecryptInit {name}"),
            );
        }
    }
    println!("parameter error cases: {}", cases.len());
}

#[test]
fn gcm_authentication_failures() {
    let (_env, h) = hsm();
    let key = h.aes(&[0x11u8; 32]);
    let other = h.aes(&[0x12u8; 32]);
    let iv = [0x22u8; 12];
    let aad = b"authenticated header".to_vec();
    let data: Vec<u8> = (0..100u8).collect();
    let m = gcm(&iv, &aad, 128);
    let ct = ok(h.crypt(Dir::Enc, &m, key, &data), "GCM encrypt");
    let mut bad_tag = ct.clone();
    *bad_tag.last_mut().unwrap() ^= 0x80;
    let mut bad_data = ct.clone();
    bad_data[3] ^= 1;
    let cases: Vec<(&str, Mech, CK_OBJECT_HANDLE, Vec<u8>)> = vec![
        ("wrong tag", m.clone(), key, bad_tag),
        ("corrupted data", m.clone(), key, bad_data),
        (
            "wrong AAD",
            gcm(&iv, b"authenticated headeR", 128),
            key,
            ct.clone(),
        ),
        ("missing AAD", gcm(&iv, b"", 128), key, ct.clone()),
        ("wrong IV", gcm(&[0x23u8; 12], &aad, 128), key, ct.clone()),
        ("wrong key", m.clone(), other, ct.clone()),
        ("truncated ciphertext", m.clone(), key, ct[1..].to_vec()),
        (
            "40-byte layout, wrong AAD",
            Mech::Gcm40 {
                iv: iv.to_vec(),
                aad: b"x".to_vec(),
                tag_bits: 128,
            },
            key,
            ct.clone(),
        ),
    ];
    for (name, mech, k, input) in &cases {
        check(
            h.crypt_init(Dir::Dec, mech, *k),
            CKR_OK,
            &format!("{name}: C_DecryptInit"),
        );
        let mut out = vec![0xeeu8; input.len() + 16];
        let (rv, _) = h.once_raw(Dir::Dec, input, Some(&mut out));
        check(
            rv,
            CKR_ENCRYPTED_DATA_INVALID,
            &format!("GCM C_Decrypt, {name}"),
        );
        assert!(
            out.iter().all(|&b| b == 0xee),
            "GCM {name}: plaintext written to the output buffer despite authentication failure"
        );
        let (rv, _) = h.once_raw(Dir::Dec, input, Some(&mut out));
        check(
            rv,
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{name}: operation must end"),
        );
        // Multi-part: the failure shows at Final, and nothing came out before.
        check(
            h.crypt_init(Dir::Dec, mech, *k),
            CKR_OK,
            &format!("{name}: C_DecryptInit"),
        );
        let part = ok(h.update(Dir::Dec, &input[..input.len() / 2]), "update");
        assert!(
            part.is_empty(),
            "GCM {name}: C_DecryptUpdate released plaintext"
        );
        let part = ok(h.update(Dir::Dec, &input[input.len() / 2..]), "update");
        assert!(
            part.is_empty(),
            "GCM {name}: C_DecryptUpdate released plaintext"
        );
        err(
            h.finish(Dir::Dec),
            CKR_ENCRYPTED_DATA_INVALID,
            &format!("GCM C_DecryptFinal, {name}"),
        );
        // The session stays usable.
        let again = ok(
            h.crypt(Dir::Enc, &m, key, &data),
            &format!("{name}: encrypt afterwards"),
        );
        assert_eq!(again, ct, "{name}: encrypt after failure");
    }
    assert_eq!(ok(h.crypt(Dir::Dec, &m, key, &ct), "good decrypt"), data);
    println!("GCM authentication failure cases: {}", cases.len());
}

#[test]
fn mac_verify_errors() {
    let (_env, h) = hsm();
    let key = h.aes(&[0x31u8; 16]);
    let hk = h.generic(&[0x32u8; 40]);
    let data = b"message to authenticate".to_vec();
    let mut mechs: Vec<(String, Mech, CK_OBJECT_HANDLE, usize)> = vec![
        ("AES_CMAC".into(), plain(CKM_AES_CMAC), key, 16),
        (
            "AES_CMAC_GENERAL(10)".into(),
            Mech::General(CKM_AES_CMAC_GENERAL, 10),
            key,
            10,
        ),
    ];
    for &(n, full, general, hlen) in HASHES {
        mechs.push((format!("SHA{n}_HMAC"), plain(full), hk, hlen));
        mechs.push((
            format!("SHA{n}_HMAC_GENERAL(12)"),
            Mech::General(general, 12),
            hk,
            12,
        ));
    }
    for (name, m, k, len) in &mechs {
        let mac = ok(h.sign(m, *k, &data), name);
        assert_eq!(mac.len(), *len, "{name}: MAC length");
        let mut bad = mac.clone();
        bad[0] ^= 1;
        check(
            h.verify(m, *k, &data, &bad),
            CKR_SIGNATURE_INVALID,
            &format!("{name}: wrong MAC"),
        );
        check(
            h.verify_once(&data, &mac),
            CKR_OPERATION_NOT_INITIALIZED,
            &format!("{name}: C_Verify ends the operation"),
        );
        check(
            h.verify(m, *k, b"other data", &mac),
            CKR_SIGNATURE_INVALID,
            &format!("{name}: other data"),
        );
        check(
            h.verify_multi(m, *k, &data, &[4], &bad),
            CKR_SIGNATURE_INVALID,
            &format!("{name}: wrong MAC, multi-part"),
        );
        for l in [len - 1, len + 1, 0] {
            let mut s = mac.clone();
            s.resize(l, 0);
            check(
                h.verify(m, *k, &data, &s),
                CKR_SIGNATURE_LEN_RANGE,
                &format!("{name}: MAC of {l} bytes"),
            );
            check(
                h.verify_multi(m, *k, &data, &[1], &s),
                CKR_SIGNATURE_LEN_RANGE,
                &format!("{name}: C_VerifyFinal with a MAC of {l} bytes"),
            );
        }
        check(
            h.verify(m, *k, &data, &mac),
            CKR_OK,
            &format!("{name}: right MAC"),
        );
    }
    println!("MAC mechanisms checked for verify errors: {}", mechs.len());
}

#[test]
fn key_usage_type_and_state_checks() {
    let (_env, h) = hsm();
    let value = vec![0x44u8; 32];
    let key_with = |attrs: Vec<(CK_ATTRIBUTE_TYPE, V)>, kt: CK_KEY_TYPE| {
        let mut list = vec![
            (CKA_CLASS, V::U(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, V::U(kt)),
            (CKA_VALUE, V::Bytes(value.clone())),
        ];
        list.extend(attrs);
        ok(h.create(list), "C_CreateObject")
    };
    let all = |e: bool, d: bool, s: bool, v: bool| {
        vec![
            (CKA_ENCRYPT, V::B(e)),
            (CKA_DECRYPT, V::B(d)),
            (CKA_SIGN, V::B(s)),
            (CKA_VERIFY, V::B(v)),
        ]
    };
    let gm = gcm(&[0u8; 12], b"", 128);
    let cmac = plain(CKM_AES_CMAC);
    let hmac = plain(CKM_SHA256_HMAC);
    let no_enc = key_with(all(false, true, true, true), CKK_AES);
    let no_dec = key_with(all(true, false, true, true), CKK_AES);
    let no_sign = key_with(all(true, true, false, true), CKK_AES);
    let no_verify = key_with(all(true, true, true, false), CKK_AES);
    let nfp = CKR_KEY_FUNCTION_NOT_PERMITTED;
    check(
        h.crypt_init(Dir::Enc, &gm, no_enc),
        nfp,
        "C_EncryptInit, CKA_ENCRYPT=FALSE",
    );
    check(
        h.crypt_init(Dir::Dec, &gm, no_enc),
        CKR_OK,
        "C_DecryptInit, CKA_DECRYPT=TRUE",
    );
    err(
        h.once(Dir::Dec, &[0u8; 16]),
        CKR_ENCRYPTED_DATA_INVALID,
        "GCM decrypt of a bare wrong tag",
    );
    check(
        h.crypt_init(Dir::Dec, &gm, no_dec),
        nfp,
        "C_DecryptInit, CKA_DECRYPT=FALSE",
    );
    check(
        h.crypt_init(Dir::Enc, &gm, no_dec),
        CKR_OK,
        "C_EncryptInit, CKA_ENCRYPT=TRUE",
    );
    ok(
        h.once(Dir::Enc, b"x"),
        "GCM encrypt with an encrypt-only key",
    );
    for (init, key, attr) in [
        (Init::Sign, no_sign, "CKA_SIGN"),
        (Init::Verify, no_verify, "CKA_VERIFY"),
    ] {
        for (name, m) in [("CMAC", &cmac), ("HMAC", &hmac)] {
            let what = format!("C_{init:?}Init {name}, {attr}=FALSE");
            check(init.call(&h, m, key), nfp, &what);
        }
    }
    for (name, m) in [
        ("AES_ECB", plain(CKM_AES_ECB)),
        ("AES_KEY_WRAP", plain(CKM_AES_KEY_WRAP)),
        ("AES_CTR", Mech::Ctr(128, [0u8; 16])),
    ] {
        for (init, key, attr) in [
            (Init::Encrypt, no_enc, "CKA_ENCRYPT"),
            (Init::Decrypt, no_dec, "CKA_DECRYPT"),
        ] {
            let what = format!("C_{init:?}Init {name}, {attr}=FALSE");
            check(init.call(&h, &m, key), nfp, &what);
        }
    }

    // Wrong key type.
    let generic = key_with(all(true, true, true, true), CKK_GENERIC_SECRET);
    let kti = CKR_KEY_TYPE_INCONSISTENT;
    for (name, m) in [
        ("AES_GCM", gm.clone()),
        ("AES_ECB", plain(CKM_AES_ECB)),
        ("AES_CBC", cbc(&[0u8; 16])),
        ("AES_CBC_PAD", cbc_pad(&[0u8; 16])),
        ("AES_CTR", Mech::Ctr(128, [0u8; 16])),
        ("AES_KEY_WRAP", plain(CKM_AES_KEY_WRAP)),
        ("AES_KEY_WRAP_KWP", plain(CKM_AES_KEY_WRAP_KWP)),
    ] {
        for init in [Init::Encrypt, Init::Decrypt] {
            let what = format!("C_{init:?}Init {name} with a generic secret");
            check(init.call(&h, &m, generic), kti, &what);
        }
    }
    for init in [Init::Sign, Init::Verify] {
        let what = format!("C_{init:?}Init AES_CMAC with a generic secret");
        check(init.call(&h, &cmac, generic), kti, &what);
    }
    // HMAC with a generic secret and with an AES key both work.
    ok(
        h.sign(&hmac, generic, b"x"),
        "HMAC with a generic secret key",
    );
    ok(h.sign(&hmac, no_enc, b"x"), "HMAC with an AES key");

    // CKA_ALLOWED_MECHANISMS.
    let mut attrs = all(true, true, true, true);
    attrs.push((
        CKA_ALLOWED_MECHANISMS,
        V::Bytes(mechs_bytes(&[CKM_AES_GCM, CKM_AES_CMAC])),
    ));
    let restricted = key_with(attrs, CKK_AES);
    check(
        h.crypt_init(Dir::Enc, &gm, restricted),
        CKR_OK,
        "GCM allowed by CKA_ALLOWED_MECHANISMS",
    );
    ok(
        h.once(Dir::Enc, b"allowed"),
        "GCM encrypt with a restricted key",
    );
    check(
        h.sign_init(&cmac, restricted),
        CKR_OK,
        "CMAC allowed by CKA_ALLOWED_MECHANISMS",
    );
    ok(
        {
            let (rv, _) = h.sign_raw(b"x", Some(&mut [0u8; 16]));
            if rv == CKR_OK { Ok(()) } else { Err(rv) }
        },
        "CMAC sign with a restricted key",
    );
    check(
        h.crypt_init(Dir::Enc, &cbc(&[0u8; 16]), restricted),
        CKR_MECHANISM_INVALID,
        "AES_CBC not in CKA_ALLOWED_MECHANISMS",
    );
    check(
        h.crypt_init(Dir::Dec, &plain(CKM_AES_ECB), restricted),
        CKR_MECHANISM_INVALID,
        "AES_ECB not in CKA_ALLOWED_MECHANISMS",
    );
    check(
        h.sign_init(&hmac, restricted),
        CKR_MECHANISM_INVALID,
        "SHA256_HMAC not in CKA_ALLOWED_MECHANISMS",
    );
    let mut attrs = all(true, true, true, true);
    attrs.push((CKA_ALLOWED_MECHANISMS, V::Bytes(Vec::new())));
    let empty_list = key_with(attrs, CKK_AES);
    check(
        h.crypt_init(Dir::Enc, &cbc(&[0u8; 16]), empty_list),
        CKR_OK,
        "empty CKA_ALLOWED_MECHANISMS allows all",
    );
    ok(
        h.once(Dir::Enc, &[0u8; 16]),
        "CBC encrypt, empty allowed list",
    );

    // Bad key handles.
    let good = key_with(all(true, true, true, true), CKK_AES);
    for bad in [0 as CK_OBJECT_HANDLE, 0xdead_beef] {
        for (init, m) in [
            (Init::Encrypt, &gm),
            (Init::Decrypt, &gm),
            (Init::Sign, &cmac),
            (Init::Verify, &cmac),
        ] {
            let what = format!("C_{init:?}Init key {bad:#x}");
            check(init.call(&h, m, bad), CKR_KEY_HANDLE_INVALID, &what);
        }
    }
    let doomed = key_with(all(true, true, true, true), CKK_AES);
    check(
        ck!(h.m, C_DestroyObject(h.s, doomed)),
        CKR_OK,
        "C_DestroyObject",
    );
    check(
        h.crypt_init(Dir::Enc, &gm, doomed),
        CKR_KEY_HANDLE_INVALID,
        "C_EncryptInit with a destroyed key",
    );

    // Second init while active; the first operation is unaffected.
    let want = ok(
        h.crypt(Dir::Enc, &plain(CKM_AES_ECB), good, &[1u8; 16]),
        "ECB",
    );
    check(
        h.crypt_init(Dir::Enc, &plain(CKM_AES_ECB), good),
        CKR_OK,
        "C_EncryptInit",
    );
    check(
        h.crypt_init(Dir::Enc, &gm, good),
        CKR_OPERATION_ACTIVE,
        "second C_EncryptInit",
    );
    assert_eq!(
        ok(h.once(Dir::Enc, &[1u8; 16]), "ECB after OPERATION_ACTIVE"),
        want
    );
    check(
        h.crypt_init(Dir::Dec, &plain(CKM_AES_ECB), good),
        CKR_OK,
        "C_DecryptInit",
    );
    check(
        h.crypt_init(Dir::Dec, &gm, good),
        CKR_OPERATION_ACTIVE,
        "second C_DecryptInit",
    );
    assert_eq!(
        ok(
            h.once(Dir::Dec, &want),
            "ECB decrypt after OPERATION_ACTIVE"
        ),
        [1u8; 16]
    );
    check(h.sign_init(&cmac, good), CKR_OK, "C_SignInit");
    check(
        h.sign_init(&cmac, good),
        CKR_OPERATION_ACTIVE,
        "second C_SignInit",
    );
    check(
        h.sign_update(b"abc"),
        CKR_OK,
        "C_SignUpdate after OPERATION_ACTIVE",
    );
    let mut s = [0u8; 16];
    let (rv, _) = h.sign_final_raw(Some(&mut s));
    check(rv, CKR_OK, "C_SignFinal after OPERATION_ACTIVE");
    check(h.verify_init(&cmac, good), CKR_OK, "C_VerifyInit");
    check(
        h.verify_init(&cmac, good),
        CKR_OPERATION_ACTIVE,
        "second C_VerifyInit",
    );
    check(
        h.verify_once(b"abc", &s),
        CKR_OK,
        "C_Verify after OPERATION_ACTIVE",
    );
    // Functions without an operation.
    err(
        h.once(Dir::Enc, b"x"),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_Encrypt without init",
    );
    err(
        h.update(Dir::Dec, b"x"),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_DecryptUpdate without init",
    );
    check(
        h.sign_update(b"x"),
        CKR_OPERATION_NOT_INITIALIZED,
        "C_SignUpdate without init",
    );
}

// ---------------------------------------------------------------------------
// mechanism info, key generation, check values
// ---------------------------------------------------------------------------

#[test]
fn mechanism_info_flags() {
    let (_env, h) = hsm();
    let ed = CKF_ENCRYPT | CKF_DECRYPT;
    let sv = CKF_SIGN | CKF_VERIFY;
    let mut list: Vec<(&str, CK_MECHANISM_TYPE, CK_FLAGS)> = vec![
        ("AES_KEY_GEN", CKM_AES_KEY_GEN, CKF_GENERATE),
        (
            "GENERIC_SECRET_KEY_GEN",
            CKM_GENERIC_SECRET_KEY_GEN,
            CKF_GENERATE,
        ),
        ("AES_ECB", CKM_AES_ECB, ed),
        ("AES_CBC", CKM_AES_CBC, ed),
        ("AES_CBC_PAD", CKM_AES_CBC_PAD, ed),
        ("AES_CTR", CKM_AES_CTR, ed),
        ("AES_GCM", CKM_AES_GCM, ed),
        ("AES_KEY_WRAP", CKM_AES_KEY_WRAP, ed),
        ("AES_KEY_WRAP_KWP", CKM_AES_KEY_WRAP_KWP, ed),
        ("AES_CMAC", CKM_AES_CMAC, sv),
        ("AES_CMAC_GENERAL", CKM_AES_CMAC_GENERAL, sv),
    ];
    for &(n, full, general, _) in HASHES {
        list.push((n, full, sv));
        list.push((n, general, sv));
    }
    let mut count: CK_ULONG = 0;
    check(
        ck!(h.m, C_GetMechanismList(h.slot, ptr::null_mut(), &mut count)),
        CKR_OK,
        "C_GetMechanismList count",
    );
    let mut all = vec![0; count as usize];
    check(
        ck!(
            h.m,
            C_GetMechanismList(h.slot, all.as_mut_ptr(), &mut count)
        ),
        CKR_OK,
        "C_GetMechanismList",
    );
    for (name, mech, flags) in &list {
        assert!(
            all.contains(mech),
            "C_GetMechanismList lacks {name} ({mech:#x})"
        );
        let mut info = CK_MECHANISM_INFO::default();
        check(
            ck!(h.m, C_GetMechanismInfo(h.slot, *mech, &mut info)),
            CKR_OK,
            &format!("C_GetMechanismInfo {name}"),
        );
        assert!(info.flags & CKF_HW != 0, "{name}: CKF_HW not set");
        assert_eq!(
            info.flags & flags,
            *flags,
            "{name}: flags {:#x} lack {flags:#x}",
            info.flags
        );
        if name.starts_with("AES") {
            assert_eq!(
                (info.ulMinKeySize, info.ulMaxKeySize),
                (16, 32),
                "{name}: AES key size range in bytes"
            );
        }
    }
}

fn keygen_template(
    len: Option<CK_ULONG>,
    extra: Vec<(CK_ATTRIBUTE_TYPE, V)>,
) -> Vec<(CK_ATTRIBUTE_TYPE, V)> {
    let mut t = vec![
        (CKA_TOKEN, V::B(false)),
        (CKA_ENCRYPT, V::B(true)),
        (CKA_DECRYPT, V::B(true)),
        (CKA_SIGN, V::B(true)),
        (CKA_VERIFY, V::B(true)),
    ];
    if let Some(l) = len {
        t.push((CKA_VALUE_LEN, V::U(l)));
    }
    t.extend(extra);
    t
}

/// Checks the attributes every generated key must have.
fn check_generated(
    h: &Hsm,
    k: CK_OBJECT_HANDLE,
    mech: CK_MECHANISM_TYPE,
    kt: CK_KEY_TYPE,
    len: usize,
    what: &str,
) {
    assert_eq!(
        h.get_ulong(k, CKA_CLASS),
        CKO_SECRET_KEY,
        "{what}: CKA_CLASS"
    );
    assert_eq!(h.get_ulong(k, CKA_KEY_TYPE), kt, "{what}: CKA_KEY_TYPE");
    assert_eq!(
        h.get_ulong(k, CKA_VALUE_LEN),
        len as CK_ULONG,
        "{what}: CKA_VALUE_LEN"
    );
    assert!(h.get_bool(k, CKA_LOCAL), "{what}: CKA_LOCAL must be TRUE");
    assert_eq!(
        h.get_ulong(k, CKA_KEY_GEN_MECHANISM),
        mech,
        "{what}: CKA_KEY_GEN_MECHANISM"
    );
    let sens = h.get_bool(k, CKA_SENSITIVE);
    let extr = h.get_bool(k, CKA_EXTRACTABLE);
    assert_eq!(
        h.get_bool(k, CKA_ALWAYS_SENSITIVE),
        sens,
        "{what}: CKA_ALWAYS_SENSITIVE = CKA_SENSITIVE"
    );
    assert_eq!(
        h.get_bool(k, CKA_NEVER_EXTRACTABLE),
        !extr,
        "{what}: CKA_NEVER_EXTRACTABLE = !CKA_EXTRACTABLE"
    );
    let cv = ok(
        h.get(k, CKA_CHECK_VALUE),
        &format!("{what}: CKA_CHECK_VALUE"),
    );
    assert_eq!(cv.len(), 3, "{what}: CKA_CHECK_VALUE must be 3 bytes");
    if kt == CKK_AES {
        assert_eq!(
            cv,
            h.zero_block(k)[..3],
            "{what}: CKA_CHECK_VALUE = E_K(0)[0..3]"
        );
    }
    if sens {
        err(
            h.get(k, CKA_VALUE),
            CKR_ATTRIBUTE_SENSITIVE,
            &format!("{what}: CKA_VALUE"),
        );
    }
}

#[test]
fn generate_aes_and_generic_secret_keys() {
    let (_env, h) = hsm();
    for len in [16usize, 24, 32] {
        let what = format!("AES-{}", len * 8);
        let k = ok(
            h.generate(
                CKM_AES_KEY_GEN,
                keygen_template(Some(len as CK_ULONG), vec![]),
            ),
            &format!("C_GenerateKey {what}"),
        );
        check_generated(&h, k, CKM_AES_KEY_GEN, CKK_AES, len, &what);
        assert!(
            h.get_bool(k, CKA_SENSITIVE),
            "{what}: hsm policy makes it sensitive"
        );
        assert!(
            !h.get_bool(k, CKA_EXTRACTABLE),
            "{what}: hsm policy makes it non-extractable"
        );
        assert!(h.get_bool(k, CKA_PRIVATE), "{what}: private by default");
        let gm = gcm(&[1u8; 12], b"a", 128);
        let ct = ok(
            h.crypt(Dir::Enc, &gm, k, b"generated"),
            "GCM with a generated key",
        );
        assert_eq!(
            ok(h.crypt(Dir::Dec, &gm, k, &ct), "GCM decrypt"),
            b"generated"
        );
        // Another key gives another check value (keys are random).
        let k2 = ok(
            h.generate(
                CKM_AES_KEY_GEN,
                keygen_template(Some(len as CK_ULONG), vec![]),
            ),
            "second key",
        );
        assert_ne!(
            h.zero_block(k),
            h.zero_block(k2),
            "{what}: two generated keys are equal"
        );
    }
    // Extractable generated key: CKA_NEVER_EXTRACTABLE FALSE.
    let k = ok(
        h.generate(
            CKM_AES_KEY_GEN,
            keygen_template(Some(32), vec![(CKA_EXTRACTABLE, V::B(true))]),
        ),
        "C_GenerateKey AES extractable",
    );
    check_generated(&h, k, CKM_AES_KEY_GEN, CKK_AES, 32, "AES extractable");
    assert!(h.get_bool(k, CKA_EXTRACTABLE));
    assert!(
        !h.get_bool(k, CKA_NEVER_EXTRACTABLE),
        "extractable key: CKA_NEVER_EXTRACTABLE"
    );

    for len in [1usize, 20, 32, 64, 200, 512] {
        let what = format!("generic secret {len} bytes");
        let k = ok(
            h.generate(
                CKM_GENERIC_SECRET_KEY_GEN,
                keygen_template(Some(len as CK_ULONG), vec![]),
            ),
            &format!("C_GenerateKey {what}"),
        );
        check_generated(
            &h,
            k,
            CKM_GENERIC_SECRET_KEY_GEN,
            CKK_GENERIC_SECRET,
            len,
            &what,
        );
        let mac = ok(
            h.sign(&plain(CKM_SHA256_HMAC), k, b"data"),
            &format!("HMAC with {what}"),
        );
        check(
            h.verify(&plain(CKM_SHA256_HMAC), k, b"data", &mac),
            CKR_OK,
            "HMAC verify",
        );
    }
    // Token key generation works too.
    let k = ok(
        h.generate(
            CKM_AES_KEY_GEN,
            vec![
                (CKA_TOKEN, V::B(true)),
                (CKA_LABEL, V::Bytes(b"gen-token".to_vec())),
                (CKA_VALUE_LEN, V::U(32)),
                (CKA_ENCRYPT, V::B(true)),
            ],
        ),
        "C_GenerateKey token AES",
    );
    assert!(h.get_bool(k, CKA_TOKEN));
}

#[test]
fn generate_key_template_errors() {
    let (_env, h) = hsm();
    for len in [0 as CK_ULONG, 8, 15, 17, 31, 33, 64] {
        err(
            h.generate(CKM_AES_KEY_GEN, keygen_template(Some(len), vec![])),
            CKR_ATTRIBUTE_VALUE_INVALID,
            &format!("AES_KEY_GEN with CKA_VALUE_LEN {len}"),
        );
    }
    for len in [0 as CK_ULONG, 513, 4096] {
        err(
            h.generate(
                CKM_GENERIC_SECRET_KEY_GEN,
                keygen_template(Some(len), vec![]),
            ),
            CKR_ATTRIBUTE_VALUE_INVALID,
            &format!("GENERIC_SECRET_KEY_GEN with CKA_VALUE_LEN {len}"),
        );
    }
    err(
        h.generate(CKM_AES_KEY_GEN, keygen_template(None, vec![])),
        CKR_TEMPLATE_INCOMPLETE,
        "AES_KEY_GEN without CKA_VALUE_LEN",
    );
    err(
        h.generate(CKM_GENERIC_SECRET_KEY_GEN, keygen_template(None, vec![])),
        CKR_TEMPLATE_INCOMPLETE,
        "GENERIC_SECRET_KEY_GEN without CKA_VALUE_LEN",
    );
    // A value is never accepted in a generation template (the spec allows either code).
    let r = h.generate(
        CKM_AES_KEY_GEN,
        keygen_template(Some(16), vec![(CKA_VALUE, V::Bytes(vec![0u8; 16]))]),
    );
    match r {
        Err(CKR_TEMPLATE_INCONSISTENT) | Err(CKR_ATTRIBUTE_READ_ONLY) => {}
        Err(rv) => panic!(
            "AES_KEY_GEN with CKA_VALUE: expected CKR_TEMPLATE_INCONSISTENT or CKR_ATTRIBUTE_READ_ONLY, got {}",
            rv_name(rv)
        ),
        Ok(_) => {
            panic!("AES_KEY_GEN with CKA_VALUE in the template: expected an error, got CKR_OK")
        }
    }
}

#[test]
fn imported_keys_get_check_value_and_value_len() {
    let (env, h) = hsm();
    let mut rng = Rng::seeded("imported_keys_get_check_value_and_value_len");
    for len in [16usize, 24, 32] {
        let v = rng.bytes(len);
        let k = h.aes(&v);
        assert_eq!(
            h.get_ulong(k, CKA_VALUE_LEN),
            len as CK_ULONG,
            "imported AES CKA_VALUE_LEN"
        );
        let want = openssl_aes_zero_block(&env, &v);
        let cv = ok(h.get(k, CKA_CHECK_VALUE), "CKA_CHECK_VALUE");
        assert_eq!(
            to_hex(&cv),
            to_hex(&want[..3]),
            "imported AES-{} CKA_CHECK_VALUE (openssl)",
            len * 8
        );
        assert!(!h.get_bool(k, CKA_LOCAL), "imported key: CKA_LOCAL FALSE");
    }
    for len in [1usize, 20, 100] {
        let v = rng.bytes(len);
        let k = h.generic(&v);
        assert_eq!(
            h.get_ulong(k, CKA_VALUE_LEN),
            len as CK_ULONG,
            "imported generic CKA_VALUE_LEN"
        );
        let cv = ok(h.get(k, CKA_CHECK_VALUE), "CKA_CHECK_VALUE");
        assert_eq!(
            cv,
            sha1::Sha1::digest(&v)[..3],
            "generic secret CKA_CHECK_VALUE = SHA-1(value)[0..3]"
        );
    }
    // A wrong AES key length is refused.
    err(
        h.create(vec![
            (CKA_CLASS, V::U(CKO_SECRET_KEY)),
            (CKA_KEY_TYPE, V::U(CKK_AES)),
            (CKA_VALUE, V::Bytes(vec![0u8; 20])),
        ]),
        CKR_ATTRIBUTE_VALUE_INVALID,
        "C_CreateObject AES with a 20-byte value",
    );
}

#[test]
fn generated_key_values_on_spec_token() {
    let env = TestEnv::with_config("default_policy = \"spec\"");
    let h = Tok::ready("symmetric");
    for len in [16usize, 24, 32] {
        let k = ok(
            h.generate(
                CKM_AES_KEY_GEN,
                keygen_template(
                    Some(len as CK_ULONG),
                    vec![(CKA_SENSITIVE, V::B(false)), (CKA_EXTRACTABLE, V::B(true))],
                ),
            ),
            "C_GenerateKey AES on a spec token",
        );
        let what = format!("spec AES-{}", len * 8);
        check_generated(&h, k, CKM_AES_KEY_GEN, CKK_AES, len, &what);
        assert!(
            !h.get_bool(k, CKA_ALWAYS_SENSITIVE),
            "{what}: CKA_ALWAYS_SENSITIVE"
        );
        assert!(
            !h.get_bool(k, CKA_NEVER_EXTRACTABLE),
            "{what}: CKA_NEVER_EXTRACTABLE"
        );
        let v = ok(h.get(k, CKA_VALUE), &format!("{what}: CKA_VALUE"));
        assert_eq!(v.len(), len, "{what}: value length");
        let want = openssl_aes_zero_block(&env, &v);
        let cv = ok(h.get(k, CKA_CHECK_VALUE), "CKA_CHECK_VALUE");
        assert_eq!(
            to_hex(&cv),
            to_hex(&want[..3]),
            "{what}: CKA_CHECK_VALUE vs openssl"
        );
        // The module encrypts with exactly this value.
        let iv = [0x5au8; 16];
        let data = b"spec token data, more than one block".to_vec();
        let got = ok(h.crypt(Dir::Enc, &cbc_pad(&iv), k, &data), "CBC_PAD");
        let want = openssl(
            &env,
            &[
                "enc",
                &format!("-aes-{}-cbc", len * 8),
                "-K",
                &to_hex(&v),
                "-iv",
                &to_hex(&iv),
            ],
            &data,
        );
        assert_eq!(
            to_hex(&got),
            to_hex(&want),
            "{what}: CBC_PAD with the generated value vs openssl"
        );
    }
    let k = ok(
        h.generate(
            CKM_GENERIC_SECRET_KEY_GEN,
            keygen_template(
                Some(48),
                vec![(CKA_SENSITIVE, V::B(false)), (CKA_EXTRACTABLE, V::B(true))],
            ),
        ),
        "C_GenerateKey generic on a spec token",
    );
    check_generated(
        &h,
        k,
        CKM_GENERIC_SECRET_KEY_GEN,
        CKK_GENERIC_SECRET,
        48,
        "spec generic",
    );
    let v = ok(h.get(k, CKA_VALUE), "generic CKA_VALUE");
    assert_eq!(v.len(), 48);
    let cv = ok(h.get(k, CKA_CHECK_VALUE), "CKA_CHECK_VALUE");
    assert_eq!(
        cv,
        sha1::Sha1::digest(&v)[..3],
        "generic CKA_CHECK_VALUE = SHA-1(value)[0..3]"
    );
    let mac = ok(h.sign(&plain(CKM_SHA256_HMAC), k, b"abc"), "HMAC");
    let want = openssl_mac(&env, "HMAC", ("-digest", "SHA256"), &v, b"abc");
    assert_eq!(mac, want, "HMAC with the generated value vs openssl");
}

#[test]
fn ctr_multipart_partial_blocks() {
    let (_env, h) = hsm();
    let key = h.aes(&from_hex("2b7e151628aed2a6abf7158809cf4f3c"));
    let cb: [u8; 16] = from_hex("f0f1f2f3f4f5f6f7f8f9fafbfcfdfeff")
        .try_into()
        .unwrap();
    let data: Vec<u8> = (0..64u8).collect();
    let want = ok(
        h.crypt(Dir::Enc, &Mech::Ctr(128, cb), key, &data),
        "CTR single-part",
    );
    let patterns: &[&[usize]] = &[
        &[16, 32, 48],
        &[7],
        &[7, 16],
        &[7, 20],
        &[7, 7, 20],
        &[1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17],
        &[15, 33],
        &[20, 40, 60],
        &[3, 5],
        &[3, 3],
    ];
    let mut failed = Vec::new();
    for cuts in patterns {
        let got = ok(
            h.crypt_multi(Dir::Enc, &Mech::Ctr(128, cb), key, &data, cuts),
            &format!("CTR multi-part, cuts {cuts:?}"),
        );
        if got != want {
            let first = got.iter().zip(&want).position(|(a, b)| a != b);
            failed.push(format!(
                "encrypt, cuts {cuts:?}: first wrong byte at {first:?}"
            ));
        }
        let back = ok(
            h.crypt_multi(Dir::Dec, &Mech::Ctr(128, cb), key, &want, cuts),
            &format!("CTR multi-part decrypt, cuts {cuts:?}"),
        );
        if back != data {
            let first = back.iter().zip(&data).position(|(a, b)| a != b);
            failed.push(format!(
                "decrypt, cuts {cuts:?}: first wrong byte at {first:?}"
            ));
        }
    }
    assert!(
        failed.is_empty(),
        "CTR multi-part output differs from single-part for: {failed:#?}"
    );
}
