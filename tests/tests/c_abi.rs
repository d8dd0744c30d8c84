//! Drives the module through its raw C ABI from a C program (`tests/c/abi_check.c`)
//! built against p11-kit's standard PKCS#11 header: function lists, interfaces,
//! token set-up and multi-threaded random/digest use.

use std::time::Duration;

use ferrohsm_tests::TestEnv;
use ferrohsm_tests::child::{c_program, run_captured};

#[test]
fn abi_check_program_passes() {
    let env = TestEnv::new();
    let cmd = c_program(&env, "abi_check", &[]);
    let run = run_captured(&env, cmd, b"", Duration::from_secs(120), "abi_check");
    run.assert_c_passed(&env, &["ALL CHECKS PASSED"]);
}
