//! `nfkit import`: read existing configuration and print the equivalent
//! `nfkit.toml`, with a comment for every translation and every dropped
//! item (reads files only).
//!
//! Sources: `IPTABLES_MODULES` in `/etc/sysconfig/iptables-config`;
//! `options` lines in modprobe.d (including alias-keyed
//! `options ip_conntrack ...` from parallels.conf / vz.conf / openvz.conf);
//! `/etc/modules` and modules-load.d; `net.nf_conntrack_max` /
//! `net.netfilter.nf_conntrack_max` (and other `net.netfilter.*`, and the
//! 2.6-era `net.ipv4.netfilter.ip_conntrack_*`) in `/etc/sysctl.conf` and
//! sysctl.d. Legacy module names become current ones.
//!
//! By default only the admin's configuration of the netfilter layer is
//! taken (see [`import_scope`]): vendor files and modules outside the layer
//! are read only to account for what was skipped; `--all` takes them too
//! and lists each.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::desired::Desired;
use super::files::{self, FileError};
use super::import_scope::{self, FileClass, Item, ModuleLayer, OutOfScope, Scope};
use super::modprobe_d::{self, Directive};
use super::nextboot::{MODPROBE_DIRS, MODULES_LOAD_DIRS};
use super::values::{self, ModuleName, OptionName, OptionValue, SysctlKey, SysctlValue};
use super::{module_list, plan, shell_vars, sysctl_d};
use crate::modules::legacy::{self, Fate};

/// Which family of hosts to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ImportFrom {
    /// Everything present.
    Auto,
    /// EL: iptables-config, modprobe.d, sysctl.
    Rhel,
    /// PCS / Virtuozzo: as EL, plus parallels.conf / vz.conf / openvz.conf.
    Pcs,
    /// Debian: /etc/modules, modules-load.d, modprobe.d, sysctl.
    Debian,
}

/// The kind of a source file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum SourceKind {
    /// Shell variables (`IPTABLES_MODULES`).
    IptablesConfig,
    /// modprobe.d.
    Modprobe,
    /// A module list (modules-load.d, /etc/modules).
    ModuleList,
    /// sysctl.conf / sysctl.d.
    Sysctl,
}

/// Guesses a file's kind from its path.
pub fn kind_of(path: &Path) -> Option<SourceKind> {
    let text = path.to_string_lossy();
    let name = path.file_name()?.to_string_lossy();
    if name.starts_with("iptables-config") || name.starts_with("ip6tables-config") {
        Some(SourceKind::IptablesConfig)
    } else if text.contains("modprobe")
        || matches!(name.as_ref(), "parallels.conf" | "vz.conf" | "openvz.conf")
    {
        Some(SourceKind::Modprobe)
    } else if text.contains("modules-load") || name == "modules" {
        Some(SourceKind::ModuleList)
    } else if text.contains("sysctl") {
        Some(SourceKind::Sysctl)
    } else {
        None
    }
}

/// Errors of import.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImportError {
    /// Reading failed.
    #[error("import")]
    File(#[from] FileError),
    /// A named path does not exist.
    #[error("import {}: no such file", .0.display())]
    Missing(PathBuf),
    /// The format of a named path cannot be told from its name.
    #[error("import {}: cannot tell the format from the name (iptables-config, modprobe.d, modules-load.d, /etc/modules or sysctl)", .0.display())]
    UnknownKind(PathBuf),
    /// A file nfkit must not guess about.
    #[error("import {}:{line}: {reason}", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
    /// A name or value nfkit.toml cannot hold (a NUL, a control character,
    /// a character the boot file's grammar forbids).
    #[error("import {origin}: {reason}")]
    Invalid { origin: String, reason: String },
    /// The result would not be read back by nfkit (a bug: every value is
    /// checked where it is read).
    #[error("import: the nfkit.toml it would print is not valid: {0}")]
    Unrepresentable(String),
}

/// The result: the state and the comments explaining it.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// The desired state.
    pub desired: Desired,
    /// One comment per translation or dropped item.
    pub comments: Vec<String>,
    /// Files imported from (vendor files only with `--all`).
    pub sources: Vec<PathBuf>,
    /// What was taken.
    pub scope: Scope,
    /// Items outside the default scope: skipped, or added by `--all`.
    pub out_of_scope: Vec<OutOfScope>,
    /// Assignments of sysctls outside `net.netfilter` in the files imported from.
    pub ignored_sysctls: usize,
}

impl Imported {
    /// The nfkit.toml text.
    pub fn render(&self) -> String {
        let mut header = vec!["nfkit.toml imported by `nfkit import` from:".to_string()];
        header.extend(self.sources.iter().map(|s| format!("  {}", s.display())));
        header.extend(self.comments.iter().cloned());
        header.extend(self.summary());
        self.desired.render(&header)
    }

    /// The lines accounting for what the scope left out or `--all` added.
    pub fn summary(&self) -> Vec<String> {
        import_scope::summary(&self.out_of_scope, self.ignored_sysctls)
    }

    /// Items `--all` added.
    pub fn added(&self) -> impl Iterator<Item = &OutOfScope> {
        self.out_of_scope.iter().filter(|i| i.imported)
    }

    /// Items not imported.
    pub fn skipped(&self) -> impl Iterator<Item = &OutOfScope> {
        self.out_of_scope.iter().filter(|i| !i.imported)
    }
}

/// Files of each kind for a host family, as seen inside the root.
fn default_sources(root: &Path, from: ImportFrom) -> Result<Vec<(PathBuf, SourceKind)>, FileError> {
    let mut out = Vec::new();
    let el = matches!(from, ImportFrom::Auto | ImportFrom::Rhel | ImportFrom::Pcs);
    let debian = matches!(from, ImportFrom::Auto | ImportFrom::Debian);
    if el {
        out.push((
            PathBuf::from(plan::IPTABLES_CONFIG),
            SourceKind::IptablesConfig,
        ));
    }
    if debian {
        out.push((PathBuf::from(plan::ETC_MODULES), SourceKind::ModuleList));
        for f in plan::conf_dir_files(root, &MODULES_LOAD_DIRS)? {
            out.push((f.path, SourceKind::ModuleList));
        }
    }
    for f in plan::conf_dir_files(root, &MODPROBE_DIRS)? {
        out.push((f.path, SourceKind::Modprobe));
    }
    out.push((PathBuf::from("/etc/sysctl.conf"), SourceKind::Sysctl));
    for f in plan::sysctl_files(root)? {
        out.push((f.path, SourceKind::Sysctl));
    }
    // nfkit's own files are outputs, not inputs.
    out.retain(|(p, _)| !p.to_string_lossy().contains("nfkit"));
    out.dedup();
    Ok(out)
}

struct Builder {
    scope: Scope,
    layer: ModuleLayer,
    /// The class of the file being read.
    class: FileClass,
    load: Vec<ModuleName>,
    /// The names in `load`, for linear-time de-duplication.
    loaded: std::collections::HashSet<ModuleName>,
    options: BTreeMap<ModuleName, BTreeMap<OptionName, OptionValue>>,
    max: Option<(u32, String)>,
    buckets: Option<(u32, String)>,
    sysctl: BTreeMap<SysctlKey, SysctlValue>,
    comments: Vec<String>,
    out_of_scope: Vec<OutOfScope>,
    ignored_sysctls: usize,
    /// The first name or value nfkit.toml cannot hold: (origin, reason).
    invalid: Option<(String, String)>,
}

impl Builder {
    fn new(scope: Scope, layer: ModuleLayer) -> Self {
        Self {
            scope,
            layer,
            class: FileClass::Admin,
            invalid: None,
            load: Vec::new(),
            loaded: std::collections::HashSet::new(),
            options: BTreeMap::new(),
            max: None,
            buckets: None,
            sysctl: BTreeMap::new(),
            comments: Vec::new(),
            out_of_scope: Vec::new(),
            ignored_sysctls: 0,
        }
    }

    /// Whether the scope takes netfilter items from the current file.
    fn file_in_scope(&self) -> bool {
        import_scope::admitted(self.scope, &import_scope::reasons(self.class, true))
    }

    /// Whether the scope takes `item` from the current file; records it
    /// when it is outside the default scope.
    fn admit(&mut self, item: Item, origin: &str, netfilter: bool) -> bool {
        let reasons = import_scope::reasons(self.class, netfilter);
        if reasons.is_empty() {
            return true;
        }
        let imported = import_scope::admitted(self.scope, &reasons);
        self.out_of_scope.push(OutOfScope {
            item,
            source: origin.to_string(),
            reasons,
            imported,
        });
        imported
    }

    /// Translates one module name; returns the current name if it loads.
    fn module(&mut self, name: &str, origin: &str) -> Option<ModuleName> {
        let normalized = match values::module_name(name) {
            Ok(name) => name,
            Err(e) => {
                self.comments.push(format!("{origin}: dropped: {e}"));
                return None;
            }
        };
        match legacy::lookup(normalized.as_str()).map(|l| l.fate) {
            Some(Fate::Alias { module }) => {
                self.comments.push(format!(
                    "{origin}: {normalized} → {module} (2.6-era name, now an alias)"
                ));
                Some(ModuleName::canonical(module))
            }
            Some(Fate::Merged { module, since }) => {
                self.comments.push(format!(
                    "{origin}: {normalized} → {module} (merged into {module} in Linux {since})"
                ));
                Some(ModuleName::canonical(module))
            }
            Some(Fate::Removed { since, instead }) => {
                self.comments.push(format!(
                    "{origin}: dropped {normalized}: removed in Linux {since}; use {instead}"
                ));
                None
            }
            None => Some(normalized),
        }
    }

    /// Records the first item nfkit.toml cannot hold; `false` when `check`
    /// failed.
    fn holds(&mut self, origin: &str, check: Result<(), values::ValueError>) -> bool {
        match check {
            Ok(()) => true,
            Err(e) => {
                self.invalid
                    .get_or_insert_with(|| (origin.to_string(), e.to_string()));
                false
            }
        }
    }

    /// A module to load; `netfilter_by_construction` for `IPTABLES_MODULES`.
    fn add_load(&mut self, name: &str, origin: &str, netfilter_by_construction: bool) {
        let netfilter = netfilter_by_construction || self.layer.is_netfilter(name);
        let item = Item::Load {
            module: name.to_string(),
        };
        if !self.admit(item, origin, netfilter) {
            return;
        }
        if !self.holds(origin, values::module_name(name).map(drop)) {
            return;
        }
        if let Some(m) = self.module(name, origin)
            && self.loaded.insert(m.clone())
        {
            self.load.push(m);
        }
    }

    fn add_options(&mut self, module: &str, options: &[String], origin: &str) {
        let item = Item::Options {
            module: module.to_string(),
            options: options.to_vec(),
        };
        let netfilter = self.layer.is_netfilter(module);
        if !self.admit(item, origin, netfilter) {
            return;
        }
        let checked = values::module_name(module).map(drop).and_then(|()| {
            options
                .iter()
                .try_for_each(|o| values::split_word(o).map(drop))
        });
        if !self.holds(origin, checked) {
            return;
        }
        let Some(real) = self.module(module, origin) else {
            self.comments.push(format!(
                "{origin}: dropped options for removed module {module}: {}",
                options.join(" ")
            ));
            return;
        };
        if real != module {
            self.comments.push(format!(
                "{origin}: `options {module}` was keyed by an alias (applies only when loading by that name); now keyed by {real}"
            ));
        }
        for option in options {
            let (key, value) = match values::split_word(option) {
                Ok(pair) => pair,
                Err(e) => {
                    self.comments
                        .push(format!("{origin}: dropped option {option}: {e}"));
                    continue;
                }
            };
            if real == "nf_conntrack" && key.same_parameter("ip_conntrack_disable_ve0") {
                self.comments.push(format!(
                    "{origin}: kept {key}={value}: only Virtuozzo/OpenVZ kernels have this parameter; \
                     elsewhere `nfkit apply` reports it as not accepted"
                ));
            }
            if real == "nf_conntrack" && key.same_parameter("hashsize") {
                if let Ok(n) = value.as_str().parse::<u32>() {
                    self.buckets = Some((n, origin.to_string()));
                    self.comments
                        .push(format!("{origin}: hashsize={value} → conntrack.buckets"));
                    continue;
                }
            }
            // The last setting of a parameter wins, whatever its spelling
            // (`-` or `_`), as in the kernel.
            let module_options = self.options.entry(real.clone()).or_default();
            module_options.retain(|k, _| !k.same_parameter(key.as_str()));
            module_options.insert(key, value);
        }
    }

    fn add_sysctl(&mut self, key: &str, value: &str, origin: &str) {
        let dotted = key.replace('/', ".");
        if !import_scope::is_netfilter_sysctl(&dotted) {
            if self.file_in_scope() {
                self.ignored_sysctls += 1;
            }
            return;
        }
        let item = Item::Sysctl {
            key: key.to_string(),
            value: value.to_string(),
        };
        if !self.admit(item, origin, true) {
            return;
        }
        let checked = SysctlKey::parse(key)
            .and_then(|_| SysctlValue::parse(value))
            .map(drop);
        if !self.holds(origin, checked) {
            return;
        }
        // 2.6-era compat names (net.ipv4.netfilter.ip_conntrack_*): the same
        // settings under net.netfilter.nf_conntrack_*.
        let canonical = match dotted.strip_prefix("net.ipv4.netfilter.ip_conntrack_") {
            Some(rest) => format!("net.netfilter.nf_conntrack_{rest}"),
            None if dotted == "net.nf_conntrack_max" => "net.netfilter.nf_conntrack_max".into(),
            None => dotted.clone(),
        };
        let legacy_note = |to: &str| {
            if dotted == "net.nf_conntrack_max" {
                format!(
                    "{origin}: net.nf_conntrack_max → {to} (legacy name of net.netfilter.nf_conntrack_max)"
                )
            } else {
                format!("{origin}: {dotted} → {to} (2.6-era name of {canonical})")
            }
        };
        let legacy = canonical != dotted;
        match canonical.as_str() {
            // Read-only: a value in a file was never applied (sysctl reports
            // an error for it); nfkit would refuse it in nfkit.toml.
            "net.netfilter.nf_conntrack_count" => self.comments.push(format!(
                "{origin}: dropped {dotted} = {value}: read-only (the number of tracked connections)"
            )),
            "net.netfilter.nf_conntrack_max" => match value.parse::<u32>() {
                Ok(n) => {
                    if legacy {
                        self.comments.push(legacy_note("conntrack.max"));
                    }
                    if let Some((old, old_origin)) = &self.max
                        && *old != n
                    {
                        self.comments.push(format!(
                            "{origin}: max {n} overrides {old} from {old_origin} (applied later)"
                        ));
                    }
                    self.max = Some((n, origin.to_string()));
                }
                Err(_) => self.comments.push(format!(
                    "{origin}: dropped {dotted} = {value}: not a number"
                )),
            },
            "net.netfilter.nf_conntrack_buckets" => match value.parse::<u32>() {
                Ok(n) => {
                    if legacy {
                        self.comments.push(legacy_note("conntrack.buckets"));
                    }
                    self.buckets = Some((n, origin.to_string()))
                }
                Err(_) => self.comments.push(format!(
                    "{origin}: dropped {dotted} = {value}: not a number"
                )),
            },
            k => {
                if legacy {
                    self.comments.push(legacy_note(k));
                }
                match (SysctlKey::parse(k), SysctlValue::parse(value)) {
                    (Ok(k), Ok(v)) => {
                        self.sysctl.insert(k, v);
                    }
                    (Err(e), _) | (_, Err(e)) => self
                        .comments
                        .push(format!("{origin}: dropped {dotted}: {e}")),
                }
            }
        }
    }
}

/// Reads the sources (the family's defaults, or `paths`) under `root`,
/// taking what `scope` covers.
pub fn import(
    root: &Path,
    from: ImportFrom,
    scope: Scope,
    paths: &[PathBuf],
) -> Result<Imported, ImportError> {
    let sources: Vec<(PathBuf, SourceKind, FileClass)> = if paths.is_empty() {
        default_sources(root, from)?
            .into_iter()
            .map(|(p, k)| {
                let class = FileClass::of(&p);
                (p, k, class)
            })
            .collect()
    } else {
        paths
            .iter()
            .map(|p| {
                kind_of(p)
                    .map(|k| (p.clone(), k, FileClass::Named))
                    .ok_or_else(|| ImportError::UnknownKind(p.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let mut b = Builder::new(scope, ModuleLayer::load(root));
    let mut read = Vec::new();
    for (path, kind, class) in sources {
        let Some(text) = files::read_under(root, &path)? else {
            if !paths.is_empty() {
                return Err(ImportError::Missing(path));
            }
            continue;
        };
        b.class = class;
        let in_scope = b.file_in_scope();
        if in_scope {
            read.push(path.clone());
        }
        let shown = path.display().to_string();
        match kind {
            SourceKind::IptablesConfig => {
                let assignments = shell_vars::parse(&text).map_err(|e| ImportError::Syntax {
                    path: path.clone(),
                    line: e.line,
                    reason: e.reason,
                })?;
                if let Some(a) = shell_vars::find(&assignments, plan::IPTABLES_MODULES) {
                    for word in shell_vars::words(&a.value) {
                        b.add_load(&word, &format!("{shown}:{}", a.line), true);
                    }
                }
            }
            SourceKind::ModuleList => {
                for entry in module_list::parse(&text) {
                    let origin = format!("{shown}:{}", entry.line);
                    b.add_load(&entry.module, &origin, false);
                    if !entry.params.is_empty() {
                        let module = entry.module.clone();
                        b.add_options(&module, &entry.params, &origin);
                    }
                }
            }
            SourceKind::Modprobe => {
                let (directives, errors) = modprobe_d::parse(&path, &text);
                if in_scope {
                    for e in errors {
                        b.comments.push(format!("ignored: {e}"));
                    }
                }
                for d in directives {
                    let origin = format!("{shown}:{}", d.line);
                    match d.directive {
                        Directive::Options { module, options } => {
                            b.add_options(&module, &options, &origin)
                        }
                        Directive::Blacklist { module } | Directive::Install { module, .. }
                            if in_scope && b.layer.is_netfilter(&module) =>
                        {
                            b.comments.push(format!(
                                "{origin}: left in place: blacklist/install policy for {module} is not part of nfkit.toml"
                            ));
                        }
                        _ => {}
                    }
                }
            }
            SourceKind::Sysctl => {
                let (assignments, errors) = sysctl_d::parse(&path, &text);
                if in_scope {
                    for e in errors {
                        b.comments.push(format!("ignored: {e}"));
                    }
                }
                for a in assignments {
                    if a.is_glob() {
                        b.comments.push(format!(
                            "{shown}:{}: left in place: glob key {} (nfkit.toml names keys one by one; \
                             `nfkit verify` accounts for globs)",
                            a.line, a.key
                        ));
                        continue;
                    }
                    b.add_sysctl(&a.key, &a.value, &format!("{shown}:{}", a.line));
                }
            }
        }
    }
    if let Some((origin, reason)) = b.invalid {
        return Err(ImportError::Invalid { origin, reason });
    }
    let mut desired = Desired::default();
    desired.modules.load = b.load;
    desired.modules.options = b.options;
    desired.conntrack.max = b.max.map(|(n, _)| n);
    desired.conntrack.allow_unlimited = desired.conntrack.max == Some(0);
    desired.conntrack.buckets = b.buckets.map(|(n, _)| n);
    desired.sysctl = b.sysctl;
    let imported = Imported {
        desired,
        comments: b.comments,
        sources: read,
        scope,
        out_of_scope: b.out_of_scope,
        ignored_sysctls: b.ignored_sysctls,
    };
    // Never print what nfkit itself would reject.
    Desired::parse("import", &imported.render())
        .map_err(|e| ImportError::Unrepresentable(e.to_string()))?;
    Ok(imported)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::import_scope::Reason;
    use crate::persist::testutil::write;

    #[test]
    fn pcs_host_imports_with_translations() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            plan::IPTABLES_CONFIG,
            "# PCS\nIPTABLES_MODULES=\"\nip_conntrack\nipt_state\niptable_nat\nip_nat_ftp\nipt_ULOG\n\"\nIPTABLES_MODULES_UNLOAD=\"no\"\n",
        );
        write(
            r,
            "/etc/modprobe.d/parallels.conf",
            "options ip_conntrack ip_conntrack_disable_ve0=0\n",
        );
        write(r, "/etc/sysctl.conf", "net.nf_conntrack_max = 500000\n");
        let imported = import(r, ImportFrom::Pcs, Scope::Netfilter, &[]).unwrap();
        let d = &imported.desired;
        assert_eq!(
            d.modules.load,
            ["nf_conntrack", "xt_state", "iptable_nat", "nf_nat_ftp"]
        );
        assert_eq!(d.conntrack.max, Some(500000));
        assert_eq!(
            d.modules.options["nf_conntrack"]["ip_conntrack_disable_ve0"],
            OptionValue::from(0)
        );
        let text = imported.render();
        assert!(text.contains("ip_conntrack → nf_conntrack"), "{text}");
        assert!(
            text.contains("dropped ipt_ulog") || text.contains("dropped ipt_ULOG"),
            "{text}"
        );
        assert!(text.contains("keyed by an alias"), "{text}");
        assert!(
            text.contains("legacy name of net.netfilter.nf_conntrack_max"),
            "{text}"
        );
        // The output is a valid nfkit.toml describing the same state.
        assert_eq!(&Desired::parse("imported", &text).unwrap(), d);
    }

    #[test]
    fn debian_lists_and_hashsize() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/etc/modules", "loop\nnf_conntrack\n");
        write(r, "/etc/modules-load.d/fw.conf", "xt_conntrack\n");
        write(
            r,
            "/etc/modprobe.d/ct.conf",
            "options nf_conntrack hashsize=65536\n",
        );
        write(
            r,
            "/etc/sysctl.d/50-ct.conf",
            "net.netfilter.nf_conntrack_tcp_loose = 0
net.netfilter.nf_conntrack_tcp_timeout_* = 60
vm.swappiness = 10
",
        );
        let imported = import(r, ImportFrom::Debian, Scope::Netfilter, &[]).unwrap();
        assert!(
            !imported
                .desired
                .sysctl
                .keys()
                .any(|k| k.as_str().contains('*')),
            "glob keys stay where they are"
        );
        assert!(
            imported
                .comments
                .iter()
                .any(|c| c.contains("50-ct.conf:2: left in place: glob key"))
        );
        // loop is not a netfilter module: skipped, and said so.
        assert_eq!(
            imported.desired.modules.load,
            ["nf_conntrack", "xt_conntrack"]
        );
        assert_eq!(imported.desired.conntrack.buckets, Some(65536));
        assert_eq!(
            imported.desired.sysctl["net.netfilter.nf_conntrack_tcp_loose"],
            SysctlValue::from(0)
        );
        let skipped: Vec<_> = imported.skipped().collect();
        assert_eq!(skipped.len(), 1, "{skipped:?}");
        assert_eq!(skipped[0].source, "/etc/modules:1");
        assert_eq!(skipped[0].reasons, [Reason::NotNetfilter]);
        let text = imported.render();
        assert!(text.contains("# not imported: 1 item (1 about a module outside the netfilter layer); `nfkit import --all`"), "{text}");
        assert!(
            text.contains("# not imported: 1 sysctl assignment outside net.netfilter"),
            "{text}"
        );
        // --all adds it, saying where it comes from.
        let all = import(r, ImportFrom::Debian, Scope::All, &[]).unwrap();
        assert_eq!(
            all.desired.modules.load,
            ["loop", "nf_conntrack", "xt_conntrack"]
        );
        assert!(
            all.render()
                .contains("# added by --all: /etc/modules:1: load loop (not a netfilter module)")
        );
        assert_eq!(all.skipped().count(), 0);
    }

    /// The vendor files of a stock Debian 12 host (/usr/lib/modprobe.d from
    /// kmod and systemd; /usr/lib/sysctl.d from procps and systemd).
    pub(crate) fn stock_debian(r: &Path) {
        write(
            r,
            "/usr/lib/modprobe.d/aliases.conf",
            "# These are the standard aliases\noptions snd-pcsp index=-2\noptions cx88_alsa index=-2\nsoftdep uhci-hcd pre: ehci-hcd\n",
        );
        write(
            r,
            "/usr/lib/modprobe.d/systemd.conf",
            "options bonding max_bonds=0\noptions dummy numdummies=0\noptions ifb numifbs=0\n",
        );
        write(
            r,
            "/usr/lib/sysctl.d/50-pid-max.conf",
            "kernel.pid_max = 4194304\n",
        );
        write(
            r,
            "/usr/lib/sysctl.d/50-default.conf",
            "net.ipv4.conf.default.rp_filter = 2\n",
        );
        write(r, "/etc/modules-load.d/modules.conf", "# /etc/modules\n");
        write(r, "/etc/sysctl.d/README.sysctl", "not a .conf file\n");
    }

    #[test]
    fn stock_debian_vendor_defaults_stay_where_they_are() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        stock_debian(r);
        write(
            r,
            "/etc/modprobe.d/local.conf",
            "options nf_conntrack hashsize=131072\noptions loop max_loop=64\nblacklist pcspkr\nblacklist nf_conntrack_sip\n",
        );
        let imported = import(r, ImportFrom::Auto, Scope::Netfilter, &[]).unwrap();
        let d = &imported.desired;
        assert_eq!(d.conntrack.buckets, Some(131072));
        assert!(d.modules.options.is_empty(), "{:?}", d.modules.options);
        assert!(d.modules.load.is_empty());
        assert_eq!(
            imported.sources,
            [
                PathBuf::from("/etc/modules-load.d/modules.conf"),
                PathBuf::from("/etc/modprobe.d/local.conf")
            ]
        );
        let skipped: Vec<(String, String)> = imported
            .skipped()
            .map(|i| (i.source.clone(), i.item.to_string()))
            .collect();
        assert_eq!(
            skipped,
            [
                (
                    "/usr/lib/modprobe.d/aliases.conf:2".into(),
                    "options snd_pcsp index=-2".into()
                ),
                (
                    "/usr/lib/modprobe.d/aliases.conf:3".into(),
                    "options cx88_alsa index=-2".into()
                ),
                (
                    "/etc/modprobe.d/local.conf:2".into(),
                    "options loop max_loop=64".into()
                ),
                (
                    "/usr/lib/modprobe.d/systemd.conf:1".into(),
                    "options bonding max_bonds=0".into()
                ),
                (
                    "/usr/lib/modprobe.d/systemd.conf:2".into(),
                    "options dummy numdummies=0".into()
                ),
                (
                    "/usr/lib/modprobe.d/systemd.conf:3".into(),
                    "options ifb numifbs=0".into()
                ),
            ] as [(String, String); 6]
        );
        let text = imported.render();
        assert!(text.contains("not imported: 6 items (5 from vendor files; 6 about modules outside the netfilter layer)"), "{text}");
        assert!(
            text.contains("blacklist/install policy for nf_conntrack_sip"),
            "{text}"
        );
        assert!(!text.contains("pcspkr"), "{text}");
        assert!(!text.contains("max_bonds"), "{text}");

        let all = import(r, ImportFrom::Auto, Scope::All, &[]).unwrap();
        let o = &all.desired.modules.options;
        assert_eq!(o["snd_pcsp"]["index"], OptionValue::from(-2));
        assert_eq!(o["bonding"]["max_bonds"], OptionValue::from(0));
        assert_eq!(o["loop"]["max_loop"], OptionValue::from(64));
        assert_eq!(all.added().count(), 6);
        assert!(
            all.sources
                .contains(&PathBuf::from("/usr/lib/modprobe.d/systemd.conf"))
        );
        let text = all.render();
        assert!(text.contains("# added by --all: /usr/lib/modprobe.d/systemd.conf:1: options bonding max_bonds=0 (vendor default, not a netfilter module)"), "{text}");
        assert!(
            text.contains("2 sysctl assignments outside net.netfilter"),
            "{text}"
        );
        assert_eq!(&Desired::parse("imported", &text).unwrap(), &all.desired);
    }

    #[test]
    fn vendor_netfilter_settings_masking_and_run() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "/usr/lib/sysctl.d/50-ct.conf",
            "net.netfilter.nf_conntrack_max = 1000\n",
        );
        write(
            r,
            "/usr/local/lib/modprobe.d/ct.conf",
            "options nf_conntrack expect_hashsize=9\n",
        );
        write(r, "/usr/lib/modprobe.d/masked.conf", "options nf_nat x=1\n");
        std::os::unix::fs::symlink("/dev/null", {
            std::fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
            r.join("etc/modprobe.d/masked.conf")
        })
        .unwrap();
        write(r, "/run/modules-load.d/gen.conf", "xt_mark\n");
        let imported = import(r, ImportFrom::Auto, Scope::Netfilter, &[]).unwrap();
        assert_eq!(imported.desired, Desired::default());
        assert!(imported.sources.is_empty());
        let reasons: Vec<_> = imported.skipped().map(|i| i.reasons.clone()).collect();
        assert_eq!(
            reasons,
            [
                vec![Reason::RuntimeFile],
                vec![Reason::VendorFile],
                vec![Reason::VendorFile]
            ]
        );
        let all = import(r, ImportFrom::Auto, Scope::All, &[]).unwrap();
        assert_eq!(all.desired.conntrack.max, Some(1000));
        assert_eq!(
            all.desired.modules.options["nf_conntrack"]["expect_hashsize"],
            OptionValue::from(9)
        );
        // A masked file is not configuration; /run is never imported.
        assert!(!all.desired.modules.options.contains_key("nf_nat"));
        assert!(all.desired.modules.load.is_empty());
        assert_eq!(all.skipped().count(), 1);
        assert!(all.render().contains("1 from /run (generated at runtime)"));
    }

    #[test]
    fn module_tree_decides_what_is_netfilter() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "/lib/modules/6.1.0-9-amd64/modules.dep",
            "kernel/net/netfilter/xt_mark.ko.xz:\nkernel/drivers/net/xt_lookalike.ko.xz:\nupdates/dkms/xt_geoip.ko:\n",
        );
        write(
            r,
            "/etc/modules-load.d/m.conf",
            "xt_mark\nxt_lookalike\nxt_geoip\nnf_new_in_later_kernel\nbonding\n",
        );
        let imported = import(r, ImportFrom::Debian, Scope::Netfilter, &[]).unwrap();
        assert_eq!(
            imported.desired.modules.load,
            ["xt_mark", "xt_geoip", "nf_new_in_later_kernel"]
        );
    }

    #[test]
    fn legacy_sysctl_names() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "/etc/sysctl.conf",
            "net.ipv4.netfilter.ip_conntrack_max = 65536\nnet.ipv4.netfilter.ip_conntrack_tcp_timeout_established = 3600\nnet.ipv4.netfilter.ip_conntrack_count = 5\n",
        );
        let imported = import(r, ImportFrom::Rhel, Scope::Netfilter, &[]).unwrap();
        assert_eq!(imported.desired.conntrack.max, Some(65536));
        // The read-only count is not imported (apply would refuse it).
        assert!(
            !imported
                .desired
                .sysctl
                .keys()
                .any(|k| k.as_str().contains("count")),
            "{:?}",
            imported.desired.sysctl
        );
        assert!(
            imported
                .comments
                .iter()
                .any(|c| c.contains("ip_conntrack_count = 5: read-only")),
            "{:?}",
            imported.comments
        );
        assert_eq!(
            imported.desired.sysctl["net.netfilter.nf_conntrack_tcp_timeout_established"],
            SysctlValue::from(3600)
        );
        let text = imported.render();
        assert!(
            text.contains(
                "ip_conntrack_max → conntrack.max (2.6-era name of net.netfilter.nf_conntrack_max)"
            ),
            "{text}"
        );
        assert_eq!(
            &Desired::parse("imported", &text).unwrap(),
            &imported.desired
        );
    }

    #[test]
    fn explicit_paths_and_errors() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "/srv/old/iptables-config",
            "IPTABLES_MODULES=\"ipt_state\"\n",
        );
        let imported = import(
            r,
            ImportFrom::Auto,
            Scope::Netfilter,
            &[PathBuf::from("/srv/old/iptables-config")],
        )
        .unwrap();
        assert_eq!(imported.desired.load_list(), ["xt_state"]);
        // A named file is the admin's choice, even in a vendor directory;
        // still only the netfilter layer without --all.
        write(
            r,
            "/usr/lib/modprobe.d/x.conf",
            "options nf_conntrack expect_hashsize=7\noptions dummy numdummies=2\n",
        );
        let named = [PathBuf::from("/usr/lib/modprobe.d/x.conf")];
        let imported = import(r, ImportFrom::Auto, Scope::Netfilter, &named).unwrap();
        assert_eq!(
            imported.desired.modules.options.keys().collect::<Vec<_>>(),
            ["nf_conntrack"]
        );
        assert_eq!(
            imported.skipped().next().unwrap().reasons,
            [Reason::NotNetfilter]
        );
        let all = import(r, ImportFrom::Auto, Scope::All, &named).unwrap();
        assert_eq!(all.desired.modules.options.len(), 2);
        assert!(matches!(
            import(
                r,
                ImportFrom::Auto,
                Scope::Netfilter,
                &[PathBuf::from("/srv/x.txt")]
            ),
            Err(ImportError::UnknownKind(_))
        ));
        assert!(matches!(
            import(
                r,
                ImportFrom::Auto,
                Scope::Netfilter,
                &[PathBuf::from("/etc/modules")]
            ),
            Err(ImportError::Missing(_))
        ));
        write(r, plan::IPTABLES_CONFIG, "IPTABLES_MODULES=`ls`\n");
        let err = import(r, ImportFrom::Rhel, Scope::Netfilter, &[]).unwrap_err();
        assert!(err.to_string().contains("iptables-config:1"), "{err}");
    }
}

/// The scope as an invariant over generated host layouts: the default import
/// is exactly `--all` over the admin's netfilter lines alone, and both runs
/// account for the same out-of-scope items.
#[cfg(test)]
mod scope_properties {
    use std::fs;
    use std::path::Path;

    use proptest::prelude::*;

    use super::*;
    use crate::persist::import_scope::Reason;

    /// (name, netfilter by the name rule).
    const NAMES: &[(&str, bool)] = &[
        ("nf_conntrack", true),
        ("xt_state", true),
        ("xt-mark", true),
        ("nft_ct", true),
        ("ebtable_nat", true),
        ("br_netfilter", true),
        ("nf_nat_ftp", true),
        ("bonding", false),
        ("dummy", false),
        ("snd-pcsp", false),
        ("loop", false),
        ("ip_gre", false),
        ("nfs", false),
    ];
    /// 2.6-era names: netfilter, and never in a module tree (aliases).
    const LEGACY: &[&str] = &["ip_conntrack", "ipt_state", "ip_nat_ftp", "ipt_ULOG"];
    const OPTION_KEYS: &[&str] = &["hashsize", "expect_hashsize", "index", "max_bonds"];
    const SYSCTLS: &[&str] = &[
        "net.netfilter.nf_conntrack_max",
        "net.nf_conntrack_max",
        "net.netfilter.nf_conntrack_tcp_loose",
        "net.ipv4.netfilter.ip_conntrack_udp_timeout",
        "kernel.pid_max",
        "vm.swappiness",
    ];
    const PREFIXES: &[&str] = &["etc", "run", "usr/local/lib", "usr/lib", "lib"];
    const DIRS: &[&str] = &["modprobe.d", "modules-load.d", "sysctl.d"];
    const BASENAMES: &[&str] = &["10-a.conf", "50-b.conf", "90-c.conf"];

    #[derive(Debug, Clone, Copy)]
    enum Line {
        Module(usize),
        Options(usize, usize, u16),
        Blacklist(usize),
        Sysctl(usize, u16),
        Comment,
    }

    #[derive(Debug, Clone)]
    struct File {
        path: String,
        /// 0 = modprobe.d, 1 = module list, 2 = sysctl, 3 = iptables-config.
        kind: usize,
        masked: bool,
        lines: Vec<Line>,
    }

    /// All names: NAMES then LEGACY.
    fn name(i: usize) -> &'static str {
        let i = i % (NAMES.len() + LEGACY.len());
        if i < NAMES.len() {
            NAMES[i].0
        } else {
            LEGACY[i - NAMES.len()]
        }
    }

    /// The model: legacy names are netfilter; else where the tree places
    /// the name (in the kernel's tree); else the name rule.
    fn is_netfilter(i: usize, tree: &[(usize, bool, bool)]) -> bool {
        let i = i % (NAMES.len() + LEGACY.len());
        if i >= NAMES.len() {
            return true;
        }
        // Any placement in the layer wins (as over several releases).
        let placed: Vec<bool> = tree
            .iter()
            .filter(|(n, _, in_tree)| n % NAMES.len() == i && *in_tree)
            .map(|(_, netfilter, _)| *netfilter)
            .collect();
        if placed.is_empty() {
            NAMES[i].1
        } else {
            placed.contains(&true)
        }
    }

    fn line() -> impl Strategy<Value = Line> {
        prop_oneof![
            4 => (0..64usize).prop_map(Line::Module),
            4 => (0..64usize, 0..OPTION_KEYS.len(), 0..500u16)
                .prop_map(|(n, k, v)| Line::Options(n, k, v)),
            1 => (0..64usize).prop_map(Line::Blacklist),
            4 => (0..SYSCTLS.len(), 0..500u16).prop_map(|(k, v)| Line::Sysctl(k, v)),
            1 => Just(Line::Comment),
        ]
    }

    fn file() -> impl Strategy<Value = File> {
        let in_dir = (
            0..PREFIXES.len(),
            0..DIRS.len(),
            0..BASENAMES.len(),
            proptest::bool::weighted(0.1),
        )
            .prop_map(|(p, d, b, masked)| {
                (
                    format!("/{}/{}/{}", PREFIXES[p], DIRS[d], BASENAMES[b]),
                    d,
                    masked,
                )
            });
        let fixed = prop_oneof![
            Just(("/etc/modules".to_string(), 1, false)),
            Just(("/etc/sysctl.conf".to_string(), 2, false)),
            Just((plan::IPTABLES_CONFIG.to_string(), 3, false)),
        ];
        (
            prop_oneof![4 => in_dir, 1 => fixed],
            proptest::collection::vec(line(), 0..6),
        )
            .prop_map(|((path, kind, masked), lines)| File {
                path,
                kind,
                masked,
                lines,
            })
    }

    /// The file's text; `keep` says which lines to write.
    fn render(f: &File, keep: impl Fn(&Line) -> bool) -> String {
        let mut out = String::new();
        if f.kind == 3 {
            let names: Vec<&str> = f
                .lines
                .iter()
                .filter_map(|l| match l {
                    Line::Module(n) | Line::Options(n, ..) | Line::Blacklist(n) => Some(name(*n)),
                    _ => None,
                })
                .collect();
            return format!("IPTABLES_MODULES=\"{}\"\n", names.join(" "));
        }
        for l in f.lines.iter().filter(|l| keep(l)) {
            let text = match (f.kind, *l) {
                (0, Line::Options(n, k, v)) => {
                    format!("options {} {}={v}", name(n), OPTION_KEYS[k])
                }
                (0, Line::Blacklist(n) | Line::Module(n)) => format!("blacklist {}", name(n)),
                (1, Line::Module(n) | Line::Blacklist(n)) => name(n).to_string(),
                (1, Line::Options(n, k, v)) if f.path == "/etc/modules" => {
                    format!("{} {}={v}", name(n), OPTION_KEYS[k])
                }
                (2, Line::Sysctl(k, v)) => format!("{} = {v}", SYSCTLS[k]),
                _ => "# comment".to_string(),
            };
            out.push_str(&text);
            out.push('\n');
        }
        out
    }

    fn lay_out(root: &Path, files: &[File], keep: impl Fn(&File, &Line) -> bool) {
        for f in files {
            let p = root.join(f.path.trim_start_matches('/'));
            fs::create_dir_all(p.parent().unwrap()).unwrap();
            if f.masked {
                std::os::unix::fs::symlink("/dev/null", &p).unwrap();
            } else {
                fs::write(&p, render(f, |l| keep(f, l))).unwrap();
            }
        }
    }

    fn tree_text(tree: &[(usize, bool, bool)]) -> String {
        tree.iter()
            .map(|&(n, netfilter, in_tree)| {
                let n = NAMES[n % NAMES.len()].0;
                match (in_tree, netfilter) {
                    (false, _) => format!("updates/dkms/{n}.ko:\n"),
                    (true, true) => format!("kernel/net/ipv4/netfilter/{n}.ko.xz:\n"),
                    (true, false) => format!("kernel/drivers/net/{n}.ko.xz:\n"),
                }
            })
            .collect()
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 128, ..ProptestConfig::default() })]

        #[test]
        fn default_is_all_over_the_admins_netfilter_lines(
            files in proptest::collection::vec(file(), 0..10),
            tree in proptest::collection::vec((0..64usize, any::<bool>(), any::<bool>()), 0..8),
        ) {
            let mut seen = std::collections::BTreeSet::new();
            let files: Vec<File> = files.into_iter().filter(|f| seen.insert(f.path.clone())).collect();
            let full = tempfile::tempdir().unwrap();
            let reduced = tempfile::tempdir().unwrap();
            for root in [full.path(), reduced.path()] {
                if !tree.is_empty() {
                    let dir = root.join("lib/modules/6.1.0-1-amd64");
                    fs::create_dir_all(&dir).unwrap();
                    fs::write(dir.join("modules.dep"), tree_text(&tree)).unwrap();
                }
            }
            lay_out(full.path(), &files, |_, _| true);
            // The admin's files, without the lines about other modules.
            let admin: Vec<File> = files.iter().filter(|f| f.path.starts_with("/etc/")).cloned().collect();
            lay_out(reduced.path(), &admin, |f, l| match l {
                Line::Module(n) | Line::Options(n, ..) | Line::Blacklist(n) if f.kind != 3 => {
                    is_netfilter(*n, &tree)
                }
                _ => true,
            });

            let default = import(full.path(), ImportFrom::Auto, Scope::Netfilter, &[]).unwrap();
            let all = import(full.path(), ImportFrom::Auto, Scope::All, &[]).unwrap();
            let oracle = import(reduced.path(), ImportFrom::Auto, Scope::All, &[]).unwrap();

            prop_assert_eq!(&default.desired, &oracle.desired);
            prop_assert!(oracle.out_of_scope.is_empty(), "{:?}", oracle.out_of_scope);
            prop_assert!(default.added().next().is_none());
            // The same items are out of scope in both runs; --all takes all
            // but /run's.
            let key = |i: &OutOfScope| (i.item.clone(), i.source.clone(), i.reasons.clone());
            prop_assert_eq!(
                default.out_of_scope.iter().map(key).collect::<Vec<_>>(),
                all.out_of_scope.iter().map(key).collect::<Vec<_>>()
            );
            for i in &all.out_of_scope {
                prop_assert_eq!(i.imported, !i.reasons.contains(&Reason::RuntimeFile));
                // The source names the line the item comes from.
                let (path, line) = i.source.rsplit_once(':').unwrap();
                let text = fs::read_to_string(full.path().join(path.trim_start_matches('/'))).unwrap();
                let at = text.lines().nth(line.parse::<usize>().unwrap() - 1).unwrap();
                let word = match &i.item {
                    Item::Load { module } | Item::Options { module, .. } => module.clone(),
                    Item::Sysctl { key, .. } => key.clone(),
                };
                prop_assert!(at.replace('-', "_").contains(&word.replace('-', "_")), "{} vs {}", at, word);
            }
            // --all only widens.
            for m in &default.desired.modules.load {
                prop_assert!(all.desired.modules.load.contains(m));
            }
            for (m, opts) in &default.desired.modules.options {
                for k in opts.keys() {
                    prop_assert!(all.desired.modules.options.get(m).is_some_and(|o| o.contains_key(k)));
                }
            }
        }
    }
}
