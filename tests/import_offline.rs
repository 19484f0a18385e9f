//! `nfkit import` through the binary on file trees (`--root`): by default
//! only the admin's netfilter configuration is imported (vendor defaults in
//! /usr/lib/modprobe.d stay where they are, and `apply` does not copy them
//! into /etc); `--all` adds them and lists each; a PCS host still imports
//! everything it has. No privileges needed.

mod support;

use std::fs;
use std::path::Path;
use std::process::Command;

use serde_json::{Value, json};
use support::{nfkit, ok, run};

fn write(root: &Path, rel: &str, text: &str) {
    let p = root.join(rel.trim_start_matches('/'));
    fs::create_dir_all(p.parent().unwrap()).unwrap();
    fs::write(p, text).unwrap();
}

fn read(root: &Path, rel: &str) -> String {
    fs::read_to_string(root.join(rel.trim_start_matches('/')))
        .unwrap_or_else(|e| panic!("{rel}: {e}"))
}

fn with_root(root: &Path) -> Command {
    let mut c = nfkit();
    c.arg("--root").arg(root);
    c
}

fn json_of(command: &mut Command) -> Value {
    let text = ok(command.arg("--json"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("invalid JSON ({e}):\n{text}"))
}

const HEADER: &str =
    "# Managed by nfkit from /etc/nfkit/nfkit.toml: `nfkit apply` replaces this file.\n";

/// A stock Debian 12 host with systemd, as installed: the vendor files of
/// kmod, systemd and procps, Debian's /etc/modules and sysctl.conf link;
/// `with_tree` adds a module tree (modules.dep) for the running kernel.
fn stock_debian(with_tree: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/lib/systemd/systemd", "");
    fs::create_dir_all(r.join("sbin")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
    write(r, "/etc/debian_version", "12.5\n");
    write(
        r,
        "/usr/lib/modprobe.d/aliases.conf",
        "# These are the standard aliases and dependencies.\n\
         options snd-pcsp index=-2\n\
         options cx88_alsa index=-2\n\
         softdep uhci-hcd pre: ehci-hcd\n",
    );
    write(
        r,
        "/usr/lib/modprobe.d/systemd.conf",
        "# Load network devices without creating extra ones\n\
         options bonding max_bonds=0\n\
         options dummy numdummies=0\n\
         options ifb numifbs=0\n",
    );
    write(
        r,
        "/usr/lib/sysctl.d/50-pid-max.conf",
        "kernel.pid_max = 4194304\n",
    );
    write(
        r,
        "/etc/modules",
        "# /etc/modules: kernel modules to load at boot time.\n",
    );
    fs::create_dir_all(r.join("etc/modules-load.d")).unwrap();
    std::os::unix::fs::symlink("../modules", r.join("etc/modules-load.d/modules.conf")).unwrap();
    write(r, "/etc/sysctl.conf", "#kernel.domainname = example.com\n");
    fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
    std::os::unix::fs::symlink("../sysctl.conf", r.join("etc/sysctl.d/99-sysctl.conf")).unwrap();
    if with_tree {
        write(
            r,
            "/lib/modules/6.1.0-9-amd64/modules.dep",
            "kernel/net/netfilter/nf_conntrack.ko.xz: kernel/net/netfilter/nf_defrag_ipv4.ko.xz\n\
             kernel/net/netfilter/xt_conntrack.ko.xz: kernel/net/netfilter/x_tables.ko.xz\n\
             kernel/drivers/net/bonding/bonding.ko.xz:\n\
             kernel/drivers/net/dummy.ko.xz:\n\
             kernel/drivers/net/ifb.ko.xz:\n\
             kernel/sound/drivers/pcsp/snd-pcsp.ko.xz:\n\
             kernel/drivers/media/pci/cx88/cx88-alsa.ko.xz:\n",
        );
        write(
            r,
            "/lib/modules/6.1.0-9-amd64/modules.builtin",
            "kernel/drivers/block/loop.ko\n",
        );
    }
    // The admin's own settings: one about netfilter, one not.
    write(
        r,
        "/etc/modprobe.d/local.conf",
        "options nf_conntrack hashsize=131072\noptions loop max_loop=64\n",
    );
    write(r, "/etc/modules-load.d/fw.conf", "xt_conntrack\n");
    write(
        r,
        "/etc/sysctl.d/60-ct.conf",
        "net.netfilter.nf_conntrack_max = 262144\nvm.swappiness = 10\n",
    );
    dir
}

/// Items of the JSON `added` / `skipped` lists as (source, kind, module or key).
fn items(list: &Value) -> Vec<(String, String, String)> {
    list.as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let item = &i["item"];
            let name = item["module"].as_str().or(item["key"].as_str()).unwrap();
            (
                i["source"].as_str().unwrap().to_string(),
                item["kind"].as_str().unwrap().to_string(),
                name.to_string(),
            )
        })
        .collect()
}

fn vendor_and_loop() -> Vec<(String, String, String)> {
    [
        ("/usr/lib/modprobe.d/aliases.conf:2", "options", "snd_pcsp"),
        ("/usr/lib/modprobe.d/aliases.conf:3", "options", "cx88_alsa"),
        ("/etc/modprobe.d/local.conf:2", "options", "loop"),
        ("/usr/lib/modprobe.d/systemd.conf:2", "options", "bonding"),
        ("/usr/lib/modprobe.d/systemd.conf:3", "options", "dummy"),
        ("/usr/lib/modprobe.d/systemd.conf:4", "options", "ifb"),
    ]
    .iter()
    .map(|(a, b, c)| (a.to_string(), b.to_string(), c.to_string()))
    .collect()
}

#[test]
fn stock_debian_imports_only_the_admins_netfilter_settings() {
    for with_tree in [true, false] {
        let dir = stock_debian(with_tree);
        let r = dir.path();
        let report = json_of(with_root(r).arg("import"));
        assert_eq!(
            report["desired"]["modules"],
            json!({"load": ["xt_conntrack"], "options": {}}),
            "tree: {with_tree}"
        );
        assert_eq!(report["desired"]["conntrack"]["max"], 262144);
        assert_eq!(report["desired"]["conntrack"]["buckets"], 131072);
        assert_eq!(report["desired"]["sysctl"], json!({}));
        assert_eq!(report["scope"], "netfilter");
        assert_eq!(report["added"], json!([]));
        assert_eq!(items(&report["skipped"]), vendor_and_loop());
        let skipped_bonding = &report["skipped"][3];
        assert_eq!(
            skipped_bonding["reasons"],
            json!(["vendor-file", "not-netfilter"])
        );
        assert_eq!(report["skipped"][2]["reasons"], json!(["not-netfilter"]));
        // Vendor files are not sources of the import.
        let sources = report["sources"].to_string();
        assert!(!sources.contains("/usr/lib"), "{sources}");
        assert!(sources.contains("/etc/modprobe.d/local.conf"), "{sources}");

        // Text: the TOML on stdout, the summary in it and on stderr.
        let out = run(with_root(r).arg("import"));
        assert_eq!(out.status.code(), Some(0));
        let toml = String::from_utf8(out.stdout).unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let summary = "not imported: 6 items (5 from vendor files; 6 about modules outside the netfilter layer); \
                       `nfkit import --all` adds vendor defaults and non-netfilter modules, listing each";
        assert!(toml.contains(&format!("# {summary}\n")), "{toml}");
        assert!(
            stderr.contains(&format!("nfkit: note: {summary}\n")),
            "{stderr}"
        );
        assert!(
            stderr.contains("not imported: 1 sysctl assignment outside net.netfilter"),
            "{stderr}"
        );
        for vendor in ["snd_pcsp", "max_bonds", "numdummies", "numifbs", "max_loop"] {
            assert!(
                !toml
                    .lines()
                    .any(|l| !l.starts_with('#') && l.contains(vendor)),
                "{vendor} imported:\n{toml}"
            );
        }

        // apply writes the admin's netfilter settings, and nothing of the vendor's.
        write(r, "/etc/nfkit/nfkit.toml", &toml);
        ok(with_root(r).arg("apply"));
        assert_eq!(
            read(r, "/etc/modprobe.d/nfkit.conf"),
            format!("{HEADER}options nf_conntrack hashsize=131072\n")
        );
        assert_eq!(
            read(r, "/etc/modules-load.d/nfkit.conf"),
            format!("{HEADER}nf_conntrack\nxt_conntrack\n")
        );
        assert_eq!(run(with_root(r).arg("verify")).status.code(), Some(0));
        // Importing again (nfkit's own files are outputs) gives the same state.
        let again = json_of(with_root(r).arg("import"));
        assert_eq!(again["desired"], report["desired"]);
    }
}

#[test]
fn all_adds_vendor_defaults_and_lists_each() {
    let dir = stock_debian(true);
    let r = dir.path();
    let report = json_of(with_root(r).args(["import", "--all"]));
    assert_eq!(report["scope"], "all");
    assert_eq!(items(&report["added"]), vendor_and_loop());
    assert_eq!(report["skipped"], json!([]));
    let options = &report["desired"]["modules"]["options"];
    assert_eq!(options["bonding"], json!({"max_bonds": 0}));
    assert_eq!(options["snd_pcsp"], json!({"index": -2}));
    assert_eq!(options["loop"], json!({"max_loop": 64}));
    assert!(
        report["sources"]
            .to_string()
            .contains("/usr/lib/modprobe.d/systemd.conf")
    );

    let out = run(with_root(r).args(["import", "--all"]));
    let toml = String::from_utf8(out.stdout).unwrap();
    for (source, what) in [
        (
            "/usr/lib/modprobe.d/systemd.conf:2",
            "options bonding max_bonds=0 (vendor default, not a netfilter module)",
        ),
        (
            "/etc/modprobe.d/local.conf:2",
            "options loop max_loop=64 (not a netfilter module)",
        ),
    ] {
        assert!(
            toml.contains(&format!("# added by --all: {source}: {what}\n")),
            "{toml}"
        );
    }
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("--all added 6 items"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn named_files_are_the_admins_choice_but_still_netfilter_only() {
    let dir = stock_debian(true);
    let r = dir.path();
    let report = json_of(with_root(r).args(["import", "/usr/lib/modprobe.d/systemd.conf"]));
    assert_eq!(report["desired"]["modules"]["options"], json!({}));
    assert_eq!(
        report["skipped"][0]["reasons"],
        json!(["not-netfilter"]),
        "{report:#}"
    );
    let report =
        json_of(with_root(r).args(["import", "--all", "/usr/lib/modprobe.d/systemd.conf"]));
    assert_eq!(
        report["desired"]["modules"]["options"]["dummy"],
        json!({"numdummies": 0})
    );
}

/// A PCS/EL6 host (no systemd, no sysctl.d, no module tree): everything it
/// configures is netfilter and the admin's, so everything is imported.
#[test]
fn pcs_host_still_imports_everything() {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(
        r,
        "/etc/sysconfig/iptables-config",
        "IPTABLES_MODULES=\"ip_conntrack ip_conntrack_ftp ip_nat_ftp ipt_state iptable_nat\"\n",
    );
    write(
        r,
        "/etc/modprobe.d/parallels.conf",
        "options ip_conntrack hashsize=65536 ip_conntrack_disable_ve0=0\n",
    );
    write(
        r,
        "/etc/sysctl.conf",
        "net.ipv4.ip_forward = 1\nnet.nf_conntrack_max = 500000\n",
    );
    let report = json_of(with_root(r).args(["import", "--from", "pcs"]));
    assert_eq!(
        report["desired"]["modules"],
        json!({
            "load": ["nf_conntrack", "nf_conntrack_ftp", "nf_nat_ftp", "xt_state", "iptable_nat"],
            "options": {"nf_conntrack": {"ip_conntrack_disable_ve0": 0}},
        })
    );
    assert_eq!(report["desired"]["conntrack"]["max"], 500000);
    assert_eq!(report["desired"]["conntrack"]["buckets"], 65536);
    assert_eq!(report["skipped"], json!([]));
    let all = json_of(with_root(r).args(["import", "--from", "pcs", "--all"]));
    assert_eq!(all["desired"], report["desired"]);
    assert_eq!(all["added"], json!([]));
}
