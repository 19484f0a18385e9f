//! The injections of issue 10 through the binary: a value or key that would
//! add a line, a comment or another key to a boot file stops `apply` with a
//! clear error naming it (exit 1), and nothing in the tree changes. The
//! same for `modules load --persist` (the CLI entry) and `import` (which
//! drops what the types refuse, with a note, and prints nfkit.toml that
//! nfkit reads back).

mod support;

use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use support::{nfkit, run, write};

/// A Debian-with-systemd image tree.
fn systemd_root() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let r = dir.path();
    write(r, "/lib/systemd/systemd", "");
    fs::create_dir_all(r.join("sbin")).unwrap();
    std::os::unix::fs::symlink("/lib/systemd/systemd", r.join("sbin/init")).unwrap();
    write(r, "/etc/debian_version", "12.5\n");
    for d in ["etc/modules-load.d", "etc/modprobe.d", "etc/sysctl.d"] {
        fs::create_dir_all(r.join(d)).unwrap();
    }
    write(r, "/etc/sysctl.conf", "# admin\n");
    write(r, "/etc/modules", "# admin\nloop\n");
    dir
}

/// Every file of the tree and its bytes (directories as empty entries).
fn snapshot(root: &Path) -> BTreeMap<PathBuf, Option<Vec<u8>>> {
    let mut out = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            let meta = fs::symlink_metadata(&path).unwrap();
            let rel = path.strip_prefix(root).unwrap().to_path_buf();
            if meta.is_dir() {
                stack.push(path);
                out.insert(rel, None);
            } else if meta.is_file() {
                out.insert(rel, Some(fs::read(&path).unwrap()));
            } else {
                out.insert(
                    rel,
                    Some(
                        fs::read_link(&path)
                            .unwrap()
                            .into_os_string()
                            .into_encoded_bytes(),
                    ),
                );
            }
        }
    }
    out
}

fn with_root(root: &Path) -> Command {
    let mut c = nfkit();
    c.arg("--root").arg(root);
    c
}

/// (nfkit.toml, text the error must show)
const CASES: &[(&str, &str)] = &[
    (
        "[sysctl]\n\"net.netfilter.nf_conntrack_tcp_timeout_established\" = \"86400\\nkernel.core_pattern = |/tmp/pwn %p\"\n",
        "invalid sysctl value \"86400\\nkernel.core_pattern = |/tmp/pwn %p\"",
    ),
    (
        "[sysctl]\n\"net.netfilter.x\\nkernel.modprobe = /tmp/evil\\n#\" = 1\n",
        "invalid sysctl key \"net.netfilter.x\\nkernel.modprobe = /tmp/evil\\n#\"",
    ),
    (
        "[sysctl]\n\"net.netfilter.nf_conntrack_acct=1 #\" = 0\n",
        "invalid sysctl key \"net.netfilter.nf_conntrack_acct=1 #\"",
    ),
    (
        "[modules.options.nf_conntrack]\n\"a\\ninstall\" = 1\n",
        "invalid module parameter name \"a\\ninstall\"",
    ),
    (
        "[modules.options.nf_conntrack]\n\"#x\" = 1\n",
        "invalid module parameter name \"#x\"",
    ),
    (
        "[sysctl]\n\"net.netfilter.a/../../kernel/x\" = 1\n",
        "invalid sysctl key \"net.netfilter.a/../../kernel/x\"",
    ),
    (
        "[sysctl]\n\"net.netfilter.nf_conntrack_acct\" = \"\"\n",
        "invalid sysctl value \"\"",
    ),
    (
        "[modules.options.nf_conntrack]\nexpect_hashsize = \"\"\n",
        "invalid module parameter value \"\"",
    ),
    (
        "[sysctl]\n\"net.netfilter.\" = 1\n",
        "invalid sysctl key \"net.netfilter.\"",
    ),
    (
        "[modules.options.nf_conntrack]\nx = \"1 install nf_conntrack /tmp/evil\"\n",
        "invalid module parameter value \"1 install nf_conntrack /tmp/evil\"",
    ),
    (
        "[modules.options.nf_conntrack]\nx = \"1\\\\\"\n",
        "invalid module parameter value \"1\\\\\"",
    ),
    (
        "[modules]\nload = [\"nf_nat\\ninstall nf_nat /tmp/evil\"]\n",
        "invalid module name \"nf_nat\\ninstall nf_nat /tmp/evil\"",
    ),
    (
        "[modules.options.\"nf_nat install\"]\nx = 1\n",
        "invalid module name \"nf_nat install\"",
    ),
];

#[test]
fn apply_refuses_injections_naming_them_and_writes_nothing() {
    for (toml, shown) in CASES {
        let dir = systemd_root();
        let r = dir.path();
        write(r, "/etc/nfkit/nfkit.toml", toml);
        let before = snapshot(r);
        for args in [&["apply"][..], &["apply", "--check"], &["verify"]] {
            let out = run(with_root(r).args(args));
            let err = String::from_utf8_lossy(&out.stderr);
            assert_eq!(out.status.code(), Some(1), "{args:?} {toml:?}: {err}");
            assert!(
                err.contains("nfkit.toml") && err.contains("line ") && err.contains(shown),
                "{args:?} {toml:?}: the error must name the file, line and text:\n{err}"
            );
            assert_eq!(snapshot(r), before, "{args:?} {toml:?}: the tree changed");
        }
    }
}

#[test]
fn modules_load_persist_refuses_what_boot_files_cannot_carry() {
    for (arg, shown) in [
        ("x=1\\", "invalid module parameter value \"1\\\\\""),
        ("x=\u{e0}", "invalid module parameter value"),
        ("1x=2", "invalid module parameter name \"1x\""),
    ] {
        let dir = systemd_root();
        let r = dir.path();
        let before = snapshot(r);
        let out = run(with_root(r).args(["modules", "load", "--persist", "nf_conntrack", arg]));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{arg:?}: {err}");
        assert!(err.contains(shown), "{arg:?}: {err}");
        assert_eq!(snapshot(r), before, "{arg:?}: the tree changed");
    }
}

/// `import` reads files nfkit did not write: an item nfkit.toml cannot hold
/// stops it with the file, line and reason (nothing printed: a config that
/// silently lost an item would be applied as the whole truth); the same
/// files without it import to a state nfkit reads back.
#[test]
fn import_refuses_what_the_types_refuse_naming_file_and_line() {
    for (file, text, shown) in [
        (
            "/etc/modprobe.d/nf.conf",
            "options nf_conntrack expect_hashsize=64 1bad=2\n",
            "/etc/modprobe.d/nf.conf:1: invalid module parameter name \"1bad\"",
        ),
        (
            "/etc/modprobe.d/nf.conf",
            "# c\noptions nf_conntrack x=\"a\"\n",
            "/etc/modprobe.d/nf.conf:2: invalid module parameter value",
        ),
        (
            "/etc/sysconfig/iptables-config",
            "IPTABLES_MODULES=\"nf_nat x\u{0}y\"\n",
            "/etc/sysconfig/iptables-config:1: invalid module name \"x\\0y\"",
        ),
    ] {
        let dir = systemd_root();
        let r = dir.path();
        write(r, file, text);
        let out = run(with_root(r).arg("import"));
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{text:?}: {err}");
        assert!(out.stdout.is_empty(), "{text:?}: {out:?}");
        assert!(err.contains(shown), "{text:?}: {err}");
    }
    let dir = systemd_root();
    let r = dir.path();
    write(
        r,
        "/etc/modprobe.d/nf.conf",
        "options nf_conntrack expect_hashsize=64 nf_conntrack_helper=0\n",
    );
    write(
        r,
        "/etc/sysctl.d/50-nf.conf",
        "net.netfilter.nf_conntrack_acct = 1\nnet.netfilter.nf_log.2 = \"quoted\"\n",
    );
    write(
        r,
        "/etc/sysconfig/iptables-config",
        "IPTABLES_MODULES=\"nf_nat\"\n",
    );
    let out = run(with_root(r).arg("import"));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    let toml = String::from_utf8(out.stdout).unwrap();
    let desired = nfkit::persist::desired::Desired::parse("import", &toml)
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
    assert!(
        desired.modules.load.iter().any(|m| m.as_str() == "nf_nat"),
        "{toml}"
    );
    let options = &desired.modules.options["nf_conntrack"];
    let names: Vec<&str> = options.keys().map(|k| k.as_str()).collect();
    assert_eq!(names, ["expect_hashsize", "nf_conntrack_helper"], "{toml}");
    // `"quoted"` is a value the sysctl tools write as is (quotes included).
    assert_eq!(
        desired.sysctl["net.netfilter.nf_log.2"].as_str(),
        "\"quoted\"",
        "{toml}"
    );
}
