//! `nfkit metrics`: conntrack, module and drift figures in the Prometheus
//! text format.
//!
//! - [`render`]: the exposition format (pure);
//! - [`families`]: which metrics a [`MetricsReport`] becomes (pure; names
//!   compatible with node_exporter's conntrack collector first);
//! - [`netns`]: the per-namespace counts (`--all-netns`: I/O, `setns` in a
//!   thread);
//! - [`textfile`]: the atomic write for node_exporter's textfile collector.

pub mod netns;
pub mod render;
pub mod textfile;

use serde::Serialize;

use crate::conntrack::ConntrackStatus;
use crate::conntrack::stats::CpuCounter;
use render::{Family, Kind, Sample};

/// One kernel module's presence.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModuleGauge {
    /// Module name.
    pub module: String,
    /// `live`, `builtin`, `coming`, `going`, `not_loaded`.
    pub state: crate::modules::ModState,
}

/// The desired-state drift (`nfkit verify`), when nfkit.toml exists.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum VerifyGauge {
    /// No nfkit.toml: nothing to compare.
    NoDesiredState,
    /// Verified.
    Verified {
        /// Whether desired, running and next boot agree.
        ok: bool,
        /// Rows that differ.
        differing: usize,
        /// Rows checked.
        rows: usize,
        /// Configuration problems found.
        problems: usize,
    },
    /// nfkit.toml could not be read or verified.
    Failed {
        /// Why.
        error: crate::error::ErrorObject,
    },
}

/// Everything `nfkit metrics` reports (its `--json` form).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct MetricsReport {
    /// The conntrack figures of nfkit's own network namespace.
    pub conntrack: ConntrackStatus,
    /// Per-namespace entry counts (`--all-netns` only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub namespaces: Option<Vec<netns::NetnsCount>>,
    /// Netfilter modules in the kernel, and desired ones that are not.
    pub modules: Vec<ModuleGauge>,
    /// Desired-state drift.
    pub verify: VerifyGauge,
}

/// The counters node_exporter exports as `node_nf_conntrack_stat_NAME`
/// (read by it from `/proc/net/stat/nf_conntrack`).
pub const NODE_EXPORTER_STATS: [(&str, CpuCounter); 8] = [
    ("found", CpuCounter::Found),
    ("invalid", CpuCounter::Invalid),
    ("ignore", CpuCounter::Ignore),
    ("insert", CpuCounter::Insert),
    ("insert_failed", CpuCounter::InsertFailed),
    ("drop", CpuCounter::Drop),
    ("early_drop", CpuCounter::EarlyDrop),
    ("search_restart", CpuCounter::SearchRestart),
];

fn gauge(name: &str, help: &str, value: u64) -> Family {
    Family::new(name, Kind::Gauge, help).with(Sample::new(value as f64))
}

/// The metric families of a report, in output order (pure).
pub fn families(report: &MetricsReport) -> Vec<Family> {
    let ct = &report.conntrack;
    let mut out = Vec::new();
    if let Some(entries) = &ct.entries {
        out.push(gauge(
            "node_nf_conntrack_entries",
            "Number of currently allocated flow entries for connection tracking.",
            entries.value,
        ));
    }
    if let Some(max) = &ct.max {
        out.push(gauge(
            "node_nf_conntrack_entries_limit",
            "Maximum size of connection tracking table.",
            max.value,
        ));
    }
    if let Some(counters) = &ct.counters {
        for (name, counter) in NODE_EXPORTER_STATS {
            // Counters the kernel no longer keeps (ignore, since 5.x) are
            // 0, as /proc/net/stat/nf_conntrack prints them.
            let value = counters.total.get(counter).unwrap_or(0);
            out.push(gauge(
                &format!("node_nf_conntrack_stat_{name}"),
                &format!("Conntrack statistic {name}, summed over all CPUs."),
                value,
            ));
        }
        let mut per_cpu = Family::new(
            "nfkit_conntrack_stat_total",
            Kind::Counter,
            "Conntrack per-CPU statistics since boot (ctnetlink or /proc/net/stat/nf_conntrack).",
        );
        for cpu in &counters.per_cpu {
            for (counter, value) in &cpu.counters.0 {
                per_cpu.push(
                    Sample::new(*value as f64)
                        .label("cpu", cpu.cpu.to_string())
                        .label("stat", counter.name()),
                );
            }
        }
        out.push(per_cpu);
    }
    let mut info = Family::new(
        "nfkit_conntrack_info",
        Kind::Gauge,
        "Where the conntrack figures came from (always 1).",
    );
    if ct.present {
        let source = |s: Option<crate::conntrack::Source>| s.map(|s| s.label()).unwrap_or("none");
        info.push(
            Sample::new(1.0)
                .label(
                    "entries_source",
                    source(ct.entries.as_ref().map(|e| e.source)),
                )
                .label(
                    "counters_source",
                    source(ct.counters.as_ref().map(|c| c.source)),
                ),
        );
    }
    out.push(gauge(
        "nfkit_conntrack_present",
        "Whether connection tracking is present in this kernel.",
        u64::from(ct.present),
    ));
    out.push(info);
    if let Some(buckets) = &ct.buckets {
        out.push(gauge(
            "nfkit_conntrack_buckets",
            "Conntrack hash table buckets (nf_conntrack_buckets, module parameter hashsize).",
            buckets.value,
        ));
    }
    if let Some(expect_max) = &ct.expect_max {
        out.push(gauge(
            "nfkit_conntrack_expect_max",
            "Maximum conntrack expectations (nf_conntrack_expect_max).",
            expect_max.value,
        ));
    }
    if let Some(memory) = &ct.memory_estimate {
        out.push(gauge(
            "nfkit_conntrack_memory_estimate_bytes",
            "Memory the conntrack table can use at its maximum: max x entry size + buckets x 8.",
            memory.bytes,
        ));
        out.push(
            Family::new(
                "nfkit_conntrack_entry_size_bytes",
                Kind::Gauge,
                "Size of one conntrack entry (slab object), and where it came from.",
            )
            .with(
                Sample::new(f64::from(memory.entry_size.value))
                    .label("source", memory.entry_size.source.label()),
            ),
        );
    }
    if let Some(namespaces) = &report.namespaces {
        let mut entries = Family::new(
            "nfkit_netns_conntrack_entries",
            Kind::Gauge,
            "Conntrack entries per network namespace (inode of the namespace, names from /run/netns).",
        );
        let mut up = Family::new(
            "nfkit_netns_up",
            Kind::Gauge,
            "Whether the namespace's conntrack count could be read.",
        );
        for ns in namespaces {
            let sample = |v: f64| {
                Sample::new(v)
                    .label("netns_inode", ns.inode.to_string())
                    .label("netns_name", ns.names.join(","))
            };
            if let Some(count) = ns.entries {
                entries.push(sample(count as f64));
            }
            up.push(sample(if ns.entries.is_some() { 1.0 } else { 0.0 }));
        }
        out.push(entries);
        out.push(up);
    }
    let mut modules = Family::new(
        "nfkit_module_loaded",
        Kind::Gauge,
        "Whether a netfilter (or desired) module is in the kernel: 1 loaded or built in, 0 not.",
    );
    for m in &report.modules {
        modules.push(
            Sample::new(
                if m.state.is_loaded() || m.state == crate::modules::ModState::Builtin {
                    1.0
                } else {
                    0.0
                },
            )
            .label("module", m.module.clone())
            .label("state", m.state.as_str()),
        );
    }
    out.push(modules);
    out.push(gauge(
        "nfkit_desired_state_present",
        "Whether nfkit.toml exists (the drift gauges need it).",
        u64::from(!matches!(report.verify, VerifyGauge::NoDesiredState)),
    ));
    match &report.verify {
        VerifyGauge::Verified {
            ok,
            differing,
            rows,
            problems,
        } => {
            out.push(gauge(
                "nfkit_verify_ok",
                "Whether desired state, running kernel and next boot agree (nfkit verify exit 0).",
                u64::from(*ok),
            ));
            out.push(gauge(
                "nfkit_verify_differing_items",
                "Desired items whose running or next-boot value differs.",
                *differing as u64,
            ));
            out.push(gauge(
                "nfkit_verify_items",
                "Desired items checked by nfkit verify.",
                *rows as u64,
            ));
            out.push(gauge(
                "nfkit_verify_problems",
                "Configuration problems nfkit verify found.",
                *problems as u64,
            ));
        }
        VerifyGauge::Failed { .. } => out.push(gauge(
            "nfkit_verify_ok",
            "Whether desired state, running kernel and next boot agree (nfkit verify exit 0).",
            0,
        )),
        VerifyGauge::NoDesiredState => {}
    }
    out
}

/// The whole exposition text of a report.
pub fn exposition(report: &MetricsReport) -> String {
    render::render(&families(report))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::stats::{Counters, CpuStats};
    use crate::conntrack::{CounterReport, MemoryEstimate, Source, Sourced};
    use crate::modules::ModState;

    fn sourced(value: u64, source: Source) -> Option<Sourced<u64>> {
        Some(Sourced { value, source })
    }

    fn report() -> MetricsReport {
        let cpu = |cpu, found, insert| CpuStats {
            cpu,
            counters: Counters(vec![
                (CpuCounter::Found, found),
                (CpuCounter::Insert, insert),
                (CpuCounter::Drop, 1),
            ]),
        };
        let per_cpu = vec![cpu(0, 2, 5), cpu(1, 3, 2)];
        MetricsReport {
            conntrack: ConntrackStatus {
                present: true,
                entries: sourced(7, Source::Netlink),
                max: sourced(262_144, Source::Netlink),
                buckets: sourced(262_144, Source::Sysctl),
                usage_percent: None,
                expect_max: sourced(4096, Source::Sysctl),
                counters: Some(CounterReport {
                    source: Source::Netlink,
                    total: Counters::sum(per_cpu.iter().map(|c| &c.counters)),
                    per_cpu,
                }),
                memory_estimate: Some(MemoryEstimate {
                    bytes: 1000,
                    entry_size: Sourced {
                        value: 256,
                        source: Source::Slab,
                    },
                }),
                notes: vec![],
            },
            namespaces: Some(vec![
                netns::NetnsCount {
                    inode: 4026531840,
                    names: vec![],
                    entries: Some(7),
                    error: None,
                },
                netns::NetnsCount {
                    inode: 4026532000,
                    names: vec!["a\"b".into(), "c".into()],
                    entries: None,
                    error: Some("refused".into()),
                },
            ]),
            modules: vec![
                ModuleGauge {
                    module: "nf_conntrack".into(),
                    state: ModState::Builtin,
                },
                ModuleGauge {
                    module: "xt_state".into(),
                    state: ModState::NotLoaded,
                },
            ],
            verify: VerifyGauge::Verified {
                ok: false,
                differing: 1,
                rows: 3,
                problems: 0,
            },
        }
    }

    fn value_of(text: &str, series: &str) -> Option<String> {
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' '))
            .map(str::to_string)
    }

    #[test]
    fn node_exporter_names_and_sums() {
        let text = exposition(&report());
        assert_eq!(
            value_of(&text, "node_nf_conntrack_entries"),
            Some("7".into())
        );
        assert_eq!(
            value_of(&text, "node_nf_conntrack_entries_limit"),
            Some("262144".into())
        );
        assert_eq!(
            value_of(&text, "node_nf_conntrack_stat_found"),
            Some("5".into())
        );
        assert_eq!(
            value_of(&text, "node_nf_conntrack_stat_insert"),
            Some("7".into())
        );
        assert_eq!(
            value_of(&text, "node_nf_conntrack_stat_drop"),
            Some("2".into())
        );
        // Not kept by the kernel: 0, as /proc/net/stat shows it.
        assert_eq!(
            value_of(&text, "node_nf_conntrack_stat_ignore"),
            Some("0".into())
        );
        for (name, _) in NODE_EXPORTER_STATS {
            assert!(
                text.contains(&format!("# TYPE node_nf_conntrack_stat_{name} gauge\n")),
                "{name}"
            );
        }
        assert_eq!(
            value_of(
                &text,
                "nfkit_conntrack_stat_total{cpu=\"1\",stat=\"found\"}"
            ),
            Some("3".into())
        );
    }

    #[test]
    fn nfkit_gauges() {
        let text = exposition(&report());
        assert_eq!(
            value_of(&text, "nfkit_conntrack_buckets"),
            Some("262144".into())
        );
        assert_eq!(
            value_of(&text, "nfkit_conntrack_expect_max"),
            Some("4096".into())
        );
        assert_eq!(
            value_of(&text, "nfkit_conntrack_memory_estimate_bytes"),
            Some("1000".into())
        );
        assert_eq!(
            value_of(
                &text,
                "nfkit_netns_conntrack_entries{netns_inode=\"4026531840\",netns_name=\"\"}"
            ),
            Some("7".into())
        );
        assert_eq!(
            value_of(
                &text,
                "nfkit_netns_up{netns_inode=\"4026532000\",netns_name=\"a\\\"b,c\"}"
            ),
            Some("0".into())
        );
        assert!(!text.contains("netns_conntrack_entries{netns_inode=\"4026532000\""));
        assert_eq!(
            value_of(
                &text,
                "nfkit_module_loaded{module=\"nf_conntrack\",state=\"builtin\"}"
            ),
            Some("1".into())
        );
        assert_eq!(
            value_of(
                &text,
                "nfkit_module_loaded{module=\"xt_state\",state=\"not_loaded\"}"
            ),
            Some("0".into())
        );
        assert_eq!(value_of(&text, "nfkit_verify_ok"), Some("0".into()));
        assert_eq!(
            value_of(&text, "nfkit_verify_differing_items"),
            Some("1".into())
        );
        assert_eq!(
            value_of(&text, "nfkit_desired_state_present"),
            Some("1".into())
        );
    }

    #[test]
    fn absent_conntrack_and_no_desired_state() {
        let mut r = report();
        r.conntrack = ConntrackStatus {
            present: false,
            entries: None,
            max: None,
            buckets: None,
            usage_percent: None,
            expect_max: None,
            counters: None,
            memory_estimate: None,
            notes: vec![],
        };
        r.namespaces = None;
        r.verify = VerifyGauge::NoDesiredState;
        let text = exposition(&r);
        assert!(!text.contains("node_nf_conntrack"));
        assert!(!text.contains("nfkit_verify_ok"));
        assert!(!text.contains("nfkit_netns"));
        assert_eq!(value_of(&text, "nfkit_conntrack_present"), Some("0".into()));
        assert_eq!(
            value_of(&text, "nfkit_desired_state_present"),
            Some("0".into())
        );
        // Every family has HELP and TYPE before its samples, each name once.
        let mut seen = std::collections::BTreeSet::new();
        for line in text.lines().filter(|l| l.starts_with("# TYPE ")) {
            assert!(
                seen.insert(line.split(' ').nth(2).unwrap().to_string()),
                "{line}"
            );
        }
    }
}
