//! Errors of the module operations. Each names the operation, the module and
//! the cause, and carries a hint when one can be given.

use std::fmt;
use std::path::PathBuf;

use nix::errno::Errno;
use serde::Serialize;

use super::name::NameProblem;
use super::options::OptionProblem;
use crate::kmod;

/// The operation that failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Op {
    /// `nfkit modules load`.
    Load,
    /// `nfkit modules unload`.
    Unload,
    /// `nfkit modules resolve`.
    Resolve,
    /// `nfkit modules list`.
    List,
    /// `nfkit explain`.
    Explain,
}

impl fmt::Display for Op {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Op::Load => "load",
            Op::Unload => "unload",
            Op::Resolve => "resolve",
            Op::List => "list",
            Op::Explain => "explain",
        })
    }
}

/// Which modprobe.d command a module has.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CommandKind {
    /// `install MODULE COMMAND`.
    Install,
    /// `remove MODULE COMMAND`.
    Remove,
}

impl fmt::Display for CommandKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(match self {
            CommandKind::Install => "install",
            CommandKind::Remove => "remove",
        })
    }
}

/// Why the kernel said EPERM, when it can be told.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "reason")]
pub enum EpermReason {
    /// The process lacks CAP_SYS_MODULE.
    NotRoot,
    /// `kernel.modules_disabled=1`.
    ModulesDisabled,
    /// `module_blacklist=` on the kernel command line names the module.
    KernelBlacklist,
    /// Kernel lockdown is active (mode given).
    Lockdown {
        /// `integrity` or `confidentiality`.
        mode: String,
    },
    /// None of the above could be seen.
    Unknown,
}

impl fmt::Display for EpermReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EpermReason::NotRoot => f.write_str("not running with CAP_SYS_MODULE (not root)"),
            EpermReason::ModulesDisabled => f.write_str("kernel.modules_disabled=1"),
            EpermReason::KernelBlacklist => f.write_str(
                "deny-listed by the kernel (module_blacklist= on the kernel command line)",
            ),
            EpermReason::Lockdown { mode } => write!(f, "kernel lockdown ({mode}) is active"),
            EpermReason::Unknown => f.write_str("refused by the kernel"),
        }
    }
}

fn list(v: &[String]) -> String {
    v.join(", ")
}

/// A failed module operation.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ModuleError {
    /// The name was refused before any lookup.
    #[error("{op} {name:?}: invalid module name: {problem}")]
    InvalidName {
        /// Operation.
        op: Op,
        /// The name as given.
        name: String,
        /// What is wrong with it.
        problem: NameProblem,
    },
    /// A given option was refused before any lookup.
    #[error("{op} {module}: invalid option {option:?}: {problem}")]
    InvalidOption {
        /// Operation.
        op: Op,
        /// The module it was given for.
        module: String,
        /// The option as given.
        option: String,
        /// What is wrong with it.
        problem: OptionProblem,
    },
    /// No module or alias by that name in the module directory.
    #[error("{op} {name}: module not found in {}", dir.display())]
    NotFound {
        /// Operation.
        op: Op,
        /// The name as given.
        name: String,
        /// The module directory searched.
        dir: PathBuf,
        /// Closest known module names.
        suggestions: Vec<String>,
        /// Legacy-name note, when the name is a known old name.
        legacy: Option<String>,
    },
    /// EPERM from the kernel.
    #[error("{op} {module}: operation not permitted: {reason}")]
    NotPermitted {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// What could be told about the cause.
        reason: EpermReason,
    },
    /// A real insert that only the host can do (container, non-initial
    /// user namespace, root without CAP_SYS_MODULE): refused before trying
    /// (issue 14 §6). Modules already loaded or built in never get here.
    #[error("{op} {module}: must be done on the host: {why}")]
    MustBeDoneOnHost {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// Why (the containment rule that `status` shows too).
        why: crate::containment::HostOnly,
    },
    /// ENOEXEC: not a module for this kernel.
    #[error("{op} {module}: exec format error: the module does not match the running kernel")]
    WrongKernel {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// The module's vermagic (modinfo).
        vermagic: Option<String>,
        /// The running kernel's release.
        running: Option<String>,
    },
    /// EINVAL at insert: a parameter value the module refused (or a corrupt
    /// module; libkmod also returns it for a failed install command).
    #[error("{op} {module}: invalid argument: a parameter value was refused{}", if options.is_empty() { String::new() } else { format!(" (options: {options})") })]
    InvalidArgument {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// The options passed.
        options: String,
    },
    /// ENOENT at insert.
    #[error("{op} {module}: unknown symbol in module, or unknown parameter (see dmesg)")]
    UnknownSymbol {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
    },
    /// EBUSY/EAGAIN, or a refcount above 0 before removal.
    #[error("{op} {module}: module is in use (refcount {refcnt}{})", if holders.is_empty() { String::new() } else { format!(", held by {}", list(holders)) })]
    InUse {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// Reference count.
        refcnt: u32,
        /// Modules holding it.
        holders: Vec<String>,
    },
    /// ENOKEY/EKEYREJECTED/EBADMSG: signature checking refused the module.
    #[error("{op} {module}: module signature rejected: {}", errno.desc())]
    Signature {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// The errno.
        errno: Errno,
    },
    /// ENOSYS, or no /proc/modules: the kernel cannot load modules.
    #[error("{op} {module}: the running kernel has no loadable module support ({detail})")]
    NoModuleSupport {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// What showed it.
        detail: String,
    },
    /// Unloading a builtin module.
    #[error("{op} {module}: module is built into the kernel")]
    Builtin {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
    },
    /// Given options the loaded module does not have.
    #[error(
        "{op} {module}: unknown parameter {}: the kernel ignored it",
        list(unknown)
    )]
    UnknownParameter {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// Parameters given but absent.
        unknown: Vec<String>,
        /// Parameters the module has.
        accepted: Vec<String>,
    },
    /// The probe was stopped by the modprobe.d blacklist.
    #[error("{op} {name}: not loaded: {module} is blacklisted in modprobe.d")]
    Blacklisted {
        /// Operation.
        op: Op,
        /// The name as given.
        name: String,
        /// The blacklisted module.
        module: String,
        /// True when the blacklist applied because the name is an alias.
        via_alias: bool,
    },
    /// `install M /bin/true` (or false), or the same for `remove`.
    #[error("{op} {module}: disabled by policy (modprobe.d: `{kind} {module} {command}`)")]
    DisabledByPolicy {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// `install` or `remove`.
        kind: CommandKind,
        /// The command.
        command: String,
    },
    /// Any other install/remove command: nfkit never runs it.
    #[error("{op} {module}: modprobe.d has `{kind} {module} {command}`; nfkit never runs commands")]
    CommandRefused {
        /// Operation.
        op: Op,
        /// Module.
        module: String,
        /// `install` or `remove`.
        kind: CommandKind,
        /// The command.
        command: String,
    },
    /// The target (root, release) cannot be used for this operation.
    #[error("{op}: {detail}")]
    Target {
        /// Operation.
        op: Op,
        /// What is wrong.
        detail: String,
    },
    /// A file nfkit reads itself could not be read.
    #[error("{op}: cannot read {}", path.display())]
    Io {
        /// Operation.
        op: Op,
        /// The file or directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file refused by nfkit's reader (not a regular file, too large, a
    /// symlink leaving the root; see [`crate::read`]).
    #[error("{op}")]
    Read {
        /// Operation.
        op: Op,
        /// What the reader refused.
        #[source]
        source: crate::read::ReadError,
    },
    /// A module index (`modules.dep.bin`, …) is damaged: libkmod would read
    /// past its end, so the tree is not handed to it.
    #[error("{op}: damaged module index {}: {detail}", path.display())]
    DamagedIndex {
        /// Operation.
        op: Op,
        /// The index file.
        path: PathBuf,
        /// What is wrong with it.
        detail: String,
    },
    /// Another libkmod failure (including "libkmod missing").
    #[error("{op} {module}")]
    Kmod {
        /// Operation.
        op: Op,
        /// Module (may be empty).
        module: String,
        /// The binding's error.
        source: kmod::Error,
    },
}

impl ModuleError {
    /// A stable machine-readable kind (the JSON `kind`).
    pub fn kind(&self) -> &'static str {
        match self {
            ModuleError::InvalidName { .. } => "invalid_name",
            ModuleError::InvalidOption { .. } => "invalid_option",
            ModuleError::NotFound { .. } => "not_found",
            ModuleError::NotPermitted { .. } => "not_permitted",
            ModuleError::MustBeDoneOnHost { .. } => "must_be_done_on_host",
            ModuleError::WrongKernel { .. } => "wrong_kernel",
            ModuleError::InvalidArgument { .. } => "invalid_argument",
            ModuleError::UnknownSymbol { .. } => "unknown_symbol",
            ModuleError::InUse { .. } => "in_use",
            ModuleError::Signature { .. } => "signature",
            ModuleError::NoModuleSupport { .. } => "no_module_support",
            ModuleError::Builtin { .. } => "builtin",
            ModuleError::UnknownParameter { .. } => "unknown_parameter",
            ModuleError::Blacklisted { .. } => "blacklisted",
            ModuleError::DisabledByPolicy { .. } => "disabled_by_policy",
            ModuleError::CommandRefused { .. } => "command_refused",
            ModuleError::Target { .. } => "target",
            ModuleError::Io { .. } | ModuleError::Read { .. } => "io",
            ModuleError::DamagedIndex { .. } => "damaged_index",
            ModuleError::Kmod {
                source: kmod::Error::LibraryMissing { .. } | kmod::Error::MissingSymbol { .. },
                ..
            } => "libkmod_missing",
            ModuleError::Kmod { .. } => "libkmod",
        }
    }

    /// The errno behind the error, when there is one.
    pub fn errno(&self) -> Option<Errno> {
        match self {
            ModuleError::NotPermitted { .. } | ModuleError::MustBeDoneOnHost { .. } => {
                Some(Errno::EPERM)
            }
            ModuleError::WrongKernel { .. } => Some(Errno::ENOEXEC),
            ModuleError::InvalidArgument { .. } => Some(Errno::EINVAL),
            ModuleError::UnknownSymbol { .. } | ModuleError::NotFound { .. } => Some(Errno::ENOENT),
            ModuleError::InUse { .. } => Some(Errno::EBUSY),
            ModuleError::Signature { errno, .. } => Some(*errno),
            ModuleError::NoModuleSupport { .. } => Some(Errno::ENOSYS),
            ModuleError::Io { source, .. } => source.raw_os_error().map(Errno::from_raw),
            ModuleError::Kmod { source, .. } => source.errno(),
            _ => None,
        }
    }
}
impl crate::error::Hint for ModuleError {
    /// What the user can do about it.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        Some(std::borrow::Cow::Owned(match self {
            ModuleError::InvalidName { .. } => {
                "give a module name or alias such as nf_conntrack; nfkit loads by name only".into()
            }
            ModuleError::InvalidOption { .. } => {
                "options follow their module as NAME=VALUE, e.g. `nf_conntrack hashsize=65536`".into()
            }
            ModuleError::NotFound {
                suggestions,
                legacy,
                dir,
                ..
            } => {
                let mut h = Vec::new();
                if let Some(l) = legacy {
                    h.push(l.clone());
                }
                if !suggestions.is_empty() {
                    h.push(format!("closest module names: {}", list(suggestions)));
                }
                if !dir.join("modules.dep").exists() {
                    h.push(format!(
                        "{} has no modules.dep: modules for this kernel are not installed (or depmod was not run)",
                        dir.display()
                    ));
                }
                if h.is_empty() {
                    h.push("check the spelling; the module may be packaged separately (e.g. linux-modules-extra)".into());
                }
                h.join("; ")
            }
            ModuleError::NotPermitted { reason, module, .. } => match reason {
                EpermReason::NotRoot => "run as root: loading and unloading modules needs CAP_SYS_MODULE".into(),
                EpermReason::ModulesDisabled => {
                    "module loading is switched off until reboot (kernel.modules_disabled cannot be reset)".into()
                }
                EpermReason::KernelBlacklist => format!(
                    "remove {module} from module_blacklist= on the kernel command line and reboot"
                ),
                EpermReason::Lockdown { .. } => {
                    "lockdown allows only modules signed with a trusted key; check dmesg".into()
                }
                EpermReason::Unknown => {
                    "see dmesg; causes include a security module (SELinux/AppArmor) or a distribution's unsupported-module policy".into()
                }
            },
            ModuleError::MustBeDoneOnHost { module, why, .. } => match why {
                crate::containment::HostOnly::OpenVzContainer => format!(
                    "load {module} on the hardware node and allow it for this container (vzctl set CTID --netfilter full, or IPTABLES=\"...\" in /etc/vz/conf/CTID.conf); once loaded there it is satisfied here"
                ),
                _ => format!(
                    "load {module} on the host (root in the initial user namespace, with CAP_SYS_MODULE: `nfkit modules load {module}` there, or its modules-load.d); once loaded or built in there it is satisfied here"
                ),
            },
            ModuleError::WrongKernel { vermagic, running, .. } => format!(
                "module vermagic '{}' vs running kernel '{}': install the modules built for the running kernel, or boot the kernel they belong to (dmesg shows `version magic ... should be ...`)",
                vermagic.as_deref().unwrap_or("?"),
                running.as_deref().unwrap_or("?")
            ),
            ModuleError::InvalidArgument { .. } => {
                "check the option values (dmesg names the parameter the module refused)".into()
            }
            ModuleError::UnknownSymbol { .. } => {
                "a dependency is missing or mismatched; on older kernels (RHEL 7, Virtuozzo 7) this is also an unknown parameter; see dmesg".into()
            }
            ModuleError::InUse { holders, .. } if !holders.is_empty() => {
                format!("unload the holders first: nfkit modules unload {}", holders.join(" "))
            }
            ModuleError::InUse { .. } => {
                "in use by the kernel itself (firewall rules, conntrack entries, a network namespace); remove those users first".into()
            }
            ModuleError::Signature { .. } => {
                "the kernel enforces module signatures (module.sig_enforce or lockdown): use a module signed with a trusted key".into()
            }
            ModuleError::NoModuleSupport { .. } => {
                "this kernel is built without loadable modules; `nfkit modules list` shows the built-in ones".into()
            }
            ModuleError::Builtin { module, .. } => format!(
                "built-in modules cannot be unloaded; their parameters are set on the kernel command line ({module}.PARAM=VALUE) or in /sys/module/{module}/parameters"
            ),
            ModuleError::UnknownParameter { accepted, .. } if accepted.is_empty() => {
                "the module has no parameters (some, like ip_conntrack_disable_ve0, exist only on Virtuozzo/OpenVZ kernels)".into()
            }
            ModuleError::UnknownParameter { accepted, .. } => format!(
                "the module accepts: {} (some parameters, like ip_conntrack_disable_ve0, exist only on Virtuozzo/OpenVZ kernels)",
                list(accepted)
            ),
            ModuleError::Blacklisted { module, via_alias: true, .. } => format!(
                "remove `blacklist {module}` from modprobe.d, or load it by its real name {module}"
            ),
            ModuleError::Blacklisted { module, .. } => format!(
                "remove `blacklist {module}` from modprobe.d, or load without --apply-blacklist"
            ),
            ModuleError::DisabledByPolicy { .. } => {
                "an administrator disabled this module in modprobe.d; remove that line if it is really needed".into()
            }
            ModuleError::CommandRefused {
                kind: CommandKind::Install,
                ..
            } => {
                "pass --ignore-install to load the module itself (like modprobe -i), or run the command yourself".into()
            }
            ModuleError::CommandRefused { .. } => {
                "pass --ignore-install to remove the module itself (like modprobe -r -i)".into()
            }
            ModuleError::DamagedIndex { .. } => {
                "regenerate the indexes with `depmod` for this kernel release (in the image: `depmod -b DIR RELEASE`)".into()
            }
            _ => return None,
        }))
    }
}

/// The serialisable form of an error (the JSON `error` object).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErrorInfo {
    /// [`ModuleError::kind`].
    pub kind: &'static str,
    /// `message`, `causes`, `hint`: the error object of every command.
    #[serde(flatten)]
    pub error: crate::error::ErrorObject,
    /// The errno name (`EPERM`), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errno: Option<String>,
    /// What libkmod logged while this item was handled (e.g. `Failed to
    /// insert module '…/xt_state.ko': Operation not permitted`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub libkmod: Vec<String>,
}

impl ErrorInfo {
    /// With libkmod's log lines for the item.
    pub(crate) fn with_libkmod(mut self, lines: Vec<String>) -> Self {
        self.libkmod = lines;
        self
    }
}

impl From<&ModuleError> for ErrorInfo {
    fn from(e: &ModuleError) -> Self {
        ErrorInfo {
            kind: e.kind(),
            error: crate::error::ErrorObject::of(e),
            errno: e.errno().map(|e| format!("{e:?}")),
            libkmod: Vec::new(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_op_module_and_cause() {
        let e = ModuleError::InUse {
            op: Op::Unload,
            module: "nf_conntrack".into(),
            refcnt: 2,
            holders: vec!["xt_state".into(), "nf_nat".into()],
        };
        assert_eq!(
            e.to_string(),
            "unload nf_conntrack: module is in use (refcount 2, held by xt_state, nf_nat)"
        );
        assert_eq!(
            crate::error::hint(&e).unwrap(),
            "unload the holders first: nfkit modules unload xt_state nf_nat"
        );
        let info = ErrorInfo::from(&e);
        assert_eq!(info.kind, "in_use");
        assert_eq!(info.errno.as_deref(), Some("EBUSY"));

        let e = ModuleError::UnknownParameter {
            op: Op::Load,
            module: "nf_conntrack".into(),
            unknown: vec!["ip_conntrack_disable_ve0".into()],
            accepted: vec!["acct".into(), "hashsize".into()],
        };
        assert!(
            e.to_string()
                .starts_with("load nf_conntrack: unknown parameter ip_conntrack_disable_ve0")
        );
        assert!(crate::error::hint(&e).unwrap().contains("acct, hashsize"));

        let e = ModuleError::NotPermitted {
            op: Op::Load,
            module: "xt_state".into(),
            reason: EpermReason::ModulesDisabled,
        };
        assert_eq!(
            e.to_string(),
            "load xt_state: operation not permitted: kernel.modules_disabled=1"
        );

        let e = ModuleError::Kmod {
            op: Op::Load,
            module: "xt_state".into(),
            source: kmod::Error::LibraryMissing { detail: "x".into() },
        };
        assert_eq!(e.kind(), "libkmod_missing");
        assert!(crate::error::hint(&e).unwrap().contains("libkmod2"));

        // Issue 14 §6: the host's job, distinct from a refusal here.
        use crate::containment::HostOnly;
        for (why, cause, hint) in [
            (HostOnly::NoCapSysModule, "no CAP_SYS_MODULE", "on the host"),
            (
                HostOnly::NonInitialUserNamespace,
                "not in the initial user namespace",
                "on the host",
            ),
            (
                HostOnly::OpenVzContainer,
                "OpenVZ container",
                "vzctl set CTID --netfilter",
            ),
        ] {
            let e = ModuleError::MustBeDoneOnHost {
                op: Op::Load,
                module: "xt_state".into(),
                why,
            };
            assert_eq!(e.kind(), "must_be_done_on_host");
            assert_eq!(e.errno(), Some(Errno::EPERM));
            let text = e.to_string();
            assert!(
                text.starts_with("load xt_state: must be done on the host: ")
                    && text.contains(cause),
                "{text}"
            );
            let h = crate::error::hint(&e).unwrap();
            assert!(h.contains(hint) && h.contains("satisfied here"), "{h}");
        }
    }
}
