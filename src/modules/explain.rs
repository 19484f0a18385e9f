//! `nfkit explain`: why a module will or will not load (pure: facts in,
//! reasons and an outcome out). The facts are read by [`super::explain_read`].
//!
//! Every reason carries its evidence (a file and line, a kernel file's
//! value); its [`Effect`] says what it does to a load. The outcome of one
//! module is decided from the effects alone ([`decide`]), so the CLI's exit
//! code follows from the reasons shown.

use std::path::PathBuf;

use serde::Serialize;

use super::state::ModState;

/// What one reason does to a load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Effect {
    /// Informs only (a load goes ahead).
    Note,
    /// The module is already in the kernel: nothing to load.
    Satisfied,
    /// The kernel or the configuration here refuses the load.
    Blocks,
    /// Only the host (initial namespaces, CAP_SYS_MODULE) can load it.
    Host,
    /// Nothing here provides the module.
    Unavailable,
}

/// The outcome for one module (and, combined, for one name).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// Loaded or built in: success even without a module tree.
    AlreadySatisfied,
    /// A load would insert it.
    WouldLoad,
    /// A load would be refused here (policy, kernel settings).
    Refused,
    /// Must be done on the host (no CAP_SYS_MODULE, non-initial user
    /// namespace, container).
    MustBeDoneOnHost,
    /// Not available for this kernel (no module file, no module support).
    Unavailable,
}

impl Outcome {
    /// Whether `explain` exits 0 for it.
    pub fn ok(self) -> bool {
        matches!(self, Outcome::AlreadySatisfied | Outcome::WouldLoad)
    }

    /// Text form.
    pub fn describe(self) -> &'static str {
        match self {
            Outcome::AlreadySatisfied => "already satisfied",
            Outcome::WouldLoad => "would load",
            Outcome::Refused => "would be refused",
            Outcome::MustBeDoneOnHost => "must be done on the host",
            Outcome::Unavailable => "unavailable",
        }
    }
}

/// Whether a module file carries a signature.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signature {
    /// Ends with `~Module signature appended~\n`.
    Signed,
    /// Does not.
    Unsigned,
    /// Compressed (`.ko.xz`, `.ko.zst`, `.ko.gz`): not readable without a
    /// decompressor, which nfkit does not carry.
    UnknownCompressed,
    /// The file could not be read.
    Unreadable,
}

/// A modprobe.d line.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfLine {
    /// File, as seen from the root.
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

impl std::fmt::Display for ConfLine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.file.display(), self.line)
    }
}

/// Which kernel command-line parameter names a module.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CmdlineParam {
    /// `module_blacklist=` (the kernel refuses every load).
    ModuleBlacklist,
    /// `modprobe.blacklist=` (libkmod's blacklist: alias loads only).
    ModprobeBlacklist,
}

impl CmdlineParam {
    /// The parameter as written.
    pub fn word(self) -> &'static str {
        match self {
            CmdlineParam::ModuleBlacklist => "module_blacklist",
            CmdlineParam::ModprobeBlacklist => "modprobe.blacklist",
        }
    }
}

/// A kernel config option line found for a module.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ConfigHit {
    /// `CONFIG_NF_CONNTRACK_FTP`.
    pub option: String,
    /// `y`, `m`, or `not set`.
    pub value: String,
}

/// One reason, with its evidence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// The name is not in the module tree for this release.
    NotInTree {
        /// `lib/modules/<release>`.
        module_dir: PathBuf,
        /// Whether that directory exists at all (containers often lack it).
        module_dir_exists: bool,
        /// Config options (by name) found for it.
        #[serde(skip_serializing_if = "Vec::is_empty")]
        config: Vec<ConfigHit>,
    },
    /// The running kernel has no loadable module support.
    NoModuleSupport,
    /// Built into the kernel.
    BuiltIn {
        /// `modules.builtin` or `/sys/module/NAME` (no `initstate`).
        evidence: String,
    },
    /// Already loaded.
    Loaded {
        /// `live`, `coming`, `going`.
        state: ModState,
    },
    /// `blacklist MODULE` in modprobe.d.
    Blacklisted {
        /// Where.
        at: ConfLine,
        /// Whether the name given was an alias (only then does it apply).
        applies: bool,
    },
    /// A blacklist parameter on the kernel command line.
    CmdlineBlacklist {
        /// Which one.
        param: CmdlineParam,
        /// Whether it applies to this load.
        applies: bool,
    },
    /// `install MODULE COMMAND` in modprobe.d.
    InstallCommand {
        /// Where (when nfkit found the line).
        #[serde(skip_serializing_if = "Option::is_none")]
        at: Option<ConfLine>,
        /// The command.
        command: String,
        /// `/bin/true`, `/bin/false` and the like: disabled by policy.
        disabled_by_policy: bool,
        /// A softdep takes precedence over the command.
        overridden_by_softdep: bool,
    },
    /// `kernel.modules_disabled = 1`.
    ModulesDisabled,
    /// Kernel lockdown is on.
    Lockdown {
        /// `integrity` or `confidentiality`.
        mode: String,
        /// The module file's signature.
        signature: Signature,
    },
    /// `module.sig_enforce` is on.
    SignatureEnforced {
        /// The module file's signature.
        signature: Signature,
    },
    /// The module was built for another kernel.
    VermagicMismatch {
        /// modinfo `vermagic`'s release.
        module: String,
        /// The kernel's release.
        kernel: String,
    },
    /// The process lacks CAP_SYS_MODULE.
    NoCapSysModule,
    /// The process is not in the initial user namespace (CAP_SYS_MODULE
    /// there counts for nothing).
    NonInitialUserNamespace {
        /// `/proc/self/uid_map`'s first line.
        uid_map: String,
    },
    /// The kernel config option that provides it (informational).
    KernelConfig {
        /// The options found.
        options: Vec<ConfigHit>,
        /// The file they come from.
        source: PathBuf,
    },
}

fn signature_blocks(s: Signature) -> bool {
    matches!(s, Signature::Unsigned)
}

fn describe_signature(s: Signature) -> &'static str {
    match s {
        Signature::Signed => {
            "the module file is signed (whether its key is trusted is not checked)"
        }
        Signature::Unsigned => "the module file carries no signature",
        Signature::UnknownCompressed => {
            "signature unknown (compressed): nfkit cannot read it without a decompressor"
        }
        Signature::Unreadable => "signature unknown: the module file could not be read",
    }
}

impl Reason {
    /// What it does to a load.
    pub fn effect(&self) -> Effect {
        match self {
            Reason::NotInTree { .. } | Reason::NoModuleSupport => Effect::Unavailable,
            Reason::BuiltIn { .. } | Reason::Loaded { .. } => Effect::Satisfied,
            Reason::Blacklisted { applies, .. } | Reason::CmdlineBlacklist { applies, .. } => {
                if *applies {
                    Effect::Blocks
                } else {
                    Effect::Note
                }
            }
            Reason::InstallCommand {
                overridden_by_softdep,
                ..
            } => {
                if *overridden_by_softdep {
                    Effect::Note
                } else {
                    Effect::Blocks
                }
            }
            Reason::ModulesDisabled | Reason::VermagicMismatch { .. } => Effect::Blocks,
            Reason::Lockdown { signature, .. } | Reason::SignatureEnforced { signature } => {
                if signature_blocks(*signature) {
                    Effect::Blocks
                } else {
                    Effect::Note
                }
            }
            Reason::NoCapSysModule | Reason::NonInitialUserNamespace { .. } => Effect::Host,
            Reason::KernelConfig { .. } => Effect::Note,
        }
    }

    /// One line of text, evidence included.
    pub fn message(&self, module: &str) -> String {
        match self {
            Reason::NotInTree {
                module_dir,
                module_dir_exists,
                config,
            } => {
                let mut m = if *module_dir_exists {
                    format!("not in the module tree {}", module_dir.display())
                } else {
                    format!(
                        "no module tree: {} does not exist (a container or an image without this kernel's modules)",
                        module_dir.display()
                    )
                };
                if !config.is_empty() {
                    m.push_str(&format!("; kernel config: {}", config_list(config)));
                }
                m
            }
            Reason::NoModuleSupport => {
                "the running kernel has no loadable module support (no /proc/modules)".into()
            }
            Reason::BuiltIn { evidence } => format!("built into the kernel ({evidence})"),
            Reason::Loaded { state } => format!("already loaded ({})", state.as_str()),
            Reason::Blacklisted { at, applies } => {
                if *applies {
                    format!("blacklisted ({at}: blacklist {module}): a blacklist stops alias loads, and this name is an alias")
                } else {
                    format!("blacklisted ({at}: blacklist {module}), but a blacklist stops only alias and automatic loads: loading it by name still works")
                }
            }
            Reason::CmdlineBlacklist { param, applies } => match (param, applies) {
                (CmdlineParam::ModuleBlacklist, _) => format!(
                    "kernel command line {}={module}...: the kernel refuses to load it",
                    param.word()
                ),
                (CmdlineParam::ModprobeBlacklist, true) => format!(
                    "kernel command line {}= lists it, and this name is an alias",
                    param.word()
                ),
                (CmdlineParam::ModprobeBlacklist, false) => format!(
                    "kernel command line {}= lists it (alias and automatic loads only: loading it by name still works)",
                    param.word()
                ),
            },
            Reason::InstallCommand {
                at,
                command,
                disabled_by_policy,
                overridden_by_softdep,
            } => {
                let place = at.as_ref().map(|a| format!(" ({a})")).unwrap_or_default();
                if *overridden_by_softdep {
                    format!("install command `{command}`{place} is ignored: the module has a softdep, which takes precedence")
                } else if *disabled_by_policy {
                    format!("disabled by policy: `install {module} {command}`{place}")
                } else {
                    format!("install command `{command}`{place}: modprobe would run it instead of loading; nfkit never runs it (`nfkit modules load --ignore-install` loads the module itself)")
                }
            }
            Reason::ModulesDisabled => {
                "kernel.modules_disabled = 1 (/proc/sys/kernel/modules_disabled): no module can be loaded until reboot".into()
            }
            Reason::Lockdown { mode, signature } => format!(
                "kernel lockdown is {mode} (/sys/kernel/security/lockdown): only signed modules load; {}",
                describe_signature(*signature)
            ),
            Reason::SignatureEnforced { signature } => format!(
                "module signatures are enforced (/sys/module/module/parameters/sig_enforce = Y); {}",
                describe_signature(*signature)
            ),
            Reason::VermagicMismatch { module: m, kernel } => format!(
                "vermagic mismatch: the module was built for {m}, the kernel is {kernel}"
            ),
            Reason::NoCapSysModule => {
                "this process lacks CAP_SYS_MODULE (/proc/self/status CapEff): load it on the host or as root".into()
            }
            Reason::NonInitialUserNamespace { uid_map } => format!(
                "not in the initial user namespace (/proc/self/uid_map: {uid_map}): only the host can load modules"
            ),
            Reason::KernelConfig { options, source } => {
                format!("kernel config {} ({})", config_list(options), source.display())
            }
        }
    }
}

fn config_list(hits: &[ConfigHit]) -> String {
    hits.iter()
        .map(|h| match h.value.as_str() {
            "not set" => format!("{} is not set", h.option),
            v => format!("{}={v}", h.option),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

/// Decides the outcome from the reasons' effects: already there wins;
/// otherwise the strongest obstacle (unavailable, then host-only, then
/// refused); none = would load.
pub fn decide(reasons: &[Reason]) -> Outcome {
    let effects: Vec<Effect> = reasons.iter().map(Reason::effect).collect();
    if effects.contains(&Effect::Satisfied) {
        Outcome::AlreadySatisfied
    } else if effects.contains(&Effect::Unavailable) {
        Outcome::Unavailable
    } else if effects.contains(&Effect::Host) {
        Outcome::MustBeDoneOnHost
    } else if effects.contains(&Effect::Blocks) {
        Outcome::Refused
    } else {
        Outcome::WouldLoad
    }
}

/// The outcome of a name resolving to several modules: the worst of them
/// (a load of the name handles each).
pub fn combine(outcomes: &[Outcome]) -> Outcome {
    let rank = |o: &Outcome| match o {
        Outcome::AlreadySatisfied => 0,
        Outcome::WouldLoad => 1,
        Outcome::Refused => 2,
        Outcome::MustBeDoneOnHost => 3,
        Outcome::Unavailable => 4,
    };
    outcomes
        .iter()
        .copied()
        .max_by_key(rank)
        .unwrap_or(Outcome::Unavailable)
}

/// What the running kernel says (`None` each: offline, or not readable).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KernelFacts {
    /// `/proc/modules` exists.
    pub module_support: Option<bool>,
    /// `/proc/sys/kernel/modules_disabled`.
    pub modules_disabled: Option<bool>,
    /// `/sys/kernel/security/lockdown`'s selected mode.
    pub lockdown: Option<String>,
    /// `/sys/module/module/parameters/sig_enforce`.
    pub sig_enforce: Option<bool>,
    /// CAP_SYS_MODULE in CapEff.
    pub cap_sys_module: Option<bool>,
    /// `/proc/self/uid_map` is the identity map.
    pub initial_user_namespace: Option<bool>,
    /// `/proc/self/uid_map`'s first line.
    #[serde(skip)]
    pub uid_map: Option<String>,
    /// `module_blacklist=` names (canonical).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmdline_module_blacklist: Vec<String>,
    /// `modprobe.blacklist=` names (canonical).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub cmdline_modprobe_blacklist: Vec<String>,
}

/// What is known of one module (a real module a name resolved to).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModuleFacts {
    /// Real module name.
    pub module: String,
    /// The name given was an alias.
    pub via_alias: bool,
    /// The module file (none: built in, or not in the tree).
    pub path: Option<String>,
    /// Built in, with the evidence.
    pub builtin: Option<String>,
    /// Loaded state (live kernel only).
    pub loaded: Option<ModState>,
    /// `blacklist` lines for it.
    pub blacklist: Vec<ConfLine>,
    /// The effective install command (libkmod's), with its line if found.
    pub install: Option<(String, Option<ConfLine>)>,
    /// It has softdeps (which take precedence over install).
    pub has_softdep: bool,
    /// Signature of the file.
    pub signature: Option<Signature>,
    /// modinfo vermagic's first word.
    pub vermagic: Option<String>,
}

/// The reasons for one module, from its facts, the kernel's, the release
/// it is compared with and the config options found (with their file).
pub fn reasons(
    m: &ModuleFacts,
    kernel: &KernelFacts,
    release: &str,
    config: Option<(&[ConfigHit], &PathBuf)>,
) -> Vec<Reason> {
    let mut out = Vec::new();
    if let Some(evidence) = &m.builtin {
        out.push(Reason::BuiltIn {
            evidence: evidence.clone(),
        });
    }
    if let Some(state) = m.loaded.filter(|s| s.is_loaded()) {
        out.push(Reason::Loaded { state });
    }
    let present = !out.is_empty();
    if !present && m.path.is_some() && kernel.module_support == Some(false) {
        out.push(Reason::NoModuleSupport);
    }
    for at in &m.blacklist {
        out.push(Reason::Blacklisted {
            at: at.clone(),
            applies: m.via_alias,
        });
    }
    if kernel.cmdline_module_blacklist.contains(&m.module) {
        out.push(Reason::CmdlineBlacklist {
            param: CmdlineParam::ModuleBlacklist,
            applies: true,
        });
    }
    if kernel.cmdline_modprobe_blacklist.contains(&m.module) {
        out.push(Reason::CmdlineBlacklist {
            param: CmdlineParam::ModprobeBlacklist,
            applies: m.via_alias,
        });
    }
    if let Some((command, at)) = &m.install {
        out.push(Reason::InstallCommand {
            at: at.clone(),
            command: command.clone(),
            disabled_by_policy: crate::persist::modprobe_d::is_disabling_command(command),
            overridden_by_softdep: m.has_softdep,
        });
    }
    if !present {
        if kernel.modules_disabled == Some(true) {
            out.push(Reason::ModulesDisabled);
        }
        let signature = m.signature.unwrap_or(Signature::Unreadable);
        if let Some(mode) = kernel.lockdown.as_deref().filter(|m| *m != "none") {
            out.push(Reason::Lockdown {
                mode: mode.to_owned(),
                signature,
            });
        }
        if kernel.sig_enforce == Some(true) {
            out.push(Reason::SignatureEnforced { signature });
        }
        if let Some(v) = m.vermagic.as_deref().filter(|v| *v != release) {
            out.push(Reason::VermagicMismatch {
                module: v.to_owned(),
                kernel: release.to_owned(),
            });
        }
        if kernel.cap_sys_module == Some(false) {
            out.push(Reason::NoCapSysModule);
        }
        if kernel.initial_user_namespace == Some(false) {
            out.push(Reason::NonInitialUserNamespace {
                uid_map: kernel.uid_map.clone().unwrap_or_default(),
            });
        }
    }
    if let Some((hits, source)) = config.filter(|(h, _)| !h.is_empty()) {
        out.push(Reason::KernelConfig {
            options: hits.to_vec(),
            source: source.clone(),
        });
    }
    out
}

/// The signature state of a module file from its name and its last bytes.
pub fn signature_of(path: &str, tail: Option<&[u8]>) -> Signature {
    const MARK: &[u8] = b"~Module signature appended~\n";
    if [".ko.xz", ".ko.zst", ".ko.gz"]
        .iter()
        .any(|s| path.ends_with(s))
    {
        return Signature::UnknownCompressed;
    }
    match tail {
        Some(t) if t.ends_with(MARK) => Signature::Signed,
        Some(_) => Signature::Unsigned,
        None => Signature::Unreadable,
    }
}

/// The number of bytes [`signature_of`] needs from a file's end.
pub const SIGNATURE_TAIL: usize = 28;

/// Names on the kernel command line's `module_blacklist=` and
/// `modprobe.blacklist=` (comma lists, repeatable), canonical.
pub fn cmdline_blacklists(cmdline: &str) -> (Vec<String>, Vec<String>) {
    let mut kernel = Vec::new();
    let mut modprobe = Vec::new();
    for word in cmdline.split_ascii_whitespace() {
        let (list, value) = if let Some(v) = word.strip_prefix("module_blacklist=") {
            (&mut kernel, v)
        } else if let Some(v) = word.strip_prefix("modprobe.blacklist=") {
            (&mut modprobe, v)
        } else {
            continue;
        };
        list.extend(
            value
                .split(',')
                .filter(|n| !n.is_empty())
                .map(|n| super::name::ModuleName::canonical(n).into_string()),
        );
    }
    (kernel, modprobe)
}

/// The mode in brackets of `/sys/kernel/security/lockdown`
/// (`none [integrity] confidentiality`).
pub fn lockdown_mode(text: &str) -> Option<String> {
    text.split_ascii_whitespace()
        .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        .map(str::to_owned)
}

/// Whether `/proc/self/uid_map` is the initial namespace's identity map.
pub fn is_initial_uid_map(text: &str) -> bool {
    let words: Vec<&str> = text.split_ascii_whitespace().collect();
    words == ["0", "0", "4294967295"]
}

/// Kernel config options that may provide a module, derived from its name
/// (the module tree does not record Kconfig symbols): the netfilter naming
/// rules, then `CONFIG_<NAME>`.
pub fn config_candidates(module: &str) -> Vec<String> {
    let up = |s: &str| s.to_ascii_uppercase();
    let mut c = Vec::new();
    if let Some(rest) = module.strip_prefix("xt_") {
        c.push(format!("NETFILTER_XT_MATCH_{}", up(rest)));
        c.push(format!("NETFILTER_XT_TARGET_{}", up(rest)));
        c.push(format!("NETFILTER_XT_{}", up(rest)));
    } else if let Some(rest) = module.strip_prefix("nf_conntrack_") {
        c.push(format!("NF_CONNTRACK_{}", up(rest)));
    } else if let Some(rest) = module.strip_prefix("nf_nat_") {
        c.push(format!("NF_NAT_{}", up(rest)));
    } else if let Some(rest) = module.strip_prefix("ipt_") {
        c.push(format!("IP_NF_MATCH_{}", up(rest)));
        c.push(format!("IP_NF_TARGET_{}", up(rest)));
    } else if let Some(rest) = module.strip_prefix("ip6t_") {
        c.push(format!("IP6_NF_MATCH_{}", up(rest)));
        c.push(format!("IP6_NF_TARGET_{}", up(rest)));
    } else if let Some(rest) = module.strip_prefix("iptable_") {
        c.push(format!("IP_NF_{}", up(rest)));
    } else if let Some(rest) = module.strip_prefix("ip6table_") {
        c.push(format!("IP6_NF_{}", up(rest)));
    }
    match module {
        "nf_tables" => c.push("NF_TABLES".into()),
        "nf_conntrack" => c.push("NF_CONNTRACK".into()),
        "ip_tables" => c.push("IP_NF_IPTABLES".into()),
        "ip6_tables" => c.push("IP6_NF_IPTABLES".into()),
        "x_tables" => c.push("NETFILTER_XTABLES".into()),
        "nfnetlink" => c.push("NETFILTER_NETLINK".into()),
        _ => {}
    }
    let own = up(module);
    if !c.contains(&own) {
        c.push(own);
    }
    c.into_iter().map(|s| format!("CONFIG_{s}")).collect()
}

/// Looks the candidates up in a kernel config file's text (`CONFIG_X=y`,
/// `# CONFIG_X is not set`).
pub fn config_lookup(text: &str, candidates: &[String]) -> Vec<ConfigHit> {
    let mut hits = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        let (option, value) = if let Some(rest) = line.strip_prefix("# ") {
            match rest.strip_suffix(" is not set") {
                Some(o) => (o, "not set"),
                None => continue,
            }
        } else {
            match line.split_once('=') {
                Some((o, v)) => (o, v),
                None => continue,
            }
        };
        if candidates.iter().any(|c| c == option) {
            hits.push(ConfigHit {
                option: option.to_owned(),
                value: value.to_owned(),
            });
        }
    }
    hits
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn kernel() -> KernelFacts {
        KernelFacts {
            module_support: Some(true),
            modules_disabled: Some(false),
            lockdown: Some("none".into()),
            sig_enforce: Some(false),
            cap_sys_module: Some(true),
            initial_user_namespace: Some(true),
            ..KernelFacts::default()
        }
    }

    fn module() -> ModuleFacts {
        ModuleFacts {
            module: "xt_foo".into(),
            path: Some("/lib/modules/r/kernel/xt_foo.ko".into()),
            signature: Some(Signature::Signed),
            vermagic: Some("r".into()),
            ..ModuleFacts::default()
        }
    }

    fn at() -> ConfLine {
        ConfLine {
            file: "/etc/modprobe.d/b.conf".into(),
            line: 3,
        }
    }

    #[test]
    fn plain_module_would_load() {
        let r = reasons(&module(), &kernel(), "r", None);
        assert!(r.is_empty(), "{r:?}");
        assert_eq!(decide(&r), Outcome::WouldLoad);
    }

    #[test]
    fn blacklist_applies_only_to_aliases() {
        let mut m = module();
        m.blacklist.push(at());
        assert_eq!(
            decide(&reasons(&m, &kernel(), "r", None)),
            Outcome::WouldLoad
        );
        let text = reasons(&m, &kernel(), "r", None)[0].message("xt_foo");
        assert!(text.contains("/etc/modprobe.d/b.conf:3"), "{text}");
        assert!(text.contains("by name still works"), "{text}");
        m.via_alias = true;
        assert_eq!(decide(&reasons(&m, &kernel(), "r", None)), Outcome::Refused);
    }

    #[test]
    fn install_true_is_policy_and_softdep_wins() {
        let mut m = module();
        m.install = Some(("/bin/true".into(), Some(at())));
        let r = reasons(&m, &kernel(), "r", None);
        assert_eq!(decide(&r), Outcome::Refused);
        assert!(r[0].message("xt_foo").starts_with("disabled by policy"));
        m.has_softdep = true;
        assert_eq!(
            decide(&reasons(&m, &kernel(), "r", None)),
            Outcome::WouldLoad
        );
    }

    #[test]
    fn kernel_refusals() {
        let mut k = kernel();
        k.modules_disabled = Some(true);
        assert_eq!(decide(&reasons(&module(), &k, "r", None)), Outcome::Refused);
        let mut k = kernel();
        k.sig_enforce = Some(true);
        assert_eq!(
            decide(&reasons(&module(), &k, "r", None)),
            Outcome::WouldLoad
        );
        let mut m = module();
        m.signature = Some(Signature::Unsigned);
        assert_eq!(decide(&reasons(&m, &k, "r", None)), Outcome::Refused);
        let mut k = kernel();
        k.lockdown = Some("integrity".into());
        assert_eq!(decide(&reasons(&m, &k, "r", None)), Outcome::Refused);
        let mut k = kernel();
        k.cmdline_module_blacklist = vec!["xt_foo".into()];
        assert_eq!(decide(&reasons(&module(), &k, "r", None)), Outcome::Refused);
        let mut k = kernel();
        k.cmdline_modprobe_blacklist = vec!["xt_foo".into()];
        assert_eq!(
            decide(&reasons(&module(), &k, "r", None)),
            Outcome::WouldLoad
        );
        assert_eq!(
            decide(&reasons(&module(), &kernel(), "r2", None)),
            Outcome::Refused
        );
    }

    #[test]
    fn containers() {
        let mut k = kernel();
        k.cap_sys_module = Some(false);
        assert_eq!(
            decide(&reasons(&module(), &k, "r", None)),
            Outcome::MustBeDoneOnHost
        );
        let mut m = module();
        m.builtin = Some("modules.builtin".into());
        m.path = None;
        assert_eq!(
            decide(&reasons(&m, &k, "r", None)),
            Outcome::AlreadySatisfied
        );
        let mut k = kernel();
        k.initial_user_namespace = Some(false);
        assert_eq!(
            decide(&reasons(&module(), &k, "r", None)),
            Outcome::MustBeDoneOnHost
        );
        let mut k = kernel();
        k.module_support = Some(false);
        assert_eq!(
            decide(&reasons(&module(), &k, "r", None)),
            Outcome::Unavailable
        );
    }

    #[test]
    fn parsers() {
        let (k, m) =
            cmdline_blacklists("ro module_blacklist=xt-foo,nf_x modprobe.blacklist=a-b quiet");
        assert_eq!(k, ["xt_foo", "nf_x"]);
        assert_eq!(m, ["a_b"]);
        assert_eq!(
            lockdown_mode("none [integrity] confidentiality").as_deref(),
            Some("integrity")
        );
        assert_eq!(lockdown_mode("[none] integrity").as_deref(), Some("none"));
        assert!(is_initial_uid_map("         0          0 4294967295\n"));
        assert!(!is_initial_uid_map("0 100000 65536\n"));
        assert_eq!(
            signature_of("a.ko", Some(b"xx~Module signature appended~\n")),
            Signature::Signed
        );
        assert_eq!(signature_of("a.ko", Some(b"\0\0\0")), Signature::Unsigned);
        assert_eq!(signature_of("a.ko.zst", None), Signature::UnknownCompressed);
        assert_eq!(SIGNATURE_TAIL, b"~Module signature appended~\n".len());
        let cands = config_candidates("nf_conntrack_ftp");
        assert_eq!(cands[0], "CONFIG_NF_CONNTRACK_FTP");
        let hits = config_lookup(
            "CONFIG_NF_CONNTRACK_FTP=m\n# CONFIG_NF_CONNTRACK_FTPX is not set\n",
            &cands,
        );
        assert_eq!(
            hits,
            [ConfigHit {
                option: "CONFIG_NF_CONNTRACK_FTP".into(),
                value: "m".into()
            }]
        );
        let hits = config_lookup(
            "# CONFIG_XT_FOOBAR is not set\n",
            &config_candidates("xt_foo"),
        );
        assert_eq!(hits.len(), 0, "only the derived names");
        let hits = config_lookup(
            "# CONFIG_NETFILTER_XT_MATCH_FOO is not set\n",
            &config_candidates("xt_foo"),
        );
        assert_eq!(hits[0].value, "not set");
    }

    fn arb_reason() -> impl Strategy<Value = Reason> {
        prop_oneof![
            Just(Reason::NoModuleSupport),
            Just(Reason::ModulesDisabled),
            Just(Reason::NoCapSysModule),
            any::<bool>().prop_map(|applies| Reason::Blacklisted { at: at(), applies }),
            (any::<bool>(), any::<bool>()).prop_map(|(p, s)| Reason::InstallCommand {
                at: None,
                command: if p {
                    "/bin/false".into()
                } else {
                    "/sbin/x".into()
                },
                disabled_by_policy: p,
                overridden_by_softdep: s,
            }),
            Just(Reason::Loaded {
                state: ModState::Live
            }),
            Just(Reason::BuiltIn {
                evidence: "x".into()
            }),
            prop_oneof![
                Just(Signature::Signed),
                Just(Signature::Unsigned),
                Just(Signature::UnknownCompressed)
            ]
            .prop_map(|signature| Reason::SignatureEnforced { signature }),
        ]
    }

    proptest! {
        /// The outcome is ok exactly when the module is there or nothing
        /// stands in the way; any obstacle makes it not ok; adding a note
        /// never changes it.
        #[test]
        fn outcome_follows_effects(rs in proptest::collection::vec(arb_reason(), 0..6)) {
            let o = decide(&rs);
            let effects: Vec<Effect> = rs.iter().map(Reason::effect).collect();
            let satisfied = effects.contains(&Effect::Satisfied);
            let obstacle = effects.iter().any(|e| matches!(e, Effect::Blocks | Effect::Host | Effect::Unavailable));
            prop_assert_eq!(o.ok(), satisfied || !obstacle);
            prop_assert_eq!(o == Outcome::AlreadySatisfied, satisfied);
            let mut more = rs.clone();
            more.push(Reason::KernelConfig { options: vec![], source: "/boot/c".into() });
            prop_assert_eq!(decide(&more), o);
            prop_assert_eq!(combine(&[o, Outcome::WouldLoad]).ok(), o.ok());
        }
    }
}
