//! Links the `nfkit` executable as non-PIE (`-no-pie`).
//!
//! Why: a position-independent executable makes the dynamic loader apply
//! thousands of relative relocations at every start, writing (and so
//! copying) the pages that hold them. Natively that is noise; in the
//! emulated guests nfkit is benchmarked in (qemu TCG), each of those page
//! faults is costly: `nfkit verify` took 108 ms as PIE and 70 ms non-PIE,
//! against 49 ms for `/bin/true` (bench/vm). Only the binaries are affected
//! (`rustc-link-arg-bins`); the library, tests and proc macros are not.
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg-bins=-no-pie");
    }
}
