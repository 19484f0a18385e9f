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
    /// The effective uid is 0 (`Uid:` of `/proc/self/status`).
    pub euid_root: Option<bool>,
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

/// Why module loads must be done on the host: the one rule that `status`
/// (via [`decide`]) and `modules load` / `apply` / `boot` (the preflight of
/// a real insert) share.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum HostOnly {
    /// In an OpenVZ / Virtuozzo container: the hardware node loads modules.
    OpenVzContainer,
    /// Not the initial user namespace: CAP_SYS_MODULE counts only there.
    NonInitialUserNamespace,
    /// Root without CAP_SYS_MODULE (a container's or a service's bounding set).
    NoCapSysModule,
}

impl HostOnly {
    /// Why, in words.
    pub fn describe(self) -> &'static str {
        match self {
            HostOnly::OpenVzContainer => "OpenVZ container: the hardware node loads modules",
            HostOnly::NonInitialUserNamespace => {
                "not in the initial user namespace: CAP_SYS_MODULE counts only there"
            }
            HostOnly::NoCapSysModule => "no CAP_SYS_MODULE",
        }
    }
}

impl std::fmt::Display for HostOnly {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}

/// Whether inserting a module must be done on the host (`None`: nothing
/// here says so). A non-root user without CAP_SYS_MODULE in the initial
/// user namespace is not "the host's job": the kernel's EPERM (run as root)
/// says it better, so [`HostOnly::NoCapSysModule`] needs uid 0 (or unknown).
pub fn module_loads_host_only(f: &Facts) -> Option<HostOnly> {
    if f.proc_vz && !f.proc_bc {
        Some(HostOnly::OpenVzContainer)
    } else if f.initial_userns == Some(false) {
        Some(HostOnly::NonInitialUserNamespace)
    } else if f.cap_sys_module == Some(false) && f.euid_root != Some(false) {
        Some(HostOnly::NoCapSysModule)
    } else {
        None
    }
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
    } else if let Some(why) = module_loads_host_only(f) {
        Capability {
            operation: "module loads",
            outcome: Where::MustBeDoneOnHost,
            why: Some(format!(
                "{why}; modules already loaded or built in are satisfied"
            )),
        }
    } else if f.cap_sys_module == Some(false) {
        Capability {
            operation: "module loads",
            outcome: Where::MustBeDoneOnHost,
            why: Some(
                "no CAP_SYS_MODULE (not root: run nfkit as root); modules already loaded or \
                 built in are satisfied"
                    .into(),
            ),
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

/// The facts [`module_loads_host_only`] needs, read under `proc_root`
/// (`/proc`, or `DIR/proc` offline) through `read`.
fn read_module_facts(proc_root: &Path, read: &dyn Fn(&Path) -> Option<String>, f: &mut Facts) {
    f.proc_vz = proc_root.join("vz").exists();
    f.proc_bc = f.proc_vz && proc_root.join("bc").exists();
    (f.cap_sys_module, f.euid_root) = if crate::system::is_running_proc(proc_root) {
        // This process on the running kernel: asked directly (the same
        // values /proc/self/status shows, without generating that file).
        own_credentials()
    } else {
        credentials_in(read(&proc_root.join("self/status")).as_deref())
    };
    f.initial_userns = read(&proc_root.join("self/uid_map"))
        .map(|m| crate::modules::explain::is_initial_uid_map(&m));
}

/// `CAP_SYS_MODULE`'s bit in a capability set.
const CAP_SYS_MODULE: u64 = 1 << 16;

/// Whether `CAP_SYS_MODULE` is effective and the effective uid is 0, from a
/// `/proc/PID/status` text (`CapEff:` in hex; `Uid:` real effective saved fs).
fn credentials_in(status: Option<&str>) -> (Option<bool>, Option<bool>) {
    let field = |name: &str| status?.lines().find_map(|l| l.strip_prefix(name));
    let cap = field("CapEff:")
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        .map(|c| c & CAP_SYS_MODULE != 0);
    let euid_root = field("Uid:").and_then(|v| v.split_ascii_whitespace().nth(1).map(|e| e == "0"));
    (cap, euid_root)
}

/// [`credentials_in`] for this process, from `capget(2)` and `geteuid(2)`.
fn own_credentials() -> (Option<bool>, Option<bool>) {
    let cap = crate::system::effective_capabilities()
        .ok()
        .map(|c| c & CAP_SYS_MODULE != 0);
    (cap, Some(nix::unistd::geteuid().is_root()))
}

/// The preflight of a real insert: whether it must be done on the host,
/// from the files under `proc_root` (the running kernel's `/proc`).
pub(crate) fn module_load_preflight(proc_root: &Path) -> Option<HostOnly> {
    let read = |p: &Path| {
        crate::modules::sysfs::read_in_tree(proc_root, p, Kind::KernelValue)
            .ok()
            .flatten()
    };
    let mut f = Facts::default();
    read_module_facts(proc_root, &read, &mut f);
    module_loads_host_only(&f)
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
    let mut facts = Facts::default();
    read_module_facts(&host.proc_root, &read, &mut facts);
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
        beancounters: if facts.proc_vz {
            read(&host.proc("user_beancounters"))
        } else {
            None
        },
        container,
        initial_netns: netns.initial,
        sys_read_only,
        module_support: host.has_module_support(),
        module_tree,
        ..facts
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

    /// Every combination of the facts the module-load rule reads: `status`
    /// says "must be done on the host" for module loads exactly when the
    /// preflight of a real insert refuses (or, for a non-root user without
    /// the capability, when the kernel's EPERM will), and never when the
    /// kernel has no module support (unavailable comes first).
    #[test]
    fn status_and_the_load_preflight_share_one_rule() {
        let tri = [None, Some(false), Some(true)];
        for vz in [false, true] {
            for bc in [false, true] {
                for userns in tri {
                    for cap in tri {
                        for root in tri {
                            for support in [false, true] {
                                let f = Facts {
                                    proc_vz: vz,
                                    proc_bc: vz && bc,
                                    initial_userns: userns,
                                    cap_sys_module: cap,
                                    euid_root: root,
                                    module_support: support,
                                    ..plain()
                                };
                                let pre = module_loads_host_only(&f);
                                let shown = outcome(&decide(&f), "module loads");
                                let ctx = format!("{f:?} {pre:?} {shown:?}");
                                if !support {
                                    assert_eq!(shown, Where::Unavailable, "{ctx}");
                                } else if pre.is_some() {
                                    assert_eq!(shown, Where::MustBeDoneOnHost, "{ctx}");
                                } else {
                                    let no_cap = cap == Some(false);
                                    assert_eq!(shown == Where::MustBeDoneOnHost, no_cap, "{ctx}");
                                    assert!(!no_cap || root == Some(false), "{ctx}");
                                }
                                // The reasons, in their order of precedence.
                                let want = if vz && !bc {
                                    Some(HostOnly::OpenVzContainer)
                                } else if userns == Some(false) {
                                    Some(HostOnly::NonInitialUserNamespace)
                                } else if cap == Some(false) && root != Some(false) {
                                    Some(HostOnly::NoCapSysModule)
                                } else {
                                    None
                                };
                                assert_eq!(pre, want, "{ctx}");
                            }
                        }
                    }
                }
            }
        }
    }

    /// This process's credentials from the kernel equal what its status
    /// file says: as it is, and in a thread that dropped `CAP_SYS_MODULE`
    /// from its effective set (capabilities are per thread; the file of
    /// the thread itself is compared).
    #[test]
    fn own_credentials_match_the_status_file() {
        let from_file = || {
            let text = std::fs::read_to_string("/proc/thread-self/status").unwrap();
            credentials_in(Some(&text))
        };
        assert_eq!(own_credentials(), from_file());
        let had = own_credentials().0;
        std::thread::spawn(move || {
            crate::system::drop_effective_capabilities(CAP_SYS_MODULE).unwrap();
            assert_eq!(own_credentials(), from_file());
            assert_eq!(
                own_credentials().0,
                Some(false),
                "dropped (had it: {had:?})"
            );
        })
        .join()
        .unwrap();
    }

    /// The preflight reads the facts from a `/proc` tree.
    #[test]
    fn load_preflight_reads_proc() {
        let dir = tempfile::tempdir().unwrap();
        let proc = dir.path().join("proc");
        std::fs::create_dir_all(proc.join("self")).unwrap();
        let write = |f: &str, text: &str| std::fs::write(proc.join(f), text).unwrap();
        let status = |uid: u32, cap: u64| {
            format!("Name:\tnfkit\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\nCapEff:\t{cap:016x}\n")
        };
        let full = 0x1ff_ffff_ffff_u64;
        write("self/status", &status(0, full));
        write("self/uid_map", "         0          0 4294967295\n");
        assert_eq!(module_load_preflight(&proc), None);
        write("self/status", &status(0, full & !(1 << 16)));
        assert_eq!(module_load_preflight(&proc), Some(HostOnly::NoCapSysModule));
        // Not root: the kernel's EPERM ("run as root") says it better.
        write("self/status", &status(1000, 0));
        assert_eq!(module_load_preflight(&proc), None);
        write("self/status", &status(0, full));
        write("self/uid_map", "         0     100000      65536\n");
        assert_eq!(
            module_load_preflight(&proc),
            Some(HostOnly::NonInitialUserNamespace)
        );
        std::fs::create_dir(proc.join("vz")).unwrap();
        assert_eq!(
            module_load_preflight(&proc),
            Some(HostOnly::OpenVzContainer)
        );
        std::fs::create_dir(proc.join("bc")).unwrap();
        assert_eq!(
            module_load_preflight(&proc),
            Some(HostOnly::NonInitialUserNamespace),
            "a hardware node is not a container"
        );
        // Unknown facts (no files): nothing says it is the host's job.
        std::fs::remove_file(proc.join("self/uid_map")).unwrap();
        std::fs::remove_file(proc.join("self/status")).unwrap();
        assert_eq!(module_load_preflight(&proc), None);
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
