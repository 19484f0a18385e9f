//! The `nfkit` binary: all logic lives in the library; this only turns the
//! outcome into the process exit status (codes documented in `nfkit::cli`).
//!
//! `main` is the C entry point itself (`#![no_main]`): the standard
//! library's runtime set-up is skipped. It reads `/proc/self/maps` for the
//! main thread's stack guard and installs a stack-overflow handler with its
//! own alternate stack, a dozen system calls and ~14 % of `status`'s
//! instructions; that budget now pays for the seccomp filter and the
//! Landlock ruleset (README "Performance"). What the runtime did that nfkit
//! needs is done here: `SIGPIPE` ignored (a closed pipe is an `EPIPE` error,
//! see `cli::write_stdout`), stdout flushed at exit. A stack overflow is
//! then a plain `SIGSEGV` instead of a message. Arguments still reach
//! `std::env::args` (glibc passes them to the standard library's static
//! initialiser).

// The test harness of this crate (`cargo test --bins`) brings its own main.
#![cfg_attr(not(test), no_main)]

/// The process entry point (called by the C runtime).
#[cfg(not(test))]
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: libc::c_int, _argv: *const *const libc::c_char) -> libc::c_int {
    // Before anything else (before any thread exists): from here on, no
    // program can be started and no process created (see nfkit::confine).
    nfkit::confine::install_seccomp();
    // SAFETY: setting a signal's disposition to SIG_IGN has no handler to
    // run; it is what the standard library's runtime would have done.
    unsafe { libc::signal(libc::SIGPIPE, libc::SIG_IGN) };
    let code = nfkit::cli::main();
    let _ = std::io::Write::flush(&mut std::io::stdout());
    libc::c_int::from(code)
}
