#![no_main]

#[allow(dead_code)]
#[path = "../../tools/src/import.rs"]
mod import;

#[path = "../key_files.rs"]
mod key_files;

libfuzzer_sys::fuzz_target!(|data: &[u8]| key_files::key_files(data));
