//! Link flags of the shared library.
fn main() {
    // The store may run a short-lived thread that closes an idle token
    // database; `-z nodelete` keeps the code mapped if an application
    // dlclose()s the library without C_Finalize while that thread sleeps.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
    // cargo-fuzz builds with `--cfg fuzzing`; `secret` then keeps every
    // allocation on the ordinary heap, where sanitizers see it.
    println!("cargo::rustc-check-cfg=cfg(fuzzing)");
}
