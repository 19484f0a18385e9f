//! One error scheme for every command.
//!
//! - Each error type's `Display` says this layer's context only (operation,
//!   object); the cause is its `source()`, never repeated in the message. A
//!   chain is shown once, outermost first, joined by `": "` ([`message`]).
//! - Each error type implements [`Hint`] for what the user can do about
//!   *this* layer; [`hint`] walks the chain and takes the outermost hint (an
//!   outer layer knows the operation, so it may say more than its cause).
//!   The list of error types with hints is kept here, in [`hint_here`].
//! - With `--json` every error is one [`ErrorObject`].

use std::borrow::Cow;
use std::error::Error as StdError;

use serde::Serialize;

/// What the user can do about an error, for this layer of the chain only.
pub trait Hint {
    /// The hint, if this layer has one.
    fn hint(&self) -> Option<Cow<'static, str>>;
}

/// The hint of this one error (not its sources), if its type has hints.
/// The registry of error types: add new types here.
fn hint_here(e: &(dyn StdError + 'static)) -> Option<Cow<'static, str>> {
    macro_rules! registry {
        ($($ty:ty),* $(,)?) => {
            $(if let Some(e) = e.downcast_ref::<$ty>() {
                return Hint::hint(e);
            })*
        };
    }
    registry!(
        crate::ansible::args::ArgError,
        crate::conntrack::set::SetError,
        crate::conntrack::limits::LimitError,
        crate::tables::ShowError,
        crate::metrics::textfile::TextfileError,
        crate::tables::xtables::ReadError,
        crate::netlink::Error,
        crate::modules::error::ModuleError,
        crate::kmod::Error,
        crate::persist::apply::ApplyError,
        crate::persist::files::FileError,
        crate::persist::plan::PlanError,
        crate::persist::record::RecordError,
        crate::persist::values::ValueError,
        crate::sysctl::Error,
        crate::system::RootError,
        crate::read::ReadError,
        crate::confine::ConfineError,
        crate::cli::SelftestError,
        crate::cli::GenError,
    );
    None
}

/// The layers of an error: itself, then each source.
pub fn chain<'a>(
    e: &'a (dyn StdError + 'static),
) -> impl Iterator<Item = &'a (dyn StdError + 'static)> {
    let mut next = Some(e);
    std::iter::from_fn(move || {
        let this = next?;
        next = this.source();
        Some(this)
    })
}

/// The first hint found walking the chain from the outermost layer.
pub fn hint(e: &(dyn StdError + 'static)) -> Option<String> {
    chain(e).find_map(hint_here).map(Cow::into_owned)
}

/// [`hint`] over an `anyhow` chain (its context layers have no hints).
pub fn hint_anyhow(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(hint_here).map(Cow::into_owned)
}

/// The whole chain, each layer once: `outer: inner: root cause`.
pub fn message(e: &(dyn StdError + 'static)) -> String {
    join(chain(e).map(|e| e.to_string()))
}

fn join(layers: impl Iterator<Item = String>) -> String {
    layers
        .filter(|l| !l.is_empty())
        .collect::<Vec<_>>()
        .join(": ")
}

/// The one JSON error object: `{"message", "causes", "hint"}`.
///
/// `message` is the whole chain as text (what stderr shows after
/// `nfkit: error:`); `causes` lists the layers, outermost first, each once.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorObject {
    /// The whole chain, `": "`-joined.
    pub message: String,
    /// Each layer's own text, outermost first.
    pub causes: Vec<String>,
    /// What the user can do, or `null`.
    pub hint: Option<String>,
}

impl ErrorObject {
    /// From an error and its sources.
    pub fn of(e: &(dyn StdError + 'static)) -> Self {
        let causes: Vec<String> = chain(e).map(|e| e.to_string()).collect();
        ErrorObject {
            message: join(causes.iter().cloned()),
            causes,
            hint: hint(e),
        }
    }

    /// An error nfkit states itself, with no cause below it.
    pub fn text(message: impl Into<String>) -> Self {
        let message = message.into();
        ErrorObject {
            causes: vec![message.clone()],
            message,
            hint: None,
        }
    }

    /// A layer nfkit states itself above a cause.
    pub fn context(context: impl Into<String>, cause: &(dyn StdError + 'static)) -> Self {
        let mut causes = vec![context.into()];
        causes.extend(chain(cause).map(|e| e.to_string()));
        ErrorObject {
            message: join(causes.iter().cloned()),
            causes,
            hint: hint(cause),
        }
    }

    /// With a hint (replacing the one found in the chain).
    pub fn with_hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// From an `anyhow` chain (context layers included).
    pub fn of_anyhow(e: &anyhow::Error) -> Self {
        let causes: Vec<String> = e.chain().map(|e| e.to_string()).collect();
        ErrorObject {
            message: join(causes.iter().cloned()),
            causes,
            hint: hint_anyhow(e),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::files::FileError;
    use std::io;

    #[derive(Debug, thiserror::Error)]
    #[error("outer")]
    struct Outer(#[source] FileError);

    fn nested(errno: i32, op: &'static str) -> Outer {
        Outer(FileError::Io {
            op,
            path: "/etc/x.conf".into(),
            source: io::Error::from_raw_os_error(errno),
        })
    }

    #[test]
    fn each_layer_once_outermost_first() {
        let e = nested(libc::EISDIR, "read");
        let o = ErrorObject::of(&e);
        assert_eq!(o.causes.len(), 3);
        assert_eq!(o.causes[0], "outer");
        assert_eq!(o.causes[1], "read /etc/x.conf");
        assert_eq!(o.message, o.causes.join(": "));
        assert_eq!(
            o.message.matches("Is a directory").count(),
            1,
            "{}",
            o.message
        );
        assert_eq!(message(&e), o.message);
    }

    #[test]
    fn hints_fit_reads_and_writes() {
        let read = hint(&nested(libc::EACCES, "read")).unwrap();
        assert!(!read.contains("writing"), "{read}");
        let write = hint(&nested(libc::EACCES, "rename into place")).unwrap();
        assert!(write.contains("writing"), "{write}");
        assert_eq!(hint(&nested(libc::ENOSPC, "read")), None);
    }
}
