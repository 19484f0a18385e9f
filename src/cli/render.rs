//! Human-readable rendering (pure: reports in, text out).

use std::fmt::Write as _;

use super::status::StatusReport;
use crate::conntrack::set::SetReport;
use crate::conntrack::stats::Counters;
use crate::conntrack::{ConntrackStatus, Sourced};
use crate::tables::names::Names;
use crate::tables::{NftState, ShownTable, TablesReport};

/// Formats a byte count with a binary unit.
pub fn human_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

fn sourced(value: &Option<Sourced<u64>>, verbose: u8) -> String {
    match value {
        Some(v) if verbose > 0 => format!("{:<12} ({})", v.value, v.source.label()),
        Some(v) => v.value.to_string(),
        None => "-".into(),
    }
}

fn counters_line(counters: &Counters) -> String {
    counters
        .0
        .iter()
        .map(|(c, v)| format!("{}={v}", c.name()))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `nfkit conntrack`.
pub fn conntrack(out: &mut String, status: &ConntrackStatus, per_cpu: bool, verbose: u8) {
    if !status.present {
        let _ = writeln!(out, "conntrack: not present in this kernel");
        notes(out, &status.notes);
        return;
    }
    let max_text = match &status.max {
        Some(m) if m.value == 0 => "0 (no limit)".to_string(),
        _ => sourced(&status.max, verbose),
    };
    let _ = writeln!(out, "entries      {}", sourced(&status.entries, verbose));
    let _ = writeln!(out, "max          {max_text}");
    if let Some(usage) = status.usage_percent {
        let _ = writeln!(out, "usage        {usage:.2} %");
    }
    let _ = writeln!(out, "buckets      {}", sourced(&status.buckets, verbose));
    let _ = writeln!(out, "expect max   {}", sourced(&status.expect_max, verbose));
    if let Some(m) = &status.memory_estimate {
        let _ = writeln!(
            out,
            "memory       {} at max (estimate: {} B per entry, {})",
            human_bytes(m.bytes),
            m.entry_size.value,
            m.entry_size.source.label()
        );
    }
    if let Some(c) = &status.counters {
        let _ = writeln!(
            out,
            "counters     {} (sum of {} CPUs, {})",
            counters_line(&c.total),
            c.per_cpu.len(),
            c.source.label()
        );
        if per_cpu {
            for cpu in &c.per_cpu {
                let _ = writeln!(out, "  cpu={:<4} {}", cpu.cpu, counters_line(&cpu.counters));
            }
        }
    }
    notes(out, &status.notes);
}

fn notes(out: &mut String, notes: &[String]) {
    for note in notes {
        let _ = writeln!(out, "note: {note}");
    }
}

/// `nfkit conntrack set`.
pub fn set_report(out: &mut String, report: &SetReport) {
    for change in &report.changes {
        let line = match (change.changed, report.dry_run, change.after) {
            (false, _, _) => format!("{}: {} (unchanged)", change.key, change.before),
            (true, true, _) => format!(
                "{}: {} -> {} (dry run, nothing written)",
                change.key, change.before, change.expected
            ),
            (true, false, Some(after)) if after != change.requested => format!(
                "{}: {} -> {} (asked {}, the kernel holds {after})",
                change.key, change.before, after, change.requested
            ),
            (true, false, after) => format!(
                "{}: {} -> {}",
                change.key,
                change.before,
                after.map_or("?".into(), |a| a.to_string())
            ),
        };
        let _ = writeln!(out, "{line}");
    }
}

/// `nfkit tables`.
pub fn tables(out: &mut String, report: &TablesReport) {
    let _ = writeln!(out, "legacy (xtables)");
    for family in &report.legacy {
        let text = match &family.names {
            Names::Listed { tables } if tables.is_empty() => "(none)".to_string(),
            Names::Listed { tables } => tables.join(" "),
            Names::Unavailable => "(not in this kernel)".to_string(),
            Names::Unreadable { error } => format!("(unreadable: {})", shown(error)),
        };
        let _ = writeln!(out, "  {:<6} {text}", family.family.name());
    }
    let _ = writeln!(out, "nftables");
    match &report.nftables {
        NftState::Listed { tables } if tables.is_empty() => {
            let _ = writeln!(out, "  (none)");
        }
        NftState::Listed { tables } => {
            let _ = writeln!(
                out,
                "  {:<8} {:<24} {:>6}  FLAGS",
                "FAMILY", "TABLE", "CHAINS"
            );
            for t in tables {
                let flags = if t.flags.is_empty() {
                    "-".to_string()
                } else {
                    t.flags.join(",")
                };
                let _ = writeln!(
                    out,
                    "  {:<8} {:<24} {:>6}  {flags}",
                    t.family, t.name, t.chains
                );
            }
        }
        NftState::NotQueried { reason } => {
            let _ = writeln!(out, "  (not queried: {reason})");
        }
        NftState::Failed { error } => {
            let _ = writeln!(out, "  (failed: {})", shown(error));
        }
    }
    backends(out, &report.backends);
}

/// The backend lines of `tables` and `status`.
fn backends(out: &mut String, b: &crate::tables::backend::BackendReport) {
    use crate::tables::backend::{Backend, IpTablesState, TableUse};
    let name = |b: Backend| match b {
        Backend::Legacy => "legacy (x_tables)",
        Backend::Nft => "nft (iptables-nft)",
    };
    let list = |tables: &[TableUse]| {
        if tables.is_empty() {
            "(none)".to_string()
        } else {
            tables
                .iter()
                .map(|t| {
                    format!(
                        "{} {} ({} rules{})",
                        t.family,
                        t.table,
                        t.rules,
                        if t.populated { "" } else { ", empty" }
                    )
                })
                .collect::<Vec<_>>()
                .join(", ")
        }
    };
    let _ = writeln!(out, "iptables backends");
    let in_use = if b.in_use.is_empty() {
        "none (no rules in either)".to_string()
    } else {
        b.in_use
            .iter()
            .map(|&u| name(u))
            .collect::<Vec<_>>()
            .join(" + ")
    };
    let _ = writeln!(out, "  in use          {in_use}");
    let _ = writeln!(out, "  legacy tables   {}", list(&b.legacy_tables));
    let _ = writeln!(out, "  iptables-nft    {}", list(&b.iptables_nft_tables));
    let _ = writeln!(out, "  native nft      {}", list(&b.native_nft_tables));
    let ip_tables = match b.ip_tables {
        IpTablesState::Loaded => "loaded",
        IpTablesState::Builtin => "built in",
        IpTablesState::Absent => "absent",
    };
    let _ = writeln!(out, "  ip_tables       {ip_tables}");
    for k in &b.kubernetes {
        let _ = writeln!(
            out,
            "  kubernetes      {} in {} ({})",
            k.chain,
            k.table,
            name(k.backend)
        );
    }
    if let Some(c) = &b.conflict {
        let _ = writeln!(out, "  CONFLICT        {c}");
    }
    for n in &b.notes {
        let _ = writeln!(out, "  note: {n}");
    }
}

/// An error inside a report: its message, and its hint in parentheses.
fn shown(error: &crate::error::ErrorObject) -> String {
    match &error.hint {
        Some(h) => format!("{} (hint: {h})", error.message),
        None => error.message.clone(),
    }
}

/// `nfkit tables show`.
pub fn shown_table(out: &mut String, shown: &ShownTable) {
    match shown {
        ShownTable::Legacy {
            family,
            table,
            chains,
        } => {
            let _ = writeln!(out, "table {table} ({} legacy)", family.name());
            let _ = writeln!(out, "  {:<30} {:<8} {:>6}", "CHAIN", "POLICY", "RULES");
            for c in chains {
                let _ = writeln!(
                    out,
                    "  {:<30} {:<8} {:>6}",
                    c.name,
                    c.policy.as_deref().unwrap_or("-"),
                    c.rules
                );
            }
        }
        ShownTable::Nftables {
            family,
            table,
            chains,
        } => {
            let _ = writeln!(out, "table {family} {table} (nftables)");
            let _ = writeln!(
                out,
                "  {:<30} {:<8} {:<12} {:>9} {:<8} {:>6}",
                "CHAIN", "TYPE", "HOOK", "PRIORITY", "POLICY", "RULES"
            );
            for c in chains {
                let _ = writeln!(
                    out,
                    "  {:<30} {:<8} {:<12} {:>9} {:<8} {:>6}",
                    c.name,
                    c.chain_type.as_deref().unwrap_or("-"),
                    c.hook.as_deref().unwrap_or("-"),
                    c.priority.map_or("-".into(), |p| p.to_string()),
                    c.policy.as_deref().unwrap_or("-"),
                    c.rules
                );
            }
        }
    }
}

/// `nfkit status`.
pub fn status(out: &mut String, report: &StatusReport, verbose: u8) {
    let _ = writeln!(
        out,
        "kernel       {}",
        report.kernel_release.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(
        out,
        "modules      {}",
        if report.module_support {
            "loadable-module support"
        } else {
            "no loadable-module support (everything is built in)"
        }
    );
    let _ = writeln!(
        out,
        "libkmod      {}",
        if report.libkmod.loadable {
            format!(
                "{} (loaded by module commands)",
                report
                    .libkmod
                    .path
                    .as_deref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_default()
            )
        } else {
            format!(
                "not loadable ({}): module commands unavailable",
                report
                    .libkmod
                    .error
                    .as_ref()
                    .map_or("unknown", |e| e.message.as_str())
            )
        }
    );
    let netns = match report.network_namespace.initial {
        Some(true) => "initial network namespace",
        Some(false) => "non-initial network namespace (global limits are read-only here)",
        None => "network namespace unknown",
    };
    let _ = writeln!(out, "netns        {netns}");
    super::containment::render(out, &report.containment);
    confinement(out, &report.confinement, verbose);
    let _ = writeln!(out, "-- conntrack");
    conntrack(out, &report.conntrack, false, verbose);
    let _ = writeln!(out, "-- tables");
    tables(out, &report.tables);
}

/// The `seccomp` and `landlock` lines of `status`.
fn confinement(out: &mut String, c: &crate::confine::Confinement, verbose: u8) {
    use crate::confine::{LandlockState, SeccompState};
    let mode = match c.seccomp_mode {
        Some(m) => format!("kernel mode {m}"),
        None => "kernel mode unknown".to_string(),
    };
    let seccomp = match &c.seccomp {
        SeccompState::Filter { refused } if verbose > 0 => {
            format!("filter ({mode}): refuses {}", refused.join(", "))
        }
        SeccompState::Filter { .. } => {
            format!("filter ({mode}): no program or process can be started")
        }
        SeccompState::Unavailable { error } => {
            format!("NOT in force ({mode}): {}", error.message)
        }
        SeccompState::NotInstalled => format!("not installed ({mode})"),
    };
    let _ = writeln!(out, "seccomp      {seccomp}");
    let landlock = match &c.landlock {
        LandlockState::Enforced {
            abi,
            complete,
            writable,
        } => {
            let part = if *complete {
                ""
            } else {
                ", partly (older ABI)"
            };
            let paths = if writable.is_empty() {
                "no writes".to_string()
            } else {
                let list: Vec<String> = writable
                    .iter()
                    .map(|g| g.path.display().to_string())
                    .collect();
                format!("writes only beneath {}", list.join(", "))
            };
            format!("ABI {abi}{part}: {paths}, no execute")
        }
        LandlockState::Unavailable { reason } => {
            format!("NOT in force: Landlock is {reason} (writes not confined by the kernel)")
        }
        LandlockState::NotApplied => "not applied".to_string(),
    };
    let _ = writeln!(out, "landlock     {landlock}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bytes_are_human() {
        assert_eq!(human_bytes(0), "0 B");
        assert_eq!(human_bytes(1023), "1023 B");
        assert_eq!(human_bytes(1024), "1.0 KiB");
        assert_eq!(human_bytes(69_206_016), "66.0 MiB");
    }
}
