//! README's mechanism list says what the module does: the list under
//! "### Mechanisms (N)" in README.md, `C_GetMechanismList` of a `spec` token
//! through the real .so, and the mechanism table are the same set, and N is
//! its size. On a mismatch the test prints the list README should carry.

use std::collections::BTreeSet;

use cryptoki_sys::*;
use ferrohsm_pkcs11::mechanism::MECHANISMS;
use ferrohsm_tests::raw::check;
use ferrohsm_tests::tok::tokens;
use ferrohsm_tests::{TestEnv, ck};

/// The mechanism types a slot lists, through the C ABI.
fn listed(t: &ferrohsm_tests::tok::Tok) -> BTreeSet<CK_MECHANISM_TYPE> {
    let mut n: CK_ULONG = 0;
    check(
        ck!(
            t.m,
            C_GetMechanismList(t.slot, std::ptr::null_mut(), &mut n)
        ),
        CKR_OK,
        "C_GetMechanismList (size)",
    );
    let mut list = vec![0; n as usize];
    check(
        ck!(t.m, C_GetMechanismList(t.slot, list.as_mut_ptr(), &mut n)),
        CKR_OK,
        "C_GetMechanismList",
    );
    list.truncate(n as usize);
    list.into_iter().collect()
}

#[test]
fn readme_lists_every_mechanism_the_module_lists() {
    let _env = TestEnv::new();
    let toks = tokens(&[("mechanisms", "spec"), ("hsm", "hsm")]);
    let table: BTreeSet<CK_MECHANISM_TYPE> = MECHANISMS.iter().map(|m| m.ty).collect();
    assert_eq!(
        listed(&toks[0]),
        table,
        "a spec token lists the whole mechanism table"
    );

    // An hsm token leaves out the legacy rows, as README says.
    let modern: BTreeSet<CK_MECHANISM_TYPE> = MECHANISMS
        .iter()
        .filter(|m| !m.is_legacy())
        .map(|m| m.ty)
        .collect();
    assert_eq!(listed(&toks[1]), modern, "an hsm token lists no legacy row");
    let legacy = table.len() - modern.len();
    let names: BTreeSet<&str> = MECHANISMS.iter().map(|m| m.name).collect();
    let expected = format!(
        "### Mechanisms ({})\n\n{}\n",
        names.len(),
        names
            .iter()
            .map(|n| format!("`{n}`"))
            .collect::<Vec<_>>()
            .join(", ")
    );
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    assert!(
        readme.contains(&format!(
            "an `hsm` token leaves out the {legacy} legacy ones"
        )),
        "README.md names the number of legacy rows ({legacy})"
    );
    assert!(
        readme.contains(&expected),
        "README.md's mechanism list is out of date; it should read:\n\n{expected}"
    );
}
