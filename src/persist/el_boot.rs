//! The boot of an EL6-style host without systemd (RHEL/CentOS 6, PCS 6,
//! Virtuozzo 6: initscripts' rc.sysinit and SysV services), as far as
//! modules and sysctls go (reads files only).
//!
//! From initscripts (rhel6-branch: rc.d/rc.sysinit, rc.d/init.d/functions,
//! rc.d/init.d/network) and the iptables service:
//! 1. rc.sysinit runs `apply_sysctl`: `sysctl -e -p /etc/sysctl.conf`, then
//!    `sysctl -e -p` on every file of `/etc/sysctl.d/*` in name order
//!    (skipping `*~ *.bak *.orig *.rpmnew *.rpmorig *.rpmsave`). So
//!    sysctl.conf comes **first** and a sysctl.d file overrides it (the
//!    opposite of procps `--system`). Keys of modules not loaded yet fail
//!    silently (`-e`).
//! 2. rc.sysinit runs `/etc/sysconfig/modules/*.modules`, then
//!    `apply_sysctl` again.
//! 3. The iptables service (S08) restores `/etc/sysconfig/iptables` and
//!    then loads `IPTABLES_MODULES`; without that rules file it does
//!    nothing at all.
//! 4. The network service (S10, "Should-Start: iptables") runs
//!    `apply_sysctl` twice more: the sysctls of modules the iptables service
//!    loaded take effect here.
//!
//! Without sysctl.d (the usual EL6/PCS host), `/etc/sysctl.conf` is the only
//! sysctl file the boot reads.

use std::path::Path;

use super::files::{self, FileError};
use super::plan::{self, Layout};
use super::sysctl_d::ConfigFile;

fn present(root: &Path, path: &str) -> bool {
    files::resolve_under(root, Path::new(path)).is_ok_and(|p| p.exists())
}

/// Whether the root boots the EL6 way: no systemd, not Debian, and
/// rc.sysinit, a Red Hat release file or the iptables service's
/// configuration.
pub fn is_el_initscripts(root: &Path, layout: &Layout) -> bool {
    !layout.systemd
        && !layout.debian
        && (layout.iptables_config
            || [
                "/etc/rc.d/rc.sysinit",
                "/etc/rc.sysinit",
                "/etc/redhat-release",
            ]
            .iter()
            .any(|p| present(root, p)))
}

/// Whether the network service re-applies the sysctl files after the
/// iptables service loaded `IPTABLES_MODULES` (its init script is there).
pub fn sysctls_after_iptables_service(root: &Path) -> bool {
    present(root, "/etc/rc.d/init.d/network") || present(root, "/etc/init.d/network")
}

fn ignored(name: &str) -> bool {
    name.ends_with('~')
        || [".bak", ".orig", ".rpmnew", ".rpmorig", ".rpmsave"]
            .iter()
            .any(|s| name.ends_with(s))
}

/// The sysctl files in the order `apply_sysctl` applies them (the last
/// assignment wins): `/etc/sysctl.conf`, then `/etc/sysctl.d/*`. A file
/// the boot reads that cannot be read here (a value that is not UTF-8, no
/// permission) is an error naming it; a `sysctl.d` entry that is not a
/// regular file is skipped, as `test -f` does.
pub fn sysctl_files(root: &Path) -> Result<Vec<ConfigFile>, FileError> {
    let mut out = Vec::new();
    if let Some(text) = files::read_under(root, Path::new(plan::SYSCTL_CONF))? {
        out.push(ConfigFile {
            path: plan::SYSCTL_CONF.into(),
            text,
        });
    }
    let Ok(dir) = files::resolve_under(root, Path::new("/etc/sysctl.d")) else {
        return Ok(out);
    };
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| e.file_name().to_string_lossy().into_owned())
                .filter(|n| !ignored(n))
                .collect()
        })
        .unwrap_or_default();
    names.sort();
    for name in names {
        let shown = Path::new("/etc/sysctl.d").join(&name);
        // `test -f`: regular files (through symlinks) only.
        match files::read_under(root, &shown) {
            Ok(Some(text)) => out.push(ConfigFile { path: shown, text }),
            Ok(None) | Err(FileError::Read(crate::read::ReadError::NotRegular { .. })) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::testutil::write;

    #[test]
    fn detects_el_and_orders_sysctl_conf_first() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/etc/sysctl.conf", "k = conf\n");
        write(r, "/etc/sysctl.d/b", "k = b\n");
        write(r, "/etc/sysctl.d/a.conf", "k = a\n");
        write(r, "/etc/sysctl.d/c.rpmsave", "k = old\n");
        let layout = plan::detect(r);
        assert!(!is_el_initscripts(r, &layout), "nothing says EL yet");
        write(r, "/etc/redhat-release", "CentOS release 6.10 (Final)\n");
        assert!(is_el_initscripts(r, &plan::detect(r)));
        let names: Vec<String> = sysctl_files(r)
            .unwrap()
            .iter()
            .map(|f| f.path.display().to_string())
            .collect();
        assert_eq!(
            names,
            [
                "/etc/sysctl.conf",
                "/etc/sysctl.d/a.conf",
                "/etc/sysctl.d/b"
            ]
        );
        assert!(!sysctls_after_iptables_service(r));
        write(r, "/etc/rc.d/init.d/network", "#!/bin/bash\n");
        assert!(sysctls_after_iptables_service(r));
    }

    #[test]
    fn next_boot_on_el_reads_sysctl_conf_first_and_no_modules_load_d() {
        use crate::persist::nextboot::NextBoot;
        let key = "net.netfilter.nf_conntrack_max";
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/etc/sysctl.conf", "net.nf_conntrack_max = 1\n");
        write(
            r,
            "/etc/sysctl.d/50-x.conf",
            "net.netfilter.nf_conntrack_max = 2\n",
        );
        write(r, "/etc/modules-load.d/x.conf", "nf_conntrack\n");
        // procps (Debian without systemd): sysctl.conf last.
        write(r, "/etc/debian_version", "12\n");
        let boot = NextBoot::read(r, &plan::detect(r)).unwrap();
        assert_eq!(boot.sysctl_setters(key).last().unwrap().value, "1");
        assert_eq!(boot.module_listed("nf_conntrack").len(), 1);
        // EL6: sysctl.conf first, the sysctl.d file wins; modules-load.d unread.
        std::fs::remove_file(r.join("etc/debian_version")).unwrap();
        write(r, "/etc/redhat-release", "CentOS release 6.10\n");
        let boot = NextBoot::read(r, &plan::detect(r)).unwrap();
        let setters = boot.sysctl_setters(key);
        assert_eq!(
            setters
                .iter()
                .map(|s| (s.file.display().to_string(), s.value.as_str()))
                .collect::<Vec<_>>(),
            [
                ("/etc/sysctl.conf".to_string(), "1"),
                ("/etc/sysctl.d/50-x.conf".to_string(), "2")
            ]
        );
        assert!(boot.module_listed("nf_conntrack").is_empty());
        assert!(!boot.sysctls_after_iptables_modules);
    }
}
