//! What the next boot will apply, computed from **all** configuration files
//! with the real precedence rules, not just nfkit's own (reads files only).
//!
//! - Modules loaded at boot: modules-load.d (`/etc`, `/run`,
//!   `/usr/local/lib`, `/usr/lib`, `/lib`; basename masking, lexical order);
//!   on hosts without systemd also `/etc/modules` (Debian's kmod init script);
//!   and `IPTABLES_MODULES` from `/etc/sysconfig/iptables-config`, which the
//!   iptables service loads only when `/etc/sysconfig/iptables` exists.
//! - Module options: every `options` line of modprobe.d for the module's
//!   real name (lines keyed by an alias apply only when loading by that alias).
//! - sysctls: sysctl.d with systemd's order, plus `/etc/sysctl.conf` applied
//!   last on hosts without systemd (procps `sysctl --system`); on EL6-style
//!   hosts `/etc/sysctl.conf` first, then `/etc/sysctl.d/*` (see el_boot).

use std::path::{Path, PathBuf};

use serde::Serialize;

use super::files::{self, FileError};
use super::modprobe_d::{self, Directive};
use super::plan::{self, Layout};
use super::{module_list, shell_vars, sysctl_d};

/// modules-load.d directories, highest precedence first.
pub const MODULES_LOAD_DIRS: [&str; 5] = [
    "etc/modules-load.d",
    "run/modules-load.d",
    "usr/local/lib/modules-load.d",
    "usr/lib/modules-load.d",
    "lib/modules-load.d",
];

/// modprobe.d directories, highest precedence first (libkmod).
pub const MODPROBE_DIRS: [&str; 5] = [
    "etc/modprobe.d",
    "run/modprobe.d",
    "usr/local/lib/modprobe.d",
    "usr/lib/modprobe.d",
    "lib/modprobe.d",
];

/// A value and the file line that sets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FromFile {
    /// The value.
    pub value: String,
    /// The file (as seen inside the root).
    pub file: PathBuf,
    /// 1-based line.
    pub line: usize,
}

/// The boot-time view of a root.
#[derive(Debug, Clone, Default)]
pub struct NextBoot {
    /// Module names that will be loaded at boot, with where they are listed.
    pub modules: Vec<FromFile>,
    /// modprobe.d directives in libkmod's order.
    pub modprobe: Vec<modprobe_d::Located>,
    /// Syntax errors found on the way (file and line).
    pub problems: Vec<String>,
    /// Where `nfkit boot` is hooked into the boot (init script, unit, rc.local).
    pub boot_hook: Option<String>,
    /// The sysctl files are applied again after the iptables service loaded
    /// `IPTABLES_MODULES` (EL6: the network service), so sysctls of those
    /// modules take effect at boot.
    pub sysctls_after_iptables_modules: bool,
    sysctl_files: Vec<sysctl_d::ConfigFile>,
    sysctl_conf_last: Option<sysctl_d::ConfigFile>,
    sysctl_applier: Option<sysctl_d::Applier>,
}

impl NextBoot {
    /// Reads the configuration under `root`. A file the boot would read that
    /// cannot be read here is an error naming it (not a file that is absent).
    pub fn read(root: &Path, layout: &Layout) -> Result<Self, FileError> {
        let mut view = NextBoot::default();
        let el = super::el_boot::is_el_initscripts(root, layout);
        // EL6's rc.sysinit does not read modules-load.d.
        let mut lists = if el {
            Vec::new()
        } else {
            plan::conf_dir_files(root, &MODULES_LOAD_DIRS)?
        };
        if !layout.systemd
            && let Some(text) = files::read_under(root, Path::new(plan::ETC_MODULES))?
        {
            // Debian's /etc/modules-load.d/modules.conf links here; do not count it twice.
            lists.retain(|f| {
                files::resolve_under(root, &f.path).ok()
                    != files::resolve_under(root, Path::new(plan::ETC_MODULES)).ok()
            });
            lists.push(sysctl_d::ConfigFile {
                path: plan::ETC_MODULES.into(),
                text,
            });
        }
        for file in &lists {
            for entry in module_list::parse(&file.text) {
                view.modules.push(FromFile {
                    value: modprobe_d::normalize_module(&entry.module),
                    file: file.path.clone(),
                    line: entry.line,
                });
            }
        }
        let iptables_rules = files::resolve_under(root, Path::new("/etc/sysconfig/iptables"))
            .is_ok_and(|p| p.exists());
        if let Some(text) = files::read_under(root, Path::new(plan::IPTABLES_CONFIG))? {
            match shell_vars::parse(&text) {
                Ok(assignments) => {
                    if let Some(a) = shell_vars::find(&assignments, plan::IPTABLES_MODULES) {
                        // nfkit reads `\r\n` as a line end; bash keeps the
                        // `\r` in the value, and the service would ask for
                        // a module whose name ends in it.
                        if text[a.span.clone()].contains('\r')
                            || text[a.span.end..].starts_with("\r\n")
                        {
                            view.problems.push(format!(
                                "{}:{}: IPTABLES_MODULES ends lines with CRLF: bash keeps the \\r in \
                                 the value, so the iptables service fails to load a module; \
                                 convert the file to LF line endings (dos2unix)",
                                plan::IPTABLES_CONFIG,
                                a.line
                            ));
                        }
                        if iptables_rules {
                            for word in shell_vars::words(&a.value) {
                                view.modules.push(FromFile {
                                    value: modprobe_d::normalize_module(&word),
                                    file: plan::IPTABLES_CONFIG.into(),
                                    line: a.line,
                                });
                            }
                        } else if !a.value.trim().is_empty() {
                            view.problems.push(format!(
                                "{}:{}: IPTABLES_MODULES is not loaded at boot: the iptables service \
                                 loads it only when /etc/sysconfig/iptables exists",
                                plan::IPTABLES_CONFIG,
                                a.line
                            ));
                        }
                    }
                }
                Err(e) => view.problems.push(format!("{}:{e}", plan::IPTABLES_CONFIG)),
            }
        }
        for file in plan::conf_dir_files(root, &MODPROBE_DIRS)? {
            let (directives, errors) = modprobe_d::parse(&file.path, &file.text);
            view.modprobe.extend(directives);
            view.problems.extend(errors.iter().map(ToString::to_string));
        }
        view.boot_hook = find_boot_hook(root)?;
        view.sysctls_after_iptables_modules =
            el && super::el_boot::sysctls_after_iptables_service(root);
        view.sysctl_files = if el {
            super::el_boot::sysctl_files(root)?
        } else {
            plan::sysctl_files(root)?
        };
        // EL6 applies its files with `sysctl -p` one after another: procps
        // order (last line wins), like `sysctl --system`.
        view.sysctl_applier = Some(if layout.systemd {
            sysctl_d::Applier::SystemdSysctl
        } else {
            sysctl_d::Applier::ProcpsSystem
        });
        for file in &view.sysctl_files {
            let (_, errors) = sysctl_d::parse_lines(&file.path, &file.text);
            view.problems.extend(errors.iter().map(ToString::to_string));
        }
        if !layout.systemd
            && !el
            && let Some(text) = files::read_under(root, Path::new("/etc/sysctl.conf"))?
        {
            view.sysctl_conf_last = Some(sysctl_d::ConfigFile {
                path: "/etc/sysctl.conf".into(),
                text,
            });
        }
        Ok(view)
    }

    /// Where a module is listed for loading at boot.
    pub fn module_listed(&self, module: &str) -> Vec<&FromFile> {
        let wanted = modprobe_d::normalize_module(module);
        self.modules.iter().filter(|m| m.value == wanted).collect()
    }

    /// [`NextBoot::module_listed`] for every module at once (keyed by the
    /// normalised name), so checking a long list stays linear.
    pub fn modules_listed(&self) -> std::collections::HashMap<&str, Vec<&FromFile>> {
        let mut map: std::collections::HashMap<&str, Vec<&FromFile>> =
            std::collections::HashMap::new();
        for m in &self.modules {
            map.entry(m.value.as_str()).or_default().push(m);
        }
        map
    }

    /// `options` lines that apply to `module` when loaded by name, in order;
    /// and lines keyed by `aliases` (which do not apply then).
    pub fn options_for(&self, module: &str, aliases: &[&str]) -> (Vec<FromFile>, Vec<FromFile>) {
        let mut by_name = Vec::new();
        let mut by_alias = Vec::new();
        for located in &self.modprobe {
            if let Directive::Options {
                module: key,
                options,
            } = &located.directive
            {
                let entry = FromFile {
                    value: options.join(" "),
                    file: located.file.clone(),
                    line: located.line,
                };
                if key == module {
                    by_name.push(entry);
                } else if aliases.contains(&key.as_str()) {
                    by_alias.push(entry);
                }
            }
        }
        (by_name, by_alias)
    }

    /// The value of one module parameter at boot (last `options` word wins).
    pub fn option_value(&self, module: &str, parameter: &str) -> Option<FromFile> {
        let (lines, _) = self.options_for(module, &[]);
        let mut found = None;
        for line in lines {
            // Split as the kernel does (`next_arg`), names compared as the
            // kernel does (`parameq`).
            for option in crate::modules::options::split(&line.value) {
                if option.is_param(parameter)
                    && let Some(v) = option.value
                {
                    found = Some(FromFile {
                        value: v,
                        file: line.file.clone(),
                        line: line.line,
                    });
                }
            }
        }
        found
    }

    /// Every write of a sysctl key at boot, in the order they happen (the
    /// last one wins), globs included.
    pub fn sysctl_setters(&self, key: &str) -> Vec<FromFile> {
        self.sysctl_boot(key)
            .writes
            .into_iter()
            .map(|s| FromFile {
                value: s.value,
                file: s.file,
                line: s.line,
            })
            .collect()
    }

    /// How a sysctl key is set at boot: the writes in order (the last one
    /// wins) and the lines that name or match it without writing it.
    pub fn sysctl_boot(&self, key: &str) -> sysctl_d::Setters {
        let Ok(path) = crate::sysctl::key_to_relative_path(key) else {
            return sysctl_d::Setters::default();
        };
        sysctl_d::setters_of(
            &path,
            &self.sysctl_files,
            self.sysctl_conf_last.as_ref(),
            self.sysctl_applier
                .unwrap_or(sysctl_d::Applier::SystemdSysctl),
        )
    }
}

/// Finds a hook that runs `nfkit boot` at boot: the shipped systemd unit
/// enabled, an init script, an OpenRC local.d script, or a line in rc.local.
/// A hook file that cannot be read (a FIFO, a link out of the root, no
/// permission) is an error naming it, not a missing hook.
pub fn find_boot_hook(root: &Path) -> Result<Option<String>, FileError> {
    for unit in [
        "/etc/systemd/system/sysinit.target.wants/nfkit-boot.service",
        "/etc/systemd/system/multi-user.target.wants/nfkit-boot.service",
        "/etc/init.d/nfkit",
        "/etc/rc.d/init.d/nfkit",
        "/etc/local.d/nfkit.start",
    ] {
        if files::resolve_under(root, Path::new(unit))?.exists() {
            return Ok(Some(unit.to_string()));
        }
    }
    for script in ["/etc/rc.local", "/etc/rc.d/rc.local", "/etc/inittab"] {
        let text = crate::read::read_any_text(root, Path::new(script), crate::read::Kind::Config)?;
        if text.is_some_and(|text| {
            text.lines()
                .any(|l| !l.trim_start().starts_with('#') && l.contains("nfkit boot"))
        }) {
            return Ok(Some(script.to_string()));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::testutil::write;

    #[test]
    fn collects_modules_options_and_sysctls_with_precedence() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/usr/lib/modules-load.d/a.conf", "nf_conntrack\n");
        write(r, "/etc/modules-load.d/a.conf", "xt_state\n"); // masks /usr/lib's a.conf
        write(
            r,
            "/lib/modprobe.d/dist.conf",
            "options nf_conntrack hashsize=1024\n",
        );
        write(
            r,
            "/etc/modprobe.d/vz.conf",
            "options ip_conntrack ip_conntrack_disable_ve0=0\noptions nf_conntrack hashsize=4096\nbogus\n",
        );
        write(
            r,
            "/etc/sysctl.d/10-a.conf",
            "net.netfilter.nf_conntrack_max = 100\n",
        );
        write(
            r,
            "/usr/lib/sysctl.d/50-b.conf",
            "net.netfilter.nf_conntrack_max = 200\n",
        );
        write(
            r,
            "/etc/sysctl.conf",
            "net.netfilter.nf_conntrack_max = 300\n",
        );
        let systemd = Layout {
            systemd: true,
            debian: true,
            etc_modules: false,
            iptables_config: false,
            modprobe_d: true,
            sysctl_d: true,
        };
        let view = NextBoot::read(r, &systemd).unwrap();
        assert!(view.module_listed("xt_state").len() == 1);
        assert!(
            view.module_listed("nf_conntrack").is_empty(),
            "masked by /etc's a.conf"
        );
        // /etc/modprobe.d sorts after /lib's dist.conf by basename: vz.conf wins.
        let hashsize = view.option_value("nf_conntrack", "hashsize").unwrap();
        assert_eq!(
            (
                hashsize.value.as_str(),
                hashsize.file.to_str().unwrap(),
                hashsize.line
            ),
            ("4096", "/etc/modprobe.d/vz.conf", 2)
        );
        let (_, by_alias) = view.options_for("nf_conntrack", &["ip_conntrack"]);
        assert_eq!(by_alias.len(), 1);
        assert_eq!(view.problems.len(), 1, "{:?}", view.problems);
        let setters = view.sysctl_setters("net.netfilter.nf_conntrack_max");
        assert_eq!(
            setters.last().unwrap().value,
            "200",
            "systemd: lexically last file wins, sysctl.conf not read"
        );
        let sysv = Layout {
            systemd: false,
            ..systemd
        };
        let view = NextBoot::read(r, &sysv).unwrap();
        assert_eq!(
            view.sysctl_setters("net.netfilter.nf_conntrack_max")
                .last()
                .unwrap()
                .value,
            "300"
        );
    }

    /// A parameter's boot value is read as the kernel reads the options
    /// (`next_arg`: quoted blanks kept, quotes dropped; `parameq`: `-` is
    /// `_`). Before the typed values, words were split at every blank and
    /// names folded by hand, so `x="a b"` gave `"a`.
    #[test]
    fn option_values_are_split_and_matched_as_the_kernel_does() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            "/etc/modprobe.d/x.conf",
            "options nf_conntrack_ftp ports=\"21 2121\" loose=0\noptions nf_conntrack expect-hashsize=8\n",
        );
        let layout = Layout {
            systemd: true,
            debian: true,
            etc_modules: false,
            iptables_config: false,
            modprobe_d: true,
            sysctl_d: true,
        };
        let view = NextBoot::read(r, &layout).unwrap();
        let value = |m: &str, p: &str| view.option_value(m, p).map(|f| f.value);
        assert_eq!(
            value("nf_conntrack_ftp", "ports").as_deref(),
            Some("21 2121")
        );
        assert_eq!(value("nf_conntrack_ftp", "loose").as_deref(), Some("0"));
        assert_eq!(
            value("nf_conntrack", "expect_hashsize").as_deref(),
            Some("8")
        );
        assert_eq!(value("nf_conntrack", "hashsize"), None);
    }

    #[test]
    fn iptables_modules_count_only_with_a_rules_file() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            plan::IPTABLES_CONFIG,
            "IPTABLES_MODULES=\"ip_conntrack ipt_state\"\n",
        );
        let layout = plan::detect(r);
        let view = NextBoot::read(r, &layout).unwrap();
        assert!(view.module_listed("ipt_state").is_empty());
        assert!(view.problems[0].contains("/etc/sysconfig/iptables exists"));
        write(r, "/etc/sysconfig/iptables", "*filter\nCOMMIT\n");
        let view = NextBoot::read(r, &layout).unwrap();
        assert_eq!(view.module_listed("ipt_state")[0].line, 1);
    }

    #[test]
    fn etc_modules_without_systemd() {
        let root = tempfile::tempdir().unwrap();
        write(root.path(), "/etc/modules", "# c\nnf_conntrack\n");
        let view = NextBoot::read(root.path(), &plan::detect(root.path())).unwrap();
        assert_eq!(
            view.module_listed("nf_conntrack")[0].file,
            Path::new("/etc/modules")
        );
    }

    /// A boot script is searched, not parsed: a Latin-1 byte in it does not
    /// hide the hook; a script that cannot be read is an error naming it
    /// (it was taken for "no hook").
    #[test]
    fn boot_hook_scripts_are_read_or_named() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        std::fs::create_dir_all(r.join("etc")).unwrap();
        std::fs::write(
            r.join("etc/rc.local"),
            b"#!/bin/sh\necho \"caf\xe9\"\n/usr/sbin/nfkit boot\n",
        )
        .unwrap();
        assert_eq!(find_boot_hook(r).unwrap().as_deref(), Some("/etc/rc.local"));
        std::fs::remove_file(r.join("etc/rc.local")).unwrap();
        nix::unistd::mkfifo(
            &r.join("etc/rc.local"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let err = find_boot_hook(r).unwrap_err();
        let text = crate::error::message(&err);
        assert!(text.contains("rc.local") && text.contains("FIFO"), "{text}");
        std::fs::remove_file(r.join("etc/rc.local")).unwrap();
        std::fs::create_dir_all(r.join("etc/init.d")).unwrap();
        std::os::unix::fs::symlink("../../../../x", r.join("etc/init.d/nfkit")).unwrap();
        assert!(find_boot_hook(r).is_err());
        std::fs::remove_file(r.join("etc/init.d/nfkit")).unwrap();
        assert_eq!(find_boot_hook(r).unwrap(), None);
    }
}
