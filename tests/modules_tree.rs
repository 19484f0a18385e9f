//! Differential tests against a real Debian kernel module tree: for every
//! name of the seed guide (PCS iptables modules) and a set of modern names,
//! `nfkit --root ROOT modules resolve|load --dry-run NAME` must give the same
//! module sequence (paths, options, install commands) as kmod's own
//! `modprobe -d ROOT -S REL -C ... --show-depends NAME`. kmod is the oracle.
//! modprobe.d cases (blacklist, install, softdep, options) run on an overlay
//! of the fixture with its own etc/modprobe.d.
//!
//! The fixture comes from tests/support/kernel-tree; if it cannot be had the
//! tests fail (never skip).

#[path = "support/tree.rs"]
mod tree;

use std::path::Path;
use std::process::Command;

use serde_json::Value;

/// The seed guide's first list (`xt_multipor t` is a typo for xt_multiport).
const SEED_LIST_1: &[&str] = &[
    "ipt_REJECT",
    "iptable_filter",
    "iptable_mangle",
    "xt_length",
    "xt_hl",
    "xt_tcpmss",
    "xt_TCPMSS",
    "xt_multiport",
    "xt_limit",
    "xt_dscp",
];

/// The seed guide's conntrack list.
const SEED_LIST_2: &[&str] = &[
    "ip_conntrack",
    "ip_conntrack_ftp",
    "ip_conntrack_irc",
    "ip_conntrack_netbios_ns",
    "ip_nat_ftp",
    "ip_nat_irc",
    "ipt_comment",
    "ipt_conntrack",
    "ipt_helper",
    "ipt_length",
    "ipt_limit",
    "ipt_LOG",
    "ipt_multiport",
    "ipt_REDIRECT",
    "ipt_REJECT",
    "ipt_state",
    "ipt_tcp",
    "ipt_TCPMSS",
    "ipt_tcpmss",
    "ipt_tos",
    "ipt_TOS",
    "ipt_ttl",
    "iptable_filter",
    "iptable_mangle",
    "iptable_nat",
];

const MODERN: &[&str] = &[
    "nf_conntrack",
    "nf_nat",
    "xt_conntrack",
    "xt_state",
    "nft_ct",
    "nf_tables",
    "nft_nat",
    "nft_chain_nat",
    "nf_conntrack_ftp",
    "xt_MASQUERADE",
    "xt_nat",
    "ip6table_filter",
    "ip6t_REJECT",
    "br_netfilter",
    "nfnetlink_queue",
];

/// One step: (what, detail, options) where what is `insmod PATH`,
/// `builtin NAME` or `install CMD`.
type Seq = Vec<(String, String)>;

fn modprobe_seq(root: &Path, release: &str, extra: &[&str], name: &str) -> Seq {
    let mut cmd = Command::new("modprobe");
    cmd.arg("-d").arg(root).arg("-S").arg(release);
    for d in nfkit::modules::config_dirs(root) {
        cmd.arg("-C").arg(d);
    }
    cmd.args(extra).arg("--show-depends").arg(name);
    let out = cmd
        .output()
        .expect("cannot run modprobe (kmod is the oracle: install kmod)");
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (kind, rest) = l.split_once(' ').unwrap_or((l, ""));
            match kind {
                "insmod" => {
                    let (path, opts) = rest.split_once(' ').unwrap_or((rest, ""));
                    (format!("insmod {path}"), opts.trim().to_owned())
                }
                // `install CMD OPTIONS`: our JSON carries the command and the
                // options separately; compare the joined form.
                "install" => (format!("install {}", rest.trim()), String::new()),
                _ => (format!("{kind} {}", rest.trim()), String::new()),
            }
        })
        .collect()
}

fn nfkit(root: &Path, release: &str, args: &[&str]) -> (bool, Value) {
    let out = Command::new(env!("CARGO_BIN_EXE_nfkit"))
        .arg("--json")
        .arg("--root")
        .arg(root)
        .arg("modules")
        .args(args.iter().take(1))
        .arg("--kernel-release")
        .arg(release)
        .args(args.iter().skip(1))
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "nfkit {args:?} printed invalid JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.success(), v)
}

fn json_seq(result: &Value) -> Seq {
    let mut s = Vec::new();
    for m in result["modules"].as_array().unwrap() {
        for st in m["sequence"].as_array().unwrap() {
            let opts = st["options"].as_str().unwrap_or("").to_owned();
            match st["action"].as_str().unwrap() {
                "insmod" => s.push((format!("insmod {}", st["path"].as_str().unwrap()), opts)),
                "builtin" => s.push((
                    format!("builtin {}", st["module"].as_str().unwrap()),
                    String::new(),
                )),
                "install" => s.push((
                    format!(
                        "install {}",
                        format!("{} {opts}", st["install_command"].as_str().unwrap()).trim()
                    ),
                    String::new(),
                )),
                other => panic!("unknown action {other}"),
            }
        }
    }
    s
}

fn resolve_seq(root: &Path, release: &str, name: &str) -> Seq {
    let (ok, v) = nfkit(root, release, &["resolve", name]);
    assert!(ok, "resolve {name} failed: {v:#}");
    json_seq(&v["results"][0])
}

fn dry_run_seq(root: &Path, release: &str, extra: &[&str], name: &str) -> (bool, Value, Seq) {
    let mut args = vec!["load", "--dry-run"];
    args.extend_from_slice(extra);
    args.push(name);
    let (ok, v) = nfkit(root, release, &args);
    let seq = json_seq(&v["results"][0]);
    (ok, v, seq)
}

fn check_name(root: &Path, release: &str, name: &str) {
    let want = modprobe_seq(root, release, &[], name);
    assert!(!want.is_empty(), "modprobe shows nothing for {name}");
    assert_eq!(
        resolve_seq(root, release, name),
        want,
        "resolve {name} vs modprobe --show-depends"
    );
    let (ok, v, got) = dry_run_seq(root, release, &[], name);
    assert!(ok, "load --dry-run {name} failed: {v:#}");
    assert_eq!(
        got, want,
        "load --dry-run {name} vs modprobe --show-depends"
    );
}

#[test]
fn seed_guide_names_match_modprobe() {
    let t = tree::kernel_tree();
    let mut n = 0;
    for name in SEED_LIST_1.iter().chain(SEED_LIST_2) {
        check_name(&t.root, &t.release, name);
        n += 1;
    }
    eprintln!("{n} seed names: nfkit == modprobe --show-depends");
}

#[test]
fn modern_names_match_modprobe() {
    let t = tree::kernel_tree();
    for name in MODERN {
        check_name(&t.root, &t.release, name);
    }
    eprintln!(
        "{} modern names: nfkit == modprobe --show-depends",
        MODERN.len()
    );
}

#[test]
fn legacy_aliases_resolve_to_modern_modules() {
    let t = tree::kernel_tree();
    for (old, new) in [
        ("ip_conntrack", "nf_conntrack"),
        ("ipt_state", "xt_state"),
        ("ip_nat_ftp", "nf_nat_ftp"),
        ("ipt_tcp", "xt_tcpudp"),
        ("ipt_ttl", "xt_hl"),
        ("ipt_tos", "xt_dscp"),
    ] {
        let (ok, v) = nfkit(&t.root, &t.release, &["resolve", old]);
        assert!(ok);
        let r = &v["results"][0];
        assert_eq!(r["modules"][0]["module"], new, "{old}");
        assert_eq!(r["modules"][0]["via_alias"], true);
        assert!(r["legacy"].as_str().unwrap().contains(new), "{r:#}");
    }
}

#[test]
fn unknown_names_fail_with_suggestions() {
    let t = tree::kernel_tree();
    let (ok, v) = nfkit(
        &t.root,
        &t.release,
        &["resolve", "xt_multipor", "ipt_ULOG", "nf_conntrack"],
    );
    assert!(
        !ok,
        "a name that resolves to nothing must make the command fail"
    );
    let r = &v["results"];
    assert_eq!(r[0]["found"], false);
    assert_eq!(r[0]["suggestions"][0], "xt_multiport");
    assert_eq!(r[0]["error"]["kind"], "not_found");
    assert!(
        r[1]["legacy"]
            .as_str()
            .unwrap()
            .contains("removed in Linux 3.17")
    );
    assert_eq!(r[2]["found"], true, "later names still resolve");
    // Loading a list goes past a failed name.
    let (ok, v) = nfkit(
        &t.root,
        &t.release,
        &["load", "--dry-run", "xt_multipor", "xt_state"],
    );
    assert!(!ok);
    assert_eq!(v["results"][0]["ok"], false);
    assert_eq!(v["results"][1]["ok"], true);
    // Invalid names never reach libkmod.
    let (ok, v) = nfkit(&t.root, &t.release, &["resolve", "../../etc/passwd"]);
    assert!(!ok);
    assert_eq!(v["results"][0]["error"]["kind"], "invalid_name");
}

#[test]
fn offline_tree_refuses_real_changes() {
    let t = tree::kernel_tree();
    let (ok, v) = nfkit(&t.root, &t.release, &["load", "xt_state"]);
    assert!(!ok);
    let err = &v["results"][0]["modules"][0]["error"];
    assert_eq!(err["kind"], "target", "{v:#}");
    assert!(err["message"].as_str().unwrap().contains("--dry-run"));
}

use tree::overlay;

#[test]
fn blacklist_applies_to_aliases_only_by_default() {
    let t = tree::kernel_tree();
    let o = overlay("blacklist xt_state\n");
    // modprobe: alias → nothing shown (and exit 0); name → loads.
    assert!(modprobe_seq(&o.root, &t.release, &[], "ipt_state").is_empty());
    let (ok, v, seq) = dry_run_seq(&o.root, &t.release, &[], "ipt_state");
    assert!(!ok, "a blacklisted alias is reported, not a silent success");
    assert!(seq.is_empty());
    assert_eq!(
        v["results"][0]["modules"][0]["error"]["kind"],
        "blacklisted"
    );
    check_name(&o.root, &t.release, "xt_state");
    // -b / --apply-blacklist: names too.
    assert!(modprobe_seq(&o.root, &t.release, &["-b"], "xt_state").is_empty());
    let (ok, v, _) = dry_run_seq(&o.root, &t.release, &["--apply-blacklist"], "xt_state");
    assert!(!ok);
    assert_eq!(
        v["results"][0]["modules"][0]["error"]["kind"],
        "blacklisted"
    );
    // resolve shows the state.
    let (_, v) = nfkit(&o.root, &t.release, &["resolve", "ipt_state"]);
    let m = &v["results"][0]["modules"][0];
    assert_eq!(m["blacklisted"], true);
    assert_eq!(m["would_load"], false);
}

#[test]
fn install_commands_are_reported_never_run() {
    let t = tree::kernel_tree();
    let marker = std::env::temp_dir().join(format!("nfkit-install-ran-{}", std::process::id()));
    let conf = format!(
        "install xt_tcpudp /bin/true\ninstall xt_multiport touch {} && /sbin/modprobe --ignore-install xt_multiport\n",
        marker.display()
    );
    let o = overlay(&conf);
    // Same sequence as modprobe, `install` steps included.
    for name in ["xt_tcpudp", "ipt_tcp", "xt_multiport"] {
        let want = modprobe_seq(&o.root, &t.release, &[], name);
        assert!(
            want.iter().any(|(s, _)| s.starts_with("install ")),
            "{want:?}"
        );
        assert_eq!(resolve_seq(&o.root, &t.release, name), want, "{name}");
    }
    let (ok, v, _) = dry_run_seq(&o.root, &t.release, &[], "xt_tcpudp");
    assert!(!ok);
    assert_eq!(
        v["results"][0]["modules"][0]["error"]["kind"],
        "disabled_by_policy"
    );
    let (ok, v, _) = dry_run_seq(&o.root, &t.release, &[], "xt_multiport");
    assert!(!ok);
    let err = &v["results"][0]["modules"][0]["error"];
    assert_eq!(err["kind"], "command_refused");
    assert!(
        err["message"].as_str().unwrap().contains("touch"),
        "{err:#}"
    );
    // --ignore-install == modprobe -i.
    let want = modprobe_seq(&o.root, &t.release, &["-i"], "xt_multiport");
    let (ok, _, got) = dry_run_seq(&o.root, &t.release, &["--ignore-install"], "xt_multiport");
    assert!(ok);
    assert_eq!(got, want);
    assert!(!marker.exists(), "an install command was run");
}

#[test]
fn softdeps_and_options_match_modprobe() {
    let t = tree::kernel_tree();
    let o = overlay(
        "softdep xt_state pre: xt_comment post: xt_limit\n\
         options nf_conntrack hashsize=4096 acct=1\n\
         options ip_conntrack ip_conntrack_disable_ve0=0\n\
         options xt_state foo=\"a b\"\n",
    );
    for name in [
        "xt_state",
        "ipt_state",
        "nf_conntrack",
        "ip_conntrack",
        "iptable_nat",
    ] {
        check_name(&o.root, &t.release, name);
    }
    // The alias-keyed line applies only when loading by that alias.
    let (_, v) = nfkit(
        &o.root,
        &t.release,
        &["resolve", "ip_conntrack", "nf_conntrack"],
    );
    let opts = |i: usize| v["results"][i]["modules"][0]["options"].to_string();
    assert!(opts(0).contains("ip_conntrack_disable_ve0"), "{}", opts(0));
    assert!(!opts(1).contains("ip_conntrack_disable_ve0"), "{}", opts(1));
    let (_, v) = nfkit(&o.root, &t.release, &["resolve", "xt_state"]);
    let sd = &v["results"][0]["modules"][0]["softdeps"];
    assert_eq!(sd["pre"][0], "xt_comment");
    assert_eq!(sd["post"][0], "xt_limit");
    // Given options come last and win.
    let (ok, v, seq) = dry_run_seq(&o.root, &t.release, &[], "nf_conntrack");
    assert!(ok);
    assert_eq!(seq.last().unwrap().1, "hashsize=4096 acct=1");
    let (ok, v2) = nfkit(
        &o.root,
        &t.release,
        &["load", "--dry-run", "nf_conntrack", "hashsize=65536"],
    );
    assert!(ok, "{v2:#}");
    let m = &v2["results"][0]["modules"][0];
    assert_eq!(
        m["sequence"].as_array().unwrap().last().unwrap()["options"],
        "hashsize=4096 acct=1 hashsize=65536"
    );
    assert_eq!(m["options"][0]["value"], "65536");
    assert_eq!(m["options"][0]["source"], "given");
    drop(v);
}

/// kmod 28's depmod (Debian 11, kernel 5.10) leaves an empty
/// modules.builtin.alias.bin; modprobe reads it as "no entries", and so
/// must nfkit's index check (found by the vm-tests kernel matrix: every load
/// on 5.10 failed as "damaged module index").
#[test]
fn an_empty_builtin_alias_index_is_no_entries_as_for_modprobe() {
    let o = overlay("");
    let t = tree::kernel_tree();
    let index = o
        .root
        .join("lib/modules")
        .join(&t.release)
        .join("modules.builtin.alias.bin");
    // Replace, never truncate: the overlay's files are hard links to the fixture.
    std::fs::remove_file(&index).unwrap();
    std::fs::write(&index, b"").unwrap();
    for name in ["nf_conntrack", "ipt_REJECT", "ip_conntrack", "xt_state"] {
        check_name(&o.root, &t.release, name);
    }
}
