//! Link settings of the `nfkit` executable.
//!
//! - Non-PIE (`-no-pie`): a position-independent executable makes the
//!   dynamic loader apply thousands of relative relocations at every start,
//!   writing (and so copying) the pages that hold them. Natively that is
//!   noise; in the emulated guests nfkit is benchmarked in (qemu TCG), each
//!   of those page faults is costly: `nfkit verify` took 108 ms as PIE and
//!   70 ms non-PIE, against 49 ms for `/bin/true` (bench/vm). Only the
//!   binaries are affected (`rustc-link-arg-bins`); the library, tests and
//!   proc macros are not.
//! - The unwinder linked statically (`libgcc_eh.a`) on a native glibc
//!   build, so the executable needs `libc.so.6` only, not `libgcc_s.so.1`
//!   (the standard library refers to `_Unwind_*`; with `panic = "abort"`
//!   nothing unwinds, but the symbols must resolve). One shared library
//!   less to find, map and bind at every start: ~32k instructions and 10
//!   system calls (callgrind and strace of a hello world). The static
//!   archive is placed with nfkit's library, before the standard library's
//!   `-lgcc_s`, so the linker takes the symbols from it and `--as-needed`
//!   drops `libgcc_s.so.1` (`-bundle`: rustc does not copy the archive into
//!   nfkit's rlib, it passes `-lgcc_eh` to the final link, where the C
//!   compiler driver finds it in its own library directory). Not for cross builds (the host's archive is of
//!   the host's architecture) nor for the portable build
//!   (`contrib/build-portable` sets `NFKIT_PORTABLE=1`: Zig brings its own
//!   static unwinder).
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=NFKIT_PORTABLE");
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    if var("CARGO_CFG_TARGET_OS") != "linux" {
        return;
    }
    println!("cargo:rustc-link-arg-bins=-no-pie");
    let native = var("TARGET") == var("HOST");
    if var("CARGO_CFG_TARGET_ENV") == "gnu"
        && native
        && std::env::var_os("NFKIT_PORTABLE").is_none()
    {
        println!("cargo:rustc-link-lib=static:-bundle=gcc_eh");
    }
}
