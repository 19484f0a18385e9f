//! `nfkit status` on fake roots of containers and restricted hosts (issue
//! 14 §6): OpenVZ/Virtuozzo container and hardware node, a container
//! without /lib/modules, a process without CAP_SYS_MODULE or outside the
//! initial user namespace. Offline, the facts come from DIR/proc.

mod support;

use std::path::Path;

use serde_json::Value;
use support::{nfkit, run, write};

const BEANCOUNTERS: &str = "Version: 2.5
       uid  resource                     held              maxheld              barrier                limit              failcnt
      101:  kmemsize                  2752512              3305472             14372700             14790164                    0
            numiptent                      20                   22                  128                  128                    3
";

const INIT_UID_MAP: &str = "         0          0 4294967295\n";
const CAPS_ALL: &str = "Name:\tnfkit\nCapEff:\t000001ffffffffff\n";
const CAPS_NO_SYS_MODULE: &str = "Name:\tnfkit\nCapEff:\t000001fffffeffff\n";

fn fake(release_tree: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "proc/sys/kernel/osrelease", "6.1.0-99-amd64\n");
    write(r, "proc/modules", "");
    write(r, "proc/self/uid_map", INIT_UID_MAP);
    write(r, "proc/self/status", CAPS_ALL);
    if release_tree {
        std::fs::create_dir_all(r.join("lib/modules/6.1.0-99-amd64")).unwrap();
    }
    dir
}

fn status(root: &Path) -> (Value, String) {
    let out = run(nfkit().arg("--root").arg(root).args(["--json", "status"]));
    assert!(out.status.success(), "{out:?}");
    let text = run(nfkit().arg("--root").arg(root).arg("status"));
    (
        serde_json::from_slice(&out.stdout).unwrap(),
        String::from_utf8_lossy(&text.stdout).into_owned(),
    )
}

fn outcome(v: &Value, op: &str) -> String {
    v["containment"]["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["operation"] == op)
        .unwrap_or_else(|| panic!("no {op}: {v:#}"))["outcome"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[test]
fn plain_host_can_do_everything_here() {
    let d = fake(true);
    let (v, text) = status(d.path());
    assert_eq!(v["containment"]["container"], Value::Null);
    for op in [
        "module loads",
        "conntrack limits",
        "module parameters in /sys",
    ] {
        assert_eq!(outcome(&v, op), "here", "{v:#}");
    }
    assert!(
        !text.contains("on the host") && !text.contains("openvz"),
        "{text}"
    );
}

#[test]
fn openvz_container_is_named_with_its_restrictions() {
    let d = fake(true);
    std::fs::create_dir_all(d.path().join("proc/vz")).unwrap();
    write(d.path(), "proc/user_beancounters", BEANCOUNTERS);
    let (v, text) = status(d.path());
    let vz = &v["containment"]["openvz"];
    assert_eq!(vz["role"], "container", "{v:#}");
    assert_eq!(vz["numiptent"], serde_json::json!([20, 128, 3]));
    assert_eq!(v["containment"]["container"], "openvz");
    assert_eq!(outcome(&v, "module loads"), "must_be_done_on_host");
    assert_eq!(outcome(&v, "conntrack limits"), "must_be_done_on_host");
    assert!(text.contains("OpenVZ/Virtuozzo container"), "{text}");
    assert!(text.contains("--netfilter"), "{text}");
    assert!(text.contains("20 held of 128, 3 refused"), "{text}");
    // The hardware node: /proc/bc.
    std::fs::create_dir_all(d.path().join("proc/bc")).unwrap();
    let (v, _) = status(d.path());
    assert_eq!(v["containment"]["openvz"]["role"], "host_node");
    assert_eq!(outcome(&v, "module loads"), "here");
}

#[test]
fn no_module_tree_no_capability_and_user_namespaces() {
    let d = fake(false);
    let (v, text) = status(d.path());
    assert_eq!(outcome(&v, "module loads"), "unavailable", "{v:#}");
    assert!(
        text.contains("unavailable  module loads: no /lib/modules"),
        "{text}"
    );
    write(d.path(), "proc/self/status", CAPS_NO_SYS_MODULE);
    let (v, _) = status(d.path());
    assert_eq!(outcome(&v, "module loads"), "must_be_done_on_host", "{v:#}");
    write(d.path(), "proc/self/status", CAPS_ALL);
    write(d.path(), "proc/self/uid_map", "0 100000 65536\n");
    let (v, text) = status(d.path());
    assert_eq!(outcome(&v, "module loads"), "must_be_done_on_host", "{v:#}");
    assert!(text.contains("initial user namespace"), "{text}");
    // A kernel without module support: unavailable, whatever else.
    std::fs::remove_file(d.path().join("proc/modules")).unwrap();
    let (v, _) = status(d.path());
    assert_eq!(outcome(&v, "module loads"), "unavailable", "{v:#}");
}
