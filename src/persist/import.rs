//! `nfkit import`: read existing configuration and print the equivalent
//! `nfkit.toml`, with a comment for every translation and every dropped
//! item (reads files only).
//!
//! Sources: `IPTABLES_MODULES` in `/etc/sysconfig/iptables-config`;
//! `options` lines in modprobe.d (including alias-keyed
//! `options ip_conntrack ...` from parallels.conf / vz.conf / openvz.conf);
//! `/etc/modules` and modules-load.d; `net.nf_conntrack_max` /
//! `net.netfilter.nf_conntrack_max` (and other `net.netfilter.*`) in
//! `/etc/sysctl.conf` and sysctl.d. Legacy module names become current ones.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Serialize;

use super::desired::{Desired, OptionValue};
use super::files::{self, FileError};
use super::modprobe_d::{self, Directive};
use super::nextboot::{MODPROBE_DIRS, MODULES_LOAD_DIRS};
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
    #[error("import: {0}")]
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
}

/// The result: the state and the comments explaining it.
#[derive(Debug, Clone, Serialize)]
pub struct Imported {
    /// The desired state.
    pub desired: Desired,
    /// One comment per translation or dropped item.
    pub comments: Vec<String>,
    /// Files read.
    pub sources: Vec<PathBuf>,
}

impl Imported {
    /// The nfkit.toml text.
    pub fn render(&self) -> String {
        let mut header = vec!["nfkit.toml imported by `nfkit import` from:".to_string()];
        header.extend(self.sources.iter().map(|s| format!("  {}", s.display())));
        header.extend(self.comments.iter().cloned());
        self.desired.render(&header)
    }
}

/// Files of each kind for a host family, as seen inside the root.
fn default_sources(root: &Path, from: ImportFrom) -> Vec<(PathBuf, SourceKind)> {
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
        for f in plan::conf_dir_files(root, &MODULES_LOAD_DIRS) {
            out.push((f.path, SourceKind::ModuleList));
        }
    }
    for f in plan::conf_dir_files(root, &MODPROBE_DIRS) {
        out.push((f.path, SourceKind::Modprobe));
    }
    out.push((PathBuf::from("/etc/sysctl.conf"), SourceKind::Sysctl));
    for f in plan::sysctl_files(root) {
        out.push((f.path, SourceKind::Sysctl));
    }
    // nfkit's own files are outputs, not inputs.
    out.retain(|(p, _)| !p.to_string_lossy().contains("nfkit"));
    out.dedup();
    out
}

#[derive(Default)]
struct Builder {
    load: Vec<String>,
    options: BTreeMap<String, BTreeMap<String, OptionValue>>,
    max: Option<(u32, String)>,
    buckets: Option<(u32, String)>,
    sysctl: BTreeMap<String, OptionValue>,
    comments: Vec<String>,
}

fn option_value(text: &str) -> OptionValue {
    text.parse::<i64>()
        .map(OptionValue::Integer)
        .unwrap_or_else(|_| OptionValue::Text(text.to_string()))
}

impl Builder {
    /// Translates one module name; returns the current name if it loads.
    fn module(&mut self, name: &str, origin: &str) -> Option<String> {
        let normalized = modprobe_d::normalize_module(name);
        match legacy::lookup(&normalized).map(|l| l.fate) {
            Some(Fate::Alias { module }) => {
                self.comments.push(format!(
                    "{origin}: {normalized} → {module} (2.6-era name, now an alias)"
                ));
                Some(module.to_string())
            }
            Some(Fate::Merged { module, since }) => {
                self.comments.push(format!(
                    "{origin}: {normalized} → {module} (merged into {module} in Linux {since})"
                ));
                Some(module.to_string())
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

    fn add_load(&mut self, name: &str, origin: &str) {
        if let Some(m) = self.module(name, origin)
            && !self.load.contains(&m)
        {
            self.load.push(m);
        }
    }

    fn add_options(&mut self, module: &str, options: &[String], origin: &str) {
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
            let (key, value) = option.split_once('=').unwrap_or((option, "1"));
            let key = key.replace('-', "_");
            if real == "nf_conntrack" && key == "ip_conntrack_disable_ve0" {
                self.comments.push(format!(
                    "{origin}: kept {key}={value}: only Virtuozzo/OpenVZ kernels have this parameter; \
                     elsewhere `nfkit apply` reports it as not accepted"
                ));
            }
            if real == "nf_conntrack" && key == "hashsize" {
                if let Ok(n) = value.parse::<u32>() {
                    self.buckets = Some((n, origin.to_string()));
                    self.comments
                        .push(format!("{origin}: hashsize={value} → conntrack.buckets"));
                    continue;
                }
            }
            self.options
                .entry(real.clone())
                .or_default()
                .insert(key, option_value(value));
        }
    }

    fn add_sysctl(&mut self, key: &str, value: &str, origin: &str) {
        let dotted = key.replace('/', ".");
        match dotted.as_str() {
            "net.nf_conntrack_max" | "net.netfilter.nf_conntrack_max" => {
                match value.parse::<u32>() {
                    Ok(n) => {
                        if dotted == "net.nf_conntrack_max" {
                            self.comments.push(format!(
                            "{origin}: net.nf_conntrack_max → conntrack.max (legacy name of net.netfilter.nf_conntrack_max)"
                        ));
                        }
                        if let Some((old, old_origin)) = &self.max
                            && *old != n
                        {
                            self.comments.push(format!("{origin}: max {n} overrides {old} from {old_origin} (applied later)"));
                        }
                        self.max = Some((n, origin.to_string()));
                    }
                    Err(_) => self.comments.push(format!(
                        "{origin}: dropped {dotted} = {value}: not a number"
                    )),
                }
            }
            "net.netfilter.nf_conntrack_buckets" => match value.parse::<u32>() {
                Ok(n) => self.buckets = Some((n, origin.to_string())),
                Err(_) => self.comments.push(format!(
                    "{origin}: dropped {dotted} = {value}: not a number"
                )),
            },
            k if k.starts_with("net.netfilter.") => {
                self.sysctl.insert(k.to_string(), option_value(value));
            }
            _ => {}
        }
    }
}

/// Reads the sources (the family's defaults, or `paths`) under `root`.
pub fn import(root: &Path, from: ImportFrom, paths: &[PathBuf]) -> Result<Imported, ImportError> {
    let sources: Vec<(PathBuf, SourceKind)> = if paths.is_empty() {
        default_sources(root, from)
    } else {
        paths
            .iter()
            .map(|p| {
                kind_of(p)
                    .map(|k| (p.clone(), k))
                    .ok_or_else(|| ImportError::UnknownKind(p.clone()))
            })
            .collect::<Result<_, _>>()?
    };
    let mut b = Builder::default();
    let mut read = Vec::new();
    for (path, kind) in sources {
        let Some(text) = files::read_under(root, &path)? else {
            if !paths.is_empty() {
                return Err(ImportError::Missing(path));
            }
            continue;
        };
        read.push(path.clone());
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
                        b.add_load(&word, &format!("{shown}:{}", a.line));
                    }
                }
            }
            SourceKind::ModuleList => {
                for entry in module_list::parse(&text) {
                    let origin = format!("{shown}:{}", entry.line);
                    b.add_load(&entry.module, &origin);
                    if !entry.params.is_empty() {
                        let module = entry.module.clone();
                        b.add_options(&module, &entry.params, &origin);
                    }
                }
            }
            SourceKind::Modprobe => {
                let (directives, errors) = modprobe_d::parse(&path, &text);
                for e in errors {
                    b.comments.push(format!("ignored: {e}"));
                }
                for d in directives {
                    let origin = format!("{shown}:{}", d.line);
                    match d.directive {
                        Directive::Options { module, options } => {
                            b.add_options(&module, &options, &origin)
                        }
                        Directive::Blacklist { module } | Directive::Install { module, .. }
                            if legacy::lookup(&module).is_some()
                                || module.starts_with("nf")
                                || module.starts_with("ip") =>
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
                for e in errors {
                    b.comments.push(format!("ignored: {e}"));
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
    let mut desired = Desired::default();
    desired.modules.load = b.load;
    desired.modules.options = b.options;
    desired.conntrack.max = b.max.map(|(n, _)| n);
    desired.conntrack.allow_unlimited = desired.conntrack.max == Some(0);
    desired.conntrack.buckets = b.buckets.map(|(n, _)| n);
    desired.sysctl = b.sysctl;
    Ok(Imported {
        desired,
        comments: b.comments,
        sources: read,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
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
        let imported = import(r, ImportFrom::Pcs, &[]).unwrap();
        let d = &imported.desired;
        assert_eq!(
            d.modules.load,
            ["nf_conntrack", "xt_state", "iptable_nat", "nf_nat_ftp"]
        );
        assert_eq!(d.conntrack.max, Some(500000));
        assert_eq!(
            d.modules.options["nf_conntrack"]["ip_conntrack_disable_ve0"],
            OptionValue::Integer(0)
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
            "net.netfilter.nf_conntrack_tcp_loose = 0\nnet.netfilter.nf_conntrack_tcp_timeout_* = 60\n",
        );
        let imported = import(r, ImportFrom::Debian, &[]).unwrap();
        assert!(
            !imported.desired.sysctl.keys().any(|k| k.contains('*')),
            "glob keys stay where they are"
        );
        assert!(
            imported
                .comments
                .iter()
                .any(|c| c.contains("50-ct.conf:2: left in place: glob key"))
        );
        assert_eq!(
            imported.desired.modules.load,
            ["loop", "nf_conntrack", "xt_conntrack"]
        );
        assert_eq!(imported.desired.conntrack.buckets, Some(65536));
        assert_eq!(
            imported.desired.sysctl["net.netfilter.nf_conntrack_tcp_loose"],
            OptionValue::Integer(0)
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
            &[PathBuf::from("/srv/old/iptables-config")],
        )
        .unwrap();
        assert_eq!(imported.desired.load_list(), ["xt_state"]);
        assert!(matches!(
            import(r, ImportFrom::Auto, &[PathBuf::from("/srv/x.txt")]),
            Err(ImportError::UnknownKind(_))
        ));
        assert!(matches!(
            import(r, ImportFrom::Auto, &[PathBuf::from("/etc/modules")]),
            Err(ImportError::Missing(_))
        ));
        write(r, plan::IPTABLES_CONFIG, "IPTABLES_MODULES=`ls`\n");
        let err = import(r, ImportFrom::Rhel, &[]).unwrap_err();
        assert!(err.to_string().contains("iptables-config:1"), "{err}");
    }
}
