//! A thin, safe binding of the parts of libkmod that nfkit needs.
//!
//! Shape (see docs/… and the README's dependency table for the reasons):
//! - [`ffi`] resolves `libkmod.so.2` at run time with `libloading`; a host
//!   without libkmod gets [`Error::LibraryMissing`] from the first call, and
//!   everything in nfkit that does not touch modules keeps working.
//! - [`Context`], [`Module`] and [`ModuleList`] own one libkmod reference each
//!   and drop it in `Drop` (`kmod_unref`, `kmod_module_unref`,
//!   `kmod_module_unref_list`). A `Module<'ctx>` cannot outlive its context.
//! - Every libkmod function is called from exactly one wrapper. libkmod
//!   reports failure as a **negative errno return value**; the wrappers turn
//!   that value into [`nix::errno::Errno`] and never read the global `errno`
//!   (which libkmod may have clobbered in between, the bug in kmod-rs).
//! - Install commands are never run: [`Module::probe_insert`] always passes a
//!   `run_install` callback (a NULL callback makes libkmod call `system(3)`).
//!
//! libkmod is not thread-safe; the raw pointers make every owner `!Send` and
//! `!Sync`, so a context and its modules stay on the thread that made them.

pub(crate) mod ffi;

mod context;
mod module;

use std::ffi::{CStr, c_char};

pub use context::{Context, LogLine};
pub use module::{InitState, Module, ModuleList, ProbeAction, ProbeOutcome};
use nix::errno::Errno;

/// The `kmod_probe` flags nfkit uses (libkmod.h `enum kmod_probe`).
pub mod probe_flags {
    /// Ignore the target's install command and softdeps (`modprobe -i`).
    pub const IGNORE_COMMAND: u32 = 0x00004;
    /// Do not skip modules that are already in the kernel (`modprobe -D`).
    pub const IGNORE_LOADED: u32 = 0x00008;
    /// Only report through `print_action`, insert nothing (`modprobe -n`).
    pub const DRY_RUN: u32 = 0x00010;
    /// Apply the blacklist to the target, even when named directly (`-b`).
    pub const APPLY_BLACKLIST: u32 = 0x20000;
    /// Apply the blacklist only when the target was reached through an alias
    /// (what plain `modprobe NAME` always does).
    pub const APPLY_BLACKLIST_ALIAS_ONLY: u32 = 0x40000;
}

/// Errors of the libkmod binding itself. Errors about a module (not found,
/// in use, …) are built from these by [`crate::modules`].
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    /// `dlopen("libkmod.so.2")` failed.
    #[error(
        "libkmod is not available (cannot load {}: {detail})",
        ffi::LIBKMOD_SONAME
    )]
    LibraryMissing {
        /// The loader's message.
        detail: String,
    },
    /// libkmod.so.2 was found but lacks a symbol nfkit needs.
    #[error("{} lacks symbol {symbol}: {detail}", ffi::LIBKMOD_SONAME)]
    MissingSymbol {
        /// The symbol name.
        symbol: &'static str,
        /// The loader's message.
        detail: String,
    },
    /// A libkmod call returned a negative errno.
    #[error("{call}({arg}) failed: {} ({errno})", errno.desc())]
    Call {
        /// The libkmod function.
        call: &'static str,
        /// Its main argument (module name, path…).
        arg: String,
        /// The errno it returned.
        errno: Errno,
    },
    /// A string argument contained a NUL byte and cannot be passed to C.
    #[error("{call}: argument contains a NUL byte: {arg:?}")]
    Nul {
        /// The libkmod function.
        call: &'static str,
        /// The offending argument.
        arg: String,
    },
}

impl Error {
    /// The errno behind this error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            Error::Call { errno, .. } => Some(*errno),
            _ => None,
        }
    }
}
impl crate::error::Hint for Error {
    /// A short hint for the user, when there is one.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            Error::LibraryMissing { .. } | Error::MissingSymbol { .. } => Some(
                "install libkmod (Debian/Ubuntu: libkmod2, RHEL/Fedora: kmod-libs); \
                 nfkit's other commands work without it",
            ),
            _ => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// Turns a libkmod `int` return (0 or positive = success, negative = -errno)
/// into a `Result` carrying the non-negative value.
pub(crate) fn check(call: &'static str, arg: &str, ret: i32) -> Result<i32, Error> {
    if ret < 0 {
        Err(Error::Call {
            call,
            arg: arg.to_owned(),
            errno: Errno::from_raw(-ret),
        })
    } else {
        Ok(ret)
    }
}

/// Copies a C string owned by libkmod into a Rust `String` (lossy UTF-8),
/// or `None` for NULL.
///
/// # Safety
/// `p` must be NULL or point to a NUL-terminated string that stays valid for
/// the duration of this call.
pub(crate) unsafe fn opt_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        // SAFETY: non-NULL, and the caller guarantees a valid NUL-terminated
        // string for the duration of the call; we copy it out immediately.
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn negative_return_is_errno_not_global_errno() {
        Errno::set_raw(libc::EPERM); // a stale global errno must not leak in
        let err = check("kmod_module_remove_module", "xt_state", -libc::EBUSY).unwrap_err();
        assert_eq!(err.errno(), Some(Errno::EBUSY));
        assert!(err.to_string().contains("xt_state"), "{err}");
        assert_eq!(check("x", "y", 0x40000).unwrap(), 0x40000);
    }

    #[test]
    fn opt_string_handles_null() {
        // SAFETY: NULL is explicitly allowed.
        assert_eq!(unsafe { opt_string(std::ptr::null()) }, None);
        let s = c"nf_conntrack";
        // SAFETY: `s` is a valid, 'static C string literal.
        let got = unsafe { opt_string(s.as_ptr()) };
        assert_eq!(got.as_deref(), Some("nf_conntrack"));
    }
}
