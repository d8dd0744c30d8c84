//! P-521 through the family's code: FIPS 186-4 CAVP and RFC 6979 A.2.7
//! vectors, and the leftmost-521-bit truncation of long `CKM_ECDSA` input.
use super::*;
use hex_literal::hex;

fn key_object(class: CK_ULONG, mut attrs: Attrs) -> Object {
    attrs.insert(CKA_CLASS, AttrValue::Ulong(class as _));
    attrs.insert(CKA_KEY_TYPE, AttrValue::Ulong(CKK_EC as _));
    Object {
        handle: 1,
        store_id: 1,
        owner: None,
        attrs,
        cache: Default::default(),
    }
}

fn p521_pair(d: &[u8], x: &[u8], y: &[u8]) -> (Object, Object) {
    let mut private = Attrs::new();
    private.insert(CKA_EC_PARAMS, AttrValue::Bytes(P521_PARAMS.to_vec()));
    private.insert(CKA_VALUE, AttrValue::Bytes(d.to_vec()));
    check_private_import(&mut private).unwrap();
    let mut public = Attrs::new();
    public.insert(CKA_EC_PARAMS, AttrValue::Bytes(P521_PARAMS.to_vec()));
    public.insert(CKA_EC_POINT, AttrValue::Bytes([&[4u8][..], x, y].concat()));
    check_public_import(&mut public).unwrap();
    assert_eq!(
        public.get(&CKA_PUBLIC_KEY_INFO),
        private.get(&CKA_PUBLIC_KEY_INFO)
    );
    // Stored in the spec's form: OCTET STRING with a long-form length.
    let point = match public.get(&CKA_EC_POINT) {
        Some(AttrValue::Bytes(p)) => p.clone(),
        _ => panic!("no CKA_EC_POINT"),
    };
    assert_eq!(point[..4], [0x04, 0x81, 0x85, 0x04]);
    assert_eq!(sec1_point(&point, Curve::P521).map(<[u8]>::len), Some(133));
    (
        key_object(CKO_PRIVATE_KEY, private),
        key_object(CKO_PUBLIC_KEY, public),
    )
}

fn run(
    key: &Object,
    verify: bool,
    hash: Option<CK_MECHANISM_TYPE>,
    data: &[u8],
    sig: &mut [u8],
) -> Result<()> {
    let mut op = ecdsa(&Param::None, key, verify, hash)?;
    op.update(data)?;
    if verify { op.verify(sig) } else { op.sign(sig) }
}

/// FIPS 186-4 CAVP SigGen, P-521 with SHA-512 (the first vector of
/// `186-4ecdsatestvectors.zip`, as RustCrypto's `p521` carries it: `m`
/// is the SHA-512 of the message), and RFC 6979 A.2.7 (P-521, SHA-512,
/// "sample"), whose deterministic signature RustCrypto reproduces.
#[test]
fn p521_cavp_and_rfc6979_vectors() {
    let (_, public) = p521_pair(
        &hex!(
            "00f749d32704bc533ca82cef0acf103d8f4fba67f08d2678e515ed7db886267ffaf02fab0080dca2359b72f574ccc29a0f218c8655c0cccf9fee6c5e567aa14cb926"
        ),
        &hex!(
            "0061387fd6b95914e885f912edfbb5fb274655027f216c4091ca83e19336740fd81aedfe047f51b42bdf68161121013e0d55b117a14e4303f926c8debb77a7fdaad1"
        ),
        &hex!(
            "00e7d0c75c38626e895ca21526b9f9fdf84dcecb93f2b233390550d2b1463b7ee3f58df7346435ff0434199583c97c665a97f12f706f2357da4b40288def888e59e6"
        ),
    );
    let m = hex!(
        "65f83408092261bda599389df03382c5be01a81fe00a36f3f4bb6541263f801627c440e50809712b0cace7c217e6e5051af81de9bfec3204dcd63c4f9a741047"
    );
    let mut sig = hex!(
        "004de826ea704ad10bc0f7538af8a3843f284f55c8b946af9235af5af74f2b76e099e4bc72fd79d28a380f8d4b4c919ac290d248c37983ba05aea42e2dd79fdd33e8"
        "0087488c859a96fea266ea13bf6d114c429b163be97a57559086edb64aed4a18594b46fb9efc7fd25d8b2de8f09ca0587f54bd287299f47b2ff124aac566e8ee3b43"
    );
    // CKM_ECDSA over the 64-byte hash: the backend (AWS-LC in the
    // default build) and RustCrypto both.
    run(&public, true, None, &m, &mut sig).unwrap();
    let k = public_key(&public).unwrap();
    assert_eq!(k.verify_field(&to_field(&m, Curve::P521), &sig), Ok(()));
    sig[70] ^= 1;
    assert_eq!(
        run(&public, true, None, &m, &mut sig),
        Err(Error::SignatureInvalid)
    );
    assert_eq!(
        k.verify_field(&to_field(&m, Curve::P521), &sig),
        Err(Error::SignatureInvalid)
    );
    assert_eq!(
        run(&public, true, None, &m, &mut sig[..131]),
        Err(Error::SignatureLenRange)
    );

    let (private, public) = p521_pair(
        &hex!(
            "00FAD06DAA62BA3B25D2FB40133DA757205DE67F5BB0018FEE8C86E1B68C7E75CAA896EB32F1F47C70855836A6D16FCC1466F6D8FBEC67DB89EC0C08B0E996B83538"
        ),
        &hex!(
            "01894550D0785932E00EAA23B694F213F8C3121F86DC97A04E5A7167DB4E5BCD371123D46E45DB6B5D5370A7F20FB633155D38FFA16D2BD761DCAC474B9A2F5023A4"
        ),
        &hex!(
            "00493101C962CD4D2FDDF782285E64584139C2F91B47F87FF82354D6630F746A28A0DB25741B5B34A828008B22ACC23F924FAAFBD4D33F81EA66956DFEAA2BFDFCF5"
        ),
    );
    let want = hex!(
        "00C328FAFCBD79DD77850370C46325D987CB525569FB63C5D3BC53950E6D4C5F174E25A1EE9017B5D450606ADD152B534931D7D4E8455CC91F9B15BF05EC36E377FA"
        "00617CCE7CF5064806C467F678D3B4080D6F1CC50AF26CA209417308281B68AF282623EAA63E5B5C0723D8B8C37FF0777B1A20F8CCB1DCCC43997F1EE0E44DA4A67A"
    );
    // RustCrypto's deterministic nonce (the unit tests' backend, AWS-LC,
    // signs with random ones).
    use sha2::Digest;
    let h = sha2::Sha512::digest(b"sample");
    let k = private_key(&private).unwrap();
    assert_eq!(k.sign_field(&to_field(&h, Curve::P521)).unwrap(), want);
    let mut sig = want;
    run(&public, true, Some(CKM_SHA512), b"sample", &mut sig).unwrap();
    run(&private, false, Some(CKM_SHA512), b"sample", &mut sig).unwrap();
    run(&public, true, Some(CKM_SHA512), b"sample", &mut sig).unwrap();
    // A hash shorter than the field (SHA-256) signs and verifies too.
    run(&private, false, Some(CKM_SHA256), b"sample", &mut sig).unwrap();
    run(&public, true, Some(CKM_SHA256), b"sample", &mut sig).unwrap();
    assert_eq!(
        run(&public, true, Some(CKM_SHA384), b"sample", &mut sig),
        Err(Error::SignatureInvalid)
    );
}

#[test]
fn p521_input_keeps_its_leftmost_521_bits() {
    // 80 bytes of ones: the leftmost 521 bits are 0x01ff…ff.
    let z = to_field(&[0xff; 80], Curve::P521);
    assert_eq!(z.len(), 66);
    assert_eq!(z[0], 0x01);
    assert!(z[1..].iter().all(|&b| b == 0xff));
    // A one in the top bit of 66 bytes lands in bit 520.
    let mut h = [0u8; 66];
    h[0] = 0x80;
    h[65] = 0x7f; // shifted out
    let z = to_field(&h, Curve::P521);
    assert_eq!(z[0], 0x01);
    assert!(z[1..].iter().all(|&b| b == 0));
    // 0xab, 0xcd … shifted right by 7 bits carries across bytes.
    let mut h = [0u8; 66];
    h[0] = 0xab;
    h[1] = 0xcd;
    let z = to_field(&h, Curve::P521);
    assert_eq!(z[..3], [0x01, 0x57, 0x9a]);
    // 65 bytes (520 bits) fit: only padded.
    let z = to_field(&[0xee; 65], Curve::P521);
    assert_eq!(z[0], 0);
    assert!(z[1..].iter().all(|&b| b == 0xee));
    // Sign and verify such input end to end.
    let mut t = Attrs::new();
    t.insert(CKA_EC_PARAMS, AttrValue::Bytes(P521_PARAMS.to_vec()));
    let (public, mut private) = generate(&t).unwrap();
    private.insert(CKA_EC_PARAMS, AttrValue::Bytes(P521_PARAMS.to_vec()));
    let (public, private) = (
        key_object(CKO_PUBLIC_KEY, public),
        key_object(CKO_PRIVATE_KEY, private),
    );
    let mut sig = [0u8; 132];
    run(&private, false, None, &[0x5a; 100], &mut sig).unwrap();
    run(&public, true, None, &[0x5a; 100], &mut sig).unwrap();
    // Only the leftmost 521 bits count.
    let mut other = [0x5a; 100];
    other[66] = 0;
    run(&public, true, None, &other, &mut sig).unwrap();
    other[65] ^= 0x80;
    assert_eq!(
        run(&public, true, None, &other, &mut sig),
        Err(Error::SignatureInvalid)
    );
}
