//! CLI tests that need no privileges: `--root DIR` against fake `/proc`
//! trees, JSON schema, exit codes and error messages.

mod support;

use std::fs;
use std::path::Path;

use serde_json::Value;
use support::{nfkit, run};

const PROC_STAT: &str = "entries  clashres found new invalid ignore delete chainlength insert insert_failed drop early_drop icmp_error  expect_new expect_create expect_delete search_restart\n\
00000005  00000000 00000001 00000000 00000000 00000000 00000000 00000000 00000003 00000000 00000000 00000000 00000000  00000000 00000000 00000000 00000000\n\
00000005  00000000 00000002 00000000 00000000 00000000 00000000 00000000 00000002 00000000 00000001 00000000 00000000  00000000 00000000 00000000 00000000\n";

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

fn fake_host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    write(root, "proc/sys/kernel/osrelease", "6.1.0-99-amd64\n");
    write(root, "proc/sys/net/netfilter/nf_conntrack_max", "1000\n");
    write(root, "proc/sys/net/netfilter/nf_conntrack_count", "5\n");
    write(
        root,
        "proc/sys/net/netfilter/nf_conntrack_buckets",
        "1024\n",
    );
    write(
        root,
        "proc/sys/net/netfilter/nf_conntrack_expect_max",
        "256\n",
    );
    write(root, "proc/net/stat/nf_conntrack", PROC_STAT);
    write(root, "proc/net/ip_tables_names", "nat\nfilter\n");
    write(root, "proc/net/ip6_tables_names", "");
    write(root, "proc/modules", "");
    dir
}

fn json(root: &Path, args: &[&str]) -> Value {
    let output = run(nfkit().arg("--root").arg(root).arg("--json").args(args));
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn conntrack_from_a_fake_tree() {
    let dir = fake_host();
    let report = json(dir.path(), &["conntrack"]);
    assert_eq!(report["present"], true);
    assert_eq!(
        report["entries"],
        serde_json::json!({"value": 5, "source": "sysctl"})
    );
    assert_eq!(report["max"]["value"], 1000);
    assert_eq!(report["buckets"]["value"], 1024);
    assert_eq!(report["expect_max"]["value"], 256);
    assert_eq!(report["usage_percent"], 0.5);
    assert_eq!(report["counters"]["source"], "proc_stat");
    assert_eq!(report["counters"]["total"]["insert"], 5);
    assert_eq!(report["counters"]["total"]["found"], 3);
    assert_eq!(report["counters"]["total"]["drop"], 1);
    assert_eq!(report["counters"]["per_cpu"].as_array().unwrap().len(), 2);
    // No slab information in the fake tree: the entry size is assumed.
    assert_eq!(report["memory_estimate"]["entry_size"]["source"], "assumed");
    assert_eq!(report["memory_estimate"]["bytes"], 1000 * 320 + 1024 * 8);
}

#[test]
fn conntrack_absent_says_how_to_get_it() {
    let dir = tempfile::tempdir().unwrap();
    let report = json(dir.path(), &["conntrack"]);
    assert_eq!(report["present"], false);
    assert!(
        report["notes"]
            .to_string()
            .contains("nfkit modules load nf_conntrack")
    );
    let text = run(nfkit().arg("--root").arg(dir.path()).arg("conntrack"));
    assert!(String::from_utf8_lossy(&text.stdout).contains("not present"));
}

#[test]
fn garbage_proc_files_are_reported_not_fatal() {
    let dir = fake_host();
    write(
        dir.path(),
        "proc/net/stat/nf_conntrack",
        "entries found\nzz 00000001\n",
    );
    write(
        dir.path(),
        "proc/sys/net/netfilter/nf_conntrack_expect_max",
        "many\n",
    );
    let report = json(dir.path(), &["conntrack"]);
    assert_eq!(report["max"]["value"], 1000);
    assert!(report["counters"].is_null());
    let notes = report["notes"].to_string();
    assert!(
        notes.contains("line 2") && notes.contains("nf_conntrack_expect_max"),
        "{notes}"
    );
}

#[test]
fn tables_from_a_fake_tree() {
    let dir = fake_host();
    let report = json(dir.path(), &["tables"]);
    assert_eq!(
        report["legacy"][0],
        serde_json::json!({"family": "ipv4", "state": "listed", "tables": ["nat", "filter"]})
    );
    assert_eq!(report["legacy"][1]["tables"], serde_json::json!([]));
    assert_eq!(
        report["legacy"][2],
        serde_json::json!({"family": "arp", "state": "unavailable"})
    );
    assert_eq!(report["nftables"]["state"], "not_queried");
}

#[test]
fn status_from_a_fake_tree() {
    let dir = fake_host();
    let status = json(dir.path(), &["status"]);
    assert_eq!(status["kernel_release"], "6.1.0-99-amd64");
    assert_eq!(status["module_support"], true);
    assert_eq!(status["conntrack"]["entries"]["value"], 5);
    let text = run(nfkit().arg("--root").arg(dir.path()).arg("status"));
    let text = String::from_utf8_lossy(&text.stdout);
    assert!(
        text.contains("6.1.0-99-amd64") && text.contains("loadable-module support"),
        "{text}"
    );
}

#[test]
fn set_with_root_is_refused_and_changes_nothing() {
    let dir = fake_host();
    let output =
        run(nfkit()
            .arg("--root")
            .arg(dir.path())
            .args(["conntrack", "set", "--max", "5"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--root"));
    let max =
        fs::read_to_string(dir.path().join("proc/sys/net/netfilter/nf_conntrack_max")).unwrap();
    assert_eq!(max, "1000\n");
}

#[test]
fn invalid_values_fail_before_anything_happens() {
    for (args, needle) in [
        (vec!["--max", "-1"], "must not be negative"),
        (
            vec!["--max", "2147483648"],
            "larger than the kernel accepts",
        ),
        (vec!["--max", "abc"], "not a decimal number"),
        (vec!["--max", "0"], "--allow-unlimited"),
        (vec!["--buckets", "0"], "at least one bucket"),
        (vec!["net.ipv4.ip_forward=1"], "unknown setting"),
        (vec!["--max", "5", "max=6"], "given twice"),
        (vec!["nonsense"], "not KEY=VALUE"),
        (vec![], "nothing to set"),
    ] {
        let output = run(nfkit().args(["conntrack", "set"]).args(&args));
        assert_eq!(output.status.code(), Some(1), "{args:?}");
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
        assert!(stderr.starts_with("nfkit: error:"), "{stderr}");
    }
}

#[test]
fn json_errors_go_to_stdout_with_hint() {
    let output = run(nfkit().args(["--json", "conntrack", "set", "--max", "0"]));
    assert_eq!(output.status.code(), Some(1));
    let body: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert!(body["error"]["message"].as_str().unwrap().contains("limit"));
    assert!(
        body["error"]["hint"]
            .as_str()
            .unwrap()
            .contains("--allow-unlimited")
    );
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    assert_eq!(run(nfkit().arg("frobnicate")).status.code(), Some(2));
    assert_eq!(
        run(nfkit().args(["conntrack", "--bogus"])).status.code(),
        Some(2)
    );
    assert_eq!(run(&mut nfkit()).status.code(), Some(2));
    let help = run(nfkit().arg("--help"));
    assert_eq!(help.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&help.stdout).contains("conntrack"));
    assert_eq!(run(nfkit().arg("--version")).status.code(), Some(0));
}

#[test]
fn tables_show_offline_is_refused() {
    let dir = fake_host();
    let output = run(nfkit()
        .arg("--root")
        .arg(dir.path())
        .args(["tables", "show", "nat"]));
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("--root"));
}
