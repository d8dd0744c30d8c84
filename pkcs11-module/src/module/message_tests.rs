//! Random sequences of the functions of issue 17 (cause 3) on a `Module`:
//! message-based encryption and signatures, sign/verify recovery, saved
//! operation states. Whatever the order and parameters, no call panics or
//! answers `CKR_GENERAL_ERROR`, and an encryption that succeeded decrypts.

use std::sync::Arc;

use cryptoki_sys::*;
use ferrohsm_store::MemoryStore;
use proptest::prelude::*;

use super::Module;
use crate::config::Config;
use crate::error::Error;
use crate::mechanism::message::{GcmMessage, MessageParam};
use crate::mechanism::{Dir, MechanismArg, Param};
use crate::object::policy::RawAttr;
use crate::session::OutBuf;

struct World {
    m: Module,
    s: CK_SESSION_HANDLE,
    keys: Vec<CK_OBJECT_HANDLE>,
    states: Vec<Vec<u8>>,
}

fn world() -> World {
    let m = Module::new(Config::for_tests(), Arc::new(MemoryStore::new())).unwrap();
    let mut label = [b' '; 32];
    label[0] = b't';
    m.init_token(0, b"so-secret", &label).unwrap();
    let s = m
        .open_session(0, CKF_SERIAL_SESSION | CKF_RW_SESSION)
        .unwrap();
    m.login(s, CKU_SO, b"so-secret").unwrap();
    m.init_pin(s, b"user-secret").unwrap();
    m.logout(s).unwrap();
    m.login(s, CKU_USER, b"user-secret").unwrap();
    let secret = |kt, v: &[u8]| {
        vec![
            RawAttr::ulong(CKA_CLASS, CKO_SECRET_KEY),
            RawAttr::ulong(CKA_KEY_TYPE, kt),
            RawAttr::new(CKA_VALUE, v),
            RawAttr::bool(CKA_ENCRYPT, true),
            RawAttr::bool(CKA_DECRYPT, true),
            RawAttr::bool(CKA_SIGN, true),
            RawAttr::bool(CKA_VERIFY, true),
        ]
    };
    let keys = vec![
        m.create_object(s, &secret(CKK_AES, &[1; 16])).unwrap(),
        m.create_object(s, &secret(CKK_AES, &[2; 32])).unwrap(),
        m.create_object(s, &secret(CKK_GENERIC_SECRET, &[3; 32]))
            .unwrap(),
    ];
    World {
        m,
        s,
        keys,
        states: Vec::new(),
    }
}

#[derive(Clone, Debug)]
enum Call {
    MsgInit {
        dir: bool,
        ty: u8,
        key: u8,
        param: u8,
    },
    Message {
        dir: bool,
        p: GcmMessage,
        aad: Vec<u8>,
        data: Vec<u8>,
        out: Option<usize>,
    },
    Begin {
        dir: bool,
        p: GcmMessage,
        aad: Vec<u8>,
    },
    Next {
        dir: bool,
        p: GcmMessage,
        data: Vec<u8>,
        out: Option<usize>,
        last: bool,
    },
    MsgFinal {
        dir: bool,
    },
    SignInit {
        verify: bool,
        ty: u8,
        key: u8,
    },
    SignMessage {
        data: Vec<u8>,
        out: Option<usize>,
    },
    VerifyMessage {
        data: Vec<u8>,
        sig: Vec<u8>,
    },
    SignBegin {
        verify: bool,
    },
    SignNext {
        data: Vec<u8>,
        out: Option<Option<usize>>,
    },
    VerifyNext {
        data: Vec<u8>,
        sig: Option<Vec<u8>>,
    },
    SignFinal {
        verify: bool,
    },
    DigestInit,
    DigestUpdate(Vec<u8>),
    GetState {
        out: Option<usize>,
    },
    SetState {
        which: u8,
        flip: Option<u16>,
        cut: u8,
        key: u8,
    },
    RecoverInit {
        verify: bool,
        key: u8,
    },
    Recover {
        verify: bool,
        data: Vec<u8>,
        out: Option<usize>,
    },
}

fn gcm_message() -> impl Strategy<Value = GcmMessage> {
    (
        prop_oneof![Just(12usize), 0usize..20, Just(300)],
        prop_oneof![Just(0u64), Just(32), 0u64..200],
        prop_oneof![
            Just(CKG_NO_GENERATE),
            Just(CKG_GENERATE),
            Just(CKG_GENERATE_COUNTER),
            Just(CKG_GENERATE_RANDOM),
            Just(9)
        ],
        prop_oneof![Just(128u64), Just(96), 0u64..140],
        any::<u8>(),
    )
        .prop_map(|(iv, fixed_bits, generator, tag_bits, fill)| GcmMessage {
            iv: vec![fill; iv],
            fixed_bits,
            generator,
            tag_bits,
            tag: vec![fill; tag_bits.div_ceil(8).min(16) as usize],
            iv_out: false,
            tag_out: false,
        })
}

fn bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(any::<u8>(), 0..70)
}

fn out() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![Just(None), (0usize..80).prop_map(Some), Just(Some(600))]
}

fn call() -> impl Strategy<Value = Call> {
    prop_oneof![
        (any::<bool>(), any::<u8>(), any::<u8>(), any::<u8>()).prop_map(|(dir, ty, key, param)| {
            Call::MsgInit {
                dir,
                ty,
                key,
                param,
            }
        }),
        (any::<bool>(), gcm_message(), bytes(), bytes(), out()).prop_map(
            |(dir, p, aad, data, out)| Call::Message {
                dir,
                p,
                aad,
                data,
                out
            }
        ),
        (any::<bool>(), gcm_message(), bytes()).prop_map(|(dir, p, aad)| Call::Begin {
            dir,
            p,
            aad
        }),
        (any::<bool>(), gcm_message(), bytes(), out(), any::<bool>()).prop_map(
            |(dir, p, data, out, last)| Call::Next {
                dir,
                p,
                data,
                out,
                last
            }
        ),
        any::<bool>().prop_map(|dir| Call::MsgFinal { dir }),
        (any::<bool>(), any::<u8>(), any::<u8>()).prop_map(|(verify, ty, key)| Call::SignInit {
            verify,
            ty,
            key
        }),
        (bytes(), out()).prop_map(|(data, out)| Call::SignMessage { data, out }),
        (bytes(), bytes()).prop_map(|(data, sig)| Call::VerifyMessage { data, sig }),
        any::<bool>().prop_map(|verify| Call::SignBegin { verify }),
        (bytes(), prop::option::of(out())).prop_map(|(data, out)| Call::SignNext { data, out }),
        (bytes(), prop::option::of(bytes())).prop_map(|(data, sig)| Call::VerifyNext { data, sig }),
        any::<bool>().prop_map(|verify| Call::SignFinal { verify }),
        Just(Call::DigestInit),
        bytes().prop_map(Call::DigestUpdate),
        out().prop_map(|out| Call::GetState { out }),
        (
            any::<u8>(),
            prop::option::of(any::<u16>()),
            any::<u8>(),
            any::<u8>()
        )
            .prop_map(|(which, flip, cut, key)| Call::SetState {
                which,
                flip,
                cut,
                key
            }),
        (any::<bool>(), any::<u8>()).prop_map(|(verify, key)| Call::RecoverInit { verify, key }),
        (any::<bool>(), bytes(), out()).prop_map(|(verify, data, out)| Call::Recover {
            verify,
            data,
            out
        }),
    ]
}

fn d(dir: bool) -> Dir {
    if dir { Dir::Encrypt } else { Dir::Decrypt }
}

fn with_out(
    out: &Option<usize>,
    f: impl FnOnce(&mut OutBuf<'_>) -> Result<(), Error>,
) -> Result<(), Error> {
    let mut buf = vec![0u8; out.unwrap_or(0)];
    let mut o = OutBuf::new(out.map(|_| &mut buf[..]));
    f(&mut o)
}

fn run(w: &mut World, c: &Call) -> Result<(), Error> {
    let (m, s) = (&w.m, w.s);
    let key = |k: &u8| w.keys.get(*k as usize % 4).copied().unwrap_or(0xdead);
    match c {
        Call::MsgInit {
            dir,
            ty,
            key: k,
            param,
        } => {
            let ty = [CKM_AES_GCM, CKM_AES_CBC, CKM_SHA256_HMAC][*ty as usize % 3];
            let param = match param % 3 {
                0 => Param::None,
                1 => Param::Raw(vec![0; 48]),
                _ => Param::Raw(vec![0; 7]),
            };
            m.message_cipher_init(s, &MechanismArg { ty, param }, key(k), d(*dir))
        }
        Call::Message {
            dir,
            p,
            aad,
            data,
            out,
        } => {
            let mut p = MessageParam::Gcm(p.clone());
            let mut buf = vec![0u8; out.unwrap_or(0)];
            let mut o = OutBuf::new(out.map(|_| &mut buf[..]));
            let r = m.cipher_message(s, d(*dir), &mut p, aad, data, &mut o);
            let n = o.len();
            if r.is_ok() && *dir && out.is_some() {
                // What was sealed opens again, with the IV and tag written back.
                let MessageParam::Gcm(g) = &mut p else {
                    unreachable!()
                };
                g.generator = CKG_NO_GENERATE;
                let ct = buf[..n].to_vec();
                let a = w.m.session(s).unwrap();
                let ops = a.ops.lock();
                let st = ops.msg_encrypt.as_ref().unwrap();
                let mut back = vec![0u8; ct.len()];
                st.aead.open(&p, aad, &ct, &mut back).unwrap();
                assert_eq!(&back, data);
            }
            r
        }
        Call::Begin { dir, p, aad } => {
            m.cipher_message_begin(s, d(*dir), &mut MessageParam::Gcm(p.clone()), aad)
        }
        Call::Next {
            dir,
            p,
            data,
            out,
            last,
        } => {
            let mut p = MessageParam::Gcm(p.clone());
            with_out(out, |o| {
                m.cipher_message_next(s, d(*dir), &mut p, data, o, *last)
            })
        }
        Call::MsgFinal { dir } => m.message_cipher_final(s, d(*dir)),
        Call::SignInit { verify, ty, key: k } => {
            let ty = [CKM_SHA256_HMAC, CKM_AES_CMAC, CKM_AES_GCM, CKM_SHA_1_HMAC][*ty as usize % 4];
            m.message_sign_init(
                s,
                &MechanismArg {
                    ty,
                    param: Param::None,
                },
                key(k),
                *verify,
            )
        }
        Call::SignMessage { data, out } => with_out(out, |o| m.sign_message(s, data, o)),
        Call::VerifyMessage { data, sig } => m.verify_message(s, data, sig),
        Call::SignBegin { verify } => m.sign_message_begin(s, *verify),
        Call::SignNext { data, out } => match out {
            None => m.sign_message_next(s, data, None),
            Some(out) => with_out(out, |o| m.sign_message_next(s, data, Some(o))),
        },
        Call::VerifyNext { data, sig } => m.verify_message_next(s, data, sig.as_deref()),
        Call::SignFinal { verify } => m.message_sign_final(s, *verify),
        Call::DigestInit => m.digest_init(
            s,
            &MechanismArg {
                ty: CKM_SHA256,
                param: Param::None,
            },
        ),
        Call::DigestUpdate(data) => m.digest_update(s, data),
        Call::GetState { out } => {
            let mut buf = vec![0u8; out.unwrap_or(0)];
            let mut o = OutBuf::new(out.map(|_| &mut buf[..]));
            let r = m.get_operation_state(s, &mut o);
            let n = o.len();
            if r.is_ok() && out.is_some() {
                w.states.push(buf[..n].to_vec());
            }
            r
        }
        Call::SetState {
            which,
            flip,
            cut,
            key: k,
        } => {
            let mut blob = if w.states.is_empty() {
                vec![*which; 80]
            } else {
                w.states[*which as usize % w.states.len()].clone()
            };
            if let Some(f) = flip {
                let n = blob.len();
                blob[*f as usize % n] ^= 1 << (f % 8);
            }
            if *cut % 5 == 0 {
                blob.truncate(*cut as usize % (blob.len() + 1));
            }
            let k = if k % 4 == 0 { key(k) } else { 0 };
            m.set_operation_state(s, &blob, k, 0)
        }
        Call::RecoverInit { verify, key: k } => m.recover_init(
            s,
            &MechanismArg {
                ty: CKM_RSA_PKCS,
                param: Param::None,
            },
            key(k),
            *verify,
        ),
        Call::Recover { verify, data, out } => with_out(out, |o| m.recover(s, *verify, data, o)),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]
    #[test]
    fn new_functions_in_any_order_never_panic(calls in prop::collection::vec(call(), 1..40)) {
        let mut w = world();
        for c in &calls {
            let r = run(&mut w, c);
            prop_assert_ne!(r, Err(Error::GeneralError), "{:?}", c);
        }
    }
}
