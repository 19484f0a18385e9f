//! Root integration tests on the real kernel. Each test runs in its own fresh
//! network namespace (never the host's) and compares nfkit with the real
//! tools: `conntrack`, `nft`, `iptables-legacy`, `ip6tables-legacy`,
//! `arptables-legacy`. The tests that write the global conntrack limits run
//! in the initial namespace, restore the old values, and are serialised.
//!
//! These tests need root and fail loudly without it.

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

use nfkit::conntrack::fixtures::create_udp_entries;
use nfkit::netlink::NfnlSocket;
use serde_json::Value;
use support::*;

/// Serialises the tests that write global (all-namespace) kernel state with
/// the tests that compare it: max and buckets are global, so a namespace test
/// reading them must not overlap a test changing them.
static GLOBAL_LIMITS: Mutex<()> = Mutex::new(());

fn global_limits() -> std::sync::MutexGuard<'static, ()> {
    GLOBAL_LIMITS.lock().unwrap_or_else(|e| e.into_inner())
}

fn create_entries(count: u32) {
    let mut socket = NfnlSocket::open("test: create entries").expect("netlink socket");
    create_udp_entries(&mut socket, 1, count).expect("creating conntrack entries through netlink");
}

/// Parses `conntrack -S` lines (`cpu=0 found=0 ...`) into cpu → counters.
fn parse_conntrack_s(text: &str) -> BTreeMap<u64, BTreeMap<String, u64>> {
    let mut cpus = BTreeMap::new();
    for line in text.lines() {
        let mut fields = BTreeMap::new();
        let mut cpu = None;
        for pair in line.split_whitespace() {
            let (k, v) = pair.split_once('=').expect("key=value");
            let v: u64 = v.parse().expect("number");
            if k == "cpu" {
                cpu = Some(v);
            } else {
                fields.insert(k.to_string(), v);
            }
        }
        cpus.insert(cpu.expect("cpu= field"), fields);
    }
    cpus
}

fn nfkit_per_cpu(report: &Value) -> BTreeMap<u64, BTreeMap<String, u64>> {
    report["counters"]["per_cpu"]
        .as_array()
        .expect("per_cpu array")
        .iter()
        .map(|cpu| {
            let counters = cpu["counters"]
                .as_object()
                .expect("counters object")
                .iter()
                .map(|(k, v)| (k.clone(), v.as_u64().expect("counter value")))
                .collect();
            (cpu["cpu"].as_u64().expect("cpu id"), counters)
        })
        .collect()
}

#[test]
fn conntrack_count_and_counters_match_conntrack_tools() {
    let _serial = global_limits();
    in_fresh_netns(|| {
        let empty = nfkit_json(&["conntrack"]);
        assert_eq!(empty["entries"]["value"], 0);
        create_entries(7);
        let report = nfkit_json(&["conntrack"]);
        assert_eq!(report["present"], true);
        assert_eq!(report["entries"]["value"], 7, "{report:#}");
        assert_eq!(report["entries"]["source"], "netlink");
        let oracle_count: u64 = ok(&mut tool("conntrack", ["-C"])).trim().parse().unwrap();
        assert_eq!(report["entries"]["value"].as_u64(), Some(oracle_count));

        let oracle = parse_conntrack_s(&ok(&mut tool("conntrack", ["-S"])));
        let ours = nfkit_per_cpu(&report);
        assert_eq!(ours, oracle, "per-CPU counters differ from conntrack -S");
        let inserts: u64 = ours.values().map(|c| c["insert"]).sum();
        assert_eq!(
            inserts, 7,
            "entries created through netlink count as insert"
        );
        assert_eq!(report["counters"]["total"]["insert"], 7);

        // max and buckets agree with sysctl(8).
        let max = ok(&mut tool(
            "sysctl",
            ["-n", "net.netfilter.nf_conntrack_max"],
        ));
        assert_eq!(report["max"]["value"].as_u64(), max.trim().parse().ok());
        let buckets = ok(&mut tool(
            "sysctl",
            ["-n", "net.netfilter.nf_conntrack_buckets"],
        ));
        assert_eq!(
            report["buckets"]["value"].as_u64(),
            buckets.trim().parse().ok()
        );
    });
}

#[test]
fn file_sources_agree_with_netlink() {
    let _serial = global_limits();
    in_fresh_netns(|| {
        create_entries(3);
        let netlink = nfkit_json(&["conntrack"]);
        let files = nfkit_json(&["conntrack", "--no-netlink"]);
        assert_eq!(files["entries"]["source"], "sysctl");
        assert_eq!(files["entries"]["value"], 3);
        assert_eq!(
            files["max"],
            serde_json::json!({"value": netlink["max"]["value"], "source": "sysctl"})
        );
        if std::path::Path::new("/proc/thread-self/net/stat/nf_conntrack").exists() {
            assert_eq!(files["counters"]["source"], "proc_stat");
            assert_eq!(
                files["counters"]["total"]["insert"],
                netlink["counters"]["total"]["insert"]
            );
            assert_eq!(
                files["counters"]["total"]["drop"],
                netlink["counters"]["total"]["drop"]
            );
        } else {
            assert!(files["counters"].is_null());
        }
    });
}

#[test]
fn unprivileged_user_gets_file_figures_and_an_explanation() {
    in_fresh_netns(|| {
        create_entries(2);
        let output = nfkit_as_nobody(&["--json", "conntrack"]);
        assert!(output.status.success(), "{output:?}");
        let report: Value = serde_json::from_slice(&output.stdout).unwrap();
        assert_eq!(
            report["entries"],
            serde_json::json!({"value": 2, "source": "sysctl"})
        );
        let notes = report["notes"].to_string();
        assert!(
            notes.contains("Operation not permitted") && notes.contains("CAP_NET_ADMIN"),
            "{notes}"
        );

        // A write as nobody fails with the operation, object, cause and hint.
        let output = nfkit_as_nobody(&["conntrack", "set", "--max", "100"]);
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains("set conntrack max"), "{stderr}");
    });
}

#[test]
fn set_is_refused_outside_the_initial_namespace() {
    let _serial = global_limits();
    in_fresh_netns(|| {
        let output = run(nfkit().args(["conntrack", "set", "--max", "1000"]));
        assert_eq!(output.status.code(), Some(1));
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(
            stderr.contains("global") && stderr.contains("initial namespace"),
            "{stderr}"
        );
        assert!(stderr.contains("hint:"), "{stderr}");
        // The legacy alias is the same refusal, not "unknown key".
        let output = run(nfkit().args(["conntrack", "set", "net.nf_conntrack_max=1000"]));
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("initial namespace"));
        // Setting the value already in place needs no write and succeeds.
        let current = nfkit_json(&["conntrack"])["max"]["value"].as_u64().unwrap();
        let report = nfkit_json(&["conntrack", "set", "--max", &current.to_string()]);
        assert_eq!(report["changes"][0]["changed"], false);
    });
}

/// Restores a global sysctl when dropped, even if the test panics.
struct Restore(&'static str, String);

impl Drop for Restore {
    fn drop(&mut self) {
        let path = format!("/proc/sys/{}", self.0.replace('.', "/"));
        std::fs::write(&path, &self.1).expect("restoring a global sysctl");
    }
}

fn sysctl_value(key: &str) -> u64 {
    ok(&mut tool("sysctl", ["-n", key])).trim().parse().unwrap()
}

#[test]
fn set_max_in_the_initial_namespace_takes_effect_and_is_idempotent() {
    require_root();
    let _serial = global_limits();
    let key = "net.netfilter.nf_conntrack_max";
    let before = sysctl_value(key);
    let _restore = Restore(key, before.to_string());
    let target = before - 1;

    let dry = nfkit_json(&[
        "conntrack",
        "set",
        "--max",
        &target.to_string(),
        "--dry-run",
    ]);
    assert_eq!(dry["dry_run"], true);
    assert_eq!(dry["changes"][0]["changed"], true);
    assert_eq!(sysctl_value(key), before, "dry run wrote something");

    // The seed guide's legacy key works as an alias.
    let done = nfkit_json(&[
        "conntrack",
        "set",
        &format!("net.nf_conntrack_max={target}"),
    ]);
    assert_eq!(done["changes"][0]["after"], target);
    assert_eq!(sysctl_value(key), target);
    assert_eq!(sysctl_value("net.nf_conntrack_max"), target);

    let again = nfkit_json(&["conntrack", "set", "--max", &target.to_string()]);
    assert_eq!(
        again["changes"][0]["changed"], false,
        "second run must write nothing"
    );

    let back = nfkit_json(&["conntrack", "set", "--max", &before.to_string()]);
    assert_eq!(back["changes"][0]["after"], before);
}

#[test]
fn set_buckets_reports_the_rounded_value() {
    require_root();
    let _serial = global_limits();
    let key = "net.netfilter.nf_conntrack_buckets";
    let before = sysctl_value(key);
    let _restore = Restore(key, before.to_string());
    // A request that rounds up to the current size changes nothing.
    let same = nfkit_json(&["conntrack", "set", "--buckets", &(before - 100).to_string()]);
    assert_eq!(same["changes"][0]["changed"], false, "{same:#}");
    // One granule more: the kernel holds a multiple of 512.
    let asked = before + 1;
    let grown = nfkit_json(&["conntrack", "set", "--buckets", &asked.to_string()]);
    let expected = asked.div_ceil(512) * 512;
    assert_eq!(grown["changes"][0]["after"], expected);
    assert_eq!(sysctl_value(key), expected);
    let text = ok(nfkit().args(["conntrack", "set", "--buckets", &before.to_string()]));
    assert!(text.contains(&format!("{expected} -> {before}")), "{text}");
}

fn legacy_names(report: &Value, family: &str) -> Vec<String> {
    let entry = report["legacy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["family"] == family)
        .unwrap_or_else(|| panic!("no {family} in {report:#}"));
    assert_eq!(entry["state"], "listed", "{entry}");
    entry["tables"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect()
}

#[test]
fn fresh_namespace_has_no_tables_and_show_creates_none() {
    in_fresh_netns(|| {
        let report = nfkit_json(&["tables"]);
        for family in ["ipv4", "ipv6", "arp"] {
            assert!(legacy_names(&report, family).is_empty());
        }
        assert_eq!(
            report["nftables"],
            serde_json::json!({"state": "listed", "tables": []})
        );
        let output = run(nfkit().args(["tables", "show", "nat"]));
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("no such table"));
        // Asking did not instantiate the table (getsockopt would have).
        let names = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names").unwrap();
        assert_eq!(names, "", "nfkit created a legacy table");
    });
}

#[test]
fn nftables_tables_match_nft() {
    in_fresh_netns(|| {
        ok(&mut tool("nft", ["add table inet t1"]));
        ok(&mut tool("nft", ["add table ip6 t2 { flags dormant; }"]));
        ok(&mut tool(
            "nft",
            ["add chain inet t1 c_in { type filter hook input priority 0; policy drop; }"],
        ));
        ok(&mut tool("nft", ["add chain inet t1 c_user"]));
        ok(&mut tool("nft", ["add rule inet t1 c_in counter accept"]));
        ok(&mut tool(
            "nft",
            ["add rule inet t1 c_in tcp dport 22 accept"],
        ));
        ok(&mut tool("nft", ["add rule inet t1 c_user counter"]));

        let oracle: Value =
            serde_json::from_str(&ok(&mut tool("nft", ["-j", "list", "tables"]))).unwrap();
        let oracle_tables: BTreeSet<(String, String)> = oracle["nftables"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|o| o.get("table"))
            .map(|t| {
                (
                    t["family"].as_str().unwrap().into(),
                    t["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        let report = nfkit_json(&["tables"]);
        let ours: BTreeSet<(String, String)> = report["nftables"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["family"].as_str().unwrap().into(),
                    t["name"].as_str().unwrap().into(),
                )
            })
            .collect();
        assert_eq!(ours, oracle_tables);
        let t1 = report["nftables"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "t1")
            .unwrap();
        assert_eq!(t1["chains"], 2);
        let t2 = report["nftables"]["tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["name"] == "t2")
            .unwrap();
        assert_eq!(t2["flags"], serde_json::json!(["dormant"]));

        let shown = nfkit_json(&["tables", "show", "t1"]);
        assert_eq!(shown["kind"], "nftables");
        let chains: BTreeMap<String, Value> = shown["chains"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| (c["name"].as_str().unwrap().to_string(), c.clone()))
            .collect();
        assert_eq!(chains["c_in"]["rules"], 2);
        assert_eq!(chains["c_in"]["hook"], "input");
        assert_eq!(chains["c_in"]["policy"], "drop");
        assert_eq!(chains["c_in"]["chain_type"], "filter");
        assert_eq!(chains["c_user"]["rules"], 1);
        assert!(chains["c_user"]["hook"].is_null());
    });
}

/// Chains of `iptables-legacy -S` output: name → (policy, rule count).
fn parse_save_chains(text: &str) -> BTreeMap<String, (Option<String>, usize)> {
    let mut chains: BTreeMap<String, (Option<String>, usize)> = BTreeMap::new();
    for line in text.lines() {
        let words: Vec<&str> = line.split_whitespace().collect();
        match words.as_slice() {
            ["-P", chain, policy] => {
                chains.entry(chain.to_string()).or_default().0 = Some(policy.to_string());
            }
            ["-N", chain] => {
                chains.entry(chain.to_string()).or_default();
            }
            ["-A", chain, ..] => chains.entry(chain.to_string()).or_default().1 += 1,
            _ => panic!("unexpected line: {line}"),
        }
    }
    chains
}

fn nfkit_legacy_chains(table: &str, family: &str) -> BTreeMap<String, (Option<String>, usize)> {
    let shown = nfkit_json(&["tables", "show", table, "--family", family]);
    assert_eq!(shown["kind"], "legacy");
    shown["chains"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            (
                c["name"].as_str().unwrap().to_string(),
                (
                    c["policy"].as_str().map(str::to_string),
                    c["rules"].as_u64().unwrap() as usize,
                ),
            )
        })
        .collect()
}

#[test]
fn legacy_nat_table_matches_iptables_legacy() {
    in_fresh_netns(|| {
        // The seed guide's check: `iptables -t nat -L` instantiates nat.
        ok(&mut tool("iptables-legacy", ["-t", "nat", "-L", "-n"]));
        let report = nfkit_json(&["tables"]);
        assert_eq!(legacy_names(&report, "ipv4"), vec!["nat"]);
        let names = std::fs::read_to_string("/proc/thread-self/net/ip_tables_names").unwrap();
        assert_eq!(names.trim(), "nat");

        ok(&mut tool("iptables-legacy", ["-t", "nat", "-N", "mine"]));
        ok(&mut tool(
            "iptables-legacy",
            ["-t", "nat", "-A", "mine", "-p", "tcp", "-j", "RETURN"],
        ));
        ok(&mut tool(
            "iptables-legacy",
            ["-t", "nat", "-A", "mine", "-p", "udp", "-j", "RETURN"],
        ));
        ok(&mut tool(
            "iptables-legacy",
            ["-t", "nat", "-A", "POSTROUTING", "-j", "mine"],
        ));
        ok(&mut tool("iptables-legacy", ["-t", "nat", "-N", "empty"]));
        let oracle = parse_save_chains(&ok(&mut tool("iptables-legacy", ["-t", "nat", "-S"])));
        assert_eq!(nfkit_legacy_chains("nat", "ipv4"), oracle);
        assert_eq!(oracle["mine"].1, 2);
    });
}

#[test]
fn legacy_filter_policies_match_iptables_legacy() {
    in_fresh_netns(|| {
        ok(&mut tool("iptables-legacy", ["-P", "FORWARD", "DROP"]));
        ok(&mut tool(
            "iptables-legacy",
            ["-A", "INPUT", "-i", "lo", "-j", "ACCEPT"],
        ));
        ok(&mut tool(
            "iptables-legacy",
            ["-A", "INPUT", "-p", "tcp", "--dport", "22", "-j", "ACCEPT"],
        ));
        ok(&mut tool("iptables-legacy", ["-A", "OUTPUT", "-j", "DROP"]));
        let oracle = parse_save_chains(&ok(&mut tool("iptables-legacy", ["-S"])));
        assert_eq!(nfkit_legacy_chains("filter", "ipv4"), oracle);
        assert_eq!(oracle["FORWARD"].0.as_deref(), Some("DROP"));
        // Text output names the table and the policy.
        let text = ok(nfkit().args(["tables", "show", "filter", "--family", "ipv4"]));
        assert!(text.contains("FORWARD") && text.contains("DROP"), "{text}");
    });
}

#[test]
fn legacy_ipv6_and_arp_tables_match_their_tools() {
    in_fresh_netns(|| {
        ok(&mut tool(
            "ip6tables-legacy",
            ["-A", "INPUT", "-j", "ACCEPT"],
        ));
        ok(&mut tool("ip6tables-legacy", ["-P", "OUTPUT", "DROP"]));
        let oracle = parse_save_chains(&ok(&mut tool("ip6tables-legacy", ["-S"])));
        assert_eq!(nfkit_legacy_chains("filter", "ipv6"), oracle);

        ok(&mut tool(
            "arptables-legacy",
            ["-A", "INPUT", "-j", "ACCEPT"],
        ));
        ok(&mut tool("arptables-legacy", ["-A", "INPUT", "-j", "DROP"]));
        ok(&mut tool("arptables-legacy", ["-P", "OUTPUT", "DROP"]));
        let report = nfkit_json(&["tables"]);
        assert_eq!(legacy_names(&report, "arp"), vec!["filter"]);
        let ours = nfkit_legacy_chains("filter", "arp");
        assert_eq!(ours["INPUT"], (Some("ACCEPT".into()), 2));
        assert_eq!(ours["OUTPUT"], (Some("DROP".into()), 0));
        assert_eq!(ours["FORWARD"], (Some("ACCEPT".into()), 0));
        // Same name in two families without --family is ambiguous.
        let output = run(nfkit().args(["tables", "show", "filter"]));
        assert_eq!(output.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&output.stderr).contains("--family"));
    });
}

#[test]
fn status_reports_kernel_conntrack_and_tables() {
    in_fresh_netns(|| {
        create_entries(1);
        ok(&mut tool("nft", ["add table ip st"]));
        let status = nfkit_json(&["status"]);
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
        assert_eq!(status["kernel_release"], release.trim());
        assert_eq!(
            status["module_support"],
            std::path::Path::new("/proc/modules").exists()
        );
        assert_eq!(status["network_namespace"]["initial"], false);
        assert_eq!(status["conntrack"]["entries"]["value"], 1);
        assert_eq!(status["tables"]["nftables"]["tables"][0]["name"], "st");
    });
}
