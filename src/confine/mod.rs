//! Kernel-enforced confinement: what nfkit promises (it never starts a
//! program, it writes only its own files) is enforced by the kernel.
//!
//! - [`install_seccomp`]: first thing in `main`, for every command
//!   (`--help` and `--version` too): a seccomp filter refuses `execve`,
//!   `execveat`, `fork`, `vfork` and `clone` without `CLONE_THREAD` with
//!   `EPERM`, `clone3` with `ENOSYS` (see [`seccomp`]).
//! - [`restrict_writes`]: after the arguments are parsed, a Landlock ruleset
//!   allows reads, no `Execute` anywhere, and writes only beneath the paths
//!   this command may change ([`policy`]); read-only commands get none.
//!
//! Both are best effort on kernels without them; the state is kept here
//! for `status` and `-v` ([`report`], [`notes`]): never a silent downgrade.

pub mod policy;
mod ruleset;
pub mod seccomp;

use std::sync::OnceLock;

use serde::Serialize;

use crate::error::ErrorObject;
use policy::Grant;

/// The seccomp filter's state in this process.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum SeccompState {
    /// The filter is in force.
    Filter {
        /// What it refuses.
        refused: Vec<&'static str>,
    },
    /// The kernel refused the filter: nfkit runs without it.
    Unavailable {
        /// Why.
        error: ErrorObject,
    },
    /// Not installed (the library used without the `nfkit` binary's `main`).
    NotInstalled,
}

/// The Landlock ruleset's state in this process.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum LandlockState {
    /// The ruleset is in force.
    Enforced {
        /// The kernel's Landlock ABI.
        abi: i32,
        /// `false` when the kernel enforces only part of the rights asked
        /// for (an ABI older than 5: e.g. truncation or device ioctls stay
        /// unrestricted).
        complete: bool,
        /// The paths this command may write beneath (empty: none).
        writable: Vec<Grant>,
    },
    /// The kernel has no Landlock: writes are not confined.
    Unavailable {
        /// Why.
        reason: &'static str,
    },
    /// Not applied (the library used without `nfkit`'s CLI).
    NotApplied,
}

static SECCOMP: OnceLock<SeccompState> = OnceLock::new();
static LANDLOCK: OnceLock<LandlockState> = OnceLock::new();

/// Errors enforcing the confinement.
#[derive(Debug, thiserror::Error)]
pub enum ConfineError {
    /// The Landlock ruleset could not be built or enforced on a kernel that
    /// has Landlock.
    #[error("restrict writes with Landlock")]
    Landlock(#[source] landlock::RulesetError),
    /// The ruleset was already enforced once in this process.
    #[error("restrict writes with Landlock: already restricted")]
    Twice,
}

impl crate::error::Hint for ConfineError {
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some(std::borrow::Cow::Borrowed(
            "nfkit does not run unconfined on a kernel that has Landlock; report this as a bug",
        ))
    }
}

/// Installs the seccomp filter (see [`seccomp`]). Call it first in `main`,
/// before any thread exists. Never fails: a kernel without seccomp filters
/// is recorded and reported ([`report`], [`notes`]).
pub fn install_seccomp() {
    let state = match seccomp::install() {
        Ok(()) => SeccompState::Filter {
            refused: seccomp::REFUSED.to_vec(),
        },
        Err(e) => SeccompState::Unavailable {
            error: ErrorObject::of(&e),
        },
    };
    let _ = SECCOMP.set(state);
}

/// Installs the seccomp filter once more (filters stack): the same work as
/// at start-up, for the hidden timing entry (`nfkit __confinement-test`).
#[doc(hidden)]
pub fn install_seccomp_again() -> Result<(), seccomp::SeccompError> {
    seccomp::install()
}

/// Restricts this process's writes to `grants` (none: read-only).
pub fn restrict_writes(grants: Vec<Grant>) -> Result<(), ConfineError> {
    let enforced = ruleset::enforce(&grants).map_err(ConfineError::Landlock)?;
    let state = match (enforced.abi, enforced.unavailable) {
        (Some(abi), _) => LandlockState::Enforced {
            abi,
            complete: enforced.status == landlock::RulesetStatus::FullyEnforced,
            writable: grants,
        },
        (None, reason) => LandlockState::Unavailable {
            reason: reason.unwrap_or("not available"),
        },
    };
    LANDLOCK.set(state).map_err(|_| ConfineError::Twice)
}

/// The seccomp state of this process.
pub fn seccomp_state() -> SeccompState {
    SECCOMP.get().cloned().unwrap_or(SeccompState::NotInstalled)
}

/// The Landlock state of this process.
pub fn landlock_state() -> LandlockState {
    LANDLOCK.get().cloned().unwrap_or(LandlockState::NotApplied)
}

/// Whether Landlock confines this process's writes (so a refused write is
/// most likely its doing).
pub fn writes_confined() -> bool {
    matches!(LANDLOCK.get(), Some(LandlockState::Enforced { .. }))
}

/// The hint for a write refused with `EACCES` while [`writes_confined`].
pub const REFUSED_WRITE_HINT: &str = "nfkit's Landlock ruleset refused the write: this command may \
     write only beneath its own target directories (`nfkit status -v` lists them for a command); \
     a symlink leading out of them is refused too";

/// The confinement in force, for `status`.
#[derive(Debug, Clone, Serialize)]
pub struct Confinement {
    /// The seccomp filter.
    pub seccomp: SeccompState,
    /// The kernel's view of this thread's mode, from
    /// `prctl(PR_GET_SECCOMP)` (0 none, 1 strict, 2 filter — the value
    /// `/proc/PID/status` shows as `Seccomp:`; `null` when the kernel has no
    /// seccomp).
    pub seccomp_mode: Option<u8>,
    /// The Landlock ruleset.
    pub landlock: LandlockState,
}

/// The kernel's seccomp mode of the calling thread.
fn seccomp_mode() -> Option<u8> {
    // SAFETY: PR_GET_SECCOMP takes no pointer; it returns the mode or -1.
    let mode = unsafe { libc::prctl(libc::PR_GET_SECCOMP, 0, 0, 0, 0) };
    u8::try_from(mode).ok()
}

/// The confinement of this process.
pub fn report() -> Confinement {
    Confinement {
        seccomp: seccomp_state(),
        seccomp_mode: seccomp_mode(),
        landlock: landlock_state(),
    }
}

/// `-v` notes: what is not in force (nothing when both are).
pub fn notes() -> Vec<String> {
    let mut out = Vec::new();
    if let SeccompState::Unavailable { error } = seccomp_state() {
        out.push(format!(
            "running without the seccomp filter (no-exec is not enforced): {}",
            error.message
        ));
    }
    if let LandlockState::Unavailable { reason } = landlock_state() {
        out.push(format!(
            "running without Landlock (writes are not confined by the kernel): Landlock is {reason}"
        ));
    }
    if let LandlockState::Enforced {
        complete: false,
        abi,
        ..
    } = landlock_state()
    {
        out.push(format!(
            "Landlock ABI {abi} enforces part of nfkit's ruleset (truncation or device ioctls stay unrestricted)"
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_process_has_no_filter_and_no_ruleset() {
        // Only the binary's `main` installs them.
        assert!(matches!(seccomp_state(), SeccompState::NotInstalled));
        assert!(matches!(landlock_state(), LandlockState::NotApplied));
        assert!(seccomp_mode().is_some(), "this kernel has seccomp");
        assert!(!writes_confined());
    }
}
