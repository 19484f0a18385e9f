//! The two rules `nfkit import` uses to tell a netfilter module, checked
//! against each other on every module of a real Debian kernel package: the
//! module tree's placement (a `netfilter` directory below `kernel/net/`, or
//! br_netfilter) and the name rule used when no tree places a name. Where
//! they agree on the real tree, a host without its module tree (an image
//! being prepared, a container) imports the same modules.
//!
//! The fixture comes from tests/support/kernel-tree; if it cannot be had the
//! test fails (never skips).

#[path = "support/tree.rs"]
mod tree;

use std::process::Command;

use nfkit::persist::import_scope::{ModuleLayer, netfilter_by_name, placement};
use serde_json::Value;

#[test]
fn name_rule_agrees_with_the_tree_on_every_module() {
    let t = tree::kernel_tree();
    let moddir = t.moddir();
    let dep = std::fs::read_to_string(moddir.join("modules.dep")).unwrap();
    let builtin = std::fs::read_to_string(moddir.join("modules.builtin")).unwrap();
    let mut netfilter = 0;
    let mut disagree = Vec::new();
    let mut total = 0;
    for line in dep.lines().chain(builtin.lines()) {
        let path = line.split(':').next().unwrap();
        let Some((name, placed)) = placement(path) else {
            panic!("{path}: a Debian kernel package holds only in-tree modules")
        };
        total += 1;
        netfilter += usize::from(placed);
        if placed != netfilter_by_name(&name) {
            disagree.push(format!("{path}: tree says {placed}"));
        }
    }
    assert!(total > 1000, "only {total} modules in {}", moddir.display());
    // Debian 6.1: about 240 netfilter modules (x_tables, xt_*, nf_*, nft_*,
    // ip(6)table_*, ebt_*, ip_set*, ip_vs*, br_netfilter, ...).
    assert!(netfilter > 150, "only {netfilter} netfilter modules");
    assert!(disagree.is_empty(), "{}", disagree.join("\n"));
    let layer = ModuleLayer::from_trees([dep.as_str(), builtin.as_str()]);
    for name in [
        "nf_conntrack",
        "xt_state",
        "br_netfilter",
        "ip_conntrack",
        "ebtables",
    ] {
        assert!(layer.is_netfilter(name), "{name}");
    }
    for name in [
        "bonding", "dummy", "snd_pcsp", "ifb", "bridge", "ip_gre", "loop",
    ] {
        assert!(!layer.is_netfilter(name), "{name}");
    }
}

/// Through the binary, on a root holding the real tree: every module of the
/// tree listed in /etc/modules-load.d, and only the netfilter ones imported.
#[test]
fn import_on_a_real_tree_keeps_the_netfilter_modules() {
    let t = tree::kernel_tree();
    let dep = std::fs::read_to_string(t.moddir().join("modules.dep")).unwrap();
    let names: Vec<String> = dep
        .lines()
        .filter_map(|l| placement(l.split(':').next().unwrap()))
        .map(|(n, _)| n)
        .collect();
    let want: Vec<&String> = dep
        .lines()
        .filter_map(|l| placement(l.split(':').next().unwrap()))
        .zip(&names)
        .filter(|((_, nf), _)| *nf)
        .map(|(_, n)| n)
        .collect();
    let root = tempfile::tempdir().unwrap();
    let r = root.path();
    std::fs::create_dir_all(r.join("lib")).unwrap();
    std::os::unix::fs::symlink(t.root.join("lib/modules"), r.join("lib/modules")).unwrap();
    std::fs::create_dir_all(r.join("etc/modules-load.d")).unwrap();
    std::fs::write(r.join("etc/modules-load.d/all.conf"), names.join("\n")).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--root")
        .arg(r)
        .args(["--json", "import"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let load: Vec<&str> = report["desired"]["modules"]["load"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap())
        .collect();
    assert_eq!(load, want.iter().map(|s| s.as_str()).collect::<Vec<_>>());
    assert_eq!(
        report["skipped"].as_array().unwrap().len(),
        names.len() - want.len()
    );
}
