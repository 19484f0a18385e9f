//! Netfilter tables: legacy xtables names and chains, nftables tables and
//! chains. Reading never creates a table: legacy tables are queried only
//! when the kernel's names file already lists them.

pub mod backend;
pub mod names;
pub mod nft;
pub mod nft_helpers;
pub mod xtables;

use serde::Serialize;

use crate::netlink::{self, SharedSocket};
use crate::system::Host;
use names::{Names, XtFamily};
use nft::{NftChain, NftTable};
use xtables::XtChain;

/// Everything `nfkit tables` reports.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TablesReport {
    /// Legacy table names per family (from `/proc/net/*_tables_names`).
    pub legacy: Vec<LegacyFamily>,
    /// nftables tables, or why they are unknown.
    pub nftables: NftState,
    /// Which iptables backend is in use, Kubernetes marker chains, conflicts.
    pub backends: backend::BackendReport,
}

/// One legacy family's names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LegacyFamily {
    /// `ipv4`, `ipv6` or `arp`.
    pub family: XtFamily,
    /// The names, or why they are unknown.
    #[serde(flatten)]
    pub names: Names,
}

/// nftables state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum NftState {
    /// The dump succeeded.
    Listed { tables: Vec<NftTable> },
    /// Not asked (offline, or nf_tables not loaded and not to be autoloaded).
    NotQueried { reason: String },
    /// The dump failed.
    Failed { error: crate::error::ErrorObject },
}

/// Reads table names of every family and classifies the backends (the nft
/// dump through `socket`).
pub fn read_tables(host: &Host, socket: &mut SharedSocket) -> TablesReport {
    let (legacy, nftables) = read_names(host, socket);
    let mut report = TablesReport {
        legacy,
        nftables,
        backends: backend::classify(
            &backend::Observed::default(),
            backend::IpTablesState::Absent,
        ),
    };
    report.backends = backend::read(host, &report, socket);
    report
}

/// Table names of every family (legacy names files, nft table dump).
fn read_names(host: &Host, socket: &mut SharedSocket) -> (Vec<LegacyFamily>, NftState) {
    let legacy = XtFamily::ALL
        .iter()
        .map(|&family| LegacyFamily {
            family,
            names: names::read_names(host, family),
        })
        .collect();
    let nftables = if host.offline {
        NftState::NotQueried {
            reason: "offline (--root): the running kernel is not asked".into(),
        }
    } else if !host.component_present("nf_tables") {
        NftState::NotQueried {
            reason: "nf_tables is not loaded (not asked, so that reading does not load it)".into(),
        }
    } else {
        match socket
            .get("list nftables tables")
            .and_then(nft::list_tables)
        {
            Ok(tables) => NftState::Listed { tables },
            Err(e) => NftState::Failed {
                error: crate::error::ErrorObject::of(&e),
            },
        }
    };
    (legacy, nftables)
}

/// Which kind of table `show` found.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum ShownTable {
    /// A legacy xtables table.
    Legacy {
        family: XtFamily,
        table: String,
        chains: Vec<XtChain>,
    },
    /// An nftables table.
    Nftables {
        family: String,
        table: String,
        chains: Vec<NftChain>,
    },
}

/// Errors of `tables show`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShowError {
    /// No table of that name exists (nothing was created).
    #[error("show table {table:?}: no such table{}", existing_note(.existing))]
    NotFound {
        table: String,
        existing: Vec<String>,
    },
    /// The name exists in several families.
    #[error("show table {table:?}: it exists in several families ({}); pick one with --family", .families.join(", "))]
    Ambiguous {
        table: String,
        families: Vec<String>,
    },
    /// Unknown `--family`.
    #[error("show table: unknown family {0:?}")]
    UnknownFamily(String),
    /// `--root` was given.
    #[error("show table {0:?}: chains are read from the running kernel, which --root does not use")]
    Offline(String),
    /// Reading a legacy table failed.
    #[error(transparent)]
    Legacy(#[from] xtables::ReadError),
    /// Reading an nftables table failed.
    #[error(transparent)]
    Netlink(#[from] netlink::Error),
}

fn existing_note(existing: &[String]) -> String {
    if existing.is_empty() {
        " (no tables exist in this network namespace)".into()
    } else {
        format!(" (existing: {})", existing.join(", "))
    }
}

impl crate::error::Hint for ShowError {
    /// A hint for the user.
    fn hint(&self) -> Option<std::borrow::Cow<'static, str>> {
        match self {
            ShowError::NotFound { .. } => Some(
                "nfkit never creates tables: legacy tables appear once a rule \
                 tool (iptables-legacy) has used them",
            ),
            ShowError::UnknownFamily(_) => Some(
                "families: ipv4, ipv6, arp (legacy); inet, ip, ip6, arp, bridge, netdev (nftables)",
            ),
            // Transparent: the same layer.
            ShowError::Legacy(e) => return e.hint(),
            ShowError::Netlink(e) => return e.hint(),
            _ => None,
        }
        .map(std::borrow::Cow::Borrowed)
    }
}

/// A `--family` value: legacy or nftables.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FamilyFilter {
    /// A legacy family.
    Legacy(XtFamily),
    /// An nftables family number.
    Nft(u8),
}

/// Parses `--family`: `ipv4`/`ipv6`/`arp` pick legacy tables (as in the
/// names files); `inet`, `ip`, `ip6`, `bridge`, `netdev` and `nft-arp` pick
/// nftables tables.
pub fn parse_family(name: &str) -> Result<FamilyFilter, ShowError> {
    Ok(match name {
        "ipv4" | "iptables" => FamilyFilter::Legacy(XtFamily::Ipv4),
        "ipv6" | "ip6tables" => FamilyFilter::Legacy(XtFamily::Ipv6),
        "arp" | "arptables" => FamilyFilter::Legacy(XtFamily::Arp),
        "nft-arp" => FamilyFilter::Nft(3),
        other => FamilyFilter::Nft(
            nft::family_number(other).ok_or_else(|| ShowError::UnknownFamily(other.to_string()))?,
        ),
    })
}

/// Shows the chains of an existing table. Legacy tables are looked up in the
/// names files first; nftables tables in a table dump. Nothing is created.
pub fn show_table(
    host: &Host,
    table: &str,
    family: Option<FamilyFilter>,
) -> Result<ShownTable, ShowError> {
    if host.offline {
        return Err(ShowError::Offline(table.to_string()));
    }
    let mut socket = SharedSocket::default();
    let (legacy, nftables) = read_names(host, &mut socket);
    let mut candidates: Vec<(String, FamilyFilter)> = Vec::new();
    let mut existing = Vec::new();
    for legacy in &legacy {
        if let Names::Listed { tables } = &legacy.names {
            for t in tables {
                existing.push(format!("{} {t}", legacy.family.name()));
                if t == table && family.is_none_or(|f| f == FamilyFilter::Legacy(legacy.family)) {
                    candidates.push((
                        legacy.family.name().to_string(),
                        FamilyFilter::Legacy(legacy.family),
                    ));
                }
            }
        }
    }
    if let NftState::Listed { tables } = &nftables {
        for t in tables {
            existing.push(format!("{} {}", t.family, t.name));
            let number = nft::family_number(&t.family).unwrap_or(0);
            if t.name == table && family.is_none_or(|f| f == FamilyFilter::Nft(number)) {
                candidates.push((format!("nft {}", t.family), FamilyFilter::Nft(number)));
            }
        }
    }
    match candidates.len() {
        0 => Err(ShowError::NotFound {
            table: table.to_string(),
            existing,
        }),
        1 => match candidates[0].1 {
            FamilyFilter::Legacy(f) => Ok(ShownTable::Legacy {
                family: f,
                table: table.to_string(),
                chains: xtables::read_chains(f, table)?,
            }),
            FamilyFilter::Nft(number) => Ok(ShownTable::Nftables {
                family: nft::family_name(number),
                table: table.to_string(),
                chains: nft::list_chains(socket.get("list nftables chains")?, number, table)?,
            }),
        },
        _ => Err(ShowError::Ambiguous {
            table: table.to_string(),
            families: candidates.into_iter().map(|(n, _)| n).collect(),
        }),
    }
}
