//! Command-line interface.

/// Runs the CLI and returns the process exit status.
pub fn main() -> u8 {
    0
}
