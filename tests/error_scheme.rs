//! One error scheme (issue 10): each cause once on stderr, one JSON error
//! object with `--json`, hints that fit reads, and unreadable configuration
//! files stop `apply`/`verify` with file and cause.

mod support;

use std::fs;
use std::os::unix::fs::symlink;
use std::path::Path;

use serde_json::Value;
use support::{nfkit, run};

const TOML: &str = "[modules]\nload = [\"nf_conntrack\"]\n";

fn write(root: &Path, relative: &str, text: &str) {
    let path = root.join(relative);
    fs::create_dir_all(path.parent().unwrap()).unwrap();
    fs::write(path, text).unwrap();
}

/// A root with a valid nfkit.toml and one broken thing made by `breakage`.
fn root_with(breakage: &dyn Fn(&Path)) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    write(dir.path(), "etc/nfkit/nfkit.toml", TOML);
    breakage(dir.path());
    dir
}

/// Every failing case: (root setup, command, text stderr must name).
type Case = (
    &'static str,
    Box<dyn Fn(&Path)>,
    Vec<&'static str>,
    &'static str,
);

fn cases() -> Vec<Case> {
    vec![
        (
            "nfkit.toml is a directory",
            Box::new(|r: &Path| {
                fs::remove_file(r.join("etc/nfkit/nfkit.toml")).unwrap();
                fs::create_dir(r.join("etc/nfkit/nfkit.toml")).unwrap();
            }),
            vec!["verify"],
            "nfkit.toml",
        ),
        (
            "nfkit.toml under a file",
            Box::new(|r: &Path| {
                fs::remove_dir_all(r.join("etc/nfkit")).unwrap();
                fs::write(r.join("etc/nfkit"), "").unwrap();
            }),
            vec!["apply"],
            "nfkit",
        ),
        (
            "bad nfkit.toml",
            Box::new(|r: &Path| write(r, "etc/nfkit/nfkit.toml", "junk = [")),
            vec!["verify"],
            "nfkit.toml",
        ),
        (
            "sysctl.d entry is a directory (verify)",
            Box::new(|r: &Path| fs::create_dir_all(r.join("etc/sysctl.d/50-x.conf")).unwrap()),
            vec!["verify"],
            "50-x.conf",
        ),
        (
            "sysctl.d entry is a directory (apply)",
            Box::new(|r: &Path| fs::create_dir_all(r.join("etc/sysctl.d/50-x.conf")).unwrap()),
            vec!["apply"],
            "50-x.conf",
        ),
        (
            "modprobe.d entry is a symlink loop",
            Box::new(|r: &Path| {
                fs::create_dir_all(r.join("etc/modprobe.d")).unwrap();
                symlink("b.conf", r.join("etc/modprobe.d/a.conf")).unwrap();
                symlink("a.conf", r.join("etc/modprobe.d/b.conf")).unwrap();
            }),
            vec!["verify"],
            "modprobe.d",
        ),
        (
            "import of a directory",
            Box::new(|r: &Path| fs::create_dir_all(r.join("etc/sysctl.d/50-x.conf")).unwrap()),
            vec!["import", "/etc/sysctl.d/50-x.conf"],
            "50-x.conf",
        ),
        (
            "unknown module offline",
            Box::new(|_: &Path| {}),
            vec!["modules", "load", "nosuchmodule"],
            "load",
        ),
    ]
}

/// The `": "`-separated layers of a message.
fn layers(line: &str) -> Vec<&str> {
    line.split(": ").collect()
}

#[test]
fn every_cause_is_printed_once() {
    for (what, breakage, args, needle) in cases() {
        let root = root_with(&*breakage);
        let out = run(nfkit().arg("--root").arg(root.path()).args(&args));
        assert_eq!(out.status.code(), Some(1), "{what}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        let line = stderr
            .lines()
            .find(|l| l.starts_with("nfkit: error: "))
            .unwrap_or_else(|| panic!("{what}: {stderr}"));
        assert!(line.contains(needle), "{what}: {line}");
        assert_eq!(
            stderr.matches("nfkit: error:").count(),
            1,
            "{what}: {stderr}"
        );
        // No layer repeats another: `X: X` or `X: Y: X`.
        let parts = layers(line);
        for (i, a) in parts.iter().enumerate() {
            for b in &parts[i + 1..] {
                assert!(a != b, "{what}: {a:?} repeated in {line}");
            }
        }
        assert!(
            !line.contains("(os error") || line.matches("(os error").count() == 1,
            "{what}: {line}"
        );
    }
}

#[test]
fn json_errors_have_one_shape() {
    for (what, breakage, args, _) in cases() {
        let root = root_with(&*breakage);
        let out = run(nfkit()
            .arg("--json")
            .arg("--root")
            .arg(root.path())
            .args(&args));
        assert_eq!(out.status.code(), Some(1), "{what}");
        let body: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|e| panic!("{what}: {e}: {}", String::from_utf8_lossy(&out.stdout)));
        let object = body.as_object().unwrap();
        assert_eq!(object.keys().collect::<Vec<_>>(), ["error"], "{what}");
        let error = body["error"].as_object().unwrap();
        let mut keys: Vec<&String> = error.keys().collect();
        keys.sort();
        assert_eq!(keys, ["causes", "hint", "message"], "{what}");
        let causes: Vec<&str> = error["causes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        assert!(!causes.is_empty(), "{what}");
        assert_eq!(
            error["message"].as_str().unwrap(),
            causes.join(": "),
            "{what}"
        );
        assert!(
            error["hint"].is_null() || error["hint"].is_string(),
            "{what}"
        );
        // The text on stderr is the same message.
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "nfkit: error: {}",
                error["message"].as_str().unwrap()
            )),
            "{what}: {stderr}"
        );
    }
}

#[test]
fn a_read_never_gets_the_write_hint() {
    let root = root_with(&|r: &Path| {
        fs::create_dir_all(r.join("etc/sysctl.d/50-x.conf")).unwrap();
    });
    let out = run(nfkit().arg("--root").arg(root.path()).arg("verify"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!stderr.contains("writing"), "{stderr}");
    // The one reader refuses what is not a regular file, with its own hint.
    assert!(
        stderr.contains("hint: nfkit reads only regular files"),
        "{stderr}"
    );
}

#[test]
fn an_unreadable_file_stops_apply_before_anything_is_written() {
    let root = root_with(&|r: &Path| {
        fs::create_dir_all(r.join("etc/modprobe.d/50-x.conf")).unwrap();
        write(
            r,
            "etc/nfkit/nfkit.toml",
            "[sysctl]\n\"net.netfilter.nf_conntrack_acct\" = 1\n",
        );
    });
    let out = run(nfkit().arg("--root").arg(root.path()).arg("apply"));
    assert_eq!(out.status.code(), Some(1));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("/etc/modprobe.d/50-x.conf"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");
    assert!(!root.path().join("etc/sysctl.d/90-nfkit.conf").exists());
}

#[test]
fn a_mask_is_not_an_error() {
    let root = root_with(&|r: &Path| {
        fs::create_dir_all(r.join("etc/sysctl.d")).unwrap();
        symlink("/dev/null", r.join("etc/sysctl.d/50-x.conf")).unwrap();
        symlink("nowhere", r.join("etc/sysctl.d/60-dangling.conf")).unwrap();
    });
    let out = run(nfkit().arg("--root").arg(root.path()).arg("verify"));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
}

/// The error object inside reports has the same shape as the top-level one.
fn assert_error_object(what: &str, error: &Value) {
    let object = error
        .as_object()
        .unwrap_or_else(|| panic!("{what}: {error}"));
    let causes: Vec<&str> = object["causes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c.as_str().unwrap())
        .collect();
    assert_eq!(
        object["message"].as_str().unwrap(),
        causes.join(": "),
        "{what}"
    );
    assert!(
        object["hint"].is_null() || object["hint"].is_string(),
        "{what}"
    );
}

#[test]
fn errors_inside_reports_are_error_objects() {
    let root = root_with(&|r: &Path| {
        fs::create_dir_all(r.join("proc/net/ip_tables_names")).unwrap();
    });
    let out = run(nfkit()
        .arg("--json")
        .arg("--root")
        .arg(root.path())
        .arg("tables"));
    assert_eq!(out.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let ipv4 = v["legacy"]
        .as_array()
        .unwrap()
        .iter()
        .find(|f| f["family"] == "ipv4")
        .unwrap();
    assert_eq!(ipv4["state"], "unreadable", "{v:#}");
    assert_error_object("tables", &ipv4["error"]);
    let causes = ipv4["error"]["causes"].as_array().unwrap();
    assert_eq!(causes.len(), 2, "{v:#}");
    assert!(causes[0].as_str().unwrap().contains("ip_tables_names"));
    // Module errors: tests/modules_tree.rs (they need a module tree).
}
