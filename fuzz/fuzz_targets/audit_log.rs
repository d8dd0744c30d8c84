#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ferrohsm_store::fuzzing::audit_log(data));
