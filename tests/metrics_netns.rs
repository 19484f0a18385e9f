//! `nfkit metrics` on the real kernel, each test in a fresh network
//! namespace: the output passes `promtool check metrics` (Debian package
//! `prometheus`, installed by tests/setup), its conntrack figures equal
//! `conntrack -C` / `conntrack -S` after entries were created with
//! `conntrack -I`, and `--all-netns` counts named namespaces (created with
//! `ip netns add`) separately.
//!
//! These tests need root and fail loudly without it or without the tools.

mod support;

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::MetadataExt;
use std::process::Stdio;

use support::*;

/// Creates `n` UDP entries with `conntrack -I` (in the caller's namespace,
/// or in `netns` through `ip netns exec`).
fn insert_entries(netns: Option<&str>, n: u16) {
    for i in 0..n {
        let sport = (10_000 + i).to_string();
        let args = [
            "-I", "-p", "udp", "-s", "10.9.0.1", "-d", "10.9.0.2", "--sport", &sport, "--dport",
            "53", "-t", "300",
        ];
        match netns {
            None => ok(&mut tool("conntrack", args)),
            Some(ns) => ok(&mut tool(
                "ip",
                ["netns", "exec", ns, "conntrack"].into_iter().chain(args),
            )),
        };
    }
}

/// `series value` lines of the exposition text, keyed by the series.
fn samples(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("sample line");
            (series.to_string(), value.to_string())
        })
        .collect()
}

fn promtool_check(text: &str) {
    let mut child = tool("promtool", ["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success() && out.stdout.is_empty() && out.stderr.is_empty(),
        "promtool check metrics refused the output ({}):\n{}{}\n--- text ---\n{text}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn conntrack_s_sum(field: &str) -> u64 {
    ok(&mut tool("conntrack", ["-S"]))
        .lines()
        .flat_map(|l| l.split_whitespace())
        .filter_map(|pair| pair.split_once('='))
        .filter(|(k, _)| *k == field)
        .map(|(_, v)| v.parse::<u64>().unwrap())
        .sum()
}

#[test]
fn output_passes_promtool_and_matches_conntrack_tools() {
    in_fresh_netns(|| {
        insert_entries(None, 6);
        let text = ok(nfkit().arg("metrics"));
        promtool_check(&text);
        let s = samples(&text);
        let count: u64 = ok(&mut tool("conntrack", ["-C"])).trim().parse().unwrap();
        assert_eq!(count, 6);
        assert_eq!(s["node_nf_conntrack_entries"], count.to_string());
        let max = ok(&mut tool(
            "sysctl",
            ["-n", "net.netfilter.nf_conntrack_max"],
        ));
        assert_eq!(s["node_nf_conntrack_entries_limit"], max.trim());
        for stat in [
            "found",
            "invalid",
            "insert",
            "insert_failed",
            "drop",
            "early_drop",
            "search_restart",
        ] {
            assert_eq!(
                s[&format!("node_nf_conntrack_stat_{stat}")],
                conntrack_s_sum(stat).to_string(),
                "{stat}"
            );
        }
        assert_eq!(s["node_nf_conntrack_stat_insert"], "6");
        // Per CPU: every `conntrack -S` line and field, as a labelled sample.
        for line in ok(&mut tool("conntrack", ["-S"])).lines() {
            let fields: Vec<(&str, &str)> = line
                .split_whitespace()
                .filter_map(|p| p.split_once('='))
                .collect();
            let cpu = fields.iter().find(|(k, _)| *k == "cpu").unwrap().1;
            for (k, v) in fields.iter().filter(|(k, _)| *k != "cpu") {
                let series = format!("nfkit_conntrack_stat_total{{cpu=\"{cpu}\",stat=\"{k}\"}}");
                assert_eq!(s.get(&series).map(String::as_str), Some(*v), "{series}");
            }
        }
        let buckets = ok(&mut tool(
            "sysctl",
            ["-n", "net.netfilter.nf_conntrack_buckets"],
        ));
        assert_eq!(s["nfkit_conntrack_buckets"], buckets.trim());
        let expect = ok(&mut tool(
            "sysctl",
            ["-n", "net.netfilter.nf_conntrack_expect_max"],
        ));
        assert_eq!(s["nfkit_conntrack_expect_max"], expect.trim());
        assert_eq!(
            s["nfkit_conntrack_info{entries_source=\"netlink\",counters_source=\"netlink\"}"],
            "1"
        );
    });
}

#[test]
fn textfile_is_replaced_atomically_with_the_same_text() {
    in_fresh_netns(|| {
        insert_entries(None, 2);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("nfkit.prom");
        std::fs::write(&path, "stale\n").unwrap();
        let out = run(nfkit().arg("metrics").arg("--textfile").arg(&path));
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.stdout.is_empty(), "--textfile prints nothing on stdout");
        let text = std::fs::read_to_string(&path).unwrap();
        promtool_check(&text);
        assert_eq!(samples(&text)["node_nf_conntrack_entries"], "2");
        assert_eq!(text, ok(nfkit().arg("metrics")), "file and stdout differ");
        let names: Vec<_> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        assert_eq!(names, ["nfkit.prom"], "a temporary file was left behind");
        assert_eq!(std::fs::metadata(&path).unwrap().mode() & 0o777, 0o644);
    });
}

/// Deletes the named namespaces it holds when dropped (also on panic).
struct NamedNetns(Vec<String>);

impl NamedNetns {
    fn create(names: &[String]) -> Self {
        let mut held = NamedNetns(Vec::new());
        for name in names {
            ok(&mut tool("ip", ["netns", "add", name]));
            held.0.push(name.clone());
        }
        held
    }
}

impl Drop for NamedNetns {
    fn drop(&mut self) {
        for name in &self.0 {
            let _ = tool("ip", ["netns", "del", name]).output();
        }
    }
}

#[test]
fn all_netns_counts_each_named_namespace() {
    in_fresh_netns(|| {
        let pid = std::process::id();
        let names = [
            format!("nfkit-metrics-{pid}-a"),
            format!("nfkit-metrics-{pid}-b"),
        ];
        let _held = NamedNetns::create(&names);
        insert_entries(Some(&names[0]), 2);
        insert_entries(Some(&names[1]), 5);
        insert_entries(None, 3);
        let text = ok(nfkit().args(["metrics", "--all-netns"]));
        promtool_check(&text);
        let s = samples(&text);
        for (name, expected) in names.iter().zip([2u64, 5]) {
            let inode = std::fs::metadata(format!("/run/netns/{name}"))
                .unwrap()
                .ino();
            let oracle: u64 = ok(&mut tool("ip", ["netns", "exec", name, "conntrack", "-C"]))
                .trim()
                .parse()
                .unwrap();
            assert_eq!(oracle, expected);
            let labels = format!("{{netns_inode=\"{inode}\",netns_name=\"{name}\"}}");
            assert_eq!(
                s.get(&format!("nfkit_netns_conntrack_entries{labels}")),
                Some(&expected.to_string()),
                "{name}:\n{text}"
            );
            assert_eq!(s[&format!("nfkit_netns_up{labels}")], "1");
        }
        // nfkit's own (fresh, unnamed) namespace is found through /proc.
        let own = std::fs::metadata("/proc/thread-self/ns/net").unwrap().ino();
        let labels = format!("{{netns_inode=\"{own}\",netns_name=\"\"}}");
        assert_eq!(
            s.get(&format!("nfkit_netns_conntrack_entries{labels}")),
            Some(&"3".to_string()),
            "{text}"
        );
        // Each namespace once.
        let inodes: Vec<&String> = s
            .keys()
            .filter(|k| k.starts_with("nfkit_netns_up{"))
            .collect();
        let distinct: std::collections::BTreeSet<_> = inodes
            .iter()
            .map(|k| k.split('"').nth(1).unwrap())
            .collect();
        assert_eq!(distinct.len(), inodes.len(), "{inodes:?}");
        // JSON: the same counts.
        let json = nfkit_json(&["metrics", "--all-netns"]);
        let listed = json["namespaces"].as_array().expect("namespaces");
        let a = listed
            .iter()
            .find(|n| n["names"][0] == names[0].as_str())
            .expect("namespace a in JSON");
        assert_eq!(a["entries"], 2);
    });
}
