//! Readers of /proc and /sys (and of a module directory's text indexes).
//! Each takes its root as a parameter, so tests run them on fake trees.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::error::EpermReason;
use crate::read::{Kind, ReadError};

/// Reads a file below `base` (a `/proc` or `/sys` mount, or a module
/// directory) through [`crate::read`], confined to the tree holding it:
/// `/` for the live `/proc` and `/sys`, `DIR` for `DIR/proc` offline.
pub(crate) fn read_in_tree(
    base: &Path,
    full: &Path,
    kind: Kind,
) -> Result<Option<String>, ReadError> {
    let root = base.parent().unwrap_or(Path::new("/"));
    crate::read::read_confined(root, full, kind)
}
use super::name::{self, ModuleName};
use super::state::ModState;

/// One line of /proc/modules.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProcModule {
    /// Module name.
    pub name: String,
    /// Size in bytes.
    pub size: u64,
    /// Reference count.
    pub refcnt: u32,
    /// Modules using it.
    pub holders: Vec<String>,
    /// Live, coming or going (the kernel's Live/Loading/Unloading).
    pub state: ModState,
}

/// Parses /proc/modules: `name size refcnt holders,|- State 0xaddr [(taint)]`.
/// Malformed lines are skipped (the format has been stable since 2.6).
pub fn parse_proc_modules(text: &str) -> Vec<ProcModule> {
    text.lines()
        .filter_map(|line| {
            let mut f = line.split_ascii_whitespace();
            let name = f.next()?.to_owned();
            let size = f.next()?.parse().ok()?;
            let refcnt = f.next()?.parse().ok()?;
            let holders = match f.next()? {
                "-" => Vec::new(),
                h => h
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(str::to_owned)
                    .collect(),
            };
            let state = ModState::from_proc_modules(f.next().unwrap_or("Live"));
            Some((name, size, refcnt, holders, state))
        })
        .map(|(name, size, refcnt, holders, state)| ProcModule {
            name,
            size,
            refcnt,
            holders,
            state,
        })
        .collect()
}

/// Reads `<proc>/modules`; `Ok(None)` when it does not exist (a kernel
/// without loadable module support).
pub fn read_proc_modules(proc_root: &Path) -> Result<Option<Vec<ProcModule>>, ReadError> {
    let text = read_in_tree(proc_root, &proc_root.join("modules"), Kind::KernelTable)?;
    Ok(text.map(|t| parse_proc_modules(&t)))
}

/// What `<sys>/module/<name>` shows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SysModule {
    /// Module name.
    pub name: String,
    /// Content of `initstate` (live, coming, going); `None` for a built-in
    /// module (no initstate file).
    pub initstate: Option<ModState>,
    /// Content of `refcnt`, when present.
    pub refcnt: Option<u32>,
    /// Entries of `holders/`.
    pub holders: Vec<String>,
}

/// A one-value file below `base`, trimmed; `None` when absent or refused.
fn read_trim(base: &Path, p: &Path) -> Option<String> {
    read_in_tree(base, p, Kind::KernelValue)
        .ok()
        .flatten()
        .map(|s| s.trim().to_owned())
}

fn dir_names(p: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(p)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Reads `<sys>/module/<name>`, `None` when there is no such directory.
pub fn read_sys_module(sys_root: &Path, name: &str) -> Option<SysModule> {
    let d = sys_root.join("module").join(name);
    if !d.is_dir() {
        return None;
    }
    Some(SysModule {
        name: name.to_owned(),
        initstate: read_trim(sys_root, &d.join("initstate")).map(|s| ModState::from_sysfs(&s)),
        refcnt: read_trim(sys_root, &d.join("refcnt")).and_then(|s| s.parse().ok()),
        holders: dir_names(&d.join("holders")),
    })
}

/// Every `<sys>/module/*` entry, sorted by name.
pub fn read_sys_modules(sys_root: &Path) -> io::Result<Vec<SysModule>> {
    let d = sys_root.join("module");
    fs::read_dir(&d)?;
    Ok(dir_names(&d)
        .iter()
        .filter_map(|n| read_sys_module(sys_root, n))
        .collect())
}

/// The parameters a loaded or built-in module exposes in
/// `<sys>/module/<name>/parameters` (parameters declared with permission 0
/// are not there). Empty when the module has none or is not in sysfs.
pub fn sys_parameters(sys_root: &Path, name: &str) -> Vec<String> {
    dir_names(&sys_root.join("module").join(name).join("parameters"))
}

/// Whether `<sys>/module/<name>` exists.
pub fn in_sysfs(sys_root: &Path, name: &str) -> bool {
    sys_root.join("module").join(name).is_dir()
}

/// Decides why the kernel answered EPERM, from what can be seen:
/// `cap_eff` = the CapEff mask of /proc/self/status, `modules_disabled` =
/// /proc/sys/kernel/modules_disabled, `cmdline` = /proc/cmdline,
/// `lockdown` = /sys/kernel/security/lockdown (`none [integrity] ...`).
pub fn decide_eperm(
    module: &str,
    cap_eff: Option<u64>,
    modules_disabled: Option<&str>,
    cmdline: Option<&str>,
    lockdown: Option<&str>,
) -> EpermReason {
    const CAP_SYS_MODULE: u32 = 16;
    if cap_eff.is_some_and(|c| c & (1 << CAP_SYS_MODULE) == 0) {
        return EpermReason::NotRoot;
    }
    if modules_disabled.is_some_and(|s| s.trim() == "1") {
        return EpermReason::ModulesDisabled;
    }
    if let Some(cl) = cmdline {
        let module = ModuleName::canonical(module);
        let listed = cl
            .split_ascii_whitespace()
            .filter_map(|w| w.strip_prefix("module_blacklist="))
            .flat_map(|v| v.split(','))
            .any(|m| module.is(m));
        if listed {
            return EpermReason::KernelBlacklist;
        }
    }
    if let Some(l) = lockdown {
        if let Some(mode) = l
            .split_ascii_whitespace()
            .find_map(|w| w.strip_prefix('[').and_then(|w| w.strip_suffix(']')))
        {
            if mode != "none" {
                return EpermReason::Lockdown {
                    mode: mode.to_owned(),
                };
            }
        }
    }
    EpermReason::Unknown
}

/// Reads the facts [`decide_eperm`] needs under `proc_root`/`sys_root`.
pub fn eperm_reason(proc_root: &Path, sys_root: &Path, module: &str) -> EpermReason {
    let cap_eff = read_in_tree(proc_root, &proc_root.join("self/status"), Kind::KernelValue)
        .ok()
        .flatten()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("CapEff:"))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
        });
    decide_eperm(
        module,
        cap_eff,
        read_trim(proc_root, &proc_root.join("sys/kernel/modules_disabled")).as_deref(),
        read_trim(proc_root, &proc_root.join("cmdline")).as_deref(),
        read_trim(sys_root, &sys_root.join("kernel/security/lockdown")).as_deref(),
    )
}

/// Module names known to a module directory: modules.dep and
/// modules.builtin (`kernel/net/netfilter/xt_state.ko[.xz]` → `xt_state`),
/// for "did you mean". Dashes are normalised to underscores.
pub fn known_module_names(moddir: &Path) -> Vec<String> {
    let read = |file: &str| {
        read_in_tree(moddir, &moddir.join(file), Kind::ModuleIndex)
            .ok()
            .flatten()
            .unwrap_or_default()
    };
    let (dep, builtin) = (read("modules.dep"), read("modules.builtin"));
    let mut out: Vec<String> = name::names_in_dep(&dep)
        .chain(name::names_in_builtin(&builtin))
        .map(ModuleName::into_string)
        .collect();
    out.sort();
    out.dedup();
    out
}

/// Kernel releases with a module directory under `<root>/lib/modules`.
pub fn releases(root: &Path) -> Vec<String> {
    dir_names(&root.join("lib/modules"))
        .into_iter()
        .filter(|r| root.join("lib/modules").join(r).is_dir())
        .collect()
}

/// True for modules that belong to the netfilter layer (the default filter
/// of `nfkit modules list`).
pub fn is_netfilter(name: &str) -> bool {
    const PREFIXES: &[&str] = &[
        "nf_",
        "nft_",
        "nfnetlink",
        "xt_",
        "ipt_",
        "ip6t_",
        "iptable_",
        "ip6table_",
        "arpt_",
        "arptable_",
        "ebt_",
        "ebtable",
        "ip_set",
        "ip_vs",
        "x_tables",
        "ip_tables",
        "ip6_tables",
        "arp_tables",
        "br_netfilter",
        "nf_tables",
    ];
    let n = ModuleName::canonical(name);
    PREFIXES.iter().any(|p| n.as_str().starts_with(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    const PROC_MODULES: &str = "\
xt_state 16384 1 - Live 0x0000000000000000
nf_conntrack 172032 3 xt_state,nf_nat,xt_conntrack, Live 0xffffffffc0a00000
nf_defrag_ipv6 24576 1 nf_conntrack, Live 0x0000000000000000
x_tables 53248 4 xt_state,iptable_filter, Loading 0x0000000000000000 (OE)
bad line
";

    #[test]
    fn parses_proc_modules() {
        let m = parse_proc_modules(PROC_MODULES);
        assert_eq!(m.len(), 4);
        assert_eq!(m[0].holders, Vec::<String>::new());
        assert_eq!(m[1].name, "nf_conntrack");
        assert_eq!(m[1].size, 172032);
        assert_eq!(m[1].refcnt, 3);
        assert_eq!(m[1].holders, vec!["xt_state", "nf_nat", "xt_conntrack"]);
        assert_eq!(m[3].state, ModState::Coming);
    }

    #[test]
    fn reads_fake_trees() {
        let t = tempfile::tempdir().unwrap();
        let proc = t.path().join("proc");
        let sys = t.path().join("sys");
        assert_eq!(read_proc_modules(&proc).unwrap(), None);
        fs::create_dir_all(&proc).unwrap();
        fs::write(proc.join("modules"), PROC_MODULES).unwrap();
        assert_eq!(read_proc_modules(&proc).unwrap().unwrap().len(), 4);

        let nf = sys.join("module/nf_conntrack");
        fs::create_dir_all(nf.join("holders/xt_state")).unwrap();
        fs::create_dir_all(nf.join("parameters")).unwrap();
        fs::write(nf.join("parameters/hashsize"), "65536\n").unwrap();
        fs::write(nf.join("parameters/acct"), "N\n").unwrap();
        fs::write(nf.join("initstate"), "live\n").unwrap();
        fs::write(nf.join("refcnt"), "3\n").unwrap();
        fs::create_dir_all(sys.join("module/tcp_cubic/parameters")).unwrap();
        let all = read_sys_modules(&sys).unwrap();
        assert_eq!(all.len(), 2);
        assert_eq!(all[0].initstate, Some(ModState::Live));
        assert_eq!(all[0].refcnt, Some(3));
        assert_eq!(all[0].holders, vec!["xt_state"]);
        assert_eq!(all[1].initstate, None);
        assert_eq!(
            sys_parameters(&sys, "nf_conntrack"),
            vec!["acct", "hashsize"]
        );
        assert!(sys_parameters(&sys, "nope").is_empty());
    }

    #[test]
    fn eperm_reasons() {
        let root = Some(0x000001ff_ffffffff_u64);
        let nocap = Some(0_u64);
        assert_eq!(
            decide_eperm("x", nocap, None, None, None),
            EpermReason::NotRoot
        );
        assert_eq!(
            decide_eperm("x", root, Some("1"), None, None),
            EpermReason::ModulesDisabled
        );
        assert_eq!(
            decide_eperm(
                "nf_conntrack",
                root,
                Some("0"),
                Some("quiet module_blacklist=foo,nf-conntrack"),
                None
            ),
            EpermReason::KernelBlacklist
        );
        assert_eq!(
            decide_eperm(
                "x",
                root,
                Some("0"),
                Some("module_blacklist=foo"),
                Some("none [integrity] confidentiality")
            ),
            EpermReason::Lockdown {
                mode: "integrity".into()
            }
        );
        assert_eq!(
            decide_eperm(
                "x",
                root,
                Some("0"),
                None,
                Some("[none] integrity confidentiality")
            ),
            EpermReason::Unknown
        );
    }

    #[test]
    fn module_directory_names() {
        let t = tempfile::tempdir().unwrap();
        fs::write(
            t.path().join("modules.dep"),
            "kernel/net/netfilter/xt_state.ko: kernel/net/netfilter/nf_conntrack.ko\nkernel/arch/x86/crypto/crc32c-intel.ko.xz:\n",
        )
        .unwrap();
        fs::write(
            t.path().join("modules.builtin"),
            "kernel/net/ipv4/tcp_cubic.ko\n",
        )
        .unwrap();
        assert_eq!(
            known_module_names(t.path()),
            vec!["crc32c_intel", "tcp_cubic", "xt_state"]
        );
    }

    #[test]
    fn netfilter_filter() {
        for n in [
            "nf_conntrack",
            "xt_state",
            "ipt_REJECT",
            "iptable_nat",
            "x_tables",
            "nft_ct",
            "ebtables",
            "nfnetlink",
        ] {
            assert!(is_netfilter(n), "{n}");
        }
        for n in ["tcp_cubic", "virtio_net", "ipv6", "bridge"] {
            assert!(!is_netfilter(n), "{n}");
        }
    }
}
