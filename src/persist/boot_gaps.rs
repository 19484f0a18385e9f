//! What the next boot would still get wrong once apply has written its
//! files: the rows of `verify`'s next-boot view that differ, each with the
//! fix nfkit cannot make itself (a boot hook for `nfkit boot`, the iptables
//! rules file, a line in someone else's file). `apply` reports them under
//! `remaining` and exits 3, so that its word is `verify`'s word: both judge
//! the next boot with the same model ([`NextBoot`] and
//! [`verify::compare`]).

use std::path::Path;

use serde::Serialize;

use super::desired::Desired;
use super::nextboot::NextBoot;
use super::plan::{self, Layout};
use super::verify;

/// One difference the next boot would keep.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BootGap {
    /// As in verify: `module xt_state`, a sysctl key, `module.parameter`.
    pub item: String,
    /// What the next boot would have.
    pub boot: String,
    /// What is desired.
    pub desired: String,
    /// Why (verify's notes for the row).
    pub why: Vec<String>,
    /// The fix.
    pub fix: String,
}

/// How to run `nfkit boot` at boot on this layout.
fn hook_fix(root: &Path, layout: &Layout) -> String {
    if layout.systemd {
        return "run `nfkit boot` at boot: install contrib/systemd/nfkit-boot.service as \
                /etc/systemd/system/nfkit-boot.service and `systemctl enable nfkit-boot`"
            .into();
    }
    if super::el_boot::is_el_initscripts(root, layout) {
        let mut fix = String::from(
            "run `nfkit boot` at boot: add the line `/usr/sbin/nfkit boot` to /etc/rc.d/rc.local, \
             or install contrib/sysvinit/nfkit as /etc/rc.d/init.d/nfkit and `chkconfig --add nfkit`",
        );
        if layout.iptables_config && !files_exist(root, "/etc/sysconfig/iptables") {
            fix.push_str(
                "; or save the firewall rules (`service iptables save` writes /etc/sysconfig/iptables): \
                 the iptables service loads IPTABLES_MODULES only when that file exists",
            );
        }
        return fix;
    }
    "run `nfkit boot` at boot: add the line `/usr/sbin/nfkit boot` to /etc/rc.local, or install \
     contrib/sysvinit/nfkit as /etc/init.d/nfkit (or contrib/openrc/nfkit.start as \
     /etc/local.d/nfkit.start)"
        .into()
}

fn files_exist(root: &Path, path: &str) -> bool {
    super::files::resolve_under(root, Path::new(path)).is_ok_and(|p| p.exists())
}

/// The differences the next boot of `root` keeps for `desired` (empty when
/// `verify` would find the next boot right).
pub fn next_boot_gaps(
    root: &Path,
    desired: &Desired,
) -> Result<Vec<BootGap>, super::files::FileError> {
    let layout = plan::detect(root);
    let boot = NextBoot::read(root, &layout)?;
    let report = verify::compare(desired, None, &boot, &layout);
    let hook = hook_fix(root, &layout);
    Ok(report
        .rows
        .into_iter()
        .filter(|row| !row.ok)
        .map(|row| {
            // A value some other file sets wins over nfkit's; otherwise the
            // value is right but nothing loads or applies it at boot.
            let fix = match &row.boot_source {
                Some(source) if row.boot != row.desired => {
                    format!("change or remove the setting at {source}; or {hook}")
                }
                _ => hook.clone(),
            };
            BootGap {
                item: row.item,
                boot: row.boot,
                desired: row.desired,
                why: row.notes,
                fix,
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::persist::testutil::write;

    fn desired() -> Desired {
        Desired::parse(
            "t",
            "[modules]\nload = [\"xt_state\"]\n[conntrack]\nmax = 600000\n",
        )
        .unwrap()
    }

    #[test]
    fn el6_without_a_boot_path_has_gaps_with_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(
            r,
            plan::IPTABLES_CONFIG,
            "IPTABLES_MODULES=\"nf_conntrack xt_state\"\n",
        );
        write(r, "/etc/sysctl.conf", "net.nf_conntrack_max = 600000\n");
        write(r, "/etc/rc.d/init.d/network", "#!/bin/bash\n");
        let gaps = next_boot_gaps(r, &desired()).unwrap();
        let items: Vec<&str> = gaps.iter().map(|g| g.item.as_str()).collect();
        assert_eq!(
            items,
            [
                "module nf_conntrack",
                "module xt_state",
                "net.netfilter.nf_conntrack_max"
            ]
        );
        assert_eq!(gaps[0].boot, "not loaded");
        assert!(
            gaps[0].fix.contains("/etc/rc.d/rc.local"),
            "{}",
            gaps[0].fix
        );
        assert!(
            gaps[0].fix.contains("service iptables save"),
            "{}",
            gaps[0].fix
        );
        assert!(gaps[0].fix.contains("contrib/sysvinit/nfkit"));
        // The rules file makes the iptables service load the list, and the
        // network service applies sysctl.conf after it.
        write(r, "/etc/sysconfig/iptables", "*filter\nCOMMIT\n");
        assert_eq!(next_boot_gaps(r, &desired()).unwrap(), []);
    }

    #[test]
    fn an_overriding_file_is_named_in_the_fix() {
        let root = tempfile::tempdir().unwrap();
        let r = root.path();
        write(r, "/etc/redhat-release", "CentOS release 6.10\n");
        write(r, "/etc/rc.d/rc.local", "nfkit boot\n");
        write(r, "/etc/sysctl.conf", "net.nf_conntrack_max = 600000\n");
        let d = Desired::parse("t", "[conntrack]\nmax = 600000\n").unwrap();
        assert_eq!(
            next_boot_gaps(r, &d).unwrap(),
            [],
            "the hook applies everything"
        );
        std::fs::remove_file(r.join("etc/rc.d/rc.local")).unwrap();
        write(
            r,
            plan::IPTABLES_CONFIG,
            "IPTABLES_MODULES=\"nf_conntrack\"\n",
        );
        write(r, "/etc/sysconfig/iptables", "*filter\nCOMMIT\n");
        write(r, "/etc/init.d/network", "#!/bin/bash\n");
        write(
            r,
            "/etc/sysctl.d/50-tuning.conf",
            "net.netfilter.nf_conntrack_max = 1\n",
        );
        let gaps = next_boot_gaps(r, &d).unwrap();
        assert_eq!(gaps.len(), 1, "{gaps:?}");
        assert_eq!(gaps[0].boot, "1");
        assert!(
            gaps[0]
                .fix
                .starts_with("change or remove the setting at /etc/sysctl.d/50-tuning.conf:1"),
            "{}",
            gaps[0].fix
        );
    }
}
