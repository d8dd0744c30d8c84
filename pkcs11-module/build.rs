//! Link flags of the shared library.
fn main() {
    // The store may run a short-lived thread that closes an idle token
    // database; `-z nodelete` keeps the code mapped if an application
    // dlclose()s the library without C_Finalize while that thread sleeps.
    println!("cargo:rustc-cdylib-link-arg=-Wl,-z,nodelete");
}
