//! Containers and restricted hosts (issue 14 §6): what nfkit can do here,
//! what must be done on the host, what is unavailable. [`decide`] is pure
//! (facts in, outcomes out); [`read`] gathers the facts (a few `stat`s and
//! two small reads, so that `status` stays cheap).
//!
//! Per-module outcomes ("already satisfied" for a loaded or built-in module
//! even without a module tree) are `nfkit explain`'s; this is the host view.

use std::path::Path;

use serde::Serialize;

use crate::read::Kind;
use crate::system::Host;

/// An OpenVZ / Virtuozzo kernel's role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OpenVzRole {
    /// Inside a container (`/proc/vz` without `/proc/bc`).
    Container,
    /// The hardware node (`/proc/bc` present).
    HostNode,
}

/// An OpenVZ / Virtuozzo kernel and its netfilter restrictions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OpenVz {
    /// Container or host node.
    pub role: OpenVzRole,
    /// The files that told.
    pub evidence: Vec<String>,
    /// The `numiptent` beancounter (iptables entries): held, limit, failcnt.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub numiptent: Option<[u64; 3]>,
    /// What this means for netfilter here.
    pub restrictions: Vec<String>,
}

/// Where an operation can be done.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Where {
    /// Here.
    Here,
    /// Only on the host (initial namespaces, CAP_SYS_MODULE, the node).
    MustBeDoneOnHost,
    /// Nowhere from here (the kernel lacks it).
    Unavailable,
}

/// One kind of operation and where it can be done, with why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Capability {
    /// `module loads`, `conntrack limits`, `module parameters in /sys`.
    pub operation: &'static str,
    /// Where.
    pub outcome: Where,
    /// Why (empty when here).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub why: Option<String>,
}

/// The facts (each `None`: unknown).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Facts {
    /// `/proc/vz` exists.
    pub proc_vz: bool,
    /// `/proc/bc` exists.
    pub proc_bc: bool,
    /// `/proc/user_beancounters` text.
    pub beancounters: Option<String>,
    /// Container manager named by `/run/systemd/container`, `/.dockerenv`,
    /// `/run/.containerenv`.
    pub container: Option<String>,
    /// Initial network namespace.
    pub initial_netns: Option<bool>,
    /// Initial user namespace (`/proc/self/uid_map`).
    pub initial_userns: Option<bool>,
    /// CAP_SYS_MODULE in CapEff.
    pub cap_sys_module: Option<bool>,
    /// `/sys` is mounted read-only.
    pub sys_read_only: Option<bool>,
    /// `/proc/modules` exists.
    pub module_support: bool,
    /// `/lib/modules/<release>` exists.
    pub module_tree: Option<bool>,
}

/// The host view `status` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Containment {
    /// Container manager, when one is detected (`openvz`, `docker`, ...).
    pub container: Option<String>,
    /// OpenVZ / Virtuozzo details.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub openvz: Option<OpenVz>,
    /// `/sys` is read-only.
    pub sys_read_only: Option<bool>,
    /// `/lib/modules/<release>` exists.
    pub module_tree: Option<bool>,
    /// Where each operation can be done.
    pub capabilities: Vec<Capability>,
}

/// The `numiptent` line of `/proc/user_beancounters`: held, limit, failcnt.
pub fn numiptent(text: &str) -> Option<[u64; 3]> {
    text.lines().find_map(|line| {
        let words: Vec<&str> = line.split_ascii_whitespace().collect();
        let at = words.iter().position(|w| *w == "numiptent")?;
        let n = |i: usize| words.get(at + i)?.parse::<u64>().ok();
        // resource held maxheld barrier limit failcnt
        Some([n(1)?, n(4)?, n(5)?])
    })
}

fn openvz(f: &Facts) -> Option<OpenVz> {
    if !f.proc_vz {
        return None;
    }
    let role = if f.proc_bc {
        OpenVzRole::HostNode
    } else {
        OpenVzRole::Container
    };
    let mut evidence = vec!["/proc/vz exists".to_owned()];
    evidence.push(if f.proc_bc {
        "/proc/bc exists (hardware node)".to_owned()
    } else {
        "/proc/bc absent (container)".to_owned()
    });
    if f.beancounters.is_some() {
        evidence.push("/proc/user_beancounters exists".into());
    }
    let numiptent = f.beancounters.as_deref().and_then(numiptent);
    let mut restrictions = Vec::new();
    if role == OpenVzRole::Container {
        restrictions.push(
            "netfilter modules are loaded on the hardware node and allowed per container \
             (vzctl set CTID --netfilter disabled|stateless|stateful|full; older nodes: \
             IPTABLES=\"...\" in /etc/vz/conf/CTID.conf): a module the node did not allow \
             cannot be used here"
                .into(),
        );
        restrictions.push(
            "conntrack limits (nf_conntrack_max, hashsize) are the node's: set them there".into(),
        );
    }
    if let Some([held, limit, failcnt]) = numiptent {
        restrictions.push(format!(
            "the numiptent beancounter limits iptables entries: {held} held of {limit}, {failcnt} refused"
        ));
    }
    Some(OpenVz {
        role,
        evidence,
        numiptent,
        restrictions,
    })
}

/// Where each operation can be done, from the facts.
pub fn decide(f: &Facts) -> Containment {
    let vz = openvz(f);
    let in_vz = vz.as_ref().is_some_and(|v| v.role == OpenVzRole::Container);
    let container = if in_vz {
        Some("openvz".to_owned())
    } else {
        f.container.clone()
    };
    let module_loads = if !f.module_support {
        Capability {
            operation: "module loads",
            outcome: Where::Unavailable,
            why: Some(
                "the kernel has no loadable module support (no /proc/modules): only built-in \
                 components exist (explain: already satisfied or unavailable)"
                    .into(),
            ),
        }
    } else if in_vz || f.cap_sys_module == Some(false) || f.initial_userns == Some(false) {
        let why = if in_vz {
            "OpenVZ container: the hardware node loads modules".to_owned()
        } else if f.initial_userns == Some(false) {
            "not in the initial user namespace: CAP_SYS_MODULE counts only there".to_owned()
        } else {
            "no CAP_SYS_MODULE".to_owned()
        };
        Capability {
            operation: "module loads",
            outcome: Where::MustBeDoneOnHost,
            why: Some(format!(
                "{why}; modules already loaded or built in are satisfied"
            )),
        }
    } else if f.module_tree == Some(false) {
        Capability {
            operation: "module loads",
            outcome: Where::Unavailable,
            why: Some(
                "no /lib/modules/<release> here: only loaded or built-in modules can be confirmed"
                    .into(),
            ),
        }
    } else {
        Capability {
            operation: "module loads",
            outcome: Where::Here,
            why: None,
        }
    };
    let limits = if in_vz || f.initial_netns == Some(false) {
        Capability {
            operation: "conntrack limits",
            outcome: Where::MustBeDoneOnHost,
            why: Some(if in_vz {
                "OpenVZ container: the limits are the hardware node's".into()
            } else {
                "not the initial network namespace: nf_conntrack_max and buckets are global and \
                 read-only here"
                    .into()
            }),
        }
    } else {
        Capability {
            operation: "conntrack limits",
            outcome: Where::Here,
            why: None,
        }
    };
    let sys = if f.sys_read_only == Some(true) {
        Capability {
            operation: "module parameters in /sys",
            outcome: Where::MustBeDoneOnHost,
            why: Some(
                "/sys is mounted read-only (a container): hashsize and other parameters cannot be changed here"
                    .into(),
            ),
        }
    } else {
        Capability {
            operation: "module parameters in /sys",
            outcome: Where::Here,
            why: None,
        }
    };
    Containment {
        container,
        openvz: vz,
        sys_read_only: f.sys_read_only,
        module_tree: f.module_tree,
        capabilities: vec![module_loads, limits, sys],
    }
}

/// Reads the facts (offline: the files under the root's proc/; the mount
/// flags of /sys are then unknown).
pub fn read(host: &Host) -> Containment {
    read_in(host, host.network_namespace())
}

/// [`read`] for a caller that already knows the network namespace
/// (`status` reports it too: read once).
pub fn read_in(host: &Host, netns: crate::system::NetnsInfo) -> Containment {
    let read = |p: &Path| host.read(p, Kind::KernelValue).ok().flatten();
    let proc_vz = host.proc("vz").exists();
    let container = read(&host.root.join("run/systemd/container"))
        .map(|s| s.trim().to_owned())
        .filter(|s| !s.is_empty())
        .or_else(|| {
            host.root
                .join(".dockerenv")
                .exists()
                .then(|| "docker".to_owned())
        })
        .or_else(|| {
            host.root
                .join("run/.containerenv")
                .exists()
                .then(|| "podman".to_owned())
        });
    let cap = read(&host.proc("self/status")).and_then(|s| {
        s.lines()
            .find_map(|l| l.strip_prefix("CapEff:"))
            .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
    });
    let sys_read_only = (!host.offline)
        .then(|| nix::sys::statvfs::statvfs(&host.sys_root).ok())
        .flatten()
        .map(|s| s.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY));
    let module_tree = host
        .kernel_release()
        .ok()
        .flatten()
        .map(|r| host.root.join("lib/modules").join(r).is_dir());
    let facts = Facts {
        proc_vz,
        proc_bc: proc_vz && host.proc("bc").exists(),
        beancounters: if proc_vz {
            read(&host.proc("user_beancounters"))
        } else {
            None
        },
        container,
        initial_netns: netns.initial,
        initial_userns: read(&host.proc("self/uid_map"))
            .map(|m| crate::modules::explain::is_initial_uid_map(&m)),
        cap_sys_module: cap.map(|c| c & (1 << 16) != 0),
        sys_read_only,
        module_support: host.has_module_support(),
        module_tree,
    };
    decide(&facts)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plain() -> Facts {
        Facts {
            initial_netns: Some(true),
            initial_userns: Some(true),
            cap_sys_module: Some(true),
            sys_read_only: Some(false),
            module_support: true,
            module_tree: Some(true),
            ..Facts::default()
        }
    }

    fn outcome(c: &Containment, op: &str) -> Where {
        c.capabilities
            .iter()
            .find(|x| x.operation == op)
            .unwrap()
            .outcome
    }

    #[test]
    fn a_plain_host_does_everything_here() {
        let c = decide(&plain());
        assert!(c.capabilities.iter().all(|x| x.outcome == Where::Here));
        assert_eq!(c.container, None);
    }

    #[test]
    fn restricted_hosts_get_distinct_outcomes() {
        let mut f = plain();
        f.initial_netns = Some(false);
        f.sys_read_only = Some(true);
        let c = decide(&f);
        assert_eq!(outcome(&c, "conntrack limits"), Where::MustBeDoneOnHost);
        assert_eq!(
            outcome(&c, "module parameters in /sys"),
            Where::MustBeDoneOnHost
        );
        assert_eq!(outcome(&c, "module loads"), Where::Here);
        let mut f = plain();
        f.cap_sys_module = Some(false);
        assert_eq!(
            outcome(&decide(&f), "module loads"),
            Where::MustBeDoneOnHost
        );
        let mut f = plain();
        f.initial_userns = Some(false);
        assert_eq!(
            outcome(&decide(&f), "module loads"),
            Where::MustBeDoneOnHost
        );
        let mut f = plain();
        f.module_tree = Some(false);
        assert_eq!(outcome(&decide(&f), "module loads"), Where::Unavailable);
        let mut f = plain();
        f.module_support = false;
        assert_eq!(outcome(&decide(&f), "module loads"), Where::Unavailable);
    }

    const BEANCOUNTERS: &str = "Version: 2.5\n       uid  resource                     held              maxheld              barrier                limit              failcnt\n      101:  kmemsize                  2752512              3305472             14372700             14790164                    0\n            numiptent                      20                   22                  128                  128                    3\n";

    #[test]
    fn openvz_container_and_node() {
        assert_eq!(numiptent(BEANCOUNTERS), Some([20, 128, 3]));
        let mut f = plain();
        f.proc_vz = true;
        f.beancounters = Some(BEANCOUNTERS.into());
        let c = decide(&f);
        assert_eq!(c.container.as_deref(), Some("openvz"));
        let vz = c.openvz.as_ref().unwrap();
        assert_eq!(vz.role, OpenVzRole::Container);
        assert!(vz.restrictions.iter().any(|r| r.contains("--netfilter")));
        assert!(
            vz.restrictions
                .iter()
                .any(|r| r.contains("20 held of 128, 3 refused"))
        );
        assert_eq!(outcome(&c, "module loads"), Where::MustBeDoneOnHost);
        assert_eq!(outcome(&c, "conntrack limits"), Where::MustBeDoneOnHost);
        f.proc_bc = true;
        let c = decide(&f);
        assert_eq!(c.openvz.unwrap().role, OpenVzRole::HostNode);
        assert_eq!(c.container, None);
        assert_eq!(outcome(&decide(&f), "module loads"), Where::Here);
    }
}
