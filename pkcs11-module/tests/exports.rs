//! Symbol hygiene of the built module: `nm -D --defined-only` lists only the
//! PKCS#11 entry points (`C_*`), nothing of Rust or of the statically linked
//! AWS-LC, so a host process with its own OpenSSL cannot clash with it; and
//! `ldd` shows no shared libcrypto/libssl. Skips (saying why) when `nm` or
//! the built `.so` is missing.

use std::process::Command;

#[test]
fn only_c_symbols_and_no_shared_libcrypto() {
    let Some(so) = ferrohsm_pkcs11::locate::module_path() else {
        eprintln!("skipped: no built libferrohsm_pkcs11.so found");
        return;
    };
    let out = match Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(&so)
        .output()
    {
        Ok(o) if o.status.success() => o,
        Ok(o) => panic!(
            "nm failed on {}: {}",
            so.display(),
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => {
            eprintln!("skipped: nm not runnable ({e})");
            return;
        }
    };
    let text = String::from_utf8_lossy(&out.stdout);
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.split_whitespace().last())
        .collect();
    let foreign: Vec<&&str> = names.iter().filter(|n| !n.starts_with("C_")).collect();
    assert!(
        foreign.is_empty(),
        "{} exports more than C_*: {foreign:?}",
        so.display()
    );
    assert!(
        names.contains(&"C_GetFunctionList"),
        "{}: no C_GetFunctionList in {names:?}",
        so.display()
    );
    match Command::new("ldd").arg(&so).output() {
        Ok(o) if o.status.success() => {
            let deps = String::from_utf8_lossy(&o.stdout);
            assert!(
                !deps.contains("libcrypto") && !deps.contains("libssl"),
                "{} links a shared OpenSSL:\n{deps}",
                so.display()
            );
        }
        _ => eprintln!("ldd not runnable: shared-library check skipped"),
    }
}
