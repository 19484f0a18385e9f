//! What the persistent files should contain for a desired state: host
//! detection, target selection, and per-file before/after (reads files, writes
//! nothing).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::desired::{Desired, Target};
use super::files::{self, FileError};
use super::{modprobe_d, module_list, shell_vars, sysctl_conf, sysctl_d};

/// First line of every file nfkit owns.
pub const HEADER: &str =
    "# Managed by nfkit from /etc/nfkit/nfkit.toml: `nfkit apply` replaces this file.\n";
/// nfkit's modules-load.d file.
pub const MODULES_LOAD_FILE: &str = "/etc/modules-load.d/nfkit.conf";
/// Debian's module list.
pub const ETC_MODULES: &str = "/etc/modules";
/// nfkit's modprobe.d file.
pub const MODPROBE_FILE: &str = "/etc/modprobe.d/nfkit.conf";
/// Default sysctl.d file name.
pub const SYSCTL_FILE: &str = "/etc/sysctl.d/90-nfkit.conf";
/// Name used when a later file would override 90-nfkit.conf.
pub const SYSCTL_FILE_LATE: &str = "/etc/sysctl.d/99-zz-nfkit.conf";
/// procps' / the init scripts' sysctl file.
pub const SYSCTL_CONF: &str = "/etc/sysctl.conf";
/// EL / Virtuozzo / PCS iptables service configuration.
pub const IPTABLES_CONFIG: &str = "/etc/sysconfig/iptables-config";
/// The variable nfkit manages in it.
pub const IPTABLES_MODULES: &str = "IPTABLES_MODULES";

/// What kind of host a root is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// Boots with systemd (modules-load.d, systemd-sysctl).
    pub systemd: bool,
    /// Debian-like (`/etc/debian_version`).
    pub debian: bool,
    /// `/etc/modules` exists.
    pub etc_modules: bool,
    /// `/etc/sysconfig/iptables-config` exists.
    pub iptables_config: bool,
    /// `/etc/modprobe.d` exists.
    pub modprobe_d: bool,
    /// `/etc/sysctl.d` exists.
    pub sysctl_d: bool,
}

fn exists(root: &Path, path: &str) -> bool {
    files::resolve_under(root, Path::new(path)).is_ok_and(|p| p.exists())
}

/// Detects the layout of the tree under `root`.
pub fn detect(root: &Path) -> Layout {
    // systemd is the init when it runs now (/run/systemd/system), or when
    // /sbin/init is systemd (an image being prepared).
    let init_is_systemd = files::resolve_under(root, Path::new("/sbin/init"))
        .ok()
        .and_then(|p| p.file_name().map(|n| n == "systemd"))
        .unwrap_or(false);
    Layout {
        systemd: exists(root, "/run/systemd/system") || init_is_systemd,
        debian: exists(root, "/etc/debian_version"),
        etc_modules: exists(root, ETC_MODULES),
        iptables_config: exists(root, IPTABLES_CONFIG),
        modprobe_d: exists(root, "/etc/modprobe.d"),
        sysctl_d: exists(root, "/etc/sysctl.d"),
    }
}

/// The targets nfkit manages on this layout when nfkit.toml does not say.
pub fn default_targets(layout: &Layout) -> Vec<Target> {
    let mut targets = Vec::new();
    if layout.systemd {
        targets.push(Target::ModulesLoadD);
    } else if layout.etc_modules || layout.debian {
        targets.push(Target::EtcModules);
    }
    if layout.modprobe_d || layout.systemd {
        targets.push(Target::ModprobeD);
    }
    if layout.sysctl_d || layout.systemd {
        targets.push(Target::SysctlD);
    }
    // Without systemd the boot reads /etc/sysctl.conf: alone (no sysctl.d),
    // or after every sysctl.d file (procps `--system`). nfkit keeps its keys'
    // lines there (see sysctl_conf). With systemd it is read only through
    // the 99-sysctl.conf link, which nfkit's 99-zz-nfkit.conf follows.
    if !layout.systemd {
        targets.push(Target::SysctlConf);
    }
    if layout.iptables_config {
        targets.push(Target::IptablesConfig);
    }
    targets
}

/// One file's planned change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FileChange {
    /// Which target it serves.
    pub target: Target,
    /// The path as seen inside the root.
    pub path: PathBuf,
    /// Current contents (`None`: absent).
    #[serde(skip)]
    pub before: Option<String>,
    /// Wanted contents (`None`: remove nfkit's file).
    #[serde(skip)]
    pub after: Option<String>,
    /// Whether anything changes.
    pub changed: bool,
}

/// Errors while planning: unreadable or unparsable files are never
/// rewritten blindly.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PlanError {
    /// A file could not be read.
    #[error(transparent)]
    File(#[from] FileError),
    /// A file has a syntax error nfkit will not write over.
    #[error("{}:{line}: {reason} (the file is left unchanged; fix it by hand)", path.display())]
    Syntax {
        path: PathBuf,
        line: usize,
        reason: String,
    },
}

impl crate::error::Hint for PlanError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            // Transparent: the same layer.
            PlanError::File(e) => return e.hint(),
            PlanError::Syntax { .. } => Some(
                "nfkit never rewrites a file it cannot parse; fix the line shown and run again",
            ),
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

fn change(target: Target, path: &str, before: Option<String>, after: Option<String>) -> FileChange {
    let changed = before != after;
    FileChange {
        target,
        path: PathBuf::from(path),
        before,
        after,
        changed,
    }
}

/// Whether some sysctl file applied after `name` (systemd's lexical order)
/// would keep one of `keys` (relative /proc/sys paths) from nfkit's value:
/// it assigns the key (or its other name), or cancels it with `-key`. A
/// later glob does not: a line naming the key wins over globs.
fn later_file_sets(root: &Path, name: &str, keys: &[String]) -> Result<bool, FileError> {
    let ours = Path::new("/etc/sysctl.d").join(name);
    let mut files: Vec<sysctl_d::ConfigFile> = sysctl_files(root)?
        .into_iter()
        // nfkit's own files do not count; a file of another directory named
        // like one of them does (nfkit's file in /etc would mask it).
        .filter(|f| f.path != Path::new(SYSCTL_FILE) && f.path != Path::new(SYSCTL_FILE_LATE))
        .collect();
    // A value no other line can have: a later line with the same value
    // counts as setting the key too.
    let text: String = keys.iter().map(|k| format!("{k} = \u{1}nfkit\n")).collect();
    files.push(sysctl_d::ConfigFile {
        path: ours.clone(),
        text,
    });
    files.sort_by_key(|f| f.path.file_name().map(|n| n.to_os_string()));
    Ok(keys.iter().any(|key| {
        sysctl_d::setters_of(key, &files, None, sysctl_d::Applier::SystemdSysctl)
            .winner()
            .is_none_or(|w| w.file != ours)
    }))
}

/// sysctl.d files under `root` in systemd's order (paths shown as inside the
/// root).
pub fn sysctl_files(root: &Path) -> Result<Vec<sysctl_d::ConfigFile>, FileError> {
    conf_dir_files(root, &sysctl_d::SYSCTL_DIRS)
}

/// `*.conf` files of a set of directories in systemd/libkmod order; a file
/// the reader refuses (unreadable, a FIFO or device, too large) is an error
/// naming it.
pub fn conf_dir_files(root: &Path, dirs: &[&str]) -> Result<Vec<sysctl_d::ConfigFile>, FileError> {
    let (files, mut refused) = scan_conf_dirs(root, dirs);
    match refused.is_empty() {
        true => Ok(files),
        false => Err(refused.remove(0)),
    }
}

/// [`conf_dir_files`] that goes on past refused files: they are left out
/// (as masks: the name hides later ones) and returned apart, for views
/// that report problems rather than stop.
pub fn scan_conf_dirs(root: &Path, dirs: &[&str]) -> (Vec<sysctl_d::ConfigFile>, Vec<FileError>) {
    let mut found = Vec::new();
    let mut refused = Vec::new();
    for (index, dir) in dirs.iter().enumerate() {
        let Ok(real_dir) = files::resolve_under(root, &Path::new("/").join(dir)) else {
            continue;
        };
        let Ok(entries) = std::fs::read_dir(&real_dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let name = entry.file_name().to_string_lossy().into_owned();
            let shown = Path::new("/").join(dir).join(&name);
            // A symlink to /dev/null masks the name.
            let masked =
                std::fs::read_link(entry.path()).is_ok_and(|t| t == Path::new("/dev/null"));
            let text = if masked || !sysctl_d::is_conf_name(&name) {
                None
            } else {
                match files::read_under(root, &shown) {
                    Ok(text) => text,
                    Err(e) => {
                        refused.push((index, name.clone(), e));
                        None
                    }
                }
            };
            found.push((index, name, shown, text));
        }
    }
    // A refused file counts only when it is the one in effect (not hidden
    // by the same name in an earlier directory).
    let mut first_dir: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (index, name, _, _) in &found {
        let e = first_dir.entry(name.as_str()).or_insert(*index);
        *e = (*e).min(*index);
    }
    let refused: Vec<FileError> = refused
        .into_iter()
        .filter(|(index, name, _)| first_dir.get(name.as_str()) == Some(index))
        .map(|(_, _, e)| e)
        .collect();
    (sysctl_d::effective_order(found), refused)
}

/// Plans every file of `targets` for `desired` under `root`.
pub fn plan_files(
    root: &Path,
    desired: &Desired,
    targets: &[Target],
) -> Result<Vec<FileChange>, PlanError> {
    let load_list = desired.load_list();
    let mut changes = Vec::new();
    for &target in targets {
        match target {
            Target::ModulesLoadD => {
                let before = files::read_under(root, Path::new(MODULES_LOAD_FILE))?;
                let after =
                    (!load_list.is_empty()).then(|| module_list::render(HEADER, &load_list));
                changes.push(change(target, MODULES_LOAD_FILE, before, after));
            }
            Target::EtcModules => {
                let before = files::read_under(root, Path::new(ETC_MODULES))?;
                let text = before.clone().unwrap_or_default();
                let after = module_list::with_block(&text, &load_list).map_err(|e| match e {
                    module_list::BlockError::Markers { line, .. } => PlanError::Syntax {
                        path: ETC_MODULES.into(),
                        line,
                        reason: e.to_string(),
                    },
                })?;
                let after = if before.is_none() && after.is_empty() {
                    None
                } else {
                    Some(after)
                };
                changes.push(change(target, ETC_MODULES, before, after));
            }
            Target::ModprobeD => {
                let before = files::read_under(root, Path::new(MODPROBE_FILE))?;
                let options = desired.module_options();
                let after = (!options.is_empty())
                    .then(|| modprobe_d::render_options_file(HEADER, &options));
                changes.push(change(target, MODPROBE_FILE, before, after));
            }
            Target::SysctlD => {
                let settings = desired.sysctl_settings();
                // Other names of the same variable (net.nf_conntrack_max) are
                // matched by the setters model itself.
                let keys: Vec<String> = settings.iter().map(|(k, _)| k.relative_path()).collect();
                let early = files::read_under(root, Path::new(SYSCTL_FILE))?;
                let late = files::read_under(root, Path::new(SYSCTL_FILE_LATE))?;
                // Keep the name in use; move to the late name only when a
                // later file would override the default one.
                let use_late = late.is_some() || later_file_sets(root, "90-nfkit.conf", &keys)?;
                let after = (!settings.is_empty()).then(|| sysctl_d::render(HEADER, &settings));
                if use_late {
                    changes.push(change(target, SYSCTL_FILE_LATE, late, after));
                    if early.is_some() {
                        changes.push(change(target, SYSCTL_FILE, early, None));
                    }
                } else {
                    changes.push(change(target, SYSCTL_FILE, early, after));
                }
            }
            Target::SysctlConf => {
                let before = files::read_under(root, Path::new(SYSCTL_CONF))?;
                let settings = desired.sysctl_settings();
                // The only sysctl file nfkit writes here: missing keys are
                // appended. Beside sysctl.d: only the lines that would
                // override nfkit's file change.
                let append = !targets.contains(&Target::SysctlD);
                let after = match &before {
                    Some(text) => Some(sysctl_conf::set_values(text, &settings, append)),
                    None if append && !settings.is_empty() => {
                        Some(sysctl_conf::set_values("", &settings, true))
                    }
                    None => None,
                };
                changes.push(change(target, SYSCTL_CONF, before, after));
            }
            Target::IptablesConfig => {
                let Some(before) = files::read_under(root, Path::new(IPTABLES_CONFIG))? else {
                    continue; // only managed where it exists
                };
                let after = shell_vars::set_modules(&before, IPTABLES_MODULES, &load_list)
                    .map_err(|e| PlanError::Syntax {
                        path: IPTABLES_CONFIG.into(),
                        line: e.line,
                        reason: e.reason.clone(),
                    })?;
                // Same words already there: keep the bytes as they are.
                let current = shell_vars::parse(&before).ok().and_then(|a| {
                    shell_vars::find(&a, IPTABLES_MODULES).map(|v| shell_vars::words(&v.value))
                });
                let same = current.is_some_and(|words| {
                    words.len() == load_list.len()
                        && words.iter().zip(&load_list).all(|(w, m)| *w == *m)
                });
                let after = if same { before.clone() } else { after };
                changes.push(change(target, IPTABLES_CONFIG, Some(before), Some(after)));
            }
        }
    }
    Ok(changes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::testutil::write;
    use std::fs;

    fn seed() -> Desired {
        Desired::parse(
            "t",
            "[modules]\nload = [\"xt_state\", \"iptable_nat\"]\n[conntrack]\nmax = 500000\nbuckets = 65536\n",
        )
        .unwrap()
    }

    #[test]
    fn detects_systemd_debian_and_el() {
        let root = tempfile::tempdir().unwrap();
        fs::create_dir_all(root.path().join("lib/systemd")).unwrap();
        fs::write(root.path().join("lib/systemd/systemd"), "").unwrap();
        fs::create_dir_all(root.path().join("sbin")).unwrap();
        std::os::unix::fs::symlink("/lib/systemd/systemd", root.path().join("sbin/init")).unwrap();
        write(root.path(), "/etc/debian_version", "12.0\n");
        let layout = detect(root.path());
        assert!(layout.systemd && layout.debian);
        assert_eq!(
            default_targets(&layout),
            vec![Target::ModulesLoadD, Target::ModprobeD, Target::SysctlD]
        );
        let el = tempfile::tempdir().unwrap();
        write(el.path(), IPTABLES_CONFIG, "IPTABLES_MODULES=\"\"\n");
        write(el.path(), "/etc/modprobe.d/dist.conf", "");
        let layout = detect(el.path());
        assert!(!layout.systemd && layout.iptables_config);
        assert_eq!(
            default_targets(&layout),
            vec![
                Target::ModprobeD,
                Target::SysctlConf,
                Target::IptablesConfig
            ]
        );
        let busybox = tempfile::tempdir().unwrap();
        write(busybox.path(), ETC_MODULES, "");
        assert_eq!(
            default_targets(&detect(busybox.path())),
            vec![Target::EtcModules, Target::SysctlConf]
        );
    }

    #[test]
    fn plans_all_files_then_nothing_once_written() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            IPTABLES_CONFIG,
            "# keep me\nIPTABLES_MODULES=\"\"\nIPTABLES_MODULES_UNLOAD=\"yes\"\n",
        );
        write(root.path(), ETC_MODULES, "loop\n");
        for d in ["etc/modules-load.d", "etc/modprobe.d", "etc/sysctl.d"] {
            fs::create_dir_all(root.path().join(d)).unwrap();
        }
        let targets = [
            Target::ModulesLoadD,
            Target::EtcModules,
            Target::ModprobeD,
            Target::SysctlD,
            Target::IptablesConfig,
        ];
        let plan = plan_files(root.path(), &seed(), &targets).unwrap();
        assert!(plan.iter().all(|c| c.changed), "{plan:?}");
        let by_path = |p: &str| {
            plan.iter()
                .find(|c| c.path == Path::new(p))
                .unwrap()
                .after
                .clone()
                .unwrap()
        };
        assert_eq!(
            by_path(MODULES_LOAD_FILE),
            format!("{HEADER}nf_conntrack\nxt_state\niptable_nat\n")
        );
        assert_eq!(
            by_path(MODPROBE_FILE),
            format!("{HEADER}options nf_conntrack hashsize=65536\n")
        );
        assert_eq!(
            by_path(SYSCTL_FILE),
            format!("{HEADER}net.netfilter.nf_conntrack_max = 500000\n")
        );
        assert_eq!(
            by_path(IPTABLES_CONFIG),
            "# keep me\nIPTABLES_MODULES=\"nf_conntrack xt_state iptable_nat\"\nIPTABLES_MODULES_UNLOAD=\"yes\"\n"
        );
        assert!(by_path(ETC_MODULES).starts_with("loop\n# BEGIN nfkit"));
        for c in &plan {
            files::write_atomic(root.path(), &c.path, c.after.as_ref().unwrap().as_bytes())
                .unwrap();
        }
        let again = plan_files(root.path(), &seed(), &targets).unwrap();
        assert!(again.iter().all(|c| !c.changed), "{again:?}");
    }

    #[test]
    fn a_later_sysctl_file_moves_ours_after_it() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/etc/sysctl.d/95-tuning.conf",
            "net.netfilter.nf_conntrack_max = 1\n",
        );
        let plan = plan_files(root.path(), &seed(), &[Target::SysctlD]).unwrap();
        assert_eq!(plan[0].path, Path::new(SYSCTL_FILE_LATE));
        // Unrelated later files do not matter.
        let other = tempfile::tempdir().unwrap();
        write(
            other.path(),
            "/etc/sysctl.d/95-tuning.conf",
            "vm.swappiness = 1\n",
        );
        let plan = plan_files(other.path(), &seed(), &[Target::SysctlD]).unwrap();
        assert_eq!(plan[0].path, Path::new(SYSCTL_FILE));
        // A later glob does not override an explicit key; a later `-key`
        // cancels it, and the legacy name is the same variable.
        for (text, late) in [
            ("net.netfilter.nf_conntrack_* = 1\n", false),
            ("-net.netfilter.nf_conntrack_max\n", true),
            ("net.nf_conntrack_max = 1\n", true),
        ] {
            let root = tempfile::tempdir().unwrap();
            write(root.path(), "/usr/lib/sysctl.d/95-vendor.conf", text);
            let plan = plan_files(root.path(), &seed(), &[Target::SysctlD]).unwrap();
            let expected = if late { SYSCTL_FILE_LATE } else { SYSCTL_FILE };
            assert_eq!(plan[0].path, Path::new(expected), "{text}");
        }
        // The legacy name of the same variable counts (Debian/EL7's
        // 99-sysctl.conf link to a PCS-style /etc/sysctl.conf).
        let legacy = tempfile::tempdir().unwrap();
        write(
            legacy.path(),
            "/etc/sysctl.conf",
            "net.nf_conntrack_max = 1\n",
        );
        fs::create_dir_all(legacy.path().join("etc/sysctl.d")).unwrap();
        std::os::unix::fs::symlink(
            "../sysctl.conf",
            legacy.path().join("etc/sysctl.d/99-sysctl.conf"),
        )
        .unwrap();
        let plan = plan_files(legacy.path(), &seed(), &[Target::SysctlD]).unwrap();
        assert_eq!(plan[0].path, Path::new(SYSCTL_FILE_LATE));
    }

    #[test]
    fn sysctl_conf_is_edited_in_place_or_appended() {
        let d = Desired::parse("t", "[conntrack]\nmax = 600000\n").unwrap();
        let root = tempfile::tempdir().unwrap();
        let text = "# c\nnet.nf_conntrack_max=500000\nkernel.sysrq = 0";
        write(root.path(), SYSCTL_CONF, text);
        // Beside sysctl.d: only the overriding line changes.
        let plan = plan_files(root.path(), &d, &[Target::SysctlD, Target::SysctlConf]).unwrap();
        assert_eq!(
            plan[1].after.as_deref(),
            Some("# c\nnet.nf_conntrack_max=600000\nkernel.sysrq = 0")
        );
        // Alone: the same, and a missing key is appended.
        let other = Desired::parse(
            "t",
            "[sysctl]\n\"net.netfilter.nf_conntrack_tcp_loose\" = 0\n",
        )
        .unwrap();
        let plan = plan_files(root.path(), &other, &[Target::SysctlConf]).unwrap();
        assert_eq!(
            plan[0].after.as_deref(),
            Some(format!("{text}\nnet.netfilter.nf_conntrack_tcp_loose = 0\n").as_str()) // spaced as the last line
        );
        let plan = plan_files(root.path(), &other, &[Target::SysctlD, Target::SysctlConf]).unwrap();
        assert!(!plan[1].changed, "not set there and not nfkit's only file");
        // No sysctl.conf: created only when it is nfkit's only sysctl file.
        let empty = tempfile::tempdir().unwrap();
        let plan = plan_files(empty.path(), &d, &[Target::SysctlD, Target::SysctlConf]).unwrap();
        assert_eq!(plan[1].after, None);
        let plan = plan_files(empty.path(), &d, &[Target::SysctlConf]).unwrap();
        assert_eq!(
            plan[0].after.as_deref(),
            Some("net.netfilter.nf_conntrack_max = 600000\n")
        );
    }

    #[test]
    fn legacy_key_and_foreign_files_named_like_ours_count_as_later() {
        // Debian/EL: 99-sysctl.conf -> ../sysctl.conf with the legacy name.
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            "/etc/sysctl.conf",
            "net.nf_conntrack_max = 0\n",
        );
        std::os::unix::fs::symlink("../sysctl.conf", {
            fs::create_dir_all(root.path().join("etc/sysctl.d")).unwrap();
            root.path().join("etc/sysctl.d/99-sysctl.conf")
        })
        .unwrap();
        let plan = plan_files(root.path(), &seed(), &[Target::SysctlD]).unwrap();
        assert_eq!(plan[0].path, Path::new(SYSCTL_FILE_LATE));
        // A vendor file with the name of nfkit's late file: nfkit's file in
        // /etc masks it.
        let vendor = tempfile::tempdir().unwrap();
        write(
            vendor.path(),
            "/usr/lib/sysctl.d/99-zz-nfkit.conf",
            "net.netfilter.nf_conntrack_max = 0\n",
        );
        let plan = plan_files(vendor.path(), &seed(), &[Target::SysctlD]).unwrap();
        assert_eq!(plan[0].path, Path::new(SYSCTL_FILE_LATE));
    }

    #[test]
    fn broken_iptables_config_is_not_rewritten() {
        let root = tempfile::tempdir().unwrap();
        write(
            root.path(),
            IPTABLES_CONFIG,
            "IPTABLES_MODULES=\"$(cat /x)\"\n",
        );
        let err = plan_files(root.path(), &seed(), &[Target::IptablesConfig]).unwrap_err();
        assert_eq!(
            err.to_string().split(": ").next().unwrap(),
            "/etc/sysconfig/iptables-config:1"
        );
    }
}
