//! `nfkit explain` on the real kernel, each test in a fresh network
//! namespace: conntrack helper assignment (issue 14 §2) against rules made
//! by the real `nft`, `iptables-legacy` and `iptables-nft`, and the
//! outcomes of built-in and absent modules on this machine (netfilter built
//! in, no loadable module support).

mod support;

use serde_json::Value;
use support::*;

/// This machine's kernel has the FTP helper built in; check it rather than
/// assume it.
fn ftp_helper_is_built_in() {
    assert!(
        std::path::Path::new("/sys/module/nf_conntrack_ftp").is_dir(),
        "these tests need nf_conntrack_ftp in the kernel (/sys/module/nf_conntrack_ftp missing)"
    );
}

fn explain(name: &str) -> Value {
    let out = run(nfkit().args(["--json", "explain", name]));
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "explain {name}: invalid JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

fn helper(report: &Value) -> &Value {
    &report["results"][0]["helper"]
}

#[test]
fn helper_without_assignment_warns_and_a_used_nft_ct_helper_clears_it() {
    ftp_helper_is_built_in();
    in_fresh_netns(|| {
        let before = explain("nf_conntrack_ftp");
        assert_eq!(before["results"][0]["ok"], true, "{before:#}");
        assert_eq!(helper(&before)["assigned"], false, "{before:#}");
        let w = helper(&before)["warning"].as_str().unwrap();
        assert!(w.contains("does nothing"), "{w}");
        assert!(
            helper(&before)["fix"]
                .as_str()
                .unwrap()
                .contains("ct helper set")
        );

        ok(&mut tool("nft", ["add table inet t"]));
        ok(&mut tool(
            "nft",
            ["add ct helper inet t ftp-std { type \"ftp\" protocol tcp; }"],
        ));
        let unused = explain("nf_conntrack_ftp");
        assert_eq!(
            helper(&unused)["assigned"],
            false,
            "an object alone assigns nothing"
        );
        assert!(
            helper(&unused)["unused_objects"][0]
                .as_str()
                .unwrap()
                .contains("ftp-std"),
            "{unused:#}"
        );

        ok(&mut tool(
            "nft",
            ["add chain inet t pre { type filter hook prerouting priority filter; }"],
        ));
        ok(&mut tool(
            "nft",
            ["add rule inet t pre tcp dport 21 ct helper set \"ftp-std\""],
        ));
        let after = explain("nf_conntrack_ftp");
        assert_eq!(helper(&after)["assigned"], true, "{after:#}");
        assert!(helper(&after).get("warning").is_none(), "{after:#}");
        assert!(
            helper(&after)["assigned_by"][0]
                .as_str()
                .unwrap()
                .contains("ftp-std"),
            "{after:#}"
        );
        // Another helper is still unassigned.
        let irc = explain("nf_conntrack_irc");
        assert_eq!(helper(&irc)["assigned"], false, "{irc:#}");
        // The legacy name is the same helper.
        let legacy = explain("ip_conntrack_ftp");
        assert_eq!(helper(&legacy)["assigned"], true, "{legacy:#}");
    });
}

/// A raw-table `-j CT --helper ftp` rule added by `creator` assigns the FTP
/// helper (named by `evidence`) and no other.
fn ct_rule_assigns_ftp(creator: &'static str, evidence: &'static str) {
    ftp_helper_is_built_in();
    in_fresh_netns(move || {
        ok(&mut tool(
            creator,
            [
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "--dport",
                "21",
                "-j",
                "CT",
                "--helper",
                "ftp",
            ],
        ));
        let r = explain("nf_conntrack_ftp");
        assert_eq!(helper(&r)["assigned"], true, "{r:#}");
        assert!(
            helper(&r)["assigned_by"][0]
                .as_str()
                .unwrap()
                .contains(evidence),
            "{r:#}"
        );
        assert_eq!(helper(&explain("nf_conntrack_sip"))["assigned"], false);
    });
}

#[test]
fn legacy_raw_ct_rule_assigns_the_helper() {
    ct_rule_assigns_ftp("iptables-legacy", "legacy x_tables");
}

#[test]
fn iptables_nft_ct_rule_assigns_the_helper() {
    ct_rule_assigns_ftp("iptables-nft", "iptables-nft");
}

#[test]
fn built_in_and_absent_modules_on_this_kernel() {
    ftp_helper_is_built_in();
    let r = explain("nf_conntrack");
    assert_eq!(r["results"][0]["outcome"], "already_satisfied", "{r:#}");
    assert_eq!(
        r["results"][0]["modules"][0]["reasons"][0]["kind"],
        "built_in"
    );
    let out = run(nfkit().args(["--json", "explain", "nfkit_no_such_module"]));
    assert_eq!(out.status.code(), Some(1));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["results"][0]["outcome"], "unavailable", "{v:#}");
    assert_eq!(v["results"][0]["reasons"][0]["kind"], "not_in_tree");
    // Without /proc/modules the kernel cannot load anything: both reasons.
    let no_support = v["results"][0]["reasons"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["kind"] == "no_module_support");
    assert_eq!(
        no_support,
        !std::path::Path::new("/proc/modules").exists(),
        "{v:#}"
    );
}

/// `verify` names a desired helper module that nothing assigns, and stops
/// once an nft rule uses a ct helper object of it. The warning does not
/// change verify's exit code (apply cannot fix it).
#[test]
fn verify_warns_about_a_desired_helper_nothing_assigns() {
    ftp_helper_is_built_in();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("nfkit.toml");
    std::fs::write(&config, "[modules]\nload = [\"ip_conntrack_ftp\"]\n").unwrap();
    let config = config.to_str().unwrap().to_owned();
    in_fresh_netns(move || {
        let verify = || {
            let out = run(nfkit().args(["--json", "--config", &config, "verify"]));
            let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
                panic!(
                    "verify: invalid JSON ({e}): {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            (out.status.code(), v)
        };
        let (code, before) = verify();
        let h = &before["helpers"][0];
        assert_eq!(h["module"], "ip_conntrack_ftp", "{before:#}");
        assert_eq!(h["assigned"], false);
        assert!(h["warning"].as_str().unwrap().contains("does nothing"));
        let text = ok_or_differs(&config);
        assert!(
            text.contains("warning: ip_conntrack_ftp does nothing"),
            "{text}"
        );
        ok(&mut tool(
            "nft",
            [
                "add table inet t; add ct helper inet t f { type \"ftp\" protocol tcp; }; \
              add chain inet t pre { type filter hook prerouting priority filter; }; \
              add rule inet t pre tcp dport 21 ct helper set \"f\"",
            ],
        ));
        let (code_after, after) = verify();
        assert_eq!(after["helpers"][0]["assigned"], true, "{after:#}");
        assert_eq!(
            code, code_after,
            "the helper check does not change the exit code"
        );
    });
}

fn ok_or_differs(config: &str) -> String {
    let out = run(nfkit().args(["--config", config, "verify"]));
    assert!(matches!(out.status.code(), Some(0 | 3)), "{out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// §6: in a non-initial network namespace `status` says the conntrack
/// limits must be set on the host; in the initial one, here.
#[test]
fn status_says_limits_are_for_the_host_in_a_namespace() {
    let outcome = |v: &Value| {
        v["containment"]["capabilities"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["operation"] == "conntrack limits")
            .unwrap()["outcome"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let inside = in_fresh_netns(|| nfkit_json(&["status"]));
    assert_eq!(outcome(&inside), "must_be_done_on_host", "{inside:#}");
    let text = in_fresh_netns(|| ok(nfkit().arg("status")));
    assert!(text.contains("on the host  conntrack limits"), "{text}");
    assert_eq!(outcome(&nfkit_json(&["status"])), "here");
}
