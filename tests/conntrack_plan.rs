//! `conntrack plan` and `conntrack set --never-lower` on the real kernel.
//! Plans and dry runs only: nothing here writes a global limit.

mod support;

use support::*;

fn sysctl_n(key: &str) -> u64 {
    ok(&mut tool("sysctl", ["-n", key])).trim().parse().unwrap()
}

fn slab_size() -> u64 {
    std::fs::read_to_string("/sys/kernel/slab/nf_conntrack/slab_size")
        .expect("this machine exposes the nf_conntrack slab")
        .trim()
        .parse()
        .unwrap()
}

#[test]
fn plan_in_a_fresh_namespace_reads_the_kernel_and_cannot_resize() {
    in_fresh_netns(|| {
        let max = sysctl_n("net.netfilter.nf_conntrack_max");
        let buckets = sysctl_n("net.netfilter.nf_conntrack_buckets");
        let p = nfkit_json(&["conntrack", "plan", "--max", "1000000"]);
        assert_eq!(p["current"]["max"], max, "{p:#}");
        assert_eq!(p["current"]["buckets"], buckets);
        assert_eq!(p["entry_size"]["source"], "slab");
        let size = slab_size();
        assert_eq!(p["entry_size"]["value"], size);
        assert_eq!(
            p["at_current_buckets"]["memory_bytes"],
            1_000_000 * size + buckets * 8
        );
        let suggested = p["suggested"]["buckets"].as_u64().unwrap();
        assert_eq!(suggested % 512, 0);
        assert_eq!(p["buckets_change"]["when"], "next_load", "{p:#}");
        let cpus = std::thread::available_parallelism().unwrap().get() as u64;
        assert_eq!(p["kube_proxy"]["max"], (32_768 * cpus).max(131_072));
        // A refused value is an error with the limit's message.
        let out = run(nfkit().args(["conntrack", "plan", "--max", "-5"]));
        assert_eq!(out.status.code(), Some(1));
        assert!(String::from_utf8_lossy(&out.stderr).contains("must not be negative"));
    });
}

#[test]
fn plan_in_the_initial_namespace_can_resize_through_the_sysctl() {
    require_root();
    let p = nfkit_json(&["conntrack", "plan", "--max", "131072"]);
    assert_eq!(p["buckets_change"]["when"], "run_time", "{p:#}");
    // The era follows the running release; its default ratio holds.
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap();
    let mut parts = release.trim().split('.');
    let major: u32 = parts.next().unwrap().parse().unwrap();
    let minor: u32 = parts.next().unwrap().parse().unwrap();
    let d = &p["kernel_default"];
    let (era, ratio) = if (major, minor) >= (5, 15) {
        ("since_5_15", 1)
    } else {
        ("before_5_15", 4)
    };
    assert_eq!(d["era"], era, "{release}");
    assert_eq!(d["max"].as_u64(), d["buckets"].as_u64().map(|b| b * ratio));
}

#[test]
fn never_lower_dry_run_keeps_a_higher_value_and_raises_a_lower_one() {
    require_root();
    let max = sysctl_n("net.netfilter.nf_conntrack_max");
    let lower = (max - 1).to_string();
    let r = nfkit_json(&[
        "conntrack",
        "set",
        "--dry-run",
        "--never-lower",
        "--max",
        &lower,
    ]);
    assert_eq!(r["changes"][0]["changed"], false, "{r:#}");
    assert_eq!(r["changes"][0]["kept_higher"], true);
    let r = nfkit_json(&["conntrack", "set", "--dry-run", "--max", &lower]);
    assert_eq!(r["changes"][0]["changed"], true, "{r:#}");
    assert!(r["changes"][0].get("kept_higher").is_none());
    let higher = (max + 1).to_string();
    let r = nfkit_json(&[
        "conntrack",
        "set",
        "--dry-run",
        "--never-lower",
        "--max",
        &higher,
    ]);
    assert_eq!(r["changes"][0]["changed"], true, "{r:#}");
    assert_eq!(
        sysctl_n("net.netfilter.nf_conntrack_max"),
        max,
        "a dry run wrote"
    );
}
