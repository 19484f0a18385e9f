//! `status` and `tables` name the iptables backends in use, each test in a
//! fresh network namespace with the real creators as oracles:
//! `iptables-legacy`, `iptables-nft` (package iptables) and `nft`.

mod support;

use serde_json::Value;
use support::*;

fn backends(args: &[&str]) -> Value {
    nfkit_json(args)
        .pointer(if args[0] == "status" {
            "/tables/backends"
        } else {
            "/backends"
        })
        .cloned()
        .expect("backends in the report")
}

fn names(list: &Value) -> Vec<String> {
    list.as_array()
        .expect("array")
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["family"].as_str().unwrap(),
                t["table"].as_str().unwrap()
            )
        })
        .collect()
}

#[test]
fn fresh_namespace_uses_no_backend() {
    in_fresh_netns(|| {
        for cmd in ["status", "tables"] {
            let b = backends(&[cmd]);
            assert_eq!(b["in_use"], serde_json::json!([]), "{b:#}");
            assert!(b["conflict"].is_null());
            assert_eq!(names(&b["legacy_tables"]), Vec::<String>::new());
            assert_ne!(
                b["ip_tables"], "absent",
                "ip_tables_names exists here: {b:#}"
            );
        }
    });
}

#[test]
fn legacy_only_and_nft_only_are_told_apart() {
    in_fresh_netns(|| {
        ok(&mut tool(
            "iptables-legacy",
            ["-A", "INPUT", "-j", "ACCEPT"],
        ));
        let b = backends(&["tables"]);
        assert_eq!(b["in_use"], serde_json::json!(["legacy"]), "{b:#}");
        assert_eq!(names(&b["legacy_tables"]), ["ipv4 filter"]);
        assert_eq!(b["legacy_tables"][0]["rules"], 1);
        assert!(b["conflict"].is_null());
        // iptables-legacy -L instantiates nat: empty, not "in use" by itself.
        ok(&mut tool("iptables-legacy", ["-t", "nat", "-L"]));
        let b = backends(&["tables"]);
        let nat = b["legacy_tables"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["table"] == "nat")
            .expect("nat instantiated");
        assert_eq!(nat["populated"], false);
    });
    in_fresh_netns(|| {
        ok(&mut tool("iptables-nft", ["-A", "FORWARD", "-j", "DROP"]));
        ok(&mut tool("nft", ["add table inet mine"]));
        ok(&mut tool(
            "nft",
            ["add chain inet mine input { type filter hook input priority 0; }"],
        ));
        let b = backends(&["status"]);
        assert_eq!(b["in_use"], serde_json::json!(["nft"]), "{b:#}");
        assert_eq!(names(&b["iptables_nft_tables"]), ["ip filter"]);
        assert_eq!(names(&b["native_nft_tables"]), ["inet mine"]);
        assert!(b["conflict"].is_null());
        // The nft tool's own view agrees: the iptables-nft rule is in ip filter.
        let listed = ok(&mut tool("nft", ["list", "table", "ip", "filter"]));
        assert!(listed.contains("chain FORWARD"), "{listed}");
    });
}

#[test]
fn both_backends_with_rules_are_a_conflict_and_kube_chains_are_named() {
    in_fresh_netns(|| {
        ok(&mut tool(
            "iptables-legacy",
            ["-A", "OUTPUT", "-j", "ACCEPT"],
        ));
        ok(&mut tool(
            "iptables-nft",
            ["-t", "mangle", "-N", "KUBE-IPTABLES-HINT"],
        ));
        ok(&mut tool(
            "iptables-legacy",
            ["-t", "nat", "-N", "KUBE-KUBELET-CANARY"],
        ));
        let b = backends(&["tables"]);
        assert_eq!(b["in_use"], serde_json::json!(["legacy", "nft"]), "{b:#}");
        let conflict = b["conflict"].as_str().expect("conflict");
        assert!(
            conflict.contains("ipv4 filter") && conflict.contains("ip mangle"),
            "{conflict}"
        );
        let kube: Vec<(String, String, String)> = b["kubernetes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|k| {
                (
                    k["chain"].as_str().unwrap().to_string(),
                    k["backend"].as_str().unwrap().to_string(),
                    k["table"].as_str().unwrap().to_string(),
                )
            })
            .collect();
        assert!(
            kube.contains(&(
                "KUBE-IPTABLES-HINT".into(),
                "nft".into(),
                "ip mangle".into()
            )),
            "{kube:?}"
        );
        assert!(
            kube.contains(&(
                "KUBE-KUBELET-CANARY".into(),
                "legacy".into(),
                "ipv4 nat".into()
            )),
            "{kube:?}"
        );
        let text = ok(nfkit().arg("status"));
        assert!(text.contains("CONFLICT"), "{text}");
        assert!(text.contains("KUBE-IPTABLES-HINT in ip mangle"), "{text}");
        // Flushing the legacy side ends the conflict.
        ok(&mut tool("iptables-legacy", ["-F"]));
        ok(&mut tool("iptables-legacy", ["-t", "nat", "-X"]));
        let b = backends(&["tables"]);
        assert_eq!(b["in_use"], serde_json::json!(["nft"]), "{b:#}");
        assert!(b["conflict"].is_null());
    });
}
