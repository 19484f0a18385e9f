//! Issue 14 §3 §4 over fake trees (`--root DIR` with generated
//! `proc/sys/net/netfilter/*`, `proc/net/stat/nf_conntrack`, `proc/slabinfo`,
//! `proc/meminfo`): `nfkit metrics` is valid for the real `promtool check
//! metrics` and sums the per-CPU statistics into node_exporter's names;
//! `conntrack plan` reads the entry size from slabinfo and prices max and
//! buckets with it. The real kernel: tests/metrics_netns.rs,
//! tests/conntrack_plan.rs and vm-tests/scenarios/metrics.sh.

use std::path::Path;
use std::process::Command;

use proptest::prelude::*;
use serde_json::Value;

const STAT_HEADER: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart";

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel);
    std::fs::create_dir_all(p.parent().unwrap()).unwrap();
    std::fs::write(p, text).unwrap();
}

fn nfkit(root: &Path, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--root")
        .arg(root)
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// The value of the sample line `name` (exact, labels included).
fn sample(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
        .map(|v| v.parse().unwrap())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]

    /// Per CPU: found, invalid, insert, insert_failed, drop, early_drop,
    /// search_restart.
    #[test]
    fn metrics_from_a_fake_proc_pass_promtool_and_sum_per_cpu(
        count in 0u64..1_000_000,
        max in 1u64..10_000_000,
        cpus in proptest::collection::vec(proptest::array::uniform7(0u32..100_000), 1..5),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        write(root, "proc/sys/net/netfilter/nf_conntrack_count", &format!("{count}\n"));
        write(root, "proc/sys/net/netfilter/nf_conntrack_max", &format!("{max}\n"));
        let mut stat = format!("{STAT_HEADER}\n");
        for c in &cpus {
            let [found, invalid, insert, insert_failed, drop, early_drop, restart] = *c;
            // entries clashres found new invalid ignore delete chainlength
            // insert insert_failed drop early_drop icmp_error expect_new
            // expect_create expect_delete search_restart
            let fields = [
                count as u32, 0, found, 0, invalid, 0, 0, 0, insert, insert_failed, drop,
                early_drop, 0, 0, 0, 0, restart,
            ];
            let line: Vec<String> = fields.iter().map(|f| format!("{f:08x}")).collect();
            stat.push_str(&line.join(" "));
            stat.push('\n');
        }
        write(root, "proc/net/stat/nf_conntrack", &stat);
        let text = nfkit(root, &["metrics"]);
        let file = root.join("out.prom");
        std::fs::write(&file, &text).unwrap();
        let check = Command::new("promtool")
            .args(["check", "metrics"])
            .stdin(std::fs::File::open(&file).unwrap())
            .output()
            .expect("promtool (Debian package prometheus) is the oracle: install it (tests/setup does)");
        prop_assert!(
            check.status.success(),
            "promtool refused:\n{}{}\n{text}",
            String::from_utf8_lossy(&check.stdout),
            String::from_utf8_lossy(&check.stderr)
        );
        prop_assert_eq!(sample(&text, "node_nf_conntrack_entries"), Some(count));
        prop_assert_eq!(sample(&text, "node_nf_conntrack_entries_limit"), Some(max));
        let names = ["found", "invalid", "insert", "insert_failed", "drop", "early_drop", "search_restart"];
        for (i, name) in names.iter().enumerate() {
            let sum: u64 = cpus.iter().map(|c| u64::from(c[i])).sum();
            prop_assert_eq!(
                sample(&text, &format!("node_nf_conntrack_stat_{name}")),
                Some(sum),
                "{}", name
            );
            for (cpu, c) in cpus.iter().enumerate() {
                prop_assert_eq!(
                    sample(&text, &format!("nfkit_conntrack_stat_total{{cpu=\"{cpu}\",stat=\"{name}\"}}")),
                    Some(u64::from(c[i]))
                );
            }
        }
        prop_assert_eq!(sample(&text, "node_nf_conntrack_stat_ignore"), Some(0));
    }

    /// `conntrack plan` prices max and buckets with the slab object size.
    #[test]
    fn plan_reads_the_entry_size_from_slabinfo(
        objsize in 128u64..1024,
        max in 1u64..10_000_000,
        buckets in 1u64..1_000_000,
        wanted in 1u64..100_000_000,
        old_kernel in any::<bool>(),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let release = if old_kernel { "5.10.0-30-amd64" } else { "6.1.0-9-amd64" };
        write(root, "proc/sys/kernel/osrelease", &format!("{release}\n"));
        write(root, "proc/meminfo", "MemTotal:        4000000 kB\n");
        write(root, "proc/sys/net/netfilter/nf_conntrack_max", &format!("{max}\n"));
        write(root, "proc/sys/net/netfilter/nf_conntrack_buckets", &format!("{buckets}\n"));
        write(
            root,
            "proc/slabinfo",
            &format!(
                "slabinfo - version: 2.1\n# name <active_objs> <num_objs> <objsize> <objperslab> <pagesperslab> : tunables <limit> <batchcount> <sharedfactor> : slabdata <active_slabs> <num_slabs> <sharedavail>\nnf_conntrack 100 100 {objsize} 16 1 : tunables 0 0 0 : slabdata 7 7 0\n"
            ),
        );
        let v: Value = serde_json::from_str(&nfkit(
            root,
            &["--json", "conntrack", "plan", "--max", &wanted.to_string()],
        ))
        .unwrap();
        prop_assert_eq!(&v["entry_size"], &serde_json::json!({"value": objsize, "source": "slab"}));
        prop_assert_eq!(&v["current"]["max"], &Value::from(max));
        prop_assert_eq!(&v["current"]["buckets"], &Value::from(buckets));
        // One entry per slab object, one 8-byte list head per bucket.
        prop_assert_eq!(&v["current"]["memory_bytes"], &Value::from(max * objsize + buckets * 8));
        let s = &v["suggested"];
        prop_assert_eq!(&s["max"], &Value::from(wanted));
        let sb = s["buckets"].as_u64().unwrap();
        prop_assert_eq!(&s["memory_bytes"], &Value::from(wanted * objsize + sb * 8));
        prop_assert_eq!(
            &v["kernel_default"]["era"],
            &Value::from(if old_kernel { "before_5_15" } else { "since_5_15" })
        );
        prop_assert_eq!(&v["buckets_change"]["when"], &Value::from("unknown"));
    }
}
