//! Which iptables backend is in use: legacy x_tables, nftables through
//! iptables-nft, native nftables; the Kubernetes marker chains; and the
//! conflict when both iptables backends hold rules (rules in one are
//! invisible to the other's tools). Classification is pure ([`classify`]);
//! [`read`] gathers the chains.
//!
//! Recognising iptables-nft: it creates tables named like the legacy ones
//! (`filter`, `nat`, `mangle`, `raw`, `security`) in the `ip`/`ip6`
//! families (`arp` `filter` for arptables-nft, `bridge` `filter`/`nat`/
//! `broute` for ebtables-nft), whose base chains are named after their hook
//! in capitals (`INPUT` on hook input, ...), and user chains in capitals.
//! Native nft tables use any name (`inet filter` with `chain input` is
//! native). Kubernetes (kubelet, kube-proxy) creates `KUBE-IPTABLES-HINT`
//! in `mangle` with the backend it uses and `KUBE-KUBELET-CANARY` in
//! `mangle`, `nat` and `filter`.

use serde::Serialize;

use super::names::{Names, XtFamily};
use super::nft::{NftChain, NftTable};
use super::xtables::XtChain;
use super::{NftState, TablesReport};
use crate::netlink::SharedSocket;
use crate::system::Host;

/// The Kubernetes marker chains.
pub const KUBE_CHAINS: [&str; 2] = ["KUBE-IPTABLES-HINT", "KUBE-KUBELET-CANARY"];

/// An iptables backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Backend {
    /// x_tables (`iptables-legacy`).
    Legacy,
    /// nf_tables through `iptables-nft`.
    Nft,
}

/// Whether the `ip_tables` (x_tables IPv4) component is there.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum IpTablesState {
    /// A loaded module.
    Loaded,
    /// Built into the kernel.
    Builtin,
    /// Not in the kernel (not loaded, or not built).
    Absent,
}

/// One table and how full it is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TableUse {
    /// `ipv4`, `ipv6`, `arp` (legacy) or the nft family.
    pub family: String,
    /// Table name.
    pub table: String,
    /// Chains (built-in and user).
    pub chains: usize,
    /// Rules in all chains.
    pub rules: usize,
    /// Rules, user chains, or a built-in policy other than accept.
    pub populated: bool,
}

/// A Kubernetes marker chain found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct KubeChain {
    /// `KUBE-IPTABLES-HINT` or `KUBE-KUBELET-CANARY`.
    pub chain: String,
    /// The backend whose table holds it.
    pub backend: Backend,
    /// `ipv4 mangle`, `ip6 nat`, ...
    pub table: String,
}

/// What `status` and `tables` say about backends.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BackendReport {
    /// Backends holding rules (populated tables), legacy first.
    pub in_use: Vec<Backend>,
    /// Legacy tables instantiated in this namespace.
    pub legacy_tables: Vec<TableUse>,
    /// nft tables that look like iptables-nft's.
    pub iptables_nft_tables: Vec<TableUse>,
    /// Other (native) nft tables.
    pub native_nft_tables: Vec<TableUse>,
    /// Kubernetes marker chains.
    pub kubernetes: Vec<KubeChain>,
    /// Both iptables backends populated: what is wrong.
    pub conflict: Option<String>,
    /// The `ip_tables` component.
    pub ip_tables: IpTablesState,
    /// Tables whose chains could not be read.
    pub notes: Vec<String>,
}

const IPTABLES_TABLES: [&str; 6] = ["filter", "nat", "mangle", "raw", "security", "broute"];

fn is_capitals(name: &str) -> bool {
    !name.is_empty() && name.bytes().all(|b| !b.is_ascii_lowercase())
}

/// Whether an nft table has iptables-nft's layout (pure).
pub fn looks_like_iptables_nft(family: &str, table: &str, chains: &[NftChain]) -> bool {
    let family_fits = matches!(family, "ip" | "ip6" | "arp" | "bridge");
    family_fits
        && IPTABLES_TABLES.contains(&table)
        && !chains.is_empty()
        && chains.iter().all(|c| match &c.hook {
            Some(hook) => c.name == hook.to_ascii_uppercase(),
            None => is_capitals(&c.name),
        })
}

fn legacy_use(family: XtFamily, table: &str, chains: &[XtChain]) -> TableUse {
    TableUse {
        family: family.name().to_string(),
        table: table.to_string(),
        chains: chains.len(),
        rules: chains.iter().map(|c| c.rules).sum(),
        populated: chains.iter().any(|c| {
            c.rules > 0 || !c.builtin || c.policy.as_deref().is_some_and(|p| p != "ACCEPT")
        }),
    }
}

fn nft_use(table: &NftTable, chains: &[NftChain]) -> TableUse {
    TableUse {
        family: table.family.clone(),
        table: table.name.clone(),
        chains: chains.len(),
        rules: chains.iter().map(|c| c.rules).sum(),
        populated: chains.iter().any(|c| {
            c.rules > 0 || c.hook.is_none() || c.policy.as_deref().is_some_and(|p| p != "accept")
        }),
    }
}

/// Tables with their chains, as read.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Observed {
    /// Legacy tables: family, name, chains.
    pub legacy: Vec<(XtFamily, String, Vec<XtChain>)>,
    /// nft tables with their chains.
    pub nft: Vec<(NftTable, Vec<NftChain>)>,
    /// Read failures.
    pub notes: Vec<String>,
}

/// Classifies what was read (pure).
pub fn classify(observed: &Observed, ip_tables: IpTablesState) -> BackendReport {
    let mut kubernetes = Vec::new();
    let mut legacy_tables = Vec::new();
    for (family, table, chains) in &observed.legacy {
        for c in chains
            .iter()
            .filter(|c| KUBE_CHAINS.contains(&c.name.as_str()))
        {
            kubernetes.push(KubeChain {
                chain: c.name.clone(),
                backend: Backend::Legacy,
                table: format!("{} {table}", family.name()),
            });
        }
        legacy_tables.push(legacy_use(*family, table, chains));
    }
    let mut iptables_nft_tables = Vec::new();
    let mut native_nft_tables = Vec::new();
    for (table, chains) in &observed.nft {
        if looks_like_iptables_nft(&table.family, &table.name, chains) {
            for c in chains
                .iter()
                .filter(|c| KUBE_CHAINS.contains(&c.name.as_str()))
            {
                kubernetes.push(KubeChain {
                    chain: c.name.clone(),
                    backend: Backend::Nft,
                    table: format!("{} {}", table.family, table.name),
                });
            }
            iptables_nft_tables.push(nft_use(table, chains));
        } else {
            native_nft_tables.push(nft_use(table, chains));
        }
    }
    let legacy_populated: Vec<String> = legacy_tables
        .iter()
        .filter(|t| t.populated)
        .map(|t| format!("{} {}", t.family, t.table))
        .collect();
    let nft_populated: Vec<String> = iptables_nft_tables
        .iter()
        .filter(|t| t.populated)
        .map(|t| format!("{} {}", t.family, t.table))
        .collect();
    let mut in_use = Vec::new();
    if !legacy_populated.is_empty() {
        in_use.push(Backend::Legacy);
    }
    if !nft_populated.is_empty() {
        in_use.push(Backend::Nft);
    }
    let conflict = (in_use.len() == 2).then(|| {
        format!(
            "both iptables backends hold rules: legacy ({}) and iptables-nft ({}); \
             iptables-legacy does not show the nft rules and iptables-nft not the legacy \
             ones, and both are evaluated: use one backend (update-alternatives --config \
             iptables) and flush the other",
            legacy_populated.join(", "),
            nft_populated.join(", ")
        )
    });
    BackendReport {
        in_use,
        legacy_tables,
        iptables_nft_tables,
        native_nft_tables,
        kubernetes,
        conflict,
        ip_tables,
        notes: observed.notes.clone(),
    }
}

/// `ip_tables`: loaded, built in, or absent. `ipv4_names` is what the
/// caller already read of `/proc/net/ip_tables_names` (`None`: not read).
pub fn ip_tables_state(host: &Host, ipv4_names: Option<&Names>) -> IpTablesState {
    let module = host.sys("module/ip_tables");
    if module.join("initstate").exists() {
        return IpTablesState::Loaded;
    }
    let names_file = match ipv4_names {
        Some(Names::Unavailable) => false,
        Some(Names::Listed { .. } | Names::Unreadable { .. }) => true,
        None => host.proc("net/ip_tables_names").exists(),
    };
    if names_file || module.is_dir() {
        // Present without a module's initstate: built in (a built-in
        // ip_tables has /proc/net/ip_tables_names, and /sys/module/ip_tables
        // only when it has parameters).
        return IpTablesState::Builtin;
    }
    IpTablesState::Absent
}

/// Reads the chains of every table in `tables` and classifies them. Offline
/// (`--root`), legacy chains are not read (they come from the running
/// kernel); the names still count as instantiated tables.
pub fn read(host: &Host, tables: &TablesReport, socket: &mut SharedSocket) -> BackendReport {
    let mut observed = Observed::default();
    for family in &tables.legacy {
        let Names::Listed { tables: names } = &family.names else {
            continue;
        };
        for name in names {
            let chains = if host.offline {
                Vec::new()
            } else {
                match super::xtables::read_chains(family.family, name) {
                    Ok(chains) => chains,
                    Err(e) => {
                        observed.notes.push(format!(
                            "{} {name}: {}",
                            family.family.name(),
                            crate::error::message(&e)
                        ));
                        Vec::new()
                    }
                }
            };
            observed.legacy.push((family.family, name.clone(), chains));
        }
    }
    if let NftState::Listed { tables: nft_tables } = &tables.nftables
        && !nft_tables.is_empty()
    {
        match socket.get("list nftables chains") {
            Ok(socket) => {
                for table in nft_tables {
                    let number = super::nft::family_number(&table.family).unwrap_or(0);
                    match super::nft::list_chains(socket, number, &table.name) {
                        Ok(chains) => observed.nft.push((table.clone(), chains)),
                        Err(e) => observed.notes.push(format!(
                            "{} {}: {}",
                            table.family,
                            table.name,
                            crate::error::message(&e)
                        )),
                    }
                }
            }
            Err(e) => observed.notes.push(crate::error::message(&e)),
        }
    }
    let ipv4_names = tables
        .legacy
        .iter()
        .find(|f| f.family == XtFamily::Ipv4)
        .map(|f| &f.names);
    classify(&observed, ip_tables_state(host, ipv4_names))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nft_chain(name: &str, hook: Option<&str>, rules: usize) -> NftChain {
        NftChain {
            name: name.into(),
            hook: hook.map(str::to_string),
            priority: hook.map(|_| 0),
            chain_type: hook.map(|_| "filter".to_string()),
            policy: hook.map(|_| "accept".to_string()),
            rules,
        }
    }

    fn xt_chain(name: &str, builtin: bool, rules: usize) -> XtChain {
        XtChain {
            name: name.into(),
            builtin,
            policy: builtin.then(|| "ACCEPT".to_string()),
            rules,
        }
    }

    fn table(family: &str, name: &str) -> NftTable {
        NftTable {
            family: family.into(),
            name: name.into(),
            chains: 0,
            flags: vec![],
            handle: Some(1),
        }
    }

    #[test]
    fn iptables_nft_layout_is_recognised() {
        let ipt = [
            nft_chain("INPUT", Some("input"), 1),
            nft_chain("KUBE-X", None, 0),
        ];
        assert!(looks_like_iptables_nft("ip", "filter", &ipt));
        assert!(looks_like_iptables_nft("ip6", "filter", &ipt));
        // Native: lower-case base chains, inet family, other table names.
        let native = [nft_chain("input", Some("input"), 1)];
        assert!(!looks_like_iptables_nft("ip", "filter", &native));
        assert!(!looks_like_iptables_nft("inet", "filter", &ipt));
        assert!(!looks_like_iptables_nft("ip", "fw", &ipt));
        assert!(!looks_like_iptables_nft("ip", "filter", &[]));
        // A user chain in lower case is not iptables-nft's.
        let mixed = [
            nft_chain("INPUT", Some("input"), 0),
            nft_chain("mine", None, 0),
        ];
        assert!(!looks_like_iptables_nft("ip", "filter", &mixed));
    }

    #[test]
    fn both_populated_is_a_conflict_and_kube_chains_are_found() {
        let observed = Observed {
            legacy: vec![(
                XtFamily::Ipv4,
                "filter".into(),
                vec![xt_chain("INPUT", true, 2), xt_chain("OUTPUT", true, 0)],
            )],
            nft: vec![
                (
                    table("ip", "mangle"),
                    vec![nft_chain("KUBE-IPTABLES-HINT", None, 0)],
                ),
                (
                    table("inet", "fw"),
                    vec![nft_chain("input", Some("input"), 3)],
                ),
            ],
            notes: vec![],
        };
        let r = classify(&observed, IpTablesState::Builtin);
        assert_eq!(r.in_use, vec![Backend::Legacy, Backend::Nft]);
        let conflict = r.conflict.unwrap();
        assert!(
            conflict.contains("ipv4 filter") && conflict.contains("ip mangle"),
            "{conflict}"
        );
        assert_eq!(
            r.kubernetes,
            vec![KubeChain {
                chain: "KUBE-IPTABLES-HINT".into(),
                backend: Backend::Nft,
                table: "ip mangle".into()
            }]
        );
        assert_eq!(r.native_nft_tables.len(), 1);
        assert_eq!(r.native_nft_tables[0].rules, 3);
    }

    #[test]
    fn empty_tables_are_instantiated_but_not_in_use() {
        // iptables-legacy -L instantiates filter with empty ACCEPT chains.
        let observed = Observed {
            legacy: vec![(
                XtFamily::Ipv4,
                "filter".into(),
                vec![xt_chain("INPUT", true, 0)],
            )],
            nft: vec![(
                table("ip", "filter"),
                vec![nft_chain("INPUT", Some("input"), 0)],
            )],
            notes: vec![],
        };
        let r = classify(&observed, IpTablesState::Loaded);
        assert!(r.in_use.is_empty() && r.conflict.is_none());
        assert_eq!(r.legacy_tables.len(), 1);
        assert!(!r.legacy_tables[0].populated);
        // A DROP policy alone counts.
        let mut drop = observed.clone();
        drop.legacy[0].2[0].policy = Some("DROP".into());
        assert_eq!(
            classify(&drop, IpTablesState::Loaded).in_use,
            vec![Backend::Legacy]
        );
        // Native nft rules never make iptables-nft "in use".
        let native = Observed {
            nft: vec![(
                table("inet", "filter"),
                vec![nft_chain("input", Some("input"), 5)],
            )],
            ..Observed::default()
        };
        assert!(classify(&native, IpTablesState::Absent).in_use.is_empty());
    }

    /// Every shape a tree can have for the three facts (names file absent,
    /// a file or unreadable; /sys/module/ip_tables absent, a directory, or
    /// with `initstate`): the state from the names the caller read equals
    /// the one looked up, and follows the kernel's rule.
    #[test]
    fn ip_tables_state_agrees_on_every_tree_shape() {
        for names in ["absent", "file", "unreadable"] {
            for module in ["absent", "dir", "initstate"] {
                let dir = tempfile::tempdir().unwrap();
                let net = dir.path().join("proc/net");
                std::fs::create_dir_all(&net).unwrap();
                match names {
                    "file" => std::fs::write(net.join("ip_tables_names"), "filter\n").unwrap(),
                    "unreadable" => std::fs::create_dir(net.join("ip_tables_names")).unwrap(),
                    _ => {}
                }
                let sys = dir.path().join("sys/module/ip_tables");
                if module != "absent" {
                    std::fs::create_dir_all(&sys).unwrap();
                }
                if module == "initstate" {
                    std::fs::write(sys.join("initstate"), "live\n").unwrap();
                }
                let host = Host::offline(dir.path());
                let read = super::super::names::read_names(&host, XtFamily::Ipv4);
                let given = ip_tables_state(&host, Some(&read));
                let ctx = format!("names {names}, module {module}: {read:?}");
                assert_eq!(given, ip_tables_state(&host, None), "{ctx}");
                let want = match (names, module) {
                    (_, "initstate") => IpTablesState::Loaded,
                    ("absent", "absent") => IpTablesState::Absent,
                    _ => IpTablesState::Builtin,
                };
                assert_eq!(given, want, "{ctx}");
            }
        }
    }

    #[test]
    fn ip_tables_state_from_the_tree() {
        let dir = tempfile::tempdir().unwrap();
        let host = Host::offline(dir.path());
        // The state from the names the caller read equals the one looked up.
        let both = |host: &Host| {
            let names = super::super::names::read_names(host, XtFamily::Ipv4);
            let given = ip_tables_state(host, Some(&names));
            assert_eq!(given, ip_tables_state(host, None), "{names:?}");
            given
        };
        assert_eq!(both(&host), IpTablesState::Absent);
        // Parameters only (a built-in module with a /sys/module entry).
        std::fs::create_dir_all(dir.path().join("sys/module/ip_tables")).unwrap();
        assert_eq!(both(&host), IpTablesState::Builtin);
        std::fs::remove_dir(dir.path().join("sys/module/ip_tables")).unwrap();
        std::fs::create_dir_all(dir.path().join("proc/net")).unwrap();
        std::fs::write(dir.path().join("proc/net/ip_tables_names"), "").unwrap();
        assert_eq!(both(&host), IpTablesState::Builtin);
        std::fs::create_dir_all(dir.path().join("sys/module/ip_tables")).unwrap();
        std::fs::write(dir.path().join("sys/module/ip_tables/initstate"), "live\n").unwrap();
        assert_eq!(both(&host), IpTablesState::Loaded);
        // Unreadable names (a directory in its place) still mean present.
        std::fs::remove_dir_all(dir.path().join("sys/module/ip_tables")).unwrap();
        std::fs::remove_file(dir.path().join("proc/net/ip_tables_names")).unwrap();
        std::fs::create_dir(dir.path().join("proc/net/ip_tables_names")).unwrap();
        assert_eq!(both(&host), IpTablesState::Builtin);
    }
}
