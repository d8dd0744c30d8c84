#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrohsm_pkcs11::fuzzing::pkcs8(data));
